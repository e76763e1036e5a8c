//! The AlertCall controller: drives each page through [`crate::escalation`].
//!
//! Every reconcile: resolve the policy and its Twilio account, poll Twilio for the page's live
//! calls, fold what was seen ([`observe`]), decide ([`step`]), persist the decided status with a
//! resourceVersion-guarded replace (this write records dial intents), and only if that write won
//! and this replica leads, act: dials go to the [`crate::page::runner`], cancels, polls and lookups
//! go to Twilio directly. Their results are recorded by [`record`], again guarded.

mod budget;
mod finalizer;
mod notices;
mod oncall;
mod pages;
mod reconcile;
mod status;
mod tested;

use budget::*;
use finalizer::*;
use notices::*;
pub use pages::{OwnWrites, Pages};
use reconcile::*;
pub use status::record;
use status::*;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::StreamExt;
use jiff::SignedDuration;
use kube::api::Api;
use kube::core::DeserializeGuard;
use kube::runtime::controller::Action as Requeue;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{watcher, Controller};
use kube::{Resource, ResourceExt};

use super::callbacks::Policies;
use super::{callbacks, AccountError, Context};
use crate::api::{AlertCall, CallPolicy};
use crate::pipeline::routes::Routes;

/// Name of this controller in metrics and readiness.
pub const CONTROLLER: &str = "alertcall";

/// Condition on the AlertCall saying whether its policy could be used.
pub const POLICY_RESOLVED: &str = "PolicyResolved";

/// Condition on an AlertCall being deleted: False while its calls cannot be ended (Twilio
/// unreachable), with the reason; deletion waits for them.
pub const CALLS_ENDED: &str = "CallsEnded";

/// Held by every page from its first dial (a routed page: from its create) until it is
/// finished and none of its calls is live, so deleting a page that is still calling cancels its
/// calls instead of leaving them ringing.
pub const FINALIZER: &str = crate::api::alert_call::CANCEL_CALLS_FINALIZER;

/// Reconciles at once; pages are independent and mostly wait on Twilio.
const CONCURRENCY: u16 = 16;

/// How long after its acknowledgement a page looks for the room's recording: recording starts
/// when a second participant joins, which may be a while after the first.
const RECORDING_WINDOW: SignedDuration = SignedDuration::from_mins(15);

/// How often, at least, a page waiting for its room's recording looks for it.
const RECORDING_POLL: Duration = Duration::from_secs(5);

/// How many times a guarded status write is retried on conflict by re-reading.
const WRITE_RETRIES: usize = 8;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading CallPolicy {0}: {1}")]
    Policy(String, #[source] kube::Error),
    #[error("writing AlertCall status: {0}")]
    Status(#[source] kube::Error),
    #[error(transparent)]
    Account(AccountError),
    #[error("updating the finalizer: {0}")]
    Finalizer(#[source] kube::Error),
    #[error("no randomness for the page's nonce: {0}")]
    Randomness(String),
    #[error("recording the test call on its CallPolicy: {0}")]
    TestNotRecorded(#[source] kube::Error),
    #[error("recording the test call on its CallPolicy lost {0} races with other writers")]
    TestRaces(usize),
    #[error("reading OnCallSchedule {0}: {1}")]
    Schedule(String, #[source] kube::Error),
}

impl Error {
    /// Stable short reason for metrics and events.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::Policy(..) => "PolicyUnreadable",
            Error::Status(_) => "StatusWriteFailed",
            Error::Account(error) => error.reason(),
            Error::Finalizer(_) => "FinalizerWriteFailed",
            Error::Randomness(_) => "NoRandomness",
            Error::TestNotRecorded(_) | Error::TestRaces(_) => "TestNotRecorded",
            Error::Schedule(..) => "ScheduleUnreadable",
        }
    }
}

struct State {
    ctx: Arc<Context>,
    pages: Pages,
    /// Every CallPolicy in scope (the callback endpoints' cache): a page dials without reading
    /// its policy from the API server when the cache already has it ready to dial.
    policies: Policies,
    /// The routes the pager matches with: whether a page's route is suspended, without a read.
    routes: Routes,
    /// Pages being deleted whose calls could not be ended, by `namespace/name`: how many
    /// times in a row, for the retry backoff.
    failures: Mutex<HashMap<String, u32>>,
}

impl State {
    fn failures(&self) -> MutexGuard<'_, HashMap<String, u32>> {
        // NB: a panic elsewhere while holding the lock leaves a counter, still usable.
        self.failures
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// AlertCalls are watched through a guard, so one object that does not parse (written by an
/// older or newer version, say) is reported instead of stalling the watch of every page.
type Guarded = DeserializeGuard<AlertCall>;

fn valid(guarded: &Guarded) -> Option<&AlertCall> {
    guarded.0.as_ref().ok()
}

/// The controller: its page cache (ready once [`CONTROLLER`] is), and the task that runs it
/// until shutdown.
pub fn controller(
    ctx: Arc<Context>,
    policies: Policies,
    routes: Routes,
) -> (Pages, impl std::future::Future<Output = ()>) {
    let (calls, policy_api): (Api<Guarded>, Api<DeserializeGuard<CallPolicy>>) =
        match &ctx.config.namespace {
            Some(ns) => (
                Api::namespaced(ctx.client.clone(), ns),
                Api::namespaced(ctx.client.clone(), ns),
            ),
            None => (Api::all(ctx.client.clone()), Api::all(ctx.client.clone())),
        };
    ctx.readiness.register(CONTROLLER);
    let controller = Controller::new(calls, watcher::Config::default().any_semantic());
    let pages = Pages::new(controller.store(), ctx.own_writes.clone());
    let caches = (pages.clone(), policies, routes);
    let run = async move { run(ctx, controller, policy_api, caches).await };
    (pages, run)
}

async fn run(
    ctx: Arc<Context>,
    controller: Controller<Guarded>,
    policy_api: Api<DeserializeGuard<CallPolicy>>,
    (pages, policies, routes): (Pages, Policies, Routes),
) {
    let store = controller.store();
    let mapper_store = store.clone();
    let state = Arc::new(State {
        ctx: ctx.clone(),
        pages,
        policies,
        routes,
        failures: Mutex::new(HashMap::new()),
    });
    let readiness = ctx.readiness.clone();
    tokio::spawn(async move {
        // NB: kube's store readiness wakes only its latest waiter (a oneshot channel) and the
        // controller itself waits on it too, so look again now and then instead of once.
        loop {
            match tokio::time::timeout(Duration::from_millis(250), store.wait_until_ready()).await {
                Ok(Ok(())) => {
                    readiness.set_ready(CONTROLLER);
                    break;
                }
                Ok(Err(_)) => break,
                Err(_) => continue,
            }
        }
    });
    let controller = controller
        // A policy change (or its TwiML being published) re-reconciles its unfinished pages,
        // those of a later escalation tier included.
        .watches(policy_api, watcher::Config::default(), move |policy| {
            let namespace = policy.namespace().unwrap_or_default();
            let name = policy.name_any();
            mapper_store
                .state()
                .iter()
                .filter(|guarded| {
                    valid(guarded).is_some_and(|call| {
                        call.namespace().as_deref() == Some(namespace.as_str())
                            && call.active_policy() == name
                            && !call.status.as_ref().is_some_and(|s| s.phase.is_terminal())
                    })
                })
                .map(|guarded| ObjectRef::from_obj(&**guarded))
                .collect::<Vec<_>>()
        })
        .with_config(kube::runtime::controller::Config::default().concurrency(CONCURRENCY))
        .run(reconcile, error_policy, state)
        .for_each(|result| async move {
            if let Err(error) = result {
                tracing::debug!(%error, "alertcall reconcile");
            }
        });
    let mut stop = ctx.shutdown.clone();
    tokio::select! {
        _ = controller => {}
        _ = stop.wait_for(|stop| *stop) => {}
    }
}

fn error_policy(call: Arc<Guarded>, error: &Error, state: Arc<State>) -> Requeue {
    tracing::warn!(alertcall = %key_of(&*call), %error, reason = error.reason(), "reconcile failed");
    state
        .ctx
        .metrics
        .reconcile_error(CONTROLLER, error.reason());
    Requeue::requeue(Duration::from_secs(5))
}

fn key_of<K: Resource>(call: &K) -> String {
    format!(
        "{}/{}",
        call.namespace().unwrap_or_default(),
        call.name_any()
    )
}
