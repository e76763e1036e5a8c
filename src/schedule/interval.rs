//! Evaluation of [`TimeInterval`]s: whether an instant falls in a window, and when a window
//! ends. Pure, so routes and policies can ask it on every signal.

use jiff::civil::{Date, Time};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};

use super::compile::{problem, time_of_day, weekday};
use super::Problem;
use crate::api::TimeInterval;

/// How far ahead [`Intervals::first_outside`] looks: a window that never ends within a week is
/// treated as never ending, and the caller decides what that means.
pub const HORIZON: SignedDuration = SignedDuration::from_hours(7 * 24);

/// A list of intervals ready to evaluate; it contains an instant when any interval does.
#[derive(Debug, Clone, Default)]
pub struct Intervals(Vec<Compiled>);

#[derive(Debug, Clone)]
struct Compiled {
    zone: TimeZone,
    /// Seconds of the day `[start, end)`; `end <= start` crosses midnight. Empty: all day.
    times: Vec<(i32, i32)>,
    /// Indexed Monday = 0.
    weekdays: Option<[bool; 7]>,
    /// Inclusive, negative counting from the month's end.
    days_of_month: Vec<(i8, i8)>,
    /// Indexed January = 0.
    months: Option<[bool; 12]>,
    years: Vec<(i16, i16)>,
}

impl Intervals {
    /// Checks every interval of `specs` (found under `field`) and prepares them, or returns every
    /// problem found, with reason `InvalidTimeInterval`.
    pub fn compile(specs: &[TimeInterval], field: &str) -> Result<Intervals, Vec<Problem>> {
        let mut problems = Vec::new();
        let mut compiled = Vec::new();
        for (at, spec) in specs.iter().enumerate() {
            if let Some(one) = Compiled::new(spec, &format!("{field}[{at}]"), &mut problems) {
                compiled.push(one);
            }
        }
        if problems.is_empty() {
            Ok(Intervals(compiled))
        } else {
            Err(problems)
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn contains(&self, at: Timestamp) -> bool {
        self.0.iter().any(|interval| interval.contains(at))
    }

    /// When a page starting at `at` may call under a policy's `quiet_hours`: `None` (at once)
    /// for an urgent route, quiet hours that do not parse (the policy's status says so), or a
    /// time outside them; when in doubt, call.
    pub fn quiet_until(
        quiet_hours: &[TimeInterval],
        urgent: bool,
        at: Timestamp,
    ) -> Option<Timestamp> {
        if urgent || quiet_hours.is_empty() {
            return None;
        }
        Intervals::compile(quiet_hours, "spec.quietHours")
            .ok()?
            .hold_until(at)
    }

    /// When a page starting at `at` may call if these are quiet hours: the first minute outside
    /// them, or `None` when `at` is outside them or they do not end within [`HORIZON`] (when in
    /// doubt, call).
    pub fn hold_until(&self, at: Timestamp) -> Option<Timestamp> {
        self.first_outside(at).filter(|end| *end > at)
    }

    /// The first whole minute from `at` on that no interval contains, within [`HORIZON`]; `at`
    /// itself when it is outside already.
    pub fn first_outside(&self, at: Timestamp) -> Option<Timestamp> {
        if !self.contains(at) {
            return Some(at);
        }
        // NB: every boundary of a window falls on a whole minute of its zone, and every zone's
        // offset is whole minutes, so stepping whole UTC minutes meets each boundary exactly.
        let minute = at.as_second().div_euclid(60) * 60;
        let mut probe = Timestamp::from_second(minute).ok()?;
        let limit = at.checked_add(HORIZON).ok()?;
        while probe <= limit {
            probe = probe.checked_add(SignedDuration::from_mins(1)).ok()?;
            if !self.contains(probe) {
                return Some(probe);
            }
        }
        None
    }
}

const INVALID: &str = "InvalidTimeInterval";

const MONTHS: [&str; 12] = [
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
];

fn month(text: &str) -> Option<usize> {
    let text = text.trim().to_ascii_lowercase();
    if let Some(index) = MONTHS.iter().position(|m| *m == text) {
        return Some(index);
    }
    let number: usize = text.parse().ok()?;
    (1..=12).contains(&number).then(|| number - 1)
}

/// Marks an inclusive, possibly wrapping, range of a cyclic list (weekdays, months).
fn cyclic<const N: usize>(
    texts: &[String],
    parse: fn(&str) -> Option<usize>,
    field: &str,
    example: &str,
    problems: &mut Vec<Problem>,
) -> Option<[bool; N]> {
    if texts.is_empty() {
        return None;
    }
    let mut marked = [false; N];
    for (at, text) in texts.iter().enumerate() {
        let (first, last) = text.split_once(':').unwrap_or((text, text));
        match (parse(first), parse(last)) {
            (Some(first), Some(last)) if first < N && last < N => {
                let mut index = first;
                loop {
                    marked[index] = true;
                    if index == last {
                        break;
                    }
                    index = (index + 1) % N;
                }
            }
            _ => problems.push(problem(
                format!("{field}[{at}]"),
                INVALID,
                format!("{text:?} is not {example}"),
            )),
        }
    }
    Some(marked)
}

impl Compiled {
    fn new(spec: &TimeInterval, field: &str, problems: &mut Vec<Problem>) -> Option<Compiled> {
        let before = problems.len();
        let zone = match spec.location.as_deref().map(str::trim) {
            None | Some("") => TimeZone::UTC,
            Some(name) => TimeZone::get(name).unwrap_or_else(|error| {
                problems.push(problem(
                    format!("{field}.location"),
                    INVALID,
                    format!("{name:?} is not an IANA time zone such as Europe/Berlin: {error}"),
                ));
                TimeZone::UTC
            }),
        };
        let mut times = Vec::new();
        for (at, range) in spec.times.iter().enumerate() {
            match (
                time_of_day(&range.start, false),
                time_of_day(&range.end, true),
            ) {
                (Some(start), Some(end)) => times.push((start, end)),
                _ => problems.push(problem(
                    format!("{field}.times[{at}]"),
                    INVALID,
                    format!(
                        "{:?} to {:?} is not a range of times like 09:00 to 18:00 (00:00 to 24:00)",
                        range.start, range.end
                    ),
                )),
            }
        }
        let weekdays = cyclic::<7>(
            &spec.weekdays,
            weekday,
            &format!("{field}.weekdays"),
            "a weekday like monday or a range like monday:friday",
            problems,
        );
        let months = cyclic::<12>(
            &spec.months,
            month,
            &format!("{field}.months"),
            "a month like january or 1, or a range like december:february",
            problems,
        );
        let mut days_of_month = Vec::new();
        for (at, text) in spec.days_of_month.iter().enumerate() {
            let (first, last) = text.split_once(':').unwrap_or((text, text));
            let day = |t: &str| {
                t.trim()
                    .parse::<i8>()
                    .ok()
                    .filter(|d| *d != 0 && (-31..=31).contains(d))
            };
            match (day(first), day(last)) {
                (Some(first), Some(last))
                    if (first.signum() == last.signum() && first <= last)
                        || (first > 0 && last < 0) =>
                {
                    days_of_month.push((first, last))
                }
                _ => problems.push(problem(
                    format!("{field}.daysOfMonth[{at}]"),
                    INVALID,
                    format!(
                        "{text:?} is not a day of the month (1 to 31, or -31 to -1 from its end) or an ascending range like 1:15"
                    ),
                )),
            }
        }
        let mut years = Vec::new();
        for (at, text) in spec.years.iter().enumerate() {
            let (first, last) = text.split_once(':').unwrap_or((text, text));
            let year = |t: &str| {
                t.trim()
                    .parse::<i16>()
                    .ok()
                    .filter(|y| (1..=9999).contains(y))
            };
            match (year(first), year(last)) {
                (Some(first), Some(last)) if first <= last => years.push((first, last)),
                _ => problems.push(problem(
                    format!("{field}.years[{at}]"),
                    INVALID,
                    format!(
                        "{text:?} is not a year like 2026 or an ascending range like 2026:2027"
                    ),
                )),
            }
        }
        (problems.len() == before).then_some(Compiled {
            zone,
            times,
            weekdays,
            days_of_month,
            months,
            years,
        })
    }

    fn contains(&self, at: Timestamp) -> bool {
        let local = at.to_zoned(self.zone.clone());
        let date = local.date();
        let time = local.time();
        let second = seconds_of(time);
        if self.times.is_empty() {
            return self.day_matches(date);
        }
        let today = self.times.iter().any(|&(start, end)| {
            if end > start {
                (start..end).contains(&second)
            } else {
                second >= start
            }
        });
        if today && self.day_matches(date) {
            return true;
        }
        // A range that crossed midnight belongs to the day it started on.
        let carried = self
            .times
            .iter()
            .any(|&(start, end)| end <= start && second < end);
        carried
            && date
                .yesterday()
                .is_ok_and(|yesterday| self.day_matches(yesterday))
    }

    fn day_matches(&self, date: Date) -> bool {
        let weekday = usize::from(date.weekday().to_monday_zero_offset().unsigned_abs());
        let month = usize::from(date.month().unsigned_abs()) - 1;
        let day = date.day();
        let length = date.days_in_month();
        let absolute = |d: i8| if d > 0 { d } else { length + 1 + d };
        self.weekdays.is_none_or(|days| days[weekday])
            && self.months.is_none_or(|months| months[month])
            && (self.days_of_month.is_empty()
                || self
                    .days_of_month
                    .iter()
                    .any(|&(first, last)| (absolute(first)..=absolute(last)).contains(&day)))
            && (self.years.is_empty()
                || self
                    .years
                    .iter()
                    .any(|&(first, last)| (first..=last).contains(&date.year())))
    }
}

fn seconds_of(time: Time) -> i32 {
    i32::from(time.hour()) * 3600 + i32::from(time.minute()) * 60 + i32::from(time.second())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::TimeRange;

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    fn range(start: &str, end: &str) -> TimeRange {
        TimeRange {
            start: start.into(),
            end: end.into(),
        }
    }

    fn strings(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn compiled(interval: TimeInterval) -> Intervals {
        Intervals::compile(&[interval], "spec.x").unwrap_or_else(|p| panic!("{p:?}"))
    }

    #[test]
    fn business_hours_in_a_zone() {
        let hours = compiled(TimeInterval {
            times: vec![range("09:00", "17:00")],
            weekdays: strings(&["monday:friday"]),
            location: Some("Europe/Berlin".into()),
            ..Default::default()
        });
        // 2026-12-01 is a Tuesday; Berlin is UTC+1 in winter.
        for (instant, inside) in [
            ("2026-12-01T07:59:59Z", false),
            ("2026-12-01T08:00:00Z", true),
            ("2026-12-01T15:59:59Z", true),
            ("2026-12-01T16:00:00Z", false),
            ("2026-12-05T10:00:00Z", false), // Saturday
            ("2026-07-01T07:30:00Z", true),  // summer: UTC+2
        ] {
            assert_eq!(hours.contains(at(instant)), inside, "{instant}");
        }
    }

    #[test]
    fn a_night_range_belongs_to_the_day_it_starts() {
        let nights = compiled(TimeInterval {
            times: vec![range("22:00", "06:00")],
            weekdays: strings(&["friday"]),
            ..Default::default()
        });
        for (instant, inside) in [
            ("2026-12-04T21:59:00Z", false), // Friday evening
            ("2026-12-04T22:00:00Z", true),
            ("2026-12-05T05:59:00Z", true), // Saturday morning, Friday's night
            ("2026-12-05T06:00:00Z", false),
            ("2026-12-05T23:00:00Z", false), // Saturday night is not Friday's
            ("2026-12-04T03:00:00Z", false), // Friday morning belongs to Thursday
        ] {
            assert_eq!(nights.contains(at(instant)), inside, "{instant}");
        }
    }

    #[test]
    fn days_of_month_months_and_years() {
        let last_week_of_winter = compiled(TimeInterval {
            days_of_month: strings(&["-7:-1"]),
            months: strings(&["december:february"]),
            years: strings(&["2026:2027"]),
            ..Default::default()
        });
        for (instant, inside) in [
            ("2026-12-25T00:00:00Z", true),
            ("2026-12-24T23:59:59Z", false),
            ("2027-02-22T12:00:00Z", true), // February has 28 days in 2027
            ("2027-02-21T12:00:00Z", false),
            ("2027-03-31T12:00:00Z", false),
            ("2028-12-31T12:00:00Z", false),
        ] {
            assert_eq!(
                last_week_of_winter.contains(at(instant)),
                inside,
                "{instant}"
            );
        }
        let first_to_last = compiled(TimeInterval {
            days_of_month: strings(&["2:-2"]),
            ..Default::default()
        });
        assert!(!first_to_last.contains(at("2026-11-01T12:00:00Z")));
        assert!(first_to_last.contains(at("2026-11-29T12:00:00Z")));
        assert!(!first_to_last.contains(at("2026-11-30T12:00:00Z")));
    }

    #[test]
    fn a_list_contains_what_any_interval_contains_and_an_empty_interval_is_always() {
        let both = Intervals::compile(
            &[
                TimeInterval {
                    weekdays: strings(&["saturday"]),
                    ..Default::default()
                },
                TimeInterval {
                    weekdays: strings(&["sunday"]),
                    ..Default::default()
                },
            ],
            "spec.x",
        )
        .unwrap_or_else(|p| panic!("{p:?}"));
        assert!(both.contains(at("2026-12-05T12:00:00Z")));
        assert!(both.contains(at("2026-12-06T12:00:00Z")));
        assert!(!both.contains(at("2026-12-07T12:00:00Z")));
        assert!(compiled(TimeInterval::default()).contains(at("2026-12-07T12:00:00Z")));
        assert!(!Intervals::default().contains(at("2026-12-07T12:00:00Z")));
    }

    #[test]
    fn first_outside_finds_the_end_of_a_window_or_gives_up_after_the_horizon() {
        let nights = compiled(TimeInterval {
            times: vec![range("22:00", "07:00")],
            location: Some("America/New_York".into()),
            ..Default::default()
        });
        // 23:30 local (UTC-5) on 2026-12-01: the window ends at 07:00 local = 12:00 UTC.
        assert_eq!(
            nights.first_outside(at("2026-12-02T04:30:00Z")),
            Some(at("2026-12-02T12:00:00Z"))
        );
        let noon = at("2026-12-02T17:00:00Z");
        assert_eq!(nights.first_outside(noon), Some(noon));
        let always = compiled(TimeInterval::default());
        assert_eq!(always.first_outside(noon), None);
    }

    #[test]
    fn every_bad_field_is_reported_with_its_path() {
        let bad = TimeInterval {
            times: vec![range("9:00", "17:00"), range("09:00", "24:01")],
            weekdays: strings(&["funday", "monday:fri"]),
            days_of_month: strings(&["0", "32", "5:1", "-1:1"]),
            months: strings(&["13", "smarch"]),
            years: strings(&["2027:2026", "MMXXVI"]),
            location: Some("Mars/Olympus".into()),
        };
        let problems = Intervals::compile(&[TimeInterval::default(), bad], "spec.quietHours")
            .err()
            .unwrap_or_default();
        let fields: Vec<_> = problems.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "spec.quietHours[1].location",
                "spec.quietHours[1].times[0]",
                "spec.quietHours[1].times[1]",
                "spec.quietHours[1].weekdays[0]",
                "spec.quietHours[1].weekdays[1]",
                "spec.quietHours[1].months[0]",
                "spec.quietHours[1].months[1]",
                "spec.quietHours[1].daysOfMonth[0]",
                "spec.quietHours[1].daysOfMonth[1]",
                "spec.quietHours[1].daysOfMonth[2]",
                "spec.quietHours[1].daysOfMonth[3]",
                "spec.quietHours[1].years[0]",
                "spec.quietHours[1].years[1]",
            ]
        );
        assert!(problems.iter().all(|p| p.reason == INVALID));
    }
}
