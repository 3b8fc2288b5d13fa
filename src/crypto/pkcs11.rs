//! Keys on PKCS#11 tokens (HSMs, smart cards, SoftHSM2), named by RFC 7512 URIs:
//!
//! `pkcs11:token=signet;object=release;id=%01?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/run/pin`
//!
//! The payload is hashed in software and the hash is signed on the token (CKM_RSA_PKCS over a
//! DigestInfo, CKM_RSA_PKCS_PSS with SHA-256/MGF1-SHA-256/salt 32, CKM_ECDSA): the private key never
//! leaves the token. ECDSA signatures come back as raw `r || s` and are re-encoded as ASN.1 DER.
//!
//! A PKCS#11 module is loaded and initialised once per process however many keys use it, and
//! finalised when the last key using it is dropped. No error or log line carries the PIN.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use aws_lc_rs::digest;
use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as P11Error, RvError};
use cryptoki::mechanism::rsa::{PkcsMgfType, PkcsPssParams};
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::{Slot, TokenInfo};
use cryptoki::types::AuthPin;

use super::der::{self, KeyKind};
use super::signing::{SigningKey, asn1, check_key_fits};
use super::{Algorithm, CryptoError, PublicKey};

/// The module used when a URI names none (Debian's SoftHSM2, package `softhsm2`).
pub const DEFAULT_PKCS11_MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";

/// DigestInfo prefix for SHA-256 (RFC 8017 section 9.2, note 1).
const SHA256_DIGEST_INFO: &[u8] = &[
    0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05,
    0x00, 0x04, 0x20,
];

// ---------------------------------------------------------------------------------------------
// RFC 7512 URIs

/// Where the PIN comes from.
enum PinSpec {
    Value(Pin),
    File(PathBuf),
}

/// A user PIN: the secret handed to C_Login, and a salted SHA-256 tag of it, so that a key opened on
/// a token this process is already logged in to still needs the right PIN (PKCS#11 login state is
/// per application and token: C_Login answers "already logged in" without checking the PIN).
#[derive(Clone)]
struct Pin {
    secret: AuthPin,
    tag: [u8; 32],
}

impl Pin {
    fn new(mut text: String) -> Pin {
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
    /// `serial=`, `manufacturer=`, `model=`: further token selectors.
    pub serial: Option<String>,
    pub manufacturer: Option<String>,
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

fn uri_error(msg: impl fmt::Display) -> CryptoError {
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
fn percent_encode(bytes: &[u8], keep_slash: bool) -> String {
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
        let mut parsed = Pkcs11Uri {
            token: None,
            object: None,
            id: None,
            serial: None,
            manufacturer: None,
            model: None,
            slot_id: None,
            module_path: None,
            pin: None,
        };
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
    fn pin(&self) -> Result<Option<Pin>, CryptoError> {
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

    fn token_name(&self) -> String {
        match (&self.token, &self.serial) {
            (Some(t), _) => format!("{t:?}"),
            (None, Some(s)) => format!("with serial {s:?}"),
            (None, None) => "(any)".to_string(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Modules: one initialised context per library per process

struct ModuleEntry {
    ctx: Pkcs11,
    users: usize,
    /// Whether signet initialised the library (and so finalises it).
    owned: bool,
    /// Slot id -> tag of the PIN that logged the user in there.
    logins: BTreeMap<u64, [u8; 32]>,
}

static MODULES: Mutex<BTreeMap<PathBuf, ModuleEntry>> = Mutex::new(BTreeMap::new());

/// A use of a loaded, initialised PKCS#11 module; the last use dropped finalises it.
struct Module {
    path: PathBuf,
    ctx: Pkcs11,
}

impl Module {
    fn acquire(path: &Path) -> Result<Module, CryptoError> {
        if !path.exists() {
            let hint = if path == Path::new(DEFAULT_PKCS11_MODULE) {
                " (Debian package softhsm2; or give module-path= in the URI)"
            } else {
                ""
            };
            return Err(CryptoError::KeyStore(format!(
                "PKCS#11 module {} not found{hint}",
                path.display()
            )));
        }
        let key = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        let mut modules = MODULES.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(entry) = modules.get_mut(&key) {
            entry.users += 1;
            return Ok(Module {
                path: key,
                ctx: entry.ctx.clone(),
            });
        }
        let ctx = Pkcs11::new(&key).map_err(|e| {
            CryptoError::KeyStore(format!(
                "cannot load PKCS#11 module {}: {e}",
                path.display()
            ))
        })?;
        let owned = match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
            Ok(()) => true,
            Err(P11Error::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => false,
            Err(e) => {
                return Err(CryptoError::KeyStore(format!(
                    "cannot initialise PKCS#11 module {}: {}",
                    path.display(),
                    describe(&e)
                )));
            }
        };
        modules.insert(
            key.clone(),
            ModuleEntry {
                ctx: ctx.clone(),
                users: 1,
                owned,
                logins: BTreeMap::new(),
            },
        );
        Ok(Module { path: key, ctx })
    }

    fn display(&self) -> String {
        self.path.display().to_string()
    }

    fn record_login(&self, slot: Slot, pin: &Pin) {
        let mut modules = MODULES.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(entry) = modules.get_mut(&self.path) {
            entry.logins.insert(slot.id(), pin.tag);
        }
    }

    /// Whether `pin` is the PIN this process logged in to `slot` with (`None`: not known).
    fn login_matches(&self, slot: Slot, pin: &Pin) -> Option<bool> {
        let modules = MODULES.lock().unwrap_or_else(|e| e.into_inner());
        let tag = modules.get(&self.path)?.logins.get(&slot.id())?;
        Some(aws_lc_rs::constant_time::verify_slices_are_equal(tag, &pin.tag).is_ok())
    }
}

impl Drop for Module {
    fn drop(&mut self) {
        let mut modules = MODULES.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(entry) = modules.get_mut(&self.path) {
            entry.users -= 1;
            if entry.users == 0
                && let Some(entry) = modules.remove(&self.path)
                && entry.owned
                && let Err(e) = entry.ctx.finalize()
            {
                tracing::debug!(module = %self.path.display(), "C_Finalize failed: {}", describe(&e));
            }
        }
    }
}

/// A short form of a cryptoki error: `C_Login: PinIncorrect`.
fn describe(e: &P11Error) -> String {
    match e {
        P11Error::Pkcs11(rv, function) => format!("C_{function:?}: {rv:?}"),
        other => other.to_string(),
    }
}

// ---------------------------------------------------------------------------------------------
// Tokens, sessions, objects

/// Finds the one initialised token the URI selects.
fn find_token(module: &Module, uri: &Pkcs11Uri) -> Result<(Slot, TokenInfo), CryptoError> {
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
fn open_session(
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

/// How the key objects are selected: label and/or CKA_ID.
#[derive(Clone)]
struct Selector {
    label: Option<String>,
    id: Option<Vec<u8>>,
}

impl Selector {
    fn template(&self, class: ObjectClass) -> Vec<Attribute> {
        let mut template = vec![Attribute::Class(class)];
        if let Some(label) = &self.label {
            template.push(Attribute::Label(label.as_bytes().to_vec()));
        }
        if let Some(id) = &self.id {
            template.push(Attribute::Id(id.clone()));
        }
        template
    }

    fn describe(&self) -> String {
        match (&self.label, &self.id) {
            (Some(l), Some(id)) => format!("labelled {l:?} with id {}", percent_encode(id, false)),
            (Some(l), None) => format!("labelled {l:?}"),
            (None, Some(id)) => format!("with id {}", percent_encode(id, false)),
            (None, None) => "(unnamed)".to_string(),
        }
    }
}

fn find_private_key(
    session: &Session,
    selector: &Selector,
    token: &str,
) -> Result<ObjectHandle, CryptoError> {
    let mut found = session
        .find_objects(&selector.template(ObjectClass::PRIVATE_KEY))
        .map_err(|e| {
            CryptoError::KeyStore(format!(
                "PKCS#11 token {token:?}: finding objects: {}",
                describe(&e)
            ))
        })?;
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => Err(CryptoError::KeyStore(format!(
            "no private key {} on PKCS#11 token {token:?}",
            selector.describe()
        ))),
        n => Err(CryptoError::KeyStore(format!(
            "{n} private keys {} on PKCS#11 token {token:?}: add id= to the URI",
            selector.describe()
        ))),
    }
}

/// Reads the attributes asked for; each is `None` when the token does not give it.
fn attributes(
    session: &Session,
    object: ObjectHandle,
    types: &[AttributeType],
    what: &str,
) -> Result<Vec<Attribute>, CryptoError> {
    session
        .get_attributes(object, types)
        .map_err(|e| CryptoError::KeyStore(format!("{what}: reading attributes: {}", describe(&e))))
}

/// What signet needs to know about a key object.
#[derive(Default)]
struct KeyFacts {
    key_type: Option<KeyType>,
    id: Option<Vec<u8>>,
    label: Option<String>,
    ec_params: Option<Vec<u8>>,
    ec_point: Option<Vec<u8>>,
    modulus: Option<Vec<u8>>,
    exponent: Option<Vec<u8>>,
    extractable: Option<bool>,
    sensitive: Option<bool>,
}

fn key_facts(session: &Session, object: ObjectHandle, what: &str) -> Result<KeyFacts, CryptoError> {
    let mut facts = KeyFacts::default();
    let types = [
        AttributeType::KeyType,
        AttributeType::Id,
        AttributeType::Label,
        AttributeType::EcParams,
        AttributeType::EcPoint,
        AttributeType::Modulus,
        AttributeType::PublicExponent,
        AttributeType::Extractable,
        AttributeType::Sensitive,
    ];
    for attribute in attributes(session, object, &types, what)? {
        match attribute {
            Attribute::KeyType(t) => facts.key_type = Some(t),
            Attribute::Id(v) => facts.id = Some(v),
            Attribute::Label(v) => facts.label = Some(String::from_utf8_lossy(&v).into_owned()),
            Attribute::EcParams(v) => facts.ec_params = Some(v),
            Attribute::EcPoint(v) => facts.ec_point = Some(v),
            Attribute::Modulus(v) => facts.modulus = Some(v),
            Attribute::PublicExponent(v) => facts.exponent = Some(v),
            Attribute::Extractable(b) => facts.extractable = Some(b),
            Attribute::Sensitive(b) => facts.sensitive = Some(b),
            _ => {}
        }
    }
    Ok(facts)
}

/// The key kind of a token key, from CKA_KEY_TYPE and (EC) CKA_EC_PARAMS.
fn token_key_kind(facts: &KeyFacts) -> Option<KeyKind> {
    let key_type = facts.key_type?;
    if key_type == KeyType::RSA {
        Some(KeyKind::Rsa)
    } else if key_type == KeyType::EC {
        let params = facts.ec_params.as_deref().unwrap_or_default();
        Some(match asn1::element(params) {
            Some((asn1::TAG_OID, oid, [])) if oid == asn1::OID_P256 => KeyKind::EcP256,
            Some((asn1::TAG_OID, oid, [])) if oid == asn1::OID_P384 => KeyKind::EcP384,
            _ => KeyKind::EcOther,
        })
    } else if key_type == KeyType::EC_EDWARDS {
        Some(KeyKind::Ed25519)
    } else {
        None
    }
}

/// SPKI DER for an RSA public key given as big-endian modulus and exponent.
fn rsa_spki(modulus: &[u8], exponent: &[u8]) -> Vec<u8> {
    let pkcs1 = asn1::sequence(&[
        &asn1::unsigned_integer(modulus),
        &asn1::unsigned_integer(exponent),
    ]);
    der::rsa_pkcs1_to_spki(&pkcs1)
}

/// SPKI DER for an EC public key from CKA_EC_PARAMS (the curve OID, DER) and CKA_EC_POINT (a DER
/// OCTET STRING wrapping the uncompressed point, or the bare point as some tokens give it).
fn ec_spki(params: &[u8], point: &[u8]) -> Option<Vec<u8>> {
    let point = match asn1::element(point) {
        Some((asn1::TAG_OCTET_STRING, inner, [])) if inner.first() == Some(&0x04) => inner,
        _ if point.first() == Some(&0x04) && !point.len().is_multiple_of(2) => point,
        _ => return None,
    };
    let alg_id = asn1::sequence(&[&asn1::encode(asn1::TAG_OID, asn1::OID_EC), params]);
    let mut bits = vec![0u8];
    bits.extend_from_slice(point);
    Some(asn1::sequence(&[
        &alg_id,
        &asn1::encode(asn1::TAG_BIT_STRING, &bits),
    ]))
}

/// Re-encodes a raw ECDSA signature `r || s` as an ASN.1 DER `Ecdsa-Sig-Value`.
fn ecdsa_raw_to_der(raw: &[u8]) -> Option<Vec<u8>> {
    if raw.is_empty() || !raw.len().is_multiple_of(2) {
        return None;
    }
    let (r, s) = raw.split_at(raw.len() / 2);
    Some(asn1::sequence(&[
        &asn1::unsigned_integer(r),
        &asn1::unsigned_integer(s),
    ]))
}

/// Reads the public key of the private key described by `private_facts`: from the matching public key object, or for
/// RSA from the private key's own public attributes when the token holds no public key object.
fn read_public_key(
    session: &Session,
    private_facts: &KeyFacts,
    selector: &Selector,
    algorithm: Algorithm,
    what: &str,
) -> Result<PublicKey, CryptoError> {
    // The public object shares the private key's label and id (as pkcs11-tool and signet create
    // them); with an id known, only an object with that id counts.
    let public_selector = Selector {
        label: selector
            .label
            .clone()
            .or_else(|| private_facts.label.clone().filter(|l| !l.is_empty())),
        id: selector
            .id
            .clone()
            .or_else(|| private_facts.id.clone().filter(|id| !id.is_empty())),
    };
    let candidates = if public_selector.label.is_none() && public_selector.id.is_none() {
        Vec::new()
    } else {
        session
            .find_objects(&public_selector.template(ObjectClass::PUBLIC_KEY))
            .map_err(|e| {
                CryptoError::KeyStore(format!("{what}: finding its public key: {}", describe(&e)))
            })?
    };
    let spki = match candidates.as_slice() {
        [public] => {
            let facts = key_facts(session, *public, what)?;
            // An RSA private key shows its modulus: it must be the public object's.
            if let (Some(private_n), Some(public_n)) = (&private_facts.modulus, &facts.modulus)
                && private_n != public_n
            {
                return Err(CryptoError::KeyStore(format!(
                    "{what}: the public key object {} belongs to another key",
                    public_selector.describe()
                )));
            }
            spki_from_facts(&facts, what)?
        }
        [] => {
            // No public object: an RSA private key carries its modulus and public exponent.
            if private_facts.modulus.is_some() && private_facts.exponent.is_some() {
                spki_from_facts(private_facts, what)?
            } else {
                return Err(CryptoError::KeyStore(format!(
                    "{what} has no public key object on the token"
                )));
            }
        }
        more => {
            return Err(CryptoError::KeyStore(format!(
                "{what}: {} public key objects match it; give the objects distinct ids and add id= to the URI",
                more.len()
            )));
        }
    };
    PublicKey::from_spki_der(&spki, algorithm)
        .map_err(|e| CryptoError::KeyStore(format!("{what}: its public key is unusable: {e}")))
}

fn spki_from_facts(facts: &KeyFacts, what: &str) -> Result<Vec<u8>, CryptoError> {
    match (
        &facts.modulus,
        &facts.exponent,
        &facts.ec_params,
        &facts.ec_point,
    ) {
        (Some(n), Some(e), _, _) => Ok(rsa_spki(n, e)),
        (_, _, Some(params), Some(point)) => ec_spki(params, point).ok_or_else(|| {
            CryptoError::KeyStore(format!(
                "{what}: its public key has an unreadable CKA_EC_POINT"
            ))
        }),
        _ => Err(CryptoError::KeyStore(format!(
            "{what}: its public key object has no readable key value"
        ))),
    }
}

// ---------------------------------------------------------------------------------------------
// The signing key

struct SessionState {
    session: Session,
    private: ObjectHandle,
}

/// A private key on a PKCS#11 token. Usable from several threads: signing goes through one
/// logged-in session behind a mutex (re-opened once if the token closed it).
pub struct Pkcs11Key {
    algorithm: Algorithm,
    key_id: String,
    public_key: PublicKey,
    token: String,
    what: String,
    extractable: bool,
    slot: Slot,
    selector: Selector,
    pin: Option<Pin>,
    // Field order matters: the session closes before the module use is released (and possibly finalised).
    state: Mutex<SessionState>,
    module: Module,
}

impl fmt::Debug for Pkcs11Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pkcs11Key")
            .field("key_id", &self.key_id)
            .field("algorithm", &self.algorithm)
            .field("object", &self.what)
            .field("module", &self.module.display())
            .field("fingerprint", &self.public_key.fingerprint())
            .finish_non_exhaustive()
    }
}

impl Pkcs11Key {
    /// Opens the key `uri` names for `algorithm`: loads the module, finds the token, logs in, finds
    /// the private key and reads its public key. The key id defaults to the object label.
    pub fn open(
        uri: &str,
        algorithm: Algorithm,
        key_id: Option<&str>,
    ) -> Result<Self, CryptoError> {
        let uri = Pkcs11Uri::parse(uri)?;
        unsupported_on_pkcs11(algorithm)?;
        if uri.object.is_none() && uri.id.is_none() {
            return Err(uri_error("names no key: add object=<label> (and/or id=)"));
        }
        let pin = uri.pin()?;
        let module = Module::acquire(uri.module())?;
        let (slot, info) = find_token(&module, &uri)?;
        let token = info.label().to_string();
        let selector = Selector {
            label: uri.object.clone(),
            id: uri.id.clone(),
        };
        let session = open_session(&module, slot, &token, pin.as_ref(), false)?;
        let private = find_private_key(&session, &selector, &token)?;
        let object_name = selector.describe();
        let what = format!("PKCS#11 private key {object_name} on token {token:?}");
        let facts = key_facts(&session, private, &what)?;
        check_kind(&facts, algorithm, &what)?;
        let public_key = read_public_key(&session, &facts, &selector, algorithm, &what)?;
        let extractable = facts.extractable.unwrap_or(false);
        if extractable || facts.sensitive == Some(false) {
            tracing::warn!(
                token = %token,
                object = %object_name,
                "PKCS#11 private key is extractable or not sensitive: it can leave the token"
            );
        }
        let key_id = match key_id {
            Some(id) => id.to_string(),
            None => match (&uri.object, &facts.label) {
                (Some(label), _) => label.clone(),
                (None, Some(label)) if !label.is_empty() => label.clone(),
                _ => format!("id:{}", hex::encode(uri.id.as_deref().unwrap_or_default())),
            },
        };
        Ok(Pkcs11Key {
            algorithm,
            key_id,
            public_key,
            token,
            what,
            extractable,
            slot,
            selector,
            pin,
            state: Mutex::new(SessionState { session, private }),
            module,
        })
    }

    /// The label of the token the key is on.
    pub fn token_label(&self) -> &str {
        &self.token
    }

    /// Whether the token says the private key may leave it (CKA_EXTRACTABLE).
    pub fn is_extractable(&self) -> bool {
        self.extractable
    }

    fn reopen(&self) -> Result<SessionState, CryptoError> {
        let session = open_session(
            &self.module,
            self.slot,
            &self.token,
            self.pin.as_ref(),
            false,
        )?;
        let private = find_private_key(&session, &self.selector, &self.token)?;
        Ok(SessionState { session, private })
    }

    fn sign_on_token(&self, mechanism: &Mechanism, data: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match state.session.sign(mechanism, state.private, data) {
            Ok(sig) => Ok(sig),
            Err(P11Error::Pkcs11(
                RvError::SessionHandleInvalid
                | RvError::SessionClosed
                | RvError::UserNotLoggedIn
                | RvError::ObjectHandleInvalid
                | RvError::KeyHandleInvalid
                | RvError::DeviceRemoved
                | RvError::TokenNotPresent,
                _,
            )) => {
                tracing::info!(token = %self.token, "PKCS#11 session lost; opening a new one");
                *state = self.reopen()?;
                state
                    .session
                    .sign(mechanism, state.private, data)
                    .map_err(|e| self.sign_error(&e))
            }
            Err(e) => Err(self.sign_error(&e)),
        }
    }

    fn sign_error(&self, e: &P11Error) -> CryptoError {
        CryptoError::SigningFailed(format!("{}: {}", self.what, describe(e)))
    }
}

fn ed25519_unsupported() -> CryptoError {
    CryptoError::KeyStore(
        "ED25519 is unsupported on PKCS#11 (use RSA or ECDSA there, or an Ed25519 key file)".into(),
    )
}

fn unsupported_on_pkcs11(algorithm: Algorithm) -> Result<(), CryptoError> {
    match algorithm {
        Algorithm::Ed25519 => Err(ed25519_unsupported()),
        _ => Ok(()),
    }
}

fn check_kind(facts: &KeyFacts, algorithm: Algorithm, what: &str) -> Result<(), CryptoError> {
    let Some(kind) = token_key_kind(facts) else {
        let key_type = facts
            .key_type
            .map(|t| t.to_string())
            .unwrap_or_else(|| "untyped".into());
        return Err(CryptoError::KeyStore(format!(
            "{what} is a {key_type} key: signet signs on PKCS#11 with RSA and EC P-256/P-384 keys only"
        )));
    };
    check_key_fits(kind, algorithm, what)
}

impl SigningKey for Pkcs11Key {
    fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    fn key_id(&self) -> &str {
        &self.key_id
    }

    fn public_key(&self) -> &PublicKey {
        &self.public_key
    }

    fn sign(&self, payload: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let signature = match self.algorithm {
            Algorithm::RsaPkcs1Sha256 => {
                let hash = digest::digest(&digest::SHA256, payload);
                let mut digest_info = SHA256_DIGEST_INFO.to_vec();
                digest_info.extend_from_slice(hash.as_ref());
                self.sign_on_token(&Mechanism::RsaPkcs, &digest_info)?
            }
            Algorithm::RsaPssSha256 => {
                let hash = digest::digest(&digest::SHA256, payload);
                let params = PkcsPssParams {
                    hash_alg: MechanismType::SHA256,
                    mgf: PkcsMgfType::MGF1_SHA256,
                    s_len: 32.into(),
                };
                self.sign_on_token(&Mechanism::RsaPkcsPss(params), hash.as_ref())?
            }
            Algorithm::EcdsaP256Sha256 | Algorithm::EcdsaP384Sha384 => {
                let alg = if self.algorithm == Algorithm::EcdsaP256Sha256 {
                    &digest::SHA256
                } else {
                    &digest::SHA384
                };
                let hash = digest::digest(alg, payload);
                let raw = self.sign_on_token(&Mechanism::Ecdsa, hash.as_ref())?;
                ecdsa_raw_to_der(&raw).ok_or_else(|| {
                    CryptoError::SigningFailed(format!(
                        "{}: the token returned a {}-byte ECDSA signature",
                        self.what,
                        raw.len()
                    ))
                })?
            }
            Algorithm::Ed25519 => return Err(ed25519_unsupported()),
        };
        // A signature that does not verify means the public key read is not this private key's:
        // better to fail here than to publish signatures nobody can check.
        self.public_key.verify(payload, &signature).map_err(|_| {
            CryptoError::SigningFailed(format!(
                "{}: the token's signature does not verify with the public key read from the token \
                 (do the public and private key objects belong together?)",
                self.what
            ))
        })?;
        Ok(signature)
    }
}

// ---------------------------------------------------------------------------------------------
// Key generation on a token

/// A key pair generated on a token.
#[derive(Debug)]
pub struct TokenKey {
    /// The public key, bound to the algorithm asked for.
    pub public_key: PublicKey,
    /// The CKA_ID given to both objects (random, 8 bytes).
    pub id: Vec<u8>,
    /// A URI naming the key, without any PIN: add `&pin-source=file:/path` to use it.
    pub uri: String,
}

/// Generates a key pair on the token labelled `token_label` (RSA 3072 for the RSA algorithms, EC
/// P-256 or P-384 for ECDSA): a private key that is sensitive and never extractable, and its
/// public key, both labelled `object_label` with the same random CKA_ID. Refuses when the token
/// already holds a key with that label.
pub fn generate_on_token(
    module: &Path,
    token_label: &str,
    pin: &str,
    object_label: &str,
    algorithm: Algorithm,
) -> Result<TokenKey, CryptoError> {
    unsupported_on_pkcs11(algorithm)?;
    if object_label.is_empty() {
        return Err(CryptoError::KeyStore(
            "the key label must not be empty".into(),
        ));
    }
    let module_use = Module::acquire(module)?;
    let uri = Pkcs11Uri {
        token: Some(token_label.to_string()),
        object: None,
        id: None,
        serial: None,
        manufacturer: None,
        model: None,
        slot_id: None,
        module_path: Some(module.to_path_buf()),
        pin: None,
    };
    let (slot, _) = find_token(&module_use, &uri)?;
    let pin = Pin::new(pin.to_string());
    let session = open_session(&module_use, slot, token_label, Some(&pin), true)?;
    let what = format!("PKCS#11 key labelled {object_label:?} on token {token_label:?}");
    let existing = Selector {
        label: Some(object_label.to_string()),
        id: None,
    };
    for class in [ObjectClass::PRIVATE_KEY, ObjectClass::PUBLIC_KEY] {
        let found = session
            .find_objects(&existing.template(class))
            .map_err(|e| CryptoError::KeyStore(format!("{what}: {}", describe(&e))))?;
        if !found.is_empty() {
            return Err(CryptoError::KeyStore(format!(
                "token {token_label:?} already holds a key labelled {object_label:?}"
            )));
        }
    }
    let mut id = vec![0u8; 8];
    aws_lc_rs::rand::fill(&mut id)
        .map_err(|_| CryptoError::KeyStore("no randomness for the key id".into()))?;
    let label = Attribute::Label(object_label.as_bytes().to_vec());
    let common_public = [
        Attribute::Token(true),
        Attribute::Private(false),
        Attribute::Verify(true),
        label.clone(),
        Attribute::Id(id.clone()),
    ];
    let mut private_template = vec![
        Attribute::Token(true),
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::Sign(true),
        Attribute::Derive(false),
        label,
        Attribute::Id(id.clone()),
    ];
    let (mechanism, mut public_template) = match algorithm {
        Algorithm::RsaPssSha256 | Algorithm::RsaPkcs1Sha256 => {
            private_template.extend([Attribute::Decrypt(false), Attribute::Unwrap(false)]);
            (
                Mechanism::RsaPkcsKeyPairGen,
                vec![
                    Attribute::ModulusBits(3072.into()),
                    Attribute::PublicExponent(vec![0x01, 0x00, 0x01]),
                    Attribute::Encrypt(false),
                    Attribute::Wrap(false),
                ],
            )
        }
        Algorithm::EcdsaP256Sha256 | Algorithm::EcdsaP384Sha384 => {
            let curve = if algorithm == Algorithm::EcdsaP256Sha256 {
                asn1::OID_P256
            } else {
                asn1::OID_P384
            };
            (
                Mechanism::EccKeyPairGen,
                vec![Attribute::EcParams(asn1::encode(asn1::TAG_OID, curve))],
            )
        }
        Algorithm::Ed25519 => return Err(ed25519_unsupported()),
    };
    public_template.extend(common_public);
    let (_, private) = session
        .generate_key_pair(&mechanism, &public_template, &private_template)
        .map_err(|e| {
            CryptoError::KeyStore(format!("{what}: key generation failed: {}", describe(&e)))
        })?;
    let selector = Selector {
        label: Some(object_label.to_string()),
        id: Some(id.clone()),
    };
    let facts = key_facts(&session, private, &what)?;
    let public_key = read_public_key(&session, &facts, &selector, algorithm, &what)?;
    let uri = format!(
        "pkcs11:token={};object={};id={}?module-path={}",
        percent_encode(token_label.as_bytes(), false),
        percent_encode(object_label.as_bytes(), false),
        percent_encode(&id, false),
        percent_encode(module.as_os_str().as_encoded_bytes(), true),
    );
    drop(session);
    drop(module_use);
    Ok(TokenKey {
        public_key,
        id,
        uri,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::signature::{self as lc, EcdsaKeyPair, KeyPair};

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

    #[test]
    fn raw_ecdsa_signatures_become_der_that_verifies() {
        let kp = EcdsaKeyPair::generate(&lc::ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
        let spki = aws_lc_rs::encoding::AsDer::as_der(kp.public_key()).unwrap();
        let key = PublicKey::from_spki_der(spki.as_ref(), Algorithm::EcdsaP256Sha256).unwrap();
        for i in 0..64u8 {
            let msg = [i; 10];
            let raw = kp
                .sign(&aws_lc_rs::rand::SystemRandom::new(), &msg)
                .unwrap();
            assert_eq!(raw.as_ref().len(), 64);
            let der = ecdsa_raw_to_der(raw.as_ref()).unwrap();
            key.verify(&msg, &der).unwrap();
        }
        // Leading zeros are stripped and a high bit gets a 0x00 pad.
        let mut raw = vec![0u8; 64];
        raw[1] = 0x80;
        raw[63] = 1;
        let der = ecdsa_raw_to_der(&raw).unwrap();
        assert_eq!(&der[..5], &[0x30, 0x25, 0x02, 0x20, 0x00]);
        assert_eq!(&der[der.len() - 3..], &[0x02, 0x01, 0x01]);
        assert!(ecdsa_raw_to_der(&[1, 2, 3]).is_none());
    }

    #[test]
    fn ec_point_and_rsa_components_become_spki() {
        let kp = EcdsaKeyPair::generate(&lc::ECDSA_P256_SHA256_ASN1_SIGNING).unwrap();
        let point = kp.public_key().as_ref();
        let params = asn1::encode(asn1::TAG_OID, asn1::OID_P256);
        let expected = aws_lc_rs::encoding::AsDer::as_der(kp.public_key()).unwrap();
        let wrapped = asn1::encode(asn1::TAG_OCTET_STRING, point);
        assert_eq!(ec_spki(&params, &wrapped).unwrap(), expected.as_ref());
        assert_eq!(ec_spki(&params, point).unwrap(), expected.as_ref());
        assert!(ec_spki(&params, &[0x02, 1, 2]).is_none());

        let rsa = lc::RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
        let n = rsa
            .public_key()
            .modulus()
            .big_endian_without_leading_zero()
            .to_vec();
        let e = rsa
            .public_key()
            .exponent()
            .big_endian_without_leading_zero()
            .to_vec();
        let expected = aws_lc_rs::encoding::AsDer::as_der(rsa.public_key()).unwrap();
        assert_eq!(rsa_spki(&n, &e), expected.as_ref());
    }

    #[test]
    fn digest_info_prefix_is_sha256() {
        // SEQUENCE { SEQUENCE { OID 2.16.840.1.101.3.4.2.1, NULL }, OCTET STRING (32 bytes) }
        assert_eq!(SHA256_DIGEST_INFO.len() + 32, 51);
        assert_eq!(SHA256_DIGEST_INFO[1] as usize, 51 - 2);
    }

    #[test]
    fn missing_module_is_named() {
        let err = Pkcs11Key::open(
            "pkcs11:token=t;object=o?module-path=/nonexistent/libp11.so&pin-value=1",
            Algorithm::EcdsaP256Sha256,
            None,
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("/nonexistent/libp11.so") && err.contains("not found"),
            "{err}"
        );
        let err = Pkcs11Key::open("pkcs11:token=t;object=o", Algorithm::Ed25519, None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("unsupported on PKCS#11"), "{err}");
    }
}
