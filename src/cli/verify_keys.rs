//! Verifying one image against one set of keys: resolve, fetch its signatures, check each.
//! Used by `signet verify --key`; the policy engine does the same for attestors. It lives with
//! the CLI because only `verify` reports signatures one by one (with reasons) this way.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::crypto::PublicKey;
use crate::reference::ImageRef;
use crate::registry::{RegistryError, SignatureStore, SkippedLayers};
use crate::signature::{SignatureFormat, SignatureType, check_signature};

/// The verdict for one image and one key set, with the fate of every signature found.
#[derive(Clone, Debug, Serialize)]
pub struct KeyVerification {
    /// The image as given on the command line.
    pub image: String,
    /// The manifest digest the image resolved to; signatures are checked against it.
    pub digest: String,
    /// True when at least one signature verified with one of the keys.
    pub verified: bool,
    /// Every signature read: the `.sig` layers in manifest order, then the bundles.
    pub signatures: Vec<SignatureFinding>,
    /// Layers of the `.sig` manifest not read (by reason): not signatures, or past the budgets.
    #[serde(skip_serializing_if = "SkippedLayers::is_empty")]
    pub skipped: SkippedLayers,
}

/// What became of one stored signature.
#[derive(Clone, Debug, Serialize)]
pub struct SignatureFinding {
    /// Position among the signatures read (manifest order), from 1.
    pub index: usize,
    /// `CosignSignature` (the `.sig` tag) or `SigstoreBundle` (a referrer).
    pub format: SignatureFormat,
    /// True when one of the keys verified it for this image and digest.
    pub valid: bool,
    /// The fingerprint of the key that verified it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// The signed identity, when valid.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identity: Option<String>,
    /// Why it does not count, when invalid.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Annotations (`verify -a k=v`) a signature's payload must carry in its `optional` section.
#[derive(Clone, Debug, Default)]
pub struct RequiredAnnotations(pub BTreeMap<String, String>);

impl RequiredAnnotations {
    /// Why `optional` does not carry every required annotation, or `None` when it does. A
    /// non-string value is compared as its JSON text (`1` matches `-a k=1`).
    pub fn missing(&self, optional: &serde_json::Map<String, serde_json::Value>) -> Option<String> {
        self.0
            .iter()
            .find_map(|(key, wanted)| match optional.get(key) {
                None => Some(format!("annotation {key:?} required but absent")),
                Some(serde_json::Value::String(found)) if found == wanted => None,
                Some(serde_json::Value::String(found)) => {
                    Some(format!("annotation {key:?} is {found:?}, not {wanted:?}"))
                }
                Some(other) if serde_json::to_string(other).is_ok_and(|text| text == *wanted) => {
                    None
                }
                Some(other) => Some(format!("annotation {key:?} is {other}, not {wanted:?}")),
            })
    }
}

/// Resolves `image`, fetches its signatures and checks each against `keys`; a signature counts
/// only when its payload also carries the `required` annotations.
pub async fn verify_with_keys(
    store: &SignatureStore,
    image: &ImageRef,
    signature_type: SignatureType,
    keys: &[PublicKey],
    required: &RequiredAnnotations,
) -> Result<KeyVerification, RegistryError> {
    let digest = store.client().resolve_digest(image).await?;
    let set = store.fetch_signatures(image, &digest).await?;
    let signatures: Vec<SignatureFinding> = set
        .signatures
        .iter()
        .enumerate()
        .map(
            |(i, s)| match check_signature(s, image, &digest, signature_type, keys) {
                Ok(accepted) if required.missing(&accepted.payload.optional).is_some() => {
                    SignatureFinding {
                        index: i + 1,
                        format: s.format,
                        valid: false,
                        key: None,
                        identity: None,
                        reason: required.missing(&accepted.payload.optional),
                    }
                }
                Ok(accepted) => SignatureFinding {
                    index: i + 1,
                    format: s.format,
                    valid: true,
                    key: keys
                        .get(accepted.key_index)
                        .map(|k| k.fingerprint().to_string()),
                    identity: Some(accepted.payload.docker_reference),
                    reason: None,
                },
                Err(rejection) => SignatureFinding {
                    index: i + 1,
                    format: s.format,
                    valid: false,
                    key: None,
                    identity: None,
                    reason: Some(rejection.to_string()),
                },
            },
        )
        .collect();
    Ok(KeyVerification {
        image: image.to_string(),
        digest,
        verified: signatures.iter().any(|s| s.valid),
        signatures,
        skipped: set.skipped,
    })
}

impl KeyVerification {
    /// A human report: one line when verified; otherwise why each signature failed.
    pub fn to_text(&self) -> String {
        let head = format!("{} ({})", self.image, self.digest);
        if let Some(ok) = self.signatures.iter().find(|s| s.valid) {
            return format!(
                "verified: {head}: signature {} ({}) by key {} for {}\n",
                ok.index,
                ok.format,
                ok.key.as_deref().unwrap_or("?"),
                ok.identity.as_deref().unwrap_or("?")
            );
        }
        if self.signatures.is_empty() {
            if self.skipped.may_hide_signature() {
                return format!(
                    "not verified: {head}: no valid signature within the read budget: {}\n",
                    self.skipped
                );
            }
            return format!("not verified: {head}: no signature\n");
        }
        let mut out = format!(
            "not verified: {head}: no valid signature among {}\n",
            self.signatures.len()
        );
        for s in &self.signatures {
            out.push_str(&format!(
                "  signature {} ({}): {}\n",
                s.index,
                s.format,
                s.reason.as_deref().unwrap_or("?")
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn required_annotations_must_all_match() {
        let required = RequiredAnnotations(BTreeMap::from([
            ("env".to_string(), "prod".to_string()),
            ("build".to_string(), "42".to_string()),
        ]));
        let optional = |json: serde_json::Value| json.as_object().cloned().unwrap_or_default();
        assert_eq!(
            required.missing(&optional(
                serde_json::json!({"env": "prod", "build": 42, "x": 1})
            )),
            None
        );
        assert_eq!(
            required.missing(&optional(serde_json::json!({"env": "dev", "build": "42"}))),
            Some(r#"annotation "env" is "dev", not "prod""#.to_string())
        );
        assert_eq!(
            required.missing(&optional(serde_json::json!({"build": "42"}))),
            Some(r#"annotation "env" required but absent"#.to_string())
        );
        assert_eq!(
            RequiredAnnotations::default().missing(&serde_json::Map::new()),
            None
        );
    }
}
