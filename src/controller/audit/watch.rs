//! The audit loop of `signet webhook --audit` and `signet audit --watch`.
//!
//! - Pods are watched (all namespaces) and kept as [`RunningPod`]s only (images, digests, pull
//!   secret names): 10,000 pods cost their images' strings, not 10,000 full Pod objects.
//! - A change (a pod, a new policy generation, a re-read answer that differs) opens a
//!   [`AuditConfig::debounce`] window; then every pod is judged again. Judging is pure and
//!   memoised per (policies, image, digest), so a run over 10,000 pods sharing 500 images costs
//!   500 evaluations; only what the book lacks is looked up.
//! - The interval re-read: every answer the running pods need is read again once per
//!   [`AuditConfig::interval`], one every `interval / n`, at most
//!   [`AuditConfig::concurrency`] at a time, bypassing the caches (`fresh`); a deleted signature
//!   turns its pods to `fail` at its turn. Answers no running pod needs are dropped at the start
//!   of each cycle.
//! - Results: gauges at every run; an Event per failing container when it turns to failing (or
//!   its digest changes), then at most once per interval while it stays so; PolicyReports per
//!   namespace when changed, if the CRD is installed (checked at start and every cycle).
//!
//! Nothing is judged before the pods are listed and the policy picture is ready: a half-listed
//! cluster would report pods as gone and a picture not yet synced would fail everything.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use futures::{FutureExt as _, StreamExt as _};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams, PostParams};
use kube::runtime::WatchStreamExt as _;
use kube::runtime::watcher::{self, Event as WatchEvent};
use serde_json::Value;
use tokio::time::Instant;

use super::judge::{
    Book, Failure, Memo, PodResult, Signatures, Summary, Wanted, judge_pods, missing_digests,
    missing_signatures,
};
use super::metrics::{AuditMetrics, LookupOperation};
use super::pods::RunningPod;
use super::report::{REPORT_NAME, by_namespace, policy_report, report_content, unverified_event};
use super::source::{SignatureSource, fill_book};
use crate::controller::cluster::Leadership;
use crate::controller::{ControllerError, PolicyState, StatusWrites};

/// Events posted, and reports written, at once.
const API_CONCURRENCY: usize = 8;

/// How the loop runs.
#[derive(Clone, Debug)]
pub struct AuditConfig {
    /// Every answer is re-read once per interval (`--audit-interval`).
    pub interval: Duration,
    /// Registry lookups at once (`--audit-concurrency`).
    pub concurrency: usize,
    /// Changes gathered before a run.
    pub debounce: Duration,
    /// `reportingInstance` of Events (the pod name).
    pub instance: String,
    /// Write PolicyReports when the CRD is installed.
    pub policy_reports: bool,
    /// Namespaces admission does not check (`--exempt-namespace`): their pods are `skip`, and
    /// nothing is looked up for them.
    pub exempt_namespaces: Vec<String>,
    /// How soon a failed lookup is tried again (rather than at the next interval).
    pub failure_retry: Duration,
    /// Which replicas post Events and write PolicyReports: every one, or the holder of a
    /// Lease (`signet-audit`), so that replicas do not post each failure twice. Gauges are
    /// every replica's.
    pub publishers: StatusWrites,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            interval: Duration::from_secs(3600),
            concurrency: 8,
            debounce: Duration::from_secs(1),
            instance: "signet-audit".to_string(),
            policy_reports: true,
            exempt_namespaces: vec!["kube-system".to_string()],
            failure_retry: Duration::from_secs(30),
            publishers: StatusWrites::Always,
        }
    }
}

/// One re-read in the interval cycle.
#[derive(Clone, Debug)]
enum Refresh {
    Digest(Wanted),
    Signatures(Wanted),
}

type Reread = (
    Refresh,
    Result<Arc<str>, Failure>,
    Option<Result<Signatures, Failure>>,
);

/// A container whose failure was posted: when, and at which digest.
struct Posted {
    digest: Option<String>,
    at: Instant,
}

/// The audit's state between runs.
struct Audit {
    client: kube::Client,
    policy: PolicyState,
    source: Arc<dyn SignatureSource>,
    metrics: Arc<AuditMetrics>,
    config: AuditConfig,
    pods: HashMap<String, RunningPod>,
    book: Book,
    memo: Memo,
    posted: HashMap<(String, String), Posted>,
    /// Namespace -> a hash of the report content last written (without timestamps).
    written: HashMap<String, [u8; 32]>,
    reports_installed: bool,
    /// Whether this replica posts Events and writes reports now.
    publishing: bool,
    /// When the failed lookups held are tried again.
    retry_at: Option<Instant>,
}

/// Runs the audit until the pod watch ends (it does not, short of shutdown) or the policy
/// source is gone.
pub async fn run_audit(
    client: kube::Client,
    policy: PolicyState,
    source: Arc<dyn SignatureSource>,
    metrics: Arc<AuditMetrics>,
    config: AuditConfig,
) -> Result<(), ControllerError> {
    let mut audit = Audit {
        client: client.clone(),
        policy: policy.clone(),
        source,
        metrics,
        config,
        pods: HashMap::new(),
        book: Book::default(),
        memo: Memo::default(),
        posted: HashMap::new(),
        written: HashMap::new(),
        reports_installed: false,
        publishing: false,
        retry_at: None,
    };
    audit.reports_installed = audit.check_reports_crd().await;
    let mut leadership = Leadership::start(&client, audit.config.publishers.clone()).await?;
    audit.publishing = leadership.is_leader;
    let mut policy_changes = policy;
    let mut pod_events = watcher::watcher(Api::<Pod>::all(client), watcher::Config::default())
        .default_backoff()
        .boxed();
    let mut listing: Option<HashMap<String, RunningPod>> = None;
    let mut synced = false;
    let mut run_at: Option<Instant> = None;
    let mut queue: VecDeque<Refresh> = VecDeque::new();
    let mut next_refresh = Instant::now() + audit.config.interval;
    let mut tick = audit.config.interval;
    let mut rereads: FuturesUnordered<BoxFuture<'static, Reread>> = FuturesUnordered::new();
    loop {
        let debounce = audit.config.debounce;
        let ready = synced && audit.policy.is_ready();
        tokio::select! {
            event = pod_events.next() => match event {
                Some(Ok(WatchEvent::Init)) => listing = Some(HashMap::new()),
                Some(Ok(WatchEvent::InitApply(pod))) => {
                    if let (Some(listing), Some(running)) = (listing.as_mut(), RunningPod::of(&pod)) {
                        listing.insert(running.key(), running);
                    }
                }
                Some(Ok(WatchEvent::InitDone)) => {
                    audit.pods = listing.take().unwrap_or_default();
                    synced = true;
                    run_at.get_or_insert(Instant::now() + debounce);
                }
                Some(Ok(WatchEvent::Apply(pod))) => {
                    let key = format!(
                        "{}/{}",
                        pod.metadata.namespace.as_deref().unwrap_or("default"),
                        pod.metadata.name.as_deref().unwrap_or_default()
                    );
                    let running = RunningPod::of(&pod);
                    if audit.pods.get(&key) != running.as_ref() {
                        match running {
                            Some(running) => audit.pods.insert(key, running),
                            None => audit.pods.remove(&key),
                        };
                        run_at.get_or_insert(Instant::now() + debounce);
                    }
                }
                Some(Ok(WatchEvent::Delete(pod))) => {
                    let key = format!(
                        "{}/{}",
                        pod.metadata.namespace.as_deref().unwrap_or("default"),
                        pod.metadata.name.as_deref().unwrap_or_default()
                    );
                    if audit.pods.remove(&key).is_some() {
                        run_at.get_or_insert(Instant::now() + debounce);
                    }
                }
                Some(Err(e)) => tracing::warn!(error = %e, "pod watch failed; retrying"),
                None => return Err(ControllerError::WatchEnded { kind: "pods" }),
            },
            is_leader = leadership.changed() => {
                tracing::info!(is_leader, "audit publishing changed");
                audit.publishing = is_leader;
                // A new publisher writes everything once: it knows nothing of what was posted.
                audit.posted.clear();
                audit.written.clear();
                run_at.get_or_insert(Instant::now() + debounce);
            }
            changed = policy_changes.changed() => {
                if !changed {
                    return Err(ControllerError::WatchEnded { kind: "the policy picture" });
                }
                run_at.get_or_insert(Instant::now() + debounce);
            }
            () = sleep_until(run_at), if synced => {
                if audit.policy.is_ready() {
                    run_at = None;
                    audit.run().await;
                } else {
                    // The picture is published before it is marked ready: look again shortly.
                    run_at = Some(Instant::now() + debounce);
                }
            }
            () = sleep_until(audit.retry_at), if ready => {
                audit.retry_at = None;
                audit.forget_failures();
                run_at.get_or_insert(Instant::now() + debounce);
            }
            () = tokio::time::sleep_until(next_refresh), if ready && rereads.len() < audit.config.concurrency.max(1) => {
                if queue.is_empty() {
                    queue = audit.start_cycle().await;
                    tick = audit.config.interval / u32::try_from(queue.len().max(1)).unwrap_or(u32::MAX);
                }
                if let Some(refresh) = queue.pop_front() {
                    rereads.push(audit.reread(refresh));
                }
                next_refresh = Instant::now() + tick;
            }
            Some(reread) = rereads.next(), if !rereads.is_empty() => {
                if audit.apply_reread(reread) {
                    run_at.get_or_insert(Instant::now() + debounce);
                }
            }
        }
    }
}

/// SHA-256 of a report's summary and results (without timestamps): what decides a rewrite,
/// kept instead of the content itself.
fn content_hash(summary: &Summary, results: &[Value]) -> [u8; 32] {
    use sha2::Digest as _;
    let mut hasher = sha2::Sha256::new();
    hasher.update(serde_json::to_vec(summary).unwrap_or_default());
    for result in results {
        hasher.update(serde_json::to_vec(result).unwrap_or_default());
    }
    hasher.finalize().into()
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Whether two answers differ (a changed signature set, a failure appearing or going).
fn differs(old: Option<&Result<Signatures, Failure>>, new: &Result<Signatures, Failure>) -> bool {
    match (old, new) {
        (Some(Ok(a)), Ok(b)) => a != b,
        (Some(Err(a)), Err(b)) => a.to_string() != b.to_string(),
        _ => true,
    }
}

impl Audit {
    /// Judges every pod and publishes the results.
    async fn run(&mut self) {
        let snapshot = self.policy.snapshot();
        let exempt = &self.config.exempt_namespaces;
        let pods: Vec<&RunningPod> = self
            .pods
            .values()
            .filter(|p| !exempt.contains(&p.namespace))
            .collect();
        let filled = fill_book(
            self.source.as_ref(),
            &snapshot,
            &pods,
            &mut self.book,
            self.config.concurrency,
        )
        .await;
        self.metrics
            .lookups(LookupOperation::Resolve, filled.digests);
        self.metrics
            .lookups(LookupOperation::Signatures, filled.signatures);
        if filled.digests + filled.signatures > 0 {
            self.memo.clear();
        }
        if self.retry_at.is_none() && self.book.has_failures() {
            self.retry_at = Some(Instant::now() + self.config.failure_retry);
        }
        let mut results = judge_pods(
            &snapshot,
            self.pods.values(),
            &self.book,
            &mut self.memo,
            &self.config.exempt_namespaces,
        );
        results.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        self.publish_metrics(&results);
        if !self.publishing {
            return;
        }
        self.post_events(&results).await;
        if self.reports_installed {
            self.write_reports(&results).await;
        }
    }

    fn publish_metrics(&self, results: &[PodResult]) {
        let mut pods = Summary::default();
        let mut images: BTreeMap<String, Summary> = BTreeMap::new();
        let mut seen: HashSet<(&str, &str, Option<&str>)> = HashSet::new();
        for pod in results {
            pods.add(pod.result());
            let summary = images.entry(pod.namespace.clone()).or_default();
            for c in &pod.containers {
                if seen.insert((&pod.namespace, &c.image, c.digest.as_deref())) {
                    summary.add(c.judged.result);
                }
            }
        }
        self.metrics.publish(&pods, &images);
    }

    /// Posts an Event per failing container: when it turns to failing (or runs another digest),
    /// then once per interval while it stays so.
    async fn post_events(&mut self, results: &[PodResult]) {
        let now = Instant::now();
        let mut failing = HashSet::new();
        let mut due_events = Vec::new();
        for pod in results {
            for c in &pod.containers {
                if !c.judged.result.denies() {
                    continue;
                }
                let key = (
                    format!("{}/{}", pod.namespace, pod.name),
                    c.container.clone(),
                );
                failing.insert(key.clone());
                let due = self.posted.get(&key).is_none_or(|p| {
                    p.digest != c.digest || now.duration_since(p.at) >= self.config.interval
                });
                if !due {
                    continue;
                }
                self.posted.insert(
                    key,
                    Posted {
                        digest: c.digest.clone(),
                        at: now,
                    },
                );
                due_events.push(unverified_event(
                    pod,
                    c,
                    &self.config.instance,
                    Timestamp::now(),
                ));
            }
        }
        // A container that passes again (or is gone) posts at once if it fails later.
        self.posted.retain(|key, _| failing.contains(key));
        let client = &self.client;
        futures::stream::iter(due_events)
            .for_each_concurrent(API_CONCURRENCY, |event| async move {
                let namespace = event.metadata.namespace.clone().unwrap_or_default();
                let api: Api<Event> = Api::namespaced(client.clone(), &namespace);
                if let Err(e) = api.create(&PostParams::default(), &event).await {
                    let pod = event.regarding.and_then(|r| r.name).unwrap_or_default();
                    tracing::warn!(%pod, %namespace, error = %e,
                        "cannot post UnverifiedImageRunning event");
                }
            })
            .await;
    }

    fn report_api(&self, namespace: &str) -> Api<DynamicObject> {
        let resource = ApiResource {
            group: "wgpolicyk8s.io".into(),
            version: "v1alpha2".into(),
            api_version: super::report::REPORT_API_VERSION.into(),
            kind: "PolicyReport".into(),
            plural: "policyreports".into(),
        };
        Api::namespaced_with(self.client.clone(), namespace, &resource)
    }

    /// Writes the reports of namespaces whose content changed (an empty one for a namespace
    /// whose pods are all gone).
    async fn write_reports(&mut self, results: &[PodResult]) {
        let grouped = by_namespace(results);
        let mut namespaces: Vec<String> = grouped.keys().map(|ns| ns.to_string()).collect();
        namespaces.extend(
            self.written
                .keys()
                .filter(|ns| !grouped.contains_key(ns.as_str()))
                .cloned(),
        );
        let mut due = Vec::new();
        for namespace in namespaces {
            let pods = grouped.get(namespace.as_str()).cloned().unwrap_or_default();
            let (summary, entries) = report_content(&pods);
            let content = content_hash(&summary, &entries);
            if self.written.get(&namespace) == Some(&content) {
                continue;
            }
            let report = policy_report(&namespace, &summary, &entries, Timestamp::now());
            due.push((namespace, pods.is_empty(), content, report));
        }
        let this = &*self;
        let written: Vec<(String, bool, [u8; 32], bool)> = futures::stream::iter(due)
            .map(|(namespace, empty, content, report)| async move {
                let params = PatchParams::apply(crate::controller::FIELD_MANAGER).force();
                let applied = this
                    .report_api(&namespace)
                    .patch(REPORT_NAME, &params, &Patch::Apply(&report))
                    .await;
                if let Err(e) = &applied {
                    tracing::warn!(namespace = %namespace, error = %e, "cannot write PolicyReport");
                }
                (namespace, empty, content, applied.is_ok())
            })
            .buffer_unordered(API_CONCURRENCY)
            .collect()
            .await;
        for (namespace, empty, content, ok) in written {
            match (ok, empty) {
                (true, true) => {
                    self.written.remove(&namespace);
                }
                (true, false) => {
                    self.written.insert(namespace, content);
                }
                (false, _) => {}
            }
        }
    }

    /// Whether the PolicyReport CRD is installed (and reports are wanted).
    async fn check_reports_crd(&self) -> bool {
        if !self.config.policy_reports {
            return false;
        }
        match self
            .client
            .list_api_group_resources(super::report::REPORT_API_VERSION)
            .await
        {
            Ok(list) => list.resources.iter().any(|r| r.name == "policyreports"),
            Err(e) => {
                tracing::debug!(error = %e, "PolicyReport API not served; no reports written");
                false
            }
        }
    }

    /// A new interval cycle: answers no running pod needs are dropped, every needed one is
    /// queued for a re-read.
    async fn start_cycle(&mut self) -> VecDeque<Refresh> {
        let snapshot = self.policy.snapshot();
        let exempt = &self.config.exempt_namespaces;
        let pods: Vec<&RunningPod> = self
            .pods
            .values()
            .filter(|p| !exempt.contains(&p.namespace))
            .collect();
        let digests = missing_digests(&snapshot, pods.iter().copied(), &Book::default());
        let signatures =
            missing_signatures(&snapshot, pods.iter().copied(), &self.book.only_digests());
        let wanted_digests: HashSet<&str> = digests.iter().map(|w| w.key.as_str()).collect();
        let wanted_signatures: HashSet<&str> = signatures.iter().map(|w| w.key.as_str()).collect();
        let before = self.book.digests.len() + self.book.signatures.len();
        self.book
            .digests
            .retain(|k, _| wanted_digests.contains(k.as_str()));
        self.book
            .signatures
            .retain(|k, _| wanted_signatures.contains(k.as_str()));
        if self.book.digests.len() + self.book.signatures.len() != before {
            self.memo.clear();
        }
        if !self.reports_installed {
            self.reports_installed = self.check_reports_crd().await;
        }
        digests
            .into_iter()
            .map(Refresh::Digest)
            .chain(signatures.into_iter().map(Refresh::Signatures))
            .collect()
    }

    /// Reads one answer again, bypassing the caches.
    fn reread(&self, refresh: Refresh) -> BoxFuture<'static, Reread> {
        let source = Arc::clone(&self.source);
        let metrics = Arc::clone(&self.metrics);
        async move {
            match &refresh {
                Refresh::Digest(w) => {
                    metrics.lookups(LookupOperation::Resolve, 1);
                    let digest = source.digest(&w.image, &w.asker).await;
                    (refresh, digest, None)
                }
                Refresh::Signatures(w) => {
                    metrics.lookups(LookupOperation::Refresh, 1);
                    let signatures = source.signatures(&w.image, &w.asker, true).await;
                    (refresh, Ok(Arc::from("")), Some(signatures))
                }
            }
        }
        .boxed()
    }

    /// Keeps a re-read answer; `true` when it differs from the one held (a run is due).
    fn apply_reread(&mut self, (refresh, digest, signatures): Reread) -> bool {
        let changed = match (&refresh, signatures) {
            (Refresh::Signatures(w), Some(new)) => {
                let changed = differs(self.book.signatures.get(&w.key), &new);
                if changed {
                    self.book.signatures.insert(w.key.clone(), new);
                }
                changed
            }
            (Refresh::Digest(w), _) => {
                let changed = match (self.book.digests.get(&w.key), &digest) {
                    (Some(Ok(a)), Ok(b)) => a != b,
                    (Some(Err(a)), Err(b)) => a.to_string() != b.to_string(),
                    _ => true,
                };
                if changed {
                    self.book.digests.insert(w.key.clone(), digest);
                }
                changed
            }
            (Refresh::Signatures(_), None) => false,
        };
        if changed {
            self.memo.clear();
        }
        changed
    }
}

impl Audit {
    /// Drops the failed answers held, so that the next run asks again.
    fn forget_failures(&mut self) {
        self.book.digests.retain(|_, answer| answer.is_ok());
        self.book.signatures.retain(|_, answer| answer.is_ok());
        self.memo.clear();
    }
}

impl Book {
    /// Whether an answer held is a failure.
    fn has_failures(&self) -> bool {
        self.digests.values().any(Result::is_err) || self.signatures.values().any(Result::is_err)
    }

    /// The resolved digests alone (which signature sets are needed depends on them).
    fn only_digests(&self) -> Book {
        Book {
            digests: self.digests.clone(),
            signatures: HashMap::new(),
        }
    }
}
