//! `signet signer --acknowledge queued` against Debian's `docker-registry`: events answered 202
//! once queued and signed afterwards, each image once (also when the registry notifies a burst);
//! a full queue answers 503 and the event sent again is signed; a signing that fails is retried
//! by the signer itself, without a new event, and one failing past the horizon is dropped; on
//! SIGTERM the real process signs what it holds before it exits.

// Helpers outside `#[test]` functions fail by panicking, as tests do (clippy.toml covers only
// `#[test]` code).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use signet::crd::Trigger;
use signet::crypto::Algorithm;
use signet::signature::{SignatureFormat, SignatureType};
use signet::signer::{Acknowledge, QueueOptions, SignerOptions};
use support::signer::*;
use support::{Protection, Registry};

fn queued(queue: QueueOptions, workers: usize) -> SignerOptions {
    SignerOptions {
        acknowledge: Acknowledge::Queued,
        queue,
        workers,
        ..SignerOptions::default()
    }
}

/// The rule of every test here: `release` signs `scopes` with the `Default` type on push.
fn release_rule(scopes: &[String], release: &TestKey) -> Vec<signet::crd::SigningRule> {
    vec![rule(
        "release",
        scopes,
        release,
        SignatureType::Default,
        Trigger::Automatic,
    )]
}

/// A signer on `listener` acknowledging once queued, under [`release_rule`], past its start-up
/// reconcile pass.
async fn start_queued(
    listener: std::net::TcpListener,
    scopes: &[String],
    release: &TestKey,
    queue: QueueOptions,
    workers: usize,
) -> RunningSigner {
    let running = RunningSigner::start_with(
        listener,
        release_rule(scopes, release),
        None,
        queued(queue, workers),
    )
    .await;
    wait_reconciled(|| running.metrics()).await;
    running
}

/// Waits until the start-up reconcile pass has run (over an empty registry: it finds nothing),
/// so that what is signed afterwards is signed from events.
async fn wait_reconciled(metrics: impl Fn() -> String) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while metric(&metrics(), "signet_signer_reconcile_runs_total") < 1 {
        assert!(Instant::now() < deadline, "no reconcile pass at start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
}

/// Waits (at most `limit`) until every image holds a `.sig` signature and a bundle. A read that
/// fails counts as "not yet": distribution 2.8 answers 500 now and then to a GET of a tag whose
/// link the signer is writing at that moment (the signer retries such answers; so does this).
async fn wait_signed(registry: &Registry, images: &[(String, String)], limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        let mut short = Vec::new();
        for (repo_tag, digest) in images {
            let found = store()
                .fetch_signatures(&image(registry, repo_tag), digest)
                .await
                .map(|found| found.signatures);
            let formats = match &found {
                Ok(signatures) => signatures.iter().map(|s| s.format).collect(),
                Err(_) => Vec::new(),
            };
            if !(formats.contains(&SignatureFormat::CosignSignature)
                && formats.contains(&SignatureFormat::SigstoreBundle))
            {
                short.push(format!("{repo_tag}: {:?}", found.map(|_| formats)));
            }
        }
        if short.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "after {limit:?}, not signed in both formats: {short:?}\nregistry log tail:\n{}",
            tail(&registry.log())
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Polls the metrics until `name` reaches `at_least`.
async fn wait_metric(running: &RunningSigner, name: &str, at_least: u64, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        let text = running.metrics();
        if metric(&text, name) >= at_least {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{name} below {at_least} after {limit:?}:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queued_event_is_answered_202_and_its_image_signed_afterwards_once() {
    let dir = tempfile::tempdir().unwrap();
    let release = key(dir.path(), "release", Algorithm::EcdsaP256Sha256);
    let registry = Registry::start();
    let host = registry.host();
    let running = start_queued(
        loopback_listener(),
        &[format!("{host}/q/**")],
        &release,
        QueueOptions::default(),
        16,
    )
    .await;
    let digest = registry.push_test_image("q/app", "v1", "queued-1").await;
    let event = push_event(&host, "q/app", Some("v1"), &digest, OCI_MANIFEST);
    let out_of_scope = push_event(&host, "dev/app", Some("v1"), &digest, OCI_MANIFEST);
    let (status, answer) = post_events(&running.url(), Some(TOKEN), event.clone()).await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer, r#"{"events":[{"result":"queued"}]}"#);
    // The same image again while held: coalesced or, if already signed, queued and found signed.
    let (status, answer) = post_events(&running.url(), Some(TOKEN), event).await;
    assert_eq!(status, 202, "{answer}");
    assert!(answer.contains(r#""result":"queued""#), "{answer}");
    // What needs no signing is answered as in `signed` mode.
    let (status, answer) = post_events(&running.url(), Some(TOKEN), out_of_scope).await;
    assert_eq!(status, 200, "{answer}");
    assert!(answer.contains("no SigningRule covers it"), "{answer}");

    let images = [("q/app:v1".to_string(), digest.clone())];
    wait_signed(&registry, &images, Duration::from_secs(20)).await;
    wait_metric(
        &running,
        "signet_signer_signing_latency_seconds_count",
        1,
        Duration::from_secs(10),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(signature_count(&registry, "q/app:v1", &digest).await, 1);
    assert_eq!(bundle_count(&registry, "q/app:v1", &digest).await, 1);
    let reference = format!("{host}/q/app:v1");
    let (code, out) = signet_verify(&reference, &release, SignatureType::Default);
    assert_eq!(code, 0, "{out}");
    let text = running.metrics();
    assert_eq!(metric(&text, "signet_signer_signed_total"), 1, "{text}");
    assert_eq!(metric(&text, "signet_signer_queue_depth"), 0, "{text}");
    assert_eq!(
        metric(&text, "signet_signer_queue_capacity"),
        signet::signer::DEFAULT_QUEUE_CAPACITY as u64,
        "{text}"
    );
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notifying_registry_burst_is_signed_each_image_once() {
    let dir = tempfile::tempdir().unwrap();
    let release = key(dir.path(), "release", Algorithm::EcdsaP256Sha256);
    let listener = loopback_listener();
    let port = listener.local_addr().unwrap().port();
    let registry =
        Registry::start_with_notifications(&format!("http://127.0.0.1:{port}/events"), TOKEN);
    let host = registry.host();
    let running = start_queued(
        listener,
        &[format!("{host}/burst/**")],
        &release,
        QueueOptions::default(),
        16,
    )
    .await;
    let pushes = (0..24).map(|i| {
        let registry = &registry;
        async move {
            let repo = format!("burst/app{}", i % 8);
            let tag = format!("v{i}");
            let digest = registry
                .push_test_image(&repo, &tag, &format!("burst-{i}"))
                .await;
            (format!("{repo}:{tag}"), digest)
        }
    });
    let images = futures::future::join_all(pushes).await;
    wait_signed(&registry, &images, Duration::from_secs(60)).await;
    // Let the signature pushes' own events and any redelivery play out.
    tokio::time::sleep(Duration::from_secs(3)).await;
    for (repo_tag, digest) in &images {
        assert_eq!(
            signatures_per_key(&registry, repo_tag, digest, &[&release]).await,
            [1],
            "{repo_tag}"
        );
        assert_eq!(signature_count(&registry, repo_tag, digest).await, 1);
        assert_eq!(bundle_count(&registry, repo_tag, digest).await, 1);
    }
    // The registry took the 202s as delivered: it sends nothing again.
    let received = metric(&running.metrics(), "signet_signer_events_received_total");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let text = running.metrics();
    assert_eq!(
        metric(&text, "signet_signer_events_received_total"),
        received,
        "the registry sent events again after a 202: {}",
        tail(&registry.log())
    );
    assert_eq!(metric(&text, "signet_signer_signed_total"), 24, "{text}");
    assert_eq!(metric(&text, "signet_signer_queue_depth"), 0, "{text}");
    assert_eq!(metric(&text, "signet_signer_queue_full_total"), 0, "{text}");
    assert_eq!(
        metric(&text, "signet_signer_queue_retried_total"),
        0,
        "{text}"
    );
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_answers_503_and_the_event_sent_again_is_signed() {
    let dir = tempfile::tempdir().unwrap();
    let release = key(dir.path(), "release", Algorithm::EcdsaP256Sha256);
    let registry = Registry::start();
    let host = registry.host();
    // An image on a registry that is down keeps failing: it holds the one place of the queue
    // until it is dropped, past a horizon shortened for the test.
    let down = format!("127.0.0.1:{}", support::closed_port());
    let scopes = [format!("{host}/full/**"), format!("{down}/**")];
    let options = QueueOptions {
        capacity: 1,
        first_retry: Duration::from_millis(300),
        max_retry: Duration::from_millis(300),
        retry_horizon: Duration::from_secs(2),
    };
    let running = start_queued(loopback_listener(), &scopes, &release, options, 4).await;
    let unreachable = format!("sha256:{}", "ab".repeat(32));
    let (status, answer) = post_events(
        &running.url(),
        Some(TOKEN),
        push_event(&down, "prod/app", Some("v1"), &unreachable, OCI_MANIFEST),
    )
    .await;
    assert_eq!(status, 202, "{answer}");

    let digest = registry.push_test_image("full/app", "v1", "full-1").await;
    let event = push_event(&host, "full/app", Some("v1"), &digest, OCI_MANIFEST);
    let (status, answer) = post_events(&running.url(), Some(TOKEN), event.clone()).await;
    assert_eq!(status, 503, "{answer}");
    assert!(answer.contains("the signing queue is full"), "{answer}");
    let text = running.metrics();
    assert_eq!(metric(&text, "signet_signer_queue_full_total"), 1, "{text}");
    assert_eq!(metric(&text, "signet_signer_queue_depth"), 1, "{text}");
    assert_eq!(signature_count(&registry, "full/app:v1", &digest).await, 0);

    // The unreachable image is dropped after its horizon; the event sent again (as the registry
    // does) is then queued and signed.
    wait_metric(
        &running,
        "signet_signer_queue_dropped_total",
        1,
        Duration::from_secs(20),
    )
    .await;
    let (status, answer) = post_events(&running.url(), Some(TOKEN), event).await;
    assert_eq!(status, 202, "{answer}");
    let images = [("full/app:v1".to_string(), digest.clone())];
    wait_signed(&registry, &images, Duration::from_secs(20)).await;
    let text = running.metrics();
    assert!(
        metric(&text, "signet_signer_queue_retried_total") >= 2,
        "{text}"
    );
    assert_eq!(
        metric(&text, "signet_signer_queue_dropped_total"),
        1,
        "{text}"
    );
    assert_eq!(signature_count(&registry, "full/app:v1", &digest).await, 1);
    running.stop().await;
}

fn htpasswd(dir: &Path) -> PathBuf {
    let path = dir.join("htpasswd");
    let out = Command::new("htpasswd")
        .args(["-nbB", "alice", "s3cret-pw"])
        .output()
        .unwrap_or_else(|e| panic!("cannot run htpasswd (Debian package `apache2-utils`): {e}"));
    assert!(out.status.success(), "htpasswd failed");
    std::fs::write(&path, out.stdout).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signing_that_fails_at_first_is_retried_by_the_signer_without_a_new_event() {
    let dir = tempfile::tempdir().unwrap();
    let release = key(dir.path(), "release", Algorithm::EcdsaP256Sha256);
    let mut registry = Registry::start();
    let host = registry.host();
    let running = start_queued(
        loopback_listener(),
        &[format!("{host}/retry/**")],
        &release,
        QueueOptions::default(),
        16,
    )
    .await;
    let digest = registry.push_test_image("retry/app", "v1", "retry-1").await;
    // From now on the registry refuses the signer (it holds no password).
    registry.protect(Protection {
        htpasswd: Some(htpasswd(dir.path())),
        tls: None,
    });
    let event = push_event(&host, "retry/app", Some("v1"), &digest, OCI_MANIFEST);
    let (status, answer) = post_events(&running.url(), Some(TOKEN), event).await;
    assert_eq!(status, 202, "{answer}");
    wait_metric(
        &running,
        "signet_signer_queue_retried_total",
        1,
        Duration::from_secs(20),
    )
    .await;
    let text = running.metrics();
    assert_eq!(metric(&text, "signet_signer_queue_depth"), 1, "{text}");
    assert!(
        metric(&text, "signet_signer_failed_total{reason=\"registry\"}") >= 1,
        "{text}"
    );
    // The registry lets the signer in again; no event is sent: the signer's own retry signs.
    registry.protect(Protection::default());
    let images = [("retry/app:v1".to_string(), digest.clone())];
    wait_signed(&registry, &images, Duration::from_secs(30)).await;
    let text = running.metrics();
    assert!(
        metric(&text, "signet_signer_queue_retried_total") >= 1,
        "{text}"
    );
    assert_eq!(
        metric(&text, "signet_signer_queue_dropped_total"),
        0,
        "{text}"
    );
    assert_eq!(metric(&text, "signet_signer_signed_total"), 1, "{text}");
    assert_eq!(signature_count(&registry, "retry/app:v1", &digest).await, 1);
    running.stop().await;
}

/// The real `signet signer --acknowledge queued` process, one worker, so that a burst of events
/// is still queued when SIGTERM arrives.
fn start_signer_process(dir: &Path, policies: &Path, port: u16) -> std::process::Child {
    signer_process(Command::new(signet_binary()), dir, policies, port)
        .args(["--shutdown-delay", "0s", "--workers", "1"])
        .env("SIGNET_ACKNOWLEDGE", "queued")
        .spawn()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_sigterm_the_signer_signs_what_it_queued_before_it_exits() {
    let dir = tempfile::tempdir().unwrap();
    let release = key(dir.path(), "release", Algorithm::EcdsaP256Sha256);
    let registry = Registry::start();
    let host = registry.host();
    let rules = release_rule(&[format!("{host}/drain/**")], &release);
    let policies = policy_dir(dir.path(), &rules);
    let port = support::closed_port();
    let mut child = start_signer_process(dir.path(), &policies, port);
    let base = format!("http://127.0.0.1:{port}");
    let client = http();
    let metrics = || {
        let (client, base) = (client.clone(), base.clone());
        async move {
            match client.get(format!("{base}/metrics")).send().await {
                Ok(r) => r.text().await.unwrap_or_default(),
                Err(_) => String::new(),
            }
        }
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while metric(&metrics().await, "signet_signer_reconcile_runs_total") < 1 {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the signer exited at start"
        );
        assert!(Instant::now() < deadline, "the signer did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    let mut images = Vec::new();
    for i in 0..16 {
        let repo = format!("drain/app{i}");
        let digest = registry
            .push_test_image(&repo, "v1", &format!("drain-{i}"))
            .await;
        images.push((repo, digest));
    }
    let url = format!("{base}/events");
    let posts = images.iter().map(|(repo, digest)| {
        post_events(
            &url,
            Some(TOKEN),
            push_event(&host, repo, Some("v1"), digest, OCI_MANIFEST),
        )
    });
    for (status, answer) in futures::future::join_all(posts).await {
        assert_eq!(status, 202, "{answer}");
    }
    let held = metric(&metrics().await, "signet_signer_queue_depth");
    assert!(held > 0, "the queue was already empty before SIGTERM");
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());

    let deadline = Instant::now() + Duration::from_secs(30);
    let exit = loop {
        if let Some(exit) = child.try_wait().unwrap() {
            break exit;
        }
        assert!(Instant::now() < deadline, "the signer did not exit");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let mut log = String::new();
    use std::io::Read as _;
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut log)
        .unwrap();
    assert!(exit.success(), "exit {exit:?}\n{log}");
    assert!(
        log.contains("draining the signing queue"),
        "no drain logged:\n{log}"
    );
    assert!(log.contains("signing queue drained"), "{log}");
    for (repo, digest) in &images {
        assert_eq!(
            signature_count(&registry, &format!("{repo}:v1"), digest).await,
            1,
            "{repo} not signed before exit\n{log}"
        );
    }
}
