//! The pure audit on real keys and real signatures: what is looked up, and what each container
//! of each pod comes to.

use std::collections::BTreeMap;

use super::*;
use crate::crypto::{Algorithm, FileKey, SigningKey, generate_key_pair};
use crate::policy::{EngineOptions, PolicyInputs, compile};
use crate::signature::{SignatureType, build_payload};

const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
const D2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";
const D3: &str = "sha256:3333333333333333333333333333333333333333333333333333333333333333";

struct Key {
    signer: FileKey,
    public: String,
}

fn key() -> Key {
    let pair = generate_key_pair(Algorithm::EcdsaP256Sha256, None).unwrap();
    Key {
        signer: FileKey::from_pem(pair.private_key_pem(), Algorithm::EcdsaP256Sha256, "k1")
            .unwrap(),
        public: pair.public_key_pem(),
    }
}

fn sign(key: &Key, image: &str, digest: &str) -> StoredSignature {
    let image = ImageRef::parse(image).unwrap();
    let payload = build_payload(&image, digest, SignatureType::Default, &BTreeMap::new()).unwrap();
    let signature = key.signer.sign(&payload).unwrap();
    StoredSignature::cosign(payload, Some(signature))
}

/// `release` attestor with `key`; Enforce on `r.example/prod/**`, DryRun on `r.example/lab/**`
/// in namespace `lab`.
fn snapshot(key: &Key, generation: u64) -> Snapshot {
    let indented: String = key.public.lines().map(|l| format!("      {l}\n")).collect();
    let attestor = format!(
        "metadata: {{name: release}}\nspec:\n  keys:\n  - algorithm: ECDSA_P256_SHA_256\n    publicKey: |\n{indented}"
    );
    let inputs = PolicyInputs {
        attestors: vec![serde_yaml_ng::from_str(&attestor).unwrap()],
        cluster_policies: vec![
            serde_yaml_ng::from_str(
                "metadata: {name: prod}\nspec: {images: ['r.example/prod/**'], attestors: [release]}",
            )
            .unwrap(),
        ],
        policies: vec![
            serde_yaml_ng::from_str(
                "metadata: {name: trial, namespace: lab}\nspec: {images: ['r.example/lab/**'], attestors: [release], mode: DryRun}",
            )
            .unwrap(),
        ],
        namespaces: BTreeMap::new(),
    };
    compile(&inputs, generation, EngineOptions::default()).snapshot
}

fn image(container: &str, image: &str, digest: Option<&str>) -> RunningImage {
    RunningImage {
        container: container.into(),
        slot: Slot::Container,
        image: image.into(),
        digest: digest.map(str::to_string),
    }
}

use super::super::pods::RunningImage;

fn pod(namespace: &str, name: &str, images: Vec<RunningImage>) -> RunningPod {
    RunningPod {
        namespace: namespace.into(),
        name: name.into(),
        uid: None,
        images,
        pull_secrets: vec![],
        service_account: "default".into(),
    }
}

fn results(pods: &[PodResult]) -> Vec<(String, &str, AuditResult)> {
    pods.iter()
        .flat_map(|p| {
            p.containers.iter().map(move |c| {
                (
                    format!("{}/{}", p.namespace, p.name),
                    c.container.as_str(),
                    c.judged.result,
                )
            })
        })
        .collect()
}

#[test]
fn each_container_of_each_pod_is_judged_at_the_digest_that_runs() {
    let release = key();
    let snapshot = snapshot(&release, 1);
    let pods = vec![
        // Multi-image pod: a signed app, an unsigned sidecar, an ungoverned proxy.
        pod(
            "shop",
            "web",
            vec![
                image("app", "r.example/prod/app:v1", Some(D1)),
                image("side", "r.example/prod/side:v1", Some(D2)),
                image("proxy", "nginx:1.27", None),
            ],
        ),
        // Same image, same digest, another pod: no second lookup.
        pod(
            "shop",
            "web-2",
            vec![image("app", "r.example/prod/app:v1", Some(D1))],
        ),
        // DryRun policy, unsigned: warn.
        pod(
            "lab",
            "exp",
            vec![image("x", "r.example/lab/x:v1", Some(D3))],
        ),
        // Not started: the tag is resolved.
        pod(
            "shop",
            "pending",
            vec![image("app", "r.example/prod/app:v1", None)],
        ),
    ];
    let mut book = Book::default();
    let digests = missing_digests(&snapshot, &pods, &book);
    assert_eq!(
        digests.iter().map(|w| w.key.as_str()).collect::<Vec<_>>(),
        ["r.example/prod/app:v1"],
        "only the governed tag with no running digest is resolved"
    );
    book.digests
        .insert("r.example/prod/app:v1".into(), Ok(Arc::from(D1)));
    let wanted = missing_signatures(&snapshot, &pods, &book);
    let keys: Vec<&str> = wanted.iter().map(|w| w.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            format!("r.example/prod/app@{D1}"),
            format!("r.example/prod/side@{D2}"),
            format!("r.example/lab/x@{D3}"),
        ],
        "one signature lookup per repository and digest, none for ungoverned images"
    );
    let signed: Signatures = Arc::from(vec![sign(&release, "r.example/prod/app:v1", D1)]);
    let empty: Signatures = Arc::from(Vec::new());
    book.signatures.insert(keys[0].to_string(), Ok(signed));
    book.signatures
        .insert(keys[1].to_string(), Ok(Arc::clone(&empty)));
    book.signatures.insert(keys[2].to_string(), Ok(empty));
    assert!(missing_signatures(&snapshot, &pods, &book).is_empty());

    let mut memo = Memo::default();
    let judged = judge_pods(&snapshot, &pods, &book, &mut memo, &[]);
    assert_eq!(
        results(&judged),
        [
            ("shop/web".to_string(), "app", AuditResult::Pass),
            ("shop/web".to_string(), "side", AuditResult::Fail),
            ("shop/web".to_string(), "proxy", AuditResult::Skip),
            ("shop/web-2".to_string(), "app", AuditResult::Pass),
            ("lab/exp".to_string(), "x", AuditResult::Warn),
            ("shop/pending".to_string(), "app", AuditResult::Pass),
        ]
    );
    assert_eq!(
        judged[0].result(),
        AuditResult::Fail,
        "a pod is its worst container"
    );
    let side = &judged[0].containers[1];
    assert_eq!(side.digest.as_deref(), Some(D2));
    let reason = side.judged.reason.as_deref().unwrap_or_default();
    assert!(
        reason.contains("r.example/prod/side:v1") && reason.contains(D2),
        "{reason}"
    );
    assert!(reason.contains("policy prod"), "{reason}");
    assert_eq!(side.judged.policies, ["prod"]);
    assert_eq!(
        judged[3].containers[0].judged,
        judged[0].containers[0].judged
    );
    assert_eq!(
        memo.len(),
        3,
        "app@D1 judged once for both pods; the pending pod resolves to it"
    );
}

#[test]
fn a_removed_key_fails_and_a_registry_failure_is_an_error_not_a_pass() {
    let release = key();
    let pods = vec![pod(
        "shop",
        "web",
        vec![image("app", "r.example/prod/app:v1", Some(D1))],
    )];
    let mut book = Book::default();
    let signed: Signatures = Arc::from(vec![sign(&release, "r.example/prod/app:v1", D1)]);
    book.signatures
        .insert(format!("r.example/prod/app@{D1}"), Ok(signed));
    let mut memo = Memo::default();
    let before = judge_pods(&snapshot(&release, 1), &pods, &book, &mut memo, &[]);
    assert_eq!(before[0].result(), AuditResult::Pass);
    // The attestor's key replaced by another: same book, new generation.
    let after = judge_pods(&snapshot(&key(), 2), &pods, &book, &mut memo, &[]);
    assert_eq!(after[0].result(), AuditResult::Fail);
    assert!(missing_signatures(&snapshot(&key(), 2), &pods, &book).is_empty());
    // A tag signed elsewhere: a `Default` signature binds the tag the spec names.
    let moved = vec![pod(
        "shop",
        "web",
        vec![image("app", "r.example/prod/app:v2", Some(D1))],
    )];
    let mut memo = Memo::default();
    let tag = judge_pods(&snapshot(&release, 3), &moved, &book, &mut memo, &[]);
    assert_eq!(tag[0].result(), AuditResult::Fail);

    let mut down = Book::default();
    down.signatures.insert(
        format!("r.example/prod/app@{D1}"),
        Err(Arc::new(LookupFailure::Deadline {
            host: "r.example".into(),
            after: std::time::Duration::from_secs(8),
        })),
    );
    let mut memo = Memo::default();
    let error = judge_pods(&snapshot(&release, 1), &pods, &down, &mut memo, &[]);
    assert_eq!(error[0].result(), AuditResult::Error);
    assert!(error[0].result().denies());
    let reason = error[0].containers[0]
        .judged
        .reason
        .clone()
        .unwrap_or_default();
    assert!(reason.contains("r.example"), "{reason}");
}

#[test]
fn an_unparsable_image_fails_with_the_reason() {
    let pods = vec![pod(
        "shop",
        "bad",
        vec![image("x", "Not A Reference", None)],
    )];
    let mut memo = Memo::default();
    let judged = judge_pods(
        &snapshot(&key(), 1),
        &pods,
        &Book::default(),
        &mut memo,
        &[],
    );
    assert_eq!(judged[0].result(), AuditResult::Fail);
    assert!(
        judged[0].containers[0]
            .judged
            .reason
            .as_deref()
            .is_some_and(|r| r.starts_with("Not A Reference: ")),
    );
}

#[test]
fn exempt_namespaces_are_skipped_with_the_reason() {
    let pods = vec![pod(
        "kube-system",
        "dns",
        vec![image("x", "r.example/prod/x:v1", Some(D1))],
    )];
    assert_eq!(
        missing_signatures(
            &snapshot(&key(), 1),
            pods.iter().filter(|p| p.namespace != "kube-system"),
            &Book::default()
        )
        .len(),
        0
    );
    let mut memo = Memo::default();
    let judged = judge_pods(
        &snapshot(&key(), 1),
        &pods,
        &Book::default(),
        &mut memo,
        &["kube-system".to_string()],
    );
    assert_eq!(judged[0].result(), AuditResult::Skip);
    assert!(
        judged[0].containers[0]
            .judged
            .reason
            .as_deref()
            .is_some_and(|r| r.contains("exempt"))
    );
}
