//! TLS of every serving edge (webhook and signer): a certificate and key from files, reloaded when
//! their contents change on disk (cert-manager rotates them in the mounted Secret), optionally
//! requiring client certificates from a CA, or a self-signed pair for local runs.
//!
//! The files are polled rather than watched with inotify: a Secret volume updates through a
//! symlink swap that file watchers see in confusing ways, and a read of two small files every
//! few seconds costs nothing. A change is applied only when both files parse and the key
//! matches the certificate; otherwise the old certificate stays in use (a rotation caught
//! half-written is retried on the next poll). A change is detected by a hash of the contents, not
//! the modification time: a Secret update can keep the mtime (the symlink target changes), and an
//! mtime can change without the contents (a touch), so the contents are the only reliable rule.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sha2::Digest as _;

use super::cert_expiry::CertificateExpiry;

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The certificate, key or client CA file.
        path: PathBuf,
        /// The I/O error from reading it.
        source: std::io::Error,
    },
    /// The certificate file holds no PEM certificate.
    #[error("{path}: no PEM certificate found")]
    NoCertificate {
        /// The certificate file.
        path: PathBuf,
    },
    /// The key file holds no PEM private key.
    #[error("{path}: no PEM private key found ({reason})")]
    NoKey {
        /// The key file.
        path: PathBuf,
        /// The PEM parser's complaint.
        reason: String,
    },
    /// rustls refused the pair (key does not match the certificate, unsupported key).
    #[error("certificate {cert} and key {key} cannot be used: {reason}")]
    Rejected {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// rustls's reason for refusing the pair.
        reason: String,
    },
    /// The client CA file holds no usable certificate.
    #[error("{path}: no usable CA certificate for client authentication ({reason})")]
    ClientCa {
        /// The client CA file.
        path: PathBuf,
        /// Why none of its certificates can anchor client authentication.
        reason: String,
    },
    /// rcgen could not make the self-signed certificate.
    #[error("cannot generate a self-signed certificate: {0}")]
    SelfSigned(String),
}

/// Where the certificate comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TlsSource {
    /// PEM files, polled for changes every `reload_interval`.
    Files {
        /// PEM certificate chain, leaf first.
        cert: PathBuf,
        /// PEM private key matching the leaf certificate.
        key: PathBuf,
        /// How often the files are re-read and compared with what is in use.
        reload_interval: Duration,
        /// PEM CA certificates that API server client certificates must chain to; `None`: no
        /// client authentication. Re-read with the certificate.
        client_ca: Option<PathBuf>,
    },
    /// A certificate generated at start for `localhost`, `127.0.0.1` and `::1` (`--tls-self-signed`).
    SelfSigned,
}

/// Client CA certificates in PEM and the file they came from.
#[derive(Clone, Copy, Debug)]
pub struct ClientCa<'a> {
    /// The PEM text.
    pub pem: &'a [u8],
    /// Where it was read (for messages).
    pub path: &'a Path,
}

/// A verifier that requires a client certificate chaining to one of `ca`'s certificates.
fn client_verifier(
    ca: ClientCa<'_>,
    provider: &Arc<rustls::crypto::CryptoProvider>,
) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, TlsError> {
    let invalid = |reason: String| TlsError::ClientCa {
        path: ca.path.to_path_buf(),
        reason,
    };
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca.pem) {
        let cert = cert.map_err(|e| invalid(e.to_string()))?;
        roots.add(cert).map_err(|e| invalid(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(invalid("no PEM certificate found".into()));
    }
    rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        Arc::clone(provider),
    )
    .build()
    .map_err(|e| invalid(e.to_string()))
}

/// A server config for a certificate chain and key in PEM, with HTTP/1.1 and HTTP/2 by ALPN;
/// with `client_ca`, clients must present a certificate issued by it (the API server's
/// AdmissionConfiguration kubeconfig gives it one).
pub fn server_config_from_pem(
    cert_pem: &[u8],
    key_pem: &[u8],
    cert_path: &Path,
    key_path: &Path,
    client_ca: Option<ClientCa<'_>>,
) -> Result<Arc<ServerConfig>, TlsError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .filter_map(Result::ok)
        .collect();
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            path: cert_path.to_path_buf(),
        });
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| TlsError::NoKey {
        path: key_path.to_path_buf(),
        reason: e.to_string(),
    })?;
    let rejected = |reason: String| TlsError::Rejected {
        cert: cert_path.to_path_buf(),
        key: key_path.to_path_buf(),
        reason,
    };
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| rejected(e.to_string()))?;
    let builder = match client_ca {
        Some(ca) => builder.with_client_cert_verifier(client_verifier(ca, &provider)?),
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|e| rejected(e.to_string()))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A self-signed certificate and key (PEM) for `localhost`, `127.0.0.1` and `::1`.
pub fn self_signed_pem() -> Result<(String, String), TlsError> {
    let names = vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ];
    let certified = rcgen::generate_simple_self_signed(names)
        .map_err(|e| TlsError::SelfSigned(e.to_string()))?;
    Ok((certified.cert.pem(), certified.signing_key.serialize_pem()))
}

/// The certificate, key and (optional) client CA files, as read together.
struct TlsFiles {
    cert: Vec<u8>,
    key: Vec<u8>,
    client_ca: Option<Vec<u8>>,
}

impl TlsFiles {
    /// Reads the files; `Err` names the file that failed.
    fn read(cert: &Path, key: &Path, client_ca: Option<&Path>) -> Result<Self, TlsError> {
        let read = |path: &Path| {
            std::fs::read(path).map_err(|source| TlsError::Read {
                path: path.to_path_buf(),
                source,
            })
        };
        Ok(TlsFiles {
            cert: read(cert)?,
            key: read(key)?,
            client_ca: client_ca.map(read).transpose()?,
        })
    }

    fn fingerprint(&self) -> [u8; 32] {
        let mut hasher = sha2::Sha256::new();
        for part in [Some(&self.cert), Some(&self.key), self.client_ca.as_ref()] {
            let part = part.map_or(&[][..], Vec::as_slice);
            hasher.update((part.len() as u64).to_be_bytes());
            hasher.update(part);
        }
        hasher.finalize().into()
    }

    fn server_config(
        &self,
        cert: &Path,
        key: &Path,
        client_ca: Option<&Path>,
    ) -> Result<Arc<ServerConfig>, TlsError> {
        let ca = match (&self.client_ca, client_ca) {
            (Some(pem), Some(path)) => Some(ClientCa { pem, path }),
            _ => None,
        };
        server_config_from_pem(&self.cert, &self.key, cert, key, ca)
    }
}

/// The live TLS configuration and, for files, the task that reloads it.
pub struct Tls {
    /// What new connections are served with; the reload task swaps it.
    pub config: LiveConfig,
}

/// The server configuration new connections get, swapped whole by a reload (connections already
/// open keep theirs).
#[derive(Clone, Debug)]
pub struct LiveConfig(Arc<RwLock<Arc<ServerConfig>>>);

impl LiveConfig {
    fn new(config: Arc<ServerConfig>) -> Self {
        LiveConfig(Arc::new(RwLock::new(config)))
    }

    /// The configuration in force now.
    pub fn current(&self) -> Arc<ServerConfig> {
        // A writer cannot panic while holding the lock (it only moves an `Arc` in), so a
        // poisoned lock still holds a whole configuration.
        Arc::clone(
            &self
                .0
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }

    fn replace(&self, config: Arc<ServerConfig>) {
        *self
            .0
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = config;
    }
}

impl Tls {
    /// Loads the certificate; for files, spawns the reload task (it ends with the runtime).
    /// `expiry` follows the served certificate's `notAfter` through every reload.
    pub fn start(source: &TlsSource, expiry: &CertificateExpiry) -> Result<Self, TlsError> {
        match source {
            TlsSource::SelfSigned => {
                let (cert, key) = self_signed_pem()?;
                expiry.set_from_pem(cert.as_bytes());
                let config = server_config_from_pem(
                    cert.as_bytes(),
                    key.as_bytes(),
                    Path::new("<self-signed>"),
                    Path::new("<self-signed>"),
                    None,
                )?;
                Ok(Tls {
                    config: LiveConfig::new(config),
                })
            }
            TlsSource::Files {
                cert,
                key,
                reload_interval,
                client_ca,
            } => {
                let files = TlsFiles::read(cert, key, client_ca.as_deref())?;
                let config = files.server_config(cert, key, client_ca.as_deref())?;
                expiry.set_from_pem(&files.cert);
                let live = LiveConfig::new(config);
                tokio::spawn(reload_on_change(
                    live.clone(),
                    source.clone(),
                    *reload_interval,
                    files.fingerprint(),
                    expiry.clone(),
                ));
                Ok(Tls { config: live })
            }
        }
    }
}

/// Polls the files; installs a new configuration when their contents change and parse.
async fn reload_on_change(
    config: LiveConfig,
    source: TlsSource,
    interval: Duration,
    mut current: [u8; 32],
    expiry: CertificateExpiry,
) {
    let TlsSource::Files {
        cert,
        key,
        client_ca,
        ..
    } = source
    else {
        return;
    };
    let mut ticker = tokio::time::interval(interval.max(Duration::from_millis(50)));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let files = match TlsFiles::read(&cert, &key, client_ca.as_deref()) {
            Ok(files) => files,
            Err(e) => {
                tracing::warn!(error = %e, "TLS files unreadable; keeping the current certificate");
                continue;
            }
        };
        let seen = files.fingerprint();
        if seen == current {
            continue;
        }
        match files.server_config(&cert, &key, client_ca.as_deref()) {
            Ok(new_config) => {
                config.replace(new_config);
                expiry.set_from_pem(&files.cert);
                current = seen;
                tracing::info!(cert = %cert.display(), "TLS certificate reloaded");
            }
            Err(e) => {
                tracing::warn!(error = %e, "new TLS files not usable yet; keeping the current certificate");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_signed_pair_makes_a_server_config() {
        let (cert, key) = self_signed_pem().unwrap_or_default();
        let config = server_config_from_pem(
            cert.as_bytes(),
            key.as_bytes(),
            Path::new("c"),
            Path::new("k"),
            None,
        );
        assert!(config.is_ok(), "{:?}", config.err());
    }

    #[test]
    fn mismatched_or_missing_pem_is_named() {
        let (cert, _) = self_signed_pem().unwrap_or_default();
        let (_, other_key) = self_signed_pem().unwrap_or_default();
        let err = server_config_from_pem(
            cert.as_bytes(),
            other_key.as_bytes(),
            Path::new("tls.crt"),
            Path::new("tls.key"),
            None,
        )
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
        assert!(err.contains("tls.crt") && err.contains("tls.key"), "{err}");
        let err =
            server_config_from_pem(b"", b"", Path::new("tls.crt"), Path::new("tls.key"), None)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
        assert_eq!(err, "tls.crt: no PEM certificate found");
    }
}
