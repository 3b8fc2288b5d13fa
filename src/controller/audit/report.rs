//! Where audit results go in the cluster: one `wgpolicyk8s.io/v1alpha2` PolicyReport per
//! namespace (the format Kyverno, Kubewarden and the Policy Reporter UI share), and an
//! `UnverifiedImageRunning` Event on a pod whose image fails.
//!
//! A report holds one result per pod and container that some policy governs; images no policy
//! governs are counted in `summary.skip` only, so that namespaces full of ungoverned images do
//! not grow reports toward etcd's object size limit. Results are capped at
//! [`MAX_RESULTS_PER_REPORT`] (the failing ones first); the summary always counts them all.
//! A result's timestamp is when the audit reached it; reports are written only when a result or
//! the summary changed (not on every run), with server-side apply.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use serde_json::{Value, json};

use super::judge::{AuditResult, ContainerResult, PodResult, Summary};

/// `metadata.name` of every report signet writes.
pub const REPORT_NAME: &str = "signet-audit";
/// The PolicyReport API.
pub const REPORT_API_VERSION: &str = "wgpolicyk8s.io/v1alpha2";
/// Results kept in one report.
pub const MAX_RESULTS_PER_REPORT: usize = 5000;
/// The Event reason.
pub const EVENT_REASON: &str = "UnverifiedImageRunning";
/// `reportingController` of audit events.
pub const REPORTING_CONTROLLER: &str = "signet.dev/audit";
/// Event notes are limited to 1 kB by the API server.
const MAX_NOTE_BYTES: usize = 1024;

/// One namespace's report body without timestamps (what decides whether to write again).
pub fn report_content(pods: &[&PodResult]) -> (Summary, Vec<Value>) {
    let mut summary = Summary::default();
    let mut results: Vec<(AuditResult, Value)> = Vec::new();
    for pod in pods {
        for container in &pod.containers {
            summary.add(container.judged.result);
            if container.judged.result != AuditResult::Skip {
                results.push((container.judged.result, result_of(pod, container)));
            }
        }
    }
    // Failing first, so that a capped report keeps what matters.
    results.sort_by_key(|r| std::cmp::Reverse(r.0));
    results.truncate(MAX_RESULTS_PER_REPORT);
    (summary, results.into_iter().map(|(_, v)| v).collect())
}

fn result_of(pod: &PodResult, container: &ContainerResult) -> Value {
    let judged = &container.judged;
    let message = judged
        .reason
        .clone()
        .unwrap_or_else(|| match judged.result {
            AuditResult::Pass => "signature verified by every governing policy".to_string(),
            _ => judged.result.as_str().to_string(),
        });
    let mut resource = json!({"apiVersion": "v1", "kind": "Pod",
        "namespace": pod.namespace, "name": pod.name});
    if let Some(uid) = &pod.uid {
        resource["uid"] = json!(uid);
    }
    json!({
        "source": "signet",
        "policy": judged.policies.join(","),
        "rule": format!("{}/{}", container.slot.as_str(), container.container),
        "category": "Image Signatures",
        "severity": "high",
        "result": judged.result.as_str(),
        "scored": true,
        "message": message,
        "resources": [resource],
        "properties": {
            "container": container.container,
            "image": container.image,
            "digest": container.digest.clone().unwrap_or_default(),
        },
    })
}

/// The PolicyReport for `namespace`, with every result stamped `now`.
pub fn policy_report(
    namespace: &str,
    summary: &Summary,
    results: &[Value],
    now: Timestamp,
) -> Value {
    let stamped: Vec<Value> = results
        .iter()
        .map(|r| {
            let mut r = r.clone();
            r["timestamp"] = json!({"seconds": now.as_second(), "nanos": 0});
            r
        })
        .collect();
    json!({
        "apiVersion": REPORT_API_VERSION,
        "kind": "PolicyReport",
        "metadata": {
            "name": REPORT_NAME,
            "namespace": namespace,
            "labels": {"app.kubernetes.io/managed-by": "signet"},
        },
        "summary": summary,
        "results": stamped,
    })
}

/// The `UnverifiedImageRunning` Event on `pod` for its failing `container`.
pub fn unverified_event(
    pod: &PodResult,
    container: &ContainerResult,
    instance: &str,
    now: Timestamp,
) -> Event {
    let reason = container
        .judged
        .reason
        .clone()
        .unwrap_or_else(|| container.judged.result.as_str().to_string());
    let note = format!(
        "{} {}: {reason}",
        container.slot.as_str().replace('_', " "),
        container.container
    );
    Event {
        metadata: ObjectMeta {
            name: Some(format!("{}.{:x}", pod.name, now.as_nanosecond())),
            namespace: Some(pod.namespace.clone()),
            ..ObjectMeta::default()
        },
        event_time: Some(MicroTime(now)),
        action: Some("Audit".to_string()),
        reason: Some(EVENT_REASON.to_string()),
        type_: Some("Warning".to_string()),
        note: Some(truncate(&note, MAX_NOTE_BYTES)),
        regarding: Some(ObjectReference {
            api_version: Some("v1".to_string()),
            kind: Some("Pod".to_string()),
            namespace: Some(pod.namespace.clone()),
            name: Some(pod.name.clone()),
            uid: pod.uid.clone(),
            field_path: Some(format!(
                "spec.{}{{{}}}",
                slot_field(container),
                container.container
            )),
            ..ObjectReference::default()
        }),
        reporting_controller: Some(REPORTING_CONTROLLER.to_string()),
        reporting_instance: Some(instance.to_string()),
        ..Event::default()
    }
}

fn slot_field(container: &ContainerResult) -> &'static str {
    use super::pods::Slot;
    match container.slot {
        Slot::Container => "containers",
        Slot::InitContainer => "initContainers",
        Slot::EphemeralContainer => "ephemeralContainers",
        Slot::ImageVolume => "volumes",
    }
}

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

/// Results grouped by namespace.
pub fn by_namespace(results: &[PodResult]) -> BTreeMap<&str, Vec<&PodResult>> {
    let mut grouped: BTreeMap<&str, Vec<&PodResult>> = BTreeMap::new();
    for pod in results {
        grouped.entry(pod.namespace.as_str()).or_default().push(pod);
    }
    grouped
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::controller::audit::judge::Judged;
    use crate::controller::audit::pods::Slot;

    fn container(name: &str, result: AuditResult, reason: Option<&str>) -> ContainerResult {
        ContainerResult {
            container: name.into(),
            slot: Slot::Container,
            image: format!("r.example/{name}:v1"),
            digest: Some("sha256:ab".into()),
            judged: Arc::new(Judged {
                result,
                reason: reason.map(str::to_string),
                policies: vec!["prod".into()],
            }),
        }
    }

    #[test]
    fn a_report_has_one_result_per_governed_container_failing_first() {
        let pod = PodResult {
            namespace: "shop".into(),
            name: "web".into(),
            uid: Some("u-1".into()),
            containers: vec![
                container("app", AuditResult::Pass, None),
                container("side", AuditResult::Fail, Some("no signature")),
                container("proxy", AuditResult::Skip, None),
            ],
        };
        let (summary, results) = report_content(&[&pod]);
        assert_eq!((summary.pass, summary.fail, summary.skip), (1, 1, 1));
        assert_eq!(results.len(), 2);
        assert_eq!(results[0]["result"], "fail");
        assert_eq!(results[0]["rule"], "container/side");
        assert_eq!(results[0]["message"], "no signature");
        assert_eq!(results[0]["resources"][0]["uid"], "u-1");
        assert_eq!(results[1]["properties"]["image"], "r.example/app:v1");
        let report = policy_report("shop", &summary, &results, Timestamp::UNIX_EPOCH);
        assert_eq!(report["apiVersion"], REPORT_API_VERSION);
        assert_eq!(report["summary"]["fail"], 1);
        assert_eq!(report["results"][0]["timestamp"]["seconds"], 0);

        let event = unverified_event(&pod, &pod.containers[1], "w-1", Timestamp::UNIX_EPOCH);
        assert_eq!(event.reason.as_deref(), Some(EVENT_REASON));
        assert_eq!(event.note.as_deref(), Some("container side: no signature"));
        let regarding = event.regarding.unwrap_or_default();
        assert_eq!(
            regarding.field_path.as_deref(),
            Some("spec.containers{side}")
        );
    }
}
