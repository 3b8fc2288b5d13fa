//! Writing Sigstore bundles as cosign v3 writes them: the empty config blob, the bundle layer,
//! and a manifest with `artifactType` and `subject`, pushed by digest. A registry that indexes
//! referrers itself says so with `OCI-Subject` in its answer; otherwise the fallback index at
//! `sha256-<hex>` is updated read-modify-write under the per-digest lock (the caller's
//! [`SignatureLock`]), starting from the index read under that lock, never listing an entry
//! twice. A concurrent writer in another process may replace the index a moment later: after
//! twice as long as the write took (at least 100 ms), one HEAD compares the tag's digest with the
//! index written, and only when it changed is the index read again and repaired (or the caller
//! does that check later itself, as the signer's recheck does, from
//! [`BundleReport::index_written`]). [`SignatureStore::add_to_fallback_index`] is the one index
//! update, for every referrer writer (it takes the descriptors to add).
//!
//! Idempotent: a bundle by the same key naming the same identity already attached means
//! nothing is written (the same [`already_signed`] rule as the `.sig` path). The decision is
//! made only from a complete read: a referrer listed but not readable because the registry
//! failed (5xx, timeout) makes the write fail and be retried, rather than push a second bundle
//! and count it.
//!
//! The empty config blob is put once per repository this store writes to (the `.sig` and
//! Notation writers name the same blob, so one put serves every format): the first time in a
//! registry by an upload, then by mounting it from a repository known to hold it (one request,
//! `POST ?mount=&from=`; a registry that does not mount answers with an upload whose PUT carries
//! the two bytes, so nothing is lost by asking). Concurrent writers in one repository wait for
//! the one put in flight. A manifest refused because the repository lost the blob
//! (`MANIFEST_BLOB_UNKNOWN`) makes the store put it again and push the manifest once more.
//!
//! Registry requests of one bundle for an image not yet signed (distribution 2.8: no referrers
//! API, no single-request upload; seen in tests/registry_cost.rs through a recording proxy):
//! `GET manifests/sha256-<hex>` (the fallback index, 404), `POST`+`PUT blobs/uploads/` for the
//! bundle, the empty config (nothing in a repository this store wrote to, else one mounting
//! `POST`), `PUT manifests/sha256:<d>` (the bundle manifest, by digest), `PUT
//! manifests/sha256-<hex>` (the index): 5 (6 in a new repository), and one `HEAD` of the index
//! for the check after the write (or the signer's recheck). The referrers API is asked once per
//! registry and 10 minutes (a registry without it is remembered, see `referrers.rs`). Where the
//! registry takes one-request uploads and indexes referrers itself (its answer carries
//! `OCI-Subject`): the referrers API, the bundle's `POST`, the manifest `PUT`: 3, no index and no
//! check.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use super::bundle_read::BundleRead;
use super::operations::PushedManifest;

use super::SignatureStore;
use super::cosign_write::{
    AppendOutcome, FirstReads, SignatureLock, SignatureWriteError, WRITE_ATTEMPTS, Wanted,
    WrittenTag, already_signed, lock_key, sign_payload,
};
use super::error::RegistryError;
use super::referrers::{
    IndexEntry, OCI_EMPTY_MEDIA_TYPE, ReferrersSource, build_index, fallback_tag,
};
use super::{OCI_INDEX_MEDIA_TYPE, OCI_MANIFEST_MEDIA_TYPE, sha256_digest};
use crate::reference::ImageRef;
use crate::signature::SignatureError;
use crate::signature::bundle::{
    BUNDLE_MEDIA_TYPE, COSIGN_SIGN_PREDICATE, IN_TOTO_PAYLOAD_TYPE, build_bundle, build_statement,
    pae,
};

/// The empty JSON config every manifest signet writes names (bundle, Notation, and the `.sig`).
pub(super) const EMPTY_CONFIG: &[u8] = b"{}";
/// Repositories whose empty config put is remembered (then forgotten all at once).
const MAX_REMEMBERED_REPOSITORIES: usize = 10_000;

/// Longest wait before the fallback index is read again after a write.
const MAX_SETTLE: Duration = Duration::from_secs(1);
/// Referrer manifests this store remembers having pushed (then forgotten all at once).
const MAX_REMEMBERED_REFERRERS: usize = 4096;
/// Reads of the fallback index asked again after an error answer.
const INDEX_READ_RETRIES: usize = 3;
/// Shortest wait before it: scheduling delays on a busy machine exceed a loopback cycle.
const MIN_SETTLE: Duration = Duration::from_millis(100);

/// The manifest a bundle is attached with: media type and size of the signed image's manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubjectManifest {
    /// The signed manifest's media type.
    pub media_type: String,
    /// The signed manifest's size in bytes.
    pub size: u64,
}

/// What [`SignatureStore::ensure_bundles`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BundleReport {
    /// One per wanted signature, in order.
    pub outcomes: Vec<AppendOutcome>,
    /// Digests of the bundle manifests pushed.
    pub pushed: Vec<String>,
    /// The registry indexed the referrers itself (`OCI-Subject`): no fallback index written.
    pub indexed_by_registry: bool,
    /// Times the fallback index had lost an entry of this writer's to a concurrent writer and
    /// was repaired.
    pub repaired: usize,
    /// The fallback index this call wrote last: a later check compares the tag's digest with it
    /// (one HEAD).
    pub index_written: Option<WrittenTag>,
}

/// What [`SignatureStore::add_to_fallback_index`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IndexUpdate {
    /// Times the index had lost an entry to a concurrent writer and was repaired.
    pub repaired: usize,
    /// The index written last (none when every entry was already listed).
    pub written: Option<WrittenTag>,
}

/// The manifest of one bundle layer, as cosign v3 writes it.
fn bundle_manifest(
    bundle: &[u8],
    subject_digest: &str,
    subject: &SubjectManifest,
) -> Result<(Vec<u8>, BTreeMap<String, String>), SignatureError> {
    let created = format!("{:.0}", k8s_openapi::jiff::Timestamp::now());
    let annotations = BTreeMap::from([
        (
            "dev.sigstore.bundle.content".to_string(),
            "dsse-envelope".to_string(),
        ),
        (
            "dev.sigstore.bundle.predicateType".to_string(),
            COSIGN_SIGN_PREDICATE.to_string(),
        ),
        ("org.opencontainers.image.created".to_string(), created),
    ]);
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST_MEDIA_TYPE,
        "artifactType": BUNDLE_MEDIA_TYPE,
        "config": {
            "mediaType": OCI_EMPTY_MEDIA_TYPE,
            "digest": sha256_digest(EMPTY_CONFIG),
            "size": EMPTY_CONFIG.len(),
        },
        "layers": [{
            "mediaType": BUNDLE_MEDIA_TYPE,
            "digest": sha256_digest(bundle),
            "size": bundle.len(),
        }],
        "subject": {
            "mediaType": subject.media_type,
            "digest": subject_digest,
            "size": subject.size,
        },
        "annotations": annotations,
    }))
    .map_err(|e| SignatureError::MalformedManifest(e.to_string()))?;
    Ok((manifest, annotations))
}

impl SignatureStore {
    /// Makes sure a bundle by each of `wanted` is attached to `digest` in `image`'s repository
    /// (its tag bound for `Default`), writing only the missing ones. `subject` is the signed
    /// manifest's media type and size when the caller knows them (a push event does), else
    /// one HEAD asks. With `check_after_write`, the fallback index is read again after a short
    /// wait and repaired if a writer in another process replaced it; without, the caller
    /// checks later itself (the signer's recheck does), and the write answers sooner.
    pub async fn ensure_bundles(
        &self,
        lock: &SignatureLock,
        image: &ImageRef,
        digest: &str,
        subject: Option<SubjectManifest>,
        wanted: &[Wanted],
        check_after_write: bool,
    ) -> Result<BundleReport, SignatureWriteError> {
        let mut none = FirstReads::default();
        self.ensure_bundles_from(
            lock,
            image,
            digest,
            subject,
            wanted,
            check_after_write,
            &mut none,
        )
        .await
    }

    /// [`Self::ensure_bundles`], starting from the read of the referrers to write beside that the
    /// caller got while holding `lock` and before any other referrer write under it (the signer
    /// reads while it checks the manifest, saving a round trip per event).
    #[allow(clippy::too_many_arguments)]
    pub async fn ensure_bundles_from(
        &self,
        lock: &SignatureLock,
        image: &ImageRef,
        digest: &str,
        subject: Option<SubjectManifest>,
        wanted: &[Wanted],
        check_after_write: bool,
        first: &mut FirstReads,
    ) -> Result<BundleReport, SignatureWriteError> {
        let read = match first.take_bundles() {
            Some(read) => read?,
            None => self.referrers_to_write(lock, image, digest).await?,
        };
        let missing: Vec<usize> = (0..wanted.len())
            .filter(|&i| {
                !already_signed(
                    &read.signatures,
                    image,
                    digest,
                    wanted[i].signature_type,
                    wanted[i].key.public_key(),
                )
            })
            .collect();
        let mut report = BundleReport {
            outcomes: vec![AppendOutcome::AlreadyPresent; wanted.len()],
            ..BundleReport::default()
        };
        if missing.is_empty() {
            return Ok(report);
        }
        let subject = self.subject_manifest(image, digest, subject).await?;
        let repo = image.with_tag("latest");
        // The empty config is put along with the first bundle blob (no order between them: only
        // the manifest needs both).
        let mut config = Some(self.ensure_empty_config(&repo));
        let mut entries = Vec::with_capacity(missing.len());
        let mut all_indexed = true;
        for &i in &missing {
            let w = &wanted[i];
            let statement = build_statement(image, digest, w.signature_type, &w.annotations)?;
            let (_, signature) = sign_payload(&w.key, pae(IN_TOTO_PAYLOAD_TYPE, &statement))
                .await
                .map_err(|cause| SignatureWriteError::Signing { index: i, cause })?;
            let bundle = build_bundle(&statement, &signature, w.key.public_key());
            let (manifest, annotations) = bundle_manifest(&bundle, digest, &subject)?;
            let blob = self.client.push_new_blob(&repo, &bundle);
            match config.take() {
                Some(config) => {
                    tokio::try_join!(config, blob)?;
                }
                None => {
                    blob.await?;
                }
            }
            let pushed = self.push_referrer(image, &manifest).await?;
            all_indexed &= pushed.oci_subject;
            report.outcomes[i] = AppendOutcome::Added;
            report.pushed.push(pushed.digest.clone());
            entries.push(IndexEntry {
                media_type: OCI_MANIFEST_MEDIA_TYPE.to_string(),
                digest: pushed.digest,
                size: manifest.len() as u64,
                artifact_type: Some(BUNDLE_MEDIA_TYPE.to_string()),
                annotations,
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

    /// The referrers already attached to `digest`, read under `lock` (which must be the lock of
    /// `image@digest`) by a writer deciding what is missing.
    pub(crate) async fn referrers_to_write(
        &self,
        lock: &SignatureLock,
        image: &ImageRef,
        digest: &str,
    ) -> Result<BundleRead, SignatureWriteError> {
        let asked = lock_key(image, digest);
        if lock.key() != asked {
            return Err(SignatureWriteError::WrongLock {
                asked,
                held: lock.key().to_string(),
            });
        }
        let read = self.read_bundles(image, digest, None).await?;
        if let Some(why) = &read.transient_failure {
            // Deciding "not signed" from a partial read would push a second signature.
            return Err(RegistryError::bad_response(
                image.registry(),
                &format!("referrers of {}@{digest}", image.repository()),
                format!("a referrer could not be read: {why}"),
            )
            .into());
        }
        Ok(read)
    }

    /// The signed manifest's media type and size: `known` when the caller has them, else asked
    /// with one HEAD.
    pub(super) async fn subject_manifest(
        &self,
        image: &ImageRef,
        digest: &str,
        known: Option<SubjectManifest>,
    ) -> Result<SubjectManifest, RegistryError> {
        if let Some(known) = known {
            return Ok(known);
        }
        let (media_type, size) = self
            .client
            .manifest_descriptor(&image.with_digest(digest))
            .await?
            .ok_or_else(|| RegistryError::NotFound {
                host: image.registry().to_string(),
                what: format!("manifest {}@{digest}", image.repository()),
            })?;
        Ok(SubjectManifest { media_type, size })
    }

    /// Pushes a referrer manifest by digest alone (a tag in the reference would move the image's
    /// tag to it) and remembers it as this store's.
    pub(super) async fn push_referrer(
        &self,
        image: &ImageRef,
        manifest: &[u8],
    ) -> Result<PushedManifest, RegistryError> {
        let by_digest = ImageRef::from_parts(
            image.registry(),
            image.repository(),
            None,
            Some(&sha256_digest(manifest)),
        )
        .map_err(|e| RegistryError::InvalidRequest {
            host: image.registry().to_string(),
            reason: e.to_string(),
        })?;
        // Every referrer signet writes (bundle, Notation) names the empty config.
        let pushed = self
            .put_naming_empty_config(&image.with_tag("latest"), || {
                self.client
                    .push_manifest_answer(&by_digest, manifest, OCI_MANIFEST_MEDIA_TYPE)
            })
            .await?;
        self.remember_referrer(&pushed.digest);
        Ok(pushed)
    }

    /// After a writer pushed `entries`: unless the registry indexed them all itself, adds them
    /// to the fallback index, starting from what `read` (under the same lock) found there.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn index_referrers(
        &self,
        image: &ImageRef,
        digest: &str,
        read: BundleRead,
        entries: Vec<IndexEntry>,
        all_indexed: bool,
        check_after_write: bool,
        report: &mut BundleReport,
    ) -> Result<(), SignatureWriteError> {
        report.indexed_by_registry = all_indexed;
        if all_indexed {
            return Ok(());
        }
        // What was read under this same lock is the index as it stands (unless another process
        // wrote since: the check after the write catches that).
        let known = (read.source == ReferrersSource::FallbackTag
            || read.source == ReferrersSource::None)
            .then_some(read.entries);
        let update = self
            .add_to_fallback_index(image, digest, &entries, known, check_after_write)
            .await?;
        report.repaired = update.repaired;
        report.index_written = update.written;
        Ok(())
    }

    /// Whether this store pushed the referrer manifest `digest` (its push event needs no look).
    pub fn wrote_referrer(&self, digest: &str) -> bool {
        let written = self
            .written_referrers
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        written.contains(&digest.to_ascii_lowercase())
    }

    /// Remembers that this store pushed the referrer manifest `digest` (see
    /// [`SignatureStore::wrote_referrer`]).
    pub(crate) fn remember_referrer(&self, digest: &str) {
        let mut written = self
            .written_referrers
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if written.len() >= MAX_REMEMBERED_REFERRERS {
            written.clear();
        }
        written.insert(digest.to_ascii_lowercase());
    }

    /// Puts the empty config blob into `repo` unless this store already knows it is there:
    /// mounted from another repository of the registry known to hold it, else uploaded. Once
    /// per repository: concurrent writers (the `.sig` and the bundle of one image, written at
    /// once) wait for the one put in flight; a failed put is tried again by the next writer.
    pub(crate) async fn ensure_empty_config(&self, repo: &ImageRef) -> Result<(), RegistryError> {
        let key = repo.repo_path();
        let same_registry = format!("{}/", repo.registry());
        let (put, source) = {
            let mut known = self
                .empty_config_known
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if known.len() > MAX_REMEMBERED_REPOSITORIES {
                known.clear();
            }
            let source = known
                .iter()
                .filter(|(k, put)| put.initialized() && **k != key)
                .find_map(|(k, _)| k.strip_prefix(&same_registry).map(str::to_string));
            (Arc::clone(known.entry(key).or_default()), source)
        };
        put.get_or_try_init(|| async {
            // Two bytes: uploading them again costs less than asking first.
            match source {
                Some(from) => {
                    self.client
                        .mount_or_push_blob(repo, &from, EMPTY_CONFIG)
                        .await
                }
                None => self.client.push_new_blob(repo, EMPTY_CONFIG).await,
            }
            .map(|_| ())
        })
        .await
        .copied()
    }

    /// Forgets that `repo` holds the empty config blob (a manifest naming it was refused).
    fn forget_empty_config(&self, repo: &ImageRef) {
        let mut known = self
            .empty_config_known
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        known.remove(&repo.repo_path());
    }

    /// Pushes a manifest naming the empty config with `put`. The store remembers per repository
    /// that the blob is there; when the registry refuses the manifest for an unknown blob (the
    /// repository was deleted and made again, or its blob link removed), that memory is wrong:
    /// the blob is put again and the manifest once more.
    pub(super) async fn put_naming_empty_config<T, F, Fut>(
        &self,
        repo: &ImageRef,
        put: F,
    ) -> Result<T, RegistryError>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<T, RegistryError>>,
    {
        match put().await {
            Err(e) if names_unknown_blob(&e) => {
                tracing::info!(
                    repository = %repo.repo_path(),
                    "the registry no longer holds the empty config blob here; putting it again"
                );
                self.forget_empty_config(repo);
                self.ensure_empty_config(repo).await?;
                put().await
            }
            other => other,
        }
    }

    /// Read-modify-write of the fallback index of `digest`, adding the referrer descriptors
    /// `ours` (each once, after what is listed). `known` is the index as read under the same
    /// lock (`None`: read it first). With `check_after_write`, looks again after a short wait
    /// (one HEAD compared with the index written) and repairs until every one of `ours` is
    /// listed. The caller holds the digest's [`SignatureLock`].
    pub(crate) async fn add_to_fallback_index(
        &self,
        image: &ImageRef,
        digest: &str,
        ours: &[IndexEntry],
        mut known: Option<Vec<IndexEntry>>,
        check_after_write: bool,
    ) -> Result<IndexUpdate, SignatureWriteError> {
        let tag = fallback_tag(digest).ok_or_else(|| {
            SignatureError::MalformedManifest(format!("not a digest: {digest:?}"))
        })?;
        let index_ref = image.with_tag(&tag);
        let listed = |entries: &[IndexEntry]| {
            ours.iter().all(|o| {
                entries
                    .iter()
                    .any(|e| e.digest.eq_ignore_ascii_case(&o.digest))
            })
        };
        let mut written: Option<WrittenTag> = None;
        for repaired in 0..WRITE_ATTEMPTS {
            let started = Instant::now();
            let mut wrote_now = false;
            // Something unreadable at the tag is replaced by a readable index.
            let mut entries = match known.take() {
                Some(entries) => entries,
                None => match self.fallback_index_retrying(image, digest).await? {
                    Some(Ok(entries)) => entries,
                    _ => Vec::new(),
                },
            };
            if !listed(&entries) {
                for o in ours {
                    if !entries
                        .iter()
                        .any(|e| e.digest.eq_ignore_ascii_case(&o.digest))
                    {
                        entries.push(o.clone());
                    }
                }
                let index = build_index(&entries)
                    .map_err(|e| SignatureError::MalformedManifest(e.to_string()))?;
                let index_digest = self
                    .client
                    .push_manifest(&index_ref, &index, OCI_INDEX_MEDIA_TYPE)
                    .await?;
                written = Some(WrittenTag {
                    tag: tag.clone(),
                    digest: index_digest,
                });
                wrote_now = true;
            }
            // A writer in another process that read before this write may replace the index a
            // moment later: look again after twice as long as this cycle took (within bounds).
            // The write's own answer proves it was stored; only that later look can catch this.
            if !check_after_write {
                return Ok(IndexUpdate { repaired, written });
            }
            let settle = (started.elapsed() * 2).clamp(MIN_SETTLE, MAX_SETTLE);
            tokio::time::sleep(settle).await;
            let unchanged = match (&written, wrote_now) {
                // One HEAD: the index written is still the one at the tag.
                (Some(w), true) => self.still_written(image, w).await?,
                _ => self.still_listed(image, digest, &listed).await?,
            };
            if unchanged {
                return Ok(IndexUpdate { repaired, written });
            }
            tracing::info!(
                image = %image.with_digest(digest),
                "another writer replaced the fallback referrers index; repairing"
            );
        }
        Err(SignatureWriteError::Contended(
            image.with_digest(digest).to_string(),
        ))
    }

    /// The fallback index, asked again (briefly) when the registry answers with an error:
    /// distribution 2.8 answers 500 to a read of a tag another writer is replacing.
    async fn fallback_index_retrying(
        &self,
        image: &ImageRef,
        digest: &str,
    ) -> Result<Option<Result<Vec<IndexEntry>, String>>, RegistryError> {
        let mut attempt = 0;
        loop {
            match self.fallback_index(image, digest).await {
                Err(RegistryError::BadResponse { .. }) if attempt < INDEX_READ_RETRIES => {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                other => return other,
            }
        }
    }

    async fn still_listed(
        &self,
        image: &ImageRef,
        digest: &str,
        listed: &impl Fn(&[IndexEntry]) -> bool,
    ) -> Result<bool, RegistryError> {
        Ok(match self.fallback_index_retrying(image, digest).await? {
            Some(Ok(entries)) => listed(&entries),
            _ => false,
        })
    }
}

/// Whether the registry refused a manifest because a blob it names is not in the repository
/// (`MANIFEST_BLOB_UNKNOWN`, or `BLOB_UNKNOWN` from some registries).
fn names_unknown_blob(e: &RegistryError) -> bool {
    matches!(e, RegistryError::BadResponse { detail, .. } if detail.contains("BLOB_UNKNOWN"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_manifest_is_the_one_cosign_v3_writes() {
        let subject = SubjectManifest {
            media_type: OCI_MANIFEST_MEDIA_TYPE.into(),
            size: 321,
        };
        let d = format!("sha256:{}", "a".repeat(64));
        let (bytes, annotations) = bundle_manifest(b"{\"bundle\":1}", &d, &subject).unwrap();
        let doc: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(doc["artifactType"], BUNDLE_MEDIA_TYPE);
        assert_eq!(doc["config"]["mediaType"], OCI_EMPTY_MEDIA_TYPE);
        assert_eq!(
            doc["config"]["digest"],
            "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
        );
        assert_eq!(doc["layers"][0]["mediaType"], BUNDLE_MEDIA_TYPE);
        assert_eq!(doc["subject"]["digest"], d.as_str());
        assert_eq!(doc["subject"]["size"], 321);
        assert_eq!(
            annotations["dev.sigstore.bundle.predicateType"],
            COSIGN_SIGN_PREDICATE
        );
        let created = &annotations["org.opencontainers.image.created"];
        assert!(
            created.ends_with('Z') && !created.contains('.'),
            "{created}"
        );
        let referrer = super::super::referrers::classify(&bytes, "sha256:x", &d).unwrap();
        assert_eq!(referrer.kind, super::super::ReferrerKind::SigstoreBundle);
    }
}
