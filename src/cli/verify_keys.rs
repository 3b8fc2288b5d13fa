//! Verifying one image against one set of keys: resolve, fetch its signatures, check each.
//! Used by `signet verify --key` (cosign formats) and `--certificate` (Notation signatures,
//! against X.509 trust anchors); the policy engine does the same for attestors. It lives with
//! the CLI because only `verify` reports signatures one by one (with reasons) this way.
//!
//! Signatures are read in stages ([`super::verify_staged`]): with a key, the `.sig` tag first,
//! and the referrers only when no `.sig` signature verifies (3 requests instead of 6 for an
//! image signed in both cosign formats); with anchors only, the referrers first. The report
//! names the formats not read (`formats_not_read`); `--all-signatures` reads and reports every
//! one.

use std::collections::BTreeMap;

use serde::Serialize;

use super::verify_staged::read_staged;
use crate::crypto::PublicKey;
use crate::crypto::x509::TrustStore;
use crate::policy::ReadOrder;
use crate::reference::ImageRef;
use crate::registry::{RegistryError, SignatureSet, SignatureStore, SkippedLayers};
use crate::signature::{
    Accepted, Rejection, SignatureFormat, SignatureType, StoredSignature, check_notation,
    check_signature,
};

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
    /// Formats whose store was not read because a signature read first already verified.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub formats_not_read: Vec<SignatureFormat>,
}

/// What became of one stored signature.
#[derive(Clone, Debug, Serialize)]
pub struct SignatureFinding {
    /// Position among the signatures read (manifest order), from 1.
    pub index: usize,
    /// `CosignSignature` (the `.sig` tag), `SigstoreBundle` or `Notation` (referrers).
    pub format: SignatureFormat,
    /// True when one of the keys verified it for this image and digest.
    pub valid: bool,
    /// The fingerprint of the key that verified it (for Notation: of the trust anchor reached).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// The signed identity, when valid (for Notation: `io.signet.reference`, else the digest).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identity: Option<String>,
    /// Notation: the signing certificate's subject, when valid.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signer: Option<String>,
    /// Notation: what revocation checking the verdict rests on (`not checked`), when valid.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revocation: Option<&'static str>,
    /// Notation: the signing time a trusted RFC 3161 timestamp proved (RFC 3339), when the
    /// verdict needed one (a certificate outside its validity now).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timestamped_at: Option<String>,
    /// Notation: the timestamping authority that proved it (certificate subject).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timestamped_by: Option<String>,
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

/// Resolves `image`, fetches its signatures (in stages: the referrers only when no `.sig`
/// signature verifies) and checks each against `keys`; a signature counts only when its payload
/// also carries the `required` annotations.
pub async fn verify_with_keys(
    store: &SignatureStore,
    image: &ImageRef,
    signature_type: SignatureType,
    keys: &[PublicKey],
    required: &RequiredAnnotations,
) -> Result<KeyVerification, RegistryError> {
    verify_with_trust(store, image, signature_type, keys, &[], required).await
}

/// [`verify_with_keys`], Notation signatures also checked against `trust` (certificate trust
/// anchors and their trusted identities). Staged: the store read second is read only when
/// nothing in the first verifies.
pub async fn verify_with_trust(
    store: &SignatureStore,
    image: &ImageRef,
    signature_type: SignatureType,
    keys: &[PublicKey],
    trust: &[&TrustStore],
    required: &RequiredAnnotations,
) -> Result<KeyVerification, RegistryError> {
    let against = Against {
        signature_type,
        keys,
        trust,
        required,
    };
    verify_reading(store, image, &against, false).await
}

/// What signatures are checked against.
pub struct Against<'a> {
    /// `Default` binds the tag too; `Simple` the digest only.
    pub signature_type: SignatureType,
    /// Public keys (cosign formats).
    pub keys: &'a [PublicKey],
    /// Certificate trust anchors (Notation).
    pub trust: &'a [&'a TrustStore],
    /// Annotations a signature must carry.
    pub required: &'a RequiredAnnotations,
}

/// [`verify_with_trust`]; with `every_store`, both stores are read (at once) and every
/// signature reported, even when the first store would settle it.
pub async fn verify_reading(
    store: &SignatureStore,
    image: &ImageRef,
    against: &Against<'_>,
    every_store: bool,
) -> Result<KeyVerification, RegistryError> {
    let digest = store.client().resolve_manifest(image).await?;
    let order = if every_store {
        ReadOrder::Together
    } else {
        ReadOrder::for_keys(!against.keys.is_empty(), !against.trust.is_empty())
    };
    let now = jiff::Timestamp::now().as_second();
    // Notation envelopes whose thumbprints name none of `trust` are not fetched.
    let notation_trust = (!against.trust.is_empty()).then_some(against.trust);
    let read = read_staged(store, image, &digest, order, notation_trust, |set| {
        findings(set, image, &digest, against, now)
            .iter()
            .any(|f| f.valid)
    })
    .await?;
    let signatures = findings(&read.set, image, &digest, against, now);
    Ok(KeyVerification {
        image: image.to_string(),
        digest,
        verified: signatures.iter().any(|s| s.valid),
        signatures,
        formats_not_read: read.unread_formats(),
        skipped: read.set.skipped,
    })
}

/// The fate of each signature of `set`.
fn findings(
    set: &SignatureSet,
    image: &ImageRef,
    digest: &str,
    against: &Against<'_>,
    now: i64,
) -> Vec<SignatureFinding> {
    set.signatures
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let finding = match s.format {
                SignatureFormat::Notation => notation_finding(
                    s,
                    image,
                    digest,
                    against.signature_type,
                    against.trust,
                    now,
                    against.required,
                ),
                _ => key_finding(
                    check_signature(s, image, digest, against.signature_type, against.keys),
                    against.keys,
                    against.required,
                ),
            };
            SignatureFinding {
                index: i + 1,
                format: s.format,
                ..finding
            }
        })
        .collect()
}

fn invalid(reason: String) -> SignatureFinding {
    SignatureFinding {
        index: 0,
        format: SignatureFormat::CosignSignature,
        valid: false,
        key: None,
        identity: None,
        signer: None,
        revocation: None,
        timestamped_at: None,
        timestamped_by: None,
        reason: Some(reason),
    }
}

fn key_finding(
    checked: Result<Accepted, Rejection>,
    keys: &[PublicKey],
    required: &RequiredAnnotations,
) -> SignatureFinding {
    match checked {
        Ok(accepted) => match required.missing(&accepted.payload.optional) {
            Some(why) => invalid(why),
            None => SignatureFinding {
                valid: true,
                key: keys
                    .get(accepted.key_index)
                    .map(|k| k.fingerprint().to_string()),
                identity: Some(accepted.payload.docker_reference),
                reason: None,
                ..invalid(String::new())
            },
        },
        Err(rejection) => invalid(rejection.to_string()),
    }
}

fn notation_finding(
    stored: &StoredSignature,
    image: &ImageRef,
    digest: &str,
    signature_type: SignatureType,
    trust: &[&TrustStore],
    now: i64,
    required: &RequiredAnnotations,
) -> SignatureFinding {
    match check_notation(stored, image, digest, signature_type, trust, now) {
        Ok(accepted) => {
            let claims = accepted.claims;
            // The signed `targetArtifact.annotations` play the part of cosign's `optional`.
            let annotations = claims
                .annotations
                .iter()
                .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
                .collect();
            match required.missing(&annotations) {
                Some(why) => invalid(why),
                None => SignatureFinding {
                    valid: true,
                    key: Some(claims.anchor_fingerprint),
                    identity: Some(claims.reference.unwrap_or_else(|| digest.to_string())),
                    signer: Some(claims.signer),
                    revocation: Some(claims.revocation),
                    timestamped_at: claims
                        .authentic_signing_time
                        .as_ref()
                        .map(|t| t.time.clone()),
                    timestamped_by: claims.authentic_signing_time.map(|t| t.tsa),
                    reason: None,
                    ..invalid(String::new())
                },
            }
        }
        Err(rejection) => invalid(rejection.to_string()),
    }
}

impl KeyVerification {
    /// A human report: one line when verified; otherwise why each signature failed.
    pub fn to_text(&self) -> String {
        let head = format!("{} ({})", self.image, self.digest);
        if let Some(ok) = self.signatures.iter().find(|s| s.valid) {
            let by = match &ok.signer {
                Some(signer) => format!(
                    "signer {signer:?} under trust anchor {} (revocation {})",
                    ok.key.as_deref().unwrap_or("?"),
                    ok.revocation.unwrap_or("?")
                ),
                None => format!("key {}", ok.key.as_deref().unwrap_or("?")),
            };
            return format!(
                "verified: {head}: signature {} ({}) by {by} for {}\n",
                ok.index,
                ok.format,
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
            // Signatures skipped unread because they could not verify here (a Notation chain
            // naming none of the anchors) are still said.
            if !self.skipped.is_empty() {
                return format!("not verified: {head}: no signature: {}\n", self.skipped);
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
