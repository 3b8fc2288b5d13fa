//! Envelopes written by the Notary Project's own implementation (notation-go's test data, see
//! tests/fixtures/notation/SOURCE) verify in signet, and the ones that must fail fail for the
//! right reason.

// Helpers outside `#[test]` functions fail by panicking, as tests do (clippy.toml covers only
// `#[test]` code).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;

use base64::Engine;
use signet::crypto::x509::{Certificate, TrustStore};
use signet::signature::notation::{
    EMPTY_CONFIG_MEDIA_TYPE, EnvelopeFormat, NOTATION_ARTIFACT_TYPE, NotationRejection,
    TargetArtifact, verify_notation,
};
use signet::signature::sha256_digest;

fn fixture(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/notation")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The signature manifest Notation pushes for an envelope (notation-go `registry.PushSignature`).
fn manifest_for(envelope: &[u8], format: EnvelopeFormat, target: &TargetArtifact) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "artifactType": NOTATION_ARTIFACT_TYPE,
        "config": {
            "mediaType": EMPTY_CONFIG_MEDIA_TYPE,
            "digest": "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a",
            "size": 2
        },
        "layers": [{
            "mediaType": format.media_type(),
            "digest": sha256_digest(envelope),
            "size": envelope.len()
        }],
        "subject": {
            "mediaType": target.media_type,
            "digest": target.digest,
            "size": target.size
        }
    }))
    .unwrap()
}

/// The first `x5c` certificate of a JWS envelope: the self-signed leaf Notation's tests trust.
fn jws_leaf(envelope: &[u8]) -> Certificate {
    let doc: serde_json::Value = serde_json::from_slice(envelope).unwrap();
    let der = base64::engine::general_purpose::STANDARD
        .decode(doc["header"]["x5c"][0].as_str().unwrap())
        .unwrap();
    Certificate::from_der(&der).unwrap()
}

fn alpine_target() -> TargetArtifact {
    let manifest = fixture("alpine-manifest.json");
    TargetArtifact {
        media_type: "application/vnd.oci.image.manifest.v1+json".into(),
        digest: sha256_digest(&manifest),
        size: manifest.len() as u64,
        annotations: Default::default(),
    }
}

/// The target the `*Timestamp.sig` envelopes sign (a Docker v2 manifest notation-go's tests use).
fn timestamp_target() -> TargetArtifact {
    TargetArtifact {
        media_type: "application/vnd.docker.distribution.manifest.v2+json".into(),
        digest: "sha256:c0669ef34cdc14332c0f1ab0c2c01acb91d96014b172f1a76f3a39e63d1f0bda".into(),
        size: 528,
        annotations: Default::default(),
    }
}

const NOW: i64 = 1_796_000_000; // 2026-11-30

#[test]
fn notation_jws_and_cose_envelopes_verify() {
    let jws = fixture("jws_signature.sig");
    let leaf = jws_leaf(&jws);
    let trust = TrustStore::new(&leaf.to_pem(), &[], None).unwrap();
    let target = alpine_target();
    let claims = verify_notation(
        &manifest_for(&jws, EnvelopeFormat::Jws, &target),
        &jws,
        &target,
        &trust,
        NOW,
    )
    .unwrap();
    assert_eq!(claims.format, EnvelopeFormat::Jws);
    assert_eq!(claims.signer, "C=US, ST=WA, L=Seattle, O=Notary, CN=alpine");
    assert_eq!(claims.reference, None);
    assert_eq!(claims.revocation, "not checked");

    let cose = fixture("cose_signature.sig");
    let claims = verify_notation(
        &manifest_for(&cose, EnvelopeFormat::Cose, &target),
        &cose,
        &target,
        &trust,
        NOW,
    )
    .unwrap();
    assert_eq!(claims.format, EnvelopeFormat::Cose);
    assert_eq!(claims.anchor_fingerprint, leaf.fingerprint());
}

#[test]
fn notation_envelopes_trusted_through_notations_trust_store_file() {
    let anchor = String::from_utf8(fixture("TestTimestamp.crt")).unwrap();
    let identities = ["x509.subject: C=US, ST=WA, O=Notary, CN=alpine".to_string()];
    let trust = TrustStore::new(&anchor, &identities, None).unwrap();
    let target = timestamp_target();
    for (name, format) in [
        ("withoutTimestamp.sig", EnvelopeFormat::Jws),
        ("jwsWithTimestamp.sig", EnvelopeFormat::Jws),
        ("coseWithTimestamp.sig", EnvelopeFormat::Cose),
    ] {
        let envelope = fixture(name);
        let manifest = manifest_for(&envelope, format, &target);
        let claims = verify_notation(&manifest, &envelope, &target, &trust, NOW)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(claims.signer, "C=US, ST=WA, L=Seattle, O=Notary, CN=alpine");
    }
    // Another identity is not trusted, though the chain reaches the anchor.
    let other = ["x509.subject: C=US, ST=WA, O=Notary, CN=release".to_string()];
    let trust = TrustStore::new(&anchor, &other, None).unwrap();
    let envelope = fixture("withoutTimestamp.sig");
    let err = verify_notation(
        &manifest_for(&envelope, EnvelopeFormat::Jws, &target),
        &envelope,
        &target,
        &trust,
        NOW,
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("not among the trusted identities"),
        "{err}"
    );
}

#[test]
fn notation_envelope_for_another_manifest_is_refused() {
    let jws = fixture("jws_signature.sig");
    let trust = TrustStore::new(&jws_leaf(&jws).to_pem(), &[], None).unwrap();
    let mut target = alpine_target();
    let manifest = manifest_for(&jws, EnvelopeFormat::Jws, &target);
    target.size += 1;
    let err = verify_notation(&manifest, &jws, &target, &trust, NOW).unwrap_err();
    assert!(matches!(err, NotationRejection::OtherTarget(_)), "{err}");
    assert!(err.to_string().contains("another size (481 bytes"), "{err}");
}

/// GlobalSign Root CA - R6, the root of the TSA that timestamped notation-go's
/// `jwsExpiredWithTimestamp.sig`, from Debian's ca-certificates (an independent source of the
/// root, not the copy the token carries).
fn globalsign_r6() -> String {
    let path = "/etc/ssl/certs/GlobalSign_Root_CA_-_R6.pem";
    std::fs::read_to_string(path).unwrap_or_else(|e| {
        panic!("{path}: {e} (install the Debian package ca-certificates: scripts/test-deps.sh)")
    })
}

#[test]
fn notation_expired_leaf_with_a_timestamp_from_a_trusted_tsa_verifies() {
    // The leaf was valid 2024-06-18 07:20:31 to 07:30:31 UTC; GlobalSign's TSA stamped the
    // signature at 07:21:42 (accuracy 1 s).
    let envelope = fixture("jwsExpiredWithTimestamp.sig");
    let leaf = jws_leaf(&envelope).to_pem();
    let target = timestamp_target();
    let manifest = manifest_for(&envelope, EnvelopeFormat::Jws, &target);
    let trust = TrustStore::new(&leaf, &[], Some(&globalsign_r6())).unwrap();
    let claims = verify_notation(&manifest, &envelope, &target, &trust, NOW).unwrap();
    let proved = claims
        .authentic_signing_time
        .expect("a timestamp was needed");
    assert_eq!(proved.time, "2024-06-18T07:21:42Z");
    assert!(
        proved.tsa.contains("Globalsign TSA for Advanced"),
        "{}",
        proved.tsa
    );
    assert!(
        proved.tsa_root.contains("GlobalSign Root CA - R6"),
        "{}",
        proved.tsa_root
    );

    // The same envelope with no TSA roots, or with another root as the TSA root, is refused,
    // and says why.
    let trust = TrustStore::new(&leaf, &[], None).unwrap();
    let text = verify_notation(&manifest, &envelope, &target, &trust, NOW)
        .unwrap_err()
        .to_string();
    assert!(text.contains("is expired at"), "{text}");
    assert!(
        text.contains("the Attestor key has no tsaCertificates"),
        "{text}"
    );
    let trust = TrustStore::new(&leaf, &[], Some(&leaf)).unwrap();
    let text = verify_notation(&manifest, &envelope, &target, &trust, NOW)
        .unwrap_err()
        .to_string();
    assert!(text.contains("does not lead to a trusted TSA"), "{text}");
}

#[test]
fn notation_timestamps_of_valid_chains_are_not_needed() {
    // jwsWithTimestamp / coseWithTimestamp: the leaf is still valid, so an Attestor without
    // tsaCertificates verifies them (checked above); with GlobalSign as TSA root they verify
    // too and no authentic signing time is claimed, since none was needed.
    let anchor = String::from_utf8(fixture("TestTimestamp.crt")).unwrap();
    let trust = TrustStore::new(&anchor, &[], Some(&globalsign_r6())).unwrap();
    let target = timestamp_target();
    for (name, format) in [
        ("jwsWithTimestamp.sig", EnvelopeFormat::Jws),
        ("coseWithTimestamp.sig", EnvelopeFormat::Cose),
    ] {
        let envelope = fixture(name);
        let manifest = manifest_for(&envelope, format, &target);
        let claims = verify_notation(&manifest, &envelope, &target, &trust, NOW)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(claims.authentic_signing_time, None, "{name}");
    }
}
