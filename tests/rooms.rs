//! What a page asks Twilio about its conference room, and finding a lost dial that Twilio still
//! holds in its per-second queue. The operator runs in process on the real control plane against
//! the simulator; request counts come from the simulator's ledger.

mod support;

use std::time::Duration;

use alertcall::api::Phase;
use alertcall::operator::Running;
use alertcall::page::hooks::{HookPoint, Hooks};
use alertcall::twilio::sim::{Event, Ledger, Recipient, Script, SimConfig};
use jiff::{SignedDuration, Timestamp};
use serde_json::json;
use support::paging::*;

/// Past incidents of the same policy, all in the page's room name.
const HISTORY: usize = 500;
/// Of [`HISTORY`], the rooms of earlier incidents today, before the page started.
const EARLIER_TODAY: usize = 40;

/// Seeds [`HISTORY`] completed rooms named like the page's: most spread over past days (from two
/// days back, so the page's own day filter never reaches them), the rest earlier today.
async fn seed_history(h: &Harness) {
    let midnight = |t: Timestamp| {
        t.to_zoned(jiff::tz::TimeZone::UTC)
            .start_of_day()
            .map(|z| z.timestamp())
            .unwrap_or_else(|e| panic!("start of day: {e}"))
    };
    // NB: right after 00:00 UTC there is no "earlier today" yet; a page started then would
    // count the minute of slack before it as its own.
    let ready = midnight(Timestamp::now()) + SignedDuration::from_mins(4);
    if let Ok(wait) = Duration::try_from(ready.duration_since(Timestamp::now())) {
        tokio::time::sleep(wait).await;
    }
    let now = h.sim.now();
    let today = midnight(now);
    // The operator's clock is behind the scaled simulator's: stay two minutes clear of it.
    let span = Timestamp::now().duration_since(today) - SignedDuration::from_mins(2);
    let room = h.room();
    for i in 0..EARLIER_TODAY {
        let fraction = i as f64 / EARLIER_TODAY as f64;
        h.sim
            .add_completed_conference(&room, today + span.mul_f64(fraction));
    }
    for i in 0..HISTORY - EARLIER_TODAY {
        let days = 2 + (i % 60) as i64;
        let at = now - SignedDuration::from_hours(24 * days) - SignedDuration::from_mins(i as i64);
        h.sim.add_completed_conference(&room, at);
    }
}

/// A request the simulator served: (method, path, query).
type Request = (String, String, String);

/// The requests of each poll cycle. A cycle first fetches every live call of the page, then asks
/// about the room: what lies between one cycle's last call fetch and the next cycle's first is
/// one cycle's room requests. The page keeps at least one call live (`marker`'s) throughout.
fn cycles(ledger: &Ledger, marker: &str) -> Vec<Vec<Request>> {
    assert!(
        ledger
            .call_statuses(marker)
            .iter()
            .all(|s| s != "completed"),
        "{marker} must stay live"
    );
    let is_fetch = |method: &str, path: &str| {
        method == "GET"
            && path
                .rsplit_once("/Calls/")
                .is_some_and(|(_, sid)| sid.starts_with("CA") && !sid.contains('/'))
    };
    let mut cycles: Vec<Vec<Request>> = Vec::new();
    let mut open: Option<Vec<Request>> = None;
    for entry in &ledger.entries {
        let Event::Request {
            method,
            path,
            query,
            ..
        } = &entry.event
        else {
            continue;
        };
        if is_fetch(method, path) {
            cycles.extend(open.replace(Vec::new()));
        } else if let Some(cycle) = open.as_mut() {
            cycle.push((
                method.clone(),
                path.clone(),
                query.clone().unwrap_or_default(),
            ));
        }
    }
    cycles
}

/// The conference requests of a cycle.
fn conference(cycle: &[Request]) -> Vec<Request> {
    cycle
        .iter()
        .filter(|(_, path, _)| path.contains("/Conferences"))
        .cloned()
        .collect()
}

fn lists_rooms_by(cycle: &[Request], filter: &str) -> bool {
    cycle
        .iter()
        .any(|(_, path, query)| path.ends_with("/Conferences.json") && query.contains(filter))
}

fn lists_participants(cycle: &[Request]) -> bool {
    cycle
        .iter()
        .any(|(_, path, _)| path.ends_with("/Participants.json"))
}

/// No cycle makes more than three conference requests, and no room list is unfiltered.
fn assert_bounded(ledger: &Ledger, marker: &str) {
    for whole in cycles(ledger, marker) {
        let cycle = conference(&whole);
        assert!(
            cycle.len() <= 3,
            "{} conference requests in one cycle: {whole:#?}",
            cycle.len()
        );
        for (_, path, query) in &cycle {
            if path.ends_with("/Conferences.json") {
                assert!(
                    query.contains("Status=") || query.contains("DateCreated%3E="),
                    "unbounded room list: {query}"
                );
            }
        }
    }
}

fn recorded_policy() -> serde_json::Value {
    let mut spec = policy_spec(
        json!({"mode": "Simultaneous", "completion": "AllAcked", "ringTimeoutSeconds": 300, "rounds": 1}),
        &[("alice", ALICE), ("bob", BOB), ("carol", CAROL)],
        10,
    );
    spec["conference"] = json!({"record": true});
    spec
}

/// 500 past rooms at the simulator, the operator, a recorded policy, and a page in which Alice
/// has acknowledged.
async fn page_until_alice_acknowledged(prefix: &str, script: Script) -> (Harness, Running) {
    let h = Harness::new(prefix, script, 2.0).await;
    seed_history(&h).await;
    let op = h
        .operator("rooms", any_port(), true, Hooks::default())
        .await;
    h.policy(recorded_policy()).await;
    h.page("page").await;
    h.wait_status("page", "alice's acknowledgement", |s| {
        s.attempts
            .iter()
            .any(|a| a.recipient == "alice" && a.acknowledged)
    })
    .await;
    (h, op)
}

#[tokio::test]
async fn looking_for_the_recording_lists_only_rooms_of_the_pages_day() {
    // Alice presses and waits alone in the room: it never starts, so no recording comes and
    // every cycle looks for one. Bob rings throughout; Carol never answers.
    let script = Script::default()
        .with(ALICE, Recipient::presses(1.0, "1"))
        .with(BOB, Recipient::answers_after(600.0))
        .with(CAROL, no_answer());
    let (h, op) = page_until_alice_acknowledged("rooms-rec", script).await;
    let bob = h
        .wait_ledger("bob's call", |l| !sid_of(l, BOB).is_empty())
        .await;
    let bob = sid_of(&bob, BOB)[0].clone();
    let reads_recordings = |cycle: &Vec<Request>| {
        cycle
            .iter()
            .any(|(_, path, _)| path.ends_with("/Recordings.json"))
    };
    let ledger = h
        .wait_ledger(
            "two cycles looking into alice's room for a recording",
            |l| {
                cycles(l, &bob)
                    .iter()
                    .filter(|c| reads_recordings(c))
                    .count()
                    >= 2
            },
        )
        .await;
    assert_bounded(&ledger, &bob);
    let by_day: Vec<Vec<Request>> = cycles(&ledger, &bob)
        .iter()
        .map(|c| conference(c))
        .filter(|c| lists_rooms_by(c, "DateCreated%3E="))
        .collect();
    assert!(by_day.len() >= 2, "{by_day:#?}");
    for cycle in by_day {
        // The day's list, then the recordings of the one room created since the page started
        // (none yet in a cycle before Alice reached it): the day's earlier rooms are not read.
        assert!(cycle.len() <= 2, "{cycle:#?}");
        assert!(
            cycle[1..]
                .iter()
                .all(|(_, p, _)| p.ends_with("/Recordings.json")),
            "{cycle:#?}"
        );
    }
    let status = h.status("page").await;
    assert_eq!(status.phase, Phase::Calling, "{status:#?}");
    assert_eq!(status.recording_url, None);
    h.finish(vec![op]).await;
}

#[tokio::test]
async fn checking_the_room_lists_only_open_rooms_and_defers_the_recording() {
    // Alice presses and waits alone in the room; Carol answers and never presses, so the room
    // is checked for her every cycle, while Alice's recording is also wanted. Bob rings.
    let script = Script::default()
        .with(ALICE, Recipient::presses(1.0, "1"))
        .with(BOB, Recipient::answers_after(600.0))
        .with(CAROL, Recipient::answers_after(1.0));
    let (h, op) = page_until_alice_acknowledged("rooms-open", script).await;
    let acked = h.sim.ledger().entries.len();
    let bob = h
        .wait_ledger("bob's call", |l| !sid_of(l, BOB).is_empty())
        .await;
    let bob = sid_of(&bob, BOB)[0].clone();
    let checks_after_ack = |l: &Ledger| {
        let later = Ledger {
            entries: l.entries[acked..].to_vec(),
        };
        cycles(&later, &bob)
            .iter()
            .map(|c| conference(c))
            .filter(|c| lists_participants(c))
            .collect::<Vec<_>>()
    };
    let ledger = h
        .wait_ledger("two room checks after alice's acknowledgement", |l| {
            checks_after_ack(l).len() >= 2
        })
        .await;
    assert_bounded(&ledger, &bob);
    for cycle in checks_after_ack(&ledger) {
        // Open rooms by status, then the participants of Alice's room; the recording waits.
        assert_eq!(cycle.len(), 3, "{cycle:#?}");
        assert!(lists_rooms_by(&cycle[..1], "Status=init"), "{cycle:#?}");
        assert!(
            lists_rooms_by(&cycle[1..2], "Status=in-progress"),
            "{cycle:#?}"
        );
    }
    h.finish(vec![op]).await;
}

#[tokio::test]
async fn a_lost_dial_still_in_twilios_queue_is_found_on_restart() {
    let script = Script::default().with(ALICE, Recipient::presses(1.0, "1"));
    // One call per 1000 simulated seconds: a call ahead of Alice's takes the slot, so hers
    // waits in the queue for the whole test.
    let h = Harness::with_sim(
        "rooms-queued",
        SimConfig {
            script,
            time_scale: 1.0,
            calls_per_second: 0.001,
            ..SimConfig::new(AC, TOKEN)
        },
    )
    .await;
    let ahead = reqwest::Client::new()
        .post(format!(
            "{}/2010-04-01/Accounts/{AC}/Calls.json",
            h.sim.api_url()
        ))
        .basic_auth(AC, Some(TOKEN))
        .form(&[
            ("To", DAVE),
            ("From", FROM),
            ("Twiml", "<Response><Pause length=\"600\"/></Response>"),
        ])
        .send()
        .await
        .unwrap_or_else(|e| panic!("the call ahead: {e}"));
    assert_eq!(ahead.status().as_u16(), 201);
    h.wait_ledger("the call ahead dialed", |l| {
        sid_of(l, DAVE)
            .first()
            .is_some_and(|sid| l.call_statuses(sid).iter().any(|s| s == "initiated"))
    })
    .await;

    let hooks = Hooks::pause_at(HookPoint::AfterAccepted);
    let first = h.operator("crashy", any_port(), false, hooks.clone()).await;
    h.policy(policy_spec(
        json!({"mode": "Sequential", "ringTimeoutSeconds": 60, "rounds": 1}),
        &[("alice", ALICE)],
        10,
    ))
    .await;
    h.page("page").await;
    tokio::time::timeout(Duration::from_secs(60), hooks.reached())
        .await
        .unwrap_or_else(|_| panic!("the operator never reached AfterAccepted"));
    first.kill().await;
    let ledger = h
        .wait_ledger("alice's call accepted", |l| !sid_of(l, ALICE).is_empty())
        .await;
    let alice = sid_of(&ledger, ALICE)[0].clone();
    let intent = h.status("page").await;
    assert_eq!(intent.attempts.len(), 1, "{intent:#?}");
    assert_eq!(intent.attempts[0].call_sid, None);

    let second = h
        .operator("restarted", any_port(), false, Hooks::default())
        .await;
    let status = h
        .wait_status("page", "the queued call recorded", |s| {
            s.attempts.iter().any(|a| a.call_sid.is_some())
        })
        .await;
    assert_eq!(status.attempts.len(), 1, "{status:#?}");
    assert_eq!(status.attempts[0].call_sid.as_deref(), Some(alice.as_str()));
    let ledger = h.sim.ledger();
    // Found while still queued, and never dialed again.
    assert_eq!(ledger.call_statuses(&alice), vec!["queued"]);
    assert_eq!(
        calls_to(&ledger).get(ALICE),
        Some(&1),
        "{:?}",
        calls_to(&ledger)
    );
    h.finish(vec![second]).await;
}
