//! KMS call metrics, process-wide (keys are opened deep in the crypto layer, far from any
//! metrics registry): each HTTP try to a KMS, STS or metadata service is counted and timed by
//! `provider` and `outcome`. A server registers them in its own registry with
//! [`register_kms_metrics`] (the signer does); every series exists from the start.

use std::sync::OnceLock;
use std::time::Duration;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Which KMS (label `provider`).
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum Provider {
    /// AWS KMS (and its STS / instance metadata calls).
    AwsKms,
    /// Alibaba Cloud KMS (and its STS / ECS metadata calls).
    AlibabaKms,
}

impl Provider {
    const ALL: [Provider; 2] = [Provider::AwsKms, Provider::AlibabaKms];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::AwsKms => "aws_kms",
            Provider::AlibabaKms => "alibaba_kms",
        }
    }
}

/// How one try ended (label `outcome`).
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum Outcome {
    /// A 2xx answer.
    Success,
    /// The service throttled the call.
    Throttled,
    /// Credentials missing, refused or expired; access denied.
    AuthError,
    /// Another 4xx (key not found, disabled, wrong usage...).
    ClientError,
    /// A 5xx.
    ServerError,
    /// No answer within the timeout.
    Timeout,
    /// No connection.
    Unreachable,
    /// A 2xx answer that is not what the API documents.
    BadResponse,
}

impl Outcome {
    const ALL: [Outcome; 8] = [
        Outcome::Success,
        Outcome::Throttled,
        Outcome::AuthError,
        Outcome::ClientError,
        Outcome::ServerError,
        Outcome::Timeout,
        Outcome::Unreachable,
        Outcome::BadResponse,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Throttled => "throttled",
            Outcome::AuthError => "auth_error",
            Outcome::ClientError => "client_error",
            Outcome::ServerError => "server_error",
            Outcome::Timeout => "timeout",
            Outcome::Unreachable => "unreachable",
            Outcome::BadResponse => "bad_response",
        }
    }
}

impl EncodeLabelValue for Provider {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> std::fmt::Result {
        std::fmt::Write::write_str(encoder, self.as_str())
    }
}

impl EncodeLabelValue for Outcome {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> std::fmt::Result {
        std::fmt::Write::write_str(encoder, self.as_str())
    }
}

/// `provider` and `outcome`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KmsCallLabels {
    /// Which KMS.
    pub provider: Provider,
    /// How the try ended.
    pub outcome: Outcome,
}

struct KmsMetrics {
    calls: Family<KmsCallLabels, Counter>,
    duration: Family<KmsCallLabels, Histogram>,
}

fn metrics() -> &'static KmsMetrics {
    static METRICS: OnceLock<KmsMetrics> = OnceLock::new();
    METRICS.get_or_init(|| {
        let m = KmsMetrics {
            calls: Family::default(),
            duration: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.005, 2.0, 12))
            }),
        };
        for provider in Provider::ALL {
            for outcome in Outcome::ALL {
                let labels = KmsCallLabels { provider, outcome };
                let _ = m.calls.get_or_create(&labels);
                let _ = m.duration.get_or_create(&labels);
            }
        }
        m
    })
}

/// Counts and times one try.
pub(super) fn record_call(provider: Provider, outcome: Outcome, took: Duration) {
    let m = metrics();
    let labels = KmsCallLabels { provider, outcome };
    m.calls.get_or_create(&labels).inc();
    m.duration
        .get_or_create(&labels)
        .observe(took.as_secs_f64());
}

/// Registers `kms_calls` (counter) and `kms_call_duration_seconds` (histogram), both by
/// `provider` and `outcome`, in `registry` (under its prefix).
pub fn register_kms_metrics(registry: &mut Registry) {
    let m = metrics();
    registry.register(
        "kms_calls",
        "KMS, STS and metadata requests by provider and outcome",
        m.calls.clone(),
    );
    registry.register(
        "kms_call_duration_seconds",
        "Latency of KMS, STS and metadata requests by provider and outcome",
        m.duration.clone(),
    );
}
