//! A self-signed code-signing certificate for a freshly generated key (`signet keygen
//! --certificate`), meeting the Notary leaf rules: keyUsage critical digitalSignature only, EKU
//! codeSigning, basicConstraints cA false. For trying Notation signing out; production chains
//! come from a CA.

use rcgen::{CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose};

use super::identity::parse_dn_ordered;
use super::{Certificate, validate_code_signing_chain};
use crate::crypto::{Algorithm, CryptoError};

fn dn_type(name: &str) -> Option<DnType> {
    Some(match name {
        "CN" => DnType::CommonName,
        "C" => DnType::CountryName,
        "O" => DnType::OrganizationName,
        "OU" => DnType::OrganizationalUnitName,
        "ST" => DnType::StateOrProvinceName,
        "L" => DnType::LocalityName,
        _ => return None,
    })
}

/// A PEM certificate for the PKCS#8 PEM `private_key_pem` of `algorithm`, named `subject`
/// (`CN=release,O=acme,C=US`), valid from the start of the UTC day of `now` (Unix seconds) for
/// `days` days. Refuses keys Notation signing cannot use with signet's algorithms.
pub fn self_signed_code_signing_certificate(
    private_key_pem: &str,
    algorithm: Algorithm,
    subject: &str,
    now: i64,
    days: u32,
) -> Result<String, CryptoError> {
    let failed = |why: String| CryptoError::KeyStore(format!("cannot make the certificate: {why}"));
    let rcgen_algorithm = match algorithm {
        Algorithm::RsaPssSha256 => &rcgen::PKCS_RSA_SHA256,
        Algorithm::EcdsaP256Sha256 => &rcgen::PKCS_ECDSA_P256_SHA256,
        Algorithm::EcdsaP384Sha384 => &rcgen::PKCS_ECDSA_P384_SHA384,
        other => {
            return Err(failed(format!(
                "Notation signs with RSA-PSS or ECDSA, not {other} (use RSA_PSS_SHA_256 with 2048 bits, ECDSA_P256_SHA_256 or ECDSA_P384_SHA384)"
            )));
        }
    };
    if days == 0 {
        return Err(failed("the validity must be at least one day".into()));
    }
    let attributes =
        parse_dn_ordered(subject).map_err(|why| failed(format!("subject {subject:?}: {why}")))?;
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    for (name, value) in attributes {
        let kind = dn_type(&name).ok_or_else(|| {
            failed(format!(
                "subject attribute {name} is not one of CN, C, O, OU, ST, L"
            ))
        })?;
        params.distinguished_name.push(kind, value);
    }
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::CodeSigning];
    let start = jiff::Timestamp::from_second(now)
        .map_err(|e| failed(e.to_string()))?
        .to_zoned(jiff::tz::TimeZone::UTC)
        .date();
    let end = start
        .checked_add(jiff::Span::new().days(i64::from(days)))
        .map_err(|e| failed(e.to_string()))?;
    let ymd = |d: jiff::civil::Date| {
        rcgen::date_time_ymd(i32::from(d.year()), d.month() as u8, d.day() as u8)
    };
    params.not_before = ymd(start);
    params.not_after = ymd(end);
    let key = KeyPair::from_pkcs8_pem_and_sign_algo(private_key_pem, rcgen_algorithm)
        .map_err(|e| failed(e.to_string()))?;
    let certificate = params
        .self_signed(&key)
        .map_err(|e| failed(e.to_string()))?;
    // The certificate must pass the rules a verifier applies, or it is no use.
    let parsed = Certificate::from_der(certificate.der()).map_err(|e| failed(e.to_string()))?;
    validate_code_signing_chain(std::slice::from_ref(&parsed), now)
        .map_err(|e| failed(e.to_string()))?;
    Ok(certificate.pem())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::generate_key_pair;
    use crate::crypto::x509::{KeySpec, TrustStore};

    const NOW: i64 = 1_796_019_200;

    #[test]
    fn the_certificate_meets_the_notary_leaf_rules_and_names_the_subject() {
        for (algorithm, bits, spec) in [
            (Algorithm::RsaPssSha256, Some(2048), KeySpec::Rsa(2048)),
            (Algorithm::EcdsaP256Sha256, None, KeySpec::Ec(256)),
        ] {
            let key = generate_key_pair(algorithm, bits).unwrap();
            let pem = self_signed_code_signing_certificate(
                key.private_key_pem(),
                algorithm,
                "CN=release,O=acme,C=US",
                NOW,
                30,
            )
            .unwrap();
            let certs = Certificate::from_pem_bundle(&pem).unwrap();
            assert_eq!(certs[0].subject(), "CN=release, O=acme, C=US");
            assert_eq!(certs[0].key_spec(), spec);
            assert_eq!(certs[0].spki_der(), key.public_key().spki_der());
            assert_eq!(certs[0].not_after() - certs[0].not_before(), 30 * 86_400);
            let identity = ["x509.subject: C=US, O=acme, CN=release".to_string()];
            let trust = TrustStore::new(&pem, &identity, None).unwrap();
            trust.verify_chain(&certs, NOW).unwrap();
        }
    }

    #[test]
    fn keys_and_subjects_notation_cannot_use_are_refused() {
        let key = generate_key_pair(Algorithm::Ed25519, None).unwrap();
        let err = self_signed_code_signing_certificate(
            key.private_key_pem(),
            Algorithm::Ed25519,
            "CN=a,C=US,O=b",
            NOW,
            1,
        )
        .unwrap_err();
        assert!(err.to_string().contains("not ED25519"), "{err}");
        let key = generate_key_pair(Algorithm::EcdsaP256Sha256, None).unwrap();
        for (subject, expected) in [
            ("CN=a,EMAIL=x", "EMAIL is not one of"),
            ("CN=a,CN=b", "more than once"),
            ("junk", "TYPE=value"),
        ] {
            let err = self_signed_code_signing_certificate(
                key.private_key_pem(),
                Algorithm::EcdsaP256Sha256,
                subject,
                NOW,
                1,
            )
            .unwrap_err();
            assert!(err.to_string().contains(expected), "{subject}: {err}");
        }
    }
}
