//! signet: sign container images on push, verify them at Kubernetes admission.
//!
//! The library holds every piece; `src/main.rs` only parses flags and calls it.
//! Dependency direction: admission, signer, controller -> policy -> signature, crypto, reference, crd;
//! `registry` is used by admission, signer and the CLI. `policy` never touches the network.
#![forbid(unsafe_code)]

pub mod admission;
pub mod controller;
pub mod crd;
pub mod crypto;
pub mod image_signing;
pub mod image_verification;
pub mod policy;
pub mod policy_verification;
pub mod reference;
pub mod registry;
pub mod signature;
pub mod signer;
