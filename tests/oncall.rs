//! Schedule recipients and escalation tiers end to end: the operator in process on the real
//! control plane, calling through the in-process Twilio simulator. Who is on call comes from
//! the schedules' own time: a rotation started years ago covers now, an override is put around
//! the current wall clock, a gap is a rotation that starts in 2099.

mod support;

use alertcall::api::conditions::find;
use alertcall::api::{AlertCallStatus, CallPolicy, OnCallSchedule, Phase};
use alertcall::page::hooks::Hooks;
use alertcall::twilio::sim::{Recipient, Script};
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;
use support::paging::*;

/// alice, bob and carol; `rotation` members take turns from `start` in week-long shifts.
fn schedule(name: &str, rotation: &[&str], start: &str) -> serde_json::Value {
    json!({
        "apiVersion": "alertcall.dev/v1alpha1",
        "kind": "OnCallSchedule",
        "metadata": {"name": name},
        "spec": {
            "timeZone": "UTC",
            "members": [
                {"name": "alice", "phone": ALICE},
                {"name": "bob", "phone": BOB},
                {"name": "carol", "phone": CAROL}
            ],
            "rotations": [
                {"name": "weekly", "members": rotation, "start": start, "shiftLength": "87600h"}
            ]
        }
    })
}

/// A policy spec, Sequential, one round, with `recipients` as given and an optional next tier.
fn spec(recipients: serde_json::Value, on_exhausted: Option<&str>) -> serde_json::Value {
    let mut spec = policy_spec(
        json!({"mode": "Sequential", "ringTimeoutSeconds": 10, "rounds": 1}),
        &[],
        10,
    );
    spec["recipients"] = recipients;
    if let Some(next) = on_exhausted {
        spec["onExhausted"] = json!({"policyRef": {"name": next}});
    }
    spec
}

async fn create_policy(h: &Harness, name: &str, spec: serde_json::Value) {
    let api: Api<CallPolicy> = Api::namespaced(h.client.clone(), &h.ns.name);
    support::create(
        &api,
        json!({"apiVersion": "alertcall.dev/v1alpha1", "kind": "CallPolicy",
               "metadata": {"name": name}, "spec": spec}),
    )
    .await;
}

async fn create_schedule(h: &Harness, object: serde_json::Value) {
    let api: Api<OnCallSchedule> = Api::namespaced(h.client.clone(), &h.ns.name);
    support::create(&api, object).await;
}

/// Event reasons recorded on the object named `name`.
async fn event_reasons(h: &Harness, name: &str) -> Vec<String> {
    let events: Api<Event> = Api::namespaced(h.client.clone(), &h.ns.name);
    match events.list(&Default::default()).await {
        Ok(list) => list
            .items
            .into_iter()
            .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
            .filter_map(|e| e.reason)
            .collect(),
        Err(error) => panic!("listing events: {error}"),
    }
}

async fn wait_event(h: &Harness, name: &str, reason: &str) {
    let seen = support::within(support::WAIT, || async {
        event_reasons(h, name)
            .await
            .iter()
            .any(|r| r == reason)
            .then_some(())
    })
    .await;
    if seen.is_none() {
        panic!(
            "no {reason} Event on {name}: {:?}",
            event_reasons(h, name).await
        );
    }
}

async fn policy_condition(
    h: &Harness,
    policy: &str,
    type_: &str,
) -> Option<(String, String, String)> {
    let api: Api<CallPolicy> = Api::namespaced(h.client.clone(), &h.ns.name);
    let policy = api.get_opt(policy).await.ok().flatten()?;
    let status = policy.status?;
    find(&status.conditions, type_).map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
}

fn condition(status: &AlertCallStatus, type_: &str) -> Option<(String, String)> {
    find(&status.conditions, type_).map(|c| (c.status.clone(), c.reason.clone()))
}

#[tokio::test]
async fn a_schedule_recipient_calls_who_is_on_call_now_and_an_override_wins() {
    let script = Script::default()
        .with(ALICE, Recipient::presses(1.0, "1"))
        .with(BOB, Recipient::presses(1.0, "1"));
    let h = Harness::new("oncall-now", script, 20.0).await;
    let op = h.operator("now", any_port(), false, Hooks::default()).await;
    create_schedule(
        &h,
        schedule("sre", &["alice", "carol"], "2020-01-01T00:00:00"),
    )
    .await;
    h.policy(spec(json!([{"name": "primary", "schedule": "sre"}]), None))
        .await;
    h.page("first").await;

    let status = h.wait_phase("first", Phase::Acknowledged).await;
    assert_eq!(status.attempts.len(), 1, "{status:#?}");
    let attempt = &status.attempts[0];
    assert_eq!(attempt.id, "r1-primary:alice");
    assert_eq!(attempt.recipient, "primary");
    assert_eq!(attempt.schedule.as_deref(), Some("sre"));
    assert_eq!(attempt.member.as_deref(), Some("alice"));
    assert_eq!(attempt.address.as_deref(), Some(ALICE));
    assert_eq!(status.acknowledged_by.as_deref(), Some("primary/alice"));
    assert_eq!(
        condition(&status, "RecipientsOnCall"),
        Some(("True".into(), "OnCall".into()))
    );

    // An override around now puts bob on call; the next page calls him, not alice.
    let api: Api<OnCallSchedule> = Api::namespaced(h.client.clone(), &h.ns.name);
    let patch = json!({"spec": {"overrides": [{"member": "bob", "start": support::utc_local(-3600), "end": support::utc_local(3600)}]}});
    api.patch("sre", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap_or_else(|e| panic!("patching the schedule: {e}"));
    h.page("second").await;
    let status = h.wait_phase("second", Phase::Acknowledged).await;
    let attempt = &status.attempts[0];
    assert_eq!(
        (attempt.member.as_deref(), attempt.address.as_deref()),
        (Some("bob"), Some(BOB))
    );
    assert_eq!(status.acknowledged_by.as_deref(), Some("primary/bob"));
    let ledger = h.sim.ledger();
    let order: Vec<String> = created(&ledger).into_iter().map(|(to, _, _)| to).collect();
    assert_eq!(order, vec![ALICE, BOB]);
    h.finish(vec![op]).await;
}

#[tokio::test]
async fn an_empty_schedule_is_skipped_with_a_condition_and_an_event_never_silently() {
    let script = Script::default().with(CAROL, Recipient::presses(1.0, "1"));
    let h = Harness::new("oncall-gap", script, 20.0).await;
    let op = h.operator("gap", any_port(), false, Hooks::default()).await;
    // The rotation starts in 2099: nobody is on call now.
    create_schedule(&h, schedule("gap", &["alice"], "2099-01-01T00:00:00")).await;
    h.policy(spec(
        json!([
            {"name": "primary", "schedule": "gap"},
            {"name": "backup", "schedule": "missing"},
            {"name": "carol", "phone": CAROL}
        ]),
        None,
    ))
    .await;
    let references =
        support::eventually("ReferencesResolved names the missing schedule", || async {
            policy_condition(&h, "oncall", "ReferencesResolved")
                .await
                .filter(|(status, _, _)| status == "False")
        })
        .await;
    assert_eq!(references.1, "ScheduleNotFound");
    assert!(
        references.2.contains("OnCallSchedule missing"),
        "{references:?}"
    );

    // Both empty schedules are passed over at once; carol is called and acknowledges.
    h.page("skips").await;
    let status = h.wait_phase("skips", Phase::Acknowledged).await;
    let skipped: Vec<(&str, &str)> = status
        .skipped
        .iter()
        .map(|s| (s.recipient.as_str(), s.schedule.as_str()))
        .collect();
    assert_eq!(skipped, vec![("primary", "gap"), ("backup", "missing")]);
    assert!(
        status.skipped[1].message.contains("not found"),
        "{status:#?}"
    );
    let ids: Vec<&str> = status.attempts.iter().map(|a| a.id.as_str()).collect();
    assert_eq!(ids, vec!["r1-carol"]);
    assert_eq!(
        condition(&status, "RecipientsOnCall"),
        Some(("False".into(), "ScheduleEmpty".into()))
    );
    wait_event(&h, "skips", "ScheduleEmpty").await;

    // With nobody else to call, the page does not end as if done: it is Exhausted, and says why.
    let api: Api<CallPolicy> = Api::namespaced(h.client.clone(), &h.ns.name);
    let patch = json!({"spec": {"recipients": [{"name": "primary", "schedule": "gap"}]}});
    api.patch("oncall", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap_or_else(|e| panic!("patching the policy: {e}"));
    h.page("nobody").await;
    let status = h.wait_phase("nobody", Phase::Exhausted).await;
    assert!(status.attempts.is_empty(), "{status:#?}");
    assert_eq!(status.skipped.len(), 1);
    assert_eq!(
        condition(&status, "RecipientsOnCall"),
        Some(("False".into(), "NobodyOnCall".into()))
    );
    wait_event(&h, "nobody", "ScheduleEmpty").await;
    wait_event(&h, "nobody", "Exhausted").await;
    assert_eq!(calls_to(&h.sim.ledger()).get(ALICE), None);
    h.finish(vec![op]).await;
}

#[tokio::test]
async fn an_exhausted_primary_continues_with_the_secondary_on_the_same_alertcall() {
    let script = Script::default()
        .with(ALICE, no_answer())
        .with(CAROL, Recipient::presses(1.0, "1"));
    let h = Harness::new("oncall-tier", script, 20.0).await;
    let op = h
        .operator("tier", any_port(), false, Hooks::default())
        .await;
    create_schedule(&h, schedule("sre", &["alice"], "2020-01-01T00:00:00")).await;
    create_policy(
        &h,
        "secondary",
        spec(json!([{"name": "carol", "phone": CAROL}]), None),
    )
    .await;
    h.policy(spec(
        json!([{"name": "primary", "schedule": "sre"}]),
        Some("secondary"),
    ))
    .await;
    h.page("page").await;

    let status = h.wait_phase("page", Phase::Acknowledged).await;
    assert_eq!(status.tier, 2);
    assert_eq!(status.tier_policy.as_deref(), Some("secondary"));
    assert_eq!(status.exhausted_policies, vec!["oncall".to_string()]);
    let attempts: Vec<(&str, u32, bool)> = status
        .attempts
        .iter()
        .map(|a| (a.id.as_str(), a.tier, a.acknowledged))
        .collect();
    assert_eq!(
        attempts,
        vec![("r1-primary:alice", 0, false), ("t2-r1-carol", 2, true)]
    );
    assert_eq!(status.acknowledged_by.as_deref(), Some("carol"));
    // The second tier acknowledges through its own documents and joins its own room.
    let room = format!("{}-secondary", h.ns.name);
    assert_eq!(status.conference_room.as_deref(), Some(room.as_str()));
    let carol = status.attempts[1].call_sid.clone().unwrap_or_default();
    h.wait_ledger("carol in the secondary's room", |l| {
        l.participants_of(&room).contains(&carol)
    })
    .await;
    assert_eq!(
        condition(&status, "Escalated"),
        Some(("True".into(), "Escalated".into()))
    );
    wait_event(&h, "page", "Escalated").await;
    h.finish(vec![op]).await;
}

#[tokio::test]
async fn escalation_loops_are_refused_and_a_page_reaching_one_stops() {
    let script = Script::default()
        .with(ALICE, no_answer())
        .with(BOB, no_answer());
    let h = Harness::new("oncall-loop", script, 20.0).await;
    let op = h
        .operator("loop", any_port(), false, Hooks::default())
        .await;
    create_policy(
        &h,
        "second",
        spec(json!([{"name": "bob", "phone": BOB}]), Some("oncall")),
    )
    .await;
    h.policy(spec(
        json!([{"name": "alice", "phone": ALICE}]),
        Some("second"),
    ))
    .await;
    for policy in ["oncall", "second"] {
        let ready = support::eventually("Ready=False EscalationLoop", || async {
            policy_condition(&h, policy, "Ready")
                .await
                .filter(|(_, reason, _)| reason == "EscalationLoop")
        })
        .await;
        assert_eq!(ready.0, "False");
        assert!(ready.2.contains(" -> "), "the cycle is named: {ready:?}");
    }

    // A page on a looping chain calls each tier once and stops where the loop closes.
    h.page("page").await;
    let status = h.wait_phase("page", Phase::Exhausted).await;
    assert_eq!(status.tier, 2);
    assert_eq!(
        condition(&status, "Escalated"),
        Some(("False".into(), "EscalationLoop".into()))
    );
    h.wait_settled("page", &[&op]).await;
    let counts = calls_to(&h.sim.ledger());
    assert_eq!((counts.get(ALICE), counts.get(BOB)), (Some(&1), Some(&1)));
    wait_event(&h, "page", "EscalationLoop").await;
    h.finish(vec![op]).await;
}
