//! Keeps the policy picture current: watches the resources (cluster) or a policy folder, compiles
//! them, publishes snapshots for the webhook and the signer, and writes status.

pub mod audit;
mod cluster;
mod error;
mod policy_dir;
mod state;
mod status;

pub use cluster::{DEBOUNCE, LeaderElection, STATUS_RETRY, StatusWrites, run_controller};
pub use error::{ControllerError, FileProblem};
pub use policy_dir::{
    DEFAULT_NAMESPACE, LoadedDir, POLL_INTERVAL, load_policy_dir, watch_policy_dir,
    watch_policy_dir_every,
};
pub use state::{
    ObjectKindKey, Picture, PolicyHealth, PolicyPublisher, PolicyState, policy_channel,
};
pub use status::FIELD_MANAGER;
