//! For the signer tests (`support::signer`): keys on disk, rules, an in-process signer on a
//! loopback listener, signature counting, `signet verify`, event bodies.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use super::Registry;
use signet::controller::PolicyState;
use signet::crd::{SigningKeyRef, SigningRule, SigningRuleSpec, Trigger};
use signet::crypto::Algorithm;
use signet::policy::{self, EngineOptions, PolicyInputs};
use signet::reference::ImageRef;
use signet::registry::{RegistryClient, RegistryOptions, SignatureStore};
use signet::serve::{Drain, Server};
use signet::signature::SignatureType;
use signet::signer::{self, BearerToken, Signer, SignerOptions};

pub const TOKEN: &str = "test-notification-token";

/// A key pair written to disk.
pub struct TestKey {
    pub private: PathBuf,
    pub public: PathBuf,
    pub algorithm: Algorithm,
}

#[allow(dead_code)]
impl TestKey {
    /// The private key, opened as signet opens a key file.
    pub fn signing_key(&self) -> std::sync::Arc<dyn signet::crypto::SigningKey> {
        let pem = std::fs::read_to_string(&self.private).unwrap();
        std::sync::Arc::new(
            signet::crypto::FileKey::from_pem(&pem, self.algorithm, "test").unwrap(),
        )
    }

    /// The public key, as a verifier holds it.
    pub fn public_key(&self) -> signet::crypto::PublicKey {
        let pem = std::fs::read_to_string(&self.public).unwrap();
        signet::crypto::PublicKey::from_pem(&pem, self.algorithm).unwrap()
    }
}

pub fn key(dir: &Path, name: &str, algorithm: Algorithm) -> TestKey {
    let bits = algorithm.is_rsa().then_some(2048);
    let generated = signet::crypto::generate_key_pair(algorithm, bits).unwrap();
    let (private, public) = signet::crypto::write_key_pair(&dir.join(name), &generated).unwrap();
    TestKey {
        private,
        public,
        algorithm,
    }
}

pub fn rule(
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
                certificate_chain: None,
            },
            algorithm: key.algorithm,
            signature_type: kind,
            trigger,
            formats: signet::signature::SignatureFormat::ALL.to_vec(),
            notation_envelope: Default::default(),
        },
    )
}

pub fn fixed_policy(rules: Vec<SigningRule>) -> PolicyState {
    let compiled = policy::compile(&PolicyInputs::default(), 1, EngineOptions::default());
    PolicyState::fixed(compiled.snapshot, rules)
}

pub fn store() -> SignatureStore {
    SignatureStore::new(RegistryClient::new(&RegistryOptions::default()).unwrap())
}

/// A signer serving on a loopback listener, with its reconcile loop.
pub struct RunningSigner {
    pub signer: Signer,
    server: Option<Server>,
    reconciler: tokio::task::JoinHandle<()>,
}

impl RunningSigner {
    pub async fn start(
        listener: std::net::TcpListener,
        rules: Vec<SigningRule>,
        reconcile_every: Option<Duration>,
    ) -> Self {
        Self::start_with(listener, rules, reconcile_every, SignerOptions::default()).await
    }

    pub async fn start_with(
        listener: std::net::TcpListener,
        rules: Vec<SigningRule>,
        reconcile_every: Option<Duration>,
        options: SignerOptions,
    ) -> Self {
        let signer = Signer::new(store(), fixed_policy(rules), options);
        signer.open_keys().await.unwrap();
        let app = signer::router(signer.clone(), BearerToken::new(TOKEN).unwrap());
        let server = Server::start("signer", listener, app, None, &Drain::new()).unwrap();
        let reconciler = tokio::spawn(signer::reconcile_loop(signer.clone(), reconcile_every));
        RunningSigner {
            signer,
            server: Some(server),
            reconciler,
        }
    }

    pub fn url(&self) -> String {
        format!(
            "http://{}/events",
            self.server.as_ref().unwrap().local_addr()
        )
    }

    pub async fn stop(mut self) {
        self.reconciler.abort();
        if let Some(server) = self.server.take() {
            let _ = server.stop().await;
        }
    }

    pub fn metrics(&self) -> String {
        self.signer.metrics().encode()
    }
}

pub fn loopback_listener() -> std::net::TcpListener {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap()
}

pub fn image(registry: &Registry, repo_tag: &str) -> ImageRef {
    ImageRef::parse(&format!("{}/{repo_tag}", registry.host())).unwrap()
}

/// The legacy `.sig` signatures of `digest` (bundles: [`bundle_count`]).
pub async fn signature_count(registry: &Registry, repo_tag: &str, digest: &str) -> usize {
    try_signature_count(registry, repo_tag, digest)
        .await
        .unwrap()
}

/// [`signature_count`], with a failed read as an error: while a signer writes the `.sig` tag,
/// `docker-registry` now and then answers a read of it with HTTP 500 (about once in 15 runs).
pub async fn try_signature_count(
    registry: &Registry,
    repo_tag: &str,
    digest: &str,
) -> Result<usize, signet::registry::RegistryError> {
    Ok(store()
        .fetch_legacy_signatures(&image(registry, repo_tag), digest)
        .await?
        .signatures
        .len())
}

/// The Sigstore bundles attached to `digest` (read through the referrers discovery).
pub async fn bundle_count(registry: &Registry, repo_tag: &str, digest: &str) -> usize {
    try_bundle_count(registry, repo_tag, digest).await.unwrap()
}

/// [`bundle_count`], with a failed read as an error (see [`try_signature_count`]).
pub async fn try_bundle_count(
    registry: &Registry,
    repo_tag: &str,
    digest: &str,
) -> Result<usize, signet::registry::RegistryError> {
    Ok(store()
        .fetch_signatures(&image(registry, repo_tag), digest)
        .await?
        .signatures
        .iter()
        .filter(|s| s.format == signet::signature::SignatureFormat::SigstoreBundle)
        .count())
}

/// Waits (at most `limit`) until `digest` of `repo_tag` has both a `.sig` signature and a bundle.
/// A read that fails while the signer writes (`docker-registry`'s occasional HTTP 500, see
/// [`try_signature_count`]) counts as "not yet"; the last such error is shown if time runs out.
pub async fn wait_for_both_formats(
    registry: &Registry,
    repo_tag: &str,
    digest: &str,
    limit: Duration,
) {
    let deadline = Instant::now() + limit;
    loop {
        let counts = async {
            let bundles = try_bundle_count(registry, repo_tag, digest).await?;
            let sigs = try_signature_count(registry, repo_tag, digest).await?;
            Ok::<_, signet::registry::RegistryError>((bundles, sigs))
        }
        .await;
        if let Ok((bundles, sigs)) = &counts
            && *bundles >= 1
            && *sigs >= 1
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{repo_tag} not signed in {limit:?} (last read: {counts:?})"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Signs `image` with `key` in `formats` (`Simple`), as `signet sign` does.
pub async fn sign_simple(
    store: &SignatureStore,
    image: &ImageRef,
    key: &TestKey,
    formats: &[signet::signature::SignatureFormat],
) {
    signet::registry::sign_image_formats(
        store,
        image,
        key.signing_key(),
        SignatureType::Simple,
        &std::collections::BTreeMap::new(),
        formats,
    )
    .await
    .unwrap();
}

/// Polls until `count` images reach `expected` signatures each, or fails after `limit`.
pub async fn wait_for_signatures(
    registry: &Registry,
    images: &[(String, String)],
    expected: usize,
    limit: Duration,
) {
    let deadline = Instant::now() + limit;
    loop {
        let mut short = Vec::new();
        for (repo_tag, digest) in images {
            // A failed read counts as "not yet" (see `try_signature_count`); it is named if the
            // wait runs out.
            match try_signature_count(registry, repo_tag, digest).await {
                Ok(n) if n >= expected => {}
                Ok(n) => short.push(format!("{repo_tag}: {n}")),
                Err(e) => short.push(format!("{repo_tag}: read failed: {e}")),
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

pub fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

/// `signet signer` as a process on `policies`, plain HTTP on `port`, no reconcile pass, `info`
/// logs on a piped stderr: `cmd` is the binary (with whatever environment the caller gives it),
/// and the caller adds its own flags before spawning. Writes the token file into `dir`.
pub fn signer_process(
    mut cmd: std::process::Command,
    dir: &std::path::Path,
    policies: &std::path::Path,
    port: u16,
) -> std::process::Command {
    let token_file = dir.join("token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    cmd.args([
        "signer",
        "--plain-http",
        "--listen",
        &format!("127.0.0.1:{port}"),
    ])
    .arg("--token-file")
    .arg(&token_file)
    .arg("--policy-dir")
    .arg(policies)
    .args(["--reconcile-interval", "0", "--log", "info"])
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::piped());
    cmd
}

/// The `signet` binary Cargo built for this integration test (examples have none).
pub fn signet_binary() -> &'static str {
    match option_env!("CARGO_BIN_EXE_signet") {
        Some(path) => path,
        None => panic!("CARGO_BIN_EXE_signet is unset: only integration tests run signet"),
    }
}

/// `signet verify` with the rule's public key, algorithm and type: its exit code.
pub fn signet_verify(image: &str, key: &TestKey, kind: SignatureType) -> (i32, String) {
    let out = Command::new(signet_binary())
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

pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .tls_backend_preconfigured(super::tls_client::client_config(None))
        .build()
        .unwrap()
}

/// POSTs a notification body; returns the status and body.
pub async fn post_events(url: &str, token: Option<&str>, body: String) -> (u16, String) {
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
pub fn push_event(
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

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// The media type of an OCI image index (a multi-arch image).
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

pub fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or(0)
}

/// For each key, how many stored signatures of `repo_tag` at `digest` verify under it (any
/// identity): "exactly one per rule" means all ones.
pub async fn signatures_per_key(
    registry: &Registry,
    repo_tag: &str,
    digest: &str,
    keys: &[&TestKey],
) -> Vec<usize> {
    try_signatures_per_key(registry, repo_tag, digest, keys)
        .await
        .unwrap()
}

/// [`signatures_per_key`], with a failed read as an error, for loops that poll while a signer
/// writes (see [`try_signature_count`]).
pub async fn try_signatures_per_key(
    registry: &Registry,
    repo_tag: &str,
    digest: &str,
    keys: &[&TestKey],
) -> Result<Vec<usize>, signet::registry::RegistryError> {
    let stored = store()
        .fetch_legacy_signatures(&image(registry, repo_tag), digest)
        .await?
        .signatures;
    Ok(keys
        .iter()
        .map(|k| {
            let pem = std::fs::read_to_string(&k.public).unwrap();
            let public = signet::crypto::PublicKey::from_pem(&pem, k.algorithm).unwrap();
            stored
                .iter()
                .filter(|s| {
                    s.signature
                        .as_deref()
                        .is_some_and(|sig| public.verify(&s.payload, sig).is_ok())
                })
                .count()
        })
        .collect())
}

/// Writes a policy folder holding these rules as YAML.
pub fn policy_dir(dir: &Path, rules: &[SigningRule]) -> PathBuf {
    let folder = dir.join("policies");
    std::fs::create_dir_all(&folder).unwrap();
    let mut text = String::new();
    for rule in rules {
        let mut value = serde_json::to_value(rule).unwrap();
        value["apiVersion"] = serde_json::json!("signet.dev/v1alpha1");
        value["kind"] = serde_json::json!("SigningRule");
        text.push_str("---\n");
        text.push_str(&serde_yaml_ng::to_string(&value).unwrap());
    }
    std::fs::write(folder.join("rules.yaml"), text).unwrap();
    folder
}
