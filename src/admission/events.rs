//! Kubernetes events about admissions, in the workload's namespace: `FailedAdmission`,
//! `DryRunAdmission`, `Breakglass` (`events.k8s.io/v1`).
//!
//! Events never delay an answer: they are posted from their own task. They are rate-limited to
//! one per (namespace, reason, object) per [`EVENT_INTERVAL`]: a Deployment whose pods keep
//! failing would otherwise post one per ReplicaSet retry. Without a cluster they go to the log.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::PostParams;
use moka::future::Cache;

use super::metrics::Metrics;

/// At most one event per (namespace, reason, object) in this interval.
pub const EVENT_INTERVAL: Duration = Duration::from_secs(30);
/// `reportingController` of every event.
pub const REPORTING_CONTROLLER: &str = "signet.dev/webhook";
/// Events notes are limited to 1 kB by the API server.
const MAX_NOTE_BYTES: usize = 1024;
/// Keys remembered for the rate limit.
const RATE_LIMIT_CAPACITY: u64 = 100_000;

/// Why an event is recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventReason {
    /// The workload was denied.
    FailedAdmission,
    /// A `DryRun` policy failed; the workload was allowed.
    DryRunAdmission,
    /// The breakglass annotation admitted the workload.
    Breakglass,
}

impl EventReason {
    /// The event's `reason`.
    pub fn as_str(self) -> &'static str {
        match self {
            EventReason::FailedAdmission => "FailedAdmission",
            EventReason::DryRunAdmission => "DryRunAdmission",
            EventReason::Breakglass => "Breakglass",
        }
    }
}

/// One event about one workload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkloadEvent {
    /// Why.
    pub reason: EventReason,
    /// The workload's `apiVersion` (`apps/v1`).
    pub api_version: String,
    /// The workload's kind.
    pub kind: String,
    /// The workload's namespace, where the event is recorded.
    pub namespace: String,
    /// The workload's name (`prefix*` while the API server has yet to generate it).
    pub name: String,
    /// The message (truncated to 1 kB).
    pub note: String,
}

/// Where events go: the Kubernetes API, or the log.
#[derive(Clone)]
pub struct EventSink {
    client: Option<kube::Client>,
    instance: String,
    recent: Cache<(String, EventReason, String, String), ()>,
    metrics: Arc<Metrics>,
}

impl EventSink {
    /// Events posted through `client`, or logged when `None`. `instance` names this replica
    /// (`reportingInstance`, e.g. the pod name).
    pub fn new(client: Option<kube::Client>, instance: String, metrics: Arc<Metrics>) -> Self {
        EventSink {
            client,
            instance,
            recent: Cache::builder()
                .max_capacity(RATE_LIMIT_CAPACITY)
                .time_to_live(EVENT_INTERVAL)
                .build(),
            metrics,
        }
    }

    /// Records `event` unless the same one was recorded within [`EVENT_INTERVAL`]. Returns at
    /// once; the post runs in its own task.
    pub async fn record(&self, event: WorkloadEvent) {
        let key = (
            event.namespace.clone(),
            event.reason,
            event.kind.clone(),
            event.name.clone(),
        );
        let entry = self.recent.entry(key).or_insert(()).await;
        if !entry.is_fresh() {
            self.metrics.event_suppressed();
            return;
        }
        let Some(client) = self.client.clone() else {
            tracing::info!(
                target: "signet::events",
                reason = event.reason.as_str(),
                namespace = %event.namespace,
                kind = %event.kind,
                name = %event.name,
                note = %event.note,
                "event"
            );
            return;
        };
        let body = kubernetes_event(&event, &self.instance, Timestamp::now());
        tokio::spawn(async move {
            let api: Api<Event> = Api::namespaced(client, &event.namespace);
            if let Err(e) = api.create(&PostParams::default(), &body).await {
                tracing::warn!(
                    reason = event.reason.as_str(),
                    namespace = %event.namespace,
                    name = %event.name,
                    error = %e,
                    "cannot post event"
                );
            }
        });
    }
}

/// The `events.k8s.io/v1` Event for `event`.
fn kubernetes_event(event: &WorkloadEvent, instance: &str, now: Timestamp) -> Event {
    Event {
        metadata: ObjectMeta {
            name: Some(format!(
                "{}.{:x}",
                event_name_base(&event.name),
                now.as_nanosecond()
            )),
            namespace: Some(event.namespace.clone()),
            ..ObjectMeta::default()
        },
        event_time: Some(MicroTime(now)),
        action: Some("Admit".to_string()),
        reason: Some(event.reason.as_str().to_string()),
        type_: Some(
            match event.reason {
                EventReason::FailedAdmission
                | EventReason::DryRunAdmission
                | EventReason::Breakglass => "Warning",
            }
            .to_string(),
        ),
        note: Some(truncate(&event.note, MAX_NOTE_BYTES)),
        regarding: Some(ObjectReference {
            api_version: Some(event.api_version.clone()),
            kind: Some(event.kind.clone()),
            namespace: Some(event.namespace.clone()),
            name: Some(event.name.trim_end_matches('*').to_string()),
            ..ObjectReference::default()
        }),
        reporting_controller: Some(REPORTING_CONTROLLER.to_string()),
        reporting_instance: Some(instance.to_string()),
        ..Event::default()
    }
}

/// The workload name made fit for an Event name (a DNS subdomain): a generateName prefix loses
/// its `*` and trailing `-`; an empty name becomes `workload`.
fn event_name_base(name: &str) -> String {
    let base: String = name
        .trim_end_matches('*')
        .trim_end_matches(['-', '.'])
        .chars()
        .map(|c| c.to_ascii_lowercase())
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '.')
        .take(200)
        .collect();
    if base.is_empty() {
        "workload".to_string()
    } else {
        base
    }
}

/// `text` cut to at most `limit` bytes, on a character boundary.
fn truncate(text: &str, limit: usize) -> String {
    if text.len() <= limit {
        return text.to_string();
    }
    let mut end = limit.saturating_sub(3);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(name: &str) -> WorkloadEvent {
        WorkloadEvent {
            reason: EventReason::FailedAdmission,
            api_version: "v1".into(),
            kind: "Pod".into(),
            namespace: "shop".into(),
            name: name.into(),
            note: "x".repeat(3000),
        }
    }

    #[test]
    fn event_names_are_valid_and_notes_fit() {
        let now = Timestamp::from_second(1_800_000_000).unwrap_or(Timestamp::UNIX_EPOCH);
        let posted = kubernetes_event(&event("web-5d8f7c9b6-*"), "pod-1", now);
        let name = posted.metadata.name.unwrap_or_default();
        assert!(name.starts_with("web-5d8f7c9b6."), "{name}");
        assert!(posted.note.is_some_and(|n| n.len() <= MAX_NOTE_BYTES));
        assert_eq!(
            posted.regarding.and_then(|r| r.name).as_deref(),
            Some("web-5d8f7c9b6-")
        );
        assert_eq!(event_name_base(""), "workload");
    }

    #[tokio::test]
    async fn the_same_event_is_recorded_once_per_interval() {
        let metrics = Arc::new(Metrics::new());
        let sink = EventSink::new(None, "test".into(), Arc::clone(&metrics));
        sink.record(event("api")).await;
        sink.record(event("api")).await;
        sink.record(event("other")).await;
        let text = metrics.encode().unwrap_or_default();
        assert!(
            text.contains("signet_webhook_events_suppressed_total 1"),
            "{text}"
        );
    }
}
