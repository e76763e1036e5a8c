//! Twilio's requests to the operator: signed status callbacks (`POST /twilio/status`) and the
//! acknowledgement document (`GET|POST /twiml/ack/{namespace}/{policy}`), served by the
//! operator until the CallPolicy reconciler publishes it to Twilio. A Gather posting to it with
//! digits acknowledges the attempt named in its query.
//!
//! Every request is hostile until it proves, in this order, with nothing but memory until the
//! third step:
//! 1. it is signed at all (`X-Twilio-Signature` present);
//! 2. it names a page this operator knows (`call=<namespace>/<name>`, from the AlertCall cache),
//!    one of its attempts (`attempt=`) and the page's unguessable `nonce=` (kept in its status);
//!    on the ack path the page must also belong to the policy and namespace of the path;
//! 3. it is signed with the auth token of the account that page's policy dials from (cached; a
//!    Secret is read only for a request that already proved the nonce);
//! 4. its `AccountSid` is that account and its `CallSid` is the attempt's call. An attempt whose
//!    SID is not recorded yet takes one only after Twilio confirms that call is to the attempt's
//!    recipient, from the policy's number, placed since the intent, and claimed by no other page.
//!
//! Whatever fails gets the same `403`, so nothing about other namespaces' pages and policies can
//! be learned from the answers. Both endpoints only ever fold observations into a page's status,
//! so duplicates and out-of-order deliveries change nothing (see [`crate::escalation::observe`]).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use futures::stream::BoxStream;
use futures::StreamExt;
use kube::api::Api;
use kube::core::DeserializeGuard;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::reflector::{self, reflector, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::ResourceExt;
use subtle::ConstantTimeEq;

use super::alert_call::{record, Pages};
use super::Context;
use crate::api::{AlertCall, Attempt, CallPolicy};
use crate::escalation::{CallUpdate, Observation};
use crate::page::calls::{attempt_status, LOOKUP_SKEW};
use crate::page::documents;
use crate::twilio::{signature, Account};

/// Readiness component of the CallPolicy cache the callback endpoints verify requests with.
pub const POLICIES: &str = "callpolicies";

/// Every CallPolicy in scope, from a watch: what Twilio's requests are checked against without
/// an API call.
pub type Policies = Store<DeserializeGuard<CallPolicy>>;

/// The CallPolicies as they change, trimmed, after the cache took them: polling this stream is
/// what keeps the cache current. The CallPolicy controller reconciles from it (one watch and
/// one copy of every policy serve both); without that controller, [`keep_current`] polls it.
pub type PolicyUpdates = BoxStream<'static, Result<DeserializeGuard<CallPolicy>, watcher::Error>>;

/// Watches CallPolicies into a cache, fed as [`PolicyUpdates`] are polled.
pub fn watch_policies(ctx: &Context) -> (Policies, PolicyUpdates) {
    let api: Api<DeserializeGuard<CallPolicy>> = match &ctx.config.namespace {
        Some(ns) => Api::namespaced(ctx.client.clone(), ns),
        None => Api::all(ctx.client.clone()),
    };
    let (reader, writer) = reflector::store();
    let readiness = ctx.readiness.clone();
    // NB: the cache keeps what verifying a request and dialing read, not the bookkeeping.
    let slim = watcher(api, watcher::Config::default()).modify(|guarded| {
        if let Ok(policy) = guarded.0.as_mut() {
            crate::api::forget_bookkeeping(&mut policy.metadata);
        }
    });
    let updates = reflector(writer, slim)
        .default_backoff()
        .inspect(move |event| match event {
            // NB: the initial list is complete (even when empty): the cache answers now.
            Ok(watcher::Event::InitDone) => readiness.set_ready(POLICIES),
            Ok(_) => {}
            Err(error) => tracing::debug!(%error, "watching CallPolicies"),
        })
        .applied_objects()
        .boxed();
    (reader, updates)
}

/// Keeps the cache current when no controller reconciles from its updates.
pub async fn keep_current(updates: PolicyUpdates) {
    updates.for_each(|_| async {}).await;
}

/// The routes Twilio calls.
pub fn router(ctx: Arc<Context>, pages: Pages, policies: Policies) -> Router {
    Router::new()
        .route("/twilio/status", post(status_callback))
        .route("/twiml/ack/{namespace}/{policy}", get(ack).post(ack))
        .with_state(Callbacks {
            ctx,
            pages,
            policies,
        })
}

#[derive(Clone)]
struct Callbacks {
    ctx: Arc<Context>,
    pages: Pages,
    policies: Policies,
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

/// What a callback URL names: `call=<namespace>/<name>&attempt=<id>&nonce=<page nonce>`.
#[derive(Debug, PartialEq)]
struct Named {
    namespace: String,
    name: String,
    attempt: String,
    nonce: String,
}

fn named(uri: &Uri) -> Option<Named> {
    let query = query(uri);
    let (namespace, name) = param(&query, "call")?.split_once('/')?;
    Some(Named {
        namespace: namespace.to_string(),
        name: name.to_string(),
        attempt: param(&query, "attempt")?.to_string(),
        nonce: param(&query, "nonce")?.to_string(),
    })
}

/// The query that ties a callback to one attempt of one page; `nonce` is the page's.
pub fn callback_query(namespace: &str, name: &str, attempt_id: &str, nonce: &str) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .append_pair("call", &format!("{namespace}/{name}"))
        .append_pair("attempt", attempt_id)
        .append_pair("nonce", nonce)
        .finish()
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

fn signature_of(headers: &HeaderMap) -> Option<&str> {
    headers
        .get("X-Twilio-Signature")
        .and_then(|h| h.to_str().ok())
        .filter(|s| !s.is_empty())
}

fn signature_ok(token: &str, urls: &[String], params: &Params, headers: &HeaderMap) -> bool {
    let Some(given) = signature_of(headers) else {
        return false;
    };
    urls.iter()
        .any(|url| signature::verify(token, url, params, given))
}

/// The one answer to every request that fails verification.
fn forbidden() -> Response {
    (StatusCode::FORBIDDEN, "forbidden").into_response()
}

/// The caches are not loaded yet (just started): Twilio retries, and polling covers the rest.
fn not_ready() -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::RETRY_AFTER, "2")],
        "starting",
    )
        .into_response()
}

/// Why a request is not acted on: refused alike, or refused for now.
enum Refusal {
    Forbidden,
    Unavailable,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        match self {
            Refusal::Forbidden => forbidden(),
            Refusal::Unavailable => not_ready(),
        }
    }
}

/// A request that proved which page and attempt it is about.
struct Verified {
    call: AlertCall,
    attempt: Attempt,
    policy: Arc<CallPolicy>,
    account: Arc<Account>,
    /// The signature was checked. False only for API-key accounts, which cannot check one:
    /// such a request may be served a document but changes nothing.
    signed: bool,
}

/// How a request must be bound: the ack path also names the policy and its namespace.
struct Binding<'a> {
    uri: &'a Uri,
    headers: &'a HeaderMap,
    /// Every parameter Twilio signed and sent (form body and query).
    params: &'a Params,
    /// The parameters the signature covers (the form body; a GET has none).
    signed_params: &'a Params,
    path_policy: Option<(&'a str, &'a str)>,
    allow_host: bool,
}

/// The first version of a page that holds the nonce and attempt a request names, with that
/// attempt.
fn page_attempt(versions: Vec<AlertCall>, named: &Named) -> Option<(AlertCall, Attempt)> {
    versions.into_iter().find_map(|call| {
        let status = call.status.as_ref()?;
        if !nonce_matches(&named.nonce, status.nonce.as_deref()) {
            return None;
        }
        let attempt = status
            .attempts
            .iter()
            .find(|a| a.id == named.attempt)?
            .clone();
        Some((call, attempt))
    })
}

fn nonce_matches(given: &str, kept: Option<&str>) -> bool {
    kept.is_some_and(|kept| bool::from(kept.as_bytes().ct_eq(given.as_bytes())))
}

impl Callbacks {
    /// [`Self::check`], except that while the caches load every refusal is "try again": a
    /// request for a page the cache does not hold yet must not be refused for good, and a 403
    /// for some names but not others would tell an outsider which pages exist.
    async fn verify(&self, binding: &Binding<'_>) -> Result<Verified, Refusal> {
        let loading = |pending: Vec<String>| {
            pending
                .iter()
                .any(|p| p == super::alert_call::CONTROLLER || p == POLICIES)
        };
        match self.check(binding).await {
            Err(Refusal::Forbidden) if loading(self.ctx.readiness.pending()) => {
                Err(Refusal::Unavailable)
            }
            other => other,
        }
    }

    /// Verifies a request against the caches as they are: what a cache still loading already
    /// holds is as good as a loaded one's, since the controller dials the pages of its initial
    /// list before that list is complete and their callbacks follow at once.
    async fn check(&self, binding: &Binding<'_>) -> Result<Verified, Refusal> {
        // NB: no Kubernetes or Twilio request happens before the nonce is proven: an outsider
        // must not be able to make the operator read Secrets, nor learn what exists.
        if signature_of(binding.headers).is_none() {
            return Err(Refusal::Forbidden);
        }
        let named = named(binding.uri).ok_or(Refusal::Forbidden)?;
        if let Some((namespace, _)) = binding.path_policy {
            if namespace != named.namespace {
                return Err(Refusal::Forbidden);
            }
        }
        let (call, attempt) =
            page_attempt(self.pages.versions(&named.namespace, &named.name), &named)
                .ok_or(Refusal::Forbidden)?;
        let policy_name = call.active_policy().to_string();
        if binding
            .path_policy
            .is_some_and(|(_, policy)| policy != policy_name)
        {
            return Err(Refusal::Forbidden);
        }
        let policy = self
            .policies
            .get(&ObjectRef::new(&policy_name).within(&named.namespace))
            .and_then(|guarded| guarded.0.as_ref().ok().cloned())
            .map(Arc::new)
            .ok_or(Refusal::Forbidden)?;
        let account = match self.ctx.accounts.cached_for(&policy) {
            Some(account) => account,
            None => self
                .ctx
                .accounts
                .for_policy(&policy)
                .await
                .map_err(|error| {
                    tracing::warn!(%error, "resolving the account of a Twilio request");
                    Refusal::Unavailable
                })?,
        };
        let signed = match &account.auth_token {
            Some(token) => {
                let urls = signed_urls(&self.ctx, binding.uri, binding.headers, binding.allow_host);
                if !signature_ok(token, &urls, binding.signed_params, binding.headers) {
                    return Err(Refusal::Forbidden);
                }
                true
            }
            None => false,
        };
        if param(binding.params, "AccountSid").is_some_and(|sid| sid != account.account_sid) {
            return Err(Refusal::Forbidden);
        }
        let call_sid = param(binding.params, "CallSid");
        if let (Some(recorded), Some(given)) = (&attempt.call_sid, call_sid) {
            if recorded != given {
                return Err(Refusal::Forbidden);
            }
        }
        Ok(Verified {
            call,
            attempt,
            policy,
            account,
            signed,
        })
    }

    /// The SID a verified request may tie to its attempt: the recorded one, or a call Twilio
    /// confirms is this attempt's (see the module docs). `None` when it cannot be proven.
    async fn proven_sid(&self, verified: &Verified, given: Option<&str>) -> Option<String> {
        if let Some(recorded) = &verified.attempt.call_sid {
            return Some(recorded.clone());
        }
        let given = given?;
        // NB: the dial's own report may have recorded this very SID since the request was
        // verified; then it is this attempt's, not a claim of another page.
        let recorded_since = self
            .pages
            .versions(
                &verified.call.namespace().unwrap_or_default(),
                &verified.call.name_any(),
            )
            .into_iter()
            .filter_map(|call| call.status)
            .flat_map(|status| status.attempts)
            .find_map(|attempt| {
                (attempt.id == verified.attempt.id)
                    .then_some(attempt.call_sid)
                    .flatten()
            });
        if let Some(recorded) = recorded_since {
            return (recorded == given).then_some(recorded);
        }
        if self.pages.claimed_sids().contains(given) {
            return None;
        }
        let call = match verified.account.client.fetch_call(given).await {
            Ok(call) => call,
            Err(error) => {
                tracing::debug!(%error, call_sid = %given, "a callback's call is not confirmed");
                return None;
            }
        };
        let spec = &verified.policy.spec;
        let to = verified.attempt.address.clone().or_else(|| {
            spec.recipients
                .iter()
                .find(|r| r.name == verified.attempt.recipient)
                .and_then(|r| r.address.twilio_to())
        });
        let since = verified
            .attempt
            .intent_at
            .as_ref()
            .map(|t| t.0 - LOOKUP_SKEW);
        let placed_since = match (call.date_created_parsed(), since) {
            (Some(created), Some(since)) => created >= since,
            _ => false,
        };
        (to.as_deref() == Some(call.to.as_str()) && call.from == spec.twilio.from && placed_since)
            .then(|| call.sid.clone())
    }
}

async fn status_callback(
    State(callbacks): State<Callbacks>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let params = form(&body);
    let binding = Binding {
        uri: &uri,
        headers: &headers,
        params: &params,
        signed_params: &params,
        path_policy: None,
        allow_host: false,
    };
    let verified = match callbacks.verify(&binding).await {
        Ok(verified) if verified.signed => verified,
        Ok(_) => return forbidden(),
        Err(refusal) => return refusal.into_response(),
    };
    // A status callback always names its account and call.
    if param(&params, "AccountSid").is_none() {
        return forbidden();
    }
    let Some(given) = param(&params, "CallSid") else {
        return forbidden();
    };
    let Some(call_sid) = callbacks.proven_sid(&verified, Some(given)).await else {
        return forbidden();
    };
    let Some(status) = param(&params, "CallStatus").and_then(attempt_status) else {
        return StatusCode::NO_CONTENT.into_response();
    };
    let namespace = verified.call.namespace().unwrap_or_default();
    let name = verified.call.name_any();
    let observation = Observation::CallStatus(CallUpdate {
        attempt_id: Some(verified.attempt.id.clone()),
        call_sid: Some(call_sid),
        status,
        answered_by: param(&params, "AnsweredBy").map(str::to_string),
        error_code: param(&params, "ErrorCode").and_then(|c| c.parse().ok()),
        at: None,
    });
    tracing::debug!(alertcall = %format!("{namespace}/{name}"), attempt = %verified.attempt.id, ?status, "status callback");
    match record(&callbacks.ctx, &namespace, &name, &[observation]).await {
        Ok(_) => StatusCode::NO_CONTENT.into_response(),
        // Twilio retries on 5xx: the next delivery (or a poll) records it.
        Err(error) => {
            tracing::warn!(%error, "recording a status callback");
            StatusCode::SERVICE_UNAVAILABLE.into_response()
        }
    }
}

async fn ack(
    State(callbacks): State<Callbacks>,
    Path((namespace, policy_name)): Path<(String, String)>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    // NB: a GET's parameters are in the signed URL itself.
    let signed_params = if method == Method::POST {
        form(&body)
    } else {
        Vec::new()
    };
    let params: Params = signed_params.iter().cloned().chain(query(&uri)).collect();
    let binding = Binding {
        uri: &uri,
        headers: &headers,
        params: &params,
        signed_params: &signed_params,
        path_policy: Some((&namespace, &policy_name)),
        allow_host: true,
    };
    let verified = match callbacks.verify(&binding).await {
        Ok(verified) => verified,
        Err(refusal) => return refusal.into_response(),
    };
    let page = format!("{}/{}", namespace, verified.call.name_any());
    if let (true, Some(digits)) = (verified.signed, param(&params, "Digits")) {
        let call_sid = callbacks
            .proven_sid(&verified, param(&params, "CallSid"))
            .await;
        let observation = Observation::Gathered {
            attempt_id: Some(verified.attempt.id.clone()),
            call_sid,
            digits: digits.to_string(),
        };
        let name = verified.call.name_any();
        if let Err(error) = record(&callbacks.ctx, &namespace, &name, &[observation]).await {
            // Polling the call's Events still sees this acknowledgement.
            tracing::warn!(alertcall = %page, attempt = %verified.attempt.id, %error, "recording a keypress");
        }
    }
    let room = documents::room_name(&verified.policy.spec, &namespace, &policy_name);
    let document = if verified.call.spec.test {
        documents::test_ack_document(&verified.policy.spec)
    } else {
        documents::ack_document(&verified.policy.spec, &room)
    };
    (
        [(header::CONTENT_TYPE, "text/xml; charset=utf-8")],
        document,
    )
        .into_response()
}

/// A fresh page nonce: 128 bits from the operating system, hex-encoded.
pub fn new_nonce() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_attempt_and_nonce_come_from_the_callback_query() {
        let query = callback_query("prod", "page-1", "r2-alice", "n0nce");
        let uri: Uri = format!("/twilio/status?{query}")
            .parse()
            .unwrap_or_default();
        assert_eq!(
            named(&uri),
            Some(Named {
                namespace: "prod".into(),
                name: "page-1".into(),
                attempt: "r2-alice".into(),
                nonce: "n0nce".into(),
            })
        );
        for missing in [
            "/twilio/status?call=prod",
            "/twilio/status?call=prod/page-1&attempt=r1-a",
            "/twilio/status?call=prod/page-1&nonce=x",
            "/twilio/status?call=page-1&attempt=r1-a&nonce=x",
        ] {
            let uri: Uri = missing.parse().unwrap_or_default();
            assert_eq!(named(&uri), None, "{missing}");
        }
    }

    #[test]
    fn nonces_are_compared_whole_and_a_page_without_one_matches_nothing() {
        assert!(nonce_matches("abc", Some("abc")));
        assert!(!nonce_matches("ab", Some("abc")));
        assert!(!nonce_matches("abd", Some("abc")));
        assert!(!nonce_matches("", None));
        assert!(!nonce_matches("abc", None));
    }

    #[test]
    fn nonces_are_fresh_and_long() {
        let (Ok(a), Ok(b)) = (new_nonce(), new_nonce()) else {
            panic!("no randomness");
        };
        assert_eq!(a.len(), 32);
        assert_ne!(a, b);
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

    #[test]
    fn a_request_is_checked_against_every_version_of_its_page() {
        let version = |nonce: Option<&str>, attempts: &[&str]| {
            let mut call: AlertCall = serde_json::from_value(serde_json::json!({
                "metadata": {"name": "page", "namespace": "ns"},
                "spec": {"policyRef": {"name": "oncall"}, "summary": "s"},
            }))
            .unwrap_or_else(|e| panic!("page: {e}"));
            let mut status = crate::api::AlertCallStatus {
                nonce: nonce.map(str::to_string),
                ..Default::default()
            };
            status.attempts = attempts
                .iter()
                .map(|id| Attempt {
                    id: id.to_string(),
                    ..Default::default()
                })
                .collect();
            call.status = Some(status);
            call
        };
        let named = Named {
            namespace: "ns".into(),
            name: "page".into(),
            attempt: "r1-alice".into(),
            nonce: "n1".into(),
        };
        let found = |versions| page_attempt(versions, &named).map(|(_, a)| a.id);
        // The cache before the intent's write is delivered, then the operator's own write.
        let before_intent = version(Some("n1"), &[]);
        let with_intent = version(Some("n1"), &["r1-alice"]);
        assert_eq!(found(vec![before_intent.clone()]), None);
        assert_eq!(
            found(vec![before_intent, with_intent.clone()]),
            Some("r1-alice".to_string())
        );
        // A version with another nonce proves nothing, whatever attempts it holds.
        assert_eq!(found(vec![version(Some("n2"), &["r1-alice"])]), None);
        assert_eq!(found(vec![version(None, &["r1-alice"])]), None);
        assert_eq!(found(vec![with_intent]), Some("r1-alice".to_string()));
    }
}
