//! The protocols the API server speaks to an admission webhook, negotiated by ALPN over real TLS:
//! for a webhook behind a Service it offers only `http/1.1` (Kubernetes 1.16 on, so that
//! concurrent admissions open several connections and spread over the webhook's pods); for a
//! webhook whose URL is `localhost` or a loopback address it also offers `h2` (1.30 on). signet
//! answers both, and the same review gets the same answer over either.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use reqwest::Version;
use serde_json::Value;
use signet::policy::NoMatch;
use support::webhook::{
    TestCa, TestWebhook, fixture, policy_state, settings, signed_registry, uid_of,
};

/// An HTTPS client trusting `ca` that offers exactly `alpn`, as the API server's client does.
fn client_offering(ca: &TestCa, alpn: &[&[u8]]) -> reqwest::Client {
    let mut tls = support::tls_client::client_config(Some(&ca.ca_pem));
    tls.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_1_1_as_the_api_server_calls_a_service_and_h2_as_it_calls_localhost() {
    let setup = signed_registry().await;
    let host = setup.host();
    let state = policy_state(&host, &setup.public_key_pem, NoMatch::Allow);
    let webhook = TestWebhook::start(state, settings(Duration::from_secs(8)), None).await;
    let body = fixture(
        "pod-create.json",
        &host,
        Some(&setup.digest("prod/sidecar")),
    );
    let mut answers = Vec::new();
    for (alpn, version) in [
        (&[b"http/1.1".as_slice()][..], Version::HTTP_11),
        (
            &[b"h2".as_slice(), b"http/1.1".as_slice()][..],
            Version::HTTP_2,
        ),
    ] {
        let client = client_offering(&webhook.ca, alpn);
        // Several admissions on the one client: kept-alive HTTP/1.1, or streams of one h2
        // connection.
        for _ in 0..3 {
            let response = client
                .post(webhook.url("/validate"))
                .header("Content-Type", "application/json")
                .body(body.clone())
                .send()
                .await
                .unwrap();
            assert_eq!(response.version(), version, "offered {alpn:?}");
            assert_eq!(response.status(), 200);
            let review: Value = response.json().await.unwrap();
            assert_eq!(review["response"]["uid"], uid_of(&body));
            assert_eq!(review["response"]["allowed"], true, "{review}");
            answers.push(review);
        }
    }
    assert!(answers.windows(2).all(|pair| pair[0] == pair[1]));
}
