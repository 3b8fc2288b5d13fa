//! Serving on one single-threaded runtime per core, as nginx runs one event loop per worker
//! process, with every connection handed by one accept loop to the thread that has the fewest
//! open connections.
//!
//! Why threads of their own: with tokio's work-stealing runtime, a cached admission cost 15 µs of
//! user and 8 µs of system CPU (measured from `/proc/PID/stat` over a maximum-rate HTTP/1.1 run of
//! `scripts/bench-vs-nginx.sh`, `HOLD=1`), and 0.19 context switches; the same process on one
//! worker thread cost 12 µs and 5 µs, 0.09 switches, and answered more requests a second on two
//! cores shared with the load generator. What costs is the scheduler moving tasks and waking
//! parked workers across cores, not the admission. Here a connection lives on the thread it was
//! handed to, and its requests never change thread.
//!
//! Why one accept loop rather than a socket per thread (`SO_REUSEPORT`, which served here before):
//! the kernel spreads `SO_REUSEPORT` connections by a hash of their addresses, so 50 connections
//! split 28/22 or worse (the two serving threads' CPU time over three 4-second runs at 5,000
//! req/s: 23/18, 17/22, 19/16 ticks), and two API server connections land on the same core half
//! of the time. Counting open connections and handing each new one to the least busy thread keeps
//! them even, and no other process can join the port; the hand-over (one channel send, the socket
//! registered again on the receiving thread) is paid once per connection. What it did to the p99
//! at 5,000 req/s (`VERSUS=` runs of `scripts/bench-vs-nginx.sh`, nine interleaved rounds each):
//! 1.18x nginx's against 1.41x in one run, 1.08x against 1.04x in the next, so within the noise.
//!
//! What stays on the process's main runtime: the accept loop and everything that is not a
//! connection (the policy source, TLS reloads, the drain, other servers). A connection's own work
//! (a registry lookup of a cache miss, for instance) runs on its thread; the caches and the
//! policy picture are shared.
//!
//! The price: a connection's requests share its thread, so one HTTP/2 connection (an API server
//! holds one per webhook endpoint) is answered by one core. A cached admission costs about 20 µs
//! of it, so one core still answers tens of thousands a second; `--serving-threads 0` serves on
//! the shared work-stealing runtime where that matters more.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};

use super::connection::{Stop, unless_stopped};

/// The number of serving threads `requested` stands for: itself, or when 0 the cores this
/// process may use (a container's CPU quota included), at least 1.
pub fn serving_threads(requested: usize) -> usize {
    if requested > 0 {
        return requested;
    }
    std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
}

/// One open connection of a serving thread, counted until it is dropped.
struct Ticket(Arc<AtomicUsize>);

impl Ticket {
    fn new(open: &Arc<AtomicUsize>) -> Self {
        open.fetch_add(1, Ordering::Relaxed);
        Ticket(Arc::clone(open))
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A connection on its way to a serving thread.
struct Handoff {
    stream: std::net::TcpStream,
    peer: SocketAddr,
    ticket: Ticket,
}

/// One serving thread as the accept loop sees it: its open connections and its queue.
struct Thread {
    open: Arc<AtomicUsize>,
    queue: mpsc::UnboundedSender<Handoff>,
}

/// What a serving thread accepts from: the connections the accept loop hands it.
pub(super) struct HandedListener {
    queue: mpsc::UnboundedReceiver<Handoff>,
}

impl HandedListener {
    /// The next connection handed to this thread, registered with the calling runtime, and its
    /// peer. Pending forever once the accept loop is gone (the server then stops this thread).
    pub(super) async fn accept(&mut self) -> (CountedStream, SocketAddr) {
        loop {
            let Some(handoff) = self.queue.recv().await else {
                return std::future::pending().await;
            };
            // A socket that cannot join this thread's reactor is closed (dropped) here and
            // the next one is taken; the client sees its connection reset.
            if let Ok(stream) = TcpStream::from_std(handoff.stream) {
                let stream = CountedStream {
                    stream,
                    _ticket: handoff.ticket,
                };
                return (stream, handoff.peer);
            }
        }
    }
}

/// A TCP connection of a serving thread: counted as open until dropped.
pub(super) struct CountedStream {
    stream: TcpStream,
    _ticket: Ticket,
}

impl AsyncRead for CountedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for CountedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// Accepts on `listener` until `stop` says stop (or its sender is dropped), giving each
/// connection, with TCP_NODELAY set, to `take`; the listener is closed when this returns.
///
/// TCP_NODELAY on every connection of every server: answers are small and latency-bound, and
/// without it Nagle's algorithm holds the last segment of a response until the client's delayed
/// ACK.
pub(super) async fn accept_until_stopped(
    listener: TcpListener,
    mut stop: watch::Receiver<Stop>,
    mut take: impl FnMut(TcpStream, SocketAddr),
) {
    let local = listener.local_addr().ok();
    while let Some(accepted) = unless_stopped(&mut stop, listener.accept()).await {
        match accepted {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                take(stream, peer);
            }
            Err(e) => {
                // Out of file descriptors, typically: pause rather than spin.
                tracing::warn!(error = %e, addr = ?local, "cannot accept a connection");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// `threads` listeners, one per serving thread, fed by the accept loop `balance` returns: run it
/// on the calling runtime. It accepts on `listener` until `stop` says stop (or its sender is
/// dropped), then closes the listener.
pub(super) fn balance(
    listener: std::net::TcpListener,
    threads: usize,
    stop: watch::Receiver<Stop>,
) -> io::Result<(
    Vec<HandedListener>,
    impl std::future::Future<Output = ()> + Send,
)> {
    listener.set_nonblocking(true)?;
    let listener = TcpListener::from_std(listener)?;
    let (threads, listeners): (Vec<Thread>, Vec<HandedListener>) = (0..threads.max(1))
        .map(|_| {
            let (queue, receiver) = mpsc::unbounded_channel();
            let thread = Thread {
                open: Arc::new(AtomicUsize::new(0)),
                queue,
            };
            (thread, HandedListener { queue: receiver })
        })
        .unzip();
    let accept_loop = accept_until_stopped(listener, stop, move |stream, peer| {
        hand_over(&threads, stream, peer);
    });
    Ok((listeners, accept_loop))
}

/// Hands `stream` to the thread with the fewest open connections (the first of equals). A
/// connection that cannot be handed over is closed.
fn hand_over(threads: &[Thread], stream: TcpStream, peer: SocketAddr) {
    let Some(thread) = threads
        .iter()
        .min_by_key(|thread| thread.open.load(Ordering::Relaxed))
    else {
        return;
    };
    let Ok(stream) = stream.into_std() else {
        return;
    };
    let ticket = Ticket::new(&thread.open);
    // A thread that has stopped drops what it is sent.
    let _ = thread.queue.send(Handoff {
        stream,
        peer,
        ticket,
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The next connection handed to `listener` (a test fails rather than hangs when it goes
    /// elsewhere).
    async fn next(listener: &mut HandedListener) -> (CountedStream, SocketAddr) {
        tokio::time::timeout(Duration::from_secs(5), listener.accept())
            .await
            .expect("a connection within 5 s")
    }

    /// Connections go to the thread with the fewest open ones, and a closed one frees its slot;
    /// once stopped, the port is closed.
    #[tokio::test]
    async fn connections_are_spread_by_open_count() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop_tx, stop) = watch::channel(Stop::No);
        let (mut listeners, accept_loop) = balance(listener, 2, stop).unwrap();
        let accepting = tokio::spawn(accept_loop);
        let mut clients = Vec::new();
        let mut served = [Vec::new(), Vec::new()];
        for round in 0..4 {
            clients.push(tokio::net::TcpStream::connect(addr).await.unwrap());
            // The first of equals takes it: thread 0, then 1, then 0, then 1.
            let thread = round % 2;
            let (stream, peer) = next(&mut listeners[thread]).await;
            assert_eq!(peer, clients[round].local_addr().unwrap());
            served[thread].push(stream);
        }
        // Two closed on thread 0: the next two go there.
        served[0].clear();
        for _ in 0..2 {
            clients.push(tokio::net::TcpStream::connect(addr).await.unwrap());
            let (stream, _) = next(&mut listeners[0]).await;
            served[0].push(stream);
        }
        stop_tx.send(Stop::Now).unwrap();
        accepting.await.unwrap();
        assert!(
            tokio::net::TcpStream::connect(addr).await.is_err(),
            "the port still accepts after the stop"
        );
    }
}
