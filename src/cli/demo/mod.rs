//! `alertcall demo`: the paging pipeline on the embedded examples, no cluster, no Twilio account.
//!
//! ```text
//!  sample Event / alert ─> routing (RouteIndex, GroupKey, decide, build_alert_call) ─> AlertCall
//!  CallPolicy ─> publish_documents ─> simulator's Serverless (documents, the ack Function)
//!  loop (paging.rs): calls::poll + the keypress ledger ─> escalation::observe ─> step ─> page::Executor
//!  the simulator's ledger + the status transitions ─> the printed timeline
//! ```
//!
//! Everything but Kubernetes is the operator's own code: the AlertCall status lives in memory
//! instead of the API server, and the simulator stands in for Twilio.

use std::collections::{BTreeMap, HashMap};
use std::process::ExitCode;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Event as KubeEvent;
use kube::ResourceExt;

use super::check::{namespace_of, qualified, Manifests};
use crate::api::TwimlStatus;
use crate::api::{AlertCall, AlertCallStatus, CallPolicy, Mode, Phase};
use crate::page::calls;
use crate::page::documents::{room_name, HostedDocuments};
use crate::routing::{
    build_alert_call, decide, Candidate, EventCandidate, GroupDecision, GroupKey, GroupState,
    PageRequest, RouteIndex, RouteKey,
};
use crate::sources::alertmanager::Payload;
use crate::twilio::sim::{self, Event, Outcome, Recipient, SimConfig, SimHandle, Simulator};
use crate::twilio::{Credentials, TwilioClient, TwilioConfig};

/// The examples compiled into the binary, so the demo runs from anywhere.
mod cast;
mod narration;
mod paging;

use cast::*;
use narration::*;
use paging::run_page;

pub const EXAMPLES: &[(&str, &str)] = &[
    (
        "examples/policy-sequential.yaml",
        include_str!("../../../examples/policy-sequential.yaml"),
    ),
    (
        "examples/policy-simultaneous-all-ack.yaml",
        include_str!("../../../examples/policy-simultaneous-all-ack.yaml"),
    ),
    (
        "examples/policy-two-tier.yaml",
        include_str!("../../../examples/policy-two-tier.yaml"),
    ),
    (
        "examples/schedule-sre-primary.yaml",
        include_str!("../../../examples/schedule-sre-primary.yaml"),
    ),
    (
        "examples/route-critical-pods-nodes.yaml",
        include_str!("../../../examples/route-critical-pods-nodes.yaml"),
    ),
    (
        "examples/route-alertmanager-critical.yaml",
        include_str!("../../../examples/route-alertmanager-critical.yaml"),
    ),
];

/// Simulated seconds per real second: a page of a few simulated minutes takes a few seconds.
pub const TIME_SCALE: f64 = 50.0;

/// How often the page's calls are polled, in simulated seconds (the operator's poll interval).
const POLL_SECONDS: f64 = 2.0;

/// The longest the demo waits, in real time, for acknowledgers to reach the room (they are
/// seconds away; a loaded machine must not turn that into a missing line).
const ROOM_WAIT: Duration = Duration::from_secs(10);

/// A page that has not finished after this much real time is reported as stuck.
const REAL_TIME_LIMIT: Duration = Duration::from_secs(90);

const ACCOUNT_SID: &str = "ACdemo0000000000000000000000000000";
const AUTH_TOKEN: &str = "demo-auth-token";
const INSTANCE: &str = "alertcall-demo";

/// The Alertmanager webhook the `db-owners` example receives on its `critical-alerts` route.
const SAMPLE_ALERT: &str = r#"{
  "version": "4",
  "status": "firing",
  "receiver": "alertcall",
  "alerts": [{
    "status": "firing",
    "labels": {"alertname": "PostgresReplicationLag", "severity": "critical", "team": "db",
               "cluster": "prod", "service": "orders-db"},
    "annotations": {"summary": "The orders database replica is 6 minutes behind."},
    "startsAt": "2026-01-01T00:00:00Z",
    "fingerprint": "5f3a9c1d2e4b6a70"
  }]
}"#;

#[derive(clap::Args, Debug)]
pub struct DemoArgs {
    /// Which example to page: `sre-oncall` (Sequential, a voicemail answers), `db-owners`
    /// (Simultaneous, everyone must acknowledge) or `schedule` (an on-call schedule hands off
    /// during the page).
    #[arg(long = "example", default_value = "sre-oncall")]
    pub example: String,
}

/// Why the demo could not run. `reason()` is stable for scripts.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("no example {name:?}; choose one of: {choices}")]
    UnknownExample { name: String, choices: String },
    #[error("embedded examples: {0}")]
    Examples(String),
    #[error("the sample signal of {0} matches no example route")]
    NoRoute(String),
    #[error("cannot start the Twilio simulator: {0}")]
    Simulator(#[from] sim::SimError),
    #[error("Twilio (simulated): {0}")]
    Twilio(#[from] crate::twilio::TwilioError),
    #[error("publishing the TwiML documents: {0}")]
    Publish(#[from] crate::controllers::call_policy::Error),
    #[error("the page did not finish within {0:?} of real time")]
    Stuck(Duration),
}

impl DemoError {
    pub fn reason(&self) -> &'static str {
        match self {
            DemoError::UnknownExample { .. } => "UnknownExample",
            DemoError::Examples(_) => "InvalidExamples",
            DemoError::NoRoute(_) => "NoRoute",
            DemoError::Simulator(_) => "SimulatorFailed",
            DemoError::Twilio(_) => "TwilioError",
            DemoError::Publish(_) => "PublishFailed",
            DemoError::Stuck(_) => "Stuck",
        }
    }
}

/// One line of the timeline, at a simulated time.
#[derive(Clone, Debug, PartialEq)]
pub struct Moment {
    pub at: Timestamp,
    pub text: String,
}

/// What a demo run did.
#[derive(Debug)]
pub struct DemoRun {
    /// What was routed and published, before any call.
    pub header: Vec<String>,
    /// Calls, answers, keypresses and the room, in simulated time order.
    pub timeline: Vec<Moment>,
    /// The page's status at the end, as the operator would have written it.
    pub status: AlertCallStatus,
    /// The one-line outcome.
    pub summary: String,
    pub time_scale: f64,
}

impl DemoRun {
    /// The whole report as printed.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for line in &self.header {
            out.push_str(line);
            out.push('\n');
        }
        out.push('\n');
        let start = self
            .status
            .started_at
            .as_ref()
            .map(|t| t.0)
            .or_else(|| self.timeline.first().map(|m| m.at));
        for moment in &self.timeline {
            let offset = start.map_or(0.0, |t0| moment.at.duration_since(t0).as_secs_f64());
            out.push_str(&format!(
                "{:>8}  {}\n",
                format!("+{offset:.1}s"),
                moment.text
            ));
        }
        out.push('\n');
        out.push_str(&self.summary);
        out.push('\n');
        out.push_str(&format!(
            "\nThis was a simulation: simulated time ran {}x faster, the calls went to the Twilio simulator\n\
             in this process, and the AlertCall status was kept in memory instead of a cluster.\n\
             Next: edit the numbers in examples/ and the credentials in examples/twilio.env, then\n\
             `kubectl apply -f crds/` and `kubectl apply -n NAMESPACE -k examples/` with the operator\n\
             running, or rehearse your own policies with `alertcall twilio-sim` (dry runs) and\n\
             `alertcall check -f DIR --event FILE`.\n",
            self.time_scale
        ));
        out
    }
}

/// Runs the example's page against an in-process simulator and returns what happened.
pub async fn simulate(example: &str, time_scale: f64) -> Result<DemoRun, DemoError> {
    let Some(policy_name) = policy_of(example) else {
        return Err(DemoError::UnknownExample {
            name: example.to_string(),
            choices: EXAMPLE_NAMES.join(", "),
        });
    };
    let manifests = manifests()?;
    let policy = manifests
        .policies
        .iter()
        .find(|p| p.name_any() == policy_name)
        .cloned()
        .ok_or_else(|| DemoError::Examples(format!("no CallPolicy {policy_name}")))?;
    let roles = cast(example);
    let (signal, signal_text) = sample_signal(example)?;
    let clock = clock(example)
        .map(|text| {
            text.parse::<Timestamp>()
                .map_err(|error| DemoError::Examples(format!("the clock {text}: {error}")))
        })
        .transpose()?;

    let sim = Simulator::start(SimConfig {
        time_scale,
        calls_per_second: f64::from(policy.spec.limits.calls_per_second.max(1)),
        // Anyone the cast forgets lets it ring out: nobody acknowledges by accident.
        script: sim::Script {
            default: Recipient::with_outcome(Outcome::NoAnswer),
            ..sim::Script::default()
        },
        ..SimConfig::new(ACCOUNT_SID, AUTH_TOKEN)
    })
    .await?;
    let scene = Scene {
        manifests: &manifests,
        policy: &policy,
        roles: &roles,
        signal: &signal,
        signal_text,
        clock,
    };
    let result = drive(&sim, scene, time_scale).await;
    sim.shutdown().await;
    result
}

/// One example's page: what the demo stages and plays.
struct Scene<'a> {
    manifests: &'a Manifests,
    policy: &'a CallPolicy,
    roles: &'a [Role],
    signal: &'a Signal,
    signal_text: String,
    /// The simulated time the page starts at, when it matters.
    clock: Option<Timestamp>,
}

async fn drive(sim: &SimHandle, scene: Scene<'_>, time_scale: f64) -> Result<DemoRun, DemoError> {
    let Scene {
        manifests,
        policy,
        roles,
        signal,
        signal_text,
        clock,
    } = scene;
    let spec = &policy.spec;
    let namespace = namespace_of(policy);
    let (call, route_text) = match signal {
        Signal::Routed(candidate) => {
            let (call, route) = route_signal(manifests, policy, candidate, sim.now())?;
            let word = match candidate.as_ref() {
                Candidate::Event(_) => "event",
                Candidate::Alert(_) => "alert",
            };
            (call, format!("{word} -> {route}"))
        }
        Signal::Manual(summary) => (
            manual_call(policy, summary)?,
            "kubectl -> no route (a page by hand)".to_string(),
        ),
    };
    let page = call.name_any();
    let staged = stage(sim, policy).await?;
    let twiml = &staged.twiml;

    let strategy = &spec.strategy;
    let how = match strategy.mode {
        Mode::Sequential => format!("Sequential, {:?} order", strategy.order),
        Mode::Simultaneous => format!("Simultaneous, complete on {:?}", strategy.completion),
    };
    let mut header = vec![
        format!(
            "alertcall demo: a SIMULATION of one page with the embedded examples/ (no cluster, no Twilio account)."
        ),
        format!("signal   {signal_text}"),
        format!(
            "route    {route_text} -> CallPolicy {} ({how}, rings {}s, {} round(s))",
            qualified(policy),
            strategy.ring_timeout_seconds,
            strategy.rounds,
        ),
        format!("page     AlertCall {namespace}/{page}: {:?}", call.spec.summary),
        format!(
            "twiml    ack and bridge documents and the acknowledgement Function published at Twilio Serverless (build {}); keypresses go to {}",
            twiml.build_sid, twiml.urls.ack_function
        ),
        format!("cast     {} (scripted in the simulator)", describe_cast(roles)),
    ];
    // NB: set after staging, so however long publishing took, the page starts at this time.
    if let Some(at) = clock {
        sim.set_clock(at);
        header.extend(schedule_lines(manifests, policy, at));
    }
    let schedules = &manifests.schedules;
    let paged = run_page(sim, &staged, policy, &call, roles, schedules, time_scale).await?;
    let room = room_name(spec, &namespace, &policy.name_any());
    wait_for_the_room(sim, &paged.status, &room, time_scale).await;

    let mut timeline = ledger_moments(sim, &paged.status, &paged.cast_of_attempt, &room);
    timeline.extend(paged.notes);
    let end = timeline.iter().map(|m| m.at).max();
    if let Some((from, to)) = clock.zip(end) {
        timeline.extend(handoff_moments(manifests, policy, from, to));
    }
    // NB: stable sort: at equal times a dial stays before what the ledger says about it.
    timeline.sort_by_key(|m| m.at);
    let summary = summary(&paged.status);
    Ok(DemoRun {
        header,
        timeline,
        status: paged.status,
        summary,
        time_scale,
    })
}

/// One page of `policy` with `summary`, the way `alertcall demo` runs it, against a simulator
/// whose recipients follow `script`: the page's final status, as the operator would have
/// written it. The same loop as the demo, without its routing and its printed report.
pub async fn page(
    policy: &CallPolicy,
    summary: &str,
    script: sim::Script,
    time_scale: f64,
) -> Result<AlertCallStatus, DemoError> {
    let call = manual_call(policy, summary)?;
    let sim = Simulator::start(SimConfig {
        time_scale,
        calls_per_second: f64::from(policy.spec.limits.calls_per_second.max(1)),
        script,
        ..SimConfig::new(ACCOUNT_SID, AUTH_TOKEN)
    })
    .await?;
    let result = async {
        let staged = stage(&sim, policy).await?;
        run_page(&sim, &staged, policy, &call, &[], &[], time_scale).await
    }
    .await;
    sim.shutdown().await;
    result.map(|paged| paged.status)
}

/// The AlertCall `kubectl alertcall page` makes: a page of `policy` by hand.
fn manual_call(policy: &CallPolicy, summary: &str) -> Result<AlertCall, DemoError> {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "alertcall.dev/v1alpha1",
        "kind": "AlertCall",
        "metadata": {
            "name": format!("{}-page-demo", policy.name_any()),
            "namespace": namespace_of(policy),
        },
        "spec": {
            "policyRef": {"name": policy.name_any()},
            "summary": summary,
            "source": {"kind": "Manual"},
        },
    }))
    .map_err(|error| DemoError::Examples(format!("the page: {error}")))
}

/// Sets the simulated account up for `policy`: its numbers and its published TwiML documents.
async fn stage(sim: &SimHandle, policy: &CallPolicy) -> Result<Staged, DemoError> {
    let spec = &policy.spec;
    let namespace = namespace_of(policy);
    let policy_name = policy.name_any();
    sim.add_number(&spec.twilio.from);
    if let Some(bridge) = &spec.twilio.bridge_number {
        sim.add_number(bridge);
    }
    let base = url::Url::parse(&sim.api_url())
        .map_err(|error| DemoError::Examples(format!("simulator URL: {error}")))?;
    let client = TwilioClient::new(
        TwilioConfig::new(Credentials::AuthToken {
            account_sid: ACCOUNT_SID.to_string(),
            auth_token: AUTH_TOKEN.to_string(),
        })
        .with_single_base(base),
    )?;
    let room = room_name(spec, &namespace, &policy_name);
    let docs = HostedDocuments::render(spec, &room);
    let twiml = crate::controllers::call_policy::publish_documents(
        &client,
        ACCOUNT_SID,
        INSTANCE,
        &namespace,
        &policy_name,
        &docs,
    )
    .await?;
    crate::controllers::call_policy::ensure_ack_map(&client).await?;
    Ok(Staged { client, twiml })
}

/// The simulated account, ready for the policy's page.
struct Staged {
    client: TwilioClient,
    twiml: TwimlStatus,
}

/// Acknowledgers hear the confirmation before they join the room; the page is already over by
/// then, so wait to show them arrive.
async fn wait_for_the_room(sim: &SimHandle, status: &AlertCallStatus, room: &str, time_scale: f64) {
    let deadline = tokio::time::Instant::now() + ROOM_WAIT;
    while tokio::time::Instant::now() < deadline {
        let ledger = sim.ledger();
        let joined = ledger.participants_of(room);
        let waiting = status.attempts.iter().any(|a| {
            a.acknowledged
                && a.call_sid.as_ref().is_some_and(|sid| {
                    !joined.contains(sid)
                        && !ledger.call_statuses(sid).iter().any(|s| {
                            calls::attempt_status(s).is_some_and(|status| status.is_final())
                        })
                })
        });
        if !waiting {
            return;
        }
        tokio::time::sleep(Duration::from_secs_f64(POLL_SECONDS / time_scale)).await;
    }
}

pub fn run(args: &DemoArgs) -> ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("alertcall demo: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(simulate(&args.example, TIME_SCALE)) {
        Ok(run) => {
            print!("{}", run.render());
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("alertcall demo: error: {error}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::AttemptStatus;
    use std::collections::BTreeSet;

    fn attempts(run: &DemoRun) -> Vec<(String, u32, AttemptStatus, bool)> {
        run.status
            .attempts
            .iter()
            .map(|a| (a.recipient.clone(), a.round, a.status, a.acknowledged))
            .collect()
    }

    /// The run and its report, once it is known to have ended acknowledged by `by`.
    fn acknowledged(run: Result<DemoRun, DemoError>, by: &str) -> (DemoRun, String) {
        let run = run.unwrap_or_else(|error| panic!("demo failed: {error}"));
        let text = run.render();
        assert_eq!(run.status.phase, Phase::Acknowledged, "{text}");
        assert_eq!(run.status.acknowledged_by.as_deref(), Some(by), "{text}");
        (run, text)
    }

    #[tokio::test]
    async fn sre_oncall_is_acknowledged_by_carol_after_alice_and_bob() {
        let (run, text) = acknowledged(simulate("sre-oncall", TIME_SCALE).await, "carol");
        let seen = attempts(&run);
        assert_eq!(seen.len(), 3, "{text}");
        assert_eq!(
            seen[0],
            ("alice".into(), 1, AttemptStatus::NoAnswer, false),
            "{text}"
        );
        assert_eq!(
            seen[1],
            ("bob".into(), 1, AttemptStatus::Completed, false),
            "{text}"
        );
        assert_eq!((seen[2].0.as_str(), seen[2].3), ("carol", true), "{text}");
        for line in [
            "SIMULATION",
            "event -> AlertRoute default/critical-workloads -> CallPolicy default/sre-oncall",
            "dial alice (+14155550101) round 1",
            "alice no-answer",
            "bob answered by voicemail",
            "bob's call ended (no keypress: not acknowledged)",
            "carol pressed 1",
            "carol's keypress reached the acknowledgement Function",
            "carol joined room sre-incident (alone: waiting with hold music)",
            "Acknowledged by carol after",
        ] {
            assert!(text.contains(line), "missing {line:?} in:\n{text}");
        }
        let order: Vec<usize> = ["dial alice", "dial bob", "dial carol", "carol pressed 1"]
            .iter()
            .filter_map(|line| text.find(line))
            .collect();
        assert_eq!(order.len(), 4, "{text}");
        assert!(order.windows(2).all(|w| w[0] < w[1]), "{text}");
    }

    #[tokio::test]
    async fn db_owners_are_all_acked_with_erik_called_twice() {
        let run = match simulate("db-owners", TIME_SCALE).await {
            Ok(run) => run,
            Err(error) => panic!("demo failed: {error}"),
        };
        let text = run.render();
        assert_eq!(run.status.phase, Phase::Acknowledged, "{text}");
        let seen = attempts(&run);
        let erik: Vec<_> = seen.iter().filter(|a| a.0 == "erik").collect();
        assert_eq!(erik.len(), 2, "{text}");
        assert_eq!(
            (erik[0].1, erik[0].2, erik[0].3),
            (1, AttemptStatus::NoAnswer, false)
        );
        assert_eq!((erik[1].1, erik[1].3), (2, true), "{text}");
        for name in ["dana", "fumi"] {
            let calls: Vec<_> = seen.iter().filter(|a| a.0 == name).collect();
            assert_eq!(calls.len(), 1, "{name}: {text}");
            assert!(calls[0].3, "{name}: {text}");
        }
        let by: BTreeSet<&str> = run
            .status
            .acknowledged_by
            .as_deref()
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .collect();
        assert_eq!(by, BTreeSet::from(["dana", "erik", "fumi"]), "{text}");
        for line in [
            "alert -> AlertRoute default/critical-alerts -> CallPolicy default/db-owners",
            "round 2 starts",
            "dial erik (+14155550202) round 2",
            "room db-incident starts",
            "room db-incident is being recorded",
        ] {
            assert!(text.contains(line), "missing {line:?} in:\n{text}");
        }
    }

    #[tokio::test]
    async fn schedule_hands_off_from_alice_to_carol_between_rounds() {
        let (run, text) = acknowledged(simulate("schedule", TIME_SCALE).await, "primary/carol");
        let called: Vec<(String, Option<String>, u32, bool)> = run
            .status
            .attempts
            .iter()
            .map(|a| {
                (
                    a.recipient.clone(),
                    a.member.clone(),
                    a.round,
                    a.acknowledged,
                )
            })
            .collect();
        assert_eq!(
            called,
            [
                ("primary".into(), Some("alice".into()), 1, false),
                ("lead".into(), None, 1, false),
                ("primary".into(), Some("carol".into()), 2, true),
            ],
            "{text}"
        );
        let first = &run.status.attempts[0];
        assert_eq!(first.schedule.as_deref(), Some("sre-primary"), "{text}");
        assert_eq!(first.address.as_deref(), Some("+819012345678"), "{text}");
        for line in [
            "signal   a page by hand: kubectl alertcall page sre-primary-tier",
            "kubectl -> no route (a page by hand) -> CallPolicy default/sre-primary-tier",
            "page     AlertCall default/sre-primary-tier-page-demo",
            "clock    the page starts at 2026-12-11T08:59:00Z (simulated)",
            "schedule OnCallSchedule default/sre-primary (Asia/Tokyo): alice on call at Fri 17:59:00 JST, until Fri 18:00:00 JST, then carol",
            "dial primary/alice (+819012345678, on call in sre-primary) round 1",
            "primary/alice no-answer",
            "dial lead (+14155550110) round 1",
            "OnCallSchedule sre-primary hands off at Fri 18:00:00 JST: carol on call (was alice)",
            "round 2 starts",
            "dial primary/carol (+819087654321, on call in sre-primary) round 2",
            "primary/carol pressed 1",
            "Acknowledged by primary/carol after",
        ] {
            assert!(text.contains(line), "missing {line:?} in:\n{text}");
        }
    }

    #[tokio::test]
    async fn an_unknown_example_names_the_choices() {
        match simulate("nope", TIME_SCALE).await {
            Err(error @ DemoError::UnknownExample { .. }) => {
                let text = error.to_string();
                assert!(text.contains("sre-oncall, db-owners, schedule"), "{text}");
            }
            other => panic!("expected UnknownExample, got {other:?}"),
        }
    }
}
