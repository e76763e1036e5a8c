//! The operator process on a real control plane: HTTP endpoints and leader election.

mod support;

use std::time::Duration;

use alertcall::leader::LeaseConfig;
use alertcall::operator::{self, Config};

#[tokio::test]
async fn health_readiness_and_metrics_are_served() {
    let client = support::client().await;
    let ns = support::TestNamespace::new(&client, "http").await;
    // NB: scoped to its own namespace: the API server is shared, and an operator watching all
    // namespaces would page other tests' AlertCalls.
    let config = Config {
        namespace: Some(ns.name.clone()),
        ..Config::local("http-test")
    };
    let running = operator::start(client, config)
        .await
        .unwrap_or_else(|e| panic!("start: {e}"));
    let base = format!("http://{}", running.addr);
    let http = reqwest::Client::new();
    let get = |path: &'static str| {
        let http = http.clone();
        let url = format!("{base}{path}");
        async move {
            let response = http
                .get(url)
                .send()
                .await
                .unwrap_or_else(|e| panic!("{path}: {e}"));
            (
                response.status().as_u16(),
                response.text().await.unwrap_or_default(),
            )
        }
    };
    assert_eq!(get("/healthz").await.0, 200);
    // Ready once the controllers' caches are synced.
    if support::wait_for("/readyz to answer 200", support::WAIT, || async {
        (get("/readyz").await.0 == 200).then_some(())
    })
    .await
    .is_err()
    {
        panic!("never ready: {}", get("/readyz").await.1);
    }
    let (status, metrics) = get("/metrics").await;
    assert_eq!(status, 200);
    assert!(metrics.contains("alertcall_dial_queue_depth"), "{metrics}");
    running.shutdown().await;
    ns.delete().await;
}

#[tokio::test]
async fn only_one_replica_leads_and_the_other_takes_over() {
    alertcall::telemetry::init();
    let client = support::client().await;
    let ns = support::TestNamespace::new(&client, "leader").await;
    let config = |identity: &str| Config {
        leader_election: Some(LeaseConfig {
            namespace: ns.name.clone(),
            name: "alertcall-leader".into(),
            identity: identity.into(),
            duration: Duration::from_secs(2),
            renew: Duration::from_secs(1),
        }),
        namespace: Some(ns.name.clone()),
        ..Config::local(identity)
    };
    let first = operator::start(client.clone(), config("replica-a"))
        .await
        .unwrap_or_else(|e| panic!("start a: {e}"));
    let second = operator::start(client.clone(), config("replica-b"))
        .await
        .unwrap_or_else(|e| panic!("start b: {e}"));
    let (a, b) = (first.context.leader.clone(), second.context.leader.clone());
    support::until("a leader", || a.is_leader() || b.is_leader()).await;
    // Both are checked many times: never both at once.
    for _ in 0..20 {
        assert!(!(a.is_leader() && b.is_leader()), "two leaders at once");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (leader, follower, follower_state) = if a.is_leader() {
        (first, second, b)
    } else {
        (second, first, a)
    };
    // Each replica applies the Lease as its own field manager: with a shared one, server-side
    // apply lets two replicas take a free Lease at the same moment, and both lead.
    let leases: kube::Api<k8s_openapi::api::coordination::v1::Lease> =
        kube::Api::namespaced(client.clone(), &ns.name);
    let lease = leases
        .get("alertcall-leader")
        .await
        .unwrap_or_else(|e| panic!("reading the Lease: {e}"));
    let holder = lease
        .spec
        .as_ref()
        .and_then(|s| s.holder_identity.clone())
        .unwrap_or_default();
    let managers: Vec<String> = lease
        .metadata
        .managed_fields
        .unwrap_or_default()
        .into_iter()
        .filter_map(|f| f.manager)
        .collect();
    assert!(
        managers.contains(&format!("alertcall-leader-{holder}")),
        "the holder {holder:?} applied the Lease under its own name: {managers:?}"
    );
    assert!(
        !managers.iter().any(|m| m == "alertcall-leader"),
        "a field manager shared by every replica: {managers:?}"
    );
    // A killed leader does not release the Lease: the follower takes over when it expires.
    leader.kill().await;
    support::until("the follower to take over", || follower_state.is_leader()).await;
    follower.shutdown().await;
    ns.delete().await;
}
