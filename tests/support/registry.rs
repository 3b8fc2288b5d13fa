//! Debian's `docker-registry` (CNCF distribution 2.8) as a child process on a free loopback port.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BINARY: &str = "/usr/bin/docker-registry";
/// How long a fresh registry may take to answer `/v2/`.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// Attempts with a new port when the chosen one was taken in between.
const PORT_ATTEMPTS: usize = 5;

/// A running registry; killed when dropped. Storage lives in a temporary directory that
/// survives [`Registry::restart`].
pub struct Registry {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
    config_path: PathBuf,
    log_path: PathBuf,
    notifications: Option<(String, String)>,
    protection: Protection,
}

/// What a registry demands beyond the defaults (plain HTTP, anonymous), set by
/// [`Registry::protect`].
#[derive(Clone, Debug, Default)]
pub struct Protection {
    /// An htpasswd file (bcrypt entries, as `htpasswd -B` writes): HTTP Basic authentication.
    pub htpasswd: Option<PathBuf>,
    /// A PEM certificate and key: the registry speaks TLS only.
    pub tls: Option<(PathBuf, PathBuf)>,
}

impl Registry {
    /// Starts a registry without notifications.
    pub fn start() -> Self {
        Self::launch(None)
    }

    /// Starts a registry that POSTs its events to `url` with `Authorization: Bearer <token>`
    /// (timeout 1s, threshold 3, backoff 1s; blob events, typed `application/octet-stream`,
    /// and pull events are not sent, as the README's configuration says).
    pub fn start_with_notifications(url: &str, token: &str) -> Self {
        Self::launch(Some((url.to_string(), token.to_string())))
    }

    fn launch(notifications: Option<(String, String)>) -> Self {
        if !Path::new(BINARY).exists() {
            panic!("{BINARY} not found: install the Debian package `docker-registry`");
        }
        let mut dir = tempfile::tempdir().expect("registry temporary directory");
        let config_path = dir.path().join("config.yml");
        let log_path = dir.path().join("registry.log");
        let mut last_log = String::new();
        for _ in 0..PORT_ATTEMPTS {
            let port = super::closed_port();
            let mut registry = Registry {
                child: None,
                port,
                config_path: config_path.clone(),
                log_path: log_path.clone(),
                notifications: notifications.clone(),
                protection: Protection::default(),
                dir,
            };
            registry.write_config();
            match registry.spawn_and_wait() {
                Ok(()) => return registry,
                Err(log) if log.contains("address already in use") => {
                    last_log = log;
                    dir = registry.take_dir();
                }
                Err(log) => panic!("docker-registry did not start on port {port}; its log:\n{log}"),
            }
        }
        panic!(
            "docker-registry found no free port in {PORT_ATTEMPTS} attempts; last log:\n{last_log}"
        );
    }

    /// Moves the temporary directory out of a registry that failed to start (nothing runs).
    fn take_dir(mut self) -> tempfile::TempDir {
        self.child = None;
        let placeholder = tempfile::tempdir().expect("temporary directory");
        std::mem::replace(&mut self.dir, placeholder)
    }

    /// `127.0.0.1:PORT`: the registry part of image references.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.host())
    }

    /// Where the registry keeps its blobs and repositories.
    pub fn storage_dir(&self) -> PathBuf {
        self.dir.path().join("storage")
    }

    /// The registry's log so far (stdout and stderr).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// The registry process's id, while it runs (to pause it with SIGSTOP).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(std::process::Child::id)
    }

    /// Stops the registry and starts it again on the same port with the same storage.
    pub fn restart(&mut self) {
        self.stop();
        if let Err(log) = self.spawn_and_wait() {
            panic!(
                "docker-registry did not restart on port {}; its log:\n{log}",
                self.port
            );
        }
    }

    /// Restarts the registry on the same port and storage, demanding `protection` from now on
    /// (push test images before: the pusher speaks plain, anonymous HTTP).
    pub fn protect(&mut self, protection: Protection) {
        self.stop();
        self.protection = protection;
        self.write_config();
        if let Err(log) = self.spawn_and_wait() {
            panic!(
                "docker-registry did not restart protected on port {}; its log:\n{log}",
                self.port
            );
        }
    }

    /// Pushes the test image for `seed` as `repo:tag`; returns its manifest digest.
    pub async fn push_test_image(&self, repo: &str, tag: &str, seed: &str) -> String {
        super::push_test_image(&self.host(), repo, tag, seed).await
    }

    fn write_config(&self) {
        let storage = self.storage_dir();
        let mut config = format!(
            "version: 0.1\n\
             log:\n  level: info\n  formatter: text\n\
             storage:\n  filesystem:\n    rootdirectory: {storage}\n  delete:\n    enabled: true\n\
             http:\n  addr: 127.0.0.1:{port}\n  secret: signet-test-secret\n",
            storage = storage.display(),
            port = self.port,
        );
        if let Some((cert, key)) = &self.protection.tls {
            config.push_str(&format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                cert.display(),
                key.display()
            ));
        }
        if let Some(htpasswd) = &self.protection.htpasswd {
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: signet-test\n    path: {}\n",
                htpasswd.display()
            ));
        }
        if let Some((url, token)) = &self.notifications {
            config.push_str(&format!(
                "notifications:\n  endpoints:\n    - name: signet\n      url: {url}\n      \
                 headers:\n        Authorization: [\"Bearer {token}\"]\n      timeout: 1s\n      \
                 threshold: 3\n      backoff: 1s\n      ignoredmediatypes:\n        - application/octet-stream\n      \
                 ignore:\n        actions: [pull]\n"
            ));
        }
        std::fs::write(&self.config_path, config).expect("write registry config");
    }

    /// Starts the process and waits until `/v2/` answers 200; on failure returns the log.
    fn spawn_and_wait(&mut self) -> Result<(), String> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .expect("registry log file");
        let child = Command::new(BINARY)
            .arg("serve")
            .arg(&self.config_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file handle"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run {BINARY} (Debian package `docker-registry`): {e}")
            });
        self.child = Some(child);
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                self.child = None;
                return Err(format!("(exited with {status})\n{}", self.log()));
            }
            // Protected, it answers plain anonymous HTTP with 401 (auth) or 400 (TLS only).
            let protected = self.protection.htpasswd.is_some() || self.protection.tls.is_some();
            if v2_answers(self.port, protected) {
                return Ok(());
            }
            if Instant::now() > deadline {
                self.stop();
                return Err(format!(
                    "(no answer on /v2/ within {START_TIMEOUT:?})\n{}",
                    self.log()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
    }
}

/// True when `GET /v2/` on the port answers `200` (any HTTP answer when `any_status`).
fn v2_answers(port: u16, any_status: bool) -> bool {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let request =
        format!("GET /v2/ HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    answer.starts_with(b"HTTP/1.1 200")
        || answer.starts_with(b"HTTP/1.0 200")
        || (any_status && answer.starts_with(b"HTTP/1."))
}
