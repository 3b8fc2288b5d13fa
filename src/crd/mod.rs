//! signet's custom resources (group `signet.dev`, version `v1alpha1`): Attestor,
//! VerificationPolicy, ClusterVerificationPolicy and SigningRule, with their CRD rendering.
//!
//! The structs are the source of truth: `crds/signet.dev.yaml` is their output
//! ([`render_all_crds`], `signet crd`), and a test fails when the committed file drifts.
//!
//! What the API server checks beyond types: a CEL rule on both policy kinds refuses `required`
//! above the number of attestors (a policy no image could pass); `status.conditions` is a map
//! list keyed by `type` (server-side apply merges conditions by type); all four kinds are in the
//! `signet` category (`kubectl get signet`). Unknown fields need no schema flag: the API server
//! prunes or (with strict field validation) refuses them, and the policy folder refuses them too.

mod attestor;
mod cluster_verification_policy;
mod policy_rules;
mod signing_rule;
pub mod status;
mod verification_policy;

use std::fmt;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use attestor::{Attestor, AttestorKey, AttestorSpec};
pub use cluster_verification_policy::{ClusterVerificationPolicy, ClusterVerificationPolicySpec};
pub use policy_rules::PolicyRules;
use policy_rules::policy_spec;
pub use signing_rule::{NotationEnvelope, SigningKeyRef, SigningRule, SigningRuleSpec};
pub use status::{AttestorStatus, KeyStatus, READY_CONDITION, ResourceStatus};
pub use verification_policy::{VerificationPolicy, VerificationPolicySpec};

/// The API group of every signet resource.
pub const GROUP: &str = "signet.dev";
/// The API version of every signet resource.
pub const VERSION: &str = "v1alpha1";

/// Errors of the CRD layer.
#[derive(Debug, thiserror::Error)]
pub enum CrdError {
    /// serde_yaml_ng refused a CRD (not expected: they are plain data).
    #[error("cannot render CRD {name} as YAML: {source}")]
    Render {
        /// The CRD's name, e.g. `attestors.signet.dev`.
        name: String,
        /// The YAML serializer's error.
        source: serde_yaml_ng::Error,
    },
}

/// What a policy does with an image that fails it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum Mode {
    /// Deny the workload.
    #[default]
    Enforce,
    /// Allow the workload, with an admission warning and a `DryRunAdmission` event.
    DryRun,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Enforce => "Enforce",
            Mode::DryRun => "DryRun",
        })
    }
}

/// When a SigningRule signs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum Trigger {
    /// On every push event the registry sends.
    #[default]
    Automatic,
    /// Only when asked (`signet sign`, the API).
    Manual,
}

impl fmt::Display for Trigger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Trigger::Automatic => "Automatic",
            Trigger::Manual => "Manual",
        })
    }
}

/// Schema of `required`: an optional integer of at least 1. Written by hand because schemars
/// gives `u32` the format `uint32`, which the API server does not know (and warns about).
fn required_count_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "integer",
        "format": "int32",
        "minimum": 1,
        "nullable": true,
    })
}

/// The four CRDs, in a stable order: Attestor, VerificationPolicy, ClusterVerificationPolicy,
/// SigningRule.
pub fn all_crds() -> Vec<CustomResourceDefinition> {
    vec![
        Attestor::crd(),
        VerificationPolicy::crd(),
        ClusterVerificationPolicy::crd(),
        SigningRule::crd(),
    ]
}

/// The four CRDs as one multi-document YAML stream: what `signet crd` prints and
/// `crds/signet.dev.yaml` holds.
pub fn render_all_crds() -> Result<String, CrdError> {
    let mut out = String::new();
    for crd in all_crds() {
        let name = crd.metadata.name.clone().unwrap_or_default();
        let text =
            serde_yaml_ng::to_string(&crd).map_err(|source| CrdError::Render { name, source })?;
        out.push_str("---\n");
        out.push_str(&text);
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
