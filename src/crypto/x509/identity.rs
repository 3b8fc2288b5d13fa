//! Trusted identities as Notation's trust policy writes them: `x509.subject: C=US, ST=WA, O=acme`
//! (RFC 4514), or `*` for any. A leaf matches when it has every attribute the identity names, with
//! the same value (Notation's subset rule).
//!
//! Departure from notation-go: it requires C, ST and O; signet requires C and O and lets ST be
//! omitted, as DESIGN.md's example (`x509.subject: C=US, O=acme, CN=release`) does.

use std::collections::BTreeMap;

use super::X509Error;
use super::certificate::Certificate;

const PREFIX: &str = "x509.subject:";

/// One trusted identity: any signer, or a subject every matching leaf must contain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TrustedIdentity {
    /// `*`: any leaf the trust anchors vouch for.
    Any,
    /// The attributes (by short name, `ST` for `S`) a leaf's subject must carry.
    Subject(BTreeMap<String, String>),
}

impl TrustedIdentity {
    /// Parses `*` or `x509.subject: <RFC 4514 DN>`.
    pub fn parse(text: &str) -> Result<Self, X509Error> {
        let bad = |reason: &str| X509Error::BadIdentity {
            value: text.to_string(),
            reason: reason.to_string(),
        };
        let trimmed = text.trim();
        if trimmed == "*" {
            return Ok(TrustedIdentity::Any);
        }
        let Some(dn) = trimmed.strip_prefix(PREFIX) else {
            return Err(bad("expected \"*\" or \"x509.subject: C=..., O=..., ...\""));
        };
        if dn.contains("=#") {
            return Err(bad("hex-encoded (=#) attribute values are not supported"));
        }
        let attributes = parse_dn(dn).map_err(|why| bad(&why))?;
        for required in ["C", "O"] {
            if !attributes.contains_key(required) {
                return Err(bad(&format!("the subject must name {required}")));
            }
        }
        Ok(TrustedIdentity::Subject(attributes))
    }

    /// Whether `leaf` is this identity.
    pub fn matches(&self, leaf: &Certificate) -> bool {
        let TrustedIdentity::Subject(wanted) = self else {
            return true;
        };
        let mut have: BTreeMap<&str, &str> = BTreeMap::new();
        for (name, value) in leaf.subject_attributes() {
            if have.insert(name, value).is_some() {
                // A repeated attribute type is ambiguous: Notation refuses such subjects too.
                return false;
            }
        }
        wanted
            .iter()
            .all(|(name, value)| have.get(name.as_str()) == Some(&value.as_str()))
    }
}

/// RFC 4514 distinguished name -> attributes; refuses multi-valued RDNs and repeated types.
fn parse_dn(dn: &str) -> Result<BTreeMap<String, String>, String> {
    Ok(parse_dn_ordered(dn)?.into_iter().collect())
}

/// RFC 4514 distinguished name -> attributes in written order (short names upper-cased, `S` read
/// as `ST`); refuses multi-valued RDNs, repeated types and empty names.
pub(crate) fn parse_dn_ordered(dn: &str) -> Result<Vec<(String, String)>, String> {
    let mut attributes: Vec<(String, String)> = Vec::new();
    for rdn in split_unescaped(dn, ',')? {
        if split_unescaped(&rdn, '+')?.len() > 1 {
            return Err(format!(
                "multi-valued RDN {:?} is not supported",
                rdn.trim()
            ));
        }
        let (name, value) = rdn
            .split_once('=')
            .ok_or_else(|| format!("{:?} is not TYPE=value", rdn.trim()))?;
        let mut name = name.trim().to_ascii_uppercase();
        if name == "S" {
            name = "ST".into();
        }
        let value = unescape(value.trim())?;
        if name.is_empty() || value.is_empty() {
            return Err(format!("{:?} has an empty type or value", rdn.trim()));
        }
        if attributes.iter().any(|(n, _)| *n == name) {
            return Err(format!("{name} appears more than once"));
        }
        attributes.push((name, value));
    }
    if attributes.is_empty() {
        return Err("no attributes".into());
    }
    Ok(attributes)
}

/// Splits on `sep` where not escaped by a backslash; pieces keep their escapes.
fn split_unescaped(text: &str, sep: char) -> Result<Vec<String>, String> {
    let mut parts = vec![String::new()];
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            let next = chars
                .next()
                .ok_or_else(|| "ends with a lone backslash".to_string())?;
            if let Some(last) = parts.last_mut() {
                last.push(c);
                last.push(next);
            }
        } else if c == sep {
            parts.push(String::new());
        } else if let Some(last) = parts.last_mut() {
            last.push(c);
        }
    }
    Ok(parts)
}

/// Removes RFC 4514 escapes: `\,` and the like, and `\XX` hex pairs (UTF-8).
fn unescape(text: &str) -> Result<String, String> {
    let mut bytes = Vec::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\\' {
            let mut buf = [0u8; 4];
            bytes.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            continue;
        }
        let first = chars.next().ok_or("ends with a lone backslash")?;
        match (
            first.to_digit(16),
            chars.peek().and_then(|c| c.to_digit(16)),
        ) {
            (Some(high), Some(low)) => {
                chars.next();
                bytes.push((high * 16 + low) as u8);
            }
            _ => {
                let mut buf = [0u8; 4];
                bytes.extend_from_slice(first.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
    String::from_utf8(bytes).map_err(|_| "escaped bytes are not UTF-8".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subject(text: &str) -> BTreeMap<String, String> {
        match TrustedIdentity::parse(text).unwrap() {
            TrustedIdentity::Subject(s) => s,
            TrustedIdentity::Any => panic!("not a subject"),
        }
    }

    #[test]
    fn notation_spellings_parse() {
        let s = subject("x509.subject: C=US, S=WA, O=wabbit-networks.io, CN=release\\, v2");
        assert_eq!(s["ST"], "WA");
        assert_eq!(s["CN"], "release, v2");
        assert_eq!(s.len(), 4);
        assert_eq!(subject("x509.subject:C=US,O=a\\2Cb")["O"], "a,b");
        assert_eq!(TrustedIdentity::parse(" * ").unwrap(), TrustedIdentity::Any);
    }

    #[test]
    fn bad_identities_say_why() {
        for (text, why) in [
            ("C=US, O=acme", "expected"),
            ("x509.subject: CN=release", "must name C"),
            ("x509.subject: C=US, O=a, O=b", "more than once"),
            ("x509.subject: C=US+O=a", "multi-valued"),
            ("x509.subject: C=US, O=#0403", "=#"),
            ("x509.subject: C=US, O", "TYPE=value"),
        ] {
            let err = TrustedIdentity::parse(text).unwrap_err().to_string();
            assert!(err.contains(why), "{text}: {err}");
        }
    }
}
