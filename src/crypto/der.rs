//! Just enough DER and PEM for keys: reading and writing DER elements, which key type an SPKI or
//! PKCS#8 key holds, building SubjectPublicKeyInfo (the fingerprint is always taken over SPKI DER),
//! and PEM armour. The one DER toolkit of the crate: the signing side (PKCS#8 and SEC 1 headers,
//! ECDSA signatures, PKCS#11 key attributes) uses it too.

use base64::Engine;

use super::Algorithm;

pub(crate) const TAG_INTEGER: u8 = 0x02;
pub(crate) const TAG_BIT_STRING: u8 = 0x03;
pub(crate) const TAG_OCTET_STRING: u8 = 0x04;
pub(crate) const TAG_OID: u8 = 0x06;
pub(crate) const TAG_SEQUENCE: u8 = 0x30;

pub(crate) const OID_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
pub(crate) const OID_RSA_PSS: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0a];
pub(crate) const OID_EC: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
pub(crate) const OID_P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
pub(crate) const OID_P384: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x22];
pub(crate) const OID_ED25519: &[u8] = &[0x2b, 0x65, 0x70];

/// The kind of key an SPKI holds, as far as algorithm checks care.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum KeyKind {
    Rsa,
    EcP256,
    EcP384,
    EcOther,
    Ed25519,
    Unknown,
}

impl KeyKind {
    pub(crate) fn describe(self) -> &'static str {
        match self {
            KeyKind::Rsa => "an RSA key",
            KeyKind::EcP256 => "an EC P-256 key",
            KeyKind::EcP384 => "an EC P-384 key",
            KeyKind::EcOther => "an EC key on an unsupported curve",
            KeyKind::Ed25519 => "an Ed25519 key",
            KeyKind::Unknown => "a key of an unknown type",
        }
    }

    /// Whether a key of this kind can sign and verify with `algorithm`: RSA keys serve both RSA
    /// paddings, each EC curve its own ECDSA algorithm, Ed25519 keys Ed25519.
    pub(crate) fn fits(self, algorithm: Algorithm) -> bool {
        matches!(
            (self, algorithm),
            (
                KeyKind::Rsa,
                Algorithm::RsaPssSha256 | Algorithm::RsaPkcs1Sha256
            ) | (KeyKind::EcP256, Algorithm::EcdsaP256Sha256)
                | (KeyKind::EcP384, Algorithm::EcdsaP384Sha384)
                | (KeyKind::Ed25519, Algorithm::Ed25519)
        )
    }

    /// The one algorithm a key of this kind signs with, when its type decides it: an EC key's
    /// curve names its ECDSA algorithm and an Ed25519 key has one; an RSA key does not (PSS or
    /// PKCS#1 v1.5), and other types are not used.
    pub(crate) fn implied_algorithm(self) -> Option<Algorithm> {
        match self {
            KeyKind::EcP256 => Some(Algorithm::EcdsaP256Sha256),
            KeyKind::EcP384 => Some(Algorithm::EcdsaP384Sha384),
            KeyKind::Ed25519 => Some(Algorithm::Ed25519),
            KeyKind::Rsa | KeyKind::EcOther | KeyKind::Unknown => None,
        }
    }
}

/// One DER element: `(tag, content, rest)`; `None` when truncated or not DER-length encoded.
pub(crate) fn element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

/// Identifies the key type of a DER SubjectPublicKeyInfo; `None` when it is not an SPKI at all.
pub(crate) fn spki_kind(spki: &[u8]) -> Option<KeyKind> {
    let (TAG_SEQUENCE, body, []) = element(spki)? else {
        return None;
    };
    let (TAG_SEQUENCE, alg_id, rest) = element(body)? else {
        return None;
    };
    let (TAG_BIT_STRING, _bits, []) = element(rest)? else {
        return None;
    };
    algorithm_identifier_kind(alg_id)
}

/// The key type an AlgorithmIdentifier (SEQUENCE content: OID, then parameters) names, as SPKI
/// and PKCS#8 both carry it; `None` when it does not start with an OID.
pub(crate) fn algorithm_identifier_kind(alg_id: &[u8]) -> Option<KeyKind> {
    let (TAG_OID, oid, params) = element(alg_id)? else {
        return None;
    };
    Some(match oid {
        o if o == OID_RSA || o == OID_RSA_PSS => KeyKind::Rsa,
        o if o == OID_EC => curve_kind(params),
        o if o == OID_ED25519 => KeyKind::Ed25519,
        _ => KeyKind::Unknown,
    })
}

/// The curve named by an encoded OID parameter (what follows the id-ecPublicKey OID, or the
/// `[0] parameters` of a SEC 1 key).
pub(crate) fn curve_kind(params: &[u8]) -> KeyKind {
    match element(params) {
        Some((TAG_OID, c, _)) if c == OID_P256 => KeyKind::EcP256,
        Some((TAG_OID, c, _)) if c == OID_P384 => KeyKind::EcP384,
        _ => KeyKind::EcOther,
    }
}

/// Whether the bytes are one DER SEQUENCE of two INTEGERs (a PKCS#1 RSAPublicKey).
pub(crate) fn is_pkcs1_rsa_public_key(der: &[u8]) -> bool {
    let Some((TAG_SEQUENCE, body, [])) = element(der) else {
        return false;
    };
    matches!(
        element(body),
        Some((TAG_INTEGER, _, rest)) if matches!(element(rest), Some((TAG_INTEGER, _, [])))
    )
}

/// Encodes one element: tag, definite length, content.
pub(crate) fn encode(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len
            .to_be_bytes()
            .into_iter()
            .skip_while(|b| *b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(content);
    out
}

/// Encodes an unsigned big-endian integer as a DER INTEGER (minimal, positive).
pub(crate) fn unsigned_integer(be: &[u8]) -> Vec<u8> {
    let trimmed = match be.iter().position(|b| *b != 0) {
        Some(i) => &be[i..],
        None => &[0u8][..],
    };
    let mut content = Vec::with_capacity(trimmed.len() + 1);
    if trimmed[0] & 0x80 != 0 {
        content.push(0);
    }
    content.extend_from_slice(trimmed);
    encode(TAG_INTEGER, &content)
}

/// A SEQUENCE of already-encoded elements.
pub(crate) fn sequence(parts: &[&[u8]]) -> Vec<u8> {
    encode(TAG_SEQUENCE, &parts.concat())
}

/// A SubjectPublicKeyInfo: the AlgorithmIdentifier with `alg_id` as its content (OID and
/// parameters, already encoded), and `public_key` as the BIT STRING.
pub(crate) fn spki(alg_id: &[u8], public_key: &[u8]) -> Vec<u8> {
    let mut bits = Vec::with_capacity(public_key.len() + 1);
    // No unused bits: keys are whole bytes.
    bits.push(0);
    bits.extend_from_slice(public_key);
    sequence(&[
        &encode(TAG_SEQUENCE, alg_id),
        &encode(TAG_BIT_STRING, &bits),
    ])
}

/// Wraps a PKCS#1 RSAPublicKey into a SubjectPublicKeyInfo with rsaEncryption (NULL parameters).
pub(crate) fn rsa_pkcs1_to_spki(pkcs1: &[u8]) -> Vec<u8> {
    let mut alg_id = encode(TAG_OID, OID_RSA);
    alg_id.extend([0x05, 0x00]);
    spki(&alg_id, pkcs1)
}

/// A decoded PEM block: its label (`PUBLIC KEY`) and DER bytes.
pub(crate) struct PemBlock {
    pub label: String,
    pub der: Vec<u8>,
}

/// Decodes the first PEM block of the text; `None` when there is none or its base64 is broken.
pub(crate) fn pem_decode(text: &str) -> Option<PemBlock> {
    let mut lines = text
        .lines()
        .map(str::trim)
        .skip_while(|l| !l.starts_with("-----BEGIN "));
    let begin = lines.next()?;
    let label = begin
        .strip_prefix("-----BEGIN ")?
        .strip_suffix("-----")?
        .to_string();
    let end = format!("-----END {label}-----");
    let mut b64 = String::new();
    for line in lines {
        if line == end {
            let der = base64::engine::general_purpose::STANDARD
                .decode(b64.as_bytes())
                .ok()?;
            return Some(PemBlock { label, der });
        }
        if line.contains(':') {
            // RFC 1421 headers (Proc-Type...) mean an encrypted or legacy block we do not read.
            return None;
        }
        b64.push_str(line);
    }
    None
}

/// Encodes DER as PEM with 64-column lines.
pub(crate) fn pem_encode(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        // base64 output is ASCII, so every chunk is valid UTF-8.
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_round_trip() {
        let der = (0..200u8).collect::<Vec<_>>();
        let pem = pem_encode("PUBLIC KEY", &der);
        let block = pem_decode(&format!("junk before\n{pem}junk after")).unwrap();
        assert_eq!(block.label, "PUBLIC KEY");
        assert_eq!(block.der, der);
        assert!(pem_decode("-----BEGIN PUBLIC KEY-----\n!!!\n-----END PUBLIC KEY-----").is_none());
        assert!(pem_decode("no pem here").is_none());
    }

    #[test]
    fn truncated_der_is_not_an_spki() {
        assert_eq!(spki_kind(&[0x30, 0x82, 0xff]), None);
        assert_eq!(spki_kind(&[]), None);
        assert!(!is_pkcs1_rsa_public_key(&[0x30, 0x03, 0x02, 0x01, 0x01]));
    }

    #[test]
    fn der_integers_are_minimal_and_positive() {
        assert_eq!(unsigned_integer(&[0, 0, 0x7f]), vec![0x02, 0x01, 0x7f]);
        assert_eq!(unsigned_integer(&[0, 0x80]), vec![0x02, 0x02, 0x00, 0x80]);
        assert_eq!(unsigned_integer(&[0, 0]), vec![0x02, 0x01, 0x00]);
        let long = encode(TAG_OCTET_STRING, &[7; 300]);
        assert_eq!(&long[..4], &[0x04, 0x82, 0x01, 0x2c]);
        let (tag, content, rest) = element(&long).unwrap();
        assert_eq!((tag, content.len(), rest.len()), (TAG_OCTET_STRING, 300, 0));
    }
}
