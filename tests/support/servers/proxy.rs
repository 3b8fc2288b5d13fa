//! The corrupting (or authenticating, or recording) proxy in front of a test registry: an axum
//! router forwarding with reqwest.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use base64::Engine as _;

use super::{Log, RecordedRequest, ServerThread, record};

/// How the proxy alters manifest and blob bodies (GETs answered with 2xx).
#[derive(Clone, Debug)]
pub enum Tamper {
    /// Forward unchanged (a recording proxy).
    None,
    /// Flip one bit of the middle byte; length and headers stay as the registry sent them.
    FlipByte,
    /// Serve this body instead (Content-Length follows it; every other header is kept).
    ReplaceBody(Vec<u8>),
}

/// Authentication the proxy demands before forwarding (the registry behind it has none).
#[derive(Clone, Debug)]
pub enum ProxyAuth {
    /// None: forward everything.
    None,
    /// HTTP Basic with these credentials.
    Basic { username: String, password: String },
    /// The docker token protocol: `401` with a Bearer challenge whose realm is the proxy's own
    /// `/token`. A GET there grants a token for these Basic credentials (to anyone when
    /// `None`); a POST for this OAuth2 refresh token (`grant_type=refresh_token`).
    Bearer {
        credentials: Option<(String, String)>,
        refresh_token: Option<String>,
    },
}

/// How the proxy pages tag lists. distribution 2.8 ignores `n` and `last` on tag lists and
/// always answers everything unsorted; the proxy can stand in for a registry that pages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TagPages {
    /// Forward the registry's answer.
    Upstream,
    /// Sorted pages of `n` after `last`, with `Link: <...>; rel="next"` while more remain.
    WithLink,
    /// Sorted pages of `n` after `last`, without `Link` (the client must continue with `last`).
    WithoutLink,
}

/// A fault a running proxy can be switched into and out of (soak runs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Forward as the options say.
    None,
    /// Hold every answer this long before sending it.
    Slow(std::time::Duration),
    /// Answer every `/v2/` request `500 Internal Server Error`.
    InternalError,
}

/// The switch of a proxy's [`Fault`], shared with whoever flips it.
#[derive(Clone, Debug)]
pub struct FaultSwitch(Arc<std::sync::Mutex<Fault>>);

impl Default for FaultSwitch {
    fn default() -> Self {
        FaultSwitch(Arc::new(std::sync::Mutex::new(Fault::None)))
    }
}

impl FaultSwitch {
    /// Switches the proxy into `fault` (or back, with [`Fault::None`]).
    pub fn set(&self, fault: Fault) {
        *self.0.lock().expect("fault switch") = fault;
    }

    fn get(&self) -> Fault {
        *self.0.lock().expect("fault switch")
    }
}

/// What the proxy does.
#[derive(Clone, Debug)]
pub struct ProxyOptions {
    pub manifests: Tamper,
    pub blobs: Tamper,
    pub auth: ProxyAuth,
    pub tag_pages: TagPages,
    /// Drop `Docker-Content-Digest` from every answer (a registry that does not send it).
    pub strip_digest_header: bool,
    /// Until this instant, answer every `/v2/` request `429 Too Many Requests` with
    /// `Retry-After: 1` and docker's `TOOMANYREQUESTS` error, as a throttling registry does.
    pub throttle_until: Option<std::time::Instant>,
    /// A fault to switch on and off while the proxy runs.
    pub faults: FaultSwitch,
}

impl ProxyOptions {
    /// Forward everything unchanged, no authentication.
    pub fn passthrough() -> Self {
        ProxyOptions {
            manifests: Tamper::None,
            blobs: Tamper::None,
            auth: ProxyAuth::None,
            tag_pages: TagPages::Upstream,
            strip_digest_header: false,
            throttle_until: None,
            faults: FaultSwitch::default(),
        }
    }
}

/// The token the Bearer mode hands out and expects.
const PROXY_TOKEN: &str = "test-token-7f3a";

/// An HTTP forwarder in front of a registry; see [`ProxyOptions`].
pub struct CorruptingProxy {
    server: ServerThread,
    log: Log,
}

impl CorruptingProxy {
    /// Flips a byte of every manifest and blob body served.
    pub fn start(upstream_host: &str) -> Self {
        Self::start_with(
            upstream_host,
            ProxyOptions {
                manifests: Tamper::FlipByte,
                blobs: Tamper::FlipByte,
                ..ProxyOptions::passthrough()
            },
        )
    }

    /// Forwards unchanged and records every request.
    pub fn recording(upstream_host: &str) -> Self {
        Self::start_with(upstream_host, ProxyOptions::passthrough())
    }

    /// Demands `auth` and forwards unchanged.
    pub fn authenticating(upstream_host: &str, auth: ProxyAuth) -> Self {
        Self::start_with(
            upstream_host,
            ProxyOptions {
                auth,
                ..ProxyOptions::passthrough()
            },
        )
    }

    pub fn start_with(upstream_host: &str, options: ProxyOptions) -> Self {
        let log: Log = Arc::default();
        let recorded = Arc::clone(&log);
        let upstream = upstream_host.to_string();
        let server = ServerThread::router(move |own_addr| {
            let bearer = matches!(options.auth, ProxyAuth::Bearer { .. });
            let state = Arc::new(Proxy {
                upstream,
                own_addr,
                options,
                http: super::super::image::plain_http_client(),
            });
            let mut router = Router::new().fallback(proxy);
            if bearer {
                router = router.route("/token", any(token));
            }
            router
                .with_state(state)
                .layer(axum::middleware::from_fn_with_state(recorded, record))
        });
        CorruptingProxy { server, log }
    }

    /// `127.0.0.1:PORT`: use it as the registry host of image references.
    pub fn host(&self) -> String {
        self.server.host()
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.log.lock().expect("request log").clone()
    }

    /// `METHOD target` of every request received so far.
    pub fn request_lines(&self) -> Vec<String> {
        self.requests()
            .iter()
            .map(|r| format!("{} {}", r.method, r.target))
            .collect()
    }
}

struct Proxy {
    upstream: String,
    own_addr: SocketAddr,
    options: ProxyOptions,
    /// Plain HTTP to the registry; never follows redirects (the client under test does).
    http: reqwest::Client,
}

/// A registry's answer as the proxy got it.
struct Upstream {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Upstream {
    fn into_response(self) -> Response {
        let mut response = Response::new(Body::from(self.body));
        *response.status_mut() = self.status;
        *response.headers_mut() = self.headers;
        response
    }
}

/// Every request but the token endpoint: check authentication, then page tags or forward.
async fn proxy(State(proxy): State<Arc<Proxy>>, request: Request) -> Response {
    let options = &proxy.options;
    if let Some(refusal) = challenge(&proxy, request.headers()) {
        return refusal;
    }
    if options
        .throttle_until
        .is_some_and(|until| std::time::Instant::now() < until)
    {
        let mut response = json(
            StatusCode::TOO_MANY_REQUESTS,
            r#"{"errors":[{"code":"TOOMANYREQUESTS","message":"pull rate limit exceeded"}]}"#,
        );
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return response;
    }
    match options.faults.get() {
        Fault::None => {}
        Fault::Slow(delay) => tokio::time::sleep(delay).await,
        Fault::InternalError => {
            return json(
                StatusCode::INTERNAL_SERVER_ERROR,
                r#"{"errors":[{"code":"UNKNOWN","message":"injected fault"}]}"#,
            );
        }
    }
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    let path = parts.uri.path().to_string();
    let target = parts
        .uri
        .path_and_query()
        .map_or("/", |pq| pq.as_str())
        .to_string();

    if parts.method == Method::GET
        && path.ends_with("/tags/list")
        && options.tag_pages != TagPages::Upstream
    {
        return tag_page(&proxy, &parts.headers, &path, &target).await;
    }

    let mut response = match forward(&proxy, &parts.method, &target, &parts.headers, body).await {
        Ok(response) => response,
        Err(e) => return (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    };
    if options.strip_digest_header {
        response.headers.remove("docker-content-digest");
    }
    if parts.method == Method::GET && response.status.is_success() {
        let tamper = if path.contains("/manifests/") {
            &options.manifests
        } else if path.contains("/blobs/") && !path.contains("/blobs/uploads") {
            &options.blobs
        } else {
            &Tamper::None
        };
        match tamper {
            Tamper::None => {}
            Tamper::FlipByte => {
                if !response.body.is_empty() {
                    let middle = response.body.len() / 2;
                    response.body[middle] ^= 0x01;
                }
            }
            Tamper::ReplaceBody(body) => {
                response.body = body.clone();
                response
                    .headers
                    .insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
            }
        }
    }
    response.into_response()
}

/// Sends the request on to the registry with the client's `Host` (so that the `Location`s the
/// registry builds point at the proxy) and without `Authorization`.
async fn forward(
    proxy: &Proxy,
    method: &Method,
    target: &str,
    headers: &HeaderMap,
    body: Bytes,
) -> Result<Upstream, reqwest::Error> {
    let mut sent = headers.clone();
    for hop in [
        header::AUTHORIZATION,
        header::CONNECTION,
        header::CONTENT_LENGTH,
        header::TRANSFER_ENCODING,
    ] {
        sent.remove(hop);
    }
    let response = proxy
        .http
        .request(method.clone(), format!("http://{}{target}", proxy.upstream))
        .headers(sent)
        .body(body)
        .send()
        .await?;
    let status = response.status();
    let mut headers = response.headers().clone();
    // The body goes back whole; Content-Length stays as the registry sent it (a HEAD's too).
    headers.remove(header::CONNECTION);
    headers.remove(header::TRANSFER_ENCODING);
    let body = response.bytes().await?.to_vec();
    Ok(Upstream {
        status,
        headers,
        body,
    })
}

/// Serves one page of a tag list the way a paginating registry does, from the full list.
async fn tag_page(proxy: &Proxy, headers: &HeaderMap, path: &str, target: &str) -> Response {
    let query_url = url::Url::parse(&format!("http://proxy{target}")).expect("request target");
    let param = |name: &str| {
        query_url
            .query_pairs()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.to_string())
    };
    let n: usize = param("n")
        .and_then(|v| v.parse().ok())
        .unwrap_or(usize::MAX);
    let last = param("last");
    let upstream = match forward(proxy, &Method::GET, path, headers, Bytes::new()).await {
        Ok(upstream) if upstream.status == StatusCode::OK => upstream,
        Ok(other) => return other.into_response(),
        Err(e) => return (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    };
    let listing: serde_json::Value =
        serde_json::from_slice(&upstream.body).expect("tag list JSON from the registry");
    let mut tags: Vec<String> = listing["tags"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|t| t.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    tags.sort();
    let after: Vec<String> = tags
        .into_iter()
        .filter(|t| last.as_ref().is_none_or(|l| t > l))
        .collect();
    let page: Vec<String> = after.iter().take(n).cloned().collect();
    let body = serde_json::json!({"name": listing["name"], "tags": page}).to_string();
    let mut response = json(StatusCode::OK, body);
    if proxy.options.tag_pages == TagPages::WithLink
        && after.len() > page.len()
        && let Some(last_of_page) = page.last()
    {
        let link = format!("<{path}?n={n}&last={last_of_page}>; rel=\"next\"");
        response.headers_mut().insert(
            header::LINK,
            HeaderValue::from_str(&link).expect("Link header"),
        );
    }
    response
}

/// An `application/json` answer.
fn json(status: StatusCode, body: impl Into<String>) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.into(),
    )
        .into_response()
}

fn basic(user: &str, pass: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
    )
}

fn authorization(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
}

/// The `401` to send with its challenge, or `None` when the request may pass.
fn challenge(proxy: &Proxy, headers: &HeaderMap) -> Option<Response> {
    let unauthorized = |challenge: String| {
        let mut response = json(
            StatusCode::UNAUTHORIZED,
            r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#,
        );
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_str(&challenge).expect("challenge header"),
        );
        response
    };
    match &proxy.options.auth {
        ProxyAuth::None => None,
        ProxyAuth::Basic { username, password } => {
            if authorization(headers) == Some(basic(username, password).as_str()) {
                None
            } else {
                Some(unauthorized(r#"Basic realm="test registry""#.to_string()))
            }
        }
        ProxyAuth::Bearer { .. } => {
            if authorization(headers) == Some(format!("Bearer {PROXY_TOKEN}").as_str()) {
                None
            } else {
                Some(unauthorized(format!(
                    r#"Bearer realm="http://{}/token",service="test-registry""#,
                    proxy.own_addr
                )))
            }
        }
    }
}

/// The Bearer mode's token endpoint: a GET with the configured Basic credentials (or any, when
/// none are configured), or a POST of the configured OAuth2 refresh token.
async fn token(State(proxy): State<Arc<Proxy>>, request: Request) -> Response {
    let ProxyAuth::Bearer {
        credentials,
        refresh_token,
    } = &proxy.options.auth
    else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let (parts, body) = request.into_parts();
    let allowed = if parts.method == Method::POST {
        let body = axum::body::to_bytes(body, usize::MAX)
            .await
            .unwrap_or_default();
        let form: Vec<(String, String)> = url::form_urlencoded::parse(&body).into_owned().collect();
        let field = |name: &str| {
            form.iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        field("grant_type") == Some("refresh_token")
            && refresh_token.is_some()
            && field("refresh_token") == refresh_token.as_deref()
    } else {
        match credentials {
            None => true,
            Some((u, p)) => authorization(&parts.headers) == Some(basic(u, p).as_str()),
        }
    };
    if allowed {
        json(
            StatusCode::OK,
            format!(r#"{{"token":"{PROXY_TOKEN}","expires_in":300}}"#),
        )
    } else {
        json(
            StatusCode::UNAUTHORIZED,
            r#"{"errors":[{"code":"UNAUTHORIZED","message":"bad credentials"}]}"#,
        )
    }
}
