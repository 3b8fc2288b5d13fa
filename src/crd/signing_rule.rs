//! SigningRule (cluster-scoped), read by the signer: which pushed repositories it signs, and with
//! which key.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::Trigger;
use super::status::ResourceStatus;
use crate::crypto::Algorithm;
use crate::signature::{SignatureFormat, SignatureType};

/// Signs the images pushed to the repositories in `scope` with one key.
// kube's printcolumn(...) lists repeat `type_ = "string"`, which clippy mistakes for duplicates.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "signet.dev",
    version = "v1alpha1",
    kind = "SigningRule",
    shortname = "sr",
    category = "signet",
    status = "ResourceStatus",
    derive = "PartialEq",
    doc = "Signs the images pushed to the repositories in scope with one key.",
    printcolumn(
        name = "Key",
        type_ = "string",
        json_path = ".spec.key.ref",
        description = "the key reference (file: or pkcs11: URI)"
    ),
    printcolumn(
        name = "Key ID",
        type_ = "string",
        json_path = ".spec.key.id",
        priority = 1
    ),
    printcolumn(name = "Trigger", type_ = "string", json_path = ".spec.trigger"),
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
pub struct SigningRuleSpec {
    /// Repository globs (registry host + path, `registry.example.com/prod/**`) whose pushes are signed.
    #[schemars(length(min = 1))]
    pub scope: Vec<String>,
    /// The signing key.
    pub key: SigningKeyRef,
    /// The algorithm the key signs with.
    pub algorithm: Algorithm,
    /// `Default`: sign the digest and the pushed tag; `Simple`: the digest only.
    #[serde(default)]
    pub signature_type: SignatureType,
    /// `Automatic`: sign on every push event; `Manual`: only by `signet sign` or the API.
    #[serde(default)]
    pub trigger: Trigger,
    /// The formats written: `CosignSignature` (the `sha256-<hex>.sig` tag, read by cosign v2),
    /// `SigstoreBundle` (an OCI 1.1 referrer, read by cosign v3 and v4) and `Notation` (an OCI
    /// 1.1 referrer, read by notation, Ratify, Kyverno; needs `key.certificateChain`).
    /// Default: `CosignSignature` and `SigstoreBundle`.
    #[serde(default = "all_formats")]
    pub formats: Vec<SignatureFormat>,
    /// The Notation envelope: `JWS` (notation's default) or `COSE`.
    #[serde(default, skip_serializing_if = "NotationEnvelope::is_default")]
    pub notation_envelope: NotationEnvelope,
}

/// The envelope of Notation signatures.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum NotationEnvelope {
    /// JWS flattened JSON (`application/jose+json`).
    #[default]
    #[serde(rename = "JWS")]
    Jws,
    /// COSE_Sign1 (`application/cose`).
    #[serde(rename = "COSE")]
    Cose,
}

impl NotationEnvelope {
    fn is_default(&self) -> bool {
        *self == NotationEnvelope::Jws
    }
}

impl From<NotationEnvelope> for crate::signature::notation::EnvelopeFormat {
    fn from(envelope: NotationEnvelope) -> Self {
        match envelope {
            NotationEnvelope::Jws => crate::signature::notation::EnvelopeFormat::Jws,
            NotationEnvelope::Cose => crate::signature::notation::EnvelopeFormat::Cose,
        }
    }
}

fn all_formats() -> Vec<SignatureFormat> {
    SignatureFormat::ALL.to_vec()
}

/// Where the signing key lives.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SigningKeyRef {
    /// `file:/path/key.pem` or an RFC 7512 `pkcs11:` URI.
    #[serde(rename = "ref")]
    #[schemars(length(min = 1))]
    pub reference: String,
    /// Free text naming the key (e.g. the KMS key id), matching the Attestor key's `id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The key's X.509 certificate chain for the `Notation` format: PEM certificates, leaf
    /// first (a single self-signed leaf, or leaf, intermediates, root), or `file:/path/chain.pem`
    /// naming a file on the signer holding them. The leaf must hold the key's public key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_chain: Option<String>,
}
