//! The AWS SDKs' shared files: static access keys of one profile from the credentials file
//! (`AWS_SHARED_CREDENTIALS_FILE`, else `~/.aws/credentials`, sections `[NAME]`) and the config
//! file (`AWS_CONFIG_FILE`, else `~/.aws/config`, sections `[profile NAME]` and `[default]`); the
//! profile is `AWS_PROFILE`, else `default`. As in the SDKs, a key set in the credentials file
//! wins over the same key in the config file.
//!
//! Only static keys (`aws_access_key_id`, `aws_secret_access_key`, `aws_session_token`) are read:
//! a profile that names a role, SSO or a credential process instead is refused with one line
//! rather than skipped, so that a user who chose a profile never signs as someone else.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::credentials::{Credentials, env};
use super::transport::KmsError;

/// Settings that make a profile something other than static keys (not supported here).
const UNSUPPORTED: [&str; 5] = [
    "role_arn",
    "sso_session",
    "sso_start_url",
    "credential_process",
    "web_identity_token_file",
];

/// The profile's static keys, `None` when no shared file holds the profile and the profile was
/// not asked for by name (the chain goes on to the next source).
pub(super) fn profile_credentials() -> Result<Option<Credentials>, KmsError> {
    let named = env("AWS_PROFILE");
    let profile = named.clone().unwrap_or_else(|| "default".into());
    let home = env("HOME").map(PathBuf::from);
    let file = |variable: &str, default: &str| {
        env(variable)
            .map(PathBuf::from)
            .or_else(|| home.as_ref().map(|h| h.join(".aws").join(default)))
    };
    let credentials_file = file("AWS_SHARED_CREDENTIALS_FILE", "credentials");
    let config_file = file("AWS_CONFIG_FILE", "config");

    let mut settings: Option<BTreeMap<String, String>> = None;
    // Config first, then the credentials file over it.
    for (path, config) in [(&config_file, true), (&credentials_file, false)] {
        let Some(path) = path else { continue };
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => {
                return Err(KmsError::Credentials(format!(
                    "cannot read the AWS shared file {}: {e}",
                    path.display()
                )));
            }
        };
        if let Some(section) = section(&text, &profile, config) {
            settings.get_or_insert_with(BTreeMap::new).extend(section);
        }
    }
    let files = || {
        [&credentials_file, &config_file]
            .iter()
            .filter_map(|p| p.as_ref().map(|p| p.display().to_string()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let Some(settings) = settings else {
        return match named {
            Some(name) => Err(KmsError::Credentials(format!(
                "AWS_PROFILE {name:?} is in none of the AWS shared files ({})",
                files()
            ))),
            None => Ok(None),
        };
    };
    match (
        settings.get("aws_access_key_id"),
        settings.get("aws_secret_access_key"),
    ) {
        (Some(id), Some(secret)) if !id.is_empty() && !secret.is_empty() => Ok(Some(Credentials {
            access_key_id: id.clone(),
            secret: secret.clone(),
            token: settings
                .get("aws_session_token")
                .filter(|t| !t.is_empty())
                .cloned(),
            expires: None,
            source: "shared credentials file",
        })),
        (Some(_), _) => Err(KmsError::Credentials(format!(
            "AWS profile {profile:?} ({}) has aws_access_key_id but no aws_secret_access_key",
            files()
        ))),
        _ => {
            let other = UNSUPPORTED
                .iter()
                .find(|k| settings.contains_key(**k))
                .map(|k| format!(" (it uses {k}, which signet does not support)"))
                .unwrap_or_default();
            match (named, other.is_empty()) {
                // A default profile holding only a region or output format is no credential
                // source: the chain goes on.
                (None, true) => Ok(None),
                _ => Err(KmsError::Credentials(format!(
                    "AWS profile {profile:?} ({}) holds no access keys{other}",
                    files()
                ))),
            }
        }
    }
}

/// The `key = value` settings of `profile` in an INI text (`[profile NAME]` in the config file,
/// where `[default]` stays bare; `[NAME]` in the credentials file). Indented lines (sub-sections
/// such as `s3 =` blocks) and comments are skipped; keys are lower-cased, as the SDKs compare
/// them.
fn section(text: &str, profile: &str, config: bool) -> Option<BTreeMap<String, String>> {
    let wanted = |header: &str| {
        let header = header.trim();
        if config && profile != "default" {
            header
                .strip_prefix("profile")
                .filter(|rest| rest.starts_with([' ', '\t']))
                .is_some_and(|rest| rest.trim() == profile)
        } else {
            header == profile || (config && header == "profile default")
        }
    };
    let mut found: Option<BTreeMap<String, String>> = None;
    let mut inside = false;
    for line in text.lines() {
        if line.starts_with([' ', '\t']) {
            continue;
        }
        let line = line.trim();
        if line.is_empty() || line.starts_with(['#', ';']) {
            continue;
        }
        if let Some(header) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            inside = wanted(header);
            if inside {
                found.get_or_insert_with(BTreeMap::new);
            }
            continue;
        }
        if !inside {
            continue;
        }
        if let (Some((key, value)), Some(map)) = (line.split_once('='), found.as_mut()) {
            map.insert(key.trim().to_ascii_lowercase(), value.trim().to_string());
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    const CREDENTIALS: &str = "# a comment\n[default]\naws_access_key_id = AKIADEFAULT\n\
        aws_secret_access_key = s3cr3t-default\n\n[signer]\nAWS_ACCESS_KEY_ID=AKIASIGNER\n\
        aws_secret_access_key= s3cr3t-signer \naws_session_token = t0k3n\n";
    const CONFIG: &str = "[default]\nregion = eu-west-1\n[profile signer]\nregion = us-east-1\n\
        s3 =\n  max_concurrent_requests = 20\n[profile sso]\nsso_session = corp\n[signer]\n\
        aws_access_key_id = NOT-A-CONFIG-PROFILE\n";

    #[test]
    fn sections_follow_each_file_s_header_syntax() {
        let signer = section(CREDENTIALS, "signer", false).unwrap();
        assert_eq!(signer["aws_access_key_id"], "AKIASIGNER");
        assert_eq!(signer["aws_secret_access_key"], "s3cr3t-signer");
        assert_eq!(signer["aws_session_token"], "t0k3n");
        let default = section(CREDENTIALS, "default", false).unwrap();
        assert_eq!(default["aws_access_key_id"], "AKIADEFAULT");
        // In the config file, `[signer]` is not the profile `signer`; `[profile signer]` is.
        let config = section(CONFIG, "signer", true).unwrap();
        assert_eq!(config.get("aws_access_key_id"), None);
        assert_eq!(config["region"], "us-east-1");
        assert!(!config.contains_key("max_concurrent_requests"));
        assert_eq!(
            section(CONFIG, "default", true).unwrap()["region"],
            "eu-west-1"
        );
        assert!(
            section(CONFIG, "sso", true)
                .unwrap()
                .contains_key("sso_session")
        );
        assert!(section(CREDENTIALS, "missing", false).is_none());
    }
}
