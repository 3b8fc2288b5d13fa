//! `signet audit`: what would this policy folder deny right now? It judges the pods of a file
//! (`--pods`, `kubectl get pods -A -o json`) or of the cluster (`--cluster`) by the digests they
//! run, with the engine admission uses, and prints one row per pod and container (or JSON).
//! `--policy NAME` keeps only that (Cluster)VerificationPolicy and judges it as if it were
//! `Enforce`: the question before switching a `DryRun` policy on. Exit 1 when anything would be
//! denied (`fail`, or `error`: a registry that does not answer denies at admission too), 0
//! otherwise, 2 when the audit could not run.
//!
//! `signet audit --watch` runs the audit loop alone (for clusters whose webhook runs
//! elsewhere): Events, gauges on `--ops-listen`, PolicyReports; see `controller::audit`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clap::{ArgGroup, Args, ValueEnum};
use serde::Serialize;

use super::{CliError, NoMatchArg, Outcome};
use crate::controller::audit::{
    AuditConfig, AuditResult, Book, Memo, PodResult, RunningPod, StoreSource, Summary, fill_book,
    judge_pods, pods_from_json,
};
use crate::controller::{LeaderElection, StatusWrites, load_policy_dir};

/// The Lease whose holder posts the audit's Events and writes its PolicyReports.
pub const AUDIT_LEASE: &str = "signet-audit";
use crate::crd::Mode;
use crate::policy::{self, EngineOptions, PolicyInputs, Snapshot};
use crate::registry::{RegistryClient, RegistryOptions, SignatureStore};
use crate::serve::parse_duration;

/// `--output` of `audit`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum AuditOutput {
    /// One row per pod and container.
    Table,
    /// One JSON document: the rows and a summary.
    Json,
}

/// The audit loop's settings, shared by `signet audit --watch` and `signet webhook --audit`.
#[derive(Args, Clone, Debug)]
pub struct AuditLoopArgs {
    /// How often every signature is read again (spread over the interval), to notice deleted
    /// signatures; policy and pod changes are judged at once regardless.
    #[arg(long, env = "SIGNET_AUDIT_INTERVAL", default_value = "1h", value_parser = parse_duration)]
    pub audit_interval: Duration,
    /// Registry lookups the audit makes at once.
    #[arg(long, env = "SIGNET_AUDIT_CONCURRENCY", default_value_t = 8)]
    pub audit_concurrency: usize,
    /// Write PolicyReports (wgpolicyk8s.io/v1alpha2) when that CRD is installed.
    #[arg(long, env = "SIGNET_AUDIT_POLICY_REPORTS", default_value_t = true, action = clap::ArgAction::Set)]
    pub audit_policy_reports: bool,
}

impl AuditLoopArgs {
    /// The loop's configuration; events are reported by `instance`; pods of `exempt`
    /// namespaces are skipped; with `lease_namespace`, only the holder of the Lease
    /// `signet-audit` there posts Events and writes reports.
    pub fn config(
        &self,
        instance: String,
        exempt: Vec<String>,
        lease_namespace: Option<String>,
    ) -> AuditConfig {
        let publishers = match lease_namespace {
            Some(namespace) => StatusWrites::WhenLeader(LeaderElection {
                lease_namespace: namespace,
                lease_name: AUDIT_LEASE.to_string(),
                identity: format!("{instance}-{}", std::process::id()),
            }),
            None => StatusWrites::Always,
        };
        AuditConfig {
            interval: self.audit_interval.max(Duration::from_secs(1)),
            concurrency: self.audit_concurrency.max(1),
            instance,
            policy_reports: self.audit_policy_reports,
            exempt_namespaces: exempt,
            publishers,
            ..AuditConfig::default()
        }
    }
}

/// Flags of `signet audit`.
#[derive(Args, Debug)]
#[command(group(ArgGroup::new("pods_from").required(true).args(["pods", "cluster", "watch"])))]
pub struct AuditArgs {
    /// Policy folder to judge by (a draft, or the live one); absent with --cluster or --watch:
    /// the cluster's own policies.
    #[arg(long, env = "SIGNET_POLICY_DIR")]
    pub policy_dir: Option<PathBuf>,
    /// Pods to judge: `kubectl get pods -A -o json` output (a List or one Pod).
    #[arg(long, env = "SIGNET_AUDIT_PODS")]
    pub pods: Option<PathBuf>,
    /// Judge the pods running in the cluster now.
    #[arg(long, env = "SIGNET_AUDIT_CLUSTER")]
    pub cluster: bool,
    /// Keep auditing the cluster: Events, gauges (--ops-listen) and PolicyReports, until SIGTERM.
    #[arg(long, env = "SIGNET_AUDIT_WATCH", conflicts_with = "policy")]
    pub watch: bool,
    /// Only this ClusterVerificationPolicy or VerificationPolicy (`name` or `namespace/name`),
    /// judged as if its mode were Enforce.
    #[arg(long, env = "SIGNET_AUDIT_POLICY")]
    pub policy: Option<String>,
    /// Output format.
    #[arg(long, env = "SIGNET_OUTPUT", value_enum, default_value_t = AuditOutput::Table)]
    pub output: AuditOutput,
    /// What happens to images no policy matches.
    #[arg(long, env = "SIGNET_NO_MATCH", value_enum, default_value_t = NoMatchArg::Allow)]
    pub no_match: NoMatchArg,
    /// Namespace whose pods admission does not check (as `signet webhook --exempt-namespace`):
    /// reported `skip`, never looked up; repeatable (default: kube-system).
    #[arg(
        long = "exempt-namespace",
        env = "SIGNET_EXEMPT_NAMESPACES",
        value_delimiter = ',',
        default_value = "kube-system"
    )]
    pub exempt_namespaces: Vec<String>,
    /// Serve /metrics (the audit gauges) over plain HTTP here (--watch).
    #[arg(long, env = "SIGNET_OPS_LISTEN")]
    pub ops_listen: Option<SocketAddr>,
    /// The name events are reported by (--watch).
    #[arg(long, env = "POD_NAME", default_value = "signet-audit")]
    pub pod_name: String,
    /// Loop settings.
    #[command(flatten)]
    pub audit: AuditLoopArgs,
}

/// One row of the report.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Row {
    /// Namespace.
    pub namespace: String,
    /// Pod.
    pub pod: String,
    /// Container (or image volume).
    pub container: String,
    /// The image as the spec writes it.
    pub image: String,
    /// The digest judged.
    pub digest: Option<String>,
    /// `pass`, `fail`, `warn`, `error`, `skip`.
    pub verdict: AuditResult,
    /// The engine's reason, when not pass/skip.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Serialize)]
struct JsonReport<'a> {
    summary: Summary,
    #[serde(rename = "wouldDeny")]
    would_deny: bool,
    results: &'a [Row],
}

/// Runs `signet audit`.
pub async fn run(args: AuditArgs, registry: &RegistryOptions) -> Result<Outcome, CliError> {
    if args.watch {
        return super::audit_watch::run(args, registry).await;
    }
    let options = EngineOptions {
        no_match: args.no_match.into(),
    };
    let (pods, cluster_namespaces) = match &args.pods {
        Some(path) => (read_pods(path)?, None),
        None => {
            let client = kube_client().await?;
            let (pods, namespaces) = cluster_pods(&client).await?;
            (pods, Some(namespaces))
        }
    };
    let snapshot = match &args.policy_dir {
        Some(dir) => {
            let mut inputs = load_policy_dir(dir)
                .map_err(|e| CliError::Usage(e.to_string()))?
                .inputs;
            if let Some(name) = &args.policy {
                only_policy(&mut inputs, name, dir)?;
            }
            // A draft folder judged against a cluster: namespaces it does not describe keep
            // the labels the cluster gives them.
            for (namespace, labels) in cluster_namespaces.into_iter().flatten() {
                inputs.namespaces.entry(namespace).or_insert(labels);
            }
            Arc::new(policy::compile(&inputs, 1, options).snapshot)
        }
        None if args.pods.is_some() => {
            return Err(CliError::Usage(
                "--pods needs --policy-dir (the policies to judge them by)".into(),
            ));
        }
        None if args.policy.is_some() => {
            return Err(CliError::Usage(
                "--policy needs --policy-dir (the folder the policy is taken from)".into(),
            ));
        }
        None => live_snapshot(options).await?,
    };
    let store = SignatureStore::new(RegistryClient::new(registry)?);
    let rows = audit_pods(
        &StoreSource::new(store),
        &snapshot,
        &pods,
        &args.exempt_namespaces,
        args.audit.audit_concurrency,
    )
    .await;
    let mut summary = Summary::default();
    rows.iter().for_each(|r| summary.add(r.verdict));
    let would_deny = rows.iter().any(|r| r.verdict.denies());
    match args.output {
        AuditOutput::Table => print!("{}", table(&rows, &summary)),
        AuditOutput::Json => println!(
            "{}",
            serde_json::to_string_pretty(&JsonReport {
                summary,
                would_deny,
                results: &rows,
            })?
        ),
    }
    Ok(if would_deny {
        Outcome::NotVerified
    } else {
        Outcome::Success
    })
}

/// Judges `pods` under `snapshot`, asking `source` for what the engine needs.
pub async fn audit_pods(
    source: &dyn crate::controller::audit::SignatureSource,
    snapshot: &Snapshot,
    pods: &[RunningPod],
    exempt: &[String],
    concurrency: usize,
) -> Vec<Row> {
    let refs: Vec<&RunningPod> = pods.iter().collect();
    let judged: Vec<&RunningPod> = pods
        .iter()
        .filter(|p| !exempt.contains(&p.namespace))
        .collect();
    let mut book = Book::default();
    fill_book(source, snapshot, &judged, &mut book, concurrency).await;
    let judged = judge_pods(snapshot, refs, &book, &mut Memo::default(), exempt);
    rows_of(&judged)
}

fn rows_of(judged: &[PodResult]) -> Vec<Row> {
    judged
        .iter()
        .flat_map(|pod| {
            pod.containers.iter().map(|c| Row {
                namespace: pod.namespace.clone(),
                pod: pod.name.clone(),
                container: c.container.clone(),
                image: c.image.clone(),
                digest: c.digest.clone(),
                verdict: c.judged.result,
                reason: c.judged.reason.clone(),
            })
        })
        .collect()
}

/// The table: aligned columns, the digest shortened (the JSON output has it whole), the reason
/// last and whole, then a summary line.
pub fn table(rows: &[Row], summary: &Summary) -> String {
    let header = [
        "NAMESPACE",
        "POD",
        "CONTAINER",
        "IMAGE",
        "DIGEST",
        "VERDICT",
        "REASON",
    ];
    let cells: Vec<[String; 7]> = rows
        .iter()
        .map(|r| {
            [
                r.namespace.clone(),
                r.pod.clone(),
                r.container.clone(),
                r.image.clone(),
                r.digest
                    .as_deref()
                    .map_or_else(|| "-".to_string(), short_digest),
                r.verdict.as_str().to_string(),
                r.reason.clone().unwrap_or_else(|| "-".to_string()),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &cells {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: &[String]| -> String {
        let mut out = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<width$}  ", width = widths[i]));
            }
        }
        out.trim_end().to_string() + "\n"
    };
    let mut out = line(&header.map(str::to_string));
    for row in &cells {
        out.push_str(&line(row));
    }
    let pods: std::collections::BTreeSet<(&str, &str)> = rows
        .iter()
        .map(|r| (r.namespace.as_str(), r.pod.as_str()))
        .collect();
    out.push_str(&format!(
        "{} images in {} pods: {} pass, {} fail, {} error, {} warn, {} skip\n",
        rows.len(),
        pods.len(),
        summary.pass,
        summary.fail,
        summary.error,
        summary.warn,
        summary.skip
    ));
    out
}

fn short_digest(digest: &str) -> String {
    match digest.strip_prefix("sha256:") {
        Some(hex) if hex.len() > 12 => format!("sha256:{}", &hex[..12]),
        _ => digest.to_string(),
    }
}

fn read_pods(path: &Path) -> Result<Vec<RunningPod>, CliError> {
    let text = std::fs::read_to_string(path).map_err(|source| CliError::File {
        what: "cannot read pods file",
        path: path.to_path_buf(),
        source,
    })?;
    pods_from_json(&text).map_err(|e| CliError::Usage(format!("{}: {e}", path.display())))
}

/// Keeps only the policy `name` (`name` or `namespace/name`), switched to Enforce.
fn only_policy(inputs: &mut PolicyInputs, name: &str, dir: &Path) -> Result<(), CliError> {
    let (namespace, bare) = match name.split_once('/') {
        Some((ns, n)) => (Some(ns), n),
        None => (None, name),
    };
    inputs
        .cluster_policies
        .retain(|p| namespace.is_none() && p.metadata.name.as_deref() == Some(bare));
    inputs.policies.retain(|p| {
        p.metadata.name.as_deref() == Some(bare)
            && namespace.is_none_or(|ns| p.metadata.namespace.as_deref() == Some(ns))
    });
    let found = inputs.cluster_policies.len() + inputs.policies.len();
    if found == 0 {
        return Err(CliError::Usage(format!(
            "--policy {name}: no ClusterVerificationPolicy or VerificationPolicy of that name in {}",
            dir.display()
        )));
    }
    if found > 1 {
        return Err(CliError::Usage(format!(
            "--policy {name}: {found} policies have that name in {}; give namespace/name",
            dir.display()
        )));
    }
    for policy in &mut inputs.cluster_policies {
        policy.spec.mode = Mode::Enforce;
    }
    for policy in &mut inputs.policies {
        policy.spec.mode = Mode::Enforce;
    }
    Ok(())
}

async fn kube_client() -> Result<kube::Client, CliError> {
    kube::Client::try_default().await.map_err(|e| {
        CliError::Usage(format!(
            "cannot reach the Kubernetes API (use --pods FILE to judge pods from a file): {e}"
        ))
    })
}

type NamespaceLabels = BTreeMap<String, BTreeMap<String, String>>;

/// Every pod of the cluster (listed page by page) and every namespace's labels.
async fn cluster_pods(
    client: &kube::Client,
) -> Result<(Vec<RunningPod>, NamespaceLabels), CliError> {
    use k8s_openapi::api::core::v1::{Namespace, Pod};
    use kube::ResourceExt as _;
    use kube::api::{Api, ListParams};
    let api_error =
        |what: &str, e: kube::Error| CliError::Usage(format!("cannot list {what}: {e}"));
    let pods_api: Api<Pod> = Api::all(client.clone());
    let mut pods = Vec::new();
    let mut params = ListParams::default().limit(500);
    loop {
        let page = pods_api
            .list(&params)
            .await
            .map_err(|e| api_error("pods", e))?;
        pods.extend(page.items.iter().filter_map(RunningPod::of));
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(token) => params = params.continue_token(&token),
            None => break,
        }
    }
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let labels = namespaces
        .list_metadata(&ListParams::default())
        .await
        .map_err(|e| api_error("namespaces", e))?
        .items
        .iter()
        .map(|ns| (ns.name_any(), ns.labels().clone()))
        .collect();
    Ok((pods, labels))
}

/// The cluster's own policies, once synced.
async fn live_snapshot(options: EngineOptions) -> Result<Arc<Snapshot>, CliError> {
    let mut source = crate::serve::PolicySource::start(crate::serve::PolicySourceConfig {
        policy_dir: None,
        options,
        status_writes: StatusWrites::Never,
    })
    .await
    .map_err(|e| CliError::Usage(e.to_string()))?;
    source
        .wait_ready()
        .await
        .map_err(|e| CliError::Usage(e.to_string()))?;
    let snapshot = source.state.snapshot();
    source.stop();
    Ok(snapshot)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_aligns_and_shortens_digests() {
        let rows = vec![
            Row {
                namespace: "shop".into(),
                pod: "web".into(),
                container: "app".into(),
                image: "r.example/app:v1".into(),
                digest: Some(format!("sha256:{}", "a".repeat(64))),
                verdict: AuditResult::Fail,
                reason: Some("no signature".into()),
            },
            Row {
                namespace: "kube-system".into(),
                pod: "dns".into(),
                container: "coredns".into(),
                image: "coredns:1.11".into(),
                digest: None,
                verdict: AuditResult::Skip,
                reason: None,
            },
        ];
        let mut summary = Summary::default();
        rows.iter().for_each(|r| summary.add(r.verdict));
        let text = table(&rows, &summary);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert!(
            lines[0].starts_with("NAMESPACE    POD  CONTAINER"),
            "{text}"
        );
        assert!(
            lines[1].contains("sha256:aaaaaaaaaaaa  fail     no signature"),
            "{text}"
        );
        assert!(lines[2].ends_with("skip     -"), "{text}");
        assert_eq!(
            lines[3],
            "2 images in 2 pods: 0 pass, 1 fail, 0 error, 0 warn, 1 skip"
        );
    }
}
