//! The HTTPS server: `POST /validate`, `POST /mutate`, `GET /healthz`, `GET /readyz`,
//! `GET /metrics`, all on one port, over rustls; and the same probes and metrics alone for the
//! plain-HTTP operations port ([`ops_router`]).
//!
//! Layers, outside in: TLS (axum-server, certificate reloadable) -> request span -> body limit
//! -> [`Admission::review`] (bounded concurrency, deadline, decision) -> metrics. Bodies that are
//! not AdmissionReviews get a JSON `{"error": "..."}` with 400, or 413 past the limit: without
//! a readable `uid` no AdmissionReview answer can be written.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes, HttpBody as _};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures::StreamExt as _;

use super::decide::Admission;
use super::metrics::Endpoint;
use super::review::ReviewError;
use crate::metrics::{OpsTarget, metrics_response, readiness};
use crate::serve::{Drain, Server, ServerError, TlsSource, bind};
use prometheus_client::registry::Registry;

/// Largest AdmissionReview body read. The API server stores objects of at most ~1.5 MiB (etcd's
/// limit) and caps requests at 3 MiB, so nothing legitimate is larger.
pub const MAX_BODY_BYTES: usize = 3 * 1024 * 1024;

/// An oversized body is read and discarded up to this size before the 413 is sent: a client
/// still sending when the server closes would get a connection reset instead of the answer.
/// Past this, the connection is cut.
const MAX_DRAINED_BYTES: usize = 16 * 1024 * 1024;

/// The routes, over one shared [`Admission`].
pub fn router(admission: Arc<Admission>) -> Router {
    Router::new()
        .route("/validate", post(validate))
        .route("/mutate", post(mutate))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(admission)
}

/// The probe and metrics routes alone, for the plain-HTTP operations port (`--metrics-listen`):
/// kubelet probes and Prometheus present no client certificate, so with `--client-ca` they
/// cannot use the admission port. Served by [`Server`] without TLS.
pub fn ops_router(admission: Arc<Admission>) -> Router {
    crate::metrics::ops_router(admission)
}

impl OpsTarget for Admission {
    fn is_ready(&self) -> bool {
        Admission::is_ready(self)
    }

    fn metrics_registry(&self) -> &Registry {
        self.metrics().registry()
    }
}

async fn validate(State(admission): State<Arc<Admission>>, body: Body) -> Response {
    answer(&admission, body, Endpoint::Validate).await
}

async fn mutate(State(admission): State<Arc<Admission>>, body: Body) -> Response {
    answer(&admission, body, Endpoint::Mutate).await
}

/// The body, at most [`MAX_BODY_BYTES`]; an oversized one is drained (up to
/// [`MAX_DRAINED_BYTES`]) so that the client reads the 413. A body that arrives in one chunk
/// (the usual case) is used as it is; one in several is gathered into a buffer sized once from
/// its `Content-Length`.
async fn read_body(body: Body) -> Result<Bytes, (StatusCode, ReviewError)> {
    let expected = usize::try_from(body.size_hint().lower())
        .unwrap_or(MAX_BODY_BYTES)
        .min(MAX_BODY_BYTES);
    let mut stream = body.into_data_stream();
    let mut first: Option<Bytes> = None;
    let mut collected: Vec<u8> = Vec::new();
    let mut seen = 0usize;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            (
                StatusCode::BAD_REQUEST,
                ReviewError::NotJson(format!("cannot read the body: {e}")),
            )
        })?;
        seen = seen.saturating_add(chunk.len());
        if seen > MAX_BODY_BYTES {
            first = None;
            collected = Vec::new();
            if seen > MAX_DRAINED_BYTES {
                break;
            }
            continue;
        }
        match first.take() {
            None if collected.is_empty() => first = Some(chunk),
            None => collected.extend_from_slice(&chunk),
            Some(head) => {
                collected.reserve_exact(expected.max(seen));
                collected.extend_from_slice(&head);
                collected.extend_from_slice(&chunk);
            }
        }
    }
    if seen > MAX_BODY_BYTES {
        return Err((
            StatusCode::PAYLOAD_TOO_LARGE,
            ReviewError::TooLarge {
                limit: MAX_BODY_BYTES,
            },
        ));
    }
    Ok(first.unwrap_or_else(|| Bytes::from(collected)))
}

async fn answer(admission: &Admission, body: Body, endpoint: Endpoint) -> Response {
    let body = match read_body(body).await {
        Ok(body) => body,
        Err((status, error)) => return error_response(status, &error.to_string()),
    };
    // The span of the admission's work is `Admission::review`'s: the common case runs without one.
    match admission.review(&body, endpoint).await {
        Ok(answer) => {
            tracing::debug!(%endpoint, uid = answer.uid, allowed = answer.allowed, "answered");
            match answer.to_json() {
                Ok(json) => ([(header::CONTENT_TYPE, "application/json")], json).into_response(),
                Err(e) => error_response(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    &format!("cannot encode the response: {e}"),
                ),
            }
        }
        Err(e) => {
            tracing::info!(%endpoint, error = %e, "bad admission request");
            error_response(StatusCode::BAD_REQUEST, &e.to_string())
        }
    }
}

fn error_response(status: StatusCode, message: &str) -> Response {
    let body = serde_json::json!({ "error": message }).to_string();
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

async fn healthz() -> &'static str {
    crate::metrics::healthz().await
}

async fn readyz(State(admission): State<Arc<Admission>>) -> Response {
    readiness(admission.is_ready())
}

async fn metrics(State(admission): State<Arc<Admission>>, headers: HeaderMap) -> Response {
    metrics_response(admission.metrics().registry(), &headers)
}

/// A running webhook server: the admission routes over one [`Admission`], served by the shared
/// edge ([`Server`]).
pub struct WebhookServer {
    server: Server,
    admission: Arc<Admission>,
}

impl WebhookServer {
    /// Binds `listen` (port 0 picks a free one), sets up TLS and starts serving in a task.
    pub async fn start(
        listen: SocketAddr,
        tls: &TlsSource,
        admission: Admission,
    ) -> Result<Self, ServerError> {
        Self::start_on(bind(listen)?, tls, Arc::new(admission), &Drain::new())
    }

    /// Serves on a bound listener, answering 503 on `/readyz` once `drain` is draining.
    pub fn start_on(
        listener: std::net::TcpListener,
        tls: &TlsSource,
        admission: Arc<Admission>,
        drain: &Drain,
    ) -> Result<Self, ServerError> {
        Self::start_on_threads(listener, tls, admission, drain, 0)
    }

    /// [`WebhookServer::start_on`], served by `threads` threads of their own, one
    /// single-threaded runtime each (`Server::start_per_core`); 0 serves on the calling runtime.
    pub fn start_on_threads(
        listener: std::net::TcpListener,
        tls: &TlsSource,
        admission: Arc<Admission>,
        drain: &Drain,
        threads: usize,
    ) -> Result<Self, ServerError> {
        let app = router(Arc::clone(&admission));
        let expiry = admission.metrics().common().certificate_expiry().clone();
        let server = if threads == 0 {
            Server::start_observed("webhook", listener, app, Some(tls), drain, &expiry)?
        } else {
            Server::start_per_core("webhook", listener, app, tls, drain, &expiry, threads)?
        };
        Ok(WebhookServer { server, admission })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// The shared decision state (metrics, caches).
    pub fn admission(&self) -> &Arc<Admission> {
        &self.admission
    }

    /// The underlying server (shutdown, death detection).
    pub fn into_server(self) -> Server {
        self.server
    }
}
