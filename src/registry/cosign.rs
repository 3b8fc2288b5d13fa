//! Signatures in the registry, every format: the one place they are read and written (the
//! legacy `.sig` layout here, bundles in [`super::bundle_read`] and [`super::bundle_write`]).
//!
//! Reading (this file) is budgeted (see [`super::budget`]): layers are judged by their
//! descriptors before any fetch, each distinct blob is fetched once, and what was left out is
//! counted. Writing ([`super::cosign_write`]) adds layers under one lock per repository and
//! digest, with one definition of "already signed" for `signet sign`, backfill and the signer.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use futures::StreamExt as _;

use super::budget::{BLOB_FETCHES, FETCHES_PER_LOOKUP, ReadPlan, SignatureSet, SkipReason};
use super::sources::SignatureSource;
use super::{RegistryClient, RegistryError};
use crate::crypto::x509::TrustStore;
use crate::reference::ImageRef;
use crate::signature::{self, Descriptor, StoredSignature};

/// Reads and writes cosign signatures through a [`RegistryClient`].
#[derive(Clone)]
pub struct SignatureStore {
    pub(super) client: RegistryClient,
    /// One async lock per `repository@digest`, shared by clones, so that concurrent writers in
    /// this process do not overwrite each other's layers.
    pub(super) write_locks: Arc<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>>,
    /// Per repository, the one put of the empty config blob (`{}`) that every manifest signet
    /// writes names (`.sig`, bundle, Notation): set once the repository is known to hold it, so
    /// it is put once per repository, and concurrent writers wait for the one put in flight.
    pub(super) empty_config_known: Arc<Mutex<HashMap<String, Arc<tokio::sync::OnceCell<()>>>>>,
    /// Digests of the referrer manifests (bundles) this store pushed: the signer ignores their
    /// push events without fetching them.
    pub(super) written_referrers: Arc<Mutex<std::collections::HashSet<String>>>,
}

/// The `.sig` manifest of one digest as read: every layer, and the ones read within budget.
#[derive(Clone, Debug, Default)]
pub(crate) struct ReadLayers {
    /// Every layer of the manifest, in manifest order, whatever its media type.
    pub(crate) layers: Vec<Descriptor>,
    /// For each signature in `set.signatures`, the index of its layer in `layers`.
    pub(crate) read_index: Vec<usize>,
    /// The signatures read and what was skipped.
    pub(crate) set: SignatureSet,
}

impl SignatureStore {
    /// A store over this client.
    pub fn new(client: RegistryClient) -> Self {
        SignatureStore {
            client,
            write_locks: Arc::default(),
            empty_config_known: Arc::default(),
            written_referrers: Arc::default(),
        }
    }

    /// The underlying registry client.
    pub fn client(&self) -> &RegistryClient {
        &self.client
    }

    /// The signatures stored for `digest` in `image`'s repository, read within the budgets;
    /// empty when there is no `.sig` tag. Layers that cannot be signatures, do not fit the
    /// budget or cannot be read are skipped and counted in [`SignatureSet::skipped`]. An error
    /// means the registry could not be asked (unreachable, refused, malformed manifest).
    pub async fn fetch_signatures(
        &self,
        image: &ImageRef,
        digest: &str,
    ) -> Result<SignatureSet, RegistryError> {
        self.fetch_signatures_within(image, digest, None).await
    }

    /// [`SignatureStore::fetch_signatures`] for a check against these certificate trust anchors
    /// only: a Notation signature whose thumbprint annotation names none of them is skipped
    /// before its envelope is fetched (the `untrusted_chain` skip reason).
    pub async fn fetch_signatures_trusting(
        &self,
        image: &ImageRef,
        digest: &str,
        trust: &[&TrustStore],
    ) -> Result<SignatureSet, RegistryError> {
        self.fetch_signatures_within(image, digest, Some(trust))
            .await
    }

    async fn fetch_signatures_within(
        &self,
        image: &ImageRef,
        digest: &str,
        notation_trust: Option<&[&TrustStore]>,
    ) -> Result<SignatureSet, RegistryError> {
        // Both sources at once: one lookup, whatever the policy, and no format is preferred.
        self.fetch_sources(image, digest, &SignatureSource::ALL, notation_trust)
            .await
    }

    /// The legacy `.sig` signatures alone (what the `.sig` writer reads).
    pub async fn fetch_legacy_signatures(
        &self,
        image: &ImageRef,
        digest: &str,
    ) -> Result<SignatureSet, RegistryError> {
        Ok(self.read(image, digest).await?.set)
    }

    /// Reads the manifest and, within budget, the payloads of its layers.
    pub(crate) async fn read(
        &self,
        image: &ImageRef,
        digest: &str,
    ) -> Result<ReadLayers, RegistryError> {
        let tag = signature_tag(image, digest)?;
        let Some(manifest) = self.client.fetch_manifest(&image.with_tag(&tag)).await? else {
            return Ok(ReadLayers::default());
        };
        let layers = match signature::parse_manifest_layers(&manifest.bytes) {
            Ok(layers) => layers,
            // Anyone who can push can write garbage at the tag. Reading it as "nothing here,
            // and why" (rather than an error) keeps it from failing every lookup and from
            // blocking the writer, which replaces it with a readable manifest.
            Err(e) => {
                tracing::debug!(error = %e, "signature manifest unreadable");
                let mut read = ReadLayers::default();
                read.set.skipped.add(SkipReason::MalformedManifest, 1);
                return Ok(read);
            }
        };
        let plan = ReadPlan::new(&layers);
        let mut set = SignatureSet {
            skipped: plan.skipped,
            ..SignatureSet::default()
        };
        // Each distinct blob once, read no further than the largest size declared for it
        // (declared sizes are within the per-payload cap, or the layer was not selected).
        let mut blobs: BTreeMap<&str, u64> = BTreeMap::new();
        for &i in &plan.selected {
            let size = blobs.entry(layers[i].digest.as_str()).or_default();
            *size = (*size).max(layers[i].size);
        }
        let repo = image.with_tag("latest");
        // Built eagerly (a `map` closure over borrowed items trips the compiler's Send check in
        // spawned callers); run at most FETCHES_PER_LOOKUP at once.
        let mut fetches = Vec::with_capacity(blobs.len());
        for (blob, size) in blobs {
            let repo = &repo;
            fetches.push(async move {
                // The semaphore is never closed; were it, fetching unbounded beats failing
                // every lookup.
                let _permit = BLOB_FETCHES.acquire().await.ok();
                let limit = usize::try_from(size).unwrap_or(usize::MAX);
                (blob, self.client.fetch_blob(repo, blob, limit).await)
            });
        }
        let results: Vec<(&str, Result<Vec<u8>, RegistryError>)> = futures::stream::iter(fetches)
            .buffer_unordered(FETCHES_PER_LOOKUP)
            .collect()
            .await;
        let mut fetched: HashMap<&str, Vec<u8>> = HashMap::with_capacity(results.len());
        for (blob, result) in results {
            match result {
                Ok(bytes) => {
                    set.blobs_fetched += 1;
                    set.bytes_fetched += bytes.len() as u64;
                    fetched.insert(blob, bytes);
                }
                // The registry itself failed: that is an answer about the registry, not
                // about one layer, and must not read as "not signed".
                Err(e) if is_registry_failure(&e) => return Err(e),
                // Missing, larger than declared, not matching its digest: skipped, counted.
                Err(e) => tracing::debug!(error = %e, "signature layer unreadable; skipped"),
            }
        }
        let mut read_index = Vec::with_capacity(plan.selected.len());
        for &i in &plan.selected {
            match fetched.get(layers[i].digest.as_str()) {
                Some(payload) => {
                    read_index.push(i);
                    set.signatures.push(StoredSignature::cosign(
                        payload.clone(),
                        layers[i].signature(),
                    ));
                }
                _ => set.skipped.add(SkipReason::Unreadable, 1),
            }
        }
        drop(fetched);
        Ok(ReadLayers {
            layers,
            read_index,
            set,
        })
    }
}

/// Failures of the registry as a whole (as opposed to one bad blob: missing, too large, not
/// matching or not even naming a digest, which the manifest's writer controls).
fn is_registry_failure(e: &RegistryError) -> bool {
    e.is_unreachable() || matches!(e, RegistryError::Unauthorized { .. })
}

/// The `.sig` tag for `digest`; a malformed digest is a request that cannot be sent.
pub(super) fn signature_tag(image: &ImageRef, digest: &str) -> Result<String, RegistryError> {
    signature::signature_tag(digest).map_err(|e| RegistryError::InvalidRequest {
        host: image.registry().to_string(),
        reason: e.to_string(),
    })
}
