//! The registry client against servers that fail or are hostile (the harness's fault servers):
//! a closed port, a server that never answers, a 500, an oversized manifest, throttling with
//! Retry-After, and (review item 9) token realms and redirects to other hosts or the metadata
//! address. What a user sees when a registry misbehaves: an error that says what happened, never
//! another host's answer.

// Helpers outside `#[test]` functions fail by panicking, as tests do (clippy.toml covers only
// `#[test]` code).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use signet::registry::{DockerConfig, RegistryClient, RegistryError, RegistryOptions};
use support::registry_client::{client, client_with, image};
use support::{Answer, BlackHole, StatusServer, closed_port};

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

/// The error `client` gives resolving `prod/app:v1` on `server`, as text.
async fn resolve_error(client: &RegistryClient, server: &StatusServer) -> String {
    client
        .resolve_digest(&image(&format!("{}/prod/app:v1", server.host())))
        .await
        .unwrap_err()
        .to_string()
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
    let err = resolve_error(&client(), &evil).await;
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
    let err = resolve_error(&client, &evil).await;
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
    let err = resolve_error(&client(), &evil).await;
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
