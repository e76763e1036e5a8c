//! `AlertRoute`: which cluster signals page which policy.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector, Time};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{LocalRef, SecretKeyRef};

/// Which Kubernetes Events and Alertmanager alerts page which CallPolicy.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "alertcall.dev",
    version = "v1alpha1",
    kind = "AlertRoute",
    namespaced,
    status = "AlertRouteStatus",
    shortname = "ar",
    category = "alertcall",
    doc = "AlertRoute selects the Kubernetes Events and Alertmanager alerts that page a CallPolicy, and how they are grouped.",
    printcolumn = r#"{"name":"Policy","type":"string","jsonPath":".spec.policyRef.name"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Matched","type":"integer","jsonPath":".status.matchedTotal"}"#,
    printcolumn = r#"{"name":"Suppressed","type":"integer","jsonPath":".status.suppressedTotal","priority":1}"#,
    printcolumn = r#"{"name":"Last-Call","type":"string","jsonPath":".status.lastAlertCall"}"#,
    printcolumn = r#"{"name":"Suspended","type":"boolean","jsonPath":".spec.suspend","priority":1}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct AlertRouteSpec {
    /// The CallPolicy (same namespace) that is paged.
    pub policy_ref: LocalRef,
    /// Page on Kubernetes Events that match these filters. All given filters must match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubernetes_events: Option<KubernetesEventsSpec>,
    /// Page on Alertmanager alerts posted to `/alertmanager/<namespace>/<route>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alertmanager: Option<AlertmanagerSpec>,
    /// How matching signals are grouped into one page.
    #[serde(default)]
    pub grouping: GroupingSpec,
    /// Overrides the policy's message template for pages of this route.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<MessageOverride>,
    /// A suspended route matches nothing.
    #[serde(default)]
    pub suspend: bool,
    /// When set, the route pages only inside one of these windows (Alertmanager's
    /// time-interval vocabulary). A signal outside them counts as suppressed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 20))]
    pub active_time_intervals: Vec<super::TimeInterval>,
    /// The route pages in none of these windows: a signal inside one counts as suppressed.
    /// Muting wins over `activeTimeIntervals`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 20))]
    pub mute_time_intervals: Vec<super::TimeInterval>,
    /// Pages of this route call even in the policy's `quietHours`.
    #[serde(default)]
    pub urgent: bool,
    /// Turns the route around: its matching signals are heartbeats (such as Alertmanager's
    /// always-firing `Watchdog`), and the route pages its policy when none has arrived for
    /// `intervalSeconds` ("No heartbeat from AlertRoute <namespace>/<name> for 5 minutes").
    /// After the operator starts or the route appears, the first page waits one interval. It
    /// pages again per `grouping.repeatIntervalSeconds` while the silence lasts, and the page
    /// resolves (see `onResolved`) when beats return.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heartbeat: Option<HeartbeatSpec>,
    /// What a page of this route does when every alert of its group is resolved (Alertmanager)
    /// before anyone acknowledged: `Cancel` (the default) cancels its ringing and queued calls,
    /// lets answered calls finish their message, and ends the page in phase `Resolved`;
    /// `Continue` keeps calling until someone acknowledges. Acknowledged pages are never touched.
    #[serde(default)]
    pub on_resolved: OnResolved,
}

/// How often a heartbeat route expects a signal.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HeartbeatSpec {
    /// The longest silence tolerated, in seconds.
    #[schemars(range(min = 1, max = 604800))]
    pub interval_seconds: u32,
}

/// What a page does when its alerts resolve before anyone acknowledged.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum OnResolved {
    /// Stop ringing: cancel ringing and queued calls, let answered ones finish; phase `Resolved`.
    #[default]
    Cancel,
    /// Keep calling until someone acknowledges, as if the alert still fired.
    Continue,
}

/// Event type, as in `Event.type`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum EventType {
    Normal,
    Warning,
}

/// Filters on Kubernetes Events (core/v1). Empty lists match everything.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KubernetesEventsSpec {
    /// Event types, for example `[Warning]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub types: Vec<EventType>,
    /// Event reasons, for example `[BackOff, OOMKilling]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100))]
    pub reasons: Vec<String>,
    /// Kinds of the involved object, for example `[Pod, Node]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100))]
    pub involved_kinds: Vec<String>,
    /// Labels of the event's Namespace. Absent: only the route's own namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,
    /// Labels of the involved object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_selector: Option<LabelSelector>,
    /// Labels on the Event itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_selector: Option<LabelSelector>,
    /// The event must have been seen at least this many times (Event.count or series count).
    #[serde(default = "default_min_count")]
    #[schemars(range(min = 1, max = 1000000))]
    pub min_count: i32,
}

fn default_min_count() -> i32 {
    1
}

/// Receive Alertmanager webhooks (payload version 4) for this route.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AlertmanagerSpec {
    /// Alertmanager matchers (`=`, `!=`, `=~`, `!~`), all of which must match the alert labels.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 50))]
    pub matchers: Vec<String>,
    /// Secret key holding the bearer token Alertmanager must send. Requests without it get 401.
    pub bearer_token_secret_ref: SecretKeyRef,
}

/// How signals are grouped into pages.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GroupingSpec {
    /// Event fields (`namespace`, `kind`, `name`, `reason`, `type`) or alert label names that form
    /// the group key.
    #[serde(default = "default_group_by")]
    #[schemars(length(max = 20))]
    pub group_by: Vec<String>,
    /// Wait this long after the first signal of a group before calling (0 = immediately). The
    /// group's AlertCall is created at once with `spec.notBefore` and shows phase `Waiting`;
    /// resolved before then (Alertmanager), it is cancelled and rings nobody.
    #[serde(default)]
    #[schemars(range(min = 0, max = 3600))]
    pub group_wait_seconds: u32,
    /// A group does not page again within this window.
    #[serde(default = "default_repeat_interval")]
    #[schemars(range(min = 60, max = 604800))]
    pub repeat_interval_seconds: u32,
}

fn default_group_by() -> Vec<String> {
    ["namespace", "kind", "name", "reason"]
        .into_iter()
        .map(String::from)
        .collect()
}
fn default_repeat_interval() -> u32 {
    3600
}

impl Default for GroupingSpec {
    fn default() -> Self {
        Self {
            group_by: default_group_by(),
            group_wait_seconds: 0,
            repeat_interval_seconds: default_repeat_interval(),
        }
    }
}

/// A message template that overrides the policy's for this route.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MessageOverride {
    /// Message template; same fields as the policy's.
    #[schemars(length(min = 1, max = 1000))]
    pub template: String,
}

/// What the operator observed for a route.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AlertRouteStatus {
    /// The generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready: the policy exists, matchers parse and the template renders.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// When a signal last matched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_matched_at: Option<Time>,
    /// Name of the last AlertCall this route created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_alert_call: Option<String>,
    /// Signals that matched.
    #[serde(default)]
    pub matched_total: i64,
    /// Matches that did not page: their group already paged in the repeat window, or the
    /// route was muted by its time intervals.
    #[serde(default)]
    pub suppressed_total: i64,
    /// A heartbeat route's last beat (the signal's own time), kept across restarts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_beat_at: Option<Time>,
}
