//! Table tests of schedule recipients and tiers through `step`.

use super::*;
use crate::api::{
    Address, AlertCallStatus, AttemptStatus, Completion, Mode, Order, Phase, Recipient,
};
use crate::fixtures::{alert_call_spec, at, policy_spec, policy_with};

fn member(name: &str, phone: &str) -> Recipient {
    Recipient {
        name: name.into(),
        address: Address::Phone(phone.into()),
    }
}

fn schedule_recipient(name: &str, schedule: &str) -> Recipient {
    Recipient {
        name: name.into(),
        address: Address::Schedule(schedule.into()),
    }
}

/// The page's first step, at second 0, with nothing observed yet.
fn first_step(policy: &CallPolicySpec, ctx: &StepContext) -> Decision {
    step(
        policy,
        &alert_call_spec(),
        &AlertCallStatus::default(),
        at(0),
        ctx,
    )
}

fn ctx(on_call: &[(&str, Result<Vec<Recipient>, String>)]) -> StepContext {
    StepContext {
        on_call: on_call
            .iter()
            .map(|(name, members)| (name.to_string(), members.clone()))
            .collect(),
        ..StepContext::default()
    }
}

fn dials(decision: &Decision) -> Vec<(String, String)> {
    decision
        .actions
        .iter()
        .filter_map(|a| match a {
            Action::Dial { attempt, to } => Some((attempt.id.clone(), to.clone())),
            _ => None,
        })
        .collect()
}

fn ended(mut status: AlertCallStatus, now: i64) -> AlertCallStatus {
    for attempt in status.attempts.iter_mut() {
        attempt.status = AttemptStatus::NoAnswer;
        attempt.call_sid = Some(format!("CA{}", attempt.id));
        attempt.ended_at = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(at(
            now,
        )));
    }
    status
}

#[test]
fn a_schedule_recipient_dials_each_member_on_call_and_records_who() {
    let mut policy = policy_spec();
    policy.recipients = vec![schedule_recipient("primary", "sre")];
    let ctx = ctx(&[(
        "sre",
        Ok(vec![
            member("alice", "+15005550101"),
            member("bob", "+15005550102"),
        ]),
    )]);
    let decision = first_step(&policy, &ctx);
    assert_eq!(
        dials(&decision),
        vec![
            ("r1-primary:alice".to_string(), "+15005550101".to_string()),
            ("r1-primary:bob".to_string(), "+15005550102".to_string()),
        ]
    );
    let attempt = &decision.status.attempts[1];
    assert_eq!(attempt.recipient, "primary");
    assert_eq!(attempt.schedule.as_deref(), Some("sre"));
    assert_eq!(attempt.member.as_deref(), Some("bob"));
    assert_eq!(attempt.address.as_deref(), Some("+15005550102"));
    assert_eq!(decision.status.tier, 1);
    // Replayed on its own status, the step dials nobody again.
    let again = step(&policy, &alert_call_spec(), &decision.status, at(1), &ctx);
    assert!(dials(&again).is_empty());
}

#[test]
fn an_empty_schedule_is_skipped_and_the_next_recipient_called_at_once() {
    let mut policy = policy_spec();
    policy
        .recipients
        .insert(0, schedule_recipient("primary", "sre"));
    for why in [
        "nobody is on call in OnCallSchedule sre (a gap)",
        "OnCallSchedule sre not found",
    ] {
        let ctx = ctx(&[("sre", Err(why.to_string()))]);
        let decision = first_step(&policy, &ctx);
        assert_eq!(
            dials(&decision),
            vec![("r1-alice".to_string(), "+15005550101".to_string())]
        );
        let status = &decision.status;
        assert_eq!(status.skipped.len(), 1);
        assert_eq!(status.skipped[0].message, why);
        assert_eq!(status.next_index, 2);
        let condition =
            crate::api::conditions::find(&status.conditions, RECIPIENTS_ON_CALL).cloned();
        assert_eq!(
            condition.map(|c| (c.status, c.reason)),
            Some(("False".to_string(), "ScheduleEmpty".to_string()))
        );
        let again = step(&policy, &alert_call_spec(), status, at(1), &ctx);
        assert_eq!(again.status.skipped.len(), 1, "a skip is recorded once");
    }
}

#[test]
fn a_round_that_reaches_nobody_exhausts_with_a_reason_in_both_strategies() {
    for mode in [Mode::Sequential, Mode::Simultaneous] {
        let mut policy = policy_with(mode, Completion::FirstAck, Order::Fixed);
        policy.recipients = vec![
            schedule_recipient("primary", "gap"),
            schedule_recipient("backup", "gone"),
        ];
        let ctx = ctx(&[
            ("gap", Ok(vec![])),
            ("gone", Err("OnCallSchedule gone not found".into())),
        ]);
        let decision = first_step(&policy, &ctx);
        assert_eq!(decision.status.phase, Phase::Exhausted, "{mode:?}");
        assert!(dials(&decision).is_empty());
        assert_eq!(decision.status.skipped.len(), 2);
        let reason = decision.actions.iter().find_map(|a| match a {
            Action::Finish { reason, .. } => Some(*reason),
            _ => None,
        });
        assert_eq!(reason, Some("NobodyOnCall"), "{mode:?}");
        let condition =
            crate::api::conditions::find(&decision.status.conditions, RECIPIENTS_ON_CALL).cloned();
        assert_eq!(
            condition.map(|c| c.reason),
            Some("NobodyOnCall".to_string())
        );
    }
}

#[test]
fn a_second_tier_starts_over_with_its_own_ids_and_rounds() {
    let mut primary = policy_spec();
    primary.strategy.rounds = 1;
    primary.recipients.truncate(1);
    let spec = alert_call_spec();
    let ctx = StepContext::default();
    let first = step(&primary, &spec, &AlertCallStatus::default(), at(0), &ctx);
    let exhausted = step(&primary, &spec, &ended(first.status, 30), at(31), &ctx);
    assert_eq!(exhausted.status.phase, Phase::Exhausted);
    let mut escalated = exhausted.clone();
    escalate(&mut escalated, "oncall", "secondary", at(31));
    assert_eq!(escalated.wake_at(), Some(at(31)));
    // The secondary shares alice's name: her tier-2 attempt has its own id.
    let secondary = policy_spec();
    let next = step(&secondary, &spec, &escalated.status, at(32), &ctx);
    assert_eq!(next.status.phase, Phase::Calling);
    assert_eq!((next.status.tier, next.status.round), (2, 1));
    assert_eq!(next.status.started_at, exhausted.status.started_at);
    assert_eq!(
        dials(&next),
        vec![("t2-r1-alice".to_string(), "+15005550101".to_string())]
    );
    assert_eq!(next.status.attempts[1].tier, 2);
    assert_eq!(next.status.attempts.len(), 2);
}

#[test]
fn attempt_ids_of_tiers_and_members_cannot_collide_with_recipient_names() {
    assert_eq!(tier_attempt_id(1, 2, "alice", None), "r2-alice");
    assert_eq!(tier_attempt_id(0, 1, "alice", None), "r1-alice");
    assert_eq!(
        tier_attempt_id(3, 1, "primary", Some("bob")),
        "t3-r1-primary:bob"
    );
}
