//! The audit of running pods: which images run now, and would admission still let them in?
//!
//! Admission sees a workload once; keys are revoked, policies tightened and signatures deleted
//! afterwards. The audit re-judges every running image, by the digest in `status.imageID`, with
//! the engine admission uses ([`crate::policy::Snapshot::evaluate_governed`]):
//!
//! - [`pods`]: a Pod as the audit sees it (images per container, the digest that runs);
//! - [`judge`]: the pure part, (snapshot, pods, registry answers) -> one result per pod and
//!   container (`pass`, `fail`, `warn`, `error`, `skip`);
//! - [`source`]: where registry answers come from (admission's shared caches in the webhook,
//!   the registry directly for the one-shot CLI), fetched with bounded concurrency;
//! - [`metrics`], [`report`], [`watch`]: the loop of `signet webhook --audit` and
//!   `signet audit --watch`, and where its results go (gauges, Events, PolicyReports).
//!
//! Registry cost: one lookup set per distinct (repository, digest), whatever the number of pods
//! running it; a new policy generation re-judges from the answers already held (no registry
//! request when digests and keys are as they were); every answer is re-read once per
//! `--audit-interval`, spread over the interval, so a deleted signature is noticed.
//!
//! Shared with admission: the engine, and in the webhook the lookups themselves (digest and
//! signature caches, one lookup in flight per key, pull secrets). Not shared: admission's verdict
//! cache. Its entries live as long as the signature cache (30 s) and are keyed by the resolved
//! tag, while the audit must judge a new generation from answers up to an interval old without
//! asking the registry; so the audit holds its answers ([`judge::Book`]) and memoises its own
//! verdicts per (governing policies, image, digest) ([`judge::Memo`]).

pub mod judge;
pub mod metrics;
pub mod pods;
pub mod report;
pub mod source;
pub mod watch;

pub use judge::{
    AuditResult, Book, ContainerResult, Judged, Memo, PodResult, Summary, judge_pods,
    missing_digests, missing_signatures,
};
pub use metrics::AuditMetrics;
pub use pods::{PodsFileError, RunningImage, RunningPod, Slot, pods_from_json};
pub use source::{SignatureSource, StoreSource, fill_book};
pub use watch::{AuditConfig, run_audit};
