//! Sources: cluster signals become candidates for the pager ([`crate::pipeline::pager`]).
//!
//! ```text
//!  core/v1 Events ──watch──> kube_events (age, dedup, labels from metadata watches) ─┐
//!  POST /alertmanager/{namespace}/{route} ──> alertmanager (bearer token, payload v4) ┴─> Pager
//! ```

pub mod alertmanager;
pub mod kube_events;
pub mod labels;

// Permissions (ClusterRole, or Role with `--namespace`), for the chart:
// - core `events`: list, watch (the Event source);
// - core `namespaces`: list, watch (namespaceSelector labels; with `--namespace` a field selector
//   on its name, but list and watch on namespaces are still needed);
// - list, watch on every kind routes select by `objectSelector` (metadata only; Pods and Nodes by
//   default, more when routes name them) and discovery (`/api`, `/apis`, non-resource GET);
// - core `secrets`: get (the Alertmanager bearer token, in the routes' namespaces);
// - `alertcall.dev` `alertroutes`, `callpolicies`: list, watch; `alertroutes/status`: patch;
//   `alertcalls`: list, watch, create, patch.
