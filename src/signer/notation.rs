//! The Notation side of a SigningRule: its key's certificate chain (`key.certificateChain`, PEM
//! inline or `file:/path` on the signer) checked against the opened key.
//!
//! The chain is read and checked again for every image signed (microseconds, and a renewed
//! certificate file is picked up without a restart); the key stays open in the key cache. A rule
//! whose chain is missing or does not fit its key fails its pushes with one line naming why, and
//! fails the signer's start (`open_keys`), before anything is pushed.

use std::sync::Arc;

use crate::crd::SigningKeyRef;
use crate::crypto::SigningKey;
use crate::reference::ImageRef;
use crate::registry::{
    BundleReport, NotationSigner, NotationWriteError, SignatureLock, SignatureStore,
    SubjectManifest, WantedNotation,
};

use super::SignerError;
use super::rules::CompiledRule;

/// Where a rule's certificate chain is.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ChainSource<'a> {
    /// PEM in the rule itself.
    Inline(&'a str),
    /// A file on the signer.
    File(&'a str),
}

/// Where `key.certificateChain` says the chain is; says why it cannot be used.
pub(crate) fn chain_source(key: &SigningKeyRef) -> Result<ChainSource<'_>, String> {
    let Some(text) = key.certificate_chain.as_deref().map(str::trim) else {
        return Err(
            "key.certificateChain is missing (PEM certificates, leaf first, or file:/path)".into(),
        );
    };
    if let Some(path) = text.strip_prefix("file:") {
        if path.is_empty() {
            return Err("key.certificateChain file: names no path".into());
        }
        return Ok(ChainSource::File(path));
    }
    if text.contains("-----BEGIN CERTIFICATE-----") {
        return Ok(ChainSource::Inline(text));
    }
    Err("key.certificateChain is neither PEM certificates nor file:/path".into())
}

/// The key of `rule` with its certificate chain, checked to sign in Notation format now.
pub(crate) fn notation_signer(
    rule: &CompiledRule,
    key: Arc<dyn SigningKey>,
) -> Result<Arc<NotationSigner>, SignerError> {
    let refused = |reason: String| SignerError::Notation {
        rule: rule.name.clone(),
        reason,
    };
    let pem = match chain_source(&rule.key).map_err(refused)? {
        ChainSource::Inline(pem) => pem.to_string(),
        ChainSource::File(path) => std::fs::read_to_string(path)
            .map_err(|e| refused(format!("cannot read key.certificateChain {path}: {e}")))?,
    };
    NotationSigner::new(key, &pem, rule.notation_envelope)
        .map(Arc::new)
        .map_err(|e| refused(e.to_string()))
}

/// Under `lock`: makes sure `image`@`digest` carries a Notation signature by each of `rules`
/// (their keys open), writing only the missing ones.
pub(crate) async fn write(
    store: &SignatureStore,
    lock: &SignatureLock,
    (image, digest): (&ImageRef, &str),
    subject: Option<SubjectManifest>,
    rules: &[&(Arc<CompiledRule>, Arc<dyn SigningKey>)],
    check_after_write: bool,
) -> Result<BundleReport, SignerError> {
    let mut wanted = Vec::with_capacity(rules.len());
    for (rule, key) in rules {
        wanted.push(WantedNotation {
            signer: notation_signer(rule, Arc::clone(key))?,
            signature_type: rule.signature_type,
            annotations: Default::default(),
        });
    }
    store
        .ensure_notation(lock, image, digest, subject, &wanted, check_after_write)
        .await
        .map_err(|e| match e {
            NotationWriteError::Write(e) => super::engine::write_error(e, rules),
            NotationWriteError::Notation { index, cause } => SignerError::Notation {
                rule: rules
                    .get(index)
                    .map(|(r, _)| r.name.clone())
                    .unwrap_or_default(),
                reason: cause.to_string(),
            },
            NotationWriteError::Task(why) => SignerError::Internal(why),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_ref(chain: Option<&str>) -> SigningKeyRef {
        SigningKeyRef {
            reference: "file:/k.pem".into(),
            id: None,
            certificate_chain: chain.map(str::to_string),
        }
    }

    #[test]
    fn the_chain_is_pem_or_a_file() {
        assert_eq!(
            chain_source(&key_ref(Some("file:/etc/signet/chain.pem"))),
            Ok(ChainSource::File("/etc/signet/chain.pem"))
        );
        let pem = "-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n";
        assert_eq!(
            chain_source(&key_ref(Some(pem))),
            Ok(ChainSource::Inline(pem.trim()))
        );
        for bad in [None, Some("file:"), Some("/etc/chain.pem")] {
            let err = chain_source(&key_ref(bad)).unwrap_err();
            assert!(err.starts_with("key.certificateChain"), "{err}");
        }
    }
}
