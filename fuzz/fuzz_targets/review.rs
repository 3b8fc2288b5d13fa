//! An AdmissionReview body as the webhook reads it: `parse_review`, then `workload_of` and the
//! images it lists. No panic; every image pointer is a JSON pointer into the object.
#![no_main]

use libfuzzer_sys::fuzz_target;
use signet::admission::images::{distinct_images, workload_of};
use signet::admission::review::parse_review;
use signet::reference::ImageRef;

fuzz_target!(|data: &[u8]| {
    let Ok(request) = parse_review(data) else {
        return;
    };
    let Ok(Some(workload)) = workload_of(&request) else {
        return;
    };
    for image in &workload.images {
        assert!(image.pointer.starts_with('/'), "{:?}", image.pointer);
        let _ = ImageRef::parse(&image.image);
    }
    let distinct = distinct_images(&workload);
    assert!(distinct.len() <= workload.images.len());
});
