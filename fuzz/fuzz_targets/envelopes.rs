//! The parsers of referrer signatures on arbitrary bytes: Sigstore bundles and their in-toto
//! statements, OCI referrer indexes and manifests, Notation signature manifests, and JWS and
//! COSE envelopes (the bytes wrapped in the manifest Notation pushes, so that verification
//! reaches the envelope parsers), and RFC 3161 timestamp tokens (the bytes as a token over
//! themselves, under a TSA root). No panic.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use signet::crypto::x509::{TrustStore, verify_timestamp};
use signet::registry::{classify, parse_index};
use signet::signature::bundle::{parse_bundle, parse_statement};
use signet::signature::notation::{
    EnvelopeFormat, TargetArtifact, build_signature_manifest, parse_signature_manifest,
    verify_notation,
};

const DIGEST: &str = "sha256:4e31af7b264bca7496760c2c94771a1cedb23532f08ad33a3d0518163529c356";

fn trust() -> &'static TrustStore {
    static TRUST: OnceLock<TrustStore> = OnceLock::new();
    TRUST.get_or_init(|| {
        TrustStore::new(
            include_str!("../../tests/fixtures/notation/TestTimestamp.crt"),
            &[],
            None,
        )
        .expect("the fixture anchor parses")
    })
}

fuzz_target!(|data: &[u8]| {
    let _ = verify_timestamp(data, data, trust().anchors());
    let _ = parse_bundle(data);
    let _ = parse_statement(data);
    let _ = parse_index(data);
    let _ = classify(data, DIGEST, DIGEST);
    let _ = parse_signature_manifest(data);
    let target = TargetArtifact {
        media_type: "application/vnd.oci.image.manifest.v1+json".into(),
        digest: DIGEST.into(),
        size: 1024,
        annotations: Default::default(),
    };
    for format in [EnvelopeFormat::Jws, EnvelopeFormat::Cose] {
        let manifest = build_signature_manifest(format, data, &target, &[], "2026-11-30T00:00:00Z");
        let _ = verify_notation(&manifest, data, &target, trust(), 1_796_000_000);
    }
});
