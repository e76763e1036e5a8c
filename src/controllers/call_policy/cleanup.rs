//! Removing a policy: its hosted documents and the bridge number's webhook go before the object,
//! unless Twilio no longer accepts the credentials (nothing left to clean up with them).

use super::*;

pub(super) async fn cleanup(policy: &CallPolicy, state: &State) -> Result<Action, Error> {
    let namespace = policy.namespace().unwrap_or_default();
    let name = policy.name_any();
    let previous = previous_webhook(policy);
    if previous.is_none() && policy.status.as_ref().is_none_or(|s| s.twiml.is_none()) {
        // Nothing was published or changed for this policy (it never got that far).
        return Ok(Action::await_change());
    }
    let account = match state.ctx.accounts.for_policy(policy).await {
        Ok(account) => account,
        Err(error) if error.is_permanent() => return give_up(policy, state, &error.into()).await,
        Err(error) => return Err(cleanup_failed(policy, state, error.into()).await),
    };
    let client = &account.client;
    let mut result = Ok(());
    if let Some(previous) = previous {
        result = restore(client, &previous).await;
    }
    if result.is_ok() {
        result = unpublish(client, state, &account.account_sid, &namespace, &name).await;
    }
    match result {
        Ok(()) => Ok(Action::await_change()),
        Err(error) if is_unauthorized(&error) => give_up(policy, state, &error).await,
        Err(error) => Err(cleanup_failed(policy, state, error).await),
    }
}

pub(super) fn is_unauthorized(error: &Error) -> bool {
    matches!(error, Error::Twilio { source, .. } if matches!(source.status(), Some(401 | 403)))
}

/// Without usable credentials nothing can be undone, and holding the object forever would also
/// block deleting its namespace: say so loudly on the object's Events and let it go.
pub(super) async fn give_up(
    policy: &CallPolicy,
    state: &State,
    error: &Error,
) -> Result<Action, Error> {
    let event = Event {
        type_: EventType::Warning,
        reason: "CleanupSkipped".into(),
        note: Some(format!(
            "{error}: the bridge number's webhook and the TwiML assets in Twilio were left as they are"
        )),
        action: "Cleanup".into(),
        secondary: None,
    };
    emit_event(state, policy, event).await;
    tracing::warn!(namespace = policy.namespace(), name = policy.name_any(), %error, "cleanup skipped");
    Ok(Action::await_change())
}

/// Records why deletion waits, so it never waits silently.
pub(super) async fn cleanup_failed(policy: &CallPolicy, state: &State, error: Error) -> Error {
    let mut report = Report::new(policy);
    report.set(
        READY,
        false,
        "CleanupPending",
        &format!("deletion waits until Twilio changes are undone: {error}"),
    );
    if let Err(kube_error) = write_status(policy, state, report.status).await {
        tracing::debug!(%kube_error, "cannot record the cleanup failure");
    }
    error
}
