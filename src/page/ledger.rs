//! The acknowledgement ledger: the Sync map the acknowledgement function
//! ([`crate::twilio::functions::ack`]) writes each keypress into before it answers. Reading it is
//! how a keypress counts on real Twilio without inbound connectivity: a call's Events appear only
//! 15 minutes after it ends, and the room lists only who is in it now.
//!
//! Reads are shared per account: one list of the map (bounded by the client's page cap) serves
//! every live page of the account for a poll interval, not one request per call. A page whose
//! answered call just ended unacknowledged asks for a read made after that end, since the
//! person may have pressed the key and hung up a second later.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

use crate::api::{AlertCallStatus, AttemptStatus};
use crate::escalation::Observation;
use crate::twilio::functions::ack;
use crate::twilio::{Account, TwilioError};

/// The Sync service the function writes to (`SYNC_SERVICE_SID` unset): every account has one.
pub const SYNC_SERVICE: &str = "default";

/// How long after an answered call ended without a recorded keypress the page waits for the
/// ledger before it moves on: the function writes the item before it answers, but Twilio may
/// still be running it when the caller hangs up.
pub const SETTLE: SignedDuration = SignedDuration::from_secs(8);

/// One keypress as the function recorded it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Keypress {
    pub attempt: String,
    pub digits: String,
}

/// Keypresses by call SID.
pub type Keypresses = HashMap<String, Keypress>;

#[derive(Default)]
struct Read {
    at: Option<Timestamp>,
    keypresses: Arc<Keypresses>,
}

/// The per-account cache of ledger reads.
pub struct Ledger {
    max_age: Duration,
    accounts: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Read>>>>,
}

impl Ledger {
    /// Reads are reused for `max_age` (the poll interval).
    pub fn new(max_age: Duration) -> Self {
        Self {
            max_age,
            accounts: Mutex::new(HashMap::new()),
        }
    }

    /// The account's keypresses, from a read younger than the poll interval and made at or
    /// after `fresh_after` when given; otherwise read now. Concurrent pages of one account
    /// wait for one read.
    pub async fn keypresses(
        &self,
        account: &Account,
        now: Timestamp,
        fresh_after: Option<Timestamp>,
    ) -> Result<Arc<Keypresses>, TwilioError> {
        let slot = {
            let mut accounts = self.accounts.lock().unwrap_or_else(|p| p.into_inner());
            accounts
                .entry(account.account_sid.clone())
                .or_default()
                .clone()
        };
        let mut read = slot.lock().await;
        let max_age = SignedDuration::try_from(self.max_age).unwrap_or_default();
        let usable = read.at.is_some_and(|at| {
            now.duration_since(at) < max_age && fresh_after.is_none_or(|fresh| at >= fresh)
        });
        if !usable {
            let items = account
                .client
                .list_sync_map_items(SYNC_SERVICE, ack::DEFAULT_MAP)
                .await?;
            read.keypresses = Arc::new(parse(&items));
            read.at = Some(Timestamp::now());
        }
        Ok(read.keypresses.clone())
    }
}

/// The items the function wrote, by call SID; anything else in the map is ignored.
fn parse(items: &[crate::twilio::types::SyncMapItem]) -> Keypresses {
    items
        .iter()
        .filter_map(|item| {
            let field = |name: &str| item.data.get(name).and_then(|v| v.as_str());
            let call_sid = field("callSid")?;
            // NB: the key is the CallSid; an item whose data names another call is not ours.
            (call_sid == item.key).then_some(())?;
            Some((
                call_sid.to_string(),
                Keypress {
                    attempt: field("attempt")?.to_string(),
                    digits: field("digits").unwrap_or_default().to_string(),
                },
            ))
        })
        .collect()
}

/// Whether the page needs the ledger: an attempt with a call that has not acknowledged.
pub fn wanted(status: &AlertCallStatus) -> bool {
    !status.phase.is_terminal()
        && status
            .attempts
            .iter()
            .any(|a| a.call_sid.is_some() && !a.acknowledged)
}

/// The latest end of an answered, unacknowledged call that ended within [`SETTLE`] of `now`:
/// a ledger read must be made after it, and until `end + SETTLE` the page waits.
pub fn settling(status: &AlertCallStatus, now: Timestamp) -> Option<Timestamp> {
    status
        .attempts
        .iter()
        .filter(|a| a.status == AttemptStatus::Completed && !a.acknowledged)
        .filter_map(|a| a.ended_at.as_ref().map(|t| t.0))
        .filter(|ended| now.duration_since(*ended) < SETTLE)
        .max()
}

/// A keypress the ledger holds for one of the page's calls, as the Gather action would have
/// reported it: the item must name the very call and attempt.
pub fn observations(status: &AlertCallStatus, keypresses: &Keypresses) -> Vec<Observation> {
    status
        .attempts
        .iter()
        .filter(|a| !a.acknowledged)
        .filter_map(|attempt| {
            let sid = attempt.call_sid.as_ref()?;
            let pressed = keypresses.get(sid)?;
            (pressed.attempt == attempt.id).then(|| Observation::Gathered {
                attempt_id: Some(attempt.id.clone()),
                call_sid: Some(sid.clone()),
                digits: pressed.digits.clone(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{self, AttemptExt};
    use crate::twilio::types::SyncMapItem;

    fn item(key: &str, call_sid: &str, attempt: &str, digits: &str) -> SyncMapItem {
        SyncMapItem {
            key: key.into(),
            data: serde_json::json!({"callSid": call_sid, "attempt": attempt, "digits": digits, "at": "2026-12-01T00:00:00Z"}),
        }
    }

    #[test]
    fn a_keypress_counts_only_for_the_call_and_attempt_it_names() {
        let status = fixtures::status_with(vec![
            fixtures::attempt("r1-alice", AttemptStatus::Completed).sid("CA1"),
            fixtures::attempt("r1-bob", AttemptStatus::InProgress).sid("CA2"),
            fixtures::attempt("r1-carol", AttemptStatus::Completed)
                .sid("CA3")
                .acked(),
        ]);
        let items = [
            item("CA1", "CA1", "r1-alice", "1"),
            // Another page's attempt id on our call: not ours.
            item("CA2", "CA2", "r9-mallory", "1"),
            // Data naming another call than its key: ignored.
            item("CA9", "CA2", "r1-bob", "1"),
            // Already acknowledged: nothing new.
            item("CA3", "CA3", "r1-carol", "1"),
        ];
        let observations = observations(&status, &parse(&items));
        assert_eq!(
            observations,
            vec![Observation::Gathered {
                attempt_id: Some("r1-alice".into()),
                call_sid: Some("CA1".into()),
                digits: "1".into(),
            }]
        );
    }

    #[test]
    fn an_answered_call_that_just_ended_unacknowledged_holds_the_page() {
        let now = fixtures::at(1_000);
        let cases = [
            (
                "answered, ended 3 s ago",
                AttemptStatus::Completed,
                false,
                997,
                Some(997),
            ),
            (
                "answered, ended long ago",
                AttemptStatus::Completed,
                false,
                900,
                None,
            ),
            ("acknowledged", AttemptStatus::Completed, true, 997, None),
            ("never answered", AttemptStatus::NoAnswer, false, 997, None),
        ];
        for (case, outcome, acked, ended, expected) in cases {
            let mut attempt = fixtures::attempt("r1-alice", outcome)
                .sid("CA1")
                .ended(ended);
            if acked {
                attempt = attempt.acked();
            }
            let status = fixtures::status_with(vec![attempt]);
            assert_eq!(settling(&status, now), expected.map(fixtures::at), "{case}");
        }
    }
}
