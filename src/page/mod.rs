//! One page against Twilio, without Kubernetes: the documents its calls run ([`documents`]),
//! what Twilio says about its calls ([`calls`]), the one executor of
//! [`crate::escalation::step`]'s actions ([`executor`]) and the per-account pacer that places
//! the calls ([`runner`]). The AlertCall controller (status in Kubernetes) and `alertcall demo`
//! (status in memory) both page through these, so the demo runs what the operator runs.

pub mod calls;
pub mod documents;
pub mod executor;
#[doc(hidden)]
pub mod hooks;
pub mod ledger;
pub mod runner;

pub use executor::{DialUrls, Executed, Executor, Outcomes};
