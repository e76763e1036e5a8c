//! The Twilio REST client: v2010 (Calls, Conferences, Participants, IncomingPhoneNumbers) and
//! Serverless v1 (Services, Environments, Assets, Asset Versions, Builds, Deployments).
//!
//! Wire format follows Twilio's OpenAPI files: form bodies with PascalCase names, array parameters
//! as repeated keys, snake_case JSON responses. Safe requests are retried inside the client
//! (bounded, honouring `Retry-After`, otherwise exponential backoff with jitter); Calls create is
//! retried only when Twilio cannot have processed it (429, connection refused). See
//! [`TwilioError::retry_class`].

mod serverless;
mod sync;
mod voice;

use serverless::upload_form;
pub use serverless::{asset_url, AssetUpload};
pub use voice::{
    CallEnd, CallFilter, CallProgressEvent, ConferenceFilter, CreateCall, DateCreatedFilter,
    HttpMethod, MachineDetection, StartTimeFilter,
};

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Deserialize;
use url::Url;

use super::error::{parse_retry_after, Operation, RetryClass, TwilioError};

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
    /// Sync base, default `https://sync.twilio.com`.
    pub sync_base: Url,
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
            sync_base: static_url("https://sync.twilio.com"),
            asset_scheme: "https".to_string(),
            timeout: Duration::from_secs(15),
            retry: RetryPolicy::default(),
            max_pages: 20,
            page_size: 100,
        }
    }

    /// Points every host at one base URL (the simulator serves them all, Sync under `/sync`,
    /// where its paths do not collide with Serverless's `/v1/Services`). Asset URLs take
    /// the base's scheme too: the simulator serves an Environment's `domain_name` on the same
    /// plain-HTTP origin, where `https://` would fail the TLS handshake.
    pub fn with_single_base(mut self, base: Url) -> Self {
        self.asset_scheme = base.scheme().to_string();
        self.api_base = base.clone();
        self.serverless_base = base.clone();
        self.sync_base = sim_sync_base(&base);
        self.upload_base = base;
        self
    }
}

/// The simulator's Sync base on its origin `base`: `{base}/sync`.
pub fn sim_sync_base(base: &Url) -> Url {
    build_url(base, &["sync"]).unwrap_or_else(|_| base.clone())
}

fn static_url(s: &str) -> Url {
    match Url::parse(s) {
        Ok(url) => url,
        // NB: only called with the literal defaults above; no input reaches this.
        Err(e) => unreachable!("literal URL {s} does not parse: {e}"),
    }
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
    /// Twilio answered 401 to these credentials (shared by the clones).
    refused: Arc<AtomicBool>,
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
        Ok(Self {
            http,
            config,
            refused: Arc::new(AtomicBool::new(false)),
        })
    }

    /// Twilio refused these credentials (401) on some request: a cached account holding them
    /// is read again from its Secret instead of being trusted for its freshness.
    pub fn credentials_refused(&self) -> bool {
        self.refused.load(Ordering::Relaxed)
    }

    pub fn config(&self) -> &TwilioConfig {
        &self.config
    }

    pub fn account_sid(&self) -> &str {
        self.config.credentials.account_sid()
    }

    // ---- plumbing: shared by the resource modules -------------------------------------------

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

    fn sync_url(&self, tail: &[&str]) -> Result<Url, TwilioError> {
        let mut segments = vec!["v1"];
        segments.extend_from_slice(tail);
        build_url(&self.config.sync_base, &segments)
    }

    /// The path prefix of the configured base this URL was built on (`""` for a host root).
    fn base_prefix(&self, url: &Url) -> String {
        [
            &self.config.api_base,
            &self.config.serverless_base,
            &self.config.sync_base,
        ]
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
        if status == reqwest::StatusCode::UNAUTHORIZED {
            self.refused.store(true, Ordering::Relaxed);
        }
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

#[cfg(test)]
mod tests;
