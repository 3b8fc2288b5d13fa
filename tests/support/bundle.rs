//! Sigstore bundles built by the tests from the format description (sigstore protobuf-specs,
//! `Bundle` v0.3; DSSE; in-toto Statement v1), as cosign v3 writes them with a key, and attached
//! to an image the way cosign v3 does on a registry without the referrers API: the manifest
//! pushed by digest, an entry in the fallback index `sha256-<hex>`. Independent of signet's own
//! bundle code (only its registry client pushes the bytes).

use std::collections::BTreeMap;

use base64::Engine as _;
use serde_json::{Value, json};
use signet::crypto::SigningKey;
use signet::reference::ImageRef;
use signet::registry::{RegistryClient, sha256_digest};

pub const BUNDLE_MEDIA_TYPE: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";
pub const EMPTY_MEDIA_TYPE: &str = "application/vnd.oci.empty.v1+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const IN_TOTO: &str = "application/vnd.in-toto+json";
pub const COSIGN_SIGN: &str = "https://sigstore.dev/cosign/sign/v1";

pub fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// DSSE pre-authentication encoding.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "DSSEv1 {} {payload_type} {} ",
        payload_type.len(),
        payload.len()
    )
    .into_bytes();
    out.extend_from_slice(payload);
    out
}

/// The statement cosign v3 signs for an image: one subject, no tag in its name.
pub fn cosign_statement(repository: &str, digest: &str) -> Value {
    let hex = digest.trim_start_matches("sha256:");
    json!({
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": repository, "digest": {"sha256": hex}}],
        "predicateType": COSIGN_SIGN,
        "predicate": {},
    })
}

/// A key-based bundle as cosign v3 writes it: the key's hint, one Rekor entry (placeholder
/// values: signet does not check them), the DSSE envelope with one signature over PAE.
pub fn cosign_v3_bundle(key: &dyn SigningKey, statement: &Value) -> Value {
    let payload = serde_json::to_vec(statement).expect("statement JSON");
    let signature = key.sign(&pae(IN_TOTO, &payload)).expect("sign");
    let spki = key.public_key().spki_der();
    let hint_hex = sha256_digest(spki);
    let hint = b64(&hex::decode(hint_hex.trim_start_matches("sha256:")).expect("hex"));
    json!({
        "mediaType": BUNDLE_MEDIA_TYPE,
        "verificationMaterial": {
            "publicKey": {"hint": hint},
            "tlogEntries": [{
                "logIndex": "412873311",
                "logId": {"keyId": b64(&[7u8; 32])},
                "kindVersion": {"kind": "dsse", "version": "0.0.1"},
                "integratedTime": "1761300000",
                "inclusionPromise": {"signedEntryTimestamp": b64(b"set")},
                "inclusionProof": {
                    "logIndex": "290969049",
                    "rootHash": b64(&[1u8; 32]),
                    "treeSize": "290969050",
                    "hashes": [b64(&[2u8; 32])],
                    "checkpoint": {"envelope": "rekor.sigstore.dev - 1193050959916656506\n290969050\nAQEB\n"},
                },
                "canonicalizedBody": b64(br#"{"apiVersion":"0.0.1","kind":"dsse","spec":{}}"#),
            }],
        },
        "dsseEnvelope": {
            "payload": b64(&payload),
            "payloadType": IN_TOTO,
            "signatures": [{"sig": b64(&signature)}],
        },
    })
}

/// Attaches `bundle` to `digest` in `image`'s repository as cosign v3 does without the referrers
/// API; the fallback index entry is labelled `index_artifact_type` (cosign writes the bundle
/// type; older tools the empty type or nothing). Returns the bundle manifest's digest.
pub async fn attach_bundle(
    client: &RegistryClient,
    image: &ImageRef,
    digest: &str,
    bundle: &[u8],
    index_artifact_type: Option<&str>,
) -> String {
    let repo = image.with_tag("latest");
    client.push_blob(&repo, b"{}").await.expect("empty config");
    client.push_blob(&repo, bundle).await.expect("bundle blob");
    let subject = client
        .fetch_manifest(&image.with_digest(digest))
        .await
        .expect("subject")
        .expect("subject exists");
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": BUNDLE_MEDIA_TYPE,
        "config": {"mediaType": EMPTY_MEDIA_TYPE, "digest": sha256_digest(b"{}"), "size": 2},
        "layers": [{"mediaType": BUNDLE_MEDIA_TYPE, "digest": sha256_digest(bundle), "size": bundle.len()}],
        "subject": {"mediaType": subject.media_type, "digest": digest, "size": subject.bytes.len()},
        "annotations": {
            "dev.sigstore.bundle.content": "dsse-envelope",
            "dev.sigstore.bundle.predicateType": COSIGN_SIGN,
        },
    }))
    .expect("manifest JSON");
    let manifest_digest = sha256_digest(&manifest);
    client
        .push_manifest(
            &ImageRef::from_parts(
                image.registry(),
                image.repository(),
                None,
                Some(&manifest_digest),
            )
            .expect("by digest"),
            &manifest,
            OCI_MANIFEST,
        )
        .await
        .expect("bundle manifest");
    let mut entry =
        json!({"mediaType": OCI_MANIFEST, "digest": manifest_digest, "size": manifest.len()});
    if let Some(t) = index_artifact_type {
        entry["artifactType"] = json!(t);
    }
    let mut entries = fallback_entries(client, image, digest).await;
    entries.push(entry);
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": entries,
    }))
    .expect("index JSON");
    client
        .push_manifest(&image.with_tag(&fallback_tag(digest)), &index, OCI_INDEX)
        .await
        .expect("fallback index");
    manifest_digest
}

pub fn fallback_tag(digest: &str) -> String {
    digest.replacen(':', "-", 1)
}

/// The entries of the fallback index of `digest` (empty when there is none).
pub async fn fallback_entries(
    client: &RegistryClient,
    image: &ImageRef,
    digest: &str,
) -> Vec<Value> {
    match client
        .fetch_manifest(&image.with_tag(&fallback_tag(digest)))
        .await
        .expect("fallback index read")
    {
        Some(m) => {
            let doc: Value = serde_json::from_slice(&m.bytes).expect("index JSON");
            doc["manifests"].as_array().cloned().unwrap_or_default()
        }
        None => Vec::new(),
    }
}

/// The signet-written `formats` of a JSON verify report: format -> valid, per signature.
pub fn formats_found(report: &Value) -> BTreeMap<String, Vec<bool>> {
    let mut out: BTreeMap<String, Vec<bool>> = BTreeMap::new();
    for s in report["signatures"].as_array().cloned().unwrap_or_default() {
        out.entry(s["format"].as_str().unwrap_or("?").to_string())
            .or_default()
            .push(s["valid"].as_bool().unwrap_or(false));
    }
    out
}
