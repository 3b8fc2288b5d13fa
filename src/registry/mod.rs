//! OCI distribution client: resolve tags to digests, fetch and push manifests and blobs, list
//! tags and repositories, with authentication, size limits and digest checks.
//!
//! Built on reqwest directly, with oci-client for references and media-type names. oci-client's
//! own client cannot be used for the requests: it reads bodies without a cap, keeps one
//! credential per registry for the life of the client, caches tokens without regard to whose
//! credential fetched them, and builds a new TLS stack per client. Here one TLS stack serves
//! every request, and credentials can differ per request (`RegistryClient::with_credentials`).
//!
//! Nothing fetched is trusted: every manifest and blob is hashed and compared with the digest
//! it was asked by (or, for a tag, the digest the registry announced).

mod auth;
mod budget;
mod bundle_read;
mod bundle_write;
mod client;
mod cosign;
mod cosign_write;
mod cred_helper;
mod credentials;
mod error;
mod failure;
mod lazy_roots;
mod listing;
mod loopback_tls;
mod notation_write;
mod operations;
mod referrers;
mod responses;
pub mod sign;
mod sources;
mod transport;

pub use budget::{
    MAX_CONCURRENT_BLOB_FETCHES, MAX_SIGNATURE_DESCRIPTORS, MAX_SIGNATURE_LAYERS,
    MAX_SIGNATURE_PAYLOAD, SIGNATURE_READ_BUDGET, SignatureSet, SkipReason, SkippedLayers,
    held_bytes,
};
pub use bundle_write::{BundleReport, SubjectManifest};
pub use client::{RegistryClient, RegistryOptions};
pub use cosign::SignatureStore;
pub use cosign_write::{
    AppendOutcome, Compaction, EnsureReport, FirstReads, SignPayloadError, SignatureLock,
    SignatureWriteError, Wanted, WrittenTag, already_signed, expected_identity, sign_payload,
};
pub use cred_helper::HELPER_CACHE_TTL;
pub use credentials::{Credential, CredentialSource, DOCKER_HUB_CONFIG_KEY, DockerConfig};
pub use error::RegistryError;
pub use failure::{LookupFailure, LookupFailureKind};
pub use notation_write::{NotationSigner, NotationWriteError, WantedNotation};
pub use referrers::{
    BlobBudget, IndexEntry, MAX_REFERRER_BLOB, MAX_REFERRERS, NOTATION_ARTIFACT_TYPE,
    NOTATION_COSE_MEDIA_TYPE, NOTATION_JWS_MEDIA_TYPE, OCI_EMPTY_MEDIA_TYPE, REFERRER_BLOB_BUDGET,
    REFERRER_MANIFEST_BUDGET, Referrer, ReferrerKind, Referrers, ReferrersSource, build_index,
    classify, fallback_tag, parse_index,
};
pub use sign::{
    FormatOutcome, SignError, Signed, sign_digest, sign_digest_with, sign_image,
    sign_image_formats, sign_image_with,
};
pub use sources::{SignatureSource, join_sets};
pub use transport::MAX_REDIRECTS;

use sha2::Digest as _;

/// OCI image manifest.
pub const OCI_MANIFEST_MEDIA_TYPE: &str = oci_client::manifest::OCI_IMAGE_MEDIA_TYPE;
/// OCI image index.
pub const OCI_INDEX_MEDIA_TYPE: &str = oci_client::manifest::OCI_IMAGE_INDEX_MEDIA_TYPE;
/// Docker image manifest, schema 2.
pub const DOCKER_MANIFEST_MEDIA_TYPE: &str = oci_client::manifest::IMAGE_MANIFEST_MEDIA_TYPE;
/// Docker manifest list.
pub const DOCKER_MANIFEST_LIST_MEDIA_TYPE: &str =
    oci_client::manifest::IMAGE_MANIFEST_LIST_MEDIA_TYPE;

/// Every manifest and index type signet reads, as sent in `Accept`.
pub const MANIFEST_MEDIA_TYPES: [&str; 4] = [
    OCI_MANIFEST_MEDIA_TYPE,
    OCI_INDEX_MEDIA_TYPE,
    DOCKER_MANIFEST_MEDIA_TYPE,
    DOCKER_MANIFEST_LIST_MEDIA_TYPE,
];

/// Largest manifest read or pushed (the distribution spec lets registries refuse above 4 MiB).
pub const MAX_MANIFEST_BYTES: usize = 4 * 1024 * 1024;

/// Largest page of a tag list or catalog read.
pub const MAX_LIST_PAGE_BYTES: usize = 4 * 1024 * 1024;

/// Page size asked for by [`RegistryClient::list_tags`] and [`RegistryClient::catalog`].
pub const DEFAULT_PAGE_SIZE: usize = 100;

/// A manifest as fetched, after its digest was checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchedManifest {
    /// The exact bytes served: signatures and digests are over these.
    pub bytes: Vec<u8>,
    /// From `Content-Type`, else from the manifest's own `mediaType`.
    pub media_type: String,
    /// `sha256:<hex>` (or the algorithm of the digest it was fetched by) of `bytes`.
    pub digest: String,
}

/// The digest of `bytes` with the algorithm named by `algorithm` (`sha256`, `sha384`, `sha512`).
pub(crate) fn digest_with(algorithm: &str, bytes: &[u8]) -> Option<String> {
    let hex = match algorithm {
        "sha256" => hex::encode(sha2::Sha256::digest(bytes)),
        "sha384" => hex::encode(sha2::Sha384::digest(bytes)),
        "sha512" => hex::encode(sha2::Sha512::digest(bytes)),
        _ => return None,
    };
    Some(format!("{algorithm}:{hex}"))
}

/// `sha256:<hex>` of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_use_the_named_algorithm() {
        assert_eq!(
            sha256_digest(b""),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            digest_with("sha256", b"").as_deref(),
            Some(sha256_digest(b"").as_str())
        );
        assert_eq!(
            digest_with("sha512", b"").map(|d| d.len()),
            Some("sha512:".len() + 128)
        );
        assert_eq!(digest_with("md5", b""), None);
    }

    #[test]
    fn accept_lists_oci_and_docker_manifests_and_indexes() {
        assert_eq!(
            MANIFEST_MEDIA_TYPES,
            [
                "application/vnd.oci.image.manifest.v1+json",
                "application/vnd.oci.image.index.v1+json",
                "application/vnd.docker.distribution.manifest.v2+json",
                "application/vnd.docker.distribution.manifest.list.v2+json",
            ]
        );
    }
}
