//! Registry credentials: docker `config.json` parsing and docker's host matching.
//!
//! The same parser reads `--registry-config`, `$DOCKER_CONFIG/config.json`,
//! `~/.docker/config.json` (the first that applies, as docker looks) and the
//! `.dockerconfigjson` / `.dockercfg` payloads of Kubernetes `imagePullSecrets`, so it accepts
//! both the `{"auths": {...}}` layout and the older flat map of hosts.
//!
//! Credential helpers (`credHelpers` per registry, `credsStore` for all others) are honoured in
//! files only ([`DockerConfig::from_file`]): they name programs to run, and a Secret in a
//! namespace must not choose what runs in the webhook. They are resolved per request by the
//! client (`cred_helper`), as docker does: `credHelpers[host]`, else `credsStore`, else the
//! file's own `auths` entry (also used when the store has nothing for the host).

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use serde::Deserialize;

use super::error::RegistryError;

/// The key docker writes for Docker Hub credentials.
pub const DOCKER_HUB_CONFIG_KEY: &str = "https://index.docker.io/v1/";

/// Host names that all mean Docker Hub.
const DOCKER_HUB_HOSTS: [&str; 3] = ["docker.io", "index.docker.io", "registry-1.docker.io"];

/// One registry's credentials.
#[derive(Clone, PartialEq, Eq)]
pub enum Credential {
    /// User name and password (or personal access token): HTTP Basic, or sent to the token service.
    Basic {
        /// The user name (`auth` before the colon, or `username`).
        username: String,
        /// The password or access token; `Debug` redacts it.
        password: String,
    },
    /// An OAuth2 refresh token (`identitytoken`), exchanged at the token service for access tokens.
    IdentityToken {
        /// The refresh token; `Debug` redacts it.
        token: String,
    },
    /// A ready bearer token for the registry itself (`registrytoken`).
    RegistryToken {
        /// The bearer token; `Debug` redacts it.
        token: String,
    },
}

impl Credential {
    /// A stable identity for cache keys: credentials never appear in keys, only this hash.
    pub(crate) fn fingerprint(&self) -> String {
        use sha2::Digest as _;
        let mut hasher = sha2::Sha256::new();
        match self {
            Credential::Basic { username, password } => {
                hasher.update(b"basic\0");
                hasher.update(username.as_bytes());
                hasher.update(b"\0");
                hasher.update(password.as_bytes());
            }
            Credential::IdentityToken { token } => {
                hasher.update(b"identity\0");
                hasher.update(token.as_bytes());
            }
            Credential::RegistryToken { token } => {
                hasher.update(b"registry\0");
                hasher.update(token.as_bytes());
            }
        }
        hex::encode(&hasher.finalize()[..16])
    }
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credential::Basic { username, .. } => f
                .debug_struct("Basic")
                .field("username", username)
                .field("password", &"<redacted>")
                .finish(),
            Credential::IdentityToken { .. } => f.write_str("IdentityToken(<redacted>)"),
            Credential::RegistryToken { .. } => f.write_str("RegistryToken(<redacted>)"),
        }
    }
}

/// Credentials per registry, as in a docker `config.json`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct DockerConfig {
    /// Keys as written in the file (`https://index.docker.io/v1/`, `ghcr.io`, `http://host:5000`).
    entries: BTreeMap<String, Credential>,
    /// `credsStore`: the helper asked for every registry without its own `credHelpers` entry.
    creds_store: Option<String>,
    /// `credHelpers`: helper per registry key.
    cred_helpers: BTreeMap<String, String>,
    /// Where the helpers were named, for errors (`docker config /home/u/.docker/config.json`).
    source: String,
}

impl fmt::Debug for DockerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DockerConfig")
            .field("registries", &self.entries.keys().collect::<Vec<_>>())
            .field("creds_store", &self.creds_store)
            .field("cred_helpers", &self.cred_helpers)
            .finish()
    }
}

/// Where a registry's credentials come from, per [`DockerConfig::lookup`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CredentialSource<'a> {
    /// Written in the file (or Secret).
    Stored(&'a Credential),
    /// Asked of `docker-credential-<helper>`, with `server_url` on its stdin; `fallback` is the
    /// file's own entry, used when the helper has nothing for the registry.
    Helper {
        /// The helper's name (the part after `docker-credential-`).
        helper: &'a str,
        /// What docker passes: `https://index.docker.io/v1/` for Docker Hub, else the host.
        server_url: String,
        /// The file's entry for the registry, if any.
        fallback: Option<&'a Credential>,
        /// Where the helper was named, for errors.
        named_in: &'a str,
    },
    /// Nothing: the registry is accessed anonymously.
    Anonymous,
}

#[derive(Deserialize, Default)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    identitytoken: Option<String>,
    #[serde(default)]
    registrytoken: Option<String>,
}

impl DockerConfig {
    /// An empty set: every registry is accessed anonymously.
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses a docker `config.json` (`{"auths": {...}}`) or a legacy `.dockercfg` (a flat map
    /// from registry to entry). `source` names the input in error messages. Credential helpers
    /// are not read: this is how Secrets are parsed (see [`DockerConfig::from_file`]).
    pub fn from_json(bytes: &[u8], source: &str) -> Result<Self, RegistryError> {
        Self::parse(bytes, source, false)
    }

    fn parse(bytes: &[u8], source: &str, helpers: bool) -> Result<Self, RegistryError> {
        let invalid = |reason: String| {
            RegistryError::invalid_config(format!("docker config {source}"), reason)
        };
        let value: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| invalid(format!("not JSON: {e}")))?;
        let serde_json::Value::Object(top) = value else {
            return Err(invalid("not a JSON object".into()));
        };
        let (creds_store, cred_helpers) = if helpers {
            read_helpers(&top).map_err(invalid)?
        } else {
            (None, BTreeMap::new())
        };
        let auths = match top.get("auths") {
            Some(serde_json::Value::Object(auths)) => auths.clone(),
            Some(serde_json::Value::Null) => serde_json::Map::new(),
            Some(_) => return Err(invalid("`auths` is not an object".into())),
            // Legacy `.dockercfg`: hosts at top level. A new-style file with only
            // `credsStore` and friends has no host keys that look like entries.
            None => top
                .into_iter()
                .filter(|(_, v)| v.is_object())
                .filter(|(k, _)| {
                    !matches!(
                        k.as_str(),
                        "credHelpers" | "proxies" | "plugins" | "HttpHeaders"
                    )
                })
                .collect(),
        };
        let mut entries = BTreeMap::new();
        for (key, raw) in auths {
            let entry: AuthEntry =
                serde_json::from_value(raw).map_err(|e| invalid(format!("entry {key:?}: {e}")))?;
            if let Some(credential) = entry_credential(entry)
                .map_err(|reason| invalid(format!("entry {key:?}: {reason}")))?
            {
                entries.insert(key, credential);
            }
        }
        Ok(DockerConfig {
            entries,
            creds_store,
            cred_helpers,
            source: format!("docker config {source}"),
        })
    }

    /// Reads and parses a docker `config.json` file, credential helpers included.
    pub fn from_file(path: &Path) -> Result<Self, RegistryError> {
        let bytes = std::fs::read(path).map_err(|e| {
            RegistryError::invalid_config(
                format!("docker config {}", path.display()),
                e.to_string(),
            )
        })?;
        Self::parse(&bytes, &path.display().to_string(), true)
    }

    /// Loads the credentials the client starts with, looking where docker looks: `config_file`
    /// when given (it must exist), else `<docker_config_dir>/config.json` when `$DOCKER_CONFIG`
    /// is set, else `<home_dir>/.docker/config.json`; a file that is not there means no
    /// credentials. The environment is passed in so that this stays testable.
    pub fn load(
        config_file: Option<&Path>,
        docker_config_dir: Option<&Path>,
        home_dir: Option<&Path>,
    ) -> Result<Self, RegistryError> {
        if let Some(path) = config_file {
            return Self::from_file(path);
        }
        // As docker: $DOCKER_CONFIG replaces ~/.docker, it does not add to it.
        let path: PathBuf = match (docker_config_dir, home_dir) {
            (Some(dir), _) => dir.join("config.json"),
            (None, Some(home)) => home.join(".docker").join("config.json"),
            (None, None) => return Ok(Self::default()),
        };
        if path.is_file() {
            return Self::from_file(&path);
        }
        tracing::debug!(path = %path.display(), "no docker config.json; registries are accessed anonymously");
        Ok(Self::default())
    }

    /// Adds or replaces the credentials for `registry` (a host, `host:port` or docker-style key).
    pub fn insert(&mut self, registry: &str, credential: Credential) {
        self.entries.insert(registry.to_string(), credential);
    }

    /// True when no registry has credentials (stored or through a helper).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty() && self.creds_store.is_none() && self.cred_helpers.is_empty()
    }

    /// Where the credentials for `registry` come from, as docker decides: the registry's
    /// `credHelpers` entry, else `credsStore`, else the stored entry ([`DockerConfig::find`]).
    pub fn lookup(&self, registry: &str) -> CredentialSource<'_> {
        let wanted = registry.to_ascii_lowercase();
        let hub = DOCKER_HUB_HOSTS.contains(&wanted.as_str());
        let own_helper = self.cred_helpers.iter().find_map(|(key, helper)| {
            let host = key_host(key);
            let matches = if hub {
                DOCKER_HUB_HOSTS.contains(&host.as_str())
            } else {
                host == wanted
            };
            matches.then_some(helper)
        });
        match own_helper.or(self.creds_store.as_ref()) {
            Some(helper) => CredentialSource::Helper {
                helper,
                server_url: if hub {
                    DOCKER_HUB_CONFIG_KEY.to_string()
                } else {
                    wanted
                },
                fallback: self.find(registry),
                named_in: &self.source,
            },
            None => match self.find(registry) {
                Some(credential) => CredentialSource::Stored(credential),
                None => CredentialSource::Anonymous,
            },
        }
    }

    /// The credentials for `registry` (a normalised host such as `docker.io` or
    /// `127.0.0.1:5000`), matched as docker does: the exact key first (Docker Hub:
    /// `https://index.docker.io/v1/`), then any key whose host part equals the registry.
    pub fn find(&self, registry: &str) -> Option<&Credential> {
        let wanted = registry.to_ascii_lowercase();
        let hub = DOCKER_HUB_HOSTS.contains(&wanted.as_str());
        let exact = if hub { DOCKER_HUB_CONFIG_KEY } else { registry };
        if let Some(c) = self.entries.get(exact) {
            return Some(c);
        }
        self.entries.iter().find_map(|(key, c)| {
            let host = key_host(key);
            let matches = if hub {
                DOCKER_HUB_HOSTS.contains(&host.as_str())
            } else {
                host == wanted
            };
            matches.then_some(c)
        })
    }
}

/// The host part of a config key, as docker's `ConvertToHostname`: the scheme and any path
/// are dropped (`https://index.docker.io/v1/` -> `index.docker.io`).
pub(crate) fn key_host(key: &str) -> String {
    let rest = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    rest.split('/').next().unwrap_or(rest).to_ascii_lowercase()
}

/// `credsStore` and `credHelpers`; a helper name must be a plain program-name suffix, so that
/// `docker-credential-<name>` cannot reach outside PATH (`../../bin/sh`).
fn read_helpers(
    top: &serde_json::Map<String, serde_json::Value>,
) -> Result<(Option<String>, BTreeMap<String, String>), String> {
    let valid = |name: &str| {
        !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            && !name.starts_with('.')
    };
    let store = match top.get("credsStore") {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(s)) if s.is_empty() => None,
        Some(serde_json::Value::String(s)) if valid(s) => Some(s.clone()),
        Some(other) => return Err(format!("`credsStore` {other} is not a helper name")),
    };
    let mut helpers = BTreeMap::new();
    match top.get("credHelpers") {
        None | Some(serde_json::Value::Null) => {}
        Some(serde_json::Value::Object(map)) => {
            for (host, helper) in map {
                match helper.as_str() {
                    Some(name) if valid(name) => {
                        helpers.insert(host.clone(), name.to_string());
                    }
                    _ => {
                        return Err(format!(
                            "`credHelpers` entry {host:?}: {helper} is not a helper name"
                        ));
                    }
                }
            }
        }
        Some(_) => return Err("`credHelpers` is not an object".into()),
    }
    Ok((store, helpers))
}

/// The credential an entry holds, `None` for an entry with nothing usable (e.g. only `email`).
fn entry_credential(entry: AuthEntry) -> Result<Option<Credential>, String> {
    let non_empty = |s: Option<String>| s.filter(|s| !s.is_empty());
    if let Some(token) = non_empty(entry.registrytoken) {
        return Ok(Some(Credential::RegistryToken { token }));
    }
    if let Some(token) = non_empty(entry.identitytoken) {
        return Ok(Some(Credential::IdentityToken { token }));
    }
    if let Some(encoded) = non_empty(entry.auth) {
        let encoded = encoded.trim();
        let decoded = STANDARD
            .decode(encoded)
            .or_else(|_| STANDARD_NO_PAD.decode(encoded.trim_end_matches('=')))
            .map_err(|_| "`auth` is not base64".to_string())?;
        let text = String::from_utf8(decoded).map_err(|_| "`auth` is not UTF-8".to_string())?;
        let (username, password) = text
            .split_once(':')
            .ok_or_else(|| "`auth` is not base64 of user:password".to_string())?;
        return Ok(Some(Credential::Basic {
            username: username.to_string(),
            password: password.to_string(),
        }));
    }
    match (non_empty(entry.username), entry.password) {
        (Some(username), Some(password)) => Ok(Some(Credential::Basic { username, password })),
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(u: &str, p: &str) -> Credential {
        Credential::Basic {
            username: u.into(),
            password: p.into(),
        }
    }

    #[test]
    fn parses_auth_username_password_and_tokens() {
        let json = br#"{
            "auths": {
                "https://index.docker.io/v1/": {"auth": "aHViOnMzY3JldA=="},
                "ghcr.io": {"username": "octo", "password": "ghp_x"},
                "registry.example.com": {"auth": "dXNlcjpwYTpzcw", "identitytoken": "refresh-me"},
                "quay.io": {"registrytoken": "bearer-x"},
                "empty.example.com": {"email": "a@b.c"}
            },
            "credsStore": "desktop"
        }"#;
        let cfg = DockerConfig::from_json(json, "test").unwrap();
        assert_eq!(cfg.find("docker.io"), Some(&basic("hub", "s3cret")));
        assert_eq!(cfg.find("ghcr.io"), Some(&basic("octo", "ghp_x")));
        assert_eq!(
            cfg.find("registry.example.com"),
            Some(&Credential::IdentityToken {
                token: "refresh-me".into()
            })
        );
        assert_eq!(
            cfg.find("quay.io"),
            Some(&Credential::RegistryToken {
                token: "bearer-x".into()
            })
        );
        assert_eq!(cfg.find("empty.example.com"), None);
        assert_eq!(cfg.find("other.example.com"), None);
    }

    #[test]
    fn password_may_contain_colons_and_padding_is_optional() {
        // "user:pa:ss" without padding.
        let cfg =
            DockerConfig::from_json(br#"{"auths":{"r.example":{"auth":"dXNlcjpwYTpzcw"}}}"#, "t")
                .unwrap();
        assert_eq!(cfg.find("r.example"), Some(&basic("user", "pa:ss")));
    }

    #[test]
    fn legacy_dockercfg_layout_is_accepted() {
        let cfg = DockerConfig::from_json(br#"{"registry.example.com:5000":{"auth":"YTpi"}}"#, "t")
            .unwrap();
        assert_eq!(
            cfg.find("registry.example.com:5000"),
            Some(&basic("a", "b"))
        );
    }

    #[test]
    fn host_matching_follows_docker() {
        let mut cfg = DockerConfig::new();
        cfg.insert("http://registry.example.com:5000/v2/", basic("port", "p"));
        cfg.insert("Registry.Example.com", basic("noport", "p"));
        cfg.insert("index.docker.io", basic("hub-host", "p"));
        assert_eq!(
            cfg.find("registry.example.com:5000"),
            Some(&basic("port", "p"))
        );
        assert_eq!(
            cfg.find("registry.example.com"),
            Some(&basic("noport", "p"))
        );
        // A key without a port does not cover other ports, as in docker.
        assert_eq!(cfg.find("registry.example.com:6000"), None);
        assert_eq!(cfg.find("docker.io"), Some(&basic("hub-host", "p")));
        // The canonical Docker Hub key wins over aliases.
        cfg.insert(DOCKER_HUB_CONFIG_KEY, basic("hub", "p"));
        assert_eq!(cfg.find("docker.io"), Some(&basic("hub", "p")));
        assert_eq!(key_host("https://index.docker.io/v1/"), "index.docker.io");
    }

    #[test]
    fn invalid_files_are_errors_that_do_not_echo_secrets() {
        let err = DockerConfig::from_json(
            br#"{"auths":{"r.example":{"auth":"!!!c2VjcmV0"}}}"#,
            "/etc/cfg.json",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("/etc/cfg.json") && err.contains("r.example"),
            "{err}"
        );
        assert!(!err.contains("c2VjcmV0"), "{err}");
        let err = DockerConfig::from_json(b"[1]", "x")
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a JSON object"), "{err}");
        let err = DockerConfig::from_json(br#"{"auths":{"r":{"auth":"bm9jb2xvbg=="}}}"#, "x")
            .unwrap_err()
            .to_string();
        assert!(err.contains("user:password"), "{err}");
    }

    #[test]
    fn debug_output_redacts_secrets() {
        let mut cfg = DockerConfig::new();
        cfg.insert("r.example", basic("alice", "hunter2"));
        cfg.insert(
            "t.example",
            Credential::IdentityToken {
                token: "tok-123".into(),
            },
        );
        let text = format!(
            "{cfg:?} {:?} {:?}",
            cfg.find("r.example"),
            cfg.find("t.example")
        );
        assert!(
            !text.contains("hunter2") && !text.contains("tok-123"),
            "{text}"
        );
        assert!(text.contains("alice"));
    }

    #[test]
    fn load_prefers_the_explicit_file_then_docker_config() {
        let dir = tempfile::tempdir().unwrap();
        let explicit = dir.path().join("explicit.json");
        std::fs::write(&explicit, br#"{"auths":{"a.example":{"auth":"YTpi"}}}"#).unwrap();
        std::fs::write(
            dir.path().join("config.json"),
            br#"{"auths":{"b.example":{"auth":"YTpi"}}}"#,
        )
        .unwrap();

        let home = tempfile::tempdir().unwrap();
        std::fs::create_dir(home.path().join(".docker")).unwrap();
        std::fs::write(
            home.path().join(".docker/config.json"),
            br#"{"auths":{"c.example":{"auth":"YTpi"}}}"#,
        )
        .unwrap();

        let cfg = DockerConfig::load(Some(&explicit), Some(dir.path()), Some(home.path())).unwrap();
        assert!(cfg.find("a.example").is_some() && cfg.find("b.example").is_none());
        let cfg = DockerConfig::load(None, Some(dir.path()), Some(home.path())).unwrap();
        assert!(cfg.find("b.example").is_some() && cfg.find("c.example").is_none());
        // Without $DOCKER_CONFIG, docker's own default: ~/.docker/config.json.
        let cfg = DockerConfig::load(None, None, Some(home.path())).unwrap();
        assert!(cfg.find("c.example").is_some());
        let empty = tempfile::tempdir().unwrap();
        assert!(
            DockerConfig::load(None, Some(empty.path()), Some(home.path()))
                .unwrap()
                .is_empty(),
            "$DOCKER_CONFIG replaces ~/.docker"
        );
        assert!(
            DockerConfig::load(None, None, Some(empty.path()))
                .unwrap()
                .is_empty()
        );
        assert!(DockerConfig::load(None, None, None).unwrap().is_empty());
        let missing = dir.path().join("missing.json");
        let err = DockerConfig::load(Some(&missing), None, None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("missing.json"), "{err}");
    }

    #[test]
    fn helpers_are_read_from_files_only_and_chosen_as_docker_does() {
        let json = br#"{
            "auths": {"ghcr.io": {"auth": "YTpi"}, "quay.io": {"auth": "YTpi"}},
            "credsStore": "desktop",
            "credHelpers": {"123.dkr.ecr.eu-west-1.amazonaws.com": "ecr-login", "index.docker.io": "hub"}
        }"#;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(&path, json).unwrap();
        let cfg = DockerConfig::from_file(&path).unwrap();
        let helper = |registry: &str| match cfg.lookup(registry) {
            CredentialSource::Helper {
                helper, server_url, ..
            } => Some((helper.to_string(), server_url)),
            _ => None,
        };
        assert_eq!(
            helper("123.dkr.ecr.eu-west-1.amazonaws.com"),
            Some((
                "ecr-login".into(),
                "123.dkr.ecr.eu-west-1.amazonaws.com".into()
            ))
        );
        assert_eq!(
            helper("docker.io"),
            Some(("hub".into(), DOCKER_HUB_CONFIG_KEY.into()))
        );
        // credsStore for the rest, with the file's entry as the fallback.
        assert!(matches!(
            cfg.lookup("ghcr.io"),
            CredentialSource::Helper {
                helper: "desktop",
                fallback: Some(_),
                ..
            }
        ));
        // A Secret's payload never names a program to run.
        let secret = DockerConfig::from_json(json, "secret ns/pull").unwrap();
        assert!(matches!(
            secret.lookup("ghcr.io"),
            CredentialSource::Stored(_)
        ));
        assert_eq!(secret.lookup("docker.io"), CredentialSource::Anonymous);
        // Helper names stay program-name suffixes.
        for bad in [
            r#"{"credsStore": "../../bin/sh"}"#,
            r#"{"credHelpers": {"r.example": "a/b"}}"#,
            r#"{"credsStore": 3}"#,
        ] {
            std::fs::write(&path, bad).unwrap();
            let err = DockerConfig::from_file(&path).unwrap_err().to_string();
            assert!(
                err.contains("config.json") && err.contains("helper name"),
                "{err}"
            );
        }
    }

    #[test]
    fn fingerprints_differ_per_secret() {
        assert_ne!(basic("a", "b").fingerprint(), basic("a", "c").fingerprint());
        assert_eq!(basic("a", "b").fingerprint(), basic("a", "b").fingerprint());
        let fp = basic("alice", "hunter2").fingerprint();
        assert_eq!(fp.len(), 32);
        assert!(!fp.contains("hunter2") && !fp.contains("alice"));
    }
}
