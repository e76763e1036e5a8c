//! `alertcall check -f DIR [--event FILE | --alert FILE]`: offline validation of policies and
//! routes, and, for a sample signal, which routes page, as what, and whom they call in order.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use k8s_openapi::api::core::v1::Event;
use serde::{Deserialize, Serialize};

use crate::api::{self, Mode, OnResolved, Order};
use crate::routing::{
    decide, Candidate, EventCandidate, GroupDecision, GroupKey, GroupState, RouteIndex, RouteKey,
};
use crate::schedule::interval::Intervals;
use crate::sources::alertmanager::Payload;

mod manifests;
pub use manifests::{namespace_of, qualified, read_sources, Diagnostic, Manifests};

#[derive(clap::Args, Debug)]
pub struct CheckArgs {
    /// A directory of YAML manifests (or one file).
    #[arg(short = 'f', long = "filename")]
    pub path: PathBuf,
    /// A sample core/v1 Event (YAML or JSON). Further documents in the file may hold the
    /// involved object and its Namespace, whose labels the selectors then see.
    #[arg(long, conflicts_with = "alert")]
    pub event: Option<PathBuf>,
    /// A sample Alertmanager webhook payload (version 4, JSON or YAML), as if posted to every
    /// route with an `alertmanager` section.
    #[arg(long)]
    pub alert: Option<PathBuf>,
    /// Labels of the Event's involved object, `key=value` (repeatable or comma-separated).
    #[arg(long = "object-labels", value_delimiter = ',', requires = "event")]
    pub object_labels: Vec<String>,
    /// Labels of the Event's Namespace, `key=value` (repeatable or comma-separated).
    #[arg(long = "namespace-labels", value_delimiter = ',', requires = "event")]
    pub namespace_labels: Vec<String>,
    /// Explain the sample signal as if it arrived at this time (RFC 3339 with an offset, such
    /// as 2026-12-24T03:00:00+09:00): time windows, quiet hours and who is on call then.
    #[arg(long, value_parser = parse_at)]
    pub at: Option<jiff::Timestamp>,
    /// `text` for people, `json` for CI: one object with every error (file, document, JSON
    /// path, message).
    #[arg(short = 'o', long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    Text,
    Json,
}

/// One error in the manifests, located well enough for a CI log or an editor.
#[derive(Serialize)]
struct JsonReport<'a> {
    ok: bool,
    checked: BTreeMap<&'static str, usize>,
    errors: &'a [Diagnostic],
    #[serde(skip_serializing_if = "Option::is_none")]
    explanation: Option<String>,
}

pub fn run(args: &CheckArgs) -> ExitCode {
    let (manifests, mut errors) = match read_sources(&args.path) {
        Ok(sources) => Manifests::check(&sources),
        Err(error) => (Manifests::default(), vec![*error]),
    };
    let explanation = match sample(args) {
        Ok(Some(candidates)) => Some(explain(
            &manifests,
            &candidates,
            args.at.unwrap_or_else(jiff::Timestamp::now),
        )),
        Ok(None) => None,
        Err(message) => {
            errors.push(Diagnostic {
                file: args
                    .event
                    .as_ref()
                    .or(args.alert.as_ref())
                    .map(|p| p.display().to_string())
                    .unwrap_or_default(),
                document: 0,
                kind: None,
                namespace: None,
                name: None,
                path: String::new(),
                message,
                category: "file",
            });
            None
        }
    };
    let checked = BTreeMap::from([
        ("CallPolicy", manifests.policies.len()),
        ("AlertRoute", manifests.routes.len()),
        ("AlertCall", manifests.calls.len()),
        ("OnCallSchedule", manifests.schedules.len()),
    ]);
    match args.output {
        Output::Json => {
            let report = JsonReport {
                ok: errors.is_empty(),
                checked,
                errors: &errors,
                explanation,
            };
            match serde_json::to_string_pretty(&report) {
                Ok(json) => println!("{json}"),
                Err(error) => {
                    eprintln!("error: cannot write the report: {error}");
                    return ExitCode::FAILURE;
                }
            }
        }
        Output::Text => {
            if let Some(explanation) = explanation {
                print!("{explanation}");
            }
            for error in &errors {
                eprintln!("error: {error}");
            }
            println!(
                "{} CallPolicy, {} AlertRoute, {} AlertCall, {} OnCallSchedule checked: {}",
                manifests.policies.len(),
                manifests.routes.len(),
                manifests.calls.len(),
                manifests.schedules.len(),
                if errors.is_empty() {
                    "no problems".to_string()
                } else {
                    format!("{} problem(s)", errors.len())
                }
            );
        }
    }
    if errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn parse_at(text: &str) -> Result<jiff::Timestamp, String> {
    text.parse::<jiff::Timestamp>().map_err(|error| {
        format!("{text:?} is not an RFC 3339 time with an offset, such as 2026-12-24T03:00:00+09:00: {error}")
    })
}

fn parse_labels(pairs: &[String], flag: &str) -> Result<BTreeMap<String, String>, String> {
    pairs
        .iter()
        .filter(|pair| !pair.trim().is_empty())
        .map(|pair| match pair.split_once('=') {
            Some((key, value)) if !key.trim().is_empty() => {
                Ok((key.trim().to_string(), value.trim().to_string()))
            }
            _ => Err(format!("{flag}: {pair:?} is not key=value")),
        })
        .collect()
}

fn read(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|error| format!("{}: {error}", path.display()))
}

/// The sample signal of `--event` or `--alert`, if any; errors name the file.
fn sample(args: &CheckArgs) -> Result<Option<Vec<Candidate>>, String> {
    if let Some(path) = &args.event {
        let object = parse_labels(&args.object_labels, "--object-labels")?;
        let namespace = parse_labels(&args.namespace_labels, "--namespace-labels")?;
        let candidate = event_sample(&path.display().to_string(), &read(path)?, object, namespace)?;
        return Ok(Some(vec![Candidate::Event(candidate)]));
    }
    if let Some(path) = &args.alert {
        let payload = Payload::parse_json_or_yaml_file(read(path)?.as_bytes())
            .map_err(|error| format!("{}: {error}", path.display()))?;
        // Posted to no route yet: `explain` tries each route with an alertmanager section.
        let alerts = payload
            .candidates(&RouteKey::default())
            .into_iter()
            .map(Candidate::Alert)
            .collect();
        return Ok(Some(alerts));
    }
    Ok(None)
}

/// An Event from a file of YAML documents: the Event, and optionally its involved object and
/// Namespace, whose labels are used unless the flags give them.
pub fn event_sample(
    source: &str,
    text: &str,
    object_labels: BTreeMap<String, String>,
    namespace_labels: BTreeMap<String, String>,
) -> Result<EventCandidate, String> {
    let mut documents = Vec::new();
    for (index, document) in serde_yaml::Deserializer::from_str(text).enumerate() {
        match serde_yaml::Value::deserialize(document) {
            Ok(serde_yaml::Value::Null) => {}
            Ok(value) => documents.push((index + 1, value)),
            Err(error) => {
                return Err(format!(
                    "{source} (document {}): not YAML: {error}",
                    index + 1
                ))
            }
        }
    }
    let kind_of = |value: &serde_yaml::Value| {
        let field = |name: &str| value.get(name).and_then(|v| v.as_str()).unwrap_or("");
        (field("apiVersion").to_string(), field("kind").to_string())
    };
    let Some((index, value)) = documents
        .iter()
        .find(|(_, value)| kind_of(value) == ("v1".to_string(), "Event".to_string()))
    else {
        return Err(format!(
            "{source}: no core/v1 Event (apiVersion: v1, kind: Event) in the file"
        ));
    };
    let mut event: Event = serde_yaml::from_value(value.clone())
        .map_err(|error| format!("{source} (document {index}): not a core/v1 Event: {error}"))?;
    if event.metadata.namespace.is_none() {
        event.metadata.namespace = Some("default".to_string());
    }
    let involved = &event.involved_object;
    let labels_of = |kind: &str, name: &str, namespace: Option<&str>| {
        documents.iter().find_map(|(_, value)| {
            let meta = value.get("metadata")?;
            let matches = kind_of(value).1 == kind
                && meta.get("name").and_then(|v| v.as_str()) == Some(name)
                && namespace.is_none_or(|ns| {
                    meta.get("namespace").and_then(|v| v.as_str()).unwrap_or(ns) == ns
                });
            if !matches {
                return None;
            }
            let labels = meta
                .get("labels")
                .cloned()
                .unwrap_or(serde_yaml::Value::Null);
            Some(serde_yaml::from_value::<BTreeMap<String, String>>(labels).unwrap_or_default())
        })
    };
    let object_labels = if object_labels.is_empty() {
        labels_of(
            involved.kind.as_deref().unwrap_or(""),
            involved.name.as_deref().unwrap_or(""),
            involved.namespace.as_deref(),
        )
        .unwrap_or_default()
    } else {
        object_labels
    };
    let event_namespace = event.metadata.namespace.clone().unwrap_or_default();
    let namespace_labels = if namespace_labels.is_empty() {
        labels_of("Namespace", &event_namespace, None).unwrap_or_default()
    } else {
        namespace_labels
    };
    Ok(EventCandidate::from_event(
        &event,
        object_labels,
        namespace_labels,
    ))
}

fn labels_text(labels: &BTreeMap<String, String>) -> String {
    if labels.is_empty() {
        return "(none)".to_string();
    }
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Which routes page for each candidate, with group key, AlertCall name, spoken summary, the
/// policy's call order and the call's TwiML. Pure: `now` names the repeat window.
pub fn explain(manifests: &Manifests, candidates: &[Candidate], now: jiff::Timestamp) -> String {
    let mut routes = manifests.routes.clone();
    for route in &mut routes {
        if route.metadata.namespace.is_none() {
            route.metadata.namespace = Some("default".to_string());
        }
    }
    let index = RouteIndex::new(routes);
    let mut out = String::new();
    for candidate in candidates {
        let tries: Vec<Candidate> = match candidate {
            Candidate::Event(event) => {
                out.push_str(&format!(
                    "Event {}: {} {} on {} {}/{} (count {}); object labels {}; namespace labels {}\n",
                    event.namespace,
                    event.type_,
                    event.reason,
                    event.involved.kind,
                    event.involved.namespace,
                    event.involved.name,
                    event.count,
                    labels_text(&event.object_labels),
                    labels_text(&event.namespace_labels),
                ));
                vec![candidate.clone()]
            }
            Candidate::Alert(alert) => {
                out.push_str(&format!(
                    "Alert {} ({}): {}\n",
                    alert
                        .labels
                        .get("alertname")
                        .map(String::as_str)
                        .unwrap_or("?"),
                    if candidate.is_resolved() {
                        "resolved"
                    } else {
                        "firing"
                    },
                    labels_text(&alert.labels),
                ));
                index
                    .routes()
                    .iter()
                    .filter(|route| route.route.spec.alertmanager.is_some())
                    .map(|route| {
                        let mut alert = alert.clone();
                        alert.route = route.key.clone();
                        Candidate::Alert(alert)
                    })
                    .collect()
            }
        };
        let matched: Vec<_> = tries
            .iter()
            .flat_map(|c| index.matching(c).into_iter().map(move |r| (c, r)))
            .collect();
        if matched.is_empty() {
            out.push_str("  no route matches: nothing would page\n");
        }
        for (candidate, route) in matched {
            out.push_str(&explain_route(manifests, route, candidate, now));
        }
    }
    out
}

/// Who a schedule recipient dials at `at`, when the folder has the schedule.
fn on_call_text(
    manifests: &Manifests,
    namespace: &str,
    schedule: &str,
    at: jiff::Timestamp,
) -> String {
    let Some(found) = manifests.schedule(namespace, schedule) else {
        return format!(
            "whoever is on call in schedule {schedule} (not in this folder: cannot say who)"
        );
    };
    match crate::schedule::members_on_call(&found.spec, schedule, at) {
        Ok(members) => format!(
            "on call in schedule {schedule} at {at}: {}",
            crate::schedule::members_line(&members)
        ),
        Err(why) => format!("skipped at {at}: {why}"),
    }
}

fn explain_route(
    manifests: &Manifests,
    route: &crate::routing::CompiledRoute,
    candidate: &Candidate,
    now: jiff::Timestamp,
) -> String {
    let policy_name = &route.route.spec.policy_ref.name;
    let policy = manifests.policy(&route.key.namespace, policy_name);
    let mut out = format!(
        "  route AlertRoute {} -> CallPolicy {}/{}{}\n",
        route.key,
        route.key.namespace,
        policy_name,
        if policy.is_none() { " (not found)" } else { "" }
    );
    if route.route.spec.heartbeat.is_some() {
        out.push_str("    heartbeat: this signal is a beat; it pages nobody (silence pages)\n");
        return out;
    }
    if route.is_muted_at(now) {
        out.push_str(&format!(
            "    muted at {now}: outside activeTimeIntervals or inside muteTimeIntervals; counts as suppressed, pages nobody\n"
        ));
        return out;
    }
    let key = GroupKey::of(&route.route.spec.grouping.group_by, candidate);
    out.push_str(&format!("    group key  {:?}\n", key.as_str()));
    if candidate.is_resolved() {
        let ends = match route.route.spec.on_resolved {
            OnResolved::Cancel => {
                "a page of the group no one acknowledged yet ends Resolved (onResolved: Cancel)"
            }
            OnResolved::Continue => "a page of the group calls on (onResolved: Continue)",
        };
        out.push_str(&format!(
            "    resolved: closes the group's repeat window, pages nothing; {ends}\n"
        ));
        return out;
    }
    let grouping = &route.route.spec.grouping;
    match decide(&route.key, &key, grouping, &GroupState::default(), now) {
        GroupDecision::Page {
            name,
            not_before: None,
            ..
        } => out.push_str(&format!(
            "    AlertCall  {name} (then nothing more for this group for {}s)\n",
            grouping.repeat_interval_seconds
        )),
        GroupDecision::Page {
            name,
            not_before: Some(_),
            ..
        } => out.push_str(&format!(
            "    AlertCall  {name} at once, Waiting: calls start after {}s of group wait\n",
            grouping.group_wait_seconds
        )),
        GroupDecision::Suppress { .. } => {}
    }
    let quiet = policy
        .and_then(|p| Intervals::quiet_until(&p.spec.quiet_hours, route.route.spec.urgent, now));
    if let Some(until) = quiet {
        out.push_str(&format!(
            "    quiet hours of the policy: Waiting, no call before {until} (the route is not urgent)\n"
        ));
    }
    let template = route
        .route
        .spec
        .message
        .as_ref()
        .map(|m| m.template.clone())
        .or_else(|| policy.map(|p| p.spec.message.template.clone()))
        .unwrap_or_else(|| api::call_policy::DEFAULT_TEMPLATE.to_string());
    let (summary, error) =
        crate::message::render_or_fallback(&template, &candidate.message_context());
    out.push_str(&format!("    summary    {summary:?}\n"));
    if let Some(error) = error {
        out.push_str(&format!(
            "    (the template failed, the plain fallback text is spoken: {error})\n"
        ));
    }
    let Some(policy) = policy else {
        return out;
    };
    let spec = &policy.spec;
    let strategy = &spec.strategy;
    let order = match (strategy.mode, strategy.order) {
        (Mode::Sequential, Order::Fixed) => "Sequential, one at a time in this order".to_string(),
        (Mode::Sequential, Order::RoundRobin) => {
            "Sequential, one at a time; each page starts one further down this list".to_string()
        }
        (Mode::Simultaneous, _) => format!(
            "Simultaneous, everyone at once ({} call(s) a second), complete on {:?}",
            spec.limits.calls_per_second.max(1),
            strategy.completion
        ),
    };
    out.push_str(&format!(
        "    calls      {order}; {} round(s) {}s apart, ringing {}s each\n",
        strategy.rounds, strategy.round_interval_seconds, strategy.ring_timeout_seconds
    ));
    // A page held by quiet hours dials when they end: who is on call then is who is called.
    let dials_at = quiet.unwrap_or(now);
    for (position, recipient) in spec.recipients.iter().enumerate() {
        let address = match recipient.address.schedule() {
            Some(schedule) => on_call_text(manifests, &route.key.namespace, schedule, dials_at),
            None => recipient.address.twilio_to().unwrap_or_default(),
        };
        out.push_str(&format!(
            "      {}. {} {address}\n",
            position + 1,
            recipient.name,
        ));
    }
    let ack_url = policy
        .status
        .as_ref()
        .and_then(|s| s.twiml.as_ref())
        .map(|t| t.urls.ack.clone())
        .filter(|url| !url.is_empty())
        .unwrap_or_else(|| "https://ack-document.invalid/ack".to_string());
    match crate::page::documents::call_twiml(spec, &summary, &ack_url) {
        Ok(twiml) => out.push_str(&format!("    twiml      {twiml}\n")),
        Err(error) => out.push_str(&format!("    twiml      cannot be built: {error}\n")),
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: &str = r#"
apiVersion: alertcall.dev/v1alpha1
kind: CallPolicy
metadata: {name: p, namespace: ns}
spec:
  twilio: {credentialsSecretRef: {name: t}, from: "+15005550006"}
  recipients: [{name: a, phone: "+15005550101"}]
"#;

    fn parse(text: &str) -> Result<Manifests, Vec<String>> {
        Manifests::parse(&[("test.yaml".into(), text.into())])
    }

    #[test]
    fn defaults_apply_when_sections_are_omitted() {
        let manifests = parse(POLICY).unwrap_or_default();
        assert_eq!(manifests.policies.len(), 1);
        assert_eq!(manifests.policies[0].spec.strategy.rounds, 3);
        assert!(manifests.problems().is_empty());
    }

    #[test]
    fn other_kinds_are_skipped() {
        let text = format!("apiVersion: v1\nkind: Secret\nmetadata: {{name: s}}\n---\n{POLICY}");
        let manifests = parse(&text).unwrap_or_default();
        assert_eq!(manifests.policies.len(), 1);
    }

    #[test]
    fn two_address_kinds_name_the_document() {
        let text = POLICY.replace(
            r#"phone: "+15005550101""#,
            r#"phone: "+15005550101", client: a"#,
        );
        let errors = parse(&text).err().unwrap_or_default();
        assert_eq!(errors.len(), 1);
        assert!(
            errors[0].starts_with("test.yaml (document 1)"),
            "{errors:?}"
        );
    }

    #[test]
    fn bad_time_intervals_of_policies_and_routes_are_located() {
        let text = format!(
            "{}  quietHours: [{{weekdays: [funday]}}]\n---\n{}",
            POLICY,
            r#"
apiVersion: alertcall.dev/v1alpha1
kind: AlertRoute
metadata: {name: r, namespace: ns}
spec:
  policyRef: {name: p}
  kubernetesEvents: {types: [Warning]}
  muteTimeIntervals: [{location: Mars/Olympus}]
  activeTimeIntervals: [{}, {times: [{start: "25:00", end: "26:00"}]}]
"#
        );
        let (_, errors) = Manifests::check(&[("test.yaml".into(), text)]);
        let located: Vec<String> = errors
            .iter()
            .map(|e| {
                e.to_string()
                    .split(':')
                    .next()
                    .unwrap_or_default()
                    .to_string()
            })
            .collect();
        assert_eq!(
            located,
            [
                "test.yaml (document 1)",
                "test.yaml (document 2)",
                "test.yaml (document 2)"
            ],
            "{errors:?}"
        );
        let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert!(
            text[0].contains("spec.quietHours[0].weekdays[0]"),
            "{text:?}"
        );
        assert!(
            text[1].contains("spec.activeTimeIntervals[1].times[0]"),
            "{text:?}"
        );
        assert!(
            text[2].contains("spec.muteTimeIntervals[0].location"),
            "{text:?}"
        );
    }

    #[test]
    fn route_to_a_missing_policy_is_a_problem() {
        let route = r#"
apiVersion: alertcall.dev/v1alpha1
kind: AlertRoute
metadata: {name: r, namespace: ns}
spec:
  policyRef: {name: missing}
  kubernetesEvents: {types: [Warning]}
"#;
        let (manifests, errors) =
            Manifests::check(&[("test.yaml".into(), format!("{POLICY}---\n{route}"))]);
        let problems = manifests.problems();
        assert_eq!(problems.len(), 1);
        assert!(problems[0].contains("spec.policyRef"), "{problems:?}");
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(
            errors[0].to_string(),
            "test.yaml (document 2): AlertRoute ns/r spec.policyRef: no CallPolicy \"missing\" in namespace \"ns\""
        );
        assert_eq!(errors[0].category, "semantic");
    }

    #[test]
    fn schedule_recipients_parse_and_two_kinds_are_refused() {
        let text = POLICY.replace(r#"phone: "+15005550101""#, "schedule: sre-primary");
        let manifests = parse(&text).unwrap_or_default();
        assert_eq!(
            manifests.policies[0].spec.recipients[0].address.schedule(),
            Some("sre-primary")
        );
        let both = POLICY.replace(
            r#"phone: "+15005550101""#,
            r#"phone: "+15005550101", schedule: sre-primary"#,
        );
        let (_, errors) = Manifests::check(&[("test.yaml".into(), both)]);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].category, "invalid", "{errors:?}");
    }

    #[test]
    fn escalation_loops_are_reported_on_every_policy_in_them() {
        let tier = |name: &str, next: &str| {
            POLICY.replace("name: p,", &format!("name: {name},"))
                + &format!("  onExhausted: {{policyRef: {{name: {next}}}}}\n")
        };
        let text = format!(
            "{}---\n{}---\n{}",
            tier("a", "b"),
            tier("b", "a"),
            tier("c", "d")
        );
        let (_, errors) = Manifests::check(&[("test.yaml".into(), text)]);
        let found: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(
            found[0].contains("CallPolicy ns/a spec.onExhausted: escalation loop: a -> b -> a"),
            "{found:?}"
        );
        assert!(found[1].contains("b -> a -> b"), "{found:?}");
        assert!(errors.iter().all(|e| e.category == "semantic"));
        let own = tier("a", "a");
        let (_, errors) = Manifests::check(&[("test.yaml".into(), own)]);
        assert!(errors[0].to_string().contains("a -> a"), "{errors:?}");
    }

    #[test]
    fn schema_errors_and_unknown_fields_are_located() {
        let text = format!(
            "{POLICY}---\n{}",
            POLICY
                .replace("name: p,", "name: q,")
                .replace("\"+15005550101\"", "\"09012345678\"")
                .replace("from: \"+15005550006\"}", "from: \"+15005550006\", sid: x}")
        );
        let (manifests, errors) = Manifests::check(&[("test.yaml".into(), text)]);
        assert_eq!(
            manifests.policies.len(),
            1,
            "the rejected document is not kept"
        );
        let located: Vec<(usize, &str, &str)> = errors
            .iter()
            .map(|e| (e.document, e.path.as_str(), e.category))
            .collect();
        assert_eq!(
            located,
            vec![
                (2, "spec.twilio.sid", "unknown-field"),
                (2, "spec.recipients[0].phone", "invalid"),
            ],
            "{errors:?}"
        );
    }

    #[test]
    fn shipped_examples_have_no_problems() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
        let manifests = Manifests::load(&dir).unwrap_or_default();
        assert_eq!(manifests.policies.len(), 4);
        assert_eq!(manifests.routes.len(), 3);
        assert_eq!(manifests.schedules.len(), 1);
        assert_eq!(manifests.problems(), Vec::<String>::new());
    }

    #[test]
    fn a_schedule_recipient_names_who_is_on_call_at_the_time_and_bad_schedules_are_located() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
        let mut sources = read_sources(&dir).unwrap_or_default();
        sources.push((
            "route.yaml".into(),
            r#"
apiVersion: alertcall.dev/v1alpha1
kind: AlertRoute
metadata: {name: to-tiers}
spec:
  policyRef: {name: sre-primary-tier}
  kubernetesEvents: {types: [Warning]}
"#
            .into(),
        ));
        let (manifests, errors) = Manifests::check(&sources);
        assert!(errors.is_empty(), "{errors:?}");
        // NB: a route sees the Events of its own namespace only.
        let text = EVENT.replace("prod", "default");
        let Ok(event) = event_sample("event.yaml", &text, BTreeMap::new(), BTreeMap::new()) else {
            panic!("the sample event does not parse");
        };
        let event = [Candidate::Event(event)];
        let explained = |at: &str| {
            let text = explain(&manifests, &event, parse_at(at).unwrap_or_default());
            text.split("route AlertRoute default/to-tiers")
                .nth(1)
                .unwrap_or_default()
                .to_string()
        };
        // Friday in Tokyo: alice's business hours, then carol's after-hours layer from 18:00.
        let day = explained("2026-12-11T17:59:00+09:00");
        assert!(
            day.contains("1. primary on call in schedule sre-primary at 2026-12-11T08:59:00Z: alice +819012345678"),
            "{day}"
        );
        assert!(day.contains("2. lead +14155550110"), "{day}");
        let evening = explained("2026-12-11T18:00:00+09:00");
        assert!(evening.contains(": carol +819087654321"), "{evening}");
        // Before any rotation starts, nobody is on call: the recipient is skipped, and says so.
        let before = explained("2026-12-01T12:00:00+09:00");
        assert!(before.contains("1. primary skipped at"), "{before}");
        assert!(before.contains("nobody is on call"), "{before}");

        let bad = r#"
apiVersion: alertcall.dev/v1alpha1
kind: OnCallSchedule
metadata: {name: broken, namespace: ns}
spec:
  timeZone: Mars/Olympus
  members: [{name: alice, phone: "+15005550101"}]
  rotations: [{name: r, members: [alice, zed], start: "2026-12-07T09:00:00", shiftLength: 168h}]
"#;
        let (_, errors) = Manifests::check(&[("ocs.yaml".into(), bad.into())]);
        let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(errors.len(), 2, "{text:?}");
        assert!(
            text.iter()
                .all(|e| e.starts_with("ocs.yaml (document 1): OnCallSchedule ns/broken spec.")),
            "{text:?}"
        );
        assert!(text.iter().any(|e| e.contains("spec.timeZone")), "{text:?}");
        assert!(text.iter().any(|e| e.contains("zed")), "{text:?}");
    }

    const EVENT: &str = r#"
apiVersion: v1
kind: Event
metadata: {name: api.1, namespace: prod}
type: Warning
reason: BackOff
message: Back-off restarting failed container
count: 3
involvedObject: {apiVersion: v1, kind: Pod, name: api-7f9, namespace: prod}
---
apiVersion: v1
kind: Pod
metadata: {name: api-7f9, namespace: prod, labels: {tier: critical}}
---
apiVersion: v1
kind: Namespace
metadata: {name: prod, labels: {alerting: enabled}}
"#;

    fn examples() -> Manifests {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
        Manifests::load(&dir).unwrap_or_default()
    }

    #[test]
    fn a_sample_event_shows_route_group_name_summary_and_call_order() {
        let event = event_sample("event.yaml", EVENT, BTreeMap::new(), BTreeMap::new());
        let Ok(event) = event else {
            panic!("{event:?}");
        };
        assert_eq!(
            event.object_labels.get("tier").map(String::as_str),
            Some("critical")
        );
        let text = explain(
            &examples(),
            &[Candidate::Event(event)],
            crate::fixtures::at(7200),
        );
        assert!(
            text.contains(
                "route AlertRoute default/critical-workloads -> CallPolicy default/sre-oncall"
            ),
            "{text}"
        );
        assert!(
            text.contains("group key  \"prod/Pod/api-7f9/BackOff\""),
            "{text}"
        );
        assert!(text.contains("AlertCall  critical-workloads-"), "{text}");
        assert!(text.contains("1. "), "{text}");
        assert!(text.contains("<Gather"), "{text}");
    }

    #[test]
    fn at_a_time_the_explanation_shows_mute_windows_quiet_hours_and_urgency() {
        let text = format!(
            "{}  quietHours: [{{times: [{{start: \"22:00\", end: \"07:00\"}}], location: Asia/Tokyo}}]\n{}",
            POLICY.replace("namespace: ns", "namespace: prod"),
            r#"---
apiVersion: alertcall.dev/v1alpha1
kind: AlertRoute
metadata: {name: office, namespace: prod}
spec:
  policyRef: {name: p}
  kubernetesEvents: {types: [Warning]}
  muteTimeIntervals: [{weekdays: ["saturday:sunday"], location: Asia/Tokyo}]
---
apiVersion: alertcall.dev/v1alpha1
kind: AlertRoute
metadata: {name: urgent, namespace: prod}
spec:
  policyRef: {name: p}
  kubernetesEvents: {types: [Warning]}
  urgent: true
"#
        );
        let (manifests, errors) = Manifests::check(&[("test.yaml".into(), text)]);
        assert!(errors.is_empty(), "{errors:?}");
        let Ok(event) = event_sample("event.yaml", EVENT, BTreeMap::new(), BTreeMap::new()) else {
            panic!("the sample event does not parse");
        };
        let event = [Candidate::Event(event)];
        // Thursday 03:00 in Tokyo: quiet hours until 07:00 there (22:00 UTC the day before).
        let night = parse_at("2026-12-24T03:00:00+09:00").unwrap_or_default();
        let explained = explain(&manifests, &event, night);
        let office = explained
            .split("route AlertRoute prod/urgent")
            .next()
            .unwrap_or_default();
        assert!(
            office.contains("Waiting, no call before 2026-12-23T22:00:00Z"),
            "{explained}"
        );
        let urgent = explained
            .split("route AlertRoute prod/urgent")
            .nth(1)
            .unwrap_or_default();
        assert!(!urgent.contains("quiet hours"), "{explained}");
        assert!(urgent.contains("AlertCall  urgent-"), "{explained}");
        // Saturday noon in Tokyo: the office route is muted, the urgent one pages at once.
        let weekend = parse_at("2026-12-26T12:00:00+09:00").unwrap_or_default();
        let explained = explain(&manifests, &event, weekend);
        assert!(
            explained.contains("muted at 2026-12-26T03:00:00Z"),
            "{explained}"
        );
        assert!(!explained.contains("quiet hours"), "{explained}");
        assert!(
            parse_at("2026-12-24T03:00:00").is_err(),
            "no offset accepted"
        );
    }

    #[test]
    fn flags_override_labels_and_unlabeled_objects_match_nothing() {
        let event = event_sample(
            "event.yaml",
            EVENT,
            BTreeMap::from([("tier".to_string(), "low".to_string())]),
            BTreeMap::new(),
        );
        let Ok(event) = event else {
            panic!("{event:?}");
        };
        let text = explain(
            &examples(),
            &[Candidate::Event(event)],
            crate::fixtures::at(0),
        );
        assert!(text.contains("no route matches"), "{text}");
    }

    #[test]
    fn bad_event_files_say_what_is_wrong() {
        let missing = event_sample(
            "x.yaml",
            "apiVersion: v1\nkind: Pod\n",
            BTreeMap::new(),
            BTreeMap::new(),
        );
        assert!(missing.is_err_and(|e| e.contains("no core/v1 Event")));
        let broken = event_sample(
            "x.yaml",
            "apiVersion: v1\nkind: Event\ncount: many\n",
            BTreeMap::new(),
            BTreeMap::new(),
        );
        assert!(broken.is_err_and(|e| e.starts_with("x.yaml (document 1): not a core/v1 Event")));
        assert!(parse_labels(&["tier".to_string()], "--object-labels").is_err());
    }

    #[test]
    fn a_sample_alert_is_tried_on_every_alertmanager_route() {
        let payload = r#"{"version": "4", "alerts": [{"status": "firing",
            "labels": {"alertname": "DiskFull", "severity": "critical", "team": "db", "service": "pg"},
            "annotations": {"summary": "disk full"}}]}"#;
        let Ok(payload) = Payload::parse(payload.as_bytes()) else {
            panic!("payload");
        };
        let alerts: Vec<Candidate> = payload
            .candidates(&RouteKey::default())
            .into_iter()
            .map(Candidate::Alert)
            .collect();
        let text = explain(&examples(), &alerts, crate::fixtures::at(0));
        assert!(
            text.contains(
                "route AlertRoute default/critical-alerts -> CallPolicy default/db-owners"
            ),
            "{text}"
        );
        assert!(
            text.contains("summary    \"DiskFull is firing. disk full\""),
            "{text}"
        );
    }

    #[test]
    fn a_sample_resolved_alert_says_what_it_does_to_a_page() {
        let payload = r#"{"version": "4", "alerts": [{"status": "resolved",
            "labels": {"alertname": "DiskFull", "severity": "critical", "team": "db", "service": "pg"}}]}"#;
        let Ok(payload) = Payload::parse(payload.as_bytes()) else {
            panic!("payload");
        };
        let alerts: Vec<Candidate> = payload
            .candidates(&RouteKey::default())
            .into_iter()
            .map(Candidate::Alert)
            .collect();
        let text = explain(&examples(), &alerts, crate::fixtures::at(0));
        assert!(
            text.contains("ends Resolved (onResolved: Cancel)"),
            "{text}"
        );
    }
}
