//! The `signet` command line: every clap struct, and each command's flow. `src/main.rs` parses
//! [`Cli`], sets up logging and maps [`run`]'s answer to an exit code; everything below this
//! module takes plain config structs (`WebhookConfig`, `SignerConfig`, `RegistryOptions`), so
//! the library never depends on how flags are spelled. Every flag has a `SIGNET_...` variable;
//! every duration flag takes the one grammar of [`crate::serve::parse_duration`].
//!
//! - [`keygen`], [`sign`], [`verify`] (with [`verify_keys`] and [`verify_policy`]): one-shot
//!   commands;
//! - [`webhook`], [`signer`]: the two servers' flags, turned into their configs;
//! - [`audit`] (with [`audit_watch`]): `signet audit`, the what-if and the standalone audit loop.

pub mod audit;
pub mod audit_watch;
pub mod keygen;
pub mod public_key;
pub mod sign;
pub mod signer;
pub mod verify;
pub mod verify_keys;
pub mod verify_policy;
pub mod verify_staged;
pub mod webhook;

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::admission::WebhookError;
use crate::crd::CrdError;
use crate::crypto::CryptoError;
use crate::policy::NoMatch;
use crate::reference::ReferenceError;
use crate::registry::{RegistryError, RegistryOptions, SignError};
use crate::serve::parse_duration;
use crate::signer::SignerError;

/// `signet`: its global flags and one command.
#[derive(Parser, Debug)]
#[command(
    name = "signet",
    version,
    about = "Sign container images on push, verify them at admission"
)]
pub struct Cli {
    /// Flags every command takes.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// Registry and log flags, valid before or after the command name.
#[derive(Args, Debug)]
pub struct GlobalArgs {
    /// Docker config.json with registry credentials, credsStore and credHelpers (default, as
    /// docker: $DOCKER_CONFIG/config.json, else ~/.docker/config.json).
    #[arg(long, global = true, env = "SIGNET_REGISTRY_CONFIG")]
    pub registry_config: Option<PathBuf>,
    /// Extra CA bundle (PEM) trusted for registries; repeatable.
    #[arg(long, global = true, env = "SIGNET_REGISTRY_CA", value_delimiter = ',')]
    pub registry_ca: Vec<PathBuf>,
    /// Registry (host or host:port) reached over plain HTTP. Loopback registries are too, unless
    /// they answer TLS (then HTTPS, checked against the system roots and --registry-ca). Repeatable.
    #[arg(
        long,
        global = true,
        env = "SIGNET_INSECURE_REGISTRY",
        value_delimiter = ','
    )]
    pub insecure_registry: Vec<String>,
    /// Host, besides each registry's own, allowed to serve registry tokens (a Bearer realm on a
    /// separate token service). auth.docker.io is built in for Docker Hub. Repeatable.
    #[arg(
        long = "registry-token-realm-host",
        global = true,
        env = "SIGNET_REGISTRY_TOKEN_REALM_HOSTS",
        value_delimiter = ','
    )]
    pub registry_token_realm_hosts: Vec<String>,
    /// Timeout of one registry request (e.g. 500ms, 10s, 1m; a bare number is seconds).
    #[arg(
        long,
        global = true,
        env = "SIGNET_REGISTRY_TIMEOUT",
        default_value = "10s",
        value_parser = parse_duration
    )]
    pub registry_timeout: Duration,
    /// Log format.
    #[arg(long, global = true, env = "SIGNET_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Log filter (tracing EnvFilter syntax).
    #[arg(long, global = true, env = "SIGNET_LOG", default_value = "warn")]
    pub log: String,
}

/// `--log-format`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// `--output` of `verify`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// One line (or block) per image.
    Text,
    /// One JSON document.
    Json,
}

/// `--no-match` (webhook and `verify --policy-dir`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum NoMatchArg {
    /// Images no policy governs are allowed.
    Allow,
    /// Images no policy governs are denied.
    Deny,
}

impl From<NoMatchArg> for NoMatch {
    fn from(n: NoMatchArg) -> Self {
        match n {
            NoMatchArg::Allow => NoMatch::Allow,
            NoMatchArg::Deny => NoMatch::Deny,
        }
    }
}

/// `--type` of `sign` and `verify`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum TypeArg {
    /// The signature binds digest and tag.
    Default,
    /// The signature binds the digest only.
    Simple,
}

impl From<TypeArg> for crate::signature::SignatureType {
    fn from(t: TypeArg) -> Self {
        match t {
            TypeArg::Default => Self::Default,
            TypeArg::Simple => Self::Simple,
        }
    }
}

/// The commands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Generate a key pair: PREFIX.key (PKCS#8 PEM, mode 0600) and PREFIX.pub (SPKI PEM); with
    /// --pkcs11-token, a non-extractable key on a PKCS#11 token and PREFIX.pub.
    Keygen(keygen::KeygenArgs),
    /// Sign the digest an image resolves to and push the signature next to it; with --backfill,
    /// sign every image the folder's Automatic SigningRules cover that lacks their signature.
    Sign(sign::SignArgs),
    /// Print the CustomResourceDefinitions (Attestor, VerificationPolicy, ClusterVerificationPolicy,
    /// SigningRule) as YAML, for `kubectl apply -f -`.
    Crd,
    /// Sign images on push: receive registry notifications (POST /events), sign under the
    /// SigningRules that cover them, reconcile periodically.
    Signer(signer::SignerArgs),
    /// Verify images' signatures (several at once, concurrently, one result per image): with
    /// --key, exit 0 when each has a valid one, 1 when one has none; with --policy-dir, judge
    /// them as admission would: exit 0 all allowed, 1 one denied. Exit 2 when the registry
    /// could not be asked or the folder is invalid.
    Verify(verify::VerifyArgs),
    /// What would a policy folder deny now? Judge the pods of a file (--pods, `kubectl get pods
    /// -A -o json`) or of the cluster (--cluster) by the digests they run: one row per pod and
    /// container; exit 1 when one would be denied. With --watch, keep auditing the cluster
    /// (Events, gauges, PolicyReports).
    Audit(audit::AuditArgs),
    /// Serve the admission webhook (HTTPS): POST /validate and /mutate, GET /healthz, /readyz, /metrics.
    Webhook(webhook::WebhookArgs),
    /// Print the public key (SPKI PEM) of a signing key, e.g. a KMS key, to paste into an Attestor.
    PublicKey(public_key::PublicKeyArgs),
}

/// Why a command could not do its job (exit 2). Messages are one line; where a cause is chained
/// (`#[source]`), `main` prints it after the message, as `message: cause`.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Flags or input that cannot be used.
    #[error("{0}")]
    Usage(String),
    /// A file could not be read or written.
    #[error("{what} {}", path.display())]
    File {
        /// What was done (`cannot read public key`, `cannot create`...).
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The operating system's answer.
        #[source]
        source: std::io::Error,
    },
    /// A public key file that is not a usable key.
    #[error("public key {}", path.display())]
    PublicKey {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: CryptoError,
    },
    /// Key generation or opening failed.
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    /// An image reference that does not parse.
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    /// The registry failed.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// Signing failed.
    #[error(transparent)]
    Sign(#[from] SignError),
    /// The policy folder could not be used.
    #[error(transparent)]
    Policy(#[from] verify_policy::PolicyVerificationError),
    /// The signer (or backfill) failed.
    #[error(transparent)]
    Signer(#[from] SignerError),
    /// The webhook failed.
    #[error(transparent)]
    Webhook(#[from] WebhookError),
    /// The CRDs could not be rendered.
    #[error(transparent)]
    Crd(#[from] CrdError),
    /// JSON output could not be written.
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    /// Work was done, but part of it failed; already reported line by line.
    #[error("{0}")]
    Reported(String),
}

/// What a command that ran found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Done (exit 0).
    Success,
    /// Ran fine, but verification failed (exit 1).
    NotVerified,
}

/// The registry options the global flags give. `$DOCKER_CONFIG`, `$HOME`, `SSL_CERT_FILE` and
/// `SSL_CERT_DIR` are read here, the only place the environment is consulted.
pub fn registry_options(global: &GlobalArgs) -> RegistryOptions {
    RegistryOptions {
        config_file: global.registry_config.clone(),
        docker_config_dir: std::env::var_os("DOCKER_CONFIG").map(PathBuf::from),
        home_dir: std::env::var_os("HOME").map(PathBuf::from),
        ca_files: global.registry_ca.clone(),
        system_ca_file: std::env::var_os("SSL_CERT_FILE").map(PathBuf::from),
        system_ca_dir: std::env::var_os("SSL_CERT_DIR").map(PathBuf::from),
        insecure: global.insecure_registry.clone(),
        timeout: global.registry_timeout.max(Duration::from_secs(1)),
        token_realm_hosts: global.registry_token_realm_hosts.clone(),
    }
}

/// Runs the command.
pub async fn run(cli: Cli) -> Result<Outcome, CliError> {
    let registry = registry_options(&cli.global);
    match cli.command {
        Command::Keygen(args) => keygen::run(args),
        Command::Sign(args) => sign::run(args, &registry).await,
        Command::Crd => {
            print!("{}", crate::crd::render_all_crds()?);
            Ok(Outcome::Success)
        }
        Command::Signer(args) => {
            crate::signer::run(args.into_config(registry)?).await?;
            Ok(Outcome::Success)
        }
        Command::Verify(args) => verify::run(args, &registry).await,
        Command::Audit(args) => audit::run(args, &registry).await,
        Command::Webhook(args) => {
            crate::admission::run_webhook(args.into_config()?, registry).await?;
            Ok(Outcome::Success)
        }
        Command::PublicKey(args) => public_key::run(args).await,
    }
}
