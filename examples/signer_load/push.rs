//! What the pushers do: push a small unique image of the configured shape, name the burst's
//! images, and (with `--deliver direct`) POST the push event as the registry would.

use std::sync::Arc;

use anyhow::bail;
use signet::reference::ImageRef;
use signet::registry::{RegistryClient, sha256_digest};
use signet::signer;

use crate::TOKEN;

/// What each pushed image holds: `--layers` layers of `--layer-bytes` bytes (set once when the flags are read).
pub static IMAGE_SHAPE: std::sync::OnceLock<(usize, usize)> = std::sync::OnceLock::new();

/// Pushes a tiny unique image (config, one layer, OCI manifest) as `repo:tag`; returns its digest.
pub async fn push_image(
    client: &RegistryClient,
    host: &str,
    (repo, tag): (&str, &str),
    seed: usize,
) -> anyhow::Result<String> {
    let image = ImageRef::parse(&format!("{host}/{repo}:{tag}"))?;
    let (layers, layer_bytes) = *IMAGE_SHAPE.get_or_init(|| (1, 72));
    // Distinct content per image and layer, so that every blob is really uploaded.
    let layers: Vec<Vec<u8>> = (0..layers)
        .map(|n| {
            let mut layer = format!("layer {seed} {n} ").into_bytes();
            layer.resize(layer_bytes, b'x');
            layer
        })
        .collect();
    let layer_digests: Vec<String> = layers.iter().map(|l| sha256_digest(l)).collect();
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": layer_digests},
    }))?;
    let config_digest = sha256_digest(&config);
    let descriptors: Vec<serde_json::Value> = layers
        .iter()
        .zip(&layer_digests)
        .map(|(l, d)| serde_json::json!({"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d, "size": l.len()}))
        .collect();
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len()},
        "layers": descriptors,
    }))?;
    let blobs = layers
        .iter()
        .chain(std::iter::once(&config))
        .map(|blob| client.push_blob(&image, blob));
    for pushed in futures::future::join_all(blobs).await {
        pushed?;
    }
    Ok(client
        .push_manifest(
            &image,
            &manifest,
            "application/vnd.oci.image.manifest.v1+json",
        )
        .await?)
}

/// The repository and tag of the `i`-th burst image under `prefix`: with `repositories` = 0,
/// each in a new repository of its own (`prefix/burst{i}:v1`); else spread over that many
/// repositories (`prefix/seq{i % repositories}`, for `load` the ones the sequential phase signed
/// before), each under a tag of its own (`b{i}`), as a CI pushes new builds of existing images.
pub fn burst_image(prefix: &str, i: usize, repositories: usize) -> (String, String) {
    match repositories {
        0 => (format!("{prefix}/burst{i}"), "v1".to_string()),
        n => (format!("{prefix}/seq{}", i % n), format!("b{i}")),
    }
}

/// POSTs the push event of `repo:tag` as the registry would, and checks the answer is 2xx.
pub async fn deliver(
    url: &str,
    host: &str,
    (repo, tag): (&str, &str),
    digest: &str,
) -> anyhow::Result<()> {
    static HTTP: std::sync::OnceLock<reqwest::Client> = std::sync::OnceLock::new();
    let http = HTTP.get_or_init(|| {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
        reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .build()
            .expect("HTTP client")
    });
    let body = serde_json::json!({"events": [{
        "action": "push",
        "target": {
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": digest, "repository": repo, "tag": tag,
            "url": format!("http://{host}/v2/{repo}/manifests/{digest}"),
        },
        "request": {"host": host, "method": "PUT"},
    }]});
    let response = http
        .post(url)
        .bearer_auth(TOKEN)
        .header("Content-Type", signer::event::EVENTS_MEDIA_TYPE)
        .body(body.to_string())
        .send()
        .await?;
    if !response.status().is_success() {
        bail!(
            "event for {repo}: {} {}",
            response.status(),
            response.text().await?
        );
    }
    Ok(())
}
