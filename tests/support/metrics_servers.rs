//! The real `signet webhook` and `signet signer` processes for the monitoring tests
//! (`support::metrics_servers`): each with TLS on its main port and `/metrics` on a plain-HTTP
//! port (`--metrics-listen`), over one policy folder.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::closed_port;

/// A child process killed when dropped; its log is kept in a file for failure messages.
pub struct Process {
    pub child: Child,
    pub log: PathBuf,
}

impl Process {
    fn spawn(args: &[String], log: PathBuf) -> Process {
        let child = Command::new(super::signer::signet_binary())
            .args(args)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("spawn signet");
        Process { child, log }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A serving certificate for 127.0.0.1, issued by a fresh CA, that expires at a known second;
/// returns the certificate and key files, the expiry, and the CA (PEM) a client trusts.
fn certificate(
    dir: &Path,
    name: &str,
    not_after: (i32, u8, u8),
) -> (PathBuf, PathBuf, i64, String) {
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, rcgen::KeyPair::generate().unwrap())
        .unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
    params.not_after = rcgen::date_time_ymd(not_after.0, not_after.1, not_after.2);
    let expiry = params.not_after.unix_timestamp();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &ca).unwrap();
    let cert_path = dir.join(format!("{name}.crt"));
    let key_path = dir.join(format!("{name}.key"));
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    (cert_path, key_path, expiry, ca.pem())
}

/// A policy folder with one Attestor, one ClusterVerificationPolicy (for images of `registry`)
/// and one SigningRule; returns the folder and the rule's private key file.
fn policy_folder(dir: &Path, registry: &str) -> (PathBuf, PathBuf) {
    let keys = dir.join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    let key = super::signer::key(&keys, "release", signet::crypto::Algorithm::EcdsaP256Sha256);
    let public: String = std::fs::read_to_string(&key.public)
        .unwrap()
        .lines()
        .map(|l| format!("      {l}\n"))
        .collect();
    let folder = dir.join("policies");
    std::fs::create_dir_all(&folder).unwrap();
    let text = format!(
        "apiVersion: signet.dev/v1alpha1\nkind: Attestor\nmetadata:\n  name: release\nspec:\n  \
         keys:\n  - id: release-key\n    algorithm: ECDSA_P256_SHA_256\n    publicKey: |\n{public}\
         ---\napiVersion: signet.dev/v1alpha1\nkind: ClusterVerificationPolicy\n\
         metadata:\n  name: prod\nspec:\n  images: [\"{registry}/prod/**\"]\n  attestors: [release]\n\
         ---\napiVersion: signet.dev/v1alpha1\nkind: SigningRule\nmetadata:\n  name: release\nspec:\n  \
         scope: [\"127.0.0.1:1/prod/**\"]\n  key: {{ref: \"file:{}\"}}\n  algorithm: ECDSA_P256_SHA_256\n",
        key.private.display(),
    );
    std::fs::write(folder.join("policies.yaml"), text).unwrap();
    (folder, key.private)
}

/// A GET, with `accept` when given: the status, the content type and the body; `None` when no
/// answer came.
pub async fn get(
    client: &reqwest::Client,
    url: &str,
    accept: Option<&str>,
) -> Option<(u16, String, String)> {
    let mut request = client.get(url);
    if let Some(accept) = accept {
        request = request.header("accept", accept);
    }
    let response = request.send().await.ok()?;
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    Some((status, content_type, response.text().await.ok()?))
}

async fn wait_ready(client: &reqwest::Client, base: &str, process: &Process) {
    let started = Instant::now();
    loop {
        if let Some((200, _, _)) = get(client, &format!("{base}/readyz"), None).await {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{base} not ready; log:\n{}",
            process.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The real webhook and signer, each with TLS on its main port and a plain-HTTP metrics port,
/// over one policy folder; both ready.
pub struct Servers {
    pub dir: tempfile::TempDir,
    pub registry: String,
    pub policies: PathBuf,
    pub private_key: PathBuf,
    pub webhook_port: u16,
    pub webhook_ca: String,
    pub webhook_expiry: i64,
    pub signer_expiry: i64,
    pub webhook_base: String,
    pub signer_base: String,
    pub client: reqwest::Client,
    _webhook: Process,
    _signer: Process,
}

impl Servers {
    pub async fn start() -> Servers {
        let dir = tempfile::tempdir().unwrap();
        // A registry address nothing listens on: lookups fail at once, as "unreachable".
        let registry = format!("127.0.0.1:{}", closed_port());
        let (policies, private_key) = policy_folder(dir.path(), &registry);
        let (webhook_cert, webhook_key, webhook_expiry, webhook_ca) =
            certificate(dir.path(), "webhook", (2031, 7, 15));
        let (signer_cert, signer_key, signer_expiry, _) =
            certificate(dir.path(), "signer", (2030, 1, 2));
        let token = dir.path().join("token");
        std::fs::write(&token, "metrics-test-token").unwrap();
        let (webhook_port, webhook_metrics) = (closed_port(), closed_port());
        let (signer_port, signer_metrics) = (closed_port(), closed_port());
        let path = |p: &Path| p.display().to_string();
        let webhook = Process::spawn(
            &[
                "webhook".into(),
                "--listen".into(),
                format!("127.0.0.1:{webhook_port}"),
                "--metrics-listen".into(),
                format!("127.0.0.1:{webhook_metrics}"),
                "--tls-cert".into(),
                path(&webhook_cert),
                "--tls-key".into(),
                path(&webhook_key),
                "--policy-dir".into(),
                path(&policies),
            ],
            dir.path().join("webhook.log"),
        );
        let signer = Process::spawn(
            &[
                "signer".into(),
                "--listen".into(),
                format!("127.0.0.1:{signer_port}"),
                "--metrics-listen".into(),
                format!("127.0.0.1:{signer_metrics}"),
                "--tls-cert".into(),
                path(&signer_cert),
                "--tls-key".into(),
                path(&signer_key),
                "--token-file".into(),
                path(&token),
                "--policy-dir".into(),
                path(&policies),
                "--reconcile-interval".into(),
                "0".into(),
                "--workers".into(),
                "3".into(),
            ],
            dir.path().join("signer.log"),
        );
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        let webhook_base = format!("http://127.0.0.1:{webhook_metrics}");
        let signer_base = format!("http://127.0.0.1:{signer_metrics}");
        wait_ready(&client, &webhook_base, &webhook).await;
        wait_ready(&client, &signer_base, &signer).await;
        Servers {
            dir,
            registry,
            policies,
            private_key,
            webhook_port,
            webhook_ca,
            webhook_expiry,
            signer_expiry,
            webhook_base,
            signer_base,
            client,
            _webhook: webhook,
            _signer: signer,
        }
    }
}
