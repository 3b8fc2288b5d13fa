//! What both KMS clients share: the error of one call, the HTTP client (rustls on aws-lc-rs,
//! the platform's roots), endpoint URLs (plain HTTP only to loopback), the retry loop with its
//! metrics, and the one background runtime that lets the synchronous [`SigningKey`] trait
//! make asynchronous calls.
//!
//! [`SigningKey`]: crate::crypto::SigningKey

use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use url::Url;

use super::metrics::{Outcome, Provider, record_call};

/// Timeout of one KMS, STS or metadata request (connect included).
pub(super) const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Connect timeout: a KMS that does not answer a SYN within this is taken as unreachable.
pub(super) const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Tries of one call when the service throttles or fails transiently (5xx, connection reset).
pub(super) const ATTEMPTS: u32 = 4;
/// Total time one call may spend across its tries (the signer's retry of the whole signing
/// comes on top, so this stays well under a registry notification's patience).
pub(super) const CALL_BUDGET: Duration = Duration::from_secs(20);

/// Why a KMS call failed. Every message is one line and carries no secret.
#[derive(Debug, Clone, thiserror::Error)]
pub(super) enum KmsError {
    /// No TCP/TLS connection (refused, DNS, TLS handshake).
    #[error("cannot reach {url}: {reason}")]
    Unreachable {
        /// The URL asked.
        url: String,
        /// The transport's answer.
        reason: String,
    },
    /// The request took longer than [`REQUEST_TIMEOUT`].
    #[error("{url} did not answer within {}s", REQUEST_TIMEOUT.as_secs())]
    Timeout {
        /// The URL asked.
        url: String,
    },
    /// The service answered with an error.
    #[error("{operation} refused (HTTP {status} {code}): {message}")]
    Api {
        /// `GetPublicKey`, `Sign`...
        operation: &'static str,
        /// HTTP status.
        status: u16,
        /// The service's error code (`AccessDeniedException`, `Forbidden.KeyNotFound`...).
        code: String,
        /// The service's message, cut to one short line.
        message: String,
        /// Throttling: worth another try after a pause.
        throttled: bool,
    },
    /// No usable credentials were found, or the credential service refused.
    #[error("credentials: {0}")]
    Credentials(String),
    /// The service answered 2xx with something that is not what the API documents.
    #[error("unexpected answer to {operation}: {reason}")]
    BadResponse {
        /// The operation.
        operation: &'static str,
        /// What was wrong.
        reason: String,
    },
    /// The key reference or environment cannot be used.
    #[error("{0}")]
    Config(String),
}

/// Status codes and error codes that mean the request's credentials were refused.
const AUTH_CODES: [&str; 10] = [
    "UnrecognizedClientException",
    "InvalidSignatureException",
    "IncompleteSignature",
    "AccessDeniedException",
    "SignatureDoesNotMatch",
    "InvalidClientTokenId",
    "ExpiredTokenException",
    "InvalidAccessKeyId",
    "InvalidSecurityToken",
    "Forbidden.RAM",
];

impl KmsError {
    /// Worth another try: throttling, a 5xx, a lost connection or a timeout.
    fn retryable(&self) -> bool {
        match self {
            KmsError::Api {
                status, throttled, ..
            } => *throttled || *status >= 500,
            KmsError::Unreachable { .. } | KmsError::Timeout { .. } => true,
            _ => false,
        }
    }

    /// The `outcome` label of the call's metric.
    pub(super) fn outcome(&self) -> Outcome {
        match self {
            KmsError::Api {
                throttled: true, ..
            } => Outcome::Throttled,
            KmsError::Api { status, code, .. }
                if *status == 401
                    || *status == 403
                    || AUTH_CODES.iter().any(|c| code.starts_with(c)) =>
            {
                Outcome::AuthError
            }
            KmsError::Api { status, .. } if *status >= 500 => Outcome::ServerError,
            KmsError::Api { .. } => Outcome::ClientError,
            KmsError::Unreachable { .. } => Outcome::Unreachable,
            KmsError::Timeout { .. } => Outcome::Timeout,
            KmsError::Credentials(_) => Outcome::AuthError,
            KmsError::BadResponse { .. } | KmsError::Config(_) => Outcome::BadResponse,
        }
    }

    /// The message without the variant's own prefix, for nesting in another credential error.
    pub(super) fn reason(&self) -> String {
        match self {
            KmsError::Credentials(m) | KmsError::Config(m) => m.clone(),
            other => other.to_string(),
        }
    }

    /// Whether a failure says the credentials are no longer good (drop and fetch anew).
    pub(super) fn is_auth(&self) -> bool {
        matches!(self.outcome(), Outcome::AuthError)
    }
}

/// A service message fit for one line of an error: whitespace folded, at most 240 characters.
pub(super) fn one_line(text: &str) -> String {
    let folded = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if folded.chars().count() > 240 {
        let cut: String = folded.chars().take(240).collect();
        format!("{cut}...")
    } else {
        folded
    }
}

/// A reply with a 2xx status.
pub(super) struct Reply {
    /// The status.
    pub status: u16,
    /// The body.
    pub body: Bytes,
}

/// The HTTP client of every KMS and credential call (one per process: keys share connections).
pub(super) fn http_client() -> Result<reqwest::Client, KmsError> {
    static CLIENT: OnceLock<Result<reqwest::Client, String>> = OnceLock::new();
    CLIENT
        .get_or_init(|| {
            // The provider is passed explicitly: a library does not choose the process default.
            let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
            let verifier = rustls_platform_verifier::Verifier::new(Arc::clone(&provider))
                .map_err(|e| format!("TLS roots: {e}"))?;
            let mut tls = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(|e| format!("TLS: {e}"))?
                .dangerous()
                // The platform's WebPKI verifier: the system roots, as any HTTPS client.
                .with_custom_certificate_verifier(Arc::new(verifier))
                .with_no_client_auth();
            tls.alpn_protocols = vec![b"http/1.1".to_vec()];
            reqwest::Client::builder()
                .tls_backend_preconfigured(tls)
                .redirect(reqwest::redirect::Policy::none())
                .timeout(REQUEST_TIMEOUT)
                .connect_timeout(CONNECT_TIMEOUT)
                .user_agent(concat!("signet/", env!("CARGO_PKG_VERSION")))
                .build()
                .map_err(|e| format!("HTTP client: {e}"))
        })
        .clone()
        .map_err(KmsError::Config)
}

/// Whether `host` is a loopback name or address (where plain HTTP is allowed).
pub(super) fn is_loopback(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.eq_ignore_ascii_case("localhost")
        || bare
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The URL of a service endpoint given as `host[:port]` or a full `http(s)://` URL. A bare host
/// is HTTPS except on loopback (emulators); plain HTTP elsewhere is refused, since the requests
/// carry session tokens.
pub(super) fn endpoint_url(endpoint: &str, what: &str) -> Result<Url, KmsError> {
    let endpoint = endpoint.trim().trim_end_matches('/');
    let text = if endpoint.contains("://") {
        endpoint.to_string()
    } else {
        let host = endpoint.rsplit_once(':').map_or(endpoint, |(h, p)| {
            if p.chars().all(|c| c.is_ascii_digit()) {
                h
            } else {
                endpoint
            }
        });
        let scheme = if is_loopback(host) { "http" } else { "https" };
        format!("{scheme}://{endpoint}")
    };
    let url = Url::parse(&format!("{text}/"))
        .map_err(|e| KmsError::Config(format!("{what} endpoint {endpoint:?} is not a URL: {e}")))?;
    let host = url.host_str().unwrap_or_default();
    match url.scheme() {
        "https" => Ok(url),
        "http" if is_loopback(host) => Ok(url),
        "http" => Err(KmsError::Config(format!(
            "{what} endpoint {endpoint:?}: plain HTTP is allowed to loopback only (use https://)"
        ))),
        other => Err(KmsError::Config(format!(
            "{what} endpoint {endpoint:?}: scheme {other:?} is not http(s)"
        ))),
    }
}

/// `host[:port]` as the `Host` header carries it (default ports omitted).
pub(super) fn host_header(url: &Url) -> String {
    let host = url.host_str().unwrap_or_default();
    match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_string(),
    }
}

/// Sends `request`, returning the body of a 2xx answer, or `error_of(status, body)` otherwise.
pub(super) async fn send(
    request: reqwest::RequestBuilder,
    url: &Url,
    error_of: impl FnOnce(u16, &[u8]) -> KmsError,
) -> Result<Reply, KmsError> {
    let response = request.send().await.map_err(|e| transport_error(url, &e))?;
    let status = response.status().as_u16();
    let body = response
        .bytes()
        .await
        .map_err(|e| transport_error(url, &e))?;
    if (200..300).contains(&status) {
        Ok(Reply { status, body })
    } else {
        Err(error_of(status, &body))
    }
}

fn transport_error(url: &Url, e: &reqwest::Error) -> KmsError {
    let mut shown = url.clone();
    shown.set_query(None);
    if e.is_timeout() {
        return KmsError::Timeout {
            url: shown.to_string(),
        };
    }
    // The innermost cause says what happened (connection refused, DNS, certificate).
    let mut reason = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        reason = s.to_string();
        source = s.source();
    }
    KmsError::Unreachable {
        url: shown.to_string(),
        reason: one_line(&reason),
    }
}

/// Runs `attempt` until it succeeds, fails for good, or `attempts` / [`CALL_BUDGET`] run out,
/// pausing with exponential backoff (jittered) between tries; records each try's latency and
/// outcome under `provider`.
pub(super) async fn with_retries<T, F, Fut>(
    provider: Provider,
    attempts: u32,
    mut attempt: F,
) -> Result<T, KmsError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, KmsError>>,
{
    let started = Instant::now();
    let mut pause = Duration::from_millis(100);
    let mut tries = 0;
    loop {
        tries += 1;
        let t = Instant::now();
        let result = attempt().await;
        let outcome = result
            .as_ref()
            .map_or_else(KmsError::outcome, |_| Outcome::Success);
        record_call(provider, outcome, t.elapsed());
        match result {
            Err(e)
                if e.retryable() && tries < attempts && started.elapsed() + pause < CALL_BUDGET =>
            {
                tracing::debug!(provider = provider.as_str(), error = %e, tries, "KMS call failed; retrying");
                let mut jitter = [0u8; 1];
                let _ = aws_lc_rs::rand::fill(&mut jitter);
                tokio::time::sleep(pause + pause * u32::from(jitter[0]) / 512).await;
                pause *= 2;
            }
            other => return other,
        }
    }
}

/// The runtime KMS calls run on: one worker thread of its own, so that the synchronous
/// [`SigningKey::sign`](crate::crypto::SigningKey::sign) can wait for a call from any thread
/// (the blocking pool, a plain thread, a test) without entering the caller's runtime.
fn runtime() -> Result<&'static tokio::runtime::Runtime, KmsError> {
    static RUNTIME: OnceLock<Result<tokio::runtime::Runtime, String>> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name("signet-kms")
                .enable_all()
                .build()
                .map_err(|e| format!("cannot start the KMS runtime: {e}"))
        })
        .as_ref()
        .map_err(|e| KmsError::Config(e.clone()))
}

/// Runs `future` on the KMS runtime and waits for it. Blocks the calling thread: call it from
/// the blocking pool or a plain thread (as the signer and `signet sign` do).
pub(super) fn block_on<T: Send + 'static>(
    future: impl Future<Output = Result<T, KmsError>> + Send + 'static,
) -> Result<T, KmsError> {
    let handle = runtime()?.spawn(future);
    futures::executor::block_on(handle)
        .map_err(|e| KmsError::Config(format!("KMS call task failed: {e}")))?
}

/// How long an instance-metadata request may take (the service is link-local: it answers fast or
/// is not there).
pub(super) const METADATA_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// A session with a cloud instance-metadata service of the IMDSv2 kind (AWS EC2, Alibaba ECS in
/// hardened mode): a token from a `PUT`, then `GET`s carrying it.
pub(super) struct MetadataSession<'a> {
    http: &'a reqwest::Client,
    provider: Provider,
    token_header: &'static str,
    token: String,
}

impl<'a> MetadataSession<'a> {
    /// Asks `token_url` for a session token (`ttl_header`: 6 h), to be sent as `token_header`.
    pub(super) async fn open(
        http: &'a reqwest::Client,
        provider: Provider,
        token_url: &Url,
        ttl_header: &'static str,
        token_header: &'static str,
    ) -> Result<Self, KmsError> {
        let reply = with_retries(provider, 1, || {
            let request = http
                .put(token_url.clone())
                .timeout(METADATA_TIMEOUT)
                .header(ttl_header, "21600");
            send(request, token_url, |status, _| {
                KmsError::Credentials(format!("metadata token: HTTP {status}"))
            })
        })
        .await?;
        Ok(MetadataSession {
            http,
            provider,
            token_header,
            token: String::from_utf8_lossy(&reply.body).trim().to_string(),
        })
    }

    /// `GET url` with the session token.
    pub(super) async fn get(&self, url: Url) -> Result<Reply, KmsError> {
        with_retries(self.provider, 2, || {
            let request = self
                .http
                .get(url.clone())
                .timeout(METADATA_TIMEOUT)
                .header(self.token_header, &self.token);
            send(request, &url, |status, _| {
                KmsError::Credentials(format!("{}: HTTP {status}", url.path()))
            })
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_https_except_on_loopback() {
        assert_eq!(
            endpoint_url("kms.eu-west-1.amazonaws.com", "KMS")
                .unwrap()
                .as_str(),
            "https://kms.eu-west-1.amazonaws.com/"
        );
        assert_eq!(
            endpoint_url("127.0.0.1:4566", "KMS").unwrap().as_str(),
            "http://127.0.0.1:4566/"
        );
        assert_eq!(
            endpoint_url("localhost:4566", "KMS").unwrap().as_str(),
            "http://localhost:4566/"
        );
        let err = endpoint_url("http://kms.example.com", "KMS").unwrap_err();
        assert!(err.to_string().contains("loopback only"), "{err}");
        assert!(endpoint_url("ftp://x", "KMS").is_err());
    }

    #[test]
    fn messages_are_one_short_line() {
        let long = "a\nb ".repeat(200);
        let line = one_line(&long);
        assert!(!line.contains('\n') && line.len() <= 243, "{line}");
    }
}
