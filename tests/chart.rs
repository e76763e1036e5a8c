//! The Helm chart, rendered and linted by real Helm: least-privilege RBAC, the restricted Pod
//! Security profile, leader election with two replicas, values validated by the schema, and
//! `deploy/` kept as the chart's default rendering.

mod support;

use serde_json::{json, Value};

const CHART: &str = "charts/alertcall";

fn render(values: Value) -> Vec<Value> {
    let values = values.to_string();
    match support::helm(&[
        "render",
        CHART,
        "--values",
        &values,
        "--name",
        "alertcall",
        "--namespace",
        "alertcall-system",
    ]) {
        Ok(text) => support::yaml_documents(&text),
        Err(error) => panic!("helm render failed: {error}"),
    }
}

fn find<'a>(documents: &'a [Value], kind: &str) -> Vec<&'a Value> {
    documents.iter().filter(|d| d["kind"] == kind).collect()
}

fn one<'a>(documents: &'a [Value], kind: &str) -> &'a Value {
    let found = find(documents, kind);
    assert_eq!(found.len(), 1, "expected one {kind}, found {}", found.len());
    found[0]
}

#[test]
fn lint_passes_and_the_schema_rejects_bad_values() {
    assert_eq!(support::helm(&["lint", CHART]).map(|_| ()), Ok(()));
    let error = support::helm(&["lint", CHART, "--values", r#"{"replicaCount": 3}"#])
        .err()
        .unwrap_or_default();
    assert!(error.contains("replicaCount"), "{error}");
    let error = support::helm(&[
        "lint",
        CHART,
        "--values",
        r#"{"publicUrl": "twilio.example.com"}"#,
    ])
    .err()
    .unwrap_or_default();
    assert!(error.contains("publicUrl"), "{error}");
    let error = support::helm(&[
        "render",
        CHART,
        "--values",
        r#"{"ingress": {"enabled": true}}"#,
    ])
    .err()
    .unwrap_or_default();
    assert!(error.contains("ingress.host is required"), "{error}");
}

#[test]
fn pods_meet_the_restricted_profile() {
    let documents = render(json!({}));
    let pod = &one(&documents, "Deployment")["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    let container = &pod["containers"][0];
    let security = &container["securityContext"];
    assert_eq!(security["allowPrivilegeEscalation"], false);
    assert_eq!(security["readOnlyRootFilesystem"], true);
    assert_eq!(security["capabilities"]["drop"], json!(["ALL"]));
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
}

#[test]
fn rbac_grants_only_named_resources_and_verbs() {
    let documents = render(json!({}));
    let role = one(&documents, "ClusterRole");
    let rules = role["rules"].as_array().cloned().unwrap_or_default();
    assert!(!rules.is_empty());
    for rule in &rules {
        for field in ["apiGroups", "resources", "verbs"] {
            let items = rule[field].as_array().cloned().unwrap_or_default();
            assert!(!items.is_empty(), "rule without {field}: {rule}");
            assert!(!items.contains(&json!("*")), "wildcard {field} in {rule}");
        }
        let verbs = rule["verbs"].as_array().cloned().unwrap_or_default();
        assert!(
            !verbs.contains(&json!("delete")),
            "the operator deletes nothing: {rule}"
        );
    }
    let grants = |resource: &str| -> Vec<String> {
        rules
            .iter()
            .filter(|r| {
                r["resources"]
                    .as_array()
                    .is_some_and(|rs| rs.contains(&json!(resource)))
            })
            .flat_map(|r| r["verbs"].as_array().cloned().unwrap_or_default())
            .filter_map(|v| v.as_str().map(String::from))
            .collect()
    };
    assert_eq!(
        grants("secrets"),
        vec!["get"],
        "Secrets are read by name only"
    );
    // The event recorder creates and patches event series.
    let recorder = rules
        .iter()
        .find(|r| r["apiGroups"] == json!(["events.k8s.io"]));
    assert_eq!(
        recorder.map(|r| r["verbs"].clone()),
        Some(json!(["create", "patch"]))
    );
    assert!(grants("alertcalls").contains(&"create".to_string()));
    // One replica needs no Lease.
    assert!(find(&documents, "Role").is_empty());
}

#[test]
fn two_replicas_elect_a_leader() {
    let documents = render(json!({"replicaCount": 2}));
    let args =
        one(&documents, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"].clone();
    assert!(
        args.as_array()
            .is_some_and(|a| a.contains(&json!("--leader-election"))),
        "{args}"
    );
    let role = one(&documents, "Role");
    assert_eq!(role["rules"][0]["resources"], json!(["leases"]));
    assert_eq!(
        one(&documents, "RoleBinding")["roleRef"]["name"],
        role["metadata"]["name"]
    );
}

/// A rolling update runs the old and the new pod side by side; only a Lease keeps them from
/// both dialing, so without one the old pod stops first.
#[test]
fn no_two_pods_dial_at_once_during_an_upgrade() {
    let single = render(json!({}));
    let deployment = one(&single, "Deployment");
    assert_eq!(deployment["spec"]["strategy"]["type"], "Recreate");
    assert_eq!(
        deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"],
        30
    );
    for values in [
        json!({"replicaCount": 2}),
        json!({"leaderElection": {"enabled": true}}),
    ] {
        let documents = render(values.clone());
        let deployment = one(&documents, "Deployment");
        assert!(deployment["spec"]["strategy"].is_null(), "{values}");
    }
    let documents = render(json!({"terminationGracePeriodSeconds": 45}));
    assert_eq!(
        one(&documents, "Deployment")["spec"]["template"]["spec"]["terminationGracePeriodSeconds"],
        45
    );
}

#[test]
fn optional_parts_render_when_enabled() {
    let documents = render(json!({
        "ingress": {"enabled": true, "host": "pager.example.com"},
        "serviceMonitor": {"enabled": true},
        "publicUrl": "https://pager.example.com",
        "watchNamespace": "prod",
    }));
    let ingress = one(&documents, "Ingress");
    let paths: Vec<Value> = ingress["spec"]["rules"][0]["http"]["paths"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|p| p["path"].clone())
        .collect();
    assert!(
        !paths.contains(&json!("/metrics")),
        "metrics must not be public: {paths:?}"
    );
    assert!(paths.contains(&json!("/twilio/")) && paths.contains(&json!("/alertmanager/")));
    assert_eq!(
        one(&documents, "ServiceMonitor")["spec"]["endpoints"][0]["path"],
        "/metrics"
    );
    let args =
        one(&documents, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"].clone();
    for expected in ["--public-url=https://pager.example.com", "--namespace=prod"] {
        assert!(
            args.as_array()
                .is_some_and(|a| a.contains(&json!(expected))),
            "{expected} missing: {args}"
        );
    }
    assert_eq!(find(&documents, "NetworkPolicy").len(), 1);
}

#[test]
fn deploy_manifests_are_the_default_rendering() {
    let rendered = support::helm(&[
        "render",
        CHART,
        "--name",
        "alertcall",
        "--namespace",
        "alertcall-system",
    ])
    .unwrap_or_else(|e| panic!("helm render: {e}"));
    let header = "# Generated by `UPDATE_DEPLOY=1 cargo test --test chart` from charts/alertcall with default values.\n";
    let expected = format!("{header}{rendered}");
    let path = support::repo_root().join("deploy/base/alertcall.yaml");
    if std::env::var_os("UPDATE_DEPLOY").is_some() {
        std::fs::write(&path, &expected).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
    let actual = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        actual == expected,
        "{} differs from the chart; run `UPDATE_DEPLOY=1 cargo test --test chart`",
        path.display()
    );
}
