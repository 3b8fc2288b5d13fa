//! Keys on PKCS#11 tokens (HSMs, smart cards, SoftHSM2), named by RFC 7512 URIs:
//!
//! `pkcs11:token=signet;object=release;id=%01?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/run/pin`
//!
//! The payload is hashed in software and the hash is signed on the token: the private key never
//! leaves the token, as with a cloud KMS.
//!
//! A PKCS#11 module is loaded and initialised once per process however many keys use it, and
//! finalised when the last key using it is dropped. No error or log line carries the PIN.
//!
//! - `uri`: the URI and the PIN sources;
//! - `module`: loading, initialising and finalising modules;
//! - `session`: finding the token, logging in;
//! - `objects`: key objects and their public keys;
//! - `key`: [`Pkcs11Key`] and its signing mechanisms;
//! - `generate`: [`generate_on_token`].

mod generate;
mod key;
mod module;
mod objects;
mod session;
mod uri;

pub use generate::{TokenKey, generate_on_token, generate_on_token_sized};
pub use key::Pkcs11Key;
pub use uri::Pkcs11Uri;

use cryptoki::error::Error as P11Error;

use super::{Algorithm, CryptoError};

/// The module used when a URI names none (Debian's SoftHSM2, package `softhsm2`).
pub const DEFAULT_PKCS11_MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";

/// A short form of a cryptoki error: `C_Login: PinIncorrect`.
fn describe(e: &P11Error) -> String {
    match e {
        P11Error::Pkcs11(rv, function) => format!("C_{function:?}: {rv:?}"),
        other => other.to_string(),
    }
}

/// The error for Ed25519 on a token: signet signs on PKCS#11 with RSA and ECDSA only.
fn ed25519_unsupported() -> CryptoError {
    CryptoError::KeyStore(
        "ED25519 is unsupported on PKCS#11 (use RSA or ECDSA there, or an Ed25519 key file)".into(),
    )
}

/// Refuses the algorithms signet does not sign with on PKCS#11, before any module is loaded.
fn unsupported_on_pkcs11(algorithm: Algorithm) -> Result<(), CryptoError> {
    match algorithm {
        Algorithm::Ed25519 => Err(ed25519_unsupported()),
        _ => Ok(()),
    }
}
