//! Graceful drain of the real `signet webhook` process: on SIGTERM it keeps accepting for
//! `--shutdown-delay` while `/readyz` answers 503 at once, then stops accepting, finishes what is
//! in flight and exits. A rolling update of a `failurePolicy: Fail` webhook then loses no
//! admission.

// Helpers outside `#[test]` functions fail by panicking, as tests do (clippy.toml covers only
// `#[test]` code).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use support::{Answer, StatusServer};

const DELAY: Duration = Duration::from_secs(2);
/// How long the fake registry holds each request before answering 404.
const REGISTRY_HOLD: Duration = Duration::from_millis(1500);

/// A CA and a leaf for 127.0.0.1; the client trusts only the CA.
struct Certs {
    ca_pem: String,
    cert: PathBuf,
    key: PathBuf,
}

fn certs(dir: &Path) -> Certs {
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_key = rcgen::KeyPair::generate().expect("CA key");
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).expect("CA");
    let leaf_params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).expect("leaf");
    let leaf_key = rcgen::KeyPair::generate().expect("leaf key");
    let leaf = leaf_params.signed_by(&leaf_key, &ca).expect("leaf");
    let cert = dir.join("tls.crt");
    let key = dir.join("tls.key");
    std::fs::write(&cert, leaf.pem()).expect("tls.crt");
    std::fs::write(&key, leaf_key.serialize_pem()).expect("tls.key");
    Certs {
        ca_pem: ca.pem(),
        cert,
        key,
    }
}

fn https_client(ca_pem: &str) -> reqwest::Client {
    support::tls_client::https_client(ca_pem, Duration::from_secs(20))
}

/// A "registry" on loopback that holds every request for [`REGISTRY_HOLD`], then answers 404:
/// an admission governed by a policy on it stays in flight that long.
fn slow_registry() -> StatusServer {
    StatusServer::answering(Answer::new(404).after(REGISTRY_HOLD))
}

fn policy_folder(dir: &Path, slow_host: &str) {
    let key = rcgen::KeyPair::generate().expect("key");
    let pem: String = key
        .public_key_pem()
        .lines()
        .map(|l| format!("      {l}\n"))
        .collect();
    let text = format!(
        "apiVersion: signet.dev/v1alpha1\nkind: Attestor\nmetadata:\n  name: release\nspec:\n  \
         keys:\n  - id: release-key\n    algorithm: ECDSA_P256_SHA_256\n    publicKey: |\n{pem}\
         ---\napiVersion: signet.dev/v1alpha1\nkind: ClusterVerificationPolicy\n\
         metadata:\n  name: slow\nspec:\n  images: [\"{slow_host}/slow/**\"]\n  attestors: [release]\n"
    );
    std::fs::write(dir.join("policies.yaml"), text).expect("policies");
}

fn review(fixture: &str, image: Option<&str>) -> Vec<u8> {
    let path = format!(
        "{}/tests/fixtures/admission/{fixture}",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(path).expect("fixture");
    let mut value: serde_json::Value = serde_json::from_str(&text).expect("json");
    if let Some(image) = image {
        let containers = value["request"]["object"]["spec"]["containers"]
            .as_array_mut()
            .expect("containers");
        containers.truncate(1);
        containers[0]["image"] = image.into();
        value["request"]["object"]["spec"]["initContainers"] = serde_json::json!([]);
    }
    serde_json::to_vec(&value).expect("json")
}

struct Webhook {
    child: Child,
}

impl Drop for Webhook {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The address the webhook logged that it listens on. It is started on port 0 so that the kernel
/// picks a free port: a port picked by the test and freed again could be taken by another
/// test's server in between (the three tests here run at once).
async fn listening_address(webhook: &mut Webhook, log_path: &Path) -> String {
    let started = Instant::now();
    loop {
        let log = std::fs::read_to_string(log_path).unwrap_or_default();
        let logged = log
            .lines()
            .find_map(|line| line.split("listening addr=").nth(1))
            .and_then(|rest| rest.split_whitespace().next());
        if let Some(addr) = logged {
            return addr.to_string();
        }
        if let Ok(Some(status)) = webhook.child.try_wait() {
            panic!("the webhook exited ({status}) before listening:\n{log}");
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the webhook did not listen within 20 s:\n{log}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn readyz(client: &reqwest::Client, base: &str) -> Option<u16> {
    client
        .get(format!("{base}/readyz"))
        .send()
        .await
        .ok()
        .map(|r| r.status().as_u16())
}

async fn post(
    client: &reqwest::Client,
    url: &str,
    body: Vec<u8>,
) -> Result<serde_json::Value, String> {
    let response = client
        .post(url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .map_err(|e| format!("{e:?}"))?;
    let status = response.status().as_u16();
    let value: serde_json::Value = response.json().await.map_err(|e| format!("{e:?}"))?;
    if status != 200 {
        return Err(format!("status {status}: {value}"));
    }
    Ok(value)
}

/// The default: one serving thread per core, each connection handed to one of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_without_losing_an_admission() {
    drains_without_losing_an_admission(None).await;
}

/// More serving threads than this machine has cores: the port stops accepting after the delay,
/// and every thread finishes its in-flight requests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_every_serving_thread() {
    drains_without_losing_an_admission(Some("5")).await;
}

/// `--serving-threads 0`: served on the process's shared runtime.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_the_shared_runtime_server() {
    drains_without_losing_an_admission(Some("0")).await;
}

async fn drains_without_losing_an_admission(serving_threads: Option<&str>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let certs = certs(dir.path());
    let slow = slow_registry();
    let slow_host = slow.host();
    let policies = dir.path().join("policies");
    std::fs::create_dir(&policies).expect("mkdir");
    policy_folder(&policies, &slow_host);
    let log_path = dir.path().join("webhook.log");
    let child = Command::new(env!("CARGO_BIN_EXE_signet"))
        .args(["webhook", "--listen", "127.0.0.1:0"])
        .arg("--tls-cert")
        .arg(&certs.cert)
        .arg("--tls-key")
        .arg(&certs.key)
        .arg("--policy-dir")
        .arg(&policies)
        .args([
            "--shutdown-delay",
            "2s",
            "--deadline",
            "6s",
            "--log",
            "info",
        ])
        .args(
            serving_threads
                .map(|threads| ["--serving-threads", threads])
                .iter()
                .flatten(),
        )
        .stdout(Stdio::null())
        // A file, not a pipe: nobody reads a pipe until the end, and a full one would block it.
        .stderr(std::fs::File::create(&log_path).expect("log file"))
        .spawn()
        .expect("spawn signet webhook");
    let mut webhook = Webhook { child };
    let base = format!(
        "https://{}",
        listening_address(&mut webhook, &log_path).await
    );
    let client = https_client(&certs.ca_pem);

    let started = Instant::now();
    while readyz(&client, &base).await != Some(200) {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "webhook not ready:\n{}",
            std::fs::read_to_string(&log_path).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Stream admissions (a ConfigMap: no image, no registry) on two workers until told to stop.
    let stop = Arc::new(AtomicBool::new(false));
    let mut streams = Vec::new();
    for _ in 0..2 {
        let (client, stop) = (client.clone(), Arc::clone(&stop));
        let url = format!("{base}/validate");
        streams.push(tokio::spawn(async move {
            let (mut ok, mut failures) = (0usize, Vec::new());
            while !stop.load(Ordering::SeqCst) {
                match post(&client, &url, review("configmap-create.json", None)).await {
                    Ok(v) if v["response"]["allowed"] == true => ok += 1,
                    Ok(v) => failures.push(format!("not allowed: {v}")),
                    Err(e) => failures.push(e),
                }
            }
            (ok, failures)
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    let pid = webhook.child.id().to_string();
    let status = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(status.success());
    let term = Instant::now();

    // /readyz turns 503 at once (the signal is handled asynchronously: allow a few ms), while
    // the server still answers.
    loop {
        let ready = readyz(&client, &base).await;
        assert!(ready.is_some(), "readyz unreachable right after SIGTERM");
        if ready == Some(503) {
            break;
        }
        assert!(
            term.elapsed() < Duration::from_millis(500),
            "readyz still {ready:?} {:?} after SIGTERM",
            term.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let flipped = term.elapsed();

    // An admission that needs the (slow) registry, sent just before the delay ends: it is in
    // flight when the listener closes, and must still be answered.
    tokio::time::sleep(DELAY - Duration::from_millis(800)).await;
    let slow = {
        let client = client.clone();
        let url = format!("{base}/validate");
        let body = review("pod-create.json", Some(&format!("{slow_host}/slow/app:v1")));
        tokio::spawn(async move {
            let answer = post(&client, &url, body).await;
            (answer, Instant::now())
        })
    };
    tokio::time::sleep(Duration::from_millis(600)).await;
    stop.store(true, Ordering::SeqCst);
    assert!(
        webhook.child.try_wait().expect("try_wait").is_none(),
        "exited during the delay"
    );
    let mut served = 0;
    for stream in streams {
        let (ok, failures) = stream.await.expect("stream");
        assert!(
            failures.is_empty(),
            "admissions lost during the delay: {failures:?}"
        );
        served += ok;
    }
    assert!(served > 10, "only {served} admissions streamed");

    // Past the delay: no new connection is accepted while the slow one finishes.
    tokio::time::sleep((DELAY + Duration::from_millis(200)).saturating_sub(term.elapsed())).await;
    let fresh = https_client(&certs.ca_pem);
    let refused = fresh.get(format!("{base}/healthz")).send().await;
    assert!(
        refused.is_err(),
        "still accepting after the delay: {refused:?}"
    );

    let (answer, answered) = slow.await.expect("slow request");
    let answer = answer.expect("the in-flight admission was answered");
    assert_eq!(answer["response"]["allowed"], false, "{answer}");
    assert!(
        answered.duration_since(term) >= DELAY,
        "answered before the delay ended"
    );

    let exit = loop {
        if let Some(status) = webhook.child.try_wait().expect("try_wait") {
            break status;
        }
        assert!(
            term.elapsed() < Duration::from_secs(15),
            "webhook did not exit"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let exited = Instant::now();
    assert!(exit.success(), "exit status {exit:?}");
    assert!(
        exited >= answered,
        "exited before the in-flight request was answered"
    );
    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
    assert!(log.contains("draining"), "{log}");
    if let Some(threads) = serving_threads.filter(|t| *t != "0") {
        assert!(log.contains(&format!("threads={threads}")), "{log}");
    }
    eprintln!(
        "readyz 503 after {flipped:?}; {served} admissions during the delay; in-flight answered \
         {:?} after SIGTERM; exit {:?} after SIGTERM",
        answered.duration_since(term),
        exited.duration_since(term)
    );
}
