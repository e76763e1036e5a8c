//! The chart installed by real Helm into the real control plane, and the operator running with
//! the chart's ServiceAccount token: its RBAC is sufficient for the operator's work and denies
//! what the operator never needs.

mod support;

use std::time::Duration;

use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use kube::api::{Api, ListParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

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

    // Sufficient: the operator starts with leader election on the chart's Lease Role and
    // becomes ready.
    let config = alertcall::controller::Config {
        leader_election: Some(alertcall::leader::LeaseConfig {
            namespace: release_ns.name.clone(),
            name: "alertcall-leader".into(),
            identity: "chart-test".into(),
            duration: Duration::from_secs(15),
        }),
        ..alertcall::controller::Config::local("chart-test")
    };
    let running = alertcall::controller::start(client, config)
        .await
        .unwrap_or_else(|e| panic!("operator with the chart's ServiceAccount: {e}"));
    let leader = running.context.leader.clone();
    tokio::time::timeout(Duration::from_secs(20), leader.until_leader())
        .await
        .unwrap_or_else(|_| panic!("never became leader with the chart's RBAC"));
    let ready = format!("http://{}/readyz", running.addr);
    let mut status = 0;
    for _ in 0..100 {
        status = reqwest::get(&ready)
            .await
            .map(|r| r.status().as_u16())
            .unwrap_or(0);
        if status == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status, 200, "operator not ready with the chart's RBAC");
    running.shutdown().await;
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
