//! Folding what Twilio, the runner and the lookups report into `AlertCall.status.attempts`.
//!
//! Every fold is idempotent and monotonic, because callbacks are retried, polls repeat what
//! callbacks said, and the two race: a status only moves forward (`completed` before `ringing`
//! leaves `completed`), the first final status is final, and `acknowledged` never goes back.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::api::{AlertCallStatus, Attempt, AttemptStatus};

/// A call status report, from a status callback or a poll of the Calls API.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CallUpdate {
    /// The attempt id carried in the status-callback URL, when known.
    pub attempt_id: Option<String>,
    /// Twilio's `CallSid`.
    pub call_sid: Option<String>,
    /// Twilio's `CallStatus`.
    pub status: AttemptStatus,
    /// Twilio's `AnsweredBy` (`human`, `machine_start`, `fax`, ...), when detection ran.
    pub answered_by: Option<String>,
    /// Twilio's `ErrorCode`, for failed calls.
    pub error_code: Option<i64>,
    /// When Twilio says this happened (callback `Timestamp`, or the call's `EndTime` for a final
    /// status); `now` when absent.
    pub at: Option<Timestamp>,
}

/// Something the controller learned about a page's calls.
///
/// `spec.acknowledged` (kubectl) is not an observation: [`super::step`] reads it from the spec.
/// Twilio's `SequenceNumber` is not needed either: statuses are ordered by their own progress.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Observation {
    /// A call changed status.
    CallStatus(CallUpdate),
    /// The Gather action fired (signed callback). Any digit acknowledges; none (timeout) does not.
    Gathered {
        attempt_id: Option<String>,
        call_sid: Option<String>,
        digits: String,
    },
    /// The call's Events list shows Twilio fetched the ack document: a key was pressed.
    AckFetched { call_sid: String },
    /// The call is a participant of the conference room (in any room status, `init` included).
    ConferenceParticipant { call_sid: String },
    /// Twilio accepted the dial for this attempt (Calls create returned the SID), or a lookup
    /// after a crash found the call.
    DialAccepted {
        attempt_id: String,
        call_sid: String,
        at: Option<Timestamp>,
    },
    /// Twilio refused the dial permanently (invalid number, geo permission, auth...). Transient
    /// errors (429, 5xx) are retried by the runner and not reported here.
    DialRefused {
        attempt_id: String,
        error_code: Option<i64>,
        message: String,
    },
    /// The call of this attempt was never placed: the runner dropped it from its queue after an
    /// [`super::Action::Cancel`] without SID. Never redialed.
    NotPlaced { attempt_id: String, reason: String },
    /// A lookup after the grace period found no call for this intent at Twilio (the process
    /// died before the create, or an ambiguous create placed nothing): the next step dials it
    /// again, since a page that never rings is worse than a duplicate call.
    IntentLost { attempt_id: String, reason: String },
}

/// Folds `observation` into `status`; true when anything changed (so the status must be written).
pub fn observe(status: &mut AlertCallStatus, observation: &Observation, now: Timestamp) -> bool {
    match observation {
        Observation::CallStatus(update) => {
            let Some(attempt) = find(
                status,
                update.attempt_id.as_deref(),
                update.call_sid.as_deref(),
            ) else {
                return false;
            };
            apply_update(attempt, update, now)
        }
        Observation::Gathered {
            attempt_id,
            call_sid,
            digits,
        } => {
            let Some(attempt) = find(status, attempt_id.as_deref(), call_sid.as_deref()) else {
                return false;
            };
            let mut changed = adopt_sid(attempt, call_sid.as_deref());
            if !digits.is_empty() {
                changed |= acknowledge(attempt);
            }
            changed
        }
        Observation::AckFetched { call_sid } | Observation::ConferenceParticipant { call_sid } => {
            match find(status, None, Some(call_sid)) {
                Some(attempt) => acknowledge(attempt),
                None => false,
            }
        }
        Observation::DialAccepted {
            attempt_id,
            call_sid,
            at,
        } => {
            let Some(attempt) = find(status, Some(attempt_id), None) else {
                return false;
            };
            let mut changed = adopt_sid(attempt, Some(call_sid));
            if attempt.started_at.is_none() {
                attempt.started_at = Some(Time(at.unwrap_or(now)));
                changed = true;
            }
            changed | advance(attempt, AttemptStatus::Queued, at.unwrap_or(now))
        }
        Observation::DialRefused {
            attempt_id,
            error_code,
            message,
        } => {
            let Some(attempt) = find(status, Some(attempt_id), None) else {
                return false;
            };
            // A refusal after an acceptance is a confused report; the call exists.
            if attempt.call_sid.is_some() || attempt.status != AttemptStatus::Intent {
                return false;
            }
            attempt.twilio_error_code = *error_code;
            attempt.message = Some(message.clone());
            advance(attempt, AttemptStatus::Failed, now)
        }
        Observation::NotPlaced { attempt_id, reason } => {
            let Some(attempt) = find(status, Some(attempt_id), None) else {
                return false;
            };
            if attempt.call_sid.is_some() || attempt.status != AttemptStatus::Intent {
                return false;
            }
            attempt.message = Some(reason.clone());
            advance(attempt, AttemptStatus::Canceled, now)
        }
        Observation::IntentLost { attempt_id, reason } => {
            let Some(attempt) = find(status, Some(attempt_id), None) else {
                return false;
            };
            if attempt.call_sid.is_some()
                || attempt.status != AttemptStatus::Intent
                || attempt.redial_due
            {
                return false;
            }
            attempt.redial_due = true;
            attempt.message = Some(reason.clone());
            true
        }
    }
}

/// Progress order of call statuses; all final statuses share the top rank, so the first wins.
fn rank(status: AttemptStatus) -> u8 {
    match status {
        AttemptStatus::Intent => 0,
        AttemptStatus::Queued => 1,
        AttemptStatus::Initiated => 2,
        AttemptStatus::Ringing => 3,
        AttemptStatus::InProgress => 4,
        AttemptStatus::Completed
        | AttemptStatus::Busy
        | AttemptStatus::NoAnswer
        | AttemptStatus::Failed
        | AttemptStatus::Canceled => 5,
    }
}

fn find<'a>(
    status: &'a mut AlertCallStatus,
    attempt_id: Option<&str>,
    call_sid: Option<&str>,
) -> Option<&'a mut Attempt> {
    // NB: the attempt id wins: it is what the callback URL carries, and it ties a call to its
    // attempt even when the SID never made it into the status (crash between dial and write).
    let by_id = attempt_id.and_then(|id| status.attempts.iter().position(|a| a.id == id));
    let index = by_id.or_else(|| {
        call_sid.and_then(|sid| {
            status
                .attempts
                .iter()
                .position(|a| a.call_sid.as_deref() == Some(sid))
        })
    })?;
    status.attempts.get_mut(index)
}

fn adopt_sid(attempt: &mut Attempt, call_sid: Option<&str>) -> bool {
    match (call_sid, &attempt.call_sid) {
        (Some(sid), None) => {
            attempt.call_sid = Some(sid.to_string());
            true
        }
        _ => false,
    }
}

fn acknowledge(attempt: &mut Attempt) -> bool {
    if attempt.acknowledged {
        return false;
    }
    attempt.acknowledged = true;
    true
}

/// Moves the attempt to `to` if that is progress; stamps `endedAt` on the final status.
fn advance(attempt: &mut Attempt, to: AttemptStatus, at: Timestamp) -> bool {
    if rank(to) <= rank(attempt.status) {
        return false;
    }
    attempt.status = to;
    if to.is_final() && attempt.ended_at.is_none() {
        attempt.ended_at = Some(Time(at));
    }
    true
}

fn apply_update(attempt: &mut Attempt, update: &CallUpdate, now: Timestamp) -> bool {
    let at = update.at.unwrap_or(now);
    let mut changed = adopt_sid(attempt, update.call_sid.as_deref());
    if attempt.started_at.is_none() && update.status != AttemptStatus::Intent {
        attempt.started_at = Some(Time(at));
        changed = true;
    }
    let progressed = advance(attempt, update.status, at);
    changed |= progressed;
    // Details travel with the status that carries them; a late duplicate does not rewrite them.
    if let Some(by) = &update.answered_by {
        if attempt.answered_by.is_none() {
            attempt.answered_by = Some(by.clone());
            changed = true;
        }
    }
    if let Some(code) = update.error_code {
        if attempt.twilio_error_code.is_none() && progressed {
            attempt.twilio_error_code = Some(code);
            changed = true;
        }
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{at, attempt, status_with, AttemptExt};

    fn update(sid: &str, status: AttemptStatus, second: i64) -> Observation {
        Observation::CallStatus(CallUpdate {
            call_sid: Some(sid.into()),
            status,
            at: Some(at(second)),
            ..Default::default()
        })
    }

    fn dialed() -> AlertCallStatus {
        status_with(vec![attempt("r1-alice", AttemptStatus::Queued).sid("CA1")])
    }

    #[test]
    fn status_moves_forward_and_stamps_end() {
        let mut status = dialed();
        assert!(observe(
            &mut status,
            &update("CA1", AttemptStatus::Ringing, 5),
            at(5)
        ));
        assert_eq!(status.attempts[0].status, AttemptStatus::Ringing);
        assert!(observe(
            &mut status,
            &update("CA1", AttemptStatus::NoAnswer, 30),
            at(31)
        ));
        assert_eq!(status.attempts[0].status, AttemptStatus::NoAnswer);
        assert_eq!(status.attempts[0].ended_at, Some(Time(at(30))));
    }

    #[test]
    fn duplicates_change_nothing() {
        let mut status = dialed();
        let ringing = update("CA1", AttemptStatus::Ringing, 5);
        assert!(observe(&mut status, &ringing, at(5)));
        let before = status.clone();
        assert!(!observe(&mut status, &ringing, at(6)));
        assert_eq!(status, before);
    }

    #[test]
    fn out_of_order_callbacks_do_not_regress() {
        let mut status = dialed();
        assert!(observe(
            &mut status,
            &update("CA1", AttemptStatus::Completed, 40),
            at(40)
        ));
        let before = status.clone();
        for late in [
            AttemptStatus::Ringing,
            AttemptStatus::InProgress,
            AttemptStatus::Initiated,
        ] {
            assert!(!observe(&mut status, &update("CA1", late, 20), at(41)));
        }
        assert_eq!(status, before);
        assert_eq!(status.attempts[0].status, AttemptStatus::Completed);
    }

    #[test]
    fn first_final_status_is_final() {
        let mut status = dialed();
        assert!(observe(
            &mut status,
            &update("CA1", AttemptStatus::Busy, 3),
            at(3)
        ));
        assert!(!observe(
            &mut status,
            &update("CA1", AttemptStatus::Canceled, 4),
            at(4)
        ));
        assert_eq!(status.attempts[0].status, AttemptStatus::Busy);
    }

    #[test]
    fn gather_with_digits_acknowledges_and_stays_acknowledged() {
        let mut status = dialed();
        let empty = Observation::Gathered {
            attempt_id: None,
            call_sid: Some("CA1".into()),
            digits: String::new(),
        };
        assert!(!observe(&mut status, &empty, at(10)));
        assert!(!status.attempts[0].acknowledged);
        let pressed = Observation::Gathered {
            attempt_id: Some("r1-alice".into()),
            call_sid: Some("CA1".into()),
            digits: "5".into(),
        };
        assert!(observe(&mut status, &pressed, at(10)));
        assert!(observe(
            &mut status,
            &update("CA1", AttemptStatus::Completed, 60),
            at(60)
        ));
        assert!(status.attempts[0].acknowledged);
        assert!(!observe(&mut status, &pressed, at(61)));
    }

    #[test]
    fn ack_fetch_and_conference_participant_acknowledge_even_after_the_call_ended() {
        let mut status = dialed();
        assert!(observe(
            &mut status,
            &update("CA1", AttemptStatus::Completed, 60),
            at(60)
        ));
        let fetched = Observation::AckFetched {
            call_sid: "CA1".into(),
        };
        assert!(observe(&mut status, &fetched, at(70)));
        assert!(status.attempts[0].acknowledged);
        let joined = Observation::ConferenceParticipant {
            call_sid: "CA1".into(),
        };
        assert!(!observe(&mut status, &joined, at(71)));
    }

    #[test]
    fn unknown_calls_are_ignored() {
        let mut status = dialed();
        assert!(!observe(
            &mut status,
            &update("CA9", AttemptStatus::Completed, 1),
            at(1)
        ));
        let fetched = Observation::AckFetched {
            call_sid: "CA9".into(),
        };
        assert!(!observe(&mut status, &fetched, at(1)));
        assert_eq!(status, dialed());
    }

    #[test]
    fn dial_accepted_records_sid_once() {
        let mut status = status_with(vec![attempt("r1-alice", AttemptStatus::Intent)]);
        let accepted = Observation::DialAccepted {
            attempt_id: "r1-alice".into(),
            call_sid: "CA1".into(),
            at: Some(at(2)),
        };
        assert!(observe(&mut status, &accepted, at(2)));
        let a = &status.attempts[0];
        assert_eq!(a.call_sid.as_deref(), Some("CA1"));
        assert_eq!(a.status, AttemptStatus::Queued);
        assert_eq!(a.started_at, Some(Time(at(2))));
        assert!(!observe(&mut status, &accepted, at(3)));
    }

    #[test]
    fn callback_by_attempt_id_repairs_a_missing_sid() {
        let mut status = status_with(vec![attempt("r1-alice", AttemptStatus::Intent)]);
        let ringing = Observation::CallStatus(CallUpdate {
            attempt_id: Some("r1-alice".into()),
            call_sid: Some("CA7".into()),
            status: AttemptStatus::Ringing,
            ..Default::default()
        });
        assert!(observe(&mut status, &ringing, at(4)));
        assert_eq!(status.attempts[0].call_sid.as_deref(), Some("CA7"));
        assert_eq!(status.attempts[0].status, AttemptStatus::Ringing);
        // A late DialAccepted (the runner's write lost the race) changes nothing but nothing.
        let accepted = Observation::DialAccepted {
            attempt_id: "r1-alice".into(),
            call_sid: "CA7".into(),
            at: Some(at(3)),
        };
        assert!(!observe(&mut status, &accepted, at(5)));
        assert_eq!(status.attempts[0].status, AttemptStatus::Ringing);
    }

    #[test]
    fn dial_refused_fails_the_attempt_with_code_and_message() {
        let mut status = status_with(vec![attempt("r1-alice", AttemptStatus::Intent)]);
        let refused = Observation::DialRefused {
            attempt_id: "r1-alice".into(),
            error_code: Some(21215),
            message: "Geo permission".into(),
        };
        assert!(observe(&mut status, &refused, at(2)));
        let a = &status.attempts[0];
        assert_eq!(a.status, AttemptStatus::Failed);
        assert_eq!(a.twilio_error_code, Some(21215));
        assert_eq!(a.message.as_deref(), Some("Geo permission"));
        assert_eq!(a.ended_at, Some(Time(at(2))));
        assert!(!observe(&mut status, &refused, at(3)));
    }

    #[test]
    fn refusal_or_not_placed_after_acceptance_is_ignored() {
        let mut status = dialed();
        let refused = Observation::DialRefused {
            attempt_id: "r1-alice".into(),
            error_code: Some(21215),
            message: "late".into(),
        };
        assert!(!observe(&mut status, &refused, at(2)));
        let lost = Observation::NotPlaced {
            attempt_id: "r1-alice".into(),
            reason: "not found".into(),
        };
        assert!(!observe(&mut status, &lost, at(2)));
        assert_eq!(status, dialed());
    }

    #[test]
    fn not_placed_cancels_the_intent() {
        let mut status = status_with(vec![attempt("r1-alice", AttemptStatus::Intent)]);
        let lost = Observation::NotPlaced {
            attempt_id: "r1-alice".into(),
            reason: "no such call at Twilio".into(),
        };
        assert!(observe(&mut status, &lost, at(40)));
        assert_eq!(status.attempts[0].status, AttemptStatus::Canceled);
        assert!(!observe(&mut status, &lost, at(41)));
    }

    #[test]
    fn answered_by_and_error_code_are_kept() {
        let mut status = dialed();
        let machine = Observation::CallStatus(CallUpdate {
            call_sid: Some("CA1".into()),
            status: AttemptStatus::Completed,
            answered_by: Some("machine_end_beep".into()),
            ..Default::default()
        });
        assert!(observe(&mut status, &machine, at(9)));
        assert_eq!(
            status.attempts[0].answered_by.as_deref(),
            Some("machine_end_beep")
        );
        let mut failed = dialed();
        let error = Observation::CallStatus(CallUpdate {
            call_sid: Some("CA1".into()),
            status: AttemptStatus::Failed,
            error_code: Some(32009),
            ..Default::default()
        });
        assert!(observe(&mut failed, &error, at(9)));
        assert_eq!(failed.attempts[0].twilio_error_code, Some(32009));
    }
}
