//! Image globs over canonical references (see [`Glob`]).

use std::fmt;

use super::{DOCKER_HUB, ImageRef, ReferenceError, parse_host};

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
/// lower-cased; one ending in `:443` is refused (references never carry the default port).
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
