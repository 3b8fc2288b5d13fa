//! The webhook's Prometheus metrics (prefix `signet_webhook_`): admissions by endpoint and
//! result, decision latency, registry lookups by registry, operation and outcome, cache hits and
//! misses, lookups in flight; beside them the series every signet server exports
//! ([`crate::metrics::common`]: build, process, policy picture, certificate). Served at
//! `/metrics` on the admission port and on `--metrics-listen`.
//!
//! Every label value is lower snake case, and every series whose labels are known at start
//! exists from start at zero, so that ratios and `rate()` alerts have data on a quiet pod. The
//! one label not known at start is `registry` (the hosts workloads name): all of a registry's
//! series appear at its first lookup, and past [`MAX_REGISTRY_LABELS`] hosts further ones are
//! counted as `other`, so that workloads naming ever new hosts cannot grow the series without
//! bound.

use std::collections::HashSet;
use std::sync::atomic::AtomicI64;
use std::sync::{Arc, Mutex};

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::controller::audit::AuditMetrics;
use crate::metrics::labels::label_enum;
use crate::metrics::{CommonMetrics, Format, render};
use crate::registry::LookupFailureKind;

/// Distinct `registry` label values kept; further hosts are counted as `other`.
pub const MAX_REGISTRY_LABELS: usize = 64;

label_enum! {
    /// What an admission request ended in.
    pub enum AdmissionResult {
        /// Every image passed (or nothing to check: other kinds, no-match allow, exempt namespace).
        Allowed => "allowed",
        /// At least one image failed an `Enforce` policy.
        Denied => "denied",
        /// Allowed, but a `DryRun` policy failed.
        Dryrun => "dry_run",
        /// Admitted by the breakglass annotation.
        Breakglass => "breakglass",
        /// The request could not be read (not an AdmissionReview, unreadable workload).
        Error => "error",
    }
}

label_enum! {
    /// Which route answered.
    pub enum Endpoint {
        /// `POST /validate`: decides.
        Validate => "validate",
        /// `POST /mutate`: pins verified digests, never denies.
        Mutate => "mutate",
    }
}

label_enum! {
    /// What one re-read of the push-to-deploy grace found.
    pub enum GraceOutcome {
        /// Still no signature.
        StillUnsigned => "still_unsigned",
        /// Signatures arrived (and were judged).
        Arrived => "arrived",
    }
}

label_enum! {
    /// One registry operation of a lookup.
    pub enum RegistryOperation {
        /// Tag to digest.
        Resolve => "resolve",
        /// One store of signatures: the `.sig` manifest and its payload blobs, or the referrers
        /// (list, manifests, blobs); a staged lookup reads one or both.
        Signatures => "signatures",
    }
}

label_enum! {
    /// The caches whose hits are counted.
    pub enum CacheName {
        /// (image, digest, namespace, snapshot generation) -> verdict.
        Verdict => "verdict",
        /// tag -> digest.
        Digest => "digest",
        /// (repository, digest) -> signatures.
        Signatures => "signatures",
        /// Recent registry failures.
        Failure => "failure",
    }
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

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GraceLabels {
    outcome: GraceOutcome,
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
        use std::fmt::Write as _;
        encoder.write_str(self.as_str())
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RegistryLabels {
    registry: String,
    operation: RegistryOperation,
    outcome: RegistryOutcome,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabels {
    operation: RegistryOperation,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CacheLabels {
    cache: CacheName,
}

/// Handles on the series every admission records, indexed by the label enums' positions
/// (handles share their value with the family's series).
struct HotSeries {
    /// `[endpoint][result]`.
    admissions: Vec<Vec<Counter>>,
    /// `[endpoint]`.
    latency: Vec<Histogram>,
    /// `[cache]`.
    cache_hits: Vec<Counter>,
    /// `[cache]`.
    cache_misses: Vec<Counter>,
}

/// Every metric the webhook exports, registered in one registry.
pub struct Metrics {
    registry: Registry,
    common: CommonMetrics,
    registry_requests: Family<RegistryLabels, Counter>,
    registry_latency: Family<OperationLabels, Histogram>,
    /// The `registry` label values in use (at most [`MAX_REGISTRY_LABELS`]).
    registries: Mutex<HashSet<String>>,
    /// The per-request series, resolved once: a family lookup hashes its labels under a lock,
    /// and each admission records a handful of these.
    hot: HotSeries,
    in_flight: Gauge<i64, AtomicI64>,
    events_dropped: Counter,
    signing_grace: Family<GraceLabels, Counter>,
    /// The audit's `signet_audit_*` series: registered here so that they exist from start (at
    /// zero while `--audit` is off), in the one exposition every server serves.
    audit: Arc<AuditMetrics>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates and registers every metric, each labelled series at zero.
    pub fn new() -> Self {
        let mut root = Registry::default();
        let common = CommonMetrics::register(&mut root);
        let audit = Arc::new(AuditMetrics::new());
        audit.register_into(&mut root);
        let registry = root.sub_registry_with_prefix("signet_webhook");
        let admissions = Family::<AdmissionLabels, Counter>::default();
        registry.register(
            "admissions",
            "Admission reviews answered, by endpoint (validate, mutate) and result (allowed, denied, dry_run, breakglass, error)",
            admissions.clone(),
        );
        // 0.25 ms .. ~8 s: cached answers take well under a millisecond, cold ones a few
        // registry round trips, and the deadline caps everything at 8 s by default.
        let latency = Family::<EndpointLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.00025, 2.0, 16))
        });
        registry.register(
            "admission_duration_seconds",
            "Time from admission request received to answer ready, by endpoint",
            latency.clone(),
        );
        let registry_requests = Family::<RegistryLabels, Counter>::default();
        registry.register(
            "registry_requests",
            "Registry operations of signature lookups, by registry host, operation (resolve, signatures) and outcome (success or the failure's kind)",
            registry_requests.clone(),
        );
        let registry_latency = Family::<OperationLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.001, 2.0, 14))
        });
        registry.register(
            "registry_request_duration_seconds",
            "Duration of registry operations, by operation",
            registry_latency.clone(),
        );
        let cache_hits = Family::<CacheLabels, Counter>::default();
        registry.register(
            "cache_hits",
            "Cache hits, by cache (verdict, digest, signatures, failure)",
            cache_hits.clone(),
        );
        let cache_misses = Family::<CacheLabels, Counter>::default();
        registry.register(
            "cache_misses",
            "Cache misses, by cache (verdict, digest, signatures, failure)",
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
            "Kubernetes events not posted because the same one was posted recently",
            events_dropped.clone(),
        );
        let signing_grace = Family::<GraceLabels, Counter>::default();
        registry.register(
            "signing_grace_checks",
            "Signature re-reads while waiting for the signer (push-to-deploy grace), by outcome",
            signing_grace.clone(),
        );
        // Every series whose labels are known exists from the start, at zero; those every
        // admission records are kept as handles (`ALL` lists each enum in declaration order,
        // so a value's position is `value as usize`).
        let hot = HotSeries {
            admissions: Endpoint::ALL
                .iter()
                .map(|&endpoint| {
                    AdmissionResult::ALL
                        .iter()
                        .map(|&result| {
                            admissions
                                .get_or_create(&AdmissionLabels { endpoint, result })
                                .clone()
                        })
                        .collect()
                })
                .collect(),
            latency: Endpoint::ALL
                .iter()
                .map(|&endpoint| latency.get_or_create(&EndpointLabels { endpoint }).clone())
                .collect(),
            cache_hits: CacheName::ALL
                .iter()
                .map(|&cache| cache_hits.get_or_create(&CacheLabels { cache }).clone())
                .collect(),
            cache_misses: CacheName::ALL
                .iter()
                .map(|&cache| cache_misses.get_or_create(&CacheLabels { cache }).clone())
                .collect(),
        };
        for &outcome in GraceOutcome::ALL {
            drop(signing_grace.get_or_create(&GraceLabels { outcome }));
        }
        for &operation in RegistryOperation::ALL {
            drop(registry_latency.get_or_create(&OperationLabels { operation }));
        }
        Metrics {
            registry: root,
            common,
            registry_requests,
            registry_latency,
            registries: Mutex::new(HashSet::new()),
            hot,
            in_flight,
            events_dropped,
            signing_grace,
            audit,
        }
    }

    /// The audit's series, for the audit loop to update.
    pub fn audit(&self) -> Arc<AuditMetrics> {
        Arc::clone(&self.audit)
    }

    /// The series every server exports (policy picture, certificate).
    pub fn common(&self) -> &CommonMetrics {
        &self.common
    }

    /// Every metric, for `/metrics`.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Counts one signature re-read of the push-to-deploy grace.
    pub fn signing_grace(&self, outcome: GraceOutcome) {
        self.signing_grace
            .get_or_create(&GraceLabels { outcome })
            .inc();
    }

    /// Counts one answered review and its latency.
    pub fn admission(&self, endpoint: Endpoint, result: AdmissionResult, seconds: f64) {
        if let Some(counter) = self
            .hot
            .admissions
            .get(endpoint as usize)
            .and_then(|by_result| by_result.get(result as usize))
        {
            counter.inc();
        }
        if let Some(histogram) = self.hot.latency.get(endpoint as usize) {
            histogram.observe(seconds);
        }
    }

    /// Counts one registry operation against the registry `host`.
    pub fn registry_request(
        &self,
        host: &str,
        operation: RegistryOperation,
        outcome: RegistryOutcome,
        seconds: f64,
    ) {
        let registry = self.registry_label(host);
        self.registry_requests
            .get_or_create(&RegistryLabels {
                registry,
                operation,
                outcome,
            })
            .inc();
        self.registry_latency
            .get_or_create(&OperationLabels { operation })
            .observe(seconds);
    }

    /// The `registry` label for `host`: the host itself (its series all created at zero the
    /// first time), or `other` past [`MAX_REGISTRY_LABELS`].
    fn registry_label(&self, host: &str) -> String {
        let mut known = self.registries.lock().unwrap_or_else(|p| p.into_inner());
        let label = if known.contains(host) {
            return host.to_string();
        } else if known.len() < MAX_REGISTRY_LABELS - 1 || host == "other" {
            host.to_string()
        } else {
            "other".to_string()
        };
        if known.insert(label.clone()) {
            for &operation in RegistryOperation::ALL {
                for outcome in RegistryOutcome::all() {
                    drop(self.registry_requests.get_or_create(&RegistryLabels {
                        registry: label.clone(),
                        operation,
                        outcome,
                    }));
                }
            }
        }
        label
    }

    /// Counts a cache hit (`true`) or miss.
    pub fn cache(&self, cache: CacheName, hit: bool) {
        let series = if hit {
            &self.hot.cache_hits
        } else {
            &self.hot.cache_misses
        };
        if let Some(counter) = series.get(cache as usize) {
            counter.inc();
        }
    }

    /// Counts `hits` cache hits at once: one update of the shared counter for the images of a
    /// request, not one per image.
    pub fn cache_hits(&self, cache: CacheName, hits: u64) {
        if hits == 0 {
            return;
        }
        if let Some(counter) = self.hot.cache_hits.get(cache as usize) {
            counter.inc_by(hits);
        }
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

    /// The Prometheus text exposition (what `/metrics` answers a client that does not ask for
    /// OpenMetrics).
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        render(&self.registry, Format::PrometheusText)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KINDS: [&str; 9] = [
        "success",
        "unreachable",
        "unauthorized",
        "not_found",
        "deadline",
        "invalid_content",
        "over_budget",
        "rate_limited",
        "other",
    ];

    #[test]
    fn known_series_are_present_from_start_in_snake_case() {
        let text = Metrics::new().encode().unwrap_or_default();
        for endpoint in ["validate", "mutate"] {
            for result in ["allowed", "denied", "dry_run", "breakglass", "error"] {
                let series = format!(
                    "signet_webhook_admissions_total{{endpoint=\"{endpoint}\",result=\"{result}\"}} 0"
                );
                assert!(text.contains(&series), "{series} missing from\n{text}");
            }
            let count = format!(
                "signet_webhook_admission_duration_seconds_count{{endpoint=\"{endpoint}\"}} 0"
            );
            assert!(text.contains(&count), "{count} missing from\n{text}");
        }
        for cache in ["verdict", "digest", "signatures", "failure"] {
            for family in ["hits", "misses"] {
                let series = format!("signet_webhook_cache_{family}_total{{cache=\"{cache}\"}} 0");
                assert!(text.contains(&series), "{series} missing from\n{text}");
            }
        }
        for operation in ["resolve", "signatures"] {
            let count = format!(
                "signet_webhook_registry_request_duration_seconds_count{{operation=\"{operation}\"}} 0"
            );
            assert!(text.contains(&count), "{count} missing from\n{text}");
        }
        assert!(text.contains("signet_build_info{version="), "{text}");
        // No upper case in any label value.
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            if let Some(labels) = line.split('{').nth(1).and_then(|l| l.split('}').next()) {
                // `+Inf` is the format's own bucket bound, not a label value of ours.
                let labels = labels.replace("le=\"+Inf\"", "");
                assert!(
                    !labels.chars().any(|c| c.is_ascii_uppercase()),
                    "upper case label value in {line}"
                );
            }
        }
    }

    #[test]
    fn a_registry_gets_every_outcome_at_its_first_lookup() {
        let metrics = Metrics::new();
        metrics.registry_request(
            "registry.example.com",
            RegistryOperation::Signatures,
            RegistryOutcome::Failed(LookupFailureKind::OverBudget),
            0.01,
        );
        let text = metrics.encode().unwrap_or_default();
        assert!(
            text.contains(
                "signet_webhook_registry_requests_total{registry=\"registry.example.com\",operation=\"signatures\",outcome=\"over_budget\"} 1"
            ),
            "{text}"
        );
        for operation in ["resolve", "signatures"] {
            for outcome in KINDS {
                let series = format!(
                    "signet_webhook_registry_requests_total{{registry=\"registry.example.com\",operation=\"{operation}\",outcome=\"{outcome}\"}}"
                );
                assert!(text.contains(&series), "{series} missing from\n{text}");
            }
        }
        assert_eq!(
            text.matches("signet_webhook_registry_requests_total{")
                .count(),
            2 * KINDS.len()
        );
    }

    #[test]
    fn registry_labels_are_bounded() {
        let metrics = Metrics::new();
        for i in 0..(MAX_REGISTRY_LABELS + 10) {
            metrics.registry_request(
                &format!("r{i}.example.com"),
                RegistryOperation::Resolve,
                RegistryOutcome::Success,
                0.001,
            );
        }
        let text = metrics.encode().unwrap_or_default();
        let hosts: HashSet<&str> = text
            .lines()
            .filter(|l| l.starts_with("signet_webhook_registry_requests_total{"))
            .filter_map(|l| l.split('"').nth(1))
            .collect();
        assert_eq!(hosts.len(), MAX_REGISTRY_LABELS, "{hosts:?}");
        assert!(hosts.contains("other"));
        assert!(
            text.contains(
                "signet_webhook_registry_requests_total{registry=\"other\",operation=\"resolve\",outcome=\"success\"} 11"
            ),
            "{text}"
        );
    }
}
