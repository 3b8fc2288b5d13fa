//! How a registry is reached: which scheme (HTTPS, or plain HTTP for loopback and
//! `--insecure-registry` hosts), which API host (Docker Hub's API lives on
//! `registry-1.docker.io`), and the one shared HTTP client (rustls with aws-lc-rs, system roots
//! plus extra CA bundles, at most 5 redirects, a per-request timeout).

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use url::Url;

use super::error::RegistryError;

/// Redirects followed per request (blob downloads are commonly redirected to object storage).
pub const MAX_REDIRECTS: usize = 5;

/// Decides plain HTTP versus HTTPS per registry.
#[derive(Clone, Debug, Default)]
pub(crate) struct SchemePolicy {
    /// `(host, port)`; a `None` port covers every port of the host.
    insecure: Vec<(String, Option<u16>)>,
}

impl SchemePolicy {
    /// `insecure` entries are `host` or `host:port` (a leading `http://` is tolerated).
    pub(crate) fn new(insecure: &[String]) -> Result<Self, RegistryError> {
        let mut entries = Vec::with_capacity(insecure.len());
        for raw in insecure {
            let trimmed = raw.trim();
            let bare = trimmed
                .strip_prefix("http://")
                .or_else(|| trimmed.strip_prefix("https://"))
                .unwrap_or(trimmed)
                .trim_end_matches('/');
            let (host, port) = split_host_port(bare).ok_or_else(|| {
                RegistryError::invalid_config(
                    "insecure registry",
                    format!("{raw:?} is not a host or host:port"),
                )
            })?;
            if host.is_empty() || bare.contains('/') {
                return Err(RegistryError::invalid_config(
                    "insecure registry",
                    format!("{raw:?} is not a host or host:port"),
                ));
            }
            entries.push((host.to_ascii_lowercase(), port));
        }
        Ok(SchemePolicy { insecure: entries })
    }

    /// True when `registry` (`host` or `host:port`) is spoken to over plain HTTP: loopback hosts
    /// on any port, and the hosts named as insecure.
    pub(crate) fn plain_http(&self, registry: &str) -> bool {
        let Some((host, port)) = split_host_port(registry) else {
            return false;
        };
        if is_loopback(host) {
            return true;
        }
        let host = host.to_ascii_lowercase();
        self.insecure
            .iter()
            .any(|(h, p)| *h == host && (p.is_none() || *p == port))
    }

    /// The scheme for `registry`.
    pub(crate) fn scheme(&self, registry: &str) -> &'static str {
        if self.plain_http(registry) {
            "http"
        } else {
            "https"
        }
    }

    /// True when `url` may be used over plain HTTP: its host (with port) is loopback or insecure.
    pub(crate) fn url_allows_plain_http(&self, url: &Url) -> bool {
        let Some(host) = url.host_str() else {
            return false;
        };
        match url.port() {
            Some(port) => self.plain_http(&format!("{host}:{port}")),
            None => self.plain_http(host),
        }
    }
}

/// Splits `host`, `host:port`, `[v6]` or `[v6]:port`. Returns `None` for a bad port.
pub(crate) fn split_host_port(s: &str) -> Option<(&str, Option<u16>)> {
    if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        return match after {
            "" => Some((host, None)),
            p => Some((host, Some(p.strip_prefix(':')?.parse().ok()?))),
        };
    }
    match s.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => Some((host, Some(port.parse().ok()?))),
        Some(_) => None,
        None => Some((s, None)),
    }
}

/// `localhost`, `127.0.0.0/8` and `::1` (brackets already removed).
pub(crate) fn is_loopback(host: &str) -> bool {
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The host that serves the registry API for a normalised registry name.
pub(crate) fn api_host(registry: &str) -> &str {
    match registry {
        "docker.io" | "index.docker.io" => "registry-1.docker.io",
        other => other,
    }
}

/// `scheme://api-host/` for a registry.
pub(crate) fn base_url(policy: &SchemePolicy, registry: &str) -> Result<Url, RegistryError> {
    let text = format!("{}://{}/", policy.scheme(registry), api_host(registry));
    Url::parse(&text).map_err(|e| RegistryError::InvalidRequest {
        host: registry.to_string(),
        reason: format!("not a registry host: {e}"),
    })
}

/// True when `url` is on the same origin (scheme, host, port) as `base`: only such requests
/// carry the registry's credentials (CVE-2020-15157).
pub(crate) fn same_origin(url: &Url, base: &Url) -> bool {
    url.scheme() == base.scheme()
        && url.host_str().map(str::to_ascii_lowercase)
            == base.host_str().map(str::to_ascii_lowercase)
        && url.port_or_known_default() == base.port_or_known_default()
}

/// Builds the shared HTTP client.
pub(crate) fn http_client(
    ca_files: &[PathBuf],
    timeout: Duration,
) -> Result<reqwest::Client, RegistryError> {
    let roots = root_store(ca_files)?;
    // The provider is passed explicitly rather than installed process-wide: a library must not
    // decide the process default, and kube in the same binary needs the same backend anyway.
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| RegistryError::invalid_config("TLS", e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    // reqwest is built without HTTP/2 here; offering h2 would break the handshake.
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];

    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .redirect(redirect_policy())
        .timeout(timeout)
        .connect_timeout(timeout)
        .user_agent(concat!("signet/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| RegistryError::invalid_config("HTTP client", e.to_string()))
}

/// At most [`MAX_REDIRECTS`] hops, and never from HTTPS down to plain HTTP. reqwest itself drops
/// `Authorization` when a redirect leaves the origin.
fn redirect_policy() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| {
        if attempt.previous().len() > MAX_REDIRECTS {
            return attempt.error(format!("more than {MAX_REDIRECTS} redirects"));
        }
        let downgrade = attempt.url().scheme() == "http"
            && attempt.previous().iter().any(|u| u.scheme() == "https");
        if downgrade {
            return attempt.error("redirect from HTTPS to plain HTTP refused");
        }
        attempt.follow()
    })
}

/// System roots plus the extra CA bundles. A missing system bundle is not an error (a
/// distroless image may talk only to registries under `ca_files`); an unreadable extra bundle is.
fn root_store(ca_files: &[PathBuf]) -> Result<rustls::RootCertStore, RegistryError> {
    let mut store = rustls::RootCertStore::empty();
    let (added, _ignored) = store.add_parsable_certificates(system_certificates());
    if added == 0 && ca_files.is_empty() {
        tracing::warn!("no system CA certificates found; HTTPS registries will fail verification");
    }
    for path in ca_files {
        let certs = read_pem_certificates(path)?;
        for cert in certs {
            store.add(cert).map_err(|e| {
                RegistryError::invalid_config(format!("CA file {}", path.display()), e.to_string())
            })?;
        }
    }
    Ok(store)
}

fn read_pem_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, RegistryError> {
    let what = || format!("CA file {}", path.display());
    let bytes =
        std::fs::read(path).map_err(|e| RegistryError::invalid_config(what(), e.to_string()))?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| RegistryError::invalid_config(what(), format!("bad PEM: {e}")))?;
    if certs.is_empty() {
        return Err(RegistryError::invalid_config(
            what(),
            "no CERTIFICATE block",
        ));
    }
    Ok(certs)
}

/// The distribution's CA bundle, found as OpenSSL and rustls-native-certs find it:
/// `SSL_CERT_FILE`, else the first well-known bundle path; plus every file in `SSL_CERT_DIR`.
fn system_certificates() -> Vec<CertificateDer<'static>> {
    const BUNDLES: [&str; 6] = [
        "/etc/ssl/certs/ca-certificates.crt",
        "/etc/pki/tls/certs/ca-bundle.crt",
        "/etc/ssl/ca-bundle.pem",
        "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
        "/etc/ssl/cert.pem",
        "/etc/pki/tls/cacert.pem",
    ];
    let load = |path: &Path| -> Vec<CertificateDer<'static>> {
        std::fs::read(path)
            .map(|bytes| {
                CertificateDer::pem_slice_iter(&bytes)
                    .filter_map(Result::ok)
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut certs = match std::env::var_os("SSL_CERT_FILE") {
        Some(file) => load(Path::new(&file)),
        None => BUNDLES
            .iter()
            .map(|p| load(Path::new(p)))
            .find(|c| !c.is_empty())
            .unwrap_or_default(),
    };
    if let Some(dir) = std::env::var_os("SSL_CERT_DIR")
        && let Ok(entries) = std::fs::read_dir(&dir)
    {
        for entry in entries.flatten() {
            certs.extend(load(&entry.path()));
        }
    }
    certs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts_use_plain_http_on_any_port() {
        let policy = SchemePolicy::new(&[]).unwrap();
        for host in [
            "localhost",
            "localhost:5000",
            "LOCALHOST:1",
            "127.0.0.1:41234",
            "127.1.2.3",
            "[::1]:5000",
            "[::1]",
        ] {
            assert!(policy.plain_http(host), "{host}");
            assert_eq!(policy.scheme(host), "http");
        }
        for host in [
            "docker.io",
            "registry.example.com:5000",
            "10.0.0.1:5000",
            "[::2]:5000",
            "localhost.example.com",
            "128.0.0.1",
        ] {
            assert!(!policy.plain_http(host), "{host}");
            assert_eq!(policy.scheme(host), "https");
        }
    }

    #[test]
    fn insecure_entries_match_host_or_host_and_port() {
        let policy = SchemePolicy::new(&[
            "registry.internal".into(),
            "http://mirror.internal:5000/".into(),
            "[fd00::1]:443".into(),
        ])
        .unwrap();
        assert!(policy.plain_http("registry.internal"));
        assert!(policy.plain_http("Registry.Internal:8080"));
        assert!(policy.plain_http("mirror.internal:5000"));
        assert!(!policy.plain_http("mirror.internal"));
        assert!(!policy.plain_http("mirror.internal:5001"));
        assert!(policy.plain_http("[fd00::1]:443"));
        assert!(!policy.plain_http("[fd00::1]:444"));
        assert!(!policy.plain_http("other.internal"));
    }

    #[test]
    fn bad_insecure_entries_are_rejected() {
        for bad in ["host:notaport", "host/path", "", "a:b:c"] {
            let err = SchemePolicy::new(&[bad.to_string()])
                .unwrap_err()
                .to_string();
            assert!(err.contains("insecure registry"), "{bad}: {err}");
        }
    }

    #[test]
    fn urls_follow_the_scheme_policy() {
        let policy = SchemePolicy::new(&[]).unwrap();
        assert_eq!(
            base_url(&policy, "docker.io").unwrap().as_str(),
            "https://registry-1.docker.io/"
        );
        assert_eq!(
            base_url(&policy, "127.0.0.1:5000").unwrap().as_str(),
            "http://127.0.0.1:5000/"
        );
        assert_eq!(
            base_url(&policy, "ghcr.io").unwrap().as_str(),
            "https://ghcr.io/"
        );
        assert!(policy.url_allows_plain_http(&Url::parse("http://127.0.0.1:9/token").unwrap()));
        assert!(
            !policy.url_allows_plain_http(&Url::parse("http://auth.example.com/token").unwrap())
        );
    }

    #[test]
    fn same_origin_compares_scheme_host_and_port() {
        let base = Url::parse("https://registry.example.com/").unwrap();
        assert!(same_origin(
            &Url::parse("https://REGISTRY.example.com:443/v2/x").unwrap(),
            &base
        ));
        assert!(!same_origin(
            &Url::parse("http://registry.example.com/v2/x").unwrap(),
            &base
        ));
        assert!(!same_origin(
            &Url::parse("https://registry.example.com:8443/v2/x").unwrap(),
            &base
        ));
        assert!(!same_origin(
            &Url::parse("https://s3.example.com/blob").unwrap(),
            &base
        ));
    }

    #[test]
    fn ca_files_must_hold_certificates() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let err = http_client(&[empty], Duration::from_secs(1))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("empty.pem") && err.contains("no CERTIFICATE"),
            "{err}"
        );
        let missing = dir.path().join("missing.pem");
        let err = http_client(&[missing], Duration::from_secs(1))
            .unwrap_err()
            .to_string();
        assert!(err.contains("missing.pem"), "{err}");
    }

    #[test]
    fn ca_files_with_a_certificate_are_accepted() {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["registry.test".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, cert.pem()).unwrap();
        assert!(http_client(&[path], Duration::from_secs(1)).is_ok());
    }
}
