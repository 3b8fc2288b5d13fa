//! The fast path of a cached admission: (namespace, image as the workload writes it) -> the
//! digest and verdict judged for it, under one snapshot generation.
//!
//! A cached image otherwise costs three look-ups (parsed reference, tag -> digest, verdict) and
//! a SHA-256 of the verdict key, each behind its own lock. An entry here lives no longer than
//! the digest and the verdict it was made from (the earlier of their two expiries), and only
//! while the policy generation it was judged under is current, so a hit answers exactly what
//! the three caches would have answered: nothing is judged that the slow path would judge
//! differently. Entries are made only where the namespace's labels come from the policy
//! snapshot (not read from the API for this request), as the verdict cache's key assumes.
//!
//! The key is the namespace's length in decimal, `:`, the namespace, then the image text: the
//! length prefix separates the two whatever they hold. Keys are compared whole, never by a
//! hash alone: a collision cannot lend one image another's verdict.
//!
//! Each thread keeps its own copies of the entries it has read, in front of the shared map:
//! its own key, digest and verdict allocations, read without a lock, with one clock read per
//! admission, and without writing the reference counts that other threads write too. Against
//! the shared map alone, this served about 5% more cached admissions a second (five
//! alternating maximum-rate runs of the two builds on two cores, four won).
//!
//! A copy carries its entry's generation and expiry, so it answers only what the shared entry
//! would answer until then. Where the shared entry is replaced while still live (a new
//! judgment of the same image), the map's count of such replacements moves on and every
//! thread drops its copies before its next read. An entry the shared map evicted early may
//! still be answered from a copy until its expiry: no later than the digest and verdict
//! caches' own lifetimes allow. A thread keeps at most 16,384 copies per map (about 300 bytes
//! each, so 5 MiB), made only when an entry is read, and drops them all at once when full.
//!
//! Refresh ahead: an allowed image judged from the registry is looked up again before its entry
//! expires, so that an image in steady use never makes its admissions wait for the registry.
//! The first admission that reads the entry in the last sixth of its life
//! ([`REFRESH_FRACTION`]) is answered from it as usual and hands the image back for a refresh
//! in the background, which reads the registry and replaces the entry. One refresh per entry:
//! if it fails, the entry still ends at its expiry, and the next admission judges the image as
//! any missed image is judged. A refresh reads what an expiry would make the next admission
//! read, a little earlier: a deleted signature still stops admitting within the caches' lifetime.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::judge::ImageOutcome;
use super::metrics::{CacheName, Metrics};
use super::verdict::CachedVerdict;
use super::verdict_cache::{ExpiringMap, text_shard};

/// Entries a thread copies per map at most; a full copy set is dropped whole and refilled.
const THREAD_COPIES: usize = 16_384;
/// Maps a thread keeps copies for (a process has one; tests start many).
const THREAD_MAPS: usize = 4;

/// An entry is refreshed in the last `1 / REFRESH_FRACTION` of its life (5 s of the default 30 s).
const REFRESH_FRACTION: u32 = 6;

/// Tells maps apart in the threads' copies.
static NEXT_MAP_ID: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static COPIES: RefCell<Vec<ThreadCopies>> = const { RefCell::new(Vec::new()) };
}

/// One thread's copies of one map's entries.
struct ThreadCopies {
    map: u64,
    /// The map's count of live replacements when these copies were made.
    replacements: u64,
    entries: HashMap<Box<str>, (Admitted, Instant), foldhash::fast::RandomState>,
}

#[derive(Clone)]
struct Admitted {
    generation: u64,
    /// The digest judged; `None` for an image no policy governs (nothing was looked up).
    digest: Option<Arc<str>>,
    /// The digest came from the tag -> digest cache (the reference names no digest).
    resolved: bool,
    verdict: Arc<CachedVerdict>,
    /// From when a read asks for a refresh (the expiry itself when it never does).
    refresh_at: Instant,
}

impl Admitted {
    /// The same entry in allocations of its own, for one thread's copies.
    fn thread_copy(&self) -> Admitted {
        Admitted {
            generation: self.generation,
            digest: self.digest.as_deref().map(Arc::from),
            resolved: self.resolved,
            verdict: Arc::new(CachedVerdict::clone(&self.verdict)),
            refresh_at: self.refresh_at,
        }
    }
}

/// Images judged recently, by namespace and written text.
pub(crate) struct AdmittedImages {
    map: ExpiringMap<Box<str>, Admitted>,
    id: u64,
    /// Live entries replaced so far: threads drop their copies when it moves.
    replacements: AtomicU64,
    thread_copies: usize,
    /// Entries handed back for a refresh: one refresh per entry.
    refreshing: Mutex<Claims>,
}

/// Claimed refreshes, by key, with the expiry of the entry they were claimed for. Claims of
/// ended entries are swept when the map reaches `sweep_at`, which then doubles what is left (at
/// least 1,024): amortised constant time per claim, at most the live entries' number of claims.
#[derive(Default)]
struct Claims {
    by_key: HashMap<Box<str>, Instant, foldhash::fast::RandomState>,
    sweep_at: usize,
}

/// A cached admission: every image's outcome, and the images due for a refresh ahead of
/// expiry (written text and digest), usually none.
pub(crate) struct Hits<'a> {
    pub outcomes: Vec<ImageOutcome<'a>>,
    pub refresh: Vec<(String, Arc<str>)>,
}

/// What [`AdmittedImages::remember`] keeps about one image.
pub(crate) struct Judged<'a> {
    pub generation: u64,
    pub namespace: &'a str,
    pub written: &'a str,
    pub digest: Option<&'a Arc<str>>,
    /// Whether the digest was resolved from a tag.
    pub resolved: bool,
    pub verdict: &'a Arc<CachedVerdict>,
    /// When the earlier of the digest's and the verdict's cache entries expires.
    pub until: Instant,
}

impl AdmittedImages {
    /// Holding at most about `capacity` images.
    pub fn new(capacity: usize) -> Self {
        AdmittedImages {
            map: ExpiringMap::new(capacity),
            id: NEXT_MAP_ID.fetch_add(1, Ordering::Relaxed),
            replacements: AtomicU64::new(0),
            thread_copies: capacity.clamp(1, THREAD_COPIES),
            refreshing: Mutex::new(Claims::default()),
        }
    }

    /// The outcome of every image of `images` in `namespace` when each one is here for
    /// `generation` (counted as hits of the digest and verdict caches it stands for), with
    /// those this read claimed for a refresh; else the images back, for the slow path.
    pub fn outcomes<'w>(
        &self,
        generation: u64,
        namespace: &str,
        images: Vec<&'w str>,
        metrics: &Metrics,
    ) -> Result<Hits<'w>, Vec<&'w str>> {
        let replacements = self.replacements.load(Ordering::Acquire);
        let now = Instant::now();
        // One key buffer for every image, sized for the longest.
        let longest = images.iter().map(|image| image.len()).max().unwrap_or(0);
        let mut key = String::with_capacity(namespace.len() + longest + 8);
        let mut outcomes: Vec<ImageOutcome<'w>> = Vec::with_capacity(images.len());
        let mut refresh = Vec::new();
        let mut images = images.into_iter();
        let (mut digest_hits, mut verdict_hits) = (0, 0);
        COPIES.with_borrow_mut(|threads| {
            let copies = self.copies_of_this_thread(threads, replacements);
            while let Some(written) = images.next() {
                key_into(&mut key, namespace, written);
                match self.read(copies, &key, generation, now) {
                    Some((admitted, due)) => {
                        digest_hits += u64::from(admitted.resolved);
                        verdict_hits += u64::from(admitted.digest.is_some());
                        if let (true, Some(digest)) = (due, &admitted.digest) {
                            refresh.push((written.to_string(), Arc::clone(digest)));
                        }
                        outcomes.push(ImageOutcome {
                            written,
                            digest: admitted.digest,
                            verdict: admitted.verdict,
                        });
                    }
                    None => {
                        let mut all: Vec<&str> = outcomes.drain(..).map(|o| o.written).collect();
                        all.push(written);
                        all.extend(images.by_ref());
                        return Err(all);
                    }
                }
            }
            Ok(())
        })?;
        // Counted once all are here: a request that falls back to the slow path counts its hits
        // and misses there.
        metrics.cache_hits(CacheName::Digest, digest_hits);
        metrics.cache_hits(CacheName::Verdict, verdict_hits);
        Ok(Hits { outcomes, refresh })
    }

    /// This thread's copies of this map's entries, emptied when a live entry was replaced
    /// since they were made.
    fn copies_of_this_thread<'t>(
        &self,
        threads: &'t mut Vec<ThreadCopies>,
        replacements: u64,
    ) -> &'t mut ThreadCopies {
        let at = match threads.iter().position(|copies| copies.map == self.id) {
            Some(at) => at,
            None => {
                if threads.len() >= THREAD_MAPS {
                    threads.remove(0);
                }
                threads.push(ThreadCopies {
                    map: self.id,
                    replacements,
                    entries: HashMap::default(),
                });
                threads.len() - 1
            }
        };
        let copies = &mut threads[at];
        if copies.replacements != replacements {
            copies.entries.clear();
            copies.replacements = replacements;
        }
        copies
    }

    /// The entry for `key` under `generation`, live at `now`: this thread's copy, else the
    /// shared entry (copied for the next time); and whether this read claimed its refresh.
    fn read(
        &self,
        copies: &mut ThreadCopies,
        key: &str,
        generation: u64,
        now: Instant,
    ) -> Option<(Admitted, bool)> {
        let copy = match copies.entries.get_mut(key) {
            Some((admitted, until)) if admitted.generation == generation && *until > now => {
                let due = self.refresh_due(admitted, key, *until, now);
                return Some((admitted.clone(), due));
            }
            _ => {
                let (shared, until) = self.map.get_until(text_shard(key), key)?;
                if shared.generation != generation {
                    return None;
                }
                (shared.thread_copy(), until)
            }
        };
        if copies.entries.len() >= self.thread_copies {
            copies.entries.clear();
        }
        let (mut admitted, until) = copy;
        let due = self.refresh_due(&mut admitted, key, until, now);
        copies
            .entries
            .insert(Box::from(key), (admitted.clone(), until));
        Some((admitted, due))
    }

    /// Whether this read of a thread's copy claims its entry's refresh: past the refresh point,
    /// the first on this thread asks (then the copy asks no more), and one asker in all wins.
    fn refresh_due(&self, copy: &mut Admitted, key: &str, until: Instant, now: Instant) -> bool {
        if now < copy.refresh_at {
            return false;
        }
        copy.refresh_at = until;
        self.claim_refresh(key, until, now)
    }

    /// True for the first reader of the entry of `key` that ends at `until`; the claims of
    /// entries already ended are dropped as claims are made.
    fn claim_refresh(&self, key: &str, until: Instant, now: Instant) -> bool {
        // A poisoned lock only means a panic between two single map operations.
        let mut claims = self.refreshing.lock().unwrap_or_else(|p| p.into_inner());
        if claims.by_key.get(key) == Some(&until) {
            return false;
        }
        if claims.by_key.len() >= claims.sweep_at {
            claims.by_key.retain(|_, ends| *ends > now);
            claims.sweep_at = (2 * claims.by_key.len()).max(1024);
        }
        claims.by_key.insert(Box::from(key), until);
        true
    }

    /// Keeps one image's outcome until `judged.until`.
    pub fn remember(&self, judged: Judged<'_>) {
        let mut key = String::new();
        key_into(&mut key, judged.namespace, judged.written);
        // Only allowed images judged from the registry are refreshed: an image no policy
        // governs has nothing to read, and a denial ends as it is.
        let refresh_at = match (judged.digest, judged.verdict.allowed) {
            (Some(_), true) => {
                let life = judged.until.saturating_duration_since(Instant::now());
                judged
                    .until
                    .checked_sub(life / REFRESH_FRACTION)
                    .unwrap_or(judged.until)
            }
            _ => judged.until,
        };
        let admitted = Admitted {
            generation: judged.generation,
            digest: judged.digest.cloned(),
            resolved: judged.resolved,
            verdict: Arc::clone(judged.verdict),
            refresh_at,
        };
        let replaced = self.map.insert_until(
            text_shard(&key),
            key.into_boxed_str(),
            admitted,
            judged.until,
        );
        if replaced {
            // After the write: a thread that sees the new count reads the new entry.
            self.replacements.fetch_add(1, Ordering::Release);
        }
    }
}

fn key_into(key: &mut String, namespace: &str, written: &str) {
    key.clear();
    key.reserve(namespace.len() + written.len() + 8);
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut length = namespace.len();
    loop {
        at -= 1;
        // A digit: `length % 10` is below 10.
        digits[at] = b'0' + (length % 10) as u8;
        length /= 10;
        if length == 0 {
            break;
        }
    }
    for &digit in &digits[at..] {
        key.push(char::from(digit));
    }
    key.push(':');
    key.push_str(namespace);
    key.push_str(written);
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn verdict() -> Arc<CachedVerdict> {
        Arc::new(CachedVerdict::plain_verified())
    }

    fn remember(images: &AdmittedImages, namespace: &str, written: &str, until: Instant) {
        let digest: Arc<str> = Arc::from(format!("sha256:{written}"));
        images.remember(Judged {
            generation: 7,
            namespace,
            written,
            digest: Some(&digest),
            resolved: true,
            verdict: &verdict(),
            until,
        });
    }

    fn texts<'a>(images: &[&'a str]) -> Vec<&'a str> {
        images.to_vec()
    }

    /// Fast-path entries for `r.example/app:v1` and `r.example/web:v1` in `shop`, generation 7.
    fn app_and_web() -> (AdmittedImages, Metrics) {
        let images = AdmittedImages::new(100);
        let later = Instant::now() + Duration::from_secs(60);
        remember(&images, "shop", "r.example/app:v1", later);
        remember(&images, "shop", "r.example/web:v1", later);
        (images, Metrics::new())
    }

    #[test]
    fn every_image_remembered_in_the_namespace_and_generation_is_answered() {
        let (images, metrics) = app_and_web();
        let outcomes = images
            .outcomes(
                7,
                "shop",
                texts(&["r.example/web:v1", "r.example/app:v1"]),
                &metrics,
            )
            .unwrap_or_else(|_| panic!("both images are remembered"))
            .outcomes;
        let digests: Vec<_> = outcomes.iter().map(|o| o.digest.as_deref()).collect();
        assert_eq!(
            digests,
            [
                Some("sha256:r.example/web:v1"),
                Some("sha256:r.example/app:v1")
            ]
        );
        assert!(outcomes.iter().all(|o| o.verdict.allowed));
    }

    #[test]
    fn another_namespace_generation_or_a_missing_image_falls_back_with_every_image() {
        let images = AdmittedImages::new(100);
        let metrics = Metrics::new();
        let later = Instant::now() + Duration::from_secs(60);
        remember(&images, "shop", "r.example/app:v1", later);
        let asked = texts(&["r.example/app:v1", "r.example/new:v1", "r.example/x:v1"]);
        // Missing image: all three come back, in order.
        assert_eq!(
            images.outcomes(7, "shop", asked.clone(), &metrics).err(),
            Some(asked)
        );
        let one = texts(&["r.example/app:v1"]);
        assert!(images.outcomes(7, "shop", one.clone(), &metrics).is_ok());
        assert_eq!(
            images.outcomes(8, "shop", one.clone(), &metrics).err(),
            Some(one.clone())
        );
        assert_eq!(
            images.outcomes(7, "other", one.clone(), &metrics).err(),
            Some(one.clone())
        );
        // The length prefix keeps namespace `a` + image `bc` apart from `ab` + `c`.
        remember(&images, "a", "bc", later);
        assert!(images.outcomes(7, "ab", texts(&["c"]), &metrics).is_err());
        assert!(images.outcomes(7, "a", texts(&["bc"]), &metrics).is_ok());
    }

    fn digest_of(images: &AdmittedImages, written: &str) -> Option<String> {
        let outcomes = images
            .outcomes(7, "shop", texts(&[written]), &Metrics::new())
            .ok()?
            .outcomes;
        outcomes[0].digest.as_deref().map(str::to_string)
    }

    /// The images `outcomes` hands back for a refresh, read from `thread` (this one or a new
    /// one), for `shop`, generation 7.
    fn refresh_claims(images: &AdmittedImages, written: &str, thread: bool) -> Vec<String> {
        let read = || {
            let hits = images.outcomes(7, "shop", texts(&[written]), &Metrics::new());
            let hits = hits.unwrap_or_else(|_| panic!("{written} is remembered"));
            hits.refresh.into_iter().map(|(w, _)| w).collect()
        };
        if thread {
            std::thread::scope(|s| s.spawn(read).join().unwrap())
        } else {
            read()
        }
    }

    #[test]
    fn an_allowed_entry_is_handed_back_for_one_refresh_in_the_last_sixth_of_its_life() {
        let images = AdmittedImages::new(100);
        let app = "r.example/app:v1";
        // The first entry, then the one a refresh's judgment puts in its place; claimed from
        // this thread's copy, then by a new thread from the shared entry.
        for claimed_elsewhere in [false, true] {
            let until = Instant::now() + Duration::from_millis(1200);
            remember(&images, "shop", app, until);
            // Read early, here and elsewhere: no refresh yet.
            assert!(refresh_claims(&images, app, false).is_empty());
            assert!(refresh_claims(&images, app, true).is_empty());
            std::thread::sleep(Duration::from_millis(1050));
            // Past five sixths: the first reader claims it; nobody else, on any thread.
            assert_eq!(refresh_claims(&images, app, claimed_elsewhere), [app]);
            assert!(refresh_claims(&images, app, false).is_empty());
            assert!(refresh_claims(&images, app, true).is_empty());
        }
    }

    #[test]
    fn claims_of_ended_entries_are_swept_and_live_ones_kept() {
        let images = AdmittedImages::new(100);
        let now = Instant::now();
        let (ended, live) = (now - Duration::from_secs(1), now + Duration::from_secs(60));
        assert!(images.claim_refresh("live", live, now));
        for i in 0..1500 {
            assert!(images.claim_refresh(&format!("ended-{i}"), ended, now));
        }
        // Swept once at 1,024 claims: the ended ones went, the live one stayed claimed.
        let left = images.refreshing.lock().unwrap().by_key.len();
        assert!(left < 1500 - 1000, "{left} claims kept");
        assert!(!images.claim_refresh("live", live, now));
        assert!(images.claim_refresh("live", live + Duration::from_secs(1), now));
    }

    #[test]
    fn an_ungoverned_or_denied_entry_is_never_refreshed() {
        let images = AdmittedImages::new(100);
        let until = Instant::now() + Duration::from_millis(1200);
        let denied = Arc::new(CachedVerdict::denied("no signature".to_string()));
        let digest: Arc<str> = Arc::from("sha256:abc");
        for (written, digest, verdict) in [
            ("r.example/free:v1", None, verdict()),
            ("r.example/bad:v1", Some(&digest), denied),
        ] {
            images.remember(Judged {
                generation: 7,
                namespace: "shop",
                written,
                digest,
                resolved: digest.is_some(),
                verdict: &verdict,
                until,
            });
        }
        std::thread::sleep(Duration::from_millis(1050));
        assert!(refresh_claims(&images, "r.example/free:v1", false).is_empty());
        assert!(refresh_claims(&images, "r.example/bad:v1", false).is_empty());
    }

    #[test]
    fn a_new_judgment_of_a_live_entry_replaces_every_threads_copy() {
        let (images, _) = app_and_web();
        // This thread reads the entry (and keeps a copy of it).
        assert_eq!(
            digest_of(&images, "r.example/app:v1").as_deref(),
            Some("sha256:r.example/app:v1")
        );
        // Another thread judges the image again, to another digest.
        std::thread::scope(|scope| {
            scope.spawn(|| {
                let digest: Arc<str> = Arc::from("sha256:again");
                images.remember(Judged {
                    generation: 7,
                    namespace: "shop",
                    written: "r.example/app:v1",
                    digest: Some(&digest),
                    resolved: true,
                    verdict: &verdict(),
                    until: Instant::now() + Duration::from_secs(60),
                });
            });
        });
        assert_eq!(
            digest_of(&images, "r.example/app:v1").as_deref(),
            Some("sha256:again")
        );
        // The other image's entry is read again from the shared map, unchanged.
        assert_eq!(
            digest_of(&images, "r.example/web:v1").as_deref(),
            Some("sha256:r.example/web:v1")
        );
    }

    #[test]
    fn a_threads_copy_expires_with_its_entry_and_belongs_to_its_map() {
        let images = AdmittedImages::new(100);
        remember(
            &images,
            "shop",
            "r.example/app:v1",
            Instant::now() + Duration::from_millis(50),
        );
        assert!(digest_of(&images, "r.example/app:v1").is_some());
        // Another map on the same thread has no entries of its own.
        let other = AdmittedImages::new(100);
        assert_eq!(digest_of(&other, "r.example/app:v1"), None);
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(digest_of(&images, "r.example/app:v1"), None);
    }

    #[test]
    fn copies_beyond_a_threads_bound_are_dropped_and_read_again() {
        // Room for one copy per thread: reading the second drops the first, which is then
        // read from the shared map again.
        let images = AdmittedImages::new(1);
        let later = Instant::now() + Duration::from_secs(60);
        remember(&images, "shop", "a", later);
        remember(&images, "shop", "b", later);
        for written in ["a", "b", "a", "b"] {
            assert_eq!(
                digest_of(&images, written),
                Some(format!("sha256:{written}"))
            );
        }
    }

    /// `signet_webhook_cache_hits_total{cache}` as exposed.
    fn hits(metrics: &Metrics, cache: &str) -> f64 {
        let text = metrics.encode().unwrap_or_default();
        let prefix = format!("signet_webhook_cache_hits_total{{cache=\"{cache}\"}} ");
        text.lines()
            .find_map(|line| line.strip_prefix(&prefix)?.parse().ok())
            .unwrap_or(0.0)
    }

    #[test]
    fn hits_count_every_image_of_an_answered_request_and_none_of_one_that_falls_back() {
        let (images, metrics) = app_and_web();
        let both = texts(&["r.example/app:v1", "r.example/web:v1"]);
        assert!(images.outcomes(7, "shop", both, &metrics).is_ok());
        assert_eq!(hits(&metrics, "verdict"), 2.0);
        assert_eq!(hits(&metrics, "digest"), 2.0);
        // The slow path counts the hits and misses of a request that falls back, so none here.
        let partly = texts(&["r.example/app:v1", "r.example/new:v1"]);
        assert!(images.outcomes(7, "shop", partly, &metrics).is_err());
        assert_eq!(hits(&metrics, "verdict"), 2.0);
    }

    #[test]
    fn an_outcome_ends_when_its_earliest_cache_entry_does() {
        let images = AdmittedImages::new(100);
        let metrics = Metrics::new();
        remember(
            &images,
            "shop",
            "r.example/app:v1",
            Instant::now() + Duration::from_millis(30),
        );
        let one = texts(&["r.example/app:v1"]);
        assert!(images.outcomes(7, "shop", one.clone(), &metrics).is_ok());
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(
            images.outcomes(7, "shop", one.clone(), &metrics).err(),
            Some(one)
        );
    }
}
