//! A running HTTP(S) server on a listener: start it with an axum [`Router`], learn its address,
//! notice when it dies, and stop it gracefully. The webhook (admission and operations ports) and
//! the signer all serve through [`Server`], so they share one accept path (TCP_NODELAY, TLS with
//! reload) and one drain sequence ([`drain_and_stop`]).

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum_server::accept::{DefaultAcceptor, NoDelayAcceptor};
use axum_server::tls_rustls::RustlsAcceptor;
use axum_server::{Control, Handle};
use tokio::task::JoinHandle;

use super::cert_expiry::CertificateExpiry;
use super::drain::{Drain, DrainSettings};
use super::readiness_gate::ReadinessGate;
use super::threads::{Handed, balance};
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
    /// Shutdown of every connection loop of the server.
    control: Control,
    /// Stops the accept loop of [`Server::start_per_core`] (`None` for the other servers, whose
    /// accept loop `control` stops).
    stop_accepting: Option<tokio::sync::watch::Sender<bool>>,
    /// `None` once the task has been awaited (by [`Server::died`]).
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl Server {
    /// Serves `app` on `listener`, over TLS from `tls` (reloaded as its files change) or plain
    /// HTTP when `None`. While `drain` is draining, `GET /readyz` answers 503 whatever `app`
    /// would say, so that load balancers stop sending before the listener closes. `name` only
    /// labels the log lines.
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
        let addr = address_of(&listener)?;
        let service = app
            .layer(ReadinessGate::new(drain.clone()))
            .into_make_service();
        let control = Control::new();
        let bind_error = |source| ServerError::Bind { addr, source };
        let server = axum_server::from_tcp(listener)
            .map_err(bind_error)?
            .handle(Handle::with_control(control.clone()));
        let task = match tls {
            Some(source) => {
                let acceptor = tls_acceptor(source, expiry, NoDelayAcceptor::new())?;
                tokio::spawn(server.acceptor(acceptor).serve(service))
            }
            None => tokio::spawn(server.acceptor(NoDelayAcceptor::new()).serve(service)),
        };
        let scheme = if tls.is_some() { "HTTPS" } else { "HTTP" };
        tracing::info!(%addr, server = name, scheme, "listening");
        Ok(Server {
            addr,
            name,
            control,
            stop_accepting: None,
            task: Some(task),
        })
    }

    /// [`Server::start_observed`] over TLS, served by `threads` threads of their own, each a
    /// single-threaded runtime, each connection accepted on `listener` by a loop on the calling
    /// runtime and handed to the thread with the fewest open connections (see
    /// [`super::threads`]). TLS reloads and the returned server's handle stay on the calling
    /// runtime.
    pub fn start_per_core(
        name: &'static str,
        listener: std::net::TcpListener,
        app: Router,
        tls: &TlsSource,
        drain: &Drain,
        expiry: &CertificateExpiry,
        threads: usize,
    ) -> Result<Self, ServerError> {
        let addr = address_of(&listener)?;
        let bind_error = |source| ServerError::Bind { addr, source };
        let service = app
            .layer(ReadinessGate::new(drain.clone()))
            .into_make_service();
        let control = Control::new();
        let acceptor = tls_acceptor(tls, expiry, DefaultAcceptor::new())?;
        let (stop_accepting, stop) = tokio::sync::watch::channel(false);
        let (listeners, accept_loop) = balance(listener, threads, stop).map_err(bind_error)?;
        let mut ends = Vec::with_capacity(listeners.len());
        for (index, listener) in listeners.into_iter().enumerate() {
            let server = axum_server::Server::<Handed>::from_listener(listener)
                .handle(Handle::with_control(control.clone()))
                .acceptor(acceptor.clone());
            let service = service.clone();
            let (ended, end) = tokio::sync::oneshot::channel();
            std::thread::Builder::new()
                .name(format!("{name}-{index}"))
                .spawn(move || {
                    let served = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .and_then(|runtime| runtime.block_on(server.serve(service)));
                    // Nobody listens once the process is stopping; nothing to do then.
                    let _ = ended.send(served);
                })
                .map_err(|source| ServerError::Serve { addr, source })?;
            ends.push(end);
        }
        tracing::info!(%addr, server = name, scheme = "HTTPS", threads = ends.len(), "listening");
        let task = async move {
            let threads_ended = first_failure(ends);
            tokio::pin!(threads_ended);
            tokio::select! {
                ended = &mut threads_ended => ended,
                () = accept_loop => threads_ended.await,
            }
        };
        Ok(Server {
            addr,
            name,
            control,
            stop_accepting: Some(stop_accepting),
            task: Some(tokio::spawn(task)),
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
        self.stop_accepting();
        self.control.graceful_shutdown(Some(grace));
    }

    fn stop_accepting(&self) {
        if let Some(stop) = &self.stop_accepting {
            stop.send_replace(true);
        }
    }

    /// Stops at once (open connections are cut) and waits for the task: for tests and one-shot
    /// tools; a serving process drains with [`drain_and_stop`] instead.
    pub async fn stop(self) -> Result<(), ServerError> {
        self.stop_accepting();
        self.control.shutdown();
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

/// TLS from `source` (reloaded as its files change, on the calling runtime) over `inner`, the
/// acceptor under it. Every connection gets TCP_NODELAY (`NoDelayAcceptor` here; the per-core
/// servers' accept loop sets it before the hand-over): answers are small and latency-bound, and
/// without it Nagle's algorithm holds the last segment of a response until the client's delayed
/// ACK.
fn tls_acceptor<A>(
    source: &TlsSource,
    expiry: &CertificateExpiry,
    inner: A,
) -> Result<RustlsAcceptor<A>, ServerError> {
    let tls = Tls::start(source, expiry)?;
    Ok(RustlsAcceptor::new(tls.config).acceptor(inner))
}

/// How the serving threads of [`Server::start_per_core`] ended: the first failure as soon as one
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
