//! Attestor (cluster-scoped): a named trust anchor holding one or more keys, each a public key
//! (cosign signatures, Sigstore bundles) or an X.509 trust anchor (Notation signatures).
//!
//! Several keys allow rotation: a signature counts when any one of them verifies it. A key is
//! either `publicKey` + `algorithm`, or `certificates` (+ optional `trustedIdentities` and
//! `tsaCertificates`); the policy compiler reports any other mix as InvalidKey (fail closed).

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

/// One trusted key of an attestor: a public key with its algorithm, or X.509 trust anchors.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
// The API server refuses the mixes the compiler would report as InvalidKey.
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "has(self.publicKey) != has(self.certificates)",
     "message": "a key has exactly one of publicKey and certificates"},
    {"rule": "!has(self.publicKey) || has(self.algorithm)",
     "message": "publicKey needs algorithm"},
    {"rule": "has(self.certificates) || (!has(self.trustedIdentities) && !has(self.tsaCertificates))",
     "message": "trustedIdentities and tsaCertificates go with certificates"}
]))]
pub struct AttestorKey {
    /// Free text naming the key (e.g. the KMS key id); shown in verdicts instead of the fingerprint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The algorithm signatures by `publicKey` use; explicit because an RSA key alone cannot tell
    /// PSS from PKCS#1 v1.5. Not used with `certificates` (Notation's algorithm follows the key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub algorithm: Option<Algorithm>,
    /// PEM public key: SubjectPublicKeyInfo ("PUBLIC KEY") or PKCS#1 ("RSA PUBLIC KEY").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key: Option<String>,
    /// PEM bundle of X.509 trust anchors (root CAs, or self-signed signing certificates) a
    /// Notation signature's chain must reach.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificates: Option<String>,
    /// With `certificates`: the signers trusted among those the anchors vouch for, as Notation's
    /// trust policy writes them (`x509.subject: C=US, O=acme, CN=release`, or `*`); absent = any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trusted_identities: Vec<String>,
    /// With `certificates`: PEM roots of the RFC 3161 timestamping authorities trusted to prove
    /// a signing time (kept; timestamp countersignatures are not verified yet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tsa_certificates: Option<String>,
}
