//! The vocabulary of `review_structured`'s edits: the field orders the API server writes, the
//! kinds a review can become and where each keeps its pod spec, and the keys, images, string
//! pieces and number spellings (a few of them not JSON) that the generators draw values from.
//! Pulled into that target with `#[path = "review_vocabulary.rs"] mod`.

use libfuzzer_sys::arbitrary::{Result, Unstructured};

use crate::review_tree::{Node, escape, obj, s};

/// How the request's fields come from the API server (Go struct order).
pub(crate) const REQUEST_ORDER: &[&str] = &[
    "uid",
    "kind",
    "resource",
    "subResource",
    "requestKind",
    "requestResource",
    "requestSubResource",
    "name",
    "namespace",
    "operation",
    "userInfo",
    "object",
    "oldObject",
    "dryRun",
    "options",
];

/// A pod spec's fields signet reads, in Go struct order (with a few neighbours).
pub(crate) const POD_SPEC_ORDER: &[&str] = &[
    "volumes",
    "initContainers",
    "containers",
    "ephemeralContainers",
    "restartPolicy",
    "serviceAccountName",
    "serviceAccount",
    "nodeName",
    "securityContext",
    "imagePullSecrets",
];

pub(crate) const POD_ROUTE: &[&str] = &["spec"];
pub(crate) const TEMPLATE_ROUTE: &[&str] = &["spec", "template", "spec"];
pub(crate) const POD_TEMPLATE_ROUTE: &[&str] = &["template", "spec"];
pub(crate) const CRON_ROUTE: &[&str] = &["spec", "jobTemplate", "spec", "template", "spec"];

/// Kinds a review can be changed to: group, kind, resource, where the pod spec is.
pub(crate) const KINDS: &[(&str, &str, &str, &[&str])] = &[
    ("", "Pod", "pods", POD_ROUTE),
    ("apps", "Deployment", "deployments", TEMPLATE_ROUTE),
    ("apps", "ReplicaSet", "replicasets", TEMPLATE_ROUTE),
    ("apps", "StatefulSet", "statefulsets", TEMPLATE_ROUTE),
    ("apps", "DaemonSet", "daemonsets", TEMPLATE_ROUTE),
    ("batch", "Job", "jobs", TEMPLATE_ROUTE),
    ("batch", "CronJob", "cronjobs", CRON_ROUTE),
    (
        "",
        "ReplicationController",
        "replicationcontrollers",
        TEMPLATE_ROUTE,
    ),
    ("", "PodTemplate", "podtemplates", POD_TEMPLATE_ROUTE),
    ("", "ConfigMap", "configmaps", &[]),
    ("apps", "Pod", "pods", POD_ROUTE),
    ("", "Deployment", "deployments", TEMPLATE_ROUTE),
];

/// The fields a spec keeps for the general reader (`SPEC_KEPT` of the workload reader), and
/// other names worth inserting.
const KEYS: &[&str] = &[
    "containers",
    "initContainers",
    "ephemeralContainers",
    "volumes",
    "imagePullSecrets",
    "serviceAccountName",
    "serviceAccount",
    "template",
    "jobTemplate",
    "spec",
    "metadata",
    "annotations",
    "image",
    "name",
    "reference",
    "kind",
    "operation",
    "subResource",
    "object",
    "namespace",
    "uid",
    "dryRun",
    "request",
    "apiVersion",
    "x",
    "",
];

const IMAGES: &[&str] = &[
    "nginx:1.25",
    "REGISTRY/prod/app:v1",
    "127.0.0.1:5000/bench/app:v1",
    "ghcr.io/o/i@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
    "busybox",
    " ",
    "",
    "\t",
    "a b",
    "Image:UPPER",
];

/// Pieces of a string's JSON text: escapes (lone surrogates too), raw UTF-8, image-like parts.
const PIECES: &[&str] = &[
    "a",
    "Z",
    "0",
    " ",
    "/",
    ":",
    "@",
    ".",
    "-",
    "\\\"",
    "\\\\",
    "\\/",
    "\\n",
    "\\t",
    "\\b\\f\\r",
    "\\u00e9",
    "\\u0000",
    "\\u0041",
    "\\ud83d\\ude00",
    "\\uD834\\uDD1E",
    "\\ud800",
    "\\udc00",
    "\\ud83dx",
    "\\ud83d\\u0041",
    "é",
    "😀",
    "\u{7f}",
    "nginx",
    ":v1",
    "@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
];

/// Pieces that make the body not JSON (raw control characters, bad escapes): now and then.
const BAD_PIECES: &[&str] = &[
    "\u{1}",
    "\t",
    "\n",
    "\u{7f}\u{1f}",
    "\\x",
    "\\u12",
    "\\ud83d\\u12",
];

/// Number spellings: integers, floats, exponents, -0, out of range.
const NUMBERS: &[&str] = &[
    "0",
    "-0",
    "1",
    "-1",
    "3607",
    "1.5",
    "-0.0",
    "0.0",
    "1e3",
    "1E+2",
    "2.5e-3",
    "1e-400",
    "18446744073709551615",
    "18446744073709551616",
    "-9223372036854775808",
    "-9223372036854775809",
    "123456789012345678901234567890",
    "0.30000000000000004",
];

/// Numbers that make the body not JSON (`1e400`: serde_json refuses it as out of range).
const BAD_NUMBERS: &[&str] = &["01", "1.", "+1", ".5", "1e400", "-1e400", "-", "1e", "0x1"];

/// A string's JSON text: valid nearly always.
pub(crate) fn text(u: &mut Unstructured) -> Result<String> {
    Ok(match u.int_in_range(0..=39)? {
        0..=19 => {
            let mut out = String::new();
            for _ in 0..u.int_in_range(0..=6)? {
                out.push_str(u.choose(PIECES)?);
            }
            out
        }
        20..=25 => escape(u.arbitrary::<&str>()?),
        26 => u.arbitrary::<&str>()?.to_string(),
        27 => format!("{}{}", u.choose(PIECES)?, u.choose(BAD_PIECES)?),
        28..=31 => String::new(),
        _ => escape(u.choose(IMAGES)?),
    })
}

pub(crate) fn number(u: &mut Unstructured) -> Result<String> {
    Ok(match u.int_in_range(0..=19)? {
        // Not JSON, or out of serde_json's range.
        0 => u.choose(BAD_NUMBERS)?.to_string(),
        1..=3 => u.arbitrary::<i64>()?.to_string(),
        4..=5 => u.arbitrary::<u64>()?.to_string(),
        6..=8 => {
            let v = u.arbitrary::<f64>()?;
            if !v.is_finite() {
                "0".to_string()
            } else if u.arbitrary()? {
                format!("{v:e}")
            } else {
                format!("{v:?}")
            }
        }
        _ => u.choose(NUMBERS)?.to_string(),
    })
}

/// A value to put anywhere.
pub(crate) fn scalar(u: &mut Unstructured) -> Result<Node> {
    Ok(match u.int_in_range(0..=9)? {
        0 => Node::Null,
        1 => Node::Bool(u.arbitrary()?),
        2 => Node::Number(number(u)?),
        3 => Node::Array(Vec::new()),
        4 => Node::Object(Vec::new()),
        5 => Node::Array(vec![Node::String(text(u)?)]),
        6 => obj(vec![("name", Node::String(text(u)?))]),
        _ => Node::String(text(u)?),
    })
}

pub(crate) fn key(u: &mut Unstructured) -> Result<String> {
    if u.ratio(1, 4)? {
        text(u)
    } else {
        Ok(u.choose(KEYS)?.to_string())
    }
}

pub(crate) fn image(u: &mut Unstructured) -> Result<Node> {
    Ok(match u.int_in_range(0..=9)? {
        0 => Node::Null,
        1 => Node::String(text(u)?),
        2 => scalar(u)?,
        _ => s(u.choose(IMAGES)?),
    })
}

pub(crate) fn container(u: &mut Unstructured, name: &str) -> Result<Node> {
    let mut fields = vec![("name", s(name)), ("image", image(u)?)];
    if u.arbitrary()? {
        fields.push((
            "ports",
            Node::Array(vec![obj(vec![
                ("containerPort", Node::Number("80".into())),
                ("protocol", s("TCP")),
            ])]),
        ));
    }
    fields.push(("resources", Node::Object(Vec::new())));
    fields.push(("imagePullPolicy", s("IfNotPresent")));
    Ok(obj(fields))
}
