//! How the harness sees an image signed: every signature tag of its formats answers on the
//! registry.

use std::time::{Duration, Instant};

use anyhow::bail;
use signet::reference::ImageRef;
use signet::registry::RegistryClient;

/// The tags that answer once `digest` is signed in `formats`: the `.sig` tag, the fallback
/// referrers index `sha256-<hex>` (written after the bundle itself).
pub fn signed_tags(
    digest: &str,
    formats: &[signet::signature::SignatureFormat],
) -> anyhow::Result<Vec<String>> {
    let mut tags = Vec::new();
    if formats.contains(&signet::signature::SignatureFormat::CosignSignature) {
        tags.push(signet::signature::signature_tag(digest)?);
    }
    if formats.contains(&signet::signature::SignatureFormat::SigstoreBundle) {
        tags.push(digest.replacen(':', "-", 1));
    }
    Ok(tags)
}

/// Whether every tag of `tags` answers.
pub async fn all_answer(client: &RegistryClient, host: &str, repo: &str, tags: &[String]) -> bool {
    for tag in tags {
        let Ok(reference) = ImageRef::parse(&format!("{host}/{repo}:{tag}")) else {
            return false;
        };
        match client.resolve_digest(&reference).await {
            Ok(_) => {}
            Err(e) if e.is_not_found() => return false,
            // A registry under load sometimes answers a HEAD with 500: poll again.
            Err(e) => {
                eprintln!("poll {repo}: {e}");
                return false;
            }
        }
    }
    true
}

/// Waits until `digest` is signed in `formats`; when that was seen.
pub async fn wait_signed(
    client: &RegistryClient,
    host: &str,
    repo: &str,
    digest: &str,
    formats: &[signet::signature::SignatureFormat],
    poll: Duration,
) -> anyhow::Result<Instant> {
    let tags = signed_tags(digest, formats)?;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if all_answer(client, host, repo, &tags).await {
            return Ok(Instant::now());
        }
        if Instant::now() > deadline {
            bail!("{repo}@{digest} not signed within 120 s");
        }
        tokio::time::sleep(poll).await;
    }
}
