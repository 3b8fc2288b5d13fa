//! The signer counts, per registry, how signing each pushed image ended with the registry
//! (`signet_signer_registry_requests_total{registry,operation="sign",outcome}`), as the webhook
//! does: a registry that keeps answering 429 (a proxy throttling in front of the real registry)
//! counts `rate_limited` under its own host, and the registry reached directly `success`.

// Helpers outside `#[test]` functions fail by panicking, as tests do.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::{Duration, Instant};

use signet::crd::Trigger;
use signet::crypto::Algorithm;
use signet::signature::SignatureType;
use signet::signer::{EventOutcome, RetryPolicy, Signer, SignerOptions};
use support::signer::{OCI_MANIFEST, fixed_policy, key, push_event, rule, store};
use support::{CorruptingProxy, Registry};

fn series(text: &str, registry: &str, outcome: &str) -> f64 {
    let prefix = format!(
        "signet_signer_registry_requests_total{{registry=\"{registry}\",operation=\"sign\",outcome=\"{outcome}\"}} "
    );
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no series {prefix} in:\n{text}"))
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_throttling_is_counted_per_registry() {
    let registry = Registry::start();
    let dir = tempfile::tempdir().unwrap();
    let signing = key(dir.path(), "release", Algorithm::EcdsaP256Sha256);
    let proxy = CorruptingProxy::start_with(
        &registry.host(),
        support::ProxyOptions {
            throttle_until: Some(Instant::now() + Duration::from_secs(600)),
            ..support::ProxyOptions::passthrough()
        },
    );
    let (direct, throttled) = (registry.host(), proxy.host());
    let rules = vec![rule(
        "release",
        &[format!("{direct}/**"), format!("{throttled}/**")],
        &signing,
        SignatureType::Simple,
        Trigger::Automatic,
    )];
    // One attempt: the registry client's own waits on `Retry-After` are the only retries.
    let options = SignerOptions {
        retry: RetryPolicy {
            attempts: 1,
            ..RetryPolicy::default()
        },
        ..SignerOptions::default()
    };
    let signer = Signer::new(store(), fixed_policy(rules), options);
    signer.open_keys().await.unwrap();

    let digest = registry.push_test_image("app/web", "v1", "web").await;
    for host in [&direct, &throttled] {
        let body = push_event(host, "app/web", Some("v1"), &digest, OCI_MANIFEST);
        let outcomes = signer.handle_notification(body.as_bytes()).await.unwrap();
        match (host == &direct, &outcomes[..]) {
            (true, [EventOutcome::Signed(_)]) | (false, [EventOutcome::Failed(_)]) => {}
            other => panic!("{host}: {other:?}"),
        }
    }
    let text = signer.metrics().encode();
    assert_eq!(series(&text, &direct, "success"), 1.0);
    assert_eq!(series(&text, &direct, "rate_limited"), 0.0);
    assert_eq!(series(&text, &throttled, "rate_limited"), 1.0);
    assert_eq!(series(&text, &throttled, "success"), 0.0);
    assert_eq!(series(&text, &throttled, "unreachable"), 0.0);
}
