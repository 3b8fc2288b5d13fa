//! Status of the signet resources in the cluster: what the compiled statuses say, compared with
//! what the objects carry, written with server-side apply only when it differs.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, Resource};
use serde::Serialize;
use serde_json::json;

use crate::crd::{
    Attestor, AttestorStatus, ClusterVerificationPolicy, READY_CONDITION, ResourceStatus,
    VerificationPolicy,
};
use crate::policy::{ObjectKind, ObjectStatus};

/// The field manager signet's status writes are owned by.
pub const FIELD_MANAGER: &str = "signet";

/// Read access to the objects whose status is written.
pub(crate) struct StatusStores {
    pub(crate) attestors: Store<Attestor>,
    pub(crate) policies: Store<VerificationPolicy>,
    pub(crate) cluster_policies: Store<ClusterVerificationPolicy>,
}

/// One status write to make.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct StatusWrite {
    kind: ObjectKind,
    namespace: Option<String>,
    name: String,
    status: serde_json::Value,
}

impl StatusWrite {
    fn object(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("{:?} {ns}/{}", self.kind, self.name),
            None => format!("{:?} {}", self.kind, self.name),
        }
    }
}

/// The Ready condition for `status`, keeping `lastTransitionTime` from `previous` when the
/// condition's status (True/False) did not change.
fn ready_condition(status: &ObjectStatus, previous: &[Condition], now: &Time) -> Condition {
    let old = previous.iter().find(|c| c.type_ == READY_CONDITION);
    let new_status = if status.ready { "True" } else { "False" };
    let time = match old {
        Some(c) if c.status == new_status => c.last_transition_time.clone(),
        _ => now.clone(),
    };
    status.ready_condition(time)
}

/// The writes that bring the objects' statuses to what `statuses` say; objects already there
/// (or gone from the stores) are left alone.
pub(crate) fn pending_writes(stores: &StatusStores, statuses: &[ObjectStatus]) -> Vec<StatusWrite> {
    let now = Time(Timestamp::now());
    let mut writes = Vec::new();
    for status in statuses {
        let write = match status.kind {
            ObjectKind::Attestor => {
                let Some(object) = stores.attestors.get(&ObjectRef::new(&status.name)) else {
                    continue;
                };
                let current = object.status.clone().unwrap_or_default();
                let desired = AttestorStatus {
                    observed_generation: status.generation,
                    conditions: vec![ready_condition(status, &current.conditions, &now)],
                    keys: status.keys.clone(),
                };
                changed(status, &current, &desired)
            }
            ObjectKind::ClusterVerificationPolicy => {
                let key = ObjectRef::new(&status.name);
                let Some(object) = stores.cluster_policies.get(&key) else {
                    continue;
                };
                policy_write(status, object.status.clone(), &now)
            }
            ObjectKind::VerificationPolicy => {
                let namespace = status.namespace.as_deref().unwrap_or_default();
                let key = ObjectRef::new(&status.name).within(namespace);
                let Some(object) = stores.policies.get(&key) else {
                    continue;
                };
                policy_write(status, object.status.clone(), &now)
            }
        };
        writes.extend(write);
    }
    writes
}

fn policy_write(
    status: &ObjectStatus,
    current: Option<ResourceStatus>,
    now: &Time,
) -> Option<StatusWrite> {
    let current = current.unwrap_or_default();
    let desired = ResourceStatus {
        observed_generation: status.generation,
        conditions: vec![ready_condition(status, &current.conditions, now)],
    };
    changed(status, &current, &desired)
}

fn changed<S: PartialEq + Serialize>(
    status: &ObjectStatus,
    current: &S,
    desired: &S,
) -> Option<StatusWrite> {
    if current == desired {
        return None;
    }
    let value = serde_json::to_value(desired).ok()?;
    Some(StatusWrite {
        kind: status.kind,
        namespace: status.namespace.clone(),
        name: status.name.clone(),
        status: value,
    })
}

/// Applies the writes (server-side apply on the `status` subresource, field manager `signet`,
/// forced: signet owns its resources' status). Returns how many failed; each failure is logged.
pub(crate) async fn apply_writes(client: &Client, writes: &[StatusWrite]) -> usize {
    let mut failed = 0;
    for write in writes {
        let result = match write.kind {
            ObjectKind::Attestor => apply(Api::<Attestor>::all(client.clone()), write).await,
            ObjectKind::ClusterVerificationPolicy => {
                apply(Api::<ClusterVerificationPolicy>::all(client.clone()), write).await
            }
            ObjectKind::VerificationPolicy => {
                let namespace = write.namespace.as_deref().unwrap_or_default();
                apply(
                    Api::<VerificationPolicy>::namespaced(client.clone(), namespace),
                    write,
                )
                .await
            }
        };
        match result {
            Ok(()) => tracing::debug!(object = %write.object(), "status written"),
            Err(e) => {
                failed += 1;
                tracing::warn!(object = %write.object(), error = %e, "cannot write status");
            }
        }
    }
    failed
}

async fn apply<K>(api: Api<K>, write: &StatusWrite) -> Result<(), kube::Error>
where
    K: Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let mut metadata = json!({ "name": write.name });
    if let Some(namespace) = &write.namespace {
        metadata["namespace"] = json!(namespace);
    }
    let body = json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "metadata": metadata,
        "status": write.status,
    });
    let params = PatchParams::apply(FIELD_MANAGER).force();
    api.patch_status(&write.name, &params, &Patch::Apply(body))
        .await
        .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::NotReadyReason;

    fn status(ready: bool) -> ObjectStatus {
        ObjectStatus {
            kind: ObjectKind::ClusterVerificationPolicy,
            namespace: None,
            name: "prod".into(),
            generation: Some(3),
            ready,
            reason: (!ready).then_some(NotReadyReason::AttestorNotFound),
            message: (!ready).then(|| "spec.attestors: attestor \"x\" not found".into()),
            keys: Vec::new(),
        }
    }

    fn at(seconds: i64) -> Time {
        Time(Timestamp::from_second(seconds).unwrap())
    }

    #[test]
    fn the_transition_time_is_kept_while_the_status_holds() {
        let before = ready_condition(&status(false), &[], &at(100));
        assert_eq!(before.last_transition_time, at(100));
        assert_eq!(before.reason, "AttestorNotFound");
        let same = ready_condition(&status(false), std::slice::from_ref(&before), &at(200));
        assert_eq!(same.last_transition_time, at(100));
        let flipped = ready_condition(&status(true), &[before], &at(300));
        assert_eq!(flipped.last_transition_time, at(300));
        assert_eq!(flipped.reason, "Ready");
        assert_eq!(flipped.status, "True");
        assert_eq!(flipped.observed_generation, Some(3));
    }
}
