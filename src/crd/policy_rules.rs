//! The spec VerificationPolicy and ClusterVerificationPolicy share, field for field: written once
//! here and expanded into both structs by [`policy_spec!`].
//!
//! Why a macro and not `#[serde(flatten)]`: with flatten, serde loses the field path in errors
//! (`spec: unknown variant` instead of `spec.mode: unknown variant`), and the policy folder's
//! one-line errors must name the field.

use super::Mode;
use crate::signature::SignatureType;

/// The rules VerificationPolicy and ClusterVerificationPolicy share, borrowed from either spec.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PolicyRules<'a> {
    /// `spec.images`: globs of the images governed.
    pub images: &'a [String],
    /// `spec.exclude`: globs of images not governed even when `images` matches.
    pub exclude: &'a [String],
    /// `spec.attestors`: Attestor names.
    pub attestors: &'a [String],
    /// `spec.required`: distinct attestors needed; `None` = all.
    pub required: Option<u32>,
    /// `spec.signatureType`.
    pub signature_type: SignatureType,
    /// `spec.mode`.
    pub mode: Mode,
}

/// Declares a policy spec struct: its attributes and own fields as written, followed by the
/// shared rule fields, and a `rules()` view of them.
macro_rules! policy_spec {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            $($(#[$field_meta:meta])* pub $field:ident: $type:ty,)*
        }
    ) => {
        $(#[$meta])*
        pub struct $name {
            $($(#[$field_meta])* pub $field: $type,)*
            /// Image globs over canonical references (`registry.example.com/prod/**`): `*` and
            /// `?` stay within one path segment and never cross `:`, `**` crosses segments.
            #[schemars(length(min = 1))]
            pub images: Vec<String>,
            /// Globs of images this policy does not govern, even when `images` matches them.
            #[serde(default, skip_serializing_if = "Vec::is_empty")]
            pub exclude: Vec<String>,
            /// Names of the Attestors whose signatures count.
            #[schemars(length(min = 1))]
            pub attestors: Vec<String>,
            /// How many distinct attestors must have a valid signature; absent = all of them.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            #[schemars(schema_with = "crate::crd::required_count_schema")]
            pub required: Option<u32>,
            /// `Default`: the signature must bind the tag too; `Simple`: the digest only.
            #[serde(default)]
            pub signature_type: $crate::signature::SignatureType,
            /// `Enforce` denies failing workloads; `DryRun` allows them with a warning.
            #[serde(default)]
            pub mode: $crate::crd::Mode,
        }

        impl $name {
            /// The rules shared by both policy kinds.
            pub fn rules(&self) -> $crate::crd::PolicyRules<'_> {
                $crate::crd::PolicyRules {
                    images: &self.images,
                    exclude: &self.exclude,
                    attestors: &self.attestors,
                    required: self.required,
                    signature_type: self.signature_type,
                    mode: self.mode,
                }
            }
        }
    };
}

pub(crate) use policy_spec;
