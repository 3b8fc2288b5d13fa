//! Public keys: parsing (PEM SPKI or PKCS#1), algorithm checks, fingerprints and verification.

use std::fmt;

use aws_lc_rs::signature::{self as lc, ParsedPublicKey, VerificationAlgorithm};

use super::der;
use super::{Algorithm, CryptoError};

/// A public key bound to the one algorithm it verifies with, parsed once.
#[derive(Clone)]
pub struct PublicKey {
    algorithm: Algorithm,
    spki_der: Vec<u8>,
    fingerprint: String,
    parsed: std::sync::Arc<ParsedPublicKey>,
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PublicKey")
            .field("algorithm", &self.algorithm)
            .field("fingerprint", &self.fingerprint)
            .finish()
    }
}

impl PartialEq for PublicKey {
    fn eq(&self, other: &Self) -> bool {
        self.algorithm == other.algorithm && self.spki_der == other.spki_der
    }
}

fn verification_algorithm(algorithm: Algorithm) -> &'static dyn VerificationAlgorithm {
    match algorithm {
        Algorithm::RsaPssSha256 => &lc::RSA_PSS_2048_8192_SHA256,
        Algorithm::RsaPkcs1Sha256 => &lc::RSA_PKCS1_2048_8192_SHA256,
        Algorithm::EcdsaP256Sha256 => &lc::ECDSA_P256_SHA256_ASN1,
        Algorithm::EcdsaP384Sha384 => &lc::ECDSA_P384_SHA384_ASN1,
        Algorithm::Ed25519 => &lc::ED25519,
    }
}

/// The SubjectPublicKeyInfo DER of a PEM public key (`PUBLIC KEY`, or PKCS#1 `RSA PUBLIC KEY`).
fn spki_of_pem(pem: &str) -> Result<Vec<u8>, CryptoError> {
    let block = der::pem_decode(pem).ok_or(CryptoError::NotPem)?;
    match block.label.as_str() {
        "PUBLIC KEY" => Ok(block.der),
        "RSA PUBLIC KEY" => {
            if !der::is_pkcs1_rsa_public_key(&block.der) {
                return Err(CryptoError::MalformedKey(
                    "RSA PUBLIC KEY is not a PKCS#1 RSAPublicKey".into(),
                ));
            }
            Ok(der::rsa_pkcs1_to_spki(&block.der))
        }
        other => Err(CryptoError::WrongPemLabel(other.to_string())),
    }
}

impl PublicKey {
    /// Parses a PEM public key (`PUBLIC KEY` SPKI, or `RSA PUBLIC KEY` PKCS#1) for `algorithm`.
    ///
    /// Fails, naming both, when the key's type contradicts the algorithm; RSA keys must have
    /// 2048 to 8192 bits.
    pub fn from_pem(pem: &str, algorithm: Algorithm) -> Result<Self, CryptoError> {
        Self::from_spki_der(&spki_of_pem(pem)?, algorithm)
    }

    /// Like [`PublicKey::from_pem`], with the algorithm inferred from the key when `algorithm` is
    /// `None`: EC keys by their curve, Ed25519 keys. An RSA key needs it named (PSS or PKCS#1
    /// v1.5), and the error names `source` and both choices.
    pub fn from_pem_inferred(
        pem: &str,
        algorithm: Option<Algorithm>,
        source: &str,
    ) -> Result<Self, CryptoError> {
        let spki = spki_of_pem(pem)?;
        let kind = der::spki_kind(&spki)
            .ok_or_else(|| CryptoError::MalformedKey("not a DER SubjectPublicKeyInfo".into()))?;
        let algorithm = super::signing::resolve_algorithm(kind, algorithm, source)?;
        Self::from_spki_der(&spki, algorithm)
    }

    /// Parses a DER SubjectPublicKeyInfo for `algorithm`.
    pub fn from_spki_der(spki: &[u8], algorithm: Algorithm) -> Result<Self, CryptoError> {
        let kind = der::spki_kind(spki)
            .ok_or_else(|| CryptoError::MalformedKey("not a DER SubjectPublicKeyInfo".into()))?;
        if !kind.fits(algorithm) {
            return Err(CryptoError::AlgorithmMismatch {
                key: kind.describe(),
                algorithm,
            });
        }
        let parsed = ParsedPublicKey::new(verification_algorithm(algorithm), spki)
            .map_err(|e| CryptoError::MalformedKey(format!("{algorithm} key rejected: {e}")))?;
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, spki);
        Ok(PublicKey {
            algorithm,
            spki_der: spki.to_vec(),
            fingerprint: format!("sha256:{}", hex::encode(digest.as_ref())),
            parsed: std::sync::Arc::new(parsed),
        })
    }

    /// The algorithm this key verifies with.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// `sha256:<hex of the SPKI DER>`.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// The SubjectPublicKeyInfo DER.
    pub fn spki_der(&self) -> &[u8] {
        &self.spki_der
    }

    /// The key as SPKI PEM (`-----BEGIN PUBLIC KEY-----`).
    pub fn to_pem(&self) -> String {
        der::pem_encode("PUBLIC KEY", &self.spki_der)
    }

    /// Checks `signature` over `message` (ECDSA: ASN.1 DER; RSA and Ed25519: raw).
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> Result<(), CryptoError> {
        self.parsed
            .verify_sig(message, signature)
            .map_err(|_| CryptoError::BadSignature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::encoding::AsDer;
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, RsaKeyPair};

    fn ec_p256() -> (EcdsaKeyPair, String) {
        let kp = EcdsaKeyPair::generate(&lc::ECDSA_P256_SHA256_ASN1_SIGNING).unwrap();
        let spki = kp.public_key().as_der().unwrap();
        (kp, der::pem_encode("PUBLIC KEY", spki.as_ref()))
    }

    #[test]
    fn ecdsa_verifies_and_rejects() {
        let (kp, pem) = ec_p256();
        let key = PublicKey::from_pem(&pem, Algorithm::EcdsaP256Sha256).unwrap();
        let sig = kp.sign(&SystemRandom::new(), b"payload").unwrap();
        key.verify(b"payload", sig.as_ref()).unwrap();
        assert_eq!(
            key.verify(b"payloaD", sig.as_ref()),
            Err(CryptoError::BadSignature)
        );
        assert!(key.fingerprint().starts_with("sha256:") && key.fingerprint().len() == 71);
        assert_eq!(
            PublicKey::from_pem(&key.to_pem(), Algorithm::EcdsaP256Sha256).unwrap(),
            key
        );
    }

    #[test]
    fn rsa_pkcs1_pem_has_same_fingerprint_as_spki() {
        let kp = RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
        let spki = kp.public_key().as_der().unwrap();
        let spki_pem = der::pem_encode("PUBLIC KEY", spki.as_ref());
        let pkcs1 = kp.public_key().as_ref().to_vec();
        let pkcs1_pem = der::pem_encode("RSA PUBLIC KEY", &pkcs1);
        let a = PublicKey::from_pem(&spki_pem, Algorithm::RsaPssSha256).unwrap();
        let b = PublicKey::from_pem(&pkcs1_pem, Algorithm::RsaPssSha256).unwrap();
        assert_eq!(a.fingerprint(), b.fingerprint());
        let mut sig = vec![0; kp.public_modulus_len()];
        kp.sign(&lc::RSA_PSS_SHA256, &SystemRandom::new(), b"m", &mut sig)
            .unwrap();
        b.verify(b"m", &sig).unwrap();
        // The same key declared PKCS#1 v1.5 does not accept a PSS signature.
        let pkcs1_decl = PublicKey::from_pem(&spki_pem, Algorithm::RsaPkcs1Sha256).unwrap();
        assert_eq!(
            pkcs1_decl.verify(b"m", &sig),
            Err(CryptoError::BadSignature)
        );
    }

    #[test]
    fn key_type_contradicting_algorithm_is_named() {
        let (_, pem) = ec_p256();
        let err = PublicKey::from_pem(&pem, Algorithm::RsaPssSha256).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the key is an EC P-256 key, which cannot verify RSA_PSS_SHA_256"
        );
        let err = PublicKey::from_pem(&pem, Algorithm::EcdsaP384Sha384).unwrap_err();
        assert!(err.to_string().contains("EC P-256"), "{err}");
    }

    #[test]
    fn garbage_is_rejected_with_a_reason() {
        assert_eq!(
            PublicKey::from_pem("hello", Algorithm::Ed25519),
            Err(CryptoError::NotPem)
        );
        let pem = der::pem_encode("PUBLIC KEY", b"garbage");
        assert!(matches!(
            PublicKey::from_pem(&pem, Algorithm::Ed25519),
            Err(CryptoError::MalformedKey(_))
        ));
        let pem = der::pem_encode("PRIVATE KEY", b"garbage");
        assert!(
            PublicKey::from_pem(&pem, Algorithm::Ed25519)
                .unwrap_err()
                .to_string()
                .contains("PRIVATE KEY")
        );
    }
}
