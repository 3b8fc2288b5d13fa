//! Loopback servers for fault tests: the corrupting (or authenticating, or recording) proxy,
//! the black hole and the fixed-status server.
//!
//! Each runs on its own thread with its own tokio runtime, so it keeps serving whatever the
//! test does with its own runtime (even blocking), and stops when dropped.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use base64::Engine as _;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

use super::http1::{self, Request, Response};

/// A request as a test server received it.
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    pub method: String,
    /// Path and query (`/v2/_catalog?n=2`).
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RecordedRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn from(request: &Request) -> Self {
        RecordedRequest {
            method: request.method.clone(),
            target: request.target.clone(),
            headers: request.headers.clone(),
            body: request.body.clone(),
        }
    }
}

type Log = Arc<Mutex<Vec<RecordedRequest>>>;

/// A server thread that stops when dropped.
struct ServerThread {
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl ServerThread {
    fn spawn<F, Fut>(handler: F) -> Self
    where
        F: Fn(TcpStream, SocketAddr) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let std_listener =
            std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        std_listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let addr = std_listener.local_addr().expect("local address");
        let (shutdown, mut stop) = oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("test server runtime");
            runtime.block_on(async move {
                let listener = TcpListener::from_std(std_listener).expect("tokio listener");
                loop {
                    tokio::select! {
                        _ = &mut stop => break,
                        accepted = listener.accept() => {
                            if let Ok((stream, _)) = accepted {
                                tokio::spawn(handler(stream, addr));
                            }
                        }
                    }
                }
            });
        });
        ServerThread {
            addr,
            shutdown: Some(shutdown),
            thread: Some(thread),
        }
    }

    fn host(&self) -> String {
        self.addr.to_string()
    }
}

impl Drop for ServerThread {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

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

/// What the proxy does.
#[derive(Clone, Debug)]
pub struct ProxyOptions {
    pub manifests: Tamper,
    pub blobs: Tamper,
    pub auth: ProxyAuth,
    pub tag_pages: TagPages,
    /// Drop `Docker-Content-Digest` from every answer (a registry that does not send it).
    pub strip_digest_header: bool,
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
        }
    }
}

/// The token the Bearer mode hands out and expects.
const PROXY_TOKEN: &str = "test-token-7f3a";

/// An HTTP/1.1 forwarder in front of a registry; see [`ProxyOptions`].
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
        let upstream = upstream_host.to_string();
        let handler_log = Arc::clone(&log);
        let server = ServerThread::spawn(move |stream, own_addr| {
            let upstream = upstream.clone();
            let options = options.clone();
            let log = Arc::clone(&handler_log);
            async move {
                let _ = proxy_one(stream, own_addr, &upstream, &options, &log).await;
            }
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

async fn proxy_one(
    mut client: TcpStream,
    own_addr: SocketAddr,
    upstream: &str,
    options: &ProxyOptions,
    log: &Log,
) -> std::io::Result<()> {
    let Some(request) = http1::read_request(&mut client).await? else {
        return Ok(());
    };
    log.lock()
        .expect("request log")
        .push(RecordedRequest::from(&request));

    if let Some(refusal) = check_auth(&request, own_addr, &options.auth) {
        return http1::write_all_and_close(&mut client, &refusal.to_bytes()).await;
    }

    let path = request
        .target
        .split('?')
        .next()
        .unwrap_or_default()
        .to_string();
    if request.method == "GET"
        && path.ends_with("/tags/list")
        && options.tag_pages != TagPages::Upstream
    {
        let response = tag_page(&request, &path, upstream, options.tag_pages).await?;
        return http1::write_all_and_close(&mut client, &response.to_bytes()).await;
    }

    let mut response = forward(&request, upstream).await?;
    if options.strip_digest_header {
        response
            .headers
            .retain(|(name, _)| !name.eq_ignore_ascii_case("docker-content-digest"));
    }
    let chunked = response
        .header("transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
    if request.method == "GET" && (200..300).contains(&response.status) && !chunked {
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
                response.set_header("Content-Length", &body.len().to_string());
            }
        }
    }
    http1::write_all_and_close(&mut client, &response.to_bytes()).await
}

async fn forward(request: &Request, upstream: &str) -> std::io::Result<Response> {
    let mut upstream_conn = TcpStream::connect(upstream).await?;
    http1::write_all_and_close(&mut upstream_conn, &request.to_upstream_bytes()).await?;
    http1::read_response(&mut upstream_conn).await
}

/// Serves one page of a tag list the way a paginating registry does, from the full list.
async fn tag_page(
    request: &Request,
    path: &str,
    upstream: &str,
    mode: TagPages,
) -> std::io::Result<Response> {
    let query_url = url::Url::parse(&format!("http://proxy{}", request.target))
        .map_err(std::io::Error::other)?;
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
    let mut full_request = request.clone();
    full_request.target = path.to_string();
    let upstream_response = forward(&full_request, upstream).await?;
    if upstream_response.status != 200 {
        return Ok(upstream_response);
    }
    let listing: serde_json::Value =
        serde_json::from_slice(&upstream_response.body).map_err(std::io::Error::other)?;
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
    let body = serde_json::to_vec(&serde_json::json!({"name": listing["name"], "tags": page}))
        .map_err(std::io::Error::other)?;
    let mut response = Response::new(200, "application/json", body);
    if mode == TagPages::WithLink
        && after.len() > page.len()
        && let Some(last_of_page) = page.last()
    {
        response.set_header(
            "Link",
            &format!("<{path}?n={n}&last={last_of_page}>; rel=\"next\""),
        );
    }
    Ok(response)
}

/// The refusal to send, or `None` when the request may pass.
fn check_auth(request: &Request, own_addr: SocketAddr, auth: &ProxyAuth) -> Option<Response> {
    let basic = |user: &str, pass: &str| {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
        )
    };
    let unauthorized = |challenge: String| {
        let mut r = Response::new(
            401,
            "application/json",
            r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#,
        );
        r.set_header("WWW-Authenticate", &challenge);
        r
    };
    match auth {
        ProxyAuth::None => None,
        ProxyAuth::Basic { username, password } => {
            if request.header("authorization") == Some(basic(username, password).as_str()) {
                None
            } else {
                Some(unauthorized(r#"Basic realm="test registry""#.to_string()))
            }
        }
        ProxyAuth::Bearer {
            credentials,
            refresh_token,
        } => {
            if request.target.starts_with("/token") {
                let allowed = if request.method == "POST" {
                    let form: Vec<(String, String)> = url::form_urlencoded::parse(&request.body)
                        .into_owned()
                        .collect();
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
                        Some((u, p)) => {
                            request.header("authorization") == Some(basic(u, p).as_str())
                        }
                    }
                };
                return Some(if allowed {
                    Response::new(
                        200,
                        "application/json",
                        format!(r#"{{"token":"{PROXY_TOKEN}","expires_in":300}}"#),
                    )
                } else {
                    Response::new(
                        401,
                        "application/json",
                        r#"{"errors":[{"code":"UNAUTHORIZED","message":"bad credentials"}]}"#,
                    )
                });
            }
            if request.header("authorization") == Some(format!("Bearer {PROXY_TOKEN}").as_str()) {
                None
            } else {
                Some(unauthorized(format!(
                    r#"Bearer realm="http://{own_addr}/token",service="test-registry""#
                )))
            }
        }
    }
}

/// Accepts TCP connections and never answers (for timeout tests).
pub struct BlackHole {
    server: ServerThread,
}

impl BlackHole {
    pub fn start() -> Self {
        let server = ServerThread::spawn(|stream, _| async move {
            // Hold the connection open without reading or answering until the server stops.
            let _held = stream;
            std::future::pending::<()>().await;
        });
        BlackHole { server }
    }

    pub fn host(&self) -> String {
        self.server.host()
    }
}

/// Answers every request with one status and body, and records the requests (for error tests,
/// and as a notification receiver).
pub struct StatusServer {
    server: ServerThread,
    log: Log,
}

impl StatusServer {
    /// `body` is sent as `application/json`.
    pub fn start(status: u16, body: &str) -> Self {
        let log: Log = Arc::default();
        let handler_log = Arc::clone(&log);
        let body = body.to_string();
        let server = ServerThread::spawn(move |mut stream, _| {
            let log = Arc::clone(&handler_log);
            let response = Response::new(status, "application/json", body.clone());
            async move {
                if let Ok(Some(request)) = http1::read_request(&mut stream).await {
                    log.lock()
                        .expect("request log")
                        .push(RecordedRequest::from(&request));
                    let _ = http1::write_all_and_close(&mut stream, &response.to_bytes()).await;
                }
            }
        });
        StatusServer { server, log }
    }

    /// Answers every request with these raw bytes (status line, headers and body as given),
    /// e.g. a chunked body without `Content-Length`.
    pub fn raw(response: Vec<u8>) -> Self {
        let log: Log = Arc::default();
        let handler_log = Arc::clone(&log);
        let response = Arc::new(response);
        let server = ServerThread::spawn(move |mut stream, _| {
            let log = Arc::clone(&handler_log);
            let response = Arc::clone(&response);
            async move {
                if let Ok(Some(request)) = http1::read_request(&mut stream).await {
                    log.lock()
                        .expect("request log")
                        .push(RecordedRequest::from(&request));
                    let _ = http1::write_all_and_close(&mut stream, &response).await;
                }
            }
        });
        StatusServer { server, log }
    }

    /// A server failing every request with HTTP 500 and a distribution-style error body.
    pub fn internal_error() -> Self {
        Self::start(
            500,
            r#"{"errors":[{"code":"UNKNOWN","message":"simulated failure"}]}"#,
        )
    }

    pub fn host(&self) -> String {
        self.server.host()
    }

    /// `http://127.0.0.1:PORT/`.
    pub fn url(&self) -> String {
        format!("http://{}/", self.host())
    }

    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.log.lock().expect("request log").clone()
    }
}
