//! The registry client against a real `docker-registry` (Debian package `docker-registry`): tags
//! and digests resolved, manifests and blobs read and written, catalog and tag pagination, bodies
//! altered by a proxy caught by their digest, a restarted registry, its notifications. What a
//! user relies on when signet reads or signs images. Authentication: `registry_auth.rs`;
//! failing and hostile servers: `registry_faults.rs`.

// Helpers outside `#[test]` functions fail by panicking, as tests do (clippy.toml covers only
// `#[test]` code).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use signet::reference::ImageRef;
use signet::registry::{OCI_MANIFEST_MEDIA_TYPE, RegistryError, sha256_digest};
use support::registry_client::{client, image};
use support::{
    CorruptingProxy, ProxyOptions, Registry, StatusServer, TagPages, Tamper, build_test_image,
    push_test_image,
};

#[tokio::test]
async fn resolves_a_tag_to_the_pushed_digest() {
    let registry = Registry::start();
    let digest = registry.push_test_image("team/app", "v1", "one").await;
    let other = registry.push_test_image("team/app", "v2", "two").await;
    assert_ne!(digest, other, "different seeds must give different images");

    let client = client();
    let resolved = client
        .resolve_digest(&image(&format!("{}/team/app:v1", registry.host())))
        .await
        .unwrap();
    assert_eq!(resolved, digest);
    let resolved = client
        .resolve_digest(&image(&format!("{}/team/app:v2", registry.host())))
        .await
        .unwrap();
    assert_eq!(resolved, other);
}

#[tokio::test]
async fn a_digest_reference_is_confirmed_against_the_registry() {
    let registry = Registry::start();
    let digest = registry.push_test_image("app", "v1", "seed").await;
    let client = client();

    let pinned = image(&format!("{}/app@{digest}", registry.host()));
    assert_eq!(client.resolve_digest(&pinned).await.unwrap(), digest);
    let tag_and_digest = image(&format!("{}/app:v1@{digest}", registry.host()));
    assert_eq!(
        client.resolve_digest(&tag_and_digest).await.unwrap(),
        digest
    );

    let absent = sha256_digest(b"no such manifest");
    let err = client
        .resolve_digest(&image(&format!("{}/app@{absent}", registry.host())))
        .await
        .unwrap_err();
    assert!(err.is_not_found(), "{err}");
    assert!(err.to_string().contains(&absent), "{err}");
}

#[tokio::test]
async fn an_unknown_tag_is_a_clear_not_found_error() {
    let registry = Registry::start();
    registry.push_test_image("app", "v1", "seed").await;
    let err = client()
        .resolve_digest(&image(&format!("{}/app:nope", registry.host())))
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::NotFound { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!("registry {}: manifest app:nope not found", registry.host())
    );
    let err = client()
        .resolve_digest(&image(&format!("{}/no/such/repo:v1", registry.host())))
        .await
        .unwrap_err();
    assert!(err.is_not_found(), "{err}");
}

#[tokio::test]
async fn fetches_a_manifest_by_tag_and_by_digest() {
    let registry = Registry::start();
    let digest = registry.push_test_image("app", "v1", "seed").await;
    let expected = build_test_image("seed");
    let client = client();

    let by_tag = client
        .fetch_manifest(&image(&format!("{}/app:v1", registry.host())))
        .await
        .unwrap()
        .expect("manifest by tag");
    assert_eq!(by_tag.bytes, expected.manifest);
    assert_eq!(by_tag.digest, digest);
    assert_eq!(by_tag.media_type, OCI_MANIFEST_MEDIA_TYPE);

    let by_digest = client
        .fetch_manifest(&image(&format!("{}/app@{digest}", registry.host())))
        .await
        .unwrap()
        .expect("manifest by digest");
    assert_eq!(by_digest, by_tag);

    let missing_tag = client
        .fetch_manifest(&image(&format!("{}/app:v9", registry.host())))
        .await
        .unwrap();
    assert_eq!(missing_tag, None);
    let missing_repo = client
        .fetch_manifest(&image(&format!("{}/ghost:v1", registry.host())))
        .await
        .unwrap();
    assert_eq!(missing_repo, None);
}

#[tokio::test]
async fn blobs_round_trip_and_existing_blobs_are_not_uploaded_again() {
    let registry = Registry::start();
    let proxy = CorruptingProxy::recording(&registry.host());
    let repo = image(&format!("{}/sigs/app", proxy.host()));
    let data = b"payload bytes for a signature".to_vec();
    let client = client();

    let digest = client.push_blob(&repo, &data).await.unwrap();
    assert_eq!(digest, sha256_digest(&data));
    assert_eq!(
        client.fetch_blob(&repo, &digest, 1 << 20).await.unwrap(),
        data
    );

    let before = proxy.request_lines().len();
    assert_eq!(client.push_blob(&repo, &data).await.unwrap(), digest);
    let second_push: Vec<String> = proxy.request_lines()[before..].to_vec();
    assert_eq!(second_push, [format!("HEAD /v2/sigs/app/blobs/{digest}")]);

    let absent = sha256_digest(b"absent");
    let err = client
        .fetch_blob(&repo, &absent, 1 << 20)
        .await
        .unwrap_err();
    assert!(err.is_not_found(), "{err}");
}

#[tokio::test]
async fn a_blob_over_the_limit_is_refused() {
    let registry = Registry::start();
    let repo = image(&format!("{}/big", registry.host()));
    let client = client();
    let data = vec![7u8; 4096];
    let digest = client.push_blob(&repo, &data).await.unwrap();

    let err = client.fetch_blob(&repo, &digest, 1024).await.unwrap_err();
    assert!(
        matches!(err, RegistryError::TooLarge { limit: 1024, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("1024-byte limit"), "{err}");
    assert_eq!(client.fetch_blob(&repo, &digest, 4096).await.unwrap(), data);
}

#[tokio::test]
async fn pushed_manifests_resolve_by_tag_and_digest() {
    let registry = Registry::start();
    let client = client();
    let built = build_test_image("pushed by the client");
    let repo = image(&format!("{}/pushed", registry.host()));
    client.push_blob(&repo, &built.config).await.unwrap();
    client.push_blob(&repo, &built.layer).await.unwrap();

    let tagged = repo.with_tag("v1");
    let digest = client
        .push_manifest(&tagged, &built.manifest, OCI_MANIFEST_MEDIA_TYPE)
        .await
        .unwrap();
    assert_eq!(digest, built.digest);
    assert_eq!(client.resolve_digest(&tagged).await.unwrap(), digest);

    let other = build_test_image("second");
    client.push_blob(&repo, &other.config).await.unwrap();
    client.push_blob(&repo, &other.layer).await.unwrap();
    let pinned = ImageRef::from_parts(
        repo.registry(),
        repo.repository(),
        None,
        Some(&other.digest),
    )
    .unwrap();
    assert_eq!(
        client
            .push_manifest(&pinned, &other.manifest, OCI_MANIFEST_MEDIA_TYPE)
            .await
            .unwrap(),
        other.digest
    );
    assert!(client.fetch_manifest(&pinned).await.unwrap().is_some());

    // Bytes that do not hash to the digest named are refused before anything is sent.
    let wrong =
        ImageRef::from_parts(repo.registry(), repo.repository(), None, Some(&digest)).unwrap();
    let err = client
        .push_manifest(&wrong, &other.manifest, OCI_MANIFEST_MEDIA_TYPE)
        .await
        .unwrap_err();
    assert!(
        matches!(err, RegistryError::DigestMismatch { .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn altered_manifests_and_blobs_are_detected() {
    let registry = Registry::start();
    let digest = registry.push_test_image("app", "v1", "seed").await;
    let built = build_test_image("seed");
    let proxy = CorruptingProxy::start(&registry.host());
    let client = client();

    let err = client
        .fetch_manifest(&image(&format!("{}/app:v1", proxy.host())))
        .await
        .unwrap_err();
    match &err {
        RegistryError::DigestMismatch {
            expected, actual, ..
        } => {
            assert_eq!(expected, &digest);
            assert_ne!(actual, &digest);
        }
        other => panic!("expected a digest mismatch by tag, got {other:?}"),
    }
    assert!(err.to_string().contains(&proxy.host()), "{err}");

    let err = client
        .fetch_manifest(&image(&format!("{}/app@{digest}", proxy.host())))
        .await
        .unwrap_err();
    assert!(
        matches!(err, RegistryError::DigestMismatch { .. }),
        "by digest: {err:?}"
    );

    let repo = image(&format!("{}/app", proxy.host()));
    let err = client
        .fetch_blob(&repo, &built.layer_digest, 1 << 20)
        .await
        .unwrap_err();
    match &err {
        RegistryError::DigestMismatch { expected, .. } => assert_eq!(expected, &built.layer_digest),
        other => panic!("expected a digest mismatch for the blob, got {other:?}"),
    }

    // A proxy that swaps in another (well-formed) manifest is caught the same way.
    let swapping = CorruptingProxy::start_with(
        &registry.host(),
        ProxyOptions {
            manifests: Tamper::ReplaceBody(build_test_image("evil").manifest),
            ..ProxyOptions::passthrough()
        },
    );
    let err = client
        .fetch_manifest(&image(&format!("{}/app:v1", swapping.host())))
        .await
        .unwrap_err();
    assert!(
        matches!(err, RegistryError::DigestMismatch { .. }),
        "swapped: {err:?}"
    );
}

#[tokio::test]
async fn catalog_follows_link_pagination() {
    let registry = Registry::start();
    let repos = ["r1", "r2", "r3", "r4", "r5"];
    for repo in repos {
        registry.push_test_image(repo, "v1", repo).await;
    }
    let proxy = CorruptingProxy::recording(&registry.host());
    let client = client();

    let catalog = client.catalog_paged(&proxy.host(), 2).await.unwrap();
    assert_eq!(catalog, repos);
    let pages = proxy.request_lines();
    assert_eq!(
        pages,
        [
            "GET /v2/_catalog?n=2",
            "GET /v2/_catalog?last=r2&n=2",
            "GET /v2/_catalog?last=r4&n=2",
        ],
        "5 repositories in pages of 2 take 3 requests"
    );
    assert_eq!(client.catalog(&registry.host()).await.unwrap(), repos);
}

#[tokio::test]
async fn tags_follow_pagination_with_and_without_link_headers() {
    let registry = Registry::start();
    let tags = ["a1", "a2", "b1", "b2", "c1", "c2", "d1"];
    for tag in tags {
        registry.push_test_image("paged/app", tag, tag).await;
    }
    let client = client();

    // distribution 2.8 ignores `n` and answers every tag, unsorted: the client must cope.
    let mut all = client
        .list_tags_paged(&image(&format!("{}/paged/app", registry.host())), 3)
        .await
        .unwrap();
    all.sort();
    assert_eq!(all, tags);

    for mode in [TagPages::WithLink, TagPages::WithoutLink] {
        let proxy = CorruptingProxy::start_with(
            &registry.host(),
            ProxyOptions {
                tag_pages: mode,
                ..ProxyOptions::passthrough()
            },
        );
        let listed = client
            .list_tags_paged(&image(&format!("{}/paged/app", proxy.host())), 3)
            .await
            .unwrap();
        assert_eq!(listed, tags, "{mode:?}");
        // a1 a2 b1 | b2 c1 c2 | d1
        assert_eq!(
            proxy.request_lines(),
            [
                "GET /v2/paged/app/tags/list?n=3",
                "GET /v2/paged/app/tags/list?n=3&last=b1",
                "GET /v2/paged/app/tags/list?n=3&last=c2",
            ],
            "{mode:?}"
        );
    }

    let err = client
        .list_tags(&image(&format!("{}/ghost", registry.host())))
        .await
        .unwrap_err();
    assert!(err.is_not_found(), "{err}");
}

#[tokio::test]
async fn without_docker_content_digest_the_digest_is_computed_from_the_body() {
    let registry = Registry::start();
    let digest = registry.push_test_image("app", "v1", "seed").await;
    let proxy = CorruptingProxy::start_with(
        &registry.host(),
        ProxyOptions {
            strip_digest_header: true,
            ..ProxyOptions::passthrough()
        },
    );
    let client = client();
    let reference = image(&format!("{}/app:v1", proxy.host()));
    assert_eq!(client.resolve_digest(&reference).await.unwrap(), digest);
    assert_eq!(
        proxy.request_lines(),
        ["HEAD /v2/app/manifests/v1", "GET /v2/app/manifests/v1"],
        "one HEAD, then a GET because the HEAD named no digest"
    );
    let pinned = image(&format!("{}/app@{digest}", proxy.host()));
    assert_eq!(client.resolve_digest(&pinned).await.unwrap(), digest);

    // Without the header, a tampered body is still caught when the digest is known.
    let tampering = CorruptingProxy::start_with(
        &registry.host(),
        ProxyOptions {
            manifests: Tamper::FlipByte,
            strip_digest_header: true,
            ..ProxyOptions::passthrough()
        },
    );
    let err = client
        .resolve_digest(&image(&format!("{}/app@{digest}", tampering.host())))
        .await
        .unwrap_err();
    assert!(
        matches!(err, RegistryError::DigestMismatch { .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_restarted_registry_keeps_its_content() {
    let mut registry = Registry::start();
    let digest = registry.push_test_image("app", "v1", "seed").await;
    let host = registry.host();
    registry.restart();
    assert_eq!(registry.host(), host);
    assert_eq!(
        client()
            .resolve_digest(&image(&format!("{host}/app:v1")))
            .await
            .unwrap(),
        digest
    );
}

#[tokio::test]
async fn the_registry_posts_notifications_with_the_bearer_token() {
    let receiver = StatusServer::start(200, "{}");
    let registry = Registry::start_with_notifications(&receiver.url(), "notify-token");
    let digest = push_test_image(&registry.host(), "events/app", "v1", "seed").await;

    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let push_event = loop {
        let found = receiver.requests().into_iter().find(|r| {
            String::from_utf8_lossy(&r.body).contains(&digest)
                && String::from_utf8_lossy(&r.body).contains("\"push\"")
        });
        if let Some(found) = found {
            break found;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no push event; registry log:\n{}",
            registry.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(push_event.method, "POST");
    assert_eq!(
        push_event.header("authorization"),
        Some("Bearer notify-token")
    );
    assert!(
        !receiver
            .requests()
            .iter()
            .any(|r| String::from_utf8_lossy(&r.body).contains("application/octet-stream")),
        "blob events must be filtered out"
    );
}
