//! The cosign storage layout: a `sha256-<hex>.sig` tag holding an OCI image manifest with one
//! simple-signing layer per signature, the signature in the layer's annotation.

use std::collections::BTreeMap;

use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::SignatureError;

/// Media type of a simple-signing payload layer.
pub const SIMPLE_SIGNING_MEDIA_TYPE: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// Layer annotation holding the base64 signature.
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
/// Media type of the signature manifest itself.
pub const OCI_MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
/// Media type of the config blob.
pub const OCI_CONFIG_MEDIA_TYPE: &str = "application/vnd.oci.image.config.v1+json";

/// The tag cosign stores signatures of `digest` under: `sha256-<hex>.sig`.
pub fn signature_tag(digest: &str) -> Result<String, SignatureError> {
    let digest = crate::reference::normalise_digest(digest)
        .ok_or_else(|| SignatureError::MalformedManifest(format!("not a digest: {digest:?}")))?;
    Ok(format!("{}.sig", digest.replacen(':', "-", 1)))
}

/// Whether a tag is a signature artifact tag, not an image tag: cosign's `sha256-<hex>.sig`,
/// `.att`, `.sbom`, or the OCI referrers fallback index `sha256-<hex>` (the full digest).
pub fn is_artifact_tag(tag: &str) -> bool {
    let Some((alg, rest)) = tag.split_once('-') else {
        return false;
    };
    let hex_ok = |hex: &str| !hex.is_empty() && hex.bytes().all(|b| b.is_ascii_hexdigit());
    if !matches!(alg, "sha256" | "sha384" | "sha512") {
        return false;
    }
    match rest.rsplit_once('.') {
        Some((hex, suffix)) => hex_ok(hex) && matches!(suffix, "sig" | "att" | "sbom"),
        None => {
            let full = match alg {
                "sha256" => 64,
                "sha384" => 96,
                _ => 128,
            };
            rest.len() == full && hex_ok(rest)
        }
    }
}

/// One layer descriptor of a signature manifest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Descriptor {
    /// The layer's media type (the simple-signing payload type for a signature layer).
    #[serde(rename = "mediaType")]
    pub media_type: String,
    /// Size of the layer blob in bytes.
    pub size: u64,
    /// Digest of the layer blob (the payload), `algorithm:hex`.
    pub digest: String,
    /// Layer annotations; the signature itself sits under [`SIGNATURE_ANNOTATION`], base64.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl Descriptor {
    /// The layer's signature, base64-decoded; `None` when the annotation is absent or not base64.
    pub fn signature(&self) -> Option<Vec<u8>> {
        let text = self.annotations.get(SIGNATURE_ANNOTATION)?;
        base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .ok()
    }

    /// A descriptor for a payload blob and its raw signature.
    pub fn for_signature(
        payload: &[u8],
        signature: &[u8],
        extra: &BTreeMap<String, String>,
    ) -> Self {
        let mut annotations = extra.clone();
        annotations.insert(
            SIGNATURE_ANNOTATION.to_string(),
            base64::engine::general_purpose::STANDARD.encode(signature),
        );
        Descriptor {
            media_type: SIMPLE_SIGNING_MEDIA_TYPE.to_string(),
            size: payload.len() as u64,
            digest: sha256_digest(payload),
            annotations,
        }
    }

    /// Same payload and same signature: adding it again would duplicate a signature.
    pub fn same_signature(&self, other: &Descriptor) -> bool {
        self.digest == other.digest
            && self.signature().is_some()
            && self.signature() == other.signature()
    }
}

#[derive(Deserialize)]
struct ManifestDoc {
    #[serde(rename = "schemaVersion")]
    schema_version: u32,
    #[serde(default)]
    layers: Vec<Descriptor>,
}

/// The simple-signing layers of a signature manifest (other layers are ignored).
pub fn parse_signature_manifest(bytes: &[u8]) -> Result<Vec<Descriptor>, SignatureError> {
    Ok(parse_manifest_layers(bytes)?
        .into_iter()
        .filter(|l| l.media_type == SIMPLE_SIGNING_MEDIA_TYPE)
        .collect())
}

/// Every layer descriptor of a signature manifest, whatever its media type, in manifest order
/// (the reader counts the layers it does not use instead of dropping them silently).
pub fn parse_manifest_layers(bytes: &[u8]) -> Result<Vec<Descriptor>, SignatureError> {
    let doc: ManifestDoc = serde_json::from_slice(bytes).map_err(|e| {
        SignatureError::MalformedManifest(format!(
            "signature manifest is not an image manifest: {e}"
        ))
    })?;
    if doc.schema_version != 2 {
        return Err(SignatureError::MalformedManifest(format!(
            "signature manifest has schemaVersion {}",
            doc.schema_version
        )));
    }
    Ok(doc.layers)
}

/// The config blob and the manifest bytes of a signature manifest holding `layers`.
pub struct BuiltManifest {
    /// The config blob (JSON, listing the layers as `rootfs.diff_ids`); upload it first.
    pub config: Vec<u8>,
    /// The OCI image manifest JSON, referring to the config blob and the layers.
    pub manifest: Vec<u8>,
}

/// Builds the manifest (and its config blob, listing the layers as cosign does) for `layers`.
pub fn build_signature_manifest(layers: &[Descriptor]) -> Result<BuiltManifest, SignatureError> {
    let diff_ids: Vec<&str> = layers.iter().map(|l| l.digest.as_str()).collect();
    let config = serde_json::to_vec(&json!({
        "architecture": "",
        "config": {},
        "created": "0001-01-01T00:00:00Z",
        "history": [{"created": "0001-01-01T00:00:00Z"}],
        "os": "",
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }))
    .map_err(|e| SignatureError::MalformedManifest(e.to_string()))?;
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST_MEDIA_TYPE,
        "config": {
            "mediaType": OCI_CONFIG_MEDIA_TYPE,
            "size": config.len(),
            "digest": sha256_digest(&config),
        },
        "layers": layers,
    }))
    .map_err(|e| SignatureError::MalformedManifest(e.to_string()))?;
    Ok(BuiltManifest { config, manifest })
}

/// `sha256:<hex>` of the bytes.
pub fn sha256_digest(bytes: &[u8]) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
    format!("sha256:{}", hex::encode(digest.as_ref()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_tag_follows_cosign() {
        let d = format!("sha256:{}", "AB".repeat(32));
        assert_eq!(
            signature_tag(&d).unwrap(),
            format!("sha256-{}.sig", "ab".repeat(32))
        );
        assert!(signature_tag("latest").is_err());
        assert!(is_artifact_tag(&format!("sha256-{}.sig", "ab".repeat(32))));
        assert!(is_artifact_tag(&format!("sha256-{}.att", "ab".repeat(32))));
        assert!(!is_artifact_tag("v1.sig"));
        // The referrers fallback index: the whole digest, nothing else.
        assert!(is_artifact_tag(&format!("sha256-{}", "ab".repeat(32))));
        assert!(!is_artifact_tag("sha256-abc"));
        assert!(!is_artifact_tag(&format!("sha512-{}", "ab".repeat(32))));
        assert!(!is_artifact_tag("latest"));
    }

    #[test]
    fn reads_the_manifest_written_by_cosign() {
        let bytes = include_bytes!("../../tests/fixtures/cosign-sig-manifest.example.json");
        let layers = parse_signature_manifest(bytes).unwrap();
        assert_eq!(layers.len(), 1);
        assert_eq!(layers[0].size, 241);
        assert_eq!(layers[0].signature().unwrap().len(), 72);
        // The payload fixture is the blob this layer names.
        let payload =
            include_bytes!("../../tests/fixtures/cosign-simplesigning-payload.example.json");
        assert_eq!(sha256_digest(payload.trim_ascii_end()), layers[0].digest);
    }

    #[test]
    fn build_and_parse_round_trip() {
        let a = Descriptor::for_signature(b"p1", b"s1", &BTreeMap::new());
        let b = Descriptor::for_signature(b"p2", b"s2", &BTreeMap::new());
        let built = build_signature_manifest(&[a.clone(), b.clone()]).unwrap();
        assert_eq!(
            parse_signature_manifest(&built.manifest).unwrap(),
            vec![a.clone(), b]
        );
        assert!(a.same_signature(&Descriptor::for_signature(b"p1", b"s1", &BTreeMap::new())));
        assert!(!a.same_signature(&Descriptor::for_signature(b"p1", b"s9", &BTreeMap::new())));
        let text = String::from_utf8(built.manifest).unwrap();
        assert!(
            text.contains(r#""dev.cosignproject.cosign/signature":"czE=""#),
            "{text}"
        );
    }

    #[test]
    fn garbage_manifest_is_an_error() {
        assert!(parse_signature_manifest(b"nope").is_err());
        assert!(parse_signature_manifest(br#"{"schemaVersion":1}"#).is_err());
    }
}
