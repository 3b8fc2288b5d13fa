//! Reading the referrer signatures of a digest: the referrers classified as Sigstore bundles or
//! Notation signatures (see [`super::referrers`]), their layers fetched within one shared blob
//! budget, smallest first. They are checked later, by the format layer (`signature::bundle`,
//! `signature::notation`).
//!
//! A Notation payload must name the admitted manifest's media type and size as well as its
//! digest. A resolution by [`super::RegistryClient::resolve_manifest`] (admission, `verify`)
//! fetched the manifest and remembers them; otherwise (a pinned digest, or long after) the
//! manifest is fetched once by digest here, and only when a Notation signature is present.
//!
//! With trust anchors given ([`SignatureStore::fetch_signatures_trusting`]: `verify
//! --certificate`), a Notation signature whose `io.cncf.notary.x509chain.thumbprint#S256`
//! annotation names none of them is skipped before its envelope is fetched (and counted,
//! `untrusted_chain`); the annotation is checked against the chain (`verify_notation`) for
//! those read. Admission reads for every policy at once and passes none.
//!
//! Registry requests of a cold read (distribution 2.8, no referrers API): `GET
//! manifests/sha256-<hex>` (the fallback index; the referrers API is asked first once per
//! registry and 10 minutes), then per signature referrer `GET manifests/sha256:<d>` and `GET
//! blobs/sha256:<d>` (its one layer).

use super::SignatureStore;
use super::budget::{SkipReason, SkippedLayers};
use super::error::RegistryError;
use super::referrers::{BlobBudget, IndexEntry, ReferrerKind, ReferrersSource};
use crate::crypto::x509::TrustStore;
use crate::reference::ImageRef;
use crate::signature::notation::{may_reach, parse_signature_manifest};
use crate::signature::{Descriptor, NotationStored, StoredSignature};

/// The bundles found for one digest, and what discovery found around them.
#[derive(Clone, Debug)]
pub(crate) struct BundleRead {
    /// One per bundle layer read, in the referrers' order.
    pub(crate) signatures: Vec<StoredSignature>,
    /// Referrers and index entries not read, and bundle layers over budget or unreadable.
    pub(crate) skipped: SkippedLayers,
    /// Distinct blobs fetched.
    pub(crate) blobs_fetched: usize,
    /// Bytes of those blobs.
    pub(crate) bytes_fetched: u64,
    /// Where the referrers were listed, and the entries (a writer of the fallback index starts
    /// from them instead of reading the index again under the same lock).
    pub(crate) source: ReferrersSource,
    /// The index entries as listed.
    pub(crate) entries: Vec<IndexEntry>,
    /// A referrer or its layer not read because the registry failed (see
    /// [`super::referrers::Referrers::transient_failure`]).
    pub(crate) transient_failure: Option<String>,
}

impl SignatureStore {
    /// The bundles and Notation signatures attached to `digest` in `image`'s repository, read
    /// within budget. With `notation_trust`, Notation signatures whose thumbprints reach none of
    /// those anchors are skipped unread.
    pub(crate) async fn read_bundles(
        &self,
        image: &ImageRef,
        digest: &str,
        notation_trust: Option<&[&TrustStore]>,
    ) -> Result<BundleRead, RegistryError> {
        let referrers = self.referrers(image, digest).await?;
        let mut skipped = referrers.skipped.clone();
        let reachable = |manifest: &[u8]| match (notation_trust, parse_signature_manifest(manifest))
        {
            (Some(trust), Ok(parsed)) => trust.iter().any(|t| may_reach(&parsed, t)),
            // Unparsed here: `verify_notation` says why.
            _ => true,
        };
        let mut untrusted = 0;
        // (layer, the signature manifest for a Notation signature), smallest first.
        let notation_kind = ReferrerKind::NotationSignature {
            envelope_media_type: String::new(),
        };
        let mut layers: Vec<(Descriptor, Option<&[u8]>)> = referrers
            .of_kind(&ReferrerKind::SigstoreBundle)
            .filter_map(|r| r.layer.clone().map(|l| (l, None)))
            .chain(
                referrers
                    .of_kind(&notation_kind)
                    .filter(|r| {
                        let keep = reachable(&r.manifest);
                        untrusted += usize::from(!keep);
                        keep
                    })
                    .filter_map(|r| r.layer.clone().map(|l| (l, Some(r.manifest.as_slice())))),
            )
            .collect();
        skipped.add(SkipReason::UntrustedChain, untrusted);
        layers.sort_by_key(|(l, _)| l.size);
        layers.dedup_by(|a, b| a.0.digest == b.0.digest);
        let target = if layers.iter().any(|(_, m)| m.is_some()) {
            self.target_descriptor(image, digest).await?
        } else {
            None
        };
        let mut budget = BlobBudget::default();
        let mut read = BundleRead {
            signatures: Vec::with_capacity(layers.len()),
            skipped: SkippedLayers::default(),
            blobs_fetched: 0,
            bytes_fetched: 0,
            source: referrers.source,
            entries: referrers.entries.clone(),
            transient_failure: referrers.transient_failure.clone(),
        };
        for (layer, notation_manifest) in &layers {
            let notation = match (notation_manifest, &target) {
                (None, _) => None,
                (Some(manifest), Some((media_type, size))) => Some(NotationStored {
                    manifest: manifest.to_vec(),
                    target_media_type: media_type.clone(),
                    target_size: *size,
                }),
                // The manifest vanished between the resolution and now: nothing to sign.
                (Some(_), None) => {
                    skipped.add(SkipReason::Unreadable, 1);
                    continue;
                }
            };
            match self.referrer_blob(image, layer, &mut budget).await {
                Ok(Some(bytes)) => {
                    read.blobs_fetched += 1;
                    read.bytes_fetched += bytes.len() as u64;
                    read.signatures.push(match notation {
                        Some(n) => StoredSignature::notation(bytes, n),
                        None => StoredSignature::bundle(bytes),
                    });
                }
                Ok(None) => skipped.add(SkipReason::OverBudget, 1),
                Err(e) if e.is_unreachable() || matches!(e, RegistryError::Unauthorized { .. }) => {
                    return Err(e);
                }
                Err(e) => {
                    tracing::debug!(error = %e, "referrer signature layer unreadable; skipped");
                    if super::referrers::is_transient(&e) {
                        read.transient_failure = Some(e.to_string());
                    }
                    skipped.add(SkipReason::Unreadable, 1);
                }
            }
        }
        read.skipped = skipped;
        Ok(read)
    }

    /// The media type and size of the manifest `digest` names (fetched by digest, so the size
    /// is that of the bytes hashing to it); `None` when the registry no longer has it.
    async fn target_descriptor(
        &self,
        image: &ImageRef,
        digest: &str,
    ) -> Result<Option<(String, u64)>, RegistryError> {
        if let Some(known) =
            self.client
                .known_descriptor(image.registry(), image.repository(), digest)
        {
            return Ok(Some(known));
        }
        let fetched = self
            .client
            .fetch_manifest(&image.with_digest(digest))
            .await?;
        Ok(fetched.map(|m| (m.media_type, m.bytes.len() as u64)))
    }
}
