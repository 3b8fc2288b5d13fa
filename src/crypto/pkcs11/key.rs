//! `Pkcs11Key`: a private key on a token, opened from its URI, signing through one logged-in
//! session. The payload is hashed in software and the hash is signed on the token (CKM_RSA_PKCS
//! over a DigestInfo, CKM_RSA_PKCS_PSS with SHA-256/MGF1-SHA-256/salt 32, CKM_ECDSA); ECDSA
//! signatures come back as raw `r || s` and are re-encoded as ASN.1 DER.

use std::fmt;
use std::sync::Mutex;

use aws_lc_rs::digest;
use cryptoki::error::{Error as P11Error, RvError};
use cryptoki::mechanism::rsa::{PkcsMgfType, PkcsPssParams};
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::ObjectHandle;
use cryptoki::session::Session;
use cryptoki::slot::Slot;

use super::module::Module;
use super::objects::{
    KeyFacts, Selector, find_private_key, key_facts, read_public_key, token_key_kind,
};
use super::session::{find_token, open_session};
use super::uri::{Pin, Pkcs11Uri, uri_error};
use super::{describe, ed25519_unsupported, unsupported_on_pkcs11};
use crate::crypto::der;
use crate::crypto::signing::{SigningKey, check_key_fits, resolve_algorithm};
use crate::crypto::{Algorithm, CryptoError, PublicKey};

/// DigestInfo prefix for SHA-256 (RFC 8017 section 9.2, note 1).
const SHA256_DIGEST_INFO: &[u8] = &[
    0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05,
    0x00, 0x04, 0x20,
];

/// The logged-in session a key signs through, and its private key handle in that session.
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
        Self::open_inferred(uri, Some(algorithm), key_id)
    }

    /// Like [`Pkcs11Key::open`], with the algorithm inferred from the token key's type when
    /// `asked` is `None` (an EC key by its curve; an RSA key needs it named).
    pub fn open_inferred(
        uri: &str,
        asked: Option<Algorithm>,
        key_id: Option<&str>,
    ) -> Result<Self, CryptoError> {
        let uri = Pkcs11Uri::parse(uri)?;
        if let Some(algorithm) = asked {
            unsupported_on_pkcs11(algorithm)?;
        }
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
        let algorithm = match (asked, token_key_kind(&facts)) {
            (Some(algorithm), _) => algorithm,
            (None, Some(kind)) => resolve_algorithm(kind, None, &what)?,
            // A type signet cannot use: `check_kind` names it.
            (None, None) => Algorithm::EcdsaP256Sha256,
        };
        unsupported_on_pkcs11(algorithm)?;
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

/// Checks that the token key can sign `algorithm`, naming its CKA_KEY_TYPE when signet cannot use
/// that type at all.
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

/// Re-encodes a raw ECDSA signature `r || s` as an ASN.1 DER `Ecdsa-Sig-Value`.
fn ecdsa_raw_to_der(raw: &[u8]) -> Option<Vec<u8>> {
    if raw.is_empty() || !raw.len().is_multiple_of(2) {
        return None;
    }
    let (r, s) = raw.split_at(raw.len() / 2);
    Some(der::sequence(&[
        &der::unsigned_integer(r),
        &der::unsigned_integer(s),
    ]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::signature::{self as lc, EcdsaKeyPair, KeyPair};

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
