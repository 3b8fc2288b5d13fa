//! Registry I/O for admission: tag -> digest and (repository, digest) -> signatures, behind
//! bounded caches, with one lookup in flight per key across all requests.
//!
//! Why not `moka::future::Cache::try_get_with` for the coalescing: it runs the load inside the
//! first caller's future, so when that request hits its deadline and is dropped, the load is
//! cancelled and the next caller starts it again. Here each load runs in its own task: a request
//! that gives up stops waiting, the load finishes, fills the caches, and later requests find the
//! answer. The moka caches only store answers (with a TTL) and failures (with a shorter one).
//!
//! Signatures are read store by store ([`SignatureSource`]: the `.sig` tag, the referrers), a
//! staged read: the judge asks for the store its policies' attestors can be satisfied from
//! (`Snapshot::read_order`), judges, and asks for the other only when the verdict is not
//! settled (`ImageVerdict::settled`), then judges every signature as a full read would. A
//! cache entry ([`SignatureEntry`]) says which stores it holds; a later request whose policy
//! needs the other store reads only that one, coalesced per (credential, repository, digest,
//! store). The cache is shared by every policy: a request never trusts an entry for a store it
//! does not hold, so which policy asked first changes the requests made, never a verdict.
//!
//! Registry requests of one cold admission (nothing cached; Debian's distribution 2.8, no
//! referrers API), measured by `tests/registry_cost.rs`: `GET manifests/<tag>` (the
//! resolution: a GET rather than a HEAD, the same one request, so that a Notation payload is
//! checked against the manifest's media type and size without fetching it again); then, for a
//! policy a key can satisfy, `GET manifests/sha256-<hex>.sig` and its payload blob: 3 when the
//! `.sig` satisfies the policy, whatever else is attached. Otherwise the referrers: `GET
//! manifests/sha256-<hex>` (the fallback index; the referrers API is asked first once per
//! registry and 10 minutes) and each signature referrer's manifest and blob: 5 for a bundle
//! alone (cosign v3: the `.sig` answers 404), 6 for a registry's first image. Policies whose
//! attestors hold only certificates read the referrers first (4 for one Notation signature);
//! `required: 2` of a key and a certificate attestor reads both stores at once (6).
//!
//! A store that is read and fails (unreachable, refused, throttled) fails the lookup, and the
//! failure is remembered as briefly as any (fail closed, as a full read did); a store that is
//! not needed is not read, so its failure cannot matter: an allowed verdict rests only on
//! signatures that verified.
//!
//! Answers are shared across requests whatever their credentials (a digest and its signatures
//! are the same for everyone who may pull them); failures and loads in flight are keyed by the
//! credential used as well, so one pod's wrong secret never fails another pod's lookup.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::FutureExt as _;
use futures::future::{BoxFuture, Shared};
use moka::future::Cache;

use super::metrics::{CacheName, Metrics, RegistryOperation, RegistryOutcome};
use super::signature_entry::SignatureEntry;
use super::verdict_cache::{ExpiringMap, text_shard};
use crate::reference::ImageRef;
use crate::registry::{
    DockerConfig, LookupFailure, RegistryClient, SignatureSource, SignatureStore,
};
use crate::signature::StoredSignature;

/// Bytes the signatures cache may hold (payloads, signatures and keys, with a per-entry
/// overhead). Weighed in bytes, not entries: a signature set is up to
/// [`crate::registry::SIGNATURE_READ_BUDGET`], so a count bound would not bound memory.
pub const SIGNATURE_CACHE_BYTES: u64 = 64 * 1024 * 1024;

/// What a cache entry costs beyond its bytes (the key, the `Arc`, moka's own bookkeeping).
const ENTRY_OVERHEAD_BYTES: u64 = 256;

/// Per stored signature, beyond its bytes (two `Vec` headers).
const SIGNATURE_OVERHEAD_BYTES: u64 = 48;

/// The weight of one signatures cache entry, in bytes (saturating at `u32::MAX`, moka's unit).
fn signatures_weight(key: &str, value: &SignatureEntry) -> u32 {
    let bytes = value.held_bytes()
        + value.len() as u64 * SIGNATURE_OVERHEAD_BYTES
        + key.len() as u64
        + ENTRY_OVERHEAD_BYTES;
    u32::try_from(bytes).unwrap_or(u32::MAX)
}

/// How long answers and failures are kept.
#[derive(Clone, Copy, Debug)]
pub struct LookupTimings {
    /// tag -> digest: short, tags move.
    pub digest_ttl: Duration,
    /// (repository, digest) -> signatures: short, an image may be signed just after its first
    /// admission attempt (the signer works on push events, in parallel with deployments).
    pub signatures_ttl: Duration,
    /// A registry failure is answered from memory this long, so a dead registry costs one
    /// timeout per key and period rather than one per request.
    pub failure_ttl: Duration,
}

impl Default for LookupTimings {
    fn default() -> Self {
        LookupTimings {
            digest_ttl: Duration::from_secs(30),
            signatures_ttl: Duration::from_secs(30),
            failure_ttl: Duration::from_secs(5),
        }
    }
}

/// Signatures as fetched, shared between requests (and lent to the engine as they are).
pub type Signatures = Arc<[StoredSignature]>;

/// Why a lookup failed, shared between every request that joined it or found it cached.
pub type Failure = Arc<LookupFailure>;

type Flight<V> = Shared<BoxFuture<'static, Result<V, Failure>>>;

/// Loads in flight, one per key. Each runs in a spawned task and removes itself when done, after
/// its answer is in the caches.
struct Flights<V> {
    running: Mutex<HashMap<String, Flight<V>>>,
}

impl<V: Clone + Send + Sync + 'static> Flights<V> {
    fn new() -> Arc<Self> {
        Arc::new(Flights {
            running: Mutex::new(HashMap::new()),
        })
    }

    /// Joins the load for `key`, or starts `load` as its task.
    fn join_or_start<F>(self: &Arc<Self>, key: String, load: impl FnOnce() -> F) -> Flight<V>
    where
        F: Future<Output = Result<V, Failure>> + Send + 'static,
    {
        // A poisoned lock only means another thread panicked while inserting; the map is
        // still consistent (each operation is a single insert or remove).
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(flight) = running.get(&key) {
            return flight.clone();
        }
        let flights = Arc::clone(self);
        let task_key = key.clone();
        let work = load();
        // The task's removal waits for this lock, so it cannot run before the insert below.
        let task = tokio::spawn(async move {
            let result = work.await;
            flights
                .running
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&task_key);
            result
        });
        let flight = async move {
            task.await
                .unwrap_or_else(|e| Err(Arc::new(LookupFailure::Task(e))))
        }
        .boxed()
        .shared();
        running.insert(key, flight.clone());
        flight
    }
}

/// The registry client a request uses: the webhook's own credentials, with the workload's pull
/// secrets tried first.
#[derive(Clone)]
pub struct RequestRegistry {
    client: RegistryClient,
    /// The pull-secret configs, in the order they are tried.
    secrets: Arc<Vec<DockerConfig>>,
}

impl RequestRegistry {
    /// A client trying `secrets` in order, then `base`'s own credentials.
    pub fn new(base: &RegistryClient, secrets: Vec<DockerConfig>) -> Self {
        // `with_credentials` puts its argument first, so the last secret is layered first.
        let client = secrets.iter().rev().fold(base.clone(), |client, config| {
            client.with_credentials(config)
        });
        RequestRegistry {
            client,
            secrets: Arc::new(secrets),
        }
    }

    /// The client.
    pub fn client(&self) -> &RegistryClient {
        &self.client
    }

    /// Which credential this request uses for `registry`: a hash, or `-` for the webhook's own.
    fn credential_id(&self, registry: &str) -> String {
        self.secrets
            .iter()
            .find_map(|config| config.find(registry))
            .map_or_else(|| "-".to_string(), |c| c.fingerprint())
    }
}

/// Cached, coalesced registry lookups.
pub struct Lookups {
    /// Tag -> digest, keyed by `repo_with_tag`; an [`ExpiringMap`] rather than moka: a cached
    /// admission reads it once per image, and moka's read bookkeeping cost about 1,000
    /// instructions a read (callgrind), more than the rest of the lookup.
    digests: Arc<ExpiringMap<Box<str>, Arc<str>>>,
    digest_ttl: Duration,
    signatures: Cache<String, Arc<SignatureEntry>>,
    failures: Cache<String, Failure>,
    digest_flights: Arc<Flights<Arc<str>>>,
    signature_flights: Arc<Flights<Arc<SignatureEntry>>>,
    metrics: Arc<Metrics>,
}

impl Lookups {
    /// Digest and failure caches holding at most `capacity` entries each (their entries are
    /// small and bounded); the signatures cache holding at most [`SIGNATURE_CACHE_BYTES`].
    pub fn new(capacity: u64, timings: LookupTimings, metrics: Arc<Metrics>) -> Self {
        Self::with_signature_bytes(capacity, SIGNATURE_CACHE_BYTES, timings, metrics)
    }

    /// [`Lookups::new`] with the signatures cache bounded at `signature_bytes`.
    pub fn with_signature_bytes(
        capacity: u64,
        signature_bytes: u64,
        timings: LookupTimings,
        metrics: Arc<Metrics>,
    ) -> Self {
        Lookups {
            digests: Arc::new(ExpiringMap::new(
                usize::try_from(capacity).unwrap_or(usize::MAX),
            )),
            digest_ttl: timings.digest_ttl,
            signatures: Cache::builder()
                .weigher(|key: &String, value: &Arc<SignatureEntry>| signatures_weight(key, value))
                .max_capacity(signature_bytes)
                .time_to_live(timings.signatures_ttl)
                .expire_after(FromOldestRead {
                    ttl: timings.signatures_ttl,
                    empty_ttl: timings.failure_ttl,
                })
                .build(),
            failures: Cache::builder()
                .max_capacity(capacity)
                .time_to_live(timings.failure_ttl)
                .build(),
            digest_flights: Flights::new(),
            signature_flights: Flights::new(),
            metrics,
        }
    }

    /// The digest `image` names, or the one its tag resolves to now.
    pub async fn digest(
        &self,
        image: &ImageRef,
        registry: &RequestRegistry,
    ) -> Result<Arc<str>, Failure> {
        self.digest_keyed(image, &image.repo_with_tag(), registry)
            .await
    }

    /// When the cached digest of `key` (a reference's normalised text) stops being used;
    /// `None` when none is cached.
    pub fn digest_until(&self, key: &str) -> Option<std::time::Instant> {
        self.digests
            .get_until(text_shard(key), key)
            .map(|(_, until)| until)
    }

    /// [`Lookups::digest`] with the cache key given: `image.repo_with_tag()` (ignored when
    /// `image` names a digest), which a caller holding the reference's text already has.
    pub async fn digest_keyed(
        &self,
        image: &ImageRef,
        key: &str,
        registry: &RequestRegistry,
    ) -> Result<Arc<str>, Failure> {
        if let Some(digest) = image.digest() {
            return Ok(Arc::from(digest));
        }
        let shard = text_shard(key);
        if let Some(digest) = self.digests.get(shard, key) {
            self.metrics.cache(CacheName::Digest, true);
            return Ok(digest);
        }
        self.metrics.cache(CacheName::Digest, false);
        let flight_key = format!("{}|{key}", registry.credential_id(image.registry()));
        if let Some(reason) = self.recent_failure(&flight_key).await {
            return Err(reason);
        }
        let flight = self.digest_flights.join_or_start(flight_key.clone(), || {
            let client = registry.client().clone();
            let image = image.clone();
            let digests = Arc::clone(&self.digests);
            let digest_ttl = self.digest_ttl;
            let key: Box<str> = key.into();
            let failures = self.failures.clone();
            let metrics = Arc::clone(&self.metrics);
            async move {
                // A load that finished between this request's cache miss and its join has
                // already filled the cache (it does so before leaving the flights): use that.
                if let Some(digest) = digests.get(shard, &key) {
                    return Ok(digest);
                }
                let result = measured(
                    &metrics,
                    image.registry(),
                    RegistryOperation::Resolve,
                    // A GET, not a HEAD: the same one request, and a Notation signature's
                    // payload is then checked against the manifest's media type and size
                    // without fetching it again.
                    async { Ok(client.resolve_manifest(&image).await?) },
                )
                .await;
                match result {
                    Ok(digest) => {
                        let digest: Arc<str> = Arc::from(digest);
                        digests.insert(shard, key, Arc::clone(&digest), digest_ttl);
                        Ok(digest)
                    }
                    Err(failure) => {
                        let failure = Arc::new(failure);
                        failures.insert(flight_key, Arc::clone(&failure)).await;
                        Err(failure)
                    }
                }
            }
        });
        flight.await
    }

    /// Drops what is cached of `image` at `digest` (its tag's digest, keyed by `key` as in
    /// [`Lookups::digest_keyed`], and its signatures), so that the next lookup reads the
    /// registry: a refresh ahead of expiry (`Judge::refresh_images`).
    pub async fn forget(&self, image: &ImageRef, key: &str, digest: &str) {
        if image.digest().is_none() {
            self.digests.expire(text_shard(key), key);
        }
        self.signatures
            .invalidate(&signatures_key(image, digest))
            .await;
    }

    /// [`Lookups::signatures`] read afresh: the cached answer for `digest` is dropped first (the
    /// push-to-deploy grace waits for signatures that were not there a moment ago).
    pub async fn refresh_signatures(
        &self,
        image: &ImageRef,
        digest: &str,
        registry: &RequestRegistry,
    ) -> Result<Signatures, Failure> {
        self.signatures
            .invalidate(&signatures_key(image, digest))
            .await;
        self.signatures(image, digest, registry).await
    }

    /// Every signature stored for `digest` in `image`'s repository, both stores (empty when
    /// there are none); a failure when nothing could be read within the budgets although
    /// something might have been a signature.
    pub async fn signatures(
        &self,
        image: &ImageRef,
        digest: &str,
        registry: &RequestRegistry,
    ) -> Result<Signatures, Failure> {
        let entry = self
            .signatures_from(image, digest, registry, &SignatureSource::ALL, None)
            .await?;
        match entry.unread_failure() {
            Some(failure) => Err(Arc::new(failure)),
            None => Ok(entry.signatures()),
        }
    }

    /// The signatures of `digest` in `image`'s repository from at least `sources`: `have` (what
    /// the caller judged already) and the cached stores, and each missing store read (one read
    /// in flight per store and key, all missing stores at once). The first store that fails
    /// fails the whole answer.
    pub async fn signatures_from(
        &self,
        image: &ImageRef,
        digest: &str,
        registry: &RequestRegistry,
        sources: &[SignatureSource],
        have: Option<Arc<SignatureEntry>>,
    ) -> Result<Arc<SignatureEntry>, Failure> {
        let key = signatures_key(image, digest);
        let mut entry = have;
        if let Some(cached) = self.signatures.get(&key).await {
            // The caller's own stores win: it already judged them.
            entry = Some(match entry {
                Some(have) => Arc::new(cached.merged(&have)),
                None => cached,
            });
        }
        let missing: Vec<SignatureSource> = sources
            .iter()
            .copied()
            .filter(|&s| !entry.as_ref().is_some_and(|e| e.holds(s)))
            .collect();
        self.metrics
            .cache(CacheName::Signatures, missing.is_empty());
        if missing.is_empty()
            && let Some(entry) = entry
        {
            return Ok(entry);
        }
        let reads = missing
            .iter()
            .map(|&source| self.read_store(image, digest, registry, source, &key));
        for read in futures::future::join_all(reads).await {
            let read = read?;
            entry = Some(match entry {
                Some(have) => Arc::new(have.merged(&read)),
                None => read,
            });
        }
        entry.ok_or_else(|| Arc::new(LookupFailure::NotLookedUp))
    }

    /// Reads `source` for `key` (coalesced: one read in flight per credential, key and store),
    /// merges it into the cached entry and returns the merged entry.
    async fn read_store(
        &self,
        image: &ImageRef,
        digest: &str,
        registry: &RequestRegistry,
        source: SignatureSource,
        key: &str,
    ) -> Result<Arc<SignatureEntry>, Failure> {
        let flight_key = format!(
            "{}|{key}|{}",
            registry.credential_id(image.registry()),
            source.as_str()
        );
        if let Some(reason) = self.recent_failure(&flight_key).await {
            return Err(reason);
        }
        let flight = self
            .signature_flights
            .join_or_start(flight_key.clone(), || {
                let store = SignatureStore::new(registry.client().clone());
                let image = image.clone();
                let digest = digest.to_string();
                let key = key.to_string();
                let cache = self.signatures.clone();
                let failures = self.failures.clone();
                let metrics = Arc::clone(&self.metrics);
                async move {
                    // As for digests: a read that just finished has filled the cache.
                    if let Some(found) = cache.get(&key).await
                        && found.holds(source)
                    {
                        return Ok(found);
                    }
                    let result = measured_store(
                        &metrics,
                        image.registry(),
                        store.fetch_source(&image, &digest, source, None),
                    )
                    .await;
                    match result {
                        Ok(set) => {
                            if set.skipped.may_hide_signature() {
                                // Nothing read because of the budgets is "no valid signature",
                                // remembered as briefly as a failure (an empty entry), so an
                                // attacker's manifest costs one bounded read per period.
                                tracing::warn!(
                                    image = %image.with_digest(&digest),
                                    store = source.as_str(),
                                    skipped = %set.skipped,
                                    "some signature layers not read"
                                );
                            }
                            let read = SignatureEntry::read(source, set, Instant::now());
                            let entry = Arc::new(match cache.get(&key).await {
                                Some(cached) => cached.merged(&read),
                                None => read,
                            });
                            cache.insert(key, Arc::clone(&entry)).await;
                            Ok(entry)
                        }
                        Err(failure) => {
                            let failure = Arc::new(failure);
                            failures.insert(flight_key, Arc::clone(&failure)).await;
                            Err(failure)
                        }
                    }
                }
            });
        flight.await
    }

    async fn recent_failure(&self, flight_key: &str) -> Option<Failure> {
        let failure = self.failures.get(flight_key).await;
        if failure.is_some() {
            self.metrics.cache(CacheName::Failure, true);
        }
        failure
    }
}

/// The signatures cache key of `digest` in `image`'s repository.
fn signatures_key(image: &ImageRef, digest: &str) -> String {
    format!("{}/{}@{digest}", image.registry(), image.repository())
}

/// An entry lives `ttl` from its oldest store's read (a merge never makes old signatures look
/// fresh), and "no signature yet" only as long as a failure: the image may be signed a moment
/// after its first admission (the signer works on push events, beside the deployment), and a
/// kept empty set would deny it for the whole signature cache time after it was signed.
struct FromOldestRead {
    ttl: Duration,
    empty_ttl: Duration,
}

impl moka::Expiry<String, Arc<SignatureEntry>> for FromOldestRead {
    fn expire_after_create(
        &self,
        _key: &String,
        value: &Arc<SignatureEntry>,
        _created_at: Instant,
    ) -> Option<Duration> {
        Some(value.remaining(self.ttl, self.empty_ttl))
    }

    fn expire_after_update(
        &self,
        _key: &String,
        value: &Arc<SignatureEntry>,
        _updated_at: Instant,
        _duration_until_expiry: Option<Duration>,
    ) -> Option<Duration> {
        Some(value.remaining(self.ttl, self.empty_ttl))
    }
}

/// Reads one store of signatures, counted like any registry operation: a store where nothing
/// could be read within the budgets is an `over_budget` outcome, though its (empty) answer is
/// kept.
async fn measured_store(
    metrics: &Metrics,
    host: &str,
    work: impl Future<Output = Result<crate::registry::SignatureSet, crate::registry::RegistryError>>,
) -> Result<crate::registry::SignatureSet, LookupFailure> {
    metrics.lookups_in_flight(1);
    let started = Instant::now();
    let result = work.await.map_err(LookupFailure::from);
    let outcome = match &result {
        Ok(set) => match set.unread_failure() {
            Some(failure) => RegistryOutcome::Failed(failure.kind()),
            None => RegistryOutcome::Success,
        },
        Err(failure) => RegistryOutcome::Failed(failure.kind()),
    };
    metrics.registry_request(
        host,
        RegistryOperation::Signatures,
        outcome,
        started.elapsed().as_secs_f64(),
    );
    metrics.lookups_in_flight(-1);
    result
}

/// Runs one registry operation against `host`, counting it in flight and recording its outcome
/// (labelled by the registry and the failure's kind) and latency.
async fn measured<T>(
    metrics: &Metrics,
    host: &str,
    operation: RegistryOperation,
    work: impl Future<Output = Result<T, LookupFailure>>,
) -> Result<T, LookupFailure> {
    metrics.lookups_in_flight(1);
    let started = Instant::now();
    let result = work.await;
    let outcome = match &result {
        Ok(_) => RegistryOutcome::Success,
        Err(failure) => RegistryOutcome::Failed(failure.kind()),
    };
    metrics.registry_request(host, operation, outcome, started.elapsed().as_secs_f64());
    metrics.lookups_in_flight(-1);
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn entry(signatures: Vec<StoredSignature>) -> Arc<SignatureEntry> {
        let set = crate::registry::SignatureSet {
            signatures,
            ..Default::default()
        };
        Arc::new(SignatureEntry::read(
            SignatureSource::SigTag,
            set,
            Instant::now(),
        ))
    }

    #[tokio::test]
    async fn the_signatures_cache_is_bounded_in_bytes() {
        let big = entry(vec![
            StoredSignature::cosign(
                vec![0; 200 * 1024],
                Some(vec![0; 64])
            );
            1
        ]);
        let weight = signatures_weight("k", &big);
        assert!(u64::from(weight) > 200 * 1024, "{weight}");
        assert!(signatures_weight("k", &entry(Vec::new())) < 1024);
        // A 1 MiB cache holds a handful of 200 KiB sets, however many are inserted.
        let lookups = Lookups::with_signature_bytes(
            1000,
            1024 * 1024,
            LookupTimings::default(),
            Arc::new(Metrics::new()),
        );
        for i in 0..50 {
            lookups
                .signatures
                .insert(format!("r/app@{i}"), Arc::clone(&big))
                .await;
        }
        lookups.signatures.run_pending_tasks().await;
        assert!(lookups.signatures.weighted_size() <= 1024 * 1024);
        assert!(lookups.signatures.entry_count() <= 5);
    }

    #[test]
    fn an_empty_signature_set_is_kept_only_as_long_as_a_failure() {
        use moka::Expiry as _;
        let policy = FromOldestRead {
            ttl: Duration::from_secs(30),
            empty_ttl: Duration::from_secs(5),
        };
        let now = Instant::now();
        let kept = |e: &Arc<SignatureEntry>| {
            policy
                .expire_after_create(&"k".to_string(), e, now)
                .unwrap_or_default()
        };
        let empty = kept(&entry(Vec::new()));
        assert!(empty <= Duration::from_secs(5) && empty > Duration::from_secs(4));
        let found = kept(&entry(vec![StoredSignature::cosign(b"{}".to_vec(), None)]));
        assert!(found <= Duration::from_secs(30) && found > Duration::from_secs(29));
    }

    #[tokio::test]
    async fn concurrent_joins_share_one_load() {
        let flights: Arc<Flights<u32>> = Flights::new();
        let started = Arc::new(AtomicUsize::new(0));
        let mut waiters = Vec::new();
        for _ in 0..50 {
            let started = Arc::clone(&started);
            waiters.push(flights.join_or_start("k".into(), move || async move {
                started.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(20)).await;
                Ok(7)
            }));
        }
        for waiter in waiters {
            assert_eq!(waiter.await.ok(), Some(7));
        }
        assert_eq!(started.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_load_outlives_the_caller_that_started_it() {
        let flights: Arc<Flights<u32>> = Flights::new();
        let first = flights.join_or_start("k".into(), || async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            Ok(1)
        });
        // The first caller gives up at once.
        assert!(
            tokio::time::timeout(Duration::from_millis(1), first)
                .await
                .is_err()
        );
        // A second caller joins the same load instead of starting a new one.
        let second = flights.join_or_start("k".into(), || async { Ok(2) });
        assert_eq!(second.await.ok(), Some(1));
        // Once done, the key is free again.
        let third = flights.join_or_start("k".into(), || async { Ok(3) });
        assert_eq!(third.await.ok(), Some(3));
    }
}
