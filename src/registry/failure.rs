//! Why a signature lookup (tag -> digest, digest -> signatures) gave no usable answer, as a
//! type: the webhook's flights and failure cache hold it, the policy engine carries its kind
//! into the verdict, metrics are labelled from [`LookupFailureKind`], and it becomes text only
//! where people read it (denials, warnings, logs).

use std::fmt;
use std::time::Duration;

use serde::Serialize;

use super::{RegistryError, SkippedLayers};

/// The kind of a lookup failure: a closed set, one lower snake case label value each.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LookupFailureKind {
    /// No HTTP answer: connection refused, DNS or TLS failure.
    Unreachable,
    /// The registry (or its token service) refused the credentials, or none were given.
    Unauthorized,
    /// The image, its tag or its repository does not exist.
    NotFound,
    /// No answer within the time allowed (the client's timeout or the request's deadline).
    Deadline,
    /// The registry answered, but with content that failed its checks: a digest mismatch, a
    /// body over its limit, a malformed manifest or an unexpected status.
    InvalidContent,
    /// No valid signature within the read budget: layers that might have been signatures
    /// were left unread.
    OverBudget,
    /// The registry asked the client to slow down (HTTP 429).
    RateLimited,
    /// Anything else: a request that could not be sent, a failed lookup task.
    Other,
}

impl LookupFailureKind {
    /// Every kind, so that each metric series can exist from the start.
    pub const ALL: [LookupFailureKind; 8] = [
        LookupFailureKind::Unreachable,
        LookupFailureKind::Unauthorized,
        LookupFailureKind::NotFound,
        LookupFailureKind::Deadline,
        LookupFailureKind::InvalidContent,
        LookupFailureKind::OverBudget,
        LookupFailureKind::RateLimited,
        LookupFailureKind::Other,
    ];

    /// The lower snake case label value (`not_found`, `over_budget`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            LookupFailureKind::Unreachable => "unreachable",
            LookupFailureKind::Unauthorized => "unauthorized",
            LookupFailureKind::NotFound => "not_found",
            LookupFailureKind::Deadline => "deadline",
            LookupFailureKind::InvalidContent => "invalid_content",
            LookupFailureKind::OverBudget => "over_budget",
            LookupFailureKind::RateLimited => "rate_limited",
            LookupFailureKind::Other => "other",
        }
    }
}

impl fmt::Display for LookupFailureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a lookup gave no usable answer. The message is one line, for people; [`Self::kind`] is
/// for code.
#[derive(Debug, thiserror::Error)]
pub enum LookupFailure {
    /// The registry failed (the error keeps its own kind and source).
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// The caller's deadline passed before the lookup finished (it may still finish and fill
    /// the caches for later requests).
    #[error("registry {host} did not answer within {}", format_deadline(*after))]
    Deadline {
        /// The registry host asked.
        host: String,
        /// The deadline the caller gave.
        after: Duration,
    },
    /// The signature manifest was read, but nothing in it within the budgets: no valid
    /// signature, and why.
    #[error("no valid signature within the read budget: {skipped}")]
    OverBudget {
        /// The layers left unread, by reason.
        skipped: SkippedLayers,
    },
    /// The task running the lookup failed (panicked or was cancelled).
    // Not a `source`: the message already ends with it.
    #[error("registry lookup task failed: {0}")]
    Task(tokio::task::JoinError),
    /// Nothing was asked: no policy governs the image, so the lookup was not needed.
    #[error("not looked up")]
    NotLookedUp,
}

impl LookupFailure {
    /// The kind, for metric labels and decisions by kind.
    pub fn kind(&self) -> LookupFailureKind {
        match self {
            LookupFailure::Registry(e) => e.failure_kind(),
            LookupFailure::Deadline { .. } => LookupFailureKind::Deadline,
            LookupFailure::OverBudget { .. } => LookupFailureKind::OverBudget,
            LookupFailure::Task(_) | LookupFailure::NotLookedUp => LookupFailureKind::Other,
        }
    }
}

/// `8s`, `1500ms`: the webhook's duration grammar.
fn format_deadline(d: Duration) -> String {
    if d.subsec_millis() == 0 && d.as_secs() > 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::SkipReason;

    fn host() -> String {
        "registry.example.com".into()
    }

    /// Every registry error variant, with the kind it must be classified as.
    fn every_registry_error() -> Vec<(RegistryError, LookupFailureKind)> {
        use LookupFailureKind as K;
        vec![
            (
                RegistryError::Unreachable {
                    host: host(),
                    cause: "connection refused".into(),
                },
                K::Unreachable,
            ),
            (
                RegistryError::Timeout {
                    host: host(),
                    after: Duration::from_secs(5),
                },
                K::Deadline,
            ),
            (
                RegistryError::Unauthorized {
                    host: host(),
                    target: "pull of prod/app".into(),
                    detail: "HTTP 401: authentication required".into(),
                },
                K::Unauthorized,
            ),
            (
                RegistryError::NotFound {
                    host: host(),
                    what: "manifest prod/app:v1".into(),
                },
                K::NotFound,
            ),
            (
                RegistryError::DigestMismatch {
                    host: host(),
                    what: "manifest prod/app:v1".into(),
                    expected: "sha256:aa".into(),
                    actual: "sha256:bb".into(),
                },
                K::InvalidContent,
            ),
            (
                RegistryError::too_large(&host(), "manifest prod/app:v1", 4 << 20),
                K::InvalidContent,
            ),
            (
                RegistryError::RateLimited {
                    host: host(),
                    what: "manifest prod/app:v1".into(),
                    detail: "HTTP 429: slow down".into(),
                },
                K::RateLimited,
            ),
            (
                RegistryError::bad_response(&host(), "manifest prod/app:v1", "HTTP 500: boom"),
                K::InvalidContent,
            ),
            (
                RegistryError::Malformed {
                    host: host(),
                    what: "prod/app:sha256-aa.sig".into(),
                    cause: crate::signature::SignatureError::MalformedManifest("no layers".into()),
                },
                K::InvalidContent,
            ),
            (
                RegistryError::invalid_config("CA file /x", "not found"),
                K::Other,
            ),
            (
                RegistryError::InvalidRequest {
                    host: host(),
                    reason: "bad digest".into(),
                },
                K::Other,
            ),
        ]
    }

    #[test]
    fn every_registry_error_has_its_kind() {
        for (error, kind) in every_registry_error() {
            assert_eq!(error.failure_kind(), kind, "{error:?}");
            let text = error.to_string();
            let failure = LookupFailure::from(error);
            assert_eq!(failure.kind(), kind);
            // Classified, not rewritten: the text people read is the registry's.
            assert_eq!(failure.to_string(), text);
        }
    }

    #[test]
    fn lookup_failures_have_their_kinds_and_texts() {
        let deadline = LookupFailure::Deadline {
            host: host(),
            after: Duration::from_millis(1500),
        };
        assert_eq!(deadline.kind(), LookupFailureKind::Deadline);
        assert_eq!(
            deadline.to_string(),
            "registry registry.example.com did not answer within 1500ms"
        );
        let mut skipped = SkippedLayers::default();
        skipped.add(SkipReason::OverBudget, 3);
        let over = LookupFailure::OverBudget { skipped };
        assert_eq!(over.kind(), LookupFailureKind::OverBudget);
        assert_eq!(
            over.to_string(),
            "no valid signature within the read budget: 3 layers skipped: over the 262144-byte budget of a lookup"
        );
        fn shared<T: Send + Sync + 'static>(_: &T) {}
        shared(&std::sync::Arc::new(LookupFailure::NotLookedUp));
        assert_eq!(LookupFailure::NotLookedUp.kind(), LookupFailureKind::Other);
    }

    #[test]
    fn timeouts_keep_the_unreachable_wording() {
        let e = RegistryError::Timeout {
            host: host(),
            after: Duration::from_secs(5),
        };
        assert_eq!(
            e.to_string(),
            "registry registry.example.com is unreachable: no answer within 5s"
        );
        assert!(e.is_unreachable());
    }

    #[test]
    fn label_values_are_distinct_snake_case() {
        let labels: std::collections::BTreeSet<&str> =
            LookupFailureKind::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(labels.len(), LookupFailureKind::ALL.len());
        for label in labels {
            assert!(
                label.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
                "{label}"
            );
        }
        assert_eq!(
            serde_json::to_string(&LookupFailureKind::OverBudget).ok(),
            Some("\"over_budget\"".to_string())
        );
    }
}
