//! ClusterVerificationPolicy (cluster-scoped): a VerificationPolicy for every namespace that its
//! `namespaceSelector` selects (absent = all namespaces).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::policy_spec;
use super::status::ResourceStatus;

policy_spec! {
    /// Requirements on the images run by workloads in the selected namespaces.
    // kube's printcolumn(...) lists repeat `type_ = "string"`, which clippy mistakes for duplicates.
    #[allow(clippy::duplicated_attributes)]
    #[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
    #[kube(
        group = "signet.dev",
        version = "v1alpha1",
        kind = "ClusterVerificationPolicy",
        shortname = "cvp",
        category = "signet",
        status = "ResourceStatus",
        derive = "PartialEq",
        // `required` above the number of attestors is a policy nothing can satisfy.
        validation = kube::core::Rule::new(
                "!has(self.spec.required) || self.spec.required <= size(self.spec.attestors)"
            )
            .message("spec.required cannot exceed the number of spec.attestors: no image could pass")
            .field_path(".spec.required"),
        doc = "Which attestors must have signed the images run in the selected namespaces.",
        printcolumn(name = "Mode", type_ = "string", json_path = ".spec.mode"),
        printcolumn(name = "Attestors", type_ = "string", json_path = ".spec.attestors"),
        printcolumn(
            name = "Required",
            type_ = "integer",
            json_path = ".spec.required",
            description = "distinct attestors that must have signed; empty = all"
        ),
        printcolumn(
            name = "Ready",
            type_ = "string",
            json_path = ".status.conditions[?(@.type==\"Ready\")].status"
        ),
        printcolumn(
            name = "Age",
            type_ = "date",
            json_path = ".metadata.creationTimestamp"
        )
    )]
    #[serde(rename_all = "camelCase")]
    pub struct ClusterVerificationPolicySpec {
        /// Namespaces the policy applies to, by their labels; absent = all namespaces.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub namespace_selector: Option<LabelSelector>,
    }
}
