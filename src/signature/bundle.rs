//! Sigstore bundles as cosign v3 writes image signatures: parse, check, build. Pure.
//!
//! A bundle (`application/vnd.dev.sigstore.bundle.v0.3+json`, or the older
//! `application/vnd.dev.sigstore.bundle+json;version=0.1|0.2|0.3`) counts as an image signature
//! only when it holds a DSSE envelope with exactly one signature over
//! PAE(payloadType, payload), payloadType `application/vnd.in-toto+json`, and the payload is an
//! in-toto Statement v1 whose `predicateType` is exactly `https://sigstore.dev/cosign/sign/v1`
//! (anything else, an SLSA provenance or an SBOM attestation, is not a signature of the image)
//! with one subject whose digest is the image digest. `messageSignature` bundles sign a blob,
//! not an image: refused.
//!
//! Key material in a bundle is never trusted: a `publicKey.hint` only orders the Attestor's own
//! keys (the hinted one tried first); a certificate the bundle carries is ignored, and named in
//! the rejection when no Attestor key verifies. Transparency-log entries and timestamps may be
//! present and are not required nor checked: verification is key-based and offline.
//!
//! Identity: the statement subject's `name`. signet writes `registry/repository:tag` for
//! `Default` and `registry/repository` for `Simple`; cosign writes no tag binding, so its
//! bundles satisfy `Simple` only, and a `Default` denial says so in words.
//!
//! Field names are read in protobuf JSON's camelCase and in the proto's own snake_case (Go's
//! protojson accepts both); a field given in both spellings is refused as a duplicate.

use std::collections::BTreeMap;

use base64::Engine as _;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::SignatureError;
use super::check::{Accepted, Rejection};
use super::payload::{Payload, SignatureType};
use crate::crypto::PublicKey;
use crate::reference::ImageRef;

/// The bundle media type cosign v3 writes (artifactType and layer media type).
pub const BUNDLE_MEDIA_TYPE: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";
/// The older bundle media types, also read.
pub const LEGACY_BUNDLE_MEDIA_TYPES: [&str; 3] = [
    "application/vnd.dev.sigstore.bundle+json;version=0.1",
    "application/vnd.dev.sigstore.bundle+json;version=0.2",
    "application/vnd.dev.sigstore.bundle+json;version=0.3",
];
/// DSSE payload type of an in-toto statement.
pub const IN_TOTO_PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";
/// `_type` of an in-toto Statement v1.
pub const IN_TOTO_STATEMENT_V1: &str = "https://in-toto.io/Statement/v1";
/// The predicate type of a cosign image signature: the only one that counts.
pub const COSIGN_SIGN_PREDICATE: &str = "https://sigstore.dev/cosign/sign/v1";

/// Whether `media_type` names a Sigstore bundle (any version signet reads).
pub fn is_bundle_media_type(media_type: &str) -> bool {
    let compact: String = media_type.chars().filter(|c| !c.is_whitespace()).collect();
    compact == BUNDLE_MEDIA_TYPE || LEGACY_BUNDLE_MEDIA_TYPES.contains(&compact.as_str())
}

/// DSSE's pre-authentication encoding: what the signature is over.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + payload_type.len() + 32);
    out.extend_from_slice(b"DSSEv1 ");
    out.extend_from_slice(payload_type.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload_type.as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload);
    out
}

/// `publicKey.hint` as cosign (sigstore-go) writes it for a key: base64 of SHA-256 of the DER
/// SubjectPublicKeyInfo.
pub fn public_key_hint(key: &PublicKey) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, key.spki_der());
    base64::engine::general_purpose::STANDARD.encode(digest.as_ref())
}

/// The verification material a bundle carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyMaterial {
    /// A public key named by a hint (or nothing at all): the verifier brings the key.
    PublicKeyHint(Option<String>),
    /// A leaf certificate or a chain: never trusted here.
    Certificate,
}

/// A parsed bundle: the one DSSE signature and what it is over.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bundle {
    /// The bundle's own `mediaType`.
    pub media_type: String,
    /// What the bundle says about its key.
    pub key_material: KeyMaterial,
    /// The DSSE payload type.
    pub payload_type: String,
    /// The DSSE payload (decoded): the statement.
    pub payload: Vec<u8>,
    /// The one DSSE signature (decoded).
    pub signature: Vec<u8>,
    /// Transparency-log entries present (not checked).
    pub tlog_entries: usize,
}

/// One subject of an in-toto statement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subject {
    /// `name`, when present and not empty.
    pub name: Option<String>,
    /// `digest`: algorithm -> hex, lower-cased.
    pub digests: BTreeMap<String, String>,
}

/// The claims of an in-toto Statement v1.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Statement {
    /// `predicateType`.
    pub predicate_type: String,
    /// `subject`.
    pub subjects: Vec<Subject>,
    /// `predicate`, when it is an object.
    pub predicate: Map<String, Value>,
}

#[derive(Deserialize)]
struct BundleDoc {
    #[serde(rename = "mediaType", alias = "media_type", default)]
    media_type: String,
    #[serde(rename = "verificationMaterial", alias = "verification_material")]
    verification_material: Option<MaterialDoc>,
    #[serde(rename = "dsseEnvelope", alias = "dsse_envelope")]
    dsse_envelope: Option<EnvelopeDoc>,
    #[serde(rename = "messageSignature", alias = "message_signature")]
    message_signature: Option<Value>,
}

#[derive(Deserialize)]
struct MaterialDoc {
    #[serde(rename = "publicKey", alias = "public_key")]
    public_key: Option<HintDoc>,
    certificate: Option<Value>,
    #[serde(rename = "x509CertificateChain", alias = "x509_certificate_chain")]
    chain: Option<Value>,
    #[serde(rename = "tlogEntries", alias = "tlog_entries", default)]
    tlog_entries: Vec<Value>,
}

#[derive(Deserialize)]
struct HintDoc {
    #[serde(default)]
    hint: Option<String>,
}

#[derive(Deserialize)]
struct EnvelopeDoc {
    #[serde(default)]
    payload: String,
    #[serde(rename = "payloadType", alias = "payload_type", default)]
    payload_type: String,
    #[serde(default)]
    signatures: Vec<SignatureDoc>,
}

#[derive(Deserialize)]
struct SignatureDoc {
    #[serde(default)]
    sig: String,
}

#[derive(Deserialize)]
struct StatementDoc {
    #[serde(rename = "_type", default)]
    kind: String,
    #[serde(default)]
    subject: Vec<SubjectDoc>,
    #[serde(rename = "predicateType", alias = "predicate_type", default)]
    predicate_type: String,
    #[serde(default)]
    predicate: Option<Value>,
}

#[derive(Deserialize)]
struct SubjectDoc {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    digest: BTreeMap<String, String>,
}

/// Protobuf JSON writes bytes in standard base64; it reads URL-safe and unpadded too.
fn decode_base64(text: &str) -> Option<Vec<u8>> {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    let text = text.trim();
    [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
        .iter()
        .find_map(|engine| engine.decode(text).ok())
}

fn malformed(why: impl Into<String>) -> SignatureError {
    SignatureError::MalformedBundle(why.into())
}

/// Parses a bundle holding one DSSE signature over an in-toto payload; says what is wrong
/// otherwise (a message signature, no or several signatures, another payload type).
pub fn parse_bundle(bytes: &[u8]) -> Result<Bundle, SignatureError> {
    let doc: BundleDoc =
        serde_json::from_slice(bytes).map_err(|e| malformed(format!("not a bundle: {e}")))?;
    if !is_bundle_media_type(&doc.media_type) {
        return Err(malformed(format!(
            "unknown bundle media type {:?}",
            doc.media_type
        )));
    }
    let envelope = match (doc.dsse_envelope, doc.message_signature) {
        (Some(_), Some(_)) => {
            return Err(malformed(
                "holds both a DSSE envelope and a message signature",
            ));
        }
        (None, Some(_)) => {
            return Err(malformed(
                "a messageSignature bundle signs a blob, not an image: refused",
            ));
        }
        (None, None) => return Err(malformed("no DSSE envelope")),
        (Some(envelope), None) => envelope,
    };
    if envelope.payload_type != IN_TOTO_PAYLOAD_TYPE {
        return Err(malformed(format!(
            "DSSE payload type {:?} is not {IN_TOTO_PAYLOAD_TYPE}",
            envelope.payload_type
        )));
    }
    let [only] = envelope.signatures.as_slice() else {
        return Err(malformed(format!(
            "the DSSE envelope holds {} signatures; exactly one is accepted",
            envelope.signatures.len()
        )));
    };
    let signature =
        decode_base64(&only.sig).ok_or_else(|| malformed("DSSE signature is not base64"))?;
    if signature.is_empty() {
        return Err(malformed("DSSE signature is empty"));
    }
    let payload =
        decode_base64(&envelope.payload).ok_or_else(|| malformed("DSSE payload is not base64"))?;
    let (key_material, tlog_entries) = match doc.verification_material {
        None => (KeyMaterial::PublicKeyHint(None), 0),
        Some(m) => {
            let material = if m.certificate.is_some() || m.chain.is_some() {
                KeyMaterial::Certificate
            } else {
                KeyMaterial::PublicKeyHint(
                    m.public_key
                        .and_then(|k| k.hint)
                        .filter(|h| !h.trim().is_empty()),
                )
            };
            (material, m.tlog_entries.len())
        }
    };
    Ok(Bundle {
        media_type: doc.media_type,
        key_material,
        payload_type: envelope.payload_type,
        payload,
        signature,
        tlog_entries,
    })
}

/// Parses an in-toto Statement v1.
pub fn parse_statement(bytes: &[u8]) -> Result<Statement, SignatureError> {
    let doc: StatementDoc =
        serde_json::from_slice(bytes).map_err(|e| malformed(format!("statement: {e}")))?;
    if doc.kind != IN_TOTO_STATEMENT_V1 {
        return Err(malformed(format!(
            "statement _type {:?} is not {IN_TOTO_STATEMENT_V1}",
            doc.kind
        )));
    }
    let predicate = match doc.predicate {
        Some(Value::Object(map)) => map,
        _ => Map::new(),
    };
    Ok(Statement {
        predicate_type: doc.predicate_type,
        subjects: doc
            .subject
            .into_iter()
            .map(|s| Subject {
                name: s.name.filter(|n| !n.is_empty()),
                digests: s
                    .digest
                    .into_iter()
                    .map(|(alg, hex)| (alg.to_ascii_lowercase(), hex.to_ascii_lowercase()))
                    .collect(),
            })
            .collect(),
        predicate,
    })
}

/// The attestor's keys in the order to try: the one the hint names first (a hint naming no
/// attestor key changes nothing: it is only a hint).
fn key_order(keys: &[PublicKey], material: &KeyMaterial) -> Vec<usize> {
    let mut order: Vec<usize> = (0..keys.len()).collect();
    if let KeyMaterial::PublicKeyHint(Some(hint)) = material
        && let Some(i) = keys.iter().position(|k| public_key_hint(k) == *hint)
    {
        order.retain(|&j| j != i);
        order.insert(0, i);
    }
    order
}

fn rejection(e: SignatureError) -> Rejection {
    match e {
        SignatureError::MalformedBundle(why) => Rejection::MalformedBundle(why),
        other => Rejection::MalformedBundle(other.to_string()),
    }
}

/// Checks one bundle (the layer blob) for `image` resolved to `digest`: the same rules as
/// [`super::check_signature`] for the legacy format.
pub fn check_bundle(
    bytes: &[u8],
    image: &ImageRef,
    digest: &str,
    signature_type: SignatureType,
    keys: &[PublicKey],
) -> Result<Accepted, Rejection> {
    let bundle = parse_bundle(bytes).map_err(rejection)?;
    let signed = pae(&bundle.payload_type, &bundle.payload);
    // Verify before reading any claim: an unsigned claim means nothing.
    let key_index = key_order(keys, &bundle.key_material)
        .into_iter()
        .find(|&i| keys[i].verify(&signed, &bundle.signature).is_ok())
        .ok_or(match bundle.key_material {
            KeyMaterial::Certificate => Rejection::UntrustedBundleKey,
            KeyMaterial::PublicKeyHint(_) => Rejection::UntrustedKey,
        })?;
    let statement = parse_statement(&bundle.payload).map_err(rejection)?;
    if statement.predicate_type != COSIGN_SIGN_PREDICATE {
        return Err(Rejection::NotImageSignature(statement.predicate_type));
    }
    let [subject] = statement.subjects.as_slice() else {
        return Err(Rejection::MalformedBundle(format!(
            "the statement names {} subjects; an image signature names one",
            statement.subjects.len()
        )));
    };
    let (algorithm, hex) = digest.split_once(':').unwrap_or(("sha256", digest));
    match subject.digests.get(&algorithm.to_ascii_lowercase()) {
        Some(signed_hex) if signed_hex.eq_ignore_ascii_case(hex) => {}
        Some(other) => return Err(Rejection::OtherDigest(format!("{algorithm}:{other}"))),
        None => {
            let named = subject
                .digests
                .iter()
                .next()
                .map_or_else(|| "no digest".to_string(), |(a, h)| format!("{a}:{h}"));
            return Err(Rejection::OtherDigest(named));
        }
    }
    let name = subject.name.clone().unwrap_or_default();
    let payload = Payload {
        docker_reference: name.clone(),
        manifest_digest: digest.to_ascii_lowercase(),
        kind: statement.predicate_type,
        optional: statement.predicate,
    };
    if signature_type == SignatureType::Default {
        check_name(&name, image)?;
    }
    Ok(Accepted { key_index, payload })
}

/// `Default`: the subject name binds the workload's repository and tag.
fn check_name(name: &str, image: &ImageRef) -> Result<(), Rejection> {
    if name.is_empty() {
        return Err(Rejection::NoTagBinding {
            signed: String::new(),
        });
    }
    let signed = ImageRef::parse_exact(name)
        .map_err(|_| Rejection::MalformedBundle(format!("bad subject name {name:?}")))?;
    if signed.repo_path() != image.repo_path() {
        return Err(Rejection::OtherRepository(signed.repo_path()));
    }
    match (image.tag(), signed.tag()) {
        (Some(_), None) => Err(Rejection::NoTagBinding {
            signed: name.to_string(),
        }),
        (Some(tag), Some(other)) if other != tag => Err(Rejection::TagNotBound {
            tag: tag.to_string(),
            signed: name.to_string(),
        }),
        _ => Ok(()),
    }
}

/// The statement signet signs for `image` at `digest`: subject name `registry/repo:tag` for
/// `Default` (the image must name a tag), `registry/repo` for `Simple`; `annotations` go into
/// the predicate.
pub fn build_statement(
    image: &ImageRef,
    digest: &str,
    signature_type: SignatureType,
    annotations: &BTreeMap<String, String>,
) -> Result<Vec<u8>, SignatureError> {
    let digest = crate::reference::normalise_digest(digest)
        .ok_or_else(|| SignatureError::MalformedPayload(format!("not a digest: {digest:?}")))?;
    let name = match signature_type {
        SignatureType::Default => {
            if image.tag().is_none() {
                return Err(SignatureError::DefaultNeedsTag(image.to_string()));
            }
            image.repo_with_tag()
        }
        SignatureType::Simple => image.repo_path(),
    };
    let (algorithm, hex) = digest.split_once(':').unwrap_or(("sha256", &digest));
    serde_json::to_vec(&json!({
        "_type": IN_TOTO_STATEMENT_V1,
        "subject": [{"name": name, "digest": {algorithm: hex}}],
        "predicateType": COSIGN_SIGN_PREDICATE,
        "predicate": annotations,
    }))
    .map_err(|e| malformed(e.to_string()))
}

/// A bundle as cosign v3 writes it with a key: the DSSE envelope over `statement` with
/// `signature` (over [`pae`]), the key's hint, and no transparency-log entry (signet signs
/// offline).
pub fn build_bundle(statement: &[u8], signature: &[u8], key: &PublicKey) -> Vec<u8> {
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let doc = json!({
        "mediaType": BUNDLE_MEDIA_TYPE,
        "verificationMaterial": {
            "publicKey": {"hint": public_key_hint(key)},
            "tlogEntries": [],
        },
        "dsseEnvelope": {
            "payload": b64(statement),
            "payloadType": IN_TOTO_PAYLOAD_TYPE,
            "signatures": [{"sig": b64(signature), "keyid": ""}],
        },
    });
    // A json! value always serialises.
    serde_json::to_vec(&doc).unwrap_or_default()
}

#[cfg(test)]
#[path = "bundle_tests.rs"]
mod tests;
