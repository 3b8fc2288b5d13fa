//! The `signet` command: parses flags, calls the library, maps errors to exit codes
//! (0 success, 1 verification failed, 2 usage, input or I/O error).
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};

use signet::crypto::{self, Algorithm, PublicKey};
use signet::policy::{EngineOptions, NoMatch};
use signet::reference::ImageRef;
use signet::registry::{RegistryClient, RegistryOptions, SignatureStore};
use signet::signature::SignatureType;

#[derive(Parser)]
#[command(
    name = "signet",
    version,
    about = "Sign container images on push, verify them at admission"
)]
struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args)]
struct GlobalArgs {
    /// Docker config.json with registry credentials (default: $DOCKER_CONFIG/config.json).
    #[arg(long, global = true, env = "SIGNET_REGISTRY_CONFIG")]
    registry_config: Option<PathBuf>,
    /// Extra CA bundle (PEM) trusted for registries; repeatable.
    #[arg(long, global = true, env = "SIGNET_REGISTRY_CA", value_delimiter = ',')]
    registry_ca: Vec<PathBuf>,
    /// Registry (host or host:port) reached over plain HTTP; loopback registries always are. Repeatable.
    #[arg(
        long,
        global = true,
        env = "SIGNET_INSECURE_REGISTRY",
        value_delimiter = ','
    )]
    insecure_registry: Vec<String>,
    /// Host, besides each registry's own, allowed to serve registry tokens (a Bearer realm on a
    /// separate token service). auth.docker.io is built in for Docker Hub. Repeatable.
    #[arg(
        long = "registry-token-realm-host",
        global = true,
        env = "SIGNET_REGISTRY_TOKEN_REALM_HOSTS",
        value_delimiter = ','
    )]
    registry_token_realm_hosts: Vec<String>,
    /// Timeout of one registry request, in seconds.
    #[arg(
        long,
        global = true,
        env = "SIGNET_REGISTRY_TIMEOUT",
        default_value_t = 10
    )]
    registry_timeout: u64,
    /// Log format.
    #[arg(long, global = true, env = "SIGNET_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Log filter (tracing EnvFilter syntax).
    #[arg(long, global = true, env = "SIGNET_LOG", default_value = "warn")]
    log: String,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum OutputFormat {
    Text,
    Json,
}

#[derive(Clone, Copy, ValueEnum)]
enum NoMatchArg {
    Allow,
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

#[derive(Clone, Copy, ValueEnum)]
enum TypeArg {
    Default,
    Simple,
}

impl From<TypeArg> for SignatureType {
    fn from(t: TypeArg) -> Self {
        match t {
            TypeArg::Default => SignatureType::Default,
            TypeArg::Simple => SignatureType::Simple,
        }
    }
}

/// Where `keygen` creates a key on a PKCS#11 token instead of in a file.
#[derive(Args)]
struct Pkcs11KeygenArgs {
    /// Label of the PKCS#11 token to create the key on (the key never leaves it).
    #[arg(long, env = "SIGNET_PKCS11_TOKEN")]
    pkcs11_token: Option<String>,
    /// Label of the key objects to create.
    #[arg(long, env = "SIGNET_PKCS11_OBJECT", requires = "pkcs11_token")]
    pkcs11_object: Option<String>,
    /// PKCS#11 module.
    #[arg(long, env = "SIGNET_PKCS11_MODULE", default_value = crypto::DEFAULT_PKCS11_MODULE)]
    pkcs11_module: PathBuf,
    /// File holding the token's user PIN (or set SIGNET_PKCS11_PIN).
    #[arg(long, env = "SIGNET_PKCS11_PIN_FILE")]
    pkcs11_pin_file: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Generate a key pair: PREFIX.key (PKCS#8 PEM, mode 0600) and PREFIX.pub (SPKI PEM); with
    /// --pkcs11-token, a non-extractable key on a PKCS#11 token and PREFIX.pub.
    Keygen {
        /// Signature algorithm the key is for.
        #[arg(long, env = "SIGNET_ALGORITHM")]
        algorithm: Algorithm,
        /// Output prefix.
        #[arg(long, env = "SIGNET_KEYGEN_OUTPUT")]
        output: PathBuf,
        /// RSA modulus size (2048, 3072, 4096); default 3072.
        #[arg(long, env = "SIGNET_KEYGEN_BITS")]
        bits: Option<u32>,
        #[command(flatten)]
        pkcs11: Pkcs11KeygenArgs,
    },
    /// Sign the digest an image resolves to and push the signature next to it; with --backfill,
    /// sign every image the folder's Automatic SigningRules cover that lacks their signature.
    Sign {
        /// Image reference (tag or digest).
        #[arg(required_unless_present = "backfill")]
        image: Option<String>,
        /// Signing key: file:PATH (PKCS#8 PEM) or a pkcs11: URI.
        #[arg(long, env = "SIGNET_KEY", required_unless_present = "backfill")]
        key: Option<String>,
        /// Signature algorithm.
        #[arg(long, env = "SIGNET_ALGORITHM", required_unless_present = "backfill")]
        algorithm: Option<Algorithm>,
        /// Sign what the SigningRules of --policy-dir cover (list repositories and tags) instead of
        /// one image.
        #[arg(long, requires = "policy_dir", conflicts_with_all = ["image", "key", "algorithm"])]
        backfill: bool,
        /// Folder of SigningRule YAML documents (with --backfill).
        #[arg(long, env = "SIGNET_POLICY_DIR")]
        policy_dir: Option<PathBuf>,
        /// Key id shown in verdicts (default: file name or token object label).
        #[arg(long, env = "SIGNET_KEY_ID")]
        key_id: Option<String>,
        /// default: bind digest and tag; simple: the digest only.
        #[arg(long = "type", env = "SIGNET_SIGNATURE_TYPE", value_enum, default_value_t = TypeArg::Default)]
        signature_type: TypeArg,
        /// Extra claims for the payload's `optional` section, as key=value; repeatable.
        #[arg(
            long = "annotation",
            short = 'a',
            env = "SIGNET_ANNOTATIONS",
            value_delimiter = ','
        )]
        annotations: Vec<String>,
    },
    /// Print the CustomResourceDefinitions (Attestor, VerificationPolicy, ClusterVerificationPolicy,
    /// SigningRule) as YAML, for `kubectl apply -f -`.
    Crd,
    /// Sign images on push: receive registry notifications (POST /events), sign under the
    /// SigningRules that cover them, reconcile periodically.
    Signer(SignerArgs),
    /// Verify an image's signatures: with --key, exit 0 when a valid one exists, 1 when none does;
    /// with --policy-dir, judge it as admission would: exit 0 allowed, 1 denied, 2 when the
    /// registry could not be asked or the folder is invalid.
    Verify {
        /// Image reference (tag or digest).
        image: String,
        /// Public key (PEM: SPKI or PKCS#1).
        #[arg(
            long,
            env = "SIGNET_PUBLIC_KEY",
            required_unless_present = "policy_dir",
            conflicts_with = "policy_dir"
        )]
        key: Option<PathBuf>,
        /// Signature algorithm of the key.
        #[arg(long, env = "SIGNET_ALGORITHM", required_unless_present = "policy_dir")]
        algorithm: Option<Algorithm>,
        /// Folder of policy YAML (Attestors, policies, Namespaces): verify against every policy
        /// that governs the image in --namespace.
        #[arg(long, env = "SIGNET_POLICY_DIR")]
        policy_dir: Option<PathBuf>,
        /// Namespace the image would run in (with --policy-dir).
        #[arg(
            long,
            env = "SIGNET_NAMESPACE",
            default_value = "default",
            requires = "policy_dir"
        )]
        namespace: String,
        /// What happens to an image no policy matches (with --policy-dir).
        #[arg(long, env = "SIGNET_NO_MATCH", value_enum, default_value_t = NoMatchArg::Allow)]
        no_match: NoMatchArg,
        /// default: the signature must bind the tag too; simple: the digest only.
        #[arg(long = "type", env = "SIGNET_SIGNATURE_TYPE", value_enum, default_value_t = TypeArg::Default)]
        signature_type: TypeArg,
        /// Output format.
        #[arg(long, env = "SIGNET_OUTPUT", value_enum, default_value_t = OutputFormat::Text)]
        output: OutputFormat,
    },
    /// Serve the admission webhook (HTTPS): POST /validate and /mutate, GET /healthz, /readyz, /metrics.
    Webhook(signet::admission::WebhookArgs),
}

/// Flags of `signet signer`.
#[derive(Args)]
struct SignerArgs {
    /// Address to listen on (default 0.0.0.0:8443, or 0.0.0.0:8080 with --plain-http).
    #[arg(long, env = "SIGNET_LISTEN")]
    listen: Option<std::net::SocketAddr>,
    /// File holding the bearer token registries send.
    #[arg(long, env = "SIGNET_TOKEN_FILE")]
    token_file: PathBuf,
    /// TLS certificate (PEM), reloaded when the file changes.
    #[arg(
        long,
        env = "SIGNET_TLS_CERT",
        requires = "tls_key",
        required_unless_present = "plain_http"
    )]
    tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    #[arg(long, env = "SIGNET_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Serve plain HTTP (no TLS).
    #[arg(long, env = "SIGNET_PLAIN_HTTP", conflicts_with_all = ["tls_cert", "tls_key"])]
    plain_http: bool,
    /// Folder of SigningRule YAML documents (absent: read them from the cluster).
    #[arg(long, env = "SIGNET_POLICY_DIR")]
    policy_dir: Option<PathBuf>,
    /// Between two reconcile passes (e.g. 30s, 5m, 1h; 0 = only at start).
    #[arg(long, env = "SIGNET_RECONCILE_INTERVAL", default_value = "5m")]
    reconcile_interval: String,
    /// Images signed at once.
    #[arg(long, env = "SIGNET_WORKERS", default_value_t = 16)]
    workers: usize,
    /// EVENT_HOST=SCOPE_HOST: the registry host events name -> the host scopes and signatures use;
    /// repeatable.
    #[arg(
        long = "registry-alias",
        env = "SIGNET_REGISTRY_ALIASES",
        value_delimiter = ','
    )]
    registry_aliases: Vec<String>,
    /// PKCS#11 module loaded for `pkcs11:` keys of SigningRules (rules may not name one).
    #[arg(long = "pkcs11-module", env = "SIGNET_PKCS11_MODULE")]
    pkcs11_module: Option<PathBuf>,
    /// File holding the PKCS#11 user PIN for `pkcs11:` keys of SigningRules (rules may not
    /// carry a PIN).
    #[arg(long = "pkcs11-pin-file", env = "SIGNET_PKCS11_PIN_FILE")]
    pkcs11_pin_file: Option<PathBuf>,
}

fn signer_config(
    args: SignerArgs,
    global: &GlobalArgs,
) -> anyhow::Result<signet::signer::SignerConfig> {
    signet::signer::set_pkcs11_settings(signet::signer::Pkcs11Settings {
        module: args.pkcs11_module.clone(),
        pin_file: args.pkcs11_pin_file.clone(),
    });
    let default_port = if args.plain_http { 8080 } else { 8443 };
    let tls = match (args.tls_cert, args.tls_key) {
        (Some(cert), Some(key)) if !args.plain_http => Some((cert, key)),
        _ => None,
    };
    Ok(signet::signer::SignerConfig {
        listen: args
            .listen
            .unwrap_or_else(|| std::net::SocketAddr::from(([0, 0, 0, 0], default_port))),
        token_file: args.token_file,
        tls,
        policy_dir: args.policy_dir,
        reconcile_interval: signet::signer::parse_duration(&args.reconcile_interval)?,
        options: signet::signer::SignerOptions {
            workers: args.workers.max(1),
            aliases: signet::signer::AddressMap::parse(&args.registry_aliases)?,
            ..Default::default()
        },
        registry: registry_options(global),
    })
}

fn init_logging(global: &GlobalArgs) {
    let filter = tracing_subscriber::EnvFilter::try_new(&global.log)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match global.log_format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn registry_options(global: &GlobalArgs) -> RegistryOptions {
    RegistryOptions {
        config_file: global.registry_config.clone(),
        ca_files: global.registry_ca.clone(),
        insecure: global.insecure_registry.clone(),
        timeout: Duration::from_secs(global.registry_timeout.max(1)),
        token_realm_hosts: global.registry_token_realm_hosts.clone(),
    }
}

fn signature_store(global: &GlobalArgs) -> anyhow::Result<SignatureStore> {
    Ok(SignatureStore::new(RegistryClient::new(
        &registry_options(global),
    )?))
}

fn parse_annotations(pairs: &[String]) -> anyhow::Result<BTreeMap<String, String>> {
    pairs
        .iter()
        .map(|p| match p.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => bail!("annotation {p:?} is not key=value"),
        })
        .collect()
}

fn keygen_on_token(
    algorithm: Algorithm,
    output: &std::path::Path,
    token: &str,
    args: &Pkcs11KeygenArgs,
) -> anyhow::Result<()> {
    let object = args
        .pkcs11_object
        .as_deref()
        .context("--pkcs11-object names the key to create on the token")?;
    let pin = match (&args.pkcs11_pin_file, std::env::var("SIGNET_PKCS11_PIN")) {
        (Some(file), _) => std::fs::read_to_string(file)
            .with_context(|| format!("cannot read PIN file {}", file.display()))?
            .trim_end_matches(['\r', '\n'])
            .to_string(),
        (None, Ok(pin)) => pin,
        (None, Err(_)) => {
            bail!("the token's PIN is needed: --pkcs11-pin-file FILE or SIGNET_PKCS11_PIN")
        }
    };
    let key = crypto::generate_on_token(&args.pkcs11_module, token, &pin, object, algorithm)?;
    let public = output.with_extension("pub");
    write_new_file(&public, key.public_key.to_pem().as_bytes())?;
    println!("key: {}\npublic key: {}", key.uri, public.display());
    Ok(())
}

/// Writes a file that must not exist yet.
fn write_new_file(path: &std::path::Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(bytes)
        .with_context(|| format!("cannot write {}", path.display()))
}

/// Runs the command; `Ok(false)` means "ran fine, but verification failed" (exit 1).
async fn run(cli: Cli) -> anyhow::Result<bool> {
    match cli.command {
        Command::Keygen {
            algorithm,
            output,
            bits,
            pkcs11,
        } => {
            if let Some(token) = &pkcs11.pkcs11_token {
                return keygen_on_token(algorithm, &output, token, &pkcs11).map(|()| true);
            }
            let key = crypto::generate_key_pair(algorithm, bits)?;
            let (private, public) = crypto::write_key_pair(&output, &key)?;
            println!(
                "private key: {}\npublic key: {}",
                private.display(),
                public.display()
            );
            Ok(true)
        }
        Command::Sign {
            backfill: true,
            policy_dir: Some(dir),
            ..
        } => {
            let report = signet::signer::backfill(
                &dir,
                &registry_options(&cli.global),
                signet::signer::SignerOptions::default(),
            )
            .await?;
            println!("{}", report.summary());
            for failure in &report.failures {
                eprintln!("failed: {failure}");
            }
            if !report.failures.is_empty() {
                bail!("backfill left {} failures", report.failures.len());
            }
            Ok(true)
        }
        Command::Sign {
            image: Some(image),
            key: Some(key),
            algorithm: Some(algorithm),
            key_id,
            signature_type,
            annotations,
            ..
        } => {
            let image = ImageRef::parse(&image)?;
            let annotations = parse_annotations(&annotations)?;
            let key = crypto::open_signing_key(&key, algorithm, key_id.as_deref())?;
            let store = signature_store(&cli.global)?;
            let signed = signet::image_signing::sign_image(
                &store,
                &image,
                key,
                signature_type.into(),
                &annotations,
            )
            .await?;
            let note = match signed.outcome {
                signet::registry::AppendOutcome::Added => "",
                signet::registry::AppendOutcome::AlreadyPresent => " (already present)",
            };
            println!("{}\n{}{note}", signed.digest, signed.signature_ref);
            Ok(true)
        }
        Command::Sign { .. } => {
            bail!("sign needs IMAGE, --key and --algorithm, or --backfill --policy-dir DIR")
        }
        Command::Signer(args) => {
            signet::signer::run(signer_config(args, &cli.global)?).await?;
            Ok(true)
        }
        Command::Crd => {
            print!("{}", signet::crd::render_all_crds()?);
            Ok(true)
        }
        Command::Verify {
            image,
            key,
            algorithm,
            policy_dir,
            namespace,
            no_match,
            signature_type,
            output,
        } => {
            let image = ImageRef::parse(&image)?;
            if let Some(dir) = policy_dir {
                let store = signature_store(&cli.global)?;
                let options = EngineOptions {
                    no_match: no_match.into(),
                };
                let verification = signet::policy_verification::verify_with_policy_dir(
                    &store, &dir, options, &namespace, &image,
                )
                .await?;
                match output {
                    OutputFormat::Json => {
                        println!("{}", serde_json::to_string_pretty(&verification)?)
                    }
                    OutputFormat::Text => print!("{}", verification.to_text()),
                }
                if let (Some(reason), false) =
                    (&verification.lookup_error, verification.verdict.allowed)
                {
                    bail!("registry look-up failed: {reason}");
                }
                return Ok(verification.verdict.allowed);
            }
            let (Some(key), Some(algorithm)) = (key, algorithm) else {
                bail!("--key and --algorithm are needed without --policy-dir");
            };
            let pem = std::fs::read_to_string(&key)
                .with_context(|| format!("cannot read public key {}", key.display()))?;
            let public = PublicKey::from_pem(&pem, algorithm)
                .with_context(|| format!("public key {}", key.display()))?;
            let store = signature_store(&cli.global)?;
            let verdict = signet::image_verification::verify_with_keys(
                &store,
                &image,
                signature_type.into(),
                &[public],
            )
            .await?;
            match output {
                OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&verdict)?),
                OutputFormat::Text => print!("{}", verdict.to_text()),
            }
            Ok(verdict.verified)
        }
        Command::Webhook(args) => {
            let registry = registry_options(&cli.global);
            signet::admission::run_webhook(args, registry).await?;
            Ok(true)
        }
    }
}

fn main() -> ExitCode {
    // kube and reqwest both reach rustls; one process-wide provider avoids a panic at client build.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let cli = Cli::parse();
    init_logging(&cli.global);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
