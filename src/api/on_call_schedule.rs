//! `OnCallSchedule`: who is on call at a given time, from rotations, restrictions and overrides.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::Recipient;

/// Who is on call when: members, rotations layered in order, and overrides on top.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "alertcall.dev",
    version = "v1alpha1",
    kind = "OnCallSchedule",
    namespaced,
    status = "OnCallScheduleStatus",
    shortname = "ocs",
    category = "alertcall",
    doc = "OnCallSchedule says who is on call at any time: members, rotations that hand off in local time (later rotations win where they are active), optional restrictions to time windows, and overrides on top. A CallPolicy recipient names it to call whoever is on call when a page fires.",
    printcolumn = r#"{"name":"On-Call","type":"string","jsonPath":".status.onCall"}"#,
    printcolumn = r#"{"name":"Until","type":"string","jsonPath":".status.until"}"#,
    printcolumn = r#"{"name":"Next","type":"string","jsonPath":".status.next"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status","priority":1}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct OnCallScheduleSpec {
    /// IANA time zone name, for example `Asia/Tokyo` or `America/New_York`. Every local time of
    /// this schedule (rotation starts, restriction windows, overrides) is read in it, so
    /// handoffs follow the wall clock across daylight saving changes.
    #[schemars(length(min = 1, max = 64))]
    pub time_zone: String,
    /// The people of this schedule, 1 to 50, with the same address rules as CallPolicy
    /// recipients: a name and exactly one of `phone`, `client` or `sip`.
    #[schemars(length(min = 1, max = 50))]
    pub members: Vec<Recipient>,
    /// Rotations, 1 to 20. Where several are active at once, the later one in this list wins
    /// (layers).
    #[schemars(length(min = 1, max = 20))]
    pub rotations: Vec<Rotation>,
    /// Overrides: a member on call for a fixed local period, above every rotation. Where
    /// several overlap, all their members are on call.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 200))]
    pub overrides: Vec<Override>,
}

/// Members taking turns, each on call for one shift.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Rotation {
    /// Name of the rotation, shown in validation messages.
    #[schemars(regex(pattern = r"^[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?$"))]
    pub name: String,
    /// Names from `members`, in handoff order; a name may appear more than once.
    #[schemars(length(min = 1, max = 100))]
    pub members: Vec<String>,
    /// Local time at which the first member goes on call, for example `2026-12-07T09:00:00`.
    /// The rotation covers nothing before it.
    #[schemars(regex(pattern = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}(:[0-9]{2})?$"))]
    pub start: String,
    /// Length of one shift as a Go-style duration of at least 1h, for example `168h`, `24h`
    /// or `12h30m`. Shifts are counted in local time: a 24h shift hands off at the same
    /// wall-clock time every day, even across a daylight saving change.
    #[schemars(regex(pattern = r"^([0-9]+(\.[0-9]+)?(h|m|s))+$"))]
    pub shift_length: String,
    /// Optional windows the rotation covers; outside all of them it is inactive and the layer
    /// below (or nobody) is on call. Handoffs still happen on schedule outside the windows.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 20))]
    pub restrictions: Vec<Restriction>,
}

/// A recurring local window: the given weekdays, at the given times. Empty lists mean every
/// day or all day.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Restriction {
    /// Days as in Alertmanager time intervals: `monday`, or an inclusive range
    /// `monday:friday` (`saturday:monday` wraps the week).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 7))]
    pub weekdays: Vec<String>,
    /// Times of day. A range whose end is not after its start crosses midnight and belongs to
    /// the weekday it starts on: `{start: "22:00", end: "06:00"}` on `friday` covers Friday
    /// 22:00 to Saturday 06:00.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 20))]
    pub times: Vec<TimeRange>,
}

/// A range of local times of day, start inclusive, end exclusive.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TimeRange {
    /// `HH:MM`, from `00:00` to `23:59`.
    #[schemars(regex(pattern = r"^[0-9]{2}:[0-9]{2}$"))]
    pub start: String,
    /// `HH:MM`, from `00:00` to `24:00`.
    #[schemars(regex(pattern = r"^[0-9]{2}:[0-9]{2}$"))]
    pub end: String,
}

/// A member on call for a fixed local period, above every rotation.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Override {
    /// A name from `members`.
    #[schemars(length(min = 1, max = 63))]
    pub member: String,
    /// Local time the override begins, for example `2026-12-24T00:00:00`.
    #[schemars(regex(pattern = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}(:[0-9]{2})?$"))]
    pub start: String,
    /// Local time the override ends (exclusive); after `start`.
    #[schemars(regex(pattern = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}(:[0-9]{2})?$"))]
    pub end: String,
}

/// Who is on call now, until when, and who comes next, as the operator last computed it.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OnCallScheduleStatus {
    /// The generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Members on call now; empty during a gap.
    #[serde(default)]
    pub on_call: Vec<String>,
    /// When the set of members on call next changes (RFC 3339); absent if it never does
    /// within a year.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
    /// Members on call from `until` on; empty for a gap.
    #[serde(default)]
    pub next: Vec<String>,
    /// `Ready` (False with reason `InvalidTimeZone`, `UnknownMember` or `InvalidWindow`, ... when
    /// the spec cannot be evaluated) and `OnCall` (False with reason `Gap` when nobody is on
    /// call now).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}
