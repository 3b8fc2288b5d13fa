//! The HTTPS server: `POST /validate`, `POST /mutate`, `GET /healthz`, `GET /readyz`,
//! `GET /metrics`, all on one port, over rustls.
//!
//! Layers, outside in: TLS (axum-server, certificate reloadable) -> request span -> body limit
//! -> [`Admission::review`] (bounded concurrency, deadline, decision) -> metrics. Bodies that are
//! not AdmissionReviews get a JSON `{"error": "..."}` with 400, or 413 past the limit: without
//! a readable `uid` no AdmissionReview answer can be written.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum_server::Handle;
use futures::StreamExt as _;
use tokio::task::JoinHandle;
use tracing::Instrument as _;

use super::decide::Admission;
use super::metrics::Endpoint;
use super::review::ReviewError;
use super::tls::{Tls, TlsError, TlsSource};

/// Largest AdmissionReview body read. The API server stores objects of at most ~1.5 MiB (etcd's
/// limit) and caps requests at 3 MiB, so nothing legitimate is larger.
pub const MAX_BODY_BYTES: usize = 3 * 1024 * 1024;

/// An oversized body is read and discarded up to this size before the 413 is sent: a client
/// still sending when the server closes would get a connection reset instead of the answer.
/// Past this, the connection is cut.
const MAX_DRAINED_BYTES: usize = 16 * 1024 * 1024;

/// Why the server could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    /// TLS could not be set up.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The server stopped with an I/O error.
    #[error("webhook server failed: {0}")]
    Serve(std::io::Error),
    /// The server task ended abnormally.
    #[error("webhook server task failed: {0}")]
    Task(String),
}

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

/// The probe and metrics routes alone, for the plain-HTTP operations port (`--ops-listen`):
/// kubelet probes and Prometheus present no client certificate, so with `--client-ca` they
/// cannot use the admission port.
pub fn ops_router(admission: Arc<Admission>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(admission)
}

/// Serves [`ops_router`] over plain HTTP on `listen` until the task is dropped or aborted.
pub async fn serve_ops(
    listen: SocketAddr,
    admission: Arc<Admission>,
) -> Result<(SocketAddr, JoinHandle<std::io::Result<()>>), ServerError> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|source| ServerError::Bind {
            addr: listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| ServerError::Bind {
        addr: listen,
        source,
    })?;
    let app = ops_router(admission);
    let task = tokio::spawn(async move { axum::serve(listener, app).await });
    tracing::info!(%addr, "probes and metrics listening (HTTP)");
    Ok((addr, task))
}

async fn validate(State(admission): State<Arc<Admission>>, body: Body) -> Response {
    answer(&admission, body, Endpoint::Validate).await
}

async fn mutate(State(admission): State<Arc<Admission>>, body: Body) -> Response {
    answer(&admission, body, Endpoint::Mutate).await
}

/// The body, at most [`MAX_BODY_BYTES`]; an oversized one is drained (up to
/// [`MAX_DRAINED_BYTES`]) so that the client reads the 413.
async fn read_body(body: Body) -> Result<Bytes, (StatusCode, ReviewError)> {
    let mut stream = body.into_data_stream();
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
        if seen <= MAX_BODY_BYTES {
            collected.extend_from_slice(&chunk);
        } else if seen > MAX_DRAINED_BYTES {
            break;
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
    Ok(Bytes::from(collected))
}

async fn answer(admission: &Admission, body: Body, endpoint: Endpoint) -> Response {
    let body = match read_body(body).await {
        Ok(body) => body,
        Err((status, error)) => return error_response(status, &error.to_string()),
    };
    let span = tracing::info_span!("admission", endpoint = ?endpoint, uid = tracing::field::Empty);
    let result = admission
        .review(&body, endpoint)
        .instrument(span.clone())
        .await;
    match result {
        Ok(answer) => {
            span.record("uid", answer.uid.as_str());
            tracing::debug!(parent: &span, allowed = answer.allowed, "answered");
            match answer.to_json() {
                Ok(json) => ([(header::CONTENT_TYPE, "application/json")], json).into_response(),
                Err(e) => error_response(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    &format!("cannot encode the response: {e}"),
                ),
            }
        }
        Err(e) => {
            tracing::info!(parent: &span, error = %e, "bad admission request");
            error_response(StatusCode::BAD_REQUEST, &e.to_string())
        }
    }
}

fn error_response(status: StatusCode, message: &str) -> Response {
    let body = serde_json::json!({ "error": message }).to_string();
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(admission): State<Arc<Admission>>) -> Response {
    if admission.is_ready() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "policies not loaded yet\n").into_response()
    }
}

async fn metrics(State(admission): State<Arc<Admission>>) -> Response {
    match admission.metrics().encode() {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(e) => error_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("cannot encode metrics: {e}"),
        ),
    }
}

/// A running webhook server.
pub struct WebhookServer {
    addr: SocketAddr,
    handle: Handle<SocketAddr>,
    task: JoinHandle<std::io::Result<()>>,
    admission: Arc<Admission>,
}

impl WebhookServer {
    /// Binds `listen` (port 0 picks a free one), sets up TLS and starts serving in a task.
    pub async fn start(
        listen: SocketAddr,
        tls: &TlsSource,
        admission: Admission,
    ) -> Result<Self, ServerError> {
        let tls = Tls::start(tls)?;
        let listener = std::net::TcpListener::bind(listen).map_err(|source| ServerError::Bind {
            addr: listen,
            source,
        })?;
        let addr = listener.local_addr().map_err(|source| ServerError::Bind {
            addr: listen,
            source,
        })?;
        let admission = Arc::new(admission);
        let app = router(Arc::clone(&admission));
        let handle = Handle::new();
        // TCP_NODELAY: answers are small and latency-bound; without it, Nagle's algorithm holds
        // the last segment of a response until the client's delayed ACK.
        let acceptor = axum_server::tls_rustls::RustlsAcceptor::new(tls.config)
            .acceptor(axum_server::accept::NoDelayAcceptor::new());
        let server = axum_server::from_tcp(listener)
            .map_err(|source| ServerError::Bind { addr, source })?
            .acceptor(acceptor)
            .handle(handle.clone());
        let task = tokio::spawn(server.serve(app.into_make_service()));
        tracing::info!(%addr, "webhook listening (HTTPS)");
        Ok(WebhookServer {
            addr,
            handle,
            task,
            admission,
        })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The shared decision state (metrics, caches).
    pub fn admission(&self) -> &Arc<Admission> {
        &self.admission
    }

    /// Stops accepting; in-flight requests get `grace` to finish.
    pub fn shutdown(&self, grace: std::time::Duration) {
        self.handle.graceful_shutdown(Some(grace));
    }

    /// Waits until the server stops.
    pub async fn wait(self) -> Result<(), ServerError> {
        match self.task.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(ServerError::Serve(e)),
            Err(e) => Err(ServerError::Task(e.to_string())),
        }
    }
}
