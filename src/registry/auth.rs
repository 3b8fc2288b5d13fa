//! Registry authentication: `WWW-Authenticate` challenges, the docker token protocol (anonymous,
//! basic credentials, OAuth2 refresh tokens) and a token cache keyed by credential identity.
//!
//! Written here rather than taken from oci-client because oci-client keeps one credential per
//! registry (the first one it saw) and caches tokens by repository alone: with per-request
//! credentials (imagePullSecrets), a token fetched with one namespace's secret would then serve
//! another namespace. Here the cache key includes a hash of the credential.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use url::Url;

use super::credentials::Credential;
use super::error::{RegistryError, body_detail};

/// Largest token-service answer read.
const MAX_TOKEN_RESPONSE_BYTES: usize = 1 << 20;
/// Token lifetime when the service does not say (the docker token spec's default).
const DEFAULT_TOKEN_SECS: u64 = 60;
/// Tokens are dropped this long before they expire, so that a request does not race expiry.
const EXPIRY_MARGIN: Duration = Duration::from_secs(10);
/// Bound on cached tokens; past it, expired entries are dropped, then everything.
const MAX_CACHED_TOKENS: usize = 4096;

/// What a registry asked for in its `WWW-Authenticate` header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Challenge {
    /// Fetch a token from `realm` (docker token protocol).
    Bearer {
        realm: String,
        service: Option<String>,
    },
    /// Send HTTP Basic credentials directly.
    Basic,
}

/// Parses the `WWW-Authenticate` values of a 401 answer; Bearer wins over Basic.
pub(crate) fn parse_challenges<'a>(values: impl Iterator<Item = &'a str>) -> Option<Challenge> {
    let mut basic = false;
    for value in values {
        for (scheme, params) in parse_header(value) {
            if scheme.eq_ignore_ascii_case("bearer") {
                let param = |name: &str| {
                    params
                        .iter()
                        .find(|(k, _)| k.eq_ignore_ascii_case(name))
                        .map(|(_, v)| v.clone())
                };
                if let Some(realm) = param("realm") {
                    return Some(Challenge::Bearer {
                        realm,
                        service: param("service"),
                    });
                }
            } else if scheme.eq_ignore_ascii_case("basic") {
                basic = true;
            }
        }
    }
    basic.then_some(Challenge::Basic)
}

/// Splits one header value into challenges: `scheme k=v, k="v", Scheme2 k=v`.
fn parse_header(input: &str) -> Vec<(String, Vec<(String, String)>)> {
    let bytes = input.as_bytes();
    let mut pos = 0;
    let mut out: Vec<(String, Vec<(String, String)>)> = Vec::new();
    let is_token = |b: u8| !(b.is_ascii_whitespace() || b == b',' || b == b'=' || b == b'"');
    let skip = |pos: &mut usize, extra: u8| {
        while *pos < bytes.len() && (bytes[*pos].is_ascii_whitespace() || bytes[*pos] == extra) {
            *pos += 1;
        }
    };
    let read_token = |pos: &mut usize| -> String {
        let start = *pos;
        while *pos < bytes.len() && is_token(bytes[*pos]) {
            *pos += 1;
        }
        input[start..*pos].to_string()
    };
    loop {
        skip(&mut pos, b',');
        if pos >= bytes.len() {
            return out;
        }
        let scheme = read_token(&mut pos);
        if scheme.is_empty() {
            // Stray `=` or `"`: nothing sensible follows.
            return out;
        }
        let mut params = Vec::new();
        loop {
            skip(&mut pos, b',');
            let before = pos;
            let name = read_token(&mut pos);
            skip(&mut pos, b' ');
            if name.is_empty() || pos >= bytes.len() || bytes[pos] != b'=' {
                // Not `name=`: the start of the next challenge (or the end).
                pos = before;
                break;
            }
            pos += 1;
            skip(&mut pos, b' ');
            let value = if pos < bytes.len() && bytes[pos] == b'"' {
                pos += 1;
                let mut value = String::new();
                let mut chars = input[pos..].char_indices();
                let mut end = input.len() - pos;
                while let Some((i, c)) = chars.next() {
                    match c {
                        '\\' => {
                            if let Some((_, escaped)) = chars.next() {
                                value.push(escaped);
                            }
                        }
                        '"' => {
                            end = i + 1;
                            break;
                        }
                        other => value.push(other),
                    }
                }
                pos += end;
                value
            } else {
                read_token(&mut pos)
            };
            params.push((name, value));
        }
        out.push((scheme, params));
    }
}

/// The value of an `Authorization` header for Basic credentials.
pub(crate) fn basic_header(username: &str, password: &str) -> String {
    format!(
        "Basic {}",
        STANDARD.encode(format!("{username}:{password}"))
    )
}

/// A bearer token with its expiry.
#[derive(Clone)]
pub(crate) struct Token {
    pub(crate) value: String,
    pub(crate) expires: Instant,
}

#[derive(serde::Deserialize)]
struct TokenResponse {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    access_token: Option<String>,
    #[serde(default)]
    expires_in: Option<u64>,
}

/// Everything a token request needs.
pub(crate) struct TokenRequest<'a> {
    pub(crate) http: &'a reqwest::Client,
    pub(crate) registry: &'a str,
    pub(crate) realm: &'a Url,
    pub(crate) service: Option<&'a str>,
    pub(crate) scope: &'a str,
    pub(crate) credential: Option<&'a Credential>,
    pub(crate) timeout: Duration,
    /// What the token is for, in error messages (`pull of prod/app`).
    pub(crate) target: &'a str,
    /// Whether the realm is on the registry's own host: only then does its answer's body go
    /// into error messages (another host's answers are logged instead, see `realm_allowed`).
    pub(crate) realm_on_registry: bool,
}

/// Fetches a token from the realm: GET (anonymous or Basic) or, for an identity token, the
/// OAuth2 refresh-token POST that docker uses.
pub(crate) async fn fetch_token(req: TokenRequest<'_>) -> Result<Token, RegistryError> {
    let target = req.target;
    tracing::debug!(registry = req.registry, scope = req.scope, realm = %req.realm, "fetching a registry token");
    let request = match req.credential {
        Some(Credential::IdentityToken { token }) => {
            let mut form = url::form_urlencoded::Serializer::new(String::new());
            form.append_pair("grant_type", "refresh_token")
                .append_pair("client_id", "signet")
                .append_pair("scope", req.scope)
                .append_pair("refresh_token", token);
            if let Some(service) = req.service {
                form.append_pair("service", service);
            }
            req.http
                .post(req.realm.clone())
                .header(
                    reqwest::header::CONTENT_TYPE,
                    "application/x-www-form-urlencoded",
                )
                .body(form.finish())
        }
        other => {
            let mut url = req.realm.clone();
            {
                let mut query = url.query_pairs_mut();
                if let Some(service) = req.service {
                    query.append_pair("service", service);
                }
                query.append_pair("scope", req.scope);
                if let Some(Credential::Basic { username, .. }) = other {
                    query.append_pair("account", username);
                }
            }
            let builder = req.http.get(url);
            match other {
                Some(Credential::Basic { username, password }) => builder.header(
                    reqwest::header::AUTHORIZATION,
                    basic_header(username, password),
                ),
                _ => builder,
            }
        }
    };
    let mut response = request
        .send()
        .await
        .map_err(|e| RegistryError::transport(req.registry, &e, req.timeout))?;
    let status = response.status();
    let realm_on_registry =
        req.realm_on_registry && response.url().host_str() == req.realm.host_str();
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| RegistryError::transport(req.registry, &e, req.timeout))?
    {
        if body.len() + chunk.len() > MAX_TOKEN_RESPONSE_BYTES {
            return Err(RegistryError::too_large(
                req.registry,
                "token service answer",
                MAX_TOKEN_RESPONSE_BYTES,
            ));
        }
        body.extend_from_slice(&chunk);
    }
    let detail = if realm_on_registry {
        body_detail(&body)
    } else {
        if !status.is_success() {
            tracing::warn!(registry = req.registry, realm = %req.realm, status = status.as_u16(), body = %body_detail(&body), "token service on another host refused");
        }
        "(answer of another host not shown; see the log)".to_string()
    };
    if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
        return Err(RegistryError::Unauthorized {
            host: req.registry.to_string(),
            target: target.to_string(),
            detail: format!(
                "token service {} (HTTP {}): {}",
                if req.credential.is_some() {
                    "refused the credentials"
                } else {
                    "refused anonymous access"
                },
                status.as_u16(),
                detail
            ),
        });
    }
    if !status.is_success() {
        return Err(RegistryError::bad_response(
            req.registry,
            target,
            format!(
                "token service answered HTTP {}: {}",
                status.as_u16(),
                detail
            ),
        ));
    }
    let parsed: TokenResponse = serde_json::from_slice(&body).map_err(|e| {
        RegistryError::bad_response(
            req.registry,
            target,
            format!("token service answer is not JSON: {e}"),
        )
    })?;
    let value = parsed
        .token
        .filter(|t| !t.is_empty())
        .or(parsed.access_token.filter(|t| !t.is_empty()))
        .ok_or_else(|| {
            RegistryError::bad_response(req.registry, target, "token service answer holds no token")
        })?;
    // The spec says a shorter lifetime than 60 s is to be read as 60 s.
    let lifetime = Duration::from_secs(
        parsed
            .expires_in
            .unwrap_or(DEFAULT_TOKEN_SECS)
            .max(DEFAULT_TOKEN_SECS),
    );
    Ok(Token {
        value,
        expires: Instant::now() + lifetime.saturating_sub(EXPIRY_MARGIN),
    })
}

/// Key of a cached token: who asked (credential hash), where, for what.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct TokenKey {
    pub(crate) identity: String,
    pub(crate) registry: String,
    pub(crate) scope: String,
}

/// Bearer tokens shared by every clone of the client.
#[derive(Default)]
pub(crate) struct TokenCache {
    tokens: Mutex<HashMap<TokenKey, Token>>,
}

impl TokenCache {
    pub(crate) fn get(&self, key: &TokenKey) -> Option<String> {
        let tokens = self
            .tokens
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        tokens
            .get(key)
            .filter(|t| t.expires > Instant::now())
            .map(|t| t.value.clone())
    }

    pub(crate) fn insert(&self, key: TokenKey, token: Token) {
        let mut tokens = self
            .tokens
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if tokens.len() >= MAX_CACHED_TOKENS {
            let now = Instant::now();
            tokens.retain(|_, t| t.expires > now);
            if tokens.len() >= MAX_CACHED_TOKENS {
                tokens.clear();
            }
        }
        tokens.insert(key, token);
    }

    pub(crate) fn remove(&self, key: &TokenKey) {
        let mut tokens = self
            .tokens
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        tokens.remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_docker_hub_bearer_challenge() {
        let header = r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/nginx:pull""#;
        assert_eq!(
            parse_challenges([header].into_iter()),
            Some(Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
            })
        );
    }

    #[test]
    fn parses_several_challenges_and_prefers_bearer() {
        let header = r#"Basic realm="Registry Realm", Bearer realm="https://r.example/token", error="invalid_token""#;
        assert_eq!(
            parse_challenges([header].into_iter()),
            Some(Challenge::Bearer {
                realm: "https://r.example/token".into(),
                service: None,
            })
        );
        assert_eq!(
            parse_challenges([r#"Basic realm="Registry Realm""#].into_iter()),
            Some(Challenge::Basic)
        );
        assert_eq!(
            parse_challenges(
                [
                    "Basic realm=x",
                    "bearer REALM=https://t.example/a service=s"
                ]
                .into_iter()
            ),
            Some(Challenge::Bearer {
                realm: "https://t.example/a".into(),
                service: Some("s".into()),
            })
        );
        assert_eq!(parse_challenges(["Negotiate"].into_iter()), None);
        assert_eq!(parse_challenges([""].into_iter()), None);
    }

    #[test]
    fn quoted_values_keep_commas_and_escapes() {
        let parsed = parse_header(r#"Bearer realm="https://t.example/a,b", service="say \"hi\"""#);
        assert_eq!(parsed.len(), 1);
        assert_eq!(
            parsed[0].1,
            vec![
                ("realm".to_string(), "https://t.example/a,b".to_string()),
                ("service".to_string(), r#"say "hi""#.to_string()),
            ]
        );
    }

    #[test]
    fn malformed_headers_do_not_panic() {
        for h in [
            "=",
            "\"",
            "Bearer realm=\"unterminated",
            "Bearer ,,, =x",
            "Bearer realm",
            "  ",
        ] {
            let _ = parse_challenges([h].into_iter());
        }
        assert_eq!(
            parse_challenges(["Bearer realm=\"unterminated"].into_iter()),
            Some(Challenge::Bearer {
                realm: "unterminated".into(),
                service: None
            })
        );
    }

    #[test]
    fn basic_header_encodes_user_and_password() {
        assert_eq!(basic_header("user", "pa:ss"), "Basic dXNlcjpwYTpzcw==");
    }

    #[test]
    fn token_cache_separates_identities_and_drops_expired_tokens() {
        let cache = TokenCache::default();
        let key = |id: &str| TokenKey {
            identity: id.into(),
            registry: "r.example".into(),
            scope: "repository:a:pull".into(),
        };
        cache.insert(
            key("alice"),
            Token {
                value: "t-alice".into(),
                expires: Instant::now() + Duration::from_secs(60),
            },
        );
        cache.insert(
            key("old"),
            Token {
                value: "t-old".into(),
                expires: Instant::now() - Duration::from_secs(1),
            },
        );
        assert_eq!(cache.get(&key("alice")).as_deref(), Some("t-alice"));
        assert_eq!(cache.get(&key("anonymous")), None);
        assert_eq!(cache.get(&key("old")), None);
        cache.remove(&key("alice"));
        assert_eq!(cache.get(&key("alice")), None);
    }
}
