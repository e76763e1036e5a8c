//! One page against Twilio, without Kubernetes: what Twilio says about its calls ([`calls`]) and
//! the one executor of [`crate::escalation::step`]'s actions ([`executor`]). The AlertCall
//! controller (status in Kubernetes) and `alertcall demo` (status in memory) both page through
//! these, so the demo runs what the operator runs.

pub mod calls;
pub mod executor;

pub use executor::{DialUrls, Executed, Executor, Outcomes};
