//! Which images a workload runs: reads an AdmissionRequest and finds every container image, with
//! the JSON pointer of its field so that `/mutate` can pin it in place.
//!
//! The object is walked as plain JSON (`DynamicObject::data`) rather than deserialised into the
//! k8s-openapi types: only the pod spec matters, and a typed decode of a whole Deployment would
//! reject objects for reasons that have nothing to do with images.
//!
//! Handled: Pod, ReplicationController, PodTemplate (core/v1), Deployment, ReplicaSet,
//! StatefulSet, DaemonSet (apps/v1), Job, CronJob (batch/v1); operations CREATE and UPDATE. Every
//! other request (other kinds, DELETE, CONNECT, subresources such as `pods/status`) yields
//! `Ok(None)`: the webhook allows it untouched.
//!
//! Decisions where a shortcut would open a hole (fail closed):
//! - A handled kind in a version other than `v1`, a CREATE/UPDATE without an object, a missing pod
//!   spec, a container whose image is missing or empty, or a field of the wrong JSON type is an
//!   error, never "no images". The API server would reject most of these objects itself; denying
//!   them here costs nothing and keeps a malformed object from slipping past unverified.
//! - `pods/ephemeralcontainers` (how `kubectl debug` adds a container to a running pod): the API
//!   server sends the whole Pod, and every container in it is checked, not only the ephemeral
//!   ones. The others were admitted already, so checking them again changes no verdict that was
//!   right before, and one rule for all Pod requests is easier to reason about than a diff against
//!   `oldObject`.
//! - UPDATE: only the new object (`request.object`) counts; what ran before does not matter.

use std::collections::{BTreeMap, HashSet};
use std::fmt;

use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, Operation};
use serde_json::{Map, Value};

/// The Pod subresource whose requests are checked like the Pod itself (`kubectl debug`).
pub const EPHEMERAL_CONTAINERS_SUBRESOURCE: &str = "ephemeralcontainers";

/// One container image in a workload, as written, and where it is written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkloadImage {
    /// RFC 6901 JSON pointer to the `image` field in the object, e.g.
    /// `/spec/template/spec/containers/0/image`: the path a JSON patch replaces.
    pub pointer: String,
    /// The image reference exactly as the workload writes it (not normalised).
    pub image: String,
    /// The container's name (empty when the object gives none; the API server rejects that later).
    pub container: String,
    /// Which container list the image comes from.
    pub kind: ContainerKind,
}

/// The three container lists of a pod spec.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ContainerKind {
    /// `containers`
    Container,
    /// `initContainers`
    InitContainer,
    /// `ephemeralContainers`
    EphemeralContainer,
}

impl ContainerKind {
    /// Every kind, in the order images are reported.
    pub const ALL: [ContainerKind; 3] = [
        ContainerKind::Container,
        ContainerKind::InitContainer,
        ContainerKind::EphemeralContainer,
    ];

    /// The pod spec field that holds this list (`initContainers`).
    pub fn field_name(self) -> &'static str {
        match self {
            ContainerKind::Container => "containers",
            ContainerKind::InitContainer => "initContainers",
            ContainerKind::EphemeralContainer => "ephemeralContainers",
        }
    }
}

impl fmt::Display for ContainerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ContainerKind::Container => "container",
            ContainerKind::InitContainer => "init container",
            ContainerKind::EphemeralContainer => "ephemeral container",
        })
    }
}

/// What admission needs to know about one workload object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Workload {
    /// The object's kind as the request names it (`Deployment`).
    pub kind: String,
    /// The namespace the workload lives in.
    pub namespace: String,
    /// `metadata.name`, or `generateName` followed by `*` when the server has yet to pick the name
    /// (pods created by controllers), or empty when the object has neither.
    pub name: String,
    /// Every container image, in pod spec order: containers, then init, then ephemeral containers.
    pub images: Vec<WorkloadImage>,
    /// The object's own `metadata.annotations` (for a Deployment: the Deployment's, not the pod
    /// template's), where the breakglass annotation is read.
    pub annotations: BTreeMap<String, String>,
    /// RFC 6901 pointer to the pod spec in the object (`/spec/template/spec`).
    pub pod_spec_pointer: String,
    /// Names of the pod spec's `imagePullSecrets`, deduplicated, in order.
    pub image_pull_secrets: Vec<String>,
    /// The pod's service account, whose `imagePullSecrets` also apply. [`workload_of`] always
    /// gives `Some`: `"default"` when the spec names none, as Kubernetes does. `None` lets a
    /// workload built by hand (CLI, tests) say that no service account credentials apply.
    pub service_account: Option<String>,
}

/// Why the images of a workload cannot be read. Each names the field at fault in the form the API
/// server's own validation messages use (`spec.template.spec.containers[1].image`).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ImagesError {
    /// CREATE and UPDATE always carry the object; without it nothing can be checked.
    #[error("{operation} request for {kind} carries no object")]
    MissingObject { operation: String, kind: String },
    /// The kind is one signet handles, but in an API version whose layout it does not know.
    #[error("{kind} in API version {api_version:?} is not supported (expected v1)")]
    UnsupportedVersion { kind: String, api_version: String },
    /// A field on the way to the containers is absent or null.
    #[error("{field}: missing")]
    MissingField { field: String },
    /// A container names no image, or an empty one.
    #[error("{field}: missing or empty image")]
    EmptyImage { field: String },
    /// A field that must be a JSON object (pod spec, container, pull-secret entry) is not.
    #[error("{field}: not an object")]
    NotAnObject { field: String },
    /// A container list or `imagePullSecrets` is not an array.
    #[error("{field}: not an array")]
    NotAnArray { field: String },
    /// An image, container name, pull-secret name or service account is not a string.
    #[error("{field}: not a string")]
    NotAString { field: String },
}

/// The kinds signet checks: (API group, kind, path from the object root to the pod spec). All are
/// in version `v1`.
const HANDLED_KINDS: &[(&str, &str, &[&str])] = &[
    ("", "Pod", &["spec"]),
    ("", "ReplicationController", TEMPLATE_SPEC),
    ("", "PodTemplate", &["template", "spec"]),
    ("apps", "Deployment", TEMPLATE_SPEC),
    ("apps", "ReplicaSet", TEMPLATE_SPEC),
    ("apps", "StatefulSet", TEMPLATE_SPEC),
    ("apps", "DaemonSet", TEMPLATE_SPEC),
    ("batch", "Job", TEMPLATE_SPEC),
    ("batch", "CronJob", CRONJOB_TEMPLATE_SPEC),
];

const TEMPLATE_SPEC: &[&str] = &["spec", "template", "spec"];
const CRONJOB_TEMPLATE_SPEC: &[&str] = &["spec", "jobTemplate", "spec", "template", "spec"];

/// A field's location, kept in both forms: the RFC 6901 pointer for patches and the dotted path
/// for messages.
#[derive(Clone, Default)]
struct FieldPath {
    pointer: String,
    dotted: String,
}

impl FieldPath {
    fn key(&self, key: &str) -> Self {
        let escaped = key.replace('~', "~0").replace('/', "~1");
        let dotted = if self.dotted.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.dotted)
        };
        FieldPath {
            pointer: format!("{}/{escaped}", self.pointer),
            dotted,
        }
    }

    fn index(&self, index: usize) -> Self {
        FieldPath {
            pointer: format!("{}/{index}", self.pointer),
            dotted: format!("{}[{index}]", self.dotted),
        }
    }
}

/// Reads the workload in an admission request: `Ok(None)` when signet does not check this request
/// (see the module header), an error when it should but the object cannot be read.
pub fn workload_of(
    request: &AdmissionRequest<DynamicObject>,
) -> Result<Option<Workload>, ImagesError> {
    if !matches!(request.operation, Operation::Create | Operation::Update) {
        return Ok(None);
    }
    let Some((_, _, pod_spec_path)) = HANDLED_KINDS
        .iter()
        .find(|(group, kind, _)| *group == request.kind.group && *kind == request.kind.kind)
    else {
        return Ok(None);
    };
    if !subresource_is_checked(request) {
        return Ok(None);
    }
    if request.kind.version != "v1" {
        return Err(ImagesError::UnsupportedVersion {
            kind: request.kind.kind.clone(),
            api_version: api_version_of(&request.kind.group, &request.kind.version),
        });
    }
    let object = request
        .object
        .as_ref()
        .ok_or_else(|| ImagesError::MissingObject {
            operation: operation_name(&request.operation).to_string(),
            kind: request.kind.kind.clone(),
        })?;

    let (pod_spec, pod_spec_path) = pod_spec_of(&object.data, pod_spec_path)?;
    let images = images_of(pod_spec, &pod_spec_path)?;
    let image_pull_secrets = pull_secrets_of(pod_spec, &pod_spec_path)?;
    let service_account = service_account_of(pod_spec, &pod_spec_path)?;

    Ok(Some(Workload {
        kind: request.kind.kind.clone(),
        namespace: namespace_of(request, object),
        name: name_of(request, object),
        images,
        annotations: object.metadata.annotations.clone().unwrap_or_default(),
        pod_spec_pointer: pod_spec_path.pointer,
        image_pull_secrets,
        service_account: Some(service_account),
    }))
}

/// The images of a workload, each once, in the order they first appear.
pub fn distinct_images(workload: &Workload) -> Vec<String> {
    let mut seen = HashSet::new();
    workload
        .images
        .iter()
        .filter(|image| seen.insert(image.image.as_str()))
        .map(|image| image.image.clone())
        .collect()
}

/// The main resource is checked; of the subresources only `pods/ephemeralcontainers`, which adds
/// containers. The others (`status`, `binding`, `scale`...) cannot change an image.
fn subresource_is_checked(request: &AdmissionRequest<DynamicObject>) -> bool {
    match request.sub_resource.as_deref() {
        None | Some("") => true,
        Some(EPHEMERAL_CONTAINERS_SUBRESOURCE) => {
            request.kind.group.is_empty() && request.kind.kind == "Pod"
        }
        Some(_) => false,
    }
}

fn api_version_of(group: &str, version: &str) -> String {
    if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    }
}

fn operation_name(operation: &Operation) -> &'static str {
    match operation {
        Operation::Create => "CREATE",
        Operation::Update => "UPDATE",
        Operation::Delete => "DELETE",
        Operation::Connect => "CONNECT",
    }
}

/// Walks `path` from the object root to the pod spec. `data` holds every top-level field except
/// `apiVersion`, `kind` and `metadata`, so pointers into it are pointers into the whole object.
fn pod_spec_of<'a>(
    data: &'a Value,
    path: &[&str],
) -> Result<(&'a Map<String, Value>, FieldPath), ImagesError> {
    let mut here = FieldPath::default();
    let mut value = data;
    for key in path {
        let object = value.as_object().ok_or_else(|| ImagesError::NotAnObject {
            field: object_name(&here),
        })?;
        here = here.key(key);
        value = match object.get(*key) {
            None | Some(Value::Null) => {
                return Err(ImagesError::MissingField {
                    field: here.dotted.clone(),
                });
            }
            Some(child) => child,
        };
    }
    let spec = value.as_object().ok_or_else(|| ImagesError::NotAnObject {
        field: here.dotted.clone(),
    })?;
    Ok((spec, here))
}

/// How a message names the object root, which has no dotted path of its own.
fn object_name(path: &FieldPath) -> String {
    if path.dotted.is_empty() {
        "object".to_string()
    } else {
        path.dotted.clone()
    }
}

/// The elements of an optional array field: absent or null is empty.
fn optional_array<'a>(
    object: &'a Map<String, Value>,
    field: &FieldPath,
    key: &str,
) -> Result<&'a [Value], ImagesError> {
    match object.get(key) {
        None | Some(Value::Null) => Ok(&[]),
        Some(Value::Array(items)) => Ok(items),
        Some(_) => Err(ImagesError::NotAnArray {
            field: field.dotted.clone(),
        }),
    }
}

/// An optional string field: absent or null is `None`.
fn optional_string<'a>(
    object: &'a Map<String, Value>,
    field: &FieldPath,
    key: &str,
) -> Result<Option<&'a str>, ImagesError> {
    match object.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text)),
        Some(_) => Err(ImagesError::NotAString {
            field: field.dotted.clone(),
        }),
    }
}

fn images_of(
    pod_spec: &Map<String, Value>,
    pod_spec_path: &FieldPath,
) -> Result<Vec<WorkloadImage>, ImagesError> {
    let mut images = Vec::new();
    for kind in ContainerKind::ALL {
        let list_path = pod_spec_path.key(kind.field_name());
        let containers = optional_array(pod_spec, &list_path, kind.field_name())?;
        for (index, container) in containers.iter().enumerate() {
            let container_path = list_path.index(index);
            let container = container
                .as_object()
                .ok_or_else(|| ImagesError::NotAnObject {
                    field: container_path.dotted.clone(),
                })?;
            let name = optional_string(container, &container_path.key("name"), "name")?;
            let image_path = container_path.key("image");
            // The API server omits an empty image (`omitempty`), so absent and "" are one case.
            let image = optional_string(container, &image_path, "image")?
                .filter(|image| !image.trim().is_empty())
                .ok_or_else(|| ImagesError::EmptyImage {
                    field: image_path.dotted.clone(),
                })?;
            images.push(WorkloadImage {
                pointer: image_path.pointer,
                image: image.to_string(),
                container: name.unwrap_or_default().to_string(),
                kind,
            });
        }
    }
    Ok(images)
}

/// `imagePullSecrets[].name`, skipping entries without a name (Kubernetes ignores them too).
fn pull_secrets_of(
    pod_spec: &Map<String, Value>,
    pod_spec_path: &FieldPath,
) -> Result<Vec<String>, ImagesError> {
    let list_path = pod_spec_path.key("imagePullSecrets");
    let mut names: Vec<String> = Vec::new();
    for (index, entry) in optional_array(pod_spec, &list_path, "imagePullSecrets")?
        .iter()
        .enumerate()
    {
        let entry_path = list_path.index(index);
        let entry = entry.as_object().ok_or_else(|| ImagesError::NotAnObject {
            field: entry_path.dotted.clone(),
        })?;
        if let Some(name) = optional_string(entry, &entry_path.key("name"), "name")?
            && !name.is_empty()
            && !names.iter().any(|known| known == name)
        {
            names.push(name.to_string());
        }
    }
    Ok(names)
}

/// `serviceAccountName`, else the deprecated `serviceAccount` alias, else `default`.
fn service_account_of(
    pod_spec: &Map<String, Value>,
    pod_spec_path: &FieldPath,
) -> Result<String, ImagesError> {
    for key in ["serviceAccountName", "serviceAccount"] {
        if let Some(name) = optional_string(pod_spec, &pod_spec_path.key(key), key)?
            && !name.is_empty()
        {
            return Ok(name.to_string());
        }
    }
    Ok("default".to_string())
}

fn namespace_of(request: &AdmissionRequest<DynamicObject>, object: &DynamicObject) -> String {
    request
        .namespace
        .as_deref()
        .filter(|ns| !ns.is_empty())
        .or(object.metadata.namespace.as_deref())
        .unwrap_or_default()
        .to_string()
}

fn name_of(request: &AdmissionRequest<DynamicObject>, object: &DynamicObject) -> String {
    let metadata = &object.metadata;
    if let Some(name) = metadata.name.as_deref().filter(|n| !n.is_empty()) {
        return name.to_string();
    }
    if !request.name.is_empty() {
        return request.name.clone();
    }
    match metadata.generate_name.as_deref().filter(|n| !n.is_empty()) {
        Some(prefix) => format!("{prefix}*"),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::core::admission::AdmissionReview;
    use serde_json::json;

    /// An AdmissionRequest as the API server would send it, reduced to the fields that matter
    /// here. `gvk` is `group/version/Kind` (`v1/Pod` for the core group); `operation` may name a
    /// subresource after a space (`UPDATE status`).
    fn request(gvk: &str, operation: &str, object: Value) -> AdmissionRequest<DynamicObject> {
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
        let review: AdmissionReview<DynamicObject> = serde_json::from_value(json!({
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": request,
        }))
        .expect("admission review parses");
        review.try_into().expect("review holds a request")
    }

    fn pod(spec: Value) -> Value {
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web", "namespace": "shop"}, "spec": spec})
    }

    fn pod_request(spec: Value) -> AdmissionRequest<DynamicObject> {
        request("v1/Pod", "CREATE", pod(spec))
    }

    fn deployment_request(containers: Value) -> AdmissionRequest<DynamicObject> {
        let object = json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "shop"},
            "spec": {"template": {"spec": {"containers": containers}}},
        });
        request("apps/v1/Deployment", "CREATE", object)
    }

    fn workload(req: &AdmissionRequest<DynamicObject>) -> Workload {
        match workload_of(req) {
            Ok(Some(workload)) => workload,
            other => panic!("expected a workload, got {other:?}"),
        }
    }

    fn error(req: &AdmissionRequest<DynamicObject>) -> String {
        match workload_of(req) {
            Err(e) => e.to_string(),
            Ok(w) => panic!("expected an error, got {w:?}"),
        }
    }

    /// One line per image: pointer, image, container, kind.
    fn images(workload: &Workload) -> Vec<String> {
        let line =
            |i: &WorkloadImage| format!("{} {} {} ({})", i.pointer, i.image, i.container, i.kind);
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
                assert_eq!(gvk.rsplit('/').next(), Some(found.kind.as_str()));
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
        let object = req.object.as_mut().expect("object");
        let breakglass =
            BTreeMap::from([("signet.dev/breakglass".into(), "INC-1234 hotfix".into())]);
        object.metadata.annotations = Some(breakglass.clone());
        object.data["spec"]["template"]["metadata"] = json!({"annotations": {"from": "template"}});
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
    fn pointer_keys_are_escaped_per_rfc_6901() {
        let path = FieldPath::default().key("a/b").key("c~d").index(2);
        assert_eq!(path.pointer, "/a~1b/c~0d/2");
        assert_eq!(path.dotted, "a/b.c~d[2]");
        let value = json!({"a/b": {"c~d": [0, 1, "two"]}});
        assert_eq!(value.pointer(&path.pointer), Some(&json!("two")));
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
}
