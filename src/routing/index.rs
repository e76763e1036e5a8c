//! The route index: AlertRoutes compiled once (matchers, selectors) and bucketed by event reason
//! and kind, so that a storm of events no route cares about costs a hash lookup each.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::ResourceExt;

use super::candidate::{AlertCandidate, Candidate, EventCandidate, RouteKey};
use super::matchers::{MatcherError, Matchers};
use super::selector::{Selector, SelectorError};
use crate::api::validate::Problem;
use crate::api::{AlertRoute, AlertRouteSpec, EventType, KubernetesEventsSpec};
use crate::schedule::interval::Intervals;

/// Why a route cannot match: it matches nothing until fixed, and shows this as `Ready=False`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    #[error("spec.alertmanager.matchers[{index}]: {source}")]
    Matcher { index: usize, source: MatcherError },
    #[error("spec.kubernetesEvents.{field}: {source}")]
    Selector {
        field: &'static str,
        source: SelectorError,
    },
    #[error("{0}")]
    TimeInterval(crate::schedule::Problem),
}

impl RouteError {
    /// Stable short reason for conditions, Events and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            RouteError::Matcher { .. } => "InvalidMatcher",
            RouteError::Selector { .. } => "InvalidSelector",
            RouteError::TimeInterval(problem) => problem.reason,
        }
    }

    /// The spec field at fault.
    pub fn field(&self) -> String {
        match self {
            RouteError::Matcher { index, .. } => format!("spec.alertmanager.matchers[{index}]"),
            RouteError::Selector { field, .. } => format!("spec.kubernetesEvents.{field}"),
            RouteError::TimeInterval(problem) => problem.field.clone(),
        }
    }

    /// As a validation problem, for `alertcall check` and the route's `Ready` message.
    pub fn to_problem(&self) -> Problem {
        Problem {
            field: self.field(),
            message: match self {
                RouteError::Matcher { source, .. } => source.to_string(),
                RouteError::Selector { source, .. } => source.to_string(),
                RouteError::TimeInterval(problem) => problem.message.clone(),
            },
        }
    }
}

#[derive(Debug, Clone)]
struct EventFilter {
    types: Vec<String>,
    reasons: Vec<String>,
    kinds: Vec<String>,
    /// None: only events in the route's own namespace.
    namespace_selector: Option<Selector>,
    object_selector: Option<Selector>,
    event_selector: Option<Selector>,
    min_count: i64,
}

impl EventFilter {
    fn compile(spec: &KubernetesEventsSpec, errors: &mut Vec<RouteError>) -> Self {
        let mut compile = |field: &'static str, selector: &Option<LabelSelector>| {
            let selector = selector.as_ref()?;
            Selector::compile(selector)
                .map_err(|source| errors.push(RouteError::Selector { field, source }))
                .ok()
        };
        let namespace_selector = compile("namespaceSelector", &spec.namespace_selector);
        let object_selector = compile("objectSelector", &spec.object_selector);
        let event_selector = compile("eventSelector", &spec.event_selector);
        Self {
            types: spec
                .types
                .iter()
                .map(|t| match t {
                    EventType::Normal => "Normal".to_string(),
                    EventType::Warning => "Warning".to_string(),
                })
                .collect(),
            reasons: spec.reasons.clone(),
            kinds: spec.involved_kinds.clone(),
            namespace_selector,
            object_selector,
            event_selector,
            min_count: i64::from(spec.min_count.max(1)),
        }
    }

    fn matches(&self, route_namespace: &str, event: &EventCandidate) -> bool {
        let listed =
            |list: &[String], value: &str| list.is_empty() || list.iter().any(|v| v == value);
        listed(&self.types, &event.type_)
            && listed(&self.reasons, &event.reason)
            && listed(&self.kinds, &event.involved.kind)
            && event.count >= self.min_count
            && match &self.namespace_selector {
                Some(selector) => selector.matches(&event.namespace_labels),
                None => event.namespace == route_namespace,
            }
            && self
                .object_selector
                .as_ref()
                .is_none_or(|s| s.matches(&event.object_labels))
            && self
                .event_selector
                .as_ref()
                .is_none_or(|s| s.matches(&event.event_labels))
    }
}

/// One AlertRoute, compiled.
#[derive(Debug, Clone)]
pub struct CompiledRoute {
    pub key: RouteKey,
    pub route: Arc<AlertRoute>,
    /// Matcher and selector problems; a route with any matches nothing.
    pub errors: Vec<RouteError>,
    events: Option<EventFilter>,
    alertmanager: Option<Matchers>,
    windows: Windows,
}

/// When a route pages: inside `active` (when given) and outside `mute`.
#[derive(Debug, Clone, Default)]
struct Windows {
    active: Intervals,
    mute: Intervals,
}

impl Windows {
    fn compile(spec: &AlertRouteSpec, errors: &mut Vec<RouteError>) -> Windows {
        let mut compile = |intervals, field| {
            Intervals::compile(intervals, field).unwrap_or_else(|problems| {
                errors.extend(problems.into_iter().map(RouteError::TimeInterval));
                Intervals::default()
            })
        };
        Windows {
            active: compile(&spec.active_time_intervals, "spec.activeTimeIntervals"),
            mute: compile(&spec.mute_time_intervals, "spec.muteTimeIntervals"),
        }
    }
}

impl CompiledRoute {
    pub fn compile(route: Arc<AlertRoute>) -> Self {
        let key = RouteKey::new(route.namespace().unwrap_or_default(), route.name_any());
        let mut errors = Vec::new();
        let events = route
            .spec
            .kubernetes_events
            .as_ref()
            .map(|spec| EventFilter::compile(spec, &mut errors));
        let alertmanager = route.spec.alertmanager.as_ref().map(|spec| {
            Matchers::parse_all(&spec.matchers).unwrap_or_else(|problems| {
                errors.extend(
                    problems
                        .into_iter()
                        .map(|(index, source)| RouteError::Matcher { index, source }),
                );
                Matchers::default()
            })
        });
        let windows = Windows::compile(&route.spec, &mut errors);
        Self {
            key,
            route,
            errors,
            events,
            alertmanager,
            windows,
        }
    }

    /// Outside its active windows, or inside a mute window, at `at`: a matching signal counts as
    /// suppressed and pages nobody.
    pub fn is_muted_at(&self, at: jiff::Timestamp) -> bool {
        let Windows { active, mute } = &self.windows;
        mute.contains(at) || (!active.is_empty() && !active.contains(at))
    }

    /// Can match at all: not suspended and free of errors.
    pub fn is_active(&self) -> bool {
        !self.route.spec.suspend && self.errors.is_empty()
    }

    /// Whether this route pages for the candidate (suspend and errors included).
    pub fn matches(&self, candidate: &Candidate) -> bool {
        self.is_active()
            && match candidate {
                Candidate::Event(event) => self.matches_event(event),
                Candidate::Alert(alert) => self.matches_alert(alert),
            }
    }

    fn matches_event(&self, event: &EventCandidate) -> bool {
        self.events
            .as_ref()
            .is_some_and(|filter| filter.matches(&self.key.namespace, event))
    }

    fn matches_alert(&self, alert: &AlertCandidate) -> bool {
        alert.route == self.key
            && self
                .alertmanager
                .as_ref()
                .is_some_and(|matchers| matchers.matches(&alert.labels))
    }
}

/// Every AlertRoute, compiled and indexed. Rebuild it when a route changes.
#[derive(Debug, Clone, Default)]
pub struct RouteIndex {
    routes: Vec<CompiledRoute>,
    /// Active event routes that list reasons, under each reason.
    by_reason: HashMap<String, Vec<usize>>,
    /// Active event routes with no reasons but some kinds, under each kind.
    by_kind: HashMap<String, Vec<usize>>,
    /// Active event routes with neither: checked for every event.
    any_event: Vec<usize>,
    /// Active Alertmanager routes by their key (an alert only matches the route it was posted to).
    by_key: HashMap<RouteKey, usize>,
}

impl RouteIndex {
    pub fn new<R: Into<Arc<AlertRoute>>>(routes: impl IntoIterator<Item = R>) -> Self {
        let mut compiled: Vec<CompiledRoute> = routes
            .into_iter()
            .map(|r| CompiledRoute::compile(r.into()))
            .collect();
        // Deterministic order: matches come out sorted by namespace/name.
        compiled.sort_by(|a, b| a.key.cmp(&b.key));
        compiled.dedup_by(|a, b| a.key == b.key);
        let mut index = RouteIndex {
            routes: Vec::new(),
            ..Default::default()
        };
        for (position, route) in compiled.iter().enumerate() {
            if !route.is_active() {
                continue;
            }
            if let Some(filter) = &route.events {
                if !filter.reasons.is_empty() {
                    for reason in &filter.reasons {
                        let bucket = index.by_reason.entry(reason.clone()).or_default();
                        if bucket.last() != Some(&position) {
                            bucket.push(position);
                        }
                    }
                } else if !filter.kinds.is_empty() {
                    for kind in &filter.kinds {
                        let bucket = index.by_kind.entry(kind.clone()).or_default();
                        if bucket.last() != Some(&position) {
                            bucket.push(position);
                        }
                    }
                } else {
                    index.any_event.push(position);
                }
            }
            if route.alertmanager.is_some() {
                index.by_key.insert(route.key.clone(), position);
            }
        }
        index.routes = compiled;
        index
    }

    /// Every route that matches the candidate (all of them, like `continue: true`), sorted by
    /// namespace/name. Resolved alerts match too, so the caller can close their groups' repeat
    /// windows ([`super::GroupTracker::resolved`]); only firing signals page.
    /// Active heartbeat routes: each must hear a signal within its interval.
    pub fn heartbeats(&self) -> impl Iterator<Item = &CompiledRoute> {
        self.routes
            .iter()
            .filter(|route| route.is_active() && route.route.spec.heartbeat.is_some())
    }

    pub fn matching(&self, candidate: &Candidate) -> Vec<&CompiledRoute> {
        let positions: Vec<usize> = match candidate {
            Candidate::Event(event) => {
                let mut positions: Vec<usize> = [
                    self.by_reason.get(&event.reason),
                    self.by_kind.get(&event.involved.kind),
                    Some(&self.any_event),
                ]
                .into_iter()
                .flatten()
                .flatten()
                .copied()
                .collect();
                // The buckets are disjoint (a route sits under reasons, or kinds, or neither),
                // and one event has one reason and kind, so sorting suffices.
                positions.sort_unstable();
                positions
            }
            Candidate::Alert(alert) => self.by_key.get(&alert.route).copied().into_iter().collect(),
        };
        positions
            .into_iter()
            .map(|position| &self.routes[position])
            .filter(|route| route.matches(candidate))
            .collect()
    }

    /// A route by key, active or not.
    pub fn get(&self, key: &RouteKey) -> Option<&CompiledRoute> {
        self.routes
            .binary_search_by(|route| route.key.cmp(key))
            .ok()
            .map(|position| &self.routes[position])
    }

    /// Every route's errors (empty for a valid route), for the controller's `Ready` condition.
    pub fn errors(&self) -> BTreeMap<&RouteKey, &[RouteError]> {
        self.routes
            .iter()
            .map(|route| (&route.key, route.errors.as_slice()))
            .collect()
    }

    pub fn routes(&self) -> &[CompiledRoute] {
        &self.routes
    }

    pub fn len(&self) -> usize {
        self.routes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{AlertRouteSpec, AlertmanagerSpec, SecretKeyRef};
    use crate::fixtures;
    use crate::routing::candidate::{AlertStatus, InvolvedObject};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    fn route(namespace: &str, name: &str, spec: AlertRouteSpec) -> AlertRoute {
        let mut route = AlertRoute::new(name, spec);
        route.metadata.namespace = Some(namespace.into());
        route
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn selector(pairs: &[(&str, &str)]) -> Option<LabelSelector> {
        Some(LabelSelector {
            match_labels: Some(labels(pairs)),
            match_expressions: None,
        })
    }

    fn backoff() -> EventCandidate {
        EventCandidate {
            type_: "Warning".into(),
            reason: "BackOff".into(),
            message: "Back-off restarting failed container".into(),
            involved: InvolvedObject {
                kind: "Pod".into(),
                name: "api-7f9".into(),
                namespace: "prod".into(),
            },
            namespace: "prod".into(),
            count: 3,
            event_labels: labels(&[("source", "kubelet")]),
            object_labels: labels(&[("tier", "critical")]),
            namespace_labels: labels(&[("alerting", "enabled")]),
            ..Default::default()
        }
    }

    fn am_spec(matchers: &[&str]) -> AlertmanagerSpec {
        AlertmanagerSpec {
            matchers: matchers.iter().map(|m| m.to_string()).collect(),
            bearer_token_secret_ref: SecretKeyRef {
                name: "am".into(),
                key: "token".into(),
            },
        }
    }

    fn matches(spec: AlertRouteSpec, candidate: EventCandidate) -> bool {
        let index = RouteIndex::new([route("prod", "r", spec)]);
        !index.matching(&Candidate::Event(candidate)).is_empty()
    }

    /// Each row changes one thing about the route or the event; `want` is whether it still pages.
    #[test]
    fn event_filter_table() {
        type Edit = fn(&mut AlertRouteSpec, &mut EventCandidate);
        fn events(spec: &mut AlertRouteSpec) -> &mut KubernetesEventsSpec {
            spec.kubernetes_events.get_or_insert_with(Default::default)
        }
        let table: Vec<(&str, Edit, bool)> = vec![
            ("baseline", |_, _| {}, true),
            ("type differs", |_, e| e.type_ = "Normal".into(), false),
            (
                "types empty = any",
                |s, e| {
                    events(s).types.clear();
                    e.type_ = "Normal".into();
                },
                true,
            ),
            ("reason differs", |_, e| e.reason = "Pulled".into(), false),
            (
                "reasons empty = any",
                |s, e| {
                    events(s).reasons.clear();
                    e.reason = "Pulled".into();
                },
                true,
            ),
            (
                "kind differs",
                |_, e| e.involved.kind = "Node".into(),
                false,
            ),
            (
                "kinds empty = any",
                |s, e| {
                    events(s).involved_kinds.clear();
                    e.involved.kind = "Node".into();
                },
                true,
            ),
            (
                "other namespace without namespaceSelector",
                |_, e| e.namespace = "dev".into(),
                false,
            ),
            (
                "namespaceSelector matches other namespace",
                |s, e| {
                    events(s).namespace_selector = selector(&[("alerting", "enabled")]);
                    e.namespace = "dev".into();
                },
                true,
            ),
            (
                "namespaceSelector fails",
                |s, _| {
                    events(s).namespace_selector = selector(&[("alerting", "disabled")]);
                },
                false,
            ),
            (
                "empty namespaceSelector = every namespace",
                |s, e| {
                    events(s).namespace_selector = Some(LabelSelector::default());
                    e.namespace = "dev".into();
                },
                true,
            ),
            (
                "objectSelector matches",
                |s, _| {
                    events(s).object_selector = selector(&[("tier", "critical")]);
                },
                true,
            ),
            (
                "objectSelector fails",
                |s, _| {
                    events(s).object_selector = selector(&[("tier", "low")]);
                },
                false,
            ),
            (
                "eventSelector matches",
                |s, _| {
                    events(s).event_selector = selector(&[("source", "kubelet")]);
                },
                true,
            ),
            (
                "eventSelector fails",
                |s, _| {
                    events(s).event_selector = selector(&[("source", "other")]);
                },
                false,
            ),
            ("count at minCount", |s, _| events(s).min_count = 3, true),
            (
                "count under minCount",
                |s, _| events(s).min_count = 4,
                false,
            ),
            ("suspended", |s, _| s.suspend = true, false),
            (
                "no kubernetesEvents",
                |s, _| s.kubernetes_events = None,
                false,
            ),
        ];
        for (name, edit, want) in table {
            let mut spec = fixtures::route_spec();
            let mut event = backoff();
            edit(&mut spec, &mut event);
            assert_eq!(matches(spec, event), want, "{name}");
        }
    }

    #[test]
    fn all_matching_routes_fire_in_name_order() {
        let mut by_kind = fixtures::route_spec();
        if let Some(events) = by_kind.kubernetes_events.as_mut() {
            events.reasons.clear();
        }
        let mut any = fixtures::route_spec();
        any.kubernetes_events = Some(KubernetesEventsSpec {
            min_count: 1,
            ..Default::default()
        });
        let mut other = fixtures::route_spec();
        if let Some(events) = other.kubernetes_events.as_mut() {
            events.reasons = vec!["OOMKilling".into()];
        }
        let index = RouteIndex::new([
            route("prod", "c-any", any),
            route("prod", "a-reason", fixtures::route_spec()),
            route("prod", "b-kind", by_kind),
            route("prod", "d-other", other),
        ]);
        let names: Vec<&str> = index
            .matching(&Candidate::Event(backoff()))
            .iter()
            .map(|r| r.key.name.as_str())
            .collect();
        assert_eq!(names, vec!["a-reason", "b-kind", "c-any"]);
    }

    #[test]
    fn storm_of_unlisted_reasons_touches_no_route() {
        let index = RouteIndex::new([route("prod", "r", fixtures::route_spec())]);
        let mut event = backoff();
        event.reason = "Pulled".into();
        event.involved.kind = "ReplicaSet".into();
        assert!(!index.by_reason.contains_key(&event.reason));
        assert!(index.by_kind.is_empty() && index.any_event.is_empty());
        assert!(index.matching(&Candidate::Event(event)).is_empty());
    }

    #[test]
    fn a_bad_route_reports_errors_and_others_still_match() {
        let mut bad = fixtures::route_spec();
        if let Some(events) = bad.kubernetes_events.as_mut() {
            events.object_selector = Some(LabelSelector {
                match_labels: None,
                match_expressions: Some(vec![LabelSelectorRequirement {
                    key: "tier".into(),
                    operator: "Equals".into(),
                    values: Some(vec!["x".into()]),
                }]),
            });
        }
        bad.alertmanager = Some(am_spec(&["severity=critical", "team=~(", "ok=1"]));
        let index = RouteIndex::new([
            route("prod", "bad", bad),
            route("prod", "good", fixtures::route_spec()),
        ]);
        let matched: Vec<&str> = index
            .matching(&Candidate::Event(backoff()))
            .iter()
            .map(|r| r.key.name.as_str())
            .collect();
        assert_eq!(matched, vec!["good"]);
        let errors = index.errors();
        let bad_errors = errors
            .get(&RouteKey::new("prod", "bad"))
            .copied()
            .unwrap_or_default();
        assert_eq!(bad_errors.len(), 2);
        assert_eq!(bad_errors[0].reason(), "InvalidSelector");
        assert_eq!(
            bad_errors[0].field(),
            "spec.kubernetesEvents.objectSelector"
        );
        assert!(bad_errors[0]
            .to_string()
            .contains("unknown operator \"Equals\""));
        assert_eq!(bad_errors[1].reason(), "InvalidMatcher");
        assert_eq!(bad_errors[1].field(), "spec.alertmanager.matchers[1]");
        assert_eq!(
            bad_errors[1].to_problem().to_string(),
            "spec.alertmanager.matchers[1]: `team=~(`: invalid regex `(`: unclosed group (at character 7)"
        );
        assert_eq!(
            errors.get(&RouteKey::new("prod", "good")).map(|e| e.len()),
            Some(0)
        );
    }

    fn alert(route: RouteKey, pairs: &[(&str, &str)]) -> Candidate {
        Candidate::Alert(AlertCandidate {
            labels: labels(pairs),
            status: AlertStatus::Firing,
            route,
            ..Default::default()
        })
    }

    #[test]
    fn alerts_match_only_the_route_they_were_posted_to() {
        let mut spec = fixtures::route_spec();
        spec.alertmanager = Some(am_spec(&["severity=\"critical\"", "team=~\"sre|infra\""]));
        let mut suspended = spec.clone();
        suspended.suspend = true;
        let index = RouteIndex::new([
            route("prod", "am", spec.clone()),
            route("prod", "am-twin", spec),
            route("prod", "am-off", suspended),
        ]);
        let here = RouteKey::new("prod", "am");
        let names = |candidate: &Candidate| -> Vec<String> {
            index
                .matching(candidate)
                .iter()
                .map(|r| r.key.to_string())
                .collect()
        };
        assert_eq!(
            names(&alert(
                here.clone(),
                &[("severity", "critical"), ("team", "sre")]
            )),
            vec!["prod/am"]
        );
        assert!(names(&alert(
            here.clone(),
            &[("severity", "critical"), ("team", "sres")]
        ))
        .is_empty());
        assert!(names(&alert(here, &[("severity", "warning"), ("team", "sre")])).is_empty());
        assert!(names(&alert(
            RouteKey::new("prod", "am-off"),
            &[("severity", "critical"), ("team", "sre")]
        ))
        .is_empty());
        assert!(names(&alert(
            RouteKey::new("dev", "am"),
            &[("severity", "critical"), ("team", "sre")]
        ))
        .is_empty());
    }

    #[test]
    fn resolved_alerts_still_match_so_their_window_can_close() {
        let mut spec = fixtures::route_spec();
        spec.alertmanager = Some(am_spec(&["severity=critical"]));
        let index = RouteIndex::new([route("prod", "am", spec)]);
        let candidate = Candidate::Alert(AlertCandidate {
            labels: labels(&[("severity", "critical")]),
            status: AlertStatus::Resolved,
            route: RouteKey::new("prod", "am"),
            ..Default::default()
        });
        assert!(candidate.is_resolved());
        assert_eq!(index.matching(&candidate).len(), 1);
    }

    #[test]
    fn a_route_without_alertmanager_takes_no_alerts() {
        let index = RouteIndex::new([route("prod", "r", fixtures::route_spec())]);
        assert!(index
            .matching(&alert(RouteKey::new("prod", "r"), &[]))
            .is_empty());
    }

    #[test]
    fn get_finds_routes_by_key() {
        let index = RouteIndex::new([
            route("b", "x", fixtures::route_spec()),
            route("a", "y", fixtures::route_spec()),
        ]);
        assert_eq!(index.len(), 2);
        assert!(index.get(&RouteKey::new("a", "y")).is_some());
        assert!(index.get(&RouteKey::new("a", "x")).is_none());
    }

    #[test]
    fn a_bad_time_interval_makes_the_route_match_nothing_and_names_the_field() {
        let mut spec = fixtures::route_spec();
        spec.mute_time_intervals = vec![crate::api::TimeInterval {
            weekdays: vec!["funday".into()],
            ..Default::default()
        }];
        let compiled = CompiledRoute::compile(Arc::new(route("prod", "r", spec)));
        assert!(!compiled.is_active());
        let problems: Vec<_> = compiled
            .errors
            .iter()
            .map(|e| (e.reason(), e.to_problem().field))
            .collect();
        assert_eq!(
            problems,
            [(
                "InvalidTimeInterval",
                "spec.muteTimeIntervals[0].weekdays[0]".to_string()
            )]
        );
    }
}
