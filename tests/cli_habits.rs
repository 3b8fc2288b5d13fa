//! The habits cosign and docker users bring to `signet`, checked on the binary against Debian's
//! docker-registry: the key decides the algorithm (RSA excepted), `keygen` defaults to ECDSA
//! P-256 and takes `-o`, `--annotations` / `verify -a k=v`, `-o json`, boolean flags as switches
//! with their variables still read, and no colour codes in logs that do not go to a terminal.

// Helpers outside `#[test]` functions fail by panicking, as tests do (clippy.toml covers only
// `#[test]` code).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::process::Command;

use support::Registry;

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn signet_with(args: &[&str], env: &[(&str, &str)]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_signet"))
        .args(args)
        .env_remove("DOCKER_CONFIG")
        .env_remove("NO_COLOR")
        .envs(env.iter().copied())
        .output()
        .expect("run signet");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn signet(args: &[&str]) -> Run {
    signet_with(args, &[])
}

fn pushed(registry: &Registry, repo: &str) -> String {
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(registry.push_test_image(repo, "v1", repo));
    format!("{}/{repo}:v1", registry.host())
}

#[test]
fn the_key_decides_the_algorithm_and_keygen_defaults_to_p256() {
    let registry = Registry::start();
    let image = pushed(&registry, "habits/app");
    let dir = tempfile::tempdir().unwrap();
    let prefix = dir.path().join("cosign");
    let run = signet(&["keygen", "-o", prefix.to_str().unwrap()]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let public = std::fs::read_to_string(prefix.with_extension("pub")).unwrap();
    signet::crypto::PublicKey::from_pem(&public, signet::crypto::Algorithm::EcdsaP256Sha256)
        .expect("keygen writes an ECDSA P-256 key by default");

    let key = format!("file:{}", prefix.with_extension("key").display());
    let run = signet(&["sign", &image, "--key", &key]);
    assert_eq!(run.code, 0, "sign without --algorithm: {}", run.stderr);
    let pub_path = prefix.with_extension("pub");
    let run = signet(&[
        "verify",
        &image,
        "--key",
        pub_path.to_str().unwrap(),
        "-o",
        "json",
    ]);
    assert_eq!(run.code, 0, "verify without --algorithm: {}", run.stderr);
    let answer: serde_json::Value = serde_json::from_str(&run.stdout).expect("-o json");
    assert_eq!(answer["verified"], true, "{answer}");

    // Ed25519 and P-384 keys decide theirs too.
    for algorithm in ["ED25519", "ECDSA_P384_SHA_384"] {
        let prefix = dir.path().join(algorithm);
        let run = signet(&[
            "keygen",
            "--algorithm",
            algorithm,
            "-o",
            prefix.to_str().unwrap(),
        ]);
        assert_eq!(run.code, 0, "{}", run.stderr);
        let key = format!("file:{}", prefix.with_extension("key").display());
        let run = signet(&["sign", &image, "--key", &key]);
        assert_eq!(run.code, 0, "{algorithm}: {}", run.stderr);
        let run = signet(&[
            "verify",
            &image,
            "--key",
            prefix.with_extension("pub").to_str().unwrap(),
        ]);
        assert_eq!(run.code, 0, "{algorithm}: {}{}", run.stdout, run.stderr);
    }

    // An RSA key cannot tell PSS from PKCS#1 v1.5: the user is told to say which.
    let rsa = dir.path().join("rsa");
    let run = signet(&[
        "keygen",
        "--algorithm",
        "RSA_PSS_SHA_256",
        "--bits",
        "2048",
        "-o",
        rsa.to_str().unwrap(),
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let rsa_key = format!("file:{}", rsa.with_extension("key").display());
    let rsa_pub = rsa.with_extension("pub");
    for run in [
        signet(&["sign", &image, "--key", &rsa_key]),
        signet(&["verify", &image, "--key", rsa_pub.to_str().unwrap()]),
    ] {
        assert_eq!(run.code, 2, "{}{}", run.stdout, run.stderr);
        let line = run.stderr.trim_end();
        assert!(
            line.lines().count() == 1
                && line.contains("an RSA key")
                && line.contains("--algorithm RSA_PSS_SHA_256")
                && line.contains("--algorithm RSA_PKCS1_SHA_256")
                && line.contains("rsa."),
            "{line}"
        );
    }
    let run = signet(&[
        "sign",
        &image,
        "--key",
        &rsa_key,
        "--algorithm",
        "RSA_PSS_SHA_256",
    ]);
    assert_eq!(run.code, 0, "RSA said explicitly: {}", run.stderr);
}

#[test]
fn verify_a_requires_the_annotations_signed() {
    let registry = Registry::start();
    let image = pushed(&registry, "annotated/app");
    let dir = tempfile::tempdir().unwrap();
    let prefix = dir.path().join("k");
    assert_eq!(signet(&["keygen", "-o", prefix.to_str().unwrap()]).code, 0);
    let key = format!("file:{}", prefix.with_extension("key").display());
    let public = prefix.with_extension("pub");
    let public = public.to_str().unwrap();
    let run = signet(&[
        "sign",
        &image,
        "--key",
        &key,
        "--annotations",
        "env=prod,build=42",
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);

    let run = signet(&[
        "verify", &image, "--key", public, "-a", "env=prod", "-a", "build=42",
    ]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    let run = signet(&["verify", &image, "--key", public, "-a", "env=dev"]);
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout
            .contains(r#"annotation "env" is "prod", not "dev""#),
        "{}",
        run.stdout
    );
    let run = signet(&["verify", &image, "--annotations", "team=a", "--key", public]);
    assert_eq!(run.code, 1);
    assert!(
        run.stdout
            .contains(r#"annotation "team" required but absent"#),
        "{}",
        run.stdout
    );
}

#[test]
fn logs_written_to_a_file_carry_no_colour_codes() {
    let registry = Registry::start();
    let image = pushed(&registry, "plain/app");
    let dir = tempfile::tempdir().unwrap();
    let prefix = dir.path().join("k");
    assert_eq!(signet(&["keygen", "-o", prefix.to_str().unwrap()]).code, 0);
    let run = signet(&[
        "--log",
        "debug",
        "verify",
        &image,
        "--key",
        prefix.with_extension("pub").to_str().unwrap(),
    ]);
    assert_eq!(run.code, 1, "unsigned: {}{}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains("DEBUG"),
        "debug lines were logged: {}",
        run.stderr
    );
    assert!(
        !run.stderr.contains('\u{1b}'),
        "colour codes: {:?}",
        run.stderr
    );
}

#[test]
fn boolean_flags_are_switches_and_their_variables_still_count() {
    // The webhook parses its flags, then fails on the missing folder: parsing got through.
    let folder_error = "cannot read policy folder /nonexistent/signet";
    for args in [
        &[
            "--mutate",
            "--breakglass",
            "--leader-election=false",
            "--pull-secrets",
        ][..],
        &["--mutate=false", "--breakglass=true"],
    ] {
        let mut all = vec![
            "webhook",
            "--tls-self-signed",
            "--policy-dir",
            "/nonexistent/signet",
        ];
        all.extend_from_slice(args);
        let run = signet(&all);
        assert_eq!(run.code, 2);
        assert!(
            run.stderr.contains(folder_error),
            "{args:?}: {}",
            run.stderr
        );
    }
    let run = signet(&[
        "webhook",
        "--tls-self-signed=false",
        "--policy-dir",
        "/nonexistent/signet",
    ]);
    assert!(run.stderr.contains("TLS is required"), "{}", run.stderr);
    // The variable alone turns the switch on, or off.
    let webhook = ["webhook", "--policy-dir", "/nonexistent/signet"];
    let run = signet_with(&webhook, &[("SIGNET_TLS_SELF_SIGNED", "true")]);
    assert!(run.stderr.contains(folder_error), "{}", run.stderr);
    let run = signet_with(&webhook, &[("SIGNET_TLS_SELF_SIGNED", "false")]);
    assert!(run.stderr.contains("TLS is required"), "{}", run.stderr);
    let run = signet_with(
        &[
            "webhook",
            "--tls-self-signed",
            "--policy-dir",
            "/nonexistent/signet",
        ],
        &[("SIGNET_MUTATE", "maybe")],
    );
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("invalid value 'maybe'"),
        "{}",
        run.stderr
    );
}
