//! Recurring windows of time, in Alertmanager's time-interval vocabulary: when a route is active
//! or muted, and a policy's quiet hours.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::TimeRange;

/// One recurring window. Every field given must match (an empty field matches always); a list
/// of intervals matches when any of them does. As in Alertmanager's `time_intervals`, ranges are
/// inclusive and written `first:last`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TimeInterval {
    /// Times of day, start inclusive, end exclusive. A range whose end is not after its start
    /// crosses midnight and belongs to the day it starts on: `{start: "22:00", end: "06:00"}`
    /// with `weekdays: [friday]` covers Friday 22:00 to Saturday 06:00.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 20))]
    pub times: Vec<TimeRange>,
    /// Days of the week: `monday`, or a range `monday:friday` (`saturday:monday` wraps).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 7))]
    pub weekdays: Vec<String>,
    /// Days of the month: `1`, `1:15`; negative days count from the month's end (`-1` is its
    /// last day, `-7:-1` its last week).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 31))]
    pub days_of_month: Vec<String>,
    /// Months by name or number: `january`, `1`, `december:february` (wraps the year).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 12))]
    pub months: Vec<String>,
    /// Years: `2026`, `2026:2027`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 20))]
    pub years: Vec<String>,
    /// The IANA time zone every field is read in, such as `Europe/Berlin`; `UTC` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
}
