//! Looking again at what the signer wrote, to repair another writer's overwrite ([`Recheck`]):
//! from the registry's events of the signature tags (the default), or one `HEAD` per tag
//! written some time after the write.

use std::sync::Arc;
use std::time::Duration;

use crate::reference::ImageRef;
use crate::registry::WrittenTag;

use super::super::event::{Ignored, PushedManifest};
use super::super::rules::CompiledRule;
use super::super::watch::{Finished, Noticed, Repair, Writing};
use super::{EventOutcome, Recheck, Signer};

impl Signer {
    /// With [`Recheck::Events`], the watch learns that a write of `digest` starts.
    pub(super) fn begin_watch(&self, identity: &ImageRef, digest: &str) -> Option<Writing<'_>> {
        (self.inner.options.recheck == Recheck::Events).then(|| {
            self.inner
                .watch
                .begin(identity.registry(), identity.repository(), digest)
        })
    }

    /// A write added signatures, writing `written` (the `.sig` tag, the fallback index): watch
    /// those tags, or look at them later, as [`Recheck`] says.
    pub(super) fn after_write(
        &self,
        writing: Option<Writing<'_>>,
        identity: &ImageRef,
        digest: &str,
        rules: &[Arc<CompiledRule>],
        written: Vec<WrittenTag>,
    ) {
        if written.is_empty() {
            return;
        }
        let repair = Repair {
            identity: identity.clone(),
            digest: digest.to_string(),
            rules: rules.to_vec(),
        };
        match (self.inner.options.recheck, writing) {
            (Recheck::After(delay), _) => self.look_later(delay, repair, written),
            (Recheck::Events, Some(writing)) => self.watch_written(writing, repair, &written),
            _ => {}
        }
    }

    /// One `HEAD` per tag of `written` after `delay`; everything again when one changed (or
    /// could not be asked).
    fn look_later(&self, delay: Duration, repair: Repair, written: Vec<WrittenTag>) {
        let signer = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            {
                let Ok(_worker) = signer.inner.workers.acquire().await else {
                    return;
                };
                if signer.still_written(&repair.identity, &written).await {
                    return;
                }
            }
            signer.sign_again(repair).await;
        });
    }

    /// A push of a signature tag was notified: another writer's push of a tag the signer wrote
    /// lately makes it sign that image again (in the background: the event is answered now).
    pub(in crate::signer) fn noticed_signature_tag(&self, push: &PushedManifest) -> EventOutcome {
        let tag = push.tag.clone().unwrap_or_default();
        if self.inner.options.recheck == Recheck::Events {
            let host = self.inner.options.aliases.scope_host(&push.host);
            match self
                .inner
                .watch
                .notice(&host, &push.repository, &tag, &push.digest)
            {
                Noticed::Repair(repair, pushed) => {
                    tracing::info!(
                        image = %repair.identity.with_digest(&repair.digest),
                        tag = %tag,
                        "another writer replaced a signature tag the signer wrote; signing again"
                    );
                    self.sign_again_once_linked(repair, pushed);
                }
                Noticed::Own | Noticed::Unwatched | Noticed::WhileWriting => {}
            }
        }
        let why = Ignored::ArtifactTag(tag);
        self.inner.metrics.ignored(why.label());
        EventOutcome::Ignored(why)
    }

    /// Reads, checks and writes `repair`'s image again (watched anew), counting what it had to
    /// restore.
    async fn sign_again(&self, repair: Repair) {
        let Repair {
            identity,
            digest,
            rules,
        } = repair;
        let Ok(_worker) = self.inner.workers.acquire().await else {
            return;
        };
        let writing = self.begin_watch(&identity, &digest);
        match self
            .ensure_signed_once(&identity, &digest, &digest, &rules, false)
            .await
        {
            Ok(Ok((again, _, written))) if !again.added.is_empty() => {
                self.inner
                    .metrics
                    .recheck_restored
                    .inc_by(again.added.len() as u64);
                tracing::info!(
                    image = %identity.with_digest(&digest),
                    added = ?again.added,
                    "recheck restored signatures another writer had overwritten"
                );
                // Watched anew (events); a timed look is not scheduled again after a repair.
                if let Some(writing) = writing {
                    let repair = Repair {
                        identity,
                        digest,
                        rules,
                    };
                    self.watch_written(writing, repair, &written);
                }
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(
                image = %identity.with_digest(&digest),
                error = %e,
                "recheck failed; the next reconcile covers it"
            ),
        }
    }

    /// Ends `writing` in the watch, and signs again at once when another writer pushed one of
    /// the tags meanwhile.
    fn watch_written(&self, writing: Writing<'_>, repair: Repair, written: &[WrittenTag]) {
        if let Finished::Pushed(pushed) = self.inner.watch.finish(writing, written, repair.clone())
        {
            self.sign_again_once_linked(repair, pushed);
        }
    }

    /// In the background: [`Signer::sign_again`] once `pushed.tag` names `pushed.digest`.
    fn sign_again_once_linked(&self, repair: Repair, pushed: WrittenTag) {
        let signer = self.clone();
        tokio::spawn(async move {
            signer.wait_for_link(&repair.identity, &pushed).await;
            signer.sign_again(repair).await;
        });
    }

    /// Waits (at most `tag_patience`) until `pushed.tag` names `pushed.digest`: distribution
    /// notifies a manifest push before it links the tag. A failed look only ends the wait.
    async fn wait_for_link(&self, identity: &ImageRef, pushed: &WrittenTag) {
        let client = self.inner.store.client();
        let tagged = identity.with_tag(&pushed.tag);
        let patience = self.inner.options.tag_patience;
        let _ = super::write::tag_names(client, &tagged, &pushed.digest, patience).await;
    }

    /// Whether every tag of `written` (in `identity`'s repository) still names the manifest
    /// written there; `false` when one cannot be asked.
    async fn still_written(&self, identity: &ImageRef, written: &[WrittenTag]) -> bool {
        let store = &self.inner.store;
        let checks = written.iter().map(|w| store.still_written(identity, w));
        futures::future::join_all(checks)
            .await
            .into_iter()
            .all(|r| r.unwrap_or(false))
    }
}
