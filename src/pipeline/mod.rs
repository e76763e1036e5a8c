//! From a signal to a page: the route snapshot every source matches against ([`routes`]) and
//! the pager that decides, per route and group, whether a signal becomes a new AlertCall
//! ([`pager`]). Sources feed it; the AlertCall controller takes over once the page exists.

pub mod pager;
pub mod routes;

use std::sync::Arc;

use kube::Client;

use crate::http::Readiness;
use crate::leader::Leadership;
use crate::metrics::Metrics;

/// What the pipeline and the sources need of the operator, and nothing more: whom to ask, what
/// to watch, whether this replica acts, and where to report being ready and busy.
#[derive(Clone)]
pub struct Shared {
    pub client: Client,
    /// Watch one namespace only; `None` watches all.
    pub namespace: Option<String>,
    pub leader: Leadership,
    pub readiness: Readiness,
    pub metrics: Arc<Metrics>,
}
