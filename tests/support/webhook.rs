//! For the webhook tests (`support::webhook`): a registry holding the fixture images, signed or
//! not; the policy picture for them; the webhook over real TLS (a test CA); an HTTPS client
//! trusting that CA; fixtures with the registry host and real digests filled in.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use signet::admission::{Admission, DecisionSettings, Metrics, TlsSource, WebhookServer};
use signet::controller::PolicyState;
use signet::crypto::{Algorithm, FileKey, SigningKey, generate_key_pair};
use signet::policy::{self, EngineOptions, NoMatch, PolicyInputs};
use signet::reference::ImageRef;
use signet::registry::{RegistryClient, RegistryOptions, SignatureStore};
use signet::signature::{Descriptor, SignatureType};

use super::Registry;

/// The sidecar digest written in the fixtures; tests replace it with the digest pushed.
pub const FIXTURE_SIDECAR_DIGEST: &str =
    "sha256:dd34ae3856cc117dd892feba9594ab15235bf0b9c56e6b4f9cb8ecc4da9cc55a";

/// The key id the attestor gives its key (shown in denials).
pub const KEY_ID: &str = "kms-test";

/// Fixture images pushed and signed by the release key (`repo:tag`).
pub const SIGNED: &[&str] = &[
    "prod/app:v1",
    "prod/migrate:v3",
    "prod/web:v2",
    "prod/web:v2.1",
    "batch/cleanup:v5",
    "batch/report:2026.11",
    "infra/node-agent:1.4.0",
    "prod/postgres:16.4",
];
/// Fixture images pushed but never signed.
pub const UNSIGNED: &[&str] = &["prod/app:v1.1", "prod/app:v1-hotfix", "legacy/frontend:v7"];

/// A registry holding every fixture image, and the release key.
pub struct SignedRegistry {
    pub registry: Registry,
    pub public_key_pem: String,
    /// `repo:tag` (and `prod/sidecar`) -> digest.
    pub digests: BTreeMap<String, String>,
    /// The release key that signed them (to sign more during a test).
    pub signer: Arc<dyn SigningKey>,
}

impl SignedRegistry {
    pub fn host(&self) -> String {
        self.registry.host()
    }

    pub fn digest(&self, repo_tag: &str) -> String {
        self.digests
            .get(repo_tag)
            .cloned()
            .unwrap_or_else(|| panic!("no digest for {repo_tag}"))
    }
}

/// A registry client for plain HTTP to loopback registries.
pub fn registry_client() -> RegistryClient {
    let options = RegistryOptions {
        config_file: None,
        ca_files: vec![],
        insecure: vec![],
        timeout: Duration::from_secs(5),
        token_realm_hosts: vec![],
        ..RegistryOptions::default()
    };
    RegistryClient::new(&options).expect("registry client")
}

/// Starts a registry and pushes the fixture images; signs [`SIGNED`] and the sidecar.
pub async fn signed_registry() -> SignedRegistry {
    let registry = Registry::start();
    let key = generate_key_pair(Algorithm::EcdsaP256Sha256, None).expect("key pair");
    let signer: Arc<dyn SigningKey> = Arc::new(
        FileKey::from_pem(key.private_key_pem(), Algorithm::EcdsaP256Sha256, KEY_ID)
            .expect("signing key"),
    );
    let store = SignatureStore::new(registry_client());
    let mut digests = BTreeMap::new();
    for (i, repo_tag) in SIGNED.iter().chain(UNSIGNED).enumerate() {
        let (repo, tag) = repo_tag.split_once(':').expect("repo:tag");
        let digest = registry
            .push_test_image(repo, tag, &format!("seed-{i}-{repo_tag}"))
            .await;
        digests.insert(repo_tag.to_string(), digest);
    }
    let sidecar = registry
        .push_test_image("prod/sidecar", "v1", "sidecar")
        .await;
    digests.insert("prod/sidecar".to_string(), sidecar);
    let host = registry.host();
    for repo_tag in SIGNED.iter().chain(["prod/sidecar:v1"].iter()) {
        let image = ImageRef::parse(&format!("{host}/{repo_tag}")).expect("reference");
        signet::registry::sign_image(
            &store,
            &image,
            Arc::clone(&signer),
            SignatureType::Default,
            &BTreeMap::new(),
        )
        .await
        .unwrap_or_else(|e| panic!("sign {repo_tag}: {e}"));
    }
    SignedRegistry {
        registry,
        public_key_pem: key.public_key_pem(),
        digests,
        signer,
    }
}

/// The policies of the tests, for images on `host`:
/// - ClusterVerificationPolicy `prod-images` (Enforce): `host/prod/**`, `host/batch/**`,
///   `host/infra/**` must be signed by attestor `release`;
/// - VerificationPolicy `legacy/legacy-trial` (DryRun): `host/legacy/**`.
///
/// Docker Hub images (nginx, busybox, alpine) match nothing: no registry is asked about them.
pub fn policy_yaml(host: &str, public_key_pem: &str, signature_type: &str) -> String {
    let key = public_key_pem
        .lines()
        .map(|l| format!("      {l}"))
        .collect::<Vec<_>>()
        .join("\n");
    format!(
        "apiVersion: signet.dev/v1alpha1\nkind: Attestor\nmetadata:\n  name: release\nspec:\n  keys:\n  \
         - id: {KEY_ID}\n    algorithm: ECDSA_P256_SHA_256\n    publicKey: |\n{key}\n---\n\
         apiVersion: signet.dev/v1alpha1\nkind: ClusterVerificationPolicy\nmetadata:\n  name: prod-images\n\
         spec:\n  images: [\"{host}/prod/**\", \"{host}/batch/**\", \"{host}/infra/**\"]\n  attestors: [release]\n  \
         signatureType: {signature_type}\n\
         ---\napiVersion: signet.dev/v1alpha1\nkind: VerificationPolicy\nmetadata:\n  name: legacy-trial\n  \
         namespace: legacy\nspec:\n  images: [\"{host}/legacy/**\"]\n  attestors: [release]\n  mode: DryRun\n"
    )
}

/// The policy picture of [`policy_yaml`] (`Default` signatures), compiled, fixed and ready.
pub fn policy_state(host: &str, public_key_pem: &str, no_match: NoMatch) -> PolicyState {
    policy_state_typed(host, public_key_pem, no_match, "Default")
}

/// [`policy_state`] with `Simple` signatures: for images reached through a proxy, whose host
/// differs from the one the signatures name.
pub fn policy_state_simple(host: &str, public_key_pem: &str) -> PolicyState {
    policy_state_typed(host, public_key_pem, NoMatch::Allow, "Simple")
}

fn policy_state_typed(
    host: &str,
    public_key_pem: &str,
    no_match: NoMatch,
    signature_type: &str,
) -> PolicyState {
    policy_state_of(&policy_yaml(host, public_key_pem, signature_type), no_match)
}

/// The attestor document `name` holding one ECDSA P-256 key.
pub fn attestor_yaml(name: &str, public_key_pem: &str) -> String {
    let key = public_key_pem
        .lines()
        .map(|l| format!("      {l}"))
        .collect::<Vec<_>>()
        .join("\n");
    format!(
        "apiVersion: signet.dev/v1alpha1\nkind: Attestor\nmetadata:\n  name: {name}\nspec:\n  keys:\n  \
         - id: {name}-key\n    algorithm: ECDSA_P256_SHA_256\n    publicKey: |\n{key}\n"
    )
}

/// A policy picture compiled from YAML documents (Attestors and policies), checked ready.
pub fn policy_state_of(yaml: &str, no_match: NoMatch) -> PolicyState {
    let mut inputs = PolicyInputs::default();
    let mut rules = Vec::new();
    for document in serde_yaml_ng::Deserializer::from_str(yaml) {
        let value: serde_yaml_ng::Value =
            serde::Deserialize::deserialize(document).expect("policy YAML");
        match value["kind"].as_str() {
            Some("Attestor") => inputs
                .attestors
                .push(serde_yaml_ng::from_value(value).expect("Attestor")),
            Some("ClusterVerificationPolicy") => inputs
                .cluster_policies
                .push(serde_yaml_ng::from_value(value).expect("ClusterVerificationPolicy")),
            Some("VerificationPolicy") => inputs
                .policies
                .push(serde_yaml_ng::from_value(value).expect("VerificationPolicy")),
            Some("Namespace") => {
                let name = value["metadata"]["name"]
                    .as_str()
                    .expect("name")
                    .to_string();
                let labels = serde_yaml_ng::from_value(value["metadata"]["labels"].clone())
                    .unwrap_or_default();
                inputs.namespaces.insert(name, labels);
            }
            Some("SigningRule") => {
                rules.push(serde_yaml_ng::from_value(value).expect("SigningRule"));
            }
            other => panic!("unexpected kind {other:?}"),
        }
    }
    let compiled = policy::compile(&inputs, 1, EngineOptions { no_match });
    for status in &compiled.statuses {
        assert!(status.ready, "{status:?}");
    }
    PolicyState::fixed(compiled.snapshot, rules)
}

/// A test CA and a server certificate it issued for `localhost` and `127.0.0.1`.
pub struct TestCa {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

impl TestCa {
    pub fn new(name: &str) -> Self {
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, format!("{name} CA"));
        let ca_key = rcgen::KeyPair::generate().expect("CA key");
        let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).expect("CA");
        let mut leaf_params =
            rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
                .expect("leaf params");
        leaf_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, format!("{name} webhook"));
        let leaf_key = rcgen::KeyPair::generate().expect("leaf key");
        let leaf = leaf_params.signed_by(&leaf_key, &ca).expect("leaf");
        TestCa {
            ca_pem: ca.pem(),
            cert_pem: leaf.pem(),
            key_pem: leaf_key.serialize_pem(),
        }
    }

    /// Writes `tls.crt` and `tls.key` into `dir`.
    pub fn write(&self, dir: &Path) -> (PathBuf, PathBuf) {
        let cert = dir.join("tls.crt");
        let key = dir.join("tls.key");
        std::fs::write(&cert, &self.cert_pem).expect("write tls.crt");
        std::fs::write(&key, &self.key_pem).expect("write tls.key");
        (cert, key)
    }

    /// An HTTPS client trusting only this CA.
    pub fn client(&self) -> reqwest::Client {
        super::tls_client::https_client(&self.ca_pem, Duration::from_secs(30))
    }
}

/// A running webhook with its CA and client.
pub struct TestWebhook {
    pub server: WebhookServer,
    pub ca: TestCa,
    pub client: reqwest::Client,
    pub tls_dir: tempfile::TempDir,
}

impl TestWebhook {
    /// Starts the webhook on 127.0.0.1 (free port) over TLS from files.
    pub async fn start(
        state: PolicyState,
        settings: DecisionSettings,
        kube: Option<kube::Client>,
    ) -> Self {
        Self::start_with(state, settings, kube, registry_client()).await
    }

    pub async fn start_with(
        state: PolicyState,
        settings: DecisionSettings,
        kube: Option<kube::Client>,
        registry: RegistryClient,
    ) -> Self {
        let ca = TestCa::new("first");
        let tls_dir = tempfile::tempdir().expect("TLS dir");
        let (cert, key) = ca.write(tls_dir.path());
        let admission = Admission::new(state, registry, kube, settings, Arc::new(Metrics::new()));
        let tls = TlsSource::Files {
            cert,
            key,
            reload_interval: Duration::from_millis(100),
            client_ca: None,
        };
        let server = WebhookServer::start("127.0.0.1:0".parse().expect("addr"), &tls, admission)
            .await
            .expect("webhook starts");
        let client = ca.client();
        TestWebhook {
            server,
            ca,
            client,
            tls_dir,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!(
            "https://127.0.0.1:{}{path}",
            self.server.local_addr().port()
        )
    }

    /// POSTs `body` to `path`; returns status and parsed JSON body.
    pub async fn post(&self, path: &str, body: Vec<u8>) -> (u16, Value) {
        let response = self
            .client
            .post(self.url(path))
            .header("Content-Type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST {path}: {e}"));
        let status = response.status().as_u16();
        let bytes = response.bytes().await.expect("response body");
        let value = serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            panic!(
                "POST {path}: answer is not JSON ({e}): {}",
                String::from_utf8_lossy(&bytes)
            )
        });
        (status, value)
    }

    /// The AdmissionReview answer to a fixture at `/validate` (or `/mutate`).
    pub async fn review(&self, path: &str, body: Vec<u8>) -> Value {
        let (status, value) = self.post(path, body).await;
        assert_eq!(status, 200, "{value}");
        assert_eq!(value["apiVersion"], "admission.k8s.io/v1", "{value}");
        assert_eq!(value["kind"], "AdmissionReview", "{value}");
        value["response"].clone()
    }

    pub async fn get(&self, path: &str) -> (u16, String) {
        let response = self
            .client
            .get(self.url(path))
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        let status = response.status().as_u16();
        (status, response.text().await.unwrap_or_default())
    }

    pub async fn metrics(&self) -> String {
        let (status, text) = self.get("/metrics").await;
        assert_eq!(status, 200);
        text
    }
}

/// The group of the fixtures' `kubernetes-admin`, allowed to break glass by [`settings`].
pub const ADMIN_GROUP: &str = "kubeadm:cluster-admins";

/// Settings for tests: the given deadline; breakglass on for [`ADMIN_GROUP`]; pull secrets read.
pub fn settings(deadline: Duration) -> DecisionSettings {
    DecisionSettings {
        deadline,
        breakglass: true,
        breakglass_groups: vec![ADMIN_GROUP.to_string()],
        pull_secrets: true,
        ..DecisionSettings::default()
    }
}

/// A fixture body with `REGISTRY` replaced by `host` and the sidecar's digest by `sidecar`.
pub fn fixture(name: &str, host: &str, sidecar: Option<&str>) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/admission")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut text = text.replace("REGISTRY", host);
    if let Some(sidecar) = sidecar {
        text = text.replace(FIXTURE_SIDECAR_DIGEST, sidecar);
    }
    text.into_bytes()
}

/// `pod-create.json` (a Pod review as the API server sends it) running only `image`.
pub fn pod_review(image: &str) -> Vec<u8> {
    let mut review: Value =
        serde_json::from_slice(&fixture("pod-create.json", "registry.invalid", None))
            .expect("fixture JSON");
    let spec = &mut review["request"]["object"]["spec"];
    spec["containers"] = serde_json::json!([{"name": "app", "image": image}]);
    spec["initContainers"] = serde_json::json!([]);
    serde_json::to_vec(&review).expect("JSON")
}

/// The request uid of a fixture body.
pub fn uid_of(body: &[u8]) -> String {
    let value: Value = serde_json::from_slice(body).expect("fixture JSON");
    value["request"]["uid"].as_str().expect("uid").to_string()
}

/// The value of a counter line (`name{labels} value`) in Prometheus text, 0 when absent.
pub fn metric(text: &str, line_prefix: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(line_prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// Replaces the `.sig` manifest of `repo:tag` with one whose only layer verifies under no key:
/// the image's signatures are, in effect, deleted.
pub async fn revoke_signatures(client: &RegistryClient, host: &str, repo: &str, digest: &str) {
    let image = ImageRef::parse(&format!("{host}/{repo}:latest")).expect("reference");
    let payload = br#"{"critical":{}}"#;
    let layer = Descriptor::for_signature(payload, b"not a signature", &BTreeMap::new());
    client.push_blob(&image, payload).await.expect("payload");
    write_signature_manifest(client, &image, digest, &[layer]).await;
}

/// Writes the `.sig` manifest of `digest` in the repository of `image` with exactly `layers`
/// (their blobs must be pushed already): how tests replace or forge a signature set.
pub async fn write_signature_manifest(
    client: &RegistryClient,
    image: &ImageRef,
    digest: &str,
    layers: &[signet::signature::Descriptor],
) {
    let built = signet::signature::build_signature_manifest(layers).expect("signature manifest");
    client
        .push_blob(image, &built.config)
        .await
        .expect("config blob");
    let tag = signet::signature::signature_tag(digest).expect("signature tag");
    client
        .push_manifest(
            &image.with_tag(&tag),
            &built.manifest,
            signet::signature::OCI_MANIFEST_MEDIA_TYPE,
        )
        .await
        .expect("signature manifest pushed");
}

/// The JSON patch of a `/mutate` answer, decoded (the answer must carry one).
pub fn decoded_patch(response: &Value) -> Value {
    use base64::Engine as _;
    assert_eq!(response["patchType"], "JSONPatch", "{response}");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(
            response["patch"]
                .as_str()
                .expect("patch is a base64 string"),
        )
        .expect("base64");
    serde_json::from_slice(&bytes).expect("patch is JSON")
}
