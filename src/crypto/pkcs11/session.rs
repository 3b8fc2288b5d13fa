//! Finding the token a URI selects, and opening a session on it logged in as the user.

use cryptoki::error::{Error as P11Error, RvError};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::{Slot, TokenInfo};

use super::describe;
use super::module::Module;
use super::uri::{Pin, Pkcs11Uri};
use crate::crypto::CryptoError;

/// Finds the one initialised token the URI selects.
pub(super) fn find_token(
    module: &Module,
    uri: &Pkcs11Uri,
) -> Result<(Slot, TokenInfo), CryptoError> {
    let failed = |e: P11Error| {
        CryptoError::KeyStore(format!(
            "PKCS#11 module {}: listing tokens: {}",
            module.display(),
            describe(&e)
        ))
    };
    let mut seen = Vec::new();
    let mut found = Vec::new();
    for slot in module.ctx.get_slots_with_token().map_err(failed)? {
        if uri.slot_id.is_some_and(|id| id != slot.id()) {
            continue;
        }
        let info = module.ctx.get_token_info(slot).map_err(failed)?;
        if !info.token_initialized() {
            continue;
        }
        seen.push(format!("{:?}", info.label()));
        let matches = uri.token.as_deref().is_none_or(|t| t == info.label())
            && uri
                .serial
                .as_deref()
                .is_none_or(|s| s == info.serial_number())
            && uri
                .manufacturer
                .as_deref()
                .is_none_or(|m| m == info.manufacturer_id())
            && uri.model.as_deref().is_none_or(|m| m == info.model());
        if matches {
            found.push((slot, info));
        }
    }
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => {
            let tokens = if seen.is_empty() {
                "no initialised tokens".to_string()
            } else {
                format!("tokens: {}", seen.join(", "))
            };
            Err(CryptoError::KeyStore(format!(
                "no PKCS#11 token {} in module {} ({tokens})",
                uri.token_name(),
                module.display()
            )))
        }
        n => Err(CryptoError::KeyStore(format!(
            "{n} PKCS#11 tokens match {} in module {}: add token=, serial= or slot-id= to the URI",
            uri.token_name(),
            module.display()
        ))),
    }
}

/// Opens a session on `slot` and logs the user in (when the token needs it).
pub(super) fn open_session(
    module: &Module,
    slot: Slot,
    token: &str,
    pin: Option<&Pin>,
    read_write: bool,
) -> Result<Session, CryptoError> {
    let session = if read_write {
        module.ctx.open_rw_session(slot)
    } else {
        module.ctx.open_ro_session(slot)
    }
    .map_err(|e| {
        CryptoError::KeyStore(format!(
            "PKCS#11 token {token:?}: cannot open a session: {}",
            describe(&e)
        ))
    })?;
    let info = module
        .ctx
        .get_token_info(slot)
        .map_err(|e| CryptoError::KeyStore(format!("PKCS#11 token {token:?}: {}", describe(&e))))?;
    if !info.login_required() {
        return Ok(session);
    }
    let wrong_pin = || {
        CryptoError::KeyStore(format!(
            "PKCS#11 login to token {token:?} failed: wrong PIN"
        ))
    };
    let result = match pin {
        Some(pin) => session.login(UserType::User, Some(&pin.secret)),
        None if info.protected_authentication_path() => session.login(UserType::User, None),
        None => {
            return Err(CryptoError::KeyStore(format!(
                "PKCS#11 token {token:?} needs a PIN: add pin-source=file:/path (or pin-value=) to the URI"
            )));
        }
    };
    match result {
        Ok(()) => {
            if let Some(pin) = pin {
                module.record_login(slot, pin);
            }
            Ok(session)
        }
        // Another key of this process logged in to the token: the PIN must still be that one.
        Err(P11Error::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {
            match pin.map(|p| module.login_matches(slot, p)) {
                Some(Some(false)) => Err(wrong_pin()),
                _ => Ok(session),
            }
        }
        Err(P11Error::Pkcs11(RvError::PinIncorrect, _)) => Err(wrong_pin()),
        Err(P11Error::Pkcs11(RvError::PinLocked, _)) => Err(CryptoError::KeyStore(format!(
            "PKCS#11 login to token {token:?} failed: the user PIN is locked"
        ))),
        Err(P11Error::Pkcs11(RvError::PinExpired, _)) => Err(CryptoError::KeyStore(format!(
            "PKCS#11 login to token {token:?} failed: the user PIN has expired"
        ))),
        Err(P11Error::Pkcs11(RvError::PinLenRange | RvError::PinInvalid, _)) => {
            Err(CryptoError::KeyStore(format!(
                "PKCS#11 login to token {token:?} failed: the PIN has an invalid length or characters"
            )))
        }
        Err(P11Error::Pkcs11(RvError::UserPinNotInitialized, _)) => Err(CryptoError::KeyStore(
            format!("PKCS#11 login to token {token:?} failed: the token has no user PIN yet"),
        )),
        Err(e) => Err(CryptoError::KeyStore(format!(
            "PKCS#11 login to token {token:?} failed: {}",
            describe(&e)
        ))),
    }
}
