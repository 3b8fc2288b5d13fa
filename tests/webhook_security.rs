//! The admission findings of the security review, each reproduced as described and shown to
//! fail: breakglass by anyone, pinning switched off by a DryRun policy, a revoked signature
//! honoured for ten minutes, and the webhook as a deputy (anyone reaching the port; pull secrets
//! read by default). Real TLS, Debian's `docker-registry`, AdmissionReview bodies as the API
//! server sends them; the Kubernetes API (SubjectAccessReview, events) is a mock.

// Helpers outside `#[test]` functions fail by panicking, as tests do (clippy.toml covers only
// `#[test]` code).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use signet::admission::{Admission, DecisionSettings, Metrics, TlsSource, WebhookServer};
use signet::crypto::{Algorithm, generate_key_pair};
use signet::policy::NoMatch;
use signet::reference::ImageRef;

use support::kube_api::MockApi;
use support::webhook::{
    ADMIN_GROUP, TestCa, TestWebhook, attestor_yaml, decoded_patch, fixture, metric, policy_state,
    policy_state_of, policy_yaml, registry_client, revoke_signatures, settings, signed_registry,
};

const DEADLINE: Duration = Duration::from_secs(8);

/// A fixture with its `userInfo` replaced (the requester the API server names).
fn as_user(body: Vec<u8>, username: &str, groups: &[&str]) -> Vec<u8> {
    let mut value: Value = serde_json::from_slice(&body).expect("fixture JSON");
    value["request"]["userInfo"] = json!({"username": username, "groups": groups});
    serde_json::to_vec(&value).expect("JSON")
}

/// A fixture with the breakglass annotation moved from the object to the pod template (how a
/// Deployment's pods get it).
fn breakglass_on_template(body: Vec<u8>) -> Vec<u8> {
    let mut value: Value = serde_json::from_slice(&body).expect("fixture JSON");
    let object = &mut value["request"]["object"];
    object["spec"]["template"]["metadata"]["annotations"] =
        json!({"signet.dev/breakglass": "INC-9 rollback"});
    // An unsigned image, so only breakglass could admit it.
    object["spec"]["template"]["spec"]["containers"][0]["image"] =
        object["spec"]["template"]["spec"]["containers"][0]["image"]
            .as_str()
            .map(|image| json!(image.replace("prod/web:v2", "prod/app:v1.1")))
            .unwrap_or(Value::Null);
    serde_json::to_vec(&value).expect("JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn breakglass_needs_authority() {
    let setup = signed_registry().await;
    let host = setup.host();
    let breakglass = || fixture("pod-create-breakglass.json", &host, None);
    let alice = "alice@example.com";
    let (client, api) = MockApi::start_with(BTreeMap::new(), vec![alice.to_string()]);
    let state = policy_state(&host, &setup.public_key_pem, NoMatch::Allow);
    let webhook = TestWebhook::start(state, settings(DEADLINE), Some(client)).await;

    // The attack: a namespace's default service account asks for breakglass. Denied, saying why.
    let intruder = "system:serviceaccount:shop:default";
    let body = as_user(breakglass(), intruder, &["system:serviceaccounts"]);
    let response = webhook.review("/validate", body).await;
    assert_eq!(response["allowed"], false, "{response}");
    let message = response["status"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("signet.dev/breakglass (INC-1234 hotfix) refused")
            && message.contains(intruder)
            && message.contains("breakglass.signet.dev"),
        "{message}"
    );
    assert_eq!(response["auditAnnotations"]["result"], "breakglass-refused");

    // A user RBAC allows (the mocked SubjectAccessReview): admitted, warned and audited.
    let body = as_user(breakglass(), alice, &["system:authenticated"]);
    let response = webhook.review("/validate", body).await;
    assert_eq!(response["allowed"], true, "{response}");
    assert_eq!(response["auditAnnotations"]["result"], "breakglass");
    assert_eq!(
        response["auditAnnotations"]["breakglass-user"],
        format!("user {alice:?}")
    );
    assert_eq!(
        response["auditAnnotations"]["breakglass-reason"],
        "INC-1234 hotfix"
    );
    let reviews = api.posted("POST /apis/authorization.k8s.io/v1/subjectaccessreviews");
    assert!(
        reviews.iter().any(|r| r["spec"]["user"] == alice
            && r["spec"]["resourceAttributes"]
                == json!({"group": "signet.dev", "resource": "breakglass", "verb": "use",
                          "namespace": "shop"})),
        "{reviews:#?}"
    );

    // A member of --breakglass-groups needs no review.
    let before = reviews.len();
    let body = as_user(breakglass(), "bob", &[ADMIN_GROUP]);
    let response = webhook.review("/validate", body).await;
    assert_eq!(response["allowed"], true, "{response}");
    let after = api
        .posted("POST /apis/authorization.k8s.io/v1/subjectaccessreviews")
        .len();
    assert_eq!(before, after, "a listed group must not cost a review");

    // The Breakglass event records who broke the glass.
    let mut events = Vec::new();
    for _ in 0..50 {
        events = api.posted("POST /apis/events.k8s.io/v1/namespaces/shop/events");
        if events.iter().any(|e| e["reason"] == "Breakglass") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        events.iter().any(|e| e["reason"] == "Breakglass"
            && e["note"].as_str().is_some_and(|n| n.contains(alice))),
        "{events:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn breakglass_on_a_pod_template_is_judged_at_the_template() {
    let setup = signed_registry().await;
    let host = setup.host();
    let (client, _api) = MockApi::start_with(BTreeMap::new(), vec![]);
    let state = policy_state(&host, &setup.public_key_pem, NoMatch::Allow);
    let webhook = TestWebhook::start(state, settings(DEADLINE), Some(client)).await;
    let deployment = breakglass_on_template(fixture("deployment-create.json", &host, None));

    // Someone without the authority puts the annotation on the template only, so that the
    // replicaset controller would later carry it into pods: the Deployment is refused.
    let body = as_user(deployment.clone(), "mallory", &["system:authenticated"]);
    let response = webhook.review("/validate", body).await;
    assert_eq!(response["allowed"], false, "{response}");
    assert!(
        response["status"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("INC-9 rollback") && m.contains("mallory")),
        "{response}"
    );
    // With the authority, the same Deployment is admitted by breakglass.
    let body = as_user(deployment, "oncall", &[ADMIN_GROUP]);
    let response = webhook.review("/validate", body).await;
    assert_eq!(response["allowed"], true, "{response}");
    assert_eq!(response["auditAnnotations"]["result"], "breakglass");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn breakglass_is_off_unless_turned_on() {
    let setup = signed_registry().await;
    let host = setup.host();
    let state = policy_state(&host, &setup.public_key_pem, NoMatch::Allow);
    let defaults = DecisionSettings {
        deadline: DEADLINE,
        ..DecisionSettings::default()
    };
    let webhook = TestWebhook::start(state, defaults, None).await;
    // Even a cluster admin's breakglass is ignored by default: the unsigned image is denied.
    let response = webhook
        .review(
            "/validate",
            fixture("pod-create-breakglass.json", &host, None),
        )
        .await;
    assert_eq!(response["allowed"], false, "{response}");
    assert!(
        response["warnings"][0]
            .as_str()
            .is_some_and(|w| w.contains("breakglass is disabled")),
        "{response}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_dry_run_policy_does_not_switch_pinning_off() {
    let setup = signed_registry().await;
    let host = setup.host();
    // `prod-images` (Enforce, attestor `release`) passes; `new-key-trial` (DryRun, an attestor
    // that signed nothing) fails on the same images.
    let trial_key = generate_key_pair(Algorithm::EcdsaP256Sha256, None).expect("key");
    let yaml = format!(
        "{}---\n{}---\napiVersion: signet.dev/v1alpha1\nkind: ClusterVerificationPolicy\n\
         metadata:\n  name: new-key-trial\nspec:\n  images: [\"{host}/prod/**\"]\n  \
         attestors: [trial]\n  mode: DryRun\n",
        policy_yaml(&host, &setup.public_key_pem, "Default"),
        attestor_yaml("trial", &trial_key.public_key_pem()),
    );
    let state = policy_state_of(&yaml, NoMatch::Allow);
    let webhook = TestWebhook::start(state, settings(DEADLINE), None).await;

    let response = webhook
        .review("/mutate", fixture("pod-create.json", &host, None))
        .await;
    let patch = decoded_patch(&response);
    let pinned: Vec<&str> = patch
        .as_array()
        .map(|ops| ops.iter().filter_map(|op| op["value"].as_str()).collect())
        .unwrap_or_default();
    let app = format!("{host}/prod/app:v1@{}", setup.digest("prod/app:v1"));
    assert!(pinned.contains(&app.as_str()), "{pinned:?}");

    // /validate allows with the DryRun warning.
    let response = webhook
        .review("/validate", fixture("pod-create.json", &host, None))
        .await;
    assert_eq!(response["allowed"], true, "{response}");
    assert_eq!(response["auditAnnotations"]["result"], "dryrun");
}

/// The fixture pod is denied, the message naming `prod/app:v1`.
async fn assert_app_denied(webhook: &TestWebhook, host: &str) {
    let response = webhook
        .review("/validate", fixture("pod-create.json", host, None))
        .await;
    assert_eq!(response["allowed"], false, "{response}");
    assert!(
        response["status"]["message"]
            .as_str()
            .is_some_and(|m| m.contains(&format!("{host}/prod/app:v1"))),
        "{response}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_signature_stops_admitting_within_the_signature_cache_time() {
    let setup = signed_registry().await;
    let host = setup.host();
    let state = policy_state(&host, &setup.public_key_pem, NoMatch::Allow);
    let mut short = settings(DEADLINE);
    short.timings.signatures_ttl = Duration::from_millis(800);
    let webhook = TestWebhook::start(state, short, None).await;
    let response = webhook
        .review("/validate", fixture("pod-create.json", &host, None))
        .await;
    assert_eq!(response["allowed"], true, "{response}");

    revoke_signatures(
        &registry_client(),
        &host,
        "prod/app",
        &setup.digest("prod/app:v1"),
    )
    .await;
    // Before, an allowed verdict was reused for ten minutes; now for the signature cache's time.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_app_denied(&webhook, &host).await;
}

/// A cached admission answers from one look-up per image (namespace and image text -> digest
/// and verdict): that answer must end with the digest it rests on. Re-pointing the tag at an
/// unsigned image is denied once the tag -> digest cache expires, however long the allowed
/// verdict on the old digest still lives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tag_moved_to_an_unsigned_image_is_denied_once_its_digest_expires() {
    let setup = signed_registry().await;
    let host = setup.host();
    let state = policy_state(&host, &setup.public_key_pem, NoMatch::Allow);
    let mut timings = settings(DEADLINE);
    timings.timings.signatures_ttl = Duration::from_secs(600);
    timings.timings.digest_ttl = Duration::from_millis(800);
    let webhook = TestWebhook::start(state, timings, None).await;
    for _ in 0..3 {
        let response = webhook
            .review("/validate", fixture("pod-create.json", &host, None))
            .await;
        assert_eq!(response["allowed"], true, "{response}");
    }

    let moved = setup
        .registry
        .push_test_image("prod/app", "v1", "an unsigned build")
        .await;
    assert_ne!(moved, setup.digest("prod/app:v1"));
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_app_denied(&webhook, &host).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_secrets_are_read_only_when_enabled() {
    let setup = signed_registry().await;
    let host = setup.host();
    let (client, api) = MockApi::start(BTreeMap::new());
    let state = policy_state(&host, &setup.public_key_pem, NoMatch::Allow);
    let defaults = DecisionSettings {
        deadline: DEADLINE,
        ..DecisionSettings::default()
    };
    let webhook = TestWebhook::start(state, defaults, Some(client)).await;
    let response = webhook
        .review("/validate", fixture("pod-create.json", &host, None))
        .await;
    assert_eq!(response["allowed"], true, "{response}");
    let reads: Vec<String> = api
        .lines()
        .into_iter()
        .filter(|l| l.contains("/secrets/") || l.contains("/serviceaccounts/"))
        .collect();
    assert!(reads.is_empty(), "secrets read although off: {reads:?}");
}

/// A client certificate issued by a CA of its own.
struct ClientIdentity {
    ca_pem: String,
    cert_pem: String,
    key_pem: String,
}

fn client_identity() -> ClientIdentity {
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "api server client CA");
    let ca_key = rcgen::KeyPair::generate().expect("CA key");
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).expect("CA");
    let mut params =
        rcgen::CertificateParams::new(vec!["kube-apiserver".to_string()]).expect("client params");
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "kube-apiserver");
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let key = rcgen::KeyPair::generate().expect("client key");
    let cert = params.signed_by(&key, &ca).expect("client cert");
    ClientIdentity {
        ca_pem: ca.pem(),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    }
}

/// An HTTPS client trusting `server_ca`, presenting `identity` when given.
fn client_with(server_ca: &TestCa, identity: Option<&ClientIdentity>) -> reqwest::Client {
    use rustls_pki_types::pem::PemObject as _;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(server_ca.ca_pem.as_bytes()).expect("CA"))
        .expect("root");
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots);
    let tls = match identity {
        Some(identity) => {
            let chain =
                vec![CertificateDer::from_pem_slice(identity.cert_pem.as_bytes()).expect("cert")];
            let key = PrivateKeyDer::from_pem_slice(identity.key_pem.as_bytes()).expect("key");
            builder
                .with_client_auth_cert(chain, key)
                .expect("client auth")
        }
        None => builder.with_no_client_auth(),
    };
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_client_ca_only_the_api_server_is_answered() {
    let setup = signed_registry().await;
    let host = setup.host();
    let identity = client_identity();
    let server_ca = TestCa::new("webhook");
    let dir = tempfile::tempdir().expect("dir");
    let (cert, key) = server_ca.write(dir.path());
    let client_ca = dir.path().join("client-ca.crt");
    std::fs::write(&client_ca, &identity.ca_pem).expect("client CA");
    let state = policy_state(&host, &setup.public_key_pem, NoMatch::Allow);
    let admission = Admission::new(
        state,
        registry_client(),
        None,
        settings(DEADLINE),
        Arc::new(Metrics::new()),
    );
    let tls = TlsSource::Files {
        cert,
        key,
        reload_interval: Duration::from_secs(10),
        client_ca: Some(client_ca),
    };
    let server = WebhookServer::start("127.0.0.1:0".parse().expect("addr"), &tls, admission)
        .await
        .expect("webhook starts");
    let url = format!("https://127.0.0.1:{}/validate", server.local_addr().port());
    let body = fixture("pod-update.json", &host, None);

    // The attack: anyone who reaches the port posts a review. The handshake fails.
    let anonymous = client_with(&server_ca, None)
        .post(&url)
        .header("Content-Type", "application/json")
        .body(body.clone())
        .send()
        .await;
    assert!(anonymous.is_err(), "answered without a client certificate");
    // A certificate from another CA is refused too.
    let stranger = client_identity();
    let refused = client_with(&server_ca, Some(&stranger))
        .post(&url)
        .body(body.clone())
        .send()
        .await;
    assert!(refused.is_err(), "answered a certificate of another CA");

    // The API server's certificate is answered.
    let answered = client_with(&server_ca, Some(&identity))
        .post(&url)
        .header("Content-Type", "application/json")
        .body(body)
        .send()
        .await
        .expect("answered with the client certificate");
    assert_eq!(answered.status().as_u16(), 200);
    let value: Value = answered.json().await.expect("JSON");
    assert_eq!(value["response"]["allowed"], false, "{value}");
    let metrics = format!("https://127.0.0.1:{}/metrics", server.local_addr().port());
    let text = client_with(&server_ca, Some(&identity))
        .get(&metrics)
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .unwrap_or_default();
    assert!(
        metric(
            &text,
            "signet_webhook_admissions_total{endpoint=\"validate\",result=\"denied\"}"
        ) >= 1.0,
        "{text}"
    );
}

/// A pod fixture moved into `namespace`.
fn in_namespace(body: Vec<u8>, namespace: &str) -> Vec<u8> {
    let mut value: Value = serde_json::from_slice(&body).expect("fixture JSON");
    value["request"]["namespace"] = json!(namespace);
    value["request"]["object"]["metadata"]["namespace"] = json!(namespace);
    serde_json::to_vec(&value).expect("JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_namespace_the_picture_has_not_seen_is_read_before_its_selector_is_judged() {
    let setup = signed_registry().await;
    let host = setup.host();
    // Only namespaces labelled env=prod must run signed `legacy/` images. The picture knows no
    // namespace yet (as right after `kubectl apply` of a namespace and a pod together).
    let yaml = format!(
        "{}---\napiVersion: signet.dev/v1alpha1\nkind: ClusterVerificationPolicy\n\
         metadata:\n  name: prod-namespaces\nspec:\n  images: [\"{host}/legacy/**\"]\n  \
         attestors: [release]\n  namespaceSelector:\n    matchLabels: {{env: prod}}\n",
        attestor_yaml("release", &setup.public_key_pem),
    );
    let objects = BTreeMap::from([(
        "GET /api/v1/namespaces/fresh".to_string(),
        json!({"apiVersion": "v1", "kind": "Namespace",
               "metadata": {"name": "fresh", "labels": {"env": "prod"}}}),
    )]);
    let (client, api) = MockApi::start(objects);
    let state = policy_state_of(&yaml, NoMatch::Allow);
    let webhook = TestWebhook::start(state, settings(DEADLINE), Some(client)).await;
    // The unsigned legacy image in the new prod namespace: denied, not waved through.
    let body = in_namespace(
        fixture("replicationcontroller-create.json", &host, None),
        "fresh",
    );
    let response = webhook.review("/validate", body).await;
    assert_eq!(response["allowed"], false, "{response}");
    assert!(
        response["status"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("policy prod-namespaces")),
        "{response}"
    );
    assert!(
        api.lines()
            .iter()
            .any(|l| l == "GET /api/v1/namespaces/fresh"),
        "{:?}",
        api.lines()
    );
    // A namespace without the label is not governed by it.
    let body = in_namespace(
        fixture("replicationcontroller-create.json", &host, None),
        "scratch",
    );
    let response = webhook.review("/validate", body).await;
    assert_eq!(response["allowed"], true, "{response}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_namespace_that_cannot_be_read_is_denied() {
    let setup = signed_registry().await;
    let host = setup.host();
    let state = policy_state(&host, &setup.public_key_pem, NoMatch::Allow);
    let objects = BTreeMap::from([(
        "GET /api/v1/namespaces/ghost".to_string(),
        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Forbidden",
               "code": 403, "message": "forbidden"}),
    )]);
    let (client, _api) = MockApi::start(objects);
    let webhook = TestWebhook::start(state, settings(DEADLINE), Some(client)).await;
    let body = in_namespace(fixture("pod-create.json", &host, None), "ghost");
    let response = webhook.review("/validate", body).await;
    assert_eq!(response["allowed"], false, "{response}");
    assert!(
        response["status"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("namespace ghost is not known to signet yet")),
        "{response}"
    );
}

/// `pod-create.json` with an image volume `models` mounting `reference`.
fn with_image_volume(body: Vec<u8>, reference: &str) -> Vec<u8> {
    let mut value: Value = serde_json::from_slice(&body).expect("fixture JSON");
    let object = &mut value["request"]["object"];
    let pod_spec = if object["kind"] == "Pod" {
        &mut object["spec"]
    } else {
        &mut object["spec"]["template"]["spec"]
    };
    pod_spec["volumes"] = json!([
        {"name": "models", "image": {"reference": reference, "pullPolicy": "IfNotPresent"}}
    ]);
    serde_json::to_vec(&value).expect("JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_volumes_are_governed_verified_and_pinned() {
    let setup = signed_registry().await;
    let host = setup.host();
    let state = policy_state(&host, &setup.public_key_pem, NoMatch::Allow);
    let webhook = TestWebhook::start(state, settings(DEADLINE), None).await;

    // The bypass: signed containers, an unsigned image mounted as a volume. Denied, naming it.
    let unsigned = format!("{host}/prod/app:v1.1");
    let body = with_image_volume(fixture("pod-create.json", &host, None), &unsigned);
    let response = webhook.review("/validate", body).await;
    assert_eq!(response["allowed"], false, "{response}");
    let message = response["status"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(&unsigned) && message.contains("image volume \"models\""),
        "{message}"
    );

    // A signed image volume is admitted and pinned in place.
    let signed = format!("{host}/prod/web:v2");
    let body = with_image_volume(fixture("pod-create.json", &host, None), &signed);
    let response = webhook.review("/validate", body.clone()).await;
    assert_eq!(response["allowed"], true, "{response}");
    let response = webhook.review("/mutate", body).await;
    let patch = decoded_patch(&response);
    let pinned = patch.as_array().and_then(|ops| {
        ops.iter()
            .find(|op| op["path"] == "/spec/volumes/0/image/reference")
            .and_then(|op| op["value"].as_str().map(str::to_string))
    });
    assert_eq!(
        pinned,
        Some(format!("{signed}@{}", setup.digest("prod/web:v2"))),
        "{patch}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_volumes_of_a_deployment_are_governed_verified_and_pinned() {
    let setup = signed_registry().await;
    let host = setup.host();
    let sidecar = setup.digest("prod/sidecar");
    let state = policy_state(&host, &setup.public_key_pem, NoMatch::Allow);
    let webhook = TestWebhook::start(state, settings(DEADLINE), None).await;
    let deployment = || fixture("deployment-create.json", &host, Some(&sidecar));

    let unsigned = format!("{host}/prod/app:v1.1");
    let response = webhook
        .review("/validate", with_image_volume(deployment(), &unsigned))
        .await;
    assert_eq!(response["allowed"], false, "{response}");
    let message = response["status"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(&unsigned) && message.contains("image volume \"models\""),
        "{message}"
    );

    let signed = format!("{host}/prod/web:v2");
    let body = with_image_volume(deployment(), &signed);
    let response = webhook.review("/validate", body.clone()).await;
    assert_eq!(response["allowed"], true, "{response}");
    let patch = decoded_patch(&webhook.review("/mutate", body).await);
    let pinned = patch.as_array().and_then(|ops| {
        ops.iter()
            .find(|op| op["path"] == "/spec/template/spec/volumes/0/image/reference")
            .and_then(|op| op["value"].as_str().map(str::to_string))
    });
    assert_eq!(
        pinned,
        Some(format!("{signed}@{}", setup.digest("prod/web:v2"))),
        "{patch}"
    );
}

/// The policies of [`policy_yaml`] plus a SigningRule `release-signer` covering `host/prod/**`.
fn policy_with_signing_rule(host: &str, public_key_pem: &str) -> String {
    format!(
        "{}---\napiVersion: signet.dev/v1alpha1\nkind: SigningRule\nmetadata:\n  name: release-signer\n\
         spec:\n  scope: [\"{host}/prod/**\"]\n  key: {{ref: \"file:/keys/release.pem\"}}\n  \
         algorithm: ECDSA_P256_SHA_256\n",
        policy_yaml(host, public_key_pem, "Default")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_pushed_a_moment_before_its_admission_waits_for_its_signature() {
    let setup = signed_registry().await;
    let host = setup.host();
    let state = policy_state_of(
        &policy_with_signing_rule(&host, &setup.public_key_pem),
        NoMatch::Allow,
    );
    let mut grace = settings(DEADLINE);
    grace.signing_grace = Duration::from_secs(3);
    let webhook = Arc::new(TestWebhook::start(state, grace, None).await);

    // Pushed, not signed yet: the signer is "about to" sign it.
    setup
        .registry
        .push_test_image("prod/fresh", "v1", "fresh")
        .await;
    let fresh = format!("{host}/prod/fresh:v1");
    let body = with_image_volume(fixture("pod-create.json", &host, None), &fresh);
    let asking = {
        let webhook = Arc::clone(&webhook);
        let body = body.clone();
        tokio::spawn(async move { webhook.review("/validate", body).await })
    };
    tokio::time::sleep(Duration::from_millis(600)).await;
    signet::registry::sign_image(
        &signet::registry::SignatureStore::new(registry_client()),
        &ImageRef::parse(&fresh).unwrap(),
        Arc::clone(&setup.signer),
        signet::signature::SignatureType::Default,
        &BTreeMap::new(),
    )
    .await
    .unwrap();
    let response = asking.await.unwrap();
    assert_eq!(response["allowed"], true, "{response}");
    let metrics = webhook.metrics().await;
    assert_eq!(
        metric(
            &metrics,
            "signet_webhook_signing_grace_checks_total{outcome=\"arrived\"}"
        ),
        1.0,
        "{metrics}"
    );

    // Never signed: denied after the grace, saying the signing was expected.
    setup
        .registry
        .push_test_image("prod/orphan", "v1", "orphan")
        .await;
    let orphan = format!("{host}/prod/orphan:v1");
    let started = std::time::Instant::now();
    let body = with_image_volume(fixture("pod-create.json", &host, None), &orphan);
    let response = webhook.review("/validate", body).await;
    assert_eq!(response["allowed"], false, "{response}");
    let message = response["status"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("signing was expected (SigningRule release-signer covers this image)"),
        "{message}"
    );
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert!(started.elapsed() < DEADLINE);

    // An image no SigningRule covers is denied at once, without waiting.
    let legacy = format!("{host}/legacy/frontend:v7");
    let started = std::time::Instant::now();
    let body = with_image_volume(fixture("pod-create.json", &host, None), &legacy);
    let _ = webhook.review("/validate", body).await;
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_platform_manifest_of_an_unsigned_index_is_denied_and_of_a_signed_one_admitted() {
    let setup = signed_registry().await;
    let host = setup.host();
    let state = policy_state(&host, &setup.public_key_pem, NoMatch::Allow);
    let no_grace = || {
        let mut settings = settings(DEADLINE);
        settings.signing_grace = Duration::ZERO;
        settings
    };
    let webhook = TestWebhook::start(state, no_grace(), None).await;
    let (index, children) = support::push_multi_arch(&host, "prod/multi", "v1").await;
    let pinned = |digest: &str| format!("{host}/prod/multi@{digest}");

    // Nothing signed: a pod pinned to a platform digest (as GitOps tools write it) is denied.
    let body = with_image_volume(
        fixture("pod-create.json", &host, None),
        &pinned(&children[0]),
    );
    let response = webhook.review("/validate", body).await;
    assert_eq!(response["allowed"], false, "{response}");

    // The index and its platform manifests signed (as the signer does): each verifies on its own.
    let store = signet::registry::SignatureStore::new(registry_client());
    let tagged = ImageRef::parse(&format!("{host}/prod/multi:v1")).unwrap();
    for digest in std::iter::once(&index).chain(&children) {
        signet::registry::sign_digest(
            &store,
            &tagged,
            digest,
            Arc::clone(&setup.signer),
            signet::signature::SignatureType::Default,
            &BTreeMap::new(),
        )
        .await
        .unwrap();
    }
    // A webhook whose caches have not seen the unsigned answer (the first one keeps it for the
    // signature cache's time).
    let state = policy_state(&host, &setup.public_key_pem, NoMatch::Allow);
    let webhook = TestWebhook::start(state, no_grace(), None).await;
    for child in &children {
        let body = with_image_volume(fixture("pod-create.json", &host, None), &pinned(child));
        let response = webhook.review("/validate", body).await;
        assert_eq!(response["allowed"], true, "{child}: {response}");
    }
}
