//! Hostile input and crashes at the worst moment, end to end: whatever a sender puts in an alert
//! (escaping-heavy text, huge labels, oversized or deeply nested bodies), a page still rings
//! someone or the sender gets a clear 4xx, and the operator stays responsive; Twilio requests
//! forged from another namespace or unsigned change nothing and cost no API request; a crash
//! between a dial's intent and its Calls POST still calls, and only this page's call. The
//! operator runs in process on the real control plane; calls go through the in-process Twilio
//! simulator.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use alertcall::api::{AlertCall, AlertCallStatus, AttemptStatus, CallPolicy, Phase};
use alertcall::controllers::callbacks;
use alertcall::operator::{self, Config, Running};
use alertcall::page::hooks::{HookPoint, Hooks};
use alertcall::routing::build::{LABEL_TRUNCATED, SOURCE_LABEL_VALUE_MAX, TRUNCATED_SUFFIX};
use alertcall::sources::alertmanager::MAX_BODY_BYTES;
use alertcall::twilio::signature;
use alertcall::twilio::sim::{Outcome, Recipient, Script};
use jiff::Timestamp;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ListParams, PostParams};
use kube::Client;
use serde_json::{json, Value};
use tokio::time::Instant;

use support::paging::*;
use support::{create, eventually};

/// One operator at a time: the machine is shared, so the timing bounds below measure the
/// operator, not a neighbour; and an operator that watches every namespace must not find another
/// test's page to take over.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const BEARER: &str = "hostile-s3cret";

/// The CallPolicy `oncall` the webhook's route pages through.
async fn policy(client: &Client, namespace: &str) {
    let api: Api<CallPolicy> = Api::namespaced(client.clone(), namespace);
    let spec = policy_spec(
        json!({"mode": "Sequential", "ringTimeoutSeconds": 10, "rounds": 1}),
        &[("alice", ALICE)],
        10,
    );
    create(
        &api,
        json!({
            "apiVersion": "alertcall.dev/v1alpha1", "kind": "CallPolicy",
            "metadata": {"name": "oncall"}, "spec": spec,
        }),
    )
    .await;
}

#[tokio::test]
async fn a_summary_that_escapes_past_the_twiml_limit_still_rings() {
    let _serial = SERIAL.lock().await;
    let script = Script::default().with(ALICE, Recipient::presses(2.0, "1"));
    let h = Harness::new("hostile-twiml", script, 20.0).await;
    let op = h
        .operator("hostile-twiml", any_port(), true, Hooks::default())
        .await;
    h.policy(policy_spec(
        json!({"mode": "Sequential", "ringTimeoutSeconds": 10, "rounds": 1}),
        &[("alice", ALICE)],
        10,
    ))
    .await;
    // 2,000 `&` (the schema's longest summary) are 10,000 characters once escaped: the call
    // used to be refused locally and the page ended Exhausted with nobody called. `<` escapes
    // alike; Japanese text is long in bytes, not in characters.
    let pages = [
        ("ampersands", "&".repeat(2000)),
        ("less-than", "<".repeat(2000)),
        ("japanese", "障害".repeat(750)),
    ];
    for (name, summary) in &pages {
        create(
            &h.calls(),
            json!({
                "apiVersion": "alertcall.dev/v1alpha1", "kind": "AlertCall",
                "metadata": {"name": name},
                "spec": {
                    "policyRef": {"name": "oncall"},
                    "summary": summary,
                    "source": {"kind": "Manual"},
                },
            }),
        )
        .await;
    }
    for (name, _) in &pages {
        let status = h
            .wait_status(name, "the page to be acknowledged", |s| {
                assert!(
                    !matches!(s.phase, Phase::Exhausted | Phase::Failed),
                    "{s:#?}"
                );
                s.phase == Phase::Acknowledged
            })
            .await;
        assert_eq!(status.acknowledged_by.as_deref(), Some("alice"), "{name}");
        assert_eq!(status.attempts.len(), 1, "{name}: {status:#?}");
    }
    let counts = calls_to(&h.sim.ledger());
    assert_eq!(counts.get(ALICE), Some(&pages.len()), "{counts:?}");
    h.finish(vec![op]).await;
}

/// An operator with an Alertmanager route `am` (bearer [`BEARER`], grouping by every label).
struct Webhook {
    client: Client,
    ns: support::TestNamespace,
    running: Running,
    http: reqwest::Client,
}

impl Webhook {
    async fn new(prefix: &str) -> Webhook {
        alertcall::telemetry::init();
        let client = support::client().await;
        let ns = support::TestNamespace::new(&client, prefix).await;
        let config = Config {
            namespace: Some(ns.name.clone()),
            ..Config::local(prefix)
        };
        let running = operator::start(client.clone(), config)
            .await
            .unwrap_or_else(|e| panic!("start: {e}"));
        support::until_ready(running.addr).await;
        policy(&client, &ns.name).await;
        let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns.name);
        create(
            &secrets,
            json!({"metadata": {"name": "am-token"}, "stringData": {"token": BEARER}}),
        )
        .await;
        let routes: Api<alertcall::api::AlertRoute> = Api::namespaced(client.clone(), &ns.name);
        create(
            &routes,
            json!({
                "apiVersion": "alertcall.dev/v1alpha1", "kind": "AlertRoute",
                "metadata": {"name": "am"},
                "spec": {
                    "policyRef": {"name": "oncall"},
                    "alertmanager": {"bearerTokenSecretRef": {"name": "am-token", "key": "token"}},
                    "grouping": {"groupBy": ["..."]},
                    "message": {"template": "{{ reason }}: {{ annotations.summary }}"},
                },
            }),
        )
        .await;
        eventually("AlertRoute am to be observed", || {
            let routes = routes.clone();
            async move {
                let route = routes.get("am").await.ok()?;
                let status = route.status.as_ref()?;
                (status.observed_generation == route.metadata.generation
                    && !status.conditions.is_empty())
                .then_some(())
            }
        })
        .await;
        Webhook {
            client,
            ns,
            running,
            http: reqwest::Client::new(),
        }
    }

    fn url(&self) -> String {
        format!(
            "http://{}/alertmanager/{}/am",
            self.running.addr, self.ns.name
        )
    }

    async fn post(&self, body: Vec<u8>) -> u16 {
        self.http
            .post(self.url())
            .bearer_auth(BEARER)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST: {e}"))
            .status()
            .as_u16()
    }

    async fn calls(&self) -> Vec<AlertCall> {
        let api: Api<AlertCall> = Api::namespaced(self.client.clone(), &self.ns.name);
        api.list(&ListParams::default())
            .await
            .map(|list| list.items)
            .unwrap_or_default()
    }

    async fn finish(self) {
        self.running.shutdown().await;
        self.ns.delete().await;
    }
}

fn payload(alertname: &str, labels: Value) -> Value {
    let mut all = labels;
    all["alertname"] = json!(alertname);
    all["severity"] = json!("critical");
    json!({
        "version": "4", "status": "firing", "receiver": "alertcall",
        "groupKey": "{}:{}", "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093", "truncatedAlerts": 0,
        "alerts": [{
            "status": "firing",
            "labels": all,
            "annotations": {"summary": format!("{alertname} fired")},
            "startsAt": Timestamp::now().to_string(),
            "endsAt": "0001-01-01T00:00:00Z",
            "fingerprint": alertname,
        }]
    })
}

fn bytes(value: &Value) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_else(|e| panic!("JSON: {e}"))
}

#[tokio::test]
async fn a_huge_label_pages_with_the_label_truncated() {
    let _serial = SERIAL.lock().await;
    let hook = Webhook::new("hostile-label").await;
    // 1.7 MB: under the body limit, over what etcd takes in one object.
    let blob = "x".repeat(1_700_000);
    let body = bytes(&payload("HugeLabel", json!({"blob": blob})));
    assert_eq!(hook.post(body).await, 200);
    let call = eventually("an AlertCall about HugeLabel", || async {
        hook.calls()
            .await
            .into_iter()
            .find(|c| c.spec.summary.contains("HugeLabel fired"))
    })
    .await;
    let labels = &call.spec.source.labels;
    assert_eq!(
        labels.get("alertname").map(String::as_str),
        Some("HugeLabel")
    );
    assert_eq!(
        labels.get(LABEL_TRUNCATED).map(String::as_str),
        Some("true")
    );
    let kept = labels.get("blob").cloned().unwrap_or_default();
    assert!(kept.len() <= SOURCE_LABEL_VALUE_MAX, "{} bytes", kept.len());
    assert!(
        kept.starts_with("xxxx") && kept.ends_with(TRUNCATED_SUFFIX),
        "{kept}"
    );
    hook.finish().await;
}

#[tokio::test]
async fn bodies_over_the_limit_get_413() {
    let _serial = SERIAL.lock().await;
    let hook = Webhook::new("hostile-size").await;
    // Valid JSON padded to `size` bytes: only the size can be wrong.
    let padded = |alertname: &str, size: usize| {
        let mut body = bytes(&payload(alertname, json!({})));
        let filler = size - body.len() - "\"pad\":\"\",".len();
        body.splice(
            1..1,
            format!("\"pad\":\"{}\",", "p".repeat(filler)).into_bytes(),
        );
        assert_eq!(body.len(), size);
        body
    };
    assert_eq!(hook.post(padded("TooBig", MAX_BODY_BYTES + 1)).await, 413);
    // Exactly at the limit (twice axum's default of 2 MB) still pages.
    assert_eq!(hook.post(padded("Fits", MAX_BODY_BYTES)).await, 200);
    eventually("an AlertCall about Fits", || async {
        hook.calls()
            .await
            .iter()
            .any(|c| c.spec.summary.contains("Fits fired"))
            .then_some(())
    })
    .await;
    hook.finish().await;
}

#[tokio::test]
async fn deeply_nested_json_is_refused_fast_while_healthz_answers() {
    let _serial = SERIAL.lock().await;
    let hook = Webhook::new("hostile-nest").await;
    let depth = 100_000;
    let body = format!("{{\"a\":{}{}}}", "[".repeat(depth), "]".repeat(depth)).into_bytes();
    assert!(body.len() >= 200_000);
    let healthz = format!("http://{}/healthz", hook.running.addr);
    let started = Instant::now();
    let (status, health) = tokio::join!(
        async {
            let status = hook.post(body).await;
            (status, started.elapsed())
        },
        async {
            let started = Instant::now();
            let response = reqwest::get(&healthz)
                .await
                .unwrap_or_else(|e| panic!("GET /healthz: {e}"));
            (response.status().as_u16(), started.elapsed())
        }
    );
    // Generous bounds on work that takes milliseconds (YAML took 30 s of CPU here).
    assert_eq!(status.0, 400);
    assert!(
        status.1 < Duration::from_secs(2),
        "answered in {:?}",
        status.1
    );
    assert_eq!(health.0, 200);
    assert!(
        health.1 < Duration::from_secs(1),
        "healthz in {:?}",
        health.1
    );
    hook.finish().await;
}

/// Numbers no other test binary calls, so a cluster-wide operator here never confuses them
/// with pages other tests left behind.
const VICTIM: &str = "+15005550301";
const OTHER: &str = "+15005550302";

const ATTACKER_AC: &str = "ACffffffffffffffffffffffffffffffff";
const ATTACKER_TOKEN: &str = "attacker-token";

fn ringing_for_long() -> Recipient {
    Recipient::with_outcome(Outcome::NoAnswer)
}

fn code(response: Result<reqwest::Response, reqwest::Error>) -> u16 {
    response
        .map(|r| r.status().as_u16())
        .unwrap_or_else(|e| panic!("request: {e}"))
}

fn form(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Sends what Twilio would: a form POST (or, without a form, a GET) signed with `token`. The
/// status code of the answer.
async fn as_twilio(url: &str, token: &str, params: &[(String, String)]) -> u16 {
    let signed = signature::compute(token, url, params);
    let http = reqwest::Client::new();
    let request = if params.is_empty() {
        http.get(url)
    } else {
        http.post(url).form(params)
    };
    code(request.header("X-Twilio-Signature", signed).send().await)
}

/// A namespace with its own Secret and CallPolicy `mine`, as any tenant can make.
async fn attacker(h: &Harness) -> support::TestNamespace {
    let ns = support::TestNamespace::new(&h.client, "hostile-attacker").await;
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "twilio"},
        "stringData": {"accountSid": ATTACKER_AC, "authToken": ATTACKER_TOKEN},
    }))
    .unwrap_or_else(|e| panic!("secret: {e}"));
    Api::<Secret>::namespaced(h.client.clone(), &ns.name)
        .create(&PostParams::default(), &secret)
        .await
        .unwrap_or_else(|e| panic!("creating the attacker's secret: {e}"));
    let policy: CallPolicy = serde_json::from_value(json!({
        "apiVersion": "alertcall.dev/v1alpha1",
        "kind": "CallPolicy",
        "metadata": {"name": "mine"},
        "spec": policy_spec(
            json!({"mode": "Sequential", "ringTimeoutSeconds": 30, "rounds": 1}),
            &[("me", OTHER)],
            1,
        ),
    }))
    .unwrap_or_else(|e| panic!("policy: {e}"));
    Api::<CallPolicy>::namespaced(h.client.clone(), &ns.name)
        .create(&PostParams::default(), &policy)
        .await
        .unwrap_or_else(|e| panic!("creating the attacker's policy: {e}"));
    ns
}

#[tokio::test]
async fn another_namespace_cannot_acknowledge_or_end_a_page_even_with_its_own_valid_signature() {
    let _serial = SERIAL.lock().await;
    let script = Script::default().with(VICTIM, ringing_for_long());
    let h = Harness::new("hostile-victim", script, 1.0).await;
    let listener = bind(any_port()).await;
    let addr = listener
        .local_addr()
        .unwrap_or_else(|e| panic!("local addr: {e}"));
    let mut config = h.config("cluster", addr, true, Hooks::default());
    config.namespace = None;
    let op = h.start(config, listener).await;
    let evil = attacker(&h).await;
    h.policy(policy_spec(
        json!({"mode": "Sequential", "ringTimeoutSeconds": 300, "rounds": 1}),
        &[("victim", VICTIM)],
        10,
    ))
    .await;
    h.page("page").await;
    let before = h
        .wait_status("page", "the victim's call ringing", |s| {
            s.attempts
                .first()
                .is_some_and(|a| a.status == AttemptStatus::Ringing && a.call_sid.is_some())
        })
        .await;
    let victim_sid = before.attempts[0].call_sid.clone().unwrap_or_default();
    // The worst case: the attacker even knows the page's nonce.
    let nonce = before.nonce.clone().unwrap_or_default();
    let query = callbacks::callback_query(&h.ns.name, "page", "r1-victim", &nonce);
    let base = format!("http://{}", op.addr);

    // 1. A keypress on the attacker's own ack path, naming the victim's page.
    let forged_ack = format!("{base}/twiml/ack/{}/mine?{query}", evil.name);
    let digits = format!("{forged_ack}&Digits=1");
    assert_eq!(as_twilio(&digits, ATTACKER_TOKEN, &[]).await, 403);
    let keypress = form(&[
        ("AccountSid", ATTACKER_AC),
        ("CallSid", &victim_sid),
        ("Digits", "1"),
    ]);
    assert_eq!(as_twilio(&forged_ack, ATTACKER_TOKEN, &keypress).await, 403);

    // 2. A status callback for the victim's attempt, with the attacker's account.
    let status_url = format!("{base}/twilio/status?{query}");
    let ended = form(&[
        ("AccountSid", ATTACKER_AC),
        ("CallSid", &victim_sid),
        ("CallStatus", "completed"),
    ]);
    assert_eq!(as_twilio(&status_url, ATTACKER_TOKEN, &ended).await, 403);

    // Nothing changed: the call still rings, nobody acknowledged, nothing was counted.
    let after = h.status("page").await;
    assert_eq!(after.phase, Phase::Calling);
    assert_eq!(after.attempts[0].status, AttemptStatus::Ringing);
    assert!(!after.attempts[0].acknowledged);
    assert_eq!(after.acknowledged_by, None);
    let metrics = op.context.metrics.encode();
    assert!(
        !metrics.contains("outcome=\"completed\"") && !metrics.contains("outcome=\"acknowledged\""),
        "{metrics}"
    );

    // The victim's own, correctly signed requests still work.
    let ringing = form(&[
        ("AccountSid", AC),
        ("CallSid", &victim_sid),
        ("CallStatus", "ringing"),
    ]);
    assert_eq!(as_twilio(&status_url, TOKEN, &ringing).await, 204);
    let ack = format!("{base}/twiml/ack/{}/oncall?{query}", h.ns.name);
    let keypress = form(&[
        ("AccountSid", AC),
        ("CallSid", &victim_sid),
        ("Digits", "1"),
    ]);
    assert_eq!(as_twilio(&ack, TOKEN, &keypress).await, 200);
    let acked = h.wait_phase("page", Phase::Acknowledged).await;
    assert_eq!(acked.acknowledged_by.as_deref(), Some("victim"));
    op.shutdown().await;
    evil.delete().await;
    h.finish(Vec::new()).await;
}

/// Every request the operator sends to the API server, as `METHOD path?query`.
#[derive(Clone, Default)]
struct ApiLog(Arc<Mutex<Vec<String>>>);

impl ApiLog {
    fn entries(&self) -> Vec<String> {
        self.0.lock().map(|log| log.clone()).unwrap_or_default()
    }

    /// Requests that read or write one object (watches and lists excluded): what a request
    /// from outside could make the operator do.
    fn object_requests(&self) -> Vec<String> {
        self.entries()
            .into_iter()
            .filter(|line| !line.contains("watch=") && !line.contains("limit="))
            .collect()
    }
}

impl<S> tower::Layer<S> for ApiLog {
    type Service = Logged<S>;

    fn layer(&self, inner: S) -> Logged<S> {
        Logged {
            inner,
            log: self.clone(),
        }
    }
}

#[derive(Clone)]
struct Logged<S> {
    inner: S,
    log: ApiLog,
}

impl<S, B> tower::Service<http::Request<B>> for Logged<S>
where
    S: tower::Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> S::Future {
        if let Ok(mut log) = self.log.0.lock() {
            log.push(format!("{} {}", request.method(), request.uri()));
        }
        self.inner.call(request)
    }
}

#[tokio::test]
async fn unsigned_and_misaddressed_twilio_requests_cost_no_kubernetes_request() {
    let _serial = SERIAL.lock().await;
    let h = Harness::new("hostile-unsigned", Script::default(), 1.0).await;
    let log = ApiLog::default();
    let kubeconfig = support::kubeconfig();
    let kubeconfig = kube::config::Kubeconfig::read_from(&kubeconfig)
        .unwrap_or_else(|e| panic!("kubeconfig: {e}"));
    let client_config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .unwrap_or_else(|e| panic!("kubeconfig: {e}"));
    let client = kube::client::ClientBuilder::try_from(client_config)
        .unwrap_or_else(|e| panic!("client: {e}"))
        .with_layer(&log)
        .build();
    let listener = bind(any_port()).await;
    let addr = listener
        .local_addr()
        .unwrap_or_else(|e| panic!("local addr: {e}"));
    let config = h.config("logged", addr, true, Hooks::default());
    let op = operator::start_with_listener(client, config, listener)
        .await
        .unwrap_or_else(|e| panic!("starting the operator: {e}"));
    h.policy(policy_spec(
        json!({"mode": "Sequential", "ringTimeoutSeconds": 30, "rounds": 1}),
        &[("victim", VICTIM)],
        10,
    ))
    .await;
    // A page acknowledged with kubectl before any call: it has a nonce, its account is
    // resolved, and nothing of it is live, so the operator has no reason to call the API.
    let call: AlertCall = serde_json::from_value(json!({
        "apiVersion": "alertcall.dev/v1alpha1",
        "kind": "AlertCall",
        "metadata": {"name": "page"},
        "spec": {"policyRef": {"name": "oncall"}, "summary": "Disk full", "acknowledged": true},
    }))
    .unwrap_or_else(|e| panic!("alertcall: {e}"));
    h.calls()
        .create(&PostParams::default(), &call)
        .await
        .unwrap_or_else(|e| panic!("creating the page: {e}"));
    let done = h.wait_phase("page", Phase::Acknowledged).await;
    let nonce = done.nonce.clone().unwrap_or_default();
    assert!(!nonce.is_empty());
    // Quiet: the finished page was reconciled and wrote its last status.
    let http = reqwest::Client::new();
    support::eventually("the operator to go quiet", || {
        let log = log.clone();
        let before = log.object_requests().len();
        async move {
            tokio::time::sleep(Duration::from_millis(1500)).await;
            (log.object_requests().len() == before).then_some(())
        }
    })
    .await;
    let before = log.object_requests();

    let base = format!("http://{}", op.addr);
    let right = callbacks::callback_query(&h.ns.name, "page", "r1-victim", &nonce);
    let wrong = callbacks::callback_query(&h.ns.name, "page", "r1-victim", "guessed");
    let form = vec![
        ("AccountSid".to_string(), AC.to_string()),
        (
            "CallSid".to_string(),
            "CA00000000000000000000000000000000".to_string(),
        ),
        ("CallStatus".to_string(), "completed".to_string()),
        ("Digits".to_string(), "1".to_string()),
    ];
    let mut answers = Vec::new();
    for query in [&right, &wrong] {
        for path in [
            format!("/twilio/status?{query}"),
            format!("/twiml/ack/{}/oncall?{query}", h.ns.name),
            format!("/twiml/ack/{}/missing?{query}", h.ns.name),
            format!("/twiml/ack/kube-system/any?{query}"),
        ] {
            let url = format!("{base}{path}");
            // Unsigned, then signed with a token that is not the account's.
            let posted = signature::compute("not-the-token", &url, &form);
            let got = signature::compute("not-the-token", &url, &[]);
            for signed in [false, true] {
                let mut post = http.post(&url).form(&form);
                let mut get = http.get(&url);
                if signed {
                    post = post.header("X-Twilio-Signature", &posted);
                    get = get.header("X-Twilio-Signature", &got);
                }
                answers.push((path.clone(), code(post.send().await)));
                // Status callbacks are POSTs only; the ack document is fetched either way.
                if path.starts_with("/twiml/") {
                    answers.push((path.clone(), code(get.send().await)));
                }
            }
        }
    }
    // One answer for every kind of wrong.
    assert!(answers.iter().all(|(_, code)| *code == 403), "{answers:?}");
    assert_eq!(
        log.object_requests(),
        before,
        "all requests: {:#?}",
        log.entries()
    );

    // The log does see the operator's requests: a new page makes it read its policy.
    let mut another = call.clone();
    another.metadata.name = Some("another".into());
    h.calls()
        .create(&PostParams::default(), &another)
        .await
        .unwrap_or_else(|e| panic!("creating another page: {e}"));
    support::until("the operator to read the policy", || {
        log.object_requests()
            .iter()
            .any(|line| line.starts_with("GET ") && line.contains("/callpolicies/oncall"))
    })
    .await;
    op.shutdown().await;
    h.finish(Vec::new()).await;
}

#[tokio::test]
async fn a_crash_between_intent_and_dial_never_adopts_another_pages_call() {
    let _serial = SERIAL.lock().await;
    let script = Script::default().with(VICTIM, ringing_for_long());
    let h = Harness::new("hostile-crash", script, 1.0).await;
    h.policy(policy_spec(
        json!({"mode": "Sequential", "ringTimeoutSeconds": 300, "rounds": 1}),
        &[("victim", VICTIM)],
        10,
    ))
    .await;
    // An earlier page already rings the same person.
    let first = h
        .operator("first", any_port(), false, Hooks::default())
        .await;
    h.page("earlier").await;
    let earlier = h
        .wait_status("earlier", "the earlier page's call", |s| {
            s.attempts.first().is_some_and(|a| a.call_sid.is_some())
        })
        .await;
    let earlier_sid = earlier.attempts[0].call_sid.clone().unwrap_or_default();
    first.shutdown().await;

    // The next page's operator dies after recording the intent, before the Calls POST.
    let hooks = Hooks::pause_at(HookPoint::AfterIntent);
    let crashy = h.operator("crashy", any_port(), false, hooks.clone()).await;
    h.page("later").await;
    tokio::time::timeout(Duration::from_secs(60), hooks.reached())
        .await
        .unwrap_or_else(|_| panic!("the operator never reached the intent"));
    crashy.kill().await;
    let intent = h.status("later").await;
    assert_eq!(intent.attempts.len(), 1, "{intent:#?}");
    assert_eq!(intent.attempts[0].call_sid, None);

    let restarted = h
        .operator("restarted", any_port(), false, Hooks::default())
        .await;
    let later: AlertCallStatus = h
        .wait_status("later", "the later page's own call", |s| {
            s.attempts.first().is_some_and(|a| a.call_sid.is_some())
        })
        .await;
    let later_sid = later.attempts[0].call_sid.clone().unwrap_or_default();
    assert_ne!(
        later_sid, earlier_sid,
        "the earlier page's call was adopted"
    );
    assert_eq!(later.attempts.len(), 1);
    assert_eq!(later.attempts[0].redials, 1);
    let to_victim: Vec<String> = sid_of(&h.sim.ledger(), VICTIM);
    assert_eq!(
        to_victim,
        vec![earlier_sid, later_sid],
        "one call for each page"
    );
    restarted.shutdown().await;
    h.finish(Vec::new()).await;
}
