//! Server certificate verification whose trust roots are loaded at the first TLS handshake.
//!
//! Reading the system's CA bundle (and, where `SSL_CERT_DIR` is set, every file of that folder:
//! about 300 files on Debian) cost `signet verify` several milliseconds at every start, before its
//! first request, although many runs talk only to plain-HTTP registries on loopback and never
//! verify a certificate. Here the roots are read once, when a handshake first needs them; the
//! extra CA bundles (`--registry-ca`) are still read and checked at start, so a bad file is an
//! error at once. Verification itself is rustls's WebPKI verifier, unchanged.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::{DigitallySignedStruct, Error as TlsError, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

/// Where the system roots are read from when first needed (as `SSL_CERT_FILE`/`SSL_CERT_DIR`
/// said; `None` means the well-known bundle paths).
#[derive(Clone, Debug, Default)]
pub(crate) struct SystemRootPaths {
    /// A bundle replacing the well-known paths.
    pub file: Option<PathBuf>,
    /// A folder whose every file is added.
    pub dir: Option<PathBuf>,
}

/// A [`ServerCertVerifier`] that builds the WebPKI verifier over system plus extra roots on first
/// use and delegates every check to it.
#[derive(Debug)]
pub(crate) struct LazyRootsVerifier {
    extra: Vec<CertificateDer<'static>>,
    system: SystemRootPaths,
    provider: Arc<CryptoProvider>,
    inner: OnceLock<Result<Arc<WebPkiServerVerifier>, String>>,
}

impl LazyRootsVerifier {
    /// A verifier trusting the system roots (read later from `system`) and `extra`.
    pub(crate) fn new(
        extra: Vec<CertificateDer<'static>>,
        system: SystemRootPaths,
        provider: Arc<CryptoProvider>,
    ) -> Self {
        LazyRootsVerifier {
            extra,
            system,
            provider,
            inner: OnceLock::new(),
        }
    }

    fn verifier(&self) -> Result<&Arc<WebPkiServerVerifier>, TlsError> {
        self.inner
            .get_or_init(|| {
                let mut roots = rustls::RootCertStore::empty();
                let system = super::transport::system_certificates(super::transport::SystemRoots {
                    file: self.system.file.as_deref(),
                    dir: self.system.dir.as_deref(),
                });
                let (added, _) = roots.add_parsable_certificates(system);
                if added == 0 && self.extra.is_empty() {
                    tracing::warn!(
                        "no system CA certificates found; HTTPS registries will fail verification"
                    );
                }
                roots.add_parsable_certificates(self.extra.iter().cloned());
                WebPkiServerVerifier::builder_with_provider(
                    Arc::new(roots),
                    Arc::clone(&self.provider),
                )
                .build()
                .map_err(|e| format!("no usable CA certificates: {e}"))
            })
            .as_ref()
            .map_err(|why| TlsError::General(why.clone()))
    }
}

impl ServerCertVerifier for LazyRootsVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, TlsError> {
        self.verifier()?.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        // Signature checks need no roots: the provider's algorithms, as WebPKI's verifier uses.
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A CA and a leaf it issued for `localhost`, as DER.
    fn ca_and_leaf() -> (CertificateDer<'static>, CertificateDer<'static>) {
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca =
            rcgen::CertifiedIssuer::self_signed(ca_params, rcgen::KeyPair::generate().unwrap())
                .unwrap();
        let leaf = rcgen::CertificateParams::new(vec!["localhost".to_string()])
            .unwrap()
            .signed_by(&rcgen::KeyPair::generate().unwrap(), &ca)
            .unwrap();
        (ca.der().clone(), leaf.der().clone())
    }

    fn verifier(extra: Vec<CertificateDer<'static>>) -> LazyRootsVerifier {
        // An empty bundle stands for "no system roots", so only `extra` is trusted.
        let system = SystemRootPaths {
            file: Some(PathBuf::from("/dev/null")),
            dir: None,
        };
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        LazyRootsVerifier::new(extra, system, provider)
    }

    #[test]
    fn roots_are_read_at_the_first_check_and_verify_as_webpki_does() {
        let (ca, leaf) = ca_and_leaf();
        let (other_ca, _) = ca_and_leaf();
        let name = ServerName::try_from("localhost").unwrap();
        let trusting = verifier(vec![ca]);
        assert!(
            trusting.inner.get().is_none(),
            "roots read before any handshake"
        );
        let verified = trusting.verify_server_cert(&leaf, &[], &name, &[], UnixTime::now());
        assert!(verified.is_ok(), "{verified:?}");
        assert!(trusting.inner.get().is_some());

        let wrong_name = ServerName::try_from("registry.example.com").unwrap();
        assert!(
            trusting
                .verify_server_cert(&leaf, &[], &wrong_name, &[], UnixTime::now())
                .is_err()
        );
        let stranger = verifier(vec![other_ca]);
        let refused = stranger.verify_server_cert(&leaf, &[], &name, &[], UnixTime::now());
        assert!(
            matches!(refused, Err(TlsError::InvalidCertificate(_))),
            "{refused:?}"
        );
        let nothing = verifier(vec![]);
        let refused = nothing.verify_server_cert(&leaf, &[], &name, &[], UnixTime::now());
        assert!(
            matches!(&refused, Err(TlsError::General(why)) if why.contains("no usable CA")),
            "{refused:?}"
        );
    }
}
