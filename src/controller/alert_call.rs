//! The AlertCall controller: drives each page through [`crate::escalation`].
//!
//! Every reconcile: resolve the policy and its Twilio account, poll Twilio for the page's live
//! calls, fold what was seen ([`observe`]), decide ([`step`]), persist the decided status with a
//! resourceVersion-guarded replace (this write records dial intents), and only if that write won
//! and this replica leads, act: dials go to the [`crate::runner`], cancels, polls and lookups
//! go to Twilio directly. Their results are recorded by [`record`], again guarded.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::StreamExt;
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::core::DeserializeGuard;
use kube::runtime::controller::Action as Requeue;
use kube::runtime::events::{Event, EventType};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{watcher, Controller};
use kube::{Resource, ResourceExt};

use super::{callbacks, AccountError, Context, FIELD_MANAGER};
use crate::api::{
    conditions, validate, AlertCall, AlertCallStatus, AlertRoute, AttemptStatus, CallPolicy, Order,
    Phase,
};
use crate::escalation::{self, observe, step, Observation, StepContext, Withdrawn};
use crate::page::{calls, DialUrls, Executed, Executor, Outcomes};
use crate::twilio::documents;

/// Name of this controller in metrics and readiness.
pub const CONTROLLER: &str = "alertcall";

/// Condition on the AlertCall saying whether its policy could be used.
pub const POLICY_RESOLVED: &str = "PolicyResolved";

/// Condition on an AlertCall being deleted: False while its calls cannot be ended (Twilio
/// unreachable), with the reason; deletion waits for them.
pub const CALLS_ENDED: &str = "CallsEnded";

/// Held by every page from its first dial until it is finished and none of its calls is live,
/// so deleting a page that is still calling cancels its calls instead of leaving them ringing.
pub const FINALIZER: &str = "alertcall.dev/cancel-calls";

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
        }
    }
}

struct State {
    ctx: Arc<Context>,
    pages: Pages,
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

/// The controller's cache of every page it watches, shared with the callback endpoints.
pub type Pages = Store<Guarded>;

/// Every call SID a page records: a lookup or a callback never ties one of them to another
/// attempt.
pub fn claimed_sids(pages: &Pages) -> BTreeSet<String> {
    pages
        .state()
        .iter()
        .filter_map(|guarded| valid(guarded))
        .filter_map(|call| call.status.as_ref())
        .flat_map(|status| status.attempts.iter().filter_map(|a| a.call_sid.clone()))
        .collect()
}

fn valid(guarded: &Guarded) -> Option<&AlertCall> {
    guarded.0.as_ref().ok()
}

/// The controller: its page cache (ready once [`CONTROLLER`] is), and the task that runs it
/// until shutdown.
pub fn controller(ctx: Arc<Context>) -> (Pages, impl std::future::Future<Output = ()>) {
    let (calls, policies): (Api<Guarded>, Api<DeserializeGuard<CallPolicy>>) =
        match &ctx.config.namespace {
            Some(ns) => (
                Api::namespaced(ctx.client.clone(), ns),
                Api::namespaced(ctx.client.clone(), ns),
            ),
            None => (Api::all(ctx.client.clone()), Api::all(ctx.client.clone())),
        };
    ctx.readiness.register(CONTROLLER);
    let controller = Controller::new(calls, watcher::Config::default().any_semantic());
    let store = controller.store();
    let pages = store.clone();
    let run = async move { run(ctx, controller, policies).await };
    (pages, run)
}

async fn run(
    ctx: Arc<Context>,
    controller: Controller<Guarded>,
    policies: Api<DeserializeGuard<CallPolicy>>,
) {
    let store = controller.store();
    let mapper_store = store.clone();
    let state = Arc::new(State {
        ctx: ctx.clone(),
        pages: store.clone(),
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
        // A policy change (or its TwiML being published) re-reconciles its unfinished pages.
        .watches(policies, watcher::Config::default(), move |policy| {
            let namespace = policy.namespace().unwrap_or_default();
            let name = policy.name_any();
            mapper_store
                .state()
                .iter()
                .filter(|guarded| {
                    valid(guarded).is_some_and(|call| {
                        call.namespace().as_deref() == Some(namespace.as_str())
                            && call.spec.policy_ref.name == name
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

#[tracing::instrument(skip(guarded, state), fields(alertcall = %key_of(&*guarded)))]
async fn reconcile(guarded: Arc<Guarded>, state: Arc<State>) -> Result<Requeue, Error> {
    let ctx = &state.ctx;
    let call = match &guarded.0 {
        Ok(call) => call,
        Err(invalid) => {
            tracing::warn!(error = %invalid.error, "AlertCall does not parse");
            if ctx.leader.is_leader() {
                let event = Event {
                    type_: EventType::Warning,
                    reason: "InvalidAlertCall".into(),
                    note: Some(invalid.error.chars().take(1000).collect()),
                    action: "Parse".into(),
                    secondary: None,
                };
                if let Err(error) = ctx.recorder.publish(&event, &guarded.object_ref(&())).await {
                    tracing::debug!(%error, "recording an event");
                }
            }
            return Ok(Requeue::await_change());
        }
    };
    // NB: followers read but never write or dial; they look again in case they take over.
    if !ctx.leader.is_leader() {
        return Ok(Requeue::requeue(Duration::from_secs(5)));
    }
    let namespace = call.namespace().unwrap_or_default();
    let name = call.name_any();
    let status = call.status.clone().unwrap_or_default();
    let dialing = ctx.runner.dialing(&namespace, &name);
    let settled = status
        .attempts
        .iter()
        .all(|a| a.status.is_final() || a.acknowledged);
    let deleting = call.metadata.deletion_timestamp.is_some();
    if (status.phase.is_terminal() || deleting) && settled && dialing.is_empty() {
        // Nothing of this page can ring any more: an old page deletes at once.
        ctx.runner.release_page(&namespace, &name);
        state.failures().remove(&key_of(call));
        remove_finalizer(ctx, call).await?;
        // NB: the room's recording may start after the page is done; whether the policy records
        // is only known once it is read below.
        if deleting || !awaiting_recording(&status, Timestamp::now()) {
            return Ok(Requeue::await_change());
        }
    }

    let policy_name = &call.spec.policy_ref.name;
    let policies: Api<CallPolicy> = Api::namespaced(ctx.client.clone(), &namespace);
    let policy = match policies.get_opt(policy_name).await {
        Ok(Some(policy)) => policy,
        Ok(None) => {
            let message = format!("CallPolicy {policy_name} not found in {namespace}");
            if deleting {
                return abandon(ctx, call, "PolicyNotFound", &message).await;
            }
            return blocked(ctx, call, "PolicyNotFound", &message, None).await;
        }
        Err(error) => return Err(Error::Policy(policy_name.clone(), error)),
    };
    let problems = validate::call_policy(&policy.spec);
    if !problems.is_empty() {
        let list: Vec<String> = problems.iter().map(ToString::to_string).collect();
        let message = format!("CallPolicy {policy_name} is invalid: {}", list.join("; "));
        // The policy watch brings the page back when the policy is fixed.
        return blocked(
            ctx,
            call,
            "PolicyInvalid",
            &message,
            Some(Requeue::await_change()),
        )
        .await;
    }
    let account = match ctx.accounts.for_policy(&policy).await {
        Ok(account) => account,
        Err(error) if error.is_permanent() => {
            if deleting {
                return abandon(ctx, call, error.reason(), &error.to_string()).await;
            }
            return blocked(ctx, call, error.reason(), &error.to_string(), None).await;
        }
        Err(error) => return Err(Error::Account(error)),
    };
    let Some(ack_base) = ack_base(ctx, &policy) else {
        let message = "no acknowledgement URL yet: the policy's TwiML is not published and --public-url is not set";
        return blocked(ctx, call, "TwimlNotPublished", message, None).await;
    };
    ctx.runner
        .remember_policy(&namespace, policy_name, &account.account_sid);

    let now = Timestamp::now();
    let room = documents::room_name(&policy.spec, &namespace, policy_name);
    let mut next = status.clone();
    if next.nonce.is_none() && !next.phase.is_terminal() {
        // NB: recorded with the first intent (the same guarded write), so every URL of every
        // call of this page carries it.
        match super::callbacks::new_nonce() {
            Ok(nonce) => next.nonce = Some(nonce),
            Err(error) => return Err(Error::Randomness(error.to_string())),
        }
    }
    conditions::set_condition(
        &mut next.conditions,
        POLICY_RESOLVED,
        true,
        "Resolved",
        &format!("calls follow CallPolicy {policy_name}"),
        call.metadata.generation,
        Time(now),
    );
    for observation in calls::poll(&account.client, &next, &room, &ack_base, now).await {
        observe(&mut next, &observation, now);
    }
    let records = policy.spec.conference.record;
    if records && awaiting_recording(&next, now) {
        let since = next.started_at.as_ref().map_or(now, |t| t.0);
        match calls::recording_url(&account.client, &room, since).await {
            Ok(Some(url)) => next.recording_url = Some(url),
            Ok(None) => {}
            Err(error) => tracing::warn!(%room, %error, "looking for the room's recording"),
        }
    }
    let step_ctx = StepContext {
        start_index: start_index(&state.pages, call, &policy),
        calls_last_hour: calls_last_hour(ctx, &state.pages, call, &next, now),
        withdrawn: withdrawn(ctx, call, &namespace).await,
        dialing: dialing.clone(),
        conference_room: Some(room.clone()),
    };
    let decision = step(&policy.spec, &call.spec, &next, now, &step_ctx);
    let mut decided = decision.status.clone();
    decided.observed_generation = call.metadata.generation;
    // Dials are intents in `decided`, so they count as live too; a page from before the
    // finalizer existed gets it at its next reconcile while it still has calls.
    let live_calls = decided
        .attempts
        .iter()
        .any(|a| !a.status.is_final() && !a.acknowledged);
    // NB: the finalizer is written before the first intent, so no call is ever placed for a page
    // that could vanish without canceling it. The status write below is then guarded by the
    // resourceVersion this write returned.
    let with_finalizer;
    let call = if live_calls && !deleting && !has_finalizer(call) {
        match add_finalizer(ctx, call).await {
            Ok(updated) => {
                with_finalizer = updated;
                &with_finalizer
            }
            Err(error) if is_conflict(&error) => {
                tracing::debug!("finalizer write lost the race; not acting");
                return Ok(Requeue::requeue(Duration::from_millis(500)));
            }
            Err(error) => return Err(Error::Finalizer(error)),
        }
    } else {
        call
    };
    if decided != status {
        match write_status(ctx, call, &decided).await {
            Ok(_) => transitions(ctx, call, &status, &decided).await,
            Err(error) if is_conflict(&error) => {
                // Someone else wrote first (a newer watch event, or another replica): their
                // status wins and nothing decided here may be acted on.
                tracing::debug!("status write lost the race; not acting");
                return Ok(Requeue::requeue(Duration::from_millis(500)));
            }
            Err(error) => return Err(Error::Status(error)),
        }
    }

    let live: HashSet<String> = decided
        .attempts
        .iter()
        .filter(|a| !a.status.is_final() && a.call_sid.is_some())
        .map(|a| a.id.clone())
        .collect();
    ctx.runner
        .sync_live(&account.account_sid, &namespace, &name, &live);

    let urls = |attempt_id: &str| {
        let nonce = decided.nonce.as_deref().unwrap_or_default();
        dial_urls(
            ctx.config.public_url.as_ref(),
            &ack_base,
            &callbacks::callback_query(&namespace, &name, attempt_id, nonce),
        )
    };
    let executor = Executor {
        runner: &ctx.runner,
        account: &account,
        policy: &policy.spec,
        summary: &call.spec.summary,
        namespace: &namespace,
        name: &name,
        limits: calls::limits(&policy.spec),
        urls: &urls,
        hooks: &ctx.hooks,
        outcomes: Recorded {
            ctx: ctx.clone(),
            pages: state.pages.clone(),
            namespace: namespace.clone(),
            name: name.clone(),
        },
    };
    let Executed {
        found,
        unreachable,
        wake,
    } = executor.run(decision.actions, &decided, now).await;
    if !found.is_empty() {
        if let Err(error) = record(ctx, &namespace, &name, &found).await {
            tracing::warn!(%error, "recording lookups and polls");
        }
    }

    if deleting {
        return deletion_waits(&state, call, &unreachable).await;
    }

    let poll_every = ctx.config.poll_interval;
    let mut requeue = match wake {
        Some(at) => Duration::try_from(at.duration_since(Timestamp::now()))
            .unwrap_or(Duration::ZERO)
            .max(Duration::from_millis(200)),
        None if decided.phase.is_terminal() => Duration::from_secs(3600),
        None => Duration::from_secs(300),
    };
    let watching = decided.attempts.iter().any(|a| {
        (!a.status.is_final() && !a.acknowledged) || calls::recently_answered(a, Timestamp::now())
    });
    if watching || !ctx.runner.dialing(&namespace, &name).is_empty() {
        requeue = requeue.min(poll_every);
    }
    if records && awaiting_recording(&decided, Timestamp::now()) {
        requeue = requeue.min(poll_every.max(RECORDING_POLL));
    }
    Ok(Requeue::requeue(requeue))
}

/// A page someone acknowledged by key (so joined the room) whose room has no recording URL yet,
/// still calling or finished recently enough that one may still come. Only meaningful when the
/// policy records the room. A page acknowledged with kubectl alone sent nobody to the room.
fn awaiting_recording(status: &AlertCallStatus, now: Timestamp) -> bool {
    let recent = !status.phase.is_terminal()
        || status
            .finished_at
            .as_ref()
            .is_some_and(|at| now.duration_since(at.0) < RECORDING_WINDOW);
    status.recording_url.is_none() && status.attempts.iter().any(|a| a.acknowledged) && recent
}

/// The acknowledgement URL without the per-call query: the policy's hosted document once the
/// CallPolicy reconciler published it, else this operator's own endpoint.
fn ack_base(ctx: &Context, policy: &CallPolicy) -> Option<String> {
    let hosted = policy
        .status
        .as_ref()
        .and_then(|s| s.twiml.as_ref())
        .map(|t| t.urls.ack.clone())
        .filter(|url| !url.is_empty());
    hosted.or_else(|| {
        ctx.config.public_url.as_ref().map(|public| {
            format!(
                "{}/twiml/ack/{}/{}",
                public.as_str().trim_end_matches('/'),
                policy.namespace().unwrap_or_default(),
                policy.name_any()
            )
        })
    })
}

/// Records why the page cannot proceed, once, and waits.
async fn blocked(
    ctx: &Context,
    call: &AlertCall,
    reason: &str,
    message: &str,
    requeue: Option<Requeue>,
) -> Result<Requeue, Error> {
    let status = call.status.clone().unwrap_or_default();
    let mut next = status.clone();
    let changed = conditions::set_condition(
        &mut next.conditions,
        POLICY_RESOLVED,
        false,
        reason,
        message,
        call.metadata.generation,
        Time(Timestamp::now()),
    );
    if changed {
        tracing::warn!(reason, %message, "page blocked");
        match write_status(ctx, call, &next).await {
            Ok(_) => emit_event(ctx, call, EventType::Warning, reason, "Resolve", message).await,
            Err(error) if is_conflict(&error) => {
                return Ok(Requeue::requeue(Duration::from_millis(500)))
            }
            Err(error) => return Err(Error::Status(error)),
        }
    }
    Ok(requeue.unwrap_or_else(|| Requeue::requeue(Duration::from_secs(60))))
}

async fn withdrawn(ctx: &Context, call: &AlertCall, namespace: &str) -> Option<Withdrawn> {
    if call.metadata.deletion_timestamp.is_some() {
        return Some(Withdrawn::Deleted);
    }
    let route = call.spec.route_ref.as_ref()?;
    let routes: Api<AlertRoute> = Api::namespaced(ctx.client.clone(), namespace);
    match routes.get_opt(&route.name).await {
        Ok(Some(route)) if route.spec.suspend => Some(Withdrawn::Suspended),
        _ => None,
    }
}

/// RoundRobin: where this page starts, after the previous page of the same policy.
fn start_index(pages: &Pages, call: &AlertCall, policy: &CallPolicy) -> u32 {
    if policy.spec.strategy.order != Order::RoundRobin {
        return 0;
    }
    let namespace = call.namespace();
    let created = |c: &AlertCall| (c.metadata.creation_timestamp.clone(), c.name_any());
    let this = created(call);
    let all = pages.state();
    let previous = all
        .iter()
        .filter_map(|guarded| valid(guarded))
        .filter(|c| {
            c.namespace() == namespace
                && c.spec.policy_ref.name == call.spec.policy_ref.name
                && c.name_any() != call.name_any()
                && created(c) < this
        })
        .filter_map(|c| {
            let start = c.status.as_ref().and_then(|s| s.start_index)?;
            Some((created(c), start))
        })
        .max_by(|a, b| a.0.cmp(&b.0))
        .map(|(_, start)| start);
    escalation::next_start_index(previous, policy.spec.recipients.len())
}

/// Calls placed on the same Twilio account in the last hour, across all pages.
fn calls_last_hour(
    ctx: &Context,
    pages: &Pages,
    call: &AlertCall,
    status: &AlertCallStatus,
    now: Timestamp,
) -> u32 {
    let since = now - SignedDuration::from_hours(1);
    let recent = |s: &AlertCallStatus| {
        s.attempts
            .iter()
            .filter(|a| a.intent_at.as_ref().is_some_and(|t| t.0 >= since))
            .count()
    };
    let namespace = call.namespace().unwrap_or_default();
    let account = ctx
        .runner
        .account_of(&namespace, &call.spec.policy_ref.name);
    let all = pages.state();
    let others: usize = all
        .iter()
        .filter_map(|guarded| valid(guarded))
        .filter(|c| {
            !(c.namespace().as_deref() == Some(namespace.as_str())
                && c.name_any() == call.name_any())
        })
        .filter(|c| {
            let ns = c.namespace().unwrap_or_default();
            account.is_some() && ctx.runner.account_of(&ns, &c.spec.policy_ref.name) == account
        })
        .filter_map(|c| c.status.as_ref().map(recent))
        .sum();
    u32::try_from(others + recent(status)).unwrap_or(u32::MAX)
}

/// The URLs of one call. Our own acknowledgement endpoint learns from the query which attempt
/// pressed a key; a hosted document is static, and the keypress is seen in the call's Events
/// instead. Twilio reports progress to our status endpoint only when it can reach us.
fn dial_urls(public_url: Option<&url::Url>, ack_base: &str, callback_query: &str) -> DialUrls {
    let public = public_url.map(|public| public.as_str().trim_end_matches('/'));
    let own = public
        .is_some_and(|public| ack_base.starts_with(public) && ack_base.contains("/twiml/ack/"));
    DialUrls {
        ack: if own {
            format!("{ack_base}?{callback_query}")
        } else {
            ack_base.to_string()
        },
        status_callback: public.map(|public| format!("{public}/twilio/status?{callback_query}")),
    }
}

/// Dial outcomes go into the AlertCall's status; lookups skip every SID any page records.
#[derive(Clone)]
struct Recorded {
    ctx: Arc<Context>,
    pages: Pages,
    namespace: String,
    name: String,
}

impl Outcomes for Recorded {
    async fn record(&self, attempt_id: String, observations: Vec<Observation>) {
        if let Err(error) = record(&self.ctx, &self.namespace, &self.name, &observations).await {
            tracing::error!(attempt = %attempt_id, %error, "recording a dial outcome");
        }
    }

    fn claimed_sids(&self) -> BTreeSet<String> {
        claimed_sids(&self.pages)
    }
}

fn has_finalizer(call: &AlertCall) -> bool {
    call.finalizers().iter().any(|f| f == FINALIZER)
}

/// Writes the finalizer list, guarded by the resourceVersion `call` was read at (a merge patch
/// carrying `metadata.resourceVersion` is a precondition: 409 if the object moved on).
async fn write_finalizers(
    ctx: &Context,
    call: &AlertCall,
    finalizers: Vec<String>,
) -> Result<AlertCall, kube::Error> {
    let api: Api<AlertCall> =
        Api::namespaced(ctx.client.clone(), &call.namespace().unwrap_or_default());
    let patch = serde_json::json!({
        "metadata": {
            "resourceVersion": call.resource_version(),
            "finalizers": finalizers,
        }
    });
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.to_string()),
        ..PatchParams::default()
    };
    api.patch(&call.name_any(), &params, &Patch::Merge(&patch))
        .await
}

async fn add_finalizer(ctx: &Context, call: &AlertCall) -> Result<AlertCall, kube::Error> {
    let mut finalizers = call.finalizers().to_vec();
    finalizers.push(FINALIZER.to_string());
    let updated = write_finalizers(ctx, call, finalizers).await?;
    tracing::debug!("finalizer added");
    Ok(updated)
}

/// Removes the finalizer when present. A conflict is left to the next reconcile (the newer
/// version of the object brings it back); a page already gone is done.
async fn remove_finalizer(ctx: &Context, call: &AlertCall) -> Result<(), Error> {
    if !has_finalizer(call) {
        return Ok(());
    }
    let finalizers: Vec<String> = call
        .finalizers()
        .iter()
        .filter(|f| *f != FINALIZER)
        .cloned()
        .collect();
    match write_finalizers(ctx, call, finalizers).await {
        Ok(_) => {
            tracing::info!("no call of this page is live; finalizer removed");
            Ok(())
        }
        Err(error) if is_conflict(&error) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(error) => Err(Error::Finalizer(error)),
    }
}

/// A page being deleted whose calls can never be reached (its policy or credentials are gone):
/// waiting would hold the object forever, so it goes, with a Warning saying so.
async fn abandon(
    ctx: &Context,
    call: &AlertCall,
    reason: &str,
    message: &str,
) -> Result<Requeue, Error> {
    let note = format!(
        "deleted without ending its calls, which cannot be reached: {message}; any still ringing stop at their ring timeout"
    );
    tracing::warn!(reason, %note, "page deleted");
    emit_event(ctx, call, EventType::Warning, reason, "Delete", &note).await;
    remove_finalizer(ctx, call).await?;
    Ok(Requeue::await_change())
}

/// A page being deleted still has live calls: it waits for Twilio to report them ended. When
/// ending them failed (Twilio unreachable), the `CallsEnded` condition and a Warning say why,
/// and the next try backs off; once they could be ended it looks again at the poll interval.
async fn deletion_waits(
    state: &State,
    call: &AlertCall,
    unreachable: &[String],
) -> Result<Requeue, Error> {
    let ctx = &state.ctx;
    let key = key_of(call);
    if unreachable.is_empty() {
        state.failures().remove(&key);
        return Ok(Requeue::requeue(ctx.config.poll_interval));
    }
    let failures = {
        let mut map = state.failures();
        let count = map.entry(key).or_insert(0);
        *count = count.saturating_add(1);
        *count
    };
    let delay = super::call_policy::decide::backoff(failures, Duration::from_secs(300));
    tracing::warn!(failures, ?delay, "deletion waits: calls could not be ended");
    let message = format!(
        "deletion waits: {} call(s) could not be ended, retrying with backoff: {}",
        unreachable.len(),
        unreachable.join("; ")
    );
    let message: String = message.chars().take(1000).collect();
    // NB: written (with its Event) when the page starts waiting, not on every retry: each status
    // write is a watch event that would reconcile at once and defeat the backoff.
    let waiting = call
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == CALLS_ENDED))
        .is_some_and(|c| c.status == "False");
    if !waiting
        && write_condition(ctx, call, CALLS_ENDED, false, "TwilioUnreachable", &message)
            .await
            .map_err(Error::Status)?
    {
        emit_event(
            ctx,
            call,
            EventType::Warning,
            "CancelFailed",
            "Delete",
            &message,
        )
        .await;
    }
    Ok(Requeue::requeue(delay))
}

/// Sets one condition on the current version of a page, re-reading on conflict. True when it
/// changed.
async fn write_condition(
    ctx: &Context,
    call: &AlertCall,
    type_: &str,
    ok: bool,
    reason: &str,
    message: &str,
) -> Result<bool, kube::Error> {
    let api: Api<AlertCall> =
        Api::namespaced(ctx.client.clone(), &call.namespace().unwrap_or_default());
    for _ in 0..WRITE_RETRIES {
        let Some(current) = api.get_opt(&call.name_any()).await? else {
            return Ok(false);
        };
        let mut status = current.status.clone().unwrap_or_default();
        let changed = conditions::set_condition(
            &mut status.conditions,
            type_,
            ok,
            reason,
            message,
            current.metadata.generation,
            Time(Timestamp::now()),
        );
        if !changed {
            return Ok(false);
        }
        match write_status(ctx, &current, &status).await {
            Ok(_) => return Ok(true),
            Err(error) if is_conflict(&error) => continue,
            Err(error) => return Err(error),
        }
    }
    Ok(false)
}

fn is_conflict(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == 409)
}

/// Replaces the status, guarded by the resourceVersion `call` was read at.
async fn write_status(
    ctx: &Context,
    call: &AlertCall,
    status: &AlertCallStatus,
) -> Result<AlertCall, kube::Error> {
    let api: Api<AlertCall> =
        Api::namespaced(ctx.client.clone(), &call.namespace().unwrap_or_default());
    let mut object = call.clone();
    object.metadata.managed_fields = None;
    object.status = Some(status.clone());
    let params = PostParams {
        dry_run: false,
        field_manager: Some(FIELD_MANAGER.to_string()),
    };
    api.replace_status(&call.name_any(), &params, &object).await
}

/// Folds observations into the current status of a page and writes it, re-reading on conflict.
/// True when something changed. Followers record nothing.
pub async fn record(
    ctx: &Context,
    namespace: &str,
    name: &str,
    observations: &[Observation],
) -> Result<bool, kube::Error> {
    if !ctx.leader.is_leader() {
        return Ok(false);
    }
    let api: Api<AlertCall> = Api::namespaced(ctx.client.clone(), namespace);
    for _ in 0..WRITE_RETRIES {
        let Some(call) = api.get_opt(name).await? else {
            return Ok(false);
        };
        let old = call.status.clone().unwrap_or_default();
        let mut new = old.clone();
        let now = Timestamp::now();
        let mut changed = false;
        for observation in observations {
            changed |= observe(&mut new, observation, now);
        }
        if !changed {
            return Ok(false);
        }
        match write_status(ctx, &call, &new).await {
            Ok(_) => {
                transitions(ctx, &call, &old, &new).await;
                return Ok(true);
            }
            Err(error) if is_conflict(&error) => continue,
            Err(error) => return Err(error),
        }
    }
    Ok(false)
}

/// Records a Kubernetes Event on the page.
async fn emit_event(
    ctx: &Context,
    call: &AlertCall,
    type_: EventType,
    reason: &str,
    action: &str,
    note: &str,
) {
    let event = Event {
        type_,
        reason: reason.to_string(),
        note: Some(note.chars().take(1000).collect()),
        action: action.to_string(),
        secondary: None,
    };
    if let Err(error) = ctx.recorder.publish(&event, &call.object_ref(&())).await {
        tracing::debug!(%error, reason, "recording an event");
    }
}

/// Events and metrics for what changed between two statuses of a page.
async fn transitions(
    ctx: &Context,
    call: &AlertCall,
    old: &AlertCallStatus,
    new: &AlertCallStatus,
) {
    for attempt in &new.attempts {
        let before = old.attempts.iter().find(|a| a.id == attempt.id);
        let who = format!("{} ({})", attempt.recipient, attempt.id);
        let sid = attempt.call_sid.as_deref().unwrap_or("-");
        if attempt.call_sid.is_some() && before.and_then(|b| b.call_sid.as_ref()).is_none() {
            tracing::info!(call_sid = %sid, attempt = %attempt.id, "dialed");
            emit_event(
                ctx,
                call,
                EventType::Normal,
                "Dialed",
                "Dial",
                &format!("called {who}, call {sid}"),
            )
            .await;
        }
        let was = before.map(|b| b.status).unwrap_or_default();
        if attempt.status == AttemptStatus::InProgress && was != AttemptStatus::InProgress {
            emit_event(
                ctx,
                call,
                EventType::Normal,
                "Answered",
                "Observe",
                &format!("{who} answered, call {sid}"),
            )
            .await;
        }
        if attempt.acknowledged && !before.is_some_and(|b| b.acknowledged) {
            tracing::info!(call_sid = %sid, attempt = %attempt.id, "key pressed");
            emit_event(
                ctx,
                call,
                EventType::Normal,
                "KeyPressed",
                "Observe",
                &format!("{who} pressed a key, call {sid}"),
            )
            .await;
        }
        if attempt.status.is_final() && !was.is_final() {
            let outcome = serde_json::to_value(attempt.status)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default();
            let label = if attempt.acknowledged {
                "acknowledged".to_string()
            } else {
                outcome.clone()
            };
            ctx.metrics
                .calls
                .get_or_create(&crate::metrics::OutcomeLabels { outcome: label })
                .inc();
            if let Some(code) = attempt.twilio_error_code {
                ctx.metrics.call_error(&code.to_string());
            }
            let (type_, reason) = match attempt.status {
                AttemptStatus::Canceled => (EventType::Normal, "Canceled"),
                AttemptStatus::Failed if attempt.call_sid.is_none() => {
                    (EventType::Warning, "DialRefused")
                }
                _ => (EventType::Normal, "CallEnded"),
            };
            let detail = attempt
                .message
                .as_deref()
                .map(|m| format!(": {m}"))
                .unwrap_or_default();
            emit_event(
                ctx,
                call,
                type_,
                reason,
                "Observe",
                &format!("call to {who} ended {outcome}, call {sid}{detail}"),
            )
            .await;
        }
    }
    if let (Some(url), None) = (&new.recording_url, &old.recording_url) {
        tracing::info!(recording_url = %url, "room recorded");
        emit_event(
            ctx,
            call,
            EventType::Normal,
            "Recorded",
            "Observe",
            &format!("the incident room is recorded: {url}"),
        )
        .await;
    }
    if new.phase != old.phase {
        ctx.metrics.page_phase(&format!("{:?}", new.phase));
        if new.phase == Phase::Acknowledged {
            if let (Some(start), Some(acked)) = (&new.started_at, &new.acknowledged_at) {
                let seconds = acked.0.duration_since(start.0).as_secs_f64().max(0.0);
                ctx.metrics.ack_latency.observe(seconds);
            }
        }
        let reason = format!("{:?}", new.phase);
        let type_ = match new.phase {
            Phase::Failed | Phase::Exhausted => EventType::Warning,
            _ => EventType::Normal,
        };
        let note = match new.phase {
            Phase::Acknowledged => format!(
                "acknowledged by {}",
                new.acknowledged_by.as_deref().unwrap_or("-")
            ),
            Phase::Calling => "calling".to_string(),
            Phase::Waiting => format!(
                "waiting out the route's group wait; no call before {}",
                new.not_before
                    .as_ref()
                    .map_or("-".to_string(), |t| t.0.to_string())
            ),
            other => format!(
                "page finished: {other:?} after {} call(s)",
                new.attempts.len()
            ),
        };
        emit_event(ctx, call, type_, &reason, "Escalate", &note).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_carries_the_query_only_to_our_own_endpoints() {
        let public = url::Url::parse("https://pager.example/").ok();
        let own = "https://pager.example/twiml/ack/ns/oncall";
        let hosted = "https://svc-1234.twil.io/alertcall/ns/oncall/ack.xml";
        let query = "ns=ns&name=page&attempt=r1-alice&nonce=n1";
        let cases = [
            (
                public.as_ref(),
                own,
                format!("{own}?{query}"),
                Some(format!("https://pager.example/twilio/status?{query}")),
            ),
            (
                public.as_ref(),
                hosted,
                hosted.to_string(),
                Some(format!("https://pager.example/twilio/status?{query}")),
            ),
            (None, hosted, hosted.to_string(), None),
        ];
        for (public, ack_base, ack, status_callback) in cases {
            assert_eq!(
                dial_urls(public, ack_base, query),
                DialUrls {
                    ack,
                    status_callback
                },
                "{ack_base}"
            );
        }
    }
}
