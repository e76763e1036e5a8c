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

/// Where the Lease lives and who this replica is.
#[derive(Clone, Debug)]
pub struct LeaseConfig {
    pub namespace: String,
    pub name: String,
    pub identity: String,
    pub duration: Duration,
}

#[derive(Debug, thiserror::Error)]
#[error("leader election: {0}")]
pub struct LeaderError(#[from] kube_lease_manager::LeaseManagerError);

/// Keeps this replica in the election; dropping it stops renewing the Lease.
pub struct LeaderTask(AbortOnDrop<()>);

impl LeaderTask {
    /// Resolves when the election task ends on its own.
    pub async fn finished(mut self) {
        let _ = (&mut (self.0).0).await;
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
        let seconds = config.duration.as_secs().max(2);
        let manager = kube_lease_manager::LeaseManagerBuilder::new(client, &config.name)
            .with_namespace(&config.namespace)
            .with_identity(&config.identity)
            .with_duration(seconds)
            .with_grace((seconds / 3).max(1))
            .with_field_manager("alertcall-leader")
            .build()
            .await?;
        let (receiver, task) = manager.watch().await;
        // NB: the lease manager renews from its own task; it must die with ours, or a "killed"
        // replica would keep renewing the Lease and nobody could take over.
        let task = AbortOnDrop(task);
        let identity = config.identity.clone();
        let mut watched = receiver.clone();
        let logger = tokio::spawn(async move {
            let task = task;
            while watched.changed().await.is_ok() {
                let leading = *watched.borrow();
                tracing::info!(identity = %identity, leading, "leadership changed");
            }
            task.0.abort();
        });
        Ok((
            Self {
                is_leader: receiver,
            },
            LeaderTask(AbortOnDrop(logger)),
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
