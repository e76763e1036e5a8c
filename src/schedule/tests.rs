//! Table tests of schedule evaluation: zones, daylight saving, restrictions, layers, overrides.

use jiff::Timestamp;

use super::*;
use crate::api::{
    Address, OnCallScheduleSpec, Override as OverrideSpec, Recipient, Restriction,
    Rotation as RotationSpec, TimeRange,
};

fn member(name: &str) -> Recipient {
    Recipient {
        name: name.into(),
        address: Address::Client(name.into()),
    }
}

fn rotation(members: &[&str], start: &str, shift: &str) -> RotationSpec {
    RotationSpec {
        name: "r".into(),
        members: members.iter().map(|m| m.to_string()).collect(),
        start: start.into(),
        shift_length: shift.into(),
        restrictions: Vec::new(),
    }
}

fn window(weekdays: &[&str], times: &[(&str, &str)]) -> Restriction {
    Restriction {
        weekdays: weekdays.iter().map(|d| d.to_string()).collect(),
        times: times
            .iter()
            .map(|(start, end)| TimeRange {
                start: start.to_string(),
                end: end.to_string(),
            })
            .collect(),
    }
}

fn spec(zone: &str, rotations: Vec<RotationSpec>) -> OnCallScheduleSpec {
    OnCallScheduleSpec {
        time_zone: zone.into(),
        members: ["alice", "bob", "carol"].map(member).to_vec(),
        rotations,
        overrides: Vec::new(),
    }
}

fn at(text: &str) -> Timestamp {
    text.parse()
        .unwrap_or_else(|e| panic!("bad instant {text}: {e}"))
}

fn compiled(spec: &OnCallScheduleSpec) -> Schedule {
    Schedule::compile(spec).unwrap_or_else(|problems| panic!("invalid: {problems:?}"))
}

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|n| n.to_string()).collect()
}

/// (instant, on call, until, next)
type Row<'a> = (&'a str, &'a [&'a str], Option<&'a str>, &'a [&'a str]);

fn check(schedule: &Schedule, rows: &[Row]) {
    for (now, on_call, until, next) in rows {
        let got = schedule.evaluate(at(now));
        assert_eq!(
            got,
            Evaluation {
                on_call: names(on_call),
                until: until.map(at),
                next: names(next),
            },
            "at {now}"
        );
    }
}

#[test]
fn weekly_rotation_in_tokyo_hands_off_at_local_nine() {
    let schedule = compiled(&spec(
        "Asia/Tokyo",
        vec![rotation(&["alice", "bob"], "2026-12-07T09:00:00", "168h")],
    ));
    check(
        &schedule,
        &[
            // Before the start: a gap until alice's first shift.
            (
                "2026-12-06T00:00:00Z",
                &[],
                Some("2026-12-07T00:00:00Z"),
                &["alice"],
            ),
            (
                "2026-12-07T00:00:00Z",
                &["alice"],
                Some("2026-12-14T00:00:00Z"),
                &["bob"],
            ),
            (
                "2026-12-13T23:59:59Z",
                &["alice"],
                Some("2026-12-14T00:00:00Z"),
                &["bob"],
            ),
            (
                "2026-12-20T12:00:00Z",
                &["bob"],
                Some("2026-12-21T00:00:00Z"),
                &["alice"],
            ),
        ],
    );
}

#[test]
fn business_hours_restriction_leaves_gaps() {
    let mut weekly = rotation(&["alice", "bob"], "2026-12-07T09:00:00", "168h");
    weekly.restrictions = vec![window(&["monday:friday"], &[("09:00", "18:00")])];
    let schedule = compiled(&spec("Asia/Tokyo", vec![weekly]));
    check(
        &schedule,
        &[
            // Monday 10:00 JST.
            (
                "2026-12-07T01:00:00Z",
                &["alice"],
                Some("2026-12-07T09:00:00Z"),
                &[],
            ),
            // Monday 19:00 JST: nobody until Tuesday 09:00.
            (
                "2026-12-07T10:00:00Z",
                &[],
                Some("2026-12-08T00:00:00Z"),
                &["alice"],
            ),
            // Saturday: nobody until Monday 09:00, when bob's week starts.
            (
                "2026-12-12T03:00:00Z",
                &[],
                Some("2026-12-14T00:00:00Z"),
                &["bob"],
            ),
        ],
    );
}

#[test]
fn night_window_crosses_midnight_and_belongs_to_its_start_day() {
    let mut nights = rotation(&["carol"], "2026-01-01T00:00:00", "24h");
    nights.restrictions = vec![window(&["friday"], &[("22:00", "06:00")])];
    let schedule = compiled(&spec("UTC", vec![nights]));
    check(
        &schedule,
        &[
            // Friday 2026-12-04 21:00: the window opens at 22:00.
            (
                "2026-12-04T21:00:00Z",
                &[],
                Some("2026-12-04T22:00:00Z"),
                &["carol"],
            ),
            (
                "2026-12-04T23:30:00Z",
                &["carol"],
                Some("2026-12-05T06:00:00Z"),
                &[],
            ),
            (
                "2026-12-05T05:59:00Z",
                &["carol"],
                Some("2026-12-05T06:00:00Z"),
                &[],
            ),
            // Saturday night is not Friday's window.
            (
                "2026-12-05T23:00:00Z",
                &[],
                Some("2026-12-11T22:00:00Z"),
                &["carol"],
            ),
            // Friday 01:00 belongs to Thursday's (absent) window.
            (
                "2026-12-04T01:00:00Z",
                &[],
                Some("2026-12-04T22:00:00Z"),
                &["carol"],
            ),
        ],
    );
}

#[test]
fn twelve_hour_shifts_hand_off_across_midnight() {
    let schedule = compiled(&spec(
        "Europe/Berlin",
        vec![rotation(&["alice", "bob"], "2026-06-01T20:00:00", "12h")],
    ));
    check(
        &schedule,
        &[
            // 23:00 and 02:00 local (CEST, +02:00) are one night shift.
            (
                "2026-06-01T21:00:00Z",
                &["alice"],
                Some("2026-06-02T06:00:00Z"),
                &["bob"],
            ),
            (
                "2026-06-02T00:00:00Z",
                &["alice"],
                Some("2026-06-02T06:00:00Z"),
                &["bob"],
            ),
            (
                "2026-06-02T06:00:00Z",
                &["bob"],
                Some("2026-06-02T18:00:00Z"),
                &["alice"],
            ),
        ],
    );
}

#[test]
fn daily_handoffs_in_new_york_follow_local_time_across_dst() {
    let schedule = compiled(&spec(
        "America/New_York",
        vec![rotation(&["alice", "bob"], "2026-03-01T09:00:00", "24h")],
    ));
    check(
        &schedule,
        &[
            // Saturday 2026-03-07 09:00 EST = 14:00Z: day 6, alice (even days).
            (
                "2026-03-07T14:00:00Z",
                &["alice"],
                Some("2026-03-08T13:00:00Z"),
                &["bob"],
            ),
            // Clocks spring forward on Sunday 03-08: 09:00 EDT is 13:00Z, 23 hours later.
            (
                "2026-03-08T12:59:00Z",
                &["alice"],
                Some("2026-03-08T13:00:00Z"),
                &["bob"],
            ),
            (
                "2026-03-08T13:00:00Z",
                &["bob"],
                Some("2026-03-09T13:00:00Z"),
                &["alice"],
            ),
            // They fall back on Sunday 11-01: 09:00 EST is 14:00Z, 25 hours after 09:00 EDT.
            (
                "2026-11-01T13:30:00Z",
                &["alice"],
                Some("2026-11-01T14:00:00Z"),
                &["bob"],
            ),
        ],
    );
}

#[test]
fn skipped_and_repeated_handoff_times_happen_when_the_clock_first_reaches_them() {
    // 02:30 does not exist on 2026-03-08 in New York: the handoff is the jump at 07:00Z.
    let skipped = compiled(&spec(
        "America/New_York",
        vec![rotation(&["alice", "bob"], "2026-03-01T02:30:00", "24h")],
    ));
    check(
        &skipped,
        &[(
            "2026-03-08T06:00:00Z",
            &["alice"],
            Some("2026-03-08T07:00:00Z"),
            &["bob"],
        )],
    );
    // 01:30 happens twice on 2026-11-01: the handoff is the first, 01:30 EDT = 05:30Z.
    let repeated = compiled(&spec(
        "America/New_York",
        vec![rotation(&["alice", "bob"], "2026-10-25T01:30:00", "24h")],
    ));
    check(
        &repeated,
        &[
            (
                "2026-11-01T05:00:00Z",
                &["alice"],
                Some("2026-11-01T05:30:00Z"),
                &["bob"],
            ),
            // The second 01:30 (EST) is not another handoff.
            (
                "2026-11-01T06:30:00Z",
                &["bob"],
                Some("2026-11-02T06:30:00Z"),
                &["alice"],
            ),
        ],
    );
}

#[test]
fn later_rotations_win_where_they_are_active() {
    let base = rotation(&["carol"], "2026-01-01T00:00:00", "168h");
    let mut day = rotation(&["alice"], "2026-01-01T00:00:00", "168h");
    day.restrictions = vec![window(&[], &[("09:00", "18:00")])];
    let schedule = compiled(&spec("UTC", vec![base, day]));
    check(
        &schedule,
        &[
            (
                "2026-12-02T08:00:00Z",
                &["carol"],
                Some("2026-12-02T09:00:00Z"),
                &["alice"],
            ),
            (
                "2026-12-02T12:00:00Z",
                &["alice"],
                Some("2026-12-02T18:00:00Z"),
                &["carol"],
            ),
        ],
    );
}

#[test]
fn overrides_take_precedence_and_overlapping_ones_add_up() {
    let mut with_overrides = spec(
        "Asia/Tokyo",
        vec![rotation(&["alice", "bob"], "2026-12-21T09:00:00", "168h")],
    );
    with_overrides.overrides = vec![
        OverrideSpec {
            member: "bob".into(),
            start: "2026-12-24T00:00:00".into(),
            end: "2026-12-26T00:00:00".into(),
        },
        OverrideSpec {
            member: "carol".into(),
            start: "2026-12-25T00:00:00".into(),
            end: "2026-12-25T12:00:00".into(),
        },
    ];
    let schedule = compiled(&with_overrides);
    check(
        &schedule,
        &[
            // 2026-12-23 20:00 JST: alice, until bob's override at midnight JST.
            (
                "2026-12-23T11:00:00Z",
                &["alice"],
                Some("2026-12-23T15:00:00Z"),
                &["bob"],
            ),
            (
                "2026-12-23T18:00:00Z",
                &["bob"],
                Some("2026-12-24T15:00:00Z"),
                &["bob", "carol"],
            ),
            (
                "2026-12-25T04:00:00Z",
                &["bob"],
                Some("2026-12-25T15:00:00Z"),
                &["alice"],
            ),
        ],
    );
}

#[test]
fn a_schedule_that_never_changes_has_no_until() {
    let schedule = compiled(&spec(
        "UTC",
        vec![rotation(&["alice"], "2026-01-01T00:00:00", "24h")],
    ));
    check(
        &schedule,
        &[("2026-06-01T00:00:00Z", &["alice"], None, &[])],
    );
}

fn reasons(spec: &OnCallScheduleSpec) -> Vec<(String, &'static str)> {
    match Schedule::compile(spec) {
        Ok(_) => Vec::new(),
        Err(problems) => problems.into_iter().map(|p| (p.field, p.reason)).collect(),
    }
}

#[test]
fn invalid_specs_say_where_and_why() {
    let good = || {
        spec(
            "UTC",
            vec![rotation(&["alice"], "2026-01-01T00:00:00", "24h")],
        )
    };
    let mut zone = good();
    zone.time_zone = "Mars/Olympus".into();
    let mut unknown = good();
    unknown.rotations[0].members.push("mallory".into());
    unknown.overrides.push(OverrideSpec {
        member: "eve".into(),
        start: "2026-01-01T00:00:00".into(),
        end: "2026-01-02T00:00:00".into(),
    });
    let mut backwards = good();
    backwards.overrides.push(OverrideSpec {
        member: "bob".into(),
        start: "2026-01-02T00:00:00".into(),
        end: "2026-01-01T00:00:00".into(),
    });
    let mut times = good();
    times.rotations[0].restrictions = vec![window(&["funday"], &[("25:00", "26:00")])];
    let mut short = good();
    short.rotations[0].shift_length = "30m".into();
    let mut garbled = good();
    garbled.rotations[0].shift_length = "1w".into();
    let mut start = good();
    start.rotations[0].start = "2026-02-30T00:00:00".into();
    let table: Vec<(OnCallScheduleSpec, Vec<(&str, &str)>)> = vec![
        (good(), vec![]),
        (zone, vec![("spec.timeZone", "InvalidTimeZone")]),
        (
            unknown,
            vec![
                ("spec.rotations[0].members[1]", "UnknownMember"),
                ("spec.overrides[0].member", "UnknownMember"),
            ],
        ),
        (backwards, vec![("spec.overrides[0].end", "InvalidWindow")]),
        (
            times,
            vec![
                (
                    "spec.rotations[0].restrictions[0].weekdays[0]",
                    "InvalidWindow",
                ),
                (
                    "spec.rotations[0].restrictions[0].times[0]",
                    "InvalidWindow",
                ),
            ],
        ),
        (
            short,
            vec![("spec.rotations[0].shiftLength", "InvalidShiftLength")],
        ),
        (
            garbled,
            vec![("spec.rotations[0].shiftLength", "InvalidShiftLength")],
        ),
        (start, vec![("spec.rotations[0].start", "InvalidTime")]),
    ];
    for (spec, expected) in table {
        let expected: Vec<(String, &str)> = expected
            .into_iter()
            .map(|(field, reason)| (field.to_string(), reason))
            .collect();
        assert_eq!(reasons(&spec), expected, "{spec:?}");
    }
}

#[test]
fn go_durations() {
    for (text, seconds) in [
        ("168h", Ok(604_800)),
        ("1h30m", Ok(5_400)),
        ("1.5h", Ok(5_400)),
        ("90m", Ok(5_400)),
        ("3600s", Ok(3_600)),
        ("12h0m0s", Ok(43_200)),
    ] {
        assert_eq!(parse_go_duration(text), seconds, "{text}");
    }
    for text in ["", "h", "1", "1d", "1.5.2h", "-1h", "0.5s"] {
        assert!(parse_go_duration(text).is_err(), "{text} should be refused");
    }
}

fn random_local(
    rng: &mut fastrand::Rng,
    year: i16,
    months: std::ops::RangeInclusive<i8>,
) -> String {
    let hour = match rng.u8(0..4) {
        // Near the small hours, where daylight saving changes happen.
        0 => rng.u8(0..4),
        _ => rng.u8(0..24),
    };
    format!(
        "{year}-{:02}-{:02}T{hour:02}:{:02}:00",
        rng.i8(months),
        rng.u8(1..29),
        [0, 15, 30, 45, 5 * rng.u8(0..12)][rng.usize(0..5)]
    )
}

fn random_schedule(rng: &mut fastrand::Rng) -> OnCallScheduleSpec {
    let zones = [
        "America/New_York",
        "Europe/London",
        "Australia/Sydney",
        "Australia/Lord_Howe",
        "Asia/Tokyo",
    ];
    let people = ["alice", "bob", "carol"];
    let days = [
        "monday",
        "tuesday",
        "wednesday",
        "thursday",
        "friday",
        "saturday",
        "sunday",
    ];
    let mut rotations = Vec::new();
    for index in 0..rng.usize(1..4) {
        let members = (0..rng.usize(1..4))
            .map(|_| people[rng.usize(0..3)].to_string())
            .collect();
        let shift = ["1h", "90m", "8h", "12h", "24h", "25h", "168h"][rng.usize(0..7)].to_string();
        let mut restrictions = Vec::new();
        for _ in 0..rng.usize(0..3) {
            let weekdays = match rng.u8(0..3) {
                0 => Vec::new(),
                1 => vec![days[rng.usize(0..7)].to_string()],
                _ => vec![format!(
                    "{}:{}",
                    days[rng.usize(0..7)],
                    days[rng.usize(0..7)]
                )],
            };
            let times = (0..rng.usize(0..3))
                .map(|_| TimeRange {
                    start: format!("{:02}:{:02}", rng.u8(0..24), [0, 30][rng.usize(0..2)]),
                    end: format!("{:02}:{:02}", rng.u8(0..24), [0, 30][rng.usize(0..2)]),
                })
                .collect();
            restrictions.push(Restriction { weekdays, times });
        }
        rotations.push(RotationSpec {
            name: format!("r{index}"),
            members,
            start: random_local(rng, 2025, 12..=12),
            shift_length: shift,
            restrictions,
        });
    }
    let mut overrides = Vec::new();
    for _ in 0..rng.usize(0..4) {
        let start = random_local(rng, 2026, 1..=12);
        let Ok(begin) = start.parse::<jiff::civil::DateTime>() else {
            continue;
        };
        let end = begin
            .checked_add(jiff::SignedDuration::from_mins(5 * rng.i64(6..1200)))
            .map(|end| end.to_string())
            .unwrap_or_else(|_| start.clone());
        overrides.push(OverrideSpec {
            member: people[rng.usize(0..3)].to_string(),
            start,
            end,
        });
    }
    OnCallScheduleSpec {
        time_zone: zones[rng.usize(0..zones.len())].to_string(),
        members: people.map(member).to_vec(),
        rotations,
        overrides,
    }
}

/// Random schedules over a simulated year: at every 7th step of the walk who is on call agrees
/// with the naive walk, and at sampled instants so do `until` and `next`. Every local time the
/// generator writes is on a 5-minute grid, as are the zones' offset changes, so a walk in
/// 5-minute steps sees every change.
#[test]
fn agrees_with_a_naive_walk_through_the_wall_clock_over_a_year() {
    const MINUTES: i64 = 365 * 1440;
    const STEP: i64 = 5;
    for seed in 0..6u64 {
        let mut rng = fastrand::Rng::with_seed(seed);
        let spec = random_schedule(&mut rng);
        let schedule = compiled(&spec);
        let Ok(from) = jiff::civil::date(2026, 1, 1)
            .at(0, 0, 0, 0)
            .to_zoned(schedule.zone().clone())
            .map(|zoned| zoned.timestamp())
        else {
            panic!("2026-01-01 is in range");
        };
        let changes = naive::walk(&schedule, from, MINUTES, STEP);
        let end = from + jiff::SignedDuration::from_mins(MINUTES);
        let state_at = |t: Timestamp| {
            let index = changes.partition_point(|(at, _)| *at <= t);
            (
                &changes[index - 1].1,
                changes.get(index).map(|(at, next)| (*at, next)),
            )
        };
        for minute in (0..MINUTES).step_by(7 * STEP as usize) {
            let now = from + jiff::SignedDuration::from_mins(minute);
            assert_eq!(
                &schedule.on_call_at(now),
                state_at(now).0,
                "seed {seed} at {now} ({}), spec {spec:?}",
                schedule.zone().to_datetime(now)
            );
        }
        for _ in 0..300 {
            let now = from + jiff::SignedDuration::from_mins(STEP * rng.i64(0..MINUTES / STEP));
            let got = schedule.evaluate(now);
            let (on_call, next) = state_at(now);
            assert_eq!(&got.on_call, on_call, "seed {seed} at {now}");
            match next {
                Some((until, next)) => {
                    assert_eq!(got.until, Some(until), "seed {seed} at {now}, spec {spec:?}");
                    assert_eq!(&got.next, next, "seed {seed} at {now}");
                }
                None => assert!(
                    got.until.is_none_or(|until| until >= end),
                    "seed {seed} at {now}: the walk saw no change before {end}, evaluate says {got:?}"
                ),
            }
        }
    }
}

#[test]
fn the_example_schedule_is_valid() {
    let text = include_str!("../../examples/schedule-sre-primary.yaml");
    let object: crate::api::OnCallSchedule =
        serde_yaml::from_str(text).unwrap_or_else(|e| panic!("example: {e}"));
    let schedule = compiled(&object.spec);
    // Wednesday 2026-12-09 10:00 JST: alice's business hours, then carol at 18:00.
    check(
        &schedule,
        &[(
            "2026-12-09T01:00:00Z",
            &["alice"],
            Some("2026-12-09T09:00:00Z"),
            &["carol"],
        )],
    );
}

#[test]
fn windows_follow_the_wall_clock_through_skipped_and_repeated_hours() {
    let mut early = rotation(&["alice"], "2026-01-01T00:00:00", "168h");
    early.restrictions = vec![window(&[], &[("02:30", "05:00")])];
    let skipped = compiled(&spec("America/New_York", vec![early]));
    check(
        &skipped,
        &[
            // 01:30 EST on 2026-03-08; at 07:00Z the clock jumps to 03:00 EDT, inside the window
            // although it never showed 02:30.
            (
                "2026-03-08T06:30:00Z",
                &[],
                Some("2026-03-08T07:00:00Z"),
                &["alice"],
            ),
        ],
    );
    let mut late = rotation(&["alice"], "2026-01-01T00:00:00", "168h");
    late.restrictions = vec![window(&[], &[("00:00", "01:30")])];
    let repeated = compiled(&spec("America/New_York", vec![late]));
    check(
        &repeated,
        &[
            // 01:45 EDT on 2026-11-01; at 06:00Z the clock falls back to 01:00 EST, inside again
            // until it shows 01:30 a second time.
            (
                "2026-11-01T05:45:00Z",
                &[],
                Some("2026-11-01T06:00:00Z"),
                &["alice"],
            ),
            (
                "2026-11-01T06:00:00Z",
                &["alice"],
                Some("2026-11-01T06:30:00Z"),
                &[],
            ),
        ],
    );
}
