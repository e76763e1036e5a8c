//! The operator: shared context, and the controllers and sources it runs.
//!
//! Every replica watches; only the Lease holder causes side effects (dials, Twilio
//! configuration, AlertCall creation), see [`crate::leader`].

pub mod accounts;
pub mod alert_call;
pub mod alert_route;
pub mod call_policy;
pub mod callbacks;
#[doc(hidden)]
pub mod hooks;
pub mod pages;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kube::api::Api;
use kube::core::DeserializeGuard;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{self, reflector, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::Client;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use url::Url;

use crate::api::CallPolicy;
use crate::http::{self, Readiness};
use crate::leader::{LeaderError, Leadership, LeaseConfig};
use crate::metrics::Metrics;
use crate::runner::Runner;
pub use accounts::{Account, AccountError, Accounts, TwilioEndpoints};
pub use hooks::{HookPoint, Hooks};

/// Field manager of every server-side apply the operator makes.
pub const FIELD_MANAGER: &str = "alertcall";

/// Readiness component of the CallPolicy cache the callback endpoints verify requests with.
pub const POLICIES: &str = "callpolicies";

/// Every CallPolicy in scope, from a watch: what Twilio's requests are checked against without
/// an API call.
pub type Policies = Store<DeserializeGuard<CallPolicy>>;

/// Watches CallPolicies into a cache; the task runs until its stream ends.
fn watch_policies(ctx: &Context) -> (Policies, impl std::future::Future<Output = ()>) {
    let api: Api<DeserializeGuard<CallPolicy>> = match &ctx.config.namespace {
        Some(ns) => Api::namespaced(ctx.client.clone(), ns),
        None => Api::all(ctx.client.clone()),
    };
    let (reader, writer) = reflector::store();
    let readiness = ctx.readiness.clone();
    let task = async move {
        let stream = reflector(writer, watcher(api, watcher::Config::default())).default_backoff();
        futures::pin_mut!(stream);
        while let Some(event) = stream.next().await {
            match event {
                // NB: the initial list is complete (even when empty): the cache answers now.
                Ok(watcher::Event::InitDone) => readiness.set_ready(POLICIES),
                Ok(_) => {}
                Err(error) => tracing::debug!(%error, "watching CallPolicies"),
            }
        }
    };
    (reader, task)
}

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

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot reach the Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error(transparent)]
    Leader(#[from] LeaderError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// A running operator: its HTTP address, and a way to stop it (gracefully, or abruptly to
/// simulate a crash in tests).
pub struct Running {
    pub addr: SocketAddr,
    pub context: Arc<Context>,
    tasks: JoinSet<()>,
    stop: watch::Sender<bool>,
}

impl Running {
    /// Asks every task to stop and waits for them.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        self.context.runner.abort_all();
        while self.tasks.join_next().await.is_some() {}
    }

    /// Stops every task at once, as a killed process would.
    pub async fn kill(mut self) {
        self.tasks.abort_all();
        self.context.runner.abort_all();
        while self.tasks.join_next().await.is_some() {}
    }

    /// Waits until a task ends (which only happens on shutdown or a fatal error).
    pub async fn wait(&mut self) {
        let _ = self.tasks.join_next().await;
    }
}

/// Starts the operator on `client`: leader election, the HTTP endpoints, the sources and the
/// controllers.
pub async fn start(client: Client, config: Config) -> Result<Running, RunError> {
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| RunError::Listen {
            addr: config.listen,
            source,
        })?;
    start_with_listener(client, config, listener).await
}

/// [`start`] on a listener bound by the caller, so a test can know the operator's address (its
/// public URL) before it starts.
pub async fn start_with_listener(
    client: Client,
    config: Config,
    listener: TcpListener,
) -> Result<Running, RunError> {
    let (stop, shutdown) = watch::channel(false);
    let mut tasks = JoinSet::new();
    let leader = match &config.leader_election {
        Some(lease) => {
            let (leader, task) = Leadership::elect(client.clone(), lease).await?;
            let mut stopping = shutdown.clone();
            // Not released on shutdown: the successor takes over when the Lease expires.
            tasks.spawn(async move {
                let mut task = task;
                tokio::select! {
                    _ = task.finished() => {}
                    _ = stopping.wait_for(|stop| *stop) => {}
                }
            });
            leader
        }
        None => Leadership::always(),
    };
    let addr = listener.local_addr().map_err(|source| RunError::Listen {
        addr: config.listen,
        source,
    })?;
    let context = Arc::new(Context::new(client, config, leader, shutdown.clone()));
    let (readiness, metrics) = (context.readiness.clone(), context.metrics.clone());

    // NB: registered before anything is served, so `/readyz` never answers 200 before the
    // route, AlertCall and Event caches and the escalation controller's store are loaded.
    for component in [
        "alertroutes",
        "alertcalls",
        "events",
        alert_call::CONTROLLER,
        POLICIES,
    ] {
        context.readiness.register(component);
    }
    let (publish, routes) = watch::channel(Arc::new(alert_route::RouteSnapshot::default()));
    let stats = alert_route::RouteStats::default();
    spawn_until(
        &mut tasks,
        &shutdown,
        alert_route::maintain_index(context.clone(), publish),
    );
    spawn_until(
        &mut tasks,
        &shutdown,
        alert_route::write_status(context.clone(), routes.clone(), stats.clone()),
    );
    let mut pager_tasks = JoinSet::new();
    let pager = pages::spawn(context.clone(), routes.clone(), stats, &mut pager_tasks);
    spawn_until(&mut tasks, &shutdown, async move {
        while pager_tasks.join_next().await.is_some() {}
    });
    spawn_until(
        &mut tasks,
        &shutdown,
        crate::sources::kube_events::run(context.clone(), routes.clone(), pager.clone()),
    );

    let (policies, watching_policies) = watch_policies(&context);
    spawn_until(&mut tasks, &shutdown, watching_policies);
    let (pages, escalation) = alert_call::controller(context.clone());
    let router = http::base_router(readiness, metrics)
        .merge(crate::sources::alertmanager::router(
            context.clone(),
            routes,
            pager,
        ))
        .merge(callbacks::router(context.clone(), pages, policies));
    tasks.spawn(escalation);
    let mut http_shutdown = shutdown.clone();
    tasks.spawn(async move {
        let stopped = async move {
            let _ = http_shutdown.wait_for(|stop| *stop).await;
        };
        if let Err(error) = http::serve(listener, router, stopped).await {
            tracing::error!(%error, "HTTP server stopped");
        }
    });
    if context.config.call_policies {
        tasks.spawn(call_policy::run(context.clone()));
    }
    tracing::info!(%addr, identity = %context.config.identity, "alertcall started");
    Ok(Running {
        addr,
        context,
        tasks,
        stop,
    })
}

/// Runs `task` until it ends or the operator stops; dropping it stops what it owns.
fn spawn_until(
    tasks: &mut JoinSet<()>,
    shutdown: &watch::Receiver<bool>,
    task: impl std::future::Future<Output = ()> + Send + 'static,
) {
    let mut stopping = shutdown.clone();
    tasks.spawn(async move {
        tokio::select! {
            _ = task => {}
            _ = stopping.wait_for(|stop| *stop) => {}
        }
    });
}

/// `alertcall run`: the operator until SIGTERM or Ctrl-C.
pub async fn run(config: Config) -> Result<(), RunError> {
    let client = Client::try_default().await?;
    let mut running = start(client, config).await?;
    tokio::select! {
        _ = shutdown_signal() => {
            tracing::info!("stopping");
            running.shutdown().await;
        }
        _ = running.wait() => {
            tracing::error!("a component stopped; exiting");
        }
    }
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
