//! AdmissionReview fixtures (`tests/fixtures/admission/`) through image extraction and digest
//! pinning.
//!
//! The fixtures are request bodies in the shape kube-apiserver sends to a webhook. Their images use
//! the placeholder host `REGISTRY`, which [`load`] replaces with a registry host, as tests against
//! a real local registry do; the rest are docker.io short names (`nginx:1.25`) and one image pinned
//! by digest. Every fixture in the folder must appear in [`EXPECTED`], so a new fixture cannot go
//! untested.

// Helpers outside `#[test]` functions fail by panicking, as tests do (clippy.toml covers only
// `#[test]` code).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use kube::core::admission::Operation;
use serde_json::Value;
use sha2::{Digest, Sha256};
use signet::admission::images::{ContainerKind, Workload, distinct_images, workload_of};
use signet::admission::patch::pin_patch;
use signet::admission::review::{ReviewRequest, parse_review};
use signet::reference::ImageRef;

/// The host tests substitute for `REGISTRY` (any loopback registry address would do).
const REGISTRY_HOST: &str = "127.0.0.1:5000";

/// The one image the fixtures pin by digest.
macro_rules! sidecar {
    () => {
        "REGISTRY/prod/sidecar@sha256:dd34ae3856cc117dd892feba9594ab15235bf0b9c56e6b4f9cb8ecc4da9cc55a"
    };
}

/// What `workload_of` must find in one fixture.
struct ExpectedWorkload {
    kind: &'static str,
    namespace: &'static str,
    name: &'static str,
    pod_spec_pointer: &'static str,
    /// `pointer image container kind` per image, kind being `container`, `init` or `ephemeral`,
    /// images with the `REGISTRY` placeholder.
    images: &'static [&'static str],
    pull_secrets: &'static [&'static str],
    service_account: &'static str,
    breakglass: Option<&'static str>,
}

struct Expected {
    fixture: &'static str,
    /// `None`: the webhook must leave the request alone.
    workload: Option<ExpectedWorkload>,
}

const TEMPLATE: &str = "/spec/template/spec";

const EXPECTED: &[Expected] = &[
    Expected {
        fixture: "pod-create.json",
        workload: Some(ExpectedWorkload {
            kind: "Pod",
            namespace: "shop",
            name: "api",
            pod_spec_pointer: "/spec",
            images: &[
                "/spec/containers/0/image REGISTRY/prod/app:v1 app container",
                "/spec/containers/1/image nginx:1.25 proxy container",
                "/spec/initContainers/0/image REGISTRY/prod/migrate:v3 migrate init",
            ],
            pull_secrets: &["regcred"],
            service_account: "app-runner",
            breakglass: None,
        }),
    },
    Expected {
        fixture: "pod-create-generatename.json",
        workload: Some(ExpectedWorkload {
            kind: "Pod",
            namespace: "shop",
            name: "web-5d8f7c9b6-*",
            pod_spec_pointer: "/spec",
            images: &[
                "/spec/containers/0/image REGISTRY/prod/web:v2 web container",
                concat!(
                    "/spec/containers/1/image ",
                    sidecar!(),
                    " sidecar container"
                ),
            ],
            pull_secrets: &["regcred", "mirror-cred"],
            service_account: "default",
            breakglass: None,
        }),
    },
    Expected {
        fixture: "pod-create-breakglass.json",
        workload: Some(ExpectedWorkload {
            kind: "Pod",
            namespace: "shop",
            name: "api-hotfix",
            pod_spec_pointer: "/spec",
            images: &["/spec/containers/0/image REGISTRY/prod/app:v1-hotfix app container"],
            pull_secrets: &[],
            service_account: "default",
            breakglass: Some("INC-1234 hotfix"),
        }),
    },
    Expected {
        fixture: "pod-create-dryrun.json",
        workload: Some(ExpectedWorkload {
            kind: "Pod",
            namespace: "shop",
            name: "api-canary",
            pod_spec_pointer: "/spec",
            images: &["/spec/containers/0/image REGISTRY/prod/app:v1 api-canary container"],
            pull_secrets: &[],
            service_account: "default",
            breakglass: None,
        }),
    },
    Expected {
        fixture: "pod-update.json",
        workload: Some(ExpectedWorkload {
            kind: "Pod",
            namespace: "shop",
            name: "api",
            pod_spec_pointer: "/spec",
            // The new object's image, not the old one's (REGISTRY/prod/app:v1).
            images: &["/spec/containers/0/image REGISTRY/prod/app:v1.1 app container"],
            pull_secrets: &[],
            service_account: "default",
            breakglass: None,
        }),
    },
    Expected {
        fixture: "pod-ephemeralcontainers.json",
        workload: Some(ExpectedWorkload {
            kind: "Pod",
            namespace: "shop",
            name: "api",
            pod_spec_pointer: "/spec",
            images: &[
                "/spec/containers/0/image REGISTRY/prod/app:v1 app container",
                "/spec/ephemeralContainers/0/image busybox:1.36 debugger-x7k2p ephemeral",
            ],
            pull_secrets: &[],
            service_account: "default",
            breakglass: None,
        }),
    },
    Expected {
        fixture: "pod-update-status.json",
        workload: None,
    },
    Expected {
        fixture: "pod-delete.json",
        workload: None,
    },
    Expected {
        fixture: "deployment-create.json",
        workload: Some(ExpectedWorkload {
            kind: "Deployment",
            namespace: "shop",
            name: "web",
            pod_spec_pointer: TEMPLATE,
            images: &[
                "/spec/template/spec/containers/0/image REGISTRY/prod/web:v2 web container",
                concat!(
                    "/spec/template/spec/containers/1/image ",
                    sidecar!(),
                    " sidecar container"
                ),
            ],
            pull_secrets: &["regcred", "mirror-cred"],
            service_account: "default",
            breakglass: None,
        }),
    },
    Expected {
        fixture: "deployment-update.json",
        workload: Some(ExpectedWorkload {
            kind: "Deployment",
            namespace: "shop",
            name: "web",
            pod_spec_pointer: TEMPLATE,
            images: &[
                "/spec/template/spec/containers/0/image REGISTRY/prod/web:v2.1 web container",
                concat!(
                    "/spec/template/spec/containers/1/image ",
                    sidecar!(),
                    " sidecar container"
                ),
            ],
            pull_secrets: &["regcred", "mirror-cred"],
            service_account: "default",
            breakglass: None,
        }),
    },
    Expected {
        fixture: "replicaset-create.json",
        workload: Some(ExpectedWorkload {
            kind: "ReplicaSet",
            namespace: "shop",
            name: "web-5d8f7c9b6",
            pod_spec_pointer: TEMPLATE,
            images: &[
                "/spec/template/spec/containers/0/image REGISTRY/prod/web:v2 web container",
                concat!(
                    "/spec/template/spec/containers/1/image ",
                    sidecar!(),
                    " sidecar container"
                ),
            ],
            pull_secrets: &["regcred", "mirror-cred"],
            service_account: "default",
            breakglass: None,
        }),
    },
    Expected {
        fixture: "statefulset-create.json",
        workload: Some(ExpectedWorkload {
            kind: "StatefulSet",
            namespace: "shop",
            name: "db",
            pod_spec_pointer: TEMPLATE,
            images: &[
                "/spec/template/spec/containers/0/image REGISTRY/prod/postgres:16.4 postgres container",
                "/spec/template/spec/initContainers/0/image busybox:1.36 init-perms init",
            ],
            pull_secrets: &[],
            service_account: "db",
            breakglass: None,
        }),
    },
    Expected {
        fixture: "daemonset-create.json",
        workload: Some(ExpectedWorkload {
            kind: "DaemonSet",
            namespace: "monitoring",
            name: "node-agent",
            pod_spec_pointer: TEMPLATE,
            images: &[
                "/spec/template/spec/containers/0/image REGISTRY/infra/node-agent:1.4.0 agent container",
            ],
            pull_secrets: &[],
            service_account: "node-agent",
            breakglass: None,
        }),
    },
    Expected {
        fixture: "job-create.json",
        workload: Some(ExpectedWorkload {
            kind: "Job",
            namespace: "reports",
            name: "report-2026-11",
            pod_spec_pointer: TEMPLATE,
            images: &[
                "/spec/template/spec/containers/0/image REGISTRY/batch/report:2026.11 report container",
            ],
            pull_secrets: &[],
            service_account: "default",
            breakglass: None,
        }),
    },
    Expected {
        fixture: "cronjob-create.json",
        workload: Some(ExpectedWorkload {
            kind: "CronJob",
            namespace: "reports",
            name: "cleanup",
            pod_spec_pointer: "/spec/jobTemplate/spec/template/spec",
            images: &[
                "/spec/jobTemplate/spec/template/spec/containers/0/image REGISTRY/batch/cleanup:v5 cleanup container",
                "/spec/jobTemplate/spec/template/spec/initContainers/0/image alpine:3.20 wait-db init",
            ],
            pull_secrets: &["regcred"],
            service_account: "default",
            breakglass: None,
        }),
    },
    Expected {
        fixture: "cronjob-update.json",
        workload: Some(ExpectedWorkload {
            kind: "CronJob",
            namespace: "reports",
            name: "cleanup",
            pod_spec_pointer: "/spec/jobTemplate/spec/template/spec",
            images: &[
                "/spec/jobTemplate/spec/template/spec/containers/0/image REGISTRY/batch/cleanup:v5 cleanup container",
                "/spec/jobTemplate/spec/template/spec/initContainers/0/image alpine:3.20 wait-db init",
            ],
            pull_secrets: &["regcred"],
            service_account: "default",
            breakglass: None,
        }),
    },
    Expected {
        fixture: "replicationcontroller-create.json",
        workload: Some(ExpectedWorkload {
            kind: "ReplicationController",
            namespace: "legacy",
            name: "frontend",
            pod_spec_pointer: TEMPLATE,
            images: &[
                "/spec/template/spec/containers/0/image REGISTRY/legacy/frontend:v7 frontend container",
            ],
            pull_secrets: &[],
            service_account: "default",
            breakglass: None,
        }),
    },
    Expected {
        fixture: "podtemplate-create.json",
        workload: Some(ExpectedWorkload {
            kind: "PodTemplate",
            namespace: "shop",
            name: "toolbox",
            pod_spec_pointer: "/template/spec",
            images: &["/template/spec/containers/0/image busybox:1.36 toolbox container"],
            pull_secrets: &[],
            service_account: "default",
            breakglass: None,
        }),
    },
    Expected {
        fixture: "configmap-create.json",
        workload: None,
    },
];

fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/admission")
}

/// A fixture's raw JSON with `REGISTRY` replaced by `registry_host`.
fn raw(name: &str, registry_host: &str) -> Value {
    let path = fixture_dir().join(name);
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_json::from_str(&text.replace("REGISTRY", registry_host))
        .unwrap_or_else(|e| panic!("{name} is not JSON: {e}"))
}

/// The request in an AdmissionReview body, as the webhook's handler decodes it.
fn request_of(name: &str, review: Value) -> ReviewRequest<'static> {
    parse_review(review.to_string().as_bytes())
        .unwrap_or_else(|e| panic!("{name}: not an AdmissionReview: {e}"))
        .into_owned()
}

fn load(name: &str) -> (Value, ReviewRequest<'static>) {
    let review = raw(name, REGISTRY_HOST);
    let request = request_of(name, review.clone());
    (review, request)
}

fn substituted(image: &str) -> String {
    image.replace("REGISTRY", REGISTRY_HOST)
}

/// The image field of an [`ExpectedWorkload::images`] line.
fn image_of_line(line: &str) -> &str {
    line.split(' ').nth(1).expect("line has an image")
}

/// A workload's images in the form of [`ExpectedWorkload::images`].
fn image_lines(workload: &Workload) -> Vec<String> {
    let line = |image: &signet::admission::images::WorkloadImage| {
        let kind = match image.kind {
            ContainerKind::Container => "container",
            ContainerKind::InitContainer => "init",
            ContainerKind::EphemeralContainer => "ephemeral",
            ContainerKind::ImageVolume => "volume",
        };
        format!(
            "{} {} {} {kind}",
            workload.pointer_of(image),
            image.image,
            image.container
        )
    };
    workload.images.iter().map(line).collect()
}

fn handled(expected: &Expected) -> Option<(&ExpectedWorkload, Value, Workload<'static>)> {
    let want = expected.workload.as_ref()?;
    let (review, request) = load(expected.fixture);
    let workload = workload_of(&request)
        .unwrap_or_else(|e| panic!("{}: {e}", expected.fixture))
        .unwrap_or_else(|| panic!("{}: should be handled", expected.fixture))
        .into_owned();
    Some((want, review["request"]["object"].clone(), workload))
}

/// A test-sized RFC 6902 applier: only `replace`, which the webhook emits, and which (unlike
/// `add`) fails when the path does not exist.
fn apply_replace_patch(document: &mut Value, patch: &[Value]) {
    for operation in patch {
        let fields: BTreeSet<&str> = operation
            .as_object()
            .expect("patch operation is an object")
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            fields,
            BTreeSet::from(["op", "path", "value"]),
            "{operation}"
        );
        assert_eq!(operation["op"], "replace", "{operation}");
        let path = operation["path"].as_str().expect("path is a string");
        let target = document
            .pointer_mut(path)
            .unwrap_or_else(|| panic!("replace at {path}: no such location"));
        *target = operation["value"].clone();
    }
}

/// A stand-in digest per image: what the registry would resolve the tag to.
fn fake_digest(image: &str) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(image.as_bytes())))
}

#[test]
fn every_fixture_is_expected_and_every_expectation_has_a_fixture() {
    let on_disk: BTreeSet<String> = std::fs::read_dir(fixture_dir())
        .expect("fixture folder exists")
        .map(|entry| {
            entry
                .expect("folder entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    let listed: BTreeSet<String> = EXPECTED.iter().map(|e| e.fixture.to_string()).collect();
    assert_eq!(on_disk, listed);
}

#[test]
fn fixtures_have_the_shape_the_api_server_sends() {
    for expected in EXPECTED {
        let name = expected.fixture;
        let review = raw(name, REGISTRY_HOST);
        assert_eq!(review["apiVersion"], "admission.k8s.io/v1", "{name}");
        assert_eq!(review["kind"], "AdmissionReview", "{name}");
        let request = &review["request"];
        for field in [
            "uid",
            "kind",
            "resource",
            "requestKind",
            "requestResource",
            "namespace",
        ] {
            assert!(
                request.get(field).is_some(),
                "{name}: request.{field} missing"
            );
        }
        for field in ["username", "groups"] {
            assert!(
                request["userInfo"].get(field).is_some(),
                "{name}: userInfo.{field}"
            );
        }
        assert!(request["dryRun"].is_boolean(), "{name}: dryRun");
        let operation = request["operation"].as_str().expect("operation");
        let options_kind = match operation {
            "CREATE" => "CreateOptions",
            "UPDATE" => "UpdateOptions",
            "DELETE" => "DeleteOptions",
            other => panic!("{name}: unexpected operation {other}"),
        };
        assert_eq!(request["options"]["kind"], options_kind, "{name}");
        assert_eq!(request["options"]["apiVersion"], "meta.k8s.io/v1", "{name}");
        // Both keys are always present; null where the operation has no such object.
        assert_eq!(
            request["object"].is_null(),
            operation == "DELETE",
            "{name}: object"
        );
        assert_eq!(
            request["oldObject"].is_null(),
            operation == "CREATE",
            "{name}: oldObject"
        );
        // The API server omits an empty subResource rather than sending "".
        if let Some(sub) = request.get("subResource") {
            assert!(
                sub.as_str().is_some_and(|s| !s.is_empty()),
                "{name}: subResource"
            );
            assert_eq!(request["requestSubResource"], *sub, "{name}");
        }
        if !request["object"].is_null() {
            assert_eq!(request["object"]["kind"], request["kind"]["kind"], "{name}");
        }
        // Name pattern <kind>-<operation>[-variant].json (the subresource fixture is named for
        // the subresource, as the brief's example does).
        let kind = request["kind"]["kind"]
            .as_str()
            .expect("kind")
            .to_lowercase();
        assert!(
            name.starts_with(&format!("{kind}-")),
            "{name}: named after {kind}"
        );

        let decoded = request_of(name, review.clone());
        assert_eq!(decoded.uid, request["uid"].as_str().expect("uid"), "{name}");
        assert_eq!(
            decoded.dry_run,
            name == "pod-create-dryrun.json",
            "{name}: dryRun"
        );
    }
}

#[test]
fn workload_of_finds_the_expected_images() {
    for expected in EXPECTED {
        let name = expected.fixture;
        let (_, request) = load(name);
        let found = workload_of(&request).unwrap_or_else(|e| panic!("{name}: {e}"));
        let Some(want) = &expected.workload else {
            assert_eq!(found, None, "{name}: should be left alone");
            continue;
        };
        let workload = found.unwrap_or_else(|| panic!("{name}: should be handled"));
        let wanted: Vec<String> = want.images.iter().map(|line| substituted(line)).collect();
        assert_eq!(image_lines(&workload), wanted, "{name}: images");
        assert_eq!(workload.kind, want.kind, "{name}");
        assert_eq!(workload.namespace, want.namespace, "{name}");
        assert_eq!(workload.name, want.name, "{name}");
        assert_eq!(workload.pod_spec_pointer, want.pod_spec_pointer, "{name}");
        assert_eq!(workload.image_pull_secrets, want.pull_secrets, "{name}");
        assert_eq!(
            workload.service_account.as_deref(),
            Some(want.service_account),
            "{name}"
        );
        assert_eq!(
            workload
                .annotations
                .get("signet.dev/breakglass")
                .map(String::as_str),
            want.breakglass,
            "{name}: breakglass annotation"
        );
    }
}

#[test]
fn pointers_resolve_to_the_images_in_the_object() {
    for expected in EXPECTED {
        let Some((want, object, workload)) = handled(expected) else {
            continue;
        };
        let name = expected.fixture;
        for image in &workload.images {
            let pointer = workload.pointer_of(image);
            assert_eq!(
                object.pointer(&pointer),
                Some(&Value::String(image.image.to_string())),
                "{name}: {pointer}"
            );
        }
        assert!(
            object
                .pointer(workload.pod_spec_pointer)
                .is_some_and(Value::is_object),
            "{name}: pod spec at {}",
            want.pod_spec_pointer
        );
    }
}

#[test]
fn substituted_images_are_valid_references_on_the_test_registry() {
    for expected in EXPECTED {
        let Some((want, _, workload)) = handled(expected) else {
            continue;
        };
        for (image, line) in workload.images.iter().zip(want.images) {
            let written = image_of_line(line);
            let parsed = ImageRef::parse(&image.image)
                .unwrap_or_else(|e| panic!("{}: {e}", expected.fixture));
            if written.starts_with("REGISTRY/") {
                assert_eq!(parsed.registry(), REGISTRY_HOST, "{}", image.image);
            } else {
                assert_eq!(parsed.registry(), "docker.io", "{}", image.image);
            }
        }
    }
}

#[test]
fn distinct_images_lists_each_image_once() {
    for expected in EXPECTED {
        let Some((want, _, workload)) = handled(expected) else {
            continue;
        };
        let mut wanted: Vec<String> = Vec::new();
        for line in want.images {
            let image = substituted(image_of_line(line));
            if !wanted.contains(&image) {
                wanted.push(image);
            }
        }
        assert_eq!(distinct_images(&workload), wanted, "{}", expected.fixture);
    }
}

#[test]
fn pin_patch_rewrites_exactly_the_unpinned_images() {
    for expected in EXPECTED {
        let Some((_, object, workload)) = handled(expected) else {
            continue;
        };
        let name = expected.fixture;
        let digests: BTreeMap<String, String> = distinct_images(&workload)
            .into_iter()
            .map(|image| {
                let digest = fake_digest(image);
                (image.to_string(), digest)
            })
            .collect();
        let patch = pin_patch(&workload, &digests);
        let unpinned = workload
            .images
            .iter()
            .filter(|i| !i.image.contains('@'))
            .count();
        assert_eq!(
            patch.len(),
            unpinned,
            "{name}: one operation per unpinned image"
        );

        let mut patched = object.clone();
        apply_replace_patch(&mut patched, &patch);
        for image in &workload.images {
            let pointer = workload.pointer_of(image);
            let now = patched.pointer(&pointer).and_then(Value::as_str);
            let want = if image.image.contains('@') {
                image.image.to_string()
            } else {
                format!("{}@{}", image.image, digests[&*image.image])
            };
            assert_eq!(now, Some(want.as_str()), "{name}: {pointer}");
        }

        // Nothing but the image fields changed.
        let mut before = object.clone();
        let mut after = patched.clone();
        for image in &workload.images {
            for document in [&mut before, &mut after] {
                if let Some(field) = document.pointer_mut(&workload.pointer_of(image)) {
                    *field = Value::Null;
                }
            }
        }
        assert_eq!(before, after, "{name}: the patch touched more than images");

        // Pinning is idempotent: the patched object needs no further patch.
        let (mut review, _) = load(name);
        review["request"]["object"] = patched;
        let request = request_of(name, review);
        let repinned = workload_of(&request)
            .unwrap_or_else(|e| panic!("{name}: patched object: {e}"))
            .unwrap_or_else(|| panic!("{name}: patched object should still be handled"));
        assert!(
            repinned.images.iter().all(|i| i.image.contains('@')),
            "{name}"
        );
        assert_eq!(
            pin_patch(&repinned, &digests),
            Vec::<Value>::new(),
            "{name}"
        );
    }
}

#[test]
fn pin_patch_leaves_images_without_a_digest_alone() {
    let (review, request) = load("pod-create.json");
    let workload = workload_of(&request).expect("readable").expect("handled");
    // Only nginx:1.25 resolved; the other images keep their tags.
    let digests = BTreeMap::from([("nginx:1.25".to_string(), fake_digest("nginx:1.25"))]);
    let patch = pin_patch(&workload, &digests);
    let mut object = review["request"]["object"].clone();
    apply_replace_patch(&mut object, &patch);
    assert_eq!(patch.len(), 1);
    assert_eq!(
        object.pointer("/spec/containers/1/image"),
        Some(&Value::String(format!(
            "nginx:1.25@{}",
            fake_digest("nginx:1.25")
        )))
    );
    assert_eq!(
        object.pointer("/spec/containers/0/image"),
        Some(&Value::String(substituted("REGISTRY/prod/app:v1")))
    );
    assert_eq!(
        object.pointer("/spec/initContainers/0/image"),
        Some(&Value::String(substituted("REGISTRY/prod/migrate:v3")))
    );
}

#[test]
fn malformed_fixture_objects_fail_closed_naming_the_field() {
    let (mut review, _) = load("deployment-create.json");
    review["request"]["object"]["spec"]["template"]["spec"]["containers"][1]["image"] =
        Value::from(42);
    let err = workload_of(&request_of("deployment-create.json", review)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "spec.template.spec.containers[1].image: not a string"
    );

    let (mut review, _) = load("cronjob-create.json");
    let init = &mut review["request"]["object"]["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        ["initContainers"][0];
    init.as_object_mut().expect("container").remove("image");
    let err = workload_of(&request_of("cronjob-create.json", review)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "spec.jobTemplate.spec.template.spec.initContainers[0].image: missing or empty image"
    );

    let (mut review, _) = load("pod-create.json");
    review["request"]["object"] = Value::Null;
    let request = request_of("pod-create.json", review);
    assert_eq!(request.operation, Operation::Create);
    let err = workload_of(&request).unwrap_err();
    assert_eq!(err.to_string(), "CREATE request for Pod carries no object");
}
