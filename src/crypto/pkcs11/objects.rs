//! Key objects on a token: selecting them by label and id, reading their attributes, and
//! rebuilding the public key (as SPKI) from the public key object or the RSA private key.

use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::Session;

use super::describe;
use super::uri::percent_encode;
use crate::crypto::der::{self, KeyKind};
use crate::crypto::{Algorithm, CryptoError, PublicKey};

/// How the key objects are selected: label and/or CKA_ID.
#[derive(Clone)]
pub(super) struct Selector {
    pub(super) label: Option<String>,
    pub(super) id: Option<Vec<u8>>,
}

impl Selector {
    pub(super) fn template(&self, class: ObjectClass) -> Vec<Attribute> {
        let mut template = vec![Attribute::Class(class)];
        if let Some(label) = &self.label {
            template.push(Attribute::Label(label.as_bytes().to_vec()));
        }
        if let Some(id) = &self.id {
            template.push(Attribute::Id(id.clone()));
        }
        template
    }

    pub(super) fn describe(&self) -> String {
        match (&self.label, &self.id) {
            (Some(l), Some(id)) => format!("labelled {l:?} with id {}", percent_encode(id, false)),
            (Some(l), None) => format!("labelled {l:?}"),
            (None, Some(id)) => format!("with id {}", percent_encode(id, false)),
            (None, None) => "(unnamed)".to_string(),
        }
    }
}

pub(super) fn find_private_key(
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
pub(super) struct KeyFacts {
    pub(super) key_type: Option<KeyType>,
    pub(super) id: Option<Vec<u8>>,
    pub(super) label: Option<String>,
    pub(super) ec_params: Option<Vec<u8>>,
    pub(super) ec_point: Option<Vec<u8>>,
    pub(super) modulus: Option<Vec<u8>>,
    pub(super) exponent: Option<Vec<u8>>,
    pub(super) extractable: Option<bool>,
    pub(super) sensitive: Option<bool>,
}

pub(super) fn key_facts(
    session: &Session,
    object: ObjectHandle,
    what: &str,
) -> Result<KeyFacts, CryptoError> {
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
pub(super) fn token_key_kind(facts: &KeyFacts) -> Option<KeyKind> {
    let key_type = facts.key_type?;
    if key_type == KeyType::RSA {
        Some(KeyKind::Rsa)
    } else if key_type == KeyType::EC {
        let params = facts.ec_params.as_deref().unwrap_or_default();
        // CKA_EC_PARAMS is the curve OID alone: anything after it means a curve signet does not know.
        Some(match der::element(params) {
            Some((der::TAG_OID, _, [])) => der::curve_kind(params),
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
    let pkcs1 = der::sequence(&[
        &der::unsigned_integer(modulus),
        &der::unsigned_integer(exponent),
    ]);
    der::rsa_pkcs1_to_spki(&pkcs1)
}

/// SPKI DER for an EC public key from CKA_EC_PARAMS (the curve OID, DER) and CKA_EC_POINT (a DER
/// OCTET STRING wrapping the uncompressed point, or the bare point as some tokens give it).
fn ec_spki(params: &[u8], point: &[u8]) -> Option<Vec<u8>> {
    let point = match der::element(point) {
        Some((der::TAG_OCTET_STRING, inner, [])) if inner.first() == Some(&0x04) => inner,
        _ if point.first() == Some(&0x04) && !point.len().is_multiple_of(2) => point,
        _ => return None,
    };
    let alg_id = [&der::encode(der::TAG_OID, der::OID_EC)[..], params].concat();
    Some(der::spki(&alg_id, point))
}

/// Reads the public key of the private key described by `private_facts`: from the matching public key object, or for
/// RSA from the private key's own public attributes when the token holds no public key object.
pub(super) fn read_public_key(
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

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::signature::{self as lc, EcdsaKeyPair, KeyPair};

    #[test]
    fn ec_point_and_rsa_components_become_spki() {
        let kp = EcdsaKeyPair::generate(&lc::ECDSA_P256_SHA256_ASN1_SIGNING).unwrap();
        let point = kp.public_key().as_ref();
        let params = der::encode(der::TAG_OID, der::OID_P256);
        let expected = aws_lc_rs::encoding::AsDer::as_der(kp.public_key()).unwrap();
        let wrapped = der::encode(der::TAG_OCTET_STRING, point);
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
}
