//! VerificationPolicy (namespaced): which attestors must have signed the images that workloads of
//! its own namespace run.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::policy_spec;
use super::status::ResourceStatus;

policy_spec! {
    /// Requirements on the images run by workloads in the policy's own namespace.
    ///
    /// Every policy that matches an image must pass: a namespace owner can add requirements to the
    /// cluster's, never remove them.
    // kube's printcolumn(...) lists repeat `type_ = "string"`, which clippy mistakes for duplicates.
    #[allow(clippy::duplicated_attributes)]
    #[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
    #[kube(
        group = "signet.dev",
        version = "v1alpha1",
        kind = "VerificationPolicy",
        namespaced,
        shortname = "vp",
        category = "signet",
        status = "ResourceStatus",
        derive = "PartialEq",
        // `required` above the number of attestors is a policy nothing can satisfy.
        validation = kube::core::Rule::new(
                "!has(self.spec.required) || self.spec.required <= size(self.spec.attestors)"
            )
            .message("spec.required cannot exceed the number of spec.attestors: no image could pass")
            .field_path(".spec.required"),
        doc = "Which attestors must have signed the images run in this namespace.",
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
    pub struct VerificationPolicySpec {
    }
}
