//! The per-image judge of admission: parse the reference (cached), ask the engine whether any
//! policy governs it (no registry call when none does), look the digest and signatures up
//! (coalesced and cached in [`super::lookup`]), evaluate, and keep the verdict.
//!
//! Signatures are read in stages: the store the governing policies' attestors can be satisfied
//! from first (`Snapshot::read_order`); when the verdict on it is settled (every governing
//! policy passed) it is the answer, else the other store is read and every signature judged,
//! as a full read would (see [`super::lookup`] for the requests this saves).
//!
//! Verdicts are cached by (snapshot generation, namespace, normalised reference, digest). An
//! allowed verdict lives as long as the signature cache (`--signature-cache-ttl`), so deleting a
//! signature matters within that time; a failing one lives at most `verdict::FAILED_VERDICT_TTL`.

use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use tokio::sync::OnceCell;

use super::admitted::{AdmittedImages, Hits, Judged};
use super::decide::DecisionSettings;
use super::images::{Workload, distinct_images};
use super::lookup::{LookupTimings, Lookups, RequestRegistry};
use super::metrics::{CacheName, GraceOutcome, Metrics};
use super::namespaces::{Labels, NamespaceReader};
use super::pull_secrets::PullSecrets;
use super::signature_entry::SignatureEntry;
use super::verdict::{CachedVerdict, verdict_key_of};
use super::verdict_cache::{ExpiringMap, text_shard};
use crate::controller::PolicyState;
use crate::crd::Trigger;
use crate::policy::{Governing, ImageVerdict, Lookup, NoMatch, Snapshot};
use crate::reference::ImageRef;
use crate::registry::LookupFailure::{self, NotLookedUp};
use crate::registry::{RegistryClient, SignatureSource};

/// Parsed references kept (parsing is pure, so they never go stale; the bound is for memory).
const PARSED_REFERENCES: usize = 10_000;
/// Workloads repeat the same few references, so each is parsed once an hour at most.
const PARSED_REFERENCE_TTL: Duration = Duration::from_secs(3600);

/// A reference parsed once: the parsed form and its normalised text (part of the verdict key).
pub(crate) struct ParsedImage {
    image: ImageRef,
    normalised: Box<str>,
}

/// The outcome for one distinct image of a request.
#[derive(Clone, Debug)]
pub(crate) struct ImageOutcome<'a> {
    /// The image as the workload writes it (borrowed from the review).
    pub written: &'a str,
    /// The digest judged (resolved, or named by the reference).
    pub digest: Option<Arc<str>>,
    /// What the engine said.
    pub verdict: Arc<CachedVerdict>,
}

/// Judges images: everything a verdict needs, shared by all requests.
pub(crate) struct Judge {
    policy: PolicyState,
    registry: RegistryClient,
    lookups: Arc<Lookups>,
    timings: LookupTimings,
    verdicts: ExpiringMap<[u8; 16], Arc<CachedVerdict>>,
    /// Shared by every cached [`CachedVerdict::plain_verified`].
    plain_verified: Arc<CachedVerdict>,
    /// Shared by every image no policy governs under `--no-match allow`.
    ungoverned: Arc<CachedVerdict>,
    references: ExpiringMap<Box<str>, Arc<ParsedImage>>,
    /// The fast path: (namespace, written image) -> digest and verdict.
    admitted: AdmittedImages,
    pull_secrets: Option<PullSecrets>,
    /// Reads the labels of namespaces the picture has not seen yet (cluster mode).
    namespaces: Option<NamespaceReader>,
    metrics: Arc<Metrics>,
    /// The request deadline, named in the reason of a lookup that ran out of time.
    deadline: Duration,
    /// `--signing-grace`.
    signing_grace: Duration,
}

impl Judge {
    /// A judge reading `policy`, looking images up through `registry`; with a `kube` client,
    /// it reads unknown namespaces' labels and (when `settings.pull_secrets`) pull secrets.
    pub fn new(
        policy: PolicyState,
        registry: RegistryClient,
        kube: Option<kube::Client>,
        settings: &DecisionSettings,
        metrics: Arc<Metrics>,
    ) -> Self {
        let cache_size = settings.cache_size;
        Judge {
            policy,
            registry,
            lookups: Arc::new(Lookups::new(
                cache_size,
                settings.timings,
                Arc::clone(&metrics),
            )),
            timings: settings.timings,
            verdicts: ExpiringMap::new(usize::try_from(cache_size).unwrap_or(usize::MAX)),
            plain_verified: Arc::new(CachedVerdict::plain_verified()),
            ungoverned: Arc::new(CachedVerdict {
                allowed: true,
                pinnable: false,
                verified: false,
                denial: None,
                warnings: Box::new([]),
            }),
            references: ExpiringMap::new(PARSED_REFERENCES),
            admitted: AdmittedImages::new(usize::try_from(cache_size).unwrap_or(usize::MAX)),
            pull_secrets: kube
                .clone()
                .filter(|_| settings.pull_secrets)
                .map(PullSecrets::new),
            namespaces: kube.map(NamespaceReader::new),
            metrics,
            deadline: settings.deadline,
            signing_grace: settings.signing_grace,
        }
    }

    /// Whether the policy picture has synced.
    pub fn is_ready(&self) -> bool {
        self.policy.is_ready()
    }

    /// Verdicts cached now (expired ones not counted).
    pub fn cached_verdicts(&self) -> u64 {
        self.verdicts.live_entries()
    }

    /// These lookups (caches, lookups in flight, pull secrets), lent to the audit.
    pub fn audit_lookups(&self) -> super::audit_source::AdmissionLookups {
        super::audit_source::AdmissionLookups::new(
            Arc::clone(&self.lookups),
            self.registry.clone(),
            self.pull_secrets.clone(),
        )
    }

    /// `written` parsed, from the parsed-reference cache when it is there.
    fn parse_reference(&self, written: &str) -> Result<Arc<ParsedImage>, String> {
        let hint = text_shard(written);
        if let Some(parsed) = self.references.get(hint, written) {
            return Ok(parsed);
        }
        let image = ImageRef::parse(written).map_err(|e| e.to_string())?;
        let parsed = Arc::new(ParsedImage {
            normalised: image.to_string().into_boxed_str(),
            image,
        });
        self.references.insert(
            hint,
            Box::from(written),
            Arc::clone(&parsed),
            PARSED_REFERENCE_TTL,
        );
        Ok(parsed)
    }

    /// Judges every distinct image of `workload` at once.
    /// Every distinct image of `workload` with its outcome, when all of them were judged under
    /// the current policy generation and are still fresh (see [`AdmittedImages`]); else the
    /// distinct images, for [`Judge::judge_images`]. Takes no lock but the fast path's own.
    /// A hit implies the snapshot of that generation knew the namespace's labels: entries are
    /// made only then.
    pub fn admitted_outcomes<'w>(
        &self,
        workload: &'w Workload<'_>,
    ) -> Result<Hits<'w>, Vec<&'w str>> {
        self.admitted.outcomes(
            self.policy.generation(),
            &workload.namespace,
            distinct_images(workload),
            &self.metrics,
        )
    }

    /// Looks up `images` (written text and digest, as [`Judge::admitted_outcomes`] handed them
    /// back for a refresh) in the registry again, ahead of their entries' expiry: what is cached
    /// of each is dropped first (the fast path's entry still answers meanwhile), then they are
    /// judged as missed images are, which replaces their entries.
    pub async fn refresh_images(
        &self,
        workload: &Workload<'_>,
        images: Vec<(String, Arc<str>)>,
        deadline: tokio::time::Instant,
    ) {
        let generation = self.policy.generation();
        for (written, digest) in &images {
            let Ok(parsed) = self.parse_reference(written) else {
                continue;
            };
            let key = verdict_key_of(generation, &workload.namespace, &parsed.normalised, digest);
            self.verdicts.expire(key[0], &key);
            self.lookups
                .forget(&parsed.image, &parsed.normalised, digest)
                .await;
        }
        let written = images.iter().map(|(written, _)| written.as_str()).collect();
        self.judge_images(workload, written, deadline).await;
    }

    /// Judges `images` (the distinct images of `workload` that [`Judge::admitted_outcomes`]
    /// gave back) at once.
    pub async fn judge_images<'w>(
        &self,
        workload: &Workload<'_>,
        images: Vec<&'w str>,
        deadline: tokio::time::Instant,
    ) -> Vec<ImageOutcome<'w>> {
        let snapshot = self.policy.snapshot();
        let labels = match self
            .unknown_namespace_labels(&snapshot, &workload.namespace)
            .await
        {
            Ok(labels) => labels,
            Err(reason) => {
                let denied = Arc::new(CachedVerdict::denied(reason));
                return images
                    .into_iter()
                    .map(|written| ImageOutcome {
                        written,
                        digest: None,
                        verdict: Arc::clone(&denied),
                    })
                    .collect();
            }
        };
        // Labels read for this request are not part of the fast path's key: only images of
        // namespaces the snapshot knows are remembered.
        let remember = labels.is_none();
        // Credentials are read (through the API) only if some image needs the registry, and
        // then once for all of them.
        let registry = OnceCell::new();
        let judged = images.iter().map(|written| {
            let governing = |image: &ImageRef| match &labels {
                Some(labels) => snapshot.governing_in(&workload.namespace, labels, image),
                None => snapshot.governing(&workload.namespace, image),
            };
            let request = ImageRequest {
                workload,
                snapshot: &snapshot,
                registry: &registry,
                deadline,
                remember,
            };
            self.judge_image(written, governing, request)
        });
        join_all(judged).await
    }

    /// `None` when the picture knows the namespace (or there is no API to ask); else its labels
    /// as the API gives them now.
    async fn unknown_namespace_labels(
        &self,
        snapshot: &Snapshot,
        namespace: &str,
    ) -> Result<Option<Arc<Labels>>, String> {
        match &self.namespaces {
            Some(reader) if !snapshot.knows_namespace(namespace) => {
                reader.labels(namespace).await.map(Some)
            }
            _ => Ok(None),
        }
    }

    async fn judge_image<'w>(
        &self,
        written: &'w str,
        governing: impl Fn(&ImageRef) -> Governing,
        request: ImageRequest<'_>,
    ) -> ImageOutcome<'w> {
        let ImageRequest {
            workload,
            snapshot,
            registry,
            deadline,
            ..
        } = request;
        let namespace = &*workload.namespace;
        let parsed = match self.parse_reference(written) {
            Ok(parsed) => parsed,
            Err(e) => {
                return ImageOutcome {
                    written,
                    digest: None,
                    verdict: Arc::new(CachedVerdict::denied(format!("{written}: {e}"))),
                };
            }
        };
        let image = &parsed.image;
        let governing = governing(image);
        if governing.is_empty() {
            // No registry access for images no policy governs: the engine applies --no-match.
            // Allowed, it is the same verdict for every such image, shared rather than rebuilt.
            let verdict = if snapshot.options().no_match == NoMatch::Allow {
                Arc::clone(&self.ungoverned)
            } else {
                let verdict =
                    snapshot.evaluate_governed(&governing, image, &Lookup::failed(NotLookedUp));
                Arc::new(CachedVerdict::of(&verdict))
            };
            // Nothing looked up, so nothing expires but the generation (and the reference's
            // parse, which is pure).
            let until = std::time::Instant::now() + PARSED_REFERENCE_TTL;
            self.remember(&request, written, &parsed, None, &verdict, until);
            return ImageOutcome {
                written,
                digest: None,
                verdict,
            };
        }
        // When the digest judged stops being cached (never, for a reference naming it).
        let mut resolved_until = None;
        let looked_up = tokio::time::timeout_at(
            deadline,
            self.look_up(&parsed, workload, snapshot, &governing, registry),
        )
        .await;
        let (digest, lookup, verdict) = match looked_up {
            Ok(Looked::Cached(digest, verdict, until)) => {
                self.remember(&request, written, &parsed, Some(&digest), &verdict, until);
                return ImageOutcome {
                    written,
                    digest: Some(digest),
                    verdict,
                };
            }
            Ok(Looked::Fetched(digest, entry, digest_until)) => {
                resolved_until = digest_until;
                let (lookup, verdict) = self
                    .judge_staged(
                        written, snapshot, &governing, &parsed, &digest, entry, registry, deadline,
                    )
                    .await;
                (Some(digest), lookup, verdict)
            }
            Ok(Looked::Failed(failure)) => {
                self.judge_failed(
                    written,
                    snapshot,
                    &governing,
                    &parsed,
                    Lookup::Failed { failure },
                )
                .await
            }
            Err(_elapsed) => {
                let deadline = LookupFailure::Deadline {
                    host: image.registry().to_string(),
                    after: self.deadline,
                };
                self.judge_failed(
                    written,
                    snapshot,
                    &governing,
                    &parsed,
                    Lookup::failed(deadline),
                )
                .await
            }
        };
        let found = matches!(lookup, Lookup::Found { .. });
        let unsigned = matches!(&lookup, Lookup::Found { signatures, .. } if signatures.is_empty());
        // A lookup that failed at its second store counts as failed, as a full read did.
        let digest = digest.filter(|_| found);
        let mut verdict = verdict;
        if let (false, true, Some(digest), Some(registry)) =
            (verdict.allowed, unsigned, &digest, registry.get())
            && let Some(rule) = self.expected_signer(image)
        {
            let grace = Grace {
                rule: &rule,
                digest,
                registry,
                deadline,
            };
            verdict = self
                .await_signing(written, snapshot, &governing, &parsed, grace, verdict)
                .await;
        }
        let verdict = if verdict == *self.plain_verified {
            Arc::clone(&self.plain_verified)
        } else {
            Arc::new(verdict)
        };
        if let (Some(digest), true) = (&digest, found) {
            let key = verdict_key_of(snapshot.generation(), namespace, &parsed.normalised, digest);
            let ttl = verdict.ttl(&self.timings);
            self.verdicts.insert(key[0], key, Arc::clone(&verdict), ttl);
            let verdict_until = std::time::Instant::now() + ttl;
            let until =
                resolved_until.map_or(verdict_until, |d: std::time::Instant| d.min(verdict_until));
            self.remember(&request, written, &parsed, Some(digest), &verdict, until);
        }
        ImageOutcome {
            written,
            digest: digest.or_else(|| image.digest().map(Arc::from)),
            verdict,
        }
    }

    /// Keeps `written`'s outcome for the fast path until `until`, when the request allows.
    fn remember(
        &self,
        request: &ImageRequest<'_>,
        written: &str,
        parsed: &ParsedImage,
        digest: Option<&Arc<str>>,
        verdict: &Arc<CachedVerdict>,
        until: std::time::Instant,
    ) {
        if request.remember {
            self.admitted.remember(Judged {
                generation: request.snapshot.generation(),
                namespace: &request.workload.namespace,
                written,
                digest,
                resolved: digest.is_some() && parsed.image.digest().is_none(),
                verdict,
                until,
            });
        }
    }

    /// The Automatic SigningRule whose scope covers `image`, when the grace is on: a signature
    /// for it is expected shortly after a push.
    fn expected_signer(&self, image: &ImageRef) -> Option<String> {
        if self.signing_grace.is_zero() {
            return None;
        }
        self.policy.signing_rules().iter().find_map(|rule| {
            let covers = rule.spec.trigger == Trigger::Automatic
                && rule
                    .spec
                    .scope
                    .iter()
                    .filter_map(|text| crate::reference::Glob::new(text).ok())
                    .any(|glob| glob.matches_push(image));
            covers.then(|| rule.metadata.name.clone().unwrap_or_default())
        })
    }

    /// Push-to-deploy grace: re-reads the signatures of an image that has none while the signer
    /// is expected to add one, until they arrive (then judged as usual: a bad signature is never
    /// waited for again), the grace ends, or the deadline nears. The denial then says what was
    /// expected.
    async fn await_signing(
        &self,
        written: &str,
        snapshot: &Arc<Snapshot>,
        governing: &Governing,
        parsed: &Arc<ParsedImage>,
        grace: Grace<'_>,
        denied: CachedVerdict,
    ) -> CachedVerdict {
        let now = tokio::time::Instant::now();
        // Leave time to answer: the API server's timeout is above the deadline, not far above.
        let answer_by = grace
            .deadline
            .checked_sub(Duration::from_millis(250))
            .unwrap_or(now);
        let until = (now + self.signing_grace).min(answer_by);
        let mut pause = Duration::from_millis(200);
        while tokio::time::Instant::now() + pause <= until {
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(1));
            let fresh = self
                .lookups
                .refresh_signatures(&parsed.image, grace.digest, grace.registry)
                .await;
            match fresh {
                Ok(signatures) if !signatures.is_empty() => {
                    self.metrics.signing_grace(GraceOutcome::Arrived);
                    let lookup = Lookup::found(grace.digest.to_string(), signatures);
                    return self
                        .evaluate(written, snapshot, governing.clone(), parsed, lookup)
                        .await
                        .0;
                }
                _ => self.metrics.signing_grace(GraceOutcome::StillUnsigned),
            }
        }
        let note = format!(
            "; signing was expected (SigningRule {} covers this image) and no signature arrived within {}",
            grace.rule,
            super::decide::format_duration(self.signing_grace)
        );
        CachedVerdict {
            denial: denied.denial.map(|d| format!("{d}{note}").into_boxed_str()),
            ..denied
        }
    }

    /// The verdict on an image whose lookup failed: no digest, the failure judged by the
    /// governing policies (each says whether it fails closed).
    async fn judge_failed(
        &self,
        written: &str,
        snapshot: &Arc<Snapshot>,
        governing: &Governing,
        parsed: &Arc<ParsedImage>,
        lookup: Lookup,
    ) -> (Option<Arc<str>>, Lookup, CachedVerdict) {
        let verdict = self
            .evaluate(written, snapshot, governing.clone(), parsed, lookup.clone())
            .await
            .0;
        (None, lookup, verdict)
    }

    /// The engine's verdict on `lookup`. Signature checks are CPU work (~0.1 ms each), so with
    /// signatures to check it runs as its own task: a pod's images then verify in parallel on
    /// the runtime's workers instead of one after another on the request's task. Not on the
    /// blocking pool: a burst of cold admissions there grows one thread (and malloc arena) per
    /// image, which cost 10 MiB of resident memory in the load test.
    async fn evaluate(
        &self,
        written: &str,
        snapshot: &Arc<Snapshot>,
        governing: Governing,
        parsed: &Arc<ParsedImage>,
        lookup: Lookup,
    ) -> (CachedVerdict, bool) {
        let has_signatures =
            matches!(&lookup, Lookup::Found { signatures, .. } if !signatures.is_empty());
        let judged = |verdict: ImageVerdict| (CachedVerdict::of(&verdict), verdict.settled());
        if !has_signatures {
            return judged(snapshot.evaluate_governed(&governing, &parsed.image, &lookup));
        }
        let snapshot = Arc::clone(snapshot);
        let parsed = Arc::clone(parsed);
        let checked = tokio::spawn(async move {
            judged(snapshot.evaluate_governed(&governing, &parsed.image, &lookup))
        })
        .await;
        checked.unwrap_or_else(|e| {
            (
                CachedVerdict::denied(format!("{written}: signature check failed: {e}")),
                false,
            )
        })
    }

    /// The staged read: the verdict on the store(s) read first when it is settled; else the
    /// other store is read (within the deadline) and every signature judged. Returns the lookup
    /// the final verdict rests on, and that verdict.
    #[allow(clippy::too_many_arguments)]
    async fn judge_staged(
        &self,
        written: &str,
        snapshot: &Arc<Snapshot>,
        governing: &Governing,
        parsed: &Arc<ParsedImage>,
        digest: &Arc<str>,
        first: Arc<SignatureEntry>,
        registry: &OnceCell<RequestRegistry>,
        deadline: tokio::time::Instant,
    ) -> (Lookup, CachedVerdict) {
        let mut entry = first;
        // Two rounds at most: the first store, then every store.
        loop {
            let lookup = match (entry.holds_all(), entry.unread_failure()) {
                // As a full read judged it: nothing readable anywhere is a failure saying why.
                (true, Some(failure)) => Lookup::failed(failure),
                // The engine borrows the cached signatures: no copy per evaluation.
                _ => Lookup::found(digest.to_string(), entry.signatures()),
            };
            let complete = entry.holds_all();
            let (verdict, settled) = self
                .evaluate(written, snapshot, governing.clone(), parsed, lookup.clone())
                .await;
            if complete || settled {
                return (lookup, verdict);
            }
            // `look_up` set the registry before the first store was read.
            let rest = match registry.get() {
                Some(registry) => {
                    tokio::time::timeout_at(
                        deadline,
                        self.lookups.signatures_from(
                            &parsed.image,
                            digest,
                            registry,
                            &SignatureSource::ALL,
                            Some(Arc::clone(&entry)),
                        ),
                    )
                    .await
                }
                None => Ok(Err(Arc::new(LookupFailure::NotLookedUp))),
            };
            let failure = match rest {
                Ok(Ok(all)) if all.holds_all() => {
                    entry = all;
                    continue;
                }
                Ok(Ok(_)) => Arc::new(LookupFailure::NotLookedUp),
                Ok(Err(failure)) => failure,
                Err(_elapsed) => Arc::new(LookupFailure::Deadline {
                    host: parsed.image.registry().to_string(),
                    after: self.deadline,
                }),
            };
            let lookup = Lookup::Failed { failure };
            let (verdict, _) = self
                .evaluate(written, snapshot, governing.clone(), parsed, lookup.clone())
                .await;
            return (lookup, verdict);
        }
    }

    /// Digest, then a cached verdict or the signatures.
    async fn look_up(
        &self,
        parsed: &ParsedImage,
        workload: &Workload<'_>,
        snapshot: &Snapshot,
        governing: &Governing,
        registry: &OnceCell<RequestRegistry>,
    ) -> Looked {
        let registry = registry
            .get_or_init(|| self.request_registry(workload))
            .await;
        let image = &parsed.image;
        // The normalised text of a reference without a digest is its `repo_with_tag`, the
        // digest cache's key: no key built per request.
        let digest = match self
            .lookups
            .digest_keyed(image, &parsed.normalised, registry)
            .await
        {
            Ok(digest) => digest,
            Err(reason) => return Looked::Failed(reason),
        };
        // A digest resolved from a tag is used until its cache entry expires (read back now;
        // an entry already gone reads as expiring at once, so nothing is kept on it).
        let digest_until = match image.digest() {
            Some(_) => None,
            None => Some(
                self.lookups
                    .digest_until(&parsed.normalised)
                    .unwrap_or_else(std::time::Instant::now),
            ),
        };
        let key = verdict_key_of(
            snapshot.generation(),
            &workload.namespace,
            &parsed.normalised,
            &digest,
        );
        if let Some((verdict, verdict_until)) = self.verdicts.get_until(key[0], &key) {
            self.metrics.cache(CacheName::Verdict, true);
            let until = digest_until.map_or(verdict_until, |d| d.min(verdict_until));
            return Looked::Cached(digest, verdict, until);
        }
        self.metrics.cache(CacheName::Verdict, false);
        let order = snapshot.read_order(governing);
        match self
            .lookups
            .signatures_from(image, &digest, registry, order.first_read(), None)
            .await
        {
            Ok(entry) => Looked::Fetched(digest, entry, digest_until),
            Err(reason) => Looked::Failed(reason),
        }
    }

    async fn request_registry(&self, workload: &Workload<'_>) -> RequestRegistry {
        let secrets = match &self.pull_secrets {
            Some(reader) => {
                reader
                    .credentials(
                        &workload.namespace,
                        &workload.image_pull_secrets,
                        workload.service_account.as_deref(),
                    )
                    .await
            }
            None => Vec::new(),
        };
        RequestRegistry::new(&self.registry, secrets)
    }
}

/// One image's request: what `judge_image` needs besides the image.
#[derive(Clone, Copy)]
struct ImageRequest<'a> {
    workload: &'a Workload<'a>,
    snapshot: &'a Arc<Snapshot>,
    registry: &'a OnceCell<RequestRegistry>,
    deadline: tokio::time::Instant,
    /// Whether outcomes may be kept for the fast path ([`AdmittedImages`]).
    remember: bool,
}

/// What the push-to-deploy grace waits on.
struct Grace<'a> {
    /// The SigningRule expected to sign.
    rule: &'a str,
    digest: &'a str,
    registry: &'a RequestRegistry,
    deadline: tokio::time::Instant,
}

enum Looked {
    /// The digest and its verdict, both cached until the instant given.
    Cached(Arc<str>, Arc<CachedVerdict>, std::time::Instant),
    /// The digest, and the signatures of the first store read (or more, when cached); when
    /// the digest stops being cached (`None`: the reference names it).
    Fetched(Arc<str>, Arc<SignatureEntry>, Option<std::time::Instant>),
    Failed(super::lookup::Failure),
}
