//! The Notary payload `application/vnd.cncf.notary.payload.v1+json`: the descriptor of the signed
//! artifact, whose digest, media type and size must all equal the admitted manifest's.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Annotation signet signs among `targetArtifact.annotations` for `Default` signatures: the
/// `registry/repository:tag` the signature binds.
pub const REFERENCE_ANNOTATION: &str = "io.signet.reference";

/// The artifact a signature is for: the admitted manifest's descriptor.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetArtifact {
    /// The manifest's media type (`application/vnd.oci.image.manifest.v1+json`...).
    #[serde(rename = "mediaType")]
    pub media_type: String,
    /// `sha256:<hex>` of the manifest bytes.
    pub digest: String,
    /// Size of the manifest in bytes.
    pub size: u64,
    /// Signed annotations (`io.signet.reference` binds the tag).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

#[derive(Serialize, Deserialize)]
struct PayloadDoc {
    #[serde(rename = "targetArtifact")]
    target_artifact: TargetArtifact,
}

/// Parses the payload; says what is wrong when it is not one.
pub(crate) fn parse_payload(bytes: &[u8]) -> Result<TargetArtifact, String> {
    serde_json::from_slice::<PayloadDoc>(bytes)
        .map(|doc| doc.target_artifact)
        .map_err(|e| format!("payload is not a Notary payload: {e}"))
}

/// The payload bytes for `target`.
pub(crate) fn build_payload(target: &TargetArtifact) -> Vec<u8> {
    // Serialising a struct of strings, a number and a string map cannot fail.
    serde_json::to_vec(&PayloadDoc {
        target_artifact: target.clone(),
    })
    .unwrap_or_default()
}

/// Whether the signed descriptor is the admitted one; names the first field that differs.
pub(crate) fn check_target(
    signed: &TargetArtifact,
    admitted: &TargetArtifact,
) -> Result<(), String> {
    if !signed.digest.eq_ignore_ascii_case(&admitted.digest) {
        return Err(format!("signature for another digest ({})", signed.digest));
    }
    if signed.media_type != admitted.media_type {
        return Err(format!(
            "signature for another media type ({}, the manifest is {})",
            signed.media_type, admitted.media_type
        ));
    }
    if signed.size != admitted.size {
        return Err(format!(
            "signature for another size ({} bytes, the manifest has {})",
            signed.size, admitted.size
        ));
    }
    Ok(())
}
