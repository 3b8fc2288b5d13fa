//! The signer's view of a `.sig` tag: read every layer with its payload, decide which rules it
//! already satisfies, and write the manifest back with new layers. Built on the public
//! [`RegistryClient`] API so that the check and the append happen under one lock held by the
//! signer (`SignatureStore::append_signature` only checks byte-identical layers, and ECDSA and
//! RSA-PSS signatures differ every time).

use futures::future::try_join_all;

use crate::crypto::PublicKey;
use crate::reference::ImageRef;
use crate::registry::{MAX_SIGNATURE_BLOB, MAX_SIGNATURE_LAYERS, RegistryClient, RegistryError};
use crate::signature::{
    self, Descriptor, OCI_MANIFEST_MEDIA_TYPE, SignatureType, StoredSignature, check_signature,
};

/// The layers of a `.sig` manifest and, for the first [`MAX_SIGNATURE_LAYERS`], their payloads.
#[derive(Clone, Debug, Default)]
pub struct ExistingSignatures {
    /// Every simple-signing layer, in manifest order (kept as is when appending).
    pub layers: Vec<Descriptor>,
    /// The signatures read (payload and signature) of the first layers.
    pub signatures: Vec<StoredSignature>,
}

impl ExistingSignatures {
    /// Whether one stored signature verifies under `key` and says exactly what the signer would
    /// write for `identity` (`registry/repo:tag` for `Default`, `registry/repo` for `Simple`).
    pub fn satisfies(
        &self,
        identity: &ImageRef,
        digest: &str,
        signature_type: SignatureType,
        key: &PublicKey,
    ) -> bool {
        let expected = expected_identity(identity, signature_type);
        let keys = std::slice::from_ref(key);
        self.signatures.iter().any(|stored| {
            check_signature(stored, identity, digest, signature_type, keys)
                .is_ok_and(|accepted| accepted.payload.docker_reference == expected)
        })
    }

    /// Whether every one of `layers` is in this manifest (same payload, same signature).
    pub fn contains_all(&self, layers: &[Descriptor]) -> bool {
        layers
            .iter()
            .all(|new| self.layers.iter().any(|l| l.same_signature(new)))
    }
}

/// The identity a signature of this type names.
pub fn expected_identity(identity: &ImageRef, signature_type: SignatureType) -> String {
    match signature_type {
        SignatureType::Default => identity.repo_with_tag(),
        SignatureType::Simple => identity.repo_path(),
    }
}

fn sig_tag_ref(image: &ImageRef, digest: &str) -> Result<ImageRef, RegistryError> {
    let tag = signature::signature_tag(digest).map_err(|e| RegistryError::InvalidRequest {
        host: image.registry().to_string(),
        reason: e.to_string(),
    })?;
    Ok(image.with_tag(&tag))
}

/// Reads the layers of the `.sig` manifest of `digest` (none when the tag does not exist).
pub async fn read_layers(
    client: &RegistryClient,
    image: &ImageRef,
    digest: &str,
) -> Result<Vec<Descriptor>, RegistryError> {
    let sig_ref = sig_tag_ref(image, digest)?;
    let Some(manifest) = client.fetch_manifest(&sig_ref).await? else {
        return Ok(Vec::new());
    };
    signature::parse_signature_manifest(&manifest.bytes).map_err(|e| RegistryError::BadResponse {
        host: image.registry().to_string(),
        what: format!(
            "{}:{}",
            image.repository(),
            sig_ref.tag().unwrap_or_default()
        ),
        detail: e.to_string(),
    })
}

/// Reads the `.sig` manifest of `digest` and the payloads of its layers.
pub async fn read_existing(
    client: &RegistryClient,
    image: &ImageRef,
    digest: &str,
) -> Result<ExistingSignatures, RegistryError> {
    let layers = read_layers(client, image, digest).await?;
    let repo = image.with_tag("latest");
    let fetches = layers.iter().take(MAX_SIGNATURE_LAYERS).map(|layer| {
        let repo = &repo;
        async move {
            let payload = client
                .fetch_blob(repo, &layer.digest, MAX_SIGNATURE_BLOB)
                .await?;
            Ok::<_, RegistryError>(StoredSignature {
                payload,
                signature: layer.signature(),
            })
        }
    });
    let signatures = try_join_all(fetches).await?;
    Ok(ExistingSignatures { layers, signatures })
}

/// One signature to add: the payload bytes and its layer descriptor.
#[derive(Clone, Debug)]
pub struct NewSignature {
    pub payload: Vec<u8>,
    pub layer: Descriptor,
}

/// Pushes the payload blobs of `added`, then the manifest holding `existing` followed by them.
pub async fn write_signatures(
    client: &RegistryClient,
    image: &ImageRef,
    digest: &str,
    existing: &[Descriptor],
    added: &[NewSignature],
) -> Result<(), RegistryError> {
    let repo = image.with_tag("latest");
    let mut layers = existing.to_vec();
    layers.extend(added.iter().map(|n| n.layer.clone()));
    let built =
        signature::build_signature_manifest(&layers).map_err(|e| RegistryError::BadResponse {
            host: image.registry().to_string(),
            what: "signature manifest".into(),
            detail: e.to_string(),
        })?;
    // The blobs are independent: upload them at once, the manifest only after all of them.
    let blobs = added
        .iter()
        .map(|n| n.payload.as_slice())
        .chain(std::iter::once(built.config.as_slice()));
    try_join_all(blobs.map(|blob| client.push_blob(&repo, blob))).await?;
    client
        .push_manifest(
            &sig_tag_ref(image, digest)?,
            &built.manifest,
            OCI_MANIFEST_MEDIA_TYPE,
        )
        .await?;
    Ok(())
}
