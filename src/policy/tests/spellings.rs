//! Security review findings 3 and 5 at the engine's edge: no spelling of a governed image, and no
//! tag on a digest-pinned reference, takes it out of the policies written for it (under
//! `--no-match allow`, an ungoverned image is admitted without a registry look-up).

use super::*;

fn world(release: &TestKey) -> World {
    World::default()
        .attestor("release", &[(Some("kms"), release)])
        .cluster_policy(
            "prod",
            "{images: [registry.example.com/prod/**], exclude: [registry.example.com/prod/*-debug], attestors: [release]}",
        )
        .cluster_policy("hub", "{images: [docker.io/library/*], attestors: [release]}")
        .cluster_policy(
            "written-oddly",
            "{images: ['Registry.Example.COM:443/odd/**'], attestors: [release]}",
        )
}

fn governing(snapshot: &Snapshot, image: &str) -> Vec<String> {
    snapshot
        .matching_policies("web", &ImageRef::parse(image).unwrap())
        .iter()
        .map(|p| p.name().to_string())
        .collect()
}

#[test]
fn every_spelling_of_a_governed_registry_is_governed() {
    let release = TestKey::ec();
    let compiled = world(&release).compile(NoMatch::Allow);
    let snapshot = &compiled.snapshot;
    for (image, policy) in [
        ("registry.example.com/prod/x", "prod"),
        ("REGISTRY.EXAMPLE.COM/prod/x", "prod"),
        ("registry.example.com:443/prod/x", "prod"),
        ("Registry.Example.Com:443/prod/x:v1", "prod"),
        ("registry-1.docker.io/library/x", "hub"),
        ("DOCKER.IO/library/x", "hub"),
        ("index.docker.io/x", "hub"),
        ("x", "hub"),
        ("registry.example.com/odd/x", "written-oddly"),
        ("REGISTRY.example.com:443/odd/team/x", "written-oddly"),
    ] {
        assert_eq!(governing(snapshot, image), [policy], "{image}");
        rejects(snapshot, "web", image, &found(D1, vec![]), "no signature");
    }
}

#[test]
fn a_tag_never_exempts_a_digest_pinned_image() {
    let release = TestKey::ec();
    let compiled = world(&release).compile(NoMatch::Allow);
    let snapshot = &compiled.snapshot;
    let evil = format!("registry.example.com/prod/evil:x-debug@{D1}");
    // Before the fix, `*` ran into the tag and the tag counted: `exclude` exempted this.
    assert_eq!(governing(snapshot, &evil), ["prod"]);
    rejects(snapshot, "web", &evil, &found(D1, vec![]), "no signature");
    // Without a digest the tag is not part of the repository either: `*` stops at `:`.
    assert_eq!(
        governing(snapshot, "registry.example.com/prod/evil:x-debug"),
        ["prod"]
    );
    // The exclusion still works on what it names: the repository.
    assert!(
        governing(
            snapshot,
            &format!("registry.example.com/prod/tool-debug:v1@{D1}")
        )
        .is_empty()
    );
    assert!(governing(snapshot, "registry.example.com/prod/tool-debug").is_empty());
}

#[test]
fn a_tag_never_brings_a_digest_pinned_image_under_a_tag_glob() {
    let release = TestKey::ec();
    let compiled = World::default()
        .attestor("release", &[(Some("kms"), &release)])
        .cluster_policy(
            "v-tags",
            "{images: ['ghcr.io/org/app:v*'], attestors: [release]}",
        )
        .compile(NoMatch::Allow);
    let snapshot = &compiled.snapshot;
    assert_eq!(governing(snapshot, "ghcr.io/org/app:v1"), ["v-tags"]);
    assert!(governing(snapshot, "ghcr.io/org/app:latest").is_empty());
    // Pinned: the repository governs, and `ghcr.io/org/app` alone is not covered by a tag glob.
    assert!(governing(snapshot, &format!("ghcr.io/org/app:v1@{D1}")).is_empty());
}
