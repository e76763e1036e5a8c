//! The CallPolicy controller: validates a policy against its Twilio account, publishes its TwiML
//! documents (ack, bridge, no-ack) as protected Serverless assets, points the bridge number at
//! the bridge document, reports what it found as conditions, and undoes all of it on delete.
//!
//! ```text
//!  gather: Secret, IncomingPhoneNumbers, AlertCall attempts  ->  decide (pure, below)
//!  act:    publish (per-service lock), bridge webhook         ->  status (merge patch, skipped when equal)
//! ```
//!
//! NB: a Serverless deployment replaces the whole environment, so every new build carries the
//! active build's asset versions of *other* policies; publishing is serialized per service.

use std::collections::{BTreeMap, HashMap, HashSet};
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
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex as AsyncMutex;

use super::{Account, AccountError, Context, FIELD_MANAGER};
use crate::api::conditions::set_condition;
use crate::api::{AlertCall, Attempt, CallPolicy, CallPolicySpec, CallPolicyStatus, TwimlStatus};
use crate::message::{self, MessageContext};
use crate::twilio::client::{AssetUpload, HttpMethod};
use crate::twilio::documents::{self, HostedDocuments};
use crate::twilio::types::{Environment, IncomingPhoneNumber, VoiceWebhook};
use crate::twilio::{TwilioClient, TwilioError};

/// Finalizer guarding what the policy changed in Twilio.
pub const FINALIZER: &str = "alertcall.dev/twilio-cleanup";
/// The bridge number's voice webhook before alertcall changed it (JSON of [`PreviousWebhook`]).
pub const PREVIOUS_WEBHOOK_ANNOTATION: &str = "alertcall.dev/bridge-previous-webhook";
/// The one Serverless environment of an install.
pub const ENVIRONMENT: &str = "production";

const CONTROLLER: &str = "callpolicy";
/// Twilio's cap on inline TwiML of Calls create.
const INLINE_TWIML_LIMIT: usize = 4000;
/// Longest `AlertCall.spec.summary` the schema accepts: what a call can be asked to speak.
const MAX_SUMMARY_CHARS: usize = 2000;

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
            Error::Account(error) => error.reason(),
            Error::Credentials { .. } => "InvalidCredentials",
            Error::NumberNotOwned { field, .. } if field.ends_with("from") => "FromNumberNotOwned",
            Error::NumberNotOwned { .. } => "BridgeNumberNotOwned",
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
            Error::InvalidSpec(_) | Error::Credentials { .. } | Error::NumberNotOwned { .. } => {
                true
            }
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

/// What the bridge number had before alertcall pointed it at the bridge document.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PreviousWebhook {
    pub number_sid: String,
    pub phone_number: String,
    #[serde(default)]
    pub voice_url: Option<String>,
    #[serde(default)]
    pub voice_method: Option<String>,
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

/// Runs the controller until shutdown.
pub async fn run(ctx: Arc<Context>) {
    let client = ctx.client.clone();
    // NB: through `DeserializeGuard`, one object that does not parse reports itself instead of
    // stalling the watcher for every other policy.
    let (policies, calls): (Api<Guarded>, Api<AlertCall>) = match &ctx.config.namespace {
        Some(ns) => (
            Api::namespaced(client.clone(), ns),
            Api::namespaced(client, ns),
        ),
        None => (Api::all(client.clone()), Api::all(client)),
    };
    let mut shutdown = ctx.shutdown.clone();
    let leadership = ctx.leader.clone();
    let state = Arc::new(State::new(ctx));
    Controller::new(policies, watcher::Config::default())
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

/// Exponential from 1 s with jitter, capped at the resync interval (and 5 minutes).
pub fn backoff(failures: u32, resync: Duration) -> Duration {
    let cap = resync
        .min(Duration::from_secs(300))
        .max(Duration::from_secs(1));
    let base = Duration::from_secs(1).saturating_mul(1u32 << failures.saturating_sub(1).min(10));
    let full = base.min(cap);
    let half = full / 2;
    half + half.mul_f64(fastrand::f64())
}

// ---- apply ----------------------------------------------------------------------------------

/// Conditions gathered during one reconcile.
struct Report {
    status: CallPolicyStatus,
    generation: Option<i64>,
    now: Time,
}

impl Report {
    fn new(policy: &CallPolicy) -> Self {
        Self {
            status: policy.status.clone().unwrap_or_default(),
            generation: policy.metadata.generation,
            now: Time(jiff::Timestamp::now()),
        }
    }

    fn set(&mut self, type_: &str, ok: bool, reason: &str, message: &str) {
        set_condition(
            &mut self.status.conditions,
            type_,
            ok,
            reason,
            message,
            self.generation,
            self.now.clone(),
        );
    }
}

async fn apply(policy: &CallPolicy, state: &State) -> Result<Action, Error> {
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

fn count_error(state: &State, error: &Error) {
    state
        .ctx
        .metrics
        .reconcile_errors
        .get_or_create(&crate::metrics::ReconcileErrorLabels {
            controller: CONTROLLER.into(),
            reason: error.reason().into(),
        })
        .inc();
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
                    "ack, bridge and no-ack documents published in build {}",
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
    Ok(())
}

fn error_summary(error: &Error) -> String {
    match error {
        Error::Credentials { source, .. } => match (source.status(), source.code()) {
            (Some(status), Some(code)) => format!("HTTP {status} (error {code})"),
            (Some(status), None) => format!("HTTP {status}"),
            _ => source.to_string(),
        },
        other => other.to_string(),
    }
}

/// Problems with the spec that need no Twilio request: the schema's gaps, the template, and
/// whether the longest plausible call still fits Twilio's inline TwiML limit.
pub fn validate(spec: &CallPolicySpec) -> Vec<String> {
    let mut problems: Vec<String> = crate::api::validate::call_policy(spec)
        .into_iter()
        .map(|p| p.to_string())
        .collect();
    if !problems.is_empty() {
        return problems;
    }
    let summary = longest_summary(&spec.message.template);
    // A long but realistic hosted URL: the ack document's URL is part of every call's TwiML.
    let ack_url = format!(
        "https://{}.twil.io/{}/ack.xml",
        "x".repeat(60),
        "y".repeat(250)
    );
    match documents::call_twiml(spec, &summary, &ack_url) {
        Ok(twiml) if twiml.chars().count() <= INLINE_TWIML_LIMIT => {}
        Ok(twiml) => problems.push(format!(
            "spec.message: the longest call renders to {} characters of TwiML, over Twilio's {INLINE_TWIML_LIMIT}; shorten the template or lower repeat",
            twiml.chars().count()
        )),
        Err(error) => problems.push(format!(
            "spec.message: the longest call does not fit Twilio's {INLINE_TWIML_LIMIT}-character TwiML limit ({error}); shorten the template"
        )),
    }
    problems
}

/// The template rendered with a sample whose free text is as long as Kubernetes allows (an
/// Event message is cut at 1024 bytes), capped at what an AlertCall summary may hold.
fn longest_summary(template: &str) -> String {
    let mut sample = MessageContext::sample();
    sample.message = "Back-off restarting failed container & <sidecar> ".repeat(21);
    sample.message.truncate(1024);
    let (text, _) = message::render_or_fallback(template, &sample);
    text.chars().take(MAX_SUMMARY_CHARS).collect()
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

/// The TwilioHealthy condition a policy's attempts give.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    pub ok: bool,
    pub reason: String,
    pub message: String,
}

/// Pure: the most recent attempt per recipient decides; any with a Twilio error code makes the
/// policy unhealthy, naming code and recipient, and a later clean attempt clears it.
pub fn twilio_health(attempts_oldest_first: &[Attempt]) -> Health {
    let mut latest: BTreeMap<&str, &Attempt> = BTreeMap::new();
    for attempt in attempts_oldest_first {
        // An intent has not reached Twilio yet: it says nothing about errors.
        if attempt.call_sid.is_none() && attempt.twilio_error_code.is_none() {
            continue;
        }
        latest.insert(attempt.recipient.as_str(), attempt);
    }
    let failing: Vec<String> = latest
        .values()
        .filter_map(|attempt| {
            let code = attempt.twilio_error_code?;
            let detail = attempt
                .message
                .as_deref()
                .filter(|m| !m.is_empty())
                .map(|m| format!(": {m}"))
                .unwrap_or_default();
            Some(format!(
                "Twilio error {code} ({}) calling {}{detail}",
                error_meaning(code),
                attempt.recipient
            ))
        })
        .collect();
    if failing.is_empty() {
        Health {
            ok: true,
            reason: if latest.is_empty() {
                "NoCallsYet"
            } else {
                "RecentCallsSucceeded"
            }
            .into(),
            message: if latest.is_empty() {
                "no call has been placed for this policy yet".into()
            } else {
                "the most recent call to each recipient reached Twilio without error".into()
            },
        }
    } else {
        Health {
            ok: false,
            reason: "TwilioErrors".into(),
            message: failing.join("; "),
        }
    }
}

fn error_meaning(code: i64) -> &'static str {
    match code {
        21211 => "invalid To number",
        21217 => "To number does not appear valid",
        21214 => "To number cannot be reached",
        21215 => "no geographic permission to call this country",
        21216 => "number is blocked",
        21210 => "From is not a verified caller ID or Twilio number",
        21212 => "invalid From number",
        21219 => "To is not verified on this trial account",
        13227 => "no geographic permission to dial this country",
        _ => "see twilio.com/docs/errors",
    }
}

// ---- publishing -----------------------------------------------------------------------------

/// `<namespace>/<name>/`, the folder of a policy's documents. Twilio caps asset paths at 255
/// characters, so long names are shortened and made unique again by a hash.
pub fn asset_prefix(namespace: &str, name: &str) -> String {
    let prefix = format!("{namespace}/{name}/");
    if prefix.len() <= 200 {
        return prefix;
    }
    use sha2::Digest;
    let digest = sha2::Sha256::digest(prefix.as_bytes());
    let hash: String = digest.iter().take(6).map(|b| format!("{b:02x}")).collect();
    let short: String = name.chars().take(100).collect();
    format!("{namespace}/{short}-{hash}/")
}

const DOCUMENTS: [&str; 3] = ["ack.xml", "bridge.xml", "no-ack.xml"];

async fn find_or_create_environment(
    client: &TwilioClient,
    service_sid: &str,
) -> Result<Environment, Error> {
    let environments = client
        .list_environments(service_sid)
        .await
        .map_err(twilio("listing Serverless environments"))?;
    if let Some(environment) = environments
        .into_iter()
        .find(|e| e.unique_name == ENVIRONMENT)
    {
        return Ok(environment);
    }
    client
        .create_environment(service_sid, ENVIRONMENT, None)
        .await
        .map_err(twilio("creating the Serverless environment"))
}

/// Asset version SIDs of the environment's active build, except those of `exclude` assets
/// and of assets that no longer exist.
async fn other_versions(
    client: &TwilioClient,
    service_sid: &str,
    environment: &Environment,
    exclude: &HashSet<String>,
    existing: &HashSet<String>,
) -> Result<Vec<String>, Error> {
    let Some(build_sid) = environment.build_sid.as_deref().filter(|s| !s.is_empty()) else {
        return Ok(Vec::new());
    };
    let build = match client.fetch_build(service_sid, build_sid).await {
        Ok(build) => build,
        Err(error) if error.is_not_found() => return Ok(Vec::new()),
        Err(error) => return Err(twilio("reading the active build")(error)),
    };
    Ok(keep_versions(
        build.asset_versions.as_deref().unwrap_or_default(),
        exclude,
        existing,
    ))
}

/// Pure: the version SIDs of a build's `asset_versions` JSON to carry into the next build.
pub fn keep_versions(
    versions: &[serde_json::Value],
    exclude: &HashSet<String>,
    existing: &HashSet<String>,
) -> Vec<String> {
    versions
        .iter()
        .filter_map(|v| {
            let sid = v.get("sid")?.as_str()?;
            let asset = v.get("asset_sid")?.as_str()?;
            (!exclude.contains(asset) && existing.contains(asset)).then(|| sid.to_string())
        })
        .collect()
}

async fn build_and_deploy(
    client: &TwilioClient,
    service_sid: &str,
    environment: &Environment,
    versions: &[String],
) -> Result<String, Error> {
    if versions.is_empty() {
        client
            .clear_deployment(service_sid, &environment.sid)
            .await
            .map_err(twilio("emptying the Serverless environment"))?;
        return Ok(String::new());
    }
    let build = client
        .create_build(service_sid, versions)
        .await
        .map_err(twilio("creating the Serverless build"))?;
    client
        .wait_for_build(
            service_sid,
            &build.sid,
            Duration::from_secs(1),
            Duration::from_secs(300),
        )
        .await
        .map_err(twilio("waiting for the Serverless build"))?;
    client
        .create_deployment(service_sid, &environment.sid, &build.sid)
        .await
        .map_err(twilio("deploying the Serverless build"))?;
    Ok(build.sid)
}

async fn publish(
    account: &Account,
    state: &State,
    namespace: &str,
    name: &str,
    docs: &HostedDocuments,
    current: Option<&TwimlStatus>,
) -> Result<TwimlStatus, Error> {
    let client = &account.client;
    let account_sid = account.account_sid.as_str();
    let auth_token = account.auth_token.as_deref();
    let hash = docs.content_hash();
    if let Some(current) = current {
        if current.content_hash == hash
            && !current.build_sid.is_empty()
            && !current.urls.ack.is_empty()
        {
            if still_served(state, auth_token, &current.urls.ack, &docs.ack).await {
                return Ok(current.clone());
            }
            tracing::info!(
                namespace,
                name,
                "the hosted ack document is gone or changed; publishing again"
            );
        }
    }
    let instance = &state.ctx.config.instance_name;
    let lock = state.publish_lock(&format!("{account_sid}/{instance}"));
    let _guard = lock.lock().await;

    let service = match client
        .find_service(instance)
        .await
        .map_err(twilio("looking up the Serverless service"))?
    {
        Some(service) => service,
        None => client
            .create_service(instance, &format!("alertcall {instance}"))
            .await
            .map_err(twilio("creating the Serverless service"))?,
    };
    let environment = find_or_create_environment(client, &service.sid).await?;
    let mut assets = client
        .list_assets(&service.sid)
        .await
        .map_err(twilio("listing Serverless assets"))?;
    let prefix = asset_prefix(namespace, name);
    let mut ours = HashSet::new();
    let mut new_versions = Vec::new();
    let mut urls = crate::api::TwimlUrls::default();
    for (file, content) in DOCUMENTS
        .iter()
        .zip([&docs.ack, &docs.bridge, &docs.no_ack])
    {
        let friendly = format!("{prefix}{file}");
        let asset = match assets.iter().find(|a| a.friendly_name == friendly) {
            Some(asset) => asset.clone(),
            None => {
                let asset = client
                    .create_asset(&service.sid, &friendly)
                    .await
                    .map_err(twilio("creating a Serverless asset"))?;
                assets.push(asset.clone());
                asset
            }
        };
        let path = format!("/{friendly}");
        let version = client
            .upload_asset_version(
                &service.sid,
                &asset.sid,
                &AssetUpload {
                    path: path.clone(),
                    file_name: (*file).to_string(),
                    content_type: "application/xml".into(),
                    content: content.as_bytes().to_vec(),
                },
            )
            .await
            .map_err(twilio("uploading a TwiML document"))?;
        ours.insert(asset.sid.clone());
        new_versions.push(version.sid);
        let url = client.asset_url(&environment, &path);
        match *file {
            "ack.xml" => urls.ack = url,
            "bridge.xml" => urls.bridge = url,
            _ => urls.no_ack = url,
        }
    }
    let existing: HashSet<String> = assets.iter().map(|a| a.sid.clone()).collect();
    let mut versions = other_versions(client, &service.sid, &environment, &ours, &existing).await?;
    versions.extend(new_versions);
    let build_sid = build_and_deploy(client, &service.sid, &environment, &versions).await?;
    tracing::info!(namespace, name, build_sid, "TwiML documents published");
    Ok(TwimlStatus {
        service_sid: service.sid,
        build_sid,
        content_hash: hash,
        urls,
    })
}

/// The one GET a resync spends on the documents: the ack document fetched as Twilio would
/// (signed). Only a 404 or different content counts as drift; anything else (no auth token with
/// API-key credentials, a network error, a 5xx) is not a reason to upload again.
async fn still_served(state: &State, auth_token: Option<&str>, url: &str, expected: &str) -> bool {
    let Some(token) = auth_token else {
        return true;
    };
    let signature = crate::twilio::signature::compute(token, url, &[]);
    let response = match state
        .http
        .get(url)
        .header("X-Twilio-Signature", signature)
        .send()
        .await
    {
        Ok(response) => response,
        Err(error) => {
            tracing::debug!(%error, url, "cannot check the hosted document");
            return true;
        }
    };
    match response.status().as_u16() {
        404 => false,
        200 => response.text().await.map_or(true, |body| body == expected),
        _ => true,
    }
}

/// Removes the policy's assets from the environment (a new build without them) and deletes them.
async fn unpublish(
    client: &TwilioClient,
    state: &State,
    account_sid: &str,
    namespace: &str,
    name: &str,
) -> Result<(), Error> {
    let instance = &state.ctx.config.instance_name;
    let lock = state.publish_lock(&format!("{account_sid}/{instance}"));
    let _guard = lock.lock().await;
    let Some(service) = client
        .find_service(instance)
        .await
        .map_err(twilio("looking up the Serverless service"))?
    else {
        return Ok(());
    };
    let assets = client
        .list_assets(&service.sid)
        .await
        .map_err(twilio("listing Serverless assets"))?;
    let prefix = asset_prefix(namespace, name);
    let ours: HashSet<String> = assets
        .iter()
        .filter(|a| a.friendly_name.starts_with(&prefix))
        .map(|a| a.sid.clone())
        .collect();
    if ours.is_empty() {
        return Ok(());
    }
    let existing: HashSet<String> = assets.iter().map(|a| a.sid.clone()).collect();
    let environment = find_or_create_environment(client, &service.sid).await?;
    let versions = other_versions(client, &service.sid, &environment, &ours, &existing).await?;
    build_and_deploy(client, &service.sid, &environment, &versions).await?;
    for sid in &ours {
        match client.delete_asset(&service.sid, sid).await {
            Ok(()) => {}
            Err(error) if error.is_not_found() => {}
            Err(error) => return Err(twilio("deleting a Serverless asset")(error)),
        }
    }
    tracing::info!(namespace, name, "TwiML documents removed");
    Ok(())
}

// ---- bridge number --------------------------------------------------------------------------

fn previous_webhook(policy: &CallPolicy) -> Option<PreviousWebhook> {
    policy
        .annotations()
        .get(PREVIOUS_WEBHOOK_ANNOTATION)
        .and_then(|text| serde_json::from_str(text).ok())
}

async fn set_previous_annotation(
    policy: &CallPolicy,
    state: &State,
    previous: Option<&PreviousWebhook>,
) -> Result<(), Error> {
    let api: Api<CallPolicy> = Api::namespaced(
        state.ctx.client.clone(),
        &policy.namespace().unwrap_or_default(),
    );
    let value = match previous {
        Some(previous) => {
            serde_json::Value::String(serde_json::to_string(previous).unwrap_or_default())
        }
        None => serde_json::Value::Null,
    };
    let patch = serde_json::json!({
        "metadata": {
            "annotations": { PREVIOUS_WEBHOOK_ANNOTATION: value },
        }
    });
    api.patch(
        &policy.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await?;
    Ok(())
}

async fn restore(client: &TwilioClient, previous: &PreviousWebhook) -> Result<(), Error> {
    let webhook = VoiceWebhook {
        voice_url: previous.voice_url.clone(),
        voice_method: previous.voice_method.clone(),
    };
    match client
        .set_voice_webhook(&previous.number_sid, &webhook)
        .await
    {
        Ok(_) => Ok(()),
        // The number left the account: nothing of ours is on it any more.
        Err(error) if error.is_not_found() => Ok(()),
        Err(error) => Err(twilio("restoring the bridge number's voice webhook")(error)),
    }
}

/// Points the bridge number at the bridge document; returns its SID. Restores a number the
/// policy no longer names.
async fn configure_bridge(
    policy: &CallPolicy,
    state: &State,
    client: &TwilioClient,
    account_sid: &str,
    twiml: &TwimlStatus,
) -> Result<Option<String>, Error> {
    let previous = previous_webhook(policy);
    let wanted = policy.spec.twilio.bridge_number.as_deref();
    if let Some(previous) = &previous {
        if wanted != Some(previous.phone_number.as_str()) {
            restore(client, previous).await?;
            set_previous_annotation(policy, state, None).await?;
            return configure_bridge_fresh(policy, state, client, account_sid, twiml, None).await;
        }
    }
    configure_bridge_fresh(policy, state, client, account_sid, twiml, previous).await
}

async fn configure_bridge_fresh(
    policy: &CallPolicy,
    state: &State,
    client: &TwilioClient,
    account_sid: &str,
    twiml: &TwimlStatus,
    previous: Option<PreviousWebhook>,
) -> Result<Option<String>, Error> {
    let Some(wanted) = policy.spec.twilio.bridge_number.as_deref() else {
        return Ok(None);
    };
    let Some(number) = find_number(client, wanted)
        .await
        .map_err(twilio("looking up the bridge number"))?
    else {
        return Err(Error::NumberNotOwned {
            field: "spec.twilio.bridgeNumber",
            number: wanted.to_string(),
            account_sid: account_sid.to_string(),
            hint:
                " (IncomingPhoneNumbers): buy or port it into this account, or remove bridgeNumber",
        });
    };
    let url = &twiml.urls.bridge;
    let in_place = number.voice_url.as_deref() == Some(url.as_str())
        && number
            .voice_method
            .as_deref()
            .is_some_and(|m| m.eq_ignore_ascii_case("GET"));
    if in_place {
        return Ok(Some(number.sid));
    }
    if number
        .voice_application_sid
        .as_deref()
        .is_some_and(|s| !s.is_empty())
    {
        tracing::warn!(
            number = wanted,
            "bridge number has a VoiceApplicationSid, which overrides VoiceUrl"
        );
    }
    // NB: remembered before the change, so a crash in between never loses the original.
    let own_url = number.voice_url.as_deref().is_some_and(|u| {
        u.contains(&asset_prefix(
            &policy.namespace().unwrap_or_default(),
            &policy.name_any(),
        ))
    });
    if previous.as_ref().map(|p| p.number_sid.as_str()) != Some(number.sid.as_str()) && !own_url {
        let remembered = PreviousWebhook {
            number_sid: number.sid.clone(),
            phone_number: number.phone_number.clone(),
            voice_url: number.voice_url.clone(),
            voice_method: number.voice_method.clone(),
        };
        set_previous_annotation(policy, state, Some(&remembered)).await?;
    }
    client
        .set_voice_webhook(
            &number.sid,
            &VoiceWebhook {
                voice_url: Some(url.clone()),
                voice_method: Some(HttpMethod::Get.as_str().to_string()),
            },
        )
        .await
        .map_err(twilio("setting the bridge number's voice webhook"))?;
    let event = Event {
        type_: EventType::Normal,
        reason: "BridgeConfigured".into(),
        note: Some(format!("{wanted} now answers with the bridge document")),
        action: "UpdateVoiceUrl".into(),
        secondary: None,
    };
    publish_event(state, policy, event).await;
    Ok(Some(number.sid))
}

async fn publish_event(state: &State, policy: &CallPolicy, event: Event) {
    let reference = policy.object_ref(&());
    if let Err(error) = state.ctx.recorder.publish(&event, &reference).await {
        tracing::debug!(%error, "cannot publish event");
    }
}

// ---- cleanup --------------------------------------------------------------------------------

async fn cleanup(policy: &CallPolicy, state: &State) -> Result<Action, Error> {
    let namespace = policy.namespace().unwrap_or_default();
    let name = policy.name_any();
    let previous = previous_webhook(policy);
    if previous.is_none() && policy.status.as_ref().is_none_or(|s| s.twiml.is_none()) {
        // Nothing was published or changed for this policy (it never got that far).
        return Ok(Action::await_change());
    }
    let account = match state.ctx.accounts.for_policy(policy).await {
        Ok(account) => account,
        Err(error) if error.is_permanent() => return give_up(policy, state, &error.into()).await,
        Err(error) => return Err(cleanup_failed(policy, state, error.into()).await),
    };
    let client = &account.client;
    let mut result = Ok(());
    if let Some(previous) = previous {
        result = restore(client, &previous).await;
    }
    if result.is_ok() {
        result = unpublish(client, state, &account.account_sid, &namespace, &name).await;
    }
    match result {
        Ok(()) => Ok(Action::await_change()),
        Err(error) if is_unauthorized(&error) => give_up(policy, state, &error).await,
        Err(error) => Err(cleanup_failed(policy, state, error).await),
    }
}

fn is_unauthorized(error: &Error) -> bool {
    matches!(error, Error::Twilio { source, .. } if matches!(source.status(), Some(401 | 403)))
}

/// Without usable credentials nothing can be undone, and holding the object forever would also
/// block deleting its namespace: say so loudly on the object's Events and let it go.
async fn give_up(policy: &CallPolicy, state: &State, error: &Error) -> Result<Action, Error> {
    let event = Event {
        type_: EventType::Warning,
        reason: "CleanupSkipped".into(),
        note: Some(format!(
            "{error}: the bridge number's webhook and the TwiML assets in Twilio were left as they are"
        )),
        action: "Cleanup".into(),
        secondary: None,
    };
    publish_event(state, policy, event).await;
    tracing::warn!(namespace = policy.namespace(), name = policy.name_any(), %error, "cleanup skipped");
    Ok(Action::await_change())
}

/// Records why deletion waits, so it never waits silently.
async fn cleanup_failed(policy: &CallPolicy, state: &State, error: Error) -> Error {
    let mut report = Report::new(policy);
    report.set(
        READY,
        false,
        "CleanupPending",
        &format!("deletion waits until Twilio changes are undone: {error}"),
    );
    if let Err(kube_error) = write_status(policy, state, report.status).await {
        tracing::debug!(%kube_error, "cannot record the cleanup failure");
    }
    error
}

// ---- status ---------------------------------------------------------------------------------

async fn write_status(
    policy: &CallPolicy,
    state: &State,
    status: CallPolicyStatus,
) -> Result<(), Error> {
    if policy.status.as_ref() == Some(&status) {
        return Ok(());
    }
    let api: Api<CallPolicy> = Api::namespaced(
        state.ctx.client.clone(),
        &policy.namespace().unwrap_or_default(),
    );
    let mut body = serde_json::to_value(&status).unwrap_or_default();
    // NB: merge patch keeps absent keys; cleared fields are sent as null to remove them.
    if let Some(map) = body.as_object_mut() {
        for key in ["twiml", "bridgeNumberSid"] {
            map.entry(key).or_insert(serde_json::Value::Null);
        }
    }
    let patch = serde_json::json!({ "status": body });
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.to_string()),
        ..Default::default()
    };
    match api
        .patch_status(&policy.name_any(), &params, &Patch::Merge(&patch))
        .await
    {
        Ok(_) => Ok(()),
        // Deleted meanwhile: nothing to report on.
        Err(kube::Error::Api(response)) if response.code == 404 => Ok(()),
        Err(error) => Err(error.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures;

    fn attempt(recipient: &str, sid: Option<&str>, code: Option<i64>) -> Attempt {
        Attempt {
            id: format!("{recipient}-{sid:?}"),
            recipient: recipient.into(),
            call_sid: sid.map(str::to_string),
            twilio_error_code: code,
            message: code.map(|c| format!("error {c}")),
            ..Default::default()
        }
    }

    #[test]
    fn default_policy_is_valid() {
        assert_eq!(validate(&fixtures::policy_spec()), Vec::<String>::new());
    }

    #[test]
    fn template_that_cannot_fit_inline_twiml_is_rejected() {
        let mut spec = fixtures::policy_spec();
        // Every `&` becomes `&amp;` in TwiML: 900 of them alone are 4500 characters.
        spec.message.template = format!("{} {{{{ message }}}}", "&".repeat(900));
        let problems = validate(&spec);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("4000"), "{problems:?}");
    }

    #[test]
    fn broken_template_is_reported_before_length() {
        let mut spec = fixtures::policy_spec();
        spec.message.template = "{{ reason ".into();
        assert!(validate(&spec)[0].starts_with("spec.message.template"));
    }

    #[test]
    fn health_names_code_and_recipient_and_clears_on_success() {
        let failing = [attempt("alice", None, Some(21211))];
        let health = twilio_health(&failing);
        assert!(!health.ok);
        assert!(health.message.contains("21211"), "{}", health.message);
        assert!(health.message.contains("alice"), "{}", health.message);
        let recovered = [
            attempt("alice", None, Some(21211)),
            attempt("alice", Some("CA1"), None),
        ];
        assert!(twilio_health(&recovered).ok);
        assert_eq!(twilio_health(&[]).reason, "NoCallsYet");
    }

    #[test]
    fn health_ignores_intents_and_keeps_other_recipients_errors() {
        let attempts = [
            attempt("bob", None, Some(21215)),
            attempt("alice", Some("CA1"), None),
            attempt("bob", None, None),
        ];
        let health = twilio_health(&attempts);
        assert!(!health.ok);
        assert!(health.message.contains("bob") && health.message.contains("21215"));
    }

    #[test]
    fn next_build_keeps_other_policies_versions_only() {
        let versions = vec![
            serde_json::json!({"sid": "ZN1", "asset_sid": "ZHmine"}),
            serde_json::json!({"sid": "ZN2", "asset_sid": "ZHother"}),
            serde_json::json!({"sid": "ZN3", "asset_sid": "ZHgone"}),
            serde_json::json!({"path": "/broken"}),
        ];
        let exclude = HashSet::from(["ZHmine".to_string()]);
        let existing = HashSet::from(["ZHmine".to_string(), "ZHother".to_string()]);
        assert_eq!(keep_versions(&versions, &exclude, &existing), vec!["ZN2"]);
    }

    #[test]
    fn asset_paths_stay_within_twilio_limits_and_distinct() {
        assert_eq!(asset_prefix("prod", "oncall"), "prod/oncall/");
        let long_a = asset_prefix(&"n".repeat(63), &format!("{}a", "x".repeat(252)));
        let long_b = asset_prefix(&"n".repeat(63), &format!("{}b", "x".repeat(252)));
        assert_ne!(long_a, long_b);
        assert!(format!("/{long_a}no-ack.xml").len() <= 255, "{long_a}");
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let resync = Duration::from_secs(60);
        assert!(backoff(1, resync) <= Duration::from_secs(1));
        assert!(backoff(20, resync) <= resync);
        assert!(backoff(20, resync) >= Duration::from_secs(30));
    }

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
