//! Feeds the webhook's policy picture from a policy folder, until the controller's
//! `watch_policy_dir` (which also watches for changes and reports per-object status) is merged;
//! [`super::command::run_webhook`] then calls that instead and this file goes.
//!
//! Loads once: every `*.yaml`, `*.yml` and `*.json` file of the folder (not recursive), each
//! possibly holding several documents, of kinds Attestor, VerificationPolicy,
//! ClusterVerificationPolicy, SigningRule and Namespace (for its labels). Documents of other
//! kinds are skipped with a log line.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::controller::PolicyPublisher;
use crate::crd::{Attestor, ClusterVerificationPolicy, SigningRule, VerificationPolicy};
use crate::policy::{self, EngineOptions, PolicyInputs};

/// Why the folder could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum PolicyDirError {
    /// The folder or a file in it could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A document is not valid YAML or not a valid resource of its kind.
    #[error("{path}: document {index}: {reason}")]
    Invalid {
        path: PathBuf,
        index: usize,
        reason: String,
    },
}

#[derive(Deserialize)]
struct Kind {
    #[serde(default)]
    kind: String,
}

/// Everything the folder holds.
#[derive(Debug, Default)]
pub struct FolderContents {
    /// What the engine compiles.
    pub inputs: PolicyInputs,
    /// For the signer.
    pub signing_rules: Vec<SigningRule>,
}

/// Reads every document of the folder.
pub fn read_policy_dir(dir: &Path) -> Result<FolderContents, PolicyDirError> {
    let read_err = |path: &Path, source| PolicyDirError::Read {
        path: path.to_path_buf(),
        source,
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| read_err(dir, e))?
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| {
            path.is_file()
                && path
                    .extension()
                    .and_then(|e| e.to_str())
                    .is_some_and(|e| matches!(e, "yaml" | "yml" | "json"))
        })
        .collect();
    files.sort();
    let mut contents = FolderContents::default();
    for path in files {
        let text = std::fs::read_to_string(&path).map_err(|e| read_err(&path, e))?;
        for (index, document) in serde_yaml_ng::Deserializer::from_str(&text).enumerate() {
            let invalid = |reason: String| PolicyDirError::Invalid {
                path: path.clone(),
                index: index + 1,
                reason,
            };
            let value =
                serde_yaml_ng::Value::deserialize(document).map_err(|e| invalid(e.to_string()))?;
            if value.is_null() {
                continue;
            }
            let kind = Kind::deserialize(value.clone())
                .map_err(|e| invalid(e.to_string()))?
                .kind;
            let parsed = add_document(&mut contents, &kind, value);
            parsed.map_err(|e| invalid(format!("{kind}: {e}")))?;
        }
    }
    Ok(contents)
}

fn add_document(
    contents: &mut FolderContents,
    kind: &str,
    value: serde_yaml_ng::Value,
) -> Result<(), serde_yaml_ng::Error> {
    match kind {
        "Attestor" => contents
            .inputs
            .attestors
            .push(Attestor::deserialize(value)?),
        "VerificationPolicy" => contents
            .inputs
            .policies
            .push(VerificationPolicy::deserialize(value)?),
        "ClusterVerificationPolicy" => contents
            .inputs
            .cluster_policies
            .push(ClusterVerificationPolicy::deserialize(value)?),
        "SigningRule" => contents
            .signing_rules
            .push(SigningRule::deserialize(value)?),
        "Namespace" => {
            let namespace = k8s_openapi::api::core::v1::Namespace::deserialize(value)?;
            let name = namespace.metadata.name.unwrap_or_default();
            let labels: BTreeMap<String, String> = namespace.metadata.labels.unwrap_or_default();
            contents.inputs.namespaces.insert(name, labels);
        }
        other => tracing::info!(
            kind = other,
            "policy folder: document kind not used; skipped"
        ),
    }
    Ok(())
}

/// Loads the folder once, publishes the compiled snapshot and marks the picture ready.
pub fn load_policy_dir(
    dir: &Path,
    options: EngineOptions,
    publisher: &PolicyPublisher,
) -> Result<(), PolicyDirError> {
    let contents = read_policy_dir(dir)?;
    let compiled = policy::compile(&contents.inputs, publisher.next_generation(), options);
    for status in compiled.statuses.iter().filter(|s| !s.ready) {
        tracing::warn!(
            object = %status.object(),
            problem = status.message.as_deref().unwrap_or_default(),
            "policy folder: object not Ready (it fails closed)"
        );
    }
    publisher.publish(compiled.snapshot, contents.signing_rules);
    publisher.set_ready(true);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_multi_document_files_by_kind() {
        let dir = tempfile::tempdir().ok();
        let Some(dir) = dir else {
            panic!("temporary directory");
        };
        let yaml = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: shop\n  labels: {team: a}\n\
                    ---\napiVersion: signet.dev/v1alpha1\nkind: ClusterVerificationPolicy\n\
                    metadata:\n  name: prod\nspec:\n  images: [\"r.example/**\"]\n  attestors: [release]\n\
                    ---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n";
        std::fs::write(dir.path().join("a.yaml"), yaml).ok();
        std::fs::write(dir.path().join("notes.txt"), "not read").ok();
        let contents = read_policy_dir(dir.path());
        let Ok(contents) = contents else {
            panic!("{:?}", contents.err());
        };
        assert_eq!(contents.inputs.cluster_policies.len(), 1);
        assert_eq!(
            contents
                .inputs
                .namespaces
                .get("shop")
                .and_then(|l| l.get("team")),
            Some(&"a".to_string())
        );
        std::fs::write(dir.path().join("b.yaml"), "kind: Attestor\nspec: 3\n").ok();
        let err = read_policy_dir(dir.path()).err().map(|e| e.to_string());
        assert!(
            err.as_deref()
                .is_some_and(|e| e.contains("b.yaml: document 1: Attestor")),
            "{err:?}"
        );
    }
}
