//! The Helm chart `charts/signet`, checked by the real Helm 3 and Helm 4 binaries and Kubernetes' own
//! schemas (see `chart/helm.rs` for where they come from):
//! - `helm lint --strict` and `helm template` over a matrix of values files (`tests/chart/values/`), every
//!   object validated with `kubernetes-validate --strict` for the oldest and newest Kubernetes versions,
//!   the signet custom resources against the CRDs' own schemas;
//! - `values.schema.json` refuses unknown keys and wrong types, naming them;
//! - what Helm cannot check, as tests over Helm's output (`chart/objects.rs`): RBAC exactly as needed,
//!   webhook settings, pod hardening, the drain time; and over the chart's files: every value documented
//!   in values.yaml and the README, the bundled CRDs the generated ones.

// Helpers outside `#[test]` functions fail by panicking, as tests do (clippy.toml covers only
// `#[test]` code).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "chart/helm.rs"]
mod helm;
#[path = "chart/objects.rs"]
mod objects;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use serde_yaml_ng::Value;

use helm::{Helm, KUBE_VERSIONS, documents, render_error, repo, validate};

fn chart_dir() -> PathBuf {
    repo().join("charts/signet")
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|err| panic!("cannot read {}: {err}", path.display()))
}

fn values() -> Value {
    serde_yaml_ng::from_str(&read(&chart_dir().join("values.yaml"))).expect("values.yaml")
}

/// The values files of the matrix, in name order.
fn matrix() -> Vec<PathBuf> {
    let dir = repo().join("tests/chart/values");
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|err| panic!("{}: {err}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 7, "the matrix lost cases: {files:?}");
    files
}

#[test]
fn helm_3_and_4_lint_the_chart_strictly_with_every_values_file() {
    std::thread::scope(|scope| {
        for helm in Helm::ALL {
            scope.spawn(move || {
                for file in matrix() {
                    let file = file.display().to_string();
                    let lint = helm.run(&["lint", "--strict", "charts/signet", "--values", &file]);
                    let out =
                        lint.unwrap_or_else(|err| panic!("{helm:?} lint --strict {file}: {err}"));
                    assert!(
                        out.contains("1 chart(s) linted, 0 chart(s) failed"),
                        "{out}"
                    );
                }
            });
        }
    });
}

#[test]
fn every_rendered_object_passes_kubernetes_strict_schemas_and_the_crds() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let mut files = Vec::new();
    let mut kinds_per_case: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for helm in Helm::ALL {
        for case in matrix() {
            let name = case
                .file_stem()
                .expect("file name")
                .to_string_lossy()
                .into_owned();
            let text = helm
                .template(&[&case], "{}", &["--include-crds"])
                .unwrap_or_else(|err| panic!("{helm:?} template with {name}: {err}"));
            let kinds = kinds_per_case.entry(name.clone()).or_default();
            for doc in documents(&name, &text) {
                kinds.insert(doc["kind"].as_str().unwrap_or("?").to_owned());
            }
            let path = dir.path().join(format!("{name}-{helm:?}.yaml"));
            fs::write(&path, text).expect("write the rendering");
            files.push(path);
        }
    }
    let (passed, verdicts) = validate(&files, &KUBE_VERSIONS);
    let lines = |outcome: &str| -> Vec<&str> {
        let of = verdicts.iter().filter(|v| v.outcome == outcome);
        of.map(|v| v.line.as_str()).collect()
    };
    let errors = lines("error");
    assert!(passed && errors.is_empty(), "{}", errors.join("\n"));
    // Only the kinds of cert-manager and of the Prometheus operator (no schema here) go unchecked.
    let unchecked = lines("unchecked");
    let foreign = |line: &&str| {
        ["cert-manager.io/", "monitoring.coreos.com/"]
            .iter()
            .any(|g| line.contains(g))
    };
    assert!(unchecked.iter().all(foreign), "{unchecked:?}");
    for version in KUBE_VERSIONS {
        let at_version = format!("Kubernetes {version})");
        let checked = lines("ok")
            .iter()
            .filter(|l| l.ends_with(&at_version))
            .count();
        assert!(
            checked > 50,
            "only {checked} distinct objects validated for {version}"
        );
    }
    // The matrix covers what it claims: the CRDs, every signet kind, cert-manager, the signer.
    let policies = &kinds_per_case["policies"];
    for kind in ["CustomResourceDefinition", "Attestor", "VerificationPolicy"] {
        assert!(policies.contains(kind), "{kind} not rendered: {policies:?}");
    }
    for kind in ["ClusterVerificationPolicy", "SigningRule"] {
        assert!(policies.contains(kind), "{kind} not rendered: {policies:?}");
    }
    assert!(kinds_per_case["cert-manager"].contains("Certificate"));
    assert!(!kinds_per_case["defaults"].contains("Certificate"));
    assert!(kinds_per_case["defaults"].contains("ValidatingWebhookConfiguration"));
}

#[test]
fn the_validator_refuses_an_unknown_field_in_a_built_in_and_in_a_signet_object() {
    // The validation above is only worth something if it can fail.
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("typos.yaml");
    let typos = r#"
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  portz: [{port: 80}]
---
apiVersion: signet.dev/v1alpha1
kind: ClusterVerificationPolicy
metadata: {name: prod}
spec:
  images: ["registry.example.com/**"]
  attestors: [release]
  namespaceSelectr: {matchLabels: {env: prod}}
---
apiVersion: example.com/v1
kind: Unknown
metadata: {name: x}
"#;
    fs::write(&path, typos).expect("write");
    let (passed, verdicts) = validate(&[path], &KUBE_VERSIONS[1..]);
    assert!(!passed);
    let lines: Vec<&str> = verdicts.iter().map(|v| v.line.as_str()).collect();
    let refused = |name: &str, field: &str| {
        lines
            .iter()
            .any(|l| l.starts_with("error") && l.contains(name) && l.contains(field))
    };
    assert!(
        refused("Service/web", "'portz' was unexpected"),
        "{lines:#?}"
    );
    assert!(
        refused(
            "ClusterVerificationPolicy/prod",
            "'namespaceSelectr' was unexpected"
        ),
        "{lines:#?}"
    );
    assert!(refused("Unknown/x", "Unknown"), "{lines:#?}");
}

#[test]
fn a_values_typo_or_a_wrong_type_fails_the_render_naming_the_key() {
    for helm in Helm::ALL {
        let typo = render_error(helm, "webhok: {replicas: 5}");
        assert!(
            typo.contains("webhok") && typo.contains("not allowed"),
            "{helm:?}: {typo}"
        );
        let nested = render_error(helm, "webhook: {replicaz: 5}");
        assert!(nested.contains("replicaz"), "{helm:?}: {nested}");
        let wrong_type = render_error(helm, "webhook: {replicas: two}");
        assert!(
            wrong_type.contains("replicas") && wrong_type.contains("integer"),
            "{helm:?}: {wrong_type}"
        );
        let enum_value = render_error(helm, "webhook: {failurePolicy: Ignor}");
        assert!(
            enum_value.contains("failurePolicy"),
            "{helm:?}: {enum_value}"
        );
        let duration = render_error(helm, "webhook: {deadline: 8 seconds}");
        assert!(duration.contains("deadline"), "{helm:?}: {duration}");
    }
}

/// Dotted paths of the leaves of values.yaml (scalars, sequences, empty mappings); `prefix` ends in `.`.
fn leaf_paths(value: &Value, prefix: &str, out: &mut BTreeSet<String>) {
    match value.as_mapping().filter(|mapping| !mapping.is_empty()) {
        Some(mapping) => mapping.iter().for_each(|(key, child)| {
            leaf_paths(
                child,
                &format!("{prefix}{}.", key.as_str().unwrap_or("?")),
                out,
            )
        }),
        None => {
            out.insert(prefix.trim_end_matches('.').to_owned());
        }
    }
}

#[test]
fn the_values_schema_describes_every_key_of_values_yaml_and_nothing_else() {
    let schema: serde_json::Value =
        serde_json::from_str(&read(&chart_dir().join("values.schema.json"))).expect("JSON");
    let mut leaves = BTreeSet::new();
    leaf_paths(&values(), "", &mut leaves);
    let mut missing = Vec::new();
    for leaf in &leaves {
        // Down the closed objects; an open one (a Kubernetes object or a free map) takes any key.
        let mut node = &schema;
        for part in leaf.split('.') {
            if node["additionalProperties"] != false {
                break;
            }
            match node["properties"].get(part) {
                Some(child) => node = child,
                None => {
                    missing.push(leaf.clone());
                    break;
                }
            }
        }
    }
    assert!(missing.is_empty(), "values.schema.json lacks {missing:?}");
    // And nothing the values do not have.
    let mut described = BTreeSet::new();
    schema_paths(&schema, "", &mut described);
    let stale: Vec<_> = described
        .iter()
        .filter(|path| {
            !leaves
                .iter()
                .any(|l| l == *path || l.starts_with(&format!("{path}.")))
        })
        .collect();
    assert!(
        stale.is_empty(),
        "in values.schema.json, not in values.yaml: {stale:?}"
    );
}

/// The dotted paths of the schema's closed objects' properties down to non-closed nodes.
fn schema_paths(node: &serde_json::Value, prefix: &str, out: &mut BTreeSet<String>) {
    match node.get("properties").and_then(|p| p.as_object()) {
        Some(properties) if node["additionalProperties"] == false => {
            for (key, child) in properties {
                schema_paths(child, &format!("{prefix}{key}."), out);
            }
        }
        _ => {
            out.insert(prefix.trim_end_matches('.').to_owned());
        }
    }
}

#[test]
fn every_values_path_used_by_the_templates_exists_in_values_yaml() {
    // A template reading a key that values.yaml lacks renders an empty value without any error.
    let values = values();
    let (mut missing, mut checked) = (Vec::new(), 0);
    let dir = chart_dir().join("templates");
    for entry in fs::read_dir(&dir).expect("templates") {
        let path = entry.expect("entry").path();
        let text = read(&path);
        for (offset, _) in text.match_indices(".Values.") {
            let rest = &text[offset + ".Values.".len()..];
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
                .unwrap_or(rest.len());
            let key = rest[..end].trim_end_matches('.');
            checked += 1;
            let mut node = &values;
            for part in key.split('.') {
                match node.get(part) {
                    Some(child) if node.is_mapping() => node = child,
                    _ => {
                        let line = text[..offset].matches('\n').count() + 1;
                        let file = path.file_name().unwrap_or_default().to_string_lossy();
                        missing.push(format!("{file}:{line}: .Values.{key}"));
                        break;
                    }
                }
            }
        }
    }
    assert!(checked > 50, "only {checked} .Values references found");
    assert!(
        missing.is_empty(),
        "values.yaml lacks:\n{}",
        missing.join("\n")
    );
}

/// The (line number, key, whether the line above is a comment) of every mapping key of a YAML text,
/// skipping comments, sequence scalars and block-scalar bodies.
fn key_lines(text: &str) -> Vec<(usize, String, bool)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut keys = Vec::new();
    let mut block_scalar_of: Option<usize> = None;
    for (index, line) in lines.iter().enumerate() {
        let mut content = line.trim_start();
        let mut column = line.len() - content.len();
        if let Some(key_column) = block_scalar_of {
            if content.is_empty() || column > key_column {
                continue;
            }
            block_scalar_of = None;
        }
        while let Some(rest) = content.strip_prefix("- ") {
            column += content.len() - rest.trim_start().len();
            content = rest.trim_start();
        }
        let Some((key, after)) = content.split_once(':') else {
            continue;
        };
        let is_key = !key.is_empty()
            && !key.starts_with('#')
            && key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_-./\"'".contains(c))
            && (after.is_empty() || after.starts_with(' '));
        if !is_key {
            continue;
        }
        if after.trim_start().starts_with(['|', '>']) {
            block_scalar_of = Some(column);
        }
        let documented = index > 0 && lines[index - 1].trim_start().starts_with('#');
        keys.push((index + 1, key.to_owned(), documented));
    }
    keys
}

fn count_mapping_keys(value: &Value) -> usize {
    match value {
        Value::Mapping(map) => map.len() + map.values().map(count_mapping_keys).sum::<usize>(),
        Value::Sequence(items) => items.iter().map(count_mapping_keys).sum(),
        Value::Tagged(tagged) => count_mapping_keys(&tagged.value),
        _ => 0,
    }
}

#[test]
fn every_values_key_has_a_comment_line_directly_above_it() {
    let keys = key_lines(&read(&chart_dir().join("values.yaml")));
    let parsed = count_mapping_keys(&values());
    assert_eq!(
        keys.len(),
        parsed,
        "values.yaml: {} key lines for {parsed} keys: write one key per line (no flow mappings) so \
         that each can carry its comment",
        keys.len()
    );
    let undocumented: Vec<String> = keys
        .iter()
        .filter(|(_, _, documented)| !documented)
        .map(|(line, key, _)| format!("line {line}: {key}"))
        .collect();
    assert!(
        undocumented.is_empty(),
        "keys without a `#` line above: {undocumented:?}"
    );
}

#[test]
fn the_comment_checker_finds_undocumented_keys() {
    let keys =
        key_lines("# a\na: 1\nb:\n  # c\n  c: |\n    d: text\n  e:\n    - f: 2\n  # g\n  g: x\n");
    let found: Vec<String> = keys
        .iter()
        .map(|(_, key, documented)| format!("{key}{}", ["-", "+"][usize::from(*documented)]))
        .collect();
    assert_eq!(found, ["a+", "b-", "c+", "e-", "f-", "g+"]);
}

#[test]
fn the_readme_values_table_lists_exactly_the_keys_of_values_yaml() {
    let readme = read(&chart_dir().join("README.md"));
    let table = &readme[readme.find("\n## Values").expect("a `## Values` section")..];
    let documented: BTreeSet<String> = table
        .lines()
        .filter_map(|line| {
            line.strip_prefix("| `")?
                .split('`')
                .next()
                .map(str::to_owned)
        })
        .collect();
    let mut leaves = BTreeSet::new();
    leaf_paths(&values(), "", &mut leaves);
    let undocumented: Vec<_> = leaves.difference(&documented).collect();
    let stale: Vec<_> = documented.difference(&leaves).collect();
    assert!(
        undocumented.is_empty(),
        "not in the README: {undocumented:?}"
    );
    assert!(stale.is_empty(), "in the README, not in values: {stale:?}");
}

/// What the README's registry `notifications` block must set for the signer's endpoint.
const NOTIFICATIONS_ENDPOINT: &str = r#"
    endpoints:
    url: https://signet-signer.signet.svc/events
    Authorization: [Bearer
    timeout:
    threshold:
    backoff:
    ignoredmediatypes:
    - application/octet-stream
    ignore:
    actions:
    - pull"#;

#[test]
fn the_readme_gives_the_registry_notifications_endpoint_the_signer_service_serves() {
    let readme = read(&chart_dir().join("README.md"));
    let block = readme
        .split("```yaml\nnotifications:\n")
        .nth(1)
        .expect("a notifications block");
    let block = &block[..block.find("```").expect("the block is closed")];
    let missing: Vec<&str> = NOTIFICATIONS_ENDPOINT
        .lines()
        .map(str::trim)
        .filter(|needle| !needle.is_empty() && !block.contains(needle))
        .collect();
    assert!(
        missing.is_empty(),
        "the notifications block lacks {missing:?}"
    );
    // The URL names the Service and port that the chart renders for the signer.
    let service = helm::render("signer-service.yaml", "signer: {enabled: true}");
    assert_eq!(service[0]["metadata"]["name"], Value::from("signet-signer"));
    assert_eq!(service[0]["spec"]["ports"][0]["port"], Value::from(443));
}

#[test]
fn the_chart_crds_are_a_byte_for_byte_copy_of_the_generated_crds() {
    let generated_path = repo().join("crds/signet.dev.yaml");
    let copy_path = chart_dir().join("crds/signet.dev.yaml");
    let copy = "cp crds/signet.dev.yaml charts/signet/crds/signet.dev.yaml";
    let generated = fs::read(&generated_path).unwrap_or_else(|err| {
        let path = generated_path.display();
        panic!("{path}: {err}; generate it (`make generate`), then copy it into the chart: {copy}")
    });
    let copied = fs::read(&copy_path)
        .unwrap_or_else(|err| panic!("{}: {err}; copy it: {copy}", copy_path.display()));
    if generated != copied {
        let line = generated
            .split(|&b| b == b'\n')
            .zip(copied.split(|&b| b == b'\n'))
            .position(|(a, b)| a != b)
            .map_or("the end".to_owned(), |i| format!("line {}", i + 1));
        panic!(
            "charts/signet/crds/signet.dev.yaml differs from crds/signet.dev.yaml (first difference \
             at {line}); copy it: {copy}"
        );
    }
}

/// One signer pod learns of another writer's overwrite from the registry's events; several pods
/// look again by time, since an event reaches one pod only.
#[test]
fn several_signer_pods_recheck_by_time_one_by_events() {
    let args = |values: &str| -> Vec<String> {
        let deployment = helm::render("signer-deployment.yaml", values);
        deployment[0]["spec"]["template"]["spec"]["containers"][0]["args"]
            .as_sequence()
            .expect("the signer's args")
            .iter()
            .filter_map(|a| a.as_str().map(str::to_string))
            .collect()
    };
    let one = args("signer: {enabled: true, replicas: 1}");
    assert!(!one.iter().any(|a| a.starts_with("--recheck")), "{one:?}");
    let three = args("signer: {enabled: true, replicas: 3}");
    assert!(three.contains(&"--recheck=2s".to_string()), "{three:?}");
    // signer.acknowledge is passed as the flag; the queue's capacity only where there is a queue.
    assert!(one.contains(&"--acknowledge=signed".to_string()), "{one:?}");
    assert!(
        !one.iter().any(|a| a.starts_with("--queue-capacity")),
        "{one:?}"
    );
    let queued = args("signer: {enabled: true, acknowledge: queued, queueCapacity: 500}");
    assert!(
        queued.contains(&"--acknowledge=queued".to_string()),
        "{queued:?}"
    );
    assert!(
        queued.contains(&"--queue-capacity=500".to_string()),
        "{queued:?}"
    );
}
