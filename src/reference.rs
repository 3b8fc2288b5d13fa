//! Image references: parsing and Docker normalisation, canonical string forms, and glob matching.
//!
//! Parsing is built on oci-client's reference type (the Docker grammar): `nginx` becomes
//! `docker.io/library/nginx:latest`; the first path component is a registry host when it contains
//! `.` or `:` or is `localhost`. Everything else in signet uses the canonical forms produced here.

use std::fmt;
use std::str::FromStr;

use oci_client::Reference;

/// Why a string is not an image reference or a glob.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReferenceError {
    #[error("invalid image reference {input:?}: {reason}")]
    Invalid { input: String, reason: String },
    #[error("invalid image glob {input:?}: {reason}")]
    InvalidGlob { input: String, reason: String },
}

/// A normalised image reference: registry host, repository path, optional tag, optional digest.
///
/// When the text names neither tag nor digest, the tag is `latest`, as Docker does.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ImageRef {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<String>,
}

impl ImageRef {
    /// Parses and normalises an image reference as written in a workload or on a command line.
    pub fn parse(input: &str) -> Result<Self, ReferenceError> {
        let invalid = |reason: String| ReferenceError::Invalid {
            input: input.to_string(),
            reason,
        };
        if input.trim() != input || input.is_empty() {
            return Err(invalid("empty or surrounded by white space".into()));
        }
        let parsed = Reference::from_str(input).map_err(|e| invalid(e.to_string()))?;
        if parsed.repository().bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(invalid("repository name must be lowercase".into()));
        }
        let digest = match parsed.digest() {
            Some(d) => {
                Some(normalise_digest(d).ok_or_else(|| invalid(format!("bad digest {d:?}")))?)
            }
            None => None,
        };
        Ok(ImageRef {
            registry: parsed.registry().to_string(),
            repository: parsed.repository().to_string(),
            tag: parsed.tag().map(str::to_string),
            digest,
        })
    }

    /// Parses like [`ImageRef::parse`] but keeps the tag absent when the text names none (no
    /// `latest` default): for identities written in signature payloads.
    pub fn parse_exact(input: &str) -> Result<Self, ReferenceError> {
        let mut parsed = Self::parse(input)?;
        let name = input.split('@').next().unwrap_or(input);
        let last_segment = name.rsplit('/').next().unwrap_or(name);
        if !last_segment.contains(':') {
            parsed.tag = None;
        }
        Ok(parsed)
    }

    /// Builds a reference from its parts (already normalised: e.g. from a registry event).
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
        if parsed.registry != registry || parsed.repository != repository {
            return Err(ReferenceError::Invalid {
                input: text,
                reason: "registry or repository is not in normal form".into(),
            });
        }
        Ok(parsed)
    }

    /// Registry host, with port when given (`docker.io`, `127.0.0.1:5000`).
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

/// A compiled image glob over normalised references.
///
/// - `*` matches any run of characters within one path segment (never `/`);
/// - `**` matches any run of characters, `/` included;
/// - `?` matches one character other than `/`;
/// - everything else matches itself.
///
/// A glob is matched against the repository (`registry.example.com/prod/app`) and, when the
/// reference names a tag, also against `repository:tag`; either match counts. So
/// `registry.example.com/prod/**` covers every repository below `prod/`, `docker.io/library/*`
/// every official image, and `ghcr.io/org/app:v*` only the `v` tags of one repository.
/// Globs are written in normalised form: `nginx` must be written `docker.io/library/nginx`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Glob {
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

impl Glob {
    /// Compiles a glob; rejects empty globs, white space and `***`.
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
        let mut tokens = Vec::with_capacity(text.len());
        let mut chars = text.chars().peekable();
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
            text: text.to_string(),
            tokens,
        })
    }

    /// The glob as written.
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

    /// Whether the glob covers this image (repository, or repository with tag).
    pub fn matches_image(&self, image: &ImageRef) -> bool {
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
                    if reach[j] && text[j] != '/' {
                        next[j + 1] = true;
                    }
                }
            }
            Token::AnyInSegment => {
                for j in 0..=text.len() {
                    if reach[j] || (j > 0 && next[j - 1] && text[j - 1] != '/') {
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

    #[test]
    fn hostile_glob_is_fast() {
        let g = Glob::new(&"*a".repeat(50)).unwrap();
        assert!(!g.matches(&"a".repeat(49)));
    }
}
