//! The signature algorithms of Notary envelopes, and the one each leaf key must use.

use aws_lc_rs::signature::{self as lc, VerificationAlgorithm};

use crate::crypto::x509::KeySpec;

/// A JWS/COSE signature algorithm Notary allows (ECDSA signatures are raw `r || s`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotaryAlgorithm {
    /// RSASSA-PSS, SHA-256, salt 32.
    Ps256,
    /// RSASSA-PSS, SHA-384, salt 48.
    Ps384,
    /// RSASSA-PSS, SHA-512, salt 64.
    Ps512,
    /// ECDSA P-256, SHA-256.
    Es256,
    /// ECDSA P-384, SHA-384.
    Es384,
    /// ECDSA P-521, SHA-512.
    Es512,
}

impl NotaryAlgorithm {
    const ALL: [NotaryAlgorithm; 6] = [
        NotaryAlgorithm::Ps256,
        NotaryAlgorithm::Ps384,
        NotaryAlgorithm::Ps512,
        NotaryAlgorithm::Es256,
        NotaryAlgorithm::Es384,
        NotaryAlgorithm::Es512,
    ];

    /// The JWS `alg` name.
    pub fn jws_name(self) -> &'static str {
        match self {
            NotaryAlgorithm::Ps256 => "PS256",
            NotaryAlgorithm::Ps384 => "PS384",
            NotaryAlgorithm::Ps512 => "PS512",
            NotaryAlgorithm::Es256 => "ES256",
            NotaryAlgorithm::Es384 => "ES384",
            NotaryAlgorithm::Es512 => "ES512",
        }
    }

    /// The COSE algorithm identifier.
    pub fn cose_id(self) -> i64 {
        match self {
            NotaryAlgorithm::Ps256 => -37,
            NotaryAlgorithm::Ps384 => -38,
            NotaryAlgorithm::Ps512 => -39,
            NotaryAlgorithm::Es256 => -7,
            NotaryAlgorithm::Es384 => -35,
            NotaryAlgorithm::Es512 => -36,
        }
    }

    pub(crate) fn from_jws(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.jws_name() == name)
    }

    pub(crate) fn from_cose(id: i64) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.cose_id() == id)
    }

    /// The algorithm Notary requires for a leaf key: RSA-2048 => PS256, RSA-3072 => PS384,
    /// RSA-4096 => PS512, P-256 => ES256, P-384 => ES384, P-521 => ES512.
    pub fn for_key(key: KeySpec) -> Option<Self> {
        match key {
            KeySpec::Rsa(2048) => Some(NotaryAlgorithm::Ps256),
            KeySpec::Rsa(3072) => Some(NotaryAlgorithm::Ps384),
            KeySpec::Rsa(4096) => Some(NotaryAlgorithm::Ps512),
            KeySpec::Ec(256) => Some(NotaryAlgorithm::Es256),
            KeySpec::Ec(384) => Some(NotaryAlgorithm::Es384),
            KeySpec::Ec(521) => Some(NotaryAlgorithm::Es512),
            _ => None,
        }
    }

    pub(crate) fn verification(self) -> &'static dyn VerificationAlgorithm {
        match self {
            NotaryAlgorithm::Ps256 => &lc::RSA_PSS_2048_8192_SHA256,
            NotaryAlgorithm::Ps384 => &lc::RSA_PSS_2048_8192_SHA384,
            NotaryAlgorithm::Ps512 => &lc::RSA_PSS_2048_8192_SHA512,
            NotaryAlgorithm::Es256 => &lc::ECDSA_P256_SHA256_FIXED,
            NotaryAlgorithm::Es384 => &lc::ECDSA_P384_SHA384_FIXED,
            NotaryAlgorithm::Es512 => &lc::ECDSA_P521_SHA512_FIXED,
        }
    }

    /// Bytes of each of `r` and `s` in a raw ECDSA signature; `None` for RSA.
    pub(crate) fn ecdsa_scalar_len(self) -> Option<usize> {
        match self {
            NotaryAlgorithm::Es256 => Some(32),
            NotaryAlgorithm::Es384 => Some(48),
            NotaryAlgorithm::Es512 => Some(66),
            _ => None,
        }
    }
}

impl std::fmt::Display for NotaryAlgorithm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.jws_name())
    }
}
