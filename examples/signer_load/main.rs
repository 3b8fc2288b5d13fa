//! Load generator for `signet signer`: push -> signature readable, with Debian's `docker-registry`
//! notifying an in-process signer, as deployed.
//!
//! ```text
//! cargo run --release --example signer_load -- [--key file|pkcs11] [--images 400] [--concurrency 16]
//! ```
//!
//! 1. latency: images pushed one at a time; for each, the time from the manifest PUT's answer to
//!    the `.sig` tag answering (polled every 2 ms): p50, p95, max;
//! 2. throughput: `--images` pushed by `--concurrency` pushers at once; images/s from the first
//!    push to the last signature written (the signer's in-process count, so that watching adds
//!    no registry load; every image is read back once the burst is over), and push -> signature
//!    p50/p95 under that load, polled on every 8th image.
//!
//! `--storage inmemory` (default) keeps the registry's storage in memory, so that the figures are
//! the signer's and not the disk's (the filesystem driver fsyncs every blob and link it writes:
//! about 10 ms each on a virtual disk); `--storage disk` measures with a temporary folder.
//!
//! `--deliver registry` (default): the registry notifies the signer, one event at a time (its
//! notification queue is sequential), so throughput is bounded by 1 / (time per event) unless the
//! signer answers before signing (`--acknowledge queued`). It sends
//! pushes only (`ignore: actions: [pull]`, as the README configures it): with pull events, every
//! GET of the signer's and every poll of this harness would queue an event ahead of the next push.
//! `--deliver direct`: each pusher POSTs its push event itself and waits for the answer, as several
//! registry replicas (each with its own queue) would: the signer's own capacity.
//!
//! `--formats both|CosignSignature|SigstoreBundle` (default both): what the rule writes. The run
//! reports the signer's registry requests per signed image (its own client's count over the
//! one-at-a-time phase: each image in a new repository, then as many again into those
//! repositories, and over the burst), and, before the signed burst, pushes as many images out of
//! the rule's scope (nothing to sign) to report the ratio of signed to unsigned push throughput.
//!
//! `--burst-repositories N` (default 0): the bursts' images go into N repositories (the signed
//! burst into ones the one-at-a-time phase signed before), each under its own tag, as a CI pushes
//! new builds of existing images; 0 puts each image in a new repository of its own (one request
//! more per signed image: the empty config blob's mount).
//!
//! `--layers N --layer-bytes B` (default 1 layer of 72 bytes): what each pushed image holds, so
//! that the unsigned baseline can be a tiny image (the worst case for the ratio: its push costs
//! the registry least) or one shaped like a real image. `--recheck events|DURATION` (default
//! `events`, as `signet signer`): how the signer looks for another writer's overwrite; a
//! duration adds one `HEAD` per tag written that long after each signing.
//!
//! `--acknowledge signed|queued` (default `signed`, as `signet signer`): when the signer answers
//! an event; with `queued` it answers once the push is in its queue and signs afterwards (the
//! harness still counts an image signed only when its signature tags answer).
//!
//! `--key file` signs with an ECDSA P-256 key file; `--key pkcs11` with an ECDSA P-256 key on a
//! SoftHSM2 token created in a temporary folder (the process re-runs itself with `SOFTHSM2_CONF`).
//! Needs the Debian packages `docker-registry` (and `softhsm2` for pkcs11).
//!
//! `--key awskms` signs with an ECC_NIST_P256 key in moto (AWS KMS emulator), `--key alikms` with
//! an EC_P256 key in the tests' local Alibaba Cloud KMS endpoint (both PyPI-based, see
//! scripts/test-deps.sh); the process re-runs itself with the emulator's endpoint and credentials
//! in its environment, as the chart sets them. The KMS round trip is printed from the signer's
//! `kms_call_duration_seconds` metric.

// A load generator, not library code: a failed setup step ends the run with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod args;
mod keys;
mod push;
mod registry;
mod run;
mod watch;

use std::process::{Command, Stdio};

// The KMS emulators of the tests (`--key awskms|alikms`).
#[path = "../../tests/support/mod.rs"]
mod support;

/// The signer's bearer token, in the registry's notification config and in direct deliveries.
const TOKEN: &str = "load-token";

fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let args = args::args()?;
    if let Some(code) = keys::kms_parent(&args)? {
        std::process::exit(code);
    }
    if args.key == "pkcs11" && std::env::var_os("SOFTHSM2_CONF").is_none() {
        // The token must be configured before the module loads: run again with it set.
        let dir = tempfile::tempdir()?;
        let conf = keys::softhsm_token(dir.path())?;
        let status = Command::new(std::env::current_exe()?)
            .args(std::env::args().skip(1))
            .env("SOFTHSM2_CONF", conf)
            .stdin(Stdio::null())
            .status()?;
        std::process::exit(status.code().unwrap_or(1));
    }
    // `RUST_LOG=signet::registry::requests=trace` lists every registry request; the load
    // generator's own (pushes, polls) carry the span `loadgen`, the signer's do not.
    if let Ok(filter) = std::env::var("RUST_LOG") {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_writer(std::io::stderr)
            .init();
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run::run(args))
}
