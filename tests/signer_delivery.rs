//! Nothing lost, nothing duplicated: repeated events, two signer instances on the same events, the
//! signer down while images are pushed, the registry restarted mid-burst, and `signet sign
//! --backfill` for what was pushed before the rules.

// Helpers outside `#[test]` functions fail by panicking, as tests do (clippy.toml covers only
// `#[test]` code).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::process::Command;
use std::time::Duration;

use signet::crd::Trigger;
use signet::crypto::Algorithm;
use signet::signature::SignatureType;
use signet::signer::{Recheck, SignerOptions};
use support::Registry;
use support::signer::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_events_add_no_layers() {
    let dir = tempfile::tempdir().unwrap();
    let release = key(dir.path(), "release", Algorithm::EcdsaP256Sha256);
    let audit = key(dir.path(), "audit", Algorithm::RsaPssSha256);
    let registry = Registry::start();
    let host = registry.host();
    let rules = vec![
        rule(
            "release",
            &[format!("{host}/**")],
            &release,
            SignatureType::Default,
            Trigger::Automatic,
        ),
        rule(
            "audit",
            &[format!("{host}/**")],
            &audit,
            SignatureType::Simple,
            Trigger::Automatic,
        ),
    ];
    let running = RunningSigner::start(loopback_listener(), rules, None).await;
    let url = running.url();
    let mut images = Vec::new();
    for i in 0..3 {
        let repo = format!("dup/app{i}");
        let digest = registry
            .push_test_image(&repo, "v1", &format!("dup-{i}"))
            .await;
        let event = push_event(&host, &repo, Some("v1"), &digest, OCI_MANIFEST);
        // Four at once, then two more after the first ones are answered.
        let burst = (0..4).map(|_| post_events(&url, Some(TOKEN), event.clone()));
        for (status, body) in futures::future::join_all(burst).await {
            assert_eq!(status, 200, "{body}");
        }
        for _ in 0..2 {
            let (status, body) = post_events(&url, Some(TOKEN), event.clone()).await;
            assert_eq!(status, 200, "{body}");
            assert!(
                body.contains("\"added\":[]"),
                "a repeated event added a layer: {body}"
            );
        }
        images.push((format!("{repo}:v1"), digest));
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    for (repo_tag, digest) in &images {
        assert_eq!(
            signature_count(&registry, repo_tag, digest).await,
            2,
            "{repo_tag}"
        );
        assert_eq!(
            signatures_per_key(&registry, repo_tag, digest, &[&release, &audit]).await,
            [1, 1]
        );
    }
    let text = running.metrics();
    assert_eq!(metric(&text, "signet_signer_signed_total"), 6, "{text}");
    assert!(
        metric(&text, "signet_signer_already_signed_total") >= 30,
        "{text}"
    );
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_on_the_same_events_lose_and_duplicate_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let release = key(dir.path(), "release", Algorithm::EcdsaP256Sha256);
    let legacy = key(dir.path(), "legacy", Algorithm::RsaPkcs1Sha256);
    let registry = Registry::start();
    let host = registry.host();
    let rules = vec![
        rule(
            "release",
            &[format!("{host}/**")],
            &release,
            SignatureType::Default,
            Trigger::Automatic,
        ),
        rule(
            "legacy",
            &[format!("{host}/**")],
            &legacy,
            SignatureType::Simple,
            Trigger::Automatic,
        ),
    ];
    // Several instances look again by time (`--recheck 2s`): an event reaches one of them only.
    let timed = || SignerOptions {
        recheck: Recheck::After(Duration::from_secs(2)),
        ..Default::default()
    };
    let a = RunningSigner::start_with(loopback_listener(), rules.clone(), None, timed()).await;
    let b = RunningSigner::start_with(loopback_listener(), rules, None, timed()).await;
    // One digest under two tags: the Default rule owes it one signature per tag, and the events of
    // the two tags write the same `.sig` manifest, so the instances' writes race for real.
    let mut images = Vec::new();
    for i in 0..10 {
        let repo = format!("pair/app{i}");
        let digest = registry
            .push_test_image(&repo, "v1", &format!("pair-{i}"))
            .await;
        assert_eq!(
            registry
                .push_test_image(&repo, "v2", &format!("pair-{i}"))
                .await,
            digest
        );
        images.push((repo, digest));
    }
    // Each event reaches both instances at the same moment, as a fan-out would deliver it.
    let deliveries = images.iter().flat_map(|(repo, digest)| {
        let events =
            ["v1", "v2"].map(|tag| push_event(&host, repo, Some(tag), digest, OCI_MANIFEST));
        let (url_a, url_b) = (a.url(), b.url());
        [
            (url_a.clone(), events[0].clone()),
            (url_b.clone(), events[1].clone()),
            (url_b, events[0].clone()),
            (url_a, events[1].clone()),
        ]
        .map(|(url, event)| async move { post_events(&url, Some(TOKEN), event).await })
    });
    for (status, body) in futures::future::join_all(deliveries).await {
        assert_eq!(status, 200, "{body}");
    }
    // Past the rechecks, which repair what one instance's write hid of the other's.
    tokio::time::sleep(Duration::from_secs(4)).await;
    eprintln!(
        "manifests found overwritten: {} + {}; restored by recheck: {} + {}",
        metric(&a.metrics(), "signet_signer_overwritten_total"),
        metric(&b.metrics(), "signet_signer_overwritten_total"),
        metric(&a.metrics(), "signet_signer_recheck_restored_total"),
        metric(&b.metrics(), "signet_signer_recheck_restored_total"),
    );
    for (i, (repo, digest)) in images.iter().enumerate() {
        for tag in ["v1", "v2"].iter().filter(|_| i == 0) {
            let reference = format!("{host}/{repo}:{tag}");
            let (code, out) = signet_verify(&reference, &release, SignatureType::Default);
            assert_eq!(code, 0, "{reference}: {out}");
        }
        let repo_tag = format!("{repo}:v1");
        assert_eq!(
            signatures_per_key(&registry, &repo_tag, digest, &[&release, &legacy]).await,
            [2, 1],
            "{repo}: one release signature per tag, one legacy signature"
        );
        assert_eq!(
            signature_count(&registry, &repo_tag, digest).await,
            3,
            "{repo_tag}"
        );
    }
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn images_pushed_while_the_signer_is_down_are_signed_when_it_returns() {
    let dir = tempfile::tempdir().unwrap();
    let release = key(dir.path(), "release", Algorithm::EcdsaP256Sha256);
    let port = support::closed_port();
    let registry =
        Registry::start_with_notifications(&format!("http://127.0.0.1:{port}/events"), TOKEN);
    let host = registry.host();
    let mut images = Vec::new();
    for i in 0..20 {
        let repo = format!("down/app{i}");
        let digest = registry
            .push_test_image(&repo, "v1", &format!("down-{i}"))
            .await;
        images.push((format!("{repo}:v1"), digest));
    }
    for (repo_tag, digest) in &images {
        assert_eq!(signature_count(&registry, repo_tag, digest).await, 0);
    }
    let listener =
        std::net::TcpListener::bind(("127.0.0.1", port)).expect("the signer's port is free again");
    let rules = vec![rule(
        "release",
        &[format!("{host}/down/**")],
        &release,
        SignatureType::Default,
        Trigger::Automatic,
    )];
    let running = RunningSigner::start(listener, rules, None).await;
    wait_for_signatures(&registry, &images, 1, Duration::from_secs(30)).await;
    // The registry's retried events arrive after the start-up reconcile: they must add nothing.
    tokio::time::sleep(Duration::from_secs(4)).await;
    for (repo_tag, digest) in &images {
        assert_eq!(
            signatures_per_key(&registry, repo_tag, digest, &[&release]).await,
            [1],
            "{repo_tag}"
        );
        assert_eq!(
            signature_count(&registry, repo_tag, digest).await,
            1,
            "{repo_tag}"
        );
    }
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_restarted_mid_burst_loses_no_signature() {
    let dir = tempfile::tempdir().unwrap();
    let release = key(dir.path(), "release", Algorithm::EcdsaP256Sha256);
    let listener = loopback_listener();
    let port = listener.local_addr().unwrap().port();
    let mut registry =
        Registry::start_with_notifications(&format!("http://127.0.0.1:{port}/events"), TOKEN);
    let host = registry.host();
    let rules = vec![rule(
        "release",
        &[format!("{host}/burst/**")],
        &release,
        SignatureType::Default,
        Trigger::Automatic,
    )];
    // Events queued in the registry's memory die with it: the periodic reconcile finds those images.
    let running = RunningSigner::start(listener, rules, Some(Duration::from_secs(2))).await;
    let mut images = Vec::new();
    for i in 0..20 {
        if i == 10 {
            registry.restart();
        }
        let repo = format!("burst/app{i}");
        let digest = registry
            .push_test_image(&repo, "v1", &format!("burst-{i}"))
            .await;
        images.push((format!("{repo}:v1"), digest));
    }
    wait_for_signatures(&registry, &images, 1, Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    for (repo_tag, digest) in &images {
        assert_eq!(
            signature_count(&registry, repo_tag, digest).await,
            1,
            "{repo_tag}"
        );
    }
    running.stop().await;
}

fn signet(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_signet"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_signs_what_was_pushed_before_the_rules() {
    let dir = tempfile::tempdir().unwrap();
    let release = key(dir.path(), "release", Algorithm::EcdsaP256Sha256);
    let manual = key(dir.path(), "manual", Algorithm::EcdsaP256Sha256);
    let registry = Registry::start();
    let host = registry.host();
    let mut in_scope = Vec::new();
    for (repo, tag) in [
        ("prod/app", "v1"),
        ("prod/app", "v2"),
        ("prod/team/api", "1.0"),
    ] {
        let digest = registry
            .push_test_image(repo, tag, &format!("{repo}-{tag}"))
            .await;
        in_scope.push((format!("{repo}:{tag}"), digest));
    }
    let dev = registry.push_test_image("dev/app", "v1", "dev").await;
    let by_hand = registry.push_test_image("manual/app", "v1", "manual").await;
    let folder = policy_dir(
        dir.path(),
        &[
            rule(
                "release",
                &[format!("{host}/prod/**")],
                &release,
                SignatureType::Default,
                Trigger::Automatic,
            ),
            rule(
                "manual",
                &[format!("{host}/manual/**")],
                &manual,
                SignatureType::Default,
                Trigger::Manual,
            ),
        ],
    );
    let folder = folder.to_str().unwrap();
    let (code, out, err) = signet(&["sign", "--backfill", "--policy-dir", folder]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("3 images: 3 signatures added, 0 present, 0 failures"),
        "{out}"
    );
    for (repo_tag, digest) in &in_scope {
        assert_eq!(
            signatures_per_key(&registry, repo_tag, digest, &[&release]).await,
            [1],
            "{repo_tag}"
        );
        let (code, out) = signet_verify(
            &format!("{host}/{repo_tag}"),
            &release,
            SignatureType::Default,
        );
        assert_eq!(code, 0, "{out}");
    }
    assert_eq!(signature_count(&registry, "dev/app:v1", &dev).await, 0);
    assert_eq!(
        signature_count(&registry, "manual/app:v1", &by_hand).await,
        0
    );
    // Idempotent: a second pass finds everything signed.
    let (code, out, err) = signet(&["sign", "--backfill", "--policy-dir", folder]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("3 images: 0 signatures added, 3 present, 0 failures"),
        "{out}"
    );
    // A key that cannot be opened is an error before anything is signed.
    std::fs::remove_file(&release.private).unwrap();
    let (code, out, err) = signet(&["sign", "--backfill", "--policy-dir", folder]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(
        err.contains("release") && err.contains(&release.private.display().to_string()),
        "{err}"
    );
}

/// Another writer read the `.sig` manifest before the signer's write and writes after it: the
/// signer's layer is hidden. By default (one instance) the signer learns of it from the
/// registry's event of that push, and asks the registry nothing while nobody else writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signature_hidden_by_a_stale_concurrent_write_is_restored_from_the_registrys_event() {
    signature_hidden_by_a_stale_write_is_restored(Recheck::Events).await;
}

/// The same with the timed look several instances use (`--recheck 2s`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signature_hidden_by_a_stale_concurrent_write_is_restored_by_the_timed_recheck() {
    signature_hidden_by_a_stale_write_is_restored(Recheck::After(Duration::from_secs(2))).await;
}

async fn signature_hidden_by_a_stale_write_is_restored(recheck: Recheck) {
    let dir = tempfile::tempdir().unwrap();
    let release = key(dir.path(), "release", Algorithm::EcdsaP256Sha256);
    let other = key(dir.path(), "other", Algorithm::EcdsaP256Sha256);
    let listener = loopback_listener();
    let events_url = format!("http://{}/events", listener.local_addr().unwrap());
    let registry = match recheck {
        Recheck::Events => Registry::start_with_notifications(&events_url, TOKEN),
        _ => Registry::start(),
    };
    let host = registry.host();
    let rules = vec![rule(
        "release",
        &[format!("{host}/**")],
        &release,
        SignatureType::Default,
        Trigger::Automatic,
    )];
    let options = SignerOptions {
        recheck,
        ..Default::default()
    };
    let running = RunningSigner::start_with(listener, rules, None, options).await;
    let digest = registry.push_test_image("race/app", "v1", "race").await;
    if recheck == Recheck::Events {
        // The registry's own event signs it.
        wait_for_signatures(
            &registry,
            &[("race/app:v1".to_string(), digest.clone())],
            1,
            Duration::from_secs(20),
        )
        .await;
        // Let the signer's own pushes come back as events, then: nobody else writes, and the
        // signer asks the registry nothing (the timed look would send one HEAD per tag).
        tokio::time::sleep(Duration::from_secs(1)).await;
        let before = running.signer.client().requests_sent();
        tokio::time::sleep(Duration::from_millis(2500)).await;
        assert_eq!(running.signer.client().requests_sent(), before);
    } else {
        let (status, body) = post_events(
            &running.url(),
            Some(TOKEN),
            push_event(&host, "race/app", Some("v1"), &digest, OCI_MANIFEST),
        )
        .await;
        assert_eq!(status, 200, "{body}");
    }
    assert_eq!(
        signatures_per_key(&registry, "race/app:v1", &digest, &[&release]).await,
        [1]
    );

    // Another instance read the manifest before that write and now writes its own layer over it.
    let image = signet::reference::ImageRef::parse(&format!("{host}/race/app:v1")).unwrap();
    let other_key = signet::crypto::open_signing_key(
        &format!("file:{}", other.private.display()),
        other.algorithm,
        None,
    )
    .unwrap();
    let payload = signet::signature::build_payload(
        &image,
        &digest,
        SignatureType::Default,
        &Default::default(),
    )
    .unwrap();
    let layer = signet::signature::Descriptor::for_signature(
        &payload,
        &other_key.sign(&payload).unwrap(),
        &Default::default(),
    );
    let built = signet::signature::build_signature_manifest(&[layer]).unwrap();
    let client = store().client().clone();
    client.push_blob(&image, &payload).await.unwrap();
    client.push_blob(&image, &built.config).await.unwrap();
    let sig_tag = signet::signature::signature_tag(&digest).unwrap();
    client
        .push_manifest(
            &image.with_tag(&sig_tag),
            &built.manifest,
            signet::signature::OCI_MANIFEST_MEDIA_TYPE,
        )
        .await
        .unwrap();
    if recheck != Recheck::Events {
        assert_eq!(
            signatures_per_key(&registry, "race/app:v1", &digest, &[&release, &other]).await,
            [0, 1],
            "the stale write hid the signer's layer"
        );
    }
    // Restored next to the other layer: from the event at once, or 2 s after the signer's write.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        // The signer's restoring write races this read: a failed read is "not yet".
        let found =
            try_signatures_per_key(&registry, "race/app:v1", &digest, &[&release, &other]).await;
        if found.as_ref().is_ok_and(|found| found == &[1, 1]) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not restored: {found:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        metric(&running.metrics(), "signet_signer_recheck_restored_total"),
        1
    );
    running.stop().await;
}
