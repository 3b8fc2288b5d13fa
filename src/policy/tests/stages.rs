//! The pure questions of the staged signature read: which store first, from the attestors'
//! kinds, and when a verdict on part of the signatures is final.

use super::certificate_keys::{indent, root_pem};
use super::*;
use crate::policy::ReadOrder;
use crate::registry::SignatureSource;

const IMAGE: &str = "r.io/app:v1";

fn anchors_attestor(name: &str) -> String {
    format!(
        "apiVersion: signet.dev/v1alpha1\nkind: Attestor\nmetadata: {{name: {name}, generation: 1}}\nspec:\n  keys:\n  - id: ca\n    certificates: |\n{}",
        indent(&root_pem("Release Root", 2040))
    )
}

fn order(world: World) -> ReadOrder {
    let compiled = world.compile(NoMatch::Allow);
    let image = ImageRef::parse(IMAGE).unwrap();
    compiled
        .snapshot
        .read_order(&compiled.snapshot.governing("ns", &image))
}

#[test]
fn the_store_read_first_follows_the_attestors_kinds() {
    let key = TestKey::ec();
    let sig_first = ReadOrder::Staged {
        first: SignatureSource::SigTag,
    };
    // A key can be satisfied by a `.sig` signature: that store first.
    let keyed = World::default()
        .attestor("release", &[(None, &key)])
        .cluster_policy("p", "{images: [r.io/**], attestors: [release]}");
    assert_eq!(order(keyed), sig_first);
    // `required: 1` of a key and an anchors attestor: the key alone can satisfy it.
    let either = World::default()
        .attestor("release", &[(None, &key)])
        .attestor_yaml(&anchors_attestor("notary"))
        .cluster_policy(
            "p",
            "{images: [r.io/**], attestors: [release, notary], required: 1}",
        );
    assert_eq!(order(either), sig_first);
    // Anchors only: only a Notation signature (a referrer) can count.
    let anchors = World::default()
        .attestor_yaml(&anchors_attestor("notary"))
        .cluster_policy("p", "{images: [r.io/**], attestors: [notary]}");
    assert_eq!(
        order(anchors),
        ReadOrder::Staged {
            first: SignatureSource::Referrers
        }
    );
    // `required: 2` of a key and anchors: neither store alone can satisfy it.
    let both = World::default()
        .attestor("release", &[(None, &key)])
        .attestor_yaml(&anchors_attestor("notary"))
        .cluster_policy(
            "p",
            "{images: [r.io/**], attestors: [release, notary], required: 2}",
        );
    assert_eq!(order(both), ReadOrder::Together);
    // Two policies, one per kind: both stores.
    let split = World::default()
        .attestor("release", &[(None, &key)])
        .attestor_yaml(&anchors_attestor("notary"))
        .cluster_policy("keys", "{images: [r.io/**], attestors: [release]}")
        .cluster_policy("anchors", "{images: [r.io/**], attestors: [notary]}");
    assert_eq!(order(split), ReadOrder::Together);
    // A policy that fails whatever the signatures (unknown attestor): read everything, so its
    // denial is the one a full read gives.
    let broken = World::default()
        .attestor("release", &[(None, &key)])
        .cluster_policy("p", "{images: [r.io/**], attestors: [release, ghost]}");
    assert_eq!(order(broken), ReadOrder::Together);
    assert_eq!(ReadOrder::for_keys(true, true), sig_first);
    assert_eq!(
        ReadOrder::for_keys(false, true).first_read(),
        &[SignatureSource::Referrers]
    );
    assert_eq!(
        ReadOrder::for_keys(false, false).first_read(),
        &SignatureSource::ALL
    );
}

#[test]
fn a_verdict_is_settled_only_when_every_governing_policy_passed() {
    let release = TestKey::ec();
    let qa = TestKey::ec();
    let world = World::default()
        .attestor("release", &[(None, &release)])
        .attestor("qa", &[(None, &qa)])
        .cluster_policy("one", "{images: [r.io/**], attestors: [release]}")
        .cluster_policy(
            "trial",
            "{images: [r.io/**], attestors: [qa], mode: DryRun}",
        );
    let snapshot = world.compile(NoMatch::Allow).snapshot;
    let by_release = release.sign(IMAGE, D1, SignatureType::Default);
    let by_qa = qa.sign(IMAGE, D1, SignatureType::Default);
    // Allowed, but the DryRun policy failed: more signatures could lift its warning.
    let partial = evaluate(&snapshot, "ns", IMAGE, &found(D1, vec![by_release.clone()]));
    assert!(partial.allowed && !partial.settled(), "{partial:#?}");
    let full = accepts(
        &snapshot,
        "ns",
        IMAGE,
        &found(D1, vec![by_release.clone(), by_qa.clone()]),
    );
    assert!(full.settled());
    // Settled stays settled, and allowed, whatever else is read after it.
    let junk = TestKey::ec().sign(IMAGE, D2, SignatureType::Default);
    let more = accepts(
        &snapshot,
        "ns",
        IMAGE,
        &found(D1, vec![by_release, by_qa, junk]),
    );
    assert!(more.settled());
    // Nothing governs: nothing to settle (and nothing read).
    let other = evaluate(&snapshot, "ns", "elsewhere.io/app:v1", &found(D1, vec![]));
    assert!(other.allowed && !other.settled());
}
