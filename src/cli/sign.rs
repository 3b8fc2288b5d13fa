//! `signet sign`: one image with one key (`sign IMAGE --key K [--algorithm A]`), or every image the
//! Automatic SigningRules of a folder cover (`sign --backfill --policy-dir DIR`). Which of the two
//! is decided by clap ([`SignTarget`]): a mix of both is a usage error before anything runs.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use clap::{ArgMatches, Args, FromArgMatches};

use super::{CliError, Outcome, TypeArg};
use crate::crypto::{self, Algorithm, SigningKey};
use crate::reference::ImageRef;
use crate::registry::{
    AppendOutcome, NotationSigner, RegistryClient, RegistryOptions, SignatureStore,
};
use crate::signature::SignatureFormat;
use crate::signature::notation::EnvelopeFormat;

/// Flags of `signet sign`.
#[derive(Args, Debug)]
pub struct SignArgs {
    /// One image, or `--backfill`.
    #[command(flatten)]
    pub target: SignTarget,
    /// Key id shown in verdicts (default: file name or token object label).
    #[arg(long, env = "SIGNET_KEY_ID")]
    pub key_id: Option<String>,
    /// default: bind digest and tag; simple: the digest only.
    #[arg(long = "type", env = "SIGNET_SIGNATURE_TYPE", value_enum, default_value_t = TypeArg::Default)]
    pub signature_type: TypeArg,
    /// Signature formats to write: CosignSignature (the `.sig` tag, cosign v2), SigstoreBundle
    /// (an OCI 1.1 referrer, cosign v3 and v4), Notation (an OCI 1.1 referrer, notation and
    /// Ratify; needs --certificate-chain); comma-separated or repeated. Default: the first two.
    #[arg(
        long = "format",
        env = "SIGNET_SIGNATURE_FORMATS",
        value_delimiter = ',',
        default_values_t = crate::signature::SignatureFormat::ALL
    )]
    pub formats: Vec<crate::signature::SignatureFormat>,
    /// Extra claims for the payload's `optional` section, as key=value; repeatable.
    #[arg(
        long = "annotation",
        visible_alias = "annotations",
        short = 'a',
        env = "SIGNET_ANNOTATIONS",
        value_delimiter = ','
    )]
    pub annotations: Vec<String>,
}

/// What `sign` signs. clap refuses a mix (an image with `--backfill`, `--backfill` without
/// `--policy-dir`, an image without `--key`) before this is built, so each variant carries
/// exactly what its flow needs.
#[derive(Debug)]
pub enum SignTarget {
    /// `sign IMAGE --key K --algorithm A`.
    Image(OneImage),
    /// `sign --backfill --policy-dir DIR`.
    Backfill(Backfill),
}

/// One image and the key to sign it with (and its algorithm, unless the key decides it).
#[derive(Args, Debug)]
pub struct OneImage {
    /// Image reference (tag or digest).
    #[arg(required = false, required_unless_present = "backfill")]
    pub image: String,
    /// Signing key: `file:PATH` (PKCS#8 PEM), a `pkcs11:` URI, `awskms://[ENDPOINT]/KEY` or `alikms://KEY[/VERSION]?region=R`.
    #[arg(
        long,
        env = "SIGNET_KEY",
        required = false,
        required_unless_present = "backfill"
    )]
    pub key: String,
    /// Signature algorithm; default: the one an EC or Ed25519 key implies (an RSA key needs
    /// RSA_PSS_SHA_256 or RSA_PKCS1_SHA_256 named).
    #[arg(long, env = "SIGNET_ALGORITHM")]
    pub algorithm: Option<Algorithm>,
    /// PEM file of the key's X.509 certificate chain, leaf first (a self-signed leaf from
    /// `signet keygen --certificate`, or leaf, intermediates, root): for `--format notation`.
    #[arg(long, env = "SIGNET_CERTIFICATE_CHAIN")]
    pub certificate_chain: Option<PathBuf>,
    /// Envelope of Notation signatures: jws (notation's default) or cose.
    #[arg(long, env = "SIGNET_NOTATION_ENVELOPE", value_enum, default_value_t = EnvelopeArg::Jws)]
    pub notation_envelope: EnvelopeArg,
}

/// `--notation-envelope`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum EnvelopeArg {
    /// JWS flattened JSON (`application/jose+json`).
    Jws,
    /// COSE_Sign1 (`application/cose`).
    Cose,
}

impl From<EnvelopeArg> for EnvelopeFormat {
    fn from(arg: EnvelopeArg) -> Self {
        match arg {
            EnvelopeArg::Jws => EnvelopeFormat::Jws,
            EnvelopeArg::Cose => EnvelopeFormat::Cose,
        }
    }
}

/// The key with its certificate chain when `formats` asks for Notation; checked together
/// before any request (a key that is not the leaf's, or an algorithm Notary refuses for it).
fn notation_signer(
    one: &OneImage,
    key: &Arc<dyn SigningKey>,
    formats: &[SignatureFormat],
) -> Result<Option<Arc<NotationSigner>>, CliError> {
    if !formats.contains(&SignatureFormat::Notation) {
        // A chain given for nothing would leave the user believing a Notation signature exists.
        return match &one.certificate_chain {
            Some(_) => Err(CliError::Usage(
                "--certificate-chain is for --format notation, which was not asked for".into(),
            )),
            None => Ok(None),
        };
    }
    let Some(path) = &one.certificate_chain else {
        return Err(CliError::Usage(
            "--format notation needs --certificate-chain (PEM, leaf first)".into(),
        ));
    };
    let pem = std::fs::read_to_string(path).map_err(|source| CliError::File {
        what: "cannot read certificate chain",
        path: path.clone(),
        source,
    })?;
    NotationSigner::new(Arc::clone(key), &pem, one.notation_envelope.into())
        .map(|signer| Some(Arc::new(signer)))
        .map_err(|e| CliError::Usage(format!("--certificate-chain {}: {e}", path.display())))
}

/// Signing what a folder's rules cover.
#[derive(Args, Debug)]
pub struct Backfill {
    /// Sign what the SigningRules of --policy-dir cover (list repositories and tags) instead of
    /// one image.
    #[arg(long, requires = "policy_dir", conflicts_with_all = ["image", "key", "algorithm"])]
    pub backfill: bool,
    /// Folder of SigningRule YAML documents (with --backfill).
    #[arg(long, env = "SIGNET_POLICY_DIR", required = false)]
    pub policy_dir: PathBuf,
}

impl FromArgMatches for SignTarget {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        if matches.get_flag("backfill") {
            Backfill::from_arg_matches(matches).map(SignTarget::Backfill)
        } else {
            OneImage::from_arg_matches(matches).map(SignTarget::Image)
        }
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(matches)?;
        Ok(())
    }
}

impl Args for SignTarget {
    fn augment_args(cmd: clap::Command) -> clap::Command {
        Backfill::augment_args(OneImage::augment_args(cmd))
    }

    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        Backfill::augment_args_for_update(OneImage::augment_args_for_update(cmd))
    }
}

/// Runs `signet sign`.
pub async fn run(args: SignArgs, registry: &RegistryOptions) -> Result<Outcome, CliError> {
    match args.target {
        SignTarget::Backfill(backfill) => {
            let report = crate::signer::backfill(
                &backfill.policy_dir,
                registry,
                crate::signer::SignerOptions::default(),
            )
            .await?;
            println!("{}", report.summary());
            for failure in &report.failures {
                eprintln!("failed: {failure}");
            }
            if !report.failures.is_empty() {
                return Err(CliError::Reported(format!(
                    "backfill left {} failures",
                    report.failures.len()
                )));
            }
            Ok(Outcome::Success)
        }
        SignTarget::Image(one) => {
            let image = ImageRef::parse(&one.image)?;
            let annotations = parse_annotations(&args.annotations)?;
            let key =
                crypto::open_signing_key_inferred(&one.key, one.algorithm, args.key_id.as_deref())?;
            let notation = notation_signer(&one, &key, &args.formats)?;
            let store = SignatureStore::new(RegistryClient::new(registry)?);
            let signed = crate::registry::sign_image_with(
                &store,
                &image,
                key,
                notation,
                args.signature_type.into(),
                &annotations,
                &args.formats,
            )
            .await?;
            // The digest, then one line per format: where the signature is.
            println!("{}", signed.digest);
            for written in &signed.formats {
                let note = match written.outcome {
                    AppendOutcome::Added => "",
                    AppendOutcome::AlreadyPresent => ", already present",
                };
                println!("{} ({}{note})", written.reference, written.format);
            }
            Ok(Outcome::Success)
        }
    }
}

/// `key=value` pairs; an empty key or a missing `=` is refused.
pub(super) fn parse_annotations(pairs: &[String]) -> Result<BTreeMap<String, String>, CliError> {
    pairs
        .iter()
        .map(|p| match p.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => Err(CliError::Usage(format!(
                "annotation {p:?} is not key=value"
            ))),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::super::{Cli, Command};
    use super::*;

    fn parse(args: &[&str]) -> Result<SignTarget, clap::Error> {
        let cli = Cli::try_parse_from(std::iter::once("signet").chain(args.iter().copied()))?;
        match cli.command {
            Command::Sign(sign) => Ok(sign.target),
            other => panic!("not sign: {other:?}"),
        }
    }

    #[test]
    fn clap_chooses_one_image_or_backfill() {
        let one = parse(&[
            "sign",
            "r.example/a:v1",
            "--key",
            "file:k",
            "--algorithm",
            "ED25519",
        ]);
        assert!(matches!(one, Ok(SignTarget::Image(ref o)) if o.image == "r.example/a:v1"));
        // The key decides the algorithm when it can (checked when the key is opened).
        let inferred = parse(&["sign", "r.example/a:v1", "--key", "file:k"]);
        assert!(matches!(inferred, Ok(SignTarget::Image(ref o)) if o.algorithm.is_none()));
        let backfill = parse(&["sign", "--backfill", "--policy-dir", "/p"]);
        assert!(
            matches!(backfill, Ok(SignTarget::Backfill(ref b)) if b.policy_dir == std::path::Path::new("/p"))
        );
        for bad in [
            &["sign"][..],
            &["sign", "--backfill"],
            &["sign", "r.example/a:v1"],
            &["sign", "r.example/a:v1", "--backfill", "--policy-dir", "/p"],
            &[
                "sign",
                "--backfill",
                "--policy-dir",
                "/p",
                "--key",
                "file:k",
            ],
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn annotations_are_key_value() {
        let ok = parse_annotations(&["a=b".into(), "c=".into()]);
        assert_eq!(ok.ok().map(|m| m.len()), Some(2));
        assert!(parse_annotations(&["=b".into()]).is_err());
        assert!(parse_annotations(&["ab".into()]).is_err());
    }
}
