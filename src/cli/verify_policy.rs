//! Verifying one image against a whole policy set, as admission would: find the policies that
//! govern it in a namespace, look it up in the registry (only when one does), and evaluate.
//! Used by `signet verify --policy-dir`; the webhook asks the same engine through its own lookup
//! (caches, single flight), which a one-shot command does not need.
//!
//! The read is staged as at admission ([`super::verify_staged`], `Snapshot::read_order`): the
//! store the attestors can be satisfied from first, the other only when the verdict is not
//! settled. When it was settled early, the attestors a passing policy did not need are reported
//! as not checked (rather than as unsigned), and `formatsNotRead` names what was not read.

use std::path::Path;

use serde::Serialize;

use super::verify_staged::read_staged;
use crate::controller::{ControllerError, load_policy_dir};
use crate::crd::Mode;
use crate::policy::{self, EngineOptions, Governing, ImageVerdict, Lookup, Snapshot};
use crate::reference::ImageRef;
use crate::registry::{LookupFailure, SignatureStore};
use crate::signature::SignatureFormat;

/// Errors that prevent a verdict.
#[derive(Debug, thiserror::Error)]
pub enum PolicyVerificationError {
    /// The policy folder is unreadable or invalid.
    #[error(transparent)]
    PolicyDir(#[from] ControllerError),
}

/// The verdict for one image, and whether it rests on a failed registry look-up.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyVerification {
    /// The namespace the image was judged for.
    pub namespace: String,
    /// What the engine decided, policy by policy.
    #[serde(flatten)]
    pub verdict: ImageVerdict,
    /// Why the registry could not be asked (the verdict then fails every matching policy).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lookup_error: Option<String>,
    /// Formats whose store was not read because every governing policy passed without it.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub formats_not_read: Vec<SignatureFormat>,
}

/// Judges `image` in `namespace` under `snapshot`. The registry is asked only when a policy
/// governs the image; a registry failure becomes a failing [`Lookup::Failed`] (fail closed),
/// recorded in `lookup_error`.
pub async fn verify_with_policies(
    store: &SignatureStore,
    snapshot: &Snapshot,
    namespace: &str,
    image: &ImageRef,
) -> PolicyVerification {
    let mut lookup_error = None;
    let mut formats_not_read = Vec::new();
    let governing = snapshot.governing(namespace, image);
    let lookup = if governing.is_empty() {
        // No policy governs it: the no-match flag decides, the signatures do not matter.
        Lookup::found(image.digest().unwrap_or_default(), Vec::new())
    } else {
        match look_up(store, snapshot, &governing, image).await {
            Ok((found, unread)) => {
                formats_not_read = unread;
                found
            }
            Err(failure) => {
                lookup_error = Some(failure.to_string());
                Lookup::failed(failure)
            }
        }
    };
    let mut verdict = snapshot.evaluate_governed(&governing, image, &lookup);
    if verdict.policies.is_empty() && image.digest().is_none() {
        verdict.digest = None;
    }
    if !formats_not_read.is_empty() {
        mark_not_checked(&mut verdict, &formats_not_read);
    }
    PolicyVerification {
        namespace: namespace.to_string(),
        verdict,
        lookup_error,
        formats_not_read,
    }
}

/// The attestors a settled verdict did not need were judged on part of the signatures: say so
/// instead of the reason a partial read gave ("no signature").
fn mark_not_checked(verdict: &mut ImageVerdict, unread: &[SignatureFormat]) {
    let formats: Vec<String> = unread.iter().map(ToString::to_string).collect();
    let why = format!(
        "not checked: the policy passed without reading the {} signatures",
        formats.join(" and ")
    );
    for attestor in verdict
        .policies
        .iter_mut()
        .filter(|p| p.passed)
        .flat_map(|p| p.attestors.iter_mut())
        .filter(|a| a.verified_by_key.is_none())
    {
        attestor.reason = Some(why.clone());
    }
}

/// Loads the policy folder and compiles it with `options`, once for every image judged.
pub fn load_snapshot(
    dir: &Path,
    options: EngineOptions,
) -> Result<Snapshot, PolicyVerificationError> {
    let loaded = load_policy_dir(dir)?;
    Ok(policy::compile(&loaded.inputs, 1, options).snapshot)
}

/// The digest and its signatures, read in stages; the formats not read.
async fn look_up(
    store: &SignatureStore,
    snapshot: &Snapshot,
    governing: &Governing,
    image: &ImageRef,
) -> Result<(Lookup, Vec<SignatureFormat>), LookupFailure> {
    let digest = store.client().resolve_manifest(image).await?;
    let order = snapshot.read_order(governing);
    let read = read_staged(store, image, &digest, order, None, |set| {
        let partial = Lookup::found(digest.clone(), set.signatures.clone());
        snapshot
            .evaluate_governed(governing, image, &partial)
            .settled()
    })
    .await?;
    // As at admission: nothing read because of the budgets is a failure that says why.
    if let Some(failure) = read.set.unread_failure() {
        return Err(failure);
    }
    let unread = read.unread_formats();
    Ok((Lookup::found(digest, read.set.signatures), unread))
}

impl PolicyVerification {
    /// A human report: `allowed:` / `denied:` with the image and digest, then one line per
    /// governing policy saying whether it passed and why.
    pub fn to_text(&self) -> String {
        let verdict = &self.verdict;
        let word = match (verdict.allowed, verdict.dry_run) {
            (true, false) => "allowed",
            (true, true) => "allowed (DryRun failures)",
            (false, _) => "denied",
        };
        let subject = match &verdict.digest {
            Some(d) => format!("{} ({d})", verdict.image),
            None => verdict.image.clone(),
        };
        let mut out = format!("{word}: {subject} in namespace {}\n", self.namespace);
        if verdict.policies.is_empty() {
            let decision = if verdict.allowed {
                "allowed by --no-match=allow"
            } else {
                "denied by --no-match=deny"
            };
            out.push_str(&format!("  no policy matches ({decision})\n"));
        }
        for p in &verdict.policies {
            let outcome = if p.passed {
                let by: Vec<String> = p
                    .attestors
                    .iter()
                    .filter_map(|a| {
                        a.verified_by_key.as_ref().map(|k| match a.format {
                            Some(f) => format!("{} (key {k}, {f})", a.name),
                            None => format!("{} (key {k})", a.name),
                        })
                    })
                    .collect();
                format!("passed: signed by {}", by.join(", "))
            } else {
                let enforced = match p.mode {
                    Mode::Enforce => "failed",
                    Mode::DryRun => "failed, not enforced",
                };
                format!("{enforced}: {}", p.reason.as_deref().unwrap_or("?"))
            };
            out.push_str(&format!(
                "  policy {} ({:?}, {}): {outcome}\n",
                p.policy, p.kind, p.mode
            ));
        }
        out
    }
}
