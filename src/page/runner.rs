//! The dial runner: places the calls escalation decided, paced per Twilio account.
//!
//! Every account (by account SID) has one [`Pacer`] shared by all pages: a token bucket of one
//! token at `limits.callsPerSecond` (so it never bursts past the limit, even after idling) and a
//! cap of `limits.maxConcurrentCalls` live calls. The runner only ever sees dials whose intent is
//! already persisted; it reports each outcome through the caller's `report` callback and never
//! retries an ambiguous create (the controller looks the call up instead).

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;
use tracing::Instrument;

use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::metrics::Metrics;
use crate::twilio::client::CreateCall;
use crate::twilio::types::Call;
use crate::twilio::Account;
use crate::twilio::{RetryClass, TwilioError};

/// One attempt of one page: `namespace/name` of the AlertCall and the attempt id.
#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord)]
pub struct JobKey {
    pub namespace: String,
    pub name: String,
    pub attempt_id: String,
}

/// How a dial ended.
#[derive(Debug)]
pub enum DialOutcome {
    /// Twilio accepted the call.
    Accepted(Box<Call>),
    /// Twilio refused it; repeating the request would fail the same way.
    Refused { code: Option<i64>, message: String },
    /// The request may or may not have created a call: the controller must look it up.
    Ambiguous(String),
    /// Dropped from the queue before any request was made (the page no longer needs it).
    NotPlaced,
}

/// Pacing limits of an account, from the policy that dials.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub calls_per_second: u32,
    /// 0: no cap.
    pub max_concurrent_calls: u32,
}

type Report = Box<dyn FnOnce(DialOutcome) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send>;

/// A dial to place.
pub struct DialJob {
    pub key: JobKey,
    pub account: Arc<Account>,
    pub limits: Limits,
    pub request: CreateCall,
    /// Called once with the outcome; it records it in the AlertCall status.
    pub report: Report,
}

/// How many times a dial refused with a retryable error (429 after the client's own retries,
/// connection refused) is tried again before it counts as refused.
const MAX_RETRIES: u32 = 4;

#[derive(Default)]
struct PacerState {
    /// The earliest moment the next call may start.
    next_slot: Option<Instant>,
    limits: Option<Limits>,
    /// Calls that occupy a concurrency slot: dials in flight and calls not final yet.
    live: HashSet<JobKey>,
}

/// The pacing of one Twilio account.
#[derive(Default)]
pub struct Pacer {
    state: StdMutex<PacerState>,
    released: Notify,
}

impl Pacer {
    fn lock(&self) -> std::sync::MutexGuard<'_, PacerState> {
        // NB: the state stays consistent under a panic (plain inserts and assignments).
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Waits for a token and a concurrency slot; the slot is held by `key` until released.
    async fn acquire(&self, key: &JobKey, limits: Limits, cancel: &Notify) -> bool {
        loop {
            let wait_until = {
                let mut state = self.lock();
                state.limits = Some(limits);
                let now = Instant::now();
                let cap = limits.max_concurrent_calls as usize;
                let has_room = cap == 0 || state.live.len() < cap;
                let due = state.next_slot.is_none_or(|slot| now >= slot);
                if has_room && due {
                    let interval =
                        Duration::from_secs_f64(1.0 / f64::from(limits.calls_per_second.max(1)));
                    state.next_slot = Some(now + interval);
                    state.live.insert(key.clone());
                    return true;
                }
                match (has_room, state.next_slot) {
                    (true, Some(slot)) => slot,
                    // Full: wait for a release, or re-check now and then in case a call ended
                    // without anyone telling the runner.
                    _ => now + Duration::from_secs(1),
                }
            };
            tokio::select! {
                _ = tokio::time::sleep_until(wait_until) => {}
                _ = self.released.notified() => {}
                _ = cancel.notified() => return false,
            }
        }
    }

    fn release(&self, key: &JobKey) {
        if self.lock().live.remove(key) {
            self.released.notify_waiters();
        }
    }

    /// The live calls of one page are `live`, plus those of `held` that hold a slot already.
    fn sync(&self, namespace: &str, name: &str, live: &HashSet<String>, held: &HashSet<String>) {
        let mut state = self.lock();
        let before = state.live.len();
        state.live.retain(|k| {
            k.namespace != namespace
                || k.name != name
                || live.contains(&k.attempt_id)
                || held.contains(&k.attempt_id)
        });
        let released = state.live.len() < before;
        for attempt_id in live {
            state.live.insert(JobKey {
                namespace: namespace.to_string(),
                name: name.to_string(),
                attempt_id: attempt_id.clone(),
            });
        }
        drop(state);
        if released {
            self.released.notify_waiters();
        }
    }

    /// Live calls counted against the concurrency cap.
    pub fn live(&self) -> usize {
        self.lock().live.len()
    }
}

enum JobState {
    Queued(Arc<Notify>),
    InFlight,
}

/// Executes dials for every page of the operator.
pub struct Runner {
    metrics: Arc<Metrics>,
    pacers: StdMutex<HashMap<String, Arc<Pacer>>>,
    jobs: StdMutex<HashMap<JobKey, JobState>>,
    tasks: StdMutex<JoinSet<()>>,
    /// The account each policy dials from, for counting calls per account.
    policy_accounts: StdMutex<HashMap<(String, String), String>>,
}

impl Runner {
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self {
            metrics,
            pacers: StdMutex::new(HashMap::new()),
            jobs: StdMutex::new(HashMap::new()),
            tasks: StdMutex::new(JoinSet::new()),
            policy_accounts: StdMutex::new(HashMap::new()),
        }
    }

    /// Notes which account the policy `namespace/policy` dials from.
    pub fn remember_policy(&self, namespace: &str, policy: &str, account_sid: &str) {
        self.policy_accounts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(
                (namespace.to_string(), policy.to_string()),
                account_sid.to_string(),
            );
    }

    /// The account of a policy seen before.
    pub fn account_of(&self, namespace: &str, policy: &str) -> Option<String> {
        self.policy_accounts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&(namespace.to_string(), policy.to_string()))
            .cloned()
    }

    fn jobs(&self) -> std::sync::MutexGuard<'_, HashMap<JobKey, JobState>> {
        self.jobs.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The pacer of an account.
    pub fn pacer(&self, account_sid: &str) -> Arc<Pacer> {
        let mut pacers = self.pacers.lock().unwrap_or_else(|p| p.into_inner());
        pacers.entry(account_sid.to_string()).or_default().clone()
    }

    /// Attempt ids of one page the runner still holds (queued or with the request in flight).
    pub fn dialing(&self, namespace: &str, name: &str) -> std::collections::BTreeSet<String> {
        self.jobs()
            .keys()
            .filter(|k| k.namespace == namespace && k.name == name)
            .map(|k| k.attempt_id.clone())
            .collect()
    }

    /// Tells the pacer which calls of a page are placed and not final yet (`placed`), so
    /// concurrency slots follow the AlertCall status, including after a restart. Dials the
    /// runner still holds keep their slots: it releases those itself.
    pub fn sync_live(
        &self,
        account_sid: &str,
        namespace: &str,
        name: &str,
        placed: &HashSet<String>,
    ) {
        let held: HashSet<String> = self.dialing(namespace, name).into_iter().collect();
        self.pacer(account_sid).sync(namespace, name, placed, &held);
    }

    /// Forgets the calls of a finished page: what is left of them (acknowledgers in the room)
    /// no longer holds a slot the runner can track.
    pub fn release_page(&self, namespace: &str, name: &str) {
        let pacers: Vec<Arc<Pacer>> = self
            .pacers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        for pacer in pacers {
            pacer.sync(namespace, name, &HashSet::new(), &HashSet::new());
        }
    }

    /// Drops a queued dial; true if it was queued (it will report `NotPlaced`). A dial whose
    /// request is in flight cannot be recalled.
    pub fn cancel(&self, key: &JobKey) -> bool {
        match self.jobs().get(key) {
            Some(JobState::Queued(cancel)) => {
                cancel.notify_one();
                true
            }
            _ => false,
        }
    }

    /// Queues a dial unless the same attempt is already held. Returns false for a duplicate.
    pub fn submit(self: &Arc<Self>, job: DialJob) -> bool {
        let cancel = Arc::new(Notify::new());
        {
            let mut jobs = self.jobs();
            if jobs.contains_key(&job.key) {
                return false;
            }
            jobs.insert(job.key.clone(), JobState::Queued(cancel.clone()));
        }
        self.metrics.dial_queue_depth.inc();
        let runner = self.clone();
        let mut tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
        while tasks.try_join_next().is_some() {}
        // NB: the dial runs after the reconcile that submitted it returned; it keeps that span,
        // so its lines name the page, and carries its attempt.
        let span = tracing::info_span!("dial", attempt = %job.key.attempt_id);
        tasks.spawn(async move { runner.execute(job, cancel).await }.instrument(span.or_current()));
        true
    }

    async fn execute(self: Arc<Self>, job: DialJob, cancel: Arc<Notify>) {
        let DialJob {
            key,
            account,
            limits,
            request,
            report,
        } = job;
        let pacer = self.pacer(&account.account_sid);
        let acquired = pacer.acquire(&key, limits, &cancel).await;
        self.metrics.dial_queue_depth.dec();
        if !acquired {
            self.jobs().remove(&key);
            report(DialOutcome::NotPlaced).await;
            return;
        }
        self.jobs().insert(key.clone(), JobState::InFlight);
        let mut retries = 0;
        let outcome = loop {
            match account.client.create_call(&request).await {
                Ok(call) => break DialOutcome::Accepted(Box::new(call)),
                Err(error) => match error.retry_class() {
                    RetryClass::Ambiguous => break DialOutcome::Ambiguous(error.to_string()),
                    RetryClass::Retryable { after } if retries < MAX_RETRIES => {
                        retries += 1;
                        let delay = after.unwrap_or(Duration::from_millis(500 << retries));
                        tracing::warn!(attempt = %key.attempt_id, %error, "dial not processed, retrying");
                        tokio::time::sleep(delay).await;
                    }
                    _ => break refused(&error),
                },
            }
        };
        if !matches!(outcome, DialOutcome::Accepted(_)) {
            pacer.release(&key);
        }
        // NB: the job leaves `dialing` only after the report is recorded, so a reconcile in
        // between neither looks the call up nor thinks the intent was lost.
        report(outcome).await;
        self.jobs().remove(&key);
    }

    /// Shutdown: queued dials are dropped (each reports `NotPlaced`) and dials whose request is
    /// under way finish and report, so every page is left with its call's SID recorded, its
    /// intent alone, or neither. Whatever still runs after `limit` is aborted.
    pub async fn drain(&self, limit: Duration) {
        for state in self.jobs().values() {
            if let JobState::Queued(cancel) = state {
                cancel.notify_one();
            }
        }
        let mut tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|p| p.into_inner()));
        let finished =
            tokio::time::timeout(limit, async { while tasks.join_next().await.is_some() {} }).await;
        if finished.is_err() {
            tracing::warn!(?limit, "dials still under way at shutdown were stopped");
            tasks.abort_all();
        }
    }

    /// Stops every dial at once (shutdown or a simulated crash).
    pub fn abort_all(&self) {
        self.tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .abort_all();
    }
}

fn refused(error: &TwilioError) -> DialOutcome {
    DialOutcome::Refused {
        code: error.code(),
        message: error.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: &str) -> JobKey {
        JobKey {
            namespace: "ns".into(),
            name: "page".into(),
            attempt_id: id.into(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn pacer_spaces_calls_by_the_rate_and_never_bursts() {
        let pacer = Pacer::default();
        let cancel = Notify::new();
        let limits = Limits {
            calls_per_second: 2,
            max_concurrent_calls: 0,
        };
        let start = Instant::now();
        let mut times = Vec::new();
        for i in 0..4 {
            assert!(pacer.acquire(&key(&i.to_string()), limits, &cancel).await);
            times.push(Instant::now() - start);
        }
        for pair in times.windows(2) {
            assert!(pair[1] - pair[0] >= Duration::from_millis(500), "{times:?}");
        }
        // Idle for a long time: still one call, then the interval again.
        tokio::time::sleep(Duration::from_secs(10)).await;
        let t0 = Instant::now();
        assert!(pacer.acquire(&key("a"), limits, &cancel).await);
        assert!(pacer.acquire(&key("b"), limits, &cancel).await);
        assert!(Instant::now() - t0 >= Duration::from_millis(500));
    }

    #[tokio::test(start_paused = true)]
    async fn pacer_holds_calls_over_the_concurrency_cap_until_one_ends() {
        let pacer = Arc::new(Pacer::default());
        let cancel = Arc::new(Notify::new());
        let limits = Limits {
            calls_per_second: 10,
            max_concurrent_calls: 1,
        };
        assert!(pacer.acquire(&key("1"), limits, &cancel).await);
        let waiting = {
            let (pacer, cancel) = (pacer.clone(), cancel.clone());
            tokio::spawn(async move { pacer.acquire(&key("2"), limits, &cancel).await })
        };
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert!(!waiting.is_finished());
        pacer.sync("ns", "page", &HashSet::new(), &HashSet::new());
        assert!(matches!(waiting.await, Ok(true)));
        assert_eq!(pacer.live(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_queued_dial_can_be_canceled() {
        let pacer = Arc::new(Pacer::default());
        let limits = Limits {
            calls_per_second: 1,
            max_concurrent_calls: 1,
        };
        let cancel = Arc::new(Notify::new());
        assert!(pacer.acquire(&key("1"), limits, &cancel).await);
        let waiting = {
            let (pacer, cancel) = (pacer.clone(), cancel.clone());
            tokio::spawn(async move { pacer.acquire(&key("2"), limits, &cancel).await })
        };
        tokio::time::sleep(Duration::from_millis(10)).await;
        cancel.notify_one();
        assert!(matches!(waiting.await, Ok(false)));
    }
}
