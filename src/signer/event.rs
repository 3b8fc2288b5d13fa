//! Registry notifications (CNCF distribution, `application/vnd.docker.distribution.events.v1+json`):
//! parsing the envelope and telling the pushes worth signing from everything else.
//!
//! Pure: no I/O. What cannot be told from the event alone (a manifest deleted since, a referrer
//! artifact carrying a `subject`) is checked by the signer against the registry.

use std::fmt;

use serde::Deserialize;
use serde_json::Value;

use crate::reference::normalise_digest;
use crate::registry::{
    DOCKER_MANIFEST_LIST_MEDIA_TYPE, DOCKER_MANIFEST_MEDIA_TYPE, OCI_INDEX_MEDIA_TYPE,
    OCI_MANIFEST_MEDIA_TYPE,
};
use crate::signature::is_artifact_tag;

use super::metrics::IgnoreReason;

/// The media type registries send notifications with.
pub const EVENTS_MEDIA_TYPE: &str = "application/vnd.docker.distribution.events.v1+json";

/// A push of an image manifest or index: what the signer signs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PushedManifest {
    /// The event's `id` (for logs; may be empty).
    pub event_id: String,
    /// The registry host as the event names it: `request.host`, else the host of `target.url`.
    pub host: String,
    /// Repository path inside the registry (`ns1/app`).
    pub repository: String,
    /// The tag pushed, when the push named one (a push by digest names none).
    pub tag: Option<String>,
    /// The manifest digest, lower case.
    pub digest: String,
    /// `target.mediaType`.
    pub media_type: String,
}

/// Why an event is not a push to sign.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ignored {
    /// `pull`, `delete`, `mount`...
    NotAPush(String),
    /// A blob upload.
    Blob,
    /// A manifest of a media type that is not an image manifest or index.
    UnknownMediaType(String),
    /// A cosign artifact tag (`sha256-<hex>.sig`, `.att`, `.sbom`): signing it would loop.
    ArtifactTag(String),
    /// The event lacks a field the signer needs, or holds a malformed one.
    Malformed(String),
}

impl Ignored {
    /// The metric label (`not_a_push`, `blob`, ...).
    pub fn label(&self) -> IgnoreReason {
        match self {
            Ignored::NotAPush(_) => IgnoreReason::NotAPush,
            Ignored::Blob => IgnoreReason::Blob,
            Ignored::UnknownMediaType(_) => IgnoreReason::UnknownMediaType,
            Ignored::ArtifactTag(_) => IgnoreReason::ArtifactTag,
            Ignored::Malformed(_) => IgnoreReason::MalformedEvent,
        }
    }
}

impl fmt::Display for Ignored {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ignored::NotAPush(action) => write!(f, "action {action:?} is not a push"),
            Ignored::Blob => write!(f, "blob push"),
            Ignored::UnknownMediaType(t) => write!(f, "media type {t:?} is not an image manifest"),
            Ignored::ArtifactTag(t) => write!(f, "tag {t:?} is a signature or attestation tag"),
            Ignored::Malformed(why) => write!(f, "malformed event: {why}"),
        }
    }
}

/// One event, classified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Classified {
    /// A manifest push to sign (if a rule covers it).
    Sign(PushedManifest),
    /// A push of a signature tag (`sha256-<hex>.sig`, or the fallback index `sha256-<hex>`):
    /// never signed (that would loop), but compared with what the signer wrote there.
    SignatureTag(PushedManifest),
    /// Anything else, with the reason.
    Ignore(Ignored),
}

/// Why a notification body cannot be read at all.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EnvelopeError {
    /// The body is not JSON of the form `{"events": [...]}`; holds the parser's reason.
    #[error("notification body is not an events envelope ({{\"events\":[...]}}): {0}")]
    NotAnEnvelope(String),
}

#[derive(Deserialize)]
struct Envelope {
    events: Vec<Value>,
}

/// Parses a notification body into its events, each classified. A body that is not
/// `{"events":[...]}` is an error; a single odd event inside a valid envelope is only ignored,
/// so that one bad event never blocks the registry's queue.
pub fn parse_events(body: &[u8]) -> Result<Vec<Classified>, EnvelopeError> {
    let envelope: Envelope = serde_json::from_slice(body)
        .map_err(|e| EnvelopeError::NotAnEnvelope(one_line(&e.to_string())))?;
    Ok(envelope.events.iter().map(classify).collect())
}

fn one_line(text: &str) -> String {
    text.replace(['\n', '\r'], " ")
}

fn str_at<'a>(value: &'a Value, path: &[&str]) -> Option<&'a str> {
    let mut current = value;
    for name in path {
        current = current.get(name)?;
    }
    current.as_str()
}

/// Classifies one event (a JSON value from the envelope).
pub fn classify(event: &Value) -> Classified {
    let ignore = Classified::Ignore;
    if !event.is_object() {
        return ignore(Ignored::Malformed("event is not an object".into()));
    }
    let action = str_at(event, &["action"]).unwrap_or_default();
    if action != "push" {
        return ignore(Ignored::NotAPush(action.to_string()));
    }
    let media_type = str_at(event, &["target", "mediaType"]).unwrap_or_default();
    let url = str_at(event, &["target", "url"]).unwrap_or_default();
    if url.contains("/blobs/") || media_type == "application/octet-stream" {
        return ignore(Ignored::Blob);
    }
    if !is_image_media_type(media_type) {
        return ignore(Ignored::UnknownMediaType(media_type.to_string()));
    }
    let tag = str_at(event, &["target", "tag"])
        .filter(|t| !t.is_empty())
        .map(str::to_string);
    let artifact = tag.as_deref().is_some_and(is_artifact_tag);
    let malformed = |why: &str| match (&tag, artifact) {
        (Some(t), true) => ignore(Ignored::ArtifactTag(t.clone())),
        _ => ignore(Ignored::Malformed(why.into())),
    };
    let Some(digest) = str_at(event, &["target", "digest"]).and_then(normalise_digest) else {
        return malformed("no valid target.digest");
    };
    let repository = str_at(event, &["target", "repository"]).unwrap_or_default();
    if repository.is_empty() {
        return malformed("no target.repository");
    }
    let host = match str_at(event, &["request", "host"]).filter(|h| !h.is_empty()) {
        Some(h) => h.to_string(),
        None => match host_of_url(url) {
            Some(h) => h,
            None => return malformed("neither request.host nor target.url"),
        },
    };
    let class = match &tag {
        Some(t) if artifact && is_signature_tag(t) => Classified::SignatureTag,
        Some(t) if artifact => return ignore(Ignored::ArtifactTag(t.clone())),
        _ => Classified::Sign,
    };
    class(PushedManifest {
        event_id: str_at(event, &["id"]).unwrap_or_default().to_string(),
        host,
        repository: repository.to_string(),
        tag,
        digest,
        media_type: media_type.to_string(),
    })
}

/// The artifact tags signet writes: cosign's `.sig` and the referrers fallback index (not
/// `.att` or `.sbom`).
fn is_signature_tag(tag: &str) -> bool {
    tag.ends_with(".sig") || !tag.contains('.')
}

/// Image manifests and indexes, OCI and Docker.
pub fn is_image_media_type(media_type: &str) -> bool {
    matches!(
        media_type,
        OCI_MANIFEST_MEDIA_TYPE
            | OCI_INDEX_MEDIA_TYPE
            | DOCKER_MANIFEST_MEDIA_TYPE
            | DOCKER_MANIFEST_LIST_MEDIA_TYPE
    )
}

/// `host[:port]` of an absolute URL.
fn host_of_url(url: &str) -> Option<String> {
    let parsed = url::Url::parse(url).ok()?;
    let host = parsed.host_str()?;
    Some(match parsed.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_string(),
    })
}

/// Whether manifest bytes name a `subject`: an OCI 1.1 referrer (signature bundle, SBOM,
/// attestation) attached to another image, not an image of its own.
pub fn is_referrer(manifest: &[u8]) -> bool {
    let Ok(doc) = serde_json::from_slice::<Value>(manifest) else {
        return false;
    };
    if doc.get("subject").is_some_and(Value::is_object) {
        return true;
    }
    // A signature, bundle or attestation pushed without a subject (older cosign, Notation,
    // ORAS): known by its artifactType or config media type.
    let artifact_type = doc.get("artifactType").and_then(Value::as_str);
    let config_type = doc
        .get("config")
        .and_then(|c| c.get("mediaType"))
        .and_then(Value::as_str);
    [artifact_type, config_type]
        .into_iter()
        .flatten()
        .any(is_signature_artifact_type)
}

/// Media types that mark signatures, bundles and attestations (cosign, Sigstore, Notation,
/// in-toto/DSSE).
pub fn is_signature_artifact_type(media_type: &str) -> bool {
    const PREFIXES: [&str; 5] = [
        "application/vnd.dev.cosign.",
        "application/vnd.dev.sigstore.",
        "application/vnd.cncf.notary.",
        "application/vnd.in-toto",
        "application/vnd.dsse.",
    ];
    PREFIXES.iter().any(|p| media_type.starts_with(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PUSH: &str = include_str!("testdata/registry-push-event.json");
    const SIG_PUSH: &str = include_str!("testdata/registry-push-event-sig-tag.json");
    const BLOB: &str = include_str!("testdata/registry-blob-push-event.json");
    const DELETE_DIGEST: &str = include_str!("testdata/registry-delete-digest-event.json");
    const DELETE_TAG: &str = include_str!("testdata/registry-delete-tag-event.json");

    fn only(body: &str) -> Classified {
        let mut events = parse_events(body.as_bytes()).unwrap();
        assert_eq!(events.len(), 1);
        events.remove(0)
    }

    #[test]
    fn a_real_manifest_push_is_signed() {
        assert_eq!(
            only(PUSH),
            Classified::Sign(PushedManifest {
                event_id: "1800e51d-4b7a-4f1f-9ef1-0498307697f0".into(),
                host: "127.0.0.1:5000".into(),
                repository: "ns1/app".into(),
                tag: Some("v1".into()),
                digest: "sha256:4e31af7b264bca7496760c2c94771a1cedb23532f08ad33a3d0518163529c356"
                    .into(),
                media_type: OCI_MANIFEST_MEDIA_TYPE.into(),
            })
        );
    }

    #[test]
    fn signature_pushes_are_told_apart_blobs_and_deletes_ignored() {
        assert!(
            matches!(only(SIG_PUSH), Classified::SignatureTag(p) if p.tag.as_deref().is_some_and(|t| t.ends_with(".sig")))
        );
        // Attestations and SBOMs are not signet's: ignored by name.
        let attestation = SIG_PUSH.replace(".sig", ".att");
        assert!(
            matches!(only(&attestation), Classified::Ignore(Ignored::ArtifactTag(t)) if t.ends_with(".att"))
        );
        assert_eq!(only(BLOB), Classified::Ignore(Ignored::Blob));
        assert_eq!(
            only(DELETE_DIGEST),
            Classified::Ignore(Ignored::NotAPush("delete".into()))
        );
        assert_eq!(
            only(DELETE_TAG),
            Classified::Ignore(Ignored::NotAPush("delete".into()))
        );
        let pull = PUSH.replace("\"push\"", "\"pull\"");
        assert_eq!(
            only(&pull),
            Classified::Ignore(Ignored::NotAPush("pull".into()))
        );
    }

    #[test]
    fn every_image_manifest_and_index_type_is_signed_and_others_are_not() {
        for media_type in [
            OCI_INDEX_MEDIA_TYPE,
            DOCKER_MANIFEST_MEDIA_TYPE,
            DOCKER_MANIFEST_LIST_MEDIA_TYPE,
        ] {
            let body = PUSH.replace(OCI_MANIFEST_MEDIA_TYPE, media_type);
            assert!(matches!(only(&body), Classified::Sign(p) if p.media_type == media_type));
        }
        for media_type in [
            "application/vnd.oci.artifact.manifest.v1+json",
            "application/vnd.docker.distribution.manifest.v1+prettyjws",
            "",
        ] {
            let body = PUSH.replace(OCI_MANIFEST_MEDIA_TYPE, media_type);
            assert_eq!(
                only(&body),
                Classified::Ignore(Ignored::UnknownMediaType(media_type.into()))
            );
        }
    }

    #[test]
    fn the_host_falls_back_to_the_target_url() {
        let body = PUSH.replace("\"host\": \"127.0.0.1:5000\",", "");
        assert!(matches!(only(&body), Classified::Sign(p) if p.host == "127.0.0.1:5000"));
    }

    #[test]
    fn a_push_by_digest_has_no_tag() {
        let body = PUSH.replace("\"tag\": \"v1\",", "");
        assert!(matches!(only(&body), Classified::Sign(p) if p.tag.is_none()));
    }

    #[test]
    fn malformed_bodies_are_errors_and_malformed_events_are_ignored() {
        for body in [
            "",
            "not json",
            "{}",
            "[]",
            "{\"events\": 3}",
            "{\"events\": [1",
        ] {
            assert!(parse_events(body.as_bytes()).is_err(), "{body:?}");
        }
        let events = parse_events(br#"{"events": [3, {"action": "push"}, {"action": "push", "target": {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "sha256:xyz", "repository": "a"}}]}"#).unwrap();
        assert!(matches!(
            &events[0],
            Classified::Ignore(Ignored::Malformed(_))
        ));
        assert!(matches!(
            &events[1],
            Classified::Ignore(Ignored::UnknownMediaType(_))
        ));
        assert!(matches!(
            &events[2],
            Classified::Ignore(Ignored::Malformed(_))
        ));
        assert!(parse_events(br#"{"events": []}"#).unwrap().is_empty());
    }

    #[test]
    fn referrers_are_told_by_their_subject() {
        assert!(is_referrer(
            br#"{"schemaVersion":2,"subject":{"mediaType":"x","digest":"sha256:00","size":1}}"#
        ));
        assert!(!is_referrer(br#"{"schemaVersion":2,"layers":[]}"#));
        assert!(!is_referrer(b"not json"));
    }

    #[test]
    fn signature_artifacts_without_a_subject_are_told_by_their_types() {
        for marked in [
            r#"{"schemaVersion":2,"artifactType":"application/vnd.dev.sigstore.bundle.v0.3+json","config":{"mediaType":"application/vnd.oci.empty.v1+json"}}"#,
            r#"{"schemaVersion":2,"config":{"mediaType":"application/vnd.cncf.notary.signature"}}"#,
            r#"{"schemaVersion":2,"artifactType":"application/vnd.dev.cosign.artifact.sig.v1+json"}"#,
            r#"{"schemaVersion":2,"config":{"mediaType":"application/vnd.in-toto+json"}}"#,
        ] {
            assert!(is_referrer(marked.as_bytes()), "{marked}");
        }
        assert!(!is_referrer(
            br#"{"schemaVersion":2,"config":{"mediaType":"application/vnd.oci.image.config.v1+json"}}"#
        ));
    }

    #[test]
    fn a_push_of_the_fallback_index_tag_is_never_signed_only_compared() {
        let tag = format!("sha256-{}", "ab".repeat(32));
        let event = serde_json::json!({
            "action": "push",
            "target": {
                "mediaType": OCI_INDEX_MEDIA_TYPE,
                "digest": format!("sha256:{}", "cd".repeat(32)),
                "repository": "ns1/app",
                "tag": tag,
                "url": "http://127.0.0.1:5000/v2/ns1/app/manifests/x",
            },
            "request": {"host": "127.0.0.1:5000"},
        });
        assert!(
            matches!(classify(&event), Classified::SignatureTag(p) if p.tag.as_deref() == Some(tag.as_str()))
        );
        // Without a repository it cannot be compared: ignored by name, as before.
        let mut event = event;
        event["target"]["repository"] = serde_json::json!("");
        assert_eq!(
            classify(&event),
            Classified::Ignore(Ignored::ArtifactTag(tag))
        );
    }
}
