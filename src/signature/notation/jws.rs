//! JWS flattened JSON serialization, as Notation writes it: protected header (base64url JSON),
//! payload (base64url), signature (base64url; ECDSA raw `r || s`), and an unprotected `header`
//! holding `x5c` (standard base64 DER, leaf first) and optional timestamp and signing agent.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::alg::NotaryAlgorithm;
use super::envelope::{
    Envelope, EnvelopeFormat, HEADER_AUTHENTIC_SIGNING_TIME, HEADER_EXPIRY, HEADER_SIGNING_SCHEME,
    HEADER_SIGNING_TIME, HEADER_TIMESTAMP, PAYLOAD_MEDIA_TYPE, SCHEME_X509,
};
use crate::crypto::x509::MAX_TOKEN_SIZE;

#[derive(Serialize, Deserialize)]
struct JwsDoc {
    payload: String,
    protected: String,
    header: Unprotected,
    signature: String,
}

#[derive(Serialize, Deserialize)]
struct Unprotected {
    #[serde(default)]
    x5c: Vec<String>,
    #[serde(
        rename = "io.cncf.notary.timestampSignature",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    timestamp: Option<String>,
    #[serde(
        rename = "io.cncf.notary.signingAgent",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    signing_agent: Option<String>,
}

fn time(value: &Value, name: &str) -> Result<i64, String> {
    let text = value
        .as_str()
        .ok_or_else(|| format!("header {name} is not a string"))?;
    text.parse::<jiff::Timestamp>()
        .map(|t| t.as_second())
        .map_err(|e| format!("header {name} is not an RFC 3339 time: {e}"))
}

/// Parses a JWS envelope; says what is malformed.
pub(crate) fn parse(bytes: &[u8]) -> Result<Envelope, String> {
    let doc: JwsDoc = serde_json::from_slice(bytes)
        .map_err(|e| format!("not a JWS flattened JSON envelope: {e}"))?;
    let protected_json = URL_SAFE_NO_PAD
        .decode(doc.protected.as_bytes())
        .map_err(|e| format!("protected header is not base64url: {e}"))?;
    let protected: Map<String, Value> = serde_json::from_slice(&protected_json)
        .map_err(|e| format!("protected header is not a JSON object: {e}"))?;
    let payload = URL_SAFE_NO_PAD
        .decode(doc.payload.as_bytes())
        .map_err(|e| format!("payload is not base64url: {e}"))?;
    let signature = URL_SAFE_NO_PAD
        .decode(doc.signature.as_bytes())
        .map_err(|e| format!("signature is not base64url: {e}"))?;
    let chain = doc
        .header
        .x5c
        .iter()
        .enumerate()
        .map(|(i, c)| {
            STANDARD
                .decode(c.as_bytes())
                .map_err(|e| format!("x5c[{i}] is not base64: {e}"))
        })
        .collect::<Result<Vec<_>, _>>()?;

    let timestamp = doc
        .header
        .timestamp
        .as_deref()
        .map(|t| {
            if t.len() > MAX_TOKEN_SIZE / 3 * 4 + 4 {
                return Err(format!("{HEADER_TIMESTAMP} is over {MAX_TOKEN_SIZE} bytes"));
            }
            STANDARD
                .decode(t.as_bytes())
                .map_err(|e| format!("{HEADER_TIMESTAMP} is not base64: {e}"))
        })
        .transpose()?;

    let algorithm = match protected.get("alg") {
        Some(Value::String(name)) => NotaryAlgorithm::from_jws(name).ok_or_else(|| name.clone()),
        Some(other) => Err(other.to_string()),
        None => return Err("protected header has no alg".into()),
    };
    let critical = match protected.get("crit") {
        None => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| "crit holds a non-string".to_string())
            })
            .collect::<Result<Vec<_>, _>>()?,
        Some(_) => return Err("crit is not an array".into()),
    };
    let text = |name: &str| -> Result<Option<String>, String> {
        match protected.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(format!("header {name} is not a string")),
        }
    };
    let known = [
        "alg",
        "cty",
        "crit",
        HEADER_SIGNING_SCHEME,
        HEADER_SIGNING_TIME,
        HEADER_EXPIRY,
        HEADER_AUTHENTIC_SIGNING_TIME,
    ];
    let mut signing_input = doc.protected.clone().into_bytes();
    signing_input.push(b'.');
    signing_input.extend_from_slice(doc.payload.as_bytes());
    Ok(Envelope {
        format: EnvelopeFormat::Jws,
        algorithm,
        content_type: text("cty")?,
        signing_scheme: text(HEADER_SIGNING_SCHEME)?,
        signing_time: protected
            .get(HEADER_SIGNING_TIME)
            .map(|v| time(v, HEADER_SIGNING_TIME))
            .transpose()?,
        expiry: protected
            .get(HEADER_EXPIRY)
            .map(|v| time(v, HEADER_EXPIRY))
            .transpose()?,
        has_authentic_signing_time: protected.contains_key(HEADER_AUTHENTIC_SIGNING_TIME),
        critical,
        extended: protected
            .keys()
            .filter(|k| !known.contains(&k.as_str()))
            .cloned()
            .collect(),
        signing_input,
        payload,
        signature,
        chain,
        timestamp,
    })
}

/// The JWS signing input for `payload` under `algorithm`, signed at `signing_time` (Unix
/// seconds), and the protected header it encodes: `(protected_b64, payload_b64)`.
pub(crate) fn signing_input(
    algorithm: NotaryAlgorithm,
    payload: &[u8],
    signing_time: i64,
    expiry: Option<i64>,
    extra_headers: &[(&str, bool)],
) -> Result<(String, String), String> {
    let rfc3339 = |t: i64| {
        jiff::Timestamp::from_second(t)
            .map(|t| t.to_string())
            .map_err(|e| format!("time {t} out of range: {e}"))
    };
    let mut header = Map::new();
    header.insert("alg".into(), Value::from(algorithm.jws_name()));
    let mut crit = vec![Value::from(HEADER_SIGNING_SCHEME)];
    if expiry.is_some() {
        crit.push(Value::from(HEADER_EXPIRY));
    }
    for (name, critical) in extra_headers {
        header.insert((*name).into(), Value::from("x"));
        if *critical {
            crit.push(Value::from(*name));
        }
    }
    header.insert("crit".into(), Value::Array(crit));
    header.insert("cty".into(), Value::from(PAYLOAD_MEDIA_TYPE));
    header.insert(HEADER_SIGNING_SCHEME.into(), Value::from(SCHEME_X509));
    header.insert(
        HEADER_SIGNING_TIME.into(),
        Value::from(rfc3339(signing_time)?),
    );
    if let Some(expiry) = expiry {
        header.insert(HEADER_EXPIRY.into(), Value::from(rfc3339(expiry)?));
    }
    let json = serde_json::to_vec(&header).map_err(|e| e.to_string())?;
    Ok((
        URL_SAFE_NO_PAD.encode(json),
        URL_SAFE_NO_PAD.encode(payload),
    ))
}

/// The envelope bytes from the parts [`signing_input`] returned, the raw signature and the DER
/// chain (leaf first).
pub(crate) fn assemble(
    protected_b64: String,
    payload_b64: String,
    signature: &[u8],
    chain: &[Vec<u8>],
    signing_agent: &str,
) -> Vec<u8> {
    let doc = JwsDoc {
        payload: payload_b64,
        protected: protected_b64,
        header: Unprotected {
            x5c: chain.iter().map(|c| STANDARD.encode(c)).collect(),
            timestamp: None,
            signing_agent: Some(signing_agent.to_string()),
        },
        signature: URL_SAFE_NO_PAD.encode(signature),
    };
    // A struct of strings always serialises.
    serde_json::to_vec(&doc).unwrap_or_default()
}
