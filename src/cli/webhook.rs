//! `signet webhook`'s flags (each with an environment variable), turned into a
//! [`WebhookConfig`]; and the TLS and drain flags the signer shares ([`TlsArgs`],
//! [`DrainArgs`]).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::builder::BoolishValueParser;
use clap::{ArgAction, ArgGroup, Args};

use super::{CliError, NoMatchArg};
use crate::admission::lookup::LookupTimings;
use crate::admission::{DecisionSettings, WebhookConfig};
use crate::policy::EngineOptions;
use crate::serve::{TlsSource, parse_duration};

/// Where a server's certificate comes from (webhook and signer).
#[derive(Args, Clone, Debug)]
pub struct TlsArgs {
    /// PEM certificate (chain), reloaded when the file's contents change.
    #[arg(long, env = "SIGNET_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key, reloaded when the file's contents change.
    #[arg(long, env = "SIGNET_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Serve a self-signed certificate for localhost (local runs).
    #[arg(
        long,
        env = "SIGNET_TLS_SELF_SIGNED",
        conflicts_with_all = ["tls_cert", "tls_key"],
        default_value_t = false,
        num_args = 0..=1,
        default_missing_value = "true",
        value_parser = BoolishValueParser::new(),
        action = ArgAction::Set
    )]
    pub tls_self_signed: bool,
    /// How often the certificate files are checked for changes.
    #[arg(long, env = "SIGNET_TLS_RELOAD_INTERVAL", default_value = "10s", value_parser = parse_duration)]
    pub tls_reload_interval: Duration,
    /// PEM CA certificates: clients (the API server) must present a certificate issued by one.
    #[arg(long, env = "SIGNET_CLIENT_CA", requires = "tls_cert")]
    pub client_ca: Option<PathBuf>,
}

impl TlsArgs {
    /// The TLS source, or `None` when no TLS flag was given.
    pub fn source(&self) -> Option<TlsSource> {
        match (&self.tls_cert, &self.tls_key, self.tls_self_signed) {
            (Some(cert), Some(key), false) => Some(TlsSource::Files {
                cert: cert.clone(),
                key: key.clone(),
                reload_interval: self.tls_reload_interval,
                client_ca: self.client_ca.clone(),
            }),
            (None, None, true) => Some(TlsSource::SelfSigned),
            _ => None,
        }
    }
}

/// How a server drains on SIGTERM (webhook and signer).
#[derive(Args, Clone, Debug)]
pub struct DrainArgs {
    /// After SIGTERM, keep accepting this long while /readyz answers 503 (endpoints and load
    /// balancers stop sending here meanwhile), then stop accepting and finish in-flight
    /// requests. Keep it below the pod's terminationGracePeriodSeconds.
    #[arg(long, env = "SIGNET_SHUTDOWN_DELAY", default_value = "5s", value_parser = parse_duration)]
    pub shutdown_delay: Duration,
}

/// The flags of `signet webhook` (registry and log flags are global).
#[derive(Args, Clone, Debug)]
#[command(group(ArgGroup::new("tls").required(true).args(["tls_cert", "tls_self_signed"])))]
pub struct WebhookArgs {
    /// Address to serve HTTPS on.
    #[arg(long, env = "SIGNET_LISTEN", default_value = "0.0.0.0:8443")]
    pub listen: SocketAddr,
    /// Certificate flags.
    #[command(flatten)]
    pub tls: TlsArgs,
    /// Drain flags.
    #[command(flatten)]
    pub drain: DrainArgs,
    /// Folder of policy YAML (no cluster needed); absent: read the resources from the cluster.
    #[arg(long, env = "SIGNET_POLICY_DIR")]
    pub policy_dir: Option<PathBuf>,
    /// Threads serving the admission port, each a single-threaded event loop; each new
    /// connection goes to the one with the fewest open connections. Absent: one per core this
    /// process may use; 0: serve on the shared work-stealing runtime instead.
    #[arg(long, env = "SIGNET_SERVING_THREADS")]
    pub serving_threads: Option<usize>,
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
    #[arg(
        long,
        env = "SIGNET_BREAKGLASS",
        default_value_t = false,
        num_args = 0..=1,
        default_missing_value = "true",
        value_parser = BoolishValueParser::new(),
        action = ArgAction::Set
    )]
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
    #[arg(
        long,
        env = "SIGNET_PULL_SECRETS",
        default_value_t = false,
        num_args = 0..=1,
        default_missing_value = "true",
        value_parser = BoolishValueParser::new(),
        action = ArgAction::Set
    )]
    pub pull_secrets: bool,
    /// How long fetched signatures, and the verdicts that allowed an image, are reused: a deleted
    /// signature stops admitting within this time.
    #[arg(long, env = "SIGNET_SIGNATURE_CACHE_TTL", default_value = "30s", value_parser = parse_duration)]
    pub signature_cache_ttl: Duration,
    /// Push-to-deploy grace: an image with no signature at all that a SigningRule covers is
    /// re-read for its signature this long (within the deadline) before it is denied; 0 = off.
    #[arg(long, env = "SIGNET_SIGNING_GRACE", default_value = "3s", value_parser = parse_duration)]
    pub signing_grace: Duration,
    /// Also serve /healthz, /readyz and /metrics over plain HTTP on this address (needed with
    /// --client-ca: probes and Prometheus carry no client certificate). `--ops-listen` is the
    /// former name, still accepted.
    #[arg(long, env = "SIGNET_METRICS_LISTEN", visible_alias = "ops-listen")]
    pub metrics_listen: Option<SocketAddr>,
    /// The webhook's pod name, reported as the source of events.
    #[arg(long, env = "POD_NAME", default_value = "signet-webhook")]
    pub pod_name: String,
    /// The webhook's own namespace: always exempt, and where the Lease lives.
    #[arg(long, env = "POD_NAMESPACE")]
    pub pod_namespace: Option<String>,
    /// Pin verified digests in /mutate.
    #[arg(
        long,
        env = "SIGNET_MUTATE",
        default_value_t = true,
        num_args = 0..=1,
        default_missing_value = "true",
        value_parser = BoolishValueParser::new(),
        action = ArgAction::Set
    )]
    pub mutate: bool,
    /// Entries per cache (verdicts, digests, signatures).
    #[arg(long, env = "SIGNET_CACHE_SIZE", default_value_t = 100_000)]
    pub cache_size: u64,
    /// Only the Lease holder writes CRD status (cluster mode).
    #[arg(
        long,
        env = "SIGNET_LEADER_ELECTION",
        default_value_t = true,
        num_args = 0..=1,
        default_missing_value = "true",
        value_parser = BoolishValueParser::new(),
        action = ArgAction::Set
    )]
    pub leader_election: bool,
    /// Also audit running pods: re-judge their images when policies change and every
    /// --audit-interval; Events, signet_audit_* gauges, PolicyReports (needs a cluster).
    #[arg(long, env = "SIGNET_AUDIT", default_value_t = false, action = ArgAction::Set,
          num_args = 0..=1, default_missing_value = "true")]
    pub audit: bool,
    /// Audit loop settings.
    #[command(flatten)]
    pub audit_loop: super::audit::AuditLoopArgs,
}

impl WebhookArgs {
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
            signing_grace: self.signing_grace,
            ..DecisionSettings::default()
        }
    }

    /// The webhook's configuration.
    pub fn into_config(self) -> Result<WebhookConfig, CliError> {
        let tls = self.tls.source().ok_or_else(|| {
            CliError::Usage(
                "TLS is required: give --tls-cert and --tls-key, or --tls-self-signed".into(),
            )
        })?;
        Ok(WebhookConfig {
            listen: self.listen,
            tls,
            metrics_listen: self.metrics_listen,
            policy_dir: self.policy_dir.clone(),
            engine: EngineOptions {
                no_match: self.no_match.into(),
            },
            settings: self.decision_settings(),
            pod_namespace: self.pod_namespace.clone(),
            leader_election: self.leader_election,
            shutdown_delay: self.drain.shutdown_delay,
            serving_threads: self
                .serving_threads
                .unwrap_or_else(|| crate::serve::serving_threads(0)),
            audit: self.audit.then(|| {
                let lease_namespace = self.leader_election.then(|| {
                    self.pod_namespace
                        .clone()
                        .unwrap_or_else(|| "default".to_string())
                });
                let exempt = self.decision_settings().exempt_namespaces;
                self.audit_loop
                    .config(self.pod_name.clone(), exempt, lease_namespace)
            }),
        })
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
    fn boolean_flags_are_switches_and_take_values() {
        let parse = |args: &[&str]| {
            let all = ["webhook", "--tls-self-signed"].iter().chain(args).copied();
            Cli::try_parse_from(all).map(|c| c.args)
        };
        let Ok(on) = parse(&["--breakglass", "--pull-secrets", "--mutate"]) else {
            panic!("switches parse");
        };
        assert!(on.breakglass && on.pull_secrets && on.mutate && on.leader_election);
        assert!(on.tls.tls_self_signed);
        let Ok(off) = parse(&[
            "--mutate=false",
            "--leader-election=false",
            "--breakglass=no",
        ]) else {
            panic!("=false parses");
        };
        assert!(!off.mutate && !off.leader_election && !off.breakglass);
        // The spelling scripts already use keeps working.
        let Ok(spaced) = parse(&["--mutate", "false", "--breakglass", "true"]) else {
            panic!("a separate value parses");
        };
        assert!(!spaced.mutate && spaced.breakglass);
        assert!(parse(&["--mutate=maybe"]).is_err());
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
            "--shutdown-delay",
            "1500ms",
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
        assert_eq!(cli.args.tls.source(), Some(TlsSource::SelfSigned));
        let config = cli.args.into_config().ok();
        assert_eq!(
            config.map(|c| c.shutdown_delay),
            Some(Duration::from_millis(1500))
        );

        let defaults = Cli::try_parse_from(["webhook", "--tls-self-signed"])
            .ok()
            .map(|c| c.args);
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
        assert_eq!(defaults.drain.shutdown_delay, Duration::from_secs(5));
        assert_eq!(defaults.metrics_listen, None);
        // The metrics port, under its name and its former one.
        for flag in ["--metrics-listen", "--ops-listen"] {
            let parsed =
                Cli::try_parse_from(["webhook", "--tls-self-signed", flag, "127.0.0.1:8080"])
                    .ok()
                    .and_then(|c| c.args.metrics_listen);
            assert_eq!(
                parsed,
                Some(SocketAddr::from(([127, 0, 0, 1], 8080))),
                "{flag}"
            );
        }
        assert!(defaults.into_config().is_ok_and(|c| c.audit.is_none()));
        let audit = Cli::try_parse_from([
            "webhook",
            "--tls-self-signed",
            "--audit",
            "--audit-interval",
            "10m",
            "--pod-namespace",
            "signet-system",
        ]);
        let audit = audit.ok().and_then(|c| c.args.into_config().ok());
        let audit = audit.and_then(|c| c.audit);
        assert_eq!(
            audit.as_ref().map(|a| a.interval),
            Some(Duration::from_secs(600))
        );
        assert!(
            matches!(
                audit.map(|a| a.publishers),
                Some(crate::controller::StatusWrites::WhenLeader(l)) if l.lease_name == "signet-audit"
                    && l.lease_namespace == "signet-system"
            ),
            "the audit publishes from the Lease holder only"
        );
        // TLS is required, by clap.
        assert!(Cli::try_parse_from(["webhook"]).is_err());
        assert!(Cli::try_parse_from(["webhook", "--deadline", "8d", "--tls-self-signed"]).is_err());
    }
}
