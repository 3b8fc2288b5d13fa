//! Labels of namespaces the policy picture has not seen yet.
//!
//! In cluster mode the picture learns namespaces from a watch, which can lag a `kubectl apply`
//! that creates a namespace and a pod in one go. Judged with no labels, such a pod would escape
//! every ClusterVerificationPolicy whose `namespaceSelector` selects its namespace. So the judge
//! reads the labels of an unknown namespace from the API first, and denies when it cannot.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use kube::Api;
use moka::future::Cache;

/// How long labels read here are reused (the watch soon takes over).
const TTL: Duration = Duration::from_secs(30);
const CAPACITY: u64 = 10_000;

/// Namespace labels.
pub type Labels = BTreeMap<String, String>;

/// Reads namespace labels through the Kubernetes API.
#[derive(Clone)]
pub struct NamespaceReader {
    client: kube::Client,
    cache: Cache<String, Arc<Labels>>,
}

impl NamespaceReader {
    /// A reader over `client`.
    pub fn new(client: kube::Client) -> Self {
        NamespaceReader {
            client,
            cache: Cache::builder()
                .max_capacity(CAPACITY)
                .time_to_live(TTL)
                .build(),
        }
    }

    /// The labels of `namespace`; `Err` with a one-line reason when it cannot be read.
    pub async fn labels(&self, namespace: &str) -> Result<Arc<Labels>, String> {
        if let Some(labels) = self.cache.get(namespace).await {
            return Ok(labels);
        }
        let api: Api<Namespace> = Api::all(self.client.clone());
        match api.get(namespace).await {
            Ok(found) => {
                let labels = Arc::new(found.metadata.labels.unwrap_or_default());
                self.cache
                    .insert(namespace.to_string(), Arc::clone(&labels))
                    .await;
                Ok(labels)
            }
            Err(e) => Err(format!(
                "namespace {namespace} is not known to signet yet and its labels cannot be read \
                 ({e}); policies with a namespaceSelector cannot be judged"
            )),
        }
    }
}
