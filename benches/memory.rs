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

#[path = "support/rss.rs"]
mod rss;
#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use alertcall::api::{AlertCall, AlertRoute, CallPolicy};
use alertcall::sources::alertmanager::MAX_BODY_BYTES;
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use kube::Client;
use serde_json::json;

use rss::{mib, rss, Operator, AC, BEARER, MIB, TOKEN};

/// Alerts per webhook body: the report (two of them took RSS from 24 MB to 58 MB).
const ALERTS: usize = 5_000;
/// How long RSS is watched after the last payload, and how often it is read.
const SETTLE: Duration = Duration::from_secs(30);
const SAMPLE_EVERY: Duration = Duration::from_secs(5);
/// Bound of every wait on the operator or the control plane.
const WAIT: Duration = Duration::from_secs(60);

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
    let http = operator.ready(WAIT).await?;
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
        let body = rss::alertmanager_body("BenchMemory", batch, ALERTS);
        body_bytes = body.len();
        if body.len() > MAX_BODY_BYTES {
            return Err(format!(
                "the payload is {} bytes, over the webhook's limit of {MAX_BODY_BYTES}",
                body.len()
            ));
        }
        let start = Instant::now();
        let status = rss::post_alerts(&http, &url, body)
            .await
            .map_err(|e| format!("payload {batch}: {e}"))?;
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

async fn bench() {
    let title = format!("Memory of `alertcall run`: 2 x {ALERTS}-alert webhook bodies");
    let Some(rss::Setup {
        bin,
        binary: allocator,
        kubeconfig,
        client,
    }) = rss::begin(&title).await
    else {
        return;
    };
    let ns = support::TestNamespace::new(&client, "bench-memory").await;
    let result = rss::with_operator(&bin, &kubeconfig, Some(&ns.name), async |operator| {
        measure(&client, &ns.name, operator).await
    })
    .await;
    ns.delete().await;
    match result {
        Ok(measured) => report(allocator, &measured),
        Err(error) => println!("  FAILED (no numbers): {error}"),
    }
}

fn main() {
    rss::main(bench());
}
