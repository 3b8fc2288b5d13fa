//! RFC 7512 `pkcs11:` URIs: parsing and percent-coding, and where the user PIN comes from
//! (`pin-value`, or a file named by `pin-source`). Neither errors nor `Debug` output carry the PIN.

use std::fmt;
use std::path::{Path, PathBuf};

use aws_lc_rs::digest;
use cryptoki::types::AuthPin;

use super::DEFAULT_PKCS11_MODULE;
use crate::crypto::CryptoError;

/// Where the PIN comes from.
enum PinSpec {
    Value(Pin),
    File(PathBuf),
}

/// A user PIN: the secret handed to C_Login, and a salted SHA-256 tag of it, so that a key opened on
/// a token this process is already logged in to still needs the right PIN (PKCS#11 login state is
/// per application and token: C_Login answers "already logged in" without checking the PIN).
#[derive(Clone)]
pub(super) struct Pin {
    pub(super) secret: AuthPin,
    pub(super) tag: [u8; 32],
}

impl Pin {
    pub(super) fn new(mut text: String) -> Pin {
        static SALT: std::sync::OnceLock<[u8; 32]> = std::sync::OnceLock::new();
        let salt = SALT.get_or_init(|| {
            let mut salt = [0u8; 32];
            // Without randomness the tag is still a SHA-256 of the PIN, never the PIN itself.
            let _ = aws_lc_rs::rand::fill(&mut salt);
            salt
        });
        let mut ctx = digest::Context::new(&digest::SHA256);
        ctx.update(salt);
        ctx.update(text.as_bytes());
        let mut tag = [0u8; 32];
        tag.copy_from_slice(ctx.finish().as_ref());
        let secret = AuthPin::new(text.clone().into());
        // Best effort: the plain copy does not outlive this function.
        let mut bytes = std::mem::take(&mut text).into_bytes();
        bytes.fill(0);
        Pin { secret, tag }
    }
}

/// A parsed `pkcs11:` URI. `Debug` never shows the PIN.
pub struct Pkcs11Uri {
    /// `token=`: the token label.
    pub token: Option<String>,
    /// `object=`: the key object label.
    pub object: Option<String>,
    /// `id=`: the key object CKA_ID (percent-decoded bytes).
    pub id: Option<Vec<u8>>,
    /// `serial=`: the token's serial number, a further token selector.
    pub serial: Option<String>,
    /// `manufacturer=`: the token's manufacturer ID, a further token selector.
    pub manufacturer: Option<String>,
    /// `model=`: the token's model, a further token selector.
    pub model: Option<String>,
    /// `slot-id=`: the slot number.
    pub slot_id: Option<u64>,
    /// `module-path=`; [`DEFAULT_PKCS11_MODULE`] when absent.
    pub module_path: Option<PathBuf>,
    pin: Option<PinSpec>,
}

impl fmt::Debug for Pkcs11Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pin = match &self.pin {
            None => "none".to_string(),
            Some(PinSpec::Value(_)) => "pin-value (redacted)".to_string(),
            Some(PinSpec::File(p)) => format!("pin-source {}", p.display()),
        };
        f.debug_struct("Pkcs11Uri")
            .field("token", &self.token)
            .field("object", &self.object)
            .field("id", &self.id.as_deref().map(hex::encode))
            .field("serial", &self.serial)
            .field("manufacturer", &self.manufacturer)
            .field("model", &self.model)
            .field("slot_id", &self.slot_id)
            .field("module_path", &self.module_path)
            .field("pin", &pin)
            .finish()
    }
}

pub(super) fn uri_error(msg: impl fmt::Display) -> CryptoError {
    CryptoError::KeyStore(format!("PKCS#11 URI: {msg}"))
}

/// Percent-decodes `value` (RFC 3986); `what` names the attribute in errors (never the value).
fn percent_decode(value: &str, what: &str) -> Result<Vec<u8>, CryptoError> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| {
                    uri_error(format!("{what} has a '%' not followed by two hex digits"))
                })?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Ok(out)
}

/// Percent-encodes everything but RFC 3986 unreserved characters (and `/` when `keep_slash`).
pub(super) fn percent_encode(bytes: &[u8], keep_slash: bool) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        if b.is_ascii_alphanumeric()
            || matches!(b, b'-' | b'.' | b'_' | b'~')
            || (keep_slash && b == b'/')
        {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl Pkcs11Uri {
    /// Parses an RFC 7512 URI. Path attributes (`;`-separated): `token`, `object`, `id`, `type`,
    /// `serial`, `manufacturer`, `model`, `slot-id`; query attributes (`&`-separated):
    /// `module-path`, `pin-value`, `pin-source` (`file:/path` or a path). Values are percent-decoded.
    pub fn parse(uri: &str) -> Result<Self, CryptoError> {
        let uri = uri.trim();
        let rest = match uri.get(..7) {
            Some(s) if s.eq_ignore_ascii_case("pkcs11:") => &uri[7..],
            _ => return Err(uri_error("does not start with pkcs11:")),
        };
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        let mut parsed = Pkcs11Uri::empty();
        let attributes = path
            .split(';')
            .map(|a| (a, true))
            .chain(query.split('&').map(|a| (a, false)))
            .filter(|(a, _)| !a.is_empty());
        for (attribute, in_path) in attributes {
            let Some((name, value)) = attribute.split_once('=') else {
                let name: String = attribute.chars().take(40).collect();
                return Err(uri_error(format!("attribute {name:?} has no '='")));
            };
            parsed.set(&name.to_ascii_lowercase(), value, in_path)?;
        }
        Ok(parsed)
    }

    /// A URI that selects nothing yet (`pkcs11:`).
    fn empty() -> Pkcs11Uri {
        Pkcs11Uri {
            token: None,
            object: None,
            id: None,
            serial: None,
            manufacturer: None,
            model: None,
            slot_id: None,
            module_path: None,
            pin: None,
        }
    }

    /// A URI that selects the token labelled `token_label` in `module`, and no object or PIN.
    pub(super) fn for_token(token_label: &str, module: &Path) -> Pkcs11Uri {
        Pkcs11Uri {
            token: Some(token_label.to_string()),
            module_path: Some(module.to_path_buf()),
            ..Pkcs11Uri::empty()
        }
    }

    fn set(&mut self, name: &str, value: &str, in_path: bool) -> Result<(), CryptoError> {
        let text = |value: &str| -> Result<String, CryptoError> {
            String::from_utf8(percent_decode(value, name)?)
                .map_err(|_| uri_error(format!("{name} is not UTF-8")))
        };
        fn once<T>(slot: &mut Option<T>, value: T, name: &str) -> Result<(), CryptoError> {
            if slot.is_some() {
                return Err(uri_error(format!("{name} is given twice")));
            }
            *slot = Some(value);
            Ok(())
        }
        match name {
            "token" => once(&mut self.token, text(value)?, name),
            "object" => once(&mut self.object, text(value)?, name),
            "id" => once(&mut self.id, percent_decode(value, name)?, name),
            "serial" => once(&mut self.serial, text(value)?, name),
            "manufacturer" => once(&mut self.manufacturer, text(value)?, name),
            "model" => once(&mut self.model, text(value)?, name),
            "slot-id" => {
                let id = text(value)?
                    .parse::<u64>()
                    .map_err(|_| uri_error("slot-id is not a decimal number"))?;
                once(&mut self.slot_id, id, name)
            }
            "type" => match text(value)?.as_str() {
                "private" | "public" => Ok(()),
                other => Err(uri_error(format!(
                    "type={other} does not name a key (expected private)"
                ))),
            },
            "module-path" => once(&mut self.module_path, PathBuf::from(text(value)?), name),
            "pin-value" => {
                if self.pin.is_some() {
                    return Err(uri_error("more than one of pin-value and pin-source"));
                }
                let pin = String::from_utf8(percent_decode(value, name)?)
                    .map_err(|_| uri_error("pin-value is not UTF-8"))?;
                self.pin = Some(PinSpec::Value(Pin::new(pin)));
                Ok(())
            }
            "pin-source" => {
                if self.pin.is_some() {
                    return Err(uri_error("more than one of pin-value and pin-source"));
                }
                let source = text(value)?;
                let path = match source.strip_prefix("file:") {
                    Some(p) => p.strip_prefix("//").unwrap_or(p).to_string(),
                    None if source.contains(':') && !source.starts_with('/') => {
                        return Err(uri_error("pin-source must be file:/path or a path"));
                    }
                    None => source,
                };
                if path.is_empty() {
                    return Err(uri_error("pin-source names no file"));
                }
                self.pin = Some(PinSpec::File(PathBuf::from(path)));
                Ok(())
            }
            "module-name" => Err(uri_error("module-name is not supported: give module-path")),
            "library-manufacturer"
            | "library-description"
            | "library-version"
            | "slot-manufacturer"
            | "slot-description" => Ok(()),
            other if other.starts_with("x-") => Ok(()),
            other => {
                let part = if in_path { "path" } else { "query" };
                let other: String = other.chars().take(40).collect();
                Err(uri_error(format!("unknown {part} attribute {other:?}")))
            }
        }
    }

    /// The module to load.
    pub fn module(&self) -> &Path {
        self.module_path
            .as_deref()
            .unwrap_or(Path::new(DEFAULT_PKCS11_MODULE))
    }

    /// The PIN, read from its file when the URI gives `pin-source`.
    pub(super) fn pin(&self) -> Result<Option<Pin>, CryptoError> {
        match &self.pin {
            None => Ok(None),
            Some(PinSpec::Value(pin)) => Ok(Some(pin.clone())),
            Some(PinSpec::File(path)) => {
                let mut text = std::fs::read_to_string(path).map_err(|e| {
                    CryptoError::KeyStore(format!("cannot read PIN file {}: {e}", path.display()))
                })?;
                let len = text.trim_end_matches(['\r', '\n']).len();
                text.truncate(len);
                if text.is_empty() {
                    return Err(CryptoError::KeyStore(format!(
                        "PIN file {} is empty",
                        path.display()
                    )));
                }
                Ok(Some(Pin::new(text)))
            }
        }
    }

    pub(super) fn token_name(&self) -> String {
        match (&self.token, &self.serial) {
            (Some(t), _) => format!("{t:?}"),
            (None, Some(s)) => format!("with serial {s:?}"),
            (None, None) => "(any)".to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uri_attributes_are_parsed_and_decoded() {
        let uri = Pkcs11Uri::parse(
            "pkcs11:token=My%20Token;object=release;id=%01%ff;type=private\
             ?module-path=/opt/hsm/lib%2Dp11.so&pin-value=12%334",
        )
        .unwrap();
        assert_eq!(uri.token.as_deref(), Some("My Token"));
        assert_eq!(uri.object.as_deref(), Some("release"));
        assert_eq!(uri.id.as_deref(), Some(&[0x01, 0xff][..]));
        assert_eq!(uri.module(), Path::new("/opt/hsm/lib-p11.so"));
        assert!(matches!(&uri.pin, Some(PinSpec::Value(_))));
        assert_eq!(percent_decode("12%334", "pin-value").unwrap(), b"1234");
        let debug = format!("{uri:?}");
        assert!(
            !debug.contains("1234") && debug.contains("redacted"),
            "{debug}"
        );
    }

    #[test]
    fn uri_defaults_and_errors() {
        let uri = Pkcs11Uri::parse("pkcs11:token=t;object=o").unwrap();
        assert_eq!(uri.module(), Path::new(DEFAULT_PKCS11_MODULE));
        assert!(uri.pin.is_none());
        let uri = Pkcs11Uri::parse("PKCS11:object=o?pin-source=file:/run/pin").unwrap();
        assert!(matches!(&uri.pin, Some(PinSpec::File(p)) if p == Path::new("/run/pin")));
        let uri = Pkcs11Uri::parse("pkcs11:object=o?pin-source=/run/pin").unwrap();
        assert!(matches!(&uri.pin, Some(PinSpec::File(p)) if p == Path::new("/run/pin")));
        for (bad, expected) in [
            ("file:/x", "pkcs11:"),
            ("pkcs11:token=a;token=b", "twice"),
            ("pkcs11:object=o?pin-value=1&pin-source=/p", "more than one"),
            ("pkcs11:tokn=a", "unknown path attribute \"tokn\""),
            ("pkcs11:object=o?pin-value=12%zz", "pin-value has a '%'"),
            ("pkcs11:object=o?module-name=softhsm2", "module-path"),
            ("pkcs11:object", "no '='"),
            ("pkcs11:object=o;type=cert", "type=cert"),
        ] {
            let err = Pkcs11Uri::parse(bad).unwrap_err().to_string();
            assert!(err.contains(expected), "{bad}: {err}");
        }
        // The PIN is never echoed, even when it is what is wrong.
        let err = Pkcs11Uri::parse("pkcs11:object=o?pin-value=secret%G1")
            .unwrap_err()
            .to_string();
        assert!(!err.contains("secret"), "{err}");
    }

    #[test]
    fn percent_encoding_round_trips() {
        let raw = "a b/c;d?e&f=%é";
        let encoded = percent_encode(raw.as_bytes(), false);
        assert!(
            !encoded.contains([' ', '/', ';', '?', '&', '=']),
            "{encoded}"
        );
        assert_eq!(percent_decode(&encoded, "x").unwrap(), raw.as_bytes());
        assert_eq!(percent_encode(b"/usr/lib/x.so", true), "/usr/lib/x.so");
    }
}
