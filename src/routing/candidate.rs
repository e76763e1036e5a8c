//! Candidates: signals from a source, in the shape routing needs, and their message context.

use std::collections::BTreeMap;
use std::fmt;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Event;

use crate::api::SourceKind;
use crate::message::MessageContext;

/// A route by namespace and name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct RouteKey {
    pub namespace: String,
    pub name: String,
}

impl RouteKey {
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

impl fmt::Display for RouteKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// A signal that may page.
#[derive(Debug, Clone, PartialEq)]
pub enum Candidate {
    Event(EventCandidate),
    Alert(AlertCandidate),
}

/// The object a Kubernetes Event is about.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InvolvedObject {
    pub kind: String,
    pub name: String,
    /// Empty for cluster-scoped objects such as Nodes.
    pub namespace: String,
}

/// A core/v1 Event with the labels routing selects on.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EventCandidate {
    /// `Warning` or `Normal`.
    pub type_: String,
    pub reason: String,
    pub message: String,
    pub involved: InvolvedObject,
    /// The Event's own namespace (what `namespaceSelector` is evaluated for).
    pub namespace: String,
    /// Event.count, or the series count; at least 1.
    pub count: i64,
    pub event_labels: BTreeMap<String, String>,
    pub object_labels: BTreeMap<String, String>,
    pub namespace_labels: BTreeMap<String, String>,
    pub first_seen: Option<Timestamp>,
    pub last_seen: Option<Timestamp>,
}

impl EventCandidate {
    /// From a core/v1 Event plus the labels the source looked up (involved object, namespace).
    pub fn from_event(
        event: &Event,
        object_labels: BTreeMap<String, String>,
        namespace_labels: BTreeMap<String, String>,
    ) -> Self {
        let series_count = event.series.as_ref().and_then(|s| s.count);
        let count = series_count.or(event.count).unwrap_or(1).max(1);
        let first_seen = event
            .first_timestamp
            .as_ref()
            .map(|t| t.0)
            .or_else(|| event.event_time.as_ref().map(|t| t.0))
            .or_else(|| event.metadata.creation_timestamp.as_ref().map(|t| t.0));
        let last_seen = event
            .series
            .as_ref()
            .and_then(|s| s.last_observed_time.as_ref().map(|t| t.0))
            .or_else(|| event.last_timestamp.as_ref().map(|t| t.0))
            .or_else(|| event.event_time.as_ref().map(|t| t.0))
            .or(first_seen);
        let involved = &event.involved_object;
        Self {
            type_: event.type_.clone().unwrap_or_default(),
            reason: event.reason.clone().unwrap_or_default(),
            message: event.message.clone().unwrap_or_default(),
            involved: InvolvedObject {
                kind: involved.kind.clone().unwrap_or_default(),
                name: involved.name.clone().unwrap_or_default(),
                namespace: involved.namespace.clone().unwrap_or_default(),
            },
            namespace: event.metadata.namespace.clone().unwrap_or_default(),
            count: i64::from(count),
            event_labels: event.metadata.labels.clone().unwrap_or_default(),
            object_labels,
            namespace_labels,
            first_seen,
            last_seen,
        }
    }

    /// The event's fields by the names `groupBy` and templates use.
    pub fn field(&self, name: &str) -> Option<&str> {
        Some(match name {
            // NB: the involved object's namespace, empty for cluster-scoped objects: the event's
            // own namespace (often `default` for Nodes) would mislead in a spoken message.
            "namespace" => &self.involved.namespace,
            "kind" => &self.involved.kind,
            "name" => &self.involved.name,
            "reason" => &self.reason,
            "type" => &self.type_,
            _ => return None,
        })
    }

    pub fn message_context(&self) -> MessageContext {
        MessageContext {
            reason: self.reason.clone(),
            kind: self.involved.kind.clone(),
            namespace: self.involved.namespace.clone(),
            name: self.involved.name.clone(),
            message: self.message.clone(),
            type_: self.type_.clone(),
            count: self.count,
            summary: String::new(),
            labels: self.object_labels.clone(),
            annotations: BTreeMap::new(),
        }
    }

    /// `source.labels` of the AlertCall: the event's fields.
    pub fn source_labels(&self) -> BTreeMap<String, String> {
        ["namespace", "kind", "name", "reason", "type"]
            .into_iter()
            .filter_map(|field| {
                self.field(field)
                    .filter(|value| !value.is_empty())
                    .map(|value| (field.to_string(), value.to_string()))
            })
            .collect()
    }
}

/// Alertmanager's alert status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum AlertStatus {
    #[default]
    Firing,
    Resolved,
}

/// One alert of an Alertmanager webhook (payload version 4).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AlertCandidate {
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub status: AlertStatus,
    pub starts_at: Option<Timestamp>,
    pub ends_at: Option<Timestamp>,
    pub fingerprint: String,
    /// The route the webhook was posted to (`/alertmanager/{namespace}/{route}`).
    pub route: RouteKey,
}

/// Alert labels that name a Kubernetes object, in order of preference (kube-state-metrics names).
const OBJECT_LABELS: &[(&str, &str)] = &[
    ("pod", "Pod"),
    ("deployment", "Deployment"),
    ("statefulset", "StatefulSet"),
    ("daemonset", "DaemonSet"),
    ("job_name", "Job"),
    ("cronjob", "CronJob"),
    ("persistentvolumeclaim", "PersistentVolumeClaim"),
    ("node", "Node"),
    ("service", "Service"),
];

impl AlertCandidate {
    fn label(&self, name: &str) -> &str {
        self.labels.get(name).map(String::as_str).unwrap_or("")
    }

    fn annotation(&self, name: &str) -> &str {
        self.annotations.get(name).map(String::as_str).unwrap_or("")
    }

    /// The Kubernetes object the alert is about, from well-known labels; else the `instance`.
    fn object(&self) -> (&str, &str) {
        OBJECT_LABELS
            .iter()
            .find_map(|(label, kind)| {
                self.labels
                    .get(*label)
                    .filter(|v| !v.is_empty())
                    .map(|v| (*kind, v.as_str()))
            })
            .unwrap_or(("", self.label("instance")))
    }

    /// The value `groupBy` uses for `name`: the label if the alert has it, else for the event
    /// field names (`reason`, `kind`, `name`, `namespace`, `type`) the derived message field, so
    /// the default `groupBy` does not lump different alerts of a namespace together.
    pub fn field(&self, name: &str) -> String {
        if let Some(value) = self.labels.get(name) {
            return value.clone();
        }
        let context = self.message_context();
        match name {
            "reason" => context.reason,
            "kind" => context.kind,
            "name" => context.name,
            "namespace" => context.namespace,
            "type" => context.type_,
            _ => String::new(),
        }
    }

    /// `reason` is `alertname`, `summary` the summary annotation, `message` the description (or
    /// `message`, or the summary), `type` the `severity` label, `kind`/`name` the object named by
    /// well-known labels (`pod`, `deployment`, ..., `node`) or else `instance`.
    pub fn message_context(&self) -> MessageContext {
        let summary = self.annotation("summary").to_string();
        let message = ["description", "message"]
            .into_iter()
            .map(|key| self.annotation(key))
            .find(|text| !text.is_empty())
            .map(str::to_string)
            .unwrap_or_else(|| summary.clone());
        let (kind, name) = self.object();
        MessageContext {
            reason: self.label("alertname").to_string(),
            kind: kind.to_string(),
            namespace: self.label("namespace").to_string(),
            name: name.to_string(),
            message,
            type_: self.label("severity").to_string(),
            count: 1,
            summary,
            labels: self.labels.clone(),
            annotations: self.annotations.clone(),
        }
    }
}

impl Candidate {
    pub fn message_context(&self) -> MessageContext {
        match self {
            Candidate::Event(event) => event.message_context(),
            Candidate::Alert(alert) => alert.message_context(),
        }
    }

    pub fn source_kind(&self) -> SourceKind {
        match self {
            Candidate::Event(_) => SourceKind::KubernetesEvent,
            Candidate::Alert(_) => SourceKind::Alertmanager,
        }
    }

    /// The value of a `groupBy` entry for this candidate.
    pub fn group_field(&self, name: &str) -> String {
        match self {
            Candidate::Event(event) => event.field(name).unwrap_or("").to_string(),
            Candidate::Alert(alert) => alert.field(name),
        }
    }

    pub fn source_labels(&self) -> BTreeMap<String, String> {
        match self {
            Candidate::Event(event) => event.source_labels(),
            Candidate::Alert(alert) => alert.labels.clone(),
        }
    }

    pub fn first_seen(&self) -> Option<Timestamp> {
        match self {
            Candidate::Event(event) => event.first_seen,
            Candidate::Alert(alert) => alert.starts_at,
        }
    }

    pub fn last_seen(&self) -> Option<Timestamp> {
        match self {
            Candidate::Event(event) => event.last_seen,
            Candidate::Alert(_) => None,
        }
    }

    /// Event count; alerts carry none.
    pub fn count(&self) -> Option<i64> {
        match self {
            Candidate::Event(event) => Some(event.count),
            Candidate::Alert(_) => None,
        }
    }

    pub fn is_resolved(&self) -> bool {
        matches!(self, Candidate::Alert(alert) if alert.status == AlertStatus::Resolved)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::call_policy::DEFAULT_TEMPLATE;
    use crate::message::render;
    use k8s_openapi::api::core::v1::{EventSeries, ObjectReference};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, Time};

    fn ts(seconds: i64) -> Timestamp {
        Timestamp::from_second(seconds).unwrap_or_default()
    }

    fn event() -> Event {
        Event {
            type_: Some("Warning".into()),
            reason: Some("BackOff".into()),
            message: Some("Back-off restarting failed container".into()),
            count: Some(4),
            first_timestamp: Some(Time(ts(100))),
            last_timestamp: Some(Time(ts(200))),
            involved_object: ObjectReference {
                kind: Some("Pod".into()),
                name: Some("api-7f9".into()),
                namespace: Some("prod".into()),
                ..Default::default()
            },
            metadata: ObjectMeta {
                namespace: Some("prod".into()),
                labels: Some(BTreeMap::from([("e".into(), "1".into())])),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn event_conversion_takes_fields_count_and_times() {
        let candidate = EventCandidate::from_event(
            &event(),
            BTreeMap::from([("tier".into(), "critical".into())]),
            BTreeMap::from([("alerting".into(), "enabled".into())]),
        );
        assert_eq!(candidate.count, 4);
        assert_eq!(candidate.first_seen, Some(ts(100)));
        assert_eq!(candidate.last_seen, Some(ts(200)));
        assert_eq!(candidate.namespace, "prod");
        assert_eq!(
            candidate.event_labels.get("e").map(String::as_str),
            Some("1")
        );
        let text = render(DEFAULT_TEMPLATE, &candidate.message_context()).unwrap_or_default();
        assert_eq!(
            text,
            "Alert. BackOff on Pod prod/api-7f9. Back-off restarting failed container"
        );
    }

    #[test]
    fn series_count_and_time_win_over_legacy_fields() {
        let mut e = event();
        e.series = Some(EventSeries {
            count: Some(17),
            last_observed_time: Some(MicroTime(ts(900))),
        });
        let candidate = EventCandidate::from_event(&e, BTreeMap::new(), BTreeMap::new());
        assert_eq!(candidate.count, 17);
        assert_eq!(candidate.last_seen, Some(ts(900)));
        e.series = None;
        e.count = None;
        let candidate = EventCandidate::from_event(&e, BTreeMap::new(), BTreeMap::new());
        assert_eq!(candidate.count, 1);
    }

    #[test]
    fn alert_context_maps_alertname_summary_and_object() {
        let alert = AlertCandidate {
            labels: BTreeMap::from([
                ("alertname".into(), "KubePodCrashLooping".into()),
                ("namespace".into(), "prod".into()),
                ("pod".into(), "api-7f9".into()),
                ("severity".into(), "critical".into()),
            ]),
            annotations: BTreeMap::from([
                ("summary".into(), "Pod is crash looping.".into()),
                ("description".into(), "api restarted 5 times".into()),
            ]),
            ..Default::default()
        };
        let context = alert.message_context();
        assert_eq!(context.reason, "KubePodCrashLooping");
        assert_eq!(
            (context.kind.as_str(), context.name.as_str()),
            ("Pod", "api-7f9")
        );
        assert_eq!(context.summary, "Pod is crash looping.");
        assert_eq!(context.message, "api restarted 5 times");
        assert_eq!(context.type_, "critical");
        let text = render(DEFAULT_TEMPLATE, &context).unwrap_or_default();
        assert_eq!(
            text,
            "Alert. KubePodCrashLooping on Pod prod/api-7f9. api restarted 5 times"
        );
    }

    #[test]
    fn alert_without_object_labels_uses_instance_and_summary() {
        let alert = AlertCandidate {
            labels: BTreeMap::from([
                ("alertname".into(), "NodeDown".into()),
                ("instance".into(), "10.0.0.1:9100".into()),
            ]),
            annotations: BTreeMap::from([("summary".into(), "node down".into())]),
            ..Default::default()
        };
        let context = alert.message_context();
        assert_eq!(context.kind, "");
        assert_eq!(context.name, "10.0.0.1:9100");
        assert_eq!(context.message, "node down");
        assert_eq!(alert.field("reason"), "NodeDown");
        assert_eq!(alert.field("instance"), "10.0.0.1:9100");
        assert_eq!(alert.field("team"), "");
    }
}
