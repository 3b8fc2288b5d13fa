//! Writing cosign signatures: the one writer `signet sign`, backfill and the signer share.
//!
//! Under one lock per `repository@digest` (held by the caller, see [`SignatureStore::lock`]):
//! read the `.sig` manifest within budget, skip every wanted signature that is
//! [`already_signed`], sign the others off the async threads, write the manifest back once.
//! "Already signed" is about meaning, not bytes: ECDSA and RSA-PSS signatures differ every time,
//! so comparing layers byte for byte would add a layer per run.
//!
//! The write is not read back: the manifest PUT's success, with the digest the registry
//! announces checked against the bytes sent, proves what was stored. What a re-read could still
//! catch is another process's write landing after this one; the caller asks for that check
//! (`check_after_write`: one HEAD of the tag compared with the digest written, and the whole
//! cycle again only when it changed) or does it later itself, as the signer's recheck does with
//! [`EnsureReport::written`].
//!
//! The `.sig` manifest names a fixed config, the two bytes `{}` (media type
//! `application/vnd.oci.image.config.v1+json`), instead of cosign v2's config listing every
//! layer as `rootfs.diff_ids`: that one changes with each signature added, so it cost an upload
//! (`POST`+`PUT` on distribution 2.8) with every write; `{}` is put once per repository, and is
//! the blob bundles and Notation signatures name too, so one put serves every format
//! ([`SignatureStore::ensure_empty_config`]). A manifest refused for an unknown blob (the
//! repository lost it) makes the store put it again and retry once. Safe because no verifier
//! reads a `.sig`'s config (read in their code, 2026-11):
//! - cosign v2/v3 (`pkg/oci/remote/signatures.go`, `Get`): the manifest's layers, each through
//!   go-containerregistry's `LayerByDigest` and `Compressed()` (the raw payload), and the
//!   layer annotations; nothing outside tests in `pkg/` or `cmd/` calls `ConfigFile` or
//!   `DiffID` on a signature layer (the one path that would, `DiffID`, maps layers through
//!   the config). policy-controller and Kyverno verify through this same library.
//! - sigstore-rs (`src/cosign/client.rs`): pulls the config with the `.sig` image but reads only
//!   its layers, and itself writes `.sig` manifests with exactly this `{}` config.
//! - cosign appending to a `.sig` signet wrote (`mutate.AppendSignatures`): go-containerregistry
//!   parses `{}` as an empty image config and lists the layers it adds as diff_ids; the manifest
//!   it writes keeps every layer (its layers come from the manifest, the base blobs are already
//!   in the repository).
//!
//! signet's reader never reads the config either: `.sig`s cosign wrote (content configs) read
//! as before, and a write keeps their layers (tests/registry_cost.rs shows both).
//!
//! Registry requests of one `.sig` write for an image not yet signed (distribution 2.8, which
//! takes no single-request upload; seen in tests/registry_cost.rs through a recording proxy and
//! with `RUST_LOG=signet::registry::requests=trace`): `GET manifests/sha256-<hex>.sig` (404),
//! `POST blobs/uploads/` + `PUT blobs/uploads/<id>` for the payload, `PUT
//! manifests/sha256-<hex>.sig`: 4 (3 on a registry that takes `POST ?digest=` with the body);
//! the first write of this store in a repository adds the config (one mounting `POST` when
//! another repository of the registry is known to hold it, else an upload); `check_after_write`
//! (or the signer's recheck) adds one `HEAD`. Before the fixed config: 6, and 7 with the `HEAD`.
//!
//! The manifest never grows past [`MAX_SIGNATURE_LAYERS`]: a write that would pass it first
//! drops every layer no configured key verifies for this digest (junk pushed to shadow real
//! signatures, or to make the reader work), then, if still full, the oldest kept layers.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::future::try_join_all;
use tokio::sync::OwnedMutexGuard;

use super::RegistryError;
use super::budget::{MAX_SIGNATURE_LAYERS, SkippedLayers};
use super::bundle_read::BundleRead;
use super::bundle_write::EMPTY_CONFIG;
use super::cosign::{ReadLayers, SignatureStore, signature_tag};
use crate::crypto::{CryptoError, PublicKey, SigningKey};
use crate::reference::ImageRef;
use crate::signature::{
    self, Descriptor, OCI_CONFIG_MEDIA_TYPE, OCI_MANIFEST_MEDIA_TYPE, SIMPLE_SIGNING_MEDIA_TYPE,
    SignatureError, SignatureType, StoredSignature, check_signature,
};

/// How many times the read-check-write cycle is redone when another writer replaced the manifest.
pub(super) const WRITE_ATTEMPTS: usize = 4;

/// Locks kept before the map forgets the ones nobody holds.
const MAX_IDLE_LOCKS: usize = 10_000;

/// What happened to one wanted signature.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AppendOutcome {
    /// A new layer was pushed.
    Added,
    /// A signature by the same key naming the same identity was already there; nothing pushed.
    AlreadyPresent,
}

/// One signature a writer wants stored for the image it names.
#[derive(Clone)]
pub struct Wanted {
    /// The key that signs (and whose public half decides "already signed").
    pub key: Arc<dyn SigningKey>,
    /// `Default` binds the image's tag, `Simple` only its repository.
    pub signature_type: SignatureType,
    /// Optional claims written into the payload (not part of "already signed").
    pub annotations: BTreeMap<String, String>,
}

/// Layers dropped to keep the manifest within [`MAX_SIGNATURE_LAYERS`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Compaction {
    /// Layers removed.
    pub dropped: usize,
    /// Layers kept from the old manifest.
    pub kept: usize,
}

/// What [`SignatureStore::ensure_signed`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EnsureReport {
    /// One per wanted signature, in order.
    pub outcomes: Vec<AppendOutcome>,
    /// Set when a write had to drop layers first.
    pub compaction: Option<Compaction>,
    /// Times another writer replaced the manifest right after this one wrote (then redone).
    pub overwritten: usize,
    /// Layers the last read skipped.
    pub skipped: SkippedLayers,
    /// The `.sig` manifest this call wrote last, when it wrote one: a later check compares the
    /// tag's digest with it (one HEAD) instead of reading the manifest again.
    pub written: Option<WrittenTag>,
}

/// A manifest written under a tag: whether it is still there is one HEAD away.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WrittenTag {
    /// The tag (in the signed image's repository).
    pub tag: String,
    /// The digest of the manifest written.
    pub digest: String,
}

/// Why signatures could not be written.
#[derive(Debug, thiserror::Error)]
pub enum SignatureWriteError {
    /// The registry failed.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// The payload or manifest could not be built.
    #[error(transparent)]
    Format(#[from] SignatureError),
    /// The key of wanted signature `index` refused to sign.
    #[error("signing failed: {cause}")]
    Signing {
        /// Position of the signature in the `wanted` slice, from 0.
        index: usize,
        /// Why the key did not sign.
        cause: SignPayloadError,
    },
    /// Other writers kept replacing the signature manifest.
    #[error("the signature manifest of {0} kept changing under concurrent writers")]
    Contended(String),
    /// The lock passed is not the one for this repository and digest (a bug in the caller).
    #[error("signature write for {asked} under the lock of {held}")]
    WrongLock {
        /// The `repository@digest` the write was for.
        asked: String,
        /// The `repository@digest` the lock passed is for.
        held: String,
    },
}

/// Why [`sign_payload`] failed.
#[derive(Debug, thiserror::Error)]
pub enum SignPayloadError {
    /// The key refused.
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    /// The blocking task died (panicked or was cancelled).
    // Kept typed (`is_panic`, `is_cancelled`); not a `source`, the message already ends with it.
    #[error("signing task failed: {0}")]
    Task(tokio::task::JoinError),
}

/// Reads a writer makes first, made ahead by [`SignatureStore::first_reads`] while the caller
/// does something else under the same lock; each `ensure_*_from` takes its own part once.
#[derive(Default)]
pub struct FirstReads {
    sig: Option<Result<ReadLayers, RegistryError>>,
    bundles: Option<Result<BundleRead, SignatureWriteError>>,
}

impl SignatureStore {
    /// Reads the `.sig` (when `sig`) and the referrers to write beside (when `bundles`) of
    /// `image`@`digest` at once, under `lock`. Made before anything is written under the lock,
    /// they are what the writers would read first.
    pub async fn first_reads(
        &self,
        lock: &SignatureLock,
        image: &ImageRef,
        digest: &str,
        sig: bool,
        bundles: bool,
    ) -> FirstReads {
        let sig_read = async {
            match sig {
                true => Some(self.read(image, digest).await),
                false => None,
            }
        };
        let bundles_read = async {
            match bundles {
                true => Some(self.referrers_to_write(lock, image, digest).await),
                false => None,
            }
        };
        let (sig, bundles) = tokio::join!(sig_read, bundles_read);
        FirstReads { sig, bundles }
    }
}

impl FirstReads {
    /// The `.sig` read and the referrers read apart, for writers that run at once.
    pub fn split(self) -> (FirstReads, FirstReads) {
        (
            FirstReads {
                sig: self.sig,
                bundles: None,
            },
            FirstReads {
                sig: None,
                bundles: self.bundles,
            },
        )
    }

    pub(super) fn take_bundles(&mut self) -> Option<Result<BundleRead, SignatureWriteError>> {
        self.bundles.take()
    }
}

/// Held while writing the signatures of one `repository@digest` (see [`SignatureStore::lock`]).
pub struct SignatureLock {
    key: String,
    _guard: OwnedMutexGuard<()>,
}

impl SignatureLock {
    /// `registry/repository@digest`.
    pub fn key(&self) -> &str {
        &self.key
    }
}

/// Signs `payload` with `key`: awaited where the key signs without blocking (a KMS call, an
/// ECDSA or Ed25519 key file), else on the blocking pool (a PKCS#11 token, an RSA key file); hands
/// the payload back with the signature.
pub async fn sign_payload(
    key: &Arc<dyn SigningKey>,
    payload: Vec<u8>,
) -> Result<(Vec<u8>, Vec<u8>), SignPayloadError> {
    let started = std::time::Instant::now();
    let inline = match key.sign_nonblocking(&payload) {
        Some(signing) => Some(signing.await),
        None => None,
    };
    if let Some(signed) = inline {
        crate::crypto::signing_metrics::record_signature(started.elapsed());
        return Ok((payload, signed?));
    }
    let key = Arc::clone(key);
    let (payload, signed) = tokio::task::spawn_blocking(move || {
        let signed = key.sign(&payload);
        (payload, signed)
    })
    .await
    .map_err(SignPayloadError::Task)?;
    crate::crypto::signing_metrics::record_signature(started.elapsed());
    Ok((payload, signed?))
}

/// The identity a signature of this type names: `registry/repo:tag` for `Default`,
/// `registry/repo` for `Simple`.
pub fn expected_identity(identity: &ImageRef, signature_type: SignatureType) -> String {
    match signature_type {
        SignatureType::Default => identity.repo_with_tag(),
        SignatureType::Simple => identity.repo_path(),
    }
}

/// The one definition of "already signed": a stored signature verifies under `key`, binds
/// `digest`, and names exactly the identity a new one would (so a `Simple` signature does not
/// satisfy a `Default` writer, nor one for another tag).
pub fn already_signed(
    signatures: &[StoredSignature],
    identity: &ImageRef,
    digest: &str,
    signature_type: SignatureType,
    key: &PublicKey,
) -> bool {
    let expected = expected_identity(identity, signature_type);
    let keys = std::slice::from_ref(key);
    signatures.iter().any(|stored| {
        check_signature(stored, identity, digest, signature_type, keys)
            .is_ok_and(|accepted| accepted.payload.docker_reference == expected)
    })
}

impl SignatureStore {
    /// Takes the write lock of `image`'s repository at `digest`. Everything a writer decides
    /// from what it reads (including checks of its own, such as where a tag points) belongs
    /// under it.
    pub async fn lock(&self, image: &ImageRef, digest: &str) -> SignatureLock {
        let key = lock_key(image, digest);
        let mutex = {
            // A poisoned map only means another thread panicked mid-insert; it is intact.
            let mut locks = self.write_locks.lock().unwrap_or_else(|p| p.into_inner());
            if locks.len() > MAX_IDLE_LOCKS {
                // Forget locks nobody holds, so the map stays bounded in a long-running signer.
                locks.retain(|_, l| Arc::strong_count(l) > 1);
            }
            Arc::clone(locks.entry(key.clone()).or_default())
        };
        SignatureLock {
            key,
            _guard: mutex.lock_owned().await,
        }
    }

    /// Makes sure `image` (its tag, for `Default`) at `digest` holds each of `wanted`, adding
    /// only those not [`already_signed`]. When the manifest would pass
    /// [`MAX_SIGNATURE_LAYERS`], layers that verify for this digest under none of `keep` (nor
    /// the wanted keys) are dropped first. With `check_after_write`, asks right after writing
    /// whether the tag still names the manifest written (one HEAD) and redoes the cycle when
    /// another writer replaced it; without, the caller checks later ([`EnsureReport::written`]).
    pub async fn ensure_signed(
        &self,
        lock: &SignatureLock,
        image: &ImageRef,
        digest: &str,
        wanted: &[Wanted],
        keep: &[PublicKey],
        check_after_write: bool,
    ) -> Result<EnsureReport, SignatureWriteError> {
        let mut none = FirstReads::default();
        self.ensure_signed_from(
            lock,
            image,
            digest,
            wanted,
            keep,
            check_after_write,
            &mut none,
        )
        .await
    }

    /// [`Self::ensure_signed`], starting from a read of the `.sig` that the caller made while
    /// holding `lock` (the signer reads it while it checks the manifest, saving a round trip
    /// per event); later attempts read again.
    #[allow(clippy::too_many_arguments)]
    pub async fn ensure_signed_from(
        &self,
        lock: &SignatureLock,
        image: &ImageRef,
        digest: &str,
        wanted: &[Wanted],
        keep: &[PublicKey],
        check_after_write: bool,
        first: &mut FirstReads,
    ) -> Result<EnsureReport, SignatureWriteError> {
        let asked = lock_key(image, digest);
        if lock.key != asked {
            return Err(SignatureWriteError::WrongLock {
                asked,
                held: lock.key.clone(),
            });
        }
        let mut report = EnsureReport::default();
        let mut added = vec![false; wanted.len()];
        for _ in 0..WRITE_ATTEMPTS {
            let read = match first.sig.take() {
                Some(read) => read?,
                None => self.read(image, digest).await?,
            };
            report.skipped = read.set.skipped.clone();
            let missing: Vec<usize> = (0..wanted.len())
                .filter(|&i| {
                    !already_signed(
                        &read.set.signatures,
                        image,
                        digest,
                        wanted[i].signature_type,
                        wanted[i].key.public_key(),
                    )
                })
                .collect();
            if missing.is_empty() {
                report.outcomes = outcomes(&added);
                return Ok(report);
            }
            let mut new = Vec::with_capacity(missing.len());
            for &i in &missing {
                let w = &wanted[i];
                let payload =
                    signature::build_payload(image, digest, w.signature_type, &w.annotations)?;
                let (payload, signature_bytes) = sign_payload(&w.key, payload)
                    .await
                    .map_err(|cause| SignatureWriteError::Signing { index: i, cause })?;
                let layer = Descriptor::for_signature(&payload, &signature_bytes, &BTreeMap::new());
                new.push((payload, layer));
            }
            let mut keys: Vec<PublicKey> = keep.to_vec();
            keys.extend(wanted.iter().map(|w| w.key.public_key().clone()));
            let (kept, compaction) = compact_if_full(&read, digest, new.len(), image, &keys);
            if let Some(c) = compaction {
                tracing::warn!(
                    image = %image.with_digest(digest),
                    dropped = c.dropped,
                    kept = c.kept,
                    "signature manifest full: dropped layers no configured key verifies"
                );
                report.compaction = Some(c);
            }
            let written = self.write(image, digest, &kept, &new).await?;
            for &i in &missing {
                added[i] = true;
            }
            let written = WrittenTag {
                tag: signature_tag(image, digest)?,
                digest: written,
            };
            let still = !check_after_write || self.still_written(image, &written).await?;
            report.written = Some(written);
            if still {
                report.outcomes = outcomes(&added);
                return Ok(report);
            }
            report.overwritten += 1;
            tracing::info!(
                image = %image.with_digest(digest),
                "another writer replaced the signature manifest; checking again"
            );
        }
        Err(SignatureWriteError::Contended(
            image.with_digest(digest).to_string(),
        ))
    }

    /// Pushes the payload blobs of `added` (and the empty config, once per repository), then the
    /// manifest holding `existing` followed by them; returns the manifest's digest.
    async fn write(
        &self,
        image: &ImageRef,
        digest: &str,
        existing: &[Descriptor],
        added: &[(Vec<u8>, Descriptor)],
    ) -> Result<String, SignatureWriteError> {
        let repo = image.with_tag("latest");
        let mut layers = existing.to_vec();
        layers.extend(added.iter().map(|(_, layer)| layer.clone()));
        let manifest = signature_manifest(&layers)?;
        // The blobs are independent: upload them at once, the manifest only after all of them.
        // The payloads are new (a payload re-uploaded is harmless): no existence check first.
        let payloads = try_join_all(
            added
                .iter()
                .map(|(payload, _)| self.client.push_new_blob(&repo, payload)),
        );
        tokio::try_join!(payloads, self.ensure_empty_config(&repo))?;
        let tagged = image.with_tag(&signature_tag(image, digest)?);
        // `push_manifest` checks the `Docker-Content-Digest` answered against the bytes sent.
        Ok(self
            .put_naming_empty_config(&repo, || {
                self.client
                    .push_manifest(&tagged, &manifest, OCI_MANIFEST_MEDIA_TYPE)
            })
            .await?)
    }

    /// Whether the tag of `written` (in `image`'s repository) still names the manifest written
    /// (one HEAD). An error answer reads as "changed" (the caller then reads the tag again):
    /// distribution 2.8 answers 500 to a request for a tag another writer is replacing.
    pub async fn still_written(
        &self,
        image: &ImageRef,
        written: &WrittenTag,
    ) -> Result<bool, RegistryError> {
        match self
            .client
            .current_digest(&image.with_tag(&written.tag))
            .await
        {
            Ok(now) => Ok(now.is_some_and(|now| now.eq_ignore_ascii_case(&written.digest))),
            Err(RegistryError::BadResponse { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }
}

/// The `.sig` manifest signet writes for `layers`: cosign's layout (an OCI image manifest, one
/// simple-signing layer per signature) with the fixed config `{}` (media type
/// `application/vnd.oci.image.config.v1+json`) instead of one listing the layers, so that the
/// config is put once per repository and not uploaded with every signature (see the module
/// documentation for why verifiers do not mind).
fn signature_manifest(layers: &[Descriptor]) -> Result<Vec<u8>, SignatureError> {
    serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST_MEDIA_TYPE,
        "config": {
            "mediaType": OCI_CONFIG_MEDIA_TYPE,
            "size": EMPTY_CONFIG.len(),
            "digest": super::sha256_digest(EMPTY_CONFIG),
        },
        "layers": layers,
    }))
    .map_err(|e| SignatureError::MalformedManifest(e.to_string()))
}

pub(super) fn lock_key(image: &ImageRef, digest: &str) -> String {
    format!("{}@{}", image.repo_path(), digest.to_ascii_lowercase())
}

fn outcomes(added: &[bool]) -> Vec<AppendOutcome> {
    added
        .iter()
        .map(|&a| {
            if a {
                AppendOutcome::Added
            } else {
                AppendOutcome::AlreadyPresent
            }
        })
        .collect()
}

/// The simple-signing layers to keep when `adding` more are written. Other media types are
/// dropped on every rewrite (signet writes simple-signing manifests only). Past the cap, only
/// layers read and verifying for `digest` under one of `keys` stay, the newest when still full.
fn compact_if_full(
    read: &ReadLayers,
    digest: &str,
    adding: usize,
    image: &ImageRef,
    keys: &[PublicKey],
) -> (Vec<Descriptor>, Option<Compaction>) {
    let existing: Vec<Descriptor> = read
        .layers
        .iter()
        .filter(|l| l.media_type == SIMPLE_SIGNING_MEDIA_TYPE)
        .cloned()
        .collect();
    if existing.len() + adding <= MAX_SIGNATURE_LAYERS {
        return (existing, None);
    }
    // `Simple`: the key and the digest decide here; a layer for another tag of the same digest
    // is a real signature worth keeping.
    let mut kept: Vec<Descriptor> = read
        .read_index
        .iter()
        .zip(&read.set.signatures)
        .filter(|(_, stored)| {
            check_signature(stored, image, digest, SignatureType::Simple, keys).is_ok()
        })
        .map(|(&i, _)| read.layers[i].clone())
        .collect();
    let room = MAX_SIGNATURE_LAYERS.saturating_sub(adding);
    if kept.len() > room {
        kept.drain(..kept.len() - room);
    }
    let compaction = Compaction {
        dropped: existing.len() - kept.len(),
        kept: kept.len(),
    };
    (kept, Some(compaction))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sig_manifest_names_the_fixed_config_whatever_its_layers() {
        let one = Descriptor::for_signature(b"payload one", b"sig", &BTreeMap::new());
        let two = Descriptor::for_signature(b"payload two", b"sig", &BTreeMap::new());
        let configs: Vec<serde_json::Value> = [vec![one.clone()], vec![one.clone(), two.clone()]]
            .iter()
            .map(|layers| {
                let doc: serde_json::Value =
                    serde_json::from_slice(&signature_manifest(layers).unwrap()).unwrap();
                assert_eq!(doc["layers"].as_array().unwrap().len(), layers.len());
                doc["config"].clone()
            })
            .collect();
        assert_eq!(configs[0], configs[1]);
        assert_eq!(configs[0]["mediaType"], OCI_CONFIG_MEDIA_TYPE);
        assert_eq!(configs[0]["size"], 2);
        assert_eq!(
            configs[0]["digest"],
            "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
        );
        let layers =
            signature::parse_manifest_layers(&signature_manifest(&[one, two]).unwrap()).unwrap();
        assert_eq!(
            layers[1].digest,
            super::super::sha256_digest(b"payload two")
        );
    }
}
