//! The signature manifest: an OCI image manifest whose `artifactType` is
//! `application/vnd.cncf.notary.signature` with the empty config (or, from older signers, a config
//! of that media type), exactly one layer holding the envelope (`application/jose+json` or
//! `application/cose`), a `subject` naming the signed manifest, and the chain's thumbprints in
//! the `io.cncf.notary.x509chain.thumbprint#S256` annotation.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::envelope::EnvelopeFormat;
use super::payload::TargetArtifact;
use crate::signature::{OCI_MANIFEST_MEDIA_TYPE, sha256_digest};

/// `artifactType` (or, from older signers, config media type) of a Notation signature manifest.
pub const NOTATION_ARTIFACT_TYPE: &str = "application/vnd.cncf.notary.signature";
/// Annotation listing the hex SHA-256 of each certificate of the chain, leaf first, as JSON.
pub const THUMBPRINT_ANNOTATION: &str = "io.cncf.notary.x509chain.thumbprint#S256";
/// Media type of the empty config (`{}`).
pub const EMPTY_CONFIG_MEDIA_TYPE: &str = "application/vnd.oci.empty.v1+json";
const EMPTY_CONFIG_DIGEST: &str =
    "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a";

#[derive(Serialize, Deserialize)]
struct Blob {
    #[serde(rename = "mediaType")]
    media_type: String,
    digest: String,
    size: u64,
}

#[derive(Serialize, Deserialize)]
struct ManifestDoc {
    #[serde(rename = "schemaVersion")]
    schema_version: u32,
    #[serde(rename = "mediaType", default, skip_serializing_if = "Option::is_none")]
    media_type: Option<String>,
    #[serde(
        rename = "artifactType",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    artifact_type: Option<String>,
    config: Blob,
    #[serde(default)]
    layers: Vec<Blob>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    subject: Option<Blob>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    annotations: BTreeMap<String, String>,
}

/// A Notation signature manifest, recognised.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignatureManifest {
    /// JWS or COSE, from the layer's media type.
    pub format: EnvelopeFormat,
    /// Digest of the envelope blob.
    pub envelope_digest: String,
    /// Size of the envelope blob.
    pub envelope_size: u64,
    /// The digest the manifest's `subject` names, when it has one.
    pub subject_digest: Option<String>,
    /// The thumbprint annotation, parsed; `None` when absent.
    pub thumbprints: Option<Vec<String>>,
}

/// Recognises a Notation signature manifest; says why the bytes are not one.
pub fn parse_signature_manifest(bytes: &[u8]) -> Result<SignatureManifest, String> {
    let doc: ManifestDoc =
        serde_json::from_slice(bytes).map_err(|e| format!("not an OCI image manifest: {e}"))?;
    if doc.schema_version != 2 {
        return Err(format!("schemaVersion {} (expected 2)", doc.schema_version));
    }
    if let Some(media_type) = &doc.media_type
        && media_type != OCI_MANIFEST_MEDIA_TYPE
    {
        return Err(format!(
            "media type {media_type} is not an OCI image manifest"
        ));
    }
    let recognised = match doc.artifact_type.as_deref() {
        Some(NOTATION_ARTIFACT_TYPE) => doc.config.media_type == EMPTY_CONFIG_MEDIA_TYPE,
        Some(_) => false,
        None => doc.config.media_type == NOTATION_ARTIFACT_TYPE,
    };
    if !recognised {
        return Err(format!(
            "not a Notation signature (artifactType {:?}, config {})",
            doc.artifact_type.as_deref().unwrap_or(""),
            doc.config.media_type
        ));
    }
    let [layer] = doc.layers.as_slice() else {
        return Err(format!(
            "a Notation signature has exactly one layer, this one has {}",
            doc.layers.len()
        ));
    };
    let format = EnvelopeFormat::from_media_type(&layer.media_type).ok_or_else(|| {
        format!(
            "layer media type {} is neither application/jose+json nor application/cose",
            layer.media_type
        )
    })?;
    let thumbprints = match doc.annotations.get(THUMBPRINT_ANNOTATION) {
        None => None,
        Some(text) => Some(serde_json::from_str::<Vec<String>>(text).map_err(|_| {
            format!("annotation {THUMBPRINT_ANNOTATION} is not a JSON list of strings")
        })?),
    };
    Ok(SignatureManifest {
        format,
        envelope_digest: layer.digest.clone(),
        envelope_size: layer.size,
        subject_digest: doc.subject.map(|s| s.digest),
        thumbprints,
    })
}

/// The signature manifest for an envelope over `subject`: empty config, one layer, the chain's
/// thumbprints (`chain_sha256_hex`, leaf first) and the creation time (RFC 3339) annotated.
pub fn build_signature_manifest(
    format: EnvelopeFormat,
    envelope: &[u8],
    subject: &TargetArtifact,
    chain_sha256_hex: &[String],
    created: &str,
) -> Vec<u8> {
    let mut annotations = BTreeMap::new();
    annotations.insert(
        THUMBPRINT_ANNOTATION.to_string(),
        serde_json::to_string(chain_sha256_hex).unwrap_or_default(),
    );
    annotations.insert(
        "org.opencontainers.image.created".to_string(),
        created.to_string(),
    );
    let doc = ManifestDoc {
        schema_version: 2,
        media_type: Some(OCI_MANIFEST_MEDIA_TYPE.to_string()),
        artifact_type: Some(NOTATION_ARTIFACT_TYPE.to_string()),
        config: Blob {
            media_type: EMPTY_CONFIG_MEDIA_TYPE.to_string(),
            digest: EMPTY_CONFIG_DIGEST.to_string(),
            size: 2,
        },
        layers: vec![Blob {
            media_type: format.media_type().to_string(),
            digest: sha256_digest(envelope),
            size: envelope.len() as u64,
        }],
        subject: Some(Blob {
            media_type: subject.media_type.clone(),
            digest: subject.digest.clone(),
            size: subject.size,
        }),
        annotations,
    };
    // Strings, numbers and maps of strings always serialise.
    serde_json::to_vec(&doc).unwrap_or_default()
}
