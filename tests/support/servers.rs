//! Loopback servers for fault tests (`support::servers`): the fixed-answer server, the black hole,
//! and (in [`proxy`]) the corrupting, authenticating or recording proxy.
//!
//! Each runs on its own thread with its own tokio runtime, so it keeps serving whatever the
//! test does with its own runtime (even blocking, or none at all), and stops when dropped. The
//! HTTP ones are axum routers on `127.0.0.1:0`.

pub mod proxy;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

pub use proxy::{CorruptingProxy, Fault, FaultSwitch, ProxyAuth, ProxyOptions, TagPages, Tamper};

/// A request as a test server received it.
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    pub method: String,
    /// Path and query (`/v2/_catalog?n=2`).
    pub target: String,
    /// Names in lower case, as hyper parses them; look them up with [`RecordedRequest::header`].
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// When it arrived (before any fault held its answer).
    pub at: std::time::Instant,
}

impl RecordedRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// The requests a server received, in order.
pub(crate) type Log = Arc<Mutex<Vec<RecordedRequest>>>;

/// Middleware: reads the whole body, records the request, passes it on with the body intact.
pub(crate) async fn record(State(log): State<Log>, request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    let at = std::time::Instant::now();
    log.lock().expect("request log").push(RecordedRequest {
        at,
        method: parts.method.to_string(),
        target: parts
            .uri
            .path_and_query()
            .map_or("/", |pq| pq.as_str())
            .to_string(),
        headers: parts
            .headers
            .iter()
            .map(|(n, v)| {
                let value = String::from_utf8_lossy(v.as_bytes()).into_owned();
                (n.as_str().to_string(), value)
            })
            .collect(),
        body: body.to_vec(),
    });
    next.run(Request::from_parts(parts, Body::from(body))).await
}

/// A server thread that stops when dropped: the thread's runtime, and with it every open
/// connection, goes away.
pub(crate) struct ServerThread {
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl ServerThread {
    /// Binds `127.0.0.1:0` and runs `serve(listener, own address)` on the thread's runtime
    /// until dropped.
    pub(crate) fn spawn<F, Fut>(serve: F) -> Self
    where
        F: FnOnce(TcpListener, SocketAddr) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + 'static,
    {
        let std_listener =
            std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        std_listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let addr = std_listener.local_addr().expect("local address");
        let (shutdown, stop) = oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("test server runtime");
            runtime.block_on(async move {
                let listener = TcpListener::from_std(std_listener).expect("tokio listener");
                tokio::select! {
                    _ = stop => {}
                    () = serve(listener, addr) => {}
                }
            });
        });
        ServerThread {
            addr,
            shutdown: Some(shutdown),
            thread: Some(thread),
        }
    }

    /// Serves the router `make` builds (on the server's runtime, given its own address).
    pub(crate) fn router<F>(make: F) -> Self
    where
        F: FnOnce(SocketAddr) -> Router + Send + 'static,
    {
        Self::spawn(move |listener, addr| async move {
            let _ = axum::serve(listener, make(addr)).await;
        })
    }

    pub(crate) fn host(&self) -> String {
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

/// Accepts TCP connections and never answers (for timeout tests). It stays a raw listener: it
/// must not speak HTTP at all, not even read the request.
pub struct BlackHole {
    server: ServerThread,
}

impl BlackHole {
    pub fn start() -> Self {
        let server = ServerThread::spawn(|listener, _| async move {
            // Hold every connection open without reading or answering until the server stops.
            let mut held = Vec::new();
            while let Ok((stream, _)) = listener.accept().await {
                held.push(stream);
            }
        });
        BlackHole { server }
    }

    pub fn host(&self) -> String {
        self.server.host()
    }
}

/// What a [`StatusServer`] answers to every request.
#[derive(Clone, Debug)]
pub struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    chunked: bool,
    delay: Option<Duration>,
}

impl Answer {
    /// `status` with an empty body and no headers but those the server adds
    /// (`Content-Length`, `Date`).
    pub fn new(status: u16) -> Self {
        Answer {
            status,
            headers: Vec::new(),
            body: Vec::new(),
            chunked: false,
            delay: None,
        }
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    /// The body, sent with `Content-Length`.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// Send the body in 64 KiB chunks (`Transfer-Encoding: chunked`, no `Content-Length`).
    pub fn chunked(mut self) -> Self {
        self.chunked = true;
        self
    }

    /// Hold every request this long before answering.
    pub fn after(mut self, delay: Duration) -> Self {
        self.delay = Some(delay);
        self
    }

    async fn respond(self) -> Response {
        if let Some(delay) = self.delay {
            tokio::time::sleep(delay).await;
        }
        let body = if self.chunked {
            let pieces: Vec<Result<Bytes, std::io::Error>> = self
                .body
                .chunks(64 * 1024)
                .map(|c| Ok(Bytes::copy_from_slice(c)))
                .collect();
            Body::from_stream(futures::stream::iter(pieces))
        } else {
            Body::from(self.body)
        };
        let mut response = Response::builder().status(self.status);
        for (name, value) in &self.headers {
            response = response.header(name, value);
        }
        response.body(body).expect("test server answer")
    }
}

/// Answers every request the same way ([`Answer`]) and records the requests (for error tests,
/// and as a notification receiver).
pub struct StatusServer {
    server: ServerThread,
    log: Log,
}

impl StatusServer {
    /// `status` with `body` sent as `application/json`.
    pub fn start(status: u16, body: &str) -> Self {
        Self::answering(
            Answer::new(status)
                .header("Content-Type", "application/json")
                .body(body),
        )
    }

    /// Answers every request with `answer`.
    pub fn answering(answer: Answer) -> Self {
        let log: Log = Arc::default();
        let recorded = Arc::clone(&log);
        let server = ServerThread::router(move |_| {
            Router::new()
                .fallback(move || answer.clone().respond())
                .layer(axum::middleware::from_fn_with_state(recorded, record))
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
