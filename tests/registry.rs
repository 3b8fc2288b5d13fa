//! The registry client against a real `docker-registry` (Debian package `docker-registry`), and
//! against the harness's proxies and fault servers.

// Helpers outside `#[test]` functions fail by panicking, as tests do (clippy.toml covers only
// `#[test]` code).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use signet::reference::ImageRef;
use signet::registry::{
    Credential, DockerConfig, OCI_MANIFEST_MEDIA_TYPE, RegistryClient, RegistryError,
    RegistryOptions, sha256_digest,
};
use support::{
    Answer, BlackHole, CorruptingProxy, ProxyAuth, ProxyOptions, Registry, StatusServer, TagPages,
    Tamper, build_test_image, closed_port, push_test_image,
};

fn client() -> RegistryClient {
    client_with(DockerConfig::new(), Duration::from_secs(5))
}

fn client_with(credentials: DockerConfig, timeout: Duration) -> RegistryClient {
    let options = RegistryOptions {
        timeout,
        ..RegistryOptions::default()
    };
    RegistryClient::with_config(&options, credentials).expect("registry client")
}

fn image(text: &str) -> ImageRef {
    ImageRef::parse(text).expect("image reference")
}

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
async fn a_closed_port_is_unreachable_with_connection_refused() {
    let host = format!("127.0.0.1:{}", closed_port());
    let err = client()
        .resolve_digest(&image(&format!("{host}/app:v1")))
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::Unreachable { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!("registry {host} is unreachable: connection refused")
    );
}

#[tokio::test]
async fn a_registry_that_never_answers_times_out() {
    let hole = BlackHole::start();
    let started = std::time::Instant::now();
    let err = client_with(DockerConfig::new(), Duration::from_millis(500))
        .resolve_digest(&image(&format!("{}/app:v1", hole.host())))
        .await
        .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(
        err.to_string(),
        format!(
            "registry {} is unreachable: no answer within 500ms",
            hole.host()
        )
    );
}

#[tokio::test]
async fn a_server_error_names_the_status_and_the_body() {
    let server = StatusServer::internal_error();
    let err = client()
        .fetch_manifest(&image(&format!("{}/app:v1", server.host())))
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::BadResponse { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains(&server.host())
            && text.contains("HTTP 500")
            && text.contains("simulated failure"),
        "{text}"
    );
    let accept = server.requests()[0]
        .header("accept")
        .unwrap_or_default()
        .to_string();
    for media_type in signet::registry::MANIFEST_MEDIA_TYPES {
        assert!(
            accept.contains(media_type),
            "Accept {accept:?} lacks {media_type}"
        );
    }
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
async fn basic_authentication_uses_configured_credentials() {
    let registry = Registry::start();
    let digest = registry.push_test_image("private/app", "v1", "seed").await;
    let proxy = CorruptingProxy::authenticating(
        &registry.host(),
        ProxyAuth::Basic {
            username: "alice".into(),
            password: "s3cret".into(),
        },
    );
    let reference = image(&format!("{}/private/app:v1", proxy.host()));

    let err = client().resolve_digest(&reference).await.unwrap_err();
    assert!(matches!(err, RegistryError::Unauthorized { .. }), "{err:?}");
    assert!(err.to_string().contains("pull of private/app"), "{err}");

    let mut config = DockerConfig::new();
    config.insert(
        &proxy.host(),
        Credential::Basic {
            username: "alice".into(),
            password: "s3cret".into(),
        },
    );
    let authed = client_with(config, Duration::from_secs(5));
    assert_eq!(authed.resolve_digest(&reference).await.unwrap(), digest);

    let mut wrong = DockerConfig::new();
    wrong.insert(
        &proxy.host(),
        Credential::Basic {
            username: "alice".into(),
            password: "wrong-password".into(),
        },
    );
    let err = client_with(wrong, Duration::from_secs(5))
        .resolve_digest(&reference)
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::Unauthorized { .. }), "{err:?}");
    assert!(!err.to_string().contains("wrong-password"), "{err}");
}

#[tokio::test]
async fn bearer_tokens_are_fetched_per_credential() {
    let registry = Registry::start();
    let digest = registry.push_test_image("private/app", "v1", "seed").await;
    let proxy = CorruptingProxy::authenticating(
        &registry.host(),
        ProxyAuth::Bearer {
            credentials: Some(("bob".into(), "pw".into())),
            refresh_token: None,
        },
    );
    let reference = image(&format!("{}/private/app:v1", proxy.host()));
    let base = client();

    let err = base.resolve_digest(&reference).await.unwrap_err();
    assert!(matches!(err, RegistryError::Unauthorized { .. }), "{err:?}");
    assert!(
        err.to_string().contains(
            "refused access to pull of private/app: token service refused anonymous access"
        ),
        "{err}"
    );

    // Per-request credentials (imagePullSecrets) on the same client.
    let mut secret = DockerConfig::new();
    secret.insert(
        &format!("http://{}", proxy.host()),
        Credential::Basic {
            username: "bob".into(),
            password: "pw".into(),
        },
    );
    let with_secret = base.with_credentials(&secret);
    assert_eq!(
        with_secret.resolve_digest(&reference).await.unwrap(),
        digest
    );
    let manifest = with_secret
        .fetch_manifest(&reference)
        .await
        .unwrap()
        .expect("manifest");
    assert_eq!(manifest.digest, digest);

    let token_requests: Vec<_> = proxy
        .requests()
        .into_iter()
        .filter(|r| r.target.starts_with("/token"))
        .collect();
    assert!(
        token_requests
            .iter()
            .any(|r| r.target.contains("scope=repository%3Aprivate%2Fapp%3Apull")),
        "{token_requests:?}"
    );
    // The anonymous attempt and the one with the secret each asked once; the second call of
    // the secret's client reused its token.
    assert_eq!(token_requests.len(), 2, "{token_requests:?}");

    // The token obtained with the secret does not serve the client without it.
    let err = base.resolve_digest(&reference).await.unwrap_err();
    assert!(matches!(err, RegistryError::Unauthorized { .. }), "{err:?}");

    // Pushes authenticate too (push scope), the upload Location included.
    let repo = image(&format!("{}/private/sigs", proxy.host()));
    let data = b"signature payload";
    let digest = with_secret.push_blob(&repo, data).await.unwrap();
    assert_eq!(
        with_secret.fetch_blob(&repo, &digest, 1024).await.unwrap(),
        data
    );
    assert!(
        proxy
            .requests()
            .iter()
            .any(|r| r.target.starts_with("/token")
                && r.target.contains("private%2Fsigs%3Apull%2Cpush")),
        "no push-scoped token request: {:?}",
        proxy.request_lines()
    );
}

#[tokio::test]
async fn identity_tokens_and_registry_tokens_from_docker_config() {
    let registry = Registry::start();
    let digest = registry.push_test_image("private/app", "v1", "seed").await;
    let proxy = CorruptingProxy::authenticating(
        &registry.host(),
        ProxyAuth::Bearer {
            credentials: None,
            refresh_token: Some("refresh-abc".into()),
        },
    );
    let reference = image(&format!("{}/private/app:v1", proxy.host()));
    let config_json = format!(
        r#"{{"auths":{{"{}":{{"auth":"PHRva2VuPjo=","identitytoken":"refresh-abc"}}}}}}"#,
        proxy.host()
    );
    let config = DockerConfig::from_json(config_json.as_bytes(), "test").unwrap();
    let resolved = client_with(config, Duration::from_secs(5))
        .resolve_digest(&reference)
        .await
        .unwrap();
    assert_eq!(resolved, digest);
    let refresh = proxy
        .requests()
        .into_iter()
        .find(|r| r.method == "POST" && r.target.starts_with("/token"))
        .expect("an OAuth2 refresh-token request");
    assert!(String::from_utf8_lossy(&refresh.body).contains("grant_type=refresh_token"));

    let mut bearer = DockerConfig::new();
    bearer.insert(
        &proxy.host(),
        Credential::RegistryToken {
            token: "test-token-7f3a".into(),
        },
    );
    let resolved = client_with(bearer, Duration::from_secs(5))
        .resolve_digest(&reference)
        .await
        .unwrap();
    assert_eq!(resolved, digest);
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
async fn manifests_over_4_mib_are_refused_with_or_without_content_length() {
    let big = vec![b' '; 5 * 1024 * 1024];
    let announced = Answer::new(200)
        .header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
        .body(big);
    let chunked = announced.clone().chunked();

    for (name, response) in [("Content-Length", announced), ("chunked", chunked)] {
        let server = StatusServer::answering(response);
        let err = client()
            .fetch_manifest(&image(&format!("{}/app:v1", server.host())))
            .await
            .unwrap_err();
        assert!(
            matches!(err, RegistryError::TooLarge { limit: 4194304, .. }),
            "{name}: {err:?}"
        );
    }
}

#[tokio::test]
async fn anonymous_bearer_tokens_work_for_public_repositories() {
    let registry = Registry::start();
    let digest = registry.push_test_image("library/app", "v1", "seed").await;
    let proxy = CorruptingProxy::authenticating(
        &registry.host(),
        ProxyAuth::Bearer {
            credentials: None,
            refresh_token: None,
        },
    );
    let resolved = client()
        .resolve_digest(&image(&format!("{}/library/app:v1", proxy.host())))
        .await
        .unwrap();
    assert_eq!(resolved, digest);
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

/// An answer with extra headers and a `text/plain` body.
fn text_answer(status: u16, headers: &[(&str, &str)], body: &str) -> Answer {
    headers
        .iter()
        .fold(Answer::new(status), |answer, (name, value)| {
            answer.header(name, value)
        })
        .header("Content-Type", "text/plain")
        .body(body)
}

/// Review item 9: a hostile registry's Bearer realm pointing at another host (here a cloud
/// metadata address) is refused before any request, in one line.
#[tokio::test]
async fn token_realm_on_another_host_is_refused() {
    let evil = StatusServer::answering(text_answer(
        401,
        &[(
            "WWW-Authenticate",
            r#"Bearer realm="https://169.254.169.254/latest/meta-data/iam",service="x""#,
        )],
        "",
    ));
    let err = client()
        .resolve_digest(&image(&format!("{}/prod/app:v1", evil.host())))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("token realm host 169.254.169.254 is not the registry's own host"),
        "{err}"
    );
    assert!(!err.contains('\n'), "{err}");
}

/// A realm on a configured other host may be asked, but its answer's body never reaches the
/// error (it would reach a denial): only the status does.
#[tokio::test]
async fn answers_of_other_hosts_are_not_reflected() {
    let secret = "SECRET-FROM-AN-INTERNAL-SERVICE";
    let token_service = StatusServer::answering(text_answer(403, &[], secret));
    let port = token_service.host().rsplit_once(':').unwrap().1.to_string();
    let evil = StatusServer::answering(text_answer(
        401,
        &[(
            "WWW-Authenticate",
            &format!(r#"Bearer realm="http://localhost:{port}/token""#),
        )],
        "",
    ));
    let options = RegistryOptions {
        timeout: Duration::from_secs(5),
        token_realm_hosts: vec!["localhost".into()],
        ..RegistryOptions::default()
    };
    let client = RegistryClient::with_config(&options, DockerConfig::new()).unwrap();
    let err = client
        .resolve_digest(&image(&format!("{}/prod/app:v1", evil.host())))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("HTTP 403") && !err.contains(secret), "{err}");
    assert_eq!(token_service.requests().len(), 1);

    // The same through a redirect: loopback to loopback is followed, the body is not shown.
    let internal = StatusServer::answering(text_answer(500, &[], secret));
    let location = format!(
        "http://localhost:{}/x",
        internal.host().rsplit_once(':').unwrap().1
    );
    let redirecting = StatusServer::answering(text_answer(302, &[("Location", &location)], ""));
    let err = client
        .fetch_manifest(&image(&format!("{}/prod/app:v1", redirecting.host())))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("500") && !err.contains(secret), "{err}");
    assert_eq!(internal.requests().len(), 1);
}

/// Review item 9: a redirect to a link-local address (the cloud metadata service) is refused
/// before connecting.
#[tokio::test]
async fn redirect_to_the_metadata_service_is_refused() {
    let evil = StatusServer::answering(text_answer(
        307,
        &[("Location", "http://169.254.169.254/latest/meta-data/")],
        "",
    ));
    let started = std::time::Instant::now();
    let err = client()
        .resolve_digest(&image(&format!("{}/prod/app:v1", evil.host())))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("redirect to 169.254.169.254 refused: a link-local address"),
        "{err}"
    );
    assert!(!err.contains('\n'), "{err}");
    // Refused without a connection attempt (which would wait for the 5 s timeout here).
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn throttled_requests_wait_as_retry_after_asks_then_report_the_429() {
    // A short Retry-After is honoured (twice), then the 429 is reported as rate limiting.
    let throttling = StatusServer::answering(
        Answer::new(429)
            .header("Retry-After", "1")
            .body(r#"{"errors":[{"code":"TOOMANYREQUESTS","message":"slow down"}]}"#),
    );
    let started = std::time::Instant::now();
    let err = client()
        .resolve_digest(&image(&format!("{}/app:v1", throttling.host())))
        .await
        .expect_err("a registry that always throttles");
    let waited = started.elapsed();
    assert!(matches!(err, RegistryError::RateLimited { .. }), "{err:?}");
    assert!(err.to_string().contains("HTTP 429"), "{err}");
    assert_eq!(
        throttling.requests().len(),
        3,
        "one request and two retries"
    );
    assert!(waited >= Duration::from_secs(2), "{waited:?}");

    // A long Retry-After is not waited for: the 429 comes back at once.
    let long = StatusServer::answering(Answer::new(429).header("Retry-After", "3600"));
    let started = std::time::Instant::now();
    let err = client()
        .resolve_digest(&image(&format!("{}/app:v1", long.host())))
        .await
        .expect_err("throttled");
    assert!(matches!(err, RegistryError::RateLimited { .. }), "{err:?}");
    assert_eq!(long.requests().len(), 1);
    assert!(started.elapsed() < Duration::from_secs(2));
}
