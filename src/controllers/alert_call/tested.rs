//! A finished test call's outcome, per recipient, on its CallPolicy's `status.recipients` and
//! `status.tested`. This controller records them; the CallPolicy controller leaves them out of
//! its status patches and only recounts them when the recipients change. Every write of the two
//! fields is a merge patch guarded by the policy's resourceVersion, so two tests ending
//! together, or a test and a recount, cannot lose one another.

use kube::api::Api;
use kube::ResourceExt;

use crate::api::{conditions, AlertCall, AlertCallStatus, CallPolicy};
use crate::controllers::{write_test_results, Context};
use crate::escalation::{test_call, FINISHED};

/// How many times a write that lost a race with another writer of the policy is tried again.
const ATTEMPTS: usize = 5;

/// Writes what the finished test `call` found, unless the policy already holds it (or a newer
/// test of the same recipients). Why the test ended is its `Finished` condition, so a write
/// tried again in a later reconcile says the same as the first.
pub(super) async fn record(
    ctx: &Context,
    call: &AlertCall,
    status: &AlertCallStatus,
) -> Result<(), super::Error> {
    if !call.spec.test || !status.phase.is_terminal() {
        return Ok(());
    }
    let why = conditions::find(&status.conditions, FINISHED).map(|c| c.message.as_str());
    let namespace = call.namespace().unwrap_or_default();
    let page = call.name_any();
    let policies: Api<CallPolicy> = Api::namespaced(ctx.client.clone(), &namespace);
    for _ in 0..ATTEMPTS {
        let read = policies.get_opt(&call.spec.policy_ref.name).await;
        let Some(policy) = read.map_err(super::Error::TestNotRecorded)? else {
            return Ok(());
        };
        let previous = policy
            .status
            .as_ref()
            .map(|s| s.recipients.clone())
            .unwrap_or_default();
        let outcomes = test_call::outcomes(&policy.spec, &call.spec, status, &page, why);
        let recorded = outcomes.iter().all(|outcome| {
            previous.iter().any(|p| {
                p.name == outcome.name
                    && (p.alert_call == page || p.last_test_time > outcome.last_test_time)
            })
        });
        if recorded {
            return Ok(());
        }
        let newer: Vec<_> = outcomes
            .into_iter()
            .filter(|outcome| {
                !previous
                    .iter()
                    .any(|p| p.name == outcome.name && p.last_test_time > outcome.last_test_time)
            })
            .collect();
        let (recipients, tested) = test_call::merge(&policy.spec, &previous, &newer);
        match write_test_results(&policies, &policy, &recipients, &tested).await {
            Ok(_) => {
                tracing::info!(policy = %policy.name_any(), %tested, "test call recorded");
                return Ok(());
            }
            Err(kube::Error::Api(response)) if response.code == 409 => continue,
            Err(kube::Error::Api(response)) if response.code == 404 => return Ok(()),
            Err(error) => return Err(super::Error::TestNotRecorded(error)),
        }
    }
    Err(super::Error::TestRaces(ATTEMPTS))
}
