//! Generating a key pair on a token, the private key never extractable.

use std::path::Path;

use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, ObjectClass};

use super::module::Module;
use super::objects::{Selector, key_facts, read_public_key};
use super::session::{find_token, open_session};
use super::uri::{Pin, Pkcs11Uri, percent_encode};
use super::{describe, ed25519_unsupported, unsupported_on_pkcs11};
use crate::crypto::der;
use crate::crypto::{Algorithm, CryptoError, PublicKey};

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
    generate_on_token_sized(module, token_label, pin, object_label, algorithm, None)
}

/// [`generate_on_token`] with the RSA size `bits` (2048, 3072 or 4096; default 3072), which must
/// be absent for ECDSA. A Notation RSA key has 2048 bits (Notary signs RSA-3072 with PS384).
pub fn generate_on_token_sized(
    module: &Path,
    token_label: &str,
    pin: &str,
    object_label: &str,
    algorithm: Algorithm,
    bits: Option<u32>,
) -> Result<TokenKey, CryptoError> {
    unsupported_on_pkcs11(algorithm)?;
    let modulus_bits: u64 = match (algorithm.is_rsa(), bits) {
        (true, None) => 3072,
        (true, Some(bits @ (2048 | 3072 | 4096))) => bits.into(),
        (true, Some(other)) => {
            return Err(CryptoError::KeyStore(format!(
                "RSA key size {other} is not offered (choose 2048, 3072 or 4096)"
            )));
        }
        (false, Some(bits)) => {
            return Err(CryptoError::KeyStore(format!(
                "a key size ({bits} bits) applies to RSA keys only, not to {algorithm}"
            )));
        }
        (false, None) => 0,
    };
    if object_label.is_empty() {
        return Err(CryptoError::KeyStore(
            "the key label must not be empty".into(),
        ));
    }
    let module_use = Module::acquire(module)?;
    let uri = Pkcs11Uri::for_token(token_label, module);
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
                    Attribute::ModulusBits(modulus_bits.into()),
                    Attribute::PublicExponent(vec![0x01, 0x00, 0x01]),
                    Attribute::Encrypt(false),
                    Attribute::Wrap(false),
                ],
            )
        }
        Algorithm::EcdsaP256Sha256 | Algorithm::EcdsaP384Sha384 => {
            let curve = if algorithm == Algorithm::EcdsaP256Sha256 {
                der::OID_P256
            } else {
                der::OID_P384
            };
            (
                Mechanism::EccKeyPairGen,
                vec![Attribute::EcParams(der::encode(der::TAG_OID, curve))],
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
