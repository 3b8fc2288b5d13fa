//! The simple-signing payload and the signature manifest parsers on arbitrary bytes: no panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use signet::signature::{parse_manifest_layers, parse_payload, parse_signature_manifest};

fuzz_target!(|data: &[u8]| {
    if let Ok(payload) = parse_payload(data) {
        assert_eq!(
            payload.manifest_digest,
            payload.manifest_digest.to_ascii_lowercase()
        );
    }
    if let Ok(layers) = parse_signature_manifest(data) {
        let all = parse_manifest_layers(data).expect("the same bytes parsed as a manifest");
        assert!(layers.len() <= all.len());
        for layer in &layers {
            let _ = layer.signature();
        }
    }
});
