//! Signing one image: resolve its digest and store one signature by the key for it through the
//! [`SignatureStore`] (which skips it when the same key already signed the same identity). Used
//! by `signet sign` (and test tools); the signer goes through the same store. It sits in the
//! registry layer because it is a store operation: resolve, then append through the store.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::crypto::SigningKey;
use crate::reference::ImageRef;
use crate::registry::{
    AppendOutcome, Compaction, NotationSigner, NotationWriteError, RegistryError, SignatureStore,
    SignatureWriteError, Wanted, WantedNotation,
};
use crate::signature::{self, SignatureError, SignatureFormat, SignatureType};

/// Why an image could not be signed.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    /// The image's digest could not be resolved at the registry.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// The signature could not be made or stored (key refused, registry failed, contention).
    #[error(transparent)]
    Write(#[from] SignatureWriteError),
    /// The digest cannot name a `.sig` tag.
    #[error(transparent)]
    Format(#[from] SignatureError),
    /// The Notation format was asked for without the key's certificate chain.
    #[error(
        "the Notation format needs the key's certificate chain (--certificate-chain, PEM, leaf first)"
    )]
    NotationNeedsChain,
    /// The Notation signature could not be made or stored.
    #[error(transparent)]
    Notation(#[from] NotationWriteError),
    /// The reference pins a digest the registry does not serve for it; nothing was signed.
    #[error("digest mismatch: {image} names {named} but the registry serves {resolved}")]
    DigestMismatch {
        /// The image reference as given.
        image: String,
        /// The digest the reference pins.
        named: String,
        /// The digest the registry resolved the reference to.
        resolved: String,
    },
}

/// What signing did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Signed {
    /// The digest that was signed.
    pub digest: String,
    /// The image with its digest (`registry/repo:tag@sha256:...`).
    pub image: ImageRef,
    /// The `.sig` tag, with its repository.
    pub signature_ref: String,
    /// Whether a new layer was pushed, or the key had already signed this identity.
    pub outcome: AppendOutcome,
    /// Set when the manifest was full and layers not verifying under `key` were dropped.
    pub compaction: Option<Compaction>,
    /// What happened in each format asked for, in the order asked.
    pub formats: Vec<FormatOutcome>,
}

/// What signing did in one format.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FormatOutcome {
    /// The format.
    pub format: SignatureFormat,
    /// Whether something was written.
    pub outcome: AppendOutcome,
    /// Where: the `.sig` tag, or the bundle manifest (`repo@sha256:...`) when one was pushed.
    pub reference: String,
}

/// Signs the image `image` names: resolves its digest (or checks the one named), and stores a
/// signature of `signature_type` by `key` unless one is there already.
pub async fn sign_image(
    store: &SignatureStore,
    image: &ImageRef,
    key: Arc<dyn SigningKey>,
    signature_type: SignatureType,
    annotations: &BTreeMap<String, String>,
) -> Result<Signed, SignError> {
    sign_image_formats(
        store,
        image,
        key,
        signature_type,
        annotations,
        &[SignatureFormat::CosignSignature],
    )
    .await
}

/// [`sign_image`] in each of `formats` (the `.sig` tag, a Sigstore bundle, or both; Notation
/// needs [`sign_image_with`]).
pub async fn sign_image_formats(
    store: &SignatureStore,
    image: &ImageRef,
    key: Arc<dyn SigningKey>,
    signature_type: SignatureType,
    annotations: &BTreeMap<String, String>,
    formats: &[SignatureFormat],
) -> Result<Signed, SignError> {
    sign_image_with(
        store,
        image,
        key,
        None,
        signature_type,
        annotations,
        formats,
    )
    .await
}

/// [`sign_image_formats`], with the key's certificate chain for the Notation format
/// (`notation`, whose key is `key`); refused before any request when Notation is asked for
/// without it.
pub async fn sign_image_with(
    store: &SignatureStore,
    image: &ImageRef,
    key: Arc<dyn SigningKey>,
    notation: Option<Arc<NotationSigner>>,
    signature_type: SignatureType,
    annotations: &BTreeMap<String, String>,
    formats: &[SignatureFormat],
) -> Result<Signed, SignError> {
    if formats.contains(&SignatureFormat::Notation) && notation.is_none() {
        return Err(SignError::NotationNeedsChain);
    }
    // A GET (one request, as a HEAD): a bundle's `subject` then needs no HEAD of its own.
    let resolved = store.client().resolve_manifest(image).await?;
    if let Some(named) = image.digest()
        && !named.eq_ignore_ascii_case(&resolved)
    {
        return Err(SignError::DigestMismatch {
            image: image.to_string(),
            named: named.to_string(),
            resolved,
        });
    }
    sign_digest_with(
        store,
        image,
        &resolved,
        key,
        notation,
        signature_type,
        annotations,
        formats,
    )
    .await
}

/// Signs a digest already known: no lookup before signing. When the manifest is full, only
/// layers `key` verifies are kept (the CLI knows no other key). The `.sig` format only.
pub async fn sign_digest(
    store: &SignatureStore,
    image: &ImageRef,
    digest: &str,
    key: Arc<dyn SigningKey>,
    signature_type: SignatureType,
    annotations: &BTreeMap<String, String>,
) -> Result<Signed, SignError> {
    sign_digest_with(
        store,
        image,
        digest,
        key,
        None,
        signature_type,
        annotations,
        &[SignatureFormat::CosignSignature],
    )
    .await
}

/// [`sign_digest`] in each of `formats`, under one lock for the digest, with the key's certificate
/// chain for the Notation format.
#[allow(clippy::too_many_arguments)]
pub async fn sign_digest_with(
    store: &SignatureStore,
    image: &ImageRef,
    digest: &str,
    key: Arc<dyn SigningKey>,
    notation: Option<Arc<NotationSigner>>,
    signature_type: SignatureType,
    annotations: &BTreeMap<String, String>,
    formats: &[SignatureFormat],
) -> Result<Signed, SignError> {
    if formats.contains(&SignatureFormat::Notation) && notation.is_none() {
        return Err(SignError::NotationNeedsChain);
    }
    let wanted = [Wanted {
        key,
        signature_type,
        annotations: annotations.clone(),
    }];
    let tag = signature::signature_tag(digest)?;
    let signature_ref = format!("{}:{tag}", image.repo_path());
    let subject = store
        .client()
        .known_descriptor(image.registry(), image.repository(), digest)
        .map(|(media_type, size)| super::SubjectManifest { media_type, size });
    let lock = store.lock(image, digest).await;
    let mut compaction = None;
    let mut outcomes = Vec::with_capacity(formats.len());
    for &format in formats {
        if outcomes.iter().any(|o: &FormatOutcome| o.format == format) {
            continue;
        }
        match format {
            SignatureFormat::CosignSignature => {
                let report = store
                    .ensure_signed(&lock, image, digest, &wanted, &[], true)
                    .await?;
                compaction = report.compaction;
                outcomes.push(FormatOutcome {
                    format,
                    outcome: first(&report.outcomes),
                    reference: signature_ref.clone(),
                });
            }
            SignatureFormat::Notation => {
                let Some(signer) = &notation else {
                    return Err(SignError::NotationNeedsChain);
                };
                let wanted = [WantedNotation {
                    signer: Arc::clone(signer),
                    signature_type,
                    annotations: annotations.clone(),
                }];
                let report = store
                    .ensure_notation(&lock, image, digest, subject.clone(), &wanted, true)
                    .await?;
                outcomes.push(referrer_outcome(format, image, digest, &report));
            }
            SignatureFormat::SigstoreBundle => {
                let report = store
                    .ensure_bundles(&lock, image, digest, subject.clone(), &wanted, true)
                    .await?;
                outcomes.push(referrer_outcome(format, image, digest, &report));
            }
        }
    }
    drop(lock);
    let outcome = if outcomes.iter().any(|o| o.outcome == AppendOutcome::Added) {
        AppendOutcome::Added
    } else {
        AppendOutcome::AlreadyPresent
    };
    Ok(Signed {
        digest: digest.to_string(),
        image: image.with_digest(digest),
        signature_ref,
        outcome,
        compaction,
        formats: outcomes,
    })
}

fn first(outcomes: &[AppendOutcome]) -> AppendOutcome {
    outcomes
        .first()
        .copied()
        .unwrap_or(AppendOutcome::AlreadyPresent)
}

/// What a referrer writer did, for the CLI's report: the manifest it pushed, else where the
/// existing signature is attached.
fn referrer_outcome(
    format: SignatureFormat,
    image: &ImageRef,
    digest: &str,
    report: &super::BundleReport,
) -> FormatOutcome {
    let reference = match report.pushed.first() {
        Some(manifest) => format!("{}@{manifest}", image.repo_path()),
        None => format!("{}@{digest} (referrers)", image.repo_path()),
    };
    FormatOutcome {
        format,
        outcome: first(&report.outcomes),
        reference,
    }
}
