//! The answer composer: what the API server hears, from what was found. Pure: no registry, no
//! API, no clock. Given the case of the request (not a workload, unreadable, exempt, breakglass,
//! overloaded, or judged with one outcome per image) and the settings, it gives the
//! AdmissionReview answer, the metric's result and the event to post.
//!
//! Rules:
//! - `/validate` decides; `/mutate` never denies, it only pins, so a failure there is not
//!   reported twice.
//! - `/mutate` pins each image that every governing `Enforce` policy passed, whatever `DryRun`
//!   policies say: the node then pulls exactly the digest that was verified.
//! - Events go with `/validate` only, and never for `kubectl --dry-run=server`
//!   (sideEffects: NoneOnDryRun).

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::time::Duration;

use super::breakglass::{Authority, BREAKGLASS_ANNOTATION, BreakglassAnswer, BreakglassAsk};
use super::events::EventReason;
use super::images::{ContainerKind, Workload};
use super::judge::ImageOutcome;
use super::metrics::{AdmissionResult, Endpoint};
use super::patch::pin_patch;
use super::review::Answer;

/// Audit annotation keys (the API server prefixes them with the webhook's name).
pub const AUDIT_RESULT: &str = "result";
/// See [`AUDIT_RESULT`].
pub const AUDIT_IMAGES: &str = "verified-images";
/// See [`AUDIT_RESULT`].
pub const AUDIT_BREAKGLASS: &str = "breakglass-reason";
/// See [`AUDIT_RESULT`].
pub const AUDIT_BREAKGLASS_USER: &str = "breakglass-user";
/// Audit annotation values are kept short; the full story is in the message and events.
const MAX_AUDIT_VALUE: usize = 2048;

/// What the request turned out to be.
#[derive(Debug)]
pub(crate) enum Case<'a> {
    /// Not something signet checks (other kinds, DELETE, status updates...).
    NotAWorkload,
    /// A workload whose images cannot be read.
    Unreadable { kind: &'a str, error: String },
    /// A workload in an exempt namespace.
    Exempt,
    /// Breakglass was asked and answered.
    Breakglass(&'a BreakglassAnswer),
    /// No decision slot came free before the deadline.
    Overloaded { deadline: Duration },
    /// Every image judged; `ask` says what became of a breakglass annotation that was ignored.
    Judged {
        ask: &'a BreakglassAsk,
        outcomes: &'a [ImageOutcome<'a>],
    },
}

/// What the answer depends on besides the case.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Context<'a> {
    /// The review's `uid`.
    pub uid: &'a str,
    /// Which endpoint was called.
    pub endpoint: Endpoint,
    /// `kubectl --dry-run=server`: no side effects.
    pub dry_run: bool,
    /// Whether `/mutate` pins (`--mutate`).
    pub mutate: bool,
    /// The workload, when there is one (the patch points into it).
    pub workload: Option<&'a Workload<'a>>,
}

/// The answer, the metric's result, and the event to post (if any).
#[derive(Debug, PartialEq)]
pub(crate) struct Composed {
    pub answer: Answer,
    pub result: AdmissionResult,
    pub event: Option<(EventReason, String)>,
}

/// Composes the answer to one request.
pub(crate) fn compose(context: &Context<'_>, case: &Case<'_>) -> Composed {
    let validate = context.endpoint == Endpoint::Validate;
    let mut composed = Composed {
        answer: Answer {
            uid: context.uid.to_string(),
            allowed: true,
            ..Answer::default()
        },
        result: AdmissionResult::Allowed,
        event: None,
    };
    let answer = &mut composed.answer;
    match case {
        Case::NotAWorkload => {}
        Case::Unreadable { kind, error } => {
            composed.result = AdmissionResult::Error;
            if validate {
                answer.allowed = false;
                answer.message = Some(format!(
                    "signet cannot read the images of this {kind}: {error}"
                ));
                set_audit(answer, AUDIT_RESULT, "error");
            }
        }
        Case::Exempt => set_audit(answer, AUDIT_RESULT, "exempt-namespace"),
        Case::Overloaded { deadline } => {
            composed.result = AdmissionResult::Error;
            if validate {
                answer.allowed = false;
                answer.message = Some(format!(
                    "signet could not check the images within {}: too many admissions in progress",
                    super::decide::format_duration(*deadline)
                ));
            }
        }
        Case::Breakglass(BreakglassAnswer::Authorized { reason, user, by }) => {
            composed.result = AdmissionResult::Breakglass;
            answer.warnings.push(format!(
                "signet breakglass: images admitted without verification ({reason})"
            ));
            set_audit(answer, AUDIT_RESULT, "breakglass");
            set_audit(answer, AUDIT_BREAKGLASS, reason.to_string());
            set_audit(answer, AUDIT_BREAKGLASS_USER, user.to_string());
            let authority = match by {
                Authority::Group(group) => format!("group {group:?}"),
                Authority::Rbac => "RBAC".to_string(),
            };
            composed.event = Some((
                EventReason::Breakglass,
                format!(
                    "admitted without image verification by {BREAKGLASS_ANNOTATION} for {user} \
                     (authorized by {authority}): {reason}"
                ),
            ));
        }
        Case::Breakglass(BreakglassAnswer::Refused { reason, why }) => {
            composed.result = AdmissionResult::Denied;
            if validate {
                let message = format!("{BREAKGLASS_ANNOTATION} ({reason}) refused: {why}");
                answer.allowed = false;
                answer.message = Some(message.clone());
                set_audit(answer, AUDIT_RESULT, "breakglass-refused");
                composed.event = Some((EventReason::FailedAdmission, message));
            }
        }
        Case::Judged { ask, outcomes } => compose_judged(context, ask, outcomes, &mut composed),
    }
    if !validate || context.dry_run {
        composed.event = None;
    }
    composed
}

fn compose_judged(
    context: &Context<'_>,
    ask: &BreakglassAsk,
    outcomes: &[ImageOutcome<'_>],
    composed: &mut Composed,
) {
    let answer = &mut composed.answer;
    if context.endpoint == Endpoint::Mutate {
        if let (true, Some(workload)) = (context.mutate, context.workload) {
            let digests: BTreeMap<String, String> = outcomes
                .iter()
                .filter(|o| o.verdict.pinnable)
                .filter_map(|o| Some((o.written.to_string(), o.digest.as_deref()?.to_string())))
                .collect();
            answer.patch = pin_patch(workload, &digests);
        }
        return;
    }
    answer.warnings.extend(ask.warning());
    // `repo:tag@sha256:...,...`, written straight into one string sized once (growing it step
    // by step cost five reallocations on a 3-image pod).
    let verified_images = || {
        outcomes
            .iter()
            .filter(|o| o.verdict.verified)
            .filter_map(|o| Some((o.written, o.digest.as_deref()?)))
    };
    let mut verified = String::with_capacity(
        verified_images()
            .map(|(written, digest)| written.len() + digest.len() + 2)
            .sum(),
    );
    for (written, digest) in verified_images() {
        if !verified.is_empty() {
            verified.push(',');
        }
        verified.push_str(written);
        verified.push('@');
        verified.push_str(digest);
    }
    if !verified.is_empty() {
        set_audit(answer, AUDIT_IMAGES, verified);
    }
    let dry_run_warnings: Vec<String> = outcomes
        .iter()
        .flat_map(|o| o.verdict.warnings.iter().map(|w| w.to_string()))
        .collect();
    answer.warnings.extend(dry_run_warnings.iter().cloned());
    let denials: Vec<String> = outcomes
        .iter()
        .filter(|o| !o.verdict.allowed)
        .filter_map(|o| {
            let denial = o.verdict.denial.as_deref()?;
            Some(
                match context.workload.map(|w| image_volumes_using(w, o.written)) {
                    Some(volumes) if !volumes.is_empty() => format!("{denial} ({volumes})"),
                    _ => denial.to_string(),
                },
            )
        })
        .collect();
    if !denials.is_empty() {
        let message = denials.join("\n");
        answer.allowed = false;
        answer.message = Some(message.clone());
        set_audit(answer, AUDIT_RESULT, "denied");
        composed.result = AdmissionResult::Denied;
        composed.event = Some((EventReason::FailedAdmission, message));
    } else if !dry_run_warnings.is_empty() {
        set_audit(answer, AUDIT_RESULT, "dryrun");
        composed.result = AdmissionResult::Dryrun;
        composed.event = Some((EventReason::DryRunAdmission, dry_run_warnings.join("\n")));
    } else {
        set_audit(answer, AUDIT_RESULT, "allowed");
    }
}

/// `image volume "models", image volume "data"`: the volumes that mount `written`, so that a
/// denial of an image no container runs says where it comes from.
fn image_volumes_using(workload: &Workload<'_>, written: &str) -> String {
    workload
        .images
        .iter()
        .filter(|i| i.kind == ContainerKind::ImageVolume && i.image == written)
        .map(|i| format!("image volume {:?}", i.container))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Sets an audit annotation, cut to [`MAX_AUDIT_VALUE`] bytes on a character boundary.
/// Constant values (`allowed`) are borrowed, not copied into a string per answer.
fn set_audit(answer: &mut Answer, key: &'static str, value: impl Into<Cow<'static, str>>) {
    let mut value = value.into();
    if value.len() > MAX_AUDIT_VALUE {
        let mut end = MAX_AUDIT_VALUE - 3;
        while !value.is_char_boundary(end) {
            end -= 1;
        }
        let text = value.to_mut();
        text.truncate(end);
        text.push_str("...");
    }
    answer.audit_annotations.insert(Cow::Borrowed(key), value);
}

#[cfg(test)]
#[path = "compose_tests.rs"]
mod tests;
