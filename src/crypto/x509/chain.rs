//! The Notary Project's rules for a code-signing certificate chain (notation-core-go
//! `ValidateCodeSigningCertChain`, plus the stricter points: a CA's basicConstraints must
//! be critical, a leaf's EKU must not be anyExtendedKeyUsage, RSA keys have at least 2048 bits and
//! EC keys are on P-256, P-384 or P-521 everywhere in the chain).

use super::certificate::{Certificate, KeySpec};
use super::{X509Error, rfc3339};

const KU_DIGITAL_SIGNATURE: u16 = 1;
const KU_CERT_SIGN: u16 = 1 << 5;
/// Key usages a code-signing leaf must not have, with their names.
const LEAF_FORBIDDEN: [(u16, &str); 7] = [
    (1 << 2, "keyEncipherment"),
    (1 << 3, "dataEncipherment"),
    (1 << 4, "keyAgreement"),
    (1 << 5, "keyCertSign"),
    (1 << 6, "cRLSign"),
    (1 << 7, "encipherOnly"),
    (1 << 8, "decipherOnly"),
];

/// Checks `chain` (leaf first, then each issuer, ending with a self-signed root; or one
/// self-signed leaf) under the Notary rules, every certificate valid at `at` (Unix seconds).
/// Says which certificate breaks which rule.
pub fn validate_code_signing_chain(chain: &[Certificate], at: i64) -> Result<(), X509Error> {
    validate_chain_with(chain, (at, at), &|_| false)
}

/// [`validate_code_signing_chain`] with every certificate valid through the whole `during`
/// window (`(from, to)`, Unix seconds: a single instant, or the span an RFC 3161 timestamp
/// places the signing in), skipping the self-signature check of a root for which
/// `known_self_signed` says its signature was already verified (a trust anchor, checked once when
/// its store was built: the bytes are the same, so the signature is too).
pub(crate) fn validate_chain_with(
    chain: &[Certificate],
    during: (i64, i64),
    known_self_signed: &dyn Fn(&Certificate) -> bool,
) -> Result<(), X509Error> {
    let Some(leaf) = chain.first() else {
        return Err(X509Error::Rule(
            "the certificate chain is empty".to_string(),
        ));
    };
    let last = chain.len() - 1;
    for (i, cert) in chain.iter().enumerate() {
        check_validity(cert, during)?;
        check_key(cert)?;
        if i == last {
            if !cert.is_self_issued() {
                return Err(X509Error::Rule(format!(
                    "the chain must end with a self-signed root, but {:?} is issued by another certificate",
                    cert.subject()
                )));
            }
            if !known_self_signed(cert) {
                cert.check_issued_by(cert).map_err(X509Error::Rule)?;
            }
        } else {
            if cert.is_self_issued() && cert.check_issued_by(cert).is_ok() {
                let role = if i == 0 { "leaf" } else { "intermediate" };
                return Err(X509Error::Rule(format!(
                    "{role} certificate {:?} is self-signed in a chain of {}",
                    cert.subject(),
                    chain.len()
                )));
            }
            cert.check_issued_by(&chain[i + 1])
                .map_err(X509Error::Rule)?;
        }
        if i == 0 {
            check_leaf(leaf)?;
        } else {
            check_ca(cert, i - 1)?;
        }
    }
    Ok(())
}

/// Whether `cert` is valid through `(from, to)`; the error names the instant that falls outside.
pub(super) fn check_validity(cert: &Certificate, (from, to): (i64, i64)) -> Result<(), X509Error> {
    let (state, at) = if from < cert.not_before() {
        ("not yet valid", from)
    } else if to > cert.not_after() {
        ("expired", to)
    } else {
        return Ok(());
    };
    Err(X509Error::Validity {
        subject: cert.subject().to_string(),
        state,
        at: rfc3339(at),
        not_before: rfc3339(cert.not_before()),
        not_after: rfc3339(cert.not_after()),
    })
}

pub(super) fn check_key(cert: &Certificate) -> Result<(), X509Error> {
    match cert.key_spec() {
        KeySpec::Rsa(bits) if bits < 2048 => Err(X509Error::Rule(format!(
            "certificate {:?} has an RSA key of {bits} bits (at least 2048 are required)",
            cert.subject()
        ))),
        KeySpec::Unsupported => Err(X509Error::Rule(format!(
            "certificate {:?} has a key that is neither RSA nor EC on P-256, P-384 or P-521",
            cert.subject()
        ))),
        _ => Ok(()),
    }
}

fn check_leaf(cert: &Certificate) -> Result<(), X509Error> {
    let subject = cert.subject();
    let rule = |text: String| {
        Err(X509Error::Rule(format!(
            "leaf certificate {subject:?}: {text}"
        )))
    };
    if let Some((_, true, _)) = cert.basic_constraints {
        return rule("basicConstraints must not mark it a CA".into());
    }
    match cert.key_usage {
        None => return rule("keyUsage is missing (digitalSignature is required)".into()),
        Some((false, _)) => return rule("keyUsage must be critical".into()),
        Some((true, flags)) => {
            if flags & KU_DIGITAL_SIGNATURE == 0 {
                return rule("keyUsage lacks digitalSignature".into());
            }
            let extra: Vec<&str> = LEAF_FORBIDDEN
                .iter()
                .filter(|(bit, _)| flags & bit != 0)
                .map(|(_, name)| *name)
                .collect();
            if !extra.is_empty() {
                return rule(format!(
                    "keyUsage must be digitalSignature only, but has {}",
                    extra.join(", ")
                ));
            }
        }
    }
    if let Some(eku) = cert.eku {
        let forbidden = [
            (eku.server_auth, "serverAuth"),
            (eku.client_auth, "clientAuth"),
            (eku.any, "anyExtendedKeyUsage"),
            (eku.email_protection, "emailProtection"),
            (eku.time_stamping, "timeStamping"),
            (eku.ocsp_signing, "OCSPSigning"),
        ];
        if let Some((_, name)) = forbidden.iter().find(|(present, _)| *present) {
            return rule(format!(
                "extendedKeyUsage must be absent or codeSigning, but has {name}"
            ));
        }
    }
    match cert.key_spec() {
        KeySpec::Rsa(2048 | 3072 | 4096) | KeySpec::Ec(_) => Ok(()),
        other => rule(format!(
            "its {other} key is not a Notation key (RSA-2048/3072/4096, EC P-256/384/521)"
        )),
    }
}

/// A CA certificate with `below` CA certificates between it and the leaf.
pub(super) fn check_ca(cert: &Certificate, below: usize) -> Result<(), X509Error> {
    let subject = cert.subject();
    let rule = |text: String| {
        Err(X509Error::Rule(format!(
            "CA certificate {subject:?}: {text}"
        )))
    };
    match cert.basic_constraints {
        Some((true, true, path_len)) => {
            if let Some(max) = path_len
                && (max as usize) < below
            {
                return rule(format!(
                    "pathLenConstraint {max} but {below} CA certificate(s) below it"
                ));
            }
        }
        Some((false, true, _)) => return rule("basicConstraints must be critical".into()),
        _ => return rule("basicConstraints must be present with cA true".into()),
    }
    match cert.key_usage {
        Some((true, flags)) if flags & KU_CERT_SIGN != 0 => Ok(()),
        Some((true, _)) => rule("keyUsage lacks keyCertSign".into()),
        Some((false, _)) => rule("keyUsage must be critical".into()),
        None => rule("keyUsage is missing (keyCertSign is required)".into()),
    }
}
