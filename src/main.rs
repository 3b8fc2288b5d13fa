//! The `signet` command: parses flags, sets up logging, runs [`signet::cli::run`] and maps its
//! answer to an exit code (0 success, 1 verification failed, 2 usage, input or I/O error).
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;

use signet::cli::{Cli, GlobalArgs, LogFormat, Outcome};

/// mimalloc instead of glibc's malloc: a cached admission allocates and frees a few hundred small
/// objects (JSON, the answer), and glibc's allocator took 15% of the webhook's CPU in the load
/// test (`scripts/bench-vs-nginx.sh` with `PERF_RECORD`), with its arena consolidation on top.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn init_logging(global: &GlobalArgs) {
    use std::io::IsTerminal as _;
    let filter = tracing_subscriber::EnvFilter::try_new(&global.log)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    // Colour only for a person at a terminal: a log file or a collector gets plain text; the
    // NO_COLOR convention turns it off at a terminal too.
    let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour)
        .with_writer(std::io::stderr);
    match global.log_format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn main() -> ExitCode {
    // kube and reqwest both reach rustls; one process-wide provider avoids a panic at client build.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let cli = Cli::parse();
    init_logging(&cli.global);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let result = runtime.block_on(signet::cli::run(cli));
    // Tasks still running (watchers, reload loops) are dropped, not waited for; but the worker
    // threads are given a moment to finish dropping them. A task dropped on a worker thread while
    // the process exits can release a PKCS#11 or KMS client as the exit handlers of the same
    // libraries run: once in CI, `signet sign` with a SoftHSM key aborted at exit with glibc's
    // "double free or corruption". `shutdown_background` returned without waiting.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    match result {
        Ok(Outcome::Success) => ExitCode::SUCCESS,
        Ok(Outcome::NotVerified) => ExitCode::from(1),
        Err(e) => {
            // `{:#}` prints the message and its causes on one line: `message: cause: ...`.
            eprintln!("error: {:#}", anyhow::Error::from(e));
            ExitCode::from(2)
        }
    }
}
