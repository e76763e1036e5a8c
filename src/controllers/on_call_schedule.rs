//! The OnCallSchedule controller: keeps `status` saying who is on call now, until when and who
//! is next, and wakes up at the next change instead of polling.
//!
//! ```text
//!  gather: the schedule  ->  decide (pure: schedule::Schedule::evaluate at now)
//!  record: status (merge patch, skipped when equal)  ->  requeue at status.until
//! ```
//!
//! Only the Lease holder writes status; followers requeue at the same instant so a new leader
//! is never late by more than one change.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, Patch, PatchParams};
use kube::core::DeserializeGuard;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType};
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};

use super::{Context, FIELD_MANAGER};
use crate::api::conditions::{find, set_condition};
use crate::api::{OnCallSchedule, OnCallScheduleStatus};
use crate::schedule::Schedule;

pub const READY: &str = "Ready";
pub const ON_CALL: &str = "OnCall";

/// How long a schedule that will not change within the evaluation horizon waits before it is
/// evaluated again.
const IDLE_REQUEUE: Duration = Duration::from_secs(30 * 86_400);
/// Woken this much after a change, so the clock has certainly passed it.
const WAKE_MARGIN: Duration = Duration::from_millis(500);

/// Why a reconcile failed: only the API server can make it fail.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
}

/// The status `schedule` should have at `now`, and when to look again.
pub fn decide(schedule: &OnCallSchedule, now: Timestamp) -> (OnCallScheduleStatus, Duration) {
    let mut status = schedule.status.clone().unwrap_or_default();
    let generation = schedule.metadata.generation;
    status.observed_generation = generation;
    let time = Time(now);
    let mut set = |type_: &str, ok: bool, reason: &str, message: &str| {
        set_condition(
            &mut status.conditions,
            type_,
            ok,
            reason,
            message,
            generation,
            time.clone(),
        );
    };
    match Schedule::compile(&schedule.spec) {
        Err(problems) => {
            let reason = problems.first().map_or("InvalidSpec", |p| p.reason);
            let message = problems
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ");
            set(READY, false, reason, &message);
            set(
                ON_CALL,
                false,
                "InvalidSpec",
                "the schedule cannot be evaluated",
            );
            status.on_call.clear();
            status.next.clear();
            status.until = None;
            (status, IDLE_REQUEUE)
        }
        Ok(compiled) => {
            let evaluation = compiled.evaluate(now);
            set(READY, true, "Valid", "the schedule is valid");
            let until = evaluation
                .until
                .map_or_else(|| "further notice".to_string(), |t| t.to_string());
            if evaluation.on_call.is_empty() {
                set(
                    ON_CALL,
                    false,
                    "Gap",
                    &format!("nobody is on call until {until}"),
                );
            } else {
                let who = evaluation.on_call.join(", ");
                set(ON_CALL, true, "OnCall", &format!("{who} until {until}"));
            }
            let wake = evaluation.until.map_or(IDLE_REQUEUE, |until| {
                let wait = until.duration_since(now).unsigned_abs();
                wait + WAKE_MARGIN
            });
            status.on_call = evaluation.on_call;
            status.until = evaluation.until.map(|t| t.to_string());
            status.next = evaluation.next;
            (status, wake)
        }
    }
}

/// Runs the controller until shutdown.
pub async fn run(ctx: Arc<Context>) {
    let client = ctx.client.clone();
    let schedules: Api<Guarded> = match &ctx.config.namespace {
        Some(ns) => Api::namespaced(client, ns),
        None => Api::all(client),
    };
    let mut shutdown = ctx.shutdown.clone();
    Controller::new(schedules, watcher::Config::default())
        .graceful_shutdown_on(async move {
            let _ = shutdown.wait_for(|stop| *stop).await;
        })
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            match result {
                Err(kube::runtime::controller::Error::ReconcilerFailed(..)) | Ok(_) => {}
                Err(kube::runtime::controller::Error::ObjectNotFound(..)) => {}
                Err(error) => tracing::warn!(%error, "oncallschedule controller"),
            }
        })
        .await;
}

type Guarded = DeserializeGuard<OnCallSchedule>;

async fn reconcile(guarded: Arc<Guarded>, ctx: Arc<Context>) -> Result<Action, Error> {
    match &guarded.0 {
        Ok(schedule) => reconcile_schedule(schedule, &ctx).await,
        Err(invalid) => {
            tracing::warn!(
                name = invalid.metadata.name.as_deref().unwrap_or_default(),
                namespace = invalid.metadata.namespace.as_deref().unwrap_or_default(),
                error = %invalid.error,
                "OnCallSchedule does not parse"
            );
            Ok(Action::await_change())
        }
    }
}

#[tracing::instrument(skip(schedule, ctx), fields(namespace = schedule.namespace(), name = schedule.name_any()))]
async fn reconcile_schedule(schedule: &OnCallSchedule, ctx: &Context) -> Result<Action, Error> {
    let (status, wake) = decide(schedule, Timestamp::now());
    if !ctx.leader.is_leader() || schedule.status.as_ref() == Some(&status) {
        return Ok(Action::requeue(wake));
    }
    let became_invalid = find(&status.conditions, READY).is_some_and(|c| c.status == "False")
        && schedule
            .status
            .as_ref()
            .and_then(|old| find(&old.conditions, READY))
            .is_none_or(|c| c.status != "False" || c.message != status_message(&status));
    write_status(schedule, ctx, &status).await?;
    if became_invalid {
        let event = Event {
            type_: EventType::Warning,
            reason: find(&status.conditions, READY)
                .map_or_else(|| "InvalidSpec".to_string(), |c| c.reason.clone()),
            note: Some(status_message(&status)),
            action: "Evaluate".into(),
            secondary: None,
        };
        if let Err(error) = ctx
            .recorder
            .publish(&event, &schedule.object_ref(&()))
            .await
        {
            tracing::debug!(%error, "cannot publish event");
        }
    }
    Ok(Action::requeue(wake))
}

fn status_message(status: &OnCallScheduleStatus) -> String {
    find(&status.conditions, READY).map_or_else(String::new, |c| c.message.clone())
}

async fn write_status(
    schedule: &OnCallSchedule,
    ctx: &Context,
    status: &OnCallScheduleStatus,
) -> Result<(), Error> {
    let api: Api<OnCallSchedule> = Api::namespaced(
        ctx.client.clone(),
        &schedule.namespace().unwrap_or_default(),
    );
    let mut body = serde_json::to_value(status).unwrap_or_default();
    // NB: merge patch keeps absent keys; a cleared `until` is sent as null to remove it.
    if let Some(map) = body.as_object_mut() {
        map.entry("until").or_insert(serde_json::Value::Null);
    }
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.to_string()),
        ..Default::default()
    };
    match api
        .patch_status(
            &schedule.name_any(),
            &params,
            &Patch::Merge(&serde_json::json!({ "status": body })),
        )
        .await
    {
        Ok(_) => Ok(()),
        // Deleted meanwhile: nothing to report on.
        Err(kube::Error::Api(response)) if response.code == 404 => Ok(()),
        Err(error) => Err(error.into()),
    }
}

fn error_policy(_guarded: Arc<Guarded>, error: &Error, ctx: Arc<Context>) -> Action {
    tracing::warn!(%error, "oncallschedule reconcile failed");
    ctx.metrics
        .reconcile_errors
        .get_or_create(&crate::metrics::ReconcileErrorLabels {
            controller: "oncallschedule".into(),
            reason: "KubeApiError".into(),
        })
        .inc();
    Action::requeue(Duration::from_secs(5))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(zone: &str) -> OnCallSchedule {
        let object: OnCallSchedule = serde_json::from_value(serde_json::json!({
            "apiVersion": "alertcall.dev/v1alpha1",
            "kind": "OnCallSchedule",
            "metadata": {"name": "s", "namespace": "n", "generation": 3},
            "spec": {
                "timeZone": zone,
                "members": [{"name": "alice", "client": "alice"}, {"name": "bob", "client": "bob"}],
                "rotations": [{"name": "r", "members": ["alice", "bob"], "start": "2026-12-07T09:00:00", "shiftLength": "24h"}]
            }
        }))
        .unwrap_or_else(|e| panic!("fixture: {e}"));
        object
    }

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn status_names_who_is_on_call_and_wakes_at_the_handoff() {
        let now = at("2026-12-07T10:00:00Z");
        let (status, wake) = decide(&schedule("UTC"), now);
        assert_eq!(status.on_call, ["alice"]);
        assert_eq!(status.until.as_deref(), Some("2026-12-08T09:00:00Z"));
        assert_eq!(status.next, ["bob"]);
        assert_eq!(status.observed_generation, Some(3));
        assert_eq!(wake, Duration::from_secs(23 * 3600) + WAKE_MARGIN);
        assert!(crate::api::conditions::is_true(&status.conditions, READY));
        assert!(crate::api::conditions::is_true(&status.conditions, ON_CALL));
    }

    #[test]
    fn before_the_first_shift_is_a_gap() {
        let (status, _) = decide(&schedule("UTC"), at("2026-12-01T00:00:00Z"));
        assert!(status.on_call.is_empty());
        let condition =
            find(&status.conditions, ON_CALL).map(|c| (c.status.as_str(), c.reason.as_str()));
        assert_eq!(condition, Some(("False", "Gap")));
    }

    #[test]
    fn an_invalid_zone_clears_who_is_on_call_and_says_why() {
        let mut previous = schedule("UTC");
        previous.status = Some(decide(&previous, at("2026-12-07T10:00:00Z")).0);
        previous.spec.time_zone = "Nowhere/Land".into();
        let (status, wake) = decide(&previous, at("2026-12-07T10:00:00Z"));
        assert!(status.on_call.is_empty() && status.until.is_none() && status.next.is_empty());
        let ready = find(&status.conditions, READY).map(|c| (c.status.as_str(), c.reason.as_str()));
        assert_eq!(ready, Some(("False", "InvalidTimeZone")));
        assert_eq!(wake, IDLE_REQUEUE);
    }
}
