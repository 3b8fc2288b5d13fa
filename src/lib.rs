//! signet: sign container images on push, verify them at Kubernetes admission.
//!
//! The library holds every piece; `src/main.rs` only parses flags (the clap types live in [`cli`])
//! and calls [`cli::run`]. Dependency direction: cli -> admission, signer -> serve -> controller
//! -> policy -> registry, crd -> signature -> crypto, reference. `policy` never touches the
//! network. Below `cli`, library code takes plain config structs, never clap types.
#![forbid(unsafe_code)]

pub mod admission;
pub mod cli;
pub mod controller;
pub mod crd;
pub mod crypto;
pub mod metrics;
pub mod policy;
pub mod reference;
pub mod registry;
pub mod serve;
pub mod signature;
pub mod signer;
