//! `signet webhook`: its flags (each with an environment variable) and the run loop that wires
//! the policy source, the registry client, the optional Kubernetes client and the server.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{ArgAction, Args, ValueEnum};

use super::decide::{Admission, DecisionSettings};
use super::lookup::LookupTimings;
use super::metrics::Metrics;
use super::server::{ServerError, WebhookServer, serve_ops};
use super::tls::TlsSource;
use crate::controller::{self, ControllerError, LeaderElection, StatusWrites, policy_channel};
use crate::policy::{EngineOptions, NoMatch};
use crate::registry::{RegistryClient, RegistryError, RegistryOptions};

/// Why `signet webhook` could not run.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// Flags that do not fit together.
    #[error("{0}")]
    Config(String),
    /// The registry client could not be built.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// No Kubernetes client (cluster mode needs one).
    #[error("cannot reach the Kubernetes API (use --policy-dir to run without a cluster): {0}")]
    Kube(String),
    /// The policy folder could not be loaded, or the controller stopped.
    #[error(transparent)]
    Policy(#[from] ControllerError),
    /// The server failed.
    #[error(transparent)]
    Server(#[from] ServerError),
}

/// `--no-match`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum NoMatchArg {
    /// Images no policy governs are allowed.
    Allow,
    /// Images no policy governs are denied.
    Deny,
}

/// The flags of `signet webhook` (registry and log flags are global).
#[derive(Args, Clone, Debug)]
pub struct WebhookArgs {
    /// Address to serve HTTPS on.
    #[arg(long, env = "SIGNET_LISTEN", default_value = "0.0.0.0:8443")]
    pub listen: SocketAddr,
    /// PEM certificate (chain), reloaded when the file changes.
    #[arg(long, env = "SIGNET_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key, reloaded when the file changes.
    #[arg(long, env = "SIGNET_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Serve a self-signed certificate for localhost (local runs).
    #[arg(long, env = "SIGNET_TLS_SELF_SIGNED", conflicts_with_all = ["tls_cert", "tls_key"])]
    pub tls_self_signed: bool,
    /// How often the certificate files are checked for changes.
    #[arg(long, env = "SIGNET_TLS_RELOAD_INTERVAL", default_value = "10s", value_parser = parse_duration)]
    pub tls_reload_interval: Duration,
    /// Folder of policy YAML (no cluster needed); absent: read the resources from the cluster.
    #[arg(long, env = "SIGNET_POLICY_DIR")]
    pub policy_dir: Option<PathBuf>,
    /// Bound on each admission request (keep it under the webhook's timeoutSeconds).
    #[arg(long, env = "SIGNET_DEADLINE", default_value = "8s", value_parser = parse_duration)]
    pub deadline: Duration,
    /// What happens to images no policy matches.
    #[arg(long, env = "SIGNET_NO_MATCH", value_enum, default_value_t = NoMatchArg::Allow)]
    pub no_match: NoMatchArg,
    /// Namespace whose workloads are not checked; repeatable (default: kube-system). The
    /// webhook's own namespace (POD_NAMESPACE) is always exempt.
    #[arg(
        long = "exempt-namespace",
        env = "SIGNET_EXEMPT_NAMESPACES",
        value_delimiter = ','
    )]
    pub exempt_namespaces: Vec<String>,
    /// Honour the signet.dev/breakglass annotation, for requesters a SubjectAccessReview allows
    /// (verb `use` on `breakglass.signet.dev`) or in --breakglass-groups. Off by default.
    #[arg(long, env = "SIGNET_BREAKGLASS", default_value_t = false, action = ArgAction::Set)]
    pub breakglass: bool,
    /// Groups whose members may break glass without a SubjectAccessReview; repeatable.
    #[arg(
        long = "breakglass-groups",
        env = "SIGNET_BREAKGLASS_GROUPS",
        value_delimiter = ','
    )]
    pub breakglass_groups: Vec<String>,
    /// Read the pod's and its service account's imagePullSecrets (in the request's namespace)
    /// to reach private registries. Off by default: the webhook then needs no access to Secrets.
    #[arg(long, env = "SIGNET_PULL_SECRETS", default_value_t = false, action = ArgAction::Set)]
    pub pull_secrets: bool,
    /// How long fetched signatures, and the verdicts that allowed an image, are reused: a deleted
    /// signature stops admitting within this time.
    #[arg(long, env = "SIGNET_SIGNATURE_CACHE_TTL", default_value = "30s", value_parser = parse_duration)]
    pub signature_cache_ttl: Duration,
    /// Also serve /healthz, /readyz and /metrics over plain HTTP on this address (needed with
    /// --client-ca: probes and Prometheus carry no client certificate).
    #[arg(long, env = "SIGNET_OPS_LISTEN")]
    pub ops_listen: Option<SocketAddr>,
    /// PEM CA certificates: clients (the API server) must present a certificate issued by one.
    #[arg(long, env = "SIGNET_CLIENT_CA", requires = "tls_cert")]
    pub client_ca: Option<PathBuf>,
    /// The webhook's pod name, reported as the source of events.
    #[arg(long, env = "POD_NAME", default_value = "signet-webhook")]
    pub pod_name: String,
    /// The webhook's own namespace: always exempt, and where the Lease lives.
    #[arg(long, env = "POD_NAMESPACE")]
    pub pod_namespace: Option<String>,
    /// Pin verified digests in /mutate.
    #[arg(long, env = "SIGNET_MUTATE", default_value_t = true, action = ArgAction::Set)]
    pub mutate: bool,
    /// Entries per cache (verdicts, digests, signatures).
    #[arg(long, env = "SIGNET_CACHE_SIZE", default_value_t = 100_000)]
    pub cache_size: u64,
    /// Only the Lease holder writes CRD status (cluster mode).
    #[arg(long, env = "SIGNET_LEADER_ELECTION", default_value_t = true, action = ArgAction::Set)]
    pub leader_election: bool,
}

/// `500ms`, `8s`, `2m`, `1h`, or plain seconds; a value that overflows is refused.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => text.split_at(at),
        None => (text, "s"),
    };
    let value: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration (e.g. 500ms, 8s, 2m, 1h)"))?;
    let seconds_per = match unit {
        "ms" => return Ok(Duration::from_millis(value)),
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        _ => {
            return Err(format!(
                "{text:?}: unknown unit {unit:?} (use ms, s, m or h)"
            ));
        }
    };
    value
        .checked_mul(seconds_per)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("{text:?} is too long a duration"))
}

impl WebhookArgs {
    fn tls_source(&self) -> Result<TlsSource, WebhookError> {
        match (&self.tls_cert, &self.tls_key, self.tls_self_signed) {
            (Some(cert), Some(key), false) => Ok(TlsSource::Files {
                cert: cert.clone(),
                key: key.clone(),
                reload_interval: self.tls_reload_interval,
                client_ca: self.client_ca.clone(),
            }),
            (None, None, true) => Ok(TlsSource::SelfSigned),
            _ => Err(WebhookError::Config(
                "TLS is required: give --tls-cert and --tls-key, or --tls-self-signed".into(),
            )),
        }
    }

    /// The decision settings these flags give.
    pub fn decision_settings(&self) -> DecisionSettings {
        let own_namespace = self.pod_namespace.as_deref();
        let mut exempt = if self.exempt_namespaces.is_empty() {
            vec!["kube-system".to_string()]
        } else {
            self.exempt_namespaces.clone()
        };
        if let Some(own) = own_namespace.filter(|ns| !ns.is_empty())
            && !exempt.iter().any(|ns| ns == own)
        {
            exempt.push(own.to_string());
        }
        DecisionSettings {
            deadline: self.deadline,
            exempt_namespaces: exempt,
            breakglass: self.breakglass,
            breakglass_groups: self.breakglass_groups.clone(),
            mutate: self.mutate,
            pull_secrets: self.pull_secrets,
            cache_size: self.cache_size.max(1),
            timings: LookupTimings {
                signatures_ttl: self.signature_cache_ttl,
                ..LookupTimings::default()
            },
            instance: self.pod_name.clone(),
            ..DecisionSettings::default()
        }
    }
}

/// Runs `signet webhook` until SIGTERM or Ctrl-C. `registry` comes from the global flags; its
/// timeout is capped at the deadline so that no registry request outlives a request.
pub async fn run_webhook(
    args: WebhookArgs,
    mut registry: RegistryOptions,
) -> Result<(), WebhookError> {
    if args.deadline.is_zero() {
        return Err(WebhookError::Config("--deadline must be above zero".into()));
    }
    let tls = args.tls_source()?;
    let own_namespace = args.pod_namespace.clone();
    let settings = args.decision_settings();
    registry.timeout = registry.timeout.min(args.deadline);
    let registry_client = RegistryClient::new(&registry)?;
    let options = EngineOptions {
        no_match: match args.no_match {
            NoMatchArg::Allow => NoMatch::Allow,
            NoMatchArg::Deny => NoMatch::Deny,
        },
    };
    let (publisher, state) = policy_channel(options);
    // One writer feeds the picture: the folder watcher, or the controller on the cluster.
    let (kube, mut policy_source) = match &args.policy_dir {
        Some(dir) => {
            // Without a cluster: events go to the log, credentials only from --registry-config.
            // Load once here so that a bad folder stops the start with the file and field named.
            controller::load_policy_dir(dir)?;
            let watcher = controller::watch_policy_dir(dir.clone(), options, publisher);
            (None, tokio::spawn(watcher))
        }
        None => {
            let client = kube::Client::try_default()
                .await
                .map_err(|e| WebhookError::Kube(e.to_string()))?;
            let election = if !args.leader_election {
                StatusWrites::Always
            } else {
                StatusWrites::WhenLeader(LeaderElection {
                    lease_namespace: own_namespace
                        .clone()
                        .unwrap_or_else(|| "default".to_string()),
                    lease_name: "signet-controller".to_string(),
                    identity: format!("{}-{}", args.pod_name, std::process::id()),
                })
            };
            let controller =
                controller::run_controller(client.clone(), options, publisher, election);
            (Some(client), tokio::spawn(controller))
        }
    };
    let metrics = Arc::new(Metrics::new());
    let admission = Admission::new(state, registry_client, kube, settings, metrics);
    let server = WebhookServer::start(args.listen, &tls, admission).await?;
    let ops = match args.ops_listen {
        Some(listen) => Some(serve_ops(listen, Arc::clone(server.admission())).await?.1),
        None => None,
    };
    let stopped = tokio::select! {
        () = shutdown_signal() => Ok(()),
        ended = &mut policy_source => match ended {
            // A webhook whose picture can no longer change must not keep deciding.
            Ok(Ok(())) => Err(WebhookError::Config("the policy source stopped".into())),
            Ok(Err(e)) => Err(WebhookError::Policy(e)),
            Err(e) => Err(WebhookError::Config(format!("the policy source failed: {e}"))),
        },
    };
    tracing::info!("shutting down");
    server.shutdown(Duration::from_secs(5));
    server.wait().await?;
    policy_source.abort();
    if let Some(ops) = ops {
        ops.abort();
    }
    stopped
}

/// SIGTERM (Kubernetes) or Ctrl-C.
async fn shutdown_signal() {
    let interrupt = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::warn!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {}
        () = terminate => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: WebhookArgs,
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("8s"), Ok(Duration::from_secs(8)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert!(parse_duration("8d").is_err());
        let overflow = parse_duration("18446744073709551615h");
        assert_eq!(
            overflow,
            Err("\"18446744073709551615h\" is too long a duration".to_string())
        );
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn flags_give_settings() {
        let cli = Cli::try_parse_from([
            "webhook",
            "--tls-self-signed",
            "--breakglass",
            "true",
            "--breakglass-groups",
            "oncall,sre",
            "--pod-namespace",
            "signet-system",
            "--exempt-namespace",
            "a,b",
            "--deadline",
            "2s",
        ]);
        let Ok(cli) = cli else {
            panic!("{:?}", cli.err());
        };
        let settings = cli.args.decision_settings();
        assert!(settings.breakglass);
        assert_eq!(settings.breakglass_groups, ["oncall", "sre"]);
        assert!(!settings.pull_secrets);
        assert!(settings.mutate);
        assert_eq!(settings.deadline, Duration::from_secs(2));
        assert_eq!(settings.exempt_namespaces, ["a", "b", "signet-system"]);
        assert_eq!(cli.args.tls_source().ok(), Some(TlsSource::SelfSigned));

        let defaults = Cli::try_parse_from(["webhook"]).ok().map(|c| c.args);
        let Some(defaults) = defaults else {
            panic!("defaults parse");
        };
        let default_settings = defaults.decision_settings();
        assert_eq!(default_settings.exempt_namespaces, ["kube-system"]);
        assert!(!default_settings.breakglass, "breakglass is off by default");
        assert_eq!(
            default_settings.timings.signatures_ttl,
            Duration::from_secs(30)
        );
        assert!(defaults.tls_source().is_err());
    }
}
