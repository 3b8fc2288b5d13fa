//! Graceful drain state. A rolling update of a `failurePolicy: Fail` webhook must not lose an
//! admission: on SIGTERM the pod is still listed as an endpoint for a moment, so it keeps
//! accepting for a delay while `/readyz` already answers 503, then stops accepting and lets
//! in-flight requests finish.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Shared "shutting down" flag, set once SIGTERM arrived; servers read it for `/readyz`.
#[derive(Clone, Debug, Default)]
pub struct Drain(Arc<AtomicBool>);

impl Drain {
    /// A flag not yet set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts draining: `/readyz` answers 503 from now on.
    pub fn begin(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// Whether draining has begun.
    pub fn is_draining(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// How a server drains.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DrainSettings {
    /// How long the server keeps accepting after SIGTERM (`--shutdown-delay`); keep it below the
    /// pod's `terminationGracePeriodSeconds`.
    pub delay: Duration,
    /// How long in-flight requests get once accepting stopped; then connections are cut.
    pub grace: Duration,
}

/// The default `--shutdown-delay`: long enough for endpoint removal to reach kube-proxy and the
/// API server in a typical cluster.
pub const DEFAULT_SHUTDOWN_DELAY: Duration = Duration::from_secs(5);
