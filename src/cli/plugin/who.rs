//! `who`: the call order a page of a policy would follow, from the same rule the controller
//! uses ([`crate::escalation::order`]).

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, ListParams};
use kube::Client;

use crate::api::{AlertCall, CallPolicySpec, Mode, OnCallSchedule, Recipient};
use crate::escalation::order::{call_order, rotation_start, PageAt};
use crate::escalation::OnCall;
use crate::schedule::members_on_call;

pub(super) async fn who(
    client: &Client,
    namespace: &str,
    policy_name: &str,
    at: Timestamp,
) -> Result<String, String> {
    let policy = super::commands::policy(client, namespace, policy_name).await?;
    let api: Api<AlertCall> = Api::namespaced(client.clone(), namespace);
    let pages = api
        .list(&ListParams::default())
        .await
        .map_err(|error| format!("listing AlertCalls in {namespace}: {error}"))?;
    let page = PageAt {
        namespace: namespace.to_string(),
        policy: policy_name.to_string(),
        created: Some(Time(at)),
        name: String::new(),
    };
    let start = rotation_start(&pages.items, &page, &policy.spec);
    let schedules: Api<OnCallSchedule> = Api::namespaced(client.clone(), namespace);
    let mut on_call = OnCall::new();
    for name in policy
        .spec
        .recipients
        .iter()
        .filter_map(|r| r.address.schedule())
    {
        let members = match schedules.get_opt(name).await {
            Ok(Some(schedule)) => members_on_call(&schedule.spec, name, at),
            Ok(None) => Err(format!("OnCallSchedule {name} not found in {namespace}")),
            Err(error) => Err(format!("reading OnCallSchedule {name}: {error}")),
        };
        on_call.insert(name.to_string(), members);
    }
    Ok(render(&policy.spec, policy_name, start, at, &on_call))
}

/// The report: strategy, completion, rounds and the ordered recipients.
pub fn render(
    policy: &CallPolicySpec,
    name: &str,
    start: u32,
    at: Timestamp,
    on_call: &OnCall,
) -> String {
    let strategy = &policy.strategy;
    let mut out = format!("CallPolicy {name} at {at}\n");
    match strategy.mode {
        Mode::Sequential => {
            out.push_str(&format!("strategy: Sequential, {:?} order", strategy.order));
            out.push_str(" (one call at a time; the first key pressed completes the page)\n");
        }
        Mode::Simultaneous => {
            out.push_str(&format!(
                "strategy: Simultaneous, completion {:?} (everyone at once)\n",
                strategy.completion
            ));
        }
    }
    out.push_str(&format!(
        "rounds: {} ({}s ring, {}s between rounds)\n",
        strategy.rounds, strategy.ring_timeout_seconds, strategy.round_interval_seconds
    ));
    for (position, recipient) in call_order(policy, start).into_iter().enumerate() {
        out.push_str(&format!(
            "{}. {}\n",
            position + 1,
            recipient_line(recipient, on_call)
        ));
    }
    out
}

/// One recipient as `who` shows it.
// NB: the one place a recipient is displayed, so a recipient resolved from a schedule slots in.
pub fn recipient_line(recipient: &Recipient, on_call: &OnCall) -> String {
    if let Some(address) = recipient.address.twilio_to() {
        return format!("{} {address}", recipient.name);
    }
    let schedule = recipient.address.schedule().unwrap_or_default();
    match on_call.get(schedule) {
        Some(Ok(members)) => format!(
            "{} (schedule {schedule}): {}",
            recipient.name,
            crate::schedule::members_line(members)
        ),
        Some(Err(why)) => format!("{} (schedule {schedule}): skipped, {why}", recipient.name),
        None => format!("{} (schedule {schedule})", recipient.name),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{Completion, Order};
    use crate::fixtures;

    #[test]
    fn the_report_lists_recipients_from_the_rotation_start() {
        let policy =
            fixtures::policy_with(Mode::Sequential, Completion::FirstAck, Order::RoundRobin);
        let text = render(&policy, "oncall", 1, fixtures::at(0), &OnCall::new());
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[1].starts_with("strategy: Sequential, RoundRobin order"),
            "{text}"
        );
        assert!(lines[2].starts_with("rounds: 3"), "{text}");
        assert_eq!(lines[3], "1. bob client:bob", "{text}");
        assert_eq!(lines[5], "3. alice +15005550101", "{text}");
    }

    #[test]
    fn a_schedule_recipient_shows_who_is_on_call_or_why_nobody_is() {
        let mut policy = fixtures::policy_spec();
        policy.recipients[0].address = crate::api::Address::Schedule("sre-primary".into());
        policy.recipients[1].address = crate::api::Address::Schedule("gap".into());
        let dave = Recipient {
            name: "dave".into(),
            address: crate::api::Address::Phone("+15005550104".into()),
        };
        let on_call = OnCall::from([
            ("sre-primary".to_string(), Ok(vec![dave])),
            ("gap".to_string(), Err("nobody is on call".to_string())),
        ]);
        let text = render(&policy, "oncall", 0, fixtures::at(0), &on_call);
        assert!(
            text.contains("1. alice (schedule sre-primary): dave +15005550104"),
            "{text}"
        );
        assert!(
            text.contains("2. bob (schedule gap): skipped, nobody is on call"),
            "{text}"
        );
    }
}
