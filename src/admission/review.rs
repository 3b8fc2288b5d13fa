//! AdmissionReview on the wire: reading the request body, writing the response.
//!
//! Requests are read into signet's own types holding only what admission reads: the request's
//! identity, kind, operation, requester, and of the object its metadata, and of `spec` and
//! `template` the parts on the way to images (see `review_prune.rs`).
//! Everything else (`oldObject`, `status`, `managedFields`, `options`...) is skipped without
//! being built: on a cached admission, building kube's `DynamicObject` tree of the whole review
//! was the largest cost of a request. The body is read in one pass by `review_scan.rs`; the
//! serde_json reading (derive plus `review_prune.rs`) stays as [`parse_review_reference`], the
//! reference the one-pass reader is tested and fuzzed against.
//!
//! A review of a workload signet checks, in the common case, does not even build the pruned tree:
//! `parse_workload_review` reads it straight into the workload's parts
//! (`review_scan_workload.rs`), and leaves anything unusual to the general reader, against which
//! it is tested and fuzzed in turn.
//!
//! Responses are written with signet's own types too, because kube's
//! `AdmissionResponse` serialises `patch` as an array of numbers, where the API server expects a
//! `[]byte`, i.e. a base64 string (`"patch": "W3sib3AiOi...", "patchType": "JSONPatch"`); and
//! because an allowed answer should carry no `status` at all.

use std::borrow::Cow;
use std::collections::BTreeMap;

use k8s_openapi::api::authentication::v1::UserInfo;
use kube::core::admission::Operation;
use serde::Deserialize;
use serde_json::Value;

use super::pruned_tree::{NodeId, PrunedTree, TreeBuilder};

/// The only AdmissionReview version served (`admissionReviewVersions: ["v1"]`).
pub const ADMISSION_API_VERSION: &str = "admission.k8s.io/v1";
/// The kind of request and response bodies.
pub const ADMISSION_KIND: &str = "AdmissionReview";

/// Why a body is not an AdmissionReview that can be answered. Such requests get HTTP 400 (413
/// for a body over the limit) with this one-line message: without a readable `uid`, no
/// AdmissionReview answer can be written.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReviewError {
    /// Not JSON at all.
    #[error("request body is not JSON: {0}")]
    NotJson(String),
    /// JSON, but not in the shape of an AdmissionReview.
    #[error("request body is not an AdmissionReview: {0}")]
    NotAReview(String),
    /// An AdmissionReview of another version (v1beta1).
    #[error("AdmissionReview apiVersion {0:?} is not supported: send admission.k8s.io/v1")]
    WrongApiVersion(String),
    /// An AdmissionReview without `request`.
    #[error("AdmissionReview has no request")]
    NoRequest,
    /// An AdmissionReview whose request has an empty `uid`.
    #[error("AdmissionReview request has an empty uid")]
    NoUid,
    /// The body exceeds the limit.
    #[error("request body is larger than the {limit}-byte limit")]
    TooLarge {
        /// The limit in bytes.
        limit: usize,
    },
}

/// The request of an AdmissionReview, as far as signet reads it. Its strings borrow from the
/// body where they hold no escape (nearly always): a cached admission reads a few dozen of them,
/// and each owned copy was an allocation on cold caches. [`ReviewRequest::into_owned`] detaches
/// one from its body.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ReviewRequest<'a> {
    /// Echoed in the answer.
    pub uid: Cow<'a, str>,
    /// The object's kind (`apps/v1 Deployment`).
    pub kind: RequestKind<'a>,
    /// `status`, `ephemeralcontainers`...; absent for the main resource.
    #[serde(default)]
    pub sub_resource: Option<Cow<'a, str>>,
    /// The object's name (may be empty on CREATE with `generateName`).
    #[serde(default)]
    pub name: Cow<'a, str>,
    /// The namespace of a namespaced object.
    #[serde(default)]
    pub namespace: Option<Cow<'a, str>>,
    /// CREATE, UPDATE, DELETE or CONNECT.
    pub operation: Operation,
    /// Who asks, as the API server authenticated them.
    #[serde(default, deserialize_with = "user_of_reference")]
    pub user_info: RequestUser<'a>,
    /// The new object (absent for DELETE).
    #[serde(default)]
    pub object: Option<ReviewObject<'a>>,
    /// `kubectl --dry-run=server`: no side effects.
    #[serde(default, deserialize_with = "null_as_false")]
    pub dry_run: bool,
}

impl ReviewRequest<'_> {
    /// The same request owning its strings.
    pub fn into_owned(self) -> ReviewRequest<'static> {
        ReviewRequest {
            uid: owned(self.uid),
            kind: RequestKind {
                group: owned(self.kind.group),
                version: owned(self.kind.version),
                kind: owned(self.kind.kind),
            },
            sub_resource: self.sub_resource.map(owned),
            name: owned(self.name),
            namespace: self.namespace.map(owned),
            operation: self.operation,
            user_info: RequestUser {
                username: self.user_info.username.map(owned),
                uid: self.user_info.uid.map(owned),
                groups: self
                    .user_info
                    .groups
                    .map(|groups| groups.into_iter().map(owned).collect()),
                extra: self.user_info.extra,
            },
            object: self.object.map(|object| ReviewObject {
                metadata: ObjectMetadata {
                    name: object.metadata.name.map(owned),
                    generate_name: object.metadata.generate_name.map(owned),
                    namespace: object.metadata.namespace.map(owned),
                    annotations: object.metadata.annotations.map(|annotations| {
                        annotations
                            .into_iter()
                            .map(|(key, value)| (owned(key), owned(value)))
                            .collect()
                    }),
                },
                data: object.data,
            }),
            dry_run: self.dry_run,
        }
    }
}

/// `text` detached from what it borrowed.
pub(super) fn owned(text: Cow<'_, str>) -> Cow<'static, str> {
    Cow::Owned(text.into_owned())
}

/// `userInfo`: who the API server says asks. Read only for breakglass, so `extra` (rare, and
/// only passed on to a SubjectAccessReview) stays owned.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RequestUser<'a> {
    /// `username`.
    pub username: Option<Cow<'a, str>>,
    /// `uid`.
    pub uid: Option<Cow<'a, str>>,
    /// `groups`.
    pub groups: Option<Vec<Cow<'a, str>>>,
    /// `extra` (scopes, credential ids).
    pub extra: Option<BTreeMap<String, Vec<String>>>,
}

/// The reference reader's `userInfo`: k8s-openapi's own reading (every field optional, the last
/// of duplicates counts), converted.
fn user_of_reference<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<RequestUser<'static>, D::Error> {
    let info = UserInfo::deserialize(deserializer)?;
    Ok(RequestUser {
        username: info.username.map(Cow::Owned),
        uid: info.uid.map(Cow::Owned),
        groups: info
            .groups
            .map(|groups| groups.into_iter().map(Cow::Owned).collect()),
        extra: info.extra,
    })
}

/// `group`, `version` and `kind` of the request's object.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
pub struct RequestKind<'a> {
    /// API group; empty for the core group.
    #[serde(default)]
    pub group: Cow<'a, str>,
    /// API version within the group.
    pub version: Cow<'a, str>,
    /// Kind.
    pub kind: Cow<'a, str>,
}

/// The object of a request: its metadata, and of the rest only `spec` and `template` (where pod
/// specs live; a PodTemplate has `template` at the top), kept in [`ReviewObject::data`] so that
/// JSON pointers into it are pointers into the whole object.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(from = "ObjectFields")]
pub struct ReviewObject<'a> {
    /// The fields of `metadata` admission reads.
    pub metadata: ObjectMetadata<'a>,
    /// `{"spec": ..., "template": ...}`, each only when present, pruned (`review_prune.rs`).
    pub data: PrunedTree,
}

/// The fields of `metadata` admission reads.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ObjectMetadata<'a> {
    /// `metadata.name`.
    #[serde(default)]
    pub name: Option<Cow<'a, str>>,
    /// `metadata.generateName`.
    #[serde(default)]
    pub generate_name: Option<Cow<'a, str>>,
    /// `metadata.namespace`.
    #[serde(default)]
    pub namespace: Option<Cow<'a, str>>,
    /// `metadata.annotations`.
    #[serde(default)]
    pub annotations: Option<BTreeMap<Cow<'a, str>, Cow<'a, str>>>,
}

#[derive(Deserialize)]
struct ObjectFields<'a> {
    #[serde(default)]
    metadata: Option<ObjectMetadata<'a>>,
    #[serde(default, deserialize_with = "pruned_spec")]
    spec: Option<Value>,
    #[serde(default, deserialize_with = "pruned_template")]
    template: Option<Value>,
}

fn pruned_spec<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    super::review_prune::optional(&super::review_prune::SPEC, d)
}

fn pruned_template<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    super::review_prune::optional(&super::review_prune::TEMPLATE, d)
}

impl<'a> ReviewObject<'a> {
    /// The object from what the reference reader read of it (absent metadata reads as empty).
    fn from_parts(
        metadata: Option<ObjectMetadata<'a>>,
        spec: Option<Value>,
        template: Option<Value>,
    ) -> Self {
        let mut builder = TreeBuilder::new();
        let spec = spec.map(|value| builder.value(&value));
        let template = template.map(|value| builder.value(&value));
        ReviewObject::from_built(metadata, builder, spec, template)
    }

    /// The object from its metadata and its `spec` and `template` nodes in `builder`.
    pub(super) fn from_built(
        metadata: Option<ObjectMetadata<'a>>,
        mut builder: TreeBuilder,
        spec: Option<NodeId>,
        template: Option<NodeId>,
    ) -> Self {
        let mark = builder.open();
        for (key, node) in [("spec", spec), ("template", template)] {
            if let Some(node) = node {
                builder.entry(key, node);
            }
        }
        let root = builder.close_object(mark);
        ReviewObject {
            metadata: metadata.unwrap_or_default(),
            data: builder.finish(root),
        }
    }
}

impl<'a> From<ObjectFields<'a>> for ReviewObject<'a> {
    fn from(fields: ObjectFields<'a>) -> Self {
        ReviewObject::from_parts(fields.metadata, fields.spec, fields.template)
    }
}

fn null_as_false<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<bool, D::Error> {
    Ok(Option::<bool>::deserialize(deserializer)?.unwrap_or(false))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReviewIn<'a> {
    #[serde(default)]
    api_version: Cow<'a, str>,
    #[serde(default)]
    kind: Cow<'a, str>,
    #[serde(default)]
    request: Option<ReviewRequest<'a>>,
}

/// Reads an AdmissionReview v1 body and returns its request.
///
/// The whole body must be UTF-8 (RFC 8259 section 8.1; the API server's encoder never writes
/// anything else), checked once up front, so a body with invalid bytes even in a field signet
/// skips is refused as not JSON. The body is then read in one pass (`review_scan.rs`), which reads
/// every body as [`parse_review_reference`] does, faster.
pub fn parse_review(body: &[u8]) -> Result<ReviewRequest<'_>, ReviewError> {
    let text = utf8(body)?;
    let mut request = None;
    let review = super::review_scan::read(text, &mut request)?;
    checked(review.api_version, review.kind, request)
}

/// A review of a workload signet checks, read straight into the workload's parts without the
/// pruned tree (`review_scan_workload.rs`): the request (its `object` left out) and what its
/// object says, for `images::assemble`. `None` when the body is anything else or anything about
/// it is unusual: then [`parse_review`] and `images::workload_of` read it, and judge it.
pub(super) fn parse_workload_review(
    body: &[u8],
) -> Option<(ReviewRequest<'_>, super::review_scan::WorkloadObject<'_>)> {
    let text = utf8(body).ok()?;
    let mut request = None;
    let (top, object) = super::review_scan::read_workload(text, &mut request)?;
    let request = checked(top.api_version, top.kind, request).ok()?;
    // Read at the `object` from the fields before it: the whole request must agree.
    let route = super::images::pod_spec_route(
        &request.kind,
        &request.operation,
        request.sub_resource.as_deref(),
    );
    (route == Ok(Some(object.route))).then_some((request, object))
}

/// [`parse_workload_review`] with the workload assembled, both owned: what the differential test
/// and fuzz target hold against [`parse_review`] and `images::workload_of`.
#[doc(hidden)]
pub fn parse_workload_review_owned(
    body: &[u8],
) -> Option<(ReviewRequest<'static>, super::images::Workload<'static>)> {
    let (request, object) = parse_workload_review(body)?;
    let workload =
        super::images::assemble(&request, &object.metadata, object.route, object.pod).into_owned();
    Some((request.into_owned(), workload))
}

/// [`parse_review`] through serde_json (derive and the pruning visitor of `review_prune.rs`):
/// the reference the one-pass reader is held to by the differential test and fuzz target.
/// Strings, escapes, numbers and duplicate keys are judged by serde_json here.
#[doc(hidden)]
pub fn parse_review_reference(body: &[u8]) -> Result<ReviewRequest<'_>, ReviewError> {
    let text = utf8(body)?;
    let review: ReviewIn = serde_json::from_str(text).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => ReviewError::NotAReview(e.to_string()),
        _ => ReviewError::NotJson(e.to_string()),
    })?;
    checked(review.api_version, review.kind, review.request)
}

/// The body as text. Checked with simdutf8 (vector instructions where the CPU has them: about a
/// fifth of the instructions of `std::str::from_utf8` on a review, which is nearly all ASCII);
/// std's check runs only to say where a refused body goes wrong.
fn utf8(body: &[u8]) -> Result<&str, ReviewError> {
    simdutf8::basic::from_utf8(body).or_else(|_| {
        std::str::from_utf8(body)
            .map_err(|e| ReviewError::NotJson(format!("invalid UTF-8 at byte {}", e.valid_up_to())))
    })
}

/// The checks after reading: an AdmissionReview v1 with a request that has a uid.
fn checked<'a>(
    api_version: Cow<'_, str>,
    kind: Cow<'_, str>,
    request: Option<ReviewRequest<'a>>,
) -> Result<ReviewRequest<'a>, ReviewError> {
    if kind != ADMISSION_KIND {
        return Err(ReviewError::NotAReview(format!(
            "kind is {kind:?}, expected {ADMISSION_KIND}"
        )));
    }
    if api_version != ADMISSION_API_VERSION {
        return Err(ReviewError::WrongApiVersion(api_version.into_owned()));
    }
    let request = request.ok_or(ReviewError::NoRequest)?;
    if request.uid.is_empty() {
        return Err(ReviewError::NoUid);
    }
    Ok(request)
}

/// The answer to one AdmissionReview.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Answer {
    /// The request's uid, echoed.
    pub uid: String,
    /// Whether the object is admitted.
    pub allowed: bool,
    /// When denied: why (shown to the user by kubectl).
    pub message: Option<String>,
    /// Admission warnings (DryRun failures, breakglass).
    pub warnings: Vec<String>,
    /// Audit annotations (the API server prefixes the keys with the webhook's name). Keys are
    /// signet's own constants, so borrowed: no allocation per key and answer.
    pub audit_annotations: BTreeMap<Cow<'static, str>, Cow<'static, str>>,
    /// RFC 6902 operations (`/mutate` only); empty for none.
    pub patch: Vec<serde_json::Value>,
}

impl Answer {
    /// The AdmissionReview v1 response body (written by `answer_json.rs`).
    pub fn to_json(&self) -> Result<Vec<u8>, serde_json::Error> {
        super::answer_json::write(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use serde_json::{Value, json};

    fn body(value: Value) -> Vec<u8> {
        serde_json::to_vec(&value).unwrap_or_default()
    }

    fn minimal_review(api_version: &str) -> Value {
        json!({
            "apiVersion": api_version,
            "kind": "AdmissionReview",
            "request": {
                "uid": "u-1",
                "kind": {"group": "", "version": "v1", "kind": "Pod"},
                "resource": {"group": "", "version": "v1", "resource": "pods"},
                "operation": "CREATE",
                "userInfo": {"username": "me"},
                "namespace": "shop",
                "object": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {}}
            }
        })
    }

    #[test]
    fn reads_a_v1_review() {
        let body = body(minimal_review(ADMISSION_API_VERSION));
        let request = parse_review(&body);
        assert_eq!(request.map(|r| r.uid).ok().as_deref(), Some("u-1"));
    }

    #[test]
    fn malformed_bodies_get_one_line_reasons() {
        assert!(matches!(
            parse_review(b"{not json"),
            Err(ReviewError::NotJson(_))
        ));
        assert!(matches!(
            parse_review(&body(json!({"apiVersion": 3}))),
            Err(ReviewError::NotAReview(_))
        ));
        assert_eq!(
            parse_review(&body(minimal_review("admission.k8s.io/v1beta1"))).err(),
            Some(ReviewError::WrongApiVersion(
                "admission.k8s.io/v1beta1".to_string()
            ))
        );
        assert_eq!(
            parse_review(&body(
                json!({"apiVersion": ADMISSION_API_VERSION, "kind": "AdmissionReview"})
            ))
            .err(),
            Some(ReviewError::NoRequest)
        );
        let mut no_uid = minimal_review(ADMISSION_API_VERSION);
        no_uid["request"]["uid"] = json!("");
        assert_eq!(parse_review(&body(no_uid)).err(), Some(ReviewError::NoUid));
        for error in [
            ReviewError::NotJson("x".into()),
            ReviewError::NoRequest,
            ReviewError::TooLarge { limit: 3 },
        ] {
            assert!(!error.to_string().contains('\n'));
        }
    }

    /// The review as text, with `marker` (a JSON string in the text) replaced by raw `bytes`.
    fn with_raw(review: &Value, marker: &str, bytes: &[u8]) -> Vec<u8> {
        let text = review.to_string();
        let Some(at) = text.find(marker) else {
            panic!("{marker} not in the review");
        };
        let mut out = text.as_bytes()[..at].to_vec();
        out.extend_from_slice(bytes);
        out.extend_from_slice(&text.as_bytes()[at + marker.len()..]);
        out
    }

    fn pod_review(containers: Value) -> Value {
        let mut review = minimal_review(ADMISSION_API_VERSION);
        review["request"]["object"]["spec"] = json!({ "containers": containers });
        review["request"]["options"] = json!({"fieldManager": "MARK-SKIPPED"});
        review
    }

    #[test]
    fn invalid_utf8_anywhere_is_not_json() {
        let review = pod_review(json!([{"name": "c", "image": "MARK-KEPT"}]));
        // In a string signet keeps, and in one it skips (it used to be read past there).
        for marker in ["\"MARK-KEPT\"", "\"MARK-SKIPPED\""] {
            let body = with_raw(&review, marker, b"\"r/app\xff:v1\"");
            let error = parse_review(&body).err();
            assert!(
                matches!(&error, Some(ReviewError::NotJson(m)) if m.starts_with("invalid UTF-8 at byte ")),
                "{marker}: {error:?}"
            );
        }
        // Valid multi-byte UTF-8 reads as before.
        let body = with_raw(&review, "\"MARK-SKIPPED\"", "\"gestionnaire-é\"".as_bytes());
        assert!(parse_review(&body).is_ok());
    }

    #[test]
    fn escapes_numbers_and_duplicate_keys_read_as_serde_json_reads_them() {
        let image_of = |body: &[u8]| {
            parse_review(body).map(|r| {
                r.object
                    .map(|o| o.data.to_value()["spec"]["containers"][0]["image"].clone())
            })
        };
        let review = pod_review(json!([{"name": "c", "image": "MARK"}]));
        // An escaped character is the character.
        let body = with_raw(&review, "\"MARK\"", b"\"r\\u002fapp:v\\u0031\"");
        assert_eq!(image_of(&body).ok().flatten(), Some(json!("r/app:v1")));
        // A lone surrogate is not a character.
        let body = with_raw(&review, "\"MARK\"", b"\"r/app\\ud800\"");
        assert!(matches!(parse_review(&body), Err(ReviewError::NotJson(_))));
        // A number where an image belongs is kept as a number (and refused by `images`); one
        // beyond f64 is not JSON serde_json reads.
        let body = with_raw(&review, "\"MARK\"", b"12");
        assert_eq!(image_of(&body).ok().flatten(), Some(json!(12)));
        let body = with_raw(&review, "\"MARK\"", b"1e999");
        assert!(parse_review(&body).is_err());
        // A duplicate key in a pod spec: the last one counts, as for the API server's decoder
        // (the image verified is the one that runs).
        let body = with_raw(
            &review,
            "\"MARK\"",
            b"\"r/first:v1\", \"image\": \"r/last:v1\"",
        );
        assert_eq!(image_of(&body).ok().flatten(), Some(json!("r/last:v1")));
        // A duplicate field of the request itself is refused.
        let body = with_raw(&review, "\"u-1\"", b"\"u-1\", \"uid\": \"u-2\"");
        assert!(matches!(
            parse_review(&body),
            Err(ReviewError::NotAReview(_))
        ));
    }

    #[test]
    fn denial_carries_status_and_patch_is_base64_json_patch() {
        let denied = Answer {
            uid: "u-2".into(),
            allowed: false,
            message: Some("no".into()),
            ..Answer::default()
        };
        let out: Value =
            serde_json::from_slice(&denied.to_json().unwrap_or_default()).unwrap_or_default();
        assert_eq!(
            out,
            json!({
                "apiVersion": "admission.k8s.io/v1",
                "kind": "AdmissionReview",
                "response": {"uid": "u-2", "allowed": false,
                             "status": {"code": 403, "reason": "Forbidden", "message": "no"}}
            })
        );

        let op =
            json!({"op": "replace", "path": "/spec/containers/0/image", "value": "a@sha256:00"});
        let patched = Answer {
            uid: "u-3".into(),
            allowed: true,
            patch: vec![op.clone()],
            ..Answer::default()
        };
        let out: Value =
            serde_json::from_slice(&patched.to_json().unwrap_or_default()).unwrap_or_default();
        assert_eq!(out["response"]["patchType"], json!("JSONPatch"));
        assert!(out["response"].get("status").is_none());
        let decoded = STANDARD
            .decode(out["response"]["patch"].as_str().unwrap_or_default())
            .unwrap_or_default();
        let ops: Value = serde_json::from_slice(&decoded).unwrap_or_default();
        assert_eq!(ops, json!([op]));
    }
}
