//! A registry notification body as the signer reads it: the envelope, each event classified,
//! then the identity the signer builds for a push. No panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use signet::reference::ImageRef;
use signet::signature::is_artifact_tag;
use signet::signer::event::{Classified, is_referrer, parse_events};

fuzz_target!(|data: &[u8]| {
    let _ = is_referrer(data);
    let Ok(events) = parse_events(data) else {
        return;
    };
    for event in events {
        match event {
            Classified::Sign(push) => {
                assert_eq!(push.digest, push.digest.to_ascii_lowercase());
                let _ = ImageRef::from_parts(
                    &push.host,
                    &push.repository,
                    push.tag.as_deref(),
                    Some(&push.digest),
                );
            }
            Classified::SignatureTag(push) => {
                // Only signature tags are compared with what the signer wrote, never signed.
                let tag = push.tag.as_deref().unwrap_or_default();
                assert!(is_artifact_tag(tag), "signature tag {tag:?}");
            }
            Classified::Ignore(why) => {
                let _ = why.label();
                let _ = why.to_string();
            }
        }
    }
});
