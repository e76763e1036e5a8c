//! Who is on call, when: the pure evaluation of an [`OnCallSchedule`](crate::api::OnCallSchedule).
//!
//! [`Schedule::compile`] checks a spec (time zone, members, durations, windows) and returns
//! every problem with a stable reason; [`Schedule::evaluate`] answers, for an instant, who is on
//! call, until when, and who comes next. Local times are read in the schedule's zone; an event
//! at a local time happens at the first instant the wall clock reaches it (a time skipped by a
//! daylight saving change happens when the clock jumps past it, a repeated time the first time).

mod compile;
mod eval;
pub mod interval;
#[cfg(test)]
mod naive;
#[cfg(test)]
mod tests;

pub use compile::{parse_go_duration, Problem};
pub use eval::Evaluation;

use jiff::civil::DateTime;
use jiff::tz::TimeZone;
use jiff::Timestamp;

use crate::api::{OnCallScheduleSpec, Recipient};

/// A schedule ready to evaluate: parsed local times, durations and windows.
#[derive(Debug, Clone)]
pub struct Schedule {
    zone: TimeZone,
    members: Vec<Recipient>,
    rotations: Vec<Rotation>,
    overrides: Vec<Override>,
}

#[derive(Debug, Clone)]
struct Rotation {
    members: Vec<String>,
    start: DateTime,
    shift_seconds: i64,
    /// Empty: the rotation covers all times.
    windows: Vec<Window>,
}

/// One weekly window: the days (Monday first) it starts on and its times of day in seconds. An
/// end not after the start crosses midnight into the next day.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Window {
    days: [bool; 7],
    start: i32,
    end: i32,
}

#[derive(Debug, Clone)]
struct Override {
    member: String,
    start: DateTime,
    end: DateTime,
}

impl Schedule {
    /// The member of that name, to dial.
    pub fn member(&self, name: &str) -> Option<&Recipient> {
        self.members.iter().find(|m| m.name == name)
    }

    /// The schedule's time zone.
    pub fn zone(&self) -> &TimeZone {
        &self.zone
    }
}

/// Members on call as the CLI shows them: `alice +819012345678, bob client:bob`.
pub fn members_line(members: &[Recipient]) -> String {
    let named: Vec<String> = members
        .iter()
        .map(|m| format!("{} {}", m.name, m.address.twilio_to().unwrap_or_default()))
        .collect();
    named.join(", ")
}

/// The members of a schedule on call at `now`, or why nobody is.
pub fn members_on_call(
    spec: &OnCallScheduleSpec,
    name: &str,
    now: Timestamp,
) -> Result<Vec<Recipient>, String> {
    let schedule = Schedule::compile(spec).map_err(|problems| {
        let list: Vec<String> = problems.iter().map(ToString::to_string).collect();
        format!("OnCallSchedule {name} is invalid: {}", list.join("; "))
    })?;
    let members: Vec<Recipient> = schedule
        .evaluate(now)
        .on_call
        .iter()
        .filter_map(|member| schedule.member(member).cloned())
        .collect();
    if members.is_empty() {
        return Err(format!(
            "nobody is on call in OnCallSchedule {name} (a gap)"
        ));
    }
    Ok(members)
}
