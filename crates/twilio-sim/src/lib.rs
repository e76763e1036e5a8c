#![forbid(unsafe_code)]
//! A loopback Twilio: the subset of the REST API alertcall uses (v2010 Calls, Call Events,
//! Conferences, Participants, IncomingPhoneNumbers; Serverless v1 Services, Environments,
//! Variables, Assets, Asset Versions, Functions, Function Versions, Builds, Deployments; Sync v1
//! Services, Maps, Map Items) with Twilio's paths, form parameters, JSON shapes and error
//! bodies, plus behaviour: calls ring, are answered or not per a [`Script`], run their TwiML, join
//! conference rooms and send signed status callbacks, paced by CPS and a concurrency cap.
//! Deployed Functions are not run as JavaScript: alertcall's acknowledgement function is
//! emulated natively (see `functions.rs`); call Events are readable 15 simulated minutes after a
//! call ends, as on Twilio, unless [`SimConfig::immediate_call_events`].
//!
//! ```text
//!  HTTP (routes, serverless) ──> State (calls, rooms, numbers, assets, ledger) <── engine (one task per call)
//!                                                     ^                                 │ signed webhooks
//!  SimHandle (tests, demo) ───────────────────────────┘                     loopback receivers / own assets
//! ```
//!
//! URL conventions: everything is served on one origin `http://127.0.0.1:PORT` (`api_url`,
//! `serverless_url` and `upload_url` are all that origin). An Environment's `domain_name` is
//! `127.0.0.1:PORT/twil.io/<service unique name>-<environment suffix or unique name>`, so the asset
//! at `path` is `http://{domain_name}{path}` (a deployed Function too). Sync is served under
//! `/sync` (`sync_url`), because its paths are Serverless's (`/v1/Services`). Simulated time runs `time_scale` times faster than
//! real time; ledger timestamps are simulated time.
//!
//! Control endpoints for standalone use (loopback only, no auth):
//! - `GET /__sim/ledger`: the [`Ledger`] as JSON (`{"entries": [...]}`);
//! - `PUT /__sim/script`: replace the recipients' script (YAML body, see [`script`]);
//! - `POST /__sim/dial_in` (`From`, `To`): an inbound call to an owned number;
//! - `POST /__sim/faults` (`Fault=429|500|hang`, optional `Path`, `Method`, `Times`,
//!   `RetryAfter`), `DELETE /__sim/faults`;
//! - `POST /__sim/invalid_numbers` (`Number`, `Code=21211|21214|21217`).
//!
//! Verified caller IDs (`GET .../OutgoingCallerIds.json`) are seeded with
//! [`SimHandle::add_caller_id`].
//!
//! Owned numbers are seeded with Twilio's own `POST .../IncomingPhoneNumbers.json`
//! (`PhoneNumber`, optional `VoiceUrl`, `VoiceMethod`...) or [`SimHandle::add_number`].
//!
//! Deliberate simplifications: no +5 s buffer on `Timeout`; `<Dial>` to numbers, clients or SIP
//! is not simulated (only `<Conference>`); `<Play>` counts 5 s and fetches nothing; hold music
//! (`waitUrl`) is noted in the ledger, not fetched; Call Events list the webhooks the simulator
//! made (not the REST requests), with parameters in snake_case like Twilio's example.

mod engine;
mod filters;
mod functions;
pub mod ledger;
mod routes;
pub mod script;
mod serverless;
pub mod signature;
mod state;
mod sync;
pub mod twiml;

#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

pub use ledger::{Entry, Event, Ledger};
pub use script::{Outcome, Recipient, Script};

use state::Inner;
pub use state::NUMBER_FIELDS;

/// Every Twilio REST route the simulator serves, as (method, OpenAPI path template), in the
/// templates of Twilio's OpenAPI documents (`twilio_api_v2010.json`, `twilio_serverless_v1.json`).
/// `tests/openapi.rs` checks each against those documents; a unit test counts the router's match
/// arms so that a route added to the router without an entry here fails.
pub const ROUTES: &[(&str, &str)] = &[
    ("POST", "/2010-04-01/Accounts/{AccountSid}/Calls.json"),
    ("GET", "/2010-04-01/Accounts/{AccountSid}/Calls.json"),
    ("GET", "/2010-04-01/Accounts/{AccountSid}/Calls/{Sid}.json"),
    ("POST", "/2010-04-01/Accounts/{AccountSid}/Calls/{Sid}.json"),
    (
        "DELETE",
        "/2010-04-01/Accounts/{AccountSid}/Calls/{Sid}.json",
    ),
    (
        "GET",
        "/2010-04-01/Accounts/{AccountSid}/Calls/{CallSid}/Events.json",
    ),
    ("GET", "/2010-04-01/Accounts/{AccountSid}/Conferences.json"),
    (
        "GET",
        "/2010-04-01/Accounts/{AccountSid}/Conferences/{Sid}.json",
    ),
    (
        "POST",
        "/2010-04-01/Accounts/{AccountSid}/Conferences/{Sid}.json",
    ),
    (
        "GET",
        "/2010-04-01/Accounts/{AccountSid}/Conferences/{ConferenceSid}/Recordings.json",
    ),
    (
        "GET",
        "/2010-04-01/Accounts/{AccountSid}/Conferences/{ConferenceSid}/Participants.json",
    ),
    (
        "GET",
        "/2010-04-01/Accounts/{AccountSid}/Conferences/{ConferenceSid}/Participants/{CallSid}.json",
    ),
    (
        "GET",
        "/2010-04-01/Accounts/{AccountSid}/OutgoingCallerIds.json",
    ),
    (
        "GET",
        "/2010-04-01/Accounts/{AccountSid}/IncomingPhoneNumbers.json",
    ),
    (
        "POST",
        "/2010-04-01/Accounts/{AccountSid}/IncomingPhoneNumbers.json",
    ),
    (
        "GET",
        "/2010-04-01/Accounts/{AccountSid}/IncomingPhoneNumbers/{Sid}.json",
    ),
    (
        "POST",
        "/2010-04-01/Accounts/{AccountSid}/IncomingPhoneNumbers/{Sid}.json",
    ),
    (
        "DELETE",
        "/2010-04-01/Accounts/{AccountSid}/IncomingPhoneNumbers/{Sid}.json",
    ),
    ("GET", "/v1/Services"),
    ("POST", "/v1/Services"),
    ("GET", "/v1/Services/{Sid}"),
    ("DELETE", "/v1/Services/{Sid}"),
    ("GET", "/v1/Services/{ServiceSid}/Environments"),
    ("POST", "/v1/Services/{ServiceSid}/Environments"),
    ("GET", "/v1/Services/{ServiceSid}/Environments/{Sid}"),
    ("DELETE", "/v1/Services/{ServiceSid}/Environments/{Sid}"),
    (
        "GET",
        "/v1/Services/{ServiceSid}/Environments/{EnvironmentSid}/Deployments",
    ),
    (
        "GET",
        "/v1/Services/{ServiceSid}/Environments/{EnvironmentSid}/Deployments/{Sid}",
    ),
    (
        "POST",
        "/v1/Services/{ServiceSid}/Environments/{EnvironmentSid}/Deployments",
    ),
    ("GET", "/v1/Services/{ServiceSid}/Assets"),
    ("POST", "/v1/Services/{ServiceSid}/Assets"),
    ("GET", "/v1/Services/{ServiceSid}/Assets/{Sid}"),
    ("POST", "/v1/Services/{ServiceSid}/Assets/{Sid}"),
    ("DELETE", "/v1/Services/{ServiceSid}/Assets/{Sid}"),
    (
        "GET",
        "/v1/Services/{ServiceSid}/Assets/{AssetSid}/Versions",
    ),
    (
        "GET",
        "/v1/Services/{ServiceSid}/Assets/{AssetSid}/Versions/{Sid}",
    ),
    // NB: the upload, served by Twilio on serverless-upload.twilio.com, is not in the document.
    (
        "POST",
        "/v1/Services/{ServiceSid}/Assets/{AssetSid}/Versions",
    ),
    ("GET", "/v1/Services/{ServiceSid}/Functions"),
    ("POST", "/v1/Services/{ServiceSid}/Functions"),
    ("GET", "/v1/Services/{ServiceSid}/Functions/{Sid}"),
    ("POST", "/v1/Services/{ServiceSid}/Functions/{Sid}"),
    ("DELETE", "/v1/Services/{ServiceSid}/Functions/{Sid}"),
    (
        "GET",
        "/v1/Services/{ServiceSid}/Functions/{FunctionSid}/Versions",
    ),
    (
        "GET",
        "/v1/Services/{ServiceSid}/Functions/{FunctionSid}/Versions/{Sid}",
    ),
    (
        "GET",
        "/v1/Services/{ServiceSid}/Functions/{FunctionSid}/Versions/{Sid}/Content",
    ),
    // NB: like the asset upload, on serverless-upload.twilio.com and not in the document.
    (
        "POST",
        "/v1/Services/{ServiceSid}/Functions/{FunctionSid}/Versions",
    ),
    (
        "GET",
        "/v1/Services/{ServiceSid}/Environments/{EnvironmentSid}/Variables",
    ),
    (
        "POST",
        "/v1/Services/{ServiceSid}/Environments/{EnvironmentSid}/Variables",
    ),
    (
        "GET",
        "/v1/Services/{ServiceSid}/Environments/{EnvironmentSid}/Variables/{Sid}",
    ),
    (
        "POST",
        "/v1/Services/{ServiceSid}/Environments/{EnvironmentSid}/Variables/{Sid}",
    ),
    (
        "DELETE",
        "/v1/Services/{ServiceSid}/Environments/{EnvironmentSid}/Variables/{Sid}",
    ),
    ("GET", "/v1/Services/{ServiceSid}/Builds"),
    ("POST", "/v1/Services/{ServiceSid}/Builds"),
    ("GET", "/v1/Services/{ServiceSid}/Builds/{Sid}"),
    ("GET", "/v1/Services/{ServiceSid}/Builds/{Sid}/Status"),
    ("DELETE", "/v1/Services/{ServiceSid}/Builds/{Sid}"),
];

/// The Sync v1 routes, as (method, OpenAPI path template of `twilio_sync_v1.json`). The simulator
/// serves them under [`SimHandle::sync_url`] (`/sync` on its origin), because Twilio's Sync and
/// Serverless hosts share the `/v1/Services` paths.
pub const SYNC_ROUTES: &[(&str, &str)] = &[
    ("GET", "/v1/Services"),
    ("POST", "/v1/Services"),
    ("GET", "/v1/Services/{Sid}"),
    ("DELETE", "/v1/Services/{Sid}"),
    ("GET", "/v1/Services/{ServiceSid}/Maps"),
    ("POST", "/v1/Services/{ServiceSid}/Maps"),
    ("GET", "/v1/Services/{ServiceSid}/Maps/{Sid}"),
    ("DELETE", "/v1/Services/{ServiceSid}/Maps/{Sid}"),
    ("GET", "/v1/Services/{ServiceSid}/Maps/{MapSid}/Items"),
    ("POST", "/v1/Services/{ServiceSid}/Maps/{MapSid}/Items"),
    ("GET", "/v1/Services/{ServiceSid}/Maps/{MapSid}/Items/{Key}"),
    (
        "POST",
        "/v1/Services/{ServiceSid}/Maps/{MapSid}/Items/{Key}",
    ),
    (
        "DELETE",
        "/v1/Services/{ServiceSid}/Maps/{MapSid}/Items/{Key}",
    ),
];

/// How to run a simulator.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Must be a loopback address; port 0 picks a free port.
    pub listen: SocketAddr,
    pub account_sid: String,
    pub auth_token: String,
    /// Extra credentials: (API key SID `SK...`, secret).
    pub api_keys: Vec<(String, String)>,
    pub script: Script,
    /// Simulated seconds per real second.
    pub time_scale: f64,
    /// Outbound API calls started per simulated second (Twilio's default CPS is 1).
    pub calls_per_second: f64,
    /// At most this many outbound API calls active at once; more wait in the queue.
    pub max_concurrent_calls: Option<usize>,
    /// Serve a call's Events (`Calls/{Sid}/Events.json`) while it runs. Twilio's docs say "You
    /// can access the Call Event resource 15 minutes after a call ends", so by default the list
    /// is empty until [`CALL_EVENTS_DELAY_SECONDS`] of simulated time after the call ended.
    pub immediate_call_events: bool,
}

/// How long after a call ends Twilio makes its Events readable (simulated seconds).
pub const CALL_EVENTS_DELAY_SECONDS: f64 = 900.0;

impl SimConfig {
    /// A config for tests: a free loopback port, the given credentials, the default script.
    pub fn new(account_sid: &str, auth_token: &str) -> SimConfig {
        SimConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            account_sid: account_sid.to_string(),
            auth_token: auth_token.to_string(),
            api_keys: Vec::new(),
            script: Script::default(),
            time_scale: 1.0,
            calls_per_second: 1.0,
            max_concurrent_calls: None,
            immediate_call_events: false,
        }
    }
}

/// An injected fault.
#[derive(Clone, Debug, PartialEq)]
pub enum Fault {
    /// 429 with Twilio error 20429 and `Retry-After: seconds`.
    TooManyRequests { retry_after_seconds: u64 },
    /// 500 with Twilio error 20500.
    ServerError,
    /// The response never comes (until the simulator shuts down): a client timeout.
    Hang,
}

/// Which requests a fault hits.
#[derive(Clone, Debug, PartialEq)]
pub struct FaultSpec {
    pub fault: Fault,
    /// Only requests whose path contains this (e.g. `/Calls.json`); none: every API request.
    pub path_contains: Option<String>,
    /// Only this HTTP method; none: any.
    pub method: Option<String>,
    /// Only the next N matching requests; none: until cleared.
    pub times: Option<u32>,
}

impl FaultSpec {
    pub fn new(fault: Fault) -> FaultSpec {
        FaultSpec {
            fault,
            path_contains: None,
            method: None,
            times: None,
        }
    }
    pub fn on_path(mut self, fragment: &str) -> Self {
        self.path_contains = Some(fragment.to_string());
        self
    }
    pub fn on_method(mut self, method: &str) -> Self {
        self.method = Some(method.to_ascii_uppercase());
        self
    }
    pub fn times(mut self, n: u32) -> Self {
        self.times = Some(n);
        self
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("the simulator only listens on loopback addresses, not {0}")]
    NotLoopback(SocketAddr),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("time scale must be a positive number, not {0}")]
    TimeScale(f64),
    #[error("calls per second must be a positive number, not {0}")]
    Cps(f64),
    #[error("cannot build the webhook HTTP client: {0}")]
    Http(#[from] reqwest::Error),
    #[error("no IncomingPhoneNumber {0} on the account")]
    UnknownNumber(String),
    #[error("IncomingPhoneNumbers has no update parameter {0}")]
    UnknownNumberField(String),
    #[error("invalid-number errors are 21211, 21214 or 21217, not {0}")]
    ErrorCode(u32),
}

impl SimError {
    /// A stable short reason for logs and conditions.
    pub fn reason(&self) -> &'static str {
        match self {
            SimError::NotLoopback(_) => "NotLoopback",
            SimError::Bind { .. } => "BindFailed",
            SimError::TimeScale(_) => "InvalidTimeScale",
            SimError::Cps(_) => "InvalidCallsPerSecond",
            SimError::Http(_) => "HttpClient",
            SimError::UnknownNumber(_) => "UnknownNumber",
            SimError::UnknownNumberField(_) => "UnknownNumberField",
            SimError::ErrorCode(_) => "InvalidErrorCode",
        }
    }
}

/// Starts simulators.
pub struct Simulator;

impl Simulator {
    /// Binds the listener and starts serving and the call dispatcher.
    pub async fn start(config: SimConfig) -> Result<SimHandle, SimError> {
        if !config.listen.ip().is_loopback() {
            return Err(SimError::NotLoopback(config.listen));
        }
        if !(config.time_scale.is_finite() && config.time_scale > 0.0) {
            return Err(SimError::TimeScale(config.time_scale));
        }
        if !(config.calls_per_second.is_finite() && config.calls_per_second > 0.0) {
            return Err(SimError::Cps(config.calls_per_second));
        }
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|source| SimError::Bind {
                addr: config.listen,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| SimError::Bind {
            addr: config.listen,
            source,
        })?;
        let authority = addr.to_string();
        let origin = format!("http://{authority}");
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(15))
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        let (dispatch, queue) = tokio::sync::mpsc::unbounded_channel();
        let inner = Arc::new(Inner::new(config, origin, authority, dispatch, http));
        tokio::spawn(engine::dispatcher(inner.clone(), queue));
        let app = routes::router(inner.clone());
        let mut stop = inner.shutdown.subscribe();
        let server = tokio::spawn(async move {
            let result = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stop.wait_for(|s| *s).await;
                })
                .await;
            if let Err(error) = result {
                tracing::error!(%error, "twilio simulator server failed");
            }
        });
        Ok(SimHandle {
            inner,
            addr,
            server: Arc::new(tokio::sync::Mutex::new(Some(server))),
        })
    }
}

/// A running simulator. Cloning shares it.
#[derive(Clone)]
pub struct SimHandle {
    inner: Arc<Inner>,
    addr: SocketAddr,
    server: Arc<tokio::sync::Mutex<Option<tokio::task::JoinHandle<()>>>>,
}

impl SimHandle {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
    /// Base URL of the v2010 REST API (`{api_url}/2010-04-01/Accounts/...`).
    pub fn api_url(&self) -> String {
        self.inner.origin.clone()
    }
    /// Base URL of the Serverless v1 API (`{serverless_url}/v1/Services`).
    pub fn serverless_url(&self) -> String {
        self.inner.origin.clone()
    }
    /// Base URL for Asset Version uploads (`{upload_url}/v1/Services/{ZS}/Assets/{ZH}/Versions`).
    pub fn upload_url(&self) -> String {
        self.inner.origin.clone()
    }
    /// Base URL of the Sync v1 API (`{sync_url}/v1/Services`); Twilio's is `https://sync.twilio.com`.
    pub fn sync_url(&self) -> String {
        format!("{}{}", self.inner.origin, sync::PREFIX)
    }
    pub fn account_sid(&self) -> &str {
        &self.inner.config.account_sid
    }
    pub fn auth_token(&self) -> &str {
        &self.inner.config.auth_token
    }
    /// The current simulated time.
    pub fn now(&self) -> jiff::Timestamp {
        self.inner.clock.now()
    }
    /// Sets the simulated clock to `at`; it runs on from there. For staging a scenario at a
    /// chosen time (a schedule's handoff) before its calls: calls already running keep their
    /// timers, which count real time, and entries already in the ledger keep their times.
    pub fn set_clock(&self, at: jiff::Timestamp) {
        self.inner.clock.set(at);
    }
    /// A snapshot of the ledger.
    pub fn ledger(&self) -> Ledger {
        Ledger {
            entries: self.inner.lock().ledger.clone(),
        }
    }
    /// Replaces the recipients' script (calls already ringing keep their behaviour).
    pub fn set_script(&self, script: Script) {
        self.inner.lock().script = script;
    }
    /// Sets one address's behaviour.
    pub fn set_recipient(&self, address: &str, recipient: Recipient) {
        self.inner
            .lock()
            .script
            .recipients
            .insert(address.to_string(), recipient);
    }
    /// Accepts `sid:secret` as Basic credentials too.
    pub fn add_api_key(&self, sid: &str, secret: &str) {
        self.inner
            .lock()
            .api_keys
            .insert(sid.to_string(), secret.to_string());
    }
    pub fn inject_fault(&self, spec: FaultSpec) {
        self.inner.lock().faults.push(state::FaultRule {
            fault: spec.fault,
            path_contains: spec.path_contains,
            method: spec.method,
            remaining: spec.times,
        });
    }
    pub fn clear_faults(&self) {
        self.inner.lock().faults.clear();
    }
    /// Calls create with `To=number` fails with `code` (21211, 21214 or 21217).
    pub fn set_invalid_number(&self, number: &str, code: u32) -> Result<(), SimError> {
        if !matches!(code, 21211 | 21214 | 21217) {
            return Err(SimError::ErrorCode(code));
        }
        self.inner
            .lock()
            .invalid_numbers
            .insert(number.to_string(), code);
        Ok(())
    }
    /// Makes a number configured with [`Self::set_invalid_number`] valid again.
    pub fn clear_invalid_number(&self, number: &str) {
        self.inner.lock().invalid_numbers.remove(number);
    }
    /// Seeds an IncomingPhoneNumber the account owns; returns its `PN...` SID. Same as
    /// `POST .../IncomingPhoneNumbers.json` with `PhoneNumber` (and optional `VoiceUrl`...).
    pub fn add_number(&self, phone_number: &str) -> String {
        let sid = self.inner.sid("PN");
        let now = self.inner.clock.now();
        self.inner
            .lock()
            .numbers
            .push(state::Number::new(sid.clone(), phone_number, now));
        sid
    }
    /// Sets one update parameter of an owned number (`VoiceApplicationSid`, `TrunkSid`... of
    /// [`NUMBER_FIELDS`]) as a person would in the Console, without an API request in the ledger.
    pub fn set_number_field(&self, sid: &str, param: &str, value: &str) -> Result<(), SimError> {
        let field = NUMBER_FIELDS
            .iter()
            .find(|(p, _)| *p == param)
            .map(|(_, field)| *field)
            .ok_or_else(|| SimError::UnknownNumberField(param.to_string()))?;
        let mut st = self.inner.lock();
        let number = st
            .numbers
            .iter_mut()
            .find(|n| n.sid == sid)
            .ok_or_else(|| SimError::UnknownNumber(sid.to_string()))?;
        number
            .fields
            .insert(field, serde_json::Value::String(value.to_string()));
        Ok(())
    }
    /// Seeds a verified Outgoing Caller ID (usable as `From`, not owned); returns its SID.
    pub fn add_caller_id(&self, phone_number: &str) -> String {
        let sid = self.inner.sid("PN");
        self.inner
            .lock()
            .caller_ids
            .push((sid.clone(), phone_number.to_string()));
        sid
    }
    /// Seeds a room of an earlier incident: a conference named `friendly_name`, created and
    /// ended at `created` (simulated time, past or present), with no participants or
    /// recording. Returns its `CF...` SID.
    pub fn add_completed_conference(
        &self,
        friendly_name: &str,
        created: jiff::Timestamp,
    ) -> String {
        let sid = self.inner.sid("CF");
        self.inner.lock().conferences.push(state::Conference {
            sid: sid.clone(),
            friendly_name: friendly_name.to_string(),
            status: "completed".into(),
            date_created: created,
            date_updated: created,
            participants: Vec::new(),
            reason_conference_ended: Some("last-participant-left".into()),
            call_sid_ending_conference: None,
            record: false,
            recording: None,
            status_callback: None,
            recording_status_callback: None,
            sequence: 0,
            ended: tokio::sync::watch::channel(true).0,
        });
        sid
    }
    /// An inbound call from `from` to the owned number `to`: Twilio requests its VoiceUrl with
    /// VoiceMethod (signed) and runs the TwiML. Returns the call SID.
    pub fn dial_in(&self, from: &str, to: &str) -> Result<String, SimError> {
        engine::dial_in(&self.inner, from, to)
    }
    /// Stops serving and ends every running call.
    pub async fn shutdown(&self) {
        let _ = self.inner.shutdown.send(true);
        if let Some(server) = self.server.lock().await.take() {
            let _ = server.await;
        }
    }
}
