//! Who a policy's recipients are at a dial: a schedule recipient resolved to its members on
//! call (or skipped, on record), and the attempts of the active escalation tier.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::step::Plan;
use super::tier_attempt_id;
use crate::api::conditions::set_condition;
use crate::api::{Attempt, Phase, Recipient, Skip};

/// Condition on an AlertCall: whether the last schedule recipient it dialed had someone on call.
pub const RECIPIENTS_ON_CALL: &str = "RecipientsOnCall";

impl Plan<'_> {
    /// The escalation tier calling now, from 1.
    pub fn tier(&self) -> u32 {
        self.status.tier.max(1)
    }

    /// The attempts of the active tier.
    pub fn tier_attempts(&self) -> impl Iterator<Item = &Attempt> {
        let tier = self.tier();
        self.status
            .attempts
            .iter()
            .filter(move |a| a.tier.max(1) == tier)
    }

    /// A round of the active tier that called nobody because every schedule recipient in it
    /// was empty ends the tier as Exhausted (reason `NobodyOnCall`), never quietly: the next
    /// tier, if any, takes over. True when it did.
    pub fn nobody_on_call(&mut self, round: u32) -> bool {
        let tier = self.tier();
        if self.tier_attempts().any(|a| a.round == round) {
            return false;
        }
        let skipped: Vec<String> = self
            .status
            .skipped
            .iter()
            .filter(|s| s.tier.max(1) == tier && s.round == round)
            .map(|s| format!("{} ({})", s.recipient, s.message))
            .collect();
        if skipped.is_empty() {
            return false;
        }
        let message = format!(
            "nobody was on call for round {round}: skipped {}",
            skipped.join(", ")
        );
        // NB: the reason stays on the page, not only in its Event.
        set_condition(
            &mut self.status.conditions,
            RECIPIENTS_ON_CALL,
            false,
            "NobodyOnCall",
            &message,
            None,
            Time(self.now),
        );
        self.finish(Phase::Exhausted, "NobodyOnCall", message);
        true
    }

    /// Who a recipient is dialed as now: itself, or each member on call in its schedule, as
    /// `(member, address)`; `Err` says why a schedule recipient has nobody.
    pub(super) fn resolve(
        &self,
        recipient: &Recipient,
    ) -> Result<Vec<(Option<String>, String)>, String> {
        let Some(schedule) = recipient.address.schedule() else {
            return Ok(recipient
                .address
                .twilio_to()
                .map(|to| (None, to))
                .into_iter()
                .collect());
        };
        let members = match self.ctx.on_call.get(schedule) {
            Some(Ok(members)) => members,
            Some(Err(why)) => return Err(why.clone()),
            None => return Err(format!("schedule {schedule} was not evaluated")),
        };
        let dialed: Vec<(Option<String>, String)> = members
            .iter()
            .filter_map(|m| m.address.twilio_to().map(|to| (Some(m.name.clone()), to)))
            .collect();
        if dialed.is_empty() {
            return Err(format!("nobody is on call in schedule {schedule}"));
        }
        Ok(dialed)
    }

    /// Records that `recipient` was passed over in `round`, once.
    pub(super) fn skip(&mut self, round: u32, recipient: &Recipient, why: String) {
        let id = tier_attempt_id(self.tier(), round, &recipient.name, None);
        if self.status.skipped.iter().any(|s| s.id == id) {
            return;
        }
        let schedule = recipient.address.schedule().unwrap_or_default().to_string();
        let message = format!("recipient {} skipped: {why}", recipient.name);
        set_condition(
            &mut self.status.conditions,
            RECIPIENTS_ON_CALL,
            false,
            "ScheduleEmpty",
            &message,
            None,
            Time(self.now),
        );
        self.status.skipped.push(Skip {
            id,
            recipient: recipient.name.clone(),
            schedule,
            tier: self.tier(),
            round,
            at: Some(Time(self.now)),
            message: why,
        });
    }

    /// Recipients of the active tier who acknowledged, in the order they were called: what
    /// AllAcked and AllNotified count, as another tier's policy may reuse a name.
    pub fn tier_acknowledgers(&self) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        for attempt in self.tier_attempts().filter(|a| a.acknowledged) {
            if !names.contains(&attempt.recipient) {
                names.push(attempt.recipient.clone());
            }
        }
        names
    }
}
