//! Tests of the CRDs: names, scopes, subresources and printer columns; schemas that the API
//! server accepts as structural; the validations that matter (enums, minItems, minimum); and
//! the DESIGN.md examples deserialising into the types.

use serde_json::Value;

use super::*;

fn crd_json(kind: &str) -> Value {
    let crd = all_crds()
        .into_iter()
        .find(|c| c.spec.names.kind == kind)
        .unwrap_or_else(|| panic!("no CRD for {kind}"));
    serde_json::to_value(crd).unwrap()
}

fn schema(kind: &str) -> Value {
    crd_json(kind)["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()
}

/// The schema of a property, by a dotted path of property names (`spec.keys.algorithm`; arrays
/// are stepped through to their items).
fn property<'a>(schema: &'a Value, path: &str) -> &'a Value {
    let mut node = schema;
    for name in path.split('.') {
        while node["type"] == "array" {
            node = &node["items"];
        }
        node = &node["properties"][name];
        assert!(node.is_object(), "no property {name} in {path}");
    }
    node
}

/// Kubernetes' structural-schema rules, as far as these schemas go: every node has a `type`
/// (or an int-or-string / preserve-unknown-fields marker); no `anyOf`/`oneOf`/`allOf`/`not`,
/// `$ref` or `const` (the rules restrict them, and schemars emits them for Option<enum> or
/// documented variants if the rewriting ever regresses); objects declare `properties` or
/// `additionalProperties` (not both: the API server rejects that) or preserve unknown fields;
/// arrays declare `items`; enums are typed lists; defaults are allowed values.
fn structural_problems(path: &str, node: &Value, problems: &mut Vec<String>) {
    let Some(object) = node.as_object() else {
        problems.push(format!("{path}: not an object"));
        return;
    };
    for forbidden in [
        "anyOf",
        "oneOf",
        "allOf",
        "not",
        "$ref",
        "const",
        "definitions",
        "$defs",
    ] {
        if object.contains_key(forbidden) {
            problems.push(format!("{path}: has {forbidden}"));
        }
    }
    let marker = object.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true))
        || object.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
    let Some(kind) = object.get("type").and_then(Value::as_str) else {
        if !marker {
            problems.push(format!("{path}: no type"));
        }
        return;
    };
    if let Some(values) = object.get("enum") {
        let values = values.as_array().cloned().unwrap_or_default();
        if values.is_empty() || kind != "string" || !values.iter().all(Value::is_string) {
            problems.push(format!("{path}: enum is not a non-empty list of strings"));
        }
        if let Some(default) = object.get("default").filter(|d| !values.contains(d)) {
            problems.push(format!("{path}: default {default} is not in the enum"));
        }
    }
    match kind {
        "object" => {
            let properties = object.get("properties").and_then(Value::as_object);
            let additional = object.get("additionalProperties");
            if properties.is_some() && additional.is_some() {
                problems.push(format!("{path}: both properties and additionalProperties"));
            }
            if properties.is_none() && additional.is_none() && !marker {
                problems.push(format!(
                    "{path}: object without properties (pruned to nothing)"
                ));
            }
            for (name, child) in properties.into_iter().flatten() {
                structural_problems(&format!("{path}.{name}"), child, problems);
            }
            if let Some(child) = additional.filter(|a| a.is_object()) {
                structural_problems(&format!("{path}.*"), child, problems);
            }
            for required in object
                .get("required")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let name = required.as_str().unwrap_or_default();
                if !properties.is_some_and(|p| p.contains_key(name)) {
                    problems.push(format!("{path}: requires undeclared {name}"));
                }
            }
        }
        "array" => match object.get("items") {
            Some(items) => structural_problems(&format!("{path}[]"), items, problems),
            None => problems.push(format!("{path}: array without items")),
        },
        "string" | "integer" | "number" | "boolean" => {}
        other => problems.push(format!("{path}: unknown type {other}")),
    }
}

#[test]
fn every_schema_is_structural() {
    for crd in all_crds() {
        let kind = crd.spec.names.kind.clone();
        let root = schema(&kind);
        let mut problems = Vec::new();
        structural_problems(&kind, &root, &mut problems);
        assert!(problems.is_empty(), "{kind}: {problems:#?}");
        assert_eq!(root["type"], "object");
        assert!(root["properties"]["spec"].is_object() && root["properties"]["status"].is_object());
        assert!(
            root["properties"].get("metadata").is_none(),
            "{kind}: metadata must not be constrained"
        );
    }
}

#[test]
fn names_scopes_and_subresources() {
    let expect = [
        ("Attestor", "attestors", "att", "Cluster"),
        (
            "VerificationPolicy",
            "verificationpolicies",
            "vp",
            "Namespaced",
        ),
        (
            "ClusterVerificationPolicy",
            "clusterverificationpolicies",
            "cvp",
            "Cluster",
        ),
        ("SigningRule", "signingrules", "sr", "Cluster"),
    ];
    let crds = all_crds();
    assert_eq!(crds.len(), expect.len());
    for (crd, (kind, plural, short, scope)) in crds.iter().zip(expect) {
        assert_eq!(crd.spec.names.kind, kind);
        assert_eq!(
            crd.metadata.name.as_deref(),
            Some(format!("{plural}.{GROUP}").as_str())
        );
        assert_eq!(crd.spec.group, GROUP);
        assert_eq!(
            crd.spec.names.short_names.as_deref(),
            Some(&[short.to_string()][..])
        );
        assert_eq!(crd.spec.scope, scope);
        let version = &crd.spec.versions[0];
        assert_eq!(
            (version.name.as_str(), version.served, version.storage),
            (VERSION, true, true)
        );
        assert!(
            version
                .subresources
                .as_ref()
                .and_then(|s| s.status.as_ref())
                .is_some(),
            "{kind}: status subresource"
        );
    }
}

#[test]
fn printer_columns_point_at_declared_fields() {
    let expect: [(&str, &[&str]); 4] = [
        ("Attestor", &["Keys", "Ready", "Age"]),
        (
            "VerificationPolicy",
            &["Mode", "Attestors", "Required", "Ready", "Age"],
        ),
        (
            "ClusterVerificationPolicy",
            &["Mode", "Attestors", "Required", "Ready", "Age"],
        ),
        ("SigningRule", &["Key", "Key ID", "Trigger", "Ready", "Age"]),
    ];
    for (kind, names) in expect {
        let crd = crd_json(kind);
        let columns = crd["spec"]["versions"][0]["additionalPrinterColumns"]
            .as_array()
            .unwrap();
        let got: Vec<&str> = columns
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(got, names, "{kind}");
        // The key columns read fields that are always set: a key reference is required, and
        // every parsed key has a name (its id, else its fingerprint).
        let key_column = match kind {
            "Attestor" => Some(("Keys", ".status.keys[*].name")),
            "SigningRule" => Some(("Key", ".spec.key.ref")),
            _ => None,
        };
        if let Some((name, path)) = key_column {
            assert!(
                columns
                    .iter()
                    .any(|c| c["name"] == name && c["jsonPath"] == path),
                "{kind}: {columns:?}"
            );
        }
        let root = schema(kind);
        for column in columns {
            let path = column["jsonPath"].as_str().unwrap();
            if path.starts_with(".metadata.") {
                continue;
            }
            // `.status.conditions[?(@.type=="Ready")].status` -> status.conditions.status
            let mut plain = String::new();
            let mut depth = 0;
            for c in path.trim_start_matches('.').chars() {
                match c {
                    '[' => depth += 1,
                    ']' => depth -= 1,
                    _ if depth == 0 => plain.push(c),
                    _ => {}
                }
            }
            property(&root, &plain);
        }
    }
}

#[test]
fn validations_the_api_server_enforces() {
    let algorithms = serde_json::json!([
        "RSA_PSS_SHA_256",
        "RSA_PKCS1_SHA_256",
        "ECDSA_P256_SHA_256",
        "ECDSA_P384_SHA_384",
        "ED25519"
    ]);
    let attestor = schema("Attestor");
    assert_eq!(property(&attestor, "spec.keys")["minItems"], 1);
    assert_eq!(
        property(&attestor, "spec.keys.algorithm")["enum"],
        algorithms
    );
    // A key is a public key with its algorithm, or certificates: CEL rules say so.
    let key = &attestor["properties"]["spec"]["properties"]["keys"]["items"];
    assert_eq!(key["required"], serde_json::Value::Null);
    let rules: Vec<&str> = key["x-kubernetes-validations"]
        .as_array()
        .expect("x-kubernetes-validations on spec.keys[]")
        .iter()
        .map(|r| r["rule"].as_str().unwrap())
        .collect();
    assert_eq!(
        rules,
        [
            "has(self.publicKey) != has(self.certificates)",
            "!has(self.publicKey) || has(self.algorithm)",
            "has(self.certificates) || (!has(self.trustedIdentities) && !has(self.tsaCertificates))"
        ]
    );
    for kind in ["VerificationPolicy", "ClusterVerificationPolicy"] {
        let s = schema(kind);
        assert_eq!(property(&s, "spec.images")["minItems"], 1, "{kind}");
        assert_eq!(property(&s, "spec.attestors")["minItems"], 1, "{kind}");
        assert_eq!(
            property(&s, "spec.required")["minimum"].as_f64(),
            Some(1.0),
            "{kind}"
        );
        assert_eq!(
            property(&s, "spec.mode")["enum"],
            serde_json::json!(["Enforce", "DryRun"]),
            "{kind}"
        );
        assert_eq!(property(&s, "spec.mode")["default"], "Enforce", "{kind}");
        assert_eq!(
            property(&s, "spec.signatureType")["enum"],
            serde_json::json!(["Default", "Simple"]),
            "{kind}"
        );
        assert_eq!(
            s["properties"]["spec"]["required"],
            serde_json::json!(["attestors", "images"]),
            "{kind}"
        );
    }
    let cluster = schema("ClusterVerificationPolicy");
    assert_eq!(
        property(&cluster, "spec.namespaceSelector.matchExpressions.operator")["type"],
        "string"
    );
    assert!(
        schema("VerificationPolicy")["properties"]["spec"]["properties"]
            .get("namespaceSelector")
            .is_none()
    );
    let rule = schema("SigningRule");
    assert_eq!(property(&rule, "spec.algorithm")["enum"], algorithms);
    assert_eq!(
        property(&rule, "spec.trigger")["enum"],
        serde_json::json!(["Automatic", "Manual"])
    );
    assert_eq!(property(&rule, "spec.trigger")["default"], "Automatic");
    assert_eq!(property(&rule, "spec.scope")["minItems"], 1);
    assert_eq!(
        property(&rule, "spec.key")["required"],
        serde_json::json!(["ref"])
    );
}

#[test]
fn design_examples_deserialise() {
    let attestor: Attestor = serde_yaml_ng::from_str(
        "apiVersion: signet.dev/v1alpha1\nkind: Attestor\nmetadata: {name: release}\nspec:\n  description: release pipeline KMS key\n  keys:\n  - id: kms-4a2ef103\n    algorithm: RSA_PSS_SHA_256\n    publicKey: |\n      -----BEGIN PUBLIC KEY-----\n      MFkw\n      -----END PUBLIC KEY-----\n",
    )
    .unwrap();
    assert_eq!(
        attestor.spec.keys[0].algorithm,
        Some(crate::crypto::Algorithm::RsaPssSha256)
    );
    assert_eq!(attestor.spec.keys[0].id.as_deref(), Some("kms-4a2ef103"));
    let notation: Attestor = serde_yaml_ng::from_str(
        "apiVersion: signet.dev/v1alpha1\nkind: Attestor\nmetadata: {name: release}\nspec:\n  keys:\n  - id: release-ca\n    certificates: |\n      -----BEGIN CERTIFICATE-----\n    trustedIdentities: [\"x509.subject: C=US, O=acme, CN=release\"]\n    tsaCertificates: |\n      -----BEGIN CERTIFICATE-----\n",
    )
    .unwrap();
    let key = &notation.spec.keys[0];
    assert_eq!((key.algorithm, key.public_key.as_deref()), (None, None));
    assert!(key.certificates.is_some() && key.tsa_certificates.is_some());
    assert_eq!(
        key.trusted_identities,
        ["x509.subject: C=US, O=acme, CN=release"]
    );

    let policy: ClusterVerificationPolicy = serde_yaml_ng::from_str(
        "apiVersion: signet.dev/v1alpha1\nkind: ClusterVerificationPolicy\nmetadata: {name: prod-images}\nspec:\n  namespaceSelector: {matchLabels: {tier: prod}}\n  images: [\"registry.example.com/prod/**\"]\n  exclude: []\n  attestors: [release, qa]\n  required: 1\n  signatureType: Default\n  mode: Enforce\n",
    )
    .unwrap();
    assert_eq!(policy.spec.required, Some(1));
    assert_eq!(policy.spec.rules().attestors, ["release", "qa"]);

    // Defaults: mode Enforce, signatureType Default, required absent (= all).
    let policy: VerificationPolicy = serde_yaml_ng::from_str(
        "apiVersion: signet.dev/v1alpha1\nkind: VerificationPolicy\nmetadata: {name: p, namespace: team}\nspec: {images: [r.io/**], attestors: [release]}\n",
    )
    .unwrap();
    let rules = policy.spec.rules();
    assert_eq!(
        (rules.mode, rules.signature_type, rules.required),
        (
            Mode::Enforce,
            crate::signature::SignatureType::Default,
            None
        )
    );

    let rule: SigningRule = serde_yaml_ng::from_str(
        "apiVersion: signet.dev/v1alpha1\nkind: SigningRule\nmetadata: {name: prod}\nspec:\n  scope: [\"registry.example.com/prod/**\"]\n  key: {ref: \"pkcs11:token=signet;object=release\", id: kms-4a2ef103}\n  algorithm: RSA_PSS_SHA_256\n  signatureType: Default\n  trigger: Automatic\n",
    )
    .unwrap();
    assert!(rule.spec.key.reference.starts_with("pkcs11:"));
    assert_eq!(rule.spec.trigger, Trigger::Automatic);
    let back = serde_json::to_value(&rule.spec).unwrap();
    assert_eq!(back["key"]["ref"], rule.spec.key.reference.as_str());
}

#[test]
fn rendered_stream_holds_four_documents() {
    let text = render_all_crds().unwrap();
    assert!(text.starts_with("---\napiVersion: apiextensions.k8s.io/v1\n"));
    let documents: Vec<serde_json::Value> = serde_yaml_ng::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .collect();
    let kinds: Vec<&str> = documents
        .iter()
        .map(|d| d["spec"]["names"]["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "Attestor",
            "VerificationPolicy",
            "ClusterVerificationPolicy",
            "SigningRule"
        ]
    );
}

#[test]
fn structural_check_catches_violations() {
    let bad = serde_json::json!({
        "type": "object",
        "properties": {
            "untyped": {"description": "no type"},
            "choice": {"anyOf": [{"type": "string"}, {"type": "integer"}]},
            "list": {"type": "array"},
            "mode": {"type": "string", "enum": ["A", "B"], "default": "C"},
            "both": {"type": "object", "properties": {}, "additionalProperties": {"type": "string"}},
            "empty": {"type": "object"},
            "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}
        },
        "required": ["missing"]
    });
    let mut problems = Vec::new();
    structural_problems("T", &bad, &mut problems);
    problems.sort();
    assert_eq!(
        problems,
        [
            "T.both: both properties and additionalProperties",
            "T.choice: has anyOf",
            "T.choice: no type",
            "T.empty: object without properties (pruned to nothing)",
            "T.list: array without items",
            "T.mode: default \"C\" is not in the enum",
            "T.untyped: no type",
            "T: requires undeclared missing",
        ]
    );
}
