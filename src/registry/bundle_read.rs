//! Reading Sigstore bundles of a digest: the referrers classified as bundles (see
//! [`super::referrers`]), their bundle layers fetched within the referrers' blob budget,
//! smallest first. The bundles are checked later, by the format layer (`signature::bundle`).

use super::SignatureStore;
use super::budget::{SkipReason, SkippedLayers};
use super::error::RegistryError;
use super::referrers::{BlobBudget, IndexEntry, ReferrerKind, ReferrersSource};
use crate::reference::ImageRef;
use crate::signature::StoredSignature;

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
}

impl SignatureStore {
    /// The bundles attached to `digest` in `image`'s repository, read within budget.
    pub(crate) async fn read_bundles(
        &self,
        image: &ImageRef,
        digest: &str,
    ) -> Result<BundleRead, RegistryError> {
        let referrers = self.referrers(image, digest).await?;
        let mut skipped = referrers.skipped.clone();
        let mut layers: Vec<_> = referrers
            .of_kind(&ReferrerKind::SigstoreBundle)
            .filter_map(|r| r.layer.clone())
            .collect();
        layers.sort_by_key(|l| l.size);
        layers.dedup_by(|a, b| a.digest == b.digest);
        let mut budget = BlobBudget::default();
        let mut read = BundleRead {
            signatures: Vec::with_capacity(layers.len()),
            skipped: SkippedLayers::default(),
            blobs_fetched: 0,
            bytes_fetched: 0,
            source: referrers.source,
            entries: referrers.entries.clone(),
        };
        for layer in &layers {
            match self.referrer_blob(image, layer, &mut budget).await {
                Ok(Some(bytes)) => {
                    read.blobs_fetched += 1;
                    read.bytes_fetched += bytes.len() as u64;
                    read.signatures.push(StoredSignature::bundle(bytes));
                }
                Ok(None) => skipped.add(SkipReason::OverBudget, 1),
                Err(e) if e.is_unreachable() || matches!(e, RegistryError::Unauthorized { .. }) => {
                    return Err(e);
                }
                Err(e) => {
                    tracing::debug!(error = %e, "bundle layer unreadable; skipped");
                    skipped.add(SkipReason::Unreadable, 1);
                }
            }
        }
        read.skipped = skipped;
        Ok(read)
    }
}
