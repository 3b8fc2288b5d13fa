//! The signer's HTTP side: `POST /events` (bearer token), `GET /healthz`, `GET /readyz`,
//! `GET /metrics`; and the probes and metrics alone for the plain-HTTP operations port
//! ([`ops_router`], `--metrics-listen`). TLS, reload and draining are the shared edge's
//! (`crate::serve`).
//!
//! `POST /events` answers 2xx only once every signature the events call for is in the registry;
//! otherwise 503, so that the registry sends the event again. Events that can never be signed (not
//! a push, out of scope, manifest deleted since...) are answered 200: a non-2xx would make the
//! registry retry them forever and hold back the events queued behind.
//!
//! With `--acknowledge queued` (`super::queue`), covered pushes are answered `202` with
//! `{"result":"queued"}` once held in the signer's queue, and signed afterwards; a full queue
//! answers the body `503` (the registry sends it again). Everything else is answered as above.

use std::path::Path;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;
use sha2::Digest as _;
use subtle::ConstantTimeEq;
use tracing::Instrument as _;

use super::SignerError;
use super::engine::{EventOutcome, Signer};
use super::queue::{Acknowledge, Acknowledged};
use crate::metrics::{OpsTarget, metrics_response};
use prometheus_client::registry::Registry;

/// Largest notification body read (the registry sends one event per request).
pub const MAX_NOTIFICATION_BYTES: usize = 1024 * 1024;

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

async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> Response {
    metrics_response(state.signer.metrics_registry(), &headers)
}

impl OpsTarget for Signer {
    fn is_ready(&self) -> bool {
        Signer::is_ready(self)
    }

    fn metrics_registry(&self) -> &Registry {
        // Picks up a changed rule set now, so that a new rule's series show at zero (and a
        // deleted rule's go) before any event touches the rules.
        drop(self.rules());
        self.metrics().registry()
    }
}

/// `/healthz`, `/readyz` and `/metrics` alone, for the plain-HTTP operations port
/// (`--metrics-listen`).
pub fn ops_router(signer: Signer) -> Router {
    crate::metrics::ops_router(std::sync::Arc::new(signer))
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
    if state.signer.options().acknowledge == Acknowledge::Queued {
        return acknowledge_queued(&state, &body);
    }
    // The work runs as its own task: when the registry's notification timeout runs out first,
    // it drops the connection, which drops this handler; the signing then still finishes, and
    // the registry's next delivery of the event finds the image signed. Awaited in the handler,
    // it would be cancelled half-way on every delivery of a slow image.
    let signer = state.signer.clone();
    let work = tokio::spawn(
        async move { signer.handle_notification(&body).await }.instrument(tracing::Span::current()),
    );
    let handled = match work.await {
        Ok(handled) => handled,
        Err(e) => {
            tracing::error!(error = %e, "the notification's task failed");
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the notification's task failed\n",
            )
                .into_response();
        }
    };
    let outcomes = match handled {
        Ok(o) => o,
        Err(e) => return malformed_body(&state, &e),
    };
    let mut failures = 0;
    let results: Vec<_> = outcomes
        .iter()
        .map(|outcome| outcome_json(outcome, &mut failures))
        .collect();
    let status = if failures == 0 {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(json!({ "events": results }))).into_response()
}

/// `--acknowledge queued`: no signing awaited here (nothing to cancel half-way), so no task.
fn acknowledge_queued(state: &AppState, body: &[u8]) -> Response {
    let answers = match state.signer.acknowledge_notification(body) {
        Ok(a) => a,
        Err(e) => return malformed_body(state, &e),
    };
    let mut failures = 0;
    let mut queued = false;
    let results: Vec<_> = answers
        .iter()
        .map(|answer| match answer {
            Acknowledged::Handled(outcome) => outcome_json(outcome, &mut failures),
            Acknowledged::Queued => {
                queued = true;
                json!({"result": "queued"})
            }
            Acknowledged::Coalesced => {
                queued = true;
                json!({"result": "queued", "coalesced": true})
            }
            Acknowledged::Full => {
                failures += 1;
                json!({"result": "failed", "error": "the signing queue is full: send the event again later"})
            }
        })
        .collect();
    let status = if failures > 0 {
        StatusCode::SERVICE_UNAVAILABLE
    } else if queued {
        StatusCode::ACCEPTED
    } else {
        StatusCode::OK
    };
    (status, axum::Json(json!({ "events": results }))).into_response()
}

fn malformed_body(state: &AppState, e: &super::event::EnvelopeError) -> Response {
    state
        .signer
        .metrics()
        .ignored(super::IgnoreReason::MalformedBody);
    (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response()
}

/// One event's entry in the answer; counts the failures (which make the answer 503).
fn outcome_json(outcome: &EventOutcome, failures: &mut usize) -> serde_json::Value {
    match outcome {
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
            *failures += 1;
            json!({"result": "failed", "error": e.to_string()})
        }
    }
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
