//! What JWS and COSE envelopes have in common once parsed, and the Notary header rules applied to
//! both: content type, signing scheme, critical headers, plugins.

use super::alg::NotaryAlgorithm;

/// Media type of the Notary payload (`cty`).
pub const PAYLOAD_MEDIA_TYPE: &str = "application/vnd.cncf.notary.payload.v1+json";
/// The signing scheme signet verifies and writes.
pub const SCHEME_X509: &str = "notary.x509";
/// The signing-authority scheme (AWS Signer): its signing time is the authority's signed
/// `authenticSigningTime`, not an RFC 3161 timestamp, and it needs a signing-authority trust
/// store, which an Attestor cannot state yet; so it is refused rather than trusted like a CA.
pub const SCHEME_SIGNING_AUTHORITY: &str = "notary.x509.signingAuthority";

pub(crate) const HEADER_SIGNING_SCHEME: &str = "io.cncf.notary.signingScheme";
pub(crate) const HEADER_SIGNING_TIME: &str = "io.cncf.notary.signingTime";
pub(crate) const HEADER_EXPIRY: &str = "io.cncf.notary.expiry";
pub(crate) const HEADER_AUTHENTIC_SIGNING_TIME: &str = "io.cncf.notary.authenticSigningTime";
pub(crate) const HEADER_PLUGIN: &str = "io.cncf.notary.verificationPlugin";
pub(crate) const HEADER_PLUGIN_MIN_VERSION: &str = "io.cncf.notary.verificationPluginMinVersion";
pub(crate) const HEADER_TIMESTAMP: &str = "io.cncf.notary.timestampSignature";
pub(crate) const HEADER_SIGNING_AGENT: &str = "io.cncf.notary.signingAgent";

/// The two envelope formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EnvelopeFormat {
    /// JWS flattened JSON, layer media type `application/jose+json` (Notation's default).
    Jws,
    /// COSE_Sign1, layer media type `application/cose`.
    Cose,
}

impl EnvelopeFormat {
    /// The signature layer's media type.
    pub fn media_type(self) -> &'static str {
        match self {
            EnvelopeFormat::Jws => "application/jose+json",
            EnvelopeFormat::Cose => "application/cose",
        }
    }

    pub(crate) fn from_media_type(media_type: &str) -> Option<Self> {
        match media_type {
            "application/jose+json" => Some(EnvelopeFormat::Jws),
            "application/cose" => Some(EnvelopeFormat::Cose),
            _ => None,
        }
    }
}

impl std::fmt::Display for EnvelopeFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            EnvelopeFormat::Jws => "JWS",
            EnvelopeFormat::Cose => "COSE",
        })
    }
}

/// An envelope, parsed but not yet verified.
#[derive(Clone, Debug)]
pub(crate) struct Envelope {
    pub(crate) format: EnvelopeFormat,
    /// `None` when the envelope names an algorithm Notary does not allow; holds its name.
    pub(crate) algorithm: Result<NotaryAlgorithm, String>,
    pub(crate) content_type: Option<String>,
    pub(crate) signing_scheme: Option<String>,
    /// Unix seconds; the signer's claim (not authenticated without a timestamp).
    pub(crate) signing_time: Option<i64>,
    pub(crate) expiry: Option<i64>,
    pub(crate) has_authentic_signing_time: bool,
    /// Names listed in `crit`, as text (integer COSE labels as their number).
    pub(crate) critical: Vec<String>,
    /// Names of every other protected header, as text.
    pub(crate) extended: Vec<String>,
    /// The bytes the signature is over (JWS signing input, COSE Sig_structure).
    pub(crate) signing_input: Vec<u8>,
    pub(crate) payload: Vec<u8>,
    pub(crate) signature: Vec<u8>,
    /// DER certificates, leaf first.
    pub(crate) chain: Vec<Vec<u8>>,
    /// The RFC 3161 TimeStampToken (DER) of the unprotected `io.cncf.notary.timestampSignature`.
    pub(crate) timestamp: Option<Vec<u8>>,
}

impl Envelope {
    /// The Notary header rules; says which is broken.
    pub(crate) fn check_headers(&self) -> Result<NotaryAlgorithm, String> {
        let algorithm = self.algorithm.clone().map_err(|alg| {
            format!("algorithm {alg} is not allowed (PS256/384/512, ES256/384/512)")
        })?;
        match self.content_type.as_deref() {
            Some(PAYLOAD_MEDIA_TYPE) => {}
            Some(other) => {
                return Err(format!(
                    "content type {other:?} is not {PAYLOAD_MEDIA_TYPE}"
                ));
            }
            None => return Err("content type (cty) is missing".into()),
        }
        for plugin in [HEADER_PLUGIN, HEADER_PLUGIN_MIN_VERSION] {
            if self.extended.iter().any(|h| h == plugin) {
                return Err(format!(
                    "header {plugin} asks for a verification plugin, and signet runs none"
                ));
            }
        }
        match self.signing_scheme.as_deref() {
            Some(SCHEME_X509) => {}
            Some(SCHEME_SIGNING_AUTHORITY) => {
                return Err(format!(
                    "signing scheme {SCHEME_SIGNING_AUTHORITY} is not supported (only {SCHEME_X509})"
                ));
            }
            Some(other) => return Err(format!("unknown signing scheme {other:?}")),
            None => return Err(format!("header {HEADER_SIGNING_SCHEME} is missing")),
        }
        if self.has_authentic_signing_time {
            return Err(format!(
                "header {HEADER_AUTHENTIC_SIGNING_TIME} must not be present for {SCHEME_X509}"
            ));
        }
        if self.signing_time.is_none() {
            return Err(format!("header {HEADER_SIGNING_TIME} is missing"));
        }
        let must_be_critical = [
            Some(HEADER_SIGNING_SCHEME),
            self.expiry.map(|_| HEADER_EXPIRY),
        ];
        for name in must_be_critical.into_iter().flatten() {
            if !self.critical.iter().any(|c| c == name) {
                return Err(format!("header {name} must be listed in crit"));
            }
        }
        for name in &self.critical {
            let known =
                name == HEADER_SIGNING_SCHEME || (name == HEADER_EXPIRY && self.expiry.is_some());
            if !known {
                return Err(format!("unknown critical header {name:?}"));
            }
        }
        if self.chain.is_empty() {
            return Err("the certificate chain (x5c / x5chain) is missing".into());
        }
        if self.signature.is_empty() {
            return Err("the signature is empty".into());
        }
        Ok(algorithm)
    }
}
