//! `signet signer` against Debian's `docker-registry` configured to notify it: in-scope pushes get
//! exactly one signature per matching rule (accepted by `signet verify`), everything else none;
//! Manual rules, signature pushes and unauthenticated notifications sign nothing; bad input is
//! answered; repeated events, two instances, a signer down or a registry restarted lose nothing and
//! duplicate nothing.

// Helpers outside `#[test]` functions fail by panicking, as tests do (clippy.toml covers only
// `#[test]` code).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use signet::crd::Trigger;
use signet::crypto::Algorithm;
use signet::signature::SignatureType;
use support::Registry;
use support::signer::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_scope_pushes_get_one_signature_per_rule_and_nothing_else_is_signed() {
    let dir = tempfile::tempdir().unwrap();
    let release = key(dir.path(), "release", Algorithm::EcdsaP256Sha256);
    let audit = key(dir.path(), "audit", Algorithm::RsaPssSha256);
    let manual = key(dir.path(), "manual", Algorithm::EcdsaP256Sha256);
    let listener = loopback_listener();
    let port = listener.local_addr().unwrap().port();
    let registry =
        Registry::start_with_notifications(&format!("http://127.0.0.1:{port}/events"), TOKEN);
    let host = registry.host();
    let rules = vec![
        rule(
            "release",
            &[format!("{host}/prod/**")],
            &release,
            SignatureType::Default,
            Trigger::Automatic,
        ),
        rule(
            "audit",
            &[format!("{host}/prod/**")],
            &audit,
            SignatureType::Simple,
            Trigger::Automatic,
        ),
        rule(
            "manual",
            &[format!("{host}/manual/**")],
            &manual,
            SignatureType::Default,
            Trigger::Manual,
        ),
    ];
    let running = RunningSigner::start(listener, rules, None).await;

    let app = registry.push_test_image("prod/app", "v1", "app-1").await;
    let api = registry
        .push_test_image("prod/team/api", "v2", "api-2")
        .await;
    let dev = registry.push_test_image("dev/app", "v1", "dev-1").await;
    let by_hand = registry
        .push_test_image("manual/app", "v1", "manual-1")
        .await;
    let signed = [
        ("prod/app:v1".to_string(), app.clone()),
        ("prod/team/api:v2".to_string(), api.clone()),
    ];
    wait_for_signatures(&registry, &signed, 2, Duration::from_secs(20)).await;
    // Let the signature pushes' own events, the registry's retries and the rechecks play out.
    tokio::time::sleep(Duration::from_secs(3)).await;

    for (repo_tag, digest) in &signed {
        assert_eq!(
            signature_count(&registry, repo_tag, digest).await,
            2,
            "{repo_tag}: one per rule"
        );
        let reference = format!("{host}/{repo_tag}");
        let (code, out) = signet_verify(&reference, &release, SignatureType::Default);
        assert_eq!(code, 0, "release signature of {reference}: {out}");
        let (code, out) = signet_verify(&reference, &audit, SignatureType::Simple);
        assert_eq!(code, 0, "audit signature of {reference}: {out}");
        let (code, _) = signet_verify(&reference, &manual, SignatureType::Simple);
        assert_eq!(code, 1, "the Manual rule's key signed {reference}");
    }
    assert_eq!(
        signature_count(&registry, "dev/app:v1", &dev).await,
        0,
        "out of scope was signed"
    );
    assert_eq!(
        signature_count(&registry, "manual/app:v1", &by_hand).await,
        0,
        "a Manual rule signed on push"
    );

    // No loop: the signature pushes were notified and ignored, and nothing signed a `.sig` tag.
    let tags = store()
        .client()
        .list_tags(&image(&registry, "prod/app"))
        .await
        .unwrap();
    // v1, its `.sig` tag and the bundles' fallback index tag (both formats, the default).
    assert_eq!(tags.len(), 3, "{tags:?}");
    let text = running.metrics();
    assert!(
        metric(
            &text,
            "signet_signer_events_ignored_total{reason=\"artifact_tag\"}"
        ) >= 2,
        "{text}"
    );
    assert_eq!(metric(&text, "signet_signer_signed_total"), 4, "{text}");
    assert!(
        metric(
            &text,
            "signet_signer_events_ignored_total{reason=\"out_of_scope\"}"
        ) >= 1,
        "{text}"
    );
    assert!(
        metric(
            &text,
            "signet_signer_events_ignored_total{reason=\"manual_rule\"}"
        ) >= 1,
        "{text}"
    );
    assert_eq!(
        metric(&text, "signet_signer_signing_latency_seconds_count"),
        2,
        "{text}"
    );
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_or_wrong_token_gets_401_and_nothing_is_signed() {
    let dir = tempfile::tempdir().unwrap();
    let release = key(dir.path(), "release", Algorithm::EcdsaP256Sha256);
    let listener = loopback_listener();
    let port = listener.local_addr().unwrap().port();
    let url = format!("http://127.0.0.1:{port}/events");
    let registry = Registry::start_with_notifications(&url, "not-the-token");
    let host = registry.host();
    let rules = vec![rule(
        "release",
        &[format!("{host}/**")],
        &release,
        SignatureType::Default,
        Trigger::Automatic,
    )];
    let running = RunningSigner::start(listener, rules, None).await;

    let digest = registry.push_test_image("prod/app", "v1", "token-1").await;
    let event = push_event(&host, "prod/app", Some("v1"), &digest, OCI_MANIFEST);
    for token in [None, Some("wrong"), Some("")] {
        let (status, _) = post_events(&url, token, event.clone()).await;
        assert_eq!(status, 401, "token {token:?}");
    }
    let (status, _) = post_events(&url, Some(&format!("{TOKEN}x")), event.clone()).await;
    assert_eq!(status, 401);
    // The registry's own deliveries (with its wrong token) keep failing too.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(signature_count(&registry, "prod/app:v1", &digest).await, 0);
    let text = running.metrics();
    assert!(
        metric(
            &text,
            "signet_signer_events_ignored_total{reason=\"unauthorized\"}"
        ) >= 5,
        "{text}"
    );
    assert_eq!(
        metric(&text, "signet_signer_events_received_total"),
        0,
        "{text}"
    );

    // The right token is accepted and signs.
    let (status, body) = post_events(&url, Some(TOKEN), event).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(signature_count(&registry, "prod/app:v1", &digest).await, 1);
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_answered_and_never_crashes() {
    let dir = tempfile::tempdir().unwrap();
    let release = key(dir.path(), "release", Algorithm::EcdsaP256Sha256);
    let simple = key(dir.path(), "simple", Algorithm::Ed25519);
    let registry = Registry::start();
    let host = registry.host();
    let rules = vec![
        rule(
            "release",
            &[format!("{host}/prod/**")],
            &release,
            SignatureType::Default,
            Trigger::Automatic,
        ),
        rule(
            "simple",
            &[format!("{host}/prod/**")],
            &simple,
            SignatureType::Simple,
            Trigger::Automatic,
        ),
    ];
    let running = RunningSigner::start(loopback_listener(), rules, None).await;
    let url = running.url();

    for body in [
        "",
        "not json",
        "{\"events\": 7}",
        "[]",
        "{\"events\": [",
        &"x".repeat(2 * 1024 * 1024),
    ] {
        let (status, _) = post_events(&url, Some(TOKEN), body.to_string()).await;
        assert!(
            status == 400 || status == 413,
            "{status} for a malformed body of {} bytes",
            body.len()
        );
    }
    let digest = registry.push_test_image("prod/app", "v1", "bad-1").await;
    let odd_events = [
        push_event(
            &host,
            "prod/app",
            Some("v1"),
            &digest,
            "application/vnd.example.unknown+json",
        ),
        push_event(
            &host,
            "prod/app",
            Some("v1"),
            &digest,
            "application/octet-stream",
        ),
        push_event(&host, "prod/app", Some("v1"), "sha256:nothex", OCI_MANIFEST),
        push_event(&host, "Prod/App", Some("v1"), &digest, OCI_MANIFEST),
        r#"{"events": [{"action": "push"}, 5, null]}"#.to_string(),
    ];
    for body in odd_events {
        let (status, answer) = post_events(&url, Some(TOKEN), body.clone()).await;
        assert_eq!(status, 200, "{body} -> {answer}");
    }
    assert_eq!(signature_count(&registry, "prod/app:v1", &digest).await, 0);

    // A manifest deleted since its push: answered 200 (a retry cannot help), nothing signed.
    let gone = registry.push_test_image("prod/gone", "v1", "gone-1").await;
    let deleted = http()
        .delete(format!("{}/v2/prod/gone/manifests/{gone}", registry.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status().as_u16(), 202);
    let (status, answer) = post_events(
        &url,
        Some(TOKEN),
        push_event(&host, "prod/gone", Some("v1"), &gone, OCI_MANIFEST),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert!(answer.contains("manifest_gone"), "{answer}");

    // A referrer (a manifest with a `subject`, such as an attached SBOM): not an image to sign.
    let parts = support::build_test_image("bad-1");
    let referrer = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": "application/spdx+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": parts.config_digest, "size": parts.config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": parts.layer_digest, "size": parts.layer.len()}],
        "subject": {"mediaType": OCI_MANIFEST, "digest": digest, "size": parts.manifest.len()},
    }))
    .unwrap();
    let pushed = store()
        .client()
        .push_manifest(
            &support::signer::image(&registry, "prod/app:sbom"),
            &referrer,
            OCI_MANIFEST,
        )
        .await
        .unwrap();
    let (status, answer) = post_events(
        &url,
        Some(TOKEN),
        push_event(&host, "prod/app", Some("sbom"), &pushed, OCI_MANIFEST),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert!(answer.contains("referrer"), "{answer}");
    assert_eq!(
        signature_count(&registry, "prod/app:sbom", &pushed).await,
        0
    );

    // A push by digest: the Default rule cannot bind a tag and skips; the Simple rule signs.
    let (status, answer) = post_events(
        &url,
        Some(TOKEN),
        push_event(&host, "prod/app", None, &digest, OCI_MANIFEST),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert!(answer.contains("default_needs_tag"), "{answer}");
    assert_eq!(signature_count(&registry, "prod/app:v1", &digest).await, 1);
    let text = running.metrics();
    assert_eq!(
        metric(
            &text,
            "signet_signer_skipped_total{reason=\"default_needs_tag\"}"
        ),
        1,
        "{text}"
    );

    // Still serving.
    let health = http()
        .get(url.replace("/events", "/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status().as_u16(), 200);
    let ready = http()
        .get(url.replace("/events", "/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status().as_u16(), 200);
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_registry_is_answered_503_so_the_event_comes_again() {
    let dir = tempfile::tempdir().unwrap();
    let release = key(dir.path(), "release", Algorithm::EcdsaP256Sha256);
    let host = format!("127.0.0.1:{}", support::closed_port());
    let rules = vec![rule(
        "release",
        &[format!("{host}/**")],
        &release,
        SignatureType::Default,
        Trigger::Automatic,
    )];
    let running = RunningSigner::start(loopback_listener(), rules, None).await;
    let digest = format!("sha256:{}", "ab".repeat(32));
    let (status, answer) = post_events(
        &running.url(),
        Some(TOKEN),
        push_event(&host, "prod/app", Some("v1"), &digest, OCI_MANIFEST),
    )
    .await;
    assert_eq!(status, 503, "{answer}");
    assert!(answer.contains("unreachable"), "{answer}");
    let text = running.metrics();
    assert_eq!(
        metric(&text, "signet_signer_failed_total{reason=\"registry\"}"),
        1,
        "{text}"
    );
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_multi_arch_index_is_signed_with_each_platform_manifest() {
    let registry = Registry::start();
    let host = registry.host();
    let dir = tempfile::tempdir().unwrap();
    let release = key(dir.path(), "release", Algorithm::EcdsaP256Sha256);
    let rules = || {
        vec![rule(
            "release",
            &[format!("{host}/multi/**")],
            &release,
            SignatureType::Default,
            Trigger::Automatic,
        )]
    };
    let running = RunningSigner::start(loopback_listener(), rules(), None).await;
    let url = running.url();
    let (index, children) = support::push_multi_arch(&registry.host(), "multi/app", "v1").await;

    // The children were pushed without a tag: a Default rule cannot sign them on their own.
    for child in &children {
        let event = push_event(&host, "multi/app", None, child, OCI_MANIFEST);
        let (status, _) = post_events(&url, Some(TOKEN), event).await;
        assert_eq!(status, 200);
        assert_eq!(signature_count(&registry, "multi/app:v1", child).await, 0);
    }
    // The index arrives: it and each platform manifest get one signature binding multi/app:v1.
    let event = push_event(&host, "multi/app", Some("v1"), &index, OCI_INDEX);
    for _ in 0..2 {
        let (status, answer) = post_events(&url, Some(TOKEN), event.clone()).await;
        assert_eq!(status, 200, "{answer}");
    }
    assert_eq!(signature_count(&registry, "multi/app:v1", &index).await, 1);
    for child in &children {
        assert_eq!(
            signature_count(&registry, "multi/app:v1", child).await,
            1,
            "platform manifest {child}"
        );
        // A workload pinned to the platform digest verifies by its own signature.
        let (code, out) = signet_verify(
            &format!("{host}/multi/app@{child}"),
            &release,
            SignatureType::Default,
        );
        assert_eq!(code, 0, "{out}");
    }
    running.stop().await;

    // A multi-arch image whose event was missed: the reconcile pass at start signs it and its
    // platform manifests.
    let (late, late_children) = support::push_multi_arch(&host, "multi/late", "v1").await;
    let running = RunningSigner::start(loopback_listener(), rules(), None).await;
    let wanted: Vec<(String, String)> = std::iter::once(late)
        .chain(late_children)
        .map(|digest| ("multi/late:v1".to_string(), digest))
        .collect();
    wait_for_signatures(&registry, &wanted, 1, Duration::from_secs(20)).await;
    running.stop().await;
}
