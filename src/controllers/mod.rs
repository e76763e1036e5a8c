//! The Kubernetes controllers: each reconciles one kind of object. Wired together in
//! [`crate::operator`].

pub mod accounts;
pub mod alert_call;
pub mod alert_route;
pub mod call_policy;
pub mod callbacks;
mod context;
pub mod on_call_schedule;

use std::time::Duration;

use kube::api::{Api, Patch, PatchParams};
use kube::ResourceExt;

use crate::api::{CallPolicy, RecipientTest};

pub use accounts::{AccountError, Accounts};
pub use context::{Config, Context};

/// Field manager of every server-side apply the operator makes.
pub const FIELD_MANAGER: &str = "alertcall";

/// How long a controller waits after `failures` consecutive failures: exponential from 1 s
/// with jitter, capped at `resync` (and 5 minutes).
pub fn backoff(failures: u32, resync: Duration) -> Duration {
    let cap = resync
        .min(Duration::from_secs(300))
        .max(Duration::from_secs(1));
    let base = Duration::from_secs(1).saturating_mul(1u32 << failures.saturating_sub(1).min(10));
    let full = base.min(cap);
    let half = full / 2;
    half + half.mul_f64(fastrand::f64())
}

/// Writes a CallPolicy's test results (`status.recipients`, `status.tested`) with a merge
/// patch guarded by the resourceVersion `policy` was read at: 409 if anything wrote since. The
/// AlertCall controller records a test's end this way, the CallPolicy controller a recount.
pub async fn write_test_results(
    api: &Api<CallPolicy>,
    policy: &CallPolicy,
    recipients: &[RecipientTest],
    tested: &str,
) -> Result<CallPolicy, kube::Error> {
    let patch = serde_json::json!({
        "metadata": {"resourceVersion": policy.resource_version()},
        "status": {"recipients": recipients, "tested": tested},
    });
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.to_string()),
        ..Default::default()
    };
    api.patch_status(&policy.name_any(), &params, &Patch::Merge(&patch))
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let resync = Duration::from_secs(60);
        assert!(backoff(1, resync) <= Duration::from_secs(1));
        assert!(backoff(20, resync) <= resync);
        assert!(backoff(20, resync) >= Duration::from_secs(30));
    }
}
