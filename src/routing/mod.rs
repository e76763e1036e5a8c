//! Routing: which AlertRoutes a candidate signal matches, its group key, and the repeat windows
//! that decide whether it pages. Pure: no client, no clock reads.

pub mod candidate;
pub mod group;
pub mod index;
pub mod matchers;
pub mod selector;

pub use candidate::{AlertCandidate, AlertStatus, Candidate, EventCandidate, InvolvedObject, RouteKey};
pub use group::{alert_call_name, decide, group_hash, Decision, GroupKey, GroupState, GroupTracker, Window};
pub use index::{CompiledRoute, RouteError, RouteIndex};
pub use matchers::{MatchOp, Matcher, MatcherError, Matchers};
pub use selector::{Selector, SelectorError};
