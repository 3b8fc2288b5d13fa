//! The table: one world of attestors, cluster and namespaced policies and namespaces, and the
//! verdict expected for each (namespace, image, signatures) case.

use super::*;
use SignatureType::{Default, Simple};

/// The keys of the world: `release` is an RSA-PSS KMS key, `qa` rotates from `qa-2024` to
/// `qa-2025`, `ops` has no id (verdicts show its fingerprint), `stranger` is trusted by nobody.
pub(super) struct Keys {
    pub(super) release: TestKey,
    pub(super) qa_old: TestKey,
    pub(super) qa_new: TestKey,
    pub(super) sec: TestKey,
    pub(super) ops: TestKey,
    pub(super) stranger: TestKey,
}

impl Keys {
    pub(super) fn new() -> Self {
        Keys {
            release: TestKey::rsa_pss(),
            qa_old: TestKey::ec(),
            qa_new: TestKey::ec(),
            sec: TestKey::ec(),
            ops: TestKey::ec(),
            stranger: TestKey::ec(),
        }
    }
}

pub(super) fn world(k: &Keys) -> World {
    World::default()
        .attestor("release", &[(Some("kms-4a2ef103"), &k.release)])
        .attestor("qa", &[(Some("qa-2024"), &k.qa_old), (Some("qa-2025"), &k.qa_new)])
        .attestor("sec", &[(Some("sec-1"), &k.sec)])
        .attestor("ops", &[(None, &k.ops)])
        .attestor_yaml(
            "apiVersion: signet.dev/v1alpha1\nkind: Attestor\nmetadata: {name: broken}\nspec:\n  keys:\n  - {id: bad-1, algorithm: ED25519, publicKey: not a key}\n",
        )
        .cluster_policy(
            "prod-images",
            "{images: [registry.example.com/prod/**], exclude: [registry.example.com/prod/sandbox/**], attestors: [release]}",
        )
        .cluster_policy(
            "two-of-three",
            "{images: [r.io/multi/**], attestors: [release, qa, sec], required: 2}",
        )
        .cluster_policy("both-a", "{images: [r.io/both/**], attestors: [release]}")
        .cluster_policy("both-b", "{images: [r.io/both/**], attestors: [sec]}")
        .cluster_policy(
            "mirrored",
            "{images: [mirror.io/**], attestors: [release], signatureType: Simple}",
        )
        .cluster_policy(
            "payments-team",
            "{images: [r.io/teams/**], attestors: [sec], namespaceSelector: {matchExpressions: [{key: team, operator: In, values: [payments]}, {key: tier, operator: NotIn, values: [dev]}]}}",
        )
        .cluster_policy(
            "labelled",
            "{images: [r.io/labelled/**], attestors: [ops], namespaceSelector: {matchLabels: {tier: prod}}}",
        )
        .cluster_policy("trial", "{images: [r.io/dry/**], attestors: [sec], mode: DryRun}")
        .cluster_policy("base", "{images: [r.io/layered/**], attestors: [release]}")
        .cluster_policy(
            "ghost-attestor",
            "{images: [r.io/ghost/**], attestors: [release, ghost], required: 1}",
        )
        .cluster_policy("bad-key", "{images: [r.io/badkey/**], attestors: [broken]}")
        .cluster_policy(
            "bad-glob",
            "{images: ['r.io/bad glob', 'r.io/badglob/**'], attestors: [release]}",
        )
        .cluster_policy(
            "bad-selector",
            "{images: [r.io/badsel/**], attestors: [release], namespaceSelector: {matchExpressions: [{key: team, operator: Matches, values: [x]}]}}",
        )
        .cluster_policy("versions", "{images: ['ghcr.io/org/app:v*'], attestors: [release]}")
        .cluster_policy("official", "{images: ['docker.io/library/*'], attestors: [ops]}")
        .policy("payments", "layer-sec", "{images: [r.io/layered/**], attestors: [sec]}")
        .policy(
            "payments",
            "layer-trial",
            "{images: [r.io/layered/**], attestors: [qa], mode: DryRun}",
        )
        .namespace("payments", &[("team", "payments"), ("tier", "prod")])
        .namespace("payments-dev", &[("team", "payments"), ("tier", "dev")])
        .namespace("web", &[("team", "web")])
}

/// What a case expects.
enum Want {
    /// Allowed without warning; these policies applied (in verdict order).
    Allow(&'static [&'static str]),
    /// Denied; the denial message contains this.
    Deny(&'static str),
    /// Allowed with a DryRun warning that contains this.
    Warn(&'static str),
}

struct Case {
    name: &'static str,
    ns: &'static str,
    image: String,
    lookup: Lookup,
    no_match: NoMatch,
    want: Want,
}

fn case(name: &'static str, ns: &'static str, image: &str, lookup: Lookup, want: Want) -> Case {
    Case {
        name,
        ns,
        image: image.to_string(),
        lookup,
        no_match: NoMatch::Allow,
        want,
    }
}

fn cases(k: &Keys) -> Vec<Case> {
    use Want::{Allow, Deny, Warn};
    let prod = "registry.example.com/prod/app:v1";
    let prod_by_digest = format!("registry.example.com/prod/app@{D1}");
    let failed = Lookup::failed(crate::registry::RegistryError::Unreachable {
        host: "registry.example.com".into(),
        cause: "connection refused".into(),
    });
    let mut cases = vec![
        case(
            "signed release image",
            "web",
            prod,
            found(D1, vec![k.release.sign(prod, D1, Default)]),
            Allow(&["prod-images"]),
        ),
        case(
            "no signature at all",
            "web",
            prod,
            found(D1, vec![]),
            Deny("policy prod-images: 0 of 1 required attestors: release: no signature"),
        ),
        case(
            "signed by an untrusted key",
            "web",
            prod,
            found(D1, vec![k.stranger.sign(prod, D1, Default)]),
            Deny("release: no signature by key kms-4a2ef103 for this digest"),
        ),
        case(
            "signature copied from another digest",
            "web",
            prod,
            found(D1, vec![k.release.sign(prod, D2, Default)]),
            Deny("release: signature for another digest (sha256:2222"),
        ),
        case(
            "other tag of the same digest (Default binds the tag)",
            "web",
            "registry.example.com/prod/app:v2",
            found(D1, vec![k.release.sign(prod, D1, Default)]),
            Deny("release: tag \"v2\" not bound"),
        ),
        case(
            "the most telling rejection wins",
            "web",
            prod,
            found(
                D1,
                vec![
                    k.stranger.sign(prod, D1, Default),
                    k.release.sign(prod, D2, Default),
                ],
            ),
            Deny("release: signature for another digest"),
        ),
        case(
            "unsigned layer",
            "web",
            prod,
            found(D1, vec![StoredSignature::cosign(b"{}".to_vec(), None)]),
            Deny("release: layer carries no signature"),
        ),
        case(
            "excluded path is not governed",
            "web",
            "registry.example.com/prod/sandbox/tool:v1",
            found(D1, vec![]),
            Allow(&[]),
        ),
        case(
            "digest-only reference under a Default policy",
            "web",
            &prod_by_digest,
            found(D1, vec![k.release.sign(prod, D1, Default)]),
            Allow(&["prod-images"]),
        ),
        case(
            "digest-only reference, signature for another repository",
            "web",
            &prod_by_digest,
            found(
                D1,
                vec![
                    k.release
                        .sign("registry.example.com/prod/evil:v1", D1, Default),
                ],
            ),
            Deny("release: signature for another repository (registry.example.com/prod/evil)"),
        ),
        case(
            "Default policy, only a Simple signature, tag reference",
            "web",
            prod,
            found(D1, vec![k.release.sign(prod, D1, Simple)]),
            Deny(
                "release: signed without a tag binding, as cosign signs: use signatureType: Simple to accept it",
            ),
        ),
        case(
            "2 of 3: release and qa's new key",
            "web",
            "r.io/multi/app:v1",
            found(
                D1,
                vec![
                    k.release.sign("r.io/multi/app:v1", D1, Default),
                    k.qa_new.sign("r.io/multi/app:v1", D1, Default),
                ],
            ),
            Allow(&["two-of-three"]),
        ),
        case(
            "2 of 3: qa's old key still counts",
            "web",
            "r.io/multi/app:v1",
            found(
                D1,
                vec![
                    k.qa_old.sign("r.io/multi/app:v1", D1, Default),
                    k.sec.sign("r.io/multi/app:v1", D1, Default),
                ],
            ),
            Allow(&["two-of-three"]),
        ),
        case(
            "2 of 3: one attestor is not enough",
            "web",
            "r.io/multi/app:v1",
            found(D1, vec![k.sec.sign("r.io/multi/app:v1", D1, Default)]),
            Deny(
                "policy two-of-three: 1 of 2 required attestors: release: no signature by key kms-4a2ef103 for this digest; qa: no signature by key qa-2024 or qa-2025 for this digest",
            ),
        ),
        case(
            "2 of 3: both qa keys are still one attestor",
            "web",
            "r.io/multi/app:v1",
            found(
                D1,
                vec![
                    k.qa_old.sign("r.io/multi/app:v1", D1, Default),
                    k.qa_new.sign("r.io/multi/app:v1", D1, Default),
                ],
            ),
            Deny("1 of 2 required attestors"),
        ),
        case(
            "2 of 3: all three",
            "web",
            "r.io/multi/app:v1",
            found(
                D1,
                vec![
                    k.release.sign("r.io/multi/app:v1", D1, Default),
                    k.qa_new.sign("r.io/multi/app:v1", D1, Default),
                    k.sec.sign("r.io/multi/app:v1", D1, Default),
                ],
            ),
            Allow(&["two-of-three"]),
        ),
        case(
            "two matching policies, one fails",
            "web",
            "r.io/both/app:v1",
            found(D1, vec![k.release.sign("r.io/both/app:v1", D1, Default)]),
            Deny(
                "r.io/both/app:v1 (sha256:1111111111111111111111111111111111111111111111111111111111111111): policy both-b: 0 of 1 required attestors: sec: no signature by key sec-1 for this digest",
            ),
        ),
        case(
            "two matching policies, both pass",
            "web",
            "r.io/both/app:v1",
            found(
                D1,
                vec![
                    k.release.sign("r.io/both/app:v1", D1, Default),
                    k.sec.sign("r.io/both/app:v1", D1, Default),
                ],
            ),
            Allow(&["both-a", "both-b"]),
        ),
        case(
            "Simple policy satisfied by a Default signature",
            "web",
            "mirror.io/app:v1",
            found(D1, vec![k.release.sign("mirror.io/app:v1", D1, Default)]),
            Allow(&["mirrored"]),
        ),
        case(
            "Simple policy, signature made at the source registry",
            "web",
            "mirror.io/app:v9",
            found(
                D1,
                vec![
                    k.release
                        .sign("registry.example.com/prod/app:v1", D1, Simple),
                ],
            ),
            Allow(&["mirrored"]),
        ),
        case(
            "Simple policy still binds the digest",
            "web",
            "mirror.io/app:v1",
            found(D1, vec![k.release.sign("mirror.io/app:v1", D2, Simple)]),
            Deny("another digest"),
        ),
        case(
            "matchExpressions select payments",
            "payments",
            "r.io/teams/app:v1",
            found(D1, vec![]),
            Deny("policy payments-team: 0 of 1 required attestors: sec: no signature"),
        ),
        case(
            "matchExpressions: signed in payments",
            "payments",
            "r.io/teams/app:v1",
            found(D1, vec![k.sec.sign("r.io/teams/app:v1", D1, Default)]),
            Allow(&["payments-team"]),
        ),
        case(
            "matchExpressions: NotIn excludes the dev tier",
            "payments-dev",
            "r.io/teams/app:v1",
            found(D1, vec![]),
            Allow(&[]),
        ),
        case(
            "matchExpressions: undescribed namespace has no labels",
            "nowhere",
            "r.io/teams/app:v1",
            found(D1, vec![]),
            Allow(&[]),
        ),
        case(
            "matchLabels: other namespace not selected",
            "web",
            "r.io/labelled/app:v1",
            found(D1, vec![]),
            Allow(&[]),
        ),
        case(
            "matchLabels, key without id shows its fingerprint",
            "payments",
            "r.io/labelled/app:v1",
            found(
                D1,
                vec![k.stranger.sign("r.io/labelled/app:v1", D1, Default)],
            ),
            Deny("ops: no signature by key sha256:"),
        ),
        case(
            "namespaced policy does not reach other namespaces",
            "web",
            "r.io/layered/app:v1",
            found(D1, vec![k.release.sign("r.io/layered/app:v1", D1, Default)]),
            Allow(&["base"]),
        ),
        case(
            "namespaced policy adds a requirement to a cluster one",
            "payments",
            "r.io/layered/app:v1",
            found(
                D1,
                vec![
                    k.release.sign("r.io/layered/app:v1", D1, Default),
                    k.qa_new.sign("r.io/layered/app:v1", D1, Default),
                ],
            ),
            Deny("policy payments/layer-sec: 0 of 1 required attestors: sec"),
        ),
        case(
            "namespaced and cluster requirements both met",
            "payments",
            "r.io/layered/app:v1",
            found(
                D1,
                vec![
                    k.release.sign("r.io/layered/app:v1", D1, Default),
                    k.sec.sign("r.io/layered/app:v1", D1, Default),
                    k.qa_new.sign("r.io/layered/app:v1", D1, Default),
                ],
            ),
            Allow(&["base", "payments/layer-sec", "payments/layer-trial"]),
        ),
        case(
            "namespaced DryRun failing beside passing ones warns",
            "payments",
            "r.io/layered/app:v1",
            found(
                D1,
                vec![
                    k.release.sign("r.io/layered/app:v1", D1, Default),
                    k.sec.sign("r.io/layered/app:v1", D1, Default),
                ],
            ),
            Warn(
                "policy payments/layer-trial (DryRun, not enforced): 0 of 1 required attestors: qa: no signature by key qa-2024 or qa-2025",
            ),
        ),
        case(
            "DryRun allows an unsigned image with a warning",
            "web",
            "r.io/dry/app:v1",
            found(D1, vec![]),
            Warn(
                "policy trial (DryRun, not enforced): 0 of 1 required attestors: sec: no signature",
            ),
        ),
        case(
            "DryRun passing gives no warning",
            "web",
            "r.io/dry/app:v1",
            found(D1, vec![k.sec.sign("r.io/dry/app:v1", D1, Default)]),
            Allow(&["trial"]),
        ),
        case(
            "DryRun with the registry down warns",
            "web",
            "r.io/dry/app:v1",
            failed.clone(),
            Warn(
                "registry lookup failed: registry registry.example.com is unreachable: connection refused",
            ),
        ),
        case(
            "registry down denies in Enforce",
            "web",
            prod,
            failed.clone(),
            Deny(
                "registry.example.com/prod/app:v1 (digest unknown): policy prod-images: 0 of 1 required attestors: registry lookup failed: registry registry.example.com is unreachable: connection refused",
            ),
        ),
        case(
            "no match is allowed by default",
            "web",
            "quay.io/other/app:v1",
            found(D1, vec![]),
            Allow(&[]),
        ),
        case(
            "not-Ready policy (unknown attestor) denies even when signed",
            "web",
            "r.io/ghost/app:v1",
            found(D1, vec![k.release.sign("r.io/ghost/app:v1", D1, Default)]),
            Deny(
                "policy ghost-attestor: 1 of 1 required attestors: ghost: attestor not found; policy not ready, fails closed",
            ),
        ),
        case(
            "not-Ready policy (attestor with a bad key) denies",
            "web",
            "r.io/badkey/app:v1",
            found(D1, vec![k.release.sign("r.io/badkey/app:v1", D1, Default)]),
            Deny(
                "policy bad-key: 0 of 1 required attestors: broken: key bad-1 invalid; policy not ready, fails closed",
            ),
        ),
        case(
            "invalid images glob: the valid one still governs, denying",
            "web",
            "r.io/badglob/app:v1",
            found(D1, vec![k.release.sign("r.io/badglob/app:v1", D1, Default)]),
            Deny(
                "policy bad-glob: 1 of 1 required attestors: policy not ready, fails closed: spec.images[0]: invalid image glob \"r.io/bad glob\": contains white space",
            ),
        ),
        case(
            "invalid selector governs every namespace",
            "web",
            "r.io/badsel/app:v1",
            found(D1, vec![k.release.sign("r.io/badsel/app:v1", D1, Default)]),
            Deny(
                "spec.namespaceSelector.matchExpressions[0].operator: unknown operator \"Matches\"",
            ),
        ),
        case(
            "tag glob matches a v tag",
            "web",
            "ghcr.io/org/app:v1.2",
            found(
                D1,
                vec![k.release.sign("ghcr.io/org/app:v1.2", D1, Default)],
            ),
            Allow(&["versions"]),
        ),
        case(
            "tag glob leaves other tags alone",
            "web",
            "ghcr.io/org/app:latest",
            found(D1, vec![]),
            Allow(&[]),
        ),
        case(
            "official images: nginx is docker.io/library/nginx",
            "web",
            "nginx:1.25",
            found(D1, vec![]),
            Deny(
                "docker.io/library/nginx:1.25 (sha256:1111111111111111111111111111111111111111111111111111111111111111): policy official: 0 of 1 required attestors: ops: no signature",
            ),
        ),
        case(
            "pinned digest resolved to another digest",
            "web",
            &prod_by_digest,
            found(D2, vec![k.release.sign(prod, D2, Default)]),
            Deny(
                "the reference names sha256:1111111111111111111111111111111111111111111111111111111111111111 but the registry resolved sha256:2222",
            ),
        ),
    ];
    let mut deny = case(
        "no match denied with --no-match=deny",
        "web",
        "quay.io/other/app:v1",
        found(D1, vec![]),
        Deny(
            "quay.io/other/app:v1 (sha256:1111111111111111111111111111111111111111111111111111111111111111): no policy matches",
        ),
    );
    deny.no_match = NoMatch::Deny;
    cases.push(deny);
    let mut governed = case(
        "--no-match=deny leaves governed images to their policies",
        "web",
        prod,
        found(D1, vec![k.release.sign(prod, D1, Default)]),
        Allow(&["prod-images"]),
    );
    governed.no_match = NoMatch::Deny;
    cases.push(governed);
    // A namespace owner's catch-all DryRun policy must not turn --no-match=deny into "allow
    // with a warning": DryRun never admits what its absence would deny.
    let mut dry_only = case(
        "--no-match=deny: an image only DryRun policies govern stays denied",
        "web",
        "r.io/dry/app:v1",
        found(D1, vec![k.sec.sign("r.io/dry/app:v1", D1, Default)]),
        Deny("no Enforce policy matches (only DryRun ones)"),
    );
    dry_only.no_match = NoMatch::Deny;
    cases.push(dry_only);
    cases
}

#[test]
fn engine_table() {
    let keys = Keys::new();
    let world = world(&keys);
    let allow = world.compile(NoMatch::Allow).snapshot;
    let deny = world.compile(NoMatch::Deny).snapshot;
    let cases = cases(&keys);
    assert!(cases.len() >= 30, "the brief asks for at least 30 cases");
    for c in cases {
        let snapshot = match c.no_match {
            NoMatch::Allow => &allow,
            NoMatch::Deny => &deny,
        };
        let context = format!("case {:?} ({} in {})", c.name, c.image, c.ns);
        let v = evaluate(snapshot, c.ns, &c.image, &c.lookup);
        let message = v.denial_message();
        let warnings = v.warnings();
        match c.want {
            Want::Allow(policies) => {
                assert!(
                    v.allowed && !v.dry_run,
                    "{context}: denied: {message:?}\n{v:#?}"
                );
                assert_eq!((message, warnings), (None, vec![]), "{context}");
                let applied: Vec<&str> = v.policies.iter().map(|p| p.policy.as_str()).collect();
                assert_eq!(applied, policies, "{context}: policies applied");
            }
            Want::Deny(needle) => {
                assert!(!v.allowed && !v.dry_run, "{context}: allowed\n{v:#?}");
                let message = message.unwrap_or_default();
                assert!(
                    message.contains(needle),
                    "{context}: denial {message:?} does not contain {needle:?}"
                );
            }
            Want::Warn(needle) => {
                assert!(v.allowed && v.dry_run, "{context}: {message:?}\n{v:#?}");
                assert_eq!(message, None, "{context}");
                assert!(
                    warnings.iter().any(|w| w.contains(needle)),
                    "{context}: warnings {warnings:?} lack {needle:?}"
                );
            }
        }
    }
}

#[test]
fn denial_message_has_the_documented_shape() {
    let keys = Keys::new();
    let snapshot = world(&keys).compile(NoMatch::Allow).snapshot;
    let image = "registry.example.com/prod/app:v1";
    let v = evaluate(
        &snapshot,
        "web",
        image,
        &found(D1, vec![keys.stranger.sign(image, D1, Default)]),
    );
    assert_eq!(
        v.denial_message().as_deref(),
        Some(
            "registry.example.com/prod/app:v1 (sha256:1111111111111111111111111111111111111111111111111111111111111111): policy prod-images: 0 of 1 required attestors: release: no signature by key kms-4a2ef103 for this digest"
        )
    );
    // Two failing policies share one subject, each named.
    let v = evaluate(
        &snapshot,
        "payments",
        "r.io/layered/app:v1",
        &found(D1, vec![]),
    );
    let message = v.denial_message().unwrap();
    assert!(
        message.starts_with("r.io/layered/app:v1 (sha256:1111111111111111111111111111111111111111111111111111111111111111): policy base: 0 of 1 required attestors: release: no signature; policy payments/layer-sec: 0 of 1 required attestors: sec: no signature"),
        "{message}"
    );
    assert!(
        !message.contains("layer-trial"),
        "DryRun policies do not deny: {message}"
    );
}

#[test]
fn outcomes_name_the_keys_and_attestors() {
    let keys = Keys::new();
    let snapshot = world(&keys).compile(NoMatch::Allow).snapshot;
    let image = "r.io/multi/app:v1";
    let v = accepts(
        &snapshot,
        "web",
        image,
        &found(
            D1,
            vec![
                keys.stranger.sign(image, D1, Default),
                keys.qa_new.sign(image, D1, Default),
                keys.release.sign(image, D1, Default),
            ],
        ),
    );
    let p = &v.policies[0];
    assert_eq!((p.passed, p.ready, p.required), (true, true, 2));
    assert_eq!(p.satisfied, ["release", "qa"]);
    let by: Vec<(&str, Option<&str>)> = p
        .attestors
        .iter()
        .map(|a| (a.name.as_str(), a.verified_by_key.as_deref()))
        .collect();
    assert_eq!(
        by,
        [
            ("release", Some("kms-4a2ef103")),
            ("qa", Some("qa-2025")),
            ("sec", None)
        ]
    );
    assert_eq!(
        p.attestors[2].reason.as_deref(),
        Some("no signature by key sec-1 for this digest")
    );
    assert_eq!(p.reason, None);
    assert_eq!(v.digest.as_deref(), Some(D1));
    let json = serde_json::to_value(&v).unwrap();
    assert_eq!(
        json["policies"][0]["attestors"][1]["verifiedByKey"],
        "qa-2025"
    );
    assert_eq!(json["policies"][0]["kind"], "ClusterVerificationPolicy");
}

#[test]
fn matching_policies_lists_what_governs_an_image() {
    let keys = Keys::new();
    let snapshot = world(&keys).compile(NoMatch::Allow).snapshot;
    let names = |ns: &str, image: &str| -> Vec<String> {
        snapshot
            .matching_policies(ns, &ImageRef::parse(image).unwrap())
            .iter()
            .map(|p| p.display_name().to_string())
            .collect()
    };
    assert_eq!(
        names("payments", "r.io/layered/a/b:v1"),
        ["base", "payments/layer-sec", "payments/layer-trial"]
    );
    assert_eq!(names("web", "r.io/layered/a:v1"), ["base"]);
    assert_eq!(
        names("web", "registry.example.com/prod/sandbox/x:v1"),
        Vec::<String>::new()
    );
    assert_eq!(
        names("web", "registry.example.com/production/x:v1"),
        Vec::<String>::new()
    );
    assert_eq!(names("web", "r.io/badsel/x:v1"), ["bad-selector"]);
    assert_eq!(snapshot.generation(), 7);
}

#[test]
fn each_attestor_is_checked_once_per_image() {
    // Three policies share `release`; a signature set where only the last signature counts
    // gives the same verdict as checking per policy, and the memo keys on the signature type.
    let keys = Keys::new();
    let world = World::default()
        .attestor("release", &[(Some("r"), &keys.release)])
        .cluster_policy("a", "{images: [r.io/x/**], attestors: [release]}")
        .cluster_policy("b", "{images: [r.io/x/**], attestors: [release]}")
        .cluster_policy(
            "c",
            "{images: [r.io/x/**], attestors: [release], signatureType: Simple}",
        );
    let snapshot = world.compile(NoMatch::Allow).snapshot;
    let v = rejects(
        &snapshot,
        "default",
        "r.io/x/app:v2",
        &found(D1, vec![keys.release.sign("r.io/x/app:v1", D1, Default)]),
        "policy a: 0 of 1 required attestors: release: tag \"v2\" not bound",
    );
    let passed: Vec<bool> = v.policies.iter().map(|p| p.passed).collect();
    assert_eq!(
        passed,
        [false, false, true],
        "Simple ignores the tag: {v:#?}"
    );
    // The Default pass that verified serves the Simple policy too.
    let v = accepts(
        &snapshot,
        "default",
        "r.io/x/app:v1",
        &found(D1, vec![keys.release.sign("r.io/x/app:v1", D1, Default)]),
    );
    let by: Vec<Option<&str>> = v
        .policies
        .iter()
        .map(|p| p.attestors[0].verified_by_key.as_deref())
        .collect();
    assert_eq!(by, [Some("r"), Some("r"), Some("r")]);
    // A Simple failure is also the Default failure, with the same reason.
    let v = rejects(
        &snapshot,
        "default",
        "r.io/x/app:v1",
        &found(D1, vec![keys.release.sign("r.io/x/app:v1", D2, Default)]),
        "policy a: 0 of 1 required attestors: release: signature for another digest",
    );
    let reasons: Vec<Option<&str>> = v.policies.iter().map(|p| p.reason.as_deref()).collect();
    assert!(reasons.windows(2).all(|w| w[0] == w[1]), "{reasons:?}");
}
