//! Registry credentials from Kubernetes: the workload's `imagePullSecrets` and its service
//! account's, read through the API (as the kubelet would use them to pull).
//!
//! As with the kubelet, a secret that is missing or of another type is skipped with a log line,
//! not an error: the image may well be public. Secrets and service accounts are cached for a
//! minute, so a burst of pods costs one API read per secret; the cache holds parsed credentials,
//! never raw secret data, and nothing of them reaches a log line.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use kube::Api;
use moka::future::Cache;

use crate::registry::DockerConfig;

/// Secret types that hold docker credentials, and the data key of each.
const DOCKER_SECRET_TYPES: [(&str, &str); 2] = [
    ("kubernetes.io/dockerconfigjson", ".dockerconfigjson"),
    ("kubernetes.io/dockercfg", ".dockercfg"),
];

/// How long secrets and service accounts are kept.
const TTL: Duration = Duration::from_secs(60);
/// Entries kept per cache.
const CAPACITY: u64 = 10_000;

/// Reads pull secrets through the Kubernetes API.
#[derive(Clone)]
pub struct PullSecrets {
    client: kube::Client,
    /// (namespace, secret) -> credentials; `None` for a secret that is absent or unusable.
    secrets: Cache<(String, String), Option<Arc<DockerConfig>>>,
    /// (namespace, service account) -> its `imagePullSecrets` names.
    accounts: Cache<(String, String), Arc<Vec<String>>>,
}

impl PullSecrets {
    /// A reader over `client`.
    pub fn new(client: kube::Client) -> Self {
        PullSecrets {
            client,
            secrets: Cache::builder()
                .max_capacity(CAPACITY)
                .time_to_live(TTL)
                .build(),
            accounts: Cache::builder()
                .max_capacity(CAPACITY)
                .time_to_live(TTL)
                .build(),
        }
    }

    /// The credentials of `pod_secrets`, then of the service account's `imagePullSecrets`, in
    /// that order, each secret once.
    pub async fn credentials(
        &self,
        namespace: &str,
        pod_secrets: &[impl AsRef<str> + Sync],
        service_account: Option<&str>,
    ) -> Vec<DockerConfig> {
        let mut names: Vec<String> = pod_secrets
            .iter()
            .map(|name| name.as_ref().to_string())
            .collect();
        if let Some(account) = service_account {
            for name in self.account_secrets(namespace, account).await.iter() {
                if !names.contains(name) {
                    names.push(name.clone());
                }
            }
        }
        let mut configs = Vec::with_capacity(names.len());
        for name in &names {
            if let Some(config) = self.secret(namespace, name).await {
                configs.push((*config).clone());
            }
        }
        configs
    }

    async fn account_secrets(&self, namespace: &str, account: &str) -> Arc<Vec<String>> {
        let key = (namespace.to_string(), account.to_string());
        if let Some(names) = self.accounts.get(&key).await {
            return names;
        }
        let api: Api<ServiceAccount> = Api::namespaced(self.client.clone(), namespace);
        let names = match api.get_opt(account).await {
            Ok(Some(sa)) => sa
                .image_pull_secrets
                .unwrap_or_default()
                .into_iter()
                .map(|r| r.name)
                .filter(|n| !n.is_empty())
                .collect(),
            Ok(None) => {
                tracing::debug!(namespace, account, "service account not found");
                Vec::new()
            }
            Err(e) => {
                // Not cached: the API may answer next time.
                tracing::warn!(namespace, account, error = %e, "cannot read service account");
                return Arc::new(Vec::new());
            }
        };
        let names = Arc::new(names);
        self.accounts.insert(key, Arc::clone(&names)).await;
        names
    }

    async fn secret(&self, namespace: &str, name: &str) -> Option<Arc<DockerConfig>> {
        let key = (namespace.to_string(), name.to_string());
        if let Some(cached) = self.secrets.get(&key).await {
            return cached;
        }
        let api: Api<Secret> = Api::namespaced(self.client.clone(), namespace);
        let config = match api.get_opt(name).await {
            Ok(Some(secret)) => docker_config_of(&secret, namespace, name).map(Arc::new),
            Ok(None) => {
                tracing::warn!(
                    namespace,
                    secret = name,
                    "image pull secret not found; ignored"
                );
                None
            }
            Err(e) => {
                tracing::warn!(namespace, secret = name, error = %e, "cannot read image pull secret");
                return None;
            }
        };
        self.secrets.insert(key, config.clone()).await;
        config
    }
}

/// The credentials in a docker-config secret; `None` (logged) for another type or bad content.
fn docker_config_of(secret: &Secret, namespace: &str, name: &str) -> Option<DockerConfig> {
    let secret_type = secret.type_.as_deref().unwrap_or_default();
    let Some((_, data_key)) = DOCKER_SECRET_TYPES
        .iter()
        .find(|(known, _)| *known == secret_type)
    else {
        tracing::warn!(
            namespace,
            secret = name,
            secret_type,
            "image pull secret is not of a docker config type; ignored"
        );
        return None;
    };
    let data = secret.data.as_ref().and_then(|d| d.get(*data_key))?;
    match DockerConfig::from_json(&data.0, &format!("secret {namespace}/{name}")) {
        Ok(config) => Some(config),
        Err(e) => {
            tracing::warn!(namespace, secret = name, error = %e, "image pull secret unusable; ignored");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;
    use std::collections::BTreeMap;

    fn secret(secret_type: &str, key: &str, json: &str) -> Secret {
        Secret {
            type_: Some(secret_type.to_string()),
            data: Some(BTreeMap::from([(
                key.to_string(),
                ByteString(json.as_bytes().to_vec()),
            )])),
            ..Secret::default()
        }
    }

    #[test]
    fn reads_both_docker_secret_types_and_skips_others() {
        let json = r#"{"auths":{"127.0.0.1:5000":{"username":"u","password":"p"}}}"#;
        let config = docker_config_of(
            &secret("kubernetes.io/dockerconfigjson", ".dockerconfigjson", json),
            "ns",
            "s",
        );
        assert!(config.is_some_and(|c| c.find("127.0.0.1:5000").is_some()));
        let legacy = r#"{"127.0.0.1:5000":{"username":"u","password":"p"}}"#;
        let config = docker_config_of(
            &secret("kubernetes.io/dockercfg", ".dockercfg", legacy),
            "ns",
            "s",
        );
        assert!(config.is_some_and(|c| c.find("127.0.0.1:5000").is_some()));
        assert!(docker_config_of(&secret("Opaque", "token", "{}"), "ns", "s").is_none());
        assert!(
            docker_config_of(
                &secret(
                    "kubernetes.io/dockerconfigjson",
                    ".dockerconfigjson",
                    "nope"
                ),
                "ns",
                "s"
            )
            .is_none()
        );
    }
}
