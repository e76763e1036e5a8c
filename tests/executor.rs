//! `alertcall demo` and the AlertCall controller share one executor of the escalation's actions
//! (`alertcall::page::Executor`): the same page, through the demo's loop (status in memory) and
//! through the operator on the real control plane (status in Kubernetes), calls the same people in
//! the same order with the same outcomes.

mod support;

use alertcall::api::{AlertCallStatus, AttemptStatus, CallPolicy, Phase};
use alertcall::cli::demo;
use alertcall::page::hooks::Hooks;
use alertcall::twilio::sim::{Recipient, Script};
use serde_json::json;
use support::paging::*;

const SCALE: f64 = 20.0;

/// (recipient, round, outcome, acknowledged) of every attempt, in order. An acknowledged call
/// is in the room, where either side may stop watching it before or after it ends: its status
/// is not an outcome of the escalation.
fn attempts(status: &AlertCallStatus) -> Vec<(String, u32, Option<AttemptStatus>, bool)> {
    status
        .attempts
        .iter()
        .map(|a| {
            let outcome = (!a.acknowledged).then_some(a.status);
            (a.recipient.clone(), a.round, outcome, a.acknowledged)
        })
        .collect()
}

#[tokio::test]
async fn the_demo_and_the_operator_page_alike() {
    // Alice lets it ring out; Bob answers and presses 1.
    let script = Script::default()
        .with(ALICE, no_answer())
        .with(BOB, Recipient::presses(2.0, "1"));
    let spec = policy_spec(
        json!({"mode": "Sequential", "ringTimeoutSeconds": 10, "rounds": 1}),
        &[("alice", ALICE), ("bob", BOB)],
        10,
    );

    let policy: CallPolicy = serde_json::from_value(json!({
        "apiVersion": "alertcall.dev/v1alpha1",
        "kind": "CallPolicy",
        "metadata": {"name": "oncall", "namespace": "default"},
        "spec": spec.clone(),
    }))
    .unwrap_or_else(|e| panic!("policy: {e}"));
    let demoed = demo::page(&policy, "Disk full on node one", script.clone(), SCALE)
        .await
        .unwrap_or_else(|e| panic!("demo page: {e}"));

    // NB: without a public URL the operator, like the demo, has Twilio host the acknowledgement
    // document and polls the calls instead of hearing status callbacks.
    let h = Harness::new("exec-same", script, SCALE).await;
    let op = h
        .operator("same", any_port(), false, Hooks::default())
        .await;
    h.policy(spec).await;
    h.page("page").await;
    h.wait_phase("page", Phase::Acknowledged).await;
    // The demo stops once every attempt is final or acknowledged; so does this.
    let operated = h
        .wait_status("page", "every attempt settled", |s| {
            s.attempts
                .iter()
                .all(|a| a.status.is_final() || a.acknowledged)
        })
        .await;
    h.finish(vec![op]).await;

    assert_eq!(demoed.phase, Phase::Acknowledged, "{demoed:#?}");
    assert_eq!(demoed.acknowledged_by.as_deref(), Some("bob"));
    assert_eq!(operated.acknowledged_by.as_deref(), Some("bob"));
    assert_eq!(
        attempts(&demoed),
        attempts(&operated),
        "demo: {demoed:#?}\noperator: {operated:#?}"
    );
    assert_eq!(
        attempts(&operated)
            .iter()
            .map(|(who, round, _, acked)| (who.as_str(), *round, *acked))
            .collect::<Vec<_>>(),
        vec![("alice", 1, false), ("bob", 1, true)]
    );
    assert_eq!(operated.attempts[0].status, AttemptStatus::NoAnswer);
}
