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
