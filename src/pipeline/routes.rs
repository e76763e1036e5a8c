//! The routes and policies as last seen: the in-memory route index every source matches
//! against, published as one snapshot on each change, and the per-route activity the pager
//! reports for the AlertRoute controller to write into status.
//!
//! ```text
//!  watch AlertRoute ─┐                          ┌─> sources, pager (matching, templates)
//!  watch CallPolicy ─┴─> RouteSnapshot (index) ─┤
//!                                               └─> AlertRoute status loop
//!  pager ─> RouteStats (counter deltas, template errors) ──────^
//! ```

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures::{stream, FutureExt, StreamExt};
use jiff::Timestamp;
use kube::api::Api;
use kube::core::DeserializeGuard;
use kube::runtime::{watcher, WatchStreamExt};
use kube::ResourceExt;
use tokio::sync::watch;

use super::Shared;
use crate::api::{AlertRoute, CallPolicy, TimeInterval};
use crate::routing::{CompiledRoute, RouteIndex, RouteKey};
use crate::schedule::interval::Intervals;

/// Readiness component: the first snapshot with both initial lists is published.
pub const ROUTES: &str = "alertroutes";

/// What a route needs to know of its policy.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyInfo {
    /// `spec.message.template`; `None` when the policy exists but does not parse.
    pub template: Option<String>,
    /// `spec.quietHours`; empty when the policy does not parse.
    pub quiet_hours: Vec<TimeInterval>,
}

/// An AlertRoute that does not parse: it matches nothing and says so in its status.
#[derive(Debug, Clone, PartialEq)]
pub struct InvalidRoute {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub generation: Option<i64>,
    pub error: String,
}

/// The routes and policies as last seen, published to every source on each change.
#[derive(Debug, Default)]
pub struct RouteSnapshot {
    pub index: RouteIndex,
    pub policies: HashMap<(String, String), PolicyInfo>,
    pub invalid: Vec<InvalidRoute>,
    /// Both initial lists are in: matching against this snapshot is meaningful.
    pub synced: bool,
}

impl RouteSnapshot {
    pub fn policy(&self, namespace: &str, name: &str) -> Option<&PolicyInfo> {
        self.policies
            .get(&(namespace.to_string(), name.to_string()))
    }

    /// The template a page of `route` is rendered with: the route's, else its policy's, else the
    /// default (the page still goes out when the policy is missing).
    pub fn template_of(&self, route: &CompiledRoute) -> String {
        if let Some(message) = &route.route.spec.message {
            return message.template.clone();
        }
        if route.route.spec.heartbeat.is_some() {
            // NB: a heartbeat route pages about the silence only; the summary says it all.
            return "{{ summary }}".to_string();
        }
        self.policy(&route.key.namespace, &route.route.spec.policy_ref.name)
            .and_then(|p| p.template.clone())
            .unwrap_or_else(|| crate::api::call_policy::DEFAULT_TEMPLATE.to_string())
    }

    /// When a page of `route` starting at `now` may call: the end of its policy's quiet hours
    /// when `now` is in them and the route is not urgent, else `None` (at once). Quiet hours that
    /// do not parse (the policy's status says so) or do not end within a week hold nothing: when
    /// in doubt, call.
    pub fn quiet_until(&self, route: &CompiledRoute, now: Timestamp) -> Option<Timestamp> {
        let policy = self.policy(&route.key.namespace, &route.route.spec.policy_ref.name)?;
        let urgent = route.route.spec.urgent;
        let until = Intervals::quiet_until(&policy.quiet_hours, urgent, now);
        if until.is_none() && !urgent && !policy.quiet_hours.is_empty() {
            // NB: compiled again only on this rare path, to say why a quiet page calls now.
            let never_ends = Intervals::compile(&policy.quiet_hours, "spec.quietHours")
                .is_ok_and(|quiet| quiet.contains(now));
            if never_ends {
                tracing::warn!(route = %route.key, "quiet hours of the policy never end within a week; paging at once");
            }
        }
        until
    }
}

pub type Routes = watch::Receiver<Arc<RouteSnapshot>>;

/// Per-route activity the pager reports, drained by the status loop.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RouteActivity {
    pub matched: i64,
    pub suppressed: i64,
    pub last_matched_at: Option<Timestamp>,
    pub last_alert_call: Option<String>,
    /// A heartbeat route's newest beat.
    pub last_beat_at: Option<Timestamp>,
    /// The template that failed to render on a real signal, and why.
    pub template_error: Option<(String, String)>,
}

/// Shared between the pager (writer) and the status loop (reader).
#[derive(Clone, Default)]
pub struct RouteStats {
    inner: Arc<Mutex<HashMap<RouteKey, RouteActivity>>>,
}

impl RouteStats {
    pub fn update(&self, key: &RouteKey, f: impl FnOnce(&mut RouteActivity)) {
        if let Ok(mut map) = self.inner.lock() {
            f(map.entry(key.clone()).or_default());
        }
    }

    /// Takes the counters accumulated since the last call; template errors stay (they describe
    /// the route until its template changes).
    pub fn drain(&self) -> HashMap<RouteKey, RouteActivity> {
        let Ok(mut map) = self.inner.lock() else {
            return HashMap::new();
        };
        let mut out = HashMap::new();
        for (key, activity) in map.iter_mut() {
            out.insert(key.clone(), activity.clone());
            activity.matched = 0;
            activity.suppressed = 0;
            activity.last_matched_at = None;
            activity.last_alert_call = None;
            activity.last_beat_at = None;
        }
        map.retain(|_, a| a.template_error.is_some());
        out
    }

    /// Puts back counters a failed write did not record.
    pub fn restore(&self, key: &RouteKey, activity: RouteActivity) {
        self.update(key, |current| {
            current.matched += activity.matched;
            current.suppressed += activity.suppressed;
            current.last_matched_at = current.last_matched_at.max(activity.last_matched_at);
            current.last_beat_at = current.last_beat_at.max(activity.last_beat_at);
            if current.last_alert_call.is_none() {
                current.last_alert_call = activity.last_alert_call;
            }
        });
    }
}

/// Watches AlertRoutes and CallPolicies and publishes a new [`RouteSnapshot`] on each change.
pub async fn maintain_index(shared: Shared, publish: watch::Sender<Arc<RouteSnapshot>>) {
    let client = shared.client.clone();
    let (routes_api, policies_api): (
        Api<DeserializeGuard<AlertRoute>>,
        Api<DeserializeGuard<CallPolicy>>,
    ) = match &shared.namespace {
        Some(ns) => (
            Api::namespaced(client.clone(), ns),
            Api::namespaced(client, ns),
        ),
        None => (Api::all(client.clone()), Api::all(client)),
    };
    let routes = watcher(routes_api, watcher::Config::default())
        .default_backoff()
        .map(Change::Route);
    let policies = watcher(policies_api, watcher::Config::default())
        .default_backoff()
        .map(Change::Policy);
    let mut changes = stream::select(routes.boxed(), policies.boxed());
    let mut state = IndexState::default();
    while let Some(change) = changes.next().await {
        let mut changed = state.fold(change);
        // NB: a burst (our own status writes, a kubectl apply of many routes) is folded into
        // one rebuild.
        while let Some(Some(change)) = changes.next().now_or_never() {
            changed |= state.fold(change);
        }
        if changed && state.routes_synced && state.policies_synced {
            publish.send_replace(Arc::new(state.snapshot()));
            shared.readiness.set_ready(ROUTES);
        }
    }
}

enum Change {
    Route(watcher::Result<watcher::Event<DeserializeGuard<AlertRoute>>>),
    Policy(watcher::Result<watcher::Event<DeserializeGuard<CallPolicy>>>),
}

type ObjectKey = (String, String);

#[derive(Default)]
struct IndexState {
    routes: HashMap<ObjectKey, Arc<AlertRoute>>,
    route_buffer: HashMap<ObjectKey, Arc<AlertRoute>>,
    routes_synced: bool,
    policies: HashMap<ObjectKey, PolicyInfo>,
    policy_buffer: HashMap<ObjectKey, PolicyInfo>,
    policies_synced: bool,
    invalid: HashMap<ObjectKey, InvalidRoute>,
}

impl IndexState {
    fn note_invalid(&mut self, event: &watcher::Event<DeserializeGuard<AlertRoute>>) -> bool {
        let (guard, deleted) = match event {
            watcher::Event::Apply(guard) | watcher::Event::InitApply(guard) => (guard, false),
            watcher::Event::Delete(guard) => (guard, true),
            _ => return false,
        };
        let key = (guard.namespace().unwrap_or_default(), guard.name_any());
        match (&guard.0, deleted) {
            (Err(invalid), false) => {
                let route = InvalidRoute {
                    namespace: key.0.clone(),
                    name: key.1.clone(),
                    uid: invalid.metadata.uid.clone().unwrap_or_default(),
                    generation: invalid.metadata.generation,
                    error: invalid.error.clone(),
                };
                self.invalid.insert(key, route);
                true
            }
            _ => self.invalid.remove(&key).is_some(),
        }
    }

    fn fold(&mut self, change: Change) -> bool {
        match change {
            Change::Route(Ok(event)) => {
                let invalid = self.note_invalid(&event);
                apply_event(
                    event,
                    &mut self.routes,
                    &mut self.route_buffer,
                    &mut self.routes_synced,
                    |guard| guard.0.ok().map(|route| Arc::new(slim(route))),
                ) || invalid
            }
            Change::Policy(Ok(event)) => apply_event(
                event,
                &mut self.policies,
                &mut self.policy_buffer,
                &mut self.policies_synced,
                |guard| {
                    let spec = guard.0.ok().map(|p| p.spec);
                    Some(PolicyInfo {
                        quiet_hours: spec
                            .as_ref()
                            .map(|s| s.quiet_hours.clone())
                            .unwrap_or_default(),
                        template: spec.map(|s| s.message.template),
                    })
                },
            ),
            Change::Route(Err(error)) | Change::Policy(Err(error)) => {
                tracing::warn!(%error, "watching AlertRoutes or CallPolicies");
                false
            }
        }
    }

    fn snapshot(&self) -> RouteSnapshot {
        RouteSnapshot {
            index: RouteIndex::new(self.routes.values().cloned()),
            policies: self.policies.clone(),
            invalid: self.invalid.values().cloned().collect(),
            synced: true,
        }
    }
}

/// The route as the snapshot keeps it: see [`crate::api::forget_bookkeeping`].
fn slim(mut route: AlertRoute) -> AlertRoute {
    crate::api::forget_bookkeeping(&mut route.metadata);
    route
}

/// Folds one watch event into `objects`; true when the published snapshot must change.
fn apply_event<G: ResourceExt, T>(
    event: watcher::Event<G>,
    objects: &mut HashMap<(String, String), T>,
    buffer: &mut HashMap<(String, String), T>,
    synced: &mut bool,
    convert: impl Fn(G) -> Option<T>,
) -> bool {
    let key = |object: &G| (object.namespace().unwrap_or_default(), object.name_any());
    match event {
        watcher::Event::Apply(object) => {
            let k = key(&object);
            match convert(object) {
                Some(value) => objects.insert(k, value),
                None => objects.remove(&k),
            };
            true
        }
        watcher::Event::Delete(object) => objects.remove(&key(&object)).is_some(),
        watcher::Event::Init => {
            buffer.clear();
            false
        }
        watcher::Event::InitApply(object) => {
            let k = key(&object);
            if let Some(value) = convert(object) {
                buffer.insert(k, value);
            }
            false
        }
        watcher::Event::InitDone => {
            *objects = std::mem::take(buffer);
            *synced = true;
            true
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures;

    #[test]
    fn routes_that_do_not_parse_are_listed_until_fixed_or_deleted() {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
        let meta = ObjectMeta {
            name: Some("r".into()),
            namespace: Some("prod".into()),
            uid: Some("u1".into()),
            generation: Some(2),
            ..Default::default()
        };
        let broken =
            DeserializeGuard::<AlertRoute>(Err(kube::core::error_boundary::InvalidObject {
                error: "unknown variant `Sometimes`".into(),
                metadata: meta.clone(),
            }));
        let mut state = IndexState::default();
        assert!(state.fold(Change::Route(Ok(watcher::Event::Apply(broken)))));
        let invalid = state.snapshot().invalid;
        assert_eq!(invalid.len(), 1);
        assert_eq!(invalid[0].generation, Some(2));
        let mut fixed = AlertRoute::new("r", fixtures::route_spec());
        fixed.metadata = meta;
        assert!(
            state.fold(Change::Route(Ok(watcher::Event::Apply(DeserializeGuard(
                Ok(fixed)
            )))))
        );
        let snapshot = state.snapshot();
        assert!(snapshot.invalid.is_empty());
        assert_eq!(snapshot.index.len(), 1);
    }

    #[test]
    fn the_index_keeps_routes_without_managed_fields_and_last_applied_copies() {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry;
        let mut route = AlertRoute::new("r", fixtures::route_spec());
        route.metadata.namespace = Some("prod".into());
        route.metadata.managed_fields = Some(vec![ManagedFieldsEntry {
            manager: Some("kubectl".into()),
            operation: Some("Apply".into()),
            ..Default::default()
        }]);
        route.metadata.annotations = Some(
            [
                (
                    crate::api::LAST_APPLIED.to_string(),
                    "{\"spec\":{}}".to_string(),
                ),
                ("team".to_string(), "sre".to_string()),
            ]
            .into(),
        );
        let kept_meta = |state: &IndexState| {
            let kept = state.routes.values().next().map(|r| r.metadata.clone());
            let kept = kept.unwrap_or_default();
            assert_eq!(kept.managed_fields, None);
            assert_eq!(
                kept.annotations,
                Some([("team".to_string(), "sre".to_string())].into())
            );
        };
        let mut state = IndexState::default();
        // From the initial list, then from a change.
        for event in [
            watcher::Event::Init,
            watcher::Event::InitApply(DeserializeGuard(Ok(route.clone()))),
            watcher::Event::InitDone,
        ] {
            state.fold(Change::Route(Ok(event)));
        }
        kept_meta(&state);
        let changed = watcher::Event::Apply(DeserializeGuard(Ok(route.clone())));
        assert!(state.fold(Change::Route(Ok(changed))));
        kept_meta(&state);
        // What matching and the status loop read is all there.
        let snapshot = state.snapshot();
        let kept = &snapshot.index.routes()[0].route;
        assert_eq!(kept.spec, route.spec);
        assert_eq!(kept.metadata.name, route.metadata.name);
        assert_eq!(kept.metadata.generation, route.metadata.generation);
    }

    #[test]
    fn drain_takes_counters_and_keeps_template_errors() {
        let stats = RouteStats::default();
        let key = RouteKey::new("prod", "r");
        stats.update(&key, |a| {
            a.matched += 2;
            a.template_error = Some(("t".into(), "e".into()));
        });
        let drained = stats.drain();
        assert_eq!(drained.get(&key).map(|a| a.matched), Some(2));
        let again = stats.drain();
        assert_eq!(again.get(&key).map(|a| a.matched), Some(0));
        assert!(again.get(&key).is_some_and(|a| a.template_error.is_some()));
    }

    #[test]
    fn quiet_hours_hold_a_page_of_a_route_that_is_not_urgent_until_they_end() {
        let nights = crate::api::TimeInterval {
            times: vec![crate::api::TimeRange {
                start: "22:00".into(),
                end: "07:00".into(),
            }],
            location: Some("America/New_York".into()),
            ..Default::default()
        };
        let snapshot = |quiet_hours: Vec<TimeInterval>| RouteSnapshot {
            policies: HashMap::from([(
                ("prod".to_string(), "oncall".to_string()),
                PolicyInfo {
                    template: None,
                    quiet_hours,
                },
            )]),
            ..Default::default()
        };
        let route = |urgent: bool, policy: &str| {
            let mut spec = fixtures::route_spec();
            spec.urgent = urgent;
            spec.policy_ref.name = policy.into();
            let mut route = AlertRoute::new("r", spec);
            route.metadata.namespace = Some("prod".into());
            CompiledRoute::compile(Arc::new(route))
        };
        let night: Timestamp = "2026-12-02T04:30:00Z".parse().unwrap_or_default();
        let morning: Timestamp = "2026-12-02T12:00:00Z".parse().unwrap_or_default();
        let quiet = snapshot(vec![nights.clone()]);
        assert_eq!(
            quiet.quiet_until(&route(false, "oncall"), night),
            Some(morning)
        );
        assert_eq!(quiet.quiet_until(&route(false, "oncall"), morning), None);
        assert_eq!(quiet.quiet_until(&route(true, "oncall"), night), None);
        assert_eq!(quiet.quiet_until(&route(false, "missing"), night), None);
        let always = snapshot(vec![TimeInterval::default()]);
        assert_eq!(always.quiet_until(&route(false, "oncall"), night), None);
        let broken = snapshot(vec![TimeInterval {
            location: Some("Mars/Olympus".into()),
            ..nights
        }]);
        assert_eq!(broken.quiet_until(&route(false, "oncall"), night), None);
    }
}
