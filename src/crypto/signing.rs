//! Signing keys: the trait every key provider implements, and opening a key from its URI
//! (`file:/path/key.pem`, a bare path, or an RFC 7512 `pkcs11:` URI).

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use super::der::KeyKind;
use super::file_key::FileKey;
use super::pkcs11::Pkcs11Key;
use super::{Algorithm, CryptoError, PublicKey};

/// A private key that signs with one algorithm. Signatures are encoded as cosign writes them:
/// ECDSA as ASN.1 DER, RSA (PSS with salt length 32, or PKCS#1 v1.5) and Ed25519 raw.
pub trait SigningKey: Send + Sync {
    /// The one algorithm this key signs with.
    fn algorithm(&self) -> Algorithm;
    /// The name the key is known by (the file name, the PKCS#11 object label, or the id given).
    fn key_id(&self) -> &str;
    /// The public half, bound to the same algorithm; every signature verifies with it.
    fn public_key(&self) -> &PublicKey;
    /// Signs `payload` (hashing it as the algorithm says).
    fn sign(&self, payload: &[u8]) -> Result<Vec<u8>, CryptoError>;
}

impl fmt::Debug for dyn SigningKey + '_ {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("key_id", &self.key_id())
            .field("algorithm", &self.algorithm())
            .field("fingerprint", &self.public_key().fingerprint())
            .finish()
    }
}

/// Opens the signing key `uri` names, for `algorithm`:
/// - `file:/path/key.pem`, `file:///path/key.pem` or a bare path: a PKCS#8 PEM private key file;
/// - `pkcs11:token=...;object=...?module-path=...&pin-source=...`: a key on a PKCS#11 token.
///
/// The key id is `key_id` when given, otherwise the file name or the PKCS#11 object label.
pub fn open_signing_key(
    uri: &str,
    algorithm: Algorithm,
    key_id: Option<&str>,
) -> Result<Arc<dyn SigningKey>, CryptoError> {
    let uri = uri.trim();
    if uri.is_empty() {
        return Err(CryptoError::KeyStore(
            "empty key reference (expected file:/path/key.pem or pkcs11:...)".into(),
        ));
    }
    match scheme(uri) {
        Some(s) if s.eq_ignore_ascii_case("pkcs11") => {
            Ok(Arc::new(Pkcs11Key::open(uri, algorithm, key_id)?))
        }
        Some(s) if s.eq_ignore_ascii_case("file") => {
            let path = file_uri_path(uri)?;
            Ok(Arc::new(FileKey::open(Path::new(path), algorithm, key_id)?))
        }
        Some(s) => Err(CryptoError::KeyStore(format!(
            "key reference scheme {s:?} is not supported (expected file:/path/key.pem, a path, or pkcs11:...)"
        ))),
        None => Ok(Arc::new(FileKey::open(Path::new(uri), algorithm, key_id)?)),
    }
}

/// Checks that a private key of `kind`, found at `source` (`key file /k.pem`, `PKCS#11 private key
/// ...`), can sign `algorithm`; the error names both.
pub(super) fn check_key_fits(
    kind: KeyKind,
    algorithm: Algorithm,
    source: &str,
) -> Result<(), CryptoError> {
    if kind.fits(algorithm) {
        Ok(())
    } else {
        Err(CryptoError::SigningAlgorithmMismatch {
            source_name: source.to_string(),
            key: kind.describe(),
            algorithm,
        })
    }
}

/// The URI scheme (RFC 3986: ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ) before ':'), if any.
/// A path such as `./keys/a:b.pem` or `/keys/a:b.pem` has none.
fn scheme(uri: &str) -> Option<&str> {
    let (head, _) = uri.split_once(':')?;
    let mut chars = head.chars();
    let first = chars.next()?;
    (first.is_ascii_alphabetic()
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')))
    .then_some(head)
}

/// The path of a `file:` URI: `file:/p`, `file:///p`, `file://localhost/p`, or `file:relative/p`.
fn file_uri_path(uri: &str) -> Result<&str, CryptoError> {
    let rest = &uri[5..];
    let path = match rest.strip_prefix("//") {
        Some(authority_and_path) => {
            let slash = authority_and_path
                .find('/')
                .unwrap_or(authority_and_path.len());
            let (host, path) = authority_and_path.split_at(slash);
            if !(host.is_empty() || host.eq_ignore_ascii_case("localhost")) {
                return Err(CryptoError::KeyStore(format!(
                    "file: URI names host {host:?}: only local files can be read"
                )));
            }
            path
        }
        None => rest,
    };
    if path.is_empty() {
        return Err(CryptoError::KeyStore("file: URI has no path".into()));
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemes_are_told_from_paths() {
        assert_eq!(scheme("file:/k.pem"), Some("file"));
        assert_eq!(scheme("pkcs11:token=a"), Some("pkcs11"));
        assert_eq!(scheme("awskms:///alias/x"), Some("awskms"));
        assert_eq!(scheme("/keys/a:b.pem"), None);
        assert_eq!(scheme("./a:b.pem"), None);
        assert_eq!(scheme("keys/release.pem"), None);
    }

    #[test]
    fn file_uris() {
        assert_eq!(file_uri_path("file:/etc/k.pem").unwrap(), "/etc/k.pem");
        assert_eq!(file_uri_path("file:///etc/k.pem").unwrap(), "/etc/k.pem");
        assert_eq!(
            file_uri_path("file://localhost/etc/k.pem").unwrap(),
            "/etc/k.pem"
        );
        assert_eq!(file_uri_path("file:k.pem").unwrap(), "k.pem");
        assert!(file_uri_path("file://example.com/k.pem").is_err());
        assert!(file_uri_path("file:").is_err());
    }

    #[test]
    fn unknown_scheme_is_one_line_naming_it() {
        let err = open_signing_key("awskms:///alias/release", Algorithm::EcdsaP256Sha256, None)
            .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("\"awskms\"") && !text.contains('\n'),
            "{text}"
        );
    }

    #[test]
    fn missing_file_names_the_path() {
        let err = open_signing_key(
            "file:/nonexistent/dir/release.key",
            Algorithm::EcdsaP256Sha256,
            None,
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("/nonexistent/dir/release.key"),
            "{err}"
        );
        let err =
            open_signing_key("/nonexistent/dir/other.key", Algorithm::Ed25519, None).unwrap_err();
        assert!(
            err.to_string().contains("/nonexistent/dir/other.key"),
            "{err}"
        );
    }
}
