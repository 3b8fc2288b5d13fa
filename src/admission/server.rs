//! The HTTPS server: `POST /validate`, `POST /mutate`, `GET /healthz`, `GET /readyz`,
//! `GET /metrics`, all on one port, over rustls; and the same probes and metrics alone for the
//! plain-HTTP operations port ([`ops_router`]).
//!
//! Layers, outside in: TLS and HTTP (the serving edge, certificate reloadable) -> body limit ->
//! [`Admission::review`] (bounded concurrency, deadline, decision) -> metrics. Bodies that are
//! not AdmissionReviews get a JSON `{"error": "..."}` with 400, or 413 past the limit: without
//! a readable `uid` no AdmissionReview answer can be written.
//!
//! `POST /validate` and `POST /mutate` are answered without a router (`AdmissionRoutes`): they
//! are nearly every request the port gets, and axum's routing, handler and response layers cost
//! a cached admission about 1,500 instructions and several allocations. The probes and metrics
//! go through the same axum router as on the operations port.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::{Bytes, HttpBody as _};
use axum::http::{Method, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::future::Either;
use http_body_util::BodyExt as _;
use hyper::body::Incoming;

use super::decide::Admission;
use super::metrics::Endpoint;
use super::review::ReviewError;
use crate::metrics::OpsTarget;
use crate::serve::{Drain, Routes, Server, ServerError, TlsSource, bind, gated};
use prometheus_client::registry::Registry;

/// Largest AdmissionReview body read. The API server stores objects of at most ~1.5 MiB (etcd's
/// limit) and caps requests at 3 MiB, so nothing legitimate is larger.
pub const MAX_BODY_BYTES: usize = 3 * 1024 * 1024;

/// An oversized body is read and discarded up to this size before the 413 is sent: a client
/// still sending when the server closes would get a connection reset instead of the answer.
/// Past this, the connection is cut.
const MAX_DRAINED_BYTES: usize = 16 * 1024 * 1024;

/// The probe and metrics routes alone, for the plain-HTTP operations port (`--metrics-listen`):
/// kubelet probes and Prometheus present no client certificate, so with `--client-ca` they
/// cannot use the admission port. Served by [`Server`] without TLS.
pub fn ops_router(admission: Arc<Admission>) -> Router {
    crate::metrics::ops_router(admission)
}

/// The admission port: `POST /validate` and `POST /mutate` answered here, the probes and
/// metrics by the operations router ([`ops_router`], behind the readiness gate).
#[derive(Clone)]
struct AdmissionRoutes {
    admission: Arc<Admission>,
    ops: Router,
}

impl Routes for AdmissionRoutes {
    fn answer(&self, request: Request<Incoming>) -> impl Future<Output = Response> + Send + use<> {
        let endpoint = match request.uri().path() {
            "/validate" => Endpoint::Validate,
            "/mutate" => Endpoint::Mutate,
            _ => return Either::Right(self.ops.answer(request)),
        };
        let admission = Arc::clone(&self.admission);
        Either::Left(async move {
            if request.method() != Method::POST {
                let allow = [(header::ALLOW, "POST")];
                return (StatusCode::METHOD_NOT_ALLOWED, allow).into_response();
            }
            answer(&admission, request.into_body(), endpoint).await
        })
    }
}

impl OpsTarget for Admission {
    fn is_ready(&self) -> bool {
        Admission::is_ready(self)
    }

    fn metrics_registry(&self) -> &Registry {
        self.metrics().registry()
    }
}

/// The body, at most [`MAX_BODY_BYTES`]; an oversized one is drained (up to
/// [`MAX_DRAINED_BYTES`]) so that the client reads the 413. A body that arrives in one chunk
/// (the usual case) is used as it is; one in several is gathered into a buffer sized once from
/// its `Content-Length`.
async fn read_body(mut body: Incoming) -> Result<Bytes, (StatusCode, ReviewError)> {
    let expected = usize::try_from(body.size_hint().lower())
        .unwrap_or(MAX_BODY_BYTES)
        .min(MAX_BODY_BYTES);
    let mut first: Option<Bytes> = None;
    let mut collected: Vec<u8> = Vec::new();
    let mut seen = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            (
                StatusCode::BAD_REQUEST,
                ReviewError::NotJson(format!("cannot read the body: {e}")),
            )
        })?;
        // Trailers carry nothing an AdmissionReview needs.
        let Ok(chunk) = frame.into_data() else {
            continue;
        };
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

async fn answer(admission: &Admission, body: Incoming, endpoint: Endpoint) -> Response {
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
        let routes = AdmissionRoutes {
            admission: Arc::clone(&admission),
            ops: gated(ops_router(Arc::clone(&admission)), drain),
        };
        let expiry = admission.metrics().common().certificate_expiry().clone();
        let server =
            Server::start_routes("webhook", listener, routes, Some(tls), &expiry, threads)?;
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
