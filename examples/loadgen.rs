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
#![allow(clippy::expect_used, clippy::unwrap_used)]

#[path = "../tests/support/mod.rs"]
mod support;
#[path = "../tests/webhook_harness/mod.rs"]
mod webhook_harness;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use signet::crypto::{Algorithm, FileKey, generate_key_pair};
use signet::policy::NoMatch;
use signet::reference::ImageRef;
use signet::registry::SignatureStore;
use signet::signature::SignatureType;

use webhook_harness::{TestWebhook, policy_state, registry_client, settings};

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
    let args: Vec<String> = std::env::args().skip(1).collect();
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

async fn send(webhook: &TestWebhook, body: Vec<u8>) -> bool {
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

fn resident_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
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
    let options = options();
    let registry = support::Registry::start();
    let host = registry.host();
    let key = generate_key_pair(Algorithm::EcdsaP256Sha256, None).expect("key pair");
    let signer = FileKey::from_pem(
        key.private_key_pem(),
        Algorithm::EcdsaP256Sha256,
        webhook_harness::KEY_ID,
    )
    .expect("signing key");
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
        signet::image_signing::sign_image(
            &store,
            &reference,
            &signer,
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

    let state = policy_state(&host, &key.public_key_pem(), NoMatch::Allow);
    let webhook = Arc::new(TestWebhook::start(state, settings(Duration::from_secs(8)), None).await);
    println!("webhook on {}", webhook.url("/validate"));

    // Cold: one pod at a time, every image new.
    for (label, groups) in [
        ("cold 1-image pods", one_image.chunks(1).collect::<Vec<_>>()),
        (
            "cold 10-image pods",
            ten_image.chunks(10).collect::<Vec<_>>(),
        ),
    ] {
        let before = registry_requests(&registry);
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
        println!(
            "  registry requests: {requests} for {distinct} distinct images ({:.1} per image)",
            requests as f64 / distinct as f64
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
    let metrics = webhook.metrics().await;
    let server_side = |suffix: &str| {
        webhook_harness::metric(
            &metrics,
            &format!("signet_webhook_admission_duration_seconds_{suffix}{{endpoint=\"Validate\"}}"),
        )
    };
    println!(
        "  server-side mean decision time (all phases): {:.3} ms",
        1000.0 * server_side("sum") / server_side("count").max(1.0)
    );

    // Memory: 100,000 cached verdicts (distinct namespaces x the cached images).
    let namespaces = 100_000usize.div_ceil(cached_set.len().max(1));
    let before = resident_mib();
    let pending = futures::stream::iter((0..namespaces).map(|n| {
        let webhook = Arc::clone(&webhook);
        let body = pod_review(n, &format!("ns-{n}"), cached_set);
        async move { send(&webhook, body).await }
    }));
    use futures::StreamExt as _;
    let filled: Vec<bool> = pending.buffer_unordered(64).collect().await;
    assert!(filled.iter().all(|ok| *ok), "memory fill failed");
    tokio::time::sleep(Duration::from_secs(1)).await;
    println!(
        "memory: {} cached verdicts, resident {:.1} MiB (was {:.1} MiB before filling; \
         includes this load generator)",
        webhook.server.admission().cached_verdicts().await,
        resident_mib(),
        before
    );
}
