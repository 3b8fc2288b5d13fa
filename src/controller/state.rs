//! The current picture the webhook and the signer decide from. One writer (the controller or the
//! policy-folder watcher) publishes whole compiled snapshots; readers take an `Arc` to the latest
//! one without waiting for the writer, so a request always decides from one consistent picture.
//! Beside the picture, [`PolicyHealth`] says how the source is doing (objects Ready or not,
//! when the picture in force was loaded, rejected folder changes), for the metrics.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use tokio::sync::watch;

use crate::crd::SigningRule;
use crate::policy::{self, EngineOptions, ObjectKind, ObjectStatus, PolicyInputs, Snapshot};

/// How the policy source is doing, as of its last load: what the `signet_policy_*` metrics show.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PolicyHealth {
    /// Per compiled kind: (Ready, not Ready) objects of the picture in force.
    pub objects: BTreeMap<ObjectKindKey, (u64, u64)>,
    /// SigningRules of the picture in force.
    pub signing_rules: u64,
    /// When the picture in force was loaded (seconds since the epoch); `None` before the first.
    pub last_load: Option<f64>,
    /// Whether the last attempt to load succeeded (a rejected folder change sets it false; the
    /// last good picture stays in force).
    pub last_load_ok: bool,
    /// Loads rejected since start (a policy-folder change that does not parse or compile).
    pub load_errors: u64,
}

/// An [`ObjectKind`] as a map key, ordered for stable output.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ObjectKindKey {
    /// Attestor.
    Attestor,
    /// VerificationPolicy.
    VerificationPolicy,
    /// ClusterVerificationPolicy.
    ClusterVerificationPolicy,
}

impl From<ObjectKind> for ObjectKindKey {
    fn from(kind: ObjectKind) -> Self {
        match kind {
            ObjectKind::Attestor => ObjectKindKey::Attestor,
            ObjectKind::VerificationPolicy => ObjectKindKey::VerificationPolicy,
            ObjectKind::ClusterVerificationPolicy => ObjectKindKey::ClusterVerificationPolicy,
        }
    }
}

fn now_seconds() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default()
}

fn lock(health: &Mutex<PolicyHealth>) -> std::sync::MutexGuard<'_, PolicyHealth> {
    // A panic while holding it leaves plain numbers, still worth reading.
    health.lock().unwrap_or_else(|p| p.into_inner())
}

/// One published picture: the compiled policy snapshot and the signing rules.
#[derive(Clone, Debug)]
pub struct Picture {
    /// The compiled policy resources (attestors, policies, namespace labels) images are judged by.
    pub snapshot: Arc<Snapshot>,
    /// The SigningRules (from the cluster or the policy folder) the signer picks a key by.
    pub signing_rules: Arc<Vec<SigningRule>>,
}

/// The read side: cheap to clone, never blocks on the writer.
#[derive(Clone)]
pub struct PolicyState {
    picture: watch::Receiver<Picture>,
    current: Arc<AtomicU64>,
    ready: watch::Receiver<bool>,
    health: Arc<Mutex<PolicyHealth>>,
}

/// The single write side.
pub struct PolicyPublisher {
    picture: watch::Sender<Picture>,
    /// The published snapshot's generation, readable without the channel's lock.
    current: Arc<AtomicU64>,
    ready: watch::Sender<bool>,
    generation: AtomicU64,
    health: Arc<Mutex<PolicyHealth>>,
}

/// A channel that starts with an empty snapshot (generation 0), not ready.
pub fn policy_channel(options: EngineOptions) -> (PolicyPublisher, PolicyState) {
    let empty = policy::compile(&PolicyInputs::default(), 0, options).snapshot;
    let (picture_tx, picture_rx) = watch::channel(Picture {
        snapshot: Arc::new(empty),
        signing_rules: Arc::new(Vec::new()),
    });
    let (ready_tx, ready_rx) = watch::channel(false);
    let health = Arc::new(Mutex::new(PolicyHealth::default()));
    let current = Arc::new(AtomicU64::new(0));
    (
        PolicyPublisher {
            picture: picture_tx,
            current: Arc::clone(&current),
            ready: ready_tx,
            generation: AtomicU64::new(0),
            health: Arc::clone(&health),
        },
        PolicyState {
            picture: picture_rx,
            current,
            ready: ready_rx,
            health,
        },
    )
}

impl PolicyPublisher {
    /// The generation to compile the next snapshot with (strictly increasing from 1).
    pub fn next_generation(&self) -> u64 {
        self.generation.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Replaces the picture every reader sees.
    pub fn publish(&self, snapshot: Snapshot, signing_rules: Vec<SigningRule>) {
        {
            let mut health = lock(&self.health);
            health.signing_rules = signing_rules.len() as u64;
            health.last_load = Some(now_seconds());
            health.last_load_ok = true;
        }
        // send_replace never fails, even with no receiver left.
        let generation = snapshot.generation();
        self.picture.send_replace(Picture {
            snapshot: Arc::new(snapshot),
            signing_rules: Arc::new(signing_rules),
        });
        // After the picture: a reader that sees this generation finds its snapshot published.
        self.current.store(generation, Ordering::Release);
    }

    /// Records the Ready state of every object of the picture about to be published.
    pub fn record_statuses(&self, statuses: &[ObjectStatus]) {
        lock(&self.health).objects = count_statuses(statuses);
    }

    /// Records a load that was rejected (the last good picture stays in force).
    pub fn record_rejected_load(&self) {
        let mut health = lock(&self.health);
        health.load_errors += 1;
        health.last_load_ok = false;
    }

    /// Marks whether every source has synced.
    pub fn set_ready(&self, ready: bool) {
        self.ready.send_replace(ready);
    }

    /// A reader of this publisher's pictures.
    pub fn subscribe(&self) -> PolicyState {
        PolicyState {
            picture: self.picture.subscribe(),
            current: Arc::clone(&self.current),
            ready: self.ready.subscribe(),
            health: Arc::clone(&self.health),
        }
    }
}

impl PolicyState {
    /// A fixed, ready picture (tests, one-shot CLI runs).
    pub fn fixed(snapshot: Snapshot, signing_rules: Vec<SigningRule>) -> Self {
        let current = Arc::new(AtomicU64::new(snapshot.generation()));
        let (picture_tx, picture_rx) = watch::channel(Picture {
            snapshot: Arc::new(snapshot),
            signing_rules: Arc::new(signing_rules),
        });
        drop(picture_tx);
        let (ready_tx, ready_rx) = watch::channel(true);
        drop(ready_tx);
        let health = PolicyHealth {
            signing_rules: picture_rx.borrow().signing_rules.len() as u64,
            last_load: Some(now_seconds()),
            last_load_ok: true,
            ..PolicyHealth::default()
        };
        PolicyState {
            picture: picture_rx,
            current,
            ready: ready_rx,
            health: Arc::new(Mutex::new(health)),
        }
    }

    /// How the source is doing, now.
    pub fn health(&self) -> PolicyHealth {
        lock(&self.health).clone()
    }

    /// The latest picture.
    pub fn picture(&self) -> Picture {
        self.picture.borrow().clone()
    }

    /// The latest compiled snapshot.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        Arc::clone(&self.picture.borrow().snapshot)
    }

    /// The latest snapshot's generation, read without the channel's lock or a shared count:
    /// what a fully cached admission needs, on every serving thread at once.
    pub fn generation(&self) -> u64 {
        self.current.load(Ordering::Acquire)
    }

    /// The latest signing rules.
    pub fn signing_rules(&self) -> Arc<Vec<SigningRule>> {
        Arc::clone(&self.picture.borrow().signing_rules)
    }

    /// Whether every source has synced (what `/readyz` reports).
    pub fn is_ready(&self) -> bool {
        *self.ready.borrow()
    }

    /// Waits for the next picture; `false` when the publisher is gone and none will come.
    pub async fn changed(&mut self) -> bool {
        self.picture.changed().await.is_ok()
    }
}

/// (Ready, not Ready) per kind.
fn count_statuses(statuses: &[ObjectStatus]) -> BTreeMap<ObjectKindKey, (u64, u64)> {
    let mut counts: BTreeMap<ObjectKindKey, (u64, u64)> = BTreeMap::new();
    for status in statuses {
        let entry = counts.entry(status.kind.into()).or_default();
        if status.ready {
            entry.0 += 1;
        } else {
            entry.1 += 1;
        }
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn readers_see_the_latest_picture() {
        let (publisher, mut state) = policy_channel(EngineOptions::default());
        assert!(!state.is_ready());
        assert_eq!(state.snapshot().generation(), 0);
        assert_eq!(state.generation(), 0);
        let generation = publisher.next_generation();
        let compiled = policy::compile(
            &PolicyInputs::default(),
            generation,
            EngineOptions::default(),
        );
        publisher.publish(compiled.snapshot, Vec::new());
        publisher.set_ready(true);
        assert!(state.changed().await);
        assert_eq!(state.snapshot().generation(), 1);
        assert_eq!(state.generation(), 1, "the lock-free read agrees");
        assert!(state.is_ready());
        assert_eq!(publisher.next_generation(), 2);
    }

    #[test]
    fn health_counts_objects_by_kind_and_rejected_loads() {
        use crate::crd::{Attestor, AttestorSpec};
        let (publisher, state) = policy_channel(EngineOptions::default());
        assert_eq!(state.health(), PolicyHealth::default());
        // An Attestor without keys is not Ready.
        let inputs = PolicyInputs {
            attestors: vec![Attestor::new(
                "empty",
                AttestorSpec {
                    description: None,
                    keys: Vec::new(),
                },
            )],
            ..PolicyInputs::default()
        };
        let compiled = policy::compile(&inputs, 1, EngineOptions::default());
        publisher.record_statuses(&compiled.statuses);
        publisher.publish(compiled.snapshot, Vec::new());
        let health = state.health();
        assert_eq!(health.objects.get(&ObjectKindKey::Attestor), Some(&(0, 1)));
        assert!(health.last_load.is_some_and(|t| t > 1.7e9));
        assert!(health.last_load_ok);
        publisher.record_rejected_load();
        let health = state.health();
        assert_eq!((health.load_errors, health.last_load_ok), (1, false));
    }

    #[test]
    fn fixed_state_is_ready() {
        let compiled = policy::compile(&PolicyInputs::default(), 7, EngineOptions::default());
        let state = PolicyState::fixed(compiled.snapshot, Vec::new());
        assert!(state.is_ready());
        assert_eq!(state.snapshot().generation(), 7);
    }
}
