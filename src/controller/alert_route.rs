//! AlertRoutes: the in-memory route index every source matches against, and the routes' status.
//!
//! ```text
//!  watch AlertRoute ─┐                          ┌─> sources, pager (matching, templates)
//!  watch CallPolicy ─┴─> RouteSnapshot (index) ─┤
//!                                               └─> status loop: desired_status (pure) ─> apply /status
//!  pager ─> RouteStats (counter deltas, template errors) ──────────^   (batched, leader only)
//! ```
//! The status loop reads the same published snapshot the sources match against, so a route shows
//! `Ready` only once signals can match it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{stream, FutureExt, StreamExt};
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, Patch, PatchParams};
use kube::core::DeserializeGuard;
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Resource, ResourceExt};
use serde_json::json;
use tokio::sync::watch;

use super::{Context, FIELD_MANAGER};
use crate::api::conditions::set_condition;
use crate::api::{validate, AlertRoute, AlertRouteStatus, CallPolicy};
use crate::routing::{CompiledRoute, RouteIndex, RouteKey};

/// How often route status is written at most: counters of a storm are summed in between.
pub const STATUS_INTERVAL: Duration = Duration::from_secs(1);

/// What a route needs to know of its policy.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyInfo {
    /// `spec.message.template`; `None` when the policy exists but does not parse.
    pub template: Option<String>,
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
        self.policy(&route.key.namespace, &route.route.spec.policy_ref.name)
            .and_then(|p| p.template.clone())
            .unwrap_or_else(|| crate::api::call_policy::DEFAULT_TEMPLATE.to_string())
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
    fn drain(&self) -> HashMap<RouteKey, RouteActivity> {
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
        }
        map.retain(|_, a| a.template_error.is_some());
        out
    }

    /// Puts back counters a failed write did not record.
    fn restore(&self, key: &RouteKey, activity: RouteActivity) {
        self.update(key, |current| {
            current.matched += activity.matched;
            current.suppressed += activity.suppressed;
            current.last_matched_at = current.last_matched_at.max(activity.last_matched_at);
            if current.last_alert_call.is_none() {
                current.last_alert_call = activity.last_alert_call;
            }
        });
    }
}

/// Watches AlertRoutes and CallPolicies and publishes a new [`RouteSnapshot`] on each change.
pub async fn maintain_index(ctx: Arc<Context>, publish: watch::Sender<Arc<RouteSnapshot>>) {
    let client = ctx.client.clone();
    let (routes_api, policies_api): (
        Api<DeserializeGuard<AlertRoute>>,
        Api<DeserializeGuard<CallPolicy>>,
    ) = match &ctx.config.namespace {
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
            ctx.readiness.set_ready("alertroutes");
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
                    |guard| guard.0.ok().map(Arc::new),
                ) || invalid
            }
            Change::Policy(Ok(event)) => apply_event(
                event,
                &mut self.policies,
                &mut self.policy_buffer,
                &mut self.policies_synced,
                |guard| {
                    Some(PolicyInfo {
                        template: guard.0.ok().map(|p| p.spec.message.template),
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

/// The status a route should have. Pure: `None` when the current status already says it (only
/// timestamps would differ), so an idle route costs no writes.
pub fn desired_status(
    route: &CompiledRoute,
    snapshot: &RouteSnapshot,
    activity: Option<&RouteActivity>,
    base: (i64, i64),
    now: Timestamp,
) -> Option<AlertRouteStatus> {
    let current = route.route.status.clone().unwrap_or_default();
    let mut status = current.clone();
    let generation = route.route.metadata.generation;
    let (ready, reason, message) = readiness(route, snapshot, activity);
    let mut changed = set_condition(
        &mut status.conditions,
        "Ready",
        ready,
        reason,
        &message,
        generation,
        Time(now),
    );
    if status.observed_generation != generation {
        status.observed_generation = generation;
        changed = true;
    }
    status.matched_total = current.matched_total.max(base.0);
    status.suppressed_total = current.suppressed_total.max(base.1);
    if status.matched_total != current.matched_total
        || status.suppressed_total != current.suppressed_total
    {
        changed = true;
    }
    if let Some(activity) = activity {
        if activity.matched > 0 || activity.suppressed > 0 {
            status.matched_total += activity.matched;
            status.suppressed_total += activity.suppressed;
            changed = true;
        }
        if let Some(at) = activity.last_matched_at {
            if status.last_matched_at.as_ref().is_none_or(|t| t.0 < at) {
                status.last_matched_at = Some(Time(at));
                changed = true;
            }
        }
        if let Some(name) = &activity.last_alert_call {
            if status.last_alert_call.as_ref() != Some(name) {
                status.last_alert_call = Some(name.clone());
                changed = true;
            }
        }
    }
    changed.then_some(status)
}

/// `Ready` of a route: (status, reason, message). The first problem's reason wins; the message
/// lists every problem.
pub fn readiness(
    route: &CompiledRoute,
    snapshot: &RouteSnapshot,
    activity: Option<&RouteActivity>,
) -> (bool, &'static str, String) {
    let mut problems: Vec<(&'static str, String)> = route
        .errors
        .iter()
        .map(|error| (error.reason(), error.to_problem().to_string()))
        .collect();
    for problem in validate::alert_route(&route.route.spec) {
        let reason = if problem.field.ends_with("template") {
            "TemplateError"
        } else {
            "InvalidSpec"
        };
        problems.push((reason, problem.to_string()));
    }
    let policy_name = &route.route.spec.policy_ref.name;
    match snapshot.policy(&route.key.namespace, policy_name) {
        None => problems.push((
            "PolicyNotFound",
            format!("spec.policyRef: no CallPolicy {policy_name:?} in this namespace"),
        )),
        Some(policy) if route.route.spec.message.is_none() => {
            if let Some(Err(error)) = policy
                .template
                .as_deref()
                .map(crate::message::check_template)
            {
                problems.push((
                    "TemplateError",
                    format!("CallPolicy {policy_name} spec.message.template: {error}"),
                ));
            }
        }
        Some(_) => {}
    }
    if let Some((template, error)) = activity.and_then(|a| a.template_error.as_ref()) {
        if *template == snapshot.template_of(route)
            && !problems
                .iter()
                .any(|(reason, _)| *reason == "TemplateError")
        {
            problems.push((
                "TemplateError",
                format!("{error}; pages use the plain fallback text"),
            ));
        }
    }
    if let Some((reason, _)) = problems.first() {
        let message = problems
            .iter()
            .map(|(_, message)| message.as_str())
            .collect::<Vec<_>>()
            .join("; ");
        return (false, reason, message);
    }
    if route.route.spec.suspend {
        return (true, "Suspended", "suspended: matches nothing".to_string());
    }
    (true, "Ready", "routing signals to the policy".to_string())
}

/// Writes each route's status when it changed, at most every [`STATUS_INTERVAL`]; leader only.
pub async fn write_status(ctx: Arc<Context>, mut routes: Routes, stats: RouteStats) {
    // Counters last written, by route uid: the watch may lag behind our own writes, and a
    // stale base must not lose increments.
    let mut written: HashMap<String, (i64, i64)> = HashMap::new();
    // Routes found up to date, by uid: their resourceVersion, effective template and whether
    // their policy existed then. An
    // idle route is not validated again (templates rendered) on every tick.
    let mut clean: HashMap<String, (Option<String>, String, bool)> = HashMap::new();
    let mut last_write: HashMap<String, Instant> = HashMap::new();
    // Routes that do not parse, by uid: the generation and error last reported.
    let mut reported: HashMap<String, (Option<i64>, String)> = HashMap::new();
    let mut tick = tokio::time::interval(STATUS_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            changed = routes.changed() => {
                if changed.is_err() {
                    return;
                }
            }
        }
        if !ctx.leader.is_leader() {
            continue;
        }
        let snapshot = routes.borrow_and_update().clone();
        if !snapshot.synced {
            continue;
        }
        let mut activity = stats.drain();
        let now = Timestamp::now();
        for route in snapshot.index.routes() {
            let uid = route.route.uid().unwrap_or_default();
            let base = written.get(&uid).copied().unwrap_or_default();
            let pending = activity.remove(&route.key);
            let busy = pending
                .as_ref()
                .is_some_and(|a| a.matched > 0 || a.suppressed > 0 || a.last_alert_call.is_some());
            let marker = (
                route.route.resource_version(),
                snapshot.template_of(route),
                snapshot
                    .policy(&route.key.namespace, &route.route.spec.policy_ref.name)
                    .is_some(),
            );
            if !busy && clean.get(&uid) == Some(&marker) {
                continue;
            }
            let spec_seen = route
                .route
                .status
                .as_ref()
                .and_then(|s| s.observed_generation)
                == route.route.metadata.generation;
            let recent = last_write
                .get(&uid)
                .is_some_and(|at: &Instant| at.elapsed() < STATUS_INTERVAL);
            if busy && recent && spec_seen {
                // NB: our own write woke us; counters wait for the interval to pass.
                if let Some(pending) = pending {
                    stats.restore(&route.key, pending);
                }
                continue;
            }
            let Some(status) = desired_status(route, &snapshot, pending.as_ref(), base, now) else {
                clean.insert(uid, marker);
                continue;
            };
            clean.remove(&uid);
            match apply_status(&ctx, &route.route, &status).await {
                Ok(()) => {
                    last_write.insert(uid.clone(), Instant::now());
                    written.insert(uid, (status.matched_total, status.suppressed_total));
                }
                Err(error) => {
                    tracing::warn!(route = %route.key, %error, "writing AlertRoute status");
                    ctx.metrics
                        .reconcile_error("alertroute", "StatusWriteFailed");
                    if let Some(pending) = pending {
                        stats.restore(&route.key, pending);
                    }
                }
            }
        }
        // Activity of routes deleted meanwhile has nowhere to go.
        drop(activity);
        for invalid in &snapshot.invalid {
            let marker = (invalid.generation, invalid.error.clone());
            if reported.get(&invalid.uid) == Some(&marker) {
                continue;
            }
            match report_invalid(&ctx, invalid, now).await {
                Ok(()) => {
                    reported.insert(invalid.uid.clone(), marker);
                }
                // NB: a route deleted during a relist lingers here; it needs no report.
                Err(kube::Error::Api(status)) if status.code == 404 => {
                    reported.insert(invalid.uid.clone(), marker);
                }
                Err(error) => {
                    tracing::warn!(namespace = %invalid.namespace, route = %invalid.name, %error, "writing AlertRoute status");
                }
            }
        }
    }
}

/// `Ready=False InvalidSpec` on a route the operator cannot read (its current status cannot be
/// read either, so the transition time is now).
async fn report_invalid(
    ctx: &Context,
    invalid: &InvalidRoute,
    now: Timestamp,
) -> Result<(), kube::Error> {
    let mut status = AlertRouteStatus {
        observed_generation: invalid.generation,
        ..Default::default()
    };
    set_condition(
        &mut status.conditions,
        "Ready",
        false,
        "InvalidSpec",
        &format!("the route does not parse: {}", invalid.error),
        invalid.generation,
        Time(now),
    );
    let api: Api<AlertRoute> = Api::namespaced(ctx.client.clone(), &invalid.namespace);
    let patch = json!({
        "apiVersion": AlertRoute::api_version(&()),
        "kind": AlertRoute::kind(&()),
        "status": {"observedGeneration": status.observed_generation, "conditions": status.conditions},
    });
    api.patch_status(
        &invalid.name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await
    .map(|_| ())
}

async fn apply_status(
    ctx: &Context,
    route: &AlertRoute,
    status: &AlertRouteStatus,
) -> Result<(), kube::Error> {
    let namespace = route.namespace().unwrap_or_default();
    let api: Api<AlertRoute> = Api::namespaced(ctx.client.clone(), &namespace);
    let patch = json!({
        "apiVersion": AlertRoute::api_version(&()),
        "kind": AlertRoute::kind(&()),
        "status": status,
    });
    api.patch_status(
        &route.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await
    .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{AlertmanagerSpec, MessageOverride, SecretKeyRef};
    use crate::fixtures;

    fn compiled(spec: crate::api::AlertRouteSpec) -> CompiledRoute {
        let mut route = AlertRoute::new("r", spec);
        route.metadata.namespace = Some("prod".into());
        route.metadata.generation = Some(3);
        CompiledRoute::compile(Arc::new(route))
    }

    fn snapshot_with_policy() -> RouteSnapshot {
        RouteSnapshot {
            policies: HashMap::from([(
                ("prod".to_string(), "oncall".to_string()),
                PolicyInfo {
                    template: Some(crate::api::call_policy::DEFAULT_TEMPLATE.into()),
                },
            )]),
            synced: true,
            ..Default::default()
        }
    }

    #[test]
    fn readiness_table() {
        let snapshot = snapshot_with_policy();
        let mut bad_matcher = fixtures::route_spec();
        bad_matcher.alertmanager = Some(AlertmanagerSpec {
            matchers: vec!["team=~(".into()],
            bearer_token_secret_ref: SecretKeyRef {
                name: "t".into(),
                key: "token".into(),
            },
        });
        let mut bad_template = fixtures::route_spec();
        bad_template.message = Some(MessageOverride {
            template: "{{ reason ".into(),
        });
        let mut no_policy = fixtures::route_spec();
        no_policy.policy_ref.name = "missing".into();
        let mut suspended = fixtures::route_spec();
        suspended.suspend = true;
        let table = [
            (fixtures::route_spec(), true, "Ready"),
            (bad_matcher, false, "InvalidMatcher"),
            (bad_template, false, "TemplateError"),
            (no_policy, false, "PolicyNotFound"),
            (suspended, true, "Suspended"),
        ];
        for (spec, want_ready, want_reason) in table {
            let (ready, reason, message) = readiness(&compiled(spec), &snapshot, None);
            assert_eq!((ready, reason), (want_ready, want_reason), "{message}");
        }
    }

    #[test]
    fn invalid_matcher_message_quotes_the_parse_error() {
        let mut spec = fixtures::route_spec();
        spec.alertmanager = Some(AlertmanagerSpec {
            matchers: vec!["team=~(".into()],
            bearer_token_secret_ref: SecretKeyRef {
                name: "t".into(),
                key: "token".into(),
            },
        });
        let (_, _, message) = readiness(&compiled(spec), &snapshot_with_policy(), None);
        assert!(
            message.contains("spec.alertmanager.matchers[0]"),
            "{message}"
        );
        assert!(message.contains("invalid regex"), "{message}");
    }

    #[test]
    fn runtime_template_error_sticks_until_the_template_changes() {
        let snapshot = snapshot_with_policy();
        let route = compiled(fixtures::route_spec());
        let activity = RouteActivity {
            template_error: Some((snapshot.template_of(&route), "boom".into())),
            ..Default::default()
        };
        let (ready, reason, _) = readiness(&route, &snapshot, Some(&activity));
        assert_eq!((ready, reason), (false, "TemplateError"));
        let stale = RouteActivity {
            template_error: Some(("old template".into(), "boom".into())),
            ..Default::default()
        };
        assert!(readiness(&route, &snapshot, Some(&stale)).0);
    }

    #[test]
    fn status_is_written_once_then_only_on_news() {
        let snapshot = snapshot_with_policy();
        let route = compiled(fixtures::route_spec());
        let now = fixtures::at(100);
        let first = desired_status(&route, &snapshot, None, (0, 0), now);
        let Some(first) = first else {
            panic!("a new route needs a status");
        };
        assert_eq!(first.observed_generation, Some(3));
        let mut written = (*route.route).clone();
        written.status = Some(first);
        let route = CompiledRoute::compile(Arc::new(written));
        assert_eq!(
            desired_status(&route, &snapshot, None, (0, 0), fixtures::at(200)),
            None
        );
        let activity = RouteActivity {
            matched: 1000,
            suppressed: 999,
            last_matched_at: Some(fixtures::at(150)),
            last_alert_call: Some("r-0123456789".into()),
            template_error: None,
        };
        let next = desired_status(
            &route,
            &snapshot,
            Some(&activity),
            (5, 4),
            fixtures::at(200),
        );
        let Some(next) = next else {
            panic!("counters must be written");
        };
        assert_eq!((next.matched_total, next.suppressed_total), (1005, 1003));
        assert_eq!(next.last_alert_call.as_deref(), Some("r-0123456789"));
        // The Ready condition did not flip: its transition time stays.
        assert_eq!(
            next.conditions[0].last_transition_time,
            Time(fixtures::at(100))
        );
    }

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
}
