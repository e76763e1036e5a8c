//! The objects a policy names besides its Secret: the OnCallSchedules of its schedule
//! recipients and the policy of its next escalation tier (`onExhausted`). A missing one is
//! reported on condition `ReferencesResolved`; an escalation chain that loops makes the policy
//! Ready=False with reason `EscalationLoop`, naming the cycle.

use kube::api::{Api, ListParams};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::ResourceExt;

use super::status::Report;
use super::{Error, Guarded};
use crate::api::{CallPolicy, CallPolicySpec, OnCallSchedule};
use crate::controllers::Context;
use crate::escalation::chain;

pub const REFERENCES_RESOLVED: &str = "ReferencesResolved";

/// Sets `ReferencesResolved`, and fails with `EscalationLoop` when the chain of `onExhausted`
/// from this policy comes back to a policy already in it.
pub(super) async fn check(
    ctx: &Context,
    policy: &CallPolicy,
    report: &mut Report,
) -> Result<(), Error> {
    let namespace = policy.namespace().unwrap_or_default();
    let name = policy.name_any();
    let spec = &policy.spec;
    let mut missing = Vec::new();
    let schedules: Api<OnCallSchedule> = Api::namespaced(ctx.client.clone(), &namespace);
    for schedule in spec.recipients.iter().filter_map(|r| r.address.schedule()) {
        if schedules.get_opt(schedule).await?.is_none() {
            missing.push(("ScheduleNotFound", format!("OnCallSchedule {schedule}")));
        }
    }
    if spec.on_exhausted.is_some() {
        let policies: Api<CallPolicy> = Api::namespaced(ctx.client.clone(), &namespace);
        let all = policies.list(&ListParams::default()).await?;
        let next_of = |of: &str| -> Option<String> {
            let found = if of == name {
                Some(spec)
            } else {
                all.items
                    .iter()
                    .find(|p| p.name_any() == of)
                    .map(|p| &p.spec)
            };
            found.and_then(next_policy)
        };
        let found = chain(&name, next_of);
        if found.loops_to.is_some() {
            return Err(Error::EscalationLoop(found.describe()));
        }
        if let Some(next) = next_policy(spec) {
            if !all.items.iter().any(|p| p.name_any() == next) {
                missing.push(("EscalationPolicyNotFound", format!("CallPolicy {next}")));
            }
        }
    }
    match missing.first() {
        None => report.set(
            REFERENCES_RESOLVED,
            true,
            "Resolved",
            "every schedule and escalation policy this policy names exists",
        ),
        Some((reason, _)) => {
            let names: Vec<&str> = missing.iter().map(|(_, what)| what.as_str()).collect();
            let message = format!(
                "not found in {namespace}: {}; pages skip a missing schedule and stop at a missing escalation policy",
                names.join(", ")
            );
            report.set(REFERENCES_RESOLVED, false, reason, &message);
        }
    }
    Ok(())
}

fn next_policy(spec: &CallPolicySpec) -> Option<String> {
    spec.on_exhausted
        .as_ref()
        .map(|o| o.policy_ref.name.clone())
}

/// The policies that name `changed` (a policy) as their `onExhausted`: a change to it may make
/// or break their loop.
pub(super) fn escalating_to(store: &Store<Guarded>, changed: &Guarded) -> Vec<ObjectRef<Guarded>> {
    let Some(namespace) = changed.namespace() else {
        return Vec::new();
    };
    let name = changed.name_any();
    referring(store, &namespace, |spec| {
        next_policy(spec).as_deref() == Some(name.as_str())
    })
}

/// The policies with a recipient naming `schedule`: its creation or deletion changes their
/// `ReferencesResolved`.
pub(super) fn naming_schedule(
    store: &Store<Guarded>,
    schedule: &OnCallSchedule,
) -> Vec<ObjectRef<Guarded>> {
    let Some(namespace) = schedule.namespace() else {
        return Vec::new();
    };
    let name = schedule.name_any();
    referring(store, &namespace, |spec| {
        spec.recipients
            .iter()
            .any(|r| r.address.schedule() == Some(name.as_str()))
    })
}

fn referring(
    store: &Store<Guarded>,
    namespace: &str,
    refers: impl Fn(&CallPolicySpec) -> bool,
) -> Vec<ObjectRef<Guarded>> {
    store
        .state()
        .iter()
        .filter_map(|guarded| guarded.0.as_ref().ok())
        .filter(|p| p.namespace().as_deref() == Some(namespace) && refers(&p.spec))
        .map(|p| ObjectRef::<Guarded>::new(&p.name_any()).within(namespace))
        .collect()
}
