//! `signet webhook` driven over real TLS with AdmissionReview v1 bodies as the API server sends
//! them (tests/fixtures/admission), against Debian's `docker-registry` holding signed and
//! unsigned images. Kubernetes API paths (pull secrets, events) run against a mocked API server.

// Helpers outside `#[test]` functions fail by panicking, as tests do (clippy.toml covers only
// `#[test]` code).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use serde_json::{Value, json};
use signet::admission::DecisionSettings;
use signet::controller::policy_channel;
use signet::policy::{EngineOptions, NoMatch};

use support::kube_api::MockApi;
use support::webhook::{
    SignedRegistry, TestCa, TestWebhook, decoded_patch, fixture, metric, policy_state,
    policy_state_simple, settings, signed_registry, uid_of,
};
use support::{CorruptingProxy, ProxyAuth};

const DEADLINE: Duration = Duration::from_secs(8);

async fn webhook_for(setup: &SignedRegistry, no_match: NoMatch) -> TestWebhook {
    let state = policy_state(&setup.host(), &setup.public_key_pem, no_match);
    TestWebhook::start(state, settings(DEADLINE), None).await
}

/// What one fixture must get from `/validate`.
struct Expect {
    fixture: &'static str,
    allowed: bool,
    /// `None`: the request is not checked at all (no audit annotations).
    result: Option<&'static str>,
    warning: Option<&'static str>,
}

const EXPECTED: &[Expect] = &[
    Expect {
        fixture: "pod-create.json",
        allowed: true,
        result: Some("allowed"),
        warning: None,
    },
    Expect {
        fixture: "pod-create-generatename.json",
        allowed: true,
        result: Some("allowed"),
        warning: None,
    },
    Expect {
        fixture: "pod-create-dryrun.json",
        allowed: true,
        result: Some("allowed"),
        warning: None,
    },
    Expect {
        fixture: "pod-create-breakglass.json",
        allowed: true,
        result: Some("breakglass"),
        warning: Some("breakglass"),
    },
    Expect {
        fixture: "pod-update.json",
        allowed: false,
        result: Some("denied"),
        warning: None,
    },
    Expect {
        fixture: "pod-ephemeralcontainers.json",
        allowed: true,
        result: Some("allowed"),
        warning: None,
    },
    Expect {
        fixture: "pod-update-status.json",
        allowed: true,
        result: None,
        warning: None,
    },
    Expect {
        fixture: "pod-delete.json",
        allowed: true,
        result: None,
        warning: None,
    },
    Expect {
        fixture: "configmap-create.json",
        allowed: true,
        result: None,
        warning: None,
    },
    Expect {
        fixture: "deployment-create.json",
        allowed: true,
        result: Some("allowed"),
        warning: None,
    },
    Expect {
        fixture: "deployment-update.json",
        allowed: true,
        result: Some("allowed"),
        warning: None,
    },
    Expect {
        fixture: "replicaset-create.json",
        allowed: true,
        result: Some("allowed"),
        warning: None,
    },
    Expect {
        fixture: "statefulset-create.json",
        allowed: true,
        result: Some("allowed"),
        warning: None,
    },
    Expect {
        fixture: "daemonset-create.json",
        allowed: true,
        result: Some("allowed"),
        warning: None,
    },
    Expect {
        fixture: "job-create.json",
        allowed: true,
        result: Some("allowed"),
        warning: None,
    },
    Expect {
        fixture: "cronjob-create.json",
        allowed: true,
        result: Some("allowed"),
        warning: None,
    },
    Expect {
        fixture: "cronjob-update.json",
        allowed: true,
        result: Some("allowed"),
        warning: None,
    },
    Expect {
        fixture: "podtemplate-create.json",
        allowed: true,
        result: Some("allowed"),
        warning: None,
    },
    Expect {
        fixture: "replicationcontroller-create.json",
        allowed: true,
        result: Some("dryrun"),
        warning: Some("DryRun, not enforced"),
    },
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fixture_gets_its_answer() {
    let setup = signed_registry().await;
    let host = setup.host();
    let sidecar = setup.digest("prod/sidecar");
    let webhook = webhook_for(&setup, NoMatch::Allow).await;

    let mut fixtures: Vec<String> = std::fs::read_dir(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/admission"
    ))
    .expect("fixtures")
    .filter_map(|e| e.ok()?.file_name().into_string().ok())
    .collect();
    fixtures.sort();
    for name in &fixtures {
        assert!(
            EXPECTED.iter().any(|e| e.fixture == name),
            "fixture {name} has no expectation"
        );
    }

    for expect in EXPECTED {
        let body = fixture(expect.fixture, &host, Some(&sidecar));
        let response = webhook.review("/validate", body.clone()).await;
        let context = format!("{}: {response}", expect.fixture);
        assert_eq!(response["uid"], uid_of(&body), "{context}");
        assert_eq!(response["allowed"], expect.allowed, "{context}");
        assert_eq!(
            response["auditAnnotations"]["result"].as_str(),
            expect.result,
            "{context}"
        );
        match expect.warning {
            Some(text) => assert!(
                response["warnings"].as_array().is_some_and(|w| w
                    .iter()
                    .any(|w| w.as_str().is_some_and(|w| w.contains(text)))),
                "{context}"
            ),
            None => assert!(response.get("warnings").is_none(), "{context}"),
        }
        if expect.allowed {
            assert!(response.get("status").is_none(), "{context}");
            assert!(response.get("patch").is_none(), "{context}");
        }
    }

    // The denial names the image, its digest, the policy, the attestor and the key.
    let response = webhook
        .review("/validate", fixture("pod-update.json", &host, None))
        .await;
    let digest = setup.digest("prod/app:v1.1");
    assert_eq!(response["status"]["code"], 403);
    assert_eq!(
        response["status"]["message"],
        format!(
            "{host}/prod/app:v1.1 ({digest}): policy prod-images: 0 of 1 required attestors: \
             release: no signature"
        )
    );

    // Breakglass: the reason is in the warning and the audit annotations.
    let response = webhook
        .review(
            "/validate",
            fixture("pod-create-breakglass.json", &host, None),
        )
        .await;
    assert_eq!(
        response["auditAnnotations"]["breakglass-reason"],
        "INC-1234 hotfix"
    );

    // Allowed requests record which digests were verified.
    let response = webhook
        .review("/validate", fixture("pod-create.json", &host, None))
        .await;
    let verified = response["auditAnnotations"]["verified-images"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        verified.contains(&format!(
            "{host}/prod/app:v1@{}",
            setup.digest("prod/app:v1")
        )),
        "{verified}"
    );

    let metrics = webhook.metrics().await;
    assert!(
        metric(
            &metrics,
            "signet_webhook_admissions_total{endpoint=\"validate\",result=\"denied\"}"
        ) >= 2.0,
        "{metrics}"
    );
    assert!(
        metric(
            &metrics,
            "signet_webhook_admissions_total{endpoint=\"validate\",result=\"breakglass\"}"
        ) >= 1.0,
        "{metrics}"
    );
    assert!(
        metric(
            &metrics,
            "signet_webhook_admissions_total{endpoint=\"validate\",result=\"dry_run\"}"
        ) >= 1.0,
        "{metrics}"
    );
    assert!(
        metric(
            &metrics,
            "signet_webhook_cache_hits_total{cache=\"verdict\"}"
        ) >= 1.0,
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denial_lists_every_failing_image() {
    let setup = signed_registry().await;
    let host = setup.host();
    let webhook = webhook_for(&setup, NoMatch::Allow).await;
    let body = String::from_utf8(fixture("pod-create.json", &host, None))
        .expect("UTF-8")
        .replace(
            &format!("{host}/prod/migrate:v3"),
            &format!("{host}/prod/missing:v0"),
        )
        .replace(
            &format!("\"{host}/prod/app:v1\""),
            &format!("\"{host}/prod/app:v1.1\""),
        );
    let response = webhook.review("/validate", body.into_bytes()).await;
    assert_eq!(response["allowed"], false, "{response}");
    let message = response["status"]["message"].as_str().unwrap_or_default();
    let lines: Vec<&str> = message.lines().collect();
    assert_eq!(lines.len(), 2, "{message}");
    assert!(
        message.contains(&format!(
            "{host}/prod/app:v1.1 ({}): policy prod-images",
            setup.digest("prod/app:v1.1")
        )),
        "{message}"
    );
    assert!(
        message.contains(&format!("{host}/prod/missing:v0 (digest unknown): policy prod-images: 0 of 1 required attestors: registry lookup failed: registry {host}")),
        "{message}"
    );
    assert!(message.contains("not found"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_match_deny_exempt_namespaces_and_breakglass_switch() {
    let setup = signed_registry().await;
    let host = setup.host();

    // --no-match=deny: Docker Hub images no policy names are denied, without a registry call.
    let webhook = webhook_for(&setup, NoMatch::Deny).await;
    let response = webhook
        .review("/validate", fixture("pod-create.json", &host, None))
        .await;
    assert_eq!(response["allowed"], false, "{response}");
    assert_eq!(
        response["status"]["message"],
        "docker.io/library/nginx:1.25 (digest unknown): no policy matches"
    );

    // Exempt namespace: unsigned images in `shop` pass untouched.
    let state = policy_state(&host, &setup.public_key_pem, NoMatch::Allow);
    let exempt = DecisionSettings {
        exempt_namespaces: vec!["kube-system".into(), "shop".into()],
        ..settings(DEADLINE)
    };
    let webhook = TestWebhook::start(state, exempt, None).await;
    let response = webhook
        .review("/validate", fixture("pod-update.json", &host, None))
        .await;
    assert_eq!(response["allowed"], true, "{response}");
    assert_eq!(response["auditAnnotations"]["result"], "exempt-namespace");

    // --breakglass=false: the annotation is ignored, with a warning saying so.
    let state = policy_state(&host, &setup.public_key_pem, NoMatch::Allow);
    let no_breakglass = DecisionSettings {
        breakglass: false,
        ..settings(DEADLINE)
    };
    let webhook = TestWebhook::start(state, no_breakglass, None).await;
    let response = webhook
        .review(
            "/validate",
            fixture("pod-create-breakglass.json", &host, None),
        )
        .await;
    assert_eq!(response["allowed"], false, "{response}");
    assert!(
        response["warnings"][0]
            .as_str()
            .is_some_and(|w| w.contains("breakglass is disabled")),
        "{response}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutate_pins_verified_images_only() {
    let setup = signed_registry().await;
    let host = setup.host();
    let sidecar = setup.digest("prod/sidecar");
    let webhook = webhook_for(&setup, NoMatch::Allow).await;

    let body = fixture("pod-create.json", &host, None);
    let response = webhook.review("/mutate", body.clone()).await;
    assert_eq!(response["uid"], uid_of(&body));
    assert_eq!(response["allowed"], true);
    // nginx matches no policy: not verified, so not pinned.
    assert_eq!(
        decoded_patch(&response),
        json!([
            {"op": "replace", "path": "/spec/containers/0/image",
             "value": format!("{host}/prod/app:v1@{}", setup.digest("prod/app:v1"))},
            {"op": "replace", "path": "/spec/initContainers/0/image",
             "value": format!("{host}/prod/migrate:v3@{}", setup.digest("prod/migrate:v3"))},
        ])
    );

    // A Deployment: the already pinned sidecar is left alone.
    let response = webhook
        .review(
            "/mutate",
            fixture("deployment-create.json", &host, Some(&sidecar)),
        )
        .await;
    assert_eq!(
        decoded_patch(&response),
        json!([{"op": "replace", "path": "/spec/template/spec/containers/0/image",
                "value": format!("{host}/prod/web:v2@{}", setup.digest("prod/web:v2"))}])
    );

    // Unsigned: /mutate allows (the verdict is /validate's) and pins nothing.
    let response = webhook
        .review("/mutate", fixture("pod-update.json", &host, None))
        .await;
    assert_eq!(response["allowed"], true, "{response}");
    assert!(response.get("patch").is_none(), "{response}");
    assert!(response.get("patchType").is_none(), "{response}");

    // --mutate=false: no patch at all.
    let state = policy_state(&host, &setup.public_key_pem, NoMatch::Allow);
    let off = DecisionSettings {
        mutate: false,
        ..settings(DEADLINE)
    };
    let webhook = TestWebhook::start(state, off, None).await;
    let response = webhook
        .review("/mutate", fixture("pod-create.json", &host, None))
        .await;
    assert_eq!(response["allowed"], true);
    assert!(response.get("patch").is_none(), "{response}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_get_a_clear_error_and_the_server_keeps_serving() {
    let (_publisher, state) = policy_channel(EngineOptions::default());
    let webhook = TestWebhook::start(state, settings(DEADLINE), None).await;

    let (status, body) = webhook.post("/validate", b"{not json".to_vec()).await;
    assert_eq!(status, 400);
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("request body is not JSON")),
        "{body}"
    );

    let mut v1beta1: Value =
        serde_json::from_slice(&fixture("pod-create.json", "127.0.0.1:1", None)).expect("JSON");
    v1beta1["apiVersion"] = json!("admission.k8s.io/v1beta1");
    let (status, body) = webhook
        .post("/validate", serde_json::to_vec(&v1beta1).expect("JSON"))
        .await;
    assert_eq!(status, 400);
    assert_eq!(
        body["error"],
        "AdmissionReview apiVersion \"admission.k8s.io/v1beta1\" is not supported: send admission.k8s.io/v1"
    );

    let (status, body) = webhook
        .post(
            "/mutate",
            br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#.to_vec(),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "AdmissionReview has no request");

    let (status, body) = webhook
        .post("/validate", br#"{"apiVersion":"v1","kind":"Pod"}"#.to_vec())
        .await;
    assert_eq!(status, 400);
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("not an AdmissionReview")),
        "{body}"
    );

    let huge = vec![b' '; 10 * 1024 * 1024];
    let (status, body) = webhook.post("/validate", huge).await;
    assert_eq!(status, 413);
    assert_eq!(
        body["error"],
        "request body is larger than the 3145728-byte limit"
    );

    // The admission endpoints take POST only; other paths are not found.
    let (status, _) = webhook.get("/validate").await;
    assert_eq!(status, 405);
    let (status, _) = webhook.get("/mutate").await;
    assert_eq!(status, 405);
    let (status, _) = webhook.get("/admit").await;
    assert_eq!(status, 404);

    let (status, _) = webhook.get("/healthz").await;
    assert_eq!(status, 200);
    // Not ready: the policy channel was never published to.
    let (status, _) = webhook.get("/readyz").await;
    assert_eq!(status, 503);
    let metrics = webhook.metrics().await;
    assert!(
        metric(
            &metrics,
            "signet_webhook_admissions_total{endpoint=\"validate\",result=\"error\"}"
        ) >= 3.0,
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_files_are_reloaded_without_restart() {
    let (_publisher, state) = policy_channel(EngineOptions::default());
    let webhook = TestWebhook::start(state, settings(DEADLINE), None).await;
    let (status, _) = webhook.get("/healthz").await;
    assert_eq!(status, 200);

    let second = TestCa::new("second");
    let url = webhook.url("/healthz");
    assert!(
        second.client().get(&url).send().await.is_err(),
        "a client trusting only the second CA must fail before the rotation"
    );
    second.write(webhook.tls_dir.path());
    let mut rotated = false;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if second.client().get(&url).send().await.is_ok() {
            rotated = true;
            break;
        }
    }
    assert!(rotated, "new connections never got the new certificate");
    assert!(
        webhook.ca.client().get(&url).send().await.is_err(),
        "new connections must no longer get the old certificate"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identical_cold_admissions_share_one_set_of_registry_lookups() {
    let setup = signed_registry().await;
    let proxy = CorruptingProxy::recording(&setup.host());
    let host = proxy.host();
    // The policy names the proxy's host, which serves the registry's content; the signatures
    // name the registry's own host, so the policy binds digests only (Simple).
    let state = policy_state_simple(&host, &setup.public_key_pem);
    let webhook = Arc::new(TestWebhook::start(state, settings(DEADLINE), None).await);
    let body = fixture("pod-create.json", &host, None);
    let answers = futures::future::join_all((0..100).map(|_| {
        let webhook = Arc::clone(&webhook);
        let body = body.clone();
        async move { webhook.review("/validate", body).await }
    }))
    .await;
    for response in &answers {
        assert_eq!(response["allowed"], true, "{response}");
    }
    // Two governed images (nginx is not): per image one GET of the tag, the .sig manifest
    // and its one payload blob. The .sig satisfies the policy, so the referrers are not read
    // (a staged read). Each once.
    let lines = proxy.request_lines();
    assert_eq!(lines.len(), 6, "{lines:#?}");
    let distinct: std::collections::BTreeSet<&String> = lines.iter().collect();
    assert_eq!(distinct.len(), lines.len(), "{lines:#?}");
}

fn docker_secret(name: &str, registry: &str, user: &str, password: &str) -> Value {
    let config = json!({"auths": {registry: {"username": user, "password": password}}});
    let data = base64::engine::general_purpose::STANDARD.encode(config.to_string());
    json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": "shop"},
           "type": "kubernetes.io/dockerconfigjson", "data": {".dockerconfigjson": data}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_secrets_of_the_pod_and_its_service_account_are_used() {
    let setup = signed_registry().await;
    let proxy = CorruptingProxy::authenticating(
        &setup.host(),
        ProxyAuth::Basic {
            username: "puller".into(),
            password: "s3cret".into(),
        },
    );
    let host = proxy.host();
    let objects = BTreeMap::from([
        (
            "GET /api/v1/namespaces/shop/serviceaccounts/app-runner".to_string(),
            json!({"apiVersion": "v1", "kind": "ServiceAccount",
                   "metadata": {"name": "app-runner", "namespace": "shop"},
                   "imagePullSecrets": [{"name": "sa-cred"}]}),
        ),
        // The pod's own secret is for another registry; the service account's is the right one.
        (
            "GET /api/v1/namespaces/shop/secrets/regcred".to_string(),
            docker_secret("regcred", "other.example", "x", "y"),
        ),
        (
            "GET /api/v1/namespaces/shop/secrets/sa-cred".to_string(),
            docker_secret("sa-cred", &host, "puller", "s3cret"),
        ),
    ]);

    // Without the API, the registry refuses the webhook.
    let state = policy_state_simple(&host, &setup.public_key_pem);
    let webhook = TestWebhook::start(state, settings(DEADLINE), None).await;
    let response = webhook
        .review("/validate", fixture("pod-create.json", &host, None))
        .await;
    assert_eq!(response["allowed"], false, "{response}");
    assert!(
        response["status"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("refused access")),
        "{response}"
    );

    let (client, api) = MockApi::start(objects);
    let state = policy_state_simple(&host, &setup.public_key_pem);
    let webhook = TestWebhook::start(state, settings(DEADLINE), Some(client)).await;
    let response = webhook
        .review("/validate", fixture("pod-create.json", &host, None))
        .await;
    assert_eq!(response["allowed"], true, "{response}");
    let lines = api.lines();
    for wanted in [
        "GET /api/v1/namespaces/shop/serviceaccounts/app-runner",
        "GET /api/v1/namespaces/shop/secrets/regcred",
        "GET /api/v1/namespaces/shop/secrets/sa-cred",
    ] {
        assert!(
            lines.iter().any(|l| l == wanted),
            "{wanted} not in {lines:#?}"
        );
    }
    assert!(
        proxy.requests().iter().any(|r| r
            .header("authorization")
            .is_some_and(|a| a.starts_with("Basic "))),
        "the registry never saw the credentials"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn denials_post_one_rate_limited_event_and_dry_run_requests_none() {
    let setup = signed_registry().await;
    let host = setup.host();
    let (client, api) = MockApi::start(BTreeMap::new());
    let state = policy_state(&host, &setup.public_key_pem, NoMatch::Allow);
    let webhook = TestWebhook::start(state, settings(DEADLINE), Some(client)).await;

    for _ in 0..3 {
        let response = webhook
            .review("/validate", fixture("pod-update.json", &host, None))
            .await;
        assert_eq!(response["allowed"], false, "{response}");
    }
    // `kubectl --dry-run=server` of a signed pod: allowed, and no event either way.
    let response = webhook
        .review("/validate", fixture("pod-create-dryrun.json", &host, None))
        .await;
    assert_eq!(response["allowed"], true);
    for _ in 0..50 {
        if !api.posted("POST /apis/events.k8s.io/v1/").is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Give a wrongly posted second event the time to show up.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let events = api.posted("POST /apis/events.k8s.io/v1/namespaces/");
    assert_eq!(events.len(), 1, "{events:#?}");
    let event = &events[0];
    assert_eq!(event["reason"], "FailedAdmission");
    assert_eq!(event["type"], "Warning");
    assert_eq!(event["regarding"]["kind"], "Pod");
    assert_eq!(event["regarding"]["namespace"], "shop");
    assert!(
        event["note"]
            .as_str()
            .is_some_and(|n| n.contains(&format!("{host}/prod/app:v1.1"))),
        "{event}"
    );
    let metrics = webhook.metrics().await;
    assert_eq!(
        metric(&metrics, "signet_webhook_events_suppressed_total"),
        2.0,
        "{metrics}"
    );
}
