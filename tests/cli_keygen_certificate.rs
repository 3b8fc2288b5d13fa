//! `signet keygen --certificate`: a key and a self-signed code-signing certificate that sign
//! Notation signatures a trust store holding that certificate accepts.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;

use signet::crypto::x509::{Certificate, TrustStore};
use signet::crypto::{Algorithm, FileKey};
use signet::signature::notation::{EnvelopeFormat, TargetArtifact, sign_notation, verify_notation};

fn keygen(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_signet"))
        .arg("keygen")
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[test]
fn keygen_certificate_signs_notation_signatures_that_verify() {
    let dir = tempfile::tempdir().unwrap();
    for (algorithm, name) in [
        (Algorithm::RsaPssSha256, "rsa"),
        (Algorithm::EcdsaP256Sha256, "ec"),
    ] {
        let prefix = dir.path().join(name);
        let (code, stderr) = keygen(&[
            "--algorithm",
            algorithm.as_str(),
            "--output",
            prefix.to_str().unwrap(),
            "--certificate",
            "--subject",
            "CN=release,O=acme,C=US",
        ]);
        assert_eq!(code, 0, "{stderr}");
        let pem = std::fs::read_to_string(dir.path().join(format!("{name}.crt"))).unwrap();
        let chain = Certificate::from_pem_bundle(&pem).unwrap();
        assert_eq!(chain[0].subject(), "CN=release, O=acme, C=US");
        let key = FileKey::open(&dir.path().join(format!("{name}.key")), algorithm, None).unwrap();
        let target = TargetArtifact {
            media_type: "application/vnd.oci.image.manifest.v1+json".into(),
            digest: "sha256:4e31af7b264bca7496760c2c94771a1cedb23532f08ad33a3d0518163529c356"
                .into(),
            size: 100,
            annotations: Default::default(),
        };
        let identity = ["x509.subject: C=US, O=acme, CN=release".to_string()];
        let trust = TrustStore::new(&pem, &identity, None).unwrap();
        for format in [EnvelopeFormat::Jws, EnvelopeFormat::Cose] {
            let signed = sign_notation(&key, &chain, &target, format, now(), None).unwrap();
            verify_notation(&signed.manifest, &signed.envelope, &target, &trust, now())
                .unwrap_or_else(|e| panic!("{name} {format}: {e}"));
        }
    }
}

#[test]
fn keygen_certificate_refuses_what_notation_cannot_use() {
    let dir = tempfile::tempdir().unwrap();
    let out = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    let (code, stderr) = keygen(&[
        "--algorithm",
        "RSA_PSS_SHA_256",
        "--bits",
        "3072",
        "--output",
        &out("big"),
        "--certificate",
        "--subject",
        "CN=a,O=b,C=US",
    ]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("needs 2048 bits"), "{stderr}");
    let (code, stderr) = keygen(&[
        "--algorithm",
        "ED25519",
        "--output",
        &out("ed"),
        "--certificate",
        "--subject",
        "CN=a,O=b,C=US",
    ]);
    assert_ne!(code, 0);
    assert!(stderr.contains("not ED25519"), "{stderr}");
    assert!(!dir.path().join("ed.key").exists(), "no key is left behind");
    // --certificate without --subject is a usage error.
    let (code, _) = keygen(&[
        "--algorithm",
        "ED25519",
        "--output",
        &out("x"),
        "--certificate",
    ]);
    assert_eq!(code, 2);
}
