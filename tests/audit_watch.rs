//! The audit loop against the Kubernetes API mocked at the HTTP level (tower-test: no API
//! server can run here) and a real registry (Debian's docker-registry behind a recording proxy,
//! so that every registry request the audit makes is counted). The policy picture comes from the
//! real controller watching the mocked API, as in `signet webhook --audit`; registry answers
//! from admission's own lookups (caches and coalescing).

// Helpers outside `#[test]` functions fail by panicking, as tests do.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

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
use support::{CorruptingProxy, Registry, plain_http_client};

struct World {
    registry: Registry,
    proxy: CorruptingProxy,
    /// The proxy: the host pods name.
    host: String,
    digests: BTreeMap<&'static str, String>,
    key_a: String,
    key_b: String,
    /// Requests the proxy saw while the images were signed (not the audit's).
    setup_requests: usize,
}

/// `prod/app:v1` and `prod/api:v2` signed, `prod/side:v1` not, all pushed; signed through the
/// proxy (the signature binds the host the pods name).
async fn world() -> World {
    let registry = Registry::start();
    let proxy = CorruptingProxy::recording(&registry.host());
    let host = proxy.host();
    let pair = generate_key_pair(Algorithm::EcdsaP256Sha256, None).unwrap();
    let signer: Arc<dyn SigningKey> = Arc::new(
        FileKey::from_pem(pair.private_key_pem(), Algorithm::EcdsaP256Sha256, "a").unwrap(),
    );
    let store = SignatureStore::new(registry_client());
    let mut digests = BTreeMap::new();
    for (repo_tag, signed) in [
        ("prod/app:v1", true),
        ("prod/api:v2", true),
        ("prod/side:v1", false),
    ] {
        let (repo, tag) = repo_tag.split_once(':').unwrap();
        digests.insert(
            repo_tag,
            registry.push_test_image(repo, tag, repo_tag).await,
        );
        if signed {
            let image = ImageRef::parse(&format!("{host}/{repo_tag}")).unwrap();
            signet::registry::sign_image(
                &store,
                &image,
                Arc::clone(&signer),
                SignatureType::Default,
                &BTreeMap::new(),
            )
            .await
            .unwrap();
        }
    }
    let setup_requests = proxy.request_lines().len();
    World {
        setup_requests,
        registry,
        proxy,
        host,
        digests,
        key_a: pair.public_key_pem(),
        key_b: generate_key_pair(Algorithm::EcdsaP256Sha256, None)
            .unwrap()
            .public_key_pem(),
    }
}

impl World {
    fn digest(&self, repo_tag: &str) -> String {
        self.digests[repo_tag].clone()
    }

    /// Signature reads (`.sig` manifest GETs) per image so far.
    fn signature_reads(&self, repo_tag: &str) -> usize {
        let repo = repo_tag.split_once(':').unwrap().0;
        let tag = self.digest(repo_tag).replace(':', "-");
        let wanted = format!("GET /v2/{repo}/manifests/{tag}.sig");
        self.proxy.request_lines()[self.setup_requests..]
            .iter()
            .filter(|l| l.starts_with(&wanted))
            .count()
    }

    fn requests(&self) -> usize {
        self.proxy.request_lines().len()
    }

    fn pod(&self, name: &str, containers: &[(&str, &str)]) -> Value {
        self.pod_in("shop", name, containers)
    }

    fn pod_in(&self, namespace: &str, name: &str, containers: &[(&str, &str)]) -> Value {
        let spec: Vec<Value> = containers
            .iter()
            .map(|(c, image)| json!({"name": c, "image": format!("{}/{image}", self.host)}))
            .collect();
        let statuses: Vec<Value> = containers
            .iter()
            .map(|(c, image)| {
                let repo = image.split_once(':').unwrap().0;
                json!({"name": c, "image": format!("{}/{image}", self.host),
                       "imageID": format!("{}/{repo}@{}", self.host, self.digest(image)),
                       "ready": true, "restartCount": 0})
            })
            .collect();
        json!({"metadata": {"name": name, "namespace": namespace, "uid": format!("uid-{name}")},
               "spec": {"containers": spec},
               "status": {"phase": "Running", "containerStatuses": statuses}})
    }

    /// Deletes the signature manifest of `repo_tag` from the registry (not through the proxy).
    async fn delete_signature(&self, repo_tag: &str) {
        let repo = repo_tag.split_once(':').unwrap().0;
        let tag = format!("{}.sig", self.digest(repo_tag).replace(':', "-"));
        let http = plain_http_client();
        let base = format!("http://{}/v2/{repo}/manifests", self.registry.host());
        let head = http
            .head(format!("{base}/{tag}"))
            .header(
                "Accept",
                "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json",
            )
            .send()
            .await
            .unwrap();
        let digest = head.headers()["docker-content-digest"]
            .to_str()
            .unwrap()
            .to_string();
        let deleted = http
            .delete(format!("{base}/{digest}"))
            .send()
            .await
            .unwrap();
        assert_eq!(deleted.status().as_u16(), 202, "DELETE {repo}@{digest}");
    }
}

fn attestor(keys: &[&str]) -> Value {
    let keys: Vec<Value> = keys
        .iter()
        .enumerate()
        .map(|(i, pem)| json!({"id": format!("k{i}"), "algorithm": "ECDSA_P256_SHA_256", "publicKey": pem}))
        .collect();
    json!({"metadata": {"name": "release", "generation": 1}, "spec": {"keys": keys}})
}

fn prod_policy(host: &str, generation: i64, exclude: &[String]) -> Value {
    json!({"metadata": {"name": "prod", "generation": generation},
           "spec": {"images": [format!("{host}/prod/**")], "exclude": exclude,
                    "attestors": ["release"]}})
}

/// Starts the controller and the audit on one mocked API.
fn start(client: kube::Client, interval: Duration) -> Arc<AuditMetrics> {
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
    let lookups = Lookups::new(1000, LookupTimings::default(), Arc::new(Metrics::new()));
    let source = Arc::new(AdmissionLookups::new(
        Arc::new(lookups),
        registry_client(),
        None,
    ));
    let metrics = Arc::new(AuditMetrics::new());
    let config = AuditConfig {
        interval,
        concurrency: 4,
        debounce: Duration::from_millis(200),
        instance: "audit-test".into(),
        policy_reports: true,
        publishers: StatusWrites::Always,
        ..AuditConfig::default()
    };
    let running = Arc::clone(&metrics);
    tokio::spawn(async move {
        let result = run_audit(client, state, source, running, config).await;
        panic!("the audit stopped: {result:?}");
    });
    metrics
}

fn gauge(metrics: &AuditMetrics, series: &str) -> Option<i64> {
    let text = metrics.encode().unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

async fn eventually<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(found) = check() {
            return found;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn pods_gauges(metrics: &AuditMetrics) -> (Option<i64>, Option<i64>) {
    (
        gauge(metrics, "signet_audit_pods{result=\"pass\"}"),
        gauge(metrics, "signet_audit_pods{result=\"fail\"}"),
    )
}

/// (rule, result) of each result of the shop report, by pod.
fn report_results(api: &AuditApi) -> Vec<(String, String, String)> {
    let Some(report) = api.report("shop") else {
        return Vec::new();
    };
    let mut results: Vec<(String, String, String)> = report["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["resources"][0]["name"].as_str().unwrap().to_string(),
                r["rule"].as_str().unwrap().to_string(),
                r["result"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    results.sort();
    results
}

fn result(pod: &str, container: &str, result: &str) -> (String, String, String) {
    (pod.into(), format!("container/{container}"), result.into())
}

/// Events posted: (pod, note).
fn events(api: &AuditApi) -> Vec<(String, String)> {
    let mut events: Vec<(String, String)> = api
        .events()
        .iter()
        .map(|e| {
            assert_eq!(e["reason"], "UnverifiedImageRunning");
            assert_eq!(e["type"], "Warning");
            (
                e["regarding"]["name"].as_str().unwrap().to_string(),
                e["note"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    events.sort();
    events
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_and_key_changes_are_judged_again_without_registry_requests() {
    let world = world().await;
    let (client, api) = AuditApi::start(true);
    api.put("attestors", attestor(&[&world.key_a]));
    api.put(
        "clusterverificationpolicies",
        prod_policy(&world.host, 1, &[]),
    );
    api.put("namespaces", json!({"metadata": {"name": "shop"}}));
    let mut pods = vec![world.pod("web", &[("app", "prod/app:v1"), ("side", "prod/side:v1")])];
    for i in 1..=3 {
        pods.push(world.pod(&format!("api-{i}"), &[("api", "prod/api:v2")]));
    }
    // Admission never checks kube-system: its unsigned image is not a failure, nor looked up.
    pods.push(world.pod_in("kube-system", "dns", &[("dns", "prod/side:v1")]));
    api.preload("pods", pods);
    let metrics = start(client, Duration::from_secs(3600));

    // The multi-image pod fails for its unsigned sidecar, and reports each container.
    eventually("first results", || {
        (pods_gauges(&metrics) == (Some(3), Some(1))).then_some(())
    })
    .await;
    assert_eq!(
        gauge(&metrics, "signet_audit_pods{result=\"skip\"}"),
        Some(1)
    );
    let all_pass = vec![
        result("api-1", "api", "pass"),
        result("api-2", "api", "pass"),
        result("api-3", "api", "pass"),
        result("web", "app", "pass"),
        result("web", "side", "fail"),
    ];
    eventually("first report", || {
        (report_results(&api) == all_pass).then_some(())
    })
    .await;
    let report = api.report("shop").unwrap();
    assert_eq!(report["apiVersion"], "wgpolicyk8s.io/v1alpha2");
    assert_eq!(report["summary"]["pass"], 4);
    assert_eq!(report["summary"]["fail"], 1);
    let side_digest = world.digest("prod/side:v1");
    let side = report["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["rule"] == "container/side")
        .unwrap();
    assert!(
        side["message"].as_str().unwrap().contains(&side_digest),
        "{side}"
    );
    assert_eq!(side["properties"]["digest"], side_digest.as_str());
    let first_events = eventually("the sidecar's event", || {
        let events = events(&api);
        (!events.is_empty()).then_some(events)
    })
    .await;
    assert_eq!(first_events.len(), 1, "{first_events:?}");
    assert_eq!(first_events[0].0, "web");
    assert!(
        first_events[0].1.starts_with("container side: "),
        "{first_events:?}"
    );
    assert!(
        first_events[0]
            .1
            .contains("policy prod: 0 of 1 required attestors")
    );
    assert_eq!(
        gauge(
            &metrics,
            "signet_audit_images{result=\"pass\",namespace=\"shop\"}"
        ),
        Some(2),
        "app and api: distinct images, not pods"
    );
    // One lookup set per distinct digest, whatever the number of pods running it.
    for image in ["prod/app:v1", "prod/api:v2", "prod/side:v1"] {
        assert_eq!(world.signature_reads(image), 1, "{image}");
    }
    let baseline = world.requests();

    // A policy change that leaves digests and keys as they were: judged again, no request.
    let runs = gauge(&metrics, "signet_audit_runs_total").unwrap();
    api.put(
        "clusterverificationpolicies",
        prod_policy(&world.host, 2, &[format!("{}/nothing/**", world.host)]),
    );
    eventually("a run on the new generation", || {
        (gauge(&metrics, "signet_audit_runs_total").unwrap() > runs).then_some(())
    })
    .await;
    assert_eq!(report_results(&api), all_pass);
    assert_eq!(
        world.requests(),
        baseline,
        "{:?}",
        world.proxy.request_lines()
    );

    // The attestor's key removed (replaced by another): every signed image fails.
    let removed = tokio::time::Instant::now();
    api.put("attestors", attestor(&[&world.key_b]));
    eventually("fail after the key is removed", || {
        (pods_gauges(&metrics) == (Some(0), Some(4))).then_some(())
    })
    .await;
    let took = removed.elapsed();
    assert!(took < Duration::from_secs(2), "{took:?}");
    eventually("report turns to fail", || {
        report_results(&api)
            .iter()
            .all(|r| r.2 == "fail")
            .then_some(())
    })
    .await;
    let after_removal = eventually("an event per failing container", || {
        let events = events(&api);
        (events.len() == 5).then_some(events)
    })
    .await;
    let pods: Vec<&str> = after_removal.iter().map(|e| e.0.as_str()).collect();
    assert_eq!(pods, ["api-1", "api-2", "api-3", "web", "web"]);
    assert_eq!(
        world.requests(),
        baseline,
        "no registry request for a key change"
    );

    // The key restored: pass again, without a new event.
    api.put("attestors", attestor(&[&world.key_a, &world.key_b]));
    eventually("pass after the key is restored", || {
        (pods_gauges(&metrics) == (Some(3), Some(1))).then_some(())
    })
    .await;
    eventually("report passes again", || {
        (report_results(&api) == all_pass).then_some(())
    })
    .await;
    assert_eq!(events(&api).len(), 5);
    assert_eq!(world.requests(), baseline);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_signature_fails_after_the_next_interval() {
    let world = world().await;
    let (client, api) = AuditApi::start(false);
    api.put("attestors", attestor(&[&world.key_a]));
    api.put(
        "clusterverificationpolicies",
        prod_policy(&world.host, 1, &[]),
    );
    let mut pods = vec![world.pod("web", &[("app", "prod/app:v1")])];
    for i in 1..=3 {
        pods.push(world.pod(&format!("api-{i}"), &[("api", "prod/api:v2")]));
    }
    api.preload("pods", pods);
    let interval = Duration::from_millis(1500);
    let metrics = start(client, interval);
    eventually("first results", || {
        (pods_gauges(&metrics) == (Some(4), Some(0))).then_some(())
    })
    .await;

    world.delete_signature("prod/app:v1").await;
    let deleted = tokio::time::Instant::now();
    eventually("fail after the interval", || {
        (pods_gauges(&metrics) == (Some(3), Some(1))).then_some(())
    })
    .await;
    let took = deleted.elapsed();
    assert!(took <= interval + Duration::from_secs(1), "{took:?}");
    let events = eventually("the event", || {
        let events = events(&api);
        (!events.is_empty()).then_some(events)
    })
    .await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].0, "web");
    assert!(events[0].1.contains("no signature"), "{events:?}");
    assert_eq!(
        api.report_writes(),
        0,
        "the PolicyReport CRD is not installed"
    );

    // One lookup set per distinct digest per interval: the digest three pods run is read as
    // often as the one a single pod runs.
    let before = (
        world.signature_reads("prod/app:v1"),
        world.signature_reads("prod/api:v2"),
    );
    tokio::time::sleep(interval * 3).await;
    let app = world.signature_reads("prod/app:v1") - before.0;
    let api_reads = world.signature_reads("prod/api:v2") - before.1;
    assert!(
        (2..=4).contains(&app),
        "app read {app} times in 3 intervals"
    );
    assert!(
        (2..=4).contains(&api_reads),
        "api read {api_reads} times in 3 intervals"
    );
    assert!(api_reads.abs_diff(app) <= 1, "app {app}, api {api_reads}");
}
