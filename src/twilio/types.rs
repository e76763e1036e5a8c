//! Twilio resources as the client returns them, trimmed to the fields alertcall uses.
//!
//! Field names are Twilio's snake_case JSON names (`twilio_api_v2010.json`,
//! `twilio_serverless_v1.json`). Every struct tolerates missing fields, and dates stay strings:
//! v2010 sends RFC 2822 (`Tue, 31 Aug 2010 20:36:28 +0000`), Serverless ISO 8601; a date that is
//! odd, null or not even a string never fails the response. Parse with [`parse_twilio_date`].

use serde::{Deserialize, Deserializer, Serialize};

/// Parses a Twilio date leniently: RFC 2822 (v2010) or RFC 3339 / ISO 8601 (Serverless).
pub fn parse_twilio_date(value: &str) -> Option<jiff::Timestamp> {
    let value = value.trim();
    if value.is_empty() {
        return None;
    }
    if let Ok(zoned) = jiff::fmt::rfc2822::parse(value) {
        return Some(zoned.timestamp());
    }
    value.parse::<jiff::Timestamp>().ok()
}

/// Accepts a string, number or bool as a string; anything else (null, objects) as `None`.
fn lenient_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(match serde_json::Value::deserialize(d)? {
        serde_json::Value::String(s) => Some(s),
        serde_json::Value::Number(n) => Some(n.to_string()),
        serde_json::Value::Bool(b) => Some(b.to_string()),
        _ => None,
    })
}

/// Treats `null` like a missing field: Twilio sends `null` for many values it has not set.
fn nullable<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

macro_rules! lenient_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident = $wire:literal),* $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name {
            $(#[serde(rename = $wire)] $variant,)*
            /// A value this version does not know (Twilio adds values over time).
            #[default]
            #[serde(other)]
            Unknown,
        }

        impl $name {
            /// The value as Twilio writes it.
            pub fn as_str(&self) -> &'static str {
                match self {
                    $($name::$variant => $wire,)*
                    $name::Unknown => "unknown",
                }
            }
        }
    };
}

lenient_enum! {
    /// `call_enum_status`.
    CallStatus {
        Queued = "queued",
        Ringing = "ringing",
        InProgress = "in-progress",
        Completed = "completed",
        Busy = "busy",
        Failed = "failed",
        NoAnswer = "no-answer",
        Canceled = "canceled",
    }
}

impl CallStatus {
    /// True once the call has ended, whatever the outcome.
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            CallStatus::Completed
                | CallStatus::Busy
                | CallStatus::Failed
                | CallStatus::NoAnswer
                | CallStatus::Canceled
        )
    }
}

lenient_enum! {
    /// `conference_enum_status`.
    ConferenceStatus {
        Init = "init",
        InProgress = "in-progress",
        Completed = "completed",
    }
}

lenient_enum! {
    /// `participant_enum_status`.
    ParticipantStatus {
        Queued = "queued",
        Connecting = "connecting",
        Ringing = "ringing",
        Connected = "connected",
        Complete = "complete",
        Failed = "failed",
    }
}

lenient_enum! {
    /// `build_enum_status`.
    BuildStatus {
        Building = "building",
        Completed = "completed",
        Failed = "failed",
    }
}

/// A call (`api.v2010.account.call`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Call {
    #[serde(deserialize_with = "nullable")]
    pub sid: String,
    #[serde(deserialize_with = "nullable")]
    pub account_sid: String,
    pub parent_call_sid: Option<String>,
    #[serde(deserialize_with = "nullable")]
    pub to: String,
    #[serde(deserialize_with = "nullable")]
    pub from: String,
    #[serde(deserialize_with = "nullable")]
    pub status: CallStatus,
    #[serde(deserialize_with = "lenient_string")]
    pub date_created: Option<String>,
    #[serde(deserialize_with = "lenient_string")]
    pub start_time: Option<String>,
    #[serde(deserialize_with = "lenient_string")]
    pub end_time: Option<String>,
    /// Seconds, as a string.
    #[serde(deserialize_with = "lenient_string")]
    pub duration: Option<String>,
    pub direction: Option<String>,
    pub answered_by: Option<String>,
    /// Milliseconds before the call is placed, as a string.
    #[serde(deserialize_with = "lenient_string")]
    pub queue_time: Option<String>,
}

impl Call {
    pub fn start_time_parsed(&self) -> Option<jiff::Timestamp> {
        self.start_time.as_deref().and_then(parse_twilio_date)
    }

    pub fn end_time_parsed(&self) -> Option<jiff::Timestamp> {
        self.end_time.as_deref().and_then(parse_twilio_date)
    }

    pub fn date_created_parsed(&self) -> Option<jiff::Timestamp> {
        self.date_created.as_deref().and_then(parse_twilio_date)
    }
}

/// One webhook request Twilio made for a call and its answer (`api.v2010.account.call.call_event`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CallEvent {
    pub request: Option<CallEventRequest>,
    pub response: Option<CallEventResponse>,
}

/// The request half of a [`CallEvent`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CallEventRequest {
    pub method: Option<String>,
    pub url: Option<String>,
    /// The request's parameters, snake_case keys (`call_sid`, `digits`, ...).
    #[serde(deserialize_with = "nullable")]
    pub parameters: serde_json::Map<String, serde_json::Value>,
}

/// The response half of a [`CallEvent`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CallEventResponse {
    pub response_code: Option<i64>,
    pub request_duration: Option<i64>,
    pub content_type: Option<String>,
    pub response_body: Option<String>,
    #[serde(deserialize_with = "lenient_string")]
    pub date_created: Option<String>,
}

/// A conference (`api.v2010.account.conference`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Conference {
    #[serde(deserialize_with = "nullable")]
    pub sid: String,
    #[serde(deserialize_with = "nullable")]
    pub friendly_name: String,
    #[serde(deserialize_with = "nullable")]
    pub status: ConferenceStatus,
    #[serde(deserialize_with = "lenient_string")]
    pub date_created: Option<String>,
    #[serde(deserialize_with = "lenient_string")]
    pub date_updated: Option<String>,
    pub reason_conference_ended: Option<String>,
}

/// A recording of a conference (`api.v2010.account.conference.conference_recording`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ConferenceRecording {
    #[serde(deserialize_with = "nullable")]
    pub sid: String,
    #[serde(deserialize_with = "nullable")]
    pub conference_sid: String,
    /// `in-progress`, `paused`, `stopped`, `processing`, `completed` or `absent`.
    #[serde(deserialize_with = "nullable")]
    pub status: String,
    #[serde(deserialize_with = "lenient_string")]
    pub date_created: Option<String>,
    pub uri: Option<String>,
}

/// A conference participant (`api.v2010.account.conference.participant`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Participant {
    #[serde(deserialize_with = "nullable")]
    pub call_sid: String,
    #[serde(deserialize_with = "nullable")]
    pub conference_sid: String,
    pub label: Option<String>,
    #[serde(deserialize_with = "nullable")]
    pub status: ParticipantStatus,
    #[serde(deserialize_with = "nullable")]
    pub muted: bool,
    #[serde(deserialize_with = "nullable")]
    pub hold: bool,
    #[serde(deserialize_with = "lenient_string")]
    pub date_created: Option<String>,
}

/// A phone number of the account (`api.v2010.account.incoming_phone_number`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct IncomingPhoneNumber {
    #[serde(deserialize_with = "nullable")]
    pub sid: String,
    #[serde(deserialize_with = "nullable")]
    pub phone_number: String,
    pub friendly_name: Option<String>,
    pub voice_url: Option<String>,
    pub voice_method: Option<String>,
    pub voice_application_sid: Option<String>,
    pub trunk_sid: Option<String>,
}

/// A verified caller ID of the account (`api.v2010.account.outgoing_caller_id`): a number that
/// may be used as `From` without being a Twilio number.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct OutgoingCallerId {
    #[serde(deserialize_with = "nullable")]
    pub sid: String,
    #[serde(deserialize_with = "nullable")]
    pub phone_number: String,
    pub friendly_name: Option<String>,
}

/// A number's voice webhook: what [`crate::twilio::TwilioClient::update_voice_url`] replaced.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct VoiceWebhook {
    pub voice_url: Option<String>,
    pub voice_method: Option<String>,
}

/// A Serverless service (`serverless.v1.service`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Service {
    #[serde(deserialize_with = "nullable")]
    pub sid: String,
    #[serde(deserialize_with = "nullable")]
    pub unique_name: String,
    #[serde(deserialize_with = "nullable")]
    pub friendly_name: String,
    pub domain_base: Option<String>,
    #[serde(deserialize_with = "lenient_string")]
    pub date_created: Option<String>,
}

/// A Serverless environment (`serverless.v1.service.environment`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Environment {
    #[serde(deserialize_with = "nullable")]
    pub sid: String,
    #[serde(deserialize_with = "nullable")]
    pub service_sid: String,
    #[serde(deserialize_with = "nullable")]
    pub unique_name: String,
    pub domain_suffix: Option<String>,
    /// The public host (and, in the simulator, a path prefix) of the environment's assets.
    #[serde(deserialize_with = "nullable")]
    pub domain_name: String,
    /// The active build.
    pub build_sid: Option<String>,
}

/// A Serverless asset (`serverless.v1.service.asset`): a container of versions.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Asset {
    #[serde(deserialize_with = "nullable")]
    pub sid: String,
    #[serde(deserialize_with = "nullable")]
    pub service_sid: String,
    #[serde(deserialize_with = "nullable")]
    pub friendly_name: String,
}

/// An uploaded asset version (`serverless.v1.service.asset.asset_version`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AssetVersion {
    #[serde(deserialize_with = "nullable")]
    pub sid: String,
    #[serde(deserialize_with = "nullable")]
    pub asset_sid: String,
    #[serde(deserialize_with = "nullable")]
    pub service_sid: String,
    #[serde(deserialize_with = "nullable")]
    pub path: String,
    #[serde(deserialize_with = "nullable")]
    pub visibility: String,
}

/// A Serverless build (`serverless.v1.service.build`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Build {
    #[serde(deserialize_with = "nullable")]
    pub sid: String,
    #[serde(deserialize_with = "nullable")]
    pub service_sid: String,
    #[serde(deserialize_with = "nullable")]
    pub status: BuildStatus,
    /// Twilio returns the full version objects here; kept as JSON.
    pub asset_versions: Option<Vec<serde_json::Value>>,
    pub function_versions: Option<Vec<serde_json::Value>>,
    #[serde(deserialize_with = "lenient_string")]
    pub date_created: Option<String>,
}

/// `GET .../Builds/{Sid}/Status` (`serverless.v1.service.build.build_status`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct BuildStatusResource {
    #[serde(deserialize_with = "nullable")]
    pub sid: String,
    #[serde(deserialize_with = "nullable")]
    pub service_sid: String,
    #[serde(deserialize_with = "nullable")]
    pub status: BuildStatus,
}

/// A deployment of a build to an environment (`serverless.v1.service.environment.deployment`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Deployment {
    #[serde(deserialize_with = "nullable")]
    pub sid: String,
    #[serde(deserialize_with = "nullable")]
    pub service_sid: String,
    #[serde(deserialize_with = "nullable")]
    pub environment_sid: String,
    #[serde(deserialize_with = "nullable")]
    pub build_sid: String,
    #[serde(deserialize_with = "lenient_string")]
    pub date_created: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn twilio_dates_parse_leniently() {
        let rfc2822 = parse_twilio_date("Tue, 31 Aug 2010 20:36:28 +0000");
        assert_eq!(rfc2822.map(|t| t.as_second()), Some(1_283_286_988));
        let iso = parse_twilio_date("2018-11-10T20:00:00Z");
        assert_eq!(iso.map(|t| t.as_second()), Some(1_541_880_000));
        assert_eq!(parse_twilio_date("yesterday-ish"), None);
        assert_eq!(parse_twilio_date(""), None);
    }

    #[test]
    fn twilio_call_with_odd_dates_still_decodes() {
        let json = r#"{
            "sid": "CA0123456789abcdef0123456789abcdef",
            "status": "in-progress",
            "to": "+819012345678", "from": "+815012345678",
            "date_created": "not a date",
            "start_time": null,
            "end_time": 1234,
            "duration": 17,
            "queue_time": "0",
            "subresource_uris": {"events": "/x"},
            "some_new_field": [1, 2]
        }"#;
        let call: Call = serde_json::from_str(json).expect("tolerant decode");
        assert_eq!(call.status, CallStatus::InProgress);
        assert_eq!(call.date_created.as_deref(), Some("not a date"));
        assert_eq!(call.date_created_parsed(), None);
        assert_eq!(call.start_time, None);
        assert_eq!(call.end_time.as_deref(), Some("1234"));
        assert_eq!(call.duration.as_deref(), Some("17"));
        assert_eq!(call.parent_call_sid, None);
    }

    #[test]
    fn twilio_unknown_enum_values_do_not_fail() {
        let call: Call = serde_json::from_str(r#"{"sid":"CA1","status":"teleported"}"#)
            .expect("unknown status tolerated");
        assert_eq!(call.status, CallStatus::Unknown);
        assert!(!call.status.is_terminal());
        let p: Participant =
            serde_json::from_str(r#"{"call_sid":"CA1","status":"connected"}"#).expect("decode");
        // `null` where a value is expected reads as the default, never as a failure.
        let nulls: Participant = serde_json::from_str(
            r#"{"call_sid":null,"conference_sid":"CF1","status":null,"muted":null,"hold":null}"#,
        )
        .expect("nulls tolerated");
        assert_eq!(nulls.status, ParticipantStatus::Unknown);
        assert!(!nulls.muted && nulls.call_sid.is_empty());
        let call: Call = serde_json::from_str(r#"{"sid":"CA1","to":null,"from":null}"#)
            .expect("null numbers tolerated");
        assert!(call.to.is_empty());
        assert_eq!(p.status, ParticipantStatus::Connected);
        assert_eq!(CallStatus::NoAnswer.as_str(), "no-answer");
    }

    #[test]
    fn twilio_call_event_decodes_spec_example() {
        let json = r#"{
            "request": {"method": "POST", "url": "https://x.test/ack.xml",
                        "parameters": {"digits": "1", "call_sid": "CA1"}},
            "response": {"response_code": 200, "request_duration": 50,
                         "content_type": "application/xml", "response_body": "<Response/>",
                         "date_created": "Tue, 11 Aug 2020 17:44:08 +0000"}
        }"#;
        let event: CallEvent = serde_json::from_str(json).expect("decode");
        let request = event.request.expect("request");
        assert_eq!(request.url.as_deref(), Some("https://x.test/ack.xml"));
        assert_eq!(
            request.parameters.get("digits").and_then(|v| v.as_str()),
            Some("1")
        );
        assert_eq!(event.response.and_then(|r| r.response_code), Some(200));
    }
}

/// A Serverless Function (`serverless.v1.service.function`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Function {
    #[serde(deserialize_with = "nullable")]
    pub sid: String,
    #[serde(deserialize_with = "nullable")]
    pub service_sid: String,
    #[serde(deserialize_with = "nullable")]
    pub friendly_name: String,
}

/// An uploaded Function version (`serverless.v1.service.function.function_version`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct FunctionVersion {
    #[serde(deserialize_with = "nullable")]
    pub sid: String,
    #[serde(deserialize_with = "nullable")]
    pub path: String,
}

/// A Sync Map (`sync.v1.service.sync_map`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SyncMap {
    #[serde(deserialize_with = "nullable")]
    pub sid: String,
    #[serde(deserialize_with = "lenient_string")]
    pub unique_name: Option<String>,
}

/// A Sync Map Item (`sync.v1.service.sync_map.sync_map_item`): `data` is what the writer put.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SyncMapItem {
    #[serde(deserialize_with = "nullable")]
    pub key: String,
    pub data: serde_json::Value,
}
