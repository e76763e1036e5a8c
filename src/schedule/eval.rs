//! Evaluating a compiled schedule at an instant, and finding its next change.

use jiff::civil::DateTime;
use jiff::tz::AmbiguousOffset;
use jiff::{SignedDuration, Timestamp, ToSpan};

use super::{Rotation, Schedule, Window};

/// How far ahead a change is looked for; a schedule that stays the same longer has no `until`.
const HORIZON_SECONDS: i64 = 400 * 86_400;
/// A bound on the candidate instants tried, whatever the schedule.
const MAX_STEPS: usize = 50_000;

/// Who is on call at an instant, until when, and who after that.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evaluation {
    /// Members on call now, empty in a gap.
    pub on_call: Vec<String>,
    /// The next instant the set changes, if within about a year.
    pub until: Option<Timestamp>,
    /// Members on call from `until` on.
    pub next: Vec<String>,
}

impl Schedule {
    /// Who is on call at `now`, until when, and who next.
    pub fn evaluate(&self, now: Timestamp) -> Evaluation {
        let on_call = self.on_call_at(now);
        let horizon = now
            .checked_add(SignedDuration::from_secs(HORIZON_SECONDS))
            .ok();
        let mut at = now;
        for _ in 0..MAX_STEPS {
            let Some(change) = self.next_candidate(at) else {
                break;
            };
            if horizon.is_some_and(|horizon| change > horizon) {
                break;
            }
            let then = self.on_call_at(change);
            if then != on_call {
                return Evaluation {
                    on_call,
                    until: Some(change),
                    next: then,
                };
            }
            at = change;
        }
        Evaluation {
            on_call,
            until: None,
            next: Vec::new(),
        }
    }

    /// Members on call at `now`: the active overrides' members, else the member of the last
    /// active rotation, else nobody.
    pub fn on_call_at(&self, now: Timestamp) -> Vec<String> {
        let mut members: Vec<String> = Vec::new();
        for item in &self.overrides {
            let active = self.reach(item.start).is_some_and(|start| start <= now)
                && self.reach(item.end).is_some_and(|end| now < end);
            if active && !members.contains(&item.member) {
                members.push(item.member.clone());
            }
        }
        if !members.is_empty() {
            return members;
        }
        let local = self.zone.to_datetime(now);
        for rotation in self.rotations.iter().rev() {
            if !covers(&rotation.windows, local) {
                continue;
            }
            if let Some((shift, _)) = self.shift_at(rotation, now) {
                let count = rotation.members.len() as i64;
                if let Some(member) = usize::try_from(shift.rem_euclid(count.max(1)))
                    .ok()
                    .and_then(|index| rotation.members.get(index))
                {
                    return vec![member.clone()];
                }
            }
        }
        Vec::new()
    }

    /// The first instant the wall clock shows `local` or later: the earlier of a repeated time,
    /// the jump itself for a skipped one. None out of jiff's range.
    pub(super) fn reach(&self, local: DateTime) -> Option<Timestamp> {
        match self.zone.to_ambiguous_timestamp(local).offset() {
            AmbiguousOffset::Unambiguous { offset } => offset.to_timestamp(local).ok(),
            AmbiguousOffset::Fold { before, .. } => before.to_timestamp(local).ok(),
            AmbiguousOffset::Gap { before, .. } => {
                let past_the_jump = before.to_timestamp(local).ok()?;
                self.zone
                    .preceding(past_the_jump)
                    .next()
                    .map(|transition| transition.timestamp())
            }
        }
    }

    /// Every instant the wall clock shows exactly `local`: none in a skipped hour, two in a
    /// repeated one.
    fn instants_of(&self, local: DateTime) -> Vec<Timestamp> {
        match self.zone.to_ambiguous_timestamp(local).offset() {
            AmbiguousOffset::Unambiguous { offset } => {
                offset.to_timestamp(local).ok().into_iter().collect()
            }
            AmbiguousOffset::Fold { before, after } => [before, after]
                .into_iter()
                .filter_map(|offset| offset.to_timestamp(local).ok())
                .collect(),
            AmbiguousOffset::Gap { .. } => Vec::new(),
        }
    }

    /// The local time of handoff `index` (0 is the rotation's start).
    fn handoff(rotation: &Rotation, index: i64) -> Option<DateTime> {
        let seconds = rotation.shift_seconds.checked_mul(index)?;
        rotation
            .start
            .checked_add(SignedDuration::from_secs(seconds))
            .ok()
    }

    /// The shift in progress at `now` and when it ends, or None before the rotation starts.
    fn shift_at(&self, rotation: &Rotation, now: Timestamp) -> Option<(i64, Timestamp)> {
        let start = self.reach(rotation.start)?;
        if now < start {
            return None;
        }
        // NB: real time approximates the count; local-time handoffs differ from it by at most
        // the zone's offset changes, which the two loops correct.
        let elapsed = now.duration_since(start).as_secs();
        let mut index = elapsed / rotation.shift_seconds.max(1);
        let at = |index: i64| Self::handoff(rotation, index).and_then(|local| self.reach(local));
        while at(index + 1).is_some_and(|next| next <= now) {
            index += 1;
        }
        while index > 0 && at(index).is_none_or(|this| this > now) {
            index -= 1;
        }
        Some((index, at(index + 1)?))
    }

    /// The earliest instant after `after` at which who is on call may change.
    fn next_candidate(&self, after: Timestamp) -> Option<Timestamp> {
        let mut best: Option<Timestamp> = None;
        let mut offer = |candidate: Timestamp| {
            if candidate > after && best.is_none_or(|best| candidate < best) {
                best = Some(candidate);
            }
        };
        let local = self.zone.to_datetime(after);
        let mut any_windows = false;
        for rotation in &self.rotations {
            match self.shift_at(rotation, after) {
                Some((_, next)) => offer(next),
                None => {
                    if let Some(start) = self.reach(rotation.start) {
                        offer(start);
                    }
                }
            }
            for window in &rotation.windows {
                any_windows = true;
                for boundary in window_boundaries(window, local) {
                    for instant in self.instants_of(boundary) {
                        offer(instant);
                    }
                }
            }
        }
        if any_windows {
            // NB: a repeated or skipped hour can move the wall clock across a window boundary
            // without it ever showing the boundary time.
            if let Some(transition) = self.zone.following(after).next() {
                offer(transition.timestamp());
            }
        }
        for item in &self.overrides {
            for local in [item.start, item.end] {
                if let Some(instant) = self.reach(local) {
                    offer(instant);
                }
            }
        }
        best
    }
}

/// Whether the wall-clock time `local` falls in any window (all times when there are none).
pub(super) fn covers(windows: &[Window], local: DateTime) -> bool {
    if windows.is_empty() {
        return true;
    }
    let day = local.weekday().to_monday_zero_offset() as usize;
    let yesterday = (day + 6) % 7;
    let second =
        i32::from(local.hour()) * 3600 + i32::from(local.minute()) * 60 + i32::from(local.second());
    windows.iter().any(|window| {
        if window.start < window.end {
            window.days[day] && window.start <= second && second < window.end
        } else {
            (window.days[day] && second >= window.start)
                || (window.days[yesterday] && second < window.end)
        }
    })
}

/// Local times at which `window` opens or closes, from the day before `local` to a week after.
fn window_boundaries(window: &Window, local: DateTime) -> Vec<DateTime> {
    let date = local.date();
    let mut out = Vec::new();
    for offset in -1..=8i64 {
        let Ok(day) = date.checked_add(offset.days()) else {
            continue;
        };
        let midnight = day.to_datetime(jiff::civil::Time::midnight());
        let end = if window.start < window.end {
            window.end
        } else {
            window.end + 86_400
        };
        for second in [window.start, end] {
            if let Ok(time) = midnight.checked_add(SignedDuration::from_secs(i64::from(second))) {
                out.push(time);
            }
        }
    }
    out
}
