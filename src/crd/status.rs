//! Status types shared by the signet resources: the Ready condition and the observed generation.
//!
//! The controller writes these; the engine (`crate::policy`) produces the values they carry.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::crypto::Algorithm;

/// Condition type every signet resource carries.
pub const READY_CONDITION: &str = "Ready";

/// Status of a VerificationPolicy, ClusterVerificationPolicy or SigningRule.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResourceStatus {
    /// `metadata.generation` of the spec these conditions describe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready` (True, or False with reason AttestorNotFound, InvalidKey or InvalidSpec).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}

/// Status of an Attestor: the Ready condition and the keys as parsed.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AttestorStatus {
    /// `metadata.generation` of the spec these conditions describe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready` (True, or False with reason InvalidKey or InvalidSpec).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// The keys that parsed, in spec order, with their fingerprints.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keys: Vec<KeyStatus>,
}

/// One parsed attestor key, as reported in the Attestor's status: a public key (algorithm and
/// fingerprint), or one trust anchor certificate of a `certificates` key (subject, expiry and
/// fingerprint; a bundle of several anchors gives one entry each).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KeyStatus {
    /// The key's `id` from the spec, when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// What verdicts call the key: its `id`, else its fingerprint (the Attestor's "Keys" column).
    #[serde(default)]
    pub name: String,
    /// The algorithm a public key verifies with; absent for a certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub algorithm: Option<Algorithm>,
    /// `sha256:<hex>` of the SubjectPublicKeyInfo DER (public key) or of the certificate DER.
    pub fingerprint: String,
    /// A certificate's subject (`C=US, O=acme, CN=Acme Root`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// A certificate's notAfter, RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiry: Option<String>,
}
