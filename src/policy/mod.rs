//! The decision engine: a compiled snapshot of Attestors and policies, asked about one image at a
//! time. Pure and synchronous: no I/O, no clock, no async; the webhook and the CLI fetch digests
//! and signatures and pass them in.
//!
//! # Rules
//!
//! - Every policy that matches an image (its `images` glob matches, no `exclude` glob does, and
//!   for a ClusterVerificationPolicy its `namespaceSelector` selects the namespace; a
//!   VerificationPolicy only governs its own namespace) must pass: a namespace owner adds
//!   requirements, never removes cluster ones.
//! - A policy passes when `required` distinct attestors (absent = all it names) each have one
//!   signature that counts under the policy's `signatureType`, as [`crate::signature::check_signature`]
//!   decides: `Default` binds the tag the workload names (a digest-only workload needs the same
//!   repository); `Simple` binds the digest only, so a `Default` signature satisfies it too.
//! - `DryRun` policies never deny: their failures become warnings.
//! - An image no policy matches is allowed, or denied with `NoMatch::Deny`.
//! - Fail closed: an object that does not compile (unknown attestor, bad key, invalid glob or
//!   selector, impossible `required`) is reported not Ready and still governs what it matches,
//!   denying it in `Enforce` mode with the reason. An invalid `exclude` glob excludes nothing; an
//!   invalid `namespaceSelector` selects every namespace; an invalid `images` glob matches nothing
//!   (the only way a broken policy can govern less).
//!
//! # Globs
//!
//! Globs are matched against the normalised repository (`registry.example.com/prod/app`,
//! `docker.io/library/nginx` for `nginx`) and, when the reference names a tag, against
//! `repository:tag`; either match counts (see [`crate::reference::Glob`]):
//!
//! | glob | matches | does not match |
//! |---|---|---|
//! | `registry.example.com/prod/*` | `registry.example.com/prod/app:v1` | `registry.example.com/prod/team/app` |
//! | `registry.example.com/prod/**` | `registry.example.com/prod/team/app` | `registry.example.com/production/app` |
//! | `docker.io/library/*` | `nginx`, `redis:7` | `bitnami/redis` |
//! | `ghcr.io/org/app:v*` | `ghcr.io/org/app:v1.2` | `ghcr.io/org/app:latest`, `ghcr.io/org/app@sha256:…` |
//! | `*.example.com/**` | `registry.example.com/x/y` | `example.com/x` |
//!
//! `*` stays within one path segment, `**` crosses segments, `?` is one character other than `/`.

mod compile;
mod evaluate;
mod index;
mod matcher;
mod selector;
mod stages;
mod verdict;

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use serde::Serialize;

use crate::crd::{
    Attestor, ClusterVerificationPolicy, KeyStatus, READY_CONDITION, VerificationPolicy,
};
use crate::registry::LookupFailure;
use crate::signature::StoredSignature;

pub use compile::{CompiledPolicy, Governing, Snapshot, compile};
pub use stages::ReadOrder;
pub use verdict::{AttestorOutcome, ImageVerdict, PolicyOutcome};

/// Everything the engine compiles: the resources (from the cluster or a policy folder) and the
/// labels of the namespaces known (for `namespaceSelector`).
#[derive(Clone, Debug, Default)]
pub struct PolicyInputs {
    /// Every Attestor.
    pub attestors: Vec<Attestor>,
    /// Every VerificationPolicy, of every namespace.
    pub policies: Vec<VerificationPolicy>,
    /// Every ClusterVerificationPolicy.
    pub cluster_policies: Vec<ClusterVerificationPolicy>,
    /// Namespace name -> its labels. A namespace not listed has no labels.
    pub namespaces: BTreeMap<String, BTreeMap<String, String>>,
}

/// Engine settings that are flags rather than resources.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EngineOptions {
    /// What happens to an image no policy matches (`--no-match`).
    pub no_match: NoMatch,
}

/// The verdict for an image no policy matches.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub enum NoMatch {
    /// Allow it (the default: signet governs only what policies name).
    #[default]
    Allow,
    /// Deny it with "no policy matches".
    Deny,
}

/// The output of [`compile`]: the snapshot to evaluate against and the status of every object.
#[derive(Debug)]
pub struct Compiled {
    /// What requests are evaluated against.
    pub snapshot: Snapshot,
    /// One per compiled object, Ready or not.
    pub statuses: Vec<ObjectStatus>,
}

/// Kinds of the objects the engine compiles.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum ObjectKind {
    /// A trust anchor.
    Attestor,
    /// A namespaced policy.
    VerificationPolicy,
    /// A cluster-scoped policy.
    ClusterVerificationPolicy,
}

/// Why an object is not Ready: the `reason` of its Ready=False condition.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum NotReadyReason {
    /// A policy names an Attestor that does not exist.
    AttestorNotFound,
    /// A key does not parse or does not fit its algorithm (for a policy: one of its attestors').
    InvalidKey,
    /// Anything else in the spec: invalid glob or selector, empty list, impossible `required`.
    InvalidSpec,
}

impl NotReadyReason {
    /// The CamelCase reason written in the condition.
    pub fn as_str(self) -> &'static str {
        match self {
            NotReadyReason::AttestorNotFound => "AttestorNotFound",
            NotReadyReason::InvalidKey => "InvalidKey",
            NotReadyReason::InvalidSpec => "InvalidSpec",
        }
    }
}

/// One thing wrong with an object, naming the field (`spec.keys[1].publicKey: not a PEM key`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SpecProblem {
    /// A policy names an Attestor that does not exist.
    #[error("{field}: attestor {name:?} not found")]
    AttestorNotFound {
        /// The field that names it (`spec.attestors`).
        field: String,
        /// The Attestor name that was not found.
        name: String,
    },
    /// A key does not parse or fit its algorithm (or a policy's attestor has such a key).
    #[error("{field}: {reason}")]
    InvalidKey {
        /// The key's field (`spec.keys[1].publicKey`), or `spec.attestors` for a policy.
        field: String,
        /// Why the key cannot be used.
        reason: String,
    },
    /// Any other invalid field.
    #[error("{field}: {reason}")]
    InvalidSpec {
        /// The invalid field, as a path from the object root.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
}

impl SpecProblem {
    pub(crate) fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        SpecProblem::InvalidSpec {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// The condition reason this problem gives.
    pub fn reason(&self) -> NotReadyReason {
        match self {
            SpecProblem::AttestorNotFound { .. } => NotReadyReason::AttestorNotFound,
            SpecProblem::InvalidKey { .. } => NotReadyReason::InvalidKey,
            SpecProblem::InvalidSpec { .. } => NotReadyReason::InvalidSpec,
        }
    }
}

/// The compiled state of one object, for its status conditions (controller) or an error report
/// (file loader).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ObjectStatus {
    /// Which kind of object this is.
    pub kind: ObjectKind,
    /// `None` for cluster-scoped kinds.
    pub namespace: Option<String>,
    /// `metadata.name`.
    pub name: String,
    /// `metadata.generation` of the compiled spec (the condition's `observedGeneration`).
    pub generation: Option<i64>,
    /// Whether the object compiled without problems.
    pub ready: bool,
    /// The first problem's reason, when not Ready.
    pub reason: Option<NotReadyReason>,
    /// Every problem, `; `-separated, each naming its field, when not Ready.
    pub message: Option<String>,
    /// Attestors only: the keys that parsed, with their fingerprints.
    pub keys: Vec<KeyStatus>,
}

impl ObjectStatus {
    pub(crate) fn new(
        kind: ObjectKind,
        namespace: Option<String>,
        name: String,
        generation: Option<i64>,
        problems: &[SpecProblem],
        keys: Vec<KeyStatus>,
    ) -> Self {
        let message = (!problems.is_empty()).then(|| {
            problems
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ")
        });
        ObjectStatus {
            kind,
            namespace,
            name,
            generation,
            ready: problems.is_empty(),
            reason: problems.first().map(SpecProblem::reason),
            message,
            keys,
        }
    }

    /// `Kind name` or `Kind namespace/name`, for logs and file-loader errors.
    pub fn object(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("{:?} {ns}/{}", self.kind, self.name),
            None => format!("{:?} {}", self.kind, self.name),
        }
    }

    /// The `Ready` condition to write in the object's status. The caller supplies the time (the
    /// engine has no clock) and keeps the old time when the status did not change.
    pub fn ready_condition(&self, last_transition_time: Time) -> Condition {
        Condition {
            type_: READY_CONDITION.to_string(),
            status: if self.ready { "True" } else { "False" }.to_string(),
            reason: self
                .reason
                .map_or("Ready", NotReadyReason::as_str)
                .to_string(),
            message: self
                .message
                .clone()
                .unwrap_or_else(|| "compiled and in use".to_string()),
            observed_generation: self.generation,
            last_transition_time,
        }
    }
}

/// What the registry said about an image.
#[derive(Clone, Debug)]
pub enum Lookup {
    /// The digest the reference resolved to, and every signature stored for it (possibly none).
    Found {
        /// `sha256:<hex>`: what the signatures must name.
        digest: String,
        /// The `.sig` layers found for that digest, shared with the cache they came from
        /// (evaluations borrow them; nothing is copied per request).
        signatures: Arc<[StoredSignature]>,
    },
    /// The registry could not answer (unreachable, unauthorised, deadline...): every matching
    /// `Enforce` policy denies with this reason, and the verdict carries its kind.
    Failed {
        /// What went wrong; shared, since one failure answers every request that joined it.
        failure: Arc<LookupFailure>,
    },
}

impl Lookup {
    /// A found digest and its signatures.
    pub fn found(digest: impl Into<String>, signatures: impl Into<Arc<[StoredSignature]>>) -> Self {
        Lookup::Found {
            digest: digest.into(),
            signatures: signatures.into(),
        }
    }

    /// A failed lookup.
    pub fn failed(failure: impl Into<LookupFailure>) -> Self {
        Lookup::Failed {
            failure: Arc::new(failure.into()),
        }
    }
}

#[cfg(test)]
mod tests;
