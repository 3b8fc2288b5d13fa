//! The one test harness of the integration tests (`mod support;`, and
//! `#[path = "../tests/support/mod.rs"] mod support;` in examples).
//!
//! - [`registry`]: Debian's `docker-registry` (CNCF distribution 2.8) on a free loopback port,
//!   storage in a temporary directory, optionally sending notifications.
//! - [`image`]: a tiny real OCI image built from a seed and pushed over plain HTTP, independently
//!   of the client under test.
//! - [`servers`]: loopback fault servers: [`CorruptingProxy`], an HTTP forwarder that alters
//!   manifest and blob bodies (or demands Basic or Bearer authentication, or only records
//!   requests); [`BlackHole`] (accepts, never answers) and [`StatusServer`] (answers every request
//!   the same way and records what it was sent), also a notification receiver.
//! - [`softhsm`]: a SoftHSM2 token folder (config, tokens, PIN file).
//! - [`webhook`]: a registry of signed fixture images, their policy picture, the webhook over TLS.
//! - [`kube_api`]: a mocked Kubernetes API for the webhook.
//! - [`audit_api`]: a mocked Kubernetes API for the audit (watches, Events, PolicyReports);
//!   [`fake_kube`]: what it shares with the controller's (a client over tower-test, objects,
//!   lists and watch streams).
//! - [`signer`]: keys, rules and an in-process signer for the signer tests.
//! - [`moto`]: the moto AWS KMS emulator; [`alikms`]: a local Alibaba Cloud KMS endpoint;
//!   [`metadata`]: a local (mocked) AWS IMDSv2 / Alibaba ECS metadata service.
//! - [`notation`]: a test PKI, certificate Attestors, Notation referrers counted or crafted.
//! - [`registry_client`]: the registry client under test with exactly the credentials given;
//!   [`tls_client`]: HTTPS clients trusting only a test's CA.
//! - [`monitoring`]: the chart's alert rules and dashboard queries, and `promtool`;
//!   [`metrics_servers`]: the real webhook and signer processes with their metrics ports.
// Each test crate uses a different part of the harness.
#![allow(dead_code, unused_imports)]

pub mod alikms;
pub mod audit_api;
pub mod bundle;
pub mod fake_kube;
pub mod image;
pub mod kms_cli;
pub mod kube_api;
pub mod metadata;
pub mod metrics_servers;
pub mod monitoring;
pub mod moto;
pub mod notation;
pub mod referrers_front;
pub mod registry;
pub mod registry_client;
pub mod servers;
pub mod signer;
pub mod softhsm;
pub mod tls_client;
pub mod webhook;

pub use image::{TestImage, build_test_image, plain_http_client, push_multi_arch, push_test_image};
pub use registry::{Protection, Registry};
pub use servers::{
    Answer, BlackHole, CorruptingProxy, Fault, FaultSwitch, ProxyAuth, ProxyOptions,
    RecordedRequest, StatusServer, TagPages, Tamper,
};
pub use softhsm::{SO_PIN, SoftHsm, USER_PIN, init_token, require_tool};

/// A loopback port that nothing listens on (bound, then released).
pub fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    listener.local_addr().expect("local address").port()
}
