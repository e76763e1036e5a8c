//! Twilio's requests to the operator: signed status callbacks (`POST /twilio/status`) and the
//! acknowledgement document (`GET|POST /twiml/ack/{namespace}/{policy}`), served by the
//! operator until the CallPolicy reconciler publishes it to Twilio. A Gather posting to it with
//! digits acknowledges the attempt named in its query.
//!
//! Both only ever fold observations into a page's status, so duplicates and out-of-order
//! deliveries change nothing (see [`crate::escalation::observe`]).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use kube::api::Api;

use super::alert_call::record;
use super::Context;
use crate::api::CallPolicy;
use crate::calls::attempt_status;
use crate::escalation::{CallUpdate, Observation};
use crate::twilio::{documents, signature};

/// The routes Twilio calls.
pub fn router(ctx: Arc<Context>) -> Router {
    Router::new()
        .route("/twilio/status", post(status_callback))
        .route("/twiml/ack/{namespace}/{policy}", get(ack).post(ack))
        .with_state(ctx)
}

type Params = Vec<(String, String)>;

fn form(body: &[u8]) -> Params {
    url::form_urlencoded::parse(body).into_owned().collect()
}

fn param<'a>(params: &'a Params, name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .filter(|v| !v.is_empty())
}

fn query(uri: &Uri) -> Params {
    form(uri.query().unwrap_or_default().as_bytes())
}

/// `call=<namespace>/<name>` and `attempt=<id>` of a callback URL.
fn page_of(uri: &Uri) -> Option<(String, String, String)> {
    let query = query(uri);
    let (namespace, name) = param(&query, "call")?.split_once('/')?;
    let attempt = param(&query, "attempt")?;
    Some((namespace.to_string(), name.to_string(), attempt.to_string()))
}

/// The URLs Twilio may have signed for this request: the public URL joined with the path and
/// query it arrived with, and for documents fetched through another address, the Host header.
fn signed_urls(ctx: &Context, uri: &Uri, headers: &HeaderMap, allow_host: bool) -> Vec<String> {
    let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let mut urls = Vec::new();
    if let Some(public) = &ctx.config.public_url {
        urls.push(format!("{}{path}", public.as_str().trim_end_matches('/')));
        let origin = public.origin().ascii_serialization();
        urls.push(format!("{origin}{path}"));
    }
    if allow_host {
        if let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) {
            urls.push(format!("http://{host}{path}"));
            urls.push(format!("https://{host}{path}"));
        }
    }
    urls
}

fn signature_ok(token: &str, urls: &[String], params: &Params, headers: &HeaderMap) -> bool {
    let Some(given) = headers
        .get("X-Twilio-Signature")
        .and_then(|h| h.to_str().ok())
    else {
        return false;
    };
    urls.iter()
        .any(|url| signature::verify(token, url, params, given))
}

fn forbidden() -> Response {
    (StatusCode::FORBIDDEN, "signature check failed").into_response()
}

async fn status_callback(
    State(ctx): State<Arc<Context>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let params = form(&body);
    let Some(account_sid) = param(&params, "AccountSid") else {
        return forbidden();
    };
    // Only accounts this operator dials from are known; their tokens sign the callbacks.
    let token = ctx
        .accounts
        .known()
        .await
        .into_iter()
        .find(|a| a.account_sid == account_sid)
        .and_then(|a| a.auth_token.clone());
    let Some(token) = token else {
        return forbidden();
    };
    if !signature_ok(
        &token,
        &signed_urls(&ctx, &uri, &headers, false),
        &params,
        &headers,
    ) {
        return forbidden();
    }
    let Some((namespace, name, attempt)) = page_of(&uri) else {
        return (StatusCode::BAD_REQUEST, "missing call or attempt").into_response();
    };
    let Some(status) = param(&params, "CallStatus").and_then(attempt_status) else {
        return StatusCode::NO_CONTENT.into_response();
    };
    let observation = Observation::CallStatus(CallUpdate {
        attempt_id: Some(attempt.clone()),
        call_sid: param(&params, "CallSid").map(str::to_string),
        status,
        answered_by: param(&params, "AnsweredBy").map(str::to_string),
        error_code: param(&params, "ErrorCode").and_then(|c| c.parse().ok()),
        at: None,
    });
    tracing::debug!(alertcall = %format!("{namespace}/{name}"), %attempt, ?status, "status callback");
    match record(&ctx, &namespace, &name, &[observation]).await {
        Ok(_) => StatusCode::NO_CONTENT.into_response(),
        // Twilio retries on 5xx: the next delivery (or a poll) records it.
        Err(error) => {
            tracing::warn!(%error, "recording a status callback");
            StatusCode::SERVICE_UNAVAILABLE.into_response()
        }
    }
}

async fn ack(
    State(ctx): State<Arc<Context>>,
    Path((namespace, policy_name)): Path<(String, String)>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let policies: Api<CallPolicy> = Api::namespaced(ctx.client.clone(), &namespace);
    let policy = match policies.get_opt(&policy_name).await {
        Ok(Some(policy)) => policy,
        Ok(None) => return StatusCode::NOT_FOUND.into_response(),
        Err(error) => {
            tracing::warn!(%error, "reading the policy of an ack request");
            return StatusCode::SERVICE_UNAVAILABLE.into_response();
        }
    };
    let account = match ctx.accounts.for_policy(&policy).await {
        Ok(account) => account,
        Err(error) => {
            tracing::warn!(%error, "resolving the account of an ack request");
            return StatusCode::SERVICE_UNAVAILABLE.into_response();
        }
    };
    // NB: a GET's parameters are in the signed URL itself.
    let params = if method == Method::POST {
        form(&body)
    } else {
        Vec::new()
    };
    let verified = match &account.auth_token {
        Some(token) => {
            if !signature_ok(
                token,
                &signed_urls(&ctx, &uri, &headers, true),
                &params,
                &headers,
            ) {
                return forbidden();
            }
            true
        }
        // API-key credentials cannot check signatures: serve the document, trust nothing.
        None => false,
    };
    let all: Params = params.iter().cloned().chain(query(&uri)).collect();
    if let (true, Some(digits), Some((call_ns, call_name, attempt))) =
        (verified, param(&all, "Digits"), page_of(&uri))
    {
        let observation = Observation::Gathered {
            attempt_id: Some(attempt),
            call_sid: param(&all, "CallSid").map(str::to_string),
            digits: digits.to_string(),
        };
        if let Err(error) = record(&ctx, &call_ns, &call_name, &[observation]).await {
            // Polling the call's Events still sees this acknowledgement.
            tracing::warn!(%error, "recording a keypress");
        }
    }
    let room = documents::room_name(&policy.spec, &namespace, &policy_name);
    (
        [(header::CONTENT_TYPE, "text/xml; charset=utf-8")],
        documents::ack_document(&policy.spec, &room),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_and_attempt_come_from_the_callback_query() {
        let uri: Uri = "/twilio/status?call=prod/page-1&attempt=r2-alice"
            .parse()
            .unwrap_or_default();
        assert_eq!(
            page_of(&uri),
            Some(("prod".into(), "page-1".into(), "r2-alice".into()))
        );
        let missing: Uri = "/twilio/status?call=prod".parse().unwrap_or_default();
        assert_eq!(page_of(&missing), None);
    }

    #[test]
    fn signatures_need_the_header_and_the_right_token() {
        let url = "https://ops.example.com/twilio/status?call=a/b&attempt=r1-x".to_string();
        let urls = vec![url.clone()];
        let params = vec![("CallSid".to_string(), "CA1".to_string())];
        let mut headers = HeaderMap::new();
        assert!(!signature_ok("token", &urls, &params, &headers));
        let good = signature::compute("token", &url, &params);
        if let Ok(value) = good.parse() {
            headers.insert("X-Twilio-Signature", value);
        }
        assert!(signature_ok("token", &urls, &params, &headers));
        assert!(!signature_ok("other", &urls, &params, &headers));
    }
}
