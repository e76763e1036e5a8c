//! Credentials Secrets with an API key, end to end with `--public-url` set: the operator in
//! process on the real control plane, its callback server on loopback, and the simulator.
//! A key cannot verify Twilio's signatures, so without an auth token nothing may point Twilio
//! at the operator; with one, the key still authenticates REST and the callbacks verify.

mod support;

use std::collections::BTreeMap;

use alertcall::api::Phase;
use alertcall::operator::Running;
use alertcall::page::hooks::Hooks;
use alertcall::twilio::sim::{Entry, Event, Ledger, Recipient, Script};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::json;
use support::paging::*;

const KEY_SID: &str = "SK0123456789abcdef0123456789abcdef";
const KEY_SECRET: &str = "api-key-secret";

/// A harness whose Secret holds the API key (and `authToken` when given), and an operator
/// that both publishes the policy's documents and serves callbacks at its public URL.
async fn start(prefix: &str, with_token: bool) -> (Harness, Running, String) {
    let script = Script::default().with(ALICE, Recipient::presses(2.0, "1").hangup_after(6.0));
    let h = Harness::new(prefix, script, 20.0).await;
    h.sim.add_api_key(KEY_SID, KEY_SECRET);
    let secrets: Api<Secret> = Api::namespaced(h.client.clone(), &h.ns.name);
    secrets
        .delete("twilio", &DeleteParams::default())
        .await
        .unwrap_or_else(|e| panic!("deleting the token Secret: {e}"));
    let mut data = json!({"accountSid": AC, "apiKeySid": KEY_SID, "apiKeySecret": KEY_SECRET});
    if with_token {
        data["authToken"] = json!(TOKEN);
    }
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "twilio"},
        "stringData": data,
    }))
    .unwrap_or_else(|e| panic!("secret: {e}"));
    support::eventually("the API key Secret", || async {
        secrets.create(&PostParams::default(), &secret).await.ok()
    })
    .await;
    let listener = bind(any_port()).await;
    let addr = listener
        .local_addr()
        .unwrap_or_else(|e| panic!("local addr: {e}"));
    let mut config = h.config("keys", addr, true, Hooks::default());
    config.call_policies = true;
    let op = h.start(config, listener).await;
    h.policy(policy_spec(
        json!({"mode": "Sequential", "ringTimeoutSeconds": 10, "rounds": 1}),
        &[("alice", ALICE), ("bob", BOB)],
        10,
    ))
    .await;
    (h, op, format!("http://{addr}/"))
}

/// Every webhook the simulator sent: (purpose, URL, response status).
fn webhooks(ledger: &Ledger) -> Vec<(String, String, Option<u16>)> {
    ledger
        .entries
        .iter()
        .filter_map(|Entry { event, .. }| match event {
            Event::Webhook {
                purpose,
                url,
                response_status,
                ..
            } => Some((purpose.clone(), url.clone(), *response_status)),
            _ => None,
        })
        .collect()
}

/// The Basic auth users of the operator's REST requests (every request that gave one).
fn users(ledger: &Ledger) -> std::collections::BTreeSet<String> {
    ledger
        .entries
        .iter()
        .filter_map(|e| match &e.event {
            Event::Request { user, .. } => user.clone(),
            _ => None,
        })
        .collect()
}

fn rejected(ledger: &Ledger) -> Vec<(String, String, Option<u16>)> {
    webhooks(ledger)
        .into_iter()
        .filter(|(_, _, status)| !status.is_some_and(|s| (200..300).contains(&s)))
        .collect()
}

/// The `CallStatus` of each status callback the operator accepted.
fn accepted_statuses(ledger: &Ledger, operator: &str) -> Vec<String> {
    ledger
        .entries
        .iter()
        .filter_map(|e| match &e.event {
            Event::Webhook {
                purpose,
                url,
                params,
                response_status: Some(status),
                ..
            } if purpose == "status-callback"
                && url.starts_with(operator)
                && (200..300).contains(status) =>
            {
                params.get("CallStatus").cloned()
            }
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn an_api_key_alone_pages_with_no_callback_rejected() {
    let (h, op, operator) = start("key-only", false).await;
    h.page("page").await;
    let status = h.wait_phase("page", Phase::Acknowledged).await;
    assert_eq!(status.acknowledged_by.as_deref(), Some("alice"));
    h.wait_settled("page", &[&op]).await;
    let ledger = h
        .wait_ledger("alice's call ended", |l| {
            sid_of(l, ALICE)
                .first()
                .and_then(|sid| final_status(l, sid))
                .is_some_and(|s| s == "completed")
        })
        .await;
    assert_eq!(calls_to(&ledger), BTreeMap::from([(ALICE.to_string(), 1)]));
    let sent = webhooks(&ledger);
    assert!(
        sent.iter()
            .any(|(purpose, _, _)| purpose == "gather-action"),
        "the keypress went to the hosted function: {sent:#?}"
    );
    let to_operator: Vec<_> = sent
        .iter()
        .filter(|(_, url, _)| url.starts_with(&operator))
        .collect();
    assert!(
        to_operator.is_empty(),
        "nothing may point Twilio at an operator that cannot verify it: {to_operator:#?}"
    );
    assert_eq!(rejected(&ledger), Vec::new());
    assert_eq!(users(&ledger), [KEY_SID.to_string()].into());
    h.finish(vec![op]).await;
}

#[tokio::test]
async fn an_api_key_with_an_auth_token_gets_verified_callbacks() {
    let (h, op, operator) = start("key-token", true).await;
    h.page("page").await;
    let status = h.wait_phase("page", Phase::Acknowledged).await;
    assert_eq!(status.acknowledged_by.as_deref(), Some("alice"));
    h.wait_settled("page", &[&op]).await;
    let ledger = h
        // NB: every report, not only the last: the first one may still be in flight (its SID
        // proven by a Calls fetch, since it can arrive before the dial's SID is recorded).
        .wait_ledger("alice's call reported to the operator at every step", |l| {
            let accepted = accepted_statuses(l, &operator);
            ["initiated", "ringing", "in-progress", "completed"]
                .iter()
                .all(|status| accepted.iter().any(|s| s == status))
                || !rejected(l).is_empty()
        })
        .await;
    let accepted = accepted_statuses(&ledger, &operator);
    for status in ["initiated", "ringing", "in-progress", "completed"] {
        assert!(
            accepted.iter().any(|s| s == status),
            "{status}: {accepted:?}; rejected {:#?}",
            rejected(&ledger)
        );
    }
    assert_eq!(rejected(&ledger), Vec::new());
    assert_eq!(users(&ledger), [KEY_SID.to_string()].into());
    h.finish(vec![op]).await;
}
