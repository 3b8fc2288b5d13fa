//! The staged signature read of `signet verify`, the same rule as admission's (see
//! `admission::lookup`): read the store that can settle the verdict first (the `.sig` tag when
//! a key can satisfy, the referrers when only certificate anchors can), and the other store
//! only when the verdict on the first is not settled; then every signature is judged, listed as
//! a full read lists them (`.sig` layers first). A skipped store never makes a verdict fail.

use crate::crypto::x509::TrustStore;
use crate::policy::ReadOrder;
use crate::reference::ImageRef;
use crate::registry::{RegistryError, SignatureSet, SignatureSource, SignatureStore, join_sets};
use crate::signature::SignatureFormat;

/// What a staged read found.
#[derive(Debug)]
pub struct StagedRead {
    /// Every signature read, `.sig` layers first, with what was skipped.
    pub set: SignatureSet,
    /// The stores not read because the first settled the verdict.
    pub unread: Vec<SignatureSource>,
}

impl StagedRead {
    /// The formats of the stores not read, for reports.
    pub fn unread_formats(&self) -> Vec<SignatureFormat> {
        self.unread
            .iter()
            .flat_map(|s| s.formats().iter().copied())
            .collect()
    }
}

/// Reads `digest`'s signatures in `order`: the first store(s), then the rest only when
/// `settled` says the signatures read so far do not settle the verdict. A registry failure in a
/// store read fails the whole read (fail closed, as a full read does).
pub async fn read_staged(
    store: &SignatureStore,
    image: &ImageRef,
    digest: &str,
    order: ReadOrder,
    notation_trust: Option<&[&TrustStore]>,
    settled: impl FnOnce(&SignatureSet) -> bool,
) -> Result<StagedRead, RegistryError> {
    let first = order.first_read();
    let set = store
        .fetch_sources(image, digest, first, notation_trust)
        .await?;
    let rest: Vec<SignatureSource> = SignatureSource::ALL
        .into_iter()
        .filter(|s| !first.contains(s))
        .collect();
    if rest.is_empty() || settled(&set) {
        return Ok(StagedRead { set, unread: rest });
    }
    let more = store
        .fetch_sources(image, digest, &rest, notation_trust)
        .await?;
    let set = if first.contains(&SignatureSource::SigTag) {
        join_sets(set, more)
    } else {
        join_sets(more, set)
    };
    Ok(StagedRead {
        set,
        unread: Vec::new(),
    })
}
