//! Writing a page's status: resourceVersion-guarded replaces, retried on conflict, and the
//! executor's outcomes recorded the same way.

use std::collections::BTreeSet;
use std::sync::Arc;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, PostParams};
use kube::ResourceExt;

use super::*;
use crate::api::{conditions, AlertCall, AlertCallStatus};
use crate::controllers::{Context, FIELD_MANAGER};
use crate::escalation::{observe, Observation};
use crate::page::Outcomes;

/// Dial outcomes go into the AlertCall's status; lookups skip every SID any page records.
#[derive(Clone)]
pub(super) struct Recorded {
    pub(super) ctx: Arc<Context>,
    pub(super) pages: Pages,
    pub(super) namespace: String,
    pub(super) name: String,
}

impl Outcomes for Recorded {
    async fn record(&self, attempt_id: String, observations: Vec<Observation>) {
        if let Err(error) = record(&self.ctx, &self.namespace, &self.name, &observations).await {
            tracing::error!(attempt = %attempt_id, %error, "recording a dial outcome");
        }
    }

    fn claimed_sids(&self) -> BTreeSet<String> {
        self.pages.claimed_sids()
    }
}

/// Sets one condition on the current version of a page, re-reading on conflict. True when it
/// changed.
pub(super) async fn write_condition(
    ctx: &Context,
    call: &AlertCall,
    type_: &str,
    ok: bool,
    reason: &str,
    message: &str,
) -> Result<bool, kube::Error> {
    let api: Api<AlertCall> =
        Api::namespaced(ctx.client.clone(), &call.namespace().unwrap_or_default());
    for _ in 0..WRITE_RETRIES {
        let Some(current) = api.get_opt(&call.name_any()).await? else {
            return Ok(false);
        };
        let mut status = current.status.clone().unwrap_or_default();
        let changed = conditions::set_condition(
            &mut status.conditions,
            type_,
            ok,
            reason,
            message,
            current.metadata.generation,
            Time(Timestamp::now()),
        );
        if !changed {
            return Ok(false);
        }
        match write_status(ctx, &current, &status).await {
            Ok(_) => return Ok(true),
            Err(error) if is_conflict(&error) => continue,
            Err(error) => return Err(error),
        }
    }
    Ok(false)
}

pub(super) fn is_conflict(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == 409)
}

/// Replaces the status, guarded by the resourceVersion `call` was read at.
pub(super) async fn write_status(
    ctx: &Context,
    call: &AlertCall,
    status: &AlertCallStatus,
) -> Result<AlertCall, kube::Error> {
    let api: Api<AlertCall> =
        Api::namespaced(ctx.client.clone(), &call.namespace().unwrap_or_default());
    let mut object = call.clone();
    object.metadata.managed_fields = None;
    object.status = Some(status.clone());
    let params = PostParams {
        dry_run: false,
        field_manager: Some(FIELD_MANAGER.to_string()),
    };
    let written = api
        .replace_status(&call.name_any(), &params, &object)
        .await?;
    ctx.own_writes.remember(&written);
    Ok(written)
}

/// Folds observations into the current status of a page and writes it, re-reading on conflict.
/// True when something changed. Followers record nothing.
pub async fn record(
    ctx: &Context,
    namespace: &str,
    name: &str,
    observations: &[Observation],
) -> Result<bool, kube::Error> {
    if !ctx.leader.is_leader() {
        return Ok(false);
    }
    let api: Api<AlertCall> = Api::namespaced(ctx.client.clone(), namespace);
    for _ in 0..WRITE_RETRIES {
        let Some(call) = api.get_opt(name).await? else {
            return Ok(false);
        };
        let old = call.status.clone().unwrap_or_default();
        let mut new = old.clone();
        let now = Timestamp::now();
        let mut changed = false;
        for observation in observations {
            changed |= observe(&mut new, observation, now);
        }
        if !changed {
            return Ok(false);
        }
        match write_status(ctx, &call, &new).await {
            Ok(_) => {
                transitions(ctx, &call, &old, &new).await;
                return Ok(true);
            }
            Err(error) if is_conflict(&error) => continue,
            Err(error) => return Err(error),
        }
    }
    Ok(false)
}
