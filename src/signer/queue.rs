//! `--acknowledge queued`: the signer answers a registry's notification once it holds the pushes
//! in memory, and signs them afterwards, concurrently.
//!
//! Why: CNCF distribution (Debian's `docker-registry` 2.8) delivers notifications one at a time
//! per endpoint and waits for each answer, so when the answer waits for the signatures the
//! registry's whole push rate is bounded by the time to sign one image, and one image that keeps
//! failing holds back every event queued behind it (the registry retries it forever).
//!
//! Why `signed` stays the default: with `queued`, a 2xx no longer means "signed"; what is held
//! in memory is lost if the signer dies before signing it (the registry will not send it again),
//! and only the periodic reconcile (which walks tagged images) finds it again. `signed` keeps the
//! registry's own retry queue as the durable record, and keeps every existing guarantee.
//!
//! What `queued` does, per notification body:
//! - every event is classified at once, as in `signed` mode: ignored events, pushes no
//!   Automatic rule covers and signature-tag notices are answered as they always were
//!   ([`Signer::automatic_scope`], `noticed_signature_tag`);
//! - each covered push goes into a bounded queue ([`QueueOptions::capacity`] images, counting
//!   those waiting, being signed and waiting to be retried) and is answered `queued`; the body
//!   is then answered `202`;
//! - the same image (event host, repository, digest and tag) already held is coalesced: one
//!   signing serves both events;
//! - a full queue makes the whole answer `503`: the registry sends the body again, so nothing is
//!   lost, and the pushes of that body already held are coalesced on the next delivery.
//!
//! At most `workers` images are signed at once by the queue, each through the one signing path,
//! [`Signer::handle_push`]. A push whose signing ends `Failed` (the registry unreachable or
//! refusing after `handle_push`'s own short retries, a key that refused) is signed again by the
//! signer itself, with no new event: after 1 s, then doubling up to 1 min between attempts. The
//! retries stop 10 minutes after the first failure ([`QueueOptions::retry_horizon`]): long
//! enough to ride out a registry restart or a rolling update, short enough that an image that
//! cannot be signed does not hold queue capacity for ever; it is then dropped with an error log
//! and `queue_dropped_total`, and the periodic reconcile (every 5 minutes by default) is the
//! safety net for tagged images.
//!
//! Drain (SIGTERM, [`Signer::drain_queue`]): once the servers stop accepting, the queue keeps
//! signing until it is empty or the grace ends; images waiting for a retry are tried at once;
//! what is left is logged with its count, and the reconcile at the next start signs it.
//!
//! The bookkeeping ([`Book`]: dedup, capacity, backoff, horizon) is pure and unit-tested; the
//! rest is the dispatcher task that feeds it to the workers.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, Semaphore, watch};

use super::engine::{EventOutcome, Signer, WeakSigner};
use super::event::{Classified, EnvelopeError, PushedManifest, parse_events};
use super::metrics::QueueMetrics;

/// When `POST /events` answers a push that rules cover (`--acknowledge`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Acknowledge {
    /// Once every signature is in the registry (the registry's queue waits for each image).
    #[default]
    Signed,
    /// Once the push is held in the signer's queue; signed afterwards, concurrently.
    Queued,
}

impl FromStr for Acknowledge {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim() {
            "signed" => Ok(Acknowledge::Signed),
            "queued" => Ok(Acknowledge::Queued),
            other => Err(format!("expected `signed` or `queued`, not {other:?}")),
        }
    }
}

impl fmt::Display for Acknowledge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Acknowledge::Signed => "signed",
            Acknowledge::Queued => "queued",
        })
    }
}

/// The queue of `--acknowledge queued`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueOptions {
    /// Images held at most (waiting, being signed, or waiting for a retry).
    pub capacity: usize,
    /// Wait before the first retry of a failed image; doubled after each failure.
    pub first_retry: Duration,
    /// Longest wait between two attempts.
    pub max_retry: Duration,
    /// How long after its first failure an image is still retried.
    pub retry_horizon: Duration,
}

/// The default `--queue-capacity`: about 1 KB per image held, and minutes of pushes at this
/// registry's speed.
pub const DEFAULT_QUEUE_CAPACITY: usize = 10_000;

impl Default for QueueOptions {
    fn default() -> Self {
        QueueOptions {
            capacity: DEFAULT_QUEUE_CAPACITY,
            first_retry: Duration::from_secs(1),
            max_retry: Duration::from_secs(60),
            retry_horizon: Duration::from_secs(600),
        }
    }
}

/// What became of one event of a notification in `queued` mode.
#[derive(Debug)]
pub enum Acknowledged {
    /// Answered at once, as in `signed` mode (ignored, out of scope, a signature tag).
    Handled(EventOutcome),
    /// Held in the queue.
    Queued,
    /// The same image was already held: one signing serves both.
    Coalesced,
    /// The queue is full: the registry must send the event again.
    Full,
}

/// One image the queue holds: the event's host, repository, digest and tag.
#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord)]
struct ImageKey {
    host: String,
    repository: String,
    digest: String,
    tag: Option<String>,
}

impl ImageKey {
    fn of(push: &PushedManifest) -> Self {
        ImageKey {
            host: push.host.to_ascii_lowercase(),
            repository: push.repository.clone(),
            digest: push.digest.clone(),
            tag: push.tag.clone(),
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
enum SlotState {
    /// In the ready line.
    Ready,
    /// A worker signs it now.
    InFlight,
    /// Waiting for its retry time.
    Waiting,
}

#[derive(Debug)]
struct Slot {
    push: PushedManifest,
    received: Instant,
    state: SlotState,
    failures: u32,
    first_failure: Option<Instant>,
}

/// A push handed to a worker.
#[derive(Debug)]
struct Due {
    key: ImageKey,
    push: PushedManifest,
    received: Instant,
}

/// What the dispatcher does next.
#[derive(Debug)]
enum Next {
    /// Sign this now (boxed: a push is much larger than the other answers).
    Sign(Box<Due>),
    /// Nothing ready before this time (a retry).
    WaitUntil(Instant),
    /// Nothing held but what is in flight.
    Idle,
}

/// How a signing attempt ended, for the book.
#[derive(Debug, PartialEq, Eq)]
enum Finished {
    /// Signed, or nothing to sign: the image leaves the queue.
    Done,
    /// Failed; tried again at this time (the attempt number that failed).
    Retry { at: Instant, failures: u32 },
    /// Failed past the horizon: dropped.
    Dropped { failures: u32 },
}

/// The queue's bookkeeping: what is held, in which state, and when a failed image is due again.
/// Pure: time is passed in.
#[derive(Debug)]
struct Book {
    options: QueueOptions,
    slots: HashMap<ImageKey, Slot>,
    ready: VecDeque<ImageKey>,
    /// Retry time (and an order number, for equal times) -> image.
    waiting: BTreeMap<(Instant, u64), ImageKey>,
    order: u64,
}

impl Book {
    fn new(options: QueueOptions) -> Self {
        Book {
            options,
            slots: HashMap::new(),
            ready: VecDeque::new(),
            waiting: BTreeMap::new(),
            order: 0,
        }
    }

    /// Images held (waiting, in flight, waiting for a retry).
    fn len(&self) -> usize {
        self.slots.len()
    }

    fn offer(&mut self, push: &PushedManifest, received: Instant) -> Acknowledged {
        let key = ImageKey::of(push);
        if self.slots.contains_key(&key) {
            return Acknowledged::Coalesced;
        }
        if self.slots.len() >= self.options.capacity {
            return Acknowledged::Full;
        }
        // What is held stays small whatever the sender writes: the host, repository and tag
        // passed the reference grammar's limits (255 and 128 characters) in
        // `Signer::automatic_scope`, the media type is one of four, and the event's free-text `id`
        // (used by no signing step) is not kept.
        let held = PushedManifest {
            event_id: String::new(),
            ..push.clone()
        };
        self.slots.insert(
            key.clone(),
            Slot {
                push: held,
                received,
                state: SlotState::Ready,
                failures: 0,
                first_failure: None,
            },
        );
        self.ready.push_back(key);
        Acknowledged::Queued
    }

    /// The next image to sign at `now`, marked in flight; else when to look again.
    fn next(&mut self, now: Instant) -> Next {
        while let Some(entry) = self.waiting.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let key = entry.remove();
            if let Some(slot) = self.slots.get_mut(&key) {
                slot.state = SlotState::Ready;
                self.ready.push_back(key);
            }
        }
        while let Some(key) = self.ready.pop_front() {
            if let Some(slot) = self.slots.get_mut(&key)
                && slot.state == SlotState::Ready
            {
                slot.state = SlotState::InFlight;
                return Next::Sign(Box::new(Due {
                    push: slot.push.clone(),
                    received: slot.received,
                    key,
                }));
            }
        }
        match self.waiting.first_key_value() {
            Some(((at, _), _)) => Next::WaitUntil(*at),
            None => Next::Idle,
        }
    }

    /// Records how the signing of `key` ended at `now`.
    fn finish(&mut self, key: &ImageKey, failed: bool, now: Instant) -> Finished {
        if !failed {
            self.slots.remove(key);
            return Finished::Done;
        }
        let Some(slot) = self.slots.get_mut(key) else {
            return Finished::Done;
        };
        slot.failures += 1;
        let failures = slot.failures;
        let first = *slot.first_failure.get_or_insert(now);
        if now.saturating_duration_since(first) >= self.options.retry_horizon {
            self.slots.remove(key);
            return Finished::Dropped { failures };
        }
        let at = now + retry_delay(&self.options, failures);
        slot.state = SlotState::Waiting;
        self.order += 1;
        self.waiting.insert((at, self.order), key.clone());
        Finished::Retry { at, failures }
    }

    /// Makes every image waiting for a retry due now (drain: one last attempt each).
    fn retry_all_now(&mut self) {
        for (_, key) in std::mem::take(&mut self.waiting) {
            if let Some(slot) = self.slots.get_mut(&key) {
                slot.state = SlotState::Ready;
                self.ready.push_back(key);
            }
        }
    }
}

/// The wait after the `failures`-th failure: `first_retry`, doubled each time, at most
/// `max_retry`.
fn retry_delay(options: &QueueOptions, failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(31);
    options
        .first_retry
        .saturating_mul(1u32 << doublings)
        .min(options.max_retry)
}

/// The queue shared by the handlers, the dispatcher and the workers.
pub(super) struct SigningQueue {
    shared: Arc<Shared>,
}

struct Shared {
    book: Mutex<Book>,
    /// Something was queued, finished or became due; or the queue closed.
    wake: Notify,
    /// Images held, for the drain to wait on.
    depth: watch::Sender<usize>,
    started: AtomicBool,
    closed: AtomicBool,
    metrics: QueueMetrics,
}

impl Shared {
    fn book(&self) -> MutexGuard<'_, Book> {
        // A worker that panicked with the lock held left the book consistent (each method
        // finishes its changes before returning), so the poison is ignored.
        self.book.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn publish_depth(&self, depth: usize) {
        self.metrics.depth.set(depth as i64);
        self.depth.send_replace(depth);
    }
}

impl SigningQueue {
    pub(super) fn new(options: QueueOptions, metrics: QueueMetrics) -> Self {
        SigningQueue {
            shared: Arc::new(Shared {
                book: Mutex::new(Book::new(options)),
                wake: Notify::new(),
                depth: watch::Sender::new(0),
                started: AtomicBool::new(false),
                closed: AtomicBool::new(false),
                metrics,
            }),
        }
    }
}

impl Signer {
    /// `--acknowledge queued`: classifies every event of a notification body now and holds the
    /// covered pushes in the queue (signed afterwards by the queue's workers). See the module
    /// documentation.
    pub fn acknowledge_notification(
        &self,
        body: &[u8],
    ) -> Result<Vec<Acknowledged>, EnvelopeError> {
        let events = parse_events(body)?;
        let received = Instant::now();
        let metrics = self.metrics();
        let mut answers = Vec::with_capacity(events.len());
        let mut full = false;
        for event in events {
            metrics.events_received.inc();
            answers.push(match event {
                Classified::Ignore(why) => {
                    tracing::debug!(reason = %why, "event ignored");
                    metrics.ignored(why.label());
                    Acknowledged::Handled(EventOutcome::Ignored(why))
                }
                Classified::SignatureTag(push) => {
                    Acknowledged::Handled(self.noticed_signature_tag(&push))
                }
                Classified::Sign(push) => match self.automatic_scope(&push) {
                    Err(answered) => Acknowledged::Handled(answered),
                    Ok(_) if full => Acknowledged::Full,
                    Ok(_) => {
                        let answer = self.enqueue(&push, received);
                        full = matches!(answer, Acknowledged::Full);
                        answer
                    }
                },
            });
        }
        Ok(answers)
    }

    fn enqueue(&self, push: &PushedManifest, received: Instant) -> Acknowledged {
        let shared = &self.queue().shared;
        let (answer, depth) = {
            let mut book = shared.book();
            let answer = book.offer(push, received);
            (answer, book.len())
        };
        match answer {
            Acknowledged::Queued => {
                shared.publish_depth(depth);
                if !shared.started.swap(true, Ordering::SeqCst) {
                    tokio::spawn(dispatch(
                        Arc::clone(shared),
                        self.downgrade(),
                        self.options().workers.max(1),
                    ));
                }
                shared.wake.notify_one();
                tracing::debug!(image = %push.repository, digest = %push.digest, "queued");
            }
            Acknowledged::Coalesced => {
                shared.metrics.coalesced.inc();
            }
            Acknowledged::Full => {
                shared.metrics.full.inc();
                tracing::warn!(
                    held = depth,
                    image = %push.repository,
                    digest = %push.digest,
                    "signing queue full: answered 503, the registry sends the event again"
                );
            }
            Acknowledged::Handled(_) => {}
        }
        answer
    }

    /// Images the queue holds now (waiting, being signed, waiting for a retry).
    pub fn queue_depth(&self) -> usize {
        self.queue().shared.book().len()
    }

    /// Signs what the queue holds until it is empty or `deadline` passes (images waiting for a
    /// retry are tried at once), then stops the queue; returns how many images were left.
    pub async fn drain_queue(&self, deadline: Instant) -> usize {
        let shared = &self.queue().shared;
        let held = {
            let mut book = shared.book();
            book.retry_all_now();
            book.len()
        };
        if held > 0 {
            tracing::info!(images = held, "draining the signing queue");
            shared.wake.notify_one();
            let mut depth = shared.depth.subscribe();
            let emptied = depth.wait_for(|held| *held == 0);
            let _ = tokio::time::timeout_at(deadline.into(), emptied).await;
        }
        shared.closed.store(true, Ordering::SeqCst);
        shared.wake.notify_one();
        shared.book().len()
    }
}

/// Hands due images to at most `workers` signings at once, until the queue closes or the signer
/// is gone.
async fn dispatch(shared: Arc<Shared>, signer: WeakSigner, workers: usize) {
    let slots = Arc::new(Semaphore::new(workers));
    loop {
        let Ok(slot) = Arc::clone(&slots).acquire_owned().await else {
            return;
        };
        let due = loop {
            let woken = shared.wake.notified();
            if shared.closed.load(Ordering::SeqCst) {
                return;
            }
            let next = shared.book().next(Instant::now());
            match next {
                Next::Sign(due) => break due,
                Next::WaitUntil(at) => {
                    tokio::select! {
                        () = tokio::time::sleep_until(at.into()) => {}
                        () = woken => {}
                    }
                }
                Next::Idle => woken.await,
            }
        };
        let Some(signer) = signer.upgrade() else {
            return;
        };
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            let outcome = signer.handle_push(&due.push, due.received).await;
            let failed = matches!(outcome, EventOutcome::Failed(_));
            let (finished, depth) = {
                let mut book = shared.book();
                let finished = book.finish(&due.key, failed, Instant::now());
                (finished, book.len())
            };
            shared.publish_depth(depth);
            let image = format!(
                "{}/{}@{}",
                due.push.host, due.push.repository, due.push.digest
            );
            match finished {
                Finished::Done => {}
                Finished::Retry { at, failures } => {
                    shared.metrics.retried.inc();
                    tracing::info!(
                        %image,
                        tag = due.push.tag.as_deref().unwrap_or_default(),
                        failures,
                        retry_in_ms = at.saturating_duration_since(Instant::now()).as_millis() as u64,
                        "signing failed; the signer tries again"
                    );
                }
                Finished::Dropped { failures } => {
                    shared.metrics.dropped.inc();
                    tracing::error!(
                        %image,
                        tag = due.push.tag.as_deref().unwrap_or_default(),
                        failures,
                        "signing still failing after the retry horizon: dropped from the queue (the periodic reconcile signs tagged images it finds unsigned)"
                    );
                }
            }
            drop(slot);
            shared.wake.notify_one();
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn push(repo: &str, tag: Option<&str>, digest: &str) -> PushedManifest {
        PushedManifest {
            event_id: String::new(),
            host: "registry.example".into(),
            repository: repo.into(),
            tag: tag.map(str::to_string),
            digest: format!("sha256:{}", digest.repeat(64)),
            media_type: crate::registry::OCI_MANIFEST_MEDIA_TYPE.into(),
        }
    }

    fn options(capacity: usize) -> QueueOptions {
        QueueOptions {
            capacity,
            ..QueueOptions::default()
        }
    }

    fn signed(next: Next) -> Due {
        match next {
            Next::Sign(due) => *due,
            other => panic!("expected an image to sign, got {other:?}"),
        }
    }

    #[test]
    fn acknowledge_parses_its_two_words() {
        assert_eq!("signed".parse(), Ok(Acknowledge::Signed));
        assert_eq!("queued".parse(), Ok(Acknowledge::Queued));
        let e = "later".parse::<Acknowledge>().unwrap_err();
        assert!(e.contains("`signed` or `queued`"), "{e}");
        assert_eq!(Acknowledge::Queued.to_string(), "queued");
        assert_eq!(Acknowledge::default(), Acknowledge::Signed);
    }

    #[test]
    fn the_same_image_is_held_once_whether_waiting_or_in_flight() {
        let now = Instant::now();
        let mut book = Book::new(options(10));
        let a = push("app", Some("v1"), "a");
        assert!(matches!(book.offer(&a, now), Acknowledged::Queued));
        assert!(matches!(book.offer(&a, now), Acknowledged::Coalesced));
        // Another tag, or another digest, is another image.
        assert!(matches!(
            book.offer(&push("app", Some("v2"), "a"), now),
            Acknowledged::Queued
        ));
        assert!(matches!(
            book.offer(&push("app", Some("v1"), "b"), now),
            Acknowledged::Queued
        ));
        assert_eq!(book.len(), 3);
        let first = signed(book.next(now));
        assert_eq!(first.push, a);
        assert!(matches!(book.offer(&a, now), Acknowledged::Coalesced));
        assert_eq!(book.finish(&first.key, false, now), Finished::Done);
        assert_eq!(book.len(), 2);
        // Once signed, a new event for it is queued again (signing is idempotent).
        assert!(matches!(book.offer(&a, now), Acknowledged::Queued));
    }

    #[test]
    fn a_full_book_refuses_new_images_but_coalesces_held_ones() {
        let now = Instant::now();
        let mut book = Book::new(options(2));
        let a = push("a", Some("v1"), "a");
        let b = push("b", Some("v1"), "b");
        assert!(matches!(book.offer(&a, now), Acknowledged::Queued));
        assert!(matches!(book.offer(&b, now), Acknowledged::Queued));
        assert!(matches!(
            book.offer(&push("c", Some("v1"), "c"), now),
            Acknowledged::Full
        ));
        assert!(matches!(book.offer(&b, now), Acknowledged::Coalesced));
        // In flight still counts: capacity bounds everything held.
        let due = signed(book.next(now));
        assert!(matches!(
            book.offer(&push("c", Some("v1"), "c"), now),
            Acknowledged::Full
        ));
        book.finish(&due.key, false, now);
        assert!(matches!(
            book.offer(&push("c", Some("v1"), "c"), now),
            Acknowledged::Queued
        ));
    }

    #[test]
    fn the_events_free_text_id_is_not_held() {
        let now = Instant::now();
        let mut book = Book::new(options(10));
        let long = PushedManifest {
            event_id: "x".repeat(100_000),
            ..push("app", Some("v1"), "a")
        };
        book.offer(&long, now);
        let due = signed(book.next(now));
        assert_eq!(due.push.event_id, "");
        assert_eq!(due.push.repository, "app");
    }

    #[test]
    fn images_are_signed_in_arrival_order() {
        let now = Instant::now();
        let mut book = Book::new(options(10));
        for name in ["a", "b", "c"] {
            book.offer(&push(name, Some("v1"), name), now);
        }
        let order: Vec<_> = (0..3)
            .map(|_| signed(book.next(now)).push.repository)
            .collect();
        assert_eq!(order, ["a", "b", "c"]);
        assert!(matches!(book.next(now), Next::Idle));
    }

    #[test]
    fn retry_delays_double_from_one_second_to_one_minute() {
        let o = QueueOptions::default();
        let delays: Vec<u64> = (1..=9).map(|n| retry_delay(&o, n).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(retry_delay(&o, u32::MAX), Duration::from_secs(60));
    }

    #[test]
    fn a_failed_image_waits_its_backoff_then_is_signed_again() {
        let start = Instant::now();
        let mut book = Book::new(options(10));
        let a = push("a", Some("v1"), "a");
        book.offer(&a, start);
        let due = signed(book.next(start));
        let Finished::Retry { at, failures } = book.finish(&due.key, true, start) else {
            panic!("a first failure is retried");
        };
        assert_eq!((at, failures), (start + Duration::from_secs(1), 1));
        // Still held (a new event coalesces), not due before its time.
        assert!(matches!(book.offer(&a, start), Acknowledged::Coalesced));
        assert!(matches!(book.next(start), Next::WaitUntil(t) if t == at));
        // Another image is not held back by it.
        book.offer(&push("b", Some("v1"), "b"), start);
        assert_eq!(signed(book.next(start)).push.repository, "b");
        let again = signed(book.next(at));
        assert_eq!(again.push, a);
        let later = at + Duration::from_millis(10);
        let Finished::Retry { at: second, .. } = book.finish(&again.key, true, later) else {
            panic!("a second failure is retried");
        };
        assert_eq!(second, later + Duration::from_secs(2));
    }

    #[test]
    fn retries_stop_at_the_horizon() {
        let start = Instant::now();
        let o = QueueOptions {
            retry_horizon: Duration::from_secs(600),
            ..options(10)
        };
        let mut book = Book::new(o);
        let a = push("a", Some("v1"), "a");
        book.offer(&a, start);
        let mut now = start;
        let mut attempts = 0;
        let dropped = loop {
            let due = signed(book.next(now));
            attempts += 1;
            match book.finish(&due.key, true, now) {
                Finished::Retry { at, .. } => now = at,
                Finished::Dropped { failures } => break failures,
                Finished::Done => panic!("a failure is never done"),
            }
        };
        assert_eq!(dropped, attempts);
        // Attempts at 0, 1, 3, 7, 15, 31, 63 s, then each minute: the one at 603 s is past.
        assert_eq!(attempts, 16);
        assert!(now.duration_since(start) >= Duration::from_secs(600));
        assert_eq!(book.len(), 0);
        assert!(matches!(book.next(now), Next::Idle));
    }

    #[test]
    fn a_drain_makes_every_waiting_retry_due_now() {
        let start = Instant::now();
        let mut book = Book::new(options(10));
        book.offer(&push("a", Some("v1"), "a"), start);
        let due = signed(book.next(start));
        book.finish(&due.key, true, start);
        assert!(matches!(book.next(start), Next::WaitUntil(_)));
        book.retry_all_now();
        assert_eq!(signed(book.next(start)).push.repository, "a");
    }
}
