//! `ImageRef::parse` and `Glob` on arbitrary text: no panic; a parsed reference prints to text
//! that parses back to the same value, rebuilds from its parts, and is matched by the glob of
//! its own repository.
#![no_main]

use libfuzzer_sys::fuzz_target;
use signet::reference::{Glob, ImageRef};

fuzz_target!(|input: &str| {
    if let Ok(image) = ImageRef::parse(input) {
        check_image(input, &image);
    }
    if let Ok(image) = ImageRef::parse_exact(input) {
        let again = ImageRef::parse_exact(&image.to_string())
            .unwrap_or_else(|e| panic!("{input:?}: parse_exact of {image} fails: {e}"));
        assert_eq!(image, again, "{input:?}: parse_exact does not round-trip");
    }

    // `GLOB IMAGE` (white space belongs to neither); without a space, the input is both.
    let (glob_text, image_text) = input.split_once(' ').unwrap_or((input, input));
    if let Ok(glob) = Glob::new(glob_text) {
        let again = Glob::new(glob.as_str())
            .unwrap_or_else(|e| panic!("{glob_text:?}: canonical glob {glob} fails: {e}"));
        assert_eq!(
            glob, again,
            "{glob_text:?}: canonical form is not canonical"
        );
        assert!(glob.as_str().starts_with(&glob.literal_prefix()));
        if let Ok(image) = ImageRef::parse(image_text) {
            let matched = glob.matches_image(&image);
            // A push match is the admission match plus the tag of a digest-pinned reference.
            assert!(!matched || glob.matches_push(&image));
            if matched {
                assert!(
                    image.repo_path().starts_with(&glob.literal_prefix())
                        || image.repo_with_tag().starts_with(&glob.literal_prefix()),
                    "{glob} matches {image} without its literal prefix"
                );
            }
        }
    }
});

fn check_image(input: &str, image: &ImageRef) {
    let text = image.to_string();
    let again = ImageRef::parse(&text)
        .unwrap_or_else(|e| panic!("{input:?} -> {text:?} does not parse again: {e}"));
    assert_eq!(
        *image, again,
        "{input:?} -> {text:?} round-trips to another value"
    );

    let rebuilt = ImageRef::from_parts(
        image.registry(),
        image.repository(),
        image.tag(),
        image.digest(),
    )
    .unwrap_or_else(|e| panic!("{input:?}: from_parts of {image} fails: {e}"));
    assert_eq!(
        *image, rebuilt,
        "{input:?}: from_parts rebuilds another value"
    );

    let own = Glob::new(&image.repo_path())
        .unwrap_or_else(|e| panic!("{input:?}: {} is not a glob: {e}", image.repo_path()));
    assert!(own.matches_image(image), "{own} does not match {image}");
    assert!(Glob::new("**").is_ok_and(|g| g.matches_image(image)));
    let _ = image.to_oci();
}
