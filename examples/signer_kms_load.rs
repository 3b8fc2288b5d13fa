//! The cost of signing with a cloud KMS key, per image, split into its parts: `signet signer` runs
//! as its own process (the release binary next to this example), Debian's `docker-registry`
//! notifies it of each push, and the key lives in the tests' KMS stand-in (moto for AWS, the
//! local Alibaba Cloud KMS endpoint checking every request signature with the Alibaba SDK).
//!
//! ```text
//! cargo build --release --bin signet --example signer_kms_load
//! target/release/examples/signer_kms_load --provider aws|alibaba|file [--images 200]
//! ```
//!
//! Images are pushed one at a time, each waited for until both its `.sig` tag and its Sigstore
//! bundle's referrers tag answer (polled from the registry, not from the signer, so that the
//! polling costs the signer nothing). Over the measured images (after a warm-up), per image:
//! - signer latency: the signer's `signet_signer_signing_latency_seconds` (event received to
//!   signatures written);
//! - KMS round trip: the signer's `signet_signer_kms_call_duration_seconds` (the Sign calls;
//!   the public key was fetched at start);
//! - registry time: the registry's own `http.response.duration` of the requests whose user agent
//!   is the signer's (`signet/...`), from its log;
//! - the signer's own overhead: its CPU time (utime + stime of its process, from
//!   `/proc/PID/stat`), divided by the images signed. This is everything the signer does
//!   itself: the notification, the event, the request signing, the local verification of each
//!   KMS signature, the envelopes, and the events of its own pushes. Its CPU time over
//!   `--idle-seconds` with nothing to sign is measured first and reported, and the figure is also
//!   given net of it.
//!
//! `--provider file` runs the same harness with a key file: the difference in CPU per image
//! between a KMS run and this one is what the KMS path itself costs the signer.
//!
//! The KMS stand-ins are Python servers on the same two cores: their round trip is not the
//! cloud's (tens of ms across a network); the signer's CPU time per image is the figure that
//! carries over.

// A load generator, not library code: a failed setup step ends the run with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use signet::crypto::Algorithm;

#[path = "../tests/support/mod.rs"]
mod support;

use support::Registry;
use support::kms_cli::kms_rule;
use support::signer::{TOKEN, policy_dir};

struct Args {
    provider: String,
    images: usize,
    warmup: usize,
    idle: u64,
}

fn args() -> anyhow::Result<Args> {
    let mut parsed = Args {
        provider: "aws".into(),
        images: 200,
        warmup: 5,
        idle: 10,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--provider" => parsed.provider = value()?,
            "--images" => parsed.images = value()?.parse()?,
            "--warmup" => parsed.warmup = value()?.parse()?,
            "--idle-seconds" => parsed.idle = value()?.parse()?,
            other => bail!(
                "unknown flag {other} (--provider aws|alibaba|file, --images N, --warmup N, --idle-seconds N)"
            ),
        }
    }
    if parsed.images == 0 {
        bail!("--images must be at least 1");
    }
    Ok(parsed)
}

/// The KMS stand-in, kept alive for the run (or a key file, the baseline the KMS runs are
/// compared with: the same harness, no KMS).
enum Kms {
    Aws(support::moto::Moto),
    Alibaba(support::alikms::AliKms),
    File(tempfile::TempDir),
}

impl Kms {
    fn start(provider: &str) -> anyhow::Result<Self> {
        Ok(match provider {
            "aws" => Kms::Aws(support::moto::Moto::start()),
            "alibaba" => Kms::Alibaba(support::alikms::AliKms::start()),
            "file" => Kms::File(tempfile::tempdir()?),
            other => bail!("--provider {other}: aws, alibaba or file"),
        })
    }

    /// The signer's environment (endpoint and credentials, as the chart sets them) and the
    /// rule's key reference.
    fn signer_env(&self) -> (Vec<(&'static str, String)>, String) {
        match self {
            Kms::Aws(moto) => {
                let mut env = moto.env();
                env.push(("AWS_ENDPOINT_URL_KMS", moto.url()));
                (env, "awskms:///alias/ec".into())
            }
            Kms::Alibaba(kms) => {
                let mut env = kms.env();
                env.push(("SIGNET_ALIBABA_KMS_ENDPOINT", kms.endpoint()));
                (env, "alikms://key-ec?region=cn-hangzhou".into())
            }
            Kms::File(dir) => {
                let key = support::signer::key(dir.path(), "release", Algorithm::EcdsaP256Sha256);
                (Vec::new(), format!("file:{}", key.private.display()))
            }
        }
    }

    fn label(&self) -> &'static str {
        match self {
            Kms::Aws(_) => "aws_kms",
            Kms::Alibaba(_) => "alibaba_kms",
            Kms::File(_) => "none",
        }
    }
}

/// The release `signet` next to this example's folder.
fn signet_binary() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let binary = exe
        .parent()
        .and_then(Path::parent)
        .map(|dir| dir.join("signet"))
        .context("no folder above the example")?;
    if !binary.exists() {
        bail!(
            "{} not found: cargo build --release --bin signet",
            binary.display()
        );
    }
    Ok(binary)
}

/// The signer process, stopped when dropped (also when the run fails).
struct SignerProcess(Child);

impl Drop for SignerProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_signer(
    env: &[(&str, String)],
    dir: &Path,
    policies: &Path,
    port: u16,
) -> anyhow::Result<SignerProcess> {
    let token_file = dir.join("token");
    std::fs::write(&token_file, format!("{TOKEN}\n"))?;
    let mut command = Command::new(signet_binary()?);
    command
        .args(["signer", "--plain-http", "--listen"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("--token-file")
        .arg(&token_file)
        .arg("--policy-dir")
        .arg(policies)
        .args(["--reconcile-interval", "0", "--log", "warn"])
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("ALIBABA_CLOUD_ECS_METADATA_DISABLED", "true")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    for (name, value) in env {
        command.env(name, value);
    }
    let mut child = SignerProcess(command.spawn()?);
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Some(status) = child.0.try_wait()? {
            bail!("the signer exited: {status}");
        }
        if Instant::now() > deadline {
            bail!("the signer did not listen on {port}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(child)
}

/// The signer's CPU time so far (user + system, all its threads, exited ones included).
fn cpu_time(pid: u32, ticks_per_second: f64) -> anyhow::Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which may hold spaces) in parentheses.
    let rest = stat.rsplit_once(')').context("/proc stat format")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the file, 12 and 13 after the name.
    let ticks: f64 = fields[11].parse::<f64>()? + fields[12].parse::<f64>()?;
    Ok(Duration::from_secs_f64(ticks / ticks_per_second))
}

fn clock_ticks() -> anyhow::Result<f64> {
    let out = Command::new("getconf").arg("CLK_TCK").output()?;
    Ok(String::from_utf8(out.stdout)?.trim().parse()?)
}

/// Sum and count of a histogram (`name_sum` / `name_count` with the label filter `labels`).
fn histogram(metrics: &str, name: &str, labels: &str) -> (f64, f64) {
    let value = |suffix: &str| {
        metrics
            .lines()
            .filter(|l| l.starts_with(&format!("{name}_{suffix}")) && l.contains(labels))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>()
    };
    (value("sum"), value("count"))
}

/// The value of a counter (summed over its label sets).
fn counter(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter(|l| l[name.len()..].starts_with([' ', '{']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

async fn scrape(port: u16) -> anyhow::Result<String> {
    Ok(reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await?
        .text()
        .await?)
}

/// The registry's time answering the signer: (requests, total), from its log lines after
/// byte `from`.
fn registry_time(log: &str, from: usize) -> (usize, Duration) {
    let mut requests = 0;
    let mut total = Duration::ZERO;
    for line in log[from.min(log.len())..].lines() {
        if !(line.contains("http.request.useragent=signet/")
            || line.contains("http.request.useragent=\"signet/"))
        {
            continue;
        }
        let Some(duration) = line
            .split_whitespace()
            .find_map(|f| f.strip_prefix("http.response.duration="))
        else {
            continue;
        };
        if let Some(d) = go_duration(duration.trim_matches('"')) {
            requests += 1;
            total += d;
        }
    }
    (requests, total)
}

/// A Go duration as the registry logs it (`512.3µs`, `2.1ms`, `1.2s`).
fn go_duration(text: &str) -> Option<Duration> {
    let (number, scale) = [
        ("ns", 1e-9),
        ("µs", 1e-6),
        ("us", 1e-6),
        ("ms", 1e-3),
        ("s", 1.0),
    ]
    .iter()
    .find_map(|(unit, scale)| text.strip_suffix(unit).map(|n| (n, *scale)))?;
    number
        .parse::<f64>()
        .ok()
        .map(|n| Duration::from_secs_f64(n * scale))
}

/// Waits until both signature formats of `digest` answer in the registry.
async fn wait_signed(
    http: &reqwest::Client,
    host: &str,
    repo: &str,
    digest: &str,
) -> anyhow::Result<()> {
    let hex = digest.trim_start_matches("sha256:");
    let tags = [format!("sha256-{hex}.sig"), format!("sha256-{hex}")];
    let deadline = Instant::now() + Duration::from_secs(60);
    for tag in tags {
        loop {
            let answer = http
                .head(format!("http://{host}/v2/{repo}/manifests/{tag}"))
                .header(
                    "accept",
                    "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json",
                )
                .send()
                .await?;
            if answer.status().is_success() {
                break;
            }
            if Instant::now() > deadline {
                bail!("{repo}@{digest}: {tag} did not appear within 60 s");
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    Ok(())
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1e3)
}

async fn run(args: Args) -> anyhow::Result<()> {
    let ticks = clock_ticks()?;
    let kms = Kms::start(&args.provider)?;
    let (env, reference) = kms.signer_env();
    let dir = tempfile::tempdir()?;
    let port = support::closed_port();
    let registry =
        Registry::start_with_notifications(&format!("http://127.0.0.1:{port}/events"), TOKEN);
    let host = registry.host();
    let policies = policy_dir(
        dir.path(),
        &[kms_rule(
            "kms-load",
            format!("{host}/load/**"),
            reference.clone(),
            Algorithm::EcdsaP256Sha256,
        )],
    );
    let signer = start_signer(&env, dir.path(), &policies, port)?;
    let pid = signer.0.id();
    let http = support::plain_http_client();

    let mut next = 0usize;
    let mut push_one = || {
        next += 1;
        format!("i{next}")
    };
    for _ in 0..args.warmup {
        let tag = push_one();
        let digest = registry.push_test_image("load/app", &tag, &tag).await;
        wait_signed(&http, &host, "load/app", &digest).await?;
    }
    // What the signer spends with nothing to do (timers, the policy folder's polling), so that
    // it can be told from the work per image.
    let idle_start = cpu_time(pid, ticks)?;
    let idle_started = Instant::now();
    tokio::time::sleep(Duration::from_secs(args.idle)).await;
    let idle_rate = cpu_time(pid, ticks)?
        .saturating_sub(idle_start)
        .as_secs_f64()
        / idle_started.elapsed().as_secs_f64();
    let before_metrics = scrape(port).await?;
    let before_cpu = cpu_time(pid, ticks)?;
    let before_log = registry.log().len();
    let started = Instant::now();
    let mut walls = Vec::with_capacity(args.images);
    for _ in 0..args.images {
        let tag = push_one();
        let digest = registry.push_test_image("load/app", &tag, &tag).await;
        let pushed = Instant::now();
        wait_signed(&http, &host, "load/app", &digest).await?;
        walls.push(pushed.elapsed());
    }
    let elapsed = started.elapsed();
    let after_cpu = cpu_time(pid, ticks)?;
    let after_metrics = scrape(port).await?;
    let log = registry.log();
    let (registry_requests, registry_total) = registry_time(&log, before_log);
    if registry_requests == 0 {
        bail!(
            "no request of the signer's in the registry's log; its last lines:\n{}",
            log.lines().rev().take(5).collect::<Vec<_>>().join("\n")
        );
    }
    drop(signer);

    let n = args.images as f64;
    let delta = |name: &str, labels: &str| {
        let (s0, c0) = histogram(&before_metrics, name, labels);
        let (s1, c1) = histogram(&after_metrics, name, labels);
        (s1 - s0, c1 - c0)
    };
    let (kms_sum, kms_calls) = delta(
        "signet_signer_kms_call_duration_seconds",
        &format!("provider=\"{}\"", kms.label()),
    );
    let (latency_sum, latency_count) = delta("signet_signer_signing_latency_seconds", "");
    let per_image = |seconds: f64| Duration::from_secs_f64(seconds / n);
    walls.sort();
    let cpu = after_cpu.saturating_sub(before_cpu);
    println!(
        "provider {} ({}), {} images signed one at a time after {} warm-up, formats CosignSignature + SigstoreBundle, ECDSA P-256, in {:.1} s",
        args.provider,
        match &kms {
            Kms::Aws(_) => "moto 5.2.5",
            Kms::Alibaba(_) => "local endpoint, Alibaba SDK signature check",
            Kms::File(_) => "key file, no KMS: the baseline",
        },
        args.images,
        args.warmup,
        elapsed.as_secs_f64()
    );
    println!(
        "per image: push answered -> both formats readable p50 {} | signer latency (event -> written) {} over {} events",
        ms(walls[walls.len() / 2]),
        ms(Duration::from_secs_f64(
            latency_sum / latency_count.max(1.0)
        )),
        latency_count
    );
    println!(
        "per image: KMS round trip {} ({:.1} calls, {} each) | registry time {} ({:.1} requests) | signer's own CPU {} (CPU time {} over {} images)",
        ms(per_image(kms_sum)),
        kms_calls / n,
        ms(Duration::from_secs_f64(kms_sum / kms_calls.max(1.0))),
        ms(per_image(registry_total.as_secs_f64())),
        registry_requests as f64 / n,
        ms(per_image(cpu.as_secs_f64())),
        ms(cpu),
        args.images
    );
    let idle_share = idle_rate * elapsed.as_secs_f64();
    println!(
        "signer idle: {:.2} ms CPU per second with nothing to sign; net of it, the signer's own CPU per image {}",
        idle_rate * 1e3,
        ms(per_image((cpu.as_secs_f64() - idle_share).max(0.0)))
    );
    let (signing_sum, signatures) = delta("signet_signer_signature_duration_seconds", "");
    let own = (signing_sum - kms_sum).max(0.0);
    println!(
        "signing: {:.1} signatures per image, {} each (KMS round trip {}, the signer's own part {}: thread hops, digest, request signing, local verification)",
        signatures / n,
        ms(Duration::from_secs_f64(signing_sum / signatures.max(1.0))),
        ms(Duration::from_secs_f64(kms_sum / signatures.max(1.0))),
        ms(Duration::from_secs_f64(own / signatures.max(1.0)))
    );
    println!(
        "signing per image: {} (KMS round trip {}, the signer's own part {})",
        ms(per_image(signing_sum)),
        ms(per_image(kms_sum)),
        ms(per_image(own))
    );
    let events = counter(&after_metrics, "signet_signer_events_received_total")
        - counter(&before_metrics, "signet_signer_events_received_total");
    println!(
        "notifications received per image: {:.1} (the image's push and the signer's own pushes; the registry sends no pull events: `ignore: actions: [pull]`)",
        events / n
    );
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let args = args()?;
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(args))
}
