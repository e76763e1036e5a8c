//! Request-shape tests against a loopback HTTP server that records each raw request and answers
//! with canned Twilio bodies.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::*;
use crate::twilio::types::ParticipantStatus;
use crate::twilio::types::{BuildStatus, CallStatus, ConferenceStatus, VoiceWebhook};

const AC: &str = "AC0123456789abcdef0123456789abcdef";
const TOKEN: &str = "s3cr3t-token";
const CA: &str = "CA00000000000000000000000000000001";

#[derive(Clone, Debug)]
struct Recorded {
    method: String,
    /// Path and query exactly as sent.
    target: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Recorded {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn body_str(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or_default()
    }

    /// The query decoded into ordered pairs.
    fn query(&self) -> Vec<(String, String)> {
        let q = self.target.split_once('?').map(|(_, q)| q).unwrap_or("");
        url::form_urlencoded::parse(q.as_bytes())
            .into_owned()
            .collect()
    }

    /// The form body decoded into ordered pairs.
    fn form(&self) -> Vec<(String, String)> {
        url::form_urlencoded::parse(&self.body)
            .into_owned()
            .collect()
    }
}

#[derive(Clone, Debug)]
struct Canned {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: String,
}

fn reply(status: u16, body: &str) -> Canned {
    Canned {
        status,
        headers: Vec::new(),
        body: body.to_string(),
    }
}

/// A loopback server answering requests in order with `replies`; a request past the end gets a
/// 599 so that a test sending too many requests fails loudly. `hang` makes it never answer.
struct Server {
    base: Url,
    log: Arc<Mutex<Vec<Recorded>>>,
}

impl Server {
    async fn start(replies: Vec<Canned>) -> Server {
        Self::start_with(replies, false).await
    }

    async fn start_with(replies: Vec<Canned>, hang: bool) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let log = Arc::new(Mutex::new(Vec::new()));
        let replies = Arc::new(Mutex::new(replies.into_iter()));
        let server_log = log.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let log = server_log.clone();
                let replies = replies.clone();
                tokio::spawn(async move {
                    let _ = serve_one(stream, log, replies, hang).await;
                });
            }
        });
        Server {
            base: Url::parse(&format!("http://{addr}")).expect("url"),
            log,
        }
    }

    fn requests(&self) -> Vec<Recorded> {
        self.log.lock().expect("log").clone()
    }

    fn client(&self) -> TwilioClient {
        client_for(self.base.clone(), auth_token())
    }
}

async fn serve_one(
    mut stream: TcpStream,
    log: Arc<Mutex<Vec<Recorded>>>,
    replies: Arc<Mutex<std::vec::IntoIter<Canned>>>,
    hang: bool,
) -> std::io::Result<()> {
    let mut buf = Vec::new();
    let header_end = loop {
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
    };
    let head = String::from_utf8_lossy(&buf[..header_end]).into_owned();
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or_default();
    let mut parts = request_line.split(' ');
    let method = parts.next().unwrap_or_default().to_string();
    let target = parts.next().unwrap_or_default().to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    let find = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    let mut rest = buf[header_end + 4..].to_vec();
    let body = if let Some(len) = find("content-length").and_then(|v| v.parse::<usize>().ok()) {
        while rest.len() < len {
            let mut chunk = [0u8; 4096];
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                break;
            }
            rest.extend_from_slice(&chunk[..n]);
        }
        rest.truncate(len);
        rest
    } else if find("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        while !rest.ends_with(b"0\r\n\r\n") {
            let mut chunk = [0u8; 4096];
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                break;
            }
            rest.extend_from_slice(&chunk[..n]);
        }
        dechunk(&rest)
    } else {
        Vec::new()
    };
    log.lock().expect("log").push(Recorded {
        method,
        target,
        headers,
        body,
    });
    if hang {
        // Hold the connection open without answering until the client gives up.
        let mut sink = [0u8; 64];
        while stream.read(&mut sink).await? > 0 {}
        return Ok(());
    }
    let canned = replies
        .lock()
        .expect("replies")
        .next()
        .unwrap_or_else(|| reply(599, r#"{"message":"test server: no more replies"}"#));
    let mut out = format!("HTTP/1.1 {} X\r\n", canned.status);
    out.push_str("Content-Type: application/json\r\nConnection: close\r\n");
    for (name, value) in &canned.headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str(&format!("Content-Length: {}\r\n\r\n", canned.body.len()));
    out.push_str(&canned.body);
    stream.write_all(out.as_bytes()).await?;
    stream.shutdown().await
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(i) = data.windows(2).position(|w| w == b"\r\n") {
        let size =
            usize::from_str_radix(String::from_utf8_lossy(&data[..i]).trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        let start = i + 2;
        out.extend_from_slice(&data[start..start + size]);
        data = &data[start + size + 2..];
    }
    out
}

fn auth_token() -> Credentials {
    Credentials::AuthToken {
        account_sid: AC.into(),
        auth_token: TOKEN.into(),
    }
}

fn client_for(base: Url, credentials: Credentials) -> TwilioClient {
    let mut config = TwilioConfig::new(credentials).with_single_base(base);
    config.timeout = Duration::from_secs(5);
    config.retry = RetryPolicy {
        max_attempts: 3,
        base_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(50),
    };
    TwilioClient::new(config).expect("client")
}

fn basic(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
}

fn call_json(sid: &str, status: &str) -> String {
    format!(
        r#"{{"sid":"{sid}","account_sid":"{AC}","to":"+819012345678","from":"+815012345678",
            "status":"{status}","start_time":null,"date_created":"Mon, 23 Nov 2026 19:00:00 +0000",
            "queue_time":"0","direction":"outbound-api","answered_by":null}}"#
    )
}

const TWIML: &str = r#"<?xml version="1.0" encoding="UTF-8"?><Response><Say language="ja-JP">緊急 & "x"</Say></Response>"#;

fn create_call_request() -> CreateCall {
    let mut call = CreateCall::new("+819012345678", "+815012345678", TWIML);
    call.status_callback = Some("https://ops.example.com/twilio/status?attempt=a-1&x=y".into());
    call.timeout_secs = Some(25);
    call.caller_id = Some("+815012345678".into());
    call.machine_detection = Some(MachineDetection::Enable);
    call
}

// ---- pure encoding -------------------------------------------------------------------------------

#[test]
fn twilio_create_call_form_has_exact_names_and_repeated_events() {
    let form = create_call_request().form();
    assert_eq!(
        form,
        pairs(&[
            ("To", "+819012345678"),
            ("From", "+815012345678"),
            ("Twiml", TWIML),
            (
                "StatusCallback",
                "https://ops.example.com/twilio/status?attempt=a-1&x=y"
            ),
            ("StatusCallbackEvent", "initiated"),
            ("StatusCallbackEvent", "ringing"),
            ("StatusCallbackEvent", "answered"),
            ("StatusCallbackEvent", "completed"),
            ("StatusCallbackMethod", "POST"),
            ("Timeout", "25"),
            ("CallerId", "+815012345678"),
            ("MachineDetection", "Enable"),
        ])
    );
    let minimal = CreateCall::new("client:bob", "+815012345678", "<Response/>").form();
    assert_eq!(
        minimal,
        pairs(&[
            ("To", "client:bob"),
            ("From", "+815012345678"),
            ("Twiml", "<Response/>")
        ])
    );
}

#[test]
fn twilio_call_filter_query_names() {
    let date = jiff::civil::date(2026, 11, 23);
    let filter = CallFilter {
        to: Some("+819012345678".into()),
        from: Some("+815012345678".into()),
        status: Some(CallStatus::InProgress),
        start_time: Some(StartTimeFilter::OnOrAfter(date)),
    };
    assert_eq!(
        filter.query(),
        pairs(&[
            ("To", "+819012345678"),
            ("From", "+815012345678"),
            ("Status", "in-progress"),
            ("StartTime>", "2026-11-23"),
        ])
    );
    let on = CallFilter {
        start_time: Some(StartTimeFilter::On(date)),
        ..CallFilter::default()
    };
    assert_eq!(on.query(), pairs(&[("StartTime", "2026-11-23")]));
    let before = CallFilter {
        start_time: Some(StartTimeFilter::OnOrBefore(date)),
        ..CallFilter::default()
    };
    assert_eq!(before.query(), pairs(&[("StartTime<", "2026-11-23")]));
}

#[test]
fn twilio_url_building() {
    let base = Url::parse("https://api.twilio.com").expect("url");
    let url = build_url(&base, &["2010-04-01", "Accounts", AC, "Calls.json"]).expect("url");
    assert_eq!(
        url.as_str(),
        format!("https://api.twilio.com/2010-04-01/Accounts/{AC}/Calls.json")
    );
    // A prefix on the base is kept; segments are percent-encoded, never path-injected.
    let prefixed = Url::parse("http://127.0.0.1:4010/twilio/").expect("url");
    let url = build_url(&prefixed, &["v1", "Services", "a/b?c"]).expect("url");
    assert_eq!(
        url.as_str(),
        "http://127.0.0.1:4010/twilio/v1/Services/a%2Fb%3Fc"
    );

    let next = next_page_url(
        &Url::parse("http://127.0.0.1:4010/x?PageSize=100").expect("url"),
        "/2010-04-01/Accounts/AC1/Calls.json?PageSize=100&Page=1&PageToken=PA1",
        "",
    )
    .expect("next");
    assert_eq!(
        next.as_str(),
        "http://127.0.0.1:4010/2010-04-01/Accounts/AC1/Calls.json?PageSize=100&Page=1&PageToken=PA1"
    );
    // Serverless gives absolute URLs on Twilio's host; the configured host is kept.
    let next = next_page_url(
        &Url::parse("http://127.0.0.1:4010/v1/Services").expect("url"),
        "https://serverless.twilio.com/v1/Services?PageSize=50&Page=1&PageToken=PT1",
        "",
    )
    .expect("next");
    assert_eq!(
        next.as_str(),
        "http://127.0.0.1:4010/v1/Services?PageSize=50&Page=1&PageToken=PT1"
    );

    // A base with a path prefix keeps it, whether or not the link repeats it.
    let prefixed_base = Url::parse("http://127.0.0.1:4010/twilio/v1/Services").expect("url");
    for link in ["/v1/Services?Page=1", "/twilio/v1/Services?Page=1"] {
        let next = next_page_url(&prefixed_base, link, "/twilio").expect("next");
        assert_eq!(
            next.as_str(),
            "http://127.0.0.1:4010/twilio/v1/Services?Page=1"
        );
    }

    assert_eq!(
        asset_url("http", "127.0.0.1:4010/twil.io/xyz", "/alertcall/ack.xml"),
        "http://127.0.0.1:4010/twil.io/xyz/alertcall/ack.xml"
    );
    assert_eq!(
        asset_url("https", "alertcall-1234-prod.twil.io", "ack.xml"),
        "https://alertcall-1234-prod.twil.io/ack.xml"
    );
}

#[test]
fn twilio_credentials_debug_redacts_secrets() {
    let creds = Credentials::ApiKey {
        account_sid: AC.into(),
        key_sid: "SK1".into(),
        key_secret: "very-secret".into(),
    };
    let config = TwilioConfig::new(auth_token());
    let shown = format!("{creds:?} {config:?}");
    assert!(!shown.contains("very-secret"), "{shown}");
    assert!(!shown.contains(TOKEN), "{shown}");
    assert!(shown.contains("SK1") && shown.contains(AC), "{shown}");
}

#[test]
fn twilio_backoff_is_bounded_and_jittered() {
    let policy = RetryPolicy {
        max_attempts: 5,
        base_delay: Duration::from_millis(100),
        max_delay: Duration::from_millis(1000),
    };
    for _ in 0..50 {
        let first = policy.backoff(1);
        assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(100));
        let third = policy.backoff(3);
        assert!(third >= Duration::from_millis(200) && third <= Duration::from_millis(400));
        let late = policy.backoff(30);
        assert!(late >= Duration::from_millis(500) && late <= Duration::from_millis(1000));
    }
}

// ---- request shapes over loopback ----------------------------------------------------------------

#[tokio::test]
async fn twilio_create_call_request_shape() {
    let server = Server::start(vec![reply(201, &call_json(CA, "queued"))]).await;
    let call = server
        .client()
        .create_call(&create_call_request())
        .await
        .expect("created");
    assert_eq!(call.sid, CA);
    assert_eq!(call.status, CallStatus::Queued);
    assert_eq!(
        call.date_created.as_deref(),
        Some("Mon, 23 Nov 2026 19:00:00 +0000")
    );

    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    let r = &requests[0];
    assert_eq!(r.method, "POST");
    assert_eq!(r.target, format!("/2010-04-01/Accounts/{AC}/Calls.json"));
    assert_eq!(r.header("authorization"), Some(basic(AC, TOKEN).as_str()));
    assert_eq!(
        r.header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    assert_eq!(r.form(), create_call_request().form());
    // Repeated keys on the wire, not `StatusCallbackEvent[]` or a joined value.
    let raw = r.body_str();
    assert!(
        raw.contains("StatusCallbackEvent=initiated&StatusCallbackEvent=ringing&StatusCallbackEvent=answered&StatusCallbackEvent=completed"),
        "{raw}"
    );
    assert!(raw.contains("To=%2B819012345678"), "{raw}");
}

#[tokio::test]
async fn twilio_api_key_auth_uses_key_sid_but_account_path() {
    let server = Server::start(vec![reply(200, &call_json(CA, "ringing"))]).await;
    let client = client_for(
        server.base.clone(),
        Credentials::ApiKey {
            account_sid: AC.into(),
            key_sid: "SK0123".into(),
            key_secret: "key-secret".into(),
        },
    );
    client.fetch_call(CA).await.expect("fetched");
    let r = &server.requests()[0];
    assert_eq!(r.method, "GET");
    assert_eq!(
        r.target,
        format!("/2010-04-01/Accounts/{AC}/Calls/{CA}.json")
    );
    assert_eq!(
        r.header("authorization"),
        Some(basic("SK0123", "key-secret").as_str())
    );
}

#[tokio::test]
async fn twilio_create_call_500_is_ambiguous_and_not_retried() {
    let server = Server::start(vec![
        reply(500, r#"{"status":500,"code":20500,"message":"Internal Server Error","more_info":"https://www.twilio.com/docs/errors/20500"}"#),
        reply(201, &call_json(CA, "queued")),
    ])
    .await;
    let err = server
        .client()
        .create_call(&create_call_request())
        .await
        .expect_err("500");
    assert_eq!(err.retry_class(), RetryClass::Ambiguous);
    assert_eq!(err.code(), Some(20500));
    assert_eq!(
        server.requests().len(),
        1,
        "Calls create must not be retried on 5xx"
    );
}

#[tokio::test]
async fn twilio_create_call_429_is_retried_without_retry_after() {
    let server = Server::start(vec![
        reply(429, r#"{"status":429,"code":20429,"message":"Too Many Requests","more_info":"https://www.twilio.com/docs/errors/20429"}"#),
        reply(201, &call_json(CA, "queued")),
    ])
    .await;
    let call = server
        .client()
        .create_call(&create_call_request())
        .await
        .expect("retried after 429");
    assert_eq!(call.sid, CA);
    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(
        requests[0].body, requests[1].body,
        "the retry resends the same form"
    );
}

#[tokio::test]
async fn twilio_429_with_retry_after_is_honoured_or_returned() {
    let mut limited = reply(
        429,
        r#"{"status":429,"code":20429,"message":"Too Many Requests"}"#,
    );
    limited.headers.push(("Retry-After", "0".into()));
    let server = Server::start(vec![limited, reply(201, &call_json(CA, "queued"))]).await;
    server
        .client()
        .create_call(&create_call_request())
        .await
        .expect("retried after Retry-After: 0");
    assert_eq!(server.requests().len(), 2);

    // A Retry-After beyond the client's max delay is handed to the caller instead of waited out.
    let mut long = reply(
        429,
        r#"{"status":429,"code":20429,"message":"Too Many Requests"}"#,
    );
    long.headers.push(("Retry-After", "120".into()));
    let server = Server::start(vec![long]).await;
    let err = server
        .client()
        .create_call(&create_call_request())
        .await
        .expect_err("429");
    assert_eq!(
        err.retry_class(),
        RetryClass::Retryable {
            after: Some(Duration::from_secs(120))
        }
    );
    assert_eq!(server.requests().len(), 1);
}

#[tokio::test]
async fn twilio_429_retries_are_bounded() {
    let limited = reply(
        429,
        r#"{"status":429,"code":20429,"message":"Too Many Requests"}"#,
    );
    let server = Server::start(vec![
        limited.clone(),
        limited.clone(),
        limited.clone(),
        limited,
    ])
    .await;
    let err = server
        .client()
        .create_call(&create_call_request())
        .await
        .expect_err("still limited");
    assert_eq!(err.status(), Some(429));
    assert_eq!(server.requests().len(), 3, "max_attempts is 3");
}

#[tokio::test]
async fn twilio_read_500_is_retried() {
    let server = Server::start(vec![
        reply(
            503,
            r#"{"status":503,"code":20503,"message":"Service Unavailable"}"#,
        ),
        reply(200, &call_json(CA, "in-progress")),
    ])
    .await;
    let call = server.client().fetch_call(CA).await.expect("retried");
    assert_eq!(call.status, CallStatus::InProgress);
    assert_eq!(server.requests().len(), 2);
}

#[tokio::test]
async fn twilio_401_is_permanent_and_not_retried() {
    let server = Server::start(vec![
        reply(401, r#"{"code":20003,"message":"Authenticate","more_info":"https://www.twilio.com/docs/errors/20003","status":401}"#),
        reply(200, &call_json(CA, "in-progress")),
    ])
    .await;
    let err = server.client().fetch_call(CA).await.expect_err("401");
    assert_eq!(err.retry_class(), RetryClass::Permanent);
    assert_eq!(err.code(), Some(20003));
    assert_eq!(err.reason(), "TwilioUnauthorized");
    assert!(!err.to_string().contains(TOKEN));
    assert_eq!(server.requests().len(), 1);
}

#[tokio::test]
async fn twilio_connection_refused_is_retryable() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    let client = client_for(
        Url::parse(&format!("http://{addr}")).expect("url"),
        auth_token(),
    );
    let err = client
        .create_call(&create_call_request())
        .await
        .expect_err("refused");
    assert!(
        matches!(err, TwilioError::Connect { refused: true, .. }),
        "{err:?}"
    );
    assert_eq!(err.retry_class(), RetryClass::Retryable { after: None });
}

#[tokio::test]
async fn twilio_create_call_timeout_is_ambiguous_and_not_retried() {
    let server = Server::start_with(Vec::new(), true).await;
    let mut config = TwilioConfig::new(auth_token()).with_single_base(server.base.clone());
    config.timeout = Duration::from_millis(300);
    config.retry.base_delay = Duration::from_millis(1);
    let client = TwilioClient::new(config).expect("client");
    let err = client
        .create_call(&create_call_request())
        .await
        .expect_err("timeout");
    assert!(matches!(err, TwilioError::Timeout { .. }), "{err:?}");
    assert_eq!(err.retry_class(), RetryClass::Ambiguous);
    assert_eq!(server.requests().len(), 1);
}

#[tokio::test]
async fn twilio_undecodable_success_is_a_decode_error() {
    let server = Server::start(vec![reply(200, "<html>not json</html>")]).await;
    let err = server.client().fetch_call(CA).await.expect_err("decode");
    assert!(matches!(err, TwilioError::Decode { .. }), "{err:?}");
    assert_eq!(err.retry_class(), RetryClass::Permanent);
}

#[tokio::test]
async fn twilio_end_call_sends_status() {
    let server = Server::start(vec![
        reply(200, &call_json(CA, "canceled")),
        reply(200, &call_json(CA, "completed")),
    ])
    .await;
    let client = server.client();
    client
        .end_call(CA, CallEnd::Canceled)
        .await
        .expect("canceled");
    client
        .end_call(CA, CallEnd::Completed)
        .await
        .expect("completed");
    let requests = server.requests();
    assert_eq!(requests[0].method, "POST");
    assert_eq!(
        requests[0].target,
        format!("/2010-04-01/Accounts/{AC}/Calls/{CA}.json")
    );
    assert_eq!(requests[0].form(), pairs(&[("Status", "canceled")]));
    assert_eq!(requests[1].form(), pairs(&[("Status", "completed")]));
}

#[tokio::test]
async fn twilio_list_calls_filters_and_follows_pages() {
    let page1 = format!(
        r#"{{"calls":[{}],"next_page_uri":"/2010-04-01/Accounts/{AC}/Calls.json?To=%2B819012345678&PageSize=100&Page=1&PageToken=PACA1","page":0}}"#,
        call_json(CA, "completed")
    );
    let page2 = format!(
        r#"{{"calls":[{}],"next_page_uri":null,"page":1}}"#,
        call_json("CA00000000000000000000000000000002", "in-progress")
    );
    let server = Server::start(vec![reply(200, &page1), reply(200, &page2)]).await;
    let filter = CallFilter {
        to: Some("+819012345678".into()),
        from: Some("+815012345678".into()),
        status: None,
        start_time: Some(StartTimeFilter::OnOrAfter(jiff::civil::date(2026, 11, 23))),
    };
    let calls = server.client().list_calls(&filter).await.expect("listed");
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[1].status, CallStatus::InProgress);

    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[0].method, "GET");
    assert_eq!(
        requests[0].path(),
        format!("/2010-04-01/Accounts/{AC}/Calls.json")
    );
    assert_eq!(
        requests[0].query(),
        pairs(&[
            ("To", "+819012345678"),
            ("From", "+815012345678"),
            ("StartTime>", "2026-11-23"),
            ("PageSize", "100"),
        ])
    );
    assert!(
        requests[0].target.contains("StartTime%3E=2026-11-23"),
        "{}",
        requests[0].target
    );
    assert_eq!(
        requests[1].target,
        format!("/2010-04-01/Accounts/{AC}/Calls.json?To=%2B819012345678&PageSize=100&Page=1&PageToken=PACA1")
    );
    assert_eq!(
        requests[1].header("authorization"),
        Some(basic(AC, TOKEN).as_str())
    );
}

#[tokio::test]
async fn twilio_list_pages_are_bounded() {
    let endless = format!(
        r#"{{"calls":[{}],"next_page_uri":"/2010-04-01/Accounts/{AC}/Calls.json?Page=9&PageToken=PA"}}"#,
        call_json(CA, "completed")
    );
    let server = Server::start(vec![reply(200, &endless); 5]).await;
    let mut config = TwilioConfig::new(auth_token()).with_single_base(server.base.clone());
    config.max_pages = 3;
    let client = TwilioClient::new(config).expect("client");
    let calls = client
        .list_calls(&CallFilter::default())
        .await
        .expect("listed");
    assert_eq!(calls.len(), 3);
    assert_eq!(server.requests().len(), 3);
}

#[tokio::test]
async fn twilio_call_events_path_and_shape() {
    let body = r#"{"events":[{"request":{"method":"POST","url":"https://x.twil.io/ack.xml","parameters":{"digits":"1","call_sid":"CA1"}},
                 "response":{"response_code":200,"request_duration":50,"content_type":"text/xml","response_body":"<Response/>","date_created":"Tue, 11 Aug 2020 17:44:08 +0000"}}],
                 "next_page_uri":null,"page":0,"page_size":50}"#;
    let server = Server::start(vec![reply(200, body)]).await;
    let events = server.client().list_call_events(CA).await.expect("events");
    assert_eq!(events.len(), 1);
    let request = events[0].request.as_ref().expect("request");
    assert_eq!(request.url.as_deref(), Some("https://x.twil.io/ack.xml"));
    let r = &server.requests()[0];
    assert_eq!(r.method, "GET");
    assert_eq!(
        r.path(),
        format!("/2010-04-01/Accounts/{AC}/Calls/{CA}/Events.json")
    );
}

#[tokio::test]
async fn twilio_conference_filters_on_the_wire() {
    let empty = r#"{"conferences":[],"next_page_uri":null}"#;
    let server = Server::start(vec![reply(200, empty)]).await;
    let filter = ConferenceFilter {
        friendly_name: Some("ns-oncall".into()),
        status: Some(ConferenceStatus::InProgress),
        date_created: Some(DateCreatedFilter::OnOrAfter(jiff::civil::date(2026, 12, 1))),
    };
    let found = server
        .client()
        .list_conferences_where(&filter)
        .await
        .expect("listed");
    assert!(found.is_empty());
    let requests = server.requests();
    assert_eq!(
        requests[0].query(),
        pairs(&[
            ("FriendlyName", "ns-oncall"),
            ("Status", "in-progress"),
            ("DateCreated>", "2026-12-01"),
            ("PageSize", "100"),
        ])
    );
    // The OAI's `DateCreated>` parameter, which Twilio's docs write `DateCreated>=YYYY-MM-DD`.
    assert!(
        requests[0].target.contains("DateCreated%3E=2026-12-01"),
        "{}",
        requests[0].target
    );
    let on = ConferenceFilter {
        date_created: Some(DateCreatedFilter::On(jiff::civil::date(2026, 12, 1))),
        ..ConferenceFilter::default()
    };
    assert_eq!(on.query(), pairs(&[("DateCreated", "2026-12-01")]));
    let before = ConferenceFilter {
        date_created: Some(DateCreatedFilter::OnOrBefore(jiff::civil::date(
            2026, 12, 1,
        ))),
        ..ConferenceFilter::default()
    };
    assert_eq!(before.query(), pairs(&[("DateCreated<", "2026-12-01")]));
}

#[tokio::test]
async fn twilio_conferences_and_participants() {
    const CF: &str = "CF00000000000000000000000000000001";
    let conferences = format!(
        r#"{{"conferences":[{{"sid":"{CF}","friendly_name":"AlertRoom","status":"init","date_created":"garbage"}}],"next_page_uri":null}}"#
    );
    let participants = format!(
        r#"{{"participants":[{{"call_sid":"{CA}","conference_sid":"{CF}","status":"connected","muted":false,"hold":false,"label":null}}],"next_page_uri":null}}"#
    );
    let server = Server::start(vec![reply(200, &conferences), reply(200, &participants)]).await;
    let client = server.client();
    let found = client
        .list_conferences(Some("Alert Room & co"), Some(ConferenceStatus::Init))
        .await
        .expect("conferences");
    assert_eq!(found[0].sid, CF);
    assert_eq!(found[0].status, ConferenceStatus::Init);
    let people = client.list_participants(CF).await.expect("participants");
    assert_eq!(people[0].call_sid, CA);
    assert_eq!(people[0].status, ParticipantStatus::Connected);

    let requests = server.requests();
    assert_eq!(
        requests[0].path(),
        format!("/2010-04-01/Accounts/{AC}/Conferences.json")
    );
    assert_eq!(
        requests[0].query(),
        pairs(&[
            ("FriendlyName", "Alert Room & co"),
            ("Status", "init"),
            ("PageSize", "100")
        ])
    );
    assert_eq!(
        requests[1].path(),
        format!("/2010-04-01/Accounts/{AC}/Conferences/{CF}/Participants.json")
    );
}

#[tokio::test]
async fn twilio_conference_recordings_path_shape_and_media_url() {
    const CF: &str = "CF00000000000000000000000000000001";
    const RE: &str = "RE00000000000000000000000000000001";
    let body = format!(
        r#"{{"recordings":[{{"sid":"{RE}","conference_sid":"{CF}","status":"in-progress","duration":"-1","date_created":"Tue, 11 Aug 2020 17:44:08 +0000","uri":"/2010-04-01/Accounts/{AC}/Conferences/{CF}/Recordings/{RE}.json"}}],"next_page_uri":null}}"#
    );
    let server = Server::start(vec![reply(200, &body)]).await;
    let client = server.client();
    let recordings = client
        .list_conference_recordings(CF)
        .await
        .expect("recordings");
    assert_eq!(recordings.len(), 1);
    assert_eq!(recordings[0].sid, RE);
    assert_eq!(recordings[0].status, "in-progress");
    let r = &server.requests()[0];
    assert_eq!(r.method, "GET");
    assert_eq!(
        r.path(),
        format!("/2010-04-01/Accounts/{AC}/Conferences/{CF}/Recordings.json")
    );
    let media = client.recording_media_url(RE).expect("media url");
    assert!(
        media
            .as_str()
            .ends_with(&format!("/2010-04-01/Accounts/{AC}/Recordings/{RE}")),
        "{media}"
    );
}

#[tokio::test]
async fn twilio_incoming_numbers_list_fetch_and_voice_url_update() {
    const PN: &str = "PN00000000000000000000000000000001";
    let number = |url: &str, method: &str| {
        format!(
            r#"{{"sid":"{PN}","phone_number":"+815012345678","voice_url":"{url}","voice_method":"{method}","date_created":"Tue, 31 Aug 2010 20:36:28 +0000"}}"#
        )
    };
    let server = Server::start(vec![
        reply(
            200,
            &format!(
                r#"{{"incoming_phone_numbers":[{}],"next_page_uri":null}}"#,
                number("https://old.example/voice", "POST")
            ),
        ),
        reply(200, &number("https://old.example/voice", "POST")),
        reply(200, &number("https://x.twil.io/bridge.xml", "GET")),
    ])
    .await;
    let client = server.client();
    let numbers = client
        .list_incoming_phone_numbers("+815012345678")
        .await
        .expect("numbers");
    assert_eq!(numbers[0].sid, PN);
    let (previous, updated) = client
        .update_voice_url(PN, "https://x.twil.io/bridge.xml", HttpMethod::Get)
        .await
        .expect("updated");
    assert_eq!(
        previous,
        VoiceWebhook {
            voice_url: Some("https://old.example/voice".into()),
            voice_method: Some("POST".into())
        }
    );
    assert_eq!(
        updated.voice_url.as_deref(),
        Some("https://x.twil.io/bridge.xml")
    );

    let requests = server.requests();
    assert_eq!(requests.len(), 3);
    assert_eq!(
        requests[0].path(),
        format!("/2010-04-01/Accounts/{AC}/IncomingPhoneNumbers.json")
    );
    assert!(
        requests[0].target.contains("PhoneNumber=%2B815012345678"),
        "{}",
        requests[0].target
    );
    assert_eq!(requests[1].method, "GET");
    assert_eq!(
        requests[1].target,
        format!("/2010-04-01/Accounts/{AC}/IncomingPhoneNumbers/{PN}.json")
    );
    assert_eq!(requests[2].method, "POST");
    assert_eq!(
        requests[2].target,
        format!("/2010-04-01/Accounts/{AC}/IncomingPhoneNumbers/{PN}.json")
    );
    assert_eq!(
        requests[2].form(),
        pairs(&[
            ("VoiceUrl", "https://x.twil.io/bridge.xml"),
            ("VoiceMethod", "GET")
        ])
    );
}

#[tokio::test]
async fn twilio_serverless_services_environments_assets() {
    const ZS: &str = "ZS00000000000000000000000000000001";
    const ZE: &str = "ZE00000000000000000000000000000001";
    const ZH: &str = "ZH00000000000000000000000000000001";
    let service = format!(
        r#"{{"sid":"{ZS}","unique_name":"alertcall","friendly_name":"alertcall","date_created":"2018-11-10T20:00:00Z"}}"#
    );
    let server = Server::start(vec![
        reply(201, &service),
        reply(200, &format!(r#"{{"services":[{service}],"meta":{{"next_page_url":null,"key":"services"}}}}"#)),
        reply(200, &service),
        reply(404, r#"{"code":20404,"message":"The requested resource was not found","status":404}"#),
        reply(201, &format!(r#"{{"sid":"{ZE}","service_sid":"{ZS}","unique_name":"prod","domain_suffix":"prod","domain_name":"127.0.0.1:4010/twil.io/xyz","build_sid":null}}"#)),
        reply(200, &format!(r#"{{"environments":[{{"sid":"{ZE}","domain_name":"d.twil.io"}}],"meta":{{"next_page_url":null}}}}"#)),
        reply(201, &format!(r#"{{"sid":"{ZH}","service_sid":"{ZS}","friendly_name":"ack"}}"#)),
        reply(200, &format!(r#"{{"assets":[{{"sid":"{ZH}","friendly_name":"ack"}}],"meta":{{"next_page_url":null}}}}"#)),
        reply(204, ""),
    ])
    .await;
    let client = server.client();
    let created = client
        .create_service("alertcall", "alertcall")
        .await
        .expect("service");
    assert_eq!(created.sid, ZS);
    assert_eq!(client.list_services().await.expect("services").len(), 1);
    assert_eq!(
        client
            .find_service("alertcall")
            .await
            .expect("found")
            .map(|s| s.sid),
        Some(ZS.into())
    );
    assert_eq!(client.find_service("missing").await.expect("none"), None);
    let env = client
        .create_environment(ZS, "prod", Some("prod"))
        .await
        .expect("env");
    assert_eq!(
        client.asset_url(&env, "/alertcall/ack.xml"),
        "http://127.0.0.1:4010/twil.io/xyz/alertcall/ack.xml"
    );
    assert_eq!(client.list_environments(ZS).await.expect("envs")[0].sid, ZE);
    assert_eq!(client.create_asset(ZS, "ack").await.expect("asset").sid, ZH);
    assert_eq!(client.list_assets(ZS).await.expect("assets")[0].sid, ZH);
    client.delete_asset(ZS, ZH).await.expect("deleted");

    let r = server.requests();
    let shape: Vec<(&str, &str)> = r.iter().map(|r| (r.method.as_str(), r.path())).collect();
    let expected_paths = [
        ("POST", "/v1/Services".to_string()),
        ("GET", "/v1/Services".to_string()),
        ("GET", "/v1/Services/alertcall".to_string()),
        ("GET", "/v1/Services/missing".to_string()),
        ("POST", format!("/v1/Services/{ZS}/Environments")),
        ("GET", format!("/v1/Services/{ZS}/Environments")),
        ("POST", format!("/v1/Services/{ZS}/Assets")),
        ("GET", format!("/v1/Services/{ZS}/Assets")),
        ("DELETE", format!("/v1/Services/{ZS}/Assets/{ZH}")),
    ];
    let expected: Vec<(&str, &str)> = expected_paths
        .iter()
        .map(|(m, p)| (*m, p.as_str()))
        .collect();
    assert_eq!(shape, expected);
    assert_eq!(
        r[0].form(),
        pairs(&[("UniqueName", "alertcall"), ("FriendlyName", "alertcall")])
    );
    assert_eq!(
        r[4].form(),
        pairs(&[("UniqueName", "prod"), ("DomainSuffix", "prod")])
    );
    assert_eq!(r[6].form(), pairs(&[("FriendlyName", "ack")]));
    assert!(r
        .iter()
        .all(|r| r.header("authorization") == Some(basic(AC, TOKEN).as_str())));
}

#[tokio::test]
async fn twilio_asset_version_upload_is_multipart() {
    const ZS: &str = "ZS00000000000000000000000000000001";
    const ZH: &str = "ZH00000000000000000000000000000001";
    const ZN: &str = "ZN00000000000000000000000000000001";
    let server = Server::start(vec![reply(
        201,
        &format!(r#"{{"sid":"{ZN}","asset_sid":"{ZH}","service_sid":"{ZS}","path":"/alertcall/ack.xml","visibility":"protected","date_created":"2018-11-10T20:00:00Z"}}"#),
    )])
    .await;
    let upload = AssetUpload {
        path: "/alertcall/ack.xml".into(),
        file_name: "ack.xml".into(),
        content_type: "application/xml".into(),
        content: "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Say>了解</Say></Response>"
            .as_bytes()
            .to_vec(),
    };
    let version = server
        .client()
        .upload_asset_version(ZS, ZH, &upload)
        .await
        .expect("uploaded");
    assert_eq!(version.sid, ZN);
    assert_eq!(version.visibility, "protected");

    let r = &server.requests()[0];
    assert_eq!(r.method, "POST");
    assert_eq!(r.target, format!("/v1/Services/{ZS}/Assets/{ZH}/Versions"));
    assert_eq!(r.header("authorization"), Some(basic(AC, TOKEN).as_str()));
    let content_type = r.header("content-type").unwrap_or_default();
    let boundary = content_type
        .strip_prefix("multipart/form-data; boundary=")
        .unwrap_or_else(|| panic!("not multipart: {content_type}"));
    let body = r.body_str();
    let parts: Vec<&str> = body
        .split(&format!("--{boundary}"))
        .filter(|p| !p.trim().is_empty() && p.trim() != "--")
        .collect();
    assert_eq!(parts.len(), 3, "{body}");
    assert!(
        parts[0].contains(
            "Content-Disposition: form-data; name=\"Path\"\r\n\r\n/alertcall/ack.xml\r\n"
        ),
        "{}",
        parts[0]
    );
    assert!(
        parts[1]
            .contains("Content-Disposition: form-data; name=\"Visibility\"\r\n\r\nprotected\r\n"),
        "{}",
        parts[1]
    );
    assert!(
        parts[2].contains("Content-Disposition: form-data; name=\"Content\"; filename=\"ack.xml\""),
        "{}",
        parts[2]
    );
    assert!(
        parts[2].contains("Content-Type: application/xml"),
        "{}",
        parts[2]
    );
    assert!(parts[2].contains("<Say>了解</Say>"), "{}", parts[2]);
}

#[tokio::test]
async fn twilio_builds_and_deployments() {
    const ZS: &str = "ZS00000000000000000000000000000001";
    const ZE: &str = "ZE00000000000000000000000000000001";
    const ZB: &str = "ZB00000000000000000000000000000001";
    const ZD: &str = "ZD00000000000000000000000000000001";
    let build = |status: &str| {
        format!(
            r#"{{"sid":"{ZB}","service_sid":"{ZS}","status":"{status}","asset_versions":[{{"sid":"ZN1"}}],"date_created":"2018-11-10T20:00:00Z"}}"#
        )
    };
    let status =
        |s: &str| format!(r#"{{"sid":"{ZB}","service_sid":"{ZS}","status":"{s}","url":"x"}}"#);
    let deployment = format!(
        r#"{{"sid":"{ZD}","service_sid":"{ZS}","environment_sid":"{ZE}","build_sid":"{ZB}"}}"#
    );
    let server = Server::start(vec![
        reply(201, &build("building")),
        reply(200, &status("building")),
        reply(200, &status("building")),
        reply(200, &status("completed")),
        reply(200, &build("completed")),
        reply(201, &deployment),
        reply(
            200,
            &format!(r#"{{"deployments":[{deployment}],"meta":{{"next_page_url":null}}}}"#),
        ),
        reply(201, &build("building")),
        reply(200, &status("failed")),
    ])
    .await;
    let client = server.client();
    let versions = vec![
        "ZN00000000000000000000000000000001".to_string(),
        "ZN00000000000000000000000000000002".to_string(),
    ];
    let created = client.create_build(ZS, &versions).await.expect("build");
    assert_eq!(created.status, BuildStatus::Building);
    let done = client
        .wait_for_build(ZS, ZB, Duration::from_millis(1), Duration::from_secs(5))
        .await
        .expect("completed");
    assert_eq!(done.status, BuildStatus::Completed);
    let deployed = client
        .create_deployment(ZS, ZE, ZB)
        .await
        .expect("deployed");
    assert_eq!(deployed.build_sid, ZB);
    assert_eq!(
        client
            .list_deployments(ZS, ZE)
            .await
            .expect("deployments")
            .len(),
        1
    );
    client.create_build(ZS, &versions).await.expect("build");
    let failed = client
        .wait_for_build(ZS, ZB, Duration::from_millis(1), Duration::from_secs(5))
        .await
        .expect_err("failed");
    assert!(matches!(failed, TwilioError::Build { .. }), "{failed:?}");

    let r = server.requests();
    assert_eq!(r[0].method, "POST");
    assert_eq!(r[0].target, format!("/v1/Services/{ZS}/Builds"));
    assert_eq!(
        r[0].body_str(),
        "AssetVersions=ZN00000000000000000000000000000001&AssetVersions=ZN00000000000000000000000000000002"
    );
    for poll in &r[1..=3] {
        assert_eq!(poll.method, "GET");
        assert_eq!(poll.target, format!("/v1/Services/{ZS}/Builds/{ZB}/Status"));
    }
    assert_eq!(r[4].target, format!("/v1/Services/{ZS}/Builds/{ZB}"));
    assert_eq!(r[5].method, "POST");
    assert_eq!(
        r[5].target,
        format!("/v1/Services/{ZS}/Environments/{ZE}/Deployments")
    );
    assert_eq!(r[5].form(), pairs(&[("BuildSid", ZB)]));
    assert_eq!(r[6].method, "GET");
    assert_eq!(
        r[6].path(),
        format!("/v1/Services/{ZS}/Environments/{ZE}/Deployments")
    );
}

#[tokio::test]
async fn twilio_build_wait_is_bounded() {
    const ZS: &str = "ZS00000000000000000000000000000001";
    const ZB: &str = "ZB00000000000000000000000000000001";
    let building = reply(200, &format!(r#"{{"sid":"{ZB}","status":"building"}}"#));
    let server = Server::start(vec![building; 10]).await;
    let err = server
        .client()
        .wait_for_build(ZS, ZB, Duration::from_millis(20), Duration::from_millis(50))
        .await
        .expect_err("times out");
    assert!(err.to_string().contains("did not finish"), "{err}");
    let polls = server.requests().len();
    assert!((1..=4).contains(&polls), "{polls} polls");
}
