//! A running HTTP(S) server on a listener: start it with an axum [`Router`] (or any [`Routes`]),
//! learn its address, notice when it dies, and stop it gracefully. The webhook (admission and
//! operations ports) and the signer all serve through [`Server`], so they share one accept path
//! (TCP_NODELAY, TLS with reload, the `connection` module) and one drain sequence
//! ([`drain_and_stop`]).

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::cert_expiry::CertificateExpiry;
use super::connection::{Connections, Routes, Stop, unless_stopped};
use super::drain::{Drain, DrainSettings};
use super::readiness_gate::ReadinessGate;
use super::threads::{HandedListener, accept_until_stopped, balance};
use super::tls::{Tls, TlsError, TlsSource};
use crate::serve::format_duration;

/// Why a server could not start, or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The operating system's answer.
        source: std::io::Error,
    },
    /// TLS could not be set up.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The server stopped with an I/O error.
    #[error("server on {addr} failed: {source}")]
    Serve {
        /// The address it served.
        addr: SocketAddr,
        /// The accept loop's error.
        source: std::io::Error,
    },
    /// The server stopped although nobody asked it to.
    #[error("the server on {0} stopped")]
    Stopped(SocketAddr),
    /// The server task ended abnormally (a panic).
    #[error("server task on {addr} failed: {reason}")]
    Task {
        /// The address it served.
        addr: SocketAddr,
        /// What the runtime said.
        reason: String,
    },
}

/// Binds `listen` (port 0 picks a free port).
pub fn bind(listen: SocketAddr) -> Result<std::net::TcpListener, ServerError> {
    std::net::TcpListener::bind(listen).map_err(|source| ServerError::Bind {
        addr: listen,
        source,
    })
}

/// A server running in its own task.
pub struct Server {
    addr: SocketAddr,
    name: &'static str,
    /// What the accept loops and the connections are told ([`Server::shutdown`], [`Server::stop`]).
    stop: watch::Sender<Stop>,
    /// `None` once the task has been awaited (by [`Server::died`]).
    task: Option<JoinHandle<std::io::Result<()>>>,
}

/// `app` behind the drain's readiness gate: while `drain` is draining, `GET /readyz` answers 503
/// whatever `app` would say, so that load balancers stop sending before the listener closes.
pub fn gated(app: Router, drain: &Drain) -> Router {
    app.layer(ReadinessGate::new(drain.clone()))
}

impl Server {
    /// Serves `app` on `listener`, over TLS from `tls` (reloaded as its files change) or plain
    /// HTTP when `None`, behind the readiness gate of `drain` ([`gated`]). `name` only labels
    /// the log lines.
    pub fn start(
        name: &'static str,
        listener: std::net::TcpListener,
        app: Router,
        tls: Option<&TlsSource>,
        drain: &Drain,
    ) -> Result<Self, ServerError> {
        Self::start_observed(
            name,
            listener,
            app,
            tls,
            drain,
            &CertificateExpiry::default(),
        )
    }

    /// [`Server::start`], recording the served certificate's expiry (through every reload) in
    /// `expiry`, for the metrics.
    pub fn start_observed(
        name: &'static str,
        listener: std::net::TcpListener,
        app: Router,
        tls: Option<&TlsSource>,
        drain: &Drain,
        expiry: &CertificateExpiry,
    ) -> Result<Self, ServerError> {
        Self::start_routes(name, listener, gated(app, drain), tls, expiry, 0)
    }

    /// [`Server::start_observed`] over TLS, served by `threads` (at least one) threads of their
    /// own ([`Server::start_routes`]).
    pub fn start_per_core(
        name: &'static str,
        listener: std::net::TcpListener,
        app: Router,
        tls: &TlsSource,
        drain: &Drain,
        expiry: &CertificateExpiry,
        threads: usize,
    ) -> Result<Self, ServerError> {
        let app = gated(app, drain);
        Self::start_routes(name, listener, app, Some(tls), expiry, threads.max(1))
    }

    /// Serves `routes` on `listener`, over TLS from `tls` (reloaded as its files change, the
    /// expiry recorded in `expiry`) or plain HTTP when `None`. With `threads` 0 the connections
    /// are served on the calling runtime; otherwise by that many threads of their own, each a
    /// single-threaded runtime, each connection accepted by a loop on the calling runtime and
    /// handed to the thread with the fewest open connections (see [`super::threads`]). TLS
    /// reloads and the returned server's handle stay on the calling runtime.
    pub fn start_routes<R: Routes>(
        name: &'static str,
        listener: std::net::TcpListener,
        routes: R,
        tls: Option<&TlsSource>,
        expiry: &CertificateExpiry,
        threads: usize,
    ) -> Result<Self, ServerError> {
        let addr = address_of(&listener)?;
        let bind_error = |source| ServerError::Bind { addr, source };
        let tls = match tls {
            Some(source) => Some(Tls::start(source, expiry)?.config),
            None => None,
        };
        let scheme = if tls.is_some() { "HTTPS" } else { "HTTP" };
        let (stop, stopped) = watch::channel(Stop::No);
        let task = if threads == 0 {
            listener.set_nonblocking(true).map_err(bind_error)?;
            let listener = tokio::net::TcpListener::from_std(listener).map_err(bind_error)?;
            let (connections, all_closed) = Connections::new(routes, tls, stopped.clone());
            tokio::spawn(async move {
                accept_until_stopped(listener, stopped, |stream, _| connections.spawn(stream))
                    .await;
                closed(connections, all_closed).await;
                Ok(())
            })
        } else {
            let (listeners, accept_loop) =
                balance(listener, threads, stopped.clone()).map_err(bind_error)?;
            let mut ends = Vec::with_capacity(listeners.len());
            for (index, listener) in listeners.into_iter().enumerate() {
                let connections = Connections::new(routes.clone(), tls.clone(), stopped.clone());
                let thread = format!("{name}-{index}");
                ends.push(serving_thread(thread, listener, connections).map_err(bind_error)?);
            }
            tokio::spawn(async move {
                let threads_ended = first_failure(ends);
                tokio::pin!(threads_ended);
                tokio::select! {
                    ended = &mut threads_ended => ended,
                    () = accept_loop => threads_ended.await,
                }
            })
        };
        tracing::info!(%addr, server = name, scheme, threads, "listening");
        Ok(Server {
            addr,
            name,
            stop,
            task: Some(task),
        })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Whether the server task has ended.
    pub fn is_finished(&self) -> bool {
        self.task.as_ref().is_none_or(JoinHandle::is_finished)
    }

    /// Stops accepting now; open connections finish their requests within `grace`, then are cut.
    pub fn shutdown(&self, grace: Duration) {
        let until = tokio::time::Instant::now() + grace;
        self.stop.send_replace(Stop::Gracefully { until });
    }

    /// Stops at once (open connections are cut) and waits for the task: for tests and one-shot
    /// tools; a serving process drains with [`drain_and_stop`] instead.
    pub async fn stop(self) -> Result<(), ServerError> {
        self.stop.send_replace(Stop::Now);
        self.wait().await
    }

    /// Resolves only when the server stops by itself (its accept loop failed): a process whose
    /// port is gone must not keep running. Pending forever once awaited.
    pub async fn died(&mut self) -> ServerError {
        let Some(task) = self.task.as_mut() else {
            return std::future::pending().await;
        };
        let ended = task.await;
        self.task = None;
        match ended {
            Ok(Ok(())) => ServerError::Stopped(self.addr),
            Ok(Err(source)) => ServerError::Serve {
                addr: self.addr,
                source,
            },
            Err(e) => ServerError::Task {
                addr: self.addr,
                reason: e.to_string(),
            },
        }
    }

    /// Waits until the server has stopped (after [`Server::shutdown`]).
    pub async fn wait(self) -> Result<(), ServerError> {
        let Some(task) = self.task else {
            return Ok(());
        };
        let result = match task.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(source)) => Err(ServerError::Serve {
                addr: self.addr,
                source,
            }),
            Err(e) => Err(ServerError::Task {
                addr: self.addr,
                reason: e.to_string(),
            }),
        };
        tracing::info!(addr = %self.addr, server = self.name, "stopped");
        result
    }
}

/// The address `listener` is bound to.
fn address_of(listener: &std::net::TcpListener) -> Result<SocketAddr, ServerError> {
    listener.local_addr().map_err(|source| ServerError::Bind {
        addr: SocketAddr::from(([0, 0, 0, 0], 0)),
        source,
    })
}

/// Starts a serving thread named `name`, a single-threaded runtime serving the connections
/// handed to `listener` until the server stops, then waiting for them to close; the receiver
/// learns how it ended.
fn serving_thread<R: Routes>(
    name: String,
    mut listener: HandedListener,
    (connections, all_closed): (Connections<R>, mpsc::Receiver<()>),
) -> std::io::Result<tokio::sync::oneshot::Receiver<std::io::Result<()>>> {
    let (ended, end) = tokio::sync::oneshot::channel();
    std::thread::Builder::new().name(name).spawn(move || {
        let served = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map(|runtime| {
                runtime.block_on(async move {
                    let mut stop = connections.stop.clone();
                    while let Some((stream, _)) = unless_stopped(&mut stop, listener.accept()).await
                    {
                        connections.spawn(stream);
                    }
                    closed(connections, all_closed).await;
                });
            });
        // Nobody listens once the process is stopping; nothing to do then.
        let _ = ended.send(served);
    })?;
    Ok(end)
}

/// Waits until every connection of `connections` has ended (each holds a clone of its `open`).
async fn closed<R>(connections: Connections<R>, mut all_closed: mpsc::Receiver<()>) {
    drop(connections);
    // Nothing is ever sent: `None` once the last clone is dropped.
    let _ = all_closed.recv().await;
}

/// How the serving threads of [`Server::start_routes`] ended: the first failure as soon as one
/// fails (a thread that panicked counts), else `Ok` once all have stopped.
async fn first_failure(
    mut ends: Vec<tokio::sync::oneshot::Receiver<std::io::Result<()>>>,
) -> std::io::Result<()> {
    while !ends.is_empty() {
        let (ended, _, rest) = futures::future::select_all(ends).await;
        ended.unwrap_or_else(|_| Err(std::io::Error::other("a serving thread panicked")))?;
        ends = rest;
    }
    Ok(())
}

/// The drain sequence after SIGTERM: `/readyz` turns 503 at once on every server, they keep
/// accepting for `settings.delay` (endpoints and load balancers take a moment to stop sending
/// here), then stop accepting and give in-flight requests `settings.grace` to finish.
pub async fn drain_and_stop(
    servers: Vec<Server>,
    drain: &Drain,
    settings: DrainSettings,
) -> Result<(), ServerError> {
    drain.begin();
    tracing::info!(
        delay = %format_duration(settings.delay),
        "draining: /readyz answers 503; still accepting until the delay ends"
    );
    tokio::time::sleep(settings.delay).await;
    tracing::info!(grace = %format_duration(settings.grace), "no longer accepting; finishing in-flight requests");
    for server in &servers {
        server.shutdown(settings.grace);
    }
    let mut first_error = Ok(());
    for server in servers {
        if let Err(e) = server.wait().await
            && first_error.is_ok()
        {
            first_error = Err(e);
        }
    }
    first_error
}
