//! OCI 1.1 referrers of a digest: discovery, bounded reads, and classification of each
//! referrer from its own manifest. Generic over signature formats: Sigstore bundles (cosign
//! v3) and Notation signatures are both found here; the format layers (`signature::bundle`,
//! Notation) judge the blobs.
//!
//! Discovery asks `GET /v2/<name>/referrers/<digest>`; a registry without the API (404, or
//! 400/405/501: Debian's distribution 2.8 answers 404) is read through the fallback tag
//! `sha256-<hex>`, an OCI index that writers keep up to date. Either way the list is attacker
//! input (whoever can push can add entries): an entry's `artifactType` is never trusted (older
//! tools label bundles `application/vnd.oci.empty.v1+json` or leave it empty), so each candidate
//! manifest is fetched (by digest, re-hashed) and classified from its own `artifactType`,
//! config media type, layers and `subject`. Bounded: at most [`MAX_REFERRERS`] candidates,
//! smallest declared first, manifests within [`REFERRER_MANIFEST_BUDGET`] in all, blobs at
//! most [`MAX_REFERRER_BLOB`] each and [`REFERRER_BLOB_BUDGET`] per lookup, fetched only on
//! demand ([`SignatureStore::referrer_blob`]). What is left out is counted by reason.

use std::collections::{BTreeMap, HashSet};

use futures::StreamExt as _;
use reqwest::{Method, StatusCode};
use serde::{Deserialize, Serialize};

use super::budget::{BLOB_FETCHES, FETCHES_PER_LOOKUP, SkipReason, SkippedLayers};
use super::client::{Access, Call};
use super::error::RegistryError;
use super::listing::next_link;
use super::{MAX_MANIFEST_BYTES, OCI_INDEX_MEDIA_TYPE, SignatureStore};
use crate::reference::{ImageRef, normalise_digest};
use crate::signature::{Descriptor, is_bundle_media_type};

/// Referrers of one digest considered at most; the rest are skipped and counted.
pub const MAX_REFERRERS: usize = 64;

/// Manifest bytes one discovery may fetch in all (each manifest is also within
/// [`MAX_MANIFEST_BYTES`]). A bundle's manifest is under 1 KiB.
pub const REFERRER_MANIFEST_BUDGET: u64 = 4 * 1024 * 1024;

/// Largest referrer blob read (a key-based bundle with a Rekor entry is a few KiB).
pub const MAX_REFERRER_BLOB: u64 = 1024 * 1024;

/// Referrer blob bytes one lookup may fetch in all.
pub const REFERRER_BLOB_BUDGET: u64 = 1024 * 1024;

/// Pages of the referrers API followed at most.
const MAX_REFERRER_PAGES: usize = 8;

/// `artifactType` of a Notation signature manifest.
pub const NOTATION_ARTIFACT_TYPE: &str = "application/vnd.cncf.notary.signature";
/// Notation's JWS envelope layer.
pub const NOTATION_JWS_MEDIA_TYPE: &str = "application/jose+json";
/// Notation's COSE envelope layer.
pub const NOTATION_COSE_MEDIA_TYPE: &str = "application/cose";
/// The empty JSON config of OCI artifacts (`{}`).
pub const OCI_EMPTY_MEDIA_TYPE: &str = "application/vnd.oci.empty.v1+json";

/// What a referrer is, decided from its own manifest (never from the index entry).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReferrerKind {
    /// A Sigstore bundle (cosign v3): [`Referrer::layer`] is the bundle layer.
    SigstoreBundle,
    /// A Notation signature: [`Referrer::layer`] is the envelope layer.
    NotationSignature {
        /// `application/jose+json` or `application/cose`, from the layer descriptor.
        envelope_media_type: String,
    },
    /// Anything else (SBOMs, other artifacts, manifests that do not name the subject).
    Other,
}

/// Where the referrers were found.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReferrersSource {
    /// The registry's referrers API.
    Api,
    /// The fallback index tag `sha256-<hex>`.
    FallbackTag,
    /// The registry has no referrers API and no fallback index exists for the digest.
    None,
}

/// One descriptor of an OCI index (the referrers answer or the fallback index).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexEntry {
    /// The manifest's media type, as the index says.
    #[serde(rename = "mediaType", default)]
    pub media_type: String,
    /// The manifest's digest.
    pub digest: String,
    /// The manifest's size, as the index says (used to budget before fetching).
    #[serde(default)]
    pub size: u64,
    /// As the index says; never trusted, kept when rewriting the fallback index.
    #[serde(
        rename = "artifactType",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub artifact_type: Option<String>,
    /// As the index says.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// A referrer as fetched and classified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Referrer {
    /// The manifest's digest (its bytes hash to it).
    pub digest: String,
    /// The manifest bytes as served.
    pub manifest: Vec<u8>,
    /// From the manifest: `artifactType`, else the config media type.
    pub artifact_type: Option<String>,
    /// What the manifest is.
    pub kind: ReferrerKind,
    /// For signature kinds, the one layer holding the signature (bundle or envelope).
    pub layer: Option<Descriptor>,
    /// The manifest's own annotations.
    pub annotations: BTreeMap<String, String>,
}

/// What discovery found for one digest, within the bounds.
#[derive(Clone, Debug)]
pub struct Referrers {
    /// Where the list came from.
    pub source: ReferrersSource,
    /// Every referrer fetched, classified, in the order fetched (smallest declared first).
    pub referrers: Vec<Referrer>,
    /// Entries not read, by reason (too many, over budget, unreadable, another subject).
    pub skipped: SkippedLayers,
    /// The index entries as listed (after de-duplication), for a writer of the fallback index.
    pub entries: Vec<IndexEntry>,
    /// Set when a listed referrer was skipped because the registry failed (5xx, throttled),
    /// not because of what it holds: a reader counts it skipped, a writer must not decide
    /// from such a read.
    pub transient_failure: Option<String>,
}

impl Referrers {
    /// The referrers of `kind`'s variant (e.g. every Sigstore bundle).
    pub fn of_kind<'a>(&'a self, kind: &'a ReferrerKind) -> impl Iterator<Item = &'a Referrer> {
        self.referrers
            .iter()
            .filter(move |r| std::mem::discriminant(&r.kind) == std::mem::discriminant(kind))
    }
}

/// What the referrers' blob reads may still spend in one lookup.
#[derive(Clone, Debug)]
pub struct BlobBudget {
    remaining: u64,
}

impl Default for BlobBudget {
    fn default() -> Self {
        BlobBudget {
            remaining: REFERRER_BLOB_BUDGET,
        }
    }
}

impl BlobBudget {
    /// A budget of `bytes`.
    pub fn new(bytes: u64) -> Self {
        BlobBudget { remaining: bytes }
    }

    /// Bytes still available.
    pub fn remaining(&self) -> u64 {
        self.remaining
    }

    /// Takes `bytes` when they fit, else leaves the budget as it is.
    fn take(&mut self, bytes: u64) -> bool {
        if bytes > self.remaining {
            return false;
        }
        self.remaining -= bytes;
        true
    }
}

#[derive(Deserialize)]
struct IndexDoc {
    #[serde(rename = "schemaVersion")]
    schema_version: u32,
    #[serde(default)]
    manifests: Vec<IndexEntry>,
}

#[derive(Deserialize)]
struct ConfigRef {
    #[serde(rename = "mediaType", default)]
    media_type: String,
}

#[derive(Deserialize)]
struct SubjectRef {
    #[serde(default)]
    digest: String,
}

#[derive(Deserialize)]
struct ArtifactManifest {
    #[serde(rename = "schemaVersion")]
    schema_version: u32,
    #[serde(rename = "artifactType", default)]
    artifact_type: Option<String>,
    config: Option<ConfigRef>,
    #[serde(default)]
    layers: Vec<Descriptor>,
    subject: Option<SubjectRef>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

/// The entries of an OCI index (the referrers answer or the fallback index).
pub fn parse_index(bytes: &[u8]) -> Result<Vec<IndexEntry>, String> {
    let doc: IndexDoc =
        serde_json::from_slice(bytes).map_err(|e| format!("not an OCI index: {e}"))?;
    if doc.schema_version != 2 {
        return Err(format!("index has schemaVersion {}", doc.schema_version));
    }
    Ok(doc.manifests)
}

/// Builds an OCI image index listing `entries` (the fallback index as writers store it).
pub fn build_index(entries: &[IndexEntry]) -> Result<Vec<u8>, serde_json::Error> {
    serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX_MEDIA_TYPE,
        "manifests": entries,
    }))
}

/// The fallback tag of `digest`: `sha256-<hex>`.
pub fn fallback_tag(digest: &str) -> Option<String> {
    normalise_digest(digest).map(|d| d.replacen(':', "-", 1))
}

/// Classifies one referrer manifest of `subject`: a manifest that does not name `subject` as
/// its `subject` is [`ReferrerKind::Other`] (a fallback index can list anything). `Err` when
/// the bytes are not an image manifest at all.
pub fn classify(manifest: &[u8], digest: &str, subject: &str) -> Result<Referrer, String> {
    let doc: ArtifactManifest =
        serde_json::from_slice(manifest).map_err(|e| format!("not an image manifest: {e}"))?;
    if doc.schema_version != 2 {
        return Err(format!("manifest has schemaVersion {}", doc.schema_version));
    }
    let config_type = doc.config.map(|c| c.media_type).filter(|t| !t.is_empty());
    let artifact_type = doc
        .artifact_type
        .filter(|t| !t.is_empty())
        .or(config_type.clone());
    let names_subject = doc
        .subject
        .as_ref()
        .is_some_and(|s| s.digest.eq_ignore_ascii_case(subject));
    let mut kind = ReferrerKind::Other;
    let mut layer = None;
    if names_subject {
        let declared = artifact_type.as_deref().unwrap_or_default();
        let bundle_layers: Vec<&Descriptor> = doc
            .layers
            .iter()
            .filter(|l| is_bundle_media_type(&l.media_type))
            .collect();
        let envelope_layers: Vec<&Descriptor> = doc
            .layers
            .iter()
            .filter(|l| {
                l.media_type == NOTATION_JWS_MEDIA_TYPE || l.media_type == NOTATION_COSE_MEDIA_TYPE
            })
            .collect();
        if declared == NOTATION_ARTIFACT_TYPE {
            if let [one] = envelope_layers.as_slice() {
                kind = ReferrerKind::NotationSignature {
                    envelope_media_type: one.media_type.clone(),
                };
                layer = Some((*one).clone());
            }
        } else if (declared.is_empty()
            || is_bundle_media_type(declared)
            || declared == OCI_EMPTY_MEDIA_TYPE)
            && doc.layers.len() == 1
            && bundle_layers.len() == 1
        {
            // cosign writes the bundle type as artifactType; older writers leave it out or
            // name the empty config: the one bundle layer decides.
            kind = ReferrerKind::SigstoreBundle;
            layer = Some(bundle_layers[0].clone());
        }
    }
    Ok(Referrer {
        digest: digest.to_string(),
        manifest: manifest.to_vec(),
        artifact_type,
        kind,
        layer,
        annotations: doc.annotations,
    })
}

/// A failure of the registry that may pass (as opposed to what a referrer holds).
pub(crate) fn is_transient(e: &RegistryError) -> bool {
    matches!(
        e,
        RegistryError::BadResponse { .. } | RegistryError::RateLimited { .. }
    )
}

/// Whether an error body is the distribution spec's `{"errors":[...]}` (a registry that has
/// the route, answering about this request) rather than a bare "404 page not found".
fn answers_with_oci_error(body: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(body)
        .is_ok_and(|v| v.get("errors").is_some_and(serde_json::Value::is_array))
}

/// How a referrers API answer is read: the list, or "the registry has no such API".
enum ApiAnswer {
    Listed(Vec<IndexEntry>),
    NotImplemented,
}

impl SignatureStore {
    /// The referrers of `digest` in `image`'s repository, each fetched and classified within
    /// the bounds of this module. An error means the registry could not be asked; an unreadable
    /// index or manifest is skipped and counted instead.
    pub async fn referrers(
        &self,
        image: &ImageRef,
        digest: &str,
    ) -> Result<Referrers, RegistryError> {
        let digest = normalise_digest(digest).ok_or_else(|| RegistryError::InvalidRequest {
            host: image.registry().to_string(),
            reason: format!("{digest:?} is not a digest"),
        })?;
        let mut skipped = SkippedLayers::default();
        let mut transient_failure = None;
        let (source, listed) = match self.referrers_api(image, &digest).await? {
            ApiAnswer::Listed(entries) => (ReferrersSource::Api, entries),
            ApiAnswer::NotImplemented => match self.fallback_index(image, &digest).await? {
                Some(Ok(entries)) => (ReferrersSource::FallbackTag, entries),
                Some(Err(why)) => {
                    tracing::debug!(reason = %why, "fallback referrers index unreadable");
                    skipped.add(SkipReason::MalformedManifest, 1);
                    (ReferrersSource::FallbackTag, Vec::new())
                }
                None => (ReferrersSource::None, Vec::new()),
            },
        };
        let mut seen = HashSet::new();
        let entries: Vec<IndexEntry> = listed
            .into_iter()
            .filter(|e| seen.insert(e.digest.to_ascii_lowercase()))
            .collect();
        let referrers = self
            .fetch_referrers(
                image,
                &digest,
                &entries,
                &mut skipped,
                &mut transient_failure,
            )
            .await?;
        Ok(Referrers {
            source,
            referrers,
            skipped,
            entries,
            transient_failure,
        })
    }

    /// One referrer layer's blob, within `budget` and [`MAX_REFERRER_BLOB`]; `Ok(None)` (and
    /// nothing fetched) when its declared size does not fit. The bytes hash to the layer's
    /// digest and are no longer than declared.
    pub async fn referrer_blob(
        &self,
        image: &ImageRef,
        layer: &Descriptor,
        budget: &mut BlobBudget,
    ) -> Result<Option<Vec<u8>>, RegistryError> {
        if layer.size > MAX_REFERRER_BLOB || !budget.take(layer.size) {
            return Ok(None);
        }
        let _permit = BLOB_FETCHES.acquire().await.ok();
        let limit = usize::try_from(layer.size).unwrap_or(usize::MAX);
        self.client
            .fetch_blob(&image.with_tag("latest"), &layer.digest, limit)
            .await
            .map(Some)
    }

    async fn referrers_api(
        &self,
        image: &ImageRef,
        digest: &str,
    ) -> Result<ApiAnswer, RegistryError> {
        if self.client.lacks_referrers_api(image.registry()) {
            return Ok(ApiAnswer::NotImplemented);
        }
        let what = format!("referrers of {}@{digest}", image.repository());
        let mut url = self.client.v2_url(
            image.registry(),
            &format!("{}/referrers/{digest}", image.repository()),
        )?;
        let base = self.client.base_url(image.registry())?;
        let mut entries = Vec::new();
        for page in 0..MAX_REFERRER_PAGES {
            let call = Call {
                registry: image.registry(),
                repository: image.repository(),
                access: Access::Pull,
                method: Method::GET,
                url: url.clone(),
                accept: Some(OCI_INDEX_MEDIA_TYPE),
                content_type: None,
                body: None,
            };
            let response = self.client.send(&call).await?;
            let status = response.status();
            if page == 0
                && matches!(
                    status,
                    StatusCode::NOT_FOUND
                        | StatusCode::BAD_REQUEST
                        | StatusCode::METHOD_NOT_ALLOWED
                        | StatusCode::NOT_IMPLEMENTED
                )
            {
                let body_seen = self.client.error_body(image.registry(), response).await;
                // A 404 for a digest nobody refers to is also how some registries with the API
                // answer; an OCI error body says so. A plain 404 page means no API here.
                if status != StatusCode::NOT_FOUND || !answers_with_oci_error(&body_seen) {
                    self.client.remember_no_referrers_api(image.registry());
                }
                return Ok(ApiAnswer::NotImplemented);
            }
            if !status.is_success() {
                return Err(self.client.failure(&call, &what, response).await);
            }
            let next = next_link(response.headers(), response.url());
            let body = self
                .client
                .read_body(image.registry(), &what, response, MAX_MANIFEST_BYTES)
                .await?;
            let listed = parse_index(&body)
                .map_err(|reason| RegistryError::bad_response(image.registry(), &what, reason))?;
            entries.extend(listed);
            match next {
                Some(next)
                    if entries.len() < MAX_REFERRERS
                        && super::transport::same_origin(&next, &base) =>
                {
                    url = next;
                }
                _ => break,
            }
        }
        Ok(ApiAnswer::Listed(entries))
    }

    /// The fallback index: `None` when the tag does not exist, `Some(Err)` when it holds
    /// something that is not an OCI index.
    pub(crate) async fn fallback_index(
        &self,
        image: &ImageRef,
        digest: &str,
    ) -> Result<Option<Result<Vec<IndexEntry>, String>>, RegistryError> {
        let tag = fallback_tag(digest).ok_or_else(|| RegistryError::InvalidRequest {
            host: image.registry().to_string(),
            reason: format!("{digest:?} is not a digest"),
        })?;
        let Some(manifest) = self.client.fetch_manifest(&image.with_tag(&tag)).await? else {
            return Ok(None);
        };
        Ok(Some(parse_index(&manifest.bytes)))
    }

    /// Fetches and classifies the candidates, smallest declared first, within the bounds.
    async fn fetch_referrers(
        &self,
        image: &ImageRef,
        subject: &str,
        entries: &[IndexEntry],
        skipped: &mut SkippedLayers,
        transient_failure: &mut Option<String>,
    ) -> Result<Vec<Referrer>, RegistryError> {
        let mut candidates: Vec<(u64, usize, String)> = Vec::with_capacity(entries.len());
        for (i, entry) in entries.iter().enumerate() {
            match normalise_digest(&entry.digest) {
                Some(d) if d != subject => candidates.push((entry.size, i, d)),
                _ => skipped.add(SkipReason::Unreadable, 1),
            }
        }
        candidates.sort_unstable();
        if candidates.len() > MAX_REFERRERS {
            skipped.add(SkipReason::TooManyLayers, candidates.len() - MAX_REFERRERS);
            candidates.truncate(MAX_REFERRERS);
        }
        let mut spent = 0u64;
        let mut chosen = Vec::with_capacity(candidates.len());
        for (n, (size, _, digest)) in candidates.iter().enumerate() {
            // A size of 0 is undeclared (or a lie the digest check will catch): charge the cap.
            let charge = if *size == 0 {
                MAX_MANIFEST_BYTES as u64
            } else {
                *size
            };
            if *size > MAX_MANIFEST_BYTES as u64 {
                skipped.add(SkipReason::OverPayloadCap, 1);
                continue;
            }
            if spent + charge > REFERRER_MANIFEST_BUDGET {
                skipped.add(SkipReason::OverBudget, candidates.len() - n);
                break;
            }
            spent += charge;
            chosen.push((
                usize::try_from(charge).unwrap_or(MAX_MANIFEST_BYTES),
                digest,
            ));
        }
        let mut fetches = Vec::with_capacity(chosen.len());
        for (limit, digest) in chosen {
            let reference = image.with_digest(digest);
            fetches.push(async move {
                let _permit = BLOB_FETCHES.acquire().await.ok();
                let fetched = self.client.fetch_manifest_limited(&reference, limit).await;
                (digest.clone(), fetched)
            });
        }
        let results: Vec<_> = futures::stream::iter(fetches)
            .buffered(FETCHES_PER_LOOKUP)
            .collect()
            .await;
        let mut referrers = Vec::with_capacity(results.len());
        for (digest, result) in results {
            match result {
                Ok(Some(manifest)) => match classify(&manifest.bytes, &digest, subject) {
                    Ok(referrer) => referrers.push(referrer),
                    Err(why) => {
                        tracing::debug!(%digest, reason = %why, "referrer unreadable; skipped");
                        skipped.add(SkipReason::MalformedManifest, 1);
                    }
                },
                Ok(None) => skipped.add(SkipReason::Unreadable, 1),
                Err(e) if e.is_unreachable() || matches!(e, RegistryError::Unauthorized { .. }) => {
                    return Err(e);
                }
                Err(e) => {
                    tracing::debug!(%digest, error = %e, "referrer unreadable; skipped");
                    if is_transient(&e) {
                        *transient_failure = Some(e.to_string());
                    }
                    skipped.add(SkipReason::Unreadable, 1);
                }
            }
        }
        Ok(referrers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::sha256_digest;

    const SUBJECT: &str = "sha256:4e31af7b264bca7496760c2c94771a1cedb23532f08ad33a3d0518163529c356";

    fn manifest(
        artifact_type: Option<&str>,
        config: &str,
        layers: &[&str],
        subject: &str,
    ) -> Vec<u8> {
        let layers: Vec<_> = layers
            .iter()
            .map(|t| serde_json::json!({"mediaType": t, "digest": sha256_digest(t.as_bytes()), "size": 10}))
            .collect();
        let mut doc = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": config, "digest": sha256_digest(b"{}"), "size": 2},
            "layers": layers,
            "subject": {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": subject, "size": 100},
        });
        if let Some(t) = artifact_type {
            doc["artifactType"] = serde_json::json!(t);
        }
        serde_json::to_vec(&doc).unwrap()
    }

    const BUNDLE: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";

    #[test]
    fn a_bundle_is_known_by_its_manifest_whatever_the_label() {
        for (artifact_type, config) in [
            (Some(BUNDLE), OCI_EMPTY_MEDIA_TYPE),
            (None, OCI_EMPTY_MEDIA_TYPE),
            (Some(OCI_EMPTY_MEDIA_TYPE), OCI_EMPTY_MEDIA_TYPE),
            (
                Some("application/vnd.dev.sigstore.bundle+json;version=0.2"),
                OCI_EMPTY_MEDIA_TYPE,
            ),
        ] {
            let bytes = manifest(artifact_type, config, &[BUNDLE], SUBJECT);
            let r = classify(&bytes, "sha256:x", SUBJECT).unwrap();
            assert_eq!(r.kind, ReferrerKind::SigstoreBundle, "{artifact_type:?}");
            assert_eq!(r.layer.unwrap().media_type, BUNDLE);
        }
    }

    #[test]
    fn notation_and_other_artifacts_are_told_apart() {
        let bytes = manifest(
            Some(NOTATION_ARTIFACT_TYPE),
            OCI_EMPTY_MEDIA_TYPE,
            &[NOTATION_JWS_MEDIA_TYPE],
            SUBJECT,
        );
        let r = classify(&bytes, "sha256:x", SUBJECT).unwrap();
        assert_eq!(
            r.kind,
            ReferrerKind::NotationSignature {
                envelope_media_type: NOTATION_JWS_MEDIA_TYPE.into()
            }
        );
        // Notation's older form: the type in the config media type.
        let bytes = manifest(
            None,
            NOTATION_ARTIFACT_TYPE,
            &[NOTATION_COSE_MEDIA_TYPE],
            SUBJECT,
        );
        assert!(matches!(
            classify(&bytes, "sha256:x", SUBJECT).unwrap().kind,
            ReferrerKind::NotationSignature { .. }
        ));
        // An SBOM, a bundle layer under another artifact type, two bundle layers, a bundle for
        // another subject: not signatures of this digest.
        let other = format!("sha256:{}", "e".repeat(64));
        for bytes in [
            manifest(
                Some("application/spdx+json"),
                OCI_EMPTY_MEDIA_TYPE,
                &["application/spdx+json"],
                SUBJECT,
            ),
            manifest(
                Some("application/spdx+json"),
                OCI_EMPTY_MEDIA_TYPE,
                &[BUNDLE],
                SUBJECT,
            ),
            manifest(
                Some(BUNDLE),
                OCI_EMPTY_MEDIA_TYPE,
                &[BUNDLE, BUNDLE],
                SUBJECT,
            ),
            manifest(Some(BUNDLE), OCI_EMPTY_MEDIA_TYPE, &[BUNDLE], &other),
        ] {
            let r = classify(&bytes, "sha256:x", SUBJECT).unwrap();
            assert_eq!(r.kind, ReferrerKind::Other);
            assert!(r.layer.is_none());
        }
        assert!(classify(b"[]", "sha256:x", SUBJECT).is_err());
        assert!(classify(br#"{"schemaVersion":1}"#, "sha256:x", SUBJECT).is_err());
    }

    #[test]
    fn indexes_round_trip_and_fallback_tags_follow_the_spec() {
        let entry = IndexEntry {
            media_type: "application/vnd.oci.image.manifest.v1+json".into(),
            digest: sha256_digest(b"m"),
            size: 1,
            artifact_type: Some(BUNDLE.into()),
            annotations: BTreeMap::new(),
        };
        let bytes = build_index(std::slice::from_ref(&entry)).unwrap();
        assert_eq!(parse_index(&bytes).unwrap(), vec![entry]);
        assert!(parse_index(b"{}").is_err());
        assert_eq!(
            fallback_tag(SUBJECT).unwrap(),
            SUBJECT.replace("sha256:", "sha256-")
        );
        assert_eq!(fallback_tag("latest"), None);
        assert!(answers_with_oci_error(
            br#"{"errors":[{"code":"NAME_UNKNOWN","message":"repository name not known"}]}"#
        ));
        assert!(!answers_with_oci_error(b"404 page not found"));
    }

    #[test]
    fn the_blob_budget_is_spent_or_left_whole() {
        let mut budget = BlobBudget::new(10);
        assert!(budget.take(6));
        assert!(!budget.take(6));
        assert_eq!(budget.remaining(), 4);
    }
}
