//! VerificationPolicy (namespaced): which attestors must have signed the images that workloads of
//! its own namespace run.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::status::ResourceStatus;
use super::{Mode, PolicyRules};
use crate::signature::SignatureType;

/// Requirements on the images run by workloads in the policy's own namespace.
///
/// Every policy that matches an image must pass: a namespace owner can add requirements to the
/// cluster's, never remove them.
// kube's printcolumn(...) lists repeat `type_ = "string"`, which clippy mistakes for duplicates.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "signet.dev",
    version = "v1alpha1",
    kind = "VerificationPolicy",
    namespaced,
    shortname = "vp",
    status = "ResourceStatus",
    derive = "PartialEq",
    doc = "Which attestors must have signed the images run in this namespace.",
    printcolumn(name = "Mode", type_ = "string", json_path = ".spec.mode"),
    printcolumn(name = "Attestors", type_ = "string", json_path = ".spec.attestors"),
    printcolumn(
        name = "Required",
        type_ = "integer",
        json_path = ".spec.required",
        description = "distinct attestors that must have signed; empty = all"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct VerificationPolicySpec {
    /// Image globs over normalised references (`registry.example.com/prod/**`): `*` stays within
    /// one path segment, `**` crosses segments, `?` is one character.
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

impl VerificationPolicySpec {
    /// The rules shared with ClusterVerificationPolicy.
    pub fn rules(&self) -> PolicyRules<'_> {
        PolicyRules {
            images: &self.images,
            exclude: &self.exclude,
            attestors: &self.attestors,
            required: self.required,
            signature_type: self.signature_type,
            mode: self.mode,
        }
    }
}
