//! Scale figures of the audit loop: `--pods` running pods (default 10,000) sharing `--images`
//! distinct images (default 500, 90 % signed), in 50 namespaces. The Kubernetes API is mocked
//! (tower-test, `tests/support/audit_api.rs`: no API server can run here); the registry is
//! Debian's `docker-registry` on a loopback port behind a recording proxy, the policy picture
//! comes from the real controller, registry answers from admission's lookups.
//!
//! ```text
//! cargo run --release --example audit_scale -- [--pods 10000] [--images 500]
//! ```
//!
//! Prints: time from the audit's start to a full report (every pod in the gauges and in the 50
//! PolicyReports), registry requests it made, resident memory before and after; then, after the
//! attestor's key is replaced, the time until every pod is reported failing and the registry
//! requests that took (none expected). Needs the Debian package `docker-registry`.

// A load generator, not library code: a failed setup step ends the run with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use serde_json::{Value, json};
use signet::admission::Metrics;
use signet::admission::audit_source::AdmissionLookups;
use signet::admission::lookup::{LookupTimings, Lookups};
use signet::controller::audit::{AuditConfig, AuditMetrics, run_audit};
use signet::controller::{StatusWrites, policy_channel, run_controller};
use signet::crypto::{Algorithm, FileKey, SigningKey, generate_key_pair};
use signet::policy::EngineOptions;
use signet::reference::ImageRef;
use signet::registry::SignatureStore;
use signet::signature::SignatureType;
use support::audit_api::AuditApi;
use support::webhook::registry_client;
use support::{CorruptingProxy, Registry};

const NAMESPACES: usize = 50;

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map_or(default, |v| v.parse().expect("a number"))
}

/// Resident and peak resident memory of this process, in MiB.
fn memory() -> (f64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kib = |key: &str| -> f64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (kib("VmRSS:") / 1024.0, kib("VmHWM:") / 1024.0)
}

fn attestor(pem: &str) -> Value {
    json!({"metadata": {"name": "release", "generation": 1},
           "spec": {"keys": [{"id": "k", "algorithm": "ECDSA_P256_SHA_256", "publicKey": pem}]}})
}

fn gauge(metrics: &AuditMetrics, series: &str) -> i64 {
    let text = metrics.encode().unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0)
}

/// Results in the reports of every namespace, and how many of them failed.
fn reported(api: &AuditApi) -> (usize, usize) {
    (0..NAMESPACES)
        .filter_map(|n| api.report(&format!("ns-{n}")))
        .fold((0, 0), |(all, failed), report| {
            let results = report["results"].as_array().map_or(&[][..], Vec::as_slice);
            let fails = results.iter().filter(|r| r["result"] == "fail").count();
            (all + results.len(), failed + fails)
        })
}

async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(600);
    while !done() {
        assert!(Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let pods = arg("--pods", 10_000);
    let images = arg("--images", 500);
    let registry = Registry::start();
    let proxy = CorruptingProxy::recording(&registry.host());
    let host = proxy.host();
    let pair = generate_key_pair(Algorithm::EcdsaP256Sha256, None).unwrap();
    let signer: Arc<dyn SigningKey> = Arc::new(
        FileKey::from_pem(pair.private_key_pem(), Algorithm::EcdsaP256Sha256, "k").unwrap(),
    );
    let store = SignatureStore::new(registry_client());
    let setup = Instant::now();
    let digests: BTreeMap<usize, String> = futures::stream::iter(0..images)
        .map(|i| {
            let (registry, host, store, signer) = (&registry, &host, &store, &signer);
            async move {
                let repo = format!("team-{}/svc-{i}", i % 20);
                let digest = registry
                    .push_test_image(&repo, "v1", &format!("scale-{i}"))
                    .await;
                // One image in ten is left unsigned.
                if i % 10 != 9 {
                    let image = ImageRef::parse(&format!("{host}/{repo}:v1")).unwrap();
                    signet::registry::sign_image(
                        store,
                        &image,
                        Arc::clone(signer),
                        SignatureType::Default,
                        &BTreeMap::new(),
                    )
                    .await
                    .unwrap();
                }
                (i, digest)
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    eprintln!(
        "setup: {images} images pushed, {} signed, in {:.1?}",
        images - images / 10,
        setup.elapsed()
    );

    let (client, api) = AuditApi::start(true);
    api.put("attestors", attestor(&pair.public_key_pem()));
    api.put(
        "clusterverificationpolicies",
        json!({"metadata": {"name": "all", "generation": 1},
               "spec": {"images": [format!("{host}/**")], "attestors": ["release"]}}),
    );
    for n in 0..NAMESPACES {
        api.put(
            "namespaces",
            json!({"metadata": {"name": format!("ns-{n}")}}),
        );
    }
    let objects: Vec<Value> = (0..pods)
        .map(|j| {
            let i = j % images;
            let repo = format!("team-{}/svc-{i}", i % 20);
            json!({"metadata": {"name": format!("pod-{j}"), "namespace": format!("ns-{}", j % NAMESPACES),
                                "uid": format!("uid-{j}")},
                   "spec": {"containers": [{"name": "app", "image": format!("{host}/{repo}:v1")}]},
                   "status": {"phase": "Running", "containerStatuses": [{
                       "name": "app", "image": format!("{host}/{repo}:v1"),
                       "imageID": format!("{host}/{repo}@{}", digests[&i]),
                       "ready": true, "restartCount": 0}]}})
        })
        .collect();
    api.preload("pods", objects);
    let before = memory();
    let baseline_requests = proxy.request_lines().len();

    let (publisher, state) = policy_channel(EngineOptions::default());
    let controller_client = client.clone();
    tokio::spawn(async move {
        let result = run_controller(
            controller_client,
            EngineOptions::default(),
            publisher,
            StatusWrites::Never,
        )
        .await;
        panic!("the controller stopped: {result:?}");
    });
    let lookups = Lookups::new(100_000, LookupTimings::default(), Arc::new(Metrics::new()));
    let source = Arc::new(AdmissionLookups::new(
        Arc::new(lookups),
        registry_client(),
        None,
    ));
    let metrics = Arc::new(AuditMetrics::new());
    let config = AuditConfig {
        interval: Duration::from_secs(3600),
        debounce: Duration::from_millis(200),
        ..AuditConfig::default()
    };
    let running = Arc::clone(&metrics);
    let started = Instant::now();
    tokio::spawn(async move {
        let result = run_audit(client, state, source, running, config).await;
        panic!("the audit stopped: {result:?}");
    });
    let total = i64::try_from(pods).unwrap();
    wait_until("a full report", || {
        let in_gauges = gauge(&metrics, "signet_audit_pods{result=\"pass\"}")
            + gauge(&metrics, "signet_audit_pods{result=\"fail\"}");
        in_gauges == total && reported(&api).0 == pods
    })
    .await;
    let full = started.elapsed();
    let requests = proxy.request_lines().len() - baseline_requests;
    let after = memory();
    println!(
        "{pods} pods, {images} images ({} signed): full report (gauges + {NAMESPACES} PolicyReports) in {full:.2?}; \
         {requests} registry requests; RSS {:.1} MiB before the audit, {:.1} MiB after (peak {:.1} MiB)",
        images - images / 10,
        before.0,
        after.0,
        after.1
    );
    println!(
        "  failing pods {} (events posted {})",
        gauge(&metrics, "signet_audit_pods{result=\"fail\"}"),
        api.events().len()
    );

    // The key replaced: every pod fails, judged from the signatures already held.
    let other = generate_key_pair(Algorithm::EcdsaP256Sha256, None).unwrap();
    let changed = Instant::now();
    let before_change = proxy.request_lines().len();
    api.put("attestors", attestor(&other.public_key_pem()));
    wait_until("every pod failing", || {
        gauge(&metrics, "signet_audit_pods{result=\"fail\"}") == total
            && reported(&api) == (pods, pods)
    })
    .await;
    println!(
        "key replaced: every pod failing in gauges and reports after {:.2?}; {} registry requests; \
         RSS {:.1} MiB (peak {:.1} MiB)",
        changed.elapsed(),
        proxy.request_lines().len() - before_change,
        memory().0,
        memory().1
    );
}
