//! Notation (Notary Project) signatures: the signature manifest, JWS and COSE envelopes, the Notary
//! payload, and [`verify_notation`], which turns one stored signature into verified claims or a
//! one-line reason. Pure: no I/O, no clock (the time is an argument).
//!
//! Order of checks, cheapest and most telling first: the manifest is a Notation signature, the
//! blob is the layer it names, the envelope parses and obeys the Notary header rules, the chain
//! matches the thumbprint annotation, `alg` is the one the leaf key demands, the signature
//! verifies, the chain is valid under the Notary certificate rules and reaches an anchor (and a
//! trusted identity), the signature has not expired, and only then the signed payload is read.
//! Revocation is not checked (stated in every verdict's claims).
//!
//! Timestamps (the unprotected `io.cncf.notary.timestampSignature`, an RFC 3161 token over the
//! signature value, checked by [`crate::crypto::x509::verify_timestamp`]): when every
//! certificate of the chain is valid now, the timestamp is not needed and not read. When one is
//! outside its validity now, the signature counts only if the token verifies under the
//! Attestor's `tsaCertificates` and the span it places the signing in (genTime ± accuracy) lies
//! inside every certificate's validity; the refusal says which of these failed. notation-go
//! also verifies a timestamp it does not need (and fails without a TSA trust store); signet
//! does not, since such a timestamp cannot change the decision, and an Attestor without
//! `tsaCertificates` keeps verifying timestamped signatures of valid certificates.

mod alg;
mod cose;
mod envelope;
mod jws;
mod manifest;
mod payload;
mod sign;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::fmt;

use aws_lc_rs::signature::ParsedPublicKey;

pub use alg::NotaryAlgorithm;
pub use envelope::{EnvelopeFormat, PAYLOAD_MEDIA_TYPE, SCHEME_SIGNING_AUTHORITY, SCHEME_X509};
pub use manifest::{
    EMPTY_CONFIG_MEDIA_TYPE, NOTATION_ARTIFACT_TYPE, SignatureManifest, THUMBPRINT_ANNOTATION,
    build_signature_manifest, parse_signature_manifest,
};
pub use payload::{REFERENCE_ANNOTATION, TargetArtifact};
pub use sign::{NotationError, SignedNotation, check_signing_key, sign_notation, signed_by_key};

use crate::crypto::x509::{
    Certificate, TimestampError, TrustStore, VerifiedTimestamp, X509Error, verify_timestamp,
};
use crate::signature::sha256_digest;

/// What revocation checking the claims rest on (stated in verdicts).
pub const REVOCATION_NOT_CHECKED: &str = "not checked";

/// A Notation signature that verified: who signed, under which anchor, and what it binds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotationClaims {
    /// JWS or COSE.
    pub format: EnvelopeFormat,
    /// The leaf certificate's subject: the signing identity.
    pub signer: String,
    /// `sha256:<hex>` of the leaf certificate.
    pub signer_fingerprint: String,
    /// The trust anchor the chain reached (subject).
    pub anchor: String,
    /// `sha256:<hex>` of the anchor.
    pub anchor_fingerprint: String,
    /// The signer's claimed signing time, RFC 3339 (not authenticated without a timestamp).
    pub signing_time: Option<String>,
    /// The signing time a trusted RFC 3161 timestamp proves, when one was needed (a certificate
    /// outside its validity now): genTime, RFC 3339, and the TSA.
    pub authentic_signing_time: Option<AuthenticSigningTime>,
    /// The signature's expiry, RFC 3339, when it has one.
    pub expiry: Option<String>,
    /// The signed `targetArtifact.annotations`.
    pub annotations: BTreeMap<String, String>,
    /// `io.signet.reference` among them: the `registry/repository:tag` a `Default` signature
    /// binds; `None` means the signature binds the digest only (satisfies `Simple` only).
    pub reference: Option<String>,
    /// Always [`REVOCATION_NOT_CHECKED`] for now.
    pub revocation: &'static str,
}

/// The signing time a trusted timestamp proved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthenticSigningTime {
    /// genTime, RFC 3339.
    pub time: String,
    /// The TSA certificate's subject.
    pub tsa: String,
    /// The trusted TSA root reached (subject).
    pub tsa_root: String,
}

impl From<&VerifiedTimestamp> for AuthenticSigningTime {
    fn from(t: &VerifiedTimestamp) -> Self {
        AuthenticSigningTime {
            time: rfc3339(t.gen_time),
            tsa: t.tsa.clone(),
            tsa_root: t.tsa_root.clone(),
        }
    }
}

/// Why a certificate outside its validity now was not saved by a timestamp.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TimestampFailure {
    /// The envelope carries no timestamp.
    Absent,
    /// The envelope's timestamp does not verify, or not under a trusted TSA.
    Refused(TimestampError),
    /// The timestamp verifies, but the signing time it proves is outside a certificate's
    /// validity (the accompanying error names it).
    OutsideValidity {
        /// genTime, RFC 3339.
        time: String,
        /// The TSA certificate's subject.
        tsa: String,
    },
}

/// Why a Notation signature does not count. Each reads as the end of a sentence about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NotationRejection {
    /// The manifest is not a Notation signature manifest.
    NotASignature(String),
    /// The blob is not the one the manifest names, or the manifest's subject is another image.
    BlobMismatch(String),
    /// The envelope cannot be parsed.
    MalformedEnvelope(String),
    /// A Notary header rule is broken (unknown critical header, plugin, scheme, content type...).
    HeaderRefused(String),
    /// `alg` is not the algorithm the leaf key demands.
    AlgorithmMismatch {
        /// The envelope's algorithm.
        alg: NotaryAlgorithm,
        /// The leaf key, e.g. `RSA-2048`.
        key: String,
        /// What that key demands, if anything.
        expected: Option<NotaryAlgorithm>,
    },
    /// The thumbprint annotation does not list the envelope's chain.
    ThumbprintMismatch,
    /// The signature does not verify under the leaf key (tampered envelope).
    BadSignature,
    /// The chain breaks a Notary rule, is outside its validity, reaches no anchor, or the signer
    /// is not a trusted identity.
    Certificate {
        /// The reason.
        error: X509Error,
        /// When a certificate is outside its validity: why no timestamp proved a signing time
        /// inside it. `None` for every other reason. Boxed: rejections travel in `Result`s.
        timestamp: Option<Box<TimestampFailure>>,
    },
    /// The signature's `expiry` has passed.
    Expired(String),
    /// The payload names another artifact (digest, media type or size).
    OtherTarget(String),
}

impl fmt::Display for NotationRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NotationRejection::NotASignature(why) => write!(f, "not a Notation signature: {why}"),
            NotationRejection::BlobMismatch(why) => write!(f, "signature blob refused: {why}"),
            NotationRejection::MalformedEnvelope(why) => write!(f, "malformed envelope: {why}"),
            NotationRejection::HeaderRefused(why) => write!(f, "envelope refused: {why}"),
            NotationRejection::AlgorithmMismatch { alg, key, expected } => match expected {
                Some(e) => write!(f, "alg {alg} does not match the leaf's {key} key ({e})"),
                None => write!(f, "alg {alg} cannot be used with the leaf's {key} key"),
            },
            NotationRejection::ThumbprintMismatch => write!(
                f,
                "annotation {THUMBPRINT_ANNOTATION} does not match the envelope's certificate chain"
            ),
            NotationRejection::BadSignature => {
                write!(
                    f,
                    "signature does not verify under the leaf certificate's key"
                )
            }
            NotationRejection::Certificate { error, timestamp } => match timestamp.as_deref() {
                None => write!(f, "{error}"),
                Some(TimestampFailure::Absent) => write!(
                    f,
                    "{error}, and the signature carries no timestamp from a trusted TSA"
                ),
                Some(TimestampFailure::Refused(why)) => write!(
                    f,
                    "{error}, and its timestamp does not prove the signing time: {why}"
                ),
                Some(TimestampFailure::OutsideValidity { time, tsa }) => write!(
                    f,
                    "{error}: the signing time a trusted timestamp proves ({time}, TSA {tsa:?}) is outside the certificate's validity"
                ),
            },
            NotationRejection::Expired(at) => write!(f, "signature expired at {at}"),
            NotationRejection::OtherTarget(why) => write!(f, "{why}"),
        }
    }
}

fn rfc3339(seconds: i64) -> String {
    jiff::Timestamp::from_second(seconds)
        .map(|t| t.to_string())
        .unwrap_or_else(|_| seconds.to_string())
}

/// Verifies one Notation signature: `manifest` (the signature manifest bytes), `envelope` (the
/// blob of its one layer), for the admitted manifest `target`, under `trust`, at `now` (Unix
/// seconds).
pub fn verify_notation(
    manifest: &[u8],
    envelope: &[u8],
    target: &TargetArtifact,
    trust: &TrustStore,
    now: i64,
) -> Result<NotationClaims, NotationRejection> {
    let recognised =
        parse_signature_manifest(manifest).map_err(NotationRejection::NotASignature)?;
    if sha256_digest(envelope) != recognised.envelope_digest
        || envelope.len() as u64 != recognised.envelope_size
    {
        return Err(NotationRejection::BlobMismatch(format!(
            "the envelope is not the layer the manifest names ({})",
            recognised.envelope_digest
        )));
    }
    if let Some(subject) = &recognised.subject_digest
        && !subject.eq_ignore_ascii_case(&target.digest)
    {
        return Err(NotationRejection::OtherTarget(format!(
            "signature manifest refers to another digest ({subject})"
        )));
    }
    let parsed = match recognised.format {
        EnvelopeFormat::Jws => jws::parse(envelope),
        EnvelopeFormat::Cose => cose::parse(envelope),
    }
    .map_err(NotationRejection::MalformedEnvelope)?;
    let alg = parsed
        .check_headers()
        .map_err(NotationRejection::HeaderRefused)?;
    let chain = parsed
        .chain
        .iter()
        .map(|der| Certificate::from_der(der))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| NotationRejection::Certificate {
            error,
            timestamp: None,
        })?;
    if let Some(thumbprints) = &recognised.thumbprints {
        let matches = thumbprints.len() == chain.len()
            && thumbprints
                .iter()
                .zip(&chain)
                .all(|(t, c)| t.eq_ignore_ascii_case(c.sha256_hex()));
        if !matches {
            return Err(NotationRejection::ThumbprintMismatch);
        }
    }
    let Some(leaf) = chain.first() else {
        return Err(NotationRejection::HeaderRefused(
            "the certificate chain is empty".into(),
        ));
    };
    let expected = NotaryAlgorithm::for_key(leaf.key_spec());
    if expected != Some(alg) {
        return Err(NotationRejection::AlgorithmMismatch {
            alg,
            key: leaf.key_spec().to_string(),
            expected,
        });
    }
    ParsedPublicKey::new(alg.verification(), leaf.spki_der())
        .ok()
        .and_then(|key| {
            key.verify_sig(&parsed.signing_input, &parsed.signature)
                .ok()
        })
        .ok_or(NotationRejection::BadSignature)?;
    let (anchor, authentic_signing_time) = verify_chain_or_timestamp(&chain, trust, &parsed, now)?;
    if let Some(expiry) = parsed.expiry
        && expiry < now
    {
        return Err(NotationRejection::Expired(rfc3339(expiry)));
    }
    let signed =
        payload::parse_payload(&parsed.payload).map_err(NotationRejection::MalformedEnvelope)?;
    payload::check_target(&signed, target).map_err(NotationRejection::OtherTarget)?;
    Ok(NotationClaims {
        format: parsed.format,
        signer: leaf.subject().to_string(),
        signer_fingerprint: leaf.fingerprint(),
        anchor: anchor.subject().to_string(),
        anchor_fingerprint: anchor.fingerprint(),
        signing_time: parsed.signing_time.map(rfc3339),
        authentic_signing_time,
        expiry: parsed.expiry.map(rfc3339),
        reference: signed.annotations.get(REFERENCE_ANNOTATION).cloned(),
        annotations: signed.annotations,
        revocation: REVOCATION_NOT_CHECKED,
    })
}

/// The chain under `trust` at `now`; when a certificate is outside its validity now, under the
/// span the envelope's trusted timestamp places the signing in instead. Returns the anchor and,
/// when a timestamp was needed, the signing time it proved.
fn verify_chain_or_timestamp<'t>(
    chain: &[Certificate],
    trust: &'t TrustStore,
    parsed: &envelope::Envelope,
    now: i64,
) -> Result<(&'t Certificate, Option<AuthenticSigningTime>), NotationRejection> {
    let error = match trust.verify_chain(chain, now) {
        Ok(anchor) => return Ok((anchor, None)),
        Err(error @ X509Error::Validity { .. }) => error,
        Err(error) => {
            return Err(NotationRejection::Certificate {
                error,
                timestamp: None,
            });
        }
    };
    let refuse = |failure| NotationRejection::Certificate {
        error: error.clone(),
        timestamp: Some(Box::new(failure)),
    };
    let token = parsed
        .timestamp
        .as_deref()
        .ok_or_else(|| refuse(TimestampFailure::Absent))?;
    let proved = verify_timestamp(token, &parsed.signature, trust.tsa_roots())
        .map_err(|why| refuse(TimestampFailure::Refused(why)))?;
    match trust.verify_chain_during(chain, (proved.earliest, proved.latest)) {
        Ok(anchor) => Ok((anchor, Some(AuthenticSigningTime::from(&proved)))),
        Err(error @ X509Error::Validity { .. }) => Err(NotationRejection::Certificate {
            error,
            timestamp: Some(Box::new(TimestampFailure::OutsideValidity {
                time: rfc3339(proved.gen_time),
                tsa: proved.tsa,
            })),
        }),
        Err(error) => Err(NotationRejection::Certificate {
            error,
            timestamp: None,
        }),
    }
}

/// Whether a signature manifest's thumbprint annotation lets its chain reach `trust`: `false`
/// only when the annotation is present and names none of the anchors (skip the blob then).
pub fn may_reach(manifest: &SignatureManifest, trust: &TrustStore) -> bool {
    match &manifest.thumbprints {
        Some(thumbprints) => trust.may_reach(thumbprints),
        None => true,
    }
}
