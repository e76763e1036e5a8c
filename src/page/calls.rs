//! The Twilio side of a page, without Kubernetes: what Twilio says about a page's calls (as
//! [`Observation`]s for [`crate::escalation::observe`]), the create request of a dial, ending a
//! call, and finding a lost dial. The AlertCall controller and `alertcall demo` both drive
//! escalation through these, so the demo shows what the operator really does.

use std::collections::BTreeSet;

use jiff::{SignedDuration, Timestamp};

use crate::api::{AlertCallStatus, Attempt, AttemptStatus, CallPolicySpec};
use crate::escalation::{CallUpdate, Observation};
use crate::page::documents;
use crate::page::runner::{DialOutcome, Limits};
use crate::twilio::client::{CallEnd, CallFilter, ConferenceFilter, CreateCall, DateCreatedFilter};
use crate::twilio::twiml::TwimlError;
use crate::twilio::types::{parse_twilio_date, Call, CallStatus, ConferenceStatus};
use crate::twilio::{RetryClass, TwilioClient, TwilioError};

/// How long after an answered call ended its Events are still read for a late acknowledgement.
pub const ACK_CHECK_WINDOW: SignedDuration = SignedDuration::from_secs(120);

/// True when `url` (its query ignored) is the acknowledgement document.
pub fn is_ack_url(url: &str, ack_base: &str) -> bool {
    let strip = |u: &str| u.split('?').next().unwrap_or_default().to_string();
    strip(url) == strip(ack_base)
}

/// An answered call that ended without a keypress seen yet: its Events may still show one.
pub fn recently_answered(attempt: &Attempt, now: Timestamp) -> bool {
    attempt.status == AttemptStatus::Completed
        && !attempt.acknowledged
        && attempt
            .ended_at
            .as_ref()
            .is_some_and(|t| now.duration_since(t.0) < ACK_CHECK_WINDOW)
}

/// What one poll found.
#[derive(Debug, Default, PartialEq)]
pub struct Polled {
    pub observations: Vec<Observation>,
    /// The room's participants were listed: up to three conference requests this cycle, so a
    /// recording look-up waits for the next one.
    pub room_checked: bool,
}

/// What Twilio says about the page's calls: status of every live call, acknowledgement from a
/// call's Events (the ack document fetched) and from the room's participants.
pub async fn poll(
    client: &TwilioClient,
    status: &AlertCallStatus,
    room: &str,
    ack_base: &str,
    now: Timestamp,
) -> Polled {
    let mut observations = Vec::new();
    let mut check_room = false;
    for attempt in &status.attempts {
        let Some(sid) = &attempt.call_sid else {
            continue;
        };
        let mut answered = recently_answered(attempt, now);
        if !attempt.status.is_final() {
            match client.fetch_call(sid).await {
                Ok(fetched) => {
                    answered |= matches!(
                        fetched.status,
                        CallStatus::InProgress | CallStatus::Completed
                    );
                    observations.extend(update_of(&fetched, Some(attempt.id.clone())));
                }
                Err(error) => tracing::warn!(call_sid = %sid, %error, "polling a call"),
            }
        }
        if answered && !attempt.acknowledged {
            check_room = true;
            match client.list_call_events(sid).await {
                Ok(events) => {
                    let fetched_ack = events.iter().any(|event| {
                        event.request.as_ref().is_some_and(|request| {
                            request
                                .url
                                .as_deref()
                                .is_some_and(|u| is_ack_url(u, ack_base))
                                || ["digits", "Digits"].iter().any(|k| {
                                    request
                                        .parameters
                                        .get(*k)
                                        .and_then(|v| v.as_str())
                                        .is_some_and(|d| !d.is_empty())
                                })
                        })
                    });
                    if fetched_ack {
                        observations.push(Observation::AckFetched {
                            call_sid: sid.clone(),
                        });
                    }
                }
                Err(error) => tracing::warn!(call_sid = %sid, %error, "reading call events"),
            }
        }
    }
    if check_room {
        observations.extend(participants(client, room).await);
    }
    Polled {
        observations,
        room_checked: check_room,
    }
}

/// Calls in the room; a room with a lone acknowledger is still `init`, so every room not
/// completed counts. Only open rooms are listed (one request per status, as Twilio takes one
/// `Status` per request): the name is reused by every page of the policy, and its completed
/// history grows with every incident.
pub async fn participants(client: &TwilioClient, room: &str) -> Vec<Observation> {
    let mut rooms = Vec::new();
    // NB: `init` first: a room that starts between the two requests is then listed as
    // `in-progress` rather than missed.
    for status in [ConferenceStatus::Init, ConferenceStatus::InProgress] {
        let filter = ConferenceFilter {
            friendly_name: Some(room.to_string()),
            status: Some(status),
            date_created: None,
        };
        match client.list_conferences_where(&filter).await {
            Ok(list) => rooms.extend(list),
            Err(error) => tracing::warn!(%room, %error, "listing conference rooms"),
        }
    }
    rooms.sort_by(|a, b| a.sid.cmp(&b.sid));
    rooms.dedup_by(|a, b| a.sid == b.sid);
    let mut observations = Vec::new();
    for conference in &rooms {
        match client.list_participants(&conference.sid).await {
            Ok(list) => {
                observations.extend(
                    list.into_iter()
                        .map(|p| Observation::ConferenceParticipant {
                            call_sid: p.call_sid,
                        }),
                )
            }
            Err(error) => tracing::warn!(%room, %error, "listing participants"),
        }
    }
    observations
}

/// The media URL of the room's recording for a page started at `since`, once Twilio started
/// one: the room is recorded from when its conference starts (a second participant joins), so a
/// room with a lone acknowledger has none yet. Every page of a policy shares the room's name, so
/// only a conference still open or created since the page started (a minute of slack for the
/// two clocks) is this page's; the earliest such one with a recording wins. Twilio filters
/// creation by day only, so the list holds the day's earlier rooms too, narrowed here.
pub async fn recording_url(
    client: &TwilioClient,
    room: &str,
    since: Timestamp,
) -> Result<Option<String>, TwilioError> {
    let since = since - SignedDuration::from_mins(1);
    let filter = ConferenceFilter {
        friendly_name: Some(room.to_string()),
        status: None,
        date_created: Some(DateCreatedFilter::OnOrAfter(
            since.to_zoned(jiff::tz::TimeZone::UTC).date(),
        )),
    };
    let mut rooms: Vec<_> = client
        .list_conferences_where(&filter)
        .await?
        .into_iter()
        .filter(|c| {
            c.status != ConferenceStatus::Completed
                || c.date_created
                    .as_deref()
                    .and_then(parse_twilio_date)
                    .is_some_and(|at| at >= since)
        })
        .collect();
    rooms.sort_by_key(|c| c.date_created.as_deref().and_then(parse_twilio_date));
    for conference in rooms {
        let recordings = client.list_conference_recordings(&conference.sid).await?;
        if let Some(recording) = recordings.iter().find(|r| r.status != "absent") {
            return Ok(Some(
                client.recording_media_url(&recording.sid)?.to_string(),
            ));
        }
    }
    Ok(None)
}

/// A fetched call as an observation.
pub fn update_of(call: &Call, attempt_id: Option<String>) -> Option<Observation> {
    let status = attempt_status(call.status.as_str())?;
    Some(Observation::CallStatus(CallUpdate {
        attempt_id,
        call_sid: Some(call.sid.clone()),
        status,
        answered_by: call.answered_by.clone().filter(|s| !s.is_empty()),
        error_code: None,
        // NB: the caller's clock, not Twilio's: round intervals and deadlines are measured
        // against it, and the two clocks may disagree.
        at: None,
    }))
}

/// Twilio's `CallStatus` text as an attempt status.
pub fn attempt_status(text: &str) -> Option<AttemptStatus> {
    serde_json::from_value(serde_json::Value::String(text.to_string())).ok()
}

/// Slack between this process's clock and Twilio's when a call is matched to its intent.
/// Twilio stamps `date_created` to the second; anything more lenient would let an earlier
/// page's call to the same person pass for this one.
pub const LOOKUP_SKEW: SignedDuration = SignedDuration::from_secs(5);

/// Finds the call a lost intent placed: same To and From, created at or after the intent (less
/// [`LOOKUP_SKEW`]), and claimed by no attempt of any page (`claimed`: every SID the AlertCalls
/// record). A call still in Twilio's per-second queue counts: it has no start time until it is
/// dialed, so no `StartTime` filter is used, and one list serves every status, so a call that
/// leaves the queue during the look-up is not missed between two requests. Twilio documents no
/// order for the list, so every page is read (up to the client's `max_pages`). A call whose
/// creation time cannot be read is not this intent's: the caller then dials again, and a
/// duplicate call is the lesser harm.
pub async fn look_up(
    client: &TwilioClient,
    from: &str,
    to: &str,
    intent_at: Timestamp,
    claimed: &BTreeSet<String>,
) -> Result<Option<Call>, TwilioError> {
    let since = intent_at - LOOKUP_SKEW;
    let filter = CallFilter {
        to: Some(to.to_string()),
        from: Some(from.to_string()),
        status: None,
        start_time: None,
    };
    let mut calls = client.list_calls(&filter).await?;
    calls.retain(|c| {
        !claimed.contains(&c.sid) && c.date_created_parsed().is_some_and(|at| at >= since)
    });
    calls.sort_by(|a, b| (a.date_created_parsed(), &a.sid).cmp(&(b.date_created_parsed(), &b.sid)));
    Ok(calls.into_iter().next())
}

/// The create request of one dial: the policy's inline TwiML (message, Gather whose action is
/// `ack_url`), its caller ID and ring timeout.
pub fn dial_request(
    purpose: documents::Purpose,
    policy: &CallPolicySpec,
    summary: &str,
    to: String,
    ack_url: &str,
    status_callback: Option<String>,
) -> Result<CreateCall, TwimlError> {
    let twiml = documents::twiml_for(purpose, policy, summary, ack_url)?;
    let mut request = CreateCall::new(to, policy.twilio.from.clone(), twiml);
    request.timeout_secs = Some(policy.strategy.ring_timeout_seconds);
    request.status_callback = status_callback;
    Ok(request)
}

/// The runner's pacing limits for a policy.
pub fn limits(policy: &CallPolicySpec) -> Limits {
    Limits {
        calls_per_second: policy.limits.calls_per_second,
        max_concurrent_calls: policy.limits.max_concurrent_calls,
    }
}

/// Ends a placed call: hung up when answered, canceled otherwise. A call that already ended is
/// not an error: the next poll sees its final status. Only a failure that may pass (Twilio
/// unreachable, 5xx, 429) is returned: the caller retries it, and a page being deleted says why
/// it waits.
pub async fn end_call(
    client: &TwilioClient,
    call_sid: &str,
    hang_up: bool,
) -> Result<(), TwilioError> {
    let how = if hang_up {
        CallEnd::Completed
    } else {
        CallEnd::Canceled
    };
    match client.end_call(call_sid, how).await {
        Ok(_) => Ok(()),
        // NB: a 4xx (not cancelable, not found) will not change by asking again.
        Err(error) if error.retry_class() == RetryClass::Permanent => {
            tracing::debug!(%call_sid, %error, "ending a call");
            Ok(())
        }
        Err(error) => Err(error),
    }
}

/// What a dial's outcome tells the page. `None` for an ambiguous dial: whether a call exists
/// is only known after looking it up.
pub fn outcome_observations(attempt_id: &str, outcome: &DialOutcome) -> Option<Vec<Observation>> {
    Some(match outcome {
        DialOutcome::Accepted(placed) => {
            let mut list = vec![Observation::DialAccepted {
                attempt_id: attempt_id.to_string(),
                call_sid: placed.sid.clone(),
                at: None,
            }];
            list.extend(update_of(placed, Some(attempt_id.to_string())));
            list
        }
        DialOutcome::Refused { code, message } => vec![Observation::DialRefused {
            attempt_id: attempt_id.to_string(),
            error_code: *code,
            message: message.clone(),
        }],
        DialOutcome::Ambiguous(_) => return None,
        DialOutcome::NotPlaced => vec![Observation::NotPlaced {
            attempt_id: attempt_id.to_string(),
            reason: "dropped from the dial queue: the page no longer needs it".into(),
        }],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn twilio_statuses_map_to_attempt_statuses() {
        assert_eq!(
            attempt_status("in-progress"),
            Some(AttemptStatus::InProgress)
        );
        assert_eq!(attempt_status("no-answer"), Some(AttemptStatus::NoAnswer));
        assert_eq!(attempt_status("queued"), Some(AttemptStatus::Queued));
        assert_eq!(attempt_status("initiated"), Some(AttemptStatus::Initiated));
        assert_eq!(attempt_status("bogus"), None);
    }

    #[test]
    fn ack_url_matching_ignores_the_query() {
        let base = "http://127.0.0.1:1/twiml/ack/ns/p";
        assert!(is_ack_url(
            "http://127.0.0.1:1/twiml/ack/ns/p?call=ns/x&attempt=r1-a",
            base
        ));
        assert!(!is_ack_url(
            "http://127.0.0.1:1/twilio/status?call=ns/x",
            base
        ));
    }
}
