//! Alibaba Cloud KMS keys (`alikms://`) against a local KMS endpoint (no emulator of Alibaba
//! Cloud KMS exists: `tests/support/kms/alikms_server.py`, real keys, every request's
//! ACS3-HMAC-SHA256 signature recomputed by the official Alibaba Cloud Python SDK's signing code):
//! `signet public-key`, `signet sign` and `signet verify` (with the key, and with a policy folder as
//! admission judges, and at admission by the webhook over TLS) with RSA-PSS, RSA PKCS#1 and
//! ECDSA keys,
//! credentials from the environment, from RRSA (AssumeRoleWithOIDC) and from the ECS instance RAM
//! role (a local, mocked metadata service in token mode; refreshed before expiry), throttling
//! retried; a
//! SigningRule served by `signet signer`; and every way a key can be unusable: one line, exit 2,
//! nothing pushed. What this cannot show: the cloud's own answers beyond its API reference.

// Helpers outside `#[test]` functions fail by panicking, as tests do.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::{Duration, Instant};

use signet::crypto::Algorithm;
use signet::signature::SignatureType;
use support::Registry;
use support::alikms::{AliKms, OIDC_PROVIDER_ARN, ROLE_ARN};
use support::kms_cli::{
    CloudEnv, admission_policies, admission_webhook, admitted,
    assert_unusable_rules_stop_the_signer, judge, kms_calls, kms_rule, public_key,
    push_signed_and_verified, signet, start_signer, wait_listening,
};
use support::metadata::{Cloud, Handed, MetadataServer};
use support::signer::{TOKEN, policy_dir, signature_count, signet_verify, wait_for_signatures};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kms_keys_sign_images_that_verify_and_unusable_keys_push_nothing() {
    let kms = AliKms::start();
    let registry = Registry::start();
    let dir = tempfile::tempdir().unwrap();
    let env = kms.env();
    let token_file = dir.path().join("oidc-token");
    std::fs::write(&token_file, format!("{}\n", kms.oidc_token)).unwrap();
    let rrsa = |token_file: &std::path::Path| {
        vec![
            ("ALIBABA_CLOUD_ROLE_ARN", ROLE_ARN.to_string()),
            (
                "ALIBABA_CLOUD_OIDC_PROVIDER_ARN",
                OIDC_PROVIDER_ARN.to_string(),
            ),
            (
                "ALIBABA_CLOUD_OIDC_TOKEN_FILE",
                token_file.display().to_string(),
            ),
            ("ALIBABA_CLOUD_STS_ENDPOINT", kms.endpoint()),
        ]
    };
    let rrsa_env = rrsa(&token_file);

    let signing = [
        ("key-rsa", "RSA_PSS_SHA_256", &env),
        ("key-rsa", "RSA_PKCS1_SHA_256", &env),
        // No primary version: the key's only version is found with ListKeyVersions.
        ("key-ec", "ECDSA_P256_SHA_256", &env),
        // Temporary credentials from RRSA, sent with their security token.
        ("key-ec", "ECDSA_P256_SHA_256", &rrsa_env),
        // Throttled twice, then signs: the retries stay within the call's budget.
        ("key-busy", "ECDSA_P256_SHA_256", &env),
        ("key-two/v-two-2", "ECDSA_P256_SHA_256", &env),
    ];
    let mut signed = Vec::new();
    for (i, (key, algorithm, env)) in signing.into_iter().enumerate() {
        let reference = kms.reference(key);
        let public = public_key(
            env,
            &reference,
            algorithm,
            &dir.path().join(format!("{i}.pub")),
        );
        let repo = format!("alikms/app-{i}");
        registry.push_test_image(&repo, "v1", &repo).await;
        let image = format!("{}/{repo}:v1", registry.host());
        let (code, stdout, stderr) = signet(
            env,
            &[
                "sign",
                &image,
                "--key",
                &reference,
                "--algorithm",
                algorithm,
            ],
        );
        assert_eq!(code, 0, "sign with {reference} {algorithm}: {stderr}");
        assert!(stdout.contains(".sig"), "{stdout}");
        let (code, out) = signet_verify(&image, &public, SignatureType::Default);
        assert_eq!(code, 0, "verify {reference} {algorithm}: {out}");
        signed.push((image, public));
    }
    // Judged as admission judges, with the key-rsa PSS signature's Attestor.
    let rsa_pss = admission_policies(
        dir.path(),
        &[(
            "alikms-rsa",
            &signed[0].1,
            format!("{}/alikms/**", registry.host()),
        )],
    );
    let (code, out) = judge(&signed[0].0, &rsa_pss);
    assert_eq!(code, 0, "admission of the RSA-PSS-signed image: {out}");
    let (code, out) = judge(&signed[2].0, &rsa_pss);
    assert_eq!(
        code, 1,
        "an image signed by the EC key is denied under the RSA key's Attestor: {out}"
    );

    // At admission, through the webhook (real TLS, an API-server-shaped Pod review): the RSA-PSS
    // and the ECDSA signed images are admitted by Attestors holding `signet public-key`'s output;
    // an unsigned image and an image signed by another KMS key are denied.
    let repo = |i: usize| signed[i].0.trim_end_matches(":v1").to_string();
    let per_image = admission_policies(
        &dir.path().join("per-image"),
        &[
            ("alikms-rsa", &signed[0].1, repo(0)),
            ("alikms-ec", &signed[2].1, repo(2)),
            // app-4 was signed by key-busy, not key-ec.
            ("alikms-ec-other", &signed[2].1, repo(4)),
        ],
    );
    registry
        .push_test_image("alikms/app-0", "unsigned", "unsigned")
        .await;
    let webhook = admission_webhook(&per_image).await;
    for image in [&signed[0].0, &signed[2].0] {
        let (allowed, message) = admitted(&webhook, image).await;
        assert!(allowed, "webhook, {image}: {message}");
    }
    let (allowed, message) = admitted(&webhook, &signed[4].0).await;
    assert!(!allowed, "webhook, image signed by another key: {message}");
    assert!(message.contains("no signature by key"), "{message}");
    let (allowed, message) = admitted(&webhook, &format!("{}:unsigned", repo(0))).await;
    assert!(!allowed, "webhook, unsigned image: {message}");
    assert!(message.contains("no signature"), "{message}");

    let digest = registry
        .push_test_image("alikms/refused", "v1", "refused")
        .await;
    let image = format!("{}/alikms/refused:v1", registry.host());
    let mut bad_secret = env.clone();
    bad_secret[1].1 = "not-the-secret".into();
    let wrong_token = dir.path().join("wrong-token");
    std::fs::write(&wrong_token, "eyJ.forged.sig\n").unwrap();
    let bad_rrsa = rrsa(&wrong_token);
    let none: Vec<(&str, String)> = Vec::new();
    let closed = format!(
        "alikms://key-ec?region=cn-hangzhou&endpoint=127.0.0.1:{}",
        support::closed_port()
    );
    let cases: Vec<(String, &str, &CloudEnv, &str)> = vec![
        // The endpoint signs with another key than the public key it shows.
        (
            kms.reference("key-liar"),
            "ECDSA_P256_SHA_256",
            &env,
            "does not verify under the key's public key",
        ),
        (
            kms.reference("key-enc"),
            "RSA_PSS_SHA_256",
            &env,
            "key usage is ENCRYPT/DECRYPT, not SIGN/VERIFY",
        ),
        (
            kms.reference("key-ec"),
            "RSA_PSS_SHA_256",
            &env,
            "EC P-256 key, which cannot sign RSA_PSS_SHA_256",
        ),
        (
            kms.reference("key-ec"),
            "ECDSA_P384_SHA_384",
            &env,
            "cannot sign ECDSA_P384_SHA_384",
        ),
        (
            kms.reference("key-ec"),
            "ECDSA_P256_SHA_256",
            &bad_secret,
            "SignatureDoesNotMatch",
        ),
        (
            kms.reference("key-ec"),
            "ECDSA_P256_SHA_256",
            &bad_rrsa,
            "InvalidParameter.OIDCToken",
        ),
        (
            kms.reference("key-ec"),
            "ECDSA_P256_SHA_256",
            &none,
            "no Alibaba Cloud credentials",
        ),
        (
            kms.reference("key-missing"),
            "ECDSA_P256_SHA_256",
            &env,
            "Forbidden.KeyNotFound",
        ),
        (
            kms.reference("key-two"),
            "ECDSA_P256_SHA_256",
            &env,
            "2 versions and no primary one",
        ),
        (closed, "ECDSA_P256_SHA_256", &env, "cannot reach"),
        (
            "alikms://key-ec".to_string(),
            "ECDSA_P256_SHA_256",
            &env,
            "no region",
        ),
    ];
    for (key, algorithm, env, expected) in cases {
        let started = Instant::now();
        let (code, _, stderr) = signet(
            env,
            &["sign", &image, "--key", &key, "--algorithm", algorithm],
        );
        assert_eq!(code, 2, "{key} {algorithm}: {stderr}");
        assert_eq!(
            stderr.trim_end().lines().count(),
            1,
            "{key} {algorithm}: {stderr}"
        );
        assert!(
            stderr.contains(expected),
            "{key} {algorithm}: expected {expected:?} in {stderr}"
        );
        assert!(
            !stderr.contains(&kms.secret)
                && !stderr.contains("not-the-secret")
                && !stderr.contains(&kms.oidc_token),
            "{stderr}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "{key}: took {:?}",
            started.elapsed()
        );
        assert_eq!(
            signature_count(&registry, "alikms/refused:v1", &digest).await,
            0,
            "{key} pushed a signature"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signing_rule_with_a_kms_key_signs_pushes_and_unusable_rules_stop_the_signer() {
    let kms = AliKms::start();
    let dir = tempfile::tempdir().unwrap();
    // Rules name no endpoint: the signer's environment does, as the chart sets it.
    let mut env = kms.env();
    env.push(("SIGNET_ALIBABA_KMS_ENDPOINT", kms.endpoint()));
    let reference = "alikms://key-rsa?region=cn-hangzhou".to_string();
    let public = public_key(
        &env,
        &reference,
        "RSA_PSS_SHA_256",
        &dir.path().join("rsa.pub"),
    );

    let port = support::closed_port();
    let registry =
        Registry::start_with_notifications(&format!("http://127.0.0.1:{port}/events"), TOKEN);
    let host = registry.host();
    let policies = policy_dir(
        dir.path(),
        &[kms_rule(
            "alikms",
            format!("{host}/alikms/**"),
            reference.clone(),
            Algorithm::RsaPssSha256,
        )],
    );
    let mut signer = start_signer(&env, dir.path(), &policies, port);
    wait_listening(&mut signer, port);
    let digest = registry.push_test_image("alikms/app", "v1", "alikms").await;
    wait_for_signatures(
        &registry,
        &[("alikms/app:v1".into(), digest)],
        1,
        Duration::from_secs(30),
    )
    .await;
    let (code, out) = signet_verify(
        &format!("{host}/alikms/app:v1"),
        &public,
        SignatureType::Default,
    );
    assert_eq!(code, 0, "{out}");
    let calls = kms_calls(port, "alibaba_kms", "success").await;
    assert!(
        calls >= 3.0,
        "DescribeKey, GetPublicKey and AsymmetricSign at least: {calls}"
    );
    let _ = signer.kill();
    let _ = signer.wait();

    let broken = vec![
        (
            reference.clone(),
            Algorithm::EcdsaP256Sha256,
            "cannot sign ECDSA_P256_SHA_256",
        ),
        (
            "alikms://key-enc?region=cn-hangzhou".to_string(),
            Algorithm::RsaPssSha256,
            "not SIGN/VERIFY",
        ),
        (
            kms.reference("key-rsa"),
            Algorithm::RsaPssSha256,
            "may not name a KMS endpoint",
        ),
    ];
    let scope = format!("{host}/alikms/**");
    assert_unusable_rules_stop_the_signer(
        &env,
        dir.path(),
        ("alikms", &scope),
        broken,
        &kms.secret,
    );
}

/// The ECS instance RAM role (a local, mocked metadata service in its token mode: none can run
/// here): the signer, with no other credential source, asks for a session token, the
/// instance's role and its temporary credentials (made by the endpoint's STS, so the endpoint
/// checks their security token). The first expire within the refresh margin (4 minutes): each
/// KMS call fetches again; once the service hands out new ones and the first are revoked, the
/// next image is signed with the new ones. Long-lived credentials are fetched once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ecs_ram_role_credentials_sign_and_are_refreshed_before_they_expire() {
    let kms = AliKms::start();
    let dir = tempfile::tempdir().unwrap();
    let handed = |expires_in: Duration| {
        let kms = &kms;
        async move {
            let (access_key_id, secret, token) = kms.temporary_credentials().await;
            Handed {
                access_key_id,
                secret,
                token,
                expires_in,
            }
        }
    };
    let first = handed(Duration::from_secs(240)).await;
    let ecs = MetadataServer::start(Cloud::Alibaba, "signet-node", first.clone()).await;
    let env = vec![
        ("SIGNET_ALIBABA_KMS_ENDPOINT", kms.endpoint()),
        ("ALIBABA_CLOUD_ECS_METADATA_DISABLED", "false".to_string()),
        ("SIGNET_ALIBABA_ECS_METADATA_ENDPOINT", ecs.url()),
    ];
    let reference = "alikms://key-ec?region=cn-hangzhou".to_string();
    // The role named in the environment (ALIBABA_CLOUD_ECS_METADATA), not listed.
    let mut named_role = env.clone();
    named_role.push(("ALIBABA_CLOUD_ECS_METADATA", "signet-node".to_string()));
    let public = public_key(
        &named_role,
        &reference,
        "ECDSA_P256_SHA_256",
        &dir.path().join("ec.pub"),
    );

    let port = support::closed_port();
    let registry =
        Registry::start_with_notifications(&format!("http://127.0.0.1:{port}/events"), TOKEN);
    let host = registry.host();
    let policies = policy_dir(
        dir.path(),
        &[kms_rule(
            "ecs",
            format!("{host}/ecs/**"),
            reference.clone(),
            Algorithm::EcdsaP256Sha256,
        )],
    );
    let mut signer = start_signer(&env, dir.path(), &policies, port);
    wait_listening(&mut signer, port);
    let sign_and_verify =
        |tag: &'static str| push_signed_and_verified(&registry, "ecs/app", tag, &public);
    sign_and_verify("v1").await;
    let documents = ecs.seen(|s| s.documents.clone());
    // public-key (1), the signer at start (DescribeKey, ListKeyVersions, GetPublicKey) and its
    // AsymmetricSign: each fetched anew.
    assert!(documents.len() >= 4, "{documents:?}");
    assert!(documents.iter().all(|d| *d == first.access_key_id));

    kms.revoke(&first.access_key_id).await;
    let old = vec![
        ("ALIBABA_CLOUD_ACCESS_KEY_ID", first.access_key_id.clone()),
        ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", first.secret.clone()),
        ("ALIBABA_CLOUD_SECURITY_TOKEN", first.token.clone()),
    ];
    let (code, _, stderr) = signet(
        &old,
        &[
            "public-key",
            "--key",
            &kms.reference("key-ec"),
            "--algorithm",
            "ECDSA_P256_SHA_256",
        ],
    );
    assert_eq!(code, 2, "the revoked credentials still work: {stderr}");
    assert!(stderr.contains("InvalidAccessKeyId.NotFound"), "{stderr}");
    let second = handed(Duration::from_secs(3600)).await;
    ecs.hand_out(second.clone());
    sign_and_verify("v2").await;
    let after_v2 = ecs.seen(|s| s.documents.len());
    assert_eq!(
        ecs.seen(|s| s.documents.last().cloned()),
        Some(second.access_key_id.clone())
    );
    sign_and_verify("v3").await;
    assert_eq!(
        ecs.seen(|s| s.documents.len()),
        after_v2,
        "long-lived credentials were fetched again"
    );
    ecs.seen(|s| {
        assert!(s.refused.is_empty(), "{:?}", s.refused);
        assert!(
            s.token_ttls.iter().all(|t| t == "21600"),
            "{:?}",
            s.token_ttls
        );
    });
    let _ = signer.kill();
    let _ = signer.wait();
}
