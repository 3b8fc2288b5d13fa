//! The parts of an RFC 3161 TimeStampToken (a CMS SignedData, RFC 5652, whose content is a
//! TSTInfo) that verification needs, read from DER into borrowed slices. Parsing only: nothing
//! here is trusted until [`super::timestamp::verify_timestamp`] has checked it.
//!
//! Hand-written over the crate's one DER toolkit ([`crate::crypto::der::element`]) rather than
//! the RustCrypto `cms`/`x509-cert`/`der` family: none of those is a dependency yet (they would
//! add a second X.509 stack next to `x509-parser`, at versions the two do not share), and a
//! verifier needs only a read-only walk over a dozen fields. DER only (no BER indefinite
//! lengths): every TSA answers in DER, and a token that is not is refused by name.

use crate::crypto::der::{TAG_INTEGER, TAG_OCTET_STRING, TAG_OID, TAG_SEQUENCE, element};

const TAG_SET: u8 = 0x31;
const TAG_GENERALIZED_TIME: u8 = 0x18;
const TAG_CONTEXT_0: u8 = 0xa0;
const TAG_CONTEXT_1: u8 = 0xa1;

/// 1.2.840.113549.1.7.2 (id-signedData).
const OID_SIGNED_DATA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x02];
/// 1.2.840.113549.1.9.16.1.4 (id-ct-TSTInfo).
pub(super) const OID_TST_INFO: &[u8] = &[
    0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x10, 0x01, 0x04,
];
/// 1.2.840.113549.1.9.3 (id-contentType).
const OID_CONTENT_TYPE: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x03];
/// 1.2.840.113549.1.9.4 (id-messageDigest).
const OID_MESSAGE_DIGEST: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x04];
/// 1.2.840.113549.1.9.16.2.12 (id-aa-signingCertificate, ESSCertID with SHA-1).
const OID_SIGNING_CERTIFICATE: &[u8] = &[
    0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x10, 0x02, 0x0c,
];
/// 1.2.840.113549.1.9.16.2.47 (id-aa-signingCertificateV2, RFC 5035).
const OID_SIGNING_CERTIFICATE_V2: &[u8] = &[
    0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x10, 0x02, 0x2f,
];

/// At most this many certificates in a token (a TSA sends its chain: two or three).
const MAX_CERTIFICATES: usize = 16;

/// An AlgorithmIdentifier: the OID's content octets and the encoded parameters, if any.
#[derive(Clone, Copy, Debug)]
pub(super) struct AlgorithmId<'a> {
    pub(super) oid: &'a [u8],
    pub(super) params: Option<&'a [u8]>,
}

/// How the signed attributes name the TSA's certificate (ESS, RFC 2634 / RFC 5035).
#[derive(Clone, Copy, Debug)]
pub(super) enum EssCertId<'a> {
    /// signingCertificate: SHA-1 of the certificate.
    V1(&'a [u8]),
    /// signingCertificateV2: the hash algorithm (`None` = SHA-256) and the hash.
    V2(Option<AlgorithmId<'a>>, &'a [u8]),
}

/// The token's parts, unverified.
#[derive(Clone, Debug)]
pub(super) struct Token<'a> {
    /// The encapsulated TSTInfo, DER, exactly as signed.
    pub(super) tst_info: &'a [u8],
    /// DER certificates the token carries (the TSA's, often its chain).
    pub(super) certificates: Vec<&'a [u8]>,
    /// issuerAndSerialNumber of the signer: issuer Name (whole DER) and serial content octets;
    /// `None` when it is named by subjectKeyIdentifier.
    pub(super) issuer_and_serial: Option<(&'a [u8], &'a [u8])>,
    pub(super) digest_algorithm: AlgorithmId<'a>,
    /// The signed attributes re-encoded as the SET OF they are signed as.
    pub(super) signed_attributes_der: Vec<u8>,
    pub(super) content_type: &'a [u8],
    pub(super) message_digest: &'a [u8],
    pub(super) ess: EssCertId<'a>,
    pub(super) signature_algorithm: AlgorithmId<'a>,
    pub(super) signature: &'a [u8],
}

/// The TSTInfo fields verification reads.
#[derive(Clone, Debug)]
pub(super) struct TstInfo<'a> {
    pub(super) imprint_algorithm: AlgorithmId<'a>,
    pub(super) imprint: &'a [u8],
    /// genTime as written, e.g. `20240618072142Z` or with fractional seconds.
    pub(super) gen_time: &'a str,
    /// The stated accuracy in microseconds, when given.
    pub(super) accuracy_micros: Option<u64>,
}

/// A cursor over the content of one constructed DER element.
struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(content: &'a [u8]) -> Self {
        Reader { rest: content }
    }

    fn peek_tag(&self) -> Option<u8> {
        self.rest.first().copied()
    }

    /// The next element: `(tag, content, whole encoding)`.
    fn any(&mut self, what: &str) -> Result<(u8, &'a [u8], &'a [u8]), String> {
        let before = self.rest;
        let (tag, content, rest) =
            element(before).ok_or_else(|| format!("{what} is truncated or not DER"))?;
        self.rest = rest;
        Ok((tag, content, &before[..before.len() - rest.len()]))
    }

    /// The next element's content, which must carry `tag`.
    fn take(&mut self, tag: u8, what: &str) -> Result<&'a [u8], String> {
        let (found, content, _) = self.any(what)?;
        if found != tag {
            return Err(format!(
                "{what} has tag 0x{found:02x}, expected 0x{tag:02x}"
            ));
        }
        Ok(content)
    }

    /// The next element's content if it carries `tag`.
    fn optional(&mut self, tag: u8, what: &str) -> Result<Option<&'a [u8]>, String> {
        if self.peek_tag() == Some(tag) {
            self.take(tag, what).map(Some)
        } else {
            Ok(None)
        }
    }

    fn finish(&self, what: &str) -> Result<(), String> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(format!("trailing bytes after {what}"))
        }
    }
}

fn algorithm_id<'a>(content: &'a [u8], what: &str) -> Result<AlgorithmId<'a>, String> {
    let mut r = Reader::new(content);
    let oid = r.take(TAG_OID, what)?;
    let params = if r.rest.is_empty() {
        None
    } else {
        Some(r.rest)
    };
    Ok(AlgorithmId { oid, params })
}

/// The one DER element of a single-valued attribute's SET; refuses none or several values.
fn single_value<'a>(values: &'a [u8], what: &str) -> Result<(u8, &'a [u8]), String> {
    let mut r = Reader::new(values);
    let (tag, content, _) = r.any(what)?;
    r.finish(&format!("the one value of {what}"))?;
    Ok((tag, content))
}

/// The first ESSCertID(v2) of a SigningCertificate(V2) value.
fn ess_cert_id<'a>(value: &'a [u8], v2: bool) -> Result<EssCertId<'a>, String> {
    let what = if v2 {
        "signingCertificateV2"
    } else {
        "signingCertificate"
    };
    let mut outer = Reader::new(value);
    let mut signing_certificate = Reader::new(outer.take(TAG_SEQUENCE, what)?);
    let mut certs = Reader::new(signing_certificate.take(TAG_SEQUENCE, what)?);
    let first = certs.take(TAG_SEQUENCE, what)?;
    let mut id = Reader::new(first);
    if v2 {
        let algorithm = id
            .optional(TAG_SEQUENCE, what)?
            .map(|alg| algorithm_id(alg, what))
            .transpose()?;
        let hash = id.take(TAG_OCTET_STRING, what)?;
        Ok(EssCertId::V2(algorithm, hash))
    } else {
        Ok(EssCertId::V1(id.take(TAG_OCTET_STRING, what)?))
    }
}

/// Parses a TimeStampToken (DER ContentInfo); says what is malformed.
pub(super) fn parse_token(der: &[u8]) -> Result<Token<'_>, String> {
    let mut top = Reader::new(der);
    let content_info = top.take(TAG_SEQUENCE, "ContentInfo")?;
    top.finish("the ContentInfo")?;
    let mut ci = Reader::new(content_info);
    if ci.take(TAG_OID, "contentType")? != OID_SIGNED_DATA {
        return Err("not a CMS SignedData".into());
    }
    let explicit = ci.take(TAG_CONTEXT_0, "content")?;
    ci.finish("the ContentInfo content")?;
    let mut explicit = Reader::new(explicit);
    let signed_data = explicit.take(TAG_SEQUENCE, "SignedData")?;
    explicit.finish("the SignedData")?;

    let mut sd = Reader::new(signed_data);
    sd.take(TAG_INTEGER, "SignedData version")?;
    sd.take(TAG_SET, "digestAlgorithms")?;
    let mut encap = Reader::new(sd.take(TAG_SEQUENCE, "encapContentInfo")?);
    if encap.take(TAG_OID, "eContentType")? != OID_TST_INFO {
        return Err("the signed content is not a TSTInfo (id-ct-TSTInfo)".into());
    }
    let mut econtent = Reader::new(encap.take(TAG_CONTEXT_0, "eContent")?);
    let tst_info = econtent.take(TAG_OCTET_STRING, "eContent")?;
    econtent.finish("eContent")?;
    let mut certificates = Vec::new();
    if let Some(certs) = sd.optional(TAG_CONTEXT_0, "certificates")? {
        let mut certs = Reader::new(certs);
        while !certs.rest.is_empty() {
            let (tag, _, whole) = certs.any("a certificate")?;
            // Other CertificateChoices (attribute certificates...) are not X.509 certificates.
            if tag == TAG_SEQUENCE {
                certificates.push(whole);
            }
            if certificates.len() > MAX_CERTIFICATES {
                return Err(format!("more than {MAX_CERTIFICATES} certificates"));
            }
        }
    }
    sd.optional(TAG_CONTEXT_1, "crls")?;
    let mut signer_infos = Reader::new(sd.take(TAG_SET, "signerInfos")?);
    let signer_info = signer_infos.take(TAG_SEQUENCE, "SignerInfo")?;
    if !signer_infos.rest.is_empty() {
        return Err("more than one SignerInfo (RFC 3161 allows one)".into());
    }

    let mut si = Reader::new(signer_info);
    si.take(TAG_INTEGER, "SignerInfo version")?;
    let (sid_tag, sid, _) = si.any("sid")?;
    let issuer_and_serial = if sid_tag == TAG_SEQUENCE {
        let mut sid = Reader::new(sid);
        let (_, _, issuer) = sid.any("sid issuer")?;
        let serial = sid.take(TAG_INTEGER, "sid serialNumber")?;
        Some((issuer, serial))
    } else {
        None
    };
    let digest_algorithm =
        algorithm_id(si.take(TAG_SEQUENCE, "digestAlgorithm")?, "digestAlgorithm")?;
    let (attrs_tag, attrs, attrs_whole) = si.any("signedAttrs")?;
    if attrs_tag != TAG_CONTEXT_0 {
        return Err("the SignerInfo has no signed attributes".into());
    }
    // Signed as an explicit SET OF: the same bytes with the universal SET tag.
    let mut signed_attributes_der = attrs_whole.to_vec();
    if let Some(tag) = signed_attributes_der.first_mut() {
        *tag = TAG_SET;
    }
    let signature_algorithm = algorithm_id(
        si.take(TAG_SEQUENCE, "signatureAlgorithm")?,
        "signatureAlgorithm",
    )?;
    let signature = si.take(TAG_OCTET_STRING, "signature")?;

    let mut content_type = None;
    let mut message_digest = None;
    let mut ess = None;
    let mut ess_v1 = None;
    let mut attributes = Reader::new(attrs);
    while !attributes.rest.is_empty() {
        let mut attribute = Reader::new(attributes.take(TAG_SEQUENCE, "signed attribute")?);
        let oid = attribute.take(TAG_OID, "attribute type")?;
        let values = attribute.take(TAG_SET, "attribute values")?;
        let duplicate = |seen: bool, name: &str| {
            if seen {
                Err(format!("signed attribute {name} appears twice"))
            } else {
                Ok(())
            }
        };
        if oid == OID_CONTENT_TYPE {
            duplicate(content_type.is_some(), "content-type")?;
            match single_value(values, "content-type")? {
                (TAG_OID, value) => content_type = Some(value),
                _ => return Err("content-type attribute is not an OID".into()),
            }
        } else if oid == OID_MESSAGE_DIGEST {
            duplicate(message_digest.is_some(), "message-digest")?;
            match single_value(values, "message-digest")? {
                (TAG_OCTET_STRING, value) => message_digest = Some(value),
                _ => return Err("message-digest attribute is not an OCTET STRING".into()),
            }
        } else if oid == OID_SIGNING_CERTIFICATE_V2 {
            duplicate(ess.is_some(), "signingCertificateV2")?;
            let (_, _) = single_value(values, "signingCertificateV2")?;
            ess = Some(ess_cert_id(values, true)?);
        } else if oid == OID_SIGNING_CERTIFICATE {
            duplicate(ess_v1.is_some(), "signingCertificate")?;
            let (_, _) = single_value(values, "signingCertificate")?;
            ess_v1 = Some(ess_cert_id(values, false)?);
        }
    }
    Ok(Token {
        tst_info,
        certificates,
        issuer_and_serial,
        digest_algorithm,
        signed_attributes_der,
        content_type: content_type.ok_or("the content-type signed attribute is missing")?,
        message_digest: message_digest.ok_or("the message-digest signed attribute is missing")?,
        ess: ess
            .or(ess_v1)
            .ok_or("the signing-certificate signed attribute (ESS, v1 or v2) is missing")?,
        signature_algorithm,
        signature,
    })
}

/// Parses the DER TSTInfo; says what is malformed.
pub(super) fn parse_tst_info(der: &[u8]) -> Result<TstInfo<'_>, String> {
    let mut top = Reader::new(der);
    let mut tst = Reader::new(top.take(TAG_SEQUENCE, "TSTInfo")?);
    top.finish("the TSTInfo")?;
    if tst.take(TAG_INTEGER, "TSTInfo version")? != [1] {
        return Err("TSTInfo version is not 1".into());
    }
    tst.take(TAG_OID, "TSA policy")?;
    let mut imprint = Reader::new(tst.take(TAG_SEQUENCE, "messageImprint")?);
    let imprint_algorithm = algorithm_id(
        imprint.take(TAG_SEQUENCE, "messageImprint hashAlgorithm")?,
        "messageImprint hashAlgorithm",
    )?;
    let hashed = imprint.take(TAG_OCTET_STRING, "messageImprint hashedMessage")?;
    imprint.finish("messageImprint")?;
    tst.take(TAG_INTEGER, "serialNumber")?;
    let gen_time = tst.take(TAG_GENERALIZED_TIME, "genTime")?;
    let gen_time = std::str::from_utf8(gen_time).map_err(|_| "genTime is not ASCII".to_string())?;
    let accuracy_micros = tst
        .optional(TAG_SEQUENCE, "accuracy")?
        .map(accuracy)
        .transpose()?;
    Ok(TstInfo {
        imprint_algorithm,
        imprint: hashed,
        gen_time,
        accuracy_micros,
    })
}

/// Accuracy ::= SEQUENCE { seconds INTEGER OPTIONAL, millis [0] INTEGER (1..999) OPTIONAL,
/// micros [1] INTEGER (1..999) OPTIONAL }, in microseconds.
fn accuracy(content: &[u8]) -> Result<u64, String> {
    let mut r = Reader::new(content);
    let mut micros: u64 = 0;
    for (tag, scale, max) in [
        (TAG_INTEGER, 1_000_000u64, u64::from(u32::MAX)),
        (0x80, 1_000, 999),
        (0x81, 1, 999),
    ] {
        if let Some(value) = r.optional(tag, "accuracy")? {
            let n = small_unsigned(value).ok_or("accuracy is negative or too large")?;
            if n > max {
                return Err("accuracy is out of range".into());
            }
            micros = micros.saturating_add(n.saturating_mul(scale));
        }
    }
    r.finish("accuracy")?;
    Ok(micros)
}

/// A non-negative INTEGER's value, if it fits in 8 bytes.
fn small_unsigned(be: &[u8]) -> Option<u64> {
    let (&first, _) = be.split_first()?;
    if first & 0x80 != 0 {
        return None;
    }
    let be = match be {
        [0, rest @ ..] if !rest.is_empty() => rest,
        other => other,
    };
    if be.len() > 8 {
        return None;
    }
    Some(be.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b)))
}

/// genTime (`YYYYMMDDHHMMSS[.f*]Z`, RFC 3161 §2.4.2) as Unix seconds, rounded down, and whether
/// a fraction of a second followed.
pub(super) fn generalized_time(text: &str) -> Result<(i64, bool), String> {
    let bad = || format!("genTime {text:?} is not YYYYMMDDHHMMSS[.fff]Z");
    let body = text.strip_suffix('Z').ok_or_else(bad)?;
    let (whole, fraction) = match body.split_once('.') {
        Some((whole, fraction)) => (whole, Some(fraction)),
        None => (body, None),
    };
    if whole.len() != 14 || !whole.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let has_fraction = match fraction {
        None => false,
        Some(f) if !f.is_empty() && f.bytes().all(|b| b.is_ascii_digit()) => {
            f.bytes().any(|b| b != b'0')
        }
        Some(_) => return Err(bad()),
    };
    let part = |range: std::ops::Range<usize>| whole.get(range).unwrap_or_default();
    let rfc3339 = format!(
        "{}-{}-{}T{}:{}:{}Z",
        part(0..4),
        part(4..6),
        part(6..8),
        part(8..10),
        part(10..12),
        part(12..14)
    );
    let seconds = rfc3339
        .parse::<jiff::Timestamp>()
        .map_err(|_| bad())?
        .as_second();
    Ok((seconds, has_fraction))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generalized_time_reads_whole_and_fractional_seconds() {
        assert_eq!(
            generalized_time("20240618072142Z"),
            Ok((1_718_695_302, false))
        );
        assert_eq!(
            generalized_time("20240618072142.25Z"),
            Ok((1_718_695_302, true))
        );
        assert!(generalized_time("20240618072142").is_err());
        assert!(generalized_time("2024061807214Z").is_err());
        assert!(generalized_time("20241318072142Z").is_err());
        assert!(generalized_time("20240618072142.Z").is_err());
    }

    #[test]
    fn accuracy_adds_its_parts() {
        // seconds 1, millis 500
        assert_eq!(
            accuracy(&[0x02, 0x01, 0x01, 0x80, 0x02, 0x01, 0xf4]),
            Ok(1_500_000)
        );
        assert!(accuracy(&[0x02, 0x01, 0xff]).is_err());
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for bytes in [
            &b""[..],
            b"\x30",
            b"\x30\x00",
            b"\x30\x03\x06\x01\x00",
            &[0xff; 64],
        ] {
            assert!(parse_token(bytes).is_err());
            assert!(parse_tst_info(bytes).is_err());
        }
    }
}
