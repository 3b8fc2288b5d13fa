//! [`label_enum!`](crate::metrics::labels::label_enum): the one way a metric label is declared,
//! so that every label value is lower snake case and every value is known (for series present
//! from start).

/// Declares a label enum: lower snake case values, `ALL` (so every series exists from the
/// start), `as_str`, `Display`, `EncodeLabelValue` and serde's snake case names.
macro_rules! label_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident { $( $(#[$vmeta:meta])* $variant:ident => $label:literal, )+ }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, serde::Serialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $( $(#[$vmeta])* $variant, )+ }

        impl $name {
            /// Every value, so each series exists from the start.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The lower snake case label value.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $label,)+ }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl prometheus_client::encoding::EncodeLabelValue for $name {
            fn encode(
                &self,
                encoder: &mut prometheus_client::encoding::LabelValueEncoder,
            ) -> std::fmt::Result {
                use std::fmt::Write as _;
                encoder.write_str(self.as_str())
            }
        }
    };
}

pub(crate) use label_enum;
