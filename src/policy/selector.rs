//! Namespace selectors of ClusterVerificationPolicies: Kubernetes label-selector semantics over the
//! namespace labels the snapshot knows (a namespace it does not describe has no labels).

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use super::SpecProblem;

const FIELD: &str = "spec.namespaceSelector";

/// One `matchExpressions` requirement, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Requirement {
    In(String, BTreeSet<String>),
    /// Also matches namespaces without the label, as in Kubernetes.
    NotIn(String, BTreeSet<String>),
    Exists(String),
    DoesNotExist(String),
}

/// A compiled namespace selector. Absent and empty selectors select every namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct NamespaceSelector {
    labels: Vec<(String, String)>,
    requirements: Vec<Requirement>,
}

impl NamespaceSelector {
    /// Selects every namespace: the meaning of an absent selector, and the fail-closed fallback
    /// for an invalid one (a policy that cannot tell where it applies applies everywhere).
    pub(crate) fn all() -> Self {
        Self::default()
    }

    /// Compiles a selector; on any invalid requirement returns the problems instead.
    pub(crate) fn compile(selector: &LabelSelector) -> Result<Self, Vec<SpecProblem>> {
        let labels = selector
            .match_labels
            .iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let mut requirements = Vec::new();
        let mut problems = Vec::new();
        for (i, expr) in selector.match_expressions.iter().flatten().enumerate() {
            let field = format!("{FIELD}.matchExpressions[{i}]");
            let values: BTreeSet<String> = expr.values.iter().flatten().cloned().collect();
            let key = expr.key.clone();
            if key.is_empty() {
                problems.push(SpecProblem::invalid(
                    format!("{field}.key"),
                    "empty label key",
                ));
                continue;
            }
            let requirement = match expr.operator.as_str() {
                "In" | "NotIn" if values.is_empty() => {
                    problems.push(SpecProblem::invalid(
                        format!("{field}.values"),
                        format!("operator {} needs at least one value", expr.operator),
                    ));
                    continue;
                }
                "Exists" | "DoesNotExist" if !values.is_empty() => {
                    problems.push(SpecProblem::invalid(
                        format!("{field}.values"),
                        format!("operator {} takes no values", expr.operator),
                    ));
                    continue;
                }
                "In" => Requirement::In(key, values),
                "NotIn" => Requirement::NotIn(key, values),
                "Exists" => Requirement::Exists(key),
                "DoesNotExist" => Requirement::DoesNotExist(key),
                other => {
                    problems.push(SpecProblem::invalid(
                        format!("{field}.operator"),
                        format!(
                            "unknown operator {other:?} (expected In, NotIn, Exists or DoesNotExist)"
                        ),
                    ));
                    continue;
                }
            };
            requirements.push(requirement);
        }
        if problems.is_empty() {
            Ok(NamespaceSelector {
                labels,
                requirements,
            })
        } else {
            Err(problems)
        }
    }

    /// Whether a namespace with these labels (`None`: not described, no labels) is selected.
    pub(crate) fn selects(&self, labels: Option<&BTreeMap<String, String>>) -> bool {
        let get = |key: &str| labels.and_then(|l| l.get(key));
        self.labels
            .iter()
            .all(|(k, v)| get(k).is_some_and(|have| have == v))
            && self.requirements.iter().all(|r| match r {
                Requirement::In(k, values) => get(k).is_some_and(|v| values.contains(v)),
                Requirement::NotIn(k, values) => get(k).is_none_or(|v| !values.contains(v)),
                Requirement::Exists(k) => get(k).is_some(),
                Requirement::DoesNotExist(k) => get(k).is_none(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    fn expr(key: &str, op: &str, values: &[&str]) -> LabelSelectorRequirement {
        LabelSelectorRequirement {
            key: key.into(),
            operator: op.into(),
            values: Some(values.iter().map(|v| v.to_string()).collect()),
        }
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn kubernetes_semantics() {
        let sel = NamespaceSelector::compile(&LabelSelector {
            match_labels: Some(labels(&[("tier", "prod")])),
            match_expressions: Some(vec![
                expr("team", "In", &["a", "b"]),
                expr("legacy", "DoesNotExist", &[]),
                expr("zone", "NotIn", &["dmz"]),
            ]),
        })
        .unwrap();
        assert!(sel.selects(Some(&labels(&[("tier", "prod"), ("team", "a")]))));
        assert!(!sel.selects(Some(&labels(&[("tier", "prod"), ("team", "c")]))));
        assert!(!sel.selects(Some(&labels(&[
            ("tier", "prod"),
            ("team", "a"),
            ("legacy", "")
        ]))));
        assert!(!sel.selects(Some(&labels(&[
            ("tier", "prod"),
            ("team", "a"),
            ("zone", "dmz")
        ]))));
        assert!(!sel.selects(None));
        let exists = NamespaceSelector::compile(&LabelSelector {
            match_labels: None,
            match_expressions: Some(vec![expr("team", "Exists", &[])]),
        })
        .unwrap();
        assert!(exists.selects(Some(&labels(&[("team", "")]))));
        assert!(!exists.selects(None));
        assert!(NamespaceSelector::all().selects(None));
    }

    #[test]
    fn invalid_requirements_name_the_field() {
        let err = NamespaceSelector::compile(&LabelSelector {
            match_labels: None,
            match_expressions: Some(vec![
                expr("team", "In", &[]),
                expr("team", "Matches", &["a"]),
                expr("team", "Exists", &["a"]),
            ]),
        })
        .unwrap_err();
        let text: Vec<String> = err.iter().map(ToString::to_string).collect();
        assert_eq!(
            text,
            [
                "spec.namespaceSelector.matchExpressions[0].values: operator In needs at least one value",
                "spec.namespaceSelector.matchExpressions[1].operator: unknown operator \"Matches\" (expected In, NotIn, Exists or DoesNotExist)",
                "spec.namespaceSelector.matchExpressions[2].values: operator Exists takes no values",
            ]
        );
    }
}
