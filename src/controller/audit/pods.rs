//! What the audit judges of a pod: each image it runs, by container, with the digest that
//! actually runs when the pod's status says it.
//!
//! The digest comes from `status.*ContainerStatuses[].imageID` when that holds a repository
//! digest (`repo@sha256:...`, with or without the `docker-pullable://` scheme): that is what the
//! node pulled, whatever the tag points to now. A bare `sha256:...` imageID is the local image
//! ID (the config digest under some runtimes), not a manifest digest, so it is not used; then the
//! spec's pinned digest is, else the tag is resolved as admission would (the pod has not started,
//! or its runtime does not say). Pods that have finished (`Succeeded`, `Failed`) run nothing and
//! are left out.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ContainerStatus, Pod};
use serde::{Deserialize, Serialize};

use crate::reference::normalise_digest;

/// Where in the pod spec an image is named.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Slot {
    /// `spec.containers`
    Container,
    /// `spec.initContainers`
    InitContainer,
    /// `spec.ephemeralContainers`
    EphemeralContainer,
    /// `spec.volumes[].image`
    ImageVolume,
}

impl Slot {
    /// The lower snake case name (table, PolicyReport properties).
    pub fn as_str(self) -> &'static str {
        match self {
            Slot::Container => "container",
            Slot::InitContainer => "init_container",
            Slot::EphemeralContainer => "ephemeral_container",
            Slot::ImageVolume => "image_volume",
        }
    }
}

/// One image a pod runs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RunningImage {
    /// The container's name (the volume's for an image volume).
    pub container: String,
    /// Which list it is in.
    pub slot: Slot,
    /// The reference as the spec writes it.
    pub image: String,
    /// `sha256:<hex>` that runs (from the status), or that the spec pins; `None`: resolve the tag.
    pub digest: Option<String>,
}

/// A pod as the audit sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RunningPod {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// `metadata.uid` (named in PolicyReport results), when known.
    pub uid: Option<String>,
    /// Every image, in spec order: containers, init containers, ephemeral containers, volumes.
    pub images: Vec<RunningImage>,
    /// Names of `spec.imagePullSecrets`.
    pub pull_secrets: Vec<String>,
    /// `spec.serviceAccountName` (`default` when absent, as Kubernetes does).
    pub service_account: String,
}

impl RunningPod {
    /// `namespace/name`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// The pod as the audit judges it; `None` when it has finished and runs nothing.
    pub fn of(pod: &Pod) -> Option<RunningPod> {
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
        if matches!(phase, Some("Succeeded" | "Failed")) {
            return None;
        }
        let spec = pod.spec.as_ref()?;
        let status = pod.status.as_ref();
        let mut images = Vec::new();
        let lists = [
            (
                Slot::Container,
                spec.containers
                    .iter()
                    .map(|c| (c.name.as_str(), c.image.as_deref()))
                    .collect::<Vec<_>>(),
                status.and_then(|s| s.container_statuses.as_ref()),
            ),
            (
                Slot::InitContainer,
                spec.init_containers
                    .iter()
                    .flatten()
                    .map(|c| (c.name.as_str(), c.image.as_deref()))
                    .collect(),
                status.and_then(|s| s.init_container_statuses.as_ref()),
            ),
            (
                Slot::EphemeralContainer,
                spec.ephemeral_containers
                    .iter()
                    .flatten()
                    .map(|c| (c.name.as_str(), c.image.as_deref()))
                    .collect(),
                status.and_then(|s| s.ephemeral_container_statuses.as_ref()),
            ),
        ];
        for (slot, containers, statuses) in lists {
            for (name, image) in containers {
                let Some(image) = image.filter(|i| !i.is_empty()) else {
                    continue;
                };
                let from_status = statuses
                    .and_then(|all| all.iter().find(|s| s.name == name))
                    .and_then(running_digest);
                images.push(RunningImage {
                    container: name.to_string(),
                    slot,
                    image: image.to_string(),
                    digest: from_status.or_else(|| pinned_digest(image)),
                });
            }
        }
        for volume in spec.volumes.iter().flatten() {
            if let Some(reference) = volume
                .image
                .as_ref()
                .and_then(|i| i.reference.as_deref())
                .filter(|r| !r.is_empty())
            {
                images.push(RunningImage {
                    container: volume.name.clone(),
                    slot: Slot::ImageVolume,
                    image: reference.to_string(),
                    digest: pinned_digest(reference),
                });
            }
        }
        let mut pull_secrets: Vec<String> = spec
            .image_pull_secrets
            .iter()
            .flatten()
            .map(|s| s.name.clone())
            .filter(|n| !n.is_empty())
            .collect();
        pull_secrets.dedup();
        Some(RunningPod {
            namespace: pod
                .metadata
                .namespace
                .clone()
                .unwrap_or_else(|| "default".to_string()),
            name: pod.metadata.name.clone().unwrap_or_default(),
            uid: pod.metadata.uid.clone(),
            images,
            pull_secrets,
            service_account: spec
                .service_account_name
                .clone()
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "default".to_string()),
        })
    }
}

/// The manifest digest a container status says runs: from `imageID` when it names a repository
/// digest (`[scheme://]repo@sha256:<hex>`).
fn running_digest(status: &ContainerStatus) -> Option<String> {
    let id = status.image_id.as_str();
    let id = id.split_once("://").map_or(id, |(_, rest)| rest);
    let (_, digest) = id.rsplit_once('@')?;
    normalise_digest(digest)
}

/// The digest a reference pins (`repo@sha256:...`), if any.
fn pinned_digest(image: &str) -> Option<String> {
    let (_, digest) = image.rsplit_once('@')?;
    normalise_digest(digest)
}

/// Why a pods file cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum PodsFileError {
    /// Not JSON, or not a Pod / a list of Pods.
    #[error("not a Pod or a list of Pods (`kubectl get pods -A -o json`): {0}")]
    Format(String),
}

/// The pods of a `kubectl get pods -o json` document (a `List`/`PodList`, or one `Pod`), in file
/// order, finished pods left out.
pub fn pods_from_json(text: &str) -> Result<Vec<RunningPod>, PodsFileError> {
    #[derive(Deserialize)]
    struct Items {
        items: Vec<Pod>,
    }
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| PodsFileError::Format(e.to_string()))?;
    let pods: Vec<Pod> = match value.get("kind").and_then(|k| k.as_str()) {
        Some("Pod") => vec![
            serde_path_to_error::deserialize(value)
                .map_err(|e| PodsFileError::Format(e.to_string()))?,
        ],
        _ if value.get("items").is_some() => {
            serde_path_to_error::deserialize::<_, Items>(value)
                .map_err(|e| PodsFileError::Format(e.to_string()))?
                .items
        }
        _ => {
            return Err(PodsFileError::Format(
                "expected kind Pod or an object with items".into(),
            ));
        }
    };
    Ok(pods.iter().filter_map(RunningPod::of).collect())
}

/// Pods grouped by namespace, for per-namespace reports.
pub fn by_namespace<'a>(
    pods: impl IntoIterator<Item = &'a RunningPod>,
) -> BTreeMap<&'a str, Vec<&'a RunningPod>> {
    let mut grouped: BTreeMap<&str, Vec<&RunningPod>> = BTreeMap::new();
    for pod in pods {
        grouped.entry(pod.namespace.as_str()).or_default().push(pod);
    }
    grouped
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    const D2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";
    const D3: &str = "sha256:3333333333333333333333333333333333333333333333333333333333333333";

    fn pod(status: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web", "namespace": "shop", "uid": "u-1"},
            "spec": {
                "containers": [{"name": "app", "image": "r.example/app:v1"},
                               {"name": "side", "image": format!("r.example/side:v2@{D3}")}],
                "initContainers": [{"name": "init", "image": "r.example/init:v1"}],
                "volumes": [{"name": "models", "image": {"reference": "r.example/models:v1"}}],
                "imagePullSecrets": [{"name": "pull"}]
            },
            "status": status
        }))
        .unwrap_or_default()
    }

    #[test]
    fn the_status_digest_is_what_runs() {
        let running = RunningPod::of(&pod(json!({
            "phase": "Running",
            "containerStatuses": [
                {"name": "app", "image": "r.example/app:v1", "imageID": format!("docker-pullable://r.example/app@{D1}"), "ready": true, "restartCount": 0},
                {"name": "side", "image": "r.example/side:v2", "imageID": "sha256:4444444444444444444444444444444444444444444444444444444444444444", "ready": true, "restartCount": 0}
            ],
            "initContainerStatuses": [
                {"name": "init", "image": "r.example/init:v1", "imageID": format!("r.example/init@{D2}"), "ready": true, "restartCount": 0}
            ]
        })));
        let Some(running) = running else {
            panic!("a running pod is judged");
        };
        let digests: Vec<(&str, Slot, Option<&str>)> = running
            .images
            .iter()
            .map(|i| (i.container.as_str(), i.slot, i.digest.as_deref()))
            .collect();
        assert_eq!(
            digests,
            [
                ("app", Slot::Container, Some(D1)),
                // A bare image ID is not a manifest digest: the spec's pin is used.
                ("side", Slot::Container, Some(D3)),
                ("init", Slot::InitContainer, Some(D2)),
                // No status for volumes, no pin: the tag will be resolved.
                ("models", Slot::ImageVolume, None),
            ]
        );
        assert_eq!(running.pull_secrets, ["pull"]);
        assert_eq!(running.service_account, "default");
        assert_eq!(running.key(), "shop/web");
    }

    #[test]
    fn finished_pods_run_nothing() {
        assert!(RunningPod::of(&pod(json!({"phase": "Succeeded"}))).is_none());
        assert!(RunningPod::of(&pod(json!({"phase": "Pending"}))).is_some());
    }

    #[test]
    fn a_pods_file_is_a_list_or_one_pod_and_anything_else_is_named() {
        let list = json!({"apiVersion": "v1", "kind": "List", "items": [pod(json!({}))]});
        let pods = pods_from_json(&list.to_string());
        assert_eq!(pods.ok().map(|p| p.len()), Some(1));
        let one = serde_json::to_string(&pod(json!({}))).unwrap_or_default();
        assert_eq!(pods_from_json(&one).ok().map(|p| p.len()), Some(1));
        let bad = pods_from_json("{\"kind\": \"Deployment\"}");
        assert!(bad.is_err_and(|e| e.to_string().contains("not a Pod or a list of Pods")),);
        let wrong_type = pods_from_json("{\"items\": [{\"spec\": {\"containers\": 3}}]}");
        assert!(wrong_type.is_err_and(|e| e.to_string().contains("items[0].spec.containers")));
    }
}
