//! The cached admission path in-process, without HTTP: reading an AdmissionReview body, deciding
//! from warm caches, and writing the answer, for the 3-image pod fixture, the same pod's
//! Deployment, and a ConfigMap (no images: the fixed cost of a review). What remains of a
//! request's cost beyond these figures is the HTTP/TLS edge (see `scripts/bench-vs-nginx.sh`).
//!
//! ```text
//! cargo bench --bench admission
//! ```
//! Starts Debian's `docker-registry` on a loopback port once, to warm the caches.

// A benchmark, not library code: a failed setup step ends the run with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
// `criterion_group!` defines a public function with no doc comment.
#![allow(missing_docs)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use signet::admission::review::{parse_review, parse_review_reference};
use signet::admission::{Admission, Endpoint, Metrics};
use signet::policy::NoMatch;
use support::webhook::{fixture, policy_state, registry_client, settings, signed_registry};

fn bench_admission(c: &mut Criterion) {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let setup = runtime.block_on(signed_registry());
    let host = setup.host();
    let sidecar = setup.digest("prod/sidecar");
    let admission = Arc::new(Admission::new(
        policy_state(&host, &setup.public_key_pem, NoMatch::Allow),
        registry_client(),
        None,
        settings(Duration::from_secs(8)),
        Arc::new(Metrics::new()),
    ));
    let bodies = [
        ("pod, 3 images", fixture("pod-create.json", &host, None)),
        (
            "deployment, 3 images",
            fixture("deployment-create.json", &host, Some(&sidecar)),
        ),
        ("configmap", fixture("configmap-create.json", &host, None)),
    ];
    let mut group = c.benchmark_group("admission_cached");
    for (name, body) in &bodies {
        // Warm: the first review looks the images up in the registry.
        let answer = runtime
            .block_on(admission.review(body, Endpoint::Validate))
            .unwrap();
        assert!(answer.allowed, "{name} is not allowed: {answer:?}");
        group.bench_function(format!("parse/{name}"), |b| {
            b.iter(|| parse_review(body).unwrap())
        });
        // The serde_json reader it replaced, kept as the differential reference.
        group.bench_function(format!("parse-serde_json/{name}"), |b| {
            b.iter(|| parse_review_reference(body).unwrap())
        });
        group.bench_function(format!("review+answer/{name}"), |b| {
            b.to_async(&runtime).iter(|| async {
                let answer = admission.review(body, Endpoint::Validate).await.unwrap();
                answer.to_json().unwrap()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench_admission);
criterion_main!(benches);
