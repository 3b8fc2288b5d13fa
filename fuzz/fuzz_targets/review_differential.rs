//! The AdmissionReview readers on any bytes: the rules of `review_check.rs` (the one-pass reader
//! against the serde_json reference, and the workload reader against the general one), explored
//! from raw bytes, so mostly on broken JSON. `review_structured` holds the same rules on
//! valid-looking reviews.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "review_check.rs"]
mod review_check;

fuzz_target!(|data: &[u8]| {
    review_check::check(data);
});
