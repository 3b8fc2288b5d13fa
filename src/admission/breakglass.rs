//! Breakglass: `signet.dev/breakglass: "<reason>"` admits a workload without verifying its
//! images, but only for a requester who holds that authority.
//!
//! The authority is checked, never assumed from the annotation: the requester (the API server's
//! `userInfo`, which no client can forge) must be in one of `--breakglass-groups`, or a
//! SubjectAccessReview must allow it the verb `use` on the resource `breakglass` of the API group
//! `signet.dev` in the workload's namespace (a ClusterRole in the chart grants it; a RoleBinding
//! can grant it per namespace). Breakglass is off unless `--breakglass` turns it on.
//!
//! Workloads created by controllers: the API server names the controller as the requester of the
//! objects it creates (a Deployment's pods come from `system:serviceaccount:kube-system:
//! replicaset-controller`). So the annotation is read from the object's own metadata and from
//! its pod template (and a CronJob's job template): a Deployment whose template carries it is
//! only admitted when its own requester is authorized, and the controllers' service accounts are
//! then authorized for the pods (the chart binds them when `breakglass.controllers` is on).
//! An unauthorized breakglass request is denied outright, whatever its images: admitting a
//! template with the annotation would hand the breakglass to the controller later.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use kube::Api;
use kube::api::PostParams;
use moka::future::Cache;

use super::images::Workload;
use super::review::ReviewRequest;

/// The annotation that asks for admission without verification (`signet.dev/breakglass`).
pub const BREAKGLASS_ANNOTATION: &str = "signet.dev/breakglass";
/// The API group, resource and verb a SubjectAccessReview asks about.
pub const BREAKGLASS_GROUP: &str = "signet.dev";
/// See [`BREAKGLASS_GROUP`].
pub const BREAKGLASS_RESOURCE: &str = "breakglass";
/// See [`BREAKGLASS_GROUP`].
pub const BREAKGLASS_VERB: &str = "use";

/// How long an authorization answer is reused for the same requester and namespace: a
/// Deployment of 100 replicas then costs one review, and a revoked RoleBinding matters soon.
const ANSWER_TTL: Duration = Duration::from_secs(10);
const ANSWER_CAPACITY: u64 = 10_000;

/// Who made the request, as the API server says.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Requester {
    /// `userInfo.username`.
    pub username: String,
    /// `userInfo.uid`.
    pub uid: String,
    /// `userInfo.groups`.
    pub groups: Vec<String>,
    /// `userInfo.extra` (scopes, credential ids), passed on to the SubjectAccessReview.
    pub extra: BTreeMap<String, Vec<String>>,
}

impl Requester {
    /// The requester of an admission request.
    pub fn of(request: &ReviewRequest<'_>) -> Self {
        let info = &request.user_info;
        Requester {
            username: info.username.as_deref().unwrap_or_default().to_string(),
            uid: info.uid.as_deref().unwrap_or_default().to_string(),
            groups: info
                .groups
                .iter()
                .flatten()
                .map(|group| group.to_string())
                .collect(),
            extra: info.extra.clone().unwrap_or_default(),
        }
    }
}

/// What the breakglass annotation asks, before anyone's authority is checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BreakglassAsk {
    /// No annotation: the images are judged.
    None,
    /// The annotation is there but breakglass is off: ignored with a warning.
    Disabled,
    /// The annotation has no reason: ignored with a warning.
    NoReason,
    /// Admission without verification is asked, for this reason.
    Reason(String),
}

impl BreakglassAsk {
    /// Reads the annotation of `workload` (its own, else its templates').
    pub fn of(workload: &Workload<'_>, enabled: bool) -> Self {
        let value = workload
            .annotations
            .get(BREAKGLASS_ANNOTATION)
            .or_else(|| workload.template_annotations.get(BREAKGLASS_ANNOTATION));
        match value.map(|v| v.trim()) {
            None => BreakglassAsk::None,
            Some(_) if !enabled => BreakglassAsk::Disabled,
            Some("") => BreakglassAsk::NoReason,
            Some(reason) => BreakglassAsk::Reason(reason.to_string()),
        }
    }

    /// The warning an ignored annotation earns.
    pub fn warning(&self) -> Option<String> {
        match self {
            BreakglassAsk::Disabled => Some(format!(
                "{BREAKGLASS_ANNOTATION} ignored: breakglass is disabled on this cluster"
            )),
            BreakglassAsk::NoReason => Some(format!(
                "{BREAKGLASS_ANNOTATION} ignored: it needs a reason as its value"
            )),
            BreakglassAsk::None | BreakglassAsk::Reason(_) => None,
        }
    }
}

/// Why the requester may break glass.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Authority {
    /// A member of this `--breakglass-groups` group.
    Group(String),
    /// A SubjectAccessReview allowed it.
    Rbac,
}

/// The answer to a breakglass request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BreakglassAnswer {
    /// Admitted without verification.
    Authorized {
        /// The annotation's reason.
        reason: String,
        /// The requester's name.
        user: String,
        /// Where the authority came from.
        by: Authority,
    },
    /// Denied, saying why.
    Refused {
        /// The annotation's reason.
        reason: String,
        /// Why the requester may not (one line).
        why: String,
    },
}

/// Decides breakglass requests: `--breakglass-groups`, then a SubjectAccessReview.
pub struct BreakglassAuthorizer {
    groups: Vec<String>,
    kube: Option<kube::Client>,
    answers: Cache<(Requester, String), Result<(), String>>,
}

impl BreakglassAuthorizer {
    /// Authorizes members of `groups`, and whoever a SubjectAccessReview through `kube` allows.
    pub fn new(groups: Vec<String>, kube: Option<kube::Client>) -> Self {
        BreakglassAuthorizer {
            groups,
            kube,
            answers: Cache::builder()
                .max_capacity(ANSWER_CAPACITY)
                .time_to_live(ANSWER_TTL)
                .build(),
        }
    }

    /// Whether `requester` may admit a workload in `namespace` without verification.
    pub async fn authorize(
        &self,
        requester: &Requester,
        namespace: &str,
        reason: &str,
    ) -> BreakglassAnswer {
        let user = display_user(requester);
        if let Some(group) = requester.groups.iter().find(|g| self.groups.contains(g)) {
            return BreakglassAnswer::Authorized {
                reason: reason.to_string(),
                user,
                by: Authority::Group(group.clone()),
            };
        }
        let key = (requester.clone(), namespace.to_string());
        let checked = match self.answers.get(&key).await {
            Some(answer) => answer,
            None => {
                let answer = self.review(requester, namespace).await;
                // A failed review is not remembered: the next request asks again.
                if !matches!(&answer, Err(why) if why.starts_with(CHECK_FAILED)) {
                    self.answers.insert(key, answer.clone()).await;
                }
                answer
            }
        };
        match checked {
            Ok(()) => BreakglassAnswer::Authorized {
                reason: reason.to_string(),
                user,
                by: Authority::Rbac,
            },
            Err(why) => BreakglassAnswer::Refused {
                reason: reason.to_string(),
                why,
            },
        }
    }

    async fn review(&self, requester: &Requester, namespace: &str) -> Result<(), String> {
        let user = display_user(requester);
        let not_allowed = || {
            format!(
                "{user} may not use {BREAKGLASS_ANNOTATION} in namespace {namespace} (needs \
                 verb {BREAKGLASS_VERB:?} on {BREAKGLASS_RESOURCE}.{BREAKGLASS_GROUP}, or a \
                 group in --breakglass-groups)"
            )
        };
        let Some(client) = &self.kube else {
            // Without a cluster there is nobody to ask: only the listed groups count.
            return Err(not_allowed());
        };
        let review = subject_access_review(requester, namespace);
        let api: Api<SubjectAccessReview> = Api::all(client.clone());
        match api.create(&PostParams::default(), &review).await {
            Ok(answer) if answer.status.as_ref().is_some_and(|s| s.allowed) => Ok(()),
            Ok(_) => Err(not_allowed()),
            Err(e) => {
                tracing::warn!(error = %e, user = %user, "breakglass SubjectAccessReview failed");
                Err(format!(
                    "{CHECK_FAILED} for {user} (SubjectAccessReview failed: {e})"
                ))
            }
        }
    }
}

/// The start of a refusal that came from a failed check rather than a "no".
const CHECK_FAILED: &str = "cannot check the breakglass authority";

/// The review asking whether `requester` may `use` `breakglass.signet.dev` in `namespace`.
pub fn subject_access_review(requester: &Requester, namespace: &str) -> SubjectAccessReview {
    SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some(requester.username.clone()),
            uid: Some(requester.uid.clone()).filter(|u| !u.is_empty()),
            groups: Some(requester.groups.clone()),
            extra: Some(requester.extra.clone()).filter(|e| !e.is_empty()),
            resource_attributes: Some(ResourceAttributes {
                group: Some(BREAKGLASS_GROUP.to_string()),
                resource: Some(BREAKGLASS_RESOURCE.to_string()),
                verb: Some(BREAKGLASS_VERB.to_string()),
                namespace: Some(namespace.to_string()),
                ..ResourceAttributes::default()
            }),
            ..SubjectAccessReviewSpec::default()
        },
        ..SubjectAccessReview::default()
    }
}

fn display_user(requester: &Requester) -> String {
    if requester.username.is_empty() {
        "an anonymous requester".to_string()
    } else {
        format!("user {:?}", requester.username)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workload(own: &[(&str, &str)], template: &[(&str, &str)]) -> Workload<'static> {
        let map = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        Workload {
            kind: "Deployment".into(),
            namespace: "shop".into(),
            name: "web".into(),
            images: vec![],
            annotations: map(own),
            template_annotations: map(template),
            pod_spec_pointer: "/spec/template/spec",
            image_pull_secrets: vec![],
            service_account: None,
        }
    }

    #[test]
    fn the_annotation_is_read_from_the_object_then_its_templates() {
        let on_template = workload(&[], &[(BREAKGLASS_ANNOTATION, " INC-1 ")]);
        assert_eq!(
            BreakglassAsk::of(&on_template, true),
            BreakglassAsk::Reason("INC-1".into())
        );
        assert_eq!(
            BreakglassAsk::of(&on_template, false),
            BreakglassAsk::Disabled
        );
        let empty = workload(&[(BREAKGLASS_ANNOTATION, "  ")], &[]);
        assert_eq!(BreakglassAsk::of(&empty, true), BreakglassAsk::NoReason);
        assert!(BreakglassAsk::NoReason.warning().is_some());
        assert_eq!(
            BreakglassAsk::of(&workload(&[], &[]), true),
            BreakglassAsk::None
        );
    }

    #[tokio::test]
    async fn groups_authorize_and_nobody_else_does_without_a_cluster() {
        let authorizer = BreakglassAuthorizer::new(vec!["oncall".into()], None);
        let mut requester = Requester {
            username: "alice".into(),
            groups: vec!["system:authenticated".into(), "oncall".into()],
            ..Requester::default()
        };
        assert_eq!(
            authorizer.authorize(&requester, "shop", "INC-1").await,
            BreakglassAnswer::Authorized {
                reason: "INC-1".into(),
                user: "user \"alice\"".into(),
                by: Authority::Group("oncall".into()),
            }
        );
        requester.groups.pop();
        let refused = authorizer.authorize(&requester, "shop", "INC-1").await;
        let BreakglassAnswer::Refused { why, .. } = refused else {
            panic!("refused expected: {refused:?}");
        };
        assert!(why.contains("user \"alice\" may not use"), "{why}");
    }

    #[test]
    fn the_review_asks_about_use_of_breakglass_in_the_namespace() {
        let requester = Requester {
            username: "system:serviceaccount:shop:default".into(),
            uid: "u-1".into(),
            groups: vec!["system:serviceaccounts".into()],
            extra: BTreeMap::new(),
        };
        let review = subject_access_review(&requester, "shop");
        let value = serde_json::to_value(&review).unwrap_or_default();
        assert_eq!(
            value["spec"]["resourceAttributes"],
            serde_json::json!({"group": "signet.dev", "resource": "breakglass", "verb": "use",
                               "namespace": "shop"})
        );
        assert_eq!(value["spec"]["user"], "system:serviceaccount:shop:default");
        assert_eq!(value["spec"]["uid"], "u-1");
    }
}
