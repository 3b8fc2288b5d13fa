//! Docker credential helpers: `docker-credential-<name> get`, the protocol docker, ECR's
//! `ecr-login`, GAR's `gcloud`, ACR's `acr-env` and Docker Desktop's `desktop` speak. The server
//! URL goes to the helper's stdin; it answers `{"ServerURL", "Username", "Secret"}` on stdout, or
//! fails with `credentials not found in native keychain` when it has nothing for that server.
//! A `Username` of `<token>` marks the secret as an identity (refresh) token.
//!
//! A helper runs at most once per (helper, server) every [`HELPER_CACHE_TTL`] per client, with
//! the client's request timeout; it is killed when the timeout passes. A helper that is missing,
//! fails or answers nonsense is an error naming the program and the config file that named it,
//! never a quiet fall back to anonymous access (which would surface as a bare 401). The secret
//! it answers never reaches an error or a log line.

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Deserialize;
use tokio::io::AsyncWriteExt as _;

use super::credentials::Credential;
use super::error::RegistryError;

/// How long a helper's answer is reused. Short enough for rotating tokens (ECR's last 12 hours),
/// long enough that a burst of requests runs the helper once.
pub const HELPER_CACHE_TTL: Duration = Duration::from_secs(300);

/// What a helper prints: its stdout is read this far, no further.
const MAX_HELPER_OUTPUT: usize = 64 * 1024;

/// The answer of `get`.
#[derive(Deserialize)]
struct HelperAnswer {
    #[serde(rename = "Username", default)]
    username: String,
    #[serde(rename = "Secret", default)]
    secret: String,
}

/// (helper, server URL) -> when the helper answered, and what.
type Answers = HashMap<(String, String), (Instant, Option<Credential>)>;

/// Answers of helpers, per (helper, server URL), with when they were obtained.
#[derive(Default)]
pub(crate) struct HelperCache {
    answers: Mutex<Answers>,
}

impl HelperCache {
    /// The credential `helper` gives for `server_url` (`None`: it has none), from the cache when
    /// fresh. `registry` and `named_in` only shape errors.
    pub(crate) async fn get(
        &self,
        helper: &str,
        server_url: &str,
        registry: &str,
        named_in: &str,
        timeout: Duration,
    ) -> Result<Option<Credential>, RegistryError> {
        let key = (helper.to_string(), server_url.to_string());
        if let Some((at, answer)) = self.lock().get(&key)
            && at.elapsed() < HELPER_CACHE_TTL
        {
            return Ok(answer.clone());
        }
        let answer = run_helper(helper, server_url, timeout)
            .await
            .map_err(|reason| RegistryError::CredentialHelper {
                host: registry.to_string(),
                helper: format!("docker-credential-{helper}"),
                named_in: named_in.to_string(),
                reason,
            })?;
        self.lock().insert(key, (Instant::now(), answer.clone()));
        Ok(answer)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Answers> {
        self.answers.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Runs `docker-credential-<helper> get` with `server_url` on stdin. `Err` is a one-line reason
/// that holds nothing the helper printed on success (that would be the secret).
async fn run_helper(
    helper: &str,
    server_url: &str,
    timeout: Duration,
) -> Result<Option<Credential>, String> {
    let program = format!("docker-credential-{helper}");
    let mut child = tokio::process::Command::new(&program)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => "not found on PATH".to_string(),
            std::io::ErrorKind::PermissionDenied => "not executable".to_string(),
            _ => format!("cannot be started: {e}"),
        })?;
    let run = async {
        if let Some(mut stdin) = child.stdin.take() {
            // A helper that exits without reading its input is judged by its answer below.
            let _ = stdin.write_all(server_url.as_bytes()).await;
        }
        child.wait_with_output().await
    };
    let output = tokio::time::timeout(timeout, run)
        .await
        .map_err(|_| {
            format!(
                "no answer within {}",
                crate::serve::format_duration(timeout)
            )
        })?
        .map_err(|e| format!("failed: {e}"))?;
    let stdout = &output.stdout[..output.stdout.len().min(MAX_HELPER_OUTPUT)];
    if !output.status.success() {
        // Helpers print their errors on stdout (the protocol), some on stderr.
        let said = first_line(stdout).or_else(|| first_line(&output.stderr));
        if said
            .as_deref()
            .is_some_and(|s| s.to_ascii_lowercase().contains("credentials not found"))
        {
            return Ok(None);
        }
        let status = output
            .status
            .code()
            .map_or_else(|| "was killed".to_string(), |c| format!("exited with {c}"));
        return Err(match said {
            Some(said) => format!("{status}: {said}"),
            None => status,
        });
    }
    let answer: HelperAnswer = serde_json::from_slice(stdout)
        .map_err(|_| "answered something other than {\"Username\", \"Secret\"} JSON".to_string())?;
    if answer.secret.is_empty() {
        return Ok(None);
    }
    Ok(Some(if answer.username == "<token>" {
        Credential::IdentityToken {
            token: answer.secret,
        }
    } else {
        Credential::Basic {
            username: answer.username,
            password: answer.secret,
        }
    }))
}

/// The first non-empty line of `bytes`, trimmed and shortened, when there is one.
fn first_line(bytes: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(bytes);
    let line = text.lines().map(str::trim).find(|l| !l.is_empty())?;
    Some(line.chars().take(200).collect())
}
