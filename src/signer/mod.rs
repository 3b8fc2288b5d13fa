//! `signet signer`: signs images when a registry reports their push.
//!
//! - [`event`]: the registry's notifications, and which events are pushes to sign;
//! - [`rules`]: which SigningRules cover an image; the event-host -> scope-host mapping;
//! - [`engine`]: [`Signer`], one signature per rule, idempotent, serialised per
//!   (repository, digest), with retries;
//! - [`mod@reconcile`]: the periodic scan (and `signet sign --backfill`);
//! - `queue`: `--acknowledge queued`, the in-memory queue of pushes answered before signing;
//! - [`server`]: `POST /events`, health, readiness and metrics (served by `crate::serve`);
//! - `notation`: a rule's certificate chain, checked against its key, for the Notation format;
//! - `keys`, `metrics`: opened keys, Prometheus counters. Every `.sig` read and write goes
//!   through [`SignatureStore`].
//!
//! SigningRules come from the controller's [`PolicyState`]: a policy folder
//! (`controller::watch_policy_dir`) or the cluster (`controller::run_controller`).
//!
//! [`run`] puts them together for `signet signer`; [`backfill`] is `signet sign --backfill`.

pub mod engine;
pub mod event;
mod keys;
mod metrics;
mod notation;
mod queue;
pub mod reconcile;
pub mod rules;
pub mod server;
mod watch;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use engine::{
    Ensured, EventOutcome, Recheck, RetryPolicy, Signer, SignerOptions, WATCH_WINDOW,
};
pub use keys::{
    Pkcs11Settings, forbidden_attribute_message, forbidden_rule_attribute, redact_reference,
    set_pkcs11_settings,
};
pub use metrics::{
    FailureReason, IgnoreReason, Metrics, NothingToSign, QueueMetrics, RuleOutcome, RuleSkip,
};
pub use queue::{Acknowledge, Acknowledged, DEFAULT_QUEUE_CAPACITY, QueueOptions};
pub use reconcile::{ReconcileReport, RuleSelection, reconcile, reconcile_loop};
pub use rules::AddressMap;
pub use server::{BearerToken, ops_router, router};

use crate::controller::{ControllerError, PolicyState, StatusWrites, load_policy_dir};
use crate::crypto::CryptoError;
use crate::policy::EngineOptions;
use crate::registry::{
    RegistryClient, RegistryError, RegistryOptions, SignatureStore, SignatureWriteError,
};
use crate::serve::{
    Drain, DrainSettings, PolicySource, PolicySourceConfig, PolicySourceError, Server, ServerError,
    TlsSource, bind, drain_and_stop, shutdown_signal,
};

/// Errors of the signer. Each message is one line and names what was wrong; none carries a token
/// or a PIN.
#[derive(Debug, thiserror::Error)]
pub enum SignerError {
    /// A flag, file or alias that cannot be used.
    #[error("signer configuration: {0}")]
    Config(String),
    /// The policy folder cannot be read.
    #[error("policy folder: {0}")]
    Policy(String),
    /// The policy source failed: the folder is unreadable or invalid, or the cluster watch
    /// failed. The controller's error is kept, typed (its message is already in this one's).
    #[error("policy folder: {0}")]
    PolicySource(ControllerError),
    /// A rule's key cannot be opened (missing file, wrong PIN, missing token...).
    // `cause`, not `source`: the message already ends with it, and a chained source would print it twice.
    #[error("SigningRule {rule:?}: cannot open key {reference}: {cause}")]
    Key {
        /// The SigningRule's name.
        rule: String,
        /// The rule's key reference, with any `pin-value` redacted.
        reference: String,
        /// Why the key could not be opened.
        cause: CryptoError,
    },
    /// The rule's key cannot sign in Notation format: no or a bad certificate chain, a chain
    /// whose leaf is not the key's, an algorithm Notary does not allow for the leaf key.
    #[error("SigningRule {rule:?}: cannot sign in Notation format: {reason}")]
    Notation {
        /// The SigningRule's name.
        rule: String,
        /// Why, in one line.
        reason: String,
    },
    /// The key refused to sign.
    #[error("SigningRule {rule:?}: signing failed: {cause}")]
    Signing {
        /// The SigningRule whose key refused.
        rule: String,
        /// The key's error.
        cause: CryptoError,
    },
    /// The registry failed (after retries).
    #[error(transparent)]
    Registry(RegistryError),
    /// Other writers kept replacing the signature manifest.
    #[error("the signature manifest of {0} kept changing under concurrent writers")]
    Contended(String),
    /// The signature store refused the write for a reason of its own (a payload or manifest
    /// that could not be built, a task that died, a lock mix-up).
    #[error(transparent)]
    Write(SignatureWriteError),
    /// The server could not start, or died.
    #[error(transparent)]
    Server(#[from] ServerError),
    /// A task of the signer itself failed.
    #[error("signer internal error: {0}")]
    Internal(String),
}

impl SignerError {
    /// Whether trying again may succeed (registry unreachable, timed out, rate limited or
    /// answering errors; contention).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            SignerError::Registry(
                RegistryError::Unreachable { .. }
                    | RegistryError::Timeout { .. }
                    | RegistryError::RateLimited { .. }
                    | RegistryError::Malformed { .. }
                    | RegistryError::BadResponse { .. }
            ) | SignerError::Contended(_)
        )
    }

    /// True when the registry no longer has what was asked for.
    pub fn is_not_found(&self) -> bool {
        matches!(self, SignerError::Registry(e) if e.is_not_found())
    }

    /// How the registry failed, when it did (the `outcome` of `registry_requests_total`);
    /// `None` for a failure of the key, the configuration or the signer itself.
    pub fn registry_failure_kind(&self) -> Option<crate::registry::LookupFailureKind> {
        match self {
            SignerError::Registry(e) | SignerError::Write(SignatureWriteError::Registry(e)) => {
                Some(e.failure_kind())
            }
            SignerError::Contended(_) => Some(crate::registry::LookupFailureKind::Other),
            _ => None,
        }
    }

    /// The `reason` label of the failure metric.
    pub fn metric_reason(&self) -> FailureReason {
        match self {
            SignerError::Registry(_) | SignerError::Contended(_) => FailureReason::Registry,
            SignerError::Key { .. }
            | SignerError::Signing { .. }
            | SignerError::Notation { .. } => FailureReason::Key,
            SignerError::Write(SignatureWriteError::Registry(_)) => FailureReason::Registry,
            SignerError::Config(_)
            | SignerError::Policy(_)
            | SignerError::PolicySource(_)
            | SignerError::Write(_)
            | SignerError::Server(_)
            | SignerError::Internal(_) => FailureReason::Internal,
        }
    }
}

/// Everything `signet signer` needs.
#[derive(Clone, Debug)]
pub struct SignerConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// File holding the bearer token registries send.
    pub token_file: PathBuf,
    /// Certificate source; `None` serves plain HTTP.
    pub tls: Option<TlsSource>,
    /// Also serve `/healthz`, `/readyz` and `/metrics` over plain HTTP here.
    pub metrics_listen: Option<SocketAddr>,
    /// Folder of SigningRules; `None` reads them from the cluster.
    pub policy_dir: Option<PathBuf>,
    /// Between two reconcile passes; zero turns the periodic pass (not the first) off.
    pub reconcile_interval: Duration,
    /// How long to keep accepting after SIGTERM while `/readyz` answers 503.
    pub shutdown_delay: Duration,
    /// Workers, aliases, retries.
    pub options: SignerOptions,
    /// How to reach registries.
    pub registry: RegistryOptions,
}

impl From<ControllerError> for SignerError {
    fn from(e: ControllerError) -> Self {
        SignerError::PolicySource(e)
    }
}

impl From<PolicySourceError> for SignerError {
    fn from(e: PolicySourceError) -> Self {
        match e {
            PolicySourceError::Kube(reason) => {
                SignerError::Config(format!("Kubernetes client: {reason}"))
            }
            PolicySourceError::Task(reason) => {
                SignerError::Internal(format!("policy source task: {reason}"))
            }
            other => SignerError::Policy(other.to_string()),
        }
    }
}

/// Runs `signet signer` until SIGTERM or Ctrl-C: starts the policy source, serves the routes
/// (`/readyz` answers 503 until the policy has synced), opens every rule's key once the rules are
/// known (a bad key is an error here), and reconciles at start and every `reconcile_interval`.
/// On SIGTERM it drains like the webhook (`shutdown_delay`, then in-flight events finish); with
/// `--acknowledge queued`, the queue is then signed within the same grace.
pub async fn run(config: SignerConfig) -> Result<(), SignerError> {
    let token = BearerToken::from_file(&config.token_file)?;
    let client = RegistryClient::new(&config.registry)?;
    // The signer only reads the resources; the webhook's controller writes their status.
    let mut source = PolicySource::start(PolicySourceConfig {
        policy_dir: config.policy_dir.clone(),
        options: EngineOptions::default(),
        status_writes: StatusWrites::Never,
    })
    .await?;
    let signer = Signer::new(
        SignatureStore::new(client),
        source.state.clone(),
        config.options.clone(),
    );
    let drain = Drain::new();
    let mut server = Server::start_observed(
        "signer",
        bind(config.listen)?,
        router(signer.clone(), token),
        config.tls.as_ref(),
        &drain,
        signer.metrics().common().certificate_expiry(),
    )?;
    let mut ops = match config.metrics_listen {
        Some(listen) => {
            let started = bind(listen).and_then(|listener| {
                Server::start(
                    "metrics",
                    listener,
                    ops_router(signer.clone()),
                    None,
                    &drain,
                )
            });
            match started {
                Ok(ops) => Some(ops),
                Err(e) => {
                    source.stop();
                    let _ = server.stop().await;
                    return Err(e.into());
                }
            }
        }
        None => None,
    };
    let started = async {
        source.wait_ready().await?;
        signer.open_keys().await
    };
    if let Err(e) = started.await {
        source.stop();
        let _ = server.stop().await;
        if let Some(ops) = ops {
            let _ = ops.stop().await;
        }
        return Err(e);
    }
    let interval = (!config.reconcile_interval.is_zero()).then_some(config.reconcile_interval);
    let reconciler = tokio::spawn(reconcile_loop(signer.clone(), interval));
    let result = tokio::select! {
        e = server.died() => Err(SignerError::from(e)),
        e = ops_died(&mut ops) => Err(SignerError::from(e)),
        e = source.ended() => Err(SignerError::from(e)),
        () = shutdown_signal() => Ok(()),
    };
    let settings = DrainSettings {
        delay: if result.is_ok() {
            config.shutdown_delay
        } else {
            Duration::ZERO
        },
        grace: SHUTDOWN_GRACE,
    };
    let servers: Vec<Server> = std::iter::once(server).chain(ops).collect();
    // The queue (`--acknowledge queued`) signs on while the servers drain, and gets what is left
    // of the same grace once they stopped accepting.
    let queue_deadline = std::time::Instant::now() + settings.delay + settings.grace;
    let drained = drain_and_stop(servers, &drain, settings).await;
    if config.options.acknowledge == Acknowledge::Queued {
        let left = signer.drain_queue(queue_deadline).await;
        if left == 0 {
            tracing::info!("signing queue drained");
        } else {
            tracing::error!(
                images = left,
                "signing queue not drained within the grace: the reconcile at the next start signs the tagged ones"
            );
        }
    }
    reconciler.abort();
    source.stop();
    result?;
    drained.map_err(SignerError::from)
}

/// Resolves when the operations port's server dies; pending forever without one.
async fn ops_died(ops: &mut Option<Server>) -> ServerError {
    match ops {
        Some(server) => server.died().await,
        None => std::future::pending().await,
    }
}

/// How long in-flight event deliveries get once the signer stopped accepting; a delivery cut
/// short is answered by no 2xx, so the registry sends it again. With `--acknowledge queued`, the
/// queue's signing shares this grace.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// `signet sign --backfill --policy-dir DIR`: one reconcile pass over the folder's Automatic
/// rules, opening every rule's key first.
pub async fn backfill(
    policy_dir: &Path,
    registry: &RegistryOptions,
    options: SignerOptions,
) -> Result<ReconcileReport, SignerError> {
    let loaded = load_policy_dir(policy_dir)?;
    let compiled = crate::policy::compile(&loaded.inputs, 1, EngineOptions::default());
    let policy = PolicyState::fixed(compiled.snapshot, loaded.signing_rules);
    let client = RegistryClient::new(registry)?;
    let options = SignerOptions {
        // A one-shot run exits before a delayed recheck would fire.
        recheck: Recheck::Immediately,
        ..options
    };
    let signer = Signer::new(SignatureStore::new(client), policy, options);
    signer.open_keys().await?;
    Ok(reconcile(&signer, RuleSelection::Automatic).await)
}
