//! A resolve ends a page (AlertRoute `onResolved: Cancel`, the default): an Alertmanager
//! `resolved` payload while a call rings cancels it at Twilio and ends the page in phase
//! `Resolved`; while a person is in the call (answered, no key yet), nothing is canceled.
//! The operator runs in process on the real control plane, calling the in-process simulator.

mod support;

use alertcall::api::{AlertCall, AlertRoute, AttemptStatus, Phase};
use alertcall::operator::Running;
use alertcall::page::hooks::Hooks;
use alertcall::twilio::sim::{Event, Ledger, Recipient, Script};
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Event as KubeEvent, Secret};
use kube::api::{Api, ListParams};
use kube::ResourceExt;
use serde_json::{json, Value};
use support::paging::*;

const BEARER: &str = "r3solve";

/// An Alertmanager (payload version 4) notification of one DiskFull alert.
fn notification(status: &str, ends_at: &str) -> Value {
    json!({
        "version": "4", "status": status, "receiver": "alertcall",
        "groupKey": "{}:{alertname=\"DiskFull\"}", "groupLabels": {"alertname": "DiskFull"},
        "commonLabels": {}, "commonAnnotations": {}, "externalURL": "http://alertmanager:9093",
        "truncatedAlerts": 0,
        "alerts": [{
            "status": status,
            "labels": {"alertname": "DiskFull", "severity": "critical", "node": "one"},
            "annotations": {"summary": "disk full on node one"},
            "startsAt": "2026-01-01T00:00:00Z", "endsAt": ends_at,
            "fingerprint": "diskfull-one",
        }]
    })
}

async fn post(op: &Running, namespace: &str, body: &Value) -> u16 {
    reqwest::Client::new()
        .post(format!("http://{}/alertmanager/{namespace}/disk", op.addr))
        .bearer_auth(BEARER)
        .json(body)
        .send()
        .await
        .unwrap_or_else(|e| panic!("POST: {e}"))
        .status()
        .as_u16()
}

/// The `disk` route on Alertmanager alerts, with the default `onResolved` (Cancel), indexed by
/// the operator.
async fn route(h: &Harness) {
    support::create(
        &Api::<Secret>::namespaced(h.client.clone(), &h.ns.name),
        json!({"metadata": {"name": "am-token"}, "stringData": {"token": BEARER}}),
    )
    .await;
    let routes: Api<AlertRoute> = Api::namespaced(h.client.clone(), &h.ns.name);
    let created: AlertRoute = support::create(
        &routes,
        json!({
            "apiVersion": "alertcall.dev/v1alpha1", "kind": "AlertRoute",
            "metadata": {"name": "disk"},
            "spec": {
                "policyRef": {"name": "oncall"},
                "alertmanager": {"bearerTokenSecretRef": {"name": "am-token", "key": "token"}},
                "grouping": {"groupBy": ["alertname"]},
            },
        }),
    )
    .await;
    assert_eq!(
        created.spec.on_resolved,
        alertcall::api::OnResolved::Cancel,
        "the API server defaults onResolved"
    );
    support::eventually("the route to be indexed", || {
        let routes = routes.clone();
        async move {
            let route = routes.get("disk").await.ok()?;
            let status = route.status?;
            (status.observed_generation == route.metadata.generation).then_some(())
        }
    })
    .await;
}

/// Fires the alert and returns the page it made, once its first call reached `status`.
async fn page_until(h: &Harness, op: &Running, status: AttemptStatus) -> String {
    let never = "0001-01-01T00:00:00Z";
    assert_eq!(
        post(op, &h.ns.name, &notification("firing", never)).await,
        200
    );
    // 200 means the page exists.
    let pages = h
        .calls()
        .list(&ListParams::default())
        .await
        .unwrap_or_else(|e| panic!("pages: {e}"));
    assert_eq!(pages.items.len(), 1, "{:#?}", pages.items);
    let name = pages.items[0].name_any();
    h.wait_status(&name, &format!("alice's call {status:?}"), |s| {
        s.attempts.first().is_some_and(|a| a.status == status)
    })
    .await;
    name
}

/// One notification of the group in Alertmanager's label order: node one resolved, node two
/// still firing.
fn one_of_two_resolved(ends_at: &str) -> Value {
    let mut body = notification("firing", "0001-01-01T00:00:00Z");
    let mut resolved = notification("resolved", ends_at)["alerts"][0].clone();
    let mut firing = body["alerts"][0].clone();
    firing["labels"]["node"] = json!("two");
    firing["fingerprint"] = json!("diskfull-two");
    resolved["labels"]["node"] = json!("one");
    body["alerts"] = json!([resolved, firing]);
    body
}

async fn resolve(h: &Harness, op: &Running) {
    let now = Timestamp::now().to_string();
    assert_eq!(
        post(op, &h.ns.name, &notification("resolved", &now)).await,
        200
    );
}

/// Requests the operator sent to change a call (cancel or hang up).
fn updates_of(ledger: &Ledger, sid: &str) -> usize {
    let path = format!("/Calls/{sid}.json");
    ledger
        .entries
        .iter()
        .filter(|e| matches!(&e.event, Event::Request { method, path: p, .. } if method == "POST" && p.ends_with(&path)))
        .count()
}

async fn resolved_event(h: &Harness, name: &str) -> String {
    let events: Api<KubeEvent> = Api::namespaced(h.client.clone(), &h.ns.name);
    support::eventually("the Resolved Event", || {
        let events = events.clone();
        async move {
            let list = events.list(&ListParams::default()).await.ok()?;
            list.items.into_iter().find_map(|e| {
                let ours = e.involved_object.name.as_deref() == Some(name);
                (ours && e.reason.as_deref() == Some("Resolved"))
                    .then(|| e.message.unwrap_or_default())
            })
        }
    })
    .await
}

fn policy() -> Value {
    let mut spec = policy_spec(
        json!({"mode": "Sequential", "ringTimeoutSeconds": 120, "rounds": 1}),
        &[("alice", ALICE), ("bob", BOB)],
        10,
    );
    // A person who answers and does not press stays in the call this long (simulated).
    spec["acknowledgement"]["gatherTimeoutSeconds"] = json!(60);
    spec
}

#[tokio::test]
async fn a_resolve_while_ringing_cancels_the_call_and_ends_the_page_resolved() {
    let script = Script::default()
        .with(ALICE, no_answer())
        .with(BOB, no_answer());
    let h = Harness::new("resolve-ring", script, 4.0).await;
    let op = h.operator("ring", any_port(), true, Hooks::default()).await;
    h.policy(policy()).await;
    route(&h).await;
    let name = page_until(&h, &op, AttemptStatus::Ringing).await;
    let page: AlertCall = h.calls().get(&name).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(page.spec.on_resolved, alertcall::api::OnResolved::Cancel);

    resolve(&h, &op).await;
    let status = h.wait_phase(&name, Phase::Resolved).await;
    assert!(status.acknowledged_by.is_none(), "{status:#?}");
    let ledger = h
        .wait_ledger("alice's call canceled", |l| {
            sid_of(l, ALICE)
                .first()
                .is_some_and(|sid| final_status(l, sid).as_deref() == Some("canceled"))
        })
        .await;
    assert!(sid_of(&ledger, BOB).is_empty(), "bob is never called");
    let message = resolved_event(&h, &name).await;
    assert!(message.contains("onResolved: Cancel"), "{message}");
    // Settled: no call of the page can still be placed, so bob stays uncalled.
    h.wait_settled(&name, &[&op]).await;
    let counts = calls_to(&h.sim.ledger());
    assert_eq!(counts.len(), 1, "{counts:?}");
    let status = h.status(&name).await;
    assert_eq!(status.phase, Phase::Resolved);
    assert_eq!(status.attempts[0].status, AttemptStatus::Canceled);
    h.finish(vec![op]).await;
}

#[tokio::test]
async fn a_resolve_while_a_person_is_in_the_call_cancels_nothing() {
    let script = Script::default()
        .with(ALICE, Recipient::answers_after(1.0))
        .with(BOB, no_answer());
    let h = Harness::new("resolve-room", script, 4.0).await;
    let op = h.operator("room", any_port(), true, Hooks::default()).await;
    h.policy(policy()).await;
    route(&h).await;
    let name = page_until(&h, &op, AttemptStatus::InProgress).await;

    resolve(&h, &op).await;
    let status = h.wait_phase(&name, Phase::Resolved).await;
    // Decided while alice listens: her call is left to finish the message.
    assert_eq!(
        status.attempts[0].status,
        AttemptStatus::InProgress,
        "{status:#?}"
    );
    resolved_event(&h, &name).await;
    h.wait_settled(&name, &[&op]).await;
    let ledger = h.sim.ledger();
    let sids = sid_of(&ledger, ALICE);
    assert_eq!(sids.len(), 1, "{sids:?}");
    assert_eq!(
        updates_of(&ledger, &sids[0]),
        0,
        "nothing canceled or hung up"
    );
    assert_eq!(
        final_status(&ledger, &sids[0]).as_deref(),
        Some("completed")
    );
    assert!(sid_of(&ledger, BOB).is_empty(), "bob is never called");
    assert_eq!(h.status(&name).await.phase, Phase::Resolved);
    h.finish(vec![op]).await;
}

#[tokio::test]
async fn a_notification_with_an_alert_of_the_group_still_firing_does_not_end_the_page() {
    let script = Script::default()
        .with(ALICE, no_answer())
        .with(BOB, no_answer());
    let h = Harness::new("resolve-part", script, 4.0).await;
    let op = h.operator("part", any_port(), true, Hooks::default()).await;
    h.policy(policy()).await;
    route(&h).await;
    let name = page_until(&h, &op, AttemptStatus::Ringing).await;

    let now = Timestamp::now().to_string();
    assert_eq!(post(&op, &h.ns.name, &one_of_two_resolved(&now)).await, 200);
    // 200 means the resolve is written; wait until the controller decided on that spec.
    let page = support::eventually("the controller to see the resolve", || async {
        let page = h.calls().get(&name).await.ok()?;
        let seen = page.status.as_ref()?.observed_generation;
        (page.spec.source.resolved_at.is_some() && seen == page.metadata.generation).then_some(page)
    })
    .await;
    let (resolved, last_seen) = (
        page.spec.source.resolved_at.clone().map(|t| t.0),
        page.spec.source.last_seen.clone().map(|t| t.0),
    );
    assert!(last_seen > resolved, "{:#?}", page.spec.source);
    let status = page.status.unwrap_or_default();
    assert_eq!(status.phase, Phase::Calling, "{status:#?}");
    assert_eq!(status.attempts[0].status, AttemptStatus::Ringing);
    let pages = h
        .calls()
        .list(&ListParams::default())
        .await
        .unwrap_or_else(|e| panic!("pages: {e}"));
    assert_eq!(
        pages.items.len(),
        1,
        "node two still firing pages no second time"
    );
    let ledger = h.sim.ledger();
    let sids = sid_of(&ledger, ALICE);
    assert_eq!(
        updates_of(&ledger, &sids[0]),
        0,
        "alice's call is not canceled"
    );
    h.finish(vec![op]).await;
}
