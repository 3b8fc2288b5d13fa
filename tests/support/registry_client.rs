//! The registry client as the registry tests build it (`support::registry_client`): exactly the
//! credentials given (the user's docker config is not read, so it cannot change what they see).

use std::time::Duration;

use signet::reference::ImageRef;
use signet::registry::{DockerConfig, RegistryClient, RegistryOptions};

/// No credentials, a 5 s timeout.
pub fn client() -> RegistryClient {
    client_with(DockerConfig::new(), Duration::from_secs(5))
}

/// Only `credentials`, and `timeout` for each request.
pub fn client_with(credentials: DockerConfig, timeout: Duration) -> RegistryClient {
    let options = RegistryOptions {
        timeout,
        ..RegistryOptions::default()
    };
    RegistryClient::with_config(&options, credentials).expect("registry client")
}

pub fn image(text: &str) -> ImageRef {
    ImageRef::parse(text).expect("image reference")
}
