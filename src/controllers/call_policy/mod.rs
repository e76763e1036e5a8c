//! The CallPolicy controller: validates a policy against its Twilio account, publishes its TwiML
//! documents (ack, bridge) as protected Serverless assets, points the bridge number at
//! the bridge document, reports what it found as conditions, and undoes all of it on delete.
//!
//! ```text
//!  gather: Secret, IncomingPhoneNumbers, AlertCall attempts  ->  decide.rs (pure)
//!  act:    publish.rs (per-service lock), bridge.rs           ->  status (merge patch, skipped when equal)
//! ```
//!
//! Only the Lease holder reconciles; followers look again at the resync. Deleting a policy runs
//! `cleanup` behind the finalizer: the bridge number's previous webhook is restored and the
//! policy's assets leave the environment before they are deleted.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::core::DeserializeGuard;
use kube::runtime::controller::{Action, Config as ControllerConfig, Controller};
use kube::runtime::events::{Event, EventType};
use kube::runtime::finalizer::{self, finalizer};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use tokio::sync::Mutex as AsyncMutex;

mod bridge;
mod cleanup;
pub mod decide;
mod publish;
mod references;
mod status;

use bridge::{configure_bridge, previous_webhook, restore};
pub use publish::{ensure_ack_map, publish_documents};
use publish::{publish, unpublish};

pub use bridge::PreviousWebhook;
use cleanup::*;
pub use decide::{asset_prefix, keep_versions, twilio_health, validate, Health};
use status::*;

use super::callbacks::{Policies, PolicyUpdates};
use super::{backoff, write_test_results, AccountError, Context, FIELD_MANAGER};
use crate::api::conditions::set_condition;
use crate::api::{AlertCall, Attempt, CallPolicy, CallPolicyStatus, OnCallSchedule};
use crate::escalation::test_call;
use crate::page::documents::{self, HostedDocuments};
use crate::twilio::types::IncomingPhoneNumber;
use crate::twilio::{TwilioClient, TwilioError};

/// Finalizer guarding what the policy changed in Twilio.
pub const FINALIZER: &str = "alertcall.dev/twilio-cleanup";
/// The bridge number's voice webhook before alertcall changed it (JSON of [`PreviousWebhook`]).
pub const PREVIOUS_WEBHOOK_ANNOTATION: &str = "alertcall.dev/bridge-previous-webhook";
/// The one Serverless environment of an install.
pub const ENVIRONMENT: &str = "production";

const CONTROLLER: &str = "callpolicy";

pub const READY: &str = "Ready";
pub const CREDENTIALS_VALID: &str = "CredentialsValid";
pub const TWIML_PUBLISHED: &str = "TwimlPublished";
pub const BRIDGE_CONFIGURED: &str = "BridgeConfigured";
pub const TWILIO_HEALTHY: &str = "TwilioHealthy";

/// Why a reconcile failed. `reason()` is the condition reason, Event reason and metric label.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid spec: {0}")]
    InvalidSpec(String),
    #[error("escalation loop: {0} (onExhausted comes back to a policy already in the chain)")]
    EscalationLoop(String),
    #[error(transparent)]
    Account(#[from] AccountError),
    #[error("Twilio rejected the credentials of account {account_sid}: {source}")]
    Credentials {
        account_sid: String,
        #[source]
        source: TwilioError,
    },
    #[error("{field} {number} is not a phone number of Twilio account {account_sid}{hint}")]
    NumberNotOwned {
        field: &'static str,
        number: String,
        account_sid: String,
        hint: &'static str,
    },
    #[error("bridge number {number} already answers with another policy's document ({url}); give each policy its own bridgeNumber")]
    BridgeNumberInUse { number: String, url: String },
    #[error("bridge number {number} has Voice Application {application_sid}, so Twilio never requests its voice URL and callers would not reach the room: detach the application from the number in Twilio (its Voice configuration: a webhook instead), or choose another bridgeNumber")]
    BridgeNumberHasApplication {
        number: String,
        application_sid: String,
    },
    #[error("bridge number {number} belongs to Elastic SIP Trunk {trunk_sid}, so Twilio sends its calls to the trunk and never requests its voice URL: remove the number from the trunk, or choose another bridgeNumber")]
    BridgeNumberOnTrunk { number: String, trunk_sid: String },
    #[error("Serverless service {service_sid} (--instance-name) holds {kind} {path}, which alertcall did not create; refusing to rebuild it without it: give this install another --instance-name, or remove that {kind} if it is unused")]
    ForeignService {
        service_sid: String,
        kind: &'static str,
        path: String,
    },
    #[error("{step}: {source}")]
    Twilio {
        step: &'static str,
        #[source]
        source: TwilioError,
    },
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error(transparent)]
    Finalizer(Box<finalizer::Error<Error>>),
}

impl Error {
    pub fn reason(&self) -> &'static str {
        match self {
            Error::InvalidSpec(_) => "InvalidSpec",
            Error::EscalationLoop(_) => "EscalationLoop",
            Error::Account(error) => error.reason(),
            Error::Credentials { .. } => "InvalidCredentials",
            Error::NumberNotOwned { field, .. } if field.ends_with("from") => "FromNumberNotOwned",
            Error::NumberNotOwned { .. } => "BridgeNumberNotOwned",
            Error::BridgeNumberInUse { .. } => "BridgeNumberInUse",
            Error::ForeignService { .. } => "ForeignServerlessService",
            Error::BridgeNumberHasApplication { .. } => "BridgeNumberHasApplication",
            Error::BridgeNumberOnTrunk { .. } => "BridgeNumberOnTrunk",
            Error::Twilio { source, .. } => source.reason(),
            Error::Kube(_) => "KubeApiError",
            Error::Finalizer(error) => match error.as_ref() {
                finalizer::Error::ApplyFailed(inner) | finalizer::Error::CleanupFailed(inner) => {
                    inner.reason()
                }
                _ => "FinalizerError",
            },
        }
    }

    /// Needs a person to change something; retrying soon would fail the same way.
    pub fn is_permanent(&self) -> bool {
        match self {
            Error::InvalidSpec(_)
            | Error::EscalationLoop(_)
            | Error::Credentials { .. }
            | Error::NumberNotOwned { .. }
            | Error::BridgeNumberInUse { .. }
            | Error::ForeignService { .. }
            | Error::BridgeNumberHasApplication { .. }
            | Error::BridgeNumberOnTrunk { .. } => true,
            Error::Account(error) => error.is_permanent(),
            Error::Twilio { source, .. } => {
                matches!(source.retry_class(), crate::twilio::RetryClass::Permanent)
                    && !matches!(source, TwilioError::Build { .. })
            }
            Error::Kube(_) => false,
            Error::Finalizer(error) => match error.as_ref() {
                finalizer::Error::ApplyFailed(inner) | finalizer::Error::CleanupFailed(inner) => {
                    inner.is_permanent()
                }
                _ => false,
            },
        }
    }
}

fn twilio(step: &'static str) -> impl FnOnce(TwilioError) -> Error {
    move |source| Error::Twilio { step, source }
}

/// The controller's own state next to the shared [`Context`].
pub struct State {
    ctx: Arc<Context>,
    /// One lock per (account, service): a build must see every other policy's latest versions.
    publish_locks: std::sync::Mutex<HashMap<String, Arc<AsyncMutex<()>>>>,
    /// Consecutive failures per policy, for the error backoff.
    failures: std::sync::Mutex<HashMap<ObjectRef<CallPolicy>, u32>>,
    /// Fetches hosted documents to notice that they vanished.
    http: reqwest::Client,
}

impl State {
    pub fn new(ctx: Arc<Context>) -> Self {
        Self {
            ctx,
            publish_locks: std::sync::Mutex::new(HashMap::new()),
            failures: std::sync::Mutex::new(HashMap::new()),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap_or_default(),
        }
    }

    fn publish_lock(&self, key: &str) -> Arc<AsyncMutex<()>> {
        let mut locks = self
            .publish_locks
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        locks.entry(key.to_string()).or_default().clone()
    }

    fn failures(&self) -> std::sync::MutexGuard<'_, HashMap<ObjectRef<CallPolicy>, u32>> {
        self.failures
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Runs the controller until shutdown, on the callbacks' policy cache and the updates that
/// feed it.
pub async fn run(ctx: Arc<Context>, cached: Policies, updates: PolicyUpdates) {
    let client = ctx.client.clone();
    // NB: through `DeserializeGuard`, one object that does not parse reports itself instead of
    // stalling the watcher for every other policy.
    let (policies, calls, schedules): (Api<Guarded>, Api<AlertCall>, Api<OnCallSchedule>) =
        match &ctx.config.namespace {
            Some(ns) => (
                Api::namespaced(client.clone(), ns),
                Api::namespaced(client.clone(), ns),
                Api::namespaced(client, ns),
            ),
            None => (
                Api::all(client.clone()),
                Api::all(client.clone()),
                Api::all(client),
            ),
        };
    let mut shutdown = ctx.shutdown.clone();
    let leadership = ctx.leader.clone();
    let state = Arc::new(State::new(ctx));
    let controller = Controller::for_stream(updates, cached);
    let (tiers, named) = (controller.store(), controller.store());
    controller
        // A policy change may make or break the escalation loop of the policies naming it.
        .watches(
            policies,
            watcher::Config::default(),
            move |changed: Guarded| references::escalating_to(&tiers, &changed),
        )
        // A schedule appearing or vanishing changes ReferencesResolved of the policies naming it.
        .watches(schedules, watcher::Config::default(), move |schedule| {
            references::naming_schedule(&named, &schedule)
        })
        // An AlertCall's attempts feed its policy's TwilioHealthy condition.
        .watches(calls, watcher::Config::default(), |call: AlertCall| {
            let namespace = call.namespace()?;
            Some(ObjectRef::<Guarded>::new(&call.spec.policy_ref.name).within(&namespace))
        })
        // Followers skip their reconciles; a new leader looks at every policy at once instead
        // of waiting for the resync.
        .reconcile_all_on(became_leader(leadership))
        // NB: a page updates its AlertCall many times a second; one reconcile per burst is enough.
        .with_config(
            ControllerConfig::default()
                .debounce(Duration::from_secs(1))
                .concurrency(4),
        )
        .graceful_shutdown_on(async move {
            let _ = shutdown.wait_for(|stop| *stop).await;
        })
        .run(reconcile, error_policy, state)
        .for_each(|result| async move {
            match result {
                // Already logged and counted by `error_policy`.
                Err(kube::runtime::controller::Error::ReconcilerFailed(..)) | Ok(_) => {}
                // Deleted while queued: nothing to do.
                Err(kube::runtime::controller::Error::ObjectNotFound(..)) => {}
                Err(error) => tracing::warn!(%error, "callpolicy controller"),
            }
        })
        .await;
}

/// One item each time this replica becomes the leader.
fn became_leader(leadership: crate::leader::Leadership) -> impl futures::Stream<Item = ()> {
    futures::stream::unfold((leadership, false), |(leadership, mut was)| async move {
        loop {
            let leading = leadership.is_leader();
            if leading && !was {
                return Some(((), (leadership, true)));
            }
            was = leading;
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    })
}

type Guarded = DeserializeGuard<CallPolicy>;

fn policy_ref(guarded: &Guarded) -> ObjectRef<CallPolicy> {
    let metadata = match &guarded.0 {
        Ok(policy) => &policy.metadata,
        Err(invalid) => &invalid.metadata,
    };
    let name = metadata.name.clone().unwrap_or_default();
    match &metadata.namespace {
        Some(namespace) => ObjectRef::new(&name).within(namespace),
        None => ObjectRef::new(&name),
    }
}

async fn reconcile(guarded: Arc<Guarded>, state: Arc<State>) -> Result<Action, Error> {
    match &guarded.0 {
        Ok(policy) => reconcile_policy(Arc::new(policy.clone()), state).await,
        Err(invalid) => {
            // NB: the API server's schema let it in, but it does not parse; say so on the object.
            if state.ctx.leader.is_leader() {
                let reference = ObjectReference {
                    api_version: Some(CallPolicy::api_version(&()).into_owned()),
                    kind: Some(CallPolicy::kind(&()).into_owned()),
                    name: invalid.metadata.name.clone(),
                    namespace: invalid.metadata.namespace.clone(),
                    uid: invalid.metadata.uid.clone(),
                    ..Default::default()
                };
                let event = Event {
                    type_: EventType::Warning,
                    reason: "InvalidSpec".into(),
                    note: Some(format!("the CallPolicy does not parse: {}", invalid.error)),
                    action: "Reconcile".into(),
                    secondary: None,
                };
                if let Err(error) = state.ctx.recorder.publish(&event, &reference).await {
                    tracing::debug!(%error, "cannot publish event");
                }
            }
            tracing::warn!(object = %policy_ref(&guarded), error = %invalid.error, "CallPolicy does not parse");
            Ok(Action::await_change())
        }
    }
}

#[tracing::instrument(skip(policy, state), fields(namespace = policy.namespace(), name = policy.name_any()))]
async fn reconcile_policy(policy: Arc<CallPolicy>, state: Arc<State>) -> Result<Action, Error> {
    let ctx = &state.ctx;
    // NB: only the Lease holder writes Twilio configuration and status; followers look again later.
    if !ctx.leader.is_leader() {
        return Ok(Action::requeue(ctx.config.policy_resync));
    }
    let namespace = policy.namespace().unwrap_or_default();
    let api: Api<CallPolicy> = Api::namespaced(ctx.client.clone(), &namespace);
    let result = finalizer(&api, FINALIZER, policy.clone(), |event| async {
        match event {
            finalizer::Event::Apply(policy) => apply(&policy, &state).await,
            finalizer::Event::Cleanup(policy) => cleanup(&policy, &state).await,
        }
    })
    .await
    .map_err(|error| Error::Finalizer(Box::new(error)));
    if result.is_ok() {
        state
            .failures()
            .remove(&ObjectRef::from_obj(policy.as_ref()));
    }
    result
}

fn error_policy(guarded: Arc<Guarded>, error: &Error, state: Arc<State>) -> Action {
    let ctx = &state.ctx;
    count_error(&state, error);
    let object = policy_ref(&guarded);
    tracing::warn!(
        %object,
        reason = error.reason(),
        %error,
        "reconcile failed"
    );
    let failures = {
        let mut map = state.failures();
        let count = map.entry(object).or_insert(0);
        *count = count.saturating_add(1);
        *count
    };
    Action::requeue(backoff(failures, ctx.config.policy_resync))
}

// ---- apply ----------------------------------------------------------------------------------

async fn apply(policy: &CallPolicy, state: &State) -> Result<Action, Error> {
    // NB: first, while the resourceVersion it is guarded by is still current.
    recount_tests(policy, state).await?;
    let mut report = Report::new(policy);
    let result = apply_steps(policy, state, &mut report).await;
    match &result {
        Ok(()) => report.set(READY, true, "Ready", "policy is validated and published"),
        Err(error) => report.set(READY, false, error.reason(), &error.to_string()),
    }
    report.status.observed_generation = report.generation;
    write_status(policy, state, report.status).await?;
    let resync = state.ctx.config.policy_resync;
    match result {
        Ok(()) => Ok(Action::requeue(resync)),
        // NB: a Secret or a Twilio number appearing is not a watched change, so a permanent
        // problem is looked at again on the (slow) resync, never in a hot loop.
        Err(error) if error.is_permanent() => {
            count_error(state, &error);
            Ok(Action::requeue(resync))
        }
        Err(error) => Err(error),
    }
}

async fn apply_steps(policy: &CallPolicy, state: &State, report: &mut Report) -> Result<(), Error> {
    let ctx = &state.ctx;
    let spec = &policy.spec;
    let namespace = policy.namespace().unwrap_or_default();
    let name = policy.name_any();

    let problems = validate(spec);
    if !problems.is_empty() {
        return Err(Error::InvalidSpec(problems.join("; ")));
    }

    let account = match ctx.accounts.for_policy(policy).await {
        Ok(account) => account,
        Err(error) => {
            report.set(CREDENTIALS_VALID, false, error.reason(), &error.to_string());
            return Err(error.into());
        }
    };
    let client = &account.client;

    // One cheap authenticated request doubles as the ownership check of `from`.
    let from = match find_number(client, &spec.twilio.from).await {
        Ok(number) => {
            report.set(
                CREDENTIALS_VALID,
                true,
                "Authenticated",
                &format!(
                    "Twilio accepted the credentials of account {}",
                    account.account_sid
                ),
            );
            number
        }
        Err(source)
            if matches!(source.status(), Some(401 | 403)) || source.code() == Some(20003) =>
        {
            let error = Error::Credentials {
                account_sid: account.account_sid.clone(),
                source,
            };
            report.set(CREDENTIALS_VALID, false, error.reason(), &format!(
                "Twilio answered {} for account {}: check accountSid and authToken (or apiKeySid and apiKeySecret) in Secret {}/{}",
                error_summary(&error), account.account_sid, namespace, spec.twilio.credentials_secret_ref.name));
            return Err(error);
        }
        Err(source) => {
            report.set(TWILIO_HEALTHY, false, source.reason(), &source.to_string());
            state.ctx.metrics.twilio_health(&namespace, &name, false);
            return Err(twilio("looking up the from number")(source));
        }
    };
    if from.is_none() && !is_verified_caller_id(client, &spec.twilio.from).await? {
        return Err(Error::NumberNotOwned {
            field: "spec.twilio.from",
            number: spec.twilio.from.clone(),
            account_sid: account.account_sid.clone(),
            hint: " (neither an IncomingPhoneNumber nor a verified Outgoing Caller ID): buy or port the number, verify it as a caller ID in Twilio, or use another from",
        });
    }

    let health = twilio_health(&policy_attempts(state, &namespace, &name).await?);
    report.set(TWILIO_HEALTHY, health.ok, &health.reason, &health.message);
    state
        .ctx
        .metrics
        .twilio_health(&namespace, &name, health.ok);

    let room = documents::room_name(spec, &namespace, &name);
    let docs = HostedDocuments::render(spec, &room);
    let twiml = match publish(
        &account,
        state,
        &namespace,
        &name,
        &docs,
        report.status.twiml.as_ref(),
    )
    .await
    {
        Ok(twiml) => {
            report.set(
                TWIML_PUBLISHED,
                true,
                "Published",
                &format!(
                    "ack and bridge documents published in build {}",
                    twiml.build_sid
                ),
            );
            report.status.twiml = Some(twiml.clone());
            twiml
        }
        Err(error) => {
            report.set(TWIML_PUBLISHED, false, error.reason(), &error.to_string());
            return Err(error);
        }
    };

    match configure_bridge(policy, state, client, &account.account_sid, &twiml).await {
        Ok(Some(sid)) => {
            report.set(
                BRIDGE_CONFIGURED,
                true,
                "Configured",
                &format!(
                    "{} (GET) answers with the bridge document",
                    spec.twilio.bridge_number.as_deref().unwrap_or_default()
                ),
            );
            report.status.bridge_number_sid = Some(sid);
        }
        Ok(None) => {
            report.set(
                BRIDGE_CONFIGURED,
                true,
                "NotRequested",
                "spec.twilio.bridgeNumber is not set",
            );
            report.status.bridge_number_sid = None;
        }
        Err(error) => {
            report.set(BRIDGE_CONFIGURED, false, error.reason(), &error.to_string());
            return Err(error);
        }
    }
    // NB: last, so a policy in a loop still has its documents: a page reaching it calls, then
    // stops escalating, rather than hanging unpublished.
    references::check(ctx, policy, report).await
}

/// The account's IncomingPhoneNumber with exactly this number (Twilio matches partially).
async fn find_number(
    client: &TwilioClient,
    number: &str,
) -> Result<Option<IncomingPhoneNumber>, TwilioError> {
    Ok(client
        .list_incoming_phone_numbers(number)
        .await?
        .into_iter()
        .find(|n| n.phone_number == number))
}

/// A verified Outgoing Caller ID is a legitimate `from` too (trial accounts often use one).
async fn is_verified_caller_id(client: &TwilioClient, number: &str) -> Result<bool, Error> {
    let ids = client
        .list_outgoing_caller_ids(number)
        .await
        .map_err(twilio("looking up verified caller IDs"))?;
    Ok(ids.iter().any(|id| id.phone_number == number))
}

/// The last attempts of this policy's AlertCalls.
async fn policy_attempts(
    state: &State,
    namespace: &str,
    name: &str,
) -> Result<Vec<Attempt>, Error> {
    let api: Api<AlertCall> = Api::namespaced(state.ctx.client.clone(), namespace);
    let calls = api.list(&ListParams::default()).await?;
    let mut attempts: Vec<(Option<jiff::Timestamp>, Attempt)> = calls
        .items
        .into_iter()
        .filter(|call| call.spec.policy_ref.name == name)
        .flat_map(|call| {
            let created = call.metadata.creation_timestamp.as_ref().map(|t| t.0);
            call.status
                .map(|s| s.attempts)
                .unwrap_or_default()
                .into_iter()
                .map(move |attempt| (created, attempt))
        })
        .collect();
    // Oldest first, so the per-recipient fold below keeps the most recent attempt.
    attempts.sort_by_key(|(created, attempt)| {
        let at = attempt
            .ended_at
            .as_ref()
            .or(attempt.started_at.as_ref())
            .or(attempt.intent_at.as_ref())
            .map(|t| t.0);
        (at.or(*created), *created)
    });
    Ok(attempts.into_iter().map(|(_, attempt)| attempt).collect())
}

// ---- publishing -----------------------------------------------------------------------------

// ---- cleanup --------------------------------------------------------------------------------

// ---- status ---------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permanent_and_transient_errors() {
        assert!(Error::InvalidSpec("x".into()).is_permanent());
        let unreachable = Error::Twilio {
            step: "x",
            source: TwilioError::Api {
                operation: crate::twilio::Operation::ListIncomingPhoneNumbers,
                status: 503,
                code: None,
                message: String::new(),
                more_info: None,
                retry_after: None,
            },
        };
        assert!(!unreachable.is_permanent());
        assert_eq!(unreachable.reason(), "TwilioServerError");
    }
}
