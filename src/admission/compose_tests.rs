//! The composer driven through every branch, without a registry or TLS.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::*;
use crate::admission::images::{ContainerKind, WorkloadImage};
use crate::admission::verdict::CachedVerdict;

const DIGEST: &str = "sha256:4f53cda18c2baa0c0354bb5f9a3ecbe5ed12ab4d8e11ba873c2f11161202b945";

fn workload() -> Workload<'static> {
    Workload {
        kind: "Pod".into(),
        namespace: "shop".into(),
        name: "web".into(),
        images: ["r.example/app:v1", "r.example/tool:v2"]
            .iter()
            .enumerate()
            .map(|(i, image)| WorkloadImage {
                index: i,
                image: image.to_string().into(),
                container: format!("c{i}").into(),
                kind: ContainerKind::Container,
            })
            .collect(),
        annotations: BTreeMap::new(),
        template_annotations: BTreeMap::new(),
        pod_spec_pointer: "/spec",
        image_pull_secrets: vec![],
        service_account: Some("default".into()),
    }
}

/// How an image fared, in the engine's words.
#[derive(Clone, Copy)]
enum Fared {
    Verified,
    /// Enforce passed, a DryRun policy failed.
    DryRunFailed,
    Denied,
    /// No policy governs it, `--no-match allow`.
    Ungoverned,
}

fn outcome(written: &str, fared: Fared) -> ImageOutcome<'_> {
    let verdict = match fared {
        Fared::Verified => CachedVerdict::plain_verified(),
        Fared::DryRunFailed => CachedVerdict {
            allowed: true,
            pinnable: true,
            verified: false,
            denial: None,
            warnings: Box::new([format!(
                "{written}: policy try (DryRun, not enforced): no signature"
            )
            .into_boxed_str()]),
        },
        Fared::Denied => CachedVerdict::denied(format!("{written}: policy prod: no signature")),
        Fared::Ungoverned => CachedVerdict {
            allowed: true,
            pinnable: false,
            verified: false,
            denial: None,
            warnings: Box::new([]),
        },
    };
    ImageOutcome {
        written,
        digest: match fared {
            Fared::Ungoverned => None,
            _ => Some(Arc::from(DIGEST)),
        },
        verdict: Arc::new(verdict),
    }
}

struct Row {
    name: &'static str,
    endpoint: Endpoint,
    dry_run: bool,
    mutate: bool,
    allowed: bool,
    result: AdmissionResult,
    audit_result: Option<&'static str>,
    message_has: &'static [&'static str],
    warning_has: &'static [&'static str],
    event: Option<EventReason>,
    pinned: &'static [&'static str],
}

const BASE: Row = Row {
    name: "",
    endpoint: Endpoint::Validate,
    dry_run: false,
    mutate: true,
    allowed: true,
    result: AdmissionResult::Allowed,
    audit_result: None,
    message_has: &[],
    warning_has: &[],
    event: None,
    pinned: &[],
};

fn check(row: &Row, case: &Case<'_>) {
    let workload = workload();
    let context = Context {
        uid: "uid-1",
        endpoint: row.endpoint,
        dry_run: row.dry_run,
        mutate: row.mutate,
        workload: Some(&workload),
    };
    let composed = compose(&context, case);
    let name = row.name;
    let answer = &composed.answer;
    assert_eq!(answer.uid, "uid-1", "{name}");
    assert_eq!(answer.allowed, row.allowed, "{name}: {answer:?}");
    assert_eq!(composed.result, row.result, "{name}");
    assert_eq!(
        answer
            .audit_annotations
            .get(AUDIT_RESULT)
            .map(|value| &**value),
        row.audit_result,
        "{name}: {answer:?}"
    );
    let message = answer.message.clone().unwrap_or_default();
    for part in row.message_has {
        assert!(
            message.contains(part),
            "{name}: {part:?} not in {message:?}"
        );
    }
    if row.message_has.is_empty() {
        assert!(answer.message.is_none(), "{name}: {message}");
    }
    let warnings = answer.warnings.join("\n");
    for part in row.warning_has {
        assert!(
            warnings.contains(part),
            "{name}: {part:?} not in {warnings:?}"
        );
    }
    if row.warning_has.is_empty() {
        assert!(answer.warnings.is_empty(), "{name}: {warnings}");
    }
    assert_eq!(
        composed.event.as_ref().map(|(r, _)| *r),
        row.event,
        "{name}"
    );
    let pinned: Vec<String> = answer
        .patch
        .iter()
        .filter_map(|op| op["value"].as_str().map(str::to_string))
        .collect();
    let want: Vec<String> = row
        .pinned
        .iter()
        .map(|image| format!("{image}@{DIGEST}"))
        .collect();
    assert_eq!(pinned, want, "{name}");
}

#[test]
fn every_branch_of_the_answer() {
    let none = BreakglassAsk::None;
    let disabled = BreakglassAsk::Disabled;
    let both_verified = [
        outcome("r.example/app:v1", Fared::Verified),
        outcome("r.example/tool:v2", Fared::Verified),
    ];
    let one_denied = [
        outcome("r.example/app:v1", Fared::Verified),
        outcome("r.example/tool:v2", Fared::Denied),
    ];
    let both_denied = [
        outcome("r.example/app:v1", Fared::Denied),
        outcome("r.example/tool:v2", Fared::Denied),
    ];
    let dry_run_failed = [
        outcome("r.example/app:v1", Fared::DryRunFailed),
        outcome("r.example/tool:v2", Fared::Ungoverned),
    ];
    let ungoverned = [
        outcome("r.example/app:v1", Fared::Ungoverned),
        outcome("r.example/tool:v2", Fared::Ungoverned),
    ];
    let authorized = BreakglassAnswer::Authorized {
        reason: "INC-7".into(),
        user: "user \"alice\"".into(),
        by: Authority::Rbac,
    };
    let refused = BreakglassAnswer::Refused {
        reason: "INC-7".into(),
        why: "user \"mallory\" may not use signet.dev/breakglass".into(),
    };

    let rows: Vec<(Row, Case<'_>)> = vec![
        (
            Row {
                name: "not a workload",
                ..BASE
            },
            Case::NotAWorkload,
        ),
        (
            Row {
                name: "unreadable",
                allowed: false,
                result: AdmissionResult::Error,
                audit_result: Some("error"),
                message_has: &["cannot read the images of this Pod", "no image"],
                ..BASE
            },
            Case::Unreadable {
                kind: "Pod",
                error: "no image".into(),
            },
        ),
        (
            Row {
                name: "unreadable at mutate",
                endpoint: Endpoint::Mutate,
                result: AdmissionResult::Error,
                ..BASE
            },
            Case::Unreadable {
                kind: "Pod",
                error: "no image".into(),
            },
        ),
        (
            Row {
                name: "exempt namespace",
                audit_result: Some("exempt-namespace"),
                ..BASE
            },
            Case::Exempt,
        ),
        (
            Row {
                name: "overloaded",
                allowed: false,
                result: AdmissionResult::Error,
                message_has: &["within 8s", "too many admissions"],
                ..BASE
            },
            Case::Overloaded {
                deadline: std::time::Duration::from_secs(8),
            },
        ),
        (
            Row {
                name: "breakglass authorized",
                result: AdmissionResult::Breakglass,
                audit_result: Some("breakglass"),
                warning_has: &["without verification (INC-7)"],
                event: Some(EventReason::Breakglass),
                ..BASE
            },
            Case::Breakglass(&authorized),
        ),
        (
            Row {
                name: "breakglass authorized, server dry run: no event",
                dry_run: true,
                result: AdmissionResult::Breakglass,
                audit_result: Some("breakglass"),
                warning_has: &["without verification"],
                ..BASE
            },
            Case::Breakglass(&authorized),
        ),
        (
            Row {
                name: "breakglass refused",
                allowed: false,
                result: AdmissionResult::Denied,
                audit_result: Some("breakglass-refused"),
                message_has: &["signet.dev/breakglass (INC-7) refused", "mallory"],
                event: Some(EventReason::FailedAdmission),
                ..BASE
            },
            Case::Breakglass(&refused),
        ),
        (
            Row {
                name: "breakglass refused at mutate: no pin, no denial",
                endpoint: Endpoint::Mutate,
                result: AdmissionResult::Denied,
                ..BASE
            },
            Case::Breakglass(&refused),
        ),
        (
            Row {
                name: "all verified",
                audit_result: Some("allowed"),
                ..BASE
            },
            Case::Judged {
                ask: &none,
                outcomes: &both_verified,
            },
        ),
        (
            Row {
                name: "breakglass disabled: warned, judged",
                audit_result: Some("allowed"),
                warning_has: &["breakglass is disabled"],
                ..BASE
            },
            Case::Judged {
                ask: &disabled,
                outcomes: &both_verified,
            },
        ),
        (
            Row {
                name: "one image denied",
                allowed: false,
                result: AdmissionResult::Denied,
                audit_result: Some("denied"),
                message_has: &["r.example/tool:v2: policy prod"],
                event: Some(EventReason::FailedAdmission),
                ..BASE
            },
            Case::Judged {
                ask: &none,
                outcomes: &one_denied,
            },
        ),
        (
            Row {
                name: "several failing images: one line each",
                allowed: false,
                result: AdmissionResult::Denied,
                audit_result: Some("denied"),
                message_has: &["r.example/app:v1: policy prod: no signature\nr.example/tool:v2"],
                event: Some(EventReason::FailedAdmission),
                ..BASE
            },
            Case::Judged {
                ask: &none,
                outcomes: &both_denied,
            },
        ),
        (
            Row {
                name: "denied under server dry run: no event",
                dry_run: true,
                allowed: false,
                result: AdmissionResult::Denied,
                audit_result: Some("denied"),
                message_has: &["r.example/tool:v2"],
                ..BASE
            },
            Case::Judged {
                ask: &none,
                outcomes: &one_denied,
            },
        ),
        (
            Row {
                name: "DryRun policy failed",
                result: AdmissionResult::Dryrun,
                audit_result: Some("dryrun"),
                warning_has: &["DryRun, not enforced"],
                event: Some(EventReason::DryRunAdmission),
                ..BASE
            },
            Case::Judged {
                ask: &none,
                outcomes: &dry_run_failed,
            },
        ),
        (
            Row {
                name: "no policy matches, --no-match allow",
                audit_result: Some("allowed"),
                ..BASE
            },
            Case::Judged {
                ask: &none,
                outcomes: &ungoverned,
            },
        ),
        (
            Row {
                name: "mutate pins verified images",
                endpoint: Endpoint::Mutate,
                pinned: &["r.example/app:v1", "r.example/tool:v2"],
                ..BASE
            },
            Case::Judged {
                ask: &none,
                outcomes: &both_verified,
            },
        ),
        (
            Row {
                name: "mutate pins what Enforce passed although a DryRun policy failed",
                endpoint: Endpoint::Mutate,
                pinned: &["r.example/app:v1"],
                ..BASE
            },
            Case::Judged {
                ask: &none,
                outcomes: &dry_run_failed,
            },
        ),
        (
            Row {
                name: "mutate pins nothing denied and never denies",
                endpoint: Endpoint::Mutate,
                pinned: &["r.example/app:v1"],
                ..BASE
            },
            Case::Judged {
                ask: &none,
                outcomes: &one_denied,
            },
        ),
        (
            Row {
                name: "mutate off",
                endpoint: Endpoint::Mutate,
                mutate: false,
                ..BASE
            },
            Case::Judged {
                ask: &none,
                outcomes: &both_verified,
            },
        ),
    ];
    for (row, case) in &rows {
        check(row, case);
    }
}

#[test]
fn audit_values_are_cut_on_a_character_boundary() {
    let mut answer = Answer::default();
    set_audit(&mut answer, "k", "é".repeat(2000));
    let value = &answer.audit_annotations["k"];
    assert!(
        value.len() <= MAX_AUDIT_VALUE && value.ends_with("..."),
        "{}",
        value.len()
    );
}
