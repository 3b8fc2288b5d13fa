//! A compact, bounded, expiring map for cached verdicts, parsed references and resolved digests.
//!
//! Why not moka here: its per-entry bookkeeping (entry info, access and write deques, timer
//! wheel node for per-entry expiry) costs a few hundred bytes per entry, so 100,000 verdicts of
//! 16-byte keys cost tens of MiB, and every `get` records a read in its policy channels. A
//! verdict needs none of that: keys are uniform hashes, entries expire on a coarse clock, and
//! first-in-first-out eviction is good enough under a TTL of minutes. Here an entry is its key,
//! its value and a 64-bit deadline in the map, plus its key again in the eviction queue.
//!
//! Expired entries are not removed when met; they read as absent and are overwritten in place
//! or evicted in turn, which keeps the queue and the map in step (each key once in each).
//!
//! Keys are hashed with foldhash, seeded at random per map, rather than std's SipHash, which
//! cost about 3,700 instructions of a cached 3-image admission (callgrind). Reference keys are
//! text from pod specs; the random seed, the bounded shards and the first-in-first-out eviction
//! keep a crafted set of colliding keys from costing more than a few slow admissions.

use std::borrow::Borrow;
use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A shard hint for a text key (a reference): cheap, and the same for the same text.
pub fn text_shard(text: &str) -> u8 {
    text.bytes()
        .fold(text.len() as u8, |acc, b| acc.rotate_left(3) ^ b)
}

/// Shards, so that concurrent requests rarely wait for the same lock.
const SHARDS: usize = 16;

struct Stored<V> {
    value: V,
    /// Milliseconds since the cache's epoch after which the entry reads as absent.
    expires_ms: u64,
}

struct Shard<K, V> {
    entries: HashMap<K, Stored<V>, foldhash::fast::RandomState>,
    /// Keys in insertion order; the front is evicted first.
    order: VecDeque<K>,
}

/// A bounded map whose entries expire, sharded by a caller-provided shard hint.
pub struct ExpiringMap<K, V> {
    shards: Box<[Mutex<Shard<K, V>>]>,
    capacity_per_shard: usize,
    epoch: Instant,
}

impl<K: Hash + Eq + Clone, V: Clone> ExpiringMap<K, V> {
    /// A map holding at most about `capacity` entries (rounded up to a multiple of the shards).
    pub fn new(capacity: usize) -> Self {
        let capacity_per_shard = capacity.div_ceil(SHARDS).max(1);
        ExpiringMap {
            shards: (0..SHARDS)
                .map(|_| {
                    Mutex::new(Shard {
                        entries: HashMap::default(),
                        order: VecDeque::new(),
                    })
                })
                .collect(),
            capacity_per_shard,
            epoch: Instant::now(),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn shard(&self, hint: u8) -> std::sync::MutexGuard<'_, Shard<K, V>> {
        // A poisoned lock only means a panic while holding it; each operation leaves the map
        // and queue consistent before anything that could panic, so the data is usable.
        self.shards[usize::from(hint) % SHARDS]
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// The live value for `key`, if any. `hint` picks the shard and must be the same for a key
    /// on every call (a byte of its hash).
    pub fn get<Q>(&self, hint: u8, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let now = self.now_ms();
        let shard = self.shard(hint);
        shard
            .entries
            .get(key)
            .filter(|stored| stored.expires_ms > now)
            .map(|stored| stored.value.clone())
    }

    /// The live value for `key` and the instant it stops being live.
    pub fn get_until<Q>(&self, hint: u8, key: &Q) -> Option<(V, Instant)>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let now = self.now_ms();
        let shard = self.shard(hint);
        let stored = shard
            .entries
            .get(key)
            .filter(|stored| stored.expires_ms > now)?;
        // Past what `Instant` can hold, the entry outlives the process anyway.
        let until = self
            .epoch
            .checked_add(Duration::from_millis(stored.expires_ms))
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(365 * 24 * 3600));
        Some((stored.value.clone(), until))
    }

    /// Stores `value` for `key` for `ttl`, evicting the oldest entry of the shard when full.
    pub fn insert(&self, hint: u8, key: K, value: V, ttl: Duration) {
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
        let expires_ms = self.now_ms().saturating_add(ttl_ms);
        self.insert_expiring(hint, key, value, expires_ms);
    }

    /// Stores `value` for `key` until `until` (nothing when that has passed). True when it
    /// replaced an entry of `key` that was still live.
    pub fn insert_until(&self, hint: u8, key: K, value: V, until: Instant) -> bool {
        let ms = until.saturating_duration_since(self.epoch).as_millis();
        let expires_ms = u64::try_from(ms).unwrap_or(u64::MAX);
        expires_ms > self.now_ms() && self.insert_expiring(hint, key, value, expires_ms)
    }

    /// True when a live entry of `key` was replaced.
    fn insert_expiring(&self, hint: u8, key: K, value: V, expires_ms: u64) -> bool {
        let now = self.now_ms();
        let mut shard = self.shard(hint);
        if let Some(stored) = shard.entries.get_mut(&key) {
            let was_live = stored.expires_ms > now;
            *stored = Stored { value, expires_ms };
            return was_live;
        }
        while shard.entries.len() >= self.capacity_per_shard {
            let Some(oldest) = shard.order.pop_front() else {
                break;
            };
            shard.entries.remove(&oldest);
        }
        shard.order.push_back(key.clone());
        shard.entries.insert(key, Stored { value, expires_ms });
        false
    }

    /// Ends `key`'s entry now, if there is one: read as absent from here on, and replaced (not
    /// counted as a live replacement) by the next insert.
    pub fn expire<Q>(&self, hint: u8, key: &Q)
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        if let Some(stored) = self.shard(hint).entries.get_mut(key) {
            stored.expires_ms = 0;
        }
    }

    /// Live entries now (expired ones not counted).
    pub fn live_entries(&self) -> u64 {
        let now = self.now_ms();
        self.shards
            .iter()
            .map(|shard| {
                let shard = shard.lock().unwrap_or_else(|p| p.into_inner());
                shard
                    .entries
                    .values()
                    .filter(|stored| stored.expires_ms > now)
                    .count() as u64
            })
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_expire_after_their_own_ttl() {
        let map: ExpiringMap<u32, &str> = ExpiringMap::new(100);
        map.insert(0, 1, "long", Duration::from_secs(60));
        map.insert(1, 2, "short", Duration::from_millis(20));
        assert_eq!(map.get(0, &1), Some("long"));
        assert_eq!(map.get(1, &2), Some("short"));
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(map.get(0, &1), Some("long"));
        assert_eq!(map.get(1, &2), None);
        assert_eq!(map.live_entries(), 1);
    }

    #[test]
    fn the_oldest_entry_goes_when_the_map_is_full() {
        // 16 shards of one entry each: all keys on shard 0 compete for one slot.
        let map: ExpiringMap<u32, u32> = ExpiringMap::new(16);
        map.insert(0, 1, 10, Duration::from_secs(60));
        map.insert(0, 2, 20, Duration::from_secs(60));
        assert_eq!(map.get(0, &1), None);
        assert_eq!(map.get(0, &2), Some(20));
        // Another shard is unaffected.
        map.insert(5, 3, 30, Duration::from_secs(60));
        assert_eq!(map.get(0, &2), Some(20));
        assert_eq!(map.live_entries(), 2);
    }

    #[test]
    fn reinserting_a_key_replaces_it_without_growing() {
        let map: ExpiringMap<u32, u32> = ExpiringMap::new(32);
        for value in 0..10 {
            map.insert(3, 7, value, Duration::from_secs(60));
        }
        assert_eq!(map.get(3, &7), Some(9));
        assert_eq!(map.live_entries(), 1);
    }

    #[test]
    fn an_entry_stored_until_an_instant_reads_back_with_it() {
        let map: ExpiringMap<u32, u32> = ExpiringMap::new(32);
        let until = Instant::now() + Duration::from_secs(60);
        assert!(!map.insert_until(2, 4, 40, until), "nothing was replaced");
        let (value, read) = map.get_until(2, &4).unwrap();
        assert_eq!(value, 40);
        // Kept to the millisecond.
        assert!(
            read <= until && until - read < Duration::from_millis(1),
            "{read:?} {until:?}"
        );
        // An instant already past stores nothing.
        map.insert_until(2, 5, 50, Instant::now() - Duration::from_millis(5));
        assert_eq!(map.get(2, &5), None);
        // Replacing a live entry says so; replacing an expired one does not.
        assert!(map.insert_until(2, 4, 41, until));
        map.insert(2, 7, 70, Duration::from_millis(1));
        std::thread::sleep(Duration::from_millis(5));
        assert!(!map.insert_until(2, 7, 71, until));
        map.insert(2, 6, 60, Duration::from_secs(10));
        let (_, read) = map.get_until(2, &6).unwrap();
        assert!(read > Instant::now() + Duration::from_secs(9));
    }

    #[test]
    fn an_expired_entry_reads_as_absent_and_its_next_insert_is_no_replacement() {
        let map: ExpiringMap<u32, u32> = ExpiringMap::new(32);
        let until = Instant::now() + Duration::from_secs(60);
        map.insert_until(1, 9, 90, until);
        map.expire(1, &9);
        map.expire(1, &8); // absent: nothing happens
        assert_eq!(map.get(1, &9), None);
        assert_eq!(map.live_entries(), 0);
        assert!(!map.insert_until(1, 9, 91, until));
        assert_eq!(map.get(1, &9), Some(91));
    }
}
