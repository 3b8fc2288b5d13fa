//! Whether one Notation signature counts for an image: [`super::notation::verify_notation`] under
//! each of an Attestor's certificate trust stores, then the same claim rules as the other formats.
//!
//! The signature binds the admitted manifest's digest, media type and size (checked by
//! `verify_notation`). `Simple` asks no more. `Default` also binds the workload's repository and
//! tag, which a Notation payload carries only in signet's `io.signet.reference` annotation: a
//! signature without it binds the digest only and satisfies `Simple` only, and the denial says so.

use super::check::{Rejection, StoredSignature};
use super::notation::{NotationClaims, TargetArtifact, verify_notation};
use super::{SignatureFormat, SignatureType};
use crate::crypto::x509::TrustStore;
use crate::reference::ImageRef;

/// Why a `Default` policy refuses a Notation signature without a tag binding, and what to do.
pub const NOTATION_DIGEST_ONLY_HINT: &str = "Notation signature binds the digest only (no \
     io.signet.reference annotation): use signatureType: Simple to accept it";

/// A Notation signature that counts: which trust store verified it, and its claims.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AcceptedNotation {
    /// Index into the trust stores passed to [`check_notation`].
    pub trust_index: usize,
    /// What the signature proved.
    pub claims: NotationClaims,
}

/// Checks one stored Notation signature for `image` resolved to `digest`, under `trust` (one
/// store per `certificates` key of the Attestor), at `now` (Unix seconds).
pub fn check_notation(
    stored: &StoredSignature,
    image: &ImageRef,
    digest: &str,
    signature_type: SignatureType,
    trust: &[&TrustStore],
    now: i64,
) -> Result<AcceptedNotation, Rejection> {
    let notation = match (&stored.notation, stored.format) {
        (Some(n), SignatureFormat::Notation) => n,
        _ => return Err(Rejection::UntrustedKey),
    };
    if trust.is_empty() {
        return Err(Rejection::NoCertificateTrust);
    }
    let target = TargetArtifact {
        media_type: notation.target_media_type.clone(),
        digest: digest.to_string(),
        size: notation.target_size,
        annotations: Default::default(),
    };
    // The first store that accepts wins; otherwise the last store's reason (they differ only
    // in the anchor reached, so any one explains the failure).
    let mut last = Rejection::NoCertificateTrust;
    for (trust_index, store) in trust.iter().enumerate() {
        match verify_notation(&notation.manifest, &stored.payload, &target, store, now) {
            Ok(claims) => {
                check_reference(&claims, image, signature_type)?;
                return Ok(AcceptedNotation {
                    trust_index,
                    claims,
                });
            }
            Err(why) => last = Rejection::Notation(why),
        }
    }
    Err(last)
}

/// `Default`: the signed `io.signet.reference` names the workload's repository and tag.
fn check_reference(
    claims: &NotationClaims,
    image: &ImageRef,
    signature_type: SignatureType,
) -> Result<(), Rejection> {
    if signature_type == SignatureType::Simple {
        return Ok(());
    }
    let Some(reference) = &claims.reference else {
        return Err(Rejection::NotationDigestOnly);
    };
    let signed = ImageRef::parse_exact(reference).map_err(|_| {
        Rejection::MalformedPayload(format!("bad io.signet.reference {reference:?}"))
    })?;
    if signed.repo_path() != image.repo_path() {
        return Err(Rejection::OtherRepository(signed.repo_path()));
    }
    match (image.tag(), signed.tag()) {
        (Some(_), None) => Err(Rejection::NotationDigestOnly),
        (Some(tag), Some(other)) if other != tag => Err(Rejection::TagNotBound {
            tag: tag.to_string(),
            signed: reference.clone(),
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::crypto::x509::{Certificate, self_signed_code_signing_certificate};
    use crate::crypto::{Algorithm, FileKey, generate_key_pair};
    use crate::signature::notation::{EnvelopeFormat, REFERENCE_ANNOTATION, sign_notation};
    use crate::signature::{NotationStored, check_signature};

    const D: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    const MEDIA: &str = "application/vnd.oci.image.manifest.v1+json";

    /// A signature by a fresh self-signed signer, and that signer's trust store.
    fn signed(reference: Option<&str>) -> (StoredSignature, TrustStore) {
        let pair = generate_key_pair(Algorithm::EcdsaP256Sha256, None).unwrap();
        let now = jiff::Timestamp::now().as_second();
        let pem = self_signed_code_signing_certificate(
            pair.private_key_pem(),
            Algorithm::EcdsaP256Sha256,
            "CN=release,O=acme,C=US",
            now,
            1,
        )
        .unwrap();
        let key =
            FileKey::from_pem(pair.private_key_pem(), Algorithm::EcdsaP256Sha256, "k").unwrap();
        let mut annotations = BTreeMap::new();
        if let Some(r) = reference {
            annotations.insert(REFERENCE_ANNOTATION.to_string(), r.to_string());
        }
        let target = TargetArtifact {
            media_type: MEDIA.into(),
            digest: D.into(),
            size: 512,
            annotations,
        };
        let chain = Certificate::from_pem_bundle(&pem).unwrap();
        let s = sign_notation(&key, &chain, &target, EnvelopeFormat::Jws, now, None).unwrap();
        let stored = StoredSignature::notation(
            s.envelope,
            NotationStored {
                manifest: s.manifest,
                target_media_type: MEDIA.into(),
                target_size: 512,
            },
        );
        (stored, TrustStore::new(&pem, &[], None).unwrap())
    }

    fn check(
        stored: &StoredSignature,
        image: &str,
        t: SignatureType,
        trust: &[&TrustStore],
    ) -> Result<AcceptedNotation, Rejection> {
        let image = ImageRef::parse(image).unwrap();
        check_notation(
            stored,
            &image,
            D,
            t,
            trust,
            jiff::Timestamp::now().as_second(),
        )
    }

    #[test]
    fn default_needs_the_signed_reference_to_name_the_repository_and_tag() {
        let (stored, trust) = signed(Some("reg.example/apps/web:v1"));
        let (_, other) = signed(None);
        let accepted = check(
            &stored,
            "reg.example/apps/web:v1",
            SignatureType::Default,
            &[&other, &trust],
        )
        .unwrap();
        assert_eq!(accepted.trust_index, 1);
        assert_eq!(
            accepted.claims.reference.as_deref(),
            Some("reg.example/apps/web:v1")
        );
        assert_eq!(
            check(
                &stored,
                "reg.example/apps/web:v2",
                SignatureType::Default,
                &[&trust]
            ),
            Err(Rejection::TagNotBound {
                tag: "v2".into(),
                signed: "reg.example/apps/web:v1".into()
            })
        );
        assert_eq!(
            check(
                &stored,
                "reg.example/apps/api:v1",
                SignatureType::Default,
                &[&trust]
            ),
            Err(Rejection::OtherRepository("reg.example/apps/web".into()))
        );
        assert!(
            check(
                &stored,
                "reg.example/apps/api:v2",
                SignatureType::Simple,
                &[&trust]
            )
            .is_ok()
        );
    }

    #[test]
    fn a_digest_only_signature_satisfies_simple_only_and_says_so() {
        let (stored, trust) = signed(None);
        let denied = check(
            &stored,
            "reg.example/apps/web:v1",
            SignatureType::Default,
            &[&trust],
        );
        assert_eq!(denied, Err(Rejection::NotationDigestOnly));
        assert_eq!(denied.unwrap_err().to_string(), NOTATION_DIGEST_ONLY_HINT);
        assert!(
            check(
                &stored,
                "reg.example/apps/web:v1",
                SignatureType::Simple,
                &[&trust]
            )
            .is_ok()
        );
    }

    #[test]
    fn only_the_signers_anchor_verifies_and_public_keys_never_do() {
        let (stored, _) = signed(None);
        let (_, other) = signed(None);
        let simple = SignatureType::Simple;
        let image = "reg.example/apps/web:v1";
        let refused = check(&stored, image, simple, &[&other]).unwrap_err();
        assert!(matches!(refused, Rejection::Notation(_)), "{refused:?}");
        assert!(
            refused.to_string().starts_with("Notation signature: "),
            "{refused}"
        );
        assert_eq!(
            check(&stored, image, simple, &[]),
            Err(Rejection::NoCertificateTrust)
        );
        let parsed = ImageRef::parse(image).unwrap();
        assert_eq!(
            check_signature(&stored, &parsed, D, simple, &[]),
            Err(Rejection::NoCertificateTrust)
        );
    }
}
