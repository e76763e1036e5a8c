//! Acknowledgements that hold on real Twilio: the keypress is recorded in the Sync ledger by the
//! acknowledgement function, so a person who presses and hangs up at once, before reaching the
//! room, acknowledged. The simulator serves call Events only 15 minutes after a call ends, as
//! Twilio does, and no callback reaches the operator (no public URL): the ledger is all it has.

mod support;

use alertcall::api::Phase;
use alertcall::page::hooks::Hooks;
use alertcall::twilio::sim::{Recipient, Script};
use serde_json::json;
use support::paging::*;

#[tokio::test]
async fn sequential_a_press_then_hang_up_acknowledges_and_nobody_else_is_called() {
    let script = Script::default()
        .with(ALICE, Recipient::presses(2.0, "1").hangup_after_press(1.0))
        .with(BOB, Recipient::presses(2.0, "1"));
    let h = Harness::new("ledger-seq", script, 10.0).await;
    let op = h
        .operator("ledger", any_port(), false, Hooks::default())
        .await;
    h.policy(policy_spec(
        json!({"mode": "Sequential", "ringTimeoutSeconds": 30, "rounds": 2}),
        &[("alice", ALICE), ("bob", BOB)],
        10,
    ))
    .await;
    h.page("page").await;
    let status = h.wait_phase("page", Phase::Acknowledged).await;
    assert_eq!(status.acknowledged_by.as_deref(), Some("alice"));
    h.wait_settled("page", &[&op]).await;
    let ledger = h.sim.ledger();
    assert!(sid_of(&ledger, BOB).is_empty(), "bob was dialed");
    assert_eq!(sid_of(&ledger, ALICE).len(), 1);
    // She never reached the room: the room cannot have told the operator.
    assert!(ledger.participants_of(&h.room()).is_empty());
    h.finish(vec![op]).await;
}

#[tokio::test]
async fn all_acked_two_people_press_and_hang_up_and_nobody_is_called_again() {
    let script = Script::default()
        .with(ALICE, Recipient::presses(1.0, "1").hangup_after_press(1.0))
        .with(BOB, Recipient::presses(2.0, "1").hangup_after_press(1.0));
    let h = Harness::new("ledger-all", script, 10.0).await;
    let op = h
        .operator("ledger", any_port(), false, Hooks::default())
        .await;
    h.policy(policy_spec(
        json!({"mode": "Simultaneous", "completion": "AllAcked", "ringTimeoutSeconds": 30, "rounds": 3, "roundIntervalSeconds": 0}),
        &[("alice", ALICE), ("bob", BOB)],
        10,
    ))
    .await;
    h.page("page").await;
    let status = h.wait_phase("page", Phase::Acknowledged).await;
    assert!(
        status.attempts.iter().all(|a| a.acknowledged),
        "{status:#?}"
    );
    h.wait_settled("page", &[&op]).await;
    let counts = calls_to(&h.sim.ledger());
    assert_eq!(
        counts.values().copied().collect::<Vec<_>>(),
        vec![1, 1],
        "{counts:?}"
    );
    h.finish(vec![op]).await;
}
