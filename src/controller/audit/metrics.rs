//! The audit's Prometheus series, in their own registry (no prefix: the names are
//! `signet_audit_*`), which the webhook attaches to its `/metrics` and `signet audit --watch`
//! serves alone:
//!
//! - `signet_audit_pods{result}`: running pods by their worst container's result;
//! - `signet_audit_images{result,namespace}`: distinct images (reference and digest) per
//!   namespace by result;
//! - `signet_audit_registry_lookups_total{operation}`: lookups the audit asked for (`resolve`,
//!   `signatures`, `refresh`), served from the shared caches or the registry;
//! - `signet_audit_runs_total`: evaluations of every running pod.
//!
//! Label values are lower snake case; the `result` series of pods exist from the start, a
//! namespace's image series from its first pod until its last is gone.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::judge::{AuditResult, Summary};

impl EncodeLabelValue for AuditResult {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> std::fmt::Result {
        std::fmt::Write::write_str(encoder, self.as_str())
    }
}

/// A registry lookup the audit asked for.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum LookupOperation {
    /// A tag resolved (pods with no running digest).
    Resolve,
    /// A signature set read for a digest first seen.
    Signatures,
    /// A signature set read again on the interval.
    Refresh,
}

impl EncodeLabelValue for LookupOperation {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> std::fmt::Result {
        std::fmt::Write::write_str(
            encoder,
            match self {
                LookupOperation::Resolve => "resolve",
                LookupOperation::Signatures => "signatures",
                LookupOperation::Refresh => "refresh",
            },
        )
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: AuditResult,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ImageLabels {
    result: AuditResult,
    namespace: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabels {
    operation: LookupOperation,
}

/// The audit's metrics.
pub struct AuditMetrics {
    pods: Family<ResultLabels, Gauge>,
    images: Family<ImageLabels, Gauge>,
    lookups: Family<OperationLabels, Counter>,
    runs: Counter,
    /// Namespaces with image series, to remove those whose pods are gone.
    namespaces: Mutex<BTreeSet<String>>,
}

impl Default for AuditMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl AuditMetrics {
    /// The series, at zero.
    pub fn new() -> Self {
        let metrics = AuditMetrics {
            pods: Family::default(),
            images: Family::default(),
            lookups: Family::default(),
            runs: Counter::default(),
            namespaces: Mutex::new(BTreeSet::new()),
        };
        for result in AuditResult::ALL {
            metrics.pods.get_or_create(&ResultLabels { result }).set(0);
        }
        for operation in [
            LookupOperation::Resolve,
            LookupOperation::Signatures,
            LookupOperation::Refresh,
        ] {
            drop(
                metrics
                    .lookups
                    .get_or_create(&OperationLabels { operation }),
            );
        }
        metrics
    }

    /// A registry (no prefix) holding these series, to encode alone or attach to another
    /// exposition.
    pub fn registry(&self) -> Registry {
        let mut registry = Registry::default();
        self.register_into(&mut registry);
        registry
    }

    /// Registers these series (by their full names) into `registry`.
    pub fn register_into(&self, registry: &mut Registry) {
        registry.register(
            "signet_audit_pods",
            "Running pods by audit result (their worst image's)",
            self.pods.clone(),
        );
        registry.register(
            "signet_audit_images",
            "Distinct running images (reference and digest) by audit result and namespace",
            self.images.clone(),
        );
        registry.register(
            "signet_audit_registry_lookups",
            "Registry lookups the audit asked for, by operation",
            self.lookups.clone(),
        );
        registry.register(
            "signet_audit_runs",
            "Evaluations of every running pod",
            self.runs.clone(),
        );
    }

    /// The text exposition of these series alone.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry())?;
        Ok(out)
    }

    /// Counts `n` lookups of `operation`.
    pub fn lookups(&self, operation: LookupOperation, n: usize) {
        self.lookups
            .get_or_create(&OperationLabels { operation })
            .inc_by(n as u64);
    }

    /// Sets the gauges from one run's counts.
    pub fn publish(&self, pods: &Summary, images: &BTreeMap<String, Summary>) {
        self.runs.inc();
        for result in AuditResult::ALL {
            self.pods
                .get_or_create(&ResultLabels { result })
                .set(i64::try_from(pods.get(result)).unwrap_or(i64::MAX));
        }
        let mut known = self.namespaces.lock().unwrap_or_else(|p| p.into_inner());
        for gone in known.iter().filter(|ns| !images.contains_key(*ns)) {
            for result in AuditResult::ALL {
                self.images.remove(&ImageLabels {
                    result,
                    namespace: gone.clone(),
                });
            }
        }
        *known = images.keys().cloned().collect();
        for (namespace, summary) in images {
            for result in AuditResult::ALL {
                self.images
                    .get_or_create(&ImageLabels {
                        result,
                        namespace: namespace.clone(),
                    })
                    .set(i64::try_from(summary.get(result)).unwrap_or(i64::MAX));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_follow_the_namespaces_that_run_pods() {
        let metrics = AuditMetrics::new();
        let start = metrics.encode().unwrap_or_default();
        assert!(
            start.contains("signet_audit_pods{result=\"fail\"} 0"),
            "{start}"
        );
        assert!(start.contains("signet_audit_registry_lookups_total{operation=\"refresh\"} 0"));
        let mut shop = Summary::default();
        shop.add(AuditResult::Pass);
        shop.add(AuditResult::Fail);
        let images = BTreeMap::from([("shop".to_string(), shop)]);
        metrics.publish(&shop, &images);
        let text = metrics.encode().unwrap_or_default();
        assert!(
            text.contains("signet_audit_pods{result=\"fail\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("signet_audit_images{result=\"pass\",namespace=\"shop\"} 1"),
            "{text}"
        );
        metrics.publish(&Summary::default(), &BTreeMap::new());
        let text = metrics.encode().unwrap_or_default();
        assert!(!text.contains("namespace=\"shop\""), "{text}");
        assert!(text.contains("signet_audit_runs_total 2"), "{text}");
    }

    #[test]
    fn the_webhook_exposition_carries_the_audit_series_from_start() {
        let webhook = crate::admission::Metrics::new();
        let text = webhook.encode().unwrap_or_default();
        assert!(text.contains("signet_webhook_admissions_total"), "{text}");
        assert!(text.contains("# TYPE signet_audit_pods gauge"), "{text}");
        assert!(
            text.contains("signet_audit_pods{result=\"fail\"} 0"),
            "{text}"
        );
        // The audit loop updates the same series the webhook serves.
        webhook
            .audit()
            .publish(&Summary::default(), &BTreeMap::new());
        let text = webhook.encode().unwrap_or_default();
        assert!(text.contains("signet_audit_runs_total 1"), "{text}");
    }
}
