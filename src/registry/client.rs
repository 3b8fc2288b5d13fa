//! The registry client: construction, credentials per request, and the one request path every
//! operation goes through (authentication on challenge); reading answers and mapping errors is
//! `responses.rs`.
//!
//! All HTTP goes through one reqwest client built once; per-request credentials are a cheap
//! overlay (`with_credentials`) that shares it, its connection pool and the token cache.

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{
    ACCEPT, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, HeaderValue, WWW_AUTHENTICATE,
};
use reqwest::{Method, StatusCode};
use url::Url;

use super::auth::{
    Challenge, TokenCache, TokenKey, TokenRequest, basic_header, fetch_token, parse_challenges,
};
use super::cred_helper::HelperCache;
use super::credentials::{Credential, CredentialSource, DockerConfig};
use super::error::RegistryError;
use super::lazy_roots::SystemRootPaths;
use super::loopback_tls::LoopbackSchemes;
use super::transport::{SchemePolicy, base_url, http_client, realm_allowed, same_origin};

/// How often a request throttled (HTTP 429, or 503 with `Retry-After`) is sent again.
const RATE_LIMIT_RETRIES: u32 = 2;
/// The longest `Retry-After` waited for; a longer one is answered with the 429 at once.
const RATE_LIMIT_WAIT_MAX: Duration = Duration::from_secs(5);

/// `Retry-After` in seconds (the HTTP-date form is not read: `None`, and the caller waits 1 s).
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let value = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// How the client reaches registries.
#[derive(Clone, Debug)]
pub struct RegistryOptions {
    /// A docker `config.json` with credentials; when absent, `$DOCKER_CONFIG/config.json`,
    /// else `~/.docker/config.json`, when there.
    pub config_file: Option<PathBuf>,
    /// `$DOCKER_CONFIG`, as the caller read it: its `config.json` is used when `config_file` is
    /// absent.
    pub docker_config_dir: Option<PathBuf>,
    /// `$HOME`, as the caller read it: `~/.docker/config.json` is used when neither
    /// `config_file` nor `docker_config_dir` is given.
    pub home_dir: Option<PathBuf>,
    /// Extra PEM CA bundles trusted in addition to the system roots.
    pub ca_files: Vec<PathBuf>,
    /// `SSL_CERT_FILE`, as the caller read it: the system CA bundle instead of the well-known
    /// paths.
    pub system_ca_file: Option<PathBuf>,
    /// `SSL_CERT_DIR`, as the caller read it: every file in it is added to the system roots.
    pub system_ca_dir: Option<PathBuf>,
    /// Registries (`host` or `host:port`) spoken to over plain HTTP. Loopback hosts always are.
    pub insecure: Vec<String>,
    /// Bound on each HTTP request, connection and body included.
    pub timeout: Duration,
    /// Hosts, besides each registry's own, that may serve its tokens (a `WWW-Authenticate`
    /// Bearer realm): e.g. a separate token service of a self-hosted registry. Docker Hub's
    /// `auth.docker.io` is built in. A realm elsewhere is refused: an attacker's registry could
    /// otherwise point signet's token request at any URL.
    pub token_realm_hosts: Vec<String>,
}

impl Default for RegistryOptions {
    fn default() -> Self {
        RegistryOptions {
            config_file: None,
            docker_config_dir: None,
            home_dir: None,
            ca_files: Vec::new(),
            system_ca_file: None,
            system_ca_dir: None,
            insecure: Vec::new(),
            timeout: Duration::from_secs(10),
            token_realm_hosts: Vec::new(),
        }
    }
}

/// An OCI distribution client. Cheap to clone; clones share connections and tokens.
#[derive(Clone)]
pub struct RegistryClient {
    pub(crate) shared: Arc<Shared>,
    /// Looked up in order: per-request overlays first, the configured file last.
    credentials: Arc<Vec<Arc<DockerConfig>>>,
}

pub(crate) struct Shared {
    http: reqwest::Client,
    schemes: SchemePolicy,
    pub(crate) timeout: Duration,
    tokens: TokenCache,
    /// [`RegistryOptions::token_realm_hosts`], lower-cased.
    realm_hosts: Vec<String>,
    /// The last challenge seen per registry, so that later requests authenticate up front
    /// instead of collecting a 401 first (which would also send push bodies twice).
    challenges: Mutex<HashMap<String, Challenge>>,
    /// Answers of docker credential helpers.
    helpers: HelperCache,
    /// Whether each loopback registry speaks TLS, as found out by its first request.
    loopback: LoopbackSchemes,
    /// Registries seen answering the referrers API with "not implemented", and when: their
    /// referrers are read through the fallback tag directly for a while (one request less).
    no_referrers_api: Mutex<HashMap<String, std::time::Instant>>,
    /// Registries seen refusing a blob in the upload's first request (202 to a POST with
    /// `digest`): their uploads are a POST then a PUT, without sending the body twice.
    no_single_post: Mutex<std::collections::HashSet<String>>,
    /// Media type and size of manifests fetched by [`RegistryClient::resolve_manifest`]
    /// (`registry/repository@digest`; the bytes hashed to the digest): a Notation payload is
    /// checked against them without fetching the manifest again.
    manifest_descriptors: Mutex<HashMap<String, (String, u64)>>,
    /// HTTP requests sent (every attempt, authentication retries included): what a caller
    /// measures registry cost with.
    requests: std::sync::atomic::AtomicU64,
}

/// How long a registry without the referrers API is not asked again.
const NO_REFERRERS_API_TTL: Duration = Duration::from_secs(600);

impl fmt::Debug for RegistryClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryClient")
            .field("timeout", &self.shared.timeout)
            .field("credential_sets", &self.credentials.len())
            .finish()
    }
}

/// What a request needs permission for: decides the token scope.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Access {
    Pull,
    Push,
    Catalog,
}

/// One request to a registry.
pub(crate) struct Call<'a> {
    pub(crate) registry: &'a str,
    pub(crate) repository: &'a str,
    pub(crate) access: Access,
    pub(crate) method: Method,
    pub(crate) url: Url,
    pub(crate) accept: Option<&'a str>,
    pub(crate) content_type: Option<&'a str>,
    pub(crate) body: Option<Bytes>,
}

impl<'a> Call<'a> {
    /// The same call to another URL.
    fn with_url(&self, url: Url) -> Call<'a> {
        Call {
            registry: self.registry,
            repository: self.repository,
            access: self.access,
            method: self.method.clone(),
            url,
            accept: self.accept,
            content_type: self.content_type,
            body: self.body.clone(),
        }
    }

    fn scope(&self) -> String {
        match self.access {
            Access::Pull => format!("repository:{}:pull", self.repository),
            Access::Push => format!("repository:{}:pull,push", self.repository),
            Access::Catalog => "registry:catalog:*".to_string(),
        }
    }

    /// What was refused, for `Unauthorized` messages.
    pub(crate) fn target(&self) -> String {
        match self.access {
            Access::Pull => format!("pull of {}", self.repository),
            Access::Push => format!("push to {}", self.repository),
            Access::Catalog => "the catalog".to_string(),
        }
    }
}

impl RegistryClient {
    /// Builds the client: TLS (system roots plus `ca_files`), the plain-HTTP policy, and the
    /// credentials from `config_file`, `docker_config_dir/config.json` or
    /// `home_dir/.docker/config.json` (see [`DockerConfig::load`]).
    pub fn new(options: &RegistryOptions) -> Result<Self, RegistryError> {
        let credentials = DockerConfig::load(
            options.config_file.as_deref(),
            options.docker_config_dir.as_deref(),
            options.home_dir.as_deref(),
        )?;
        Self::with_config(options, credentials)
    }

    /// Builds the client with exactly these credentials; `options.config_file` and
    /// `options.docker_config_dir` are not read.
    pub fn with_config(
        options: &RegistryOptions,
        credentials: DockerConfig,
    ) -> Result<Self, RegistryError> {
        let shared = Shared {
            http: http_client(
                &options.ca_files,
                SystemRootPaths {
                    file: options.system_ca_file.clone(),
                    dir: options.system_ca_dir.clone(),
                },
                options.timeout,
            )?,
            schemes: SchemePolicy::new(&options.insecure)?,
            timeout: options.timeout,
            tokens: TokenCache::default(),
            realm_hosts: options
                .token_realm_hosts
                .iter()
                .map(|h| h.trim().to_ascii_lowercase())
                .filter(|h| !h.is_empty())
                .collect(),
            challenges: Mutex::new(HashMap::new()),
            helpers: HelperCache::default(),
            loopback: LoopbackSchemes::default(),
            no_referrers_api: Mutex::new(HashMap::new()),
            no_single_post: Mutex::new(std::collections::HashSet::new()),
            manifest_descriptors: Mutex::new(HashMap::new()),
            requests: std::sync::atomic::AtomicU64::new(0),
        };
        Ok(RegistryClient {
            shared: Arc::new(shared),
            credentials: Arc::new(vec![Arc::new(credentials)]),
        })
    }

    /// A client that tries `extra` before this client's credentials (e.g. a pod's
    /// imagePullSecrets). Shares the connection pool, TLS configuration and token cache; tokens
    /// stay separate per credential, so one request's secret never serves another's.
    pub fn with_credentials(&self, extra: &DockerConfig) -> Self {
        if extra.is_empty() {
            return self.clone();
        }
        let mut layers = Vec::with_capacity(self.credentials.len() + 1);
        layers.push(Arc::new(extra.clone()));
        layers.extend(self.credentials.iter().cloned());
        RegistryClient {
            shared: Arc::clone(&self.shared),
            credentials: Arc::new(layers),
        }
    }

    /// The credential for `registry`: from the first layer that has one (stored, or from a
    /// credential helper), else none. A helper that fails is an error, not anonymous access.
    async fn credential(&self, registry: &str) -> Result<Option<Credential>, RegistryError> {
        for layer in self.credentials.iter() {
            match layer.lookup(registry) {
                CredentialSource::Anonymous => {}
                CredentialSource::Stored(credential) => return Ok(Some(credential.clone())),
                CredentialSource::Helper {
                    helper,
                    server_url,
                    fallback,
                    named_in,
                } => {
                    let answer = self
                        .shared
                        .helpers
                        .get(helper, &server_url, registry, named_in, self.shared.timeout)
                        .await?;
                    if let Some(credential) = answer.or_else(|| fallback.cloned()) {
                        return Ok(Some(credential));
                    }
                }
            }
        }
        Ok(None)
    }

    /// `scheme://api-host/` for a registry: a loopback registry found to speak TLS is reached
    /// over HTTPS.
    pub(crate) fn base_url(&self, registry: &str) -> Result<Url, RegistryError> {
        let url = base_url(&self.shared.schemes, registry)?;
        Ok(self.shared.loopback.adjust(registry, url))
    }

    /// Finds out, once per loopback registry, whether it speaks TLS (see [`LoopbackSchemes`]).
    /// Called before a registry's first request; later ones reuse the answer.
    pub(crate) async fn learn_scheme(&self, registry: &str) {
        if self.shared.schemes.may_probe_tls(registry) {
            self.shared
                .loopback
                .learn(&self.shared.http, registry, self.shared.timeout)
                .await;
        }
    }

    /// `base/v2/<path>`.
    pub(crate) fn v2_url(&self, registry: &str, path: &str) -> Result<Url, RegistryError> {
        self.base_url(registry)?
            .join(&format!("v2/{path}"))
            .map_err(|e| RegistryError::InvalidRequest {
                host: registry.to_string(),
                reason: format!("bad path {path:?}: {e}"),
            })
    }

    /// HTTP requests this client (and its clones) sent so far.
    pub fn requests_sent(&self) -> u64 {
        self.shared
            .requests
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Whether `registry` takes a blob in the upload's first request (not known otherwise).
    pub(crate) fn may_take_single_post(&self, registry: &str) -> bool {
        let refused = self
            .shared
            .no_single_post
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        !refused.contains(registry)
    }

    /// Remembers that `registry` wants a POST then a PUT for every upload.
    pub(crate) fn remember_no_single_post(&self, registry: &str) {
        let mut refused = self
            .shared
            .no_single_post
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if refused.len() > 10_000 {
            refused.clear();
        }
        refused.insert(registry.to_string());
    }

    /// The media type and size of `repository@digest` of `registry`, when this client resolved
    /// it by fetching it lately.
    pub(crate) fn known_descriptor(
        &self,
        registry: &str,
        repository: &str,
        digest: &str,
    ) -> Option<(String, u64)> {
        let known = self
            .shared
            .manifest_descriptors
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        known
            .get(&format!("{registry}/{repository}@{digest}"))
            .cloned()
    }

    /// Remembers the media type and size of a manifest fetched (its bytes hashed to `digest`).
    pub(crate) fn remember_descriptor(
        &self,
        registry: &str,
        repository: &str,
        digest: &str,
        descriptor: (String, u64),
    ) {
        let mut known = self
            .shared
            .manifest_descriptors
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if known.len() > 10_000 {
            known.clear();
        }
        known.insert(format!("{registry}/{repository}@{digest}"), descriptor);
    }

    /// Whether `registry` answered the referrers API with "not implemented" lately.
    pub(crate) fn lacks_referrers_api(&self, registry: &str) -> bool {
        let known = self
            .shared
            .no_referrers_api
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        known
            .get(registry)
            .is_some_and(|since| since.elapsed() < NO_REFERRERS_API_TTL)
    }

    /// Remembers that `registry` has no referrers API.
    pub(crate) fn remember_no_referrers_api(&self, registry: &str) {
        let mut known = self
            .shared
            .no_referrers_api
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if known.len() > 10_000 {
            known.clear();
        }
        known.insert(registry.to_string(), std::time::Instant::now());
    }

    fn known_challenge(&self, registry: &str) -> Option<Challenge> {
        let challenges = self
            .shared
            .challenges
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        challenges.get(registry).cloned()
    }

    fn remember_challenge(&self, registry: &str, challenge: &Challenge) {
        let mut challenges = self
            .shared
            .challenges
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        challenges.insert(registry.to_string(), challenge.clone());
    }

    /// Sends a request, authenticating as the registry asks: with a known challenge up front,
    /// else after the first 401 (then once more). Requests that leave the registry's origin
    /// (an upload `Location` on object storage) carry no credentials.
    pub(crate) async fn send(&self, call: &Call<'_>) -> Result<reqwest::Response, RegistryError> {
        let mut waited = 0;
        loop {
            let response = self.send_authorized(call).await?;
            let asked = retry_after(response.headers());
            let throttled = match response.status() {
                StatusCode::TOO_MANY_REQUESTS => true,
                // A 503 is a failure unless the registry says when to come back.
                StatusCode::SERVICE_UNAVAILABLE => asked.is_some(),
                _ => false,
            };
            if !throttled || waited == RATE_LIMIT_RETRIES {
                return Ok(response);
            }
            // Throttled (Docker Hub, ECR...): wait as asked when that is short, else give up now
            // (the caller's deadline is usually closer than a long Retry-After).
            let delay = asked.unwrap_or(Duration::from_secs(1));
            if delay > RATE_LIMIT_WAIT_MAX {
                return Ok(response);
            }
            tracing::info!(
                registry = call.registry,
                delay_ms = delay.as_millis() as u64,
                status = response.status().as_u16(),
                "registry throttled the request; waiting as its Retry-After asks"
            );
            tokio::time::sleep(delay).await;
            waited += 1;
        }
    }

    /// One request with authentication (and one retry after a 401 challenge).
    async fn send_authorized(&self, call: &Call<'_>) -> Result<reqwest::Response, RegistryError> {
        self.learn_scheme(call.registry).await;
        let base = self.base_url(call.registry)?;
        // A URL built before the registry was found to speak TLS moves to HTTPS with it.
        let upgraded;
        let call = match self.shared.loopback.upgrade(call.registry, &call.url) {
            Some(url) => {
                upgraded = call.with_url(url);
                &upgraded
            }
            None => call,
        };
        let on_registry = same_origin(&call.url, &base);
        let credential = if on_registry {
            self.credential(call.registry).await?
        } else {
            None
        };
        let credential = credential.as_ref();
        let key = TokenKey {
            identity: credential.map_or_else(|| "anonymous".to_string(), Credential::fingerprint),
            registry: call.registry.to_string(),
            scope: call.scope(),
        };
        let first_auth = match self.known_challenge(call.registry) {
            Some(challenge) if on_registry => {
                self.authorization(call, &challenge, credential, &key)
                    .await?
            }
            _ => None,
        };
        let response = self.send_once(call, first_auth.as_deref()).await?;
        if response.status() != StatusCode::UNAUTHORIZED || !on_registry {
            return Ok(response);
        }
        let headers = response.headers().get_all(WWW_AUTHENTICATE);
        let Some(challenge) = parse_challenges(headers.iter().filter_map(|v| v.to_str().ok()))
        else {
            return Ok(response);
        };
        self.remember_challenge(call.registry, &challenge);
        // A token that was just refused (revoked, or expired early) must not be offered again.
        self.shared.tokens.remove(&key);
        let retry_auth = self
            .authorization(call, &challenge, credential, &key)
            .await?;
        if retry_auth.is_none() || retry_auth == first_auth {
            return Ok(response);
        }
        self.send_once(call, retry_auth.as_deref()).await
    }

    /// The `Authorization` value answering `challenge`, fetching a token when needed.
    async fn authorization(
        &self,
        call: &Call<'_>,
        challenge: &Challenge,
        credential: Option<&Credential>,
        key: &TokenKey,
    ) -> Result<Option<String>, RegistryError> {
        let (realm, service) = match challenge {
            Challenge::Basic => {
                return Ok(match credential {
                    Some(Credential::Basic { username, password }) => {
                        Some(basic_header(username, password))
                    }
                    _ => None,
                });
            }
            Challenge::Bearer { realm, service } => (realm, service),
        };
        if let Some(Credential::RegistryToken { token }) = credential {
            return Ok(Some(format!("Bearer {token}")));
        }
        if let Some(token) = self.shared.tokens.get(key) {
            return Ok(Some(format!("Bearer {token}")));
        }
        let target = call.target();
        let realm_url = Url::parse(realm).map_err(|e| {
            RegistryError::bad_response(
                call.registry,
                &target,
                format!("token realm {realm:?} is not a URL: {e}"),
            )
        })?;
        let realm_ok = realm_url.scheme() == "https"
            || (realm_url.scheme() == "http"
                && self.shared.schemes.url_allows_plain_http(&realm_url));
        if !realm_ok {
            return Err(RegistryError::bad_response(
                call.registry,
                &target,
                format!("token realm {realm_url} is not HTTPS; no credentials are sent there"),
            ));
        }
        let base = self.base_url(call.registry)?;
        if !realm_allowed(call.registry, &base, &realm_url, &self.shared.realm_hosts) {
            tracing::warn!(registry = call.registry, realm = %realm_url, "token realm on another host refused");
            return Err(RegistryError::bad_response(
                call.registry,
                &target,
                format!(
                    "token realm host {} is not the registry's own host nor a configured token realm host (--registry-token-realm-host); no token request sent",
                    realm_url.host_str().unwrap_or("?")
                ),
            ));
        }
        let realm_on_registry = realm_url.host_str().map(str::to_ascii_lowercase)
            == base.host_str().map(str::to_ascii_lowercase);
        let token = fetch_token(TokenRequest {
            http: &self.shared.http,
            registry: call.registry,
            realm: &realm_url,
            service: service.as_deref(),
            scope: &key.scope,
            credential,
            timeout: self.shared.timeout,
            target: &target,
            realm_on_registry,
        })
        .await?;
        let header = format!("Bearer {}", token.value);
        self.shared.tokens.insert(key.clone(), token);
        Ok(Some(header))
    }

    async fn send_once(
        &self,
        call: &Call<'_>,
        authorization: Option<&str>,
    ) -> Result<reqwest::Response, RegistryError> {
        self.shared
            .requests
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // One line per request sent (method and path, never headers): how request counts are
        // taken apart (`RUST_LOG=signet::registry::requests=trace`).
        tracing::trace!(
            target: "signet::registry::requests",
            method = %call.method,
            path = call.url.path(),
            "registry request"
        );
        let mut request = self
            .shared
            .http
            .request(call.method.clone(), call.url.clone());
        if let Some(accept) = call.accept {
            request = request.header(ACCEPT, accept);
        }
        if let Some(content_type) = call.content_type {
            request = request.header(CONTENT_TYPE, content_type);
        }
        if let Some(value) = authorization {
            let mut value =
                HeaderValue::from_str(value).map_err(|_| RegistryError::Unauthorized {
                    host: call.registry.to_string(),
                    target: call.target(),
                    detail: "credential or token holds characters not allowed in an HTTP header"
                        .into(),
                })?;
            // Keeps the value out of any Debug output of the request.
            value.set_sensitive(true);
            request = request.header(AUTHORIZATION, value);
        }
        request = match &call.body {
            Some(body) => request.body(body.clone()),
            None if call.method == Method::POST || call.method == Method::PUT => {
                request.header(CONTENT_LENGTH, 0)
            }
            None => request,
        };
        request
            .send()
            .await
            .map_err(|e| RegistryError::transport(call.registry, &e, self.shared.timeout))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A call of `access` to `registry.example.com/prod/app`.
    pub(crate) fn call(access: Access) -> Call<'static> {
        Call {
            registry: "registry.example.com",
            repository: "prod/app",
            access,
            method: Method::GET,
            url: Url::parse("https://registry.example.com/v2/prod/app/tags/list").unwrap(),
            accept: None,
            content_type: None,
            body: None,
        }
    }

    #[test]
    fn scopes_follow_the_docker_token_spec() {
        assert_eq!(call(Access::Pull).scope(), "repository:prod/app:pull");
        assert_eq!(call(Access::Push).scope(), "repository:prod/app:pull,push");
        assert_eq!(call(Access::Catalog).scope(), "registry:catalog:*");
    }

    #[test]
    fn client_is_send_sync_and_cheap_to_clone() {
        fn check<T: Send + Sync + Clone + 'static>() {}
        check::<RegistryClient>();
    }

    #[tokio::test]
    async fn per_request_credentials_come_first_and_share_the_transport() {
        let mut base = DockerConfig::new();
        base.insert(
            "r.example",
            Credential::Basic {
                username: "base".into(),
                password: "p".into(),
            },
        );
        base.insert(
            "only-base.example",
            Credential::Basic {
                username: "base".into(),
                password: "p".into(),
            },
        );
        let client = RegistryClient::with_config(&RegistryOptions::default(), base).unwrap();
        let mut extra = DockerConfig::new();
        extra.insert(
            "r.example",
            Credential::Basic {
                username: "pod".into(),
                password: "q".into(),
            },
        );
        let per_request = client.with_credentials(&extra);
        assert!(Arc::ptr_eq(&client.shared, &per_request.shared));
        async fn user(c: &RegistryClient, host: &str) -> Option<String> {
            match c.credential(host).await.unwrap() {
                Some(Credential::Basic { username, .. }) => Some(username),
                _ => None,
            }
        }
        assert_eq!(
            user(&per_request, "r.example").await.as_deref(),
            Some("pod")
        );
        assert_eq!(
            user(&per_request, "only-base.example").await.as_deref(),
            Some("base")
        );
        assert_eq!(user(&client, "r.example").await.as_deref(), Some("base"));
        assert_eq!(user(&per_request, "none.example").await, None);
        let debug = format!("{per_request:?}");
        assert!(!debug.contains("pod") && !debug.contains("base"), "{debug}");
    }
}
