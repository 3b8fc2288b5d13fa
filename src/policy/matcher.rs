//! Glob matching on the hot path. [`Glob::matches`] is general (a table over tokens × text, with
//! allocations); most policy globs have one of three simple shapes after their literal prefix,
//! which are decided here with a comparison or a scan. Anything else falls back to the general
//! matcher, so the semantics stay those of [`Glob`] (a test checks the two agree).

use crate::reference::{Glob, ImageRef};

/// The forms of an image that globs are matched against, built once per image: one text,
/// `registry/repository` or, when the reference names a tag and no digest,
/// `registry/repository:tag` (a digest fixes the content, and the tag text must not change which
/// globs govern it). The shorter form is a prefix of the longer, so one allocation holds both.
pub(crate) struct ImageTexts {
    text: String,
    /// Length of `registry/repository` within `text`.
    repository_len: usize,
}

impl ImageTexts {
    pub(crate) fn new(image: &ImageRef) -> Self {
        let (registry, repository) = (image.registry(), image.repository());
        let tag = match (image.tag(), image.digest()) {
            (Some(tag), None) => Some(tag),
            _ => None,
        };
        let mut text = String::with_capacity(
            registry.len() + 1 + repository.len() + tag.map_or(0, |t| t.len() + 1),
        );
        text.push_str(registry);
        text.push('/');
        text.push_str(repository);
        let repository_len = text.len();
        if let Some(tag) = tag {
            text.push(':');
            text.push_str(tag);
        }
        ImageTexts {
            text,
            repository_len,
        }
    }

    /// `registry/repository`.
    pub(crate) fn repository(&self) -> &str {
        // `repository_len` is the length of a prefix pushed as whole `str`s: a char boundary.
        self.text.get(..self.repository_len).unwrap_or(&self.text)
    }

    /// `registry/repository:tag`, when matched against.
    pub(crate) fn tagged(&self) -> Option<&str> {
        (self.text.len() > self.repository_len).then_some(self.text.as_str())
    }

    /// The longest form: every other form is a prefix of it.
    pub(crate) fn longest(&self) -> &str {
        &self.text
    }

    fn each(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.repository()).chain(self.tagged())
    }
}

/// What follows the literal prefix of a glob.
#[derive(Clone, Debug)]
enum Rest {
    /// Nothing: the glob is a literal.
    Nothing,
    /// `**`: anything.
    Anything,
    /// `*`: anything without `/` or `:`.
    OneSegment,
    /// Any other pattern: the glob made of the rest alone, matched against the text after the
    /// prefix (the same answer, since the prefix's literal tokens consume exactly the prefix).
    Pattern(Glob),
    /// The rest did not compile on its own (cannot happen for a valid glob): ask the whole glob.
    Whole,
}

/// A compiled glob with its literal prefix and the shape of the rest.
#[derive(Clone, Debug)]
pub(crate) struct ImageGlob {
    glob: Glob,
    prefix: String,
    rest: Rest,
}

impl ImageGlob {
    pub(crate) fn new(glob: Glob) -> Self {
        let prefix = glob.literal_prefix();
        // The prefix is the glob's leading literal characters, so it is a prefix of its text.
        let rest = match glob.as_str().get(prefix.len()..) {
            Some("") => Rest::Nothing,
            Some("**") => Rest::Anything,
            Some("*") => Rest::OneSegment,
            Some(rest) => Glob::new(rest).map_or(Rest::Whole, Rest::Pattern),
            None => Rest::Whole,
        };
        ImageGlob { glob, prefix, rest }
    }

    /// The text before the first wildcard (the index key).
    pub(crate) fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Whether the glob covers the image: the same answer as [`Glob::matches_image`].
    pub(crate) fn matches(&self, texts: &ImageTexts) -> bool {
        texts.each().any(|text| self.matches_text(text))
    }

    fn matches_text(&self, text: &str) -> bool {
        let Some(after) = text.strip_prefix(self.prefix.as_str()) else {
            return false;
        };
        match &self.rest {
            Rest::Nothing => after.is_empty(),
            Rest::Anything => true,
            Rest::OneSegment => !after.contains(['/', ':']),
            Rest::Pattern(rest) => rest.matches(after),
            Rest::Whole => self.glob.matches(text),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agrees_with_the_general_matcher() {
        let globs = [
            "registry.example.com/prod/**",
            "registry.example.com/prod/*",
            "registry.example.com/prod/app",
            "registry.example.com/prod/app:v1",
            "registry.example.com/prod/app:*",
            "registry.example.com/prod/app*",
            "registry.example.com/prod/a?p",
            "registry.example.com/**/app",
            "docker.io/library/*",
            "ghcr.io/org/app:v*",
            "*.example.com/**",
            "**",
            "*",
            "r.io/x/*/y/**",
            "r.io/x/*-debug",
            "r.io/x/a?b",
        ];
        let images = [
            "registry.example.com/prod/app:v1",
            "registry.example.com/prod/app",
            "registry.example.com/prod/app2:v1",
            "registry.example.com/prod/team/app:v1",
            "registry.example.com/production/app:v1",
            "registry.example.com/prod/app@sha256:1111111111111111111111111111111111111111111111111111111111111111",
            "nginx",
            "nginx:1.25",
            "bitnami/redis:7",
            "ghcr.io/org/app:v1.2",
            "ghcr.io/org/app:latest",
            "example.com/x/y",
            "r.io/x/a/y/b:v1",
            "r.io/x/a/b/y:v1",
            "localhost:5000/app:v1",
            "r.io/x/evil:x-debug",
            "r.io/x/evil:x-debug@sha256:1111111111111111111111111111111111111111111111111111111111111111",
            "r.io/x/a:b",
        ];
        for glob in globs {
            let compiled = Glob::new(glob).unwrap();
            let fast = ImageGlob::new(compiled.clone());
            for image in images {
                let image = ImageRef::parse(image).unwrap();
                assert_eq!(
                    fast.matches(&ImageTexts::new(&image)),
                    compiled.matches_image(&image),
                    "{glob} vs {image}"
                );
            }
        }
    }
}
