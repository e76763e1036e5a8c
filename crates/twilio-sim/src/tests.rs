//! In-process tests: reqwest against the simulator, a loopback receiver that checks signatures.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::Request;
use axum::http::header;
use axum::response::IntoResponse;
use serde_json::Value;

use super::*;
use crate::signature;

const AC: &str = "AC0123456789abcdef0123456789abcdef";
const TOKEN: &str = "sim-test-token";
const FROM: &str = "+15005550006";

async fn start(scale: f64, script: Script) -> SimHandle {
    start_with(SimConfig {
        time_scale: scale,
        script,
        ..SimConfig::new(AC, TOKEN)
    })
    .await
}

async fn start_with(config: SimConfig) -> SimHandle {
    Simulator::start(config).await.expect("simulator starts")
}

/// A request the receiver got.
#[derive(Clone, Debug)]
struct Hit {
    path: String,
    method: String,
    params: HashMap<String, String>,
    signed: bool,
}

/// A loopback webhook receiver: records requests, verifies X-Twilio-Signature, serves documents.
#[derive(Clone)]
struct Receiver {
    base: String,
    hits: Arc<Mutex<Vec<Hit>>>,
    docs: Arc<Mutex<HashMap<String, String>>>,
}

impl Receiver {
    async fn start() -> Receiver {
        let hits: Arc<Mutex<Vec<Hit>>> = Arc::default();
        let docs: Arc<Mutex<HashMap<String, String>>> = Arc::default();
        let (h, d) = (hits.clone(), docs.clone());
        let app = axum::Router::new().fallback(move |req: Request| {
            let (hits, docs) = (h.clone(), d.clone());
            async move {
                let host = req.headers()[header::HOST].to_str().unwrap().to_string();
                let url = format!("http://{host}{}", req.uri());
                let path = req.uri().path().to_string();
                let method = req.method().to_string();
                let sig = req
                    .headers()
                    .get("X-Twilio-Signature")
                    .map(|v| v.to_str().unwrap().to_string())
                    .unwrap_or_default();
                let query: Vec<(String, String)> =
                    url::form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
                        .into_owned()
                        .collect();
                let body = axum::body::to_bytes(req.into_body(), 1 << 20)
                    .await
                    .unwrap();
                let form: Vec<(String, String)> =
                    url::form_urlencoded::parse(&body).into_owned().collect();
                let signed = signature::verify(TOKEN, &url, &form, &sig);
                let params = query.into_iter().chain(form).collect();
                hits.lock().unwrap().push(Hit {
                    path: path.clone(),
                    method,
                    params,
                    signed,
                });
                let doc = docs.lock().unwrap().get(&path).cloned().unwrap_or_default();
                ([(header::CONTENT_TYPE, "application/xml")], doc).into_response()
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Receiver { base, hits, docs }
    }
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
    fn serve(&self, path: &str, doc: &str) {
        self.docs.lock().unwrap().insert(path.into(), doc.into());
    }
    fn hits(&self, path: &str) -> Vec<Hit> {
        let hits = self.hits.lock().unwrap();
        hits.iter().filter(|h| h.path == path).cloned().collect()
    }
    /// Status callbacks for a call, ordered by SequenceNumber.
    fn callbacks(&self, call_sid: &str) -> Vec<Hit> {
        let mut hits: Vec<Hit> = self
            .hits("/status")
            .into_iter()
            .filter(|h| h.params["CallSid"] == call_sid)
            .collect();
        hits.sort_by_key(|h| h.params["SequenceNumber"].parse::<u32>().unwrap());
        hits
    }
}

/// Polls `check` (bounded: 20 s real) until it holds.
async fn until<F: FnMut() -> bool>(what: &str, mut check: F) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !check() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(15)).await;
    }
}

fn http() -> reqwest::Client {
    reqwest::Client::new()
}

fn calls_url(sim: &SimHandle) -> String {
    format!("{}/2010-04-01/Accounts/{AC}/Calls.json", sim.api_url())
}

async fn post(url: &str, form: &[(&str, &str)]) -> (u16, Value, reqwest::header::HeaderMap) {
    let response = http()
        .post(url)
        .basic_auth(AC, Some(TOKEN))
        .form(form)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.json().await.unwrap_or(Value::Null);
    (status, body, headers)
}

async fn fetch(url: &str) -> (u16, Value) {
    let response = http()
        .get(url)
        .basic_auth(AC, Some(TOKEN))
        .send()
        .await
        .unwrap();
    (
        response.status().as_u16(),
        response.json().await.unwrap_or(Value::Null),
    )
}

async fn create_call(sim: &SimHandle, form: &[(&str, &str)]) -> String {
    let (status, body, _) = post(&calls_url(sim), form).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["status"], "queued");
    body["sid"].as_str().unwrap().to_string()
}

fn ack_twiml(action: &str) -> String {
    format!(
        r#"<Response><Say loop="2">Disk full on node one.</Say><Gather numDigits="1" timeout="8" action="{action}" method="GET"><Say>Press 1 to acknowledge.</Say></Gather><Say>Goodbye.</Say><Hangup/></Response>"#
    )
}

const ROOM_DOC: &str = r#"<Response><Say>Joining.</Say><Dial><Conference waitUrl="http://127.0.0.1:9/hold.mp3" record="record-from-start">AlertRoom</Conference></Dial></Response>"#;

fn status_of(sim: &SimHandle, sid: &str) -> Option<String> {
    sim.ledger().call_statuses(sid).last().cloned()
}

async fn participants(sim: &SimHandle, room: &str) -> (String, Vec<String>) {
    let (_, list) = fetch(&format!(
        "{}/2010-04-01/Accounts/{AC}/Conferences.json?FriendlyName={room}&Status=init",
        sim.api_url()
    ))
    .await;
    let (_, list2) = fetch(&format!(
        "{}/2010-04-01/Accounts/{AC}/Conferences.json?FriendlyName={room}&Status=in-progress",
        sim.api_url()
    ))
    .await;
    let conf = list["conferences"]
        .as_array()
        .unwrap()
        .iter()
        .chain(list2["conferences"].as_array().unwrap())
        .next()
        .cloned();
    let Some(conf) = conf else {
        return (String::new(), Vec::new());
    };
    let sid = conf["sid"].as_str().unwrap();
    let (_, parts) = fetch(&format!(
        "{}/2010-04-01/Accounts/{AC}/Conferences/{sid}/Participants.json",
        sim.api_url()
    ))
    .await;
    let calls = parts["participants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["call_sid"].as_str().unwrap().to_string())
        .collect();
    (conf["status"].as_str().unwrap().to_string(), calls)
}

#[tokio::test]
async fn pressing_a_key_fetches_the_signed_action_and_joins_the_room() {
    let alice = "+15550000001";
    // This test reads the live call's Events, which Twilio serves only 15 minutes after it ends.
    let sim = start_with(SimConfig {
        time_scale: 50.0,
        script: Script::default().with(alice, Recipient::presses(3.0, "1")),
        immediate_call_events: true,
        ..SimConfig::new(AC, TOKEN)
    })
    .await;
    let rx = Receiver::start().await;
    rx.serve("/ack.xml", ROOM_DOC);
    let twiml = ack_twiml(&rx.url("/ack.xml"));
    let status = rx.url("/status");
    let sid = create_call(
        &sim,
        &[
            ("To", alice),
            ("From", FROM),
            ("Twiml", &twiml),
            ("StatusCallback", &status),
            ("StatusCallbackEvent", "initiated"),
            ("StatusCallbackEvent", "ringing"),
            ("StatusCallbackEvent", "answered"),
            ("StatusCallbackEvent", "completed"),
        ],
    )
    .await;
    let mut room = (String::new(), Vec::new());
    for _ in 0..2000 {
        room = participants(&sim, "AlertRoom").await;
        if !room.1.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // A lone participant: the room exists but has not started.
    assert_eq!(room, ("init".to_string(), vec![sid.clone()]));

    let ack = rx.hits("/ack.xml");
    assert_eq!(ack.len(), 1);
    assert_eq!(ack[0].method, "GET");
    assert!(ack[0].signed, "Gather action must carry a valid signature");
    assert_eq!(ack[0].params["Digits"], "1");
    assert_eq!(ack[0].params["CallSid"], sid);
    assert_eq!(ack[0].params["CallStatus"], "in-progress");

    // The call's Events list the action request.
    let (code, events) = fetch(&format!(
        "{}/2010-04-01/Accounts/{AC}/Calls/{sid}/Events.json",
        sim.api_url()
    ))
    .await;
    assert_eq!(code, 200);
    let fetched_ack = events["events"].as_array().unwrap().iter().any(|e| {
        e["request"]["url"]
            .as_str()
            .unwrap()
            .starts_with(&rx.url("/ack.xml"))
            && e["request"]["parameters"]["digits"] == "1"
            && e["response"]["response_code"] == 200
    });
    assert!(fetched_ack, "{events}");

    // Hang up through the API: completed, and the room ends.
    let (code, body, _) = post(
        &format!(
            "{}/2010-04-01/Accounts/{AC}/Calls/{sid}.json",
            sim.api_url()
        ),
        &[("Status", "completed")],
    )
    .await;
    assert_eq!((code, body["status"].as_str()), (200, Some("completed")));
    until("the completed callback", || rx.callbacks(&sid).len() == 4).await;
    let callbacks = rx.callbacks(&sid);
    let statuses: Vec<&str> = callbacks
        .iter()
        .map(|h| h.params["CallStatus"].as_str())
        .collect();
    assert_eq!(
        statuses,
        ["initiated", "ringing", "in-progress", "completed"]
    );
    for (i, hit) in callbacks.iter().enumerate() {
        assert!(hit.signed, "callback {i} signature");
        assert_eq!(hit.params["SequenceNumber"], i.to_string());
        assert_eq!(hit.params["CallbackSource"], "call-progress-events");
        assert_eq!(hit.params["AccountSid"], AC);
        assert_eq!(hit.params["Direction"], "outbound-api");
        assert_eq!(hit.params["ApiVersion"], "2010-04-01");
        assert!(hit.params.contains_key("Timestamp"));
    }
    assert!(callbacks[3].params["CallDuration"].parse::<u32>().unwrap() > 0);
    assert_eq!(
        sim.ledger().call_statuses(&sid),
        ["queued", "initiated", "ringing", "in-progress", "completed"]
    );
    until("the room to end", || {
        sim.ledger().entries.iter().any(
            |e| matches!(&e.event, Event::ConferenceStatus { status, .. } if status == "completed"),
        )
    })
    .await;
    // Answered after the scripted 3 s of ringing, in simulated time.
    let ledger = sim.ledger();
    let rang = ledger.status_time(&sid, "ringing").unwrap();
    let answered = ledger.status_time(&sid, "in-progress").unwrap();
    assert!(rang.duration_until(answered).as_secs_f64() >= 3.0);
    sim.shutdown().await;
}

#[tokio::test]
async fn voicemail_answers_but_never_presses() {
    let bob = "+15550000002";
    let sim = start(50.0, Script::default().with(bob, Recipient::voicemail(2.0))).await;
    let rx = Receiver::start().await;
    rx.serve("/ack.xml", ROOM_DOC);
    let twiml = ack_twiml(&rx.url("/ack.xml"));
    let status = rx.url("/status");
    let sid = create_call(
        &sim,
        &[
            ("To", bob),
            ("From", FROM),
            ("Twiml", &twiml),
            ("MachineDetection", "Enable"),
            ("StatusCallback", &status),
        ],
    )
    .await;
    until("the call to end", || {
        status_of(&sim, &sid).as_deref() == Some("completed")
    })
    .await;
    until("the completed callback", || rx.callbacks(&sid).len() == 1).await;
    let done = &rx.callbacks(&sid)[0];
    assert!(done.signed);
    assert_eq!(done.params["CallStatus"], "completed");
    assert_eq!(done.params["AnsweredBy"], "machine_start");
    assert!(
        rx.hits("/ack.xml").is_empty(),
        "voicemail must not acknowledge"
    );
    let ledger = sim.ledger();
    assert!(!ledger
        .entries
        .iter()
        .any(|e| matches!(e.event, Event::Digits { .. })));
    assert_eq!(
        ledger.call_statuses(&sid),
        ["queued", "initiated", "ringing", "in-progress", "completed"]
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn busy_failed_and_unanswered_calls_end_with_twilio_statuses() {
    let script = Script::default()
        .with("+15550000010", Recipient::with_outcome(Outcome::Busy))
        .with("+15550000011", Recipient::with_outcome(Outcome::Failed))
        .with("client:carol", Recipient::with_outcome(Outcome::NoAnswer))
        .with("sip:dave@example.com", Recipient::answers_after(20.0));
    let sim = start(50.0, script).await;
    let rx = Receiver::start().await;
    let status = rx.url("/status");
    let mut sids = Vec::new();
    for to in [
        "+15550000010",
        "+15550000011",
        "client:carol",
        "sip:dave@example.com",
    ] {
        let sid = create_call(
            &sim,
            &[
                ("To", to),
                ("From", FROM),
                ("Twiml", "<Response><Say>Hi</Say></Response>"),
                ("Timeout", "10"),
                ("StatusCallback", &status),
                ("StatusCallbackEvent", "ringing completed"),
            ],
        )
        .await;
        sids.push(sid);
    }
    let expected: [&[&str]; 4] = [
        &["queued", "initiated", "busy"],
        &["queued", "initiated", "failed"],
        &["queued", "initiated", "ringing", "no-answer"],
        // Answering after 20 s is too late for a 10 s timeout.
        &["queued", "initiated", "ringing", "no-answer"],
    ];
    for (sid, expected) in sids.iter().zip(expected) {
        until("the call to end", || {
            sim.ledger().call_statuses(sid).len() == expected.len()
        })
        .await;
        assert_eq!(sim.ledger().call_statuses(sid), expected);
        let last = *expected.last().unwrap();
        until("the final callback", || {
            rx.callbacks(sid)
                .iter()
                .any(|h| h.params["CallStatus"] == last)
        })
        .await;
        assert!(rx.callbacks(sid).iter().all(|h| h.signed));
    }
    // no-answer after the 10 s timeout of ringing.
    let ledger = sim.ledger();
    let rang = ledger.status_time(&sids[2], "ringing").unwrap();
    let gave_up = ledger.status_time(&sids[2], "no-answer").unwrap();
    assert!(rang.duration_until(gave_up).as_secs_f64() >= 10.0);
    let (_, call) = fetch(&format!(
        "{}/2010-04-01/Accounts/{AC}/Calls/{}.json",
        sim.api_url(),
        sids[0]
    ))
    .await;
    assert_eq!(call["status"], "busy");
    assert_eq!(call["duration"], "0");
    sim.shutdown().await;
}

#[tokio::test]
async fn cancel_while_ringing_and_while_queued() {
    let sim = start_with(SimConfig {
        time_scale: 50.0,
        max_concurrent_calls: Some(1),
        script: Script::default().with("+15550000020", Recipient::with_outcome(Outcome::NoAnswer)),
        ..SimConfig::new(AC, TOKEN)
    })
    .await;
    let rx = Receiver::start().await;
    let status = rx.url("/status");
    let form = |to: &'static str| {
        vec![
            ("To", to),
            ("From", FROM),
            ("Twiml", "<Response><Say>Hi</Say></Response>"),
            ("Timeout", "600"),
            ("StatusCallback", status.as_str()),
            ("StatusCallbackEvent", "initiated"),
            ("StatusCallbackEvent", "ringing"),
            ("StatusCallbackEvent", "completed"),
        ]
    };
    let ringing = create_call(&sim, &form("+15550000020")).await;
    // The cap of one active call keeps this one queued while the first rings.
    let queued = create_call(&sim, &form("+15550000021")).await;
    until("ringing", || {
        status_of(&sim, &ringing).as_deref() == Some("ringing")
    })
    .await;
    assert_eq!(status_of(&sim, &queued).as_deref(), Some("queued"));
    // As at Twilio, a queued call has no start time: a StartTime filter misses it, and only a
    // Status filter finds it.
    let today = sim.now().strftime("%Y-%m-%d").to_string();
    let (_, by_day) = fetch(&format!(
        "{}?To=%2B15550000021&StartTime%3E={today}",
        calls_url(&sim)
    ))
    .await;
    assert_eq!(by_day["calls"].as_array().map(Vec::len), Some(0));
    let (_, by_status) = fetch(&format!(
        "{}?To=%2B15550000021&Status=queued",
        calls_url(&sim)
    ))
    .await;
    assert_eq!(by_status["calls"][0]["sid"].as_str(), Some(queued.as_str()));

    let url = |sid: &str| {
        format!(
            "{}/2010-04-01/Accounts/{AC}/Calls/{sid}.json",
            sim.api_url()
        )
    };
    let (code, body, _) = post(&url(&queued), &[("Status", "canceled")]).await;
    assert_eq!((code, body["status"].as_str()), (200, Some("canceled")));
    let (code, body, _) = post(&url(&ringing), &[("Status", "canceled")]).await;
    assert_eq!((code, body["status"].as_str()), (200, Some("canceled")));

    until("the canceled callback", || {
        rx.callbacks(&ringing).len() == 3
    })
    .await;
    let statuses: Vec<String> = rx
        .callbacks(&ringing)
        .iter()
        .map(|h| h.params["CallStatus"].clone())
        .collect();
    assert_eq!(statuses, ["initiated", "ringing", "canceled"]);
    assert_eq!(
        sim.ledger().call_statuses(&ringing),
        ["queued", "initiated", "ringing", "canceled"]
    );
    // Canceled while queued: never started, and no callbacks at all.
    assert_eq!(sim.ledger().call_statuses(&queued), ["queued", "canceled"]);
    assert!(rx.callbacks(&queued).is_empty());
    sim.shutdown().await;
}

#[tokio::test]
async fn calls_start_at_the_cps_rate_within_the_concurrency_cap() {
    let sim = start_with(SimConfig {
        time_scale: 100.0,
        max_concurrent_calls: Some(2),
        script: Script::default().with("+15550000030", Recipient::answers_after(1.0)),
        ..SimConfig::new(AC, TOKEN)
    })
    .await;
    let mut sids = Vec::new();
    for _ in 0..5 {
        let sid = create_call(
            &sim,
            &[
                ("To", "+15550000030"),
                ("From", FROM),
                ("Twiml", r#"<Response><Pause length="30"/></Response>"#),
            ],
        )
        .await;
        sids.push(sid);
    }
    until("all calls to complete", || {
        sids.iter()
            .all(|s| status_of(&sim, s).as_deref() == Some("completed"))
    })
    .await;
    let ledger = sim.ledger();
    let mut starts: Vec<_> = sids
        .iter()
        .map(|s| ledger.status_time(s, "initiated").unwrap())
        .collect();
    starts.sort();
    for pair in starts.windows(2) {
        let gap = pair[0].duration_until(pair[1]).as_secs_f64();
        assert!(gap >= 1.0, "calls started {gap} s apart, faster than 1 CPS");
    }
    // Never more than two calls active at once.
    let mut active = 0i32;
    let mut peak = 0;
    for entry in &ledger.entries {
        if let Event::CallStatus { status, .. } = &entry.event {
            match status.as_str() {
                "initiated" => active += 1,
                "completed" | "busy" | "no-answer" | "failed" | "canceled" => active -= 1,
                _ => {}
            }
            peak = peak.max(active);
        }
    }
    assert_eq!(peak, 2);
    sim.shutdown().await;
}

#[tokio::test]
async fn faults_and_errors_use_twilio_error_bodies() {
    let sim = start(50.0, Script::default()).await;
    let url = calls_url(&sim);
    let form = [
        ("To", "+15550000040"),
        ("From", FROM),
        ("Twiml", "<Response/>"),
    ];

    sim.inject_fault(
        FaultSpec::new(Fault::TooManyRequests {
            retry_after_seconds: 7,
        })
        .on_path("/Calls.json")
        .times(1),
    );
    let (code, body, headers) = post(&url, &form).await;
    assert_eq!((code, body["code"].as_u64()), (429, Some(20429)));
    assert_eq!(body["status"], 429);
    assert_eq!(
        body["more_info"],
        "https://www.twilio.com/docs/errors/20429"
    );
    assert_eq!(headers["retry-after"], "7");
    let (code, _, _) = post(&url, &form).await;
    assert_eq!(code, 201, "the 429 applied to one request only");

    sim.inject_fault(
        FaultSpec::new(Fault::ServerError)
            .on_method("POST")
            .times(1),
    );
    let (code, body, _) = post(&url, &form).await;
    assert_eq!((code, body["code"].as_u64()), (500, Some(20500)));

    sim.inject_fault(FaultSpec::new(Fault::Hang).on_path("/Calls.json"));
    let hung = http()
        .get(&url)
        .basic_auth(AC, Some(TOKEN))
        .timeout(Duration::from_millis(300))
        .send()
        .await;
    assert!(hung.unwrap_err().is_timeout());
    sim.clear_faults();

    for code in [21211, 21214, 21217] {
        let number = format!("+1555000{code}");
        sim.set_invalid_number(&number, code).unwrap();
        let (status, body, _) = post(
            &url,
            &[("To", &number), ("From", FROM), ("Twiml", "<Response/>")],
        )
        .await;
        assert_eq!(
            (status, body["code"].as_u64()),
            (400, Some(u64::from(code)))
        );
    }
    let (status, body, _) = post(&url, &[("From", FROM), ("Twiml", "<Response/>")]).await;
    assert_eq!((status, body["code"].as_u64()), (400, Some(21201)));
    let (status, body, _) = post(&url, &[("To", "+15550000040"), ("Twiml", "<Response/>")]).await;
    assert_eq!((status, body["code"].as_u64()), (400, Some(21213)));
    let (status, body, _) = post(&url, &[("To", "+15550000040"), ("From", FROM)]).await;
    assert_eq!((status, body["code"].as_u64()), (400, Some(21205)));
    let (status, body) = fetch(&format!(
        "{}/2010-04-01/Accounts/{AC}/Calls/CA00000000000000000000000000000000.json",
        sim.api_url()
    ))
    .await;
    assert_eq!((status, body["code"].as_u64()), (404, Some(20404)));

    let wrong = http()
        .get(&url)
        .basic_auth(AC, Some("nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status().as_u16(), 401);
    let body: Value = wrong.json().await.unwrap();
    assert_eq!(body["code"], 20003);
    let other_account = url.replace(AC, "ACffffffffffffffffffffffffffffffff");
    let (status, _) = fetch(&other_account).await;
    assert_eq!(status, 401);
    sim.add_api_key("SK0123456789abcdef0123456789abcdef", "key-secret");
    let keyed = http()
        .get(&url)
        .basic_auth("SK0123456789abcdef0123456789abcdef", Some("key-secret"))
        .send()
        .await
        .unwrap();
    assert_eq!(keyed.status().as_u16(), 200);

    let ledger = sim.ledger();
    assert!(ledger.entries.iter().any(|e| matches!(
        &e.event,
        Event::Request {
            status: 429,
            error_code: Some(20429),
            ..
        }
    )));
    sim.shutdown().await;
}

#[tokio::test]
async fn list_filters_and_paging() {
    let sim = start(50.0, Script::default()).await;
    for to in ["+15550000050", "+15550000051", "+15550000050"] {
        create_call(
            &sim,
            &[("To", to), ("From", FROM), ("Twiml", "<Response/>")],
        )
        .await;
    }
    let (_, page) = fetch(&format!("{}?PageSize=2", calls_url(&sim))).await;
    assert_eq!(page["calls"].as_array().unwrap().len(), 2);
    let next = page["next_page_uri"].as_str().unwrap();
    let (_, page2) = fetch(&format!("{}{next}", sim.api_url())).await;
    assert_eq!(page2["calls"].as_array().unwrap().len(), 1);
    assert!(page2["next_page_uri"].is_null());
    let (_, filtered) = fetch(&format!("{}?To=%2B15550000050", calls_url(&sim))).await;
    assert_eq!(filtered["calls"].as_array().unwrap().len(), 2);
    let today = sim.now().strftime("%Y-%m-%d").to_string();
    let (_, by_day) = fetch(&format!("{}?StartTime%3E={today}", calls_url(&sim))).await;
    assert_eq!(by_day["calls"].as_array().unwrap().len(), 3);
    let (_, none) = fetch(&format!("{}?StartTime%3C=2001-01-01", calls_url(&sim))).await;
    assert!(none["calls"].as_array().unwrap().is_empty());
    let http_ledger: Value = http()
        .get(format!("{}/__sim/ledger", sim.api_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(!http_ledger["entries"].as_array().unwrap().is_empty());
    sim.shutdown().await;
}

/// Creates a service, environment, asset, uploads `doc` at `path` with `visibility`, builds and
/// deploys it. Returns the asset's URL.
async fn publish(sim: &SimHandle, unique: &str, path: &str, visibility: &str, doc: &str) -> String {
    let base = format!("{}/v1/Services", sim.serverless_url());
    let (code, service, _) = post(&base, &[("UniqueName", unique), ("FriendlyName", unique)]).await;
    assert_eq!(code, 201, "{service}");
    let zs = service["sid"].as_str().unwrap().to_string();
    let (code, by_name) = fetch(&format!("{base}/{unique}")).await;
    assert_eq!((code, by_name["sid"].as_str()), (200, Some(zs.as_str())));
    let (code, env, _) = post(
        &format!("{base}/{zs}/Environments"),
        &[("UniqueName", "production"), ("DomainSuffix", "prod")],
    )
    .await;
    assert_eq!(code, 201, "{env}");
    let ze = env["sid"].as_str().unwrap().to_string();
    let domain = env["domain_name"].as_str().unwrap().to_string();
    assert!(
        domain.starts_with(&format!("{}/twil.io/", sim.addr())),
        "{domain}"
    );
    let (code, asset, _) = post(&format!("{base}/{zs}/Assets"), &[("FriendlyName", "ack")]).await;
    assert_eq!(code, 201);
    let zh = asset["sid"].as_str().unwrap().to_string();
    let part = reqwest::multipart::Part::bytes(doc.as_bytes().to_vec())
        .file_name("ack.xml")
        .mime_str("application/xml")
        .unwrap();
    let form = reqwest::multipart::Form::new()
        .text("Path", path.to_string())
        .text("Visibility", visibility.to_string())
        .part("Content", part);
    let uploaded = http()
        .post(format!(
            "{}/v1/Services/{zs}/Assets/{zh}/Versions",
            sim.upload_url()
        ))
        .basic_auth(AC, Some(TOKEN))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(uploaded.status().as_u16(), 201);
    let version: Value = uploaded.json().await.unwrap();
    let zn = version["sid"].as_str().unwrap().to_string();
    assert_eq!(version["visibility"], visibility);
    let (code, build, _) = post(
        &format!("{base}/{zs}/Builds"),
        &[
            ("AssetVersions", &zn),
            ("Dependencies", "[]"),
            ("Runtime", "node22"),
        ],
    )
    .await;
    assert_eq!((code, build["status"].as_str()), (201, Some("building")));
    let zb = build["sid"].as_str().unwrap().to_string();
    let status_url = format!("{base}/{zs}/Builds/{zb}/Status");
    let mut built = false;
    for _ in 0..1000 {
        if fetch(&status_url).await.1["status"] == "completed" {
            built = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(built, "build never completed");
    let (code, deployment, _) = post(
        &format!("{base}/{zs}/Environments/{ze}/Deployments"),
        &[("BuildSid", &zb)],
    )
    .await;
    assert_eq!(
        (code, deployment["build_sid"].as_str()),
        (201, Some(zb.as_str()))
    );
    let (_, env) = fetch(&format!("{base}/{zs}/Environments/{ze}")).await;
    assert_eq!(env["build_sid"], zb);
    format!("http://{domain}{path}")
}

#[tokio::test]
async fn serverless_assets_are_served_and_protected_ones_need_a_signature() {
    let sim = start(50.0, Script::default()).await;
    let public = publish(&sim, "pub-svc", "/hello.txt", "public", "hello").await;
    let anonymous = http().get(&public).send().await.unwrap();
    assert_eq!(anonymous.status().as_u16(), 200);
    assert_eq!(anonymous.text().await.unwrap(), "hello");

    let protected = publish(&sim, "alertcall", "/ack.xml", "protected", ROOM_DOC).await;
    let unsigned = http().get(&protected).send().await.unwrap();
    assert_eq!(unsigned.status().as_u16(), 403);
    let forged = http()
        .get(&protected)
        .header(
            "X-Twilio-Signature",
            signature::compute("wrong", &protected, &[]),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status().as_u16(), 403);
    let signed = http()
        .get(&protected)
        .header(
            "X-Twilio-Signature",
            signature::compute(TOKEN, &protected, &[]),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(signed.status().as_u16(), 200);
    assert_eq!(signed.text().await.unwrap(), ROOM_DOC);
    // A signed POST, as a Gather action with the default method makes: a static asset answers
    // GET only.
    let params = vec![
        ("CallSid".to_string(), "CA0123".to_string()),
        ("Digits".to_string(), "1".to_string()),
    ];
    let posted = http()
        .post(&protected)
        .header(
            "X-Twilio-Signature",
            signature::compute(TOKEN, &protected, &params),
        )
        .form(&params)
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status().as_u16(), 405);
    assert_eq!(
        posted.headers().get("allow").and_then(|v| v.to_str().ok()),
        Some("GET, HEAD")
    );
    let tampered = http()
        .post(&protected)
        .header(
            "X-Twilio-Signature",
            signature::compute(TOKEN, &protected, &params),
        )
        .form(&[("CallSid", "CA0123"), ("Digits", "9")])
        .send()
        .await
        .unwrap();
    assert_eq!(tampered.status().as_u16(), 403);

    // The simulator's own Gather action fetch of the protected asset is signed, so it runs.
    let alice = "+15550000060";
    sim.set_recipient(alice, Recipient::presses(1.0, "1"));
    let twiml = ack_twiml(&protected);
    let sid = create_call(&sim, &[("To", alice), ("From", FROM), ("Twiml", &twiml)]).await;
    until("alice in the room", || {
        sim.ledger().participants_of("AlertRoom") == [sid.clone()]
    })
    .await;
    let ledger = sim.ledger();
    let fetches: Vec<_> = ledger
        .webhooks(&sid)
        .into_iter()
        .filter_map(|e| match &e.event {
            Event::Webhook {
                purpose,
                response_status,
                ..
            } if purpose == "gather-action" => *response_status,
            _ => None,
        })
        .collect();
    assert_eq!(fetches, [200]);
    // Listing assets and deleting one.
    let (_, services) = fetch(&format!("{}/v1/Services", sim.serverless_url())).await;
    assert_eq!(services["services"].as_array().unwrap().len(), 2);
    assert_eq!(services["meta"]["key"], "services");
    sim.shutdown().await;
}

#[tokio::test]
async fn dial_in_runs_the_numbers_voice_url_and_joins_the_room() {
    let caller = "+15550000070";
    let responder = "+15550000071";
    // NB: the caller stays 120 simulated seconds (2.4 s real), a wide window for the checks
    // made while both are in the room.
    let sim = start(
        50.0,
        Script::default()
            .with(caller, Recipient::answers_after(0.0).hangup_after(120.0))
            .with(responder, Recipient::presses(1.0, "1")),
    )
    .await;
    let rx = Receiver::start().await;
    rx.serve("/bridge.xml", ROOM_DOC);
    rx.serve("/ack.xml", ROOM_DOC);

    let numbers = format!(
        "{}/2010-04-01/Accounts/{AC}/IncomingPhoneNumbers.json",
        sim.api_url()
    );
    let (code, number, _) = post(&numbers, &[("PhoneNumber", "+15005550006")]).await;
    assert_eq!(code, 201);
    let pn = number["sid"].as_str().unwrap().to_string();
    let (_, found) = fetch(&format!("{numbers}?PhoneNumber=%2B15005550006")).await;
    assert_eq!(found["incoming_phone_numbers"][0]["sid"], pn);
    let bridge = rx.url("/bridge.xml");
    let (code, updated, _) = post(
        &format!(
            "{}/2010-04-01/Accounts/{AC}/IncomingPhoneNumbers/{pn}.json",
            sim.api_url()
        ),
        &[("VoiceUrl", &bridge), ("VoiceMethod", "GET")],
    )
    .await;
    assert_eq!(
        (
            code,
            updated["voice_url"].as_str(),
            updated["voice_method"].as_str()
        ),
        (200, Some(bridge.as_str()), Some("GET"))
    );

    // The acknowledger waits alone: the room is `init`.
    let twiml = ack_twiml(&rx.url("/ack.xml"));
    let outbound = create_call(
        &sim,
        &[("To", responder), ("From", FROM), ("Twiml", &twiml)],
    )
    .await;
    until("the responder in the room", || {
        sim.ledger().participants_of("AlertRoom") == [outbound.clone()]
    })
    .await;
    assert_eq!(
        participants(&sim, "AlertRoom").await,
        ("init".to_string(), vec![outbound.clone()])
    );

    // Calling the bridge number runs its VoiceUrl and joins the caller: the conference starts.
    let inbound = sim.dial_in(caller, "+15005550006").unwrap();
    until("the conference to start", || {
        sim.ledger().entries.iter().any(|e| {
            matches!(&e.event, Event::ConferenceStatus { status, .. } if status == "in-progress")
        })
    })
    .await;
    let (status, mut members) = participants(&sim, "AlertRoom").await;
    members.sort();
    let mut expected = vec![inbound.clone(), outbound.clone()];
    expected.sort();
    assert_eq!((status.as_str(), members), ("in-progress", expected));
    let hits = rx.hits("/bridge.xml");
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].method, "GET");
    assert!(hits[0].signed);
    assert_eq!(hits[0].params["Direction"], "inbound");
    assert_eq!(hits[0].params["From"], caller);
    assert_eq!(hits[0].params["To"], "+15005550006");
    let ledger = sim.ledger();
    assert!(ledger.entries.iter().any(|e| matches!(
        &e.event,
        Event::Recording {
            conference_sid: Some(_),
            ..
        }
    )));
    assert!(ledger.entries.iter().any(|e| matches!(&e.event, Event::ParticipantJoined { wait_url: Some(w), .. } if w.ends_with("hold.mp3"))));
    let recorded_url = ledger
        .entries
        .iter()
        .find_map(|e| match &e.event {
            Event::Recording { url, .. } => Some(url.clone()),
            _ => None,
        })
        .unwrap();
    let (_, confs) = fetch(&format!(
        "{}/2010-04-01/Accounts/{AC}/Conferences.json?FriendlyName=AlertRoom",
        sim.api_url()
    ))
    .await;
    let cf = confs["conferences"][0]["sid"].as_str().unwrap().to_string();
    let (code, recordings) = fetch(&format!(
        "{}/2010-04-01/Accounts/{AC}/Conferences/{cf}/Recordings.json",
        sim.api_url()
    ))
    .await;
    assert_eq!(code, 200);
    assert_eq!(recordings["recordings"][0]["status"], "in-progress");
    assert!(recorded_url.ends_with(recordings["recordings"][0]["sid"].as_str().unwrap()));

    // The caller hangs up after 120 s in the room; the responder stays.
    until("the caller to hang up", || {
        status_of(&sim, &inbound).as_deref() == Some("completed")
    })
    .await;
    assert_eq!(participants(&sim, "AlertRoom").await.1, [outbound]);
    assert!(matches!(
        sim.dial_in(caller, "+19999999999"),
        Err(SimError::UnknownNumber(_))
    ));
    sim.shutdown().await;
}

#[tokio::test]
async fn non_loopback_urls_are_never_contacted() {
    let sim = start(
        50.0,
        Script::default().with("+15550000080", Recipient::answers_after(0.0)),
    )
    .await;
    let sid = create_call(
        &sim,
        &[
            ("To", "+15550000080"),
            ("From", FROM),
            ("Url", "http://example.com/voice.xml"),
            ("StatusCallback", "https://example.com/status"),
        ],
    )
    .await;
    until("the call to end", || {
        status_of(&sim, &sid).as_deref() == Some("completed")
    })
    .await;
    until("the callback attempt", || {
        sim.ledger().webhooks(&sid).len() == 2
    })
    .await;
    for entry in sim.ledger().webhooks(&sid) {
        let Event::Webhook {
            response_status,
            error,
            ..
        } = &entry.event
        else {
            unreachable!()
        };
        assert!(response_status.is_none());
        assert!(error.as_deref().unwrap().contains("not a loopback URL"));
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn refuses_non_loopback_listen_addresses() {
    let config = SimConfig {
        listen: "0.0.0.0:0".parse().unwrap(),
        ..SimConfig::new(AC, TOKEN)
    };
    assert!(matches!(
        Simulator::start(config).await,
        Err(SimError::NotLoopback(_))
    ));
}

#[tokio::test]
async fn api_redirect_leaves_the_room_and_ending_the_room_runs_the_dial_action() {
    let (erin, frank) = ("+15550000090", "+15550000091");
    let sim = start(
        50.0,
        Script::default()
            .with(erin, Recipient::answers_after(0.0))
            .with(frank, Recipient::answers_after(0.0)),
    )
    .await;
    let rx = Receiver::start().await;
    rx.serve(
        "/after-dial.xml",
        "<Response><Say>The room has ended.</Say></Response>",
    );
    let room = |name: &str| {
        format!(
            r#"<Response><Dial action="{}"><Conference>{name}</Conference></Dial></Response>"#,
            rx.url("/after-dial.xml")
        )
    };
    let erin_sid = create_call(
        &sim,
        &[("To", erin), ("From", FROM), ("Twiml", &room("RoomE"))],
    )
    .await;
    let frank_sid = create_call(
        &sim,
        &[("To", frank), ("From", FROM), ("Twiml", &room("RoomF"))],
    )
    .await;
    until("both in their rooms", || {
        let ledger = sim.ledger();
        ledger.participants_of("RoomE") == [erin_sid.clone()]
            && ledger.participants_of("RoomF") == [frank_sid.clone()]
    })
    .await;

    // New TwiML for an in-progress call interrupts the conference and runs instead.
    let call_url = |sid: &str| {
        format!(
            "{}/2010-04-01/Accounts/{AC}/Calls/{sid}.json",
            sim.api_url()
        )
    };
    let (code, _, _) = post(
        &call_url(&erin_sid),
        &[(
            "Twiml",
            "<Response><Say>Redirected.</Say><Hangup/></Response>",
        )],
    )
    .await;
    assert_eq!(code, 200);
    until("erin's call to complete", || {
        status_of(&sim, &erin_sid).as_deref() == Some("completed")
    })
    .await;
    assert!(rx
        .hits("/after-dial.xml")
        .iter()
        .all(|h| h.params["CallSid"] != erin_sid));
    assert!(sim.ledger().entries.iter().any(|e| matches!(
        &e.event,
        Event::ParticipantLeft { call_sid, .. } if *call_sid == erin_sid
    )));

    // Ending the room through the API sends frank on to the <Dial> action.
    let (_, list) = fetch(&format!(
        "{}/2010-04-01/Accounts/{AC}/Conferences.json?FriendlyName=RoomF",
        sim.api_url()
    ))
    .await;
    let cf = list["conferences"][0]["sid"].as_str().unwrap().to_string();
    let (code, conf, _) = post(
        &format!(
            "{}/2010-04-01/Accounts/{AC}/Conferences/{cf}.json",
            sim.api_url()
        ),
        &[("Status", "completed")],
    )
    .await;
    assert_eq!((code, conf["status"].as_str()), (200, Some("completed")));
    assert_eq!(conf["reason_conference_ended"], "conference-ended-via-api");
    until("frank's call to complete", || {
        status_of(&sim, &frank_sid).as_deref() == Some("completed")
    })
    .await;
    let action = rx.hits("/after-dial.xml");
    assert_eq!(action.len(), 1);
    assert!(action[0].signed);
    assert_eq!(action[0].method, "POST");
    assert_eq!(action[0].params["DialCallStatus"], "answered");
    // A finished call cannot be redirected.
    let (code, body, _) = post(&call_url(&frank_sid), &[("Twiml", "<Response/>")]).await;
    assert_eq!((code, body["code"].as_u64()), (400, Some(21220)));
    sim.shutdown().await;
}

#[tokio::test]
async fn url_documents_redirect_relative_urls_and_pause() {
    let sim = start(
        50.0,
        Script::default().with("+15550000100", Recipient::answers_after(0.0)),
    )
    .await;
    let rx = Receiver::start().await;
    rx.serve(
        "/flow/start.xml",
        r#"<Response><Pause length="4"/><Redirect method="GET">next.xml</Redirect></Response>"#,
    );
    rx.serve(
        "/flow/next.xml",
        "<Response><Hangup/><Say>never spoken</Say></Response>",
    );
    let url = rx.url("/flow/start.xml");
    let sid = create_call(
        &sim,
        &[
            ("To", "+15550000100"),
            ("From", FROM),
            ("Url", &url),
            ("Method", "POST"),
        ],
    )
    .await;
    until("the call to complete", || {
        status_of(&sim, &sid).as_deref() == Some("completed")
    })
    .await;
    let start_hits = rx.hits("/flow/start.xml");
    let next_hits = rx.hits("/flow/next.xml");
    assert_eq!((start_hits.len(), next_hits.len()), (1, 1));
    assert_eq!(
        (start_hits[0].method.as_str(), next_hits[0].method.as_str()),
        ("POST", "GET")
    );
    assert!(start_hits[0].signed && next_hits[0].signed);
    let ledger = sim.ledger();
    let purposes: Vec<String> = ledger
        .webhooks(&sid)
        .iter()
        .filter_map(|e| match &e.event {
            Event::Webhook { purpose, .. } => Some(purpose.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(purposes, ["voice-url", "redirect"]);
    let answered = ledger.status_time(&sid, "in-progress").unwrap();
    let ended = ledger.status_time(&sid, "completed").unwrap();
    assert!(
        answered.duration_until(ended).as_secs_f64() >= 4.0,
        "the Pause takes 4 s"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn call_events_are_served_fifteen_minutes_after_the_call_ends() {
    let alice = "+15550000002";
    let sim = start(
        300.0,
        Script::default().with(alice, Recipient::answers_after(1.0)),
    )
    .await;
    // Events list the webhooks of a call: the answered callback is one.
    let rx = Receiver::start().await;
    let status = rx.url("/status");
    let sid = create_call(
        &sim,
        &[
            ("To", alice),
            ("From", FROM),
            (
                "Twiml",
                "<Response><Dial><Conference>EventsRoom</Conference></Dial></Response>",
            ),
            ("StatusCallback", &status),
            ("StatusCallbackEvent", "answered"),
        ],
    )
    .await;
    let events_url = format!(
        "{}/2010-04-01/Accounts/{AC}/Calls/{sid}/Events.json",
        sim.api_url()
    );
    until("the call to join its room and its callback", || {
        sim.ledger().participants_of("EventsRoom") == [sid.clone()] && rx.callbacks(&sid).len() == 1
    })
    .await;
    let (code, events) = fetch(&events_url).await;
    assert_eq!(code, 200);
    assert_eq!(
        events["events"],
        serde_json::json!([]),
        "a live call has none yet"
    );
    let (code, _, _) = post(
        &format!(
            "{}/2010-04-01/Accounts/{AC}/Calls/{sid}.json",
            sim.api_url()
        ),
        &[("Status", "completed")],
    )
    .await;
    assert_eq!(code, 200);
    let ended = sim
        .ledger()
        .status_time(&sid, "completed")
        .expect("the call ended");
    let mut seen = None;
    for _ in 0..2000 {
        let (_, events) = fetch(&events_url).await;
        let after = sim.now();
        if events["events"].as_array().is_some_and(|e| !e.is_empty()) {
            seen = Some(after);
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let seen = seen.expect("the Events appear once 15 simulated minutes have passed");
    assert!(
        ended.duration_until(seen).as_secs_f64() >= CALL_EVENTS_DELAY_SECONDS,
        "Events served {}s after the call ended",
        ended.duration_until(seen).as_secs_f64()
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn a_person_who_presses_and_hangs_up_never_reaches_the_room() {
    let alice = "+15550000003";
    let sim = start(
        50.0,
        Script::default().with(alice, Recipient::presses(1.0, "1").hangup_after_press(1.0)),
    )
    .await;
    let rx = Receiver::start().await;
    rx.serve(
        "/ack.xml",
        r#"<Response><Say>Acknowledged. You are now joining the incident room with the others.</Say><Dial><Conference>PressAndGo</Conference></Dial></Response>"#,
    );
    let sid = create_call(
        &sim,
        &[
            ("To", alice),
            ("From", FROM),
            ("Twiml", &ack_twiml(&rx.url("/ack.xml"))),
        ],
    )
    .await;
    until("the call to end", || {
        status_of(&sim, &sid).as_deref() == Some("completed")
    })
    .await;
    let ack = rx.hits("/ack.xml");
    assert_eq!(ack.len(), 1);
    assert_eq!(ack[0].params["Digits"], "1");
    assert!(sim.ledger().participants_of("PressAndGo").is_empty());
    let ledger = sim.ledger();
    let pressed = ledger
        .entries
        .iter()
        .find(|e| matches!(&e.event, Event::Digits { call_sid, .. } if *call_sid == sid))
        .map(|e| e.at)
        .expect("a keypress");
    let ended = ledger.status_time(&sid, "completed").expect("ended");
    let after = pressed.duration_until(ended).as_secs_f64();
    assert!(
        (0.9..3.0).contains(&after),
        "hung up {after}s after the keypress"
    );
    sim.shutdown().await;
}

/// Deploys `ack.js` as Twilio does (service with credentials, Function, Function Version upload,
/// environment variables, build, deployment) next to a Sync service and map; returns the
/// function's URL and the Sync service SID.
async fn deploy_ack_function(sim: &SimHandle, include_credentials: bool) -> (String, String) {
    let base = format!("{}/v1/Services", sim.serverless_url());
    let credentials = include_credentials.to_string();
    let (_, service, _) = post(
        &base,
        &[
            ("UniqueName", "alertcall"),
            ("FriendlyName", "alertcall"),
            ("IncludeCredentials", &credentials),
        ],
    )
    .await;
    let zs = service["sid"].as_str().unwrap().to_string();
    let (_, env, _) = post(
        &format!("{base}/{zs}/Environments"),
        &[("UniqueName", "production"), ("DomainSuffix", "prod")],
    )
    .await;
    let ze = env["sid"].as_str().unwrap().to_string();
    let domain = env["domain_name"].as_str().unwrap().to_string();
    let (_, function, _) = post(
        &format!("{base}/{zs}/Functions"),
        &[("FriendlyName", "ack")],
    )
    .await;
    let zh = function["sid"].as_str().unwrap().to_string();
    let source = reqwest::multipart::Part::bytes(
        include_str!("../../../src/twilio/functions/ack.js")
            .as_bytes()
            .to_vec(),
    )
    .file_name("ack.js")
    .mime_str("application/javascript")
    .unwrap();
    let form = reqwest::multipart::Form::new()
        .text("Path", "/alertcall/ack")
        .text("Visibility", "protected")
        .part("Content", source);
    let version: Value = http()
        .post(format!(
            "{}/v1/Services/{zs}/Functions/{zh}/Versions",
            sim.upload_url()
        ))
        .basic_auth(AC, Some(TOKEN))
        .multipart(form)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let zn = version["sid"].as_str().unwrap().to_string();
    let sync = format!("{}/v1/Services", sim.sync_url());
    let (_, sync_service, _) = post(&sync, &[("FriendlyName", "alertcall")]).await;
    let is = sync_service["sid"].as_str().unwrap().to_string();
    let (code, map, _) = post(&format!("{sync}/{is}/Maps"), &[("UniqueName", "acks")]).await;
    assert_eq!(code, 201, "{map}");
    for (key, value) in [("SYNC_SERVICE_SID", is.as_str()), ("ACK_MAP", "acks")] {
        let (code, body, _) = post(
            &format!("{base}/{zs}/Environments/{ze}/Variables"),
            &[("Key", key), ("Value", value)],
        )
        .await;
        assert_eq!(code, 201, "{body}");
    }
    let (code, build, _) = post(
        &format!("{base}/{zs}/Builds"),
        &[
            ("FunctionVersions", &zn),
            ("Dependencies", r#"[{"name":"twilio","version":"5.0.0"}]"#),
            ("Runtime", "node22"),
        ],
    )
    .await;
    assert_eq!(code, 201, "{build}");
    let zb = build["sid"].as_str().unwrap().to_string();
    until_async("the build", || async {
        fetch(&format!("{base}/{zs}/Builds/{zb}/Status")).await.1["status"] == "completed"
    })
    .await;
    let (code, body, _) = post(
        &format!("{base}/{zs}/Environments/{ze}/Deployments"),
        &[("BuildSid", &zb)],
    )
    .await;
    assert_eq!(code, 201, "{body}");
    (format!("http://{domain}/alertcall/ack"), is)
}

async fn until_async<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(15)).await;
    }
}

#[tokio::test]
async fn the_ack_function_records_a_hash_keypress_in_sync_before_the_person_hangs_up() {
    let alice = "+15550000004";
    let sim = start(
        50.0,
        Script::default().with(alice, Recipient::presses(1.0, "#").hangup_after_press(1.0)),
    )
    .await;
    let (function, is) = deploy_ack_function(&sim, true).await;
    let action = format!(
        "{function}?attempt=r0-1&room=HashRoom&say=Acknowledged.%20Joining%20the%20incident%20room.&language=en-US"
    );
    let twiml = format!(
        r#"<Response><Gather numDigits="1" finishOnKey="" action="{}"><Say>Press # to acknowledge.</Say></Gather><Hangup/></Response>"#,
        action.replace('&', "&amp;")
    );
    let sid = create_call(&sim, &[("To", alice), ("From", FROM), ("Twiml", &twiml)]).await;
    until("the call to end", || {
        status_of(&sim, &sid).as_deref() == Some("completed")
    })
    .await;
    assert!(sim.ledger().participants_of("HashRoom").is_empty());
    let (code, item) = fetch(&format!(
        "{}/v1/Services/{is}/Maps/acks/Items/{sid}",
        sim.sync_url()
    ))
    .await;
    assert_eq!(code, 200, "{item}");
    assert_eq!(item["data"]["callSid"], sid.as_str());
    assert_eq!(item["data"]["attempt"], "r0-1");
    assert_eq!(item["data"]["digits"], "#");
    assert!(item["date_expires"].is_string(), "{item}");
    let action_hit = sim
        .ledger()
        .webhooks(&sid)
        .into_iter()
        .find_map(|e| match &e.event {
            Event::Webhook {
                purpose,
                response_status,
                ..
            } if purpose == "gather-action" => Some(*response_status),
            _ => None,
        });
    assert_eq!(action_hit, Some(Some(200)));
    sim.shutdown().await;
}

#[tokio::test]
async fn the_ack_function_fails_without_credentials_and_refuses_unsigned_requests() {
    let sim = start(50.0, Script::default()).await;
    let (function, _) = deploy_ack_function(&sim, false).await;
    let params = vec![
        ("CallSid".to_string(), "CA0123".to_string()),
        ("Digits".to_string(), "1".to_string()),
    ];
    let unsigned = http().post(&function).form(&params).send().await.unwrap();
    assert_eq!(unsigned.status().as_u16(), 403);
    let signed = http()
        .post(&function)
        .header(
            "X-Twilio-Signature",
            signature::compute(TOKEN, &function, &params),
        )
        .form(&params)
        .send()
        .await
        .unwrap();
    // NB: `context.getTwilioClient()` needs IncludeCredentials=true.
    assert_eq!(signed.status().as_u16(), 500);
    sim.shutdown().await;
}

/// The router is hand-written `match` arms; `ROUTES` lists them for the OpenAPI contract test.
/// Counting arms catches a route added to one and not the other.
#[test]
fn routes_list_every_match_arm_of_the_router() {
    fn arms(source: &str) -> usize {
        ["GET", "POST", "DELETE", "PUT"]
            .iter()
            .map(|m| source.matches(&format!("(\"{m}\", [")).count())
            .sum()
    }
    let count = |prefix: &str| ROUTES.iter().filter(|(_, p)| p.starts_with(prefix)).count();
    // routes.rs: the v2010 arms, plus the 6 arms of the `/__sim` control endpoints.
    assert_eq!(arms(include_str!("routes.rs")) - 6, count("/2010-04-01/"));
    // serverless.rs: its arms, plus `/v1/Services` GET and POST (matched by method alone) and
    // the two uploads (matched before the body is read).
    assert_eq!(arms(include_str!("serverless.rs")) + 4, count("/v1/"));
    // sync.rs: its arms, plus `/v1/Services` GET and POST (matched by method alone).
    assert_eq!(arms(include_str!("sync.rs")) + 2, SYNC_ROUTES.len());
}

#[tokio::test]
async fn conference_lists_filter_by_status_and_creation_day() {
    let sim = start(1.0, Script::default()).await;
    let now = sim.now();
    let today = now.strftime("%Y-%m-%d").to_string();
    let midnight = now
        .to_zoned(jiff::tz::TimeZone::UTC)
        .start_of_day()
        .unwrap()
        .timestamp();
    for days in 1..=3 {
        sim.add_completed_conference("room", now - jiff::SignedDuration::from_hours(24 * days));
    }
    // Earlier today, even at 00:00:00: the day filter keeps it.
    sim.add_completed_conference("room", midnight);
    sim.add_completed_conference("other", now);
    let url = |q: &str| {
        format!(
            "{}/2010-04-01/Accounts/{AC}/Conferences.json?{q}",
            sim.api_url()
        )
    };
    let count = |v: &Value| v["conferences"].as_array().unwrap().len();

    let (code, all) = fetch(&url("FriendlyName=room")).await;
    assert_eq!((code, count(&all)), (200, 4));
    let (_, since_today) = fetch(&url(&format!("FriendlyName=room&DateCreated%3E={today}"))).await;
    assert_eq!(count(&since_today), 1);
    // Sent literally as `DateCreated>=`, the form Twilio's docs show.
    let (_, literal) = fetch(&url(&format!("FriendlyName=room&DateCreated>={today}"))).await;
    assert_eq!(count(&literal), 1);
    let (_, on_today) = fetch(&url(&format!("FriendlyName=room&DateCreated={today}"))).await;
    assert_eq!(count(&on_today), 1);
    let (_, before) = fetch(&url(&format!("FriendlyName=room&DateCreated%3C={today}"))).await;
    assert_eq!(count(&before), 4);
    let (_, open) = fetch(&url("FriendlyName=room&Status=init")).await;
    assert_eq!(count(&open), 0);
    let (_, done) = fetch(&url("FriendlyName=room&Status=completed")).await;
    assert_eq!(count(&done), 4);
    // Day granularity only: a time of day is refused, not honoured.
    let now_text = now.to_string();
    let (code, refused) = fetch(&url(&format!("DateCreated%3E={now_text}"))).await;
    assert_eq!(
        (code, refused["code"].as_u64()),
        (400, Some(20001)),
        "{refused}"
    );

    // Every request is in the ledger, with the query it carried.
    let ledger = sim.ledger();
    let queries: Vec<String> = ledger
        .entries
        .iter()
        .filter_map(|e| match &e.event {
            Event::Request { path, query, .. } if path.ends_with("/Conferences.json") => {
                query.clone()
            }
            _ => None,
        })
        .collect();
    assert_eq!(queries.len(), 8, "{queries:?}");
    assert!(queries.contains(&"FriendlyName=room&Status=init".to_string()));
    sim.shutdown().await;
}

#[tokio::test]
async fn a_set_clock_runs_on_from_the_set_time_and_dates_new_calls() {
    let sim = start(1.0, Script::default()).await;
    sim.add_number(FROM);
    let at: jiff::Timestamp = "2026-12-11T08:00:00Z".parse().expect("a timestamp");
    sim.set_clock(at);
    let now = sim.now();
    assert!(
        now >= at && now < at + jiff::SignedDuration::from_secs(5),
        "{now}"
    );
    let sid = create_call(
        &sim,
        &[
            ("To", "+15005550101"),
            ("From", FROM),
            ("Url", "http://127.0.0.1:9/"),
        ],
    )
    .await;
    let (status, call) = fetch(&format!(
        "{}/{sid}.json",
        calls_url(&sim).trim_end_matches(".json")
    ))
    .await;
    assert_eq!(status, 200, "{call}");
    let created = call["date_created"].as_str().unwrap_or_default();
    assert!(created.starts_with("Fri, 11 Dec 2026 08:"), "{call}");
    sim.shutdown().await;
}
