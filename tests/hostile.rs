//! Hostile input, end to end: whatever a sender puts in an alert (escaping-heavy text, huge
//! labels, oversized or deeply nested bodies), a page still rings someone or the sender gets a
//! clear 4xx, and the operator stays responsive. The operator runs in process on the real control
//! plane; calls go through the in-process Twilio simulator.

mod support;

use std::time::Duration;

use alertcall::api::{AlertCall, CallPolicy, Phase};
use alertcall::controller::{self, Config, Running, TwilioEndpoints};
use alertcall::routing::build::{LABEL_TRUNCATED, SOURCE_LABEL_VALUE_MAX, TRUNCATED_SUFFIX};
use alertcall::sources::alertmanager::MAX_BODY_BYTES;
use alertcall::twilio::sim::{Event, Recipient, Script, SimConfig, Simulator};
use jiff::Timestamp;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ListParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::{json, Value};
use tokio::time::Instant;

use support::eventually;

/// One operator at a time: the machine is shared, and the timing bounds below should measure
/// the operator, not a neighbour.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const AC: &str = "AC0123456789abcdef0123456789abcdef";
const AUTH_TOKEN: &str = "hostile-test-token";
const FROM: &str = "+15005550006";
const ALICE: &str = "+15005550101";
const BEARER: &str = "hostile-s3cret";

async fn create<K>(api: &Api<K>, object: Value) -> K
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    let object: K = serde_json::from_value(object).unwrap_or_else(|e| panic!("object: {e}"));
    api.create(&PostParams::default(), &object)
        .await
        .unwrap_or_else(|e| panic!("create {}: {e}", object.name_any()))
}

async fn policy(client: &Client, namespace: &str) {
    let api: Api<CallPolicy> = Api::namespaced(client.clone(), namespace);
    create(
        &api,
        json!({
            "apiVersion": "alertcall.dev/v1alpha1", "kind": "CallPolicy",
            "metadata": {"name": "oncall"},
            "spec": {
                "twilio": {"credentialsSecretRef": {"name": "twilio"}, "from": FROM},
                "recipients": [{"name": "alice", "phone": ALICE}],
                "strategy": {"mode": "Sequential", "ringTimeoutSeconds": 10, "rounds": 1},
                "acknowledgement": {"digits": "1", "gatherTimeoutSeconds": 3},
                "message": {"repeat": 1, "language": "en-US"},
                "limits": {"callsPerSecond": 10, "maxCallsPerHour": 0},
            }
        }),
    )
    .await;
}

async fn ready(running: &Running) {
    let url = format!("http://{}/readyz", running.addr);
    eventually("the operator to be ready", || {
        let url = url.clone();
        async move {
            let response = reqwest::get(url).await.ok()?;
            response.status().is_success().then_some(())
        }
    })
    .await;
}

#[tokio::test]
async fn a_summary_that_escapes_past_the_twiml_limit_still_rings() {
    let _serial = SERIAL.lock().await;
    alertcall::telemetry::init();
    let client = support::client().await;
    let ns = support::TestNamespace::new(&client, "hostile-twiml").await;
    let sim = Simulator::start(SimConfig {
        script: Script::default().with(ALICE, Recipient::presses(2.0, "1")),
        time_scale: 20.0,
        calls_per_second: 100.0,
        ..SimConfig::new(AC, AUTH_TOKEN)
    })
    .await
    .unwrap_or_else(|e| panic!("simulator: {e}"));
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns.name);
    create(
        &secrets,
        json!({"metadata": {"name": "twilio"}, "stringData": {"accountSid": AC, "authToken": AUTH_TOKEN}}),
    )
    .await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("bind: {e}"));
    let addr = listener
        .local_addr()
        .unwrap_or_else(|e| panic!("local addr: {e}"));
    let sim_url = url::Url::parse(&sim.api_url()).ok();
    let config = Config {
        namespace: Some(ns.name.clone()),
        public_url: url::Url::parse(&format!("http://{addr}")).ok(),
        twilio: TwilioEndpoints {
            api_url: sim_url.clone(),
            serverless_url: sim_url,
            ..TwilioEndpoints::default()
        },
        poll_interval: Duration::from_millis(500),
        ..Config::local("hostile-twiml")
    };
    let running = controller::start_with_listener(client.clone(), config, listener)
        .await
        .unwrap_or_else(|e| panic!("starting the operator: {e}"));
    policy(&client, &ns.name).await;
    // 2,000 `&` (the schema's longest summary) are 10,000 characters once escaped: the call
    // used to be refused locally and the page ended Exhausted with nobody called.
    let calls: Api<AlertCall> = Api::namespaced(client.clone(), &ns.name);
    create(
        &calls,
        json!({
            "apiVersion": "alertcall.dev/v1alpha1", "kind": "AlertCall",
            "metadata": {"name": "ampersands"},
            "spec": {
                "policyRef": {"name": "oncall"},
                "summary": "&".repeat(2000),
                "source": {"kind": "Manual"},
            },
        }),
    )
    .await;
    let status = eventually("the page to be acknowledged", || {
        let calls = calls.clone();
        async move {
            let status = calls.get("ampersands").await.ok()?.status?;
            assert!(
                !matches!(status.phase, Phase::Exhausted | Phase::Failed),
                "{status:#?}"
            );
            (status.phase == Phase::Acknowledged).then_some(status)
        }
    })
    .await;
    assert_eq!(status.acknowledged_by.as_deref(), Some("alice"));
    let ledger = sim.ledger();
    let dialed = ledger
        .entries
        .iter()
        .filter(|e| matches!(&e.event, Event::CallCreated { to, .. } if to == ALICE))
        .count();
    assert_eq!(dialed, 1, "{ledger:#?}");
    running.shutdown().await;
    sim.shutdown().await;
    ns.delete().await;
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
        let running = controller::start(client.clone(), config)
            .await
            .unwrap_or_else(|e| panic!("start: {e}"));
        ready(&running).await;
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
