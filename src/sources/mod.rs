//! Sources: cluster signals become candidates for the pager ([`crate::controller::pages`]).
//!
//! ```text
//!  core/v1 Events ──watch──> kube_events (age, dedup, labels from metadata watches) ─┐
//!  POST /alertmanager/{namespace}/{route} ──> alertmanager (bearer token, payload v4) ┴─> Pager
//! ```

pub mod alertmanager;
pub mod kube_events;
pub mod labels;
