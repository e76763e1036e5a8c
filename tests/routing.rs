//! Signals to pages on a real control plane, the operator running in-process: Events and
//! Alertmanager alerts become exactly one AlertCall per group; everything else creates none.
//!
//! "Creates none" is proven without sleeping on luck: after the negative signals, a positive
//! control signal is sent and awaited; signals are processed in order, so once the control's
//! AlertCall exists, every earlier signal was decided.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use alertcall::api::{AlertCall, AlertRoute};
use alertcall::operator::{self, Config, Running};
use futures::{stream, StreamExt};
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::{ConfigMap, Event, Pod, ResourceQuota, Secret};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::{json, Value};

/// One operator at a time: the selector test watches every namespace, and the machine is shared.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

use support::{create, eventually};

async fn start(client: &Client, namespace: Option<&str>) -> Running {
    let config = Config {
        namespace: namespace.map(str::to_string),
        ..Config::local("routing-test")
    };
    start_with(client, config).await
}

async fn start_with(client: &Client, config: Config) -> Running {
    let running = operator::start(client.clone(), config)
        .await
        .unwrap_or_else(|e| panic!("start: {e}"));
    support::until_ready(running.addr).await;
    running
}

async fn policy(client: &Client, namespace: &str) {
    let api: Api<alertcall::api::CallPolicy> = Api::namespaced(client.clone(), namespace);
    create(
        &api,
        json!({
            "apiVersion": "alertcall.dev/v1alpha1", "kind": "CallPolicy",
            "metadata": {"name": "oncall", "namespace": namespace},
            "spec": {
                "twilio": {"credentialsSecretRef": {"name": "twilio"}, "from": "+15005550006"},
                "recipients": [{"name": "alice", "phone": "+15005550101"}],
            }
        }),
    )
    .await;
}

/// Creates a route and waits until the operator reports it (so signals can match it).
async fn route(client: &Client, namespace: &str, name: &str, spec: Value) -> AlertRoute {
    let api: Api<AlertRoute> = Api::namespaced(client.clone(), namespace);
    let mut spec = spec;
    if spec.get("policyRef").is_none() {
        spec["policyRef"] = json!({"name": "oncall"});
    }
    create(
        &api,
        json!({
            "apiVersion": "alertcall.dev/v1alpha1", "kind": "AlertRoute",
            "metadata": {"name": name, "namespace": namespace},
            "spec": spec,
        }),
    )
    .await;
    eventually(&format!("AlertRoute {name} status"), || {
        let api = api.clone();
        async move {
            let route = api.get(name).await.ok()?;
            let status = route.status.as_ref()?;
            (status.observed_generation == route.metadata.generation
                && !status.conditions.is_empty())
            .then_some(route)
        }
    })
    .await
}

fn ready(route: &AlertRoute) -> (String, String, String) {
    route
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"))
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
        .unwrap_or_default()
}

async fn pod(client: &Client, namespace: &str, name: &str, tier: &str) {
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"tier": tier}},
        "spec": {
            "automountServiceAccountToken": false,
            "containers": [{"name": "app", "image": "example.invalid/app:1"}],
        }
    }))
    .unwrap_or_else(|e| panic!("pod: {e}"));
    // NB: admission refuses Pods until the controller-manager made the `default` ServiceAccount.
    eventually(&format!("Pod {name} to be created"), || {
        let (api, pod) = (api.clone(), pod.clone());
        async move { api.create(&PostParams::default(), &pod).await.ok() }
    })
    .await;
}

/// What an Event under test differs in.
#[derive(Clone)]
struct Ev {
    name: String,
    type_: &'static str,
    reason: &'static str,
    kind: &'static str,
    object: String,
    count: i32,
    labels: BTreeMap<String, String>,
    message: String,
    at: Timestamp,
}

impl Ev {
    fn new(name: &str, object: &str) -> Self {
        Self {
            name: name.to_string(),
            type_: "Warning",
            reason: "BackOff",
            kind: "Pod",
            object: object.to_string(),
            count: 1,
            labels: BTreeMap::new(),
            message: format!("message of {name}"),
            at: Timestamp::now(),
        }
    }
}

async fn event(client: &Client, namespace: &str, ev: &Ev) -> Event {
    let api: Api<Event> = Api::namespaced(client.clone(), namespace);
    let at = ev.at.to_string();
    create(
        &api,
        json!({
            "metadata": {"name": ev.name, "namespace": namespace, "labels": ev.labels},
            "involvedObject": {
                "apiVersion": "v1", "kind": ev.kind, "name": ev.object, "namespace": namespace,
            },
            "type": ev.type_, "reason": ev.reason, "message": ev.message, "count": ev.count,
            "firstTimestamp": at, "lastTimestamp": at,
            "source": {"component": "routing-test"},
        }),
    )
    .await
}

async fn alert_calls(client: &Client, namespace: &str) -> Vec<AlertCall> {
    let api: Api<AlertCall> = Api::namespaced(client.clone(), namespace);
    api.list(&ListParams::default())
        .await
        .map(|list| list.items)
        .unwrap_or_default()
}

/// Waits for an AlertCall whose summary mentions `needle`, then returns every AlertCall.
async fn until_paged(client: &Client, namespace: &str, needle: &str) -> Vec<AlertCall> {
    eventually(&format!("an AlertCall about {needle:?}"), || async move {
        let calls = alert_calls(client, namespace).await;
        calls
            .iter()
            .any(|c| c.spec.summary.contains(needle))
            .then_some(calls)
    })
    .await
}

const TEMPLATE: &str = "Page: {{ reason }} on {{ kind }} {{ namespace }}/{{ name }}: {{ message }}";

#[tokio::test]
async fn a_critical_pod_pages_once_and_every_selector_filters() {
    let _serial = SERIAL.lock().await;
    alertcall::telemetry::init();
    let client = support::client().await;
    let home = support::TestNamespace::new(&client, "routes").await;
    // NB: `run` keeps namespaces of other runs (a failed one is not deleted) out of this one.
    let run = home.name.as_str();
    let app = support::TestNamespace::with_labels(
        &client,
        "app",
        &[("alerting", "enabled"), ("run", run)],
    )
    .await;
    let quiet = support::TestNamespace::with_labels(
        &client,
        "quiet",
        &[("alerting", "disabled"), ("run", run)],
    )
    .await;
    let running = start(&client, None).await;
    policy(&client, &home.name).await;
    let created = route(
        &client,
        &home.name,
        "critical-pods",
        json!({
            // NB: a reason the shipped examples do not list: this operator watches every
            // namespace, and routes other tests left behind must not match.
            "kubernetesEvents": {
                "types": ["Warning"], "reasons": ["Unhealthy"], "involvedKinds": ["Pod"],
                "namespaceSelector": {"matchLabels": {"alerting": "enabled", "run": run}},
                "objectSelector": {"matchLabels": {"tier": "critical"}},
                "eventSelector": {"matchLabels": {"page": "yes"}},
                "minCount": 2,
            },
            "message": {"template": TEMPLATE},
        }),
    )
    .await;
    assert_eq!(ready(&created).0, "True", "{:?}", ready(&created));
    pod(&client, &app.name, "api", "critical").await;
    pod(&client, &app.name, "batch", "low").await;
    pod(&client, &quiet.name, "api", "critical").await;
    let configs: Api<ConfigMap> = Api::namespaced(client.clone(), &app.name);
    create(
        &configs,
        json!({"metadata": {"name": "settings", "labels": {"tier": "critical"}}}),
    )
    .await;

    let good = |name: &str, object: &str| {
        let mut ev = Ev::new(name, object);
        ev.reason = "Unhealthy";
        ev.count = 2;
        ev.labels.insert("page".into(), "yes".into());
        ev
    };
    let mut negatives = Vec::new();
    let mut e = good("normal", "api");
    e.type_ = "Normal";
    negatives.push((app.name.as_str(), e));
    let mut e = good("pulled", "api");
    e.reason = "Pulled";
    negatives.push((app.name.as_str(), e));
    let mut e = good("configmap", "settings");
    e.kind = "ConfigMap";
    negatives.push((app.name.as_str(), e));
    negatives.push((quiet.name.as_str(), good("quiet-ns", "api")));
    negatives.push((app.name.as_str(), good("low-tier", "batch")));
    let mut e = good("unlabeled", "api");
    e.labels.clear();
    negatives.push((app.name.as_str(), e));
    let mut e = good("once", "api");
    e.count = 1;
    negatives.push((app.name.as_str(), e));
    for (namespace, ev) in &negatives {
        event(&client, namespace, ev).await;
    }
    // The control: the same as the negatives, minus what each got wrong.
    event(&client, &app.name, &good("positive", "api")).await;
    let calls = until_paged(&client, &home.name, "message of positive").await;
    assert_eq!(calls.len(), 1, "{calls:#?}");
    let call = &calls[0];
    assert_eq!(
        call.spec.summary,
        format!(
            "Page: Unhealthy on Pod {}/api: message of positive",
            app.name
        )
    );
    assert_eq!(call.spec.policy_ref.name, "oncall");
    assert_eq!(
        call.spec.route_ref.as_ref().map(|r| r.name.as_str()),
        Some("critical-pods")
    );
    assert_eq!(
        call.spec.group_key,
        format!("{}/Pod/api/Unhealthy", app.name)
    );
    assert_eq!(call.spec.source.count, Some(2));

    let routes: Api<AlertRoute> = Api::namespaced(client.clone(), &home.name);
    let status = eventually("matchedTotal and lastAlertCall", || {
        let routes = routes.clone();
        async move {
            let status = routes.get("critical-pods").await.ok()?.status?;
            // NB: the page's name is counted once its create returned, possibly a batch later.
            (status.matched_total == 1 && status.last_alert_call.is_some()).then_some(status)
        }
    })
    .await;
    assert_eq!(status.last_alert_call, Some(call.name_any()));
    assert!(status.last_matched_at.is_some());

    running.shutdown().await;
    for ns in [home, app, quiet] {
        ns.delete().await;
    }
}

#[tokio::test]
async fn a_storm_of_copies_pages_once_and_only_counts() {
    let _serial = SERIAL.lock().await;
    alertcall::telemetry::init();
    let client = support::client().await;
    let ns = support::TestNamespace::new(&client, "storm").await;
    let running = start(&client, Some(&ns.name)).await;
    policy(&client, &ns.name).await;
    route(
        &client,
        &ns.name,
        "storm",
        json!({
            "kubernetesEvents": {
                "types": ["Warning"], "reasons": ["BackOff"], "involvedKinds": ["Pod"],
                "objectSelector": {"matchLabels": {"tier": "critical"}},
            },
            "message": {"template": TEMPLATE},
        }),
    )
    .await;
    pod(&client, &ns.name, "api", "critical").await;
    pod(&client, &ns.name, "web", "critical").await;
    // Every write to the route and the AlertCalls during the storm, counted from their watches.
    let routes: Api<AlertRoute> = Api::namespaced(client.clone(), &ns.name);
    let route_writes = count_writes(routes.clone());
    let call_writes = count_writes(Api::<AlertCall>::namespaced(client.clone(), &ns.name));

    let copies = 1000;
    let storm_started = std::time::Instant::now();
    let namespace = ns.name.clone();
    stream::iter(0..copies)
        .for_each_concurrent(16, |i| {
            let (client, namespace) = (client.clone(), namespace.clone());
            async move {
                event(&client, &namespace, &Ev::new(&format!("copy-{i}"), "api")).await;
            }
        })
        .await;
    let events: Api<Event> = Api::namespaced(client.clone(), &ns.name);
    let bump = json!({"count": 2, "lastTimestamp": Timestamp::now().to_string()});
    events
        .patch("copy-7", &PatchParams::default(), &Patch::Merge(&bump))
        .await
        .unwrap_or_else(|e| panic!("bumping the count: {e}"));
    event(&client, &ns.name, &Ev::new("control", "web")).await;
    let calls = until_paged(&client, &ns.name, "message of control").await;
    assert_eq!(calls.len(), 2, "{calls:#?}");
    let storm = calls
        .iter()
        .find(|c| c.spec.group_key.ends_with("/Pod/api/BackOff"))
        .unwrap_or_else(|| panic!("no page for the storm: {calls:#?}"));

    // Every copy and the bump were counted on the one page, in a few batched writes.
    let api: Api<AlertCall> = Api::namespaced(client.clone(), &ns.name);
    let name = storm.name_any();
    let counted = eventually("the page to count every copy", || {
        let (api, name) = (api.clone(), name.clone());
        async move {
            let call = api.get(&name).await.ok()?;
            (call.spec.source.count == Some(copies + 1)).then_some(call)
        }
    })
    .await;
    assert!(counted.spec.source.last_seen >= storm.spec.source.last_seen);
    eventually("route counters", || {
        let routes = routes.clone();
        async move {
            let status = routes.get("storm").await.ok()?.status?;
            (status.matched_total == copies + 2 && status.suppressed_total == copies).then_some(())
        }
    })
    .await;
    assert_eq!(alert_calls(&client, &ns.name).await.len(), 2);
    // Counters are written in batches: at most one write per counter interval while the storm
    // lasts (how long depends on the machine), plus the page's own writes; not one per event.
    let (route_writes, call_writes) = (route_writes.abort_count(), call_writes.abort_count());
    let intervals = storm_started.elapsed().as_secs()
        / alertcall::pipeline::pager::COUNTER_INTERVAL
            .as_secs()
            .max(1);
    // NB: 14 held on an idle machine (the creates, the controller's own status writes, a few
    // batches); a loaded one stretches the storm over more intervals.
    let batched = usize::try_from(intervals)
        .unwrap_or(usize::MAX)
        .saturating_add(9)
        .max(14);
    assert!(
        route_writes <= batched,
        "{route_writes} AlertRoute writes, {batched} allowed"
    );
    assert!(
        call_writes <= batched,
        "{call_writes} AlertCall writes, {batched} allowed"
    );
    let metrics = reqwest::get(format!("http://{}/metrics", running.addr))
        .await
        .unwrap_or_else(|e| panic!("metrics: {e}"))
        .text()
        .await
        .unwrap_or_default();
    let labels = format!("{{namespace=\"{}\",route=\"storm\"}}", ns.name);
    assert!(
        metrics.contains(&format!("alertcall_pages_total{labels} 2")),
        "{metrics}"
    );
    assert!(
        metrics.contains(&format!("alertcall_suppressed_total{labels} {copies}")),
        "{metrics}"
    );
    running.shutdown().await;
    ns.delete().await;
}

/// Counts the writes a watch sees (after its initial list) until asked.
struct WriteCounter {
    task: tokio::task::JoinHandle<()>,
    count: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl WriteCounter {
    fn abort_count(self) -> usize {
        self.task.abort();
        self.count.load(std::sync::atomic::Ordering::SeqCst)
    }
}

fn count_writes<K>(api: Api<K>) -> WriteCounter
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
    K::DynamicType: Default,
{
    use kube::runtime::watcher;
    let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = count.clone();
    let task = tokio::spawn(async move {
        let mut events = std::pin::pin!(watcher(api, watcher::Config::default()));
        while let Some(event) = events.next().await {
            if let Ok(watcher::Event::Apply(_)) = event {
                seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        }
    });
    WriteCounter { task, count }
}

#[tokio::test]
async fn restarts_and_old_events_page_nothing_new() {
    let _serial = SERIAL.lock().await;
    alertcall::telemetry::init();
    let client = support::client().await;
    let ns = support::TestNamespace::new(&client, "restart").await;
    policy(&client, &ns.name).await;
    let spec = json!({
        "kubernetesEvents": {"types": ["Warning"], "reasons": ["BackOff"]},
        "message": {"template": TEMPLATE},
    });
    // Old news present before the operator starts comes with its initial list.
    let mut before = Ev::new("old-before-start", "gone-1");
    before.at = Timestamp::now() - SignedDuration::from_mins(10);
    event(&client, &ns.name, &before).await;

    let first = start(&client, Some(&ns.name)).await;
    route(&client, &ns.name, "restart", spec).await;
    event(&client, &ns.name, &Ev::new("fresh", "api")).await;
    let calls = until_paged(&client, &ns.name, "message of fresh").await;
    assert_eq!(calls.len(), 1, "{calls:#?}");
    // Old news arriving through the watch.
    let mut during = Ev::new("old-while-running", "gone-2");
    during.at = Timestamp::now() - SignedDuration::from_mins(6);
    event(&client, &ns.name, &during).await;
    first.shutdown().await;

    // The new process relists every Event: the fresh one's group already paged.
    let second = start(&client, Some(&ns.name)).await;
    event(&client, &ns.name, &Ev::new("control", "web")).await;
    let calls = until_paged(&client, &ns.name, "message of control").await;
    let summaries: Vec<&str> = calls.iter().map(|c| c.spec.summary.as_str()).collect();
    assert_eq!(calls.len(), 2, "{summaries:#?}");
    assert!(summaries.iter().any(|s| s.contains("message of fresh")));
    second.kill().await;
    ns.delete().await;
}

fn payload(alertname: &str, severity: &str, pod: &str) -> Value {
    json!({
        "version": "4", "status": "firing", "receiver": "alertcall",
        "groupKey": format!("{{}}:{{alertname=\"{alertname}\"}}"),
        "groupLabels": {"alertname": alertname}, "commonLabels": {}, "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093", "truncatedAlerts": 0,
        "alerts": [{
            "status": "firing",
            "labels": {"alertname": alertname, "severity": severity, "team": "sre", "pod": pod},
            "annotations": {"summary": format!("{alertname} fired")},
            "startsAt": Timestamp::now().to_string(),
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://prometheus/graph",
            "fingerprint": format!("{alertname}-{pod}"),
        }]
    })
}

#[tokio::test]
async fn alertmanager_pages_once_per_group_with_the_right_token() {
    let _serial = SERIAL.lock().await;
    alertcall::telemetry::init();
    let client = support::client().await;
    let ns = support::TestNamespace::new(&client, "am").await;
    let running = start(&client, Some(&ns.name)).await;
    policy(&client, &ns.name).await;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns.name);
    create(
        &secrets,
        json!({"metadata": {"name": "am-token"}, "stringData": {"token": "s3cret-token"}}),
    )
    .await;
    route(
        &client,
        &ns.name,
        "critical-alerts",
        json!({
            "alertmanager": {
                "matchers": ["severity=\"critical\"", "team=~\"sre|infra\""],
                "bearerTokenSecretRef": {"name": "am-token", "key": "token"},
            },
            "grouping": {"groupBy": ["alertname", "pod"]},
            "message": {"template": "{{ annotations.summary }} on {{ name }}"},
        }),
    )
    .await;
    let http = reqwest::Client::new();
    let base = format!("http://{}/alertmanager/{}", running.addr, ns.name);
    let post = |path: String, token: Option<&'static str>, body: Value| {
        let http = http.clone();
        async move {
            let mut request = http.post(path).json(&body);
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            let started = std::time::Instant::now();
            let response = request.send().await.unwrap_or_else(|e| panic!("POST: {e}"));
            (response.status().as_u16(), started.elapsed())
        }
    };
    let route_url = format!("{base}/critical-alerts");
    let body = payload("KubePodCrashLooping", "critical", "api-1");
    assert_eq!(
        post(route_url.clone(), Some("wrong"), body.clone()).await.0,
        401
    );
    assert_eq!(post(route_url.clone(), None, body.clone()).await.0, 401);
    // An unknown route answers like a wrong token: nothing to learn.
    assert_eq!(
        post(format!("{base}/nope"), Some("s3cret-token"), body.clone())
            .await
            .0,
        401
    );
    let warning = payload("KubePodCrashLooping", "warning", "api-2");
    assert_eq!(
        post(route_url.clone(), Some("s3cret-token"), warning)
            .await
            .0,
        200
    );
    // Three Alertmanager replicas send the same notification at once.
    let replicas = futures::future::join_all(
        (0..3).map(|_| post(route_url.clone(), Some("s3cret-token"), body.clone())),
    )
    .await;
    for (status, elapsed) in &replicas {
        assert_eq!(*status, 200);
        assert!(*elapsed < Duration::from_secs(1), "answered in {elapsed:?}");
    }
    let control = payload("Control", "critical", "api-3");
    assert_eq!(post(route_url, Some("s3cret-token"), control).await.0, 200);
    let calls = until_paged(&client, &ns.name, "Control fired").await;
    let summaries: Vec<&str> = calls.iter().map(|c| c.spec.summary.as_str()).collect();
    assert_eq!(calls.len(), 2, "{summaries:#?}");
    assert!(
        summaries.contains(&"KubePodCrashLooping fired on api-1"),
        "{summaries:#?}"
    );

    // Resolved closes the repeat window: the same alert firing again pages again.
    let mut resolved = body.clone();
    resolved["status"] = json!("resolved");
    resolved["alerts"][0]["status"] = json!("resolved");
    resolved["alerts"][0]["endsAt"] = json!(Timestamp::now().to_string());
    let url = format!("{base}/critical-alerts");
    assert_eq!(
        post(url.clone(), Some("s3cret-token"), resolved).await.0,
        200
    );
    assert_eq!(post(url, Some("s3cret-token"), body).await.0, 200);
    eventually("a second page after the resolve", || async {
        let calls = alert_calls(&client, &ns.name).await;
        let again = calls
            .iter()
            .filter(|c| c.spec.summary == "KubePodCrashLooping fired on api-1")
            .count();
        (again == 2).then_some(())
    })
    .await;
    running.shutdown().await;
    ns.delete().await;
}

#[tokio::test]
async fn invalid_matchers_and_templates_show_on_the_route() {
    let _serial = SERIAL.lock().await;
    alertcall::telemetry::init();
    let client = support::client().await;
    let ns = support::TestNamespace::new(&client, "invalid").await;
    let running = start(&client, Some(&ns.name)).await;
    policy(&client, &ns.name).await;
    let bad = route(
        &client,
        &ns.name,
        "bad-matcher",
        json!({
            "alertmanager": {
                "matchers": ["severity=\"critical\"", "team=~\"(\""],
                "bearerTokenSecretRef": {"name": "am-token"},
            },
        }),
    )
    .await;
    let (status, reason, message) = ready(&bad);
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("False", "InvalidMatcher")
    );
    assert!(
        message.contains("spec.alertmanager.matchers[1]") && message.contains("invalid regex"),
        "{message}"
    );
    // A template that does not render: not Ready, and the page still goes out, in plain words.
    let broken = route(
        &client,
        &ns.name,
        "broken-template",
        json!({
            "kubernetesEvents": {"types": ["Warning"], "reasons": ["OOMKilling"]},
            "message": {"template": "{{ reason | no_such_filter }}"},
        }),
    )
    .await;
    assert_eq!(
        (ready(&broken).0.as_str(), ready(&broken).1.as_str()),
        ("False", "TemplateError")
    );
    let mut ev = Ev::new("oom", "api");
    ev.reason = "OOMKilling";
    event(&client, &ns.name, &ev).await;
    let calls = until_paged(&client, &ns.name, "message of oom").await;
    assert_eq!(
        calls[0].spec.summary,
        format!("Alert. OOMKilling. Pod {}/api. message of oom", ns.name)
    );
    running.shutdown().await;
    ns.delete().await;
}

#[tokio::test]
async fn group_wait_is_carried_by_the_page_and_suspended_routes_stay_silent() {
    let _serial = SERIAL.lock().await;
    alertcall::telemetry::init();
    let client = support::client().await;
    let ns = support::TestNamespace::new(&client, "wait").await;
    let running = start(&client, Some(&ns.name)).await;
    policy(&client, &ns.name).await;
    let events = |reason: &str| json!({"types": ["Warning"], "reasons": [reason]});
    route(
        &client,
        &ns.name,
        "waiting",
        json!({
            "kubernetesEvents": events("Slow"),
            "grouping": {"groupWaitSeconds": 2},
            "message": {"template": TEMPLATE},
        }),
    )
    .await;
    let suspended = route(
        &client,
        &ns.name,
        "suspended",
        json!({"kubernetesEvents": events("Muted"), "suspend": true, "message": {"template": TEMPLATE}}),
    )
    .await;
    assert_eq!(ready(&suspended).1, "Suspended");
    route(
        &client,
        &ns.name,
        "control",
        json!({"kubernetesEvents": events("Control"), "message": {"template": TEMPLATE}}),
    )
    .await;

    let mut muted = Ev::new("muted", "api");
    muted.reason = "Muted";
    event(&client, &ns.name, &muted).await;
    let mut slow = Ev::new("slow", "api");
    slow.reason = "Slow";
    let sent = Timestamp::now();
    event(&client, &ns.name, &slow).await;
    // The page exists at once, carrying the wait: no call before it ends.
    let calls = until_paged(&client, &ns.name, "message of slow").await;
    let waited = calls
        .iter()
        .find(|c| c.spec.summary.contains("message of slow"))
        .and_then(|c| c.spec.not_before.as_ref())
        .map(|t| t.0)
        .unwrap_or_else(|| panic!("no spec.notBefore: {calls:#?}"));
    let wait = SignedDuration::from_secs(2);
    assert!(waited >= sent + wait, "not before {waited}, sent {sent}");
    // Whole seconds, rounded up.
    let slack = SignedDuration::from_secs(1);
    assert!(
        waited <= Timestamp::now() + wait + slack,
        "not before {waited}"
    );

    let mut control = Ev::new("control", "web");
    control.reason = "Control";
    event(&client, &ns.name, &control).await;
    let calls = until_paged(&client, &ns.name, "message of control").await;
    let summaries: Vec<&str> = calls.iter().map(|c| c.spec.summary.as_str()).collect();
    assert_eq!(calls.len(), 2, "{summaries:#?}");
    running.shutdown().await;
    ns.delete().await;
}

#[tokio::test]
async fn time_windows_mute_or_let_through_and_quiet_hours_hold_pages_that_are_not_urgent() {
    let _serial = SERIAL.lock().await;
    alertcall::telemetry::init();
    let client = support::client().await;
    let ns = support::TestNamespace::new(&client, "windows").await;
    let running = start(&client, Some(&ns.name)).await;
    policy(&client, &ns.name).await;
    // Quiet today and tomorrow (UTC): they end at the start of the day after, whenever in
    // those two days the page is decided.
    let today = Timestamp::now().to_zoned(jiff::tz::TimeZone::UTC).date();
    let day = |date: jiff::civil::Date| date.strftime("%A").to_string().to_lowercase();
    let tomorrow = today.tomorrow().unwrap_or(today);
    let quiet_end = tomorrow
        .tomorrow()
        .unwrap_or(tomorrow)
        .to_zoned(jiff::tz::TimeZone::UTC)
        .map(|z| z.timestamp())
        .unwrap_or_else(|e| panic!("end of quiet hours: {e}"));
    let policies: Api<alertcall::api::CallPolicy> = Api::namespaced(client.clone(), &ns.name);
    create(
        &policies,
        json!({
            "apiVersion": "alertcall.dev/v1alpha1", "kind": "CallPolicy",
            "metadata": {"name": "quiet", "namespace": ns.name},
            "spec": {
                "twilio": {"credentialsSecretRef": {"name": "twilio"}, "from": "+15005550006"},
                "recipients": [{"name": "alice", "phone": "+15005550101"}],
                "quietHours": [{"weekdays": [format!("{}:{}", day(today), day(tomorrow))]}],
            }
        }),
    )
    .await;
    let events = |reason: &str| json!({"types": ["Warning"], "reasons": [reason]});
    let always = json!([{}]);
    let never = json!([{"years": ["2000"]}]);
    for (name, reason, extra) in [
        ("muted", "Muted", json!({"muteTimeIntervals": always})),
        ("outside", "Outside", json!({"activeTimeIntervals": never})),
        ("inside", "Inside", json!({"activeTimeIntervals": always})),
        ("quiet", "Quiet", json!({"policyRef": {"name": "quiet"}})),
        (
            "urgent",
            "Urgent",
            json!({"policyRef": {"name": "quiet"}, "urgent": true}),
        ),
        ("control", "Control", json!({})),
    ] {
        let mut spec =
            json!({"kubernetesEvents": events(reason), "message": {"template": TEMPLATE}});
        if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
            spec.extend(extra.clone());
        }
        let created = route(&client, &ns.name, name, spec).await;
        assert_eq!(ready(&created).0, "True", "{name}: {:?}", ready(&created));
    }
    for reason in ["Muted", "Outside", "Inside", "Quiet", "Urgent", "Control"] {
        let mut ev = Ev::new(&reason.to_lowercase(), "api");
        ev.reason = reason;
        event(&client, &ns.name, &ev).await;
    }
    // Signals are decided in order: once the control paged, every other one was decided.
    let calls = until_paged(&client, &ns.name, "message of control").await;
    let paged = |needle: &str| {
        calls
            .iter()
            .find(|c| c.spec.summary.contains(&format!("message of {needle}")))
            .map(|c| c.spec.not_before.as_ref().map(|t| t.0))
    };
    assert_eq!(paged("muted"), None, "a muted route paged");
    assert_eq!(
        paged("outside"),
        None,
        "a route outside its active window paged"
    );
    assert_eq!(paged("inside"), Some(None));
    assert_eq!(paged("urgent"), Some(None), "an urgent route waited");
    assert_eq!(paged("quiet"), Some(Some(quiet_end)));
    assert_eq!(calls.len(), 4, "{calls:#?}");
    let routes: Api<AlertRoute> = Api::namespaced(client.clone(), &ns.name);
    for name in ["muted", "outside"] {
        eventually(&format!("{name} counts its signal as suppressed"), || {
            let routes = routes.clone();
            async move {
                let status = routes.get(name).await.ok()?.status?;
                (status.suppressed_total == 1 && status.last_alert_call.is_none()).then_some(())
            }
        })
        .await;
    }
    running.shutdown().await;
    ns.delete().await;
}

/// Sends a beat Event (reason `Beat`) every second until `stop` is set.
fn beat_every_second(
    client: &Client,
    namespace: &str,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> tokio::task::JoinHandle<u32> {
    let (client, namespace) = (client.clone(), namespace.to_string());
    tokio::spawn(async move {
        let mut sent = 0;
        while !stop.load(std::sync::atomic::Ordering::SeqCst) {
            let mut beat = Ev::new(&format!("beat-{sent}"), "watchdog");
            beat.reason = "Beat";
            event(&client, &namespace, &beat).await;
            sent += 1;
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        sent
    })
}

#[tokio::test]
async fn a_silent_heartbeat_route_pages_once_and_a_beating_one_never_across_a_restart() {
    let _serial = SERIAL.lock().await;
    alertcall::telemetry::init();
    let client = support::client().await;
    let ns = support::TestNamespace::new(&client, "heartbeat").await;
    let running = start(&client, Some(&ns.name)).await;
    policy(&client, &ns.name).await;
    let heartbeat = |reason: &str, seconds: u32| {
        json!({
            "kubernetesEvents": {"types": ["Warning"], "reasons": [reason]},
            "heartbeat": {"intervalSeconds": seconds},
        })
    };
    // NB: ten times the beat period, so a slow watch delivery is no silence.
    route(&client, &ns.name, "beating", heartbeat("Beat", 10)).await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let beats = beat_every_second(&client, &ns.name, stop.clone());
    let started = Timestamp::now();
    route(&client, &ns.name, "silent", heartbeat("Silent", 2)).await;
    let silence = |route: &str| {
        format!(
            "No heartbeat from AlertRoute {}/{route} for 2 seconds.",
            ns.name
        )
    };
    until_paged(&client, &ns.name, &silence("silent")).await;

    running.shutdown().await;
    let running = start(&client, Some(&ns.name)).await;
    route(&client, &ns.name, "control", heartbeat("Control", 2)).await;
    until_paged(&client, &ns.name, &silence("control")).await;
    // The beating route has been watched for over two of its intervals, across the restart.
    let routes: Api<AlertRoute> = Api::namespaced(client.clone(), &ns.name);
    eventually("two intervals of beats", || async {
        (Timestamp::now().duration_since(started) > SignedDuration::from_secs(21)).then_some(())
    })
    .await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let sent = beats.await.unwrap_or_default();
    let last_beat = eventually("the last beat on the status", || {
        let routes = routes.clone();
        async move {
            let status = routes.get("beating").await.ok()?.status?;
            status.last_beat_at.filter(|t| t.0 > started).map(|t| t.0)
        }
    })
    .await;
    assert!(sent >= 20, "only {sent} beats sent");
    assert!(last_beat >= started, "{last_beat}");

    let summaries: Vec<String> = alert_calls(&client, &ns.name)
        .await
        .into_iter()
        .map(|c| c.spec.summary)
        .collect();
    assert_eq!(
        summaries.iter().filter(|s| s.contains("/silent")).count(),
        1,
        "{summaries:#?}"
    );
    assert_eq!(summaries.len(), 2, "{summaries:#?}");
    running.shutdown().await;
    ns.delete().await;
}

#[tokio::test]
async fn the_leader_pages_events_any_replica_takes_alerts_and_a_successor_takes_over() {
    let _serial = SERIAL.lock().await;
    alertcall::telemetry::init();
    let client = support::client().await;
    let ns = support::TestNamespace::new(&client, "leader-pages").await;
    let config = |identity: &str| Config {
        namespace: Some(ns.name.clone()),
        leader_election: Some(alertcall::leader::LeaseConfig {
            namespace: ns.name.clone(),
            name: "alertcall-leader".into(),
            identity: identity.into(),
            duration: Duration::from_secs(2),
            renew: Duration::from_secs(1),
        }),
        ..Config::local(identity)
    };
    let a = start_with(&client, config("replica-a")).await;
    let b = start_with(&client, config("replica-b")).await;
    eventually("a leader", || {
        let (a, b) = (a.context.leader.is_leader(), b.context.leader.is_leader());
        async move { (a || b).then_some(()) }
    })
    .await;
    let (leader, follower) = if a.context.leader.is_leader() {
        (a, b)
    } else {
        (b, a)
    };
    policy(&client, &ns.name).await;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns.name);
    create(
        &secrets,
        json!({"metadata": {"name": "am-token"}, "stringData": {"token": "t0ken"}}),
    )
    .await;
    route(
        &client,
        &ns.name,
        "both",
        json!({
            "kubernetesEvents": {"types": ["Warning"], "reasons": ["BackOff"]},
            "alertmanager": {"bearerTokenSecretRef": {"name": "am-token"}},
            "message": {"template": TEMPLATE},
        }),
    )
    .await;
    event(&client, &ns.name, &Ev::new("first", "api")).await;
    let calls = until_paged(&client, &ns.name, "message of first").await;
    assert_eq!(calls.len(), 1, "both replicas saw the Event; one page");
    // Any replica takes alerts: the follower creates the page (the leader dials it), and 200
    // means the AlertCall exists.
    let post = |addr: std::net::SocketAddr, body: Value| {
        let url = format!("http://{addr}/alertmanager/{}/both", ns.name);
        async move {
            let response = reqwest::Client::new()
                .post(url)
                .bearer_auth("t0ken")
                .json(&body)
                .send()
                .await
                .unwrap_or_else(|e| panic!("POST: {e}"));
            response.status().as_u16()
        }
    };
    let alert_pages = || async {
        let calls = alert_calls(&client, &ns.name).await;
        calls
            .iter()
            .filter(|c| c.spec.source.kind == alertcall::api::SourceKind::Alertmanager)
            .map(|c| c.name_any())
            .collect::<Vec<_>>()
    };
    let to_follower = post(follower.addr, payload("Anything", "critical", "api")).await;
    assert_eq!(to_follower, 200);
    assert_eq!(alert_pages().await.len(), 1);
    // The same alert posted to both replicas at once (two Alertmanagers): one page.
    let both = payload("Both", "critical", "api");
    let answers = futures::future::join(
        post(follower.addr, both.clone()),
        post(leader.addr, both.clone()),
    )
    .await;
    assert_eq!(answers, (200, 200));
    let pages = alert_pages().await;
    assert_eq!(pages.len(), 2, "{pages:?}");

    leader.kill().await;
    let state = follower.context.leader.clone();
    eventually("the follower to lead", || {
        let leading = state.is_leader();
        async move { leading.then_some(()) }
    })
    .await;
    event(&client, &ns.name, &Ev::new("second", "web")).await;
    let calls = until_paged(&client, &ns.name, "message of second").await;
    assert_eq!(calls.len(), 4, "{calls:#?}");
    follower.shutdown().await;
    ns.delete().await;
}

#[tokio::test]
async fn the_webhook_answers_success_only_once_the_page_exists() {
    let _serial = SERIAL.lock().await;
    alertcall::telemetry::init();
    let client = support::client().await;
    let ns = support::TestNamespace::new(&client, "am-quota").await;
    // The API server refuses every AlertCall in this namespace, as a full quota would.
    let quotas: Api<ResourceQuota> = Api::namespaced(client.clone(), &ns.name);
    create(
        &quotas,
        json!({
            "metadata": {"name": "no-pages"},
            "spec": {"hard": {"count/alertcalls.alertcall.dev": "0"}},
        }),
    )
    .await;
    let running = start(&client, Some(&ns.name)).await;
    policy(&client, &ns.name).await;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns.name);
    create(
        &secrets,
        json!({"metadata": {"name": "am-token"}, "stringData": {"token": "t0ken"}}),
    )
    .await;
    route(
        &client,
        &ns.name,
        "quota",
        json!({
            "alertmanager": {"bearerTokenSecretRef": {"name": "am-token"}},
            "message": {"template": "{{ annotations.summary }}"},
        }),
    )
    .await;
    let url = format!("http://{}/alertmanager/{}/quota", running.addr, ns.name);
    let post = || {
        let url = url.clone();
        async move {
            let response = reqwest::Client::new()
                .post(url)
                .bearer_auth("t0ken")
                .json(&payload("Refused", "critical", "api"))
                .send()
                .await
                .unwrap_or_else(|e| panic!("POST: {e}"));
            let status = response.status().as_u16();
            let retry_after = response.headers().get("retry-after").cloned();
            let body: Value = response.json().await.unwrap_or_default();
            (status, retry_after, body)
        }
    };
    let (status, retry_after, body) = post().await;
    assert_eq!(status, 503, "{body}");
    assert!(retry_after.is_some());
    let error = body["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("cannot create AlertCall") && error.contains("quota"),
        "{body}"
    );
    assert!(alert_calls(&client, &ns.name).await.is_empty());

    quotas
        .delete("no-pages", &Default::default())
        .await
        .unwrap_or_else(|e| panic!("deleting the quota: {e}"));
    // Alertmanager retries until the answer is a success; by then the page exists.
    eventually("the webhook to succeed without the quota", || async {
        (post().await.0 == 200).then_some(())
    })
    .await;
    let calls = alert_calls(&client, &ns.name).await;
    assert_eq!(calls.len(), 1, "{calls:#?}");
    assert_eq!(calls[0].spec.summary, "Refused fired");
    running.shutdown().await;
    ns.delete().await;
}
