//! How a registry is reached: which scheme (HTTPS, or plain HTTP for loopback and
//! `--insecure-registry` hosts), which API host (Docker Hub's API lives on
//! `registry-1.docker.io`), and the one shared HTTP client (rustls with aws-lc-rs, system roots
//! plus extra CA bundles, at most 5 redirects, a per-request timeout).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use url::Url;

use super::error::RegistryError;
use super::lazy_roots::{LazyRootsVerifier, SystemRootPaths};

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
    /// on any port (unless found to speak TLS: `loopback_tls`), and the hosts named as insecure.
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

    /// True when `registry` is on a loopback address and not named as insecure: it is asked
    /// whether it speaks TLS before plain HTTP is assumed (see `loopback_tls`).
    pub(crate) fn may_probe_tls(&self, registry: &str) -> bool {
        let Some((host, port)) = split_host_port(registry) else {
            return false;
        };
        if !is_loopback(host) {
            return false;
        }
        let host = host.to_ascii_lowercase();
        !self
            .insecure
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
    system: SystemRootPaths,
    timeout: Duration,
) -> Result<reqwest::Client, RegistryError> {
    // The extra bundles are the user's own input: read and checked now, so a bad one stops the
    // start; the system roots are read at the first handshake (see `lazy_roots`).
    let extra = extra_certificates(ca_files)?;
    // The provider is passed explicitly rather than installed process-wide: a library must not
    // decide the process default, and kube in the same binary needs the same backend anyway.
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verifier = LazyRootsVerifier::new(extra, system, Arc::clone(&provider));
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| RegistryError::invalid_config("TLS", e.to_string()))?
        // Not a weaker check: the WebPKI verifier over the same roots, built when first needed.
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
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

/// Token realms on another host than the registry's that are accepted without configuration:
/// (canonical registry host, realm host).
const WELL_KNOWN_REALM_HOSTS: [(&str, &str); 1] = [("docker.io", "auth.docker.io")];

/// Whether a token realm may be asked for a token on behalf of `registry`: it must be on the
/// registry's own host (its API host, any port), a well-known pair ([`WELL_KNOWN_REALM_HOSTS`]),
/// or a host configured in `extra` (`RegistryOptions::token_realm_hosts`).
///
/// Without this, a registry an attacker controls (any host a policy governs by wildcard) could
/// send signet's token request anywhere: to a cloud metadata service or an internal API, with
/// the answer coming back in the denial (server-side request forgery with reflection).
pub(crate) fn realm_allowed(registry: &str, api_base: &Url, realm: &Url, extra: &[String]) -> bool {
    let Some(realm_host) = realm.host_str().map(str::to_ascii_lowercase) else {
        return false;
    };
    let registry_host = split_host_port(registry).map(|(h, _)| h.to_ascii_lowercase());
    let api_host = api_base.host_str().map(str::to_ascii_lowercase);
    api_host.as_deref() == Some(realm_host.as_str())
        || registry_host.as_deref()
            == Some(realm_host.trim_start_matches('[').trim_end_matches(']'))
        || WELL_KNOWN_REALM_HOSTS
            .iter()
            .any(|(r, h)| *r == registry && *h == realm_host)
        || extra.iter().any(|h| h.eq_ignore_ascii_case(&realm_host))
}

/// Where an address sits, for redirects: a registry may only send signet to a non-public
/// address of the kind it is on itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AddressClass {
    /// A name (not resolved for this check) or a public address.
    Public,
    /// `localhost`, 127.0.0.0/8, `::1`, and the unspecified address (which reaches this host).
    Loopback,
    /// 169.254.0.0/16 and fe80::/10: cloud metadata services live here.
    LinkLocal,
    /// 10/8, 172.16/12, 192.168/16, fc00::/7.
    Private,
}

impl AddressClass {
    fn describe(self) -> &'static str {
        match self {
            AddressClass::Public => "public",
            AddressClass::Loopback => "loopback",
            AddressClass::LinkLocal => "link-local",
            AddressClass::Private => "private",
        }
    }
}

/// The class of a URL's host. Names other than `localhost` are not resolved here (that would
/// need a resolver hook): they count as public.
pub(crate) fn address_class(url: &Url) -> AddressClass {
    match url.host() {
        Some(url::Host::Domain(name)) if name.eq_ignore_ascii_case("localhost") => {
            AddressClass::Loopback
        }
        Some(url::Host::Ipv4(ip)) => ipv4_class(ip),
        Some(url::Host::Ipv6(ip)) => match ip.to_ipv4_mapped() {
            Some(v4) => ipv4_class(v4),
            None => ipv6_class(ip),
        },
        _ => AddressClass::Public,
    }
}

fn ipv4_class(ip: Ipv4Addr) -> AddressClass {
    if ip.is_loopback() || ip.is_unspecified() {
        AddressClass::Loopback
    } else if ip.is_link_local() {
        AddressClass::LinkLocal
    } else if ip.is_private() {
        AddressClass::Private
    } else {
        AddressClass::Public
    }
}

fn ipv6_class(ip: Ipv6Addr) -> AddressClass {
    let first = ip.segments()[0];
    if ip.is_loopback() || ip.is_unspecified() {
        AddressClass::Loopback
    } else if first & 0xffc0 == 0xfe80 {
        AddressClass::LinkLocal
    } else if first & 0xfe00 == 0xfc00 {
        AddressClass::Private
    } else {
        AddressClass::Public
    }
}

/// Why a redirect from `origin` (the first URL of the chain) to `target` is refused, if it is.
/// Checked before any connection to the target.
pub(crate) fn redirect_refusal(origin: &Url, target: &Url) -> Option<String> {
    let to = address_class(target);
    if to == AddressClass::Public || to == address_class(origin) {
        return None;
    }
    Some(format!(
        "redirect to {} refused: a {} address, and the registry is not on one",
        target.host_str().unwrap_or("?"),
        to.describe()
    ))
}

/// At most [`MAX_REDIRECTS`] hops, never from HTTPS down to plain HTTP, and never to a loopback,
/// link-local or private address unless the chain started on one of the same kind (see
/// [`redirect_refusal`]). reqwest itself drops `Authorization` when a redirect leaves the origin.
fn redirect_policy() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| {
        if attempt.previous().len() > MAX_REDIRECTS {
            return attempt.error(format!("more than {MAX_REDIRECTS} redirects"));
        }
        if let Some(origin) = attempt.previous().first()
            && let Some(why) = redirect_refusal(origin, attempt.url())
        {
            return attempt.error(why);
        }
        let downgrade = attempt.url().scheme() == "http"
            && attempt.previous().iter().any(|u| u.scheme() == "https");
        if downgrade {
            return attempt.error("redirect from HTTPS to plain HTTP refused");
        }
        attempt.follow()
    })
}

/// The certificates of the extra CA bundles, each checked to be a usable trust anchor.
fn extra_certificates(ca_files: &[PathBuf]) -> Result<Vec<CertificateDer<'static>>, RegistryError> {
    let mut all = Vec::new();
    for path in ca_files {
        let certs = read_pem_certificates(path)?;
        let mut check = rustls::RootCertStore::empty();
        for cert in certs {
            check.add(cert.clone()).map_err(|e| {
                RegistryError::invalid_config(format!("CA file {}", path.display()), e.to_string())
            })?;
            all.push(cert);
        }
    }
    Ok(all)
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

/// Where the system CA certificates are, as `SSL_CERT_FILE` and `SSL_CERT_DIR` say (the CLI
/// reads those variables; the library does not read the environment).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct SystemRoots<'a> {
    /// A bundle replacing the well-known paths.
    pub file: Option<&'a Path>,
    /// A folder whose every file is added.
    pub dir: Option<&'a Path>,
}

/// The distribution's CA bundle, found as OpenSSL and rustls-native-certs find it:
/// `system.file`, else the first well-known bundle path; plus every file in `system.dir`.
pub(crate) fn system_certificates(system: SystemRoots<'_>) -> Vec<CertificateDer<'static>> {
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
    let mut certs = match system.file {
        Some(file) => load(file),
        None => BUNDLES
            .iter()
            .map(|p| load(Path::new(p)))
            .find(|c| !c.is_empty())
            .unwrap_or_default(),
    };
    if let Some(dir) = system.dir
        && let Ok(entries) = std::fs::read_dir(dir)
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

    /// Review item 9: redirects to metadata services and internal ranges are refused before any
    /// connection, unless the registry is on such an address itself.
    #[test]
    fn redirects_to_internal_addresses_are_refused() {
        let url = |s: &str| Url::parse(s).unwrap();
        let public = url("https://registry.example.com/v2/x/blobs/sha256:1");
        for target in [
            "http://169.254.169.254/latest/meta-data/",
            "https://169.254.169.254/",
            "https://[fe80::1]/",
            "https://10.0.0.1/",
            "https://172.16.0.1/",
            "https://192.168.1.1/",
            "https://[fd00::1]/",
            "http://127.0.0.1:8080/",
            "http://localhost/",
            "http://0.0.0.0/",
            "https://[::ffff:169.254.169.254]/",
        ] {
            let why = redirect_refusal(&public, &url(target)).unwrap_or_else(|| panic!("{target}"));
            assert!(
                why.starts_with("redirect to ") && !why.contains('\n'),
                "{why}"
            );
        }
        for target in [
            "https://s3.amazonaws.com/b",
            "https://8.8.8.8/",
            "https://172.32.0.1/",
        ] {
            assert_eq!(redirect_refusal(&public, &url(target)), None, "{target}");
        }
        // A loopback registry (the tests') may redirect to loopback; a private one to private.
        let loopback = url("http://127.0.0.1:5000/v2/");
        assert_eq!(
            redirect_refusal(&loopback, &url("http://127.0.0.1:9000/x")),
            None
        );
        assert!(redirect_refusal(&loopback, &url("http://169.254.169.254/")).is_some());
        let private = url("https://10.1.2.3/v2/");
        assert_eq!(
            redirect_refusal(&private, &url("https://10.9.9.9/blob")),
            None
        );
        assert!(redirect_refusal(&private, &url("https://169.254.169.254/")).is_some());
    }

    #[test]
    fn token_realms_stay_on_the_registry_or_configured_hosts() {
        let url = |s: &str| Url::parse(s).unwrap();
        let policy = SchemePolicy::new(&[]).unwrap();
        let base = |r: &str| base_url(&policy, r).unwrap();
        assert!(realm_allowed(
            "ghcr.io",
            &base("ghcr.io"),
            &url("https://ghcr.io/token"),
            &[]
        ));
        assert!(realm_allowed(
            "docker.io",
            &base("docker.io"),
            &url("https://auth.docker.io/token"),
            &[]
        ));
        assert!(realm_allowed(
            "127.0.0.1:5000",
            &base("127.0.0.1:5000"),
            &url("http://127.0.0.1:5001/token"),
            &[]
        ));
        assert!(!realm_allowed(
            "evil.example",
            &base("evil.example"),
            &url("https://169.254.169.254/"),
            &[]
        ));
        assert!(!realm_allowed(
            "evil.example",
            &base("evil.example"),
            &url("https://auth.docker.io/token"),
            &[]
        ));
        assert!(!realm_allowed(
            "r.example",
            &base("r.example"),
            &url("https://auth.example/token"),
            &[]
        ));
        assert!(realm_allowed(
            "r.example",
            &base("r.example"),
            &url("https://Auth.Example/token"),
            &["auth.example".to_string()]
        ));
    }

    #[test]
    fn ca_files_must_hold_certificates() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let err = http_client(&[empty], SystemRootPaths::default(), Duration::from_secs(1))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("empty.pem") && err.contains("no CERTIFICATE"),
            "{err}"
        );
        let missing = dir.path().join("missing.pem");
        let err = http_client(
            &[missing],
            SystemRootPaths::default(),
            Duration::from_secs(1),
        )
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
        assert!(http_client(&[path], SystemRootPaths::default(), Duration::from_secs(1)).is_ok());
    }
}
