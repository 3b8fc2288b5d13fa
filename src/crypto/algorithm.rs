//! The signature algorithms signet signs and verifies with.

use std::fmt;
use std::str::FromStr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A signature algorithm, named as cloud KMS services name them.
///
/// The algorithm is always explicit: an RSA key alone cannot tell PSS from PKCS#1 v1.5.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum Algorithm {
    /// RSASSA-PSS with SHA-256, MGF1-SHA-256, salt length 32 (2048 to 4096-bit keys).
    #[serde(rename = "RSA_PSS_SHA_256")]
    RsaPssSha256,
    /// RSASSA-PKCS1-v1_5 with SHA-256 (2048 to 4096-bit keys).
    #[serde(rename = "RSA_PKCS1_SHA_256")]
    RsaPkcs1Sha256,
    /// ECDSA on P-256 with SHA-256, ASN.1 DER signatures.
    #[serde(rename = "ECDSA_P256_SHA_256")]
    EcdsaP256Sha256,
    /// ECDSA on P-384 with SHA-384, ASN.1 DER signatures.
    #[serde(rename = "ECDSA_P384_SHA_384")]
    EcdsaP384Sha384,
    /// Ed25519 (pure, over the payload).
    #[serde(rename = "ED25519")]
    Ed25519,
}

impl Algorithm {
    /// Every algorithm, in a stable order.
    pub const ALL: [Algorithm; 5] = [
        Algorithm::RsaPssSha256,
        Algorithm::RsaPkcs1Sha256,
        Algorithm::EcdsaP256Sha256,
        Algorithm::EcdsaP384Sha384,
        Algorithm::Ed25519,
    ];

    /// The name used in resources and on the command line (`RSA_PSS_SHA_256`).
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::RsaPssSha256 => "RSA_PSS_SHA_256",
            Algorithm::RsaPkcs1Sha256 => "RSA_PKCS1_SHA_256",
            Algorithm::EcdsaP256Sha256 => "ECDSA_P256_SHA_256",
            Algorithm::EcdsaP384Sha384 => "ECDSA_P384_SHA_384",
            Algorithm::Ed25519 => "ED25519",
        }
    }

    /// Whether the algorithm takes an RSA key.
    pub fn is_rsa(self) -> bool {
        matches!(self, Algorithm::RsaPssSha256 | Algorithm::RsaPkcs1Sha256)
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The text is not one of the algorithm names.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "unknown algorithm {0:?} (expected one of RSA_PSS_SHA_256, RSA_PKCS1_SHA_256, ECDSA_P256_SHA_256, ECDSA_P384_SHA_384, ED25519)"
)]
pub struct UnknownAlgorithm(pub String);

impl FromStr for Algorithm {
    type Err = UnknownAlgorithm;

    /// Accepts the canonical names in any case, with `-` or `_`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wanted = s.trim().to_ascii_uppercase().replace('-', "_");
        Algorithm::ALL
            .into_iter()
            .find(|a| a.as_str() == wanted)
            .ok_or_else(|| UnknownAlgorithm(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for a in Algorithm::ALL {
            assert_eq!(a.as_str().parse::<Algorithm>().unwrap(), a);
            assert_eq!(serde_json::to_string(&a).unwrap(), format!("\"{a}\""));
        }
        assert_eq!(
            "rsa-pss-sha-256".parse::<Algorithm>().unwrap(),
            Algorithm::RsaPssSha256
        );
        assert!("RSA_PSS_SHA_512".parse::<Algorithm>().is_err());
    }
}
