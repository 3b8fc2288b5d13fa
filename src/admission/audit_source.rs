//! Admission's registry lookups lent to the audit of running pods (`controller::audit`): the
//! same digest and signature caches, the same one-lookup-in-flight per key, the same pull
//! secrets. An audit re-read (`fresh`) drops the cached signatures first, so a signature deleted
//! from the registry also stops admitting at once rather than at the cache's expiry.

use std::sync::Arc;

use futures::FutureExt as _;
use futures::future::BoxFuture;

use super::lookup::{Lookups, RequestRegistry};
use super::pull_secrets::PullSecrets;
use crate::controller::audit::SignatureSource;
use crate::controller::audit::judge::{Asker, Failure, Signatures};
use crate::reference::ImageRef;
use crate::registry::{LookupFailure, RegistryClient};

/// The audit's view of admission's lookups.
pub struct AdmissionLookups {
    lookups: Arc<Lookups>,
    registry: RegistryClient,
    pull_secrets: Option<PullSecrets>,
}

impl AdmissionLookups {
    /// Lookups through `lookups` with `registry`'s credentials, and each pod's pull secrets
    /// when `pull_secrets` reads them.
    pub fn new(
        lookups: Arc<Lookups>,
        registry: RegistryClient,
        pull_secrets: Option<PullSecrets>,
    ) -> Self {
        AdmissionLookups {
            lookups,
            registry,
            pull_secrets,
        }
    }

    async fn registry_for(&self, asker: &Asker) -> RequestRegistry {
        let secrets = match &self.pull_secrets {
            Some(reader) => {
                reader
                    .credentials(
                        &asker.namespace,
                        &asker.pull_secrets,
                        Some(&asker.service_account),
                    )
                    .await
            }
            None => Vec::new(),
        };
        RequestRegistry::new(&self.registry, secrets)
    }
}

impl SignatureSource for AdmissionLookups {
    fn digest<'a>(
        &'a self,
        image: &'a ImageRef,
        asker: &'a Asker,
    ) -> BoxFuture<'a, Result<Arc<str>, Failure>> {
        async move {
            let registry = self.registry_for(asker).await;
            self.lookups.digest(image, &registry).await
        }
        .boxed()
    }

    fn signatures<'a>(
        &'a self,
        image: &'a ImageRef,
        asker: &'a Asker,
        fresh: bool,
    ) -> BoxFuture<'a, Result<Signatures, Failure>> {
        async move {
            let Some(digest) = image.digest() else {
                return Err(Arc::new(LookupFailure::NotLookedUp));
            };
            let registry = self.registry_for(asker).await;
            if fresh {
                self.lookups
                    .refresh_signatures(image, digest, &registry)
                    .await
            } else {
                self.lookups.signatures(image, digest, &registry).await
            }
        }
        .boxed()
    }
}
