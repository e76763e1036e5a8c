//! Routing: which AlertRoutes a candidate signal matches, its group key, and the repeat windows
//! that decide whether it pages. Pure: no client, no clock reads.
//!
//! ```text
//!  source ─> Candidate ─> RouteIndex::matching ─> for each route: GroupKey::of ─> decide(state, now)
//!                                                   Page { name, not_before } ─> build_alert_call ─> create
//!                                                   Suppress ─> route status, page counters
//! ```
//! The controller rebuilds the [`RouteIndex`] when an AlertRoute changes and reads each route's
//! matcher and selector errors from it for the `Ready` condition.

pub mod build;
pub mod candidate;
pub mod group;
pub mod index;
pub mod matchers;
pub mod selector;

pub use build::{build_alert_call, last_page, BuiltCall, PageRequest};
pub use candidate::{
    AlertCandidate, AlertStatus, Candidate, EventCandidate, InvolvedObject, RouteKey,
};
pub use group::{
    alert_call_name, decide, group_hash, GroupDecision, GroupKey, GroupState, GroupTracker, Window,
};
pub use index::{CompiledRoute, RouteError, RouteIndex};
pub use matchers::{MatchOp, Matcher, MatcherError, Matchers};
pub use selector::{Selector, SelectorError};
