//! `signet audit --policy-dir DIR --pods FILE`, end to end: the example policy folder and the
//! fixture `kubectl get pods -A -o json` output, pointed at Debian's docker-registry on a
//! loopback port holding the fixture's images (same seeds, so the same digests), some signed.

// Helpers outside `#[test]` functions fail by panicking, as tests do.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use serde_json::Value;
use signet::crypto::{Algorithm, FileKey, SigningKey, generate_key_pair};
use signet::reference::ImageRef;
use signet::registry::SignatureStore;
use signet::signature::SignatureType;
use support::Registry;
use support::webhook::registry_client;

/// Every image of the fixture (`repo:tag` under registry.example.com), and whether it is signed.
const IMAGES: &[(&str, bool)] = &[
    ("prod/web:v2", true),
    ("prod/log-shipper:1.4", false),
    ("prod/migrate:v3", true),
    ("prod/api:v1.1", true),
    ("prod/debug/toolbox:latest", false),
    ("team-a/trainer:2026.11", false),
    ("team-a/notebook:v5", true),
];

struct World {
    _registry: Registry,
    dir: tempfile::TempDir,
    host: String,
}

/// The registry with the fixture's images; the example folder and the fixture rewritten for it.
async fn world() -> World {
    let registry = Registry::start();
    let host = registry.host();
    let fixture = std::fs::read_to_string("tests/fixtures/pods.json").unwrap();
    let pair = generate_key_pair(Algorithm::EcdsaP256Sha256, None).unwrap();
    let signer: Arc<dyn SigningKey> = Arc::new(
        FileKey::from_pem(
            pair.private_key_pem(),
            Algorithm::EcdsaP256Sha256,
            "release-2026",
        )
        .unwrap(),
    );
    let store = SignatureStore::new(registry_client());
    for (repo_tag, signed) in IMAGES {
        let (repo, tag) = repo_tag.rsplit_once(':').unwrap();
        let digest = registry.push_test_image(repo, tag, repo_tag).await;
        assert!(
            fixture.contains(&format!("registry.example.com/{repo}@{digest}")),
            "tests/fixtures/pods.json does not run {repo_tag} at {digest}"
        );
        if *signed {
            let image = ImageRef::parse(&format!("{host}/{repo_tag}")).unwrap();
            signet::registry::sign_image(
                &store,
                &image,
                Arc::clone(&signer),
                SignatureType::Default,
                &BTreeMap::new(),
            )
            .await
            .unwrap();
        }
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("pods.json"),
        fixture.replace("registry.example.com", &host),
    )
    .unwrap();
    let policies = dir.path().join("policies");
    std::fs::create_dir(&policies).unwrap();
    let example = std::fs::read_to_string("examples/policies/signet.yaml").unwrap();
    let start = example.find("      -----BEGIN PUBLIC KEY-----").unwrap();
    let end_marker = "-----END PUBLIC KEY-----\n";
    let end = example.find(end_marker).unwrap() + end_marker.len();
    let key: String = pair
        .public_key_pem()
        .lines()
        .map(|l| format!("      {l}\n"))
        .collect();
    let folder = format!("{}{key}{}", &example[..start], &example[end..]);
    std::fs::write(
        policies.join("signet.yaml"),
        folder.replace("registry.example.com", &host),
    )
    .unwrap();
    World {
        _registry: registry,
        dir,
        host,
    }
}

fn signet(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_signet"))
        .args(args)
        .env_remove("DOCKER_CONFIG")
        .output()
        .expect("run signet");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn path(dir: &Path, name: &str) -> String {
    dir.join(name).to_str().unwrap().to_string()
}

/// (namespace, pod, container, verdict) of each table row.
fn rows(table: &str) -> Vec<(String, String, String, String)> {
    table
        .lines()
        .skip(1)
        .filter(|l| !l.contains(" images in "))
        .map(|l| {
            let cells: Vec<&str> = l.split_whitespace().collect();
            (
                cells[0].to_string(),
                cells[1].to_string(),
                cells[2].to_string(),
                cells[5].to_string(),
            )
        })
        .collect()
}

fn row(ns: &str, pod: &str, container: &str, verdict: &str) -> (String, String, String, String) {
    (ns.into(), pod.into(), container.into(), verdict.into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_folder_judges_the_fixture_pods() {
    let world = world().await;
    let dir = world.dir.path();
    let (policies, pods) = (path(dir, "policies"), path(dir, "pods.json"));

    let (code, table, stderr) = signet(&["audit", "--policy-dir", &policies, "--pods", &pods]);
    assert_eq!(code, 1, "an unsigned sidecar runs in prod: {table}{stderr}");
    assert_eq!(
        rows(&table),
        [
            row("prod", "web-7d4b9c6f5-x2k8p", "app", "pass"),
            row("prod", "web-7d4b9c6f5-x2k8p", "log-shipper", "fail"),
            row("prod", "web-7d4b9c6f5-x2k8p", "migrate", "pass"),
            row("prod", "web-7d4b9c6f5-r7j4n", "app", "pass"),
            row("prod", "web-7d4b9c6f5-r7j4n", "log-shipper", "fail"),
            row("prod", "web-7d4b9c6f5-r7j4n", "migrate", "pass"),
            row("prod", "api-5f6c8d7b9-qm4zt", "api", "pass"),
            // Not started: its tag was resolved in the registry.
            row("prod", "api-5f6c8d7b9-w9d2c", "api", "pass"),
            // Excluded by the policy.
            row("prod", "debug-shell", "shell", "skip"),
            // The DryRun policy only warns.
            row("team-a", "trainer-0", "trainer", "warn"),
            row("team-a", "notebook-6b8f9d4c7-hk2lm", "notebook", "pass"),
            row("kube-system", "coredns-668d6bf9bc-5vq7s", "coredns", "skip"),
        ],
        "{table}"
    );
    let shipper = table.lines().find(|l| l.contains("log-shipper")).unwrap();
    assert!(
        shipper.contains("policy prod-images-are-release-signed: 0 of 1 required attestors"),
        "{shipper}"
    );
    assert!(
        table.ends_with("12 images in 8 pods: 7 pass, 2 fail, 0 error, 1 warn, 2 skip\n"),
        "{table}"
    );

    // The DryRun policy alone, as if enforced: its would-be denial is listed, exit 1.
    let (code, table, _) = signet(&[
        "audit",
        "--policy-dir",
        &policies,
        "--pods",
        &pods,
        "--policy",
        "team-a-images",
    ]);
    assert_eq!(code, 1, "{table}");
    let judged: Vec<_> = rows(&table).into_iter().filter(|r| r.3 != "skip").collect();
    assert_eq!(
        judged,
        [
            row("team-a", "trainer-0", "trainer", "fail"),
            row("team-a", "notebook-6b8f9d4c7-hk2lm", "notebook", "pass"),
        ],
        "{table}"
    );

    // JSON: whole digests, the same verdicts.
    let (code, json, _) = signet(&[
        "audit",
        "--policy-dir",
        &policies,
        "--pods",
        &pods,
        "--output",
        "json",
    ]);
    assert_eq!(code, 1);
    let report: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(report["wouldDeny"], true);
    assert_eq!(report["summary"]["fail"], 2);
    let shipper = &report["results"][1];
    assert_eq!(shipper["container"], "log-shipper");
    assert_eq!(
        shipper["digest"],
        "sha256:1b7df9be0fcb93549d53341a5e47077c95cbe8fc7524be8a8694b31d4cbc0a1e"
    );
    assert_eq!(
        shipper["image"],
        format!("{}/prod/log-shipper:1.4", world.host)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_denied_is_exit_0_and_bad_input_is_named() {
    let world = world().await;
    let dir = world.dir.path();
    let policies = path(dir, "policies");
    // Only the notebook pod: signed, nothing would be denied.
    let all: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("pods.json")).unwrap()).unwrap();
    let notebook = all["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["metadata"]["name"] == "notebook-6b8f9d4c7-hk2lm")
        .unwrap();
    std::fs::write(dir.join("one.json"), notebook.to_string()).unwrap();
    let (code, table, stderr) = signet(&[
        "audit",
        "--policy-dir",
        &policies,
        "--pods",
        &path(dir, "one.json"),
        "--policy",
        "team-a/team-a-images",
    ]);
    assert_eq!(code, 0, "{table}{stderr}");
    assert!(table.contains("1 images in 1 pods: 1 pass"), "{table}");

    let (code, _, stderr) = signet(&[
        "audit",
        "--policy-dir",
        &policies,
        "--pods",
        &path(dir, "one.json"),
        "--policy",
        "nope",
    ]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("--policy nope: no ClusterVerificationPolicy or VerificationPolicy"),
        "{stderr}"
    );
    std::fs::write(dir.join("deploy.json"), r#"{"kind": "Deployment"}"#).unwrap();
    let (code, _, stderr) = signet(&[
        "audit",
        "--policy-dir",
        &policies,
        "--pods",
        &path(dir, "deploy.json"),
    ]);
    assert_eq!(code, 2);
    assert!(stderr.contains("not a Pod or a list of Pods"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
}
