//! Signatures in the registry, cosign layout: fetch the `.sig` manifest of a digest and its payload
//! blobs; append a signature without duplicates, one append at a time per repository and digest.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use futures::future::try_join_all;

use super::{RegistryClient, RegistryError};
use crate::reference::ImageRef;
use crate::signature::{self, Descriptor, OCI_MANIFEST_MEDIA_TYPE, StoredSignature};

/// Payload blobs larger than this are refused: a simple-signing payload is a few hundred bytes.
pub const MAX_SIGNATURE_BLOB: usize = 1024 * 1024;
/// At most this many signature layers are read per digest; a registry cannot make us do more.
pub const MAX_SIGNATURE_LAYERS: usize = 128;

/// What appending a signature did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AppendOutcome {
    /// A new layer was pushed.
    Added,
    /// An identical signature was already there; nothing was pushed.
    AlreadyPresent,
}

/// Reads and writes cosign signatures through a [`RegistryClient`].
#[derive(Clone)]
pub struct SignatureStore {
    client: RegistryClient,
    /// One async lock per `repository@digest`, so concurrent appends do not overwrite each other.
    append_locks: Arc<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>>,
}

impl SignatureStore {
    /// A store over this client.
    pub fn new(client: RegistryClient) -> Self {
        SignatureStore {
            client,
            append_locks: Arc::default(),
        }
    }

    /// The underlying registry client.
    pub fn client(&self) -> &RegistryClient {
        &self.client
    }

    /// The signatures stored for `digest` in `image`'s repository; empty when there is no `.sig` tag.
    pub async fn fetch_signatures(
        &self,
        image: &ImageRef,
        digest: &str,
    ) -> Result<Vec<StoredSignature>, RegistryError> {
        let Some(layers) = self.signature_layers(image, digest).await? else {
            return Ok(Vec::new());
        };
        let repo = image.with_tag("latest");
        let fetches = layers.iter().take(MAX_SIGNATURE_LAYERS).map(|layer| {
            let repo = &repo;
            async move {
                let payload = self
                    .client
                    .fetch_blob(repo, &layer.digest, MAX_SIGNATURE_BLOB)
                    .await?;
                Ok::<_, RegistryError>(StoredSignature {
                    payload,
                    signature: layer.signature(),
                })
            }
        });
        try_join_all(fetches).await
    }

    /// The simple-signing layer descriptors of the `.sig` manifest, `None` when it does not exist.
    async fn signature_layers(
        &self,
        image: &ImageRef,
        digest: &str,
    ) -> Result<Option<Vec<Descriptor>>, RegistryError> {
        let tag = signature_tag(image, digest)?;
        let Some(manifest) = self.client.fetch_manifest(&image.with_tag(&tag)).await? else {
            return Ok(None);
        };
        signature::parse_signature_manifest(&manifest.bytes)
            .map(Some)
            .map_err(|e| {
                RegistryError::bad_response(
                    image.registry(),
                    &format!("{}:{tag}", image.repository()),
                    e.to_string(),
                )
            })
    }

    /// Appends a signature layer to the `.sig` manifest of `digest`, unless the same one is there.
    pub async fn append_signature(
        &self,
        image: &ImageRef,
        digest: &str,
        payload: &[u8],
        signature_bytes: &[u8],
        annotations: &BTreeMap<String, String>,
    ) -> Result<AppendOutcome, RegistryError> {
        let lock = self.append_lock(&format!("{}@{digest}", image.repo_path()));
        let _guard = lock.lock().await;
        let new_layer = Descriptor::for_signature(payload, signature_bytes, annotations);
        let mut layers = self
            .signature_layers(image, digest)
            .await?
            .unwrap_or_default();
        if layers.iter().any(|l| l.same_signature(&new_layer)) {
            return Ok(AppendOutcome::AlreadyPresent);
        }
        layers.push(new_layer);
        let built = signature::build_signature_manifest(&layers).map_err(|e| {
            RegistryError::bad_response(image.registry(), "signature manifest", e.to_string())
        })?;
        let repo = image.with_tag("latest");
        self.client.push_blob(&repo, payload).await?;
        self.client.push_blob(&repo, &built.config).await?;
        let tag = signature_tag(image, digest)?;
        self.client
            .push_manifest(
                &image.with_tag(&tag),
                &built.manifest,
                OCI_MANIFEST_MEDIA_TYPE,
            )
            .await?;
        Ok(AppendOutcome::Added)
    }

    fn append_lock(&self, key: &str) -> Arc<tokio::sync::Mutex<()>> {
        // A poisoned map only means another thread panicked mid-insert; the map itself is intact.
        let mut locks = self.append_locks.lock().unwrap_or_else(|p| p.into_inner());
        if locks.len() > 10_000 {
            // Forget locks nobody holds, so the map stays bounded in a long-running signer.
            locks.retain(|_, l| Arc::strong_count(l) > 1);
        }
        locks.entry(key.to_string()).or_default().clone()
    }
}

/// The `.sig` tag for `digest`; a malformed digest is a request that cannot be sent.
fn signature_tag(image: &ImageRef, digest: &str) -> Result<String, RegistryError> {
    signature::signature_tag(digest).map_err(|e| RegistryError::InvalidRequest {
        host: image.registry().to_string(),
        reason: e.to_string(),
    })
}
