//! `CallPolicy`: who is called, how, and with what words.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::LocalRef;

/// Who is called when a page fires, in which order, what they hear and how they acknowledge.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "alertcall.dev",
    version = "v1alpha1",
    kind = "CallPolicy",
    namespaced,
    status = "CallPolicyStatus",
    shortname = "cp",
    category = "alertcall",
    doc = "CallPolicy declares who is called when a page fires, in which order, what they hear and how they acknowledge.",
    printcolumn = r#"{"name":"Mode","type":"string","jsonPath":".spec.strategy.mode"}"#,
    printcolumn = r#"{"name":"Completion","type":"string","jsonPath":".spec.strategy.completion","priority":1}"#,
    printcolumn = r#"{"name":"From","type":"string","jsonPath":".spec.twilio.from"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason","priority":1}"#,
    printcolumn = r#"{"name":"Tested","type":"string","jsonPath":".status.tested"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct CallPolicySpec {
    /// The Twilio account the calls are placed from.
    pub twilio: TwilioSpec,
    /// The people to call, 1 to 50. Order matters for the Sequential strategy.
    #[schemars(length(min = 1, max = 50))]
    pub recipients: Vec<Recipient>,
    /// How recipients are called and when a page is complete.
    #[serde(default)]
    pub strategy: StrategySpec,
    /// How a human proves they heard the page.
    #[serde(default)]
    pub acknowledgement: AcknowledgementSpec,
    /// What is spoken on the call.
    #[serde(default)]
    pub message: MessageSpec,
    /// The room acknowledged answerers are joined into.
    #[serde(default)]
    pub conference: ConferenceSpec,
    /// Pacing and cost limits of the Twilio account.
    #[serde(default)]
    pub limits: LimitsSpec,
    /// Hours in which only urgent pages call (Alertmanager's time-interval vocabulary; any
    /// interval listed matches). A page from a route without `urgent: true` that starts in them
    /// is created at once in phase `Waiting`, with `notBefore` at the first minute outside them,
    /// and calls then unless its alerts resolved meanwhile. Quiet hours that do not end within
    /// 7 days do not hold a page: it calls at once. Pages created by hand always call.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 20))]
    pub quiet_hours: Vec<super::TimeInterval>,
    /// What happens when this policy is exhausted (every round tried, nobody acknowledged):
    /// the page continues with another policy, the next escalation tier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_exhausted: Option<OnExhaustedSpec>,
}

/// The next escalation tier of a policy.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OnExhaustedSpec {
    /// The CallPolicy (same namespace) an exhausted page continues with: the same AlertCall
    /// calls that policy's recipients with that policy's strategy, messages and documents, and
    /// `status.tier` counts up. A chain that comes back to a policy already in it (A -> B -> A,
    /// or A -> A) is refused: the CallPolicy is Ready=False with reason `EscalationLoop`, and a
    /// page reaching the loop stops escalating.
    pub policy_ref: LocalRef,
}

/// The Twilio account and numbers used by a policy.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TwilioSpec {
    /// Secret in the same namespace holding `accountSid` and `authToken`, or `accountSid`,
    /// `apiKeySid` and `apiKeySecret`. With both, the API key authenticates and `authToken` only
    /// verifies Twilio's callback signatures; with a key alone, Twilio is asked for no callbacks.
    pub credentials_secret_ref: LocalRef,
    /// Caller ID in E.164: a Twilio number of the account or a verified caller ID.
    #[schemars(regex(pattern = r"^\+[1-9][0-9]{1,14}$"))]
    pub from: String,
    /// Optional Twilio number (E.164) whose voice webhook is pointed at the conference room, so
    /// responders can dial in. Its previous voice URL is restored when the policy stops naming it.
    /// A number with a Voice Application attached or on an Elastic SIP Trunk never fetches its
    /// voice URL: it is left untouched and BridgeConfigured is False (reason
    /// BridgeNumberHasApplication or BridgeNumberOnTrunk, naming the SID) until the application
    /// is detached or the number leaves the trunk in Twilio.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^\+[1-9][0-9]{1,14}$"))]
    pub bridge_number: Option<String>,
}

/// One person to call. Exactly one of `phone`, `client`, `sip` or `schedule` is set.
// NB: a flattened enum alone would silently take the first of two address keys; parsing through
// `RecipientFields` rejects that offline as the API server's `oneOf` does.
#[derive(Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Recipient {
    /// A short name shown in the audit trail and used to acknowledge from kubectl.
    #[schemars(regex(pattern = r"^[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?$"))]
    pub name: String,
    /// Where to call this person.
    #[serde(flatten)]
    pub address: Address,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RecipientFields {
    name: String,
    phone: Option<String>,
    client: Option<String>,
    sip: Option<String>,
    schedule: Option<String>,
}

impl<'de> Deserialize<'de> for Recipient {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let fields = RecipientFields::deserialize(deserializer)?;
        Recipient::try_from(fields).map_err(serde::de::Error::custom)
    }
}

impl TryFrom<RecipientFields> for Recipient {
    type Error = String;

    fn try_from(fields: RecipientFields) -> Result<Self, Self::Error> {
        let address = match (fields.phone, fields.client, fields.sip, fields.schedule) {
            (Some(phone), None, None, None) => Address::Phone(phone),
            (None, Some(client), None, None) => Address::Client(client),
            (None, None, Some(sip), None) => Address::Sip(sip),
            (None, None, None, Some(schedule)) => Address::Schedule(schedule),
            _ => {
                return Err(format!(
                    "recipient {:?} needs exactly one of phone, client, sip or schedule",
                    fields.name
                ))
            }
        };
        Ok(Recipient {
            name: fields.name,
            address,
        })
    }
}

/// Where a recipient is reached. Exactly one kind.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Address {
    /// A phone number in E.164, for example `+819012345678`.
    Phone(#[schemars(regex(pattern = r"^\+[1-9][0-9]{1,14}$"))] String),
    /// A Twilio Client identity, dialed as `client:<identity>`.
    Client(#[schemars(regex(pattern = r"^[A-Za-z0-9_.@-]{1,121}$"))] String),
    /// A SIP URI, for example `sip:alice@example.com`.
    Sip(#[schemars(regex(pattern = r"^sips?:[^\s@]+@[^\s]+$"), length(max = 255))] String),
    /// An OnCallSchedule in the same namespace: when the page dials this recipient, whoever is
    /// on call in that schedule at that moment is called (each of them, when several are). A
    /// schedule with nobody on call (a gap, or missing or invalid) is skipped, with condition
    /// `RecipientsOnCall` False and an Event `ScheduleEmpty` on the AlertCall. Not allowed for
    /// the members of an OnCallSchedule.
    Schedule(#[schemars(regex(pattern = r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$"))] String),
}

impl Address {
    /// The `To` parameter Twilio expects for this address; `None` for a schedule, which is
    /// resolved to its members on call when a page dials it.
    pub fn twilio_to(&self) -> Option<String> {
        match self {
            Address::Phone(number) => Some(number.clone()),
            Address::Client(identity) => Some(format!("client:{identity}")),
            Address::Sip(uri) => Some(uri.clone()),
            Address::Schedule(_) => None,
        }
    }

    /// The schedule this address names, if it is one.
    pub fn schedule(&self) -> Option<&str> {
        match self {
            Address::Schedule(name) => Some(name),
            _ => None,
        }
    }
}

/// Whether recipients are called one after another or all at once.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum Mode {
    /// One call at a time; the next recipient when the current one does not acknowledge.
    #[default]
    Sequential,
    /// Everyone at once (paced by the account's calls per second).
    Simultaneous,
}

/// When a Simultaneous page is complete.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum Completion {
    /// The first acknowledgement completes the page; the other calls still queued or ringing
    /// are canceled.
    #[default]
    FirstAck,
    /// Complete once every recipient answered (no keypress needed; phase Notified, or
    /// Acknowledged if someone pressed a key). Those not reached are called again each round.
    AllNotified,
    /// Complete only when every recipient acknowledged; the others are called again each round.
    AllAcked,
}

/// The order of a Sequential page.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum Order {
    /// Always start with the first recipient.
    #[default]
    Fixed,
    /// Each new page starts with the recipient after the one who was called first last time.
    RoundRobin,
}

/// How recipients are called and when a page is complete.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StrategySpec {
    /// Sequential or Simultaneous.
    #[serde(default)]
    pub mode: Mode,
    /// Simultaneous only: FirstAck, AllNotified or AllAcked.
    #[serde(default)]
    pub completion: Completion,
    /// Sequential only: Fixed or RoundRobin.
    #[serde(default)]
    pub order: Order,
    /// How long each call rings before it counts as not answered (Twilio `Timeout`, 5 to 600).
    #[serde(default = "default_ring_timeout")]
    #[schemars(range(min = 5, max = 600))]
    pub ring_timeout_seconds: u32,
    /// How many times the whole list is tried before the page is Exhausted (1 to 20).
    #[serde(default = "default_rounds")]
    #[schemars(range(min = 1, max = 20))]
    pub rounds: u32,
    /// Pause between two rounds (0 to 3600).
    #[serde(default = "default_round_interval")]
    #[schemars(range(min = 0, max = 3600))]
    pub round_interval_seconds: u32,
}

fn default_ring_timeout() -> u32 {
    25
}
fn default_rounds() -> u32 {
    3
}
fn default_round_interval() -> u32 {
    30
}

impl Default for StrategySpec {
    fn default() -> Self {
        Self {
            mode: Mode::default(),
            completion: Completion::default(),
            order: Order::default(),
            ring_timeout_seconds: default_ring_timeout(),
            rounds: default_rounds(),
            round_interval_seconds: default_round_interval(),
        }
    }
}

/// Acknowledgement by keypress: an answered call is not an acknowledged call. The keypress goes
/// to alertcall's acknowledgement Function in the install's Twilio Serverless service, which
/// records it in the Twilio Sync map `alertcall-acks` before it answers; the operator reads that
/// map, so a key pressed just before hanging up still acknowledges. Each keypress costs one
/// Function invocation and one Sync write at Twilio.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AcknowledgementSpec {
    /// The key named in the prompt ("press 1"). Any key acknowledges.
    #[serde(default = "default_digits")]
    #[schemars(regex(pattern = r"^[0-9*#]$"))]
    pub digits: String,
    /// How long the call waits for the keypress after the prompt (1 to 60).
    #[serde(default = "default_gather_timeout")]
    #[schemars(range(min = 1, max = 60))]
    pub gather_timeout_seconds: u32,
}

fn default_digits() -> String {
    "1".to_string()
}
fn default_gather_timeout() -> u32 {
    8
}

impl Default for AcknowledgementSpec {
    fn default() -> Self {
        Self {
            digits: default_digits(),
            gather_timeout_seconds: default_gather_timeout(),
        }
    }
}

/// Longest message template accepted; the rendered call TwiML must stay under Twilio's 4000
/// characters, with room for the prompt and the event's own text.
pub const MAX_TEMPLATE_LEN: usize = 1000;

/// What is spoken on the call.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MessageSpec {
    /// Message template. Fields: `reason`, `kind`, `namespace`, `name`, `message`, `count`,
    /// `labels`, `annotations`, `summary`.
    #[serde(default = "default_template")]
    #[schemars(length(min = 1, max = 1000))]
    pub template: String,
    /// Language of Twilio `<Say>`, for example `en-US` or `ja-JP`.
    #[serde(default = "default_language")]
    #[schemars(regex(pattern = r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$"))]
    pub language: String,
    /// Optional `<Say>` voice, for example `Polly.Mizuki` or `alice`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[A-Za-z0-9._-]{1,64}$"))]
    pub voice: Option<String>,
    /// How many times the message is spoken (1 to 5).
    #[serde(default = "default_repeat")]
    #[schemars(range(min = 1, max = 5))]
    pub repeat: u32,
}

pub const DEFAULT_TEMPLATE: &str =
    "Alert. {{ reason }} on {{ kind }} {{ namespace }}/{{ name }}. {{ message }}";

fn default_template() -> String {
    DEFAULT_TEMPLATE.to_string()
}
fn default_language() -> String {
    "en-US".to_string()
}
fn default_repeat() -> u32 {
    2
}

impl Default for MessageSpec {
    fn default() -> Self {
        Self {
            template: default_template(),
            language: default_language(),
            voice: None,
            repeat: default_repeat(),
        }
    }
}

/// The conference room acknowledged answerers are joined into.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConferenceSpec {
    /// Room name; defaults to `<namespace>-<policy name>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[A-Za-z0-9_.-]{1,128}$"))]
    pub room: Option<String>,
    /// Optional hold music (`waitUrl`) the first participant hears.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^https?://[^\s]+$"), length(max = 2048))]
    pub hold_music_url: Option<String>,
    /// Record the room; the recording URL lands on the AlertCall.
    #[serde(default)]
    pub record: bool,
}

/// Pacing and cost limits of the Twilio account.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LimitsSpec {
    /// Calls started per second on this account (Twilio's CPS; 1 by default, at most 100).
    #[serde(default = "default_cps")]
    #[schemars(range(min = 1, max = 100))]
    pub calls_per_second: u32,
    /// Concurrent calls allowed on the account; 0 means no limit.
    #[serde(default)]
    #[schemars(range(min = 0, max = 10000))]
    pub max_concurrent_calls: u32,
    /// Cost guard: over this many calls in an hour, new dials fail with a clear reason. 0 means no limit.
    #[serde(default = "default_max_calls_per_hour")]
    #[schemars(range(min = 0, max = 100000))]
    pub max_calls_per_hour: u32,
}

fn default_cps() -> u32 {
    1
}
fn default_max_calls_per_hour() -> u32 {
    60
}

impl Default for LimitsSpec {
    fn default() -> Self {
        Self {
            calls_per_second: default_cps(),
            max_concurrent_calls: 0,
            max_calls_per_hour: default_max_calls_per_hour(),
        }
    }
}

/// What the operator observed and published for a policy.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CallPolicyStatus {
    /// The generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready, CredentialsValid, TwimlPublished, BridgeConfigured, TwilioHealthy.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The Twilio-hosted TwiML documents of this policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub twiml: Option<TwimlStatus>,
    /// SID of the bridge number (IncomingPhoneNumber) once configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bridge_number_sid: Option<String>,
    /// The last test call (`kubectl alertcall test`) of each recipient. Written when a test
    /// ends; a recipient removed from the policy loses its entry.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recipients: Vec<RecipientTest>,
    /// How many of the policy's recipients passed their last test, as `passed/recipients`
    /// (for example `2/3`); a recipient never tested (one added since, say) has not passed.
    /// Recounted when the recipients change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tested: Option<String>,
}

/// The outcome of a recipient's last test call.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RecipientTest {
    /// The recipient's name in the policy.
    pub name: String,
    /// When the test call ended (or the test ended without calling).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_test_time: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>,
    /// A person answered (not a machine, when answering machine detection ran).
    #[serde(default)]
    pub answered: bool,
    /// The person pressed a key.
    #[serde(default)]
    pub acknowledged: bool,
    /// Twilio's error code when the call failed or was refused, for example 21211 (invalid
    /// number).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub twilio_error_code: Option<i64>,
    /// The test proved the recipient can be reached: the key was pressed.
    #[serde(default)]
    pub passed: bool,
    /// Why it did not pass, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The AlertCall of the test.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub alert_call: String,
}

/// Where the policy's TwiML documents are hosted.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TwimlStatus {
    /// Serverless Service SID (ZS...).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub service_sid: String,
    /// Build SID (ZB...) that contains the current documents.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub build_sid: String,
    /// Hash of the published content; an unchanged hash skips the upload.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub content_hash: String,
    /// The documents' URLs.
    #[serde(default)]
    pub urls: TwimlUrls,
}

/// URLs of the hosted TwiML documents.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TwimlUrls {
    /// Confirms the acknowledgement and joins the room.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub ack: String,
    /// What a dial-in caller of the bridge number hears before joining the room.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub bridge: String,
    /// The acknowledgement function every call's keypress is sent to: it records the keypress
    /// in the install's Twilio Sync map, then joins the person to the room. The operator reads
    /// that map, so a keypress counts even if the person hangs up at once.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub ack_function: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_template_renders_event_fields() {
        let text =
            crate::message::render(DEFAULT_TEMPLATE, &crate::message::MessageContext::sample())
                .unwrap_or_default();
        assert_eq!(
            text,
            "Alert. BackOff on Pod default/api-7f9c6d5b8-x2x9q. Back-off restarting failed container api"
        );
    }
}
