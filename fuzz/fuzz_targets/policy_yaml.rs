//! A policy-folder file: its YAML documents read as `src/controller/policy_dir.rs` reads them
//! (a `serde_yaml_ng::Value` per document, then the kind named by `apiVersion`/`kind` through
//! `serde_path_to_error`), then compiled with `signet::policy::compile`. No panic.
#![no_main]

use k8s_openapi::api::core::v1::Namespace;
use libfuzzer_sys::fuzz_target;
use serde::de::DeserializeOwned;
use signet::crd::{Attestor, ClusterVerificationPolicy, SigningRule, VerificationPolicy};
use signet::policy::{EngineOptions, PolicyInputs, compile};
use signet::reference::{Glob, ImageRef};

fn typed<T: DeserializeOwned>(value: serde_yaml_ng::Value) -> Option<T> {
    serde_path_to_error::deserialize::<_, T>(value).ok()
}

fuzz_target!(|text: &str| {
    let mut inputs = PolicyInputs::default();
    for document in serde_yaml_ng::Deserializer::from_str(text) {
        let value: serde_yaml_ng::Value = match serde::Deserialize::deserialize(document) {
            Ok(serde_yaml_ng::Value::Null) => continue,
            Ok(value) => value,
            Err(_) => break,
        };
        let kind = value
            .get("kind")
            .and_then(serde_yaml_ng::Value::as_str)
            .unwrap_or("")
            .to_string();
        match kind.as_str() {
            "Attestor" => inputs.attestors.extend(typed::<Attestor>(value)),
            "ClusterVerificationPolicy" => inputs
                .cluster_policies
                .extend(typed::<ClusterVerificationPolicy>(value)),
            "VerificationPolicy" => {
                if let Some(mut policy) = typed::<VerificationPolicy>(value) {
                    if policy
                        .metadata
                        .namespace
                        .as_deref()
                        .unwrap_or("")
                        .is_empty()
                    {
                        policy.metadata.namespace = Some("default".into());
                    }
                    inputs.policies.push(policy);
                }
            }
            "SigningRule" => {
                if let Some(rule) = typed::<SigningRule>(value) {
                    for scope in &rule.spec.scope {
                        let _ = Glob::new(scope);
                    }
                    let _ = signet::signer::forbidden_rule_attribute(&rule.spec.key.reference);
                }
            }
            "Namespace" => {
                if let Some(namespace) = typed::<Namespace>(value) {
                    let name = namespace.metadata.name.unwrap_or_default();
                    let labels = namespace.metadata.labels.unwrap_or_default();
                    inputs.namespaces.insert(name, labels);
                }
            }
            _ => {}
        }
    }
    let compiled = compile(&inputs, 0, EngineOptions::default());
    for status in &compiled.statuses {
        let _ = status.object();
    }
    // The index the compiled globs went into, asked the way admission asks it.
    for (namespace, image) in [
        ("prod", "registry.example.com/prod/app:v1"),
        ("default", "nginx"),
    ] {
        if let Ok(image) = ImageRef::parse(image) {
            let _ = compiled.snapshot.matching_policies(namespace, &image);
            let _ = compiled.snapshot.governing(namespace, &image);
        }
    }
});
