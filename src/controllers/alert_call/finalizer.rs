//! The finalizer that cancels a deleted page's live calls before the object goes.

use std::time::Duration;

use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action as Requeue;
use kube::runtime::events::EventType;
use kube::ResourceExt;

use super::*;
use crate::api::AlertCall;
use crate::controllers::{Context, FIELD_MANAGER};

pub(super) fn has_finalizer(call: &AlertCall) -> bool {
    call.finalizers().iter().any(|f| f == FINALIZER)
}

/// Writes the finalizer list, guarded by the resourceVersion `call` was read at (a merge patch
/// carrying `metadata.resourceVersion` is a precondition: 409 if the object moved on).
pub(super) async fn write_finalizers(
    ctx: &Context,
    call: &AlertCall,
    finalizers: Vec<String>,
) -> Result<AlertCall, kube::Error> {
    let api: Api<AlertCall> =
        Api::namespaced(ctx.client.clone(), &call.namespace().unwrap_or_default());
    let patch = serde_json::json!({
        "metadata": {
            "resourceVersion": call.resource_version(),
            "finalizers": finalizers,
        }
    });
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.to_string()),
        ..PatchParams::default()
    };
    api.patch(&call.name_any(), &params, &Patch::Merge(&patch))
        .await
}

pub(super) async fn add_finalizer(
    ctx: &Context,
    call: &AlertCall,
) -> Result<AlertCall, kube::Error> {
    let mut finalizers = call.finalizers().to_vec();
    finalizers.push(FINALIZER.to_string());
    let updated = write_finalizers(ctx, call, finalizers).await?;
    tracing::debug!("finalizer added");
    Ok(updated)
}

/// Removes the finalizer when present. A conflict is left to the next reconcile (the newer
/// version of the object brings it back); a page already gone is done.
pub(super) async fn remove_finalizer(ctx: &Context, call: &AlertCall) -> Result<(), Error> {
    if !has_finalizer(call) {
        return Ok(());
    }
    let finalizers: Vec<String> = call
        .finalizers()
        .iter()
        .filter(|f| *f != FINALIZER)
        .cloned()
        .collect();
    match write_finalizers(ctx, call, finalizers).await {
        Ok(_) => {
            tracing::info!("no call of this page is live; finalizer removed");
            Ok(())
        }
        Err(error) if is_conflict(&error) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(error) => Err(Error::Finalizer(error)),
    }
}

/// A page being deleted whose calls can never be reached (its policy or credentials are gone):
/// waiting would hold the object forever, so it goes, with a Warning saying so.
pub(super) async fn abandon(
    ctx: &Context,
    call: &AlertCall,
    reason: &str,
    message: &str,
) -> Result<Requeue, Error> {
    let note = format!(
        "deleted without ending its calls, which cannot be reached: {message}; any still ringing stop at their ring timeout"
    );
    tracing::warn!(reason, %note, "page deleted");
    emit_event(ctx, call, EventType::Warning, reason, "Delete", &note).await;
    remove_finalizer(ctx, call).await?;
    Ok(Requeue::await_change())
}

/// A page being deleted still has live calls: it waits for Twilio to report them ended. When
/// ending them failed (Twilio unreachable), the `CallsEnded` condition and a Warning say why,
/// and the next try backs off; once they could be ended it looks again at the poll interval.
pub(super) async fn deletion_waits(
    state: &State,
    call: &AlertCall,
    unreachable: &[String],
) -> Result<Requeue, Error> {
    let ctx = &state.ctx;
    let key = key_of(call);
    if unreachable.is_empty() {
        state.failures().remove(&key);
        return Ok(Requeue::requeue(ctx.config.poll_interval));
    }
    let failures = {
        let mut map = state.failures();
        let count = map.entry(key).or_insert(0);
        *count = count.saturating_add(1);
        *count
    };
    let delay = crate::controllers::backoff(failures, Duration::from_secs(300));
    tracing::warn!(failures, ?delay, "deletion waits: calls could not be ended");
    let message = format!(
        "deletion waits: {} call(s) could not be ended, retrying with backoff: {}",
        unreachable.len(),
        unreachable.join("; ")
    );
    let message: String = message.chars().take(1000).collect();
    // NB: written (with its Event) when the page starts waiting, not on every retry: each status
    // write is a watch event that would reconcile at once and defeat the backoff.
    let waiting = call
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == CALLS_ENDED))
        .is_some_and(|c| c.status == "False");
    if !waiting
        && write_condition(ctx, call, CALLS_ENDED, false, "TwilioUnreachable", &message)
            .await
            .map_err(Error::Status)?
    {
        emit_event(
            ctx,
            call,
            EventType::Warning,
            "CancelFailed",
            "Delete",
            &message,
        )
        .await;
    }
    Ok(Requeue::requeue(delay))
}
