//! X.509 for Notation (Notary Project) signatures: certificates parsed once, the Notary Project's
//! code-signing certificate rules over the chain an envelope carries, trust anchors and trusted
//! identities as an Attestor states them.
//!
//! Crates: `x509-parser` reads certificates (extensions, names, validity); every signature (on a
//! certificate or an envelope) is checked with aws-lc-rs, the crate's one crypto backend, over the
//! raw TBS bytes. `rustls-webpki` was not used: it is built for TLS (it cannot take a self-signed
//! leaf as its own anchor, and does not check the key usage bits Notary requires), and Notation
//! does not build paths anyway: the envelope carries the chain in order, leaf first, root last.
//!
//! Trust follows notation-go: the chain is valid under the Notary rules, and one of its
//! certificates is byte-for-byte a trust anchor of the Attestor. Revocation (OCSP, CRL) is not
//! checked: admission must not wait on a CA's responder. RFC 3161 timestamp countersignatures
//! ([`timestamp`]) are verified against the Attestor's `tsaCertificates` and let a chain that has
//! expired since count when the timestamp proves the signing inside its validity.

mod certificate;
mod chain;
mod identity;
mod self_signed;
mod store;
pub mod timestamp;
mod timestamp_token;

pub use certificate::{Certificate, KeySpec};
pub use chain::validate_code_signing_chain;
pub use identity::TrustedIdentity;
pub use self_signed::self_signed_code_signing_certificate;
pub use store::{AnchorInfo, TrustStore, parse_tsa_roots};
pub use timestamp::{MAX_TOKEN_SIZE, TimestampError, VerifiedTimestamp, verify_timestamp};

/// Why a certificate, chain, trust anchor or trusted identity is refused. Each message names the
/// certificate (by subject) and the rule.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum X509Error {
    /// Bytes that are not a DER certificate, or PEM without one.
    #[error("malformed certificate: {0}")]
    Malformed(String),
    /// A Notary Project certificate rule is broken (key usage, EKU, basic constraints, key size,
    /// signature algorithm, issuer); says which certificate and which rule.
    #[error("{0}")]
    Rule(String),
    /// A certificate outside its validity period at the verification time.
    #[error("certificate {subject:?} is {state} at {at} (valid {not_before} to {not_after})")]
    Validity {
        /// The certificate's subject.
        subject: String,
        /// `expired` or `not yet valid`.
        state: &'static str,
        /// The verification time, RFC 3339.
        at: String,
        /// notBefore, RFC 3339.
        not_before: String,
        /// notAfter, RFC 3339.
        not_after: String,
    },
    /// The chain is valid but none of its certificates is a trust anchor.
    #[error("certificate chain of {0:?} does not lead to a trusted root")]
    Untrusted(String),
    /// The leaf's subject matches none of the trusted identities.
    #[error("signing identity {0:?} is not among the trusted identities")]
    IdentityNotTrusted(String),
    /// A trusted identity that cannot be parsed.
    #[error("invalid trusted identity {value:?}: {reason}")]
    BadIdentity {
        /// The identity as written.
        value: String,
        /// What is wrong.
        reason: String,
    },
}

/// Unix seconds as RFC 3339 (`2026-11-30T07:00:00Z`), for messages.
pub(crate) fn rfc3339(seconds: i64) -> String {
    jiff::Timestamp::from_second(seconds)
        .map(|t| t.to_string())
        .unwrap_or_else(|_| format!("{seconds}s since 1970"))
}
