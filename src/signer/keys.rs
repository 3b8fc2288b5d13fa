//! The signing keys of the rules, opened once and kept: reopening a PKCS#11 key would log in again
//! (and, for the last key of a module, reload the module), so a key is opened the first time a rule
//! names it and lives as long as the signer.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::crypto::{Algorithm, SigningKey, open_signing_key};

use super::SignerError;
use super::rules::CompiledRule;

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
        let key = open_signing_key(&spec.0, spec.1, spec.2.as_deref()).map_err(|cause| {
            SignerError::Key {
                rule: rule.name.clone(),
                reference: redact_reference(&spec.0),
                cause,
            }
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

    #[test]
    fn pins_never_reach_messages() {
        assert_eq!(
            redact_reference("pkcs11:token=a;object=b?module-path=/m.so&pin-value=1234"),
            "pkcs11:token=a;object=b?module-path=/m.so&pin-value=<redacted>"
        );
        assert_eq!(redact_reference("file:/k.pem"), "file:/k.pem");
    }
}
