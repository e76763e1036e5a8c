//! Errors of the Twilio REST client, and how a caller may retry them.
//!
//! The retry class depends on the operation as much as on the failure: a 500 on a read can be
//! repeated, a 500 on Calls create may already have dialled someone, so it is *ambiguous* and is
//! resolved by listing calls rather than by creating another one.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The REST operations the client performs; used for retry decisions, logs and metric labels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Operation {
    CreateCall,
    FetchCall,
    UpdateCall,
    ListCalls,
    ListCallEvents,
    ListConferences,
    ListParticipants,
    ListConferenceRecordings,
    ListIncomingPhoneNumbers,
    ListOutgoingCallerIds,
    FetchIncomingPhoneNumber,
    UpdateIncomingPhoneNumber,
    CreateService,
    ListServices,
    FetchService,
    CreateEnvironment,
    ListEnvironments,
    CreateAsset,
    ListAssets,
    DeleteAsset,
    UploadAssetVersion,
    ListAssetVersions,
    CreateBuild,
    FetchBuild,
    FetchBuildStatus,
    CreateDeployment,
    ListDeployments,
    CreateFunction,
    ListFunctions,
    UploadFunctionVersion,
    ListFunctionVersions,
    CreateSyncMap,
    ListSyncMapItems,
}

impl Operation {
    /// Twilio's operationId (the upload has none in the spec; it is named like its siblings).
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::CreateCall => "CreateCall",
            Operation::FetchCall => "FetchCall",
            Operation::UpdateCall => "UpdateCall",
            Operation::ListCalls => "ListCall",
            Operation::ListCallEvents => "ListCallEvent",
            Operation::ListConferences => "ListConference",
            Operation::ListParticipants => "ListParticipant",
            Operation::ListConferenceRecordings => "ListConferenceRecording",
            Operation::ListIncomingPhoneNumbers => "ListIncomingPhoneNumber",
            Operation::ListOutgoingCallerIds => "ListOutgoingCallerId",
            Operation::FetchIncomingPhoneNumber => "FetchIncomingPhoneNumber",
            Operation::UpdateIncomingPhoneNumber => "UpdateIncomingPhoneNumber",
            Operation::CreateService => "CreateService",
            Operation::ListServices => "ListService",
            Operation::FetchService => "FetchService",
            Operation::CreateEnvironment => "CreateEnvironment",
            Operation::ListEnvironments => "ListEnvironment",
            Operation::CreateAsset => "CreateAsset",
            Operation::ListAssets => "ListAsset",
            Operation::DeleteAsset => "DeleteAsset",
            Operation::UploadAssetVersion => "CreateAssetVersion",
            Operation::ListAssetVersions => "ListAssetVersion",
            Operation::CreateBuild => "CreateBuild",
            Operation::FetchBuild => "FetchBuild",
            Operation::FetchBuildStatus => "FetchBuildStatus",
            Operation::CreateDeployment => "CreateDeployment",
            Operation::ListDeployments => "ListDeployment",
            Operation::CreateFunction => "CreateFunction",
            Operation::ListFunctions => "ListFunction",
            Operation::UploadFunctionVersion => "CreateFunctionVersion",
            Operation::ListFunctionVersions => "ListFunctionVersion",
            Operation::CreateSyncMap => "CreateSyncMap",
            Operation::ListSyncMapItems => "ListSyncMapItem",
        }
    }

    /// True when repeating the request cannot do anything twice: reads, deletes, and updates that
    /// set absolute values. Creates are not: a repeated create makes a second resource (or call).
    pub fn is_idempotent(self) -> bool {
        !matches!(
            self,
            Operation::CreateCall
                | Operation::CreateService
                | Operation::CreateEnvironment
                | Operation::CreateAsset
                | Operation::UploadAssetVersion
                | Operation::CreateBuild
                | Operation::CreateDeployment
                | Operation::CreateFunction
                | Operation::UploadFunctionVersion
                | Operation::CreateSyncMap
        )
    }
}

impl std::fmt::Display for Operation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Twilio's JSON error body: `{"status":429,"code":20429,"message":"...","more_info":"..."}`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ApiErrorBody {
    pub status: Option<u16>,
    pub code: Option<i64>,
    pub message: String,
    pub more_info: Option<String>,
}

/// What a caller should do about a failed request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RetryClass {
    /// The request was not processed (429, connection refused) or is safe to repeat (a read that
    /// failed with 5xx or timed out). `after` is the server's `Retry-After`, when it sent one.
    Retryable { after: Option<Duration> },
    /// A create may or may not have taken effect (timeout, 5xx, broken connection). Never repeat
    /// it blindly: look the resource up (for calls: list by To/From, match on `date_created`) first.
    Ambiguous,
    /// Repeating the same request will fail the same way (4xx other than 429, undecodable body).
    Permanent,
}

/// A failed Twilio request.
#[derive(Debug, thiserror::Error)]
pub enum TwilioError {
    /// Twilio answered with a non-success status.
    #[error("{operation}: Twilio returned HTTP {status}{}: {message}", code.map(|c| format!(" (code {c})")).unwrap_or_default())]
    Api {
        operation: Operation,
        status: u16,
        code: Option<i64>,
        message: String,
        more_info: Option<String>,
        retry_after: Option<Duration>,
    },
    /// The connection could not be established (refused, DNS, TLS); nothing was sent.
    #[error("{operation}: cannot connect to Twilio: {source}")]
    Connect {
        operation: Operation,
        refused: bool,
        #[source]
        source: reqwest::Error,
    },
    /// No complete response within the configured request timeout.
    #[error("{operation}: Twilio request timed out")]
    Timeout {
        operation: Operation,
        #[source]
        source: reqwest::Error,
    },
    /// The connection broke after the request may have been sent.
    #[error("{operation}: transport error: {source}")]
    Transport {
        operation: Operation,
        #[source]
        source: reqwest::Error,
    },
    /// A success response whose body is not the expected JSON.
    #[error("{operation}: cannot decode Twilio response: {message}")]
    Decode {
        operation: Operation,
        message: String,
    },
    /// The client was configured or called with something unusable (a bad base URL, say).
    #[error("Twilio client: {0}")]
    Invalid(String),
    /// A build ended `failed`, or did not finish within the wait.
    #[error("Serverless build {build_sid} {outcome}")]
    Build { build_sid: String, outcome: String },
}

impl TwilioError {
    /// Builds the error for a non-success response from its status, headers and body.
    pub fn from_response(
        operation: Operation,
        status: u16,
        retry_after: Option<Duration>,
        body: &[u8],
    ) -> Self {
        let parsed: Option<ApiErrorBody> = serde_json::from_slice(body).ok();
        let (code, message, more_info) = match parsed {
            Some(b) if !b.message.is_empty() || b.code.is_some() => {
                (b.code, b.message, b.more_info)
            }
            _ => {
                // NB: not JSON (a proxy's HTML page, say); keep a short prefix for the operator.
                let text = String::from_utf8_lossy(body);
                (None, text.chars().take(200).collect(), None)
            }
        };
        TwilioError::Api {
            operation,
            status,
            code,
            message,
            more_info,
            retry_after,
        }
    }

    /// How a caller (and the client's own retry loop) should treat this failure.
    pub fn retry_class(&self) -> RetryClass {
        match self {
            TwilioError::Api {
                operation,
                status,
                retry_after,
                ..
            } => {
                if *status == 429 {
                    // NB: "An API request that receives 429 is never processed" (Twilio 20429).
                    RetryClass::Retryable {
                        after: *retry_after,
                    }
                } else if *status >= 500 {
                    if operation.is_idempotent() {
                        RetryClass::Retryable {
                            after: *retry_after,
                        }
                    } else {
                        RetryClass::Ambiguous
                    }
                } else {
                    RetryClass::Permanent
                }
            }
            TwilioError::Connect { .. } => RetryClass::Retryable { after: None },
            TwilioError::Timeout { operation, .. } | TwilioError::Transport { operation, .. } => {
                if operation.is_idempotent() {
                    RetryClass::Retryable { after: None }
                } else {
                    RetryClass::Ambiguous
                }
            }
            TwilioError::Decode { .. } | TwilioError::Invalid(_) | TwilioError::Build { .. } => {
                RetryClass::Permanent
            }
        }
    }

    /// The HTTP status, for API errors.
    pub fn status(&self) -> Option<u16> {
        match self {
            TwilioError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Twilio's error code (e.g. 21211), for API errors that carried one.
    pub fn code(&self) -> Option<i64> {
        match self {
            TwilioError::Api { code, .. } => *code,
            _ => None,
        }
    }

    /// True for 409: a resource of that unique name exists already.
    pub fn is_conflict(&self) -> bool {
        self.status() == Some(409)
    }

    /// True for 404: the resource does not exist.
    pub fn is_not_found(&self) -> bool {
        self.status() == Some(404)
    }

    /// A stable short reason for conditions, Events and metric labels.
    pub fn reason(&self) -> &'static str {
        match self {
            TwilioError::Api { status: 401, .. } | TwilioError::Api { status: 403, .. } => {
                "TwilioUnauthorized"
            }
            TwilioError::Api { status: 404, .. } => "TwilioNotFound",
            TwilioError::Api { status: 429, .. } => "TwilioRateLimited",
            TwilioError::Api { status, .. } if *status >= 500 => "TwilioServerError",
            TwilioError::Api { .. } => "TwilioRejected",
            TwilioError::Connect { .. } => "TwilioUnreachable",
            TwilioError::Timeout { .. } => "TwilioTimeout",
            TwilioError::Transport { .. } => "TwilioTransport",
            TwilioError::Decode { .. } => "TwilioBadResponse",
            TwilioError::Invalid(_) => "TwilioClientInvalid",
            TwilioError::Build { .. } => "TwilioBuildFailed",
        }
    }

    /// Classifies a reqwest failure by the phase it happened in.
    pub(crate) fn from_reqwest(operation: Operation, source: reqwest::Error) -> Self {
        if source.is_connect() {
            let refused = is_connection_refused(&source);
            TwilioError::Connect {
                operation,
                refused,
                source,
            }
        } else if source.is_timeout() {
            TwilioError::Timeout { operation, source }
        } else {
            TwilioError::Transport { operation, source }
        }
    }
}

fn is_connection_refused(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = current {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::ConnectionRefused {
                return true;
            }
        }
        current = e.source();
    }
    false
}

/// Parses `Retry-After` as delta-seconds or an HTTP date (relative to `now`).
pub fn parse_retry_after(value: &str, now: jiff::Timestamp) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    if let Ok(secs) = value.parse::<f64>() {
        if secs.is_finite() && secs >= 0.0 {
            return Some(Duration::from_secs_f64(secs.min(86_400.0)));
        }
    }
    let when = jiff::fmt::rfc2822::parse(value).ok()?.timestamp();
    let delta = when.as_millisecond().saturating_sub(now.as_millisecond());
    Some(Duration::from_millis(u64::try_from(delta).unwrap_or(0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(operation: Operation, status: u16, retry_after: Option<Duration>) -> TwilioError {
        TwilioError::Api {
            operation,
            status,
            code: None,
            message: String::new(),
            more_info: None,
            retry_after,
        }
    }

    #[test]
    fn twilio_error_body_is_parsed() {
        let body = br#"{"status":429,"code":20429,"message":"Too Many Requests","more_info":"https://www.twilio.com/docs/errors/20429"}"#;
        let err = TwilioError::from_response(Operation::CreateCall, 429, None, body);
        match &err {
            TwilioError::Api {
                status,
                code,
                message,
                more_info,
                ..
            } => {
                assert_eq!(*status, 429);
                assert_eq!(*code, Some(20429));
                assert_eq!(message, "Too Many Requests");
                assert_eq!(
                    more_info.as_deref(),
                    Some("https://www.twilio.com/docs/errors/20429")
                );
            }
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(err.code(), Some(20429));
        assert_eq!(err.reason(), "TwilioRateLimited");
    }

    #[test]
    fn twilio_error_body_that_is_not_json_keeps_text() {
        let err = TwilioError::from_response(
            Operation::FetchCall,
            502,
            None,
            b"<html>bad gateway</html>",
        );
        assert_eq!(err.status(), Some(502));
        assert_eq!(err.code(), None);
        assert!(err.to_string().contains("bad gateway"), "{err}");
    }

    #[test]
    fn twilio_retry_classes() {
        let five = Some(Duration::from_secs(5));
        assert_eq!(
            api(Operation::CreateCall, 429, five).retry_class(),
            RetryClass::Retryable { after: five }
        );
        assert_eq!(
            api(Operation::CreateCall, 429, None).retry_class(),
            RetryClass::Retryable { after: None }
        );
        assert_eq!(
            api(Operation::CreateCall, 500, None).retry_class(),
            RetryClass::Ambiguous
        );
        assert_eq!(
            api(Operation::CreateCall, 503, None).retry_class(),
            RetryClass::Ambiguous
        );
        assert_eq!(
            api(Operation::FetchCall, 500, None).retry_class(),
            RetryClass::Retryable { after: None }
        );
        assert_eq!(
            api(Operation::ListCalls, 503, None).retry_class(),
            RetryClass::Retryable { after: None }
        );
        assert_eq!(
            api(Operation::CreateCall, 401, None).retry_class(),
            RetryClass::Permanent
        );
        assert_eq!(
            api(Operation::FetchCall, 401, None).retry_class(),
            RetryClass::Permanent
        );
        assert_eq!(
            api(Operation::CreateCall, 400, None).retry_class(),
            RetryClass::Permanent
        );
        assert_eq!(
            api(Operation::FetchCall, 404, None).retry_class(),
            RetryClass::Permanent
        );
        let decode = TwilioError::Decode {
            operation: Operation::FetchCall,
            message: "x".into(),
        };
        assert_eq!(decode.retry_class(), RetryClass::Permanent);
    }

    #[test]
    fn twilio_operations_idempotency() {
        assert!(!Operation::CreateCall.is_idempotent());
        assert!(!Operation::CreateBuild.is_idempotent());
        assert!(Operation::UpdateCall.is_idempotent());
        assert!(Operation::ListCalls.is_idempotent());
        assert!(Operation::DeleteAsset.is_idempotent());
        assert_eq!(Operation::ListCallEvents.as_str(), "ListCallEvent");
    }

    #[test]
    fn twilio_retry_after_forms() {
        let now = jiff::Timestamp::from_second(1_700_000_000).unwrap_or_default();
        assert_eq!(parse_retry_after("7", now), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("1.5", now),
            Some(Duration::from_millis(1500))
        );
        // 2023-11-14T22:13:20Z is 1_700_000_000; ten seconds later:
        assert_eq!(
            parse_retry_after("Tue, 14 Nov 2023 22:13:30 GMT", now),
            Some(Duration::from_secs(10))
        );
        // A date in the past means "now".
        assert_eq!(
            parse_retry_after("Tue, 14 Nov 2023 22:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-3", now), None);
    }
}
