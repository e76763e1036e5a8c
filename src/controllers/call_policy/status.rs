//! What a reconcile reports: the policy's conditions and status, its Events and error metrics.

use super::*;

/// Conditions gathered during one reconcile.
pub(super) struct Report {
    pub(super) status: CallPolicyStatus,
    pub(super) generation: Option<i64>,
    now: Time,
}

impl Report {
    pub(super) fn new(policy: &CallPolicy) -> Self {
        Self {
            status: policy.status.clone().unwrap_or_default(),
            generation: policy.metadata.generation,
            now: Time(jiff::Timestamp::now()),
        }
    }

    pub(super) fn set(&mut self, type_: &str, ok: bool, reason: &str, message: &str) {
        set_condition(
            &mut self.status.conditions,
            type_,
            ok,
            reason,
            message,
            self.generation,
            self.now.clone(),
        );
    }
}

pub(super) fn error_summary(error: &Error) -> String {
    match error {
        Error::Credentials { source, .. } => match (source.status(), source.code()) {
            (Some(status), Some(code)) => format!("HTTP {status} (error {code})"),
            (Some(status), None) => format!("HTTP {status}"),
            _ => source.to_string(),
        },
        other => other.to_string(),
    }
}

pub(super) async fn emit_event(state: &State, policy: &CallPolicy, event: Event) {
    let reference = policy.object_ref(&());
    if let Err(error) = state.ctx.recorder.publish(&event, &reference).await {
        tracing::debug!(%error, "cannot publish event");
    }
}

pub(super) async fn write_status(
    policy: &CallPolicy,
    state: &State,
    status: CallPolicyStatus,
) -> Result<(), Error> {
    if policy.status.as_ref() == Some(&status) {
        return Ok(());
    }
    let api: Api<CallPolicy> = Api::namespaced(
        state.ctx.client.clone(),
        &policy.namespace().unwrap_or_default(),
    );
    let mut body = serde_json::to_value(&status).unwrap_or_default();
    // NB: merge patch keeps absent keys; cleared fields are sent as null to remove them.
    if let Some(map) = body.as_object_mut() {
        // The AlertCall controller records the test results; this cached copy may be older.
        // (`recount_tests` rewrites them, guarded, when the recipients change.)
        map.remove("recipients");
        map.remove("tested");
        for key in ["twiml", "bridgeNumberSid"] {
            map.entry(key).or_insert(serde_json::Value::Null);
        }
    }
    let patch = serde_json::json!({ "status": body });
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.to_string()),
        ..Default::default()
    };
    match api
        .patch_status(&policy.name_any(), &params, &Patch::Merge(&patch))
        .await
    {
        Ok(_) => Ok(()),
        // Deleted meanwhile: nothing to report on.
        Err(kube::Error::Api(response)) if response.code == 404 => Ok(()),
        Err(error) => Err(error.into()),
    }
}

/// Recounts the test results when the recipients changed since the last test, so TESTED never
/// says `2/2` of a policy that now has three. Guarded by the resourceVersion the results were
/// read at: a test recorded meanwhile wins, and the reconcile its write causes recounts again.
pub(super) async fn recount_tests(policy: &CallPolicy, state: &State) -> Result<(), Error> {
    let Some(status) = &policy.status else {
        return Ok(());
    };
    let Some((recipients, tested)) = test_call::recount(&policy.spec, status) else {
        return Ok(());
    };
    let api: Api<CallPolicy> = Api::namespaced(
        state.ctx.client.clone(),
        &policy.namespace().unwrap_or_default(),
    );
    match write_test_results(&api, policy, &recipients, &tested).await {
        Ok(_) => {
            tracing::info!(%tested, "test results recounted for the policy's recipients");
            Ok(())
        }
        Err(kube::Error::Api(response)) if matches!(response.code, 404 | 409) => Ok(()),
        Err(error) => Err(error.into()),
    }
}

pub(super) fn count_error(state: &State, error: &Error) {
    state
        .ctx
        .metrics
        .reconcile_errors
        .get_or_create(&crate::metrics::ReconcileErrorLabels {
            controller: CONTROLLER.into(),
            reason: error.reason().into(),
        })
        .inc();
}
