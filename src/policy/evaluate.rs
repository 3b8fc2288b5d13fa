//! Evaluating one image: matching policies, one signature pass per (attestor, signature type),
//! and the combination into a verdict with reasons.

use super::compile::{CompiledAttestor, CompiledPolicy, Governing, Snapshot};
use super::verdict::{AttestorOutcome, ImageVerdict, PolicyOutcome};
use super::{Lookup, NoMatch};
use crate::crd::Mode;
use crate::reference::ImageRef;
use crate::registry::LookupFailureKind;
use crate::signature::notation::NotationRejection;
use crate::signature::{
    Rejection, SignatureFormat, SignatureType, StoredSignature, check_notation, check_signature,
};

/// The result of checking an image's signatures against one attestor's keys.
#[derive(Clone, Debug)]
struct AttestorCheck {
    verified_by_key: Option<String>,
    format: Option<SignatureFormat>,
    reason: Option<String>,
}

impl AttestorCheck {
    fn failed(reason: impl Into<String>) -> Self {
        AttestorCheck {
            verified_by_key: None,
            format: None,
            reason: Some(reason.into()),
        }
    }
}

/// What the signatures can be checked against, or why they cannot.
enum Evidence<'a> {
    Signatures {
        digest: &'a str,
        signatures: &'a [StoredSignature],
    },
    Unavailable(String),
}

/// Checks made for one image, so that policies sharing an attestor (and a signature type) cost
/// one pass over the signatures, not one per policy.
struct Checks<'a> {
    image: &'a ImageRef,
    evidence: &'a Evidence<'a>,
    done: Vec<((usize, SignatureType), AttestorCheck)>,
}

impl Checks<'_> {
    fn get(
        &mut self,
        attestors: &[CompiledAttestor],
        attestor: usize,
        signature_type: SignatureType,
    ) -> AttestorCheck {
        let key = (attestor, signature_type);
        if let Some((_, check)) = self.done.iter().find(|(k, _)| *k == key) {
            return check.clone();
        }
        // Default checks every claim Simple checks, and more: a signature that counts under
        // Default counts under Simple, and when none counts under Simple none counts under
        // Default, for the same reasons. Either way the other type's pass is reused.
        let reusable = |(k, check): &&((usize, SignatureType), AttestorCheck)| {
            k.0 == attestor
                && match (k.1, signature_type) {
                    (SignatureType::Default, SignatureType::Simple) => {
                        check.verified_by_key.is_some()
                    }
                    (SignatureType::Simple, SignatureType::Default) => {
                        check.verified_by_key.is_none()
                    }
                    _ => false,
                }
        };
        if let Some((_, check)) = self.done.iter().find(reusable) {
            return check.clone();
        }
        let check = match attestors.get(attestor) {
            Some(a) => check_attestor(a, self.image, self.evidence, signature_type),
            None => AttestorCheck::failed("attestor not found"),
        };
        self.done.push((key, check.clone()));
        check
    }
}

/// How telling a rejection is: the closer the signature came to counting, the higher. A
/// signature that verified under the attestor's key but binds another tag explains more than
/// one no trusted key verifies.
fn rank(rejection: &Rejection) -> u8 {
    match rejection {
        Rejection::TagNotBound { .. }
        | Rejection::NoTagBinding { .. }
        | Rejection::NotationDigestOnly => 6,
        Rejection::OtherRepository(_) => 5,
        Rejection::OtherDigest(_) | Rejection::Notation(NotationRejection::OtherTarget(_)) => 4,
        Rejection::UnknownType(_) | Rejection::NotImageSignature(_) => 3,
        Rejection::MalformedPayload(_) | Rejection::MalformedBundle(_) => 2,
        // Verified by the chain's key but refused by the trust or the signature's expiry.
        Rejection::Notation(NotationRejection::Certificate { .. })
        | Rejection::Notation(NotationRejection::Expired(_)) => 2,
        Rejection::Notation(_) | Rejection::UntrustedKey | Rejection::UntrustedBundleKey => 1,
        Rejection::Unsigned | Rejection::NoCertificateTrust => 0,
    }
}

fn check_attestor(
    attestor: &CompiledAttestor,
    image: &ImageRef,
    evidence: &Evidence<'_>,
    signature_type: SignatureType,
) -> AttestorCheck {
    if let Some(why) = &attestor.unusable {
        return AttestorCheck::failed(why.clone());
    }
    let (digest, signatures) = match evidence {
        Evidence::Signatures { digest, signatures } => (*digest, *signatures),
        Evidence::Unavailable(_) => return AttestorCheck::failed("not checked"),
    };
    let mut best: Option<Rejection> = None;
    let trust: Vec<_> = attestor.trust_stores.iter().map(|s| s.as_ref()).collect();
    let now = jiff::Timestamp::now().as_second();
    for stored in signatures {
        if stored.format == SignatureFormat::Notation {
            match check_notation(stored, image, digest, signature_type, &trust, now) {
                Ok(accepted) => {
                    return AttestorCheck {
                        verified_by_key: Some(
                            attestor
                                .trust_labels
                                .get(accepted.trust_index)
                                .cloned()
                                .unwrap_or_else(|| format!("#{}", accepted.trust_index)),
                        ),
                        format: Some(stored.format),
                        reason: None,
                    };
                }
                Err(rejection) => {
                    if best.as_ref().is_none_or(|b| rank(&rejection) > rank(b)) {
                        best = Some(rejection);
                    }
                }
            }
            continue;
        }
        match check_signature(stored, image, digest, signature_type, &attestor.keys) {
            Ok(accepted) => {
                return AttestorCheck {
                    verified_by_key: Some(
                        attestor
                            .key_labels
                            .get(accepted.key_index)
                            .cloned()
                            .unwrap_or_else(|| format!("#{}", accepted.key_index)),
                    ),
                    format: Some(stored.format),
                    reason: None,
                };
            }
            Err(rejection) => {
                if best.as_ref().is_none_or(|b| rank(&rejection) > rank(b)) {
                    best = Some(rejection);
                }
            }
        }
    }
    AttestorCheck::failed(match best {
        None => "no signature".to_string(),
        Some(Rejection::UntrustedKey | Rejection::NoCertificateTrust) => format!(
            "no signature by key {} for this digest",
            attestor
                .key_labels
                .iter()
                .chain(&attestor.trust_labels)
                .map(String::as_str)
                .collect::<Vec<_>>()
                .join(" or ")
        ),
        Some(other) => other.to_string(),
    })
}

impl Snapshot {
    /// Judges `image` (as the workload names it) in `namespace`, given what the registry said.
    ///
    /// When the reference names a digest, the caller resolves it to that same digest; a
    /// different one fails every matching policy (fail closed).
    pub fn evaluate(&self, namespace: &str, image: &ImageRef, lookup: &Lookup) -> ImageVerdict {
        self.evaluate_governed(&self.governing(namespace, image), image, lookup)
    }

    /// Judges `image` under the policies `governing` found in this same snapshot (the judge
    /// holds one `Arc<Snapshot>` for both calls).
    pub fn evaluate_governed(
        &self,
        governing: &Governing,
        image: &ImageRef,
        lookup: &Lookup,
    ) -> ImageVerdict {
        let matched = &governing.indices;
        let (digest, evidence, failure) = match lookup {
            Lookup::Found { digest, .. }
                if image
                    .digest()
                    .is_some_and(|pinned| !pinned.eq_ignore_ascii_case(digest)) =>
            {
                let pinned = image.digest().unwrap_or_default();
                (
                    Some(digest.clone()),
                    Evidence::Unavailable(format!(
                        "the reference names {pinned} but the registry resolved {digest}"
                    )),
                    Some(LookupFailureKind::InvalidContent),
                )
            }
            Lookup::Found { digest, signatures } => (
                Some(digest.clone()),
                Evidence::Signatures { digest, signatures },
                None,
            ),
            Lookup::Failed { failure } => (
                image.digest().map(str::to_string),
                // Rendered here, at the edge of the engine: the kind travels as a type.
                Evidence::Unavailable(format!("registry lookup failed: {failure}")),
                Some(failure.kind()),
            ),
        };
        let mut verdict = ImageVerdict {
            image: image.to_string(),
            digest,
            allowed: true,
            dry_run: false,
            policies: Vec::with_capacity(matched.len()),
            // Only a lookup that governed the decision is a failure of this verdict.
            failure: if matched.is_empty() { None } else { failure },
        };
        if matched.is_empty() {
            verdict.allowed = self.options().no_match == NoMatch::Allow;
            return verdict;
        }
        let mut checks = Checks {
            image,
            evidence: &evidence,
            done: Vec::new(),
        };
        for policy in matched.iter().filter_map(|&i| self.policies.get(i)) {
            verdict
                .policies
                .push(self.judge(policy, &evidence, &mut checks));
        }
        // A DryRun policy never admits more than its absence would: under `--no-match deny`,
        // an image that only DryRun policies govern is still unmatched for enforcement.
        let enforced = verdict.policies.iter().any(|p| p.mode == Mode::Enforce);
        verdict.allowed = verdict
            .policies
            .iter()
            .all(|p| p.passed || p.mode == Mode::DryRun)
            && (enforced || self.options().no_match == NoMatch::Allow);
        verdict.dry_run = verdict
            .policies
            .iter()
            .any(|p| !p.passed && p.mode == Mode::DryRun);
        verdict
    }

    fn judge(
        &self,
        policy: &CompiledPolicy,
        evidence: &Evidence<'_>,
        checks: &mut Checks<'_>,
    ) -> PolicyOutcome {
        let mut satisfied = Vec::new();
        let mut attestors = Vec::with_capacity(policy.attestors.len());
        for slot in &policy.attestors {
            let check = match slot.attestor {
                Some(i) => checks.get(&self.attestors, i, policy.signature_type()),
                None => AttestorCheck::failed("attestor not found"),
            };
            if check.verified_by_key.is_some() {
                satisfied.push(slot.name.clone());
            }
            attestors.push(AttestorOutcome {
                name: slot.name.clone(),
                verified_by_key: check.verified_by_key,
                format: check.format,
                reason: check.reason,
            });
        }
        let ready = policy.is_ready();
        let passed = ready
            && matches!(evidence, Evidence::Signatures { .. })
            && satisfied.len() >= policy.required();
        let reason = (!passed).then(|| failure_reason(policy, evidence, &satisfied, &attestors));
        PolicyOutcome {
            policy: policy.display_name().to_string(),
            kind: policy.kind(),
            mode: policy.mode(),
            passed,
            ready,
            required: policy.required(),
            satisfied,
            attestors,
            reason,
        }
    }
}

/// `<n> of <required> required attestors: <attestor>: <why>; ...`, then why a not-Ready policy
/// fails whatever the signatures.
fn failure_reason(
    policy: &CompiledPolicy,
    evidence: &Evidence<'_>,
    satisfied: &[String],
    attestors: &[AttestorOutcome],
) -> String {
    // Built with push_str: this runs for every failing policy of every image, and `format!`
    // machinery was most of the evaluation time in the benchmark.
    let mut reason = String::with_capacity(128);
    reason.push_str(&satisfied.len().to_string());
    reason.push_str(" of ");
    reason.push_str(&policy.required().to_string());
    reason.push_str(" required attestors: ");
    let mut first = true;
    let mut segment = |reason: &mut String, parts: &[&str]| {
        if !std::mem::take(&mut first) {
            reason.push_str("; ");
        }
        parts.iter().for_each(|p| reason.push_str(p));
    };
    match evidence {
        Evidence::Unavailable(why) => segment(&mut reason, &[why]),
        Evidence::Signatures { .. } => {
            for a in attestors.iter().filter(|a| a.verified_by_key.is_none()) {
                let why = a.reason.as_deref().unwrap_or("failed");
                segment(&mut reason, &[&a.name, ": ", why]);
            }
        }
    }
    if !policy.is_ready() {
        segment(&mut reason, &["policy not ready, fails closed"]);
        for (i, problem) in policy.own_problems().iter().enumerate() {
            reason.push_str(if i == 0 { ": " } else { "; " });
            reason.push_str(&problem.to_string());
        }
    }
    reason
}
