//! SIGTERM in the middle of a page, as a kubelet sends it on a rollout or a drain: the leader
//! exits within the chart's terminationGracePeriodSeconds, the standby takes the Lease and goes
//! on with the page, and nobody is called twice. Both replicas are the `alertcall run` binary.

mod support;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use alertcall::api::Phase;
use alertcall::twilio::sim::{Event, Fault, FaultSpec, Outcome, Recipient, Script};
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::Api;
use serde_json::json;
use support::paging::{self, Harness, ALICE};

/// `alertcall run` as one replica of the chart's Deployment: leader election on, its log in a
/// file so a failure can show it.
struct Replica {
    child: tokio::process::Child,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Replica {
    fn start(harness: &Harness, identity: &str) -> Self {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("temporary dir: {e}"));
        let log = dir.path().join("operator.log");
        let file = std::fs::File::create(&log).unwrap_or_else(|e| panic!("log: {e}"));
        let err = file.try_clone().unwrap_or_else(|e| panic!("log: {e}"));
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap_or_else(|e| panic!("no free port: {e}"));
        let sim = harness.sim.api_url();
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_alertcall"))
            .arg("run")
            .args(["--namespace", &harness.ns.name])
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--twilio-api-url", &sim, "--twilio-serverless-url", &sim])
            .args(["--instance-name", &format!("t-{}", harness.ns.name)])
            .args(["--poll-interval", "1s"])
            .arg("--leader-election")
            .args(["--lease-namespace", &harness.ns.name])
            .args(["--identity", identity])
            .args(["--lease-duration", "15s", "--lease-renew", "10s"])
            .env("KUBECONFIG", support::kubeconfig())
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(err)
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("starting alertcall run: {e}"));
        Self {
            child,
            log,
            _dir: dir,
        }
    }

    fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn terminate(&self) {
        let pid = self
            .child
            .id()
            .unwrap_or_else(|| panic!("the replica already exited:\n{}", self.logs()));
        let status = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .unwrap_or_else(|e| panic!("kill: {e}"));
        assert!(status.success(), "kill -TERM {pid} failed");
    }
}

/// The chart's terminationGracePeriodSeconds: how long a kubelet waits after SIGTERM before
/// SIGKILL.
async fn grace_period() -> Duration {
    let text = support::helm_off_runtime(&["render", "charts/alertcall"])
        .await
        .unwrap_or_else(|e| panic!("helm render: {e}"));
    let documents = support::yaml_documents(&text);
    let deployment = documents
        .iter()
        .find(|d| d["kind"] == "Deployment")
        .unwrap_or_else(|| panic!("the chart renders no Deployment"));
    // Kubernetes' default when the Pod does not say.
    let seconds = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        .as_u64()
        .unwrap_or(30);
    Duration::from_secs(seconds)
}

async fn exits_within_grace(replica: &mut Replica) {
    let exited = tokio::time::timeout(grace_period().await, replica.child.wait()).await;
    match exited {
        Ok(Ok(status)) => assert!(
            status.success(),
            "the replica exited with {status} on SIGTERM:\n{}",
            replica.logs()
        ),
        Ok(Err(error)) => panic!("waiting for the replica: {error}"),
        Err(_) => panic!(
            "the replica outlived the grace period after SIGTERM (a kubelet would kill it):\n{}",
            replica.logs()
        ),
    }
}

async fn holder(harness: &Harness) -> Option<String> {
    let leases: Api<Lease> = Api::namespaced(harness.client.clone(), &harness.ns.name);
    leases
        .get_opt("alertcall-leader")
        .await
        .ok()
        .flatten()
        .and_then(|l| l.spec)
        .and_then(|s| s.holder_identity)
}

#[tokio::test]
async fn sigterm_mid_page_the_standby_goes_on_without_calling_twice() {
    // Alice picks up 20 s after the call is placed and presses 1: the call is live across the
    // leader's exit and the standby's takeover.
    let script = Script {
        default: Recipient {
            outcome: Outcome::Answer,
            answer_after: 20.0,
            press: Some("1".into()),
            hangup_after: None,
            hangup_after_press: None,
        },
        ..Script::default()
    };
    let harness = Harness::new("sigterm", script, 1.0).await;
    let mut first = Replica::start(&harness, "first");
    let leading = support::within(support::WAIT, || async {
        (holder(&harness).await.as_deref() == Some("first")).then_some(())
    })
    .await;
    assert!(
        leading.is_some(),
        "the first replica never led:\n{}",
        first.logs()
    );
    let second = Replica::start(&harness, "second");

    harness
        .policy(paging::policy_spec(
            json!({"mode": "Sequential", "ringTimeoutSeconds": 60, "rounds": 1}),
            &[("alice", ALICE)],
            1,
        ))
        .await;
    harness.page("disk-full").await;
    let dialed = harness
        .wait_status("disk-full", "a call placed", |s| {
            s.attempts.iter().any(|a| a.call_sid.is_some())
        })
        .await;
    assert_eq!(dialed.attempts.len(), 1, "{dialed:#?}");

    first.terminate();
    exits_within_grace(&mut first).await;

    let status = harness.wait_phase("disk-full", Phase::Acknowledged).await;
    assert_eq!(status.acknowledged_by.as_deref(), Some("alice"));
    assert_eq!(status.attempts.len(), 1, "{status:#?}");
    assert_eq!(holder(&harness).await.as_deref(), Some("second"));
    let ledger = harness.sim.ledger();
    assert_eq!(
        paging::calls_to(&ledger),
        BTreeMap::from([(ALICE.to_string(), 1)]),
        "the standby's log:\n{}",
        second.logs()
    );

    // The policy's finalizer undoes its Twilio configuration, so it goes while a replica runs.
    let policies: Api<alertcall::api::CallPolicy> =
        Api::namespaced(harness.client.clone(), &harness.ns.name);
    let _ = policies.delete("oncall", &Default::default()).await;
    support::eventually("the CallPolicy's cleanup", || async {
        matches!(policies.get_opt("oncall").await, Ok(None)).then_some(())
    })
    .await;
    drop(second);
    harness.sim.shutdown().await;
    harness.ns.delete().await;
}

/// SIGTERM while Twilio has not yet accepted a call (it asked to retry in 5 s): the dial under
/// way finishes and its call's SID is recorded before the replica exits, and the Lease is
/// released; the standby finds the page consistent and goes on with no second call.
#[tokio::test]
async fn sigterm_during_a_dial_records_its_call_before_exiting() {
    let script = Script {
        default: Recipient {
            outcome: Outcome::Answer,
            answer_after: 10.0,
            press: Some("1".into()),
            hangup_after: None,
            hangup_after_press: None,
        },
        ..Script::default()
    };
    let harness = Harness::new("sigterm-dial", script, 1.0).await;
    harness.sim.inject_fault(FaultSpec {
        method: Some("POST".into()),
        times: Some(1),
        ..FaultSpec::new(Fault::TooManyRequests {
            retry_after_seconds: 5,
        })
        .on_path("/Calls.json")
    });
    let mut first = Replica::start(&harness, "first");
    let leading = support::within(support::WAIT, || async {
        (holder(&harness).await.as_deref() == Some("first")).then_some(())
    })
    .await;
    assert!(
        leading.is_some(),
        "the first replica never led:\n{}",
        first.logs()
    );
    let second = Replica::start(&harness, "second");
    harness
        .policy(paging::policy_spec(
            json!({"mode": "Sequential", "ringTimeoutSeconds": 60, "rounds": 1}),
            &[("alice", ALICE)],
            1,
        ))
        .await;
    harness.page("disk-full").await;
    // Twilio turned the dial away once: the replica now waits 5 s to send it again.
    harness
        .wait_ledger("the dial turned away with 429", |ledger| {
            ledger.entries.iter().any(|e| {
                matches!(&e.event, Event::Request { method, path, status: 429, .. }
                    if method == "POST" && path.contains("/Calls.json"))
            })
        })
        .await;

    first.terminate();
    exits_within_grace(&mut first).await;
    let status = harness.status("disk-full").await;
    assert!(
        status.attempts.len() == 1 && status.attempts[0].call_sid.is_some(),
        "the dial under way at SIGTERM left no recorded call: {status:#?}\n{}",
        first.logs()
    );
    assert_ne!(
        holder(&harness).await.as_deref(),
        Some("first"),
        "the stopped replica did not release the Lease"
    );

    let status = harness.wait_phase("disk-full", Phase::Acknowledged).await;
    assert_eq!(status.acknowledged_by.as_deref(), Some("alice"));
    assert_eq!(status.attempts.len(), 1, "{status:#?}");
    assert_eq!(
        paging::calls_to(&harness.sim.ledger()),
        BTreeMap::from([(ALICE.to_string(), 1)]),
        "the standby's log:\n{}",
        second.logs()
    );

    let policies: Api<alertcall::api::CallPolicy> =
        Api::namespaced(harness.client.clone(), &harness.ns.name);
    let _ = policies.delete("oncall", &Default::default()).await;
    support::eventually("the CallPolicy's cleanup", || async {
        matches!(policies.get_opt("oncall").await, Ok(None)).then_some(())
    })
    .await;
    drop(second);
    harness.sim.shutdown().await;
    harness.ns.delete().await;
}
