//! The signed payload, the cosign storage layout, Sigstore bundles, and the rule for when a
//! signature counts. Pure: no I/O (the registry layer fetches and pushes; see `registry`).

pub mod bundle;
mod check;
mod check_notation;
mod layout;
pub mod notation;
mod payload;

pub use bundle::{BUNDLE_MEDIA_TYPE, is_bundle_media_type};
pub use check::{
    Accepted, NO_TAG_BINDING_HINT, NotationStored, Rejection, StoredSignature, check_claims,
    check_signature,
};
pub use check_notation::{AcceptedNotation, NOTATION_DIGEST_ONLY_HINT, check_notation};
pub use layout::{
    BuiltManifest, Descriptor, OCI_CONFIG_MEDIA_TYPE, OCI_MANIFEST_MEDIA_TYPE,
    SIGNATURE_ANNOTATION, SIMPLE_SIGNING_MEDIA_TYPE, build_signature_manifest, is_artifact_tag,
    parse_manifest_layers, parse_signature_manifest, sha256_digest, signature_tag,
};
pub use payload::{ATOMIC_TYPE, COSIGN_TYPE, Payload, SignatureType, build_payload, parse_payload};

/// The formats signatures are stored in. Policies do not care which: an attestor is satisfied
/// by a valid signature of one of its keys in any of them.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    serde::Serialize,
    serde::Deserialize,
    schemars::JsonSchema,
)]
pub enum SignatureFormat {
    /// cosign's legacy layout: the `sha256-<hex>.sig` tag, simple-signing payloads.
    CosignSignature,
    /// A Sigstore bundle (cosign v3) attached as an OCI 1.1 referrer.
    SigstoreBundle,
    /// A Notation (Notary Project) signature attached as an OCI 1.1 referrer: verified against
    /// an Attestor's certificate trust anchors. Written only with the key's certificate chain,
    /// so it is not among the default formats ([`SignatureFormat::ALL`]).
    Notation,
}

impl SignatureFormat {
    /// The formats written when none are named: those a key alone can write, in the order
    /// signet writes them.
    pub const ALL: [SignatureFormat; 2] = [
        SignatureFormat::CosignSignature,
        SignatureFormat::SigstoreBundle,
    ];

    /// Every format signet writes when asked, in the order it writes them (Notation needs the
    /// key's certificate chain).
    pub const WRITTEN: [SignatureFormat; 3] = [
        SignatureFormat::CosignSignature,
        SignatureFormat::SigstoreBundle,
        SignatureFormat::Notation,
    ];

    /// The name used in resources, flags and verdicts.
    pub fn as_str(self) -> &'static str {
        match self {
            SignatureFormat::CosignSignature => "CosignSignature",
            SignatureFormat::SigstoreBundle => "SigstoreBundle",
            SignatureFormat::Notation => "Notation",
        }
    }
}

impl std::fmt::Display for SignatureFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for SignatureFormat {
    type Err = SignatureError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "cosignsignature" | "cosign" | "sig" => Ok(SignatureFormat::CosignSignature),
            "sigstorebundle" | "bundle" => Ok(SignatureFormat::SigstoreBundle),
            "notation" | "notary" => Ok(SignatureFormat::Notation),
            _ => Err(SignatureError::UnknownFormat(s.to_string())),
        }
    }
}

/// Errors of the signature format layer.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignatureError {
    /// A simple-signing payload that cannot be parsed or built (not a JSON object, a required
    /// field missing, a digest that is not one); says what is wrong.
    #[error("malformed signature payload: {0}")]
    MalformedPayload(String),
    /// A signature manifest that cannot be parsed or built (not an OCI image manifest of schema
    /// version 2), or a digest that cannot name a `.sig` tag; says what is wrong.
    #[error("malformed signature manifest: {0}")]
    MalformedManifest(String),
    /// A Sigstore bundle that cannot be parsed or is not an image signature; says why.
    #[error("malformed bundle: {0}")]
    MalformedBundle(String),
    /// A format name other than `CosignSignature` or `SigstoreBundle`; holds the name given.
    #[error("unknown signature format {0:?} (expected CosignSignature or SigstoreBundle)")]
    UnknownFormat(String),
    /// A signature type name other than `Default` or `Simple`; holds the name given.
    #[error("unknown signature type {0:?} (expected Default or Simple)")]
    UnknownSignatureType(String),
    /// A `Default` signature was asked for an image reference without a tag; holds the reference.
    #[error(
        "a Default signature binds a tag, and {0} names none: name the tag, or use the Simple type"
    )]
    DefaultNeedsTag(String),
}

#[cfg(test)]
mod tests;
