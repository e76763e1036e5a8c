//! Kubernetes Events on a page's transitions (a call answered, acknowledged, exhausted...).

use kube::runtime::events::{Event, EventType};
use kube::Resource;

use crate::api::{AlertCall, AlertCallStatus, AttemptStatus, Phase};
use crate::controllers::Context;

/// Records a Kubernetes Event on the page.
pub(super) async fn emit_event(
    ctx: &Context,
    call: &AlertCall,
    type_: EventType,
    reason: &str,
    action: &str,
    note: &str,
) {
    let event = Event {
        type_,
        reason: reason.to_string(),
        note: Some(note.chars().take(1000).collect()),
        action: action.to_string(),
        secondary: None,
    };
    if let Err(error) = ctx.recorder.publish(&event, &call.object_ref(&())).await {
        tracing::debug!(%error, reason, "recording an event");
    }
}

/// Events and metrics for what changed between two statuses of a page.
pub(super) async fn transitions(
    ctx: &Context,
    call: &AlertCall,
    old: &AlertCallStatus,
    new: &AlertCallStatus,
) {
    for attempt in &new.attempts {
        let before = old.attempts.iter().find(|a| a.id == attempt.id);
        let who = format!("{} ({})", attempt.recipient, attempt.id);
        let sid = attempt.call_sid.as_deref().unwrap_or("-");
        if attempt.call_sid.is_some() && before.and_then(|b| b.call_sid.as_ref()).is_none() {
            tracing::info!(call_sid = %sid, attempt = %attempt.id, "dialed");
            emit_event(
                ctx,
                call,
                EventType::Normal,
                "Dialed",
                "Dial",
                &format!("called {who}, call {sid}"),
            )
            .await;
        }
        let was = before.map(|b| b.status).unwrap_or_default();
        if attempt.status == AttemptStatus::InProgress && was != AttemptStatus::InProgress {
            emit_event(
                ctx,
                call,
                EventType::Normal,
                "Answered",
                "Observe",
                &format!("{who} answered, call {sid}"),
            )
            .await;
        }
        if attempt.acknowledged && !before.is_some_and(|b| b.acknowledged) {
            tracing::info!(call_sid = %sid, attempt = %attempt.id, "key pressed");
            emit_event(
                ctx,
                call,
                EventType::Normal,
                "KeyPressed",
                "Observe",
                &format!("{who} pressed a key, call {sid}"),
            )
            .await;
        }
        if attempt.status.is_final() && !was.is_final() {
            let outcome = serde_json::to_value(attempt.status)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default();
            let label = if attempt.acknowledged {
                "acknowledged".to_string()
            } else {
                outcome.clone()
            };
            ctx.metrics
                .calls
                .get_or_create(&crate::metrics::OutcomeLabels { outcome: label })
                .inc();
            if let Some(code) = attempt.twilio_error_code {
                ctx.metrics.call_error(&code.to_string());
            }
            let (type_, reason) = match attempt.status {
                AttemptStatus::Canceled => (EventType::Normal, "Canceled"),
                AttemptStatus::Failed if attempt.call_sid.is_none() => {
                    (EventType::Warning, "DialRefused")
                }
                _ => (EventType::Normal, "CallEnded"),
            };
            let detail = attempt
                .message
                .as_deref()
                .map(|m| format!(": {m}"))
                .unwrap_or_default();
            emit_event(
                ctx,
                call,
                type_,
                reason,
                "Observe",
                &format!("call to {who} ended {outcome}, call {sid}{detail}"),
            )
            .await;
        }
    }
    if let (Some(url), None) = (&new.recording_url, &old.recording_url) {
        tracing::info!(recording_url = %url, "room recorded");
        emit_event(
            ctx,
            call,
            EventType::Normal,
            "Recorded",
            "Observe",
            &format!("the incident room is recorded: {url}"),
        )
        .await;
    }
    if new.phase != old.phase {
        ctx.metrics.page_phase(&format!("{:?}", new.phase));
        if new.phase == Phase::Acknowledged {
            if let (Some(start), Some(acked)) = (&new.started_at, &new.acknowledged_at) {
                let seconds = acked.0.duration_since(start.0).as_secs_f64().max(0.0);
                ctx.metrics.ack_latency.observe(seconds);
            }
        }
        let reason = format!("{:?}", new.phase);
        let type_ = match new.phase {
            Phase::Failed | Phase::Exhausted => EventType::Warning,
            _ => EventType::Normal,
        };
        let note = match new.phase {
            Phase::Acknowledged => format!(
                "acknowledged by {}",
                new.acknowledged_by.as_deref().unwrap_or("-")
            ),
            Phase::Calling => "calling".to_string(),
            Phase::Pending if new.tier > old.tier => format!(
                "escalated to tier {}: CallPolicy {}",
                new.tier,
                new.tier_policy.as_deref().unwrap_or("-")
            ),
            Phase::Resolved => format!(
                "every alert of the group resolved (at {}) before anyone acknowledged, and the route says onResolved: Cancel: ringing and queued calls are canceled, answered calls finish their message; {} call(s)",
                call.spec
                    .source
                    .resolved_at
                    .as_ref()
                    .map_or("-".to_string(), |t| t.0.to_string()),
                new.attempts.len()
            ),
            Phase::Waiting => format!(
                "waiting out the route's group wait or the policy's quiet hours; no call before {}",
                new.not_before
                    .as_ref()
                    .map_or("-".to_string(), |t| t.0.to_string())
            ),
            other => format!(
                "page finished: {other:?} after {} call(s)",
                new.attempts.len()
            ),
        };
        emit_event(ctx, call, type_, &reason, "Escalate", &note).await;
    }
}
