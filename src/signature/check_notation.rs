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
