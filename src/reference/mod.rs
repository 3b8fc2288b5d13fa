//! Image references: a hand-written parser of the Docker/distribution reference grammar,
//! canonical forms, and glob matching.
//!
//! # Grammar
//!
//! `[host[:port]/]path[:tag][@digest]`, as distribution's `reference` package and containerd
//! read it:
//! - host: DNS-like labels (`[A-Za-z0-9]` at both ends, `-` inside) joined by `.`, or an IPv6
//!   address in brackets (`[::1]`), with an optional decimal port;
//! - path: components `[a-z0-9]+(?:(?:[._]|__|[-]*)[a-z0-9]+)*` joined by `/` (lower case only);
//! - tag: `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`;
//! - digest: `algorithm:hex`, only `sha256` (64 hex), `sha384` (96) and `sha512` (128);
//! - the name (host and path) is at most 255 characters, as written and once canonical.
//!
//! The first path component is a host when it contains `.` or `:` or is `localhost`; otherwise
//! the image is on Docker Hub (`nginx` is `docker.io/library/nginx:latest`). One deliberate
//! difference from distribution: an upper-case first component that is none of those
//! (`Foo/bar`) is refused, where distribution would read it as a host name. Refusing is the side
//! that cannot admit an image by accident. A bare 64-hex string is refused (an image ID).
//!
//! The parser is a single left-to-right pass without regular expressions: linear in the input,
//! and no process pays for compiling the grammar's regex at start-up.
//!
//! # Canonical registry hosts
//!
//! Spellings the runtime pulls from the same place become one host, so that policies, lookups,
//! pinning, verdicts and caches all see one name (a policy written for `registry.example.com`
//! must govern `REGISTRY.example.com:443/...` too):
//! - the host is lower-cased (DNS is case-insensitive) and an IPv6 address written in its
//!   RFC 5952 form;
//! - the scheme's default port is dropped. signet speaks HTTPS to every registry except loopback
//!   hosts (and hosts configured insecure), so `:443` is dropped for every non-loopback host and
//!   `:80` for loopback hosts (`localhost`, `127.0.0.0/8`, `[::1]`), which signet reaches over
//!   plain HTTP. A host name with neither `.` nor `:` other than `localhost` (`myhost:443`)
//!   keeps its port, since without it the text would name a Docker Hub repository
//!   (`myhost/app` is `docker.io/myhost/app`). `host:80` on a non-loopback host is kept as written: over HTTPS it is another
//!   endpoint than `host`, and runtimes configure `host:80` separately from `host` (containerd's
//!   `hosts.toml` directories, docker's `insecure-registries`). A registry configured insecure
//!   (`--insecure-registry`) should therefore be named with the same port in policies and
//!   workloads; the pure reference type does not know that list;
//! - Docker Hub's aliases `index.docker.io` and `registry-1.docker.io` (any case, with or
//!   without `:443`) become `docker.io`, where a one-component path gains `library/`.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};
use std::str::FromStr;

use oci_client::Reference;

/// Longest name (host and path) the grammar allows.
pub const NAME_TOTAL_LENGTH_MAX: usize = 255;
/// Longest tag the grammar allows.
const TAG_LENGTH_MAX: usize = 128;
/// The canonical Docker Hub host.
const DOCKER_HUB: &str = "docker.io";
/// Other names of Docker Hub, folded to [`DOCKER_HUB`] (compared lower-cased).
const DOCKER_HUB_ALIASES: [&str; 2] = ["index.docker.io", "registry-1.docker.io"];

/// Why a string is not an image reference or a glob.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReferenceError {
    /// The text is not an image reference.
    #[error("invalid image reference {input:?}: {reason}")]
    Invalid {
        /// The text as given.
        input: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The text is not an image glob.
    #[error("invalid image glob {input:?}: {reason}")]
    InvalidGlob {
        /// The text as given.
        input: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// A normalised image reference: registry host, repository path, optional tag, optional digest.
///
/// When the text names neither tag nor digest, the tag is `latest`, as Docker does. The
/// registry host is canonical (see the module docs).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ImageRef {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<String>,
}

/// The pieces of a reference as written, before Docker's defaults are applied.
struct Parsed {
    reference: ImageRef,
    /// Whether the text named a tag (`parse` adds `latest` when it names neither tag nor digest).
    tag_written: bool,
}

impl ImageRef {
    /// Parses and normalises an image reference as written in a workload or on a command line.
    pub fn parse(input: &str) -> Result<Self, ReferenceError> {
        parse_reference(input).map(|p| p.reference)
    }

    /// Parses like [`ImageRef::parse`] but keeps the tag absent when the text names none (no
    /// `latest` default): for identities written in signature payloads.
    pub fn parse_exact(input: &str) -> Result<Self, ReferenceError> {
        let mut parsed = parse_reference(input)?;
        if !parsed.tag_written {
            parsed.reference.tag = None;
        }
        Ok(parsed.reference)
    }

    /// Builds a reference from its parts, e.g. from a registry event. The registry host may be
    /// in any spelling (it is made canonical); the repository must already be in normal form
    /// (`library/nginx`, not `nginx`, on Docker Hub).
    pub fn from_parts(
        registry: &str,
        repository: &str,
        tag: Option<&str>,
        digest: Option<&str>,
    ) -> Result<Self, ReferenceError> {
        let mut text = format!("{registry}/{repository}");
        if let Some(t) = tag {
            text.push(':');
            text.push_str(t);
        }
        if let Some(d) = digest {
            text.push('@');
            text.push_str(d);
        }
        let parsed = Self::parse(&text)?;
        // `parse` reads a first component without `.`/`:` as a path on Docker Hub, and adds
        // `library/` there: either shows up as a difference here.
        let host_is_canonical_of_registry =
            parse_host(registry).is_ok_and(|host| host == parsed.registry);
        if !host_is_canonical_of_registry || parsed.repository != repository {
            return Err(ReferenceError::Invalid {
                input: text,
                reason: "registry or repository is not in normal form".into(),
            });
        }
        Ok(parsed)
    }

    /// Registry host, canonical, with port when it is not the default (`docker.io`,
    /// `127.0.0.1:5000`).
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// Repository path inside the registry (`library/nginx`).
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// The tag, if the reference names one.
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The digest (`sha256:<hex>`, lower case), if the reference names one.
    pub fn digest(&self) -> Option<&str> {
        self.digest.as_deref()
    }

    /// `registry/repository`: the form globs, policies and `Simple` signatures use.
    pub fn repo_path(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// `registry/repository:tag` when a tag is named, else `registry/repository`: the identity a
    /// `Default` signature binds.
    pub fn repo_with_tag(&self) -> String {
        match &self.tag {
            Some(t) => format!("{}/{}:{t}", self.registry, self.repository),
            None => self.repo_path(),
        }
    }

    /// The same repository and tag, pinned to `digest`.
    pub fn with_digest(&self, digest: &str) -> Self {
        ImageRef {
            digest: Some(digest.to_ascii_lowercase()),
            ..self.clone()
        }
    }

    /// The same repository with another tag and no digest.
    pub fn with_tag(&self, tag: &str) -> Self {
        ImageRef {
            tag: Some(tag.to_string()),
            digest: None,
            ..self.clone()
        }
    }

    /// The reference in oci-client's type, for registry calls.
    pub fn to_oci(&self) -> Reference {
        match (&self.tag, &self.digest) {
            (Some(t), Some(d)) => Reference::with_tag_and_digest(
                self.registry.clone(),
                self.repository.clone(),
                t.clone(),
                d.clone(),
            ),
            (_, Some(d)) => {
                Reference::with_digest(self.registry.clone(), self.repository.clone(), d.clone())
            }
            (Some(t), None) => {
                Reference::with_tag(self.registry.clone(), self.repository.clone(), t.clone())
            }
            (None, None) => Reference::with_tag(
                self.registry.clone(),
                self.repository.clone(),
                "latest".into(),
            ),
        }
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.repo_with_tag())?;
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

impl FromStr for ImageRef {
    type Err = ReferenceError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// One pass over `input`: digest, tag, host, path; then Docker's defaults and canonical host.
fn parse_reference(input: &str) -> Result<Parsed, ReferenceError> {
    let invalid = |reason: String| ReferenceError::Invalid {
        input: input.to_string(),
        reason,
    };
    if input.is_empty() || input.trim() != input {
        return Err(invalid("empty or surrounded by white space".into()));
    }
    // Neither name nor tag may hold `@`, so the first one starts the digest.
    let (rest, digest) = match input.split_once('@') {
        Some((rest, digest)) => (
            rest,
            Some(check_digest(digest).map_err(|why| invalid(why.into()))?),
        ),
        None => (input, None),
    };
    // A `:` after the last `/` starts the tag (an earlier one is the host's port).
    let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match rest[last_slash..].rfind(':') {
        Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
        None => (rest, None),
    };
    if let Some(tag) = tag {
        check_tag(tag).map_err(|why| invalid(why.into()))?;
    }
    if name.is_empty() {
        return Err(invalid("no repository name".into()));
    }
    if name.len() > NAME_TOTAL_LENGTH_MAX {
        return Err(invalid(format!(
            "name longer than {NAME_TOTAL_LENGTH_MAX} characters"
        )));
    }
    if name.len() == 64 && name.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Err(invalid(
            "a 64-character hex string is an image ID, not a reference".into(),
        ));
    }
    let (host, path) = match name.split_once('/') {
        Some((first, path)) if first.contains(['.', ':']) || first == "localhost" => {
            (Some(first), path)
        }
        _ => (None, name),
    };
    check_path(path).map_err(invalid)?;
    let registry = match host {
        Some(host) => parse_host(host).map_err(|why| invalid(why.into()))?,
        None => DOCKER_HUB.to_string(),
    };
    let repository = if registry == DOCKER_HUB && !path.contains('/') {
        format!("library/{path}")
    } else {
        path.to_string()
    };
    if registry.len() + 1 + repository.len() > NAME_TOTAL_LENGTH_MAX {
        return Err(invalid(format!(
            "name longer than {NAME_TOTAL_LENGTH_MAX} characters"
        )));
    }
    let tag_written = tag.is_some();
    let tag = match (tag, &digest) {
        (Some(t), _) => Some(t.to_string()),
        (None, Some(_)) => None,
        (None, None) => Some("latest".to_string()),
    };
    Ok(Parsed {
        reference: ImageRef {
            registry,
            repository,
            tag,
            digest,
        },
        tag_written,
    })
}

/// `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}` (`\w` is ASCII in the Go grammar).
fn check_tag(tag: &str) -> Result<(), &'static str> {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    match tag.as_bytes() {
        [] => Err("empty tag"),
        [first, ..] if !word(*first) => Err("a tag starts with a letter, digit or `_`"),
        bytes if bytes.len() > TAG_LENGTH_MAX => Err("tag longer than 128 characters"),
        bytes if !bytes.iter().all(|&b| word(b) || b == b'.' || b == b'-') => {
            Err("a tag holds only letters, digits, `_`, `.` and `-`")
        }
        _ => Ok(()),
    }
}

/// Checks the digest grammar (`algorithm:hex`) and the supported algorithms and lengths.
fn check_digest(digest: &str) -> Result<String, &'static str> {
    let Some((algorithm, _hex)) = digest.split_once(':') else {
        return Err("a digest is `algorithm:hex`");
    };
    // algorithm: [A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*
    let mut after_separator = true;
    for b in algorithm.bytes() {
        after_separator = match b {
            b'A'..=b'Z' | b'a'..=b'z' => false,
            b'0'..=b'9' if !after_separator => false,
            b'-' | b'_' | b'+' | b'.' if !after_separator => true,
            _ => return Err("bad digest algorithm"),
        };
    }
    if after_separator {
        return Err("bad digest algorithm");
    }
    normalise_digest(digest).ok_or("bad digest: only sha256, sha384 and sha512 in hex")
}

/// Path components `[a-z0-9]+(?:(?:[._]|__|[-]*)[a-z0-9]+)*` joined by `/`.
fn check_path(path: &str) -> Result<(), String> {
    for component in path.split('/') {
        check_component(component).map_err(|why| format!("path component {component:?}: {why}"))?;
    }
    Ok(())
}

fn check_component(component: &str) -> Result<(), &'static str> {
    let bytes = component.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if bytes.is_empty() {
        return Err("empty");
    }
    if bytes.iter().any(u8::is_ascii_uppercase) {
        return Err("repository names are lower case");
    }
    let mut i = 0;
    loop {
        // A run of [a-z0-9]+.
        let start = i;
        while i < bytes.len() && alnum(bytes[i]) {
            i += 1;
        }
        if i == start {
            return Err("separators (`.`, `_`, `__`, `-`) go between letters or digits");
        }
        if i == bytes.len() {
            return Ok(());
        }
        // One separator: `.`, `_`, `__` or any number of `-`.
        let sep_start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        match &bytes[sep_start..i] {
            b"." | b"_" | b"__" => {}
            dashes if dashes.iter().all(|&b| b == b'-') => {}
            _ => return Err("only letters, digits and the separators `.`, `_`, `__`, `-`"),
        }
    }
}

/// Parses a registry host (`host`, `host:port`, `[v6]`, `[v6]:port`) into its canonical form.
fn parse_host(host: &str) -> Result<String, &'static str> {
    let (name, port) = if let Some(rest) = host.strip_prefix('[') {
        let (address, after) = rest.split_once(']').ok_or("unclosed `[` in host")?;
        let address: Ipv6Addr = address
            .parse()
            .map_err(|_| "not an IPv6 address between `[` and `]`")?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or("junk after `]` in host")?),
        };
        (format!("[{address}]"), port)
    } else {
        let (name, port) = match host.split_once(':') {
            Some((name, port)) => (name, Some(port)),
            None => (host, None),
        };
        check_domain(name)?;
        (name.to_ascii_lowercase(), port)
    };
    let port = match port {
        None => None,
        Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => {
            Some(p.parse::<u16>().map_err(|_| "port out of range")?)
        }
        Some(_) => return Err("a port is decimal digits"),
    };
    Ok(canonical_host(&name, port))
}

/// Labels `[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?` joined by `.`.
fn check_domain(name: &str) -> Result<(), &'static str> {
    for label in name.split('.') {
        let bytes = label.as_bytes();
        let ok = match (bytes.first(), bytes.last()) {
            (Some(first), Some(last)) => {
                first.is_ascii_alphanumeric()
                    && last.is_ascii_alphanumeric()
                    && bytes
                        .iter()
                        .all(|&b| b.is_ascii_alphanumeric() || b == b'-')
            }
            _ => false,
        };
        if !ok {
            return Err("a host is letters, digits and `-`, in labels joined by `.`");
        }
    }
    Ok(())
}

/// Folds a lower-cased host name (IPv6 in brackets) and its port into the canonical host.
fn canonical_host(name: &str, port: Option<u16>) -> String {
    let bare = name.trim_start_matches('[').trim_end_matches(']');
    let loopback = name == "localhost" || bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
    // signet reaches loopback registries over plain HTTP and every other one over HTTPS.
    let default_port = if loopback { 80 } else { 443 };
    // Without its port, a host with neither `.` nor `:` that is not `localhost` would read as a
    // Docker Hub path (`myhost:443/app` as `docker.io/myhost/app`): such a host keeps its port,
    // so that the canonical text still names the same registry.
    let reads_as_host = name.contains(['.', ':']) || name == "localhost";
    let port = port.filter(|&p| p != default_port || !reads_as_host);
    if port.is_none() && (name == DOCKER_HUB || DOCKER_HUB_ALIASES.contains(&name)) {
        return DOCKER_HUB.to_string();
    }
    match port {
        Some(p) => format!("{name}:{p}"),
        None => name.to_string(),
    }
}

/// Lower-cases and checks a digest (`sha256:<64 hex>`, `sha384:`, `sha512:`).
pub fn normalise_digest(digest: &str) -> Option<String> {
    let (alg, hex) = digest.split_once(':')?;
    let len = match alg {
        "sha256" => 64,
        "sha384" => 96,
        "sha512" => 128,
        _ => return None,
    };
    (hex.len() == len && hex.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| digest.to_ascii_lowercase())
}

mod glob;

pub use glob::Glob;

#[cfg(test)]
mod tests;
