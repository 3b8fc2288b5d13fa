//! The spec VerificationPolicy and ClusterVerificationPolicy share, field for field: one struct,
//! flattened into both (the CRD schemas are unchanged; the drift test checks it).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::Mode;
use crate::signature::SignatureType;

/// Which images a policy governs and which attestors must have signed them.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PolicyRules {
    /// Image globs over canonical references (`registry.example.com/prod/**`): `*` and `?` stay
    /// within one path segment and never cross `:`, `**` crosses segments.
    #[schemars(length(min = 1))]
    pub images: Vec<String>,
    /// Globs of images this policy does not govern, even when `images` matches them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude: Vec<String>,
    /// Names of the Attestors whose signatures count.
    #[schemars(length(min = 1))]
    pub attestors: Vec<String>,
    /// How many distinct attestors must have a valid signature; absent = all of them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "super::required_count_schema")]
    pub required: Option<u32>,
    /// `Default`: the signature must bind the tag too; `Simple`: the digest only.
    #[serde(default)]
    pub signature_type: SignatureType,
    /// `Enforce` denies failing workloads; `DryRun` allows them with a warning.
    #[serde(default)]
    pub mode: Mode,
}
