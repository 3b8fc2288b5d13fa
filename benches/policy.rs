//! Matching and combining for a 10-image pod against 1,000 policies and 100 attestors, with
//! signature checks excluded (every look-up finds no signatures; benches/verify.rs measures the
//! checks). The figure is per evaluation of the whole pod.
//!
//! Run: `cargo bench --bench policy -- --warm-up-time 1 --measurement-time 3`

// A benchmark, not library code: a failed setup step ends the run with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
// `criterion_group!` defines a public function with no doc comment.
#![allow(missing_docs)]

use std::collections::BTreeMap;
use std::hint::black_box;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair};
use criterion::{Criterion, criterion_group, criterion_main};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};

use signet::crd::{
    Attestor, AttestorKey, AttestorSpec, ClusterVerificationPolicy, ClusterVerificationPolicySpec,
    Mode, VerificationPolicy, VerificationPolicySpec,
};
use signet::crypto::{Algorithm, PublicKey};
use signet::policy::{EngineOptions, Lookup, PolicyInputs, Snapshot, compile};
use signet::reference::ImageRef;
use signet::signature::SignatureType;

const ATTESTORS: usize = 100;
const CLUSTER_POLICIES: usize = 800;
const NAMESPACED_POLICIES: usize = 200;
const REGISTRIES: usize = 20;
const TEAMS: usize = 10;
const NAMESPACES: usize = 10;

fn attestor_names(seed: usize) -> Vec<String> {
    (0..1 + seed % 3)
        .map(|i| format!("attestor-{}", (seed * 7 + i * 13) % ATTESTORS))
        .collect()
}

/// A glob of one of several shapes, spread over registries and team paths.
fn image_glob(seed: usize) -> String {
    let registry = format!("reg{}.example.com", seed % REGISTRIES);
    let team = format!("team{}", (seed / REGISTRIES) % TEAMS);
    if seed % 97 == 1 {
        return format!("{registry}/**");
    }
    match seed % 5 {
        0 => format!("{registry}/{team}/**"),
        1 => format!("{registry}/{team}/app-*"),
        2 => format!("{registry}/{team}/svc/*:v*"),
        3 => format!("{registry}/{team}/**"),
        _ => format!("{registry}/{team}/tools/?x*"),
    }
}

fn snapshot() -> Snapshot {
    let attestors = (0..ATTESTORS)
        .map(|i| {
            let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_ASN1_SIGNING).unwrap();
            let key = PublicKey::from_spki_der(
                pair.public_key().as_der().unwrap().as_ref(),
                Algorithm::EcdsaP256Sha256,
            )
            .unwrap();
            Attestor::new(
                &format!("attestor-{i}"),
                AttestorSpec {
                    description: None,
                    keys: vec![AttestorKey {
                        id: Some(format!("key-{i}")),
                        algorithm: Some(Algorithm::EcdsaP256Sha256),
                        public_key: Some(key.to_pem()),
                        ..Default::default()
                    }],
                },
            )
        })
        .collect();
    let cluster_policies = (0..CLUSTER_POLICIES)
        .map(|i| {
            let namespace_selector = (i % 4 == 0).then(|| LabelSelector {
                match_labels: None,
                match_expressions: Some(vec![LabelSelectorRequirement {
                    key: "tier".into(),
                    operator: if i % 8 == 0 { "In" } else { "NotIn" }.into(),
                    values: Some(vec!["prod".into()]),
                }]),
            });
            ClusterVerificationPolicy::new(
                &format!("cluster-{i}"),
                ClusterVerificationPolicySpec {
                    namespace_selector,
                    images: vec![image_glob(i)],
                    exclude: if i % 6 == 0 {
                        vec![format!("reg{}.example.com/*/sandbox/**", i % REGISTRIES)]
                    } else {
                        vec![]
                    },
                    attestors: attestor_names(i),
                    required: (i % 3 == 2).then_some(2),
                    signature_type: if i % 2 == 0 {
                        SignatureType::Default
                    } else {
                        SignatureType::Simple
                    },
                    mode: if i % 10 == 0 {
                        Mode::DryRun
                    } else {
                        Mode::Enforce
                    },
                },
            )
        })
        .collect();
    let policies = (0..NAMESPACED_POLICIES)
        .map(|i| {
            let mut p = VerificationPolicy::new(
                &format!("local-{i}"),
                VerificationPolicySpec {
                    images: vec![image_glob(i * 3 + 1)],
                    exclude: vec![],
                    attestors: attestor_names(i + 1),
                    required: None,
                    signature_type: SignatureType::Default,
                    mode: Mode::Enforce,
                },
            );
            p.metadata.namespace = Some(format!("ns-{}", i % NAMESPACES));
            p
        })
        .collect();
    let namespaces = (0..NAMESPACES)
        .map(|i| {
            let tier = if i % 2 == 0 { "prod" } else { "dev" };
            (
                format!("ns-{i}"),
                BTreeMap::from([("tier".to_string(), tier.to_string())]),
            )
        })
        .collect();
    let inputs = PolicyInputs {
        attestors,
        policies,
        cluster_policies,
        namespaces,
    };
    let compiled = compile(&inputs, 1, EngineOptions::default());
    assert!(
        compiled.statuses.iter().all(|s| s.ready),
        "the benchmark world compiles cleanly"
    );
    compiled.snapshot
}

/// Ten images of a pod: several governed by a few policies each, one by none.
fn pod() -> Vec<ImageRef> {
    [
        "reg0.example.com/team0/app-web:v1",
        "reg1.example.com/team1/app-api:v2.3",
        "reg2.example.com/team2/svc/api:v2",
        "reg3.example.com/team3/deep/path/worker:v9",
        "reg5.example.com/team0/app-cron:2024",
        "reg8.example.com/team7/sandbox/tool:v1",
        "reg10.example.com/team2/app-a:v1",
        "reg19.example.com/team9/tools/axe:v1",
        "docker.io/library/busybox:1.36",
        "quay.io/unrelated/thing:v1",
    ]
    .iter()
    .map(|s| ImageRef::parse(s).unwrap())
    .collect()
}

fn bench(c: &mut Criterion) {
    let snapshot = snapshot();
    let pod = pod();
    let namespace = "ns-3";
    let lookup = Lookup::Found {
        digest: format!("sha256:{}", "ab".repeat(32)),
        signatures: Vec::new().into(),
    };
    let per_image: Vec<usize> = pod
        .iter()
        .map(|i| snapshot.matching_policies(namespace, i).len())
        .collect();
    let governed: usize = per_image.iter().sum();
    eprintln!("policies governing each of the pod's images: {per_image:?} (sum {governed})");
    assert!(governed > 10, "the pod must meet several policies");

    c.bench_function("policy/match 10-image pod, 1000 policies", |b| {
        b.iter(|| {
            for image in &pod {
                black_box(snapshot.matching_policies(namespace, black_box(image)));
            }
        })
    });
    c.bench_function(
        "policy/evaluate 10-image pod, 1000 policies, 100 attestors",
        |b| {
            b.iter(|| {
                for image in &pod {
                    black_box(snapshot.evaluate(namespace, black_box(image), &lookup));
                }
            })
        },
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
