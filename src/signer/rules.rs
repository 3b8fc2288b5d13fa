//! Which SigningRules cover a pushed image, and how the registry address in events maps to the
//! address scopes and signatures use.
//!
//! Address mapping: events name the registry as the pusher reached it (`request.host`). Scopes,
//! signature identities and the signer's own registry requests all use the *scope host*: the
//! event host, unless `--registry-alias EVENT_HOST=SCOPE_HOST` says otherwise. So a registry
//! pushed to as `registry.registry.svc:5000` but pulled by workloads as `registry.example.com`
//! is configured with `--registry-alias registry.registry.svc:5000=registry.example.com`, and its
//! scopes and signatures name `registry.example.com/...`; the signer then reaches it there too.

use std::collections::HashMap;
use std::sync::Arc;

use crate::crd::{SigningKeyRef, SigningRule, Trigger};
use crate::crypto::Algorithm;
use crate::reference::{Glob, ImageRef};
use crate::signature::{SignatureFormat, SignatureType};

use super::SignerError;

/// Event host -> scope host.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AddressMap {
    aliases: HashMap<String, String>,
}

impl AddressMap {
    /// Parses `EVENT_HOST=SCOPE_HOST` pairs (hosts compared case-insensitively).
    pub fn parse<S: AsRef<str>>(pairs: &[S]) -> Result<Self, SignerError> {
        let mut aliases = HashMap::new();
        for pair in pairs {
            let pair = pair.as_ref().trim();
            let invalid =
                |why: &str| SignerError::Config(format!("registry alias {pair:?}: {why}"));
            let (event, scope) = pair
                .split_once('=')
                .ok_or_else(|| invalid("expected EVENT_HOST=SCOPE_HOST"))?;
            let (event, scope) = (event.trim(), scope.trim());
            for host in [event, scope] {
                if host.is_empty() || host.contains(['/', ' ', '@']) {
                    return Err(invalid(
                        "hosts are host or host:port, without scheme or path",
                    ));
                }
            }
            aliases.insert(event.to_ascii_lowercase(), scope.to_ascii_lowercase());
        }
        Ok(AddressMap { aliases })
    }

    /// The scope host for a host named in an event.
    pub fn scope_host(&self, event_host: &str) -> String {
        let lower = event_host.to_ascii_lowercase();
        self.aliases.get(&lower).cloned().unwrap_or(lower)
    }
}

/// A SigningRule ready to match: its globs compiled.
#[derive(Clone, Debug)]
pub struct CompiledRule {
    /// `metadata.name`.
    pub name: String,
    /// The scope globs that compiled (invalid ones are dropped with a warning).
    pub scope: Vec<Glob>,
    /// Where the key lives.
    pub key: SigningKeyRef,
    /// What the key signs with.
    pub algorithm: Algorithm,
    /// `Default` (digest + tag) or `Simple` (digest).
    pub signature_type: SignatureType,
    /// `Automatic` or `Manual`.
    pub trigger: Trigger,
    /// The formats written (at least one: an empty list means both).
    pub formats: Vec<SignatureFormat>,
    /// The Notation envelope (with `Notation` among the formats).
    pub notation_envelope: crate::signature::notation::EnvelopeFormat,
}

impl CompiledRule {
    /// Whether the rule's scope covers the image (repository, or repository with tag). A push
    /// names the tag being written, so tag-shaped scopes apply even though the digest is known.
    pub fn covers(&self, image: &ImageRef) -> bool {
        self.scope.iter().any(|g| g.matches_push(image))
    }

    /// Whether some tag of `repository` (`host/path`) may be covered: for enumeration.
    pub fn may_cover_repository(&self, repository: &str) -> bool {
        self.scope.iter().any(|g| {
            g.matches(repository) || repository_part(g).is_some_and(|r| r.matches(repository))
        })
    }

    /// The registry hosts the scope names literally (a host with a wildcard cannot be listed).
    pub fn scope_hosts(&self) -> Vec<String> {
        self.scope
            .iter()
            .filter_map(|g| {
                let prefix = g.literal_prefix();
                let (host, _) = prefix.split_once('/')?;
                (!host.is_empty()).then(|| host.to_ascii_lowercase())
            })
            .collect()
    }
}

/// For a glob whose last segment names a tag (`host/app:v*`), the glob over the repository part.
fn repository_part(glob: &Glob) -> Option<Glob> {
    let text = glob.as_str();
    let last_slash = text.rfind('/')?;
    let colon = text[last_slash..].find(':')? + last_slash;
    Glob::new(&text[..colon]).ok()
}

/// The rules of one published picture, compiled.
#[derive(Clone, Debug, Default)]
pub struct RuleSet {
    rules: Vec<Arc<CompiledRule>>,
}

impl RuleSet {
    /// Compiles every rule; scope globs that do not compile are logged and dropped (a rule left
    /// with none matches nothing).
    pub fn compile(rules: &[SigningRule]) -> Self {
        let compiled = rules
            .iter()
            .map(|rule| {
                let name = rule.metadata.name.clone().unwrap_or_default();
                if let Some(attribute) = super::keys::forbidden_rule_attribute(&rule.spec.key.reference) {
                    // Kept, so that its pushes fail loudly (the key never opens) instead of
                    // going unsigned in silence.
                    tracing::error!(rule = %name, "{}", super::keys::forbidden_attribute_message(attribute));
                }
                if rule.spec.formats.contains(&SignatureFormat::Notation)
                    && let Err(why) = super::notation::chain_source(&rule.spec.key)
                {
                    // Kept, so that its pushes fail loudly instead of going unsigned in silence.
                    tracing::error!(rule = %name, "SigningRule cannot sign in Notation format: {why}");
                }
                let scope = rule
                    .spec
                    .scope
                    .iter()
                    .filter_map(|text| match Glob::new(text) {
                        Ok(g) => Some(g),
                        Err(e) => {
                            tracing::warn!(rule = %name, error = %e, "SigningRule scope glob ignored");
                            None
                        }
                    })
                    .collect();
                Arc::new(CompiledRule {
                    name,
                    scope,
                    key: rule.spec.key.clone(),
                    algorithm: rule.spec.algorithm,
                    signature_type: rule.spec.signature_type,
                    trigger: rule.spec.trigger,
                    formats: if rule.spec.formats.is_empty() {
                        SignatureFormat::ALL.to_vec()
                    } else {
                        rule.spec.formats.clone()
                    },
                    notation_envelope: rule.spec.notation_envelope.into(),
                })
            })
            .collect();
        RuleSet { rules: compiled }
    }

    /// Every rule.
    pub fn all(&self) -> &[Arc<CompiledRule>] {
        &self.rules
    }

    /// The rules with this trigger whose scope covers `image`.
    pub fn covering(&self, image: &ImageRef, trigger: Trigger) -> Vec<Arc<CompiledRule>> {
        self.rules
            .iter()
            .filter(|r| r.trigger == trigger && r.covers(image))
            .cloned()
            .collect()
    }

    /// Whether some rule covers `image`, whatever its trigger.
    pub fn any_covers(&self, image: &ImageRef) -> bool {
        self.rules.iter().any(|r| r.covers(image))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::SigningRuleSpec;

    fn rule(name: &str, scope: &[&str], trigger: Trigger) -> SigningRule {
        SigningRule::new(
            name,
            SigningRuleSpec {
                scope: scope.iter().map(|s| s.to_string()).collect(),
                key: SigningKeyRef {
                    reference: "file:/k.pem".into(),
                    id: None,
                    certificate_chain: None,
                },
                algorithm: Algorithm::EcdsaP256Sha256,
                signature_type: SignatureType::Default,
                trigger,
                formats: crate::signature::SignatureFormat::ALL.to_vec(),
                notation_envelope: Default::default(),
            },
        )
    }

    fn image(text: &str) -> ImageRef {
        ImageRef::parse(text).unwrap()
    }

    #[test]
    fn aliases_map_event_hosts_to_scope_hosts() {
        let map = AddressMap::parse(&["registry.svc:5000=Registry.Example.com"]).unwrap();
        assert_eq!(map.scope_host("REGISTRY.svc:5000"), "registry.example.com");
        assert_eq!(map.scope_host("127.0.0.1:5000"), "127.0.0.1:5000");
        for bad in ["nohost", "=x", "x=", "http://a=b", "a=b/c"] {
            assert!(AddressMap::parse(&[bad]).is_err(), "{bad}");
        }
    }

    #[test]
    fn rules_cover_their_scope_with_their_trigger() {
        let set = RuleSet::compile(&[
            rule("prod", &["reg.example/prod/**"], Trigger::Automatic),
            rule("tags", &["reg.example/app:v*"], Trigger::Automatic),
            rule("manual", &["reg.example/**"], Trigger::Manual),
            rule("broken", &["***", "reg.example/x"], Trigger::Automatic),
        ]);
        let names = |img: &str, t: Trigger| -> Vec<String> {
            set.covering(&image(img), t)
                .iter()
                .map(|r| r.name.clone())
                .collect()
        };
        assert_eq!(
            names("reg.example/prod/a/b:1", Trigger::Automatic),
            ["prod"]
        );
        assert_eq!(names("reg.example/app:v2", Trigger::Automatic), ["tags"]);
        assert!(names("reg.example/app:latest", Trigger::Automatic).is_empty());
        assert_eq!(names("reg.example/x:1", Trigger::Automatic), ["broken"]);
        assert_eq!(names("reg.example/other:1", Trigger::Manual), ["manual"]);
        assert!(names("other.example/prod/a:1", Trigger::Automatic).is_empty());
        assert!(set.any_covers(&image("reg.example/other:1")));
    }

    #[test]
    fn enumeration_finds_hosts_and_candidate_repositories() {
        let set = RuleSet::compile(&[
            rule(
                "a",
                &["reg.example/prod/**", "*.example/x"],
                Trigger::Automatic,
            ),
            rule("b", &["reg.example/app:v*"], Trigger::Automatic),
        ]);
        assert_eq!(set.all()[0].scope_hosts(), ["reg.example"]);
        assert!(set.all()[0].may_cover_repository("reg.example/prod/app"));
        assert!(!set.all()[0].may_cover_repository("reg.example/dev/app"));
        assert!(set.all()[1].may_cover_repository("reg.example/app"));
        assert!(!set.all()[1].may_cover_repository("reg.example/app2"));
    }
}
