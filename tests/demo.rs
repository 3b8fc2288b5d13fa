//! What a new user runs first: `make demo` (scripts/demo.sh: registry with notifications, signer,
//! webhook, one signed and one unsigned image, an allow and a denial with their reasons), and the
//! README's "Try it without a cluster" (`make run`'s webhook on examples/policies, sent
//! examples/review.json), which must meet a real policy rather than "no policy matched".

// Helpers outside `#[test]` functions fail by panicking, as tests do (clippy.toml covers only
// `#[test]` code).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn make_demo_ends_with_one_allowed_and_one_denied_admission_and_their_reasons() {
    let out = Command::new(repo().join("scripts/demo.sh"))
        .env("SIGNET_BIN", env!("CARGO_BIN_EXE_signet"))
        .output()
        .expect("run scripts/demo.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "demo failed:\n{stdout}\n{stderr}");
    let line = |prefix: &str| {
        stdout
            .lines()
            .map(str::trim)
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no `{prefix}` line:\n{stdout}"))
            .to_owned()
    };
    let allowed = line("ALLOWED");
    assert!(
        allowed.contains("/demo/signed/app:v1") && allowed.contains("verified-images="),
        "{allowed}"
    );
    let denied = line("DENIED");
    assert!(
        denied.contains("/demo/unsigned/app:v1")
            && denied.contains("policy demo-images-are-release-signed")
            && denied.contains("release: no signature"),
        "{denied}"
    );
    assert!(
        line("policy demo-images-are-release-signed")
            .contains("signed by release (key release-demo, ")
    );
    assert_eq!(
        stdout.matches("ALLOWED").count() + stdout.matches("DENIED").count(),
        2,
        "{stdout}"
    );
}

/// A CA and a leaf for 127.0.0.1 in `dir`; returns the CA's PEM.
fn certs(dir: &Path) -> String {
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_key = rcgen::KeyPair::generate().expect("CA key");
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).expect("CA");
    let leaf_params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).expect("leaf");
    let leaf_key = rcgen::KeyPair::generate().expect("leaf key");
    let leaf = leaf_params.signed_by(&leaf_key, &ca).expect("leaf");
    std::fs::write(dir.join("tls.crt"), leaf.pem()).expect("tls.crt");
    std::fs::write(dir.join("tls.key"), leaf_key.serialize_pem()).expect("tls.key");
    ca.pem()
}

fn https_client(ca_pem: &str) -> reqwest::Client {
    support::tls_client::https_client(ca_pem, Duration::from_secs(20))
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_readme_sample_review_meets_an_example_policy() {
    let readme = std::fs::read_to_string(repo().join("README.md")).expect("README.md");
    assert!(
        readme.contains("--data-binary @examples/review.json"),
        "the README sends examples/review.json"
    );
    let makefile = std::fs::read_to_string(repo().join("Makefile")).expect("Makefile");
    assert!(
        makefile.contains("--policy-dir examples/policies"),
        "make run serves examples/policies"
    );

    let dir = tempfile::tempdir().expect("temporary directory");
    let ca = certs(dir.path());
    let port = support::closed_port();
    let webhook = Command::new(env!("CARGO_BIN_EXE_signet"))
        .args([
            "--log",
            "warn",
            "webhook",
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
        .arg("--tls-cert")
        .arg(dir.path().join("tls.crt"))
        .arg("--tls-key")
        .arg(dir.path().join("tls.key"))
        .arg("--policy-dir")
        .arg(repo().join("examples/policies"))
        .args(["--shutdown-delay", "0s"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start signet webhook");
    let _webhook = Killed(webhook);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let _runtime = rt.enter();
    let client = https_client(&ca);
    let base = format!("https://127.0.0.1:{port}");
    let started = Instant::now();
    while rt
        .block_on(client.get(format!("{base}/readyz")).send())
        .map(|r| r.status() != 200)
        .unwrap_or(true)
    {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the webhook did not become ready"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let review = std::fs::read(repo().join("examples/review.json")).expect("examples/review.json");
    let answer: serde_json::Value = rt.block_on(async {
        let response = client
            .post(format!("{base}/validate"))
            .header("Content-Type", "application/json")
            .body(review)
            .send()
            .await
            .expect("POST /validate");
        response.json().await.expect("an AdmissionReview")
    });
    let response = &answer["response"];
    let message = response["status"]["message"].as_str().unwrap_or_default();
    assert_eq!(
        response["allowed"],
        serde_json::Value::Bool(false),
        "{answer}"
    );
    assert!(
        message.contains("localhost:5000/prod/app:v1")
            && message.contains("policy prod-images-are-release-signed")
            && message.contains("localhost:5000"),
        "{message}"
    );
}
