//! `kubectl alertcall`: the binary, called through a `kubectl-alertcall` symlink (and once
//! through kubectl's own plugin discovery), against the test control plane, with the operator in
//! process calling the simulator.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use alertcall::api::{AlertCall, CallPolicy, Phase};
use alertcall::page::hooks::Hooks;
use alertcall::twilio::sim::{Event, Recipient, Script};
use kube::api::{Api, Patch};
use serde_json::json;
use support::paging::*;

/// A temporary directory holding the `kubectl-alertcall` symlink to the built binary.
struct Plugin {
    dir: PathBuf,
    kubeconfig: PathBuf,
}

impl Plugin {
    fn new(name: &str) -> Plugin {
        let dir =
            std::env::temp_dir().join(format!("alertcall-plugin-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("temp dir: {e}"));
        std::os::unix::fs::symlink(
            env!("CARGO_BIN_EXE_alertcall"),
            dir.join("kubectl-alertcall"),
        )
        .unwrap_or_else(|e| panic!("symlink: {e}"));
        Plugin {
            dir,
            kubeconfig: support::kubeconfig(),
        }
    }

    /// Runs `kubectl-alertcall ARGS` directly.
    fn run(&self, args: &[&str]) -> Output {
        self.command(&self.dir.join("kubectl-alertcall"), args)
    }

    /// Runs `kubectl alertcall ARGS`: kubectl finds the plugin on PATH.
    fn kubectl(&self, args: &[&str]) -> Output {
        let mut all = vec!["alertcall"];
        all.extend_from_slice(args);
        self.command(Path::new("kubectl"), &all)
    }

    fn command(&self, program: &Path, args: &[&str]) -> Output {
        let path = format!(
            "{}:{}",
            self.dir.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        Command::new(program)
            .args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .env("PATH", path)
            .output()
            .unwrap_or_else(|e| panic!("running {}: {e}", program.display()))
    }
}

impl Drop for Plugin {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn ok(output: &Output) -> String {
    assert!(
        output.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn fails(output: &Output) -> String {
    assert!(
        !output.status.success(),
        "expected a failure; stdout: {}",
        String::from_utf8_lossy(&output.stdout)
    );
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[tokio::test]
async fn test_records_a_passed_and_a_failed_recipient_and_nobody_joins_the_room() {
    let script = Script::default().with(ALICE, Recipient::presses(1.0, "1"));
    let h = Harness::new("plugin-test", script, 20.0).await;
    h.sim
        .set_invalid_number(BOB, 21211)
        .unwrap_or_else(|e| panic!("{e}"));
    // NB: hosted documents and the acknowledgement function, as in production.
    let op = h
        .operator("plugin", any_port(), false, Hooks::default())
        .await;
    h.policy(policy_spec(
        json!({"mode": "Sequential", "ringTimeoutSeconds": 10, "rounds": 3}),
        &[("alice", ALICE), ("bob", BOB)],
        10,
    ))
    .await;
    let plugin = Plugin::new("test");

    // Through kubectl's plugin discovery.
    let out = ok(&plugin.kubectl(&["-n", &h.ns.name, "test", "oncall"]));
    let name = out.trim().to_string();
    assert!(name.starts_with("oncall-test-"), "{out}");
    let call = h.calls().get(&name).await.unwrap_or_else(|e| panic!("{e}"));
    assert!(call.spec.test);
    assert_eq!(
        call.spec.summary,
        "This is a test call from alertcall for policy oncall."
    );

    let policies: Api<CallPolicy> = Api::namespaced(h.client.clone(), &h.ns.name);
    let status = support::wait_for("both recipients' test results", PAGE_WAIT, || {
        let policies = policies.clone();
        async move {
            let status = policies.get("oncall").await.ok()?.status?;
            (status.recipients.len() == 2).then_some(status)
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(status.tested.as_deref(), Some("1/2"));
    let alice = &status.recipients[0];
    assert_eq!(alice.name, "alice");
    assert!(
        alice.passed && alice.answered && alice.acknowledged,
        "{alice:?}"
    );
    assert_eq!(alice.alert_call, name);
    assert!(alice.last_test_time.is_some());
    let bob = &status.recipients[1];
    assert_eq!(bob.name, "bob");
    assert!(!bob.passed && !bob.answered && !bob.acknowledged, "{bob:?}");
    assert_eq!(bob.twilio_error_code, Some(21211));

    // One call each, no escalation past the test, nobody in the room.
    let ledger = h.sim.ledger();
    assert_eq!(sid_of(&ledger, ALICE).len(), 1);
    assert!(ledger.participants_of(&h.room()).is_empty());
    let alice_sid = sid_of(&ledger, ALICE)[0].clone();
    let actions: Vec<String> = ledger
        .entries
        .iter()
        .filter_map(|entry| match &entry.event {
            Event::Webhook {
                call_sid: Some(sid),
                purpose,
                url,
                ..
            } if *sid == alice_sid && purpose == "gather-action" => Some(url.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(actions.len(), 1, "{actions:?}");
    assert!(
        !actions[0].contains("room="),
        "no room for a test: {}",
        actions[0]
    );
    assert!(actions[0].contains("The+test+passed"), "{}", actions[0]);
    let page = h.status(&name).await;
    assert_eq!(page.attempts.len(), 2, "{:?}", page.attempts);

    // The CallPolicy controller's own status writes keep the results.
    let get = Command::new("kubectl")
        .args(["get", "cp", "oncall", "-n", &h.ns.name])
        .env("KUBECONFIG", &plugin.kubeconfig)
        .output()
        .unwrap_or_else(|e| panic!("kubectl get: {e}"));
    let table = ok(&get);
    assert!(
        table.lines().next().unwrap_or_default().contains("TESTED"),
        "{table}"
    );
    assert!(table.contains("1/2"), "{table}");

    // Only bob now: his entry is replaced, alice's kept.
    h.sim.clear_invalid_number(BOB);
    h.sim.set_script(
        Script::default()
            .with(ALICE, Recipient::presses(1.0, "1"))
            .with(BOB, Recipient::presses(1.0, "1")),
    );
    let out = ok(&plugin.run(&["-n", &h.ns.name, "test", "oncall", "--recipient", "bob"]));
    let second = out.trim().to_string();
    let status = support::wait_for("bob passed", PAGE_WAIT, || {
        let policies = policies.clone();
        async move {
            let status = policies.get("oncall").await.ok()?.status?;
            (status.tested.as_deref() == Some("2/2")).then_some(status)
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(status.recipients[0].alert_call, name);
    assert_eq!(status.recipients[1].alert_call, second);
    assert_eq!(
        sid_of(&h.sim.ledger(), ALICE).len(),
        1,
        "alice not called again"
    );

    // The recipients change: TESTED counts the policy's recipients as they are now.
    let recount = |people: &'static [(&'static str, &'static str)], tested: &'static str| {
        let policies = policies.clone();
        async move {
            let patch = json!({"spec": {"recipients": recipients(people)}});
            policies
                .patch("oncall", &Default::default(), &Patch::Merge(&patch))
                .await
                .unwrap_or_else(|e| panic!("changing the recipients: {e}"));
            support::wait_for(&format!("TESTED {tested}"), PAGE_WAIT, || {
                let policies = policies.clone();
                async move {
                    let status = policies.get("oncall").await.ok()?.status?;
                    (status.tested.as_deref() == Some(tested)).then_some(status)
                }
            })
            .await
            .unwrap_or_else(|e| panic!("{e}"))
        }
    };
    let status = recount(&[("alice", ALICE), ("bob", BOB), ("carol", CAROL)], "2/3").await;
    assert_eq!(status.recipients.len(), 2, "carol has no test yet");
    let status = recount(&[("alice", ALICE), ("carol", CAROL)], "1/2").await;
    let tested: Vec<&str> = status.recipients.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(tested, ["alice"], "bob's result left with bob");

    // Bad input: a clear error and a non-zero exit.
    let err = fails(&plugin.run(&["-n", &h.ns.name, "test", "nosuch"]));
    assert!(err.contains("CallPolicy \"nosuch\" not found"), "{err}");
    let err = fails(&plugin.run(&["-n", &h.ns.name, "test", "oncall", "--recipient", "mallory"]));
    assert!(err.contains("no recipient \"mallory\""), "{err}");
    assert!(err.contains("alice, carol"), "{err}");
    h.finish(vec![op]).await;
}

#[tokio::test]
async fn page_ack_and_who_through_the_binary() {
    let script = Script::default().with(ALICE, no_answer());
    let h = Harness::new("plugin-page", script, 1.0).await;
    let op = h
        .operator("plugin", any_port(), true, Hooks::default())
        .await;
    h.policy(policy_spec(
        json!({"mode": "Sequential", "order": "RoundRobin", "ringTimeoutSeconds": 60, "rounds": 2}),
        &[("alice", ALICE), ("bob", BOB), ("carol", CAROL)],
        10,
    ))
    .await;
    let plugin = Plugin::new("page");
    let ns = h.ns.name.as_str();

    let who = ok(&plugin.run(&["-n", ns, "who", "oncall"]));
    let lines: Vec<&str> = who.lines().collect();
    assert!(
        lines[1].starts_with("strategy: Sequential, RoundRobin order"),
        "{who}"
    );
    assert!(lines[2].starts_with("rounds: 2"), "{who}");
    assert_eq!(lines[3], format!("1. alice {ALICE}"), "{who}");

    let err = fails(&plugin.run(&["-n", ns, "page", "nosuch", "--message", "x"]));
    assert!(err.contains("CallPolicy \"nosuch\" not found"), "{err}");
    let out = ok(&plugin.run(&["-n", ns, "page", "oncall", "--message", "Disk full on db-0"]));
    let name = out.trim().to_string();
    assert!(name.starts_with("oncall-"), "{out}");
    let call: AlertCall = h.calls().get(&name).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(call.spec.summary, "Disk full on db-0");
    assert!(!call.spec.test);
    h.wait_status(&name, "alice is called", |s| !s.attempts.is_empty())
        .await;

    let out = ok(&plugin.run(&["-n", ns, "ack", &name]));
    assert!(out.contains("acknowledged"), "{out}");
    let status = h.wait_phase(&name, Phase::Acknowledged).await;
    assert_eq!(status.acknowledged_by.as_deref(), Some("kubectl"));
    let err = fails(&plugin.run(&["-n", ns, "ack", &name]));
    assert!(
        err.contains("already finished (phase Acknowledged)"),
        "{err}"
    );
    let err = fails(&plugin.run(&["-n", ns, "ack", "nosuch"]));
    assert!(err.contains("AlertCall \"nosuch\" not found"), "{err}");

    // The page started at alice; the next one starts at bob, now and at a later time.
    let who = ok(&plugin.run(&["-n", ns, "who", "oncall"]));
    assert!(
        who.contains(&format!("1. bob {BOB}\n2. carol {CAROL}\n3. alice {ALICE}")),
        "{who}"
    );
    let later = ok(&plugin.run(&["-n", ns, "who", "oncall", "--at", "2099-01-01T00:00:00Z"]));
    assert!(later.contains("1. bob"), "{later}");
    let err = fails(&plugin.run(&["-n", ns, "who", "oncall", "--at", "tomorrow"]));
    assert!(err.contains("not an RFC 3339 time"), "{err}");

    // `--context` picks the kubeconfig's context, as kubectl does.
    let kubeconfig = kube::config::Kubeconfig::read_from(&plugin.kubeconfig)
        .unwrap_or_else(|e| panic!("kubeconfig: {e}"));
    let context = kubeconfig.current_context.unwrap_or_default();
    let with_context = ok(&plugin.run(&["--context", &context, "-n", ns, "who", "oncall"]));
    assert!(with_context.contains("1. bob"), "{with_context}");
    let err = fails(&plugin.run(&["--context", "nosuch", "-n", ns, "who", "oncall"]));
    assert!(err.contains("context \"nosuch\""), "{err}");

    // `alertcall kubectl` offers the same commands.
    let mut same = Command::new(env!("CARGO_BIN_EXE_alertcall"));
    let output = same
        .args(["kubectl", "-n", ns, "who", "oncall"])
        .env("KUBECONFIG", &plugin.kubeconfig)
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    let rest = |text: &str| text.lines().skip(1).collect::<Vec<_>>().join("\n");
    assert_eq!(rest(&ok(&output)), rest(&who));
    h.finish(vec![op]).await;
}

#[tokio::test]
async fn test_calls_count_against_and_are_held_by_the_hourly_limit() {
    let script = Script::default().with(ALICE, Recipient::presses(1.0, "1"));
    let h = Harness::new("plugin-limit", script, 20.0).await;
    let op = h
        .operator("plugin", any_port(), true, Hooks::default())
        .await;
    let mut spec = policy_spec(
        json!({"mode": "Sequential", "ringTimeoutSeconds": 10, "rounds": 1}),
        &[("alice", ALICE), ("bob", BOB)],
        10,
    );
    spec["limits"]["maxCallsPerHour"] = json!(1);
    h.policy(spec).await;
    let plugin = Plugin::new("limit");
    let ns = h.ns.name.as_str();

    let first = ok(&plugin.run(&["-n", ns, "test", "oncall", "--recipient", "alice"]));
    h.wait_phase(first.trim(), Phase::Acknowledged).await;
    // The test's call used the hour's only call: a page is refused, and so is the next test.
    let page = ok(&plugin.run(&["-n", ns, "page", "oncall", "--message", "Disk full"]));
    let status = h.wait_phase(page.trim(), Phase::Failed).await;
    assert!(status.attempts.is_empty(), "{:?}", status.attempts);
    let second = ok(&plugin.run(&["-n", ns, "test", "oncall", "--recipient", "bob"]));
    h.wait_phase(second.trim(), Phase::Failed).await;
    let policies: Api<CallPolicy> = Api::namespaced(h.client.clone(), ns);
    let status = support::wait_for("bob's failed test", PAGE_WAIT, || {
        let policies = policies.clone();
        async move {
            let status = policies.get("oncall").await.ok()?.status?;
            (status.recipients.len() == 2).then_some(status)
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(status.tested.as_deref(), Some("1/2"));
    let bob = &status.recipients[1];
    assert!(!bob.passed, "{bob:?}");
    let message = bob.message.clone().unwrap_or_default();
    assert!(message.contains("maxCallsPerHour"), "{message}");
    assert!(
        sid_of(&h.sim.ledger(), BOB).is_empty(),
        "bob was never called"
    );
    h.finish(vec![op]).await;
}
