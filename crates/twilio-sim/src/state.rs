//! The simulator's shared state: resources, clock, SIDs, faults and the ledger.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use serde_json::{json, Value};
use tokio::sync::{mpsc, watch, Notify};

use super::ledger::{Entry, Event};
use super::script::Script;
use super::{Fault, SimConfig};

/// Simulated time: `scale` simulated seconds pass per real second, from the origin: a real
/// instant and the simulated time at that instant. The origin moves only by [`Clock::set`].
#[derive(Debug)]
pub(crate) struct Clock {
    origin: Mutex<(tokio::time::Instant, Timestamp)>,
    scale: f64,
}

impl Clock {
    pub(crate) fn new(scale: f64) -> Clock {
        Clock {
            origin: Mutex::new((tokio::time::Instant::now(), Timestamp::now())),
            scale,
        }
    }
    pub(crate) fn now(&self) -> Timestamp {
        let (real0, sim0) = *self
            .origin
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        sim0 + SignedDuration::from_secs_f64(real0.elapsed().as_secs_f64() * self.scale)
    }
    /// From this real instant on, simulated time continues from `at`.
    pub(crate) fn set(&self, at: Timestamp) {
        *self
            .origin
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = (tokio::time::Instant::now(), at);
    }
    /// Real time that `sim_seconds` of simulated time take.
    pub(crate) fn real(&self, sim_seconds: f64) -> Duration {
        Duration::from_secs_f64((sim_seconds / self.scale).clamp(0.0, 1.0e9))
    }
}

pub(crate) fn rfc2822(t: Timestamp) -> String {
    t.strftime("%a, %d %b %Y %H:%M:%S +0000").to_string()
}

pub(crate) fn iso8601(t: Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// A control message to a running call.
#[derive(Debug)]
pub(crate) enum Interrupt {
    /// The call was ended through the API; its status is already terminal.
    Hangup,
    /// New instructions through the API (`Url` or `Twiml` on update).
    Redirect(Instructions),
    /// The person hung up (their script's `hangupAfterPress`); the call completes.
    PersonHungUp,
}

#[derive(Clone, Debug)]
pub(crate) enum Instructions {
    Twiml(String),
    Url { url: String, method: String },
}

#[derive(Debug)]
pub(crate) struct Call {
    pub sid: String,
    pub from: String,
    pub to: String,
    pub direction: String,
    pub status: String,
    pub date_created: Timestamp,
    pub date_updated: Timestamp,
    pub start_time: Option<Timestamp>,
    pub answered_at: Option<Timestamp>,
    pub end_time: Option<Timestamp>,
    pub answered_by: Option<String>,
    pub machine_detection: bool,
    pub timeout: f64,
    pub time_limit: f64,
    pub instructions: Instructions,
    pub status_callback: Option<String>,
    pub status_callback_method: String,
    pub status_callback_events: Vec<String>,
    pub record: bool,
    pub sequence: u64,
    pub phone_number_sid: Option<String>,
    pub queue_time_ms: u64,
    pub events: Vec<Value>,
    pub control: Option<mpsc::UnboundedSender<Interrupt>>,
}

impl Call {
    pub(crate) fn is_terminal(&self) -> bool {
        matches!(
            self.status.as_str(),
            "completed" | "busy" | "no-answer" | "failed" | "canceled"
        )
    }

    /// The status as the REST API shows it. `initiated` is a status-callback event only: the
    /// Call resource's `call_enum_status` has no such value, so a call being dialled still
    /// reads `queued` until it rings (the ledger keeps the finer `initiated`).
    pub(crate) fn api_status(&self) -> &str {
        match self.status.as_str() {
            "initiated" => "queued",
            other => other,
        }
    }

    pub(crate) fn json(&self, account: &str) -> Value {
        let uri = format!("/2010-04-01/Accounts/{account}/Calls/{}", self.sid);
        let duration = match (self.answered_at, self.end_time) {
            (Some(a), Some(e)) => Some(a.duration_until(e).as_secs().max(0).to_string()),
            (_, Some(_)) => Some("0".to_string()),
            _ => None,
        };
        let sub = |name: &str| format!("{uri}/{name}.json");
        json!({
            "sid": self.sid,
            "date_created": rfc2822(self.date_created),
            "date_updated": rfc2822(self.date_updated),
            "parent_call_sid": null,
            "account_sid": account,
            "to": self.to,
            "to_formatted": self.to,
            "from": self.from,
            "from_formatted": self.from,
            "phone_number_sid": self.phone_number_sid,
            "status": self.api_status(),
            "start_time": self.start_time.map(rfc2822),
            "end_time": self.end_time.map(rfc2822),
            "duration": duration,
            "price": null,
            "price_unit": "USD",
            "direction": self.direction,
            "answered_by": self.answered_by,
            "api_version": "2010-04-01",
            "forwarded_from": null,
            "group_sid": null,
            "caller_name": null,
            "queue_time": self.queue_time_ms.to_string(),
            "trunk_sid": null,
            "uri": format!("{uri}.json"),
            "subresource_uris": {
                "notifications": sub("Notifications"),
                "recordings": sub("Recordings"),
                "payments": sub("Payments"),
                "events": sub("Events"),
                "siprec": sub("Siprec"),
                "streams": sub("Streams"),
                "transcriptions": sub("Transcriptions"),
                "user_defined_message_subscriptions": sub("UserDefinedMessageSubscriptions"),
                "user_defined_messages": sub("UserDefinedMessages"),
            },
        })
    }
}

#[derive(Debug)]
pub(crate) struct Participant {
    pub call_sid: String,
    pub label: Option<String>,
    pub date_created: Timestamp,
    pub end_conference_on_exit: bool,
    pub start_conference_on_enter: bool,
    pub muted: bool,
}

#[derive(Debug)]
pub(crate) struct Conference {
    pub sid: String,
    pub friendly_name: String,
    pub status: String,
    pub date_created: Timestamp,
    pub date_updated: Timestamp,
    pub participants: Vec<Participant>,
    pub reason_conference_ended: Option<String>,
    pub call_sid_ending_conference: Option<String>,
    pub record: bool,
    /// (`RE...` SID, URL, start) once a recorded conference starts.
    pub recording: Option<(String, String, Timestamp)>,
    pub status_callback: Option<(String, String, Vec<String>)>,
    pub recording_status_callback: Option<(String, String)>,
    pub sequence: u64,
    pub ended: watch::Sender<bool>,
}

impl Conference {
    pub(crate) fn json(&self, account: &str) -> Value {
        let uri = format!("/2010-04-01/Accounts/{account}/Conferences/{}", self.sid);
        json!({
            "account_sid": account,
            "date_created": rfc2822(self.date_created),
            "date_updated": rfc2822(self.date_updated),
            "api_version": "2010-04-01",
            "friendly_name": self.friendly_name,
            "region": "us1",
            "sid": self.sid,
            "status": self.status,
            "uri": format!("{uri}.json"),
            "subresource_uris": {
                "participants": format!("{uri}/Participants.json"),
                "recordings": format!("{uri}/Recordings.json"),
            },
            "reason_conference_ended": self.reason_conference_ended,
            "call_sid_ending_conference": self.call_sid_ending_conference,
        })
    }

    pub(crate) fn recordings_json(&self, account: &str) -> Vec<Value> {
        let Some((sid, _, started)) = &self.recording else {
            return Vec::new();
        };
        let done = self.status == "completed";
        let duration = if done {
            started
                .duration_until(self.date_updated)
                .as_secs()
                .max(0)
                .to_string()
        } else {
            "-1".to_string()
        };
        vec![json!({
            "account_sid": account,
            "api_version": "2010-04-01",
            "call_sid": self.call_sid_ending_conference,
            "conference_sid": self.sid,
            "channels": 1,
            "date_created": rfc2822(*started),
            "date_updated": rfc2822(self.date_updated),
            "start_time": rfc2822(*started),
            "price": null,
            "price_unit": "USD",
            "duration": duration,
            "sid": sid,
            "source": "Conference",
            "status": if done { "completed" } else { "in-progress" },
            "error_code": null,
            "encryption_details": null,
            "uri": format!("/2010-04-01/Accounts/{account}/Conferences/{}/Recordings/{sid}.json", self.sid),
        })]
    }

    pub(crate) fn participant_json(&self, p: &Participant, account: &str) -> Value {
        json!({
            "account_sid": account,
            "call_sid": p.call_sid,
            "label": p.label,
            "call_sid_to_coach": null,
            "coaching": false,
            "conference_sid": self.sid,
            "date_created": rfc2822(p.date_created),
            "date_updated": rfc2822(p.date_created),
            "end_conference_on_exit": p.end_conference_on_exit,
            "muted": p.muted,
            "hold": false,
            "start_conference_on_enter": p.start_conference_on_enter,
            "status": "connected",
            "queue_time": null,
            "uri": format!("/2010-04-01/Accounts/{account}/Conferences/{}/Participants/{}.json", self.sid, p.call_sid),
        })
    }
}

/// An IncomingPhoneNumber the account owns.
#[derive(Clone, Debug)]
pub(crate) struct Number {
    pub sid: String,
    pub phone_number: String,
    pub friendly_name: String,
    pub date_created: Timestamp,
    pub date_updated: Timestamp,
    /// Fields settable through update, by their JSON names (`voice_url`, `voice_method`...).
    pub fields: BTreeMap<&'static str, Value>,
}

/// Update parameter names of IncomingPhoneNumbers and the JSON fields they set.
pub const NUMBER_FIELDS: &[(&str, &str)] = &[
    ("VoiceUrl", "voice_url"),
    ("VoiceMethod", "voice_method"),
    ("VoiceFallbackUrl", "voice_fallback_url"),
    ("VoiceFallbackMethod", "voice_fallback_method"),
    ("StatusCallback", "status_callback"),
    ("StatusCallbackMethod", "status_callback_method"),
    ("VoiceApplicationSid", "voice_application_sid"),
    ("VoiceCallerIdLookup", "voice_caller_id_lookup"),
    ("VoiceReceiveMode", "voice_receive_mode"),
    ("TrunkSid", "trunk_sid"),
    ("SmsUrl", "sms_url"),
    ("SmsMethod", "sms_method"),
    ("SmsFallbackUrl", "sms_fallback_url"),
    ("SmsFallbackMethod", "sms_fallback_method"),
    ("SmsApplicationSid", "sms_application_sid"),
    ("ApiVersion", "api_version"),
    ("IdentitySid", "identity_sid"),
    ("AddressSid", "address_sid"),
    ("BundleSid", "bundle_sid"),
    ("EmergencyStatus", "emergency_status"),
    ("EmergencyAddressSid", "emergency_address_sid"),
];

impl Number {
    pub(crate) fn new(sid: String, phone_number: &str, now: Timestamp) -> Number {
        let mut fields = BTreeMap::new();
        for (k, v) in [
            ("voice_url", json!(null)),
            ("voice_method", json!("POST")),
            ("voice_fallback_url", json!(null)),
            ("voice_fallback_method", json!("POST")),
            ("status_callback", json!("")),
            ("status_callback_method", json!("POST")),
            ("voice_application_sid", json!("")),
            ("voice_caller_id_lookup", json!(false)),
            ("voice_receive_mode", json!("voice")),
            ("trunk_sid", json!(null)),
            ("sms_url", json!("")),
            ("sms_method", json!("POST")),
            ("sms_fallback_url", json!("")),
            ("sms_fallback_method", json!("POST")),
            ("sms_application_sid", json!("")),
            ("api_version", json!("2010-04-01")),
            ("identity_sid", json!(null)),
            ("address_sid", json!(null)),
            ("bundle_sid", json!(null)),
            ("emergency_status", json!("Inactive")),
            ("emergency_address_sid", json!(null)),
        ] {
            fields.insert(k, v);
        }
        Number {
            sid,
            phone_number: phone_number.to_string(),
            friendly_name: phone_number.to_string(),
            date_created: now,
            date_updated: now,
            fields,
        }
    }

    pub(crate) fn field(&self, name: &str) -> Option<String> {
        self.fields
            .get(name)
            .and_then(|v| v.as_str())
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    }

    pub(crate) fn json(&self, account: &str) -> Value {
        let mut v = json!({
            "account_sid": account,
            "address_requirements": "none",
            "beta": false,
            "capabilities": {"voice": true, "sms": true, "mms": false, "fax": false},
            "date_created": rfc2822(self.date_created),
            "date_updated": rfc2822(self.date_updated),
            "friendly_name": self.friendly_name,
            "phone_number": self.phone_number,
            "origin": "twilio",
            "sid": self.sid,
            "uri": format!("/2010-04-01/Accounts/{account}/IncomingPhoneNumbers/{}.json", self.sid),
            "emergency_address_status": "unregistered",
            "status": "in-use",
            "type": "local",
        });
        if let Value::Object(map) = &mut v {
            for (k, val) in &self.fields {
                map.insert((*k).to_string(), val.clone());
            }
        }
        v
    }
}

#[derive(Clone, Debug)]
pub(crate) struct Service {
    pub sid: String,
    pub unique_name: String,
    pub friendly_name: String,
    pub include_credentials: bool,
    pub ui_editable: bool,
    pub date_created: Timestamp,
}

#[derive(Clone, Debug)]
pub(crate) struct Environment {
    pub sid: String,
    pub service_sid: String,
    pub unique_name: String,
    pub domain_suffix: Option<String>,
    /// `host:port/twil.io/<slug>`, served by the simulator.
    pub domain_name: String,
    pub slug: String,
    pub build_sid: Option<String>,
    pub date_created: Timestamp,
    pub date_updated: Timestamp,
}

#[derive(Clone, Debug)]
pub(crate) struct Asset {
    pub sid: String,
    pub service_sid: String,
    pub friendly_name: String,
    pub date_created: Timestamp,
    pub date_updated: Timestamp,
}

#[derive(Clone, Debug)]
pub(crate) struct AssetVersion {
    pub sid: String,
    pub service_sid: String,
    pub asset_sid: String,
    pub path: String,
    pub visibility: String,
    pub content: Vec<u8>,
    pub content_type: String,
    pub date_created: Timestamp,
}

#[derive(Clone, Debug)]
pub(crate) struct Function {
    pub sid: String,
    pub service_sid: String,
    pub friendly_name: String,
    pub date_created: Timestamp,
    pub date_updated: Timestamp,
}

#[derive(Clone, Debug)]
pub(crate) struct FunctionVersion {
    pub sid: String,
    pub service_sid: String,
    pub function_sid: String,
    pub path: String,
    pub visibility: String,
    pub content: Vec<u8>,
    pub date_created: Timestamp,
}

/// An Environment Variable of a Serverless environment: what a Function sees in `context`.
#[derive(Clone, Debug)]
pub(crate) struct Variable {
    pub sid: String,
    pub service_sid: String,
    pub environment_sid: String,
    pub key: String,
    pub value: String,
    pub date_created: Timestamp,
    pub date_updated: Timestamp,
}

#[derive(Clone, Debug)]
pub(crate) struct Build {
    pub sid: String,
    pub service_sid: String,
    pub status: String,
    pub asset_versions: Vec<String>,
    pub function_versions: Vec<String>,
    pub dependencies: Value,
    pub runtime: String,
    pub date_created: Timestamp,
    pub date_updated: Timestamp,
}

#[derive(Clone, Debug)]
pub(crate) struct Deployment {
    pub sid: String,
    pub service_sid: String,
    pub environment_sid: String,
    pub build_sid: String,
    pub date_created: Timestamp,
}

#[derive(Clone, Debug)]
pub(crate) struct SyncService {
    pub sid: String,
    pub unique_name: Option<String>,
    pub friendly_name: Option<String>,
    pub date_created: Timestamp,
}

#[derive(Clone, Debug)]
pub(crate) struct SyncMap {
    pub sid: String,
    pub service_sid: String,
    pub unique_name: Option<String>,
    pub revision: u64,
    pub date_expires: Option<Timestamp>,
    pub date_created: Timestamp,
    pub date_updated: Timestamp,
}

#[derive(Clone, Debug)]
pub(crate) struct SyncMapItem {
    pub key: String,
    pub service_sid: String,
    pub map_sid: String,
    pub data: Value,
    pub revision: u64,
    pub date_expires: Option<Timestamp>,
    pub date_created: Timestamp,
    pub date_updated: Timestamp,
}

impl SyncMapItem {
    pub(crate) fn expired(&self, now: Timestamp) -> bool {
        self.date_expires.is_some_and(|at| at <= now)
    }
}

/// An active fault rule.
#[derive(Clone, Debug)]
pub(crate) struct FaultRule {
    pub fault: Fault,
    pub path_contains: Option<String>,
    pub method: Option<String>,
    pub remaining: Option<u32>,
}

#[derive(Debug, Default)]
pub(crate) struct State {
    pub script: Script,
    pub api_keys: HashMap<String, String>,
    pub calls: Vec<Call>,
    pub conferences: Vec<Conference>,
    pub numbers: Vec<Number>,
    pub services: Vec<Service>,
    pub environments: Vec<Environment>,
    pub assets: Vec<Asset>,
    pub asset_versions: Vec<AssetVersion>,
    pub builds: Vec<Build>,
    pub deployments: Vec<Deployment>,
    pub functions: Vec<Function>,
    pub function_versions: Vec<FunctionVersion>,
    pub variables: Vec<Variable>,
    pub sync_services: Vec<SyncService>,
    pub sync_maps: Vec<SyncMap>,
    pub sync_items: Vec<SyncMapItem>,
    pub faults: Vec<FaultRule>,
    pub invalid_numbers: HashMap<String, u32>,
    /// Verified caller IDs: (PN SID, number).
    pub caller_ids: Vec<(String, String)>,
    pub ledger: Vec<Entry>,
}

impl State {
    pub(crate) fn call(&self, sid: &str) -> Option<&Call> {
        self.calls.iter().find(|c| c.sid == sid)
    }
    pub(crate) fn call_mut(&mut self, sid: &str) -> Option<&mut Call> {
        self.calls.iter_mut().find(|c| c.sid == sid)
    }
    pub(crate) fn active_calls(&self) -> usize {
        self.calls
            .iter()
            .filter(|c| matches!(c.status.as_str(), "initiated" | "ringing" | "in-progress"))
            .filter(|c| c.direction == "outbound-api")
            .count()
    }
}

/// Shared between the HTTP server, the call engine and the handle.
pub(crate) struct Inner {
    pub config: SimConfig,
    pub clock: Clock,
    pub state: Mutex<State>,
    pub http: reqwest::Client,
    /// `http://127.0.0.1:PORT`
    pub origin: String,
    /// `127.0.0.1:PORT`
    pub authority: String,
    pub dispatch: mpsc::UnboundedSender<String>,
    /// Woken when a call ends, so the dispatcher can re-check the concurrency cap.
    pub call_ended: Notify,
    pub shutdown: watch::Sender<bool>,
    sid_prefix: u64,
    sid_counter: AtomicU64,
}

impl Inner {
    pub(crate) fn new(
        config: SimConfig,
        origin: String,
        authority: String,
        dispatch: mpsc::UnboundedSender<String>,
        http: reqwest::Client,
    ) -> Inner {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0)
            ^ (u64::from(std::process::id()) << 32);
        let state = State {
            script: config.script.clone(),
            api_keys: config.api_keys.iter().cloned().collect(),
            ..State::default()
        };
        Inner {
            clock: Clock::new(config.time_scale),
            config,
            state: Mutex::new(state),
            http,
            origin,
            authority,
            dispatch,
            call_ended: Notify::new(),
            shutdown: watch::channel(false).0,
            sid_prefix: seed,
            sid_counter: AtomicU64::new(1),
        }
    }

    /// A fresh SID: two letters and 32 hex digits.
    pub(crate) fn sid(&self, prefix: &str) -> String {
        let n = self.sid_counter.fetch_add(1, Ordering::Relaxed);
        format!("{prefix}{:016x}{:016x}", self.sid_prefix, n)
    }

    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // NB: a panic while holding the lock only happens on a simulator bug; keep serving.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn record(state: &mut State, at: Timestamp, event: Event) {
        let seq = state.ledger.len() as u64;
        state.ledger.push(Entry { seq, at, event });
    }

    pub(crate) fn log(&self, event: Event) {
        let at = self.clock.now();
        Inner::record(&mut self.lock(), at, event);
    }

    pub(crate) fn account(&self) -> &str {
        &self.config.account_sid
    }
}
