//! The signer's Prometheus metrics, served at `GET /metrics` (prefix `signet_signer_`).

use std::fmt::Write as _;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// A `reason` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Reason {
    pub reason: String,
}

/// Why a rule covering an image did not sign it.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleSkip {
    /// A `Default` rule binds a tag, and the push named none.
    DefaultNeedsTag,
    /// A `Default` rule, and the event's tag no longer names (or never named) the event's
    /// digest: signing would bind the tag to an image it does not name.
    TagMoved,
}

impl RuleSkip {
    /// Every reason, so each series exists from the start.
    pub const ALL: [RuleSkip; 2] = [RuleSkip::DefaultNeedsTag, RuleSkip::TagMoved];

    /// The lower snake case label value.
    pub fn as_str(self) -> &'static str {
        match self {
            RuleSkip::DefaultNeedsTag => "default_needs_tag",
            RuleSkip::TagMoved => "tag_moved",
        }
    }
}

impl std::fmt::Display for RuleSkip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl EncodeLabelValue for RuleSkip {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> std::fmt::Result {
        encoder.write_str(self.as_str())
    }
}

/// A `reason` label naming a [`RuleSkip`].
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SkipLabel {
    pub reason: RuleSkip,
}

/// Counters and histograms; cheap to update from any task.
pub struct Metrics {
    registry: Registry,
    /// Events received (each event of each notification).
    pub events_received: Counter,
    /// Events not signed, by reason (`not_a_push`, `artifact_tag`, `out_of_scope`, ...).
    pub events_ignored: Family<Reason, Counter>,
    /// Signatures added to the registry.
    pub signed: Counter,
    /// Signatures that were already there (repeated events, several instances).
    pub already_signed: Counter,
    /// Rules not applied to an image, by reason (`default_needs_tag`, `tag_moved`).
    pub skipped: Family<SkipLabel, Counter>,
    /// Images that could not be signed, by reason (`registry`, `key`, `internal`).
    pub failed: Family<Reason, Counter>,
    /// Signature manifests found replaced by another writer right after a write (then redone).
    pub overwritten: Counter,
    /// Signatures a delayed recheck had to restore.
    pub recheck_restored: Counter,
    /// Signature manifests compacted because a write would have passed the layer cap.
    pub sig_compactions: Counter,
    /// Layers those compactions dropped (none verified under a configured key).
    pub sig_layers_dropped: Counter,
    /// From receiving an event to its signatures being in the registry.
    pub signing_latency: Histogram,
    /// Reconcile passes run.
    pub reconcile_runs: Counter,
    /// Signatures a reconcile pass found missing.
    pub reconcile_missing: Counter,
    /// Signatures a reconcile pass added.
    pub reconcile_signed: Counter,
    /// Images or repositories a reconcile pass could not handle.
    pub reconcile_failed: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Fresh metrics in their own registry.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("signet_signer");
        let m = Metrics {
            registry: Registry::default(),
            events_received: Counter::default(),
            events_ignored: Family::default(),
            signed: Counter::default(),
            already_signed: Counter::default(),
            skipped: Family::default(),
            failed: Family::default(),
            overwritten: Counter::default(),
            recheck_restored: Counter::default(),
            sig_compactions: Counter::default(),
            sig_layers_dropped: Counter::default(),
            signing_latency: Histogram::new(exponential_buckets(0.001, 2.0, 16)),
            reconcile_runs: Counter::default(),
            reconcile_missing: Counter::default(),
            reconcile_signed: Counter::default(),
            reconcile_failed: Counter::default(),
        };
        registry.register(
            "events_received",
            "Registry events received",
            m.events_received.clone(),
        );
        registry.register(
            "events_ignored",
            "Registry events not signed, by reason",
            m.events_ignored.clone(),
        );
        registry.register("signed", "Signatures added", m.signed.clone());
        registry.register(
            "already_signed",
            "Signatures found already present",
            m.already_signed.clone(),
        );
        registry.register(
            "skipped",
            "Rules not applied to an image, by reason",
            m.skipped.clone(),
        );
        registry.register(
            "failed",
            "Images that could not be signed, by reason",
            m.failed.clone(),
        );
        registry.register(
            "overwritten",
            "Signature manifests replaced by another writer right after a write",
            m.overwritten.clone(),
        );
        registry.register(
            "recheck_restored",
            "Signatures a delayed recheck restored",
            m.recheck_restored.clone(),
        );
        registry.register(
            "sig_compactions",
            "Signature manifests compacted to stay within the layer cap",
            m.sig_compactions.clone(),
        );
        registry.register(
            "sig_layers_dropped",
            "Signature layers dropped by compaction (verified under no configured key)",
            m.sig_layers_dropped.clone(),
        );
        registry.register(
            "signing_latency_seconds",
            "From event received to signatures in the registry",
            m.signing_latency.clone(),
        );
        registry.register(
            "reconcile_runs",
            "Reconcile passes",
            m.reconcile_runs.clone(),
        );
        registry.register(
            "reconcile_missing",
            "Signatures found missing by reconcile",
            m.reconcile_missing.clone(),
        );
        registry.register(
            "reconcile_signed",
            "Signatures added by reconcile",
            m.reconcile_signed.clone(),
        );
        registry.register(
            "reconcile_failed",
            "Images or repositories reconcile could not handle",
            m.reconcile_failed.clone(),
        );
        for reason in RuleSkip::ALL {
            // Creates the series at zero (the guard returned is released at once).
            drop(m.skipped.get_or_create(&SkipLabel { reason }));
        }
        Metrics { registry, ..m }
    }

    /// Counts an ignored event.
    pub fn ignored(&self, reason: &str) {
        self.events_ignored
            .get_or_create(&Reason {
                reason: reason.to_string(),
            })
            .inc();
    }

    /// Counts a failure.
    pub fn failure(&self, reason: &str) {
        self.failed
            .get_or_create(&Reason {
                reason: reason.to_string(),
            })
            .inc();
    }

    /// Counts a skipped rule.
    pub fn skip(&self, reason: RuleSkip) {
        self.skipped.get_or_create(&SkipLabel { reason }).inc();
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_is_exposed() {
        let m = Metrics::new();
        m.events_received.inc();
        m.ignored("artifact_tag");
        m.failure("registry");
        m.signing_latency.observe(0.01);
        let text = m.encode();
        for name in [
            "signet_signer_events_received_total 1",
            "signet_signer_events_ignored_total{reason=\"artifact_tag\"} 1",
            "signet_signer_signed_total 0",
            "signet_signer_failed_total{reason=\"registry\"} 1",
            "signet_signer_signing_latency_seconds_count 1",
            "signet_signer_reconcile_missing_total 0",
            "signet_signer_skipped_total{reason=\"tag_moved\"} 0",
            "signet_signer_skipped_total{reason=\"default_needs_tag\"} 0",
            "signet_signer_sig_compactions_total 0",
            "signet_signer_sig_layers_dropped_total 0",
        ] {
            assert!(text.contains(name), "{name} missing from\n{text}");
        }
    }
}
