//! `crds/signet.dev.yaml` is generated from `src/crd`; this test fails when the committed file no
//! longer matches what the code renders.

// Helpers outside `#[test]` functions fail by panicking, as tests do (clippy.toml covers only
// `#[test]` code).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

const COMMITTED: &str = include_str!("../crds/signet.dev.yaml");
const REGENERATE: &str = "cargo run -- crd > crds/signet.dev.yaml";

#[test]
fn committed_crds_match_the_code() {
    let rendered = signet::crd::render_all_crds().expect("the CRDs render");
    if rendered != COMMITTED {
        let line = rendered
            .lines()
            .zip(COMMITTED.lines())
            .position(|(a, b)| a != b)
            .map_or_else(
                || rendered.lines().count().min(COMMITTED.lines().count()) + 1,
                |i| i + 1,
            );
        panic!(
            "crds/signet.dev.yaml is out of date with src/crd (first difference at line {line}); regenerate it with:\n\n    {REGENERATE}\n"
        );
    }
}
