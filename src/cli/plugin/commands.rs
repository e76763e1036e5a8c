//! `ack`, `page` and `test`: each one write to the API server, checked first so a mistake is a
//! clear message rather than an AlertCall that fails later.

use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};

use crate::api::{AlertCall, AlertCallSpec, CallPolicy, LocalRef, OnResolved, SourceSpec};
use crate::page::documents;

const FIELD_MANAGER: &str = "kubectl-alertcall";

pub(super) async fn policy(
    client: &Client,
    namespace: &str,
    name: &str,
) -> Result<CallPolicy, String> {
    let api: Api<CallPolicy> = Api::namespaced(client.clone(), namespace);
    match api.get_opt(name).await {
        Ok(Some(policy)) => Ok(policy),
        Ok(None) => Err(format!(
            "CallPolicy {name:?} not found in namespace {namespace}"
        )),
        Err(error) => Err(format!(
            "reading CallPolicy {name:?} in {namespace}: {error}"
        )),
    }
}

/// Sets `spec.acknowledged` of a page that is still going.
pub(super) async fn ack(client: &Client, namespace: &str, name: &str) -> Result<String, String> {
    let api: Api<AlertCall> = Api::namespaced(client.clone(), namespace);
    let call = match api.get_opt(name).await {
        Ok(Some(call)) => call,
        Ok(None) => {
            return Err(format!(
                "AlertCall {name:?} not found in namespace {namespace}"
            ))
        }
        Err(error) => {
            return Err(format!(
                "reading AlertCall {name:?} in {namespace}: {error}"
            ))
        }
    };
    let phase = call.status.as_ref().map(|s| s.phase).unwrap_or_default();
    if phase.is_terminal() {
        return Err(format!(
            "AlertCall {name:?} already finished (phase {phase:?}); nothing to acknowledge"
        ));
    }
    if call.spec.acknowledged {
        return Ok(format!(
            "alertcall.alertcall.dev/{name} already acknowledged\n"
        ));
    }
    let patch = serde_json::json!({"spec": {"acknowledged": true}});
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..PatchParams::default()
    };
    api.patch(name, &params, &Patch::Merge(&patch))
        .await
        .map_err(|error| format!("acknowledging AlertCall {name:?}: {error}"))?;
    Ok(format!("alertcall.alertcall.dev/{name} acknowledged\n"))
}

fn new_call(policy: &str, prefix: &str, spec: AlertCallSpec) -> AlertCall {
    let mut call = AlertCall::new("", spec);
    call.metadata.name = None;
    call.metadata.generate_name = Some(format!("{policy}-{prefix}"));
    call
}

fn spec(policy: &str, summary: String) -> AlertCallSpec {
    AlertCallSpec {
        policy_ref: LocalRef {
            name: policy.to_string(),
        },
        route_ref: None,
        group_key: String::new(),
        summary,
        source: SourceSpec::default(),
        acknowledged: false,
        not_before: None,
        on_resolved: OnResolved::Continue,
        test: false,
        test_recipients: Vec::new(),
    }
}

async fn create(client: &Client, namespace: &str, call: AlertCall) -> Result<String, String> {
    let api: Api<AlertCall> = Api::namespaced(client.clone(), namespace);
    let params = PostParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..PostParams::default()
    };
    let created = api
        .create(&params, &call)
        .await
        .map_err(|error| format!("creating the AlertCall: {error}"))?;
    Ok(format!("{}\n", created.name_any()))
}

/// Creates a page of `policy` that calls at once.
pub(super) async fn page(
    client: &Client,
    namespace: &str,
    policy_name: &str,
    message: &str,
) -> Result<String, String> {
    policy(client, namespace, policy_name).await?;
    if message.trim().is_empty() {
        return Err("--message must say something: it is what the call speaks".into());
    }
    let call = new_call(policy_name, "", spec(policy_name, message.to_string()));
    create(client, namespace, call).await
}

/// Creates a test call of `policy`, to `recipient` or everyone.
pub(super) async fn test(
    client: &Client,
    namespace: &str,
    policy_name: &str,
    recipient: Option<&str>,
) -> Result<String, String> {
    let policy = policy(client, namespace, policy_name).await?;
    if let Some(name) = recipient {
        if !policy.spec.recipients.iter().any(|r| r.name == name) {
            let known: Vec<&str> = policy
                .spec
                .recipients
                .iter()
                .map(|r| r.name.as_str())
                .collect();
            return Err(format!(
                "CallPolicy {policy_name:?} has no recipient {name:?} (it has: {})",
                known.join(", ")
            ));
        }
    }
    let mut spec = spec(
        policy_name,
        documents::test_message(&policy.spec, policy_name),
    );
    spec.test = true;
    spec.test_recipients = recipient.map(str::to_string).into_iter().collect();
    create(client, namespace, new_call(policy_name, "test-", spec)).await
}
