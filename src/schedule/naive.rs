//! A deliberately simple evaluator for tests: walks minute by minute, keeping the latest wall
//! clock seen, and checks windows as minutes of the week. `Schedule::evaluate` must agree with it.

use jiff::civil::DateTime;
use jiff::{SignedDuration, Timestamp};

use super::Schedule;

const WEEK_MINUTES: i64 = 7 * 1440;

/// Who was on call from each change on, for `minutes` minutes from `from` in steps of `step`
/// minutes (the first entry is `from` itself). `from` must not fall in a repeated hour, and
/// every local time of the schedule must be on the grid of the steps.
pub(super) fn walk(
    schedule: &Schedule,
    from: Timestamp,
    minutes: i64,
    step: i64,
) -> Vec<(Timestamp, Vec<String>)> {
    let mut changes: Vec<(Timestamp, Vec<String>)> = Vec::new();
    let mut latest: Option<DateTime> = None;
    // Per rotation: the number of handoffs the wall clock has reached, -1 before its start.
    let mut shifts: Vec<i64> = vec![-1; schedule.rotations.len()];
    for minute in (0..minutes).step_by(step.max(1) as usize) {
        let Ok(now) = from.checked_add(SignedDuration::from_secs(minute * 60)) else {
            break;
        };
        let local = schedule.zone.to_datetime(now);
        let latest = *latest.insert(latest.map_or(local, |seen| seen.max(local)));
        let mut on_call: Vec<String> = Vec::new();
        for item in &schedule.overrides {
            if item.start <= latest && latest < item.end && !on_call.contains(&item.member) {
                on_call.push(item.member.clone());
            }
        }
        for (rotation, shift) in schedule.rotations.iter().zip(shifts.iter_mut()) {
            loop {
                let next = rotation.start.checked_add(SignedDuration::from_secs(
                    rotation.shift_seconds * (*shift + 1),
                ));
                match next {
                    Ok(next) if next <= latest => *shift += 1,
                    _ => break,
                }
            }
        }
        if on_call.is_empty() {
            for (rotation, shift) in schedule.rotations.iter().zip(&shifts).rev() {
                if *shift >= 0 && in_windows(rotation, local) {
                    let index = (*shift as usize) % rotation.members.len();
                    on_call.push(rotation.members[index].clone());
                    break;
                }
            }
        }
        if changes.last().is_none_or(|(_, last)| *last != on_call) {
            changes.push((now, on_call));
        }
    }
    changes
}

fn in_windows(rotation: &super::Rotation, local: DateTime) -> bool {
    if rotation.windows.is_empty() {
        return true;
    }
    let day = i64::from(local.weekday().to_monday_zero_offset());
    let minute = day * 1440 + i64::from(local.hour()) * 60 + i64::from(local.minute());
    rotation.windows.iter().any(|window| {
        (0..7).filter(|d| window.days[*d as usize]).any(|d| {
            let open = d * 1440 + i64::from(window.start) / 60;
            let mut length = i64::from(window.end - window.start) / 60;
            if length <= 0 {
                length += 1440;
            }
            (minute - open).rem_euclid(WEEK_MINUTES) < length
        })
    })
}
