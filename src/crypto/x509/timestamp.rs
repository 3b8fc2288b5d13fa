//! RFC 3161 timestamp countersignatures of Notation signatures: [`verify_timestamp`] proves when
//! a signature existed, so that a signature made while its certificates were valid stays valid
//! after they expire. Pure: no I/O, no clock.
//!
//! What Notary timestamps (signature specification, "Timestamp signature" unsigned attribute;
//! notation-go `verifyTimestamp` with tspclient-go `TSTInfo.Validate`): the envelope's raw
//! signature value (the decoded JWS `signature`, the COSE_Sign1 signature bytes). The TSTInfo
//! messageImprint must be that value's SHA-256, SHA-384 or SHA-512 (the hashes tspclient-go
//! accepts).
//!
//! Checks, in order: size (at most [`MAX_TOKEN_SIZE`]); the token is a DER CMS SignedData with
//! one SignerInfo over an id-ct-TSTInfo; the imprint matches the signature; the signed attributes
//! carry content-type id-ct-TSTInfo, a message-digest equal to the hash of the TSTInfo, and an
//! ESS signing-certificate (v2, else v1) whose hash names the TSA certificate (which the
//! issuerAndSerialNumber, when used, must name too); the SignerInfo signature over the DER of the
//! signed attributes verifies with that certificate's key; the TSA certificate has
//! extendedKeyUsage timeStamping only, marked critical (RFC 3161 §2.3), keyUsage
//! digitalSignature, is not a CA; its chain (from the token's certificates) reaches one of the
//! Attestor's `tsaCertificates`, every certificate on it valid at genTime (as notation-go checks
//! the TSA chain: at the time stamped, not now) and meeting the CA rules of
//! the Notary chain rules (`chain.rs`). The result is genTime widened by the stated accuracy.

use aws_lc_rs::digest;

use super::certificate::{CertSignature, Certificate, Hash, pss_hash, signature_algorithm};
use super::chain::{check_ca, check_key, check_validity};
use super::timestamp_token::{
    AlgorithmId, EssCertId, OID_TST_INFO, generalized_time, parse_token, parse_tst_info,
};

/// Tokens larger than this are refused before parsing (a TSA's answer with a chain of three is
/// 6-8 KiB).
pub const MAX_TOKEN_SIZE: usize = 64 * 1024;

/// How long a TSA chain may be (TSA certificate, intermediates, root).
const MAX_TSA_CHAIN: usize = 6;

const OID_SHA1: &[u8] = &[0x2b, 0x0e, 0x03, 0x02, 0x1a];
const OID_SHA256: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01];
const OID_SHA384: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02];
const OID_SHA512: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x03];
/// 1.2.840.113549.1.1.1: CMS signers often name the key type, not the signature algorithm.
const OID_RSA_ENCRYPTION: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
/// 1.2.840.10045.2.1 (id-ecPublicKey), likewise.
const OID_EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];

/// A verified timestamp: when the TSA saw the signature, and who the TSA is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedTimestamp {
    /// genTime, Unix seconds (rounded down).
    pub gen_time: i64,
    /// The earliest the signing can have been: genTime minus the accuracy.
    pub earliest: i64,
    /// The latest the signing can have been: genTime plus the accuracy.
    pub latest: i64,
    /// The TSA certificate's subject.
    pub tsa: String,
    /// The trusted TSA root reached (subject).
    pub tsa_root: String,
}

/// Why a timestamp token does not prove a signing time; each message names the timestamp.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum TimestampError {
    /// Over [`MAX_TOKEN_SIZE`].
    #[error("the timestamp token is {0} bytes, over the limit of {MAX_TOKEN_SIZE}")]
    TooLarge(usize),
    /// Not a DER TimeStampToken, or a required part is missing.
    #[error("the timestamp token is malformed: {0}")]
    Malformed(String),
    /// A hash or signature algorithm that is not accepted.
    #[error("the timestamp token uses {0}")]
    Unsupported(String),
    /// The messageImprint is not the hash of the envelope's signature.
    #[error(
        "the timestamp is over another signature (its message imprint is not the hash of this envelope's signature)"
    )]
    OtherSignature,
    /// The token's own signature or signed attributes do not verify (tampered token).
    #[error("the timestamp token does not verify: {0}")]
    BadSignature(String),
    /// The TSA certificate or its chain breaks a rule (EKU, key usage, CA rules, validity).
    #[error("the timestamp's TSA certificate {0}")]
    TsaCertificate(String),
    /// The TSA chain reaches none of the trusted TSA roots.
    #[error(
        "the timestamp is signed by {0:?}, which does not lead to a trusted TSA (tsaCertificates)"
    )]
    UntrustedTsa(String),
    /// The Attestor key states no `tsaCertificates`.
    #[error("the timestamp cannot be trusted: the Attestor key has no tsaCertificates")]
    NoTsaRoots,
}

fn hash_algorithm(oid: &[u8]) -> Option<(&'static digest::Algorithm, Hash)> {
    match oid {
        o if o == OID_SHA256 => Some((&digest::SHA256, Hash::Sha256)),
        o if o == OID_SHA384 => Some((&digest::SHA384, Hash::Sha384)),
        o if o == OID_SHA512 => Some((&digest::SHA512, Hash::Sha512)),
        _ => None,
    }
}

fn hash_name(oid: &[u8]) -> String {
    if oid == OID_SHA1 {
        "SHA-1".into()
    } else {
        format!("the hash algorithm {}", dotted(oid))
    }
}

/// An OID's dotted text from its content octets.
fn dotted(oid: &[u8]) -> String {
    let mut arcs: Vec<u64> = Vec::new();
    let mut value: u64 = 0;
    for byte in oid {
        value = (value << 7) | u64::from(byte & 0x7f);
        if byte & 0x80 == 0 {
            if arcs.is_empty() {
                let first = (value / 40).min(2);
                arcs.push(first);
                arcs.push(value - first * 40);
            } else {
                arcs.push(value);
            }
            value = 0;
        }
        if value > u64::MAX >> 8 {
            return "an oversized OID".into();
        }
    }
    arcs.iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(".")
}

/// The signature algorithm of the SignerInfo, resolving key-type OIDs with its digest hash.
fn signer_algorithm(signature: AlgorithmId<'_>, digest_hash: Hash) -> CertSignature {
    if signature.oid == OID_RSA_ENCRYPTION {
        CertSignature::RsaPkcs1(digest_hash)
    } else if signature.oid == OID_EC_PUBLIC_KEY {
        CertSignature::Ecdsa(digest_hash)
    } else if signature.oid == crate::crypto::der::OID_RSA_PSS {
        match signature.params.and_then(|p| {
            crate::crypto::der::element(p)
                .filter(|(tag, _, _)| *tag == crate::crypto::der::TAG_SEQUENCE)
                .and_then(|(_, content, _)| pss_hash(content))
        }) {
            Some(hash) => CertSignature::RsaPss(hash),
            None => CertSignature::Other("RSASSA-PSS with a hash other than SHA-2".into()),
        }
    } else {
        signature_algorithm(&dotted(signature.oid), None)
    }
}

/// Verifies the RFC 3161 TimeStampToken `token` (DER) as a countersignature of the envelope
/// signature value `signature`, trusting the TSA roots `tsa_roots`.
pub fn verify_timestamp(
    token: &[u8],
    signature: &[u8],
    tsa_roots: &[Certificate],
) -> Result<VerifiedTimestamp, TimestampError> {
    if token.len() > MAX_TOKEN_SIZE {
        return Err(TimestampError::TooLarge(token.len()));
    }
    let parsed = parse_token(token).map_err(TimestampError::Malformed)?;
    let info = parse_tst_info(parsed.tst_info).map_err(TimestampError::Malformed)?;

    let (imprint_hash, _) = hash_algorithm(info.imprint_algorithm.oid).ok_or_else(|| {
        TimestampError::Unsupported(format!(
            "{} for its message imprint (SHA-256, SHA-384 or SHA-512 are accepted)",
            hash_name(info.imprint_algorithm.oid)
        ))
    })?;
    if digest::digest(imprint_hash, signature).as_ref() != info.imprint {
        return Err(TimestampError::OtherSignature);
    }

    let (content_hash, content_hash_kind) = hash_algorithm(parsed.digest_algorithm.oid)
        .ok_or_else(|| {
            TimestampError::Unsupported(format!(
                "{} as its digest algorithm",
                hash_name(parsed.digest_algorithm.oid)
            ))
        })?;
    if parsed.content_type != OID_TST_INFO {
        return Err(TimestampError::BadSignature(
            "the content-type attribute is not id-ct-TSTInfo".into(),
        ));
    }
    if digest::digest(content_hash, parsed.tst_info).as_ref() != parsed.message_digest {
        return Err(TimestampError::BadSignature(
            "the message-digest attribute is not the hash of the TSTInfo".into(),
        ));
    }

    let tsa = signing_certificate(&parsed.certificates, parsed.ess, tsa_roots)?;
    if let Some((issuer, serial)) = parsed.issuer_and_serial
        && tsa.issuer_and_serial() != (issuer, serial)
    {
        return Err(TimestampError::BadSignature(format!(
            "the signer identifier does not name {:?}, the certificate of the signing-certificate attribute",
            tsa.subject()
        )));
    }
    let algorithm = signer_algorithm(parsed.signature_algorithm, content_hash_kind);
    tsa.verify_signature(&algorithm, &parsed.signed_attributes_der, parsed.signature)
        .map_err(|why| {
            TimestampError::BadSignature(format!("signature by {:?}: {why}", tsa.subject()))
        })?;

    let (gen_time, fraction) =
        generalized_time(info.gen_time).map_err(TimestampError::Malformed)?;
    let accuracy = info
        .accuracy_micros
        .map(|micros| i64::try_from(micros.div_ceil(1_000_000)).unwrap_or(i64::MAX))
        .unwrap_or(0);
    let earliest = gen_time.saturating_sub(accuracy);
    let latest = gen_time
        .saturating_add(i64::from(fraction))
        .saturating_add(accuracy);

    check_tsa_leaf(&tsa)?;
    let root = tsa_chain(&tsa, &parsed.certificates, tsa_roots, gen_time)?;
    Ok(VerifiedTimestamp {
        gen_time,
        earliest,
        latest,
        tsa: tsa.subject().to_string(),
        tsa_root: root.subject().to_string(),
    })
}

/// The TSA certificate the ESS attribute names by hash, among the token's certificates (or a
/// trusted TSA root, for a token that carries none).
fn signing_certificate(
    certificates: &[&[u8]],
    ess: EssCertId<'_>,
    tsa_roots: &[Certificate],
) -> Result<Certificate, TimestampError> {
    let (algorithm, expected): (&'static digest::Algorithm, &[u8]) = match ess {
        EssCertId::V2(None, hash) => (&digest::SHA256, hash),
        EssCertId::V2(Some(alg), hash) => {
            let (algorithm, _) = hash_algorithm(alg.oid).ok_or_else(|| {
                TimestampError::Unsupported(format!(
                    "{} in its signingCertificateV2 attribute",
                    hash_name(alg.oid)
                ))
            })?;
            (algorithm, hash)
        }
        // ESSCertID names the certificate by SHA-1; the hash identifies, the signature binds.
        EssCertId::V1(hash) => (&digest::SHA1_FOR_LEGACY_USE_ONLY, hash),
    };
    let matches = |der: &[u8]| digest::digest(algorithm, der).as_ref() == expected;
    if let Some(der) = certificates.iter().find(|der| matches(der)) {
        return Certificate::from_der(der)
            .map_err(|e| TimestampError::TsaCertificate(e.to_string()));
    }
    tsa_roots
        .iter()
        .find(|root| matches(root.der()))
        .cloned()
        .ok_or_else(|| {
            TimestampError::Malformed(
                "the TSA certificate named by the signing-certificate attribute is not in the token"
                    .into(),
            )
        })
}

/// RFC 3161 §2.3 and Notary's timestamping-leaf rules.
fn check_tsa_leaf(tsa: &Certificate) -> Result<(), TimestampError> {
    let refuse = |why: &str| {
        Err(TimestampError::TsaCertificate(format!(
            "{:?} {why}",
            tsa.subject()
        )))
    };
    match tsa.eku {
        None => return refuse("has no extendedKeyUsage (timeStamping is required)"),
        Some(eku) if !eku.time_stamping => {
            return refuse("lacks the extendedKeyUsage timeStamping");
        }
        Some(eku)
            if eku.any
                || eku.server_auth
                || eku.client_auth
                || eku.code_signing
                || eku.email_protection
                || eku.ocsp_signing
                || eku.other =>
        {
            return refuse("must have timeStamping as its only extendedKeyUsage");
        }
        Some(eku) if !eku.critical => {
            return refuse("must mark its extendedKeyUsage (timeStamping) critical");
        }
        Some(_) => {}
    }
    if let Some((_, true, _)) = tsa.basic_constraints {
        return refuse("is a CA certificate");
    }
    match tsa.key_usage {
        Some((_, flags)) if flags & 1 == 0 => refuse("has a keyUsage without digitalSignature"),
        _ => Ok(()),
    }
}

/// Builds the chain from `tsa` through the token's certificates to a trusted TSA root, every
/// certificate valid at `at`; returns the root.
fn tsa_chain<'r>(
    tsa: &Certificate,
    certificates: &[&[u8]],
    tsa_roots: &'r [Certificate],
    at: i64,
) -> Result<&'r Certificate, TimestampError> {
    if tsa_roots.is_empty() {
        return Err(TimestampError::NoTsaRoots);
    }
    let rule = |e: String| TimestampError::TsaCertificate(e);
    let untrusted = || TimestampError::UntrustedTsa(tsa.subject().to_string());
    // Unparseable extra certificates cannot be issuers; skip them.
    let carried: Vec<Certificate> = certificates
        .iter()
        .filter_map(|der| Certificate::from_der(der).ok())
        .collect();
    let mut current = tsa.clone();
    for below in 0..MAX_TSA_CHAIN {
        check_validity(&current, (at, at)).map_err(|e| rule(e.to_string()))?;
        check_key(&current).map_err(|e| rule(e.to_string()))?;
        if let Some(root) = tsa_roots.iter().find(|root| **root == current) {
            return Ok(root);
        }
        if current.is_self_issued() && current.check_issued_by(&current).is_ok() {
            return Err(untrusted());
        }
        let issuer = tsa_roots
            .iter()
            .chain(&carried)
            .find(|candidate| current.check_issued_by(candidate).is_ok())
            .ok_or_else(untrusted)?;
        check_ca(issuer, below).map_err(|e| rule(e.to_string()))?;
        current = issuer.clone();
    }
    Err(TimestampError::TsaCertificate(format!(
        "chain of {:?} is longer than {MAX_TSA_CHAIN}",
        tsa.subject()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dotted_oids_read_like_their_names() {
        assert_eq!(dotted(OID_SHA256), "2.16.840.1.101.3.4.2.1");
        assert_eq!(dotted(OID_RSA_ENCRYPTION), "1.2.840.113549.1.1.1");
        assert_eq!(dotted(OID_SHA1), "1.3.14.3.2.26");
    }

    #[test]
    fn oversized_and_garbage_tokens_are_refused() {
        let big = vec![0x30; MAX_TOKEN_SIZE + 1];
        assert!(matches!(
            verify_timestamp(&big, b"sig", &[]),
            Err(TimestampError::TooLarge(_))
        ));
        assert!(matches!(
            verify_timestamp(b"\x30\x00", b"sig", &[]),
            Err(TimestampError::Malformed(_))
        ));
    }
}
