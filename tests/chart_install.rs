//! The chart installed by real Helm into the real control plane, and the operator running with
//! the chart's ServiceAccount token: its RBAC is sufficient for the operator's work and denies
//! what the operator never needs.

mod support;

use std::time::Duration;

use alertcall::api::{AlertCall, CallPolicy, Phase};
use alertcall::twilio::sim::{Outcome, Recipient as SimRecipient, Script, SimConfig, Simulator};
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use kube::api::{Api, ListParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use serde_json::json;

/// A client that authenticates as the ServiceAccount, with the token the controller-manager
/// minted for it.
pub async fn service_account_client(admin: &Client, namespace: &str, name: &str) -> Client {
    let accounts: Api<ServiceAccount> = Api::namespaced(admin.clone(), namespace);
    let secrets: Api<Secret> = Api::namespaced(admin.clone(), namespace);
    let mut token = None;
    for _ in 0..100 {
        let account = accounts
            .get_opt(name)
            .await
            .unwrap_or_else(|e| panic!("reading ServiceAccount: {e}"));
        let secret_names: Vec<String> = account
            .and_then(|a| a.secrets)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|r| r.name)
            .collect();
        for secret_name in secret_names {
            if let Ok(Some(secret)) = secrets.get_opt(&secret_name).await {
                token = secret.data.and_then(|d| {
                    d.get("token")
                        .map(|t| String::from_utf8_lossy(&t.0).to_string())
                });
            }
        }
        if token.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let Some(token) = token else {
        panic!("no token was minted for ServiceAccount {namespace}/{name}");
    };
    let kubeconfig =
        Kubeconfig::read_from(support::kubeconfig()).unwrap_or_else(|e| panic!("kubeconfig: {e}"));
    let mut config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap_or_else(|e| panic!("kubeconfig: {e}"));
    config.auth_info = kube::config::AuthInfo {
        token: Some(token.into()),
        ..Default::default()
    };
    Client::try_from(config).unwrap_or_else(|e| panic!("service account client: {e}"))
}

const ACCOUNT: &str = "AC00000000000000000000000000000c4a";
const TOKEN: &str = "chart-test-token";
const FROM: &str = "+15005550006";

async fn create<K>(client: &Client, namespace: &str, object: serde_json::Value)
where
    K: kube::Resource<Scope = kube::core::NamespaceResourceScope>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + serde::Serialize,
    K::DynamicType: Default,
{
    let object: K = serde_json::from_value(object).unwrap_or_else(|e| panic!("object: {e}"));
    Api::<K>::namespaced(client.clone(), namespace)
        .create(&PostParams::default(), &object)
        .await
        .unwrap_or_else(|e| panic!("creating {object:?}: {e}"));
}

async fn apply_app_objects(admin: &Client, namespace: &str) {
    create::<Secret>(
        admin,
        namespace,
        json!({
            "metadata": {"name": "twilio"},
            "stringData": {"accountSid": ACCOUNT, "authToken": TOKEN},
        }),
    )
    .await;
    create::<CallPolicy>(
        admin,
        namespace,
        json!({
            "apiVersion": "alertcall.dev/v1alpha1", "kind": "CallPolicy",
            "metadata": {"name": "oncall"},
            "spec": {
                "twilio": {"credentialsSecretRef": {"name": "twilio"}, "from": FROM},
                "recipients": [{"name": "alice", "phone": "+15005550101"}],
                "strategy": {"ringTimeoutSeconds": 20, "rounds": 1},
            },
        }),
    )
    .await;
    create::<alertcall::api::AlertRoute>(admin, namespace, json!({
        "apiVersion": "alertcall.dev/v1alpha1", "kind": "AlertRoute",
        "metadata": {"name": "pods"},
        "spec": {
            "policyRef": {"name": "oncall"},
            "kubernetesEvents": {"types": ["Warning"], "reasons": ["ChartTestBackOff"], "involvedKinds": ["Pod"]},
        },
    }))
    .await;
}

async fn create_event(admin: &Client, namespace: &str) {
    let now = jiff::Timestamp::now().to_string();
    create::<k8s_openapi::api::core::v1::Event>(admin, namespace, json!({
        "metadata": {"name": "api-backoff"},
        "type": "Warning",
        "reason": "ChartTestBackOff",
        "message": "Back-off restarting failed container",
        "involvedObject": {"kind": "Pod", "name": "api-0", "namespace": namespace, "apiVersion": "v1"},
        "firstTimestamp": now, "lastTimestamp": now, "count": 1,
    }))
    .await;
}

#[tokio::test]
async fn chart_installs_and_its_service_account_runs_the_operator() {
    let admin = support::client().await;
    let release_ns = support::TestNamespace::new(&admin, "chart").await;
    let kubeconfig = support::kubeconfig();
    let values = serde_json::json!({"replicaCount": 2, "instanceName": "chart-test"}).to_string();
    support::helm(&[
        "install",
        "charts/alertcall",
        "--kubeconfig",
        &kubeconfig.display().to_string(),
        "--name",
        "alertcall",
        "--namespace",
        &release_ns.name,
        "--values",
        &values,
    ])
    .unwrap_or_else(|e| panic!("helm install: {e}"));

    let client = service_account_client(&admin, &release_ns.name, "alertcall").await;
    // Denied: the operator never lists Secrets or touches workloads.
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &release_ns.name);
    match secrets.list(&ListParams::default()).await {
        Err(kube::Error::Api(status)) => assert_eq!(status.code, 403, "{status:?}"),
        other => panic!("listing Secrets must be forbidden, got {other:?}"),
    }
    let deployments: Api<k8s_openapi::api::apps::v1::Deployment> =
        Api::namespaced(client.clone(), &release_ns.name);
    assert!(deployments
        .delete("alertcall", &Default::default())
        .await
        .is_err());

    // Sufficient: with only the chart's RBAC, the operator elects itself, publishes a policy's
    // TwiML, turns a labeled Event into a page, calls through the simulator until the recipient
    // presses 1, and records all of it.
    let app =
        support::TestNamespace::with_labels(&admin, "chart-app", &[("alerting", "enabled")]).await;
    let sim = Simulator::start(SimConfig {
        time_scale: 20.0,
        script: Script {
            default: SimRecipient {
                outcome: Outcome::Answer,
                answer_after: 2.0,
                press: Some("1".into()),
                hangup_after: None,
                hangup_after_press: None,
            },
            ..Script::default()
        },
        ..SimConfig::new(ACCOUNT, TOKEN)
    })
    .await
    .unwrap_or_else(|e| panic!("simulator: {e}"));
    sim.add_number(FROM);
    apply_app_objects(&admin, &app.name).await;
    let sim_url = url::Url::parse(&sim.api_url()).ok();
    let config = alertcall::operator::Config {
        namespace: Some(app.name.clone()),
        leader_election: Some(alertcall::leader::LeaseConfig {
            namespace: release_ns.name.clone(),
            name: "alertcall-leader".into(),
            identity: "chart-test".into(),
            duration: Duration::from_secs(15),
            renew: Duration::from_secs(10),
        }),
        twilio: alertcall::twilio::TwilioEndpoints {
            api_url: sim_url.clone(),
            serverless_url: sim_url,
            ..Default::default()
        },
        call_policies: true,
        poll_interval: Duration::from_millis(500),
        ..alertcall::operator::Config::local("chart-test")
    };
    let running = alertcall::operator::start(client, config)
        .await
        .unwrap_or_else(|e| panic!("operator with the chart's ServiceAccount: {e}"));
    let leader = running.context.leader.clone();
    tokio::time::timeout(Duration::from_secs(20), leader.until_leader())
        .await
        .unwrap_or_else(|_| panic!("never became leader with the chart's RBAC"));
    let ready = format!("http://{}/readyz", running.addr);
    support::eventually("the operator to be ready with the chart's RBAC", || async {
        let status = reqwest::get(&ready).await.map(|r| r.status().as_u16()).ok();
        (status == Some(200)).then_some(())
    })
    .await;

    let policies: Api<CallPolicy> = Api::namespaced(admin.clone(), &app.name);
    support::eventually(
        "the CallPolicy to be Ready with the chart's RBAC",
        || async {
            let policy = policies.get("oncall").await.ok()?;
            let conditions = policy.status.map(|s| s.conditions).unwrap_or_default();
            alertcall::api::conditions::is_true(&conditions, "Ready").then_some(())
        },
    )
    .await;

    create_event(&admin, &app.name).await;
    let calls: Api<AlertCall> = Api::namespaced(admin.clone(), &app.name);
    let page = support::eventually("a page acknowledged with the chart's RBAC", || async {
        let list = calls.list(&ListParams::default()).await.ok()?;
        list.items.into_iter().find(|c| {
            c.status
                .as_ref()
                .is_some_and(|s| s.phase == Phase::Acknowledged)
        })
    })
    .await;
    let status = page.status.unwrap_or_default();
    assert_eq!(status.acknowledged_by.as_deref(), Some("alice"));
    assert_eq!(status.attempt_count, 1);
    // The finalizer that held the page while it called is removed with the chart's RBAC too.
    let page_name = page.metadata.name.clone().unwrap_or_default();
    support::eventually("the finished page to drop its finalizer", || async {
        let call = calls.get(&page_name).await.ok()?;
        let held = call
            .metadata
            .finalizers
            .iter()
            .flatten()
            .any(|f| f == alertcall::controllers::alert_call::FINALIZER);
        (!held).then_some(())
    })
    .await;
    // The recorder's Events reached the API server.
    let events: Api<k8s_openapi::api::events::v1::Event> =
        Api::namespaced(admin.clone(), &app.name);
    let recorded = events
        .list(&ListParams::default())
        .await
        .unwrap_or_else(|e| panic!("events: {e}"));
    assert!(
        recorded
            .items
            .iter()
            .any(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref())
                == Some(page.metadata.name.as_deref().unwrap_or_default())),
        "no Event recorded on the page"
    );
    // The policy's finalizer undoes its Twilio configuration, so it goes while the operator and
    // the simulator still run; otherwise the namespace would hang in Terminating.
    let policies: Api<CallPolicy> = Api::namespaced(admin.clone(), &app.name);
    let _ = policies.delete("oncall", &Default::default()).await;
    support::eventually("the CallPolicy's cleanup", || async {
        matches!(policies.get_opt("oncall").await, Ok(None)).then_some(())
    })
    .await;
    app.delete().await;
    running.shutdown().await;
    sim.shutdown().await;
    let _ = support::helm(&[
        "uninstall",
        "--kubeconfig",
        &kubeconfig.display().to_string(),
        "--name",
        "alertcall",
        "--namespace",
        &release_ns.name,
    ]);
    release_ns.delete().await;
}
