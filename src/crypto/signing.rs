//! Signing keys: the trait every key provider implements, and the check that a private key can
//! sign the algorithm asked for. Opening a key from its reference is [`super::key_ref`]'s job, so
//! that the providers (which implement this trait) and the opener (which names them) do not
//! import each other.

use std::fmt;

use super::der::KeyKind;
use super::{Algorithm, CryptoError, PublicKey};

/// A private key that signs with one algorithm. Signatures are encoded as cosign writes them:
/// ECDSA as ASN.1 DER, RSA (PSS with salt length 32, or PKCS#1 v1.5) and Ed25519 raw.
pub trait SigningKey: Send + Sync {
    /// The one algorithm this key signs with.
    fn algorithm(&self) -> Algorithm;
    /// The name the key is known by (the file name, the PKCS#11 object label, or the id given).
    fn key_id(&self) -> &str;
    /// The public half, bound to the same algorithm; every signature verifies with it.
    fn public_key(&self) -> &PublicKey;
    /// Signs `payload` (hashing it as the algorithm says).
    fn sign(&self, payload: &[u8]) -> Result<Vec<u8>, CryptoError>;
    /// Signs without blocking an async thread, where the key can: a cloud KMS key awaits its
    /// HTTP call on the caller's runtime; a key file with a fast algorithm (ECDSA, Ed25519: tens
    /// of microseconds) signs inline. `None` for keys that block (a PKCS#11 token, RSA key
    /// files): the caller signs on the blocking pool. Saves the signer two thread hops per
    /// signature, which on a busy machine cost more than the signing itself.
    fn sign_nonblocking<'a>(
        &'a self,
        payload: &'a [u8],
    ) -> Option<futures::future::BoxFuture<'a, Result<Vec<u8>, CryptoError>>> {
        let _ = payload;
        None
    }
}

impl fmt::Debug for dyn SigningKey + '_ {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("key_id", &self.key_id())
            .field("algorithm", &self.algorithm())
            .field("fingerprint", &self.public_key().fingerprint())
            .finish()
    }
}

/// The algorithm to use with a key of `kind` found at `source`: `asked` when given (checked by the
/// caller), else the one its type implies. RSA keys need it said; unusable types say why.
pub(super) fn resolve_algorithm(
    kind: KeyKind,
    asked: Option<Algorithm>,
    source: &str,
) -> Result<Algorithm, CryptoError> {
    if let Some(algorithm) = asked {
        return Ok(algorithm);
    }
    match (kind.implied_algorithm(), kind) {
        (Some(algorithm), _) => Ok(algorithm),
        (None, KeyKind::Rsa) => Err(CryptoError::AlgorithmNotImplied {
            source_name: source.to_string(),
            key: kind.describe(),
        }),
        (None, _) => Err(CryptoError::MalformedKey(format!(
            "{source} is {}: signet uses RSA, EC P-256, EC P-384 and Ed25519 keys",
            kind.describe()
        ))),
    }
}

/// Checks that a private key of `kind`, found at `source` (`key file /k.pem`, `PKCS#11 private key
/// ...`), can sign `algorithm`; the error names both.
pub(super) fn check_key_fits(
    kind: KeyKind,
    algorithm: Algorithm,
    source: &str,
) -> Result<(), CryptoError> {
    if kind.fits(algorithm) {
        Ok(())
    } else {
        Err(CryptoError::SigningAlgorithmMismatch {
            source_name: source.to_string(),
            key: kind.describe(),
            algorithm,
        })
    }
}
