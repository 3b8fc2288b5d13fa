//! Test harness shared by the integration tests (`mod support;`).
//!
//! - [`Registry`]: Debian's `docker-registry` (CNCF distribution 2.8) on a free loopback port,
//!   storage in a temporary directory, optionally sending notifications.
//! - [`push_test_image`]: builds a tiny real OCI image from a seed and pushes it over plain HTTP,
//!   independently of the client under test.
//! - [`CorruptingProxy`]: an HTTP/1.1 forwarder that alters manifest and blob bodies (or
//!   demands Basic or Bearer authentication, or only records requests).
//! - [`SoftHsm`]: a SoftHSM2 token folder (config, tokens, PIN file).
//! - [`BlackHole`] (accepts, never answers) and [`StatusServer`] (answers every request with one
//!   status and records what it was sent) for fault tests and notification receivers.
// Each test crate uses a different part of the harness.
#![allow(dead_code, unused_imports)]

mod http1;
mod image;
mod registry_process;
mod servers;
mod softhsm;

pub use image::{TestImage, build_test_image, push_test_image};
pub use registry_process::Registry;
pub use servers::{
    BlackHole, CorruptingProxy, ProxyAuth, ProxyOptions, RecordedRequest, StatusServer, TagPages,
    Tamper,
};
pub use softhsm::{SO_PIN, SoftHsm, USER_PIN, init_token, require_tool};

/// A loopback port that nothing listens on (bound, then released).
pub fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    listener.local_addr().expect("local address").port()
}
