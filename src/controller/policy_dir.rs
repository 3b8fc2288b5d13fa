//! Policy-folder mode: the same resources as the cluster's, read from YAML files instead of the
//! API server, and watched for changes.
//!
//! The folder's `*.yaml` / `*.yml` files (not its subfolders; hidden files are skipped, so editor
//! swap files are ignored, and a mounted ConfigMap's `..data` links work) hold multi-document
//! YAML: `signet.dev/v1alpha1` Attestor, VerificationPolicy, ClusterVerificationPolicy and
//! SigningRule, and `v1` Namespace (for the labels a `namespaceSelector` reads).
//!
//! A folder is all or nothing: with no status to write, a problem the cluster would report as a
//! Ready=False condition (missing attestor, bad key, invalid glob) is an error here, naming the
//! file, the object and the field. A watcher that meets such a folder logs it and keeps the last
//! good picture in force, so a typo never empties the policy set.

use std::collections::btree_map::{self, BTreeMap};
use std::collections::hash_map::{self, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use kube::ResourceExt;
use serde::de::DeserializeOwned;
use sha2::Digest as _;

use super::error::{ControllerError, FileProblem};
use super::state::PolicyPublisher;
use crate::crd::{
    Attestor, ClusterVerificationPolicy, GROUP, SigningRule, VERSION, VerificationPolicy,
};
use crate::policy::{self, EngineOptions, ObjectKind, PolicyInputs};
use crate::reference::Glob;

/// How often [`watch_policy_dir`] looks at the folder.
pub const POLL_INTERVAL: Duration = Duration::from_secs(1);

/// Namespace a VerificationPolicy without `metadata.namespace` belongs to (as `kubectl apply`
/// would place it).
pub const DEFAULT_NAMESPACE: &str = "default";

/// What a valid policy folder holds.
#[derive(Clone, Debug, Default)]
pub struct LoadedDir {
    /// Attestors, policies and namespace labels, ready for [`policy::compile`].
    pub inputs: PolicyInputs,
    /// The SigningRules, for the signer.
    pub signing_rules: Vec<SigningRule>,
}

/// Reads and checks every document of the folder. Any problem (unreadable file, YAML error,
/// unknown kind, invalid field, duplicate name, an object that would not be Ready) fails the
/// whole folder with every problem found, each naming its file and field.
pub fn load_policy_dir(dir: &Path) -> Result<LoadedDir, ControllerError> {
    let files = policy_files(dir)?;
    let mut problems = Vec::new();
    let mut texts = Vec::with_capacity(files.len());
    for file in files {
        match std::fs::read_to_string(&file) {
            Ok(text) => texts.push((file, text)),
            Err(e) => problems.push(FileProblem {
                file,
                document: None,
                object: None,
                field: None,
                message: format!("cannot read: {e}"),
            }),
        }
    }
    let loaded = parse_files(&texts, &mut problems);
    if problems.is_empty() {
        check_compiles(&loaded, &mut problems);
    }
    if problems.is_empty() {
        Ok(loaded.dir)
    } else {
        Err(ControllerError::InvalidPolicyDir {
            dir: dir.to_path_buf(),
            problems,
        })
    }
}

/// Loads the folder once (an invalid first load is returned as the error), publishes it and marks
/// the state ready, then polls the folder every [`POLL_INTERVAL`] and republishes, with a new
/// generation, whenever a file changed and the folder is valid. An invalid change is logged once,
/// naming the file and the field, and the last good picture stays in force. Runs until the task
/// is dropped.
pub async fn watch_policy_dir(
    dir: PathBuf,
    options: EngineOptions,
    publisher: PolicyPublisher,
) -> Result<(), ControllerError> {
    watch_policy_dir_every(dir, options, publisher, POLL_INTERVAL).await
}

/// [`watch_policy_dir`] with another poll interval (tests use a short one).
pub async fn watch_policy_dir_every(
    dir: PathBuf,
    options: EngineOptions,
    publisher: PolicyPublisher,
    interval: Duration,
) -> Result<(), ControllerError> {
    let mut seen = folder_fingerprint(&dir);
    let loaded = load_policy_dir(&dir)?;
    publish(&publisher, loaded, options);
    publisher.set_ready(true);
    tracing::info!(dir = %dir.display(), "policy folder loaded");
    loop {
        tokio::time::sleep(interval).await;
        let now = folder_fingerprint(&dir);
        if now == seen {
            continue;
        }
        seen = now;
        match load_policy_dir(&dir) {
            Ok(loaded) => {
                let generation = publish(&publisher, loaded, options);
                tracing::info!(dir = %dir.display(), generation, "policy folder reloaded");
            }
            Err(e) => {
                publisher.record_rejected_load();
                tracing::error!(error = %e, "policy folder change rejected; the last good policies stay in force");
            }
        }
    }
}

fn publish(publisher: &PolicyPublisher, loaded: LoadedDir, options: EngineOptions) -> u64 {
    let generation = publisher.next_generation();
    let compiled = policy::compile(&loaded.inputs, generation, options);
    publisher.record_statuses(&compiled.statuses);
    publisher.publish(compiled.snapshot, loaded.signing_rules);
    generation
}

/// The policy files of `dir`, sorted by name.
fn policy_files(dir: &Path) -> Result<Vec<PathBuf>, ControllerError> {
    let read_dir = |source| ControllerError::ReadDir {
        dir: dir.to_path_buf(),
        source,
    };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(read_dir)? {
        let path = entry.map_err(read_dir)?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let is_yaml = name.ends_with(".yaml") || name.ends_with(".yml");
        // `is_file` follows links: a ConfigMap volume's entries are links into `..data/`.
        if is_yaml && !name.starts_with('.') && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// Names, sizes and content hashes of the policy files: any edit, addition, removal or rename
/// changes it, whatever the file system's timestamp granularity.
fn folder_fingerprint(dir: &Path) -> Option<Vec<(PathBuf, u64, Vec<u8>)>> {
    let files = policy_files(dir).ok()?;
    Some(
        files
            .into_iter()
            .map(|file| match std::fs::read(&file) {
                Ok(bytes) => {
                    let hash = sha2::Sha256::digest(&bytes).to_vec();
                    (file, bytes.len() as u64, hash)
                }
                Err(_) => (file, u64::MAX, Vec::new()),
            })
            .collect(),
    )
}

/// Where each object came from, for duplicate and compile errors.
#[derive(Default)]
struct Origins {
    /// (kind, namespace, name) -> file.
    files: HashMap<(ObjectKind, Option<String>, String), PathBuf>,
}

struct Parsed {
    dir: LoadedDir,
    origins: Origins,
}

/// A document's identity, once its kind is known.
struct Place<'a> {
    file: &'a Path,
    document: usize,
}

impl Place<'_> {
    fn problem(
        &self,
        object: Option<String>,
        field: Option<String>,
        message: impl Into<String>,
    ) -> FileProblem {
        FileProblem {
            file: self.file.to_path_buf(),
            document: Some(self.document),
            object,
            field,
            message: message.into(),
        }
    }
}

fn parse_files(texts: &[(PathBuf, String)], problems: &mut Vec<FileProblem>) -> Parsed {
    let mut parsed = Parsed {
        dir: LoadedDir::default(),
        origins: Origins::default(),
    };
    let mut signing_rule_files: BTreeMap<String, PathBuf> = BTreeMap::new();
    let mut namespace_files: BTreeMap<String, PathBuf> = BTreeMap::new();
    for (file, text) in texts {
        for (i, document) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
            let place = Place {
                file,
                document: i + 1,
            };
            let value = match serde::Deserialize::deserialize(document) {
                Ok(serde_yaml_ng::Value::Null) => continue, // an empty document (`---` alone)
                Ok(value) => value,
                Err(e) => {
                    problems.push(place.problem(None, None, format!("not YAML: {e}")));
                    // The parser cannot resynchronise after a syntax error: the rest of the
                    // file is unreadable.
                    break;
                }
            };
            parse_document(
                &place,
                value,
                &mut parsed,
                &mut signing_rule_files,
                &mut namespace_files,
                problems,
            );
        }
    }
    parsed
}

fn parse_document(
    place: &Place<'_>,
    value: serde_yaml_ng::Value,
    parsed: &mut Parsed,
    signing_rule_files: &mut BTreeMap<String, PathBuf>,
    namespace_files: &mut BTreeMap<String, PathBuf>,
    problems: &mut Vec<FileProblem>,
) {
    let text_field = |name: &str| {
        value
            .get(name)
            .and_then(serde_yaml_ng::Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let api_version = text_field("apiVersion");
    let kind = text_field("kind");
    let signet_version = format!("{GROUP}/{VERSION}");
    let name = value
        .get("metadata")
        .and_then(|m| m.get("name"))
        .and_then(serde_yaml_ng::Value::as_str)
        .unwrap_or("")
        .to_string();
    let object = Some(format!("{kind} {name}"));
    if name.is_empty() && !kind.is_empty() {
        problems.push(place.problem(object, Some("metadata.name".into()), "missing"));
        return;
    }
    let dir = &mut parsed.dir;
    let origins = &mut parsed.origins;
    match (api_version.as_str(), kind.as_str()) {
        (v, "Attestor") if v == signet_version => {
            if let Some(attestor) = typed::<Attestor>(place, &object, value, problems) {
                let key = (ObjectKind::Attestor, None, name);
                if record(origins, key, place, problems) {
                    dir.inputs.attestors.push(attestor);
                }
            }
        }
        (v, "ClusterVerificationPolicy") if v == signet_version => {
            if let Some(policy) =
                typed::<ClusterVerificationPolicy>(place, &object, value, problems)
            {
                let key = (ObjectKind::ClusterVerificationPolicy, None, name);
                if record(origins, key, place, problems) {
                    dir.inputs.cluster_policies.push(policy);
                }
            }
        }
        (v, "VerificationPolicy") if v == signet_version => {
            if let Some(mut policy) = typed::<VerificationPolicy>(place, &object, value, problems) {
                let namespace = policy
                    .namespace()
                    .filter(|ns| !ns.is_empty())
                    .unwrap_or_else(|| DEFAULT_NAMESPACE.to_string());
                policy.metadata.namespace = Some(namespace.clone());
                let key = (ObjectKind::VerificationPolicy, Some(namespace), name);
                if record(origins, key, place, problems) {
                    dir.inputs.policies.push(policy);
                }
            }
        }
        (v, "SigningRule") if v == signet_version => {
            if let Some(rule) = typed::<SigningRule>(place, &object, value, problems) {
                let before = problems.len();
                check_signing_rule(place, &object, &rule, problems);
                let fresh = unique(signing_rule_files, name, place, "SigningRule", problems);
                if fresh && problems.len() == before {
                    dir.signing_rules.push(rule);
                }
            }
        }
        ("v1", "Namespace") => {
            if let Some(namespace) = typed::<Namespace>(place, &object, value, problems)
                && unique(namespace_files, name.clone(), place, "Namespace", problems)
            {
                dir.inputs
                    .namespaces
                    .insert(name, namespace.metadata.labels.unwrap_or_default());
            }
        }
        _ => {
            let what = if kind.is_empty() {
                "no kind".to_string()
            } else {
                format!("unknown kind {kind:?} of apiVersion {api_version:?}")
            };
            problems.push(place.problem(
                None,
                Some("kind".into()),
                format!(
                    "{what}: expected {signet_version} Attestor, VerificationPolicy, \
                     ClusterVerificationPolicy or SigningRule, or v1 Namespace"
                ),
            ));
        }
    }
}

/// Deserializes a document into its kind, naming the offending field on failure.
fn typed<T: DeserializeOwned>(
    place: &Place<'_>,
    object: &Option<String>,
    value: serde_yaml_ng::Value,
    problems: &mut Vec<FileProblem>,
) -> Option<T> {
    match serde_path_to_error::deserialize::<_, T>(value) {
        Ok(typed) => Some(typed),
        Err(e) => {
            let field = e.path().to_string();
            let field = (field != ".").then_some(field);
            problems.push(place.problem(object.clone(), field, e.inner().to_string()));
            None
        }
    }
}

/// Records where an object came from; `false` (and a problem naming both files) for a duplicate.
fn record(
    origins: &mut Origins,
    key: (ObjectKind, Option<String>, String),
    place: &Place<'_>,
    problems: &mut Vec<FileProblem>,
) -> bool {
    let kind = key.0;
    let shown = match &key.1 {
        Some(ns) => format!("{kind:?} {ns}/{}", key.2),
        None => format!("{kind:?} {}", key.2),
    };
    match origins.files.entry(key) {
        hash_map::Entry::Vacant(slot) => {
            slot.insert(place.file.to_path_buf());
            true
        }
        hash_map::Entry::Occupied(first) => {
            problems.push(duplicate(place, shown, first.get()));
            false
        }
    }
}

/// Like [`record`], for the kinds the engine does not compile.
fn unique(
    files: &mut BTreeMap<String, PathBuf>,
    name: String,
    place: &Place<'_>,
    kind: &str,
    problems: &mut Vec<FileProblem>,
) -> bool {
    let shown = format!("{kind} {name}");
    match files.entry(name) {
        btree_map::Entry::Vacant(slot) => {
            slot.insert(place.file.to_path_buf());
            true
        }
        btree_map::Entry::Occupied(first) => {
            problems.push(duplicate(place, shown, first.get()));
            false
        }
    }
}

fn duplicate(place: &Place<'_>, shown: String, first: &Path) -> FileProblem {
    place.problem(
        Some(shown),
        Some("metadata.name".into()),
        format!(
            "defined twice: in {} and in {}",
            first.display(),
            place.file.display()
        ),
    )
}

/// What the signer would trip over later: an empty or invalid scope, an empty key reference.
fn check_signing_rule(
    place: &Place<'_>,
    object: &Option<String>,
    rule: &SigningRule,
    problems: &mut Vec<FileProblem>,
) {
    if rule.spec.scope.is_empty() {
        problems.push(place.problem(
            object.clone(),
            Some("spec.scope".into()),
            "empty: the rule signs nothing",
        ));
    }
    for (i, scope) in rule.spec.scope.iter().enumerate() {
        if let Err(e) = Glob::new(scope) {
            problems.push(place.problem(
                object.clone(),
                Some(format!("spec.scope[{i}]")),
                e.to_string(),
            ));
        }
    }
    if rule.spec.key.reference.trim().is_empty() {
        problems.push(place.problem(object.clone(), Some("spec.key.ref".into()), "empty"));
    }
    if let Some(attribute) = crate::signer::forbidden_rule_attribute(&rule.spec.key.reference) {
        problems.push(place.problem(
            object.clone(),
            Some("spec.key.ref".into()),
            crate::signer::forbidden_attribute_message(attribute),
        ));
    }
}

/// Compiles the folder once and turns every not-Ready object into a problem naming its file.
fn check_compiles(parsed: &Parsed, problems: &mut Vec<FileProblem>) {
    let compiled = policy::compile(&parsed.dir.inputs, 0, EngineOptions::default());
    for status in compiled.statuses.iter().filter(|s| !s.ready) {
        let key = (status.kind, status.namespace.clone(), status.name.clone());
        let file = parsed.origins.files.get(&key).cloned().unwrap_or_default();
        problems.push(FileProblem {
            file,
            document: None,
            object: Some(status.object()),
            field: None,
            message: status
                .message
                .clone()
                .unwrap_or_else(|| "not Ready".to_string()),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) {
        std::fs::write(dir.join(name), text).unwrap();
    }

    #[test]
    fn empty_documents_and_other_files_are_ignored() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "a.yaml", "---\n# nothing\n---\n");
        write(dir.path(), "notes.txt", "kind: Bogus\n");
        write(dir.path(), ".swap.yaml", "kind: Bogus\n");
        let loaded = load_policy_dir(dir.path()).unwrap();
        assert!(loaded.inputs.attestors.is_empty());
        assert!(loaded.signing_rules.is_empty());
    }

    #[test]
    fn a_missing_folder_is_an_error_naming_it() {
        let err = load_policy_dir(Path::new("/nonexistent/signet-policies")).unwrap_err();
        assert!(
            err.to_string().contains("/nonexistent/signet-policies"),
            "{err}"
        );
    }
}
