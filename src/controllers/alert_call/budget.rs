//! Where a RoundRobin rotation starts, and how many calls a Twilio account placed in the last
//! hour (the policy's cost limit). Pure over the pages the controller's cache holds.

use jiff::{SignedDuration, Timestamp};
use kube::ResourceExt;

use crate::api::{AlertCall, AlertCallStatus, CallPolicy};
use crate::escalation::order;

/// RoundRobin: where this page starts, after the newest earlier page of the same policy
/// ([`order::rotation_start`], the rule `kubectl alertcall who` shows).
pub(super) fn start_index<'a>(
    pages: impl IntoIterator<Item = &'a AlertCall>,
    call: &AlertCall,
    policy: &CallPolicy,
) -> u32 {
    order::rotation_start(pages, &order::PageAt::of(call), &policy.spec)
}

/// Calls placed on `call`'s Twilio account in the hour before `now`: this page's (from
/// `status`, which may be newer than the cache) and every other page's that `same_account`
/// accepts.
pub(super) fn calls_last_hour<'a>(
    pages: impl IntoIterator<Item = &'a AlertCall>,
    same_account: impl Fn(&AlertCall) -> bool,
    call: &AlertCall,
    status: &AlertCallStatus,
    now: Timestamp,
) -> u32 {
    let since = now - SignedDuration::from_hours(1);
    let recent = |s: &AlertCallStatus| {
        s.attempts
            .iter()
            .filter(|a| a.intent_at.as_ref().is_some_and(|t| t.0 >= since))
            .count()
    };
    let is_this =
        |c: &AlertCall| c.namespace() == call.namespace() && c.name_any() == call.name_any();
    let others: usize = pages
        .into_iter()
        .filter(|c| !is_this(c) && same_account(c))
        .filter_map(|c| c.status.as_ref().map(recent))
        .sum();
    u32::try_from(others + recent(status)).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    use super::*;
    use crate::api::{AttemptStatus, CallPolicy, Order};
    use crate::fixtures::{self, AttemptExt};

    fn page(namespace: &str, name: &str, policy: &str, created: i64) -> AlertCall {
        let mut spec = fixtures::alert_call_spec();
        spec.policy_ref.name = policy.into();
        let mut call = AlertCall::new(name, spec);
        call.metadata.namespace = Some(namespace.into());
        call.metadata.creation_timestamp = Some(Time(fixtures::at(created)));
        call
    }

    fn started_at(mut call: AlertCall, start: u32) -> AlertCall {
        let mut status = fixtures::status_with(vec![]);
        status.start_index = Some(start);
        call.status = Some(status);
        call
    }

    fn round_robin() -> CallPolicy {
        let mut spec = fixtures::policy_spec();
        spec.strategy.order = Order::RoundRobin;
        CallPolicy::new("oncall", spec)
    }

    #[test]
    fn a_rotation_starts_after_the_newest_earlier_page_of_its_policy() {
        let this = page("prod", "p-now", "oncall", 100);
        let cases: [(&str, Vec<AlertCall>, u32); 6] = [
            ("no earlier page", vec![], 0),
            (
                "after the one before",
                vec![started_at(page("prod", "p1", "oncall", 50), 0)],
                1,
            ),
            (
                "the newest earlier page wins",
                vec![
                    started_at(page("prod", "p1", "oncall", 10), 0),
                    started_at(page("prod", "p2", "oncall", 60), 2),
                ],
                0,
            ),
            (
                "a later page does not count",
                vec![started_at(page("prod", "p9", "oncall", 200), 1)],
                0,
            ),
            (
                "another policy does not count",
                vec![started_at(page("prod", "p1", "other", 50), 1)],
                0,
            ),
            (
                "another namespace does not count",
                vec![started_at(page("dev", "p1", "oncall", 50), 1)],
                0,
            ),
        ];
        for (case, pages, expected) in cases {
            assert_eq!(
                start_index(&pages, &this, &round_robin()),
                expected,
                "{case}"
            );
        }
        let fixed = CallPolicy::new("oncall", fixtures::policy_spec());
        let earlier = [started_at(page("prod", "p1", "oncall", 50), 1)];
        assert_eq!(
            start_index(&earlier, &this, &fixed),
            0,
            "Fixed order always starts at 0"
        );
    }

    #[test]
    fn the_hourly_budget_counts_intents_of_the_same_account_within_the_hour() {
        let now = fixtures::at(10_000);
        let with_intents = |mut call: AlertCall, seconds: &[i64]| {
            let attempts = seconds
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    fixtures::attempt(&format!("r1-{i}"), AttemptStatus::Completed).intent(*s)
                })
                .collect();
            call.status = Some(fixtures::status_with(attempts));
            call
        };
        let this = page("prod", "p-now", "oncall", 9_000);
        let this_status = fixtures::status_with(vec![
            fixtures::attempt("r1-alice", AttemptStatus::Queued).intent(9_990),
            fixtures::attempt("r0-old", AttemptStatus::Completed).intent(6_000),
        ]);
        let others = vec![
            with_intents(page("prod", "p1", "oncall", 8_000), &[8_000, 9_000, 5_000]),
            with_intents(page("team-b", "p2", "other", 8_000), &[9_500]),
            with_intents(page("team-c", "p3", "elsewhere", 8_000), &[9_600, 9_700]),
            // The cache's copy of this very page is older than `status`: not counted twice.
            with_intents(page("prod", "p-now", "oncall", 9_000), &[9_990, 9_991]),
        ];
        let same_account = |c: &AlertCall| c.namespace().as_deref() != Some("team-c");
        let cases = [
            ("this page only", Vec::new(), 1),
            (
                "same account, different namespaces",
                others.clone(),
                1 + 2 + 1,
            ),
        ];
        for (case, pages, expected) in cases {
            assert_eq!(
                calls_last_hour(&pages, same_account, &this, &this_status, now),
                expected,
                "{case}"
            );
        }
    }
}
