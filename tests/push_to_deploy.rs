//! The push-to-deploy race with every part real: Debian's `docker-registry` notifying a running
//! signer, and the webhook (with `--signing-grace`) asked about an image the moment its push
//! returns. With the signer up, the admission waits for the signature and is allowed, the wait
//! counted in metrics; with the signer down, it is denied after the grace, naming the SigningRule
//! whose signature did not arrive.

// Helpers outside `#[test]` functions fail by panicking, as tests do (clippy.toml covers only
// `#[test]` code).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::{Duration, Instant};

use serde_json::Value;
use signet::crd::Trigger;
use signet::crypto::Algorithm;
use signet::policy::NoMatch;
use signet::signature::SignatureType;
use support::Registry;
use support::signer::{RunningSigner, TOKEN, key, loopback_listener, rule};
use support::webhook::{TestWebhook, metric, pod_review, policy_state_of, policy_yaml, settings};

const DEADLINE: Duration = Duration::from_secs(8);
const GRACE: Duration = Duration::from_secs(3);

fn message(response: &Value) -> &str {
    response["status"]["message"].as_str().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_admitted_the_moment_it_is_pushed_waits_for_the_running_signer() {
    let dir = tempfile::tempdir().unwrap();
    let release = key(dir.path(), "release", Algorithm::EcdsaP256Sha256);
    let listener = loopback_listener();
    let port = listener.local_addr().unwrap().port();
    let registry =
        Registry::start_with_notifications(&format!("http://127.0.0.1:{port}/events"), TOKEN);
    let host = registry.host();
    let signing_rule = rule(
        "release-signer",
        &[format!("{host}/prod/**")],
        &release,
        SignatureType::Default,
        Trigger::Automatic,
    );
    let signer = RunningSigner::start(listener, vec![signing_rule.clone()], None).await;

    // The webhook's picture: the release attestor and policy, and the same SigningRule.
    let public_key = std::fs::read_to_string(&release.public).unwrap();
    let yaml = format!(
        "{}---\n{}",
        policy_yaml(&host, &public_key, "Default"),
        serde_yaml_ng::to_string(&signing_rule).unwrap()
    );
    let mut webhook_settings = settings(DEADLINE);
    webhook_settings.signing_grace = GRACE;
    let webhook = TestWebhook::start(
        policy_state_of(&yaml, NoMatch::Allow),
        webhook_settings,
        None,
    )
    .await;

    // Push, then admit at once: the signer is signing while the webhook waits.
    registry
        .push_test_image("prod/api", "v1", "fresh-api")
        .await;
    let image = format!("{host}/prod/api:v1");
    let started = Instant::now();
    let response = webhook.review("/validate", pod_review(&image)).await;
    assert_eq!(response["allowed"], true, "{response}");
    assert!(started.elapsed() < DEADLINE, "{:?}", started.elapsed());
    // The signer now often finishes (about 30 ms) before the webhook's first read: then no
    // re-read is needed; otherwise exactly one found the signature. The wait itself is shown
    // deterministically in webhook_security.rs (the signature written 600 ms into the admission).
    let metrics = webhook.metrics().await;
    let arrived = metric(
        &metrics,
        "signet_webhook_signing_grace_checks_total{outcome=\"arrived\"}",
    );
    assert!(arrived == 0.0 || arrived == 1.0, "{metrics}");

    // The signer stops: the next push is never signed, and its admission is denied after the
    // grace, saying which rule's signature was expected.
    signer.stop().await;
    registry
        .push_test_image("prod/api", "v2", "orphan-api")
        .await;
    let image = format!("{host}/prod/api:v2");
    let started = Instant::now();
    let response = webhook.review("/validate", pod_review(&image)).await;
    let waited = started.elapsed();
    assert_eq!(response["allowed"], false, "{response}");
    assert!(
        message(&response)
            .contains("signing was expected (SigningRule release-signer covers this image)"),
        "{response}"
    );
    // The last re-read falls inside the grace (they are spaced, the grace is not overrun).
    assert!(waited >= Duration::from_secs(2), "{waited:?}");
    assert!(waited < DEADLINE, "{waited:?}");
    let metrics = webhook.metrics().await;
    assert!(
        metric(
            &metrics,
            "signet_webhook_signing_grace_checks_total{outcome=\"still_unsigned\"}"
        ) >= 1.0,
        "{metrics}"
    );
}
