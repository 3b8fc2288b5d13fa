//! Table tests of the signature rule.

use std::collections::BTreeMap;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair};

use super::*;
use crate::crypto::{Algorithm, PublicKey};
use crate::reference::ImageRef;

const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
const D2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

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
    fn sign(&self, payload: &[u8]) -> StoredSignature {
        let sig = self.0.sign(&SystemRandom::new(), payload).unwrap();
        StoredSignature::cosign(payload.to_vec(), Some(sig.as_ref().to_vec()))
    }
    fn sign_image(&self, image: &str, digest: &str, t: SignatureType) -> StoredSignature {
        let img = ImageRef::parse(image).unwrap();
        self.sign(&build_payload(&img, digest, t, &BTreeMap::new()).unwrap())
    }
}

fn check(
    stored: &StoredSignature,
    workload: &str,
    digest: &str,
    t: SignatureType,
    keys: &[PublicKey],
) -> Result<usize, String> {
    let img = ImageRef::parse(workload).unwrap();
    check_signature(stored, &img, digest, t, keys)
        .map(|a| a.key_index)
        .map_err(|r| r.to_string())
}

/// name, stored signature, workload reference, resolved digest, type, expected key index or reason.
type Case<'a> = (
    &'a str,
    StoredSignature,
    &'a str,
    &'a str,
    SignatureType,
    Result<usize, &'a str>,
);

#[test]
fn signature_rule_table() {
    use SignatureType::{Default, Simple};
    let release = Signer::new();
    let other = Signer::new();
    let keys = [release.public()];
    let digest_ref = format!("r.io/prod/app@{D1}");
    let cases: Vec<Case> = vec![
        (
            "default ok",
            release.sign_image("r.io/prod/app:v1", D1, Default),
            "r.io/prod/app:v1",
            D1,
            Default,
            Ok(0),
        ),
        (
            "simple ok",
            release.sign_image("r.io/prod/app:v1", D1, Simple),
            "r.io/prod/app:v1",
            D1,
            Simple,
            Ok(0),
        ),
        (
            "simple policy, default signature",
            release.sign_image("r.io/prod/app:v1", D1, Default),
            "r.io/prod/app:v1",
            D1,
            Simple,
            Ok(0),
        ),
        (
            "default policy, simple signature, tag ref",
            release.sign_image("r.io/prod/app:v1", D1, Simple),
            "r.io/prod/app:v1",
            D1,
            Default,
            Err("signed without a tag binding, as cosign signs"),
        ),
        (
            "default policy, other tag of same digest",
            release.sign_image("r.io/prod/app:v1", D1, Default),
            "r.io/prod/app:v2",
            D1,
            Default,
            Err("tag \"v2\" not bound"),
        ),
        (
            "default policy, digest-only workload",
            release.sign_image("r.io/prod/app:v1", D1, Default),
            digest_ref.as_str(),
            D1,
            Default,
            Ok(0),
        ),
        (
            "copied from another image",
            release.sign_image("r.io/prod/app:v1", D2, Default),
            "r.io/prod/app:v1",
            D1,
            Default,
            Err("signature for another digest (sha256:2222"),
        ),
        (
            "simple, copied from another image",
            release.sign_image("r.io/prod/app:v1", D2, Simple),
            "r.io/prod/app:v1",
            D1,
            Simple,
            Err("another digest"),
        ),
        (
            "other repository",
            release.sign_image("r.io/prod/evil:v1", D1, Default),
            "r.io/prod/app:v1",
            D1,
            Default,
            Err("another repository (r.io/prod/evil)"),
        ),
        (
            "simple replicated to another registry",
            release.sign_image("r.io/prod/app:v1", D1, Simple),
            "mirror.io/app:v1",
            D1,
            Simple,
            Ok(0),
        ),
        (
            "wrong key",
            other.sign_image("r.io/prod/app:v1", D1, Default),
            "r.io/prod/app:v1",
            D1,
            Default,
            Err("not signed by a trusted key"),
        ),
        (
            "unsigned layer",
            StoredSignature::cosign(b"{}".to_vec(), None),
            "r.io/prod/app:v1",
            D1,
            Default,
            Err("no signature"),
        ),
    ];
    for (name, stored, workload, digest, t, want) in cases {
        let got = check(&stored, workload, digest, t, &keys);
        match (&got, want) {
            (Ok(i), Ok(j)) => assert_eq!(*i, j, "{name}"),
            (Err(e), Err(needle)) => assert!(e.contains(needle), "{name}: {e}"),
            _ => panic!("{name}: got {got:?}, want {want:?}"),
        }
    }
}

#[test]
fn tampering_is_detected() {
    let release = Signer::new();
    let keys = [release.public()];
    let mut stored = release.sign_image("r.io/prod/app:v1", D1, SignatureType::Default);
    let good = stored.clone();
    stored.payload = String::from_utf8(stored.payload)
        .unwrap()
        .replace("v1", "v2")
        .into_bytes();
    assert_eq!(
        check(
            &stored,
            "r.io/prod/app:v2",
            D1,
            SignatureType::Default,
            &keys
        ),
        Err("not signed by a trusted key".into())
    );
    let mut stored = good.clone();
    if let Some(sig) = stored.signature.as_mut() {
        let last = sig.len() - 1;
        sig[last] ^= 1;
    }
    assert!(
        check(
            &stored,
            "r.io/prod/app:v1",
            D1,
            SignatureType::Default,
            &keys
        )
        .is_err()
    );
    assert_eq!(
        check(&good, "r.io/prod/app:v1", D1, SignatureType::Default, &keys),
        Ok(0)
    );
}

#[test]
fn rotation_reports_which_key_verified() {
    let old = Signer::new();
    let new = Signer::new();
    let keys = [old.public(), new.public()];
    let stored = new.sign_image("r.io/a:v1", D1, SignatureType::Default);
    assert_eq!(
        check(&stored, "r.io/a:v1", D1, SignatureType::Default, &keys),
        Ok(1)
    );
}

#[test]
fn signed_garbage_and_unknown_types_are_refused() {
    let s = Signer::new();
    let keys = [s.public()];
    let stored = s.sign(b"not json");
    assert!(
        check(&stored, "r.io/a:v1", D1, SignatureType::Default, &keys)
            .unwrap_err()
            .starts_with("malformed payload")
    );
    let text = format!(
        r#"{{"critical":{{"identity":{{"docker-reference":"r.io/a:v1"}},"image":{{"docker-manifest-digest":"{D1}"}},"type":"something else"}}}}"#
    );
    let stored = s.sign(text.as_bytes());
    assert!(
        check(&stored, "r.io/a:v1", D1, SignatureType::Default, &keys)
            .unwrap_err()
            .contains("unknown payload type")
    );
}
