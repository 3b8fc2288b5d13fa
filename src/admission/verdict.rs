//! What the judge keeps of one image's verdict ([`CachedVerdict`]), how long it keeps it, and
//! the key it keeps it under.

use std::time::Duration;

use sha2::Digest as _;

use super::lookup::LookupTimings;
use crate::policy::ImageVerdict;
#[cfg(test)]
use crate::reference::ImageRef;

/// How long a failing verdict is reused at most: short, the image may be signed in a moment.
const FAILED_VERDICT_TTL: Duration = Duration::from_secs(10);

/// What the engine said about one image, kept small: 100,000 of them must fit in a few MiB.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct CachedVerdict {
    /// The image may run: every governing `Enforce` policy passed (or none governs and
    /// `--no-match` allows).
    pub allowed: bool,
    /// Governed, and every `Enforce` policy passed: `/mutate` pins the digest, whatever `DryRun`
    /// policies say (pinning must not depend on a policy that is only being tried out).
    pub pinnable: bool,
    /// Governed, and every policy passed, `DryRun` ones included (the audit's verified images).
    pub verified: bool,
    /// The one-line denial, when not allowed.
    pub denial: Option<Box<str>>,
    /// One line per failing `DryRun` policy.
    pub warnings: Box<[Box<str>]>,
}

impl CachedVerdict {
    pub(crate) fn of(verdict: &ImageVerdict) -> Self {
        CachedVerdict {
            allowed: verdict.allowed,
            pinnable: verdict.allowed && !verdict.policies.is_empty(),
            verified: verdict.allowed && !verdict.dry_run && !verdict.policies.is_empty(),
            denial: verdict.denial_message().map(String::into_boxed_str),
            warnings: verdict
                .warnings()
                .into_iter()
                .map(String::into_boxed_str)
                .collect(),
        }
    }
}

impl CachedVerdict {
    /// Allowed verdicts live as long as the signatures they were judged from; failing ones
    /// briefly.
    pub(crate) fn ttl(&self, timings: &LookupTimings) -> Duration {
        if self.allowed {
            timings.signatures_ttl
        } else {
            FAILED_VERDICT_TTL.min(timings.signatures_ttl)
        }
    }

    /// A verdict that denies with `denial`.
    pub fn denied(denial: String) -> Self {
        CachedVerdict {
            allowed: false,
            pinnable: false,
            verified: false,
            denial: Some(denial.into_boxed_str()),
            warnings: Box::new([]),
        }
    }

    /// The verdict of an image that verified without warnings: nearly every cached verdict is
    /// this one, so they all share one allocation.
    pub(crate) fn plain_verified() -> Self {
        CachedVerdict {
            allowed: true,
            pinnable: true,
            verified: true,
            denial: None,
            warnings: Box::new([]),
        }
    }
}

/// The key of a verdict from the reference itself (tests; requests use [`verdict_key_of`]).
#[cfg(test)]
fn verdict_key(generation: u64, namespace: &str, image: &ImageRef, digest: &str) -> [u8; 16] {
    verdict_key_of(generation, namespace, &image.to_string(), digest)
}

/// 128 bits of SHA-256 over what a verdict depends on: snapshot generation, namespace (policies
/// differ per namespace), the normalised reference (a `Default` signature binds the tag) and
/// the digest. A fixed-size key keeps 100,000 cached verdicts small.
/// The normalised reference text is kept with the parsed reference, so it is not rebuilt.
pub(crate) fn verdict_key_of(
    generation: u64,
    namespace: &str,
    normalised: &str,
    digest: &str,
) -> [u8; 16] {
    let mut hasher = sha2::Sha256::new();
    hasher.update(generation.to_be_bytes());
    for part in [namespace, normalised, digest] {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part.as_bytes());
    }
    let full = hasher.finalize();
    let mut key = [0u8; 16];
    key.copy_from_slice(&full[..16]);
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdict_keys_separate_namespace_tag_digest_and_generation() {
        let a = ImageRef::parse("r.example/app:v1").ok();
        let b = ImageRef::parse("r.example/app:v2").ok();
        let (Some(a), Some(b)) = (a, b) else {
            panic!("test references parse");
        };
        let base = verdict_key(1, "ns", &a, "sha256:1");
        assert_ne!(base, verdict_key(2, "ns", &a, "sha256:1"));
        assert_ne!(base, verdict_key(1, "other", &a, "sha256:1"));
        assert_ne!(base, verdict_key(1, "ns", &b, "sha256:1"));
        assert_ne!(base, verdict_key(1, "ns", &a, "sha256:2"));
        assert_eq!(base, verdict_key(1, "ns", &a, "sha256:1"));
    }

    #[test]
    fn allowed_verdicts_live_as_long_as_the_signatures() {
        let timings = LookupTimings {
            signatures_ttl: Duration::from_secs(30),
            ..LookupTimings::default()
        };
        assert_eq!(
            CachedVerdict::plain_verified().ttl(&timings),
            Duration::from_secs(30)
        );
        assert_eq!(
            CachedVerdict::denied("no".into()).ttl(&timings),
            FAILED_VERDICT_TTL
        );
        let short = LookupTimings {
            signatures_ttl: Duration::from_secs(2),
            ..timings
        };
        assert_eq!(
            CachedVerdict::denied("no".into()).ttl(&short),
            Duration::from_secs(2)
        );
    }
}
