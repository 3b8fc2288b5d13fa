//! What signing and verifying cost in registry requests, against Debian's `docker-registry` 2.8
//! (no referrers API, so the fallback index `sha256-<hex>`; no single-request blob upload, so a
//! POST and a PUT per new blob). What a user checks: "verifying an image costs at most N
//! requests", "signing one pushed image costs at most M". Requests are counted by a recording
//! proxy in front of the registry (verification) and by the signer's own client (signing).
//!
//! Verification reads in stages (src/admission/lookup.rs): the `.sig` tag first when a key can
//! satisfy the policy, the referrers only when that does not settle the verdict. Each case
//! below asserts the verdict and the formats that satisfied it as well as the count.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use serde_json::json;
use signet::crypto::x509::TrustStore;
use signet::crypto::{Algorithm, PublicKey};
use signet::reference::ImageRef;
use signet::registry::SignatureStore;
use signet::signature::{SignatureFormat, SignatureType};

use signet::cli::verify_keys::{Against, verify_reading};
use signet::policy::NoMatch;
use support::bundle::fallback_tag;
use support::notation::SelfSignedNotary;
use support::signer::{TestKey, key};
use support::webhook::{
    TestWebhook, attestor_yaml, pod_review, policy_state_of, registry_client, settings,
};
use support::{CorruptingProxy, Registry};

/// `signet verify --all-signatures` of `image` under `keys` and `trust` (a `Simple` signature),
/// with a new client: every store read.
async fn read_every_store(
    image: &ImageRef,
    keys: &[signet::crypto::PublicKey],
    trust: &[&TrustStore],
) -> signet::cli::verify_keys::KeyVerification {
    let required = signet::cli::verify_keys::RequiredAnnotations::default();
    verify_reading(
        &SignatureStore::new(registry_client()),
        image,
        &Against {
            signature_type: SignatureType::Simple,
            keys,
            trust,
            required: &required,
        },
        true,
    )
    .await
    .unwrap()
}

/// Signs `repo:v1` of `registry` with `key` in `formats` (Simple), as `signet sign` does.
async fn sign(registry: &Registry, repo: &str, key: &TestKey, formats: &[SignatureFormat]) {
    registry.push_test_image(repo, "v1", repo).await;
    let image = ImageRef::parse(&format!("{}/{repo}:v1", registry.host())).unwrap();
    support::signer::sign_simple(
        &SignatureStore::new(registry_client()),
        &image,
        key,
        formats,
    )
    .await;
}

/// What one cold verification cost and found.
#[derive(Debug)]
struct Cost {
    requests: usize,
    valid: Vec<SignatureFormat>,
    not_read: Vec<SignatureFormat>,
}

/// Verifies each of `images` (through `proxy`) with one verifier, as one `signet verify`
/// process would; returns the requests each cost and the formats found valid and not read.
async fn cold_costs(
    proxy: &CorruptingProxy,
    images: &[String],
    keys: &[PublicKey],
    trust: &[&TrustStore],
) -> Vec<Cost> {
    let verifier = SignatureStore::new(registry_client());
    let required = signet::cli::verify_keys::RequiredAnnotations::default();
    let against = Against {
        signature_type: SignatureType::Simple,
        keys,
        trust,
        required: &required,
    };
    let mut costs = Vec::new();
    for image in images {
        let before = proxy.request_lines().len();
        let image = ImageRef::parse(&format!("{}/{image}", proxy.host())).unwrap();
        let verdict = verify_reading(&verifier, &image, &against, false)
            .await
            .unwrap();
        assert!(verdict.verified, "{image}: {verdict:?}");
        let valid = verdict
            .signatures
            .iter()
            .filter(|s| s.valid)
            .map(|s| s.format)
            .collect();
        let lines = proxy.request_lines();
        eprintln!("{image}: {:?}", &lines[before..]);
        costs.push(Cost {
            requests: lines.len() - before,
            valid,
            not_read: verdict.formats_not_read,
        });
    }
    costs
}

#[tokio::test(flavor = "multi_thread")]
async fn cold_verification_of_both_cosign_formats_reads_the_sig_only_three_requests() {
    let registry = Registry::start();
    let dir = tempfile::tempdir().unwrap();
    let release = key(dir.path(), "release", Algorithm::EcdsaP256Sha256);
    let proxy = CorruptingProxy::recording(&registry.host());
    for repo in ["cost/a", "cost/b"] {
        sign(&registry, repo, &release, &SignatureFormat::ALL).await;
    }
    let images = ["cost/a:v1".to_string(), "cost/b:v1".to_string()];
    let costs = cold_costs(&proxy, &images, &[release.public_key()], &[]).await;
    for cost in &costs {
        assert_eq!(cost.valid, [SignatureFormat::CosignSignature], "{cost:?}");
        assert_eq!(
            cost.not_read,
            [SignatureFormat::SigstoreBundle, SignatureFormat::Notation],
            "{cost:?}"
        );
        // The tag (one GET), the .sig manifest and its payload: the referrers are not asked,
        // so a registry's first image costs no more (no referrers API probe).
        assert!(
            cost.requests <= 3,
            "{costs:?}: {:#?}",
            proxy.request_lines()
        );
    }
    // Both formats are there: `--all-signatures` reads and verifies both (the full read: the
    // 3 above, the fallback index, the bundle manifest and the bundle, and the referrers API
    // probe of this new client's first image).
    let before = proxy.request_lines().len();
    let keys = [release.public_key()];
    let every = read_every_store(
        &ImageRef::parse(&format!("{}/cost/b:v1", proxy.host())).unwrap(),
        &keys,
        &[],
    )
    .await;
    let valid: Vec<_> = every
        .signatures
        .iter()
        .filter(|s| s.valid)
        .map(|s| s.format)
        .collect();
    assert_eq!(valid, SignatureFormat::ALL);
    assert!(every.formats_not_read.is_empty());
    let full = proxy.request_lines().len() - before;
    assert!(
        (6..=7).contains(&full),
        "{full}: {:#?}",
        proxy.request_lines()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn cold_verification_of_a_bundle_alone_as_cosign_v3_writes_costs_five_requests() {
    let registry = Registry::start();
    let dir = tempfile::tempdir().unwrap();
    let release = key(dir.path(), "release", Algorithm::EcdsaP256Sha256);
    let proxy = CorruptingProxy::recording(&registry.host());
    for repo in ["v3/a", "v3/b"] {
        sign(
            &registry,
            repo,
            &release,
            &[SignatureFormat::SigstoreBundle],
        )
        .await;
    }
    let images = ["v3/a:v1".to_string(), "v3/b:v1".to_string()];
    let costs = cold_costs(&proxy, &images, &[release.public_key()], &[]).await;
    for cost in &costs {
        assert_eq!(cost.valid, [SignatureFormat::SigstoreBundle], "{cost:?}");
        assert!(cost.not_read.is_empty(), "{cost:?}");
    }
    // The tag, the .sig (404), the fallback index, the bundle manifest and the bundle; the
    // first image of a registry also asks the referrers API (404: distribution 2.8 lacks it).
    assert!(
        costs[0].requests <= 6,
        "{costs:?}: {:#?}",
        proxy.request_lines()
    );
    assert!(
        costs[1].requests <= 5,
        "{costs:?}: {:#?}",
        proxy.request_lines()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn cold_verification_against_certificates_only_reads_the_referrers_first() {
    let registry = Registry::start();
    let dir = tempfile::tempdir().unwrap();
    let release = key(dir.path(), "release", Algorithm::EcdsaP256Sha256);
    let notary = SelfSignedNotary::new("CN=release,O=signet,C=FR");
    let client = registry_client();
    let proxy = CorruptingProxy::recording(&registry.host());
    let mut images = Vec::new();
    for repo in ["mixed/a", "mixed/b"] {
        sign(
            &registry,
            repo,
            &release,
            &[SignatureFormat::CosignSignature],
        )
        .await;
        let image = ImageRef::parse(&format!("{}/{repo}:v1", registry.host())).unwrap();
        let digest = client.resolve_digest(&image).await.unwrap();
        notary.attach(&client, &image, &digest, false).await;
        images.push(format!("{repo}:v1"));
    }
    let trust = TrustStore::new(&notary.certificate_pem, &[], None).unwrap();
    let costs = cold_costs(&proxy, &images, &[], &[&trust]).await;
    for cost in &costs {
        assert_eq!(cost.valid, [SignatureFormat::Notation], "{cost:?}");
        assert_eq!(
            cost.not_read,
            [SignatureFormat::CosignSignature],
            "{cost:?}"
        );
    }
    // The tag (a GET, whose media type and size the Notation payload is checked against), the
    // fallback index, the signature manifest and the envelope; not the .sig.
    assert!(
        costs[0].requests <= 5,
        "{costs:?}: {:#?}",
        proxy.request_lines()
    );
    assert!(
        costs[1].requests <= 4,
        "{costs:?}: {:#?}",
        proxy.request_lines()
    );
}

/// An Attestor holding `pem` as its certificate trust anchors.
fn anchors_attestor_yaml(name: &str, pem: &str) -> String {
    let pem: String = pem.lines().map(|l| format!("      {l}\n")).collect();
    format!(
        "apiVersion: signet.dev/v1alpha1\nkind: Attestor\nmetadata:\n  name: {name}\nspec:\n  keys:\n  \
         - id: {name}-ca\n    certificates: |\n{pem}"
    )
}

/// A VerificationPolicy in `namespace` over `images`, `required` of `attestors` (Simple).
fn namespaced_policy(namespace: &str, images: &str, attestors: &str, required: usize) -> String {
    format!(
        "---\napiVersion: signet.dev/v1alpha1\nkind: VerificationPolicy\nmetadata:\n  name: p\n  namespace: {namespace}\n\
         spec:\n  images: [\"{images}\"]\n  attestors: [{attestors}]\n  required: {required}\n  signatureType: Simple\n"
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_required_two_policy_of_a_key_and_a_certificate_reads_both_stores_and_names_each_format()
{
    let registry = Registry::start();
    let dir = tempfile::tempdir().unwrap();
    let release = key(dir.path(), "release", Algorithm::EcdsaP256Sha256);
    let notary = SelfSignedNotary::new("CN=release,O=signet,C=FR");
    let client = registry_client();
    let proxy = CorruptingProxy::recording(&registry.host());
    for repo in ["two/a", "two/b"] {
        sign(
            &registry,
            repo,
            &release,
            &[SignatureFormat::CosignSignature],
        )
        .await;
        let image = ImageRef::parse(&format!("{}/{repo}:v1", registry.host())).unwrap();
        let digest = client.resolve_digest(&image).await.unwrap();
        notary.attach(&client, &image, &digest, false).await;
    }
    let yaml = format!(
        "{}---\n{}{}",
        attestor_yaml(
            "release",
            &std::fs::read_to_string(&release.public).unwrap()
        ),
        anchors_attestor_yaml("notary", &notary.certificate_pem),
        namespaced_policy(
            "shop",
            &format!("{}/two/**", proxy.host()),
            "release, notary",
            2
        ),
    );
    let state = policy_state_of(&yaml, NoMatch::Allow);
    let snapshot = state.snapshot();
    let store = SignatureStore::new(registry_client());
    let mut costs = Vec::new();
    for repo in ["two/a", "two/b"] {
        let before = proxy.request_lines().len();
        let image = ImageRef::parse(&format!("{}/{repo}:v1", proxy.host())).unwrap();
        let checked =
            signet::cli::verify_policy::verify_with_policies(&store, &snapshot, "shop", &image)
                .await;
        let verdict = &checked.verdict;
        assert!(verdict.allowed, "{verdict:#?}");
        let formats: Vec<_> = verdict.policies[0]
            .attestors
            .iter()
            .map(|a| (a.name.as_str(), a.format))
            .collect();
        assert_eq!(
            formats,
            [
                ("release", Some(SignatureFormat::CosignSignature)),
                ("notary", Some(SignatureFormat::Notation))
            ]
        );
        assert!(checked.formats_not_read.is_empty());
        let lines = proxy.request_lines();
        eprintln!("{image}: {:?}", &lines[before..]);
        costs.push(lines.len() - before);
    }
    // Both stores at once: the tag, the .sig and its payload, the fallback index, the
    // signature manifest and the envelope (and the referrers API probe the first time).
    assert!(costs[0] <= 7, "{costs:?}: {:#?}", proxy.request_lines());
    assert!(costs[1] <= 6, "{costs:?}: {:#?}", proxy.request_lines());
}

/// `pod_review(image)` in `namespace`.
/// A webhook over `images` whose namespace `shop` needs the `release` key and whose namespace
/// `orders` needs it and a second attestor, `(name, YAML)`.
async fn shop_and_orders_webhook(
    images: &str,
    release: &TestKey,
    (second, second_yaml): (&str, String),
) -> TestWebhook {
    let yaml = format!(
        "{}---\n{second_yaml}{}{}",
        attestor_yaml(
            "release",
            &std::fs::read_to_string(&release.public).unwrap()
        ),
        namespaced_policy("shop", images, "release", 1),
        namespaced_policy("orders", images, &format!("release, {second}"), 2),
    );
    TestWebhook::start(
        policy_state_of(&yaml, NoMatch::Allow),
        settings(Duration::from_secs(8)),
        None,
    )
    .await
}

fn pod_review_in(namespace: &str, image: &str) -> Vec<u8> {
    let mut review: serde_json::Value = serde_json::from_slice(&pod_review(image)).unwrap();
    review["request"]["namespace"] = json!(namespace);
    review["request"]["object"]["metadata"]["namespace"] = json!(namespace);
    serde_json::to_vec(&review).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_webhook_reads_the_referrers_only_for_the_policy_that_needs_them() {
    let registry = Registry::start();
    let dir = tempfile::tempdir().unwrap();
    let release = key(dir.path(), "release", Algorithm::EcdsaP256Sha256);
    let notary = SelfSignedNotary::new("CN=release,O=signet,C=FR");
    let client = registry_client();
    let proxy = CorruptingProxy::recording(&registry.host());
    // Signed in both cosign formats, plus a Notation signature.
    sign(&registry, "web/app", &release, &SignatureFormat::ALL).await;
    let direct = ImageRef::parse(&format!("{}/web/app:v1", registry.host())).unwrap();
    let digest = client.resolve_digest(&direct).await.unwrap();
    notary.attach(&client, &direct, &digest, false).await;
    let images = format!("{}/web/**", proxy.host());
    let webhook = shop_and_orders_webhook(
        &images,
        &release,
        (
            "notary",
            anchors_attestor_yaml("notary", &notary.certificate_pem),
        ),
    )
    .await;
    let image = format!("{}/web/app:v1", proxy.host());

    // `shop` needs the key only: the tag, the .sig and its payload.
    let answer = webhook
        .review("/validate", pod_review_in("shop", &image))
        .await;
    assert_eq!(answer["allowed"], true, "{answer}");
    let first = proxy.request_lines();
    eprintln!("shop (key policy): {} requests: {first:?}", first.len());
    assert!(first.len() <= 3, "{first:#?}");
    assert!(
        first.iter().any(|l| l.contains(".sig")) && !first.iter().any(|l| l.contains("referrers")),
        "{first:#?}"
    );
    let fallback = fallback_tag(&digest);
    assert!(!first.iter().any(|l| l.ends_with(&fallback)), "{first:#?}");

    // `orders` needs the Notation signature too: only the referrers are read now (the digest
    // and the .sig come from the caches the first admission filled), once for 20 concurrent
    // admissions.
    let webhook = std::sync::Arc::new(webhook);
    let answers = futures::future::join_all((0..20).map(|_| {
        let webhook = std::sync::Arc::clone(&webhook);
        let body = pod_review_in("orders", &image);
        async move { webhook.review("/validate", body).await }
    }))
    .await;
    for answer in &answers {
        assert_eq!(answer["allowed"], true, "{answer}");
    }
    let lines = proxy.request_lines();
    let second = &lines[first.len()..];
    eprintln!("orders (required 2): {} requests: {second:?}", second.len());
    assert!(!second.iter().any(|l| l.contains(".sig")), "{second:#?}");
    assert!(!second.iter().any(|l| l.ends_with(":v1")), "{second:#?}");
    assert!(second.iter().any(|l| l.ends_with(&fallback)), "{second:#?}");
    // The referrers API probe, the index, the bundle's and the Notation signature's manifests
    // and blobs, each once.
    assert!(second.len() <= 6, "{second:#?}");
    let distinct: std::collections::BTreeSet<&String> = second.iter().collect();
    assert_eq!(distinct.len(), second.len(), "{second:#?}");

    // The other way round on a new image: `orders` first reads both stores; `shop` then finds
    // everything cached (whichever policy asked first, the same verdicts).
    sign(&registry, "web/other", &release, &SignatureFormat::ALL).await;
    let direct = ImageRef::parse(&format!("{}/web/other:v1", registry.host())).unwrap();
    let digest = client.resolve_digest(&direct).await.unwrap();
    notary.attach(&client, &direct, &digest, false).await;
    let other = format!("{}/web/other:v1", proxy.host());
    let answer = webhook
        .review("/validate", pod_review_in("orders", &other))
        .await;
    assert_eq!(answer["allowed"], true, "{answer}");
    let before = proxy.request_lines().len();
    let answer = webhook
        .review("/validate", pod_review_in("shop", &other))
        .await;
    assert_eq!(answer["allowed"], true, "{answer}");
    assert_eq!(
        proxy.request_lines().len(),
        before,
        "{:#?}",
        proxy.request_lines()
    );

    // And a signature the policy does not accept is still a denial after a staged read: a
    // `required: 2` policy on an image with the key's signature only.
    sign(&registry, "web/keyonly", &release, &SignatureFormat::ALL).await;
    let answer = webhook
        .review(
            "/validate",
            pod_review_in("orders", &format!("{}/web/keyonly:v1", proxy.host())),
        )
        .await;
    assert_eq!(answer["allowed"], false, "{answer}");
    let message = answer["status"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("1 of 2 required attestors"), "{message}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_notation_envelope_whose_chain_names_no_trusted_anchor_is_not_downloaded() {
    let registry = Registry::start();
    let dir = tempfile::tempdir().unwrap();
    let release = key(dir.path(), "release", Algorithm::EcdsaP256Sha256);
    let trusted = SelfSignedNotary::new("CN=release,O=signet,C=FR");
    let stranger = SelfSignedNotary::new("CN=stranger,O=elsewhere,C=FR");
    let client = registry_client();
    let proxy = CorruptingProxy::recording(&registry.host());
    sign(
        &registry,
        "skip/app",
        &release,
        &[SignatureFormat::CosignSignature],
    )
    .await;
    let image = ImageRef::parse(&format!("{}/skip/app:v1", registry.host())).unwrap();
    let digest = client.resolve_digest(&image).await.unwrap();
    let envelope = stranger.attach(&client, &image, &digest, false).await;
    let trust = TrustStore::new(&trusted.certificate_pem, &[], None).unwrap();
    let through = ImageRef::parse(&format!("{}/skip/app:v1", proxy.host())).unwrap();
    // Every store read (`--all-signatures`): by default the .sig settles it and the referrers
    // are not read at all.
    let keys = [release.public_key()];
    let verdict = read_every_store(&through, &keys, &[&trust]).await;
    assert!(verdict.verified);
    assert!(
        verdict
            .skipped
            .to_string()
            .contains("none of the trust anchors"),
        "{}",
        verdict.skipped
    );
    let lines = proxy.request_lines();
    assert!(
        !lines.iter().any(|l| l.contains(&envelope)),
        "the envelope was fetched: {lines:#?}"
    );
    // With the signer's own anchor, the same signature is read and verifies.
    let anchors = format!("{}{}", trusted.certificate_pem, stranger.certificate_pem);
    let both = TrustStore::new(&anchors, &[], None).unwrap();
    let verdict = read_every_store(&through, &keys, &[&both]).await;
    assert!(
        verdict
            .signatures
            .iter()
            .any(|s| s.format == SignatureFormat::Notation && s.valid),
        "{:?}",
        verdict.signatures
    );
}

/// The signer's requests for one image, without the GETs of the pushed tag asked again while
/// distribution, which notifies before it links the tag, had not linked it yet (the first GET
/// of the tag is kept); and how many of those there were.
#[tokio::test(flavor = "multi_thread")]
async fn a_store_that_fails_when_it_is_needed_fails_closed() {
    use support::{Fault, FaultSwitch, ProxyOptions};
    let registry = Registry::start();
    let dir = tempfile::tempdir().unwrap();
    let release = key(dir.path(), "release", Algorithm::EcdsaP256Sha256);
    let qa = key(dir.path(), "qa", Algorithm::EcdsaP256Sha256);
    let faults = FaultSwitch::default();
    let proxy = CorruptingProxy::start_with(
        &registry.host(),
        ProxyOptions {
            faults: faults.clone(),
            ..ProxyOptions::passthrough()
        },
    );
    sign(
        &registry,
        "fail/app",
        &release,
        &[SignatureFormat::CosignSignature],
    )
    .await;
    let images = format!("{}/fail/**", proxy.host());
    let qa_yaml = attestor_yaml("qa", &std::fs::read_to_string(&qa.public).unwrap());
    let webhook = shop_and_orders_webhook(&images, &release, ("qa", qa_yaml)).await;
    let image = format!("{}/fail/app:v1", proxy.host());
    // `shop`: the .sig settles it; the digest and the .sig are now cached.
    let answer = webhook
        .review("/validate", pod_review_in("shop", &image))
        .await;
    assert_eq!(answer["allowed"], true, "{answer}");
    // The registry now fails every request. `orders` needs a second key: the .sig (cached) does
    // not settle it, the referrers must be read, and that read fails: denied, saying why, not
    // judged on the .sig alone.
    faults.set(Fault::InternalError);
    let answer = webhook
        .review("/validate", pod_review_in("orders", &image))
        .await;
    assert_eq!(answer["allowed"], false, "{answer}");
    let message = answer["status"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("registry lookup failed"), "{message}");
    assert!(
        proxy
            .request_lines()
            .iter()
            .any(|l| l.contains("referrers") || l.contains("sha256-")),
        "{:#?}",
        proxy.request_lines()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_policy_settled_by_the_sig_says_what_it_did_not_read() {
    let registry = Registry::start();
    let dir = tempfile::tempdir().unwrap();
    let release = key(dir.path(), "release", Algorithm::EcdsaP256Sha256);
    let qa = key(dir.path(), "qa", Algorithm::EcdsaP256Sha256);
    let proxy = CorruptingProxy::recording(&registry.host());
    sign(&registry, "said/app", &release, &SignatureFormat::ALL).await;
    let yaml = format!(
        "{}---\n{}{}",
        attestor_yaml(
            "release",
            &std::fs::read_to_string(&release.public).unwrap()
        ),
        attestor_yaml("qa", &std::fs::read_to_string(&qa.public).unwrap()),
        namespaced_policy(
            "shop",
            &format!("{}/said/**", proxy.host()),
            "release, qa",
            1
        ),
    );
    let snapshot = policy_state_of(&yaml, NoMatch::Allow).snapshot();
    let image = ImageRef::parse(&format!("{}/said/app:v1", proxy.host())).unwrap();
    let checked = signet::cli::verify_policy::verify_with_policies(
        &SignatureStore::new(registry_client()),
        &snapshot,
        "shop",
        &image,
    )
    .await;
    assert!(checked.verdict.allowed, "{:#?}", checked.verdict);
    assert_eq!(
        checked.formats_not_read,
        [SignatureFormat::SigstoreBundle, SignatureFormat::Notation]
    );
    let json = serde_json::to_value(&checked).unwrap();
    assert_eq!(
        json["formatsNotRead"],
        json!(["SigstoreBundle", "Notation"]),
        "{json}"
    );
    let attestors = &checked.verdict.policies[0].attestors;
    assert_eq!(attestors[0].format, Some(SignatureFormat::CosignSignature));
    // qa was not needed (`required: 1`): not reported as unsigned, but as not checked.
    let reason = attestors[1].reason.as_deref().unwrap_or_default();
    assert!(
        reason.starts_with("not checked") && reason.contains("SigstoreBundle"),
        "{reason}"
    );
    assert_eq!(
        proxy.request_lines().len(),
        3,
        "{:#?}",
        proxy.request_lines()
    );
}
