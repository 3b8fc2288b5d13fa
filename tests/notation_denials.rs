//! Crafted Notation signatures pushed into Debian's `docker-registry` 2.8 (fallback index) and
//! each denied at admission by the webhook (over TLS), with its reason in the denial: one
//! registry, one webhook, one image per case, table-driven.
//!
//! Each envelope breaks exactly one rule and is otherwise well made: signed with `sign_notation`
//! and then altered where an attacker could (the unsigned `x5c` chain, the manifest's
//! annotation and subject, bytes of the envelope), or built by hand here and signed for real
//! with aws-lc-rs (a wrong `alg`, an unknown critical header). A control case, signed properly,
//! is admitted by the same webhook.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, RSA_PSS_SHA384, RsaKeyPair,
};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use rcgen::{ExtendedKeyUsagePurpose, KeyUsagePurpose, date_time_ymd};
use rustls_pki_types::PrivatePkcs8KeyDer;
use rustls_pki_types::pem::PemObject;
use serde_json::{Value, json};
use signet::crypto::x509::Certificate;
use signet::crypto::{Algorithm, FileKey, generate_key_pair};
use signet::policy::NoMatch;
use signet::reference::ImageRef;
use signet::signature::notation::{
    EnvelopeFormat, REFERENCE_ANNOTATION, SignedNotation, TargetArtifact, build_signature_manifest,
    sign_notation,
};

use support::Registry;
use support::notation::{
    Pki, attach_crafted, certificate_attestor_yaml, leaf_params, policy_yaml, this_year,
};
use support::webhook::{TestWebhook, pod_review, policy_state_of, registry_client, settings};

/// The signer every case uses: an ECDSA P-256 key, as signet and as aws-lc-rs see it, and an
/// RSA-2048 key (for an envelope signed PS384, which Notary forbids for RSA-2048).
struct Key {
    signing: FileKey,
    pkcs8: Vec<u8>,
    public_pem: String,
    rsa_pkcs8: Vec<u8>,
    rsa_public_pem: String,
}

fn pkcs8(pem: &str) -> Vec<u8> {
    PrivatePkcs8KeyDer::from_pem_slice(pem.as_bytes())
        .unwrap()
        .secret_pkcs8_der()
        .to_vec()
}

/// How a hand-made envelope is signed.
#[derive(Clone, Copy)]
enum HandSigner {
    /// ES256 with the P-256 key.
    Es256,
    /// PS384 with the RSA-2048 key.
    Ps384Rsa2048,
}

impl Key {
    fn new() -> Self {
        let pair = generate_key_pair(Algorithm::EcdsaP256Sha256, None).unwrap();
        let rsa = generate_key_pair(Algorithm::RsaPssSha256, Some(2048)).unwrap();
        Key {
            signing: FileKey::from_pem(pair.private_key_pem(), Algorithm::EcdsaP256Sha256, "t")
                .unwrap(),
            pkcs8: pkcs8(pair.private_key_pem()),
            public_pem: pair.public_key_pem(),
            rsa_pkcs8: pkcs8(rsa.private_key_pem()),
            rsa_public_pem: rsa.public_key_pem(),
        }
    }

    /// The raw JWS signature over `input`.
    fn sign_raw(&self, how: HandSigner, input: &[u8]) -> Vec<u8> {
        let rng = SystemRandom::new();
        match how {
            HandSigner::Es256 => {
                let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &self.pkcs8)
                    .unwrap();
                pair.sign(&rng, input).unwrap().as_ref().to_vec()
            }
            HandSigner::Ps384Rsa2048 => {
                let pair = RsaKeyPair::from_pkcs8(&self.rsa_pkcs8).unwrap();
                let mut signature = vec![0; pair.public_modulus_len()];
                pair.sign(&RSA_PSS_SHA384, &rng, input, &mut signature)
                    .unwrap();
                signature
            }
        }
    }
}

fn now() -> i64 {
    jiff::Timestamp::now().as_second()
}

fn chain(pem: &str) -> Vec<Certificate> {
    Certificate::from_pem_bundle(pem).unwrap()
}

fn thumbprints(chain: &[Certificate]) -> Vec<String> {
    chain.iter().map(|c| c.sha256_hex().to_string()).collect()
}

/// The signature manifest for `envelope` attached to the real `subject`.
fn manifest_for(
    format: EnvelopeFormat,
    envelope: &[u8],
    subject: &TargetArtifact,
    chain: &[Certificate],
) -> Vec<u8> {
    let subject = TargetArtifact {
        annotations: BTreeMap::new(),
        ..subject.clone()
    };
    let created = format!("{:.0}", jiff::Timestamp::now());
    build_signature_manifest(format, envelope, &subject, &thumbprints(chain), &created)
}

/// A JWS envelope built by hand, signed for real: `alg` as written, the Notary headers plus
/// `extra` (each listed in `crit`).
fn hand_jws(
    key: &Key,
    alg: &str,
    signing: HandSigner,
    extra: &[&str],
    target: &TargetArtifact,
    chain: &[Certificate],
) -> Vec<u8> {
    let mut crit = vec!["io.cncf.notary.signingScheme".to_string()];
    let mut protected = json!({
        "alg": alg,
        "cty": "application/vnd.cncf.notary.payload.v1+json",
        "io.cncf.notary.signingScheme": "notary.x509",
        "io.cncf.notary.signingTime": format!("{:.0}", jiff::Timestamp::now()),
    });
    for name in extra {
        protected[*name] = json!("x");
        crit.push((*name).to_string());
    }
    protected["crit"] = json!(crit);
    let protected = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&protected).unwrap());
    let payload =
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&json!({ "targetArtifact": target })).unwrap());
    let signature = key.sign_raw(signing, format!("{protected}.{payload}").as_bytes());
    serde_json::to_vec(&json!({
        "payload": payload,
        "protected": protected,
        "header": {"x5c": chain.iter().map(|c| STANDARD.encode(c.der())).collect::<Vec<_>>()},
        "signature": URL_SAFE_NO_PAD.encode(signature),
    }))
    .unwrap()
}

/// A JWS envelope with its unsigned `x5c` chain replaced by `chain`.
fn with_x5c(envelope: &[u8], chain: &[Certificate]) -> Vec<u8> {
    let mut doc: Value = serde_json::from_slice(envelope).unwrap();
    doc["header"]["x5c"] = json!(
        chain
            .iter()
            .map(|c| STANDARD.encode(c.der()))
            .collect::<Vec<_>>()
    );
    serde_json::to_vec(&doc).unwrap()
}

/// A JWS envelope whose signed payload was rewritten to bind another tag.
fn with_other_payload(envelope: &[u8]) -> Vec<u8> {
    let mut doc: Value = serde_json::from_slice(envelope).unwrap();
    let payload = URL_SAFE_NO_PAD
        .decode(doc["payload"].as_str().unwrap())
        .unwrap();
    let text = String::from_utf8(payload).unwrap().replace(":v1", ":v2");
    doc["payload"] = json!(URL_SAFE_NO_PAD.encode(text));
    serde_json::to_vec(&doc).unwrap()
}

/// What one case attaches: the envelope, the manifest; and what the denial must say.
struct Case {
    name: &'static str,
    envelope: Vec<u8>,
    manifest: Vec<u8>,
    /// `None`: the control, admitted.
    denied_because: Option<&'static str>,
}

fn signed(
    key: &Key,
    chain: &[Certificate],
    target: &TargetArtifact,
    format: EnvelopeFormat,
    at: i64,
) -> SignedNotation {
    sign_notation(&key.signing, chain, target, format, at, None).unwrap()
}

/// Every case for the image whose manifest is `subject` (its `io.signet.reference` set).
fn cases(key: &Key, pki: &Pki, other: &Pki, subject: &TargetArtifact) -> Vec<Case> {
    let good = chain(&pki.chain_pem(&key.public_pem, leaf_params("release")));
    let jws = EnvelopeFormat::Jws;
    let valid = signed(key, &good, subject, jws, now());
    let fixed = |name, envelope: Vec<u8>, chain: &[Certificate], why| Case {
        name,
        manifest: manifest_for(jws, &envelope, subject, chain),
        envelope,
        denied_because: Some(why),
    };
    let mut list = vec![Case {
        name: "control",
        envelope: valid.envelope.clone(),
        manifest: valid.manifest.clone(),
        denied_because: None,
    }];

    let elsewhere = chain(&other.chain_pem(&key.public_pem, leaf_params("release")));
    let s = signed(key, &elsewhere, subject, jws, now());
    list.push(Case {
        name: "other-root",
        envelope: s.envelope,
        manifest: s.manifest,
        denied_because: Some("does not lead to a trusted root"),
    });

    // Same key, a leaf breaking a Notary rule swapped into the unsigned x5c.
    let mut no_signing = leaf_params("release");
    no_signing.key_usages = vec![KeyUsagePurpose::ContentCommitment];
    let mut server = leaf_params("release");
    server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    for (name, params, why) in [
        (
            "no-digital-signature",
            no_signing,
            "keyUsage lacks digitalSignature",
        ),
        (
            "server-auth",
            server,
            "extendedKeyUsage must be absent or codeSigning, but has serverAuth",
        ),
    ] {
        let bad = chain(&pki.chain_pem(&key.public_pem, params));
        list.push(fixed(name, with_x5c(&valid.envelope, &bad), &bad, why));
    }

    // Expired two years ago, signed while it was valid, no timestamp.
    let year = this_year();
    let mut expired_params = leaf_params("release");
    expired_params.not_before = date_time_ymd(year - 3, 1, 1);
    expired_params.not_after = date_time_ymd(year - 2, 1, 1);
    let expired = chain(&pki.chain_pem(&key.public_pem, expired_params));
    let then = jiff::civil::date(i16::try_from(year - 3).unwrap(), 6, 1)
        .to_zoned(jiff::tz::TimeZone::UTC)
        .unwrap()
        .timestamp()
        .as_second();
    let s = signed(key, &expired, subject, jws, then);
    list.push(Case {
        name: "expired-leaf",
        envelope: s.envelope,
        manifest: s.manifest,
        denied_because: Some("is expired"),
    });

    let rsa_chain = chain(&pki.chain_pem(&key.rsa_public_pem, leaf_params("release")));
    let wrong_alg = hand_jws(
        key,
        "PS384",
        HandSigner::Ps384Rsa2048,
        &[],
        subject,
        &rsa_chain,
    );
    list.push(fixed(
        "alg-mismatch",
        wrong_alg,
        &rsa_chain,
        "alg PS384 does not match the leaf's RSA-2048 key (PS256)",
    ));
    let critical = hand_jws(
        key,
        "ES256",
        HandSigner::Es256,
        &["io.example.unknown"],
        subject,
        &good,
    );
    list.push(fixed(
        "unknown-critical",
        critical,
        &good,
        "unknown critical header \"io.example.unknown\"",
    ));

    // Signed payloads naming another artifact, attached to this one.
    let other_digest = TargetArtifact {
        digest: format!("sha256:{}", "0".repeat(64)),
        ..subject.clone()
    };
    let other_size = TargetArtifact {
        size: subject.size + 1,
        ..subject.clone()
    };
    let other_media_type = TargetArtifact {
        media_type: "application/vnd.docker.distribution.manifest.v2+json".into(),
        ..subject.clone()
    };
    for (name, target, why) in [
        ("other-digest", other_digest, "signature for another digest"),
        ("other-size", other_size, "signature for another size"),
        (
            "other-media-type",
            other_media_type,
            "signature for another media type",
        ),
    ] {
        let s = signed(key, &good, &target, jws, now());
        list.push(fixed(name, s.envelope, &good, why));
    }

    list.push(fixed(
        "tampered-jws",
        with_other_payload(&valid.envelope),
        &good,
        "signature does not verify under the leaf certificate's key",
    ));
    let cose = signed(key, &good, subject, EnvelopeFormat::Cose, now());
    let mut tampered = cose.envelope.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 0x01;
    list.push(Case {
        name: "tampered-cose",
        manifest: manifest_for(EnvelopeFormat::Cose, &tampered, subject, &good),
        envelope: tampered,
        denied_because: Some("signature does not verify under the leaf certificate's key"),
    });

    // The envelope is fine; the annotation lists another leaf (the root still matches).
    let mut listed = thumbprints(&good);
    listed[0] = "ab".repeat(32);
    let created = format!("{:.0}", jiff::Timestamp::now());
    let bare = TargetArtifact {
        annotations: BTreeMap::new(),
        ..subject.clone()
    };
    list.push(Case {
        name: "thumbprint-mismatch",
        manifest: build_signature_manifest(jws, &valid.envelope, &bare, &listed, &created),
        envelope: valid.envelope,
        denied_because: Some(
            "annotation io.cncf.notary.x509chain.thumbprint#S256 does not match the envelope's certificate chain",
        ),
    });
    list
}

#[tokio::test(flavor = "multi_thread")]
async fn crafted_notation_signatures_are_denied_at_admission_with_their_reason() {
    let registry = Registry::start();
    let host = registry.host();
    let client = registry_client();
    let key = Key::new();
    let pki = Pki::new("Acme release");
    let other = Pki::new("Elsewhere");

    // One image per case (each case is built for its own image's descriptor).
    let names: Vec<&str> = cases(
        &key,
        &pki,
        &other,
        &TargetArtifact {
            media_type: "m".into(),
            digest: format!("sha256:{}", "1".repeat(64)),
            size: 1,
            annotations: BTreeMap::from([(REFERENCE_ANNOTATION.into(), "r/x:v1".into())]),
        },
    )
    .iter()
    .map(|c| c.name)
    .collect();
    let mut checked = Vec::new();
    for name in names {
        let repo = format!("neg/{name}");
        let digest = registry.push_test_image(&repo, "v1", name).await;
        let image = ImageRef::parse(&format!("{host}/{repo}:v1")).unwrap();
        let manifest = client
            .fetch_manifest(&image.with_digest(&digest))
            .await
            .unwrap()
            .unwrap();
        let subject = TargetArtifact {
            media_type: manifest.media_type.clone(),
            digest: digest.clone(),
            size: manifest.bytes.len() as u64,
            annotations: BTreeMap::from([(REFERENCE_ANNOTATION.into(), image.to_string())]),
        };
        let case = cases(&key, &pki, &other, &subject)
            .into_iter()
            .find(|c| c.name == name)
            .unwrap();
        attach_crafted(&client, &image, &digest, &case.envelope, &case.manifest).await;
        checked.push((image, case.denied_because));
    }

    let yaml = format!(
        "{}---\n{}",
        certificate_attestor_yaml("release", &pki.root_pem),
        policy_yaml("neg", &format!("{host}/neg/**"), &["release"]),
    );
    let webhook = TestWebhook::start(
        policy_state_of(&yaml, NoMatch::Allow),
        settings(Duration::from_secs(8)),
        None,
    )
    .await;
    let mut wrong = Vec::new();
    for (image, why) in &checked {
        let answer = webhook
            .review("/validate", pod_review(&image.to_string()))
            .await;
        let allowed = answer["allowed"] == true;
        let message = answer["status"]["message"].as_str().unwrap_or_default();
        match why {
            None if !allowed => wrong.push(format!("{image}: control denied: {message}")),
            Some(why) if allowed => wrong.push(format!("{image}: admitted, expected {why:?}")),
            Some(why) if !message.contains(why) => {
                wrong.push(format!("{image}: denial lacks {why:?}: {message}"))
            }
            _ => {}
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    assert_eq!(checked.len(), 13, "every case ran");
}
