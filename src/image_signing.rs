//! Signing one image: resolve its digest, build the payload, sign it with a key, append the
//! signature next to the image. Used by `signet sign` and by the signer.

use std::collections::BTreeMap;

use crate::crypto::{CryptoError, SigningKey};
use crate::reference::ImageRef;
use crate::registry::{AppendOutcome, RegistryError, SignatureStore};
use crate::signature::{self, SignatureError, SignatureType};

/// Why an image could not be signed.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    #[error(transparent)]
    Format(#[from] SignatureError),
    #[error("digest mismatch: {image} names {named} but the registry serves {resolved}")]
    DigestMismatch {
        image: String,
        named: String,
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
    /// Whether a new layer was pushed, or the same signature was already there.
    pub outcome: AppendOutcome,
}

/// Signs the image `image` names: resolves its digest (or checks the one named), signs the payload
/// of `signature_type` with `key`, and appends the signature (no duplicate when already present).
pub async fn sign_image(
    store: &SignatureStore,
    image: &ImageRef,
    key: &dyn SigningKey,
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

/// Signs a digest already known (from a registry event): no lookup before signing.
pub async fn sign_digest(
    store: &SignatureStore,
    image: &ImageRef,
    digest: &str,
    key: &dyn SigningKey,
    signature_type: SignatureType,
    annotations: &BTreeMap<String, String>,
) -> Result<Signed, SignError> {
    let payload = signature::build_payload(image, digest, signature_type, annotations)?;
    let signature_bytes = key.sign(&payload)?;
    let outcome = store
        .append_signature(image, digest, &payload, &signature_bytes, &BTreeMap::new())
        .await?;
    let tag = signature::signature_tag(digest)?;
    Ok(Signed {
        digest: digest.to_string(),
        image: image.with_digest(digest),
        signature_ref: format!("{}:{tag}", image.repo_path()),
        outcome,
    })
}
