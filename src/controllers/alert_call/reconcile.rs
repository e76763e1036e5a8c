//! One reconcile of a page: observe, step, persist the decision, then act.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::Api;
use kube::runtime::controller::Action as Requeue;
use kube::runtime::events::{Event, EventType};
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};

use super::*;
use crate::api::{conditions, validate, AlertCall, AlertCallStatus, AlertRoute, CallPolicy};
use crate::controllers::{callbacks, Context};
use crate::escalation::{observe, step, StepContext, Withdrawn};
use crate::page::documents;
use crate::page::{calls, ledger, DialUrls, Executed, Executor};
use crate::pipeline::routes::Routes;
use crate::routing::RouteKey;
use crate::twilio::Account;

#[tracing::instrument(skip(guarded, state), fields(alertcall = %key_of(&*guarded)))]
pub(super) async fn reconcile(guarded: Arc<Guarded>, state: Arc<State>) -> Result<Requeue, Error> {
    let ctx = &state.ctx;
    let call = match &guarded.0 {
        Ok(call) => call,
        Err(invalid) => {
            tracing::warn!(error = %invalid.error, "AlertCall does not parse");
            if ctx.leader.is_leader() {
                let event = Event {
                    type_: EventType::Warning,
                    reason: "InvalidAlertCall".into(),
                    note: Some(invalid.error.chars().take(1000).collect()),
                    action: "Parse".into(),
                    secondary: None,
                };
                if let Err(error) = ctx.recorder.publish(&event, &guarded.object_ref(&())).await {
                    tracing::debug!(%error, "recording an event");
                }
            }
            return Ok(Requeue::await_change());
        }
    };
    // NB: followers read but never write or dial; they look again in case they take over.
    if !ctx.leader.is_leader() {
        return Ok(Requeue::requeue(Duration::from_secs(5)));
    }
    let namespace = call.namespace().unwrap_or_default();
    let name = call.name_any();
    let status = call.status.clone().unwrap_or_default();
    let dialing = ctx.runner.dialing(&namespace, &name);
    let settled = status
        .attempts
        .iter()
        .all(|a| a.status.is_final() || a.acknowledged);
    let deleting = call.metadata.deletion_timestamp.is_some();
    if (status.phase.is_terminal() || deleting) && settled && dialing.is_empty() {
        // Nothing of this page can ring any more: an old page deletes at once.
        ctx.runner.release_page(&namespace, &name);
        state.failures().remove(&key_of(call));
        remove_finalizer(ctx, call).await?;
        if !deleting {
            // NB: repeated until it holds; the write at the test's end may have failed.
            super::tested::record(ctx, call, &status).await?;
        }
        // NB: the room's recording may start after the page is done; whether the policy records
        // is only known once it is read below.
        if deleting || !awaiting_recording(&status, Timestamp::now()) {
            return Ok(Requeue::await_change());
        }
    }

    // NB: an escalated page calls through its active tier's policy: its account, documents and
    // room (see `oncall`).
    let policy_name = call.active_policy();
    let cached = cached_policy(&state.policies, &namespace, policy_name);
    let policies: Api<CallPolicy> = Api::namespaced(ctx.client.clone(), &namespace);
    let read = match cached {
        Some(policy) => Ok(Some(policy)),
        None => policies.get_opt(policy_name).await,
    };
    let policy = match read {
        Ok(Some(policy)) => policy,
        Ok(None) => {
            let message = format!("CallPolicy {policy_name} not found in {namespace}");
            if deleting {
                return abandon(ctx, call, "PolicyNotFound", &message).await;
            }
            return blocked(ctx, call, "PolicyNotFound", &message, None).await;
        }
        Err(error) => return Err(Error::Policy(policy_name.to_string(), error)),
    };
    let problems = validate::call_policy(&policy.spec);
    if !problems.is_empty() {
        let list: Vec<String> = problems.iter().map(ToString::to_string).collect();
        let message = format!("CallPolicy {policy_name} is invalid: {}", list.join("; "));
        // The policy watch brings the page back when the policy is fixed.
        return blocked(
            ctx,
            call,
            "PolicyInvalid",
            &message,
            Some(Requeue::await_change()),
        )
        .await;
    }
    let account = match ctx.accounts.for_policy(&policy).await {
        Ok(account) => account,
        Err(error) if error.is_permanent() => {
            if deleting {
                return abandon(ctx, call, error.reason(), &error.to_string()).await;
            }
            return blocked(ctx, call, error.reason(), &error.to_string(), None).await;
        }
        Err(error) => return Err(Error::Account(error)),
    };
    let callbacks_to = callback_base(ctx, &account);
    let Some(ack_base) = ack_base(callbacks_to, &policy) else {
        let message = if ctx.config.public_url.is_some() {
            "no acknowledgement URL yet: the policy's TwiML is not published, and the credentials Secret has no authToken to verify callbacks to --public-url"
        } else {
            "no acknowledgement URL yet: the policy's TwiML is not published and --public-url is not set"
        };
        return blocked(ctx, call, "TwimlNotPublished", message, None).await;
    };
    let ack_function = policy
        .status
        .as_ref()
        .and_then(|s| s.twiml.as_ref())
        .map(|t| t.urls.ack_function.clone())
        .filter(|url| !url.is_empty());
    let test_ack = match test_ack_base(ctx, call, &policy, ack_function.as_deref()) {
        Ok(test_ack) => test_ack,
        Err(message) => return blocked(ctx, call, "TestNeedsAckFunction", message, None).await,
    };
    ctx.runner
        .remember_policy(&namespace, policy_name, &account.account_sid);

    let now = Timestamp::now();
    let room = documents::room_name(&policy.spec, &namespace, policy_name);
    let mut next = status.clone();
    if next.nonce.is_none() && !next.phase.is_terminal() {
        // NB: recorded with the first intent (the same guarded write), so every URL of every
        // call of this page carries it.
        match super::callbacks::new_nonce() {
            Ok(nonce) => next.nonce = Some(nonce),
            Err(error) => return Err(Error::Randomness(error.to_string())),
        }
    }
    conditions::set_condition(
        &mut next.conditions,
        POLICY_RESOLVED,
        true,
        "Resolved",
        &format!("calls follow CallPolicy {policy_name}"),
        call.metadata.generation,
        Time(now),
    );
    let polled = calls::poll(&account.client, &next, &room, &ack_base, now).await;
    for observation in &polled.observations {
        observe(&mut next, observation, now);
    }
    // The keypress is in the ledger before the person can hang up; a call that just ended
    // answered but unacknowledged holds the page until a read made after its end agrees.
    let settling = ack_function
        .as_ref()
        .and_then(|_| ledger::settling(&next, now));
    if ack_function.is_some() && ledger::wanted(&next) {
        match ctx.ledger.keypresses(&account, now, settling).await {
            Ok(keypresses) => {
                for observation in ledger::observations(&next, &keypresses) {
                    observe(&mut next, &observation, now);
                }
            }
            Err(error) => tracing::warn!(%error, "reading the acknowledgement ledger"),
        }
    }
    let settling = settling.filter(|_| ledger::settling(&next, now).is_some());
    let records = policy.spec.conference.record;
    // NB: the recording waits a cycle when the room was just checked, so one cycle makes at
    // most three conference requests; it has RECORDING_WINDOW to be found.
    if records && !polled.room_checked && awaiting_recording(&next, now) {
        let since = next.started_at.as_ref().map_or(now, |t| t.0);
        match calls::recording_url(&account.client, &room, since).await {
            Ok(Some(url)) => next.recording_url = Some(url),
            Ok(None) => {}
            Err(error) => tracing::warn!(%room, %error, "looking for the room's recording"),
        }
    }
    let cached = state.pages.cached();
    let billed_to = ctx.runner.account_of(&namespace, policy_name);
    let step_ctx = StepContext {
        start_index: start_index(cached.iter().filter_map(|c| valid(c)), call, &policy),
        calls_last_hour: calls_last_hour(
            cached.iter().filter_map(|c| valid(c)),
            |other| {
                let namespace = other.namespace().unwrap_or_default();
                billed_to.is_some()
                    && ctx
                        .runner
                        .account_of(&namespace, &other.spec.policy_ref.name)
                        == billed_to
            },
            call,
            &next,
            now,
        ),
        withdrawn: withdrawn(ctx, &state.routes, call, &namespace).await,
        dialing: dialing.clone(),
        conference_room: Some(room.clone()),
        on_call: oncall::on_call(ctx, &namespace, &policy.spec, now).await?,
    };
    if let Some(ended) = settling {
        // NB: only what was observed is written; nothing is decided until the ledger settles.
        if next != status {
            match write_status(ctx, call, &next).await {
                Ok(_) => transitions(ctx, call, &status, &next).await,
                Err(error) if is_conflict(&error) => {
                    return Ok(Requeue::requeue(Duration::from_millis(500)))
                }
                Err(error) => return Err(Error::Status(error)),
            }
        }
        let wait = (ended + ledger::SETTLE).duration_since(now);
        let wait = Duration::try_from(wait).unwrap_or_default() + Duration::from_millis(200);
        return Ok(Requeue::requeue(wait));
    }
    let mut decision = step(&policy.spec, &call.spec, &next, now, &step_ctx);
    oncall::onward(
        ctx,
        &namespace,
        &policy,
        policy_name,
        &next,
        &mut decision,
        now,
    )
    .await?;
    let mut decided = decision.status.clone();
    decided.observed_generation = call.metadata.generation;
    // Dials are intents in `decided`, so they count as live too; a page from before the
    // finalizer existed gets it at its next reconcile while it still has calls.
    let live_calls = decided
        .attempts
        .iter()
        .any(|a| !a.status.is_final() && !a.acknowledged);
    // NB: the finalizer is written before the first intent, so no call is ever placed for a page
    // that could vanish without canceling it. The status write below is then guarded by the
    // resourceVersion this write returned.
    let with_finalizer;
    let call = if live_calls && !deleting && !has_finalizer(call) {
        match add_finalizer(ctx, call).await {
            Ok(updated) => {
                with_finalizer = updated;
                &with_finalizer
            }
            Err(error) if is_conflict(&error) => {
                tracing::debug!("finalizer write lost the race; not acting");
                return Ok(Requeue::requeue(Duration::from_millis(500)));
            }
            Err(error) => return Err(Error::Finalizer(error)),
        }
    } else {
        call
    };
    let written = decided != status;
    if written {
        match write_status(ctx, call, &decided).await {
            Ok(_) => {}
            Err(error) if is_conflict(&error) => {
                // Someone else wrote first (a newer watch event, or another replica): their
                // status wins and nothing decided here may be acted on.
                tracing::debug!("status write lost the race; not acting");
                return Ok(Requeue::requeue(Duration::from_millis(500)));
            }
            Err(error) => return Err(Error::Status(error)),
        }
    }

    let live: HashSet<String> = decided
        .attempts
        .iter()
        .filter(|a| !a.status.is_final() && a.call_sid.is_some())
        .map(|a| a.id.clone())
        .collect();
    ctx.runner
        .sync_live(&account.account_sid, &namespace, &name, &live);

    let urls = |attempt_id: &str| {
        let nonce = decided.nonce.as_deref().unwrap_or_default();
        let mut urls = dial_urls(
            callbacks_to,
            &ack_base,
            &callbacks::callback_query(&namespace, &name, attempt_id, nonce),
        );
        if let Some(test_ack) = &test_ack {
            match test_ack {
                TestAck::Function(function) => {
                    match documents::test_ack_action_url(function, &policy.spec, attempt_id) {
                        Ok(action) => urls.ack = action,
                        Err(error) => tracing::warn!(%error, "the acknowledgement function's URL"),
                    }
                }
                TestAck::Own(own) => {
                    urls.ack = format!(
                        "{own}?{}",
                        callbacks::callback_query(&namespace, &name, attempt_id, nonce)
                    )
                }
            }
        } else if let Some(function) = &ack_function {
            match documents::ack_action_url(function, &policy.spec, &room, attempt_id) {
                Ok(action) => urls.ack = action,
                Err(error) => {
                    tracing::warn!(%error, "the acknowledgement function's URL; the ack document takes its place")
                }
            }
        }
        urls
    };
    let (summary, purpose) = if call.spec.test {
        let message = documents::test_message(&policy.spec, policy_name);
        (message, documents::Purpose::Test)
    } else {
        (call.spec.summary.clone(), documents::Purpose::Page)
    };
    let actions = decision.actions;
    let executor = Executor {
        runner: &ctx.runner,
        account: &account,
        policy: &policy.spec,
        summary: &summary,
        purpose,
        namespace: &namespace,
        name: &name,
        limits: calls::limits(&policy.spec),
        urls: &urls,
        hooks: &ctx.hooks,
        outcomes: Recorded {
            ctx: ctx.clone(),
            pages: state.pages.clone(),
            namespace: namespace.clone(),
            name: name.clone(),
        },
    };
    let Executed {
        found,
        unreachable,
        wake,
    } = executor.run(actions, &decided, now).await;
    // NB: announced after the dials are on their way: an Event is an API write, and nothing a
    // person reads in `kubectl describe` is worth delaying a call for.
    if written {
        transitions(ctx, call, &status, &decided).await;
        oncall::notices(ctx, call, &status, &decided).await;
        if !status.phase.is_terminal() && decided.phase.is_terminal() {
            if let Err(error) = super::tested::record(ctx, call, &decided).await {
                tracing::warn!(%error, "recording the test call; tried again once its calls settle");
            }
        }
    }
    if !found.is_empty() {
        if let Err(error) = record(ctx, &namespace, &name, &found).await {
            tracing::warn!(%error, "recording lookups and polls");
        }
    }

    if deleting {
        return deletion_waits(&state, call, &unreachable).await;
    }

    let poll_every = ctx.config.poll_interval;
    let mut requeue = match wake {
        Some(at) => Duration::try_from(at.duration_since(Timestamp::now()))
            .unwrap_or(Duration::ZERO)
            .max(Duration::from_millis(200)),
        None if decided.phase.is_terminal() => Duration::from_secs(3600),
        None => Duration::from_secs(300),
    };
    let watching = decided.attempts.iter().any(|a| {
        (!a.status.is_final() && !a.acknowledged) || calls::recently_answered(a, Timestamp::now())
    });
    if watching || !ctx.runner.dialing(&namespace, &name).is_empty() {
        requeue = requeue.min(poll_every);
    }
    if records && awaiting_recording(&decided, Timestamp::now()) {
        requeue = requeue.min(poll_every.max(RECORDING_POLL));
    }
    Ok(Requeue::requeue(requeue))
}

/// A page someone acknowledged by key (so joined the room) whose room has no recording URL yet,
/// still calling or finished recently enough that one may still come. Only meaningful when the
/// policy records the room. A page acknowledged with kubectl alone sent nobody to the room.
pub(super) fn awaiting_recording(status: &AlertCallStatus, now: Timestamp) -> bool {
    let recent = !status.phase.is_terminal()
        || status
            .finished_at
            .as_ref()
            .is_some_and(|at| now.duration_since(at.0) < RECORDING_WINDOW);
    status.recording_url.is_none() && status.attempts.iter().any(|a| a.acknowledged) && recent
}

/// Where Twilio may call this operator back: `--public-url`, only when the account's Secret has
/// the auth token that verifies Twilio's signatures. With an API key alone every callback would
/// be refused (a 403 and a debugger warning at Twilio per request), so none is asked for.
pub(super) fn callback_base<'a>(ctx: &'a Context, account: &Account) -> Option<&'a url::Url> {
    ctx.config
        .public_url
        .as_ref()
        .filter(|_| account.auth_token.is_some())
}

/// The acknowledgement URL without the per-call query: the policy's hosted document once the
/// CallPolicy reconciler published it, else this operator's own endpoint at `callbacks_to`.
pub(super) fn ack_base(callbacks_to: Option<&url::Url>, policy: &CallPolicy) -> Option<String> {
    let hosted = policy
        .status
        .as_ref()
        .and_then(|s| s.twiml.as_ref())
        .map(|t| t.urls.ack.clone())
        .filter(|url| !url.is_empty());
    hosted.or_else(|| {
        callbacks_to.map(|public| {
            format!(
                "{}/twiml/ack/{}/{}",
                public.as_str().trim_end_matches('/'),
                policy.namespace().unwrap_or_default(),
                policy.name_any()
            )
        })
    })
}

/// Where a test call's keypress goes: the acknowledgement function (asked for no room), or this
/// operator's own endpoint, which answers a test with its confirmation only.
pub(super) enum TestAck {
    Function(String),
    Own(String),
}

/// `None` for a page. A test needs one of the two [`TestAck`]s: the policy's hosted ack
/// document would join the person to the incident room.
pub(super) fn test_ack_base(
    ctx: &Context,
    call: &AlertCall,
    policy: &CallPolicy,
    ack_function: Option<&str>,
) -> Result<Option<TestAck>, &'static str> {
    if !call.spec.test {
        return Ok(None);
    }
    // NB: a URL that does not parse would leave the call with the room's ack document.
    if let Some(function) = ack_function.filter(|f| url::Url::parse(f).is_ok()) {
        return Ok(Some(TestAck::Function(function.to_string())));
    }
    match &ctx.config.public_url {
        Some(public) => Ok(Some(TestAck::Own(format!(
            "{}/twiml/ack/{}/{}",
            public.as_str().trim_end_matches('/'),
            policy.namespace().unwrap_or_default(),
            policy.name_any()
        )))),
        None => Err("a test call needs the acknowledgement function (published with the policy's TwiML) or --public-url: the hosted ack document would join the incident room"),
    }
}

/// Records why the page cannot proceed, once, and waits.
pub(super) async fn blocked(
    ctx: &Context,
    call: &AlertCall,
    reason: &str,
    message: &str,
    requeue: Option<Requeue>,
) -> Result<Requeue, Error> {
    let status = call.status.clone().unwrap_or_default();
    let mut next = status.clone();
    let changed = conditions::set_condition(
        &mut next.conditions,
        POLICY_RESOLVED,
        false,
        reason,
        message,
        call.metadata.generation,
        Time(Timestamp::now()),
    );
    if changed {
        tracing::warn!(reason, %message, "page blocked");
        match write_status(ctx, call, &next).await {
            Ok(_) => emit_event(ctx, call, EventType::Warning, reason, "Resolve", message).await,
            Err(error) if is_conflict(&error) => {
                return Ok(Requeue::requeue(Duration::from_millis(500)))
            }
            Err(error) => return Err(Error::Status(error)),
        }
    }
    Ok(requeue.unwrap_or_else(|| Requeue::requeue(Duration::from_secs(60))))
}

pub(super) async fn withdrawn(
    ctx: &Context,
    known: &Routes,
    call: &AlertCall,
    namespace: &str,
) -> Option<Withdrawn> {
    if call.metadata.deletion_timestamp.is_some() {
        return Some(Withdrawn::Deleted);
    }
    let route = call.spec.route_ref.as_ref()?;
    // NB: the pager's route index has every valid route; one it lacks (invalid, or too new)
    // is read.
    let suspended = known
        .borrow()
        .index
        .get(&RouteKey::new(namespace, &route.name))
        .map(|compiled| compiled.route.spec.suspend);
    if let Some(suspended) = suspended {
        return suspended.then_some(Withdrawn::Suspended);
    }
    let routes: Api<AlertRoute> = Api::namespaced(ctx.client.clone(), namespace);
    match routes.get_opt(&route.name).await {
        Ok(Some(route)) if route.spec.suspend => Some(Withdrawn::Suspended),
        _ => None,
    }
}

/// The page's policy from the cache, when it is there ready to dial: valid, with its
/// documents published. Anything else is read from the API server, so a cache a watch event
/// behind never blocks a page or names a problem the policy no longer has.
fn cached_policy(policies: &Policies, namespace: &str, name: &str) -> Option<CallPolicy> {
    let guarded = policies.get(&ObjectRef::new(name).within(namespace))?;
    let policy = guarded.0.as_ref().ok()?;
    let ready = validate::call_policy(&policy.spec).is_empty() && ack_base(None, policy).is_some();
    ready.then(|| policy.clone())
}

/// The URLs of one call. Our own acknowledgement endpoint learns from the query which attempt
/// pressed a key; a hosted document is static, and the keypress is seen in the call's Events
/// instead. Twilio reports progress to our status endpoint only when it can reach us.
pub(super) fn dial_urls(
    public_url: Option<&url::Url>,
    ack_base: &str,
    callback_query: &str,
) -> DialUrls {
    let public = public_url.map(|public| public.as_str().trim_end_matches('/'));
    let own = public
        .is_some_and(|public| ack_base.starts_with(public) && ack_base.contains("/twiml/ack/"));
    DialUrls {
        ack: if own {
            format!("{ack_base}?{callback_query}")
        } else {
            ack_base.to_string()
        },
        status_callback: public.map(|public| format!("{public}/twilio/status?{callback_query}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::TwimlStatus;
    use crate::controllers::Config;
    use crate::pipeline::routes::RouteSnapshot;
    use crate::routing::RouteIndex;
    use kube::core::DeserializeGuard;
    use kube::runtime::{reflector, watcher};

    fn policy(namespace: &str, published: bool, recipients: serde_json::Value) -> CallPolicy {
        let mut policy: CallPolicy = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "oncall", "namespace": namespace},
            "spec": {
                "twilio": {"credentialsSecretRef": {"name": "twilio"}, "from": "+15005550006"},
                "recipients": recipients,
            },
        }))
        .unwrap_or_else(|e| panic!("policy: {e}"));
        if published {
            let mut twiml = TwimlStatus::default();
            twiml.urls.ack = "https://svc-1.twil.io/alertcall/ns/oncall/ack.xml".into();
            policy.status = Some(crate::api::CallPolicyStatus {
                twiml: Some(twiml),
                ..Default::default()
            });
        }
        policy
    }

    #[test]
    fn only_a_cached_policy_ready_to_dial_spares_the_read() {
        let alice = serde_json::json!([{"name": "alice", "phone": "+15005550101"}]);
        let (cache, mut writer) = reflector::store::<DeserializeGuard<CallPolicy>>();
        let mut put = |policy: CallPolicy| {
            writer.apply_watcher_event(&watcher::Event::Apply(DeserializeGuard(Ok(policy))));
        };
        assert!(
            cached_policy(&cache, "ns", "oncall").is_none(),
            "not in the cache"
        );
        put(policy("ns", true, alice.clone()));
        let cached = cached_policy(&cache, "ns", "oncall");
        assert_eq!(cached.map(|p| p.spec.recipients.len()), Some(1));
        assert!(
            cached_policy(&cache, "other", "oncall").is_none(),
            "another namespace's"
        );
        // Not yet published, or invalid: read, so a stale cache never blocks or fails a page.
        put(policy("ns", false, alice));
        assert!(cached_policy(&cache, "ns", "oncall").is_none());
        put(policy("ns", true, serde_json::json!([])));
        assert!(cached_policy(&cache, "ns", "oncall").is_none());
    }

    #[tokio::test]
    async fn a_suspended_route_in_the_index_withdraws_its_page_without_a_read() {
        // NB: a client that reaches nothing: a read would find no route and withdraw nothing.
        let client = crate::fixtures::unreachable_client();
        let (_stop, shutdown) = tokio::sync::watch::channel(false);
        let ctx = Context::new(
            client,
            Config::local("test"),
            crate::leader::Leadership::always(),
            shutdown,
        );
        let mut spec = crate::fixtures::route_spec();
        spec.suspend = true;
        let mut route = AlertRoute::new("r", spec);
        route.metadata.namespace = Some("ns".into());
        let snapshot = RouteSnapshot {
            index: RouteIndex::new([route]),
            synced: true,
            ..Default::default()
        };
        let (_publish, routes) = tokio::sync::watch::channel(Arc::new(snapshot));
        let mut call = AlertCall::new(
            "page",
            serde_json::from_value(serde_json::json!({
                "policyRef": {"name": "oncall"},
                "routeRef": {"name": "r"},
                "summary": "s",
                "source": {"kind": "KubernetesEvent"},
            }))
            .unwrap_or_else(|e| panic!("spec: {e}")),
        );
        call.metadata.namespace = Some("ns".into());
        assert_eq!(
            withdrawn(&ctx, &routes, &call, "ns").await,
            Some(Withdrawn::Suspended)
        );
    }

    #[test]
    fn a_call_carries_the_query_only_to_our_own_endpoints() {
        let public = url::Url::parse("https://pager.example/").ok();
        let own = "https://pager.example/twiml/ack/ns/oncall";
        let hosted = "https://svc-1234.twil.io/alertcall/ns/oncall/ack.xml";
        let query = "ns=ns&name=page&attempt=r1-alice&nonce=n1";
        let cases = [
            (
                public.as_ref(),
                own,
                format!("{own}?{query}"),
                Some(format!("https://pager.example/twilio/status?{query}")),
            ),
            (
                public.as_ref(),
                hosted,
                hosted.to_string(),
                Some(format!("https://pager.example/twilio/status?{query}")),
            ),
            (None, hosted, hosted.to_string(), None),
        ];
        for (public, ack_base, ack, status_callback) in cases {
            assert_eq!(
                dial_urls(public, ack_base, query),
                DialUrls {
                    ack,
                    status_callback
                },
                "{ack_base}"
            );
        }
    }
}
