//! A tiny real OCI image (config blob, one uncompressed tar layer, OCI image manifest) and a
//! pusher that speaks plain HTTP to the registry directly, so that tests of the client's reads
//! do not depend on the client's own push code.

use signet::registry::sha256_digest;

/// Everything pushed for one test image.
#[derive(Clone, Debug)]
pub struct TestImage {
    pub manifest: Vec<u8>,
    pub digest: String,
    pub config: Vec<u8>,
    pub config_digest: String,
    pub layer: Vec<u8>,
    pub layer_digest: String,
}

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";

/// Builds the image for `seed`: the layer holds one file `seed.txt` whose content is the seed,
/// so different seeds give different layers, configs and manifests.
pub fn build_test_image(seed: &str) -> TestImage {
    let layer = tar_with_one_file("seed.txt", seed.as_bytes());
    let layer_digest = sha256_digest(&layer);
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {"Labels": {"signet.test/seed": seed}},
        "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
    }))
    .expect("config JSON");
    let config_digest = sha256_digest(&config);
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": config.len()},
        "layers": [{"mediaType": OCI_LAYER_TAR, "digest": layer_digest, "size": layer.len()}],
    }))
    .expect("manifest JSON");
    let digest = sha256_digest(&manifest);
    TestImage {
        manifest,
        digest,
        config,
        config_digest,
        layer,
        layer_digest,
    }
}

/// Pushes the image for `seed` to `host` (`127.0.0.1:PORT`) as `repo:tag` over plain HTTP;
/// returns the manifest digest.
pub async fn push_test_image(host: &str, repo: &str, tag: &str, seed: &str) -> String {
    let image = build_test_image(seed);
    let http = plain_http_client();
    upload_blob(&http, host, repo, &image.config, &image.config_digest).await;
    upload_blob(&http, host, repo, &image.layer, &image.layer_digest).await;
    let response = http
        .put(format!("http://{host}/v2/{repo}/manifests/{tag}"))
        .header("Content-Type", OCI_MANIFEST)
        .body(image.manifest.clone())
        .send()
        .await
        .unwrap_or_else(|e| panic!("PUT manifest {repo}:{tag} to {host}: {e}"));
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    assert_eq!(
        status.as_u16(),
        201,
        "PUT manifest {repo}:{tag} to {host}: {body}"
    );
    image.digest
}

async fn upload_blob(http: &reqwest::Client, host: &str, repo: &str, data: &[u8], digest: &str) {
    let response = http
        .post(format!("http://{host}/v2/{repo}/blobs/uploads/"))
        .header("Content-Length", "0")
        .send()
        .await
        .unwrap_or_else(|e| panic!("POST upload to {host}/{repo}: {e}"));
    assert_eq!(
        response.status().as_u16(),
        202,
        "POST upload to {host}/{repo}"
    );
    let location = response
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .expect("upload Location header")
        .to_string();
    let mut url = response.url().join(&location).expect("upload URL");
    url.query_pairs_mut().append_pair("digest", digest);
    let response = http
        .put(url)
        .header("Content-Type", "application/octet-stream")
        .body(data.to_vec())
        .send()
        .await
        .unwrap_or_else(|e| panic!("PUT blob {digest} to {host}/{repo}: {e}"));
    assert_eq!(
        response.status().as_u16(),
        201,
        "PUT blob {digest} to {host}/{repo}"
    );
}

/// A reqwest client for plain HTTP that never follows redirects. TLS is configured explicitly
/// with aws-lc-rs (reqwest is built without a default provider) although no HTTPS is spoken.
pub fn plain_http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .tls_backend_preconfigured(super::tls_client::client_config(None))
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
        .expect("plain HTTP client")
}

/// A ustar archive holding one regular file.
fn tar_with_one_file(name: &str, content: &[u8]) -> Vec<u8> {
    let mut header = [0u8; 512];
    header[..name.len()].copy_from_slice(name.as_bytes());
    let octal = |field: &mut [u8], value: u64| {
        let text = format!("{:0width$o}\0", value, width = field.len() - 1);
        field.copy_from_slice(text.as_bytes());
    };
    octal(&mut header[100..108], 0o644); // mode
    octal(&mut header[108..116], 0); // uid
    octal(&mut header[116..124], 0); // gid
    octal(&mut header[124..136], content.len() as u64); // size
    octal(&mut header[136..148], 0); // mtime: fixed, so that a seed always gives one digest
    header[156] = b'0'; // regular file
    header[257..263].copy_from_slice(b"ustar\0");
    header[263..265].copy_from_slice(b"00");
    // The checksum is computed with its own field read as spaces.
    header[148..156].copy_from_slice(b"        ");
    let sum: u32 = header.iter().map(|&b| u32::from(b)).sum();
    let text = format!("{sum:06o}\0 ");
    header[148..156].copy_from_slice(text.as_bytes());

    let mut out = header.to_vec();
    out.extend_from_slice(content);
    out.resize(out.len().div_ceil(512) * 512, 0);
    out.extend_from_slice(&[0u8; 1024]); // end-of-archive marker
    out
}

/// Pushes an OCI index `repo:tag` over two platform images pushed by digest (no tag), as
/// `docker buildx --push` does; returns (index digest, child digests).
pub async fn push_multi_arch(host: &str, repo: &str, tag: &str) -> (String, Vec<String>) {
    let mut children = Vec::new();
    let mut entries = Vec::new();
    for arch in ["amd64", "arm64"] {
        let built = build_test_image(&format!("{repo}-{arch}"));
        // By digest: the children of a multi-arch push carry no tag.
        let digest = push_test_image(host, repo, &built.digest, &format!("{repo}-{arch}")).await;
        entries.push(serde_json::json!({
            "mediaType": OCI_MANIFEST, "digest": digest, "size": built.manifest.len(),
            "platform": {"architecture": arch, "os": "linux"},
        }));
        children.push(digest);
    }
    // buildx adds attestation manifests to the index; they are not images and are not signed.
    entries.push(serde_json::json!({
        "mediaType": OCI_MANIFEST, "digest": children[0], "size": 1,
        "platform": {"architecture": "unknown", "os": "unknown"},
        "annotations": {"vnd.docker.reference.type": "attestation-manifest"},
    }));
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": entries,
    }))
    .unwrap();
    let response = plain_http_client()
        .put(format!("http://{host}/v2/{repo}/manifests/{tag}"))
        .header("Content-Type", "application/vnd.oci.image.index.v1+json")
        .body(index.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 201);
    (sha256_digest(&index), children)
}
