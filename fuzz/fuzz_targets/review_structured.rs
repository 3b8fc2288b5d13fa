//! The AdmissionReview readers on valid-looking reviews: the rules of `review_check.rs` (the
//! one-pass reader against the serde_json reference, the workload reader against the general
//! one), where the fuzzer's bytes do not become the body but choose edits of a real review.
//!
//! Why: `review_differential` mutates bytes, and so explores mostly broken JSON (of the inputs its
//! corpus kept, under one in a hundred was a review, fewer still read by the workload reader). The
//! workload reader's rules are about reviews that parse: the order of the request's fields, keys
//! written twice, nulls and numbers on the path to the pod spec, kinds, operations and
//! subresources. Here every input starts from a review of `tests/fixtures/admission/` (as the API
//! server writes it: request fields in Go struct order), applies a few edits chosen by the input
//! (values replaced, keys deleted, doubled, inserted or reordered, kinds and operations changed,
//! containers, image volumes, pull secrets and annotations added or removed), and writes the
//! result out as JSON text, compact most of the time, for `review_check::check`.
//!
//! The review is held in a small ordered tree of its own (`review_tree.rs`: objects as lists of
//! fields, strings as their JSON text between the quotes), so that key order, duplicate keys, lone
//! surrogates and number spellings can all be written; serde_json's `preserve_order` would change
//! the library. The edits draw their values from `review_vocabulary.rs`.
//!
//! With `SIGNET_FUZZ_COUNT=1` set, the target prints, per input, whether the emitted body was read
//! as a review and by the workload reader (to measure how much of a corpus is valid reviews), e.g.
//! from `fuzz/`: `SIGNET_FUZZ_COUNT=1 target/x86_64-unknown-linux-gnu/release/review_structured
//! -detect_leaks=0 corpus/review_structured/*` (the leak check would run some inputs twice).
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;

#[path = "review_check.rs"]
mod review_check;
#[path = "review_tree.rs"]
mod review_tree;
#[path = "review_vocabulary.rs"]
mod review_vocabulary;

use review_tree::{Node, Style, at, at_mut, collect, emit, escape, find, obj, s};
use review_vocabulary::{
    CRON_ROUTE, KINDS, POD_ROUTE, POD_SPEC_ORDER, POD_TEMPLATE_ROUTE, REQUEST_ORDER,
    TEMPLATE_ROUTE, container, image, key, number, scalar, text,
};

/// Where the review's pod spec is, whatever its kind says: the first route that leads to an
/// object.
fn pod_spec_path(review: &Node) -> Option<Vec<usize>> {
    let object = find(review, &["request", "object"])?;
    let root = at(review, &object)?;
    [CRON_ROUTE, TEMPLATE_ROUTE, POD_TEMPLATE_ROUTE, POD_ROUTE]
        .into_iter()
        .find_map(|route| {
            let path = find(root, route)?;
            matches!(at(root, &path)?, Node::Object(_)).then(|| [object.clone(), path].concat())
        })
}

/// The paths of a node of the review to edit: anywhere, in the request, in the object, or
/// (most often) in the pod spec.
fn pick(u: &mut Unstructured, review: &Node) -> Result<Vec<usize>> {
    let scope = match u.int_in_range(0..=5)? {
        0 => Some(Vec::new()),
        1 => find(review, &["request"]),
        2 => find(review, &["request", "object"]),
        _ => pod_spec_path(review),
    }
    .unwrap_or_default();
    let mut paths = Vec::new();
    if let Some(node) = at(review, &scope) {
        let mut prefix = scope.clone();
        collect(node, &mut prefix, &mut paths);
    }
    Ok(u.choose(&paths)?.clone())
}

/// An object of the review (its path), picked as `pick` does.
fn pick_object(u: &mut Unstructured, review: &Node) -> Result<Option<Vec<usize>>> {
    let path = pick(u, review)?;
    let Some(mut node) = at(review, &path) else {
        return Ok(None);
    };
    // Up to the nearest object.
    let mut path = path;
    while !matches!(node, Node::Object(_)) {
        if path.pop().is_none() {
            return Ok(None);
        }
        let Some(parent) = at(review, &path) else {
            return Ok(None);
        };
        node = parent;
    }
    Ok(Some(path))
}

fn edit(u: &mut Unstructured, review: &mut Node) -> Result<()> {
    match u.int_in_range(0..=29)? {
        // A string replaced.
        0 | 1 => {
            let (path, value) = (pick(u, review)?, text(u)?);
            if let Some(node) = at_mut(review, &path)
                && !matches!(node, Node::Object(_) | Node::Array(_))
            {
                *node = Node::String(value);
            }
        }
        // Any value replaced by a scalar or an empty container.
        2 => {
            let path = pick(u, review)?;
            let value = scalar(u)?;
            if let Some(node) = at_mut(review, &path) {
                *node = value;
            }
        }
        // A key deleted, doubled, inserted; two keys swapped.
        3..=6 => {
            let Some(path) = pick_object(u, review)? else {
                return Ok(());
            };
            let choice = u.int_in_range(0..=3)?;
            let (new_key, value, same) = (key(u)?, scalar(u)?, u.arbitrary::<bool>()?);
            let (a, b) = (u.arbitrary::<u16>()?, u.arbitrary::<u16>()?);
            let Some(fields) = at_mut(review, &path).and_then(Node::fields_mut) else {
                return Ok(());
            };
            let len = fields.len();
            match choice {
                0 if len > 0 => {
                    fields.remove(usize::from(a) % len);
                }
                1 if len > 0 => {
                    let (k, v) = fields[usize::from(a) % len].clone();
                    let v = if same { v } else { value };
                    fields.insert(usize::from(b) % (len + 1), (k, v));
                }
                2 => fields.insert(usize::from(b) % (len + 1), (new_key, value)),
                _ if len > 1 => fields.swap(usize::from(a) % len, usize::from(b) % len),
                _ => {}
            }
        }
        // A value wrapped in an array.
        7 => {
            let path = pick(u, review)?;
            if let Some(node) = at_mut(review, &path) {
                *node = Node::Array(vec![std::mem::replace(node, Node::Null)]);
            }
        }
        // The request's `object` moved before `kind` or `operation`, or anywhere.
        8 => {
            let to = u.choose(&["uid", "kind", "resource", "operation", "userInfo", ""])?;
            let Some(request) = review.get_mut("request").and_then(Node::fields_mut) else {
                return Ok(());
            };
            let Some(from) = request.iter().position(|(k, _)| k == "object") else {
                return Ok(());
            };
            let field = request.remove(from);
            let at = request.iter().position(|(k, _)| k == to).unwrap_or(0);
            request.insert(at, field);
        }
        9..=11 => change_kind(u, review)?,
        12 => change_operation(u, review)?,
        13 => change_sub_resource(u, review)?,
        14..=18 => containers(u, review)?,
        19 | 20 => image_volumes(u, review)?,
        21 | 22 => pull_secrets(u, review)?,
        23 | 24 => annotations(u, review)?,
        25 => service_account(u, review)?,
        26 => kept_beside(u, review)?,
        _ => head(u, review)?,
    }
    Ok(())
}

/// The kind (and the object reshaped to it, most of the time).
fn change_kind(u: &mut Unstructured, review: &mut Node) -> Result<()> {
    let &(group, kind, resource, route) = u.choose(KINDS)?;
    let version = if u.ratio(1, 8)? { "v1beta1" } else { "v1" };
    let which = u.int_in_range(0..=3)?;
    let reshape = u.ratio(3, 4)?;
    let api_version = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    let pod_spec = pod_spec_path(review)
        .and_then(|path| at(review, &path).cloned())
        .unwrap_or_else(|| obj(vec![("containers", Node::Array(Vec::new()))]));
    let Some(request) = review.get_mut("request") else {
        return Ok(());
    };
    let kind_node = obj(vec![
        ("group", s(group)),
        ("version", s(version)),
        ("kind", s(kind)),
    ]);
    let resource_node = obj(vec![
        ("group", s(group)),
        ("version", s(version)),
        ("resource", s(resource)),
    ]);
    // Mostly all four, sometimes only `kind` or only `requestKind`.
    if which != 2 {
        request.set("kind", kind_node.clone(), REQUEST_ORDER);
        request.set("resource", resource_node.clone(), REQUEST_ORDER);
    }
    if which != 1 {
        request.set("requestKind", kind_node, REQUEST_ORDER);
        request.set("requestResource", resource_node, REQUEST_ORDER);
    }
    if !reshape {
        return Ok(());
    }
    let Some(object) = request.get_mut("object") else {
        return Ok(());
    };
    let metadata = object
        .get("metadata")
        .cloned()
        .unwrap_or_else(|| obj(vec![("name", s("x"))]));
    let template = |spec: Node| {
        obj(vec![
            (
                "metadata",
                obj(vec![("labels", obj(vec![("app", s("x"))]))]),
            ),
            ("spec", spec),
        ])
    };
    let body = match route {
        POD_ROUTE => ("spec", pod_spec),
        POD_TEMPLATE_ROUTE => ("template", template(pod_spec)),
        CRON_ROUTE => (
            "spec",
            obj(vec![
                ("schedule", s("*/5 * * * *")),
                (
                    "jobTemplate",
                    obj(vec![
                        ("metadata", Node::Object(Vec::new())),
                        ("spec", obj(vec![("template", template(pod_spec))])),
                    ]),
                ),
                ("suspend", Node::Bool(false)),
            ]),
        ),
        TEMPLATE_ROUTE => (
            "spec",
            obj(vec![
                ("replicas", Node::Number("1".into())),
                (
                    "selector",
                    obj(vec![("matchLabels", obj(vec![("app", s("x"))]))]),
                ),
                ("template", template(pod_spec)),
            ]),
        ),
        _ => ("data", obj(vec![("a", s("b"))])),
    };
    *object = obj(vec![
        ("kind", s(kind)),
        ("apiVersion", Node::String(api_version)),
        ("metadata", metadata),
        body,
    ]);
    Ok(())
}

fn change_operation(u: &mut Unstructured, review: &mut Node) -> Result<()> {
    let operation = *u.choose(&[
        "CREATE", "CREATE", "UPDATE", "UPDATE", "DELETE", "CONNECT", "create", "",
    ])?;
    let drop_object = u.ratio(1, 2)?;
    let Some(request) = review.get_mut("request") else {
        return Ok(());
    };
    request.set("operation", s(operation), REQUEST_ORDER);
    match operation {
        // What the API server sends: the old object, no new one.
        "DELETE" if drop_object => {
            let object = request.get("object").cloned().unwrap_or(Node::Null);
            request.set("object", Node::Null, REQUEST_ORDER);
            request.set("oldObject", object, REQUEST_ORDER);
        }
        "UPDATE" if drop_object => {
            let object = request.get("object").cloned().unwrap_or(Node::Null);
            request.set("oldObject", object, REQUEST_ORDER);
        }
        _ => {}
    }
    Ok(())
}

fn change_sub_resource(u: &mut Unstructured, review: &mut Node) -> Result<()> {
    let value = match u.int_in_range(0..=7)? {
        0..=2 => s("ephemeralcontainers"),
        3 => s("status"),
        4 => s(""),
        5 => s("scale"),
        6 => Node::Null,
        _ => Node::String(text(u)?),
    };
    let how = u.int_in_range(0..=5)?;
    let Some(request) = review.get_mut("request") else {
        return Ok(());
    };
    match how {
        // Where the API server writes it, with `requestSubResource` or without.
        0 | 1 => {
            request.set("subResource", value.clone(), REQUEST_ORDER);
            if how == 0 {
                request.set("requestSubResource", value, REQUEST_ORDER);
            }
        }
        2 => {
            request.remove("subResource");
            request.remove("requestSubResource");
        }
        // After the object, alone or as a second one.
        _ => {
            if how == 3 {
                request.remove("subResource");
            }
            if let Some(fields) = request.fields_mut() {
                let at = fields
                    .iter()
                    .position(|(k, _)| k == "object")
                    .map_or(fields.len(), |i| i + 1);
                fields.insert(at, ("subResource".to_string(), value));
            }
        }
    }
    Ok(())
}

fn containers(u: &mut Unstructured, review: &mut Node) -> Result<()> {
    let list = *u.choose(&["containers", "initContainers", "ephemeralContainers"])?;
    let choice = u.int_in_range(0..=9)?;
    let name = if u.ratio(1, 8)? {
        text(u)?
    } else {
        format!("c{}", u.int_in_range(0..=3)?)
    };
    let new = container(u, &name)?;
    let (a, value) = (u.arbitrary::<u16>()?, image(u)?);
    let Some(spec) = pod_spec_path(review).and_then(|path| at_mut(review, &path)) else {
        return Ok(());
    };
    if spec.get(list).is_none() {
        spec.set(list, Node::Array(Vec::new()), POD_SPEC_ORDER);
    }
    let Some(node) = spec.get_mut(list) else {
        return Ok(());
    };
    let Node::Array(items) = node else {
        *node = Node::Array(vec![new]);
        return Ok(());
    };
    let len = items.len();
    let index = usize::from(a) % len.max(1);
    match choice {
        0..=2 => items.insert(usize::from(a) % (len + 1), new),
        3 if len > 0 => {
            items.remove(index);
        }
        4 => *node = scalar(u)?,
        // One container's image changed, removed, doubled.
        _ if len > 0 => {
            let Some(fields) = items[index].fields_mut() else {
                return Ok(());
            };
            match choice {
                5 | 6 => match fields.iter_mut().find(|(k, _)| k == "image") {
                    Some((_, slot)) => *slot = value,
                    None => fields.push(("image".to_string(), value)),
                },
                7 => fields.retain(|(k, _)| k != "image"),
                8 => fields.push(("image".to_string(), value)),
                _ => fields.push(("name".to_string(), value)),
            }
        }
        _ => {}
    }
    Ok(())
}

fn image_volumes(u: &mut Unstructured, review: &mut Node) -> Result<()> {
    let reference = image(u)?;
    let mut source = vec![("reference", reference)];
    match u.int_in_range(0..=7)? {
        0 => source.clear(),
        1 => source.push(("pullPolicy", Node::Number(number(u)?))),
        2 => source.push(("pullPolicy", obj(vec![]))),
        3 => source.push(("reference", image(u)?)),
        4 => source.insert(0, ("pullPolicy", scalar(u)?)),
        _ => source.push(("pullPolicy", s("IfNotPresent"))),
    }
    let volume = match u.int_in_range(0..=9)? {
        0 => obj(vec![("name", s("v")), ("image", Node::Null)]),
        1 => obj(vec![
            ("name", s("v")),
            ("emptyDir", Node::Object(Vec::new())),
        ]),
        2 => obj(vec![
            ("image", obj(source)),
            ("name", Node::String(text(u)?)),
        ]),
        3 => scalar(u)?,
        _ => obj(vec![("name", s("v")), ("image", obj(source))]),
    };
    let (remove, a) = (u.ratio(1, 6)?, u.arbitrary::<u16>()?);
    let Some(spec) = pod_spec_path(review).and_then(|path| at_mut(review, &path)) else {
        return Ok(());
    };
    if spec.get("volumes").is_none() {
        spec.set("volumes", Node::Array(Vec::new()), POD_SPEC_ORDER);
    }
    if let Some(Node::Array(items)) = spec.get_mut("volumes") {
        let len = items.len();
        if remove && len > 0 {
            items.remove(usize::from(a) % len);
        } else {
            items.insert(usize::from(a) % (len + 1), volume);
        }
    }
    Ok(())
}

fn pull_secrets(u: &mut Unstructured, review: &mut Node) -> Result<()> {
    let entry = match u.int_in_range(0..=9)? {
        0 => obj(vec![("name", s(""))]),
        1 => obj(vec![("name", s("regcred"))]),
        2 => obj(vec![("name", s("a")), ("x", scalar(u)?)]),
        3 => obj(vec![("name", Node::Null)]),
        4 => scalar(u)?,
        5 => obj(vec![("name", s("a")), ("name", s("b"))]),
        _ => obj(vec![("name", Node::String(text(u)?))]),
    };
    let (whole, a) = (u.ratio(1, 6)?, u.arbitrary::<u16>()?);
    let replacement = if u.arbitrary()? {
        Node::Null
    } else {
        Node::Array(Vec::new())
    };
    let Some(spec) = pod_spec_path(review).and_then(|path| at_mut(review, &path)) else {
        return Ok(());
    };
    if whole {
        spec.set("imagePullSecrets", replacement, POD_SPEC_ORDER);
        return Ok(());
    }
    match spec.get_mut("imagePullSecrets") {
        Some(Node::Array(items)) => items.insert(usize::from(a) % (items.len() + 1), entry),
        _ => spec.set("imagePullSecrets", Node::Array(vec![entry]), POD_SPEC_ORDER),
    }
    Ok(())
}

/// Annotations of a template on the way to the pod spec, or of the object's own metadata.
fn annotations(u: &mut Unstructured, review: &mut Node) -> Result<()> {
    let mut entries = Vec::new();
    for _ in 0..u.int_in_range(0..=3)? {
        let name = if u.ratio(1, 4)? {
            text(u)?
        } else {
            escape(u.choose(&["a", "b", "signet.dev/breakglass", "x/y"])?)
        };
        let value = if u.ratio(1, 5)? {
            scalar(u)?
        } else {
            Node::String(text(u)?)
        };
        entries.push((name, value));
    }
    let annotations = match u.int_in_range(0..=7)? {
        0 => Node::Null,
        1 => scalar(u)?,
        _ => Node::Object(entries),
    };
    let how = u.int_in_range(0..=4)?;
    let Some(object) = find(review, &["request", "object"]) else {
        return Ok(());
    };
    // The object, then each template (or jobTemplate) on the way to the pod spec.
    let mut holders = vec![object.clone()];
    if let Some(spec) = pod_spec_path(review) {
        for end in object.len()..spec.len() {
            let path = &spec[..end];
            let parent = &spec[..end - 1];
            if let Some(Node::Object(fields)) = at(review, parent) {
                let name = &fields[spec[end - 1]].0;
                if name == "template" || name == "jobTemplate" {
                    holders.push(path.to_vec());
                }
            }
        }
    }
    let holder = u.choose(&holders)?.clone();
    let Some(node) = at_mut(review, &holder) else {
        return Ok(());
    };
    match how {
        // `metadata` after `spec`.
        0 => {
            if let Some(metadata) = node.remove("metadata")
                && let Some(fields) = node.fields_mut()
            {
                fields.push(("metadata".to_string(), metadata));
            }
        }
        // A second `annotations`, or a second `metadata`.
        1 => {
            if let Some(Node::Object(fields)) = node.get_mut("metadata") {
                fields.push(("annotations".to_string(), annotations));
            }
        }
        2 => {
            if let Some(fields) = node.fields_mut() {
                fields.push((
                    "metadata".to_string(),
                    obj(vec![("annotations", annotations)]),
                ));
            }
        }
        _ => {
            if node.get("metadata").is_none() {
                node.set("metadata", Node::Object(Vec::new()), &["metadata"]);
            }
            if let Some(metadata) = node.get_mut("metadata") {
                metadata.set("annotations", annotations, &[]);
            }
        }
    }
    Ok(())
}

fn service_account(u: &mut Unstructured, review: &mut Node) -> Result<()> {
    let field = *u.choose(&["serviceAccountName", "serviceAccount"])?;
    let value = match u.int_in_range(0..=5)? {
        0 => Node::Null,
        1 => s(""),
        2 => scalar(u)?,
        _ => Node::String(text(u)?),
    };
    let how = u.int_in_range(0..=3)?;
    let Some(spec) = pod_spec_path(review).and_then(|path| at_mut(review, &path)) else {
        return Ok(());
    };
    match how {
        0 => {
            spec.remove(field);
        }
        1 => {
            if let Some(fields) = spec.fields_mut() {
                fields.push((field.to_string(), value));
            }
        }
        _ => spec.set(field, value, POD_SPEC_ORDER),
    }
    Ok(())
}

/// A field the general reader keeps beside the path to the pod spec (`containers` in a
/// Deployment's own spec, `template` in a pod spec), or a second node on the path.
fn kept_beside(u: &mut Unstructured, review: &mut Node) -> Result<()> {
    let name = *u.choose(&[
        "containers",
        "initContainers",
        "volumes",
        "imagePullSecrets",
        "serviceAccountName",
        "template",
        "jobTemplate",
        "spec",
        "metadata",
    ])?;
    let value = match u.int_in_range(0..=3)? {
        0 => Node::Array(Vec::new()),
        1 => obj(vec![("containers", Node::Array(Vec::new()))]),
        _ => scalar(u)?,
    };
    let (depth, a) = (u.arbitrary::<u8>()?, u.arbitrary::<u16>()?);
    let (Some(object), Some(spec)) = (find(review, &["request", "object"]), pod_spec_path(review))
    else {
        return Ok(());
    };
    // Any node from the object down to the pod spec.
    let end = object.len() + usize::from(depth) % (spec.len() - object.len() + 1);
    if let Some(fields) = at_mut(review, &spec[..end]).and_then(Node::fields_mut) {
        fields.insert(
            usize::from(a) % (fields.len() + 1),
            (name.to_string(), value),
        );
    }
    Ok(())
}

/// The review's and the request's own fields.
fn head(u: &mut Unstructured, review: &mut Node) -> Result<()> {
    let field = *u.choose(&[
        "apiVersion",
        "kind",
        "uid",
        "name",
        "namespace",
        "dryRun",
        "userInfo",
        "options",
        "oldObject",
        "object.metadata.namespace",
        "object.metadata.name",
    ])?;
    let value = match (field, u.int_in_range(0..=5)?) {
        ("apiVersion", 0..=2) => s(u.choose(&["admission.k8s.io/v1beta1", "v1", ""])?),
        ("kind", 0..=2) => s(u.choose(&["AdmissionRequest", "Review", ""])?),
        ("dryRun", 0..=3) => Node::Bool(u.arbitrary()?),
        ("userInfo", 0..=2) => obj(vec![
            ("username", Node::String(text(u)?)),
            ("groups", Node::Array(vec![s("system:authenticated")])),
            ("extra", obj(vec![("k", Node::Array(vec![s("v")]))])),
        ]),
        (_, 0) => Node::Null,
        (_, 1) => s(""),
        (_, 2) => scalar(u)?,
        _ => Node::String(text(u)?),
    };
    let remove = u.ratio(1, 4)?;
    let path: &[&str] = match field {
        "apiVersion" | "kind" => &[],
        "object.metadata.namespace" | "object.metadata.name" => &["request", "object", "metadata"],
        _ => &["request"],
    };
    let name = field.rsplit('.').next().unwrap_or(field);
    let Some(node) = find(review, path).and_then(|p| at_mut(review, &p)) else {
        return Ok(());
    };
    if remove {
        node.remove(name);
    } else {
        node.set(name, value, REQUEST_ORDER);
    }
    Ok(())
}

/// The reviews edits start from, as the API server writes them.
fn bases() -> &'static [Node] {
    static BASES: OnceLock<Vec<Node>> = OnceLock::new();
    BASES.get_or_init(|| {
        let texts = [
            include_str!("../../tests/fixtures/admission/pod-create.json"),
            include_str!("../../tests/fixtures/admission/deployment-create.json"),
            include_str!("../../tests/fixtures/admission/cronjob-create.json"),
            include_str!("../../tests/fixtures/admission/pod-ephemeralcontainers.json"),
            include_str!("../../tests/fixtures/admission/statefulset-create.json"),
            include_str!("../../tests/fixtures/admission/daemonset-create.json"),
            include_str!("../../tests/fixtures/admission/job-create.json"),
            include_str!("../../tests/fixtures/admission/replicaset-create.json"),
            include_str!("../../tests/fixtures/admission/replicationcontroller-create.json"),
            include_str!("../../tests/fixtures/admission/podtemplate-create.json"),
            include_str!("../../tests/fixtures/admission/deployment-update.json"),
            include_str!("../../tests/fixtures/admission/pod-create-dryrun.json"),
            include_str!("../../tests/fixtures/admission/pod-delete.json"),
        ];
        let mut bases: Vec<Node> = texts
            .iter()
            .filter_map(|text| serde_json::from_str(text).ok())
            .collect();
        // The bench's review (scripts/bench-vs-nginx.sh): the Pod with three containers.
        if let Some(mut pod) = bases.first().cloned() {
            if let Some(spec) = pod_spec_path(&pod).and_then(|path| at_mut(&mut pod, &path)) {
                spec.remove("initContainers");
                let containers = ["app", "web", "worker"]
                    .iter()
                    .enumerate()
                    .map(|(i, name)| {
                        obj(vec![
                            ("name", s(&format!("c{i}"))),
                            ("image", s(&format!("127.0.0.1:5000/bench/{name}:v1"))),
                        ])
                    })
                    .collect();
                spec.set("containers", Node::Array(containers), POD_SPEC_ORDER);
            }
            bases.push(pod);
        }
        bases
    })
}

/// `SIGNET_FUZZ_COUNT=1`: print, per input, whether its body was read as a review and by the
/// workload reader, to measure a corpus (run the target binary on the corpus files).
fn counting() -> bool {
    static COUNTING: OnceLock<bool> = OnceLock::new();
    *COUNTING.get_or_init(|| std::env::var_os("SIGNET_FUZZ_COUNT").is_some())
}

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let Ok(base) = u.choose(bases()) else {
        return;
    };
    let mut review = base.clone();
    let style = match u.int_in_range(0..=9u8) {
        Ok(0) => Style::Pretty,
        Ok(1) => Style::Spaced,
        _ => Style::Compact,
    };
    // A few edits, rarely many: each one risks a deferral.
    let edits = u.choose(&[1, 1, 2, 2, 3, 4, 6, 8]).copied().unwrap_or(1);
    for _ in 0..edits {
        if u.is_empty() || edit(&mut u, &mut review).is_err() {
            break;
        }
    }
    let mut body = Vec::new();
    emit(&review, style, 0, &mut body);
    let outcome = review_check::check(&body);
    if counting() {
        eprintln!(
            "structured-count bases={} review={} workload={}",
            bases().len(),
            u8::from(outcome.review),
            u8::from(outcome.workload)
        );
    }
});
