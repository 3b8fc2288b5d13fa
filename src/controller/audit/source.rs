//! Where the audit's registry answers come from. The controller sits below admission, so it
//! names what it needs as a trait: the webhook (`signet webhook --audit`) passes its own cached,
//! coalesced lookups (`crate::admission::audit_source`), so audit and admission share one set of
//! caches and in-flight lookups; `signet audit` passes a [`StoreSource`] over the registry.
//!
//! [`fill_book`] asks for what the book lacks, at most `concurrency` lookups at a time.

use std::sync::Arc;

use futures::future::BoxFuture;
use futures::{FutureExt as _, StreamExt as _, stream};

use super::judge::{Asker, Book, Failure, Signatures, Wanted, missing_digests, missing_signatures};
use super::pods::RunningPod;
use crate::policy::Snapshot;
use crate::reference::ImageRef;
use crate::registry::{LookupFailure, SignatureStore};

/// Registry answers for the audit.
pub trait SignatureSource: Send + Sync {
    /// The digest `image`'s tag points to now.
    fn digest<'a>(
        &'a self,
        image: &'a ImageRef,
        asker: &'a Asker,
    ) -> BoxFuture<'a, Result<Arc<str>, Failure>>;

    /// The signatures stored for `image`'s digest (`image` is pinned). `fresh`: not from a cache
    /// (the interval re-read, to notice deleted signatures).
    fn signatures<'a>(
        &'a self,
        image: &'a ImageRef,
        asker: &'a Asker,
        fresh: bool,
    ) -> BoxFuture<'a, Result<Signatures, Failure>>;
}

/// Straight to the registry, no cache (one-shot `signet audit`).
pub struct StoreSource {
    store: SignatureStore,
}

impl StoreSource {
    /// A source reading through `store`.
    pub fn new(store: SignatureStore) -> Self {
        StoreSource { store }
    }
}

impl SignatureSource for StoreSource {
    fn digest<'a>(
        &'a self,
        image: &'a ImageRef,
        _asker: &'a Asker,
    ) -> BoxFuture<'a, Result<Arc<str>, Failure>> {
        async move {
            self.store
                .client()
                .resolve_digest(image)
                .await
                .map(Arc::from)
                .map_err(|e| Arc::new(LookupFailure::from(e)))
        }
        .boxed()
    }

    fn signatures<'a>(
        &'a self,
        image: &'a ImageRef,
        _asker: &'a Asker,
        _fresh: bool,
    ) -> BoxFuture<'a, Result<Signatures, Failure>> {
        async move {
            let Some(digest) = image.digest() else {
                return Err(Arc::new(LookupFailure::NotLookedUp));
            };
            let set = self
                .store
                .fetch_signatures(image, digest)
                .await
                .map_err(|e| Arc::new(LookupFailure::from(e)))?;
            if let Some(failure) = set.unread_failure() {
                return Err(Arc::new(failure));
            }
            Ok(Signatures::from(set.signatures))
        }
        .boxed()
    }
}

/// How many lookups [`fill_book`] made.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Filled {
    /// Tags resolved.
    pub digests: usize,
    /// Signature sets read.
    pub signatures: usize,
}

/// Adds to `book` what judging `pods` under `snapshot` needs and it lacks: digests first, then
/// signatures, `concurrency` lookups at a time. Failures are kept in the book as answers (the
/// verdict is then `error`); the interval re-read retries them.
pub async fn fill_book(
    source: &dyn SignatureSource,
    snapshot: &Snapshot,
    pods: &[&RunningPod],
    book: &mut Book,
    concurrency: usize,
) -> Filled {
    let concurrency = concurrency.max(1);
    let wanted = missing_digests(snapshot, pods.iter().copied(), book);
    let digests = wanted.len();
    let resolved: Vec<(String, Result<Arc<str>, Failure>)> = stream::iter(wanted)
        .map(|w: Wanted| async move {
            let answer = source.digest(&w.image, &w.asker).await;
            (w.key, answer)
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    book.digests.extend(resolved);
    let wanted = missing_signatures(snapshot, pods.iter().copied(), book);
    let signatures = wanted.len();
    let read = read_signatures(source, wanted, concurrency, false).await;
    book.signatures.extend(read);
    Filled {
        digests,
        signatures,
    }
}

/// Reads the signature sets `wanted`, `concurrency` at a time.
pub async fn read_signatures(
    source: &dyn SignatureSource,
    wanted: Vec<Wanted>,
    concurrency: usize,
    fresh: bool,
) -> Vec<(String, Result<Signatures, Failure>)> {
    stream::iter(wanted)
        .map(|w: Wanted| async move {
            let answer = source.signatures(&w.image, &w.asker, fresh).await;
            (w.key, answer)
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await
}
