//! Attacks on the `.sig` tag, against Debian's `docker-registry`: whoever can push to a
//! repository can write its signature manifests and send (or forge) its events.
//!
//! - 128 layers naming one 1 MiB blob: read nothing (or the blob once), answer "no valid
//!   signature" with the reason, quickly, holding no more than the budget;
//! - 128 junk layers before the real signature: the image still verifies, and the signer neither
//!   grows the manifest on a repeated event nor past the cap when it must add a layer;
//! - a forged push event whose tag names another digest: nothing signed, `tag_moved` counted;
//!   and an honest event that arrives before the registry linked its tag still signs.

// Helpers outside `#[test]` functions fail by panicking, as tests do (clippy.toml covers only
// `#[test]` code).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use signet::admission::lookup::{LookupTimings, Lookups, RequestRegistry};
use signet::crd::Trigger;
use signet::crypto::Algorithm;
use signet::reference::ImageRef;
use signet::registry::{
    LookupFailureKind, MAX_SIGNATURE_LAYERS, MAX_SIGNATURE_PAYLOAD, RegistryClient,
    RegistryOptions, SIGNATURE_READ_BUDGET, SignatureStore, SkipReason, sha256_digest,
};
use signet::signature::{
    self, Descriptor, OCI_MANIFEST_MEDIA_TYPE, SIGNATURE_ANNOTATION, SIMPLE_SIGNING_MEDIA_TYPE,
    SignatureType,
};
use support::signer::*;
use support::{CorruptingProxy, Registry};

/// A layer naming `digest` with `size`, carrying a signature annotation that verifies nothing.
fn junk_layer(digest: &str, size: u64) -> Descriptor {
    let mut annotations = BTreeMap::new();
    annotations.insert(
        SIGNATURE_ANNOTATION.to_string(),
        base64::engine::general_purpose::STANDARD.encode(b"not a signature at all"),
    );
    Descriptor {
        media_type: SIMPLE_SIGNING_MEDIA_TYPE.to_string(),
        size,
        digest: digest.to_string(),
        annotations,
    }
}

/// Pushes `blobs`, then a `.sig` manifest for `digest` holding exactly `layers`.
async fn write_sig(
    store: &SignatureStore,
    image: &ImageRef,
    digest: &str,
    blobs: &[Vec<u8>],
    layers: &[Descriptor],
) {
    for blob in blobs {
        store.client().push_blob(image, blob).await.unwrap();
    }
    let built = signature::build_signature_manifest(layers).unwrap();
    store
        .client()
        .push_blob(image, &built.config)
        .await
        .unwrap();
    store
        .client()
        .push_manifest(
            &image.with_tag(&signature::signature_tag(digest).unwrap()),
            &built.manifest,
            OCI_MANIFEST_MEDIA_TYPE,
        )
        .await
        .unwrap();
}

/// Every layer of the `.sig` manifest (whatever its media type).
async fn sig_layers(store: &SignatureStore, image: &ImageRef, digest: &str) -> Vec<Descriptor> {
    let sig = image.with_tag(&signature::signature_tag(digest).unwrap());
    let manifest = store
        .client()
        .fetch_manifest(&sig)
        .await
        .unwrap()
        .expect("a .sig manifest");
    signature::parse_manifest_layers(&manifest.bytes).unwrap()
}

fn blob_gets(proxy: &CorruptingProxy, digest: &str) -> usize {
    proxy
        .request_lines()
        .iter()
        .filter(|l| l.starts_with("GET ") && l.contains("/blobs/") && l.ends_with(digest))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_big_blob_behind_many_layers_is_read_at_most_once_and_answers_over_budget() {
    let registry = Registry::start();
    let proxy = CorruptingProxy::recording(&registry.host());
    let host = proxy.host();
    let store = store();
    let image = ImageRef::parse(&format!("{host}/attack/big:v1")).unwrap();
    let digest = registry.push_test_image("attack/big", "v1", "big").await;
    let big = vec![b'x'; 1024 * 1024];
    let big_digest = sha256_digest(&big);

    // 1. Honest sizes: 128 layers declaring 1 MiB each. Nothing is fetched.
    let layers: Vec<_> = (0..128)
        .map(|_| junk_layer(&big_digest, big.len() as u64))
        .collect();
    write_sig(&store, &image, &digest, std::slice::from_ref(&big), &layers).await;
    let started = Instant::now();
    let set = store.fetch_signatures(&image, &digest).await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert!(set.signatures.is_empty());
    assert_eq!(set.skipped.count(SkipReason::OverPayloadCap), 128);
    assert_eq!((set.blobs_fetched, set.bytes_fetched), (0, 0));
    assert_eq!(blob_gets(&proxy, &big_digest), 0);
    let failure = set.unread_failure().expect("a reason");
    assert_eq!(failure.kind(), LookupFailureKind::OverBudget);
    let reason = failure.to_string();
    assert!(
        reason.contains("no valid signature") && reason.contains("128 layers skipped"),
        "{reason}"
    );

    // 2. Lying sizes: 128 layers declaring 300 bytes for the 1 MiB blob. One GET, refused at
    // the declared size (Content-Length), nothing held.
    let layers: Vec<_> = (0..128).map(|_| junk_layer(&big_digest, 300)).collect();
    write_sig(&store, &image, &digest, &[], &layers).await;
    let set = store.fetch_signatures(&image, &digest).await.unwrap();
    assert!(set.signatures.is_empty());
    assert_eq!(set.skipped.count(SkipReason::Unreadable), 128);
    assert_eq!((set.blobs_fetched, set.bytes_fetched), (0, 0));
    assert_eq!(blob_gets(&proxy, &big_digest), 1);

    // 3. Within the per-payload cap: 128 layers naming one 60 KiB blob. Fetched once; what is
    // held stays within the budget, the rest is counted as over budget.
    let medium = vec![b'y'; 60 * 1024];
    let medium_digest = sha256_digest(&medium);
    let layers: Vec<_> = (0..128)
        .map(|_| junk_layer(&medium_digest, medium.len() as u64))
        .collect();
    write_sig(
        &store,
        &image,
        &digest,
        std::slice::from_ref(&medium),
        &layers,
    )
    .await;
    let set = store.fetch_signatures(&image, &digest).await.unwrap();
    assert_eq!(blob_gets(&proxy, &medium_digest), 1);
    assert_eq!(set.blobs_fetched, 1);
    assert_eq!(set.bytes_fetched, medium.len() as u64);
    assert!(
        set.held_bytes() <= SIGNATURE_READ_BUDGET,
        "{}",
        set.held_bytes()
    );
    assert!(
        set.skipped.count(SkipReason::OverBudget) > 100,
        "{}",
        set.skipped
    );

    // 4. The webhook's lookup: a denial reason, not a registry error, and no cache growth.
    let layers: Vec<_> = (0..128)
        .map(|_| junk_layer(&big_digest, big.len() as u64))
        .collect();
    write_sig(&store, &image, &digest, &[], &layers).await;
    let lookups = Lookups::new(
        100,
        LookupTimings::default(),
        Arc::new(signet::admission::Metrics::new()),
    );
    let client = RegistryClient::new(&RegistryOptions::default()).unwrap();
    let before = blob_gets(&proxy, &big_digest);
    let started = Instant::now();
    let answer = lookups
        .signatures(&image, &digest, &RequestRegistry::new(&client, Vec::new()))
        .await;
    assert!(started.elapsed() < Duration::from_secs(2));
    let failure = answer.expect_err("over budget is no valid signature");
    assert_eq!(failure.kind(), LookupFailureKind::OverBudget);
    let reason = failure.to_string();
    assert!(
        reason.contains("no valid signature within the read budget")
            && reason.contains(&format!("over the {MAX_SIGNATURE_PAYLOAD}-byte cap")),
        "{reason}"
    );
    assert_eq!(blob_gets(&proxy, &big_digest), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn junk_layers_before_the_real_signature_neither_hide_it_nor_grow_the_manifest() {
    let registry = Registry::start();
    let host = registry.host();
    let dir = tempfile::tempdir().unwrap();
    let release = key(dir.path(), "release", Algorithm::EcdsaP256Sha256);
    let scope = vec![format!("{host}/prod/**")];
    let rules = vec![rule(
        "release",
        &scope,
        &release,
        SignatureType::Default,
        Trigger::Automatic,
    )];
    let running = RunningSigner::start(loopback_listener(), rules, None).await;
    let url = running.url();
    let digest = registry.push_test_image("prod/app", "v1", "app").await;
    let event = push_event(&host, "prod/app", Some("v1"), &digest, OCI_MANIFEST);
    let (status, answer) = post_events(&url, Some(TOKEN), event.clone()).await;
    assert_eq!(status, 200, "{answer}");
    let store = store();
    let image = ImageRef::parse(&format!("{host}/prod/app:v1")).unwrap();
    let real = sig_layers(&store, &image, &digest).await;
    assert_eq!(real.len(), 1);

    // The attacker rewrites the .sig: 64 tiny junk layers, 64 junk layers of 60 KiB (distinct
    // blobs, 3.75 MiB: past the budget on their own), then the real signature.
    let mut blobs = Vec::new();
    let mut layers = Vec::new();
    for i in 0..128 {
        let blob = if i < 64 {
            format!("junk {i}").into_bytes()
        } else {
            let mut b = vec![b'z'; 60 * 1024];
            b[..8].copy_from_slice(&(i as u64).to_be_bytes());
            b
        };
        layers.push(junk_layer(&sha256_digest(&blob), blob.len() as u64));
        blobs.push(blob);
    }
    layers.extend(real.iter().cloned());
    write_sig(&store, &image, &digest, &blobs, &layers).await;
    assert_eq!(sig_layers(&store, &image, &digest).await.len(), 129);

    // Still verifies: the real layer is read (small layers first), the big junk is not.
    let set = store.fetch_signatures(&image, &digest).await.unwrap();
    assert!(
        set.skipped.count(SkipReason::OverBudget) > 0,
        "{}",
        set.skipped
    );
    assert_eq!(
        signatures_per_key(&registry, "prod/app:v1", &digest, &[&release]).await,
        vec![1]
    );
    let (code, out) = signet_verify(
        &format!("{host}/prod/app:v1"),
        &release,
        SignatureType::Default,
    );
    assert_eq!(code, 0, "{out}");

    // A repeated event finds it signed and writes nothing.
    let present = metric(&running.metrics(), "signet_signer_already_signed_total");
    let (status, answer) = post_events(&url, Some(TOKEN), event.clone()).await;
    assert_eq!(status, 200, "{answer}");
    assert!(answer.contains("present"), "{answer}");
    assert_eq!(sig_layers(&store, &image, &digest).await.len(), 129);
    // At least this event's count: the recheck the first signing scheduled (2 s later) may find
    // it present too, at any moment.
    assert!(metric(&running.metrics(), "signet_signer_already_signed_total") > present);
    running.stop().await;

    // A new rule must add a layer to a manifest past the cap: the signer compacts it to the
    // layers its rules' keys verify, instead of growing it.
    let qa = key(dir.path(), "qa", Algorithm::Ed25519);
    let rules = vec![
        rule(
            "release",
            &scope,
            &release,
            SignatureType::Default,
            Trigger::Automatic,
        ),
        rule("qa", &scope, &qa, SignatureType::Simple, Trigger::Automatic),
    ];
    let running = RunningSigner::start(loopback_listener(), rules, None).await;
    let (status, answer) = post_events(&running.url(), Some(TOKEN), event).await;
    assert_eq!(status, 200, "{answer}");
    let after = sig_layers(&store, &image, &digest).await;
    assert_eq!(after.len(), 2, "{after:?}");
    assert!(after.len() <= MAX_SIGNATURE_LAYERS);
    assert_eq!(
        signatures_per_key(&registry, "prod/app:v1", &digest, &[&release, &qa]).await,
        vec![1, 1]
    );
    let text = running.metrics();
    assert_eq!(
        metric(&text, "signet_signer_sig_compactions_total"),
        1,
        "{text}"
    );
    assert_eq!(
        metric(&text, "signet_signer_sig_layers_dropped_total"),
        128,
        "{text}"
    );
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_event_whose_tag_names_another_digest_signs_nothing() {
    let registry = Registry::start();
    let host = registry.host();
    let dir = tempfile::tempdir().unwrap();
    let release = key(dir.path(), "release", Algorithm::EcdsaP256Sha256);
    let rules = vec![rule(
        "release",
        &[format!("{host}/prod/**")],
        &release,
        SignatureType::Default,
        Trigger::Automatic,
    )];
    let running = RunningSigner::start(loopback_listener(), rules, None).await;
    let url = running.url();
    let prod = registry.push_test_image("prod/app", "v1", "prod").await;
    let dev = registry.push_test_image("prod/app", "dev-17", "dev").await;

    // "prod/app:v1 was pushed with the dev build's digest": v1 names another digest.
    let forged = push_event(&host, "prod/app", Some("v1"), &dev, OCI_MANIFEST);
    let (status, answer) = post_events(&url, Some(TOKEN), forged).await;
    assert_eq!(status, 200, "{answer}");
    assert!(answer.contains("tag_moved"), "{answer}");
    // No stored signature binds prod/app:v1 to the dev digest. (The start-up reconcile pass may
    // have signed dev-17 under its own tag, which is right; hence not a plain count.)
    let public = signet::crypto::PublicKey::from_pem(
        &std::fs::read_to_string(&release.public).unwrap(),
        release.algorithm,
    )
    .unwrap();
    let v1 = ImageRef::parse(&format!("{host}/prod/app:v1")).unwrap();
    let stored = store()
        .fetch_signatures(&v1, &dev)
        .await
        .unwrap()
        .signatures;
    assert!(
        stored.iter().all(|s| signature::check_signature(
            s,
            &v1,
            &dev,
            SignatureType::Default,
            std::slice::from_ref(&public)
        )
        .is_err()),
        "a signature binds prod/app:v1 to the dev build"
    );
    let text = running.metrics();
    assert_eq!(
        metric(&text, "signet_signer_skipped_total{reason=\"tag_moved\"}"),
        1,
        "{text}"
    );

    // The genuine events still sign (or find signed), each digest under its own tag.
    for (tag, digest) in [("v1", &prod), ("dev-17", &dev)] {
        let event = push_event(&host, "prod/app", Some(tag), digest, OCI_MANIFEST);
        let (status, answer) = post_events(&url, Some(TOKEN), event).await;
        assert_eq!(status, 200, "{answer}");
        assert!(!answer.contains("tag_moved"), "{answer}");
        assert_eq!(
            signature_count(&registry, &format!("prod/app:{tag}"), digest).await,
            1
        );
    }
    let (code, out) = signet_verify(
        &format!("{host}/prod/app:v1"),
        &release,
        SignatureType::Default,
    );
    assert_eq!(code, 0, "{out}");
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_that_arrives_before_its_tag_is_linked_still_signs() {
    // CNCF distribution stores the manifest, sends the push event, then links the tag: under
    // load the signer can read the tag before it names the pushed digest.
    let registry = Registry::start();
    let host = registry.host();
    let dir = tempfile::tempdir().unwrap();
    let release = key(dir.path(), "release", Algorithm::EcdsaP256Sha256);
    let rules = vec![rule(
        "release",
        &[format!("{host}/prod/**")],
        &release,
        SignatureType::Default,
        Trigger::Automatic,
    )];
    let running = RunningSigner::start(loopback_listener(), rules, None).await;
    let url = running.url();
    let digest = registry
        .push_test_image("prod/app", "build-1", "late")
        .await;
    let event = push_event(&host, "prod/app", Some("v2"), &digest, OCI_MANIFEST);
    let posted = tokio::spawn(async move { post_events(&url, Some(TOKEN), event).await });
    tokio::time::sleep(Duration::from_millis(400)).await;
    // The same manifest, now tagged v2 (the tag link the event ran ahead of).
    assert_eq!(
        registry.push_test_image("prod/app", "v2", "late").await,
        digest
    );
    let (status, answer) = posted.await.unwrap();
    assert_eq!(status, 200, "{answer}");
    assert!(!answer.contains("tag_moved"), "{answer}");
    assert_eq!(signature_count(&registry, "prod/app:v2", &digest).await, 1);
    running.stop().await;
}
