//! The registry layer's error type and the helpers that turn transport failures and registry
//! answers into one-line messages.
//!
//! Messages name the registry host and the cause; they never carry credentials (requests put
//! credentials only in headers, and headers are never formatted here).

use std::error::Error as StdError;
use std::io;
use std::time::Duration;

use super::failure::LookupFailureKind;
use crate::serve::format_duration;

/// Why a registry operation failed. Every message is one line and names the registry host.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// No HTTP answer: connection refused, DNS failure, TLS failure.
    #[error("registry {host} is unreachable: {cause}")]
    Unreachable {
        /// Registry host as written in the image reference (`host` or `host:port`).
        host: String,
        /// Root cause in a few words (e.g. "connection refused"), without reqwest's URL noise.
        cause: String,
    },
    /// No answer within the client's timeout (connect or whole request).
    #[error("registry {host} is unreachable: no answer within {}", format_duration(*after))]
    Timeout {
        /// Registry host as written in the image reference.
        host: String,
        /// The client timeout that ran out.
        after: Duration,
    },
    /// The registry (or its token service) refused the credentials, or none were given.
    #[error("registry {host} refused access to {target}: {detail}")]
    Unauthorized {
        /// Registry host as written in the image reference.
        host: String,
        /// The access that was refused: "pull of org/app", "push to org/app" or "the catalog".
        target: String,
        /// HTTP status and the registry's or token service's reason, on one line.
        detail: String,
    },
    /// The manifest, blob or repository does not exist.
    #[error("registry {host}: {what} not found")]
    NotFound {
        /// Registry host as written in the image reference.
        host: String,
        /// What was asked for, e.g. "manifest prod/app:v9".
        what: String,
    },
    /// Content did not hash to the digest it was requested by or announced with.
    #[error("registry {host}: digest mismatch for {what}: expected {expected}, got {actual}")]
    DigestMismatch {
        /// Registry host as written in the image reference.
        host: String,
        /// The manifest or blob whose content did not match.
        what: String,
        /// Digest the content must have: the one it was asked for or announced with, or on a
        /// push the digest of what was sent.
        expected: String,
        /// Digest the registry's content actually has: computed from the bytes received, or on
        /// a push the one the registry announced.
        actual: String,
    },
    /// A body larger than the limit for its kind; it was not read past the limit.
    #[error("registry {host}: {what} is larger than the {limit}-byte limit")]
    TooLarge {
        /// Registry host as written in the image reference.
        host: String,
        /// The manifest, blob or token answer that was too large.
        what: String,
        /// The size limit for this kind of body, in bytes.
        limit: u64,
    },
    /// HTTP 429: the registry (or its token service) asks the client to slow down.
    #[error("registry {host}: too many requests for {what}: {detail}")]
    RateLimited {
        /// Registry host as written in the image reference.
        host: String,
        /// The request that was throttled.
        what: String,
        /// "HTTP 429" and the registry's reason, on one line.
        detail: String,
    },
    /// A manifest that hashed right but is not what it must be (a signature manifest whose
    /// layers do not parse). The format layer's error is kept, typed.
    // `cause`, not `source`: the message already ends with it (a chained source would print
    // it twice where errors are shown with their chain).
    #[error("registry {host}: unexpected response to {what}: {cause}")]
    Malformed {
        /// Registry host as written in the image reference.
        host: String,
        /// The manifest that did not parse, as `repository:tag`.
        what: String,
        /// Why its layers are not a valid signature manifest.
        cause: crate::signature::SignatureError,
    },
    /// Any other answer: unexpected status, malformed body, missing header.
    #[error("registry {host}: unexpected response to {what}: {detail}")]
    BadResponse {
        /// Registry host as written in the image reference.
        host: String,
        /// The request the answer was to.
        what: String,
        /// What was wrong with the answer (status and body snippet, or the missing header), on
        /// one line.
        detail: String,
    },
    /// A credential helper named by the docker config could not give the registry's credentials:
    /// missing from PATH, failed, timed out or answered nonsense.
    #[error("registry {host}: credential helper {helper} (named in {named_in}) {reason}")]
    CredentialHelper {
        /// Registry host as written in the image reference.
        host: String,
        /// The program, `docker-credential-<name>`.
        helper: String,
        /// The config that named it (`docker config /home/u/.docker/config.json`).
        named_in: String,
        /// What went wrong, on one line (`not found on PATH`, `exited with 1: ...`).
        reason: String,
    },
    /// The client could not be built: unreadable CA bundle or credentials file.
    #[error("registry client configuration: {what}: {reason}")]
    InvalidConfig {
        /// The part of the configuration at fault, e.g. "CA file /etc/ca.pem" or "TLS".
        what: String,
        /// Why it could not be used, on one line.
        reason: String,
    },
    /// The caller asked for something that cannot be sent (e.g. a malformed registry name).
    #[error("invalid registry request for {host}: {reason}")]
    InvalidRequest {
        /// Registry host the request was meant for.
        host: String,
        /// Why the request cannot be sent.
        reason: String,
    },
}

impl RegistryError {
    /// The registry host the error is about, when there is one.
    pub fn host(&self) -> Option<&str> {
        match self {
            RegistryError::Unreachable { host, .. }
            | RegistryError::Timeout { host, .. }
            | RegistryError::Unauthorized { host, .. }
            | RegistryError::NotFound { host, .. }
            | RegistryError::DigestMismatch { host, .. }
            | RegistryError::TooLarge { host, .. }
            | RegistryError::RateLimited { host, .. }
            | RegistryError::Malformed { host, .. }
            | RegistryError::BadResponse { host, .. }
            | RegistryError::InvalidRequest { host, .. }
            | RegistryError::CredentialHelper { host, .. } => Some(host),
            RegistryError::InvalidConfig { .. } => None,
        }
    }

    /// True for a missing manifest, blob or repository.
    pub fn is_not_found(&self) -> bool {
        matches!(self, RegistryError::NotFound { .. })
    }

    /// What kind of failure this is, for metrics and for callers that decide by kind.
    pub fn failure_kind(&self) -> LookupFailureKind {
        match self {
            RegistryError::Unreachable { .. } => LookupFailureKind::Unreachable,
            RegistryError::Timeout { .. } => LookupFailureKind::Deadline,
            RegistryError::Unauthorized { .. } | RegistryError::CredentialHelper { .. } => {
                LookupFailureKind::Unauthorized
            }
            RegistryError::NotFound { .. } => LookupFailureKind::NotFound,
            RegistryError::DigestMismatch { .. }
            | RegistryError::TooLarge { .. }
            | RegistryError::Malformed { .. }
            | RegistryError::BadResponse { .. } => LookupFailureKind::InvalidContent,
            RegistryError::RateLimited { .. } => LookupFailureKind::RateLimited,
            RegistryError::InvalidConfig { .. } | RegistryError::InvalidRequest { .. } => {
                LookupFailureKind::Other
            }
        }
    }

    /// True when the registry itself failed to answer (unreachable, timed out): trying again
    /// later may succeed, and the answer says nothing about the content asked for.
    pub fn is_unreachable(&self) -> bool {
        matches!(
            self,
            RegistryError::Unreachable { .. } | RegistryError::Timeout { .. }
        )
    }

    pub(crate) fn bad_response(host: &str, what: &str, detail: impl Into<String>) -> Self {
        RegistryError::BadResponse {
            host: host.to_string(),
            what: what.to_string(),
            detail: one_line(&detail.into()),
        }
    }

    pub(crate) fn too_large(host: &str, what: &str, limit: usize) -> Self {
        RegistryError::TooLarge {
            host: host.to_string(),
            what: what.to_string(),
            limit: u64::try_from(limit).unwrap_or(u64::MAX),
        }
    }

    pub(crate) fn invalid_config(what: impl Into<String>, reason: impl Into<String>) -> Self {
        RegistryError::InvalidConfig {
            what: what.into(),
            reason: one_line(&reason.into()),
        }
    }

    /// Maps a reqwest failure (no usable HTTP answer) to [`RegistryError::Timeout`] or
    /// [`RegistryError::Unreachable`].
    pub(crate) fn transport(host: &str, err: &reqwest::Error, timeout: Duration) -> Self {
        if err.is_timeout() {
            return RegistryError::Timeout {
                host: host.to_string(),
                after: timeout,
            };
        }
        RegistryError::Unreachable {
            host: host.to_string(),
            cause: describe_transport_error(err, timeout),
        }
    }
}

/// The rustls error `cause` is or wraps. tokio-rustls puts it in an `io::Error`, which hyper
/// wraps in another, and `io::Error::source` skips the error it holds: it is dug out by hand.
pub(crate) fn rustls_error<'a>(cause: &'a (dyn StdError + 'static)) -> Option<&'a rustls::Error> {
    if let Some(tls) = cause.downcast_ref::<rustls::Error>() {
        return Some(tls);
    }
    let inner = cause.downcast_ref::<io::Error>()?.get_ref()?;
    rustls_error(inner)
}

/// Names the root cause of a transport failure in a few words.
///
/// reqwest's own message is skipped: it repeats the URL and says only "error sending request".
/// The common causes get a fixed wording so that users and tests can rely on it.
pub(crate) fn describe_transport_error(err: &reqwest::Error, timeout: Duration) -> String {
    if err.is_timeout() {
        return format!("no answer within {}", format_duration(timeout));
    }
    let mut messages: Vec<String> = Vec::new();
    let mut source: Option<&(dyn StdError + 'static)> = err.source();
    while let Some(cause) = source {
        if let Some(io_err) = cause.downcast_ref::<io::Error>() {
            if let Some(tls @ rustls::Error::InvalidCertificate(_)) = rustls_error(cause) {
                return format!(
                    "its TLS certificate is not trusted ({tls}): name its CA with --registry-ca"
                );
            }
            match io_err.kind() {
                io::ErrorKind::ConnectionRefused => return "connection refused".into(),
                io::ErrorKind::ConnectionReset => return "connection reset by peer".into(),
                io::ErrorKind::ConnectionAborted => return "connection aborted".into(),
                io::ErrorKind::TimedOut => return "connection timed out".into(),
                _ => {}
            }
        }
        let text = cause.to_string();
        // hyper's wrappers ("client error (Connect)") add nothing a user can act on.
        if !text.starts_with("client error (") && messages.last() != Some(&text) {
            messages.push(text);
        }
        source = cause.source();
    }
    if messages.is_empty() {
        if err.is_redirect() {
            return "too many redirects".into();
        }
        return "request failed".into();
    }
    one_line(&messages.join(": "))
}

/// The human part of a registry error body: the distribution spec's `errors[].message` (with
/// its code), else the first bytes of the body as text.
pub(crate) fn body_detail(body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct Errors {
        errors: Vec<ErrorEntry>,
    }
    #[derive(serde::Deserialize)]
    struct ErrorEntry {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
    }
    if let Ok(parsed) = serde_json::from_slice::<Errors>(body) {
        let parts: Vec<String> = parsed
            .errors
            .iter()
            .map(|e| match (e.code.is_empty(), e.message.is_empty()) {
                (false, false) => format!("{} ({})", e.message, e.code),
                (true, false) => e.message.clone(),
                (false, true) => e.code.clone(),
                (true, true) => String::new(),
            })
            .filter(|s| !s.is_empty())
            .collect();
        if !parts.is_empty() {
            return snippet(parts.join("; ").as_bytes());
        }
    }
    snippet(body)
}

/// True when a distribution error body carries one of `codes`.
pub(crate) fn body_has_code(body: &[u8], codes: &[&str]) -> bool {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) else {
        return false;
    };
    value
        .get("errors")
        .and_then(|e| e.as_array())
        .is_some_and(|errors| {
            errors.iter().any(|e| {
                e.get("code")
                    .and_then(|c| c.as_str())
                    .is_some_and(|c| codes.contains(&c))
            })
        })
}

/// The first bytes of a body as one trimmed line of text.
pub(crate) fn snippet(body: &[u8]) -> String {
    const MAX_CHARS: usize = 200;
    let text = String::from_utf8_lossy(body);
    let line = one_line(&text);
    if line.is_empty() {
        return "(empty body)".into();
    }
    if line.chars().count() > MAX_CHARS {
        let cut: String = line.chars().take(MAX_CHARS).collect();
        format!("{}...", cut.trim_end())
    } else {
        line
    }
}

/// Collapses white space (newlines included) so that a message stays on one line.
pub(crate) fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_host_and_stay_on_one_line() {
        let errors = [
            RegistryError::Unreachable {
                host: "127.0.0.1:1".into(),
                cause: "connection refused".into(),
            },
            RegistryError::Unauthorized {
                host: "ghcr.io".into(),
                target: "pull of org/app".into(),
                detail: "authentication required".into(),
            },
            RegistryError::NotFound {
                host: "registry.example.com".into(),
                what: "manifest prod/app:v9".into(),
            },
            RegistryError::DigestMismatch {
                host: "registry.example.com".into(),
                what: "blob prod/app@sha256:aa".into(),
                expected: "sha256:aa".into(),
                actual: "sha256:bb".into(),
            },
            RegistryError::too_large("registry.example.com", "manifest prod/app:v1", 4 << 20),
            RegistryError::bad_response(
                "registry.example.com",
                "tag list of prod/app",
                "HTTP 500:\n boom \n",
            ),
        ];
        for e in &errors {
            let text = e.to_string();
            assert!(!text.contains('\n'), "{text:?}");
            assert!(text.contains(e.host().unwrap()), "{text:?}");
        }
        assert_eq!(
            errors[0].to_string(),
            "registry 127.0.0.1:1 is unreachable: connection refused"
        );
        assert_eq!(
            errors[3].to_string(),
            "registry registry.example.com: digest mismatch for blob prod/app@sha256:aa: expected sha256:aa, got sha256:bb"
        );
        assert_eq!(
            errors[4].to_string(),
            "registry registry.example.com: manifest prod/app:v1 is larger than the 4194304-byte limit"
        );
        assert_eq!(
            errors[5].to_string(),
            "registry registry.example.com: unexpected response to tag list of prod/app: HTTP 500: boom"
        );
        assert!(errors[2].is_not_found());
    }

    #[test]
    fn body_detail_prefers_the_distribution_error_message() {
        let body = br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{"Tag":"x"}}]}"#;
        assert_eq!(body_detail(body), "manifest unknown (MANIFEST_UNKNOWN)");
        assert!(body_has_code(body, &["NAME_UNKNOWN", "MANIFEST_UNKNOWN"]));
        assert!(!body_has_code(body, &["BLOB_UNKNOWN"]));
        assert_eq!(
            body_detail(b"<html>\n  <b>502</b> Bad Gateway\n</html>"),
            "<html> <b>502</b> Bad Gateway </html>"
        );
        assert_eq!(body_detail(b""), "(empty body)");
    }

    #[test]
    fn snippet_is_cut_to_the_first_bytes() {
        let long = "x".repeat(1000);
        let s = snippet(long.as_bytes());
        assert_eq!(s.len(), 203);
        assert!(s.ends_with("..."));
        assert_eq!(snippet(&[0xff, b'a']), "\u{fffd}a");
    }
}
