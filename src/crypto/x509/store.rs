//! The trust material of one Attestor key for Notation signatures: root certificates (or
//! self-signed leaves), optional trusted identities, optional TSA roots; compiled once.

use super::certificate::Certificate;
use super::chain::validate_chain_with;
use super::identity::TrustedIdentity;
use super::{X509Error, rfc3339};

/// What status shows of one trust anchor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AnchorInfo {
    /// The anchor's subject.
    pub subject: String,
    /// notAfter, RFC 3339.
    pub expiry: String,
    /// `sha256:<hex of the DER>`.
    pub fingerprint: String,
}

/// Roots a Notation chain must reach, who among their signers is trusted, and TSA roots.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrustStore {
    anchors: Vec<Certificate>,
    identities: Vec<TrustedIdentity>,
    tsa: Vec<Certificate>,
}

impl TrustStore {
    /// Parses the PEM bundle of anchors, the trusted identities (none = any signer the anchors
    /// vouch for) and the optional TSA roots bundle. Each anchor must be a CA certificate or a
    /// self-signed leaf; expiry is not judged here (see [`TrustStore::expired_anchors`]).
    pub fn new(
        certificates_pem: &str,
        identities: &[String],
        tsa_pem: Option<&str>,
    ) -> Result<Self, X509Error> {
        let anchors = parse_roots(certificates_pem, "trust anchor")?;
        let identities = identities
            .iter()
            .map(|text| TrustedIdentity::parse(text))
            .collect::<Result<Vec<_>, _>>()?;
        let tsa = match tsa_pem {
            Some(pem) => parse_tsa_roots(pem)?,
            None => Vec::new(),
        };
        Ok(TrustStore {
            anchors,
            identities,
            tsa,
        })
    }

    /// The anchors, in bundle order.
    pub fn anchors(&self) -> &[Certificate] {
        &self.anchors
    }

    /// The TSA roots RFC 3161 timestamp countersignatures must chain to.
    pub fn tsa_roots(&self) -> &[Certificate] {
        &self.tsa
    }

    /// Subject, expiry and fingerprint of each anchor, for status.
    pub fn anchor_info(&self) -> Vec<AnchorInfo> {
        self.anchors
            .iter()
            .map(|a| AnchorInfo {
                subject: a.subject().to_string(),
                expiry: rfc3339(a.not_after()),
                fingerprint: a.fingerprint(),
            })
            .collect()
    }

    /// Anchors outside their validity at `now`, named with the reason.
    pub fn expired_anchors(&self, now: i64) -> Vec<String> {
        outside_validity(&self.anchors, now)
    }

    /// TSA roots outside their validity at `now`, named with the reason. (A timestamp is judged
    /// at its own time, but a TSA root that has expired cannot vouch for new timestamps, and an
    /// Attestor stating one is stale: it is shown as not Ready, like an expired anchor.)
    pub fn expired_tsa_roots(&self, now: i64) -> Vec<String> {
        outside_validity(&self.tsa, now)
    }

    /// Whether a chain with these certificate thumbprints (lower-case hex SHA-256, the
    /// `io.cncf.notary.x509chain.thumbprint#S256` annotation) can reach one of the anchors: lets
    /// a verifier skip a signature before downloading its envelope.
    pub fn may_reach(&self, thumbprints: &[String]) -> bool {
        self.anchors.iter().any(|a| {
            thumbprints
                .iter()
                .any(|t| t.eq_ignore_ascii_case(a.sha256_hex()))
        })
    }

    /// Checks `chain` (leaf first) under the Notary rules at `at` (Unix seconds), that one of
    /// its certificates is an anchor, and that the leaf is a trusted identity. Returns the
    /// anchor reached.
    pub fn verify_chain(&self, chain: &[Certificate], at: i64) -> Result<&Certificate, X509Error> {
        self.verify_chain_during(chain, (at, at))
    }

    /// [`TrustStore::verify_chain`] with every certificate valid through `during` (`(from, to)`,
    /// Unix seconds): the span a trusted timestamp places the signing in.
    pub fn verify_chain_during(
        &self,
        chain: &[Certificate],
        during: (i64, i64),
    ) -> Result<&Certificate, X509Error> {
        // Anchors that are self-issued had their signature checked in `new`.
        let known = |c: &Certificate| c.is_self_issued() && self.anchors.iter().any(|a| a == c);
        validate_chain_with(chain, during, &known)?;
        let leaf_subject = chain.first().map(|c| c.subject()).unwrap_or_default();
        let anchor = chain
            .iter()
            .find_map(|c| self.anchors.iter().find(|a| *a == c))
            .ok_or_else(|| X509Error::Untrusted(leaf_subject.to_string()))?;
        if let Some(leaf) = chain.first()
            && !self.identities.is_empty()
            && !self.identities.iter().any(|i| i.matches(leaf))
        {
            return Err(X509Error::IdentityNotTrusted(leaf_subject.to_string()));
        }
        Ok(anchor)
    }
}

/// Certificates of `roots` outside their validity at `now`, each named with its state.
fn outside_validity(roots: &[Certificate], now: i64) -> Vec<String> {
    roots
        .iter()
        .filter(|a| now < a.not_before() || now > a.not_after())
        .map(|a| {
            let state = if now > a.not_after() {
                format!("expired {}", rfc3339(a.not_after()))
            } else {
                format!("not valid before {}", rfc3339(a.not_before()))
            };
            format!("{:?} {state}", a.subject())
        })
        .collect()
}

/// A PEM bundle of roots, each a CA certificate or self-signed (its signature checked once
/// here); `role` names them in errors.
fn parse_roots(pem: &str, role: &str) -> Result<Vec<Certificate>, X509Error> {
    let roots = Certificate::from_pem_bundle(pem)?;
    for root in &roots {
        let is_ca = matches!(root.basic_constraints, Some((_, true, _)));
        if !is_ca && !root.is_self_issued() {
            return Err(X509Error::Rule(format!(
                "{role} {:?} is neither a CA certificate nor self-signed",
                root.subject()
            )));
        }
        if root.is_self_issued() {
            root.check_issued_by(root)
                .map_err(|why| X509Error::Rule(format!("{role}: {why}")))?;
        }
    }
    Ok(roots)
}

/// An Attestor key's `tsaCertificates`: the roots (or self-signed TSA certificates) RFC 3161
/// timestamps must chain to.
pub fn parse_tsa_roots(pem: &str) -> Result<Vec<Certificate>, X509Error> {
    parse_roots(pem, "TSA root")
}
