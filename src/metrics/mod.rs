//! What both servers export besides their own counters, and how `/metrics` is served.
//!
//! - [`exposition`]: the text answer of `GET /metrics`, negotiated: OpenMetrics 1.0 when the
//!   scraper asks for it (Prometheus does), else the Prometheus text format 0.0.4 (curl,
//!   `promtool check metrics`, older scrapers). Serving only OpenMetrics broke `promtool check
//!   metrics`, whose text parser reads a counter family `x` with a sample `x_total` as two
//!   metrics, one of them without help.
//! - [`process`]: `process_*` series read from `/proc`, named as Prometheus' own process
//!   collector names them, so that the usual dashboards and alerts work unchanged.
//! - [`common`]: `signet_build_info`, the policy picture's state (`signet_policy_*`) and the TLS
//!   certificate's expiry, registered by the webhook and the signer alike.
//! - [`ops`]: the plain-HTTP operations port (`--metrics-listen`): `/healthz`, `/readyz`,
//!   `/metrics`, for kubelet probes and Prometheus, which present no client certificate.
//!
//! Where it sits: `admission, signer -> metrics -> serve, controller` (it reads the served
//! certificate's expiry from `serve` and the policy picture from `controller`). DESIGN.md's layout
//! has no such folder: the series both servers share were worth one home rather than two copies.
//!
//! Conventions (checked by the tests with `promtool check metrics`): base units in names
//! (`_seconds`, `_bytes`), counters end in `_total`, lower snake case label values, and every
//! series whose label values are known at start exists from start, at zero.

pub mod common;
pub mod exposition;
pub(crate) mod labels;
pub mod ops;
pub mod process;

pub use common::{CommonMetrics, PolicyKindLabel};
pub use exposition::{Format, metrics_response, render};
pub use ops::{OpsTarget, healthz, ops_router, readiness};
pub use process::ProcessCollector;
