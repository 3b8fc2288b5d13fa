//! When the certificate being served expires: read from the leaf's `notAfter` at every (re)load,
//! shared with the metrics (`signet_tls_certificate_expiry_timestamp_seconds`), so that an alert
//! fires before a rotation that never happened takes the webhook down.
//!
//! Only `notAfter` is read, by walking the DER of the TBSCertificate with the crate's own DER
//! reader: pulling in an X.509 parser for one date was not worth its weight.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

use crate::crypto::der;

/// No certificate loaded (yet).
const NONE: i64 = i64::MIN;

/// The `notAfter` of the served leaf certificate, in seconds since the epoch; cheap to clone.
#[derive(Clone, Debug)]
pub struct CertificateExpiry(Arc<AtomicI64>);

impl Default for CertificateExpiry {
    fn default() -> Self {
        CertificateExpiry(Arc::new(AtomicI64::new(NONE)))
    }
}

impl CertificateExpiry {
    /// The expiry, or `None` while no certificate with a readable `notAfter` is served.
    pub fn get(&self) -> Option<i64> {
        Some(self.0.load(Ordering::Relaxed)).filter(|v| *v != NONE)
    }

    /// Records the expiry of the first certificate of a PEM chain (the leaf).
    pub fn set_from_pem(&self, chain_pem: &[u8]) {
        let leaf = CertificateDer::pem_slice_iter(chain_pem)
            .find_map(Result::ok)
            .and_then(|leaf| not_after(leaf.as_ref()));
        self.0.store(leaf.unwrap_or(NONE), Ordering::Relaxed);
    }
}

/// `tbsCertificate.validity.notAfter` of a DER certificate, in seconds since the epoch.
pub fn not_after(certificate: &[u8]) -> Option<i64> {
    let (der::TAG_SEQUENCE, cert, _) = der::element(certificate)? else {
        return None;
    };
    let (der::TAG_SEQUENCE, tbs, _) = der::element(cert)? else {
        return None;
    };
    let (tag, _, mut rest) = der::element(tbs)?;
    // [0] EXPLICIT version is optional (absent means v1); the serial number follows.
    if tag == 0xa0 {
        rest = der::element(rest)?.2;
    }
    let rest = der::element(rest)?.2; // signature AlgorithmIdentifier
    let rest = der::element(rest)?.2; // issuer
    let (der::TAG_SEQUENCE, validity, _) = der::element(rest)? else {
        return None;
    };
    let (_, _, after_not_before) = der::element(validity)?;
    let (tag, time, _) = der::element(after_not_before)?;
    parse_time(tag, std::str::from_utf8(time).ok()?)
}

/// UTCTime (`YYMMDDHHMMSSZ`, tag 0x17) or GeneralizedTime (`YYYYMMDDHHMMSSZ`, tag 0x18), as
/// RFC 5280 requires them (UTC, seconds, no fraction).
fn parse_time(tag: u8, text: &str) -> Option<i64> {
    let digits = text.strip_suffix('Z')?;
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let number = |range: std::ops::Range<usize>| digits.get(range)?.parse::<i64>().ok();
    let (year, rest) = match (tag, digits.len()) {
        (0x17, 12) => {
            let yy = number(0..2)?;
            (if yy < 50 { 2000 + yy } else { 1900 + yy }, 2)
        }
        (0x18, 14) => (number(0..4)?, 4),
        _ => return None,
    };
    let month = number(rest..rest + 2)?;
    let day = number(rest + 2..rest + 4)?;
    let hour = number(rest + 4..rest + 6)?;
    let minute = number(rest + 6..rest + 8)?;
    let second = number(rest + 8..rest + 10)?;
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second)
}

/// Days from 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let shifted_month = (month + 9) % 12; // March = 0
    let day_of_year = (153 * shifted_month + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_convert_to_epoch_seconds() {
        assert_eq!(parse_time(0x17, "700101000000Z"), Some(0));
        assert_eq!(parse_time(0x17, "491231235959Z"), Some(2_524_607_999));
        assert_eq!(parse_time(0x18, "20261130070000Z"), Some(1_796_022_000));
        assert_eq!(parse_time(0x18, "20240229120000Z"), Some(1_709_208_000));
        assert_eq!(parse_time(0x17, "20240229120000Z"), None);
        assert_eq!(parse_time(0x18, "2024022912000Z"), None);
        assert_eq!(parse_time(0x18, "20241329120000Z"), None);
    }

    #[test]
    fn the_leaf_expiry_is_read_from_a_real_certificate() {
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()])
            .unwrap_or_else(|e| panic!("{e}"));
        params.not_after = rcgen::date_time_ymd(2031, 7, 15);
        let key = rcgen::KeyPair::generate().unwrap_or_else(|e| panic!("{e}"));
        let cert = params.self_signed(&key).unwrap_or_else(|e| panic!("{e}"));
        let expiry = CertificateExpiry::default();
        assert_eq!(expiry.get(), None);
        expiry.set_from_pem(cert.pem().as_bytes());
        // 2031-07-15T00:00:00Z
        assert_eq!(expiry.get(), Some(1_941_840_000));
        expiry.set_from_pem(b"not a certificate");
        assert_eq!(expiry.get(), None);
    }
}
