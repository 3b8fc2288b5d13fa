//! Load generator for `signet webhook`: starts Debian's `docker-registry` on a loopback port,
//! pushes and signs images, starts the webhook in-process over TLS, and drives `/validate` with
//! AdmissionReview bodies.
//!
//! ```text
//! cargo run --release --example loadgen -- [--rate 5000] [--seconds 10] [--images 3]
//! ```
//!
//! Reports, each as p50 / p99 / max latency and throughput:
//! - cached: a fixed request rate (open loop: latency counts from the scheduled send time, so a
//!   stalled server cannot hide its queue) with `--images`-image pods whose verdicts are cached;
//! - cold: pods of 1 and of 10 never-seen images, one at a time, with the registry requests
//!   each needed (counted from the registry's access log);
//! - coalescing: 100 concurrent identical cold admissions and the registry requests they cost;
//! - memory: resident set size after 100,000 verdicts are cached.
//!
//! The webhook runs as a separate process (this program re-run with `--serve`), so that its
//! resident memory and CPU time are its own: the report gives the server's CPU time per request
//! (from `/proc/<pid>/stat`) next to the latencies the generator saw, and the registry's own
//! time per request (from its access log), since all three share the machine's cores.
// A load generator, not library code: a failed setup step ends the run with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use signet::crypto::{Algorithm, FileKey, SigningKey, generate_key_pair};
use signet::policy::NoMatch;
use signet::reference::ImageRef;
use signet::registry::SignatureStore;
use signet::signature::SignatureType;

use std::io::{BufRead as _, BufReader, Write as _};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use support::webhook::{TestCa, TestWebhook, policy_state, registry_client, settings};

/// Requests in flight at once in the cached run (and so, keep-alive connections).
const CONNECTIONS: usize = 32;

struct Options {
    rate: u64,
    seconds: u64,
    images: usize,
}

fn options() -> Options {
    let mut options = Options {
        rate: 5000,
        seconds: 10,
        images: 3,
    };
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--serve")
        .collect();
    for pair in args.chunks(2) {
        let value = pair.get(1).map(String::as_str).unwrap_or_default();
        match pair[0].as_str() {
            "--rate" => options.rate = value.parse().expect("--rate N"),
            "--seconds" => options.seconds = value.parse().expect("--seconds N"),
            "--images" => options.images = value.parse().expect("--images N"),
            other => panic!("unknown flag {other}; flags: --rate N --seconds N --images N"),
        }
    }
    options
}

/// A Pod CREATE review with one container per image.
fn pod_review(uid: usize, namespace: &str, images: &[String]) -> Vec<u8> {
    let containers: Vec<_> = images
        .iter()
        .enumerate()
        .map(|(i, image)| json!({"name": format!("c{i}"), "image": image}))
        .collect();
    serde_json::to_vec(&json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": format!("load-{uid}"),
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": namespace,
            "operation": "CREATE",
            "userInfo": {"username": "loadgen"},
            "object": {
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": format!("pod-{uid}"), "namespace": namespace},
                "spec": {"containers": containers}
            },
            "dryRun": false
        }
    }))
    .expect("review JSON")
}

struct Stats {
    latencies: Vec<Duration>,
    wall: Duration,
}

impl Stats {
    fn percentile(&self, p: f64) -> Duration {
        let mut sorted = self.latencies.clone();
        sorted.sort();
        if sorted.is_empty() {
            return Duration::ZERO;
        }
        let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
        sorted[index]
    }

    fn report(&self, label: &str) {
        let max = self.latencies.iter().max().copied().unwrap_or_default();
        println!(
            "{label}: {} requests, p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms, throughput {:.0} req/s",
            self.latencies.len(),
            ms(self.percentile(0.5)),
            ms(self.percentile(0.99)),
            ms(max),
            self.latencies.len() as f64 / self.wall.as_secs_f64()
        );
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The webhook process as the generator sees it: its address, a client trusting its CA, and its
/// stdin/stdout for control (`count` -> cached verdicts; EOF -> exit).
struct Target {
    client: reqwest::Client,
    base: String,
    child: std::sync::Mutex<(Child, ChildStdin, BufReader<ChildStdout>)>,
    pid: u32,
}

impl Target {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn ask(&self, command: &str) -> String {
        let mut child = self.child.lock().unwrap();
        let (_, stdin, stdout) = &mut *child;
        writeln!(stdin, "{command}").expect("webhook process stdin");
        stdin.flush().expect("webhook process stdin");
        let mut line = String::new();
        stdout.read_line(&mut line).expect("webhook process stdout");
        line.trim().to_string()
    }

    /// The webhook process's CPU time (user + system), in seconds.
    fn cpu_seconds(&self) -> f64 {
        cpu_seconds_of(self.pid)
    }

    async fn metrics(&self) -> String {
        let response = self.client.get(self.url("/metrics")).send().await;
        match response {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        }
    }

    fn resident_mib(&self) -> f64 {
        resident_mib_of(&format!("/proc/{}/status", self.pid))
    }
}

/// Fields of `/proc/<pid>/stat` after the command name (which is in parentheses and may hold
/// spaces): index 0 is the state, 1 the parent pid, 11 and 12 utime and stime.
fn stat_fields(pid: u32) -> Vec<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    rest.split_whitespace().map(str::to_string).collect()
}

/// A process's CPU time (user + system), in seconds (clock ticks of 1/100 s).
fn cpu_seconds_of(pid: u32) -> f64 {
    let fields = stat_fields(pid);
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

/// The pid of the docker-registry this program started.
fn registry_pid() -> Option<u32> {
    let me = std::process::id().to_string();
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .find_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
            let parent = stat_fields(pid).get(1).cloned()?;
            (comm.trim() == "docker-registry" && parent == me).then_some(pid)
        })
}

/// Starts this program with `--serve` as the webhook process for `host`'s images.
fn start_webhook_process(host: &str, public_key_pem: &str) -> Target {
    let mut child = Command::new(std::env::current_exe().expect("own path"))
        .arg("--serve")
        .env("LOADGEN_REGISTRY_HOST", host)
        .env("LOADGEN_PUBLIC_KEY", public_key_pem)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the webhook process");
    let stdin = child.stdin.take().expect("stdin");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    // First line: the port; then the CA PEM up to an empty line.
    let mut port = String::new();
    stdout.read_line(&mut port).expect("port line");
    let mut ca_pem = String::new();
    loop {
        let mut line = String::new();
        stdout.read_line(&mut line).expect("CA line");
        if line.trim().is_empty() {
            break;
        }
        ca_pem.push_str(&line);
    }
    let ca = TestCa {
        ca_pem,
        cert_pem: String::new(),
        key_pem: String::new(),
    };
    let pid = child.id();
    Target {
        client: ca.client(),
        base: format!("https://127.0.0.1:{}", port.trim()),
        child: std::sync::Mutex::new((child, stdin, stdout)),
        pid,
    }
}

/// `--serve`: the webhook alone in this process, controlled over stdin/stdout.
async fn serve() {
    let host = std::env::var("LOADGEN_REGISTRY_HOST").expect("LOADGEN_REGISTRY_HOST");
    let key = std::env::var("LOADGEN_PUBLIC_KEY").expect("LOADGEN_PUBLIC_KEY");
    let state = policy_state(&host, &key, NoMatch::Allow);
    let webhook = TestWebhook::start(state, settings(Duration::from_secs(8)), None).await;
    println!(
        "{}\n{}\n",
        webhook.server.local_addr().port(),
        webhook.ca.ca_pem.trim()
    );
    let admission = Arc::clone(webhook.server.admission());
    let runtime = tokio::runtime::Handle::current();
    let control = tokio::task::spawn_blocking(move || {
        for line in std::io::stdin().lines() {
            let Ok(line) = line else { return };
            if line.trim() == "count" {
                println!("{}", runtime.block_on(admission.cached_verdicts()));
            } else {
                println!("unknown command");
            }
        }
    });
    let _ = control.await;
    drop(webhook);
}

async fn send(webhook: &Target, body: Vec<u8>) -> bool {
    let response = webhook
        .client
        .post(webhook.url("/validate"))
        .header("Content-Type", "application/json")
        .body(body)
        .send()
        .await;
    match response {
        Ok(r) => r.status().is_success() && r.bytes().await.is_ok(),
        Err(_) => false,
    }
}

/// Registry requests served so far, from docker-registry's access log.
fn registry_requests(registry: &support::Registry) -> usize {
    registry
        .log()
        .lines()
        .filter(|l| l.contains("response completed"))
        .count()
}

/// The `/validate` decision-time histogram: (upper bound in seconds, cumulative count).
fn decision_buckets(metrics: &str) -> Vec<(f64, f64)> {
    let prefix = "signet_webhook_admission_duration_seconds_bucket{";
    metrics
        .lines()
        .filter(|l| l.starts_with(prefix) && l.contains("endpoint=\"validate\""))
        .filter_map(|l| {
            let le = l.split("le=\"").nth(1)?.split('"').next()?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            let count = l.rsplit(' ').next()?.parse().ok()?;
            Some((le, count))
        })
        .collect()
}

/// Registry-side time (sum of `http.response.duration`) over the log lines from `from` on.
fn registry_busy(registry: &support::Registry, from: usize) -> (usize, Duration) {
    let log = registry.log();
    let mut count = 0;
    let mut total = Duration::ZERO;
    for line in log
        .lines()
        .filter(|l| l.contains("response completed"))
        .skip(from)
    {
        count += 1;
        let Some(value) = line
            .split_whitespace()
            .find_map(|f| f.strip_prefix("http.response.duration="))
        else {
            continue;
        };
        let value = value.trim_matches('"');
        let (number, scale) = if let Some(n) = value.strip_suffix("µs") {
            (n, 1e-6)
        } else if let Some(n) = value.strip_suffix("ms") {
            (n, 1e-3)
        } else if let Some(n) = value.strip_suffix('s') {
            (n, 1.0)
        } else {
            (value, 1e-9)
        };
        if let Ok(n) = number.parse::<f64>() {
            total += Duration::from_secs_f64(n * scale);
        }
    }
    (count, total)
}

fn resident_mib_of(status_path: &str) -> f64 {
    std::fs::read_to_string(status_path)
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

#[tokio::main]
async fn main() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    if std::env::args().any(|a| a == "--serve") {
        serve().await;
        return;
    }
    let options = options();
    let registry = support::Registry::start();
    let host = registry.host();
    let key = generate_key_pair(Algorithm::EcdsaP256Sha256, None).expect("key pair");
    let signer: Arc<dyn SigningKey> = Arc::new(
        FileKey::from_pem(
            key.private_key_pem(),
            Algorithm::EcdsaP256Sha256,
            support::webhook::KEY_ID,
        )
        .expect("signing key"),
    );
    let store = SignatureStore::new(registry_client());

    // Images: the cached set, 20 one-image pods, 20 ten-image pods, one 3-image set for the
    // coalescing run: 3 + 20 + 200 + 3 distinct images, each signed.
    let total = options.images + 20 + 200 + 3;
    println!("pushing and signing {total} images to {host} ...");
    let mut images = Vec::with_capacity(total);
    for i in 0..total {
        let repo = format!("prod/load-{i}");
        registry
            .push_test_image(&repo, "v1", &format!("load-{i}"))
            .await;
        let image = format!("{host}/{repo}:v1");
        let reference = ImageRef::parse(&image).expect("reference");
        signet::registry::sign_image(
            &store,
            &reference,
            Arc::clone(&signer),
            SignatureType::Default,
            &BTreeMap::new(),
        )
        .await
        .expect("sign");
        images.push(image);
    }
    let (cached_set, rest) = images.split_at(options.images);
    let (one_image, rest) = rest.split_at(20);
    let (ten_image, coalesce_set) = rest.split_at(200);

    let webhook = Arc::new(start_webhook_process(&host, &key.public_key_pem()));
    println!(
        "webhook (process {}) on {}; resident {:.1} MiB at start",
        webhook.pid,
        webhook.url("/validate"),
        webhook.resident_mib()
    );

    let registry_pid = registry_pid();
    // Cold: one pod at a time, every image new.
    for (label, groups) in [
        ("cold 1-image pods", one_image.chunks(1).collect::<Vec<_>>()),
        (
            "cold 10-image pods",
            ten_image.chunks(10).collect::<Vec<_>>(),
        ),
    ] {
        let before = registry_requests(&registry);
        let cpu_before = webhook.cpu_seconds();
        let registry_cpu_before = registry_pid.map_or(0.0, cpu_seconds_of);
        let started = Instant::now();
        let mut latencies = Vec::new();
        for (i, group) in groups.iter().enumerate() {
            let t = Instant::now();
            assert!(
                send(&webhook, pod_review(i, "cold", group)).await,
                "cold request failed"
            );
            latencies.push(t.elapsed());
        }
        let stats = Stats {
            latencies,
            wall: started.elapsed(),
        };
        stats.report(label);
        let distinct: usize = groups.iter().map(|g| g.len()).sum();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let requests = registry_requests(&registry) - before;
        let (_, busy) = registry_busy(&registry, before);
        println!(
            "  registry requests: {requests} for {distinct} distinct images ({:.1} per image); \
             registry time {:.3} ms per request",
            requests as f64 / distinct as f64,
            ms(busy) / requests.max(1) as f64,
        );
        println!(
            "  CPU per pod: webhook {:.2} ms, registry {:.2} ms",
            1000.0 * (webhook.cpu_seconds() - cpu_before) / groups.len() as f64,
            1000.0 * (registry_pid.map_or(0.0, cpu_seconds_of) - registry_cpu_before)
                / groups.len() as f64
        );
    }

    // Coalescing: 100 identical cold admissions at once.
    let before = registry_requests(&registry);
    let body = pod_review(0, "coalesce", coalesce_set);
    let started = Instant::now();
    let results = futures::future::join_all((0..100).map(|_| {
        let webhook = Arc::clone(&webhook);
        let body = body.clone();
        async move { send(&webhook, body).await }
    }))
    .await;
    assert!(results.iter().all(|ok| *ok), "coalesced requests failed");
    println!(
        "100 concurrent identical cold admissions ({} images): {:.1} ms",
        coalesce_set.len(),
        ms(started.elapsed())
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    println!(
        "  registry requests: {}",
        registry_requests(&registry) - before
    );

    // Cached: fixed rate, open loop.
    let warm = futures::future::join_all((0..CONNECTIONS).map(|i| {
        let webhook = Arc::clone(&webhook);
        let body = pod_review(i, "cached", cached_set);
        async move { send(&webhook, body).await }
    }))
    .await;
    assert!(warm.iter().all(|ok| *ok), "warm-up failed");
    let count = options.rate * options.seconds;
    let buckets_before = decision_buckets(&webhook.metrics().await);
    let cpu_before = webhook.cpu_seconds();
    let interval = Duration::from_secs_f64(1.0 / options.rate as f64);
    // In-flight requests are capped so that the client keeps a fixed set of keep-alive
    // connections (as the API server does) instead of opening one per queued request; latency
    // still counts from the scheduled send time, so waiting for a slot is measured.
    let slots = Arc::new(tokio::sync::Semaphore::new(CONNECTIONS));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let started = tokio::time::Instant::now();
    for i in 0..count {
        let at = started + interval.mul_f64(i as f64);
        tokio::time::sleep_until(at).await;
        let webhook = Arc::clone(&webhook);
        let body = pod_review(i as usize, "cached", cached_set);
        let tx = tx.clone();
        let slots = Arc::clone(&slots);
        tokio::spawn(async move {
            let Ok(_slot) = slots.acquire().await else {
                return;
            };
            let ok = send(&webhook, body).await;
            let _ = tx.send((ok, at.elapsed()));
        });
    }
    drop(tx);
    let mut latencies = Vec::with_capacity(count as usize);
    let mut failures = 0;
    while let Some((ok, latency)) = rx.recv().await {
        if !ok {
            failures += 1;
        }
        latencies.push(latency);
    }
    let stats = Stats {
        latencies,
        wall: started.elapsed(),
    };
    stats.report(&format!(
        "cached {}-image pods at {} req/s",
        options.images, options.rate
    ));
    if failures > 0 {
        println!("  {failures} requests failed");
    }
    let cpu = webhook.cpu_seconds() - cpu_before;
    println!(
        "  webhook process CPU: {:.1} s for {count} requests = {:.1} µs per request \
         ({:.0}% of one core)",
        cpu,
        1e6 * cpu / count as f64,
        100.0 * cpu / stats.wall.as_secs_f64()
    );
    let metrics = webhook.metrics().await;
    let buckets_after = decision_buckets(&metrics);
    let in_run: Vec<(f64, f64)> = buckets_after
        .iter()
        .map(|(le, n)| {
            let before = buckets_before
                .iter()
                .find(|(b, _)| b == le)
                .map_or(0.0, |(_, n)| *n);
            (*le, n - before)
        })
        .collect();
    let total = in_run.last().map_or(0.0, |(_, n)| *n);
    let bound = |p: f64| {
        in_run
            .iter()
            .find(|(_, n)| *n >= p * total)
            .map_or(f64::INFINITY, |(le, _)| *le)
    };
    println!(
        "  server-side decision time (AdmissionReview parse + decision, histogram buckets): \
         p50 <= {:.2} ms, p99 <= {:.2} ms",
        1000.0 * bound(0.5),
        1000.0 * bound(0.99)
    );
    let server_side = |suffix: &str| {
        support::webhook::metric(
            &metrics,
            &format!("signet_webhook_admission_duration_seconds_{suffix}{{endpoint=\"validate\"}}"),
        )
    };
    println!(
        "  server-side mean decision time (all phases): {:.3} ms",
        1000.0 * server_side("sum") / server_side("count").max(1.0)
    );

    // Memory: 100,000 cached verdicts (distinct namespaces x the cached images).
    let namespaces = 100_000usize.div_ceil(cached_set.len().max(1));
    let before = webhook.resident_mib();
    let pending = futures::stream::iter((0..namespaces).map(|n| {
        let webhook = Arc::clone(&webhook);
        let body = pod_review(n, &format!("ns-{n}"), cached_set);
        async move { send(&webhook, body).await }
    }));
    use futures::StreamExt as _;
    let filled: Vec<bool> = pending.buffer_unordered(64).collect().await;
    assert!(filled.iter().all(|ok| *ok), "memory fill failed");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let verdicts = webhook.ask("count");
    println!(
        "memory: {verdicts} cached verdicts, webhook process resident {:.1} MiB \
         (was {:.1} MiB before filling); this generator: {:.1} MiB",
        webhook.resident_mib(),
        before,
        resident_mib_of("/proc/self/status")
    );
}
