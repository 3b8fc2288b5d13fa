//! One connection served: the TLS handshake (when the server has TLS), then HTTP/1.1 or HTTP/2
//! as the client chose (ALPN over TLS, the HTTP/2 preface in clear), every request answered by
//! the server's [`Routes`], until the client closes or the server stops it.
//!
//! Served with hyper-util directly rather than through axum-server (which served here until
//! this module): axum-server wraps every request in services of its own and polls three shutdown
//! watchers per wake-up; a cached admission spent about 3,500 instructions in axum-server,
//! axum's router and tower glue, plus their copies and allocations (`COST=1050
//! scripts/bench-vs-nginx.sh`, callgrind by function). Here a connection watches one stop signal,
//! and the admission routes answer `/validate` and `/mutate` before any router (see
//! `admission::server`).

use std::convert::Infallible;
use std::future::Future;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use futures::FutureExt as _;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::tls::LiveConfig;

/// How long a client may take over its TLS handshake before the connection is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// What a server tells its accept loops and connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Stop {
    /// Accept and serve.
    No,
    /// Accept no more; let each connection finish what it has in flight (HTTP/1.1: the current
    /// request; HTTP/2: the open streams, after a GOAWAY) and close it, cutting what is still
    /// open at `until`.
    Gracefully {
        /// When what is left is cut.
        until: Instant,
    },
    /// Accept no more and cut every connection.
    Now,
}

/// What a server answers, every request of every connection.
pub trait Routes: Clone + Send + Sync + 'static {
    /// The answer to `request`.
    fn answer(
        &self,
        request: Request<Incoming>,
    ) -> impl Future<Output = Response<Body>> + Send + use<Self>;
}

/// A router answers through axum (the readiness gate applied by the server).
impl Routes for Router {
    fn answer(
        &self,
        request: Request<Incoming>,
    ) -> impl Future<Output = Response<Body>> + Send + use<> {
        // A router is always ready (axum's `poll_ready` returns `Ready` unconditionally), so it
        // is called without asking; its error type is `Infallible`.
        tower::Service::call(&mut self.clone(), request).map(|answer| match answer {
            Ok(response) => response,
            Err(never) => match never {},
        })
    }
}

/// A server's connections: what they are served with, how they learn to stop, and the count
/// of those still open (a clone of `open` each, dropped when the connection ends).
#[derive(Clone)]
pub(super) struct Connections<R> {
    routes: R,
    tls: Option<LiveConfig>,
    pub(super) stop: watch::Receiver<Stop>,
    open: mpsc::Sender<()>,
}

impl<R: Routes> Connections<R> {
    /// Connections served with `routes` (over TLS when `tls`), told by `stop`; the receiver
    /// yields `None` once every connection served through them (and they) are gone.
    pub(super) fn new(
        routes: R,
        tls: Option<LiveConfig>,
        stop: watch::Receiver<Stop>,
    ) -> (Self, mpsc::Receiver<()>) {
        let (open, all_closed) = mpsc::channel(1);
        let connections = Connections {
            routes,
            tls,
            stop,
            open,
        };
        (connections, all_closed)
    }

    /// Serves `stream` in a task of the current runtime.
    pub(super) fn spawn<S>(&self, stream: S)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let this = self.clone();
        tokio::spawn(async move {
            // Whatever ends the connection (the client, an error, the stop) ends only it; a
            // client that breaks off is not the server's failure, so nothing is logged.
            let Connections {
                routes,
                tls,
                mut stop,
                open: _open,
            } = this;
            match tls {
                None => serve_http(stream, routes, stop).await,
                Some(tls) => {
                    let accept = tokio_rustls::TlsAcceptor::from(tls.current()).accept(stream);
                    let handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, accept);
                    let stream = tokio::select! {
                        done = handshake => match done {
                            Ok(Ok(stream)) => stream,
                            _ => return,
                        },
                        () = stopping(&mut stop) => return,
                    };
                    serve_http(stream, routes, stop).await;
                }
            }
        });
    }
}

/// What `next` yields, or `None` once `stop` says stop or its sender is gone: what every accept
/// loop waits on (the stop checked first).
pub(super) async fn unless_stopped<T>(
    stop: &mut watch::Receiver<Stop>,
    next: impl Future<Output = T>,
) -> Option<T> {
    tokio::select! {
        biased;
        _ = stop.wait_for(|stop| *stop != Stop::No) => None,
        value = next => Some(value),
    }
}

/// Resolves once the server stops, gracefully or not: a handshake still under way then has no
/// request in flight to finish. Never if the server is gone without a word, so that a dropped
/// handle does not cut its connections.
async fn stopping(stop: &mut watch::Receiver<Stop>) {
    if stop.wait_for(|stop| *stop != Stop::No).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// The next stop signal (never if the server is gone without a word).
async fn next_stop(stop: &mut watch::Receiver<Stop>) -> Stop {
    if stop.changed().await.is_err() {
        return std::future::pending().await;
    }
    *stop.borrow_and_update()
}

/// HTTP over `stream` until it ends or `stop` ends it.
async fn serve_http<S, R>(stream: S, routes: R, mut stop: watch::Receiver<Stop>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    R: Routes,
{
    let mut builder = Builder::new(TokioExecutor::new());
    // No header read timeout, as axum-server served it: hyper's default (30 s) takes effect only
    // with a timer, which axum-server set while turning the timeout off, so it never applied here.
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(None);
    builder.http2().timer(TokioTimer::new());
    // `map`, not an async block around the answer: that would hold the answer's future twice
    // (before and while awaiting it), and over HTTP/2 each request's future is moved into a task.
    let service =
        hyper::service::service_fn(move |request| routes.answer(request).map(Ok::<_, Infallible>));
    let connection = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    let mut deadline: Option<Instant> = None;
    let mut signal = *stop.borrow_and_update();
    loop {
        match signal {
            Stop::No => {}
            Stop::Now => return,
            Stop::Gracefully { until } => {
                if deadline.is_none() {
                    connection.as_mut().graceful_shutdown();
                    deadline = Some(until);
                }
            }
        }
        signal = tokio::select! {
            biased;
            _ = connection.as_mut() => return,
            () = sleep_until(deadline) => return,
            signal = next_stop(&mut stop) => signal,
        };
    }
}

/// Sleeps until `deadline`, or forever without one.
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
