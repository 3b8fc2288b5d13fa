//! Reconcile: list the repositories and tags the rules' scopes cover (`/v2/_catalog`, paginated,
//! and each repository's tag list) and sign every image that lacks a rule's signature. Catches what
//! events missed: pushes while the signer was down past the registry's retries, events lost when
//! the registry restarted, images pushed before a rule existed (`signet sign --backfill`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;

use crate::crd::Trigger;
use crate::reference::ImageRef;
use crate::signature::is_artifact_tag;

use super::engine::Signer;
use super::event::{is_image_media_type, is_referrer};
use super::rules::CompiledRule;

/// Which rules a pass signs under.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RuleSelection {
    /// `Automatic` rules only (the periodic pass, and `signet sign --backfill`).
    Automatic,
    /// Every rule, `Manual` ones included.
    All,
}

/// What one pass found and did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReconcileReport {
    /// Repositories listed that some rule covers.
    pub repositories: usize,
    /// Tagged images examined.
    pub images: usize,
    /// Signatures that were missing and were added.
    pub signed: usize,
    /// Signatures already present.
    pub present: usize,
    /// Rules not applied (e.g. a `Default` rule without a tag), counted.
    pub skipped: usize,
    /// One line per repository, registry or image that could not be handled.
    pub failures: Vec<String>,
}

impl ReconcileReport {
    /// A one-line summary.
    pub fn summary(&self) -> String {
        format!(
            "{} repositories, {} images: {} signatures added, {} present, {} failures",
            self.repositories,
            self.images,
            self.signed,
            self.present,
            self.failures.len()
        )
    }
}

/// One image to look at: its identity (with tag) and the rules covering it.
struct Candidate {
    identity: ImageRef,
    rules: Vec<Arc<CompiledRule>>,
}

/// Runs one pass over every registry the selected rules name.
pub async fn reconcile(signer: &Signer, selection: RuleSelection) -> ReconcileReport {
    let metrics = signer.metrics();
    metrics.reconcile_runs.inc();
    let rule_set = signer.rules();
    let rules: Vec<Arc<CompiledRule>> = rule_set
        .all()
        .iter()
        .filter(|r| selection == RuleSelection::All || r.trigger == Trigger::Automatic)
        .cloned()
        .collect();
    let mut by_host: BTreeMap<String, Vec<Arc<CompiledRule>>> = BTreeMap::new();
    for rule in &rules {
        let hosts = rule.scope_hosts();
        if hosts.len() < rule.scope.len() {
            tracing::warn!(rule = %rule.name, "scope globs with a wildcard in the host cannot be listed; reconcile skips them");
        }
        for host in hosts {
            let entry = by_host.entry(host).or_default();
            if !entry.iter().any(|r| Arc::ptr_eq(r, rule)) {
                entry.push(Arc::clone(rule));
            }
        }
    }
    let mut report = ReconcileReport::default();
    let mut candidates = Vec::new();
    for (host, host_rules) in &by_host {
        let repositories = match signer.client().catalog(host).await {
            Ok(r) => r,
            Err(e) => {
                report.failures.push(format!("catalog of {host}: {e}"));
                continue;
            }
        };
        for repository in repositories {
            let repo_path = format!("{host}/{repository}");
            let covering: Vec<_> = host_rules
                .iter()
                .filter(|r| r.may_cover_repository(&repo_path))
                .cloned()
                .collect();
            if covering.is_empty() {
                continue;
            }
            let Ok(repo) = ImageRef::from_parts(host, &repository, None, None) else {
                report
                    .failures
                    .push(format!("{repo_path}: not a valid repository name"));
                continue;
            };
            report.repositories += 1;
            let tags = match signer.client().list_tags(&repo).await {
                Ok(t) => t,
                Err(e) => {
                    report.failures.push(format!("tags of {repo_path}: {e}"));
                    continue;
                }
            };
            for tag in tags.iter().filter(|t| !is_artifact_tag(t)) {
                let identity = repo.with_tag(tag);
                let rules: Vec<_> = covering
                    .iter()
                    .filter(|r| r.covers(&identity))
                    .cloned()
                    .collect();
                if !rules.is_empty() {
                    candidates.push(Candidate { identity, rules });
                }
            }
        }
    }
    report.images = candidates.len();
    let workers = signer.options().workers.max(1);
    let results: Vec<Result<Option<super::Ensured>, String>> = futures::stream::iter(candidates)
        .map(|c| async move {
            let Some(_worker) = signer.worker().await else {
                return Err(format!("{}: worker pool closed", c.identity));
            };
            reconcile_image(signer, &c).await
        })
        .buffer_unordered(workers)
        .collect()
        .await;
    for result in results {
        match result {
            Ok(Some(ensured)) => {
                report.signed += ensured.added.len();
                report.present += ensured.present.len();
                report.skipped += ensured.skipped.len();
            }
            Ok(None) => {}
            Err(line) => report.failures.push(line),
        }
    }
    metrics.reconcile_missing.inc_by(report.signed as u64);
    metrics.reconcile_signed.inc_by(report.signed as u64);
    metrics
        .reconcile_failed
        .inc_by(report.failures.len() as u64);
    if report.signed > 0 || !report.failures.is_empty() {
        tracing::info!(summary = %report.summary(), failures = ?report.failures, "reconcile pass");
    } else {
        tracing::debug!(summary = %report.summary(), "reconcile pass");
    }
    report
}

/// Resolves one tag and signs it under its rules; `None` when it is not an image to sign.
async fn reconcile_image(
    signer: &Signer,
    candidate: &Candidate,
) -> Result<Option<super::Ensured>, String> {
    let identity = &candidate.identity;
    let manifest = match signer.client().fetch_manifest(identity).await {
        Ok(Some(m)) => m,
        // Deleted between listing and fetching.
        Ok(None) => return Ok(None),
        Err(e) => return Err(format!("{identity}: {e}")),
    };
    if !is_image_media_type(&manifest.media_type) || is_referrer(&manifest.bytes) {
        return Ok(None);
    }
    let failed = |e: super::SignerError| format!("{identity}: {e}");
    let mut ensured = signer
        .ensure_signed(identity, &manifest.digest, &candidate.rules)
        .await
        .map_err(failed)?;
    // A multi-arch image: its platform manifests too, as on a push event.
    ensured.platforms = signer
        .ensure_platforms_signed(
            identity,
            &manifest.digest,
            &manifest.bytes,
            &candidate.rules,
        )
        .await
        .map_err(failed)?;
    Ok(Some(ensured))
}

/// Reconciles now and then every `interval` (`None`: only now), for as long as the signer runs.
/// Waits for the policy source to be ready first, so that a pass never runs on an empty picture.
pub async fn reconcile_loop(signer: Signer, interval: Option<Duration>) {
    loop {
        if !signer.is_ready() {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        }
        reconcile(&signer, RuleSelection::Automatic).await;
        match interval {
            Some(interval) => tokio::time::sleep(interval).await,
            None => return,
        }
    }
}
