//! What the engine answers for one image: the verdict, each policy's and each attestor's outcome,
//! and the one-line reasons the webhook and the CLI show people.

use serde::Serialize;

use super::ObjectKind;
use crate::crd::Mode;
use crate::registry::LookupFailureKind;

/// The verdict for one image in one namespace.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageVerdict {
    /// The image, normalised (`registry.example.com/prod/app:v1`). Public so a caller holding
    /// the text as written may put it here before formatting messages.
    pub image: String,
    /// The digest the signatures were checked against; `None` when the look-up failed and the
    /// reference names none.
    pub digest: Option<String>,
    /// Whether the image may run: every matching `Enforce` policy passed (no match: the flag).
    pub allowed: bool,
    /// Whether a `DryRun` policy failed (allowed, with a warning).
    pub dry_run: bool,
    /// Every policy that governs the image, cluster policies first.
    pub policies: Vec<PolicyOutcome>,
    /// When a policy governs the image and the registry lookup failed (or resolved another
    /// digest than the reference names), the kind of failure: what metrics are labelled with.
    /// The policies' `reason`s say the same for people.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<LookupFailureKind>,
}

/// How one policy judged the image.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyOutcome {
    /// `name` (ClusterVerificationPolicy) or `namespace/name` (VerificationPolicy).
    pub policy: String,
    /// VerificationPolicy or ClusterVerificationPolicy.
    pub kind: ObjectKind,
    /// Enforce or DryRun: a failing DryRun policy does not deny.
    pub mode: Mode,
    /// Whether the policy is satisfied.
    pub passed: bool,
    /// False when the policy did not compile cleanly: it then fails whatever the signatures.
    pub ready: bool,
    /// Distinct attestors that must have signed.
    pub required: usize,
    /// The attestors that did, in spec order.
    pub satisfied: Vec<String>,
    /// Every distinct attestor the policy names, in spec order.
    pub attestors: Vec<AttestorOutcome>,
    /// When not passed: `<n> of <required> required attestors: <attestor>: <why>; ...`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// How one attestor fared for the image under one policy's signature type.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AttestorOutcome {
    /// The Attestor's name.
    pub name: String,
    /// The key that verified a signature that counts: its `id`, else its fingerprint.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verified_by_key: Option<String>,
    /// The format of that signature (`CosignSignature`, `SigstoreBundle` or `Notation`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub format: Option<crate::signature::SignatureFormat>,
    /// Why no signature counted (the most telling rejection), when none did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl ImageVerdict {
    /// `<image> (<digest>)`, the start of every message about this image.
    fn subject(&self) -> String {
        match &self.digest {
            Some(d) => format!("{} ({d})", self.image),
            None => format!("{} (digest unknown)", self.image),
        }
    }

    /// When denied, one line naming the image, its digest, each failing `Enforce` policy and why:
    /// `<image> (<digest>): policy <name>: <n> of <required> required attestors: <attestor>: <why>`,
    /// policies separated by `; policy `.
    pub fn denial_message(&self) -> Option<String> {
        if self.allowed {
            return None;
        }
        if self.policies.is_empty() {
            return Some(format!("{}: no policy matches", self.subject()));
        }
        if self.policies.iter().all(|p| p.mode == Mode::DryRun) {
            return Some(format!(
                "{}: no Enforce policy matches (only DryRun ones), and unmatched images are denied",
                self.subject()
            ));
        }
        let failures: Vec<String> = self
            .policies
            .iter()
            .filter(|p| !p.passed && p.mode == Mode::Enforce)
            .map(|p| {
                format!(
                    "policy {}: {}",
                    p.policy,
                    p.reason.as_deref().unwrap_or("failed")
                )
            })
            .collect();
        Some(format!("{}: {}", self.subject(), failures.join("; ")))
    }

    /// One line per failing `DryRun` policy, for admission warnings and `DryRunAdmission` events.
    pub fn warnings(&self) -> Vec<String> {
        self.policies
            .iter()
            .filter(|p| !p.passed && p.mode == Mode::DryRun)
            .map(|p| {
                format!(
                    "{}: policy {} (DryRun, not enforced): {}",
                    self.subject(),
                    p.policy,
                    p.reason.as_deref().unwrap_or("failed")
                )
            })
            .collect()
    }
}
