//! Verifying one fetched signature, per algorithm: the payload bytes and signature as the
//! registry returned them, checked against an attestor's key (crypto + payload parse + claims).
//! Target on a 2-core machine: under 50 µs for RSA-2048. Also one Notation signature with a
//! chain of 3 (target: under 300 µs).

// A benchmark, not library code: a failed setup step ends the run with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
// `criterion_group!` defines a public function with no doc comment.
#![allow(missing_docs)]

use std::collections::BTreeMap;

use criterion::{Criterion, criterion_group, criterion_main};
use signet::crypto::{Algorithm, FileKey, PublicKey, SigningKey, generate_key_pair, x509};
use signet::reference::ImageRef;
use signet::signature::notation;
use signet::signature::{SignatureType, StoredSignature, build_payload, check_signature};

fn bench_verify(c: &mut Criterion) {
    let image = ImageRef::parse("registry.example.com/prod/app:v1").unwrap();
    let digest = "sha256:4e31af7b264bca7496760c2c94771a1cedb23532f08ad33a3d0518163529c356";
    let payload = build_payload(&image, digest, SignatureType::Default, &BTreeMap::new()).unwrap();
    let cases = [
        ("RSA_PSS_SHA_256/2048", Algorithm::RsaPssSha256, Some(2048)),
        (
            "RSA_PKCS1_SHA_256/2048",
            Algorithm::RsaPkcs1Sha256,
            Some(2048),
        ),
        ("RSA_PSS_SHA_256/4096", Algorithm::RsaPssSha256, Some(4096)),
        ("ECDSA_P256_SHA_256", Algorithm::EcdsaP256Sha256, None),
        ("ECDSA_P384_SHA_384", Algorithm::EcdsaP384Sha384, None),
        ("ED25519", Algorithm::Ed25519, None),
    ];
    let mut group = c.benchmark_group("verify_one_signature");
    for (name, algorithm, bits) in cases {
        let generated = generate_key_pair(algorithm, bits).unwrap();
        let key = FileKey::from_pem(generated.private_key_pem(), algorithm, "bench").unwrap();
        let stored = StoredSignature::cosign(payload.clone(), Some(key.sign(&payload).unwrap()));
        let keys = [PublicKey::from_pem(&generated.public_key_pem(), algorithm).unwrap()];
        group.bench_function(name, |b| {
            b.iter(|| {
                check_signature(&stored, &image, digest, SignatureType::Default, &keys).unwrap()
            })
        });
    }
    group.finish();
}

/// A chain of 3 (leaf, intermediate, root), every key of `algorithm`, each certificate signed
/// by the next; returns the leaf's signing key and the chain.
fn notation_chain(algorithm: Algorithm) -> (FileKey, Vec<x509::Certificate>) {
    use rcgen::{
        BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose,
        IsCa, Issuer, KeyPair, KeyUsagePurpose, date_time_ymd,
    };
    let (bits, rcgen_alg) = match algorithm {
        Algorithm::EcdsaP256Sha256 => (None, &rcgen::PKCS_ECDSA_P256_SHA256),
        _ => (Some(2048), &rcgen::PKCS_RSA_SHA256),
    };
    let pair = |alg: Algorithm| {
        let generated = generate_key_pair(alg, bits).unwrap();
        let rc =
            KeyPair::from_pkcs8_pem_and_sign_algo(generated.private_key_pem(), rcgen_alg).unwrap();
        (generated, rc)
    };
    let params = |cn: &str, ca: Option<u8>| {
        let mut p = CertificateParams::default();
        p.distinguished_name = DistinguishedName::new();
        p.distinguished_name.push(DnType::CountryName, "US");
        p.distinguished_name.push(DnType::OrganizationName, "acme");
        p.distinguished_name.push(DnType::CommonName, cn);
        p.not_before = date_time_ymd(2025, 1, 1);
        p.not_after = date_time_ymd(2035, 1, 1);
        match ca {
            Some(n) => {
                p.is_ca = IsCa::Ca(BasicConstraints::Constrained(n));
                p.key_usages = vec![KeyUsagePurpose::KeyCertSign];
            }
            None => {
                p.is_ca = IsCa::ExplicitNoCa;
                p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
                p.extended_key_usages = vec![ExtendedKeyUsagePurpose::CodeSigning];
            }
        }
        p
    };
    let ca_alg = if algorithm.is_rsa() {
        Algorithm::RsaPkcs1Sha256
    } else {
        algorithm
    };
    let (_, root_key) = pair(ca_alg);
    let root_params = params("Root", Some(1));
    let root = root_params.self_signed(&root_key).unwrap();
    let root_issuer = Issuer::new(root_params, root_key);
    let (_, int_key) = pair(ca_alg);
    let int_params = params("Intermediate", Some(0));
    let intermediate = int_params.signed_by(&int_key, &root_issuer).unwrap();
    let int_issuer = Issuer::new(int_params, int_key);
    let (leaf_generated, leaf_key) = pair(algorithm);
    let leaf = params("release", None)
        .signed_by(&leaf_key, &int_issuer)
        .unwrap();
    let chain = [leaf.der(), intermediate.der(), root.der()]
        .into_iter()
        .map(|der| x509::Certificate::from_der(der).unwrap())
        .collect();
    let key = FileKey::from_pem(leaf_generated.private_key_pem(), algorithm, "bench").unwrap();
    (key, chain)
}

/// Verifying one Notation signature (manifest + envelope) with a chain of 3 against one root:
/// manifest, envelope and chain parsing, Notary rules, four signature checks (the envelope and
/// each certificate, the root's own included), payload checks. Target: under 300 µs.
fn bench_notation(c: &mut Criterion) {
    let target = notation::TargetArtifact {
        media_type: "application/vnd.oci.image.manifest.v1+json".into(),
        digest: "sha256:4e31af7b264bca7496760c2c94771a1cedb23532f08ad33a3d0518163529c356".into(),
        size: 1234,
        annotations: BTreeMap::from([(
            notation::REFERENCE_ANNOTATION.to_string(),
            "registry.example.com/prod/app:v1".to_string(),
        )]),
    };
    let now = 1_796_019_200; // 2026-11-30
    let mut group = c.benchmark_group("verify_notation_chain_of_3");
    for (name, algorithm) in [
        ("RSA-2048", Algorithm::RsaPssSha256),
        ("ECDSA-P256", Algorithm::EcdsaP256Sha256),
    ] {
        let (key, chain) = notation_chain(algorithm);
        let trust = x509::TrustStore::new(&chain[2].to_pem(), &[], None).unwrap();
        for format in [
            notation::EnvelopeFormat::Jws,
            notation::EnvelopeFormat::Cose,
        ] {
            let signed = notation::sign_notation(&key, &chain, &target, format, now, None).unwrap();
            group.bench_function(format!("{name}/{format}"), |b| {
                b.iter(|| {
                    notation::verify_notation(
                        &signed.manifest,
                        &signed.envelope,
                        &target,
                        &trust,
                        now,
                    )
                    .unwrap()
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench_verify, bench_notation);
criterion_main!(benches);
