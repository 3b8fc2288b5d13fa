//! The signer's Prometheus metrics (prefix `signet_signer_`), served at `GET /metrics` on its
//! port and on `--metrics-listen`, beside the series every signet server exports
//! ([`crate::metrics::common`]: build, process, policy picture, certificate).
//!
//! Per SigningRule, `rule_outcomes_total{rule,outcome}` counts what each rule did to each image
//! it covered; a rule's series exist at zero from the moment the rule is in the picture, and go
//! when it leaves it (a deleted rule's numbers would otherwise stay forever). `pending_images`
//! against `workers` shows whether the signer keeps up.
//!
//! `registry_requests_total{registry,operation="sign",outcome}` counts, per registry, how each
//! pushed image's signing ended with the registry, in the webhook's terms: `success`, or the
//! failure's kind (`rate_limited` when the registry still throttled after the retries,
//! `unreachable`, `unauthorized`...). A registry's series all exist from its first image;
//! past [`MAX_REGISTRY_LABELS`] registries, the rest count as `other`.

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::sync::atomic::AtomicI64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::metrics::labels::label_enum;
use crate::metrics::{CommonMetrics, Format, render};
use crate::registry::LookupFailureKind;

label_enum! {
    /// Why an event (or a notification) was not signed: the `reason` of `events_ignored`.
    pub enum IgnoreReason {
        /// `pull`, `delete`, `mount`...
        NotAPush => "not_a_push",
        /// A blob upload.
        Blob => "blob",
        /// A manifest that is not an image manifest or index.
        UnknownMediaType => "unknown_media_type",
        /// A signature or attestation tag.
        ArtifactTag => "artifact_tag",
        /// An event lacking a field, or holding a malformed one.
        MalformedEvent => "malformed_event",
        /// No rule covers the repository.
        OutOfScope => "out_of_scope",
        /// Only `Manual` rules cover it.
        ManualRule => "manual_rule",
        /// The manifest was deleted since the push.
        ManifestGone => "manifest_gone",
        /// The manifest is a referrer artifact (it has a subject).
        Referrer => "referrer",
        /// A notification without the bearer token.
        Unauthorized => "unauthorized",
        /// A notification body that is not an envelope of events.
        MalformedBody => "malformed_body",
    }
}

label_enum! {
    /// Why a pushed image that rules cover has nothing to sign.
    pub enum NothingToSign {
        /// The manifest is gone (deleted since the push).
        ManifestGone => "manifest_gone",
        /// The manifest is a referrer artifact (a signature, attestation, SBOM...).
        Referrer => "referrer",
    }
}

impl From<NothingToSign> for IgnoreReason {
    fn from(why: NothingToSign) -> Self {
        match why {
            NothingToSign::ManifestGone => IgnoreReason::ManifestGone,
            NothingToSign::Referrer => IgnoreReason::Referrer,
        }
    }
}

label_enum! {
    /// Why an image could not be signed: the `reason` of `failed`.
    pub enum FailureReason {
        /// The registry failed (after retries), or other writers kept replacing the manifest.
        Registry => "registry",
        /// A key could not be opened, or refused to sign.
        Key => "key",
        /// A configuration, policy or internal failure.
        Internal => "internal",
    }
}

/// Registries with series of their own in `registry_requests_total`, as the webhook's.
pub const MAX_REGISTRY_LABELS: usize = 64;

/// Labels of `registry_requests_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RegistryRequestLabels {
    /// The registry host (or `other`).
    pub registry: String,
    /// Always `sign` (the webhook's metric of the same name has `resolve`, `signatures`).
    pub operation: String,
    /// `success` or a failure kind.
    pub outcome: String,
}

/// A `reason` label naming an [`IgnoreReason`].
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct IgnoreLabel {
    /// Why.
    pub reason: IgnoreReason,
}

/// A `reason` label naming a [`FailureReason`].
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FailureLabel {
    /// Why.
    pub reason: FailureReason,
}

label_enum! {
    /// Why a rule covering an image did not sign it.
    pub enum RuleSkip {
        /// A `Default` rule binds a tag, and the push named none.
        DefaultNeedsTag => "default_needs_tag",
        /// A `Default` rule, and the event's tag no longer names (or never named) the event's
        /// digest: signing would bind the tag to an image it does not name.
        TagMoved => "tag_moved",
    }
}

/// A `reason` label naming a [`RuleSkip`].
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SkipLabel {
    /// Why.
    pub reason: RuleSkip,
}

label_enum! {
    /// What a SigningRule did to one image it covers.
    pub enum RuleOutcome {
        /// Its signature was added.
        Signed => "signed",
        /// Its signature was already there.
        AlreadySigned => "already_signed",
        /// It did not apply (a `Default` rule without a tag, or a tag that moved).
        Skipped => "skipped",
        /// Signing failed (registry, key); the registry sends the event again.
        Failed => "failed",
    }
}

/// The labels of `rule_outcomes_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RuleOutcomeLabels {
    /// The SigningRule's name.
    pub rule: String,
    /// What it did.
    pub outcome: RuleOutcome,
}

/// Counters and histograms; cheap to update from any task.
pub struct Metrics {
    registry: Registry,
    /// Signing operations by registry and outcome.
    registry_requests: Family<RegistryRequestLabels, Counter>,
    /// The registries whose series exist.
    registries: Mutex<BTreeSet<String>>,
    common: CommonMetrics,
    /// Per rule, by outcome.
    rule_outcomes: Family<RuleOutcomeLabels, Counter>,
    /// The rules whose series exist.
    rules: Mutex<BTreeSet<String>>,
    /// Images waiting for a worker or being signed now.
    pub pending_images: Gauge<i64, AtomicI64>,
    /// Images signed at once (`--workers`).
    pub workers: Gauge<i64, AtomicI64>,
    /// Events received (each event of each notification).
    pub events_received: Counter,
    /// Events not signed, by reason (`not_a_push`, `artifact_tag`, `out_of_scope`, ...).
    pub events_ignored: Family<IgnoreLabel, Counter>,
    /// Signatures added to the registry.
    pub signed: Counter,
    /// Signatures that were already there (repeated events, several instances).
    pub already_signed: Counter,
    /// Sigstore bundles pushed (one referrer each).
    pub bundles_written: Counter,
    /// Rules not applied to an image, by reason (`default_needs_tag`, `tag_moved`).
    pub skipped: Family<SkipLabel, Counter>,
    /// Images that could not be signed, by reason (`registry`, `key`, `internal`).
    pub failed: Family<FailureLabel, Counter>,
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
    /// The queue of `--acknowledge queued`.
    pub queue: QueueMetrics,
}

/// The series of the `--acknowledge queued` queue (all at zero in `signed` mode).
#[derive(Clone, Debug, Default)]
pub struct QueueMetrics {
    /// Images held: waiting for a worker, being signed, or waiting for a retry.
    pub depth: Gauge<i64, AtomicI64>,
    /// Images held at most (`--queue-capacity`).
    pub capacity: Gauge<i64, AtomicI64>,
    /// Pushes answered 503 because the queue was full.
    pub full: Counter,
    /// Pushes of an image already held, served by its one signing.
    pub coalesced: Counter,
    /// Failed signings the signer tries again by itself.
    pub retried: Counter,
    /// Images dropped after failing past the retry horizon.
    pub dropped: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Fresh metrics in their own registry.
    pub fn new() -> Self {
        let mut root = Registry::default();
        let common = CommonMetrics::register(&mut root);
        let registry = root.sub_registry_with_prefix("signet_signer");
        let m = Metrics {
            registry: Registry::default(),
            registry_requests: Family::default(),
            registries: Mutex::new(BTreeSet::new()),
            common,
            rule_outcomes: Family::default(),
            rules: Mutex::new(BTreeSet::new()),
            pending_images: Gauge::default(),
            workers: Gauge::default(),
            events_received: Counter::default(),
            events_ignored: Family::default(),
            signed: Counter::default(),
            already_signed: Counter::default(),
            bundles_written: Counter::default(),
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
            queue: QueueMetrics::default(),
        };
        registry.register(
            "registry_requests",
            "Pushed images' signing by registry and outcome with it (success, or the failure's kind: rate_limited, unreachable...)",
            m.registry_requests.clone(),
        );
        registry.register(
            "rule_outcomes",
            "Images each SigningRule covered, by rule and outcome (signed, already_signed, skipped, failed)",
            m.rule_outcomes.clone(),
        );
        registry.register(
            "pending_images",
            "Pushed images waiting for a worker or being signed now",
            m.pending_images.clone(),
        );
        registry.register(
            "workers",
            "Images signed at once at most (--workers)",
            m.workers.clone(),
        );
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
            "bundles_written",
            "Sigstore bundles pushed as referrers",
            m.bundles_written.clone(),
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
        registry.register(
            "queue_depth",
            "Images the --acknowledge queued queue holds: waiting, being signed, or waiting for a retry",
            m.queue.depth.clone(),
        );
        registry.register(
            "queue_capacity",
            "Images the queue holds at most (--queue-capacity)",
            m.queue.capacity.clone(),
        );
        registry.register(
            "queue_full",
            "Pushes answered 503 because the signing queue was full",
            m.queue.full.clone(),
        );
        registry.register(
            "queue_coalesced",
            "Pushes of an image the queue already held, served by its one signing",
            m.queue.coalesced.clone(),
        );
        registry.register(
            "queue_retried",
            "Failed signings of queued images the signer tries again by itself",
            m.queue.retried.clone(),
        );
        registry.register(
            "queue_dropped",
            "Queued images dropped after failing past the retry horizon (left to the reconcile)",
            m.queue.dropped.clone(),
        );
        // Creates every labelled series at zero (the guards returned are released at once).
        for &reason in RuleSkip::ALL {
            drop(m.skipped.get_or_create(&SkipLabel { reason }));
        }
        for &reason in IgnoreReason::ALL {
            drop(m.events_ignored.get_or_create(&IgnoreLabel { reason }));
        }
        for &reason in FailureReason::ALL {
            drop(m.failed.get_or_create(&FailureLabel { reason }));
        }
        // Cloud KMS calls (issue 12): `kms_calls_total` and `kms_call_duration_seconds` by
        // `provider` and `outcome`, kept process-wide by the crypto layer.
        crate::crypto::register_kms_metrics(registry);
        crate::crypto::register_signing_metrics(registry);
        Metrics {
            registry: root,
            ..m
        }
    }

    /// The series every server exports (policy picture, certificate).
    pub fn common(&self) -> &CommonMetrics {
        &self.common
    }

    /// Every metric, for `/metrics`.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The rules of the picture in force: their series are created at zero, those of rules no
    /// longer there are removed.
    pub fn known_rules<'a>(&self, names: impl IntoIterator<Item = &'a str>) {
        let names: BTreeSet<String> = names.into_iter().map(str::to_string).collect();
        let mut known = self.rules.lock().unwrap_or_else(|p| p.into_inner());
        for gone in known.difference(&names) {
            for &outcome in RuleOutcome::ALL {
                self.rule_outcomes.remove(&RuleOutcomeLabels {
                    rule: gone.clone(),
                    outcome,
                });
            }
        }
        for added in names.difference(&known) {
            for &outcome in RuleOutcome::ALL {
                drop(self.rule_outcomes.get_or_create(&RuleOutcomeLabels {
                    rule: added.clone(),
                    outcome,
                }));
            }
        }
        *known = names;
    }

    /// Counts what `rule` did to one image.
    pub fn rule_outcome(&self, rule: &str, outcome: RuleOutcome) {
        self.rule_outcomes
            .get_or_create(&RuleOutcomeLabels {
                rule: rule.to_string(),
                outcome,
            })
            .inc();
    }

    /// Counts an ignored event.
    pub fn ignored(&self, reason: impl Into<IgnoreReason>) {
        let reason = reason.into();
        self.events_ignored
            .get_or_create(&IgnoreLabel { reason })
            .inc();
    }

    /// Counts bundles pushed.
    pub fn bundles_written(&self, n: usize) {
        self.bundles_written.inc_by(n as u64);
    }

    /// Counts how signing one pushed image on `host` ended with the registry: `None` when it
    /// answered, else the failure's kind.
    pub fn registry_outcome(&self, host: &str, failure: Option<LookupFailureKind>) {
        let registry = self.registry_label(host);
        let outcome = failure.map_or("success", LookupFailureKind::as_str);
        self.registry_requests
            .get_or_create(&RegistryRequestLabels {
                registry,
                operation: "sign".into(),
                outcome: outcome.into(),
            })
            .inc();
    }

    /// The `registry` label for `host`: the host (its series all created at zero the first
    /// time), or `other` past [`MAX_REGISTRY_LABELS`].
    fn registry_label(&self, host: &str) -> String {
        let mut known = self.registries.lock().unwrap_or_else(|p| p.into_inner());
        if known.contains(host) {
            return host.to_string();
        }
        let label = if known.len() < MAX_REGISTRY_LABELS - 1 || host == "other" {
            host.to_string()
        } else {
            "other".to_string()
        };
        if known.insert(label.clone()) {
            let outcomes =
                std::iter::once("success").chain(LookupFailureKind::ALL.iter().map(|k| k.as_str()));
            for outcome in outcomes {
                drop(
                    self.registry_requests
                        .get_or_create(&RegistryRequestLabels {
                            registry: label.clone(),
                            operation: "sign".into(),
                            outcome: outcome.into(),
                        }),
                );
            }
        }
        label
    }

    /// Counts a failure.
    pub fn failure(&self, reason: FailureReason) {
        self.failed.get_or_create(&FailureLabel { reason }).inc();
    }

    /// Counts a skipped rule.
    pub fn skip(&self, reason: RuleSkip) {
        self.skipped.get_or_create(&SkipLabel { reason }).inc();
    }

    /// The Prometheus text exposition (what `/metrics` answers a client that does not ask for
    /// OpenMetrics).
    pub fn encode(&self) -> String {
        // Writing to a String cannot fail.
        render(&self.registry, Format::PrometheusText).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_outcomes_are_counted_per_registry_with_every_series_present() {
        let m = Metrics::new();
        m.registry_outcome("registry.example.com", None);
        m.registry_outcome("registry.example.com", Some(LookupFailureKind::RateLimited));
        m.registry_outcome("ghcr.io", Some(LookupFailureKind::RateLimited));
        let text = m.encode();
        for line in [
            "signet_signer_registry_requests_total{registry=\"registry.example.com\",operation=\"sign\",outcome=\"success\"} 1",
            "signet_signer_registry_requests_total{registry=\"registry.example.com\",operation=\"sign\",outcome=\"rate_limited\"} 1",
            "signet_signer_registry_requests_total{registry=\"registry.example.com\",operation=\"sign\",outcome=\"unreachable\"} 0",
            "signet_signer_registry_requests_total{registry=\"ghcr.io\",operation=\"sign\",outcome=\"rate_limited\"} 1",
            "signet_signer_registry_requests_total{registry=\"ghcr.io\",operation=\"sign\",outcome=\"success\"} 0",
        ] {
            assert!(text.contains(line), "{line} missing from:\n{text}");
        }
        for i in 0..MAX_REGISTRY_LABELS + 5 {
            m.registry_outcome(&format!("r{i}.example.com"), None);
        }
        let text = m.encode();
        let registries: BTreeSet<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("signet_signer_registry_requests_total{registry=\""))
            .filter_map(|l| l.split('"').next())
            .collect();
        assert_eq!(registries.len(), MAX_REGISTRY_LABELS);
        assert!(registries.contains("other"));
    }

    #[test]
    fn every_metric_is_exposed() {
        let m = Metrics::new();
        m.events_received.inc();
        m.ignored(IgnoreReason::ArtifactTag);
        m.failure(FailureReason::Registry);
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
            "signet_signer_events_ignored_total{reason=\"referrer\"} 0",
            "signet_signer_failed_total{reason=\"key\"} 0",
            "signet_signer_queue_depth 0",
            "signet_signer_queue_capacity 0",
            "signet_signer_queue_full_total 0",
            "signet_signer_queue_coalesced_total 0",
            "signet_signer_queue_retried_total 0",
            "signet_signer_queue_dropped_total 0",
        ] {
            assert!(text.contains(name), "{name} missing from\n{text}");
        }
    }

    #[test]
    fn every_reason_is_present_from_start() {
        let text = Metrics::new().encode();
        for reason in IgnoreReason::ALL {
            let series = format!("signet_signer_events_ignored_total{{reason=\"{reason}\"}} 0");
            assert!(text.contains(&series), "{series} missing from\n{text}");
        }
        for reason in FailureReason::ALL {
            let series = format!("signet_signer_failed_total{{reason=\"{reason}\"}} 0");
            assert!(text.contains(&series), "{series} missing from\n{text}");
        }
        for reason in RuleSkip::ALL {
            let series = format!("signet_signer_skipped_total{{reason=\"{reason}\"}} 0");
            assert!(text.contains(&series), "{series} missing from\n{text}");
        }
    }

    #[test]
    fn rule_series_follow_the_rules_in_force() {
        let m = Metrics::new();
        m.known_rules(["release", "qa"]);
        m.rule_outcome("release", RuleOutcome::Signed);
        let text = m.encode();
        for outcome in RuleOutcome::ALL {
            let series =
                format!("signet_signer_rule_outcomes_total{{rule=\"qa\",outcome=\"{outcome}\"}} 0");
            assert!(text.contains(&series), "{series} missing from\n{text}");
        }
        assert!(
            text.contains(
                "signet_signer_rule_outcomes_total{rule=\"release\",outcome=\"signed\"} 1"
            ),
            "{text}"
        );
        m.known_rules(["release"]);
        let text = m.encode();
        assert!(!text.contains("rule=\"qa\""), "{text}");
        assert!(
            text.contains("rule=\"release\",outcome=\"signed\"} 1"),
            "{text}"
        );
    }

    #[test]
    fn nothing_to_sign_is_an_ignore_reason_with_the_same_label() {
        for &why in NothingToSign::ALL {
            assert_eq!(IgnoreReason::from(why).as_str(), why.as_str());
        }
    }
}
