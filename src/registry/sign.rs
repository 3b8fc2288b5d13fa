//! Signing one image: resolve its digest and store one signature by the key for it through the
//! [`SignatureStore`] (which skips it when the same key already signed the same identity). Used
//! by `signet sign` (and test tools); the signer goes through the same store. It sits in the
//! registry layer because it is a store operation: resolve, then append through the store.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::crypto::SigningKey;
use crate::reference::ImageRef;
use crate::registry::{
    AppendOutcome, Compaction, RegistryError, SignatureStore, SignatureWriteError, Wanted,
};
use crate::signature::{self, SignatureError, SignatureType};

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
    let resolved = store.client().resolve_digest(image).await?;
    if let Some(named) = image.digest()
        && !named.eq_ignore_ascii_case(&resolved)
    {
        return Err(SignError::DigestMismatch {
            image: image.to_string(),
            named: named.to_string(),
            resolved,
        });
    }
    sign_digest(store, image, &resolved, key, signature_type, annotations).await
}

/// Signs a digest already known: no lookup before signing. When the manifest is full, only
/// layers `key` verifies are kept (the CLI knows no other key).
pub async fn sign_digest(
    store: &SignatureStore,
    image: &ImageRef,
    digest: &str,
    key: Arc<dyn SigningKey>,
    signature_type: SignatureType,
    annotations: &BTreeMap<String, String>,
) -> Result<Signed, SignError> {
    let wanted = [Wanted {
        key,
        signature_type,
        annotations: annotations.clone(),
    }];
    let lock = store.lock(image, digest).await;
    let report = store
        .ensure_signed(&lock, image, digest, &wanted, &[])
        .await?;
    drop(lock);
    let tag = signature::signature_tag(digest)?;
    Ok(Signed {
        digest: digest.to_string(),
        image: image.with_digest(digest),
        signature_ref: format!("{}:{tag}", image.repo_path()),
        outcome: report
            .outcomes
            .first()
            .copied()
            .unwrap_or(AppendOutcome::AlreadyPresent),
        compaction: report.compaction,
    })
}
