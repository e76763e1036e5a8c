//! The pager's durability on a real control plane, with the in-process Twilio simulator: a
//! group wait is an AlertCall in phase `Waiting`, so a restart during the wait still dials, and
//! resolves are written on AlertCalls, so a restart does not forget them.

mod support;

use support::create;

use std::time::Duration;

use alertcall::api::{AlertCall, Phase};
use alertcall::operator::{self, Config, Running};
use alertcall::twilio::sim::{
    Event as SimEvent, Outcome, Recipient, Script, SimConfig, SimHandle, Simulator,
};
use alertcall::twilio::TwilioEndpoints;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Event, Secret};
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::Client;
use serde_json::{json, Value};

const AC: &str = "AC0123456789abcdef0123456789abcdef";
const TOKEN: &str = "pager-test-token";
const ALICE: &str = "+15005550101";
/// One operator at a time: the machine is shared, and each test restarts its operator.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Long enough to kill and restart the operator inside it, short enough for a test.
const GROUP_WAIT: i64 = 30;

async fn operator(client: &Client, config: Config) -> Running {
    let running = operator::start(client.clone(), config)
        .await
        .unwrap_or_else(|e| panic!("start: {e}"));
    support::until_ready(running.addr).await;
    running
}

async fn pages(client: &Client, namespace: &str) -> Vec<AlertCall> {
    Api::<AlertCall>::namespaced(client.clone(), namespace)
        .list(&ListParams::default())
        .await
        .map(|list| list.items)
        .unwrap_or_default()
}

/// Polls the page until its status satisfies `done`; on timeout the failure shows the page.
async fn until_status(
    calls: &Api<AlertCall>,
    name: &str,
    what: &str,
    done: impl Fn(&alertcall::api::AlertCallStatus) -> bool,
) -> alertcall::api::AlertCallStatus {
    let found = support::within(support::WAIT, || async {
        let call = calls.get_opt(name).await.ok().flatten()?;
        let status = call.status?;
        done(&status).then_some(status)
    })
    .await;
    match found {
        Some(status) => status,
        None => panic!(
            "timed out waiting for {what}: {:#?}",
            calls.get_opt(name).await.ok().flatten()
        ),
    }
}

fn dials(sim: &alertcall::twilio::sim::SimHandle) -> usize {
    sim.ledger()
        .entries
        .iter()
        .filter(|e| matches!(&e.event, SimEvent::CallCreated { direction, .. } if direction.starts_with("outbound")))
        .count()
}

struct Harness {
    client: Client,
    ns: support::TestNamespace,
    sim: SimHandle,
}

impl Harness {
    /// A namespace with the Twilio Secret and the `oncall` policy (alice never answers).
    async fn new(prefix: &str) -> Harness {
        alertcall::telemetry::init();
        let client = support::client().await;
        let ns = support::TestNamespace::new(&client, prefix).await;
        let sim = Simulator::start(SimConfig {
            script: Script::default().with(ALICE, Recipient::with_outcome(Outcome::NoAnswer)),
            time_scale: 20.0,
            calls_per_second: 100.0,
            ..SimConfig::new(AC, TOKEN)
        })
        .await
        .unwrap_or_else(|e| panic!("simulator: {e}"));
        create(
            &Api::<Secret>::namespaced(client.clone(), &ns.name),
            json!({"metadata": {"name": "twilio"}, "stringData": {"accountSid": AC, "authToken": TOKEN}}),
        )
        .await;
        create(
            &Api::<Secret>::namespaced(client.clone(), &ns.name),
            json!({"metadata": {"name": "am-token"}, "stringData": {"token": "t0ken"}}),
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
                &PatchParams::default(),
                &Patch::Merge(
                    json!({"status": {"twiml": {"urls": {"ack": "http://127.0.0.1:9/ack"}}}}),
                ),
            )
            .await
            .unwrap_or_else(|e| panic!("ack URL: {e}"));
        Harness { client, ns, sim }
    }

    async fn operator(&self, identity: &str) -> Running {
        let sim_url = url::Url::parse(&self.sim.api_url()).ok();
        let config = Config {
            namespace: Some(self.ns.name.clone()),
            twilio: TwilioEndpoints {
                api_url: sim_url.clone(),
                serverless_url: sim_url,
                ..TwilioEndpoints::default()
            },
            poll_interval: Duration::from_millis(500),
            ..Config::local(identity)
        };
        operator(&self.client, config).await
    }

    /// Creates the route and waits until the operator indexed it.
    async fn route(&self, name: &str, mut spec: Value) {
        let routes: Api<alertcall::api::AlertRoute> =
            Api::namespaced(self.client.clone(), &self.ns.name);
        spec["policyRef"] = json!({"name": "oncall"});
        create(
            &routes,
            json!({
                "apiVersion": "alertcall.dev/v1alpha1", "kind": "AlertRoute",
                "metadata": {"name": name}, "spec": spec,
            }),
        )
        .await;
        support::eventually("the route to be indexed", || {
            let routes = routes.clone();
            async move {
                let route = routes.get(name).await.ok()?;
                let status = route.status?;
                (status.observed_generation == route.metadata.generation).then_some(())
            }
        })
        .await;
    }

    async fn pages(&self) -> Vec<AlertCall> {
        pages(&self.client, &self.ns.name).await
    }

    async fn finish(self, running: Running) {
        running.shutdown().await;
        self.sim.shutdown().await;
        self.ns.delete().await;
    }
}

#[tokio::test]
async fn a_group_wait_survives_a_restart_and_dials_when_it_ends() {
    let _serial = SERIAL.lock().await;
    let h = Harness::new("pager-wait").await;
    let first = h.operator("first").await;
    h.route(
        "waits",
        json!({
            "kubernetesEvents": {"types": ["Warning"], "reasons": ["BackOff"]},
            "grouping": {"groupWaitSeconds": GROUP_WAIT},
        }),
    )
    .await;
    let (client, ns) = (&h.client, &h.ns);
    let sim = &h.sim;
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
        let calls = pages(client, &ns.name).await;
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
    assert_eq!(dials(sim), 0);
    first.kill().await;

    let second = h.operator("second").await;
    let name = kube::ResourceExt::name_any(&waiting);
    let calls: Api<AlertCall> = Api::namespaced(client.clone(), &ns.name);
    let dialed = until_status(&calls, &name, "the page to dial after its wait", |s| {
        !s.attempts.is_empty()
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
        (dials(sim) == 1).then_some(())
    })
    .await;
    // The relisted Event joined the existing page: still one.
    assert_eq!(pages(client, &ns.name).await.len(), 1);
    h.finish(second).await;
}

fn alert(status: &str, ends_at: &str) -> Value {
    json!({
        "version": "4", "status": status, "receiver": "alertcall",
        "groupKey": "{}:{alertname=\"DiskFull\"}", "groupLabels": {"alertname": "DiskFull"},
        "commonLabels": {}, "commonAnnotations": {}, "externalURL": "http://alertmanager:9093",
        "truncatedAlerts": 0,
        "alerts": [{
            "status": status,
            "labels": {"alertname": "DiskFull", "severity": "critical", "pod": "db-0"},
            "annotations": {"summary": "disk full"},
            "startsAt": Timestamp::now().to_string(), "endsAt": ends_at,
            "fingerprint": "diskfull-db-0",
        }]
    })
}

async fn post(running: &Running, namespace: &str, body: Value) -> u16 {
    let url = format!("http://{}/alertmanager/{namespace}/disk", running.addr);
    reqwest::Client::new()
        .post(url)
        .bearer_auth("t0ken")
        .json(&body)
        .send()
        .await
        .unwrap_or_else(|e| panic!("POST: {e}"))
        .status()
        .as_u16()
}

#[tokio::test]
async fn a_resolve_during_the_wait_cancels_and_a_restart_remembers_it() {
    let _serial = SERIAL.lock().await;
    let h = Harness::new("pager-resolve").await;
    let first = h.operator("first").await;
    h.route(
        "disk",
        json!({
            "alertmanager": {"bearerTokenSecretRef": {"name": "am-token"}},
            "grouping": {"groupWaitSeconds": 60, "repeatIntervalSeconds": 3600},
        }),
    )
    .await;
    let ns = h.ns.name.clone();
    let never = "0001-01-01T00:00:00Z";
    assert_eq!(post(&first, &ns, alert("firing", never)).await, 200);
    // 200 means the page exists: in its group wait, no call yet.
    let pages = h.pages().await;
    assert_eq!(pages.len(), 1, "{pages:#?}");
    let waited = kube::ResourceExt::name_any(&pages[0]);
    let resolved_at = Timestamp::now().to_string();
    assert_eq!(
        post(&first, &ns, alert("resolved", &resolved_at)).await,
        200
    );
    // 200 means the resolve is written on the page; the controller cancels it.
    let calls: Api<AlertCall> = Api::namespaced(h.client.clone(), &ns);
    let page = calls
        .get(&waited)
        .await
        .unwrap_or_else(|e| panic!("the page: {e}"));
    assert!(page.spec.source.resolved_at.is_some(), "{page:#?}");
    let cancelled = until_status(&calls, &waited, "the waiting page to be cancelled", |s| {
        s.phase == Phase::Cancelled
    })
    .await;
    assert!(cancelled.attempts.is_empty(), "{cancelled:#?}");
    let reason = (cancelled.phase, cancelled.finished_at.clone());
    first.kill().await;

    // A new process knows the resolve only from the AlertCall: firing again is a new group.
    let second = h.operator("second").await;
    assert_eq!(post(&second, &ns, alert("firing", never)).await, 200);
    let pages = h.pages().await;
    let names: Vec<String> = pages.iter().map(kube::ResourceExt::name_any).collect();
    let seen: Vec<_> = pages
        .iter()
        .map(|p| {
            let created = p.metadata.creation_timestamp.clone();
            let resolved = p.spec.source.resolved_at.clone();
            (kube::ResourceExt::name_any(p), created, resolved)
        })
        .collect();
    assert_eq!(pages.len(), 2, "{seen:?} (first: {reason:?})");
    let again = pages
        .iter()
        .find(|p| kube::ResourceExt::name_any(*p) != waited)
        .unwrap_or_else(|| panic!("{names:?}"));
    assert!(
        again.spec.not_before.is_some(),
        "a reopened group waits again"
    );
    assert_eq!(dials(&h.sim), 0);
    h.finish(second).await;
}
