//! Simultaneous: everyone of a round is dialed at once (the runner paces the dials).
//!
//! - FirstAck: the first keypress completes the page; the calls still queued or ringing are
//!   canceled. A round with no keypress is followed, after the interval, by a round calling
//!   everyone again.
//! - AllNotified: complete when every recipient was reached: a call that was answered (by a
//!   person or by a voicemail that answering-machine detection did not flag) or acknowledged.
//!   Phase `Acknowledged` if anyone pressed a key, else `Notified`. Recipients not reached
//!   (busy, no-answer, failed, canceled, machine) are called again next round.
//! - AllAcked: complete when every recipient pressed a key (`acknowledgedBy` lists them all);
//!   each round calls only those who have not.

use super::is_answered_by_machine;
use super::step::{last_ended, Plan};
use crate::api::{AttemptStatus, Completion, Phase, Recipient};

pub(super) fn complete(plan: &mut Plan<'_>) -> bool {
    let acked = plan.tier_acknowledgers();
    match plan.policy.strategy.completion {
        Completion::FirstAck => {
            // NB: any keypress, of any tier, proves a human heard the page.
            if plan.acknowledgers().is_empty() {
                return false;
            }
            plan.acknowledge_by_recipients();
        }
        Completion::AllAcked => {
            if !plan
                .policy
                .recipients
                .iter()
                .all(|r| acked.contains(&r.name))
            {
                return false;
            }
            plan.acknowledge_by_recipients();
        }
        Completion::AllNotified => {
            if !plan.policy.recipients.iter().all(|r| reached(plan, r)) {
                return false;
            }
            if acked.is_empty() {
                let message = format!(
                    "all {} recipients answered; nobody pressed a key",
                    plan.policy.recipients.len()
                );
                plan.finish(Phase::Notified, "AllNotified", message);
            } else {
                plan.acknowledge_by_recipients();
            }
        }
    }
    true
}

/// Waits for the round's calls, then starts the next round or exhausts the page.
pub(super) fn advance(plan: &mut Plan<'_>) {
    if plan.any_live() {
        return;
    }
    let round = plan.status.round.max(1);
    let this_round: Vec<_> = plan.tier_attempts().filter(|a| a.round == round).collect();
    if this_round.is_empty() {
        let targets = targets(plan);
        if plan.dial_all(round, &targets) == Some(0) {
            plan.nobody_on_call(round);
        }
        return;
    }
    if round >= plan.policy.strategy.rounds {
        let missing = missing(plan);
        plan.exhaust(&missing);
        return;
    }
    let ended = last_ended(this_round.iter().copied());
    if !plan.round_interval_over(ended) {
        return;
    }
    let targets = targets(plan);
    if let Some(reached) = plan.dial_all(round + 1, &targets) {
        plan.status.round = round + 1;
        if reached == 0 {
            plan.nobody_on_call(round + 1);
        }
    }
}

/// Who a round calls: everyone (FirstAck), the unreached (AllNotified), the unacked (AllAcked).
fn targets<'p>(plan: &Plan<'p>) -> Vec<&'p crate::api::Recipient> {
    let acked = plan.tier_acknowledgers();
    plan.policy
        .recipients
        .iter()
        .filter(|r| match plan.policy.strategy.completion {
            Completion::FirstAck => true,
            Completion::AllAcked => !acked.contains(&r.name),
            Completion::AllNotified => !reached(plan, r),
        })
        .collect()
}

/// AllNotified/AllAcked: who the page never got through to, for the Exhausted message.
fn missing(plan: &Plan<'_>) -> String {
    if plan.policy.strategy.completion == Completion::FirstAck {
        return String::new();
    }
    let names: Vec<&str> = targets(plan).iter().map(|r| r.name.as_str()).collect();
    let what = match plan.policy.strategy.completion {
        Completion::AllNotified => "never reached",
        _ => "never acknowledged",
    };
    format!("; {what}: {}", names.join(","))
}

/// A person heard the page: acknowledged, or answered and not flagged as a machine.
fn reached(plan: &Plan<'_>, recipient: &Recipient) -> bool {
    plan.tier_attempts().any(|a| {
        a.recipient == recipient.name
            && (a.acknowledged
                || (a.status == AttemptStatus::Completed && !is_answered_by_machine(a)))
    })
}
