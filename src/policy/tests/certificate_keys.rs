//! Attestor keys that are X.509 trust anchors (Notation): compiled into trust stores, shown in
//! status with subject, expiry and fingerprint, and not Ready with a reason when an anchor is
//! expired or invalid.

use rcgen::{
    BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose, date_time_ymd,
};

use super::*;

pub(super) fn root_pem(cn: &str, not_after_year: i32) -> String {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(DnType::CountryName, "US");
    params
        .distinguished_name
        .push(DnType::OrganizationName, "acme");
    params.distinguished_name.push(DnType::CommonName, cn);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign];
    params.not_before = date_time_ymd(2020, 1, 1);
    params.not_after = date_time_ymd(not_after_year, 1, 1);
    params.self_signed(&key).unwrap().pem()
}

pub(super) fn indent(pem: &str) -> String {
    pem.lines().map(|l| format!("      {l}\n")).collect()
}

fn attestor(name: &str, key_yaml: &str) -> String {
    format!(
        "apiVersion: signet.dev/v1alpha1\nkind: Attestor\nmetadata: {{name: {name}, generation: 2}}\nspec:\n  keys:\n{key_yaml}"
    )
}

fn compile_one(yaml: &str) -> Compiled {
    World::default()
        .attestor_yaml(yaml)
        .cluster_policy("p", "{images: [r.io/**], attestors: [release]}")
        .compile(NoMatch::Allow)
}

fn status<'a>(compiled: &'a Compiled, name: &str) -> &'a ObjectStatus {
    compiled.statuses.iter().find(|s| s.name == name).unwrap()
}

#[test]
fn certificate_keys_compile_and_show_subject_expiry_fingerprint() {
    let ec = TestKey::ec();
    let yaml = attestor(
        "release",
        &format!(
            "  - id: release-ca\n    certificates: |\n{}    trustedIdentities: [\"x509.subject: C=US, O=acme, CN=release\"]\n  - algorithm: ECDSA_P256_SHA_256\n    publicKey: |\n{}",
            indent(&root_pem("Acme Root", 2040)),
            indent(&ec.pem())
        ),
    );
    let compiled = compile_one(&yaml);
    let s = status(&compiled, "release");
    assert!(s.ready, "{s:#?}");
    assert!(status(&compiled, "p").ready);
    assert_eq!(s.keys.len(), 2);
    let anchor = &s.keys[0];
    assert_eq!(anchor.id.as_deref(), Some("release-ca"));
    assert_eq!(anchor.algorithm, None);
    assert_eq!(
        anchor.subject.as_deref(),
        Some("C=US, O=acme, CN=Acme Root")
    );
    assert_eq!(anchor.expiry.as_deref(), Some("2040-01-01T00:00:00Z"));
    assert!(anchor.fingerprint.starts_with("sha256:") && anchor.fingerprint.len() == 71);
    assert!(s.keys[1].algorithm.is_some() && s.keys[1].subject.is_none());
    let trust = compiled.snapshot.notation_trust("release");
    assert_eq!(trust.len(), 1);
    assert_eq!(trust[0].0, "release-ca");
    assert_eq!(
        trust[0].1.anchors()[0].subject(),
        "C=US, O=acme, CN=Acme Root"
    );
    assert!(compiled.snapshot.notation_trust("other").is_empty());
}

#[test]
fn expired_or_invalid_anchors_make_the_attestor_not_ready() {
    let cases = [
        (
            format!("  - certificates: |\n{}", indent(&root_pem("Old Root", 2021))),
            "spec.keys[0].certificates: trust anchor \"C=US, O=acme, CN=Old Root\" expired 2021-01-01T00:00:00Z",
        ),
        (
            "  - certificates: \"-----BEGIN CERTIFICATE-----\\nAAAA\\n-----END CERTIFICATE-----\\n\"\n".to_string(),
            "spec.keys[0].certificates: malformed certificate",
        ),
        (
            "  - certificates: \"no pem here\"\n".to_string(),
            "spec.keys[0].certificates: malformed certificate: no -----BEGIN CERTIFICATE----- block found",
        ),
        (
            format!(
                "  - certificates: |\n{}    trustedIdentities: [\"CN=release\"]\n",
                indent(&root_pem("Acme Root", 2040))
            ),
            "spec.keys[0].trustedIdentities: invalid trusted identity \"CN=release\"",
        ),
        (
            format!(
                "  - certificates: |\n{}    tsaCertificates: \"junk\"\n",
                indent(&root_pem("Acme Root", 2040))
            ),
            "spec.keys[0].tsaCertificates: malformed certificate",
        ),
        (
            format!(
                "  - certificates: |\n{}    tsaCertificates: |\n{}",
                indent(&root_pem("Acme Root", 2040)),
                indent(&root_pem("Old TSA Root", 2021))
            ),
            "spec.keys[0].tsaCertificates: TSA root \"C=US, O=acme, CN=Old TSA Root\" expired 2021-01-01T00:00:00Z",
        ),
        (
            format!(
                "  - algorithm: ED25519\n    publicKey: x\n    certificates: |\n{}",
                indent(&root_pem("Acme Root", 2040))
            ),
            "spec.keys[0]: publicKey and certificates exclude each other",
        ),
        (
            format!("  - publicKey: |\n{}", indent(&TestKey::ec().pem())),
            "spec.keys[0].algorithm: required with publicKey",
        ),
        ("  - id: nothing\n".to_string(), "spec.keys[0]: needs publicKey (with algorithm) or certificates"),
    ];
    for (key_yaml, expected) in cases {
        let compiled = compile_one(&attestor("release", &key_yaml));
        let s = status(&compiled, "release");
        assert!(!s.ready, "{key_yaml}");
        assert_eq!(s.reason, Some(NotReadyReason::InvalidKey), "{key_yaml}");
        let message = s.message.clone().unwrap_or_default();
        assert!(message.starts_with(expected), "{message:?} vs {expected:?}");
        // Fail closed: the policy naming it is not Ready either, and no trust is handed out.
        assert!(!status(&compiled, "p").ready);
        assert!(compiled.snapshot.notation_trust("release").is_empty());
    }
    // The expired anchor is still shown, with its expiry, so the operator sees which one.
    let compiled = compile_one(&attestor(
        "release",
        &format!(
            "  - certificates: |\n{}",
            indent(&root_pem("Old Root", 2021))
        ),
    ));
    assert_eq!(
        status(&compiled, "release").keys[0].expiry.as_deref(),
        Some("2021-01-01T00:00:00Z")
    );
}
