//! Escalation: from a policy, a page and what was observed, the next actions. Pure: no client,
//! no clock reads.
//!
//! The controller drives a page in three moves, every reconcile:
//!
//! ```text
//!  observations ──observe()──> status'  ──step(policy, spec, status', now, ctx)──> Decision
//!  (callbacks, polls,           (folded,                                           { status'', actions }
//!   dial results)                idempotent)      1. persist status'' (resourceVersion-guarded)
//!                                                 2. only if the write won: run actions (Dial paced)
//!                                                 3. requeue at the WakeAt
//! ```
//!
//! - [`observe`] folds one [`Observation`] into the status. Duplicates and out-of-order
//!   callbacks change nothing: a call status only moves forward, a final status is final, an
//!   acknowledged attempt stays acknowledged.
//! - [`step`] makes every decision. The status it returns already holds the intent of each
//!   call it wants placed ([`Action::Dial`]), so writing that status *is* recording the intent.
//!   A replayed step on the persisted status finds the attempt ids present and never dials them
//!   again; an intent that lost its dial is looked up ([`Action::LookUp`]), not redialed.
//!
//! Choices worth knowing (strategies in `sequential.rs` and `simultaneous.rs`):
//! - Answered is not acknowledged: only a keypress (gather digits, ack document fetched,
//!   conference participant) or `spec.acknowledged` acknowledges.
//! - When a page finishes, calls still queued, initiated or ringing are canceled; calls already
//!   in progress are left to end by themselves (message, gather, goodbye: a keypress there only
//!   joins another responder), except on a withdrawn page (Cancelled), which hangs them up.
//!   Acknowledged calls are never touched: they are in the conference.
//! - `acknowledgedBy` lists every recipient who pressed a key, comma-separated in call order
//!   (one name for FirstAck and Sequential, all of them for AllAcked), or `kubectl`.
//! - AllNotified ends in phase `Notified` when everyone answered and nobody pressed a key.
//! - A lost intent (lookup found no call) counts as a canceled call: the strategy moves on.
//! - If Twilio refused every dial of a page, it ends `Failed` (`DialRefused`), not Exhausted.
//! - `maxCallsPerHour` is checked per decision: if the dials it wants would pass the limit,
//!   none is placed and the page fails with `CallLimitExceeded`.

mod observe;
pub mod order;
mod recipients;
mod sequential;
mod simultaneous;
mod step;
pub mod test_call;

pub use observe::{observe, CallUpdate, Observation};
#[cfg(test)]
mod tier_tests;
mod tiers;

pub use recipients::RECIPIENTS_ON_CALL;
pub use step::{step, Action, Decision, OnCall, StepContext, Withdrawn, FINISHED};
pub use tiers::{chain, escalate, stop_escalating, Chain, ESCALATED};

use jiff::{SignedDuration, Timestamp};

use crate::api::{AcknowledgementSpec, AlertCallSpec, Attempt, CallPolicySpec};

/// How long an intent may stay without a call SID, while the runner is not dialing it, before
/// the controller must look the call up at Twilio.
pub const INTENT_GRACE: SignedDuration = SignedDuration::from_secs(30);

/// Slack added to the longest a call can last (ring + message + gather) before it counts as stuck.
pub const STUCK_MARGIN: SignedDuration = SignedDuration::from_secs(60);

/// How often a stuck call, or a call being canceled, is polled.
pub const POLL_INTERVAL: SignedDuration = SignedDuration::from_secs(15);

/// The deterministic id of the attempt to call `recipient` in `round`: the same decision
/// replayed after a restart names the same attempt, which is how a second dial is avoided.
/// Recipient names are unique within a policy (`api::validate`), and a recipient is called at
/// most once per round in every strategy.
pub fn attempt_id(round: u32, recipient: &str) -> String {
    format!("r{round}-{recipient}")
}

/// The id of an attempt in escalation tier `tier` (from 1): tier 1 keeps [`attempt_id`], later
/// tiers are prefixed `t<tier>-` so the ids of a page stay unique when two policies share a
/// recipient name. A member called through a schedule recipient is `<recipient>:<member>`; the
/// colon cannot occur in a recipient name.
pub fn tier_attempt_id(tier: u32, round: u32, recipient: &str, member: Option<&str>) -> String {
    let who = match member {
        Some(member) => format!("{recipient}:{member}"),
        None => recipient.to_string(),
    };
    let id = attempt_id(round, &who);
    if tier > 1 {
        format!("t{tier}-{id}")
    } else {
        id
    }
}

/// RoundRobin: the start index of the next page, given the previous page's `status.startIndex`
/// (of the same policy) and the number of recipients. The first page starts at 0.
pub fn next_start_index(previous: Option<u32>, recipients: usize) -> u32 {
    let n = u32::try_from(recipients).unwrap_or(u32::MAX).max(1);
    previous.map_or(0, |start| (start % n + 1) % n)
}

/// The latest moment a call placed at `since` can still legitimately be without a final status:
/// ringing, the message spoken `repeat` times, the gather wait, and [`STUCK_MARGIN`].
pub fn call_deadline(policy: &CallPolicySpec, call: &AlertCallSpec, since: Timestamp) -> Timestamp {
    let ring = i64::from(policy.strategy.ring_timeout_seconds);
    let speech = speech_seconds(&call.summary) * i64::from(policy.message.repeat.max(1));
    let gather = gather_seconds(&policy.acknowledgement);
    since
        .saturating_add(SignedDuration::from_secs(ring + speech + gather))
        .and_then(|t| t.saturating_add(STUCK_MARGIN))
        .unwrap_or(Timestamp::MAX)
}

/// A generous estimate of how long `<Say>` takes: 8 characters a second is slower than any
/// Twilio voice, Japanese included, plus the prompt.
fn speech_seconds(text: &str) -> i64 {
    let chars = i64::try_from(text.chars().count()).unwrap_or(i64::MAX / 2);
    chars / 8 + 10
}

fn gather_seconds(ack: &AcknowledgementSpec) -> i64 {
    i64::from(ack.gather_timeout_seconds) + 5
}

/// Answering-machine detection said a machine or fax answered: not a person reached.
fn is_answered_by_machine(attempt: &Attempt) -> bool {
    attempt
        .answered_by
        .as_deref()
        .is_some_and(|by| by.starts_with("machine") || by == "fax")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures;

    #[test]
    fn attempt_ids_are_deterministic_per_round_and_recipient() {
        assert_eq!(attempt_id(1, "alice"), "r1-alice");
        assert_eq!(attempt_id(12, "bob"), "r12-bob");
    }

    #[test]
    fn round_robin_start_rotates_and_wraps() {
        assert_eq!(next_start_index(None, 3), 0);
        assert_eq!(next_start_index(Some(0), 3), 1);
        assert_eq!(next_start_index(Some(1), 3), 2);
        assert_eq!(next_start_index(Some(2), 3), 0);
        // The list shrank since the previous page.
        assert_eq!(next_start_index(Some(5), 3), 0);
        assert_eq!(next_start_index(Some(4), 1), 0);
    }

    #[test]
    fn call_deadline_covers_ring_message_gather_and_margin() {
        let policy = fixtures::policy_spec();
        let call = fixtures::alert_call_spec();
        let t0 = Timestamp::from_second(1_000).unwrap();
        // 25 ring + (len/8 + 10) * 2 repeats + 8 + 5 gather + 60 margin.
        let speech = (call.summary.chars().count() as i64 / 8 + 10) * 2;
        let expected = 1_000 + 25 + speech + 13 + 60;
        assert_eq!(call_deadline(&policy, &call, t0).as_second(), expected);
    }
}
