//! Escalation tiers: a policy's `onExhausted` names the policy an exhausted page continues
//! with. Pure: the chain of policies and the status of a page entering its next tier.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::{Action, Decision, FINISHED};
use crate::api::conditions::set_condition;
use crate::api::Phase;

/// Condition on an AlertCall: whether its last exhausted tier continued with the next one.
pub const ESCALATED: &str = "Escalated";

/// Longest chain followed; far more tiers than anyone pages through.
const MAX_CHAIN: usize = 64;

/// The escalation chain from one policy: the policies in tier order, and whether the last one
/// points back into the chain (a loop: each policy would page forever).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chain {
    pub policies: Vec<String>,
    /// The policy the chain comes back to, when it loops.
    pub loops_to: Option<String>,
}

impl Chain {
    /// `a -> b -> a`, for messages.
    pub fn describe(&self) -> String {
        let mut names = self.policies.clone();
        names.extend(self.loops_to.clone());
        names.join(" -> ")
    }
}

/// Follows `onExhausted` from `start`; `next_of` gives a policy's `onExhausted` target (None
/// when it has none or does not exist).
pub fn chain(start: &str, next_of: impl Fn(&str) -> Option<String>) -> Chain {
    let mut policies = vec![start.to_string()];
    while policies.len() < MAX_CHAIN {
        let Some(next) = policies.last().and_then(|last| next_of(last)) else {
            break;
        };
        if policies.contains(&next) {
            return Chain {
                policies,
                loops_to: Some(next),
            };
        }
        policies.push(next);
    }
    Chain {
        policies,
        loops_to: None,
    }
}

/// Turns a decision that exhausted the tier of policy `from` into the start of the next tier,
/// policy `to`: the same page, its attempts kept, round and order restarted, phase `Pending`
/// so the next reconcile starts `to` with `to`'s own documents, account and room. The
/// `Finish` of the exhausted tier is dropped (the page did not finish) and the page wakes now.
pub fn escalate(decision: &mut Decision, from: &str, to: &str, now: Timestamp) {
    let status = &mut decision.status;
    let message = format!(
        "CallPolicy {from} exhausted (tier {}); continuing with CallPolicy {to}",
        status.tier.max(1)
    );
    status.exhausted_policies.push(from.to_string());
    status.tier = status.tier.max(1) + 1;
    status.tier_policy = Some(to.to_string());
    status.phase = Phase::Pending;
    status.finished_at = None;
    // NB: the exhausted tier did not finish the page.
    status.conditions.retain(|c| c.type_ != FINISHED);
    status.round = 0;
    status.next_index = 0;
    status.start_index = None;
    set_condition(
        &mut status.conditions,
        ESCALATED,
        true,
        "Escalated",
        &message,
        None,
        Time(now),
    );
    decision
        .actions
        .retain(|a| !matches!(a, Action::Finish { .. } | Action::WakeAt(_)));
    decision.actions.push(Action::WakeAt(now));
}

/// Records on an exhausted page why it does not continue with the next tier (a loop, a missing
/// policy): the page stays Exhausted and says so.
pub fn stop_escalating(decision: &mut Decision, reason: &str, message: &str, now: Timestamp) {
    set_condition(
        &mut decision.status.conditions,
        ESCALATED,
        false,
        reason,
        message,
        None,
        Time(now),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::AlertCallStatus;
    use std::collections::BTreeMap;

    fn next_of<'a>(edges: &'a [(&str, &str)]) -> impl Fn(&str) -> Option<String> + 'a {
        let map: BTreeMap<String, String> = edges
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn chains_end_at_a_policy_without_onexhausted_or_at_a_loop() {
        type Edges<'a> = &'a [(&'a str, &'a str)];
        let cases: [(Edges, &str, &str, bool); 5] = [
            (&[], "a", "a", false),
            (&[("a", "b")], "a", "a -> b", false),
            (&[("a", "b"), ("b", "a")], "a", "a -> b -> a", true),
            (&[("a", "a")], "a", "a -> a", true),
            (
                &[("a", "b"), ("b", "c"), ("c", "b")],
                "a",
                "a -> b -> c -> b",
                true,
            ),
        ];
        for (edges, start, described, loops) in cases {
            let found = chain(start, next_of(edges));
            assert_eq!(found.describe(), described);
            assert_eq!(found.loops_to.is_some(), loops, "{described}");
        }
    }

    #[test]
    fn escalating_restarts_rounds_keeps_attempts_and_drops_the_finish() {
        let now = Timestamp::from_second(1_000).unwrap();
        let mut status = AlertCallStatus {
            phase: Phase::Exhausted,
            round: 3,
            next_index: 2,
            start_index: Some(1),
            tier: 1,
            finished_at: Some(Time(now)),
            attempts: vec![crate::api::Attempt {
                id: "r1-alice".into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        set_condition(
            &mut status.conditions,
            FINISHED,
            true,
            "Exhausted",
            "nobody",
            None,
            Time(now),
        );
        let mut decision = Decision {
            status,
            actions: vec![Action::Finish {
                phase: Phase::Exhausted,
                reason: "Exhausted",
                message: "nobody".into(),
            }],
        };
        escalate(&mut decision, "primary", "secondary", now);
        let s = &decision.status;
        assert_eq!(s.phase, Phase::Pending);
        assert_eq!(
            (s.tier, s.round, s.next_index, s.start_index),
            (2, 0, 0, None)
        );
        assert_eq!(s.tier_policy.as_deref(), Some("secondary"));
        assert_eq!(s.exhausted_policies, vec!["primary".to_string()]);
        assert_eq!(s.attempts.len(), 1);
        assert!(s.finished_at.is_none());
        assert_eq!(decision.actions, vec![Action::WakeAt(now)]);
        assert!(crate::api::conditions::is_true(&s.conditions, ESCALATED));
        assert!(
            crate::api::conditions::find(&s.conditions, FINISHED).is_none(),
            "the exhausted tier did not finish the page: {:?}",
            s.conditions
        );
    }
}
