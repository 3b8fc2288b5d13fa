//! Keys held in a cloud KMS, named by URI:
//! - `awskms://[ENDPOINT]/KEY_ID_OR_ALIAS_OR_ARN` (cosign's syntax): AWS KMS ([`aws`]);
//! - `alikms://KEY_ID[/KEY_VERSION_ID]?region=REGION[&endpoint=HOST]`: Alibaba Cloud KMS
//!   ([`alibaba`]).
//!
//! Opening a key asks the KMS for its public key once (`GetPublicKey`, plus `DescribeKey` on
//! Alibaba Cloud), checks that the key is a signing key whose type and allowed algorithms include
//! the algorithm asked for, and keeps the public key: a rule the key cannot serve is refused at
//! start with one line. Every signature the KMS returns is verified locally against that public
//! key before it is handed on, so a KMS that signs with another key, another padding (moto's
//! RSA-PSS salt) or another hash never produces a stored signature.
//!
//! [`crate::crypto::SigningKey`] is synchronous (signing runs on the blocking pool); KMS calls
//! run on a small runtime of their own ([`transport`]) so a caller on any thread can wait for
//! them. Requests are signed here ([`request_signing`]); credentials come from each provider's
//! chain ([`aws_credentials`], [`alibaba_credentials`]) through a cache that refreshes them five
//! minutes before they expire ([`credentials`]). Calls have timeouts, retry throttling and 5xx
//! answers within a bounded budget, and are counted by provider and outcome ([`metrics`]).
//! Neither secrets nor tokens reach an error or a log line; the key reference does.

mod alibaba;
mod alibaba_credentials;
mod aws;
mod aws_credentials;
mod aws_profile;
mod credentials;
mod metrics;
mod request_signing;
mod transport;

use std::fmt;
use std::sync::Arc;

pub use metrics::register_kms_metrics;

use super::der;
use super::signing::SigningKey;
use super::{Algorithm, CryptoError, PublicKey};
use alibaba::AlibabaKms;
use aws::AwsKms;
use transport::{KmsError, block_on};

/// Whether `scheme` (as written before `:`) names a KMS provider.
pub(crate) fn is_kms_scheme(scheme: &str) -> bool {
    scheme.eq_ignore_ascii_case("awskms") || scheme.eq_ignore_ascii_case("alikms")
}

/// One KMS client, by provider.
enum Backend {
    Aws(AwsKms),
    Alibaba(AlibabaKms),
}

/// What opening learnt of a key.
struct Described {
    spki: Vec<u8>,
    /// The key's type in the provider's words (`RSA_2048`, `EC_P256`).
    spec: String,
    /// The key's signing algorithms in the provider's words.
    algorithms: Vec<String>,
}

impl Described {
    /// Whether the provider lists `algorithm` among the key's signing algorithms.
    fn allows(&self, backend: &Backend, algorithm: Algorithm) -> bool {
        let wanted = match backend {
            Backend::Aws(_) => aws::aws_algorithm(algorithm),
            Backend::Alibaba(_) => alibaba::alibaba_algorithm(algorithm),
        };
        wanted.is_some_and(|w| self.algorithms.iter().any(|a| a == w))
    }
}

impl Backend {
    fn provider_name(&self) -> &'static str {
        match self {
            Backend::Aws(_) => "AWS KMS",
            Backend::Alibaba(_) => "Alibaba Cloud KMS",
        }
    }

    /// Asks for the key's public key and facts; refuses a key that is not for signing.
    async fn describe(&self) -> Result<Described, KmsError> {
        match self {
            Backend::Aws(kms) => {
                let facts = kms.key_facts().await?;
                if facts.key_usage != "SIGN_VERIFY" {
                    return Err(KmsError::Config(format!(
                        "key usage is {}, not SIGN_VERIFY: it cannot sign",
                        facts.key_usage
                    )));
                }
                Ok(Described {
                    spki: facts.spki,
                    spec: facts.key_spec,
                    algorithms: facts.signing_algorithms,
                })
            }
            Backend::Alibaba(kms) => {
                let facts = kms.key_facts().await?;
                let allowed = alibaba::algorithms_for_spec(&facts.key_spec);
                Ok(Described {
                    spki: facts.spki,
                    spec: facts.key_spec,
                    algorithms: allowed.iter().map(|a| a.to_string()).collect(),
                })
            }
        }
    }

    async fn sign(&self, payload: &[u8], algorithm: Algorithm) -> Result<Vec<u8>, KmsError> {
        match self {
            Backend::Aws(kms) => kms.sign(payload, algorithm).await,
            Backend::Alibaba(kms) => kms.sign(payload, algorithm).await,
        }
    }
}

/// A key in a cloud KMS: the private key never leaves it. Its public key is fetched once, at
/// open, and every signature is checked against it.
pub struct KmsKey {
    algorithm: Algorithm,
    key_id: String,
    reference: String,
    public_key: PublicKey,
    backend: Arc<Backend>,
}

impl fmt::Debug for KmsKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KmsKey")
            .field("reference", &self.reference)
            .field("key_id", &self.key_id)
            .field("algorithm", &self.algorithm)
            .field("fingerprint", &self.public_key.fingerprint())
            .finish_non_exhaustive()
    }
}

impl KmsKey {
    /// Opens the KMS key `reference` names for `algorithm` (blocks on the KMS: call it off the
    /// async runtime's worker threads). The key id defaults to the reference's key part. Without
    /// an algorithm, an EC key's curve decides it; an RSA key needs it named.
    pub fn open(
        reference: &str,
        algorithm: Option<Algorithm>,
        key_id: Option<&str>,
    ) -> Result<Self, CryptoError> {
        let reference = reference.trim().to_string();
        let at = |e: KmsError| CryptoError::KeyStore(format!("{reference}: {e}"));
        if algorithm == Some(Algorithm::Ed25519) {
            return Err(at(KmsError::Config(
                "ED25519 is unsupported with KMS keys (use RSA or ECDSA)".into(),
            )));
        }
        let scheme = reference.split(':').next().unwrap_or_default();
        let (backend, default_id) = if scheme.eq_ignore_ascii_case("awskms") {
            let kms = AwsKms::new(&reference).map_err(at)?;
            let id = kms.key_id().to_string();
            (Backend::Aws(kms), id)
        } else {
            let kms = AlibabaKms::new(&reference).map_err(at)?;
            let id = kms.key_id().to_string();
            (Backend::Alibaba(kms), id)
        };
        let backend = Arc::new(backend);
        let asking = Arc::clone(&backend);
        let described = block_on(async move { asking.describe().await }).map_err(at)?;
        let kind = der::spki_kind(&described.spki).ok_or_else(|| {
            at(KmsError::BadResponse {
                operation: "GetPublicKey",
                reason: "the public key is not a DER SubjectPublicKeyInfo".into(),
            })
        })?;
        let source_name = format!("{} key {reference}", backend.provider_name());
        let algorithm = crate::crypto::signing::resolve_algorithm(kind, algorithm, &source_name)?;
        if !kind.fits(algorithm) {
            return Err(CryptoError::SigningAlgorithmMismatch {
                source_name: format!("{} key {reference}", backend.provider_name()),
                key: kind.describe(),
                algorithm,
            });
        }
        if !described.allows(&backend, algorithm) {
            return Err(at(KmsError::Config(format!(
                "the key ({}) signs with {}, not {algorithm}",
                described.spec,
                if described.algorithms.is_empty() {
                    "no algorithm".to_string()
                } else {
                    described.algorithms.join(", ")
                }
            ))));
        }
        let public_key = PublicKey::from_spki_der(&described.spki, algorithm).map_err(|e| {
            CryptoError::KeyStore(format!("{reference}: the KMS's public key: {e}"))
        })?;
        tracing::info!(
            key = %reference,
            algorithm = %algorithm,
            fingerprint = public_key.fingerprint(),
            "KMS key opened"
        );
        Ok(KmsKey {
            algorithm,
            key_id: key_id.map_or(default_id, str::to_string),
            reference,
            public_key,
            backend,
        })
    }
}

impl SigningKey for KmsKey {
    fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    fn key_id(&self) -> &str {
        &self.key_id
    }

    fn public_key(&self) -> &PublicKey {
        &self.public_key
    }

    /// Asks the KMS to sign, then verifies the answer against the public key fetched at open.
    fn sign(&self, payload: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let backend = Arc::clone(&self.backend);
        let algorithm = self.algorithm;
        let message = payload.to_vec();
        let signature = block_on(async move { backend.sign(&message, algorithm).await })
            .map_err(|e| CryptoError::SigningFailed(format!("{}: {e}", self.reference)))?;
        self.checked(payload, signature)
    }

    /// The same call awaited on the caller's runtime (the signer's): no blocking-pool thread, no
    /// hop to the KMS runtime and back.
    fn sign_nonblocking<'a>(
        &'a self,
        payload: &'a [u8],
    ) -> Option<futures::future::BoxFuture<'a, Result<Vec<u8>, CryptoError>>> {
        Some(Box::pin(async move {
            let signature = self
                .backend
                .sign(payload, self.algorithm)
                .await
                .map_err(|e| CryptoError::SigningFailed(format!("{}: {e}", self.reference)))?;
            self.checked(payload, signature)
        }))
    }
}

impl KmsKey {
    /// `signature` when it verifies under the public key fetched at open: a KMS that signs with
    /// another key (or another PSS salt length) never produces a stored signature.
    fn checked(&self, payload: &[u8], signature: Vec<u8>) -> Result<Vec<u8>, CryptoError> {
        // The caller reports the error (the signer logs it and counts a key failure).
        self.public_key.verify(payload, &signature).map_err(|_| {
            CryptoError::SigningFailed(format!(
                "{}: the KMS returned a {} signature that does not verify under the key's public key (fingerprint {}); refused",
                self.reference,
                self.algorithm,
                self.public_key.fingerprint()
            ))
        })?;
        Ok(signature)
    }
}
