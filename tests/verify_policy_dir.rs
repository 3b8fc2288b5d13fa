//! `signet verify IMAGE --policy-dir DIR`: the whole policy set judged against Debian's
//! docker-registry on a loopback port, as admission would judge it.

// Helpers outside `#[test]` functions fail by panicking, as tests do (clippy.toml covers only
// `#[test]` code).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use signet::crypto::Algorithm;
use support::Registry;

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn signet(args: &[&str]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_signet"))
        .args(args)
        .env_remove("DOCKER_CONFIG")
        .env_remove("SIGNET_NAMESPACE")
        .env_remove("SIGNET_POLICY_DIR")
        .output()
        .expect("run signet");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

const ALG: Algorithm = Algorithm::EcdsaP256Sha256;

/// A key pair made by `signet keygen`: (private key file, public key PEM).
fn keygen(dir: &Path, name: &str) -> (PathBuf, String) {
    let prefix = dir.join(name);
    let run = signet(&[
        "keygen",
        "--algorithm",
        ALG.as_str(),
        "--output",
        prefix.to_str().unwrap(),
    ]);
    assert_eq!(run.code, 0, "keygen: {}", run.stderr);
    let public = std::fs::read_to_string(prefix.with_extension("pub")).unwrap();
    (prefix.with_extension("key"), public)
}

fn sign(image: &str, key: &Path) {
    let run = signet(&[
        "sign",
        image,
        "--key",
        &format!("file:{}", key.display()),
        "--algorithm",
        ALG.as_str(),
    ]);
    assert_eq!(run.code, 0, "sign {image}: {}", run.stderr);
}

fn verify(image: &str, dir: &Path, extra: &[&str]) -> Run {
    let mut args = vec!["verify", image, "--policy-dir", dir.to_str().unwrap()];
    args.extend_from_slice(extra);
    signet(&args)
}

fn attestor(name: &str, pem: &str) -> String {
    let key: String = pem.lines().map(|l| format!("      {l}\n")).collect();
    format!(
        "---\napiVersion: signet.dev/v1alpha1\nkind: Attestor\nmetadata:\n  name: {name}\nspec:\n  \
         keys:\n  - id: {name}-key\n    algorithm: {}\n    publicKey: |\n{key}",
        ALG.as_str()
    )
}

/// The folder: `release` and `qa` attestors; every `prod/**` image needs `release`; `payments`
/// also needs `qa` for them; `team-a` tries `release` on its own images in DryRun.
fn policy_folder(dir: &Path, host: &str, release: &str, qa: &str) {
    let text = format!(
        "{}{}---\napiVersion: signet.dev/v1alpha1\nkind: ClusterVerificationPolicy\n\
         metadata:\n  name: prod-release\nspec:\n  images: [\"{host}/prod/**\"]\n  attestors: [release]\n\
         ---\napiVersion: signet.dev/v1alpha1\nkind: VerificationPolicy\n\
         metadata:\n  name: payments-qa\n  namespace: payments\n\
         spec:\n  images: [\"{host}/prod/**\"]\n  attestors: [qa]\n\
         ---\napiVersion: signet.dev/v1alpha1\nkind: VerificationPolicy\n\
         metadata:\n  name: trial\n  namespace: team-a\n\
         spec:\n  images: [\"{host}/team-a/**\"]\n  attestors: [release]\n  mode: DryRun\n",
        attestor("release", release),
        attestor("qa", qa),
    );
    std::fs::write(dir.join("policies.yaml"), text).unwrap();
}

struct Setup {
    registry: Registry,
    keys: tempfile::TempDir,
    policies: tempfile::TempDir,
    release_key: PathBuf,
    qa_key: PathBuf,
}

fn setup() -> Setup {
    let registry = Registry::start();
    let keys = tempfile::tempdir().unwrap();
    let policies = tempfile::tempdir().unwrap();
    let (release_key, release_pub) = keygen(keys.path(), "release");
    let (qa_key, qa_pub) = keygen(keys.path(), "qa");
    policy_folder(policies.path(), &registry.host(), &release_pub, &qa_pub);
    Setup {
        registry,
        keys,
        policies,
        release_key,
        qa_key,
    }
}

fn push(registry: &Registry, repo: &str, tag: &str) -> (String, String) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let digest = runtime.block_on(registry.push_test_image(repo, tag, &format!("{repo}{tag}")));
    (format!("{}/{repo}:{tag}", registry.host()), digest)
}

#[test]
fn allowed_denied_dry_run_and_namespaced_policies() {
    let s = setup();
    let dir = s.policies.path();

    // Signed by release: the cluster policy passes in any namespace.
    let (signed, digest) = push(&s.registry, "prod/app", "v1");
    sign(&signed, &s.release_key);
    let run = verify(&signed, dir, &[]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout.starts_with(&format!(
            "allowed: {signed} ({digest}) in namespace default\n"
        )),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("policy prod-release (ClusterVerificationPolicy, Enforce): passed: signed by release (key release-key, CosignSignature)"),
        "{}",
        run.stdout
    );

    // The same image in `payments`: its own policy also wants qa, which did not sign.
    let run = verify(&signed, dir, &["--namespace", "payments"]);
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    assert!(run.stdout.starts_with("denied: "), "{}", run.stdout);
    assert!(
        run.stdout.contains("policy payments/payments-qa (VerificationPolicy, Enforce): failed: 0 of 1 required attestors: qa: no signature by key qa-key"),
        "{}",
        run.stdout
    );
    // ... and passes once qa signs.
    sign(&signed, &s.qa_key);
    let run = verify(&signed, dir, &["--namespace", "payments"]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);

    // Unsigned: denied, with the reason.
    let (unsigned, _) = push(&s.registry, "prod/unsigned", "v1");
    let run = verify(&unsigned, dir, &[]);
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout
            .contains("policy prod-release (ClusterVerificationPolicy, Enforce): failed: 0 of 1 required attestors: release: no signature"),
        "{}",
        run.stdout
    );

    // Signed by the wrong attestor's key: denied, naming the key that was expected.
    let (wrong, _) = push(&s.registry, "prod/wrong", "v1");
    sign(&wrong, &s.qa_key);
    let run = verify(&wrong, dir, &["--output", "json"]);
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    let json: serde_json::Value = serde_json::from_str(&run.stdout).expect("JSON verdict");
    assert_eq!(json["allowed"], false);
    assert_eq!(json["namespace"], "default");
    assert_eq!(json["policies"][0]["policy"], "prod-release");
    assert_eq!(
        json["policies"][0]["attestors"][0]["reason"],
        "no signature by key release-key for this digest"
    );

    // DryRun: team-a's unsigned image runs, with the failure reported.
    let (trial, _) = push(&s.registry, "team-a/app", "v1");
    let run = verify(&trial, dir, &["--namespace", "team-a"]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout.starts_with("allowed (DryRun failures): "),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("policy team-a/trial (VerificationPolicy, DryRun): failed, not enforced: 0 of 1 required attestors: release: no signature"),
        "{}",
        run.stdout
    );
    // Outside team-a no policy governs it; --no-match=deny turns that into a denial.
    let run = verify(&trial, dir, &[]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("no policy matches"), "{}", run.stdout);
    let run = verify(&trial, dir, &["--no-match", "deny"]);
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    assert!(run.stdout.starts_with("denied: "), "{}", run.stdout);
    drop(s.keys);
}

#[test]
fn an_unreachable_registry_or_a_bad_folder_is_exit_2() {
    let s = setup();
    let dir = s.policies.path();
    let gone = format!("127.0.0.1:{}/prod/app:v1", support::closed_port());
    // The policy names the running registry's host; point one at the closed port too.
    let text = std::fs::read_to_string(dir.join("policies.yaml"))
        .unwrap()
        .replace(&s.registry.host(), &gone.replace("/prod/app:v1", ""));
    std::fs::write(dir.join("policies.yaml"), text).unwrap();
    let run = verify(&gone, dir, &[]);
    assert_eq!(run.code, 2, "{}{}", run.stdout, run.stderr);
    assert!(run.stdout.starts_with("denied: "), "{}", run.stdout);
    assert!(
        run.stderr.contains("registry look-up failed"),
        "{}",
        run.stderr
    );

    std::fs::write(
        dir.join("broken.yaml"),
        "apiVersion: signet.dev/v1alpha1\nkind: Attestor\nmetadata:\n  name: x\nspec:\n  keys:\n  \
         - algorithm: MD5\n    publicKey: x\n",
    )
    .unwrap();
    let run = verify(&gone, dir, &[]);
    assert_eq!(run.code, 2, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stderr
            .contains("broken.yaml: document 1 (Attestor x): spec.keys[0].algorithm"),
        "{}",
        run.stderr
    );
    assert!(run.stdout.is_empty(), "{}", run.stdout);
}

#[test]
fn key_and_algorithm_are_needed_without_a_policy_dir() {
    let run = signet(&["verify", "registry.example.com/app:v1"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("--key"), "{}", run.stderr);
}
