//! `signet signer`'s flags, turned into a [`SignerConfig`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::builder::BoolishValueParser;
use clap::{ArgAction, ArgGroup, Args};

use super::CliError;
use super::webhook::{DrainArgs, TlsArgs};
use crate::registry::RegistryOptions;
use crate::serve::parse_duration;
use crate::signer::{
    self, Acknowledge, AddressMap, DEFAULT_QUEUE_CAPACITY, Pkcs11Settings, QueueOptions, Recheck,
    SignerConfig, SignerOptions,
};

/// Flags of `signet signer`.
#[derive(Args, Debug)]
#[command(group(
    ArgGroup::new("transport")
        .required(true)
        .args(["tls_cert", "tls_self_signed", "plain_http"])
))]
pub struct SignerArgs {
    /// Address to listen on (default 0.0.0.0:8443, or 0.0.0.0:8080 with --plain-http).
    #[arg(long, env = "SIGNET_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// File holding the bearer token registries send.
    #[arg(long, env = "SIGNET_TOKEN_FILE")]
    pub token_file: PathBuf,
    /// Certificate flags.
    #[command(flatten)]
    pub tls: TlsArgs,
    /// Serve plain HTTP (no TLS).
    #[arg(
        long,
        env = "SIGNET_PLAIN_HTTP",
        conflicts_with_all = ["tls_cert", "tls_key", "tls_self_signed", "client_ca"],
        default_value_t = false,
        num_args = 0..=1,
        default_missing_value = "true",
        value_parser = BoolishValueParser::new(),
        action = ArgAction::Set
    )]
    pub plain_http: bool,
    /// Drain flags.
    #[command(flatten)]
    pub drain: DrainArgs,
    /// Also serve /healthz, /readyz and /metrics over plain HTTP on this address (for
    /// Prometheus and probes, whatever the main port's TLS).
    #[arg(long, env = "SIGNET_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    /// Folder of SigningRule YAML documents (absent: read them from the cluster).
    #[arg(long, env = "SIGNET_POLICY_DIR")]
    pub policy_dir: Option<PathBuf>,
    /// Between two reconcile passes (e.g. 30s, 5m, 1h; 0 = only at start).
    #[arg(long, env = "SIGNET_RECONCILE_INTERVAL", default_value = "5m", value_parser = parse_duration)]
    pub reconcile_interval: Duration,
    /// Images signed at once.
    #[arg(long, env = "SIGNET_WORKERS", default_value_t = 16)]
    pub workers: usize,
    /// How another writer's overwrite of a signature tag the signer wrote is found: `events`
    /// (the registry's event of that push; one instance), or a DURATION after each write, one
    /// HEAD per tag written (several instances; 0 = right after the write).
    #[arg(long, env = "SIGNET_RECHECK", default_value = "events", value_parser = parse_recheck)]
    pub recheck: Recheck,
    /// When POST /events answers a push that rules cover: `signed` (once its signatures are in
    /// the registry; the registry's own queue holds the event until then) or `queued` (once the
    /// signer holds it in memory; signed afterwards, concurrently, retried by the signer).
    #[arg(long, env = "SIGNET_ACKNOWLEDGE", default_value = "signed", value_parser = parse_acknowledge)]
    pub acknowledge: Acknowledge,
    /// With `--acknowledge queued`: images held at most (waiting, being signed, waiting for a
    /// retry); past it, events are answered 503 and the registry sends them again.
    #[arg(long, env = "SIGNET_QUEUE_CAPACITY", default_value_t = DEFAULT_QUEUE_CAPACITY)]
    pub queue_capacity: usize,
    /// EVENT_HOST=SCOPE_HOST: the registry host events name -> the host scopes and signatures use;
    /// repeatable.
    #[arg(
        long = "registry-alias",
        env = "SIGNET_REGISTRY_ALIASES",
        value_delimiter = ','
    )]
    pub registry_aliases: Vec<String>,
    /// PKCS#11 module loaded for `pkcs11:` keys of SigningRules (rules may not name one).
    #[arg(long = "pkcs11-module", env = "SIGNET_PKCS11_MODULE")]
    pub pkcs11_module: Option<PathBuf>,
    /// File holding the PKCS#11 user PIN for `pkcs11:` keys of SigningRules (rules may not
    /// carry a PIN).
    #[arg(long = "pkcs11-pin-file", env = "SIGNET_PKCS11_PIN_FILE")]
    pub pkcs11_pin_file: Option<PathBuf>,
}

fn parse_acknowledge(text: &str) -> Result<Acknowledge, String> {
    text.parse()
}

/// `events`, or a duration (`0` = right after the write).
fn parse_recheck(text: &str) -> Result<Recheck, String> {
    if text.trim() == "events" {
        return Ok(Recheck::Events);
    }
    match parse_duration(text) {
        Ok(d) if d.is_zero() => Ok(Recheck::Immediately),
        Ok(d) => Ok(Recheck::After(d)),
        Err(e) => Err(format!("expected `events` or a duration: {e}")),
    }
}

impl SignerArgs {
    /// The signer's configuration (and the process-wide PKCS#11 settings its keys open with).
    pub fn into_config(self, registry: RegistryOptions) -> Result<SignerConfig, CliError> {
        signer::set_pkcs11_settings(Pkcs11Settings {
            module: self.pkcs11_module.clone(),
            pin_file: self.pkcs11_pin_file.clone(),
        });
        if self.queue_capacity == 0 {
            return Err(CliError::Usage(
                "--queue-capacity must be at least 1".into(),
            ));
        }
        let default_port = if self.plain_http { 8080 } else { 8443 };
        let tls = if self.plain_http {
            None
        } else {
            Some(self.tls.source().ok_or_else(|| {
                CliError::Usage(
                    "TLS is required: give --tls-cert and --tls-key, --tls-self-signed, or --plain-http"
                        .into(),
                )
            })?)
        };
        Ok(SignerConfig {
            listen: self
                .listen
                .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], default_port))),
            token_file: self.token_file,
            tls,
            metrics_listen: self.metrics_listen,
            policy_dir: self.policy_dir,
            reconcile_interval: self.reconcile_interval,
            shutdown_delay: self.drain.shutdown_delay,
            options: SignerOptions {
                workers: self.workers.max(1),
                recheck: self.recheck,
                aliases: AddressMap::parse(&self.registry_aliases)?,
                acknowledge: self.acknowledge,
                queue: QueueOptions {
                    capacity: self.queue_capacity,
                    ..QueueOptions::default()
                },
                ..Default::default()
            },
            registry,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recheck_is_events_or_a_duration() {
        assert_eq!(parse_recheck("events"), Ok(Recheck::Events));
        assert_eq!(
            parse_recheck("2s"),
            Ok(Recheck::After(Duration::from_secs(2)))
        );
        assert_eq!(parse_recheck("0"), Ok(Recheck::Immediately));
        let e = parse_recheck("sometimes").unwrap_err();
        assert!(e.starts_with("expected `events` or a duration"), "{e}");
    }
}
