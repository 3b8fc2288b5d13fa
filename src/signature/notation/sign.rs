//! Signing in Notation format with any [`SigningKey`] (file, PKCS#11, KMS) and its certificate
//! chain: the algorithm is the one Notary demands for the leaf key, so only keys whose signet
//! algorithm produces it can sign (RSA-2048 with `RSA_PSS_SHA_256` => PS256, P-256 => ES256,
//! P-384 => ES384). Each signature is verified with the leaf certificate before it is returned.

use aws_lc_rs::signature::ParsedPublicKey;

use super::alg::NotaryAlgorithm;
use super::envelope::EnvelopeFormat;
use super::manifest::build_signature_manifest;
use super::payload::{TargetArtifact, build_payload};
use super::{cose, jws, rfc3339};
use crate::crypto::der;
use crate::crypto::x509::{Certificate, X509Error, validate_code_signing_chain};
use crate::crypto::{Algorithm, CryptoError, SigningKey};

/// The signing agent written in envelopes.
const SIGNING_AGENT: &str = concat!("signet/", env!("CARGO_PKG_VERSION"));

/// Why a Notation signature cannot be produced.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NotationError {
    /// The certificate chain is malformed or breaks a Notary rule at signing time.
    #[error("certificate chain: {0}")]
    Chain(#[from] X509Error),
    /// The key and the chain do not fit together or with Notary's algorithms.
    #[error("{0}")]
    KeyMismatch(String),
    /// The key could not sign.
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    /// The envelope could not be encoded.
    #[error("cannot build the envelope: {0}")]
    Encode(String),
}

/// A Notation signature ready to push: the envelope blob and the signature manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedNotation {
    /// JWS or COSE.
    pub format: EnvelopeFormat,
    /// The envelope (the manifest's one layer).
    pub envelope: Vec<u8>,
    /// The signature manifest (artifactType Notation, `subject` = the target).
    pub manifest: Vec<u8>,
}

/// Which Notary algorithm `key` signs as, given the leaf certificate; says why none.
fn algorithm_for(
    key: &dyn SigningKey,
    leaf: &Certificate,
) -> Result<NotaryAlgorithm, NotationError> {
    let Some(alg) = NotaryAlgorithm::for_key(leaf.key_spec()) else {
        return Err(NotationError::KeyMismatch(format!(
            "the leaf certificate's {} key has no Notary algorithm",
            leaf.key_spec()
        )));
    };
    let fits = matches!(
        (alg, key.algorithm()),
        (NotaryAlgorithm::Ps256, Algorithm::RsaPssSha256)
            | (NotaryAlgorithm::Es256, Algorithm::EcdsaP256Sha256)
            | (NotaryAlgorithm::Es384, Algorithm::EcdsaP384Sha384)
    );
    if fits {
        Ok(alg)
    } else {
        Err(NotationError::KeyMismatch(format!(
            "Notary requires {alg} for a {} key, which a {} key cannot produce (use RSA-2048 with RSA_PSS_SHA_256, or ECDSA P-256/P-384)",
            leaf.key_spec(),
            key.algorithm()
        )))
    }
}

/// An ASN.1 DER ECDSA signature as raw `r || s`, each `len` bytes.
fn ecdsa_der_to_fixed(signature: &[u8], len: usize) -> Option<Vec<u8>> {
    let (der::TAG_SEQUENCE, body, []) = der::element(signature)? else {
        return None;
    };
    let (der::TAG_INTEGER, r, rest) = der::element(body)? else {
        return None;
    };
    let (der::TAG_INTEGER, s, []) = der::element(rest)? else {
        return None;
    };
    let mut out = Vec::with_capacity(len * 2);
    for scalar in [r, s] {
        let trimmed = match scalar.iter().position(|b| *b != 0) {
            Some(i) => &scalar[i..],
            None => &[][..],
        };
        if trimmed.len() > len {
            return None;
        }
        out.extend(std::iter::repeat_n(0u8, len - trimmed.len()));
        out.extend_from_slice(trimmed);
    }
    Some(out)
}

/// Checks at load time that `key` can sign in Notation format with `chain` (leaf first) at `now`:
/// the leaf holds the key's public key, the chain obeys the Notary certificate rules, and the
/// key's algorithm is the one Notary demands for the leaf key. Gives that algorithm.
pub fn check_signing_key(
    key: &dyn SigningKey,
    chain: &[Certificate],
    now: i64,
) -> Result<NotaryAlgorithm, NotationError> {
    let Some(leaf) = chain.first() else {
        return Err(NotationError::Chain(X509Error::Rule(
            "the certificate chain is empty".into(),
        )));
    };
    if leaf.spki_der() != key.public_key().spki_der() {
        return Err(NotationError::KeyMismatch(format!(
            "the leaf certificate {:?} does not hold the public key of {}",
            leaf.subject(),
            key.key_id()
        )));
    }
    validate_code_signing_chain(chain, now)?;
    algorithm_for(key, leaf)
}

/// Whether the stored Notation signature (`manifest`, its `envelope`) for `target` is one `key`
/// made that still counts: it verifies under `trust` at `now`, its leaf certificate holds the
/// key's public key, and it binds the target. Gives the signed `io.signet.reference` (`None`
/// for a digest-only signature); `None` overall when it is not such a signature. The writer's
/// "already signed" test.
pub fn signed_by_key(
    manifest: &[u8],
    envelope: &[u8],
    target: &TargetArtifact,
    key: &dyn SigningKey,
    trust: &crate::crypto::x509::TrustStore,
    now: i64,
) -> Option<Option<String>> {
    let claims = super::verify_notation(manifest, envelope, target, trust, now).ok()?;
    let format = super::parse_signature_manifest(manifest).ok()?.format;
    let parsed = match format {
        EnvelopeFormat::Jws => jws::parse(envelope),
        EnvelopeFormat::Cose => cose::parse(envelope),
    }
    .ok()?;
    let leaf = Certificate::from_der(parsed.chain.first()?).ok()?;
    (leaf.spki_der() == key.public_key().spki_der()).then_some(claims.reference)
}

/// Signs `target` with `key`, whose certificate chain (leaf first) is `chain`, at `now` (Unix
/// seconds), optionally expiring at `expiry`. The chain must hold the key's public key in its
/// leaf and be valid under the Notary rules now.
pub fn sign_notation(
    key: &dyn SigningKey,
    chain: &[Certificate],
    target: &TargetArtifact,
    format: EnvelopeFormat,
    now: i64,
    expiry: Option<i64>,
) -> Result<SignedNotation, NotationError> {
    sign_with(
        key,
        chain,
        target,
        format,
        now,
        expiry,
        &Unchecked::default(),
    )
}

/// Rules the tests break on purpose to produce envelopes a verifier must refuse.
#[derive(Default)]
pub(crate) struct Unchecked<'a> {
    /// Sign even when the chain breaks a Notary rule.
    pub(crate) skip_chain_check: bool,
    /// Write this `alg` instead of the one the leaf key demands.
    pub(crate) alg: Option<NotaryAlgorithm>,
    /// Extra protected headers (name, marked critical), with the value `"x"`.
    pub(crate) extra_headers: &'a [(&'a str, bool)],
}

pub(crate) fn sign_with(
    key: &dyn SigningKey,
    chain: &[Certificate],
    target: &TargetArtifact,
    format: EnvelopeFormat,
    now: i64,
    expiry: Option<i64>,
    unchecked: &Unchecked<'_>,
) -> Result<SignedNotation, NotationError> {
    let Some(leaf) = chain.first() else {
        return Err(NotationError::Chain(X509Error::Rule(
            "the certificate chain is empty".into(),
        )));
    };
    if leaf.spki_der() != key.public_key().spki_der() {
        return Err(NotationError::KeyMismatch(format!(
            "the leaf certificate {:?} does not hold the public key of {}",
            leaf.subject(),
            key.key_id()
        )));
    }
    if !unchecked.skip_chain_check {
        validate_code_signing_chain(chain, now)?;
    }
    let alg = match unchecked.alg {
        Some(alg) => alg,
        None => algorithm_for(key, leaf)?,
    };
    let chain_der: Vec<Vec<u8>> = chain.iter().map(|c| c.der().to_vec()).collect();
    let payload = build_payload(target);
    let finish = |signature: Vec<u8>, input: &[u8]| -> Result<Vec<u8>, NotationError> {
        let signature = match alg.ecdsa_scalar_len() {
            Some(len) => ecdsa_der_to_fixed(&signature, len).ok_or_else(|| {
                NotationError::Encode("the key returned a malformed ECDSA signature".into())
            })?,
            None => signature,
        };
        // Verify before returning: a KMS or token key must not publish a broken signature.
        ParsedPublicKey::new(alg.verification(), leaf.spki_der())
            .ok()
            .and_then(|k| k.verify_sig(input, &signature).ok())
            .ok_or(NotationError::Crypto(CryptoError::BadSignature))?;
        Ok(signature)
    };
    let envelope = match format {
        EnvelopeFormat::Jws => {
            let (protected, payload_b64) =
                jws::signing_input(alg, &payload, now, expiry, unchecked.extra_headers)
                    .map_err(NotationError::Encode)?;
            let input = format!("{protected}.{payload_b64}");
            let signature = finish(key.sign(input.as_bytes())?, input.as_bytes())?;
            jws::assemble(
                protected,
                payload_b64,
                &signature,
                &chain_der,
                SIGNING_AGENT,
            )
        }
        EnvelopeFormat::Cose => {
            let (sign1, input) = cose::unsigned(
                alg,
                &payload,
                now,
                expiry,
                &chain_der,
                SIGNING_AGENT,
                unchecked.extra_headers,
            )
            .map_err(NotationError::Encode)?;
            let signature = finish(key.sign(&input)?, &input)?;
            cose::assemble(sign1, signature).map_err(NotationError::Encode)?
        }
    };
    let thumbprints: Vec<String> = chain.iter().map(|c| c.sha256_hex().to_string()).collect();
    let subject = TargetArtifact {
        annotations: Default::default(),
        ..target.clone()
    };
    let manifest =
        build_signature_manifest(format, &envelope, &subject, &thumbprints, &rfc3339(now));
    Ok(SignedNotation {
        format,
        envelope,
        manifest,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::crypto::x509::{TrustStore, self_signed_code_signing_certificate};
    use crate::crypto::{FileKey, generate_key_pair};

    fn key_and_certificate() -> (FileKey, String) {
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
        (key, pem)
    }

    #[test]
    fn signed_by_key_is_the_writers_already_signed_test() {
        let (key, pem) = key_and_certificate();
        let (other_key, other_pem) = key_and_certificate();
        let chain = Certificate::from_pem_bundle(&pem).unwrap();
        let now = jiff::Timestamp::now().as_second();
        let target = TargetArtifact {
            media_type: "application/vnd.oci.image.manifest.v1+json".into(),
            digest: format!("sha256:{}", "a".repeat(64)),
            size: 321,
            annotations: BTreeMap::from([(
                super::super::REFERENCE_ANNOTATION.to_string(),
                "reg.example/app:v1".to_string(),
            )]),
        };
        let signed = sign_notation(&key, &chain, &target, EnvelopeFormat::Cose, now, None).unwrap();
        let trust = TrustStore::new(&pem, &[], None).unwrap();
        let bare = TargetArtifact {
            annotations: BTreeMap::new(),
            ..target.clone()
        };
        let found = |key: &FileKey, trust: &TrustStore, target: &TargetArtifact| {
            signed_by_key(&signed.manifest, &signed.envelope, target, key, trust, now)
        };
        assert_eq!(
            found(&key, &trust, &bare),
            Some(Some("reg.example/app:v1".to_string()))
        );
        // Another key, another anchor, another manifest size: not this writer's signature.
        assert_eq!(found(&other_key, &trust, &bare), None);
        let other_trust = TrustStore::new(&other_pem, &[], None).unwrap();
        assert_eq!(found(&key, &other_trust, &bare), None);
        let bigger = TargetArtifact {
            size: 322,
            ..bare.clone()
        };
        assert_eq!(found(&key, &trust, &bigger), None);
        assert_eq!(
            check_signing_key(&key, &chain, now),
            Ok(NotaryAlgorithm::Es256)
        );
        assert!(matches!(
            check_signing_key(&other_key, &chain, now),
            Err(NotationError::KeyMismatch(_))
        ));
    }

    #[test]
    fn ecdsa_der_becomes_fixed_width() {
        // r = 0x00ff (needs the sign byte in DER), s = 0x01.
        let der_sig = [0x30, 0x07, 0x02, 0x02, 0x00, 0xff, 0x02, 0x01, 0x01];
        let fixed = ecdsa_der_to_fixed(&der_sig, 4).unwrap();
        assert_eq!(fixed, vec![0, 0, 0, 0xff, 0, 0, 0, 1]);
        assert!(ecdsa_der_to_fixed(&der_sig, 0).is_none());
        assert!(ecdsa_der_to_fixed(b"junk", 32).is_none());
    }
}
