//! Writing Notation signatures as `notation sign` writes them: the envelope (JWS by default, COSE
//! on request) as the one layer of a manifest with `artifactType:
//! application/vnd.cncf.notary.signature`, the empty config, `subject` = the signed manifest and
//! the chain's thumbprints in `io.cncf.notary.x509chain.thumbprint#S256`, pushed by digest; when
//! the registry does not index it itself (no `OCI-Subject` in its answer), the entry is added to
//! the fallback index `sha256-<hex>` by the same read-modify-write as Sigstore bundles (see
//! [`super::bundle_write`]), under the caller's per-digest [`SignatureLock`].
//!
//! Idempotent per key and identity: a Notation signature already attached that verifies under
//! the writer's own chain root, whose leaf holds the writer's key, which binds the same target
//! and names the same `io.signet.reference` (none for `Simple`) means nothing is written.
//!
//! The key and its chain are checked together once, when a [`NotationSigner`] is built (the
//! leaf holds the key, the chain obeys Notary's certificate rules, the key's algorithm is the one
//! Notary demands for the leaf key): a mismatch is refused there, before anything is pushed.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::OCI_MANIFEST_MEDIA_TYPE;
use super::SignatureStore;
use super::bundle_write::{BundleReport, SubjectManifest};
use super::cosign_write::{AppendOutcome, SignatureLock, SignatureWriteError};
use super::error::RegistryError;
use super::referrers::IndexEntry;
use crate::crypto::SigningKey;
use crate::crypto::x509::{Certificate, TrustStore};
use crate::reference::ImageRef;
use crate::signature::notation::{
    EnvelopeFormat, NOTATION_ARTIFACT_TYPE, NotaryAlgorithm, NotationError, REFERENCE_ANNOTATION,
    THUMBPRINT_ANNOTATION, TargetArtifact, check_signing_key, sign_notation, signed_by_key,
};
use crate::signature::{SignatureFormat, SignatureType};

/// A key and its certificate chain, checked to sign together in Notation format.
pub struct NotationSigner {
    key: Arc<dyn SigningKey>,
    chain: Vec<Certificate>,
    envelope: EnvelopeFormat,
    algorithm: NotaryAlgorithm,
    /// The chain's last certificate (its root, or the self-signed leaf): what "already signed"
    /// verifies stored signatures under.
    own_trust: TrustStore,
}

impl std::fmt::Debug for NotationSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NotationSigner")
            .field("key", &self.key.key_id())
            .field("leaf", &self.chain.first().map(|c| c.subject()))
            .field("envelope", &self.envelope)
            .field("algorithm", &self.algorithm)
            .finish()
    }
}

impl NotationSigner {
    /// Checks `key` against `chain_pem` (PEM certificates, leaf first, root last or a single
    /// self-signed leaf) now; says in one line why they cannot sign together.
    pub fn new(
        key: Arc<dyn SigningKey>,
        chain_pem: &str,
        envelope: EnvelopeFormat,
    ) -> Result<Self, NotationError> {
        let chain = Certificate::from_pem_bundle(chain_pem)?;
        let algorithm = check_signing_key(key.as_ref(), &chain, now())?;
        let Some(last) = chain.last() else {
            // `check_signing_key` refuses an empty chain.
            return Err(NotationError::KeyMismatch(
                "the certificate chain is empty".into(),
            ));
        };
        let own_trust = TrustStore::new(&last.to_pem(), &[], None)?;
        Ok(NotationSigner {
            key,
            chain,
            envelope,
            algorithm,
            own_trust,
        })
    }

    /// The key.
    pub fn key(&self) -> &Arc<dyn SigningKey> {
        &self.key
    }

    /// The Notary algorithm the signatures use (PS256, ES256...).
    pub fn algorithm(&self) -> NotaryAlgorithm {
        self.algorithm
    }

    /// JWS or COSE.
    pub fn envelope(&self) -> EnvelopeFormat {
        self.envelope
    }

    /// The leaf certificate's subject.
    pub fn signer(&self) -> &str {
        self.chain.first().map(|c| c.subject()).unwrap_or_default()
    }
}

/// One Notation signature a writer wants attached to the image it names.
#[derive(Clone, Debug)]
pub struct WantedNotation {
    /// The key and chain that sign.
    pub signer: Arc<NotationSigner>,
    /// `Default` signs `io.signet.reference` = `registry/repository:tag`; `Simple` the digest.
    pub signature_type: SignatureType,
    /// Extra signed `targetArtifact` annotations (not part of "already signed").
    pub annotations: BTreeMap<String, String>,
}

/// Why a Notation signature could not be written.
#[derive(Debug, thiserror::Error)]
pub enum NotationWriteError {
    /// Reading or writing the registry failed.
    #[error(transparent)]
    Write(#[from] SignatureWriteError),
    /// Wanted signature `index` could not be made (the key refused, the chain is no longer
    /// valid...).
    #[error("Notation signature: {cause}")]
    Notation {
        /// Position of the signature in the `wanted` slice, from 0.
        index: usize,
        /// Why.
        cause: NotationError,
    },
    /// The signing task died.
    #[error("signing task failed: {0}")]
    Task(String),
}

impl From<RegistryError> for NotationWriteError {
    fn from(e: RegistryError) -> Self {
        NotationWriteError::Write(SignatureWriteError::Registry(e))
    }
}

/// The `io.signet.reference` a signature of this type binds (`None`: the digest only).
fn bound_reference(image: &ImageRef, signature_type: SignatureType) -> Option<String> {
    match signature_type {
        SignatureType::Default => Some(image.repo_with_tag()),
        SignatureType::Simple => None,
    }
}

fn now() -> i64 {
    jiff::Timestamp::now().as_second()
}

impl SignatureStore {
    /// Makes sure a Notation signature by each of `wanted` is attached to `digest` in `image`'s
    /// repository, writing only the missing ones (see the module documentation). `subject` is
    /// the signed manifest's media type and size when the caller knows them, else one HEAD
    /// asks. `check_after_write` as for [`SignatureStore::ensure_bundles`].
    pub async fn ensure_notation(
        &self,
        lock: &SignatureLock,
        image: &ImageRef,
        digest: &str,
        subject: Option<SubjectManifest>,
        wanted: &[WantedNotation],
        check_after_write: bool,
    ) -> Result<BundleReport, NotationWriteError> {
        let read = self.referrers_to_write(lock, image, digest).await?;
        let subject = self.subject_manifest(image, digest, subject).await?;
        let at = now();
        let target = TargetArtifact {
            media_type: subject.media_type.clone(),
            digest: digest.to_string(),
            size: subject.size,
            annotations: BTreeMap::new(),
        };
        let present = |w: &WantedNotation| {
            let expected = bound_reference(image, w.signature_type);
            read.signatures.iter().any(|stored| {
                let Some(notation) = stored
                    .notation
                    .as_ref()
                    .filter(|_| stored.format == SignatureFormat::Notation)
                else {
                    return false;
                };
                signed_by_key(
                    &notation.manifest,
                    &stored.payload,
                    &target,
                    w.signer.key.as_ref(),
                    &w.signer.own_trust,
                    at,
                )
                .is_some_and(|reference| reference == expected)
            })
        };
        let missing: Vec<usize> = (0..wanted.len())
            .filter(|&i| !present(&wanted[i]))
            .collect();
        let mut report = BundleReport {
            outcomes: vec![AppendOutcome::AlreadyPresent; wanted.len()],
            ..BundleReport::default()
        };
        if missing.is_empty() {
            return Ok(report);
        }
        let repo = image.with_tag("latest");
        self.ensure_empty_config(&repo).await?;
        let mut entries = Vec::with_capacity(missing.len());
        let mut all_indexed = true;
        for &i in &missing {
            let w = &wanted[i];
            let mut annotations = w.annotations.clone();
            annotations.remove(REFERENCE_ANNOTATION);
            if let Some(reference) = bound_reference(image, w.signature_type) {
                annotations.insert(REFERENCE_ANNOTATION.to_string(), reference);
            }
            let signed_target = TargetArtifact {
                annotations,
                ..target.clone()
            };
            let signer = Arc::clone(&w.signer);
            // A PKCS#11 token or a KMS blocks: sign off the async threads.
            let signed = tokio::task::spawn_blocking(move || {
                sign_notation(
                    signer.key.as_ref(),
                    &signer.chain,
                    &signed_target,
                    signer.envelope,
                    now(),
                    None,
                )
            })
            .await
            .map_err(|e| NotationWriteError::Task(e.to_string()))?
            .map_err(|cause| NotationWriteError::Notation { index: i, cause })?;
            self.client.push_new_blob(&repo, &signed.envelope).await?;
            let pushed = self.push_referrer(image, &signed.manifest).await?;
            all_indexed &= pushed.oci_subject;
            report.outcomes[i] = AppendOutcome::Added;
            report.pushed.push(pushed.digest.clone());
            entries.push(IndexEntry {
                media_type: OCI_MANIFEST_MEDIA_TYPE.to_string(),
                digest: pushed.digest,
                size: signed.manifest.len() as u64,
                artifact_type: Some(NOTATION_ARTIFACT_TYPE.to_string()),
                annotations: index_annotations(&signed.manifest),
            });
        }
        self.index_referrers(
            image,
            digest,
            read,
            entries,
            all_indexed,
            check_after_write,
            &mut report,
        )
        .await?;
        Ok(report)
    }
}

/// The manifest's annotations, repeated in its index entry as the referrers API lists them (the
/// thumbprints let a verifier skip a chain it cannot trust before fetching anything).
fn index_annotations(manifest: &[u8]) -> BTreeMap<String, String> {
    #[derive(serde::Deserialize)]
    struct Doc {
        #[serde(default)]
        annotations: BTreeMap<String, String>,
    }
    serde_json::from_slice::<Doc>(manifest)
        .map(|d| d.annotations)
        .unwrap_or_default()
        .into_iter()
        .filter(|(k, _)| k == THUMBPRINT_ANNOTATION || k == "org.opencontainers.image.created")
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::x509::self_signed_code_signing_certificate;
    use crate::crypto::{Algorithm, FileKey, generate_key_pair};

    fn key_and_certificate(algorithm: Algorithm) -> (Arc<dyn SigningKey>, String) {
        let bits = algorithm.is_rsa().then_some(2048);
        let pair = generate_key_pair(algorithm, bits).unwrap();
        let pem = self_signed_code_signing_certificate(
            pair.private_key_pem(),
            algorithm,
            "CN=release,O=acme,C=US",
            now(),
            1,
        )
        .unwrap();
        let key = FileKey::from_pem(pair.private_key_pem(), algorithm, "k").unwrap();
        (Arc::new(key), pem)
    }

    #[test]
    fn the_key_must_be_the_leafs_and_fit_notarys_algorithm() {
        let (rsa, rsa_pem) = key_and_certificate(Algorithm::RsaPssSha256);
        let signer = NotationSigner::new(Arc::clone(&rsa), &rsa_pem, EnvelopeFormat::Jws).unwrap();
        assert_eq!(signer.algorithm(), NotaryAlgorithm::Ps256);
        let (ec, ec_pem) = key_and_certificate(Algorithm::EcdsaP256Sha256);
        let signer = NotationSigner::new(Arc::clone(&ec), &ec_pem, EnvelopeFormat::Cose).unwrap();
        assert_eq!(signer.algorithm(), NotaryAlgorithm::Es256);
        assert_eq!(signer.signer(), "CN=release, O=acme, C=US");

        let err = NotationSigner::new(ec, &rsa_pem, EnvelopeFormat::Jws)
            .unwrap_err()
            .to_string();
        assert!(err.contains("does not hold the public key"), "{err}");
        assert!(!err.contains('\n'), "{err}");
        let err = NotationSigner::new(rsa, "not a certificate", EnvelopeFormat::Jws)
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("certificate chain:"), "{err}");
    }

    #[test]
    fn default_binds_the_tag_and_simple_the_digest() {
        let image = ImageRef::parse("reg.example/app:v1").unwrap();
        assert_eq!(
            bound_reference(&image, SignatureType::Default).as_deref(),
            Some("reg.example/app:v1")
        );
        assert_eq!(bound_reference(&image, SignatureType::Simple), None);
    }
}
