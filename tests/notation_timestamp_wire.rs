//! A timestamped Notation signature through Debian's `docker-registry` and the webhook over real
//! TLS: two images signed by the same short-lived leaf (issued by a long-lived root), one
//! signature carrying a genuine RFC 3161 timestamp from `openssl ts` (tests/support/tsa.rs).
//! Once the leaf has expired, the timestamped image is admitted and the other is denied, saying
//! its signature carries no timestamp from a trusted TSA.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;
#[path = "support/tsa.rs"]
mod tsa;

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, date_time_ymd,
};
use signet::crypto::x509::Certificate;
use signet::crypto::{Algorithm, FileKey, generate_key_pair};
use signet::policy::NoMatch;
use signet::reference::ImageRef;
use signet::registry::RegistryClient;
use signet::signature::notation::{
    EnvelopeFormat, REFERENCE_ANNOTATION, TargetArtifact, build_signature_manifest, sign_notation,
};

use support::Registry;
use support::notation::attach_crafted;
use support::webhook::{TestWebhook, pod_review, policy_state_of, registry_client, settings};
use tsa::Tsa;

/// How long the leaf stays valid after it is made: long enough to sign and stamp two images on
/// a loaded machine, short enough to wait for.
const LEAF_SECONDS: u64 = 6;

fn name(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "acme");
    dn.push(DnType::CommonName, cn);
    dn
}

/// A long-lived root and a leaf for a fresh P-256 key, valid from a minute ago for
/// [`LEAF_SECONDS`]: `(signing key, [leaf, root], root PEM, leaf notAfter)`.
fn short_lived_chain() -> (FileKey, Vec<Certificate>, String, SystemTime) {
    let root_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut root_params = CertificateParams::default();
    root_params.distinguished_name = name("Release Root");
    root_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    root_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    root_params.not_before = date_time_ymd(2025, 1, 1);
    root_params.not_after = date_time_ymd(2040, 1, 1);
    let root = root_params.self_signed(&root_key).unwrap();
    let issuer = Issuer::new(root_params, root_key);

    let pair = generate_key_pair(Algorithm::EcdsaP256Sha256, None).unwrap();
    let leaf_key = KeyPair::from_pkcs8_pem_and_sign_algo(
        pair.private_key_pem(),
        &rcgen::PKCS_ECDSA_P256_SHA256,
    )
    .unwrap();
    let not_after = SystemTime::now() + Duration::from_secs(LEAF_SECONDS);
    let mut params = CertificateParams::default();
    params.distinguished_name = name("release");
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::CodeSigning];
    params.not_before = (SystemTime::now() - Duration::from_secs(60)).into();
    params.not_after = not_after.into();
    let leaf = params.signed_by(&leaf_key, &issuer).unwrap();
    let chain = vec![
        Certificate::from_der(leaf.der()).unwrap(),
        Certificate::from_der(root.der()).unwrap(),
    ];
    let key =
        FileKey::from_pem(pair.private_key_pem(), Algorithm::EcdsaP256Sha256, "test").unwrap();
    (key, chain, root.pem(), not_after)
}

/// Signs `image`@`digest` (binding its tag), with a timestamp when `stamp`, and attaches the
/// signature through the fallback index, as Notation does on a registry without referrers.
async fn attach(
    client: &RegistryClient,
    image: &ImageRef,
    digest: &str,
    key: &FileKey,
    chain: &[Certificate],
    stamp: bool,
) {
    let subject = client
        .fetch_manifest(&image.with_digest(digest))
        .await
        .unwrap()
        .expect("subject exists");
    let mut annotations = BTreeMap::new();
    annotations.insert(REFERENCE_ANNOTATION.to_string(), image.to_string());
    let target = TargetArtifact {
        media_type: subject.media_type.clone(),
        digest: digest.to_string(),
        size: subject.bytes.len() as u64,
        annotations,
    };
    let now = jiff::Timestamp::now().as_second();
    let signed = sign_notation(key, chain, &target, EnvelopeFormat::Jws, now, None).unwrap();
    let mut doc: serde_json::Value = serde_json::from_slice(&signed.envelope).unwrap();
    if stamp {
        let signature = URL_SAFE_NO_PAD
            .decode(doc["signature"].as_str().unwrap())
            .unwrap();
        let token = Tsa::get().stamp(&signature);
        doc["header"]["io.cncf.notary.timestampSignature"] = STANDARD.encode(token).into();
    }
    let envelope = serde_json::to_vec(&doc).unwrap();
    let thumbprints: Vec<String> = chain.iter().map(|c| c.sha256_hex().to_string()).collect();
    let manifest = build_signature_manifest(
        EnvelopeFormat::Jws,
        &envelope,
        &target,
        &thumbprints,
        "2026-11-30T00:00:00Z",
    );

    attach_crafted(client, image, digest, &envelope, &manifest).await;
}

fn indent(pem: &str) -> String {
    pem.lines().map(|l| format!("      {l}\n")).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_expired_leaf_is_admitted_with_a_trusted_timestamp_and_denied_without() {
    let tsa = Tsa::get();
    let registry = Registry::start();
    let host = registry.host();
    let client = registry_client();
    let stamped_digest = registry
        .push_test_image("apps/stamped", "v1", "stamped")
        .await;
    let plain_digest = registry.push_test_image("apps/plain", "v1", "plain").await;
    let stamped = ImageRef::parse(&format!("{host}/apps/stamped:v1")).unwrap();
    let plain = ImageRef::parse(&format!("{host}/apps/plain:v1")).unwrap();

    let (key, chain, root_pem, not_after) = short_lived_chain();
    attach(&client, &stamped, &stamped_digest, &key, &chain, true).await;
    assert!(
        SystemTime::now() < not_after,
        "signing and stamping took longer than the leaf lives ({LEAF_SECONDS} s)"
    );
    attach(&client, &plain, &plain_digest, &key, &chain, false).await;

    let yaml = format!(
        "apiVersion: signet.dev/v1alpha1\nkind: Attestor\nmetadata:\n  name: release\nspec:\n  keys:\n  \
         - id: release-root\n    certificates: |\n{}    tsaCertificates: |\n{}---\n\
         apiVersion: signet.dev/v1alpha1\nkind: ClusterVerificationPolicy\nmetadata:\n  name: release\n\
         spec:\n  images: [\"{host}/apps/**\"]\n  attestors: [release]\n  signatureType: Default\n",
        indent(&root_pem),
        indent(&tsa.root_pem),
    );
    let webhook = TestWebhook::start(
        policy_state_of(&yaml, NoMatch::Allow),
        settings(Duration::from_secs(8)),
        None,
    )
    .await;

    // Wait for the leaf to expire (whole seconds: certificates do not carry fractions).
    let wait = not_after
        .duration_since(SystemTime::now())
        .unwrap_or_default()
        + Duration::from_millis(1_500);
    tokio::time::sleep(wait).await;

    let answer = webhook
        .review("/validate", pod_review(&stamped.to_string()))
        .await;
    assert_eq!(answer["allowed"], true, "{answer}");

    let answer = webhook
        .review("/validate", pod_review(&plain.to_string()))
        .await;
    assert_eq!(answer["allowed"], false, "{answer}");
    let message = answer["status"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("\"O=acme, CN=release\" is expired at")
            && message.contains("and the signature carries no timestamp from a trusted TSA"),
        "{message}"
    );

    // The same from the CLI: `--tsa-certificate` is the Attestor's `tsaCertificates`, and the
    // JSON says when the signature was made and who proved it.
    let dir = tempfile::tempdir().unwrap();
    let roots = dir.path().join("roots.pem");
    let tsa_roots = dir.path().join("tsa.pem");
    std::fs::write(&roots, &root_pem).unwrap();
    std::fs::write(&tsa_roots, &tsa.root_pem).unwrap();
    let verify = |image: &ImageRef, with_tsa: bool| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_signet"));
        command.args(["verify", &image.to_string(), "--certificate"]);
        command
            .arg(&roots)
            .args(["--type", "default", "-o", "json"]);
        if with_tsa {
            command.arg("--tsa-certificate").arg(&tsa_roots);
        }
        let out = command.env_remove("DOCKER_CONFIG").output().unwrap();
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        (
            out.status.code(),
            json,
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, json, stderr) = verify(&stamped, true);
    assert_eq!(code, Some(0), "{json} {stderr}");
    let valid = json["signatures"]
        .as_array()
        .and_then(|all| all.iter().find(|s| s["valid"] == true))
        .cloned()
        .unwrap_or_default();
    assert!(
        valid["timestamped_at"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z')),
        "{json}"
    );
    assert!(
        valid["timestamped_by"]
            .as_str()
            .is_some_and(|t| !t.is_empty()),
        "{json}"
    );
    let (code, json, stderr) = verify(&stamped, false);
    assert_eq!(
        code,
        Some(1),
        "without TSA roots the timestamp proves nothing: {json} {stderr}"
    );
    let (code, json, stderr) = verify(&plain, true);
    assert_eq!(code, Some(1), "{json} {stderr}");
}
