//! Notation signatures verified end to end against Debian's `docker-registry` 2.8 (no referrers
//! API, so the fallback index `sha256-<hex>`): made with `sign_notation` under a self-signed
//! code-signing certificate and attached as a referrer the way `notation sign` does there (the
//! envelope blob, the signature manifest pushed by digest, an entry in the fallback index).
//! `signet verify --certificate` runs as a process; the webhook over real TLS.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use signet::crypto::{Algorithm, FileKey, SigningKey, generate_key_pair};
use signet::policy::NoMatch;
use signet::reference::ImageRef;
use signet::registry::SignatureStore;
use signet::signature::{NOTATION_DIGEST_ONLY_HINT, SignatureFormat, SignatureType};

use support::Registry;
use support::notation::SelfSignedNotary;
use support::webhook::{
    TestWebhook, attestor_yaml, pod_review, policy_state_of, registry_client, settings,
};

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn verify(image: &str, roots: &std::path::Path, extra: &[&str]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_signet"))
        .args(["verify", image, "--certificate"])
        .arg(roots)
        .args(extra)
        .env_remove("DOCKER_CONFIG")
        .output()
        .expect("run signet");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn verify_certificate_accepts_the_signers_root_and_refuses_another() {
    let registry = Registry::start();
    let client = registry_client();
    let digest = registry.push_test_image("apps/web", "v1", "web").await;
    let image = ImageRef::parse(&format!("{}/apps/web:v1", registry.host())).unwrap();
    let release = SelfSignedNotary::new("CN=release,O=acme,C=US");
    release.attach(&client, &image, &digest, true).await;
    let dir = tempfile::tempdir().unwrap();
    let roots = dir.path().join("roots.pem");
    std::fs::write(&roots, &release.certificate_pem).unwrap();
    let other_roots = dir.path().join("other.pem");
    std::fs::write(
        &other_roots,
        SelfSignedNotary::new("CN=other,O=acme,C=US").certificate_pem,
    )
    .unwrap();

    let run = verify(&image.to_string(), &roots, &["--output", "json"]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    let report: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(report["verified"], true, "{report}");
    let found = &report["signatures"][0];
    assert_eq!(found["format"], "Notation", "{report}");
    assert_eq!(found["identity"], image.to_string(), "{report}");
    assert_eq!(found["signer"], "CN=release, O=acme, C=US", "{report}");
    assert_eq!(found["revocation"], "not checked", "{report}");

    // A trusted identity that is the signer passes; another one does not.
    let run = verify(
        &image.to_string(),
        &roots,
        &[
            "--trusted-identity",
            "x509.subject: CN=release, O=acme, C=US",
        ],
    );
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    let run = verify(
        &image.to_string(),
        &roots,
        &["--trusted-identity", "x509.subject: CN=ci, O=acme, C=US"],
    );
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);

    let run = verify(&image.to_string(), &other_roots, &[]);
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("not verified"), "{}", run.stdout);
    // Its thumbprint annotation names none of these anchors: skipped before the envelope is
    // fetched, and said.
    assert!(
        run.stdout.contains("none of the trust anchors"),
        "{}",
        run.stdout
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_digest_only_notation_signature_satisfies_simple_only() {
    let registry = Registry::start();
    let client = registry_client();
    let digest = registry.push_test_image("apps/api", "v1", "api").await;
    let image = ImageRef::parse(&format!("{}/apps/api:v1", registry.host())).unwrap();
    let release = SelfSignedNotary::new("CN=release,O=acme,C=US");
    release.attach(&client, &image, &digest, false).await;
    let dir = tempfile::tempdir().unwrap();
    let roots = dir.path().join("roots.pem");
    std::fs::write(&roots, &release.certificate_pem).unwrap();

    let run = verify(&image.to_string(), &roots, &["--type", "simple"]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    let run = verify(&image.to_string(), &roots, &["--type", "default"]);
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout.contains(NOTATION_DIGEST_ONLY_HINT),
        "{}",
        run.stdout
    );
}

fn indent(pem: &str) -> String {
    pem.lines().map(|l| format!("      {l}\n")).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_policy_requiring_cosign_and_notation_attestors_needs_both_signatures() {
    let registry = Registry::start();
    let host = registry.host();
    let client = registry_client();
    let store = SignatureStore::new(client.clone());
    let ci = generate_key_pair(Algorithm::EcdsaP256Sha256, None).unwrap();
    let ci_key: Arc<dyn SigningKey> = Arc::new(
        FileKey::from_pem(ci.private_key_pem(), Algorithm::EcdsaP256Sha256, "ci").unwrap(),
    );
    let release = SelfSignedNotary::new("CN=release,O=acme,C=US");

    let mut images = Vec::new();
    for (repo, with_notation) in [("apps/both", true), ("apps/cosign-only", false)] {
        let digest = registry.push_test_image(repo, "v1", repo).await;
        let image = ImageRef::parse(&format!("{host}/{repo}:v1")).unwrap();
        signet::registry::sign_image_formats(
            &store,
            &image,
            Arc::clone(&ci_key),
            SignatureType::Default,
            &BTreeMap::new(),
            // A Sigstore bundle, as cosign v3 writes, beside the Notation signature.
            &[SignatureFormat::SigstoreBundle],
        )
        .await
        .unwrap();
        if with_notation {
            release.attach(&client, &image, &digest, true).await;
        }
        images.push(image);
    }
    let yaml = format!(
        "{}---\napiVersion: signet.dev/v1alpha1\nkind: Attestor\nmetadata:\n  name: release\nspec:\n  keys:\n  \
         - id: release-root\n    certificates: |\n{}---\napiVersion: signet.dev/v1alpha1\n\
         kind: ClusterVerificationPolicy\nmetadata:\n  name: two-keys\nspec:\n  images: [\"{host}/apps/**\"]\n  \
         attestors: [ci, release]\n  required: 2\n  signatureType: Default\n",
        attestor_yaml("ci", &ci.public_key_pem()),
        indent(&release.certificate_pem),
    );
    let webhook = TestWebhook::start(
        policy_state_of(&yaml, NoMatch::Allow),
        settings(Duration::from_secs(8)),
        None,
    )
    .await;

    let answer = webhook
        .review("/validate", pod_review(&images[0].to_string()))
        .await;
    assert_eq!(answer["allowed"], true, "{answer}");
    let answer = webhook
        .review("/validate", pod_review(&images[1].to_string()))
        .await;
    assert_eq!(answer["allowed"], false, "{answer}");
    let message = answer["status"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("1 of 2 required attestors"), "{message}");
    assert!(
        message.contains("release: no signature by key release-root"),
        "{message}"
    );
    assert!(!message.contains("ci: "), "{message}");

    // The verdict names the format each attestor was satisfied by.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("policy.yaml"), &yaml).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_signet"))
        .args(["verify", &images[0].to_string(), "--policy-dir"])
        .arg(dir.path())
        .args(["--namespace", "shop", "--output", "json"])
        .env_remove("DOCKER_CONFIG")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    let verdict: Value = serde_json::from_str(&stdout).unwrap();
    let attestors = verdict.pointer("/policies/0/attestors");
    let formats: BTreeMap<String, String> = attestors
        .and_then(Value::as_array)
        .unwrap_or_else(|| panic!("no attestors in {verdict}"))
        .iter()
        .map(|a| {
            (
                a["name"].as_str().unwrap_or("?").to_string(),
                a["format"].as_str().unwrap_or("?").to_string(),
            )
        })
        .collect();
    assert_eq!(formats["release"], "Notation", "{verdict}");
    assert_eq!(formats["ci"], "SigstoreBundle", "{verdict}");
}
