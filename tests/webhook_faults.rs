//! Registry faults at admission: a registry stopped mid-run, one that accepts connections and
//! never answers, one that answers 500, one that serves manifests not matching their digests,
//! one that throttles (429 with `Retry-After`) briefly or for good.
//! Every request is answered before the deadline with a denial naming the cause, and the server
//! keeps serving.

// Helpers outside `#[test]` functions fail by panicking, as tests do (clippy.toml covers only
// `#[test]` code).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use signet::policy::NoMatch;

use support::webhook::{
    TestWebhook, fixture, metric, policy_state, policy_state_simple, settings, signed_registry,
};
use support::{BlackHole, CorruptingProxy, StatusServer};

/// Margin over the deadline for the answer to travel back.
const SLACK: Duration = Duration::from_millis(700);

/// POSTs the fixture and checks the answer came in time; returns the response.
async fn timed_review(webhook: &TestWebhook, body: Vec<u8>, deadline: Duration) -> Value {
    let started = Instant::now();
    let response = webhook.review("/validate", body).await;
    let took = started.elapsed();
    assert!(
        took < deadline + SLACK,
        "answered after {took:?}, deadline {deadline:?}: {response}"
    );
    response
}

fn message(response: &Value) -> String {
    response["status"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

async fn still_serving(webhook: &TestWebhook) {
    let (status, _) = webhook.get("/healthz").await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_stopped_mid_run() {
    let deadline = Duration::from_secs(3);
    let setup = signed_registry().await;
    let host = setup.host();
    let sidecar = setup.digest("prod/sidecar");
    let state = policy_state(&host, &setup.public_key_pem, NoMatch::Allow);
    let webhook = TestWebhook::start(state, settings(deadline), None).await;

    let response = timed_review(&webhook, fixture("pod-create.json", &host, None), deadline).await;
    assert_eq!(response["allowed"], true, "{response}");

    drop(setup); // kills docker-registry

    // What was verified stays verified from the caches.
    let response = timed_review(&webhook, fixture("pod-create.json", &host, None), deadline).await;
    assert_eq!(response["allowed"], true, "{response}");
    // Anything else fails closed, naming the registry and the cause.
    let response = timed_review(
        &webhook,
        fixture("deployment-create.json", &host, Some(&sidecar)),
        deadline,
    )
    .await;
    assert_eq!(response["allowed"], false, "{response}");
    let text = message(&response);
    assert!(
        text.contains(&format!(
            "registry lookup failed: registry {host} is unreachable"
        )),
        "{text}"
    );
    assert_eq!(text.lines().count(), 2, "both images are named: {text}");
    still_serving(&webhook).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_that_never_answers_is_cut_off_at_the_deadline() {
    let deadline = Duration::from_secs(1);
    let hole = BlackHole::start();
    let host = hole.host();
    let public_key =
        signet::crypto::generate_key_pair(signet::crypto::Algorithm::EcdsaP256Sha256, None)
            .expect("key")
            .public_key_pem();
    let state = policy_state(&host, &public_key, NoMatch::Allow);
    let webhook = Arc::new(TestWebhook::start(state, settings(deadline), None).await);

    let body = fixture("pod-create.json", &host, None);
    let answers = futures::future::join_all((0..20).map(|_| {
        let webhook = Arc::clone(&webhook);
        let body = body.clone();
        async move { timed_review(&webhook, body, deadline).await }
    }))
    .await;
    for response in &answers {
        assert_eq!(response["allowed"], false, "{response}");
        let text = message(response);
        assert!(
            text.contains(&format!("registry {host} did not answer within 1s")),
            "{text}"
        );
        assert!(
            text.contains("/prod/app:v1") && text.contains("/prod/migrate:v3"),
            "{text}"
        );
    }
    // Twenty requests, two images: two lookups hang, not forty.
    let metrics = webhook.metrics().await;
    assert_eq!(
        metric(&metrics, "signet_webhook_lookups_in_flight"),
        2.0,
        "{metrics}"
    );
    // A later request is cut off at the deadline too.
    let response = timed_review(&webhook, body, deadline).await;
    assert_eq!(response["allowed"], false);
    still_serving(&webhook).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_answering_500_is_named() {
    let deadline = Duration::from_secs(3);
    let failing = StatusServer::internal_error();
    let host = failing.host();
    let public_key =
        signet::crypto::generate_key_pair(signet::crypto::Algorithm::EcdsaP256Sha256, None)
            .expect("key")
            .public_key_pem();
    let state = policy_state(&host, &public_key, NoMatch::Allow);
    let webhook = TestWebhook::start(state, settings(deadline), None).await;
    for _ in 0..2 {
        let response =
            timed_review(&webhook, fixture("pod-create.json", &host, None), deadline).await;
        assert_eq!(response["allowed"], false, "{response}");
        let text = message(&response);
        assert!(text.contains(&format!("registry {host}")), "{text}");
        assert!(text.contains("500"), "{text}");
    }
    // The second answer came from the failure cache: the server was asked once per image.
    assert_eq!(failing.requests().len(), 2, "{:#?}", failing.requests());
    still_serving(&webhook).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manifests_not_matching_their_digest_are_refused() {
    let deadline = Duration::from_secs(3);
    let setup = signed_registry().await;
    let proxy = CorruptingProxy::start(&setup.host());
    let host = proxy.host();
    let sidecar = setup.digest("prod/sidecar");
    let state = policy_state_simple(&host, &setup.public_key_pem);
    let webhook = TestWebhook::start(state, settings(deadline), None).await;

    let response = timed_review(
        &webhook,
        fixture("deployment-create.json", &host, Some(&sidecar)),
        deadline,
    )
    .await;
    assert_eq!(response["allowed"], false, "{response}");
    let text = message(&response);
    assert!(
        text.contains(&format!("registry {host}: digest mismatch")),
        "{text}"
    );
    assert!(
        text.contains(&format!("{host}/prod/sidecar@{sidecar}")),
        "{text}"
    );

    // The same images through the honest registry pass: the refusal was the tampering.
    let honest = policy_state_simple(&setup.host(), &setup.public_key_pem);
    let webhook = TestWebhook::start(honest, settings(deadline), None).await;
    let response = timed_review(
        &webhook,
        fixture("deployment-create.json", &setup.host(), Some(&sidecar)),
        deadline,
    )
    .await;
    assert_eq!(response["allowed"], true, "{response}");
}

/// A proxy in front of the signed registry that answers 429 with `Retry-After: 1` until
/// `throttled_for` has passed.
fn throttling_proxy(upstream: &str, throttled_for: Duration) -> CorruptingProxy {
    CorruptingProxy::start_with(
        upstream,
        support::ProxyOptions {
            throttle_until: Some(Instant::now() + throttled_for),
            ..support::ProxyOptions::passthrough()
        },
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_throttling_briefly_is_waited_for_within_the_deadline() {
    let deadline = Duration::from_secs(5);
    let setup = signed_registry().await;
    let proxy = throttling_proxy(&setup.host(), Duration::from_millis(1500));
    let host = proxy.host();
    // Signed through the registry's own address: only the digest binding holds via the proxy.
    let state = policy_state_simple(&host, &setup.public_key_pem);
    let webhook = TestWebhook::start(state, settings(deadline), None).await;

    let started = Instant::now();
    let response = timed_review(&webhook, fixture("pod-create.json", &host, None), deadline).await;
    assert_eq!(response["allowed"], true, "{response}");
    // It was throttled (429s were answered) and waited as Retry-After asked.
    let throttled = proxy.requests().len();
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert!(throttled > 0);
    let metrics = webhook.metrics().await;
    assert!(
        metric(
            &metrics,
            &format!(
                "signet_webhook_registry_requests_total{{registry=\"{host}\",operation=\"resolve\",outcome=\"success\"}}"
            )
        ) >= 1.0,
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_throttling_past_the_deadline_is_denied_naming_it_and_not_asked_again() {
    let deadline = Duration::from_secs(5);
    let setup = signed_registry().await;
    let proxy = throttling_proxy(&setup.host(), Duration::from_secs(3600));
    let host = proxy.host();
    let state = policy_state(&host, &setup.public_key_pem, NoMatch::Allow);
    let webhook = TestWebhook::start(state, settings(deadline), None).await;

    let response = timed_review(&webhook, fixture("pod-create.json", &host, None), deadline).await;
    assert_eq!(response["allowed"], false, "{response}");
    let text = message(&response);
    assert!(
        text.contains(&format!("registry {host}: too many requests")),
        "{text}"
    );
    assert!(text.contains("HTTP 429"), "{text}");
    let asked = proxy.requests().len();
    assert!(asked > 0);
    // Counted by registry, as throttling.
    let metrics = webhook.metrics().await;
    assert!(
        metric(
            &metrics,
            &format!(
                "signet_webhook_registry_requests_total{{registry=\"{host}\",operation=\"resolve\",outcome=\"rate_limited\"}}"
            )
        ) >= 1.0,
        "{metrics}"
    );

    // The same admission again: answered from the failure cache, the throttled registry is not
    // asked more than an idle one would be.
    let response = timed_review(&webhook, fixture("pod-create.json", &host, None), deadline).await;
    assert_eq!(response["allowed"], false, "{response}");
    assert_eq!(
        proxy.requests().len(),
        asked,
        "{:#?}",
        proxy.request_lines()
    );
    still_serving(&webhook).await;
}
