//! An AdmissionReview body as the webhook reads it: `parse_review`, then `workload_of` and the
//! images it lists. No panic; every image pointer is a JSON pointer into the object; an answer
//! carrying the request's own strings (uid, images, container names) is JSON that reads back to
//! them.
#![no_main]

use std::borrow::Cow;

use libfuzzer_sys::fuzz_target;
use signet::admission::images::{distinct_images, workload_of};
use signet::admission::review::{Answer, parse_review};
use signet::reference::ImageRef;

fuzz_target!(|data: &[u8]| {
    let Ok(request) = parse_review(data) else {
        return;
    };
    let Ok(Some(workload)) = workload_of(&request) else {
        return;
    };
    let answer = Answer {
        uid: request.uid.to_string(),
        allowed: workload.images.len() % 2 == 0,
        message: workload.images.first().map(|image| image.container.to_string()),
        warnings: workload.images.iter().map(|image| image.image.to_string()).collect(),
        audit_annotations: workload
            .images
            .iter()
            .map(|image| {
                (
                    Cow::Owned(image.container.to_string()),
                    Cow::Owned(image.image.to_string()),
                )
            })
            .collect(),
        patch: Vec::new(),
    };
    let body = answer.to_json().expect("an answer is always written");
    let read: serde_json::Value = serde_json::from_slice(&body).expect("the answer is JSON");
    assert_eq!(read["response"]["uid"].as_str(), Some(answer.uid.as_str()));
    assert_eq!(read["response"]["warnings"].as_array().map_or(0, Vec::len), answer.warnings.len());
    for image in &workload.images {
        let pointer = workload.pointer_of(image);
        assert!(pointer.starts_with('/'), "{pointer:?}");
        let _ = ImageRef::parse(&image.image);
    }
    let distinct = distinct_images(&workload);
    assert!(distinct.len() <= workload.images.len());
});
