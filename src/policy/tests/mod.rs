//! Tests of the policy engine: a fixture of real keys and resources written as YAML, the
//! `accepts` / `rejects` helpers, a table of cases (`table.rs`) and bad inputs (`bad_input.rs`).

mod bad_input;
mod certificate_keys;
mod spellings;
mod stages;
mod table;

use std::collections::BTreeMap;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair, RSA_PSS_SHA256, RsaKeyPair,
};
use base64::Engine;

use super::*;
use crate::reference::ImageRef;
use crate::signature::{SignatureType, StoredSignature, build_payload};

pub(super) const D1: &str =
    "sha256:1111111111111111111111111111111111111111111111111111111111111111";
pub(super) const D2: &str =
    "sha256:2222222222222222222222222222222222222222222222222222222222222222";

/// A real key pair that signs real simple-signing payloads.
pub(super) enum TestKey {
    Ec(EcdsaKeyPair),
    RsaPss(RsaKeyPair),
}

impl TestKey {
    pub(super) fn ec() -> Self {
        TestKey::Ec(EcdsaKeyPair::generate(&ECDSA_P256_SHA256_ASN1_SIGNING).unwrap())
    }

    pub(super) fn rsa_pss() -> Self {
        TestKey::RsaPss(RsaKeyPair::generate(KeySize::Rsa2048).unwrap())
    }

    pub(super) fn algorithm(&self) -> &'static str {
        match self {
            TestKey::Ec(_) => "ECDSA_P256_SHA_256",
            TestKey::RsaPss(_) => "RSA_PSS_SHA_256",
        }
    }

    pub(super) fn pem(&self) -> String {
        let der = match self {
            TestKey::Ec(k) => k.public_key().as_der().unwrap().as_ref().to_vec(),
            TestKey::RsaPss(k) => k.public_key().as_der().unwrap().as_ref().to_vec(),
        };
        let body = base64::engine::general_purpose::STANDARD.encode(der);
        let lines: Vec<&str> = body
            .as_bytes()
            .chunks(64)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect();
        format!(
            "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
            lines.join("\n")
        )
    }

    pub(super) fn sign_bytes(&self, payload: &[u8]) -> StoredSignature {
        let rng = SystemRandom::new();
        let signature = match self {
            TestKey::Ec(k) => k.sign(&rng, payload).unwrap().as_ref().to_vec(),
            TestKey::RsaPss(k) => {
                let mut sig = vec![0; k.public_modulus_len()];
                k.sign(&RSA_PSS_SHA256, &rng, payload, &mut sig).unwrap();
                sig
            }
        };
        StoredSignature::cosign(payload.to_vec(), Some(signature))
    }

    /// A signature as `signet sign` would make it for `image` (with its tag for `Default`).
    pub(super) fn sign(&self, image: &str, digest: &str, t: SignatureType) -> StoredSignature {
        let image = ImageRef::parse(image).unwrap();
        self.sign_bytes(&build_payload(&image, digest, t, &BTreeMap::new()).unwrap())
    }
}

/// Resources written as the YAML a user applies, parsed as the file loader parses them.
#[derive(Default)]
pub(super) struct World {
    pub(super) inputs: PolicyInputs,
}

impl World {
    pub(super) fn attestor(mut self, name: &str, keys: &[(Option<&str>, &TestKey)]) -> Self {
        let mut yaml = format!(
            "apiVersion: signet.dev/v1alpha1\nkind: Attestor\nmetadata: {{name: {name}, generation: 1}}\nspec:\n  keys:\n"
        );
        for (id, key) in keys {
            yaml.push_str(&format!("  - algorithm: {}\n", key.algorithm()));
            if let Some(id) = id {
                yaml.push_str(&format!("    id: {id}\n"));
            }
            yaml.push_str("    publicKey: |\n");
            for line in key.pem().lines() {
                yaml.push_str(&format!("      {line}\n"));
            }
        }
        self.inputs.attestors.push(parse(&yaml));
        self
    }

    /// Adds a document written out in full (for bad keys and the like).
    pub(super) fn attestor_yaml(mut self, yaml: &str) -> Self {
        self.inputs.attestors.push(parse(yaml));
        self
    }

    /// A ClusterVerificationPolicy; `spec` is YAML in flow style (`{images: [...], ...}`).
    pub(super) fn cluster_policy(mut self, name: &str, spec: &str) -> Self {
        self.inputs.cluster_policies.push(parse(&format!(
            "apiVersion: signet.dev/v1alpha1\nkind: ClusterVerificationPolicy\nmetadata: {{name: {name}, generation: 3}}\nspec: {spec}\n"
        )));
        self
    }

    /// A VerificationPolicy in `namespace`.
    pub(super) fn policy(mut self, namespace: &str, name: &str, spec: &str) -> Self {
        self.inputs.policies.push(parse(&format!(
            "apiVersion: signet.dev/v1alpha1\nkind: VerificationPolicy\nmetadata: {{name: {name}, namespace: {namespace}, generation: 2}}\nspec: {spec}\n"
        )));
        self
    }

    pub(super) fn namespace(mut self, name: &str, labels: &[(&str, &str)]) -> Self {
        self.inputs.namespaces.insert(
            name.to_string(),
            labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        self
    }

    pub(super) fn compile(&self, no_match: NoMatch) -> Compiled {
        compile(&self.inputs, 7, EngineOptions { no_match })
    }
}

fn parse<T: serde::de::DeserializeOwned>(yaml: &str) -> T {
    serde_yaml_ng::from_str(yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"))
}

pub(super) fn found(digest: &str, signatures: Vec<StoredSignature>) -> Lookup {
    Lookup::found(digest, signatures)
}

pub(super) fn evaluate(
    snapshot: &Snapshot,
    ns: &str,
    image: &str,
    lookup: &Lookup,
) -> ImageVerdict {
    snapshot.evaluate(ns, &ImageRef::parse(image).unwrap(), lookup)
}

/// Asserts the image is allowed without a warning, and returns the verdict for more checks.
pub(super) fn accepts(snapshot: &Snapshot, ns: &str, image: &str, lookup: &Lookup) -> ImageVerdict {
    let v = evaluate(snapshot, ns, image, lookup);
    assert!(
        v.allowed && !v.dry_run && v.warnings().is_empty(),
        "{image} in {ns} should be accepted: {v:#?}\n{:?}",
        v.denial_message()
    );
    assert_eq!(v.denial_message(), None);
    v
}

/// Asserts the image is denied and that the denial message contains `needle`.
pub(super) fn rejects(
    snapshot: &Snapshot,
    ns: &str,
    image: &str,
    lookup: &Lookup,
    needle: &str,
) -> ImageVerdict {
    let v = evaluate(snapshot, ns, image, lookup);
    let message = v.denial_message();
    assert!(!v.allowed, "{image} in {ns} should be rejected: {v:#?}");
    let message = message.unwrap_or_default();
    assert!(
        message.contains(needle),
        "{image} in {ns}: denial {message:?} does not contain {needle:?}"
    );
    v
}
