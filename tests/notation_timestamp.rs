//! RFC 3161 timestamps on Notation signatures, with genuine tokens from Debian's `openssl ts`
//! (tests/support/tsa.rs): a signature whose certificate has expired since counts when a trusted
//! TSA proves it was made inside the certificate's validity; each way a timestamp can fail to
//! prove that is refused, and the refusal says which.
//!
//! The TSA stamps at the real clock; verification runs at a chosen later time, so the signing
//! certificates are made to expire between the two.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "support/tsa.rs"]
mod tsa;

use std::time::{Duration, SystemTime};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use coset::cbor::value::Value;
use coset::{CoseSign1, Label, TaggedCborSerializable};
use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use signet::crypto::x509::{Certificate, TrustStore};
use signet::crypto::{Algorithm, FileKey, generate_key_pair};
use signet::signature::notation::{
    EnvelopeFormat, NotationClaims, NotationRejection, TargetArtifact, build_signature_manifest,
    sign_notation, verify_notation,
};

use tsa::Tsa;

const TIMESTAMP_HEADER: &str = "io.cncf.notary.timestampSignature";
const DAY: i64 = 86_400;

fn now() -> i64 {
    jiff::Timestamp::now().as_second()
}

fn at(seconds: i64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(seconds).unwrap())
}

/// A signer: a P-256 key and its self-signed code-signing certificate, valid `from`..`to`
/// (Unix seconds); the certificate is its own trust anchor.
struct Signer {
    key: FileKey,
    certificate: Certificate,
}

fn signer(from: i64, to: i64) -> Signer {
    let pair = generate_key_pair(Algorithm::EcdsaP256Sha256, None).unwrap();
    let rcgen_key = KeyPair::from_pkcs8_pem_and_sign_algo(
        pair.private_key_pem(),
        &rcgen::PKCS_ECDSA_P256_SHA256,
    )
    .unwrap();
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::OrganizationName, "acme");
    name.push(DnType::CommonName, "release");
    params.distinguished_name = name;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::CodeSigning];
    params.not_before = at(from).into();
    params.not_after = at(to).into();
    let certificate = Certificate::from_der(params.self_signed(&rcgen_key).unwrap().der()).unwrap();
    Signer {
        key: FileKey::from_pem(pair.private_key_pem(), Algorithm::EcdsaP256Sha256, "test").unwrap(),
        certificate,
    }
}

fn target() -> TargetArtifact {
    TargetArtifact {
        media_type: "application/vnd.oci.image.manifest.v1+json".into(),
        digest: "sha256:4e31af7b264bca7496760c2c94771a1cedb23532f08ad33a3d0518163529c356".into(),
        size: 1234,
        annotations: Default::default(),
    }
}

/// An envelope signed at `signed_at` and its signature value (what Notary timestamps).
fn signed(signer: &Signer, format: EnvelopeFormat, signed_at: i64) -> (Vec<u8>, Vec<u8>) {
    let chain = [signer.certificate.clone()];
    let envelope = sign_notation(&signer.key, &chain, &target(), format, signed_at, None)
        .unwrap()
        .envelope;
    let signature = match format {
        EnvelopeFormat::Jws => {
            let doc: serde_json::Value = serde_json::from_slice(&envelope).unwrap();
            URL_SAFE_NO_PAD
                .decode(doc["signature"].as_str().unwrap())
                .unwrap()
        }
        EnvelopeFormat::Cose => CoseSign1::from_tagged_slice(&envelope).unwrap().signature,
    };
    (envelope, signature)
}

/// `envelope` with `token` as its unprotected timestamp (JWS `header`, COSE unprotected map).
fn with_timestamp(envelope: &[u8], format: EnvelopeFormat, token: &[u8]) -> Vec<u8> {
    match format {
        EnvelopeFormat::Jws => {
            let mut doc: serde_json::Value = serde_json::from_slice(envelope).unwrap();
            doc["header"][TIMESTAMP_HEADER] = STANDARD.encode(token).into();
            serde_json::to_vec(&doc).unwrap()
        }
        EnvelopeFormat::Cose => {
            let mut sign1 = CoseSign1::from_tagged_slice(envelope).unwrap();
            sign1.unprotected.rest.push((
                Label::Text(TIMESTAMP_HEADER.into()),
                Value::Bytes(token.to_vec()),
            ));
            sign1.to_tagged_vec().unwrap()
        }
    }
}

fn verify(
    signer: &Signer,
    format: EnvelopeFormat,
    envelope: &[u8],
    tsa_roots: Option<&str>,
    when: i64,
) -> Result<NotationClaims, NotationRejection> {
    let trust = TrustStore::new(&signer.certificate.to_pem(), &[], tsa_roots).unwrap();
    let thumbprints = [signer.certificate.sha256_hex().to_string()];
    let manifest = build_signature_manifest(
        format,
        envelope,
        &target(),
        &thumbprints,
        "2026-11-30T00:00:00Z",
    );
    verify_notation(&manifest, envelope, &target(), &trust, when)
}

fn refused(
    signer: &Signer,
    format: EnvelopeFormat,
    envelope: &[u8],
    tsa_roots: Option<&str>,
    when: i64,
) -> String {
    let err = verify(signer, format, envelope, tsa_roots, when).unwrap_err();
    assert!(
        matches!(err, NotationRejection::Certificate { .. }),
        "{err:?}"
    );
    err.to_string()
}

#[test]
fn expired_leaf_with_a_trusted_timestamp_is_accepted_in_both_formats() {
    let tsa = Tsa::get();
    let t = now();
    // Valid for the minute around now; verified a month later.
    let signer = signer(t - 60, t + 60);
    for format in [EnvelopeFormat::Jws, EnvelopeFormat::Cose] {
        let (envelope, signature) = signed(&signer, format, t);
        let stamped = with_timestamp(&envelope, format, &tsa.stamp(&signature));
        let later = t + 30 * DAY;

        let claims = verify(&signer, format, &stamped, Some(&tsa.root_pem), later)
            .unwrap_or_else(|e| panic!("{format}: {e}"));
        let proved = claims
            .authentic_signing_time
            .expect("the timestamp was needed");
        let gen_time: jiff::Timestamp = proved.time.parse().unwrap();
        assert!((gen_time.as_second() - t).abs() <= 5, "{proved:?} vs {t}");
        assert_eq!(proved.tsa, "C=US, O=acme, CN=Test TSA");
        assert_eq!(proved.tsa_root, "C=US, O=acme, CN=Test TSA Root");

        // A SHA-384 message imprint (Notation's for RSA-3072 and P-384 signers) verifies too.
        let stamped_384 = with_timestamp(&envelope, format, &tsa.stamp_sha384(&signature));
        verify(&signer, format, &stamped_384, Some(&tsa.root_pem), later).unwrap();

        // While the leaf is valid the timestamp is not needed, and no authentic time is claimed.
        let claims = verify(&signer, format, &stamped, None, t).unwrap();
        assert_eq!(claims.authentic_signing_time, None);

        // Without the timestamp the expired leaf is refused, naming the certificate.
        let text = refused(&signer, format, &envelope, Some(&tsa.root_pem), later);
        assert!(
            text.contains("\"O=acme, CN=release\" is expired at"),
            "{text}"
        );
        assert!(
            text.contains("and the signature carries no timestamp from a trusted TSA"),
            "{text}"
        );
    }
}

#[test]
fn a_timestamp_from_an_untrusted_tsa_or_without_tsa_roots_is_refused() {
    let tsa = Tsa::get();
    let t = now();
    let signer = signer(t - 60, t + 60);
    let (envelope, signature) = signed(&signer, EnvelopeFormat::Jws, t);
    let later = t + 30 * DAY;

    let stamped = with_timestamp(
        &envelope,
        EnvelopeFormat::Jws,
        &tsa.stamp_untrusted(&signature),
    );
    let text = refused(
        &signer,
        EnvelopeFormat::Jws,
        &stamped,
        Some(&tsa.root_pem),
        later,
    );
    assert!(text.contains("is expired at"), "{text}");
    assert!(
        text.contains(
            "is signed by \"C=US, O=elsewhere, CN=Other TSA\", which does not lead to a trusted TSA"
        ),
        "{text}"
    );
    // The same token verifies under its own root: the refusal was the trust, not the token.
    verify(
        &signer,
        EnvelopeFormat::Jws,
        &stamped,
        Some(&tsa.other_root_pem),
        later,
    )
    .unwrap();

    let stamped = with_timestamp(&envelope, EnvelopeFormat::Jws, &tsa.stamp(&signature));
    let text = refused(&signer, EnvelopeFormat::Jws, &stamped, None, later);
    assert!(
        text.contains("the Attestor key has no tsaCertificates"),
        "{text}"
    );
}

#[test]
fn a_tsa_certificate_without_a_critical_timestamping_eku_is_refused() {
    let tsa = Tsa::get();
    let t = now();
    let signer = signer(t - 60, t + 60);
    let (envelope, signature) = signed(&signer, EnvelopeFormat::Jws, t);
    let later = t + 30 * DAY;
    // Control: the same CMS assembly signed by the real TSA certificate verifies.
    let control = with_timestamp(
        &envelope,
        EnvelopeFormat::Jws,
        &tsa.cms_signed(&signature, "tsa"),
    );
    verify(
        &signer,
        EnvelopeFormat::Jws,
        &control,
        Some(&tsa.root_pem),
        later,
    )
    .unwrap();

    let token = tsa.cms_signed(&signature, "noeku");
    let stamped = with_timestamp(&envelope, EnvelopeFormat::Jws, &token);
    let text = refused(
        &signer,
        EnvelopeFormat::Jws,
        &stamped,
        Some(&tsa.root_pem),
        later,
    );
    assert!(
        text.contains("the timestamp's TSA certificate \"C=US, O=acme, CN=Test TSA without EKU\" has no extendedKeyUsage (timeStamping is required)"),
        "{text}"
    );

    let token = tsa.cms_signed(&signature, "noncritical");
    let stamped = with_timestamp(&envelope, EnvelopeFormat::Jws, &token);
    let text = refused(
        &signer,
        EnvelopeFormat::Jws,
        &stamped,
        Some(&tsa.root_pem),
        later,
    );
    assert!(
        text.contains("\"C=US, O=acme, CN=Test TSA with a non-critical EKU\" must mark its extendedKeyUsage (timeStamping) critical"),
        "{text}"
    );
}

#[test]
fn a_timestamp_over_another_signature_is_refused() {
    let tsa = Tsa::get();
    let t = now();
    let signer = signer(t - 60, t + 60);
    let (envelope, _) = signed(&signer, EnvelopeFormat::Cose, t);
    let (_, other_signature) = signed(&signer, EnvelopeFormat::Cose, t - 1);
    let stamped = with_timestamp(
        &envelope,
        EnvelopeFormat::Cose,
        &tsa.stamp(&other_signature),
    );
    let text = refused(
        &signer,
        EnvelopeFormat::Cose,
        &stamped,
        Some(&tsa.root_pem),
        t + 30 * DAY,
    );
    assert!(
        text.contains("the timestamp is over another signature"),
        "{text}"
    );
}

#[test]
fn a_timestamp_outside_the_certificates_validity_is_refused() {
    let tsa = Tsa::get();
    let t = now();
    // The leaf expired yesterday; the TSA stamps now: the signature was made too late.
    let signer = signer(t - 10 * DAY, t - DAY);
    let (envelope, signature) = signed(&signer, EnvelopeFormat::Jws, t - 2 * DAY);
    let stamped = with_timestamp(&envelope, EnvelopeFormat::Jws, &tsa.stamp(&signature));
    let text = refused(
        &signer,
        EnvelopeFormat::Jws,
        &stamped,
        Some(&tsa.root_pem),
        t + DAY,
    );
    assert!(
        text.contains("\"O=acme, CN=release\" is expired at"),
        "{text}"
    );
    assert!(
        text.contains("the signing time a trusted timestamp proves")
            && text.contains(
                "TSA \"C=US, O=acme, CN=Test TSA\") is outside the certificate's validity"
            ),
        "{text}"
    );
}

#[test]
fn a_tampered_timestamp_token_is_refused() {
    let tsa = Tsa::get();
    let t = now();
    let signer = signer(t - 60, t + 60);
    let (envelope, signature) = signed(&signer, EnvelopeFormat::Jws, t);
    let later = t + 30 * DAY;
    let token = tsa.stamp(&signature);

    // genTime moved by a second: the TSTInfo no longer matches its signed message-digest.
    let mut moved = token.clone();
    let gen_time = moved
        .windows(2)
        .position(|w| w == [0x18, 0x0f])
        .expect("a GeneralizedTime of 15 bytes");
    let last_digit = gen_time + 2 + 13;
    moved[last_digit] = if moved[last_digit] == b'0' {
        b'1'
    } else {
        b'0'
    };
    let stamped = with_timestamp(&envelope, EnvelopeFormat::Jws, &moved);
    let text = refused(
        &signer,
        EnvelopeFormat::Jws,
        &stamped,
        Some(&tsa.root_pem),
        later,
    );
    assert!(
        text.contains("the timestamp token does not verify: the message-digest attribute is not the hash of the TSTInfo"),
        "{text}"
    );

    // The TSA's signature altered (its last byte).
    let mut forged = token.clone();
    *forged.last_mut().unwrap() ^= 0x01;
    let stamped = with_timestamp(&envelope, EnvelopeFormat::Jws, &forged);
    let text = refused(
        &signer,
        EnvelopeFormat::Jws,
        &stamped,
        Some(&tsa.root_pem),
        later,
    );
    assert!(
        text.contains(
            "the timestamp token does not verify: signature by \"C=US, O=acme, CN=Test TSA\""
        ),
        "{text}"
    );

    // Cut short, and not a token at all.
    for junk in [&token[..token.len() / 2], b"not a token".as_slice()] {
        let stamped = with_timestamp(&envelope, EnvelopeFormat::Jws, junk);
        let text = refused(
            &signer,
            EnvelopeFormat::Jws,
            &stamped,
            Some(&tsa.root_pem),
            later,
        );
        assert!(text.contains("the timestamp token is malformed"), "{text}");
    }
}
