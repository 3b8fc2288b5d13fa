//! HTTPS or plain HTTP for a registry on a loopback address, found out by asking it.
//!
//! A loopback registry used to be spoken to in plain HTTP always (`SchemePolicy::plain_http`),
//! which broke the common `kubectl port-forward` to an in-cluster registry that serves TLS: its
//! answer to plain HTTP is a 400. Docker tries HTTPS first for such registries and falls back to
//! HTTP; so does this, once per registry and client: a TLS handshake is attempted on the first
//! request. A server that answers it with something other than TLS (a plain HTTP server answers
//! `HTTP/1.1 400`, which rustls reads as an invalid record) is spoken to in plain HTTP, as before.
//! A server that speaks TLS is spoken to over HTTPS, with the same certificate checks as any
//! registry (system roots plus `--registry-ca`): a certificate that does not verify is an error
//! that says so, never a silent fall back to plain HTTP. A registry named with
//! `--insecure-registry` is not asked: plain HTTP, as said.
//!
//! The probe is bounded by [`PROBE_TIMEOUT`] (a server that never answers is not waited for
//! twice); an unreachable or silent registry is asked again by the next request.

use std::collections::HashMap;
use std::error::Error as StdError;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use url::Url;

use super::error::rustls_error;
use super::transport::api_host;

/// The longest the TLS probe waits (within the client's own timeout).
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// What each loopback registry was found to speak: `true` TLS, `false` plain HTTP.
#[derive(Default)]
pub(crate) struct LoopbackSchemes {
    known: Mutex<HashMap<String, Arc<tokio::sync::OnceCell<bool>>>>,
}

impl LoopbackSchemes {
    fn cell(&self, registry: &str) -> Arc<tokio::sync::OnceCell<bool>> {
        let mut known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        Arc::clone(known.entry(registry.to_string()).or_default())
    }

    fn speaks_tls(&self, registry: &str) -> bool {
        let known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        known
            .get(registry)
            .and_then(|cell| cell.get().copied())
            .unwrap_or(false)
    }

    /// Asks `registry` (once; concurrent first requests wait for the one probe) whether it
    /// speaks TLS. An inconclusive probe (refused, timed out) is not remembered.
    pub(crate) async fn learn(&self, http: &reqwest::Client, registry: &str, timeout: Duration) {
        let cell = self.cell(registry);
        let _ = cell
            .get_or_try_init(|| async {
                match probe(http, registry, timeout.min(PROBE_TIMEOUT)).await {
                    Some(tls) => {
                        tracing::debug!(registry, tls, "loopback registry probed");
                        Ok(tls)
                    }
                    None => Err(()),
                }
            })
            .await;
    }

    /// `url` (the registry's base URL by the static policy) with `https` when the registry was
    /// found to speak TLS.
    pub(crate) fn adjust(&self, registry: &str, mut url: Url) -> Url {
        if url.scheme() == "http" && self.speaks_tls(registry) {
            // http -> https is always a valid change of a special scheme.
            let _ = url.set_scheme("https");
        }
        url
    }

    /// The HTTPS form of `url` when it is a plain-HTTP URL of `registry` itself and the
    /// registry speaks TLS (a URL built before the probe); `None` otherwise.
    pub(crate) fn upgrade(&self, registry: &str, url: &Url) -> Option<Url> {
        if url.scheme() != "http" || !self.speaks_tls(registry) {
            return None;
        }
        let authority = match url.port() {
            Some(port) => format!("{}:{port}", url.host_str()?),
            None => url.host_str()?.to_string(),
        };
        if !authority.eq_ignore_ascii_case(api_host(registry)) {
            return None;
        }
        let mut upgraded = url.clone();
        upgraded.set_scheme("https").ok()?;
        Some(upgraded)
    }
}

/// `Some(true)`: a TLS server answered (even one whose certificate does not verify);
/// `Some(false)`: something else answered; `None`: no answer to judge by.
async fn probe(http: &reqwest::Client, registry: &str, timeout: Duration) -> Option<bool> {
    let url = format!("https://{}/v2/", api_host(registry));
    match http.get(url).timeout(timeout).send().await {
        Ok(_) => Some(true),
        Err(e) if e.is_timeout() => None,
        Err(e) => classify(&e),
    }
}

fn classify(error: &reqwest::Error) -> Option<bool> {
    let mut source: Option<&(dyn StdError + 'static)> = error.source();
    while let Some(cause) = source {
        let io = cause.downcast_ref::<std::io::Error>();
        if let Some(io) = io
            && matches!(
                io.kind(),
                std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::TimedOut
            )
        {
            return None;
        }
        if let Some(tls) = rustls_error(cause) {
            // Not a TLS record: the server speaks something else (plain HTTP answers `HTTP/1.1`).
            return Some(!matches!(tls, rustls::Error::InvalidMessage(_)));
        }
        source = cause.source();
    }
    // Closed or reset during the handshake: not a TLS server.
    Some(false)
}
