//! The registry client authenticating to a real `docker-registry` behind the harness's
//! authenticating proxy: HTTP Basic, Bearer tokens fetched per credential (imagePullSecrets
//! included), identity and registry tokens from a docker config, anonymous tokens for public
//! repositories; a refused login never shows the password.

// Helpers outside `#[test]` functions fail by panicking, as tests do (clippy.toml covers only
// `#[test]` code).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use signet::registry::{Credential, DockerConfig, RegistryError};
use support::registry_client::{client, client_with, image};
use support::{CorruptingProxy, ProxyAuth, Registry};

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
