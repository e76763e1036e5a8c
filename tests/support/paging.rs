//! A page end to end: the operator in process on the real control plane, calling through the
//! in-process Twilio simulator, with a namespace, a credentials Secret and helpers to read the
//! simulator's ledger. Shared by the escalation and hostile-input tests.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use alertcall::api::{AlertCall, AlertCallStatus, CallPolicy, Phase};
use alertcall::operator::{self, Config, Running};
use alertcall::page::hooks::Hooks;
use alertcall::twilio::sim::{
    Event, Ledger, Outcome, Recipient, Script, SimConfig, SimHandle, Simulator,
};
use alertcall::twilio::TwilioEndpoints;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, PostParams};
use kube::Client;
use serde_json::json;
use tokio::net::TcpListener;

pub const AC: &str = "AC0123456789abcdef0123456789abcdef";
pub const TOKEN: &str = "escalation-test-token";
pub const FROM: &str = "+15005550006";
pub const ALICE: &str = "+15005550101";
pub const BOB: &str = "+15005550102";
pub const CAROL: &str = "+15005550103";
pub const DAVE: &str = "+15005550104";

/// How long a page may take in these tests: a lost intent alone waits out the 30 s grace.
pub const PAGE_WAIT: Duration = Duration::from_secs(120);

pub struct Harness {
    pub client: Client,
    pub ns: super::TestNamespace,
    pub sim: SimHandle,
}

impl Harness {
    pub async fn new(prefix: &str, script: Script, time_scale: f64) -> Harness {
        Harness::with_sim(
            prefix,
            SimConfig {
                script,
                time_scale,
                // The operator paces; the simulator must not hide what it does.
                calls_per_second: 100.0,
                ..SimConfig::new(AC, TOKEN)
            },
        )
        .await
    }

    /// A harness whose simulator runs `config` (its credentials must be [`AC`] and [`TOKEN`]).
    pub async fn with_sim(prefix: &str, config: SimConfig) -> Harness {
        alertcall::telemetry::init();
        let client = super::client().await;
        let ns = super::TestNamespace::new(&client, prefix).await;
        let sim = Simulator::start(config)
            .await
            .unwrap_or_else(|e| panic!("simulator: {e}"));
        let secret: Secret = serde_json::from_value(json!({
            "metadata": {"name": "twilio"},
            "stringData": {"accountSid": AC, "authToken": TOKEN},
        }))
        .unwrap_or_else(|e| panic!("secret: {e}"));
        Api::<Secret>::namespaced(client.clone(), &ns.name)
            .create(&PostParams::default(), &secret)
            .await
            .unwrap_or_else(|e| panic!("creating the secret: {e}"));
        // The caller ID must be a number of the account for the CallPolicy reconciler.
        sim.add_number(FROM);
        Harness { client, ns, sim }
    }

    pub fn config(&self, identity: &str, addr: SocketAddr, public: bool, hooks: Hooks) -> Config {
        let sim_url = url::Url::parse(&self.sim.api_url()).ok();
        Config {
            namespace: Some(self.ns.name.clone()),
            public_url: public
                .then(|| url::Url::parse(&format!("http://{addr}")).ok())
                .flatten(),
            twilio: TwilioEndpoints {
                api_url: sim_url.clone(),
                serverless_url: sim_url,
                ..TwilioEndpoints::default()
            },
            poll_interval: Duration::from_millis(500),
            hooks,
            // NB: without a public URL the documents a call fetches are hosted at Twilio, as in
            // production: the CallPolicy reconciler publishes them into the simulator.
            call_policies: !public,
            instance_name: format!("t-{}", self.ns.name),
            ..Config::local(identity)
        }
    }

    /// Starts an operator on `addr` (port 0: any), with its own address as public URL (Twilio
    /// calls back) or not (documents hosted at Twilio, status polled).
    pub async fn operator(
        &self,
        identity: &str,
        addr: SocketAddr,
        public: bool,
        hooks: Hooks,
    ) -> Running {
        let listener = bind(addr).await;
        let addr = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("local addr: {e}"));
        let config = self.config(identity, addr, public, hooks);
        self.start(config, listener).await
    }

    /// Starts an operator with `config` (from [`Harness::config`], adjusted) on `listener`.
    pub async fn start(&self, config: Config, listener: TcpListener) -> Running {
        operator::start_with_listener(self.client.clone(), config, listener)
            .await
            .unwrap_or_else(|e| panic!("starting the operator: {e}"))
    }

    pub async fn policy(&self, spec: serde_json::Value) {
        let policy: CallPolicy = serde_json::from_value(json!({
            "apiVersion": "alertcall.dev/v1alpha1",
            "kind": "CallPolicy",
            "metadata": {"name": "oncall"},
            "spec": spec,
        }))
        .unwrap_or_else(|e| panic!("policy: {e}"));
        Api::<CallPolicy>::namespaced(self.client.clone(), &self.ns.name)
            .create(&PostParams::default(), &policy)
            .await
            .unwrap_or_else(|e| panic!("creating the policy: {e}"));
    }

    pub async fn page(&self, name: &str) {
        let call: AlertCall = serde_json::from_value(json!({
            "apiVersion": "alertcall.dev/v1alpha1",
            "kind": "AlertCall",
            "metadata": {"name": name},
            "spec": {
                "policyRef": {"name": "oncall"},
                "summary": "Disk full on node one",
                "source": {"kind": "Manual"},
            },
        }))
        .unwrap_or_else(|e| panic!("alertcall: {e}"));
        self.calls()
            .create(&PostParams::default(), &call)
            .await
            .unwrap_or_else(|e| panic!("creating the AlertCall: {e}"));
    }

    pub fn calls(&self) -> Api<AlertCall> {
        Api::namespaced(self.client.clone(), &self.ns.name)
    }

    pub async fn status(&self, name: &str) -> AlertCallStatus {
        match self.calls().get_opt(name).await {
            Ok(Some(call)) => call.status.unwrap_or_default(),
            _ => AlertCallStatus::default(),
        }
    }

    /// Waits (bounded by [`PAGE_WAIT`]) until the page's status satisfies `done`.
    pub async fn wait_status(
        &self,
        name: &str,
        what: &str,
        done: impl Fn(&AlertCallStatus) -> bool,
    ) -> AlertCallStatus {
        let found = super::within(PAGE_WAIT, || async {
            let status = self.status(name).await;
            done(&status).then_some(status)
        })
        .await;
        match found {
            Some(status) => status,
            None => panic!(
                "timed out waiting for {what}; status: {:#?}",
                self.status(name).await
            ),
        }
    }

    pub async fn wait_phase(&self, name: &str, phase: Phase) -> AlertCallStatus {
        self.wait_status(name, &format!("phase {phase:?}"), |s| s.phase == phase)
            .await
    }

    pub async fn wait_ledger(&self, what: &str, done: impl Fn(&Ledger) -> bool) -> Ledger {
        let found = super::within(PAGE_WAIT, || async {
            let ledger = self.sim.ledger();
            done(&ledger).then_some(ledger)
        })
        .await;
        match found {
            Some(ledger) => ledger,
            None => panic!(
                "timed out waiting for {what}; ledger: {:#?}",
                self.sim.ledger()
            ),
        }
    }

    /// Waits until the page can place no more calls: finished, its finalizer released (the
    /// controller saw it settled), and no operator holds a dial of it. What the simulator's
    /// ledger shows then is final, so "nobody is called again" needs no sleep.
    pub async fn wait_settled(&self, name: &str, operators: &[&Running]) -> AlertCall {
        let settled = super::within(PAGE_WAIT, || async {
            let call = self.calls().get_opt(name).await.ok().flatten()?;
            let status = call.status.clone().unwrap_or_default();
            let released = !call
                .metadata
                .finalizers
                .iter()
                .flatten()
                .any(|f| f == alertcall::controllers::alert_call::FINALIZER);
            let ended = status
                .attempts
                .iter()
                .all(|a| a.status.is_final() || a.acknowledged);
            let idle = operators
                .iter()
                .all(|op| op.context.runner.dialing(&self.ns.name, name).is_empty());
            (status.phase.is_terminal() && released && ended && idle).then_some(call)
        })
        .await;
        match settled {
            Some(call) => call,
            None => panic!(
                "{name} never settled; status: {:#?}",
                self.status(name).await
            ),
        }
    }

    pub fn room(&self) -> String {
        format!("{}-oncall", self.ns.name)
    }

    pub async fn finish(self, operators: Vec<Running>) {
        for running in operators {
            running.shutdown().await;
        }
        self.sim.shutdown().await;
        self.ns.delete().await;
    }
}

pub async fn bind(addr: SocketAddr) -> TcpListener {
    // NB: a restarted operator binds the port its predecessor released a moment ago.
    let bound = super::within(Duration::from_secs(5), || async {
        TcpListener::bind(addr).await.ok()
    })
    .await;
    bound.unwrap_or_else(|| panic!("cannot bind {addr}"))
}

pub fn any_port() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// Outbound calls in creation order: (to, call SID, simulated time).
pub fn created(ledger: &Ledger) -> Vec<(String, String, jiff::Timestamp)> {
    ledger
        .entries
        .iter()
        .filter_map(|e| match &e.event {
            Event::CallCreated {
                call_sid,
                to,
                direction,
                ..
            } if direction.starts_with("outbound") => Some((to.clone(), call_sid.clone(), e.at)),
            _ => None,
        })
        .collect()
}

pub fn calls_to(ledger: &Ledger) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for (to, _, _) in created(ledger) {
        *counts.entry(to).or_insert(0) += 1;
    }
    counts
}

pub fn sid_of(ledger: &Ledger, to: &str) -> Vec<String> {
    created(ledger)
        .into_iter()
        .filter(|(t, _, _)| t == to)
        .map(|(_, sid, _)| sid)
        .collect()
}

pub fn final_status(ledger: &Ledger, sid: &str) -> Option<String> {
    ledger.call_statuses(sid).last().cloned()
}

pub fn recipients(list: &[(&str, &str)]) -> serde_json::Value {
    json!(list
        .iter()
        .map(|(name, phone)| json!({"name": name, "phone": phone}))
        .collect::<Vec<_>>())
}

pub fn policy_spec(
    strategy: serde_json::Value,
    people: &[(&str, &str)],
    cps: u32,
) -> serde_json::Value {
    json!({
        "twilio": {"credentialsSecretRef": {"name": "twilio"}, "from": FROM},
        "recipients": recipients(people),
        "strategy": strategy,
        "acknowledgement": {"digits": "1", "gatherTimeoutSeconds": 3},
        "message": {"repeat": 1, "language": "en-US"},
        "limits": {"callsPerSecond": cps, "maxCallsPerHour": 0},
    })
}

pub fn no_answer() -> Recipient {
    Recipient::with_outcome(Outcome::NoAnswer)
}
