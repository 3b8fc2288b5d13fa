//! Budgets for reading signatures: which layers of a `.sig` manifest are worth fetching, and how
//! much one lookup may hold.
//!
//! Whoever can push to a repository can write its `.sig` tags, so the manifest is attacker input.
//! Capping the number of layers is not enough (128 layers naming one 1 MiB blob made the webhook
//! hold 128 MiB per image). Here every layer is judged by its descriptor before anything is
//! fetched: its media type, its signature annotation, its declared size. The layers that could
//! be signatures are taken smallest first (a simple-signing payload is a few hundred bytes, so
//! junk padded to crowd out real signatures goes last) until the byte budget is spent; each
//! distinct blob is then fetched once. Everything left out is counted by reason, so a caller can
//! say why an image has no valid signature instead of failing open or growing.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::LazyLock;

use serde::Serialize;
use tokio::sync::Semaphore;

use super::LookupFailure;
use crate::signature::{Descriptor, SIMPLE_SIGNING_MEDIA_TYPE, StoredSignature};

/// Largest payload (plus its decoded signature) read for one layer. A simple-signing payload is
/// a few hundred bytes, a few KiB with annotations; a layer declaring more is skipped unfetched.
pub const MAX_SIGNATURE_PAYLOAD: u64 = 64 * 1024;

/// Bytes (payloads plus signatures) one lookup may hold. Well above what
/// [`MAX_SIGNATURE_LAYERS`] honest signatures need (128 x 2 KiB), far below what an attacker
/// could otherwise make a webhook hold per image.
pub const SIGNATURE_READ_BUDGET: u64 = 256 * 1024;

/// Layers of one `.sig` manifest considered as signature candidates; the rest are skipped.
/// Judging a descriptor costs no fetch, so this is generous: the byte budget is the real bound.
pub const MAX_SIGNATURE_DESCRIPTORS: usize = 1024;

/// Most layers signet writes into one `.sig` manifest. A write that would pass it compacts the
/// manifest first (drops layers no configured key verifies), so junk cannot grow it for ever.
pub const MAX_SIGNATURE_LAYERS: usize = 128;

/// Signature blob fetches in flight across the whole process (every lookup shares them), so a
/// burst of admissions cannot open thousands of concurrent downloads.
pub const MAX_CONCURRENT_BLOB_FETCHES: usize = 32;

/// Blob fetches in flight for one lookup, so one image cannot take every process-wide permit.
pub(crate) const FETCHES_PER_LOOKUP: usize = 8;

/// The process-wide permits for blob fetches.
pub(crate) static BLOB_FETCHES: LazyLock<Semaphore> =
    LazyLock::new(|| Semaphore::new(MAX_CONCURRENT_BLOB_FETCHES));

/// Why a layer of a `.sig` manifest was not read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SkipReason {
    /// Not a simple-signing layer (another media type).
    ForeignMediaType,
    /// No signature annotation (or not base64): it could never verify.
    Unsigned,
    /// Declared size plus signature above [`MAX_SIGNATURE_PAYLOAD`]; not fetched.
    OverPayloadCap,
    /// Past [`MAX_SIGNATURE_DESCRIPTORS`] candidates.
    TooManyLayers,
    /// Would have taken the lookup past [`SIGNATURE_READ_BUDGET`]; not fetched.
    OverBudget,
    /// The blob could not be read: missing, larger than declared, or not matching its digest.
    Unreadable,
    /// The `.sig` manifest itself is not an image manifest (counted once).
    MalformedManifest,
    /// A Notation signature whose thumbprint annotation names none of the trust anchors being
    /// checked: its chain cannot reach them, so its envelope is not fetched.
    UntrustedChain,
}

impl SkipReason {
    /// Lower snake case, for logs and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            SkipReason::ForeignMediaType => "foreign_media_type",
            SkipReason::Unsigned => "unsigned",
            SkipReason::OverPayloadCap => "over_payload_cap",
            SkipReason::TooManyLayers => "too_many_layers",
            SkipReason::OverBudget => "over_budget",
            SkipReason::Unreadable => "unreadable",
            SkipReason::MalformedManifest => "malformed_manifest",
            SkipReason::UntrustedChain => "untrusted_chain",
        }
    }

    /// Whether skipping for this reason means a signature may have been missed (as opposed to a
    /// layer that could not have been a signature at all).
    pub fn may_hide_signature(self) -> bool {
        !matches!(
            self,
            SkipReason::ForeignMediaType | SkipReason::Unsigned | SkipReason::UntrustedChain
        )
    }

    fn describe(self) -> String {
        match self {
            SkipReason::ForeignMediaType => "not a simple-signing layer".into(),
            SkipReason::Unsigned => "no signature annotation".into(),
            SkipReason::OverPayloadCap => {
                format!("payload over the {MAX_SIGNATURE_PAYLOAD}-byte cap")
            }
            SkipReason::TooManyLayers => {
                format!("more than {MAX_SIGNATURE_DESCRIPTORS} candidate layers")
            }
            SkipReason::OverBudget => {
                format!("over the {SIGNATURE_READ_BUDGET}-byte budget of a lookup")
            }
            SkipReason::Unreadable => "blob unreadable".into(),
            SkipReason::MalformedManifest => "the signature manifest is malformed".into(),
            SkipReason::UntrustedChain => {
                "Notation certificate chain naming none of the trust anchors".into()
            }
        }
    }
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How many layers were skipped, per reason.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct SkippedLayers {
    counts: BTreeMap<SkipReason, usize>,
}

impl SkippedLayers {
    /// Layers skipped for `reason`.
    pub fn count(&self, reason: SkipReason) -> usize {
        self.counts.get(&reason).copied().unwrap_or(0)
    }

    /// Layers skipped in all.
    pub fn total(&self) -> usize {
        self.counts.values().sum()
    }

    /// True when no layer was skipped.
    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }

    /// `(reason, count)` pairs, in a fixed order.
    pub fn iter(&self) -> impl Iterator<Item = (SkipReason, usize)> + '_ {
        self.counts.iter().map(|(r, n)| (*r, *n))
    }

    /// Whether a layer that might have been a valid signature went unread.
    pub fn may_hide_signature(&self) -> bool {
        self.counts.keys().any(|r| r.may_hide_signature())
    }

    pub(crate) fn add(&mut self, reason: SkipReason, n: usize) {
        if n > 0 {
            *self.counts.entry(reason).or_default() += n;
        }
    }
}

/// `3 layers skipped: payload over the 65536-byte cap; 1 layer skipped: blob unreadable`.
impl fmt::Display for SkippedLayers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for (reason, n) in self.iter() {
            if !first {
                f.write_str("; ")?;
            }
            first = false;
            let noun = if n == 1 { "layer" } else { "layers" };
            write!(f, "{n} {noun} skipped: {}", reason.describe())?;
        }
        Ok(())
    }
}

/// What reading the signatures of one digest found, within the budgets.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SignatureSet {
    /// The signatures read, in manifest order.
    pub signatures: Vec<StoredSignature>,
    /// The layers not read, by reason.
    pub skipped: SkippedLayers,
    /// Distinct blobs fetched from the registry.
    pub blobs_fetched: usize,
    /// Bytes of those blobs.
    pub bytes_fetched: u64,
}

impl SignatureSet {
    /// Bytes held by the signatures (payloads and signatures): what a cache entry weighs.
    pub fn held_bytes(&self) -> u64 {
        held_bytes(&self.signatures)
    }

    /// Why there is nothing to verify although the manifest had layers: `Some` when no
    /// signature was read and a layer that might have been one was skipped.
    pub fn unread_failure(&self) -> Option<LookupFailure> {
        (self.signatures.is_empty() && self.skipped.may_hide_signature()).then(|| {
            LookupFailure::OverBudget {
                skipped: self.skipped.clone(),
            }
        })
    }
}

/// Bytes held by `signatures` (payloads and signatures).
pub fn held_bytes(signatures: &[StoredSignature]) -> u64 {
    signatures
        .iter()
        .map(|s| (s.payload.len() + s.signature.as_ref().map_or(0, Vec::len)) as u64)
        .sum()
}

/// Which layers to read: indexes into the manifest's layers, in manifest order, and what was
/// left out. Nothing here touches the network.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct ReadPlan {
    /// Indexes of the layers to read, ascending.
    pub selected: Vec<usize>,
    /// The layers left out.
    pub skipped: SkippedLayers,
}

impl ReadPlan {
    /// Judges every descriptor, then spends the budget on the cheapest candidates first.
    pub(crate) fn new(layers: &[Descriptor]) -> Self {
        let mut skipped = SkippedLayers::default();
        // (cost, index) of each layer that could be a signature.
        let mut candidates: Vec<(u64, usize)> = Vec::new();
        for (index, layer) in layers.iter().enumerate() {
            if layer.media_type != SIMPLE_SIGNING_MEDIA_TYPE {
                skipped.add(SkipReason::ForeignMediaType, 1);
                continue;
            }
            if crate::reference::normalise_digest(&layer.digest).is_none() {
                skipped.add(SkipReason::Unreadable, 1);
                continue;
            }
            let Some(signature) = layer.signature() else {
                skipped.add(SkipReason::Unsigned, 1);
                continue;
            };
            let cost = layer.size.saturating_add(signature.len() as u64);
            if layer.size > MAX_SIGNATURE_PAYLOAD || cost > MAX_SIGNATURE_PAYLOAD {
                skipped.add(SkipReason::OverPayloadCap, 1);
                continue;
            }
            candidates.push((cost, index));
        }
        // Smallest first; equal sizes keep manifest order. Real payloads are small, so junk
        // has to be at least as small and numerous to crowd them out of the budget.
        candidates.sort_unstable();
        if candidates.len() > MAX_SIGNATURE_DESCRIPTORS {
            skipped.add(
                SkipReason::TooManyLayers,
                candidates.len() - MAX_SIGNATURE_DESCRIPTORS,
            );
            candidates.truncate(MAX_SIGNATURE_DESCRIPTORS);
        }
        let mut spent = 0u64;
        let mut selected = Vec::with_capacity(candidates.len());
        for (n, (cost, index)) in candidates.iter().enumerate() {
            if spent + cost > SIGNATURE_READ_BUDGET {
                // Sorted by cost: nothing after this one fits either.
                skipped.add(SkipReason::OverBudget, candidates.len() - n);
                break;
            }
            spent += cost;
            selected.push(*index);
        }
        selected.sort_unstable();
        ReadPlan { selected, skipped }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A layer declaring `payload_size`, naming the blob `seed` hashes to.
    fn layer(payload_size: u64, seed: &str, signed: bool) -> Descriptor {
        let mut l = Descriptor::for_signature(b"p", b"0123456789", &Default::default());
        l.size = payload_size;
        l.digest = crate::signature::sha256_digest(seed.as_bytes());
        if !signed {
            l.annotations.clear();
        }
        l
    }

    #[test]
    fn oversized_layers_are_skipped_before_any_fetch() {
        let one_mib = 1024 * 1024;
        let layers: Vec<_> = (0..128).map(|_| layer(one_mib, "big", true)).collect();
        let plan = ReadPlan::new(&layers);
        assert!(plan.selected.is_empty());
        assert_eq!(plan.skipped.count(SkipReason::OverPayloadCap), 128);
        assert_eq!(
            plan.skipped.to_string(),
            "128 layers skipped: payload over the 65536-byte cap"
        );
    }

    #[test]
    fn the_budget_bounds_what_is_read_and_small_layers_go_first() {
        // Six 60 KiB junk layers first, then a real-sized one: the real one is read.
        let mut layers: Vec<_> = (0..6)
            .map(|i| layer(60 * 1024, &format!("junk{i}"), true))
            .collect();
        layers.push(layer(300, "real", true));
        let plan = ReadPlan::new(&layers);
        assert!(plan.selected.contains(&6), "{plan:?}");
        // 300 + 10 bytes, then 4 x (60 KiB + 10) fit in 256 KiB; the last two do not.
        assert_eq!(plan.selected.len(), 5);
        assert_eq!(plan.skipped.count(SkipReason::OverBudget), 2);
        assert!(plan.selected.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn foreign_unsigned_and_surplus_layers_are_counted() {
        let mut layers = vec![layer(10, "a", false)];
        let mut foreign = layer(10, "b", true);
        foreign.media_type = "application/octet-stream".into();
        layers.push(foreign);
        layers.extend((0..MAX_SIGNATURE_DESCRIPTORS + 5).map(|_| layer(10, "c", true)));
        let plan = ReadPlan::new(&layers);
        assert_eq!(plan.skipped.count(SkipReason::Unsigned), 1);
        assert_eq!(plan.skipped.count(SkipReason::ForeignMediaType), 1);
        assert_eq!(plan.skipped.count(SkipReason::TooManyLayers), 5);
        assert_eq!(plan.selected.len(), MAX_SIGNATURE_DESCRIPTORS);
        assert!(plan.skipped.may_hide_signature());
        let harmless = ReadPlan::new(&layers[..2]);
        assert!(!harmless.skipped.may_hide_signature());
        let mut bad = layer(10, "d", true);
        bad.digest = "sha256:not-hex".into();
        let plan = ReadPlan::new(&[bad]);
        assert_eq!(plan.skipped.count(SkipReason::Unreadable), 1);
        assert!(plan.selected.is_empty());
    }

    #[test]
    fn an_empty_read_says_why() {
        let mut set = SignatureSet::default();
        assert!(set.unread_failure().is_none());
        set.skipped.add(SkipReason::OverBudget, 3);
        let failure = set.unread_failure();
        assert_eq!(
            failure.as_ref().map(LookupFailure::kind),
            Some(crate::registry::LookupFailureKind::OverBudget)
        );
        assert_eq!(
            failure.map(|f| f.to_string()).as_deref(),
            Some(
                "no valid signature within the read budget: 3 layers skipped: over the 262144-byte budget of a lookup"
            )
        );
    }
}
