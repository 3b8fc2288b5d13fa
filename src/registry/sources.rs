//! The two places an image's signatures are stored, read one at a time by a staged
//! verification (admission's lookups, `signet verify`): the cheapest first, the other only when
//! the first does not settle the verdict.
//!
//! - [`SignatureSource::SigTag`]: the cosign `sha256-<hex>.sig` tag (legacy simple-signing
//!   signatures): `GET manifests/sha256-<hex>.sig` and one `GET blobs/...` per payload, usually
//!   2 requests (1 when the tag does not exist).
//! - [`SignatureSource::Referrers`]: the OCI 1.1 referrers (Sigstore bundles, Notation
//!   signatures), listed by the referrers API or the fallback index `sha256-<hex>`, then per
//!   signature its manifest and its one layer: 3 requests for one bundle on a registry without
//!   the API (plus the API probe once per registry and 10 minutes).
//!
//! A read is all or nothing for its source: a registry failure fails the read (the caller fails
//! closed), a bad layer is skipped and counted, as in [`SignatureStore::fetch_signatures`].

use serde::Serialize;

use super::budget::SignatureSet;
use super::{RegistryError, SignatureStore};
use crate::crypto::x509::TrustStore;
use crate::reference::ImageRef;
use crate::signature::SignatureFormat;

/// Where a set of signatures is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum SignatureSource {
    /// The `sha256-<hex>.sig` tag: [`SignatureFormat::CosignSignature`].
    SigTag,
    /// The referrers: [`SignatureFormat::SigstoreBundle`] and [`SignatureFormat::Notation`].
    Referrers,
}

impl SignatureSource {
    /// Both sources, in the order a full read lists their signatures (`.sig` layers first).
    pub const ALL: [SignatureSource; 2] = [SignatureSource::SigTag, SignatureSource::Referrers];

    /// The formats stored there.
    pub fn formats(self) -> &'static [SignatureFormat] {
        match self {
            SignatureSource::SigTag => &[SignatureFormat::CosignSignature],
            SignatureSource::Referrers => {
                &[SignatureFormat::SigstoreBundle, SignatureFormat::Notation]
            }
        }
    }

    /// The other source.
    pub fn other(self) -> SignatureSource {
        match self {
            SignatureSource::SigTag => SignatureSource::Referrers,
            SignatureSource::Referrers => SignatureSource::SigTag,
        }
    }

    /// A short name for logs and cache keys.
    pub fn as_str(self) -> &'static str {
        match self {
            SignatureSource::SigTag => "sig_tag",
            SignatureSource::Referrers => "referrers",
        }
    }
}

impl SignatureStore {
    /// The signatures of `digest` stored at `source`, read within the budgets. With
    /// `notation_trust`, Notation signatures whose chains name none of those anchors are
    /// skipped unread (see [`SignatureStore::fetch_signatures_trusting`]).
    pub async fn fetch_source(
        &self,
        image: &ImageRef,
        digest: &str,
        source: SignatureSource,
        notation_trust: Option<&[&TrustStore]>,
    ) -> Result<SignatureSet, RegistryError> {
        match source {
            SignatureSource::SigTag => Ok(self.read(image, digest).await?.set),
            SignatureSource::Referrers => {
                let read = self.read_bundles(image, digest, notation_trust).await?;
                Ok(SignatureSet {
                    signatures: read.signatures,
                    skipped: read.skipped,
                    blobs_fetched: read.blobs_fetched,
                    bytes_fetched: read.bytes_fetched,
                })
            }
        }
    }
}

/// `first` then `second`, as one set (the skipped counts and fetch figures added).
pub fn join_sets(mut first: SignatureSet, second: SignatureSet) -> SignatureSet {
    first.signatures.extend(second.signatures);
    for (reason, n) in second.skipped.iter() {
        first.skipped.add(reason, n);
    }
    first.blobs_fetched += second.blobs_fetched;
    first.bytes_fetched += second.bytes_fetched;
    first
}

impl SignatureStore {
    /// The signatures stored at each of `sources`, read at once and listed as a full read lists
    /// them (`.sig` layers first); the first registry failure fails the read.
    pub async fn fetch_sources(
        &self,
        image: &ImageRef,
        digest: &str,
        sources: &[SignatureSource],
        notation_trust: Option<&[&TrustStore]>,
    ) -> Result<SignatureSet, RegistryError> {
        let mut sorted = sources.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        let reads = sorted
            .iter()
            .map(|&source| self.fetch_source(image, digest, source, notation_trust));
        let mut set = SignatureSet::default();
        for read in futures::future::join_all(reads).await {
            set = join_sets(set, read?);
        }
        Ok(set)
    }
}
