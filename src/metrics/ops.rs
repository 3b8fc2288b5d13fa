//! The operations port (`--metrics-listen`, plain HTTP): `GET /healthz`, `GET /readyz` and
//! `GET /metrics` of a server, without its business routes. Kubelet probes and Prometheus
//! present no client certificate, so with `--client-ca` they cannot use the main port; and a
//! ServiceMonitor scraping plain HTTP needs no CA bundle.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::registry::Registry;

use super::exposition::metrics_response;

/// A server whose readiness and metrics the operations port shows.
pub trait OpsTarget: Send + Sync + 'static {
    /// Whether `/readyz` answers 200.
    fn is_ready(&self) -> bool;
    /// Every metric the server exports.
    fn metrics_registry(&self) -> &Registry;
}

/// `/healthz`, `/readyz` and `/metrics` of `target`.
pub fn ops_router(target: Arc<dyn OpsTarget>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(target)
}

/// `GET /healthz`: the process answers.
pub async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(target): State<Arc<dyn OpsTarget>>) -> Response {
    readiness(target.is_ready())
}

/// The `/readyz` answer for a readiness.
pub fn readiness(ready: bool) -> Response {
    if ready {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "policies not loaded yet\n").into_response()
    }
}

async fn metrics(State(target): State<Arc<dyn OpsTarget>>, headers: HeaderMap) -> Response {
    metrics_response(target.metrics_registry(), &headers)
}
