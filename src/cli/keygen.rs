//! `signet keygen`: a key pair in files, or a non-extractable key on a PKCS#11 token; with
//! `--certificate`, also a self-signed code-signing certificate for Notation signing.

use std::path::{Path, PathBuf};

use clap::Args;

use super::{CliError, Outcome};
use crate::crypto::{self, Algorithm};

/// Flags of `signet keygen`.
#[derive(Args, Debug)]
pub struct KeygenArgs {
    /// Signature algorithm the key is for (ECDSA P-256 by default, as cosign generates).
    #[arg(long, env = "SIGNET_ALGORITHM", default_value_t = Algorithm::EcdsaP256Sha256)]
    pub algorithm: Algorithm,
    /// Output prefix: writes PREFIX.key and PREFIX.pub.
    #[arg(short = 'o', long, env = "SIGNET_KEYGEN_OUTPUT")]
    pub output: PathBuf,
    /// RSA modulus size (2048, 3072, 4096); default 3072.
    #[arg(long, env = "SIGNET_KEYGEN_BITS")]
    pub bits: Option<u32>,
    /// Also write PREFIX.crt: a self-signed code-signing certificate for the key, meeting the
    /// Notary Project's leaf rules (for trying Notation signing; RSA keys default to 2048 bits).
    #[arg(
        long,
        env = "SIGNET_KEYGEN_CERTIFICATE",
        requires = "subject",
        conflicts_with = "pkcs11_token"
    )]
    pub certificate: bool,
    /// Subject of the certificate, e.g. "CN=release,O=acme,C=US".
    #[arg(long, env = "SIGNET_KEYGEN_SUBJECT", requires = "certificate")]
    pub subject: Option<String>,
    /// Validity of the certificate in days, from today (UTC).
    #[arg(long, env = "SIGNET_KEYGEN_CERTIFICATE_DAYS", default_value_t = 365)]
    pub certificate_days: u32,
    /// Where to create the key on a token instead of in a file.
    #[command(flatten)]
    pub pkcs11: Pkcs11KeygenArgs,
}

/// Where `keygen` creates a key on a PKCS#11 token instead of in a file.
#[derive(Args, Debug)]
pub struct Pkcs11KeygenArgs {
    /// Label of the PKCS#11 token to create the key on (the key never leaves it).
    #[arg(long, env = "SIGNET_PKCS11_TOKEN")]
    pub pkcs11_token: Option<String>,
    /// Label of the key objects to create.
    #[arg(long, env = "SIGNET_PKCS11_OBJECT", requires = "pkcs11_token")]
    pub pkcs11_object: Option<String>,
    /// PKCS#11 module.
    #[arg(long, env = "SIGNET_PKCS11_MODULE", default_value = crypto::DEFAULT_PKCS11_MODULE)]
    pub pkcs11_module: PathBuf,
    /// File holding the token's user PIN (or set SIGNET_PKCS11_PIN).
    #[arg(long, env = "SIGNET_PKCS11_PIN_FILE")]
    pub pkcs11_pin_file: Option<PathBuf>,
}

/// Runs `signet keygen`.
pub fn run(args: KeygenArgs) -> Result<Outcome, CliError> {
    if let Some(token) = &args.pkcs11.pkcs11_token {
        keygen_on_token(args.algorithm, args.bits, &args.output, token, &args.pkcs11)?;
        return Ok(Outcome::Success);
    }
    if let Some(subject) = args.subject.as_deref().filter(|_| args.certificate) {
        return keygen_with_certificate(&args, subject);
    }
    let key = crypto::generate_key_pair(args.algorithm, args.bits)?;
    let (private, public) = crypto::write_key_pair(&args.output, &key)?;
    println!(
        "private key: {}\npublic key: {}",
        private.display(),
        public.display()
    );
    Ok(Outcome::Success)
}

/// A key pair and its self-signed code-signing certificate (`PREFIX.crt`).
fn keygen_with_certificate(args: &KeygenArgs, subject: &str) -> Result<Outcome, CliError> {
    // Notary demands PS256 of an RSA-2048 key, PS384 of 3072 bits: signet's RSA_PSS_SHA_256
    // keys make PS256 only, so a Notation RSA key has 2048 bits.
    let bits = match (args.algorithm.is_rsa(), args.bits) {
        (true, None | Some(2048)) => Some(2048),
        (true, Some(other)) => {
            return Err(CliError::Usage(format!(
                "--certificate with an RSA key needs 2048 bits (Notary requires PS384 for {other} bits, which {} keys cannot make)",
                args.algorithm
            )));
        }
        (false, bits) => bits,
    };
    let mut certificate_path = args.output.as_os_str().to_owned();
    certificate_path.push(".crt");
    let certificate_path = PathBuf::from(certificate_path);
    if certificate_path.symlink_metadata().is_ok() {
        return Err(CliError::Usage(format!(
            "refusing to overwrite existing file {}",
            certificate_path.display()
        )));
    }
    let key = crypto::generate_key_pair(args.algorithm, bits)?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    let pem = crypto::x509::self_signed_code_signing_certificate(
        key.private_key_pem(),
        args.algorithm,
        subject,
        now,
        args.certificate_days,
    )?;
    let (private, public) = crypto::write_key_pair(&args.output, &key)?;
    write_new_file(&certificate_path, pem.as_bytes())?;
    println!(
        "private key: {}\npublic key: {}\ncertificate: {}",
        private.display(),
        public.display(),
        certificate_path.display()
    );
    Ok(Outcome::Success)
}

fn keygen_on_token(
    algorithm: Algorithm,
    bits: Option<u32>,
    output: &Path,
    token: &str,
    args: &Pkcs11KeygenArgs,
) -> Result<(), CliError> {
    let object = args.pkcs11_object.as_deref().ok_or_else(|| {
        CliError::Usage("--pkcs11-object names the key to create on the token".into())
    })?;
    // The PIN only from a file or the environment: never a flag, which `ps` would show.
    let pin = match (&args.pkcs11_pin_file, std::env::var("SIGNET_PKCS11_PIN")) {
        (Some(file), _) => std::fs::read_to_string(file)
            .map_err(|source| CliError::File {
                what: "cannot read PIN file",
                path: file.clone(),
                source,
            })?
            .trim_end_matches(['\r', '\n'])
            .to_string(),
        (None, Ok(pin)) => pin,
        (None, Err(_)) => {
            return Err(CliError::Usage(
                "the token's PIN is needed: --pkcs11-pin-file FILE or SIGNET_PKCS11_PIN".into(),
            ));
        }
    };
    let key =
        crypto::generate_on_token_sized(&args.pkcs11_module, token, &pin, object, algorithm, bits)?;
    let public = output.with_extension("pub");
    write_new_file(&public, key.public_key.to_pem().as_bytes())?;
    println!("key: {}\npublic key: {}", key.uri, public.display());
    Ok(())
}

/// Writes a file that must not exist yet.
fn write_new_file(path: &Path, bytes: &[u8]) -> Result<(), CliError> {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|source| CliError::File {
            what: "cannot create",
            path: path.to_path_buf(),
            source,
        })?;
    file.write_all(bytes).map_err(|source| CliError::File {
        what: "cannot write",
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::super::{Cli, Command};
    use super::*;

    #[test]
    fn keygen_defaults_to_p256_and_takes_dash_o() {
        let cli = Cli::try_parse_from(["signet", "keygen", "-o", "release"]);
        let Ok(Cli {
            command: Command::Keygen(args),
            ..
        }) = cli
        else {
            panic!("keygen -o parses");
        };
        assert_eq!(args.algorithm, Algorithm::EcdsaP256Sha256);
        assert_eq!(args.output, PathBuf::from("release"));
    }
}
