//! The tests' HTTPS clients: rustls on aws-lc-rs (reqwest is built without a default provider),
//! trusting only the CA a test names, or nothing when the test speaks plain HTTP.

use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::pem::PemObject as _;

/// A client configuration trusting only `ca_pem` (no roots at all when `None`), no client
/// certificate.
pub fn client_config(ca_pem: Option<&str>) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    if let Some(ca_pem) = ca_pem {
        let der =
            rustls_pki_types::CertificateDer::from_pem_slice(ca_pem.as_bytes()).expect("CA PEM");
        roots.add(der).expect("CA in root store");
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth()
}

/// An HTTPS client trusting only `ca_pem`, giving up on a request after `timeout`.
pub fn https_client(ca_pem: &str, timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .tls_backend_preconfigured(client_config(Some(ca_pem)))
        .timeout(timeout)
        .build()
        .expect("HTTPS client")
}
