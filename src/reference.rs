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

/// A compiled image glob over canonical references.
///
/// - `*` matches any run of characters within one path segment, never `/` nor `:` (so it never
///   runs from a repository into its tag, nor from a host into its port);
/// - `**` matches any run of characters, `/` and `:` included;
/// - `?` matches one character other than `/` and `:`;
/// - everything else matches itself.
///
/// The host part (the text before the first `/`) is made canonical when the glob is compiled,
/// as references are: `Registry.Example.com:443/**` is `registry.example.com/**`, and
/// `index.docker.io/nginx` is `docker.io/library/nginx`. A host part with wildcards is only
/// lower-cased; one ending in `:443` is refused (references carry the default port only on a
/// dotless host such as `myhost:443`, which a glob names without wildcards in its host part).
///
/// A glob is matched against the repository (`registry.example.com/prod/app`) and, when the
/// reference names a tag **and no digest**, also against `repository:tag`; either match counts.
/// So `registry.example.com/prod/**` covers every repository below `prod/`,
/// `docker.io/library/*` every official image, and the tag-shaped `ghcr.io/org/app:v*` only
/// references to the `v` tags of one repository written without a digest. A digest-pinned
/// reference (`app:v1@sha256:...`) is governed by its repository alone: the runtime pulls the
/// digest and ignores the tag, so the tag text must neither widen nor narrow what governs it
/// (in `images` and in `exclude` alike). Repository paths in globs are written in normal form:
/// `nginx` must be written `docker.io/library/nginx`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Glob {
    /// The canonical text (host part canonical).
    text: String,
    tokens: Vec<Token>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Token {
    Literal(char),
    AnyInSegment,
    AnyAcross,
    OneChar,
}

/// Characters a one-segment wildcard never consumes.
fn ends_segment(c: char) -> bool {
    c == '/' || c == ':'
}

impl Glob {
    /// Compiles a glob; rejects empty globs, white space, `***` and non-canonical wildcard hosts.
    pub fn new(text: &str) -> Result<Self, ReferenceError> {
        let invalid = |reason: &str| ReferenceError::InvalidGlob {
            input: text.to_string(),
            reason: reason.to_string(),
        };
        if text.is_empty() {
            return Err(invalid("empty"));
        }
        if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(invalid("contains white space"));
        }
        if text.contains("***") {
            return Err(invalid("`***` is not a wildcard; use `*` or `**`"));
        }
        let canonical = canonical_glob(text).map_err(invalid)?;
        let mut tokens = Vec::with_capacity(canonical.len());
        let mut chars = canonical.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '*' if chars.peek() == Some(&'*') => {
                    chars.next();
                    tokens.push(Token::AnyAcross);
                }
                '*' => tokens.push(Token::AnyInSegment),
                '?' => tokens.push(Token::OneChar),
                other => tokens.push(Token::Literal(other)),
            }
        }
        Ok(Glob {
            text: canonical,
            tokens,
        })
    }

    /// The glob in canonical form (its host part canonical; the rest as written).
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The text before the first wildcard: every match starts with it (used to index globs).
    pub fn literal_prefix(&self) -> String {
        self.tokens
            .iter()
            .map_while(|t| match t {
                Token::Literal(c) => Some(*c),
                _ => None,
            })
            .collect()
    }

    /// Whether the glob governs this image: its repository, or, for a reference with a tag and
    /// no digest, its `repository:tag` (see the type's docs for why a digest shuts the tag out).
    pub fn matches_image(&self, image: &ImageRef) -> bool {
        self.matches(&image.repo_path())
            || (image.tag.is_some()
                && image.digest.is_none()
                && self.matches(&image.repo_with_tag()))
    }

    /// Whether the glob covers a pushed manifest: its repository, or its `repository:tag` even
    /// when the digest is known. For the signer, which decides what to sign for a tag being
    /// pushed; admission uses [`Glob::matches_image`].
    pub fn matches_push(&self, image: &ImageRef) -> bool {
        self.matches(&image.repo_path())
            || (image.tag.is_some() && self.matches(&image.repo_with_tag()))
    }

    /// Whether the glob matches exactly this text.
    pub fn matches(&self, text: &str) -> bool {
        let chars: Vec<char> = text.chars().collect();
        match_tokens(&self.tokens, &chars)
    }
}

impl fmt::Display for Glob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// The glob with its host part canonical. A glob without `/` has no host part (`**`).
fn canonical_glob(text: &str) -> Result<String, &'static str> {
    let Some((host, rest)) = text.split_once('/') else {
        return Ok(text.to_string());
    };
    if host.contains(['*', '?']) {
        let lower = host.to_ascii_lowercase();
        if lower.ends_with(":443") {
            return Err("`:443` is the default port and never part of a reference: drop it");
        }
        return Ok(format!("{lower}/{rest}"));
    }
    let is_host = host.contains(['.', ':']) || host.eq_ignore_ascii_case("localhost");
    if !is_host {
        // A Docker Hub path written without its host (`library/*`): as before, left as written
        // (it matches nothing, since references always carry their host).
        return Ok(text.to_string());
    }
    let host = parse_host(host)?;
    if host == DOCKER_HUB && !rest.contains('/') && !rest.contains("**") {
        return Ok(format!("{DOCKER_HUB}/library/{rest}"));
    }
    Ok(format!("{host}/{rest}"))
}

/// Iterative wildcard matching with a table over (token, position): linear in
/// tokens × text, no exponential backtracking on hostile globs.
fn match_tokens(tokens: &[Token], text: &[char]) -> bool {
    // reach[j] = the first i tokens can consume exactly text[..j]
    let mut reach = vec![false; text.len() + 1];
    reach[0] = true;
    for token in tokens {
        let mut next = vec![false; text.len() + 1];
        match token {
            Token::Literal(c) => {
                for j in 0..text.len() {
                    if reach[j] && text[j] == *c {
                        next[j + 1] = true;
                    }
                }
            }
            Token::OneChar => {
                for j in 0..text.len() {
                    if reach[j] && !ends_segment(text[j]) {
                        next[j + 1] = true;
                    }
                }
            }
            Token::AnyInSegment => {
                for j in 0..=text.len() {
                    if reach[j] || (j > 0 && next[j - 1] && !ends_segment(text[j - 1])) {
                        next[j] = true;
                    }
                }
            }
            Token::AnyAcross => {
                for j in 0..=text.len() {
                    if reach[j] || (j > 0 && next[j - 1]) {
                        next[j] = true;
                    }
                }
            }
        }
        reach = next;
    }
    reach[text.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(s: &str) -> String {
        ImageRef::parse(s).unwrap().to_string()
    }

    #[test]
    fn normalises_like_docker() {
        assert_eq!(parsed("nginx"), "docker.io/library/nginx:latest");
        assert_eq!(parsed("nginx:1.25"), "docker.io/library/nginx:1.25");
        assert_eq!(parsed("bitnami/redis"), "docker.io/bitnami/redis:latest");
        assert_eq!(
            parsed("index.docker.io/library/nginx"),
            "docker.io/library/nginx:latest"
        );
        assert_eq!(parsed("localhost/app"), "localhost/app:latest");
        assert_eq!(parsed("localhost:5000/a/b:v1"), "localhost:5000/a/b:v1");
        assert_eq!(
            parsed("registry.example.com/prod/app:v1"),
            "registry.example.com/prod/app:v1"
        );
        let d = format!("sha256:{}", "a".repeat(64));
        assert_eq!(
            parsed(&format!("127.0.0.1:5000/app@{d}")),
            format!("127.0.0.1:5000/app@{d}")
        );
        assert_eq!(
            parsed(&format!("app:v2@{d}")),
            format!("docker.io/library/app:v2@{d}")
        );
    }

    #[test]
    fn digest_only_reference_has_no_tag() {
        let d = format!("sha256:{}", "b".repeat(64));
        let r = ImageRef::parse(&format!("ghcr.io/o/app@{d}")).unwrap();
        assert_eq!(r.tag(), None);
        assert_eq!(r.digest(), Some(d.as_str()));
        assert_eq!(r.repo_with_tag(), "ghcr.io/o/app");
    }

    #[test]
    fn exact_parse_keeps_tag_absent() {
        assert_eq!(ImageRef::parse_exact("r.io/a/b").unwrap().tag(), None);
        assert_eq!(ImageRef::parse_exact("r.io:5000/a/b").unwrap().tag(), None);
        assert_eq!(
            ImageRef::parse_exact("r.io:5000/a/b:v1").unwrap().tag(),
            Some("v1")
        );
    }

    #[test]
    fn rejects_malformed_references() {
        for bad in [
            "",
            " nginx",
            "UPPER/case",
            "app:",
            "app@sha256:abc",
            "a//b",
            "app:tag with space",
            "http://x/y",
        ] {
            let err = ImageRef::parse(bad).unwrap_err();
            assert!(
                err.to_string().starts_with("invalid image reference"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn glob_semantics() {
        let cases = [
            (
                "registry.example.com/prod/**",
                "registry.example.com/prod/app:v1",
                true,
            ),
            (
                "registry.example.com/prod/**",
                "registry.example.com/prod/team/app:v1",
                true,
            ),
            (
                "registry.example.com/prod/**",
                "registry.example.com/production/app:v1",
                false,
            ),
            (
                "registry.example.com/prod/*",
                "registry.example.com/prod/app:v1",
                true,
            ),
            (
                "registry.example.com/prod/*",
                "registry.example.com/prod/team/app:v1",
                false,
            ),
            ("docker.io/library/*", "nginx", true),
            ("docker.io/library/*", "bitnami/redis", false),
            ("ghcr.io/org/app:v*", "ghcr.io/org/app:v1.2", true),
            ("ghcr.io/org/app:v*", "ghcr.io/org/app:latest", false),
            ("ghcr.io/org/ap?", "ghcr.io/org/app", true),
            ("**", "anything.io/a/b/c:d", true),
            ("*.example.com/**", "registry.example.com/x/y", true),
        ];
        for (glob, image, want) in cases {
            let g = Glob::new(glob).unwrap();
            let img = ImageRef::parse(image).unwrap();
            assert_eq!(g.matches_image(&img), want, "{glob} vs {image}");
        }
    }

    #[test]
    fn glob_prefix_and_errors() {
        assert_eq!(
            Glob::new("registry.example.com/prod/**")
                .unwrap()
                .literal_prefix(),
            "registry.example.com/prod/"
        );
        assert!(Glob::new("").is_err());
        assert!(Glob::new("a b").is_err());
        assert!(Glob::new("a/***").is_err());
    }

    /// Found by the `reference` fuzz target: `1:443/1` printed as `1/1:latest`, which is the
    /// Docker Hub repository `docker.io/1/1`. A dotless host keeps its default port, so the
    /// canonical text parses back to the same registry (and a `Default` signature's identity
    /// `myhost:443/app:v1` names the image it was made for).
    #[test]
    fn a_dotless_host_keeps_its_default_port() {
        for (input, want) in [
            ("1:443/1", "1:443/1:latest"),
            ("myhost:443/app:v1", "myhost:443/app:v1"),
            ("MyHost:443/app", "myhost:443/app:latest"),
        ] {
            let image = ImageRef::parse(input).unwrap();
            assert_eq!(image.to_string(), want, "{input}");
            assert_eq!(
                ImageRef::parse(&image.to_string()).unwrap(),
                image,
                "{input}"
            );
            assert_eq!(
                ImageRef::from_parts(image.registry(), image.repository(), image.tag(), None),
                Ok(image.clone()),
                "{input}"
            );
        }
        assert_eq!(parsed("myhost:8443/app"), "myhost:8443/app:latest");
        // A glob of the same spelling governs it.
        let image = ImageRef::parse("myhost:443/app:v1").unwrap();
        assert!(Glob::new("myhost:443/**").unwrap().matches_image(&image));
        // Hosts that read as hosts without their port still drop it.
        assert_eq!(
            parsed("registry.example.com:443/app"),
            "registry.example.com/app:latest"
        );
        assert_eq!(parsed("localhost:80/app"), "localhost/app:latest");
    }

    /// Finding 3: spellings the runtime pulls from the same registry are one image here.
    #[test]
    fn registry_spellings_are_canonical() {
        let d = format!("sha256:{}", "c".repeat(64));
        let same = [
            (
                "registry.example.com/prod/x",
                "registry.example.com/prod/x:latest",
            ),
            (
                "REGISTRY.EXAMPLE.COM/prod/x",
                "registry.example.com/prod/x:latest",
            ),
            (
                "Registry.Example.Com:443/prod/x:v1",
                "registry.example.com/prod/x:v1",
            ),
            (
                "registry.example.com:0443/prod/x",
                "registry.example.com/prod/x:latest",
            ),
            (
                "registry.example.com:8443/prod/x",
                "registry.example.com:8443/prod/x:latest",
            ),
            // Over HTTPS, port 80 is another endpoint: kept.
            (
                "registry.example.com:80/prod/x",
                "registry.example.com:80/prod/x:latest",
            ),
            ("docker.io/library/x", "docker.io/library/x:latest"),
            ("DOCKER.IO/library/x", "docker.io/library/x:latest"),
            ("docker.io:443/library/x", "docker.io/library/x:latest"),
            ("DOCKER.IO/x", "docker.io/library/x:latest"),
            ("index.docker.io/library/x", "docker.io/library/x:latest"),
            ("Index.Docker.IO/x", "docker.io/library/x:latest"),
            (
                "registry-1.docker.io/library/x",
                "docker.io/library/x:latest",
            ),
            (
                "REGISTRY-1.DOCKER.IO:443/library/x",
                "docker.io/library/x:latest",
            ),
            (
                "registry-1.docker.io/bitnami/redis",
                "docker.io/bitnami/redis:latest",
            ),
            ("x", "docker.io/library/x:latest"),
            // Another port of a Docker Hub alias is another server.
            ("index.docker.io:5000/x", "index.docker.io:5000/x:latest"),
            // Loopback registries are plain HTTP: `:80` is their default, `:443` is not.
            ("LOCALHOST:80/app", "localhost/app:latest"),
            ("localhost:443/app", "localhost:443/app:latest"),
            ("127.0.0.1:80/app", "127.0.0.1/app:latest"),
            ("127.0.0.1:5000/app", "127.0.0.1:5000/app:latest"),
            ("[::1]:5000/app", "[::1]:5000/app:latest"),
            ("[0:0:0:0:0:0:0:1]:80/app", "[::1]/app:latest"),
            ("[FD00::0001]:443/app", "[fd00::1]/app:latest"),
        ];
        for (input, want) in same {
            assert_eq!(parsed(input), want, "{input}");
            let pinned = ImageRef::parse(&format!("{input}@{d}")).unwrap();
            assert_eq!(
                pinned.repo_path(),
                want.rsplit_once(':').unwrap().0,
                "{input}@"
            );
        }
        // The upper-case repository path is not valid in the grammar: refused, not folded.
        for bad in [
            "registry.example.com/Prod/x",
            "DOCKER.IO/Library/x",
            "registry.example.com:99999/x",
            "registry.example.com:/x",
            "registry.example.com:4a/x",
            "-bad.example.com/x",
            "bad-.example.com/x",
            "bad..example.com/x",
            "foo_bar.com/x",
            "[::1/x",
            "[not-v6]/x",
            "[::1]x/y",
        ] {
            assert!(ImageRef::parse(bad).is_err(), "{bad}");
        }
        // The same image in every spelling: equal values, so equal cache keys.
        assert_eq!(
            ImageRef::parse("REGISTRY-1.docker.io:443/x").unwrap(),
            ImageRef::parse("x").unwrap()
        );
    }

    #[test]
    fn grammar_edge_cases() {
        let ok = [
            ("a", "docker.io/library/a:latest"),
            ("a.b", "docker.io/library/a.b:latest"),
            ("a__b", "docker.io/library/a__b:latest"),
            ("a_b-c---d.e", "docker.io/library/a_b-c---d.e:latest"),
            ("org/a/b/c/d", "docker.io/org/a/b/c/d:latest"),
            ("a:_", "docker.io/library/a:_"),
            ("a:V1.0-RC_2", "docker.io/library/a:V1.0-RC_2"),
            ("localhost:5000", "docker.io/library/localhost:5000"),
            ("test.com:5000", "docker.io/library/test.com:5000"),
            ("foo_bar.com:8080", "docker.io/library/foo_bar.com:8080"),
            ("foo/foo_bar.com:8080", "docker.io/foo/foo_bar.com:8080"),
            ("a-b.example/c", "a-b.example/c:latest"),
            ("registry:5000/c", "registry:5000/c:latest"),
        ];
        for (input, want) in ok {
            assert_eq!(parsed(input), want, "{input}");
        }
        let long_tag = format!("a:{}", "t".repeat(128));
        assert!(ImageRef::parse(&long_tag).is_ok());
        let name_255 = format!("r.io/{}", "a".repeat(250));
        assert!(ImageRef::parse(&name_255).is_ok());
        let bad = [
            "a:".to_string(),
            "a@".to_string(),
            ":tag".to_string(),
            "/a".to_string(),
            "a/".to_string(),
            "a//b".to_string(),
            "a___b".to_string(),
            "a._b".to_string(),
            "-a".to_string(),
            "a-".to_string(),
            ".a".to_string(),
            "a:.t".to_string(),
            "a:-t".to_string(),
            "a:t/x".to_string(),
            "a:ü".to_string(),
            "aé".to_string(),
            "a@sha256".to_string(),
            format!("a@sha256:{}", "a".repeat(63)),
            format!("a@sha256:{}", "g".repeat(64)),
            format!("a@md5:{}", "a".repeat(32)),
            format!("a@SHA256:{}", "a".repeat(64)),
            format!("a@sha256:{}@sha256:{}", "a".repeat(64), "b".repeat(64)),
            format!("a:{}", "t".repeat(129)),
            format!("r.io/{}", "a".repeat(251)),
            // 251 characters as written, 265 once Docker Hub's host and `library/` are added.
            "a".repeat(251),
            "a".repeat(64).replace('a', "f"),
        ];
        for input in bad {
            assert!(ImageRef::parse(&input).is_err(), "{input}");
        }
        // Upper-case hex is accepted and lower-cased.
        let upper = format!("a@sha256:{}", "A".repeat(64));
        assert_eq!(
            ImageRef::parse(&upper).unwrap().digest(),
            Some(format!("sha256:{}", "a".repeat(64)).as_str())
        );
    }

    /// The hand-written parser against oci-client's regex parser (the previous implementation)
    /// on inputs whose canonical host is already as written.
    #[test]
    fn agrees_with_oci_client_parser() {
        let d = "a".repeat(64);
        let cases = [
            "nginx".to_string(),
            "nginx:1.25".into(),
            "bitnami/redis".into(),
            "docker.io/library/nginx".into(),
            "index.docker.io/library/nginx".into(),
            "localhost/app".into(),
            "localhost:5000/a/b:v1".into(),
            "registry.example.com/prod/app:v1".into(),
            format!("127.0.0.1:5000/app@sha256:{d}"),
            format!("app:v2@sha256:{d}"),
            format!("r.io/a@sha512:{}", "b".repeat(128)),
            format!("r.io/a@sha384:{}", "b".repeat(96)),
            "test.com:tag".into(),
            "test.com:5000".into(),
            "lowercase:Uppercase".into(),
            "foo_bar.com:8080".into(),
            "foo/foo_bar.com:8080".into(),
            "opensuse/leap:15.3".into(),
            "a__b/c--d/e.f_g".into(),
            "UPPER/case".into(),
            "Uppercase:tag".into(),
            "a//b".into(),
            "app:".into(),
            "app@sha256:abc".into(),
            "app:tag with space".into(),
            "http://x/y".into(),
            "a___b".into(),
            "a-".into(),
            "-a".into(),
            "a:-t".into(),
            "r.io/a:".into(),
            "r.io/a@".into(),
            "@sha256:x".into(),
            "a/b/".into(),
            format!("a@sha256:{}", "a".repeat(65)),
            format!("a@md5:{}", "a".repeat(32)),
            format!("a:{}", "t".repeat(128)),
            format!("a:{}", "t".repeat(129)),
            "a.b.c:5000/x/y:z".into(),
            "sub-domain.example.com/x".into(),
        ];
        for input in &cases {
            let ours = ImageRef::parse(input);
            let theirs = Reference::from_str(input);
            match (&ours, &theirs) {
                (Ok(ours), Ok(theirs)) => {
                    assert_eq!(ours.registry(), theirs.registry(), "{input}");
                    assert_eq!(ours.repository(), theirs.repository(), "{input}");
                    assert_eq!(ours.tag(), theirs.tag(), "{input}");
                    assert_eq!(ours.digest(), theirs.digest(), "{input}");
                }
                (Err(_), Err(_)) => {}
                // oci-client accepts upper-case repositories; signet always refused them.
                (Err(_), Ok(theirs))
                    if theirs.repository().bytes().any(|b| b.is_ascii_uppercase()) => {}
                _ => panic!("{input}: ours {ours:?}, oci-client {theirs:?}"),
            }
        }
        // Deliberate differences: canonical hosts, underscores in host names, IPv6 hosts.
        for (input, ours) in [
            (
                "REGISTRY.example.com/x",
                Some("registry.example.com/x:latest"),
            ),
            ("registry-1.docker.io/x", Some("docker.io/library/x:latest")),
            ("foo_bar.com/x", None),
            ("[::1]:5000/x", Some("[::1]:5000/x:latest")),
        ] {
            assert_eq!(
                ImageRef::parse(input)
                    .ok()
                    .map(|r| r.to_string())
                    .as_deref(),
                ours
            );
        }
    }

    /// Finding 5: a digest-pinned reference is governed by its repository; the tag text changes
    /// nothing, in `images` or `exclude`.
    #[test]
    fn digest_pinned_references_ignore_the_tag() {
        let d = format!("sha256:{}", "d".repeat(64));
        let debug = Glob::new("reg.example/prod/*-debug").unwrap();
        // Before: `*` ran over the `:` into the tag, and the tag counted despite the digest.
        assert!(!debug.matches_image(
            &ImageRef::parse(&format!("reg.example/prod/evil:x-debug@{d}")).unwrap()
        ));
        assert!(!debug.matches_image(&ImageRef::parse("reg.example/prod/evil:x-debug").unwrap()));
        assert!(debug.matches_image(
            &ImageRef::parse(&format!("reg.example/prod/app-debug:v1@{d}")).unwrap()
        ));
        let tagged = Glob::new("ghcr.io/org/app:v*").unwrap();
        assert!(tagged.matches_image(&ImageRef::parse("ghcr.io/org/app:v1").unwrap()));
        assert!(
            !tagged.matches_image(&ImageRef::parse(&format!("ghcr.io/org/app:v1@{d}")).unwrap())
        );
        // The signer still matches the tag being pushed.
        assert!(tagged.matches_push(&ImageRef::parse(&format!("ghcr.io/org/app:v1@{d}")).unwrap()));
        assert!(!Glob::new("r.io/a*").unwrap().matches("r.io/a:b"));
        assert!(!Glob::new("r.io/a?b").unwrap().matches("r.io/a:b"));
        assert!(Glob::new("r.io/a**").unwrap().matches("r.io/a:b"));
        assert!(!Glob::new("*/a").unwrap().matches("r.io:5000/a"));
    }

    #[test]
    fn glob_hosts_are_canonical() {
        for (glob, canonical) in [
            ("Registry.Example.com/**", "registry.example.com/**"),
            (
                "registry.example.com:443/prod/*",
                "registry.example.com/prod/*",
            ),
            ("INDEX.docker.io/nginx", "docker.io/library/nginx"),
            ("registry-1.docker.io/library/*", "docker.io/library/*"),
            ("docker.io/*", "docker.io/library/*"),
            ("docker.io/**", "docker.io/**"),
            ("*.Example.COM/**", "*.example.com/**"),
            ("localhost:80/x", "localhost/x"),
            ("**", "**"),
        ] {
            assert_eq!(Glob::new(glob).unwrap().as_str(), canonical, "{glob}");
        }
        for bad in ["*.example.com:443/**", "bad_host.com/**", "r.io:99999/x"] {
            let err = Glob::new(bad).unwrap_err().to_string();
            assert!(
                err.starts_with("invalid image glob") && !err.contains('\n'),
                "{err}"
            );
        }
        let g = Glob::new("Registry.Example.com/prod/**").unwrap();
        for image in [
            "REGISTRY.EXAMPLE.COM/prod/x",
            "registry.example.com:443/prod/x",
            "registry.example.com/prod/x",
        ] {
            assert!(g.matches_image(&ImageRef::parse(image).unwrap()), "{image}");
        }
        let hub = Glob::new("docker.io/library/*").unwrap();
        for image in ["registry-1.docker.io/library/x", "DOCKER.IO/library/x", "x"] {
            assert!(
                hub.matches_image(&ImageRef::parse(image).unwrap()),
                "{image}"
            );
        }
    }

    #[test]
    fn hostile_glob_is_fast() {
        let g = Glob::new(&"*a".repeat(50)).unwrap();
        assert!(!g.matches(&"a".repeat(49)));
    }
}
