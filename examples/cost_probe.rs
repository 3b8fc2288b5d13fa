//! Instructions per cached admission in-process, without HTTP or TLS, for callgrind: reading the
//! bench script's review (the 3-image Pod of `scripts/bench-vs-nginx.sh`) alone, then reviewing
//! and answering it from warm caches. Faster to rebuild and count than the whole webhook under
//! load (`COST=N scripts/bench-vs-nginx.sh`), so two versions of the admission code compare in a
//! minute. Starts Debian's `docker-registry` on a loopback port to warm the caches.
//!
//! ```text
//! cargo build --release --example cost_probe
//! N=2000 valgrind --tool=callgrind --toggle-collect='*probe_parse*' target/release/examples/cost_probe
//! N=2000 valgrind --tool=callgrind --toggle-collect='*probe_review*' target/release/examples/cost_probe
//! ```
//! Each count divided by N is the cost of one iteration.

// A measuring tool, not library code: a failed setup step ends the run with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
// The support module's items are documented for the tests, not as public API.
#![allow(missing_docs)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::sync::Arc;
use std::time::Duration;

use signet::admission::review::parse_review;
use signet::admission::{Admission, Endpoint, Metrics};
use signet::policy::NoMatch;
use support::webhook::{fixture, policy_state, registry_client, settings, signed_registry};

/// The webhook's allocator (`src/main.rs`), so that allocations cost what they cost there.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Reads `body` `n` times.
#[inline(never)]
fn probe_parse(body: &[u8], n: usize) {
    for _ in 0..n {
        std::hint::black_box(parse_review(std::hint::black_box(body)).unwrap());
    }
}

/// Reviews `body` and writes the answer, `n` times.
#[inline(never)]
fn probe_review(runtime: &tokio::runtime::Runtime, admission: &Admission, body: &[u8], n: usize) {
    for _ in 0..n {
        let answer = runtime
            .block_on(admission.review(body, Endpoint::Validate))
            .unwrap();
        std::hint::black_box(answer.to_json().unwrap());
    }
}

fn main() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let setup = runtime.block_on(signed_registry());
    let host = setup.host();
    let admission = Admission::new(
        policy_state(&host, &setup.public_key_pem, NoMatch::Allow),
        registry_client(),
        None,
        settings(Duration::from_secs(8)),
        Arc::new(Metrics::new()),
    );
    // As the bench script writes it: the pod fixture with three containers of name and image
    // only, no init containers, compact JSON.
    let mut review: serde_json::Value =
        serde_json::from_slice(&fixture("pod-create.json", &host, None)).unwrap();
    let spec = review["request"]["object"]["spec"].as_object_mut().unwrap();
    spec.remove("initContainers");
    let containers = ["prod/app:v1", "prod/web:v2", "prod/postgres:16.4"]
        .iter()
        .enumerate()
        .map(|(i, image)| serde_json::json!({"name": format!("c{i}"), "image": format!("{host}/{image}")}))
        .collect();
    spec.insert("containers".into(), serde_json::Value::Array(containers));
    // The request's fields in the API server's order (Go's struct order; a `Value` would write
    // them sorted, `object` before `operation`).
    let request = &review["request"];
    let fields: Vec<String> = [
        "uid",
        "kind",
        "resource",
        "requestKind",
        "requestResource",
        "name",
        "namespace",
        "operation",
        "userInfo",
        "object",
        "oldObject",
        "dryRun",
        "options",
    ]
    .iter()
    .map(|key| format!("\"{key}\":{}", request[key]))
    .collect();
    let body = format!(
        r#"{{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","request":{{{}}}}}"#,
        fields.join(",")
    )
    .into_bytes();
    // Warm: the first review looks the images up in the registry.
    let answer = runtime
        .block_on(admission.review(&body, Endpoint::Validate))
        .unwrap();
    assert!(answer.allowed, "{answer:?}");
    let n: usize = std::env::var("N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    probe_parse(&body, n);
    probe_review(&runtime, &admission, &body, n);
    eprintln!("{n} iterations of a {}-byte review", body.len());
}
