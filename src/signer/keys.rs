//! The signing keys of the rules, opened once and kept: reopening a PKCS#11 key would log in again
//! (and, for the last key of a module, reload the module), so a key is opened the first time a rule
//! names it and lives as long as the signer.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use crate::crypto::{Algorithm, CryptoError, SigningKey, open_signing_key};

use super::SignerError;
use super::rules::CompiledRule;

/// `pkcs11:` attributes a SigningRule may not carry: which shared library the signer loads into
/// its own process, and the token's PIN. Rules come from the cluster; whoever may write one
/// must not be able to make the signer load an arbitrary `.so` or log in with a PIN of their
/// choosing. Both come from the signer's own flags ([`Pkcs11Settings`]).
pub const RULE_FORBIDDEN_PKCS11_ATTRIBUTES: [&str; 4] =
    ["module-path", "module-name", "pin-value", "pin-source"];

/// The first attribute of `RULE_FORBIDDEN_PKCS11_ATTRIBUTES` a `pkcs11:` reference names, if
/// any (attribute names compared case-insensitively, in the path or the query); `endpoint` for a
/// KMS reference naming its endpoint (see `kms_rule_endpoint`).
pub fn forbidden_rule_attribute(reference: &str) -> Option<&'static str> {
    let reference = reference.trim();
    if kms_rule_endpoint(reference) {
        return Some("endpoint");
    }
    let rest = reference
        .get(..7)
        .filter(|scheme| scheme.eq_ignore_ascii_case("pkcs11:"))
        .and_then(|_| reference.get(7..))?;
    rest.split([';', '?', '&']).find_map(|attribute| {
        let name = attribute.split('=').next().unwrap_or_default().trim();
        RULE_FORBIDDEN_PKCS11_ATTRIBUTES
            .into_iter()
            .find(|forbidden| forbidden.eq_ignore_ascii_case(name))
    })
}

/// Whether a cloud KMS reference names its endpoint (`awskms://HOST/...`, `alikms://...&endpoint=`).
/// A rule may not: the signer would send requests carrying its cloud session token to a host the
/// rule's author chose. The endpoint of a rule's key comes from the signer's environment
/// (`AWS_ENDPOINT_URL_KMS`, `SIGNET_ALIBABA_KMS_ENDPOINT`); `signet sign --key` may name one.
pub fn kms_rule_endpoint(reference: &str) -> bool {
    let lower = reference.trim().to_ascii_lowercase();
    if let Some(rest) = lower.strip_prefix("awskms://") {
        return !rest.starts_with('/');
    }
    if let Some(rest) = lower.strip_prefix("alikms://") {
        let query = rest.split_once('?').map_or("", |(_, q)| q);
        return query.split('&').any(|p| p.starts_with("endpoint="));
    }
    false
}

/// The one line saying why a rule's key reference is refused.
pub fn forbidden_attribute_message(attribute: &str) -> String {
    if attribute == "endpoint" {
        return "SigningRule key.ref may not name a KMS endpoint: the signer's environment sets it (AWS_ENDPOINT_URL_KMS, SIGNET_ALIBABA_KMS_ENDPOINT)".to_string();
    }
    format!(
        "SigningRule key.ref may not name {attribute}: the PKCS#11 module and PIN come from the signer's flags (--pkcs11-module, --pkcs11-pin-file)"
    )
}

/// The PKCS#11 module and PIN file of the signer (flags `--pkcs11-module`, `--pkcs11-pin-file`),
/// added to every `pkcs11:` reference of a rule.
#[derive(Clone, Debug, Default)]
pub struct Pkcs11Settings {
    /// The module to load; the crate's default module when absent.
    pub module: Option<PathBuf>,
    /// The file holding the user PIN.
    pub pin_file: Option<PathBuf>,
}

/// Set once by the process (`signet signer`) before keys are opened. Process-wide because the
/// key cache is built by the engine, whose options do not carry it yet.
static PKCS11_SETTINGS: OnceLock<Pkcs11Settings> = OnceLock::new();

/// Records the signer's PKCS#11 settings; a second call is ignored (returns false).
pub fn set_pkcs11_settings(settings: Pkcs11Settings) -> bool {
    PKCS11_SETTINGS.set(settings).is_ok()
}

/// The reference to open for a rule: refused when it names a forbidden attribute; a `pkcs11:`
/// reference gains the signer's module and PIN file.
pub fn effective_reference(reference: &str) -> Result<String, CryptoError> {
    if let Some(attribute) = forbidden_rule_attribute(reference) {
        return Err(CryptoError::KeyStore(forbidden_attribute_message(
            attribute,
        )));
    }
    let trimmed = reference.trim();
    let is_pkcs11 = trimmed
        .get(..7)
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case("pkcs11:"));
    if !is_pkcs11 {
        return Ok(reference.to_string());
    }
    let settings = PKCS11_SETTINGS.get().cloned().unwrap_or_default();
    let mut query = Vec::new();
    if let Some(module) = &settings.module {
        query.push(format!("module-path={}", encode(&module.to_string_lossy())));
    }
    if let Some(pin) = &settings.pin_file {
        query.push(format!(
            "pin-source=file:{}",
            encode(&pin.to_string_lossy())
        ));
    }
    if query.is_empty() {
        return Ok(trimmed.to_string());
    }
    let joiner = if trimmed.contains('?') { '&' } else { '?' };
    Ok(format!("{trimmed}{joiner}{}", query.join("&")))
}

/// Percent-encodes what RFC 7512 does not allow in a query value (`/` is kept).
fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// What identifies one opened key: its reference, algorithm and id.
type KeySpec = (String, Algorithm, Option<String>);

/// Keys by (reference, algorithm, id).
#[derive(Default)]
pub struct KeyCache {
    keys: Mutex<HashMap<KeySpec, Arc<dyn SigningKey>>>,
}

impl KeyCache {
    /// The key of `rule`, opened now if it was not yet. Opening may block (a PKCS#11 login), so
    /// call this from a blocking context.
    pub fn key_for(&self, rule: &CompiledRule) -> Result<Arc<dyn SigningKey>, SignerError> {
        let spec = (
            rule.key.reference.clone(),
            rule.algorithm,
            rule.key.id.clone(),
        );
        // A poisoned lock means a panic elsewhere mid-insert; the map itself stays usable.
        let mut keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(key) = keys.get(&spec) {
            return Ok(Arc::clone(key));
        }
        let key = effective_reference(&spec.0)
            .and_then(|reference| open_signing_key(&reference, spec.1, spec.2.as_deref()))
            .map_err(|cause| SignerError::Key {
                rule: rule.name.clone(),
                reference: redact_reference(&spec.0),
                cause,
            })?;
        keys.insert(spec, Arc::clone(&key));
        Ok(key)
    }

    /// The key of `rule` if it is already open (never blocks on opening).
    pub fn cached(&self, rule: &CompiledRule) -> Option<Arc<dyn SigningKey>> {
        let spec = (
            rule.key.reference.clone(),
            rule.algorithm,
            rule.key.id.clone(),
        );
        let keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        keys.get(&spec).cloned()
    }

    /// [`KeyCache::key_for`] off the async runtime's threads.
    pub async fn key_for_async(
        self: &Arc<Self>,
        rule: &Arc<CompiledRule>,
    ) -> Result<Arc<dyn SigningKey>, SignerError> {
        let cache = Arc::clone(self);
        let rule = Arc::clone(rule);
        tokio::task::spawn_blocking(move || cache.key_for(&rule))
            .await
            .map_err(|e| SignerError::Internal(format!("key opening task failed: {e}")))?
    }
}

/// A key reference fit for messages: a `pkcs11:` URI may carry `pin-value`, which is cut off.
pub fn redact_reference(reference: &str) -> String {
    let lower = reference.to_ascii_lowercase();
    match lower.find("pin-value") {
        Some(at) => format!("{}pin-value=<redacted>", &reference[..at]),
        None => reference.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Review item 11a: a rule from the cluster may not choose the module the signer loads nor
    /// the PIN it logs in with.
    #[test]
    fn rules_may_not_name_modules_or_pins() {
        for (reference, attribute) in [
            (
                "pkcs11:token=a;object=b?module-path=/tmp/evil.so",
                "module-path",
            ),
            ("pkcs11:token=a;object=b?Module-Name=evil", "module-name"),
            ("PKCS11:token=a;object=b?pin-value=1234", "pin-value"),
            (
                "pkcs11:token=a;object=b?x-a=1&pin-source=file:/etc/pin",
                "pin-source",
            ),
            (
                "pkcs11:token=a;module-path=/tmp/evil.so;object=b",
                "module-path",
            ),
        ] {
            assert_eq!(
                forbidden_rule_attribute(reference),
                Some(attribute),
                "{reference}"
            );
            let err = effective_reference(reference).unwrap_err().to_string();
            assert!(
                err.contains(attribute) && !err.contains("1234") && !err.contains('\n'),
                "{err}"
            );
        }
        for fine in [
            "pkcs11:token=a;object=b",
            "file:/k/pin-value.pem",
            "/keys/module-path.pem",
        ] {
            assert_eq!(forbidden_rule_attribute(fine), None, "{fine}");
            assert!(effective_reference(fine).is_ok());
        }
    }

    #[test]
    fn rules_may_not_name_kms_endpoints() {
        for reference in [
            "awskms://evil.example.com/alias/release",
            "AWSKMS://127.0.0.1:4566/alias/release",
            "alikms://key-1?region=cn-hangzhou&endpoint=evil.example.com",
        ] {
            assert_eq!(
                forbidden_rule_attribute(reference),
                Some("endpoint"),
                "{reference}"
            );
            let err = effective_reference(reference).unwrap_err().to_string();
            assert!(
                err.contains("AWS_ENDPOINT_URL_KMS") && !err.contains('\n'),
                "{err}"
            );
        }
        for fine in [
            "awskms:///alias/release",
            "alikms://key-1/v1?region=cn-hangzhou",
        ] {
            assert_eq!(forbidden_rule_attribute(fine), None, "{fine}");
        }
    }

    #[test]
    fn pins_never_reach_messages() {
        assert_eq!(
            redact_reference("pkcs11:token=a;object=b?module-path=/m.so&pin-value=1234"),
            "pkcs11:token=a;object=b?module-path=/m.so&pin-value=<redacted>"
        );
        assert_eq!(redact_reference("file:/k.pem"), "file:/k.pem");
    }
}
