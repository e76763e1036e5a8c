//! OnCallSchedule on a real control plane: status follows the schedule and changes at the
//! next handoff without a spec change, the printer columns show who is on call, and an invalid
//! spec says why.

mod support;

use alertcall::api::OnCallSchedule;
use alertcall::operator::{self, Config};
use kube::api::Api;

fn schedule(name: &str, zone: &str, override_end: &str) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "alertcall.dev/v1alpha1",
        "kind": "OnCallSchedule",
        "metadata": {"name": name},
        "spec": {
            "timeZone": zone,
            "members": [
                {"name": "alice", "phone": "+15005550006"},
                {"name": "bob", "client": "bob"}
            ],
            "rotations": [
                {"name": "always", "members": ["alice"], "start": "2020-01-01T00:00:00", "shiftLength": "168h"}
            ],
            "overrides": [
                {"member": "bob", "start": support::utc_local(-3600), "end": override_end}
            ]
        }
    })
}

#[tokio::test]
async fn status_hands_off_on_time_and_printer_columns_show_it() {
    let client = support::client().await;
    let ns = support::TestNamespace::new(&client, "ocs").await;
    let config = Config {
        namespace: Some(ns.name.clone()),
        ..Config::local("ocs-test")
    };
    let running = operator::start(client.clone(), config)
        .await
        .unwrap_or_else(|e| panic!("start: {e}"));
    let api: Api<OnCallSchedule> = Api::namespaced(client.clone(), &ns.name);
    // bob's override ends a few seconds from now: nothing but the requeue at `until` can move
    // the status to alice.
    let end = support::utc_local(8);
    support::create(&api, schedule("primary", "UTC", &end)).await;
    let status = support::eventually("bob on call until the override ends", || async {
        let status = api.get("primary").await.ok()?.status?;
        (status.on_call == ["bob"]).then_some(status)
    })
    .await;
    assert_eq!(status.next, ["alice"]);
    let until: jiff::Timestamp = status
        .until
        .as_deref()
        .unwrap_or_default()
        .parse()
        .unwrap_or_else(|e| panic!("until {:?}: {e}", status.until));
    assert_eq!(
        until
            .to_zoned(jiff::tz::TimeZone::UTC)
            .datetime()
            .to_string(),
        end
    );

    // What `kubectl get ocs` prints: the API server's Table rendering of the printer columns.
    let request = http::Request::get(format!(
        "/apis/alertcall.dev/v1alpha1/namespaces/{}/oncallschedules",
        ns.name
    ))
    .header("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io")
    .body(Vec::new())
    .unwrap_or_else(|e| panic!("request: {e}"));
    let text = client
        .request_text(request)
        .await
        .unwrap_or_else(|e| panic!("table: {e}"));
    let table: serde_json::Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    let columns: Vec<&str> = table["columnDefinitions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(
        &columns[..4],
        ["Name", "On-Call", "Until", "Next"],
        "{text}"
    );
    let cells = &table["rows"][0]["cells"];
    assert!(cells[1].to_string().contains("bob"), "{text}");
    assert!(cells[2].to_string().contains(&until.to_string()), "{text}");
    assert!(cells[3].to_string().contains("alice"), "{text}");

    support::eventually("alice on call once the override ended", || async {
        let status = api.get("primary").await.ok()?.status?;
        (status.on_call == ["alice"] && status.until.is_none()).then_some(())
    })
    .await;
    assert!(jiff::Timestamp::now() >= until);
    running.shutdown().await;
    ns.delete().await;
}

#[tokio::test]
async fn invalid_schedule_is_not_ready_with_the_reason() {
    let client = support::client().await;
    let ns = support::TestNamespace::new(&client, "ocs-bad").await;
    let config = Config {
        namespace: Some(ns.name.clone()),
        ..Config::local("ocs-bad-test")
    };
    let running = operator::start(client.clone(), config)
        .await
        .unwrap_or_else(|e| panic!("start: {e}"));
    let api: Api<OnCallSchedule> = Api::namespaced(client.clone(), &ns.name);
    support::create(
        &api,
        schedule("broken", "Mars/Olympus", &support::utc_local(3600)),
    )
    .await;
    let condition = support::eventually("Ready=False", || async {
        let status = api.get("broken").await.ok()?.status?;
        status
            .conditions
            .into_iter()
            .find(|c| c.type_ == "Ready" && c.status == "False")
    })
    .await;
    assert_eq!(condition.reason, "InvalidTimeZone");
    assert!(condition.message.contains("Mars/Olympus"), "{condition:?}");
    running.shutdown().await;
    ns.delete().await;
}
