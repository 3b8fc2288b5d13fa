//! Keeps the policy picture current: watches the resources (cluster) or a policy folder, compiles
//! them, publishes snapshots for the webhook and the signer, and writes status.

mod state;

pub use state::{Picture, PolicyPublisher, PolicyState, policy_channel};
