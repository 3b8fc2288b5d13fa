//! `signet audit --watch`: the audit loop alone, for clusters whose webhook runs elsewhere (or
//! not yet). Policies come from the cluster, or from `--policy-dir` (a draft watched like the
//! live ones); pods always from the cluster. The loop uses admission's lookups (caches, one
//! lookup in flight per key), with the process's own registry credentials. `/metrics` (the
//! `signet_audit_*` series) and `/healthz` are served on `--ops-listen` when given.

use std::sync::Arc;

use axum::Router;
use axum::routing::get;

use super::audit::AuditArgs;
use super::{CliError, Outcome};
use crate::admission::audit_source::AdmissionLookups;
use crate::admission::lookup::{LookupTimings, Lookups};
use crate::controller::StatusWrites;
use crate::controller::audit::{AuditMetrics, run_audit};
use crate::policy::EngineOptions;
use crate::registry::{RegistryClient, RegistryOptions};
use crate::serve::{Drain, PolicySource, PolicySourceConfig, Server, bind, shutdown_signal};

/// Entries per lookup cache of the standalone audit.
const CACHE_ENTRIES: u64 = 100_000;

/// Runs the audit loop until SIGTERM or Ctrl-C.
pub async fn run(args: AuditArgs, registry: &RegistryOptions) -> Result<Outcome, CliError> {
    let failed = |e: &dyn std::fmt::Display| CliError::Usage(e.to_string());
    let mut source = PolicySource::start(PolicySourceConfig {
        policy_dir: args.policy_dir.clone(),
        options: EngineOptions {
            no_match: args.no_match.into(),
        },
        status_writes: StatusWrites::Never,
    })
    .await
    .map_err(|e| failed(&e))?;
    let kube = match source.kube.clone() {
        Some(kube) => kube,
        None => kube::Client::try_default().await.map_err(|e| {
            CliError::Usage(format!(
                "--watch audits the cluster's pods, and the Kubernetes API cannot be reached: {e}"
            ))
        })?,
    };
    let lookups = Lookups::new(
        CACHE_ENTRIES,
        LookupTimings::default(),
        Arc::new(crate::admission::Metrics::new()),
    );
    let lookups = Arc::new(AdmissionLookups::new(
        Arc::new(lookups),
        RegistryClient::new(registry)?,
        None,
    ));
    let metrics = Arc::new(AuditMetrics::new());
    let drain = Drain::new();
    let mut ops = match args.ops_listen {
        Some(listen) => {
            let served = Arc::clone(&metrics);
            let app = Router::new()
                .route("/healthz", get(|| async { "ok" }))
                .route(
                    "/metrics",
                    get(move || {
                        let served = Arc::clone(&served);
                        async move { served.encode().unwrap_or_default() }
                    }),
                );
            let listener = bind(listen).map_err(|e| failed(&e))?;
            Some(Server::start("ops", listener, app, None, &drain).map_err(|e| failed(&e))?)
        }
        None => None,
    };
    let audit = run_audit(
        kube,
        source.state.clone(),
        lookups,
        metrics,
        args.audit
            .config(args.pod_name.clone(), args.exempt_namespaces.clone(), None),
    );
    let ended = tokio::select! {
        () = shutdown_signal() => Ok(Outcome::Success),
        e = source.ended() => Err(failed(&e)),
        e = audit => Err(CliError::Usage(match e {
            Ok(()) => "the audit stopped".to_string(),
            Err(e) => e.to_string(),
        })),
        e = async {
            match ops.as_mut() {
                Some(server) => server.died().await,
                None => std::future::pending().await,
            }
        } => Err(failed(&e)),
    };
    source.stop();
    ended
}
