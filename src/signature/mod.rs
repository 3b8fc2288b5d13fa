//! The signed payload, the cosign storage layout, and the rule for when a signature counts.
//! Pure: no I/O (the registry layer fetches and pushes; see `registry`).

mod check;
mod layout;
pub mod notation;
mod payload;

pub use check::{Accepted, Rejection, StoredSignature, check_claims, check_signature};
pub use layout::{
    BuiltManifest, Descriptor, OCI_CONFIG_MEDIA_TYPE, OCI_MANIFEST_MEDIA_TYPE,
    SIGNATURE_ANNOTATION, SIMPLE_SIGNING_MEDIA_TYPE, build_signature_manifest, is_artifact_tag,
    parse_manifest_layers, parse_signature_manifest, sha256_digest, signature_tag,
};
pub use payload::{ATOMIC_TYPE, COSIGN_TYPE, Payload, SignatureType, build_payload, parse_payload};

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
