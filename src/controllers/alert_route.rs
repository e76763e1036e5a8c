//! AlertRoutes' status, from the route snapshot ([`crate::pipeline::routes`]) and the counters
//! the pager reports:
//!
//! ```text
//!  RouteSnapshot ─┐
//!  RouteStats ────┴─> status loop: desired_status (pure) ─> apply /status (batched, leader only)
//! ```
//! The status loop reads the same published snapshot the sources match against, so a route shows
//! `Ready` only once signals can match it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, Patch, PatchParams};
use kube::{Resource, ResourceExt};
use serde_json::json;

use super::{Context, FIELD_MANAGER};
use crate::api::conditions::set_condition;
use crate::api::{validate, AlertRoute, AlertRouteStatus};
use crate::pipeline::routes::{InvalidRoute, RouteActivity, RouteSnapshot, RouteStats, Routes};
use crate::routing::CompiledRoute;

/// How often route status is written at most: counters of a storm are summed in between.
pub const STATUS_INTERVAL: Duration = Duration::from_secs(1);

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
        if let Some(at) = activity.last_beat_at {
            if status.last_beat_at.as_ref().is_none_or(|t| t.0 < at) {
                status.last_beat_at = Some(Time(at));
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
    use crate::pipeline::routes::PolicyInfo;

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
                    quiet_hours: Vec::new(),
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
            last_beat_at: None,
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
}
