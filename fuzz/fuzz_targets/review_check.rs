//! The rules every AdmissionReview fuzz target holds the readers to, in one place so that the
//! byte-level target (`review_differential`) and the structured one (`review_structured`) assert
//! exactly the same thing. Pulled into each target with `#[path = "review_check.rs"] mod`.
//!
//! The one-pass AdmissionReview reader against the serde_json reference: for every body, the same
//! request, or both refuse with the same kind of error. The one refusal allowed to differ is the
//! documented one (`review_scan.rs`): a structure written as a JSON array, which serde's derive reads
//! by position and the one-pass reader refuses (never the other way round).
//!
//! And the workload reader (`review_scan_workload.rs`) against the general one: where it reads a
//! body at all, the same request and the same workload as `parse_review` and `workload_of`.

use signet::admission::images::workload_of;
use signet::admission::review::{
    ReviewError, parse_review, parse_review_reference, parse_workload_review_owned,
};
use signet::admission::review_scan::ARRAY_FORM;

/// What the readers made of one body (for a target that counts; the check itself is the asserts).
#[allow(dead_code)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Outcome {
    /// `parse_review` read it as a review.
    pub review: bool,
    /// The workload reader read it (and agreed with the general reader).
    pub workload: bool,
}

/// Reads `data` with every reader and panics where they disagree.
pub fn check(data: &[u8]) -> Outcome {
    let new = parse_review(data);
    let reference = parse_review_reference(data);
    match (&new, &reference) {
        (Ok(new), Ok(reference)) => assert_eq!(new, reference),
        (Err(new), Err(reference)) => {
            if !matches!(new, ReviewError::NotAReview(m) if m.contains(ARRAY_FORM)) {
                assert_eq!(
                    std::mem::discriminant(new),
                    std::mem::discriminant(reference),
                    "{new:?} vs {reference:?}"
                );
            }
        }
        (Err(ReviewError::NotAReview(m)), Ok(_)) if m.contains(ARRAY_FORM) => {}
        _ => panic!("one-pass {new:?} vs reference {reference:?}"),
    }
    let mut outcome = Outcome {
        review: new.is_ok(),
        workload: false,
    };
    if let Some((request, workload)) = parse_workload_review_owned(data) {
        let Ok(mut general) = new else {
            panic!("the workload reader read a body the general reader refuses: {new:?}");
        };
        assert_eq!(workload_of(&general), Ok(Some(workload)));
        general.object = None;
        assert_eq!(general, request);
        outcome.workload = true;
    }
    outcome
}
