//! The webhook's Prometheus metrics: admissions by result, decision latency, registry lookups by
//! outcome and latency, cache hits and misses, lookups in flight. Served at `/metrics`.

use std::fmt::Write as _;
use std::sync::atomic::AtomicI64;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::registry::LookupFailureKind;

/// What an admission request ended in.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
pub enum AdmissionResult {
    /// Every image passed (or nothing to check: other kinds, no-match allow, exempt namespace).
    Allowed,
    /// At least one image failed an `Enforce` policy.
    Denied,
    /// Allowed, but a `DryRun` policy failed.
    Dryrun,
    /// Admitted by the breakglass annotation.
    Breakglass,
    /// The request could not be read (not an AdmissionReview, unreadable workload).
    Error,
}

/// Which route answered.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
pub enum Endpoint {
    /// `POST /validate`: decides.
    Validate,
    /// `POST /mutate`: pins verified digests, never denies.
    Mutate,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AdmissionLabels {
    endpoint: Endpoint,
    result: AdmissionResult,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndpointLabels {
    endpoint: Endpoint,
}

/// What one re-read of the push-to-deploy grace found (label values `still_unsigned`,
/// `arrived`).
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum GraceOutcome {
    /// Still no signature.
    StillUnsigned,
    /// Signatures arrived (and were judged).
    Arrived,
}

impl GraceOutcome {
    /// Every outcome, for series present from start.
    pub const ALL: [GraceOutcome; 2] = [GraceOutcome::StillUnsigned, GraceOutcome::Arrived];
}

impl EncodeLabelValue for GraceOutcome {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> std::fmt::Result {
        encoder.write_str(match self {
            GraceOutcome::StillUnsigned => "still_unsigned",
            GraceOutcome::Arrived => "arrived",
        })
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GraceLabels {
    outcome: GraceOutcome,
}

/// One registry operation of a lookup (label values `resolve`, `signatures`).
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum RegistryOperation {
    /// Tag to digest.
    Resolve,
    /// The `.sig` manifest and its payload blobs.
    Signatures,
}

impl RegistryOperation {
    /// Every operation.
    pub const ALL: [RegistryOperation; 2] =
        [RegistryOperation::Resolve, RegistryOperation::Signatures];

    /// The lower snake case label value.
    pub fn as_str(self) -> &'static str {
        match self {
            RegistryOperation::Resolve => "resolve",
            RegistryOperation::Signatures => "signatures",
        }
    }
}

impl EncodeLabelValue for RegistryOperation {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> std::fmt::Result {
        encoder.write_str(self.as_str())
    }
}

/// How a registry operation ended: label values `success`, or the failure's kind
/// (`unreachable`, `unauthorized`, `not_found`, `deadline`, `invalid_content`, `over_budget`,
/// `rate_limited`, `other`).
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum RegistryOutcome {
    /// An answer was used (including "no signatures").
    Success,
    /// No usable answer, for this reason.
    Failed(LookupFailureKind),
}

impl RegistryOutcome {
    /// Every outcome, so that each series exists from the start.
    pub fn all() -> impl Iterator<Item = RegistryOutcome> {
        std::iter::once(RegistryOutcome::Success).chain(
            LookupFailureKind::ALL
                .into_iter()
                .map(RegistryOutcome::Failed),
        )
    }

    /// The lower snake case label value.
    pub fn as_str(self) -> &'static str {
        match self {
            RegistryOutcome::Success => "success",
            RegistryOutcome::Failed(kind) => kind.as_str(),
        }
    }
}

impl EncodeLabelValue for RegistryOutcome {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> std::fmt::Result {
        encoder.write_str(self.as_str())
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RegistryLabels {
    operation: RegistryOperation,
    outcome: RegistryOutcome,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabels {
    operation: RegistryOperation,
}

/// The caches whose hits are counted.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
pub enum CacheName {
    /// (image, digest, namespace, snapshot generation) -> verdict.
    Verdict,
    /// tag -> digest.
    Digest,
    /// (repository, digest) -> signatures.
    Signatures,
    /// Recent registry failures.
    Failure,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CacheLabels {
    cache: CacheName,
}

/// Every metric the webhook exports, registered in one registry.
pub struct Metrics {
    registry: Registry,
    admissions: Family<AdmissionLabels, Counter>,
    latency: Family<EndpointLabels, Histogram>,
    registry_requests: Family<RegistryLabels, Counter>,
    registry_latency: Family<OperationLabels, Histogram>,
    cache_hits: Family<CacheLabels, Counter>,
    cache_misses: Family<CacheLabels, Counter>,
    in_flight: Gauge<i64, AtomicI64>,
    events_dropped: Counter,
    signing_grace: Family<GraceLabels, Counter>,
    /// Series of other parts (the audit's `signet_audit_*`), encoded after these.
    attached: std::sync::OnceLock<Registry>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates and registers every metric (prefix `signet_webhook_`).
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("signet_webhook");
        let admissions = Family::<AdmissionLabels, Counter>::default();
        registry.register(
            "admissions",
            "Admission reviews answered, by endpoint and result",
            admissions.clone(),
        );
        // 0.25 ms .. ~8 s: cached answers take well under a millisecond, cold ones a few
        // registry round trips, and the deadline caps everything at 8 s by default.
        let latency = Family::<EndpointLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.00025, 2.0, 16))
        });
        registry.register(
            "admission_duration_seconds",
            "Time from request received to answer ready",
            latency.clone(),
        );
        let registry_requests = Family::<RegistryLabels, Counter>::default();
        registry.register(
            "registry_requests",
            "Registry operations (resolve, signatures) by outcome",
            registry_requests.clone(),
        );
        let registry_latency = Family::<OperationLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.001, 2.0, 14))
        });
        registry.register(
            "registry_request_duration_seconds",
            "Duration of registry operations",
            registry_latency.clone(),
        );
        let cache_hits = Family::<CacheLabels, Counter>::default();
        registry.register("cache_hits", "Cache hits by cache", cache_hits.clone());
        let cache_misses = Family::<CacheLabels, Counter>::default();
        registry.register(
            "cache_misses",
            "Cache misses by cache",
            cache_misses.clone(),
        );
        let in_flight = Gauge::<i64, AtomicI64>::default();
        registry.register(
            "lookups_in_flight",
            "Registry lookups (per repository and digest or tag) running now",
            in_flight.clone(),
        );
        let events_dropped = Counter::default();
        registry.register(
            "events_suppressed",
            "Kubernetes events not posted because of the rate limit",
            events_dropped.clone(),
        );
        let signing_grace = Family::<GraceLabels, Counter>::default();
        registry.register(
            "signing_grace_checks",
            "Signature re-reads while waiting for the signer (push-to-deploy grace), by outcome",
            signing_grace.clone(),
        );
        for outcome in GraceOutcome::ALL {
            drop(signing_grace.get_or_create(&GraceLabels { outcome }));
        }
        // Every registry series exists from the start, at zero (the guards are released at once).
        for operation in RegistryOperation::ALL {
            for outcome in RegistryOutcome::all() {
                drop(registry_requests.get_or_create(&RegistryLabels { operation, outcome }));
            }
            drop(registry_latency.get_or_create(&OperationLabels { operation }));
        }
        Metrics {
            registry,
            admissions,
            latency,
            registry_requests,
            registry_latency,
            cache_hits,
            cache_misses,
            in_flight,
            events_dropped,
            signing_grace,
            attached: std::sync::OnceLock::new(),
        }
    }

    /// Counts one signature re-read of the push-to-deploy grace.
    pub fn signing_grace(&self, outcome: GraceOutcome) {
        self.signing_grace
            .get_or_create(&GraceLabels { outcome })
            .inc();
    }

    /// Counts one answered review and its latency.
    pub fn admission(&self, endpoint: Endpoint, result: AdmissionResult, seconds: f64) {
        self.admissions
            .get_or_create(&AdmissionLabels { endpoint, result })
            .inc();
        self.latency
            .get_or_create(&EndpointLabels { endpoint })
            .observe(seconds);
    }

    /// Counts one registry operation.
    pub fn registry_request(
        &self,
        operation: RegistryOperation,
        outcome: RegistryOutcome,
        seconds: f64,
    ) {
        self.registry_requests
            .get_or_create(&RegistryLabels { operation, outcome })
            .inc();
        self.registry_latency
            .get_or_create(&OperationLabels { operation })
            .observe(seconds);
    }

    /// Counts a cache hit (`true`) or miss.
    pub fn cache(&self, cache: CacheName, hit: bool) {
        let family = if hit {
            &self.cache_hits
        } else {
            &self.cache_misses
        };
        family.get_or_create(&CacheLabels { cache }).inc();
    }

    /// A lookup started (`+1`) or ended (`-1`).
    pub fn lookups_in_flight(&self, delta: i64) {
        self.in_flight.inc_by(delta);
    }

    /// The number of lookups running now.
    pub fn lookups_in_flight_now(&self) -> i64 {
        self.in_flight.get()
    }

    /// An event was not posted because the same one was posted recently.
    pub fn event_suppressed(&self) {
        self.events_dropped.inc();
    }

    /// Adds another registry's series to `/metrics` (its own names, no prefix); once.
    pub fn attach(&self, registry: Registry) -> bool {
        self.attached.set(registry).is_ok()
    }

    /// The text exposition format, for `/metrics`.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        use prometheus_client::encoding::text::{encode_eof, encode_registry};
        let mut out = String::with_capacity(4096);
        encode_registry(&mut out, &self.registry)?;
        if let Some(attached) = self.attached.get() {
            encode_registry(&mut out, attached)?;
        }
        encode_eof(&mut out)?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_registry_outcome_is_present_from_start() {
        let metrics = Metrics::new();
        let text = metrics.encode().unwrap_or_default();
        let mut labels = Vec::new();
        for operation in ["resolve", "signatures"] {
            for outcome in [
                "success",
                "unreachable",
                "unauthorized",
                "not_found",
                "deadline",
                "invalid_content",
                "over_budget",
                "rate_limited",
                "other",
            ] {
                let series = format!(
                    "signet_webhook_registry_requests_total{{operation=\"{operation}\",outcome=\"{outcome}\"}} 0"
                );
                assert!(text.contains(&series), "{series} missing from\n{text}");
                labels.push(outcome);
            }
            let count = format!(
                "signet_webhook_registry_request_duration_seconds_count{{operation=\"{operation}\"}} 0"
            );
            assert!(text.contains(&count), "{count} missing from\n{text}");
        }
        // Nothing else: the enum and this list agree.
        assert_eq!(
            text.matches("signet_webhook_registry_requests_total{")
                .count(),
            labels.len()
        );
    }

    #[test]
    fn a_failure_is_counted_under_its_kind() {
        let metrics = Metrics::new();
        metrics.registry_request(
            RegistryOperation::Signatures,
            RegistryOutcome::Failed(LookupFailureKind::OverBudget),
            0.01,
        );
        let text = metrics.encode().unwrap_or_default();
        assert!(
            text.contains(
                "signet_webhook_registry_requests_total{operation=\"signatures\",outcome=\"over_budget\"} 1"
            ),
            "{text}"
        );
    }
}
