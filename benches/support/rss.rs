//! What the RSS benchmarks (`memory.rs`, `scale.rs`) share: the real `alertcall run` binary as a
//! child process, the `/proc/<pid>/status` reader that measures it, and the hostile
//! Alertmanager body of the integrity work.
//!
//! NB: kept under `benches/support/`, not beside the benchmarks: cargo makes every
//! `benches/*.rs` a benchmark target of its own.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use jiff::Timestamp;
use serde_json::{json, Value};

pub const MIB: f64 = 1024.0 * 1024.0;
/// The Twilio account of the benchmarks' `twilio` Secret (Twilio itself is never reached).
pub const AC: &str = "AC0123456789abcdef0123456789abcdef";
pub const TOKEN: &str = "bench-token";
/// The Alertmanager bearer token of the benchmarks' `am-token` Secret.
pub const BEARER: &str = "bench-bearer";

/// The `kB` value of one field (`VmRSS`, `VmHWM`) of `/proc/<pid>/status`, in bytes.
pub fn status_field(status: &str, field: &str) -> Option<u64> {
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
pub struct Rss {
    pub now: u64,
    pub peak: u64,
}

pub fn rss(pid: u32) -> Result<Rss, String> {
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

/// Starts a new high-water mark at the current RSS (`5` to `/proc/<pid>/clear_refs`, Linux 4.0
/// and later), so `VmHWM` reads as the peak of one phase. False where the kernel or the
/// permissions refuse: the peak then stays the process's whole life.
#[allow(dead_code)] // memory.rs reports the lifetime peak only
pub fn reset_peak(pid: u32) -> bool {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok()
}

pub fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / MIB)
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

/// The binary measured: this build's (cargo builds it in the bench profile, with the global
/// allocator of `src/main.rs`), or `ALERTCALL_BENCH_BIN` (another build, or a script that
/// `exec`s it, e.g. with an allocator preloaded: the pid stays the binary's). The second value
/// names it in the report.
fn binary() -> (PathBuf, &'static str) {
    match std::env::var_os("ALERTCALL_BENCH_BIN") {
        Some(path) => (PathBuf::from(path), "ALERTCALL_BENCH_BIN"),
        None => (
            PathBuf::from(env!("CARGO_BIN_EXE_alertcall")),
            "this build's binary",
        ),
    }
}

/// What a benchmark runs with: the binary measured (see [`binary`]) and the control plane.
pub struct Setup {
    pub bin: PathBuf,
    pub binary: &'static str,
    pub kubeconfig: PathBuf,
    pub client: kube::Client,
}

/// Prints the benchmark's title and the binary; the control plane's kubeconfig and a client
/// of it, or `None` once it said why the benchmark is skipped.
pub async fn begin(title: &str) -> Option<Setup> {
    let (bin, binary) = binary();
    println!("\n== {title} (child process {})", bin.display());
    let skipped = |error: &str| println!("  SKIPPED: {}", error.lines().next().unwrap_or(error));
    // NB: provisioning blocks (it may start the control plane): off the runtime's threads.
    let kubeconfig = match tokio::task::spawn_blocking(crate::support::try_kubeconfig).await {
        Ok(Ok(path)) => path,
        Ok(Err(error)) => {
            skipped(&format!("the test control plane is not available: {error}"));
            return None;
        }
        Err(error) => {
            skipped(&error.to_string());
            return None;
        }
    };
    match crate::support::try_client().await {
        Ok(client) => Some(Setup {
            bin,
            binary,
            kubeconfig,
            client,
        }),
        Err(error) => {
            skipped(&error);
            None
        }
    }
}

/// Runs `measure` on the operator started as [`Operator::start`] does; a failure carries the
/// end of the operator's log. The operator is stopped before this returns.
pub async fn with_operator<T>(
    bin: &Path,
    kubeconfig: &Path,
    namespace: Option<&str>,
    measure: impl AsyncFnOnce(&mut Operator) -> Result<T, String>,
) -> Result<T, String> {
    let mut operator = Operator::start(bin, kubeconfig, namespace)?;
    let result = measure(&mut operator).await;
    result.map_err(|e| format!("{e}\n  operator log:\n{}", operator.log_tail()))
}

/// A benchmark's `main`: the TLS provider, the check of the instrument, a runtime of two
/// workers (the machine's cores) for `bench`.
pub fn main(bench: impl std::future::Future<Output = ()>) {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    check_parser();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("tokio runtime: {e}"));
    runtime.block_on(bench);
}

/// The operator as a child process, killed (and reaped) when dropped, whatever happened.
pub struct Operator {
    child: Child,
    pub addr: String,
    log: tempfile::NamedTempFile,
}

impl Operator {
    /// `alertcall run` watching `namespace`, or the whole cluster with `None`.
    pub fn start(bin: &Path, kubeconfig: &Path, namespace: Option<&str>) -> Result<Self, String> {
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
        let mut command = Command::new(bin);
        command.args(["run", "--listen", &addr]);
        if let Some(namespace) = namespace {
            command.args(["--namespace", namespace]);
        }
        let child = command
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

    /// A client of the operator's endpoints (requests time out after `limit`), once it answers
    /// `/readyz` with 200 (within `limit`).
    pub async fn ready(&self, limit: std::time::Duration) -> Result<reqwest::Client, String> {
        let http = reqwest::Client::builder()
            .timeout(limit)
            .build()
            .map_err(|e| e.to_string())?;
        let readyz = format!("http://{}/readyz", self.addr);
        crate::support::wait_for("the operator's /readyz", limit, || {
            let request = http.get(&readyz).send();
            async move { request.await.ok()?.status().is_success().then_some(()) }
        })
        .await?;
        Ok(http)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The end of the operator's log, to explain a failure.
    pub fn log_tail(&self) -> String {
        let mut text = String::new();
        if let Ok(mut file) = self.log.reopen() {
            let _ = file.read_to_string(&mut text);
        }
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(10)..].join("\n")
    }

    pub fn exited(&mut self) -> Option<String> {
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

/// A version-4 body of `alerts` firing alerts, all with the one `alertname` (routes group by
/// it, so the body is one page), each with the labels and annotations a real rule carries: the
/// issue "Paging integrity" reported two 5,000-alert bodies taking RSS from 24 MB to 58 MB.
pub fn alertmanager_body(alertname: &str, batch: usize, alerts: usize) -> Vec<u8> {
    let now = Timestamp::now().to_string();
    let alerts: Vec<Value> = (0..alerts)
        .map(|i| {
            json!({
                "status": "firing",
                "labels": {
                    "alertname": alertname, "severity": "critical", "cluster": "bench-1",
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
        "groupKey": format!("{{}}:{{alertname=\"{alertname}\"}}"), "truncatedAlerts": 0,
        "groupLabels": {"alertname": alertname},
        "commonLabels": {"alertname": alertname, "severity": "critical"},
        "commonAnnotations": {}, "externalURL": "http://alertmanager:9093",
        "alerts": alerts,
    });
    serde_json::to_vec(&body).unwrap_or_default()
}

/// Posts one webhook body with the benchmarks' bearer token; its status, or why it failed or
/// was not answered 2xx (the status and the answer's text).
pub async fn post_alerts(
    http: &reqwest::Client,
    url: &str,
    body: Vec<u8>,
) -> Result<reqwest::StatusCode, String> {
    let response = http
        .post(url)
        .bearer_auth(BEARER)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .map_err(|e| format!("POST: {e}"))?;
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    if !status.is_success() {
        return Err(format!("{status} {text}"));
    }
    Ok(status)
}
