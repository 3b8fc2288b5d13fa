//! Cluster mode: reflectors on the four signet kinds and on Namespaces (metadata only: the labels
//! are all a `namespaceSelector` reads), compiled into snapshots for the webhook and the signer,
//! and status written back to the objects.
//!
//! - Nothing is compiled until every watch has delivered its initial list: a snapshot built from
//!   half the resources would deny (or allow) wrongly, and its statuses would tell a policy its
//!   attestor is missing when it has only not been listed yet. The state turns ready then.
//! - Bursts of events (a `kubectl apply -f dir/`) are compiled once: the first change opens a
//!   [`DEBOUNCE`] window, whatever arrives within it joins the same compilation.
//! - A watch that fails (API server restart, HTTP 410 Gone after compaction) is retried with
//!   backoff and relisted by kube-runtime; the last picture stays in force meanwhile.
//! - Status is written only when it differs from what the object carries, and, with leader
//!   election, only by the holder of the Lease, so replicas do not fight over it.

use std::fmt::Debug;
use std::time::Duration;

use futures::stream::{self, BoxStream};
use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::Api;
use kube::core::PartialObjectMeta;
use kube::runtime::WatchStreamExt;
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher::{self, Event};
use kube::{Client, Resource, ResourceExt};
use kube_lease_manager::LeaseManagerBuilder;
use serde::de::DeserializeOwned;
use tokio::sync::watch;
use tokio::time::Instant;

use super::error::ControllerError;
use super::state::PolicyPublisher;
use super::status::{StatusStores, apply_writes, pending_writes};
use crate::crd::{Attestor, ClusterVerificationPolicy, SigningRule, VerificationPolicy};
use crate::policy::{self, EngineOptions, ObjectStatus, PolicyInputs};

/// How long a burst of changes is gathered before one compilation.
pub const DEBOUNCE: Duration = Duration::from_millis(150);

/// How long after a failed status write it is tried again.
pub const STATUS_RETRY: Duration = Duration::from_secs(5);

/// Which replica writes status: the holder of one Lease.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaderElection {
    /// Namespace of the Lease (usually signet's own).
    pub lease_namespace: String,
    /// Name of the Lease (`signet-controller`).
    pub lease_name: String,
    /// This replica's identity in the Lease (usually the pod name).
    pub identity: String,
}

/// The watched sources, in the order of [`Sources::synced`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Source {
    Attestors,
    VerificationPolicies,
    ClusterVerificationPolicies,
    SigningRules,
    Namespaces,
}

const SOURCES: usize = 5;

impl Source {
    fn name(self) -> &'static str {
        match self {
            Source::Attestors => "Attestor",
            Source::VerificationPolicies => "VerificationPolicy",
            Source::ClusterVerificationPolicies => "ClusterVerificationPolicy",
            Source::SigningRules => "SigningRule",
            Source::Namespaces => "Namespace",
        }
    }
}

/// What a watch event means to the controller.
enum Signal {
    /// The initial list (or a relist) is complete: the store holds the whole set.
    Listed,
    /// An object was added, changed or deleted.
    Changed,
    /// Part of a list in progress; the store changes only when it completes.
    Listing,
    /// The watch failed; it is retried with backoff.
    Failed(String),
}

/// A reflector's events as signals for one source.
fn signals<K, S>(
    source: Source,
    events: S,
    writer: reflector::store::Writer<K>,
) -> BoxStream<'static, (Source, Signal)>
where
    K: Resource<DynamicType = ()> + Clone + Send + Sync + 'static,
    S: Stream<Item = watcher::Result<Event<K>>> + Send + 'static,
{
    events
        .default_backoff()
        .reflect(writer)
        .map(move |event| {
            let signal = match event {
                Ok(Event::InitDone) => Signal::Listed,
                Ok(Event::Init | Event::InitApply(_)) => Signal::Listing,
                Ok(Event::Apply(_) | Event::Delete(_)) => Signal::Changed,
                Err(e) => Signal::Failed(e.to_string()),
            };
            (source, signal)
        })
        .boxed()
}

fn watch_all<K>(client: &Client, source: Source) -> (Store<K>, BoxStream<'static, (Source, Signal)>)
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    let (store, writer) = reflector::store::<K>();
    let events = watcher::watcher(Api::<K>::all(client.clone()), watcher::Config::default());
    (store, signals(source, events, writer))
}

/// Every store the controller compiles from.
struct Stores {
    status: StatusStores,
    signing_rules: Store<SigningRule>,
    namespaces: Store<PartialObjectMeta<Namespace>>,
}

impl Stores {
    fn inputs(&self) -> (PolicyInputs, Vec<SigningRule>) {
        let inputs = PolicyInputs {
            attestors: owned(self.status.attestors.state()),
            policies: owned(self.status.policies.state()),
            cluster_policies: owned(self.status.cluster_policies.state()),
            namespaces: self
                .namespaces
                .state()
                .iter()
                .map(|ns| (ns.name_any(), ns.labels().clone()))
                .collect(),
        };
        (inputs, owned(self.signing_rules.state()))
    }
}

fn owned<K: Clone>(items: Vec<std::sync::Arc<K>>) -> Vec<K> {
    items.into_iter().map(|item| (*item).clone()).collect()
}

/// Which replicas write the resources' status.
#[derive(Clone, Debug)]
pub enum StatusWrites {
    /// This process only reads (the signer: its RBAC has no status or Lease rights).
    Never,
    /// This process writes (a single replica, or tests).
    Always,
    /// Only the holder of this Lease writes.
    WhenLeader(LeaderElection),
}

/// Who writes status: no one, everyone (no election) or the Lease holder.
pub(super) struct Leadership {
    changes: Option<watch::Receiver<bool>>,
    pub(super) is_leader: bool,
}

impl Leadership {
    pub(super) async fn start(
        client: &Client,
        writes: StatusWrites,
    ) -> Result<Self, ControllerError> {
        let election = match writes {
            StatusWrites::Never | StatusWrites::Always => {
                return Ok(Leadership {
                    changes: None,
                    is_leader: matches!(writes, StatusWrites::Always),
                });
            }
            StatusWrites::WhenLeader(election) => election,
        };
        let manager = LeaseManagerBuilder::new(client.clone(), &election.lease_name)
            .with_namespace(&election.lease_namespace)
            .with_identity(&election.identity)
            .build()
            .await
            .map_err(|source| ControllerError::LeaderElection {
                lease: format!("{}/{}", election.lease_namespace, election.lease_name),
                source,
            })?;
        // The task renews the Lease while the receiver lives, and releases it when dropped.
        let (changes, _task) = manager.watch().await;
        let is_leader = *changes.borrow();
        Ok(Leadership {
            changes: Some(changes),
            is_leader,
        })
    }

    /// Waits for a change of leadership; returns the new state.
    pub(super) async fn changed(&mut self) -> bool {
        let Some(changes) = &mut self.changes else {
            return std::future::pending().await;
        };
        if changes.changed().await.is_err() {
            tracing::error!("leader election stopped; this replica no longer writes status");
            self.changes = None;
            self.is_leader = false;
        } else {
            self.is_leader = *changes.borrow_and_update();
        }
        self.is_leader
    }
}

/// Watches the cluster and keeps `publisher` current; writes status when this replica is the
/// leader, as `status_writes` says. Returns only on an error: leader election
/// that cannot start, or a watch stream that ends.
pub async fn run_controller(
    client: Client,
    options: EngineOptions,
    publisher: PolicyPublisher,
    status_writes: StatusWrites,
) -> Result<(), ControllerError> {
    let (attestors, attestor_events) = watch_all::<Attestor>(&client, Source::Attestors);
    let (policies, policy_events) =
        watch_all::<VerificationPolicy>(&client, Source::VerificationPolicies);
    let (cluster_policies, cluster_policy_events) =
        watch_all::<ClusterVerificationPolicy>(&client, Source::ClusterVerificationPolicies);
    let (signing_rules, signing_rule_events) =
        watch_all::<SigningRule>(&client, Source::SigningRules);
    // Metadata only: the labels are all a namespaceSelector reads.
    let (namespaces, namespace_events) =
        watch_all::<PartialObjectMeta<Namespace>>(&client, Source::Namespaces);
    let stores = Stores {
        status: StatusStores {
            attestors,
            policies,
            cluster_policies,
        },
        signing_rules,
        namespaces,
    };
    let mut events = stream::select_all([
        attestor_events,
        policy_events,
        cluster_policy_events,
        signing_rule_events,
        namespace_events,
    ]);
    let mut leadership = Leadership::start(&client, status_writes).await?;

    let mut synced = [false; SOURCES];
    let mut dirty = false;
    let mut deadline: Option<Instant> = None;
    let mut statuses: Vec<ObjectStatus> = Vec::new();
    let mut statuses_to_write = false;
    loop {
        let timer = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            event = events.next() => {
                let Some((source, signal)) = event else {
                    return Err(ControllerError::WatchEnded { kind: "signet resources" });
                };
                match signal {
                    Signal::Listed => {
                        if !synced[source as usize] {
                            tracing::info!(kind = source.name(), "initial list complete");
                        }
                        synced[source as usize] = true;
                        dirty = true;
                    }
                    Signal::Changed => dirty = true,
                    Signal::Listing => {}
                    Signal::Failed(error) => {
                        tracing::warn!(kind = source.name(), %error, "watch failed; retrying");
                    }
                }
            }
            () = timer => {
                deadline = None;
                if dirty {
                    dirty = false;
                    let (inputs, rules) = stores.inputs();
                    let generation = publisher.next_generation();
                    let compiled = policy::compile(&inputs, generation, options);
                    publisher.record_statuses(&compiled.statuses);
                    publisher.publish(compiled.snapshot, rules);
                    publisher.set_ready(true);
                    tracing::debug!(generation, "policy snapshot published");
                    statuses = compiled.statuses;
                    statuses_to_write = true;
                }
                if statuses_to_write && leadership.is_leader {
                    let writes = pending_writes(&stores.status, &statuses);
                    let failed = apply_writes(&client, &writes).await;
                    statuses_to_write = failed > 0;
                    if failed > 0 {
                        deadline = Some(Instant::now() + STATUS_RETRY);
                    }
                }
            }
            is_leader = leadership.changed() => {
                tracing::info!(is_leader, "leadership changed");
                if is_leader && synced.iter().all(|s| *s) {
                    statuses_to_write = true;
                    deadline.get_or_insert_with(Instant::now);
                }
            }
        }
        if dirty && deadline.is_none() && synced.iter().all(|s| *s) {
            deadline = Some(Instant::now() + DEBOUNCE);
        }
    }
}
