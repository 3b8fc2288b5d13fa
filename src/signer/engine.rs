//! The signer proper: for a pushed image and the rules that cover it, make sure the registry holds
//! exactly one signature per rule.
//!
//! Idempotence: within one process, everything for one (repository, digest) runs under the
//! [`SignatureStore`]'s lock: check that the manifest still exists and, for `Default` rules, that
//! the event's tag still names the event's digest (both from one GET of the manifest by its tag
//! when the bytes served hash to the event's digest; else a GET by digest and the tag's HEAD,
//! waiting `tag_patience` for a tag not linked yet); the store reads the `.sig` manifest (and
//! the referrers) at the same time, one round trip less on the path the registry's notification
//! queue waits on (wasted only for an event with nothing to sign); then it
//! skips every rule already satisfied (a signature that verifies under the rule's key and names
//! the rule's identity), signs the others and writes the manifest back once (the PUT's answer,
//! its digest checked, proves what was stored: no re-read).
//! Repeated events find the signatures there and add nothing. When a write would pass the layer
//! cap, the store drops the layers no rule's key verifies (counted in `sig_compactions`).
//!
//! Between instances (or with any other writer) the registry is the only shared state, and a
//! manifest PUT replaces the tag: two instances that read the same old manifest both write, and
//! the last write wins. That can *lose* a layer, never duplicate one, since a writer adds a layer
//! only for a rule it found unsatisfied in what it read, and a rule's signatures are equivalent.
//! A lost layer is repaired by (1) a recheck ([`Recheck`]), (2) the periodic reconcile, as a
//! last resort.
//!
//! The loser of such a race is whichever wrote first, and only a look after the other's write
//! can see it (the registry has no conditional write). Two ways to look:
//! - `Recheck::Events` (the default, one instance): the registry notifies every manifest push,
//!   the signature tags included. A push of a tag the signer wrote in the last 10 minutes (of
//!   the last 10,000 images), naming a digest it did not write, makes it sign that image again
//!   once the tag names that digest (bookkeeping in `watch.rs`). No request while nobody else writes. What it cannot
//!   see: an event the registry never delivers (its queue is in memory; an endpoint filter),
//!   left to the reconcile.
//! - `Recheck::After(d)` (several instances, `--recheck 2s`; the chart sets it for more than one
//!   replica): an event reaches one replica, maybe not the one that lost, so each looks by
//!   itself `d` after its write: one HEAD per tag written (the `.sig` tag, the fallback index)
//!   compared with the digest written, and the whole read-check-write again only when one
//!   changed. A HEAD is the cheapest look (no body); an image whose writes the registry indexed
//!   itself (`OCI-Subject`) has no index to look at.
//! - `Recheck::Immediately` (one-shot runs, `sign --backfill`): the stores look right after
//!   their own write.
//!
//! Registry requests per signed image (one `Default` rule, image pushed by tag, not yet signed;
//! distribution 2.8: no referrers API, a `POST` and a `PUT` per blob; seen request by request
//! through a recording proxy in tests/registry_cost.rs, counted by `examples/signer_load/`):
//!
//! | requests | `.sig` | bundle |
//! | --- | --- | --- |
//! | `GET manifests/<tag>`: hashes to the event's digest (the tag names it), one for both formats | 1 | 1 |
//! | the existing signatures: `GET` `.sig` / `GET` the fallback index | 1 | 1 |
//! | the new blob: payload / bundle (`POST`+`PUT`) | 2 | 2 |
//! | the empty config `{}` both name: nothing in a repository this signer wrote to, else one mounting `POST` (one for both) | 0 (1) | 0 (1) |
//! | `PUT` `.sig` / `PUT` bundle manifest and `PUT` index | 1 | 2 |
//! | per image (in a new repository) | 5 (6) | 6 (7) |
//! | with `--recheck 2s`, 2 s later: `HEAD` per tag written | +1 | +1 |
//!
//! Both formats: 10 (11 in a new repository; 12 and 13 with `--recheck 2s`), was 15 (the
//! `.sig`'s config was content-dependent: `POST`+`PUT` per image). Plus, while distribution has not linked the tag it notified
//! (it notifies first), the tag's GET asked again (usually one). The referrers API is asked once
//! per registry and 10 minutes. What blocks 5 here is the registry: no one-request upload (the
//! payload or bundle costs 2), no referrers API (the bundle's index is read and written); where a
//! registry has both, a `.sig` costs 5 and a bundle 4 with the tag's GET (tests/registry_cost.rs,
//! through a stand-in front).
//!
//! The signer's own pushes come back as events and cost nothing: `sha256-<hex>` tags are
//! compared with what the signer wrote there (never signed), the bundle manifests ignored by
//! digest (remembered when pushed).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

mod recheck;
mod write;

pub(super) use write::write_error;

use crate::controller::PolicyState;
use crate::crd::{SigningRule, Trigger};
use crate::crypto::PublicKey;
use crate::reference::ImageRef;
use crate::registry::{AppendOutcome, RegistryClient, RegistryError, SignatureStore, WrittenTag};
use crate::signature::{SignatureFormat, SignatureType};

use super::SignerError;
use super::event::{Classified, EnvelopeError, Ignored, PushedManifest, is_referrer, parse_events};
use super::keys::KeyCache;
use super::metrics::{IgnoreReason, Metrics, NothingToSign, RuleOutcome, RuleSkip};
use super::queue::{Acknowledge, QueueOptions, SigningQueue};
use super::rules::{AddressMap, CompiledRule, RuleSet};
use super::watch::TagWatch;

/// Retries of registry operations that failed for a reason that may pass.
#[derive(Clone, Copy, Debug)]
pub struct RetryPolicy {
    /// Attempts in all (at least 1).
    pub attempts: u32,
    /// Wait before the second attempt; doubled after each failure.
    pub initial_backoff: Duration,
    /// Longest wait between two attempts.
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 4,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(2),
        }
    }
}

/// How the signer behaves.
#[derive(Clone, Debug)]
pub struct SignerOptions {
    /// Images signed at once (events beyond wait for a worker).
    pub workers: usize,
    /// Event host -> scope host.
    pub aliases: AddressMap,
    /// Retries on registry errors.
    pub retry: RetryPolicy,
    /// How an image that got new signatures is looked at again, to repair a concurrent writer's
    /// overwrite (see the module documentation).
    pub recheck: Recheck,
    /// How long a `Default` rule waits for the event's tag to name the event's digest before it
    /// gives up (`tag_moved`). The registry sends a push event before it links the tag (CNCF
    /// distribution stores the manifest, notifies, then tags), so "not yet" must not be read as
    /// "moved"; a tag still elsewhere after this long was moved, or the event was forged.
    pub tag_patience: Duration,
    /// When `POST /events` answers a covered push: once signed (the default), or once queued
    /// (`super::queue`).
    pub acknowledge: Acknowledge,
    /// The queue of [`Acknowledge::Queued`].
    pub queue: QueueOptions,
}

impl Default for SignerOptions {
    fn default() -> Self {
        SignerOptions {
            workers: 16,
            aliases: AddressMap::default(),
            retry: RetryPolicy::default(),
            recheck: Recheck::Events,
            tag_patience: Duration::from_secs(5),
            acknowledge: Acknowledge::Signed,
            queue: QueueOptions::default(),
        }
    }
}

/// How the signer finds out that another writer replaced a signature tag it wrote (a manifest
/// PUT replaces the tag; see the module documentation).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Recheck {
    /// From the registry's events: a push of a tag the signer wrote in the last
    /// [`WATCH_WINDOW`], naming a digest it did not write, signs the image again. No request
    /// while nobody else writes. For one instance: an event reaches one replica only.
    #[default]
    Events,
    /// One `HEAD` per tag written this long after the write, and everything again when one
    /// changed: for several instances.
    After(Duration),
    /// The stores look right after their own write, before the cycle ends (one-shot runs).
    Immediately,
}

/// How long a written signature tag is watched through the registry's events
/// ([`Recheck::Events`]); later, the periodic reconcile is the safety net.
pub const WATCH_WINDOW: Duration = Duration::from_secs(600);
/// Images watched at most ([`Recheck::Events`]; the oldest go first): about 1 KB each, and a
/// writer's race lasts seconds, while 10,000 images take minutes to sign at this registry speed.
const WATCH_CAPACITY: usize = 10_000;

/// What handling one event did.
#[derive(Debug)]
pub enum EventOutcome {
    /// Not a push to sign.
    Ignored(Ignored),
    /// A push no Automatic rule covers (`manual` when only Manual rules do).
    OutOfScope {
        /// True when a Manual rule covers the repository (signed only on request).
        manual: bool,
    },
    /// The manifest is gone (deleted since the push) or is a referrer artifact: nothing to sign.
    NothingToSign(NothingToSign),
    /// The covering rules are satisfied.
    Signed(Ensured),
    /// Signing failed; the registry should send the event again.
    Failed(SignerError),
}

/// What [`Signer::ensure_signed`] did, rule by rule.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ensured {
    /// Rules whose signature was added.
    pub added: Vec<String>,
    /// Rules whose signature was already there.
    pub present: Vec<String>,
    /// Rules not applied, with the reason (a `Default` rule and a push without a tag, or a tag
    /// that no longer names the digest).
    pub skipped: Vec<(String, RuleSkip)>,
    /// For an index (multi-arch image): each platform manifest it lists, and what was done for
    /// it under the same rules and identity.
    pub platforms: Vec<(String, Ensured)>,
}

/// The signer: cheap to clone, shared by the HTTP handlers and the reconcile loop.
#[derive(Clone)]
pub struct Signer {
    inner: Arc<Inner>,
}

struct Inner {
    store: SignatureStore,
    policy: PolicyState,
    rules: Mutex<(Arc<Vec<SigningRule>>, Arc<RuleSet>)>,
    keys: Arc<KeyCache>,
    workers: Arc<Semaphore>,
    options: SignerOptions,
    metrics: Metrics,
    watch: TagWatch,
    queue: SigningQueue,
}

/// A [`Signer`] that does not keep it alive (the queue's dispatcher holds one).
pub(super) struct WeakSigner(std::sync::Weak<Inner>);

impl WeakSigner {
    /// The signer, while anything else still holds it.
    pub(super) fn upgrade(&self) -> Option<Signer> {
        self.0.upgrade().map(|inner| Signer { inner })
    }
}

impl Signer {
    /// A signer writing through `store`, reading its rules from `policy`.
    pub fn new(store: SignatureStore, policy: PolicyState, options: SignerOptions) -> Self {
        let source = policy.signing_rules();
        let compiled = Arc::new(RuleSet::compile(&source));
        let metrics = Metrics::new();
        metrics.common().observe_policy(policy.clone());
        metrics.workers.set(options.workers.max(1) as i64);
        metrics.known_rules(compiled.all().iter().map(|rule| rule.name.as_str()));
        if options.acknowledge == Acknowledge::Queued {
            metrics.queue.capacity.set(options.queue.capacity as i64);
        }
        let queue = SigningQueue::new(options.queue, metrics.queue.clone());
        Signer {
            inner: Arc::new(Inner {
                store,
                policy,
                rules: Mutex::new((source, compiled)),
                keys: Arc::default(),
                workers: Arc::new(Semaphore::new(options.workers.max(1))),
                options,
                metrics,
                watch: TagWatch::new(WATCH_WINDOW, WATCH_CAPACITY),
                queue,
            }),
        }
    }

    /// Opens the key of every current rule, so that a wrong PIN, a missing token or a missing
    /// key file is an error at start rather than at the first push.
    pub async fn open_keys(&self) -> Result<(), SignerError> {
        let rules = self.rules();
        for rule in rules.all() {
            let key = self.inner.keys.key_for_async(rule).await?;
            if rule.formats.contains(&SignatureFormat::Notation) {
                super::notation::notation_signer(rule, key)?;
            }
        }
        Ok(())
    }

    /// The rules of the latest published picture, compiled (recompiled only when it changed).
    pub fn rules(&self) -> Arc<RuleSet> {
        let latest = self.inner.policy.signing_rules();
        let mut cached = self.inner.rules.lock().unwrap_or_else(|p| p.into_inner());
        if !Arc::ptr_eq(&cached.0, &latest) {
            let compiled = Arc::new(RuleSet::compile(&latest));
            self.inner
                .metrics
                .known_rules(compiled.all().iter().map(|rule| rule.name.as_str()));
            *cached = (Arc::clone(&latest), compiled);
        }
        Arc::clone(&cached.1)
    }

    /// Whether the policy source has synced (what `/readyz` reports).
    pub fn is_ready(&self) -> bool {
        self.inner.policy.is_ready()
    }

    /// The metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// The registry client the signer uses.
    pub fn client(&self) -> &RegistryClient {
        self.inner.store.client()
    }

    /// The options the signer was built with.
    pub fn options(&self) -> &SignerOptions {
        &self.inner.options
    }

    pub(super) fn queue(&self) -> &SigningQueue {
        &self.inner.queue
    }

    pub(super) fn downgrade(&self) -> WeakSigner {
        WeakSigner(Arc::downgrade(&self.inner))
    }

    /// Handles one notification body: every event in it, concurrently (bounded by the workers).
    pub async fn handle_notification(
        &self,
        body: &[u8],
    ) -> Result<Vec<EventOutcome>, EnvelopeError> {
        let events = parse_events(body)?;
        let received = Instant::now();
        let handled = events.into_iter().map(|event| async move {
            self.inner.metrics.events_received.inc();
            match event {
                Classified::Ignore(why) => {
                    tracing::debug!(reason = %why, "event ignored");
                    self.inner.metrics.ignored(why.label());
                    EventOutcome::Ignored(why)
                }
                Classified::Sign(push) => self.handle_push(&push, received).await,
                Classified::SignatureTag(push) => self.noticed_signature_tag(&push),
            }
        });
        Ok(futures::future::join_all(handled).await)
    }

    /// The image a push names (scope host, repository, tag, digest) and the Automatic rules that
    /// cover it; else the answer for a push there is nothing to do for (malformed, out of scope,
    /// only Manual rules), counted. No I/O.
    pub(super) fn automatic_scope(
        &self,
        push: &PushedManifest,
    ) -> Result<(ImageRef, Vec<Arc<CompiledRule>>), EventOutcome> {
        let metrics = &self.inner.metrics;
        let host = self.inner.options.aliases.scope_host(&push.host);
        // With the digest in the text, a push without a tag stays without one (no `latest`).
        let identity = match ImageRef::from_parts(
            &host,
            &push.repository,
            push.tag.as_deref(),
            Some(&push.digest),
        ) {
            Ok(i) => i,
            Err(e) => {
                let why = Ignored::Malformed(e.to_string());
                metrics.ignored(why.label());
                return Err(EventOutcome::Ignored(why));
            }
        };
        let rules = self.rules();
        let covering = rules.covering(&identity, Trigger::Automatic);
        if covering.is_empty() {
            let manual = rules.any_covers(&identity);
            metrics.ignored(if manual {
                IgnoreReason::ManualRule
            } else {
                IgnoreReason::OutOfScope
            });
            return Err(EventOutcome::OutOfScope { manual });
        }
        Ok((identity, covering))
    }

    /// Signs one pushed manifest under every Automatic rule that covers it.
    pub async fn handle_push(&self, push: &PushedManifest, received: Instant) -> EventOutcome {
        let metrics = &self.inner.metrics;
        let host = self.inner.options.aliases.scope_host(&push.host);
        let (identity, covering) = match self.automatic_scope(push) {
            Ok(scope) => scope,
            Err(answered) => return answered,
        };
        let _pending = Pending::start(metrics);
        let _worker = match self.inner.workers.acquire().await {
            Ok(permit) => permit,
            Err(_) => {
                return EventOutcome::Failed(SignerError::Internal("worker pool closed".into()));
            }
        };
        // A push by digest alone is how referrers arrive (bundles, Notation signatures, SBOMs):
        // told from the manifest before any rule is weighed, so that a Default rule does not
        // warn about a missing tag for every signature signet itself writes.
        if push.tag.is_none() && self.inner.store.wrote_referrer(&push.digest) {
            metrics.ignored(NothingToSign::Referrer);
            return EventOutcome::NothingToSign(NothingToSign::Referrer);
        }
        if push.tag.is_none() {
            match self
                .inner
                .store
                .client()
                .fetch_manifest(&identity.with_digest(&push.digest))
                .await
            {
                Ok(Some(m)) if is_referrer(&m.bytes) => {
                    metrics.ignored(NothingToSign::Referrer);
                    return EventOutcome::NothingToSign(NothingToSign::Referrer);
                }
                Ok(None) => {
                    metrics.ignored(NothingToSign::ManifestGone);
                    return EventOutcome::NothingToSign(NothingToSign::ManifestGone);
                }
                // An image pushed by digest, or a read that failed: the rules decide as before.
                _ => {}
            }
        }
        let outcome = self.sign_pushed(&identity, &push.digest, &covering).await;
        match &outcome {
            EventOutcome::Failed(e) => {
                if let Some(kind) = e.registry_failure_kind() {
                    metrics.registry_outcome(&host, Some(kind));
                }
            }
            _ => metrics.registry_outcome(&host, None),
        }
        match &outcome {
            EventOutcome::Signed(ensured) => {
                metrics
                    .signing_latency
                    .observe(received.elapsed().as_secs_f64());
                tracing::info!(
                    image = %identity.with_digest(&push.digest),
                    added = ?ensured.added,
                    present = ?ensured.present,
                    "signed"
                );
            }
            EventOutcome::Failed(e) => {
                metrics.failure(e.metric_reason());
                for rule in &covering {
                    metrics.rule_outcome(&rule.name, RuleOutcome::Failed);
                }
                tracing::warn!(image = %identity.with_digest(&push.digest), error = %e, "signing failed");
            }
            EventOutcome::NothingToSign(why) => metrics.ignored(*why),
            _ => {}
        }
        outcome
    }

    async fn sign_pushed(
        &self,
        identity: &ImageRef,
        digest: &str,
        rules: &[Arc<CompiledRule>],
    ) -> EventOutcome {
        match self
            .ensure_signed_checked(identity, digest, rules, true)
            .await
        {
            Ok(Ok(ensured)) => EventOutcome::Signed(ensured),
            Ok(Err(why)) => EventOutcome::NothingToSign(why),
            Err(e) if e.is_not_found() => EventOutcome::NothingToSign(NothingToSign::ManifestGone),
            Err(e) => EventOutcome::Failed(e),
        }
    }

    /// Makes sure `identity` (scope host, repository, and the tag when there is one) at `digest`
    /// holds one signature per rule, retrying registry errors with backoff; schedules a recheck
    /// when it added any.
    pub async fn ensure_signed(
        &self,
        identity: &ImageRef,
        digest: &str,
        rules: &[Arc<CompiledRule>],
    ) -> Result<Ensured, SignerError> {
        self.ensure_signed_checked(identity, digest, rules, false)
            .await
            // Without the manifest check there is no "nothing to sign".
            .map(|r| r.unwrap_or_default())
    }

    /// Signs the platform manifests an index lists (its manifest `index_bytes`, at `index`) under
    /// `rules`, with the index's identity: a `Default` rule binds the tag, which must name the
    /// index. Nothing for a manifest that is not an index. Used by the reconcile pass, which has
    /// the manifest already.
    pub async fn ensure_platforms_signed(
        &self,
        identity: &ImageRef,
        index: &str,
        index_bytes: &[u8],
        rules: &[Arc<CompiledRule>],
    ) -> Result<Vec<(String, Ensured)>, SignerError> {
        self.sign_platforms(identity, index, platform_manifests(index_bytes), rules)
            .await
    }

    async fn sign_platforms(
        &self,
        identity: &ImageRef,
        index: &str,
        platforms: Vec<String>,
        rules: &[Arc<CompiledRule>],
    ) -> Result<Vec<(String, Ensured)>, SignerError> {
        let mut done = Vec::with_capacity(platforms.len());
        for child in platforms {
            match self
                .ensure_signed_once(identity, &child, index, rules, false)
                .await?
            {
                Ok((ensured, _, _)) => done.push((child, ensured)),
                Err(why) => tracing::warn!(
                    image = %identity.with_digest(&child),
                    reason = ?why,
                    "platform manifest of the index not signed"
                ),
            }
        }
        Ok(done)
    }

    /// [`Signer::ensure_signed`], checking first (when `check_manifest`) that the manifest still
    /// exists and is not a referrer: `Ok(Err(reason))` when there is nothing to sign.
    async fn ensure_signed_checked(
        &self,
        identity: &ImageRef,
        digest: &str,
        rules: &[Arc<CompiledRule>],
        check_manifest: bool,
    ) -> Result<Result<Ensured, NothingToSign>, SignerError> {
        let writing = self.begin_watch(identity, digest);
        let (mut ensured, platforms, written_tags) = match self
            .ensure_signed_once(identity, digest, digest, rules, check_manifest)
            .await?
        {
            Ok(e) => e,
            Err(why) => return Ok(Err(why)),
        };
        if !ensured.added.is_empty() {
            self.after_write(writing, identity, digest, rules, written_tags);
        }
        // An index is signed with each platform manifest it lists, under the same identity: a
        // workload pinned to a platform digest (GitOps tools, `kubectl debug`) then verifies by
        // its own signatures, and children pushed by digest before their index (skipped then:
        // no tag) are signed when the index arrives. The tag must name the index.
        ensured.platforms = self
            .sign_platforms(identity, digest, platforms, rules)
            .await?;
        Ok(Ok(ensured))
    }

    /// [`Signer::ensure_signed_checked`] without the recheck: signs `digest` under `rules`, a
    /// `Default` rule only while the tag names `tag_digest` (the digest itself, or the index that
    /// lists it). With `check_manifest`, also gives the platform manifests when `digest` is an
    /// index.
    async fn ensure_signed_once(
        &self,
        identity: &ImageRef,
        digest: &str,
        tag_digest: &str,
        rules: &[Arc<CompiledRule>],
        check_manifest: bool,
    ) -> Result<Result<SignedOnce, NothingToSign>, SignerError> {
        let mut ensured = Ensured::default();
        let mut keyed = Vec::with_capacity(rules.len());
        for rule in rules {
            if rule.signature_type == SignatureType::Default && identity.tag().is_none() {
                self.inner.metrics.skip(RuleSkip::DefaultNeedsTag);
                self.inner
                    .metrics
                    .rule_outcome(&rule.name, RuleOutcome::Skipped);
                tracing::warn!(
                    rule = %rule.name,
                    image = %identity.with_digest(digest),
                    "pushed by digest without a tag: a Default rule binds a tag, so it does not sign"
                );
                ensured
                    .skipped
                    .push((rule.name.clone(), RuleSkip::DefaultNeedsTag));
                continue;
            }
            let key = match self.inner.keys.cached(rule) {
                Some(key) => key,
                None => self.inner.keys.key_for_async(rule).await?,
            };
            keyed.push((Arc::clone(rule), key));
        }
        if keyed.is_empty() {
            return Ok(Ok((ensured, Vec::new(), Vec::new())));
        }
        let keep = self.configured_keys();
        let store = &self.inner.store;
        let written = self
            .with_retries(|| async {
                let lock = store.lock(identity, digest).await;
                self.check_and_write(
                    &lock,
                    identity,
                    (digest, tag_digest),
                    &keyed,
                    &keep,
                    check_manifest,
                )
                .await
            })
            .await?;
        let written = match written {
            Ok(w) => w,
            Err(why) => return Ok(Err(why)),
        };
        let metrics = &self.inner.metrics;
        for rule in &written.tag_moved {
            metrics.skip(RuleSkip::TagMoved);
            metrics.rule_outcome(rule, RuleOutcome::Skipped);
            tracing::warn!(
                rule = %rule,
                image = %identity.with_digest(digest),
                "the tag no longer names this digest: a Default rule would bind it to another image, so it does not sign"
            );
            ensured.skipped.push((rule.clone(), RuleSkip::TagMoved));
        }
        for (rule, outcome) in written.signing.iter().zip(&written.report.outcomes) {
            match outcome {
                AppendOutcome::Added => {
                    metrics.rule_outcome(rule, RuleOutcome::Signed);
                    ensured.added.push(rule.clone());
                }
                AppendOutcome::AlreadyPresent => {
                    metrics.rule_outcome(rule, RuleOutcome::AlreadySigned);
                    ensured.present.push(rule.clone());
                }
            }
        }
        metrics.signed.inc_by(ensured.added.len() as u64);
        metrics.already_signed.inc_by(ensured.present.len() as u64);
        metrics
            .overwritten
            .inc_by(written.report.overwritten as u64);
        if let Some(compaction) = written.report.compaction {
            metrics.sig_compactions.inc();
            metrics.sig_layers_dropped.inc_by(compaction.dropped as u64);
            tracing::warn!(
                image = %identity.with_digest(digest),
                dropped = compaction.dropped,
                kept = compaction.kept,
                "signature manifest compacted: dropped layers no rule's key verifies"
            );
        }
        Ok(Ok((ensured, written.platforms, written.written_tags)))
    }

    /// The public keys of every rule whose key is open: what compaction keeps. Keys are opened
    /// at start ([`Signer::open_keys`]) and on first use; one that cannot be opened is not
    /// retried here on every event.
    fn configured_keys(&self) -> Vec<PublicKey> {
        self.rules()
            .all()
            .iter()
            .filter_map(|rule| self.inner.keys.cached(rule))
            .map(|key| key.public_key().clone())
            .collect()
    }

    /// Runs `op`, retrying with backoff while it fails with a retryable error.
    async fn with_retries<T, F, Fut>(&self, mut op: F) -> Result<T, SignerError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, SignerError>>,
    {
        let policy = self.inner.options.retry;
        let mut backoff = policy.initial_backoff;
        let mut attempt = 1;
        loop {
            match op().await {
                Ok(v) => return Ok(v),
                Err(e) if e.is_retryable() && attempt < policy.attempts.max(1) => {
                    tracing::debug!(error = %e, attempt, "registry error; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(policy.max_backoff);
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Waits for a worker (reconcile shares the pool with events).
    pub(crate) async fn worker(&self) -> Option<tokio::sync::SemaphorePermit<'_>> {
        self.inner.workers.acquire().await.ok()
    }
}

/// What one signing of a digest did, the platform manifests when it is an index, and the tags
/// it wrote (for the recheck).
type SignedOnce = (Ensured, Vec<String>, Vec<WrittenTag>);

/// Platform manifests an index lists beyond which none are signed: an index is written by whoever
/// may push, so its size must not decide how much the signer does.
const MAX_PLATFORM_MANIFESTS: usize = 64;

/// The image manifests an OCI index or Docker manifest list names (at most
/// [`MAX_PLATFORM_MANIFESTS`]); empty for anything else. Build attestation manifests (buildx's
/// `vnd.docker.reference.type: attestation-manifest`) are not images and are left out, as cosign
/// leaves them.
pub(super) fn platform_manifests(bytes: &[u8]) -> Vec<String> {
    #[derive(serde::Deserialize)]
    struct Index {
        #[serde(default)]
        manifests: Vec<Entry>,
    }
    #[derive(serde::Deserialize)]
    struct Entry {
        #[serde(rename = "mediaType", default)]
        media_type: String,
        digest: String,
        #[serde(default)]
        annotations: std::collections::BTreeMap<String, String>,
    }
    let Ok(index) = serde_json::from_slice::<Index>(bytes) else {
        return Vec::new();
    };
    index
        .manifests
        .into_iter()
        .filter(|e| {
            matches!(
                e.media_type.as_str(),
                crate::registry::OCI_MANIFEST_MEDIA_TYPE
                    | crate::registry::DOCKER_MANIFEST_MEDIA_TYPE
            )
        })
        .filter(|e| {
            e.annotations
                .get("vnd.docker.reference.type")
                .map(String::as_str)
                != Some("attestation-manifest")
        })
        .filter_map(|e| crate::reference::normalise_digest(&e.digest))
        .take(MAX_PLATFORM_MANIFESTS)
        .collect()
}

impl From<RegistryError> for SignerError {
    fn from(e: RegistryError) -> Self {
        SignerError::Registry(e)
    }
}

/// One image counted in `pending_images` while it waits for a worker or is being signed.
struct Pending<'a>(&'a Metrics);

impl<'a> Pending<'a> {
    fn start(metrics: &'a Metrics) -> Self {
        metrics.pending_images.inc();
        Pending(metrics)
    }
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        self.0.pending_images.dec();
    }
}
