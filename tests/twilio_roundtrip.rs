//! The Twilio client against the Twilio simulator, in process on loopback: every operation the
//! client has, each scripted recipient behaviour, injected faults and CPS pacing.
//!
//! No timing luck: the simulator runs at a high time scale, every wait is a bounded poll on the
//! ledger or the API, and time assertions use the ledger's simulated timestamps only.

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use alertcall::twilio::client::{
    AssetUpload, CallEnd, CallFilter, CallProgressEvent, CreateCall, HttpMethod, MachineDetection,
    RetryPolicy, StartTimeFilter,
};
use alertcall::twilio::signature;
use alertcall::twilio::sim::{
    Event, Fault, FaultSpec, Ledger, Outcome, Recipient, SimConfig, SimHandle, Simulator,
};
use alertcall::twilio::twiml::{Conference, Dial, Gather, Method, Response, Say};
use alertcall::twilio::types::{BuildStatus, CallStatus, ConferenceStatus, ParticipantStatus};
use alertcall::twilio::{Credentials, RetryClass, TwilioClient, TwilioConfig, TwilioError};
use axum::extract::{Request, State};
use axum::response::IntoResponse;
use url::Url;

const AC: &str = "AC0123456789abcdef0123456789abcdef";
const TOKEN: &str = "roundtrip-auth-token";
const FROM: &str = "+15005550006";
/// Simulated seconds per real second.
const SCALE: f64 = 40.0;

// ---- harness --------------------------------------------------------------------------------

async fn start_sim(configure: impl FnOnce(&mut SimConfig)) -> SimHandle {
    let mut config = SimConfig::new(AC, TOKEN);
    config.time_scale = SCALE;
    configure(&mut config);
    Simulator::start(config).await.expect("simulator starts")
}

fn config_for(sim: &SimHandle, token: &str) -> TwilioConfig {
    let base = Url::parse(&sim.api_url()).expect("simulator URL");
    let mut config = TwilioConfig::new(Credentials::AuthToken {
        account_sid: AC.to_string(),
        auth_token: token.to_string(),
    })
    .with_single_base(base);
    config.timeout = Duration::from_secs(10);
    config.retry = RetryPolicy {
        max_attempts: 3,
        base_delay: Duration::from_millis(5),
        max_delay: Duration::from_secs(5),
    };
    config
}

fn client(sim: &SimHandle) -> TwilioClient {
    TwilioClient::new(config_for(sim, TOKEN)).expect("client")
}

/// Polls `check` until it yields a value; bounded so a broken simulator fails the test instead
/// of hanging it. The bound is generous: it is a safety net, never an assertion on timing.
async fn until<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    for _ in 0..3000 {
        if let Some(value) = check().await {
            return value;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("gave up waiting for {what}");
}

async fn until_terminal(sim: &SimHandle, call_sid: &str) -> Vec<String> {
    until(&format!("{call_sid} to end"), || async {
        let statuses = sim.ledger().call_statuses(call_sid);
        statuses
            .last()
            .filter(|s| {
                matches!(
                    s.as_str(),
                    "completed" | "busy" | "no-answer" | "failed" | "canceled"
                )
            })
            .map(|_| statuses.clone())
    })
    .await
}

/// The (status, Twilio code) of each request `method path` the simulator served, in order.
fn requests(ledger: &Ledger, method: &str, path_end: &str) -> Vec<(u16, Option<u32>)> {
    ledger
        .entries
        .iter()
        .filter_map(|e| match &e.event {
            Event::Request {
                method: m,
                path,
                status,
                error_code,
                ..
            } if m == method && path.ends_with(path_end) => Some((*status, *error_code)),
            _ => None,
        })
        .collect()
}

/// One webhook request the receiver got.
#[derive(Clone, Debug)]
struct Hook {
    method: String,
    url: String,
    params: Vec<(String, String)>,
    signature: String,
    valid: bool,
}

impl Hook {
    fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A loopback webhook receiver: verifies `X-Twilio-Signature` on everything it gets, answers
/// `/ack?room=NAME` with a TwiML document that joins the room, anything else with `<Response/>`.
#[derive(Clone)]
struct Receiver {
    base: String,
    hooks: Arc<Mutex<Vec<Hook>>>,
}

impl Receiver {
    async fn start() -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind receiver");
        let addr = listener.local_addr().expect("receiver addr");
        let hooks = Arc::new(Mutex::new(Vec::new()));
        let app = axum::Router::new()
            .fallback(receive)
            .with_state(hooks.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Receiver {
            base: format!("http://{addr}"),
            hooks,
        }
    }

    fn hooks(&self) -> Vec<Hook> {
        self.hooks.lock().expect("hooks").clone()
    }

    /// Status callbacks for one call, in the order they were sent (by `SequenceNumber`).
    fn status_callbacks(&self, call_sid: &str) -> Vec<Hook> {
        let mut hooks: Vec<Hook> = self
            .hooks()
            .into_iter()
            .filter(|h| h.url.contains("/status") && h.param("CallSid") == Some(call_sid))
            .collect();
        hooks.sort_by_key(|h| {
            h.param("SequenceNumber")
                .and_then(|s| s.parse::<u64>().ok())
                .unwrap_or(u64::MAX)
        });
        hooks
    }

    fn ack_url(&self, room: &str) -> String {
        let query: String = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("room", room)
            .append_pair("attempt", "a-1")
            .finish();
        format!("{}/ack?{query}", self.base)
    }

    fn status_url(&self) -> String {
        format!("{}/status?attempt=a-1", self.base)
    }
}

async fn receive(
    State(hooks): State<Arc<Mutex<Vec<Hook>>>>,
    req: Request,
) -> axum::response::Response {
    let method = req.method().to_string();
    let host = req
        .headers()
        .get("host")
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let target = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_default();
    let url = format!("http://{host}{target}");
    let signature = req
        .headers()
        .get("X-Twilio-Signature")
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let body = axum::body::to_bytes(req.into_body(), 1 << 20)
        .await
        .unwrap_or_default();
    let form: Vec<(String, String)> = url::form_urlencoded::parse(&body).into_owned().collect();
    // NB: a GET webhook is signed over the URL alone (its parameters are in the query).
    let (signed_params, params) = if method == "GET" {
        let query = Url::parse(&url)
            .map(|u| u.query_pairs().into_owned().collect())
            .unwrap_or_default();
        (Vec::new(), query)
    } else {
        (form.clone(), form)
    };
    let valid = signature::verify(TOKEN, &url, &signed_params, &signature);
    let room = Url::parse(&url).ok().and_then(|u| {
        u.query_pairs()
            .find(|(k, _)| k == "room")
            .map(|(_, v)| v.into_owned())
    });
    let is_ack = target.starts_with("/ack");
    hooks.lock().expect("hooks").push(Hook {
        method,
        url,
        params,
        signature,
        valid,
    });
    let document = match (is_ack, room) {
        (true, Some(room)) => Response::new()
            .say(Say::new("Acknowledged. Joining the incident room."))
            .dial(Dial::conference(Conference::new(room)))
            .to_xml(),
        _ => Response::new().to_xml(),
    };
    ([("content-type", "application/xml")], document).into_response()
}

/// The page alertcall places: the message, a one-key Gather whose action is the ack document,
/// then goodbye. `message` is deliberately hostile to check the XML stays well formed.
fn page_twiml(ack_url: &str, message: &str) -> String {
    let doc = Response::new()
        .say(Say::new(message).language("en-US").loop_count(1))
        .gather(
            Gather::new()
                .num_digits(1)
                .timeout(5)
                .action(ack_url)
                .method(Method::Post)
                .say(Say::new("Press any key to acknowledge.")),
        )
        .say(Say::new("Nobody acknowledged. Goodbye."))
        .hangup();
    let xml = doc.to_inline().expect("fits inline");
    roxmltree::Document::parse(&xml).expect("TwiML is well-formed XML");
    xml
}

fn page(to: &str, receiver: &Receiver, room: &str) -> CreateCall {
    let mut call = CreateCall::new(
        to,
        FROM,
        page_twiml(
            &receiver.ack_url(room),
            "Disk <full> & \"db-0\" isn't ]]> ok \u{7}",
        ),
    );
    call.status_callback = Some(receiver.status_url());
    call.status_callback_events = CallProgressEvent::ALL.to_vec();
    call.timeout_secs = Some(25);
    call
}

fn simple_twiml() -> String {
    Response::new()
        .say(Say::new("Test"))
        .hangup()
        .to_inline()
        .expect("inline")
}

fn callback_statuses(hooks: &[Hook]) -> Vec<String> {
    hooks
        .iter()
        .map(|h| h.param("CallStatus").unwrap_or_default().to_string())
        .collect()
}

fn sim_errors(ledger: &Ledger) -> Vec<String> {
    ledger
        .entries
        .iter()
        .filter_map(|e| match &e.event {
            Event::Error { message, .. } => Some(message.clone()),
            _ => None,
        })
        .collect()
}

// ---- Calls ----------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_create_fetch_events_and_signed_callbacks() {
    // This test reads the Events while the call is fresh; Twilio serves them 15 min later.
    let sim = start_sim(|c| c.immediate_call_events = true).await;
    let receiver = Receiver::start().await;
    let twilio = client(&sim);
    let alice = "+819012345678";
    sim.set_recipient(alice, Recipient::presses(3.0, "1").hangup_after(5.0));

    let mut create = page(alice, &receiver, "roundtrip-room");
    create.machine_detection = Some(MachineDetection::Enable);
    let created = twilio.create_call(&create).await.expect("create call");
    assert!(
        created.sid.starts_with("CA") && created.sid.len() == 34,
        "{created:?}"
    );
    assert_eq!(created.status, CallStatus::Queued);
    assert_eq!((created.to.as_str(), created.from.as_str()), (alice, FROM));
    assert_eq!(created.account_sid, AC);
    assert_eq!(created.direction.as_deref(), Some("outbound-api"));
    assert!(created.date_created_parsed().is_some(), "{created:?}");

    let statuses = until_terminal(&sim, &created.sid).await;
    assert_eq!(
        statuses,
        ["queued", "initiated", "ringing", "in-progress", "completed"]
    );
    let fetched = twilio.fetch_call(&created.sid).await.expect("fetch call");
    assert_eq!(fetched.status, CallStatus::Completed);
    assert_eq!(fetched.answered_by.as_deref(), Some("human"));
    let (start, end) = (
        fetched
            .start_time_parsed()
            .expect("start_time is a Twilio date"),
        fetched
            .end_time_parsed()
            .expect("end_time is a Twilio date"),
    );
    assert!(start <= end);
    assert!(fetched.duration.is_some());

    // All four progress events arrive, signed, in Twilio's order.
    let hooks = until("four status callbacks", || async {
        let hooks = receiver.status_callbacks(&created.sid);
        (hooks.len() == 4).then_some(hooks)
    })
    .await;
    assert_eq!(
        callback_statuses(&hooks),
        ["initiated", "ringing", "in-progress", "completed"]
    );
    for hook in &hooks {
        assert!(hook.valid, "callback signature must verify: {hook:?}");
        assert_eq!(hook.method, "POST");
        assert!(hook.url.ends_with("/status?attempt=a-1"), "{}", hook.url);
        assert_eq!(hook.param("AccountSid"), Some(AC));
    }
    assert_eq!(hooks[2].param("AnsweredBy"), Some("human"));
    assert!(hooks[3].param("CallDuration").is_some());
    // A tampered callback does not verify.
    let hook = &hooks[3];
    let mut tampered = hook.params.clone();
    for (k, v) in &mut tampered {
        if k == "CallStatus" {
            *v = "busy".into();
        }
    }
    assert!(!signature::verify(
        TOKEN,
        &hook.url,
        &tampered,
        &hook.signature
    ));
    assert!(!signature::verify(
        "wrong-token",
        &hook.url,
        &hook.params,
        &hook.signature
    ));
    let other_url = hook.url.replace("a-1", "a-2");
    assert!(!signature::verify(
        TOKEN,
        &other_url,
        &hook.params,
        &hook.signature
    ));

    // The Gather action fetch (the acknowledgement) shows in the call's Events, with the key.
    let events = twilio
        .list_call_events(&created.sid)
        .await
        .expect("list call events");
    let ack = events
        .iter()
        .filter_map(|e| e.request.as_ref())
        .find(|r| r.url.as_deref().is_some_and(|u| u.contains("/ack?room=")))
        .unwrap_or_else(|| panic!("no ack fetch in {events:?}"));
    assert_eq!(ack.method.as_deref(), Some("POST"));
    assert_eq!(
        ack.parameters.get("digits").and_then(|v| v.as_str()),
        Some("1")
    );
    assert!(events
        .iter()
        .filter_map(|e| e.response.as_ref())
        .any(|r| r.response_code == Some(200)));
    let ack_hook = receiver
        .hooks()
        .into_iter()
        .find(|h| h.url.contains("/ack"))
        .expect("receiver got the ack fetch");
    assert!(ack_hook.valid, "{ack_hook:?}");
    assert_eq!(ack_hook.param("Digits"), Some("1"));

    // The hostile message text was valid XML for the simulator too.
    let ledger = sim.ledger();
    assert!(sim_errors(&ledger).is_empty(), "{:?}", sim_errors(&ledger));
    // Joined the room, and hung up in it (the call completed, the room ended).
    assert_eq!(
        ledger.participants_of("roundtrip-room"),
        std::slice::from_ref(&created.sid)
    );
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_update_cancel_and_complete() {
    let sim = start_sim(|c| c.time_scale = 10.0).await;
    let receiver = Receiver::start().await;
    let twilio = client(&sim);
    let slow = "+819000000010";
    let talker = "+819000000011";
    sim.set_recipient(slow, Recipient::answers_after(500.0));
    sim.set_recipient(talker, Recipient::answers_after(1.0));

    // Cancel while ringing.
    let mut create = CreateCall::new(slow, FROM, simple_twiml());
    create.status_callback = Some(receiver.status_url());
    create.status_callback_method = HttpMethod::Get;
    create.timeout_secs = Some(600);
    let ringing = twilio.create_call(&create).await.expect("create");
    until("ringing", || async {
        sim.ledger()
            .call_statuses(&ringing.sid)
            .contains(&"ringing".to_string())
            .then_some(())
    })
    .await;
    let canceled = twilio
        .end_call(&ringing.sid, CallEnd::Canceled)
        .await
        .expect("cancel");
    assert_eq!(canceled.status, CallStatus::Canceled);
    assert_eq!(
        sim.ledger().call_statuses(&ringing.sid),
        ["queued", "initiated", "ringing", "canceled"]
    );
    // GET callbacks carry their parameters in the query and are signed over the URL alone.
    let hooks = until("the canceled callback", || async {
        let hooks = receiver.status_callbacks(&ringing.sid);
        (hooks.len() == 3).then_some(hooks)
    })
    .await;
    assert_eq!(
        callback_statuses(&hooks),
        ["initiated", "ringing", "canceled"]
    );
    for hook in &hooks {
        assert_eq!(hook.method, "GET");
        assert!(hook.valid, "{hook:?}");
    }

    // Complete an in-progress call (a long Gather keeps it talking).
    let long = Response::new()
        .say(Say::new("x".repeat(1500)))
        .hangup()
        .to_inline()
        .expect("inline");
    let talking = twilio
        .create_call(&CreateCall::new(talker, FROM, long))
        .await
        .expect("create");
    until("in progress", || async {
        sim.ledger()
            .call_statuses(&talking.sid)
            .contains(&"in-progress".to_string())
            .then_some(())
    })
    .await;
    // NB: canceled does not touch a call in progress (Twilio's update semantics).
    let still = twilio
        .end_call(&talking.sid, CallEnd::Canceled)
        .await
        .expect("cancel in-progress");
    assert_eq!(still.status, CallStatus::InProgress);
    let done = twilio
        .end_call(&talking.sid, CallEnd::Completed)
        .await
        .expect("complete");
    assert_eq!(done.status, CallStatus::Completed);
    assert_eq!(
        sim.ledger().call_statuses(&talking.sid),
        ["queued", "initiated", "ringing", "in-progress", "completed"]
    );
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_list_filters_and_pages() {
    let sim = start_sim(|c| c.calls_per_second = 50.0).await;
    let mut config = config_for(&sim, TOKEN);
    config.page_size = 2;
    let twilio = TwilioClient::new(config).expect("client");
    let busy = "+819000000020";
    let other = "+819000000021";
    sim.set_recipient(busy, Recipient::with_outcome(Outcome::Busy));
    sim.set_recipient(other, Recipient::with_outcome(Outcome::Busy));
    let mut sids = BTreeSet::new();
    for _ in 0..5 {
        let call = twilio
            .create_call(&CreateCall::new(busy, FROM, simple_twiml()))
            .await
            .expect("create");
        sids.insert(call.sid);
    }
    let odd = twilio
        .create_call(&CreateCall::new(other, "+15005550007", simple_twiml()))
        .await
        .expect("create");
    for sid in sids.iter().chain([&odd.sid]) {
        until_terminal(&sim, sid).await;
    }
    // NB: the day the calls started (simulated time runs fast; never assume "today").
    let today = twilio
        .fetch_call(sids.iter().next().expect("a call"))
        .await
        .expect("fetch")
        .start_time_parsed()
        .expect("start_time")
        .to_zoned(jiff::tz::TimeZone::UTC)
        .date();
    let filter = CallFilter {
        to: Some(busy.to_string()),
        from: Some(FROM.to_string()),
        status: Some(CallStatus::Busy),
        start_time: Some(StartTimeFilter::OnOrAfter(today)),
    };
    let before = requests(&sim.ledger(), "GET", "/Calls.json").len();
    let listed = twilio.list_calls(&filter).await.expect("list calls");
    let pages = requests(&sim.ledger(), "GET", "/Calls.json").len() - before;
    let listed_sids: BTreeSet<String> = listed.iter().map(|c| c.sid.clone()).collect();
    assert_eq!(listed.len(), 5, "no call twice: {listed:?}");
    assert_eq!(listed_sids, sids);
    assert_eq!(pages, 3, "five calls at PageSize 2 are three pages");
    assert!(listed.iter().all(|c| c.status == CallStatus::Busy));

    let by_from = twilio
        .list_calls(&CallFilter {
            from: Some("+15005550007".into()),
            ..CallFilter::default()
        })
        .await
        .expect("list by From");
    assert_eq!(
        by_from.iter().map(|c| &c.sid).collect::<Vec<_>>(),
        [&odd.sid]
    );
    let on_day = twilio
        .list_calls(&CallFilter {
            to: Some(other.into()),
            start_time: Some(StartTimeFilter::On(today)),
            ..CallFilter::default()
        })
        .await
        .expect("list on the day");
    assert_eq!(on_day.len(), 1);
    let none = twilio
        .list_calls(&CallFilter {
            start_time: Some(StartTimeFilter::OnOrBefore(
                today.yesterday().expect("yesterday"),
            )),
            ..CallFilter::default()
        })
        .await
        .expect("list before today");
    assert!(none.is_empty(), "{none:?}");
    let queued = twilio
        .list_calls(&CallFilter {
            status: Some(CallStatus::Queued),
            ..CallFilter::default()
        })
        .await
        .expect("list queued");
    assert!(queued.is_empty());
    sim.shutdown().await;
}

// ---- scripted behaviours --------------------------------------------------------------------

struct Scenario {
    to: &'static str,
    recipient: Recipient,
    timeout: u32,
    statuses: &'static [&'static str],
    callbacks: &'static [&'static str],
    answered_by: Option<&'static str>,
    acked: bool,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripted_behaviours_give_twilio_status_sequences() {
    let sim = start_sim(|c| {
        c.calls_per_second = 20.0;
        // This test reads the Events while the call is fresh; Twilio serves them 15 min later.
        c.immediate_call_events = true;
    })
    .await;
    let receiver = Receiver::start().await;
    let twilio = client(&sim);
    let scenarios = [
        Scenario {
            to: "+819000000030",
            recipient: Recipient::presses(2.0, "1").hangup_after(4.0),
            timeout: 25,
            statuses: &["queued", "initiated", "ringing", "in-progress", "completed"],
            callbacks: &["initiated", "ringing", "in-progress", "completed"],
            answered_by: Some("human"),
            acked: true,
        },
        Scenario {
            to: "+819000000031",
            recipient: Recipient::voicemail(4.0),
            timeout: 25,
            statuses: &["queued", "initiated", "ringing", "in-progress", "completed"],
            callbacks: &["initiated", "ringing", "in-progress", "completed"],
            answered_by: Some("machine_start"),
            acked: false,
        },
        Scenario {
            to: "+819000000032",
            recipient: Recipient::with_outcome(Outcome::Busy),
            timeout: 25,
            statuses: &["queued", "initiated", "busy"],
            callbacks: &["initiated", "busy"],
            answered_by: None,
            acked: false,
        },
        Scenario {
            to: "+819000000033",
            recipient: Recipient::with_outcome(Outcome::NoAnswer),
            timeout: 10,
            statuses: &["queued", "initiated", "ringing", "no-answer"],
            callbacks: &["initiated", "ringing", "no-answer"],
            answered_by: None,
            acked: false,
        },
        // Answering after the call's Timeout is a no-answer: Timeout reached the simulator.
        Scenario {
            to: "+819000000034",
            recipient: Recipient::presses(15.0, "1"),
            timeout: 10,
            statuses: &["queued", "initiated", "ringing", "no-answer"],
            callbacks: &["initiated", "ringing", "no-answer"],
            answered_by: None,
            acked: false,
        },
        Scenario {
            to: "+819000000035",
            recipient: Recipient::with_outcome(Outcome::Failed),
            timeout: 25,
            statuses: &["queued", "initiated", "failed"],
            callbacks: &["initiated", "failed"],
            answered_by: None,
            acked: false,
        },
    ];
    let mut created = Vec::new();
    for s in &scenarios {
        sim.set_recipient(s.to, s.recipient.clone());
        let mut call = page(s.to, &receiver, &format!("room-{}", &s.to[1..]));
        call.timeout_secs = Some(s.timeout);
        call.machine_detection = Some(MachineDetection::Enable);
        created.push(twilio.create_call(&call).await.expect("create"));
    }
    for (s, call) in scenarios.iter().zip(&created) {
        let statuses = until_terminal(&sim, &call.sid).await;
        assert_eq!(statuses, s.statuses, "{}", s.to);
        let hooks = until(&format!("callbacks of {}", s.to), || async {
            let hooks = receiver.status_callbacks(&call.sid);
            (hooks.len() == s.callbacks.len()).then_some(hooks)
        })
        .await;
        assert_eq!(callback_statuses(&hooks), s.callbacks, "{}", s.to);
        assert!(hooks.iter().all(|h| h.valid), "{}: {hooks:?}", s.to);
        let fetched = twilio.fetch_call(&call.sid).await.expect("fetch");
        assert_eq!(fetched.status.as_str(), *s.statuses.last().unwrap_or(&""));
        assert_eq!(fetched.answered_by.as_deref(), s.answered_by, "{}", s.to);
        let events = twilio.list_call_events(&call.sid).await.expect("events");
        let acked = events.iter().any(|e| {
            e.request
                .as_ref()
                .and_then(|r| r.url.as_deref())
                .is_some_and(|u| u.contains("/ack?"))
        });
        assert_eq!(acked, s.acked, "{}: {events:?}", s.to);
    }
    let ledger = sim.ledger();
    assert!(sim_errors(&ledger).is_empty(), "{:?}", sim_errors(&ledger));
    // The acknowledger hung up in the conference: joined, left, and the room ended.
    let room = "room-819000000030";
    assert_eq!(
        ledger.participants_of(room),
        std::slice::from_ref(&created[0].sid)
    );
    assert!(ledger.entries.iter().any(|e| matches!(&e.event,
        Event::ParticipantLeft { friendly_name, call_sid, .. } if friendly_name == room && *call_sid == created[0].sid)));
    let ended = twilio
        .list_conferences(Some(room), Some(ConferenceStatus::Completed))
        .await
        .expect("list completed rooms");
    assert_eq!(ended.len(), 1);
    sim.shutdown().await;
}

// ---- Conferences ----------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conferences_lone_acknowledger_is_init_and_listed_as_participant() {
    // NB: a hostile room name travels through a Gather action URL, TwiML and list filters.
    const ROOM: &str = "Ops & \"SRE\" <room> 'x'";
    let sim = start_sim(|_| {}).await;
    let receiver = Receiver::start().await;
    let twilio = client(&sim);
    let alice = "+819000000040";
    sim.set_recipient(alice, Recipient::presses(2.0, "1"));
    let call = twilio
        .create_call(&page(alice, &receiver, ROOM))
        .await
        .expect("create");
    let rooms = until("the room", || async {
        let rooms = twilio
            .list_conferences(Some(ROOM), Some(ConferenceStatus::Init))
            .await
            .expect("list conferences");
        (!rooms.is_empty()).then_some(rooms)
    })
    .await;
    assert_eq!(rooms.len(), 1);
    let room = &rooms[0];
    assert!(room.sid.starts_with("CF"), "{room:?}");
    assert_eq!(room.friendly_name, ROOM);
    assert_eq!(room.status, ConferenceStatus::Init);
    let created_at = room.date_created.as_deref().unwrap_or_default();
    assert!(
        alertcall::twilio::types::parse_twilio_date(created_at).is_some(),
        "v2010 dates are RFC 2822: {room:?}"
    );
    let in_progress = twilio
        .list_conferences(Some(ROOM), Some(ConferenceStatus::InProgress))
        .await
        .expect("list in-progress");
    assert!(
        in_progress.is_empty(),
        "a lone participant does not start the room"
    );
    let other = twilio
        .list_conferences(Some("OtherRoom"), None)
        .await
        .expect("list other");
    assert!(other.is_empty());
    let participants = twilio
        .list_participants(&room.sid)
        .await
        .expect("participants");
    assert_eq!(participants.len(), 1);
    assert_eq!(participants[0].call_sid, call.sid);
    assert_eq!(participants[0].conference_sid, room.sid);
    assert_eq!(participants[0].status, ParticipantStatus::Connected);
    // Hang up the acknowledger through the API: the room ends.
    let done = twilio
        .end_call(&call.sid, CallEnd::Completed)
        .await
        .expect("complete");
    assert_eq!(done.status, CallStatus::Completed);
    until("the room to end", || async {
        let rooms = twilio
            .list_conferences(Some(ROOM), Some(ConferenceStatus::Completed))
            .await
            .expect("list");
        (!rooms.is_empty()).then_some(())
    })
    .await;
    sim.shutdown().await;
}

// ---- IncomingPhoneNumbers -------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incoming_numbers_list_fetch_update_and_restore() {
    let sim = start_sim(|_| {}).await;
    let twilio = client(&sim);
    let bridge = "+815012345678";
    let sid = sim.add_number(bridge);
    sim.add_number("+815099999999");
    let numbers = twilio
        .list_incoming_phone_numbers(bridge)
        .await
        .expect("list numbers");
    assert_eq!(numbers.len(), 1, "{numbers:?}");
    assert_eq!(numbers[0].sid, sid);
    assert_eq!(numbers[0].phone_number, bridge);

    let original = alertcall::twilio::types::VoiceWebhook {
        voice_url: Some("http://127.0.0.1:9/old-voice".into()),
        voice_method: Some("POST".into()),
    };
    twilio
        .set_voice_webhook(&sid, &original)
        .await
        .expect("seed the webhook");
    let (previous, updated) = twilio
        .update_voice_url(&sid, "http://127.0.0.1:9/bridge.xml", HttpMethod::Get)
        .await
        .expect("update voice url");
    assert_eq!(previous, original);
    assert_eq!(
        updated.voice_url.as_deref(),
        Some("http://127.0.0.1:9/bridge.xml")
    );
    assert_eq!(updated.voice_method.as_deref(), Some("GET"));
    let fetched = twilio
        .fetch_incoming_phone_number(&sid)
        .await
        .expect("fetch number");
    assert_eq!(fetched.voice_url, updated.voice_url);
    // API key credentials address the same account.
    sim.add_api_key("SK0123456789abcdef0123456789abcdef", "key-secret");
    let mut config = config_for(&sim, TOKEN);
    config.credentials = Credentials::ApiKey {
        account_sid: AC.to_string(),
        key_sid: "SK0123456789abcdef0123456789abcdef".to_string(),
        key_secret: "key-secret".to_string(),
    };
    let with_key = TwilioClient::new(config).expect("client");
    let restored = with_key
        .set_voice_webhook(&sid, &previous)
        .await
        .expect("restore");
    assert_eq!(restored.voice_url, original.voice_url);
    assert_eq!(restored.voice_method, original.voice_method);
    sim.shutdown().await;
}

// ---- Serverless -----------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serverless_publish_and_protected_asset_fetch() {
    let sim = start_sim(|_| {}).await;
    let twilio = client(&sim);
    let service = twilio
        .create_service("alertcall-test", "alertcall test")
        .await
        .expect("create service");
    assert!(service.sid.starts_with("ZS"));
    let created_at = service.date_created.as_deref().unwrap_or_default();
    assert!(
        alertcall::twilio::types::parse_twilio_date(created_at).is_some(),
        "Serverless dates are ISO 8601: {service:?}"
    );
    assert_eq!(
        twilio
            .find_service("alertcall-test")
            .await
            .expect("find")
            .map(|s| s.sid),
        Some(service.sid.clone())
    );
    assert!(twilio.find_service("nope").await.expect("find").is_none());
    assert_eq!(twilio.list_services().await.expect("services").len(), 1);
    let env = twilio
        .create_environment(&service.sid, "production", Some("prod"))
        .await
        .expect("create environment");
    assert!(!env.domain_name.is_empty(), "{env:?}");
    assert_eq!(
        twilio.list_environments(&service.sid).await.expect("envs")[0].sid,
        env.sid
    );

    let ack = Response::new()
        .say(Say::new("Acknowledged & <thanks>"))
        .dial(Dial::conference(Conference::new("AlertRoom")))
        .to_xml();
    let mut versions = Vec::new();
    for (name, path, body) in [
        ("ack", "/alertcall/ack.xml", ack.clone()),
        (
            "noack",
            "/alertcall/noack.xml",
            Response::new().hangup().to_xml(),
        ),
    ] {
        let asset = twilio
            .create_asset(&service.sid, name)
            .await
            .expect("create asset");
        assert!(asset.sid.starts_with("ZH"));
        let version = twilio
            .upload_asset_version(
                &service.sid,
                &asset.sid,
                &AssetUpload {
                    path: path.to_string(),
                    file_name: format!("{name}.xml"),
                    content_type: "application/xml".into(),
                    content: body.into_bytes(),
                },
            )
            .await
            .expect("upload asset version");
        assert!(version.sid.starts_with("ZN"), "{version:?}");
        assert_eq!(version.path, path);
        assert_eq!(version.visibility, "protected");
        assert_eq!(version.asset_sid, asset.sid);
        versions.push(version.sid);
    }
    assert_eq!(
        twilio
            .list_assets(&service.sid)
            .await
            .expect("assets")
            .len(),
        2
    );
    let build = twilio
        .create_build(&service.sid, &versions)
        .await
        .expect("create build");
    assert!(build.sid.starts_with("ZB"));
    let built = twilio
        .wait_for_build(
            &service.sid,
            &build.sid,
            Duration::from_millis(10),
            Duration::from_secs(30),
        )
        .await
        .expect("build completes");
    assert_eq!(built.status, BuildStatus::Completed);
    assert_eq!(built.asset_versions.map(|v| v.len()), Some(2));
    let deployment = twilio
        .create_deployment(&service.sid, &env.sid, &build.sid)
        .await
        .expect("deploy");
    assert_eq!(deployment.build_sid, build.sid);
    let deployments = twilio
        .list_deployments(&service.sid, &env.sid)
        .await
        .expect("deployments");
    assert_eq!(deployments.len(), 1);

    // Fetch the asset from the environment's domain: 403 unsigned, the document when signed.
    let url = twilio.asset_url(&env, "/alertcall/ack.xml");
    let http = reqwest::Client::new();
    let unsigned = http.get(&url).send().await.expect("unsigned GET");
    assert_eq!(unsigned.status().as_u16(), 403, "{url}");
    let forged = http
        .get(&url)
        .header("X-Twilio-Signature", signature::compute("wrong", &url, &[]))
        .send()
        .await
        .expect("forged GET");
    assert_eq!(forged.status().as_u16(), 403);
    let signed = http
        .get(&url)
        .header("X-Twilio-Signature", signature::compute(TOKEN, &url, &[]))
        .send()
        .await
        .expect("signed GET");
    assert_eq!(signed.status().as_u16(), 200, "{url}");
    assert_eq!(signed.text().await.expect("body"), ack);

    // Assets are deleted by the finalizer; a deployed build keeps serving its versions.
    let assets = twilio.list_assets(&service.sid).await.expect("assets");
    twilio
        .delete_asset(&service.sid, &assets[1].sid)
        .await
        .expect("delete asset");
    assert_eq!(
        twilio
            .list_assets(&service.sid)
            .await
            .expect("assets")
            .len(),
        1
    );

    // And Twilio itself (the simulator) fetches it for a call to the bridge number.
    let bridge = "+815012345678";
    let number = sim.add_number(bridge);
    twilio
        .update_voice_url(&number, &url, HttpMethod::Get)
        .await
        .expect("point the number at the asset");
    let inbound = sim.dial_in("+819012345678", bridge).expect("dial in");
    until("the caller in the room", || async {
        sim.ledger()
            .participants_of("AlertRoom")
            .contains(&inbound)
            .then_some(())
    })
    .await;
    sim.shutdown().await;
}

// ---- faults ---------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_surface_as_typed_errors_and_retry_classes() {
    let sim = start_sim(|_| {}).await;
    let twilio = client(&sim);
    let to = "+819000000050";
    sim.set_recipient(to, Recipient::with_outcome(Outcome::Busy));
    let create = CreateCall::new(to, FROM, simple_twiml());
    let creates = |sim: &SimHandle| requests(&sim.ledger(), "POST", "/Calls.json");

    // 429 with Retry-After: retried, and the retry succeeds.
    sim.inject_fault(
        FaultSpec::new(Fault::TooManyRequests {
            retry_after_seconds: 0,
        })
        .on_path("/Calls.json")
        .on_method("POST")
        .times(1),
    );
    let call = twilio
        .create_call(&create)
        .await
        .expect("retried after 429");
    assert_eq!(call.status, CallStatus::Queued);
    assert_eq!(creates(&sim), [(429, Some(20429)), (201, None)]);

    // 429 until the retries run out: Retryable with the server's Retry-After.
    sim.inject_fault(
        FaultSpec::new(Fault::TooManyRequests {
            retry_after_seconds: 0,
        })
        .on_path("/Calls.json")
        .on_method("POST"),
    );
    let before = creates(&sim).len();
    let err = twilio
        .create_call(&create)
        .await
        .expect_err("429 exhausted");
    assert_eq!(err.status(), Some(429));
    assert_eq!(err.code(), Some(20429));
    assert_eq!(
        err.retry_class(),
        RetryClass::Retryable {
            after: Some(Duration::ZERO)
        }
    );
    assert_eq!(creates(&sim).len() - before, 3, "max_attempts requests");
    sim.clear_faults();
    // A Retry-After longer than the client waits is returned to the caller to requeue.
    sim.inject_fault(
        FaultSpec::new(Fault::TooManyRequests {
            retry_after_seconds: 60,
        })
        .on_path("/Calls.json")
        .times(1),
    );
    let err = twilio.create_call(&create).await.expect_err("429 long");
    assert_eq!(
        err.retry_class(),
        RetryClass::Retryable {
            after: Some(Duration::from_secs(60))
        }
    );

    // 500 on Calls create: ambiguous, never retried.
    sim.inject_fault(
        FaultSpec::new(Fault::ServerError)
            .on_path("/Calls.json")
            .on_method("POST")
            .times(5),
    );
    let before = creates(&sim).len();
    let err = twilio.create_call(&create).await.expect_err("500");
    assert_eq!(err.status(), Some(500));
    assert_eq!(err.retry_class(), RetryClass::Ambiguous);
    assert_eq!(
        creates(&sim)[before..],
        [(500, Some(20500))],
        "exactly one create request"
    );
    sim.clear_faults();

    // 500 on a GET: retried, succeeds.
    let path = format!("/Calls/{}.json", call.sid);
    sim.inject_fault(
        FaultSpec::new(Fault::ServerError)
            .on_path(&path)
            .on_method("GET")
            .times(1),
    );
    let fetched = twilio.fetch_call(&call.sid).await.expect("GET retried");
    assert_eq!(fetched.sid, call.sid);
    assert_eq!(
        requests(&sim.ledger(), "GET", &path),
        [(500, Some(20500)), (200, None)]
    );

    // Invalid numbers: permanent, with Twilio's code.
    for (number, code) in [
        ("+819000000061", 21211),
        ("+819000000062", 21214),
        ("+819000000063", 21217),
    ] {
        sim.set_invalid_number(number, code)
            .expect("invalid number");
        let err = twilio
            .create_call(&CreateCall::new(number, FROM, simple_twiml()))
            .await
            .expect_err("invalid number");
        assert_eq!(err.status(), Some(400), "{err}");
        assert_eq!(err.code(), Some(i64::from(code)), "{err}");
        assert_eq!(err.retry_class(), RetryClass::Permanent);
    }
    let err = twilio
        .create_call(&CreateCall::new("+0123", FROM, simple_twiml()))
        .await
        .expect_err("malformed number");
    assert_eq!(err.code(), Some(21211));

    // Wrong credentials: 401 / 20003, permanent, on the v2010 and the Serverless hosts.
    let wrong = TwilioClient::new(config_for(&sim, "not-the-token")).expect("client");
    let err = wrong.fetch_call(&call.sid).await.expect_err("401");
    assert_eq!((err.status(), err.code()), (Some(401), Some(20003)));
    assert_eq!(err.retry_class(), RetryClass::Permanent);
    assert_eq!(err.reason(), "TwilioUnauthorized");
    let err = wrong.list_services().await.expect_err("401 serverless");
    assert_eq!((err.status(), err.code()), (Some(401), Some(20003)));

    // A response that never comes: a timeout; ambiguous for a create, retryable for a read.
    let mut config = config_for(&sim, TOKEN);
    config.timeout = Duration::from_millis(300);
    let impatient = TwilioClient::new(config).expect("client");
    sim.inject_fault(
        FaultSpec::new(Fault::Hang)
            .on_path("/Calls.json")
            .on_method("POST")
            .times(1),
    );
    let err = impatient.create_call(&create).await.expect_err("timeout");
    assert!(matches!(err, TwilioError::Timeout { .. }), "{err:?}");
    assert_eq!(err.retry_class(), RetryClass::Ambiguous);
    sim.inject_fault(
        FaultSpec::new(Fault::Hang)
            .on_path(&path)
            .on_method("GET")
            .times(1),
    );
    let fetched = impatient
        .fetch_call(&call.sid)
        .await
        .expect("read retried after a timeout");
    assert_eq!(fetched.sid, call.sid);
    sim.shutdown().await;
}

// ---- pacing ---------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cps_is_never_exceeded() {
    let sim = start_sim(|c| {
        c.calls_per_second = 1.0;
        c.time_scale = 50.0;
    })
    .await;
    let twilio = client(&sim);
    for i in 0..6 {
        sim.set_recipient(
            &format!("+81900000007{i}"),
            Recipient::with_outcome(Outcome::Busy),
        );
    }
    let creates = (0..6).map(|i| {
        let twilio = twilio.clone();
        async move {
            twilio
                .create_call(&CreateCall::new(
                    format!("+81900000007{i}"),
                    FROM,
                    simple_twiml(),
                ))
                .await
                .expect("create")
        }
    });
    let calls = futures::future::join_all(creates).await;
    assert!(calls.iter().all(|c| c.status == CallStatus::Queued));
    // While the queue drains, the REST API only ever shows Twilio's `call_enum_status` values
    // (a call being dialled is `initiated` in callbacks, never in the resource).
    until("the queue to drain", || async {
        let listed = twilio
            .list_calls(&CallFilter::default())
            .await
            .expect("list calls");
        for call in &listed {
            assert_ne!(call.status, CallStatus::Unknown, "{call:?}");
        }
        listed.iter().all(|c| c.status.is_terminal()).then_some(())
    })
    .await;
    let ledger = sim.ledger();
    let mut started: Vec<jiff::Timestamp> = calls
        .iter()
        .map(|c| {
            ledger
                .status_time(&c.sid, "initiated")
                .expect("left the queue")
        })
        .collect();
    started.sort();
    for pair in started.windows(2) {
        let gap = pair[0].duration_until(pair[1]);
        assert!(
            gap >= jiff::SignedDuration::from_secs(1),
            "two calls left `queued` within one second: {pair:?}"
        );
    }
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrency_cap_is_never_exceeded() {
    let sim = start_sim(|c| {
        c.calls_per_second = 10.0;
        c.max_concurrent_calls = Some(2);
    })
    .await;
    let twilio = client(&sim);
    sim.set_script(alertcall::twilio::sim::Script {
        // NB: calls long enough (30 simulated seconds) that the cap is surely reached.
        default: Recipient::answers_after(30.0),
        ..Default::default()
    });
    let creates = (0..5).map(|i| {
        let twilio = twilio.clone();
        async move {
            twilio
                .create_call(&CreateCall::new(
                    format!("+81900000008{i}"),
                    FROM,
                    simple_twiml(),
                ))
                .await
                .expect("create")
        }
    });
    let calls = futures::future::join_all(creates).await;
    for call in &calls {
        until_terminal(&sim, &call.sid).await;
    }
    let ledger = sim.ledger();
    let sids: BTreeSet<&str> = calls.iter().map(|c| c.sid.as_str()).collect();
    let (mut active, mut peak) = (0i32, 0i32);
    for entry in &ledger.entries {
        if let Event::CallStatus { call_sid, status } = &entry.event {
            if !sids.contains(call_sid.as_str()) {
                continue;
            }
            match status.as_str() {
                "initiated" => active += 1,
                "completed" | "busy" | "no-answer" | "failed" | "canceled" => active -= 1,
                _ => {}
            }
            peak = peak.max(active);
            assert!(active <= 2, "more than the cap in progress at {entry:?}");
        }
    }
    assert_eq!(peak, 2, "the cap was used");
    sim.shutdown().await;
}
