//! What the demo prints: the page's transitions and outcome as they happen, and the moments the
//! simulator's ledger recorded, in simulated time.

use super::*;
use crate::schedule::Schedule;

/// Round changes and the end of the page, as the controller would announce them in Events.
pub(super) fn note_transitions(
    notes: &mut Vec<Moment>,
    old: &AlertCallStatus,
    new: &AlertCallStatus,
    now: Timestamp,
) {
    if new.round > old.round && new.round > 1 {
        notes.push(Moment {
            at: now,
            text: format!("round {} starts", new.round),
        });
    }
    if new.phase != old.phase && new.phase.is_terminal() {
        notes.push(Moment {
            at: now,
            text: outcome_text(new),
        });
    }
}

pub(super) fn duration_text(seconds: i64) -> String {
    if seconds >= 60 {
        format!("{}m{:02}s", seconds / 60, seconds % 60)
    } else {
        format!("{seconds}s")
    }
}

pub(super) fn outcome_text(status: &AlertCallStatus) -> String {
    let calls = status
        .attempts
        .iter()
        .filter(|a| a.call_sid.is_some())
        .count();
    let after = match (&status.started_at, &status.acknowledged_at) {
        (Some(start), Some(acked)) => format!(
            " after {}",
            duration_text(acked.0.duration_since(start.0).as_secs())
        ),
        _ => String::new(),
    };
    match status.phase {
        Phase::Acknowledged => format!(
            "Acknowledged by {}{after}; {calls} call(s)",
            status
                .acknowledged_by
                .as_deref()
                .unwrap_or("-")
                .replace(',', ", ")
        ),
        other => format!("{other:?} after {calls} call(s)"),
    }
}

pub(super) fn summary(status: &AlertCallStatus) -> String {
    let room = status
        .conference_room
        .as_deref()
        .map(|room| format!("; acknowledgers are in room {room}"))
        .unwrap_or_default();
    format!("{} (simulated time){room}.", outcome_text(status))
}

/// What the simulator saw, for the page's calls, as timeline lines.
pub(super) fn ledger_moments(
    sim: &SimHandle,
    status: &AlertCallStatus,
    cast_of_attempt: &HashMap<String, &'static str>,
    room: &str,
) -> Vec<Moment> {
    let by_sid: HashMap<&str, &crate::api::Attempt> = status
        .attempts
        .iter()
        .filter_map(|a| a.call_sid.as_deref().map(|sid| (sid, a)))
        .collect();
    let mut in_room = 0usize;
    let mut moments = Vec::new();
    for entry in sim.ledger().entries {
        let text = match &entry.event {
            Event::CallStatus { call_sid, status } => {
                let Some(attempt) = by_sid.get(call_sid.as_str()) else {
                    continue;
                };
                let who = who(attempt);
                let scripted = cast_of_attempt
                    .get(&attempt.id)
                    .copied()
                    .unwrap_or_default();
                match status.as_str() {
                    "ringing" => format!("{who} ringing"),
                    "in-progress" if scripted.contains("voicemail") => {
                        format!("{who} answered by voicemail (a machine cannot press a key)")
                    }
                    "in-progress" => format!("{who} answered"),
                    "completed" if attempt.acknowledged => format!("{who} hung up"),
                    "completed" => {
                        format!("{who}'s call ended (no keypress: not acknowledged)")
                    }
                    "queued" | "initiated" => continue,
                    other => format!("{who} {other}"),
                }
            }
            Event::Digits { call_sid, digits } => match by_sid.get(call_sid.as_str()) {
                Some(attempt) => format!("{} pressed {digits}", who(attempt)),
                None => continue,
            },
            Event::Webhook {
                call_sid: Some(call_sid),
                purpose,
                ..
            } if purpose == "gather-action" => match by_sid.get(call_sid.as_str()) {
                Some(attempt) => format!(
                    "{}'s keypress reached the acknowledgement Function (in Sync before the confirmation plays)",
                    who(attempt)
                ),
                None => continue,
            },
            Event::ParticipantJoined {
                friendly_name,
                call_sid,
                ..
            } if friendly_name == room => {
                in_room += 1;
                let who = by_sid
                    .get(call_sid.as_str())
                    .map_or(call_sid.clone(), |a| who(a));
                if in_room == 1 {
                    format!("{who} joined room {room} (alone: waiting with hold music)")
                } else {
                    format!("{who} joined room {room} ({in_room} people)")
                }
            }
            Event::ParticipantLeft {
                friendly_name,
                call_sid,
                ..
            } if friendly_name == room => {
                in_room = in_room.saturating_sub(1);
                let who = by_sid
                    .get(call_sid.as_str())
                    .map_or(call_sid.clone(), |a| who(a));
                format!("{who} left room {room}")
            }
            Event::ConferenceStatus {
                friendly_name,
                status,
                ..
            } if friendly_name == room && status == "in-progress" => {
                format!("room {room} starts: the acknowledgers can talk")
            }
            Event::Recording { .. } => format!("room {room} is being recorded"),
            Event::Error { message, .. } => format!("simulator error: {message}"),
            _ => continue,
        };
        moments.push(Moment { at: entry.at, text });
    }
    moments
}

/// The schedules `policy`'s recipients name that the examples hold, compiled.
fn schedules_of(manifests: &Manifests, policy: &CallPolicy) -> Vec<(String, String, Schedule)> {
    let namespace = namespace_of(policy);
    policy
        .spec
        .recipients
        .iter()
        .filter_map(|r| r.address.schedule())
        .filter_map(|name| {
            let found = manifests.schedule(&namespace, name)?;
            let schedule = Schedule::compile(&found.spec).ok()?;
            Some((name.to_string(), found.spec.time_zone.clone(), schedule))
        })
        .collect()
}

fn names(members: &[String]) -> String {
    if members.is_empty() {
        "nobody".to_string()
    } else {
        members.join(", ")
    }
}

fn local(schedule: &Schedule, at: Timestamp) -> String {
    at.to_zoned(schedule.zone().clone())
        .strftime("%a %H:%M:%S %Z")
        .to_string()
}

/// The simulated time the page starts at, and for each schedule the policy names who is on
/// call then, until when, and who next: the handoff the page will cross.
pub(super) fn schedule_lines(
    manifests: &Manifests,
    policy: &CallPolicy,
    at: Timestamp,
) -> Vec<String> {
    let namespace = namespace_of(policy);
    let mut lines = vec![format!("clock    the page starts at {at} (simulated)")];
    for (name, zone, schedule) in schedules_of(manifests, policy) {
        let then = schedule.evaluate(at);
        let handoff = then.until.map_or(String::new(), |until| {
            format!(
                ", until {}, then {}",
                local(&schedule, until),
                names(&then.next)
            )
        });
        lines.push(format!(
            "schedule OnCallSchedule {namespace}/{name} ({zone}): {} on call at {}{handoff}",
            names(&then.on_call),
            local(&schedule, at),
        ));
    }
    lines
}

/// The handoffs of the policy's schedules from `from` to `to`, as timeline lines.
pub(super) fn handoff_moments(
    manifests: &Manifests,
    policy: &CallPolicy,
    from: Timestamp,
    to: Timestamp,
) -> Vec<Moment> {
    let mut moments = Vec::new();
    for (name, _, schedule) in schedules_of(manifests, policy) {
        let mut at = from;
        // NB: a page lasts minutes; a handful of handoffs is all it can cross.
        for _ in 0..8 {
            let then = schedule.evaluate(at);
            let Some(until) = then.until.filter(|until| *until <= to) else {
                break;
            };
            moments.push(Moment {
                at: until,
                text: format!(
                    "OnCallSchedule {name} hands off at {}: {} on call (was {})",
                    local(&schedule, until),
                    names(&then.next),
                    names(&then.on_call)
                ),
            });
            at = until;
        }
    }
    moments
}

/// Who an attempt called: the policy's recipient, and for a schedule the member on call.
pub(super) fn who(attempt: &crate::api::Attempt) -> String {
    match &attempt.member {
        Some(member) => format!("{}/{member}", attempt.recipient),
        None => attempt.recipient.clone(),
    }
}
