//! `alertcall check` and the real API server (kube-apiserver 1.20 on loopback) give the same
//! verdict on the same documents: good ones pass both, bad ones fail both.
//!
//! The verdict of the server, honestly stated: kube-apiserver 1.20 has no strict field
//! validation (it came in 1.25), so an unknown field is not refused but pruned: the object is
//! stored without it, with HTTP 201. `check` reports that as an error, because a field that
//! vanishes on apply is a mistake in Git. So the server's verdict here is "bad" when it answers
//! 4xx OR when the object it stored lacks something that was sent; and the two kinds must line
//! up: a 4xx is `invalid` in `check`'s JSON, a pruning is `unknown-field` and nothing else.
//! `status` is left out of the comparison: a status subresource ignores it on create, and so
//! does `check`.

mod support;

use std::collections::BTreeMap;

use kube::api::{Api, DynamicObject, PostParams};
use kube::core::GroupVersionKind;
use kube::discovery::pinned_kind;
use serde_json::{json, Value};

fn policy(name: &str, change: impl FnOnce(&mut Value)) -> Value {
    let mut document = json!({
        "apiVersion": "alertcall.dev/v1alpha1",
        "kind": "CallPolicy",
        "metadata": {"name": name},
        "spec": {
            "twilio": {"credentialsSecretRef": {"name": "twilio"}, "from": "+15005550006"},
            "recipients": [{"name": "alice", "phone": "+15005550101"}],
        },
    });
    change(&mut document);
    document
}

fn route(name: &str, change: impl FnOnce(&mut Value)) -> Value {
    let mut document = json!({
        "apiVersion": "alertcall.dev/v1alpha1",
        "kind": "AlertRoute",
        "metadata": {"name": name},
        "spec": {
            "policyRef": {"name": "base"},
            "kubernetesEvents": {"types": ["Warning"]},
        },
    });
    change(&mut document);
    document
}

fn alert_call(name: &str, change: impl FnOnce(&mut Value)) -> Value {
    let mut document = json!({
        "apiVersion": "alertcall.dev/v1alpha1",
        "kind": "AlertCall",
        "metadata": {"name": name},
        "spec": {"policyRef": {"name": "base"}, "summary": "disk full", "source": {"kind": "Manual"}},
    });
    change(&mut document);
    document
}

/// `(expected bad, document)`: the expectation only guards the list itself; the assertion is
/// that `check` and the server agree.
fn cases() -> Vec<(bool, Value)> {
    let many: Vec<Value> = (0..51)
        .map(|i| json!({"name": format!("r{i}"), "phone": format!("+1500555{i:04}")}))
        .collect();
    vec![
        // Accepted by both: the policy every route refers to, and valid variants.
        (false, policy("base", |_| {})),
        (
            false,
            policy("good-null", |d| {
                d["spec"]["strategy"] = json!({"rounds": null})
            }),
        ),
        (
            false,
            policy("good-status", |d| {
                d["status"] = json!({"observedGeneration": 1})
            }),
        ),
        (
            false,
            policy("schedule-recipient", |d| {
                d["spec"]["recipients"][0] = json!({"name": "primary", "schedule": "sre-primary"})
            }),
        ),
        (false, route("good-route", |_| {})),
        (false, alert_call("good-call", |_| {})),
        // Rejected by both.
        (
            true,
            policy("phone-no-plus", |d| {
                d["spec"]["recipients"][0]["phone"] = json!("09012345678")
            }),
        ),
        (
            true,
            policy("two-addresses", |d| {
                d["spec"]["recipients"][0]["client"] = json!("alice")
            }),
        ),
        (
            true,
            policy("schedule-and-phone", |d| {
                d["spec"]["recipients"][0]["schedule"] = json!("sre-primary")
            }),
        ),
        (
            true,
            policy("bad-schedule-name", |d| {
                d["spec"]["recipients"][0] = json!({"name": "a", "schedule": "Not_A_Name"})
            }),
        ),
        (
            true,
            policy("no-address", |d| {
                d["spec"]["recipients"] = json!([{"name": "alice"}])
            }),
        ),
        (
            true,
            policy("no-recipients", |d| d["spec"]["recipients"] = json!([])),
        ),
        (
            true,
            policy("too-many", |d| d["spec"]["recipients"] = json!(many)),
        ),
        (
            true,
            policy("bad-mode", |d| {
                d["spec"]["strategy"] = json!({"mode": "Parallel"})
            }),
        ),
        (
            true,
            policy("string-number", |d| {
                d["spec"]["strategy"] = json!({"ringTimeoutSeconds": "20"})
            }),
        ),
        (
            true,
            policy("short-ring", |d| {
                d["spec"]["strategy"] = json!({"ringTimeoutSeconds": 2})
            }),
        ),
        (
            true,
            policy("many-rounds", |d| {
                d["spec"]["strategy"] = json!({"rounds": 21})
            }),
        ),
        (
            true,
            policy("no-from", |d| {
                d["spec"]["twilio"] = json!({"credentialsSecretRef": {"name": "t"}})
            }),
        ),
        (
            true,
            policy("no-twilio", |d| {
                d["spec"].as_object_mut().map(|s| s.remove("twilio"));
            }),
        ),
        (
            true,
            policy("empty-secret", |d| {
                d["spec"]["twilio"]["credentialsSecretRef"]["name"] = json!("")
            }),
        ),
        (
            true,
            policy("bad-digits", |d| {
                d["spec"]["acknowledgement"] = json!({"digits": "12"})
            }),
        ),
        (
            true,
            policy("bad-sip", |d| {
                d["spec"]["recipients"][0] = json!({"name": "a", "sip": "fumi@pbx"})
            }),
        ),
        (
            true,
            policy("bad-client", |d| {
                d["spec"]["recipients"][0] = json!({"name": "a", "client": "no spaces"})
            }),
        ),
        (
            true,
            policy("bad-person", |d| {
                d["spec"]["recipients"][0]["name"] = json!("-alice")
            }),
        ),
        (
            true,
            policy("zero-cps", |d| {
                d["spec"]["limits"] = json!({"callsPerSecond": 0})
            }),
        ),
        (
            true,
            policy("bad-language", |d| {
                d["spec"]["message"] = json!({"language": "English"})
            }),
        ),
        (
            true,
            policy("bool-string", |d| {
                d["spec"]["conference"] = json!({"record": "yes"})
            }),
        ),
        (
            true,
            policy("item-string", |d| {
                d["spec"]["recipients"] = json!(["+15005550101"])
            }),
        ),
        (true, policy("Bad_Name", |_| {})),
        (
            true,
            route("no-policy-ref", |d| {
                d["spec"].as_object_mut().map(|s| s.remove("policyRef"));
            }),
        ),
        (
            true,
            route("long-wait", |d| {
                d["spec"]["grouping"] = json!({"groupWaitSeconds": 3601})
            }),
        ),
        (
            true,
            route("bad-type", |d| {
                d["spec"]["kubernetesEvents"]["types"] = json!(["Error"])
            }),
        ),
        (
            true,
            route("no-operator", |d| {
                d["spec"]["kubernetesEvents"]["objectSelector"] =
                    json!({"matchExpressions": [{"key": "tier"}]})
            }),
        ),
        (
            true,
            route("zero-min-count", |d| {
                d["spec"]["kubernetesEvents"]["minCount"] = json!(0)
            }),
        ),
        (
            true,
            alert_call("no-summary", |d| {
                d["spec"].as_object_mut().map(|s| s.remove("summary"));
            }),
        ),
        // Unknown fields: stored without them by the server, errors in `check`.
        (
            true,
            policy("typo-ring", |d| {
                d["spec"]["strategy"] = json!({"ringTimeout": 20})
            }),
        ),
        (
            true,
            policy("typo-recipient", |d| {
                d["spec"]["recipients"][0]["phoneNumber"] = json!("+15005550102")
            }),
        ),
        (true, policy("top-level", |d| d["specs"] = json!({"x": 1}))),
        (
            true,
            policy("meta-typo", |d| {
                d["metadata"]["lables"] = json!({"team": "sre"})
            }),
        ),
        (
            true,
            route("typo-reason", |d| {
                d["spec"]["kubernetesEvents"]["reason"] = json!(["BackOff"])
            }),
        ),
        (
            true,
            alert_call("typo-source", |d| {
                d["spec"]["source"]["kindd"] = json!("Manual")
            }),
        ),
    ]
}

/// Whether everything in `sent` (nulls aside) is in `stored`.
fn kept(sent: &Value, stored: &Value) -> bool {
    match (sent, stored) {
        (Value::Object(sent), Value::Object(stored)) => sent.iter().all(|(key, value)| {
            value.is_null()
                || stored
                    .get(key)
                    .is_some_and(|kept_value| kept(value, kept_value))
        }),
        (Value::Array(sent), Value::Array(stored)) => {
            sent.len() == stored.len() && sent.iter().zip(stored).all(|(a, b)| kept(a, b))
        }
        (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
        (a, b) => a == b,
    }
}

#[derive(Debug, PartialEq, Eq, Clone, Copy)]
enum Verdict {
    Accepted,
    Rejected,
    Pruned,
}

#[tokio::test]
async fn check_and_the_api_server_agree_on_every_document() {
    let cases = cases();
    let bad = cases.iter().filter(|(bad, _)| *bad).count();
    assert!(bad >= 25, "only {bad} bad documents");

    // One multi-document file, as a GitOps repository would have.
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let file = dir.path().join("all.yaml");
    let text: String = cases
        .iter()
        .map(|(_, document)| {
            format!(
                "---\n{}",
                serde_yaml::to_string(document).unwrap_or_else(|e| panic!("yaml: {e}"))
            )
        })
        .collect();
    std::fs::write(&file, text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_alertcall"))
        .args([
            "check",
            "-f",
            &file.display().to_string(),
            "--output",
            "json",
        ])
        .output()
        .unwrap_or_else(|e| panic!("cannot run alertcall check: {e}"));
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let report: Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("check --output json is not JSON: {e}: {output:?}"));
    let mut categories: BTreeMap<usize, Vec<String>> = BTreeMap::new();
    for error in report["errors"].as_array().into_iter().flatten() {
        let document = error["document"].as_u64().unwrap_or_default() as usize;
        for field in ["file", "path", "message"] {
            assert!(error[field].is_string(), "{field} missing in {error}");
        }
        categories
            .entry(document)
            .or_default()
            .push(error["category"].as_str().unwrap_or_default().to_string());
    }

    let client = support::client().await;
    let ns = support::TestNamespace::new(&client, "check-verdict").await;
    let mut disagreements = Vec::new();
    for (index, (expected_bad, document)) in cases.iter().enumerate() {
        let number = index + 1;
        let name = document["metadata"]["name"].as_str().unwrap_or_default();
        let kind = document["kind"].as_str().unwrap_or_default();
        let gvk = GroupVersionKind::gvk("alertcall.dev", "v1alpha1", kind);
        let (resource, _) = pinned_kind(&client, &gvk)
            .await
            .unwrap_or_else(|e| panic!("discovering {kind}: {e}"));
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns.name, &resource);
        let object: DynamicObject = serde_json::from_value(document.clone())
            .unwrap_or_else(|e| panic!("{name}: not an object: {e}"));
        let server = match api.create(&PostParams::default(), &object).await {
            Err(kube::Error::Api(status)) if (400..500).contains(&status.code) => Verdict::Rejected,
            Err(error) => panic!("{name}: the API server failed: {error}"),
            Ok(stored) => {
                let stored = serde_json::to_value(&stored)
                    .unwrap_or_else(|e| panic!("{name}: stored object: {e}"));
                let mut sent = document.clone();
                if let Some(fields) = sent.as_object_mut() {
                    fields.remove("status");
                }
                if kept(&sent, &stored) {
                    Verdict::Accepted
                } else {
                    Verdict::Pruned
                }
            }
        };
        let found = categories.get(&number).cloned().unwrap_or_default();
        let check = if found.is_empty() {
            Verdict::Accepted
        } else if found.iter().all(|c| c == "unknown-field") {
            Verdict::Pruned
        } else {
            Verdict::Rejected
        };
        if server != check {
            disagreements.push(format!(
                "document {number} ({kind} {name}): server {server:?}, check {check:?} {found:?}"
            ));
        }
        assert_eq!(
            server != Verdict::Accepted,
            *expected_bad,
            "document {number} ({kind} {name}) is not the case it was written as: server {server:?}"
        );
    }
    ns.delete().await;
    assert!(
        disagreements.is_empty(),
        "check and the API server disagree:\n{}",
        disagreements.join("\n")
    );
}

#[test]
fn the_shipped_examples_pass_check_through_the_binary() {
    let examples = support::repo_root().join("examples");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_alertcall"))
        .args(["check", "-f", &examples.display().to_string()])
        .output()
        .unwrap_or_else(|e| panic!("cannot run alertcall check: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains(
        "4 CallPolicy, 3 AlertRoute, 1 AlertCall, 1 OnCallSchedule checked: no problems"
    ));
}

#[test]
fn a_misspelled_field_fails_check_with_file_document_and_path() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let file = dir.path().join("policy.yaml");
    let mut document = policy("typo", |d| {
        d["spec"]["strategy"] = json!({"ringTimeout": 20})
    });
    document["metadata"]["namespace"] = json!("team-a");
    let text = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: other}}\n---\n{}",
        serde_yaml::to_string(&document).unwrap_or_default()
    );
    std::fs::write(&file, text).unwrap_or_else(|e| panic!("{e}"));
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_alertcall"))
        .args(["check", "-f", &file.display().to_string()])
        .output()
        .unwrap_or_else(|e| panic!("cannot run alertcall check: {e}"));
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    let expected = format!(
        "error: {} (document 2): CallPolicy team-a/typo spec.strategy.ringTimeout: unknown field \"ringTimeout\"",
        file.display()
    );
    assert!(stderr.contains(&expected), "{stderr}");
    assert!(
        stderr.contains("did you mean ringTimeoutSeconds?"),
        "{stderr}"
    );
}
