//! Algorithms, public keys and verification, signing keys (file, PKCS#11, cloud KMS), on aws-lc-rs.

mod algorithm;
pub(crate) mod der;
mod file_key;
mod key_ref;
mod keygen;
mod kms;
mod pkcs11;
mod public_key;
mod signing;
pub(crate) mod signing_metrics;
pub mod x509;

pub use algorithm::{Algorithm, UnknownAlgorithm};
pub use file_key::FileKey;
pub use key_ref::{open_signing_key, open_signing_key_inferred};
pub use keygen::{GeneratedKey, generate_key_pair, write_key_pair};
pub use kms::{KmsKey, register_kms_metrics};
pub use pkcs11::{
    DEFAULT_PKCS11_MODULE, Pkcs11Key, Pkcs11Uri, TokenKey, generate_on_token,
    generate_on_token_sized,
};
pub use public_key::PublicKey;
pub use signing::SigningKey;
pub use signing_metrics::register_signing_metrics;

/// Errors of the crypto layer: keys that cannot be read or used, signatures that do not verify.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CryptoError {
    /// The text holds no PEM block (or its base64 does not decode).
    #[error("not a PEM key: no -----BEGIN ...----- block with valid base64")]
    NotPem,
    /// A PEM block where a public key was expected, but labelled as something else; holds the
    /// label found.
    #[error("PEM block {0:?} is not a public key (expected PUBLIC KEY or RSA PUBLIC KEY)")]
    WrongPemLabel(String),
    /// A key whose encoding is wrong or unsupported (bad DER, encrypted, OpenSSH format, a
    /// public key where a private one belongs); says which and where.
    #[error("malformed key: {0}")]
    MalformedKey(String),
    /// A public key of a type that cannot verify the algorithm asked for (an RSA key for
    /// ECDSA, a P-256 key for P-384).
    #[error("the key is {key}, which cannot verify {algorithm}")]
    AlgorithmMismatch {
        /// The key's type in words, e.g. "an EC P-256 key".
        key: &'static str,
        /// The algorithm the key was meant to verify.
        algorithm: Algorithm,
    },
    /// The signature is not valid for the payload under the key.
    #[error("signature does not verify")]
    BadSignature,
    /// The key was usable but producing a signature failed (aws-lc-rs or the PKCS#11 token
    /// refused); says which key and why.
    #[error("signing failed: {0}")]
    SigningFailed(String),
    /// A key could not be found, read, generated or written: key or PIN file I/O, PKCS#11
    /// URI, token, login or object lookup.
    #[error("key store: {0}")]
    KeyStore(String),
    /// A private key file that group or others may access (`signet keygen` writes mode 0600).
    #[error("key file {path} is {how} by others (mode {mode:04o}): chmod 600 {path}")]
    KeyFileTooOpen {
        /// The file, as named.
        path: String,
        /// `readable` or `writable`.
        how: &'static str,
        /// The permission bits.
        mode: u32,
    },
    /// No algorithm was named and the key's type does not decide one: an RSA key signs with PSS
    /// or PKCS#1 v1.5, and only the user knows which the verifiers expect.
    #[error(
        "{source_name} is {key}, whose algorithm the key cannot tell: name it, \
         --algorithm RSA_PSS_SHA_256 or --algorithm RSA_PKCS1_SHA_256"
    )]
    AlgorithmNotImplied {
        /// Where the key is: `public key /k.pub`, `key file /k.pem`, `PKCS#11 private key ...`.
        source_name: String,
        /// The key's type in words, e.g. "an RSA key".
        key: &'static str,
    },
    /// A private key (file or token object) of a type that cannot sign with the algorithm asked for.
    #[error("{source_name} holds {key}, which cannot sign {algorithm}")]
    SigningAlgorithmMismatch {
        /// Where the key is: `key file /etc/signet/release.key`,
        /// `PKCS#11 private key labelled "x" on token "t"`.
        source_name: String,
        /// The key's type in words, e.g. "an RSA key".
        key: &'static str,
        /// The algorithm the key was asked to sign with.
        algorithm: Algorithm,
    },
}
