//! The CEL rules (`x-kubernetes-validations`) of the committed CRDs, evaluated as the API server
//! would, without one: no API server runs here, so the rules are compiled and run by `kube-cel`
//! (kube-rs' client-side evaluator of Kubernetes CEL, on the `cel` crate), against the schema
//! read from `crds/signet.dev.yaml` itself, not from the Rust types.

// Helpers outside `#[test]` functions fail by panicking, as tests do (clippy.toml covers only
// `#[test]` code).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::{Value, json};

const COMMITTED: &str = include_str!("../crds/signet.dev.yaml");

/// The openAPIV3Schema of the committed CRD of `kind`.
fn schema(kind: &str) -> Value {
    for document in serde_yaml_ng::Deserializer::from_str(COMMITTED) {
        let crd: Value = serde::Deserialize::deserialize(document).unwrap();
        if crd["spec"]["names"]["kind"] == kind {
            return crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone();
        }
    }
    panic!("no CRD of kind {kind} in crds/signet.dev.yaml")
}

fn policy(kind: &str, attestors: &[&str], required: Option<u32>) -> Value {
    let mut spec = json!({"images": ["registry.example.com/prod/**"], "attestors": attestors});
    if let Some(required) = required {
        spec["required"] = json!(required);
    }
    json!({
        "apiVersion": "signet.dev/v1alpha1",
        "kind": kind,
        "metadata": {"name": "prod", "namespace": "default"},
        "spec": spec,
    })
}

fn validate(kind: &str, object: &Value) -> Result<(), String> {
    let compiled = kube_cel::compile_schema(&schema(kind));
    assert!(
        !compiled.has_errors(),
        "the {kind} rules do not compile: {:?}",
        compiled.compilation_errors()
    );
    kube_cel::Validator::new()
        .validate_compiled(&compiled, object, None)
        .map_err(|errors| errors.to_string())
}

#[test]
fn required_above_the_attestor_count_is_refused_by_the_crd() {
    for kind in ["VerificationPolicy", "ClusterVerificationPolicy"] {
        let rules = &schema(kind)["x-kubernetes-validations"];
        assert!(
            rules.as_array().is_some_and(|r| r.iter().any(|r| r["rule"]
                .as_str()
                .is_some_and(|t| t.contains("self.spec.required")))),
            "{kind}: no CEL rule on spec.required: {rules}"
        );
        // The contradiction: three attestors required of two.
        let err = validate(kind, &policy(kind, &["release", "qa"], Some(3)))
            .expect_err("required 3 of 2 attestors is refused");
        assert!(
            err.contains("spec.required cannot exceed the number of spec.attestors"),
            "{kind}: {err}"
        );
        // What is satisfiable passes.
        for required in [None, Some(1), Some(2)] {
            validate(kind, &policy(kind, &["release", "qa"], required))
                .unwrap_or_else(|e| panic!("{kind} with required {required:?}: {e}"));
        }
    }
}

#[test]
fn conditions_are_a_map_list_and_every_crd_is_in_the_signet_category() {
    for kind in [
        "Attestor",
        "VerificationPolicy",
        "ClusterVerificationPolicy",
        "SigningRule",
    ] {
        let conditions = &schema(kind)["properties"]["status"]["properties"]["conditions"];
        assert_eq!(conditions["x-kubernetes-list-type"], "map", "{kind}");
        assert_eq!(
            conditions["x-kubernetes-list-map-keys"],
            json!(["type"]),
            "{kind}"
        );
    }
    for document in serde_yaml_ng::Deserializer::from_str(COMMITTED) {
        let crd: Value = serde::Deserialize::deserialize(document).unwrap();
        assert_eq!(
            crd["spec"]["names"]["categories"],
            json!(["signet"]),
            "{}",
            crd["spec"]["names"]["kind"]
        );
    }
}
