//! Whether one stored signature counts for an image: the rules of DESIGN.md in one place, shared by
//! `signet verify` and the policy engine.
//!
//! A signature counts only when it verifies under one of the trusted keys (with that key's
//! algorithm), its payload names the resolved digest and a known type, and, for `Default`, the
//! payload's identity names the workload's repository and tag (a digest-only workload needs the
//! same repository). `Simple` binds the digest only, so images copied between registries keep
//! their signatures.

use std::fmt;

use super::SignatureFormat;
use super::payload::{ATOMIC_TYPE, COSIGN_TYPE, Payload, SignatureType, parse_payload};
use crate::crypto::PublicKey;
use crate::reference::ImageRef;

/// A signature as fetched, in its format: for `CosignSignature` the payload bytes and the raw
/// signature over exactly those bytes; for `SigstoreBundle` the bundle (the layer blob) as
/// `payload`, the signature being inside it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredSignature {
    /// The layer blob exactly as stored: the simple-signing payload, or the bundle.
    pub payload: Vec<u8>,
    /// `CosignSignature`: `None` when the layer carried no (or no base64) signature annotation.
    /// Always `None` for a bundle.
    pub signature: Option<Vec<u8>>,
    /// Which format `payload` is in.
    pub format: SignatureFormat,
    /// `Notation` only: the signature manifest and the admitted manifest's descriptor (`payload`
    /// holds the envelope).
    pub notation: Option<NotationStored>,
}

/// What a Notation signature is checked with besides its envelope: its signature manifest (which
/// names the envelope blob and the chain's thumbprints) and the media type and size of the
/// manifest it was read for, which the signed payload must also name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotationStored {
    /// The signature manifest, as fetched.
    pub manifest: Vec<u8>,
    /// The admitted manifest's media type, as the registry serves it.
    pub target_media_type: String,
    /// The admitted manifest's size in bytes.
    pub target_size: u64,
}

impl StoredSignature {
    /// A legacy cosign signature: a simple-signing payload and the signature annotation.
    pub fn cosign(payload: Vec<u8>, signature: Option<Vec<u8>>) -> Self {
        StoredSignature {
            payload,
            signature,
            format: SignatureFormat::CosignSignature,
            notation: None,
        }
    }

    /// A Sigstore bundle, as its layer blob.
    pub fn bundle(bundle: Vec<u8>) -> Self {
        StoredSignature {
            payload: bundle,
            signature: None,
            format: SignatureFormat::SigstoreBundle,
            notation: None,
        }
    }

    /// A Notation signature: its envelope (the layer blob), and what it is checked with.
    pub fn notation(envelope: Vec<u8>, stored: NotationStored) -> Self {
        StoredSignature {
            payload: envelope,
            signature: None,
            format: SignatureFormat::Notation,
            notation: Some(stored),
        }
    }
}

/// Why a stored signature does not count. Each reads as the end of a sentence about the signature.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rejection {
    /// The layer has no signature annotation.
    Unsigned,
    /// No trusted key verifies the signature.
    UntrustedKey,
    /// The signature verifies but the payload is not simple-signing JSON.
    MalformedPayload(String),
    /// Unknown `critical.type`.
    UnknownType(String),
    /// The payload names another digest (a signature copied from another image).
    OtherDigest(String),
    /// The identity names another repository.
    OtherRepository(String),
    /// A bundle that is not one DSSE signature over an in-toto statement (says why).
    MalformedBundle(String),
    /// A bundle carrying its own certificate, and no Attestor key verifies it.
    UntrustedBundleKey,
    /// A bundle whose statement has another predicate type (an attestation, not a signature).
    NotImageSignature(String),
    /// `Default`: the identity names the repository without a tag (or nothing), as cosign signs.
    NoTagBinding {
        /// The identity signed (empty when the bundle names none).
        signed: String,
    },
    /// `Default`: the identity does not bind the workload's tag.
    TagNotBound {
        /// The workload's tag.
        tag: String,
        /// The identity the payload signs (`critical.identity.docker-reference`).
        signed: String,
    },
    /// A Notation signature was checked against public keys, or against no trust anchor: only
    /// an Attestor's `certificates` key can verify it.
    NoCertificateTrust,
    /// A Notation signature that does not verify under the Attestor's certificate trust.
    Notation(crate::signature::notation::NotationRejection),
    /// `Default`: a Notation signature without `io.signet.reference` binds the digest only.
    NotationDigestOnly,
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rejection::Unsigned => write!(f, "layer carries no signature"),
            Rejection::UntrustedKey => write!(f, "not signed by a trusted key"),
            Rejection::MalformedPayload(why) => write!(f, "malformed payload: {why}"),
            Rejection::UnknownType(t) => write!(f, "unknown payload type {t:?}"),
            Rejection::OtherDigest(d) => write!(f, "signature for another digest ({d})"),
            Rejection::OtherRepository(r) => write!(f, "signature for another repository ({r})"),
            Rejection::MalformedBundle(why) => write!(f, "malformed bundle: {why}"),
            Rejection::UntrustedBundleKey => write!(
                f,
                "not signed by a trusted key (the certificate the bundle carries is never trusted)"
            ),
            Rejection::NotImageSignature(t) => write!(
                f,
                "predicate type {t:?} is not an image signature ({})",
                super::bundle::COSIGN_SIGN_PREDICATE
            ),
            Rejection::NoTagBinding { .. } => write!(f, "{NO_TAG_BINDING_HINT}"),
            Rejection::TagNotBound { tag, signed } => {
                write!(f, "tag {tag:?} not bound: the signature names {signed}")
            }
            Rejection::NoCertificateTrust => write!(
                f,
                "Notation signature, and no certificate trust anchor to verify it"
            ),
            Rejection::Notation(why) => write!(f, "Notation signature: {why}"),
            Rejection::NotationDigestOnly => {
                write!(f, "{}", super::check_notation::NOTATION_DIGEST_ONLY_HINT)
            }
        }
    }
}

/// Why a `Default` policy refuses what cosign signs (no tag in the identity), and what to do.
pub const NO_TAG_BINDING_HINT: &str =
    "signed without a tag binding, as cosign signs: use signatureType: Simple to accept it";

/// A signature that counts: which key verified it, and its claims.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Accepted {
    /// Index into the key list passed to [`check_signature`].
    pub key_index: usize,
    /// The parsed payload: the digest and identity the signature vouches for (for a bundle:
    /// the subject name, the digest, the predicate type and the predicate).
    pub payload: Payload,
}

/// Checks one stored signature for `image` (as the workload or user wrote it) resolved to `digest`.
pub fn check_signature(
    stored: &StoredSignature,
    image: &ImageRef,
    digest: &str,
    signature_type: SignatureType,
    keys: &[PublicKey],
) -> Result<Accepted, Rejection> {
    match stored.format {
        SignatureFormat::SigstoreBundle => {
            return super::bundle::check_bundle(
                &stored.payload,
                image,
                digest,
                signature_type,
                keys,
            );
        }
        // Public keys never verify a Notation signature: see `check_notation`.
        SignatureFormat::Notation => return Err(Rejection::NoCertificateTrust),
        SignatureFormat::CosignSignature => {}
    }
    let signature = stored.signature.as_deref().ok_or(Rejection::Unsigned)?;
    // Verify before reading any claim: an unsigned claim means nothing.
    let key_index = keys
        .iter()
        .position(|k| k.verify(&stored.payload, signature).is_ok())
        .ok_or(Rejection::UntrustedKey)?;
    let payload = parse_payload(&stored.payload).map_err(|e| {
        Rejection::MalformedPayload(match e {
            crate::signature::SignatureError::MalformedPayload(why) => why,
            other => other.to_string(),
        })
    })?;
    check_claims(&payload, image, digest, signature_type)?;
    Ok(Accepted { key_index, payload })
}

/// The claim checks alone (digest, type, identity), for a payload already known to be signed.
pub fn check_claims(
    payload: &Payload,
    image: &ImageRef,
    digest: &str,
    signature_type: SignatureType,
) -> Result<(), Rejection> {
    if payload.kind != COSIGN_TYPE && payload.kind != ATOMIC_TYPE {
        return Err(Rejection::UnknownType(payload.kind.clone()));
    }
    if !payload.manifest_digest.eq_ignore_ascii_case(digest) {
        return Err(Rejection::OtherDigest(payload.manifest_digest.clone()));
    }
    if signature_type == SignatureType::Simple {
        return Ok(());
    }
    let signed = ImageRef::parse_exact(&payload.docker_reference).map_err(|_| {
        Rejection::MalformedPayload(format!(
            "bad docker-reference {:?}",
            payload.docker_reference
        ))
    })?;
    if signed.repo_path() != image.repo_path() {
        return Err(Rejection::OtherRepository(signed.repo_path()));
    }
    match image.tag() {
        // What cosign writes: the repository alone.
        Some(_) if signed.tag().is_none() => Err(Rejection::NoTagBinding {
            signed: payload.docker_reference.clone(),
        }),
        Some(tag) if signed.tag() != Some(tag) => Err(Rejection::TagNotBound {
            tag: tag.to_string(),
            signed: payload.docker_reference.clone(),
        }),
        _ => Ok(()),
    }
}
