//! The one serving edge of `signet webhook` and `signet signer`. Both are long-running HTTP(S)
//! servers in front of a policy picture, and every concern they share lives here once, so that
//! the two cannot drift apart:
//!
//! - [`tls`]: certificate and key from files, reloaded when their contents change (content
//!   hash), optional client CA, or a self-signed pair (`--tls-self-signed`);
//! - [`cert_expiry`]: the served certificate's `notAfter`, followed through reloads, for the
//!   metrics;
//! - [`server`]: [`Server`], a router (or any [`Routes`]) served on a listener: local address,
//!   death detection, graceful shutdown, and [`drain_and_stop`];
//! - `connection`: one connection served (TLS handshake, HTTP/1.1 or HTTP/2 by hyper-util, the
//!   stop signal);
//! - [`threads`]: serving on one single-threaded runtime per core (`--serving-threads`), each
//!   connection handed by one accept loop to the thread with the fewest open ones;
//! - [`drain`]: the SIGTERM drain (`--shutdown-delay`: keep accepting while `/readyz` is 503);
//! - [`signal`]: SIGTERM or Ctrl-C;
//! - [`policy_source`]: the policy folder or the cluster feeding the picture;
//! - [`duration`]: the one duration grammar of every flag, and its printer.

pub mod cert_expiry;
mod connection;
pub mod drain;
pub mod duration;
pub mod policy_source;
mod readiness_gate;
pub mod server;
pub mod signal;
pub mod threads;
pub mod tls;

pub use cert_expiry::CertificateExpiry;
pub use connection::Routes;
pub use drain::{DEFAULT_SHUTDOWN_DELAY, Drain, DrainSettings};
pub use duration::{DurationError, format_duration, parse_duration};
pub use policy_source::{PolicySource, PolicySourceConfig, PolicySourceError};
pub use server::{Server, ServerError, bind, drain_and_stop, gated};
pub use signal::shutdown_signal;
pub use threads::serving_threads;
pub use tls::{Tls, TlsError, TlsSource};
