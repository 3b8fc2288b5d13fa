//! Signing in Notation format against Debian's `docker-registry` 2.8 (no referrers API: the
//! fallback index `sha256-<hex>`): with `signet sign --format notation` and with a SigningRule
//! asking for `Notation` through the signer, RSA-PSS (RSA-2048 => PS256) and ECDSA P-256, file
//! keys and SoftHSM2 token keys, certificates from `signet keygen --certificate` or a chain of 3
//! made here. Each signature is then verified at admission (the webhook over TLS) and by
//! `signet verify --certificate`; signing twice writes one referrer; a key that is not its
//! certificate's is refused before anything is pushed.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use signet::crd::{NotationEnvelope, SigningKeyRef, SigningRule, SigningRuleSpec, Trigger};
use signet::crypto::Algorithm;
use signet::policy::NoMatch;
use signet::reference::ImageRef;
use signet::signature::{SignatureFormat, SignatureType};
use signet::signer::{Signer, SignerOptions};

use support::Registry;
use support::notation::{
    Pki, assert_notation_manifest, certificate_attestor_yaml, leaf_params, notation_manifests,
    policy_yaml,
};
use support::signer::{
    OCI_MANIFEST, RunningSigner, TOKEN, fixed_policy, loopback_listener, post_events, push_event,
    store,
};
use support::webhook::{TestWebhook, pod_review, policy_state_of, settings};

const JWS: &str = "application/jose+json";
const COSE: &str = "application/cose";

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn signet(args: &[&str]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_signet"))
        .args(args)
        .env_remove("DOCKER_CONFIG")
        .env_remove("SIGNET_PKCS11_PIN")
        .output()
        .expect("run signet");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// `signet keygen --certificate`: PREFIX.key, PREFIX.pub and the self-signed PREFIX.crt.
fn keygen_with_certificate(dir: &Path, name: &str, algorithm: &str) -> PathBuf {
    let prefix = dir.join(name);
    let run = signet(&[
        "keygen",
        "--algorithm",
        algorithm,
        "--output",
        path(&prefix),
        "--certificate",
        "--subject",
        &format!("CN={name},O=acme,C=US"),
    ]);
    assert_eq!(run.code, 0, "keygen {name}: {}", run.stderr);
    prefix
}

fn with_ext(prefix: &Path, ext: &str) -> PathBuf {
    let mut p = prefix.as_os_str().to_owned();
    p.push(ext);
    PathBuf::from(p)
}

/// `signet sign IMAGE --key KEY --format notation --certificate-chain CHAIN [extra...]`.
fn sign_notation(image: &str, key: &str, chain: &Path, extra: &[&str]) -> Run {
    let mut args = vec![
        "sign",
        image,
        "--key",
        key,
        "--format",
        "notation",
        "--certificate-chain",
        path(chain),
    ];
    args.extend_from_slice(extra);
    signet(&args)
}

/// `signet verify IMAGE --certificate ROOTS --type default`: exit code and output.
fn verify_certificate(image: &str, roots: &Path) -> Run {
    signet(&[
        "verify",
        image,
        "--certificate",
        path(roots),
        "--type",
        "default",
    ])
}

async fn wait_for_notation(image: &ImageRef, digest: &str, expected: usize) -> Vec<Vec<u8>> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let found = notation_manifests(image, digest).await;
        if found.len() >= expected {
            return found;
        }
        assert!(
            Instant::now() < deadline,
            "{image}: {} Notation signatures after 20 s, expected {expected}",
            found.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn admitted(webhook: &TestWebhook, image: &str) -> (bool, String) {
    let answer = webhook.review("/validate", pod_review(image)).await;
    (
        answer["allowed"] == true,
        answer["status"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
    )
}

fn notation_rule(
    name: &str,
    scope: String,
    reference: String,
    algorithm: Algorithm,
    chain: String,
    envelope: NotationEnvelope,
) -> SigningRule {
    SigningRule::new(
        name,
        SigningRuleSpec {
            scope: vec![scope],
            key: SigningKeyRef {
                reference,
                id: Some(name.to_string()),
                certificate_chain: Some(chain),
            },
            algorithm,
            signature_type: SignatureType::Default,
            trigger: Trigger::Automatic,
            formats: vec![SignatureFormat::Notation],
            notation_envelope: envelope,
        },
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn cli_signs_file_keys_in_notation_format_once_and_admission_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::start();
    let host = registry.host();
    let rsa = keygen_with_certificate(dir.path(), "release-rsa", "RSA_PSS_SHA_256");
    let ec = keygen_with_certificate(dir.path(), "release-ec", "ECDSA_P256_SHA_256");

    let mut images = Vec::new();
    for (repo, prefix, envelope, layer) in
        [("cli/rsa", &rsa, "jws", JWS), ("cli/ec", &ec, "cose", COSE)]
    {
        let digest = registry.push_test_image(repo, "v1", repo).await;
        let image = ImageRef::parse(&format!("{host}/{repo}:v1")).unwrap();
        let key = format!("file:{}", path(&with_ext(prefix, ".key")));
        let chain = with_ext(prefix, ".crt");
        // An RSA key file cannot tell PSS from PKCS#1: named, as for the other formats.
        let algorithm = if prefix == &rsa {
            "RSA_PSS_SHA_256"
        } else {
            "ECDSA_P256_SHA_256"
        };
        let extra = ["--notation-envelope", envelope, "--algorithm", algorithm];
        let first = sign_notation(&image.to_string(), &key, &chain, &extra);
        assert_eq!(first.code, 0, "{repo}: {}{}", first.stdout, first.stderr);
        assert!(first.stdout.contains(&digest), "{}", first.stdout);
        assert!(
            first.stdout.contains("(Notation)") && !first.stdout.contains("already present"),
            "{}",
            first.stdout
        );
        // Signing again finds the signature by the same key and identity: nothing written.
        let again = sign_notation(&image.to_string(), &key, &chain, &extra);
        assert_eq!(again.code, 0, "{repo}: {}", again.stderr);
        assert!(
            again.stdout.contains("(Notation, already present)"),
            "{}",
            again.stdout
        );
        let manifests = notation_manifests(&image, &digest).await;
        assert_eq!(manifests.len(), 1, "{repo}: one referrer after two signs");
        assert_notation_manifest(&manifests[0], &digest, layer);

        let verified = verify_certificate(&image.to_string(), &chain);
        assert_eq!(
            verified.code, 0,
            "{repo}: {}{}",
            verified.stdout, verified.stderr
        );
        images.push((image, digest));
    }

    // Another identity is another signature: `Simple` (digest only) beside `Default`, once.
    let (ec_image, ec_digest) = &images[1];
    let ec_key = format!("file:{}", path(&with_ext(&ec, ".key")));
    for _ in 0..2 {
        let run = sign_notation(
            &ec_image.to_string(),
            &ec_key,
            &with_ext(&ec, ".crt"),
            &["--type", "simple"],
        );
        assert_eq!(run.code, 0, "{}", run.stderr);
    }
    assert_eq!(notation_manifests(ec_image, ec_digest).await.len(), 2);

    // All three formats at once share the fallback index: each is found once.
    let digest = registry.push_test_image("cli/all", "v1", "all").await;
    let image = ImageRef::parse(&format!("{host}/cli/all:v1")).unwrap();
    let run = signet(&[
        "sign",
        &image.to_string(),
        "--key",
        &ec_key,
        "--format",
        "cosignsignature,sigstorebundle,notation",
        "--certificate-chain",
        path(&with_ext(&ec, ".crt")),
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    for format in ["(CosignSignature)", "(SigstoreBundle)", "(Notation)"] {
        assert!(run.stdout.contains(format), "{format}: {}", run.stdout);
    }
    assert_eq!(notation_manifests(&image, &digest).await.len(), 1);
    assert_eq!(
        support::signer::bundle_count(&registry, "cli/all:v1", &digest).await,
        1
    );
    assert_eq!(
        support::signer::signature_count(&registry, "cli/all:v1", &digest).await,
        1
    );
    let both = signet(&[
        "verify",
        &image.to_string(),
        "--certificate",
        path(&with_ext(&ec, ".crt")),
        "--key",
        path(&with_ext(&ec, ".pub")),
        // Every store: by default the .sig alone settles it and the referrers are not read.
        "--all-signatures",
        "--output",
        "json",
    ]);
    assert_eq!(both.code, 0, "{}{}", both.stdout, both.stderr);
    let report: serde_json::Value = serde_json::from_str(&both.stdout).unwrap();
    let formats: Vec<&str> = report["signatures"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["valid"] == true)
        .filter_map(|s| s["format"].as_str())
        .collect();
    for format in ["CosignSignature", "SigstoreBundle", "Notation"] {
        assert!(formats.contains(&format), "{format}: {report}");
    }

    // A key that is not its certificate's is refused in one line, before any request.
    let digest = registry
        .push_test_image("cli/mismatch", "v1", "mismatch")
        .await;
    let image = ImageRef::parse(&format!("{host}/cli/mismatch:v1")).unwrap();
    let refused = sign_notation(&image.to_string(), &ec_key, &with_ext(&rsa, ".crt"), &[]);
    assert_ne!(refused.code, 0, "{}", refused.stdout);
    assert!(
        refused.stderr.contains("does not hold the public key"),
        "{}",
        refused.stderr
    );
    assert_eq!(
        refused.stderr.trim().lines().count(),
        1,
        "{}",
        refused.stderr
    );
    let missing = signet(&[
        "sign",
        &image.to_string(),
        "--key",
        &ec_key,
        "--format",
        "notation",
    ]);
    assert_ne!(missing.code, 0);
    assert!(
        missing.stderr.contains("--certificate-chain"),
        "{}",
        missing.stderr
    );
    let unused = signet(&[
        "sign",
        &image.to_string(),
        "--key",
        &ec_key,
        "--certificate-chain",
        path(&with_ext(&ec, ".crt")),
    ]);
    assert_ne!(unused.code, 0);
    assert!(
        unused
            .stderr
            .contains("--certificate-chain is for --format notation"),
        "{}",
        unused.stderr
    );
    assert!(notation_manifests(&image, &digest).await.is_empty());
    assert_eq!(
        support::signer::signature_count(&registry, "cli/mismatch:v1", &digest).await,
        0,
        "refused before anything was pushed"
    );

    // Admission: each signature satisfies the attestor holding its certificate; the image
    // signed by nobody is denied.
    let yaml = format!(
        "{}---\n{}---\n{}",
        certificate_attestor_yaml(
            "rsa",
            &std::fs::read_to_string(with_ext(&rsa, ".crt")).unwrap()
        ),
        certificate_attestor_yaml(
            "ec",
            &std::fs::read_to_string(with_ext(&ec, ".crt")).unwrap()
        ),
        policy_yaml("cli", &format!("{host}/cli/**"), &["rsa", "ec"]),
    );
    let webhook = TestWebhook::start(
        policy_state_of(&yaml, NoMatch::Allow),
        settings(Duration::from_secs(8)),
        None,
    )
    .await;
    for (image, _) in &images {
        let (allowed, message) = admitted(&webhook, &image.to_string()).await;
        assert!(allowed, "{image}: {message}");
    }
    let (allowed, message) = admitted(&webhook, &image.to_string()).await;
    assert!(!allowed, "the unsigned image is denied");
    assert!(message.contains("cli/mismatch"), "{message}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_notation_rule_signs_pushes_once_and_a_mismatched_key_stops_the_signer() {
    let dir = tempfile::tempdir().unwrap();
    // RSA: a chain of 3 made here, in the rule. ECDSA: keygen's self-signed certificate, by file.
    let rsa = support::signer::key(dir.path(), "rule-rsa", Algorithm::RsaPssSha256);
    let pki = Pki::new("Acme release");
    let rsa_chain = pki.chain_pem(
        &std::fs::read_to_string(&rsa.public).unwrap(),
        leaf_params("rule-rsa"),
    );
    let ec = keygen_with_certificate(dir.path(), "rule-ec", "ECDSA_P256_SHA_256");

    let listener = loopback_listener();
    let port = listener.local_addr().unwrap().port();
    let url = format!("http://127.0.0.1:{port}/events");
    let registry = Registry::start_with_notifications(&url, TOKEN);
    let host = registry.host();
    let rules = vec![
        notation_rule(
            "rsa",
            format!("{host}/signed/rsa/**"),
            format!("file:{}", rsa.private.display()),
            Algorithm::RsaPssSha256,
            rsa_chain.clone(),
            NotationEnvelope::Jws,
        ),
        notation_rule(
            "ec",
            format!("{host}/signed/ec/**"),
            format!("file:{}", path(&with_ext(&ec, ".key"))),
            Algorithm::EcdsaP256Sha256,
            format!("file:{}", path(&with_ext(&ec, ".crt"))),
            NotationEnvelope::Cose,
        ),
    ];
    let running = RunningSigner::start(listener, rules.clone(), None).await;

    let mut images = Vec::new();
    for (repo, layer) in [("signed/rsa/app", JWS), ("signed/ec/app", COSE)] {
        let digest = registry.push_test_image(repo, "v1", repo).await;
        let image = ImageRef::parse(&format!("{host}/{repo}:v1")).unwrap();
        let manifests = wait_for_notation(&image, &digest, 1).await;
        assert_notation_manifest(&manifests[0], &digest, layer);
        // The same push again: the signature by this key for this tag is there, nothing written.
        let event = push_event(&host, repo, Some("v1"), &digest, OCI_MANIFEST);
        let (status, body) = post_events(&url, Some(TOKEN), event).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            notation_manifests(&image, &digest).await.len(),
            1,
            "{repo}: one referrer after the event came twice"
        );
        images.push(image);
    }
    running.stop().await;

    let rsa_root = dir.path().join("rsa-root.pem");
    std::fs::write(&rsa_root, &pki.root_pem).unwrap();
    let run = verify_certificate(&images[0].to_string(), &rsa_root);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    let run = verify_certificate(&images[1].to_string(), &with_ext(&ec, ".crt"));
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    // Each attestor trusts its own anchor only.
    let run = verify_certificate(&images[1].to_string(), &rsa_root);
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);

    let yaml = format!(
        "{}---\n{}---\n{}---\n{}",
        certificate_attestor_yaml("rsa-release", &pki.root_pem),
        certificate_attestor_yaml(
            "ec-release",
            &std::fs::read_to_string(with_ext(&ec, ".crt")).unwrap()
        ),
        policy_yaml("rsa", &format!("{host}/signed/rsa/**"), &["rsa-release"]),
        policy_yaml("ec", &format!("{host}/signed/ec/**"), &["ec-release"]),
    );
    let webhook = TestWebhook::start(
        policy_state_of(&yaml, NoMatch::Allow),
        settings(Duration::from_secs(8)),
        None,
    )
    .await;
    for image in &images {
        let (allowed, message) = admitted(&webhook, &image.to_string()).await;
        assert!(allowed, "{image}: {message}");
    }
    let unsigned = registry
        .push_test_image("signed/rsa/other", "v1", "other")
        .await;
    let (allowed, message) = admitted(&webhook, &format!("{host}/signed/rsa/other:v1")).await;
    assert!(
        !allowed,
        "{unsigned}: an image the signer never saw is denied"
    );
    assert!(message.contains("rsa-release"), "{message}");

    // A rule whose chain is not its key's: the signer refuses to start, in one line.
    let mut mismatched = rules[1].clone();
    mismatched.spec.key.certificate_chain = Some(rsa_chain);
    let signer = Signer::new(
        store(),
        fixed_policy(vec![mismatched]),
        SignerOptions::default(),
    );
    let err = signer.open_keys().await.unwrap_err().to_string();
    assert!(
        err.contains("SigningRule \"ec\": cannot sign in Notation format")
            && err.contains("does not hold the public key"),
        "{err}"
    );
    assert!(!err.contains('\n'), "{err}");
}

/// Token keys (SoftHSM2): the module is loaded in this process by the in-process signer, so the
/// body runs in a re-run of this test with `SOFTHSM2_CONF` set.
#[test]
fn token_keys_sign_in_notation_format_by_cli_and_by_rule() {
    let Some(conf) =
        support::SoftHsm::in_own_process("token_keys_sign_in_notation_format_by_cli_and_by_rule")
    else {
        return;
    };
    support::softhsm::init_token(&conf, "signet");
    let dir = tempfile::tempdir().unwrap();
    let pin = dir.path().join("pin");
    std::fs::write(&pin, format!("{}\n", support::softhsm::USER_PIN)).unwrap();
    signet::signer::set_pkcs11_settings(signet::signer::Pkcs11Settings {
        module: None,
        pin_file: Some(pin.clone()),
    });
    let pki = Pki::new("Acme token");
    // Keys made on the token (they never leave it); their certificates issued here.
    let mut keys = Vec::new();
    for (object, algorithm, extra) in [
        ("rsa", "RSA_PSS_SHA_256", &["--bits", "2048"][..]),
        ("ec", "ECDSA_P256_SHA_256", &[][..]),
    ] {
        let prefix = dir.path().join(format!("token-{object}"));
        let mut args = vec![
            "keygen",
            "--algorithm",
            algorithm,
            "--output",
            path(&prefix),
            "--pkcs11-token",
            "signet",
            "--pkcs11-object",
            object,
            "--pkcs11-pin-file",
            path(&pin),
        ];
        args.extend_from_slice(extra);
        let run = signet(&args);
        assert_eq!(run.code, 0, "keygen on the token: {}", run.stderr);
        let public = std::fs::read_to_string(with_ext(&prefix, ".pub")).unwrap();
        let chain = pki.chain_pem(&public, leaf_params(&format!("token-{object}")));
        let chain_path = dir.path().join(format!("token-{object}.chain.pem"));
        std::fs::write(&chain_path, &chain).unwrap();
        keys.push((
            object,
            algorithm.parse::<Algorithm>().unwrap(),
            chain,
            chain_path,
        ));
    }
    let root = dir.path().join("root.pem");
    std::fs::write(&root, &pki.root_pem).unwrap();

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let listener = loopback_listener();
        let port = listener.local_addr().unwrap().port();
        let registry =
            Registry::start_with_notifications(&format!("http://127.0.0.1:{port}/events"), TOKEN);
        let host = registry.host();
        let rules = keys
            .iter()
            .map(|(object, algorithm, chain, _)| {
                notation_rule(
                    &format!("token-{object}"),
                    format!("{host}/token/rule-{object}/**"),
                    format!("pkcs11:token=signet;object={object}"),
                    *algorithm,
                    chain.clone(),
                    NotationEnvelope::Jws,
                )
            })
            .collect();
        let running = RunningSigner::start(listener, rules, None).await;

        let mut images = Vec::new();
        for (object, algorithm, _, chain_path) in &keys {
            // By the signer, on push.
            let repo = format!("token/rule-{object}/app");
            let digest = registry.push_test_image(&repo, "v1", &repo).await;
            let image = ImageRef::parse(&format!("{host}/{repo}:v1")).unwrap();
            let manifests = wait_for_notation(&image, &digest, 1).await;
            assert_notation_manifest(&manifests[0], &digest, JWS);
            images.push(image);
            // By the CLI, COSE, twice.
            let repo = format!("token/cli-{object}");
            let digest = registry.push_test_image(&repo, "v1", &repo).await;
            let image = ImageRef::parse(&format!("{host}/{repo}:v1")).unwrap();
            let uri = format!(
                "pkcs11:token=signet;object={object}?pin-source=file:{}",
                pin.display()
            );
            for _ in 0..2 {
                let run = sign_notation(
                    &image.to_string(),
                    &uri,
                    chain_path,
                    &[
                        "--notation-envelope",
                        "cose",
                        "--algorithm",
                        &algorithm.to_string(),
                    ],
                );
                assert_eq!(run.code, 0, "{repo}: {}{}", run.stdout, run.stderr);
            }
            let manifests = notation_manifests(&image, &digest).await;
            assert_eq!(manifests.len(), 1, "{repo}: one referrer after two signs");
            assert_notation_manifest(&manifests[0], &digest, COSE);
            images.push(image);
        }
        running.stop().await;

        let yaml = format!(
            "{}---\n{}",
            certificate_attestor_yaml("token-release", &pki.root_pem),
            policy_yaml("token", &format!("{host}/token/**"), &["token-release"]),
        );
        let webhook = TestWebhook::start(
            policy_state_of(&yaml, NoMatch::Allow),
            settings(Duration::from_secs(8)),
            None,
        )
        .await;
        for image in &images {
            let (allowed, message) = admitted(&webhook, &image.to_string()).await;
            assert!(allowed, "{image}: {message}");
            let run = verify_certificate(&image.to_string(), &root);
            assert_eq!(run.code, 0, "{image}: {}{}", run.stdout, run.stderr);
        }
    });
}
