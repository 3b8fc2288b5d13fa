//! `signet public-key --key REF --algorithm A`: prints the public key of any signing key signet
//! can open (a KMS key, a PKCS#11 token object, a key file) as SPKI PEM, to paste into an
//! Attestor. Opening a KMS key checks it can sign with the algorithm, as the signer does at start.

use std::path::PathBuf;

use clap::Args;

use super::{CliError, Outcome};
use crate::crypto::{self, Algorithm};

/// Flags of `signet public-key`.
#[derive(Args, Debug)]
pub struct PublicKeyArgs {
    /// Signing key: `awskms://[ENDPOINT]/KEY`, `alikms://KEY[/VERSION]?region=R`, `pkcs11:...`, or `file:PATH`.
    #[arg(long, env = "SIGNET_KEY")]
    pub key: String,
    /// Signature algorithm the key is to sign with (checked against what the key allows).
    #[arg(long, env = "SIGNET_ALGORITHM")]
    pub algorithm: Algorithm,
    /// Write the PEM to this file instead of standard output.
    #[arg(long, short = 'o', env = "SIGNET_PUBLIC_KEY_OUTPUT")]
    pub output: Option<PathBuf>,
}

/// Runs `signet public-key`.
pub async fn run(args: PublicKeyArgs) -> Result<Outcome, CliError> {
    let (reference, algorithm) = (args.key.clone(), args.algorithm);
    // Opening a KMS key or logging in to a token blocks: off the runtime's threads.
    let key =
        tokio::task::spawn_blocking(move || crypto::open_signing_key(&reference, algorithm, None))
            .await
            .map_err(|e| CliError::Usage(format!("opening the key failed: {e}")))??;
    let public = key.public_key();
    let pem = public.to_pem();
    match &args.output {
        Some(path) => std::fs::write(path, &pem).map_err(|source| CliError::File {
            what: "cannot write",
            path: path.clone(),
            source,
        })?,
        None => print!("{pem}"),
    }
    eprintln!(
        "{} {} {}",
        key.key_id(),
        public.algorithm(),
        public.fingerprint()
    );
    Ok(Outcome::Success)
}
