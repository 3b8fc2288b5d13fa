//! Attestor (cluster-scoped): a named trust anchor holding one or more public keys.
//!
//! Several keys allow rotation: a signature counts when any one of them verifies it.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::status::AttestorStatus;
use crate::crypto::Algorithm;

/// A named trust anchor: the public keys whose signatures count for this attestor.
// kube's printcolumn(...) lists repeat `type_ = "string"`, which clippy mistakes for duplicates.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "signet.dev",
    version = "v1alpha1",
    kind = "Attestor",
    shortname = "att",
    category = "signet",
    status = "AttestorStatus",
    derive = "PartialEq",
    doc = "A named trust anchor: one or more public keys whose signatures count for it.",
    printcolumn(
        name = "Keys",
        type_ = "string",
        json_path = ".status.keys[*].name",
        description = "the keys that parsed: their id, else their fingerprint"
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
pub struct AttestorSpec {
    /// Free text shown to people (e.g. "release pipeline KMS key").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The trusted keys; a signature counts when one of them verifies it.
    #[schemars(length(min = 1))]
    pub keys: Vec<AttestorKey>,
}

/// One trusted public key of an attestor.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AttestorKey {
    /// Free text naming the key (e.g. the KMS key id); shown in verdicts instead of the fingerprint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The algorithm signatures by this key use; explicit because an RSA key alone cannot tell
    /// PSS from PKCS#1 v1.5.
    pub algorithm: Algorithm,
    /// PEM public key: SubjectPublicKeyInfo ("PUBLIC KEY") or PKCS#1 ("RSA PUBLIC KEY").
    pub public_key: String,
}
