//! Programmable Voice (API v2010): Calls, their Events, Conferences with their Participants and
//! Recordings, and the phone numbers and caller IDs a policy dials from.

use super::*;
use crate::twilio::error::{Operation, TwilioError};
use crate::twilio::types::*;

/// `POST/GET` for webhook method parameters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum HttpMethod {
    Get,
    #[default]
    Post,
}

impl HttpMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            HttpMethod::Get => "GET",
            HttpMethod::Post => "POST",
        }
    }
}

/// `StatusCallbackEvent` values of Calls create.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallProgressEvent {
    Initiated,
    Ringing,
    Answered,
    Completed,
}

impl CallProgressEvent {
    pub const ALL: [CallProgressEvent; 4] = [
        CallProgressEvent::Initiated,
        CallProgressEvent::Ringing,
        CallProgressEvent::Answered,
        CallProgressEvent::Completed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CallProgressEvent::Initiated => "initiated",
            CallProgressEvent::Ringing => "ringing",
            CallProgressEvent::Answered => "answered",
            CallProgressEvent::Completed => "completed",
        }
    }
}

/// `MachineDetection` of Calls create.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MachineDetection {
    Enable,
    DetectMessageEnd,
}

impl MachineDetection {
    pub fn as_str(self) -> &'static str {
        match self {
            MachineDetection::Enable => "Enable",
            MachineDetection::DetectMessageEnd => "DetectMessageEnd",
        }
    }
}

/// Parameters of Calls create with inline TwiML.
#[derive(Clone, Debug, PartialEq)]
pub struct CreateCall {
    pub to: String,
    pub from: String,
    /// The document (see [`crate::twilio::twiml::Response::to_inline`]).
    pub twiml: String,
    pub status_callback: Option<String>,
    /// Sent only with `status_callback`; all four by default.
    pub status_callback_events: Vec<CallProgressEvent>,
    pub status_callback_method: HttpMethod,
    /// Ring timeout in seconds (Twilio: default 60, max 600).
    pub timeout_secs: Option<u32>,
    pub caller_id: Option<String>,
    pub machine_detection: Option<MachineDetection>,
}

impl CreateCall {
    pub fn new(to: impl Into<String>, from: impl Into<String>, twiml: impl Into<String>) -> Self {
        Self {
            to: to.into(),
            from: from.into(),
            twiml: twiml.into(),
            status_callback: None,
            status_callback_events: CallProgressEvent::ALL.to_vec(),
            status_callback_method: HttpMethod::Post,
            timeout_secs: None,
            caller_id: None,
            machine_detection: None,
        }
    }

    /// The form body, in a stable order; arrays as repeated keys.
    pub fn form(&self) -> Vec<(String, String)> {
        let mut form = vec![
            ("To".to_string(), self.to.clone()),
            ("From".to_string(), self.from.clone()),
            ("Twiml".to_string(), self.twiml.clone()),
        ];
        if let Some(callback) = &self.status_callback {
            form.push(("StatusCallback".into(), callback.clone()));
            for event in &self.status_callback_events {
                form.push(("StatusCallbackEvent".into(), event.as_str().into()));
            }
            form.push((
                "StatusCallbackMethod".into(),
                self.status_callback_method.as_str().into(),
            ));
        }
        if let Some(timeout) = self.timeout_secs {
            form.push(("Timeout".into(), timeout.to_string()));
        }
        if let Some(caller_id) = &self.caller_id {
            form.push(("CallerId".into(), caller_id.clone()));
        }
        if let Some(md) = self.machine_detection {
            form.push(("MachineDetection".into(), md.as_str().into()));
        }
        form
    }
}

/// `Status` of Calls update.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallEnd {
    /// Ends a queued or ringing call; no effect on a call in progress.
    Canceled,
    /// Ends the call whatever its state.
    Completed,
}

impl CallEnd {
    pub fn as_str(self) -> &'static str {
        match self {
            CallEnd::Canceled => "canceled",
            CallEnd::Completed => "completed",
        }
    }
}

/// A `StartTime` filter of Calls list. Twilio documents day granularity (`YYYY-MM-DD`, UTC); narrow
/// further on [`Call::start_time_parsed`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartTimeFilter {
    On(jiff::civil::Date),
    OnOrAfter(jiff::civil::Date),
    OnOrBefore(jiff::civil::Date),
}

/// Filters of Calls list.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CallFilter {
    pub to: Option<String>,
    pub from: Option<String>,
    pub status: Option<CallStatus>,
    pub start_time: Option<StartTimeFilter>,
}

impl CallFilter {
    /// The query parameters, in a stable order.
    pub fn query(&self) -> Vec<(String, String)> {
        let mut q = Vec::new();
        if let Some(to) = &self.to {
            q.push(("To".into(), to.clone()));
        }
        if let Some(from) = &self.from {
            q.push(("From".into(), from.clone()));
        }
        if let Some(status) = &self.status {
            q.push(("Status".into(), status.as_str().into()));
        }
        if let Some(start) = self.start_time {
            let (name, date) = match start {
                StartTimeFilter::On(d) => ("StartTime", d),
                StartTimeFilter::OnOrAfter(d) => ("StartTime>", d),
                StartTimeFilter::OnOrBefore(d) => ("StartTime<", d),
            };
            q.push((name.into(), date.strftime("%Y-%m-%d").to_string()));
        }
        q
    }
}

/// A `DateCreated` filter of Conferences list. Twilio documents day granularity (`YYYY-MM-DD`,
/// UTC), `DateCreated>=` meaning on or after that day's midnight; narrow further on the
/// conference's `date_created`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DateCreatedFilter {
    On(jiff::civil::Date),
    OnOrAfter(jiff::civil::Date),
    OnOrBefore(jiff::civil::Date),
}

/// Filters of Conferences list. Twilio takes one `Status` per request.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ConferenceFilter {
    pub friendly_name: Option<String>,
    pub status: Option<ConferenceStatus>,
    pub date_created: Option<DateCreatedFilter>,
}

impl ConferenceFilter {
    /// The query parameters, in a stable order. The OAI names the inequalities `DateCreated>`
    /// and `DateCreated<`; sent as `DateCreated>=YYYY-MM-DD` once form-encoded.
    pub fn query(&self) -> Vec<(String, String)> {
        let mut q = Vec::new();
        if let Some(name) = &self.friendly_name {
            q.push(("FriendlyName".into(), name.clone()));
        }
        if let Some(status) = &self.status {
            q.push(("Status".into(), status.as_str().into()));
        }
        if let Some(created) = self.date_created {
            let (name, date) = match created {
                DateCreatedFilter::On(d) => ("DateCreated", d),
                DateCreatedFilter::OnOrAfter(d) => ("DateCreated>", d),
                DateCreatedFilter::OnOrBefore(d) => ("DateCreated<", d),
            };
            q.push((name.into(), date.strftime("%Y-%m-%d").to_string()));
        }
        q
    }
}

impl TwilioClient {
    /// `POST /2010-04-01/Accounts/{AccountSid}/Calls.json`. Retried only on 429 and connection
    /// failures; a timeout or 5xx is [`RetryClass::Ambiguous`] and returned.
    pub async fn create_call(&self, call: &CreateCall) -> Result<Call, TwilioError> {
        let url = self.api_url(&["Calls.json"])?;
        let form = call.form();
        self.request(Operation::CreateCall, Verb::Post, url, Body::Form(&form))
            .await
    }

    /// `GET .../Calls/{Sid}.json`.
    pub async fn fetch_call(&self, call_sid: &str) -> Result<Call, TwilioError> {
        let url = self.api_url(&["Calls", &json_segment(call_sid)])?;
        self.request(Operation::FetchCall, Verb::Get, url, Body::Empty)
            .await
    }

    /// `POST .../Calls/{Sid}.json` with `Status=canceled|completed`.
    pub async fn end_call(&self, call_sid: &str, status: CallEnd) -> Result<Call, TwilioError> {
        let url = self.api_url(&["Calls", &json_segment(call_sid)])?;
        let form = vec![("Status".to_string(), status.as_str().to_string())];
        self.request(Operation::UpdateCall, Verb::Post, url, Body::Form(&form))
            .await
    }

    /// `GET .../Calls.json` filtered, following pages up to `max_pages`.
    pub async fn list_calls(&self, filter: &CallFilter) -> Result<Vec<Call>, TwilioError> {
        let url = self.api_url(&["Calls.json"])?;
        self.list(Operation::ListCalls, url, &filter.query(), "calls")
            .await
    }

    /// `GET .../Calls/{CallSid}/Events.json`: the webhook requests Twilio made for the call.
    pub async fn list_call_events(&self, call_sid: &str) -> Result<Vec<CallEvent>, TwilioError> {
        let url = self.api_url(&["Calls", call_sid, "Events.json"])?;
        self.list(Operation::ListCallEvents, url, &[], "events")
            .await
    }

    // ---- Conferences -------------------------------------------------------------------------

    /// `GET .../Conferences.json?FriendlyName=...&Status=...`.
    pub async fn list_conferences(
        &self,
        friendly_name: Option<&str>,
        status: Option<ConferenceStatus>,
    ) -> Result<Vec<Conference>, TwilioError> {
        let filter = ConferenceFilter {
            friendly_name: friendly_name.map(str::to_string),
            status,
            date_created: None,
        };
        self.list_conferences_where(&filter).await
    }

    /// `GET .../Conferences.json` filtered, following pages up to `max_pages`.
    pub async fn list_conferences_where(
        &self,
        filter: &ConferenceFilter,
    ) -> Result<Vec<Conference>, TwilioError> {
        let url = self.api_url(&["Conferences.json"])?;
        self.list(
            Operation::ListConferences,
            url,
            &filter.query(),
            "conferences",
        )
        .await
    }

    /// `GET .../Conferences/{ConferenceSid}/Participants.json` (needs the CF SID, not the name).
    pub async fn list_participants(
        &self,
        conference_sid: &str,
    ) -> Result<Vec<Participant>, TwilioError> {
        let url = self.api_url(&["Conferences", conference_sid, "Participants.json"])?;
        self.list(Operation::ListParticipants, url, &[], "participants")
            .await
    }

    /// `GET .../Conferences/{ConferenceSid}/Recordings.json`: the room's recordings.
    pub async fn list_conference_recordings(
        &self,
        conference_sid: &str,
    ) -> Result<Vec<ConferenceRecording>, TwilioError> {
        let url = self.api_url(&["Conferences", conference_sid, "Recordings.json"])?;
        self.list(Operation::ListConferenceRecordings, url, &[], "recordings")
            .await
    }

    /// The media URL of a recording, `.../Accounts/{AccountSid}/Recordings/{RecordingSid}`, the
    /// form of Twilio's `RecordingUrl` callback parameter (append `.mp3` or `.wav` to choose the
    /// format). Reading it needs the account's credentials.
    pub fn recording_media_url(&self, recording_sid: &str) -> Result<Url, TwilioError> {
        self.api_url(&["Recordings", recording_sid])
    }

    // ---- IncomingPhoneNumbers ----------------------------------------------------------------

    /// `GET .../IncomingPhoneNumbers.json?PhoneNumber=...` (Twilio matches partially; callers
    /// compare `phone_number` exactly).
    pub async fn list_incoming_phone_numbers(
        &self,
        phone_number: &str,
    ) -> Result<Vec<IncomingPhoneNumber>, TwilioError> {
        let url = self.api_url(&["IncomingPhoneNumbers.json"])?;
        let query = vec![("PhoneNumber".to_string(), phone_number.to_string())];
        self.list(
            Operation::ListIncomingPhoneNumbers,
            url,
            &query,
            "incoming_phone_numbers",
        )
        .await
    }

    /// `GET .../OutgoingCallerIds.json?PhoneNumber=...`: verified caller IDs (callers compare
    /// `phone_number` exactly).
    pub async fn list_outgoing_caller_ids(
        &self,
        phone_number: &str,
    ) -> Result<Vec<OutgoingCallerId>, TwilioError> {
        let url = self.api_url(&["OutgoingCallerIds.json"])?;
        let query = vec![("PhoneNumber".to_string(), phone_number.to_string())];
        self.list(
            Operation::ListOutgoingCallerIds,
            url,
            &query,
            "outgoing_caller_ids",
        )
        .await
    }

    /// `GET .../IncomingPhoneNumbers/{Sid}.json`.
    pub async fn fetch_incoming_phone_number(
        &self,
        sid: &str,
    ) -> Result<IncomingPhoneNumber, TwilioError> {
        let url = self.api_url(&["IncomingPhoneNumbers", &json_segment(sid)])?;
        self.request(
            Operation::FetchIncomingPhoneNumber,
            Verb::Get,
            url,
            Body::Empty,
        )
        .await
    }

    /// Sets a number's `VoiceUrl`/`VoiceMethod` and returns the webhook it had before (fetched
    /// first), so the caller can restore it, together with the updated number.
    pub async fn update_voice_url(
        &self,
        sid: &str,
        voice_url: &str,
        voice_method: HttpMethod,
    ) -> Result<(VoiceWebhook, IncomingPhoneNumber), TwilioError> {
        let before = self.fetch_incoming_phone_number(sid).await?;
        let previous = VoiceWebhook {
            voice_url: before.voice_url,
            voice_method: before.voice_method,
        };
        let updated = self
            .set_voice_webhook(
                sid,
                &VoiceWebhook {
                    voice_url: Some(voice_url.to_string()),
                    voice_method: Some(voice_method.as_str().to_string()),
                },
            )
            .await?;
        Ok((previous, updated))
    }

    /// `POST .../IncomingPhoneNumbers/{Sid}.json` with `VoiceUrl` and `VoiceMethod` as given
    /// (`None` URL clears it). Used to restore what [`Self::update_voice_url`] returned.
    pub async fn set_voice_webhook(
        &self,
        sid: &str,
        webhook: &VoiceWebhook,
    ) -> Result<IncomingPhoneNumber, TwilioError> {
        let url = self.api_url(&["IncomingPhoneNumbers", &json_segment(sid)])?;
        let mut form = vec![(
            "VoiceUrl".to_string(),
            webhook.voice_url.clone().unwrap_or_default(),
        )];
        if let Some(method) = &webhook.voice_method {
            form.push(("VoiceMethod".to_string(), method.clone()));
        }
        self.request(
            Operation::UpdateIncomingPhoneNumber,
            Verb::Post,
            url,
            Body::Form(&form),
        )
        .await
    }
}
