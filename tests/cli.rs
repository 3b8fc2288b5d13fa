//! `signet keygen | sign | verify` end to end, as a release pipeline runs them, against Debian's
//! docker-registry started on a loopback port.

// Helpers outside `#[test]` functions fail by panicking, as tests do (clippy.toml covers only
// `#[test]` code).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use signet::crypto::{self, Algorithm};
use signet::reference::ImageRef;
use signet::registry::{RegistryClient, RegistryOptions, SignatureStore};
use signet::signature::{self, SIGNATURE_ANNOTATION};
use support::Registry;

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn signet(args: &[&str]) -> Run {
    let out: Output = Command::new(env!("CARGO_BIN_EXE_signet"))
        .args(args)
        .env_remove("DOCKER_CONFIG")
        .output()
        .expect("run signet");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn keygen(dir: &Path, alg: Algorithm) -> (PathBuf, PathBuf) {
    let prefix = dir.join(alg.as_str().to_lowercase());
    let run = signet(&[
        "keygen",
        "--algorithm",
        alg.as_str(),
        "--output",
        prefix.to_str().unwrap(),
    ]);
    assert_eq!(run.code, 0, "keygen {alg}: {}", run.stderr);
    (prefix.with_extension("key"), prefix.with_extension("pub"))
}

/// Signs in the legacy `.sig` format only: these tests inspect and tamper with its layers
/// (bundles: tests/bundles.rs).
fn sign(image: &str, key: &Path, alg: Algorithm, ty: &str) -> Run {
    signet(&[
        "sign",
        image,
        "--key",
        &format!("file:{}", key.display()),
        "--algorithm",
        alg.as_str(),
        "--type",
        ty,
        "--format",
        "CosignSignature",
    ])
}

fn verify(image: &str, public: &Path, alg: Algorithm, ty: &str) -> Run {
    signet(&[
        "verify",
        image,
        "--key",
        public.to_str().unwrap(),
        "--algorithm",
        alg.as_str(),
        "--type",
        ty,
    ])
}

fn store() -> SignatureStore {
    let options = RegistryOptions {
        config_file: None,
        ca_files: vec![],
        insecure: vec![],
        timeout: std::time::Duration::from_secs(5),
        token_realm_hosts: vec![],
        ..RegistryOptions::default()
    };
    SignatureStore::new(RegistryClient::new(&options).unwrap())
}

fn push(registry: &Registry, repo: &str, tag: &str, seed: &str) -> String {
    rt().block_on(registry.push_test_image(repo, tag, seed))
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Runtime::new().unwrap()
}

#[test]
fn every_algorithm_and_both_types_sign_and_verify() {
    let registry = Registry::start();
    let dir = tempfile::tempdir().unwrap();
    for (i, alg) in Algorithm::ALL.into_iter().enumerate() {
        let (key, public) = keygen(dir.path(), alg);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{} must be private", key.display());
        }
        for ty in ["default", "simple"] {
            let image = format!("{}/algs/app{i}:{ty}", registry.host());
            let digest = push(
                &registry,
                &format!("algs/app{i}"),
                ty,
                &format!("{alg}{ty}"),
            );
            let run = sign(&image, &key, alg, ty);
            assert_eq!(run.code, 0, "sign {alg} {ty}: {}", run.stderr);
            assert!(
                run.stdout.contains(&digest),
                "sign prints the digest: {}",
                run.stdout
            );
            assert!(
                run.stdout
                    .contains(&signature::signature_tag(&digest).unwrap()),
                "{}",
                run.stdout
            );
            let run = verify(&image, &public, alg, ty);
            assert_eq!(
                run.code, 0,
                "verify {alg} {ty}: {}{}",
                run.stdout, run.stderr
            );
            assert!(run.stdout.starts_with("verified: "), "{}", run.stdout);
            // By digest too.
            let run = verify(
                &format!("{}/algs/app{i}@{digest}", registry.host()),
                &public,
                alg,
                ty,
            );
            assert_eq!(
                run.code, 0,
                "verify by digest {alg} {ty}: {}{}",
                run.stdout, run.stderr
            );
        }
    }
}

/// Writes a `.sig` manifest holding exactly `layers` (payload, signature), as another tool might.
fn write_sig_manifest(
    store: &SignatureStore,
    img: &ImageRef,
    digest: &str,
    layers: &[(&[u8], &[u8])],
) {
    let rt = rt();
    let descriptors: Vec<_> = layers
        .iter()
        .map(|(payload, sig)| signature::Descriptor::for_signature(payload, sig, &BTreeMap::new()))
        .collect();
    let built = signature::build_signature_manifest(&descriptors).unwrap();
    for (payload, _) in layers {
        rt.block_on(store.client().push_blob(img, payload)).unwrap();
    }
    rt.block_on(store.client().push_blob(img, &built.config))
        .unwrap();
    rt.block_on(store.client().push_manifest(
        &img.with_tag(&signature::signature_tag(digest).unwrap()),
        &built.manifest,
        signature::OCI_MANIFEST_MEDIA_TYPE,
    ))
    .unwrap();
}

/// Every layer of the `.sig` manifest of `digest`, whatever its media type.
fn sig_layers(store: &SignatureStore, img: &ImageRef, digest: &str) -> Vec<signature::Descriptor> {
    let sig = img.with_tag(&signature::signature_tag(digest).unwrap());
    let manifest = rt()
        .block_on(store.client().fetch_manifest(&sig))
        .unwrap()
        .expect("a .sig manifest");
    signature::parse_manifest_layers(&manifest.bytes).unwrap()
}

#[test]
fn signing_again_adds_nothing_under_any_algorithm() {
    // ECDSA and RSA-PSS signatures differ on every run: "already signed" must mean "a signature
    // by this key for this identity verifies", not "the same bytes are there" (which grew the
    // .sig by one layer per run).
    let registry = Registry::start();
    let dir = tempfile::tempdir().unwrap();
    let image = format!("{}/dup/app:v1", registry.host());
    let digest = push(&registry, "dup/app", "v1", "dup");
    let algorithms = [
        Algorithm::EcdsaP256Sha256,
        Algorithm::RsaPssSha256,
        Algorithm::Ed25519,
    ];
    let mut publics = Vec::new();
    for alg in algorithms {
        let (key, public) = keygen(dir.path(), alg);
        for round in 0..5 {
            let run = sign(&image, &key, alg, "default");
            assert_eq!(run.code, 0, "sign {alg} round {round}: {}", run.stderr);
            assert_eq!(
                run.stdout.contains("already present)"),
                round > 0,
                "{alg} round {round}: {}",
                run.stdout
            );
        }
        publics.push((key, public, alg));
    }
    // Another identity (repository only) by the first key is another signature, once.
    for _ in 0..2 {
        let run = sign(&image, &publics[0].0, Algorithm::EcdsaP256Sha256, "simple");
        assert_eq!(run.code, 0, "{}", run.stderr);
    }
    let store = store();
    let img = ImageRef::parse(&image).unwrap();
    assert_eq!(sig_layers(&store, &img, &digest).len(), 4);
    let set = rt()
        .block_on(store.fetch_signatures(&img, &digest))
        .unwrap();
    assert_eq!(set.signatures.len(), 4);
    assert!(set.skipped.is_empty(), "{}", set.skipped);
    for (_, public, alg) in &publics {
        let key =
            crypto::PublicKey::from_pem(&std::fs::read_to_string(public).unwrap(), *alg).unwrap();
        let by_key = set
            .signatures
            .iter()
            .filter(|s| {
                key.verify(&s.payload, s.signature.as_ref().unwrap())
                    .is_ok()
            })
            .count();
        let expected = if *alg == Algorithm::EcdsaP256Sha256 {
            2
        } else {
            1
        };
        assert_eq!(by_key, expected, "{alg}");
        let run = verify(&image, public, *alg, "default");
        assert_eq!(run.code, 0, "{alg}: {}{}", run.stdout, run.stderr);
    }
}

#[test]
fn sign_compacts_a_full_manifest_instead_of_growing_it() {
    // 128 junk layers (the cap) already in the .sig: `signet sign` would make it 129. It drops
    // the layers its key does not verify instead, and its own signature is readable.
    let registry = Registry::start();
    let dir = tempfile::tempdir().unwrap();
    let (key, public) = keygen(dir.path(), Algorithm::EcdsaP256Sha256);
    let image = format!("{}/full/app:v1", registry.host());
    let digest = push(&registry, "full/app", "v1", "full");
    let store = store();
    let img = ImageRef::parse(&image).unwrap();
    let junk: Vec<(Vec<u8>, Vec<u8>)> = (0..signet::registry::MAX_SIGNATURE_LAYERS)
        .map(|i| {
            (
                format!("junk payload {i}").into_bytes(),
                b"not a signature".to_vec(),
            )
        })
        .collect();
    let layers: Vec<(&[u8], &[u8])> = junk
        .iter()
        .map(|(p, s)| (p.as_slice(), s.as_slice()))
        .collect();
    write_sig_manifest(&store, &img, &digest, &layers);
    let run = sign(&image, &key, Algorithm::EcdsaP256Sha256, "default");
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(sig_layers(&store, &img, &digest).len(), 1);
    let run = verify(&image, &public, Algorithm::EcdsaP256Sha256, "default");
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
}

#[test]
fn failures_say_why() {
    let registry = Registry::start();
    let host = registry.host();
    let dir = tempfile::tempdir().unwrap();
    let pss = Algorithm::RsaPssSha256;
    let (key, public) = keygen(dir.path(), pss);
    let (_, other_public) = keygen(dir.path(), Algorithm::RsaPkcs1Sha256);

    // Unsigned image.
    push(&registry, "neg/unsigned", "v1", "unsigned");
    let run = verify(&format!("{host}/neg/unsigned:v1"), &public, pss, "default");
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("no signature"), "{}", run.stdout);

    // A signed image, then: wrong key, wrong declared algorithm, another tag of the same digest.
    let digest = push(&registry, "neg/app", "v1", "app");
    push(&registry, "neg/app", "v2", "app");
    assert_eq!(
        sign(&format!("{host}/neg/app:v1"), &key, pss, "default").code,
        0
    );
    let run = verify(
        &format!("{host}/neg/app:v1"),
        &other_public,
        Algorithm::RsaPssSha256,
        "default",
    );
    assert_eq!(run.code, 1);
    assert!(
        run.stdout.contains("not signed by a trusted key"),
        "{}",
        run.stdout
    );
    let run = verify(
        &format!("{host}/neg/app:v1"),
        &public,
        Algorithm::RsaPkcs1Sha256,
        "default",
    );
    assert_eq!(run.code, 1, "a PSS signature must not pass as PKCS#1 v1.5");
    assert!(
        run.stdout.contains("not signed by a trusted key"),
        "{}",
        run.stdout
    );
    let run = verify(&format!("{host}/neg/app:v2"), &public, pss, "default");
    assert_eq!(run.code, 1);
    assert!(
        run.stdout.contains("tag \"v2\" not bound"),
        "{}",
        run.stdout
    );
    assert_eq!(
        verify(&format!("{host}/neg/app:v2"), &public, pss, "simple").code,
        0,
        "simple binds the digest only"
    );

    // A signature copied from another image's .sig tag.
    let store = store();
    let copy_digest = push(&registry, "neg/app", "copy", "copy");
    let app = ImageRef::parse(&format!("{host}/neg/app:v1")).unwrap();
    let rt = rt();
    let sig_manifest = rt
        .block_on(
            store
                .client()
                .fetch_manifest(&app.with_tag(&signature::signature_tag(&digest).unwrap())),
        )
        .unwrap()
        .unwrap();
    rt.block_on(store.client().push_manifest(
        &app.with_tag(&signature::signature_tag(&copy_digest).unwrap()),
        &sig_manifest.bytes,
        signature::OCI_MANIFEST_MEDIA_TYPE,
    ))
    .unwrap();
    let run = verify(&format!("{host}/neg/app:copy"), &public, pss, "simple");
    assert_eq!(run.code, 1);
    assert!(
        run.stdout
            .contains(&format!("signature for another digest ({digest})")),
        "{}",
        run.stdout
    );

    // Tampered payload and tampered signature: rewrite the .sig manifest of a fresh image.
    for (what, tamper_payload) in [("payload", true), ("signature", false)] {
        let tag = format!("tamper-{what}");
        let d = push(&registry, "neg/tamper", &tag, what);
        let image = format!("{host}/neg/tamper:{tag}");
        assert_eq!(sign(&image, &key, pss, "default").code, 0);
        let img = ImageRef::parse(&image).unwrap();
        let sigs = rt
            .block_on(store.fetch_signatures(&img, &d))
            .unwrap()
            .signatures;
        let mut payload = sigs[0].payload.clone();
        let mut sig = sigs[0].signature.clone().unwrap();
        if tamper_payload {
            payload = String::from_utf8(payload)
                .unwrap()
                .replace(
                    "cosign container image signature",
                    "atomic container signature",
                )
                .into_bytes();
        } else {
            sig[10] ^= 0x55;
        }
        let layer = signature::Descriptor::for_signature(&payload, &sig, &BTreeMap::new());
        let built = signature::build_signature_manifest(&[layer]).unwrap();
        rt.block_on(store.client().push_blob(&img, &payload))
            .unwrap();
        rt.block_on(store.client().push_blob(&img, &built.config))
            .unwrap();
        rt.block_on(store.client().push_manifest(
            &img.with_tag(&signature::signature_tag(&d).unwrap()),
            &built.manifest,
            signature::OCI_MANIFEST_MEDIA_TYPE,
        ))
        .unwrap();
        let run = verify(&image, &public, pss, "default");
        assert_eq!(run.code, 1, "tampered {what}: {}", run.stdout);
        assert!(
            run.stdout.contains("not signed by a trusted key"),
            "{}",
            run.stdout
        );
    }
}

#[test]
fn verifies_what_cosign_writes() {
    // cosign's Go JSON reader accepts `Docker-manifest-digest` and `"optional": null`; so must we.
    let registry = Registry::start();
    let dir = tempfile::tempdir().unwrap();
    let (key, public) = keygen(dir.path(), Algorithm::EcdsaP256Sha256);
    let digest = push(&registry, "cosign/app", "v1", "cosign");
    let image = format!("{}/cosign/app:v1", registry.host());
    let payload = format!(
        r#"{{"critical":{{"identity":{{"docker-reference":"{}/cosign/app"}},"image":{{"Docker-manifest-digest":"{digest}"}},"type":"cosign container image signature"}},"optional":null}}"#,
        registry.host()
    );
    let signer = crypto::open_signing_key(
        &format!("file:{}", key.display()),
        Algorithm::EcdsaP256Sha256,
        None,
    )
    .unwrap();
    let sig = signer.sign(payload.as_bytes()).unwrap();
    let store = store();
    let img = ImageRef::parse(&image).unwrap();
    write_sig_manifest(&store, &img, &digest, &[(payload.as_bytes(), &sig)]);
    let run = verify(&image, &public, Algorithm::EcdsaP256Sha256, "simple");
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    // The manifest we wrote has cosign's layout: media types, annotation name, standard base64.
    let manifest = rt()
        .block_on(
            store
                .client()
                .fetch_manifest(&img.with_tag(&signature::signature_tag(&digest).unwrap())),
        )
        .unwrap()
        .unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&manifest.bytes).unwrap();
    assert_eq!(
        doc["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    let layer = &doc["layers"][0];
    assert_eq!(
        layer["mediaType"],
        "application/vnd.dev.cosign.simplesigning.v1+json"
    );
    let b64 = layer["annotations"][SIGNATURE_ANNOTATION].as_str().unwrap();
    use base64::Engine;
    assert_eq!(
        base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap(),
        sig
    );
}

#[test]
fn bad_input_is_one_line_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let (key, public) = keygen(dir.path(), Algorithm::EcdsaP256Sha256);
    let garbage = dir.path().join("garbage.pub");
    std::fs::write(&garbage, "not a key at all").unwrap();
    let closed = format!("127.0.0.1:{}", support::closed_port());
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec![
                "verify".into(),
                "UPPER/Case".into(),
                "--key".into(),
                public.display().to_string(),
                "--algorithm".into(),
                "ECDSA_P256_SHA_256".into(),
            ],
            "invalid image reference",
        ),
        (
            vec![
                "verify".into(),
                "app@sha256:123".into(),
                "--key".into(),
                public.display().to_string(),
                "--algorithm".into(),
                "ECDSA_P256_SHA_256".into(),
            ],
            "invalid image reference",
        ),
        (
            vec![
                "verify".into(),
                "127.0.0.1:1/a:v1".into(),
                "--key".into(),
                garbage.display().to_string(),
                "--algorithm".into(),
                "ECDSA_P256_SHA_256".into(),
            ],
            "not a PEM key",
        ),
        (
            vec![
                "verify".into(),
                "127.0.0.1:1/a:v1".into(),
                "--key".into(),
                public.display().to_string(),
                "--algorithm".into(),
                "RSA_PSS_SHA_256".into(),
            ],
            "EC P-256 key, which cannot verify RSA_PSS_SHA_256",
        ),
        (
            vec![
                "sign".into(),
                "127.0.0.1:1/a:v1".into(),
                "--key".into(),
                format!("file:{}", key.display()),
                "--algorithm".into(),
                "RSA_PSS_SHA_256".into(),
            ],
            "RSA_PSS_SHA_256",
        ),
        (
            vec![
                "verify".into(),
                format!("{closed}/a:v1"),
                "--key".into(),
                public.display().to_string(),
                "--algorithm".into(),
                "ECDSA_P256_SHA_256".into(),
            ],
            closed.as_str(),
        ),
        (
            vec![
                "verify".into(),
                "127.0.0.1:1/a:v1".into(),
                "--key".into(),
                "/nonexistent.pub".into(),
                "--algorithm".into(),
                "ECDSA_P256_SHA_256".into(),
            ],
            "/nonexistent.pub",
        ),
        (
            vec![
                "sign".into(),
                "127.0.0.1:1/a:v1".into(),
                "--key".into(),
                "vault:xyz".into(),
                "--algorithm".into(),
                "ECDSA_P256_SHA_256".into(),
            ],
            "vault",
        ),
    ];
    for (args, needle) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let run = signet(&args);
        assert_eq!(run.code, 2, "{args:?}: {}", run.stderr);
        let lines: Vec<&str> = run.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "one line for {args:?}: {}", run.stderr);
        assert!(
            lines[0].starts_with("error: ") && lines[0].contains(needle),
            "{args:?}: {}",
            run.stderr
        );
        assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    }
    // Unreachable registry names the cause.
    let run = signet(&[
        "verify",
        &format!("{closed}/a:v1"),
        "--key",
        public.to_str().unwrap(),
        "--algorithm",
        "ECDSA_P256_SHA_256",
    ]);
    assert!(
        run.stderr.to_lowercase().contains("connection refused"),
        "{}",
        run.stderr
    );
    // Usage errors exit 2 as well.
    assert_eq!(signet(&["verify"]).code, 2);
    assert_eq!(
        signet(&[
            "keygen",
            "--algorithm",
            "RSA_PSS_SHA_512",
            "--output",
            "/tmp/x"
        ])
        .code,
        2
    );
}

#[test]
fn a_corrupting_registry_is_refused() {
    let registry = Registry::start();
    let dir = tempfile::tempdir().unwrap();
    let (key, public) = keygen(dir.path(), Algorithm::EcdsaP256Sha256);
    let image = format!("{}/evil/app:v1", registry.host());
    push(&registry, "evil/app", "v1", "evil");
    assert_eq!(
        sign(&image, &key, Algorithm::EcdsaP256Sha256, "default").code,
        0
    );
    let proxy = support::CorruptingProxy::start(&registry.host());
    let through_proxy = format!("{}/evil/app:v1", proxy.host());
    let run = verify(
        &through_proxy,
        &public,
        Algorithm::EcdsaP256Sha256,
        "simple",
    );
    assert_eq!(run.code, 2, "{}{}", run.stdout, run.stderr);
    assert!(run.stderr.contains("digest"), "{}", run.stderr);
}

#[test]
fn verify_takes_several_images_and_fails_when_one_is_unsigned() {
    let registry = Registry::start();
    let dir = tempfile::tempdir().unwrap();
    let alg = Algorithm::EcdsaP256Sha256;
    let (key, public) = keygen(dir.path(), alg);
    push(&registry, "multi/signed", "v1", "multi-signed");
    push(&registry, "multi/unsigned", "v1", "multi-unsigned");
    let signed = format!("{}/multi/signed:v1", registry.host());
    let unsigned = format!("{}/multi/unsigned:v1", registry.host());
    assert_eq!(sign(&signed, &key, alg, "default").code, 0);
    let public = public.to_str().unwrap();
    let args = |images: &[&str], output: &str| {
        let mut args = vec!["verify"];
        args.extend_from_slice(images);
        args.extend_from_slice(&[
            "--key",
            public,
            "--algorithm",
            alg.as_str(),
            "--output",
            output,
        ]);
        signet(&args)
    };

    let run = args(&[&signed, &unsigned], "text");
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{}", run.stdout);
    assert!(
        lines[0].starts_with("verified: ") && lines[0].contains(&signed),
        "{}",
        run.stdout
    );
    assert!(
        lines[1].starts_with("not verified: ") && lines[1].contains(&unsigned),
        "{}",
        run.stdout
    );
    assert!(run.stderr.is_empty(), "{}", run.stderr);

    // Both signed: exit 0, one line each, in the order given.
    let run = args(&[&signed, &signed], "text");
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert_eq!(run.stdout.lines().count(), 2, "{}", run.stdout);

    // JSON: one document, an array in the order given.
    let run = args(&[&unsigned, &signed], "json");
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    let doc: serde_json::Value = serde_json::from_str(&run.stdout).expect("one JSON document");
    let verified: Vec<bool> = doc
        .as_array()
        .expect("an array")
        .iter()
        .map(|v| v["verified"].as_bool().expect("verified"))
        .collect();
    assert_eq!(verified, [false, true]);

    // An image that cannot be checked (closed port): its own error line, exit 2.
    let gone = format!("127.0.0.1:{}/multi/gone:v1", support::closed_port());
    let run = args(&[&signed, &gone], "text");
    assert_eq!(run.code, 2, "{}{}", run.stdout, run.stderr);
    assert!(run.stdout.starts_with("verified: "), "{}", run.stdout);
    assert!(
        run.stderr.contains(&format!("error: {gone}: ")),
        "{}",
        run.stderr
    );
}
