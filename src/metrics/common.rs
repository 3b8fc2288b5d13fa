//! The series both servers export: build, process, policy picture, TLS certificate.
//!
//! | series | type | meaning |
//! |---|---|---|
//! | `signet_build_info{version}` | gauge | always 1; the version running |
//! | `process_*` | | see [`super::process`] |
//! | `signet_policy_objects{kind,status}` | gauge | Attestors and policies of the picture in force, `status` `ready` or `not_ready` |
//! | `signet_policy_signing_rules` | gauge | SigningRules of the picture in force |
//! | `signet_policy_synced` | gauge | 1 once every source has synced (what `/readyz` waits for) |
//! | `signet_policy_last_load_timestamp_seconds` | gauge | when the picture in force was loaded; 0 before |
//! | `signet_policy_last_load_successful` | gauge | 0 when the last policy-folder change was rejected |
//! | `signet_policy_load_errors_total` | counter | policy-folder changes rejected |
//! | `signet_tls_certificate_expiry_timestamp_seconds` | gauge | `notAfter` of the served certificate (absent without TLS) |
//!
//! The policy series are read from the [`PolicyState`] at each scrape, so they never lag the
//! picture; the state is attached once the source exists ([`CommonMetrics::observe_policy`]).

use std::sync::{Arc, OnceLock};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

use super::process::ProcessCollector;
use crate::controller::{ObjectKindKey, PolicyState};
use crate::serve::CertificateExpiry;

/// The `kind` label of `signet_policy_objects`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PolicyKindLabel(pub ObjectKindKey);

impl PolicyKindLabel {
    /// Every kind, for series present from start.
    pub const ALL: [ObjectKindKey; 3] = [
        ObjectKindKey::Attestor,
        ObjectKindKey::VerificationPolicy,
        ObjectKindKey::ClusterVerificationPolicy,
    ];

    /// The lower snake case label value.
    pub fn as_str(self) -> &'static str {
        match self.0 {
            ObjectKindKey::Attestor => "attestor",
            ObjectKindKey::VerificationPolicy => "verification_policy",
            ObjectKindKey::ClusterVerificationPolicy => "cluster_verification_policy",
        }
    }
}

/// Handles to what the common series read; cheap to clone.
#[derive(Clone, Default)]
pub struct CommonMetrics {
    policy: Arc<OnceLock<PolicyState>>,
    expiry: CertificateExpiry,
}

impl CommonMetrics {
    /// Registers build info, the process collector, the policy and certificate series in
    /// `registry` (which must carry no prefix: the names are complete).
    pub fn register(registry: &mut Registry) -> CommonMetrics {
        let common = CommonMetrics::default();
        registry.register_collector(Box::new(ProcessCollector::new()));
        registry.register_collector(Box::new(common.clone()));
        common
    }

    /// Reads the policy series from `state` from now on (the first state attached wins: one
    /// process has one policy source).
    pub fn observe_policy(&self, state: PolicyState) {
        let _ = self.policy.set(state);
    }

    /// Where the server records its certificate's expiry ([`crate::serve::Server::start_observed`]).
    pub fn certificate_expiry(&self) -> &CertificateExpiry {
        &self.expiry
    }
}

impl std::fmt::Debug for CommonMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CommonMetrics")
            .field("policy_attached", &self.policy.get().is_some())
            .field("expiry", &self.expiry)
            .finish()
    }
}

fn gauge(encoder: &mut DescriptorEncoder, name: &str, help: &str, value: f64) -> std::fmt::Result {
    let metric = ConstGauge::new(value);
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
}

impl Collector for CommonMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        {
            let info = ConstGauge::new(1i64);
            let mut family = encoder.encode_descriptor(
                "signet_build_info",
                "The signet version running (always 1)",
                None,
                info.metric_type(),
            )?;
            let labels = [("version", env!("CARGO_PKG_VERSION"))];
            info.encode(family.encode_family(&labels)?)?;
        }
        if let Some(state) = self.policy.get() {
            let health = state.health();
            {
                let objects = ConstGauge::new(0i64);
                let mut family = encoder.encode_descriptor(
                    "signet_policy_objects",
                    "Attestors and verification policies of the policy picture in force, by kind and status (ready, not_ready)",
                    None,
                    objects.metric_type(),
                )?;
                for kind in PolicyKindLabel::ALL {
                    let (ready, not_ready) = health.objects.get(&kind).copied().unwrap_or_default();
                    let label = PolicyKindLabel(kind).as_str();
                    for (status, count) in [("ready", ready), ("not_ready", not_ready)] {
                        let labels = [("kind", label), ("status", status)];
                        ConstGauge::new(count as i64).encode(family.encode_family(&labels)?)?;
                    }
                }
            }
            gauge(
                &mut encoder,
                "signet_policy_signing_rules",
                "SigningRules of the policy picture in force",
                health.signing_rules as f64,
            )?;
            gauge(
                &mut encoder,
                "signet_policy_synced",
                "1 once every policy source has synced (what /readyz waits for)",
                if state.is_ready() { 1.0 } else { 0.0 },
            )?;
            gauge(
                &mut encoder,
                "signet_policy_last_load_timestamp_seconds",
                "When the policy picture in force was loaded, in seconds since the epoch (0 before the first load)",
                health.last_load.unwrap_or_default(),
            )?;
            gauge(
                &mut encoder,
                "signet_policy_last_load_successful",
                "Whether the last attempt to load the policies succeeded (0: a policy-folder change was rejected; the last good picture stays in force)",
                if health.last_load_ok { 1.0 } else { 0.0 },
            )?;
            let errors = ConstCounter::new(health.load_errors);
            errors.encode(encoder.encode_descriptor(
                "signet_policy_load_errors",
                "Policy-folder changes rejected (invalid YAML, unknown field, object that would not be Ready)",
                None,
                errors.metric_type(),
            )?)?;
        }
        if let Some(expiry) = self.expiry.get() {
            gauge(
                &mut encoder,
                "signet_tls_certificate_expiry_timestamp_seconds",
                "When the served TLS certificate expires (its notAfter), in seconds since the epoch",
                expiry as f64,
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{Format, render};
    use crate::policy::{self, EngineOptions, PolicyInputs};

    #[test]
    fn policy_and_build_series_are_present_from_start() {
        let mut registry = Registry::default();
        let common = CommonMetrics::register(&mut registry);
        let compiled = policy::compile(&PolicyInputs::default(), 1, EngineOptions::default());
        common.observe_policy(PolicyState::fixed(compiled.snapshot, Vec::new()));
        let text = render(&registry, Format::PrometheusText).unwrap_or_default();
        for series in [
            format!(
                "signet_build_info{{version=\"{}\"}} 1",
                env!("CARGO_PKG_VERSION")
            ),
            "signet_policy_objects{kind=\"attestor\",status=\"ready\"} 0".to_string(),
            "signet_policy_objects{kind=\"cluster_verification_policy\",status=\"not_ready\"} 0"
                .to_string(),
            "signet_policy_synced 1".to_string(),
            "signet_policy_last_load_successful 1".to_string(),
            "signet_policy_load_errors_total 0".to_string(),
            "process_cpu_seconds_total ".to_string(),
            "process_start_time_seconds ".to_string(),
        ] {
            assert!(text.contains(&series), "{series} missing from\n{text}");
        }
        assert!(
            !text.contains("certificate_expiry"),
            "no TLS, no expiry:\n{text}"
        );
    }
}
