//! `AlertCall`: one page, in flight or done. `kubectl get ac` is the incident log.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{LocalRef, OnResolved};

/// The finalizer of a page that may have live calls (see `controllers::alert_call`). The
/// pager creates its pages with it, so the first dial waits for no write of its own.
pub const CANCEL_CALLS_FINALIZER: &str = "alertcall.dev/cancel-calls";

/// One page: who was called, when, what Twilio said and who acknowledged.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "alertcall.dev",
    version = "v1alpha1",
    kind = "AlertCall",
    namespaced,
    status = "AlertCallStatus",
    shortname = "ac",
    category = "alertcall",
    doc = "AlertCall is one page in flight or done: who was called, when, what Twilio said and who acknowledged. Create one by hand to page now; set spec.acknowledged to acknowledge from kubectl.",
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Policy","type":"string","jsonPath":".spec.policyRef.name","priority":1}"#,
    printcolumn = r#"{"name":"Acked-By","type":"string","jsonPath":".status.acknowledgedBy"}"#,
    printcolumn = r#"{"name":"Attempts","type":"integer","jsonPath":".status.attemptCount"}"#,
    printcolumn = r#"{"name":"Tier","type":"string","jsonPath":".status.tierPolicy","priority":1}"#,
    printcolumn = r#"{"name":"Not-Before","type":"string","jsonPath":".status.notBefore","priority":1}"#,
    printcolumn = r#"{"name":"Summary","type":"string","jsonPath":".spec.summary","priority":1}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct AlertCallSpec {
    /// The CallPolicy (same namespace) that says who is called and how.
    pub policy_ref: LocalRef,
    /// The AlertRoute that created this page; absent when created by hand.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route_ref: Option<LocalRef>,
    /// The group this page stands for, for example `prod/Pod/api-7f9/BackOff`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(length(max = 1024))]
    pub group_key: String,
    /// The rendered message text that is spoken.
    #[schemars(length(min = 1, max = 2000))]
    pub summary: String,
    /// Where the page came from.
    #[serde(default)]
    pub source: SourceSpec,
    /// Set to true (for example with `kubectl patch`) to acknowledge and stop escalation.
    #[serde(default)]
    pub acknowledged: bool,
    /// Do not dial before this time (RFC 3339); set by the route's group wait
    /// (`grouping.groupWaitSeconds`). The page shows phase `Waiting` until then. Absent: dial at
    /// once, as for a page created by hand.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before: Option<Time>,
    /// Copied from the route's `onResolved` when the page is made: `Cancel` ends the page in
    /// phase `Resolved` once every alert of its group is resolved (`source.resolvedAt` with no
    /// firing seen since) before anyone acknowledged; `Continue` calls on. A page created by
    /// hand (no `routeRef`) always continues.
    #[serde(default = "on_resolved_continue")]
    pub on_resolved: OnResolved,
    /// A test call (`kubectl alertcall test`): each recipient is called once, hears "This is a
    /// test call from alertcall for policy X" and is asked for the key; after it a short
    /// confirmation, then the call ends. A test never joins the incident room, has no rounds
    /// and no escalation, and is paced and counted against `limits.maxCallsPerHour` like a page.
    /// The outcome lands in the CallPolicy's `status.recipients`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub test: bool,
    /// Test calls only: the recipients (names in the policy) to call; empty calls every
    /// recipient. A name the policy does not have fails the test (reason `UnknownRecipient`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 50))]
    pub test_recipients: Vec<String>,
}

/// Absent on the AlertCall means `Continue`: a page nobody routed has no alert that resolves,
/// and one made before routes had `onResolved` keeps the behaviour it was made with.
fn on_resolved_continue() -> OnResolved {
    OnResolved::Continue
}

/// The kind of signal that created a page.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum SourceKind {
    KubernetesEvent,
    Alertmanager,
    #[default]
    Manual,
}

/// Where a page came from.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SourceSpec {
    /// KubernetesEvent, Alertmanager or Manual.
    #[serde(default)]
    pub kind: SourceKind,
    /// Labels of the signal (alert labels, or the event's fields), bounded: a value over 1 KiB
    /// is cut and ends in `…(truncated)`, and entries past 16 KiB in all are dropped in name
    /// order; either adds `alertcall.dev/truncated: "true"`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// When the group was first seen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_seen: Option<Time>,
    /// When the group was last seen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seen: Option<Time>,
    /// How many signals of the group were seen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<i64>,
    /// When the group was last resolved (an Alertmanager `resolved` alert), recorded by the
    /// pager. A resolve closes the route's repeat window, so the group pages again when it fires
    /// again; a page still `Waiting` that was resolved before its `notBefore` is cancelled, and
    /// a ringing page with `onResolved: Cancel` ends in phase `Resolved` unless `lastSeen` is
    /// newer (the group fired again).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_at: Option<Time>,
}

/// The lifecycle of a page.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
pub enum Phase {
    /// Accepted, no call placed yet.
    #[default]
    Pending,
    /// Holding for the route's group wait: no call before `status.notBefore`. Cancelled if
    /// the group is resolved before then.
    Waiting,
    /// Calls are being placed.
    Calling,
    /// A human acknowledged (keypress or kubectl).
    Acknowledged,
    /// Every round was tried and nobody acknowledged.
    Exhausted,
    /// Simultaneous AllNotified: every recipient answered, nobody pressed a key.
    Notified,
    /// The page could not be placed (invalid policy, cost limit, Twilio refused).
    Failed,
    /// The page was withdrawn before anyone acknowledged.
    Cancelled,
    /// Every alert of the page's group was resolved before anyone acknowledged, and its route
    /// says `onResolved: Cancel`: ringing and queued calls were canceled, answered calls left to
    /// finish their message.
    Resolved,
}

impl Phase {
    /// Finished pages never change phase again.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            Phase::Acknowledged
                | Phase::Exhausted
                | Phase::Notified
                | Phase::Failed
                | Phase::Cancelled
                | Phase::Resolved
        )
    }
}

/// Twilio's call status, plus `intent`: recorded, not yet accepted by Twilio.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum AttemptStatus {
    /// Written before the Twilio request; a crash here is repaired by looking the call up.
    #[default]
    Intent,
    Queued,
    Initiated,
    Ringing,
    InProgress,
    Completed,
    Busy,
    NoAnswer,
    Failed,
    Canceled,
}

impl AttemptStatus {
    /// The call is over, whatever the outcome.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            AttemptStatus::Completed
                | AttemptStatus::Busy
                | AttemptStatus::NoAnswer
                | AttemptStatus::Failed
                | AttemptStatus::Canceled
        )
    }
}

/// One call to one recipient: the append-only audit trail of a page.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Attempt {
    /// Unique within the AlertCall; carried in Twilio callback URLs to tie them to the attempt.
    pub id: String,
    /// Recipient name from the policy.
    pub recipient: String,
    /// Round number, from 1.
    pub round: u32,
    /// The escalation tier this call belongs to (see `status.tier`); absent means 1.
    #[serde(default, skip_serializing_if = "is_first_tier")]
    pub tier: u32,
    /// The OnCallSchedule the recipient names, when it names one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    /// The schedule member who was on call and called, when the recipient names a schedule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member: Option<String>,
    /// The address dialed (Twilio `To`) when it came from a schedule: a lookup or a redial after
    /// a crash calls the same person even if the schedule handed off since.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// Twilio Call SID once Twilio accepted the call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub call_sid: Option<String>,
    /// When the intent to call was recorded (before the Twilio request).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intent_at: Option<Time>,
    /// When Twilio accepted the call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Time>,
    /// When the call ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<Time>,
    /// Last known call status.
    #[serde(default)]
    pub status: AttemptStatus,
    /// Twilio's AnsweredBy, when answering machine detection ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answered_by: Option<String>,
    /// The recipient pressed a key.
    #[serde(default)]
    pub acknowledged: bool,
    /// Twilio error code, when the call failed or was refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub twilio_error_code: Option<i64>,
    /// A human-readable note on the outcome.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// How many times the intent was dialed again because no call for it was found at Twilio
    /// after a crash or an ambiguous answer (a lost page is worse than a duplicate call).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub redials: u32,
    /// Set when a lookup found no call for this intent: the next step dials it again under a
    /// new intent time.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub redial_due: bool,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

fn is_first_tier(n: &u32) -> bool {
    *n <= 1
}

/// A recipient a page passed over because its schedule had nobody on call.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Skip {
    /// What the attempt id would have been; one skip per recipient, round and tier.
    pub id: String,
    /// Recipient name from the policy.
    pub recipient: String,
    /// The schedule it names.
    pub schedule: String,
    /// The escalation tier; absent means 1.
    #[serde(default, skip_serializing_if = "is_first_tier")]
    pub tier: u32,
    /// Round number, from 1.
    pub round: u32,
    /// When it was skipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<Time>,
    /// Why nobody was called: a gap in the schedule, or the schedule is missing or invalid.
    pub message: String,
}

/// Where a page stands.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AlertCallStatus {
    /// Pending, Waiting, Calling, Acknowledged, Exhausted, Notified, Failed, Cancelled or
    /// Resolved.
    #[serde(default)]
    pub phase: Phase,
    /// No call before this time (RFC 3339), mirrored from `spec.notBefore` by the controller.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before: Option<Time>,
    /// The generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Current round, from 1.
    #[serde(default)]
    pub round: u32,
    /// Sequential: index of the next recipient in this page's order.
    #[serde(default)]
    pub next_index: u32,
    /// Sequential round-robin: the recipient this page started with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_index: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<Time>,
    /// Recipient name, or `kubectl` when acknowledged through the spec.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acknowledged_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acknowledged_at: Option<Time>,
    /// The conference room acknowledged answerers were joined into.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conference_room: Option<String>,
    /// Twilio media URL of the room's recording (when the policy records); reading it needs the
    /// account's credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recording_url: Option<String>,
    /// Number of attempts, for `kubectl get` (printer columns cannot count arrays).
    #[serde(default)]
    pub attempt_count: u32,
    /// Unguessable per-page secret carried in the callback URLs of this page's calls: a request
    /// that names this page must present it, so pages cannot be addressed by guessing their
    /// deterministic names. Set before the first dial.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    /// Every call placed for this page, in order. Append-only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attempts: Vec<Attempt>,
    /// The escalation tier calling now: 1 for `spec.policyRef`, 2 for its `onExhausted`
    /// policy, and so on. 0 before the page starts.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub tier: u32,
    /// The CallPolicy of the active tier, when the page escalated past `spec.policyRef`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier_policy: Option<String>,
    /// The policies this page exhausted before the active one, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exhausted_policies: Vec<String>,
    /// Recipients passed over because their schedule had nobody on call. Append-only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<Skip>,
    /// `PolicyResolved` (the policy could be used), `RecipientsOnCall` (a schedule recipient
    /// had somebody on call), `Escalated` (the page continues with its next tier, or why not),
    /// `CallsEnded` (a page being deleted could end its calls) and `Finished` (why a finished
    /// page ended: its reason, such as `Exhausted`, and a message).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

impl AlertCall {
    /// The CallPolicy calling now: the active escalation tier's, else `spec.policyRef`.
    pub fn active_policy(&self) -> &str {
        self.status
            .as_ref()
            .and_then(|s| s.tier_policy.as_deref())
            .unwrap_or(&self.spec.policy_ref.name)
    }
}
