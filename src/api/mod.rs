//! The custom resources (data, schema attributes and doc comments only), condition helpers
//! and pure semantic validation that the OpenAPI schema cannot express.

pub mod alert_call;
pub mod alert_route;
pub mod call_policy;
pub mod conditions;
pub mod on_call_schedule;
pub mod structural;
pub mod time_interval;
pub mod validate;

pub use alert_call::{
    AlertCall, AlertCallSpec, AlertCallStatus, Attempt, AttemptStatus, Phase, Skip, SourceKind,
    SourceSpec,
};
pub use alert_route::{
    AlertRoute, AlertRouteSpec, AlertRouteStatus, AlertmanagerSpec, EventType, GroupingSpec,
    HeartbeatSpec, KubernetesEventsSpec, MessageOverride, OnResolved,
};
pub use call_policy::{
    AcknowledgementSpec, Address, CallPolicy, CallPolicySpec, CallPolicyStatus, Completion,
    ConferenceSpec, LimitsSpec, MessageSpec, Mode, OnExhaustedSpec, Order, Recipient,
    RecipientTest, StrategySpec, TwilioSpec, TwimlStatus, TwimlUrls,
};
pub use on_call_schedule::{
    OnCallSchedule, OnCallScheduleSpec, OnCallScheduleStatus, Override, Restriction, Rotation,
    TimeRange,
};
pub use time_interval::TimeInterval;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub const GROUP: &str = "alertcall.dev";
pub const VERSION: &str = "v1alpha1";

/// E.164: `+`, a country code that does not start with 0, at most 15 digits in all.
pub const E164_PATTERN: &str = r"^\+[1-9][0-9]{1,14}$";

/// A reference to an object by name in the same namespace.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct LocalRef {
    /// Name of the object in the same namespace.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// A key of a Secret in the same namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct SecretKeyRef {
    /// Name of the Secret in the same namespace.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Key within the Secret.
    #[serde(default = "default_token_key")]
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

fn default_token_key() -> String {
    "token".to_string()
}

/// kubectl's copy of the whole object, as last applied: kubectl reads it, nothing here does.
pub const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Drops what a cached object carries for others: its managedFields and kubectl's last-applied
/// copy. Parsed, a CallPolicy's or an AlertRoute's managedFields (a JSON tree per field manager,
/// ours included since we write its status) take more memory than the rest of it; with 1,000
/// of each they were most of the operator's caches (`benches/scale.rs`).
pub fn forget_bookkeeping(meta: &mut k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) {
    meta.managed_fields = None;
    if let Some(annotations) = meta.annotations.as_mut() {
        annotations.remove(LAST_APPLIED);
    }
}

/// Every CRD this operator owns, in the order they are printed by `alertcall crd`.
pub fn crds(
) -> Vec<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition>
{
    use kube::CustomResourceExt;
    vec![
        CallPolicy::crd(),
        AlertRoute::crd(),
        AlertCall::crd(),
        OnCallSchedule::crd(),
    ]
}

/// The CRDs as one multi-document YAML stream, the bytes kept in `crds/` and the chart.
pub fn crds_yaml() -> Result<String, serde_yaml::Error> {
    let mut out = String::new();
    for crd in crds() {
        out.push_str("---\n");
        out.push_str(&serde_yaml::to_string(&crd)?);
    }
    Ok(out)
}
