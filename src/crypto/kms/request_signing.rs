//! Request signing for the two KMS APIs: AWS Signature Version 4 (`AWS4-HMAC-SHA256`) and
//! Alibaba Cloud's V3 signature (`ACS3-HMAC-SHA256`), plus the UTC time formats they need.
//!
//! Both schemes hash one canonical request (method, path, sorted query, sorted lower-case headers,
//! signed header names, payload hash) and MAC a string to sign; they differ only in the string
//! to sign and the key (SigV4 derives a key per day/region/service, ACS3 uses the secret as is).
//! Written here (about a hundred lines over aws-lc-rs's HMAC and SHA-256) rather than taken from
//! `aws-sigv4`: that crate brings the smithy runtime types and `http` 0.2 for one function, the
//! ACS3 half would have to be written anyway, and both halves are checked in the tests by
//! independent implementations (botocore's signer inside moto for SigV4, the Alibaba Cloud
//! Python SDK's `get_authorization` for ACS3) on every request, plus AWS's published example.

use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::{digest, hmac};

/// Lower-case hex of SHA-256 over `data`.
pub(super) fn sha256_hex(data: &[u8]) -> String {
    hex::encode(digest::digest(&digest::SHA256, data).as_ref())
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> Vec<u8> {
    hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), data)
        .as_ref()
        .to_vec()
}

/// RFC 3986 percent-encoding: everything but `A-Z a-z 0-9 - _ . ~` (both schemes' rule).
pub(super) fn uri_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `a=1&b=2`, sorted by name, names and values percent-encoded.
pub(super) fn canonical_query(params: &[(String, String)]) -> String {
    let mut encoded: Vec<(String, String)> = params
        .iter()
        .map(|(k, v)| (uri_encode(k), uri_encode(v)))
        .collect();
    encoded.sort();
    encoded
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// What both schemes hash: the canonical request and the signed header names (`a;b;c`).
struct Canonical {
    request: String,
    signed_headers: String,
}

/// `headers` are (name, value) with names already lower case; one value per name.
fn canonical_request(
    method: &str,
    path: &str,
    query: &str,
    headers: &[(String, String)],
    payload_hash: &str,
) -> Canonical {
    let mut sorted: Vec<&(String, String)> = headers.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let mut canonical_headers = String::new();
    for (name, value) in &sorted {
        canonical_headers.push_str(name);
        canonical_headers.push(':');
        canonical_headers.push_str(value.trim());
        canonical_headers.push('\n');
    }
    let signed_headers = sorted
        .iter()
        .map(|(n, _)| n.as_str())
        .collect::<Vec<_>>()
        .join(";");
    Canonical {
        request: format!(
            "{method}\n{path}\n{query}\n{canonical_headers}\n{signed_headers}\n{payload_hash}"
        ),
        signed_headers,
    }
}

/// The request facts both schemes sign.
pub(super) struct RequestParts<'a> {
    /// `GET`, `POST`...
    pub method: &'a str,
    /// The URI path (`/`).
    pub path: &'a str,
    /// The canonical query string ([`canonical_query`]).
    pub query: &'a str,
    /// Lower-case names and values of the headers to sign (including `host`).
    pub headers: &'a [(String, String)],
    /// The request body.
    pub body: &'a [u8],
}

/// The SigV4 `Authorization` header value. `amz_date` is `YYYYMMDDTHHMMSSZ` and must also be
/// among the headers as `x-amz-date`.
pub(super) fn sigv4_authorization(
    parts: &RequestParts<'_>,
    access_key_id: &str,
    secret: &str,
    region: &str,
    service: &str,
    amz_date: &str,
) -> String {
    let canonical = canonical_request(
        parts.method,
        parts.path,
        parts.query,
        parts.headers,
        &sha256_hex(parts.body),
    );
    let day = amz_date.get(..8).unwrap_or(amz_date);
    let scope = format!("{day}/{region}/{service}/aws4_request");
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        sha256_hex(canonical.request.as_bytes())
    );
    let k_date = hmac_sha256(format!("AWS4{secret}").as_bytes(), day.as_bytes());
    let k_region = hmac_sha256(&k_date, region.as_bytes());
    let k_service = hmac_sha256(&k_region, service.as_bytes());
    let k_signing = hmac_sha256(&k_service, b"aws4_request");
    let signature = hex::encode(hmac_sha256(&k_signing, string_to_sign.as_bytes()));
    format!(
        "AWS4-HMAC-SHA256 Credential={access_key_id}/{scope}, SignedHeaders={}, Signature={signature}",
        canonical.signed_headers
    )
}

/// The ACS3-HMAC-SHA256 `Authorization` header value. The headers must include
/// `x-acs-content-sha256` holding [`sha256_hex`] of the body.
pub(super) fn acs3_authorization(
    parts: &RequestParts<'_>,
    access_key_id: &str,
    secret: &str,
) -> String {
    let canonical = canonical_request(
        parts.method,
        parts.path,
        parts.query,
        parts.headers,
        &sha256_hex(parts.body),
    );
    let string_to_sign = format!(
        "ACS3-HMAC-SHA256\n{}",
        sha256_hex(canonical.request.as_bytes())
    );
    let signature = hex::encode(hmac_sha256(secret.as_bytes(), string_to_sign.as_bytes()));
    format!(
        "ACS3-HMAC-SHA256 Credential={access_key_id},SignedHeaders={},Signature={signature}",
        canonical.signed_headers
    )
}

/// A UTC time broken into fields (proleptic Gregorian).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct UtcTime {
    year: i64,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
}

impl UtcTime {
    /// The time `t` is (times before 1970 are taken as 1970).
    pub(super) fn from_system(t: SystemTime) -> Self {
        let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        Self::from_unix(i64::try_from(secs).unwrap_or(i64::MAX / 2))
    }

    fn from_unix(secs: i64) -> Self {
        let days = secs.div_euclid(86_400);
        let rem = secs.rem_euclid(86_400);
        // Howard Hinnant's civil_from_days.
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = yoe + era * 400 + i64::from(month <= 2);
        // Each field is range-bound by the arithmetic above.
        let small = |v: i64| u32::try_from(v).unwrap_or(0);
        UtcTime {
            year,
            month: small(month),
            day: small(day),
            hour: small(rem / 3600),
            minute: small(rem % 3600 / 60),
            second: small(rem % 60),
        }
    }

    fn to_unix(self) -> i64 {
        let y = self.year - i64::from(self.month <= 2);
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let m = i64::from(self.month);
        let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(self.day) - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        let days = era * 146_097 + doe - 719_468;
        days * 86_400
            + i64::from(self.hour) * 3600
            + i64::from(self.minute) * 60
            + i64::from(self.second)
    }

    /// `20261130T070102Z` (SigV4's `x-amz-date`).
    pub(super) fn amz(self) -> String {
        format!(
            "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
            self.year, self.month, self.day, self.hour, self.minute, self.second
        )
    }

    /// `2026-11-30T07:01:02Z` (ACS3's `x-acs-date`).
    pub(super) fn iso8601(self) -> String {
        format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
            self.year, self.month, self.day, self.hour, self.minute, self.second
        )
    }
}

/// Parses an RFC 3339 UTC time as credential services send expiries (`2026-11-30T08:00:00Z`,
/// fractional seconds ignored, `+00:00` accepted) into a `SystemTime`.
pub(super) fn parse_rfc3339_utc(text: &str) -> Option<SystemTime> {
    let t = text.trim();
    let field = |range: std::ops::Range<usize>| t.get(range)?.parse::<u32>().ok();
    let (year, month, day) = (field(0..4)?, field(5..7)?, field(8..10)?);
    let (hour, minute, second) = (field(11..13)?, field(14..16)?, field(17..19)?);
    if t.get(4..5)? != "-" || !matches!(t.get(10..11)?, "T" | "t" | " ") {
        return None;
    }
    let rest = t.get(19..)?;
    let rest = rest
        .strip_prefix('.')
        .map_or(rest, |r| r.trim_start_matches(|c: char| c.is_ascii_digit()));
    if !matches!(rest, "Z" | "z" | "+00:00" | "") {
        return None;
    }
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 {
        return None;
    }
    let unix = UtcTime {
        year: i64::from(year),
        month,
        day,
        hour,
        minute,
        second: second.min(59),
    }
    .to_unix();
    u64::try_from(unix)
        .ok()
        .map(|s| UNIX_EPOCH + std::time::Duration::from_secs(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of AWS's "Create a signed AWS API request" guide (IAM ListUsers, 2015-08-30),
    /// also what botocore's `SigV4Auth` computes for it.
    #[test]
    fn sigv4_matches_the_aws_documented_example() {
        let headers = vec![
            (
                "content-type".to_string(),
                "application/x-www-form-urlencoded; charset=utf-8".to_string(),
            ),
            ("host".to_string(), "iam.amazonaws.com".to_string()),
            ("x-amz-date".to_string(), "20150830T123600Z".to_string()),
        ];
        let query = canonical_query(&[
            ("Action".into(), "ListUsers".into()),
            ("Version".into(), "2010-05-08".into()),
        ]);
        let auth = sigv4_authorization(
            &RequestParts {
                method: "GET",
                path: "/",
                query: &query,
                headers: &headers,
                body: b"",
            },
            "AKIDEXAMPLE",
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            "us-east-1",
            "iam",
            "20150830T123600Z",
        );
        assert_eq!(
            auth,
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/iam/aws4_request, \
             SignedHeaders=content-type;host;x-amz-date, \
             Signature=5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7"
        );
    }

    #[test]
    fn encoding_and_query_order() {
        assert_eq!(uri_encode("a b*~/+="), "a%20b%2A~%2F%2B%3D");
        assert_eq!(
            canonical_query(&[("b".into(), "2".into()), ("a".into(), "x y".into())]),
            "a=x%20y&b=2"
        );
    }

    #[test]
    fn times_round_trip() {
        let t = UtcTime::from_unix(1_440_938_160);
        assert_eq!(t.amz(), "20150830T123600Z");
        assert_eq!(t.iso8601(), "2015-08-30T12:36:00Z");
        assert_eq!(t.to_unix(), 1_440_938_160);
        let leap = UtcTime::from_unix(951_782_400);
        assert_eq!(leap.iso8601(), "2000-02-29T00:00:00Z");
        let parsed = parse_rfc3339_utc("2015-08-30T12:36:00.123Z").unwrap();
        assert_eq!(
            parsed.duration_since(UNIX_EPOCH).unwrap().as_secs(),
            1_440_938_160
        );
        assert!(parse_rfc3339_utc("2015-08-30T12:36:00+02:00").is_none());
        assert!(parse_rfc3339_utc("yesterday").is_none());
    }
}
