//! Load generator for `signet signer`: push -> signature readable, with Debian's `docker-registry`
//! notifying an in-process signer, as deployed.
//!
//! ```text
//! cargo run --release --example signer_load -- [--key file|pkcs11] [--images 400] [--concurrency 16]
//! ```
//!
//! 1. latency: images pushed one at a time; for each, the time from the manifest PUT's answer to
//!    the `.sig` tag answering (polled every 2 ms): p50, p95, max;
//! 2. throughput: `--images` pushed by `--concurrency` pushers at once; images/s from the first
//!    push to the last signature written (the signer's in-process count, so that watching adds
//!    no registry load; every image is read back once the burst is over), and push -> signature
//!    p50/p95 under that load, polled on every 8th image.
//!
//! `--storage inmemory` (default) keeps the registry's storage in memory, so that the figures are
//! the signer's and not the disk's (the filesystem driver fsyncs every blob and link it writes:
//! about 10 ms each on a virtual disk); `--storage disk` measures with a temporary folder.
//!
//! `--deliver registry` (default): the registry notifies the signer, one event at a time (its
//! notification queue is sequential), so throughput is bounded by 1 / (time per event) unless the
//! signer answers before signing (`--acknowledge queued`). It sends
//! pushes only (`ignore: actions: [pull]`, as the README configures it): with pull events, every
//! GET of the signer's and every poll of this harness would queue an event ahead of the next push.
//! `--deliver direct`: each pusher POSTs its push event itself and waits for the answer, as several
//! registry replicas (each with its own queue) would: the signer's own capacity.
//!
//! `--formats both|CosignSignature|SigstoreBundle` (default both): what the rule writes. The run
//! reports the signer's registry requests per signed image (its own client's count over the
//! one-at-a-time phase: each image in a new repository, then as many again into those
//! repositories, and over the burst), and, before the signed burst, pushes as many images out of
//! the rule's scope (nothing to sign) to report the ratio of signed to unsigned push throughput.
//!
//! `--burst-repositories N` (default 0): the bursts' images go into N repositories (the signed
//! burst into ones the one-at-a-time phase signed before), each under its own tag, as a CI pushes
//! new builds of existing images; 0 puts each image in a new repository of its own (one request
//! more per signed image: the empty config blob's mount).
//!
//! `--layers N --layer-bytes B` (default 1 layer of 72 bytes): what each pushed image holds, so
//! that the unsigned baseline can be a tiny image (the worst case for the ratio: its push costs
//! the registry least) or one shaped like a real image. `--recheck events|DURATION` (default
//! `events`, as `signet signer`): how the signer looks for another writer's overwrite; a
//! duration adds one `HEAD` per tag written that long after each signing.
//!
//! `--acknowledge signed|queued` (default `signed`, as `signet signer`): when the signer answers
//! an event; with `queued` it answers once the push is in its queue and signs afterwards (the
//! harness still counts an image signed only when its signature tags answer).
//!
//! `--key file` signs with an ECDSA P-256 key file; `--key pkcs11` with an ECDSA P-256 key on a
//! SoftHSM2 token created in a temporary folder (the process re-runs itself with `SOFTHSM2_CONF`).
//! Needs the Debian packages `docker-registry` (and `softhsm2` for pkcs11).
//!
//! `--key awskms` signs with an ECC_NIST_P256 key in moto (AWS KMS emulator), `--key alikms` with
//! an EC_P256 key in the tests' local Alibaba Cloud KMS endpoint (both PyPI-based, see
//! scripts/test-deps.sh); the process re-runs itself with the emulator's endpoint and credentials
//! in its environment, as the chart sets them. The KMS round trip is printed from the signer's
//! `kms_call_duration_seconds` metric.

// A load generator, not library code: a failed setup step ends the run with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use signet::controller::PolicyState;
use signet::crd::{SigningKeyRef, SigningRule, SigningRuleSpec, Trigger};
use signet::crypto::Algorithm;
use signet::reference::ImageRef;
use signet::registry::{RegistryClient, RegistryOptions, SignatureStore, sha256_digest};
use signet::signature::SignatureType;
use signet::signer::{self, BearerToken, Signer, SignerOptions};
use tracing::Instrument as _;

// The KMS emulators of the tests (`--key awskms|alikms`).
#[path = "../tests/support/mod.rs"]
mod support;

const TOKEN: &str = "load-token";
const REGISTRY: &str = "/usr/bin/docker-registry";

struct Args {
    key: String,
    images: usize,
    concurrency: usize,
    sequential: usize,
    storage: String,
    direct: bool,
    formats: Vec<signet::signature::SignatureFormat>,
    recheck: signer::Recheck,
    acknowledge: signer::Acknowledge,
    burst_repositories: usize,
}

/// What each pushed image holds: `--layers` layers of `--layer-bytes` bytes (set once in `main`).
static IMAGE_SHAPE: std::sync::OnceLock<(usize, usize)> = std::sync::OnceLock::new();

fn args() -> anyhow::Result<Args> {
    let mut parsed = Args {
        key: "file".into(),
        images: 400,
        concurrency: 16,
        sequential: 50,
        storage: "inmemory".into(),
        direct: false,
        formats: signet::signature::SignatureFormat::ALL.to_vec(),
        recheck: signer::Recheck::Events,
        acknowledge: signer::Acknowledge::Signed,
        burst_repositories: 0,
    };
    let (mut layers, mut layer_bytes) = (1usize, 72usize);
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--key" => parsed.key = value()?,
            "--images" => parsed.images = value()?.parse()?,
            "--concurrency" => parsed.concurrency = value()?.parse()?,
            "--sequential" => parsed.sequential = value()?.parse()?,
            "--storage" => parsed.storage = value()?,
            "--deliver" => parsed.direct = value()? == "direct",
            "--layers" => layers = value()?.parse()?,
            "--burst-repositories" => parsed.burst_repositories = value()?.parse()?,
            "--layer-bytes" => layer_bytes = value()?.parse()?,
            "--recheck" => {
                parsed.recheck = match value()?.as_str() {
                    "events" => signer::Recheck::Events,
                    other => signer::Recheck::After(signet::serve::parse_duration(other)?),
                }
            }
            "--acknowledge" => {
                parsed.acknowledge = value()?.parse().map_err(anyhow::Error::msg)?;
            }
            "--formats" => {
                parsed.formats = match value()?.as_str() {
                    "both" => signet::signature::SignatureFormat::ALL.to_vec(),
                    one => vec![one.parse()?],
                }
            }
            // `cargo bench`/`cargo run` may pass this through.
            "--bench" => {}
            other => bail!("unknown flag {other}"),
        }
    }
    if layers == 0 {
        bail!("--layers must be at least 1");
    }
    let _ = IMAGE_SHAPE.set((layers, layer_bytes.max(16)));
    if parsed.burst_repositories > parsed.sequential {
        bail!(
            "--burst-repositories must be at most --sequential: the burst goes into repositories signed before"
        );
    }
    Ok(parsed)
}

/// The registry child, killed on drop (its storage folder goes with it).
struct RegistryProcess {
    child: Child,
    _storage: tempfile::TempDir,
}

impl Drop for RegistryProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Starts `docker-registry` on a loopback port, notifying `events_url`.
fn start_registry(
    events_url: Option<&str>,
    storage: &str,
) -> anyhow::Result<(RegistryProcess, String)> {
    if !Path::new(REGISTRY).exists() {
        bail!("{REGISTRY} not found: install the Debian package docker-registry");
    }
    let dir = tempfile::tempdir()?;
    let port = free_port()?;
    let storage = match storage {
        "inmemory" => "inmemory: {}".to_string(),
        "disk" => format!(
            "filesystem:\n    rootdirectory: {}",
            dir.path().join("storage").display()
        ),
        other => bail!("--storage inmemory|disk, not {other}"),
    };
    let notifications = match events_url {
        Some(url) => format!(
            "notifications:\n  endpoints:\n    - name: signet\n      url: {url}\n      \
             headers:\n        Authorization: [\"Bearer {TOKEN}\"]\n      timeout: 5s\n      \
             threshold: 3\n      backoff: 1s\n      ignoredmediatypes:\n        - application/octet-stream\n      \
             ignore:\n        actions: [pull]\n"
        ),
        None => String::new(),
    };
    let config = format!(
        "version: 0.1\n\
         log:\n  level: warn\n  accesslog:\n    disabled: true\n\
         storage:\n  {storage}\n\
         http:\n  addr: 127.0.0.1:{port}\n  secret: load\n{notifications}",
    );
    let config_path = dir.path().join("config.yml");
    std::fs::write(&config_path, config)?;
    let log = std::fs::File::create(dir.path().join("registry.log"))?;
    let child = Command::new(REGISTRY)
        .arg("serve")
        .arg(&config_path)
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()?;
    let process = RegistryProcess {
        child,
        _storage: dir,
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            bail!("docker-registry did not start");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok((process, format!("127.0.0.1:{port}")))
}

/// A SoftHSM2 token in a temporary folder; returns the config path.
fn softhsm_token(dir: &Path) -> anyhow::Result<PathBuf> {
    let tokens = dir.join("tokens");
    std::fs::create_dir_all(&tokens)?;
    let conf = dir.join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\n",
            tokens.display()
        ),
    )?;
    let init = Command::new("softhsm2-util")
        .args([
            "--init-token",
            "--free",
            "--label",
            "load",
            "--pin",
            "1234",
            "--so-pin",
            "5678",
        ])
        .env("SOFTHSM2_CONF", &conf)
        .output()
        .context("softhsm2-util (Debian package softhsm2)")?;
    if !init.status.success() {
        bail!("softhsm2-util: {}", String::from_utf8_lossy(&init.stderr));
    }
    Ok(conf)
}

/// The key reference to sign with.
fn key_reference(kind: &str, dir: &Path) -> anyhow::Result<String> {
    match kind {
        "file" => {
            let key = signet::crypto::generate_key_pair(Algorithm::EcdsaP256Sha256, None)?;
            let (private, _) = signet::crypto::write_key_pair(&dir.join("load"), &key)?;
            Ok(format!("file:{}", private.display()))
        }
        "pkcs11" => {
            let pin = dir.join("pin");
            std::fs::write(&pin, "1234\n")?;
            signet::crypto::generate_on_token(
                Path::new(signet::crypto::DEFAULT_PKCS11_MODULE),
                "load",
                "1234",
                "load",
                Algorithm::EcdsaP256Sha256,
            )?;
            // SigningRules may not carry the PIN: it is the signer's setting
            // (`--pkcs11-pin-file` on `signet signer`).
            signet::signer::set_pkcs11_settings(signet::signer::Pkcs11Settings {
                module: None,
                pin_file: Some(pin),
            });
            Ok("pkcs11:token=load;object=load".to_string())
        }
        // Cloud KMS (issue 12): endpoint and credentials are in this process's environment,
        // set by `kms_parent`.
        "awskms" => Ok("awskms:///alias/ec".to_string()),
        "alikms" => Ok("alikms://key-ec?region=cn-hangzhou".to_string()),
        other => bail!("--key file|pkcs11|awskms|alikms, not {other}"),
    }
}

/// Pushes a tiny unique image (config, one layer, OCI manifest) as `repo:tag`; returns its digest.
async fn push_image(
    client: &RegistryClient,
    host: &str,
    (repo, tag): (&str, &str),
    seed: usize,
) -> anyhow::Result<String> {
    let image = ImageRef::parse(&format!("{host}/{repo}:{tag}"))?;
    let (layers, layer_bytes) = *IMAGE_SHAPE.get_or_init(|| (1, 72));
    // Distinct content per image and layer, so that every blob is really uploaded.
    let layers: Vec<Vec<u8>> = (0..layers)
        .map(|n| {
            let mut layer = format!("layer {seed} {n} ").into_bytes();
            layer.resize(layer_bytes, b'x');
            layer
        })
        .collect();
    let layer_digests: Vec<String> = layers.iter().map(|l| sha256_digest(l)).collect();
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": layer_digests},
    }))?;
    let config_digest = sha256_digest(&config);
    let descriptors: Vec<serde_json::Value> = layers
        .iter()
        .zip(&layer_digests)
        .map(|(l, d)| serde_json::json!({"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d, "size": l.len()}))
        .collect();
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len()},
        "layers": descriptors,
    }))?;
    let blobs = layers
        .iter()
        .chain(std::iter::once(&config))
        .map(|blob| client.push_blob(&image, blob));
    for pushed in futures::future::join_all(blobs).await {
        pushed?;
    }
    Ok(client
        .push_manifest(
            &image,
            &manifest,
            "application/vnd.oci.image.manifest.v1+json",
        )
        .await?)
}

/// The tags that answer once `digest` is signed in `formats`: the `.sig` tag, the fallback
/// referrers index `sha256-<hex>` (written after the bundle itself).
fn signed_tags(
    digest: &str,
    formats: &[signet::signature::SignatureFormat],
) -> anyhow::Result<Vec<String>> {
    let mut tags = Vec::new();
    if formats.contains(&signet::signature::SignatureFormat::CosignSignature) {
        tags.push(signet::signature::signature_tag(digest)?);
    }
    if formats.contains(&signet::signature::SignatureFormat::SigstoreBundle) {
        tags.push(digest.replacen(':', "-", 1));
    }
    Ok(tags)
}

/// Whether every tag of `tags` answers.
async fn all_answer(client: &RegistryClient, host: &str, repo: &str, tags: &[String]) -> bool {
    for tag in tags {
        let Ok(reference) = ImageRef::parse(&format!("{host}/{repo}:{tag}")) else {
            return false;
        };
        match client.resolve_digest(&reference).await {
            Ok(_) => {}
            Err(e) if e.is_not_found() => return false,
            // A registry under load sometimes answers a HEAD with 500: poll again.
            Err(e) => {
                eprintln!("poll {repo}: {e}");
                return false;
            }
        }
    }
    true
}

/// Waits until `digest` is signed in `formats`; when that was seen.
async fn wait_signed(
    client: &RegistryClient,
    host: &str,
    repo: &str,
    digest: &str,
    formats: &[signet::signature::SignatureFormat],
    poll: Duration,
) -> anyhow::Result<Instant> {
    let tags = signed_tags(digest, formats)?;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if all_answer(client, host, repo, &tags).await {
            return Ok(Instant::now());
        }
        if Instant::now() > deadline {
            bail!("{repo}@{digest} not signed within 120 s");
        }
        tokio::time::sleep(poll).await;
    }
}

/// The repository and tag of the `i`-th burst image under `prefix`: with `repositories` = 0,
/// each in a new repository of its own (`prefix/burst{i}:v1`); else spread over that many
/// repositories (`prefix/seq{i % repositories}`, for `load` the ones the sequential phase signed
/// before), each under a tag of its own (`b{i}`), as a CI pushes new builds of existing images.
fn burst_image(prefix: &str, i: usize, repositories: usize) -> (String, String) {
    match repositories {
        0 => (format!("{prefix}/burst{i}"), "v1".to_string()),
        n => (format!("{prefix}/seq{}", i % n), format!("b{i}")),
    }
}

/// POSTs the push event of `repo:tag` as the registry would, and checks the answer is 2xx.
async fn deliver(
    url: &str,
    host: &str,
    (repo, tag): (&str, &str),
    digest: &str,
) -> anyhow::Result<()> {
    static HTTP: std::sync::OnceLock<reqwest::Client> = std::sync::OnceLock::new();
    let http = HTTP.get_or_init(|| {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
        reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .build()
            .expect("HTTP client")
    });
    let body = serde_json::json!({"events": [{
        "action": "push",
        "target": {
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": digest, "repository": repo, "tag": tag,
            "url": format!("http://{host}/v2/{repo}/manifests/{digest}"),
        },
        "request": {"host": host, "method": "PUT"},
    }]});
    let response = http
        .post(url)
        .bearer_auth(TOKEN)
        .header("Content-Type", signer::event::EVENTS_MEDIA_TYPE)
        .body(body.to_string())
        .send()
        .await?;
    if !response.status().is_success() {
        bail!(
            "event for {repo}: {} {}",
            response.status(),
            response.text().await?
        );
    }
    Ok(())
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

async fn run(args: Args) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let key = key_reference(&args.key, dir.path())?;
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let events_url = format!("http://{}/events", listener.local_addr()?);
    let (_registry, host) =
        start_registry((!args.direct).then_some(events_url.as_str()), &args.storage)?;
    let rule = SigningRule::new(
        "load",
        SigningRuleSpec {
            scope: vec![format!("{host}/load/**")],
            key: SigningKeyRef {
                reference: key,
                id: None,
                certificate_chain: None,
            },
            algorithm: Algorithm::EcdsaP256Sha256,
            signature_type: SignatureType::Default,
            trigger: Trigger::Automatic,
            formats: args.formats.clone(),
            notation_envelope: Default::default(),
        },
    );
    let compiled = signet::policy::compile(&Default::default(), 1, Default::default());
    let client = RegistryClient::new(&RegistryOptions::default())?;
    // The signer's own client, so that its registry requests can be counted apart.
    let signer_client = RegistryClient::new(&RegistryOptions::default())?;
    let signer = Signer::new(
        SignatureStore::new(signer_client.clone()),
        PolicyState::fixed(compiled.snapshot, vec![rule]),
        SignerOptions {
            recheck: args.recheck,
            acknowledge: args.acknowledge,
            ..SignerOptions::default()
        },
    );
    signer.open_keys().await?;
    let server = signet::serve::Server::start(
        "signer",
        listener,
        signer::router(signer.clone(), BearerToken::new(TOKEN)?),
        None,
        &signet::serve::Drain::new(),
    )?;

    // Warm-up: connections, tokens, the registry's first writes.
    for i in 0..5 {
        let repo = format!("load/warm{i}");
        let digest = push_image(&client, &host, (&repo, "v1"), 1_000_000 + i).await?;
        if args.direct {
            deliver(&events_url, &host, (&repo, "v1"), &digest).await?;
        }
        wait_signed(
            &client,
            &host,
            &repo,
            &digest,
            &args.formats,
            Duration::from_millis(2),
        )
        .await?;
    }

    // The warm-up images' rechecks (2 s after each with `--recheck 2s`) and own events must not be
    // counted as the measured ones'.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let requests_before = signer_client.requests_sent();
    let mut latencies = Vec::with_capacity(args.sequential);
    for i in 0..args.sequential {
        let repo = format!("load/seq{i}");
        let digest = push_image(&client, &host, (&repo, "v1"), 2_000_000 + i)
            .instrument(tracing::info_span!("loadgen"))
            .await?;
        let pushed = Instant::now();
        if args.direct {
            deliver(&events_url, &host, (&repo, "v1"), &digest).await?;
        }
        let signed = wait_signed(
            &client,
            &host,
            &repo,
            &digest,
            &args.formats,
            Duration::from_millis(2),
        )
        .instrument(tracing::info_span!("loadgen"))
        .await?;
        latencies.push(signed - pushed);
    }
    // Settle: a timed recheck (2 s after each signing) is part of what a signed image costs.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let signer_requests = signer_client.requests_sent() - requests_before;
    // The same again, each image pushed into a repository signed before (its tag moved to the
    // new image): what the empty config's once-per-repository put saves.
    let requests_before = signer_client.requests_sent();
    for i in 0..args.sequential {
        let repo = format!("load/seq{i}");
        let digest = push_image(&client, &host, (&repo, "v1"), 4_000_000 + i)
            .instrument(tracing::info_span!("loadgen"))
            .await?;
        if args.direct {
            deliver(&events_url, &host, (&repo, "v1"), &digest).await?;
        }
        wait_signed(
            &client,
            &host,
            &repo,
            &digest,
            &args.formats,
            Duration::from_millis(2),
        )
        .instrument(tracing::info_span!("loadgen"))
        .await?;
    }
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let known_repository_requests = signer_client.requests_sent() - requests_before;
    latencies.sort();
    println!(
        "key {}, registry storage {}: one at a time ({} images): push -> signature readable p50 {}, p95 {}, max {}",
        args.key,
        args.storage,
        latencies.len(),
        ms(percentile(&latencies, 0.5)),
        ms(percentile(&latencies, 0.95)),
        ms(*latencies.last().unwrap_or(&Duration::ZERO)),
    );

    let formats: Vec<&str> = args.formats.iter().map(|f| f.as_str()).collect();
    println!(
        "  formats {}: signer registry requests per signed image {:.1} in a new repository, {:.1} in one signed before (recheck {:?}, its requests included)",
        formats.join("+"),
        signer_requests as f64 / latencies.len().max(1) as f64,
        known_repository_requests as f64 / latencies.len().max(1) as f64,
        args.recheck
    );
    let metrics = signer.metrics().encode();
    let value = |name: &str| -> f64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
            .unwrap_or(0.0)
    };
    println!(
        "  signer's own time per event (received -> signed): mean {}",
        ms(Duration::from_secs_f64(
            value("signet_signer_signing_latency_seconds_sum")
                / value("signet_signer_signing_latency_seconds_count").max(1.0)
        ))
    );
    if args.images == 0 {
        server.stop().await?;
        return Ok(());
    }
    // The same number of images pushed out of the rule's scope: push throughput with nothing
    // to sign (the registry still notifies the signer, which finds no rule).
    let unsigned_start = Instant::now();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut pushers = Vec::new();
    for _ in 0..args.concurrency.max(1) {
        let (client, host, next) = (client.clone(), host.clone(), Arc::clone(&next));
        let total = args.images;
        let repositories = args.burst_repositories;
        pushers.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= total {
                    return Ok::<_, anyhow::Error>(());
                }
                let (repo, tag) = burst_image("free", i, repositories);
                push_image(&client, &host, (&repo, &tag), 3_000_000 + i).await?;
            }
        }));
    }
    for pusher in pushers {
        pusher.await??;
    }
    let unsigned_rate = args.images as f64 / unsigned_start.elapsed().as_secs_f64();
    println!(
        "  unsigned: burst of {} images by {} pushers, nothing to sign: {:.0} images/s",
        args.images, args.concurrency, unsigned_rate
    );

    let burst_requests_before = signer_client.requests_sent();
    let signed_before = signer.metrics().signed.get();
    let start = Instant::now();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (pushed_tx, mut pushed_rx) = tokio::sync::mpsc::unbounded_channel();
    let mut pushers = Vec::new();
    for _ in 0..args.concurrency.max(1) {
        let (client, host, next, pushed_tx) = (
            client.clone(),
            host.clone(),
            Arc::clone(&next),
            pushed_tx.clone(),
        );
        let direct = args.direct.then(|| events_url.clone());
        let total = args.images;
        let repositories = args.burst_repositories;
        pushers.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= total {
                    return Ok::<_, anyhow::Error>(());
                }
                let (repo, tag) = burst_image("load", i, repositories);
                let digest = push_image(&client, &host, (&repo, &tag), i).await?;
                let pushed = Instant::now();
                if let Some(url) = &direct {
                    deliver(url, &host, (&repo, &tag), &digest).await?;
                }
                let _ = pushed_tx.send((i, repo, digest, pushed));
            }
        }));
    }
    drop(pushed_tx);
    // When the burst is signed: the signer's own count of signatures written (each counted once
    // its manifest PUT was answered), read in-process, so that watching costs the registry
    // nothing. Watching by reading the registry (one request at a time, over every image not
    // yet seen signed) kept the registry busy during the signed burst only, and the unsigned
    // baseline has no such load: it lowered the ratio. Every image is read back from the
    // registry once the burst is over. Push -> signature latencies are measured on every
    // LATENCY_SAMPLE-th image, polled from the registry.
    const LATENCY_SAMPLE: usize = 8;
    let mut outstanding: Vec<(String, String, Instant)> = Vec::new();
    let mut pushed_all: Vec<(String, String)> = Vec::with_capacity(args.images);
    let mut timings: Vec<(Instant, Instant)> = Vec::new();
    let mut pushing = true;
    let mut last_signed: Option<Instant> = None;
    while pushing || !outstanding.is_empty() || last_signed.is_none() {
        loop {
            match pushed_rx.try_recv() {
                Ok((i, repo, digest, pushed)) => {
                    if i % LATENCY_SAMPLE == 0 {
                        outstanding.push((repo.clone(), digest.clone(), pushed));
                    }
                    pushed_all.push((repo, digest));
                }
                Err(tokio::sync::mpsc::error::TryRecvError::Empty) => break,
                Err(tokio::sync::mpsc::error::TryRecvError::Disconnected) => {
                    pushing = false;
                    break;
                }
            }
        }
        if last_signed.is_none()
            && signer.metrics().signed.get() - signed_before >= args.images as u64
        {
            last_signed = Some(Instant::now());
        }
        let mut still = Vec::with_capacity(outstanding.len());
        for (repo, digest, pushed) in outstanding {
            let tags = signed_tags(&digest, &args.formats)?;
            if all_answer(&client, &host, &repo, &tags).await {
                timings.push((pushed, Instant::now()));
            } else {
                still.push((repo, digest, pushed));
            }
        }
        outstanding = still;
        if Instant::now() - start > Duration::from_secs(300) {
            bail!(
                "burst not signed after 300 s ({} of {} signatures written)",
                signer.metrics().signed.get() - signed_before,
                args.images
            );
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    for pusher in pushers {
        pusher.await??;
    }
    let last_signed = last_signed.unwrap_or(start);
    let elapsed = last_signed - start;
    for (repo, digest) in &pushed_all {
        let tags = signed_tags(digest, &args.formats)?;
        if !all_answer(&client, &host, repo, &tags).await {
            bail!("{repo}@{digest}: counted signed, but its signature tags do not all answer");
        }
    }
    let mut under_load: Vec<Duration> = timings.iter().map(|(p, s)| *s - *p).collect();
    under_load.sort();
    println!(
        "key {}, delivery {}, acknowledge {}: burst of {} images by {} pushers: {:.0} images/s (first push to last signature, {:.2} s); push -> signature (every {LATENCY_SAMPLE}th image) p50 {}, p95 {}",
        args.key,
        if args.direct { "direct" } else { "registry" },
        args.acknowledge,
        args.images,
        args.concurrency,
        args.images as f64 / elapsed.as_secs_f64(),
        elapsed.as_secs_f64(),
        ms(percentile(&under_load, 0.5)),
        ms(percentile(&under_load, 0.95)),
    );
    let signed_rate = args.images as f64 / elapsed.as_secs_f64();
    println!(
        "  signed / unsigned push throughput: {:.2} ({signed_rate:.0} / {unsigned_rate:.0} images/s)",
        signed_rate / unsigned_rate
    );
    // Past the last rechecks: the burst's own requests per image, tag polls included (the
    // registry, busy, links tags later than it notifies).
    tokio::time::sleep(Duration::from_millis(2500)).await;
    println!(
        "  signer registry requests per signed image in the burst ({}): {:.1}",
        match args.burst_repositories {
            0 => "new repositories".to_string(),
            n => format!("{n} repositories signed before"),
        },
        (signer_client.requests_sent() - burst_requests_before) as f64 / args.images.max(1) as f64
    );
    let metrics = signer.metrics().encode();
    for line in metrics.lines().filter(|l| {
        l.starts_with("signet_signer_signed_total")
            || l.starts_with("signet_signer_failed_total")
            || l.starts_with("signet_signer_overwritten_total")
            || l.starts_with("signet_signer_bundles_written_total")
            || (l.starts_with("signet_signer_kms_call")
                && l.contains("outcome=\"success\"")
                && !l.contains("_bucket"))
    }) {
        println!("  {line}");
    }
    server.stop().await?;
    Ok(())
}

/// For `--key awskms|alikms`: starts the emulator and runs this program again with its endpoint
/// and credentials in the environment; `None` when this is that second run (or no KMS key).
fn kms_parent(args: &Args) -> anyhow::Result<Option<i32>> {
    if std::env::var_os("SIGNET_LOAD_KMS").is_some() {
        return Ok(None);
    }
    let rerun = |env: Vec<(&str, String)>| -> anyhow::Result<i32> {
        let status = Command::new(std::env::current_exe()?)
            .args(std::env::args().skip(1))
            .envs(env)
            .env("SIGNET_LOAD_KMS", "1")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("ALIBABA_CLOUD_ECS_METADATA_DISABLED", "true")
            .stdin(Stdio::null())
            .status()?;
        Ok(status.code().unwrap_or(1))
    };
    match args.key.as_str() {
        "awskms" => {
            let moto = support::moto::Moto::start();
            let mut env = moto.env();
            env.push(("AWS_ENDPOINT_URL_KMS", moto.url()));
            rerun(env).map(Some)
        }
        "alikms" => {
            let kms = support::alikms::AliKms::start();
            let mut env = kms.env();
            env.push(("SIGNET_ALIBABA_KMS_ENDPOINT", kms.endpoint()));
            rerun(env).map(Some)
        }
        _ => Ok(None),
    }
}

fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let args = args()?;
    if let Some(code) = kms_parent(&args)? {
        std::process::exit(code);
    }
    if args.key == "pkcs11" && std::env::var_os("SOFTHSM2_CONF").is_none() {
        // The token must be configured before the module loads: run again with it set.
        let dir = tempfile::tempdir()?;
        let conf = softhsm_token(dir.path())?;
        let status = Command::new(std::env::current_exe()?)
            .args(std::env::args().skip(1))
            .env("SOFTHSM2_CONF", conf)
            .stdin(Stdio::null())
            .status()?;
        std::process::exit(status.code().unwrap_or(1));
    }
    // `RUST_LOG=signet::registry::requests=trace` lists every registry request; the load
    // generator's own (pushes, polls) carry the span `loadgen`, the signer's do not.
    if let Ok(filter) = std::env::var("RUST_LOG") {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_writer(std::io::stderr)
            .init();
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(args))
}
