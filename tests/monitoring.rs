//! The chart's Grafana dashboard and PrometheusRule: the rules pass Prometheus' own `promtool`
//! (syntax and one unit test per alert, `charts/alertcall/files/prometheus-rules.test.yaml`), the
//! chart ships them as written, and every metric they name is exported by a running operator.
//! promtool comes from Debian's `prometheus` package, installed by `scripts/test.sh`.

mod support;

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use alertcall::operator::{self, Config};
use serde_json::{json, Value};

const FILES: &str = "charts/alertcall/files";

fn promtool(args: &[&str]) -> Result<String, String> {
    let output = Command::new("promtool")
        .args(args)
        .current_dir(support::repo_root().join(FILES))
        .output()
        .map_err(|e| {
            format!("cannot run promtool (Debian's prometheus package, see scripts/test.sh): {e}")
        })?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    if output.status.success() {
        Ok(text)
    } else {
        Err(text)
    }
}

fn read(name: &str) -> String {
    let path = support::repo_root().join(FILES).join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

const ALERTS: [&str; 5] = [
    "AlertcallDown",
    "AlertcallTwilioUnhealthy",
    "AlertcallCallsFailing",
    "AlertcallPageExhausted",
    "AlertcallWebhookRejections",
];

#[test]
fn promtool_checks_the_rules_and_runs_a_unit_test_per_alert() {
    let checked = promtool(&["check", "rules", "prometheus-rules.yaml"])
        .unwrap_or_else(|e| panic!("promtool check rules: {e}"));
    assert!(checked.contains("5 rules found"), "{checked}");
    let tested = promtool(&["test", "rules", "prometheus-rules.test.yaml"])
        .unwrap_or_else(|e| panic!("promtool test rules: {e}"));
    assert!(tested.contains("SUCCESS"), "{tested}");
    let tests = read("prometheus-rules.test.yaml");
    for alert in ALERTS {
        assert!(
            tests.contains(&format!("alertname: {alert}")),
            "no unit test for {alert}"
        );
    }
}

#[test]
fn the_chart_ships_the_tested_rules_and_the_dashboard() {
    let values =
        json!({"grafanaDashboard": {"enabled": true}, "prometheusRule": {"enabled": true}})
            .to_string();
    let text = support::helm(&[
        "render",
        "charts/alertcall",
        "--values",
        &values,
        "--name",
        "pager",
        "--namespace",
        "monitoring-test",
    ])
    .unwrap_or_else(|e| panic!("helm render: {e}"));
    let documents = support::yaml_documents(&text);
    let of_kind = |kind: &str| -> Value {
        let found: Vec<&Value> = documents.iter().filter(|d| d["kind"] == kind).collect();
        assert_eq!(found.len(), 1, "one {kind} expected");
        found[0].clone()
    };
    let rule = of_kind("PrometheusRule");
    let names: Vec<&str> = rule["spec"]["groups"][0]["rules"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["alert"].as_str())
        .collect();
    assert_eq!(names, ALERTS);
    // The release's Service is the scrape job of a ServiceMonitor.
    assert_eq!(
        rule["spec"]["groups"][0]["rules"][0]["expr"],
        "absent(up{job=\"pager-alertcall\"} == 1)"
    );
    // What the chart renders is still valid for promtool.
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let rendered = dir.path().join("rendered.yaml");
    let spec = serde_yaml::to_string(&rule["spec"]).unwrap_or_else(|e| panic!("yaml: {e}"));
    std::fs::write(&rendered, spec).unwrap_or_else(|e| panic!("write: {e}"));
    promtool(&["check", "rules", &rendered.display().to_string()])
        .unwrap_or_else(|e| panic!("promtool check rules on the rendered PrometheusRule: {e}"));

    let dashboard = of_kind("ConfigMap");
    assert_eq!(dashboard["metadata"]["labels"]["grafana_dashboard"], "1");
    let json: Value =
        serde_json::from_str(dashboard["data"]["alertcall.json"].as_str().unwrap_or(""))
            .unwrap_or_else(|e| panic!("the dashboard is not JSON: {e}"));
    let titles: Vec<&str> = json["panels"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["title"].as_str())
        .collect();
    for title in [
        "Pages by phase",
        "Time to acknowledge",
        "Calls by outcome",
        "Twilio errors by code",
        "Dial queue depth",
        "Reconcile errors",
    ] {
        assert!(titles.contains(&title), "{title} missing from {titles:?}");
    }

    let default = support::helm(&["render", "charts/alertcall", "--name", "pager"])
        .unwrap_or_else(|e| panic!("helm render: {e}"));
    assert!(!default.contains("kind: PrometheusRule") && !default.contains("grafana_dashboard"));
}

/// Every `alertcall_*` name in a text.
fn metric_names(text: &str) -> BTreeSet<String> {
    let pattern =
        regex::Regex::new(r"alertcall_[a-z0-9_]*[a-z0-9]").unwrap_or_else(|e| panic!("regex: {e}"));
    pattern
        .find_iter(text)
        .map(|m| m.as_str().to_string())
        .collect()
}

/// The sample names a Prometheus text exposition offers, from its `# TYPE` lines.
fn exported(exposition: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in exposition.lines() {
        let mut words = line.split_whitespace();
        if let (Some("#"), Some("TYPE"), Some(name), Some(kind)) =
            (words.next(), words.next(), words.next(), words.next())
        {
            let suffixes: &[&str] = match kind {
                "counter" => &["_total"],
                "histogram" => &["_bucket", "_sum", "_count"],
                _ => &[""],
            };
            for suffix in suffixes {
                names.insert(format!("{name}{suffix}"));
            }
        }
    }
    names
}

#[tokio::test]
async fn every_metric_the_dashboard_and_rules_use_is_exported() {
    let dashboard: Value = serde_json::from_str(&read("grafana-dashboard.json"))
        .unwrap_or_else(|e| panic!("dashboard: {e}"));
    let mut used = BTreeSet::new();
    for panel in dashboard["panels"].as_array().into_iter().flatten() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            used.extend(metric_names(target["expr"].as_str().unwrap_or_default()));
        }
    }
    used.extend(metric_names(&read("prometheus-rules.yaml")));
    assert!(used.len() >= 8, "{used:?}");

    let client = support::client().await;
    let ns = support::TestNamespace::new(&client, "metrics").await;
    // NB: scoped to its own namespace: the API server is shared with other tests.
    let config = Config {
        namespace: Some(ns.name.clone()),
        ..Config::local("metrics-test")
    };
    let running = operator::start(client, config)
        .await
        .unwrap_or_else(|e| panic!("start: {e}"));
    let url = format!("http://{}/metrics", running.addr);
    let exposition = support::wait_for("/metrics to answer", Duration::from_secs(30), || {
        let url = url.clone();
        async move {
            let response = reqwest::get(&url).await.ok()?;
            if response.status().is_success() {
                response.text().await.ok()
            } else {
                None
            }
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let offered = exported(&exposition);
    let missing: Vec<&String> = used.difference(&offered).collect();
    running.shutdown().await;
    ns.delete().await;
    assert!(
        missing.is_empty(),
        "used by the dashboard or the rules but not on /metrics: {missing:?}\n{exposition}"
    );
}
