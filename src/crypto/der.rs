//! Just enough DER and PEM to recognise public keys: which key type an SPKI holds, and wrapping a
//! PKCS#1 RSA key into an SPKI (the fingerprint is always taken over SPKI DER).

use base64::Engine;

const OID_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
const OID_RSA_PSS: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0a];
const OID_EC: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
const OID_P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const OID_P384: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x22];
const OID_ED25519: &[u8] = &[0x2b, 0x65, 0x70];

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
}

/// One DER element: tag, and the content bytes; returns the rest of the input after it.
fn element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
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
    let (0x30, body, []) = element(spki)? else {
        return None;
    };
    let (0x30, alg_id, rest) = element(body)? else {
        return None;
    };
    let (0x03, _bits, []) = element(rest)? else {
        return None;
    };
    let (0x06, oid, params) = element(alg_id)? else {
        return None;
    };
    let curve = || match element(params) {
        Some((0x06, c, _)) if c == OID_P256 => KeyKind::EcP256,
        Some((0x06, c, _)) if c == OID_P384 => KeyKind::EcP384,
        _ => KeyKind::EcOther,
    };
    Some(match oid {
        o if o == OID_RSA || o == OID_RSA_PSS => KeyKind::Rsa,
        o if o == OID_EC => curve(),
        o if o == OID_ED25519 => KeyKind::Ed25519,
        _ => KeyKind::Unknown,
    })
}

/// Whether the bytes are one DER SEQUENCE of two INTEGERs (a PKCS#1 RSAPublicKey).
pub(crate) fn is_pkcs1_rsa_public_key(der: &[u8]) -> bool {
    let Some((0x30, body, [])) = element(der) else {
        return false;
    };
    matches!(element(body), Some((0x02, _, rest)) if matches!(element(rest), Some((0x02, _, []))))
}

fn encode_len(len: usize, out: &mut Vec<u8>) {
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
}

fn encode(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    encode_len(content.len(), &mut out);
    out.extend_from_slice(content);
    out
}

/// Wraps a PKCS#1 RSAPublicKey into a SubjectPublicKeyInfo with rsaEncryption.
pub(crate) fn rsa_pkcs1_to_spki(pkcs1: &[u8]) -> Vec<u8> {
    let mut alg_id = encode(0x06, OID_RSA);
    alg_id.extend([0x05, 0x00]);
    let mut bits = vec![0u8];
    bits.extend_from_slice(pkcs1);
    let mut body = encode(0x30, &alg_id);
    body.extend(encode(0x03, &bits));
    encode(0x30, &body)
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
}
