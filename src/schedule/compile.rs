//! From a spec to a [`Schedule`]: every problem found, each with a stable reason.

use std::collections::BTreeSet;

use jiff::civil::DateTime;
use jiff::tz::TimeZone;

use super::{Override, Rotation, Schedule, Window};
use crate::api::OnCallScheduleSpec;

/// The shortest shift: shorter ones would hand off faster than anyone can answer a page.
const MIN_SHIFT_SECONDS: i64 = 3600;

/// One problem in a schedule spec: where, a stable reason (the Ready condition's), and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub field: String,
    pub reason: &'static str,
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

pub(super) fn problem(field: String, reason: &'static str, message: String) -> Problem {
    Problem {
        field,
        reason,
        message,
    }
}

impl Schedule {
    /// Checks `spec` and prepares it for evaluation, or returns every problem found.
    pub fn compile(spec: &OnCallScheduleSpec) -> Result<Schedule, Vec<Problem>> {
        let mut problems = Vec::new();
        let zone = match TimeZone::get(&spec.time_zone) {
            Ok(zone) => Some(zone),
            Err(error) => {
                problems.push(problem(
                    "spec.timeZone".into(),
                    "InvalidTimeZone",
                    format!("unknown time zone {:?}: {error}", spec.time_zone),
                ));
                None
            }
        };
        let mut names = BTreeSet::new();
        for (index, member) in spec.members.iter().enumerate() {
            if !names.insert(member.name.as_str()) {
                problems.push(problem(
                    format!("spec.members[{index}].name"),
                    "DuplicateMember",
                    format!("duplicate member name {:?}", member.name),
                ));
            }
            // NB: a member naming a schedule would make "who is on call" recursive.
            if let Some(schedule) = member.address.schedule() {
                problems.push(problem(
                    format!("spec.members[{index}].schedule"),
                    "MemberIsSchedule",
                    format!(
                        "member {:?} names schedule {schedule:?}: members need phone, client or sip",
                        member.name
                    ),
                ));
            }
        }
        if spec.rotations.is_empty() {
            problems.push(problem(
                "spec.rotations".into(),
                "NoRotation",
                "at least one rotation is required".into(),
            ));
        }
        let mut rotations = Vec::new();
        for (index, rotation) in spec.rotations.iter().enumerate() {
            let field = format!("spec.rotations[{index}]");
            if rotation.members.is_empty() {
                problems.push(problem(
                    format!("{field}.members"),
                    "NoMember",
                    format!("rotation {:?} needs at least one member", rotation.name),
                ));
            }
            for (at, name) in rotation.members.iter().enumerate() {
                if !names.contains(name.as_str()) {
                    problems.push(problem(
                        format!("{field}.members[{at}]"),
                        "UnknownMember",
                        format!("{name:?} is not in spec.members"),
                    ));
                }
            }
            let start = local_time(&rotation.start, &format!("{field}.start"), &mut problems);
            let shift = match parse_go_duration(&rotation.shift_length) {
                Ok(seconds) if seconds >= MIN_SHIFT_SECONDS => Some(seconds),
                Ok(_) => {
                    problems.push(problem(
                        format!("{field}.shiftLength"),
                        "InvalidShiftLength",
                        format!("{:?} is shorter than 1h", rotation.shift_length),
                    ));
                    None
                }
                Err(error) => {
                    problems.push(problem(
                        format!("{field}.shiftLength"),
                        "InvalidShiftLength",
                        error,
                    ));
                    None
                }
            };
            let mut windows = Vec::new();
            for (at, restriction) in rotation.restrictions.iter().enumerate() {
                let field = format!("{field}.restrictions[{at}]");
                match restriction_windows(restriction, &field) {
                    Ok(found) => windows.extend(found),
                    Err(found) => problems.extend(found),
                }
            }
            if let (Some(start), Some(shift_seconds)) = (start, shift) {
                rotations.push(Rotation {
                    members: rotation.members.clone(),
                    start,
                    shift_seconds,
                    windows,
                });
            }
        }
        let mut overrides = Vec::new();
        for (index, item) in spec.overrides.iter().enumerate() {
            let field = format!("spec.overrides[{index}]");
            if !names.contains(item.member.as_str()) {
                problems.push(problem(
                    format!("{field}.member"),
                    "UnknownMember",
                    format!("{:?} is not in spec.members", item.member),
                ));
            }
            let start = local_time(&item.start, &format!("{field}.start"), &mut problems);
            let end = local_time(&item.end, &format!("{field}.end"), &mut problems);
            if let (Some(start), Some(end)) = (start, end) {
                if end <= start {
                    problems.push(problem(
                        format!("{field}.end"),
                        "InvalidWindow",
                        format!("end {} is not after start {}", item.end, item.start),
                    ));
                }
                overrides.push(Override {
                    member: item.member.clone(),
                    start,
                    end,
                });
            }
        }
        match zone {
            Some(zone) if problems.is_empty() => Ok(Schedule {
                zone,
                members: spec.members.clone(),
                rotations,
                overrides,
            }),
            _ => Err(problems),
        }
    }
}

fn local_time(text: &str, field: &str, problems: &mut Vec<Problem>) -> Option<DateTime> {
    match text.parse::<DateTime>() {
        Ok(time) => Some(time),
        Err(error) => {
            problems.push(problem(
                field.to_string(),
                "InvalidTime",
                format!("{text:?} is not a local date and time like 2026-12-07T09:00:00: {error}"),
            ));
            None
        }
    }
}

const WEEKDAYS: [&str; 7] = [
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
];

pub(super) fn weekday(text: &str) -> Option<usize> {
    let text = text.trim().to_ascii_lowercase();
    WEEKDAYS.iter().position(|day| *day == text)
}

/// `HH:MM` as seconds of the day; `24:00` only where `end_of_day` allows it.
pub(super) fn time_of_day(text: &str, end_of_day: bool) -> Option<i32> {
    let (hours, minutes) = text.split_once(':')?;
    if hours.len() != 2 || minutes.len() != 2 {
        return None;
    }
    let hours: i32 = hours.parse().ok()?;
    let minutes: i32 = minutes.parse().ok()?;
    let valid = (hours < 24 && minutes < 60) || (end_of_day && hours == 24 && minutes == 0);
    valid.then_some(hours * 3600 + minutes * 60)
}

fn restriction_windows(
    restriction: &crate::api::Restriction,
    field: &str,
) -> Result<Vec<Window>, Vec<Problem>> {
    let mut problems = Vec::new();
    let mut days = [restriction.weekdays.is_empty(); 7];
    for (at, text) in restriction.weekdays.iter().enumerate() {
        let (first, last) = text.split_once(':').unwrap_or((text, text));
        match (weekday(first), weekday(last)) {
            (Some(first), Some(last)) => {
                let mut day = first;
                loop {
                    days[day] = true;
                    if day == last {
                        break;
                    }
                    day = (day + 1) % 7;
                }
            }
            _ => problems.push(problem(
                format!("{field}.weekdays[{at}]"),
                "InvalidWindow",
                format!("{text:?} is not a weekday like monday or a range like monday:friday"),
            )),
        }
    }
    let mut windows = Vec::new();
    if restriction.times.is_empty() {
        windows.push(Window {
            days,
            start: 0,
            end: 86_400,
        });
    }
    for (at, range) in restriction.times.iter().enumerate() {
        match (
            time_of_day(&range.start, false),
            time_of_day(&range.end, true),
        ) {
            (Some(start), Some(end)) => windows.push(Window { days, start, end }),
            _ => problems.push(problem(
                format!("{field}.times[{at}]"),
                "InvalidWindow",
                format!(
                    "{:?} to {:?} is not a range of times like 09:00 to 18:00 (00:00 to 24:00)",
                    range.start, range.end
                ),
            )),
        }
    }
    if problems.is_empty() {
        Ok(windows)
    } else {
        Err(problems)
    }
}

/// A Go-style duration (`168h`, `1h30m`, `1.5h`, `90m`, `3600s`) in whole seconds.
pub fn parse_go_duration(text: &str) -> Result<i64, String> {
    let invalid = || format!("{text:?} is not a duration like 168h, 12h30m or 90m");
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(invalid());
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(invalid)?;
        let number: f64 = rest[..number_len].parse().map_err(|_| invalid())?;
        rest = &rest[number_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            _ => return Err(invalid()),
        };
        rest = &rest[unit_len..];
        total += number * scale;
    }
    // NB: bounded so that shift arithmetic over centuries cannot overflow.
    if total.fract() != 0.0 || !(0.0..=1e9).contains(&total) {
        return Err(format!(
            "{text:?} must be whole seconds, at most about 30 years"
        ));
    }
    Ok(total as i64)
}
