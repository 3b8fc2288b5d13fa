//! One signatures-cache entry of admission's lookups: what was read for one (repository,
//! digest), store by store (the `.sig` tag, the referrers; see [`SignatureSource`]). A staged
//! verification reads the cheapest store first and the other only when a policy needs it, so an
//! entry may hold one store or both, and says which. Entries are merged store by store; each
//! store keeps the time it was read, so a merge never makes old signatures look fresh.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::registry::{LookupFailure, SignatureSet, SignatureSource, SkippedLayers, held_bytes};
use crate::signature::StoredSignature;

use super::lookup::Signatures;

/// What one store held when it was read.
#[derive(Clone, Debug)]
struct StoreRead {
    /// How many of [`SignatureEntry::all`] came from this store.
    count: usize,
    /// Layers and referrers not read, by reason.
    skipped: SkippedLayers,
    /// When the store was read: the entry expires from its oldest store's read.
    read_at: Instant,
}

/// The signatures read so far for one digest, by store.
#[derive(Clone, Debug)]
pub struct SignatureEntry {
    sig_tag: Option<StoreRead>,
    referrers: Option<StoreRead>,
    /// The signatures of the stores held, `.sig` ones first (as a full read lists them): what
    /// the engine borrows.
    all: Signatures,
}

impl SignatureEntry {
    /// What reading `source` found, at `read_at`.
    pub fn read(source: SignatureSource, set: SignatureSet, read_at: Instant) -> Self {
        let store = StoreRead {
            count: set.signatures.len(),
            skipped: set.skipped,
            read_at,
        };
        let all: Signatures = Arc::from(set.signatures);
        match source {
            SignatureSource::SigTag => SignatureEntry {
                sig_tag: Some(store),
                referrers: None,
                all,
            },
            SignatureSource::Referrers => SignatureEntry {
                sig_tag: None,
                referrers: Some(store),
                all,
            },
        }
    }

    fn store(&self, source: SignatureSource) -> Option<&StoreRead> {
        match source {
            SignatureSource::SigTag => self.sig_tag.as_ref(),
            SignatureSource::Referrers => self.referrers.as_ref(),
        }
    }

    /// Whether `source` was read.
    pub fn holds(&self, source: SignatureSource) -> bool {
        self.store(source).is_some()
    }

    /// Whether every store was read.
    pub fn holds_all(&self) -> bool {
        SignatureSource::ALL.iter().all(|&s| self.holds(s))
    }

    /// The stores read, in [`SignatureSource::ALL`] order.
    pub fn stores(&self) -> impl Iterator<Item = SignatureSource> + '_ {
        SignatureSource::ALL.into_iter().filter(|&s| self.holds(s))
    }

    /// The signatures of the stores held (shared, not copied).
    pub fn signatures(&self) -> Signatures {
        Arc::clone(&self.all)
    }

    /// The signatures `source` held (empty when not read).
    fn of(&self, source: SignatureSource) -> &[StoredSignature] {
        let legacy = self.sig_tag.as_ref().map_or(0, |s| s.count);
        match source {
            SignatureSource::SigTag => self.all.get(..legacy).unwrap_or_default(),
            SignatureSource::Referrers => self.all.get(legacy..).unwrap_or_default(),
        }
    }

    /// Every store of `newer`, and the stores of `self` that `newer` lacks.
    pub fn merged(&self, newer: &SignatureEntry) -> SignatureEntry {
        let pick = |source| {
            if newer.holds(source) {
                Some(newer)
            } else if self.holds(source) {
                Some(self)
            } else {
                None
            }
        };
        let (legacy_from, referrers_from) = (
            pick(SignatureSource::SigTag),
            pick(SignatureSource::Referrers),
        );
        let all = match (legacy_from, referrers_from) {
            (Some(a), Some(b)) if std::ptr::eq(a, b) => a.signatures(),
            (None, Some(only)) | (Some(only), None) => only.signatures(),
            _ => {
                let mut all = Vec::new();
                if let Some(from) = legacy_from {
                    all.extend_from_slice(from.of(SignatureSource::SigTag));
                }
                if let Some(from) = referrers_from {
                    all.extend_from_slice(from.of(SignatureSource::Referrers));
                }
                Arc::from(all)
            }
        };
        SignatureEntry {
            sig_tag: legacy_from.and_then(|e| e.sig_tag.clone()),
            referrers: referrers_from.and_then(|e| e.referrers.clone()),
            all,
        }
    }

    /// The layers and referrers skipped in every store held.
    pub fn skipped(&self) -> SkippedLayers {
        let mut skipped = SkippedLayers::default();
        for store in [&self.sig_tag, &self.referrers].into_iter().flatten() {
            for (reason, n) in store.skipped.iter() {
                skipped.add(reason, n);
            }
        }
        skipped
    }

    /// Why there is nothing to verify although something might have been a signature: no
    /// signature read and a layer that might have been one skipped (over budget, unreadable).
    /// Meaningful for an entry holding every store (as a full read judges it).
    pub fn unread_failure(&self) -> Option<LookupFailure> {
        let skipped = self.skipped();
        (self.all.is_empty() && skipped.may_hide_signature())
            .then_some(LookupFailure::OverBudget { skipped })
    }

    /// Bytes held by the signatures.
    pub fn held_bytes(&self) -> u64 {
        held_bytes(&self.all)
    }

    /// How many signatures are held.
    pub fn len(&self) -> usize {
        self.all.len()
    }

    /// No signature held.
    pub fn is_empty(&self) -> bool {
        self.all.is_empty()
    }

    /// How long the entry may still be used: `ttl` (`empty_ttl` when it holds no signature,
    /// as long as a failure) from its oldest store's read.
    pub fn remaining(&self, ttl: Duration, empty_ttl: Duration) -> Duration {
        let ttl = if self.all.is_empty() { empty_ttl } else { ttl };
        let oldest = [&self.sig_tag, &self.referrers]
            .into_iter()
            .flatten()
            .map(|s| s.read_at.elapsed())
            .max()
            .unwrap_or_default();
        ttl.saturating_sub(oldest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::SkipReason;

    fn set(payloads: &[&str]) -> SignatureSet {
        SignatureSet {
            signatures: payloads
                .iter()
                .map(|p| StoredSignature::cosign(p.as_bytes().to_vec(), None))
                .collect(),
            ..SignatureSet::default()
        }
    }

    fn payloads(entry: &SignatureEntry) -> Vec<String> {
        entry
            .signatures()
            .iter()
            .map(|s| String::from_utf8_lossy(&s.payload).into_owned())
            .collect()
    }

    #[test]
    fn merged_entries_list_sig_tag_signatures_first_whatever_was_read_first() {
        let now = Instant::now();
        let referrers = SignatureEntry::read(SignatureSource::Referrers, set(&["b1", "b2"]), now);
        let legacy = SignatureEntry::read(SignatureSource::SigTag, set(&["s1"]), now);
        assert!(!referrers.holds(SignatureSource::SigTag) && !referrers.holds_all());
        let both = referrers.merged(&legacy);
        assert!(both.holds_all());
        assert_eq!(payloads(&both), ["s1", "b1", "b2"]);
        assert_eq!(payloads(&legacy.merged(&referrers)), ["s1", "b1", "b2"]);
        // A newer read of one store replaces that store only.
        let again = both.merged(&SignatureEntry::read(
            SignatureSource::SigTag,
            set(&["s2", "s3"]),
            now,
        ));
        assert_eq!(payloads(&again), ["s2", "s3", "b1", "b2"]);
        assert_eq!(
            again.stores().collect::<Vec<_>>(),
            SignatureSource::ALL.to_vec()
        );
    }

    #[test]
    fn nothing_read_within_budget_in_every_store_is_a_failure_that_says_why() {
        let now = Instant::now();
        let mut over = set(&[]);
        over.skipped.add(SkipReason::OverBudget, 3);
        let legacy = SignatureEntry::read(SignatureSource::SigTag, over, now);
        let none = SignatureEntry::read(SignatureSource::Referrers, set(&[]), now);
        let failure = legacy.merged(&none).unread_failure().map(|f| f.kind());
        assert_eq!(
            failure,
            Some(crate::registry::LookupFailureKind::OverBudget)
        );
        // A signature in the other store is something to verify.
        let found = SignatureEntry::read(SignatureSource::Referrers, set(&["b"]), now);
        assert!(legacy.merged(&found).unread_failure().is_none());
    }

    #[test]
    fn an_entry_expires_from_its_oldest_read_and_sooner_when_empty() {
        let ttl = Duration::from_secs(30);
        let short = Duration::from_secs(5);
        let old = Instant::now()
            .checked_sub(Duration::from_secs(20))
            .unwrap_or_else(Instant::now);
        let legacy = SignatureEntry::read(SignatureSource::SigTag, set(&["s"]), old);
        let fresh = SignatureEntry::read(SignatureSource::Referrers, set(&[]), Instant::now());
        let both = legacy.merged(&fresh);
        assert!(both.remaining(ttl, short) <= Duration::from_secs(10));
        assert!(fresh.remaining(ttl, short) <= short);
        assert!(fresh.remaining(ttl, short) > Duration::from_secs(4));
    }
}
