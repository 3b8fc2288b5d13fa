//! One X.509 certificate, parsed once into what the Notary rules and verification need (owned, so
//! trust anchors live in the compiled snapshot), and the check that an issuer signed it.

use std::fmt;

use aws_lc_rs::signature::{self as lc, ParsedPublicKey, VerificationAlgorithm};
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::public_key::PublicKey as ParsedKey;

use super::X509Error;
use crate::crypto::der;

/// The type and size of a certificate's public key, as Notation names key specs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeySpec {
    /// RSA with this modulus size in bits.
    Rsa(usize),
    /// ECDSA on P-256, P-384 or P-521 (256, 384, 521).
    Ec(usize),
    /// Any other key (EC on another curve, Ed25519, DSA...): refused by Notation.
    Unsupported,
}

impl fmt::Display for KeySpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeySpec::Rsa(bits) => write!(f, "RSA-{bits}"),
            KeySpec::Ec(bits) => write!(f, "EC P-{bits}"),
            KeySpec::Unsupported => f.write_str("an unsupported key type"),
        }
    }
}

/// The hash of a signature algorithm.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Hash {
    Sha256,
    Sha384,
    Sha512,
}

/// How a certificate is signed by its issuer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum CertSignature {
    RsaPkcs1(Hash),
    RsaPss(Hash),
    Ecdsa(Hash),
    /// SHA-1 or MD5 based: never accepted.
    Weak(&'static str),
    /// Anything else, by OID.
    Other(String),
}

/// A parsed certificate. Cloning copies the bytes; anchors are shared behind `Arc`s by the store.
#[derive(Clone)]
pub struct Certificate {
    der: Vec<u8>,
    tbs: Vec<u8>,
    signature_algorithm: CertSignature,
    signature: Vec<u8>,
    subject: String,
    subject_attributes: Vec<(String, String)>,
    raw_subject: Vec<u8>,
    raw_issuer: Vec<u8>,
    raw_serial: Vec<u8>,
    not_before: i64,
    not_after: i64,
    spki: Vec<u8>,
    key: KeySpec,
    pub(crate) key_usage: Option<(bool, u16)>,
    pub(crate) eku: Option<ExtendedKeyUsage>,
    pub(crate) basic_constraints: Option<(bool, bool, Option<u32>)>,
    sha256: String,
}

/// The extended key usages Notary's rules look at.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct ExtendedKeyUsage {
    pub(crate) any: bool,
    pub(crate) server_auth: bool,
    pub(crate) client_auth: bool,
    pub(crate) code_signing: bool,
    pub(crate) email_protection: bool,
    pub(crate) time_stamping: bool,
    pub(crate) ocsp_signing: bool,
    /// Any purpose besides the ones above.
    pub(crate) other: bool,
    /// Whether the extension is marked critical.
    pub(crate) critical: bool,
}

impl fmt::Debug for Certificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Certificate")
            .field("subject", &self.subject)
            .field("sha256", &self.sha256)
            .finish_non_exhaustive()
    }
}

impl PartialEq for Certificate {
    fn eq(&self, other: &Self) -> bool {
        self.der == other.der
    }
}

impl Eq for Certificate {}

const OID_SHA256: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01];
const OID_SHA384: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02];
const OID_SHA512: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x03];
const OID_P521: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x23];

pub(super) fn signature_algorithm(oid: &str, params: Option<&[u8]>) -> CertSignature {
    match oid {
        "1.2.840.113549.1.1.11" => CertSignature::RsaPkcs1(Hash::Sha256),
        "1.2.840.113549.1.1.12" => CertSignature::RsaPkcs1(Hash::Sha384),
        "1.2.840.113549.1.1.13" => CertSignature::RsaPkcs1(Hash::Sha512),
        "1.2.840.10045.4.3.2" => CertSignature::Ecdsa(Hash::Sha256),
        "1.2.840.10045.4.3.3" => CertSignature::Ecdsa(Hash::Sha384),
        "1.2.840.10045.4.3.4" => CertSignature::Ecdsa(Hash::Sha512),
        "1.2.840.113549.1.1.10" => match params.and_then(pss_hash) {
            Some(hash) => CertSignature::RsaPss(hash),
            None => CertSignature::Other("RSASSA-PSS with a hash other than SHA-2".into()),
        },
        "1.2.840.113549.1.1.5" | "1.2.840.10045.4.1" | "1.3.14.3.2.29" => {
            CertSignature::Weak("SHA-1")
        }
        "1.2.840.113549.1.1.4" => CertSignature::Weak("MD5"),
        other => CertSignature::Other(other.to_string()),
    }
}

/// The hash of RSASSA-PSS-params (the content of its SEQUENCE): `[0] hashAlgorithm`, whose
/// default is SHA-1 (refused).
pub(super) fn pss_hash(params: &[u8]) -> Option<Hash> {
    let (0xa0, explicit, _) = der::element(params)? else {
        return None;
    };
    let (der::TAG_SEQUENCE, alg_id, _) = der::element(explicit)? else {
        return None;
    };
    let (der::TAG_OID, oid, _) = der::element(alg_id)? else {
        return None;
    };
    match oid {
        o if o == OID_SHA256 => Some(Hash::Sha256),
        o if o == OID_SHA384 => Some(Hash::Sha384),
        o if o == OID_SHA512 => Some(Hash::Sha512),
        _ => None,
    }
}

/// The aws-lc-rs algorithm verifying `signature` made by a `key`; says why none fits.
pub(crate) fn verification_algorithm(
    signature: &CertSignature,
    key: KeySpec,
) -> Result<&'static dyn VerificationAlgorithm, String> {
    Ok(match (signature, key) {
        (CertSignature::Weak(hash), _) => {
            return Err(format!("signed with {hash}, which is not accepted"));
        }
        (CertSignature::Other(oid), _) => {
            return Err(format!("signed with an unsupported algorithm ({oid})"));
        }
        (CertSignature::RsaPkcs1(h), KeySpec::Rsa(_)) => match h {
            Hash::Sha256 => &lc::RSA_PKCS1_2048_8192_SHA256,
            Hash::Sha384 => &lc::RSA_PKCS1_2048_8192_SHA384,
            Hash::Sha512 => &lc::RSA_PKCS1_2048_8192_SHA512,
        },
        (CertSignature::RsaPss(h), KeySpec::Rsa(_)) => match h {
            Hash::Sha256 => &lc::RSA_PSS_2048_8192_SHA256,
            Hash::Sha384 => &lc::RSA_PSS_2048_8192_SHA384,
            Hash::Sha512 => &lc::RSA_PSS_2048_8192_SHA512,
        },
        (CertSignature::Ecdsa(h), KeySpec::Ec(bits)) => match (bits, h) {
            (256, Hash::Sha256) => &lc::ECDSA_P256_SHA256_ASN1,
            (256, Hash::Sha384) => &lc::ECDSA_P256_SHA384_ASN1,
            (256, Hash::Sha512) => &lc::ECDSA_P256_SHA512_ASN1,
            (384, Hash::Sha256) => &lc::ECDSA_P384_SHA256_ASN1,
            (384, Hash::Sha384) => &lc::ECDSA_P384_SHA384_ASN1,
            (384, Hash::Sha512) => &lc::ECDSA_P384_SHA512_ASN1,
            (_, Hash::Sha256) => &lc::ECDSA_P521_SHA256_ASN1,
            (_, Hash::Sha384) => &lc::ECDSA_P521_SHA384_ASN1,
            (_, Hash::Sha512) => &lc::ECDSA_P521_SHA512_ASN1,
        },
        (_, key) => {
            return Err(format!(
                "its signature algorithm does not fit the signer's {key} key"
            ));
        }
    })
}

/// The short name RFC 4514 (and Notation's trust policy) uses for a name attribute.
fn attribute_name(oid: &str) -> String {
    match oid {
        "2.5.4.3" => "CN",
        "2.5.4.6" => "C",
        "2.5.4.7" => "L",
        "2.5.4.8" => "ST",
        "2.5.4.10" => "O",
        "2.5.4.11" => "OU",
        "2.5.4.5" => "SERIALNUMBER",
        "2.5.4.9" => "STREET",
        "2.5.4.17" => "POSTALCODE",
        other => other,
    }
    .to_string()
}

/// Bits of an unsigned big-endian integer.
fn bit_length(be: &[u8]) -> usize {
    match be.iter().position(|b| *b != 0) {
        Some(i) => (be.len() - i) * 8 - be[i].leading_zeros() as usize,
        None => 0,
    }
}

impl Certificate {
    /// Parses one DER certificate.
    pub fn from_der(der_bytes: &[u8]) -> Result<Self, X509Error> {
        let (rest, cert) = X509Certificate::from_der(der_bytes)
            .map_err(|e| X509Error::Malformed(format!("not a DER X.509 certificate: {e}")))?;
        if !rest.is_empty() {
            return Err(X509Error::Malformed(
                "trailing bytes after the certificate".into(),
            ));
        }
        Self::from_parsed(der_bytes, &cert)
    }

    fn from_parsed(der_bytes: &[u8], cert: &X509Certificate<'_>) -> Result<Self, X509Error> {
        let subject = cert.subject().to_string();
        let malformed = |what: &str, e: &dyn fmt::Display| {
            X509Error::Malformed(format!("certificate {subject:?}: {what}: {e}"))
        };
        let mut subject_attributes = Vec::new();
        for attribute in cert.subject().iter_attributes() {
            let value = attribute
                .as_str()
                .map_err(|e| malformed("subject attribute is not a string", &e))?;
            subject_attributes.push((
                attribute_name(&attribute.attr_type().to_id_string()),
                value.to_string(),
            ));
        }
        let params = cert.signature_algorithm.parameters.as_ref().map(|p| p.data);
        let signature_algorithm =
            signature_algorithm(&cert.signature_algorithm.algorithm.to_id_string(), params);
        let spki = cert.public_key();
        let key = match spki.parsed() {
            Ok(ParsedKey::RSA(rsa)) => KeySpec::Rsa(bit_length(rsa.modulus)),
            Ok(ParsedKey::EC(_)) => {
                let curve = spki
                    .algorithm
                    .parameters
                    .as_ref()
                    .and_then(|p| p.as_oid().ok())
                    .map(|o| o.as_bytes().to_vec());
                match curve.as_deref() {
                    Some(c) if c == der::OID_P256 => KeySpec::Ec(256),
                    Some(c) if c == der::OID_P384 => KeySpec::Ec(384),
                    Some(c) if c == OID_P521 => KeySpec::Ec(521),
                    _ => KeySpec::Unsupported,
                }
            }
            _ => KeySpec::Unsupported,
        };
        let key_usage = cert
            .key_usage()
            .map_err(|e| malformed("key usage", &e))?
            .map(|ext| (ext.critical, ext.value.flags));
        let eku = cert
            .extended_key_usage()
            .map_err(|e| malformed("extended key usage", &e))?
            .map(|ext| ExtendedKeyUsage {
                any: ext.value.any,
                server_auth: ext.value.server_auth,
                client_auth: ext.value.client_auth,
                code_signing: ext.value.code_signing,
                email_protection: ext.value.email_protection,
                time_stamping: ext.value.time_stamping,
                ocsp_signing: ext.value.ocsp_signing,
                other: !ext.value.other.is_empty(),
                critical: ext.critical,
            });
        let basic_constraints = cert
            .basic_constraints()
            .map_err(|e| malformed("basic constraints", &e))?
            .map(|ext| (ext.critical, ext.value.ca, ext.value.path_len_constraint));
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der_bytes);
        Ok(Certificate {
            der: der_bytes.to_vec(),
            tbs: cert.tbs_certificate.as_ref().to_vec(),
            signature_algorithm,
            signature: cert.signature_value.data.to_vec(),
            subject,
            subject_attributes,
            raw_subject: cert.subject().as_raw().to_vec(),
            raw_issuer: cert.issuer().as_raw().to_vec(),
            raw_serial: cert.raw_serial().to_vec(),
            not_before: cert.validity().not_before.timestamp(),
            not_after: cert.validity().not_after.timestamp(),
            spki: spki.raw.to_vec(),
            key,
            key_usage,
            eku,
            basic_constraints,
            sha256: hex::encode(digest.as_ref()),
        })
    }

    /// Every `CERTIFICATE` block of a PEM bundle, in order; fails on none or a broken one.
    pub fn from_pem_bundle(pem: &str) -> Result<Vec<Self>, X509Error> {
        use rustls_pki_types::CertificateDer;
        use rustls_pki_types::pem::PemObject;
        let mut certificates = Vec::new();
        for (i, block) in CertificateDer::pem_slice_iter(pem.as_bytes()).enumerate() {
            let block = block
                .map_err(|e| X509Error::Malformed(format!("PEM certificate #{}: {e}", i + 1)))?;
            certificates.push(Self::from_der(block.as_ref()).map_err(|e| match e {
                X509Error::Malformed(why) => {
                    X509Error::Malformed(format!("PEM certificate #{}: {why}", i + 1))
                }
                other => other,
            })?);
        }
        if certificates.is_empty() {
            return Err(X509Error::Malformed(
                "no -----BEGIN CERTIFICATE----- block found".into(),
            ));
        }
        Ok(certificates)
    }

    /// The DER encoding.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// The certificate as PEM.
    pub fn to_pem(&self) -> String {
        der::pem_encode("CERTIFICATE", &self.der)
    }

    /// The subject as text (`C=US, ST=WA, O=Notary, CN=alpine`).
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// The subject's attributes in order, by short name (`CN`, `O`...) or dotted OID.
    pub fn subject_attributes(&self) -> &[(String, String)] {
        &self.subject_attributes
    }

    /// notBefore, Unix seconds.
    pub fn not_before(&self) -> i64 {
        self.not_before
    }

    /// notAfter, Unix seconds.
    pub fn not_after(&self) -> i64 {
        self.not_after
    }

    /// The public key as DER SubjectPublicKeyInfo.
    pub fn spki_der(&self) -> &[u8] {
        &self.spki
    }

    /// The public key's type and size.
    pub fn key_spec(&self) -> KeySpec {
        self.key
    }

    /// Lower-case hex SHA-256 of the DER: the thumbprint Notation annotates manifests with.
    pub fn sha256_hex(&self) -> &str {
        &self.sha256
    }

    /// `sha256:<hex>` of the DER, as shown in status.
    pub fn fingerprint(&self) -> String {
        format!("sha256:{}", self.sha256)
    }

    /// The raw DER of the issuer name and the serial number's content octets: how CMS names a
    /// signer (issuerAndSerialNumber).
    pub(crate) fn issuer_and_serial(&self) -> (&[u8], &[u8]) {
        (&self.raw_issuer, &self.raw_serial)
    }

    /// Whether `signature` over `message` verifies under this certificate's key with
    /// `algorithm`; says why not.
    pub(crate) fn verify_signature(
        &self,
        algorithm: &CertSignature,
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), String> {
        let algorithm = verification_algorithm(algorithm, self.key)?;
        ParsedPublicKey::new(algorithm, &self.spki)
            .ok()
            .and_then(|key| key.verify_sig(message, signature).ok())
            .ok_or_else(|| "the signature does not verify".to_string())
    }

    /// Whether issuer and subject names are the same bytes.
    pub(crate) fn is_self_issued(&self) -> bool {
        self.raw_subject == self.raw_issuer
    }

    /// Whether `self` names `issuer` as its issuer and `issuer`'s key signed it; says why not.
    pub(crate) fn check_issued_by(&self, issuer: &Certificate) -> Result<(), String> {
        if self.raw_issuer != issuer.raw_subject {
            return Err(format!(
                "certificate {:?} is not issued by {:?}",
                self.subject, issuer.subject
            ));
        }
        let algorithm = verification_algorithm(&self.signature_algorithm, issuer.key)
            .map_err(|why| format!("certificate {:?}: {why}", self.subject))?;
        ParsedPublicKey::new(algorithm, &issuer.spki)
            .ok()
            .and_then(|key| key.verify_sig(&self.tbs, &self.signature).ok())
            .ok_or_else(|| {
                format!(
                    "certificate {:?}: signature by {:?} does not verify",
                    self.subject, issuer.subject
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bit_length_counts_significant_bits() {
        assert_eq!(bit_length(&[0x00, 0x80, 0x00]), 16);
        assert_eq!(bit_length(&[0x01, 0x00]), 9);
        assert_eq!(bit_length(&[0, 0]), 0);
    }

    #[test]
    fn garbage_is_malformed_not_a_panic() {
        assert!(matches!(
            Certificate::from_der(b"\x30\x03\x02\x01\x01"),
            Err(X509Error::Malformed(_))
        ));
        assert!(matches!(
            Certificate::from_pem_bundle("no pem"),
            Err(X509Error::Malformed(_))
        ));
    }
}
