//! Static checks of the Helm chart `charts/signet`. No `helm` binary can run on the build machines, so
//! these tests read the chart's files: values referenced by templates exist and are documented, template
//! delimiters and blocks are balanced, the bundled CRDs are the generated ones, and the webhook
//! configurations, RBAC, pods and README say what the chart promises. `chart_render` renders templates with
//! their conditions evaluated, so that objects and flags switched by values can be checked both ways.

// Helpers outside `#[test]` functions fail by panicking, as tests do (clippy.toml covers only
// `#[test]` code).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod chart_render;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_yaml_ng::Value;

/// Every API group and its resources that the admission webhooks must be sent.
const WEBHOOK_KINDS: &str = r#"
    "": [pods, pods/ephemeralcontainers, replicationcontrollers, podtemplates]
    apps: [deployments, replicasets, statefulsets, daemonsets]
    batch: [jobs, cronjobs]"#;

/// What the README's registry `notifications` block must set for the signer's endpoint.
const NOTIFICATIONS_ENDPOINT: &str = r#"
    endpoints:
    url: https://signet-signer.signet.svc/events
    Authorization: [Bearer
    timeout:
    threshold:
    backoff:
    ignoredmediatypes:
    - application/octet-stream"#;

/// Lines both webhook configurations must hold (besides their own `path:` and `sideEffects:`).
const WEBHOOK_SETTINGS: &str = r#"
    admissionReviewVersions: ["v1"]
    failurePolicy: {{ .Values.webhook.failurePolicy }}
    timeoutSeconds: {{ .Values.webhook.timeoutSeconds }}
    matchPolicy: Equivalent
    caBundle: {{ $tls.caCert }}
    cert-manager.io/inject-ca-from: {{ $certManagerCA }}
    {{- include "signet.webhookNamespaceSelector" . | nindent 6 }}
    {{- include "signet.webhookRules" . | nindent 6 }}"#;

/// `webhook.mutate.enabled` renders or drops the whole MutatingWebhookConfiguration.
const MUTATING_SWITCH: &str = "{{- if .Values.webhook.mutate.enabled }}\n---\n\
    apiVersion: admissionregistration.k8s.io/v1\nkind: MutatingWebhookConfiguration";

/// Lines of the namespaceSelector that keep opted-out and exempt namespaces away from the webhooks.
const NAMESPACE_EXCLUSIONS: &str = r#"
    - key: signet.dev/ignore
    values: ["true"]
    - key: kubernetes.io/metadata.name
    values: {{ include "signet.exemptNamespaces" . }}"#;

/// Lines the webhook Deployment must hold.
const WEBHOOK_POD: &str = r#"
    {{- toYaml .Values.podSecurityContext | nindent 8 }}
    {{- toYaml .Values.securityContext | nindent 12 }}
    {{- toYaml .Values.webhook.resources | nindent 12 }}
    topologyKey: kubernetes.io/hostname
    containerPort: 8443
    containerPort: 8080
    - --listen=0.0.0.0:8443
    - --metrics-listen=0.0.0.0:8080
    - --deadline={{ .Values.webhook.deadline }}
    - --tls-cert=/etc/signet/tls/tls.crt
    - --tls-key=/etc/signet/tls/tls.key
    startupProbe:
    livenessProbe:
    readinessProbe:"#;

/// The probes of the webhook, each as its lines joined by `|`: plain HTTP on the ops port, since with
/// client-certificate authentication the HTTPS port answers only the API server.
const WEBHOOK_PROBES: [&str; 3] = [
    "startupProbe:|httpGet:|path: /healthz|port: ops|scheme: HTTP",
    "livenessProbe:|httpGet:|path: /healthz|port: ops|scheme: HTTP",
    "readinessProbe:|httpGet:|path: /readyz|port: ops|scheme: HTTP",
];

/// Defaults values.yaml must hold: the pod hardening and sizing the chart promises.
const POD_DEFAULTS: &str = r#"
    image: {repository: ghcr.io/signet-dev/signet, tag: ""}
    podSecurityContext: {runAsNonRoot: true, runAsUser: 65532, seccompProfile: {type: RuntimeDefault}}
    securityContext:
      runAsNonRoot: true
      runAsUser: 65532
      readOnlyRootFilesystem: true
      allowPrivilegeEscalation: false
      capabilities: {drop: [ALL]}
      seccompProfile: {type: RuntimeDefault}
    webhook:
      replicas: 2
      podDisruptionBudget: {enabled: true, minAvailable: 1}
      resources: {requests: {cpu: 50m, memory: 64Mi}, limits: {memory: 256Mi}}"#;

/// Template functions that open a block closed by `{{ end }}`.
const BLOCK_KEYWORDS: &[&str] = &["if", "range", "with", "define", "block"];

fn chart_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("charts/signet")
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|err| panic!("cannot read {}: {err}", path.display()))
}

fn parse<T: DeserializeOwned>(what: &str, text: &str) -> T {
    serde_yaml_ng::from_str(text).unwrap_or_else(|err| panic!("{what}: {err}\n{text}"))
}

fn values() -> Value {
    parse("values.yaml", &read(&chart_dir().join("values.yaml")))
}

fn template(name: &str) -> String {
    read(&chart_dir().join("templates").join(name))
}

/// Every file under templates/, as (file name, text), in name order.
fn templates() -> Vec<(String, String)> {
    let dir = chart_dir().join("templates");
    let mut files: Vec<(String, String)> = fs::read_dir(&dir)
        .unwrap_or_else(|err| panic!("cannot list {}: {err}", dir.display()))
        .map(|entry| {
            let path = entry.expect("directory entry").path();
            let name = path.file_name().expect("file name").to_string_lossy();
            (name.into_owned(), read(&path))
        })
        .collect();
    files.sort();
    assert!(
        files.len() >= 5,
        "{} holds too few templates",
        dir.display()
    );
    files
}

/// Fails with every problem found, one per line.
fn assert_none(problems: &[String], what: &str) {
    assert!(problems.is_empty(), "{what}:\n{}", problems.join("\n"));
}

/// Fails unless every line of `needles` (trimmed, blank ones skipped) is a line of `text` (trimmed).
fn require_lines(text: &str, needles: &str, what: &str) {
    let lines: BTreeSet<&str> = text.lines().map(str::trim).collect();
    let needles = needles.lines().map(str::trim).filter(|n| !n.is_empty());
    let missing: Vec<String> = needles
        .filter(|n| !lines.contains(n))
        .map(|n| format!("`{n}`"))
        .collect();
    assert_none(&missing, &format!("{what} lacks"));
}

/// The value at a dotted path of values.yaml.
fn walk<'a>(values: &'a Value, path: &str) -> Result<&'a Value, String> {
    let mut current = values;
    for part in path.split('.') {
        if !current.is_mapping() {
            return Err(format!("`{path}` goes through a non-mapping"));
        }
        current = current
            .get(part)
            .ok_or_else(|| format!("`{path}` does not exist"))?;
    }
    Ok(current)
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset].matches('\n').count() + 1
}

/// One `{{ ... }}` action of a template: its inside without trim markers, and its line.
struct Action {
    body: String,
    line: usize,
}

impl Action {
    fn is_comment(&self) -> bool {
        self.body.starts_with("/*")
    }

    fn keyword(&self) -> &str {
        self.body
            .split(|c: char| c.is_whitespace() || c == '(')
            .next()
            .unwrap_or("")
    }

    /// The first quoted string of the action (the name after `define` or `include`).
    fn quoted_name(&self) -> Option<&str> {
        let rest = &self.body[self.body.find('"')? + 1..];
        Some(&rest[..rest.find('"')?])
    }
}

/// Splits a template into actions, failing on a `{{` that is not closed before the next one opens,
/// and on a `}}` outside any action.
fn actions(text: &str) -> Result<Vec<Action>, String> {
    let at = |offset: usize, problem: &str| format!("line {}: {problem}", line_of(text, offset));
    let mut found = Vec::new();
    let mut pos = 0;
    loop {
        let open = text[pos..].find("{{").map(|i| i + pos);
        if let Some(stray) = text[pos..].find("}}").map(|i| i + pos)
            && open.is_none_or(|open| stray < open)
        {
            return Err(at(stray, "`}}` without `{{`"));
        }
        let Some(open) = open else { return Ok(found) };
        let start = open + 2;
        // A comment may contain braces; it ends at `*/` followed by the closing delimiter.
        let close = if text[start..]
            .trim_start_matches(['-', ' '])
            .starts_with("/*")
        {
            let end = text[start..]
                .find("*/")
                .ok_or_else(|| at(open, "comment never closed"))?;
            let rest = text[start + end + 2..].trim_start_matches([' ', '-']);
            if !rest.starts_with("}}") {
                return Err(at(open, "comment not followed by `}}`"));
            }
            text.len() - rest.len()
        } else {
            let close = text[start..]
                .find("}}")
                .ok_or_else(|| at(open, "`{{` never closed"))?;
            if let Some(nested) = text[start..start + close].find("{{") {
                return Err(at(start + nested, "`{{` opened inside another action"));
            }
            start + close
        };
        let (body, line) = (
            text[start..close].trim_matches('-').trim().to_owned(),
            line_of(text, open),
        );
        found.push(Action { body, line });
        pos = close + 2;
    }
}

/// Checks that every block is closed by `end` in order, and that `define` is never nested; returns the
/// names of the templates defined.
fn check_blocks(actions: &[Action]) -> Result<Vec<String>, String> {
    let mut open: Vec<(&str, usize)> = Vec::new();
    let mut defined = Vec::new();
    for action in actions.iter().filter(|a| !a.is_comment()) {
        let (keyword, line) = (action.keyword(), action.line);
        if keyword == "end" {
            open.pop()
                .ok_or_else(|| format!("line {line}: `end` closes no block"))?;
        } else if BLOCK_KEYWORDS.contains(&keyword) {
            if keyword == "define" {
                if let Some((_, outer)) = open.iter().find(|(k, _)| *k == "define") {
                    return Err(format!(
                        "line {line}: `define` inside the `define` of line {outer}"
                    ));
                }
                let name = action
                    .quoted_name()
                    .ok_or_else(|| format!("line {line}: `define` without a name"))?;
                defined.push(name.to_owned());
            }
            open.push((keyword, line));
        }
    }
    match open.last() {
        Some((keyword, line)) => Err(format!("line {line}: `{keyword}` has no `end`")),
        None => Ok(defined),
    }
}

#[test]
fn template_delimiters_are_balanced_and_every_block_has_an_end() {
    let mut problems = Vec::new();
    let (mut defined, mut included) = (BTreeSet::new(), BTreeSet::new());
    for (name, text) in templates() {
        match actions(&text).and_then(|found| check_blocks(&found).map(|names| (found, names))) {
            Err(problem) => problems.push(format!("{name}: {problem}")),
            Ok((found, names)) => {
                defined.extend(names);
                for action in &found {
                    for call in action.body.split("include \"").skip(1) {
                        included.insert(call.split('"').next().unwrap_or_default().to_owned());
                    }
                }
            }
        }
    }
    assert_none(&problems, "broken templates");
    let undefined: Vec<_> = included.difference(&defined).collect();
    assert!(
        undefined.is_empty(),
        "templates included but never defined: {undefined:?}"
    );
    assert!(
        defined.contains("signet.webhookRules"),
        "defined: {defined:?}"
    );
}

#[test]
fn the_template_checker_rejects_broken_templates() {
    // The check above is only worth something if it can fail.
    for broken in [
        "a {{ .Values.x }",
        "a {{ .Values.x {{ .y }}",
        "a }} b",
        "{{/* a */ b }}",
    ] {
        assert!(actions(broken).is_err(), "{broken:?} passed");
    }
    for unbalanced in [
        r#"{{- define "x" -}}{{ if .a }}b{{ end }}"#,
        r#"{{ define "x" }}{{ define "y" }}{{ end }}{{ end }}"#,
        r#"{{ if .a }}{{ end }}{{ end }}"#,
    ] {
        let found = actions(unbalanced).expect("the delimiters are fine");
        assert!(check_blocks(&found).is_err(), "{unbalanced:?} passed");
    }
    let fine = r#"{{/* a }} b */}}{{ define "x" }}{{- if .a }}{{ else }}{{ end -}}{{ end }}"#;
    let found = actions(fine).expect("the delimiters are fine");
    assert_eq!(check_blocks(&found), Ok(vec!["x".to_owned()]));
}

/// The dotted paths after `.Values.` in a template's actions, with their lines.
fn values_paths(text: &str) -> Result<Vec<(String, usize)>, String> {
    let mut paths = Vec::new();
    for action in actions(text)?.iter().filter(|a| !a.is_comment()) {
        for (pos, _) in action.body.match_indices(".Values.") {
            let rest = &action.body[pos + ".Values.".len()..];
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
                .unwrap_or(rest.len());
            let path = rest[..end].trim_end_matches('.');
            if !path.is_empty() {
                paths.push((path.to_owned(), action.line));
            }
        }
    }
    Ok(paths)
}

#[test]
fn every_values_path_used_by_the_templates_exists_in_values_yaml() {
    let values = values();
    let (mut missing, mut checked) = (Vec::new(), 0);
    for (name, text) in templates() {
        for (path, line) in values_paths(&text).unwrap_or_else(|err| panic!("{name}: {err}")) {
            checked += 1;
            if let Err(err) = walk(&values, &path) {
                missing.push(format!("{name}:{line}: .Values.{path}: {err}"));
            }
        }
    }
    assert!(
        checked > 50,
        "only {checked} .Values references found: is the scan broken?"
    );
    assert_none(&missing, "templates use values that values.yaml lacks");
    assert!(walk(&values, "webhook.nonexistent").is_err() && walk(&values, "image.tag.x").is_err());
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
    assert_none(
        &undocumented,
        "values.yaml keys without a `#` comment line directly above",
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
fn the_readme_values_table_lists_exactly_the_keys_of_values_yaml() {
    let readme = read(&chart_dir().join("README.md"));
    let table = &readme[readme
        .find("\n## Values")
        .expect("README.md has a `## Values` section")..];
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

#[test]
fn the_readme_gives_the_registry_notifications_endpoint() {
    let readme = read(&chart_dir().join("README.md"));
    let block = readme
        .split("```yaml\nnotifications:\n")
        .nth(1)
        .expect("a notifications block");
    let block = &block[..block.find("```").expect("the block is closed")];
    let missing: Vec<String> = NOTIFICATIONS_ENDPOINT
        .lines()
        .map(str::trim)
        .filter(|needle| !needle.is_empty() && !block.contains(needle))
        .map(|needle| format!("`{needle}` is missing"))
        .collect();
    assert_none(&missing, "the README's notifications block");
}

#[test]
fn the_chart_crds_are_a_byte_for_byte_copy_of_the_generated_crds() {
    let generated_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("crds/signet.dev.yaml");
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

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RuleWithOperations {
    api_groups: Vec<String>,
    api_versions: Vec<String>,
    operations: Vec<String>,
    resources: Vec<String>,
    scope: String,
}

/// The body of `{{- define "NAME" -}} ... {{- end }}` in _helpers.tpl.
fn helper_body(name: &str) -> String {
    let helpers = template("_helpers.tpl");
    let marker = format!("{{{{- define \"{name}\" -}}}}");
    let start = helpers
        .find(&marker)
        .unwrap_or_else(|| panic!("_helpers.tpl lacks `{marker}`"));
    let body = &helpers[start + marker.len()..];
    body[..body.find("{{- end }}").expect("the define has an end")].to_owned()
}

/// The document of webhook-configurations.yaml that holds `kind: KIND`.
fn webhook_document(text: &str, kind: &str) -> String {
    let document = text
        .split("\n---")
        .find(|doc| doc.contains(&format!("\nkind: {kind}\n")));
    document
        .unwrap_or_else(|| panic!("webhook-configurations.yaml has no {kind}"))
        .to_owned()
}

#[test]
fn the_webhook_rules_cover_every_workload_kind_on_create_and_update() {
    let body = helper_body("signet.webhookRules");
    assert!(
        !body.contains("{{"),
        "signet.webhookRules must be plain YAML:\n{body}"
    );
    let rules: Vec<RuleWithOperations> = parse("signet.webhookRules", &body);
    let kinds: BTreeMap<String, Vec<String>> = parse("WEBHOOK_KINDS", WEBHOOK_KINDS);
    for (group, resource) in kinds
        .iter()
        .flat_map(|(g, rs)| rs.iter().map(move |r| (g, r)))
    {
        let covers = |r: &&RuleWithOperations| {
            r.api_groups.contains(&group.into()) && r.resources.contains(&resource.into())
        };
        let Some(rule) = rules.iter().find(covers) else {
            panic!("no webhook rule for `{resource}` in API group {group:?}")
        };
        let operations: BTreeSet<&str> = rule.operations.iter().map(String::as_str).collect();
        let expected = BTreeSet::from(["CREATE", "UPDATE"]);
        assert_eq!(operations, expected, "`{resource}` operations");
        assert_eq!(rule.api_versions, ["v1"], "`{resource}` apiVersions");
        assert_eq!(
            rule.scope, "Namespaced",
            "`{resource}`: all these kinds are namespaced"
        );
    }
}

fn duration_millis(text: &str) -> u64 {
    let (digits, unit) = match text.strip_suffix("ms") {
        Some(digits) => (digits, 1),
        None => (text.strip_suffix('s').unwrap_or_default(), 1000),
    };
    digits
        .parse::<u64>()
        .unwrap_or_else(|_| panic!("bad duration {text:?}"))
        * unit
}

#[test]
fn both_webhooks_fail_closed_within_the_timeout_with_the_required_settings() {
    let values = values();
    let setting = |path| walk(&values, path).cloned().unwrap_or(Value::Null);
    assert_eq!(setting("webhook.failurePolicy"), Value::from("Fail"));
    assert_eq!(setting("webhook.timeoutSeconds"), Value::from(10));
    let deadline = setting("webhook.deadline").as_str().map(duration_millis);
    assert!(
        deadline.is_some_and(|millis| millis < 10_000),
        "deadline {deadline:?} ms"
    );
    assert_eq!(duration_millis("7500ms") + duration_millis("8s"), 15_500);

    let text = template("webhook-configurations.yaml");
    assert!(
        text.contains("{{- include \"signet.validateValues\" . }}"),
        "no validation"
    );
    // /validate posts events, never for dry runs; /mutate posts none.
    for (kind, path, side_effects) in [
        ("Validating", "/validate", "NoneOnDryRun"),
        ("Mutating", "/mutate", "None"),
    ] {
        let kind = format!("{kind}WebhookConfiguration");
        let expected = format!("{WEBHOOK_SETTINGS}\npath: {path}\nsideEffects: {side_effects}");
        require_lines(&webhook_document(&text, &kind), &expected, &kind);
    }
    assert!(
        text.contains(MUTATING_SWITCH),
        "the mutating webhook has no switch"
    );

    let selector = helper_body("signet.webhookNamespaceSelector");
    require_lines(&selector, NAMESPACE_EXCLUSIONS, "the namespaceSelector");
    assert_eq!(
        selector.matches("operator: NotIn").count(),
        2,
        "exclusions use NotIn"
    );
    let exempt = helper_body("signet.exemptNamespaces");
    assert!(exempt.contains("(list .Release.Namespace)"), "{exempt}");
}

/// The documents `name` renders to with values.yaml, changed by `overrides` (YAML merged in).
fn render(name: &str, overrides: &str) -> Vec<Value> {
    let overrides: Value = parse("overrides", overrides);
    let values = chart_render::merged(&values(), &overrides);
    let text = chart_render::render(&template(name), &values)
        .unwrap_or_else(|err| panic!("{name} with {overrides:?}: {err}"));
    text.split("\n---")
        .map(|doc| parse::<Value>(&format!("{name} rendered with {overrides:?}"), doc))
        .filter(|doc| !doc.is_null())
        .collect()
}

/// The documents of `kind` among `documents`.
fn of_kind<'a>(documents: &'a [Value], kind: &str) -> Vec<&'a Value> {
    let kind = Value::from(kind);
    documents
        .iter()
        .filter(|doc| doc.get("kind") == Some(&kind))
        .collect()
}

/// The one document of `kind`.
fn only<'a>(documents: &'a [Value], kind: &str) -> &'a Value {
    match of_kind(documents, kind)[..] {
        [doc] => doc,
        ref found => panic!("{} documents of kind {kind}: {documents:?}", found.len()),
    }
}

/// The first container of a Deployment's pods.
fn container(deployment: &Value) -> &Value {
    &deployment["spec"]["template"]["spec"]["containers"][0]
}

/// The arguments of a Deployment's first container.
fn args(deployment: &Value) -> Vec<String> {
    let args = container(deployment)["args"].as_sequence().expect("args");
    args.iter()
        .map(|a| a.as_str().unwrap_or_default().to_owned())
        .collect()
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PolicyRule {
    api_groups: Vec<String>,
    resources: Vec<String>,
    verbs: Vec<String>,
    #[serde(default)]
    resource_names: Vec<String>,
}

/// Every (group, resource, verb, resourceNames) combination that some rule grants.
fn grants(rules: &[PolicyRule]) -> BTreeSet<[String; 4]> {
    let mut granted = BTreeSet::new();
    for rule in rules {
        for group in &rule.api_groups {
            for resource in &rule.resources {
                for verb in &rule.verbs {
                    let names = rule.resource_names.join(",");
                    granted.insert([group.clone(), resource.clone(), verb.clone(), names]);
                }
            }
        }
    }
    granted
}

/// What the role of `kind` in these documents grants.
fn role_grants(documents: &[Value], kind: &str) -> BTreeSet<[String; 4]> {
    let rules = only(documents, kind)
        .get("rules")
        .unwrap_or_else(|| panic!("no {kind} rules"));
    grants(&serde_yaml_ng::from_value::<Vec<PolicyRule>>(rules.clone()).expect("RBAC rules"))
}

#[test]
fn rbac_grants_exactly_the_least_privileges() {
    let webhook = render("webhook-rbac.yaml", "{}");
    let expected_cluster_role = r#"
        - {apiGroups: [signet.dev], verbs: [get, list, watch],
           resources: [attestors, verificationpolicies, clusterverificationpolicies, signingrules]}
        - {apiGroups: [signet.dev], verbs: [patch], resources: [attestors/status,
           verificationpolicies/status, clusterverificationpolicies/status, signingrules/status]}
        - {apiGroups: [""], resources: [namespaces], verbs: [get, list, watch]}
        - {apiGroups: [events.k8s.io, ""], resources: [events], verbs: [create, patch]}"#;
    let expected_role = r#"
        - {apiGroups: [coordination.k8s.io], resources: [leases], verbs: [create]}
        - {apiGroups: [coordination.k8s.io], resources: [leases], verbs: [get, update, patch],
           resourceNames: [signet-controller]}"#;
    let expected_signer = r#"
        - {apiGroups: [signet.dev], verbs: [get, list, watch],
           resources: [attestors, verificationpolicies, clusterverificationpolicies, signingrules]}
        - {apiGroups: [""], resources: [namespaces], verbs: [get, list, watch]}"#;
    let signer = render("signer-rbac.yaml", "signer: {enabled: true}");
    for (documents, kind, expected) in [
        (&webhook, "ClusterRole", expected_cluster_role),
        (&webhook, "Role", expected_role),
        (&signer, "ClusterRole", expected_signer),
    ] {
        let expected = grants(&parse::<Vec<_>>(kind, expected));
        assert_eq!(role_grants(documents, kind), expected, "{kind}");
    }
    let own_account = r#"serviceAccountName: {{ include "signet.signer.serviceAccountName" . }}"#;
    require_lines(
        &template("signer-deployment.yaml"),
        own_account,
        "the signer",
    );

    // Each opt-in adds exactly its grant.
    let base = grants(&parse::<Vec<_>>("ClusterRole", expected_cluster_role));
    for (overrides, added) in [
        (
            "rbac: {readPullSecrets: true}",
            r#"[{apiGroups: [""], resources: [secrets, serviceaccounts], verbs: [get]}]"#,
        ),
        (
            "webhook: {breakglass: {enabled: true}}",
            "[{apiGroups: [authorization.k8s.io], resources: [subjectaccessreviews], verbs: [create]}]",
        ),
    ] {
        let mut expected = base.clone();
        expected.extend(grants(&parse::<Vec<_>>(overrides, added)));
        let documents = render("webhook-rbac.yaml", overrides);
        assert_eq!(
            role_grants(&documents, "ClusterRole"),
            expected,
            "{overrides}"
        );
    }
    assert!(
        render("webhook-rbac.yaml", "rbac: {create: false}").len() == 1,
        "only the ServiceAccount"
    );
}

/// The kube-system service accounts of the controllers that create pods, ReplicaSets and Jobs from
/// templates, which breakglass must authorize for a breakglass Deployment's pods to be admitted.
const POD_CREATING_CONTROLLERS: [&str; 7] = [
    "deployment-controller",
    "replicaset-controller",
    "statefulset-controller",
    "daemon-set-controller",
    "replication-controller",
    "job-controller",
    "cronjob-controller",
];

#[test]
fn breakglass_is_off_by_default_and_its_authority_exists_only_when_enabled() {
    let values = values();
    assert_eq!(
        walk(&values, "webhook.breakglass.enabled"),
        Ok(&Value::from(false))
    );
    assert!(
        render("breakglass-rbac.yaml", "{}").is_empty(),
        "no breakglass objects by default"
    );
    let deployment = render("webhook-deployment.yaml", "{}");
    let default_args = args(only(&deployment, "Deployment"));
    assert!(
        default_args.contains(&"--breakglass=false".to_owned()),
        "{default_args:?}"
    );
    assert!(
        !default_args
            .iter()
            .any(|a| a.starts_with("--breakglass-groups")),
        "{default_args:?}"
    );

    let enabled = "webhook: {breakglass: {enabled: true, groups: [oncall]}}";
    let enabled_args = args(only(
        &render("webhook-deployment.yaml", enabled),
        "Deployment",
    ));
    for expected in ["--breakglass=true", "--breakglass-groups=oncall"] {
        assert!(
            enabled_args.contains(&expected.to_owned()),
            "{enabled_args:?}"
        );
    }

    let objects = render("breakglass-rbac.yaml", enabled);
    let expected_role = r#"[{apiGroups: [signet.dev], resources: [breakglass], verbs: [use]}]"#;
    assert_eq!(
        role_grants(&objects, "ClusterRole"),
        grants(&parse::<Vec<_>>("breakglass role", expected_role))
    );
    let binding = only(&objects, "ClusterRoleBinding");
    assert_eq!(binding["roleRef"]["kind"], Value::from("ClusterRole"));
    let subjects: BTreeSet<(String, String, String)> = binding["subjects"]
        .as_sequence()
        .expect("subjects")
        .iter()
        .map(|s| {
            let text = |key: &str| s[key].as_str().unwrap_or_default().to_owned();
            (text("kind"), text("namespace"), text("name"))
        })
        .collect();
    let mut expected: BTreeSet<(String, String, String)> = POD_CREATING_CONTROLLERS
        .iter()
        .map(|name| {
            (
                "ServiceAccount".into(),
                "kube-system".into(),
                (*name).into(),
            )
        })
        .collect();
    expected.insert((
        "User".into(),
        String::new(),
        "system:kube-controller-manager".into(),
    ));
    assert_eq!(subjects, expected);

    let without_controllers = "webhook: {breakglass: {enabled: true, controllers: false}}";
    let objects = render("breakglass-rbac.yaml", without_controllers);
    assert!(of_kind(&objects, "ClusterRoleBinding").is_empty() && objects.len() == 1);
    let unmanaged = "{webhook: {breakglass: {enabled: true}}, rbac: {create: false}}";
    assert!(render("breakglass-rbac.yaml", unmanaged).is_empty());
}

#[test]
fn pull_secrets_are_read_only_when_asked() {
    assert_eq!(
        walk(&values(), "rbac.readPullSecrets"),
        Ok(&Value::from(false))
    );
    let default_args = args(only(&render("webhook-deployment.yaml", "{}"), "Deployment"));
    assert!(
        !default_args.iter().any(|a| a.contains("pull-secrets")),
        "{default_args:?}"
    );
    let on = render("webhook-deployment.yaml", "rbac: {readPullSecrets: true}");
    assert!(args(only(&on, "Deployment")).contains(&"--pull-secrets=true".to_owned()));
}

#[test]
fn a_network_policy_admits_only_the_admission_and_ops_ports() {
    let policy = render("webhook-networkpolicy.yaml", "{}");
    let policy = only(&policy, "NetworkPolicy");
    assert_eq!(
        policy["spec"]["policyTypes"],
        parse::<Value>("types", "[Ingress]")
    );
    let rules = policy["spec"]["ingress"]
        .as_sequence()
        .expect("ingress rules");
    let ports: Vec<Value> = rules.iter().map(|rule| rule["ports"].clone()).collect();
    let expected: Vec<Value> = parse(
        "ports",
        "[[{port: 8443, protocol: TCP}], [{port: 8080, protocol: TCP}]]",
    );
    assert_eq!(ports, expected);
    // Empty peer lists: any source, to these ports only.
    assert!(
        rules.iter().all(|rule| rule.get("from").is_none()),
        "{rules:?}"
    );
    let selector = &policy["spec"]["podSelector"];
    assert!(selector.get("matchLabels").is_some(), "{selector:?}");

    let peers = "webhook: {networkPolicy: {apiServer: [{ipBlock: {cidr: 10.0.0.0/24}}]}}";
    let policy = render("webhook-networkpolicy.yaml", peers);
    let rules = &only(&policy, "NetworkPolicy")["spec"]["ingress"];
    assert!(
        rules[0].get("from").is_some() && rules[1].get("from").is_none(),
        "{rules:?}"
    );
    assert!(
        render(
            "webhook-networkpolicy.yaml",
            "webhook: {networkPolicy: {enabled: false}}"
        )
        .is_empty()
    );
}

#[test]
fn client_certificates_and_the_ops_port() {
    let deployment = render("webhook-deployment.yaml", "{}");
    let default_args = args(only(&deployment, "Deployment"));
    assert!(default_args.contains(&"--metrics-listen=0.0.0.0:8080".to_owned()));
    assert!(
        !default_args.iter().any(|a| a.starts_with("--client-ca")),
        "{default_args:?}"
    );

    let on = "webhook: {clientAuth: {enabled: true, caConfigMap: apiserver-client-ca}}";
    let deployment = render("webhook-deployment.yaml", on);
    let deployment = only(&deployment, "Deployment");
    assert!(args(deployment).contains(&"--client-ca=/etc/signet/client-ca/ca.crt".to_owned()));
    let volumes = deployment["spec"]["template"]["spec"]["volumes"]
        .as_sequence()
        .expect("volumes");
    let client_ca = volumes
        .iter()
        .find(|v| v["name"] == "client-ca")
        .expect("client-ca volume");
    assert_eq!(
        client_ca["configMap"]["name"],
        Value::from("apiserver-client-ca")
    );
    let validate = template("_helpers.tpl");
    assert!(validate.contains("webhook.clientAuth.enabled needs webhook.clientAuth.caConfigMap"));

    // The API server's Service carries HTTPS only; scraping goes through its own Service.
    let services = render("webhook-service.yaml", "{}");
    let services = of_kind(&services, "Service");
    let ports: Vec<Value> = services
        .iter()
        .map(|s| s["spec"]["ports"].clone())
        .collect();
    let expected: Vec<Value> = parse(
        "ports",
        "[[{name: https, port: 443, targetPort: https, protocol: TCP}],
          [{name: metrics, port: 8080, targetPort: ops, protocol: TCP}]]",
    );
    assert_eq!(ports, expected);
}

#[test]
fn the_signer_serves_https_by_default() {
    assert_eq!(
        walk(&values(), "signer.tls.plainHttp"),
        Ok(&Value::from(false))
    );
    let enabled = "signer: {enabled: true}";
    let deployment = render("signer-deployment.yaml", enabled);
    let deployment = only(&deployment, "Deployment");
    let signer_args = args(deployment);
    for expected in [
        "--listen=0.0.0.0:8443",
        "--tls-cert=/etc/signet/tls/tls.crt",
        "--tls-key=/etc/signet/tls/tls.key",
    ] {
        assert!(
            signer_args.contains(&expected.to_owned()),
            "{signer_args:?}"
        );
    }
    assert!(
        !signer_args.contains(&"--plain-http".to_owned()),
        "{signer_args:?}"
    );
    for probe in ["livenessProbe", "readinessProbe"] {
        assert_eq!(
            container(deployment)[probe]["httpGet"]["scheme"],
            Value::from("HTTPS")
        );
    }
    // The chart generates the certificate, with the CA the registry must trust.
    let secrets = render("signer-secrets.yaml", enabled);
    let tls = of_kind(&secrets, "Secret");
    let tls: Vec<_> = tls
        .iter()
        .filter(|s| s["type"] == "kubernetes.io/tls")
        .collect();
    assert_eq!(tls.len(), 1, "{secrets:?}");
    assert!(tls[0]["data"].get("ca.crt").is_some());
    let service = render("signer-service.yaml", enabled);
    assert_eq!(
        only(&service, "Service")["spec"]["ports"][0]["port"],
        Value::from(443)
    );

    // A Secret of your own: no generated one.
    let own = "signer: {enabled: true, tls: {secretName: mine}}";
    let secrets = render("signer-secrets.yaml", own);
    assert!(secrets.iter().all(|s| s["type"] != "kubernetes.io/tls"));

    // The explicit opt-out.
    let plain = "signer: {enabled: true, tls: {plainHttp: true}}";
    let plain_args = args(only(&render("signer-deployment.yaml", plain), "Deployment"));
    assert!(
        plain_args.contains(&"--plain-http".to_owned())
            && plain_args.contains(&"--listen=0.0.0.0:8080".to_owned())
    );
    let secrets = render("signer-secrets.yaml", plain);
    assert!(secrets.iter().all(|s| s["type"] != "kubernetes.io/tls"));
    let service = render("signer-service.yaml", plain);
    assert_eq!(
        only(&service, "Service")["spec"]["ports"][0]["port"],
        Value::from(80)
    );
}

/// The leaves of `expected` that values.yaml does not hold with the same value.
fn differing_leaves(expected: &Value, actual: &Value, prefix: &str) -> Vec<String> {
    match expected.as_mapping() {
        Some(mapping) => mapping
            .iter()
            .flat_map(|(key, child)| {
                let path = format!("{prefix}{}.", key.as_str().unwrap_or_default());
                let actual_child = actual.get(key).unwrap_or(&Value::Null);
                differing_leaves(child, actual_child, &path)
            })
            .collect(),
        None if expected == actual => Vec::new(),
        None => vec![format!(
            "{}: {actual:?}, expected {expected:?}",
            prefix.trim_end_matches('.')
        )],
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ChartMetadata {
    api_version: String,
    name: String,
    app_version: String,
}

#[test]
fn pods_run_non_root_read_only_spread_and_probed_on_the_ops_port() {
    let expected: Value = parse("POD_DEFAULTS", POD_DEFAULTS);
    assert_none(&differing_leaves(&expected, &values(), ""), "values.yaml");
    let mut changed = expected.clone();
    changed["securityContext"]["runAsUser"] = Value::from(0);
    assert_eq!(
        differing_leaves(&changed, &values(), "").len(),
        1,
        "a change must show"
    );

    let deployment = template("webhook-deployment.yaml");
    require_lines(&deployment, WEBHOOK_POD, "webhook-deployment.yaml");
    let lines: Vec<&str> = deployment.lines().map(str::trim).collect();
    for probe in WEBHOOK_PROBES {
        let name = probe.split('|').next().unwrap_or_default();
        let start = lines
            .iter()
            .position(|l| *l == name)
            .expect("the probe exists");
        assert_eq!(lines[start..start + 5].join("|"), probe);
    }
    let pdb = template("webhook-pdb.yaml");
    assert!(pdb.contains("minAvailable: {{ .Values.webhook.podDisruptionBudget.minAvailable }}"));

    let chart: ChartMetadata = parse("Chart.yaml", &read(&chart_dir().join("Chart.yaml")));
    let app_version = !chart.app_version.is_empty();
    assert!(
        chart.api_version == "v2" && chart.name == "signet" && app_version,
        "Chart.yaml"
    );
    let image_tag = ".Values.image.tag | default .Chart.AppVersion";
    assert!(
        template("_helpers.tpl").contains(image_tag),
        "the tag must default to appVersion"
    );
}

#[test]
fn the_webhook_drains_within_its_termination_grace_period() {
    let values = values();
    let setting = |path| walk(&values, path).cloned().unwrap_or(Value::Null);
    let delay = setting("webhook.shutdownDelay")
        .as_str()
        .map(duration_millis)
        .expect("webhook.shutdownDelay");
    let deadline = setting("webhook.deadline")
        .as_str()
        .map(duration_millis)
        .expect("webhook.deadline");
    let documents = render("webhook-deployment.yaml", "{}");
    let deployment = only(&documents, "Deployment");
    assert!(
        args(deployment).contains(&"--shutdown-delay=5s".to_string()),
        "{:?}",
        args(deployment)
    );
    let grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        .as_u64()
        .expect("terminationGracePeriodSeconds");
    assert!(
        delay + deadline + 1000 < grace * 1000,
        "shutdown delay {delay} ms + deadline {deadline} ms does not fit in {grace} s"
    );
    // The chart refuses values whose drain would outlast the grace period.
    let helpers = template("_helpers.tpl");
    assert!(
        helpers.contains("must stay below webhook.terminationGracePeriodSeconds"),
        "no check of the drain against the grace period"
    );
}
