//! `step`: every escalation decision, from the folded status to the next status and actions.

use std::collections::{BTreeMap, BTreeSet};

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::recipients::RECIPIENTS_ON_CALL;
use super::{
    call_deadline, sequential, simultaneous, tier_attempt_id, INTENT_GRACE, POLL_INTERVAL,
};
use crate::api::conditions::set_condition;
use crate::api::{
    AlertCallSpec, AlertCallStatus, Attempt, AttemptStatus, CallPolicySpec, Mode, OnResolved,
    Order, Phase, Recipient,
};

/// Condition on a finished page saying why it finished (reason and message of its last
/// phase): the Events announcing it expire within hours, the audit trail must not.
pub const FINISHED: &str = "Finished";

/// Who is on call in each schedule the policy names, at the step's `now`: the members to dial,
/// or why there is nobody (a gap, a missing or invalid schedule).
pub type OnCall = BTreeMap<String, Result<Vec<Recipient>, String>>;

/// Why a page is withdrawn before anyone acknowledged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Withdrawn {
    /// The AlertCall is being deleted (deletionTimestamp set).
    Deleted,
    /// The AlertRoute that created it (or its policy) is suspended.
    Suspended,
}

/// What the controller knows that the AlertCall does not say.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StepContext {
    /// RoundRobin: where a page that has not started yet starts, from
    /// [`super::next_start_index`] of the previous page of the same policy. Ignored once the page
    /// started (its `status.startIndex` is kept) and for Fixed order.
    pub start_index: u32,
    /// Calls placed on this Twilio account in the last hour, across all pages (attempts with an
    /// `intentAt` in the last hour), for `limits.maxCallsPerHour`.
    pub calls_last_hour: u32,
    /// Set when the page must stop: it is being deleted or its route is suspended.
    pub withdrawn: Option<Withdrawn>,
    /// Attempt ids the runner still holds (waiting for pacing or with the create request in
    /// flight). They are not looked up, and a finished page drops them with a SID-less Cancel.
    pub dialing: BTreeSet<String>,
    /// The conference room acknowledgers join, recorded in the status at the first
    /// acknowledgement (the policy's room or `<namespace>-<policy>`).
    pub conference_room: Option<String>,
    /// The schedules the policy's recipients name, evaluated at `now`.
    pub on_call: OnCall,
}

/// Something the controller must do. Status changes are already in [`Decision::status`].
// NB: a step emits a handful of actions and drops them at once; boxing the attempt would cost
// every match on `Dial` an indirection for no memory that matters.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Place this call: `attempt` is already in the decided status as an intent. Dial only
    /// after that status was written, pace through the account's token bucket, and report
    /// `DialAccepted`, `DialRefused` or (when dropped) `NotPlaced`.
    Dial { attempt: Attempt, to: String },
    /// Stop this call. With a SID: `Status=completed` when `hang_up` (the call was answered),
    /// else `Status=canceled`; Twilio's "not cancelable" (it already ended) counts as done.
    /// Repeated every step until the call is observed final. Without a SID: drop the attempt
    /// from the dial queue (report `NotPlaced`) or, if its request is in flight, let it finish:
    /// the next step cancels the call by SID.
    Cancel {
        attempt_id: String,
        call_sid: Option<String>,
        hang_up: bool,
    },
    /// The intent has no SID and nobody is dialing it: find the call at Twilio (Calls list by
    /// To/From, created since the intent, claimed by no page) and report `DialAccepted`, or
    /// `IntentLost` when there is none, which dials it again.
    LookUp {
        attempt_id: String,
        to: String,
        intent_at: Option<Timestamp>,
    },
    /// The call is past its deadline without a final status: fetch it and report its status.
    Poll {
        attempt_id: String,
        call_sid: String,
    },
    /// The page was acknowledged (Event and metric); `by` is a recipient list or `kubectl`.
    Acknowledged { by: String, at: Timestamp },
    /// The page reached a terminal phase (Event and metric).
    Finish {
        phase: Phase,
        reason: &'static str,
        message: String,
    },
    /// Reconcile again at this time at the latest (at most one per decision).
    WakeAt(Timestamp),
}

/// The status to persist and the actions to take after it was persisted.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    pub status: AlertCallStatus,
    pub actions: Vec<Action>,
}

impl Decision {
    /// When to reconcile again, if anything is pending.
    pub fn wake_at(&self) -> Option<Timestamp> {
        self.actions.iter().find_map(|action| match action {
            Action::WakeAt(at) => Some(*at),
            _ => None,
        })
    }
}

/// Decides what happens next on a page. Call it after folding every new observation into the
/// status with [`super::observe`]; it is deterministic in its inputs, so replaying it on the
/// status it returned yields no new dial.
pub fn step(
    policy: &CallPolicySpec,
    call: &AlertCallSpec,
    status: &AlertCallStatus,
    now: Timestamp,
    ctx: &StepContext,
) -> Decision {
    // NB: a test call runs under its own policy (one simultaneous round); a test naming a
    // recipient the policy lacks fails before anyone is called.
    let tested;
    let mut unknown = None;
    let policy = match super::test_call::policy_for(policy, call) {
        Some(Ok(for_test)) => {
            tested = for_test;
            &tested
        }
        Some(Err(message)) => {
            unknown = Some(message);
            policy
        }
        None => policy,
    };
    let mut plan = Plan {
        policy,
        call,
        now,
        ctx,
        status: status.clone(),
        actions: Vec::new(),
        wake: None,
    };
    if let (false, Some(message)) = (plan.status.phase.is_terminal(), unknown) {
        plan.finish(Phase::Failed, "UnknownRecipient", message);
    } else if !plan.status.phase.is_terminal() {
        decide(&mut plan);
    }
    plan.redial_lost();
    plan.tend_calls();
    plan.status.attempt_count = u32::try_from(plan.status.attempts.len()).unwrap_or(u32::MAX);
    let mut actions = plan.actions;
    if let Some(at) = plan.wake {
        actions.push(Action::WakeAt(at));
    }
    Decision {
        status: plan.status,
        actions,
    }
}

fn decide(plan: &mut Plan<'_>) {
    if plan.policy.recipients.is_empty() {
        plan.finish(
            Phase::Failed,
            "NoRecipients",
            "the policy has no recipients".into(),
        );
        return;
    }
    // A keypress beats kubectl and withdrawal: it proves a human heard the page.
    let completed = match plan.policy.strategy.mode {
        Mode::Sequential => sequential::complete(plan),
        Mode::Simultaneous => simultaneous::complete(plan),
    };
    if completed {
        return;
    }
    if plan.call.acknowledged {
        plan.acknowledge(
            "kubectl".into(),
            "AcknowledgedByKubectl",
            "acknowledged with kubectl (spec.acknowledged)".into(),
        );
        return;
    }
    if let Some(withdrawn) = plan.ctx.withdrawn {
        let (reason, message) = match withdrawn {
            Withdrawn::Deleted => ("Deleted", "the AlertCall is being deleted"),
            Withdrawn::Suspended => ("Suspended", "the route or policy of this page is suspended"),
        };
        plan.finish(Phase::Cancelled, reason, message.into());
        return;
    }
    if holds_for_group_wait(plan) {
        return;
    }
    if ends_on_resolve(plan) {
        return;
    }
    if matches!(plan.status.phase, Phase::Pending | Phase::Waiting) {
        plan.start();
    }
    match plan.policy.strategy.mode {
        Mode::Sequential => sequential::advance(plan),
        Mode::Simultaneous => simultaneous::advance(plan),
    }
}

/// A page with `spec.notBefore` that has not started holds until then, in phase `Waiting`, and
/// wakes exactly then. Resolved before the wait ended, it is cancelled: the group wait exists so
/// that signals which clear by themselves never ring anyone. True while the page holds (or was
/// just cancelled).
fn holds_for_group_wait(plan: &mut Plan<'_>) -> bool {
    if !matches!(plan.status.phase, Phase::Pending | Phase::Waiting) {
        return false;
    }
    let Some(not_before) = plan.call.not_before.as_ref().map(|t| t.0) else {
        return false;
    };
    plan.status.not_before = Some(Time(not_before));
    let resolved = plan.call.source.resolved_at.as_ref().map(|t| t.0);
    if let Some(resolved) = resolved.filter(|at| *at < not_before) {
        let message = format!(
            "resolved during group wait: resolved at {resolved}, the wait ended at {not_before}"
        );
        plan.finish(Phase::Cancelled, "ResolvedDuringGroupWait", message);
        return true;
    }
    if plan.now < not_before {
        plan.status.phase = Phase::Waiting;
        plan.wake(not_before);
        return true;
    }
    false
}

/// A page whose group resolved before anyone acknowledged ends in phase `Resolved` when its
/// route said `onResolved: Cancel`; `tend_calls` then cancels what still rings or waits to be
/// dialed and lets answered calls finish their message. True when the page just ended.
fn ends_on_resolve(plan: &mut Plan<'_>) -> bool {
    let call = plan.call;
    // NB: a page made by hand has no alert that could resolve; treat it as Continue whatever
    // its spec says.
    if call.route_ref.is_none() || call.on_resolved != OnResolved::Cancel {
        return false;
    }
    let Some(resolved) = call.source.resolved_at.as_ref().map(|t| t.0) else {
        return false;
    };
    // The pager moves lastSeen past resolvedAt when the group fired again after the resolve
    // it recorded: then not every alert of the group is resolved.
    if call
        .source
        .last_seen
        .as_ref()
        .is_some_and(|seen| seen.0 > resolved)
    {
        return false;
    }
    // NB: "before anyone acknowledges": a partial acknowledgement (AllAcked) has a human on
    // the page, who decides, as with an acknowledged page.
    if plan.status.attempts.iter().any(|a| a.acknowledged) {
        return false;
    }
    let message = format!(
        "every alert of the group was resolved at {resolved} before anyone acknowledged; ringing and queued calls are canceled, answered calls finish their message"
    );
    plan.finish(Phase::Resolved, "Resolved", message);
    true
}

/// The decision under construction, shared by the strategies.
pub(super) struct Plan<'a> {
    pub policy: &'a CallPolicySpec,
    pub call: &'a AlertCallSpec,
    pub now: Timestamp,
    pub ctx: &'a StepContext,
    pub status: AlertCallStatus,
    actions: Vec<Action>,
    wake: Option<Timestamp>,
}

impl Plan<'_> {
    fn start(&mut self) {
        let n = u32::try_from(self.policy.recipients.len()).unwrap_or(u32::MAX);
        self.status.phase = Phase::Calling;
        self.status.tier = self.status.tier.max(1);
        // NB: a later tier keeps the page's start: acknowledgement latency counts from it.
        if self.status.started_at.is_none() {
            self.status.started_at = Some(Time(self.now));
        }
        self.status.round = 1;
        self.status.next_index = 0;
        let round_robin = self.policy.strategy.mode == Mode::Sequential
            && self.policy.strategy.order == Order::RoundRobin;
        self.status.start_index = round_robin.then(|| self.ctx.start_index % n.max(1));
    }

    /// Reconcile again at `at` at the latest.
    /// Whether the pause between rounds, counted from `last_ended` (or from now when no call
    /// has ended), is over; if not, the plan wakes when it is.
    pub fn round_interval_over(&mut self, last_ended: Option<Timestamp>) -> bool {
        let interval =
            jiff::SignedDuration::from_secs(i64::from(self.policy.strategy.round_interval_seconds));
        let next_round_at = last_ended.unwrap_or(self.now) + interval;
        if self.now < next_round_at {
            self.wake(next_round_at);
            return false;
        }
        true
    }

    pub fn wake(&mut self, at: Timestamp) {
        self.wake = Some(self.wake.map_or(at, |w| w.min(at)));
    }

    /// True when any attempt still has a call that may ring, or may yet be dialed. An
    /// acknowledged call is done with as far as escalation goes: it is in the conference.
    pub fn any_live(&self) -> bool {
        self.status
            .attempts
            .iter()
            .any(|a| !a.status.is_final() && !a.acknowledged)
    }

    pub fn has_attempt(&self, id: &str) -> bool {
        self.status.attempts.iter().any(|a| a.id == id)
    }

    /// Recipients who acknowledged, in the order they were called.
    pub fn acknowledgers(&self) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        for attempt in self.status.attempts.iter().filter(|a| a.acknowledged) {
            if !names.contains(&attempt.recipient) {
                names.push(attempt.recipient.clone());
            }
        }
        names
    }

    /// Records the intents of calling `recipients` in `round` and emits their dials, unless
    /// that would exceed `maxCallsPerHour`, in which case the page fails. Attempts that exist
    /// already are never dialed again. A schedule recipient is dialed as each member on call
    /// now, or skipped (recorded in `status.skipped`) when there is nobody. `None` when the page
    /// failed instead, else how many recipients have an attempt in this round.
    pub fn dial_all(&mut self, round: u32, recipients: &[&Recipient]) -> Option<usize> {
        let tier = self.tier();
        let mut fresh: Vec<(Attempt, String)> = Vec::new();
        let mut reached = 0;
        for recipient in recipients.iter().copied() {
            let dialed = match self.resolve(recipient) {
                Ok(dialed) => dialed,
                Err(why) => {
                    self.skip(round, recipient, why);
                    continue;
                }
            };
            reached += 1;
            let schedule = recipient.address.schedule().map(str::to_string);
            if let Some(name) = &schedule {
                let who: Vec<&str> = dialed.iter().filter_map(|(m, _)| m.as_deref()).collect();
                let message = format!("schedule {name}: {} on call", who.join(", "));
                set_condition(
                    &mut self.status.conditions,
                    RECIPIENTS_ON_CALL,
                    true,
                    "OnCall",
                    &message,
                    None,
                    Time(self.now),
                );
            }
            for (member, to) in dialed {
                let id = tier_attempt_id(tier, round, &recipient.name, member.as_deref());
                if self.has_attempt(&id) {
                    continue;
                }
                let attempt = Attempt {
                    id,
                    recipient: recipient.name.clone(),
                    round,
                    tier: if tier > 1 { tier } else { 0 },
                    address: schedule.as_ref().map(|_| to.clone()),
                    schedule: schedule.clone(),
                    member,
                    intent_at: Some(Time(self.now)),
                    status: AttemptStatus::Intent,
                    ..Attempt::default()
                };
                fresh.push((attempt, to));
            }
        }
        let limit = self.policy.limits.max_calls_per_hour;
        let wanted = u32::try_from(fresh.len()).unwrap_or(u32::MAX);
        if limit > 0 && self.ctx.calls_last_hour.saturating_add(wanted) > limit {
            let message = format!(
                "{} calls were placed on this account in the last hour; {} more would exceed limits.maxCallsPerHour ({})",
                self.ctx.calls_last_hour, wanted, limit
            );
            self.finish(Phase::Failed, "CallLimitExceeded", message);
            return None;
        }
        for (attempt, to) in fresh {
            self.status.attempts.push(attempt.clone());
            self.actions.push(Action::Dial { attempt, to });
        }
        Some(reached)
    }

    /// The page is acknowledged by `by`.
    pub fn acknowledge(&mut self, by: String, reason: &'static str, message: String) {
        self.status.acknowledged_by = Some(by.clone());
        self.status.acknowledged_at = Some(Time(self.now));
        if self.status.conference_room.is_none() {
            self.status.conference_room = self.ctx.conference_room.clone();
        }
        self.actions.push(Action::Acknowledged { by, at: self.now });
        self.finish(Phase::Acknowledged, reason, message);
    }

    /// The page acknowledged by the recipients who pressed a key; a schedule recipient shows
    /// as `recipient/member`, so the person is on record.
    pub fn acknowledge_by_recipients(&mut self) {
        let mut names: Vec<String> = Vec::new();
        for attempt in self.status.attempts.iter().filter(|a| a.acknowledged) {
            let name = match &attempt.member {
                Some(member) => format!("{}/{member}", attempt.recipient),
                None => attempt.recipient.clone(),
            };
            if !names.contains(&name) {
                names.push(name);
            }
        }
        let by = names.join(",");
        let message = format!("acknowledged by {by}");
        self.acknowledge(by, "Acknowledged", message);
    }

    /// Every round was tried. If Twilio never accepted a single call of the page, that is a
    /// failure to place it (credentials, permissions), not people not answering.
    pub fn exhaust(&mut self, detail: &str) {
        let attempts = &self.status.attempts;
        let none_placed = !attempts.is_empty() && attempts.iter().all(|a| a.call_sid.is_none());
        if let Some(refused) = attempts
            .iter()
            .rev()
            .find(|a| none_placed && a.twilio_error_code.is_some())
        {
            let message = format!(
                "Twilio refused every call of this page; last error {}: {}",
                refused.twilio_error_code.unwrap_or_default(),
                refused.message.as_deref().unwrap_or("")
            );
            self.finish(Phase::Failed, "DialRefused", message);
            return;
        }
        let message = format!(
            "nobody acknowledged after {} round(s) and {} call(s){detail}",
            self.status.round,
            self.status.attempts.len()
        );
        self.finish(Phase::Exhausted, "Exhausted", message);
    }

    pub fn finish(&mut self, phase: Phase, reason: &'static str, message: String) {
        self.status.phase = phase;
        self.status.finished_at = Some(Time(self.now));
        set_condition(
            &mut self.status.conditions,
            FINISHED,
            true,
            reason,
            &message,
            None,
            Time(self.now),
        );
        self.actions.push(Action::Finish {
            phase,
            reason,
            message,
        });
    }

    /// Intents a lookup found no call for are dialed again under a fresh intent time (written
    /// with this status, before the dial, like every intent); a finished page needs them no more.
    fn redial_lost(&mut self) {
        let terminal = self.status.phase.is_terminal();
        let mut dials = Vec::new();
        for attempt in self.status.attempts.iter_mut() {
            if !attempt.redial_due || attempt.call_sid.is_some() {
                continue;
            }
            attempt.redial_due = false;
            if attempt.status != AttemptStatus::Intent {
                continue;
            }
            if terminal {
                attempt.status = AttemptStatus::Canceled;
                attempt.ended_at = Some(Time(self.now));
                attempt.message = Some("no call was placed and the page no longer needs it".into());
                continue;
            }
            attempt.redials = attempt.redials.saturating_add(1);
            attempt.intent_at = Some(Time(self.now));
            dials.push(attempt.clone());
        }
        for attempt in dials {
            let to = self.address_of(&attempt);
            self.actions.push(Action::Dial { attempt, to });
        }
    }

    /// Keeps every unfinished call in view: deadlines, polls, lookups, and on a finished page
    /// cancels for the calls nobody needs any more.
    fn tend_calls(&mut self) {
        let phase = self.status.phase;
        let mut actions = Vec::new();
        let mut wakes = Vec::new();
        for attempt in self.status.attempts.iter().filter(|a| !a.status.is_final()) {
            // NB: an acknowledged call is in the conference: never cancel it, and a long call
            // there is expected, so it is not polled as stuck either.
            if attempt.acknowledged {
                continue;
            }
            let dialing = self.ctx.dialing.contains(&attempt.id);
            if phase.is_terminal() {
                // In-progress calls of an acknowledged page are hearing the message; a keypress
                // there just joins another responder. A withdrawn page hangs them up, and so
                // does deleting a finished one: its finalizer waits for every call to end.
                let answered = attempt.status == AttemptStatus::InProgress;
                let deleted = self.ctx.withdrawn == Some(super::Withdrawn::Deleted);
                let cancel = match &attempt.call_sid {
                    Some(_) => !answered || phase == Phase::Cancelled || deleted,
                    None => dialing,
                };
                if cancel {
                    actions.push(Action::Cancel {
                        attempt_id: attempt.id.clone(),
                        call_sid: attempt.call_sid.clone(),
                        hang_up: answered,
                    });
                    wakes.push(self.now + POLL_INTERVAL);
                    continue;
                }
            }
            match &attempt.call_sid {
                Some(sid) => {
                    let since = attempt
                        .started_at
                        .as_ref()
                        .or(attempt.intent_at.as_ref())
                        .map_or(self.now, |t| t.0);
                    let deadline = call_deadline(self.policy, self.call, since);
                    if self.now >= deadline {
                        actions.push(Action::Poll {
                            attempt_id: attempt.id.clone(),
                            call_sid: sid.clone(),
                        });
                        wakes.push(self.now + POLL_INTERVAL);
                    } else {
                        wakes.push(deadline);
                    }
                }
                None if dialing => {}
                None => {
                    let intent_at = attempt.intent_at.as_ref().map(|t| t.0);
                    let due = intent_at.map_or(self.now, |t| t + INTENT_GRACE);
                    if self.now >= due {
                        actions.push(Action::LookUp {
                            attempt_id: attempt.id.clone(),
                            to: self.address_of(attempt),
                            intent_at,
                        });
                        wakes.push(self.now + POLL_INTERVAL);
                    } else {
                        wakes.push(due);
                    }
                }
            }
        }
        self.actions.extend(actions);
        for at in wakes {
            self.wake(at);
        }
    }

    /// Where an attempt was dialed: recorded on it when it came from a schedule, else the
    /// policy's recipient of that name.
    fn address_of(&self, attempt: &Attempt) -> String {
        if let Some(address) = &attempt.address {
            return address.clone();
        }
        self.policy
            .recipients
            .iter()
            .find(|r| r.name == attempt.recipient)
            .and_then(|r| r.address.twilio_to())
            .unwrap_or_default()
    }
}

/// When the last of `attempts` ended, if any did.
pub(super) fn last_ended<'a>(attempts: impl IntoIterator<Item = &'a Attempt>) -> Option<Timestamp> {
    attempts
        .into_iter()
        .filter_map(|a| a.ended_at.as_ref().map(|t| t.0))
        .max()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{Completion, Mode, Order};
    use crate::escalation::{observe, CallUpdate, Observation};
    use crate::fixtures::{
        alert_call_spec, at, attempt, policy_spec, policy_with, status_with, AttemptExt,
    };
    use AttemptStatus::*;

    fn sequential() -> CallPolicySpec {
        policy_spec()
    }

    fn simultaneous(completion: Completion) -> CallPolicySpec {
        policy_with(Mode::Simultaneous, completion, Order::Fixed)
    }

    fn run(policy: &CallPolicySpec, status: &AlertCallStatus, now: i64) -> Decision {
        step(
            policy,
            &alert_call_spec(),
            status,
            at(now),
            &StepContext::default(),
        )
    }

    fn dials(decision: &Decision) -> Vec<(&str, &str)> {
        decision
            .actions
            .iter()
            .filter_map(|a| match a {
                Action::Dial { attempt, to } => Some((attempt.id.as_str(), to.as_str())),
                _ => None,
            })
            .collect()
    }

    fn dial_ids(decision: &Decision) -> Vec<&str> {
        dials(decision).into_iter().map(|(id, _)| id).collect()
    }

    fn cancels(decision: &Decision) -> Vec<(Option<&str>, bool)> {
        decision
            .actions
            .iter()
            .filter_map(|a| match a {
                Action::Cancel {
                    call_sid, hang_up, ..
                } => Some((call_sid.as_deref(), *hang_up)),
                _ => None,
            })
            .collect()
    }

    /// The page's Finish action; its `Finished` condition must say the same.
    fn finish(decision: &Decision) -> Option<(Phase, &'static str, &str)> {
        let finished = decision.actions.iter().find_map(|a| match a {
            Action::Finish {
                phase,
                reason,
                message,
            } => Some((*phase, *reason, message.as_str())),
            _ => None,
        });
        if let Some((_, reason, message)) = finished {
            let condition = crate::api::conditions::find(&decision.status.conditions, FINISHED);
            assert_eq!(
                condition.map(|c| (c.status.as_str(), c.reason.as_str(), c.message.as_str())),
                Some(("True", reason, message)),
                "the Finished condition says why the page finished"
            );
        }
        finished
    }

    fn pending() -> AlertCallStatus {
        AlertCallStatus::default()
    }

    // ---- Sequential -------------------------------------------------------------------------

    #[test]
    fn sequential_page_starts_with_the_first_recipient() {
        let d = run(&sequential(), &pending(), 100);
        assert_eq!(dials(&d), vec![("r1-alice", "+15005550101")]);
        assert_eq!(d.status.phase, Phase::Calling);
        assert_eq!(d.status.round, 1);
        assert_eq!(d.status.next_index, 1);
        assert_eq!(d.status.start_index, None);
        assert_eq!(d.status.started_at, Some(Time(at(100))));
        assert_eq!(d.status.attempt_count, 1);
        let intent = &d.status.attempts[0];
        assert_eq!(intent.status, Intent);
        assert_eq!(intent.intent_at, Some(Time(at(100))));
        assert_eq!(intent.call_sid, None);
        // Safety net: if the dial is lost, look it up after the grace period.
        assert_eq!(d.wake_at(), Some(at(100) + INTENT_GRACE));
    }

    #[test]
    fn replayed_step_never_dials_an_existing_attempt_again() {
        let policy = sequential();
        let first = run(&policy, &pending(), 100);
        assert_eq!(dial_ids(&first), vec!["r1-alice"]);
        // Same status, same time (a retried reconcile) and later while the runner dials.
        let dialing = StepContext {
            dialing: ["r1-alice".to_string()].into(),
            ..StepContext::default()
        };
        for now in [100, 101, 400] {
            let again = step(
                &policy,
                &alert_call_spec(),
                &first.status,
                at(now),
                &dialing,
            );
            assert!(dial_ids(&again).is_empty(), "at {now}");
            assert_eq!(again.status, first.status);
        }
        // After a restart the runner holds nothing: within the grace period, wait...
        let young = run(&policy, &first.status, 110);
        assert!(young.actions.iter().all(|a| matches!(a, Action::WakeAt(_))));
        assert_eq!(young.wake_at(), Some(at(130)));
        // ...then look the call up, never dial it again.
        let old = run(&policy, &first.status, 130);
        assert!(dial_ids(&old).is_empty());
        assert!(old.actions.contains(&Action::LookUp {
            attempt_id: "r1-alice".into(),
            to: "+15005550101".into(),
            intent_at: Some(at(100)),
        }));
        // The lookup found nothing: Alice is dialed again under a new intent, never skipped.
        let mut status = old.status.clone();
        let lost = Observation::IntentLost {
            attempt_id: "r1-alice".into(),
            reason: "no call found at Twilio".into(),
        };
        assert!(observe(&mut status, &lost, at(131)));
        assert!(!observe(&mut status, &lost, at(131)), "idempotent");
        let redial = run(&policy, &status, 131);
        assert_eq!(dials(&redial), vec![("r1-alice", "+15005550101")]);
        let again = &redial.status.attempts[0];
        assert_eq!(again.intent_at, Some(Time(at(131))));
        assert_eq!((again.redials, again.redial_due), (1, false));
        assert_eq!(redial.status.attempts.len(), 1);
        assert_eq!(redial.wake_at(), Some(at(131) + INTENT_GRACE));
        // Replaying the decided status dials nothing more.
        assert!(dial_ids(&run(&policy, &redial.status, 132)).is_empty());
    }

    #[test]
    fn a_lost_intent_of_a_finished_page_is_not_dialed_again() {
        let policy = sequential();
        let first = run(&policy, &pending(), 100);
        let mut status = first.status.clone();
        let lost = Observation::IntentLost {
            attempt_id: "r1-alice".into(),
            reason: "no call found at Twilio".into(),
        };
        assert!(observe(&mut status, &lost, at(131)));
        let spec = AlertCallSpec {
            acknowledged: true,
            ..alert_call_spec()
        };
        let d = step(&policy, &spec, &status, at(131), &StepContext::default());
        assert!(dial_ids(&d).is_empty());
        assert_eq!(d.status.phase, Phase::Acknowledged);
        assert_eq!(d.status.attempts[0].status, Canceled);
    }

    #[test]
    fn sequential_moves_on_when_a_call_ends_without_a_keypress() {
        let cases: Vec<(&str, Attempt)> = vec![
            ("busy", attempt("r1-alice", Busy)),
            ("no-answer", attempt("r1-alice", NoAnswer)),
            ("failed", attempt("r1-alice", Failed)),
            ("canceled", attempt("r1-alice", Canceled)),
            ("answered, silent", attempt("r1-alice", Completed)),
            (
                "voicemail",
                attempt("r1-alice", Completed).answered_by("machine_end_beep"),
            ),
        ];
        for (name, alice) in cases {
            let mut status = status_with(vec![alice.sid("CA1").ended(40)]);
            status.next_index = 1;
            let d = run(&sequential(), &status, 41);
            assert_eq!(dials(&d), vec![("r1-bob", "client:bob")], "{name}");
            assert_eq!(d.status.next_index, 2, "{name}");
            assert_eq!(d.status.phase, Phase::Calling, "{name}");
            assert_eq!(finish(&d), None, "{name}");
        }
    }

    #[test]
    fn sequential_waits_for_the_live_call_and_polls_it_when_stuck() {
        let policy = sequential();
        let mut status = status_with(vec![attempt("r1-alice", Ringing).sid("CA1").started(0)]);
        status.next_index = 1;
        let deadline = call_deadline(&policy, &alert_call_spec(), at(0));
        let d = run(&policy, &status, 10);
        assert!(dial_ids(&d).is_empty());
        assert_eq!(d.actions, vec![Action::WakeAt(deadline)]);
        let late = deadline.as_second() + 1;
        let d = run(&policy, &status, late);
        assert!(dial_ids(&d).is_empty());
        assert!(d.actions.contains(&Action::Poll {
            attempt_id: "r1-alice".into(),
            call_sid: "CA1".into(),
        }));
        assert_eq!(d.wake_at(), Some(at(late) + POLL_INTERVAL));
    }

    #[test]
    fn sequential_stops_at_the_first_keypress() {
        let mut status = status_with(vec![
            attempt("r1-alice", NoAnswer).sid("CA1").ended(30),
            attempt("r1-bob", InProgress).sid("CA2").acked(),
        ]);
        status.next_index = 2;
        let d = run(&sequential(), &status, 60);
        assert!(dial_ids(&d).is_empty());
        assert!(cancels(&d).is_empty(), "the acknowledger stays in the room");
        assert_eq!(d.status.phase, Phase::Acknowledged);
        assert_eq!(d.status.acknowledged_by.as_deref(), Some("bob"));
        assert_eq!(d.status.acknowledged_at, Some(Time(at(60))));
        assert_eq!(d.status.finished_at, Some(Time(at(60))));
        assert!(d.actions.contains(&Action::Acknowledged {
            by: "bob".into(),
            at: at(60),
        }));
        assert_eq!(finish(&d).map(|f| f.1), Some("Acknowledged"));
        // The finished page replays to nothing.
        let again = run(&sequential(), &d.status, 61);
        assert_eq!(again.status, d.status);
        assert!(again.actions.is_empty());
    }

    #[test]
    fn the_conference_room_is_recorded_at_acknowledgement() {
        let status = status_with(vec![attempt("r1-alice", InProgress).sid("CA1").acked()]);
        let ctx = StepContext {
            conference_room: Some("prod-oncall".into()),
            ..StepContext::default()
        };
        let d = step(&sequential(), &alert_call_spec(), &status, at(5), &ctx);
        assert_eq!(d.status.conference_room.as_deref(), Some("prod-oncall"));
        let calling = step(&sequential(), &alert_call_spec(), &pending(), at(5), &ctx);
        assert_eq!(calling.status.conference_room, None);
    }

    #[test]
    fn a_withdrawn_page_waits_out_the_grace_of_an_intent_nobody_dials() {
        let status = status_with(vec![attempt("r1-alice", Intent).intent(0)]);
        let ctx = StepContext {
            withdrawn: Some(Withdrawn::Deleted),
            ..StepContext::default()
        };
        let d = step(&sequential(), &alert_call_spec(), &status, at(10), &ctx);
        assert_eq!(d.status.phase, Phase::Cancelled);
        assert!(cancels(&d).is_empty());
        assert_eq!(d.wake_at(), Some(at(0) + INTENT_GRACE));
    }

    fn round_one_over(ended: i64) -> AlertCallStatus {
        let mut status = status_with(vec![
            attempt("r1-alice", NoAnswer).sid("CA1").ended(ended - 60),
            attempt("r1-bob", Busy).sid("CA2").ended(ended - 30),
            attempt("r1-carol", Completed).sid("CA3").ended(ended),
        ]);
        status.next_index = 3;
        status
    }

    #[test]
    fn sequential_honours_the_round_interval_then_loops() {
        let policy = sequential(); // 3 rounds, 30 s apart
        let status = round_one_over(100);
        let early = run(&policy, &status, 110);
        assert!(dial_ids(&early).is_empty());
        assert_eq!(early.wake_at(), Some(at(130)));
        assert_eq!(early.status, status);
        let due = run(&policy, &status, 130);
        assert_eq!(dial_ids(&due), vec!["r2-alice"]);
        assert_eq!(due.status.round, 2);
        assert_eq!(due.status.next_index, 1);
    }

    #[test]
    fn sequential_exhausts_after_the_last_round() {
        let mut policy = sequential();
        policy.strategy.rounds = 1;
        let d = run(&policy, &round_one_over(100), 500);
        assert!(dial_ids(&d).is_empty());
        assert_eq!(d.status.phase, Phase::Exhausted);
        assert_eq!(d.status.finished_at, Some(Time(at(500))));
        let (phase, reason, message) = finish(&d).unwrap();
        assert_eq!((phase, reason), (Phase::Exhausted, "Exhausted"));
        assert!(message.contains("1 round(s) and 3 call(s)"), "{message}");
    }

    #[test]
    fn round_robin_starts_where_the_caller_says_and_wraps() {
        let policy = policy_with(Mode::Sequential, Completion::FirstAck, Order::RoundRobin);
        let ctx = StepContext {
            start_index: 1,
            ..StepContext::default()
        };
        let spec = alert_call_spec();
        let d = step(&policy, &spec, &pending(), at(0), &ctx);
        assert_eq!(dial_ids(&d), vec!["r1-bob"]);
        assert_eq!(d.status.start_index, Some(1));
        // Walk the round: bob, carol, alice, then round 2 starts at bob again.
        let mut status = d.status;
        let mut order = vec!["r1-bob".to_string()];
        for now in [100, 200, 300] {
            let last = status.attempts.last_mut().unwrap();
            last.status = NoAnswer;
            last.ended_at = Some(Time(at(now - 1)));
            // A later page's context must not change a started page.
            let other = StepContext {
                start_index: 2,
                ..StepContext::default()
            };
            let d = step(&policy, &spec, &status, at(now), &other);
            order.extend(dial_ids(&d).iter().map(|s| s.to_string()));
            status = d.status;
        }
        // Round 2 starts, at bob again, once the 30 s interval after alice's call passed.
        let later_page = StepContext {
            start_index: 2,
            ..StepContext::default()
        };
        let d = step(&policy, &spec, &status, at(329), &later_page);
        order.extend(dial_ids(&d).iter().map(|s| s.to_string()));
        assert_eq!(order, vec!["r1-bob", "r1-carol", "r1-alice", "r2-bob"]);
        assert_eq!(d.status.start_index, Some(1));
        // Fixed ignores the caller's start index.
        let fixed = step(&sequential(), &spec, &pending(), at(0), &ctx);
        assert_eq!(dial_ids(&fixed), vec!["r1-alice"]);
        assert_eq!(fixed.status.start_index, None);
        // Out-of-range starts wrap.
        let wide = StepContext {
            start_index: 4,
            ..StepContext::default()
        };
        let d = step(&policy, &spec, &pending(), at(0), &wide);
        assert_eq!(dial_ids(&d), vec!["r1-bob"]);
    }

    // ---- Group wait (spec.notBefore) ----------------------------------------------------------

    #[test]
    fn a_page_holds_until_not_before_unless_resolved_first() {
        struct Case {
            name: &'static str,
            not_before: Option<i64>,
            resolved: Option<i64>,
            acknowledged: bool,
            now: i64,
            phase: Phase,
            dials: Vec<&'static str>,
            wake: Option<i64>,
            reason: Option<&'static str>,
        }
        let case = |name, not_before, resolved, now, phase, dials, wake, reason| Case {
            name,
            not_before,
            resolved,
            acknowledged: false,
            now,
            phase,
            dials,
            wake,
            reason,
        };
        let grace = INTENT_GRACE.as_secs();
        let mut table = vec![
            case(
                "waits",
                Some(130),
                None,
                100,
                Phase::Waiting,
                vec![],
                Some(130),
                None,
            ),
            case(
                "dials when the wait is over",
                Some(130),
                None,
                130,
                Phase::Calling,
                vec!["r1-alice"],
                Some(130 + grace),
                None,
            ),
            case(
                "dials late after downtime",
                Some(130),
                None,
                900,
                Phase::Calling,
                vec!["r1-alice"],
                Some(900 + grace),
                None,
            ),
            case(
                "no notBefore dials at once",
                None,
                None,
                100,
                Phase::Calling,
                vec!["r1-alice"],
                Some(100 + grace),
                None,
            ),
            case(
                "a resolve without notBefore changes nothing",
                None,
                Some(90),
                100,
                Phase::Calling,
                vec!["r1-alice"],
                Some(100 + grace),
                None,
            ),
            case(
                "resolved during the wait",
                Some(130),
                Some(110),
                120,
                Phase::Cancelled,
                vec![],
                None,
                Some("ResolvedDuringGroupWait"),
            ),
            case(
                "resolved during the wait, seen later",
                Some(130),
                Some(110),
                500,
                Phase::Cancelled,
                vec![],
                None,
                Some("ResolvedDuringGroupWait"),
            ),
            case(
                "resolved after the wait ended",
                Some(130),
                Some(140),
                150,
                Phase::Calling,
                vec!["r1-alice"],
                Some(150 + grace),
                None,
            ),
        ];
        table.push(Case {
            acknowledged: true,
            ..case(
                "acknowledged with kubectl while waiting",
                Some(130),
                None,
                100,
                Phase::Acknowledged,
                vec![],
                None,
                Some("AcknowledgedByKubectl"),
            )
        });
        for c in table {
            let mut spec = alert_call_spec();
            spec.not_before = c.not_before.map(|t| Time(at(t)));
            spec.source.resolved_at = c.resolved.map(|t| Time(at(t)));
            spec.acknowledged = c.acknowledged;
            let d = step(
                &sequential(),
                &spec,
                &pending(),
                at(c.now),
                &StepContext::default(),
            );
            assert_eq!(d.status.phase, c.phase, "{}", c.name);
            assert_eq!(dial_ids(&d), c.dials, "{}", c.name);
            assert_eq!(d.wake_at(), c.wake.map(at), "{}", c.name);
            assert_eq!(finish(&d).map(|f| f.1), c.reason, "{}", c.name);
            if !c.acknowledged {
                assert_eq!(d.status.not_before, spec.not_before, "{}", c.name);
            }
            // Replayed on its own result at the same time, the decision holds still.
            let again = step(
                &sequential(),
                &spec,
                &d.status,
                at(c.now),
                &StepContext::default(),
            );
            assert!(dial_ids(&again).is_empty(), "{}", c.name);
            assert_eq!(again.status.phase, c.phase, "{}", c.name);
        }
    }

    #[test]
    fn a_waiting_page_dials_at_its_wake_and_a_later_resolve_does_not_stop_it() {
        let mut spec = alert_call_spec();
        spec.not_before = Some(Time(at(130)));
        let waiting = step(
            &sequential(),
            &spec,
            &pending(),
            at(100),
            &StepContext::default(),
        );
        assert_eq!(waiting.status.phase, Phase::Waiting);
        let woken = waiting.wake_at().unwrap_or_else(|| panic!("no wake"));
        let calling = step(
            &sequential(),
            &spec,
            &waiting.status,
            woken,
            &StepContext::default(),
        );
        assert_eq!(dial_ids(&calling), vec!["r1-alice"]);
        assert_eq!(calling.status.started_at, Some(Time(at(130))));
        // A page made by hand (no route, so onResolved does not apply) rings until a human
        // stops it: a resolve recorded now (even one dated during the wait, as Alertmanager's
        // endsAt may be) does not cancel it.
        spec.source.resolved_at = Some(Time(at(120)));
        let later = step(
            &sequential(),
            &spec,
            &calling.status,
            at(131),
            &StepContext::default(),
        );
        assert_eq!(later.status.phase, Phase::Calling);
        assert!(finish(&later).is_none());
    }

    // ---- Resolved (route onResolved) ---------------------------------------------------------

    #[test]
    fn a_resolve_before_anyone_acknowledged_ends_the_page_as_its_route_says() {
        struct Case {
            name: &'static str,
            policy: CallPolicySpec,
            attempts: Vec<Attempt>,
            phase: Phase,
            /// The route's choice; `None`: a page made by hand (no routeRef).
            on_resolved: Option<OnResolved>,
            last_seen: i64,
            dialing: Vec<&'static str>,
            /// The phase after the step, and (call SID, hang up) of each Cancel.
            want: Phase,
            cancels: Vec<(Option<&'static str>, bool)>,
        }
        let base_of = || Case {
            name: "",
            policy: simultaneous(Completion::FirstAck),
            attempts: vec![
                attempt("r1-alice", Ringing).sid("CA1"),
                attempt("r1-bob", InProgress).sid("CA2"),
                attempt("r1-carol", Queued).sid("CA3"),
            ],
            phase: Phase::Calling,
            on_resolved: Some(OnResolved::Cancel),
            last_seen: 10,
            dialing: vec![],
            want: Phase::Resolved,
            cancels: vec![(Some("CA1"), false), (Some("CA3"), false)],
        };
        let table = vec![
            Case {
                name: "ringing and queued are canceled, the answered call finishes its message",
                ..base_of()
            },
            Case {
                name: "a dial still waiting in the runner is dropped",
                attempts: vec![
                    attempt("r1-alice", Ringing).sid("CA1"),
                    attempt("r1-bob", Intent).intent(40),
                ],
                dialing: vec!["r1-bob"],
                cancels: vec![(Some("CA1"), false), (None, false)],
                ..base_of()
            },
            Case {
                name: "sequential: the ringing call is canceled and nobody else is called",
                policy: sequential(),
                attempts: vec![
                    attempt("r1-alice", NoAnswer).sid("CA1").ended(30),
                    attempt("r1-bob", Ringing).sid("CA2"),
                ],
                cancels: vec![(Some("CA2"), false)],
                ..base_of()
            },
            Case {
                name: "in the room (answered, no key yet): nothing is canceled",
                policy: sequential(),
                attempts: vec![attempt("r1-alice", InProgress).sid("CA1")],
                cancels: vec![],
                ..base_of()
            },
            Case {
                name: "not dialed yet: ends without a call",
                attempts: vec![],
                phase: Phase::Pending,
                cancels: vec![],
                ..base_of()
            },
            Case {
                name: "acknowledged by a keypress: untouched",
                policy: sequential(),
                attempts: vec![attempt("r1-alice", InProgress).sid("CA1").acked()],
                want: Phase::Acknowledged,
                cancels: vec![],
                ..base_of()
            },
            Case {
                name: "AllAcked, one acknowledged: a human is on it, calling goes on",
                policy: simultaneous(Completion::AllAcked),
                attempts: vec![
                    attempt("r1-alice", InProgress).sid("CA1").acked(),
                    attempt("r1-bob", Ringing).sid("CA2"),
                ],
                want: Phase::Calling,
                cancels: vec![],
                ..base_of()
            },
            Case {
                name: "route says Continue",
                on_resolved: Some(OnResolved::Continue),
                want: Phase::Calling,
                cancels: vec![],
                ..base_of()
            },
            Case {
                name: "made by hand: continues whatever its spec says",
                on_resolved: None,
                want: Phase::Calling,
                cancels: vec![],
                ..base_of()
            },
            Case {
                name: "the group fired again after the resolve",
                last_seen: 60,
                want: Phase::Calling,
                cancels: vec![],
                ..base_of()
            },
            Case {
                name: "a page that already ended changes nothing",
                attempts: vec![attempt("r1-alice", NoAnswer).sid("CA1").ended(30)],
                phase: Phase::Exhausted,
                want: Phase::Exhausted,
                cancels: vec![],
                ..base_of()
            },
        ];
        for c in table {
            let mut spec = alert_call_spec();
            if let Some(choice) = c.on_resolved {
                spec.route_ref = Some(crate::api::LocalRef {
                    name: "critical".into(),
                });
                spec.on_resolved = choice;
            } else {
                spec.on_resolved = OnResolved::Cancel;
            }
            spec.source.last_seen = Some(Time(at(c.last_seen)));
            spec.source.resolved_at = Some(Time(at(50)));
            let mut status = status_with(c.attempts.clone());
            status.phase = c.phase;
            status.next_index = u32::try_from(c.attempts.len()).unwrap_or(0);
            if c.phase == Phase::Pending {
                status.round = 0;
            }
            let ctx = StepContext {
                dialing: c.dialing.iter().map(|id| id.to_string()).collect(),
                ..StepContext::default()
            };
            let d = step(&c.policy, &spec, &status, at(60), &ctx);
            assert_eq!(d.status.phase, c.want, "{}", c.name);
            assert!(dial_ids(&d).is_empty(), "{}", c.name);
            assert_eq!(cancels(&d), c.cancels, "{}", c.name);
            if c.want == Phase::Resolved {
                let (phase, reason, message) = finish(&d).unwrap_or_else(|| panic!("{}", c.name));
                assert_eq!((phase, reason), (Phase::Resolved, "Resolved"), "{}", c.name);
                assert!(message.contains("resolved at"), "{message}");
                assert_eq!(d.status.finished_at, Some(Time(at(60))), "{}", c.name);
                // Replayed: still Resolved, nothing dialed, no second Finish.
                let again = step(&c.policy, &spec, &d.status, at(61), &ctx);
                assert_eq!(again.status.phase, Phase::Resolved, "{}", c.name);
                assert!(dial_ids(&again).is_empty(), "{}", c.name);
                assert!(finish(&again).is_none(), "{}", c.name);
            } else if c.phase != Phase::Exhausted {
                assert!(
                    finish(&d).is_none_or(|f| f.0 != Phase::Resolved),
                    "{}",
                    c.name
                );
            }
        }
    }

    // ---- Acknowledged from kubectl, withdrawn, limits, refusals -------------------------------

    #[test]
    fn kubectl_acknowledges_and_cancels_ringing_calls() {
        let policy = simultaneous(Completion::FirstAck);
        let status = status_with(vec![
            attempt("r1-alice", Ringing).sid("CA1"),
            attempt("r1-bob", InProgress).sid("CA2"),
            attempt("r1-carol", Queued).sid("CA3"),
        ]);
        let mut spec = alert_call_spec();
        spec.acknowledged = true;
        let d = step(&policy, &spec, &status, at(50), &StepContext::default());
        assert_eq!(d.status.phase, Phase::Acknowledged);
        assert_eq!(d.status.acknowledged_by.as_deref(), Some("kubectl"));
        assert_eq!(
            finish(&d).map(|f| (f.0, f.1)),
            Some((Phase::Acknowledged, "AcknowledgedByKubectl"))
        );
        // Bob is hearing the message: left to end by itself (a keypress joins the room).
        assert_eq!(
            cancels(&d),
            vec![(Some("CA1"), false), (Some("CA3"), false)]
        );
        assert!(dial_ids(&d).is_empty());
        // Before any call, kubectl acknowledgement places none.
        let d = step(&policy, &spec, &pending(), at(0), &StepContext::default());
        assert!(dial_ids(&d).is_empty());
        assert_eq!(d.status.phase, Phase::Acknowledged);
    }

    #[test]
    fn a_keypress_wins_over_kubectl() {
        let status = status_with(vec![attempt("r1-alice", InProgress).sid("CA1").acked()]);
        let mut spec = alert_call_spec();
        spec.acknowledged = true;
        let d = step(
            &sequential(),
            &spec,
            &status,
            at(5),
            &StepContext::default(),
        );
        assert_eq!(d.status.acknowledged_by.as_deref(), Some("alice"));
    }

    #[test]
    fn withdrawn_pages_are_cancelled_and_hang_up_every_call() {
        for (withdrawn, reason) in [
            (Withdrawn::Deleted, "Deleted"),
            (Withdrawn::Suspended, "Suspended"),
        ] {
            let status = status_with(vec![
                attempt("r1-alice", Ringing).sid("CA1"),
                attempt("r1-bob", InProgress).sid("CA2"),
                attempt("r1-carol", Intent),
            ]);
            let ctx = StepContext {
                withdrawn: Some(withdrawn),
                dialing: ["r1-carol".to_string()].into(),
                ..StepContext::default()
            };
            let policy = simultaneous(Completion::FirstAck);
            let d = step(&policy, &alert_call_spec(), &status, at(9), &ctx);
            assert_eq!(d.status.phase, Phase::Cancelled);
            assert_eq!(finish(&d).map(|f| f.1), Some(reason));
            assert_eq!(
                cancels(&d),
                vec![(Some("CA1"), false), (Some("CA2"), true), (None, false)]
            );
            // Cancels repeat until the calls are seen final.
            let again = step(&policy, &alert_call_spec(), &d.status, at(30), &ctx);
            assert_eq!(cancels(&again).len(), 3);
            assert!(finish(&again).is_none());
            assert_eq!(again.wake_at(), Some(at(30) + POLL_INTERVAL));
        }
    }

    #[test]
    fn deleting_a_finished_page_hangs_up_its_answered_calls_too() {
        // Acknowledged by alice; bob is still hearing the message and carol still rings.
        let mut alice = attempt("r1-alice", InProgress).sid("CA1");
        alice.acknowledged = true;
        let mut status = status_with(vec![
            alice,
            attempt("r1-bob", InProgress).sid("CA2"),
            attempt("r1-carol", Ringing).sid("CA3"),
        ]);
        status.phase = Phase::Acknowledged;
        let policy = simultaneous(Completion::FirstAck);
        // Not deleted: bob is left to finish the message.
        let kept = step(
            &policy,
            &alert_call_spec(),
            &status,
            at(9),
            &StepContext::default(),
        );
        assert_eq!(cancels(&kept), vec![(Some("CA3"), false)]);
        // Deleted: bob is hung up as well; alice, in the room, is never touched.
        let ctx = StepContext {
            withdrawn: Some(Withdrawn::Deleted),
            ..StepContext::default()
        };
        let d = step(&policy, &alert_call_spec(), &status, at(9), &ctx);
        assert_eq!(d.status.phase, Phase::Acknowledged);
        assert_eq!(cancels(&d), vec![(Some("CA2"), true), (Some("CA3"), false)]);
        // Suspension does not touch a finished page's answered calls.
        let ctx = StepContext {
            withdrawn: Some(Withdrawn::Suspended),
            ..StepContext::default()
        };
        let d = step(&policy, &alert_call_spec(), &status, at(9), &ctx);
        assert_eq!(cancels(&d), vec![(Some("CA3"), false)]);
    }

    #[test]
    fn over_the_hourly_limit_the_page_fails_without_dialing() {
        let cases = [
            (sequential(), 59, true),
            (sequential(), 60, false),
            (simultaneous(Completion::FirstAck), 57, true),
            (simultaneous(Completion::FirstAck), 58, false),
        ];
        for (policy, used, dials) in cases {
            let ctx = StepContext {
                calls_last_hour: used,
                ..StepContext::default()
            };
            let d = step(&policy, &alert_call_spec(), &pending(), at(0), &ctx);
            if dials {
                assert!(!dial_ids(&d).is_empty(), "{used}");
                assert_eq!(d.status.phase, Phase::Calling);
            } else {
                assert!(dial_ids(&d).is_empty(), "{used}");
                assert!(d.status.attempts.is_empty());
                assert_eq!(d.status.phase, Phase::Failed);
                let (_, reason, message) = finish(&d).unwrap();
                assert_eq!(reason, "CallLimitExceeded");
                assert!(message.contains("maxCallsPerHour (60)"), "{message}");
            }
        }
        // 0 means no limit.
        let mut policy = sequential();
        policy.limits.max_calls_per_hour = 0;
        let ctx = StepContext {
            calls_last_hour: 10_000,
            ..StepContext::default()
        };
        let d = step(&policy, &alert_call_spec(), &pending(), at(0), &ctx);
        assert_eq!(dial_ids(&d), vec!["r1-alice"]);
    }

    #[test]
    fn a_page_whose_every_dial_was_refused_fails() {
        let mut policy = sequential();
        policy.strategy.rounds = 1;
        let refused = |id: &str| {
            let mut a = attempt(id, Failed).ended(1);
            a.twilio_error_code = Some(20003);
            a.message = Some("Authenticate".into());
            a
        };
        let mut status = status_with(vec![
            refused("r1-alice"),
            refused("r1-bob"),
            refused("r1-carol"),
        ]);
        status.next_index = 3;
        let d = run(&policy, &status, 5);
        assert_eq!(d.status.phase, Phase::Failed);
        let (_, reason, message) = finish(&d).unwrap();
        assert_eq!(reason, "DialRefused");
        assert!(message.contains("20003"), "{message}");
    }

    #[test]
    fn a_refused_dial_moves_on_like_a_failed_call() {
        let mut status = status_with(vec![attempt("r1-alice", Intent)]);
        status.next_index = 1;
        let refused = Observation::DialRefused {
            attempt_id: "r1-alice".into(),
            error_code: Some(21215),
            message: "Geo permission".into(),
        };
        assert!(observe(&mut status, &refused, at(1)));
        assert_eq!(dial_ids(&run(&sequential(), &status, 1)), vec!["r1-bob"]);
    }

    #[test]
    fn a_finished_page_drops_queued_dials_and_looks_up_lost_ones() {
        let status = status_with(vec![
            attempt("r1-alice", InProgress).sid("CA1").acked(),
            attempt("r1-bob", Intent).intent(0),
            attempt("r1-carol", Intent).intent(0),
        ]);
        let ctx = StepContext {
            dialing: ["r1-bob".to_string()].into(),
            ..StepContext::default()
        };
        let policy = simultaneous(Completion::FirstAck);
        let d = step(&policy, &alert_call_spec(), &status, at(40), &ctx);
        assert_eq!(d.status.phase, Phase::Acknowledged);
        assert_eq!(cancels(&d), vec![(None, false)]);
        assert!(d.actions.contains(&Action::LookUp {
            attempt_id: "r1-carol".into(),
            to: "sip:carol@example.com".into(),
            intent_at: Some(at(0)),
        }));
    }

    // ---- Simultaneous -----------------------------------------------------------------------

    #[test]
    fn simultaneous_dials_everyone_at_once_and_replays_to_nothing() {
        for completion in [
            Completion::FirstAck,
            Completion::AllNotified,
            Completion::AllAcked,
        ] {
            let policy = simultaneous(completion);
            let d = run(&policy, &pending(), 0);
            assert_eq!(
                dials(&d),
                vec![
                    ("r1-alice", "+15005550101"),
                    ("r1-bob", "client:bob"),
                    ("r1-carol", "sip:carol@example.com"),
                ]
            );
            assert_eq!(d.status.round, 1);
            assert_eq!(d.status.attempt_count, 3);
            let ctx = StepContext {
                dialing: d.status.attempts.iter().map(|a| a.id.clone()).collect(),
                ..StepContext::default()
            };
            let again = step(&policy, &alert_call_spec(), &d.status, at(1), &ctx);
            assert!(dial_ids(&again).is_empty());
            assert_eq!(again.status, d.status);
        }
    }

    #[test]
    fn first_ack_cancels_unanswered_calls_and_leaves_answered_ones() {
        let status = status_with(vec![
            attempt("r1-alice", InProgress).sid("CA1").acked(),
            attempt("r1-bob", Ringing).sid("CA2"),
            attempt("r1-carol", InProgress).sid("CA3"),
        ]);
        let d = run(&simultaneous(Completion::FirstAck), &status, 20);
        assert_eq!(d.status.phase, Phase::Acknowledged);
        assert_eq!(d.status.acknowledged_by.as_deref(), Some("alice"));
        assert_eq!(cancels(&d), vec![(Some("CA2"), false)]);
    }

    #[test]
    fn first_ack_answered_without_keypress_is_not_acknowledged() {
        let policy = simultaneous(Completion::FirstAck);
        let status = status_with(vec![
            attempt("r1-alice", Completed).sid("CA1").ended(40),
            attempt("r1-bob", Completed)
                .sid("CA2")
                .answered_by("machine_start")
                .ended(50),
            attempt("r1-carol", NoAnswer).sid("CA3").ended(30),
        ]);
        let early = run(&policy, &status, 60);
        assert_eq!(early.status.phase, Phase::Calling);
        assert!(dial_ids(&early).is_empty());
        assert_eq!(early.wake_at(), Some(at(80)));
        let due = run(&policy, &status, 80);
        assert_eq!(dial_ids(&due), vec!["r2-alice", "r2-bob", "r2-carol"]);
        assert_eq!(due.status.round, 2);
        // Last round: Exhausted.
        let mut last = policy.clone();
        last.strategy.rounds = 1;
        let d = run(&last, &status, 80);
        assert_eq!(d.status.phase, Phase::Exhausted);
        assert!(dial_ids(&d).is_empty());
    }

    #[test]
    fn first_ack_waits_while_any_call_of_the_round_is_live() {
        let status = status_with(vec![
            attempt("r1-alice", NoAnswer).sid("CA1").ended(30),
            attempt("r1-bob", Busy).sid("CA2").ended(5),
            attempt("r1-carol", Ringing).sid("CA3"),
        ]);
        let d = run(&simultaneous(Completion::FirstAck), &status, 500);
        assert!(dial_ids(&d).is_empty());
        assert_eq!(d.status.phase, Phase::Calling);
    }

    #[test]
    fn all_notified_recalls_only_the_unreached() {
        let policy = simultaneous(Completion::AllNotified);
        let status = status_with(vec![
            attempt("r1-alice", Completed).sid("CA1").ended(40),
            attempt("r1-bob", Busy).sid("CA2").ended(5),
            attempt("r1-carol", Completed)
                .sid("CA3")
                .answered_by("machine_end_silence")
                .ended(50),
        ]);
        let d = run(&policy, &status, 80);
        assert_eq!(dial_ids(&d), vec!["r2-bob", "r2-carol"]);
        let mut last = policy.clone();
        last.strategy.rounds = 1;
        let d = run(&last, &status, 80);
        assert_eq!(d.status.phase, Phase::Exhausted);
        let message = finish(&d).unwrap().2;
        assert!(message.contains("never reached: bob,carol"), "{message}");
    }

    #[test]
    fn all_notified_completes_when_everyone_answered() {
        let policy = simultaneous(Completion::AllNotified);
        let mut attempts = vec![
            attempt("r1-alice", Completed).sid("CA1").ended(40),
            attempt("r1-bob", NoAnswer).sid("CA2").ended(30),
            attempt("r1-carol", Completed).sid("CA3").ended(50),
            attempt("r2-bob", Ringing).sid("CA4"),
        ];
        // Bob still ringing: not complete.
        let d = run(&policy, &status_with(attempts.clone()), 90);
        assert_eq!(d.status.phase, Phase::Calling);
        assert!(finish(&d).is_none());
        // Bob answers and hangs up without a keypress: Notified.
        attempts[3] = attempt("r2-bob", Completed).sid("CA4").ended(95);
        let d = run(&policy, &status_with(attempts.clone()), 96);
        assert_eq!(d.status.phase, Phase::Notified);
        assert_eq!(finish(&d).map(|f| f.1), Some("AllNotified"));
        assert_eq!(d.status.acknowledged_by, None);
        // Had anyone pressed a key, it is Acknowledged by them.
        attempts[0] = attempts[0].clone().acked();
        let d = run(&policy, &status_with(attempts), 96);
        assert_eq!(d.status.phase, Phase::Acknowledged);
        assert_eq!(d.status.acknowledged_by.as_deref(), Some("alice"));
    }

    #[test]
    fn all_acked_recalls_only_the_unacknowledged() {
        let policy = simultaneous(Completion::AllAcked);
        let status = status_with(vec![
            attempt("r1-alice", Completed).sid("CA1").acked().ended(40),
            attempt("r1-bob", Completed).sid("CA2").ended(45),
            attempt("r1-carol", NoAnswer).sid("CA3").ended(30),
        ]);
        let d = run(&policy, &status, 75);
        assert_eq!(dial_ids(&d), vec!["r2-bob", "r2-carol"]);
        assert_eq!(d.status.phase, Phase::Calling);
        // Partial acknowledgement does not finish the page.
        assert!(finish(&d).is_none());
    }

    #[test]
    fn all_acked_completes_when_everyone_acknowledged_across_rounds() {
        let policy = simultaneous(Completion::AllAcked);
        let mut attempts = vec![
            attempt("r1-alice", Completed).sid("CA1").acked().ended(40),
            attempt("r1-bob", Completed).sid("CA2").ended(45),
            attempt("r1-carol", NoAnswer).sid("CA3").ended(30),
            attempt("r2-bob", InProgress).sid("CA4").acked(),
            attempt("r2-carol", Completed).sid("CA5").ended(100),
        ];
        let mut last = policy.clone();
        last.strategy.rounds = 2;
        let d = run(&last, &status_with(attempts.clone()), 110);
        assert_eq!(d.status.phase, Phase::Exhausted);
        let message = finish(&d).unwrap().2;
        assert!(message.contains("never acknowledged: carol"), "{message}");
        attempts[4] = attempts[4].clone().acked();
        let d = run(&policy, &status_with(attempts), 110);
        assert_eq!(d.status.phase, Phase::Acknowledged);
        assert_eq!(d.status.acknowledged_by.as_deref(), Some("alice,bob,carol"));
        assert!(cancels(&d).is_empty());
    }

    #[test]
    fn out_of_order_and_duplicate_callbacks_do_not_change_the_decision() {
        let policy = simultaneous(Completion::FirstAck);
        let mut status = run(&policy, &pending(), 0).status;
        let accepted = |id: &str, sid: &str| Observation::DialAccepted {
            attempt_id: id.into(),
            call_sid: sid.into(),
            at: Some(at(1)),
        };
        let update = |sid: &str, status: AttemptStatus, second: i64| {
            Observation::CallStatus(CallUpdate {
                call_sid: Some(sid.into()),
                status,
                at: Some(at(second)),
                ..CallUpdate::default()
            })
        };
        let observations = [
            accepted("r1-alice", "CA1"),
            accepted("r1-bob", "CA2"),
            accepted("r1-carol", "CA3"),
            // Alice answered and hung up without a keypress; her ringing callback comes late.
            update("CA1", Completed, 30),
            update("CA1", Ringing, 5),
            update("CA2", Ringing, 6),
            update("CA2", Ringing, 6),
            update("CA3", InProgress, 10),
        ];
        for observation in &observations {
            observe(&mut status, observation, at(31));
        }
        assert_eq!(status.attempts[0].status, Completed);
        let d = run(&policy, &status, 31);
        assert_eq!(d.status.phase, Phase::Calling);
        assert!(dial_ids(&d).is_empty());
        // Carol presses a key (the gather callback comes twice): Bob's ringing call is canceled.
        let pressed = Observation::Gathered {
            attempt_id: Some("r1-carol".into()),
            call_sid: Some("CA3".into()),
            digits: "1".into(),
        };
        assert!(observe(&mut status, &pressed, at(32)));
        assert!(!observe(&mut status, &pressed, at(33)));
        let d = run(&policy, &status, 33);
        assert_eq!(d.status.phase, Phase::Acknowledged);
        assert_eq!(d.status.acknowledged_by.as_deref(), Some("carol"));
        assert_eq!(cancels(&d), vec![(Some("CA2"), false)]);
    }
}
