//! Admission: the `signet webhook` server. It reads the images a workload runs ([`images`]),
//! decides from the policy picture and the registry ([`decide`], [`lookup`]), answers the API
//! server over TLS ([`server`], [`review`], [`tls`]) and pins verified digests ([`patch`]).
//!
//! Without a cluster (`--policy-dir`), events go to the log and registry credentials come only
//! from `--registry-config`; with one, pull secrets are read and events posted through the API.

pub mod breakglass;
pub mod command;
mod compose;
pub mod decide;
pub mod events;
pub mod images;
mod judge;
pub mod lookup;
pub mod metrics;
pub mod namespaces;
pub mod patch;
pub mod pull_secrets;
pub mod review;
pub mod server;
pub mod tls;
pub mod verdict_cache;

pub use command::{WebhookArgs, WebhookError, run_webhook};
pub use decide::{Admission, BREAKGLASS_ANNOTATION, DecisionSettings};
pub use metrics::{Endpoint, Metrics};
pub use review::{Answer, ReviewError};
pub use server::{MAX_BODY_BYTES, ServerError, WebhookServer};
pub use tls::{TlsError, TlsSource};
