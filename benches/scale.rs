//! Memory of the real `alertcall run` process watching a large cluster (issue 15, "Memory at scale
//! in a real process"): the operator runs cluster-wide against the loopback control plane holding
//! 1,000 CallPolicies, 1,000 AlertRoutes, 10,000 Events and 5,000 labeled Pods over 10
//! namespaces. RSS is read at idle (Ready, everything listed, the Events' pages created), during
//! and after an Event storm of non-matching and duplicate Events, and around the hostile inputs of
//! the integrity work (two 5,000-alert webhook bodies, oversized bodies, with and without a
//! length). Targets: RSS under 40 MiB with that set; back within 10 MiB of idle after the storm.
//!
//! `cargo bench --bench scale` (or `scripts/bench.sh scale`), about 3 minutes. As in
//! `memory.rs`, cargo builds the binary in the bench profile and `ALERTCALL_BENCH_BIN` measures
//! another build; without the control plane it prints why it was skipped. Every namespace of the
//! run is deleted at the end, and namespaces of an earlier run are waited for, since a
//! cluster-wide operator would list them too.
//!
//! Numbers are printed, never asserted. Correctness is: every object was created, the operator
//! stayed alive and Ready, each matching Event paged once (storm duplicates none), the webhook
//! answered 200 to the bodies and 413 to the oversized ones.

#[path = "support/rss.rs"]
mod rss;
#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use alertcall::api::{AlertCall, AlertRoute, CallPolicy};
use alertcall::sources::alertmanager::MAX_BODY_BYTES;
use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Event, Namespace, Pod, Secret, ServiceAccount};
use kube::api::{Api, ListParams};
use kube::{Client, ResourceExt};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use rss::{mib, rss, Operator, AC, BEARER, MIB, TOKEN};

const NAMESPACES: usize = 10;
/// CallPolicies per namespace, and AlertRoutes (route `r-k` pages policy `p-k`).
const ROUTES: usize = 100;
const PODS: usize = 500;
const EVENTS: usize = 1_000;
/// Creates in flight while the cluster is filled.
const IN_FLIGHT: usize = 32;
/// Routes `r-001`..`r-005` of every namespace get one matching Event each: 50 pages.
const PAGED: [usize; 5] = [1, 2, 3, 4, 5];
/// Events with a reason routes select about Pods whose labels they do not: label look-ups, no
/// page.
const NEAR_MISSES: usize = 100;
/// Reason of the Events routes select (with the route's own `ScaleCustom<k>`).
const CRASH: &str = "ScaleCrash";
const STORM_FOR: Duration = Duration::from_secs(20);
/// Storm writers in flight; enough for >= 500 Events/s on loopback when the machine allows.
const STORM_WRITERS: usize = 32;
const ALERTS: usize = 5_000;
/// Oversized webhook bodies sent at once, of each kind (with a length, chunked).
const OVERSIZED: usize = 4;
const AFTER_STORM: Duration = Duration::from_secs(15);
const SETTLE: Duration = Duration::from_secs(30);
const SAMPLE_EVERY: Duration = Duration::from_secs(5);
/// How often a phase's peak is read besides the kernel's own mark.
const PEAK_EVERY: Duration = Duration::from_millis(100);
/// Idle is read this long after everything was listed and paged: start-up work (the first
/// reconciles, the failing Twilio checks) is done by then.
const QUIET: Duration = Duration::from_secs(5);
/// Bound of the waits on the operator's start-up (its lists, 1,000 route statuses) and on the
/// deletion of an earlier run's namespaces.
const START_WAIT: Duration = Duration::from_secs(180);
const WAIT: Duration = Duration::from_secs(60);
const TARGET_RSS: f64 = 40.0 * MIB;
const TARGET_BACK: f64 = 10.0 * MIB;
/// Labels every namespace of a run with its tag, and marks the bench's namespaces.
const RUN_LABEL: &str = "scale.alertcall.dev/run";
const BENCH_LABEL: &str = "scale.alertcall.dev/bench";

/// Labels of pod `j`: 100 apps with 5 pods each; the first pod of each app is `critical`, so
/// a route selecting `app-k, critical` matches `pod-k` alone.
fn pod(j: usize) -> Value {
    json!({
        "metadata": {
            "name": format!("pod-{j:03}"),
            "labels": {
                "app": format!("app-{:02}", j % ROUTES),
                "tier": if j < ROUTES { "critical" } else { "standard" },
                "pod-template-hash": "7d9f8b6c5d",
                "app.kubernetes.io/part-of": "scale-bench",
            },
        },
        "spec": {
            "automountServiceAccountToken": false,
            "containers": [{"name": "app", "image": "registry.example.com/shop/app:1.42.0"}],
        },
    })
}

fn event(
    name: &str,
    namespace: &str,
    type_: &str,
    reason: &str,
    pod: &str,
    message: &str,
) -> Value {
    let at = Timestamp::now().to_string();
    json!({
        "metadata": {"name": name},
        "involvedObject": {
            "apiVersion": "v1", "kind": "Pod", "name": pod, "namespace": namespace,
            "fieldPath": "spec.containers{app}",
        },
        "type": type_, "reason": reason, "message": message, "count": 1,
        "firstTimestamp": at, "lastTimestamp": at,
        "source": {"component": "kubelet", "host": "node-1"},
        "reportingComponent": "kubelet", "reportingInstance": "node-1",
    })
}

/// What a busy cluster says about its Pods; no route selects these reasons.
const NOISE: [(&str, &str, &str); 8] = [
    ("Normal", "Scheduled", "Successfully assigned the pod to node-1"),
    ("Normal", "Pulling", "Pulling image \"registry.example.com/shop/app:1.42.0\""),
    ("Normal", "Pulled", "Container image \"registry.example.com/shop/app:1.42.0\" already present on machine"),
    ("Normal", "Created", "Created container app"),
    ("Normal", "Started", "Started container app"),
    ("Warning", "Unhealthy", "Readiness probe failed: Get \"http://10.0.3.17:8080/ready\": context deadline exceeded (Client.Timeout exceeded while awaiting headers)"),
    ("Warning", "BackOff", "Back-off restarting failed container app in pod"),
    ("Normal", "Killing", "Stopping container app"),
];

/// Event `e` of a namespace: the matching ones first, then near misses, then noise.
fn nth_event(namespace: &str, e: usize) -> Value {
    let name = format!("ev-{e:04}");
    // The first few page routes r-001.., the next hit Pods no route selects.
    let crashing = match PAGED.get(e) {
        Some(k) => Some(*k),
        None => (e < PAGED.len() + NEAR_MISSES).then_some(ROUTES + e),
    };
    if let Some(j) = crashing {
        let pod = format!("pod-{j:03}");
        let message = "Back-off restarting failed container";
        return event(&name, namespace, "Warning", CRASH, &pod, message);
    }
    let (type_, reason, message) = NOISE[e % NOISE.len()];
    event(
        &name,
        namespace,
        type_,
        reason,
        &format!("pod-{:03}", e % PODS),
        message,
    )
}

fn policy(k: usize, tag: &str) -> Value {
    json!({
        "apiVersion": "alertcall.dev/v1alpha1", "kind": "CallPolicy",
        "metadata": {"name": format!("p-{k:03}"), "labels": {RUN_LABEL: tag}},
        "spec": {
            "twilio": {"credentialsSecretRef": {"name": "twilio"}, "from": "+15005550006"},
            "recipients": [
                {"name": "primary", "phone": format!("+1500555{:04}", k)},
                {"name": "secondary", "phone": format!("+1500556{:04}", k)},
            ],
            "strategy": {"mode": "Sequential", "ringTimeoutSeconds": 20, "rounds": 2},
        }
    })
}

/// Route `k` of namespace `n`: every tenth an Alertmanager route, the others select Events by
/// type, reason, kind and the labels of their Pod; some by namespace labels, some with
/// expressions.
fn route(k: usize, n: usize, tag: &str) -> Value {
    let mut spec = json!({"policyRef": {"name": format!("p-{k:03}")}});
    if k.is_multiple_of(10) {
        spec["alertmanager"] = json!({
            "matchers": ["severity=\"critical\"", format!("alertname=\"ScaleAlert{k:03}\"")],
            "bearerTokenSecretRef": {"name": "am-token", "key": "token"},
        });
        spec["grouping"] = json!({"groupBy": ["alertname"]});
    } else {
        let app = format!("app-{k:02}");
        let objects = if k % 10 == 7 {
            json!({"matchExpressions": [
                {"key": "app", "operator": "In", "values": [app]},
                {"key": "tier", "operator": "In", "values": ["critical"]},
            ]})
        } else {
            json!({"matchLabels": {"app": app, "tier": "critical"}})
        };
        let mut events = json!({
            "types": if k % 2 == 1 { json!(["Warning"]) } else { json!([]) },
            "reasons": [CRASH, format!("ScaleCustom{k}")],
            "involvedKinds": ["Pod"],
            "objectSelector": objects,
        });
        if k % 10 == 5 {
            events["namespaceSelector"] = json!({"matchLabels": {"scale.alertcall.dev/team": format!("team-{n}"), RUN_LABEL: tag}});
        }
        spec["kubernetesEvents"] = events;
    }
    json!({
        "apiVersion": "alertcall.dev/v1alpha1", "kind": "AlertRoute",
        "metadata": {"name": format!("r-{k:03}"), "labels": {RUN_LABEL: tag}},
        "spec": spec,
    })
}

/// Creates every object, `IN_FLIGHT` at a time; how many, or the first refusal.
async fn create_all<K>(objects: Vec<(Api<K>, Value)>) -> Result<usize, String>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    let results: Vec<Result<K, String>> = futures::stream::iter(objects)
        .map(|(api, object)| async move { support::try_create(&api, object).await })
        .buffer_unordered(IN_FLIGHT)
        .collect()
        .await;
    let total = results.len();
    match results.into_iter().find_map(Result::err) {
        Some(error) => Err(error),
        None => Ok(total),
    }
}

/// Namespaces of earlier runs: a cluster-wide operator would list what they still hold.
async fn wait_for_earlier_runs(client: &Client) -> Result<(), String> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let earlier = ListParams::default().labels(BENCH_LABEL);
    // An earlier run that stopped before its clean-up left the operator's finalizers behind.
    if let Ok(list) = namespaces.list_metadata(&earlier).await {
        let names: Vec<String> = list.items.iter().map(|ns| ns.name_any()).collect();
        release(client, &names).await;
    }
    let start = Instant::now();
    support::wait_for(
        "namespaces of an earlier run to be deleted",
        START_WAIT,
        || {
            let (namespaces, earlier) = (namespaces.clone(), earlier.clone());
            async move {
                let list = namespaces.list(&earlier).await.ok()?;
                for namespace in list
                    .items
                    .iter()
                    .filter(|ns| ns.metadata.deletion_timestamp.is_none())
                {
                    let _ = namespaces
                        .delete(&namespace.name_any(), &Default::default())
                        .await;
                }
                list.items.is_empty().then_some(())
            }
        },
    )
    .await?;
    if start.elapsed() > Duration::from_secs(1) {
        println!(
            "  waited {:.0} s for the namespaces of an earlier run to be deleted",
            start.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

/// Fills the namespaces; the number of objects created.
async fn populate(client: &Client, namespaces: &[String], tag: &str) -> Result<usize, String> {
    let mut secrets = Vec::new();
    let mut policies = Vec::new();
    let mut routes = Vec::new();
    for (n, ns) in namespaces.iter().enumerate() {
        let api: Api<Secret> = Api::namespaced(client.clone(), ns);
        secrets.push((api.clone(), json!({"metadata": {"name": "twilio"}, "stringData": {"accountSid": AC, "authToken": TOKEN}})));
        secrets.push((
            api,
            json!({"metadata": {"name": "am-token"}, "stringData": {"token": BEARER}}),
        ));
        let api: Api<CallPolicy> = Api::namespaced(client.clone(), ns);
        policies.extend((0..ROUTES).map(|k| (api.clone(), policy(k, tag))));
        let api: Api<AlertRoute> = Api::namespaced(client.clone(), ns);
        routes.extend((0..ROUTES).map(|k| (api.clone(), route(k, n, tag))));
    }
    let mut created = create_all(secrets).await?;
    created += create_all(policies).await?;
    created += create_all(routes).await?;
    // NB: admission refuses Pods until the controller-manager made the `default` ServiceAccount.
    for ns in namespaces {
        let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), ns);
        support::wait_for(&format!("the default ServiceAccount of {ns}"), WAIT, || {
            let accounts = accounts.clone();
            async move { accounts.get_opt("default").await.ok().flatten() }
        })
        .await?;
    }
    let mut pods = Vec::new();
    let mut events = Vec::new();
    for ns in namespaces {
        let api: Api<Pod> = Api::namespaced(client.clone(), ns);
        pods.extend((0..PODS).map(|j| (api.clone(), pod(j))));
        let api: Api<Event> = Api::namespaced(client.clone(), ns);
        events.extend((0..EVENTS).map(|e| (api.clone(), nth_event(ns, e))));
    }
    created += create_all(pods).await?;
    created += create_all(events).await?;
    Ok(created)
}

/// Takes the operator's finalizers off the CallPolicies (Twilio clean-up) and AlertCalls
/// (cancelling calls) of `namespaces`: the operator is gone and Twilio was never reachable, so
/// there is nothing to undo, and without this the namespaces would never finish deleting.
async fn release(client: &Client, namespaces: &[String]) {
    for namespace in namespaces {
        release_kind::<CallPolicy>(client, namespace).await;
        release_kind::<AlertCall>(client, namespace).await;
    }
}

async fn release_kind<K>(client: &Client, namespace: &str)
where
    K: kube::Resource<Scope = kube::core::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    let Ok(list) = api.list_metadata(&ListParams::default()).await else {
        return;
    };
    let release = json!({"metadata": {"finalizers": null}});
    let (api, release) = (&api, &release);
    futures::stream::iter(list.items)
        .filter(|object| std::future::ready(!object.finalizers().is_empty()))
        .for_each_concurrent(IN_FLIGHT, |object| async move {
            let patch = kube::api::Patch::Merge(release);
            let _ = api
                .patch_metadata(&object.name_any(), &Default::default(), &patch)
                .await;
        })
        .await;
}

/// Pages in the run's namespaces.
async fn pages(client: &Client, namespaces: &BTreeSet<String>) -> Result<usize, String> {
    let calls: Api<AlertCall> = Api::all(client.clone());
    let list = calls
        .list(&ListParams::default())
        .await
        .map_err(|e| format!("listing AlertCalls: {e}"))?;
    Ok(list
        .items
        .iter()
        .filter(|call| call.namespace().is_some_and(|ns| namespaces.contains(&ns)))
        .count())
}

/// Routes of the run the operator reports Ready for their current generation.
async fn ready_routes(client: &Client, tag: &str) -> Option<usize> {
    let routes: Api<AlertRoute> = Api::all(client.clone());
    let list = routes
        .list(&ListParams::default().labels(&format!("{RUN_LABEL}={tag}")))
        .await
        .ok()?;
    Some(
        list.items
            .iter()
            .filter(|route| {
                route.status.as_ref().is_some_and(|status| {
                    status.observed_generation == route.metadata.generation
                        && status
                            .conditions
                            .iter()
                            .any(|c| c.type_ == "Ready" && c.status == "True")
                })
            })
            .count(),
    )
}

/// One line of the table.
struct Row {
    phase: String,
    rss: u64,
    peak: u64,
    note: String,
}

/// Keeps a storm of Events running for `STORM_FOR`: three non-matching for each duplicate of
/// the already paged group of `pod-001` in the first namespace. Events created, and how long
/// it took.
async fn storm(client: Client, namespaces: Vec<String>) -> (usize, usize, Duration) {
    let start = Instant::now();
    let (created, refused) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let stop = Arc::new(AtomicBool::new(false));
    let timer = {
        let stop = stop.clone();
        tokio::spawn(async move {
            tokio::time::sleep(STORM_FOR).await;
            stop.store(true, Ordering::Relaxed);
        })
    };
    futures::stream::iter(0..)
        .take_while(|_| std::future::ready(!stop.load(Ordering::Relaxed)))
        .for_each_concurrent(STORM_WRITERS, |i: usize| {
            let (created, refused) = (created.clone(), refused.clone());
            let name = format!("storm-{i:06}");
            let (ns, body) = if i % 4 == 3 {
                let ns = &namespaces[0];
                (
                    ns,
                    event(
                        &name,
                        ns,
                        "Warning",
                        CRASH,
                        "pod-001",
                        "Back-off restarting failed container",
                    ),
                )
            } else {
                let ns = &namespaces[i % namespaces.len()];
                let (type_, reason, message) = NOISE[i % NOISE.len()];
                (
                    ns,
                    event(
                        &name,
                        ns,
                        type_,
                        reason,
                        &format!("pod-{:03}", i % PODS),
                        message,
                    ),
                )
            };
            let events: Api<Event> = Api::namespaced(client.clone(), ns);
            async move {
                match support::try_create(&events, body).await {
                    Ok(_) => created.fetch_add(1, Ordering::Relaxed),
                    Err(_) => refused.fetch_add(1, Ordering::Relaxed),
                };
            }
        })
        .await;
    timer.abort();
    (
        created.load(Ordering::Relaxed),
        refused.load(Ordering::Relaxed),
        start.elapsed(),
    )
}

/// The row of a quiet `span` after a phase: RSS printed every `SAMPLE_EVERY` (the operator must
/// live), and where it ended compared with idle.
async fn settled_row(
    operator: &mut Operator,
    span: Duration,
    phase: &str,
    idle: u64,
) -> Result<Row, String> {
    let pid = operator.pid();
    let watched = Phase::start(pid);
    let start = Instant::now();
    while start.elapsed() < span {
        tokio::time::sleep(SAMPLE_EVERY).await;
        if let Some(why) = operator.exited() {
            return Err(why);
        }
        println!(
            "    {phase} +{:>2.0} s: VmRSS {}",
            start.elapsed().as_secs_f64(),
            mib(rss(pid)?.now)
        );
    }
    let end = watched.end().await?;
    Ok(Row {
        phase: format!("{phase} (+{} s)", span.as_secs()),
        rss: end.now,
        peak: end.peak,
        note: format!("{:+.1} MiB vs idle", (end.now as f64 - idle as f64) / MIB),
    })
}

/// The RSS of one phase: at its end, and its peak: the kernel's high-water mark since the
/// phase began ([`rss::reset_peak`]) or the highest reading every `PEAK_EVERY`, whichever is
/// higher (the kernel records its mark lazily, and a reading can see a peak it has not).
struct Phase {
    pid: u32,
    stop: Arc<AtomicBool>,
    sampler: tokio::task::JoinHandle<u64>,
}

impl Phase {
    fn start(pid: u32) -> Phase {
        rss::reset_peak(pid);
        let stop = Arc::new(AtomicBool::new(false));
        let sampler = tokio::spawn({
            let stop = stop.clone();
            async move {
                let mut highest = 0;
                while !stop.load(Ordering::Relaxed) {
                    if let Ok(now) = rss(pid) {
                        highest = highest.max(now.now);
                    }
                    tokio::time::sleep(PEAK_EVERY).await;
                }
                highest
            }
        });
        Phase { pid, stop, sampler }
    }

    async fn end(self) -> Result<rss::Rss, String> {
        self.stop.store(true, Ordering::Relaxed);
        let sampled = self.sampler.await.map_err(|e| e.to_string())?;
        let now = rss(self.pid)?;
        Ok(rss::Rss {
            now: now.now,
            peak: now.peak.max(sampled),
        })
    }
}

/// Bytes of each oversized body: a MiB over the webhook's limit.
const OVERSIZED_BYTES: usize = MAX_BODY_BYTES + 1024 * 1024;

/// An oversized body, with its length or chunked (then the server must read it to refuse it);
/// the status code of the answer. NB: written by hand, reading while writing: the server
/// answers and closes as soon as it refuses, and a client that first sends the whole body
/// (reqwest) often sees only the closed connection.
async fn oversized(addr: &str, path: &str, chunked: bool) -> Result<u16, String> {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connecting to {addr}: {e}"))?;
    let (mut read, mut write) = stream.into_split();
    let framing = if chunked {
        "Transfer-Encoding: chunked".to_string()
    } else {
        format!("Content-Length: {OVERSIZED_BYTES}")
    };
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {BEARER}\r\nContent-Type: application/json\r\n{framing}\r\n\r\n"
    );
    let sender = tokio::spawn(async move {
        let chunk = vec![b' '; 1024 * 1024];
        let frame = if chunked {
            let mut frame = format!("{:x}\r\n", chunk.len()).into_bytes();
            frame.extend_from_slice(&chunk);
            frame.extend_from_slice(b"\r\n");
            frame
        } else {
            chunk
        };
        if write.write_all(head.as_bytes()).await.is_err() {
            return;
        }
        for _ in 0..OVERSIZED_BYTES / (1024 * 1024) {
            if write.write_all(&frame).await.is_err() {
                return;
            }
        }
        if chunked {
            let _ = write.write_all(b"0\r\n\r\n").await;
        }
    });
    let mut answer = Vec::new();
    let mut buffer = [0u8; 1024];
    let status = tokio::time::timeout(WAIT, async {
        loop {
            let n = read.read(&mut buffer).await.map_err(|e| e.to_string())?;
            if n == 0 {
                return Err("connection closed without an answer".to_string());
            }
            answer.extend_from_slice(&buffer[..n]);
            if let Some(end) = answer.iter().position(|b| *b == b'\n') {
                let line = String::from_utf8_lossy(&answer[..end]);
                return line
                    .split_whitespace()
                    .nth(1)
                    .and_then(|code| code.parse::<u16>().ok())
                    .ok_or_else(|| format!("not an HTTP status line: {line}"));
            }
        }
    })
    .await
    .map_err(|_| "no answer to an oversized body".to_string())?;
    sender.abort();
    status
}

/// The hostile inputs: two 5,000-alert bodies (200), then oversized bodies at once, with a
/// length and chunked (413).
async fn hostile(
    http: &reqwest::Client,
    operator: &Operator,
    namespace: &str,
) -> Result<String, String> {
    let path = format!("/alertmanager/{namespace}/r-000");
    let url = format!("http://{}{path}", operator.addr);
    let mut bytes = 0;
    for batch in 0..2 {
        let body = rss::alertmanager_body("ScaleAlert000", batch, ALERTS);
        bytes = body.len();
        rss::post_alerts(http, &url, body)
            .await
            .map_err(|e| format!("the {ALERTS}-alert body {batch}: {e}"))?;
    }
    let bodies = (0..2 * OVERSIZED).map(|i| oversized(&operator.addr, &path, i % 2 == 1));
    for (i, status) in futures::future::join_all(bodies)
        .await
        .into_iter()
        .enumerate()
    {
        let status = status?;
        if status != 413 {
            let kind = if i % 2 == 1 {
                "chunked"
            } else {
                "with a length"
            };
            return Err(format!(
                "an oversized body {kind} was answered {status}, not 413"
            ));
        }
    }
    Ok(format!(
        "2 x {ALERTS} alerts ({:.1} MiB each): 200; {OVERSIZED} + {OVERSIZED} bodies of {:.0} MiB (length, chunked): 413",
        bytes as f64 / MIB,
        OVERSIZED_BYTES as f64 / MIB
    ))
}

async fn measure(
    client: &Client,
    namespaces: &[String],
    tag: &str,
    operator: &mut Operator,
) -> Result<Measured, String> {
    let started = Instant::now();
    let http = operator.ready(START_WAIT).await?;
    let ready_after = started.elapsed();
    let expected = NAMESPACES * ROUTES;
    // NB: a list of 1,000 routes is no free poll on 2 shared cores: once a second.
    support::wait_for("every AlertRoute to be Ready", START_WAIT, || async move {
        tokio::time::sleep(Duration::from_secs(1)).await;
        (ready_routes(client, tag).await? == expected).then_some(())
    })
    .await?;
    let set: BTreeSet<String> = namespaces.iter().cloned().collect();
    let set = &set;
    let event_pages = NAMESPACES * PAGED.len();
    support::wait_for(
        "the pages of the matching Events",
        START_WAIT,
        || async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            (pages(client, set).await.ok()? >= event_pages).then_some(())
        },
    )
    .await?;
    let listed_after = started.elapsed();
    tokio::time::sleep(QUIET).await;
    if let Some(why) = operator.exited() {
        return Err(why);
    }
    let pid = operator.pid();
    let mut rows = Vec::new();
    let idle = rss(pid)?;
    // NB: VmRSS counts the binary's code pages too (file-backed, shared with the page cache);
    // what the caches hold is anonymous memory.
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let part = |field| rss::status_field(&status, field).map_or("?".to_string(), mib);
    rows.push(Row {
        phase: "idle".into(),
        rss: idle.now,
        peak: idle.peak,
        note: format!(
            "RssAnon {}, RssFile {}; Ready after {:.1} s; {expected} routes Ready, {event_pages} Event pages after {:.1} s; peak = start-up",
            part("RssAnon"),
            part("RssFile"),
            ready_after.as_secs_f64(),
            listed_after.as_secs_f64()
        ),
    });
    println!(
        "  idle: VmRSS {}, start-up peak {}",
        mib(idle.now),
        mib(idle.peak)
    );

    let phase = Phase::start(pid);
    let writers = tokio::spawn(storm(client.clone(), namespaces.to_vec()));
    while !writers.is_finished() {
        tokio::time::sleep(Duration::from_secs(1)).await;
        if let Some(why) = operator.exited() {
            return Err(why);
        }
    }
    let (written, refused, took) = writers.await.map_err(|e| e.to_string())?;
    let rate = written as f64 / took.as_secs_f64();
    let during = phase.end().await?;
    rows.push(Row {
        phase: "storm".into(),
        rss: during.now,
        peak: during.peak,
        note: format!(
            "{written} Events in {:.1} s = {rate:.0}/s, 3 non-matching : 1 duplicate{}{}",
            took.as_secs_f64(),
            if refused > 0 {
                format!(", {refused} refused")
            } else {
                String::new()
            },
            if rate < 500.0 {
                " (BELOW 500/s: the machine could not write faster)"
            } else {
                ""
            },
        ),
    });
    rows.push(settled_row(operator, AFTER_STORM, "after storm", idle.now).await?);

    let phase = Phase::start(pid);
    let what = hostile(&http, operator, &namespaces[0]).await?;
    let hit = phase.end().await?;
    rows.push(Row {
        phase: "hostile inputs".into(),
        rss: hit.now,
        peak: hit.peak,
        note: what,
    });
    rows.push(settled_row(operator, SETTLE, "settled", idle.now).await?);
    if !rss::reset_peak(pid) {
        println!("  (/proc/<pid>/clear_refs refused: peaks are the highest readings every {} ms, and the process's whole life)", PEAK_EVERY.as_millis());
    }

    if let Some(why) = operator.exited() {
        return Err(why);
    }
    let total = pages(client, set).await?;
    Ok(Measured { rows, pages: total })
}

/// What one run measured, and the pages it made (checked once the cluster is cleaned up).
struct Measured {
    rows: Vec<Row>,
    pages: usize,
}

fn report(binary: &str, objects: usize, rows: &[Row]) {
    println!(
        "\n  {binary}, cluster-wide; {objects} objects: {} CallPolicies, {} AlertRoutes ({} Alertmanager), {} Pods, {} Events, over {NAMESPACES} namespaces",
        NAMESPACES * ROUTES,
        NAMESPACES * ROUTES,
        NAMESPACES * ROUTES / 10,
        NAMESPACES * PODS,
        NAMESPACES * EVENTS,
    );
    // NB: the peak of a phase is VmHWM since it began or a reading every 100 ms (see `Phase`).
    println!("  | phase | VmRSS at its end | peak | |");
    println!("  |---|---|---|---|");
    for row in rows {
        println!(
            "  | {} | {} | {} | {} |",
            row.phase,
            mib(row.rss),
            mib(row.peak),
            row.note
        );
    }
    let idle = rows.first().map_or(0, |r| r.rss) as f64;
    let find = |prefix: &str| {
        rows.iter()
            .find(|r| r.phase.starts_with(prefix))
            .map_or(0, |r| r.rss) as f64
    };
    let verdict = |ok: bool| if ok { "met" } else { "NOT met" };
    println!(
        "  target RSS < 40 MiB at idle: {:.1} MiB, {}; highest reading {:.1} MiB",
        idle / MIB,
        verdict(idle < TARGET_RSS),
        rows.iter().map(|r| r.rss).max().unwrap_or(0) as f64 / MIB,
    );
    let back = find("after storm") - idle;
    println!(
        "  target back within 10 MiB of idle after the storm: {:+.1} MiB, {}",
        back / MIB,
        verdict(back <= TARGET_BACK)
    );
    let settled = find("settled") - idle;
    println!(
        "  after the hostile inputs, settled: {:+.1} MiB vs idle, {} (within 10 MiB, the integrity target)",
        settled / MIB,
        verdict(settled <= TARGET_BACK)
    );
}

async fn bench() {
    let title = "Memory at scale of `alertcall run`, cluster-wide";
    let Some(rss::Setup {
        bin,
        binary,
        kubeconfig,
        client,
    }) = rss::begin(title).await
    else {
        return;
    };
    if let Err(error) = wait_for_earlier_runs(&client).await {
        println!("  FAILED (no numbers): {error}");
        return;
    }
    let tag = format!(
        "{:08x}",
        std::process::id() ^ Timestamp::now().subsec_nanosecond() as u32
    );
    let mut namespaces = Vec::with_capacity(NAMESPACES);
    for n in 0..NAMESPACES {
        let team = format!("team-{n}");
        let labels = [
            (BENCH_LABEL, "scale"),
            (RUN_LABEL, tag.as_str()),
            ("scale.alertcall.dev/team", team.as_str()),
            (
                "env",
                if n.is_multiple_of(2) {
                    "prod"
                } else {
                    "staging"
                },
            ),
        ];
        namespaces.push(
            support::TestNamespace::with_labels(&client, &format!("scale-{n}"), &labels).await,
        );
    }
    let names: Vec<String> = namespaces.iter().map(|ns| ns.name.clone()).collect();
    let start = Instant::now();
    let result = match populate(&client, &names, &tag).await {
        Ok(objects) => {
            println!(
                "  created {objects} objects in {:.1} s ({IN_FLIGHT} in flight)",
                start.elapsed().as_secs_f64()
            );
            rss::with_operator(&bin, &kubeconfig, None, async |operator| {
                measure(&client, &names, &tag, operator).await
            })
            .await
            .map(|measured| (objects, measured))
        }
        Err(error) => Err(format!("filling the cluster: {error}")),
    };
    release(&client, &names).await;
    for namespace in namespaces {
        namespace.delete().await;
    }
    match result {
        Ok((objects, measured)) => {
            report(binary, objects, &measured.rows);
            // Correctness: one page per matching Event and one for the webhook's group; the
            // storm's duplicates and the near misses made none.
            assert_eq!(
                measured.pages,
                NAMESPACES * PAGED.len() + 1,
                "pages: one per matching Event ({}) and one Alertmanager group",
                NAMESPACES * PAGED.len()
            );
        }
        Err(error) => println!("  FAILED (no numbers): {error}"),
    }
}

fn main() {
    rss::main(bench());
}
