//! Writing an [`Answer`] as the AdmissionReview v1 response body.
//!
//! Written by hand into one buffer rather than through serde_json's serializer: on a cached
//! admission the serializer's byte-by-byte escaping of the answer's strings (the uid, the audit
//! annotation listing every verified image with its digest) and its per-field machinery cost
//! about 5,700 instructions, more than the rest of the answer path (callgrind,
//! `COST=4000 scripts/bench-vs-nginx.sh`). A string holding nothing JSON must escape (`"`,
//! `\` or a control character, found eight bytes at a time) is copied as it is; any other is
//! handed to serde_json itself, so the output is byte for byte what serde_json writes. The
//! serde version is kept in the tests as the reference the writer is compared with.
//!
//! Field order and omissions are those of the earlier serde structs: `uid`, `allowed`, `status`
//! (denials only), `patch` and `patchType` (a non-empty patch only), `auditAnnotations` and
//! `warnings` (when not empty).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use super::review::Answer;
use super::review_scan::find_special;

/// Most answers fit in 1 KiB: one allocation instead of growing.
const USUAL_SIZE: usize = 1024;

/// Every answer's start, up to the uid's value: [`super::review::ADMISSION_API_VERSION`]
/// and [`super::review::ADMISSION_KIND`] written out, one copy instead of two string writes
/// (the test compares every answer with serde_json's, so a change of either constant shows).
const PREFIX: &str =
    r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":"#;

/// The response body of `answer`.
pub(super) fn write(answer: &Answer) -> Result<Vec<u8>, serde_json::Error> {
    let mut body = Vec::with_capacity(USUAL_SIZE);
    body.extend_from_slice(PREFIX.as_bytes());
    string(&mut body, &answer.uid)?;
    body.extend_from_slice(if answer.allowed {
        b",\"allowed\":true"
    } else {
        b",\"allowed\":false"
    });
    if !answer.allowed {
        body.extend_from_slice(b",\"status\":{\"code\":403,\"reason\":\"Forbidden\",\"message\":");
        string(
            &mut body,
            answer.message.as_deref().unwrap_or("denied by signet"),
        )?;
        body.push(b'}');
    }
    if !answer.patch.is_empty() {
        body.extend_from_slice(b",\"patch\":");
        // Base64 needs no escaping.
        body.push(b'"');
        body.extend_from_slice(
            STANDARD
                .encode(serde_json::to_vec(&answer.patch)?)
                .as_bytes(),
        );
        body.extend_from_slice(b"\",\"patchType\":\"JSONPatch\"");
    }
    if !answer.audit_annotations.is_empty() {
        body.extend_from_slice(b",\"auditAnnotations\":{");
        for (i, (key, value)) in answer.audit_annotations.iter().enumerate() {
            if i > 0 {
                body.push(b',');
            }
            string(&mut body, key)?;
            body.push(b':');
            string(&mut body, value)?;
        }
        body.push(b'}');
    }
    if !answer.warnings.is_empty() {
        body.extend_from_slice(b",\"warnings\":[");
        for (i, warning) in answer.warnings.iter().enumerate() {
            if i > 0 {
                body.push(b',');
            }
            string(&mut body, warning)?;
        }
        body.push(b']');
    }
    body.extend_from_slice(b"}}");
    Ok(body)
}

/// `text` as a JSON string: copied when nothing in it needs an escape, else written by
/// serde_json.
fn string(body: &mut Vec<u8>, text: &str) -> Result<(), serde_json::Error> {
    let bytes = text.as_bytes();
    if find_special(bytes, 0) == bytes.len() {
        body.reserve(bytes.len() + 2);
        body.push(b'"');
        body.extend_from_slice(bytes);
        body.push(b'"');
        Ok(())
    } else {
        serde_json::to_writer(body, text)
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;
    use std::collections::BTreeMap;

    use serde::Serialize;
    use serde_json::json;

    use super::super::review::{ADMISSION_API_VERSION, ADMISSION_KIND};
    use super::*;

    /// The serde structs the writer replaced: the reference it must match byte for byte.
    fn reference(answer: &Answer) -> Vec<u8> {
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct ReviewOut<'a> {
            api_version: &'static str,
            kind: &'static str,
            response: ResponseOut<'a>,
        }
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct ResponseOut<'a> {
            uid: &'a str,
            allowed: bool,
            #[serde(skip_serializing_if = "Option::is_none")]
            status: Option<StatusOut<'a>>,
            #[serde(skip_serializing_if = "Option::is_none")]
            patch: Option<String>,
            #[serde(skip_serializing_if = "Option::is_none")]
            patch_type: Option<&'static str>,
            #[serde(skip_serializing_if = "BTreeMap::is_empty")]
            audit_annotations: &'a BTreeMap<Cow<'static, str>, Cow<'static, str>>,
            #[serde(skip_serializing_if = "<[String]>::is_empty")]
            warnings: &'a [String],
        }
        #[derive(Serialize)]
        struct StatusOut<'a> {
            code: u16,
            reason: &'static str,
            message: &'a str,
        }
        let patch = (!answer.patch.is_empty())
            .then(|| STANDARD.encode(serde_json::to_vec(&answer.patch).unwrap_or_default()));
        serde_json::to_vec(&ReviewOut {
            api_version: ADMISSION_API_VERSION,
            kind: ADMISSION_KIND,
            response: ResponseOut {
                uid: &answer.uid,
                allowed: answer.allowed,
                status: (!answer.allowed).then(|| StatusOut {
                    code: 403,
                    reason: "Forbidden",
                    message: answer.message.as_deref().unwrap_or("denied by signet"),
                }),
                patch_type: patch.as_ref().map(|_| "JSONPatch"),
                patch,
                audit_annotations: &answer.audit_annotations,
                warnings: &answer.warnings,
            },
        })
        .unwrap_or_default()
    }

    /// Strings that need no escape, and every kind that does, at the start, middle and end,
    /// across the eight-byte boundaries of the fast check.
    fn texts() -> Vec<String> {
        let mut texts = vec![
            String::new(),
            "a".to_string(),
            "registry.example/app:v1@sha256:0123".to_string(),
            "ünïcödé ✓ 🚀 stays raw".to_string(),
            "\u{7f} delete is not escaped".to_string(),
        ];
        for special in ["\"", "\\", "\n", "\t", "\u{0}", "\u{1f}", "\r\n"] {
            for at in [0, 1, 7, 8, 9, 15, 16, 30] {
                let mut text = "x".repeat(30);
                text.insert_str(at, special);
                texts.push(text);
            }
        }
        texts
    }

    #[test]
    fn writes_what_serde_json_writes() {
        let texts = texts();
        let mut answers = vec![Answer::default()];
        for (i, text) in texts.iter().enumerate() {
            let other = &texts[(i * 7 + 3) % texts.len()];
            answers.push(Answer {
                uid: text.clone(),
                allowed: i % 2 == 0,
                message: (i % 3 != 0).then(|| other.clone()),
                warnings: (0..i % 3).map(|n| format!("{text}{n}")).collect(),
                audit_annotations: (0..i % 4)
                    .map(|n| (Cow::Owned(format!("{other}{n}")), Cow::Owned(text.clone())))
                    .collect(),
                patch: if i % 5 == 0 {
                    vec![
                        json!({"op": "replace", "path": "/spec/containers/0/image", "value": text}),
                    ]
                } else {
                    Vec::new()
                },
            });
        }
        for answer in &answers {
            let written = write(answer).unwrap_or_default();
            assert_eq!(
                String::from_utf8_lossy(&written),
                String::from_utf8_lossy(&reference(answer)),
                "{answer:?}"
            );
            // And it reads back as JSON.
            assert!(serde_json::from_slice::<serde_json::Value>(&written).is_ok());
        }
    }

    #[test]
    fn a_denial_without_a_message_says_signet_denied_it() {
        let body = write(&Answer {
            uid: "u".into(),
            ..Answer::default()
        })
        .unwrap_or_default();
        assert_eq!(
            String::from_utf8_lossy(&body),
            r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":"u","allowed":false,"status":{"code":403,"reason":"Forbidden","message":"denied by signet"}}}"#
        );
    }
}
