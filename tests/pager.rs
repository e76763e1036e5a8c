//! The pager's durability on a real control plane, with the in-process Twilio simulator: a
//! group wait is an AlertCall in phase `Waiting`, so a restart during the wait still dials.

mod support;

use std::time::Duration;

use alertcall::api::{AlertCall, Phase};
use alertcall::controller::{self, Config, Running, TwilioEndpoints};
use alertcall::twilio::sim::{Event as SimEvent, Outcome, Recipient, Script, SimConfig, Simulator};
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Event, Secret};
use kube::api::{Api, ListParams, PostParams};
use kube::Client;
use serde_json::{json, Value};

const AC: &str = "AC0123456789abcdef0123456789abcdef";
const TOKEN: &str = "pager-test-token";
const ALICE: &str = "+15005550101";
/// Long enough to kill and restart the operator inside it, short enough for a test.
const GROUP_WAIT: i64 = 8;

async fn create<K>(api: &Api<K>, object: Value) -> K
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    let object: K = serde_json::from_value(object).unwrap_or_else(|e| panic!("object: {e}"));
    api.create(&PostParams::default(), &object)
        .await
        .unwrap_or_else(|e| panic!("create: {e}"))
}

async fn operator(client: &Client, config: Config) -> Running {
    let running = controller::start(client.clone(), config)
        .await
        .unwrap_or_else(|e| panic!("start: {e}"));
    let url = format!("http://{}/readyz", running.addr);
    support::eventually("the operator to be ready", || {
        let url = url.clone();
        async move {
            let response = reqwest::get(url).await.ok()?;
            response.status().is_success().then_some(())
        }
    })
    .await;
    running
}

async fn pages(client: &Client, namespace: &str) -> Vec<AlertCall> {
    Api::<AlertCall>::namespaced(client.clone(), namespace)
        .list(&ListParams::default())
        .await
        .map(|list| list.items)
        .unwrap_or_default()
}

fn dials(sim: &alertcall::twilio::sim::SimHandle) -> usize {
    sim.ledger()
        .entries
        .iter()
        .filter(|e| matches!(&e.event, SimEvent::CallCreated { direction, .. } if direction.starts_with("outbound")))
        .count()
}

#[tokio::test]
async fn a_group_wait_survives_a_restart_and_dials_when_it_ends() {
    alertcall::telemetry::init();
    let client = support::client().await;
    let ns = support::TestNamespace::new(&client, "pager-wait").await;
    let sim = Simulator::start(SimConfig {
        script: Script::default().with(ALICE, Recipient::with_outcome(Outcome::NoAnswer)),
        time_scale: 20.0,
        calls_per_second: 100.0,
        ..SimConfig::new(AC, TOKEN)
    })
    .await
    .unwrap_or_else(|e| panic!("simulator: {e}"));
    let sim_url = url::Url::parse(&sim.api_url()).ok();
    let config = |identity: &str| Config {
        namespace: Some(ns.name.clone()),
        twilio: TwilioEndpoints {
            api_url: sim_url.clone(),
            serverless_url: sim_url.clone(),
            ..TwilioEndpoints::default()
        },
        poll_interval: Duration::from_millis(500),
        ..Config::local(identity)
    };
    create(
        &Api::<Secret>::namespaced(client.clone(), &ns.name),
        json!({"metadata": {"name": "twilio"}, "stringData": {"accountSid": AC, "authToken": TOKEN}}),
    )
    .await;
    let policies: Api<alertcall::api::CallPolicy> = Api::namespaced(client.clone(), &ns.name);
    create(
        &policies,
        json!({
            "apiVersion": "alertcall.dev/v1alpha1", "kind": "CallPolicy",
            "metadata": {"name": "oncall"},
            "spec": {
                "twilio": {"credentialsSecretRef": {"name": "twilio"}, "from": "+15005550006"},
                "recipients": [{"name": "alice", "phone": ALICE}],
                "strategy": {"mode": "Sequential", "ringTimeoutSeconds": 10, "rounds": 1},
                "message": {"repeat": 1, "language": "en-US"},
                "limits": {"callsPerSecond": 10, "maxCallsPerHour": 0},
            }
        }),
    )
    .await;
    // Stands in for the hosted ack document the CallPolicy reconciler would publish.
    policies
        .patch_status(
            "oncall",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(
                json!({"status": {"twiml": {"urls": {"ack": "http://127.0.0.1:9/ack"}}}}),
            ),
        )
        .await
        .unwrap_or_else(|e| panic!("ack URL: {e}"));
    let first = operator(&client, config("first")).await;
    let routes: Api<alertcall::api::AlertRoute> = Api::namespaced(client.clone(), &ns.name);
    create(
        &routes,
        json!({
            "apiVersion": "alertcall.dev/v1alpha1", "kind": "AlertRoute",
            "metadata": {"name": "waits"},
            "spec": {
                "policyRef": {"name": "oncall"},
                "kubernetesEvents": {"types": ["Warning"], "reasons": ["BackOff"]},
                "grouping": {"groupWaitSeconds": GROUP_WAIT},
            }
        }),
    )
    .await;
    support::eventually("the route to be indexed", || {
        let routes = routes.clone();
        async move {
            let route = routes.get("waits").await.ok()?;
            let status = route.status?;
            (status.observed_generation == route.metadata.generation).then_some(())
        }
    })
    .await;

    let now = Timestamp::now().to_string();
    create(
        &Api::<Event>::namespaced(client.clone(), &ns.name),
        json!({
            "metadata": {"name": "crash", "namespace": ns.name},
            "involvedObject": {"apiVersion": "v1", "kind": "Pod", "name": "api", "namespace": ns.name},
            "type": "Warning", "reason": "BackOff", "message": "Back-off restarting", "count": 1,
            "firstTimestamp": now, "lastTimestamp": now,
            "source": {"component": "pager-test"},
        }),
    )
    .await;
    // The wait is an object, visible at once: phase Waiting until notBefore.
    let waiting = support::eventually("a Waiting page", || async {
        let calls = pages(&client, &ns.name).await;
        calls
            .into_iter()
            .find(|c| c.status.as_ref().is_some_and(|s| s.phase == Phase::Waiting))
    })
    .await;
    let not_before = waiting
        .status
        .as_ref()
        .and_then(|s| s.not_before.clone())
        .unwrap_or_else(|| panic!("no status.notBefore: {waiting:#?}"));
    assert_eq!(waiting.spec.not_before.as_ref(), Some(&not_before));
    assert!(
        Timestamp::now() < not_before.0,
        "the test took longer than the wait"
    );
    assert_eq!(dials(&sim), 0);
    first.kill().await;

    let second = operator(&client, config("second")).await;
    let name = kube::ResourceExt::name_any(&waiting);
    let calls: Api<AlertCall> = Api::namespaced(client.clone(), &ns.name);
    let dialed = support::eventually("the page to dial after its wait", || {
        let (calls, name) = (calls.clone(), name.clone());
        async move {
            let call = calls.get(&name).await.ok()?;
            let status = call.status?;
            (!status.attempts.is_empty()).then_some(status)
        }
    })
    .await;
    let intent = dialed.attempts[0]
        .intent_at
        .clone()
        .unwrap_or_else(|| panic!("no intent time: {dialed:#?}"));
    assert!(
        intent.0 >= not_before.0,
        "dialed at {intent:?}, before {not_before:?}"
    );
    assert_eq!(dialed.attempts[0].recipient, "alice");
    support::eventually("the simulator to see the call", || async {
        (dials(&sim) == 1).then_some(())
    })
    .await;
    // The relisted Event joined the existing page: still one.
    assert_eq!(pages(&client, &ns.name).await.len(), 1);
    second.shutdown().await;
    sim.shutdown().await;
    ns.delete().await;
}
