//! `signet signer` with a `pkcs11:` SigningRule on SoftHSM2 (token in a temporary folder through
//! `SOFTHSM2_CONF`): a push notified by `docker-registry` is signed on the token and `signet
//! verify` accepts it; a wrong PIN, a missing token or a missing key file stop the signer at start
//! with one clear line.

// Helpers outside `#[test]` functions fail by panicking, as tests do (clippy.toml covers only
// `#[test]` code).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use signet::crd::{SigningKeyRef, SigningRule, SigningRuleSpec, Trigger};
use signet::crypto::Algorithm;
use signet::signature::SignatureType;
use support::signer::*;
use support::{Registry, SoftHsm};

fn token_rule(name: &str, scope: String, uri: String, algorithm: Algorithm) -> SigningRule {
    SigningRule::new(
        name,
        SigningRuleSpec {
            scope: vec![scope],
            key: SigningKeyRef {
                reference: uri,
                id: None,
                certificate_chain: None,
            },
            algorithm,
            signature_type: SignatureType::Default,
            trigger: Trigger::Automatic,
            formats: signet::signature::SignatureFormat::ALL.to_vec(),
            notation_envelope: Default::default(),
        },
    )
}

fn start_signer(conf: &Path, pin: &Path, dir: &Path, policies: &Path, port: u16) -> Child {
    signer_process(Command::new(signet_binary()), dir, policies, port)
        .arg("--pkcs11-pin-file")
        .arg(pin)
        .env("SOFTHSM2_CONF", conf)
        .spawn()
        .unwrap()
}

/// Waits for a process that must exit on its own; returns its exit code and stderr.
fn exit_of(mut child: Child) -> (i32, String) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            use std::io::Read;
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            return (status.code().unwrap_or(-1), err);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the signer did not stop on a bad key");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_key_signs_pushes_and_bad_keys_stop_the_signer_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let hsm = SoftHsm::with_token("signet");
    let (conf, pin) = (hsm.conf().to_path_buf(), hsm.pin_file().to_path_buf());
    let prefix = dir.path().join("hsm-release");
    let keygen = Command::new(env!("CARGO_BIN_EXE_signet"))
        .args(["keygen", "--algorithm", "RSA_PSS_SHA_256", "--output"])
        .arg(&prefix)
        .args([
            "--pkcs11-token",
            "signet",
            "--pkcs11-object",
            "release",
            "--pkcs11-pin-file",
        ])
        .arg(&pin)
        .env("SOFTHSM2_CONF", &conf)
        .output()
        .unwrap();
    assert!(
        keygen.status.success(),
        "{}",
        String::from_utf8_lossy(&keygen.stderr)
    );
    let public = TestKey {
        private: PathBuf::new(),
        public: prefix.with_extension("pub"),
        algorithm: Algorithm::RsaPssSha256,
    };

    let port = support::closed_port();
    let registry =
        Registry::start_with_notifications(&format!("http://127.0.0.1:{port}/events"), TOKEN);
    let host = registry.host();
    // Rules name the token and object only: module and PIN are the signer's flags.
    let uri = |token: &str| format!("pkcs11:token={token};object=release");
    let policies = policy_dir(
        dir.path(),
        &[token_rule(
            "hsm",
            format!("{host}/hsm/**"),
            uri("signet"),
            Algorithm::RsaPssSha256,
        )],
    );
    let mut signer = start_signer(&conf, &pin, dir.path(), &policies, port);
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "the signer did not listen");
        assert!(
            signer.try_wait().unwrap().is_none(),
            "the signer exited: {:?}",
            signer.wait_with_output()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let digest = registry.push_test_image("hsm/app", "v1", "hsm").await;
    wait_for_signatures(
        &registry,
        &[("hsm/app:v1".into(), digest.clone())],
        1,
        Duration::from_secs(20),
    )
    .await;
    let (code, out) = signet_verify(
        &format!("{host}/hsm/app:v1"),
        &public,
        SignatureType::Default,
    );
    assert_eq!(code, 0, "{out}");
    let _ = signer.kill();
    let _ = signer.wait();

    // Keys that cannot be used are one clear line at start, exit 2, and never show the PIN.
    let wrong_pin = dir.path().join("wrong-pin");
    std::fs::write(&wrong_pin, "9999\n").unwrap();
    let broken = [
        (uri("signet"), &wrong_pin, "pin"),
        (uri("no-such-token"), &pin, "no-such-token"),
        (
            format!("file:{}", dir.path().join("missing.key").display()),
            &pin,
            "missing.key",
        ),
        // Review item 11a: a rule may not carry a PIN or choose the module.
        (
            format!("{}?pin-value=1234", uri("signet")),
            &pin,
            "may not name pin-value",
        ),
        (
            format!("{}?module-path=/tmp/evil.so", uri("signet")),
            &pin,
            "may not name module-path",
        ),
    ];
    for (i, (reference, pin_file, expected)) in broken.into_iter().enumerate() {
        let folder = dir.path().join(format!("broken-{i}"));
        std::fs::create_dir(&folder).unwrap();
        let policies = policy_dir(
            &folder,
            &[token_rule(
                "hsm",
                format!("{host}/hsm/**"),
                reference,
                Algorithm::RsaPssSha256,
            )],
        );
        let (code, err) = exit_of(start_signer(
            &conf,
            pin_file,
            &folder,
            &policies,
            support::closed_port(),
        ));
        assert_eq!(code, 2, "{err}");
        let last = err.lines().last().unwrap_or_default().to_lowercase();
        if expected.starts_with("may not name") {
            // Refused when the folder is loaded, before any key is opened.
            assert!(
                last.starts_with("error: ")
                    && last.contains("(signingrule hsm): spec.key.ref")
                    && last.contains(expected),
                "{err}"
            );
            assert!(!err.contains("1234"), "{err}");
            continue;
        }
        assert!(
            last.starts_with("error: ")
                && last.contains("signingrule \"hsm\"")
                && last.contains(expected),
            "{err}"
        );
        assert_eq!(
            last.matches("key store:").count(),
            1,
            "the cause is said once: {err}"
        );
        assert!(!err.contains("9999") && !err.contains("1234"), "{err}");
    }
}
