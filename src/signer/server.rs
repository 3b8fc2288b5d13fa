//! The signer's HTTP side: `POST /events` (bearer token), `GET /healthz`, `GET /readyz`,
//! `GET /metrics`, over TLS (certificate reloaded when its files change) or plain HTTP.
//!
//! `POST /events` answers 2xx only once every signature the events call for is in the registry;
//! otherwise 503, so that the registry sends the event again. Events that can never be signed (not
//! a push, out of scope, manifest deleted since...) are answered 200: a non-2xx would make the
//! registry retry them forever and hold back the events queued behind.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum_server::tls_rustls::RustlsConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::json;
use sha2::Digest as _;
use subtle::ConstantTimeEq;

use super::SignerError;
use super::engine::{EventOutcome, Signer};

/// Largest notification body read (the registry sends one event per request).
pub const MAX_NOTIFICATION_BYTES: usize = 1024 * 1024;

/// How often the TLS certificate files are checked for changes.
const TLS_RELOAD_INTERVAL: Duration = Duration::from_secs(30);

/// The bearer token registries must send. Compared in constant time; never printed.
#[derive(Clone)]
pub struct BearerToken {
    hash: [u8; 32],
}

impl std::fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BearerToken(<redacted>)")
    }
}

impl BearerToken {
    /// A token from its text (surrounding white space removed); empty is refused.
    pub fn new(token: &str) -> Result<Self, SignerError> {
        let token = token.trim();
        if token.is_empty() {
            return Err(SignerError::Config("the bearer token is empty".into()));
        }
        Ok(BearerToken {
            hash: sha2::Sha256::digest(token.as_bytes()).into(),
        })
    }

    /// Reads the token from a file (a mounted Secret).
    pub fn from_file(path: &Path) -> Result<Self, SignerError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            SignerError::Config(format!("cannot read token file {}: {e}", path.display()))
        })?;
        Self::new(&text)
            .map_err(|_| SignerError::Config(format!("token file {} is empty", path.display())))
    }

    /// Whether `Authorization` carries this token. Hashing both sides first makes the comparison
    /// constant time whatever the lengths.
    pub fn accepts(&self, headers: &HeaderMap) -> bool {
        let Some(value) = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
        else {
            return false;
        };
        let Some((scheme, presented)) = value.trim().split_once(' ') else {
            return false;
        };
        if !scheme.eq_ignore_ascii_case("bearer") {
            return false;
        }
        let presented: [u8; 32] = sha2::Sha256::digest(presented.trim().as_bytes()).into();
        presented.ct_eq(&self.hash).into()
    }
}

#[derive(Clone)]
struct AppState {
    signer: Signer,
    token: Arc<BearerToken>,
}

/// The routes, for a signer and its token.
pub fn router(signer: Signer, token: BearerToken) -> Router {
    Router::new()
        .route("/events", post(events))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .layer(DefaultBodyLimit::max(MAX_NOTIFICATION_BYTES))
        .with_state(AppState {
            signer,
            token: Arc::new(token),
        })
}

async fn readyz(State(state): State<AppState>) -> Response {
    if state.signer.is_ready() {
        (StatusCode::OK, "ready").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "policy not synced").into_response()
    }
}

async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.signer.metrics().encode(),
    )
        .into_response()
}

async fn events(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    if !state.token.accepts(&headers) {
        state
            .signer
            .metrics()
            .ignored(super::IgnoreReason::Unauthorized);
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            "missing or wrong bearer token\n",
        )
            .into_response();
    }
    let outcomes = match state.signer.handle_notification(&body).await {
        Ok(o) => o,
        Err(e) => {
            state
                .signer
                .metrics()
                .ignored(super::IgnoreReason::MalformedBody);
            return (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response();
        }
    };
    let mut failures = Vec::new();
    let mut results = Vec::with_capacity(outcomes.len());
    for outcome in &outcomes {
        results.push(match outcome {
            EventOutcome::Ignored(why) => json!({"result": "ignored", "reason": why.to_string()}),
            EventOutcome::OutOfScope { manual: true } => {
                json!({"result": "ignored", "reason": "only Manual rules cover it"})
            }
            EventOutcome::OutOfScope { manual: false } => {
                json!({"result": "ignored", "reason": "no SigningRule covers it"})
            }
            EventOutcome::NothingToSign(why) => {
                json!({"result": "ignored", "reason": why.as_str()})
            }
            EventOutcome::Signed(e) => json!({
                "result": "signed", "added": e.added, "present": e.present, "skipped": e.skipped,
            }),
            EventOutcome::Failed(e) => {
                failures.push(e.to_string());
                json!({"result": "failed", "error": e.to_string()})
            }
        });
    }
    let status = if failures.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(json!({ "events": results }))).into_response()
}

/// A running HTTP(S) server.
pub struct ServerHandle {
    addr: SocketAddr,
    handle: axum_server::Handle<SocketAddr>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl ServerHandle {
    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Whether the server task has ended.
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    /// Stops accepting, closes connections, and waits for the server task.
    pub async fn shutdown(self) {
        self.handle.shutdown();
        let _ = self.task.await;
    }

    /// Waits until the server stops (an accept loop error).
    pub async fn wait(self) -> Result<(), SignerError> {
        match self.task.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(SignerError::Config(format!("server on {}: {e}", self.addr))),
            Err(e) => Err(SignerError::Internal(format!("server task: {e}"))),
        }
    }
}

/// Serves `app` on `listener`, over TLS when `tls` is given.
pub fn serve(
    listener: std::net::TcpListener,
    app: Router,
    tls: Option<RustlsConfig>,
) -> Result<ServerHandle, SignerError> {
    let addr = listener
        .local_addr()
        .map_err(|e| SignerError::Config(format!("listener address: {e}")))?;
    let handle = axum_server::Handle::<SocketAddr>::new();
    let service = app.into_make_service();
    let bind_error = |e: std::io::Error| SignerError::Config(format!("listen on {addr}: {e}"));
    let task = match tls {
        Some(config) => {
            let server = axum_server::from_tcp_rustls(listener, config)
                .map_err(bind_error)?
                .handle(handle.clone());
            tokio::spawn(server.serve(service))
        }
        None => {
            let server = axum_server::from_tcp(listener)
                .map_err(bind_error)?
                .handle(handle.clone());
            tokio::spawn(server.serve(service))
        }
    };
    Ok(ServerHandle { addr, handle, task })
}

/// A TLS server configuration from PEM files (aws-lc-rs, HTTP/1.1 and HTTP/2).
pub fn tls_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, SignerError> {
    let bad = |what: &Path, why: String| {
        SignerError::Config(format!("TLS file {}: {why}", what.display()))
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| bad(cert, e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| bad(cert, e.to_string()))?;
    if chain.is_empty() {
        return Err(bad(cert, "no CERTIFICATE block".into()));
    }
    let private = PrivateKeyDer::from_pem_file(key).map_err(|e| bad(key, e.to_string()))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| SignerError::Config(format!("TLS: {e}")))?
        .with_no_client_auth()
        .with_single_cert(chain, private)
        .map_err(|e| SignerError::Config(format!("TLS certificate and key: {e}")))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Reloads `config` from the files whenever their modification time changes (cert-manager and
/// Kubernetes Secret mounts replace them in place). A bad new pair is logged and the old one kept.
pub fn watch_tls_files(config: RustlsConfig, cert: PathBuf, key: PathBuf) {
    let stamp = move |cert: &Path, key: &Path| -> Option<(SystemTime, SystemTime)> {
        let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
        Some((modified(cert)?, modified(key)?))
    };
    tokio::spawn(async move {
        let mut last = stamp(&cert, &key);
        loop {
            tokio::time::sleep(TLS_RELOAD_INTERVAL).await;
            let now = stamp(&cert, &key);
            if now.is_none() || now == last {
                continue;
            }
            match tls_config(&cert, &key) {
                Ok(c) => {
                    config.reload_from_config(c);
                    last = now;
                    tracing::info!(cert = %cert.display(), "TLS certificate reloaded");
                }
                Err(e) => tracing::warn!(error = %e, "TLS certificate not reloaded"),
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, value.parse().unwrap());
        h
    }

    #[test]
    fn only_the_exact_bearer_token_is_accepted() {
        let token = BearerToken::new(" s3cret\n").unwrap();
        assert!(token.accepts(&headers("Bearer s3cret")));
        assert!(token.accepts(&headers("bearer s3cret")));
        assert!(!token.accepts(&headers("Bearer s3cre")));
        assert!(!token.accepts(&headers("Bearer s3cret2")));
        assert!(!token.accepts(&headers("Basic s3cret")));
        assert!(!token.accepts(&headers("s3cret")));
        assert!(!token.accepts(&HeaderMap::new()));
        assert!(BearerToken::new("  \n").is_err());
        assert!(!format!("{token:?}").contains("s3cret"));
    }
}
