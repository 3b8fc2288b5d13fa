//! `signet keygen --pkcs11-token`, `signet sign --key pkcs11:...`, `signet verify`: a key created on a
//! SoftHSM2 token signs an image in a real registry, and the signature verifies.

// Helpers outside `#[test]` functions fail by panicking, as tests do (clippy.toml covers only
// `#[test]` code).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::path::Path;
use std::process::Command;

use support::{Registry, SoftHsm, USER_PIN};

fn signet(conf: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_signet"))
        .args(args)
        .env("SOFTHSM2_CONF", conf)
        .env_remove("SIGNET_PKCS11_PIN")
        .output()
        .expect("run signet");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_token_key_signs_and_the_signature_verifies() {
    let hsm = SoftHsm::with_token("signet");
    let dir = tempfile::tempdir().unwrap();
    let conf = hsm.conf().to_path_buf();
    let pin_file = hsm.pin_file().to_path_buf();

    let registry = Registry::start();
    let rt = tokio::runtime::Runtime::new().unwrap();
    for (i, alg) in ["RSA_PSS_SHA_256", "RSA_PKCS1_SHA_256", "ECDSA_P256_SHA_256"]
        .into_iter()
        .enumerate()
    {
        let object = format!("release-{i}");
        let prefix = dir.path().join(&object);
        let (code, stdout, stderr) = signet(
            &conf,
            &[
                "keygen",
                "--algorithm",
                alg,
                "--output",
                prefix.to_str().unwrap(),
                "--pkcs11-token",
                "signet",
                "--pkcs11-object",
                &object,
                "--pkcs11-pin-file",
                pin_file.to_str().unwrap(),
            ],
        );
        assert_eq!(code, 0, "keygen on token {alg}: {stderr}");
        assert!(
            stdout.contains("pkcs11:") && !stdout.contains(USER_PIN),
            "the URI is printed, never the PIN: {stdout}"
        );
        assert!(
            !prefix.with_extension("key").exists(),
            "no private key file for a token key"
        );

        let image = format!("{}/hsm/app{i}:v1", registry.host());
        rt.block_on(registry.push_test_image(&format!("hsm/app{i}"), "v1", alg));
        let uri = format!(
            "pkcs11:token=signet;object={object}?pin-source=file:{}",
            pin_file.display()
        );
        let (code, _, stderr) = signet(&conf, &["sign", &image, "--key", &uri, "--algorithm", alg]);
        assert_eq!(code, 0, "sign with token key {alg}: {stderr}");
        let public = prefix.with_extension("pub");
        let (code, stdout, stderr) = signet(
            &conf,
            &[
                "verify",
                &image,
                "--key",
                public.to_str().unwrap(),
                "--algorithm",
                alg,
            ],
        );
        assert_eq!(code, 0, "verify {alg}: {stdout}{stderr}");
    }

    // The token key's type decides the algorithm, as a file key's does: EC yes, RSA must be said.
    let token_key = |object: &str| {
        format!(
            "pkcs11:token=signet;object={object}?pin-source=file:{}",
            pin_file.display()
        )
    };
    let image = format!("{}/hsm/app2:v1", registry.host());
    let (code, _, stderr) = signet(&conf, &["sign", &image, "--key", &token_key("release-2")]);
    assert_eq!(code, 0, "EC token key without --algorithm: {stderr}");
    let image = format!("{}/hsm/app0:v1", registry.host());
    let (code, _, stderr) = signet(&conf, &["sign", &image, "--key", &token_key("release-0")]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.lines().count() == 1
            && stderr.contains("release-0")
            && stderr.contains("--algorithm RSA_PSS_SHA_256"),
        "{stderr}"
    );

    // A wrong PIN is one clear line, exit 2, and no PIN in it.
    let (code, _, stderr) = signet(
        &conf,
        &[
            "sign",
            &image,
            "--key",
            "pkcs11:token=signet;object=release-0?pin-value=9999",
            "--algorithm",
            "RSA_PSS_SHA_256",
        ],
    );
    assert_eq!(code, 2, "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        // The registry's address (a random port) may hold those digits.
        stderr.to_lowercase().contains("pin")
            && !stderr.replace(&registry.host(), "").contains("9999"),
        "{stderr}"
    );
}
