//! The AlertCall a page creates, built purely from the route, the policy's template and the
//! candidate; and the group's last page recovered from existing AlertCalls.

use std::collections::BTreeMap;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::ResourceExt;

use super::candidate::{Candidate, RouteKey};
use super::group::{group_hash, GroupKey};
use crate::api::alert_call::CANCEL_CALLS_FINALIZER;
use crate::api::{AlertCall, AlertCallSpec, AlertRoute, LocalRef, SourceSpec};
use crate::message::{render_or_fallback, TemplateError};

/// Label: name of the AlertRoute that created the page (when it fits a label value).
pub const LABEL_ROUTE: &str = "alertcall.dev/route";
/// Label: [`group_hash`] of route and group key; selects every page of a group.
pub const LABEL_GROUP_HASH: &str = "alertcall.dev/group-hash";
/// Label: `KubernetesEvent` or `Alertmanager`.
pub const LABEL_SOURCE: &str = "alertcall.dev/source";
/// Annotation: the full route name, also when it is too long for a label.
pub const ANNOTATION_ROUTE: &str = "alertcall.dev/route";
/// Annotation: the readable group key.
pub const ANNOTATION_GROUP_KEY: &str = "alertcall.dev/group-key";

/// Longest summary the AlertCall schema accepts (characters).
const SUMMARY_MAX: usize = 2000;
/// Longest group key kept in `spec.groupKey` and its annotation (characters); the group hash is
/// computed from the whole key.
const GROUP_KEY_MAX: usize = 1024;

/// Longest label value copied into `spec.source.labels`, in bytes with [`TRUNCATED_SUFFIX`].
pub const SOURCE_LABEL_VALUE_MAX: usize = 1024;
/// Most bytes of names and values `spec.source.labels` holds in all. A label is whatever the
/// sender put there: one 1.7 MB value made every create fail ("etcdserver: request is too large")
/// on every retry, so nobody was paged. 16 KiB keeps an AlertCall far below etcd's 1.5 MiB.
pub const SOURCE_LABELS_TOTAL_MAX: usize = 16 * 1024;
/// Ends a label value cut to [`SOURCE_LABEL_VALUE_MAX`].
pub const TRUNCATED_SUFFIX: &str = "…(truncated)";
/// Key added to `spec.source.labels` with value `"true"` when the copy is not whole: a value was
/// cut, or entries were dropped to stay under [`SOURCE_LABELS_TOTAL_MAX`].
pub const LABEL_TRUNCATED: &str = "alertcall.dev/truncated";

/// What [`build_alert_call`] needs beyond the candidate.
#[derive(Debug, Clone, Copy)]
pub struct PageRequest<'a> {
    pub route: &'a AlertRoute,
    /// The policy's `spec.message.template`, used when the route has no override.
    pub policy_template: &'a str,
    pub group_key: &'a GroupKey,
    /// From [`super::group::decide`].
    pub name: &'a str,
    pub now: Timestamp,
    /// From [`super::group::decide`]: the end of the group wait, carried as `spec.notBefore`.
    pub not_before: Option<Timestamp>,
}

/// The AlertCall to create, and the template error if the summary fell back to plain text (for
/// the route's status: the page still goes out).
#[derive(Debug)]
pub struct BuiltCall {
    pub call: AlertCall,
    pub template_error: Option<TemplateError>,
}

fn label_value_ok(value: &str) -> bool {
    value.len() <= 63
        && (value.is_empty()
            || (value.starts_with(|c: char| c.is_ascii_alphanumeric())
                && value.ends_with(|c: char| c.is_ascii_alphanumeric())
                && value
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))))
}

/// The longest prefix of `text` of at most `max` bytes, cut at a character boundary.
fn prefix_bytes(text: &str, max: usize) -> &str {
    let mut end = max.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// The copy of a signal's labels stored in `spec.source.labels`, bounded (routing and group keys
/// use the original labels, so capping never changes where a signal goes): values longer than
/// [`SOURCE_LABEL_VALUE_MAX`] are cut and end in [`TRUNCATED_SUFFIX`]; entries are then kept in
/// name order while they fit [`SOURCE_LABELS_TOTAL_MAX`], the others dropped whole (as are names
/// longer than a value may be); any of that adds [`LABEL_TRUNCATED`].
pub fn capped_source_labels(labels: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let marker_cost = LABEL_TRUNCATED.len() + "true".len();
    let mut budget = SOURCE_LABELS_TOTAL_MAX - marker_cost;
    let mut truncated = false;
    let mut capped = BTreeMap::new();
    for (name, value) in labels {
        if name.len() > SOURCE_LABEL_VALUE_MAX {
            truncated = true;
            continue;
        }
        let value = if value.len() > SOURCE_LABEL_VALUE_MAX {
            truncated = true;
            let kept = prefix_bytes(value, SOURCE_LABEL_VALUE_MAX - TRUNCATED_SUFFIX.len());
            format!("{kept}{TRUNCATED_SUFFIX}")
        } else {
            value.clone()
        };
        let cost = name.len() + value.len();
        if cost > budget {
            truncated = true;
            continue;
        }
        budget -= cost;
        capped.insert(name.clone(), value);
    }
    if truncated {
        capped.insert(LABEL_TRUNCATED.to_string(), "true".to_string());
    }
    capped
}

fn truncate_chars(text: String, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((end, _)) => text[..end].to_string(),
        None => text,
    }
}

/// Builds the AlertCall for a page of `candidate`.
pub fn build_alert_call(request: PageRequest<'_>, candidate: &Candidate) -> BuiltCall {
    let route = request.route;
    let key = RouteKey::new(route.namespace().unwrap_or_default(), route.name_any());
    let template = route
        .spec
        .message
        .as_ref()
        .map(|m| m.template.as_str())
        .unwrap_or(request.policy_template);
    let (summary, template_error) = render_or_fallback(template, &candidate.message_context());
    let source_kind = candidate.source_kind();

    let mut labels = BTreeMap::from([
        (
            LABEL_GROUP_HASH.to_string(),
            group_hash(&key, request.group_key),
        ),
        (
            LABEL_SOURCE.to_string(),
            match source_kind {
                crate::api::SourceKind::KubernetesEvent => "KubernetesEvent",
                crate::api::SourceKind::Alertmanager => "Alertmanager",
                crate::api::SourceKind::Manual => "Manual",
            }
            .to_string(),
        ),
        (
            "app.kubernetes.io/managed-by".to_string(),
            "alertcall".to_string(),
        ),
    ]);
    if label_value_ok(&key.name) {
        labels.insert(LABEL_ROUTE.to_string(), key.name.clone());
    }
    let annotations = BTreeMap::from([
        (ANNOTATION_ROUTE.to_string(), key.name.clone()),
        (
            ANNOTATION_GROUP_KEY.to_string(),
            truncate_chars(request.group_key.to_string(), GROUP_KEY_MAX),
        ),
    ]);

    let first_seen = candidate.first_seen().unwrap_or(request.now);
    let last_seen = candidate.last_seen().unwrap_or(request.now).max(first_seen);
    let call = AlertCall {
        metadata: ObjectMeta {
            name: Some(request.name.to_string()),
            namespace: Some(key.namespace.clone()),
            labels: Some(labels),
            annotations: Some(annotations),
            finalizers: Some(vec![CANCEL_CALLS_FINALIZER.to_string()]),
            ..Default::default()
        },
        spec: AlertCallSpec {
            policy_ref: route.spec.policy_ref.clone(),
            route_ref: Some(LocalRef {
                name: key.name.clone(),
            }),
            group_key: truncate_chars(request.group_key.to_string(), GROUP_KEY_MAX),
            summary: truncate_chars(summary, SUMMARY_MAX),
            source: SourceSpec {
                kind: source_kind,
                labels: capped_source_labels(&candidate.source_labels()),
                first_seen: Some(Time(first_seen)),
                last_seen: Some(Time(last_seen)),
                count: candidate.count(),
                resolved_at: None,
            },
            acknowledged: false,
            not_before: request.not_before.map(Time),
            // NB: copied so the controller decides a resolve from the page alone: the route
            // may be edited or gone by then, and the page keeps the promise it was made with.
            on_resolved: route.spec.on_resolved,
            test: false,
            test_recipients: Vec::new(),
        },
        status: None,
    };
    BuiltCall {
        call,
        template_error,
    }
}

/// The group's last page: the newest creation time among AlertCalls of the same route carrying
/// the group's hash label.
pub fn last_page<'a>(
    calls: impl IntoIterator<Item = &'a AlertCall>,
    route: &RouteKey,
    key: &GroupKey,
) -> Option<Timestamp> {
    let hash = group_hash(route, key);
    calls
        .into_iter()
        .filter(|call| call.namespace().as_deref() == Some(route.namespace.as_str()))
        .filter(|call| call.labels().get(LABEL_GROUP_HASH) == Some(&hash))
        .filter_map(|call| call.metadata.creation_timestamp.as_ref().map(|t| t.0))
        .max()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::call_policy::DEFAULT_TEMPLATE;
    use crate::api::{MessageOverride, OnResolved, SourceKind};
    use crate::fixtures;
    use crate::routing::candidate::{AlertCandidate, EventCandidate, InvolvedObject};
    use crate::routing::group::{alert_call_name, Window};

    fn ts(seconds: i64) -> Timestamp {
        Timestamp::from_second(seconds).unwrap_or_default()
    }

    fn route(name: &str) -> AlertRoute {
        let mut route = AlertRoute::new(name, fixtures::route_spec());
        route.metadata.namespace = Some("prod".into());
        route
    }

    fn backoff() -> Candidate {
        Candidate::Event(EventCandidate {
            type_: "Warning".into(),
            reason: "BackOff".into(),
            message: "Back-off restarting failed container".into(),
            involved: InvolvedObject {
                kind: "Pod".into(),
                name: "api-7f9".into(),
                namespace: "prod".into(),
            },
            namespace: "prod".into(),
            count: 5,
            first_seen: Some(ts(100)),
            last_seen: Some(ts(160)),
            ..Default::default()
        })
    }

    fn build(route: &AlertRoute, candidate: &Candidate) -> BuiltCall {
        let key = GroupKey::of(&route.spec.grouping.group_by, candidate);
        let name = alert_call_name(
            &RouteKey::new("prod", route.name_any()),
            &key,
            &Window::at(ts(200), 3600, None),
        );
        build_alert_call(
            PageRequest {
                route,
                policy_template: DEFAULT_TEMPLATE,
                group_key: &key,
                name: &name,
                now: ts(200),
                not_before: None,
            },
            candidate,
        )
    }

    #[test]
    fn builds_an_event_page() {
        let route = route("critical-pods");
        let built = build(&route, &backoff());
        assert!(built.template_error.is_none());
        let call = built.call;
        assert_eq!(call.metadata.namespace.as_deref(), Some("prod"));
        assert!(call.name_any().starts_with("critical-pods-"));
        // Held from the create: the controller's first dial needs no finalizer write first.
        assert_eq!(call.finalizers(), [CANCEL_CALLS_FINALIZER]);
        let labels = call.labels();
        assert_eq!(
            labels.get(LABEL_ROUTE).map(String::as_str),
            Some("critical-pods")
        );
        assert_eq!(
            labels.get(LABEL_GROUP_HASH),
            Some(&group_hash(
                &RouteKey::new("prod", "critical-pods"),
                &GroupKey::of(&route.spec.grouping.group_by, &backoff())
            ))
        );
        assert_eq!(
            labels.get(LABEL_SOURCE).map(String::as_str),
            Some("KubernetesEvent")
        );
        assert_eq!(call.spec.policy_ref.name, "oncall");
        assert_eq!(
            call.spec.route_ref.as_ref().map(|r| r.name.as_str()),
            Some("critical-pods")
        );
        assert_eq!(call.spec.group_key, "prod/Pod/api-7f9/BackOff");
        assert_eq!(
            call.spec.summary,
            "Alert. BackOff on Pod prod/api-7f9. Back-off restarting failed container"
        );
        assert_eq!(call.spec.source.kind, SourceKind::KubernetesEvent);
        assert_eq!(call.spec.source.count, Some(5));
        assert_eq!(call.spec.source.first_seen, Some(Time(ts(100))));
        assert_eq!(call.spec.source.last_seen, Some(Time(ts(160))));
        assert_eq!(
            call.spec.source.labels.get("reason").map(String::as_str),
            Some("BackOff")
        );
        assert!(!call.spec.acknowledged);
        assert_eq!(call.spec.not_before, None);
        assert_eq!(call.spec.on_resolved, OnResolved::Cancel);
    }

    #[test]
    fn the_routes_choice_on_resolve_is_copied_onto_the_page() {
        let mut route = route("r");
        for choice in [OnResolved::Cancel, OnResolved::Continue] {
            route.spec.on_resolved = choice;
            assert_eq!(build(&route, &backoff()).call.spec.on_resolved, choice);
        }
    }

    #[test]
    fn the_group_wait_is_carried_in_the_spec() {
        let route = route("r");
        let key = GroupKey::of(&route.spec.grouping.group_by, &backoff());
        let request = PageRequest {
            route: &route,
            policy_template: DEFAULT_TEMPLATE,
            group_key: &key,
            name: "r-0123456789",
            now: ts(200),
            not_before: Some(ts(230)),
        };
        let built = build_alert_call(request, &backoff());
        // NB: status is a subresource the create ignores; only the spec can carry the wait.
        assert_eq!(built.call.spec.not_before, Some(Time(ts(230))));
        assert!(built.call.status.is_none());
    }

    #[test]
    fn route_template_overrides_policy_template() {
        let mut route = route("r");
        route.spec.message = Some(MessageOverride {
            template: "{{ reason }} x{{ count }}".into(),
        });
        assert_eq!(build(&route, &backoff()).call.spec.summary, "BackOff x5");
    }

    #[test]
    fn broken_template_falls_back_and_reports() {
        let mut route = route("r");
        route.spec.message = Some(MessageOverride {
            template: "{{ reason | nope }}".into(),
        });
        let built = build(&route, &backoff());
        assert!(built.template_error.is_some());
        assert_eq!(
            built.call.spec.summary,
            "Alert. BackOff. Pod prod/api-7f9. Back-off restarting failed container"
        );
    }

    #[test]
    fn alert_page_carries_labels_and_start_time() {
        let route = route("am");
        let alert = Candidate::Alert(AlertCandidate {
            labels: BTreeMap::from([
                ("alertname".to_string(), "HighLatency".to_string()),
                ("namespace".to_string(), "prod".to_string()),
                ("service".to_string(), "api".to_string()),
            ]),
            annotations: BTreeMap::from([("summary".to_string(), "p99 over 2s".to_string())]),
            starts_at: Some(ts(50)),
            route: RouteKey::new("prod", "am"),
            ..Default::default()
        });
        let call = build(&route, &alert).call;
        assert_eq!(call.spec.source.kind, SourceKind::Alertmanager);
        assert_eq!(
            call.spec.source.labels.get("service").map(String::as_str),
            Some("api")
        );
        assert_eq!(call.spec.source.first_seen, Some(Time(ts(50))));
        assert_eq!(call.spec.source.last_seen, Some(Time(ts(200))));
        assert_eq!(call.spec.source.count, None);
        assert_eq!(
            call.spec.summary,
            "Alert. HighLatency on Service prod/api. p99 over 2s"
        );
    }

    #[test]
    fn long_summary_is_cut_to_the_schema_limit() {
        let mut route = route("r");
        route.spec.message = Some(MessageOverride {
            template: "{{ message }}".into(),
        });
        let mut candidate = backoff();
        if let Candidate::Event(event) = &mut candidate {
            event.message = "あ".repeat(3000);
        }
        assert_eq!(
            build(&route, &candidate).call.spec.summary.chars().count(),
            2000
        );
    }

    #[test]
    fn source_labels_are_capped_per_value_and_in_total() {
        let small = BTreeMap::from([("severity".to_string(), "critical".to_string())]);
        assert_eq!(capped_source_labels(&small), small);

        let huge = "v".repeat(1_700_000);
        let capped = capped_source_labels(&BTreeMap::from([
            ("alertname".to_string(), "Big".to_string()),
            ("blob".to_string(), huge),
            ("障害".to_string(), "障".repeat(1000)),
        ]));
        assert_eq!(capped["alertname"], "Big");
        assert_eq!(capped[LABEL_TRUNCATED], "true");
        for value in [&capped["blob"], &capped["障害"]] {
            assert!(value.len() <= SOURCE_LABEL_VALUE_MAX, "{}", value.len());
            assert!(value.ends_with(TRUNCATED_SUFFIX));
        }
        assert!(capped["blob"].starts_with("vvvv"));

        // 100 values of 1 KiB: the first ones in name order are kept whole, the rest dropped.
        let many: BTreeMap<String, String> = (0..100)
            .map(|i| (format!("l{i:03}"), "x".repeat(1000)))
            .collect();
        let capped = capped_source_labels(&many);
        let total: usize = capped.iter().map(|(k, v)| k.len() + v.len()).sum();
        assert!(total <= SOURCE_LABELS_TOTAL_MAX, "{total}");
        assert_eq!(capped[LABEL_TRUNCATED], "true");
        let kept: Vec<&String> = capped.keys().filter(|k| k.starts_with('l')).collect();
        assert_eq!(kept.len(), 16);
        assert_eq!(kept[0], "l000");
        assert_eq!(kept[15], "l015");
        assert!(capped.values().all(|v| !v.ends_with(TRUNCATED_SUFFIX)));
        assert_eq!(capped_source_labels(&many), capped, "deterministic");

        let long_name = BTreeMap::from([("n".repeat(2000), "v".to_string())]);
        assert_eq!(
            capped_source_labels(&long_name),
            BTreeMap::from([(LABEL_TRUNCATED.to_string(), "true".to_string())])
        );
    }

    #[test]
    fn a_huge_label_is_capped_in_the_object_but_groups_by_its_whole_value() {
        let mut route = route("am");
        route.spec.grouping.group_by = vec!["...".into()];
        let labels = |blob: &str| {
            BTreeMap::from([
                ("alertname".to_string(), "Big".to_string()),
                ("blob".to_string(), blob.to_string()),
            ])
        };
        let alert = |blob: &str| {
            Candidate::Alert(AlertCandidate {
                labels: labels(blob),
                route: RouteKey::new("prod", "am"),
                ..Default::default()
            })
        };
        let a = format!("{}a", "v".repeat(1_700_000));
        let b = format!("{}b", "v".repeat(1_700_000));
        let call_a = build(&route, &alert(&a)).call;
        let call_b = build(&route, &alert(&b)).call;
        // Alerts that differ only past the cut are still different groups.
        assert_ne!(
            call_a.labels().get(LABEL_GROUP_HASH),
            call_b.labels().get(LABEL_GROUP_HASH)
        );
        assert_eq!(
            call_a.labels().get(LABEL_GROUP_HASH),
            Some(&group_hash(
                &RouteKey::new("prod", "am"),
                &GroupKey::of(&route.spec.grouping.group_by, &alert(&a))
            ))
        );
        let size = serde_json::to_vec(&call_a)
            .map(|v| v.len())
            .unwrap_or(usize::MAX);
        assert!(size < 32 * 1024, "{size} bytes");
        assert_eq!(call_a.spec.source.labels[LABEL_TRUNCATED], "true");
        assert!(call_a.spec.source.labels["blob"].ends_with(TRUNCATED_SUFFIX));
    }

    #[test]
    fn route_names_too_long_for_a_label_go_to_the_annotation_only() {
        let long = "r".repeat(70);
        let call = build(&route(&long), &backoff()).call;
        assert!(call.labels().get(LABEL_ROUTE).is_none());
        assert_eq!(call.annotations().get(ANNOTATION_ROUTE), Some(&long));
        assert!(call.name_any().len() <= 63);
    }

    #[test]
    fn last_page_is_the_newest_call_of_the_group() {
        let route = route("r");
        let candidate = backoff();
        let mut older = build(&route, &candidate).call;
        older.metadata.creation_timestamp = Some(Time(ts(100)));
        let mut newer = older.clone();
        newer.metadata.creation_timestamp = Some(Time(ts(300)));
        let mut other_group = older.clone();
        other_group.metadata.creation_timestamp = Some(Time(ts(900)));
        other_group
            .labels_mut()
            .insert(LABEL_GROUP_HASH.into(), "0000000000000000".into());
        let mut other_namespace = newer.clone();
        other_namespace.metadata.namespace = Some("dev".into());
        other_namespace.metadata.creation_timestamp = Some(Time(ts(950)));
        let key = GroupKey::of(&route.spec.grouping.group_by, &candidate);
        let calls = [older, newer, other_group, other_namespace];
        assert_eq!(
            last_page(&calls, &RouteKey::new("prod", "r"), &key),
            Some(ts(300))
        );
        assert_eq!(
            last_page(&calls, &RouteKey::new("prod", "r"), &GroupKey::default()),
            None
        );
    }
}
