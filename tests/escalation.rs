//! Escalation end to end: the operator in process on the real control plane, calling through the
//! in-process Twilio simulator. Assertions come from the simulator's ledger and AlertCall status.

mod support;

use std::time::Duration;

use alertcall::api::{AlertCall, AlertCallStatus, AttemptStatus, Phase};
use alertcall::controllers::callbacks;
use alertcall::operator::Running;
use alertcall::page::hooks::{HookPoint, Hooks};
use alertcall::twilio::signature;
use alertcall::twilio::sim::{Event, Fault, FaultSpec, Outcome, Recipient, Script};
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;
use support::paging::*;

#[tokio::test]
async fn sequential_moves_past_no_answer_and_voicemail_to_the_one_who_presses() {
    let script = Script::default()
        .with(ALICE, no_answer())
        .with(BOB, Recipient::voicemail(2.0))
        .with(CAROL, Recipient::presses(2.0, "1"));
    let h = Harness::new("esc-seq", script, 20.0).await;
    let op = h.operator("seq", any_port(), true, Hooks::default()).await;
    h.policy(policy_spec(
        json!({"mode": "Sequential", "ringTimeoutSeconds": 10, "rounds": 1}),
        &[("alice", ALICE), ("bob", BOB), ("carol", CAROL)],
        10,
    ))
    .await;
    h.page("page").await;

    let status = h.wait_phase("page", Phase::Acknowledged).await;
    assert_eq!(status.acknowledged_by.as_deref(), Some("carol"));
    let ledger = h
        .wait_ledger("carol in the room", |l| {
            !l.participants_of(&h.room()).is_empty()
        })
        .await;
    let order: Vec<String> = created(&ledger).into_iter().map(|(to, _, _)| to).collect();
    assert_eq!(order, vec![ALICE, BOB, CAROL]);
    assert_eq!(
        final_status(&ledger, &sid_of(&ledger, ALICE)[0]).as_deref(),
        Some("no-answer")
    );
    assert_eq!(
        final_status(&ledger, &sid_of(&ledger, BOB)[0]).as_deref(),
        Some("completed")
    );
    let carol = sid_of(&ledger, CAROL)[0].clone();
    assert_eq!(ledger.participants_of(&h.room()), vec![carol.clone()]);
    let attempts: Vec<(&str, AttemptStatus, bool)> = status
        .attempts
        .iter()
        .map(|a| (a.recipient.as_str(), a.status, a.acknowledged))
        .collect();
    assert_eq!(attempts[0], ("alice", AttemptStatus::NoAnswer, false));
    assert_eq!(attempts[1], ("bob", AttemptStatus::Completed, false));
    assert_eq!((attempts[2].0, attempts[2].2), ("carol", true));
    assert_eq!(status.attempts[2].call_sid.as_deref(), Some(carol.as_str()));
    assert_eq!(status.conference_room.as_deref(), Some(h.room().as_str()));
    callbacks_are_verified_and_late_ones_change_nothing(&h, &op, &carol).await;
    transitions_are_events_and_metrics(&h, &op).await;
    h.finish(vec![op]).await;
}

/// Every transition is a Kubernetes Event on the AlertCall; outcomes are counted.
async fn transitions_are_events_and_metrics(h: &Harness, op: &Running) {
    let events: Api<k8s_openapi::api::events::v1::Event> =
        Api::namespaced(h.client.clone(), &h.ns.name);
    let wanted = [
        "Calling",
        "Dialed",
        "Answered",
        "KeyPressed",
        "CallEnded",
        "Acknowledged",
    ];
    let reasons = || async {
        match events.list(&Default::default()).await {
            Ok(list) => list
                .items
                .into_iter()
                .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("page"))
                .filter_map(|e| e.reason)
                .collect::<Vec<_>>(),
            Err(error) => panic!("listing events: {error}"),
        }
    };
    let all_there = support::within(support::WAIT, || async {
        let seen = reasons().await;
        wanted
            .iter()
            .all(|w| seen.iter().any(|r| r == w))
            .then_some(())
    })
    .await;
    if all_there.is_none() {
        panic!("not every one of {wanted:?} in {:?}", reasons().await);
    }
    let metrics = reqwest::get(format!("http://{}/metrics", op.addr))
        .await
        .unwrap_or_else(|e| panic!("metrics: {e}"))
        .text()
        .await
        .unwrap_or_default();
    for line in [
        "alertcall_calls_total{outcome=\"no-answer\"} 1",
        "alertcall_calls_total{outcome=\"completed\"} 1",
        "alertcall_acknowledgement_latency_seconds_count 1",
    ] {
        assert!(metrics.contains(line), "{line} not in {metrics}");
    }
}

/// Unsigned or badly signed requests are refused; a signed late `ringing` for a finished call
/// changes nothing.
async fn callbacks_are_verified_and_late_ones_change_nothing(
    h: &Harness,
    op: &Running,
    carol: &str,
) {
    let http = reqwest::Client::new();
    let base = format!("http://{}", op.addr);
    let nonce = h.status("page").await.nonce.unwrap_or_default();
    assert_eq!(nonce.len(), 32, "every calling page has a nonce");
    let query = callbacks::callback_query(&h.ns.name, "page", "r1-carol", &nonce);
    let status_url = format!("{base}/twilio/status?{query}");
    let params = vec![
        ("AccountSid".to_string(), AC.to_string()),
        ("CallSid".to_string(), carol.to_string()),
        ("CallStatus".to_string(), "ringing".to_string()),
    ];
    let post = |signature: Option<String>| {
        let mut request = http.post(&status_url).form(&params);
        if let Some(signature) = signature {
            request = request.header("X-Twilio-Signature", signature);
        }
        request.send()
    };
    let code = |r: Result<reqwest::Response, reqwest::Error>| {
        r.map(|r| r.status().as_u16())
            .unwrap_or_else(|e| panic!("request: {e}"))
    };
    assert_eq!(code(post(None).await), 403);
    let wrong = signature::compute("not-the-token", &status_url, &params);
    assert_eq!(code(post(Some(wrong)).await), 403);
    let before = h.status("page").await;
    let good = signature::compute(TOKEN, &status_url, &params);
    assert_eq!(code(post(Some(good.clone())).await), 204);
    assert_eq!(code(post(Some(good)).await), 204);
    assert_eq!(h.status("page").await, before);

    // Without the page's nonce a correctly signed request is refused like any other.
    let guessed = status_url.replace(&nonce, "0123456789abcdef0123456789abcdef");
    let signed = signature::compute(TOKEN, &guessed, &params);
    let response = http
        .post(&guessed)
        .form(&params)
        .header("X-Twilio-Signature", signed)
        .send()
        .await;
    assert_eq!(code(response), 403);

    let bare_ack = format!("{base}/twiml/ack/{}/oncall", h.ns.name);
    let signed = signature::compute(TOKEN, &bare_ack, &[]);
    let response = http
        .get(&bare_ack)
        .header("X-Twilio-Signature", signed)
        .send()
        .await;
    assert_eq!(code(response), 403, "an ack request must name its page");
    let ack_url = format!("{bare_ack}?{query}");
    assert_eq!(code(http.get(&ack_url).send().await), 403);
    let signed = signature::compute(TOKEN, &ack_url, &[]);
    let response = http
        .get(&ack_url)
        .header("X-Twilio-Signature", signed)
        .send()
        .await
        .unwrap_or_else(|e| panic!("ack: {e}"));
    assert_eq!(response.status().as_u16(), 200);
    let body = response.text().await.unwrap_or_default();
    assert!(body.contains(&h.room()), "{body}");
}

#[tokio::test]
async fn simultaneous_first_ack_cancels_the_others_and_calls_nobody_again() {
    let script = Script::default()
        .with(ALICE, Recipient::answers_after(200.0))
        .with(BOB, Recipient::presses(1.0, "1").hangup_after(5.0))
        .with(CAROL, no_answer());
    let h = Harness::new("esc-first", script, 10.0).await;
    let op = h
        .operator("first", any_port(), true, Hooks::default())
        .await;
    h.policy(policy_spec(
        json!({"mode": "Simultaneous", "completion": "FirstAck", "ringTimeoutSeconds": 300, "rounds": 3, "roundIntervalSeconds": 0}),
        &[("alice", ALICE), ("bob", BOB), ("carol", CAROL)],
        10,
    ))
    .await;
    h.page("page").await;

    let status = h.wait_phase("page", Phase::Acknowledged).await;
    assert_eq!(status.acknowledged_by.as_deref(), Some("bob"));
    h.wait_ledger("alice's and carol's calls canceled", |l| {
        [ALICE, CAROL].iter().all(|to| {
            sid_of(l, to)
                .first()
                .is_some_and(|sid| final_status(l, sid).as_deref() == Some("canceled"))
        })
    })
    .await;
    h.wait_status("page", "canceled attempts recorded", |s| {
        s.attempts
            .iter()
            .filter(|a| a.status == AttemptStatus::Canceled)
            .count()
            == 2
    })
    .await;
    // Nobody is called again: once the page settled, no call of it can still be placed.
    h.wait_settled("page", &[&op]).await;
    let counts = calls_to(&h.sim.ledger());
    assert_eq!(
        counts.values().copied().collect::<Vec<_>>(),
        vec![1, 1, 1],
        "{counts:?}"
    );
    let ledger = h
        .wait_ledger("bob in the room", |l| {
            !l.participants_of(&h.room()).is_empty()
        })
        .await;
    assert_eq!(ledger.participants_of(&h.room()), sid_of(&ledger, BOB));
    h.finish(vec![op]).await;
}

#[tokio::test]
async fn all_acked_recalls_only_the_one_who_never_presses() {
    let script = Script::default()
        .with(ALICE, Recipient::presses(1.0, "1").hangup_after(3.0))
        .with(BOB, Recipient::presses(2.0, "1").hangup_after(3.0))
        .with(CAROL, Recipient::answers_after(1.0));
    let h = Harness::new("esc-allack", script, 20.0).await;
    let op = h
        .operator("allack", any_port(), true, Hooks::default())
        .await;
    h.policy(policy_spec(
        json!({"mode": "Simultaneous", "completion": "AllAcked", "ringTimeoutSeconds": 20, "rounds": 3, "roundIntervalSeconds": 0}),
        &[("alice", ALICE), ("bob", BOB), ("carol", CAROL)],
        10,
    ))
    .await;
    h.page("page").await;

    let status = h.wait_phase("page", Phase::Exhausted).await;
    let counts = calls_to(&h.sim.ledger());
    assert_eq!(counts.get(ALICE), Some(&1), "{counts:?}");
    assert_eq!(counts.get(BOB), Some(&1), "{counts:?}");
    assert_eq!(counts.get(CAROL), Some(&3), "{counts:?}");
    let acked: Vec<&str> = status
        .attempts
        .iter()
        .filter(|a| a.acknowledged)
        .map(|a| a.recipient.as_str())
        .collect();
    assert_eq!(acked, vec!["alice", "bob"]);
    assert_eq!(status.round, 3);
    // The audit trail says why it ended, whatever became of the Events.
    let finished = alertcall::api::conditions::find(&status.conditions, "Finished");
    assert_eq!(
        finished.map(|c| (c.status.as_str(), c.reason.as_str())),
        Some(("True", "Exhausted")),
        "{:?}",
        status.conditions
    );
    assert!(
        finished.is_some_and(|c| c.message.contains("3 round(s)")),
        "{finished:?}"
    );
    h.finish(vec![op]).await;
}

/// Crashes the operator at `point` during the first dial, restarts it on the same address, and
/// lets the page finish. Without a public URL no status callback can repair the lost SID: only
/// the lookup at Twilio can.
async fn crash_and_restart(
    point: HookPoint,
    prefix: &str,
    public: bool,
) -> (Harness, AlertCallStatus) {
    let script = Script::default()
        .with(ALICE, Recipient::presses(20.0, "1").hangup_after(5.0))
        .with(BOB, Recipient::presses(1.0, "1").hangup_after(5.0));
    let h = Harness::new(prefix, script, 10.0).await;
    let hooks = Hooks::pause_at(point);
    let first = h
        .operator("crashy", any_port(), public, hooks.clone())
        .await;
    let addr = first.addr;
    h.policy(policy_spec(
        json!({"mode": "Sequential", "ringTimeoutSeconds": 60, "rounds": 1}),
        &[("alice", ALICE), ("bob", BOB)],
        10,
    ))
    .await;
    h.page("page").await;
    tokio::time::timeout(Duration::from_secs(60), hooks.reached())
        .await
        .unwrap_or_else(|_| panic!("the operator never reached {point:?}"));
    first.kill().await;
    let intent = h.status("page").await;
    assert_eq!(intent.attempts.len(), 1, "{intent:#?}");
    assert_eq!(intent.attempts[0].call_sid, None);
    let second = h
        .operator("restarted", addr, public, Hooks::default())
        .await;
    let status = h
        .wait_status("page", "the page to be acknowledged", |s| {
            s.phase == Phase::Acknowledged
        })
        .await;
    second.shutdown().await;
    (h, status)
}

#[tokio::test]
async fn a_crash_after_recording_intent_never_calls_twice() {
    let (h, status) = crash_and_restart(HookPoint::AfterIntent, "esc-crash-intent", true).await;
    let counts = calls_to(&h.sim.ledger());
    // The intent was never dialed: it is found missing at Twilio and dialed then, once, so
    // Alice is not skipped.
    assert_eq!(counts.get(ALICE), Some(&1), "{counts:?}");
    assert_eq!(counts.get(BOB), None, "{counts:?}");
    assert_eq!(status.attempts.len(), 1, "{status:#?}");
    assert_eq!(status.attempts[0].redials, 1);
    assert_eq!(status.acknowledged_by.as_deref(), Some("alice"));
    h.finish(Vec::new()).await;
}

#[tokio::test]
async fn a_crash_after_twilio_accepted_the_call_never_calls_twice() {
    let (h, status) =
        crash_and_restart(HookPoint::AfterAccepted, "esc-crash-accepted", false).await;
    let ledger = h.sim.ledger();
    let counts = calls_to(&ledger);
    assert_eq!(counts.get(ALICE), Some(&1), "{counts:?}");
    assert_eq!(counts.get(BOB), None, "{counts:?}");
    // The call placed before the crash was found again and acknowledged.
    assert_eq!(status.attempts.len(), 1);
    assert_eq!(
        status.attempts[0].call_sid.as_deref(),
        sid_of(&ledger, ALICE).first().map(String::as_str)
    );
    assert_eq!(status.acknowledged_by.as_deref(), Some("alice"));
    h.finish(Vec::new()).await;
}

#[tokio::test]
async fn an_ambiguous_dial_that_placed_nothing_is_dialed_once_more() {
    let script = Script::default()
        .with(ALICE, Recipient::presses(1.0, "1"))
        .with(BOB, Recipient::presses(1.0, "1").hangup_after(5.0));
    let h = Harness::new("esc-ambiguous", script, 10.0).await;
    // Twilio answers the first create with a 500: it may or may not have placed the call.
    h.sim.inject_fault(
        FaultSpec::new(Fault::ServerError)
            .on_path("/Calls.json")
            .on_method("POST")
            .times(1),
    );
    let op = h
        .operator("ambiguous", any_port(), true, Hooks::default())
        .await;
    h.policy(policy_spec(
        json!({"mode": "Sequential", "ringTimeoutSeconds": 30, "rounds": 1}),
        &[("alice", ALICE), ("bob", BOB)],
        10,
    ))
    .await;
    h.page("page").await;
    let status = h.wait_phase("page", Phase::Acknowledged).await;
    let counts = calls_to(&h.sim.ledger());
    // Alice's call was never placed: found missing at Twilio, it is dialed once more, so the
    // 500 costs no one their call.
    assert_eq!(counts.get(ALICE), Some(&1), "{counts:?}");
    assert_eq!(counts.get(BOB), None, "{counts:?}");
    assert_eq!(status.attempts.len(), 1, "{status:#?}");
    assert_eq!(status.attempts[0].redials, 1);
    assert_eq!(status.acknowledged_by.as_deref(), Some("alice"));
    h.finish(vec![op]).await;
}

#[tokio::test]
async fn two_controllers_at_once_dial_each_attempt_once() {
    let script = Script::default()
        .with(ALICE, no_answer())
        .with(BOB, Recipient::with_outcome(Outcome::Busy))
        .with(CAROL, Recipient::presses(2.0, "1").hangup_after(5.0));
    let h = Harness::new("esc-two", script, 20.0).await;
    // Both lead (no election): only the resourceVersion guard keeps them from double dialing.
    let a = h
        .operator("twin-a", any_port(), true, Hooks::default())
        .await;
    let b = h
        .operator("twin-b", any_port(), true, Hooks::default())
        .await;
    h.policy(policy_spec(
        json!({"mode": "Sequential", "ringTimeoutSeconds": 10, "rounds": 1}),
        &[("alice", ALICE), ("bob", BOB), ("carol", CAROL)],
        10,
    ))
    .await;
    h.page("page").await;
    let status = h.wait_phase("page", Phase::Acknowledged).await;
    assert_eq!(status.acknowledged_by.as_deref(), Some("carol"));
    h.wait_settled("page", &[&a, &b]).await;
    let counts = calls_to(&h.sim.ledger());
    assert_eq!(counts.get(ALICE), Some(&1), "{counts:?}");
    assert_eq!(counts.get(BOB), Some(&1), "{counts:?}");
    assert_eq!(counts.get(CAROL), Some(&1), "{counts:?}");
    assert_eq!(status.attempts.len(), 3);
    h.finish(vec![a, b]).await;
}

#[tokio::test]
async fn calls_are_paced_to_the_accounts_calls_per_second() {
    let scale = 2.0;
    let script = Script {
        default: no_answer(),
        ..Script::default()
    };
    let h = Harness::new("esc-pace", script, scale).await;
    let op = h.operator("pace", any_port(), true, Hooks::default()).await;
    h.policy(policy_spec(
        json!({"mode": "Simultaneous", "completion": "FirstAck", "ringTimeoutSeconds": 60, "rounds": 1}),
        &[("alice", ALICE), ("bob", BOB), ("carol", CAROL), ("dave", DAVE)],
        1,
    ))
    .await;
    h.page("page").await;
    let ledger = h.wait_ledger("four calls", |l| created(l).len() == 4).await;
    let times: Vec<jiff::Timestamp> = created(&ledger).into_iter().map(|(_, _, at)| at).collect();
    let seconds: Vec<i64> = times.iter().map(|t| t.as_second()).collect();
    for pair in times.windows(2) {
        let gap = pair[1].duration_since(pair[0]).as_secs_f64();
        // At 1 call per second, simulated gaps are at least `scale` seconds (less jitter).
        assert!(
            gap >= 0.9 * scale,
            "calls {gap}s apart in simulated time: {times:?}"
        );
    }
    let mut distinct = seconds.clone();
    distinct.dedup();
    assert_eq!(
        distinct, seconds,
        "two calls started within the same second"
    );
    // Stop ringing: acknowledge from kubectl.
    h.calls()
        .patch(
            "page",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"acknowledged": true}})),
        )
        .await
        .unwrap_or_else(|e| panic!("acknowledging: {e}"));
    h.wait_phase("page", Phase::Acknowledged).await;
    h.finish(vec![op]).await;
}

#[tokio::test]
async fn kubectl_acknowledgement_cancels_ringing_calls() {
    let script = Script {
        default: no_answer(),
        ..Script::default()
    };
    let h = Harness::new("esc-kubectl", script, 10.0).await;
    let op = h
        .operator("kubectl", any_port(), true, Hooks::default())
        .await;
    h.policy(policy_spec(
        json!({"mode": "Simultaneous", "completion": "FirstAck", "ringTimeoutSeconds": 600, "rounds": 1}),
        &[("alice", ALICE), ("bob", BOB)],
        10,
    ))
    .await;
    h.page("page").await;
    h.wait_status("page", "both calls ringing", |s| {
        s.attempts.len() == 2
            && s.attempts
                .iter()
                .all(|a| a.status == AttemptStatus::Ringing)
    })
    .await;
    h.calls()
        .patch(
            "page",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"acknowledged": true}})),
        )
        .await
        .unwrap_or_else(|e| panic!("acknowledging: {e}"));
    let status = h.wait_phase("page", Phase::Acknowledged).await;
    assert_eq!(status.acknowledged_by.as_deref(), Some("kubectl"));
    let ledger = h
        .wait_ledger("both calls canceled", |l| {
            created(l)
                .iter()
                .all(|(_, sid, _)| final_status(l, sid).as_deref() == Some("canceled"))
        })
        .await;
    assert_eq!(created(&ledger).len(), 2);
    h.finish(vec![op]).await;
}

#[tokio::test]
async fn polling_alone_pages_without_a_public_url() {
    let script = Script::default()
        .with(ALICE, no_answer())
        .with(BOB, Recipient::presses(2.0, "1"));
    let h = Harness::new("esc-poll", script, 20.0).await;
    let op = h
        .operator("poll", any_port(), false, Hooks::default())
        .await;
    h.policy(policy_spec(
        json!({"mode": "Sequential", "ringTimeoutSeconds": 10, "rounds": 1}),
        &[("alice", ALICE), ("bob", BOB)],
        10,
    ))
    .await;
    // The documents are hosted at Twilio: no callback reaches the operator, it learns
    // everything by polling.
    h.page("page").await;
    let status = h.wait_phase("page", Phase::Acknowledged).await;
    assert_eq!(status.acknowledged_by.as_deref(), Some("bob"));
    let ledger = h.sim.ledger();
    let callbacks = ledger
        .entries
        .iter()
        .filter(
            |e| matches!(&e.event, Event::Webhook { purpose, .. } if purpose == "status-callback"),
        )
        .count();
    assert_eq!(callbacks, 0, "no status callbacks without a public URL");
    assert_eq!(
        calls_to(&ledger).values().copied().collect::<Vec<_>>(),
        vec![1, 1]
    );
    let ledger = h
        .wait_ledger("bob in the room", |l| {
            !l.participants_of(&h.room()).is_empty()
        })
        .await;
    assert_eq!(ledger.participants_of(&h.room()), sid_of(&ledger, BOB));
    h.finish(vec![op]).await;
}

#[tokio::test]
async fn concurrent_calls_stay_under_the_accounts_cap() {
    let script = Script::default()
        .with(ALICE, no_answer())
        .with(BOB, Recipient::presses(1.0, "1").hangup_after(5.0));
    let h = Harness::new("esc-cap", script, 20.0).await;
    let op = h.operator("cap", any_port(), true, Hooks::default()).await;
    let mut spec = policy_spec(
        json!({"mode": "Simultaneous", "completion": "FirstAck", "ringTimeoutSeconds": 10, "rounds": 1}),
        &[("alice", ALICE), ("bob", BOB)],
        10,
    );
    spec["limits"]["maxConcurrentCalls"] = json!(1);
    h.policy(spec).await;
    h.page("page").await;
    let status = h.wait_phase("page", Phase::Acknowledged).await;
    assert_eq!(status.acknowledged_by.as_deref(), Some("bob"));
    let ledger = h.sim.ledger();
    let alice = sid_of(&ledger, ALICE);
    let bob = created(&ledger)
        .into_iter()
        .find(|(to, _, _)| to == BOB)
        .map(|(_, _, at)| at);
    let alice_ended = alice
        .first()
        .and_then(|sid| ledger.status_time(sid, "no-answer"));
    assert!(
        matches!((alice_ended, bob), (Some(ended), Some(started)) if started >= ended),
        "bob dialed while alice's call was live: {alice_ended:?} {bob:?}"
    );
    h.finish(vec![op]).await;
}

fn has_finalizer(call: &AlertCall) -> bool {
    call.metadata
        .finalizers
        .iter()
        .flatten()
        .any(|f| f == alertcall::controllers::alert_call::FINALIZER)
}

/// Waits (bounded) until the AlertCall is gone.
async fn wait_gone(h: &Harness, name: &str) {
    let gone = support::within(PAGE_WAIT, || async {
        matches!(h.calls().get_opt(name).await, Ok(None)).then_some(())
    })
    .await;
    if gone.is_none() {
        panic!(
            "{name} was not deleted; status: {:#?}",
            h.status(name).await
        );
    }
}

/// A page whose only recipient never answers, so its call rings as long as Twilio lets it.
async fn page_ringing_alice_forever(prefix: &str, identity: &str) -> (Harness, Running) {
    let h = Harness::new(prefix, Script::default().with(ALICE, no_answer()), 10.0).await;
    let op = h
        .operator(identity, any_port(), true, Hooks::default())
        .await;
    h.policy(policy_spec(
        json!({"mode": "Sequential", "ringTimeoutSeconds": 600, "rounds": 1}),
        &[("alice", ALICE)],
        10,
    ))
    .await;
    h.page("page").await;
    (h, op)
}

#[tokio::test]
async fn deleting_a_page_cancels_its_ringing_call_before_it_goes() {
    let (h, op) = page_ringing_alice_forever("esc-delete", "delete").await;
    let ledger = h
        .wait_ledger("alice's phone ringing", |l| {
            sid_of(l, ALICE)
                .first()
                .is_some_and(|sid| final_status(l, sid).as_deref() == Some("ringing"))
        })
        .await;
    let sid = sid_of(&ledger, ALICE)[0].clone();
    let call = h
        .calls()
        .get("page")
        .await
        .unwrap_or_else(|e| panic!("reading the page: {e}"));
    assert!(has_finalizer(&call), "{:?}", call.metadata.finalizers);
    h.calls()
        .delete("page", &Default::default())
        .await
        .unwrap_or_else(|e| panic!("deleting the page: {e}"));
    wait_gone(&h, "page").await;
    let ledger = h.sim.ledger();
    assert_eq!(final_status(&ledger, &sid).as_deref(), Some("canceled"));
    assert_eq!(calls_to(&ledger).get(ALICE), Some(&1));
    h.finish(vec![op]).await;
}

#[tokio::test]
async fn deletion_waits_for_an_unreachable_twilio_and_says_why() {
    let (h, op) = page_ringing_alice_forever("esc-delete-down", "delete-down").await;
    h.wait_status("page", "alice ringing", |s| {
        s.attempts
            .first()
            .is_some_and(|a| a.status == AttemptStatus::Ringing)
    })
    .await;
    // Every request to end (or fetch) a call fails from now on.
    h.sim
        .inject_fault(FaultSpec::new(Fault::ServerError).on_path("/Calls/CA"));
    h.calls()
        .delete("page", &Default::default())
        .await
        .unwrap_or_else(|e| panic!("deleting the page: {e}"));
    let status = h
        .wait_status("page", "deletion waiting on Twilio", |s| {
            s.conditions.iter().any(|c| {
                c.type_ == alertcall::controllers::alert_call::CALLS_ENDED
                    && c.status == "False"
                    && c.reason == "TwilioUnreachable"
            })
        })
        .await;
    assert_eq!(status.phase, Phase::Cancelled);
    let ledger = h.sim.ledger();
    let sid = sid_of(&ledger, ALICE)[0].clone();
    assert_eq!(final_status(&ledger, &sid).as_deref(), Some("ringing"));
    // Twilio is back: the call is canceled and the page goes.
    h.sim.clear_faults();
    wait_gone(&h, "page").await;
    assert_eq!(
        final_status(&h.sim.ledger(), &sid).as_deref(),
        Some("canceled")
    );
    h.finish(vec![op]).await;
}

#[tokio::test]
async fn an_acknowledged_page_holds_no_finalizer_and_deletes_at_once() {
    let script = Script::default().with(ALICE, Recipient::presses(1.0, "1"));
    let h = Harness::new("esc-delete-acked", script, 10.0).await;
    let op = h
        .operator("delete-acked", any_port(), true, Hooks::default())
        .await;
    h.policy(policy_spec(
        json!({"mode": "Sequential", "ringTimeoutSeconds": 30, "rounds": 1}),
        &[("alice", ALICE)],
        10,
    ))
    .await;
    h.page("page").await;
    h.wait_phase("page", Phase::Acknowledged).await;
    // Alice stays in the room; her call is not the page's to end, so it holds nothing.
    let released = support::within(PAGE_WAIT, || async {
        let call = h.calls().get_opt("page").await.ok().flatten()?;
        (!has_finalizer(&call)).then_some(())
    })
    .await;
    assert!(
        released.is_some(),
        "the acknowledged page kept its finalizer"
    );
    h.calls()
        .delete("page", &Default::default())
        .await
        .unwrap_or_else(|e| panic!("deleting the page: {e}"));
    // No finalizer: the API server removes it in the delete call itself.
    let after = h
        .calls()
        .get_opt("page")
        .await
        .unwrap_or_else(|e| panic!("reading the page: {e}"));
    assert!(after.is_none(), "still there: {after:?}");
    h.finish(vec![op]).await;
}

#[tokio::test]
async fn a_recorded_room_puts_its_recording_url_on_the_page() {
    // Both press and stay: with two participants the conference starts, and so does recording.
    let script = Script::default()
        .with(ALICE, Recipient::presses(1.0, "1"))
        .with(BOB, Recipient::presses(2.0, "1"));
    let h = Harness::new("esc-record", script, 20.0).await;
    let op = h
        .operator("record", any_port(), true, Hooks::default())
        .await;
    let mut spec = policy_spec(
        json!({"mode": "Simultaneous", "completion": "AllAcked", "ringTimeoutSeconds": 20, "rounds": 1}),
        &[("alice", ALICE), ("bob", BOB)],
        10,
    );
    spec["conference"] = json!({"record": true});
    h.policy(spec).await;
    h.page("page").await;
    h.wait_phase("page", Phase::Acknowledged).await;
    let status = h
        .wait_status("page", "the recording URL", |s| s.recording_url.is_some())
        .await;
    let recorded: Vec<String> = h
        .sim
        .ledger()
        .entries
        .iter()
        .filter_map(|e| match &e.event {
            Event::Recording { url, .. } => Some(url.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(recorded.len(), 1, "{recorded:?}");
    assert_eq!(status.recording_url.as_deref(), Some(recorded[0].as_str()));
    assert!(
        recorded[0].contains(&format!("/Accounts/{AC}/Recordings/RE")),
        "{recorded:?}"
    );
    h.finish(vec![op]).await;
}
