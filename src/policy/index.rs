//! The index that spares an image a scan of every policy: each `images` glob is filed under its
//! literal prefix (the text before its first wildcard, registry host first). An image only meets
//! the globs whose prefix starts its `registry/repository:tag` text, found with one hash look-up
//! per distinct prefix length.

use std::collections::HashMap;

/// Where a glob lives: the policy's position in the snapshot and the glob's in `spec.images`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct GlobSlot {
    pub(crate) policy: usize,
    pub(crate) glob: usize,
}

/// Globs filed by literal prefix.
#[derive(Clone, Debug, Default)]
pub(crate) struct PrefixIndex {
    /// foldhash, randomly seeded: one look-up per prefix length on every admitted image, where
    /// SipHash was most of the index's cost.
    by_prefix: HashMap<String, Vec<GlobSlot>, foldhash::fast::RandomState>,
    /// The distinct prefix lengths (bytes), ascending: the only lengths worth looking up.
    lengths: Vec<usize>,
}

impl PrefixIndex {
    /// Files one glob under its literal prefix.
    pub(crate) fn insert(&mut self, prefix: String, slot: GlobSlot) {
        if let Err(at) = self.lengths.binary_search(&prefix.len()) {
            self.lengths.insert(at, prefix.len());
        }
        self.by_prefix.entry(prefix).or_default().push(slot);
    }

    /// Calls `visit` for every glob whose literal prefix starts `text`. Pass the longest form of
    /// the image (`registry/repository:tag`): the shorter forms it is matched against are
    /// prefixes of it, so every glob that can match one of them is visited.
    pub(crate) fn candidates(&self, text: &str, mut visit: impl FnMut(GlobSlot)) {
        for &len in &self.lengths {
            if len > text.len() {
                break;
            }
            let Some(prefix) = text.get(..len) else {
                continue; // not a character boundary: no glob prefix ends inside a character
            };
            if let Some(slots) = self.by_prefix.get(prefix) {
                slots.iter().copied().for_each(&mut visit);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn visits_only_globs_whose_prefix_starts_the_text() {
        let mut index = PrefixIndex::default();
        let slot = |policy| GlobSlot { policy, glob: 0 };
        index.insert("registry.example.com/prod/".into(), slot(0));
        index.insert("registry.example.com/".into(), slot(1));
        index.insert("".into(), slot(2));
        index.insert("ghcr.io/".into(), slot(3));
        index.insert("registry.example.com/production/".into(), slot(4));
        index.insert("é".into(), slot(5));
        let mut seen = Vec::new();
        index.candidates("registry.example.com/prod/app:v1", |s| seen.push(s.policy));
        seen.sort();
        assert_eq!(seen, [0, 1, 2]);
        let mut seen = Vec::new();
        index.candidates("é/x", |s| seen.push(s.policy));
        seen.sort();
        assert_eq!(seen, [2, 5]);
    }
}
