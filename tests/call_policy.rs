//! The CallPolicy controller on a real control plane against the in-process Twilio simulator:
//! published documents, the bridge number, drift, deletion, and the conditions of broken input.

mod support;

use std::time::Duration;

use alertcall::api::{AlertCall, CallPolicy};
use alertcall::operator::{self, Config, Running};
use alertcall::twilio::sim::{Event, Fault, FaultSpec, SimConfig, SimHandle, Simulator};
use alertcall::twilio::types::VoiceWebhook;
use alertcall::twilio::TwilioEndpoints;
use alertcall::twilio::{signature, Credentials, TwilioClient, TwilioConfig};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::Client;
use serde_json::json;
use url::Url;

const ACCOUNT: &str = "AC00000000000000000000000000000001";
const TOKEN: &str = "sim-auth-token";
const FROM: &str = "+15005550006";
const BRIDGE: &str = "+15005550077";
const ORIGINAL_URL: &str = "https://example.com/original-voice";

struct Env {
    client: Client,
    ns: support::TestNamespace,
    sim: SimHandle,
    twilio: TwilioClient,
    operator: Running,
    bridge_sid: String,
}

async fn setup(prefix: &str) -> Env {
    alertcall::telemetry::init();
    let client = support::client().await;
    let ns = support::TestNamespace::new(&client, prefix).await;
    let sim = Simulator::start(SimConfig::new(ACCOUNT, TOKEN))
        .await
        .unwrap_or_else(|e| panic!("simulator: {e}"));
    let base = Url::parse(&sim.api_url()).unwrap_or_else(|e| panic!("sim url: {e}"));
    let twilio = TwilioClient::new(
        TwilioConfig::new(Credentials::AuthToken {
            account_sid: ACCOUNT.into(),
            auth_token: TOKEN.into(),
        })
        .with_single_base(base.clone()),
    )
    .unwrap_or_else(|e| panic!("client: {e}"));
    sim.add_number(FROM);
    let bridge_sid = sim.add_number(BRIDGE);
    twilio
        .set_voice_webhook(
            &bridge_sid,
            &VoiceWebhook {
                voice_url: Some(ORIGINAL_URL.into()),
                voice_method: Some("POST".into()),
            },
        )
        .await
        .unwrap_or_else(|e| panic!("seeding the bridge number: {e}"));
    create_secret(&client, &ns.name, "twilio", TOKEN).await;
    let config = Config {
        namespace: Some(ns.name.clone()),
        twilio: TwilioEndpoints {
            api_url: Some(base.clone()),
            serverless_url: Some(base),
            ..Default::default()
        },
        instance_name: format!("t-{}", ns.name),
        policy_resync: Duration::from_secs(2),
        call_policies: true,
        ..Config::local(prefix)
    };
    let operator = operator::start(client.clone(), config)
        .await
        .unwrap_or_else(|e| panic!("operator: {e}"));
    Env {
        client,
        ns,
        sim,
        twilio,
        operator,
        bridge_sid,
    }
}

impl Env {
    fn policies(&self) -> Api<CallPolicy> {
        Api::namespaced(self.client.clone(), &self.ns.name)
    }

    async fn teardown(self) {
        self.operator.shutdown().await;
        self.sim.shutdown().await;
        self.ns.delete().await;
    }

    fn uploads(&self) -> usize {
        self.sim
            .ledger()
            .entries
            .iter()
            .filter(|e| {
                matches!(&e.event, Event::Request { method, path, status, .. }
                    if method == "POST" && path.ends_with("/Versions") && *status == 201)
            })
            .count()
    }

    /// Fetches an asset as Twilio would (signed) or as anyone else (unsigned).
    async fn fetch(&self, url: &str, signed: bool) -> (u16, String) {
        let mut request = reqwest::Client::new().get(url);
        if signed {
            request = request.header("X-Twilio-Signature", signature::compute(TOKEN, url, &[]));
        }
        match request.send().await {
            Ok(response) => (
                response.status().as_u16(),
                response.text().await.unwrap_or_default(),
            ),
            Err(error) => panic!("fetching {url}: {error}"),
        }
    }
}

async fn create_secret(client: &Client, namespace: &str, name: &str, token: &str) {
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": name},
        "stringData": {"accountSid": ACCOUNT, "authToken": token},
    }))
    .unwrap_or_else(|e| panic!("secret: {e}"));
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    api.create(&PostParams::default(), &secret)
        .await
        .unwrap_or_else(|e| panic!("creating Secret {name}: {e}"));
}

fn policy(
    name: &str,
    secret: &str,
    from: &str,
    bridge: Option<&str>,
    template: &str,
) -> CallPolicy {
    let mut twilio = json!({"credentialsSecretRef": {"name": secret}, "from": from});
    if let Some(bridge) = bridge {
        twilio["bridgeNumber"] = json!(bridge);
    }
    serde_json::from_value(json!({
        "apiVersion": "alertcall.dev/v1alpha1",
        "kind": "CallPolicy",
        "metadata": {"name": name},
        "spec": {
            "twilio": twilio,
            "recipients": [{"name": "alice", "phone": "+15005550101"}],
            "message": {"template": template},
        },
    }))
    .unwrap_or_else(|e| panic!("policy: {e}"))
}

async fn apply(env: &Env, policy: &CallPolicy) {
    let name = policy.metadata.name.clone().unwrap_or_default();
    env.policies()
        .patch(
            &name,
            &PatchParams::apply(support::FIELD_MANAGER).force(),
            &Patch::Apply(policy),
        )
        .await
        .unwrap_or_else(|e| panic!("applying {name}: {e}"));
}

/// Polls the policy until `check` accepts it (bounded: [`support::WAIT`]).
async fn wait_policy<F: Fn(&CallPolicy) -> bool>(
    env: &Env,
    name: &str,
    what: &str,
    check: F,
) -> CallPolicy {
    let last = std::sync::Mutex::new(None);
    let found = support::within(support::WAIT, || async {
        let policy = env.policies().get_opt(name).await.ok().flatten()?;
        if check(&policy) {
            return Some(policy);
        }
        *last.lock().unwrap_or_else(|e| e.into_inner()) = policy.status;
        None
    })
    .await;
    found.unwrap_or_else(|| {
        let last = last.lock().unwrap_or_else(|e| e.into_inner()).take();
        panic!("timed out waiting for {what} on {name}; last status: {last:#?}")
    })
}

fn condition<'a>(
    policy: &'a CallPolicy,
    type_: &str,
) -> Option<&'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    policy
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == type_))
}

/// Reason and message of a condition (empty when absent).
fn reason_message(policy: &CallPolicy, type_: &str) -> Reasoned {
    condition(policy, type_)
        .map(|c| Reasoned {
            reason: c.reason.clone(),
            message: c.message.clone(),
        })
        .unwrap_or(Reasoned {
            reason: String::new(),
            message: String::new(),
        })
}

struct Reasoned {
    reason: String,
    message: String,
}

fn is(policy: &CallPolicy, type_: &str, status: &str) -> bool {
    condition(policy, type_).is_some_and(|c| c.status == status)
}

fn ready(policy: &CallPolicy) -> bool {
    is(policy, "Ready", "True")
        && policy.status.as_ref().and_then(|s| s.observed_generation) == policy.metadata.generation
}

async fn voice_url(env: &Env) -> (Option<String>, Option<String>) {
    let number = env
        .twilio
        .fetch_incoming_phone_number(&env.bridge_sid)
        .await
        .unwrap_or_else(|e| panic!("fetching the bridge number: {e}"));
    (number.voice_url, number.voice_method)
}

async fn delete_and_wait(env: &Env, name: &str) {
    let _ = env.policies().delete(name, &DeleteParams::default()).await;
    support::eventually(
        &format!("{name} to be deleted (its finalizer released)"),
        || async { matches!(env.policies().get_opt(name).await, Ok(None)).then_some(()) },
    )
    .await;
}

#[tokio::test]
async fn policy_lifecycle_publishes_bridges_corrects_drift_and_cleans_up() {
    let env = setup("cp-life").await;
    let template = "Alert. {{ reason }} on {{ name }}.";
    apply(
        &env,
        &policy("oncall", "twilio", FROM, Some(BRIDGE), template),
    )
    .await;
    let ready_policy = wait_policy(&env, "oncall", "Ready", ready).await;
    let status = ready_policy.status.clone().unwrap_or_default();
    for type_ in [
        "CredentialsValid",
        "TwimlPublished",
        "BridgeConfigured",
        "TwilioHealthy",
    ] {
        assert!(is(&ready_policy, type_, "True"), "{type_}: {status:#?}");
    }
    let twiml = status.twiml.clone().unwrap_or_default();
    assert!(
        twiml.service_sid.starts_with("ZS") && twiml.build_sid.starts_with("ZB"),
        "{twiml:?}"
    );
    assert_eq!(
        status.bridge_number_sid.as_deref(),
        Some(env.bridge_sid.as_str())
    );
    let room = format!("{}-oncall", env.ns.name);

    // The documents are served to Twilio only.
    for url in [&twiml.urls.ack, &twiml.urls.bridge] {
        assert_eq!(env.fetch(url, false).await.0, 403, "{url} unsigned");
        let (code, body) = env.fetch(url, true).await;
        assert_eq!(code, 200, "{url} signed: {body}");
        assert!(body.contains("<Response>"), "{body}");
    }
    assert!(env.fetch(&twiml.urls.bridge, true).await.1.contains(&room));
    assert_eq!(
        voice_url(&env).await,
        (Some(twiml.urls.bridge.clone()), Some("GET".into()))
    );
    let remembered = ready_policy
        .metadata
        .annotations
        .clone()
        .unwrap_or_default()
        .get("alertcall.dev/bridge-previous-webhook")
        .cloned()
        .unwrap_or_default();
    assert!(remembered.contains(ORIGINAL_URL), "{remembered}");

    // Re-applying the same spec uploads nothing, across several resyncs.
    let uploads = env.uploads();
    // The two documents and the acknowledgement function.
    assert_eq!(uploads, 3);
    let mut touched = policy("oncall", "twilio", FROM, Some(BRIDGE), template);
    touched.metadata.labels = Some([("touched".to_string(), "yes".to_string())].into());
    apply(&env, &touched).await;
    let resyncs_before = env.sim.ledger().entries.len();
    support::until("a few resyncs", || {
        env.sim
            .ledger()
            .entries
            .iter()
            .skip(resyncs_before)
            .filter(|e| matches!(&e.event, Event::Request { path, .. } if path.contains("IncomingPhoneNumbers.json")))
            .count()
            >= 6
    })
    .await;
    assert_eq!(env.uploads(), uploads, "an unchanged spec uploaded again");

    // A dial-in call to the bridge number joins the room.
    let call = env
        .sim
        .dial_in("+15005550999", BRIDGE)
        .unwrap_or_else(|e| panic!("dial in: {e}"));
    support::until("the dial-in caller in the room", || {
        env.sim.ledger().participants_of(&room).contains(&call)
    })
    .await;

    // A new message language re-publishes (the spoken text itself is inline in each call).
    let mut japanese = policy("oncall", "twilio", FROM, Some(BRIDGE), template);
    japanese.spec.message.language = "ja-JP".into();
    apply(&env, &japanese).await;
    let republished = wait_policy(&env, "oncall", "a new content hash", |p| {
        ready(p)
            && p.status
                .as_ref()
                .and_then(|s| s.twiml.as_ref())
                .map(|t| t.content_hash.clone())
                != Some(twiml.content_hash.clone())
    })
    .await;
    assert!(
        env.uploads() > uploads,
        "a changed spec was not re-published"
    );
    let new_twiml = republished.status.and_then(|s| s.twiml).unwrap_or_default();
    let (_, ack) = env.fetch(&new_twiml.urls.ack, true).await;
    assert!(ack.contains("ja-JP"), "{ack}");

    // Drift made by hand is corrected on a resync.
    env.twilio
        .set_voice_webhook(
            &env.bridge_sid,
            &VoiceWebhook {
                voice_url: Some("https://example.com/hand-edit".into()),
                voice_method: Some("POST".into()),
            },
        )
        .await
        .unwrap_or_else(|e| panic!("hand edit: {e}"));
    support::eventually("the hand-edited voice URL to be set back", || async {
        (voice_url(&env).await.0.as_deref() == Some(new_twiml.urls.bridge.as_str())).then_some(())
    })
    .await;
    assert_eq!(
        voice_url(&env).await,
        (Some(new_twiml.urls.bridge.clone()), Some("GET".into()))
    );

    // Documents that vanish from the environment (a deployment made by hand) come back.
    let environments = env
        .twilio
        .list_environments(&new_twiml.service_sid)
        .await
        .unwrap_or_else(|e| panic!("environments: {e}"));
    let environment = environments
        .first()
        .unwrap_or_else(|| panic!("no environment in {}", new_twiml.service_sid));
    env.twilio
        .clear_deployment(&new_twiml.service_sid, &environment.sid)
        .await
        .unwrap_or_else(|e| panic!("emptying the environment: {e}"));
    assert_eq!(env.fetch(&new_twiml.urls.ack, true).await.0, 404);
    support::eventually("the vanished documents to be published again", || async {
        (env.fetch(&new_twiml.urls.ack, true).await.0 == 200).then_some(())
    })
    .await;

    // Removing bridgeNumber hands the number back; naming it again takes it over again.
    let mut without_bridge = japanese.clone();
    without_bridge.spec.twilio.bridge_number = None;
    apply(&env, &without_bridge).await;
    let released = wait_policy(&env, "oncall", "the bridge released", |p| {
        ready(p)
            && reason_message(p, "BridgeConfigured").reason == "NotRequested"
            && p.status
                .as_ref()
                .is_some_and(|s| s.bridge_number_sid.is_none())
    })
    .await;
    assert_eq!(
        voice_url(&env).await,
        (Some(ORIGINAL_URL.into()), Some("POST".into()))
    );
    assert!(!released
        .metadata
        .annotations
        .unwrap_or_default()
        .contains_key("alertcall.dev/bridge-previous-webhook"));
    apply(&env, &japanese).await;
    wait_policy(&env, "oncall", "the bridge configured again", |p| {
        ready(p)
            && p.status
                .as_ref()
                .is_some_and(|s| s.bridge_number_sid.is_some())
    })
    .await;
    assert_eq!(voice_url(&env).await.0, Some(new_twiml.urls.bridge.clone()));

    // Deleting restores the number and removes the documents.
    delete_and_wait(&env, "oncall").await;
    assert_eq!(
        voice_url(&env).await,
        (Some(ORIGINAL_URL.into()), Some("POST".into()))
    );
    let assets = env
        .twilio
        .list_assets(&new_twiml.service_sid)
        .await
        .unwrap_or_else(|e| panic!("assets: {e}"));
    assert!(assets.is_empty(), "{assets:?}");
    assert_eq!(env.fetch(&new_twiml.urls.ack, true).await.0, 404);
    env.teardown().await;
}

#[tokio::test]
async fn two_policies_in_one_install_keep_their_documents() {
    let env = setup("cp-two").await;
    let template = "Alert. {{ reason }}.";
    let mut first = policy("first", "twilio", FROM, None, template);
    first.spec.message.language = "en-GB".into();
    let second = policy("second", "twilio", FROM, Some(BRIDGE), template);
    apply(&env, &first).await;
    apply(&env, &second).await;
    let first = wait_policy(&env, "first", "Ready", ready).await;
    let second = wait_policy(&env, "second", "Ready", ready).await;
    let urls = |p: &CallPolicy| {
        p.status
            .clone()
            .and_then(|s| s.twiml)
            .unwrap_or_default()
            .urls
    };
    for url in [urls(&first).ack, urls(&second).ack, urls(&second).bridge] {
        assert_eq!(env.fetch(&url, true).await.0, 200, "{url}");
    }
    assert!(
        is(&first, "BridgeConfigured", "True"),
        "no bridge requested is fine"
    );

    // A second policy naming the same bridge number is refused instead of fighting over it.
    apply(
        &env,
        &policy("rival", "twilio", FROM, Some(BRIDGE), template),
    )
    .await;
    let rival = wait_policy(&env, "rival", "BridgeNumberInUse", |p| {
        reason_message(p, "BridgeConfigured").reason == "BridgeNumberInUse"
    })
    .await;
    assert!(is(&rival, "Ready", "False"));
    assert!(
        reason_message(&rival, "BridgeConfigured")
            .message
            .contains(BRIDGE),
        "{}",
        reason_message(&rival, "BridgeConfigured").message
    );
    assert_eq!(voice_url(&env).await.0, Some(urls(&second).bridge));
    delete_and_wait(&env, "rival").await;
    assert_eq!(voice_url(&env).await.0, Some(urls(&second).bridge));

    // Removing one keeps the other's documents in the next build.
    delete_and_wait(&env, "first").await;
    assert_eq!(env.fetch(&urls(&first).ack, true).await.0, 404);
    for url in [urls(&second).ack, urls(&second).bridge] {
        assert_eq!(env.fetch(&url, true).await.0, 200, "{url}");
    }
    // While Twilio fails, deletion waits and says why; it completes once Twilio answers.
    env.sim
        .inject_fault(FaultSpec::new(Fault::ServerError).on_path("/Assets"));
    let _ = env
        .policies()
        .delete("second", &DeleteParams::default())
        .await;
    let waiting = wait_policy(&env, "second", "CleanupPending", |p| {
        reason_message(p, "Ready").reason == "CleanupPending"
    })
    .await;
    assert!(waiting.metadata.deletion_timestamp.is_some());
    let message = reason_message(&waiting, "Ready").message;
    assert!(message.contains("HTTP 500"), "{message}");
    env.sim.clear_faults();
    delete_and_wait(&env, "second").await;
    env.teardown().await;
}

#[tokio::test]
async fn broken_input_and_twilio_errors_surface_as_conditions() {
    let env = setup("cp-bad").await;
    let template = "Alert. {{ reason }}.";
    create_secret(&env.client, &env.ns.name, "wrong", "not-the-token").await;
    apply(&env, &policy("no-secret", "missing", FROM, None, template)).await;
    apply(&env, &policy("bad-creds", "wrong", FROM, None, template)).await;
    apply(
        &env,
        &policy("foreign-from", "twilio", "+15005550123", None, template),
    )
    .await;
    apply(&env, &policy("healthy", "twilio", FROM, None, template)).await;
    env.sim.add_caller_id("+15005550124");
    apply(
        &env,
        &policy("verified-from", "twilio", "+15005550124", None, template),
    )
    .await;

    let p = wait_policy(&env, "no-secret", "SecretNotFound", |p| {
        is(p, "Ready", "False") && is(p, "CredentialsValid", "False")
    })
    .await;
    let c = reason_message(&p, "CredentialsValid");
    assert_eq!(c.reason, "SecretNotFound");
    assert!(
        c.message.contains("missing") && c.message.contains("not found"),
        "{}",
        c.message
    );

    let p = wait_policy(&env, "bad-creds", "InvalidCredentials", |p| {
        is(p, "CredentialsValid", "False")
    })
    .await;
    let c = reason_message(&p, "CredentialsValid");
    assert_eq!(c.reason, "InvalidCredentials");
    assert!(
        c.message.contains("20003") && c.message.contains("wrong"),
        "{}",
        c.message
    );
    assert!(
        !c.message.contains("not-the-token"),
        "a secret value leaked: {}",
        c.message
    );

    let p = wait_policy(&env, "foreign-from", "FromNumberNotOwned", |p| {
        condition(p, "Ready").is_some_and(|c| c.reason == "FromNumberNotOwned")
    })
    .await;
    let c = reason_message(&p, "Ready");
    assert!(
        c.message.contains("+15005550123")
            && c.message.contains(ACCOUNT)
            && c.message.contains("verified Outgoing Caller ID"),
        "{}",
        c.message
    );
    assert!(is(&p, "CredentialsValid", "True"));

    // A verified caller ID is a legitimate from, though not a number of the account.
    wait_policy(&env, "verified-from", "Ready", ready).await;

    // Twilio errors seen while calling for a policy name the code and the recipient: the real
    // escalation controller dials alice, whose number the simulator refuses as invalid.
    wait_policy(&env, "healthy", "Ready", ready).await;
    env.sim
        .set_invalid_number("+15005550101", 21211)
        .unwrap_or_else(|e| panic!("simulator: {e}"));
    let calls: Api<AlertCall> = Api::namespaced(env.client.clone(), &env.ns.name);
    let page = |name: &str| -> AlertCall {
        serde_json::from_value(json!({
            "apiVersion": "alertcall.dev/v1alpha1",
            "kind": "AlertCall",
            "metadata": {"name": name},
            "spec": {"policyRef": {"name": "healthy"}, "summary": "disk full"},
        }))
        .unwrap_or_else(|e| panic!("alertcall: {e}"))
    };
    calls
        .create(&PostParams::default(), &page("page-1"))
        .await
        .unwrap_or_else(|e| panic!("creating AlertCall: {e}"));
    let p = wait_policy(&env, "healthy", "TwilioHealthy=False", |p| {
        is(p, "TwilioHealthy", "False")
    })
    .await;
    let c = reason_message(&p, "TwilioHealthy");
    assert!(
        c.message.contains("21211") && c.message.contains("alice"),
        "{}",
        c.message
    );
    // Once the number works again, a later page's successful call clears the condition.
    env.sim.clear_invalid_number("+15005550101");
    calls
        .create(&PostParams::default(), &page("page-2"))
        .await
        .unwrap_or_else(|e| panic!("creating AlertCall: {e}"));
    wait_policy(&env, "healthy", "TwilioHealthy=True", |p| {
        is(p, "TwilioHealthy", "True")
    })
    .await;

    for name in [
        "no-secret",
        "bad-creds",
        "foreign-from",
        "healthy",
        "verified-from",
    ] {
        delete_and_wait(&env, name).await;
    }
    env.teardown().await;
}

#[tokio::test]
async fn bridge_number_with_an_application_or_a_trunk_is_reported_and_left_alone() {
    let env = setup("cp-app").await;
    let application = "AP0123456789abcdef0123456789abcdef";
    let trunk = "TK0123456789abcdef0123456789abcdef";
    env.sim
        .set_number_field(&env.bridge_sid, "VoiceApplicationSid", application)
        .unwrap_or_else(|e| panic!("attaching the application: {e}"));
    apply(
        &env,
        &policy(
            "oncall",
            "twilio",
            FROM,
            Some(BRIDGE),
            "Alert. {{ reason }}.",
        ),
    )
    .await;
    let refused = wait_policy(&env, "oncall", "BridgeNumberHasApplication", |p| {
        reason_message(p, "BridgeConfigured").reason == "BridgeNumberHasApplication"
    })
    .await;
    assert!(is(&refused, "BridgeConfigured", "False"));
    assert!(is(&refused, "TwimlPublished", "True"));
    let message = reason_message(&refused, "BridgeConfigured").message;
    assert!(
        message.contains(application) && message.contains(BRIDGE) && message.contains("detach"),
        "{message}"
    );
    let untouched = (Some(ORIGINAL_URL.to_string()), Some("POST".to_string()));
    assert_eq!(voice_url(&env).await, untouched);
    let annotated = refused
        .metadata
        .annotations
        .unwrap_or_default()
        .contains_key(alertcall::controllers::call_policy::PREVIOUS_WEBHOOK_ANNOTATION);
    assert!(!annotated, "nothing to restore: the number was not changed");

    // Moved from the application onto a SIP trunk: still not reachable through its voice URL.
    env.sim
        .set_number_field(&env.bridge_sid, "VoiceApplicationSid", "")
        .unwrap_or_else(|e| panic!("detaching the application: {e}"));
    env.sim
        .set_number_field(&env.bridge_sid, "TrunkSid", trunk)
        .unwrap_or_else(|e| panic!("joining the trunk: {e}"));
    let on_trunk = wait_policy(&env, "oncall", "BridgeNumberOnTrunk", |p| {
        reason_message(p, "BridgeConfigured").reason == "BridgeNumberOnTrunk"
    })
    .await;
    let message = reason_message(&on_trunk, "BridgeConfigured").message;
    assert!(message.contains(trunk), "{message}");
    assert_eq!(voice_url(&env).await, untouched);

    // Off the trunk, the number is configured as any other.
    env.sim
        .set_number_field(&env.bridge_sid, "TrunkSid", "")
        .unwrap_or_else(|e| panic!("leaving the trunk: {e}"));
    let configured = wait_policy(&env, "oncall", "Ready", ready).await;
    let bridge = configured
        .status
        .and_then(|s| s.twiml)
        .unwrap_or_default()
        .urls
        .bridge;
    assert_eq!(voice_url(&env).await, (Some(bridge), Some("GET".into())));
    delete_and_wait(&env, "oncall").await;
    assert_eq!(voice_url(&env).await, untouched);
    env.teardown().await;
}

/// Seeds the install's Serverless service (`t-<namespace>`) with one deployed asset, as
/// someone or an older alertcall left it. Returns the service SID and the asset's URL.
async fn seed_service(env: &Env, friendly_name: &str, path: &str) -> (String, String) {
    let twilio = &env.twilio;
    let instance = format!("t-{}", env.ns.name);
    let service = twilio
        .create_service(&instance, "seeded")
        .await
        .unwrap_or_else(|e| panic!("service: {e}"));
    let environment = twilio
        .create_environment(&service.sid, "production", None)
        .await
        .unwrap_or_else(|e| panic!("environment: {e}"));
    let asset = twilio
        .create_asset(&service.sid, friendly_name)
        .await
        .unwrap_or_else(|e| panic!("asset: {e}"));
    let version = twilio
        .upload_asset_version(
            &service.sid,
            &asset.sid,
            &alertcall::twilio::client::AssetUpload {
                path: path.to_string(),
                file_name: "seeded".into(),
                content_type: "application/xml".into(),
                content: b"<Response><Hangup/></Response>".to_vec(),
            },
        )
        .await
        .unwrap_or_else(|e| panic!("version: {e}"));
    let build = twilio
        .create_build(&service.sid, &[version.sid])
        .await
        .unwrap_or_else(|e| panic!("build: {e}"));
    twilio
        .wait_for_build(
            &service.sid,
            &build.sid,
            Duration::from_millis(50),
            Duration::from_secs(30),
        )
        .await
        .unwrap_or_else(|e| panic!("building: {e}"));
    twilio
        .create_deployment(&service.sid, &environment.sid, &build.sid)
        .await
        .unwrap_or_else(|e| panic!("deployment: {e}"));
    let url = twilio.asset_url(&environment, path);
    (service.sid, url)
}

/// Successful creates of builds and deployments the simulator saw.
fn builds_and_deployments(env: &Env) -> (usize, usize) {
    let ledger = env.sim.ledger();
    let created = |suffix: &str| {
        ledger
            .entries
            .iter()
            .filter(|e| {
                matches!(&e.event, Event::Request { method, path, status, .. }
                    if method == "POST" && path.ends_with(suffix) && *status == 201)
            })
            .count()
    };
    (created("/Builds"), created("/Deployments"))
}

#[tokio::test]
async fn a_foreign_serverless_service_is_refused_and_not_rebuilt() {
    let env = setup("cp-foreign").await;
    let (service_sid, foreign_url) = seed_service(&env, "landing page", "/index.html").await;
    let before = builds_and_deployments(&env);
    assert_eq!(before, (1, 1));
    apply(
        &env,
        &policy("oncall", "twilio", FROM, None, "Alert. {{ reason }}."),
    )
    .await;
    let refused = wait_policy(&env, "oncall", "ForeignServerlessService", |p| {
        reason_message(p, "TwimlPublished").reason == "ForeignServerlessService"
    })
    .await;
    assert!(is(&refused, "TwimlPublished", "False"));
    assert!(is(&refused, "Ready", "False"));
    let message = reason_message(&refused, "TwimlPublished").message;
    assert!(
        message.contains(&service_sid) && message.contains("/index.html"),
        "{message}"
    );
    // A resync later (2 s here) it is still refused, and nothing was built or uploaded.
    let uploads = env.uploads();
    support::eventually("a second refusal after a resync", || async {
        let ledger = env.sim.ledger();
        let listings = ledger
            .entries
            .iter()
            .filter(|e| {
                matches!(&e.event, Event::Request { method, path, .. }
                    if method == "GET" && path.ends_with(&format!("{service_sid}/Functions")))
            })
            .count();
        (listings >= 2).then_some(())
    })
    .await;
    assert_eq!(builds_and_deployments(&env), before);
    assert_eq!(env.uploads(), uploads);
    assert_eq!(env.fetch(&foreign_url, true).await.0, 200);
    env.teardown().await;
}

#[tokio::test]
async fn a_no_ack_document_of_an_older_version_leaves_the_build() {
    let env = setup("cp-noack").await;
    let friendly = format!("{}/oncall/no-ack.xml", env.ns.name);
    let (_, old_url) = seed_service(&env, &friendly, &format!("/{friendly}")).await;
    assert_eq!(env.fetch(&old_url, true).await.0, 200);
    apply(
        &env,
        &policy("oncall", "twilio", FROM, None, "Alert. {{ reason }}."),
    )
    .await;
    let published = wait_policy(&env, "oncall", "Ready", ready).await;
    let urls = published
        .status
        .and_then(|s| s.twiml)
        .unwrap_or_default()
        .urls;
    for url in [&urls.ack, &urls.bridge] {
        assert_eq!(env.fetch(url, true).await.0, 200, "{url}");
    }
    assert_eq!(env.fetch(&old_url, true).await.0, 404, "{old_url}");
    let service = env
        .twilio
        .find_service(&format!("t-{}", env.ns.name))
        .await
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("the service"));
    let names: Vec<String> = env
        .twilio
        .list_assets(&service.sid)
        .await
        .unwrap_or_else(|e| panic!("assets: {e}"))
        .into_iter()
        .map(|a| a.friendly_name)
        .collect();
    assert!(!names.contains(&friendly), "{names:?}");
    env.teardown().await;
}
