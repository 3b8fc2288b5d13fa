//! COSE_Sign1 (CBOR tag 18), as Notation writes it: protected header with `alg` (1), `crit` (2),
//! content type (3) and the Notary headers under their text labels (times as tag 1 epoch
//! seconds); unprotected `x5chain` (33) with the DER chain, leaf first; attached payload; the
//! signature over the `Signature1` Sig_structure with empty external AAD.

use coset::cbor::value::Value;
use coset::iana::EnumI64;
use coset::{
    CoseSign1, CoseSign1Builder, HeaderBuilder, Label, RegisteredLabel, RegisteredLabelWithPrivate,
    TaggedCborSerializable, iana,
};

use super::alg::NotaryAlgorithm;
use super::envelope::{
    Envelope, EnvelopeFormat, HEADER_AUTHENTIC_SIGNING_TIME, HEADER_EXPIRY, HEADER_SIGNING_AGENT,
    HEADER_SIGNING_SCHEME, HEADER_SIGNING_TIME, HEADER_TIMESTAMP, PAYLOAD_MEDIA_TYPE, SCHEME_X509,
};

/// COSE header label of `x5chain` (RFC 9360).
const LABEL_X5CHAIN: i64 = 33;

fn time(value: &Value, name: &str) -> Result<i64, String> {
    let Value::Tag(1, inner) = value else {
        return Err(format!("header {name} is not a tag 1 (epoch) time"));
    };
    match inner.as_ref() {
        Value::Integer(i) => {
            i64::try_from(i128::from(*i)).map_err(|_| format!("header {name} is out of range"))
        }
        Value::Float(f) if f.is_finite() => Ok(f.floor() as i64),
        _ => Err(format!("header {name} is not a number of seconds")),
    }
}

fn label_text<T: EnumI64 + coset::iana::WithPrivateRange>(
    label: &RegisteredLabelWithPrivate<T>,
) -> String {
    match label {
        RegisteredLabelWithPrivate::Text(s) => s.clone(),
        RegisteredLabelWithPrivate::Assigned(a) => a.to_i64().to_string(),
        RegisteredLabelWithPrivate::PrivateUse(i) => i.to_string(),
    }
}

/// Parses a COSE_Sign1 envelope; says what is malformed.
pub(crate) fn parse(bytes: &[u8]) -> Result<Envelope, String> {
    let sign1 = CoseSign1::from_tagged_slice(bytes)
        .map_err(|e| format!("not a COSE_Sign1 (tag 18) envelope: {e}"))?;
    let header = &sign1.protected.header;
    let algorithm = match &header.alg {
        Some(RegisteredLabelWithPrivate::Assigned(a)) => {
            NotaryAlgorithm::from_cose(a.to_i64()).ok_or_else(|| a.to_i64().to_string())
        }
        Some(other) => Err(label_text(other)),
        None => return Err("protected header has no alg".into()),
    };
    let content_type = match &header.content_type {
        None => None,
        Some(RegisteredLabel::Text(s)) => Some(s.clone()),
        Some(RegisteredLabel::Assigned(a)) => Some(format!("CoAP content format {}", a.to_i64())),
    };
    let mut signing_scheme = None;
    let mut signing_time = None;
    let mut expiry = None;
    let mut has_authentic_signing_time = false;
    let mut extended = Vec::new();
    for (label, value) in &header.rest {
        match label {
            Label::Text(name) if name == HEADER_SIGNING_SCHEME => match value {
                Value::Text(s) => signing_scheme = Some(s.clone()),
                _ => return Err(format!("header {name} is not a text string")),
            },
            Label::Text(name) if name == HEADER_SIGNING_TIME => {
                signing_time = Some(time(value, name)?);
            }
            Label::Text(name) if name == HEADER_EXPIRY => expiry = Some(time(value, name)?),
            Label::Text(name) if name == HEADER_AUTHENTIC_SIGNING_TIME => {
                has_authentic_signing_time = true;
            }
            Label::Text(name) => extended.push(name.clone()),
            Label::Int(i) => extended.push(i.to_string()),
        }
    }
    let mut chain = Vec::new();
    let mut timestamp = None;
    for (label, value) in &sign1.unprotected.rest {
        match (label, value) {
            (Label::Int(LABEL_X5CHAIN), Value::Bytes(one)) => chain = vec![one.clone()],
            (Label::Int(LABEL_X5CHAIN), Value::Array(items)) => {
                chain = items
                    .iter()
                    .map(|item| match item {
                        Value::Bytes(der) => Ok(der.clone()),
                        _ => Err("x5chain holds a non-bytes item".to_string()),
                    })
                    .collect::<Result<_, _>>()?;
            }
            (Label::Int(LABEL_X5CHAIN), _) => return Err("x5chain is not bytes".into()),
            (Label::Text(name), Value::Bytes(token)) if name == HEADER_TIMESTAMP => {
                timestamp = Some(token.clone());
            }
            (Label::Text(name), _) if name == HEADER_TIMESTAMP => {
                return Err(format!("{HEADER_TIMESTAMP} is not a byte string"));
            }
            _ => {}
        }
    }
    let payload = sign1
        .payload
        .clone()
        .ok_or_else(|| "the payload is detached (Notation attaches it)".to_string())?;
    Ok(Envelope {
        format: EnvelopeFormat::Cose,
        algorithm,
        content_type,
        signing_scheme,
        signing_time,
        expiry,
        has_authentic_signing_time,
        critical: header.crit.iter().map(label_text).collect(),
        extended,
        signing_input: sign1.tbs_data(b""),
        payload,
        signature: sign1.signature.clone(),
        chain,
        timestamp,
    })
}

/// A COSE_Sign1 for `payload` without its signature yet, and the Sig_structure to sign.
pub(crate) fn unsigned(
    algorithm: NotaryAlgorithm,
    payload: &[u8],
    signing_time: i64,
    expiry: Option<i64>,
    chain: &[Vec<u8>],
    signing_agent: &str,
    extra_headers: &[(&str, bool)],
) -> Result<(CoseSign1, Vec<u8>), String> {
    let alg = iana::Algorithm::from_i64(algorithm.cose_id())
        .ok_or_else(|| format!("{algorithm} has no COSE identifier"))?;
    let epoch = |t: i64| Value::Tag(1, Box::new(Value::Integer(t.into())));
    let mut protected =
        HeaderBuilder::new()
            .algorithm(alg)
            .add_critical_label(RegisteredLabelWithPrivate::Text(
                HEADER_SIGNING_SCHEME.into(),
            ));
    if expiry.is_some() {
        protected =
            protected.add_critical_label(RegisteredLabelWithPrivate::Text(HEADER_EXPIRY.into()));
    }
    protected = protected
        .content_type(PAYLOAD_MEDIA_TYPE.into())
        .text_value(
            HEADER_SIGNING_SCHEME.into(),
            Value::Text(SCHEME_X509.into()),
        )
        .text_value(HEADER_SIGNING_TIME.into(), epoch(signing_time));
    if let Some(expiry) = expiry {
        protected = protected.text_value(HEADER_EXPIRY.into(), epoch(expiry));
    }
    for (name, critical) in extra_headers {
        protected = protected.text_value((*name).into(), Value::Text("x".into()));
        if *critical {
            protected =
                protected.add_critical_label(RegisteredLabelWithPrivate::Text((*name).into()));
        }
    }
    let unprotected = HeaderBuilder::new()
        .value(
            LABEL_X5CHAIN,
            Value::Array(chain.iter().map(|c| Value::Bytes(c.clone())).collect()),
        )
        .text_value(
            HEADER_SIGNING_AGENT.into(),
            Value::Text(signing_agent.into()),
        )
        .build();
    let sign1 = CoseSign1Builder::new()
        .protected(protected.build())
        .unprotected(unprotected)
        .payload(payload.to_vec())
        .build();
    let tbs = sign1.tbs_data(b"");
    Ok((sign1, tbs))
}

/// The envelope bytes of `sign1` with `signature` set.
pub(crate) fn assemble(mut sign1: CoseSign1, signature: Vec<u8>) -> Result<Vec<u8>, String> {
    sign1.signature = signature;
    sign1
        .to_tagged_vec()
        .map_err(|e| format!("cannot encode the COSE envelope: {e}"))
}
