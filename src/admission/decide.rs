//! The decision for one AdmissionReview: read the workload, skip what is exempt, answer a
//! breakglass request by the requester's authority, otherwise judge every image at once under
//! the deadline (`judge`), and compose the answer (`compose`). The I/O (the
//! judge's registry lookups, the breakglass review, the event) happens here, around the two.
//!
//! Fail closed: a workload whose images cannot be read is denied; an image whose registry does
//! not answer before the deadline fails every `Enforce` policy that governs it, with a reason
//! naming the registry. `/mutate` never denies: it pins what verified and leaves the verdict to
//! `/validate`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;
use tracing::Instrument as _;

use super::breakglass::{BreakglassAsk, BreakglassAuthorizer, Requester};
use super::compose::{Case, Composed, Context, compose};
use super::events::{EventSink, WorkloadEvent};
use super::images::{ImagesError, Workload, assemble, workload_of};
use super::judge::{ImageOutcome, Judge};
use super::lookup::LookupTimings;
use super::metrics::{AdmissionResult, Endpoint, Metrics};
use super::review::{Answer, ReviewError, ReviewRequest, parse_review, parse_workload_review};
use crate::controller::PolicyState;
use crate::registry::RegistryClient;

pub use super::breakglass::BREAKGLASS_ANNOTATION;

/// The decision settings (flags).
#[derive(Clone, Debug)]
pub struct DecisionSettings {
    /// Bound on each request (`--deadline`).
    pub deadline: Duration,
    /// Namespaces whose workloads are allowed unchecked.
    pub exempt_namespaces: Vec<String>,
    /// Whether the breakglass annotation is honoured at all (`--breakglass`, off by default).
    pub breakglass: bool,
    /// Groups whose members may break glass without a SubjectAccessReview.
    pub breakglass_groups: Vec<String>,
    /// Whether `/mutate` pins digests.
    pub mutate: bool,
    /// Whether the workload's and its service account's pull secrets are read (`--pull-secrets`).
    pub pull_secrets: bool,
    /// Entries per cache (verdicts, digests, signatures).
    pub cache_size: u64,
    /// Decisions that need lookups in progress at once; more wait (within their deadline) for a
    /// slot. A decision answered wholly from the fast path's cache takes no slot.
    pub max_in_progress: usize,
    /// Cache lifetimes of registry answers (an allowed verdict lives as long as signatures).
    pub timings: LookupTimings,
    /// The name events are reported by (the pod's name).
    pub instance: String,
    /// Push-to-deploy grace (`--signing-grace`): how long an image that has no signature at all,
    /// but that a SigningRule covers, is re-read for its signature before an `Enforce` denial;
    /// zero turns it off.
    pub signing_grace: Duration,
}

impl Default for DecisionSettings {
    fn default() -> Self {
        DecisionSettings {
            deadline: Duration::from_secs(8),
            exempt_namespaces: vec!["kube-system".to_string()],
            breakglass: false,
            breakglass_groups: Vec::new(),
            mutate: true,
            pull_secrets: false,
            cache_size: 100_000,
            max_in_progress: 1024,
            timings: LookupTimings::default(),
            instance: "signet-webhook".to_string(),
            signing_grace: Duration::from_secs(3),
        }
    }
}

/// Everything a decision needs, shared by all requests.
pub struct Admission {
    judge: Arc<Judge>,
    breakglass: BreakglassAuthorizer,
    events: EventSink,
    metrics: Arc<Metrics>,
    settings: DecisionSettings,
    permits: Arc<Semaphore>,
}

impl Admission {
    /// Decisions from `policy`, looking images up through `registry`; with a `kube` client,
    /// breakglass is reviewed, events posted and (when enabled) pull secrets read through it.
    pub fn new(
        policy: PolicyState,
        registry: RegistryClient,
        kube: Option<kube::Client>,
        settings: DecisionSettings,
        metrics: Arc<Metrics>,
    ) -> Self {
        metrics.common().observe_policy(policy.clone());
        Admission {
            judge: Arc::new(Judge::new(
                policy,
                registry,
                kube.clone(),
                &settings,
                Arc::clone(&metrics),
            )),
            breakglass: BreakglassAuthorizer::new(settings.breakglass_groups.clone(), kube.clone()),
            events: EventSink::new(kube, settings.instance.clone(), Arc::clone(&metrics)),
            permits: Arc::new(Semaphore::new(settings.max_in_progress.max(1))),
            metrics,
            settings,
        }
    }

    /// The metrics this admission records into.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The registry lookups (and their caches) decisions use, for the audit of running pods.
    pub fn audit_lookups(&self) -> super::audit_source::AdmissionLookups {
        self.judge.audit_lookups()
    }

    /// Whether the policy picture has synced (`/readyz`).
    pub fn is_ready(&self) -> bool {
        self.judge.is_ready()
    }

    /// Verdicts cached now (expired ones not counted).
    pub async fn cached_verdicts(&self) -> u64 {
        self.judge.cached_verdicts()
    }

    /// Answers one AdmissionReview body. `Err` when it is not one (HTTP 400).
    pub async fn review(&self, body: &[u8], endpoint: Endpoint) -> Result<Answer, ReviewError> {
        let started = Instant::now();
        // The common case (answered at once, nothing to post) awaits nothing; what waits is one
        // boxed future. This future then holds a pointer across its one await rather than the
        // read request and workload (about 1,400 bytes), which every request's future would
        // otherwise carry and copy: over HTTP/2 each request's future is moved into a task of
        // its own.
        let (answer, result) = match self.decide_at_once(body, endpoint) {
            AtOnce::Answered(composed, None) => (composed.answer, composed.result),
            at_once => match Box::pin(self.decide_later(at_once, body, endpoint, started)).await {
                Ok(decided) => decided,
                Err(e) => {
                    let seconds = started.elapsed().as_secs_f64();
                    self.metrics
                        .admission(endpoint, AdmissionResult::Error, seconds);
                    return Err(e);
                }
            },
        };
        self.metrics
            .admission(endpoint, result, started.elapsed().as_secs_f64());
        Ok(answer)
    }

    /// What [`Admission::decide_at_once`] could not finish: an event to post, a decision that
    /// waits (lookups, breakglass), or a body the workload reader left. Only this runs in the
    /// request's span: the common case logs nothing, and an enabled span (the default `--log
    /// info`) cost it about 5,000 instructions (`COST=1050 scripts/bench-vs-nginx.sh` with `--log
    /// info`).
    async fn decide_later(
        &self,
        at_once: AtOnce<'_>,
        body: &[u8],
        endpoint: Endpoint,
        started: Instant,
    ) -> Result<(Answer, AdmissionResult), ReviewError> {
        let deadline = tokio::time::Instant::from_std(started + self.settings.deadline);
        Ok(match at_once {
            AtOnce::Answered(composed, event) => {
                if let Some(event) = event {
                    let span = admission_span(endpoint, &composed.answer.uid);
                    self.events.record(*event).instrument(span).await;
                }
                (composed.answer, composed.result)
            }
            AtOnce::Later(read) => {
                let (request, workload) = &*read;
                let span = admission_span(endpoint, &request.uid);
                self.decide(request, Ok(Some(workload)), endpoint, deadline)
                    .instrument(span)
                    .await
            }
            AtOnce::Unread => {
                let request = parse_review(body)?;
                let workload = workload_of(&request);
                let workload = workload.as_ref().map(Option::as_ref);
                let span = admission_span(endpoint, &request.uid);
                self.decide(&request, workload, endpoint, deadline)
                    .instrument(span)
                    .await
            }
        })
    }

    /// The common case decided without waiting and without a future: a checked workload read
    /// straight into its workload (`parse_workload_review`), exempt, or whose images all have
    /// fresh verdicts. What needs I/O (breakglass, registry lookups) is handed back as read;
    /// what the workload reader leaves (anything unusual) is read by the general reader.
    fn decide_at_once<'b>(&self, body: &'b [u8], endpoint: Endpoint) -> AtOnce<'b> {
        let Some((request, object)) = parse_workload_review(body) else {
            return AtOnce::Unread;
        };
        let workload = assemble(&request, &object.metadata, object.route, object.pod);
        let context = Context {
            uid: &request.uid,
            endpoint,
            dry_run: request.dry_run,
            mutate: self.settings.mutate,
            workload: Some(&workload),
        };
        let mut composed = if self.is_exempt(&workload) {
            compose(&context, &Case::Exempt)
        } else {
            let ask = BreakglassAsk::of(&workload, self.settings.breakglass);
            if let BreakglassAsk::Reason(_) = ask {
                return AtOnce::Later(Box::new((request, workload)));
            }
            let Ok(hits) = self.judge.admitted_outcomes(&workload) else {
                return AtOnce::Later(Box::new((request, workload)));
            };
            let composed = compose(
                &context,
                &Case::Judged {
                    ask: &ask,
                    outcomes: &hits.outcomes,
                },
            );
            if !hits.refresh.is_empty() {
                self.refresh_in_background(&workload, hits.refresh);
            }
            composed
        };
        let event = composed
            .event
            .take()
            .map(|(reason, note)| Box::new(event_of(&request, &workload, reason, note)));
        AtOnce::Answered(composed, event)
    }

    async fn decide(
        &self,
        request: &ReviewRequest<'_>,
        workload: Result<Option<&Workload<'_>>, &ImagesError>,
        endpoint: Endpoint,
        deadline: tokio::time::Instant,
    ) -> (Answer, AdmissionResult) {
        let context = Context {
            uid: &request.uid,
            endpoint,
            dry_run: request.dry_run,
            mutate: self.settings.mutate,
            workload: workload.ok().flatten(),
        };
        let composed = match workload {
            Ok(None) => compose(&context, &Case::NotAWorkload),
            Err(e) => {
                let error = e.to_string();
                compose(
                    &context,
                    &Case::Unreadable {
                        kind: &request.kind.kind,
                        error,
                    },
                )
            }
            Ok(Some(workload)) => {
                self.decide_workload(&context, request, workload, deadline)
                    .await
            }
        };
        if let (Some((reason, note)), Some(workload)) = (composed.event, context.workload) {
            Box::pin(
                self.events
                    .record(event_of(request, workload, reason, note)),
            )
            .await;
        }
        (composed.answer, composed.result)
    }

    async fn decide_workload(
        &self,
        context: &Context<'_>,
        request: &ReviewRequest<'_>,
        workload: &Workload<'_>,
        deadline: tokio::time::Instant,
    ) -> Composed {
        if self.is_exempt(workload) {
            return compose(context, &Case::Exempt);
        }
        let ask = BreakglassAsk::of(workload, self.settings.breakglass);
        if let BreakglassAsk::Reason(reason) = &ask {
            let requester = Requester::of(request);
            let answer = Box::pin(self.breakglass.authorize(
                &requester,
                &workload.namespace,
                reason,
            ))
            .await;
            return compose(context, &Case::Breakglass(&answer));
        }
        let outcomes = match self.cached_outcomes(workload) {
            Ok(outcomes) => outcomes,
            // Only work that may reach a registry waits for a permit.
            Err(images) => {
                let permit = tokio::time::timeout_at(deadline, self.permits.acquire()).await;
                let Ok(Ok(_permit)) = permit else {
                    let deadline = self.settings.deadline;
                    return compose(context, &Case::Overloaded { deadline });
                };
                Box::pin(self.judge.judge_images(workload, images, deadline)).await
            }
        };
        compose(
            context,
            &Case::Judged {
                ask: &ask,
                outcomes: &outcomes,
            },
        )
    }

    fn is_exempt(&self, workload: &Workload<'_>) -> bool {
        self.settings
            .exempt_namespaces
            .iter()
            .any(|exempt| *exempt == workload.namespace)
    }

    /// Every image's outcome from the fast path (`Judge::admitted_outcomes`), starting the
    /// refresh of those due for one; else the images to judge.
    fn cached_outcomes<'w>(
        &self,
        workload: &'w Workload<'_>,
    ) -> Result<Vec<ImageOutcome<'w>>, Vec<&'w str>> {
        let hits = self.judge.admitted_outcomes(workload)?;
        if !hits.refresh.is_empty() {
            self.refresh_in_background(workload, hits.refresh);
        }
        Ok(hits.outcomes)
    }

    /// Starts the refresh of `images` ahead of their expiry (`Judge::refresh_images`), in a
    /// task of its own under a permit, so that no admission waits for it. Without a free
    /// permit it is not started: the entries then end at their expiry, as without refreshes.
    fn refresh_in_background(&self, workload: &Workload<'_>, images: Vec<(String, Arc<str>)>) {
        let Ok(permit) = Arc::clone(&self.permits).try_acquire_owned() else {
            return;
        };
        let judge = Arc::clone(&self.judge);
        let workload = workload.clone().into_owned();
        let deadline = tokio::time::Instant::now() + self.settings.deadline;
        tokio::spawn(async move {
            let _permit = permit;
            judge.refresh_images(&workload, images, deadline).await;
        });
    }
}

/// Where [`Admission::decide_at_once`] got to.
enum AtOnce<'b> {
    /// Decided: the answer, and the event to post (boxed: rare).
    Answered(Composed, Option<Box<WorkloadEvent>>),
    /// A workload read straight, whose decision waits on I/O (boxed: the common case returns
    /// less).
    Later(Box<(ReviewRequest<'b>, Workload<'b>)>),
    /// Not read: left to the general reader.
    Unread,
}

fn event_of(
    request: &ReviewRequest<'_>,
    workload: &Workload<'_>,
    reason: super::events::EventReason,
    note: String,
) -> WorkloadEvent {
    let api_version = if request.kind.group.is_empty() {
        request.kind.version.to_string()
    } else {
        format!("{}/{}", request.kind.group, request.kind.version)
    };
    WorkloadEvent {
        reason,
        api_version,
        kind: workload.kind.to_string(),
        namespace: workload.namespace.to_string(),
        name: workload.name.to_string(),
        note,
    }
}

/// `8s`, `1500ms`: the one printer of `crate::serve`, re-exported where denial messages use it.
pub use crate::serve::format_duration;

/// The span of one admission's work that waits: what it logs (a registry failing, an event not
/// posted) names the request.
fn admission_span(endpoint: Endpoint, uid: &str) -> tracing::Span {
    tracing::info_span!("admission", endpoint = %endpoint, uid)
}
