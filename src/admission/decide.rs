//! The decision for one AdmissionReview: exempt namespaces, breakglass, matching policies,
//! registry lookups (all images at once, under the deadline), the engine's verdicts, and the
//! answer with its warnings, audit annotations, events and (for `/mutate`) the pinning patch.
//!
//! Fail closed: a workload whose images cannot be read is denied; an image whose registry does
//! not answer before the deadline fails every `Enforce` policy that governs it, with a reason
//! naming the registry. `/mutate` never denies: it pins what verified and leaves the verdict to
//! `/validate`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::join_all;
use kube::core::DynamicObject;
use kube::core::admission::AdmissionRequest;
use sha2::Digest as _;
use tokio::sync::{OnceCell, Semaphore};

use super::events::{EventReason, EventSink, WorkloadEvent};
use super::images::{Workload, distinct_images, workload_of};
use super::lookup::{LookupTimings, Lookups, RequestRegistry};
use super::metrics::{AdmissionResult, CacheName, Endpoint, Metrics};
use super::patch::pin_patch;
use super::pull_secrets::PullSecrets;
use super::review::{Answer, ReviewError, parse_review};
use super::verdict_cache::ExpiringMap;
use crate::controller::PolicyState;
use crate::policy::{ImageVerdict, Lookup, Snapshot};
use crate::reference::ImageRef;
use crate::registry::RegistryClient;

/// The annotation that admits a workload whatever its images (`signet.dev/breakglass: "<reason>"`).
pub const BREAKGLASS_ANNOTATION: &str = "signet.dev/breakglass";

/// Audit annotation keys (the API server prefixes them with the webhook's name).
const AUDIT_RESULT: &str = "result";
const AUDIT_IMAGES: &str = "verified-images";
const AUDIT_BREAKGLASS: &str = "breakglass-reason";
/// Audit annotation values are kept short; the full story is in the message and events.
const MAX_AUDIT_VALUE: usize = 2048;

/// How long a verdict that allowed an image is reused (for the same digest and snapshot).
const ALLOWED_VERDICT_TTL: Duration = Duration::from_secs(600);
/// How long a failing verdict is reused: short, the image may be signed in a moment.
const FAILED_VERDICT_TTL: Duration = Duration::from_secs(10);
/// Parsed references kept (parsing is pure, so they never go stale; the bound is for memory).
const PARSED_REFERENCES: usize = 10_000;
/// Parsing a reference (a regex over the whole string) was a fifth of the webhook's CPU time
/// per cached request: workloads repeat the same few references, so they are parsed once.
const PARSED_REFERENCE_TTL: Duration = Duration::from_secs(3600);

/// The decision settings (flags).
#[derive(Clone, Debug)]
pub struct DecisionSettings {
    /// Bound on each request (`--deadline`).
    pub deadline: Duration,
    /// Namespaces whose workloads are allowed unchecked.
    pub exempt_namespaces: Vec<String>,
    /// Whether the breakglass annotation is honoured.
    pub breakglass: bool,
    /// Whether `/mutate` pins digests.
    pub mutate: bool,
    /// Entries per cache (verdicts, digests, signatures).
    pub cache_size: u64,
    /// Decisions in progress at once; more wait (within their deadline) for a slot.
    pub max_in_progress: usize,
    /// Cache lifetimes of registry answers.
    pub timings: LookupTimings,
}

impl Default for DecisionSettings {
    fn default() -> Self {
        DecisionSettings {
            deadline: Duration::from_secs(8),
            exempt_namespaces: vec!["kube-system".to_string()],
            breakglass: true,
            mutate: true,
            cache_size: 100_000,
            max_in_progress: 1024,
            timings: LookupTimings::default(),
        }
    }
}

/// What the engine said about one image, kept small: 100,000 of them must fit in a few MiB.
#[derive(Clone, Debug, PartialEq)]
struct CachedVerdict {
    allowed: bool,
    /// Every governing policy passed (the digest may be pinned).
    verified: bool,
    denial: Option<Box<str>>,
    warnings: Box<[Box<str>]>,
}

impl CachedVerdict {
    fn of(verdict: &ImageVerdict) -> Self {
        CachedVerdict {
            allowed: verdict.allowed,
            verified: verdict.allowed && !verdict.dry_run && !verdict.policies.is_empty(),
            denial: verdict.denial_message().map(String::into_boxed_str),
            warnings: verdict
                .warnings()
                .into_iter()
                .map(String::into_boxed_str)
                .collect(),
        }
    }
}

impl CachedVerdict {
    /// Allowed verdicts live long, failing ones briefly.
    fn ttl(&self) -> Duration {
        if self.verified {
            ALLOWED_VERDICT_TTL
        } else {
            FAILED_VERDICT_TTL
        }
    }

    /// The verdict of an image that verified without warnings: nearly every cached verdict is
    /// this one, so they all share one allocation.
    fn plain_verified() -> Self {
        CachedVerdict {
            allowed: true,
            verified: true,
            denial: None,
            warnings: Box::new([]),
        }
    }
}

/// A reference parsed once: the parsed form and its normalised text (part of the verdict key).
struct ParsedImage {
    image: ImageRef,
    normalised: Box<str>,
}

/// The outcome for one distinct image of a request.
struct ImageOutcome {
    /// The image as the workload writes it.
    written: String,
    digest: Option<Arc<str>>,
    verdict: Arc<CachedVerdict>,
}

/// Everything a decision needs, shared by all requests.
pub struct Admission {
    policy: PolicyState,
    registry: RegistryClient,
    lookups: Lookups,
    verdicts: ExpiringMap<[u8; 16], Arc<CachedVerdict>>,
    /// Shared by every cached [`CachedVerdict::plain_verified`].
    plain_verified: Arc<CachedVerdict>,
    references: ExpiringMap<Box<str>, Arc<ParsedImage>>,
    pull_secrets: Option<PullSecrets>,
    events: EventSink,
    metrics: Arc<Metrics>,
    settings: DecisionSettings,
    permits: Semaphore,
}

impl Admission {
    /// Decisions from `policy`, looking images up through `registry`; with a `kube` client,
    /// pull secrets are read and events posted through it.
    pub fn new(
        policy: PolicyState,
        registry: RegistryClient,
        kube: Option<kube::Client>,
        settings: DecisionSettings,
        metrics: Arc<Metrics>,
    ) -> Self {
        let instance = std::env::var("POD_NAME").unwrap_or_else(|_| "signet-webhook".into());
        Admission {
            policy,
            registry,
            lookups: Lookups::new(settings.cache_size, settings.timings, Arc::clone(&metrics)),
            verdicts: ExpiringMap::new(usize::try_from(settings.cache_size).unwrap_or(usize::MAX)),
            plain_verified: Arc::new(CachedVerdict::plain_verified()),
            references: ExpiringMap::new(PARSED_REFERENCES),
            pull_secrets: kube.clone().map(PullSecrets::new),
            events: EventSink::new(kube, instance, Arc::clone(&metrics)),
            permits: Semaphore::new(settings.max_in_progress.max(1)),
            metrics,
            settings,
        }
    }

    /// The metrics this admission records into.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Whether the policy picture has synced (`/readyz`).
    pub fn is_ready(&self) -> bool {
        self.policy.is_ready()
    }

    /// Verdicts cached now (expired ones not counted).
    pub async fn cached_verdicts(&self) -> u64 {
        self.verdicts.live_entries()
    }

    /// `written` parsed, from the parsed-reference cache when it is there.
    fn parse_reference(&self, written: &str) -> Result<Arc<ParsedImage>, String> {
        let hint = reference_shard(written);
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

    /// Answers one AdmissionReview body. `Err` when it is not one (HTTP 400).
    pub async fn review(&self, body: &[u8], endpoint: Endpoint) -> Result<Answer, ReviewError> {
        let started = Instant::now();
        let request = match parse_review(body) {
            Ok(request) => request,
            Err(e) => {
                let seconds = started.elapsed().as_secs_f64();
                self.metrics
                    .admission(endpoint, AdmissionResult::Error, seconds);
                return Err(e);
            }
        };
        let deadline = tokio::time::Instant::from_std(started + self.settings.deadline);
        let (answer, result) = self.decide(&request, endpoint, deadline).await;
        self.metrics
            .admission(endpoint, result, started.elapsed().as_secs_f64());
        Ok(answer)
    }

    async fn decide(
        &self,
        request: &AdmissionRequest<DynamicObject>,
        endpoint: Endpoint,
        deadline: tokio::time::Instant,
    ) -> (Answer, AdmissionResult) {
        let mut answer = Answer {
            uid: request.uid.clone(),
            allowed: true,
            ..Answer::default()
        };
        let workload = match workload_of(request) {
            Ok(Some(workload)) => workload,
            Ok(None) => return (answer, AdmissionResult::Allowed),
            Err(e) => {
                if endpoint == Endpoint::Validate {
                    answer.allowed = false;
                    answer.message = Some(format!(
                        "signet cannot read the images of this {}: {e}",
                        request.kind.kind
                    ));
                    set_audit(&mut answer, AUDIT_RESULT, "error");
                }
                return (answer, AdmissionResult::Error);
            }
        };
        if self
            .settings
            .exempt_namespaces
            .contains(&workload.namespace)
        {
            set_audit(&mut answer, AUDIT_RESULT, "exempt-namespace");
            return (answer, AdmissionResult::Allowed);
        }
        let event = |reason: EventReason, note: String| WorkloadEvent {
            reason,
            api_version: api_version_of(request),
            kind: workload.kind.clone(),
            namespace: workload.namespace.clone(),
            name: workload.name.clone(),
            note,
        };
        // Side effects are skipped for `kubectl --dry-run=server` (sideEffects: NoneOnDryRun).
        let post_events = endpoint == Endpoint::Validate && !request.dry_run;

        if let Some(reason) = workload.annotations.get(BREAKGLASS_ANNOTATION) {
            let reason = reason.trim();
            if !self.settings.breakglass {
                answer.warnings.push(format!(
                    "{BREAKGLASS_ANNOTATION} ignored: breakglass is disabled on this cluster"
                ));
            } else if reason.is_empty() {
                answer.warnings.push(format!(
                    "{BREAKGLASS_ANNOTATION} ignored: it needs a reason as its value"
                ));
            } else {
                answer.warnings.push(format!(
                    "signet breakglass: images admitted without verification ({reason})"
                ));
                set_audit(&mut answer, AUDIT_RESULT, "breakglass");
                set_audit(&mut answer, AUDIT_BREAKGLASS, reason);
                if post_events {
                    let note = format!(
                        "admitted without image verification by {BREAKGLASS_ANNOTATION}: {reason}"
                    );
                    self.events
                        .record(event(EventReason::Breakglass, note))
                        .await;
                }
                return (answer, AdmissionResult::Breakglass);
            }
        }

        let Ok(Ok(_permit)) = tokio::time::timeout_at(deadline, self.permits.acquire()).await
        else {
            if endpoint == Endpoint::Validate {
                answer.allowed = false;
                answer.message = Some(format!(
                    "signet could not check the images within {}: too many admissions in progress",
                    format_duration(self.settings.deadline)
                ));
            }
            return (answer, AdmissionResult::Error);
        };

        let outcomes = self.judge_images(&workload, deadline).await;
        let denials: Vec<&str> = outcomes
            .iter()
            .filter(|o| !o.verdict.allowed)
            .filter_map(|o| o.verdict.denial.as_deref())
            .collect();
        let dry_run_warnings: Vec<String> = outcomes
            .iter()
            .flat_map(|o| o.verdict.warnings.iter().map(|w| w.to_string()))
            .collect();

        if endpoint == Endpoint::Mutate {
            if self.settings.mutate {
                let digests: BTreeMap<String, String> = outcomes
                    .iter()
                    .filter(|o| o.verdict.verified)
                    .filter_map(|o| Some((o.written.clone(), o.digest.as_deref()?.to_string())))
                    .collect();
                answer.patch = pin_patch(&workload, &digests);
            }
            return (answer, AdmissionResult::Allowed);
        }

        let verified: Vec<String> = outcomes
            .iter()
            .filter(|o| o.verdict.verified)
            .filter_map(|o| Some(format!("{}@{}", o.written, o.digest.as_deref()?)))
            .collect();
        if !verified.is_empty() {
            set_audit(&mut answer, AUDIT_IMAGES, &verified.join(","));
        }
        answer.warnings.extend(dry_run_warnings.iter().cloned());
        if !denials.is_empty() {
            let message = denials.join("\n");
            answer.allowed = false;
            answer.message = Some(message.clone());
            set_audit(&mut answer, AUDIT_RESULT, "denied");
            if post_events {
                self.events
                    .record(event(EventReason::FailedAdmission, message))
                    .await;
            }
            return (answer, AdmissionResult::Denied);
        }
        if !dry_run_warnings.is_empty() {
            set_audit(&mut answer, AUDIT_RESULT, "dryrun");
            if post_events {
                self.events
                    .record(event(
                        EventReason::DryRunAdmission,
                        dry_run_warnings.join("\n"),
                    ))
                    .await;
            }
            return (answer, AdmissionResult::Dryrun);
        }
        set_audit(&mut answer, AUDIT_RESULT, "allowed");
        (answer, AdmissionResult::Allowed)
    }

    /// Judges every distinct image of `workload` at once.
    async fn judge_images(
        &self,
        workload: &Workload,
        deadline: tokio::time::Instant,
    ) -> Vec<ImageOutcome> {
        let snapshot = self.policy.snapshot();
        // Credentials are read (through the API) only if some image needs the registry, and
        // then once for all of them.
        let registry = OnceCell::new();
        let images = distinct_images(workload);
        let judged = images
            .iter()
            .map(|written| self.judge_image(written, workload, &snapshot, &registry, deadline));
        join_all(judged).await
    }

    async fn judge_image(
        &self,
        written: &str,
        workload: &Workload,
        snapshot: &Arc<Snapshot>,
        registry: &OnceCell<RequestRegistry>,
        deadline: tokio::time::Instant,
    ) -> ImageOutcome {
        let namespace = workload.namespace.as_str();
        let parsed = match self.parse_reference(written) {
            Ok(parsed) => parsed,
            Err(e) => {
                return ImageOutcome {
                    written: written.to_string(),
                    digest: None,
                    verdict: Arc::new(CachedVerdict {
                        allowed: false,
                        verified: false,
                        denial: Some(format!("{written}: {e}").into_boxed_str()),
                        warnings: Box::new([]),
                    }),
                };
            }
        };
        let image = &parsed.image;
        if snapshot.matching_policies(namespace, image).is_empty() {
            // No registry access for images no policy governs: the engine applies --no-match.
            let verdict = snapshot.evaluate(
                namespace,
                image,
                &Lookup::Failed {
                    reason: "not looked up".to_string(),
                },
            );
            return ImageOutcome {
                written: written.to_string(),
                digest: None,
                verdict: Arc::new(CachedVerdict::of(&verdict)),
            };
        }
        let looked_up = tokio::time::timeout_at(
            deadline,
            self.look_up(&parsed, workload, snapshot, registry),
        )
        .await;
        let (digest, lookup) = match looked_up {
            Ok(Looked::Cached(digest, verdict)) => {
                return ImageOutcome {
                    written: written.to_string(),
                    digest: Some(digest),
                    verdict,
                };
            }
            Ok(Looked::Fetched(digest, signatures)) => (
                Some(Arc::clone(&digest)),
                Lookup::Found {
                    digest: digest.to_string(),
                    signatures: signatures.to_vec(),
                },
            ),
            Ok(Looked::Failed(reason)) => (
                None,
                Lookup::Failed {
                    reason: reason.to_string(),
                },
            ),
            Err(_elapsed) => (
                None,
                Lookup::Failed {
                    reason: format!(
                        "registry {} did not answer within {}",
                        image.registry(),
                        format_duration(self.settings.deadline)
                    ),
                },
            ),
        };
        let found = matches!(lookup, Lookup::Found { .. });
        let verdict = self
            .evaluate(written, snapshot, namespace, &parsed, lookup)
            .await;
        let verdict = if verdict == *self.plain_verified {
            Arc::clone(&self.plain_verified)
        } else {
            Arc::new(verdict)
        };
        if let (Some(digest), true) = (&digest, found) {
            let key = verdict_key_of(snapshot.generation(), namespace, &parsed.normalised, digest);
            self.verdicts
                .insert(key[0], key, Arc::clone(&verdict), verdict.ttl());
        }
        ImageOutcome {
            written: written.to_string(),
            digest: digest.or_else(|| image.digest().map(Arc::from)),
            verdict,
        }
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
        namespace: &str,
        parsed: &Arc<ParsedImage>,
        lookup: Lookup,
    ) -> CachedVerdict {
        let has_signatures =
            matches!(&lookup, Lookup::Found { signatures, .. } if !signatures.is_empty());
        if !has_signatures {
            return CachedVerdict::of(&snapshot.evaluate(namespace, &parsed.image, &lookup));
        }
        let snapshot = Arc::clone(snapshot);
        let namespace = namespace.to_string();
        let parsed = Arc::clone(parsed);
        let checked = tokio::spawn(async move {
            CachedVerdict::of(&snapshot.evaluate(&namespace, &parsed.image, &lookup))
        })
        .await;
        checked.unwrap_or_else(|e| CachedVerdict {
            allowed: false,
            verified: false,
            denial: Some(format!("{written}: signature check failed: {e}").into_boxed_str()),
            warnings: Box::new([]),
        })
    }

    /// Digest, then a cached verdict or the signatures.
    async fn look_up(
        &self,
        parsed: &ParsedImage,
        workload: &Workload,
        snapshot: &Snapshot,
        registry: &OnceCell<RequestRegistry>,
    ) -> Looked {
        let registry = registry
            .get_or_init(|| self.request_registry(workload))
            .await;
        let image = &parsed.image;
        let digest = match self.lookups.digest(image, registry).await {
            Ok(digest) => digest,
            Err(reason) => return Looked::Failed(reason),
        };
        let key = verdict_key_of(
            snapshot.generation(),
            &workload.namespace,
            &parsed.normalised,
            &digest,
        );
        if let Some(verdict) = self.verdicts.get(key[0], &key) {
            self.metrics.cache(CacheName::Verdict, true);
            return Looked::Cached(digest, verdict);
        }
        self.metrics.cache(CacheName::Verdict, false);
        match self.lookups.signatures(image, &digest, registry).await {
            Ok(signatures) => Looked::Fetched(digest, signatures),
            Err(reason) => Looked::Failed(reason),
        }
    }

    async fn request_registry(&self, workload: &Workload) -> RequestRegistry {
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

enum Looked {
    Cached(Arc<str>, Arc<CachedVerdict>),
    Fetched(Arc<str>, super::lookup::Signatures),
    Failed(Arc<str>),
}

/// The key of a verdict from the reference itself (tests; requests use [`verdict_key_of`]).
#[cfg(test)]
fn verdict_key(generation: u64, namespace: &str, image: &ImageRef, digest: &str) -> [u8; 16] {
    verdict_key_of(generation, namespace, &image.to_string(), digest)
}

/// 128 bits of SHA-256 over what a verdict depends on: snapshot generation, namespace (policies
/// differ per namespace), the normalised reference (a `Default` signature binds the tag) and
/// the digest. A fixed-size key keeps 100,000 cached verdicts small.
/// The normalised reference text is kept with the parsed reference, so it is not rebuilt.
fn verdict_key_of(generation: u64, namespace: &str, normalised: &str, digest: &str) -> [u8; 16] {
    let mut hasher = sha2::Sha256::new();
    hasher.update(generation.to_be_bytes());
    for part in [namespace, normalised, digest] {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part.as_bytes());
    }
    let full = hasher.finalize();
    let mut key = [0u8; 16];
    key.copy_from_slice(&full[..16]);
    key
}

/// A shard hint for a reference: cheap, and the same for the same text.
fn reference_shard(written: &str) -> u8 {
    written
        .bytes()
        .fold(written.len() as u8, |acc, b| acc.rotate_left(3) ^ b)
}

fn api_version_of(request: &AdmissionRequest<DynamicObject>) -> String {
    if request.kind.group.is_empty() {
        request.kind.version.clone()
    } else {
        format!("{}/{}", request.kind.group, request.kind.version)
    }
}

fn set_audit(answer: &mut Answer, key: &str, value: &str) {
    let mut value = value.to_string();
    if value.len() > MAX_AUDIT_VALUE {
        let mut end = MAX_AUDIT_VALUE - 3;
        while !value.is_char_boundary(end) {
            end -= 1;
        }
        value.truncate(end);
        value.push_str("...");
    }
    answer.audit_annotations.insert(key.to_string(), value);
}

/// `8s`, `1500ms`.
pub fn format_duration(duration: Duration) -> String {
    if duration.subsec_millis() == 0 && duration.as_secs() > 0 {
        format!("{}s", duration.as_secs())
    } else {
        format!("{}ms", duration.as_millis())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_people_write_them() {
        assert_eq!(format_duration(Duration::from_secs(8)), "8s");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1500ms");
    }

    #[test]
    fn verdict_keys_separate_namespace_tag_digest_and_generation() {
        let a = ImageRef::parse("r.example/app:v1").ok();
        let b = ImageRef::parse("r.example/app:v2").ok();
        let (Some(a), Some(b)) = (a, b) else {
            panic!("test references parse");
        };
        let base = verdict_key(1, "ns", &a, "sha256:1");
        assert_ne!(base, verdict_key(2, "ns", &a, "sha256:1"));
        assert_ne!(base, verdict_key(1, "other", &a, "sha256:1"));
        assert_ne!(base, verdict_key(1, "ns", &b, "sha256:1"));
        assert_ne!(base, verdict_key(1, "ns", &a, "sha256:2"));
        assert_eq!(base, verdict_key(1, "ns", &a, "sha256:1"));
    }
}
