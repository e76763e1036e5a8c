//! The demo's cast and script: who is called in each example and how they answer, the example
//! manifests, and the sample signal that starts the page.

use super::*;

/// How one person behaves on each of their calls (the last entry repeats).
pub(super) struct Role {
    name: &'static str,
    calls: Vec<(Recipient, &'static str)>,
}

/// The names `--example` takes.
pub(super) const EXAMPLE_NAMES: &[&str] = &["sre-oncall", "db-owners", "schedule"];

/// The example policy an example pages.
pub(super) fn policy_of(example: &str) -> Option<&'static str> {
    match example {
        "sre-oncall" => Some("sre-oncall"),
        "db-owners" => Some("db-owners"),
        "schedule" => Some("sre-primary-tier"),
        _ => None,
    }
}

/// Where the time of day matters, the simulated time the example's page starts at: Friday
/// 17:59 in Tokyo, a minute before `examples/schedule-sre-primary.yaml` hands off from the
/// business-hours rotation to the after-hours one. Round 2 starts at least two rings and the
/// round interval (110 s) later, so after the handoff whatever the machine's speed.
pub(super) fn clock(example: &str) -> Option<&'static str> {
    (example == "schedule").then_some("2026-12-11T17:59:00+09:00")
}

/// What starts the example's page.
pub(super) enum Signal {
    /// A Kubernetes Event or an Alertmanager alert, through the example routes.
    Routed(Box<Candidate>),
    /// An AlertCall made by hand with this summary (`kubectl alertcall page`).
    Manual(&'static str),
}

pub(super) fn cast(example: &str) -> Vec<Role> {
    match example {
        "schedule" => vec![
            Role {
                name: "alice",
                calls: vec![(Recipient::with_outcome(Outcome::NoAnswer), "never answers")],
            },
            Role {
                name: "lead",
                calls: vec![(Recipient::with_outcome(Outcome::NoAnswer), "never answers")],
            },
            Role {
                name: "carol",
                calls: vec![(Recipient::presses(4.0, "1"), "answers and presses 1")],
            },
        ],
        "db-owners" => vec![
            Role {
                name: "dana",
                calls: vec![(Recipient::presses(4.0, "1"), "answers and presses 1")],
            },
            Role {
                name: "erik",
                calls: vec![
                    (
                        Recipient::with_outcome(Outcome::NoAnswer),
                        "does not answer",
                    ),
                    (Recipient::presses(5.0, "1"), "answers and presses 1"),
                ],
            },
            Role {
                name: "fumi",
                calls: vec![(Recipient::presses(7.0, "1"), "answers and presses 1")],
            },
        ],
        _ => vec![
            Role {
                name: "alice",
                calls: vec![(Recipient::with_outcome(Outcome::NoAnswer), "never answers")],
            },
            Role {
                name: "bob",
                calls: vec![(Recipient::voicemail(4.0), "voicemail answers")],
            },
            Role {
                name: "carol",
                calls: vec![(Recipient::presses(3.0, "1"), "answers and presses 1")],
            },
        ],
    }
}

pub(super) fn role_call<'a>(
    roles: &'a [Role],
    name: &str,
    nth: usize,
) -> Option<&'a (Recipient, &'static str)> {
    let role = roles.iter().find(|r| r.name == name)?;
    role.calls.get(nth).or_else(|| role.calls.last())
}

pub(super) fn describe_cast(roles: &[Role]) -> String {
    roles
        .iter()
        .map(|role| {
            let parts: Vec<&str> = role.calls.iter().map(|(_, what)| *what).collect();
            format!("{}: {}", role.name, parts.join(", then on the next call "))
        })
        .collect::<Vec<_>>()
        .join("; ")
}

pub(super) fn manifests() -> Result<Manifests, DemoError> {
    let sources: Vec<(String, String)> = EXAMPLES
        .iter()
        .map(|(name, text)| (name.to_string(), text.to_string()))
        .collect();
    Manifests::parse(&sources).map_err(|errors| DemoError::Examples(errors.join("; ")))
}

/// The example's sample signal: a Warning BackOff Event about a critical Pod, a critical
/// Alertmanager alert posted to `critical-alerts`, or a page by hand.
pub(super) fn sample_signal(example: &str) -> Result<(Signal, String), DemoError> {
    if example == "schedule" {
        let summary = "Manual page: the payments API is returning errors. Join the incident room.";
        let text = format!(
            "a page by hand: kubectl alertcall page sre-primary-tier --message {summary:?}"
        );
        return Ok((Signal::Manual(summary), text));
    }
    if example == "db-owners" {
        let payload = Payload::parse(SAMPLE_ALERT.as_bytes())
            .map_err(|error| DemoError::Examples(error.to_string()))?;
        let route = RouteKey::new("default", "critical-alerts");
        let alert = payload
            .candidates(&route)
            .into_iter()
            .next()
            .ok_or_else(|| DemoError::NoRoute(example.to_string()))?;
        let text = format!(
            "Alertmanager alert PostgresReplicationLag (severity=critical, team=db) posted to {route}"
        );
        return Ok((Signal::Routed(Box::new(Candidate::Alert(alert))), text));
    }
    let now = Timestamp::now().to_string();
    let event: KubeEvent = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "api-7f9c6d5b8-x2x9q.17a2b3c4d5e6f708", "namespace": "payments"},
        "type": "Warning",
        "reason": "BackOff",
        "message": "Back-off restarting failed container api",
        "count": 3,
        "firstTimestamp": now,
        "lastTimestamp": now,
        "involvedObject": {"kind": "Pod", "name": "api-7f9c6d5b8-x2x9q", "namespace": "payments"},
    }))
    .map_err(|error| DemoError::Examples(format!("the sample Event: {error}")))?;
    let candidate = EventCandidate::from_event(
        &event,
        BTreeMap::from([("tier".to_string(), "critical".to_string())]),
        BTreeMap::from([("alerting".to_string(), "enabled".to_string())]),
    );
    let text = "Kubernetes Event: Warning BackOff on Pod payments/api-7f9c6d5b8-x2x9q \
                (Pod labeled tier=critical, namespace labeled alerting=enabled)"
        .to_string();
    Ok((Signal::Routed(Box::new(Candidate::Event(candidate))), text))
}

/// Routes the sample signal like the pager: the route index, the group key, the window
/// decision and the AlertCall build.
pub(super) fn route_signal(
    manifests: &Manifests,
    policy: &CallPolicy,
    candidate: &Candidate,
    now: Timestamp,
) -> Result<(AlertCall, String), DemoError> {
    let index = RouteIndex::new(manifests.routes.clone());
    let policy_name = policy.name_any();
    let route = index
        .matching(candidate)
        .into_iter()
        .find(|route| route.route.spec.policy_ref.name == policy_name)
        .ok_or_else(|| DemoError::NoRoute(policy_name.clone()))?;
    let grouping = &route.route.spec.grouping;
    let key = GroupKey::of(&grouping.group_by, candidate);
    let GroupDecision::Page {
        name,
        not_before: None,
        ..
    } = decide(&route.key, &key, grouping, &GroupState::default(), now)
    else {
        // The examples page at once (groupWaitSeconds 0) and the demo has no earlier page.
        return Err(DemoError::NoRoute(policy_name));
    };
    let built = build_alert_call(
        PageRequest {
            route: &route.route,
            policy_template: &policy.spec.message.template,
            group_key: &key,
            name: &name,
            now,
            not_before: None,
        },
        candidate,
    );
    Ok((built.call, format!("AlertRoute {}", route.key)))
}
