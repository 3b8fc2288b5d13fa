//! Serving on one single-threaded runtime per core, each accepting on its own socket of the same
//! port (`SO_REUSEPORT`), as nginx runs one event loop per worker process.
//!
//! Why: with tokio's work-stealing runtime, a cached admission cost 15 µs of user and 8 µs of
//! system CPU (measured from `/proc/PID/stat` over a maximum-rate HTTP/1.1 run of
//! `scripts/bench-vs-nginx.sh`, `HOLD=1`), and 0.19 context switches; the same process on one
//! worker thread cost 12 µs and 5 µs, 0.09 switches, and answered more requests a second on two
//! cores shared with the load generator. What costs is the scheduler moving tasks and waking
//! parked workers across cores, not the admission. Here a connection lives on the thread that
//! accepted it, its requests never change thread, and the kernel spreads connections over the
//! sockets by their addresses.
//!
//! What stays on the process's main runtime: everything that is not a connection (the policy
//! source, TLS reloads, the drain, other servers). A connection's own work (a registry lookup of
//! a cache miss, for instance) runs on its thread; the caches and the policy picture are shared.
//!
//! The price: a connection's requests share its thread, so one HTTP/2 connection (an API server
//! holds one per webhook endpoint) is answered by one core. A cached admission costs about 20 µs
//! of it, so one core still answers tens of thousands a second; `--serving-threads 0` serves on
//! the shared work-stealing runtime where that matters more.
//!
//! `SO_REUSEPORT` lets another socket of the same user join the port's group; only processes of
//! the same effective user can, which in a container is signet itself.

use std::net::{SocketAddr, TcpListener};

use socket2::{Domain, Socket, Type};

/// Binds `addr` with `SO_REUSEPORT` (and `SO_REUSEADDR`, as std's bind does), so that
/// [`more_listeners`] can add sockets on the same port.
pub fn bind_reusable(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(socket.into())
}

/// `count` listeners for the port of `first` (`first` itself included): new sockets joining
/// its `SO_REUSEPORT` group; where the port does not allow that (a listener bound elsewhere
/// without the option), copies of `first` sharing its one accept queue.
pub fn more_listeners(first: TcpListener, count: usize) -> std::io::Result<Vec<TcpListener>> {
    let addr = first.local_addr()?;
    let mut listeners = Vec::with_capacity(count);
    for _ in 1..count {
        let next = match bind_reusable(addr) {
            Ok(next) => next,
            Err(_) => first.try_clone()?,
        };
        listeners.push(next);
    }
    listeners.insert(0, first);
    Ok(listeners)
}

/// The number of serving threads `requested` stands for: itself, or when 0 the cores this
/// process may use (a container's CPU quota included), at least 1.
pub fn serving_threads(requested: usize) -> usize {
    if requested > 0 {
        return requested;
    }
    std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
}
