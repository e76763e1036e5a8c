//! Handing the Lease over on shutdown: the replica stops leading first, then releases the Lease,
//! so a standby takes it without waiting for it to expire.

mod support;

use std::time::Duration;

use alertcall::leader::{Leadership, LeaseConfig};
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::Api;

fn lease(namespace: &str, identity: &str) -> LeaseConfig {
    LeaseConfig {
        namespace: namespace.into(),
        name: "alertcall-leader".into(),
        identity: identity.into(),
        // Longer than the test waits: only a released Lease changes hands within the test.
        duration: Duration::from_secs(300),
        renew: Duration::from_secs(200),
    }
}

#[tokio::test]
async fn stepping_down_stops_leading_then_releases_the_lease() {
    let client = support::client().await;
    let ns = support::TestNamespace::new(&client, "handover").await;
    let (first, task) = Leadership::elect(client.clone(), &lease(&ns.name, "first"))
        .await
        .unwrap_or_else(|e| panic!("electing the first replica: {e}"));
    support::until("the first replica to lead", || first.is_leader()).await;
    let leases: Api<Lease> = Api::namespaced(client.clone(), &ns.name);
    let holder = |lease: Lease| lease.spec.and_then(|s| s.holder_identity);
    let held = leases
        .get("alertcall-leader")
        .await
        .unwrap_or_else(|e| panic!("reading the Lease: {e}"));
    assert_eq!(holder(held).as_deref(), Some("first"));

    task.step_down(Duration::from_secs(20)).await;
    assert!(!first.is_leader(), "still leading after stepping down");
    let released = leases
        .get("alertcall-leader")
        .await
        .unwrap_or_else(|e| panic!("reading the Lease: {e}"));
    assert!(
        holder(released.clone()).filter(|h| !h.is_empty()).is_none(),
        "the Lease is still held: {released:?}"
    );

    // A standby takes the free Lease at once; a held one would keep it out for 300 s.
    let (second, _second_task) = Leadership::elect(client.clone(), &lease(&ns.name, "second"))
        .await
        .unwrap_or_else(|e| panic!("electing the second replica: {e}"));
    support::wait_for(
        "the second replica to lead",
        Duration::from_secs(30),
        || async { second.is_leader().then_some(()) },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    ns.delete().await;
}
