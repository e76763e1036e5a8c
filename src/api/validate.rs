//! Semantic validation the OpenAPI schema cannot express. Pure: the controller surfaces the
//! problems as a `Ready=False` condition, `alertcall check` as errors.

use std::collections::BTreeSet;

use super::{AlertRouteSpec, CallPolicySpec, Mode, Order};

/// One problem in a spec: the field path and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub field: String,
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

fn problem(field: impl Into<String>, message: impl Into<String>) -> Problem {
    Problem {
        field: field.into(),
        message: message.into(),
    }
}

/// Problems of a CallPolicy spec beyond the schema.
pub fn call_policy(spec: &CallPolicySpec) -> Vec<Problem> {
    let mut problems = Vec::new();
    let mut names = BTreeSet::new();
    for (index, recipient) in spec.recipients.iter().enumerate() {
        if !names.insert(recipient.name.as_str()) {
            problems.push(problem(
                format!("spec.recipients[{index}].name"),
                format!("duplicate recipient name {:?}", recipient.name),
            ));
        }
    }
    if spec.recipients.is_empty() {
        problems.push(problem(
            "spec.recipients",
            "at least one recipient is required",
        ));
    }
    if spec.strategy.mode == Mode::Simultaneous && spec.strategy.order == Order::RoundRobin {
        problems.push(problem(
            "spec.strategy.order",
            "RoundRobin applies to Sequential mode only",
        ));
    }
    if let Err(error) = crate::message::check_template(&spec.message.template) {
        problems.push(problem("spec.message.template", error.to_string()));
    }
    problems
}

/// Problems of an AlertRoute spec beyond the schema.
pub fn alert_route(spec: &AlertRouteSpec) -> Vec<Problem> {
    let mut problems = Vec::new();
    if spec.kubernetes_events.is_none() && spec.alertmanager.is_none() {
        problems.push(problem(
            "spec",
            "a route needs kubernetesEvents or alertmanager (or both)",
        ));
    }
    if let Some(message) = &spec.message {
        if let Err(error) = crate::message::check_template(&message.template) {
            problems.push(problem("spec.message.template", error.to_string()));
        }
    }
    if spec
        .grouping
        .group_by
        .iter()
        .any(|key| key.trim().is_empty())
    {
        problems.push(problem("spec.grouping.groupBy", "empty group key field"));
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{Address, Recipient};
    use crate::fixtures;

    #[test]
    fn valid_policy_has_no_problems() {
        assert_eq!(call_policy(&fixtures::policy_spec()), vec![]);
    }

    #[test]
    fn duplicate_recipient_names_are_reported_by_index() {
        let mut spec = fixtures::policy_spec();
        spec.recipients.push(Recipient {
            name: spec.recipients[0].name.clone(),
            address: Address::Phone("+15005550010".into()),
        });
        let problems = call_policy(&spec);
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].field, "spec.recipients[3].name");
    }

    #[test]
    fn round_robin_with_simultaneous_is_rejected() {
        let mut spec = fixtures::policy_spec();
        spec.strategy.mode = Mode::Simultaneous;
        spec.strategy.order = Order::RoundRobin;
        let problems = call_policy(&spec);
        assert_eq!(problems[0].field, "spec.strategy.order");
    }

    #[test]
    fn broken_template_is_reported() {
        let mut spec = fixtures::policy_spec();
        spec.message.template = "Alert {{ reason ".into();
        let problems = call_policy(&spec);
        assert_eq!(problems[0].field, "spec.message.template");
    }

    #[test]
    fn route_without_sources_is_rejected() {
        let mut spec = fixtures::route_spec();
        spec.kubernetes_events = None;
        let problems = alert_route(&spec);
        assert_eq!(problems[0].field, "spec");
    }
}
