//! The current picture the webhook and the signer decide from. One writer (the controller or the
//! policy-folder watcher) publishes whole compiled snapshots; readers take an `Arc` to the latest
//! one without waiting for the writer, so a request always decides from one consistent picture.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::watch;

use crate::crd::SigningRule;
use crate::policy::{self, EngineOptions, PolicyInputs, Snapshot};

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
    ready: watch::Receiver<bool>,
}

/// The single write side.
pub struct PolicyPublisher {
    picture: watch::Sender<Picture>,
    ready: watch::Sender<bool>,
    generation: AtomicU64,
}

/// A channel that starts with an empty snapshot (generation 0), not ready.
pub fn policy_channel(options: EngineOptions) -> (PolicyPublisher, PolicyState) {
    let empty = policy::compile(&PolicyInputs::default(), 0, options).snapshot;
    let (picture_tx, picture_rx) = watch::channel(Picture {
        snapshot: Arc::new(empty),
        signing_rules: Arc::new(Vec::new()),
    });
    let (ready_tx, ready_rx) = watch::channel(false);
    (
        PolicyPublisher {
            picture: picture_tx,
            ready: ready_tx,
            generation: AtomicU64::new(0),
        },
        PolicyState {
            picture: picture_rx,
            ready: ready_rx,
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
        // send_replace never fails, even with no receiver left.
        self.picture.send_replace(Picture {
            snapshot: Arc::new(snapshot),
            signing_rules: Arc::new(signing_rules),
        });
    }

    /// Marks whether every source has synced.
    pub fn set_ready(&self, ready: bool) {
        self.ready.send_replace(ready);
    }

    /// A reader of this publisher's pictures.
    pub fn subscribe(&self) -> PolicyState {
        PolicyState {
            picture: self.picture.subscribe(),
            ready: self.ready.subscribe(),
        }
    }
}

impl PolicyState {
    /// A fixed, ready picture (tests, one-shot CLI runs).
    pub fn fixed(snapshot: Snapshot, signing_rules: Vec<SigningRule>) -> Self {
        let (picture_tx, picture_rx) = watch::channel(Picture {
            snapshot: Arc::new(snapshot),
            signing_rules: Arc::new(signing_rules),
        });
        drop(picture_tx);
        let (ready_tx, ready_rx) = watch::channel(true);
        drop(ready_tx);
        PolicyState {
            picture: picture_rx,
            ready: ready_rx,
        }
    }

    /// The latest picture.
    pub fn picture(&self) -> Picture {
        self.picture.borrow().clone()
    }

    /// The latest compiled snapshot.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        Arc::clone(&self.picture.borrow().snapshot)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn readers_see_the_latest_picture() {
        let (publisher, mut state) = policy_channel(EngineOptions::default());
        assert!(!state.is_ready());
        assert_eq!(state.snapshot().generation(), 0);
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
        assert!(state.is_ready());
        assert_eq!(publisher.next_generation(), 2);
    }

    #[test]
    fn fixed_state_is_ready() {
        let compiled = policy::compile(&PolicyInputs::default(), 7, EngineOptions::default());
        let state = PolicyState::fixed(compiled.snapshot, Vec::new());
        assert!(state.is_ready());
        assert_eq!(state.snapshot().generation(), 7);
    }
}
