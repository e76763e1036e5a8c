//! The operator's HTTP endpoints: health, readiness, metrics, plus the routes each source or
//! controller contributes (Twilio status callbacks, Alertmanager webhooks).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;

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

/// Serves `router` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

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
