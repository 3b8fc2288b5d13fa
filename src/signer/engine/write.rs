//! One locked cycle of the signer: check the pushed manifest (and, for `Default` rules, that the
//! tag still names it), then let the store write what each format lacks.

use std::sync::Arc;
use std::time::Duration;

use crate::crypto::{PublicKey, SigningKey};
use crate::reference::ImageRef;
use crate::registry::{
    AppendOutcome, EnsureReport, FirstReads, RegistryClient, RegistryError, SignPayloadError,
    SignatureLock, SignatureWriteError, SubjectManifest, Wanted, WrittenTag,
};
use crate::signature::{SignatureFormat, SignatureType};

use super::super::SignerError;
use super::super::event::is_referrer;
use super::super::metrics::NothingToSign;
use super::super::rules::CompiledRule;
use super::{Recheck, Signer, platform_manifests};

impl Signer {
    /// Under the lock: checks (when `check_manifest`) that the manifest still exists and is not a
    /// referrer, and, for `Default` rules, that the tag still names `digest`; then lets the
    /// store add what is missing. `Ok(Err(reason))` when there is nothing to sign.
    pub(super) async fn check_and_write(
        &self,
        lock: &SignatureLock,
        identity: &ImageRef,
        (digest, tag_digest): (&str, &str),
        keyed: &[(Arc<CompiledRule>, Arc<dyn SigningKey>)],
        keep: &[PublicKey],
        check_manifest: bool,
    ) -> Result<Result<Written, NothingToSign>, SignerError> {
        let client = self.inner.store.client();
        let binds_tag = keyed
            .iter()
            .any(|(rule, _)| rule.signature_type == SignatureType::Default);
        let manifest = async {
            match check_manifest {
                true => client
                    .fetch_manifest(&identity.with_digest(digest))
                    .await
                    .map(Some),
                false => Ok(None),
            }
        };
        let tag = async {
            match (binds_tag, identity.tag()) {
                (true, Some(tag)) => tag_names(
                    client,
                    &identity.with_tag(tag),
                    tag_digest,
                    self.inner.options.tag_patience,
                )
                .await
                .map(Some),
                _ => Ok(None),
            }
        };
        // One GET by tag answers both questions when the bytes served hash to the event's
        // digest: the manifest exists (and is these bytes) and the tag names it. The registry
        // notifies before it links the tag, so "not yet" is asked again (with patience); a tag
        // that never comes to name the digest moved, and the manifest is then fetched by
        // digest to tell whether there is still anything to sign.
        let checked = async {
            let checked = match (check_manifest && binds_tag, identity.tag()) {
                (true, Some(tag)) if tag_digest.eq_ignore_ascii_case(digest) => {
                    match manifest_by_tag(
                        client,
                        &identity.with_tag(tag),
                        digest,
                        self.inner.options.tag_patience,
                    )
                    .await?
                    {
                        Some(m) => (Some(Some(m)), Some(true)),
                        None => (
                            Some(client.fetch_manifest(&identity.with_digest(digest)).await?),
                            Some(false),
                        ),
                    }
                }
                _ => tokio::try_join!(manifest, tag)?,
            };
            Ok::<_, SignerError>(checked)
        };
        // The writers' first reads (the `.sig`, the referrers) go out with the check rather than
        // after it: one round trip less per event, on the path the registry's notification
        // queue waits on. Under the lock, nothing else writes here meanwhile; when the check
        // finds nothing to sign, the reads were for nothing (an ignored event).
        let wants = |format| keyed.iter().any(|(rule, _)| rule.formats.contains(&format));
        let store = &self.inner.store;
        let reads = store.first_reads(
            lock,
            identity,
            digest,
            wants(SignatureFormat::CosignSignature),
            wants(SignatureFormat::SigstoreBundle),
        );
        let (checked, first_reads) = tokio::join!(checked, reads);
        let (manifest, tag_names_digest) = checked?;
        let (platforms, subject) = match manifest {
            Some(None) => return Ok(Err(NothingToSign::ManifestGone)),
            Some(Some(m)) if is_referrer(&m.bytes) => return Ok(Err(NothingToSign::Referrer)),
            Some(Some(m)) => (
                platform_manifests(&m.bytes),
                Some(SubjectManifest {
                    media_type: m.media_type.clone(),
                    size: m.bytes.len() as u64,
                }),
            ),
            None => (Vec::new(), None),
        };
        let tag_moved = tag_names_digest == Some(false);
        let (moved, signing): (Vec<_>, Vec<_>) = keyed
            .iter()
            .partition(|(rule, _)| tag_moved && rule.signature_type == SignatureType::Default);
        // Each format writes for the rules that ask for it; a rule counts as added when any of
        // its formats was written. The `.sig` tag and the referrers are different tags under
        // the one lock, so the `.sig` is written at the same time as the referrers: the event is
        // answered after the slower of the two (the registry's notification queue waits for
        // that answer). The referrer formats (bundle, Notation) share the fallback index, a
        // read-modify-write, so they are written one after the other.
        let check_now = self.inner.options.recheck == Recheck::Immediately;
        let (mut sig_first, mut bundles_first) = first_reads.split();
        let mut sig_writes = Vec::new();
        let mut referrer_writes = Vec::new();
        for format in SignatureFormat::WRITTEN {
            let chosen: Vec<usize> = (0..signing.len())
                .filter(|&i| signing[i].0.formats.contains(&format))
                .collect();
            if chosen.is_empty() {
                continue;
            }
            let rules: Vec<_> = chosen.iter().map(|&i| signing[i]).collect();
            let wanted: Vec<Wanted> = rules
                .iter()
                .map(|(rule, key)| Wanted {
                    key: Arc::clone(key),
                    signature_type: rule.signature_type,
                    annotations: Default::default(),
                })
                .collect();
            let subject = subject.clone();
            let mut first = match format {
                SignatureFormat::CosignSignature => std::mem::take(&mut sig_first),
                SignatureFormat::SigstoreBundle => std::mem::take(&mut bundles_first),
                SignatureFormat::Notation => FirstReads::default(),
            };
            let write = async move {
                let done = match format {
                    SignatureFormat::Notation => {
                        let r = super::super::notation::write(
                            store,
                            lock,
                            (identity, digest),
                            subject,
                            &rules,
                            check_now,
                        )
                        .await?;
                        FormatWrite {
                            outcomes: r.outcomes,
                            written: r.index_written,
                            repaired: r.repaired,
                            report: None,
                        }
                    }
                    SignatureFormat::CosignSignature => {
                        let r = store
                            .ensure_signed_from(
                                lock, identity, digest, &wanted, keep, check_now, &mut first,
                            )
                            .await
                            .map_err(|e| write_error(e, &rules))?;
                        FormatWrite {
                            outcomes: r.outcomes.clone(),
                            written: r.written.clone(),
                            repaired: 0,
                            report: Some(r),
                        }
                    }
                    SignatureFormat::SigstoreBundle => {
                        // Without `check_now`, the recheck (`Recheck`) looks at the index
                        // again later and repairs it; the event is answered without waiting.
                        let r = store
                            .ensure_bundles_from(
                                lock, identity, digest, subject, &wanted, check_now, &mut first,
                            )
                            .await
                            .map_err(|e| write_error(e, &rules))?;
                        // Counted when pushed, whatever the other formats do.
                        self.inner.metrics.bundles_written(r.pushed.len());
                        FormatWrite {
                            outcomes: r.outcomes,
                            written: r.index_written,
                            repaired: r.repaired,
                            report: None,
                        }
                    }
                };
                Ok::<_, SignerError>((chosen, done))
            };
            match format {
                SignatureFormat::CosignSignature => sig_writes.push(write),
                _ => referrer_writes.push(write),
            }
        }
        let referrers_in_turn = async {
            let mut done = Vec::with_capacity(referrer_writes.len());
            for write in referrer_writes {
                let result = write.await;
                let failed = result.is_err();
                done.push(result);
                if failed {
                    break;
                }
            }
            done
        };
        let (sig_done, referrers_done) =
            futures::join!(futures::future::join_all(sig_writes), referrers_in_turn);
        let mut outcomes = vec![AppendOutcome::AlreadyPresent; signing.len()];
        let mut report = EnsureReport::default();
        let mut repaired = 0;
        let mut written_tags: Vec<WrittenTag> = Vec::new();
        for result in sig_done.into_iter().chain(referrers_done) {
            let (chosen, done) = result?;
            if let Some(r) = done.report {
                report = r;
            }
            repaired += done.repaired;
            // The last write of a tag (the fallback index, by each referrer format in turn) is
            // what the recheck compares.
            if let Some(w) = done.written {
                written_tags.retain(|t| t.tag != w.tag);
                written_tags.push(w);
            }
            for (&i, outcome) in chosen.iter().zip(done.outcomes) {
                if outcome == AppendOutcome::Added {
                    outcomes[i] = AppendOutcome::Added;
                }
            }
        }
        report.overwritten += repaired;
        report.outcomes = outcomes;
        Ok(Ok(Written {
            signing: signing.iter().map(|(r, _)| r.name.clone()).collect(),
            tag_moved: moved.iter().map(|(r, _)| r.name.clone()).collect(),
            report,
            platforms,
            written_tags,
        }))
    }
}

/// What one locked cycle did: the rules it signed for (in the order of `report.outcomes`), the
/// `Default` rules skipped because the tag moved, and the store's report.
pub(super) struct Written {
    pub(super) signing: Vec<String>,
    pub(super) tag_moved: Vec<String>,
    pub(super) report: EnsureReport,
    /// The platform manifests of an index (empty for an image manifest or when not fetched).
    pub(super) platforms: Vec<String>,
    /// The tags written (`.sig`, fallback index) with the digests written: what the recheck
    /// compares.
    pub(super) written_tags: Vec<WrittenTag>,
}

/// What one format's write did for the rules that asked for it.
#[derive(Default)]
pub(super) struct FormatWrite {
    /// One per rule, in order.
    pub(super) outcomes: Vec<AppendOutcome>,
    /// The tag written, for the recheck.
    pub(super) written: Option<WrittenTag>,
    /// Times a concurrent writer's overwrite was repaired.
    pub(super) repaired: usize,
    /// The `.sig` store's report (compaction, skipped layers).
    pub(super) report: Option<EnsureReport>,
}

/// The manifest `tagged` (a tag, no digest) names once its bytes hash to `digest`, asked again
/// with growing pauses for `patience`; `None` when the tag did not come to name it.
async fn manifest_by_tag(
    client: &RegistryClient,
    tagged: &ImageRef,
    digest: &str,
    patience: Duration,
) -> Result<Option<crate::registry::FetchedManifest>, RegistryError> {
    let deadline = tokio::time::Instant::now() + patience;
    // The tag is usually linked within milliseconds of the event: a short first pause keeps
    // the event's answer (and the registry's sequential queue) from waiting long.
    let mut pause = Duration::from_millis(10);
    loop {
        if let Some(m) = client
            .fetch_manifest(tagged)
            .await?
            .filter(|m| m.digest.eq_ignore_ascii_case(digest))
        {
            return Ok(Some(m));
        }
        let now = tokio::time::Instant::now();
        if now >= deadline {
            return Ok(None);
        }
        tokio::time::sleep(pause.min(deadline - now)).await;
        pause = (pause * 2).min(Duration::from_secs(1));
    }
}

/// Whether `tagged` (a tag, no digest) names `digest` now; a deleted tag names nothing.
pub(super) async fn tag_names(
    client: &RegistryClient,
    tagged: &ImageRef,
    digest: &str,
    patience: Duration,
) -> Result<bool, RegistryError> {
    let deadline = tokio::time::Instant::now() + patience;
    let mut pause = Duration::from_millis(50);
    loop {
        let names = match client.resolve_digest(tagged).await {
            Ok(current) => current.eq_ignore_ascii_case(digest),
            Err(e) if e.is_not_found() => false,
            Err(e) => return Err(e),
        };
        let now = tokio::time::Instant::now();
        if names || now >= deadline {
            return Ok(names);
        }
        // Not yet, or moved: the registry may still be linking the tag.
        tokio::time::sleep(pause.min(deadline - now)).await;
        pause = (pause * 2).min(Duration::from_secs(1));
    }
}

/// The signer's error for a store error; `signing` names the rule of each wanted signature.
pub(in crate::signer) fn write_error(
    e: SignatureWriteError,
    signing: &[&(Arc<CompiledRule>, Arc<dyn SigningKey>)],
) -> SignerError {
    let rule_name = |index: usize| {
        signing
            .get(index)
            .map_or_else(String::new, |(rule, _)| rule.name.clone())
    };
    match e {
        SignatureWriteError::Registry(e) => SignerError::Registry(e),
        SignatureWriteError::Contended(image) => SignerError::Contended(image),
        SignatureWriteError::Signing {
            index,
            cause: SignPayloadError::Crypto(cause),
        } => SignerError::Signing {
            rule: rule_name(index),
            cause,
        },
        other => SignerError::Write(other),
    }
}
