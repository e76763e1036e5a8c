//! Pipeline benchmarks (DESIGN.md section 8): routing under an event storm, storm dedup, memory
//! with many routes and policies, CPS pacing, and event-to-first-dial latency end to end.
//!
//! `cargo bench --bench pipeline` (or `scripts/bench.sh`). Plain `Instant` measurements with a
//! warm-up; the numbers are printed, never asserted. Only correctness is asserted (exactly one
//! page for a storm of one event, no dial closer than the pacing interval allows).
//!
//! The end-to-end benchmark needs the loopback control plane (`scripts/control-plane.sh`, started
//! through the test harness); without it, it prints why it was skipped.

#[path = "../tests/support/mod.rs"]
mod support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use alertcall::api::{AlertRoute, CallPolicy, Phase};
use alertcall::metrics::Metrics;
use alertcall::operator::{self, Config};
use alertcall::page::runner::{DialJob, DialOutcome, JobKey, Limits, Runner};
use alertcall::pipeline::pager::{PageIndex, PageRecord};
use alertcall::routing::{
    decide, group_hash, Candidate, EventCandidate, GroupDecision, GroupKey, GroupTracker,
    InvolvedObject, RouteIndex,
};
use alertcall::twilio::client::CreateCall;
use alertcall::twilio::sim::{
    Event as SimEvent, Ledger, Outcome, Recipient, Script, SimConfig, Simulator,
};
use alertcall::twilio::{Account, TwilioEndpoints};
use alertcall::twilio::{Credentials, TwilioClient, TwilioConfig};
use futures::StreamExt;
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::{Event, Secret};
use kube::api::Api;
use kube::Client;
use serde_json::{json, Value};

// ---------------------------------------------------------------------------------------------
// Counting allocator: live and total bytes, for the memory benchmark.

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static ALLOCATED: AtomicUsize = AtomicUsize::new(0);
static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every method forwards to the system allocator with the caller's arguments unchanged;
// the counters are plain atomics and never affect what is returned.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as ours, forwarded.
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            LIVE.fetch_add(layout.size(), Ordering::Relaxed);
            ALLOCATED.fetch_add(layout.size(), Ordering::Relaxed);
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `alloc`/`realloc` above with this layout.
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded; `ptr` was allocated by us with `layout`.
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
            LIVE.fetch_add(new_size, Ordering::Relaxed);
            ALLOCATED.fetch_add(new_size, Ordering::Relaxed);
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        new
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

// ---------------------------------------------------------------------------------------------
// Reporting.

/// min / median / p99 / max of a sample.
struct Stats {
    n: usize,
    min: Duration,
    median: Duration,
    p99: Duration,
    max: Duration,
    mean: Duration,
}

impl Stats {
    fn of(mut sample: Vec<Duration>) -> Stats {
        sample.sort_unstable();
        let n = sample.len();
        let at = |q: f64| sample[((n as f64 * q).ceil() as usize).clamp(1, n) - 1];
        let total: Duration = sample.iter().sum();
        Stats {
            n,
            min: sample[0],
            median: at(0.5),
            p99: at(0.99),
            max: sample[n - 1],
            mean: total / n as u32,
        }
    }

    fn row(&self, what: &str) {
        println!(
            "  {what:<34} n={:<7} min {:>10} median {:>10} p99 {:>10} max {:>10}",
            self.n,
            fmt(self.min),
            fmt(self.median),
            fmt(self.p99),
            fmt(self.max),
        );
    }
}

fn fmt(d: Duration) -> String {
    let ns = d.as_nanos();
    if ns < 10_000 {
        format!("{ns} ns")
    } else if ns < 10_000_000 {
        format!("{:.1} us", ns as f64 / 1e3)
    } else if ns < 10_000_000_000 {
        format!("{:.1} ms", ns as f64 / 1e6)
    } else {
        format!("{:.2} s", ns as f64 / 1e9)
    }
}

fn header(title: &str) {
    println!("\n== {title}");
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn from_json<T: serde::de::DeserializeOwned>(value: Value) -> T {
    serde_json::from_value(value).unwrap_or_else(|e| panic!("fixture does not parse: {e}"))
}

// ---------------------------------------------------------------------------------------------
// 1. Routing under an event storm.

const TEAMS: usize = 20;

/// Route `i`: a reason of its own on Pods of its team's namespace, critical tier only; every
/// 100th route is a Node route (no reasons, by kind) across namespaces labelled for alerting.
fn route(i: usize) -> AlertRoute {
    let events = if i % 100 == 99 {
        json!({
            "types": ["Warning"], "involvedKinds": ["Node"],
            "namespaceSelector": {"matchLabels": {"alerting": "enabled"}},
        })
    } else {
        json!({
            "types": ["Warning"], "reasons": [format!("Crash{i}")], "involvedKinds": ["Pod"],
            "objectSelector": {"matchLabels": {"tier": "critical"}},
        })
    };
    from_json(json!({
        "apiVersion": "alertcall.dev/v1alpha1", "kind": "AlertRoute",
        "metadata": {"name": format!("route-{i}"), "namespace": format!("team-{}", i % TEAMS)},
        "spec": {"policyRef": {"name": "oncall"}, "kubernetesEvents": events},
    }))
}

fn event(reason: &str, kind: &str, namespace: &str, name: &str, tier: &str) -> EventCandidate {
    EventCandidate {
        type_: "Warning".into(),
        reason: reason.into(),
        message: "Back-off restarting failed container".into(),
        involved: InvolvedObject {
            kind: kind.into(),
            name: name.into(),
            namespace: namespace.into(),
        },
        namespace: namespace.into(),
        count: 1,
        event_labels: BTreeMap::new(),
        object_labels: labels(&[("tier", tier)]),
        namespace_labels: labels(&[("alerting", "enabled")]),
        first_seen: None,
        last_seen: None,
    }
}

/// 90% noise no route lists, 5% matching, 3% a listed reason in the wrong namespace (bucket hit,
/// filter miss), 2% Node events (the by-kind bucket).
fn storm(n: usize, routes: usize) -> Vec<Candidate> {
    let mut rng = fastrand::Rng::with_seed(7);
    let noise = ["Pulled", "Scheduled", "Created", "Started", "Killing"];
    (0..n)
        .map(|_| {
            let roll = rng.u32(0..100);
            let i = rng.usize(0..routes);
            let team = format!("team-{}", i % TEAMS);
            let candidate = if roll < 90 {
                event(
                    noise[rng.usize(0..noise.len())],
                    "Pod",
                    &team,
                    "api-1",
                    "critical",
                )
            } else if roll < 95 {
                event(&format!("Crash{i}"), "Pod", &team, "api-1", "critical")
            } else if roll < 98 {
                let other = format!("team-{}", (i + 1) % TEAMS);
                event(&format!("Crash{i}"), "Pod", &other, "api-1", "critical")
            } else {
                event("NodeNotReady", "Node", "default", "node-1", "")
            };
            Candidate::Event(candidate)
        })
        .collect()
}

fn bench_routing() {
    const ROUTES: usize = 1_000;
    const CANDIDATES: usize = 100_000;
    header(&format!(
        "1. Routing under an event storm (pure): {ROUTES} routes, {CANDIDATES} candidates"
    ));
    let index = RouteIndex::new((0..ROUTES).map(route));
    let candidates = storm(CANDIDATES, ROUTES);
    // Warm-up, and the reference match count.
    let expected: usize = candidates.iter().map(|c| index.matching(c).len()).sum();
    let mut passes = Vec::new();
    for _ in 0..5 {
        let start = Instant::now();
        let mut matches = 0;
        for candidate in &candidates {
            matches += std::hint::black_box(index.matching(candidate)).len();
        }
        passes.push(start.elapsed());
        assert_eq!(matches, expected);
    }
    let pass = Stats::of(passes);
    let mut per = Vec::with_capacity(CANDIDATES);
    for candidate in &candidates {
        let start = Instant::now();
        std::hint::black_box(index.matching(candidate));
        per.push(start.elapsed());
    }
    pass.row("whole storm (5 passes)");
    Stats::of(per).row("per candidate (incl. Instant cost)");
    let secs = pass.median.as_secs_f64();
    println!(
        "  {} route matches per storm; {:.2} M candidates/s, {:.0} k matches/s (median pass)",
        expected,
        CANDIDATES as f64 / secs / 1e6,
        expected as f64 / secs / 1e3,
    );
}

// ---------------------------------------------------------------------------------------------
// 2. Storm dedup: the pager's decision loop, pure.

fn bench_dedup() {
    const COPIES: usize = 100_000;
    header(&format!(
        "2. Storm dedup (pure): {COPIES} copies of one Event through match + group key + decide"
    ));
    let index = RouteIndex::new((0..1_000).map(route));
    let copy = Candidate::Event(event("Crash42", "Pod", "team-2", "api-1", "critical"));
    let mut runs = Vec::new();
    for round in 0..4 {
        let mut tracker = GroupTracker::default();
        let mut pages = PageIndex::default();
        let (mut paged, mut suppressed) = (0usize, 0usize);
        let base = Timestamp::now();
        let start = Instant::now();
        for i in 0..COPIES {
            // NB: a pure clock advancing 1 us per copy, as the pager's `Timestamp::now()` would.
            let now = base + SignedDuration::from_micros(i as i64);
            for route in index.matching(&copy) {
                let key = GroupKey::of(&route.route.spec.grouping.group_by, &copy);
                tracker.firing(&route.key, &key, now);
                let id = (route.key.namespace.clone(), group_hash(&route.key, &key));
                let mut state = tracker.state(&route.key, &key);
                state.last_page = pages.latest(&id).map(|page| page.created);
                match decide(&route.key, &key, &route.route.spec.grouping, &state, now) {
                    GroupDecision::Page { name, .. } => {
                        pages.upsert(
                            id,
                            PageRecord {
                                name,
                                created: now,
                                last_seen: None,
                                count: None,
                                resolved_at: None,
                            },
                        );
                        tracker.paged(&route.key, &key, now);
                        paged += 1;
                    }
                    GroupDecision::Suppress { .. } => suppressed += 1,
                }
            }
        }
        let elapsed = start.elapsed();
        assert_eq!(paged, 1, "a storm of one event must page exactly once");
        assert_eq!(suppressed, COPIES - 1);
        if round > 0 {
            runs.push(elapsed);
        }
    }
    let stats = Stats::of(runs);
    stats.row("whole storm (3 runs after warm-up)");
    println!(
        "  exactly 1 page decision, {} suppressed (asserted); {:.0} k copies/s, {} per copy",
        COPIES - 1,
        COPIES as f64 / stats.median.as_secs_f64() / 1e3,
        fmt(stats.median / COPIES as u32),
    );
}

// ---------------------------------------------------------------------------------------------
// 3. Memory with many routes and policies.

fn policy(i: usize) -> CallPolicy {
    from_json(json!({
        "apiVersion": "alertcall.dev/v1alpha1", "kind": "CallPolicy",
        "metadata": {"name": format!("oncall-{i}"), "namespace": format!("team-{}", i % TEAMS)},
        "spec": {
            "twilio": {"credentialsSecretRef": {"name": "twilio"}, "from": "+15005550006"},
            "recipients": [
                {"name": "alice", "phone": "+15005550101"},
                {"name": "bob", "phone": "+15005550102"},
                {"name": "carol", "phone": "+15005550103"},
            ],
            "strategy": {"mode": "Sequential", "ringTimeoutSeconds": 30, "rounds": 2},
        }
    }))
}

/// Live bytes and allocations `make` leaves behind while its result is held.
fn held<T>(make: impl FnOnce() -> T) -> (T, usize, usize) {
    let (live, count) = (
        LIVE.load(Ordering::Relaxed),
        ALLOCATIONS.load(Ordering::Relaxed),
    );
    let value = make();
    let bytes = LIVE.load(Ordering::Relaxed).saturating_sub(live);
    (value, bytes, ALLOCATIONS.load(Ordering::Relaxed) - count)
}

fn bench_memory() {
    const N: usize = 10_000;
    header(&format!(
        "3. Memory (counting allocator): {N} routes in a RouteIndex, {N} CallPolicies"
    ));
    let row = |what: &str, bytes: usize, allocations: usize| {
        println!(
            "  {what:<40} {:>8.2} MiB live  {:>6} B/object  ({:.1} allocations/object)",
            bytes as f64 / (1024.0 * 1024.0),
            bytes / N,
            allocations as f64 / N as f64,
        );
    };
    let (routes, route_bytes, route_allocs) = held(|| (0..N).map(route).collect::<Vec<_>>());
    row("AlertRoute objects (parsed)", route_bytes, route_allocs);
    let before = LIVE.load(Ordering::Relaxed);
    let (index, _, index_allocs) = held(|| RouteIndex::new(routes));
    // NB: the index owns the routes now (moved into Arcs): what it holds is measured from before
    // the routes were built.
    let index_bytes = LIVE.load(Ordering::Relaxed) + route_bytes - before;
    row(
        "RouteIndex incl. routes (compiled)",
        index_bytes,
        route_allocs + index_allocs,
    );
    row(
        "  of which compiling and indexing",
        index_bytes.saturating_sub(route_bytes),
        index_allocs,
    );
    assert_eq!(index.len(), N);
    drop(index);
    let (policies, policy_bytes, policy_allocs) = held(|| (0..N).map(policy).collect::<Vec<_>>());
    row(
        "CallPolicy objects (3 recipients)",
        policy_bytes,
        policy_allocs,
    );
    assert_eq!(policies.len(), N);
}

// ---------------------------------------------------------------------------------------------
// 4. CPS pacing: the real Runner and Pacer against the in-process simulator.

const AC: &str = "AC0123456789abcdef0123456789abcdef";
const TOKEN: &str = "bench-token";
const FROM: &str = "+15005550006";
const ALICE: &str = "+15005550101";

/// Outbound call creates in the ledger: (SID, simulated time).
fn created(ledger: &Ledger) -> Vec<(String, Timestamp)> {
    ledger
        .entries
        .iter()
        .filter_map(|e| match &e.event {
            SimEvent::CallCreated {
                call_sid,
                direction,
                ..
            } if direction.starts_with("outbound") => Some((call_sid.clone(), e.at)),
            _ => None,
        })
        .collect()
}

struct PacingRun {
    starts: Vec<Timestamp>,
    /// Each accepted call's start and release (the bench plays the controller that notices it
    /// ended): (start, end), same clock as the ledger at time scale 1.
    spans: Vec<(Timestamp, Timestamp)>,
    submitted: Timestamp,
}

async fn pacing_run(dials: usize, limits: Limits, call_length: Duration) -> PacingRun {
    let sim = Simulator::start(SimConfig {
        // The runner paces; the simulator must not.
        calls_per_second: 10_000.0,
        time_scale: 1.0,
        script: Script {
            default: Recipient::with_outcome(Outcome::NoAnswer),
            ..Script::default()
        },
        ..SimConfig::new(AC, TOKEN)
    })
    .await
    .unwrap_or_else(|e| panic!("simulator: {e}"));
    let base = url::Url::parse(&sim.api_url()).unwrap_or_else(|e| panic!("sim url: {e}"));
    let credentials = Credentials::AuthToken {
        account_sid: AC.into(),
        auth_token: TOKEN.into(),
    };
    let client = TwilioClient::new(TwilioConfig::new(credentials).with_single_base(base))
        .unwrap_or_else(|e| panic!("twilio client: {e}"));
    let account = Arc::new(Account {
        account_sid: AC.into(),
        auth_token: Some(TOKEN.into()),
        client,
    });
    let runner = Arc::new(Runner::new(Arc::new(Metrics::new())));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let submitted = Timestamp::now();
    for i in 0..dials {
        let name = format!("page-{i}");
        let (tx, runner_for_report) = (tx.clone(), runner.clone());
        let report_name = name.clone();
        let job = DialJob {
            key: JobKey {
                namespace: "bench".into(),
                name,
                attempt_id: "r1-alice".into(),
            },
            account: account.clone(),
            limits,
            request: CreateCall::new(ALICE, FROM, "<Response><Pause length=\"60\"/></Response>"),
            report: Box::new(move |outcome: DialOutcome| {
                Box::pin(async move {
                    let accepted = matches!(outcome, DialOutcome::Accepted(_));
                    // The call "lasts" `call_length`, then the controller would see it end and
                    // release its concurrency slot.
                    tokio::spawn(async move {
                        tokio::time::sleep(call_length).await;
                        let ended = Timestamp::now();
                        runner_for_report.release_page("bench", &report_name);
                        let _ = tx.send((accepted, ended));
                    });
                })
            }),
        };
        assert!(runner.submit(job));
    }
    drop(tx);
    let mut ends = Vec::new();
    while let Some((accepted, ended)) = rx.recv().await {
        assert!(accepted, "the simulator refused a dial");
        ends.push(ended);
    }
    let starts: Vec<Timestamp> = created(&sim.ledger())
        .into_iter()
        .map(|(_, at)| at)
        .collect();
    assert_eq!(starts.len(), dials);
    let mut ends_sorted = ends;
    ends_sorted.sort();
    // Calls are released in start order (all last `call_length`), so pair them by rank.
    let spans = starts.iter().copied().zip(ends_sorted).collect();
    sim.shutdown().await;
    PacingRun {
        starts,
        spans,
        submitted,
    }
}

fn seconds(d: SignedDuration) -> Duration {
    Duration::try_from(d).unwrap_or(Duration::ZERO)
}

async fn bench_pacing() {
    header("4. CPS pacing: runner::Runner/Pacer -> in-process simulator (time scale 1)");
    let cps = 5;
    let interval = Duration::from_secs_f64(1.0 / f64::from(cps));
    for (dials, cap, length) in [
        (16, 0, Duration::from_millis(50)),
        (12, 2, Duration::from_millis(700)),
    ] {
        let limits = Limits {
            calls_per_second: cps,
            max_concurrent_calls: cap,
        };
        let run = pacing_run(dials, limits, length).await;
        let gaps: Vec<Duration> = run
            .starts
            .windows(2)
            .map(|w| seconds(w[1].duration_since(w[0])))
            .collect();
        let first = seconds(run.starts[0].duration_since(run.submitted));
        // Drift from an ideal schedule of one start per interval from the first start: the
        // pacer's overhead accumulates (each slot counts from the moment the previous dial
        // actually got its token: timer wake-up, lock), plus the request reaching the simulator.
        let lateness: Vec<Duration> = run
            .starts
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let ideal = run.starts[0]
                    + SignedDuration::try_from(interval * i as u32).unwrap_or_default();
                seconds(t.duration_since(ideal))
            })
            .collect();
        let mut live_max = 0;
        for (start, _) in &run.spans {
            let live = run
                .spans
                .iter()
                .filter(|(s, e)| s <= start && e > start)
                .count();
            live_max = live_max.max(live);
        }
        let in_any_second = run
            .starts
            .iter()
            .map(|t| {
                run.starts
                    .iter()
                    .filter(|u| *u >= t && u.duration_since(*t) < SignedDuration::from_secs(1))
                    .count()
            })
            .max()
            .unwrap_or(0);
        let gap_stats = Stats::of(gaps.clone());
        println!(
            "  cps {cps}, maxConcurrentCalls {cap}, {dials} dials submitted at once, calls last {}:",
            fmt(length)
        );
        gap_stats.row("  start gap");
        if cap == 0 {
            Stats::of(lateness).row("  drift vs ideal 1/cps schedule");
        }
        println!(
            "    submit -> first dial {}; mean gap {} (interval {}{}); at most {in_any_second} starts in any 1 s; at most {live_max} live (cap {})",
            fmt(first),
            fmt(gap_stats.mean),
            fmt(interval),
            if cap == 0 {
                format!(", pacer overhead {}/dial", fmt(gap_stats.mean.saturating_sub(interval)))
            } else {
                ", slots wait for calls to end".to_string()
            },
            if cap == 0 { "none".to_string() } else { cap.to_string() },
        );
        // Correctness, not speed: the pacer never bursts past the rate or the cap. Starts are
        // read where the requests arrive, so loopback jitter of a few ms moves them; a burst
        // would put two starts (nearly) together.
        assert!(
            gap_stats.min + interval / 10 >= interval,
            "burst past the rate"
        );
        assert!(in_any_second <= cps as usize + 1);
        assert!(
            cap == 0 || live_max <= cap as usize,
            "over the concurrency cap"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// 5. Event-to-first-dial latency under a storm, end to end.

const STORM: usize = 500;
const REPEATS: usize = 10;
const SCALE: f64 = 50.0;

async fn bench_end_to_end() {
    header(&format!(
        "5. Event-to-first-dial under a storm (operator in process, loopback control plane, simulator x{SCALE})"
    ));
    // NB: provisioning blocks (it may start the control plane): off the runtime's threads.
    let client = match tokio::task::spawn_blocking(support::try_kubeconfig).await {
        Ok(Ok(_)) => support::try_client().await,
        Ok(Err(error)) => Err(format!("the test control plane is not available: {error}")),
        Err(error) => Err(error.to_string()),
    };
    let client = match client {
        Ok(client) => client,
        Err(error) => {
            println!("  SKIPPED: {}", error.lines().next().unwrap_or(&error));
            return;
        }
    };
    let ns = support::TestNamespace::new(&client, "bench-e2e").await;
    let result = end_to_end(&client, &ns.name).await;
    ns.delete().await;
    match result {
        Ok(run) => {
            Stats::of(run.first_dial).row("matching Event create -> first dial");
            // The window in which a crash leaves an intent without its call SID: a restart
            // then has to find the call at Twilio (or dial again), since Twilio's Calls create
            // takes no idempotency key.
            // NB: both ends are metav1.Time, stored to the second: this bounds the window, it
            // does not time it finely.
            Stats::of(run.intent_to_sid).row("intent -> call SID recorded (1 s resolution)");
        }
        Err(error) => println!("  FAILED (no numbers): {error}"),
    }
}

/// What one end-to-end run measured, per matching Event.
struct EndToEnd {
    first_dial: Vec<Duration>,
    intent_to_sid: Vec<Duration>,
}

async fn end_to_end(client: &Client, namespace: &str) -> Result<EndToEnd, String> {
    let sim = Simulator::start(SimConfig {
        script: Script {
            default: Recipient::with_outcome(Outcome::NoAnswer),
            ..Script::default()
        },
        time_scale: SCALE,
        calls_per_second: 100.0,
        ..SimConfig::new(AC, TOKEN)
    })
    .await
    .map_err(|e| format!("simulator: {e}"))?;
    // The policy's caller ID is a number the account owns, as Twilio requires.
    sim.add_number(FROM);
    let result = end_to_end_with(client, namespace, &sim).await;
    sim.shutdown().await;
    result
}

async fn end_to_end_with(
    client: &Client,
    namespace: &str,
    sim: &alertcall::twilio::sim::SimHandle,
) -> Result<EndToEnd, String> {
    support::try_create::<Secret>(
        &Api::namespaced(client.clone(), namespace),
        json!({"metadata": {"name": "twilio"}, "stringData": {"accountSid": AC, "authToken": TOKEN}}),
    )
    .await?;
    let sim_url = url::Url::parse(&sim.api_url()).ok();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let config = Config {
        namespace: Some(namespace.to_string()),
        public_url: url::Url::parse(&format!("http://{addr}")).ok(),
        twilio: TwilioEndpoints {
            api_url: sim_url.clone(),
            serverless_url: sim_url,
            ..TwilioEndpoints::default()
        },
        poll_interval: Duration::from_millis(500),
        // NB: as installed: the policy's documents are published (it watches only its own
        // namespace, so no other policy on the control plane reaches for Twilio).
        call_policies: true,
        ..Config::local("bench")
    };
    let running = operator::start_with_listener(client.clone(), config, listener)
        .await
        .map_err(|e| format!("starting the operator: {e}"))?;
    let result = measure(client, namespace, sim, &running).await;
    running.shutdown().await;
    result
}

async fn measure(
    client: &Client,
    namespace: &str,
    sim: &alertcall::twilio::sim::SimHandle,
    running: &operator::Running,
) -> Result<EndToEnd, String> {
    let readyz = format!("http://{}/readyz", running.addr);
    support::wait_for("the operator to be ready", Duration::from_secs(60), || {
        let url = readyz.clone();
        async move {
            reqwest::get(url)
                .await
                .ok()?
                .status()
                .is_success()
                .then_some(())
        }
    })
    .await?;
    support::try_create::<CallPolicy>(
        &Api::namespaced(client.clone(), namespace),
        json!({
            "apiVersion": "alertcall.dev/v1alpha1", "kind": "CallPolicy",
            "metadata": {"name": "oncall"},
            "spec": {
                "twilio": {"credentialsSecretRef": {"name": "twilio"}, "from": FROM},
                "recipients": [{"name": "alice", "phone": ALICE}],
                "strategy": {"mode": "Sequential", "ringTimeoutSeconds": 10, "rounds": 1},
                "acknowledgement": {"digits": "1", "gatherTimeoutSeconds": 3},
                "limits": {"callsPerSecond": 10, "maxCallsPerHour": 0},
            }
        }),
    )
    .await?;
    support::policy_published(client, namespace).await?;
    support::crash_route_ready(client, namespace).await?;
    let events: Api<Event> = Api::namespaced(client.clone(), namespace);
    let calls: Api<alertcall::api::AlertCall> = Api::namespaced(client.clone(), namespace);
    let mut latencies = Vec::new();
    let mut windows = Vec::new();
    // Round 0 is a warm-up (watch connections, first account lookup).
    for round in 0..=REPEATS {
        let storm_start = Instant::now();
        let noise = futures::stream::iter(0..STORM)
            .map(|i| {
                let events = events.clone();
                let object = format!("noise-{round}-{i}");
                async move {
                    let body = support::bench_event(namespace, &object, "Pulled", "Pod", &object);
                    support::try_create(&events, body).await
                }
            })
            .buffer_unordered(16)
            .collect::<Vec<_>>()
            .await;
        if let Some(Err(error)) = noise.into_iter().find(Result::is_err) {
            return Err(format!("creating a noise Event: {error}"));
        }
        let storm_time = storm_start.elapsed();
        let before = created(&sim.ledger()).len();
        let name = format!("crash-{round}");
        let body = support::bench_event(
            namespace,
            &name,
            "BenchCrash",
            "Pod",
            &format!("api-{round}"),
        );
        // Anchor the simulator's clock to ours, to read the ledger's time in real time.
        let (anchor_sim, start) = (sim.now(), Instant::now());
        support::try_create(&events, body).await?;
        let at = support::wait_for("the first dial", Duration::from_secs(60), || {
            let dials = created(&sim.ledger());
            std::future::ready(dials.get(before).map(|(_, at)| *at))
        })
        .await?;
        let simulated = at.duration_since(anchor_sim).as_secs_f64().max(0.0);
        let latency = Duration::from_secs_f64(simulated / SCALE);
        let observed = start.elapsed();
        if round > 0 {
            latencies.push(latency);
        }
        println!(
            "    round {round:>2}{}: {STORM} Events created in {} ({:.0}/s), then first dial after {} (ledger time; seen by polling after {})",
            if round == 0 { " (warm-up)" } else { "" },
            fmt(storm_time),
            STORM as f64 / storm_time.as_secs_f64(),
            fmt(latency),
            fmt(observed)
        );
        // Let the page finish (one recipient, no answer, one round) so rounds do not overlap.
        support::wait_for("the page to end", Duration::from_secs(60), || {
            let calls = calls.clone();
            async move {
                let list = calls.list(&Default::default()).await.ok()?;
                (list.items.len() == round + 1
                    && list.items.iter().all(|c| {
                        c.status.as_ref().is_some_and(|s| {
                            matches!(
                                s.phase,
                                Phase::Exhausted | Phase::Failed | Phase::Acknowledged
                            )
                        })
                    }))
                .then_some(())
            }
        })
        .await?;
    }
    let pages = calls
        .list(&Default::default())
        .await
        .map_err(|e| e.to_string())?;
    assert_eq!(
        pages.items.len(),
        REPEATS + 1,
        "one page per matching Event, none for the storms"
    );
    println!(
        "  {} rounds of {STORM} non-matching Events then 1 matching; {} pages, {} dials",
        REPEATS + 1,
        pages.items.len(),
        created(&sim.ledger()).len()
    );
    // Both ends are the operator's own clock: the intent's time and the SID's adoption.
    for page in &pages.items {
        let attempts = page.status.iter().flat_map(|s| s.attempts.iter());
        for attempt in attempts {
            if let (Some(intent), Some(started)) = (&attempt.intent_at, &attempt.started_at) {
                let window = started.0.duration_since(intent.0);
                windows.push(Duration::try_from(window).unwrap_or_default());
            }
        }
    }
    Ok(EndToEnd {
        first_dial: latencies,
        intent_to_sid: windows,
    })
}

fn main() {
    // `cargo bench` passes `--bench`; arguments pick benchmarks by number or name
    // (`cargo bench --bench pipeline -- routing 4`).
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let wanted =
        |words: &[&str]| filter.is_empty() || filter.iter().any(|f| words.contains(&f.as_str()));
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    println!(
        "alertcall pipeline benchmarks ({} build)",
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "optimized"
        }
    );
    if wanted(&["1", "routing"]) {
        bench_routing();
    }
    if wanted(&["2", "dedup"]) {
        bench_dedup();
    }
    if wanted(&["3", "memory"]) {
        bench_memory();
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("tokio runtime: {e}"));
    if wanted(&["4", "pacing"]) {
        runtime.block_on(bench_pacing());
    }
    if wanted(&["5", "e2e", "end-to-end"]) {
        runtime.block_on(bench_end_to_end());
    }
}
