//! What every controller shares: the operator's configuration and its clients, caches and
//! pacer. Built by [`crate::operator`], handed to each controller as `Arc<Context>`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use kube::runtime::events::{Recorder, Reporter};
use kube::Client;
use tokio::sync::watch;
use url::Url;

use super::alert_call::OwnWrites;
use super::Accounts;
use crate::http::Readiness;
use crate::leader::{Leadership, LeaseConfig};
use crate::metrics::Metrics;
use crate::page::hooks::Hooks;
use crate::page::ledger::Ledger;
use crate::page::runner::Runner;
use crate::twilio::TwilioEndpoints;

/// What `alertcall run` was told.
#[derive(Clone, Debug)]
pub struct Config {
    /// Watch one namespace only; `None` watches all.
    pub namespace: Option<String>,
    /// The URL Twilio reaches this operator at, for signed status callbacks. Without it,
    /// status comes from polling only.
    pub public_url: Option<Url>,
    pub twilio: TwilioEndpoints,
    /// Names the Twilio Serverless service shared by this install's policies.
    pub instance_name: String,
    /// Events older than this at arrival never page.
    pub max_event_age: Duration,
    pub listen: SocketAddr,
    /// `None`: this replica always leads (one replica, tests, the demo).
    pub leader_election: Option<LeaseConfig>,
    /// Identity of this replica in the Lease and on Events.
    pub identity: String,
    /// How often each CallPolicy is looked at again without a change, to correct drift made
    /// in Twilio by hand (and to notice a Secret or number that appeared).
    pub policy_resync: Duration,
    /// Run the CallPolicy controller (publishes TwiML to Twilio, sets the bridge number).
    pub call_policies: bool,
    /// How often a page with live calls is reconciled (and its calls polled at Twilio).
    pub poll_interval: Duration,
    #[doc(hidden)]
    pub hooks: Hooks,
}

impl Config {
    /// Defaults for a single in-process replica; tests and the demo adjust fields. Not the
    /// production values: `alertcall run` sets every field from its flags
    /// (`crate::cli::run::defaults`).
    pub fn local(identity: &str) -> Self {
        Self {
            namespace: None,
            public_url: None,
            // NB: a local operator reaches no real Twilio unless pointed somewhere: the discard
            // port on loopback refuses every connection.
            twilio: TwilioEndpoints::unreachable(),
            instance_name: "alertcall".to_string(),
            max_event_age: Duration::from_secs(300),
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            leader_election: None,
            identity: identity.to_string(),
            policy_resync: Duration::from_secs(300),
            // NB: off here: an in-process operator started without a simulator must not reach
            // for real Twilio over the policies other tests left on a shared control plane.
            call_policies: false,
            poll_interval: Duration::from_secs(3),
            hooks: Hooks::default(),
        }
    }
}

/// What every controller and source shares.
pub struct Context {
    pub client: Client,
    pub config: Config,
    pub metrics: Arc<Metrics>,
    pub recorder: Recorder,
    pub leader: Leadership,
    pub accounts: Accounts,
    pub readiness: Readiness,
    /// Flips to true when the operator is asked to stop.
    pub shutdown: watch::Receiver<bool>,
    /// Places the calls, paced per Twilio account.
    pub runner: Arc<Runner>,
    /// Keypresses the acknowledgement function recorded, read once per poll interval and account.
    pub ledger: Ledger,
    /// The pages' status as this process last wrote them, until the watch delivers them.
    pub own_writes: OwnWrites,
    #[doc(hidden)]
    pub hooks: Hooks,
}

impl Context {
    /// The context of one operator process; `start` builds it, and unit tests of the
    /// controllers build one on a client that reaches nothing.
    pub fn new(
        client: Client,
        config: Config,
        leader: Leadership,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        let metrics = Arc::new(Metrics::new());
        let recorder = Recorder::new(
            client.clone(),
            Reporter {
                controller: "alertcall".into(),
                instance: Some(config.identity.clone()),
            },
        );
        Self {
            accounts: Accounts::new(client.clone(), config.twilio.clone()),
            runner: Arc::new(Runner::new(metrics.clone())),
            ledger: Ledger::new(config.poll_interval),
            own_writes: OwnWrites::default(),
            hooks: config.hooks.clone(),
            client,
            config,
            metrics,
            recorder,
            leader,
            readiness: Readiness::default(),
            shutdown,
        }
    }
}
