//! Debian's `docker-registry` as the run's child process: on a loopback port, its storage in memory
//! or in a temporary folder, notifying the signer as the README configures it.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use anyhow::bail;

use crate::TOKEN;

const REGISTRY: &str = "/usr/bin/docker-registry";

/// The registry child, killed on drop (its storage folder goes with it).
pub struct RegistryProcess {
    child: Child,
    _storage: tempfile::TempDir,
}

impl Drop for RegistryProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Starts `docker-registry` on a loopback port, notifying `events_url`.
pub fn start_registry(
    events_url: Option<&str>,
    storage: &str,
) -> anyhow::Result<(RegistryProcess, String)> {
    if !Path::new(REGISTRY).exists() {
        bail!("{REGISTRY} not found: install the Debian package docker-registry");
    }
    let dir = tempfile::tempdir()?;
    let port = free_port()?;
    let storage = match storage {
        "inmemory" => "inmemory: {}".to_string(),
        "disk" => format!(
            "filesystem:\n    rootdirectory: {}",
            dir.path().join("storage").display()
        ),
        other => bail!("--storage inmemory|disk, not {other}"),
    };
    let notifications = match events_url {
        Some(url) => format!(
            "notifications:\n  endpoints:\n    - name: signet\n      url: {url}\n      \
             headers:\n        Authorization: [\"Bearer {TOKEN}\"]\n      timeout: 5s\n      \
             threshold: 3\n      backoff: 1s\n      ignoredmediatypes:\n        - application/octet-stream\n      \
             ignore:\n        actions: [pull]\n"
        ),
        None => String::new(),
    };
    let config = format!(
        "version: 0.1\n\
         log:\n  level: warn\n  accesslog:\n    disabled: true\n\
         storage:\n  {storage}\n\
         http:\n  addr: 127.0.0.1:{port}\n  secret: load\n{notifications}",
    );
    let config_path = dir.path().join("config.yml");
    std::fs::write(&config_path, config)?;
    let log = std::fs::File::create(dir.path().join("registry.log"))?;
    let child = Command::new(REGISTRY)
        .arg("serve")
        .arg(&config_path)
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()?;
    let process = RegistryProcess {
        child,
        _storage: dir,
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            bail!("docker-registry did not start");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok((process, format!("127.0.0.1:{port}")))
}
