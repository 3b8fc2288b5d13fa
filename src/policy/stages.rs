//! The pure questions behind a staged signature read (see `admission::lookup`): which store of
//! signatures to read first, given the attestors' kinds, and whether a verdict judged on part of
//! the signatures is already final.
//!
//! A verdict whose every governing policy passed is final: more signatures can satisfy more
//! attestors, never fewer (an attestor is satisfied by any one signature that verifies, and a
//! signature's check does not depend on the others), so allow stays allow. Any other verdict is
//! judged again on every signature, read as a full read lists them; a skipped store never
//! denies.

use super::compile::{Governing, Snapshot};
use super::verdict::ImageVerdict;
use crate::registry::SignatureSource;

/// The order in which the two stores of signatures are read for one image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadOrder {
    /// Read `first`; the other store only when that does not settle the verdict.
    Staged {
        /// The store read first.
        first: SignatureSource,
    },
    /// Read both at once: neither alone can satisfy every governing policy.
    Together,
}

impl ReadOrder {
    /// The order for checking against plain keys and/or certificate trust anchors (`signet
    /// verify --key/--certificate`): with a key, the `.sig` tag can settle it; with anchors
    /// only, the referrers (Notation) can.
    pub fn for_keys(has_keys: bool, has_anchors: bool) -> ReadOrder {
        match (has_keys, has_anchors) {
            (true, _) => ReadOrder::Staged {
                first: SignatureSource::SigTag,
            },
            (false, true) => ReadOrder::Staged {
                first: SignatureSource::Referrers,
            },
            (false, false) => ReadOrder::Together,
        }
    }

    /// The stores to read now, before a first verdict.
    pub fn first_read(self) -> &'static [SignatureSource] {
        match self {
            ReadOrder::Staged {
                first: SignatureSource::SigTag,
            } => &[SignatureSource::SigTag],
            ReadOrder::Staged {
                first: SignatureSource::Referrers,
            } => &[SignatureSource::Referrers],
            ReadOrder::Together => &SignatureSource::ALL,
        }
    }
}

impl Snapshot {
    /// Which store to read first for an image these policies govern, from their attestors'
    /// kinds: the `.sig` tag (cosign's legacy signatures, the cheapest read) when it alone could
    /// satisfy every policy (each has `required` usable attestors with public keys); the
    /// referrers when no attestor has a public key (certificate anchors only: only Notation
    /// signatures can count); both at once otherwise (a `required: 2` of a key attestor and a
    /// certificate attestor, or a policy that fails whatever the signatures).
    pub fn read_order(&self, governing: &Governing) -> ReadOrder {
        let policies: Vec<_> = governing
            .indices
            .iter()
            .filter_map(|&i| self.policies.get(i))
            .collect();
        if policies.is_empty() || policies.iter().any(|p| !p.is_ready()) {
            return ReadOrder::Together;
        }
        let has_keys = |slot: &super::compile::AttestorSlot| {
            slot.attestor
                .and_then(|i| self.attestors.get(i))
                .is_some_and(|a| a.unusable.is_none() && !a.keys.is_empty())
        };
        let sig_tag_can_satisfy = policies
            .iter()
            .all(|p| p.attestors.iter().filter(|s| has_keys(s)).count() >= p.required());
        if sig_tag_can_satisfy {
            return ReadOrder::Staged {
                first: SignatureSource::SigTag,
            };
        }
        let no_keys = policies.iter().all(|p| !p.attestors.iter().any(has_keys));
        if no_keys {
            return ReadOrder::Staged {
                first: SignatureSource::Referrers,
            };
        }
        ReadOrder::Together
    }
}

impl ImageVerdict {
    /// Governed, and every governing policy passed (`DryRun` ones too): more signatures would
    /// not change it, so the stores not read yet need not be.
    pub fn settled(&self) -> bool {
        !self.policies.is_empty() && self.policies.iter().all(|p| p.passed)
    }
}
