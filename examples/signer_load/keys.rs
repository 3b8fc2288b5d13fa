//! The key the signer signs with (`--key file|pkcs11|awskms|alikms`), and what it needs before
//! the run starts: a SoftHSM2 token, or a KMS emulator whose endpoint the process re-runs with.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, bail};
use signet::crypto::Algorithm;

use crate::args::Args;
use crate::support;

/// A SoftHSM2 token in a temporary folder; returns the config path.
pub fn softhsm_token(dir: &Path) -> anyhow::Result<PathBuf> {
    let tokens = dir.join("tokens");
    std::fs::create_dir_all(&tokens)?;
    let conf = dir.join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\n",
            tokens.display()
        ),
    )?;
    let init = Command::new("softhsm2-util")
        .args([
            "--init-token",
            "--free",
            "--label",
            "load",
            "--pin",
            "1234",
            "--so-pin",
            "5678",
        ])
        .env("SOFTHSM2_CONF", &conf)
        .output()
        .context("softhsm2-util (Debian package softhsm2)")?;
    if !init.status.success() {
        bail!("softhsm2-util: {}", String::from_utf8_lossy(&init.stderr));
    }
    Ok(conf)
}

/// The key reference to sign with.
pub fn key_reference(kind: &str, dir: &Path) -> anyhow::Result<String> {
    match kind {
        "file" => {
            let key = signet::crypto::generate_key_pair(Algorithm::EcdsaP256Sha256, None)?;
            let (private, _) = signet::crypto::write_key_pair(&dir.join("load"), &key)?;
            Ok(format!("file:{}", private.display()))
        }
        "pkcs11" => {
            let pin = dir.join("pin");
            std::fs::write(&pin, "1234\n")?;
            signet::crypto::generate_on_token(
                Path::new(signet::crypto::DEFAULT_PKCS11_MODULE),
                "load",
                "1234",
                "load",
                Algorithm::EcdsaP256Sha256,
            )?;
            // SigningRules may not carry the PIN: it is the signer's setting
            // (`--pkcs11-pin-file` on `signet signer`).
            signet::signer::set_pkcs11_settings(signet::signer::Pkcs11Settings {
                module: None,
                pin_file: Some(pin),
            });
            Ok("pkcs11:token=load;object=load".to_string())
        }
        // Cloud KMS (issue 12): endpoint and credentials are in this process's environment,
        // set by `kms_parent`.
        "awskms" => Ok("awskms:///alias/ec".to_string()),
        "alikms" => Ok("alikms://key-ec?region=cn-hangzhou".to_string()),
        other => bail!("--key file|pkcs11|awskms|alikms, not {other}"),
    }
}

/// For `--key awskms|alikms`: starts the emulator and runs this program again with its endpoint
/// and credentials in the environment; `None` when this is that second run (or no KMS key).
pub fn kms_parent(args: &Args) -> anyhow::Result<Option<i32>> {
    if std::env::var_os("SIGNET_LOAD_KMS").is_some() {
        return Ok(None);
    }
    let rerun = |env: Vec<(&str, String)>| -> anyhow::Result<i32> {
        let status = Command::new(std::env::current_exe()?)
            .args(std::env::args().skip(1))
            .envs(env)
            .env("SIGNET_LOAD_KMS", "1")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("ALIBABA_CLOUD_ECS_METADATA_DISABLED", "true")
            .stdin(Stdio::null())
            .status()?;
        Ok(status.code().unwrap_or(1))
    };
    match args.key.as_str() {
        "awskms" => {
            let moto = support::moto::Moto::start();
            let mut env = moto.env();
            env.push(("AWS_ENDPOINT_URL_KMS", moto.url()));
            rerun(env).map(Some)
        }
        "alikms" => {
            let kms = support::alikms::AliKms::start();
            let mut env = kms.env();
            env.push(("SIGNET_ALIBABA_KMS_ENDPOINT", kms.endpoint()));
            rerun(env).map(Some)
        }
        _ => Ok(None),
    }
}
