//! Opening a signing key from its reference: `file:/path/key.pem`, a bare path, an RFC 7512
//! `pkcs11:` URI, or a cloud KMS key (`awskms://`, `alikms://`). The one place that knows every
//! provider.

use std::path::Path;
use std::sync::Arc;

use super::file_key::FileKey;
use super::kms::{KmsKey, is_kms_scheme};
use super::pkcs11::Pkcs11Key;
use super::signing::SigningKey;
use super::{Algorithm, CryptoError};

/// Opens the signing key `uri` names, for `algorithm`:
/// - `file:/path/key.pem`, `file:///path/key.pem` or a bare path: a PKCS#8 PEM private key file;
/// - `pkcs11:token=...;object=...?module-path=...&pin-source=...`: a key on a PKCS#11 token;
/// - `awskms://[ENDPOINT]/KEY` and `alikms://KEY[/VERSION]?region=...`: a cloud KMS key (opening
///   asks the KMS for its public key, so it blocks on the network).
///
/// The key id is `key_id` when given, otherwise the file name, the PKCS#11 object label or the
/// KMS key as referenced.
pub fn open_signing_key(
    uri: &str,
    algorithm: Algorithm,
    key_id: Option<&str>,
) -> Result<Arc<dyn SigningKey>, CryptoError> {
    open_signing_key_inferred(uri, Some(algorithm), key_id)
}

/// Like [`open_signing_key`], with the algorithm inferred from the key when `algorithm` is `None`:
/// an EC key's curve and an Ed25519 key decide it; an RSA key does not (PSS or PKCS#1 v1.5), and
/// the error says to name one.
pub fn open_signing_key_inferred(
    uri: &str,
    algorithm: Option<Algorithm>,
    key_id: Option<&str>,
) -> Result<Arc<dyn SigningKey>, CryptoError> {
    let uri = uri.trim();
    if uri.is_empty() {
        return Err(CryptoError::KeyStore(
            "empty key reference (expected file:/path/key.pem, pkcs11:..., awskms://... or alikms://...)".into(),
        ));
    }
    match scheme(uri) {
        Some(s) if s.eq_ignore_ascii_case("pkcs11") => {
            Ok(Arc::new(Pkcs11Key::open_inferred(uri, algorithm, key_id)?))
        }
        Some(s) if s.eq_ignore_ascii_case("file") => {
            let path = file_uri_path(uri)?;
            Ok(Arc::new(FileKey::open_inferred(
                Path::new(path),
                algorithm,
                key_id,
            )?))
        }
        Some(s) if is_kms_scheme(s) => Ok(Arc::new(KmsKey::open(uri, algorithm, key_id)?)),
        Some(s) => Err(CryptoError::KeyStore(format!(
            "key reference scheme {s:?} is not supported (expected file:/path/key.pem, a path, pkcs11:..., awskms://... or alikms://...)"
        ))),
        None => Ok(Arc::new(FileKey::open_inferred(
            Path::new(uri),
            algorithm,
            key_id,
        )?)),
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
        let err = open_signing_key(
            "gcpkms://projects/p/keys/k",
            Algorithm::EcdsaP256Sha256,
            None,
        )
        .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("\"gcpkms\"") && text.contains("awskms://") && !text.contains('\n'),
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
