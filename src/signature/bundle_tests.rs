//! Bundle checks: the cosign v3 form, and one test per rejection.

use std::collections::BTreeMap;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair};
use base64::Engine as _;
use serde_json::{Value, json};

use super::*;
use crate::crypto::{Algorithm, PublicKey};
use crate::signature::{NO_TAG_BINDING_HINT, StoredSignature, build_payload, check_signature};

const HEX: &str = "4e31af7b264bca7496760c2c94771a1cedb23532f08ad33a3d0518163529c356";
const D: &str = "sha256:4e31af7b264bca7496760c2c94771a1cedb23532f08ad33a3d0518163529c356";
const OTHER: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

struct Signer(EcdsaKeyPair);

impl Signer {
    fn new() -> Self {
        Signer(EcdsaKeyPair::generate(&ECDSA_P256_SHA256_ASN1_SIGNING).unwrap())
    }
    fn public(&self) -> PublicKey {
        PublicKey::from_spki_der(
            self.0.public_key().as_der().unwrap().as_ref(),
            Algorithm::EcdsaP256Sha256,
        )
        .unwrap()
    }
    fn sign(&self, message: &[u8]) -> Vec<u8> {
        self.0
            .sign(&SystemRandom::new(), message)
            .unwrap()
            .as_ref()
            .to_vec()
    }
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The statement cosign v3 signs for an image: subject named by the repository alone.
fn cosign_statement(digest_hex: &str) -> Value {
    json!({
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": "127.0.0.1:5000/ns1/app", "digest": {"sha256": digest_hex}}],
        "predicateType": "https://sigstore.dev/cosign/sign/v1",
        "predicate": {},
    })
}

/// A bundle as cosign v3 writes it for `cosign sign --key`: the key's hint, one Rekor entry
/// (kind dsse, with an inclusion promise and proof), the DSSE envelope over the statement. Built
/// from the protobuf-specs description of `Bundle` v0.3; the Rekor values are placeholders
/// (signet does not check them).
fn cosign_v3_bundle(signer: &Signer, statement: &Value) -> Value {
    let payload = serde_json::to_vec(statement).unwrap();
    let sig = signer.sign(&pae(IN_TOTO_PAYLOAD_TYPE, &payload));
    json!({
        "mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
        "verificationMaterial": {
            "publicKey": {"hint": public_key_hint(&signer.public())},
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
            "payloadType": IN_TOTO_PAYLOAD_TYPE,
            "signatures": [{"sig": b64(&sig)}],
        },
    })
}

fn stored(bundle: &Value) -> StoredSignature {
    StoredSignature::bundle(serde_json::to_vec(bundle).unwrap())
}

fn check(
    bundle: &Value,
    workload: &str,
    t: SignatureType,
    keys: &[PublicKey],
) -> Result<usize, String> {
    let image = ImageRef::parse(workload).unwrap();
    check_signature(&stored(bundle), &image, D, t, keys)
        .map(|a| a.key_index)
        .map_err(|r| r.to_string())
}

#[test]
fn pae_follows_the_dsse_spec() {
    assert_eq!(
        pae("http://example.com/HelloWorld", b"hello world"),
        b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
    );
}

#[test]
fn a_cosign_v3_bundle_satisfies_simple_and_not_default() {
    let signer = Signer::new();
    let bundle = cosign_v3_bundle(&signer, &cosign_statement(HEX));
    let keys = [signer.public()];
    let parsed = parse_bundle(&serde_json::to_vec(&bundle).unwrap()).unwrap();
    assert_eq!(parsed.tlog_entries, 1);
    assert_eq!(
        check(
            &bundle,
            "127.0.0.1:5000/ns1/app:v1",
            SignatureType::Simple,
            &keys
        ),
        Ok(0)
    );
    // Simple binds the digest only: a copy in another repository still counts.
    assert_eq!(
        check(
            &bundle,
            "mirror.example/app:v1",
            SignatureType::Simple,
            &keys
        ),
        Ok(0)
    );
    let denied = check(
        &bundle,
        "127.0.0.1:5000/ns1/app:v1",
        SignatureType::Default,
        &keys,
    );
    assert_eq!(denied, Err(NO_TAG_BINDING_HINT.to_string()));
    // Without any name, the same.
    let mut statement = cosign_statement(HEX);
    statement["subject"][0]
        .as_object_mut()
        .unwrap()
        .remove("name");
    let bundle = cosign_v3_bundle(&signer, &statement);
    assert_eq!(
        check(
            &bundle,
            "127.0.0.1:5000/ns1/app:v1",
            SignatureType::Default,
            &keys
        ),
        Err(NO_TAG_BINDING_HINT.to_string())
    );
    assert_eq!(
        check(
            &bundle,
            "127.0.0.1:5000/ns1/app:v1",
            SignatureType::Simple,
            &keys
        ),
        Ok(0)
    );
}

#[test]
fn a_legacy_signature_without_a_tag_gets_the_same_hint() {
    let signer = Signer::new();
    let image = ImageRef::parse("127.0.0.1:5000/ns1/app:v1").unwrap();
    // What cosign really writes: the repository alone as docker-reference.
    let payload = build_payload(&image, D, SignatureType::Simple, &BTreeMap::new()).unwrap();
    let sig = StoredSignature::cosign(payload.clone(), Some(signer.sign(&payload)));
    let keys = [signer.public()];
    let denied = check_signature(&sig, &image, D, SignatureType::Default, &keys);
    assert_eq!(denied.unwrap_err().to_string(), NO_TAG_BINDING_HINT);
    assert!(check_signature(&sig, &image, D, SignatureType::Simple, &keys).is_ok());
}

#[test]
fn signet_bundles_bind_the_tag_for_default() {
    let signer = Signer::new();
    let image = ImageRef::parse("127.0.0.1:5000/ns1/app:v1").unwrap();
    let statement = build_statement(&image, D, SignatureType::Default, &BTreeMap::new()).unwrap();
    let sig = signer.sign(&pae(IN_TOTO_PAYLOAD_TYPE, &statement));
    let bundle: Value =
        serde_json::from_slice(&build_bundle(&statement, &sig, &signer.public())).unwrap();
    let keys = [signer.public()];
    assert_eq!(
        check(
            &bundle,
            "127.0.0.1:5000/ns1/app:v1",
            SignatureType::Default,
            &keys
        ),
        Ok(0)
    );
    // A digest-only workload under Default needs the same repository.
    assert_eq!(
        check(
            &bundle,
            &format!("127.0.0.1:5000/ns1/app@{D}"),
            SignatureType::Default,
            &keys
        ),
        Ok(0)
    );
    let other_tag = check(
        &bundle,
        "127.0.0.1:5000/ns1/app:v2",
        SignatureType::Default,
        &keys,
    );
    assert!(other_tag.unwrap_err().contains("tag \"v2\" not bound"));
    let other_repo = check(
        &bundle,
        "127.0.0.1:5000/ns1/web:v1",
        SignatureType::Default,
        &keys,
    );
    assert!(other_repo.unwrap_err().contains("another repository"));
    // Default needs a tag to bind.
    let digest_only = ImageRef::parse(&format!("127.0.0.1:5000/ns1/app@{D}")).unwrap();
    assert!(build_statement(&digest_only, D, SignatureType::Default, &BTreeMap::new()).is_err());
    let parsed = parse_bundle(&serde_json::to_vec(&bundle).unwrap()).unwrap();
    assert_eq!(parsed.media_type, BUNDLE_MEDIA_TYPE);
    assert_eq!(
        parsed.key_material,
        KeyMaterial::PublicKeyHint(Some(public_key_hint(&signer.public())))
    );
}

/// Re-signs `bundle`'s envelope after `edit` changed its statement.
fn with_statement(signer: &Signer, edit: impl FnOnce(&mut Value)) -> Value {
    let mut statement = cosign_statement(HEX);
    edit(&mut statement);
    cosign_v3_bundle(signer, &statement)
}

#[test]
fn every_rejection_says_why() {
    let signer = Signer::new();
    let keys = [signer.public()];
    let good = cosign_v3_bundle(&signer, &cosign_statement(HEX));
    let w = "127.0.0.1:5000/ns1/app:v1";
    let simple = SignatureType::Simple;

    // An attestation is not an image signature, even signed by the right key.
    let slsa = with_statement(&signer, |s| {
        s["predicateType"] = json!("https://slsa.dev/provenance/v1");
    });
    let e = check(&slsa, w, simple, &keys).unwrap_err();
    assert!(
        e.contains("\"https://slsa.dev/provenance/v1\" is not an image signature"),
        "{e}"
    );

    // Another digest.
    let other = with_statement(&signer, |s| {
        s["subject"][0]["digest"]["sha256"] = json!(OTHER.trim_start_matches("sha256:"));
    });
    assert_eq!(
        check(&other, w, simple, &keys),
        Err(format!("signature for another digest ({OTHER})"))
    );
    let no_sha256 = with_statement(&signer, |s| {
        s["subject"][0]["digest"] = json!({"sha512": "ab"});
    });
    assert!(
        check(&no_sha256, w, simple, &keys)
            .unwrap_err()
            .contains("another digest")
    );

    // Two subjects.
    let two = with_statement(&signer, |s| {
        let first = s["subject"][0].clone();
        s["subject"] = json!([first.clone(), first]);
    });
    assert!(
        check(&two, w, simple, &keys)
            .unwrap_err()
            .contains("2 subjects")
    );

    // Two signatures (even both valid).
    let mut doubled = good.clone();
    let sig = doubled["dsseEnvelope"]["signatures"][0].clone();
    doubled["dsseEnvelope"]["signatures"] = json!([sig.clone(), sig]);
    assert!(
        check(&doubled, w, simple, &keys)
            .unwrap_err()
            .contains("holds 2 signatures; exactly one is accepted")
    );
    let mut none = good.clone();
    none["dsseEnvelope"]["signatures"] = json!([]);
    assert!(
        check(&none, w, simple, &keys)
            .unwrap_err()
            .contains("holds 0 signatures")
    );

    // A tampered payload: the signature no longer verifies.
    let mut tampered = good.clone();
    let mut statement = cosign_statement(HEX);
    statement["predicate"] = json!({"note": "added after signing"});
    tampered["dsseEnvelope"]["payload"] = json!(b64(&serde_json::to_vec(&statement).unwrap()));
    assert_eq!(
        check(&tampered, w, simple, &keys),
        Err("not signed by a trusted key".into())
    );

    // A bundle carrying its own key material, signed by that (untrusted) key.
    let stranger = Signer::new();
    let mut carried = cosign_v3_bundle(&stranger, &cosign_statement(HEX));
    carried["verificationMaterial"] = json!({
        "certificate": {"rawBytes": b64(b"0\x82 a certificate")},
        "tlogEntries": [],
    });
    assert_eq!(
        check(&carried, w, simple, &keys),
        Err(
            "not signed by a trusted key (the certificate the bundle carries is never trusted)"
                .into()
        )
    );
    // A hint naming the stranger's key does not make it trusted either.
    let hinted = cosign_v3_bundle(&stranger, &cosign_statement(HEX));
    assert_eq!(
        check(&hinted, w, simple, &keys),
        Err("not signed by a trusted key".into())
    );

    // A message signature signs a blob, not an image.
    let mut message = good.clone();
    message.as_object_mut().unwrap().remove("dsseEnvelope");
    message["messageSignature"] = json!({
        "messageDigest": {"algorithm": "SHA2_256", "digest": b64(&[0u8; 32])},
        "signature": b64(b"sig"),
    });
    assert!(
        check(&message, w, simple, &keys)
            .unwrap_err()
            .contains("messageSignature bundle signs a blob, not an image")
    );
    let mut both = good.clone();
    both["messageSignature"] = json!({});
    assert!(check(&both, w, simple, &keys).unwrap_err().contains("both"));

    // Another payload type, statement type, bundle media type.
    let mut payload_type = good.clone();
    payload_type["dsseEnvelope"]["payloadType"] = json!("application/json");
    assert!(
        check(&payload_type, w, simple, &keys)
            .unwrap_err()
            .contains("payload type")
    );
    let v01 = with_statement(&signer, |s| {
        s["_type"] = json!("https://in-toto.io/Statement/v0.1")
    });
    assert!(
        check(&v01, w, simple, &keys)
            .unwrap_err()
            .contains("statement _type")
    );
    let mut media = good.clone();
    media["mediaType"] = json!("application/json");
    assert!(
        check(&media, w, simple, &keys)
            .unwrap_err()
            .contains("unknown bundle media type")
    );

    // A field in both protobuf JSON spellings: readers could disagree on which counts.
    let mut twice = good.clone();
    twice["dsse_envelope"] = good["dsseEnvelope"].clone();
    assert!(
        check(&twice, w, simple, &keys)
            .unwrap_err()
            .contains("duplicate field")
    );

    // Not JSON at all; one line.
    let junk = StoredSignature::bundle(b"\x00not json".to_vec());
    let image = ImageRef::parse(w).unwrap();
    let e = check_signature(&junk, &image, D, simple, &keys)
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("malformed bundle: not a bundle") && !e.contains('\n'),
        "{e}"
    );
}

#[test]
fn the_hint_only_orders_the_attestors_own_keys() {
    let first = Signer::new();
    let second = Signer::new();
    let keys = [first.public(), second.public()];
    let bundle = cosign_v3_bundle(&second, &cosign_statement(HEX));
    let w = "127.0.0.1:5000/ns1/app:v1";
    assert_eq!(check(&bundle, w, SignatureType::Simple, &keys), Ok(1));
    let parsed = parse_bundle(&serde_json::to_vec(&bundle).unwrap()).unwrap();
    assert_eq!(key_order(&keys, &parsed.key_material), vec![1, 0]);
    // A hint that names no attestor key is ignored, not an error.
    let mut odd = bundle.clone();
    odd["verificationMaterial"]["publicKey"]["hint"] = json!("bm90IGEga2V5");
    assert_eq!(check(&odd, w, SignatureType::Simple, &keys), Ok(1));
}

#[test]
fn older_media_types_and_snake_case_fields_are_read() {
    let signer = Signer::new();
    let keys = [signer.public()];
    let w = "127.0.0.1:5000/ns1/app:v1";
    for media_type in LEGACY_BUNDLE_MEDIA_TYPES {
        let mut bundle = cosign_v3_bundle(&signer, &cosign_statement(HEX));
        bundle["mediaType"] = json!(media_type);
        assert_eq!(
            check(&bundle, w, SignatureType::Simple, &keys),
            Ok(0),
            "{media_type}"
        );
    }
    let mut snake = cosign_v3_bundle(&signer, &cosign_statement(HEX));
    let envelope = snake
        .as_object_mut()
        .unwrap()
        .remove("dsseEnvelope")
        .unwrap();
    snake["dsse_envelope"] = json!({
        "payload": envelope["payload"],
        "payload_type": envelope["payloadType"],
        "signatures": envelope["signatures"],
    });
    assert_eq!(check(&snake, w, SignatureType::Simple, &keys), Ok(0));
    assert!(is_bundle_media_type(
        "application/vnd.dev.sigstore.bundle+json; version=0.3"
    ));
    assert!(!is_bundle_media_type(
        "application/vnd.dev.sigstore.bundle+json;version=0.4"
    ));
}
