//! Cloud credentials as both providers use them (an access key id, a secret, an optional
//! session token, an optional expiry), and the cache that refreshes them before they expire.
//!
//! The secret and the token are never formatted: `Debug` prints the key id and the expiry only,
//! and no error built here quotes a credential service's answer body.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::Mutex;

use super::transport::KmsError;

/// Temporary credentials are fetched anew once they expire within this.
pub(super) const REFRESH_BEFORE_EXPIRY: Duration = Duration::from_secs(5 * 60);

/// One set of credentials.
#[derive(Clone)]
pub(super) struct Credentials {
    /// The access key id (not secret; shown in messages).
    pub access_key_id: String,
    /// The secret access key.
    pub secret: String,
    /// The session / security token of temporary credentials.
    pub token: Option<String>,
    /// When temporary credentials stop working.
    pub expires: Option<SystemTime>,
    /// Where they came from (`environment`, `web identity`...), for logs.
    pub source: &'static str,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("expires", &self.expires)
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

impl Credentials {
    /// Whether these should be replaced now (expired, or expiring within
    /// [`REFRESH_BEFORE_EXPIRY`]).
    fn stale(&self, now: SystemTime) -> bool {
        self.expires
            .is_some_and(|at| at <= now + REFRESH_BEFORE_EXPIRY)
    }

    /// Whether these no longer work at all.
    fn expired(&self, now: SystemTime) -> bool {
        self.expires.is_some_and(|at| at <= now)
    }
}

/// A boxed future of credentials.
pub(super) type CredentialFuture =
    Pin<Box<dyn Future<Output = Result<Credentials, KmsError>> + Send>>;

/// A way to fetch credentials (one source of a provider's chain, chosen at open).
pub(super) type Fetch = Arc<dyn Fn() -> CredentialFuture + Send + Sync>;

/// Credentials fetched on first use and again before they expire. One fetch at a time: callers
/// arriving during a refresh wait for it instead of asking the service again.
pub(super) struct CredentialCache {
    fetch: Fetch,
    current: Mutex<Option<Credentials>>,
}

impl CredentialCache {
    /// A cache over `fetch`.
    pub(super) fn new(fetch: Fetch) -> Self {
        CredentialCache {
            fetch,
            current: Mutex::new(None),
        }
    }

    /// Credentials good for a request now. When a refresh fails but the credentials held have
    /// not yet expired, they are used (and the failure logged): the refresh margin is there so
    /// that a credential service hiccup does not stop signing.
    pub(super) async fn get(&self) -> Result<Credentials, KmsError> {
        let mut current = self.current.lock().await;
        let now = SystemTime::now();
        match current.as_ref() {
            Some(held) if !held.stale(now) => return Ok(held.clone()),
            _ => {}
        }
        match (self.fetch)().await {
            Ok(fresh) => {
                tracing::debug!(
                    source = fresh.source,
                    access_key_id = %fresh.access_key_id,
                    "KMS credentials fetched"
                );
                *current = Some(fresh.clone());
                Ok(fresh)
            }
            Err(e) => match current.as_ref() {
                Some(held) if !held.expired(now) => {
                    tracing::warn!(error = %e, "refreshing KMS credentials failed; using the current ones until they expire");
                    Ok(held.clone())
                }
                _ => Err(e),
            },
        }
    }

    /// Forgets the credentials held (after the service refused them), so the next call fetches.
    pub(super) async fn forget(&self) {
        *self.current.lock().await = None;
    }
}

/// Reads a token file (web identity / OIDC), trimmed; the error names the file, never the content.
pub(super) async fn read_token_file(path: &str, what: &str) -> Result<String, KmsError> {
    let text = tokio::fs::read_to_string(path)
        .await
        .map_err(|e| KmsError::Credentials(format!("cannot read {what} {path}: {e}")))?;
    let token = text.trim().to_string();
    if token.is_empty() {
        return Err(KmsError::Credentials(format!("{what} {path} is empty")));
    }
    Ok(token)
}

/// A non-empty environment variable.
pub(super) fn env(name: &str) -> Option<String> {
    std::env::var(name)
        .ok()
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn creds(expires_in: Option<Duration>, n: u32) -> Credentials {
        Credentials {
            access_key_id: format!("AKID{n}"),
            secret: "s3cr3t".into(),
            token: Some("t0k3n".into()),
            expires: expires_in.map(|d| SystemTime::now() + d),
            source: "test",
        }
    }

    #[test]
    fn debug_never_shows_secrets() {
        let text = format!("{:?}", creds(None, 1));
        assert!(text.contains("AKID1") && !text.contains("s3cr3t") && !text.contains("t0k3n"));
    }

    #[tokio::test]
    async fn refreshes_before_expiry_and_keeps_working_ones_on_failure() {
        let fetched = Arc::new(AtomicU32::new(0));
        let counter = Arc::clone(&fetched);
        // Each fetch hands out credentials expiring in 4 minutes (inside the refresh margin)
        // and the third fetch fails.
        let cache = CredentialCache::new(Arc::new(move || {
            let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
            Box::pin(async move {
                if n == 3 {
                    Err(KmsError::Credentials("down".into()))
                } else {
                    Ok(creds(Some(Duration::from_secs(240)), n))
                }
            })
        }));
        assert_eq!(cache.get().await.unwrap().access_key_id, "AKID1");
        assert_eq!(cache.get().await.unwrap().access_key_id, "AKID2");
        // The refresh fails; the held credentials have not expired yet.
        assert_eq!(cache.get().await.unwrap().access_key_id, "AKID2");
        assert_eq!(fetched.load(Ordering::SeqCst), 3);
        cache.forget().await;
        assert_eq!(cache.get().await.unwrap().access_key_id, "AKID4");
    }

    #[tokio::test]
    async fn long_lived_credentials_are_fetched_once() {
        let fetched = Arc::new(AtomicU32::new(0));
        let counter = Arc::clone(&fetched);
        let cache = CredentialCache::new(Arc::new(move || {
            let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
            Box::pin(async move { Ok(creds(None, n)) })
        }));
        for _ in 0..3 {
            cache.get().await.unwrap();
        }
        assert_eq!(fetched.load(Ordering::SeqCst), 1);
    }
}
