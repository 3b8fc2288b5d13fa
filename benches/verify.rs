//! Verifying one fetched signature, per algorithm: the payload bytes and signature as the
//! registry returned them, checked against an attestor's key (crypto + payload parse + claims).
//! Target on a 2-core machine: under 50 µs for RSA-2048.

// A benchmark, not library code: a failed setup step ends the run with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
// `criterion_group!` defines a public function with no doc comment.
#![allow(missing_docs)]

use std::collections::BTreeMap;

use criterion::{Criterion, criterion_group, criterion_main};
use signet::crypto::{Algorithm, FileKey, PublicKey, SigningKey, generate_key_pair};
use signet::reference::ImageRef;
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

criterion_group!(benches, bench_verify);
criterion_main!(benches);
