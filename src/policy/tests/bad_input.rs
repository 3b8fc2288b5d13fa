//! Bad input never panics: every problem becomes a not-Ready status naming the object and the
//! field (or, for YAML that does not fit the types, a serde error naming the field), and the
//! broken object fails closed.

use super::*;
use crate::crd::{Attestor, ClusterVerificationPolicy, SigningRule, VerificationPolicy};

fn status<'a>(compiled: &'a Compiled, name: &str) -> &'a ObjectStatus {
    compiled
        .statuses
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no status for {name}: {:#?}", compiled.statuses))
}

fn not_ready(compiled: &Compiled, name: &str, reason: NotReadyReason, message: &str) {
    let s = status(compiled, name);
    assert!(!s.ready, "{name} should not be Ready: {s:#?}");
    assert_eq!(s.reason, Some(reason), "{name}: {s:#?}");
    let got = s.message.as_deref().unwrap_or_default();
    assert!(
        got.starts_with(message),
        "{name}: message {got:?} does not start with {message:?}"
    );
}

#[test]
fn missing_attestor_is_named_and_fails_closed() {
    let release = TestKey::ec();
    let compiled = World::default()
        .attestor("release", &[(Some("r1"), &release)])
        .cluster_policy(
            "needs-qa",
            "{images: [r.io/**], attestors: [release, qa], required: 1}",
        )
        .compile(NoMatch::Allow);
    not_ready(
        &compiled,
        "needs-qa",
        NotReadyReason::AttestorNotFound,
        "spec.attestors: attestor \"qa\" not found",
    );
    let s = status(&compiled, "needs-qa");
    assert_eq!(
        (s.kind, s.generation, s.namespace.as_deref()),
        (ObjectKind::ClusterVerificationPolicy, Some(3), None)
    );
    assert!(status(&compiled, "release").ready);
    rejects(
        &compiled.snapshot,
        "default",
        "r.io/app:v1",
        &found(
            D1,
            vec![release.sign("r.io/app:v1", D1, SignatureType::Default)],
        ),
        "policy needs-qa: 1 of 1 required attestors: qa: attestor not found; policy not ready, fails closed",
    );
}

#[test]
fn malformed_pem_is_named_with_the_key_index() {
    let good = TestKey::ec();
    let mut yaml = String::from(
        "apiVersion: signet.dev/v1alpha1\nkind: Attestor\nmetadata: {name: rotating, generation: 4}\nspec:\n  keys:\n  - algorithm: ECDSA_P256_SHA_256\n    publicKey: |\n",
    );
    for line in good.pem().lines() {
        yaml.push_str(&format!("      {line}\n"));
    }
    yaml.push_str("  - {algorithm: ECDSA_P256_SHA_256, publicKey: '-----BEGIN PUBLIC KEY-----'}\n");
    let compiled = World::default()
        .attestor_yaml(&yaml)
        .cluster_policy("p", "{images: [r.io/**], attestors: [rotating]}")
        .compile(NoMatch::Allow);
    not_ready(
        &compiled,
        "rotating",
        NotReadyReason::InvalidKey,
        "spec.keys[1].publicKey: not a PEM key",
    );
    let s = status(&compiled, "rotating");
    assert_eq!(s.keys.len(), 1, "the key that parsed is still reported");
    assert!(s.keys[0].fingerprint.starts_with("sha256:") && s.keys[0].fingerprint.len() == 71);
    assert_eq!(
        s.keys[0].name, s.keys[0].fingerprint,
        "a key without an id is named by its fingerprint (the Attestor's Keys column)"
    );
    let condition = s.ready_condition(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
    ));
    assert_eq!(
        (
            condition.type_.as_str(),
            condition.status.as_str(),
            condition.reason.as_str(),
            condition.observed_generation
        ),
        ("Ready", "False", "InvalidKey", Some(4))
    );
    not_ready(
        &compiled,
        "p",
        NotReadyReason::InvalidKey,
        "spec.attestors: attestor \"rotating\" is not Ready: key spec.keys[1] invalid",
    );
    // Even a signature by the good key does not pass: the attestor is broken until fixed.
    rejects(
        &compiled.snapshot,
        "default",
        "r.io/app:v1",
        &found(
            D1,
            vec![good.sign("r.io/app:v1", D1, SignatureType::Default)],
        ),
        "rotating: key spec.keys[1] invalid",
    );
}

#[test]
fn key_that_contradicts_its_algorithm_is_named() {
    let ec = TestKey::ec();
    let yaml = format!(
        "apiVersion: signet.dev/v1alpha1\nkind: Attestor\nmetadata: {{name: wrong}}\nspec:\n  keys:\n  - id: k\n    algorithm: RSA_PSS_SHA_256\n    publicKey: {:?}\n",
        ec.pem()
    );
    let compiled = World::default()
        .attestor_yaml(&yaml)
        .compile(NoMatch::Allow);
    not_ready(
        &compiled,
        "wrong",
        NotReadyReason::InvalidKey,
        "spec.keys[0].publicKey: the key is an EC P-256 key, which cannot verify RSA_PSS_SHA_256",
    );
}

#[test]
fn unknown_enum_values_in_yaml_are_serde_errors_naming_the_field() {
    let attestor = "apiVersion: signet.dev/v1alpha1\nkind: Attestor\nmetadata: {name: a}\nspec:\n  keys:\n  - {algorithm: RSA_PSS_SHA_512, publicKey: x}\n";
    let err = serde_yaml_ng::from_str::<Attestor>(attestor)
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("spec.keys[0].algorithm: unknown variant `RSA_PSS_SHA_512`"),
        "{err}"
    );
    let policy = "apiVersion: signet.dev/v1alpha1\nkind: VerificationPolicy\nmetadata: {name: p, namespace: n}\nspec: {images: [x], attestors: [a], mode: Audit}\n";
    let err = serde_yaml_ng::from_str::<VerificationPolicy>(policy)
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("spec.mode: unknown variant `Audit`"),
        "{err}"
    );
    let policy = "apiVersion: signet.dev/v1alpha1\nkind: ClusterVerificationPolicy\nmetadata: {name: p}\nspec: {images: [x], attestors: [a], signatureType: Strict}\n";
    let err = serde_yaml_ng::from_str::<ClusterVerificationPolicy>(policy)
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("spec.signatureType: unknown variant `Strict`"),
        "{err}"
    );
    let rule = "apiVersion: signet.dev/v1alpha1\nkind: SigningRule\nmetadata: {name: r}\nspec: {scope: [x], key: {ref: 'file:/k.pem'}, algorithm: ED25519, trigger: Nightly}\n";
    let err = serde_yaml_ng::from_str::<SigningRule>(rule)
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("spec.trigger: unknown variant `Nightly`"),
        "{err}"
    );
    let policy = "apiVersion: signet.dev/v1alpha1\nkind: VerificationPolicy\nmetadata: {name: p, namespace: n}\nspec: {images: [x], attestors: [a], required: -1}\n";
    let err = serde_yaml_ng::from_str::<VerificationPolicy>(policy)
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("spec.required: invalid type: integer `-1`, expected u32"),
        "{err}"
    );
}

#[test]
fn invalid_globs_are_named_and_a_policy_with_none_valid_governs_nothing() {
    let release = TestKey::ec();
    let compiled = World::default()
        .attestor("release", &[(None, &release)])
        .cluster_policy(
            "all-bad",
            "{images: ['r.io/a b', 'r.io/***'], attestors: [release]}",
        )
        .cluster_policy(
            "bad-exclude",
            "{images: [r.io/ex/**], exclude: ['r.io/ex/sand box/**'], attestors: [release]}",
        )
        .compile(NoMatch::Allow);
    not_ready(
        &compiled,
        "all-bad",
        NotReadyReason::InvalidSpec,
        "spec.images[0]: invalid image glob \"r.io/a b\": contains white space; spec.images[1]: invalid image glob \"r.io/***\"",
    );
    let image = ImageRef::parse("r.io/a:v1").unwrap();
    assert!(
        compiled
            .snapshot
            .matching_policies("default", &image)
            .is_empty()
    );
    not_ready(
        &compiled,
        "bad-exclude",
        NotReadyReason::InvalidSpec,
        "spec.exclude[0]: invalid image glob",
    );
    // The broken exclude excludes nothing, and the policy denies what it governs.
    rejects(
        &compiled.snapshot,
        "default",
        "r.io/ex/sandbox/app:v1",
        &found(
            D1,
            vec![release.sign("r.io/ex/sandbox/app:v1", D1, SignatureType::Default)],
        ),
        "policy not ready, fails closed: spec.exclude[0]",
    );
}

#[test]
fn empty_lists_and_impossible_required_are_invalid_specs_that_deny() {
    let release = TestKey::ec();
    let compiled = World::default()
        .attestor("release", &[(None, &release)])
        .cluster_policy("no-attestors", "{images: [r.io/a/**], attestors: []}")
        .cluster_policy("no-images", "{images: [], attestors: [release]}")
        .cluster_policy("zero", "{images: [r.io/z/**], attestors: [release], required: 0}")
        .cluster_policy("too-many", "{images: [r.io/t/**], attestors: [release, release], required: 2}")
        .attestor_yaml("apiVersion: signet.dev/v1alpha1\nkind: Attestor\nmetadata: {name: keyless}\nspec: {keys: []}\n")
        .policy("", "homeless", "{images: [r.io/h/**], attestors: [release]}")
        .compile(NoMatch::Allow);
    not_ready(
        &compiled,
        "no-attestors",
        NotReadyReason::InvalidSpec,
        "spec.attestors: empty: no attestor can satisfy the policy",
    );
    not_ready(
        &compiled,
        "no-images",
        NotReadyReason::InvalidSpec,
        "spec.images: empty: the policy governs no image",
    );
    not_ready(
        &compiled,
        "zero",
        NotReadyReason::InvalidSpec,
        "spec.required: must be at least 1",
    );
    not_ready(
        &compiled,
        "too-many",
        NotReadyReason::InvalidSpec,
        "spec.required: 2 but spec.attestors names 1 distinct attestors: it can never pass",
    );
    not_ready(
        &compiled,
        "keyless",
        NotReadyReason::InvalidSpec,
        "spec.keys: no keys",
    );
    not_ready(
        &compiled,
        "homeless",
        NotReadyReason::InvalidSpec,
        "metadata.namespace: missing",
    );
    let signed = |image: &str| found(D1, vec![release.sign(image, D1, SignatureType::Default)]);
    rejects(
        &compiled.snapshot,
        "default",
        "r.io/a/x:v1",
        &signed("r.io/a/x:v1"),
        "policy no-attestors: 0 of 0 required attestors: policy not ready, fails closed: spec.attestors: empty",
    );
    rejects(
        &compiled.snapshot,
        "default",
        "r.io/z/x:v1",
        &signed("r.io/z/x:v1"),
        "policy zero: 1 of 0 required attestors: policy not ready, fails closed: spec.required",
    );
    rejects(
        &compiled.snapshot,
        "default",
        "r.io/t/x:v1",
        &signed("r.io/t/x:v1"),
        "policy too-many: 1 of 2 required attestors",
    );
}

#[test]
fn duplicate_attestor_names_make_both_unusable() {
    let a = TestKey::ec();
    let b = TestKey::ec();
    let compiled = World::default()
        .attestor("twin", &[(Some("a"), &a)])
        .attestor("twin", &[(Some("b"), &b)])
        .cluster_policy("p", "{images: [r.io/**], attestors: [twin]}")
        .compile(NoMatch::Allow);
    let twins: Vec<&ObjectStatus> = compiled
        .statuses
        .iter()
        .filter(|s| s.name == "twin")
        .collect();
    assert_eq!(twins.len(), 2);
    assert!(twins.iter().all(|s| !s.ready
        && s.message.as_deref() == Some("metadata.name: \"twin\" names more than one Attestor")));
    rejects(
        &compiled.snapshot,
        "default",
        "r.io/app:v1",
        &found(D1, vec![a.sign("r.io/app:v1", D1, SignatureType::Default)]),
        "twin: attestor defined more than once",
    );
}

#[test]
fn hostile_signatures_never_panic() {
    let release = TestKey::ec();
    let compiled = World::default()
        .attestor("release", &[(Some("r"), &release)])
        .cluster_policy("p", "{images: ['**'], attestors: [release]}")
        .compile(NoMatch::Allow);
    let image = "r.io/app:v1";
    let signatures = vec![
        StoredSignature::cosign(vec![], Some(vec![])),
        StoredSignature::cosign(vec![0xff; 100_000], Some(vec![0x30; 10_000])),
        StoredSignature::cosign(b"null".to_vec(), None),
        release.sign_bytes(b"not json at all"),
        release.sign_bytes(format!(r#"{{"critical":{{"identity":{{"docker-reference":"NOT A REF"}},"image":{{"docker-manifest-digest":"{D1}"}},"type":"cosign container image signature"}}}}"#).as_bytes()),
        release.sign_bytes(b"{\"critical\":[]}"),
    ];
    let v = rejects(
        &compiled.snapshot,
        "default",
        image,
        &found(D1, signatures),
        "release: malformed payload",
    );
    assert_eq!(v.policies.len(), 1);
    // Odd digests from the caller are compared, not trusted or parsed.
    rejects(
        &compiled.snapshot,
        "default",
        image,
        &found("", vec![]),
        "r.io/app:v1 (): policy p: 0 of 1 required attestors: release: no signature",
    );
}

#[test]
fn snapshot_is_shareable_across_threads() {
    fn shareable<T: Send + Sync + 'static>() {}
    shareable::<Snapshot>();
    shareable::<std::sync::Arc<Snapshot>>();
}
