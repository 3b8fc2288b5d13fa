//! The memory-exhaustion finding, reproduced: for each of 8 digest-pinned images, a `.sig` tag
//! whose 128 layers all point at one 1 MiB blob (honestly sized, or claiming a small size). On
//! main before the fix one such image took the webhook from 36 MB to 337 MB, an 8-image pod to
//! 1.96 GB. Here the webhook runs in this process (its own test binary, so no other test shares
//! the memory) and the peak resident set (VmHWM, reset just before) must grow by under 16 MiB.

// Helpers outside `#[test]` functions fail by panicking, as tests do (clippy.toml covers only
// `#[test]` code).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};
use signet::policy::NoMatch;
use signet::reference::ImageRef;
use signet::registry::RegistryClient;
use signet::signature::Descriptor;

use support::Registry;
use support::webhook::{
    TestWebhook, attestor_yaml, fixture, policy_state_of, registry_client, settings,
    write_signature_manifest,
};

const BLOB_BYTES: usize = 1024 * 1024;
const LAYERS: usize = 128;
const IMAGES: usize = 8;

/// `VmRSS` or `VmHWM` of this process, in bytes.
fn proc_status_bytes(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.trim().strip_suffix("kB"))
        .and_then(|kb| kb.trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .unwrap_or_else(|| panic!("no {field} in /proc/self/status"))
}

/// Resets VmHWM to the current resident set (Linux `clear_refs` value 5).
fn reset_peak() {
    std::fs::write("/proc/self/clear_refs", "5")
        .expect("reset VmHWM through /proc/self/clear_refs");
}

/// Writes the attack `.sig` for `digest` in `repo`: `LAYERS` layers naming one `BLOB_BYTES`
/// blob, each declaring `declared` bytes.
async fn push_attack(client: &RegistryClient, host: &str, repo: &str, digest: &str, declared: u64) {
    let image = ImageRef::parse(&format!("{host}/{repo}:latest")).expect("reference");
    let blob: Vec<u8> = (0..BLOB_BYTES).map(|i| (i % 251) as u8).collect();
    let blob_digest = client.push_blob(&image, &blob).await.expect("blob");
    let layer = Descriptor::for_signature(b"x", b"not a signature", &BTreeMap::new());
    let layers: Vec<Descriptor> = (0..LAYERS)
        .map(|_| Descriptor {
            size: declared,
            digest: blob_digest.clone(),
            ..layer.clone()
        })
        .collect();
    write_signature_manifest(client, &image, digest, &layers).await;
}

/// A pod of `images`, as the API server sends it.
fn pod_of(host: &str, images: &[String]) -> Vec<u8> {
    let mut value: Value =
        serde_json::from_slice(&fixture("pod-create.json", host, None)).expect("fixture");
    let spec = &mut value["request"]["object"]["spec"];
    spec["initContainers"] = json!([]);
    spec["containers"] = images
        .iter()
        .enumerate()
        .map(|(i, image)| json!({"name": format!("c{i}"), "image": image}))
        .collect();
    serde_json::to_vec(&value).expect("JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crafted_signature_tags_do_not_exhaust_memory() {
    let registry = Registry::start();
    let host = registry.host();
    let client = registry_client();
    let key = signet::crypto::generate_key_pair(signet::crypto::Algorithm::EcdsaP256Sha256, None)
        .expect("key");
    let yaml = format!(
        "{}---\napiVersion: signet.dev/v1alpha1\nkind: ClusterVerificationPolicy\n\
         metadata:\n  name: prod\nspec:\n  images: [\"{host}/prod/**\"]\n  attestors: [release]\n  \
         signatureType: Simple\n",
        attestor_yaml("release", &key.public_key_pem()),
    );
    let mut images = Vec::new();
    for i in 0..IMAGES {
        let repo = format!("prod/evil{i}");
        // The pinned digest needs no image, only its `.sig` tag.
        let digest = format!("sha256:{:064x}", i + 1);
        // Half declare the blob's real size, half lie with a small one.
        let declared = if i % 2 == 0 { BLOB_BYTES as u64 } else { 300 };
        push_attack(&client, &host, &repo, &digest, declared).await;
        images.push(format!("{host}/{repo}@{digest}"));
    }
    let webhook = TestWebhook::start(
        policy_state_of(&yaml, NoMatch::Allow),
        settings(Duration::from_secs(20)),
        None,
    )
    .await;
    // Warm up the runtime, TLS and caches with a request that touches no attack tag.
    let warm = pod_of(&host, &[format!("{host}/other/app:v1")]);
    let _ = webhook.review("/validate", warm).await;
    tokio::time::sleep(Duration::from_millis(200)).await;

    let before = proc_status_bytes("VmRSS:");
    reset_peak();
    let response = webhook.review("/validate", pod_of(&host, &images)).await;
    let peak = proc_status_bytes("VmHWM:");
    let grown = peak.saturating_sub(before);

    assert_eq!(response["allowed"], false, "{response}");
    let message = response["status"]["message"].as_str().unwrap_or_default();
    for image in &images {
        assert!(message.contains(image.as_str()), "{image} not in {message}");
    }
    assert!(
        grown < 16 * 1024 * 1024,
        "peak resident memory grew by {} KiB for one 8-image pod",
        grown / 1024
    );
    eprintln!(
        "8-image pod with {LAYERS} x 1 MiB layers each: peak RSS grew by {} KiB",
        grown / 1024
    );
}
