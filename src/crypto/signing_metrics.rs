//! How long producing one signature takes, process-wide (keys sign deep in the registry and
//! crypto layers, far from any metrics registry): from handing the payload to the blocking pool
//! to having a signature that verifies. For a cloud KMS key that is the KMS round trip (timed on
//! its own by `kms_call_duration_seconds`) plus the signer's own part: the thread hops, the
//! digest, the request signing (SigV4 / ACS3), the answer's parsing and the local verification
//! of the returned signature. The difference of the two histograms is what the signer itself
//! adds to each signature; `examples/signer_kms_load.rs` reports it per provider.

use std::sync::OnceLock;
use std::time::Duration;

use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

fn histogram() -> &'static Histogram {
    static HISTOGRAM: OnceLock<Histogram> = OnceLock::new();
    // 50 µs (a key file) .. ~1.6 s (a slow KMS), doubling.
    HISTOGRAM.get_or_init(|| Histogram::new(exponential_buckets(0.000_05, 2.0, 16)))
}

/// Records one signature produced (successfully or not) in `took`.
pub(crate) fn record_signature(took: Duration) {
    histogram().observe(took.as_secs_f64());
}

/// Registers `signature_duration_seconds` in `registry` (under its prefix).
pub fn register_signing_metrics(registry: &mut Registry) {
    registry.register(
        "signature_duration_seconds",
        "Time to produce one signature: blocking-pool hop, the key's signing (a KMS round trip for KMS keys) and the local verification",
        histogram().clone(),
    );
}
