//! Admission: the `signet webhook` server. It reads the images a workload runs ([`images`]),
//! decides from the policy picture and the registry ([`decide`], [`lookup`]), answers the API
//! server over TLS ([`server`], [`review`]; the TLS and server plumbing is `crate::serve`'s) and pins verified digests ([`patch`]).
//!
//! Without a cluster (`--policy-dir`), events go to the log and registry credentials come only
//! from `--registry-config`; with one, pull secrets are read and events posted through the API.

mod admitted;
mod answer_json;
pub mod audit_source;
pub mod breakglass;
mod compose;
pub mod decide;
pub mod events;
pub mod images;
mod judge;
pub mod lookup;
pub mod metrics;
pub mod namespaces;
pub mod patch;
pub mod pruned_tree;
pub mod pull_secrets;
pub mod review;
mod review_prune;
pub mod review_scan;
pub mod run;
pub mod server;
pub mod signature_entry;
mod verdict;
pub mod verdict_cache;

pub use decide::{Admission, BREAKGLASS_ANNOTATION, DecisionSettings};
pub use metrics::{Endpoint, Metrics};
pub use review::{Answer, ReviewError};
pub use run::{WebhookConfig, WebhookError, run_webhook};
pub use server::{MAX_BODY_BYTES, WebhookServer};
// Re-exported from the shared serving edge for callers that start a webhook server.
pub use crate::serve::{ServerError, TlsError, TlsSource};
