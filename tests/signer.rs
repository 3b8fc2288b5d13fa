//! `signet signer` against Debian's `docker-registry` configured to notify it: in-scope pushes get
//! exactly one signature per matching rule (accepted by `signet verify`), everything else none;
//! Manual rules, signature pushes and unauthenticated notifications sign nothing; bad input is
//! answered; repeated events, two instances, a signer down or a registry restarted lose nothing and
//! duplicate nothing.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use signet::controller::PolicyState;
use signet::crd::{SigningKeyRef, SigningRule, SigningRuleSpec, Trigger};
use signet::crypto::Algorithm;
use signet::policy::{self, EngineOptions, PolicyInputs};
use signet::reference::ImageRef;
use signet::registry::{RegistryClient, RegistryOptions, SignatureStore};
use signet::signature::SignatureType;
use signet::signer::{self, BearerToken, ServerHandle, Signer, SignerOptions};
use support::Registry;

const TOKEN: &str = "test-notification-token";

/// A key pair written to disk.
struct TestKey {
    private: PathBuf,
    public: PathBuf,
    algorithm: Algorithm,
}

fn key(dir: &Path, name: &str, algorithm: Algorithm) -> TestKey {
    let bits = algorithm.is_rsa().then_some(2048);
    let generated = signet::crypto::generate_key_pair(algorithm, bits).unwrap();
    let (private, public) = signet::crypto::write_key_pair(&dir.join(name), &generated).unwrap();
    TestKey {
        private,
        public,
        algorithm,
    }
}

fn rule(
    name: &str,
    scope: &[String],
    key: &TestKey,
    kind: SignatureType,
    trigger: Trigger,
) -> SigningRule {
    SigningRule::new(
        name,
        SigningRuleSpec {
            scope: scope.to_vec(),
            key: SigningKeyRef {
                reference: format!("file:{}", key.private.display()),
                id: Some(name.to_string()),
            },
            algorithm: key.algorithm,
            signature_type: kind,
            trigger,
        },
    )
}

fn fixed_policy(rules: Vec<SigningRule>) -> PolicyState {
    let compiled = policy::compile(&PolicyInputs::default(), 1, EngineOptions::default());
    PolicyState::fixed(compiled.snapshot, rules)
}

fn store() -> SignatureStore {
    SignatureStore::new(RegistryClient::new(&RegistryOptions::default()).unwrap())
}

/// A signer serving on a loopback listener, with its reconcile loop.
struct RunningSigner {
    signer: Signer,
    server: Option<ServerHandle>,
    reconciler: tokio::task::JoinHandle<()>,
}

impl RunningSigner {
    async fn start(
        listener: std::net::TcpListener,
        rules: Vec<SigningRule>,
        reconcile_every: Option<Duration>,
    ) -> Self {
        let signer = Signer::new(store(), fixed_policy(rules), SignerOptions::default());
        signer.open_keys().await.unwrap();
        let app = signer::router(signer.clone(), BearerToken::new(TOKEN).unwrap());
        let server = signer::serve(listener, app, None).unwrap();
        let reconciler = tokio::spawn(signer::reconcile_loop(signer.clone(), reconcile_every));
        RunningSigner {
            signer,
            server: Some(server),
            reconciler,
        }
    }

    fn url(&self) -> String {
        format!(
            "http://{}/events",
            self.server.as_ref().unwrap().local_addr()
        )
    }

    async fn stop(mut self) {
        self.reconciler.abort();
        if let Some(server) = self.server.take() {
            server.shutdown().await;
        }
    }

    fn metrics(&self) -> String {
        self.signer.metrics().encode()
    }
}

fn loopback_listener() -> std::net::TcpListener {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap()
}

fn image(registry: &Registry, repo_tag: &str) -> ImageRef {
    ImageRef::parse(&format!("{}/{repo_tag}", registry.host())).unwrap()
}

async fn signature_count(registry: &Registry, repo_tag: &str, digest: &str) -> usize {
    store()
        .fetch_signatures(&image(registry, repo_tag), digest)
        .await
        .unwrap()
        .len()
}

/// Polls until `count` images reach `expected` signatures each, or fails after `limit`.
async fn wait_for_signatures(
    registry: &Registry,
    images: &[(String, String)],
    expected: usize,
    limit: Duration,
) {
    let deadline = Instant::now() + limit;
    loop {
        let mut short = Vec::new();
        for (repo_tag, digest) in images {
            let n = signature_count(registry, repo_tag, digest).await;
            if n < expected {
                short.push(format!("{repo_tag}: {n}"));
            }
        }
        if short.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "after {limit:?}, images short of {expected} signatures: {short:?}\nregistry log tail:\n{}",
            tail(&registry.log())
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

/// `signet verify` with the rule's public key, algorithm and type: its exit code.
fn signet_verify(image: &str, key: &TestKey, kind: SignatureType) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_signet"))
        .args(["verify", image, "--key"])
        .arg(&key.public)
        .args(["--algorithm", &key.algorithm.to_string()])
        .args(["--type", &kind.to_string().to_ascii_lowercase()])
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn http() -> reqwest::Client {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .build()
        .unwrap()
}

/// POSTs a notification body; returns the status and body.
async fn post_events(url: &str, token: Option<&str>, body: String) -> (u16, String) {
    let mut request = http()
        .post(url)
        .header("Content-Type", signer::event::EVENTS_MEDIA_TYPE)
        .body(body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap_or_default())
}

/// A push event as `docker-registry` sends it (shape of the reference sample).
fn push_event(
    host: &str,
    repository: &str,
    tag: Option<&str>,
    digest: &str,
    media_type: &str,
) -> String {
    let mut target = serde_json::json!({
        "mediaType": media_type,
        "size": 401,
        "digest": digest,
        "length": 401,
        "repository": repository,
        "url": format!("http://{host}/v2/{repository}/manifests/{digest}"),
    });
    if let Some(tag) = tag {
        target["tag"] = serde_json::json!(tag);
    }
    serde_json::json!({"events": [{
        "id": "0f0e0d0c-0000-4000-8000-000000000001",
        "timestamp": "2026-11-28T15:17:33.683408072Z",
        "action": "push",
        "target": target,
        "request": {"id": "r1", "addr": "127.0.0.1:41432", "host": host, "method": "PUT", "useragent": "test"},
        "actor": {},
        "source": {"addr": "vm:5000", "instanceID": "i1"},
    }]})
    .to_string()
}

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_scope_pushes_get_one_signature_per_rule_and_nothing_else_is_signed() {
    let dir = tempfile::tempdir().unwrap();
    let release = key(dir.path(), "release", Algorithm::EcdsaP256Sha256);
    let audit = key(dir.path(), "audit", Algorithm::RsaPssSha256);
    let manual = key(dir.path(), "manual", Algorithm::EcdsaP256Sha256);
    let listener = loopback_listener();
    let port = listener.local_addr().unwrap().port();
    let registry =
        Registry::start_with_notifications(&format!("http://127.0.0.1:{port}/events"), TOKEN);
    let host = registry.host();
    let rules = vec![
        rule(
            "release",
            &[format!("{host}/prod/**")],
            &release,
            SignatureType::Default,
            Trigger::Automatic,
        ),
        rule(
            "audit",
            &[format!("{host}/prod/**")],
            &audit,
            SignatureType::Simple,
            Trigger::Automatic,
        ),
        rule(
            "manual",
            &[format!("{host}/manual/**")],
            &manual,
            SignatureType::Default,
            Trigger::Manual,
        ),
    ];
    let running = RunningSigner::start(listener, rules, None).await;

    let app = registry.push_test_image("prod/app", "v1", "app-1").await;
    let api = registry
        .push_test_image("prod/team/api", "v2", "api-2")
        .await;
    let dev = registry.push_test_image("dev/app", "v1", "dev-1").await;
    let by_hand = registry
        .push_test_image("manual/app", "v1", "manual-1")
        .await;
    let signed = [
        ("prod/app:v1".to_string(), app.clone()),
        ("prod/team/api:v2".to_string(), api.clone()),
    ];
    wait_for_signatures(&registry, &signed, 2, Duration::from_secs(20)).await;
    // Let the signature pushes' own events, the registry's retries and the rechecks play out.
    tokio::time::sleep(Duration::from_secs(3)).await;

    for (repo_tag, digest) in &signed {
        assert_eq!(
            signature_count(&registry, repo_tag, digest).await,
            2,
            "{repo_tag}: one per rule"
        );
        let reference = format!("{host}/{repo_tag}");
        let (code, out) = signet_verify(&reference, &release, SignatureType::Default);
        assert_eq!(code, 0, "release signature of {reference}: {out}");
        let (code, out) = signet_verify(&reference, &audit, SignatureType::Simple);
        assert_eq!(code, 0, "audit signature of {reference}: {out}");
        let (code, _) = signet_verify(&reference, &manual, SignatureType::Simple);
        assert_eq!(code, 1, "the Manual rule's key signed {reference}");
    }
    assert_eq!(
        signature_count(&registry, "dev/app:v1", &dev).await,
        0,
        "out of scope was signed"
    );
    assert_eq!(
        signature_count(&registry, "manual/app:v1", &by_hand).await,
        0,
        "a Manual rule signed on push"
    );

    // No loop: the signature pushes were notified and ignored, and nothing signed a `.sig` tag.
    let tags = store()
        .client()
        .list_tags(&image(&registry, "prod/app"))
        .await
        .unwrap();
    assert_eq!(tags.len(), 2, "{tags:?}");
    let text = running.metrics();
    assert!(
        metric(
            &text,
            "signet_signer_events_ignored_total{reason=\"artifact_tag\"}"
        ) >= 2,
        "{text}"
    );
    assert_eq!(metric(&text, "signet_signer_signed_total"), 4, "{text}");
    assert!(
        metric(
            &text,
            "signet_signer_events_ignored_total{reason=\"out_of_scope\"}"
        ) >= 1,
        "{text}"
    );
    assert!(
        metric(
            &text,
            "signet_signer_events_ignored_total{reason=\"manual_rule\"}"
        ) >= 1,
        "{text}"
    );
    assert_eq!(
        metric(&text, "signet_signer_signing_latency_seconds_count"),
        2,
        "{text}"
    );
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_or_wrong_token_gets_401_and_nothing_is_signed() {
    let dir = tempfile::tempdir().unwrap();
    let release = key(dir.path(), "release", Algorithm::EcdsaP256Sha256);
    let listener = loopback_listener();
    let port = listener.local_addr().unwrap().port();
    let url = format!("http://127.0.0.1:{port}/events");
    let registry = Registry::start_with_notifications(&url, "not-the-token");
    let host = registry.host();
    let rules = vec![rule(
        "release",
        &[format!("{host}/**")],
        &release,
        SignatureType::Default,
        Trigger::Automatic,
    )];
    let running = RunningSigner::start(listener, rules, None).await;

    let digest = registry.push_test_image("prod/app", "v1", "token-1").await;
    let event = push_event(&host, "prod/app", Some("v1"), &digest, OCI_MANIFEST);
    for token in [None, Some("wrong"), Some("")] {
        let (status, _) = post_events(&url, token, event.clone()).await;
        assert_eq!(status, 401, "token {token:?}");
    }
    let (status, _) = post_events(&url, Some(&format!("{TOKEN}x")), event.clone()).await;
    assert_eq!(status, 401);
    // The registry's own deliveries (with its wrong token) keep failing too.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(signature_count(&registry, "prod/app:v1", &digest).await, 0);
    let text = running.metrics();
    assert!(
        metric(
            &text,
            "signet_signer_events_ignored_total{reason=\"unauthorized\"}"
        ) >= 5,
        "{text}"
    );
    assert_eq!(
        metric(&text, "signet_signer_events_received_total"),
        0,
        "{text}"
    );

    // The right token is accepted and signs.
    let (status, body) = post_events(&url, Some(TOKEN), event).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(signature_count(&registry, "prod/app:v1", &digest).await, 1);
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_answered_and_never_crashes() {
    let dir = tempfile::tempdir().unwrap();
    let release = key(dir.path(), "release", Algorithm::EcdsaP256Sha256);
    let simple = key(dir.path(), "simple", Algorithm::Ed25519);
    let registry = Registry::start();
    let host = registry.host();
    let rules = vec![
        rule(
            "release",
            &[format!("{host}/prod/**")],
            &release,
            SignatureType::Default,
            Trigger::Automatic,
        ),
        rule(
            "simple",
            &[format!("{host}/prod/**")],
            &simple,
            SignatureType::Simple,
            Trigger::Automatic,
        ),
    ];
    let running = RunningSigner::start(loopback_listener(), rules, None).await;
    let url = running.url();

    for body in [
        "",
        "not json",
        "{\"events\": 7}",
        "[]",
        "{\"events\": [",
        &"x".repeat(2 * 1024 * 1024),
    ] {
        let (status, _) = post_events(&url, Some(TOKEN), body.to_string()).await;
        assert!(
            status == 400 || status == 413,
            "{status} for a malformed body of {} bytes",
            body.len()
        );
    }
    let digest = registry.push_test_image("prod/app", "v1", "bad-1").await;
    let odd_events = [
        push_event(
            &host,
            "prod/app",
            Some("v1"),
            &digest,
            "application/vnd.example.unknown+json",
        ),
        push_event(
            &host,
            "prod/app",
            Some("v1"),
            &digest,
            "application/octet-stream",
        ),
        push_event(&host, "prod/app", Some("v1"), "sha256:nothex", OCI_MANIFEST),
        push_event(&host, "Prod/App", Some("v1"), &digest, OCI_MANIFEST),
        r#"{"events": [{"action": "push"}, 5, null]}"#.to_string(),
    ];
    for body in odd_events {
        let (status, answer) = post_events(&url, Some(TOKEN), body.clone()).await;
        assert_eq!(status, 200, "{body} -> {answer}");
    }
    assert_eq!(signature_count(&registry, "prod/app:v1", &digest).await, 0);

    // A manifest deleted since its push: answered 200 (a retry cannot help), nothing signed.
    let gone = registry.push_test_image("prod/gone", "v1", "gone-1").await;
    let deleted = http()
        .delete(format!("{}/v2/prod/gone/manifests/{gone}", registry.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status().as_u16(), 202);
    let (status, answer) = post_events(
        &url,
        Some(TOKEN),
        push_event(&host, "prod/gone", Some("v1"), &gone, OCI_MANIFEST),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert!(answer.contains("manifest_gone"), "{answer}");

    // A push by digest: the Default rule cannot bind a tag and skips; the Simple rule signs.
    let (status, answer) = post_events(
        &url,
        Some(TOKEN),
        push_event(&host, "prod/app", None, &digest, OCI_MANIFEST),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert!(answer.contains("default_needs_tag"), "{answer}");
    assert_eq!(signature_count(&registry, "prod/app:v1", &digest).await, 1);
    let text = running.metrics();
    assert_eq!(
        metric(
            &text,
            "signet_signer_skipped_total{reason=\"default_needs_tag\"}"
        ),
        1,
        "{text}"
    );

    // Still serving.
    let health = http()
        .get(url.replace("/events", "/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status().as_u16(), 200);
    let ready = http()
        .get(url.replace("/events", "/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status().as_u16(), 200);
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_registry_is_answered_503_so_the_event_comes_again() {
    let dir = tempfile::tempdir().unwrap();
    let release = key(dir.path(), "release", Algorithm::EcdsaP256Sha256);
    let host = format!("127.0.0.1:{}", support::closed_port());
    let rules = vec![rule(
        "release",
        &[format!("{host}/**")],
        &release,
        SignatureType::Default,
        Trigger::Automatic,
    )];
    let running = RunningSigner::start(loopback_listener(), rules, None).await;
    let digest = format!("sha256:{}", "ab".repeat(32));
    let (status, answer) = post_events(
        &running.url(),
        Some(TOKEN),
        push_event(&host, "prod/app", Some("v1"), &digest, OCI_MANIFEST),
    )
    .await;
    assert_eq!(status, 503, "{answer}");
    assert!(answer.contains("unreachable"), "{answer}");
    let text = running.metrics();
    assert_eq!(
        metric(&text, "signet_signer_failed_total{reason=\"registry\"}"),
        1,
        "{text}"
    );
    running.stop().await;
}
