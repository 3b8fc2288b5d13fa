//! For the KMS tests (`kms_aws`, `kms_alibaba`): running `signet` with exactly the cloud
//! environment a test gives (the caller's own cloud variables removed), `signet public-key`,
//! `signet signer` on a policy folder, and waiting for a signer that must stop.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use signet::crd::{SigningKeyRef, SigningRule, SigningRuleSpec, Trigger};
use signet::crypto::Algorithm;
use signet::signature::SignatureType;

use super::signer::{TOKEN, TestKey, policy_dir};

/// Cloud environment variables given to a `signet` process.
pub type CloudEnv = [(&'static str, String)];

/// Variables of the caller's environment that would change which credentials or endpoints
/// signet uses.
const CLOUD_VARIABLES: [&str; 29] = [
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_ROLE_ARN",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_KMS",
    "AWS_ENDPOINT_URL_STS",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
    "ALIBABA_CLOUD_ACCESS_KEY_ID",
    "ALIBABA_CLOUD_ACCESS_KEY_SECRET",
    "ALIBABA_CLOUD_SECURITY_TOKEN",
    "ALIBABA_CLOUD_ROLE_ARN",
    "ALIBABA_CLOUD_OIDC_PROVIDER_ARN",
    "ALIBABA_CLOUD_OIDC_TOKEN_FILE",
    "ALIBABA_CLOUD_STS_ENDPOINT",
    "SIGNET_ALIBABA_KMS_ENDPOINT",
    "AWS_PROFILE",
    "AWS_SHARED_CREDENTIALS_FILE",
    "AWS_CONFIG_FILE",
    "AWS_EC2_METADATA_SERVICE_ENDPOINT",
    "ALIBABA_CLOUD_ECS_METADATA",
    "SIGNET_ALIBABA_ECS_METADATA_ENDPOINT",
    "AWS_DEFAULT_PROFILE",
];

/// `signet` with the cloud environment `env` and nothing else of the caller's; metadata services
/// are off for both clouds so that no test reaches for a metadata address, and the AWS shared
/// files are ones that do not exist, so that no file of the caller's home is read (a test that
/// wants `~/.aws` gives these variables empty, which signet treats as unset).
pub fn command(env: &[(&str, String)]) -> Command {
    let mut cmd = Command::new(super::signer::signet_binary());
    for name in CLOUD_VARIABLES {
        cmd.env_remove(name);
    }
    cmd.env("AWS_EC2_METADATA_DISABLED", "true")
        .env("ALIBABA_CLOUD_ECS_METADATA_DISABLED", "true")
        .env(
            "AWS_SHARED_CREDENTIALS_FILE",
            "/nonexistent/signet-test/credentials",
        )
        .env("AWS_CONFIG_FILE", "/nonexistent/signet-test/config");
    for (name, value) in env {
        cmd.env(name, value);
    }
    cmd
}

/// Runs `signet ARGS`: exit code, stdout, stderr.
pub fn signet(env: &[(&str, String)], args: &[&str]) -> (i32, String, String) {
    let out = command(env).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `signet public-key --key KEY --algorithm A -o OUT`, as a verification key.
pub fn public_key(env: &[(&str, String)], key: &str, algorithm: &str, out: &Path) -> TestKey {
    let (code, _, stderr) = signet(
        env,
        &[
            "public-key",
            "--key",
            key,
            "--algorithm",
            algorithm,
            "-o",
            out.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "public-key {key}: {stderr}");
    assert!(
        std::fs::read_to_string(out)
            .unwrap()
            .starts_with("-----BEGIN PUBLIC KEY-----")
    );
    TestKey {
        private: Default::default(),
        public: out.to_path_buf(),
        algorithm: algorithm.parse().unwrap(),
    }
}

/// An Automatic, Default SigningRule over `scope` with a KMS key.
pub fn kms_rule(name: &str, scope: String, reference: String, algorithm: Algorithm) -> SigningRule {
    SigningRule::new(
        name,
        SigningRuleSpec {
            scope: vec![scope],
            key: SigningKeyRef {
                reference,
                id: Some(format!("{name}-kms")),
                certificate_chain: None,
            },
            algorithm,
            signature_type: SignatureType::Default,
            formats: signet::signature::SignatureFormat::ALL.to_vec(),
            notation_envelope: Default::default(),
            trigger: Trigger::Automatic,
        },
    )
}

/// `signet signer` on `policies`, listening on `port`, with the cloud environment `env`.
pub fn start_signer(env: &[(&str, String)], dir: &Path, policies: &Path, port: u16) -> Child {
    super::signer::signer_process(command(env), dir, policies, port)
        .spawn()
        .unwrap()
}

/// Waits until the signer listens on `port` (fails if it exits first).
pub fn wait_listening(signer: &mut Child, port: u16) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "the signer did not listen");
        if let Some(status) = signer.try_wait().unwrap() {
            let mut err = String::new();
            std::io::Read::read_to_string(signer.stderr.as_mut().unwrap(), &mut err).unwrap();
            panic!("the signer exited ({status}): {err}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits for a signer that must stop on its own; its exit code and stderr.
pub fn exit_of(mut child: Child) -> (i32, String) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
            return (status.code().unwrap_or(-1), err);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the signer did not stop on an unusable key");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Each of `broken` (a key reference, an algorithm and what the error must say) as the one rule
/// `name` over `scope`: the signer refuses to start, exits 2 and its last line says what was
/// wrong, without `secret` anywhere in what it wrote.
pub fn assert_unusable_rules_stop_the_signer(
    env: &CloudEnv,
    dir: &Path,
    (name, scope): (&str, &str),
    broken: Vec<(String, Algorithm, &str)>,
    secret: &str,
) {
    for (i, (reference, algorithm, expected)) in broken.into_iter().enumerate() {
        let folder = dir.join(format!("broken-{i}"));
        std::fs::create_dir(&folder).unwrap();
        let policies = policy_dir(
            &folder,
            &[kms_rule(
                name,
                scope.to_string(),
                reference.clone(),
                algorithm,
            )],
        );
        let (code, err) = exit_of(start_signer(env, &folder, &policies, super::closed_port()));
        assert_eq!(code, 2, "{reference}: {err}");
        let last = err.trim_end().lines().last().unwrap_or_default();
        assert!(
            last.contains(expected),
            "{reference}: expected {expected:?}, got {err}"
        );
        assert!(!err.contains(secret), "{err}");
    }
}

/// The value of the signer's `signet_signer_kms_calls_total` series for `provider`/`outcome`.
pub async fn kms_calls(port: u16, provider: &str, outcome: &str) -> f64 {
    let metrics = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let line = metrics
        .lines()
        .find(|l| {
            l.starts_with("signet_signer_kms_calls_total{")
                && l.contains(&format!("provider=\"{provider}\""))
                && l.contains(&format!("outcome=\"{outcome}\""))
        })
        .unwrap_or_else(|| panic!("no KMS call metric for {provider}/{outcome} in:\n{metrics}"));
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

/// A policy folder as a cluster would hold it: for each (attestor name, verification key, image
/// glob), an Attestor with the key and a ClusterVerificationPolicy requiring it for the images.
/// `signet verify --policy-dir` judges with it as admission does.
pub fn admission_policies(dir: &Path, entries: &[(&str, &TestKey, String)]) -> std::path::PathBuf {
    let folder = dir.join("admission");
    std::fs::create_dir_all(&folder).unwrap();
    let mut text = String::new();
    for (name, key, images) in entries {
        let pem: String = std::fs::read_to_string(&key.public)
            .unwrap()
            .lines()
            .map(|l| format!("      {l}\n"))
            .collect();
        text.push_str(&format!(
            "---\napiVersion: signet.dev/v1alpha1\nkind: Attestor\nmetadata:\n  name: {name}\nspec:\n  \
             keys:\n  - id: {name}-kms\n    algorithm: {}\n    publicKey: |\n{pem}\
             ---\napiVersion: signet.dev/v1alpha1\nkind: ClusterVerificationPolicy\nmetadata:\n  name: {name}\n\
             spec:\n  images: [\"{images}\"]\n  attestors: [{name}]\n",
            key.algorithm
        ));
    }
    std::fs::write(folder.join("policies.yaml"), text).unwrap();
    folder
}

/// `signet verify IMAGE --policy-dir DIR`: the exit code (0 admitted, 1 denied) and the output.
pub fn judge(image: &str, policies: &Path) -> (i32, String) {
    let (code, stdout, stderr) = signet(
        &[],
        &["verify", image, "--policy-dir", policies.to_str().unwrap()],
    );
    (code, format!("{stdout}{stderr}"))
}

/// The webhook (this crate's admission server over real TLS, started in the test process) judging
/// with the policy folder of [`admission_policies`], as the API server would call it.
pub async fn admission_webhook(policies: &Path) -> super::webhook::TestWebhook {
    let yaml = std::fs::read_to_string(policies.join("policies.yaml")).unwrap();
    super::webhook::TestWebhook::start(
        super::webhook::policy_state_of(&yaml, signet::policy::NoMatch::Allow),
        super::webhook::settings(Duration::from_secs(10)),
        None,
    )
    .await
}

/// Whether `webhook` admits a Pod running `image` (an API-server-shaped Pod review at
/// `/validate`), and the message of its answer.
pub async fn admitted(webhook: &super::webhook::TestWebhook, image: &str) -> (bool, String) {
    let answer = webhook
        .review("/validate", super::webhook::pod_review(image))
        .await;
    let allowed = answer["allowed"]
        .as_bool()
        .unwrap_or_else(|| panic!("no verdict in {answer}"));
    let message = answer["status"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    (allowed, message)
}

/// Pushes `repo:tag` to `registry` (notifying a running signer), waits until the signer has
/// signed it, and checks that `signet verify` accepts it under `public` (`Default` type).
pub async fn push_signed_and_verified(
    registry: &super::Registry,
    repo: &str,
    tag: &str,
    public: &TestKey,
) {
    let digest = registry.push_test_image(repo, tag, tag).await;
    super::signer::wait_for_signatures(
        registry,
        &[(format!("{repo}:{tag}"), digest)],
        1,
        Duration::from_secs(30),
    )
    .await;
    let image = format!("{}/{repo}:{tag}", registry.host());
    let (code, out) = super::signer::signet_verify(&image, public, SignatureType::Default);
    assert_eq!(code, 0, "{image}: {out}");
}
