//! Registry credentials found as docker finds them, against Debian's docker-registry demanding
//! htpasswd (bcrypt) authentication: `~/.docker/config.json` (HOME pointed at a temporary
//! folder), `credHelpers` and `credsStore` through a `docker-credential-<name>` script put on
//! PATH, helpers that are missing, failing or silent; and a registry on 127.0.0.1 that speaks
//! only TLS, reached over HTTPS. Everything runs the `signet` binary as a user would.

// Helpers outside `#[test]` functions fail by panicking, as tests do (clippy.toml covers only
// `#[test]` code).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use base64::Engine as _;
use support::{Protection, Registry};

const USER: &str = "alice";
const PASSWORD: &str = "correct horse";

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

/// A user's machine: a HOME of its own, and a PATH with a folder for credential helpers.
struct Machine {
    home: tempfile::TempDir,
    bin: tempfile::TempDir,
    keys: tempfile::TempDir,
}

impl Machine {
    fn new() -> Self {
        let machine = Machine {
            home: tempfile::tempdir().unwrap(),
            bin: tempfile::tempdir().unwrap(),
            keys: tempfile::tempdir().unwrap(),
        };
        let run = machine.signet(&["keygen", "-o", machine.prefix().to_str().unwrap()]);
        assert_eq!(run.code, 0, "keygen: {}", run.stderr);
        machine
    }

    fn prefix(&self) -> PathBuf {
        self.keys.path().join("release")
    }

    /// Writes `~/.docker/config.json`.
    fn docker_config(&self, json: &str) {
        let dir = self.home.path().join(".docker");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("config.json"), json).unwrap();
    }

    /// Puts an executable `docker-credential-<name>` script on this machine's PATH.
    fn helper(&self, name: &str, script: &str) {
        use std::os::unix::fs::PermissionsExt as _;
        let path = self.bin.path().join(format!("docker-credential-{name}"));
        std::fs::write(&path, format!("#!/bin/sh\n{script}")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    fn signet(&self, args: &[&str]) -> Run {
        let path = format!(
            "{}:{}",
            self.bin.path().display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let out = Command::new(env!("CARGO_BIN_EXE_signet"))
            .args(args)
            .env_remove("DOCKER_CONFIG")
            .env_remove("SIGNET_REGISTRY_CONFIG")
            .env("HOME", self.home.path())
            .env("PATH", path)
            .output()
            .expect("run signet");
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// `signet sign IMAGE`, then `signet verify IMAGE`, with `extra` flags: both must succeed.
    fn sign_and_verify(&self, image: &str, extra: &[&str]) {
        let key = format!("file:{}.key", self.prefix().display());
        let mut args = vec!["sign", image, "--key", &key];
        args.extend_from_slice(extra);
        let run = self.signet(&args);
        assert_eq!(run.code, 0, "sign {image}: {}{}", run.stdout, run.stderr);
        let public = format!("{}.pub", self.prefix().display());
        let mut args = vec!["verify", image, "--key", &public];
        args.extend_from_slice(extra);
        let run = self.signet(&args);
        assert_eq!(run.code, 0, "verify {image}: {}{}", run.stdout, run.stderr);
        assert!(run.stdout.starts_with("verified: "), "{}", run.stdout);
    }

    fn verify(&self, image: &str, extra: &[&str]) -> Run {
        let public = format!("{}.pub", self.prefix().display());
        let mut args = vec!["verify", image, "--key", &public];
        args.extend_from_slice(extra);
        self.signet(&args)
    }
}

fn htpasswd(dir: &Path) -> PathBuf {
    let path = dir.join("htpasswd");
    let out = Command::new("htpasswd")
        .args(["-nbB", USER, PASSWORD])
        .output()
        .unwrap_or_else(|e| panic!("cannot run htpasswd (Debian package `apache2-utils`): {e}"));
    assert!(out.status.success(), "htpasswd failed");
    std::fs::write(&path, out.stdout).unwrap();
    path
}

/// A registry holding `repo:v1`, from now on demanding `alice`'s password.
fn protected_registry(repo: &str, dir: &Path) -> (Registry, String) {
    let mut registry = Registry::start();
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(registry.push_test_image(repo, "v1", repo));
    registry.protect(Protection {
        htpasswd: Some(htpasswd(dir)),
        tls: None,
    });
    let image = format!("{}/{repo}:v1", registry.host());
    (registry, image)
}

fn one_line(run: &Run) -> &str {
    let text = run.stderr.trim_end();
    assert_eq!(text.lines().count(), 1, "one line: {text}");
    text
}

#[test]
fn docker_login_credentials_in_home_are_used() {
    let work = tempfile::tempdir().unwrap();
    let (registry, image) = protected_registry("login/app", work.path());
    let machine = Machine::new();

    // Without credentials the registry refuses: that is what the config below changes.
    let run = machine.verify(&image, &[]);
    assert_eq!(run.code, 2, "{}{}", run.stdout, run.stderr);
    assert!(one_line(&run).contains("HTTP 401"), "{}", run.stderr);

    // What `docker login 127.0.0.1:PORT` writes.
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"));
    machine.docker_config(&format!(
        r#"{{"auths": {{"{}": {{"auth": "{auth}"}}}}}}"#,
        registry.host()
    ));
    machine.sign_and_verify(&image, &[]);

    // A wrong password is refused, naming the registry.
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:wrong"));
    machine.docker_config(&format!(
        r#"{{"auths": {{"{}": {{"auth": "{auth}"}}}}}}"#,
        registry.host()
    ));
    let run = machine.verify(&image, &[]);
    assert_eq!(run.code, 2);
    assert!(
        one_line(&run).contains(&registry.host()) && !run.stderr.contains("wrong"),
        "{}",
        run.stderr
    );
}

#[test]
fn credential_helpers_authenticate_through_the_docker_protocol() {
    let work = tempfile::tempdir().unwrap();
    let (registry, image) = protected_registry("helped/app", work.path());
    let machine = Machine::new();
    let asked = work.path().join("asked");
    // A helper as docker calls it: `get`, the server URL on stdin, JSON out.
    machine.helper(
        "signet-test",
        &format!(
            "[ \"$1\" = get ] || exit 3\nread -r url || true\nprintf '%s\\n' \"$url\" >> {asked}\n\
             printf '{{\"ServerURL\":\"%s\",\"Username\":\"{USER}\",\"Secret\":\"{PASSWORD}\"}}' \"$url\"\n",
            asked = asked.display()
        ),
    );

    // credHelpers: this registry's own helper.
    machine.docker_config(&format!(
        r#"{{"auths": {{}}, "credHelpers": {{"{}": "signet-test"}}}}"#,
        registry.host()
    ));
    machine.sign_and_verify(&image, &[]);
    let urls = std::fs::read_to_string(&asked).unwrap();
    assert!(
        !urls.is_empty() && urls.lines().all(|u| u == registry.host()),
        "the helper is asked for the registry host: {urls:?}"
    );

    // credsStore: the helper for every registry (Docker Desktop's `desktop`, `pass`...).
    machine.docker_config(r#"{"auths": {}, "credsStore": "signet-test"}"#);
    machine.sign_and_verify(&image, &[]);

    // A store that has nothing for this registry: the file's own entry still serves.
    machine.helper(
        "empty",
        "echo 'credentials not found in native keychain'\nexit 1\n",
    );
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"));
    machine.docker_config(&format!(
        r#"{{"auths": {{"{}": {{"auth": "{auth}"}}}}, "credsStore": "empty"}}"#,
        registry.host()
    ));
    machine.sign_and_verify(&image, &[]);
}

#[test]
fn a_missing_failing_or_silent_helper_is_a_clear_error() {
    let work = tempfile::tempdir().unwrap();
    let (registry, image) = protected_registry("broken/app", work.path());
    let machine = Machine::new();
    let config = machine.home.path().join(".docker/config.json");

    machine.docker_config(r#"{"credsStore": "nowhere"}"#);
    let run = machine.verify(&image, &[]);
    assert_eq!(run.code, 2);
    let line = one_line(&run);
    assert!(
        line.contains("credential helper docker-credential-nowhere")
            && line.contains(&config.display().to_string())
            && line.contains("not found on PATH")
            // Not an HTTP 401: looked for outside the registry's address (a random port) and the
            // config's path (a random folder), which may hold those digits.
            && !line
                .replace(&registry.host(), "")
                .replace(&config.display().to_string(), "")
                .contains("401"),
        "{line}"
    );

    machine.helper("failing", "echo 'keychain is locked'\nexit 1\n");
    machine.docker_config(&format!(
        r#"{{"credHelpers": {{"{}": "failing"}}}}"#,
        registry.host()
    ));
    let run = machine.verify(&image, &[]);
    assert_eq!(run.code, 2);
    assert!(
        one_line(&run).contains("docker-credential-failing")
            && run.stderr.contains("exited with 1: keychain is locked"),
        "{}",
        run.stderr
    );

    // A helper that hangs is cut off at the registry timeout.
    machine.helper("silent", "sleep 30\n");
    machine.docker_config(r#"{"credsStore": "silent"}"#);
    let started = Instant::now();
    let run = machine.verify(&image, &["--registry-timeout", "1s"]);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(run.code, 2);
    assert!(
        one_line(&run).contains("docker-credential-silent")
            && run.stderr.contains("no answer within 1s"),
        "{}",
        run.stderr
    );
}

/// A CA and a certificate for 127.0.0.1 signed by it: (CA PEM path, cert path, key path).
fn tls_files(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "port-forward test CA");
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
    let params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &ca).unwrap();
    let paths = (
        dir.join("ca.pem"),
        dir.join("registry.pem"),
        dir.join("registry.key"),
    );
    std::fs::write(&paths.0, ca.pem()).unwrap();
    std::fs::write(&paths.1, cert.pem()).unwrap();
    std::fs::write(&paths.2, key.serialize_pem()).unwrap();
    paths
}

#[test]
fn an_https_registry_on_loopback_is_spoken_to_over_tls() {
    let work = tempfile::tempdir().unwrap();
    let (ca, cert, key) = tls_files(work.path());
    let mut registry = Registry::start();
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(registry.push_test_image("forwarded/app", "v1", "forwarded"));
    // As behind `kubectl port-forward`: TLS only, and a password.
    registry.protect(Protection {
        htpasswd: Some(htpasswd(work.path())),
        tls: Some((cert, key)),
    });
    let image = format!("{}/forwarded/app:v1", registry.host());
    let machine = Machine::new();
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"));
    machine.docker_config(&format!(
        r#"{{"auths": {{"{}": {{"auth": "{auth}"}}}}}}"#,
        registry.host()
    ));

    // The registry answers plain HTTP with 400: only HTTPS gets this far.
    machine.sign_and_verify(&image, &["--registry-ca", ca.to_str().unwrap()]);

    // Without its CA, the certificate is refused (never plain HTTP instead), saying what to do.
    let run = machine.verify(&image, &[]);
    assert_eq!(run.code, 2);
    let line = one_line(&run);
    assert!(
        line.contains("not trusted") && line.contains("--registry-ca"),
        "{line}"
    );

    // Named insecure, it is spoken to in plain HTTP, which this registry does not answer.
    let run = machine.verify(
        &image,
        &[
            "--registry-ca",
            ca.to_str().unwrap(),
            "--insecure-registry",
            &registry.host(),
        ],
    );
    assert_eq!(run.code, 2, "{}{}", run.stdout, run.stderr);
}
