//! SigningRules from a policy folder, for `signet signer --policy-dir` and `signet sign --backfill`.
//!
//! A stop-gap until the controller's `watch_policy_dir` lands: it reads the `SigningRule`
//! documents of every `*.yaml` / `*.yml` file directly in the folder (multi-document files
//! allowed; other kinds are left to the webhook) and polls the folder for changes.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use sha2::Digest as _;

use crate::controller::{PolicyPublisher, PolicyState, policy_channel};
use crate::crd::SigningRule;
use crate::policy::{self, EngineOptions, PolicyInputs};

use super::SignerError;

/// How often the folder is checked for changes.
const POLL_INTERVAL: Duration = Duration::from_secs(5);

fn yaml_files(dir: &Path) -> Result<Vec<PathBuf>, SignerError> {
    let entries = std::fs::read_dir(dir).map_err(|e| {
        SignerError::Policy(format!("cannot read policy folder {}: {e}", dir.display()))
    })?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.is_file()
                && p.extension().is_some_and(|x| {
                    x.eq_ignore_ascii_case("yaml") || x.eq_ignore_ascii_case("yml")
                })
        })
        .collect();
    files.sort();
    Ok(files)
}

/// Reads every SigningRule in the folder. A document that is not YAML, or a SigningRule that does
/// not parse, is an error naming the file.
pub fn load_signing_rules(dir: &Path) -> Result<Vec<SigningRule>, SignerError> {
    let mut rules = Vec::new();
    for file in yaml_files(dir)? {
        let text = std::fs::read_to_string(&file)
            .map_err(|e| SignerError::Policy(format!("cannot read {}: {e}", file.display())))?;
        for (index, document) in serde_yaml_ng::Deserializer::from_str(&text).enumerate() {
            let bad = |e: serde_yaml_ng::Error| {
                SignerError::Policy(format!(
                    "{} (document {}): {}",
                    file.display(),
                    index + 1,
                    e.to_string().replace('\n', " ")
                ))
            };
            let value = serde_yaml_ng::Value::deserialize(document).map_err(bad)?;
            if value.is_null() {
                continue;
            }
            if value.get("kind").and_then(|k| k.as_str()) != Some("SigningRule") {
                continue;
            }
            rules.push(serde_yaml_ng::from_value::<SigningRule>(value).map_err(bad)?);
        }
    }
    Ok(rules)
}

/// A hash of the folder's YAML files (names and contents), to notice changes.
fn fingerprint(dir: &Path) -> Option<Vec<u8>> {
    let mut hasher = sha2::Sha256::new();
    for file in yaml_files(dir).ok()? {
        hasher.update(file.to_string_lossy().as_bytes());
        hasher.update(std::fs::read(&file).ok()?);
    }
    Some(hasher.finalize().to_vec())
}

fn publish(publisher: &PolicyPublisher, rules: Vec<SigningRule>) {
    let generation = publisher.next_generation();
    let compiled = policy::compile(
        &PolicyInputs::default(),
        generation,
        EngineOptions::default(),
    );
    publisher.publish(compiled.snapshot, rules);
    publisher.set_ready(true);
}

/// Loads the folder once (an error if it cannot be read) and keeps the picture current: the folder
/// is polled, and a change that does not load is logged while the last good rules stay.
pub fn watch_signing_rules(dir: &Path) -> Result<PolicyState, SignerError> {
    let (publisher, state) = policy_channel(EngineOptions::default());
    let rules = load_signing_rules(dir)?;
    tracing::info!(folder = %dir.display(), rules = rules.len(), "SigningRules loaded");
    publish(&publisher, rules);
    let dir = dir.to_path_buf();
    let mut last = fingerprint(&dir);
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(POLL_INTERVAL).await;
            let now = fingerprint(&dir);
            if now.is_none() || now == last {
                continue;
            }
            match load_signing_rules(&dir) {
                Ok(rules) => {
                    tracing::info!(folder = %dir.display(), rules = rules.len(), "SigningRules reloaded");
                    publish(&publisher, rules);
                    last = now;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "policy folder not reloaded; keeping the last rules")
                }
            }
        }
    });
    Ok(state)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::Trigger;
    use crate::signature::SignatureType;

    #[test]
    fn signing_rules_are_read_from_multi_document_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("rules.yaml"),
            "apiVersion: signet.dev/v1alpha1\nkind: Attestor\nmetadata: {name: a}\nspec: {keys: []}\n---\n\
             apiVersion: signet.dev/v1alpha1\nkind: SigningRule\nmetadata: {name: release}\n\
             spec:\n  scope: [\"reg.example/prod/**\"]\n  key: {ref: \"file:/k.pem\"}\n  algorithm: ECDSA_P256_SHA_256\n  signatureType: Simple\n  trigger: Manual\n---\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("notes.txt"), "not yaml: [").unwrap();
        let rules = load_signing_rules(dir.path()).unwrap();
        assert_eq!(rules.len(), 1);
        assert_eq!(rules[0].metadata.name.as_deref(), Some("release"));
        assert_eq!(rules[0].spec.signature_type, SignatureType::Simple);
        assert_eq!(rules[0].spec.trigger, Trigger::Manual);
    }

    #[test]
    fn a_broken_rule_names_its_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("bad.yml"),
            "kind: SigningRule\nmetadata: {name: x}\nspec: {scope: [a], algorithm: NOPE}\n",
        )
        .unwrap();
        let err = load_signing_rules(dir.path()).unwrap_err().to_string();
        assert!(err.contains("bad.yml"), "{err}");
        assert!(load_signing_rules(&dir.path().join("missing")).is_err());
    }
}
