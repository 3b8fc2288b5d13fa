//! AWS KMS keys (`awskms://`) against moto in server mode (real SigV4 checking by botocore inside
//! moto, real RSA and EC keys): `signet public-key`, `signet sign`, `sign --backfill`, `signet
//! verify` with the key and with a policy folder (Attestor + ClusterVerificationPolicy, judged as
//! admission judges), and at admission by the webhook over TLS (signed admitted, unsigned and
//! other-key images denied); a SigningRule served by `signet signer`; IRSA web identity through moto's
//! STS; IMDSv2 (a local, mocked metadata service handing out moto role sessions, refreshed before
//! expiry); EKS Pod Identity's container credential endpoint (mocked likewise); the shared
//! credentials/config files and `AWS_PROFILE`; and every way a key can be unusable: one line,
//! exit 2, nothing pushed. One moto serves the tests of this binary.
//!
//! What the emulator cannot show (moto 5.2.5): a good RSA_PSS_SHA_256 signature (moto salts PSS
//! with the maximum length; AWS uses 32 bytes, as signet verifies), and `MessageType: DIGEST`
//! (moto hashes the digest again; signet sends RAW below 4 KiB). The PSS case is asserted the other
//! way round: the local verification refuses moto's signature and nothing is stored.

// Helpers outside `#[test]` functions fail by panicking, as tests do.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::{Duration, Instant};

use signet::crypto::Algorithm;
use signet::signature::SignatureType;
use support::Registry;
use support::kms_cli::{
    CloudEnv, admission_policies, admission_webhook, admitted,
    assert_unusable_rules_stop_the_signer, judge, kms_calls, kms_rule, public_key,
    push_signed_and_verified, signet, start_signer, wait_listening,
};
use support::metadata::{Cloud, ContainerCredentials, Handed, MetadataServer};
use support::moto::Moto;
use support::signer::{TOKEN, policy_dir, signature_count, signet_verify, wait_for_signatures};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kms_keys_sign_images_that_verify_and_unusable_keys_push_nothing() {
    let moto = Moto::shared();
    let registry = Registry::start();
    let dir = tempfile::tempdir().unwrap();
    let env = moto.env();
    let endpoint = moto.endpoint();

    let mut attestors = Vec::new();
    for (alias, algorithm) in [("ec", "ECDSA_P256_SHA_256"), ("rsa", "RSA_PKCS1_SHA_256")] {
        let key = format!("awskms://{endpoint}/alias/{alias}");
        let public = public_key(
            &env,
            &key,
            algorithm,
            &dir.path().join(format!("{alias}.pub")),
        );
        let repo = format!("kms/app-{alias}");
        registry.push_test_image(&repo, "v1", alias).await;
        let image = format!("{}/{repo}:v1", registry.host());
        let (code, stdout, stderr) = signet(
            &env,
            &["sign", &image, "--key", &key, "--algorithm", algorithm],
        );
        assert_eq!(code, 0, "sign with {key}: {stderr}");
        assert!(stdout.contains(".sig"), "{stdout}");
        let (code, out) = signet_verify(&image, &public, SignatureType::Default);
        assert_eq!(code, 0, "verify {key}: {out}");
        attestors.push((alias, public, format!("{}/{repo}", registry.host())));
    }
    // Judged as admission judges: each image needs its KMS key's Attestor, and an image signed
    // by the other KMS key does not pass.
    let entries: Vec<(&str, &_, String)> = attestors
        .iter()
        .map(|(a, k, i)| (*a, k, i.clone()))
        .collect();
    let policies = admission_policies(dir.path(), &entries);
    for (alias, _, repo) in &attestors {
        let (code, out) = judge(&format!("{repo}:v1"), &policies);
        assert_eq!(code, 0, "admission of the {alias}-signed image: {out}");
    }
    let swapped: Vec<(&str, &_, String)> = vec![("ec", &attestors[0].1, attestors[1].2.clone())];
    let other = admission_policies(&dir.path().join("swapped"), &swapped);
    let (code, out) = judge(&format!("{}:v1", attestors[1].2), &other);
    assert_eq!(
        code, 1,
        "an RSA-signed image under the EC key's Attestor: {out}"
    );

    // At admission, through the webhook (real TLS, an API-server-shaped Pod review): each image
    // signed by a KMS key is admitted by the Attestor holding `signet public-key`'s output; an
    // unsigned image and an image signed by the other KMS key are denied.
    let webhook = admission_webhook(&policies).await;
    for (alias, _, repo) in &attestors {
        let (allowed, message) = admitted(&webhook, &format!("{repo}:v1")).await;
        assert!(allowed, "webhook, {alias}-signed image: {message}");
    }
    registry
        .push_test_image("kms/app-ec", "unsigned", "unsigned")
        .await;
    let (allowed, message) = admitted(&webhook, &format!("{}:unsigned", attestors[0].2)).await;
    assert!(!allowed, "webhook, unsigned image: {message}");
    assert!(message.contains("no signature"), "{message}");
    let webhook = admission_webhook(&other).await;
    let (allowed, message) = admitted(&webhook, &format!("{}:v1", attestors[1].2)).await;
    assert!(
        !allowed,
        "webhook, RSA-signed image under the EC key's Attestor: {message}"
    );
    assert!(message.contains("no signature by key"), "{message}");

    // Every unusable key: exit 2, one line naming the cause, no secret, nothing pushed.
    let digest = registry
        .push_test_image("kms/refused", "v1", "refused")
        .await;
    let image = format!("{}/kms/refused:v1", registry.host());
    let mut bad_secret = env.clone();
    bad_secret[1].1 = "not-the-secret".into();
    let no_credentials: Vec<(&str, String)> = env[2..].to_vec();
    let closed = format!("127.0.0.1:{}", support::closed_port());
    let cases: Vec<(String, &str, &CloudEnv, &str)> = vec![
        // moto's RSA-PSS salt is not AWS's: the local verification refuses the signature.
        (
            format!("awskms://{endpoint}/alias/rsa"),
            "RSA_PSS_SHA_256",
            &env,
            "does not verify under the key's public key",
        ),
        (
            format!("awskms://{endpoint}/alias/encrypt"),
            "RSA_PKCS1_SHA_256",
            &env,
            "key usage is ENCRYPT_DECRYPT, not SIGN_VERIFY",
        ),
        (
            format!("awskms://{endpoint}/alias/ec"),
            "RSA_PKCS1_SHA_256",
            &env,
            "EC P-256 key, which cannot sign RSA_PKCS1_SHA_256",
        ),
        (
            format!("awskms://{endpoint}/alias/ec"),
            "ECDSA_P384_SHA_384",
            &env,
            "cannot sign ECDSA_P384_SHA_384",
        ),
        (
            format!("awskms://{endpoint}/alias/ec"),
            "ECDSA_P256_SHA_256",
            &bad_secret,
            "SignatureDoesNotMatch",
        ),
        (
            format!("awskms://{endpoint}/alias/ec"),
            "ECDSA_P256_SHA_256",
            &no_credentials,
            "no AWS credentials",
        ),
        (
            format!("awskms://{endpoint}/alias/missing"),
            "ECDSA_P256_SHA_256",
            &env,
            "NotFoundException",
        ),
        (
            format!("awskms://{closed}/alias/ec"),
            "ECDSA_P256_SHA_256",
            &env,
            "cannot reach",
        ),
        (
            format!("awskms://{endpoint}/"),
            "ECDSA_P256_SHA_256",
            &env,
            "not an AWS KMS key reference",
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
            !stderr.contains(&moto.secret) && !stderr.contains("not-the-secret"),
            "{stderr}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "{key}: took {:?}",
            started.elapsed()
        );
        assert_eq!(
            signature_count(&registry, "kms/refused:v1", &digest).await,
            0,
            "{key} pushed a signature"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signing_rule_with_a_kms_key_signs_pushes_and_unusable_rules_stop_the_signer() {
    let moto = Moto::shared();
    let dir = tempfile::tempdir().unwrap();
    // Rules name no endpoint: the signer's environment does, as the chart sets it.
    let mut env = moto.env();
    env.push(("AWS_ENDPOINT_URL_KMS", moto.url()));
    let public = public_key(
        &env,
        "awskms:///alias/ec",
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
            "kms",
            format!("{host}/kms/**"),
            "awskms:///alias/ec".into(),
            Algorithm::EcdsaP256Sha256,
        )],
    );
    // `signet sign --backfill` signs what was pushed before, with the rule's KMS key.
    let old = registry.push_test_image("kms/old", "v1", "old").await;
    let (code, stdout, stderr) = signet(
        &env,
        &[
            "sign",
            "--backfill",
            "--policy-dir",
            policies.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "backfill: {stdout}{stderr}");
    assert_eq!(
        signature_count(&registry, "kms/old:v1", &old).await,
        1,
        "{stdout}"
    );
    let (code, out) = signet_verify(
        &format!("{host}/kms/old:v1"),
        &public,
        SignatureType::Default,
    );
    assert_eq!(code, 0, "{out}");

    let mut signer = start_signer(&env, dir.path(), &policies, port);
    wait_listening(&mut signer, port);
    let digest = registry.push_test_image("kms/app", "v1", "kms").await;
    wait_for_signatures(
        &registry,
        &[("kms/app:v1".into(), digest)],
        1,
        Duration::from_secs(30),
    )
    .await;
    let (code, out) = signet_verify(
        &format!("{host}/kms/app:v1"),
        &public,
        SignatureType::Default,
    );
    assert_eq!(code, 0, "{out}");
    let calls = kms_calls(port, "aws_kms", "success").await;
    assert!(calls >= 2.0, "GetPublicKey and Sign at least: {calls}");
    let _ = signer.kill();
    let _ = signer.wait();

    // A rule its key cannot serve stops the signer at start with one line.
    let broken = vec![
        (
            "awskms:///alias/ec".to_string(),
            Algorithm::RsaPssSha256,
            "cannot sign RSA_PSS_SHA_256",
        ),
        (
            "awskms:///alias/encrypt".to_string(),
            Algorithm::RsaPkcs1Sha256,
            "not SIGN_VERIFY",
        ),
        (
            format!("awskms://{}/alias/ec", moto.endpoint()),
            Algorithm::EcdsaP256Sha256,
            "may not name a KMS endpoint",
        ),
    ];
    let scope = format!("{host}/kms/**");
    assert_unusable_rules_stop_the_signer(&env, dir.path(), ("kms", &scope), broken, &moto.secret);
}

/// IRSA: a web identity token exchanged at STS (`AssumeRoleWithWebIdentity`) for the credentials
/// that sign. moto runs without authentication here (see [`Moto::start_without_auth`]): what
/// this shows is that signet's STS request is one moto's STS accepts, that its answer is read,
/// and that moto recorded the session signet asked for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web_identity_credentials_sign() {
    let moto = Moto::start_without_auth();
    let registry = Registry::start();
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("web-identity-token");
    std::fs::write(&token, "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzaWduZXQifQ.c2ln\n").unwrap();
    let role = "arn:aws:iam::123456789012:role/signet-signer";
    let env = vec![
        ("AWS_WEB_IDENTITY_TOKEN_FILE", token.display().to_string()),
        ("AWS_ROLE_ARN", role.to_string()),
        ("AWS_ROLE_SESSION_NAME", "signet-irsa-test".to_string()),
        ("AWS_ENDPOINT_URL_STS", moto.url()),
        ("AWS_REGION", "us-east-1".to_string()),
    ];
    let key = format!("awskms://{}/alias/ec", moto.endpoint());
    let public = public_key(&env, &key, "ECDSA_P256_SHA_256", &dir.path().join("ec.pub"));
    registry.push_test_image("irsa/app", "v1", "irsa").await;
    let image = format!("{}/irsa/app:v1", registry.host());
    let (code, _, stderr) = signet(
        &env,
        &[
            "sign",
            &image,
            "--key",
            &key,
            "--algorithm",
            "ECDSA_P256_SHA_256",
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    let (code, out) = signet_verify(&image, &public, SignatureType::Default);
    assert_eq!(code, 0, "{out}");
    let state: serde_json::Value = reqwest::get(format!("{}/moto-api/data.json", moto.url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let sessions = state["sts"]["AssumedRole"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        sessions
            .iter()
            .any(|s| s["role_arn"] == role && s["session_name"] == "signet-irsa-test"),
        "moto recorded no session for {role}: {sessions:?}"
    );

    // A token file that cannot be read: one line naming it.
    let mut missing = env.clone();
    missing[0].1 = dir.path().join("gone").display().to_string();
    let (code, _, stderr) = signet(
        &missing,
        &[
            "sign",
            &image,
            "--key",
            &key,
            "--algorithm",
            "ECDSA_P256_SHA_256",
        ],
    );
    assert_eq!(code, 2, "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("web identity token file") && stderr.contains("gone"),
        "{stderr}"
    );
}

/// IMDSv2 (a local, mocked metadata service: none can run here): the signer, with no other
/// credential source, asks for a session token, the instance's role and its credentials, which
/// are sessions of moto roles (moto checks their session token). The first session expires
/// within the refresh margin (4 minutes): each KMS call fetches again; once the service hands
/// out a session of another role and the first role loses its KMS permissions, the next image
/// is signed with the new credentials. Long-lived credentials are fetched once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instance_metadata_credentials_sign_and_are_refreshed_before_they_expire() {
    let moto = Moto::shared();
    let dir = tempfile::tempdir().unwrap();
    let handed = |role: &str, expires_in: Duration| {
        let (access_key_id, secret, token) = moto.assume_role(role);
        Handed {
            access_key_id,
            secret,
            token,
            expires_in,
        }
    };
    let first = handed("signet-node-a", Duration::from_secs(240));
    let imds = MetadataServer::start(Cloud::Aws, "signet-node-a", first.clone()).await;
    let env = vec![
        ("AWS_REGION", "us-east-1".to_string()),
        ("AWS_ENDPOINT_URL_KMS", moto.url()),
        ("AWS_EC2_METADATA_DISABLED", "false".to_string()),
        ("AWS_EC2_METADATA_SERVICE_ENDPOINT", imds.url()),
    ];
    let public = public_key(
        &env,
        "awskms:///alias/ec",
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
            "imds",
            format!("{host}/imds/**"),
            "awskms:///alias/ec".into(),
            Algorithm::EcdsaP256Sha256,
        )],
    );
    let mut signer = start_signer(&env, dir.path(), &policies, port);
    wait_listening(&mut signer, port);
    let sign_and_verify =
        |tag: &'static str| push_signed_and_verified(&registry, "imds/app", tag, &public);
    sign_and_verify("v1").await;
    let documents = imds.seen(|s| s.documents.clone());
    // public-key (1), the signer's GetPublicKey at start (1), its Sign (1): each fetched anew.
    assert!(documents.len() >= 3, "{documents:?}");
    assert!(documents.iter().all(|d| *d == first.access_key_id));

    // The first role can no longer sign; the service hands out a long-lived session of another.
    moto.revoke_role("signet-node-a");
    let old_session = vec![
        ("AWS_ACCESS_KEY_ID", first.access_key_id.clone()),
        ("AWS_SECRET_ACCESS_KEY", first.secret.clone()),
        ("AWS_SESSION_TOKEN", first.token.clone()),
        ("AWS_REGION", "us-east-1".to_string()),
    ];
    let (code, _, stderr) = signet(
        &old_session,
        &[
            "public-key",
            "--key",
            &format!("awskms://{}/alias/ec", moto.endpoint()),
            "--algorithm",
            "ECDSA_P256_SHA_256",
        ],
    );
    assert_eq!(code, 2, "the revoked session still works: {stderr}");
    assert!(stderr.contains("AccessDenied"), "{stderr}");
    let second = handed("signet-node-b", Duration::from_secs(3600));
    imds.hand_out(second.clone());
    sign_and_verify("v2").await;
    let after_v2 = imds.seen(|s| s.documents.len());
    assert_eq!(
        imds.seen(|s| s.documents.last().cloned()),
        Some(second.access_key_id.clone())
    );
    sign_and_verify("v3").await;
    assert_eq!(
        imds.seen(|s| s.documents.len()),
        after_v2,
        "long-lived credentials were fetched again"
    );
    imds.seen(|s| {
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

/// EKS Pod Identity (and ECS task roles given by full URI): with no other source, signet asks the
/// container credential endpoint of `AWS_CONTAINER_CREDENTIALS_FULL_URI` with the token read from
/// `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE`. The endpoint is mocked (the agent cannot run here);
/// the credentials it hands out are a moto role session, which moto checks. Another pod's token:
/// one line naming the endpoint's refusal, nothing pushed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eks_pod_identity_container_credentials_sign() {
    let moto = Moto::shared();
    let registry = Registry::start();
    let dir = tempfile::tempdir().unwrap();
    let (access_key_id, secret, token) = moto.assume_role("signet-node-b");
    let handed = Handed {
        access_key_id: access_key_id.clone(),
        secret,
        token,
        expires_in: Duration::from_secs(3600),
    };
    let agent = ContainerCredentials::start("pod-identity-token-1", handed).await;
    let token_file = dir.path().join("eks-pod-identity-token");
    std::fs::write(&token_file, "pod-identity-token-1").unwrap();
    let env = vec![
        ("AWS_CONTAINER_CREDENTIALS_FULL_URI", agent.url()),
        (
            "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
            token_file.display().to_string(),
        ),
        ("AWS_REGION", "us-east-1".to_string()),
    ];
    let key = format!("awskms://{}/alias/ec", moto.endpoint());
    let public = public_key(&env, &key, "ECDSA_P256_SHA_256", &dir.path().join("ec.pub"));
    let sign = |image: String| {
        signet(
            &env,
            &[
                "sign",
                &image,
                "--key",
                &key,
                "--algorithm",
                "ECDSA_P256_SHA_256",
            ],
        )
    };
    registry.push_test_image("pod/app", "v1", "pod-1").await;
    let image = format!("{}/pod/app:v1", registry.host());
    let (code, _, stderr) = sign(image.clone());
    assert_eq!(code, 0, "{stderr}");
    let (code, out) = signet_verify(&image, &public, SignatureType::Default);
    assert_eq!(code, 0, "{out}");
    agent.seen(|s| {
        assert!(s.refused.is_empty(), "{:?}", s.refused);
        assert!(!s.documents.is_empty());
        assert!(s.documents.iter().all(|d| *d == access_key_id));
    });

    // The token file now holds another pod's token: the agent refuses it.
    std::fs::write(&token_file, "another-pods-token").unwrap();
    let digest = registry.push_test_image("pod/app", "v2", "pod-2").await;
    let (code, _, stderr) = sign(format!("{}/pod/app:v2", registry.host()));
    assert_eq!(code, 2, "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(
        // "HTTP 401", not digits of a random port in the line.
        stderr.contains("container credentials") && stderr.contains("HTTP 401"),
        "{stderr}"
    );
    assert!(!stderr.contains("another-pods-token"), "{stderr}");
    assert_eq!(signature_count(&registry, "pod/app:v2", &digest).await, 0);
    assert_eq!(agent.seen(|s| s.refused.len()), 1);
}

/// The AWS shared files (`~/.aws/credentials`, `AWS_SHARED_CREDENTIALS_FILE`, `AWS_CONFIG_FILE`,
/// `AWS_PROFILE`), after the environment in the chain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_credentials_files_sign_under_the_chosen_profile() {
    let moto = Moto::shared();
    let registry = Registry::start();
    let dir = tempfile::tempdir().unwrap();
    let (id, secret) = (&moto.access_key_id, &moto.secret);
    let credentials = dir.path().join("credentials");
    std::fs::write(
        &credentials,
        format!(
            "[default]\naws_access_key_id = {id}\naws_secret_access_key = not-the-secret\n\n\
             [signer]\naws_access_key_id = {id}\naws_secret_access_key = {secret}\n\n\
             [assume]\nrole_arn = arn:aws:iam::123456789012:role/x\nsource_profile = signer\n"
        ),
    )
    .unwrap();
    let config = dir.path().join("config");
    std::fs::write(
        &config,
        format!(
            "[default]\nregion = us-east-1\n[profile from-config]\naws_access_key_id = {id}\n\
             aws_secret_access_key = {secret}\n"
        ),
    )
    .unwrap();
    let home = dir.path().join("home");
    std::fs::create_dir_all(home.join(".aws")).unwrap();
    std::fs::write(
        home.join(".aws/credentials"),
        format!("[default]\naws_access_key_id = {id}\naws_secret_access_key = {secret}\n"),
    )
    .unwrap();
    let key = format!("awskms://{}/alias/ec", moto.endpoint());
    let files = |profile: Option<&str>| {
        let mut env = vec![
            ("AWS_REGION", "us-east-1".to_string()),
            (
                "AWS_SHARED_CREDENTIALS_FILE",
                credentials.display().to_string(),
            ),
            ("AWS_CONFIG_FILE", config.display().to_string()),
        ];
        if let Some(p) = profile {
            env.push(("AWS_PROFILE", p.to_string()));
        }
        env
    };
    let mut env_wins = files(Some("missing"));
    env_wins.extend(moto.env());
    let home_env = vec![
        ("AWS_REGION", "us-east-1".to_string()),
        ("HOME", home.display().to_string()),
        ("AWS_SHARED_CREDENTIALS_FILE", String::new()),
        ("AWS_CONFIG_FILE", String::new()),
    ];
    // (case, environment, Ok or the refusal's text)
    type Case<'a> = (&'a str, Vec<(&'static str, String)>, Result<(), &'a str>);
    let cases: Vec<Case> = vec![
        ("AWS_PROFILE=signer", files(Some("signer")), Ok(())),
        (
            "[profile NAME] in the config file",
            files(Some("from-config")),
            Ok(()),
        ),
        ("~/.aws/credentials", home_env, Ok(())),
        ("the environment before the files", env_wins, Ok(())),
        // The default profile's secret is wrong: it is the one used without AWS_PROFILE.
        ("default profile", files(None), Err("SignatureDoesNotMatch")),
        (
            "missing profile",
            files(Some("missing")),
            Err("AWS_PROFILE \"missing\" is in none of the AWS shared files"),
        ),
        (
            "role profile",
            files(Some("assume")),
            Err("uses role_arn, which signet does not support"),
        ),
    ];
    let public = public_key(
        &moto.env(),
        &key,
        "ECDSA_P256_SHA_256",
        &dir.path().join("ec.pub"),
    );
    for (i, (case, env, expected)) in cases.into_iter().enumerate() {
        let tag = format!("v{i}");
        let digest = registry.push_test_image("shared/app", &tag, &tag).await;
        let image = format!("{}/shared/app:{tag}", registry.host());
        let (code, _, stderr) = signet(
            &env,
            &[
                "sign",
                &image,
                "--key",
                &key,
                "--algorithm",
                "ECDSA_P256_SHA_256",
            ],
        );
        match expected {
            Ok(()) => {
                assert_eq!(code, 0, "{case}: {stderr}");
                let (code, out) = signet_verify(&image, &public, SignatureType::Default);
                assert_eq!(code, 0, "{case}: {out}");
            }
            Err(text) => {
                assert_eq!(code, 2, "{case}: {stderr}");
                assert_eq!(stderr.trim_end().lines().count(), 1, "{case}: {stderr}");
                assert!(
                    stderr.contains(text),
                    "{case}: expected {text:?} in {stderr}"
                );
                assert!(!stderr.contains(secret.as_str()), "{stderr}");
                assert_eq!(
                    signature_count(&registry, &format!("shared/app:{tag}"), &digest).await,
                    0,
                    "{case} pushed a signature"
                );
            }
        }
    }
}
