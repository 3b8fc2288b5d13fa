//! Loaded PKCS#11 modules: one initialised context per library per process, however many keys
//! use it, finalised when the last use is dropped; and which PIN logged the user in to each slot.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as P11Error, RvError};
use cryptoki::slot::Slot;

use super::uri::Pin;
use super::{DEFAULT_PKCS11_MODULE, describe};
use crate::crypto::CryptoError;

/// One loaded module in the process-wide registry.
struct ModuleEntry {
    ctx: Pkcs11,
    users: usize,
    /// Whether signet initialised the library (and so finalises it).
    owned: bool,
    /// Slot id -> tag of the PIN that logged the user in there.
    logins: BTreeMap<u64, [u8; 32]>,
}

/// Loaded modules by canonical path: C_Initialize and C_Finalize are per process, not per key.
static MODULES: Mutex<BTreeMap<PathBuf, ModuleEntry>> = Mutex::new(BTreeMap::new());

/// A use of a loaded, initialised PKCS#11 module; the last use dropped finalises it.
pub(super) struct Module {
    path: PathBuf,
    pub(super) ctx: Pkcs11,
}

impl Module {
    /// Loads and initialises the module at `path`, or shares the one already loaded.
    pub(super) fn acquire(path: &Path) -> Result<Module, CryptoError> {
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

    /// The module path, for messages.
    pub(super) fn display(&self) -> String {
        self.path.display().to_string()
    }

    /// Remembers which PIN logged the user in to `slot`, as a tag (never the PIN).
    pub(super) fn record_login(&self, slot: Slot, pin: &Pin) {
        let mut modules = MODULES.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(entry) = modules.get_mut(&self.path) {
            entry.logins.insert(slot.id(), pin.tag);
        }
    }

    /// Whether `pin` is the PIN this process logged in to `slot` with (`None`: not known).
    pub(super) fn login_matches(&self, slot: Slot, pin: &Pin) -> Option<bool> {
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
