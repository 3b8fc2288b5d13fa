//! `signet verify IMAGE...`: checks one or many images, concurrently over one registry client,
//! against keys (`--key` for cosign formats, `--certificate` trust anchors for Notation
//! signatures, or both) or as admission would (`--policy-dir`). Which of the two is decided by
//! clap ([`VerifyAgainst`]). One result per image, in the order given (text), or one JSON
//! document (`--output json`: an object for one image, an array for several).
//!
//! Signatures are read in stages (the store that can settle the verdict first, the other only
//! when needed: [`super::verify_staged`]); `--all-signatures` reads every one.
//!
//! Exit: 0 every image verified (allowed); 1 one was not (denied); 2 one could not be checked
//! (registry unreachable, bad folder, bad reference), reported on stderr as `error: ...`.

use std::path::PathBuf;

use clap::{ArgMatches, Args, FromArgMatches};
use futures::StreamExt as _;
use serde::Serialize;

use super::sign::parse_annotations;
use super::verify_keys::{Against, KeyVerification, RequiredAnnotations, verify_reading};
use super::verify_policy::{PolicyVerification, load_snapshot, verify_with_policies};
use super::{CliError, NoMatchArg, Outcome, OutputFormat, TypeArg};
use crate::crypto::x509::TrustStore;
use crate::crypto::{Algorithm, CryptoError, PublicKey};
use crate::policy::EngineOptions;
use crate::reference::ImageRef;
use crate::registry::{RegistryClient, RegistryError, RegistryOptions, SignatureStore};

/// Flags of `signet verify`.
#[derive(Args, Debug)]
pub struct VerifyArgs {
    /// Image references (tag or digest); several are verified concurrently.
    #[arg(required = true, num_args = 1..)]
    pub images: Vec<String>,
    /// Keys, or a policy folder.
    #[command(flatten)]
    pub against: VerifyAgainst,
    /// default: the signature must bind the tag too; simple: the digest only.
    #[arg(long = "type", env = "SIGNET_SIGNATURE_TYPE", value_enum, default_value_t = TypeArg::Default)]
    pub signature_type: TypeArg,
    /// Output format.
    #[arg(short = 'o', long, env = "SIGNET_OUTPUT", value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
    /// Images looked up at once.
    #[arg(long, env = "SIGNET_VERIFY_CONCURRENCY", default_value_t = 16)]
    pub concurrency: usize,
}

/// What the images are verified against; clap refuses `--key`/`--certificate` with
/// `--policy-dir`, and requires one of them.
#[derive(Debug)]
pub enum VerifyAgainst {
    /// `--key K --algorithm A` and/or `--certificate ROOTS.pem`.
    Keys(KeyArgs),
    /// `--policy-dir DIR [--namespace NS] [--no-match M]`.
    Policies(PolicyArgs),
}

/// A public key, and what its signatures must say.
#[derive(Args, Debug)]
pub struct KeyArgs {
    /// Public key (PEM: SPKI or PKCS#1): verifies cosign signatures (`.sig` tag, bundles).
    #[arg(
        long,
        env = "SIGNET_PUBLIC_KEY",
        required = false,
        required_unless_present_any = ["policy_dir", "certificate"],
        conflicts_with = "policy_dir"
    )]
    pub key: Option<PathBuf>,
    /// Trust anchors (PEM bundle of root or CA certificates): verifies Notation signatures,
    /// whose certificate chain must reach one of them. Revocation is not checked.
    #[arg(
        long,
        env = "SIGNET_CERTIFICATE",
        required = false,
        conflicts_with = "policy_dir"
    )]
    pub certificate: Option<PathBuf>,
    /// With --certificate: a signer the anchors vouch for must also match this identity, as
    /// Notation's trust policy writes it (`x509.subject: CN=...,O=...`). Repeatable; none means
    /// any signer under the anchors.
    #[arg(
        long = "trusted-identity",
        env = "SIGNET_TRUSTED_IDENTITIES",
        value_delimiter = ';',
        requires = "certificate"
    )]
    pub trusted_identities: Vec<String>,
    /// With --certificate: PEM roots of the RFC 3161 timestamping authorities trusted to prove
    /// the signing time, as an Attestor key's `tsaCertificates`: a signature whose certificate
    /// has expired since counts when a timestamp from one of them shows it was made in time.
    #[arg(
        long = "tsa-certificate",
        env = "SIGNET_TSA_CERTIFICATE",
        requires = "certificate"
    )]
    pub tsa_certificate: Option<PathBuf>,
    /// Signature algorithm of the key; default: the one an EC or Ed25519 key implies (an RSA key
    /// needs RSA_PSS_SHA_256 or RSA_PKCS1_SHA_256 named).
    #[arg(long, env = "SIGNET_ALGORITHM")]
    pub algorithm: Option<Algorithm>,
    /// Annotation the signed payload must carry, as key=value (cosign's `verify -a`); a
    /// signature without it, or with another value, does not count. Repeatable.
    #[arg(
        long = "annotation",
        visible_alias = "annotations",
        short = 'a',
        env = "SIGNET_VERIFY_ANNOTATIONS",
        value_delimiter = ',',
        conflicts_with = "policy_dir"
    )]
    pub annotations: Vec<String>,
    /// Read every store of signatures (the `.sig` tag and the referrers) and report each
    /// signature, even when one read first already verifies (by default the second store is
    /// read only when needed, and the report names the formats not read).
    #[arg(
        long = "all-signatures",
        env = "SIGNET_VERIFY_ALL_SIGNATURES",
        conflicts_with = "policy_dir"
    )]
    pub all_signatures: bool,
}

/// A policy folder and where the images would run.
#[derive(Args, Debug)]
pub struct PolicyArgs {
    /// Folder of policy YAML (Attestors, policies, Namespaces): verify against every policy
    /// that governs each image in --namespace.
    #[arg(long, env = "SIGNET_POLICY_DIR", required = false)]
    pub policy_dir: PathBuf,
    /// Namespace the images would run in (with --policy-dir).
    #[arg(
        long,
        env = "SIGNET_NAMESPACE",
        default_value = "default",
        requires = "policy_dir"
    )]
    pub namespace: String,
    /// What happens to an image no policy matches (with --policy-dir).
    #[arg(long, env = "SIGNET_NO_MATCH", value_enum, default_value_t = NoMatchArg::Allow)]
    pub no_match: NoMatchArg,
}

impl FromArgMatches for VerifyAgainst {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        if matches.contains_id("policy_dir") {
            PolicyArgs::from_arg_matches(matches).map(VerifyAgainst::Policies)
        } else {
            KeyArgs::from_arg_matches(matches).map(VerifyAgainst::Keys)
        }
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(matches)?;
        Ok(())
    }
}

impl Args for VerifyAgainst {
    fn augment_args(cmd: clap::Command) -> clap::Command {
        PolicyArgs::augment_args(KeyArgs::augment_args(cmd))
    }

    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        PolicyArgs::augment_args_for_update(KeyArgs::augment_args_for_update(cmd))
    }
}

/// One image's answer in a JSON array: its result, or why it could not be checked.
#[derive(Serialize)]
#[serde(untagged)]
enum Entry<T> {
    Done(T),
    Failed { image: String, error: String },
}

/// A message and its chain of causes, `a: b: c`, as `main` prints errors.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let next = cause.to_string();
        if !text.ends_with(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = cause.source();
    }
    text
}

/// Runs `signet verify`.
pub async fn run(args: VerifyArgs, registry: &RegistryOptions) -> Result<Outcome, CliError> {
    // Every reference is checked before the first request: a typo is a usage error, not a
    // half-done run.
    let images = args
        .images
        .iter()
        .map(|text| ImageRef::parse(text))
        .collect::<Result<Vec<_>, _>>()?;
    let concurrency = args.concurrency.max(1);
    match args.against {
        VerifyAgainst::Keys(keys) => {
            let public = match &keys.key {
                Some(path) => vec![read_public_key(path, keys.algorithm)?],
                None => Vec::new(),
            };
            let trust = match &keys.certificate {
                Some(path) => vec![read_trust(
                    path,
                    &keys.trusted_identities,
                    keys.tsa_certificate.as_ref(),
                )?],
                None => Vec::new(),
            };
            let trust: Vec<&TrustStore> = trust.iter().collect();
            let required = RequiredAnnotations(parse_annotations(&keys.annotations)?);
            let store = SignatureStore::new(RegistryClient::new(registry)?);
            let signature_type = args.signature_type.into();
            let against = Against {
                signature_type,
                keys: &public,
                trust: &trust,
                required: &required,
            };
            let every_store = keys.all_signatures;
            let results = futures::stream::iter(images.iter())
                .map(|image| verify_reading(&store, image, &against, every_store))
                .buffered(concurrency);
            report_keys(&images, results, args.output).await
        }
        VerifyAgainst::Policies(policies) => {
            let options = EngineOptions {
                no_match: policies.no_match.into(),
            };
            let snapshot = load_snapshot(&policies.policy_dir, options)?;
            let store = SignatureStore::new(RegistryClient::new(registry)?);
            let namespace = policies.namespace.as_str();
            let results = futures::stream::iter(images.iter())
                .map(|image| verify_with_policies(&store, &snapshot, namespace, image))
                .buffered(concurrency);
            report_policies(images.len(), results, args.output).await
        }
    }
}

/// The public key at `path`, its algorithm named or implied.
fn read_public_key(path: &PathBuf, algorithm: Option<Algorithm>) -> Result<PublicKey, CliError> {
    let pem = std::fs::read_to_string(path).map_err(|source| CliError::File {
        what: "cannot read public key",
        path: path.clone(),
        source,
    })?;
    let source = format!("public key {}", path.display());
    PublicKey::from_pem_inferred(&pem, algorithm, &source).map_err(|source| match source {
        // Already names the file.
        CryptoError::AlgorithmNotImplied { .. } => CliError::Crypto(source),
        source => CliError::PublicKey {
            path: path.clone(),
            source,
        },
    })
}

/// The trust anchors at `path`, the trusted identities and the TSA roots at `tsa`, as an
/// Attestor's `certificates` key.
fn read_trust(
    path: &PathBuf,
    identities: &[String],
    tsa: Option<&PathBuf>,
) -> Result<TrustStore, CliError> {
    let read = |path: &PathBuf, what| {
        std::fs::read_to_string(path).map_err(|source| CliError::File {
            what,
            path: path.clone(),
            source,
        })
    };
    let pem = read(path, "cannot read trust anchors")?;
    let tsa_pem = tsa
        .map(|tsa| read(tsa, "cannot read TSA roots"))
        .transpose()?;
    TrustStore::new(&pem, identities, tsa_pem.as_deref()).map_err(|e| {
        let flags = match tsa {
            Some(tsa) => format!(" / --tsa-certificate {}", tsa.display()),
            None => String::new(),
        };
        CliError::Usage(format!("--certificate {}{flags}: {e}", path.display()))
    })
}

/// Prints key verifications as they complete (in the order given); decides the exit.
async fn report_keys(
    images: &[ImageRef],
    results: impl futures::Stream<Item = Result<KeyVerification, RegistryError>>,
    output: OutputFormat,
) -> Result<Outcome, CliError> {
    let single = images.len() == 1;
    let mut results = std::pin::pin!(results);
    let mut entries = Vec::new();
    let (mut failed, mut errors) = (0usize, Vec::new());
    let mut index = 0usize;
    while let Some(result) = results.next().await {
        let image = images
            .get(index)
            .map(ToString::to_string)
            .unwrap_or_default();
        index += 1;
        match result {
            Ok(verdict) => {
                if !verdict.verified {
                    failed += 1;
                }
                match output {
                    OutputFormat::Text => print!("{}", verdict.to_text()),
                    OutputFormat::Json => entries.push(Entry::Done(verdict)),
                }
            }
            // One image: the error is the command's error, exactly as before several were taken.
            Err(e) if single => return Err(e.into()),
            Err(e) => {
                let error = chain(&e);
                if output == OutputFormat::Text {
                    eprintln!("error: {image}: {error}");
                }
                errors.push(image.clone());
                entries.push(Entry::Failed { image, error });
            }
        }
    }
    print_json(output, entries)?;
    finish(images.len(), failed, errors)
}

/// Prints policy verdicts as they complete (in the order given); decides the exit.
async fn report_policies(
    count: usize,
    results: impl futures::Stream<Item = PolicyVerification>,
    output: OutputFormat,
) -> Result<Outcome, CliError> {
    let mut results = std::pin::pin!(results);
    let mut entries = Vec::new();
    let (mut denied, mut errors) = (0usize, Vec::new());
    while let Some(verification) = results.next().await {
        if !verification.verdict.allowed {
            denied += 1;
        }
        if let (Some(reason), false) = (&verification.lookup_error, verification.verdict.allowed) {
            let message = format!("registry look-up failed: {reason}");
            if count > 1 {
                eprintln!("error: {}: {message}", verification.verdict.image);
            }
            errors.push(message);
        }
        match output {
            OutputFormat::Text => print!("{}", verification.to_text()),
            OutputFormat::Json => entries.push(Entry::<PolicyVerification>::Done(verification)),
        }
    }
    print_json(output, entries)?;
    if count == 1
        && let Some(message) = errors.pop()
    {
        return Err(CliError::Reported(message));
    }
    finish(count, denied, errors)
}

fn print_json<T: Serialize>(output: OutputFormat, entries: Vec<Entry<T>>) -> Result<(), CliError> {
    if output != OutputFormat::Json {
        return Ok(());
    }
    let text = match <[Entry<T>; 1]>::try_from(entries) {
        Ok([one]) => serde_json::to_string_pretty(&one)?,
        Err(many) => serde_json::to_string_pretty(&many)?,
    };
    println!("{text}");
    Ok(())
}

/// 2 when an image could not be checked, else 1 when one failed, else 0.
fn finish(count: usize, failed: usize, errors: Vec<String>) -> Result<Outcome, CliError> {
    if !errors.is_empty() {
        return Err(CliError::Reported(format!(
            "{} of {count} images could not be checked",
            errors.len()
        )));
    }
    Ok(if failed == 0 {
        Outcome::Success
    } else {
        Outcome::NotVerified
    })
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::super::{Cli, Command};
    use super::*;

    fn parse(args: &[&str]) -> Result<VerifyArgs, clap::Error> {
        let cli = Cli::try_parse_from(std::iter::once("signet").chain(args.iter().copied()))?;
        match cli.command {
            Command::Verify(verify) => Ok(verify),
            other => panic!("not verify: {other:?}"),
        }
    }

    #[test]
    fn clap_chooses_keys_or_policies() {
        let keys = parse(&[
            "verify",
            "a/b:1",
            "c/d:2",
            "--key",
            "k.pub",
            "--algorithm",
            "ED25519",
        ]);
        assert!(
            matches!(keys, Ok(VerifyArgs { ref images, against: VerifyAgainst::Keys(_), .. }) if images.len() == 2)
        );
        let policies = parse(&["verify", "a/b:1", "--policy-dir", "/p", "--namespace", "n"]);
        assert!(matches!(
            policies,
            Ok(VerifyArgs { against: VerifyAgainst::Policies(ref p), .. }) if p.namespace == "n"
        ));
        // cosign's habits: the key decides the algorithm, -o for the output, -a for annotations.
        let short = parse(&[
            "verify",
            "a/b:1",
            "--key",
            "k.pub",
            "-o",
            "json",
            "-a",
            "env=prod",
            "--annotations",
            "team=a,ci=yes",
        ]);
        let Ok(short) = short else {
            panic!("{short:?}");
        };
        assert_eq!(short.output, OutputFormat::Json);
        match &short.against {
            VerifyAgainst::Keys(k) => {
                assert_eq!(k.algorithm, None);
                assert_eq!(k.annotations, ["env=prod", "team=a", "ci=yes"]);
            }
            other => panic!("{other:?}"),
        }
        for bad in [
            &["verify"][..],
            &["verify", "a/b:1"],
            &["verify", "a/b:1", "--policy-dir", "/p", "-a", "env=prod"],
            &[
                "verify",
                "a/b:1",
                "--key",
                "k.pub",
                "--algorithm",
                "ED25519",
                "--policy-dir",
                "/p",
            ],
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn exit_follows_the_worst_image() {
        assert_eq!(finish(2, 0, vec![]).ok(), Some(Outcome::Success));
        assert_eq!(finish(2, 1, vec![]).ok(), Some(Outcome::NotVerified));
        assert!(finish(2, 1, vec!["x".into()]).is_err());
    }
}
