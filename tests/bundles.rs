//! Sigstore bundles (cosign v3) against Debian's `docker-registry` 2.8, which has no referrers
//! API (so the fallback index tag `sha256-<hex>` path), and through a front that adds the API
//! (tests/support/referrers_front.rs: no registry installable here implements it).
//! `signet sign` and `signet verify` run as processes; the webhook over real TLS.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use signet::crypto::{Algorithm, FileKey, SigningKey, generate_key_pair};
use signet::policy::NoMatch;
use signet::reference::ImageRef;
use signet::registry::{SignatureStore, Wanted};
use signet::signature::{NO_TAG_BINDING_HINT, SignatureFormat, SignatureType};

use support::Registry;
use support::bundle::{
    BUNDLE_MEDIA_TYPE, EMPTY_MEDIA_TYPE, attach_bundle, b64, cosign_statement, cosign_v3_bundle,
    fallback_entries, formats_found,
};
use support::referrers_front::ReferrersFront;
use support::signer::{TestKey, key};
use support::webhook::{
    TestWebhook, attestor_yaml, pod_review, policy_state_of, registry_client, settings,
};

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn signet(args: &[&str]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_signet"))
        .args(args)
        .env_remove("DOCKER_CONFIG")
        .env_remove("SIGNET_SIGNATURE_FORMATS")
        .output()
        .expect("run signet");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn sign(image: &str, key: &TestKey, ty: &str, formats: Option<&str>) -> Run {
    let private = format!("file:{}", key.private.display());
    let algorithm = key.algorithm.to_string();
    let mut args = vec![
        "sign",
        image,
        "--key",
        &private,
        "--algorithm",
        &algorithm,
        "--type",
        ty,
    ];
    if let Some(f) = formats {
        args.extend(["--format", f]);
    }
    signet(&args)
}

fn verify(image: &str, key: &TestKey, ty: &str, output: &str) -> Run {
    let public = key.public.to_str().unwrap().to_string();
    let algorithm = key.algorithm.to_string();
    signet(&[
        "verify",
        image,
        "--key",
        &public,
        "--algorithm",
        &algorithm,
        "--type",
        ty,
        "--output",
        output,
    ])
}

fn json_of(run: &Run) -> Value {
    serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}{}", run.stdout, run.stderr))
}

#[tokio::test(flavor = "multi_thread")]
async fn each_format_and_type_is_signed_and_verified_on_a_registry_without_referrers() {
    let registry = Registry::start();
    let dir = tempfile::tempdir().unwrap();
    let release = key(dir.path(), "release", Algorithm::EcdsaP256Sha256);
    let client = registry_client();
    let cases = [
        ("CosignSignature", "default"),
        ("CosignSignature", "simple"),
        ("SigstoreBundle", "default"),
        ("SigstoreBundle", "simple"),
    ];
    for (i, (format, ty)) in cases.into_iter().enumerate() {
        let repo = format!("fmt{i}/app");
        let digest = registry
            .push_test_image(&repo, "v1", &format!("fmt-{i}"))
            .await;
        let image = format!("{}/{repo}:v1", registry.host());
        for round in 0..2 {
            let run = sign(&image, &release, ty, Some(format));
            assert_eq!(run.code, 0, "{format} {ty}: {}", run.stderr);
            let lines: Vec<&str> = run.stdout.lines().collect();
            assert_eq!(lines.len(), 2, "{}", run.stdout);
            assert_eq!(lines[0], digest);
            assert!(lines[1].contains(&format!("({format}")), "{}", run.stdout);
            assert_eq!(
                lines[1].contains("already present"),
                round > 0,
                "{format} {ty} round {round}: {}",
                run.stdout
            );
        }
        let run = verify(&image, &release, ty, "json");
        assert_eq!(run.code, 0, "{format} {ty}: {}{}", run.stdout, run.stderr);
        let found = formats_found(&json_of(&run));
        assert_eq!(
            found,
            BTreeMap::from([(format.to_string(), vec![true])]),
            "{format} {ty}: {}",
            run.stdout
        );
        // Default binds more than Simple: it satisfies Simple; a Simple one does not satisfy
        // Default, and the denial says why in words.
        if ty == "default" {
            assert_eq!(verify(&image, &release, "simple", "text").code, 0);
        } else {
            let run = verify(&image, &release, "default", "text");
            assert_eq!(run.code, 1, "{}", run.stdout);
            assert!(run.stdout.contains(NO_TAG_BINDING_HINT), "{}", run.stdout);
        }
        let image_ref = ImageRef::parse(&image).unwrap();
        let entries = fallback_entries(&client, &image_ref, &digest).await;
        if format == "SigstoreBundle" {
            // Signing twice listed the bundle once.
            assert_eq!(entries.len(), 1, "{entries:?}");
            assert_eq!(entries[0]["artifactType"], BUNDLE_MEDIA_TYPE);
        } else {
            assert!(entries.is_empty(), "{entries:?}");
        }
    }

    // The default is both formats: cosign v2 and v3/v4 users can all verify.
    let digest = registry.push_test_image("both/app", "v1", "both").await;
    let image = format!("{}/both/app:v1", registry.host());
    let run = sign(&image, &release, "default", None);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.stdout.lines().count(), 3, "{}", run.stdout);
    // A plain verify stops at the .sig (it settles the verdict) and says what it did not read;
    // `--all-signatures` reads and checks both.
    let run = verify(&image, &release, "default", "json");
    assert_eq!(run.code, 0, "{}", run.stdout);
    assert_eq!(
        formats_found(&json_of(&run)),
        BTreeMap::from([("CosignSignature".to_string(), vec![true])])
    );
    assert_eq!(
        json_of(&run)["formats_not_read"],
        json!(["SigstoreBundle", "Notation"])
    );
    let public = release.public.to_str().unwrap().to_string();
    let run = signet(&[
        "verify",
        &image,
        "--key",
        &public,
        "--all-signatures",
        "--output",
        "json",
    ]);
    assert_eq!(run.code, 0, "{}", run.stdout);
    assert_eq!(
        formats_found(&json_of(&run)),
        BTreeMap::from([
            ("CosignSignature".to_string(), vec![true]),
            ("SigstoreBundle".to_string(), vec![true]),
        ])
    );
    let entries = fallback_entries(&client, &ImageRef::parse(&image).unwrap(), &digest).await;
    assert_eq!(entries.len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bundle_as_cosign_v3_writes_it_satisfies_simple_and_is_denied_under_default() {
    let registry = Registry::start();
    let dir = tempfile::tempdir().unwrap();
    let release = key(dir.path(), "release", Algorithm::EcdsaP256Sha256);
    let signing = release.signing_key();
    let client = registry_client();
    // Index entries labelled the empty type (older tools), or not labelled at all.
    for (i, label) in [Some(EMPTY_MEDIA_TYPE), None, Some(BUNDLE_MEDIA_TYPE)]
        .into_iter()
        .enumerate()
    {
        let repo = format!("cosign{i}/app");
        let digest = registry
            .push_test_image(&repo, "v1", &format!("cosign-{i}"))
            .await;
        let image = ImageRef::parse(&format!("{}/{repo}:v1", registry.host())).unwrap();
        let statement = cosign_statement(&image.repo_path(), &digest);
        let bundle = serde_json::to_vec(&cosign_v3_bundle(signing.as_ref(), &statement)).unwrap();
        attach_bundle(&client, &image, &digest, &bundle, label).await;

        let run = verify(&image.to_string(), &release, "simple", "json");
        assert_eq!(run.code, 0, "label {label:?}: {}{}", run.stdout, run.stderr);
        assert_eq!(
            formats_found(&json_of(&run)),
            BTreeMap::from([("SigstoreBundle".to_string(), vec![true])])
        );
        let run = verify(&image.to_string(), &release, "default", "text");
        assert_eq!(run.code, 1, "{}", run.stdout);
        assert!(
            run.stdout
                .contains(&format!("(SigstoreBundle): {NO_TAG_BINDING_HINT}")),
            "{}",
            run.stdout
        );
    }

    // The same for a legacy `.sig` naming the repository without a tag (what cosign writes).
    let digest = registry.push_test_image("legacy/app", "v1", "legacy").await;
    let image = ImageRef::parse(&format!("{}/legacy/app:v1", registry.host())).unwrap();
    let store = SignatureStore::new(client.clone());
    let lock = store.lock(&image, &digest).await;
    let wanted = [Wanted {
        key: Arc::clone(&signing),
        signature_type: SignatureType::Simple,
        annotations: BTreeMap::new(),
    }];
    store
        .ensure_signed(&lock, &image, &digest, &wanted, &[], true)
        .await
        .unwrap();
    drop(lock);
    let set = store
        .fetch_legacy_signatures(&image, &digest)
        .await
        .unwrap();
    let payload: Value = serde_json::from_slice(&set.signatures[0].payload).unwrap();
    assert_eq!(
        payload["critical"]["identity"]["docker-reference"],
        image.repo_path()
    );
    assert_eq!(
        verify(&image.to_string(), &release, "simple", "text").code,
        0
    );
    let run = verify(&image.to_string(), &release, "default", "text");
    assert_eq!(run.code, 1, "{}", run.stdout);
    assert!(
        run.stdout
            .contains(&format!("(CosignSignature): {NO_TAG_BINDING_HINT}")),
        "{}",
        run.stdout
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_bundles_are_denied_each_with_its_reason() {
    let registry = Registry::start();
    let dir = tempfile::tempdir().unwrap();
    let release = key(dir.path(), "release", Algorithm::EcdsaP256Sha256);
    let stranger = key(dir.path(), "stranger", Algorithm::EcdsaP256Sha256);
    let (signing, foreign) = (release.signing_key(), stranger.signing_key());
    let client = registry_client();
    type Make = Box<dyn Fn(&str, &str) -> Value>;
    let cases: Vec<(&str, Make, &str)> = vec![
        (
            "attestation",
            Box::new({
                let k = Arc::clone(&signing);
                move |repo, digest| {
                    let mut s = cosign_statement(repo, digest);
                    s["predicateType"] = json!("https://slsa.dev/provenance/v1");
                    cosign_v3_bundle(k.as_ref(), &s)
                }
            }),
            "predicate type \"https://slsa.dev/provenance/v1\" is not an image signature",
        ),
        (
            "other-digest",
            Box::new({
                let k = Arc::clone(&signing);
                move |repo, _| {
                    let other = format!("sha256:{}", "e".repeat(64));
                    cosign_v3_bundle(k.as_ref(), &cosign_statement(repo, &other))
                }
            }),
            "signature for another digest",
        ),
        (
            "two-signatures",
            Box::new({
                let k = Arc::clone(&signing);
                move |repo, digest| {
                    let mut b = cosign_v3_bundle(k.as_ref(), &cosign_statement(repo, digest));
                    let sig = b["dsseEnvelope"]["signatures"][0].clone();
                    b["dsseEnvelope"]["signatures"] = json!([sig.clone(), sig]);
                    b
                }
            }),
            "the DSSE envelope holds 2 signatures; exactly one is accepted",
        ),
        (
            "tampered",
            Box::new({
                let k = Arc::clone(&signing);
                move |repo, digest| {
                    let mut b = cosign_v3_bundle(k.as_ref(), &cosign_statement(repo, digest));
                    let mut s = cosign_statement(repo, digest);
                    s["predicate"] = json!({"added": "after signing"});
                    b["dsseEnvelope"]["payload"] = json!(b64(&serde_json::to_vec(&s).unwrap()));
                    b
                }
            }),
            "(SigstoreBundle): not signed by a trusted key",
        ),
        (
            "carried-key",
            Box::new({
                let k = Arc::clone(&foreign);
                move |repo, digest| {
                    let mut b = cosign_v3_bundle(k.as_ref(), &cosign_statement(repo, digest));
                    b["verificationMaterial"] = json!({
                        "certificate": {"rawBytes": b64(k.public_key().spki_der())},
                        "tlogEntries": [],
                    });
                    b
                }
            }),
            "the certificate the bundle carries is never trusted",
        ),
    ];
    for (name, make, reason) in cases {
        let repo = format!("bad/{name}");
        let digest = registry.push_test_image(&repo, "v1", name).await;
        let image = ImageRef::parse(&format!("{}/{repo}:v1", registry.host())).unwrap();
        let bundle = serde_json::to_vec(&make(&image.repo_path(), &digest)).unwrap();
        attach_bundle(&client, &image, &digest, &bundle, Some(BUNDLE_MEDIA_TYPE)).await;
        let run = verify(&image.to_string(), &release, "simple", "text");
        assert_eq!(run.code, 1, "{name}: {}{}", run.stdout, run.stderr);
        assert!(run.stdout.contains(reason), "{name}: {}", run.stdout);
    }
}

fn policy(host: &str, name: &str, repos: &str, signature_type: &str) -> String {
    format!(
        "---\napiVersion: signet.dev/v1alpha1\nkind: ClusterVerificationPolicy\nmetadata:\n  name: {name}\n\
         spec:\n  images: [\"{host}/{repos}/**\"]\n  attestors: [release]\n  signatureType: {signature_type}\n"
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn the_webhook_admits_by_either_format_and_names_it() {
    let registry = Registry::start();
    let host = registry.host();
    let generated = generate_key_pair(Algorithm::EcdsaP256Sha256, None).unwrap();
    let signing: Arc<dyn SigningKey> = Arc::new(
        FileKey::from_pem(
            generated.private_key_pem(),
            Algorithm::EcdsaP256Sha256,
            "release-key",
        )
        .unwrap(),
    );
    let client = registry_client();
    let store = SignatureStore::new(client.clone());
    // signet's own bundle (Default: tag bound) in `strict`, cosign's in `strict` and `loose`.
    let signet_digest = registry.push_test_image("strict/signet", "v1", "s1").await;
    let signet_image = ImageRef::parse(&format!("{host}/strict/signet:v1")).unwrap();
    signet::registry::sign_image_formats(
        &store,
        &signet_image,
        Arc::clone(&signing),
        SignatureType::Default,
        &BTreeMap::new(),
        &[SignatureFormat::SigstoreBundle],
    )
    .await
    .unwrap();
    let mut cosign_images = Vec::new();
    for repo in ["strict/cosign", "loose/cosign"] {
        let digest = registry.push_test_image(repo, "v1", repo).await;
        let image = ImageRef::parse(&format!("{host}/{repo}:v1")).unwrap();
        let statement = cosign_statement(&image.repo_path(), &digest);
        let bundle = serde_json::to_vec(&cosign_v3_bundle(signing.as_ref(), &statement)).unwrap();
        attach_bundle(&client, &image, &digest, &bundle, Some(EMPTY_MEDIA_TYPE)).await;
        cosign_images.push(image);
    }
    let yaml = format!(
        "{}{}{}",
        attestor_yaml("release", &generated.public_key_pem()),
        policy(&host, "strict", "strict", "Default"),
        policy(&host, "loose", "loose", "Simple"),
    );
    let webhook = TestWebhook::start(
        policy_state_of(&yaml, NoMatch::Allow),
        settings(Duration::from_secs(8)),
        None,
    )
    .await;

    let answer = webhook
        .review("/validate", pod_review(&signet_image.to_string()))
        .await;
    assert_eq!(answer["allowed"], true, "{answer}");
    assert_eq!(signet_digest.len(), 71);
    let answer = webhook
        .review("/validate", pod_review(&cosign_images[1].to_string()))
        .await;
    assert_eq!(answer["allowed"], true, "{answer}");
    let answer = webhook
        .review("/validate", pod_review(&cosign_images[0].to_string()))
        .await;
    assert_eq!(answer["allowed"], false, "{answer}");
    let message = answer["status"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(&format!("release: {NO_TAG_BINDING_HINT}")),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn two_writers_racing_on_one_digest_lose_no_index_entry() {
    let registry = Registry::start();
    let dir = tempfile::tempdir().unwrap();
    let keys = [
        key(dir.path(), "a", Algorithm::EcdsaP256Sha256),
        key(dir.path(), "b", Algorithm::EcdsaP256Sha256),
    ];
    for round in 0..4 {
        let repo = format!("race{round}/app");
        let digest = registry
            .push_test_image(&repo, "v1", &format!("race-{round}"))
            .await;
        let image = ImageRef::parse(&format!("{}/{repo}:v1", registry.host())).unwrap();
        // Two stores: two processes' worth of locks, sharing nothing but the registry.
        let writers = keys.iter().map(|k| {
            let (image, digest) = (image.clone(), digest.clone());
            let store = SignatureStore::new(registry_client());
            let wanted = [Wanted {
                key: k.signing_key(),
                signature_type: SignatureType::Default,
                annotations: BTreeMap::new(),
            }];
            async move {
                let lock = store.lock(&image, &digest).await;
                store
                    .ensure_bundles(&lock, &image, &digest, None, &wanted, true)
                    .await
                    .unwrap()
            }
        });
        let reports = futures::future::join_all(writers).await;
        let entries = fallback_entries(&registry_client(), &image, &digest).await;
        assert_eq!(entries.len(), 2, "round {round}: {entries:?} {reports:?}");
        for k in &keys {
            let run = verify(&image.to_string(), k, "default", "text");
            assert_eq!(run.code, 0, "round {round}: {}", run.stdout);
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_referrers_api_path_finds_bundles_without_a_fallback_index() {
    let registry = Registry::start();
    let front = ReferrersFront::start(&registry.host(), &registry.storage_dir());
    let dir = tempfile::tempdir().unwrap();
    let release = key(dir.path(), "release", Algorithm::EcdsaP256Sha256);
    let digest = registry.push_test_image("api/app", "v1", "api").await;
    let through_front = format!("{}/api/app:v1", front.host());
    let run = sign(&through_front, &release, "simple", Some("SigstoreBundle"));
    assert_eq!(run.code, 0, "{}", run.stderr);
    // The front answered the bundle's push with OCI-Subject: no fallback index was written.
    let direct = ImageRef::parse(&format!("{}/api/app:v1", registry.host())).unwrap();
    assert!(
        fallback_entries(&registry_client(), &direct, &digest)
            .await
            .is_empty()
    );
    front.clear();
    let run = verify(&through_front, &release, "simple", "json");
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert_eq!(
        formats_found(&json_of(&run)),
        BTreeMap::from([("SigstoreBundle".to_string(), vec![true])])
    );
    let requests = front.requests();
    assert!(
        requests.contains(&format!("GET /v2/api/app/referrers/{digest}")),
        "{requests:?}"
    );
    // Directly, without the API and without a fallback index, there is nothing to find.
    let run = verify(&direct.to_string(), &release, "simple", "text");
    assert_eq!(run.code, 1, "{}", run.stdout);
    assert!(run.stdout.contains("no signature"), "{}", run.stdout);
}

#[tokio::test(flavor = "multi_thread")]
async fn one_push_gives_one_bundle_and_one_sig_layer_whatever_the_events() {
    use support::signer::{
        RunningSigner, TOKEN, bundle_count, loopback_listener, metric, rule, signature_count,
    };
    let dir = tempfile::tempdir().unwrap();
    let release = key(dir.path(), "release", Algorithm::EcdsaP256Sha256);
    let listener = loopback_listener();
    let port = listener.local_addr().unwrap().port();
    let registry =
        Registry::start_with_notifications(&format!("http://127.0.0.1:{port}/events"), TOKEN);
    let host = registry.host();
    let rules = vec![rule(
        "release",
        &[format!("{host}/prod/**")],
        &release,
        SignatureType::Default,
        signet::crd::Trigger::Automatic,
    )];
    let running = RunningSigner::start(listener, rules, None).await;
    let digest = registry.push_test_image("prod/app", "v1", "loop").await;
    support::signer::wait_for_both_formats(
        &registry,
        "prod/app:v1",
        &digest,
        Duration::from_secs(20),
    )
    .await;
    // Let the events of signet's own pushes (the .sig tag, the bundle by digest, the fallback
    // index tag), the registry's retries and the recheck play out.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(signature_count(&registry, "prod/app:v1", &digest).await, 1);
    assert_eq!(bundle_count(&registry, "prod/app:v1", &digest).await, 1);
    let image = ImageRef::parse(&format!("{host}/prod/app:v1")).unwrap();
    assert_eq!(
        fallback_entries(&registry_client(), &image, &digest)
            .await
            .len(),
        1
    );
    let mut tags = registry_client().list_tags(&image).await.unwrap();
    tags.sort();
    let hex = digest.trim_start_matches("sha256:");
    assert_eq!(
        tags,
        [
            format!("sha256-{hex}"),
            format!("sha256-{hex}.sig"),
            "v1".to_string()
        ]
    );
    let text: String = running
        .metrics()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(
        metric(&text, "signet_signer_bundles_written_total"),
        1,
        "{text}"
    );
    assert!(
        metric(
            &text,
            "signet_signer_events_ignored_total{reason=\"artifact_tag\"}"
        ) >= 2,
        "{text}"
    );
    assert!(
        metric(
            &text,
            "signet_signer_events_ignored_total{reason=\"referrer\"}"
        ) >= 1,
        "{text}"
    );
    assert_eq!(
        metric(
            &text,
            "signet_signer_skipped_total{reason=\"default_needs_tag\"}"
        ),
        0,
        "{text}"
    );
    running.stop().await;
}
