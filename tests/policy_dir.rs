//! Policy-folder mode: loading the documents, reporting bad ones by file and field, reloading on
//! change and keeping the last good picture when a change is bad.

// Helpers outside `#[test]` functions fail by panicking, as tests do (clippy.toml covers only
// `#[test]` code).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::time::Duration;

use signet::controller::{
    ControllerError, FileProblem, load_policy_dir, policy_channel, watch_policy_dir_every,
};
use signet::crypto::{Algorithm, generate_key_pair};
use signet::policy::{EngineOptions, Lookup};
use signet::reference::ImageRef;

fn ec_public_pem() -> String {
    generate_key_pair(Algorithm::EcdsaP256Sha256, None)
        .expect("generate a P-256 key")
        .public_key_pem()
}

fn indent(pem: &str) -> String {
    pem.lines().map(|l| format!("      {l}\n")).collect()
}

fn attestor(name: &str, pem: &str) -> String {
    format!(
        "apiVersion: signet.dev/v1alpha1\nkind: Attestor\nmetadata:\n  name: {name}\nspec:\n  keys:\n  \
         - id: {name}-key\n    algorithm: ECDSA_P256_SHA_256\n    publicKey: |\n{}",
        indent(pem)
    )
}

fn cluster_policy(name: &str, images: &str, attestors: &str) -> String {
    format!(
        "apiVersion: signet.dev/v1alpha1\nkind: ClusterVerificationPolicy\nmetadata:\n  name: {name}\n\
         spec:\n  images: [{images}]\n  attestors: [{attestors}]\n"
    )
}

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).expect("write a policy file");
}

fn problems(err: ControllerError) -> Vec<FileProblem> {
    match err {
        ControllerError::InvalidPolicyDir { problems, .. } => problems,
        other => panic!("expected an invalid-folder error, got {other}"),
    }
}

fn only_problem(dir: &Path) -> FileProblem {
    let found = problems(load_policy_dir(dir).expect_err("the folder is invalid"));
    assert_eq!(found.len(), 1, "{found:?}");
    found.into_iter().next().unwrap()
}

fn image(text: &str) -> ImageRef {
    ImageRef::parse(text).expect("image reference")
}

#[test]
fn loads_every_kind_from_multi_document_files() {
    let dir = tempfile::tempdir().unwrap();
    let pem = ec_public_pem();
    write(
        dir.path(),
        "trust.yaml",
        &format!("{}---\n{}", attestor("release", &pem), attestor("qa", &pem)),
    );
    write(
        dir.path(),
        "policies.yml",
        &format!(
            "{}---\napiVersion: signet.dev/v1alpha1\nkind: VerificationPolicy\nmetadata:\n  name: team\n\
             spec:\n  images: [\"registry.example.com/team/**\"]\n  attestors: [qa]\n  mode: DryRun\n\
             ---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: prod\n  labels:\n    env: prod\n\
             ---\napiVersion: signet.dev/v1alpha1\nkind: SigningRule\nmetadata:\n  name: sign-prod\n\
             spec:\n  scope: [\"registry.example.com/prod/**\"]\n  key: {{ref: \"file:/keys/release.key\"}}\n  \
             algorithm: ECDSA_P256_SHA_256\n",
            cluster_policy("prod", "\"registry.example.com/prod/**\"", "release")
        ),
    );
    let loaded = load_policy_dir(dir.path()).expect("a valid folder");
    assert_eq!(loaded.inputs.attestors.len(), 2);
    assert_eq!(loaded.inputs.cluster_policies.len(), 1);
    assert_eq!(loaded.inputs.policies.len(), 1);
    assert_eq!(
        loaded.inputs.policies[0].metadata.namespace.as_deref(),
        Some("default"),
        "a VerificationPolicy without a namespace belongs to `default`"
    );
    assert_eq!(
        loaded.inputs.namespaces["prod"]
            .get("env")
            .map(String::as_str),
        Some("prod")
    );
    assert_eq!(loaded.signing_rules.len(), 1);
    assert_eq!(
        loaded.signing_rules[0].spec.key.reference,
        "file:/keys/release.key"
    );
}

#[test]
fn an_unknown_kind_names_the_file_and_document() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "mixed.yaml",
        &format!(
            "{}---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n",
            attestor("release", &ec_public_pem())
        ),
    );
    let problem = only_problem(dir.path());
    assert!(problem.file.ends_with("mixed.yaml"));
    assert_eq!(problem.document, Some(2));
    assert!(problem.message.contains("\"ConfigMap\""), "{problem}");
}

#[test]
fn an_unknown_algorithm_names_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let text = attestor("release", &ec_public_pem()).replace("ECDSA_P256_SHA_256", "DSA_SHA1");
    write(dir.path(), "attestor.yaml", &text);
    let problem = only_problem(dir.path());
    assert!(problem.file.ends_with("attestor.yaml"));
    assert_eq!(problem.field.as_deref(), Some("spec.keys[0].algorithm"));
    assert!(problem.message.contains("DSA_SHA1"), "{problem}");
    assert_eq!(problem.object.as_deref(), Some("Attestor release"));
}

#[test]
fn a_malformed_pem_names_the_attestor_and_key() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "attestor.yaml",
        &attestor(
            "release",
            "-----BEGIN PUBLIC KEY-----\nbm90IGEga2V5\n-----END PUBLIC KEY-----",
        ),
    );
    let problem = only_problem(dir.path());
    assert!(problem.file.ends_with("attestor.yaml"));
    assert_eq!(problem.object.as_deref(), Some("Attestor release"));
    assert!(
        problem.message.contains("spec.keys[0].publicKey"),
        "{problem}"
    );
}

#[test]
fn missing_attestor_invalid_glob_and_empty_list_are_reported_per_object() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "policies.yaml",
        &format!(
            "{}---\n{}---\n{}",
            cluster_policy("missing", "\"registry.example.com/a/**\"", "nobody"),
            cluster_policy("badglob", "\"registry.example.com/***\"", "nobody"),
            cluster_policy("empty", "\"registry.example.com/b/**\"", ""),
        ),
    );
    let found = problems(load_policy_dir(dir.path()).expect_err("invalid policies"));
    let text: Vec<String> = found.iter().map(ToString::to_string).collect();
    let about = |name: &str| {
        text.iter()
            .find(|t| t.contains(&format!("ClusterVerificationPolicy {name})")))
            .unwrap_or_else(|| panic!("no problem about {name}: {text:?}"))
            .clone()
    };
    assert!(about("missing").contains("spec.attestors: attestor \"nobody\" not found"));
    assert!(about("badglob").contains("spec.images[0]"));
    assert!(about("empty").contains("spec.attestors: empty"));
    assert!(found.iter().all(|p| p.file.ends_with("policies.yaml")));
}

#[test]
fn a_duplicate_name_names_both_files() {
    let dir = tempfile::tempdir().unwrap();
    let pem = ec_public_pem();
    write(dir.path(), "a.yaml", &attestor("release", &pem));
    write(dir.path(), "b.yaml", &attestor("release", &pem));
    let problem = only_problem(dir.path());
    let text = problem.to_string();
    assert!(text.contains("a.yaml") && text.contains("b.yaml"), "{text}");
    assert_eq!(problem.field.as_deref(), Some("metadata.name"));
}

#[test]
fn a_yaml_syntax_error_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "broken.yaml", "kind: [unclosed\n");
    let problem = only_problem(dir.path());
    assert!(problem.file.ends_with("broken.yaml"));
    assert!(problem.message.starts_with("not YAML"), "{problem}");
}

async fn wait_for_generation(state: &mut signet::controller::PolicyState, generation: u64) {
    tokio::time::timeout(Duration::from_secs(10), async {
        while state.snapshot().generation() < generation {
            assert!(state.changed().await, "the watcher stopped");
        }
    })
    .await
    .unwrap_or_else(|_| panic!("generation {generation} never came"));
}

#[tokio::test]
async fn reloads_on_change_and_keeps_the_last_good_picture_on_a_bad_file() {
    let dir = tempfile::tempdir().unwrap();
    let pem = ec_public_pem();
    write(dir.path(), "trust.yaml", &attestor("release", &pem));
    write(
        dir.path(),
        "policy.yaml",
        &cluster_policy("prod", "\"registry.example.com/prod/**\"", "release"),
    );
    let (publisher, mut state) = policy_channel(EngineOptions::default());
    assert!(!state.is_ready());
    let watcher = tokio::spawn(watch_policy_dir_every(
        dir.path().to_path_buf(),
        EngineOptions::default(),
        publisher,
        Duration::from_millis(50),
    ));
    wait_for_generation(&mut state, 1).await;
    assert!(state.is_ready());
    let prod = image("registry.example.com/prod/app:v1");
    let dev = image("registry.example.com/dev/app:v1");
    assert_eq!(
        state.snapshot().matching_policies("default", &prod).len(),
        1
    );
    assert!(
        state
            .snapshot()
            .matching_policies("default", &dev)
            .is_empty()
    );

    // A good change: a second policy appears in a new generation.
    write(
        dir.path(),
        "dev.yaml",
        &cluster_policy("dev", "\"registry.example.com/dev/**\"", "release"),
    );
    wait_for_generation(&mut state, 2).await;
    assert_eq!(state.snapshot().matching_policies("default", &dev).len(), 1);

    // A bad change: the policy names a missing attestor. Nothing is published.
    write(
        dir.path(),
        "dev.yaml",
        &cluster_policy("dev", "\"registry.example.com/dev/**\"", "nobody"),
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    let snapshot = state.snapshot();
    assert_eq!(snapshot.generation(), 2, "a bad folder is not published");
    let verdict = snapshot.evaluate(
        "default",
        &dev,
        &Lookup::failed(signet::registry::RegistryError::Unreachable {
            host: "registry.example.com".into(),
            cause: "offline".into(),
        }),
    );
    assert_eq!(verdict.policies[0].policy, "dev");
    assert!(verdict.policies[0].ready, "the last good `dev` is in force");
    assert!(state.is_ready());

    // Fixing it publishes again; removing a file removes its policies.
    std::fs::remove_file(dir.path().join("dev.yaml")).unwrap();
    wait_for_generation(&mut state, 3).await;
    assert!(
        state
            .snapshot()
            .matching_policies("default", &dev)
            .is_empty()
    );
    assert!(!watcher.is_finished());
    watcher.abort();
}

#[tokio::test]
async fn an_invalid_first_load_is_an_error_naming_file_and_field() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "policy.yaml",
        &cluster_policy("prod", "\"registry.example.com/prod/**\"", "nobody"),
    );
    let (publisher, state) = policy_channel(EngineOptions::default());
    let err = watch_policy_dir_every(
        dir.path().to_path_buf(),
        EngineOptions::default(),
        publisher,
        Duration::from_millis(50),
    )
    .await
    .expect_err("the first load fails");
    let text = err.to_string();
    assert!(text.contains("policy.yaml"), "{text}");
    assert!(text.contains("spec.attestors"), "{text}");
    assert!(!state.is_ready());
}

#[test]
fn the_example_folder_loads() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/policies");
    let loaded = load_policy_dir(&dir).expect("examples/policies is valid");
    assert_eq!(loaded.inputs.attestors.len(), 1);
    assert_eq!(loaded.inputs.cluster_policies.len(), 1);
    assert_eq!(loaded.inputs.policies.len(), 1);
    assert_eq!(loaded.inputs.namespaces.len(), 2);
    assert_eq!(loaded.signing_rules.len(), 1);
}

/// Like the API server under kubectl's strict field validation: a field the kind does not have is
/// refused, naming file, document, object and field, at any depth and in every kind.
#[test]
fn unknown_fields_are_refused_naming_them() {
    let dir = tempfile::tempdir().unwrap();
    let pem = ec_public_pem();
    // The typo that would make a cluster policy govern every namespace.
    write(
        dir.path(),
        "policies.yaml",
        &format!(
            "{}---\n{}  namespaceSelectr:\n    matchLabels: {{env: prod}}\n",
            attestor("release", &pem),
            cluster_policy("prod", "\"registry.example.com/prod/**\"", "release")
        ),
    );
    let problem = only_problem(dir.path());
    assert!(problem.file.ends_with("policies.yaml"), "{problem}");
    assert_eq!(problem.document, Some(2));
    assert_eq!(
        problem.object.as_deref(),
        Some("ClusterVerificationPolicy prod")
    );
    assert_eq!(problem.field.as_deref(), Some("spec.namespaceSelectr"));
    let line = problem.to_string();
    assert!(
        line.contains("unknown field \"namespaceSelectr\"") && !line.contains('\n'),
        "{line}"
    );

    // Deeper and elsewhere: in a list item, in metadata, inside a selector (an Option), at the
    // top, in a SigningRule's key and in a Namespace.
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "attestor.yaml",
        &attestor("release", &pem).replace("    algorithm:", "    idd: x\n    algorithm:"),
    );
    write(
        dir.path(),
        "cluster.yaml",
        &format!(
            "{}  namespaceSelector:\n    matchLabelz: {{env: prod}}\nstatuss: {{}}\n",
            cluster_policy("prod", "\"registry.example.com/prod/**\"", "release")
                .replace("  name: prod\n", "  name: prod\n  labelz: {a: b}\n")
        ),
    );
    write(
        dir.path(),
        "rule.yaml",
        "apiVersion: signet.dev/v1alpha1\nkind: SigningRule\nmetadata:\n  name: sign\nspec:\n  \
         scope: [\"registry.example.com/prod/**\"]\n  key: {ref: \"file:/k.pem\", reff: x}\n  \
         algorithm: ECDSA_P256_SHA_256\n",
    );
    write(
        dir.path(),
        "ns.yaml",
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: prod\n  lables: {env: prod}\n",
    );
    let found = problems(load_policy_dir(dir.path()).expect_err("unknown fields"));
    let mut fields: Vec<(String, String)> = found
        .iter()
        .map(|p| {
            let file = p.file.file_name().unwrap().to_string_lossy().into_owned();
            (file, p.field.clone().unwrap_or_default())
        })
        .collect();
    fields.sort();
    assert_eq!(
        fields,
        [
            ("attestor.yaml", "spec.keys[0].idd"),
            ("cluster.yaml", "metadata.labelz"),
            ("cluster.yaml", "spec.namespaceSelector.matchLabelz"),
            ("cluster.yaml", "statuss"),
            ("ns.yaml", "metadata.lables"),
            ("rule.yaml", "spec.key.reff"),
        ]
        .map(|(f, p)| (f.to_string(), p.to_string())),
        "{found:?}"
    );
}
