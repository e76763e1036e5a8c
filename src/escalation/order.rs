//! The order recipients are called in: where a RoundRobin rotation starts (from the earlier
//! pages of the policy) and who comes at each position. The controller and
//! `kubectl alertcall who` both call these, so what `who` shows is what a page does.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;

use crate::api::{AlertCall, CallPolicySpec, Order, Recipient};

/// The page a rotation start is computed for: its namespace, policy, creation time and name
/// (pages created in the same second are ordered by name, as the controller sees them).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PageAt {
    pub namespace: String,
    pub policy: String,
    pub created: Option<Time>,
    pub name: String,
}

impl PageAt {
    pub fn of(call: &AlertCall) -> Self {
        Self {
            namespace: call.namespace().unwrap_or_default(),
            policy: call.spec.policy_ref.name.clone(),
            created: call.metadata.creation_timestamp.clone(),
            name: call.name_any(),
        }
    }
}

/// RoundRobin: where `page` starts, after the newest earlier page of the same policy. Test
/// calls do not turn the rotation: they are not pages anyone was on call for.
pub fn rotation_start<'a>(
    pages: impl IntoIterator<Item = &'a AlertCall>,
    page: &PageAt,
    policy: &CallPolicySpec,
) -> u32 {
    if policy.strategy.order != Order::RoundRobin {
        return 0;
    }
    let this = (page.created.clone(), page.name.clone());
    let previous = pages
        .into_iter()
        .filter(|c| {
            let other = PageAt::of(c);
            !c.spec.test
                && other.namespace == page.namespace
                && other.policy == page.policy
                && other.name != page.name
                && (other.created.clone(), other.name.clone()) < this
        })
        .filter_map(|c| {
            let start = c.status.as_ref().and_then(|s| s.start_index)?;
            Some(((c.metadata.creation_timestamp.clone(), c.name_any()), start))
        })
        .max_by(|a, b| a.0.cmp(&b.0))
        .map(|(_, start)| start);
    super::next_start_index(previous, policy.recipients.len())
}

/// Sequential: the recipient at `index` of a page that started at `start`.
pub fn recipient_at(recipients: &[Recipient], start: u32, index: u32) -> Option<&Recipient> {
    let n = recipients.len();
    if n == 0 {
        return None;
    }
    recipients.get((start as usize % n + index as usize) % n)
}

/// Every recipient in the order a page that starts at `start` calls them in one round.
/// Simultaneous pages call everyone at once; the list is then the policy's order.
pub fn call_order(policy: &CallPolicySpec, start: u32) -> Vec<&Recipient> {
    let start = match policy.strategy.mode {
        crate::api::Mode::Sequential => start,
        crate::api::Mode::Simultaneous => 0,
    };
    (0..u32::try_from(policy.recipients.len()).unwrap_or(u32::MAX))
        .filter_map(|index| recipient_at(&policy.recipients, start, index))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{Completion, Mode};
    use crate::fixtures;

    fn names(list: Vec<&Recipient>) -> Vec<&str> {
        list.into_iter().map(|r| r.name.as_str()).collect()
    }

    #[test]
    fn a_sequential_order_rotates_from_its_start_and_a_simultaneous_one_does_not() {
        let sequential =
            fixtures::policy_with(Mode::Sequential, Completion::FirstAck, Order::RoundRobin);
        let all: Vec<&str> = sequential
            .recipients
            .iter()
            .map(|r| r.name.as_str())
            .collect();
        assert_eq!(names(call_order(&sequential, 0)), all);
        let mut rotated = all.clone();
        rotated.rotate_left(1);
        assert_eq!(names(call_order(&sequential, 1)), rotated);
        let n = u32::try_from(all.len()).unwrap_or(1);
        assert_eq!(names(call_order(&sequential, n)), all, "the start wraps");
        let simultaneous =
            fixtures::policy_with(Mode::Simultaneous, Completion::FirstAck, Order::RoundRobin);
        assert_eq!(names(call_order(&simultaneous, 1)), all);
    }

    #[test]
    fn a_test_call_does_not_turn_the_rotation() {
        let policy =
            fixtures::policy_with(Mode::Sequential, Completion::FirstAck, Order::RoundRobin);
        let page = |name: &str, created: i64, start: u32, test: bool| {
            let mut spec = fixtures::alert_call_spec();
            spec.test = test;
            let mut call = AlertCall::new(name, spec);
            call.metadata.namespace = Some("prod".into());
            call.metadata.creation_timestamp = Some(Time(fixtures::at(created)));
            let mut status = fixtures::status_with(vec![]);
            status.start_index = Some(start);
            call.status = Some(status);
            call
        };
        let now = PageAt {
            namespace: "prod".into(),
            policy: "oncall".into(),
            created: Some(Time(fixtures::at(100))),
            name: String::new(),
        };
        let pages = [page("p1", 10, 0, false), page("t1", 50, 1, true)];
        assert_eq!(
            rotation_start(&pages, &now, &policy),
            1,
            "after p1, not after t1"
        );
    }
}
