//! `signet signer`: signs images when a registry reports their push.
//!
//! - [`event`]: the registry's notifications, and which events are pushes to sign;
//! - [`rules`]: which SigningRules cover an image; the event-host -> scope-host mapping;
//! - [`engine`]: [`Signer`], one signature per rule, idempotent, serialised per
//!   (repository, digest), with retries;
//! - [`reconcile`]: the periodic scan (and `signet sign --backfill`);
//! - [`server`]: `POST /events`, health, readiness and metrics over HTTP(S);
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
pub mod reconcile;
pub mod rules;
pub mod server;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use engine::{Ensured, EventOutcome, RetryPolicy, Signer, SignerOptions};
pub use keys::{
    Pkcs11Settings, forbidden_attribute_message, forbidden_rule_attribute, redact_reference,
    set_pkcs11_settings,
};
pub use metrics::{FailureReason, IgnoreReason, Metrics, NothingToSign, RuleSkip};
pub use reconcile::{ReconcileReport, RuleSelection, reconcile, reconcile_loop};
pub use rules::AddressMap;
pub use server::{BearerToken, ServerHandle, router, serve};

use crate::controller::{
    self, ControllerError, PolicyState, StatusWrites, load_policy_dir, policy_channel,
};
use crate::crypto::CryptoError;
use crate::policy::EngineOptions;
use crate::registry::{
    RegistryClient, RegistryError, RegistryOptions, SignatureStore, SignatureWriteError,
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
        rule: String,
        reference: String,
        cause: CryptoError,
    },
    /// The key refused to sign.
    #[error("SigningRule {rule:?}: signing failed: {cause}")]
    Signing { rule: String, cause: CryptoError },
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

    /// The `reason` label of the failure metric.
    pub fn metric_reason(&self) -> FailureReason {
        match self {
            SignerError::Registry(_) | SignerError::Contended(_) => FailureReason::Registry,
            SignerError::Key { .. } | SignerError::Signing { .. } => FailureReason::Key,
            SignerError::Write(SignatureWriteError::Registry(_)) => FailureReason::Registry,
            SignerError::Config(_)
            | SignerError::Policy(_)
            | SignerError::PolicySource(_)
            | SignerError::Write(_)
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
    /// Certificate and key files (PEM); `None` serves plain HTTP.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Folder of SigningRules; `None` reads them from the cluster.
    pub policy_dir: Option<PathBuf>,
    /// Between two reconcile passes; zero turns the periodic pass (not the first) off.
    pub reconcile_interval: Duration,
    /// Workers, aliases, retries.
    pub options: SignerOptions,
    /// How to reach registries.
    pub registry: RegistryOptions,
}

/// Parses `5m`, `30s`, `1h`, `250ms`, or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, SignerError> {
    let text = text.trim();
    let bad = || SignerError::Config(format!("duration {text:?}: expected e.g. 30s, 5m, 1h"));
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: u64 = number.parse().map_err(|_| bad())?;
    let seconds = |factor: u64| {
        n.checked_mul(factor)
            .map(Duration::from_secs)
            .ok_or_else(bad)
    };
    match unit {
        "" | "s" => seconds(1),
        "ms" => Ok(Duration::from_millis(n)),
        "m" => seconds(60),
        "h" => seconds(3600),
        _ => Err(bad()),
    }
}

impl From<ControllerError> for SignerError {
    fn from(e: ControllerError) -> Self {
        SignerError::PolicySource(e)
    }
}

type PolicySource = tokio::task::JoinHandle<Result<(), ControllerError>>;

/// Starts the policy source: the folder (checked now, then watched) or the cluster (with leader
/// election on the controller's Lease, so that one replica, webhook or signer, writes status).
async fn start_policy_source(
    policy_dir: Option<&Path>,
) -> Result<(PolicyState, PolicySource), SignerError> {
    let options = EngineOptions::default();
    let (publisher, state) = policy_channel(options);
    let task = match policy_dir {
        Some(dir) => {
            // An invalid folder is an error at start, naming the file and the field.
            load_policy_dir(dir)?;
            tokio::spawn(controller::watch_policy_dir(
                dir.to_path_buf(),
                options,
                publisher,
            ))
        }
        None => {
            let client = kube::Client::try_default()
                .await
                .map_err(|e| SignerError::Config(format!("Kubernetes client: {e}")))?;
            // The signer only reads the resources; the webhook's controller writes their status.
            tokio::spawn(controller::run_controller(
                client,
                options,
                publisher,
                StatusWrites::Never,
            ))
        }
    };
    Ok((state, task))
}

fn source_ended(r: Result<Result<(), ControllerError>, tokio::task::JoinError>) -> SignerError {
    match r {
        Ok(Ok(())) => SignerError::Policy("the policy source stopped".into()),
        Ok(Err(e)) => e.into(),
        Err(e) => SignerError::Internal(format!("policy source task: {e}")),
    }
}

/// Waits until the policy source has published (ready), or fails with its error.
async fn wait_for_policy(
    state: &PolicyState,
    source: &mut PolicySource,
) -> Result<(), SignerError> {
    while !state.is_ready() {
        if source.is_finished() {
            return Err(source_ended(source.await));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// Runs `signet signer` until SIGTERM or Ctrl-C: starts the policy source, serves the routes
/// (`/readyz` answers 503 until the policy has synced), opens every rule's key once the rules are
/// known (a bad key is an error here), and reconciles at start and every `reconcile_interval`.
pub async fn run(config: SignerConfig) -> Result<(), SignerError> {
    let token = BearerToken::from_file(&config.token_file)?;
    let client = RegistryClient::new(&config.registry)?;
    let (policy, mut source) = start_policy_source(config.policy_dir.as_deref()).await?;
    let signer = Signer::new(
        SignatureStore::new(client),
        policy.clone(),
        config.options.clone(),
    );
    let tls = match &config.tls {
        Some((cert, key)) => {
            let rustls =
                axum_server::tls_rustls::RustlsConfig::from_config(server::tls_config(cert, key)?);
            server::watch_tls_files(rustls.clone(), cert.clone(), key.clone());
            Some(rustls)
        }
        None => None,
    };
    let listener = std::net::TcpListener::bind(config.listen)
        .map_err(|e| SignerError::Config(format!("cannot listen on {}: {e}", config.listen)))?;
    let handle = serve(listener, router(signer.clone(), token), tls)?;
    tracing::info!(listen = %handle.local_addr(), tls = config.tls.is_some(), "signer listening");
    let started = async {
        wait_for_policy(&policy, &mut source).await?;
        signer.open_keys().await
    };
    if let Err(e) = started.await {
        source.abort();
        handle.shutdown().await;
        return Err(e);
    }
    let interval = (!config.reconcile_interval.is_zero()).then_some(config.reconcile_interval);
    let reconciler = tokio::spawn(reconcile_loop(signer, interval));
    let result = tokio::select! {
        r = handle_wait(&handle) => r,
        r = &mut source => Err(source_ended(r)),
        () = shutdown_signal() => {
            tracing::info!("shutting down");
            Ok(())
        }
    };
    reconciler.abort();
    source.abort();
    handle.shutdown().await;
    result
}

async fn handle_wait(handle: &ServerHandle) -> Result<(), SignerError> {
    // The server task ends only on an accept-loop error; poll it without taking the handle.
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        if handle.is_finished() {
            return Err(SignerError::Config(format!(
                "the server on {} stopped",
                handle.local_addr()
            )));
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

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
        recheck_after: None,
        ..options
    };
    let signer = Signer::new(SignatureStore::new(client), policy, options);
    signer.open_keys().await?;
    Ok(reconcile(&signer, RuleSelection::Automatic).await)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_the_flags() {
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("45").unwrap(), Duration::from_secs(45));
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        for bad in ["", "m", "5x", "-1s", "1.5s"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
