//! Memory of the real `alertcall run` process around hostile Alertmanager payloads: RSS at idle,
//! its peak, and how far it comes back down once two 5,000-alert bodies have been handled (the
//! issue "Paging integrity", item "Memory": within 10 MiB of idle).
//!
//! `cargo bench --bench memory` (or `scripts/bench.sh rss`). Cargo builds the
//! `alertcall` binary in the bench profile (optimized, the global allocator of `src/main.rs`)
//! and this benchmark starts it as a child process against the loopback control plane; without
//! the control plane it prints why it was skipped. `ALERTCALL_BENCH_BIN=/path/to/alertcall`
//! measures another build of the binary instead (or a script that `exec`s it, e.g. with an
//! allocator preloaded: the pid stays the binary's).
//!
//! The numbers are printed, never asserted: RSS depends on the machine, the kernel and the
//! neighbours. Only correctness is checked (the webhook answered 200, the /proc parser).

#[path = "../tests/support/mod.rs"]
mod support;

use std::io::Read;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use alertcall::api::{AlertCall, AlertRoute, CallPolicy};
use alertcall::sources::alertmanager::MAX_BODY_BYTES;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use kube::Client;
use serde_json::{json, Value};

const AC: &str = "AC0123456789abcdef0123456789abcdef";
const TOKEN: &str = "bench-token";
const BEARER: &str = "bench-bearer";
/// Alerts per webhook body: the report (two of them took RSS from 24 MB to 58 MB).
const ALERTS: usize = 5_000;
/// How long RSS is watched after the last payload, and how often it is read.
const SETTLE: Duration = Duration::from_secs(30);
const SAMPLE_EVERY: Duration = Duration::from_secs(5);
/// Bound of every wait on the operator or the control plane.
const WAIT: Duration = Duration::from_secs(60);
const MIB: f64 = 1024.0 * 1024.0;

/// The `kB` value of one field (`VmRSS`, `VmHWM`) of `/proc/<pid>/status`, in bytes.
fn status_field(status: &str, field: &str) -> Option<u64> {
    status.lines().find_map(|line| {
        let (name, rest) = line.split_once(':')?;
        if name != field {
            return None;
        }
        let kib = rest.trim().strip_suffix("kB")?.trim().parse::<u64>().ok()?;
        Some(kib * 1024)
    })
}

/// Resident set size now and at its peak (the kernel's high-water mark), in bytes.
#[derive(Debug, Clone, Copy)]
struct Rss {
    now: u64,
    peak: u64,
}

fn rss(pid: u32) -> Result<Rss, String> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).map_err(|e| format!("reading {path}: {e}"))?;
    match (
        status_field(&status, "VmRSS"),
        status_field(&status, "VmHWM"),
    ) {
        (Some(now), Some(peak)) => Ok(Rss { now, peak }),
        _ => Err(format!("{path} has no VmRSS/VmHWM")),
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / MIB)
}

/// The operator as a child process, killed (and reaped) when dropped, whatever happened.
struct Operator {
    child: Child,
    addr: String,
    log: tempfile::NamedTempFile,
}

impl Operator {
    fn start(bin: &PathBuf, kubeconfig: &std::path::Path, namespace: &str) -> Result<Self, String> {
        // NB: a free port found by binding port 0 and letting go of it; another process could take
        // it in between, and then /readyz times out with the operator's bind error in its log.
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("finding a free port: {e}"))?
            .to_string();
        let log = tempfile::NamedTempFile::new().map_err(|e| format!("log file: {e}"))?;
        let stderr = log.reopen().map_err(|e| format!("log file: {e}"))?;
        // Twilio at the discard port of loopback: dials fail fast (connection refused) and are
        // retried with backoff, so what is measured is the webhook and the pager, not a call.
        let twilio = "http://127.0.0.1:9/";
        let child = Command::new(bin)
            .args(["run", "--namespace", namespace, "--listen", &addr])
            .args([
                "--twilio-api-url",
                twilio,
                "--twilio-serverless-url",
                twilio,
            ])
            .env("KUBECONFIG", kubeconfig)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .map_err(|e| format!("starting {}: {e}", bin.display()))?;
        Ok(Operator { child, addr, log })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The end of the operator's log, to explain a failure.
    fn log_tail(&self) -> String {
        let mut text = String::new();
        if let Ok(mut file) = self.log.reopen() {
            let _ = file.read_to_string(&mut text);
        }
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(10)..].join("\n")
    }

    fn exited(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(Some(status)) => Some(format!("the operator exited ({status})")),
            Ok(None) => None,
            Err(error) => Some(format!("cannot check the operator: {error}")),
        }
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A version-4 body of `ALERTS` firing alerts, all with one `alertname` (the route groups by it,
/// so the body is one page), each with the labels and annotations a real rule carries.
fn payload(batch: usize) -> Vec<u8> {
    let now = Timestamp::now().to_string();
    let alerts: Vec<Value> = (0..ALERTS)
        .map(|i| {
            json!({
                "status": "firing",
                "labels": {
                    "alertname": "BenchMemory", "severity": "critical", "cluster": "bench-1",
                    "namespace": "shop", "service": "checkout", "job": "kubernetes-pods",
                    "pod": format!("checkout-{batch}-{i:05}-7d9f8b6c5d-x2x9q"),
                    "instance": format!("10.{}.{}.{}:8080", batch, i / 256, i % 256),
                },
                "annotations": {
                    "summary": format!("checkout pod {i} of batch {batch} is failing its probes"),
                    "description": "The readiness probe has failed for more than 5 minutes; requests are routed to fewer pods.",
                    "runbook_url": "https://runbooks.example.com/checkout/probe-failures",
                },
                "startsAt": now,
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": format!("http://prometheus:9090/graph?g0.expr=up%7Bpod%3D%22checkout-{i}%22%7D"),
                "fingerprint": format!("{batch:02x}{i:014x}"),
            })
        })
        .collect();
    let body = json!({
        "version": "4", "status": "firing", "receiver": "alertcall",
        "groupKey": "{}:{alertname=\"BenchMemory\"}", "truncatedAlerts": 0,
        "groupLabels": {"alertname": "BenchMemory"},
        "commonLabels": {"alertname": "BenchMemory", "severity": "critical"},
        "commonAnnotations": {}, "externalURL": "http://alertmanager:9093",
        "alerts": alerts,
    });
    serde_json::to_vec(&body).unwrap_or_default()
}

async fn setup(client: &Client, namespace: &str) -> Result<(), String> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    support::try_create(
        &secrets,
        json!({"metadata": {"name": "twilio"}, "stringData": {"accountSid": AC, "authToken": TOKEN}}),
    )
    .await?;
    support::try_create(
        &secrets,
        json!({"metadata": {"name": "am-token"}, "stringData": {"token": BEARER}}),
    )
    .await?;
    support::try_create::<CallPolicy>(
        &Api::namespaced(client.clone(), namespace),
        json!({
            "apiVersion": "alertcall.dev/v1alpha1", "kind": "CallPolicy",
            "metadata": {"name": "oncall"},
            "spec": {
                "twilio": {"credentialsSecretRef": {"name": "twilio"}, "from": "+15005550006"},
                "recipients": [{"name": "alice", "phone": "+15005550101"}],
                "strategy": {"mode": "Sequential", "ringTimeoutSeconds": 10, "rounds": 1},
            }
        }),
    )
    .await?;
    support::try_create::<AlertRoute>(
        &Api::namespaced(client.clone(), namespace),
        json!({
            "apiVersion": "alertcall.dev/v1alpha1", "kind": "AlertRoute",
            "metadata": {"name": "am"},
            "spec": {
                "policyRef": {"name": "oncall"},
                "alertmanager": {"bearerTokenSecretRef": {"name": "am-token", "key": "token"}},
                "grouping": {"groupBy": ["alertname"]},
            },
        }),
    )
    .await?;
    Ok(())
}

/// What one run measured, in bytes.
struct Measured {
    idle: u64,
    peak: u64,
    after: Vec<(Duration, u64)>,
    body_bytes: usize,
    pages: usize,
}

async fn measure(
    client: &Client,
    namespace: &str,
    operator: &mut Operator,
) -> Result<Measured, String> {
    let http = reqwest::Client::builder()
        .timeout(WAIT)
        .build()
        .map_err(|e| e.to_string())?;
    let readyz = format!("http://{}/readyz", operator.addr);
    support::wait_for("the operator's /readyz", WAIT, || {
        let request = http.get(&readyz).send();
        async move { request.await.ok()?.status().is_success().then_some(()) }
    })
    .await?;
    setup(client, namespace).await?;
    let routes: Api<AlertRoute> = Api::namespaced(client.clone(), namespace);
    support::wait_for("the AlertRoute to be observed", WAIT, || {
        let routes = routes.clone();
        async move {
            let route = routes.get("am").await.ok()?;
            let status = route.status.as_ref()?;
            (status.observed_generation == route.metadata.generation
                && !status.conditions.is_empty())
            .then_some(())
        }
    })
    .await?;
    // Idle: caches synced, the route and policy reconciled; a few seconds for start-up work
    // (first reconciles, the failing Twilio checks) to be done.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let idle = rss(operator.pid())?.now;
    println!("  idle: {} (VmRSS)", mib(idle));
    let url = format!("http://{}/alertmanager/{namespace}/am", operator.addr);
    let mut body_bytes = 0;
    for batch in 0..2 {
        let body = payload(batch);
        body_bytes = body.len();
        if body.len() > MAX_BODY_BYTES {
            return Err(format!(
                "the payload is {} bytes, over the webhook's limit of {MAX_BODY_BYTES}",
                body.len()
            ));
        }
        let start = Instant::now();
        let response = http
            .post(&url)
            .bearer_auth(BEARER)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| format!("POST: {e}"))?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        if !status.is_success() {
            return Err(format!("payload {batch}: {status} {text}"));
        }
        let now = rss(operator.pid())?;
        println!(
            "  payload {batch}: {ALERTS} alerts, {:.2} MiB body, {status} after {:.0} ms; VmRSS {}",
            body_bytes as f64 / MIB,
            start.elapsed().as_secs_f64() * 1e3,
            mib(now.now)
        );
    }
    let last = Instant::now();
    let mut after = Vec::new();
    while last.elapsed() < SETTLE {
        tokio::time::sleep(SAMPLE_EVERY).await;
        if let Some(why) = operator.exited() {
            return Err(why);
        }
        let now = rss(operator.pid())?.now;
        println!(
            "    +{:>2.0} s: VmRSS {}",
            last.elapsed().as_secs_f64(),
            mib(now)
        );
        after.push((last.elapsed(), now));
    }
    let peak = rss(operator.pid())?.peak;
    let calls: Api<AlertCall> = Api::namespaced(client.clone(), namespace);
    let pages = calls
        .list(&Default::default())
        .await
        .map_err(|e| e.to_string())?
        .items
        .len();
    Ok(Measured {
        idle,
        peak,
        after,
        body_bytes,
        pages,
    })
}

fn report(allocator: &str, m: &Measured) {
    let after = m.after.last().map_or(0, |(_, rss)| *rss);
    let delta = after as f64 - m.idle as f64;
    println!(
        "  {allocator}: idle {}, peak {} (VmHWM), after {} (+{:.0} s) => after - idle {:+.1} MiB (target: within 10 MiB); {} page(s) for 2 x {ALERTS} alerts of one group, {:.2} MiB each",
        mib(m.idle),
        mib(m.peak),
        mib(after),
        m.after.last().map_or(0.0, |(t, _)| t.as_secs_f64()),
        delta / MIB,
        m.pages,
        m.body_bytes as f64 / MIB,
    );
}

/// The parser is the measuring instrument: check it on a known `/proc/<pid>/status` excerpt
/// before trusting what it reads.
fn check_parser() {
    let sample = "Name:\talertcall\nVmHWM:\t   59904 kB\nVmRSS:\t   24576 kB\nThreads:\t5\n";
    assert_eq!(status_field(sample, "VmRSS"), Some(24576 * 1024));
    assert_eq!(status_field(sample, "VmHWM"), Some(59904 * 1024));
    assert_eq!(status_field(sample, "VmSwap"), None);
    assert_eq!(status_field("VmRSS:\tlots\n", "VmRSS"), None);
}

async fn bench() {
    let bin = std::env::var_os("ALERTCALL_BENCH_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_alertcall")));
    let allocator = if std::env::var_os("ALERTCALL_BENCH_BIN").is_some() {
        "ALERTCALL_BENCH_BIN"
    } else {
        "this build's binary"
    };
    println!(
        "\n== Memory of `alertcall run` (child process {}): 2 x {ALERTS}-alert webhook bodies",
        bin.display()
    );
    // NB: provisioning blocks (it may start the control plane): off the runtime's threads.
    let kubeconfig = match tokio::task::spawn_blocking(support::try_kubeconfig).await {
        Ok(Ok(path)) => path,
        Ok(Err(error)) => {
            let error = format!("the test control plane is not available: {error}");
            println!("  SKIPPED: {}", error.lines().next().unwrap_or(&error));
            return;
        }
        Err(error) => {
            println!("  SKIPPED: {error}");
            return;
        }
    };
    let client = match support::try_client().await {
        Ok(client) => client,
        Err(error) => {
            println!("  SKIPPED: {}", error.lines().next().unwrap_or(&error));
            return;
        }
    };
    let ns = support::TestNamespace::new(&client, "bench-memory").await;
    let result = match Operator::start(&bin, &kubeconfig, &ns.name) {
        Ok(mut operator) => {
            let result = measure(&client, &ns.name, &mut operator).await;
            let result =
                result.map_err(|e| format!("{e}\n  operator log:\n{}", operator.log_tail()));
            drop(operator);
            result
        }
        Err(error) => Err(error),
    };
    ns.delete().await;
    match result {
        Ok(measured) => report(allocator, &measured),
        Err(error) => println!("  FAILED (no numbers): {error}"),
    }
}

fn main() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    check_parser();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("tokio runtime: {e}"));
    runtime.block_on(bench());
}
