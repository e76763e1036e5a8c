//! Leader election through a `coordination.k8s.io` Lease. Every replica watches and reads; only
//! the Lease holder dials and writes Twilio configuration, so two replicas never both call.

use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Whether this replica may cause side effects now.
#[derive(Clone, Debug)]
pub struct Leadership {
    is_leader: watch::Receiver<bool>,
}

/// Where the Lease lives, who this replica is, and its timing.
#[derive(Clone, Debug)]
pub struct LeaseConfig {
    pub namespace: String,
    pub name: String,
    pub identity: String,
    /// How long a Lease stays held after its last renewal; a successor waits this long after a
    /// leader dies. Whole seconds: the Lease counts seconds.
    pub duration: Duration,
    /// How long after its last renewal the holder renews. Shorter than `duration`; the rest of
    /// the duration is the margin for a slow API server and clock skew between nodes.
    pub renew: Duration,
}

impl LeaseConfig {
    /// Checks the timing the lease manager needs (it panics on what this rejects).
    pub fn check(&self) -> Result<(), String> {
        let whole = |name: &str, d: Duration| {
            if d.as_secs() == 0 || d.subsec_nanos() != 0 {
                Err(format!(
                    "{name} must be a whole number of seconds, at least 1s (got {d:?}): the Lease counts seconds"
                ))
            } else {
                Ok(())
            }
        };
        whole("the lease duration", self.duration)?;
        whole("the lease renew period", self.renew)?;
        if self.renew >= self.duration {
            return Err(format!(
                "the lease renew period ({:?}) must be shorter than the lease duration ({:?}), or the Lease expires before its holder renews it",
                self.renew, self.duration
            ));
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    #[error("leader election: {0}")]
    Lease(#[from] kube_lease_manager::LeaseManagerError),
    #[error("leader election: {0}")]
    Timing(String),
}

/// Keeps this replica in the election; dropping it stops renewing the Lease without releasing
/// it (as a killed process would), [`LeaderTask::step_down`] hands it over.
pub struct LeaderTask {
    // NB: declared before `step_down`, so a drop aborts the task before the closed channel
    // could be taken for a request to step down.
    task: AbortOnDrop<()>,
    step_down: Option<tokio::sync::oneshot::Sender<()>>,
}

impl LeaderTask {
    /// Resolves when the election task ends on its own.
    pub async fn finished(&mut self) {
        let _ = (&mut self.task.0).await;
    }

    /// Stops leading and releases the Lease, so a standby takes over at once instead of when the
    /// Lease expires. Every [`Leadership`] sees "not leader" before the Lease is released. Gives
    /// up after `limit` (then the Lease expires as after a crash).
    pub async fn step_down(mut self, limit: Duration) {
        if let Some(step_down) = self.step_down.take() {
            let _ = step_down.send(());
        }
        if tokio::time::timeout(limit, &mut self.task.0).await.is_err() {
            tracing::warn!(?limit, "the Lease was not released in time; it will expire");
        }
    }
}

struct AbortOnDrop<T>(JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Leadership {
    /// A replica that is always the leader: single-replica installs, tests, the demo.
    pub fn always() -> Self {
        let (sender, receiver) = watch::channel(true);
        // NB: the receiver keeps the last value after the sender is gone.
        drop(sender);
        Self {
            is_leader: receiver,
        }
    }

    /// Joins the election; the returned task keeps the Lease renewed while this replica leads.
    pub async fn elect(
        client: kube::Client,
        config: &LeaseConfig,
    ) -> Result<(Self, LeaderTask), LeaderError> {
        config.check().map_err(LeaderError::Timing)?;
        let seconds = config.duration.as_secs();
        // NB: the lease manager renews `grace` seconds before expiry, not at a period.
        let grace = seconds - config.renew.as_secs();
        let manager = kube_lease_manager::LeaseManagerBuilder::new(client, &config.name)
            .with_namespace(&config.namespace)
            .with_identity(&config.identity)
            .with_duration(seconds)
            .with_grace(grace)
            // NB: one field manager per replica: the manager takes the Lease by server-side
            // apply, and two replicas applying as the same manager never conflict, so both
            // would hold it (two leaders at once, seen in tests/operator.rs).
            .with_field_manager(format!("alertcall-leader-{}", config.identity))
            .build()
            .await?;
        let (mut watched, task) = manager.watch().await;
        // NB: the lease manager renews from its own task; it must die with ours, or a "killed"
        // replica would keep renewing the Lease and nobody could take over.
        let mut task = AbortOnDrop(task);
        // NB: the manager releases the Lease only once every receiver of its channel is gone,
        // and Leadership clones live all over the operator; so they get a channel of their own,
        // and this task holds the manager's only receiver.
        let (leading, is_leader) = watch::channel(*watched.borrow_and_update());
        let (step_down, mut stepping_down) = tokio::sync::oneshot::channel::<()>();
        let identity = config.identity.clone();
        let forwarder = tokio::spawn(async move {
            loop {
                tokio::select! {
                    changed = watched.changed() => {
                        if changed.is_err() {
                            break;
                        }
                        let now = *watched.borrow_and_update();
                        tracing::info!(identity = %identity, leading = now, "leadership changed");
                        let _ = leading.send(now);
                    }
                    Ok(()) = &mut stepping_down => {
                        let _ = leading.send(false);
                        drop(watched);
                        match (&mut task.0).await {
                            Ok(Ok(_)) => tracing::info!(identity = %identity, "released the Lease"),
                            Ok(Err(error)) => tracing::warn!(identity = %identity, %error, "releasing the Lease failed; it will expire"),
                            Err(error) => tracing::warn!(identity = %identity, %error, "the lease manager stopped"),
                        }
                        return;
                    }
                }
            }
            let _ = leading.send(false);
            task.0.abort();
        });
        Ok((
            Self { is_leader },
            LeaderTask {
                task: AbortOnDrop(forwarder),
                step_down: Some(step_down),
            },
        ))
    }

    pub fn is_leader(&self) -> bool {
        *self.is_leader.borrow()
    }

    /// Resolves once this replica leads.
    pub async fn until_leader(&self) {
        let mut receiver = self.is_leader.clone();
        let _ = receiver.wait_for(|leading| *leading).await;
    }
}
