//! Which images a workload runs: reads an AdmissionRequest and finds every container image, with
//! the JSON pointer of its field so that `/mutate` can pin it in place.
//!
//! The object is walked as plain JSON (`ReviewObject::data`, a `PrunedTree`) rather than
//! deserialised into the k8s-openapi types: only the pod spec matters, and a typed decode of a
//! whole Deployment would reject objects for reasons that have nothing to do with images. The
//! common case of a checked workload is read without the tree (`review_scan_workload.rs`, which
//! finds the same `PodParts`); both build the workload with `assemble`.
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

use std::borrow::Cow;
use std::collections::{BTreeMap, HashSet};
use std::fmt::{self, Write as _};

use kube::core::admission::Operation;

use super::pruned_tree::NodeRef;
use super::review::{ObjectMetadata, RequestKind, ReviewRequest, owned};

/// The Pod subresource whose requests are checked like the Pod itself (`kubectl debug`).
pub const EPHEMERAL_CONTAINERS_SUBRESOURCE: &str = "ephemeralcontainers";

/// One container image in a workload, as written, and where it is written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkloadImage<'a> {
    /// The position in its list (`containers`, `initContainers`, `ephemeralContainers` or
    /// `volumes`): with `kind`, where [`Workload::pointer_of`] finds the field.
    pub index: usize,
    /// The image reference exactly as the workload writes it (not normalised).
    pub image: Cow<'a, str>,
    /// The container's name, or the volume's for an image volume (empty when the object gives
    /// none; the API server rejects that later).
    pub container: Cow<'a, str>,
    /// Which container list (or the volumes) the image comes from.
    pub kind: ContainerKind,
}

/// Where in a pod spec an image is named: the three container lists, and image volumes
/// (`volumes[].image.reference`, an OCI image mounted as a volume, which the kubelet pulls like a
/// container image: left unchecked, a pod could mount an unsigned image). Ordered as a workload
/// lists its images: containers, init, ephemeral containers, then image volumes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ContainerKind {
    /// `containers`
    Container,
    /// `initContainers`
    InitContainer,
    /// `ephemeralContainers`
    EphemeralContainer,
    /// `volumes[].image`
    ImageVolume,
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
            ContainerKind::ImageVolume => "volumes",
        }
    }
}

impl fmt::Display for ContainerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ContainerKind::Container => "container",
            ContainerKind::InitContainer => "init container",
            ContainerKind::EphemeralContainer => "ephemeral container",
            ContainerKind::ImageVolume => "image volume",
        })
    }
}

/// What admission needs to know about one workload object. Its strings borrow from the
/// request it was read from (see [`super::review::ReviewRequest`]); [`Workload::into_owned`]
/// detaches one, for work that outlives the request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Workload<'a> {
    /// The object's kind as the request names it (`Deployment`).
    pub kind: Cow<'a, str>,
    /// The namespace the workload lives in.
    pub namespace: Cow<'a, str>,
    /// `metadata.name`, or `generateName` followed by `*` when the server has yet to pick the name
    /// (pods created by controllers), or empty when the object has neither.
    pub name: Cow<'a, str>,
    /// Every container image, in pod spec order: containers, then init, then ephemeral containers.
    pub images: Vec<WorkloadImage<'a>>,
    /// The object's own `metadata.annotations` (for a Deployment: the Deployment's, not the pod
    /// template's), where the breakglass annotation is read.
    pub annotations: BTreeMap<String, String>,
    /// The annotations of the templates between the object and its pod spec (a CronJob's job
    /// template, then the pod template), outer first; empty for a Pod. They become the
    /// annotations of the objects a controller creates, so breakglass is read here too.
    pub template_annotations: BTreeMap<String, String>,
    /// RFC 6901 pointer to the pod spec in the object (`/spec/template/spec`).
    pub pod_spec_pointer: &'static str,
    /// Names of the pod spec's `imagePullSecrets`, deduplicated, in order.
    pub image_pull_secrets: Vec<Cow<'a, str>>,
    /// The pod's service account, whose `imagePullSecrets` also apply. [`workload_of`] always
    /// gives `Some`: `"default"` when the spec names none, as Kubernetes does. `None` lets a
    /// workload built by hand (CLI, tests) say that no service account credentials apply.
    pub service_account: Option<Cow<'a, str>>,
}

impl Workload<'_> {
    /// The same workload owning its strings.
    pub fn into_owned(self) -> Workload<'static> {
        Workload {
            kind: owned(self.kind),
            namespace: owned(self.namespace),
            name: owned(self.name),
            images: self
                .images
                .into_iter()
                .map(|image| WorkloadImage {
                    index: image.index,
                    image: owned(image.image),
                    container: owned(image.container),
                    kind: image.kind,
                })
                .collect(),
            annotations: self.annotations,
            template_annotations: self.template_annotations,
            pod_spec_pointer: self.pod_spec_pointer,
            image_pull_secrets: self.image_pull_secrets.into_iter().map(owned).collect(),
            service_account: self.service_account.map(owned),
        }
    }

    /// RFC 6901 JSON pointer to the field `image` names in the object, e.g.
    /// `/spec/template/spec/containers/0/image`: the path a JSON patch replaces. Written only
    /// when asked (by `/mutate`), not for every image read.
    pub fn pointer_of(&self, image: &WorkloadImage<'_>) -> String {
        let tail = match image.kind {
            ContainerKind::ImageVolume => "image/reference",
            _ => "image",
        };
        let mut out = String::with_capacity(self.pod_spec_pointer.len() + 40);
        out.push_str(self.pod_spec_pointer);
        out.push('/');
        out.push_str(image.kind.field_name());
        out.push('/');
        out.push_str(itoa::Buffer::new().format(image.index));
        out.push('/');
        out.push_str(tail);
        out
    }
}

/// Why the images of a workload cannot be read. Each names the field at fault in the form the API
/// server's own validation messages use (`spec.template.spec.containers[1].image`).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ImagesError {
    /// CREATE and UPDATE always carry the object; without it nothing can be checked.
    #[error("{operation} request for {kind} carries no object")]
    MissingObject {
        /// The admission operation, `CREATE` or `UPDATE`.
        operation: String,
        /// The object's kind, e.g. `Deployment`.
        kind: String,
    },
    /// The kind is one signet handles, but in an API version whose layout it does not know.
    #[error("{kind} in API version {api_version:?} is not supported (expected v1)")]
    UnsupportedVersion {
        /// The object's kind, e.g. `Deployment`.
        kind: String,
        /// The API version the request came in, `group/version` (or `version` for the core
        /// group).
        api_version: String,
    },
    /// A field on the way to the containers is absent or null.
    #[error("{field}: missing")]
    MissingField {
        /// The absent or null field, e.g. `spec.template.spec`.
        field: String,
    },
    /// A container names no image, or an empty one.
    #[error("{field}: missing or empty image")]
    EmptyImage {
        /// The container's image field, e.g. `spec.containers[1].image`.
        field: String,
    },
    /// A field that must be a JSON object (pod spec, container, pull-secret entry) is not.
    #[error("{field}: not an object")]
    NotAnObject {
        /// The field, e.g. `spec.containers[0]`.
        field: String,
    },
    /// A container list or `imagePullSecrets` is not an array.
    #[error("{field}: not an array")]
    NotAnArray {
        /// The field, e.g. `spec.initContainers`.
        field: String,
    },
    /// An image, container name, pull-secret name or service account is not a string.
    #[error("{field}: not a string")]
    NotAString {
        /// The field, e.g. `spec.imagePullSecrets[0].name`.
        field: String,
    },
}

/// The kinds signet checks: (API group, kind, path from the object root to the pod spec, the
/// same path as an RFC 6901 pointer). All are in version `v1`.
const HANDLED_KINDS: &[(&str, &str, &[&str], &str)] = &[
    ("", "Pod", &["spec"], "/spec"),
    (
        "",
        "ReplicationController",
        TEMPLATE_SPEC,
        "/spec/template/spec",
    ),
    ("", "PodTemplate", &["template", "spec"], "/template/spec"),
    ("apps", "Deployment", TEMPLATE_SPEC, "/spec/template/spec"),
    ("apps", "ReplicaSet", TEMPLATE_SPEC, "/spec/template/spec"),
    ("apps", "StatefulSet", TEMPLATE_SPEC, "/spec/template/spec"),
    ("apps", "DaemonSet", TEMPLATE_SPEC, "/spec/template/spec"),
    ("batch", "Job", TEMPLATE_SPEC, "/spec/template/spec"),
    (
        "batch",
        "CronJob",
        CRONJOB_TEMPLATE_SPEC,
        "/spec/jobTemplate/spec/template/spec",
    ),
];

const TEMPLATE_SPEC: &[&str] = &["spec", "template", "spec"];
const CRONJOB_TEMPLATE_SPEC: &[&str] = &["spec", "jobTemplate", "spec", "template", "spec"];

/// A field's location, written out only when needed, as the dotted path of an error message.
/// Built by borrowing the parent, so walking a pod spec allocates nothing unless an error's path
/// is asked for.
#[derive(Clone, Copy)]
enum FieldPath<'a> {
    /// Keys from the object root.
    Keys(&'a [&'a str]),
    /// A key of an object.
    Key(&'a FieldPath<'a>, &'a str),
    /// An element of an array.
    Index(&'a FieldPath<'a>, usize),
}

impl<'a> FieldPath<'a> {
    fn key(&'a self, key: &'a str) -> FieldPath<'a> {
        FieldPath::Key(self, key)
    }

    fn index(&'a self, index: usize) -> FieldPath<'a> {
        FieldPath::Index(self, index)
    }

    fn dotted(&self) -> String {
        let mut out = String::with_capacity(48);
        self.write_dotted(&mut out);
        out
    }

    fn write_dotted(&self, out: &mut String) {
        let push_key = |out: &mut String, key: &str| {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(key);
        };
        match self {
            FieldPath::Keys(keys) => keys.iter().for_each(|key| push_key(out, key)),
            FieldPath::Key(parent, key) => {
                parent.write_dotted(out);
                push_key(out, key);
            }
            FieldPath::Index(parent, index) => {
                parent.write_dotted(out);
                let _ = write!(out, "[{index}]");
            }
        }
    }
}

/// Reads the workload in an admission request: `Ok(None)` when signet does not check this request
/// (see the module header), an error when it should but the object cannot be read.
pub fn workload_of<'a>(
    request: &'a ReviewRequest<'_>,
) -> Result<Option<Workload<'a>>, ImagesError> {
    let Some(route) = pod_spec_route(
        &request.kind,
        &request.operation,
        request.sub_resource.as_deref(),
    )?
    else {
        return Ok(None);
    };
    let object = request
        .object
        .as_ref()
        .ok_or_else(|| ImagesError::MissingObject {
            operation: operation_name(&request.operation).to_string(),
            kind: request.kind.kind.to_string(),
        })?;

    let data = object.data.root();
    let (pod_spec, pod_spec_path) = pod_spec_of(data, route.keys)?;
    let pod = PodParts {
        images: images_of(pod_spec, &pod_spec_path)?,
        image_pull_secrets: pull_secrets_of(pod_spec, &pod_spec_path)?,
        service_account: service_account_of(pod_spec, &pod_spec_path)?,
        template_annotations: template_annotations_of(data, route.keys),
    };
    Ok(Some(assemble(request, &object.metadata, route, pod)))
}

/// Where a kind signet checks keeps its pod spec.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct PodSpecRoute {
    /// The keys from the object root to the pod spec (`["spec", "template", "spec"]`).
    pub(super) keys: &'static [&'static str],
    /// The same path as an RFC 6901 pointer (`/spec/template/spec`).
    pub(super) pointer: &'static str,
}

/// Whether a request of this kind, operation and subresource is checked (`Ok(None)`: allowed
/// untouched), and if so where its object keeps the pod spec. A handled kind in another version
/// than `v1` is an error.
pub(super) fn pod_spec_route(
    kind: &RequestKind<'_>,
    operation: &Operation,
    sub_resource: Option<&str>,
) -> Result<Option<PodSpecRoute>, ImagesError> {
    if !matches!(operation, Operation::Create | Operation::Update) {
        return Ok(None);
    }
    let Some((_, _, keys, pointer)) = HANDLED_KINDS
        .iter()
        .find(|(group, handled, _, _)| *group == kind.group && *handled == kind.kind)
    else {
        return Ok(None);
    };
    if !subresource_is_checked(kind, sub_resource) {
        return Ok(None);
    }
    if kind.version != "v1" {
        return Err(ImagesError::UnsupportedVersion {
            kind: kind.kind.to_string(),
            api_version: api_version_of(&kind.group, &kind.version),
        });
    }
    Ok(Some(PodSpecRoute { keys, pointer }))
}

/// What a workload's pod spec, and the templates on the way to it, say: what either reader of a
/// review (the tree walk here, or `review_scan`'s straight read) finds.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct PodParts<'a> {
    /// Every image, in [`Workload::images`] order.
    pub(super) images: Vec<WorkloadImage<'a>>,
    /// [`Workload::image_pull_secrets`].
    pub(super) image_pull_secrets: Vec<Cow<'a, str>>,
    /// The service account (`default` when the spec names none).
    pub(super) service_account: Cow<'a, str>,
    /// [`Workload::template_annotations`].
    pub(super) template_annotations: BTreeMap<String, String>,
}

/// The workload of a checked request from its object's metadata and pod parts. Its strings are
/// the request's own (a copy of a borrowed one borrows the body): the workload does not borrow
/// the request, and can go on without it.
pub(super) fn assemble<'a>(
    request: &ReviewRequest<'a>,
    metadata: &ObjectMetadata<'a>,
    route: PodSpecRoute,
    pod: PodParts<'a>,
) -> Workload<'a> {
    Workload {
        kind: request.kind.kind.clone(),
        namespace: namespace_of(request, metadata),
        name: name_of(request, metadata),
        images: pod.images,
        annotations: metadata
            .annotations
            .iter()
            .flatten()
            .map(|(key, value)| (key.to_string(), value.to_string()))
            .collect(),
        template_annotations: pod.template_annotations,
        pod_spec_pointer: route.pointer,
        image_pull_secrets: pod.image_pull_secrets,
        service_account: Some(pod.service_account),
    }
}

/// The string annotations of every `metadata` met on the way to the pod spec (below the root,
/// whose metadata the object carries apart), outer first; an inner value wins on the same key.
/// Fields of the wrong type are skipped: the images, not these, decide whether the object reads.
/// Of a key written twice in one `annotations`, the last counts, whatever its type.
fn template_annotations_of(data: NodeRef, path: &[&str]) -> BTreeMap<String, String> {
    let mut found = BTreeMap::new();
    let mut node = data;
    for key in path {
        let Some(child) = node.get(key) else { break };
        node = child;
        let Some(entries) = node
            .get("metadata")
            .and_then(|m| m.get("annotations"))
            .and_then(NodeRef::entries)
        else {
            continue;
        };
        let mut level: BTreeMap<&str, Option<&str>> = BTreeMap::new();
        for (name, value) in entries {
            level.insert(name, value.as_str());
        }
        for (name, text) in level {
            if let Some(text) = text {
                found.insert(name.to_string(), text.to_string());
            }
        }
    }
    found
}

/// The images of a workload, each once, in the order they first appear.
pub fn distinct_images<'w>(workload: &'w Workload<'_>) -> Vec<&'w str> {
    let images = &workload.images;
    let mut distinct: Vec<&str> = Vec::with_capacity(images.len());
    // A pod names a handful of images: comparing each with those kept so far is cheaper than
    // hashing them, and allocates nothing besides the list.
    if images.len() <= LINEAR_DEDUP_LIMIT {
        for image in images {
            if !distinct.iter().any(|known| *known == image.image) {
                distinct.push(&image.image);
            }
        }
        return distinct;
    }
    // foldhash, randomly seeded, rather than SipHash; the seed keeps a crafted pod of colliding
    // names from costing more.
    let mut seen =
        HashSet::with_capacity_and_hasher(images.len(), foldhash::fast::RandomState::default());
    distinct.extend(
        images
            .iter()
            .filter(|image| seen.insert(&*image.image))
            .map(|image| &*image.image),
    );
    distinct
}

/// Up to this many images are told apart by comparing each with every other (at most 120
/// comparisons); more, by hashing, so that a crafted pod of thousands of containers stays linear.
const LINEAR_DEDUP_LIMIT: usize = 16;

/// The main resource is checked; of the subresources only `pods/ephemeralcontainers`, which adds
/// containers. The others (`status`, `binding`, `scale`...) cannot change an image.
fn subresource_is_checked(kind: &RequestKind<'_>, sub_resource: Option<&str>) -> bool {
    match sub_resource {
        None | Some("") => true,
        Some(EPHEMERAL_CONTAINERS_SUBRESOURCE) => kind.group.is_empty() && kind.kind == "Pod",
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
    data: NodeRef<'a>,
    path: &'static [&'static str],
) -> Result<(NodeRef<'a>, FieldPath<'static>), ImagesError> {
    let mut value = data;
    for (depth, key) in path.iter().enumerate() {
        if !value.is_object() {
            return Err(ImagesError::NotAnObject {
                field: object_name(&FieldPath::Keys(&path[..depth])),
            });
        }
        value = present(value, key).ok_or_else(|| ImagesError::MissingField {
            field: FieldPath::Keys(&path[..=depth]).dotted(),
        })?;
    }
    let here = FieldPath::Keys(path);
    if !value.is_object() {
        return Err(ImagesError::NotAnObject {
            field: here.dotted(),
        });
    }
    Ok((value, here))
}

/// How a message names the object root, which has no dotted path of its own.
fn object_name(path: &FieldPath) -> String {
    let dotted = path.dotted();
    if dotted.is_empty() {
        "object".to_string()
    } else {
        dotted
    }
}

/// The value of `key` in an object, unless absent or null (which every optional field reads as
/// absent).
fn present<'a>(object: NodeRef<'a>, key: &str) -> Option<NodeRef<'a>> {
    object.get(key).filter(|value| !value.is_null())
}

/// The elements of an optional array field of an object: absent or null is empty.
fn optional_array<'a>(
    object: NodeRef<'a>,
    field: &FieldPath,
    key: &str,
) -> Result<impl Iterator<Item = NodeRef<'a>>, ImagesError> {
    let items = match present(object, key) {
        Some(value) => Some(value.elements().ok_or_else(|| ImagesError::NotAnArray {
            field: field.dotted(),
        })?),
        None => None,
    };
    Ok(items.into_iter().flatten())
}

/// An optional string field of an object: absent or null is `None`.
fn optional_string<'a>(
    object: NodeRef<'a>,
    field: &FieldPath,
    key: &str,
) -> Result<Option<&'a str>, ImagesError> {
    present(object, key)
        .map(|value| {
            value.as_str().ok_or_else(|| ImagesError::NotAString {
                field: field.dotted(),
            })
        })
        .transpose()
}

/// An element that must be an object.
fn object_at<'a>(element: NodeRef<'a>, field: &FieldPath) -> Result<NodeRef<'a>, ImagesError> {
    if element.is_object() {
        Ok(element)
    } else {
        Err(ImagesError::NotAnObject {
            field: field.dotted(),
        })
    }
}

fn images_of<'a>(
    pod_spec: NodeRef<'a>,
    pod_spec_path: &FieldPath,
) -> Result<Vec<WorkloadImage<'a>>, ImagesError> {
    let mut images = Vec::new();
    for kind in ContainerKind::ALL {
        let list_path = pod_spec_path.key(kind.field_name());
        let containers = optional_array(pod_spec, &list_path, kind.field_name())?;
        for (index, container) in containers.enumerate() {
            let container_path = list_path.index(index);
            let container = object_at(container, &container_path)?;
            let name = optional_string(container, &container_path.key("name"), "name")?;
            let image_path = container_path.key("image");
            // The API server omits an empty image (`omitempty`), so absent and "" are one case.
            let image = optional_string(container, &image_path, "image")?
                .filter(|image| !image.trim().is_empty())
                .ok_or_else(|| ImagesError::EmptyImage {
                    field: image_path.dotted(),
                })?;
            images.push(WorkloadImage {
                index,
                image: Cow::Borrowed(image),
                container: Cow::Borrowed(name.unwrap_or_default()),
                kind,
            });
        }
    }
    images.extend(image_volumes_of(pod_spec, pod_spec_path)?);
    Ok(images)
}

/// `volumes[].image.reference` of every image volume, like a container image: absent or empty is
/// an error (the kubelet could not pull it either, and "no image" must not mean "unchecked").
fn image_volumes_of<'a>(
    pod_spec: NodeRef<'a>,
    pod_spec_path: &FieldPath,
) -> Result<Vec<WorkloadImage<'a>>, ImagesError> {
    let list_path = pod_spec_path.key("volumes");
    let mut images = Vec::new();
    for (index, volume) in optional_array(pod_spec, &list_path, "volumes")?.enumerate() {
        let volume_path = list_path.index(index);
        let volume = object_at(volume, &volume_path)?;
        let source_path = volume_path.key("image");
        let Some(source) = present(volume, "image") else {
            continue;
        };
        let source = object_at(source, &source_path)?;
        let name = optional_string(volume, &volume_path.key("name"), "name")?;
        let reference_path = source_path.key("reference");
        let reference = optional_string(source, &reference_path, "reference")?
            .filter(|reference| !reference.trim().is_empty())
            .ok_or_else(|| ImagesError::EmptyImage {
                field: reference_path.dotted(),
            })?;
        images.push(WorkloadImage {
            index,
            image: Cow::Borrowed(reference),
            container: Cow::Borrowed(name.unwrap_or_default()),
            kind: ContainerKind::ImageVolume,
        });
    }
    Ok(images)
}

/// `imagePullSecrets[].name`, skipping entries without a name (Kubernetes ignores them too).
fn pull_secrets_of<'a>(
    pod_spec: NodeRef<'a>,
    pod_spec_path: &FieldPath,
) -> Result<Vec<Cow<'a, str>>, ImagesError> {
    let list_path = pod_spec_path.key("imagePullSecrets");
    let mut names: Vec<Cow<'a, str>> = Vec::new();
    for (index, entry) in optional_array(pod_spec, &list_path, "imagePullSecrets")?.enumerate() {
        let entry_path = list_path.index(index);
        let entry = object_at(entry, &entry_path)?;
        if let Some(name) = optional_string(entry, &entry_path.key("name"), "name")?
            && !name.is_empty()
            && !names.iter().any(|known| known == name)
        {
            names.push(Cow::Borrowed(name));
        }
    }
    Ok(names)
}

/// `serviceAccountName`, else the deprecated `serviceAccount` alias, else `default`.
fn service_account_of<'a>(
    pod_spec: NodeRef<'a>,
    pod_spec_path: &FieldPath,
) -> Result<Cow<'a, str>, ImagesError> {
    for key in ["serviceAccountName", "serviceAccount"] {
        if let Some(name) = optional_string(pod_spec, &pod_spec_path.key(key), key)?
            && !name.is_empty()
        {
            return Ok(Cow::Borrowed(name));
        }
    }
    Ok(Cow::Borrowed("default"))
}

fn namespace_of<'a>(request: &ReviewRequest<'a>, metadata: &ObjectMetadata<'a>) -> Cow<'a, str> {
    request
        .namespace
        .as_ref()
        .filter(|ns| !ns.is_empty())
        .or(metadata.namespace.as_ref())
        .cloned()
        .unwrap_or_default()
}

fn name_of<'a>(request: &ReviewRequest<'a>, metadata: &ObjectMetadata<'a>) -> Cow<'a, str> {
    if let Some(name) = metadata.name.as_ref().filter(|n| !n.is_empty()) {
        return name.clone();
    }
    if !request.name.is_empty() {
        return request.name.clone();
    }
    match metadata.generate_name.as_deref().filter(|n| !n.is_empty()) {
        Some(prefix) => Cow::Owned(format!("{prefix}*")),
        None => Cow::Borrowed(""),
    }
}

#[cfg(test)]
#[path = "images_tests.rs"]
mod tests;
