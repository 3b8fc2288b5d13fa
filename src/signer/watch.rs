//! Watching the signature tags the signer wrote, through the registry's own events.
//!
//! A manifest PUT replaces a tag, and distribution has no conditional write: a writer that read
//! the `.sig` manifest (or the fallback index) before the signer's write, and writes after it,
//! hides the signer's layer (or index entry). The registry notifies every manifest push, the
//! signature tags included, so the signer learns of such a write from the event of that push:
//! the tag `sha256-<hex>.sig` (or `sha256-<hex>`) now names a digest the signer did not write.
//! It then reads and writes again, once the tag names that digest (distribution notifies a
//! manifest push before it links the tag, so a read at once could still find the signer's own
//! manifest); while nobody else writes, this costs no request at all,
//! where a timed look (one `HEAD` per tag written, 2 s later) costs one per tag and image.
//!
//! This module is the bookkeeping alone (no I/O): which tags were written with which digests,
//! for which image and rules, and whether a noticed push is one of the signer's own or another
//! writer's. Entries live `window` after their last write and at most `capacity` are kept (the
//! oldest go first); an event that comes later is not matched, and the periodic reconcile is the
//! safety net for it, as for an event the registry never delivered (its queue is in memory).
//!
//! A write of another writer can land while the signer's own write is still going on (the
//! signer writes the `.sig`, then the bundle and the index), before the signer knows its own
//! digests. Pushes noticed meanwhile are kept, and compared once the write is done: any that is
//! not the signer's makes it sign again ([`Finished::Pushed`]).
//!
//! Several instances: an event reaches one of them, maybe not the one that wrote, so with more
//! than one replica the timed look (`--recheck 2s`) is the one that works; the chart sets it.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::reference::ImageRef;
use crate::registry::WrittenTag;

use super::rules::CompiledRule;

/// Pushes noticed during one write kept for the comparison (a flood cannot grow the entry).
const MAX_NOTICED_WHILE_WRITING: usize = 16;
/// Digests of the signer's own writes remembered per tag (its own late events are not a repair).
const MAX_OWN_DIGESTS: usize = 8;

/// What a repair signs again: the image, its digest and the rules of the write.
#[derive(Clone, Debug)]
pub struct Repair {
    /// The identity signed (scope host, repository, tag when there is one).
    pub identity: ImageRef,
    /// The digest signed.
    pub digest: String,
    /// The rules the write was for.
    pub rules: Vec<Arc<CompiledRule>>,
}

/// What a noticed push of a signature tag means.
#[derive(Debug)]
pub enum Noticed {
    /// Not a tag the signer wrote lately (or already being repaired).
    Unwatched,
    /// A digest the signer wrote itself: its own event.
    Own,
    /// A write is going on for that image: the push is compared when it ends.
    WhileWriting,
    /// Another writer replaced a tag the signer wrote: sign again (the entry is dropped; the
    /// repair's write watches anew), once the tag names the pushed digest.
    Repair(Repair, WrittenTag),
}

/// How a write ended, for the watch.
#[derive(Debug, PartialEq, Eq)]
pub enum Finished {
    /// Watched from now on.
    Watched,
    /// Another writer pushed one of the tags (this one) while the write was going on: sign
    /// again once the tag names it.
    Pushed(WrittenTag),
}

#[derive(Clone, Debug, Hash, PartialEq, Eq)]
struct Key {
    host: String,
    repository: String,
    subject: String,
}

#[derive(Debug)]
struct Entry {
    /// Writes of this image going on.
    writing: u32,
    /// (tag, digest) pushes noticed while writing.
    noticed: Vec<(String, String)>,
    /// Per tag, the digests the signer wrote there (newest last).
    own: Vec<(String, Vec<String>)>,
    repair: Option<Repair>,
    until: Instant,
}

impl Entry {
    fn is_own(&self, tag: &str, digest: &str) -> bool {
        self.own
            .iter()
            .any(|(t, digests)| t == tag && digests.iter().any(|d| d == digest))
    }

    fn watches(&self, tag: &str) -> bool {
        self.own.iter().any(|(t, _)| t == tag)
    }

    fn remember(&mut self, written: &WrittenTag) {
        match self.own.iter_mut().find(|(t, _)| *t == written.tag) {
            Some((_, digests)) => {
                if digests.len() == MAX_OWN_DIGESTS {
                    digests.remove(0);
                }
                digests.push(written.digest.clone());
            }
            None => self
                .own
                .push((written.tag.clone(), vec![written.digest.clone()])),
        }
    }
}

#[derive(Default)]
struct State {
    entries: HashMap<Key, Entry>,
    /// (expiry, key) in the order set; stale records (the entry was renewed) are skipped.
    expiry: VecDeque<(Instant, Key)>,
}

/// The signature tags written lately, by image.
pub struct TagWatch {
    window: Duration,
    capacity: usize,
    state: Mutex<State>,
}

/// One write going on (from [`TagWatch::begin`]); dropped without [`TagWatch::finish`], it only
/// ends the write.
pub struct Writing<'a> {
    watch: &'a TagWatch,
    key: Option<Key>,
}

impl Drop for Writing<'_> {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            let mut state = self.watch.lock();
            let drop_entry = match state.entries.get_mut(&key) {
                Some(entry) => {
                    entry.writing = entry.writing.saturating_sub(1);
                    if entry.writing == 0 {
                        entry.noticed.clear();
                    }
                    entry.writing == 0 && entry.repair.is_none()
                }
                None => false,
            };
            if drop_entry {
                state.entries.remove(&key);
            }
        }
    }
}

impl TagWatch {
    /// Tags stay watched `window` after their last write; at most `capacity` images.
    pub fn new(window: Duration, capacity: usize) -> Self {
        TagWatch {
            window,
            capacity: capacity.max(1),
            state: Mutex::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state is plain bookkeeping, consistent after each method: a panic elsewhere
        // while it was held leaves nothing half-done.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A write of `digest` in `host`/`repository` starts.
    pub fn begin(&self, host: &str, repository: &str, digest: &str) -> Writing<'_> {
        let key = Key {
            host: host.to_string(),
            repository: repository.to_string(),
            subject: digest.to_string(),
        };
        let mut state = self.lock();
        let now = Instant::now();
        state
            .entries
            .entry(key.clone())
            .or_insert_with(|| Entry {
                writing: 0,
                noticed: Vec::new(),
                own: Vec::new(),
                repair: None,
                until: now + self.window,
            })
            .writing += 1;
        Writing {
            watch: self,
            key: Some(key),
        }
    }

    /// The write ended having written `tags` (empty: nothing written, nothing to watch).
    pub fn finish(
        &self,
        mut writing: Writing<'_>,
        tags: &[WrittenTag],
        repair: Repair,
    ) -> Finished {
        let Some(key) = writing.key.take() else {
            return Finished::Watched;
        };
        let now = Instant::now();
        let mut state = self.lock();
        let Some(entry) = state.entries.get_mut(&key) else {
            return Finished::Watched;
        };
        entry.writing = entry.writing.saturating_sub(1);
        for tag in tags {
            entry.remember(tag);
        }
        let foreign = entry
            .noticed
            .iter()
            .find(|(tag, digest)| entry.watches(tag) && !entry.is_own(tag, digest))
            .map(|(tag, digest)| WrittenTag {
                tag: tag.clone(),
                digest: digest.clone(),
            });
        if entry.writing == 0 {
            entry.noticed.clear();
        }
        if entry.own.is_empty() {
            if entry.writing == 0 {
                state.entries.remove(&key);
            }
            return Finished::Watched;
        }
        entry.repair = Some(repair);
        entry.until = now + self.window;
        state.expiry.push_back((now + self.window, key));
        self.prune(&mut state, now);
        match foreign {
            Some(pushed) => Finished::Pushed(pushed),
            None => Finished::Watched,
        }
    }

    /// A push of `tag` at `digest` in `host`/`repository` was notified.
    pub fn notice(&self, host: &str, repository: &str, tag: &str, digest: &str) -> Noticed {
        let Some(subject) = subject_of(tag) else {
            return Noticed::Unwatched;
        };
        let key = Key {
            host: host.to_string(),
            repository: repository.to_string(),
            subject,
        };
        let now = Instant::now();
        let mut state = self.lock();
        let Some(entry) = state.entries.get_mut(&key) else {
            return Noticed::Unwatched;
        };
        if entry.writing > 0 {
            if entry.noticed.len() < MAX_NOTICED_WHILE_WRITING {
                entry.noticed.push((tag.to_string(), digest.to_string()));
            }
            return Noticed::WhileWriting;
        }
        if entry.until <= now || !entry.watches(tag) {
            return Noticed::Unwatched;
        }
        if entry.is_own(tag, digest) {
            return Noticed::Own;
        }
        match state.entries.remove(&key).and_then(|e| e.repair) {
            Some(repair) => Noticed::Repair(
                repair,
                WrittenTag {
                    tag: tag.to_string(),
                    digest: digest.to_string(),
                },
            ),
            None => Noticed::Unwatched,
        }
    }

    /// Images watched now.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    /// Whether nothing is watched.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn prune(&self, state: &mut State, now: Instant) {
        while let Some((until, key)) = state.expiry.front().cloned() {
            let over = state.entries.len() > self.capacity;
            if until > now && !over {
                break;
            }
            state.expiry.pop_front();
            let remove = state
                .entries
                .get(&key)
                .is_some_and(|e| e.writing == 0 && (e.until <= until || over));
            if remove {
                state.entries.remove(&key);
            }
        }
    }
}

/// The digest a signature tag belongs to: `sha256-<hex>.sig` and the fallback index
/// `sha256-<hex>` both name `sha256:<hex>`.
fn subject_of(tag: &str) -> Option<String> {
    let base = tag.strip_suffix(".sig").unwrap_or(tag);
    let (algorithm, hex) = base.split_once('-')?;
    (!hex.is_empty() && hex.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| format!("{algorithm}:{hex}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOST: &str = "registry.example";
    const REPO: &str = "team/app";

    fn digest(n: u8) -> String {
        format!("sha256:{}", format!("{n:02x}").repeat(32))
    }

    fn sig_tag(subject: &str) -> String {
        format!("{}.sig", subject.replacen(':', "-", 1))
    }

    fn written(tag: &str, digest: &str) -> WrittenTag {
        WrittenTag {
            tag: tag.to_string(),
            digest: digest.to_string(),
        }
    }

    fn repair(subject: &str) -> Repair {
        Repair {
            identity: ImageRef::parse(&format!("{HOST}/{REPO}:v1")).unwrap(),
            digest: subject.to_string(),
            rules: Vec::new(),
        }
    }

    fn watch_written(watch: &TagWatch, subject: &str, ours: &str) -> Finished {
        let writing = watch.begin(HOST, REPO, subject);
        watch.finish(
            writing,
            &[written(&sig_tag(subject), ours)],
            repair(subject),
        )
    }

    #[test]
    fn the_signers_own_push_is_not_a_repair_and_another_writers_is() {
        let watch = TagWatch::new(Duration::from_secs(60), 100);
        let (subject, ours, theirs) = (digest(1), digest(2), digest(3));
        assert_eq!(watch_written(&watch, &subject, &ours), Finished::Watched);
        let tag = sig_tag(&subject);
        assert!(matches!(
            watch.notice(HOST, REPO, &tag, &ours),
            Noticed::Own
        ));
        match watch.notice(HOST, REPO, &tag, &theirs) {
            Noticed::Repair(r, pushed) => {
                assert_eq!(r.digest, subject);
                assert_eq!((pushed.tag, pushed.digest), (tag.clone(), theirs.clone()));
            }
            other => panic!("{other:?}"),
        }
        // The repair is handed out once; its own write watches anew.
        assert!(matches!(
            watch.notice(HOST, REPO, &tag, &theirs),
            Noticed::Unwatched
        ));
        assert!(watch.is_empty());
    }

    #[test]
    fn other_tags_repositories_and_hosts_are_not_watched() {
        let watch = TagWatch::new(Duration::from_secs(60), 100);
        let (subject, ours, theirs) = (digest(1), digest(2), digest(3));
        watch_written(&watch, &subject, &ours);
        let tag = sig_tag(&subject);
        for (host, repo, tag) in [
            ("other.example", REPO, tag.as_str()),
            (HOST, "team/other", tag.as_str()),
            (HOST, REPO, &sig_tag(&digest(9))),
            // The fallback index of the same subject: not written by this write.
            (HOST, REPO, tag.trim_end_matches(".sig")),
        ] {
            assert!(
                matches!(watch.notice(host, repo, tag, &theirs), Noticed::Unwatched),
                "{host} {repo} {tag}"
            );
        }
    }

    #[test]
    fn a_push_during_the_write_is_judged_when_the_write_ends() {
        let watch = TagWatch::new(Duration::from_secs(60), 100);
        let (subject, ours, theirs) = (digest(1), digest(2), digest(3));
        let tag = sig_tag(&subject);
        // Own event only: no look.
        let writing = watch.begin(HOST, REPO, &subject);
        assert!(matches!(
            watch.notice(HOST, REPO, &tag, &ours),
            Noticed::WhileWriting
        ));
        assert_eq!(
            watch.finish(writing, &[written(&tag, &ours)], repair(&subject)),
            Finished::Watched
        );
        // Another writer's push meanwhile: sign again.
        let writing = watch.begin(HOST, REPO, &subject);
        watch.notice(HOST, REPO, &tag, &theirs);
        assert_eq!(
            watch.finish(writing, &[written(&tag, &digest(4))], repair(&subject)),
            Finished::Pushed(written(&tag, &theirs))
        );
    }

    #[test]
    fn a_write_that_wrote_nothing_leaves_nothing_watched() {
        let watch = TagWatch::new(Duration::from_secs(60), 100);
        let subject = digest(1);
        let writing = watch.begin(HOST, REPO, &subject);
        assert_eq!(
            watch.finish(writing, &[], repair(&subject)),
            Finished::Watched
        );
        assert!(watch.is_empty());
        // Abandoned (an error): the same.
        drop(watch.begin(HOST, REPO, &subject));
        assert!(watch.is_empty());
    }

    #[test]
    fn entries_expire_and_the_oldest_go_past_the_capacity() {
        let watch = TagWatch::new(Duration::ZERO, 100);
        let (subject, theirs) = (digest(1), digest(3));
        watch_written(&watch, &subject, &digest(2));
        assert!(matches!(
            watch.notice(HOST, REPO, &sig_tag(&subject), &theirs),
            Noticed::Unwatched
        ));
        let watch = TagWatch::new(Duration::from_secs(60), 2);
        for n in 1..=3 {
            watch_written(&watch, &digest(n), &digest(100 + n));
        }
        assert_eq!(watch.len(), 2);
        assert!(matches!(
            watch.notice(HOST, REPO, &sig_tag(&digest(1)), &theirs),
            Noticed::Unwatched
        ));
        assert!(matches!(
            watch.notice(HOST, REPO, &sig_tag(&digest(3)), &theirs),
            Noticed::Repair(..)
        ));
    }

    #[test]
    fn subjects_of_signature_tags() {
        let hex = "ab".repeat(32);
        assert_eq!(
            subject_of(&format!("sha256-{hex}.sig")),
            Some(format!("sha256:{hex}"))
        );
        assert_eq!(
            subject_of(&format!("sha256-{hex}")),
            Some(format!("sha256:{hex}"))
        );
        assert_eq!(subject_of("latest"), None);
        assert_eq!(subject_of("sha256-.sig"), None);
    }
}
