//! The Twilio REST client: v2010 (Calls, Conferences, Participants, IncomingPhoneNumbers) and
//! Serverless v1 (Services, Environments, Assets, Asset Versions, Builds, Deployments).
//!
//! Wire format follows Twilio's OpenAPI files: form bodies with PascalCase names, array parameters
//! as repeated keys, snake_case JSON responses. Safe requests are retried inside the client
//! (bounded, honouring `Retry-After`, otherwise exponential backoff with jitter); Calls create is
//! retried only when Twilio cannot have processed it (429, connection refused). See
//! [`TwilioError::retry_class`].

use std::fmt;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Deserialize;
use url::Url;

use super::error::{parse_retry_after, Operation, RetryClass, TwilioError};
use super::types::{
    Asset, AssetVersion, Build, BuildStatus, BuildStatusResource, Call, CallEvent, CallStatus,
    Conference, ConferenceRecording, ConferenceStatus, Deployment, Environment,
    IncomingPhoneNumber, OutgoingCallerId, Participant, Service, VoiceWebhook,
};

const API_VERSION: &str = "2010-04-01";

/// Account credentials. Both forms address the same account paths; only the Basic auth user
/// differs (the API key SID for keys).
#[derive(Clone)]
pub enum Credentials {
    AuthToken {
        account_sid: String,
        auth_token: String,
    },
    ApiKey {
        account_sid: String,
        key_sid: String,
        key_secret: String,
    },
}

impl Credentials {
    pub fn account_sid(&self) -> &str {
        match self {
            Credentials::AuthToken { account_sid, .. }
            | Credentials::ApiKey { account_sid, .. } => account_sid,
        }
    }

    fn basic_auth(&self) -> (&str, &str) {
        match self {
            Credentials::AuthToken {
                account_sid,
                auth_token,
            } => (account_sid, auth_token),
            Credentials::ApiKey {
                key_sid,
                key_secret,
                ..
            } => (key_sid, key_secret),
        }
    }
}

// NB: hand-written so that secrets never reach a log through `{:?}`.
impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credentials::AuthToken { account_sid, .. } => f
                .debug_struct("AuthToken")
                .field("account_sid", account_sid)
                .field("auth_token", &"<redacted>")
                .finish(),
            Credentials::ApiKey {
                account_sid,
                key_sid,
                ..
            } => f
                .debug_struct("ApiKey")
                .field("account_sid", account_sid)
                .field("key_sid", key_sid)
                .field("key_secret", &"<redacted>")
                .finish(),
        }
    }
}

/// Bounded retry of safe requests.
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    /// Total tries, the first included (1 disables retries).
    pub max_attempts: u32,
    /// First backoff; doubled each retry, with jitter.
    pub base_delay: Duration,
    /// Longest single wait. A `Retry-After` longer than this is not waited for: the error is
    /// returned so the caller can requeue instead of holding a worker.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 4,
            base_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(5),
        }
    }
}

impl RetryPolicy {
    /// Exponential backoff with "equal jitter": half fixed, half random, so retries spread out
    /// but never collapse to zero.
    pub fn backoff(&self, retry: u32) -> Duration {
        let factor = 1u32
            .checked_shl(retry.saturating_sub(1).min(16))
            .unwrap_or(u32::MAX);
        let full = self.base_delay.saturating_mul(factor).min(self.max_delay);
        let half = full / 2;
        let jitter_ms = u64::try_from(half.as_millis()).unwrap_or(u64::MAX);
        half + Duration::from_millis(fastrand::u64(0..=jitter_ms))
    }
}

/// Where and how the client talks to Twilio.
#[derive(Clone, Debug)]
pub struct TwilioConfig {
    pub credentials: Credentials,
    /// REST API (v2010) base, default `https://api.twilio.com`.
    pub api_base: Url,
    /// Serverless base, default `https://serverless.twilio.com`.
    pub serverless_base: Url,
    /// Serverless upload base, default `https://serverless-upload.twilio.com`.
    pub upload_base: Url,
    /// Scheme of public asset URLs, default `https`; the simulator serves `http`.
    pub asset_scheme: String,
    /// Whole-request timeout.
    pub timeout: Duration,
    pub retry: RetryPolicy,
    /// Most pages a list follows through `next_page_uri`.
    pub max_pages: u32,
    /// `PageSize` of list requests (1..=1000).
    pub page_size: u32,
}

impl TwilioConfig {
    /// Twilio's public endpoints with the given credentials.
    pub fn new(credentials: Credentials) -> Self {
        Self {
            credentials,
            api_base: static_url("https://api.twilio.com"),
            serverless_base: static_url("https://serverless.twilio.com"),
            upload_base: static_url("https://serverless-upload.twilio.com"),
            asset_scheme: "https".to_string(),
            timeout: Duration::from_secs(15),
            retry: RetryPolicy::default(),
            max_pages: 20,
            page_size: 100,
        }
    }

    /// Points all three hosts at one base URL (the simulator serves them all). Asset URLs take
    /// the base's scheme too: the simulator serves an Environment's `domain_name` on the same
    /// plain-HTTP origin, where `https://` would fail the TLS handshake.
    pub fn with_single_base(mut self, base: Url) -> Self {
        self.asset_scheme = base.scheme().to_string();
        self.api_base = base.clone();
        self.serverless_base = base.clone();
        self.upload_base = base;
        self
    }
}

fn static_url(s: &str) -> Url {
    match Url::parse(s) {
        Ok(url) => url,
        // NB: only called with the literal defaults above; no input reaches this.
        Err(e) => unreachable!("literal URL {s} does not parse: {e}"),
    }
}

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

/// An asset version to upload.
#[derive(Clone, Debug, PartialEq)]
pub struct AssetUpload {
    /// Public path, with a leading `/` (`/alertcall/ack.xml`).
    pub path: String,
    /// Name of the `Content` file part.
    pub file_name: String,
    pub content_type: String,
    pub content: Vec<u8>,
}

/// The body of a request, kept as data so that a retry can send it again.
enum Body<'a> {
    Empty,
    Form(&'a [(String, String)]),
    Upload(&'a AssetUpload),
}

#[derive(Clone, Copy)]
enum Verb {
    Get,
    Post,
    Delete,
}

/// One page of a list response: items under a resource-named key plus the next page link
/// (`next_page_uri` in v2010, `meta.next_page_url` in Serverless).
#[derive(Deserialize)]
struct Page {
    #[serde(default)]
    next_page_uri: Option<String>,
    #[serde(default)]
    meta: Option<PageMeta>,
    #[serde(flatten)]
    rest: serde_json::Map<String, serde_json::Value>,
}

#[derive(Deserialize)]
struct PageMeta {
    #[serde(default)]
    next_page_url: Option<String>,
}

/// The Twilio REST client. Cheap to clone; share one per account.
#[derive(Clone)]
pub struct TwilioClient {
    http: reqwest::Client,
    config: TwilioConfig,
}

impl fmt::Debug for TwilioClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TwilioClient")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl TwilioClient {
    pub fn new(config: TwilioConfig) -> Result<Self, TwilioError> {
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout)
            .user_agent(concat!("alertcall/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| TwilioError::Invalid(format!("building the HTTP client: {e}")))?;
        Ok(Self { http, config })
    }

    pub fn config(&self) -> &TwilioConfig {
        &self.config
    }

    pub fn account_sid(&self) -> &str {
        self.config.credentials.account_sid()
    }

    // ---- Calls -------------------------------------------------------------------------------

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
        let url = self.api_url(&["Conferences.json"])?;
        let mut query = Vec::new();
        if let Some(name) = friendly_name {
            query.push(("FriendlyName".to_string(), name.to_string()));
        }
        if let Some(status) = status {
            query.push(("Status".to_string(), status.as_str().to_string()));
        }
        self.list(Operation::ListConferences, url, &query, "conferences")
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

    // ---- Serverless ----------------------------------------------------------------------------

    /// `POST /v1/Services` with `UniqueName`, `FriendlyName`.
    pub async fn create_service(
        &self,
        unique_name: &str,
        friendly_name: &str,
    ) -> Result<Service, TwilioError> {
        let url = self.serverless_url(&["Services"])?;
        let form = vec![
            ("UniqueName".to_string(), unique_name.to_string()),
            ("FriendlyName".to_string(), friendly_name.to_string()),
        ];
        self.request(Operation::CreateService, Verb::Post, url, Body::Form(&form))
            .await
    }

    /// `GET /v1/Services`.
    pub async fn list_services(&self) -> Result<Vec<Service>, TwilioError> {
        let url = self.serverless_url(&["Services"])?;
        self.list(Operation::ListServices, url, &[], "services")
            .await
    }

    /// `GET /v1/Services/{Sid}`; the SID or the unique name.
    pub async fn fetch_service(&self, sid_or_unique_name: &str) -> Result<Service, TwilioError> {
        let url = self.serverless_url(&["Services", sid_or_unique_name])?;
        self.request(Operation::FetchService, Verb::Get, url, Body::Empty)
            .await
    }

    /// The service with this unique name, or `None` if Twilio has none (404).
    pub async fn find_service(&self, unique_name: &str) -> Result<Option<Service>, TwilioError> {
        match self.fetch_service(unique_name).await {
            Ok(service) => Ok(Some(service)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `POST /v1/Services/{ServiceSid}/Environments` with `UniqueName` (and `DomainSuffix`).
    pub async fn create_environment(
        &self,
        service_sid: &str,
        unique_name: &str,
        domain_suffix: Option<&str>,
    ) -> Result<Environment, TwilioError> {
        let url = self.serverless_url(&["Services", service_sid, "Environments"])?;
        let mut form = vec![("UniqueName".to_string(), unique_name.to_string())];
        if let Some(suffix) = domain_suffix {
            form.push(("DomainSuffix".to_string(), suffix.to_string()));
        }
        self.request(
            Operation::CreateEnvironment,
            Verb::Post,
            url,
            Body::Form(&form),
        )
        .await
    }

    /// `GET /v1/Services/{ServiceSid}/Environments`.
    pub async fn list_environments(
        &self,
        service_sid: &str,
    ) -> Result<Vec<Environment>, TwilioError> {
        let url = self.serverless_url(&["Services", service_sid, "Environments"])?;
        self.list(Operation::ListEnvironments, url, &[], "environments")
            .await
    }

    /// `POST /v1/Services/{ServiceSid}/Assets` with `FriendlyName`.
    pub async fn create_asset(
        &self,
        service_sid: &str,
        friendly_name: &str,
    ) -> Result<Asset, TwilioError> {
        let url = self.serverless_url(&["Services", service_sid, "Assets"])?;
        let form = vec![("FriendlyName".to_string(), friendly_name.to_string())];
        self.request(Operation::CreateAsset, Verb::Post, url, Body::Form(&form))
            .await
    }

    /// `GET /v1/Services/{ServiceSid}/Assets`.
    pub async fn list_assets(&self, service_sid: &str) -> Result<Vec<Asset>, TwilioError> {
        let url = self.serverless_url(&["Services", service_sid, "Assets"])?;
        self.list(Operation::ListAssets, url, &[], "assets").await
    }

    /// `DELETE /v1/Services/{ServiceSid}/Assets/{Sid}`.
    pub async fn delete_asset(
        &self,
        service_sid: &str,
        asset_sid: &str,
    ) -> Result<(), TwilioError> {
        let url = self.serverless_url(&["Services", service_sid, "Assets", asset_sid])?;
        self.send(Operation::DeleteAsset, Verb::Delete, url, &Body::Empty)
            .await
            .map(|_| ())
    }

    /// `POST https://serverless-upload.twilio.com/v1/Services/{ServiceSid}/Assets/{AssetSid}/Versions`
    /// as multipart: `Path`, `Visibility=protected`, and the file as `Content`.
    pub async fn upload_asset_version(
        &self,
        service_sid: &str,
        asset_sid: &str,
        upload: &AssetUpload,
    ) -> Result<AssetVersion, TwilioError> {
        let url = build_url(
            &self.config.upload_base,
            &[
                "v1",
                "Services",
                service_sid,
                "Assets",
                asset_sid,
                "Versions",
            ],
        )?;
        self.request(
            Operation::UploadAssetVersion,
            Verb::Post,
            url,
            Body::Upload(upload),
        )
        .await
    }

    /// `POST /v1/Services/{ServiceSid}/Builds` with one `AssetVersions` key per version.
    pub async fn create_build(
        &self,
        service_sid: &str,
        asset_version_sids: &[String],
    ) -> Result<Build, TwilioError> {
        let url = self.serverless_url(&["Services", service_sid, "Builds"])?;
        let form: Vec<(String, String)> = asset_version_sids
            .iter()
            .map(|sid| ("AssetVersions".to_string(), sid.clone()))
            .collect();
        self.request(Operation::CreateBuild, Verb::Post, url, Body::Form(&form))
            .await
    }

    /// `GET /v1/Services/{ServiceSid}/Builds/{Sid}`.
    pub async fn fetch_build(
        &self,
        service_sid: &str,
        build_sid: &str,
    ) -> Result<Build, TwilioError> {
        let url = self.serverless_url(&["Services", service_sid, "Builds", build_sid])?;
        self.request(Operation::FetchBuild, Verb::Get, url, Body::Empty)
            .await
    }

    /// `GET /v1/Services/{ServiceSid}/Builds/{Sid}/Status`.
    pub async fn fetch_build_status(
        &self,
        service_sid: &str,
        build_sid: &str,
    ) -> Result<BuildStatusResource, TwilioError> {
        let url = self.serverless_url(&["Services", service_sid, "Builds", build_sid, "Status"])?;
        self.request(Operation::FetchBuildStatus, Verb::Get, url, Body::Empty)
            .await
    }

    /// Polls the build status every `interval` until `completed` (returns the build) or `failed`
    /// (error), giving up after `max_wait`.
    pub async fn wait_for_build(
        &self,
        service_sid: &str,
        build_sid: &str,
        interval: Duration,
        max_wait: Duration,
    ) -> Result<Build, TwilioError> {
        let deadline = tokio::time::Instant::now() + max_wait;
        loop {
            let status = self.fetch_build_status(service_sid, build_sid).await?;
            match status.status {
                BuildStatus::Completed => return self.fetch_build(service_sid, build_sid).await,
                BuildStatus::Failed => {
                    return Err(TwilioError::Build {
                        build_sid: build_sid.to_string(),
                        outcome: "failed".to_string(),
                    })
                }
                BuildStatus::Building | BuildStatus::Unknown => {}
            }
            if tokio::time::Instant::now() + interval > deadline {
                return Err(TwilioError::Build {
                    build_sid: build_sid.to_string(),
                    outcome: format!("did not finish within {max_wait:?}"),
                });
            }
            tokio::time::sleep(interval).await;
        }
    }

    /// `POST /v1/Services/{ServiceSid}/Environments/{EnvironmentSid}/Deployments` with `BuildSid`.
    pub async fn create_deployment(
        &self,
        service_sid: &str,
        environment_sid: &str,
        build_sid: &str,
    ) -> Result<Deployment, TwilioError> {
        let url = self.serverless_url(&[
            "Services",
            service_sid,
            "Environments",
            environment_sid,
            "Deployments",
        ])?;
        let form = vec![("BuildSid".to_string(), build_sid.to_string())];
        self.request(
            Operation::CreateDeployment,
            Verb::Post,
            url,
            Body::Form(&form),
        )
        .await
    }

    /// `POST .../Deployments` without `BuildSid` (optional in Twilio's spec): the environment
    /// serves nothing. Used when the last asset leaves, as a build needs at least one version.
    pub async fn clear_deployment(
        &self,
        service_sid: &str,
        environment_sid: &str,
    ) -> Result<Deployment, TwilioError> {
        let url = self.serverless_url(&[
            "Services",
            service_sid,
            "Environments",
            environment_sid,
            "Deployments",
        ])?;
        self.request(
            Operation::CreateDeployment,
            Verb::Post,
            url,
            Body::Form(&[]),
        )
        .await
    }

    /// `GET /v1/Services/{ServiceSid}/Environments/{EnvironmentSid}/Deployments`.
    pub async fn list_deployments(
        &self,
        service_sid: &str,
        environment_sid: &str,
    ) -> Result<Vec<Deployment>, TwilioError> {
        let url = self.serverless_url(&[
            "Services",
            service_sid,
            "Environments",
            environment_sid,
            "Deployments",
        ])?;
        self.list(Operation::ListDeployments, url, &[], "deployments")
            .await
    }

    /// The public URL of an asset: `{asset_scheme}://{domain_name}{path}`.
    pub fn asset_url(&self, environment: &Environment, path: &str) -> String {
        asset_url(&self.config.asset_scheme, &environment.domain_name, path)
    }

    // ---- plumbing ------------------------------------------------------------------------------

    fn api_url(&self, tail: &[&str]) -> Result<Url, TwilioError> {
        let mut segments = vec![API_VERSION, "Accounts", self.account_sid()];
        segments.extend_from_slice(tail);
        build_url(&self.config.api_base, &segments)
    }

    fn serverless_url(&self, tail: &[&str]) -> Result<Url, TwilioError> {
        let mut segments = vec!["v1"];
        segments.extend_from_slice(tail);
        build_url(&self.config.serverless_base, &segments)
    }

    /// The path prefix of the configured base this URL was built on (`""` for a host root).
    fn base_prefix(&self, url: &Url) -> String {
        [&self.config.api_base, &self.config.serverless_base]
            .iter()
            .map(|base| base.path().trim_end_matches('/'))
            .filter(|prefix| url.path().starts_with(&format!("{prefix}/")))
            .max_by_key(|prefix| prefix.len())
            .unwrap_or_default()
            .to_string()
    }

    async fn request<T: DeserializeOwned>(
        &self,
        operation: Operation,
        verb: Verb,
        url: Url,
        body: Body<'_>,
    ) -> Result<T, TwilioError> {
        let bytes = self.send(operation, verb, url, &body).await?;
        decode(operation, &bytes)
    }

    /// Follows the list's pages; `key` is the array's name in the page (`calls`, `services`...).
    async fn list<T: DeserializeOwned>(
        &self,
        operation: Operation,
        mut url: Url,
        query: &[(String, String)],
        key: &str,
    ) -> Result<Vec<T>, TwilioError> {
        {
            let mut pairs = url.query_pairs_mut();
            for (name, value) in query {
                pairs.append_pair(name, value);
            }
            pairs.append_pair("PageSize", &self.config.page_size.to_string());
        }
        let base = url.clone();
        let prefix = self.base_prefix(&url);
        let mut items = Vec::new();
        let mut pages = 0u32;
        loop {
            pages += 1;
            let bytes = self.send(operation, Verb::Get, url, &Body::Empty).await?;
            let mut page: Page = decode(operation, &bytes)?;
            let array = page.rest.remove(key).unwrap_or(serde_json::Value::Null);
            if !array.is_null() {
                let batch: Vec<T> =
                    serde_json::from_value(array).map_err(|e| TwilioError::Decode {
                        operation,
                        message: format!("`{key}`: {e}"),
                    })?;
                items.extend(batch);
            }
            let next = page
                .next_page_uri
                .or(page.meta.and_then(|m| m.next_page_url))
                .filter(|n| !n.is_empty());
            let Some(next) = next else { break };
            if pages >= self.config.max_pages {
                tracing::warn!(
                    operation = operation.as_str(),
                    pages,
                    "list truncated at max_pages"
                );
                break;
            }
            url = next_page_url(&base, &next, &prefix)?;
        }
        Ok(items)
    }

    /// Sends with the bounded retry; returns the body of a 2xx response.
    async fn send(
        &self,
        operation: Operation,
        verb: Verb,
        url: Url,
        body: &Body<'_>,
    ) -> Result<Vec<u8>, TwilioError> {
        let policy = &self.config.retry;
        let mut attempt = 1u32;
        loop {
            let result = self.send_once(operation, verb, url.clone(), body).await;
            let err = match result {
                Ok(bytes) => return Ok(bytes),
                Err(err) => err,
            };
            let RetryClass::Retryable { after } = err.retry_class() else {
                return Err(err);
            };
            if attempt >= policy.max_attempts {
                return Err(err);
            }
            let delay = after.unwrap_or_else(|| policy.backoff(attempt));
            if delay > policy.max_delay {
                return Err(err);
            }
            tracing::debug!(
                operation = operation.as_str(),
                attempt,
                delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                error = %err,
                "retrying Twilio request"
            );
            tokio::time::sleep(delay).await;
            attempt += 1;
        }
    }

    async fn send_once(
        &self,
        operation: Operation,
        verb: Verb,
        url: Url,
        body: &Body<'_>,
    ) -> Result<Vec<u8>, TwilioError> {
        let (user, password) = self.config.credentials.basic_auth();
        let builder = match verb {
            Verb::Get => self.http.get(url),
            Verb::Post => self.http.post(url),
            Verb::Delete => self.http.delete(url),
        }
        .basic_auth(user, Some(password))
        .header(reqwest::header::ACCEPT, "application/json");
        let builder = match body {
            Body::Empty => builder,
            Body::Form(form) => builder.form(form),
            Body::Upload(upload) => builder.multipart(upload_form(upload)?),
        };
        let response = builder
            .send()
            .await
            .map_err(|e| TwilioError::from_reqwest(operation, e))?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, jiff::Timestamp::now()));
        let bytes = response
            .bytes()
            .await
            .map_err(|e| TwilioError::from_reqwest(operation, e))?;
        if status.is_success() {
            Ok(bytes.to_vec())
        } else {
            Err(TwilioError::from_response(
                operation,
                status.as_u16(),
                retry_after,
                &bytes,
            ))
        }
    }
}

/// The multipart body of an asset version upload, in the toolkit's field order.
fn upload_form(upload: &AssetUpload) -> Result<reqwest::multipart::Form, TwilioError> {
    let content = reqwest::multipart::Part::bytes(upload.content.clone())
        .file_name(upload.file_name.clone())
        .mime_str(&upload.content_type)
        .map_err(|e| {
            TwilioError::Invalid(format!("content type {:?}: {e}", upload.content_type))
        })?;
    Ok(reqwest::multipart::Form::new()
        .text("Path", upload.path.clone())
        .text("Visibility", "protected")
        .part("Content", content))
}

fn decode<T: DeserializeOwned>(operation: Operation, bytes: &[u8]) -> Result<T, TwilioError> {
    serde_json::from_slice(bytes).map_err(|e| TwilioError::Decode {
        operation,
        message: e.to_string(),
    })
}

/// `{sid}.json`, the last path segment of v2010 instance URLs.
fn json_segment(sid: &str) -> String {
    format!("{sid}.json")
}

/// Appends path segments (each percent-encoded) to `base`, keeping any path prefix it has.
pub fn build_url(base: &Url, segments: &[&str]) -> Result<Url, TwilioError> {
    let mut url = base.clone();
    url.set_query(None);
    url.set_fragment(None);
    {
        let mut path = url
            .path_segments_mut()
            .map_err(|_| TwilioError::Invalid(format!("base URL {base} cannot have a path")))?;
        path.pop_if_empty();
        path.extend(segments);
    }
    Ok(url)
}

/// Resolves a page link against the configured base: v2010 gives a path relative to the API host,
/// Serverless an absolute URL. Only path and query are taken, so a configured base (the
/// simulator) is never left for a host named in a response; `prefix` is the configured base's
/// path, put back when the link lacks it.
fn next_page_url(base: &Url, next: &str, prefix: &str) -> Result<Url, TwilioError> {
    let parsed = match Url::parse(next) {
        Ok(abs) => abs,
        Err(_) => base
            .join(next)
            .map_err(|e| TwilioError::Invalid(format!("next page {next:?}: {e}")))?,
    };
    let mut url = base.clone();
    if prefix.is_empty() || parsed.path().starts_with(&format!("{prefix}/")) {
        url.set_path(parsed.path());
    } else {
        url.set_path(&format!("{prefix}{}", parsed.path()));
    }
    url.set_query(parsed.query());
    Ok(url)
}

/// `{scheme}://{domain_name}{path}`, with exactly one `/` between domain and path.
pub fn asset_url(scheme: &str, domain_name: &str, path: &str) -> String {
    let domain = domain_name.trim_end_matches('/');
    let path = path.trim_start_matches('/');
    format!("{scheme}://{domain}/{path}")
}

#[cfg(test)]
mod tests;
