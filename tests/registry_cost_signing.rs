//! What signing costs in registry requests, against Debian's `docker-registry` 2.8 (no referrers
//! API, so the fallback index `sha256-<hex>`; no single-request blob upload, so a POST and a PUT
//! per new blob), and through a front that gives it both. What a user checks: "signing one pushed
//! image costs at most M requests". Requests are counted by a recording proxy in front of the
//! registry. Verification costs are in `registry_cost.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use signet::crypto::Algorithm;
use signet::reference::ImageRef;
use signet::registry::{RegistryClient, SignatureStore, sha256_digest};
use signet::signature::{SignatureFormat, SignatureType};

use signet::cli::verify_keys::{Against, verify_reading};
use support::bundle::{OCI_MANIFEST, fallback_entries};
use support::signer::{TestKey, key, sign_simple, wait_for_both_formats};
use support::webhook::registry_client;
use support::{CorruptingProxy, Registry};

fn without_tag_polls(lines: &[String], repo: &str, tag: &str) -> (Vec<String>, usize) {
    let by_tag = format!("GET /v2/{repo}/manifests/{tag}");
    let polls = lines
        .iter()
        .filter(|l| **l == by_tag)
        .count()
        .saturating_sub(1);
    let mut seen = false;
    let kept = lines
        .iter()
        .filter(|l| **l != by_tag || !std::mem::replace(&mut seen, true))
        .cloned()
        .collect();
    (kept, polls)
}

/// How many times the registry's log says a notification delivery failed (timed out).
fn failed_deliveries(log: &str) -> usize {
    log.lines()
        .filter(|line| line.contains("timeout") || line.contains("deadline"))
        .count()
}

/// A registry notifying an in-process signer (one `Default` rule over `prod/**`, both formats,
/// key `release`) that reaches the registry through a recording proxy (the events' host mapped
/// to the proxy's): every request the signer sends is seen.
async fn signer_behind_recording_proxy(
    release: &TestKey,
) -> (
    Registry,
    CorruptingProxy,
    signet::serve::Server,
    support::FaultSwitch,
) {
    use signet::signer::{AddressMap, BearerToken, Signer, SignerOptions};
    use support::signer::{TOKEN, fixed_policy, loopback_listener, rule};
    let listener = loopback_listener();
    let port = listener.local_addr().unwrap().port();
    let registry =
        Registry::start_with_notifications(&format!("http://127.0.0.1:{port}/events"), TOKEN);
    let faults = support::FaultSwitch::default();
    let proxy = CorruptingProxy::start_with(
        &registry.host(),
        support::ProxyOptions {
            faults: faults.clone(),
            ..support::ProxyOptions::passthrough()
        },
    );
    let rules = vec![rule(
        "release",
        &[format!("{}/prod/**", proxy.host())],
        release,
        SignatureType::Default,
        signet::crd::Trigger::Automatic,
    )];
    let options = SignerOptions {
        aliases: AddressMap::parse(&[format!("{}={}", registry.host(), proxy.host())]).unwrap(),
        ..SignerOptions::default()
    };
    let signer = Signer::new(
        SignatureStore::new(registry_client()),
        fixed_policy(rules),
        options,
    );
    signer.open_keys().await.unwrap();
    let server = signet::serve::Server::start(
        "signer",
        listener,
        signet::signer::router(signer.clone(), BearerToken::new(TOKEN).unwrap()),
        None,
        &signet::serve::Drain::new(),
    )
    .unwrap();
    (registry, proxy, server, faults)
}

/// The signer's first reads (the `.sig`, the fallback index) go out with the check of the
/// pushed manifest, not after its answer: one round trip less on the path the registry's
/// notification queue waits on. Every answer is held 120 ms, so a request sent after another's
/// answer arrives at least 120 ms after it; the blob uploads, which need the check, still wait.
/// (Longer holds pass the test registry's 1 s notification timeout: the registry then drops the
/// delivery, which cancels the signer's work, and sends the event again.)
#[tokio::test(flavor = "multi_thread")]
async fn the_signers_first_reads_go_out_with_the_manifest_check() {
    use support::Fault;
    let dir = tempfile::tempdir().unwrap();
    let release = key(dir.path(), "release", Algorithm::EcdsaP256Sha256);
    let (registry, proxy, server, faults) = signer_behind_recording_proxy(&release).await;
    let hold = Duration::from_millis(120);
    faults.set(Fault::Slow(hold));
    let digest = registry
        .push_test_image("prod/overlap", "v1", "overlap")
        .await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while support::signer::signature_count(&registry, "prod/overlap:v1", &digest).await < 1 {
        assert!(std::time::Instant::now() < deadline, "not signed in 30 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    faults.set(Fault::None);
    let requests = proxy.requests();
    let hex = digest.trim_start_matches("sha256:");
    let arrival = |method: &str, target: &str| {
        requests
            .iter()
            .find(|r| r.method == method && r.target == target)
            .unwrap_or_else(|| panic!("no {method} {target}: {:#?}", proxy.request_lines()))
            .at
    };
    let check = arrival("GET", "/v2/prod/overlap/manifests/v1");
    let sig = format!("/v2/prod/overlap/manifests/sha256-{hex}.sig");
    let after = arrival("GET", &sig).duration_since(check);
    assert!(
        after < hold,
        "{sig} sent {after:?} after the check: waited for its answer"
    );
    // The referrers: this registry's first image asks the referrers API first (then the
    // fallback index, after that answer).
    let probe = format!("/v2/prod/overlap/referrers/{digest}");
    let after = arrival("GET", &probe).duration_since(check);
    assert!(
        after < hold,
        "{probe} sent {after:?} after the check: waited for its answer"
    );
    let first_upload = requests
        .iter()
        .find(|r| r.method == "POST" && r.target.contains("/blobs/uploads/"))
        .expect("an upload");
    assert!(first_upload.at.duration_since(check) >= hold);
    server.stop().await.unwrap();
}

/// A delivery the registry gives up on still signs: with every answer held 400 ms, signing takes
/// longer than the test registry's 1 s notification timeout, so the registry drops each delivery
/// (and sends the event again later). The signing runs on, writes one `.sig` layer and one
/// bundle, and the next delivery finds them there.
#[tokio::test(flavor = "multi_thread")]
async fn a_delivery_the_registry_gives_up_on_still_signs() {
    use support::Fault;
    use support::signer::{bundle_count, signature_count};
    let dir = tempfile::tempdir().unwrap();
    let release = key(dir.path(), "release", Algorithm::EcdsaP256Sha256);
    let (registry, _proxy, server, faults) = signer_behind_recording_proxy(&release).await;
    faults.set(Fault::Slow(Duration::from_millis(400)));
    let digest = registry.push_test_image("prod/slow", "v1", "slow").await;
    wait_for_both_formats(&registry, "prod/slow:v1", &digest, Duration::from_secs(30)).await;
    assert!(
        failed_deliveries(&registry.log()) > 0,
        "the registry did not give up on a delivery: the test shows nothing"
    );
    // The registry's next delivery adds nothing.
    tokio::time::sleep(Duration::from_secs(3)).await;
    faults.set(Fault::None);
    assert_eq!(signature_count(&registry, "prod/slow:v1", &digest).await, 1);
    assert_eq!(bundle_count(&registry, "prod/slow:v1", &digest).await, 1);
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn signing_a_pushed_image_in_both_formats_costs_ten_requests_eleven_in_a_new_repository() {
    let dir = tempfile::tempdir().unwrap();
    let release = key(dir.path(), "release", Algorithm::EcdsaP256Sha256);
    let (registry, proxy, server, _) = signer_behind_recording_proxy(&release).await;
    let mut costs = Vec::new();
    let mut images_with_repeated_reads = 0;
    // The first image of a registry also learns that it takes no single-request upload and
    // uploads the empty config; then a new repository (the config mounted), then a second
    // image in a repository signed before (nothing for the config).
    for (repo, tag) in [
        ("prod/first", "v1"),
        ("prod/second", "v1"),
        ("prod/second", "v2"),
    ] {
        let before = proxy.request_lines().len();
        let digest = registry
            .push_test_image(repo, tag, &format!("{repo}:{tag}"))
            .await;
        let repo_tag = format!("{repo}:{tag}");
        wait_for_both_formats(&registry, &repo_tag, &digest, Duration::from_secs(20)).await;
        // Past the registry's events of the signer's own pushes, and past the 2 s after which
        // a timed recheck would look (one HEAD per tag written): with one instance, the events
        // tell it whether another writer replaced a tag, and its own cost nothing.
        tokio::time::sleep(Duration::from_millis(2600)).await;
        let lines = proxy.request_lines()[before..].to_vec();
        let (mut lines, polls) = without_tag_polls(&lines, repo, tag);
        // A loaded machine can make the signer read again what it read (a read retried after
        // a registry error, or the registry giving up on a delivery, its timeout is 1 s, and
        // sending the event again): reads of the same thing, never a write. Left out here and
        // counted; a signer that read everything twice by design would repeat in every image.
        let mut seen = std::collections::HashSet::new();
        let all = lines.len();
        lines.retain(|line| !line.starts_with("GET ") || seen.insert(line.clone()));
        if lines.len() < all {
            eprintln!("{repo_tag}: {} repeated reads left out", all - lines.len());
            images_with_repeated_reads += 1;
        }
        costs.push((lines, polls));
    }
    for (lines, polls) in &costs {
        eprintln!("{} requests (+{polls} tag polls): {lines:#?}", lines.len());
    }
    // 10: the manifest by its tag; `.sig`: its read, the payload (POST+PUT), the manifest;
    // bundle: the index read, the bundle (POST+PUT), the manifest, the index. The empty config
    // both name: one mounting POST in a repository new to the signer, nothing after. (12 and
    // 13 with the timed recheck several instances use: one HEAD per tag written.)
    assert_eq!(costs[1].0.len(), 11, "{:#?}", costs[1].0);
    assert_eq!(uploads_started(&costs[1].0), 3, "{:#?}", costs[1].0);
    assert_eq!(costs[2].0.len(), 10, "{:#?}", costs[2].0);
    assert!(
        !costs[2].0.iter().any(|line| line.starts_with("HEAD")),
        "{:#?}",
        costs[2].0
    );
    assert_eq!(uploads_started(&costs[2].0), 2, "{:#?}", costs[2].0);
    assert!(images_with_repeated_reads <= 1, "{costs:#?}");
    // The tag asked again: one here, up to three on a loaded machine.
    for (_, polls) in &costs[1..] {
        assert!(*polls <= 3, "{costs:#?}");
    }
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn where_the_registry_takes_one_request_uploads_and_lists_referrers_a_format_costs_five() {
    use support::referrers_front::ReferrersFront;
    // A stand-in for such a registry (none installable here): the front takes a blob in one
    // request (POST ?digest= with the bytes) and serves the referrers API from distribution
    // 2.8's storage; what it records is what signet sent.
    let registry = Registry::start();
    let front = ReferrersFront::with_single_post(&registry.host(), &registry.storage_dir());
    let dir = tempfile::tempdir().unwrap();
    let release = key(dir.path(), "release", Algorithm::EcdsaP256Sha256);
    let mut costs = Vec::new();
    for (repo, format) in [
        ("one/sig", SignatureFormat::CosignSignature),
        ("one/bundle", SignatureFormat::SigstoreBundle),
    ] {
        // One store per format, as one process: the second image is in a repository it has
        // written to.
        let store = SignatureStore::new(registry_client());
        for tag in ["v1", "v2"] {
            registry
                .push_test_image(repo, tag, &format!("{repo}:{tag}"))
                .await;
            let image = ImageRef::parse(&format!("{}/{repo}:{tag}", front.host())).unwrap();
            front.clear();
            sign_simple(&store, &image, &release, &[format]).await;
            costs.push((format, tag, front.requests()));
        }
    }
    for (format, tag, requests) in &costs {
        eprintln!(
            "{format:?} {tag}: {} requests: {requests:?}",
            requests.len()
        );
    }
    // One GET resolves the tag; then `.sig`: its GET, the payload in one POST, the manifest
    // PUT and the HEAD checking it: 5; bundle: the referrers API, the bundle in one POST, the
    // manifest PUT, answered with OCI-Subject (no index to keep): 4. The first image of a
    // repository also puts the empty config (one more POST).
    let count = |format, tag| {
        costs
            .iter()
            .find(|(f, t, _)| *f == format && *t == tag)
            .map(|(_, _, r)| r.len())
            .unwrap()
    };
    assert_eq!(
        count(SignatureFormat::CosignSignature, "v1"),
        6,
        "{costs:#?}"
    );
    assert_eq!(
        count(SignatureFormat::CosignSignature, "v2"),
        5,
        "{costs:#?}"
    );
    assert_eq!(
        count(SignatureFormat::SigstoreBundle, "v1"),
        5,
        "{costs:#?}"
    );
    assert_eq!(
        count(SignatureFormat::SigstoreBundle, "v2"),
        4,
        "{costs:#?}"
    );
    for tag in ["v1", "v2"] {
        let verified = signet::cli::verify_keys::verify_with_keys(
            &SignatureStore::new(registry_client()),
            &ImageRef::parse(&format!("{}/one/bundle:{tag}", front.host())).unwrap(),
            SignatureType::Simple,
            &[release.public_key()],
            &signet::cli::verify_keys::RequiredAnnotations::default(),
        )
        .await
        .unwrap();
        assert!(verified.verified, "{tag}");
    }
}

/// The config descriptor of the manifest `reference` names.
async fn config_of(client: &RegistryClient, reference: &ImageRef) -> serde_json::Value {
    let manifest = client
        .fetch_manifest(reference)
        .await
        .unwrap()
        .expect("manifest exists");
    let doc: serde_json::Value = serde_json::from_slice(&manifest.bytes).unwrap();
    doc["config"].clone()
}

/// Writes a `.sig` in cosign v2's layout (a config listing the layers as `rootfs.diff_ids`,
/// content-dependent) holding one signature of `image`@`digest` by `key`.
async fn write_cosign_sig(client: &RegistryClient, image: &ImageRef, digest: &str, key: &TestKey) {
    use signet::signature::{self, Descriptor};
    let payload =
        signature::build_payload(image, digest, SignatureType::Simple, &BTreeMap::new()).unwrap();
    let signed = key.signing_key().sign(&payload).unwrap();
    let layer = Descriptor::for_signature(&payload, &signed, &BTreeMap::new());
    let built = signature::build_signature_manifest(&[layer]).unwrap();
    let repo = image.with_tag("latest");
    client.push_blob(&repo, &payload).await.unwrap();
    client.push_blob(&repo, &built.config).await.unwrap();
    client
        .push_manifest(
            &image.with_tag(&signature::signature_tag(digest).unwrap()),
            &built.manifest,
            OCI_MANIFEST,
        )
        .await
        .unwrap();
}

/// How many blob uploads were started (`POST .../blobs/uploads/`) among `lines`.
fn uploads_started(lines: &[String]) -> usize {
    lines
        .iter()
        .filter(|l| l.starts_with("POST ") && l.contains("/blobs/uploads/"))
        .count()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_sig_names_one_fixed_config_put_once_per_repository_and_cosign_sigs_still_read() {
    let registry = Registry::start();
    let proxy = CorruptingProxy::recording(&registry.host());
    let dir = tempfile::tempdir().unwrap();
    let release = key(dir.path(), "release", Algorithm::EcdsaP256Sha256);
    let cosign = key(dir.path(), "cosign", Algorithm::EcdsaP256Sha256);
    let client = registry_client();
    // One store, as one signer process: it remembers which repositories hold the config.
    let store = SignatureStore::new(registry_client());
    let mut uploads = Vec::new();
    for (tag, seed) in [("v1", "fixed-1"), ("v2", "fixed-2")] {
        registry.push_test_image("fixed/app", tag, seed).await;
        let image = ImageRef::parse(&format!("{}/fixed/app:{tag}", proxy.host())).unwrap();
        let before = proxy.request_lines().len();
        sign_simple(&store, &image, &release, &SignatureFormat::ALL).await;
        uploads.push(uploads_started(&proxy.request_lines()[before..]));
    }
    // The first image: the payload, the bundle and the one config both formats name; the
    // second image in the same repository: the payload and the bundle only.
    assert_eq!(uploads, [3, 2], "{:#?}", proxy.request_lines());

    let image = ImageRef::parse(&format!("{}/fixed/app:v2", registry.host())).unwrap();
    let digest = client.resolve_digest(&image).await.unwrap();
    let empty = sha256_digest(b"{}");
    let sig = image.with_tag(&signet::signature::signature_tag(&digest).unwrap());
    let sig_config = config_of(&client, &sig).await;
    assert_eq!(sig_config["digest"], empty.as_str(), "{sig_config}");
    assert_eq!(sig_config["size"], 2);
    assert_eq!(
        sig_config["mediaType"],
        "application/vnd.oci.image.config.v1+json"
    );
    let bundles = fallback_entries(&client, &image, &digest).await;
    let bundle = ImageRef::from_parts(
        image.registry(),
        image.repository(),
        None,
        Some(bundles[0]["digest"].as_str().unwrap()),
    )
    .unwrap();
    assert_eq!(config_of(&client, &bundle).await["digest"], empty.as_str());
    let blob = client
        .fetch_blob(&image.with_tag("latest"), &empty, 16)
        .await
        .unwrap();
    assert_eq!(blob, b"{}");

    // A `.sig` cosign wrote (content config) is read, and signet's write keeps its layer.
    registry.push_test_image("fixed/app", "v3", "fixed-3").await;
    let image = ImageRef::parse(&format!("{}/fixed/app:v3", registry.host())).unwrap();
    let digest = client.resolve_digest(&image).await.unwrap();
    write_cosign_sig(&client, &image, &digest, &cosign).await;
    let verify = |key: &TestKey| {
        let store = SignatureStore::new(registry_client());
        let image = image.clone();
        let public = key.public_key();
        async move {
            signet::cli::verify_keys::verify_with_keys(
                &store,
                &image,
                SignatureType::Simple,
                &[public],
                &signet::cli::verify_keys::RequiredAnnotations::default(),
            )
            .await
            .unwrap()
            .verified
        }
    };
    assert!(verify(&cosign).await, "cosign's .sig not read");
    sign_simple(
        &store,
        &image,
        &release,
        &[SignatureFormat::CosignSignature],
    )
    .await;
    assert!(verify(&cosign).await, "cosign's layer lost");
    assert!(verify(&release).await, "signet's layer missing");
    let sig = image.with_tag(&signet::signature::signature_tag(&digest).unwrap());
    assert_eq!(config_of(&client, &sig).await["digest"], empty.as_str());
}

/// `DELETE /v2/<repo>/blobs/<digest>` on the registry (distribution unlinks the blob from
/// the repository); the answer's status.
fn delete_blob(registry: &Registry, repo: &str, digest: &str) -> u16 {
    use std::io::{Read as _, Write as _};
    let mut stream = std::net::TcpStream::connect(registry.host()).unwrap();
    write!(
        stream,
        "DELETE /v2/{repo}/blobs/{digest} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        registry.host()
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_repository_that_lost_the_fixed_config_gets_it_put_again() {
    let registry = Registry::start();
    let dir = tempfile::tempdir().unwrap();
    let release = key(dir.path(), "release", Algorithm::EcdsaP256Sha256);
    let store = SignatureStore::new(registry_client());
    let empty = sha256_digest(b"{}");
    for (tag, seed) in [("v1", "lost-1"), ("v2", "lost-2")] {
        registry.push_test_image("lost/app", tag, seed).await;
        let image = ImageRef::parse(&format!("{}/lost/app:{tag}", registry.host())).unwrap();
        sign_simple(&store, &image, &release, &SignatureFormat::ALL).await;
        // Both stores read, so that each format's signature is reported.
        let keys = [release.public_key()];
        let against = Against {
            signature_type: SignatureType::Simple,
            keys: &keys,
            trust: &[],
            required: &signet::cli::verify_keys::RequiredAnnotations::default(),
        };
        let verdict = verify_reading(
            &SignatureStore::new(registry_client()),
            &image,
            &against,
            true,
        )
        .await
        .unwrap();
        let valid: Vec<_> = verdict
            .signatures
            .iter()
            .filter(|s| s.valid)
            .map(|s| s.format)
            .collect();
        assert_eq!(
            valid,
            [
                SignatureFormat::CosignSignature,
                SignatureFormat::SigstoreBundle
            ],
            "{tag}"
        );
        // The store now believes the repository holds the config: take it away.
        assert_eq!(delete_blob(&registry, "lost/app", &empty), 202, "{tag}");
    }
}
