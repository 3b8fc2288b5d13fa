//! Round trips (sign -> verify, JWS and COSE, RSA-PSS and ECDSA, chains of 1 and 3) and one
//! negative test per refusal: each envelope is built to break exactly one rule, and the verdict
//! must name that rule.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, date_time_ymd,
};

use super::sign::{Unchecked, sign_with};
use super::*;
use crate::crypto::x509::{Certificate, TrustStore, X509Error};
use crate::crypto::{Algorithm, FileKey, generate_key_pair};

/// 2026-11-30T06:13:20Z.
const NOW: i64 = 1_796_019_200;

fn name(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CountryName, "US");
    dn.push(DnType::OrganizationName, "acme");
    dn.push(DnType::CommonName, cn);
    dn
}

fn ca_params(cn: &str, path_len: Option<u8>) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = name(cn);
    params.is_ca = IsCa::Ca(match path_len {
        Some(n) => BasicConstraints::Constrained(n),
        None => BasicConstraints::Unconstrained,
    });
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.not_before = date_time_ymd(2025, 1, 1);
    params.not_after = date_time_ymd(2035, 1, 1);
    params
}

fn leaf_params(cn: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = name(cn);
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::CodeSigning];
    params.not_before = date_time_ymd(2025, 1, 1);
    params.not_after = date_time_ymd(2030, 1, 1);
    params
}

fn cert(rc: &rcgen::Certificate) -> Certificate {
    Certificate::from_der(rc.der()).unwrap()
}

/// A root and an intermediate CA (both ECDSA P-256), able to issue leaves.
struct Pki {
    root: Certificate,
    intermediate: Certificate,
    intermediate_issuer: Issuer<'static, KeyPair>,
}

impl Pki {
    fn new(root_cn: &str, root_path_len: Option<u8>) -> Self {
        let root_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let root_params = ca_params(root_cn, root_path_len);
        let root = root_params.self_signed(&root_key).unwrap();
        let root_issuer = Issuer::new(root_params, root_key);
        let int_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
        let int_params = ca_params(&format!("{root_cn} intermediate"), Some(0));
        let intermediate = int_params.signed_by(&int_key, &root_issuer).unwrap();
        Pki {
            root: cert(&root),
            intermediate: cert(&intermediate),
            intermediate_issuer: Issuer::new(int_params, int_key),
        }
    }

    fn trust(&self) -> TrustStore {
        TrustStore::new(&self.root.to_pem(), &[], None).unwrap()
    }

    /// A chain of 3 (leaf, intermediate, root) for `key`'s public key.
    fn chain(&self, key: &Key, params: CertificateParams) -> Vec<Certificate> {
        let leaf = params
            .signed_by(&key.public, &self.intermediate_issuer)
            .unwrap();
        vec![cert(&leaf), self.intermediate.clone(), self.root.clone()]
    }
}

/// A signet signing key and the same key as rcgen sees it.
struct Key {
    signing: FileKey,
    public: KeyPair,
}

fn key(algorithm: Algorithm, bits: Option<u32>) -> Key {
    let generated = generate_key_pair(algorithm, bits).unwrap();
    let rcgen_alg = match algorithm {
        Algorithm::EcdsaP256Sha256 => &rcgen::PKCS_ECDSA_P256_SHA256,
        Algorithm::EcdsaP384Sha384 => &rcgen::PKCS_ECDSA_P384_SHA384,
        _ => &rcgen::PKCS_RSA_SHA256,
    };
    Key {
        signing: FileKey::from_pem(generated.private_key_pem(), algorithm, "test").unwrap(),
        public: KeyPair::from_pkcs8_pem_and_sign_algo(generated.private_key_pem(), rcgen_alg)
            .unwrap(),
    }
}

fn self_signed(key: &Key, params: CertificateParams) -> Vec<Certificate> {
    // rcgen signs with the key it holds: the certificate is self-signed by the signing key.
    vec![cert(&params.self_signed(&key.public).unwrap())]
}

fn target() -> TargetArtifact {
    let mut annotations = BTreeMap::new();
    annotations.insert(
        REFERENCE_ANNOTATION.to_string(),
        "registry.example.com/prod/app:v1".to_string(),
    );
    TargetArtifact {
        media_type: "application/vnd.oci.image.manifest.v1+json".into(),
        digest: "sha256:4e31af7b264bca7496760c2c94771a1cedb23532f08ad33a3d0518163529c356".into(),
        size: 1234,
        annotations,
    }
}

fn sign(key: &Key, chain: &[Certificate], format: EnvelopeFormat) -> SignedNotation {
    sign_notation(&key.signing, chain, &target(), format, NOW - 60, None).unwrap()
}

fn forge(
    key: &Key,
    chain: &[Certificate],
    format: EnvelopeFormat,
    unchecked: Unchecked<'_>,
) -> SignedNotation {
    sign_with(
        &key.signing,
        chain,
        &target(),
        format,
        NOW - 60,
        None,
        &unchecked,
    )
    .unwrap()
}

fn verify(
    signed: &SignedNotation,
    trust: &TrustStore,
) -> Result<NotationClaims, NotationRejection> {
    verify_notation(&signed.manifest, &signed.envelope, &target(), trust, NOW)
}

const FORMATS: [EnvelopeFormat; 2] = [EnvelopeFormat::Jws, EnvelopeFormat::Cose];

#[test]
fn rsa_pss_and_ecdsa_chains_of_three_round_trip_in_both_formats() {
    let pki = Pki::new("Acme Root", Some(1));
    for (algorithm, bits) in [
        (Algorithm::RsaPssSha256, Some(2048)),
        (Algorithm::EcdsaP256Sha256, None),
        (Algorithm::EcdsaP384Sha384, None),
    ] {
        let key = key(algorithm, bits);
        let chain = pki.chain(&key, leaf_params("release"));
        for format in FORMATS {
            let signed = sign(&key, &chain, format);
            let claims = verify(&signed, &pki.trust())
                .unwrap_or_else(|e| panic!("{algorithm} {format}: {e}"));
            assert_eq!(claims.format, format);
            assert_eq!(claims.signer, "C=US, O=acme, CN=release");
            assert_eq!(claims.anchor, "C=US, O=acme, CN=Acme Root");
            assert_eq!(
                claims.reference.as_deref(),
                Some("registry.example.com/prod/app:v1")
            );
            let manifest = parse_signature_manifest(&signed.manifest).unwrap();
            assert_eq!(manifest.format, format);
            assert_eq!(
                manifest.subject_digest.as_deref(),
                Some(target().digest.as_str())
            );
            assert!(may_reach(&manifest, &pki.trust()));
        }
    }
}

#[test]
fn self_signed_leaf_round_trips_with_identity_and_expiry() {
    let key = key(Algorithm::EcdsaP256Sha256, None);
    let chain = self_signed(&key, leaf_params("release"));
    let identity = ["x509.subject: C=US, O=acme, CN=release".to_string()];
    let trust = TrustStore::new(&chain[0].to_pem(), &identity, None).unwrap();
    for format in FORMATS {
        let signed = sign_notation(
            &key.signing,
            &chain,
            &target(),
            format,
            NOW - 60,
            Some(NOW + 3600),
        )
        .unwrap();
        let claims = verify(&signed, &trust).unwrap();
        assert!(claims.expiry.is_some());
        // The same signature, checked after its expiry, is refused.
        let err = verify_notation(
            &signed.manifest,
            &signed.envelope,
            &target(),
            &trust,
            NOW + 7200,
        )
        .unwrap_err();
        assert!(matches!(err, NotationRejection::Expired(_)), "{err}");
    }
}

#[test]
fn chain_to_another_root_is_refused() {
    let pki = Pki::new("Acme Root", Some(1));
    let other = Pki::new("Other Root", Some(1));
    let key = key(Algorithm::EcdsaP256Sha256, None);
    let signed = sign(
        &key,
        &other.chain(&key, leaf_params("release")),
        EnvelopeFormat::Jws,
    );
    let err = verify(&signed, &pki.trust()).unwrap_err();
    assert!(
        matches!(
            err,
            NotationRejection::Certificate {
                error: X509Error::Untrusted(_),
                ..
            }
        ),
        "{err}"
    );
    assert!(
        err.to_string().contains("does not lead to a trusted root"),
        "{err}"
    );
    // The thumbprint annotation already tells: no need to fetch the envelope.
    let manifest = parse_signature_manifest(&signed.manifest).unwrap();
    assert!(!may_reach(&manifest, &pki.trust()));
}

fn refused_chain(params: CertificateParams, expected: &str) {
    let pki = Pki::new("Acme Root", Some(1));
    let key = key(Algorithm::EcdsaP256Sha256, None);
    let chain = pki.chain(&key, params);
    // signet refuses to sign with it...
    let err = sign_notation(
        &key.signing,
        &chain,
        &target(),
        EnvelopeFormat::Jws,
        NOW,
        None,
    )
    .unwrap_err();
    assert!(err.to_string().contains(expected), "sign: {err}");
    // ...and a verifier refuses what another signer made with it.
    for format in FORMATS {
        let unchecked = Unchecked {
            skip_chain_check: true,
            ..Default::default()
        };
        let signed = forge(&key, &chain, format, unchecked);
        let err = verify(&signed, &pki.trust()).unwrap_err();
        assert!(err.to_string().contains(expected), "{format}: {err}");
    }
}

#[test]
fn leaf_without_digital_signature_is_refused() {
    let mut params = leaf_params("release");
    params.key_usages = vec![KeyUsagePurpose::ContentCommitment];
    refused_chain(params, "keyUsage lacks digitalSignature");
}

#[test]
fn leaf_with_key_encipherment_is_refused() {
    let mut params = leaf_params("release");
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    refused_chain(params, "digitalSignature only, but has keyEncipherment");
}

#[test]
fn leaf_with_server_auth_eku_is_refused() {
    let mut params = leaf_params("release");
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::CodeSigning,
        ExtendedKeyUsagePurpose::ServerAuth,
    ];
    refused_chain(
        params,
        "extendedKeyUsage must be absent or codeSigning, but has serverAuth",
    );
}

#[test]
fn leaf_without_eku_is_accepted() {
    let pki = Pki::new("Acme Root", Some(1));
    let key = key(Algorithm::EcdsaP256Sha256, None);
    let mut params = leaf_params("release");
    params.extended_key_usages = Vec::new();
    let signed = sign(&key, &pki.chain(&key, params), EnvelopeFormat::Cose);
    verify(&signed, &pki.trust()).unwrap();
}

#[test]
fn expired_leaf_without_timestamp_is_refused() {
    let mut params = leaf_params("release");
    params.not_before = date_time_ymd(2020, 1, 1);
    params.not_after = date_time_ymd(2021, 1, 1);
    refused_chain(params, "is expired at");
    // Without a timestamp in the envelope, the verdict says none saved it.
    let pki = Pki::new("Acme Root", Some(1));
    let key = key(Algorithm::EcdsaP256Sha256, None);
    let mut params = leaf_params("release");
    params.not_after = date_time_ymd(2021, 1, 1);
    let unchecked = Unchecked {
        skip_chain_check: true,
        ..Default::default()
    };
    let signed = forge(
        &key,
        &pki.chain(&key, params),
        EnvelopeFormat::Jws,
        unchecked,
    );
    let err = verify(&signed, &pki.trust()).unwrap_err().to_string();
    assert!(
        err.contains("\"C=US, O=acme, CN=release\" is expired at"),
        "{err}"
    );
    assert!(
        err.ends_with("and the signature carries no timestamp from a trusted TSA"),
        "{err}"
    );
}

#[test]
fn path_length_constraint_is_honoured() {
    // The root allows no CA below it, but the chain has an intermediate.
    let pki = Pki::new("Acme Root", Some(0));
    let key = key(Algorithm::EcdsaP256Sha256, None);
    let unchecked = Unchecked {
        skip_chain_check: true,
        ..Default::default()
    };
    let signed = forge(
        &key,
        &pki.chain(&key, leaf_params("release")),
        EnvelopeFormat::Jws,
        unchecked,
    );
    let err = verify(&signed, &pki.trust()).unwrap_err().to_string();
    assert!(
        err.contains("pathLenConstraint 0 but 1 CA certificate(s) below it"),
        "{err}"
    );
}

#[test]
fn alg_not_matching_the_key_is_refused() {
    // An RSA-3072 key demands PS384; signet's RSA_PSS_SHA_256 key signs PS256 (a valid signature).
    let key = key(Algorithm::RsaPssSha256, Some(3072));
    let chain = self_signed(&key, leaf_params("release"));
    let trust = TrustStore::new(&chain[0].to_pem(), &[], None).unwrap();
    let err = sign_notation(
        &key.signing,
        &chain,
        &target(),
        EnvelopeFormat::Jws,
        NOW,
        None,
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("Notary requires PS384 for a RSA-3072 key"),
        "{err}"
    );
    for format in FORMATS {
        let unchecked = Unchecked {
            alg: Some(NotaryAlgorithm::Ps256),
            ..Default::default()
        };
        let signed = forge(&key, &chain, format, unchecked);
        let err = verify(&signed, &trust).unwrap_err();
        assert_eq!(
            err.to_string(),
            "alg PS256 does not match the leaf's RSA-3072 key (PS384)"
        );
    }
}

#[test]
fn unknown_critical_header_is_refused_and_unknown_plain_header_is_not() {
    let key = key(Algorithm::EcdsaP256Sha256, None);
    let chain = self_signed(&key, leaf_params("release"));
    let trust = TrustStore::new(&chain[0].to_pem(), &[], None).unwrap();
    for format in FORMATS {
        let critical = [("io.example.mustUnderstand", true)];
        let unchecked = Unchecked {
            extra_headers: &critical,
            ..Default::default()
        };
        let err = verify(&forge(&key, &chain, format, unchecked), &trust).unwrap_err();
        assert_eq!(
            err.to_string(),
            "envelope refused: unknown critical header \"io.example.mustUnderstand\""
        );
        let plain = [("io.example.note", false)];
        let unchecked = Unchecked {
            extra_headers: &plain,
            ..Default::default()
        };
        verify(&forge(&key, &chain, format, unchecked), &trust).unwrap();
        let plugin = [("io.cncf.notary.verificationPlugin", true)];
        let unchecked = Unchecked {
            extra_headers: &plugin,
            ..Default::default()
        };
        let err = verify(&forge(&key, &chain, format, unchecked), &trust).unwrap_err();
        assert!(err.to_string().contains("signet runs none"), "{err}");
    }
}

#[test]
fn payload_naming_another_digest_size_or_media_type_is_refused() {
    let key = key(Algorithm::EcdsaP256Sha256, None);
    let chain = self_signed(&key, leaf_params("release"));
    let trust = TrustStore::new(&chain[0].to_pem(), &[], None).unwrap();
    let admitted = target();
    type Change = fn(&mut TargetArtifact);
    let variants: [(Change, &str); 3] = [
        (
            |t| {
                t.digest =
                    "sha256:0000000000000000000000000000000000000000000000000000000000000000".into()
            },
            "signature for another digest",
        ),
        (
            |t| t.size = 99,
            "signature for another size (99 bytes, the manifest has 1234)",
        ),
        (
            |t| t.media_type = "application/vnd.oci.image.index.v1+json".into(),
            "signature for another media type",
        ),
    ];
    for (change, expected) in variants {
        let mut signed_for = admitted.clone();
        change(&mut signed_for);
        for format in FORMATS {
            let signed =
                sign_notation(&key.signing, &chain, &signed_for, format, NOW, None).unwrap();
            // The signature copied next to the admitted image: its manifest's subject is the
            // admitted one, so only the signed payload can tell.
            let copied = with_envelope(&signed, signed.envelope.clone(), &chain);
            let err = verify_notation(&copied.manifest, &copied.envelope, &admitted, &trust, NOW)
                .unwrap_err();
            assert!(matches!(err, NotationRejection::OtherTarget(_)), "{err}");
            assert!(err.to_string().contains(expected), "{format}: {err}");
        }
    }
}

/// Rebuilds the manifest around a changed envelope, so only the envelope's own checks can fail.
fn with_envelope(
    signed: &SignedNotation,
    envelope: Vec<u8>,
    chain: &[Certificate],
) -> SignedNotation {
    let thumbprints: Vec<String> = chain.iter().map(|c| c.sha256_hex().to_string()).collect();
    SignedNotation {
        format: signed.format,
        manifest: build_signature_manifest(
            signed.format,
            &envelope,
            &target(),
            &thumbprints,
            "2026-11-30T00:00:00Z",
        ),
        envelope,
    }
}

#[test]
fn tampered_envelope_is_refused() {
    let key = key(Algorithm::RsaPssSha256, Some(2048));
    let chain = self_signed(&key, leaf_params("release"));
    let trust = TrustStore::new(&chain[0].to_pem(), &[], None).unwrap();
    // JWS: the payload swapped for one naming the same target with another annotation.
    let signed = sign(&key, &chain, EnvelopeFormat::Jws);
    let mut doc: serde_json::Value = serde_json::from_slice(&signed.envelope).unwrap();
    let mut other = target();
    other.annotations.insert(
        REFERENCE_ANNOTATION.into(),
        "registry.example.com/prod/app:latest".into(),
    );
    doc["payload"] = URL_SAFE_NO_PAD
        .encode(super::payload::build_payload(&other))
        .into();
    let tampered = with_envelope(&signed, serde_json::to_vec(&doc).unwrap(), &chain);
    assert_eq!(
        verify(&tampered, &trust).unwrap_err(),
        NotationRejection::BadSignature
    );
    // COSE: one byte of the signature flipped.
    let signed = sign(&key, &chain, EnvelopeFormat::Cose);
    let mut envelope = signed.envelope.clone();
    let last = envelope.len() - 1;
    envelope[last] ^= 1;
    let tampered = with_envelope(&signed, envelope, &chain);
    assert_eq!(
        verify(&tampered, &trust).unwrap_err(),
        NotationRejection::BadSignature
    );
    // The blob itself changed under an unchanged manifest.
    let mut envelope = signed.envelope.clone();
    envelope[last] ^= 1;
    let err = verify_notation(&signed.manifest, &envelope, &target(), &trust, NOW).unwrap_err();
    assert!(matches!(err, NotationRejection::BlobMismatch(_)), "{err}");
}

#[test]
fn thumbprint_annotation_not_matching_the_chain_is_refused() {
    let pki = Pki::new("Acme Root", Some(1));
    let key = key(Algorithm::EcdsaP256Sha256, None);
    let chain = pki.chain(&key, leaf_params("release"));
    for format in FORMATS {
        let signed = sign(&key, &chain, format);
        let mut thumbprints: Vec<String> =
            chain.iter().map(|c| c.sha256_hex().to_string()).collect();
        thumbprints.swap(0, 1);
        let manifest = build_signature_manifest(
            format,
            &signed.envelope,
            &target(),
            &thumbprints,
            "2026-11-30T00:00:00Z",
        );
        let err =
            verify_notation(&manifest, &signed.envelope, &target(), &pki.trust(), NOW).unwrap_err();
        assert_eq!(err, NotationRejection::ThumbprintMismatch);
        assert!(err.to_string().contains(THUMBPRINT_ANNOTATION), "{err}");
    }
}

#[test]
fn manifests_that_are_not_notation_signatures_are_named() {
    let key = key(Algorithm::EcdsaP256Sha256, None);
    let chain = self_signed(&key, leaf_params("release"));
    let signed = sign(&key, &chain, EnvelopeFormat::Jws);
    let mut doc: serde_json::Value = serde_json::from_slice(&signed.manifest).unwrap();
    let check = |doc: &serde_json::Value, expected: &str| {
        let err = parse_signature_manifest(&serde_json::to_vec(doc).unwrap()).unwrap_err();
        assert!(err.contains(expected), "{err}");
    };
    let mut other = doc.clone();
    other["artifactType"] = "application/vnd.dev.sigstore.bundle.v0.3+json".into();
    check(&other, "not a Notation signature");
    let mut two = doc.clone();
    let layer = two["layers"][0].clone();
    two["layers"].as_array_mut().unwrap().push(layer);
    check(&two, "exactly one layer, this one has 2");
    let mut tar = doc.clone();
    tar["layers"][0]["mediaType"] = "application/vnd.oci.image.layer.v1.tar".into();
    check(&tar, "neither application/jose+json nor application/cose");
    let mut elsewhere = doc.clone();
    elsewhere["subject"]["digest"] =
        "sha256:1111111111111111111111111111111111111111111111111111111111111111".into();
    let trust = TrustStore::new(&chain[0].to_pem(), &[], None).unwrap();
    let err = verify_notation(
        &serde_json::to_vec(&elsewhere).unwrap(),
        &signed.envelope,
        &target(),
        &trust,
        NOW,
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("signature manifest refers to another digest"),
        "{err}"
    );
    let mut bad_thumbprints = doc.clone();
    bad_thumbprints["annotations"][THUMBPRINT_ANNOTATION] = "abc".into();
    check(&bad_thumbprints, "not a JSON list");
    // Older signers: no artifactType, the config carries the Notation media type.
    doc.as_object_mut().unwrap().remove("artifactType");
    doc["config"]["mediaType"] = NOTATION_ARTIFACT_TYPE.into();
    let manifest = serde_json::to_vec(&doc).unwrap();
    verify_notation(&manifest, &signed.envelope, &target(), &trust, NOW).unwrap();
}

#[test]
fn signing_refuses_a_chain_for_another_key_and_pkcs1_keys() {
    let key_a = key(Algorithm::EcdsaP256Sha256, None);
    let key_b = key(Algorithm::EcdsaP256Sha256, None);
    let chain_b = self_signed(&key_b, leaf_params("release"));
    let err = sign_notation(
        &key_a.signing,
        &chain_b,
        &target(),
        EnvelopeFormat::Jws,
        NOW,
        None,
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("does not hold the public key"),
        "{err}"
    );
    let pkcs1 = key(Algorithm::RsaPkcs1Sha256, Some(2048));
    let chain = self_signed(&pkcs1, leaf_params("release"));
    let err = sign_notation(
        &pkcs1.signing,
        &chain,
        &target(),
        EnvelopeFormat::Jws,
        NOW,
        None,
    )
    .unwrap_err();
    assert!(err.to_string().contains("Notary requires PS256"), "{err}");
}

#[test]
fn garbage_envelopes_are_malformed_not_panics() {
    let key = key(Algorithm::EcdsaP256Sha256, None);
    let chain = self_signed(&key, leaf_params("release"));
    let trust = TrustStore::new(&chain[0].to_pem(), &[], None).unwrap();
    for format in FORMATS {
        for junk in [&b""[..], b"{}", b"\xd2\x84", b"not json", b"\x00\x01\x02"] {
            let signed = sign(&key, &chain, format);
            let forged = with_envelope(&signed, junk.to_vec(), &chain);
            let err = verify(&forged, &trust).unwrap_err();
            assert!(
                matches!(err, NotationRejection::MalformedEnvelope(_)),
                "{format} {junk:?}: {err}"
            );
        }
    }
}
