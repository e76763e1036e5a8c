//! The resource schemas on a real kube-apiserver 1.20: the CRDs are accepted and Established,
//! every example is accepted, and bad input is rejected at apply time with a message that names
//! the field. (kube-apiserver 1.20 names array items without their index: `spec.recipients.phone`.)

mod support;

use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::discovery::pinned_kind;
use kube::Client;
use serde_json::{json, Value};

async fn api_for(
    client: &Client,
    namespace: &str,
    object: &Value,
) -> (Api<DynamicObject>, ApiResource) {
    let api_version = object["apiVersion"].as_str().unwrap_or_default();
    let kind = object["kind"].as_str().unwrap_or_default();
    let (group, version) = match api_version.split_once('/') {
        Some((group, version)) => (group, version),
        None => ("", api_version),
    };
    let gvk = GroupVersionKind::gvk(group, version, kind);
    let (resource, _) = pinned_kind(client, &gvk)
        .await
        .unwrap_or_else(|e| panic!("discovering {api_version} {kind}: {e}"));
    (
        Api::namespaced_with(client.clone(), namespace, &resource),
        resource,
    )
}

fn example_documents() -> Vec<(String, Value)> {
    let dir = support::repo_root().join("examples");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    let mut documents = Vec::new();
    for file in files {
        let text =
            std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        for document in serde_yaml::Deserializer::from_str(&text) {
            let value: Value = serde::Deserialize::deserialize(document)
                .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            // kustomization.yaml is kustomize's input, not an object of the cluster.
            if !value.is_null() && value["kind"] != "Kustomization" {
                documents.push((file.display().to_string(), value));
            }
        }
    }
    documents
}

#[tokio::test]
async fn every_example_is_accepted() {
    let client = support::client().await;
    let ns = support::TestNamespace::new(&client, "examples").await;
    let documents = example_documents();
    assert!(
        documents.len() >= 7,
        "expected the shipped examples, found {}",
        documents.len()
    );
    for (file, mut document) in documents {
        document["metadata"]["namespace"] = json!(ns.name);
        let name = document["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let (api, _) = api_for(&client, &ns.name, &document).await;
        let object: DynamicObject = serde_json::from_value(document)
            .unwrap_or_else(|e| panic!("{file}: not an object: {e}"));
        if let Err(error) = api
            .patch(
                &name,
                &PatchParams::apply(support::FIELD_MANAGER),
                &Patch::Apply(&object),
            )
            .await
        {
            panic!("{file}: {name} rejected: {error}");
        }
    }
    // What was stored is what the Rust types read back, defaults included.
    let policies: Api<alertcall::api::CallPolicy> = Api::namespaced(client.clone(), &ns.name);
    let policy = policies
        .get("sre-oncall")
        .await
        .unwrap_or_else(|e| panic!("reading back sre-oncall: {e}"));
    assert_eq!(policy.spec.recipients.len(), 3);
    assert_eq!(policy.spec.acknowledgement.gather_timeout_seconds, 8);
    let defaulted = policies
        .get("db-owners")
        .await
        .unwrap_or_else(|e| panic!("reading back db-owners: {e}"));
    assert_eq!(
        defaulted.spec.acknowledgement.digits, "1",
        "schema default applied"
    );
    ns.delete().await;
}

fn policy(spec_patch: impl FnOnce(&mut Value)) -> Value {
    let mut policy = json!({
        "apiVersion": "alertcall.dev/v1alpha1",
        "kind": "CallPolicy",
        "metadata": {"name": "bad"},
        "spec": {
            "twilio": {"credentialsSecretRef": {"name": "twilio"}, "from": "+15017122661"},
            "recipients": [{"name": "alice", "phone": "+14155550101"}],
        }
    });
    spec_patch(&mut policy["spec"]);
    policy
}

fn route(spec: Value) -> Value {
    json!({
        "apiVersion": "alertcall.dev/v1alpha1",
        "kind": "AlertRoute",
        "metadata": {"name": "bad"},
        "spec": spec,
    })
}

fn alert_call(spec: Value) -> Value {
    json!({
        "apiVersion": "alertcall.dev/v1alpha1",
        "kind": "AlertCall",
        "metadata": {"name": "bad"},
        "spec": spec,
    })
}

#[tokio::test]
async fn invalid_resources_are_rejected_naming_the_field() {
    let client = support::client().await;
    let ns = support::TestNamespace::new(&client, "invalid").await;
    let many: Vec<Value> = (0..51)
        .map(|i| json!({"name": format!("r{i}"), "phone": format!("+1415555{i:04}")}))
        .collect();
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "phone number without +",
            policy(|s| s["recipients"][0]["phone"] = json!("819012345678")),
            "spec.recipients.phone",
        ),
        (
            "phone number of 16 digits",
            policy(|s| s["recipients"][0]["phone"] = json!("+8190123456789012")),
            "spec.recipients.phone",
        ),
        (
            "two address kinds",
            policy(|s| s["recipients"][0]["client"] = json!("alice")),
            "\"spec.recipients\" must validate one and only one schema",
        ),
        (
            "no address",
            policy(|s| s["recipients"][0] = json!({"name": "alice"})),
            "\"spec.recipients\" must validate one and only one schema",
        ),
        (
            "bad SIP URI",
            policy(|s| s["recipients"][0] = json!({"name": "a", "sip": "alice@example.com"})),
            "spec.recipients.sip",
        ),
        (
            "no recipients",
            policy(|s| s["recipients"] = json!([])),
            "spec.recipients",
        ),
        (
            "51 recipients",
            policy(|s| s["recipients"] = json!(many)),
            "spec.recipients",
        ),
        (
            "recipient without name",
            policy(|s| s["recipients"][0] = json!({"phone": "+14155550101"})),
            "spec.recipients.name",
        ),
        (
            "bad caller ID",
            policy(|s| s["twilio"]["from"] = json!("+0123")),
            "spec.twilio.from",
        ),
        (
            "bad bridge number",
            policy(|s| s["twilio"]["bridgeNumber"] = json!("12345")),
            "spec.twilio.bridgeNumber",
        ),
        (
            "missing credentials",
            policy(|s| s["twilio"] = json!({"from": "+15017122661"})),
            "spec.twilio.credentialsSecretRef",
        ),
        (
            "unknown mode",
            policy(|s| s["strategy"] = json!({"mode": "Random"})),
            "spec.strategy.mode",
        ),
        (
            "unknown completion",
            policy(|s| s["strategy"] = json!({"completion": "Whenever"})),
            "spec.strategy.completion",
        ),
        (
            "unknown order",
            policy(|s| s["strategy"] = json!({"order": "Random"})),
            "spec.strategy.order",
        ),
        (
            "ring timeout over Twilio's 600",
            policy(|s| s["strategy"] = json!({"ringTimeoutSeconds": 601})),
            "spec.strategy.ringTimeoutSeconds",
        ),
        (
            "zero rounds",
            policy(|s| s["strategy"] = json!({"rounds": 0})),
            "spec.strategy.rounds",
        ),
        (
            "two ack digits",
            policy(|s| s["acknowledgement"] = json!({"digits": "12"})),
            "spec.acknowledgement.digits",
        ),
        (
            "template too long",
            policy(|s| s["message"] = json!({"template": "x".repeat(1001)})),
            "spec.message.template",
        ),
        (
            "repeat 9 times",
            policy(|s| s["message"] = json!({"repeat": 9})),
            "spec.message.repeat",
        ),
        (
            "hold music not a URL",
            policy(|s| s["conference"] = json!({"holdMusicUrl": "music.mp3"})),
            "spec.conference.holdMusicUrl",
        ),
        (
            "zero calls per second",
            policy(|s| s["limits"] = json!({"callsPerSecond": 0})),
            "spec.limits.callsPerSecond",
        ),
        (
            "route without policyRef",
            route(json!({"kubernetesEvents": {"types": ["Warning"]}})),
            "spec.policyRef",
        ),
        (
            "route with unknown event type",
            route(json!({"policyRef": {"name": "p"}, "kubernetesEvents": {"types": ["Error"]}})),
            "spec.kubernetesEvents.types",
        ),
        (
            "route with minCount 0",
            route(json!({"policyRef": {"name": "p"}, "kubernetesEvents": {"minCount": 0}})),
            "spec.kubernetesEvents.minCount",
        ),
        (
            "route without token secret",
            route(json!({"policyRef": {"name": "p"}, "alertmanager": {"matchers": []}})),
            "spec.alertmanager.bearerTokenSecretRef",
        ),
        (
            "alert call without summary",
            alert_call(json!({"policyRef": {"name": "p"}})),
            "spec.summary",
        ),
        (
            "alert call with unknown source",
            alert_call(
                json!({"policyRef": {"name": "p"}, "summary": "x", "source": {"kind": "Pager"}}),
            ),
            "spec.source.kind",
        ),
    ];
    let mut failures = Vec::new();
    for (what, object, field) in cases {
        let (api, _) = api_for(&client, &ns.name, &object).await;
        let object: DynamicObject =
            serde_json::from_value(object).unwrap_or_else(|e| panic!("{what}: {e}"));
        match api.create(&PostParams::default(), &object).await {
            Ok(_) => failures.push(format!("{what}: accepted")),
            Err(kube::Error::Api(status)) => {
                if status.code != 422 || !status.message.contains(field) {
                    failures.push(format!(
                        "{what}: expected 422 naming {field}, got {} {}",
                        status.code, status.message
                    ));
                }
            }
            Err(error) => failures.push(format!("{what}: unexpected error {error}")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    ns.delete().await;
}

#[tokio::test]
async fn kubectl_apply_and_get_show_the_printer_columns() {
    let kubeconfig = support::kubeconfig();
    let client = support::client().await;
    let ns = support::TestNamespace::new(&client, "kubectl").await;
    let root = support::repo_root();
    let kubectl = |args: &[&str]| {
        let output = std::process::Command::new("kubectl")
            .env("KUBECONFIG", &kubeconfig)
            .args(args)
            .output()
            .unwrap_or_else(|e| {
                panic!("cannot run kubectl (installed by scripts/control-plane.sh): {e}")
            });
        assert!(
            output.status.success(),
            "kubectl {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).to_string()
    };
    // The examples name no namespace, so the test's own is given on the command line, as a
    // team would give theirs: the kustomization (policies, routes, the Secret from twilio.env),
    // then the manual page it leaves out because applying it pages people.
    let examples = root.join("examples");
    kubectl(&["apply", "-f", &root.join("crds").display().to_string()]);
    let applied = kubectl(&[
        "apply",
        "-n",
        &ns.name,
        "-k",
        &examples.display().to_string(),
    ]);
    for object in [
        "secret/twilio",
        "secret/alertmanager-token",
        "callpolicy.alertcall.dev/sre-oncall",
        "alertroute.alertcall.dev/critical-alerts",
        "alertroute.alertcall.dev/watchdog",
        "oncallschedule.alertcall.dev/sre-primary",
    ] {
        assert!(applied.contains(object), "{object} not applied:\n{applied}");
    }
    kubectl(&[
        "apply",
        "-n",
        &ns.name,
        "-f",
        &examples.join("alertcall-manual.yaml").display().to_string(),
    ]);
    let secret = kubectl(&[
        "get",
        "secret",
        "twilio",
        "-n",
        &ns.name,
        "-o",
        "jsonpath={.data.accountSid}",
    ]);
    assert!(
        !secret.trim().is_empty(),
        "the Secret from twilio.env has no accountSid"
    );
    let table = kubectl(&["get", "cp,ar,ac,ocs", "-n", &ns.name]);
    for column in [
        "MODE",
        "FROM",
        "READY",
        "POLICY",
        "MATCHED",
        "LAST-CALL",
        "PHASE",
        "ACKED-BY",
        "ATTEMPTS",
        "ON-CALL",
        "UNTIL",
        "NEXT",
        "AGE",
    ] {
        assert!(
            table.contains(column),
            "column {column} missing from:\n{table}"
        );
    }
    for name in [
        "sre-oncall",
        "db-owners",
        "critical-workloads",
        "critical-alerts",
        "manual-page-example",
        "sre-primary",
    ] {
        assert!(table.contains(name), "{name} missing from:\n{table}");
    }
    assert!(
        table.contains("Sequential") && table.contains("Simultaneous"),
        "{table}"
    );
    ns.delete().await;
}
