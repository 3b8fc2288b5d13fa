//! `signet webhook`'s run loop: wires the policy source, the registry client, the optional
//! Kubernetes client and the servers (admission port, optional operations port), then drains
//! on SIGTERM. It takes a plain [`WebhookConfig`]; the flags live in `cli::webhook`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::decide::{Admission, DecisionSettings};
use super::metrics::Metrics;
use super::server::{WebhookServer, ops_router};
use crate::controller::audit::{AuditConfig, run_audit};
use crate::controller::{ControllerError, LeaderElection, StatusWrites};
use crate::policy::EngineOptions;
use crate::registry::{RegistryClient, RegistryError, RegistryOptions};
use crate::serve::{
    Drain, DrainSettings, PolicySource, PolicySourceConfig, PolicySourceError, Server, ServerError,
    TlsSource, bind, drain_and_stop, shutdown_signal,
};

/// Why `signet webhook` could not run.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// Settings that do not fit together.
    #[error("{0}")]
    Config(String),
    /// The registry client could not be built.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// The policy source could not start, or stopped.
    #[error(transparent)]
    Policy(#[from] PolicySourceError),
    /// A server failed.
    #[error(transparent)]
    Server(#[from] ServerError),
    /// The audit of running pods stopped.
    #[error("audit: {0}")]
    Audit(#[from] ControllerError),
}

/// Everything `signet webhook` needs, already read from flags.
#[derive(Clone, Debug)]
pub struct WebhookConfig {
    /// Address of the admission port (HTTPS).
    pub listen: SocketAddr,
    /// Its certificate.
    pub tls: TlsSource,
    /// Also serve probes and metrics over plain HTTP here (`--metrics-listen`).
    pub metrics_listen: Option<SocketAddr>,
    /// Folder of policy YAML; `None`: the cluster.
    pub policy_dir: Option<PathBuf>,
    /// Engine options (`--no-match`).
    pub engine: EngineOptions,
    /// How requests are decided.
    pub settings: DecisionSettings,
    /// The pod's namespace (where the Lease lives).
    pub pod_namespace: Option<String>,
    /// Only the Lease holder writes CRD status (cluster mode).
    pub leader_election: bool,
    /// How long to keep accepting after SIGTERM while `/readyz` answers 503.
    pub shutdown_delay: Duration,
    /// Threads serving the admission port, one single-threaded runtime each
    /// (`--serving-threads`); 0 serves it on the process's shared runtime.
    pub serving_threads: usize,
    /// Audit running pods too (`--audit`; needs a cluster), with these settings.
    pub audit: Option<AuditConfig>,
}

/// Runs `signet webhook` until SIGTERM or Ctrl-C, then drains. The registry timeout is capped at
/// the deadline so that no registry request outlives a request.
pub async fn run_webhook(
    config: WebhookConfig,
    mut registry: RegistryOptions,
) -> Result<(), WebhookError> {
    let settings = config.settings;
    if settings.deadline.is_zero() {
        return Err(WebhookError::Config("--deadline must be above zero".into()));
    }
    registry.timeout = registry.timeout.min(settings.deadline);
    let registry_client = RegistryClient::new(&registry)?;
    // Without a cluster: events go to the log, credentials only from --registry-config.
    let status_writes = if config.leader_election {
        StatusWrites::WhenLeader(LeaderElection {
            lease_namespace: config
                .pod_namespace
                .clone()
                .unwrap_or_else(|| "default".to_string()),
            lease_name: "signet-controller".to_string(),
            identity: format!("{}-{}", settings.instance, std::process::id()),
        })
    } else {
        StatusWrites::Always
    };
    let mut source = PolicySource::start(PolicySourceConfig {
        policy_dir: config.policy_dir.clone(),
        options: config.engine,
        status_writes,
    })
    .await?;
    // No request outlives the deadline, so in-flight work needs at most that once accepting stops.
    let drain_settings = DrainSettings {
        delay: config.shutdown_delay,
        grace: settings.deadline + Duration::from_secs(1),
    };
    let metrics = Arc::new(Metrics::new());
    let admission = Arc::new(Admission::new(
        source.state.clone(),
        registry_client,
        source.kube.clone(),
        settings,
        Arc::clone(&metrics),
    ));
    let mut audit = match config.audit.clone() {
        Some(audit) => {
            let kube = match source.kube.clone() {
                Some(kube) => kube,
                // --policy-dir: policies from the folder, pods still from the cluster.
                None => kube::Client::try_default().await.map_err(|e| {
                    WebhookError::Config(format!(
                        "--audit watches the cluster's pods, and the Kubernetes API cannot be reached: {e}"
                    ))
                })?,
            };
            let audit_metrics = metrics.audit();
            let lookups = Arc::new(admission.audit_lookups());
            Some(tokio::spawn(run_audit(
                kube,
                source.state.clone(),
                lookups,
                audit_metrics,
                audit,
            )))
        }
        None => None,
    };
    let drain = Drain::new();
    let listener = bind(config.listen)?;
    let mut webhook = WebhookServer::start_on_threads(
        listener,
        &config.tls,
        Arc::clone(&admission),
        &drain,
        config.serving_threads,
    )?
    .into_server();
    let mut ops = match config.metrics_listen {
        Some(listen) => {
            let app = ops_router(admission);
            Some(Server::start("metrics", bind(listen)?, app, None, &drain)?)
        }
        None => None,
    };
    let stopped = tokio::select! {
        () = shutdown_signal() => Ok(()),
        e = source.ended() => Err(WebhookError::Policy(e)),
        e = webhook.died() => Err(WebhookError::Server(e)),
        e = ops_died(&mut ops) => Err(WebhookError::Server(e)),
        e = audit_ended(&mut audit) => Err(e),
    };
    if let Some(audit) = &audit {
        audit.abort();
    }
    let servers: Vec<Server> = std::iter::once(webhook).chain(ops).collect();
    let drained = match &stopped {
        Ok(()) => drain_and_stop(servers, &drain, drain_settings).await,
        // Failing: no point in a delay, but let in-flight requests finish.
        Err(_) => {
            drain_and_stop(
                servers,
                &drain,
                DrainSettings {
                    delay: Duration::ZERO,
                    ..drain_settings
                },
            )
            .await
        }
    };
    source.stop();
    stopped?;
    drained.map_err(WebhookError::Server)
}

async fn audit_ended(
    audit: &mut Option<tokio::task::JoinHandle<Result<(), ControllerError>>>,
) -> WebhookError {
    let Some(task) = audit.as_mut() else {
        return std::future::pending().await;
    };
    let ended = task.await;
    *audit = None;
    match ended {
        Ok(Err(e)) => WebhookError::Audit(e),
        Ok(Ok(())) => WebhookError::Config("the audit stopped".into()),
        Err(e) => WebhookError::Config(format!("the audit failed: {e}")),
    }
}

async fn ops_died(ops: &mut Option<Server>) -> ServerError {
    match ops {
        Some(server) => server.died().await,
        None => std::future::pending().await,
    }
}
