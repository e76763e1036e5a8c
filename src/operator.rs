//! The operator assembled: its configuration, the context its controllers share, and starting
//! and stopping it. Every replica watches; only the Lease holder causes side effects (dials,
//! Twilio configuration, AlertCall creation), see [`crate::leader`].
//!
//! Dependencies point one way: `operator` wires `controllers` and `sources` to the `pipeline`
//! (routes and the pager) and to `page` (dialing), which use `routing`, `escalation`, `twilio`
//! and `api`. Nothing below imports this module.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use kube::Client;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::controllers::{alert_call, alert_route, call_policy, callbacks, on_call_schedule};
pub use crate::controllers::{Config, Context};
use crate::http;
use crate::leader::{LeaderError, LeaderTask, Leadership};
use crate::pipeline::routes::{self, RouteSnapshot, RouteStats};
use crate::pipeline::{pager, Shared};
use crate::sources::{alertmanager, kube_events};

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
    /// Held here, not among `tasks`, so a graceful stop can hand the Lease over.
    leader_task: Option<LeaderTask>,
}

/// How long dials already under way get to finish and record their outcome at shutdown.
const DRAIN_LIMIT: Duration = Duration::from_secs(10);
/// How long releasing the Lease may take at shutdown. With [`DRAIN_LIMIT`] and the controllers'
/// own stop, well within the chart's 30 s terminationGracePeriodSeconds.
const RELEASE_LIMIT: Duration = Duration::from_secs(5);
/// How long the watches and controllers get to stop after that, before they are aborted: the
/// whole stop stays within the chart's 30 s terminationGracePeriodSeconds.
const STOP_LIMIT: Duration = Duration::from_secs(10);

impl Running {
    /// Stops as SIGTERM asks: webhooks, watches and controllers stop; the dials under way
    /// finish and record their outcome (bounded); then this replica stops leading and releases
    /// the Lease, so no dial starts after a successor may have taken over.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        self.context.runner.drain(DRAIN_LIMIT).await;
        if let Some(task) = self.leader_task.take() {
            task.step_down(RELEASE_LIMIT).await;
        }
        let tasks = &mut self.tasks;
        let stopped = tokio::time::timeout(STOP_LIMIT, async {
            while tasks.join_next().await.is_some() {}
        })
        .await;
        if stopped.is_err() {
            // NB: every side effect is finished or released by now; what is left only watches.
            tracing::warn!(
                ?STOP_LIMIT,
                "components still running at shutdown were stopped"
            );
            self.tasks.abort_all();
            while self.tasks.join_next().await.is_some() {}
        }
    }

    /// Stops every task at once, as a killed process would: nothing is finished or released.
    pub async fn kill(mut self) {
        drop(self.leader_task.take());
        self.tasks.abort_all();
        self.context.runner.abort_all();
        while self.tasks.join_next().await.is_some() {}
    }

    /// Waits until a task ends (which only happens on shutdown or a fatal error).
    pub async fn wait(&mut self) {
        match self.leader_task.as_mut() {
            Some(leader_task) => {
                tokio::select! {
                    _ = self.tasks.join_next() => {}
                    _ = leader_task.finished() => {}
                }
            }
            None => {
                let _ = self.tasks.join_next().await;
            }
        }
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
    let mut leader_task = None;
    let leader = match &config.leader_election {
        Some(lease) => {
            let (leader, task) = Leadership::elect(client.clone(), lease).await?;
            leader_task = Some(task);
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
        routes::ROUTES,
        pager::PAGES,
        kube_events::EVENTS,
        alert_call::CONTROLLER,
        callbacks::POLICIES,
    ] {
        context.readiness.register(component);
    }
    let shared = Shared {
        client: context.client.clone(),
        namespace: context.config.namespace.clone(),
        leader: context.leader.clone(),
        readiness: context.readiness.clone(),
        metrics: context.metrics.clone(),
    };
    let (publish, routes) = watch::channel(Arc::new(RouteSnapshot::default()));
    let stats = RouteStats::default();
    spawn_until(
        &mut tasks,
        &shutdown,
        routes::maintain_index(shared.clone(), publish),
    );
    spawn_until(
        &mut tasks,
        &shutdown,
        alert_route::write_status(context.clone(), routes.clone(), stats.clone()),
    );
    let mut pager_tasks = JoinSet::new();
    let max_event_age = context.config.max_event_age;
    let pager = pager::spawn(
        shared.clone(),
        max_event_age,
        routes.clone(),
        stats,
        &mut pager_tasks,
    );
    spawn_until(&mut tasks, &shutdown, async move {
        while pager_tasks.join_next().await.is_some() {}
    });
    spawn_until(
        &mut tasks,
        &shutdown,
        kube_events::run(shared, max_event_age, routes.clone(), pager.clone()),
    );

    let (policies, policy_updates) = callbacks::watch_policies(&context);
    let (pages, escalation) =
        alert_call::controller(context.clone(), policies.clone(), routes.clone());
    let router = http::base_router(readiness, metrics)
        .merge(alertmanager::router(
            context.client.clone(),
            routes,
            pager,
            context.metrics.clone(),
        ))
        .merge(callbacks::router(context.clone(), pages, policies.clone()));
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
    tasks.spawn(on_call_schedule::run(context.clone()));
    if context.config.call_policies {
        // NB: the controller reconciles from the stream that keeps the callbacks' cache current.
        tasks.spawn(call_policy::run(context.clone(), policies, policy_updates));
    } else {
        spawn_until(
            &mut tasks,
            &shutdown,
            callbacks::keep_current(policy_updates),
        );
    }
    tracing::info!(%addr, identity = %context.config.identity, "alertcall started");
    Ok(Running {
        addr,
        context,
        tasks,
        stop,
        leader_task,
    })
}

/// Runs `task` until it ends or the operator stops; dropping it stops what it owns.
fn spawn_until(
    tasks: &mut JoinSet<()>,
    shutdown: &watch::Receiver<bool>,
    task: impl Future<Output = ()> + Send + 'static,
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
