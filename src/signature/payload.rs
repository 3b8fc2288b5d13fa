//! The simple-signing payload that a signature covers, as cosign writes and reads it.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::SignatureError;
use crate::reference::ImageRef;

/// The payload type cosign writes.
pub const COSIGN_TYPE: &str = "cosign container image signature";
/// The payload type of containers/image ("atomic") signatures, also accepted.
pub const ATOMIC_TYPE: &str = "atomic container signature";

/// What a signature binds besides the digest.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum SignatureType {
    /// The digest and the repository with the tag that was pushed (`registry/repo:tag`).
    #[default]
    Default,
    /// The digest only; the identity names the repository alone (cosign's own convention).
    Simple,
}

impl fmt::Display for SignatureType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SignatureType::Default => "Default",
            SignatureType::Simple => "Simple",
        })
    }
}

impl FromStr for SignatureType {
    type Err = SignatureError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "default" => Ok(SignatureType::Default),
            "simple" => Ok(SignatureType::Simple),
            _ => Err(SignatureError::UnknownSignatureType(s.to_string())),
        }
    }
}

/// A parsed simple-signing payload: the claims a signature makes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Payload {
    /// `critical.identity.docker-reference` as written.
    pub docker_reference: String,
    /// `critical.image.docker-manifest-digest`, lower-cased.
    pub manifest_digest: String,
    /// `critical.type`.
    pub kind: String,
    /// `optional`, when it is an object.
    pub optional: Map<String, Value>,
}

/// Builds the payload bytes for `image` (which must name a tag for `Default`) at `digest`.
///
/// Keys are written in lower case and in cosign's order; `annotations` go into `optional`
/// (absent annotations give `"optional": null`, as cosign writes).
pub fn build_payload(
    image: &ImageRef,
    digest: &str,
    signature_type: SignatureType,
    annotations: &BTreeMap<String, String>,
) -> Result<Vec<u8>, SignatureError> {
    let digest = crate::reference::normalise_digest(digest)
        .ok_or_else(|| SignatureError::MalformedPayload(format!("not a digest: {digest:?}")))?;
    let identity = match signature_type {
        SignatureType::Default => {
            if image.tag().is_none() {
                return Err(SignatureError::DefaultNeedsTag(image.to_string()));
            }
            image.repo_with_tag()
        }
        SignatureType::Simple => image.repo_path(),
    };
    let optional = if annotations.is_empty() {
        Value::Null
    } else {
        json!(annotations)
    };
    // serde_json without `preserve_order` sorts keys; cosign's order happens to be alphabetical.
    let payload = json!({
        "critical": {
            "identity": {"docker-reference": identity},
            "image": {"docker-manifest-digest": digest},
            "type": COSIGN_TYPE,
        },
        "optional": optional,
    });
    serde_json::to_vec(&payload).map_err(|e| SignatureError::MalformedPayload(e.to_string()))
}

/// Looks a key up case-insensitively, as Go's encoding/json (cosign) does.
///
/// Two keys that differ only in case (`docker-manifest-digest` and `Docker-manifest-digest`)
/// are refused: Go lets the last one win, a lookup that prefers the exact spelling lets the
/// first win, so such a payload could mean one digest to cosign and another here. (Keys spelled
/// exactly alike collapse to the last one in both, so they cannot disagree.)
fn field<'a>(
    object: &'a Map<String, Value>,
    name: &str,
) -> Result<Option<&'a Value>, SignatureError> {
    let mut found = object.iter().filter(|(k, _)| k.eq_ignore_ascii_case(name));
    let Some((first, value)) = found.next() else {
        return Ok(None);
    };
    if let Some((other, _)) = found.next() {
        return Err(SignatureError::MalformedPayload(format!(
            "keys {first:?} and {other:?} differ only in case: refused, readers disagree on which counts"
        )));
    }
    Ok(Some(value))
}

fn string_at(root: &Map<String, Value>, path: &[&str]) -> Result<String, SignatureError> {
    let mut current = root;
    let (last, parents) = path
        .split_last()
        .ok_or_else(|| SignatureError::MalformedPayload("empty field path".into()))?;
    for name in parents {
        current = field(current, name)?
            .and_then(Value::as_object)
            .ok_or_else(|| SignatureError::MalformedPayload(format!("no object {name:?}")))?;
    }
    field(current, last)?
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| SignatureError::MalformedPayload(format!("no string {:?}", path.join("."))))
}

/// Parses payload bytes; keys are matched case-insensitively, `optional` may be null or absent.
pub fn parse_payload(bytes: &[u8]) -> Result<Payload, SignatureError> {
    let value: Value = serde_json::from_slice(bytes)
        .map_err(|e| SignatureError::MalformedPayload(format!("not JSON: {e}")))?;
    let root = value
        .as_object()
        .ok_or_else(|| SignatureError::MalformedPayload("not a JSON object".into()))?;
    let docker_reference = string_at(root, &["critical", "identity", "docker-reference"])?;
    let manifest_digest =
        string_at(root, &["critical", "image", "docker-manifest-digest"])?.to_ascii_lowercase();
    let kind = string_at(root, &["critical", "type"])?;
    let optional = match field(root, "optional")? {
        Some(Value::Object(map)) => map.clone(),
        _ => Map::new(),
    };
    Ok(Payload {
        docker_reference,
        manifest_digest,
        kind,
        optional,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:4e31af7b264bca7496760c2c94771a1cedb23532f08ad33a3d0518163529c356";

    #[test]
    fn default_binds_tag_simple_names_repository() {
        let img = ImageRef::parse("127.0.0.1:5000/ns1/app:v1").unwrap();
        let p = build_payload(&img, D, SignatureType::Default, &BTreeMap::new()).unwrap();
        assert_eq!(
            String::from_utf8(p).unwrap(),
            format!(
                r#"{{"critical":{{"identity":{{"docker-reference":"127.0.0.1:5000/ns1/app:v1"}},"image":{{"docker-manifest-digest":"{D}"}},"type":"cosign container image signature"}},"optional":null}}"#
            )
        );
        let p = build_payload(&img, D, SignatureType::Simple, &BTreeMap::new()).unwrap();
        assert_eq!(
            parse_payload(&p).unwrap().docker_reference,
            "127.0.0.1:5000/ns1/app"
        );
    }

    #[test]
    fn reads_the_reference_payload_written_by_cosign() {
        let bytes =
            include_bytes!("../../tests/fixtures/cosign-simplesigning-payload.example.json");
        let p = parse_payload(bytes).unwrap();
        assert_eq!(p.docker_reference, "127.0.0.1:5000/ns1/app:v1");
        assert_eq!(p.manifest_digest, D);
        assert_eq!(p.kind, COSIGN_TYPE);
    }

    #[test]
    fn keys_are_case_insensitive_and_digest_lowercased() {
        let upper = D.to_uppercase().replace("SHA256", "sha256");
        let text = format!(
            r#"{{"Critical":{{"Identity":{{"docker-reference":"r.io/a"}},"Image":{{"Docker-manifest-digest":"{upper}"}},"Type":"atomic container signature"}}}}"#
        );
        let p = parse_payload(text.as_bytes()).unwrap();
        assert_eq!(p.manifest_digest, D);
        assert_eq!(p.kind, ATOMIC_TYPE);
    }

    #[test]
    fn annotations_go_to_optional() {
        let img = ImageRef::parse("r.io/a:v1").unwrap();
        let notes = BTreeMap::from([("ci".to_string(), "run-42".to_string())]);
        let p = parse_payload(&build_payload(&img, D, SignatureType::Default, &notes).unwrap())
            .unwrap();
        assert_eq!(p.optional.get("ci"), Some(&json!("run-42")));
    }

    #[test]
    fn malformed_payloads_say_what_is_missing() {
        for (bad, needle) in [
            ("[]", "not a JSON object"),
            ("{", "not JSON"),
            (r#"{"critical":{}}"#, "identity"),
            (
                r#"{"critical":{"identity":{"docker-reference":"x"},"image":{}}}"#,
                "docker-manifest-digest",
            ),
        ] {
            let err = parse_payload(bad.as_bytes()).unwrap_err().to_string();
            assert!(err.contains(needle), "{bad}: {err}");
        }
    }

    /// Review item 11c: a second spelling of a key must not smuggle in another digest (Go takes
    /// the last, an exact-match-first reader the first).
    #[test]
    fn keys_differing_only_in_case_are_refused_at_every_level() {
        let other = format!("sha256:{}", "e".repeat(64));
        for bad in [
            format!(
                r#"{{"critical":{{"identity":{{"docker-reference":"r.io/a"}},"image":{{"docker-manifest-digest":"{D}","Docker-manifest-digest":"{other}"}},"type":"{COSIGN_TYPE}"}}}}"#
            ),
            format!(
                r#"{{"critical":{{"identity":{{"docker-reference":"r.io/a","Docker-Reference":"r.io/b"}},"image":{{"docker-manifest-digest":"{D}"}},"type":"{COSIGN_TYPE}"}}}}"#
            ),
            format!(
                r#"{{"critical":{{"identity":{{"docker-reference":"r.io/a"}},"image":{{"docker-manifest-digest":"{D}"}},"Image":{{"docker-manifest-digest":"{other}"}},"type":"{COSIGN_TYPE}"}}}}"#
            ),
            format!(
                r#"{{"critical":{{"identity":{{"docker-reference":"r.io/a"}},"image":{{"docker-manifest-digest":"{D}"}},"type":"{COSIGN_TYPE}","TYPE":"x"}}}}"#
            ),
            format!(
                r#"{{"Critical":{{}},"critical":{{"identity":{{"docker-reference":"r.io/a"}},"image":{{"docker-manifest-digest":"{D}"}},"type":"{COSIGN_TYPE}"}}}}"#
            ),
            format!(
                r#"{{"critical":{{"identity":{{"docker-reference":"r.io/a"}},"image":{{"docker-manifest-digest":"{D}"}},"type":"{COSIGN_TYPE}"}},"optional":null,"Optional":{{}}}}"#
            ),
        ] {
            let err = parse_payload(bad.as_bytes()).unwrap_err().to_string();
            assert!(err.contains("differ only in case"), "{bad}: {err}");
            assert!(!err.contains('\n'), "{err}");
        }
        // Exact duplicates collapse to the last, as in Go: no disagreement to refuse.
        let same = format!(
            r#"{{"critical":{{"identity":{{"docker-reference":"r.io/a"}},"image":{{"docker-manifest-digest":"{other}","docker-manifest-digest":"{D}"}},"type":"{COSIGN_TYPE}"}}}}"#
        );
        assert_eq!(parse_payload(same.as_bytes()).unwrap().manifest_digest, D);
    }

    #[test]
    fn default_without_tag_is_refused() {
        let img = ImageRef::parse(&format!("r.io/a@{D}")).unwrap();
        assert!(build_payload(&img, D, SignatureType::Default, &BTreeMap::new()).is_err());
        assert!(build_payload(&img, D, SignatureType::Simple, &BTreeMap::new()).is_ok());
    }
}
