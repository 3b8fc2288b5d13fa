//! The pure part of the audit: given a policy snapshot, running pods and what the registry said
//! (a [`Book`]), one result per pod and container. No I/O: the loop and the CLI fill the book
//! first, asking only for what [`missing_digests`] and [`missing_signatures`] name, so that a
//! snapshot change that leaves digests and keys as they were costs no registry request.
//!
//! Each image is judged by the same engine call as admission
//! ([`Snapshot::evaluate_governed`]): governed by the reference the spec writes (a tag glob
//! applies as it did at admission), evaluated at the digest that runs with the spec's tag
//! (a `Default` signature must still bind it). Results (the PolicyReport vocabulary):
//! `pass`; `fail` (an `Enforce` policy fails, or `--no-match=deny`); `error` (the registry
//! could not answer: admission would deny, fail closed, but the image may be fine); `warn` (only
//! `DryRun` policies fail); `skip` (no policy governs the image).

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use serde::Serialize;

use super::pods::{RunningPod, Slot};
use crate::policy::{ImageVerdict, Lookup, NoMatch, Snapshot};
use crate::reference::ImageRef;
use crate::registry::LookupFailure;
use crate::signature::StoredSignature;

/// Signatures as fetched (shared with the cache they came from).
pub type Signatures = Arc<[StoredSignature]>;
/// Why a lookup failed.
pub type Failure = Arc<LookupFailure>;

/// What one image's check came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditResult {
    /// No policy governs the image.
    Skip,
    /// Every governing policy passed.
    Pass,
    /// Only `DryRun` policies failed.
    Warn,
    /// The registry could not answer; admission would deny.
    Error,
    /// An `Enforce` policy failed (or unmatched images are denied).
    Fail,
}

impl AuditResult {
    /// Every result, for series present from the start.
    pub const ALL: [AuditResult; 5] = [
        AuditResult::Pass,
        AuditResult::Fail,
        AuditResult::Warn,
        AuditResult::Error,
        AuditResult::Skip,
    ];

    /// The lower case name (metric label, PolicyReport `result`).
    pub fn as_str(self) -> &'static str {
        match self {
            AuditResult::Skip => "skip",
            AuditResult::Pass => "pass",
            AuditResult::Warn => "warn",
            AuditResult::Error => "error",
            AuditResult::Fail => "fail",
        }
    }

    /// Whether admission would deny the image now.
    pub fn denies(self) -> bool {
        matches!(self, AuditResult::Fail | AuditResult::Error)
    }
}

/// The verdict on one image, as the audit keeps it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Judged {
    /// The result.
    pub result: AuditResult,
    /// The engine's one-line reason, when not `pass`/`skip`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The governing policies' names.
    pub policies: Vec<String>,
}

/// One container's (or image volume's) result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerResult {
    /// Container (or volume) name.
    pub container: String,
    /// Which list.
    pub slot: Slot,
    /// The image as the spec writes it.
    pub image: String,
    /// The digest judged, when known.
    pub digest: Option<String>,
    /// The verdict (shared by every container running the same image under the same policies).
    #[serde(rename = "verdict", serialize_with = "shared")]
    pub judged: Arc<Judged>,
}

fn shared<S: serde::Serializer>(judged: &Arc<Judged>, serializer: S) -> Result<S::Ok, S::Error> {
    judged.as_ref().serialize(serializer)
}

/// One pod's results.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PodResult {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// `metadata.uid`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    /// One per image, in spec order.
    pub containers: Vec<ContainerResult>,
}

impl PodResult {
    /// The pod's result: its worst container's (`skip` for a pod with no image).
    pub fn result(&self) -> AuditResult {
        self.containers
            .iter()
            .map(|c| c.judged.result)
            .max()
            .unwrap_or(AuditResult::Skip)
    }
}

/// What the registry said, by key: tag references resolved (`registry/repo:tag`) and
/// signatures per `registry/repo@digest`.
#[derive(Clone, Debug, Default)]
pub struct Book {
    /// `registry/repo:tag` -> digest.
    pub digests: HashMap<String, Result<Arc<str>, Failure>>,
    /// `registry/repo@digest` -> signatures.
    pub signatures: HashMap<String, Result<Signatures, Failure>>,
}

/// The key of a signature set: one per repository and digest, whatever the tag or the pods.
pub fn signature_key(image: &ImageRef, digest: &str) -> String {
    format!("{}/{}@{digest}", image.registry(), image.repository())
}

/// Who asks: a pod's namespace and pull credentials names (for private registries).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Asker {
    /// Namespace.
    pub namespace: String,
    /// `spec.imagePullSecrets` names.
    pub pull_secrets: Vec<String>,
    /// Service account name.
    pub service_account: String,
}

impl Asker {
    fn of(pod: &RunningPod) -> Self {
        Asker {
            namespace: pod.namespace.clone(),
            pull_secrets: pod.pull_secrets.clone(),
            service_account: pod.service_account.clone(),
        }
    }
}

/// A lookup to make, with the first pod that needs it.
#[derive(Clone, Debug)]
pub struct Wanted {
    /// The image (for signatures: pinned to the digest).
    pub image: ImageRef,
    /// Its book key.
    pub key: String,
    /// Whose credentials to use.
    pub asker: Asker,
}

/// One governed image of a pod: parsed, and the digest that runs if known.
struct Governed {
    parsed: ImageRef,
    digest: Option<String>,
}

fn governed<'a>(
    snapshot: &Snapshot,
    pods: impl IntoIterator<Item = &'a RunningPod>,
) -> Vec<(&'a RunningPod, Governed)> {
    pods.into_iter()
        .flat_map(|pod| {
            pod.images.iter().filter_map(move |image| {
                let parsed = ImageRef::parse(&image.image).ok()?;
                if snapshot.governing(&pod.namespace, &parsed).is_empty() {
                    return None;
                }
                Some((
                    pod,
                    Governed {
                        digest: image.digest.clone(),
                        parsed,
                    },
                ))
            })
        })
        .collect()
}

/// Tag references of governed images whose running digest is unknown and not in `book`.
pub fn missing_digests<'a>(
    snapshot: &Snapshot,
    pods: impl IntoIterator<Item = &'a RunningPod>,
    book: &Book,
) -> Vec<Wanted> {
    let mut seen = BTreeSet::new();
    governed(snapshot, pods)
        .into_iter()
        .filter(|(_, g)| g.digest.is_none() && g.parsed.digest().is_none())
        .filter_map(|(pod, g)| {
            let key = g.parsed.repo_with_tag();
            (!book.digests.contains_key(&key) && seen.insert(key.clone())).then(|| Wanted {
                image: g.parsed,
                key,
                asker: Asker::of(pod),
            })
        })
        .collect()
}

/// Signature sets of governed images at known digests, not in `book`: one per repository and
/// digest, however many pods run it.
pub fn missing_signatures<'a>(
    snapshot: &Snapshot,
    pods: impl IntoIterator<Item = &'a RunningPod>,
    book: &Book,
) -> Vec<Wanted> {
    let mut seen = BTreeSet::new();
    governed(snapshot, pods)
        .into_iter()
        .filter_map(|(pod, g)| {
            let digest = match &g.digest {
                Some(d) => d.clone(),
                None => match book.digests.get(&g.parsed.repo_with_tag()) {
                    Some(Ok(d)) => d.to_string(),
                    _ => return None,
                },
            };
            let key = signature_key(&g.parsed, &digest);
            (!book.signatures.contains_key(&key) && seen.insert(key.clone())).then(|| Wanted {
                image: g.parsed.with_digest(&digest),
                key,
                asker: Asker::of(pod),
            })
        })
        .collect()
}

/// Verdicts already reached under one snapshot generation and book: pods running the same image
/// under the same policies cost one evaluation. Cleared when either changes.
#[derive(Default)]
pub struct Memo {
    generation: Option<u64>,
    verdicts: HashMap<(Vec<usize>, String, Option<String>), Arc<Judged>>,
    skipped: Option<Arc<Judged>>,
}

impl Memo {
    /// Forgets every verdict (the book changed).
    pub fn clear(&mut self) {
        self.verdicts.clear();
    }

    /// Verdicts held.
    pub fn len(&self) -> usize {
        self.verdicts.len()
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.verdicts.is_empty()
    }
}

/// Judges every pod. Pure: what the book lacks is judged as not looked up (`error`). Pods in
/// `exempt` namespaces (admission's `--exempt-namespace`) are `skip`, with that reason: admission
/// never checks them, so they cannot be said to fail it.
pub fn judge_pods<'a>(
    snapshot: &Snapshot,
    pods: impl IntoIterator<Item = &'a RunningPod>,
    book: &Book,
    memo: &mut Memo,
    exempt: &[String],
) -> Vec<PodResult> {
    if memo.generation != Some(snapshot.generation()) {
        memo.verdicts.clear();
        memo.generation = Some(snapshot.generation());
    }
    pods.into_iter()
        .map(|pod| {
            if exempt.contains(&pod.namespace) {
                return exempt_result(pod);
            }
            PodResult {
                namespace: pod.namespace.clone(),
                name: pod.name.clone(),
                uid: pod.uid.clone(),
                containers: pod
                    .images
                    .iter()
                    .map(|image| {
                        let (digest, judged) = judge_image(
                            snapshot,
                            &pod.namespace,
                            &image.image,
                            image.digest.as_deref(),
                            book,
                            memo,
                        );
                        ContainerResult {
                            container: image.container.clone(),
                            slot: image.slot,
                            image: image.image.clone(),
                            digest,
                            judged,
                        }
                    })
                    .collect(),
            }
        })
        .collect()
}

fn exempt_result(pod: &RunningPod) -> PodResult {
    let judged = Arc::new(Judged {
        result: AuditResult::Skip,
        reason: Some(format!(
            "namespace {} is exempt from admission (--exempt-namespace)",
            pod.namespace
        )),
        policies: Vec::new(),
    });
    PodResult {
        namespace: pod.namespace.clone(),
        name: pod.name.clone(),
        uid: pod.uid.clone(),
        containers: pod
            .images
            .iter()
            .map(|image| ContainerResult {
                container: image.container.clone(),
                slot: image.slot,
                image: image.image.clone(),
                digest: image.digest.clone(),
                judged: Arc::clone(&judged),
            })
            .collect(),
    }
}

fn judge_image(
    snapshot: &Snapshot,
    namespace: &str,
    written: &str,
    running: Option<&str>,
    book: &Book,
    memo: &mut Memo,
) -> (Option<String>, Arc<Judged>) {
    let parsed = match ImageRef::parse(written) {
        Ok(parsed) => parsed,
        Err(e) => {
            let judged = Judged {
                result: AuditResult::Fail,
                reason: Some(format!("{written}: {e}")),
                policies: Vec::new(),
            };
            return (running.map(str::to_string), Arc::new(judged));
        }
    };
    let governing = snapshot.governing(namespace, &parsed);
    if governing.is_empty() && snapshot.options().no_match == NoMatch::Allow {
        let skipped = memo
            .skipped
            .get_or_insert_with(|| {
                Arc::new(Judged {
                    result: AuditResult::Skip,
                    reason: None,
                    policies: Vec::new(),
                })
            })
            .clone();
        return (running.map(str::to_string), skipped);
    }
    let digest: Result<String, Failure> = match running {
        Some(d) => Ok(d.to_string()),
        None => match parsed.digest() {
            Some(d) => Ok(d.to_string()),
            None => match book.digests.get(&parsed.repo_with_tag()) {
                Some(Ok(d)) => Ok(d.to_string()),
                Some(Err(f)) => Err(Arc::clone(f)),
                None => Err(Arc::new(LookupFailure::NotLookedUp)),
            },
        },
    };
    let memo_key = (
        governing.indices.clone(),
        parsed.to_string(),
        digest.as_ref().ok().cloned(),
    );
    if let Some(judged) = memo.verdicts.get(&memo_key) {
        return (memo_key.2, Arc::clone(judged));
    }
    let (image, lookup) = match &digest {
        Ok(d) => {
            let pinned = parsed.with_digest(d);
            let lookup = if governing.is_empty() {
                Lookup::failed(LookupFailure::NotLookedUp)
            } else {
                match book.signatures.get(&signature_key(&parsed, d)) {
                    Some(Ok(signatures)) => Lookup::found(d.clone(), Arc::clone(signatures)),
                    Some(Err(f)) => Lookup::Failed {
                        failure: Arc::clone(f),
                    },
                    None => Lookup::failed(LookupFailure::NotLookedUp),
                }
            };
            (pinned, lookup)
        }
        Err(f) => (
            parsed.clone(),
            Lookup::Failed {
                failure: Arc::clone(f),
            },
        ),
    };
    let mut verdict = snapshot.evaluate_governed(&governing, &image, &lookup);
    // Messages name the image as the spec writes it; the digest follows in parentheses.
    verdict.image = written.to_string();
    let judged = Arc::new(judged_of(&verdict, matches!(lookup, Lookup::Failed { .. })));
    memo.verdicts.insert(memo_key.clone(), Arc::clone(&judged));
    (memo_key.2, judged)
}

fn judged_of(verdict: &ImageVerdict, lookup_failed: bool) -> Judged {
    let policies = verdict.policies.iter().map(|p| p.policy.clone()).collect();
    let (result, reason) = if !verdict.allowed {
        let result = if lookup_failed && !verdict.policies.is_empty() {
            AuditResult::Error
        } else {
            AuditResult::Fail
        };
        (result, verdict.denial_message())
    } else if verdict.dry_run {
        (AuditResult::Warn, Some(verdict.warnings().join("; ")))
    } else if verdict.policies.is_empty() {
        (AuditResult::Skip, None)
    } else {
        (AuditResult::Pass, None)
    };
    Judged {
        result,
        reason,
        policies,
    }
}

/// Counts by result.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// `pass`
    pub pass: u64,
    /// `fail`
    pub fail: u64,
    /// `warn`
    pub warn: u64,
    /// `error`
    pub error: u64,
    /// `skip`
    pub skip: u64,
}

impl Summary {
    /// Adds one result.
    pub fn add(&mut self, result: AuditResult) {
        *self.slot(result) += 1;
    }

    /// The count of `result`.
    pub fn get(&self, result: AuditResult) -> u64 {
        match result {
            AuditResult::Pass => self.pass,
            AuditResult::Fail => self.fail,
            AuditResult::Warn => self.warn,
            AuditResult::Error => self.error,
            AuditResult::Skip => self.skip,
        }
    }

    fn slot(&mut self, result: AuditResult) -> &mut u64 {
        match result {
            AuditResult::Pass => &mut self.pass,
            AuditResult::Fail => &mut self.fail,
            AuditResult::Warn => &mut self.warn,
            AuditResult::Error => &mut self.error,
            AuditResult::Skip => &mut self.skip,
        }
    }
}

#[cfg(test)]
#[path = "judge_tests.rs"]
mod tests;
