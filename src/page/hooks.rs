//! Test-only pause points, to crash the operator at the two moments that matter for
//! restart safety. Empty in production: [`Hooks::point`] returns at once.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::sync::Notify;

/// Where a dial can be interrupted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HookPoint {
    /// The intent is persisted; Twilio has not been asked yet.
    AfterIntent,
    /// Twilio accepted the call; its SID is not recorded yet.
    AfterAccepted,
}

struct Pause {
    at: HookPoint,
    fired: AtomicBool,
    reached: Notify,
}

#[doc(hidden)]
#[derive(Clone, Default)]
pub struct Hooks(Option<Arc<Pause>>);

impl std::fmt::Debug for Hooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Hooks")
            .field(&self.0.as_ref().map(|p| p.at))
            .finish()
    }
}

impl Hooks {
    /// The first time `at` is reached, the task reaching it stops there for good (until the
    /// operator is killed) and [`Hooks::reached`] returns.
    pub fn pause_at(at: HookPoint) -> Self {
        Hooks(Some(Arc::new(Pause {
            at,
            fired: AtomicBool::new(false),
            reached: Notify::new(),
        })))
    }

    /// Resolves once the pause point was reached.
    pub async fn reached(&self) {
        if let Some(pause) = &self.0 {
            pause.reached.notified().await;
        }
    }

    pub(crate) async fn point(&self, at: HookPoint) {
        if let Some(pause) = &self.0 {
            if pause.at == at && !pause.fired.swap(true, Ordering::SeqCst) {
                // NB: notify_one keeps a permit if the test is not waiting yet.
                pause.reached.notify_one();
                std::future::pending::<()>().await;
            }
        }
    }
}
