//! What a page reads besides its policy: the schedules its recipients name, and the policy of
//! its next escalation tier.
//!
//! Schedules are evaluated here at the reconcile's `now` with [`members_on_call`], not read
//! from their status: the status is written by another controller and may lag a handoff by a
//! moment, and a page must ring whoever is on call when it dials. Each dial resolves its
//! schedule anew, so a page spanning a handoff calls the new person in its next round.

use jiff::Timestamp;
use kube::api::Api;
use kube::runtime::events::EventType;

use super::{emit_event, Error};
use crate::api::{AlertCall, AlertCallStatus, CallPolicy, CallPolicySpec, OnCallSchedule, Phase};
use crate::controllers::Context;
use crate::escalation::{escalate, stop_escalating, Decision, OnCall, ESCALATED};
use crate::schedule::members_on_call;

/// Who is on call now in each schedule `policy` names (same namespace).
pub(super) async fn on_call(
    ctx: &Context,
    namespace: &str,
    policy: &CallPolicySpec,
    now: Timestamp,
) -> Result<OnCall, Error> {
    let api: Api<OnCallSchedule> = Api::namespaced(ctx.client.clone(), namespace);
    let mut found = OnCall::new();
    for name in policy
        .recipients
        .iter()
        .filter_map(|r| r.address.schedule())
    {
        if found.contains_key(name) {
            continue;
        }
        let members = match api.get_opt(name).await {
            Ok(Some(schedule)) => members_on_call(&schedule.spec, name, now),
            Ok(None) => Err(format!("OnCallSchedule {name} not found in {namespace}")),
            Err(kube::Error::SerdeError(error)) => {
                Err(format!("OnCallSchedule {name} does not parse: {error}"))
            }
            Err(error) => return Err(Error::Schedule(name.to_string(), error)),
        };
        found.insert(name.to_string(), members);
    }
    Ok(found)
}

/// After a step that exhausted the tier of `policy`: continue with its `onExhausted` policy,
/// unless that policy was already a tier of this page (a loop: stop, never spin) or does not
/// exist. Either way the page says why on its `Escalated` condition.
pub(super) async fn onward(
    ctx: &Context,
    namespace: &str,
    policy: &CallPolicy,
    policy_name: &str,
    before: &AlertCallStatus,
    decision: &mut Decision,
    now: Timestamp,
) -> Result<(), Error> {
    if before.phase.is_terminal() || decision.status.phase != Phase::Exhausted {
        return Ok(());
    }
    let Some(next) = policy.spec.on_exhausted.as_ref() else {
        return Ok(());
    };
    let next = &next.policy_ref.name;
    let mut tiers = decision.status.exhausted_policies.clone();
    tiers.push(policy_name.to_string());
    if tiers.contains(next) {
        let message = format!(
            "escalation loop {} -> {next}: the page stops here instead of calling {next} again",
            tiers.join(" -> ")
        );
        stop_escalating(decision, "EscalationLoop", &message, now);
        return Ok(());
    }
    let api: Api<CallPolicy> = Api::namespaced(ctx.client.clone(), namespace);
    match api.get_opt(next).await {
        Ok(Some(_)) => escalate(decision, policy_name, next, now),
        Ok(None) => {
            let message = format!(
                "CallPolicy {policy_name} says onExhausted: {next}, which does not exist in {namespace}"
            );
            stop_escalating(decision, "EscalationPolicyNotFound", &message, now);
        }
        Err(error) => return Err(Error::Policy(next.clone(), error)),
    }
    Ok(())
}

/// Events for schedule recipients skipped and tiers entered or refused since `old`.
pub(super) async fn notices(
    ctx: &Context,
    call: &AlertCall,
    old: &AlertCallStatus,
    new: &AlertCallStatus,
) {
    for skip in new.skipped.iter().filter(|s| !old.skipped.contains(s)) {
        let note = format!(
            "recipient {} skipped in round {} (tier {}): {}",
            skip.recipient,
            skip.round,
            skip.tier.max(1),
            skip.message
        );
        emit_event(
            ctx,
            call,
            EventType::Warning,
            "ScheduleEmpty",
            "Resolve",
            &note,
        )
        .await;
    }
    let condition = |status: &AlertCallStatus| {
        crate::api::conditions::find(&status.conditions, ESCALATED)
            .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
    };
    let now = condition(new);
    if now.is_some() && now != condition(old) {
        if let Some((status, reason, message)) = now {
            let type_ = if status == "True" {
                EventType::Normal
            } else {
                EventType::Warning
            };
            emit_event(ctx, call, type_, &reason, "Escalate", &message).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{OnCallScheduleSpec, Override, Recipient, Rotation};

    fn spec(overrides: Vec<Override>) -> OnCallScheduleSpec {
        OnCallScheduleSpec {
            time_zone: "UTC".into(),
            // alice (+15005550101) and bob (client bob), as in the fixture policy.
            members: crate::fixtures::policy_spec()
                .recipients
                .into_iter()
                .take(2)
                .collect(),
            rotations: vec![Rotation {
                name: "always".into(),
                members: vec!["alice".into()],
                start: "2026-01-01T00:00:00".into(),
                shift_length: "8760h".into(),
                restrictions: vec![],
            }],
            overrides,
        }
    }

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    #[test]
    fn members_on_call_follow_rotation_override_and_gap() {
        let now = at("2026-06-01T12:00:00Z");
        let names = |r: Result<Vec<Recipient>, String>| {
            r.map(|m| m.into_iter().map(|m| m.name).collect::<Vec<_>>())
        };
        assert_eq!(
            names(members_on_call(&spec(vec![]), "s", now)),
            Ok(vec!["alice".into()])
        );
        let bob = Override {
            member: "bob".into(),
            start: "2026-06-01T00:00:00".into(),
            end: "2026-06-02T00:00:00".into(),
        };
        assert_eq!(
            names(members_on_call(&spec(vec![bob]), "s", now)),
            Ok(vec!["bob".into()])
        );
        let before = at("2025-06-01T12:00:00Z");
        let gap = members_on_call(&spec(vec![]), "s", before).unwrap_err();
        assert!(gap.contains("nobody is on call"), "{gap}");
        let mut invalid = spec(vec![]);
        invalid.time_zone = "Mars/Olympus".into();
        let error = members_on_call(&invalid, "s", now).unwrap_err();
        assert!(error.contains("invalid"), "{error}");
    }
}
