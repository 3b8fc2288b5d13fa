//! Algorithms, public keys and verification, signing keys (file, PKCS#11), on aws-lc-rs.

mod algorithm;
pub(crate) mod der;
mod public_key;

pub use algorithm::{Algorithm, UnknownAlgorithm};
pub use public_key::PublicKey;

/// Errors of the crypto layer: keys that cannot be read or used, signatures that do not verify.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CryptoError {
    #[error("not a PEM key: no -----BEGIN ...----- block with valid base64")]
    NotPem,
    #[error("PEM block {0:?} is not a public key (expected PUBLIC KEY or RSA PUBLIC KEY)")]
    WrongPemLabel(String),
    #[error("malformed key: {0}")]
    MalformedKey(String),
    #[error("the key is {key}, which cannot verify {algorithm}")]
    AlgorithmMismatch {
        key: &'static str,
        algorithm: Algorithm,
    },
    #[error("signature does not verify")]
    BadSignature,
    #[error("signing failed: {0}")]
    SigningFailed(String),
    #[error("key store: {0}")]
    KeyStore(String),
}
