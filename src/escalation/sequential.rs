//! Sequential (Fixed and RoundRobin): one call at a time; the next recipient when a call ends
//! without a keypress (busy, no-answer, failed, canceled, or answered and silent), `rounds`
//! passes over the list with `roundIntervalSeconds` between them, stop at the first keypress.

use super::order;
use super::step::{last_ended, Plan};

/// The first keypress completes the page.
pub(super) fn complete(plan: &mut Plan<'_>) -> bool {
    if plan.acknowledgers().is_empty() {
        return false;
    }
    plan.acknowledge_by_recipients();
    true
}

/// Dials the next recipient, starts the next round after the interval, or exhausts the page.
/// A schedule recipient with nobody on call is skipped and the next one dialed at once; a round
/// that reached nobody at all exhausts the tier (`NobodyOnCall`).
pub(super) fn advance(plan: &mut Plan<'_>) {
    if plan.any_live() {
        return;
    }
    let policy = plan.policy;
    let n = policy.recipients.len();
    let start = plan.status.start_index.unwrap_or(0);
    let mut round = plan.status.round.max(1);
    let mut index = plan.status.next_index;
    loop {
        if index as usize >= n {
            if plan.nobody_on_call(round) {
                return;
            }
            if round >= policy.strategy.rounds {
                plan.exhaust("");
                return;
            }
            let ended = last_ended(plan.tier_attempts());
            if !plan.round_interval_over(ended) {
                return;
            }
            round += 1;
            index = 0;
        }
        let Some(recipient) = order::recipient_at(&policy.recipients, start, index) else {
            return;
        };
        let Some(reached) = plan.dial_all(round, &[recipient]) else {
            return;
        };
        plan.status.round = round;
        plan.status.next_index = index + 1;
        if reached > 0 {
            return;
        }
        index += 1;
    }
}
