//! Refresh ahead of expiry (src/admission/admitted.rs): an image in steady use is looked up
//! again in the background before its cached verdict ends, so that no admission of it waits for
//! the registry when the caches expire, and what the refresh finds (a revoked signature) counts
//! from then on. Against Debian's `docker-registry`, through a recording proxy where requests
//! are counted.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::{Duration, Instant};

use support::CorruptingProxy;
use support::webhook::{
    SignedRegistry, TestWebhook, fixture, policy_state_simple, registry_client, revoke_signatures,
    settings, signed_registry,
};

const DEADLINE: Duration = Duration::from_secs(8);

/// Both caches (tag -> digest and signatures) for `ttl`: an admission's entry lives `ttl`, and
/// is refreshed from five sixths of it.
fn with_ttl(ttl: Duration) -> signet::admission::DecisionSettings {
    let mut settings = settings(DEADLINE);
    settings.timings.signatures_ttl = ttl;
    settings.timings.digest_ttl = ttl;
    settings
}

/// Polls `proxy` until it has recorded more than `than` requests, for at most `within`.
async fn requests_beyond(proxy: &CorruptingProxy, than: usize, within: Duration) -> Vec<String> {
    let end = Instant::now() + within;
    loop {
        let lines = proxy.request_lines();
        if lines.len() > than || Instant::now() > end {
            return lines;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A webhook whose caches last `ttl`, over a signed registry reached through a recording
/// proxy, that has just allowed the fixture pod once.
struct Admitted {
    setup: SignedRegistry,
    proxy: CorruptingProxy,
    webhook: TestWebhook,
    /// The proxy's host, which the pod's images name.
    host: String,
    body: Vec<u8>,
    /// When the first admission was sent.
    start: Instant,
}

async fn admitted_once(ttl: Duration) -> Admitted {
    let setup = signed_registry().await;
    let proxy = CorruptingProxy::recording(&setup.host());
    let host = proxy.host();
    let state = policy_state_simple(&host, &setup.public_key_pem);
    let webhook = TestWebhook::start(state, with_ttl(ttl), None).await;
    let body = fixture("pod-create.json", &host, None);
    let start = Instant::now();
    let answer = webhook.review("/validate", body.clone()).await;
    assert_eq!(answer["allowed"], true, "{answer}");
    Admitted {
        setup,
        proxy,
        webhook,
        host,
        body,
        start,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_in_steady_use_is_read_again_before_its_entry_expires_and_never_waits() {
    let ttl = Duration::from_secs(3);
    let Admitted {
        // Bound, not dropped: the registry and proxy live until the end.
        setup: _setup,
        proxy,
        webhook,
        host: _,
        body,
        start,
    } = admitted_once(ttl).await;
    // Two governed images: the tag, the .sig manifest and its payload blob of each.
    let cold = proxy.request_lines().len();
    assert_eq!(cold, 6, "{:#?}", proxy.request_lines());

    // Before five sixths of the entry's life: answered from the cache, nothing read.
    let answer = webhook.review("/validate", body.clone()).await;
    assert_eq!(answer["allowed"], true, "{answer}");
    assert_eq!(proxy.request_lines().len(), cold);

    // Past five sixths: still answered from the cache, and the images are read again in the
    // background, each store once.
    tokio::time::sleep_until((start + ttl * 5 / 6 + Duration::from_millis(100)).into()).await;
    let answer = webhook.review("/validate", body.clone()).await;
    assert_eq!(answer["allowed"], true, "{answer}");
    let lines = requests_beyond(&proxy, 2 * cold - 1, Duration::from_secs(5)).await;
    let refreshed = &lines[cold..];
    assert_eq!(
        refreshed.len(),
        cold,
        "the refresh reads what a cold admission reads: {lines:#?}"
    );
    assert!(
        refreshed
            .iter()
            .any(|l| l.ends_with("/prod/app/manifests/v1")),
        "the tag is resolved again: {refreshed:#?}"
    );
    assert!(
        refreshed.iter().any(|l| l.contains(".sig")),
        "the signatures are read again: {refreshed:#?}"
    );

    // Past the first entry's expiry: answered from the refreshed entry, nothing read; the
    // admissions in between asked for no second refresh.
    tokio::time::sleep_until((start + ttl + Duration::from_millis(300)).into()).await;
    for _ in 0..3 {
        let answer = webhook.review("/validate", body.clone()).await;
        assert_eq!(answer["allowed"], true, "{answer}");
    }
    assert_eq!(
        proxy.request_lines().len(),
        2 * cold,
        "{:#?}",
        proxy.request_lines()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signature_revoked_meanwhile_is_denied_once_the_refresh_has_read_it() {
    let ttl = Duration::from_secs(6);
    let Admitted {
        setup,
        proxy: _proxy,
        webhook,
        host,
        body,
        start,
    } = admitted_once(ttl).await;
    // Written to the registry directly: the proxy counts the webhook's requests only.
    let digest = setup.digest("prod/app:v1");
    revoke_signatures(&registry_client(), &setup.host(), "prod/app", &digest).await;

    // In the refresh window the cached verdict still answers (as it would until expiry), and
    // the refresh it starts finds the revocation: the image is denied before the cached
    // verdict would have ended.
    tokio::time::sleep_until((start + ttl * 5 / 6 + Duration::from_millis(100)).into()).await;
    let answer = webhook.review("/validate", body.clone()).await;
    assert_eq!(answer["allowed"], true, "{answer}");
    let denied_at = loop {
        let answer = webhook.review("/validate", body.clone()).await;
        if answer["allowed"] == false {
            let message = answer["status"]["message"].as_str().unwrap_or_default();
            assert!(message.contains(&format!("{host}/prod/app:v1")), "{answer}");
            break Instant::now();
        }
        assert!(start.elapsed() < ttl * 2, "never denied: {answer}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        denied_at < start + ttl,
        "denied {:?} after the first admission, no earlier than expiry would",
        denied_at - start
    );
}
