//! The operator's HTTP endpoints: health, readiness, metrics, plus the routes each source or
//! controller contributes (Twilio status callbacks, Alertmanager webhooks).

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tower::ServiceExt as _;

use crate::metrics::Metrics;

/// Readiness by component: `/readyz` answers 200 only once every registered component (each
/// watcher's initial list, leader election joined) said it is ready.
#[derive(Clone, Default)]
pub struct Readiness {
    components: Arc<Mutex<BTreeMap<String, bool>>>,
}

impl Readiness {
    /// Registers a component that is not ready yet.
    pub fn register(&self, component: &str) {
        if let Ok(mut components) = self.components.lock() {
            components.entry(component.to_string()).or_insert(false);
        }
    }

    pub fn set_ready(&self, component: &str) {
        if let Ok(mut components) = self.components.lock() {
            components.insert(component.to_string(), true);
        }
    }

    /// Components not ready yet; empty when ready.
    pub fn pending(&self) -> Vec<String> {
        match self.components.lock() {
            Ok(components) => components
                .iter()
                .filter(|(_, ready)| !**ready)
                .map(|(name, _)| name.clone())
                .collect(),
            Err(_) => vec!["readiness state poisoned".to_string()],
        }
    }
}

#[derive(Clone)]
struct Health {
    readiness: Readiness,
    metrics: Arc<Metrics>,
}

/// Health, readiness and metrics; merge the components' routers into it.
pub fn base_router(readiness: Readiness, metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .with_state(Health { readiness, metrics })
}

async fn readyz(State(health): State<Health>) -> impl IntoResponse {
    let pending = health.readiness.pending();
    if pending.is_empty() {
        (StatusCode::OK, "ready".to_string())
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("waiting for: {}", pending.join(", ")),
        )
    }
}

async fn metrics_text(State(health): State<Health>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        health.metrics.encode(),
    )
}

/// A client has this long to send a request's headers, counted from when the server waits for
/// them: slow-header clients cannot hold a connection. Alertmanager, Twilio and probes send
/// theirs in one packet.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// A connection with no request in flight and no bytes moving is closed after this, so abandoned
/// connections do not pile up to [`MAX_CONNECTIONS`]. NB: an HTTP/1 connection waiting for its
/// next request is under [`HEADER_READ_TIMEOUT`] already, which is shorter; this bounds HTTP/2
/// connections, and clients reconnect when they need to.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// A request (its body read, its handler run) gets this long before it is answered 408. Every
/// handler answers in milliseconds to seconds; a body trickled byte by byte does not hold a
/// connection forever.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Connections served at once; further ones wait in the listen backlog until one closes, so a
/// flood costs bounded memory and file descriptors while probes keep being answered eventually.
pub const MAX_CONNECTIONS: usize = 1024;
/// Pause after a failed accept (out of file descriptors): retrying at once would spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// The bounds [`serve`] puts on its clients.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServerLimits {
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub request_timeout: Duration,
    pub max_connections: usize,
}

impl Default for ServerLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: HEADER_READ_TIMEOUT,
            idle_timeout: IDLE_TIMEOUT,
            request_timeout: REQUEST_TIMEOUT,
            max_connections: MAX_CONNECTIONS,
        }
    }
}

/// Serves `router` until `shutdown` resolves, with the default [`ServerLimits`]; then lets the
/// requests in flight finish and closes every connection before returning.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with(listener, router, shutdown, ServerLimits::default()).await
}

/// [`serve`] with explicit limits.
pub async fn serve_with(
    listener: TcpListener,
    router: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    limits: ServerLimits,
) -> std::io::Result<()> {
    let max = limits.max_connections.clamp(1, Semaphore::MAX_PERMITS);
    let slots = Arc::new(Semaphore::new(max));
    let (stop, stopped) = watch::channel(false);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        // NB: a slot is taken before accepting, so connections over the cap wait in the kernel's
        // backlog instead of costing a task each.
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot,
            () = &mut shutdown => break,
        };
        let Ok(slot) = slot else { break };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    tracing::warn!(%error, "accepting an HTTP connection");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        tokio::spawn(connection(
            stream,
            router.clone(),
            limits,
            stopped.clone(),
            slot,
        ));
    }
    drop(listener);
    let _ = stop.send(true);
    // Every connection holds a slot until it is closed: having them all back means drained.
    let _drained = slots.acquire_many(max as u32).await;
    Ok(())
}

/// What the idle watchdog of a connection looks at.
#[derive(Default)]
struct Activity {
    /// Milliseconds after the connection started when bytes last moved.
    last_io_ms: AtomicU64,
    in_flight: AtomicUsize,
    requests: AtomicUsize,
    /// Signalled when a request starts or ends: the idle deadline may move earlier.
    changed: Notify,
}

impl Activity {
    /// When the connection counts as idle, unless bytes move or a request starts before; `None`
    /// while a request is in flight.
    fn idle_deadline(&self, started: Instant, limits: ServerLimits) -> Option<Instant> {
        if self.in_flight.load(Ordering::SeqCst) > 0 {
            return None;
        }
        // NB: before the first request hyper's header timer is not running yet (the protocol is
        // still being detected), so silence there is bounded like a slow header.
        let limit = if self.requests.load(Ordering::SeqCst) == 0 {
            limits.header_read_timeout
        } else {
            limits.idle_timeout
        };
        let last = Duration::from_millis(self.last_io_ms.load(Ordering::SeqCst));
        Some(started + last + limit)
    }
}

/// Counts a request in flight until dropped.
struct InFlight(Arc<Activity>);

impl InFlight {
    fn enter(activity: &Arc<Activity>) -> Self {
        activity.in_flight.fetch_add(1, Ordering::SeqCst);
        activity.requests.fetch_add(1, Ordering::SeqCst);
        activity.changed.notify_one();
        Self(activity.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
        self.0.changed.notify_one();
    }
}

/// A socket that records when bytes last moved.
struct Tracked<S> {
    io: S,
    started: Instant,
    activity: Arc<Activity>,
}

impl<S> Tracked<S> {
    fn touch(&self) {
        let ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.activity.last_io_ms.store(ms, Ordering::SeqCst);
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Tracked<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.io).poll_read(cx, buf);
        if matches!(result, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.touch();
        }
        result
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tracked<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let result = Pin::new(&mut self.io).poll_write(cx, buf);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        result
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let result = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

fn timed_out() -> Response {
    (StatusCode::REQUEST_TIMEOUT, "request timed out\n").into_response()
}

/// Serves one connection until it ends, idles out, or the server stops; `_slot` frees its place
/// under [`ServerLimits::max_connections`] when dropped.
async fn connection(
    stream: TcpStream,
    router: Router,
    limits: ServerLimits,
    mut stopped: watch::Receiver<bool>,
    _slot: OwnedSemaphorePermit,
) {
    let started = Instant::now();
    let activity = Arc::new(Activity::default());
    let io = TokioIo::new(Tracked {
        io: stream,
        started,
        activity: activity.clone(),
    });
    let requests = activity.clone();
    let service = service_fn(move |request: Request<Incoming>| {
        let router = router.clone();
        let in_flight = InFlight::enter(&requests);
        async move {
            let _in_flight = in_flight;
            let answer = tokio::time::timeout(
                limits.request_timeout,
                router.oneshot(request.map(Body::new)),
            )
            .await;
            Ok::<_, Infallible>(match answer {
                Ok(Ok(response)) => response,
                Ok(Err(never)) => match never {},
                Err(_) => timed_out(),
            })
        }
    });
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    let conn = builder.serve_connection(io, service);
    let mut conn = std::pin::pin!(conn);
    let mut stopping = false;
    loop {
        let check = async {
            match activity.idle_deadline(started, limits) {
                Some(deadline) => tokio::time::sleep_until(deadline).await,
                // A request is in flight: its own timeout bounds it; look again later.
                None => tokio::time::sleep(limits.idle_timeout).await,
            }
        };
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(error) = result {
                    tracing::debug!(%error, "HTTP connection ended");
                }
                return;
            }
            _ = stopped.changed(), if !stopping => {
                stopping = true;
                conn.as_mut().graceful_shutdown();
            }
            () = activity.changed.notified() => {}
            () = check => {
                let idle_out = activity.idle_deadline(started, limits);
                if idle_out.is_some_and(|deadline| deadline <= Instant::now()) {
                    tracing::debug!("closing an idle HTTP connection");
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Generous bound on what takes at most the server's own timeouts.
    const DEADLINE: Duration = Duration::from_secs(60);

    struct Server {
        addr: std::net::SocketAddr,
        stop: Option<tokio::sync::oneshot::Sender<()>>,
        done: tokio::task::JoinHandle<std::io::Result<()>>,
    }

    async fn start(router: Router, limits: ServerLimits) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("bind: {e}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("addr: {e}"));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let done = tokio::spawn(serve_with(
            listener,
            router,
            async move {
                let _ = stopped.await;
            },
            limits,
        ));
        Server {
            addr,
            stop: Some(stop),
            done,
        }
    }

    fn health() -> Router {
        Router::new().route("/healthz", get(|| async { "ok" }))
    }

    async fn healthz(addr: std::net::SocketAddr) -> (u16, String) {
        let response = reqwest::get(format!("http://{addr}/healthz"))
            .await
            .unwrap_or_else(|e| panic!("GET /healthz: {e}"));
        let status = response.status().as_u16();
        (status, response.text().await.unwrap_or_default())
    }

    /// Reads until the server closes the connection; what it sent, if anything.
    async fn until_closed(stream: &mut TcpStream) -> String {
        let mut seen = Vec::new();
        let closed = tokio::time::timeout(DEADLINE, async {
            let mut buf = [0u8; 1024];
            loop {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => seen.extend_from_slice(&buf[..n]),
                }
            }
        })
        .await;
        assert!(closed.is_ok(), "still open after {DEADLINE:?}");
        String::from_utf8_lossy(&seen).into_owned()
    }

    async fn connect(addr: std::net::SocketAddr) -> TcpStream {
        TcpStream::connect(addr)
            .await
            .unwrap_or_else(|e| panic!("connect: {e}"))
    }

    #[tokio::test]
    async fn a_silent_connection_is_closed_and_requests_still_work() {
        let server = start(health(), ServerLimits::default()).await;
        let mut silent = connect(server.addr).await;
        assert_eq!(healthz(server.addr).await, (200, "ok".to_string()));
        until_closed(&mut silent).await;
        assert_eq!(healthz(server.addr).await, (200, "ok".to_string()));
    }

    #[tokio::test]
    async fn a_stalled_request_line_is_closed() {
        let server = start(health(), ServerLimits::default()).await;
        let mut stalled = connect(server.addr).await;
        stalled
            .write_all(b"GET /heal")
            .await
            .unwrap_or_else(|e| panic!("write: {e}"));
        let answer = until_closed(&mut stalled).await;
        assert!(!answer.contains("200 OK"), "{answer}");
    }

    #[tokio::test]
    async fn a_kept_alive_connection_idles_out() {
        // NB: hyper's header timer would close it too; made long so only idling can.
        let limits = ServerLimits {
            idle_timeout: Duration::from_millis(300),
            header_read_timeout: Duration::from_secs(600),
            ..ServerLimits::default()
        };
        let server = start(health(), limits).await;
        let mut kept = connect(server.addr).await;
        kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap_or_else(|e| panic!("write: {e}"));
        let answer = until_closed(&mut kept).await;
        assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
    }

    #[tokio::test]
    async fn a_request_that_takes_too_long_is_answered_408() {
        let router = health().route("/stuck", get(std::future::pending::<String>));
        let limits = ServerLimits {
            request_timeout: Duration::from_millis(200),
            ..ServerLimits::default()
        };
        let server = start(router, limits).await;
        let response = reqwest::get(format!("http://{}/stuck", server.addr))
            .await
            .unwrap_or_else(|e| panic!("GET /stuck: {e}"));
        assert_eq!(response.status(), StatusCode::REQUEST_TIMEOUT);
    }

    #[tokio::test]
    async fn connections_over_the_cap_wait_for_a_free_slot() {
        let limits = ServerLimits {
            max_connections: 2,
            header_read_timeout: Duration::from_secs(600),
            ..ServerLimits::default()
        };
        let server = start(health(), limits).await;
        let first = connect(server.addr).await;
        let _second = connect(server.addr).await;
        let addr = server.addr;
        // Accepted in order: this one waits until one of the two above goes away.
        let third = tokio::spawn(async move { healthz(addr).await });
        drop(first);
        let answer = tokio::time::timeout(DEADLINE, third).await;
        assert!(
            matches!(&answer, Ok(Ok((200, body))) if body == "ok"),
            "{answer:?}"
        );
        assert_eq!(healthz(server.addr).await.0, 200);
    }

    #[tokio::test]
    async fn shutdown_closes_connections_and_returns() {
        let mut server = start(health(), ServerLimits::default()).await;
        let mut silent = connect(server.addr).await;
        let mut kept = connect(server.addr).await;
        kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap_or_else(|e| panic!("write: {e}"));
        let mut buf = [0u8; 256];
        let n = kept.read(&mut buf).await.unwrap_or(0);
        assert!(buf[..n].starts_with(b"HTTP/1.1 200 OK"));
        if let Some(stop) = server.stop.take() {
            let _ = stop.send(());
        }
        let done = tokio::time::timeout(DEADLINE, &mut server.done).await;
        assert!(matches!(done, Ok(Ok(Ok(())))), "{done:?}");
        until_closed(&mut silent).await;
        until_closed(&mut kept).await;
    }

    #[test]
    fn readiness_waits_for_every_component() {
        let readiness = Readiness::default();
        assert!(readiness.pending().is_empty());
        readiness.register("events");
        readiness.register("alertcalls");
        readiness.set_ready("events");
        assert_eq!(readiness.pending(), vec!["alertcalls".to_string()]);
        readiness.set_ready("alertcalls");
        assert!(readiness.pending().is_empty());
    }
}
