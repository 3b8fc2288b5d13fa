//! Starting the policy source both servers run on: a policy folder (checked at start, then
//! watched) or the cluster (the controller's watches), publishing into one [`PolicyState`].
//! The webhook writes CRD status (always, or as the Lease holder); the signer only reads.

use std::path::PathBuf;

use tokio::task::JoinHandle;

use crate::controller::{self, ControllerError, PolicyState, StatusWrites, policy_channel};
use crate::policy::EngineOptions;

/// Why the policy source could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum PolicySourceError {
    /// No Kubernetes client (cluster mode needs one).
    #[error("cannot reach the Kubernetes API (use --policy-dir to run without a cluster): {0}")]
    Kube(String),
    /// The folder could not be loaded, or the controller failed.
    #[error(transparent)]
    Policy(#[from] ControllerError),
    /// The source ended although it should run as long as the process.
    #[error("the policy source stopped")]
    Stopped,
    /// The source's task ended abnormally (a panic).
    #[error("the policy source failed: {0}")]
    Task(String),
}

/// Where policies come from.
#[derive(Clone, Debug)]
pub struct PolicySourceConfig {
    /// A folder of YAML documents; `None`: the cluster.
    pub policy_dir: Option<PathBuf>,
    /// Engine options the snapshots are compiled with.
    pub options: EngineOptions,
    /// Whether this process writes CRD status (cluster mode only).
    pub status_writes: StatusWrites,
}

/// A running policy source.
pub struct PolicySource {
    /// The picture it keeps current.
    pub state: PolicyState,
    /// The Kubernetes client, in cluster mode.
    pub kube: Option<kube::Client>,
    /// `None` once awaited.
    task: Option<JoinHandle<Result<(), ControllerError>>>,
}

impl PolicySource {
    /// Starts the source. A bad folder is an error here, naming the file and the field.
    pub async fn start(config: PolicySourceConfig) -> Result<Self, PolicySourceError> {
        let (publisher, state) = policy_channel(config.options);
        let (kube, task) = match config.policy_dir {
            Some(dir) => {
                controller::load_policy_dir(&dir)?;
                let watcher = controller::watch_policy_dir(dir, config.options, publisher);
                (None, tokio::spawn(watcher))
            }
            None => {
                let client = kube::Client::try_default()
                    .await
                    .map_err(|e| PolicySourceError::Kube(e.to_string()))?;
                let controller = controller::run_controller(
                    client.clone(),
                    config.options,
                    publisher,
                    config.status_writes,
                );
                (Some(client), tokio::spawn(controller))
            }
        };
        Ok(PolicySource {
            state,
            kube,
            task: Some(task),
        })
    }

    /// Resolves when the source ends; it never should, so the answer is always an error (a
    /// process whose picture can no longer change must not keep deciding). Pending forever once
    /// it has answered.
    pub async fn ended(&mut self) -> PolicySourceError {
        let Some(task) = self.task.as_mut() else {
            return std::future::pending().await;
        };
        let ended = task.await;
        self.task = None;
        match ended {
            Ok(Ok(())) => PolicySourceError::Stopped,
            Ok(Err(e)) => PolicySourceError::Policy(e),
            Err(e) if e.is_cancelled() => std::future::pending().await,
            Err(e) => PolicySourceError::Task(e.to_string()),
        }
    }

    /// Waits until the source has published its first picture, or fails with its error.
    pub async fn wait_ready(&mut self) -> Result<(), PolicySourceError> {
        while !self.state.is_ready() {
            if self.task.as_ref().is_none_or(JoinHandle::is_finished) {
                return Err(self.ended().await);
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        Ok(())
    }

    /// Stops the source.
    pub fn stop(&self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}
