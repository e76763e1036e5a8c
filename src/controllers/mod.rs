//! The Kubernetes controllers: each reconciles one kind of object. Wired together in
//! [`crate::operator`].

pub mod accounts;
pub mod alert_call;
pub mod alert_route;
pub mod call_policy;
pub mod callbacks;
mod context;

pub use accounts::{AccountError, Accounts};
pub use context::{Config, Context};

/// Field manager of every server-side apply the operator makes.
pub const FIELD_MANAGER: &str = "alertcall";
