//! Unit tests of workload image extraction.

use super::*;
use crate::admission::pruned_tree::PrunedTree;
use crate::admission::review::parse_review;
use serde_json::{Value, json};

/// An AdmissionRequest as the API server would send it, reduced to the fields that matter
/// here. `gvk` is `group/version/Kind` (`v1/Pod` for the core group); `operation` may name a
/// subresource after a space (`UPDATE status`).
fn request(gvk: &str, operation: &str, object: Value) -> ReviewRequest<'static> {
    let (group_version, kind) = gvk.rsplit_once('/').expect("group/version/Kind");
    let (group, version) = group_version
        .rsplit_once('/')
        .unwrap_or(("", group_version));
    let (operation, sub_resource) = operation.split_once(' ').unwrap_or((operation, ""));
    let mut request = json!({
        "uid": "0c1e6bd4-5bb0-4a49-a1d9-3f1b2a6a7e10",
        "kind": {"group": group, "version": version, "kind": kind},
        "resource": {"group": group, "version": version, "resource": "things"},
        "namespace": "shop",
        "operation": operation,
        "userInfo": {"username": "kubernetes-admin"},
        "object": object,
        "oldObject": null,
        "dryRun": false,
    });
    if !sub_resource.is_empty() {
        request["subResource"] = json!(sub_resource);
    }
    let body = json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": request,
    });
    parse_review(body.to_string().as_bytes())
        .expect("admission review parses")
        .into_owned()
}

fn pod(spec: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web", "namespace": "shop"}, "spec": spec})
}

fn pod_request(spec: Value) -> ReviewRequest<'static> {
    request("v1/Pod", "CREATE", pod(spec))
}

fn deployment_request(containers: Value) -> ReviewRequest<'static> {
    let object = json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {"template": {"spec": {"containers": containers}}},
    });
    request("apps/v1/Deployment", "CREATE", object)
}

/// Changes the kept parts of the request's object, as JSON.
fn edit_data(req: &mut ReviewRequest<'_>, edit: impl FnOnce(&mut Value)) {
    let object = req.object.as_mut().expect("object");
    let mut data = object.data.to_value();
    edit(&mut data);
    object.data = PrunedTree::from_value(&data);
}

fn workload(req: &ReviewRequest<'_>) -> Workload<'static> {
    match workload_of(req) {
        Ok(Some(workload)) => workload.into_owned(),
        other => panic!("expected a workload, got {other:?}"),
    }
}

fn error(req: &ReviewRequest<'_>) -> String {
    match workload_of(req) {
        Err(e) => e.to_string(),
        Ok(w) => panic!("expected an error, got {w:?}"),
    }
}

/// One line per image: pointer, image, container, kind.
fn images(workload: &Workload) -> Vec<String> {
    let line = |i: &WorkloadImage| {
        format!(
            "{} {} {} ({})",
            workload.pointer_of(i),
            i.image,
            i.container,
            i.kind
        )
    };
    workload.images.iter().map(line).collect()
}

/// An object holding a one-container pod spec at `pointer`.
fn object_with_pod_spec_at(pointer: &str) -> Value {
    let mut value = json!({"containers": [{"name": "app", "image": "nginx:1.25"}]});
    for key in pointer.rsplit('/').filter(|k| !k.is_empty()) {
        value = json!({ key: value });
    }
    value["metadata"] = json!({"name": "web"});
    value
}

#[test]
fn pod_reports_every_container_list_with_pointers() {
    let workload = workload(&pod_request(json!({
        "initContainers": [{"name": "migrate", "image": "registry.example.com/prod/migrate:v3"}],
        "containers": [
            {"name": "app", "image": "registry.example.com/prod/app:v1"},
            {"name": "proxy", "image": "nginx:1.25"},
        ],
        "ephemeralContainers": [{"name": "debugger", "image": "busybox:1.36"}],
    })));
    assert_eq!(
        images(&workload),
        [
            "/spec/containers/0/image registry.example.com/prod/app:v1 app (container)",
            "/spec/containers/1/image nginx:1.25 proxy (container)",
            "/spec/initContainers/0/image registry.example.com/prod/migrate:v3 migrate (init container)",
            "/spec/ephemeralContainers/0/image busybox:1.36 debugger (ephemeral container)",
        ]
    );
    assert_eq!(workload.kind, "Pod");
    assert_eq!(workload.namespace, "shop");
    assert_eq!(workload.name, "web");
    assert_eq!(workload.pod_spec_pointer, "/spec");
    assert_eq!(workload.service_account.as_deref(), Some("default"));
    assert!(workload.image_pull_secrets.is_empty());
    assert!(workload.annotations.is_empty());
}

#[test]
fn every_handled_kind_finds_its_pod_spec() {
    let cases = [
        ("v1/Pod", "/spec"),
        ("v1/ReplicationController", "/spec/template/spec"),
        ("v1/PodTemplate", "/template/spec"),
        ("apps/v1/Deployment", "/spec/template/spec"),
        ("apps/v1/ReplicaSet", "/spec/template/spec"),
        ("apps/v1/StatefulSet", "/spec/template/spec"),
        ("apps/v1/DaemonSet", "/spec/template/spec"),
        ("batch/v1/Job", "/spec/template/spec"),
        ("batch/v1/CronJob", "/spec/jobTemplate/spec/template/spec"),
    ];
    for (gvk, spec_pointer) in cases {
        for operation in ["CREATE", "UPDATE"] {
            let found = workload(&request(
                gvk,
                operation,
                object_with_pod_spec_at(spec_pointer),
            ));
            assert_eq!(gvk.rsplit('/').next(), Some(&*found.kind));
            assert_eq!(found.pod_spec_pointer, spec_pointer, "{gvk}");
            assert_eq!(
                images(&found),
                [format!(
                    "{spec_pointer}/containers/0/image nginx:1.25 app (container)"
                )]
            );
        }
    }
    // The pod spec where another kind keeps it: an error, not "no images".
    let misplaced = request(
        "apps/v1/Deployment",
        "CREATE",
        object_with_pod_spec_at("/spec"),
    );
    assert_eq!(error(&misplaced), "spec.template: missing");
}

#[test]
fn requests_that_cannot_change_an_image_are_not_handled() {
    let object = pod(json!({"containers": [{"name": "app", "image": "nginx:1.25"}]}));
    let cases = [
        ("v1/Pod", "DELETE"),
        ("v1/Pod", "CONNECT"),
        ("v1/Pod", "UPDATE status"),
        ("v1/Pod", "CREATE binding"),
        ("apps/v1/Deployment", "UPDATE status"),
        ("v1/ConfigMap", "CREATE"),
        // Same kind name, another API group: not the workload signet knows.
        ("example.com/v1/Deployment", "CREATE"),
        // The ephemeralcontainers subresource exists on Pods only.
        ("apps/v1/Deployment", "UPDATE ephemeralcontainers"),
    ];
    for (gvk, operation) in cases {
        let req = request(gvk, operation, object.clone());
        assert_eq!(workload_of(&req), Ok(None), "{gvk} {operation}");
    }
}

#[test]
fn ephemeral_containers_subresource_checks_every_container_of_the_pod() {
    let object = pod(json!({
        "containers": [{"name": "app", "image": "registry.example.com/prod/app:v1"}],
        "ephemeralContainers": [{"name": "debugger-x7k2p", "image": "busybox:1.36"}],
    }));
    let found = workload(&request("v1/Pod", "UPDATE ephemeralcontainers", object));
    assert_eq!(
        images(&found),
        [
            "/spec/containers/0/image registry.example.com/prod/app:v1 app (container)",
            "/spec/ephemeralContainers/0/image busybox:1.36 debugger-x7k2p (ephemeral container)",
        ]
    );
}

#[test]
fn missing_object_on_create_is_an_error_not_an_allow() {
    let mut req = pod_request(json!({"containers": []}));
    req.object = None;
    assert_eq!(error(&req), "CREATE request for Pod carries no object");
}

#[test]
fn handled_kind_in_unknown_version_is_an_error() {
    let req = request("batch/v1beta1/CronJob", "CREATE", json!({"spec": {}}));
    assert_eq!(
        error(&req),
        "CronJob in API version \"batch/v1beta1\" is not supported (expected v1)"
    );
}

#[test]
fn image_of_wrong_type_names_the_field() {
    let req = deployment_request(json!([
        {"name": "app", "image": "nginx:1.25"},
        {"name": "proxy", "image": 42},
    ]));
    assert_eq!(
        error(&req),
        "spec.template.spec.containers[1].image: not a string"
    );
}

#[test]
fn empty_or_missing_image_names_the_field() {
    for container in [
        json!({"name": "app", "image": ""}),
        json!({"name": "app", "image": "  "}),
        json!({"name": "app"}),
        json!({"name": "app", "image": null}),
    ] {
        assert_eq!(
            error(&deployment_request(json!([container]))),
            "spec.template.spec.containers[0].image: missing or empty image"
        );
    }
}

#[test]
fn malformed_structure_names_the_field() {
    let dep = |containers| error(&deployment_request(containers));
    let pod = |spec| error(&pod_request(spec));
    let any = |gvk, object| error(&request(gvk, "UPDATE", object));
    let containers = "spec.template.spec.containers";
    assert_eq!(
        dep(json!({"name": "a"})),
        format!("{containers}: not an array")
    );
    assert_eq!(
        dep(json!(["nginx:1.25"])),
        format!("{containers}[0]: not an object")
    );
    assert_eq!(
        dep(json!([{"name": 7}])),
        format!("{containers}[0].name: not a string")
    );
    assert_eq!(
        pod(json!({"initContainers": "x"})),
        "spec.initContainers: not an array"
    );
    let secrets = json!({"imagePullSecrets": [{"name": true}]});
    assert_eq!(pod(secrets), "spec.imagePullSecrets[0].name: not a string");
    let secrets = json!({"imagePullSecrets": ["regcred"]});
    assert_eq!(pod(secrets), "spec.imagePullSecrets[0]: not an object");
    let account = json!({"serviceAccountName": ["a"]});
    assert_eq!(pod(account), "spec.serviceAccountName: not a string");
    let rc = "v1/ReplicationController";
    assert_eq!(
        any(rc, json!({"spec": {"replicas": 1}})),
        "spec.template: missing"
    );
    assert_eq!(
        any("apps/v1/Deployment", json!({"spec": null})),
        "spec: missing"
    );
    assert_eq!(any("v1/Pod", json!({"spec": []})), "spec: not an object");
    let template = json!({"spec": {"template": 3}});
    assert_eq!(
        any("apps/v1/Deployment", template),
        "spec.template: not an object"
    );
}

#[test]
fn absent_or_null_container_lists_are_empty() {
    let found = workload(&pod_request(
        json!({"containers": null, "initContainers": null}),
    ));
    assert!(found.images.is_empty());
}

#[test]
fn pull_secrets_and_service_account() {
    let found = workload(&pod_request(json!({
        "containers": [{"name": "app", "image": "nginx:1.25"}],
        "imagePullSecrets": [{"name": "regcred"}, {}, {"name": ""}, {"name": "mirror"}, {"name": "regcred"}],
        "serviceAccountName": "app-runner",
        "serviceAccount": "app-runner",
    })));
    assert_eq!(found.image_pull_secrets, ["regcred", "mirror"]);
    assert_eq!(found.service_account.as_deref(), Some("app-runner"));

    let account = |spec: Value| workload(&pod_request(spec)).service_account;
    // Only the deprecated alias: Kubernetes reads it as the service account name.
    let alias = account(json!({"containers": [], "serviceAccount": "legacy"}));
    assert_eq!(alias.as_deref(), Some("legacy"));
    let empty = account(json!({"containers": [], "serviceAccountName": ""}));
    assert_eq!(empty.as_deref(), Some("default"));
}

#[test]
fn name_follows_generate_name_and_request() {
    let mut object = pod(json!({"containers": []}));
    object["metadata"] = json!({"generateName": "web-7d4b9c8f6-", "namespace": "shop"});
    let req = request("v1/Pod", "CREATE", object.clone());
    assert_eq!(workload(&req).name, "web-7d4b9c8f6-*");

    let mut named_by_request = request("v1/Pod", "CREATE", object);
    named_by_request.name = "web-7d4b9c8f6-q2x8z".into();
    assert_eq!(workload(&named_by_request).name, "web-7d4b9c8f6-q2x8z");

    let nameless = request("v1/Pod", "CREATE", json!({"spec": {"containers": []}}));
    assert_eq!(workload(&nameless).name, "");
}

#[test]
fn namespace_falls_back_to_the_object() {
    let mut req = pod_request(json!({"containers": []}));
    req.namespace = None;
    assert_eq!(workload(&req).namespace, "shop");
}

#[test]
fn annotations_are_the_objects_own_not_the_templates() {
    let mut req = deployment_request(json!([{"name": "app", "image": "nginx:1.25"}]));
    let breakglass = BTreeMap::from([(
        "signet.dev/breakglass".to_string(),
        "INC-1234 hotfix".to_string(),
    )]);
    if let Some(object) = req.object.as_mut() {
        let own = breakglass
            .iter()
            .map(|(k, v)| (k.clone().into(), v.clone().into()));
        object.metadata.annotations = Some(own.collect());
    }
    edit_data(&mut req, |data| {
        data["spec"]["template"]["metadata"] = json!({"annotations": {"from": "template"}})
    });
    assert_eq!(workload(&req).annotations, breakglass);
}

#[test]
fn distinct_images_keeps_first_appearance_order() {
    let found = workload(&pod_request(json!({
        "initContainers": [{"name": "init", "image": "nginx:1.25"}],
        "containers": [
            {"name": "a", "image": "registry.example.com/prod/app:v1"},
            {"name": "b", "image": "nginx:1.25"},
            {"name": "c", "image": "registry.example.com/prod/app:v1"},
        ],
    })));
    assert_eq!(found.images.len(), 4);
    assert_eq!(
        distinct_images(&found),
        ["registry.example.com/prod/app:v1", "nginx:1.25"]
    );
}

#[test]
fn distinct_images_of_a_large_pod_keep_first_appearance_order_too() {
    // Past the comparison path's limit, the hashing path: the same answer.
    for count in [16, 17, 40] {
        let containers: Vec<_> = (0..count)
            .map(|i| json!({"name": format!("c{i}"), "image": format!("r/app{}:v1", (i * 5) % 7)}))
            .collect();
        let found = workload(&pod_request(json!({ "containers": containers })));
        let expected: Vec<String> = [0, 5, 3, 1, 6, 4, 2]
            .iter()
            .map(|i| format!("r/app{i}:v1"))
            .collect();
        assert_eq!(distinct_images(&found), expected, "{count} containers");
    }
}

#[test]
fn dotted_paths_name_keys_and_indices() {
    let root = FieldPath::Keys(&[]);
    let a = root.key("a/b");
    let cd = a.key("c~d");
    let path = cd.index(2);
    assert_eq!(path.dotted(), "a/b.c~d[2]");
    let spec = FieldPath::Keys(&["spec", "template", "spec"]);
    let containers = spec.key("containers");
    assert_eq!(
        containers.index(0).dotted(),
        "spec.template.spec.containers[0]"
    );
}

#[test]
fn container_kind_names() {
    let fields = ContainerKind::ALL.map(ContainerKind::field_name);
    assert_eq!(
        fields,
        ["containers", "initContainers", "ephemeralContainers"]
    );
    assert_eq!(ContainerKind::InitContainer.to_string(), "init container");
}

#[test]
fn image_volumes_are_images_of_the_pod() {
    let req = deployment_request(json!([{"name": "app", "image": "r.example/app:v1"}]));
    let mut req = req;
    edit_data(&mut req, |data| {
        data["spec"]["template"]["spec"]["volumes"] = json!([
            {"name": "config", "configMap": {"name": "cfg"}},
            {"name": "models", "image": {"reference": "r.example/models:v3", "pullPolicy": "IfNotPresent"}},
        ])
    });
    let found = workload(&req);
    let volume = found
        .images
        .iter()
        .find(|i| i.kind == ContainerKind::ImageVolume)
        .expect("the image volume is an image of the workload");
    assert_eq!(volume.image, "r.example/models:v3");
    assert_eq!(volume.container, "models");
    assert_eq!(
        found.pointer_of(volume),
        "/spec/template/spec/volumes/1/image/reference"
    );
    assert_eq!(ContainerKind::ImageVolume.to_string(), "image volume");

    // An image volume without a reference is an error, never "nothing to check".
    edit_data(&mut req, |data| {
        data["spec"]["template"]["spec"]["volumes"][1]["image"] = json!({"reference": " "})
    });
    assert_eq!(
        workload_of(&req).err().map(|e| e.to_string()),
        Some("spec.template.spec.volumes[1].image.reference: missing or empty image".to_string())
    );
    edit_data(&mut req, |data| {
        data["spec"]["template"]["spec"]["volumes"][1]["image"] = json!("r.example/x:1")
    });
    assert!(workload_of(&req).is_err());
}

#[test]
fn duplicate_keys_in_the_body_read_as_the_last_one() {
    let object = json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {"template": {
            "metadata": {"annotations": {"k": "MARK-ANNOTATION"}},
            "spec": {"containers": [{"name": "app", "image": "MARK-IMAGE"}]}}},
    });
    let body = json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "u", "kind": {"group": "apps", "version": "v1", "kind": "Deployment"},
            "namespace": "shop", "operation": "CREATE", "object": object,
        },
    })
    .to_string()
    // A later string replaces an earlier one; a later value of another type removes it.
    .replace(
        "\"MARK-ANNOTATION\"",
        "\"first\",\"keep\":\"outer\",\"k\":7,\"keep\":\"inner\"",
    )
    .replace("\"MARK-IMAGE\"", "\"r/first:v1\",\"image\":\"r/last:v1\"");
    for parse in [
        parse_review,
        crate::admission::review::parse_review_reference,
    ] {
        let found = workload(&parse(body.as_bytes()).expect("the review parses"));
        assert_eq!(distinct_images(&found), ["r/last:v1"]);
        assert_eq!(
            found.template_annotations,
            BTreeMap::from([("keep".to_string(), "inner".to_string())])
        );
    }
}

#[test]
fn each_handled_kinds_pod_spec_pointer_is_its_path() {
    for (_, kind, path, pointer) in HANDLED_KINDS {
        assert_eq!(*pointer, format!("/{}", path.join("/")), "{kind}");
    }
}
