//! Soak and fault run (issue "close the holes", not part of CI): the real `signet webhook` and
//! `signet signer` processes and Debian's `docker-registry`, for `--seconds` (default 600) under a
//! steady mix of cached and cold admissions, while the registry is restarted, paused (SIGSTOP),
//! made slow and made to answer 500s, and the signer receives pushes and is killed (SIGKILL) and
//! restarted twice.
//!
//! ```text
//! cargo build --release && cargo run --release --example soak -- [--seconds 600] [--workers 8]
//! ```
//!
//! The webhook reaches the registry through a fault proxy (`tests/support`), so its policy uses
//! `signatureType: Simple` (the signatures name the registry's own address). Images under
//! `soak/` are signed by the signer's rule; images under `unsigned/` are governed by the same
//! policy and never signed: any of them allowed counts as wrongly allowed.
//!
//! Reports: admissions answered, answered within the deadline, denied with a registry cause,
//! wrongly allowed; the webhook's and the signer's resident memory and open descriptors at the
//! start, middle and end; and, after the run and one reconcile, images pushed vs images signed
//! (and any signed more than once).
// A load generator, not library code: a failed setup step ends the run with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use signet::crypto::Algorithm;
use support::signer::{TOKEN, TestKey, key};
use support::webhook::{TestCa, attestor_yaml, pod_review};
use support::{CorruptingProxy, Fault, FaultSwitch, ProxyOptions, Registry, closed_port};

/// The webhook's `--deadline`, and the margin allowed for the answer to travel back.
const DEADLINE: Duration = Duration::from_secs(3);
const SLACK: Duration = Duration::from_millis(500);
/// Images signed before the run (cold admissions cycle through them), and never signed.
const SIGNED_IMAGES: usize = 40;
const UNSIGNED_IMAGES: usize = 10;
/// The signer's reconcile interval: how soon pushes it missed while down are signed.
const RECONCILE: &str = "20s";

struct Options {
    seconds: u64,
    workers: usize,
}

fn options() -> Options {
    let mut options = Options {
        seconds: 600,
        workers: 8,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    for pair in args.chunks(2) {
        let value = pair.get(1).and_then(|v| v.parse().ok());
        match (pair[0].as_str(), value) {
            ("--seconds", Some(v)) => options.seconds = v,
            ("--workers", Some(v)) => options.workers = v as usize,
            _ => panic!("usage: soak [--seconds N] [--workers N]"),
        }
    }
    options
}

/// The release `signet` next to this example's directory (`target/release/examples/soak`).
fn signet_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("own path");
    let binary = exe
        .parent()
        .and_then(Path::parent)
        .expect("target directory")
        .join("signet");
    assert!(
        binary.exists(),
        "{} not found: run `cargo build --release` first",
        binary.display()
    );
    binary
}

/// A `signet` child process with its log file.
struct Signet {
    args: Vec<String>,
    log: PathBuf,
    child: Child,
}

impl Signet {
    fn spawn(args: Vec<String>, log: PathBuf) -> Self {
        let child = Self::launch(&args, &log);
        Signet { args, log, child }
    }

    fn launch(args: &[String], log: &Path) -> Child {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("log file");
        Command::new(signet_binary())
            .args(args)
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("log handle"))
            .stderr(file)
            .spawn()
            .expect("start signet")
    }

    fn kill_and_restart(&mut self, down_for: Duration) {
        let _ = self.child.kill(); // SIGKILL
        let _ = self.child.wait();
        std::thread::sleep(down_for);
        self.child = Self::launch(&self.args, &self.log);
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Signet {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Resident memory (KiB) and open descriptors of a process.
fn footprint(pid: u32) -> (u64, usize) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, Iterator::count);
    (rss, fds)
}

fn signal(pid: u32, name: &str) {
    let status = Command::new("kill")
        .args([&format!("-{name}"), &pid.to_string()])
        .status()
        .expect("kill(1)");
    assert!(status.success(), "kill -{name} {pid} failed");
}

/// Counts of what the load saw.
#[derive(Default)]
struct Tally {
    sent: AtomicU64,
    answered: AtomicU64,
    within_deadline: AtomicU64,
    allowed: AtomicU64,
    denied_registry: AtomicU64,
    denied_other: AtomicU64,
    wrongly_allowed: AtomicU64,
    max_latency_ms: AtomicU64,
    samples: Mutex<Vec<String>>,
}

impl Tally {
    fn sample(&self, line: String) {
        let mut samples = self.samples.lock().expect("samples");
        if samples.len() < 8 {
            samples.push(line);
        }
    }
}

/// A small deterministic generator (no `rand` dependency for one example).
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((self.0 >> 33) % n as u64) as usize
    }
}

struct Load {
    client: reqwest::Client,
    url: String,
    proxy_host: String,
    signed: Vec<String>,
    unsigned: Vec<String>,
    tally: Tally,
    stop: AtomicBool,
}

async fn admit(load: &Load, rng: &mut Lcg) {
    let roll = rng.below(100);
    let (repo, signed) = if roll < 80 {
        (&load.signed[rng.below(5)], true)
    } else if roll < 95 {
        (&load.signed[rng.below(load.signed.len())], true)
    } else {
        (&load.unsigned[rng.below(load.unsigned.len())], false)
    };
    let image = format!("{}/{repo}", load.proxy_host);
    let body = pod_review(&image);
    load.tally.sent.fetch_add(1, Ordering::Relaxed);
    let started = Instant::now();
    let answer = load
        .client
        .post(&load.url)
        .header("Content-Type", "application/json")
        .body(body)
        .send()
        .await;
    let response: Value = match answer {
        Ok(r) => match r.json::<Value>().await {
            Ok(v) => v["response"].clone(),
            Err(e) => return load.tally.sample(format!("unreadable answer: {e}")),
        },
        Err(e) => return load.tally.sample(format!("no answer: {e}")),
    };
    let took = started.elapsed();
    let tally = &load.tally;
    tally.answered.fetch_add(1, Ordering::Relaxed);
    tally
        .max_latency_ms
        .fetch_max(took.as_millis() as u64, Ordering::Relaxed);
    if took <= DEADLINE + SLACK {
        tally.within_deadline.fetch_add(1, Ordering::Relaxed);
    }
    let message = response["status"]["message"].as_str().unwrap_or_default();
    if response["allowed"] == true {
        tally.allowed.fetch_add(1, Ordering::Relaxed);
        if !signed {
            tally.wrongly_allowed.fetch_add(1, Ordering::Relaxed);
            tally.sample(format!("WRONGLY ALLOWED {image}"));
        }
    } else if message.contains("registry ") || message.contains("deadline") {
        tally.denied_registry.fetch_add(1, Ordering::Relaxed);
    } else if signed {
        tally.denied_other.fetch_add(1, Ordering::Relaxed);
        tally.sample(format!("signed image denied: {message}"));
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let options = options();
    let total = Duration::from_secs(options.seconds);
    let dir = tempfile::tempdir().expect("temporary directory");
    let release: TestKey = key(dir.path(), "release", Algorithm::EcdsaP256Sha256);

    // The registry notifies the signer; the webhook reads it through the fault proxy.
    let signer_port = closed_port();
    let registry = Registry::start_with_notifications(
        &format!("http://127.0.0.1:{signer_port}/events"),
        TOKEN,
    );
    let registry_host = registry.host();
    let faults = FaultSwitch::default();
    let proxy = CorruptingProxy::start_with(
        &registry_host,
        ProxyOptions {
            faults: faults.clone(),
            ..ProxyOptions::passthrough()
        },
    );
    let proxy_host = proxy.host();

    let signer_dir = dir.path().join("signer-policies");
    std::fs::create_dir(&signer_dir).expect("signer policy folder");
    std::fs::write(
        signer_dir.join("rule.yaml"),
        format!(
            "apiVersion: signet.dev/v1alpha1\nkind: SigningRule\nmetadata:\n  name: release\n\
             spec:\n  scope: [\"{registry_host}/soak/**\"]\n  key: {{ref: \"file:{}\"}}\n  \
             algorithm: ECDSA_P256_SHA_256\n  signatureType: Default\n",
            release.private.display()
        ),
    )
    .expect("signing rule");
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, TOKEN).expect("token file");
    let mut signer = Signet::spawn(
        [
            "signer",
            "--listen",
            &format!("127.0.0.1:{signer_port}"),
            "--plain-http",
            "--token-file",
            &token_file.display().to_string(),
            "--policy-dir",
            &signer_dir.display().to_string(),
            "--reconcile-interval",
            RECONCILE,
        ]
        .map(String::from)
        .to_vec(),
        dir.path().join("signer.log"),
    );

    let webhook_dir = dir.path().join("webhook-policies");
    std::fs::create_dir(&webhook_dir).expect("webhook policy folder");
    let public_key = std::fs::read_to_string(&release.public).expect("public key");
    std::fs::write(
        webhook_dir.join("policies.yaml"),
        format!(
            "{}---\napiVersion: signet.dev/v1alpha1\nkind: ClusterVerificationPolicy\n\
             metadata:\n  name: soak\nspec:\n  images: [\"{proxy_host}/soak/**\", \
             \"{proxy_host}/unsigned/**\"]\n  attestors: [release]\n  signatureType: Simple\n",
            attestor_yaml("release", &public_key)
        ),
    )
    .expect("policies");
    let ca = TestCa::new("soak");
    let (cert, tls_key) = ca.write(dir.path());
    let webhook_addr = format!("127.0.0.1:{}", closed_port());
    let webhook = Signet::spawn(
        [
            "webhook",
            "--tls-cert",
            &cert.display().to_string(),
            "--tls-key",
            &tls_key.display().to_string(),
            "--listen",
            &webhook_addr,
            "--policy-dir",
            &webhook_dir.display().to_string(),
            "--deadline",
            "3s",
            "--signing-grace",
            "0s",
        ]
        .map(String::from)
        .to_vec(),
        dir.path().join("webhook.log"),
    );
    let client = ca.client();
    let base = format!(
        "https://localhost:{}",
        webhook_addr.rsplit(':').next().unwrap_or("")
    );
    let started_at = Instant::now();
    while !client
        .get(format!("{base}/readyz"))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
    {
        assert!(
            started_at.elapsed() < Duration::from_secs(30),
            "webhook did not become ready"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Images: signed by the signer on push, and never signed.
    let mut pushed: Vec<(String, String)> = Vec::new();
    let mut signed = Vec::new();
    for i in 0..SIGNED_IMAGES {
        let repo = format!("soak/app-{i}");
        let digest = registry
            .push_test_image(&repo, "v1", &format!("soak-{i}"))
            .await;
        pushed.push((format!("{repo}:v1"), digest));
        signed.push(format!("{repo}:v1"));
    }
    let mut unsigned = Vec::new();
    for i in 0..UNSIGNED_IMAGES {
        let repo = format!("unsigned/app-{i}");
        registry
            .push_test_image(&repo, "v1", &format!("unsigned-{i}"))
            .await;
        unsigned.push(format!("{repo}:v1"));
    }
    support::signer::wait_for_signatures(&registry, &pushed, 1, Duration::from_secs(120)).await;
    println!(
        "setup: {SIGNED_IMAGES} signed and {UNSIGNED_IMAGES} unsigned images; running {} s with {} workers",
        options.seconds, options.workers
    );

    let load = Arc::new(Load {
        client: client.clone(),
        url: format!("{base}/validate"),
        proxy_host: proxy_host.clone(),
        signed,
        unsigned,
        tally: Tally::default(),
        stop: AtomicBool::new(false),
    });
    let mut workers = Vec::new();
    for w in 0..options.workers {
        let load = Arc::clone(&load);
        workers.push(tokio::spawn(async move {
            let mut rng = Lcg(w as u64 + 1);
            while !load.stop.load(Ordering::Relaxed) {
                admit(&load, &mut rng).await;
            }
        }));
    }

    // Pushes during the run: one every 2 s, retried while the registry is down.
    let pushes = Arc::new(Mutex::new(Vec::<(String, String)>::new()));
    let pusher = {
        let pushes = Arc::clone(&pushes);
        let load = Arc::clone(&load);
        let host = registry_host.clone();
        tokio::spawn(async move {
            let mut n = 0;
            while !load.stop.load(Ordering::Relaxed) {
                let repo = format!("soak/new-{n}");
                let seed = format!("new-{n}");
                let (h, r, s) = (host.clone(), repo.clone(), seed.clone());
                // push_test_image panics on failure: run it as a task and retry on failure.
                match tokio::spawn(async move { support::push_test_image(&h, &r, "v1", &s).await })
                    .await
                {
                    Ok(digest) => {
                        pushes
                            .lock()
                            .expect("pushes")
                            .push((format!("{repo}:v1"), digest));
                        n += 1;
                    }
                    Err(_) => tokio::time::sleep(Duration::from_secs(1)).await,
                }
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        })
    };

    // The fault timeline, as fractions of the run.
    let registry = Arc::new(Mutex::new(registry));
    let at = |fraction: f64| started_at_plus(total, fraction);
    let run_start = Instant::now();
    let mut footprints = Vec::new();
    let mut record = |label: &str, webhook: &Signet, signer: &Signet| {
        let (w_rss, w_fds) = footprint(webhook.pid());
        let (s_rss, s_fds) = footprint(signer.pid());
        footprints.push(format!(
            "{label:>6}: webhook RSS {w_rss} KiB, {w_fds} fds; signer RSS {s_rss} KiB, {s_fds} fds"
        ));
    };
    let say = |what: &str| println!("{:>6.1} s  {what}", run_start.elapsed().as_secs_f64());

    sleep_until(run_start + at(0.05)).await;
    record("start", &webhook, &signer);
    sleep_until(run_start + at(0.10)).await;
    say("registry restarts");
    restart_registry(&registry).await;
    sleep_until(run_start + at(0.20)).await;
    say("signer killed (SIGKILL), restarted 5 s later");
    signer.kill_and_restart(Duration::from_secs(5));
    sleep_until(run_start + at(0.30)).await;
    let pid = registry
        .lock()
        .expect("registry")
        .pid()
        .expect("registry runs");
    say("registry paused (SIGSTOP) for 15 s");
    signal(pid, "STOP");
    tokio::time::sleep(Duration::from_secs(15)).await;
    signal(pid, "CONT");
    say("registry resumed (SIGCONT)");
    sleep_until(run_start + at(0.45)).await;
    say("registry slow (every answer held 2 s) for 30 s");
    faults.set(Fault::Slow(Duration::from_secs(2)));
    tokio::time::sleep(Duration::from_secs(30)).await;
    faults.set(Fault::None);
    sleep_until(run_start + at(0.50)).await;
    record("middle", &webhook, &signer);
    sleep_until(run_start + at(0.60)).await;
    say("registry answering 500 for 30 s");
    faults.set(Fault::InternalError);
    tokio::time::sleep(Duration::from_secs(30)).await;
    faults.set(Fault::None);
    sleep_until(run_start + at(0.70)).await;
    say("signer killed (SIGKILL), restarted 5 s later");
    signer.kill_and_restart(Duration::from_secs(5));
    sleep_until(run_start + at(0.80)).await;
    say("registry restarts");
    restart_registry(&registry).await;
    sleep_until(run_start + total).await;
    record("end", &webhook, &signer);
    load.stop.store(true, Ordering::Relaxed);
    for worker in workers {
        let _ = worker.await;
    }
    let _ = pusher.await;

    // After the run: every pushed image signed once, after at most one reconcile.
    let pushed_during: Vec<(String, String)> = pushes.lock().expect("pushes").clone();
    let all: Vec<(String, String)> = pushed.into_iter().chain(pushed_during).collect();
    // Every task using the registry has ended: take it back from the shared lock.
    let registry = Arc::try_unwrap(registry)
        .ok()
        .expect("the registry is no longer shared")
        .into_inner()
        .expect("registry lock");
    let reconcile_wait = Instant::now() + Duration::from_secs(90);
    let (signed_once, signed_more) = loop {
        let (mut once, mut more) = (0, 0);
        for (repo_tag, digest) in &all {
            match support::signer::signature_count(&registry, repo_tag, digest).await {
                1 => once += 1,
                0 => {}
                _ => more += 1,
            }
        }
        if once + more == all.len() || Instant::now() > reconcile_wait {
            break (once, more);
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    };

    let t = &load.tally;
    let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
    println!(
        "\nsoak report ({} s, {} workers)",
        options.seconds, options.workers
    );
    println!("admissions sent:             {}", get(&t.sent));
    println!("answered:                    {}", get(&t.answered));
    println!(
        "answered within deadline:    {} (deadline {} s + {} ms)",
        get(&t.within_deadline),
        DEADLINE.as_secs(),
        SLACK.as_millis()
    );
    println!("allowed:                     {}", get(&t.allowed));
    println!("denied with a registry cause:{}", get(&t.denied_registry));
    println!("signed image denied, other:  {}", get(&t.denied_other));
    println!("wrongly allowed:             {}", get(&t.wrongly_allowed));
    println!("slowest answer:              {} ms", get(&t.max_latency_ms));
    for line in &footprints {
        println!("{line}");
    }
    println!(
        "images pushed {}, signed once {signed_once}, signed more than once {signed_more}",
        all.len()
    );
    for sample in t.samples.lock().expect("samples").iter() {
        println!("sample: {sample}");
    }
}

fn started_at_plus(total: Duration, fraction: f64) -> Duration {
    total.mul_f64(fraction)
}

async fn sleep_until(when: Instant) {
    tokio::time::sleep_until(when.into()).await;
}

async fn restart_registry(registry: &Arc<Mutex<Registry>>) {
    let registry = Arc::clone(registry);
    tokio::task::spawn_blocking(move || registry.lock().expect("registry").restart())
        .await
        .expect("registry restart");
}
