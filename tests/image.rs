//! The container image that `make image` builds (`scripts/image.py`), built from the binary this test
//! run compiled (the debug one under `make test`; `make image` uses the release one), pushed to a real
//! registry, pulled back and unpacked: `signet --version`, `signet keygen` on a SoftHSM2 token through
//! the image's own PKCS#11 module, `signet sign` and `signet verify` then run from the image's root
//! filesystem (chroot) as user 65532, with the environment its config declares. chroot needs root, as CI
//! runs the tests.

// Helpers outside `#[test]` functions fail by panicking, as tests do (clippy.toml covers only
// `#[test]` code).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;
use sha2::{Digest, Sha256};

use support::{Registry, USER_PIN};

const NONROOT: u32 = 65532;
/// The folders the image gives to the non-root user; everything else belongs to root.
const USER_DIRS: [&str; 3] = ["tmp", "var/lib/softhsm/tokens", "home/nonroot"];

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn run(command: &mut Command) -> Output {
    let out = command
        .output()
        .unwrap_or_else(|err| panic!("{command:?}: {err}"));
    assert!(
        out.status.success(),
        "{command:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The image name `make image` gives: the chart's default repository and appVersion.
fn default_image_name() -> String {
    let makefile = fs::read_to_string(repo().join("Makefile")).expect("Makefile");
    let line = makefile
        .lines()
        .find_map(|l| l.strip_prefix("IMAGE ?= "))
        .expect("the Makefile sets IMAGE ?= ...");
    line.replace("$(VERSION)", env!("CARGO_PKG_VERSION"))
}

async fn get(url: &str, accept: &str) -> Vec<u8> {
    let response = support::image::plain_http_client()
        .get(url)
        .header("Accept", accept)
        .send()
        .await
        .unwrap_or_else(|err| panic!("GET {url}: {err}"));
    assert_eq!(response.status().as_u16(), 200, "GET {url}");
    response.bytes().await.expect("body").to_vec()
}

fn sha256(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// Runs `signet ARGS` inside `root` as 65532:65532 with exactly the environment `env`.
fn in_image(root: &Path, env: &[(String, String)], args: &[&str]) -> (i32, String) {
    let out = Command::new("/usr/sbin/chroot")
        .arg(format!("--userspec={NONROOT}:{NONROOT}"))
        .arg(root)
        .arg("/usr/local/bin/signet")
        .args(args)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .expect("run chroot (Debian package coreutils)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn the_image_runs_signet_from_its_own_root_as_65532_after_a_push_and_pull() {
    let is_root = fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false);
    assert!(
        is_root,
        "this test unpacks and chroots into the image: run it as root (CI does)"
    );
    let name = default_image_name();
    assert!(name.starts_with("ghcr.io/signet-dev/signet:"), "{name}");

    // Build: the layout `make image` writes, from the binary under test.
    let dir = tempfile::tempdir().expect("temporary directory");
    let layout = dir.path().join("layout");
    let binary = env!("CARGO_BIN_EXE_signet");
    let built = run(Command::new("python3")
        .arg(repo().join("scripts/image.py"))
        .args([
            "build",
            "--binary",
            binary,
            "--gzip-level",
            "1",
            "--name",
            &name,
            "--layout",
        ])
        .arg(&layout));
    eprintln!("{}", String::from_utf8_lossy(&built.stdout).trim());
    let index: Value =
        serde_json::from_slice(&fs::read(layout.join("index.json")).unwrap()).unwrap();
    let descriptor = &index["manifests"][0];
    assert_eq!(
        descriptor["annotations"]["io.containerd.image.name"],
        Value::from(name.clone())
    );

    // Push to a real registry, then pull it back as a node would.
    let registry = Registry::start();
    let target = format!("{}/signet:{}", registry.host(), env!("CARGO_PKG_VERSION"));
    let pushed = run(Command::new("python3")
        .arg(repo().join("scripts/image.py"))
        .args(["push", "--to", &target, "--layout"])
        .arg(&layout));
    let digest = descriptor["digest"].as_str().unwrap().to_owned();
    assert!(String::from_utf8_lossy(&pushed.stdout).contains(&digest));

    let rt = tokio::runtime::Runtime::new().unwrap();
    let base = format!("{}/v2/signet", registry.url());
    let oci = "application/vnd.oci.image.manifest.v1+json";
    let manifest_bytes = rt.block_on(get(
        &format!("{base}/manifests/{}", env!("CARGO_PKG_VERSION")),
        oci,
    ));
    assert_eq!(
        sha256(&manifest_bytes),
        digest,
        "the registry serves the manifest built"
    );
    let manifest: Value = serde_json::from_slice(&manifest_bytes).unwrap();
    let blob = |digest: &Value| {
        let digest = digest.as_str().unwrap();
        let data = rt.block_on(get(&format!("{base}/blobs/{digest}"), "*/*"));
        assert_eq!(sha256(&data), digest);
        data
    };
    let config: Value = serde_json::from_slice(&blob(&manifest["config"]["digest"])).unwrap();
    assert_eq!(manifest["layers"].as_array().map(Vec::len), Some(1));
    let layer = blob(&manifest["layers"][0]["digest"]);
    let image_config = &config["config"];
    assert_eq!(image_config["User"], Value::from("65532:65532"));
    assert_eq!(
        image_config["Entrypoint"],
        serde_json::json!(["/usr/local/bin/signet"])
    );

    // Unpack as a container runtime does (owners and modes kept).
    let layer_file = dir.path().join("layer.tar.gz");
    fs::write(&layer_file, &layer).unwrap();
    let root = dir.path().join("rootfs");
    fs::create_dir(&root).unwrap();
    run(Command::new("tar")
        .args(["--same-owner", "-xzpf"])
        .arg(&layer_file)
        .arg("-C")
        .arg(&root));
    let listed = run(Command::new("sh")
        .arg("-c")
        .arg(format!("gzip -dc {} | sha256sum", layer_file.display())));
    let diff_id = format!(
        "sha256:{}",
        String::from_utf8_lossy(&listed.stdout)
            .split(' ')
            .next()
            .unwrap()
    );
    assert_eq!(config["rootfs"]["diff_ids"][0], Value::from(diff_id));
    check_ownership(&root);

    let env: Vec<(String, String)> = image_config["Env"]
        .as_array()
        .expect("Env")
        .iter()
        .filter_map(|e| e.as_str()?.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let (code, version) = in_image(&root, &env, &["--version"]);
    assert_eq!(
        (code, version.trim()),
        (0, format!("signet {}", env!("CARGO_PKG_VERSION")).as_str())
    );

    // PKCS#11 through the image's own SoftHSM2 module and configuration: a token made on the host in
    // the folder the image mounts, owned by the image's user.
    let tokens = root.join("var/lib/softhsm/tokens");
    let host_conf = dir.path().join("softhsm2.conf");
    fs::write(
        &host_conf,
        format!(
            "directories.tokendir = {}/\nobjectstore.backend = file\n",
            tokens.display()
        ),
    )
    .unwrap();
    support::init_token(&host_conf, "signet");
    let pin = root.join("tmp/pin");
    fs::write(&pin, USER_PIN).unwrap();
    fs::set_permissions(&pin, fs::Permissions::from_mode(0o600)).unwrap();
    run(Command::new("chown")
        .args(["-R", &format!("{NONROOT}:{NONROOT}")])
        .arg(&tokens)
        .arg(&pin));
    let (code, out) = in_image(
        &root,
        &env,
        &[
            "keygen",
            "--algorithm",
            "ECDSA_P256_SHA_256",
            "--output",
            "/tmp/release",
            "--pkcs11-token",
            "signet",
            "--pkcs11-object",
            "release",
            "--pkcs11-pin-file",
            "/tmp/pin",
        ],
    );
    assert_eq!(code, 0, "keygen on the token from the image: {out}");

    let signed = format!("{}/app:v1", registry.host());
    let unsigned = format!("{}/app:v2", registry.host());
    rt.block_on(registry.push_test_image("app", "v1", "signed"));
    rt.block_on(registry.push_test_image("app", "v2", "unsigned"));
    let key = "pkcs11:token=signet;object=release?pin-source=file:/tmp/pin";
    let (code, out) = in_image(
        &root,
        &env,
        &[
            "sign",
            &signed,
            "--key",
            key,
            "--algorithm",
            "ECDSA_P256_SHA_256",
        ],
    );
    assert_eq!(code, 0, "sign from the image: {out}");
    let verify = |image: &str| {
        in_image(
            &root,
            &env,
            &[
                "verify",
                image,
                "--key",
                "/tmp/release.pub",
                "--algorithm",
                "ECDSA_P256_SHA_256",
            ],
        )
    };
    let (code, out) = verify(&signed);
    assert!(
        code == 0 && out.contains("verified"),
        "verify the signed image from the image: {out}"
    );
    let (code, out) = verify(&unsigned);
    assert!(
        code == 1 && out.contains("not verified"),
        "verify the unsigned image: {out}"
    );
}

/// Root owns every file but the user's folders; nothing is setuid or setgid, nothing writable by others
/// but /tmp.
fn check_ownership(root: &Path) {
    let mut problems = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    let mut count = 0;
    while let Some(path) = stack.pop() {
        let meta = fs::symlink_metadata(&path).unwrap();
        let relative = path.strip_prefix(root).unwrap().display().to_string();
        count += 1;
        let expected = if USER_DIRS.contains(&relative.as_str()) {
            NONROOT
        } else {
            0
        };
        if path != root && (meta.uid() != expected || meta.gid() != expected) {
            problems.push(format!("/{relative}: owner {}:{}", meta.uid(), meta.gid()));
        }
        let mode = meta.mode();
        if !meta.file_type().is_symlink()
            && (mode & 0o6000 != 0 || (mode & 0o002 != 0 && relative != "tmp"))
        {
            problems.push(format!("/{relative}: mode {mode:o}"));
        }
        if meta.is_dir() {
            stack.extend(fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
        }
    }
    assert!(count > 20, "only {count} entries in the image");
    assert!(problems.is_empty(), "{problems:#?}");
    for needed in [
        "usr/local/bin/signet",
        "usr/lib/softhsm/libsofthsm2.so",
        "etc/softhsm/softhsm2.conf",
        "etc/ssl/certs/ca-certificates.crt",
        "etc/passwd",
        "usr/share/doc/libc6/copyright",
    ] {
        assert!(root.join(needed).exists(), "/{needed} missing");
    }
}

#[test]
fn the_chart_deploys_the_image_make_image_builds() {
    let chart: serde_yaml_ng::Value = serde_yaml_ng::from_str(
        &fs::read_to_string(repo().join("charts/signet/Chart.yaml")).unwrap(),
    )
    .unwrap();
    let values: serde_yaml_ng::Value = serde_yaml_ng::from_str(
        &fs::read_to_string(repo().join("charts/signet/values.yaml")).unwrap(),
    )
    .unwrap();
    let app_version = chart["appVersion"].as_str().expect("appVersion");
    assert_eq!(
        app_version,
        env!("CARGO_PKG_VERSION"),
        "Chart.yaml appVersion is the crate's version"
    );
    let repository = values["image"]["repository"]
        .as_str()
        .expect("image.repository");
    assert_eq!(format!("{repository}:{app_version}"), default_image_name());
    assert_eq!(values["image"]["tag"], serde_yaml_ng::Value::from(""));
}
