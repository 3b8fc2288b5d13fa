//! The registry operations signet needs: resolve, fetch and push manifests and blobs (listing
//! tags and repositories is `listing.rs`).

use bytes::Bytes;
use reqwest::header::{CONTENT_TYPE, HeaderMap, LOCATION};
use reqwest::{Method, StatusCode};
use url::Url;

use super::client::{Access, Call, RegistryClient};
use super::error::{RegistryError, body_has_code};
use super::responses::status_error;
use super::{
    FetchedManifest, MANIFEST_MEDIA_TYPES, MAX_MANIFEST_BYTES, digest_with, sha256_digest,
};
use crate::reference::{ImageRef, normalise_digest};

/// What a manifest push answered.
pub(crate) struct PushedManifest {
    /// The manifest's digest.
    pub(crate) digest: String,
    /// The registry sent `OCI-Subject`: it indexes the manifest's subject itself.
    pub(crate) oci_subject: bool,
}

/// Error codes that mean "no such manifest" whatever the status code says.
const MANIFEST_MISSING_CODES: [&str; 2] = ["MANIFEST_UNKNOWN", "NAME_UNKNOWN"];

/// `repository:tag` or `repository@digest`: how errors name a manifest (the host is already in
/// the message).
fn manifest_label(image: &ImageRef) -> String {
    match (image.digest(), image.tag()) {
        (Some(d), _) => format!("manifest {}@{d}", image.repository()),
        (None, Some(t)) => format!("manifest {}:{t}", image.repository()),
        (None, None) => format!("manifest {}:latest", image.repository()),
    }
}

/// The path component naming the manifest: the digest when there is one, else the tag.
fn manifest_reference(image: &ImageRef) -> &str {
    image.digest().or(image.tag()).unwrap_or("latest")
}

fn accept_manifests() -> String {
    MANIFEST_MEDIA_TYPES.join(", ")
}

/// `Docker-Content-Digest`, normalised; a malformed value is a bad response.
fn announced_digest(
    headers: &HeaderMap,
    registry: &str,
    what: &str,
) -> Result<Option<String>, RegistryError> {
    let Some(value) = headers.get("docker-content-digest") else {
        return Ok(None);
    };
    let text = value.to_str().unwrap_or_default().trim();
    normalise_digest(text).map(Some).ok_or_else(|| {
        RegistryError::bad_response(
            registry,
            what,
            format!("Docker-Content-Digest {text:?} is not a digest"),
        )
    })
}

/// The algorithm part of a normalised digest.
fn algorithm(digest: &str) -> &str {
    digest.split_once(':').map_or("sha256", |(alg, _)| alg)
}

impl RegistryClient {
    fn manifest_call<'a>(
        &self,
        image: &'a ImageRef,
        method: Method,
        accept: &'a str,
    ) -> Result<Call<'a>, RegistryError> {
        let url = self.v2_url(
            image.registry(),
            &format!(
                "{}/manifests/{}",
                image.repository(),
                manifest_reference(image)
            ),
        )?;
        Ok(Call {
            registry: image.registry(),
            repository: image.repository(),
            access: Access::Pull,
            method,
            url,
            accept: Some(accept),
            content_type: None,
            body: None,
        })
    }

    /// The digest of the manifest `image` names: one HEAD accepting every OCI and Docker
    /// manifest and index type, and a GET (hashing the body) if the registry sends no
    /// `Docker-Content-Digest`. For a reference that already names a digest, this confirms that
    /// the manifest exists and that the registry agrees on the digest.
    pub async fn resolve_digest(&self, image: &ImageRef) -> Result<String, RegistryError> {
        let what = manifest_label(image);
        let accept = accept_manifests();
        let call = self.manifest_call(image, Method::HEAD, &accept)?;
        let response = self.send(&call).await?;
        if !response.status().is_success() {
            return Err(self.failure(&call, &what, response).await);
        }
        let digest = match announced_digest(response.headers(), image.registry(), &what)? {
            Some(d) => d,
            None => match self.fetch_manifest(image).await? {
                Some(fetched) => fetched.digest,
                None => {
                    return Err(RegistryError::NotFound {
                        host: image.registry().to_string(),
                        what,
                    });
                }
            },
        };
        if let Some(expected) = image.digest()
            && digest != expected
        {
            return Err(RegistryError::DigestMismatch {
                host: image.registry().to_string(),
                what,
                expected: expected.to_string(),
                actual: digest,
            });
        }
        Ok(digest)
    }

    /// [`RegistryClient::resolve_digest`] by one GET instead of a HEAD (the same one request):
    /// the manifest's bytes hash to the digest returned, and its media type and size are
    /// remembered for a moment, so that a Notation signature's payload is checked against them
    /// without fetching the manifest again (admission and `verify` resolve this way).
    pub async fn resolve_manifest(&self, image: &ImageRef) -> Result<String, RegistryError> {
        let what = manifest_label(image);
        let fetched = self
            .fetch_manifest(image)
            .await?
            .ok_or_else(|| RegistryError::NotFound {
                host: image.registry().to_string(),
                what,
            })?;
        self.remember_descriptor(
            image.registry(),
            image.repository(),
            &fetched.digest,
            (fetched.media_type, fetched.bytes.len() as u64),
        );
        Ok(fetched.digest)
    }

    /// Fetches the manifest `image` names (by digest when it has one, else by tag); `None` when
    /// the registry does not have it. Bodies over [`MAX_MANIFEST_BYTES`] are refused unread. The
    /// body must hash to the requested digest, or for a tag to the announced
    /// `Docker-Content-Digest`; otherwise [`RegistryError::DigestMismatch`].
    pub async fn fetch_manifest(
        &self,
        image: &ImageRef,
    ) -> Result<Option<FetchedManifest>, RegistryError> {
        self.fetch_manifest_limited(image, MAX_MANIFEST_BYTES).await
    }

    /// [`RegistryClient::fetch_manifest`] refusing bodies over `limit` bytes (at most
    /// [`MAX_MANIFEST_BYTES`]): referrers are read within a budget.
    pub(crate) async fn fetch_manifest_limited(
        &self,
        image: &ImageRef,
        limit: usize,
    ) -> Result<Option<FetchedManifest>, RegistryError> {
        let limit = limit.min(MAX_MANIFEST_BYTES);
        let what = manifest_label(image);
        let accept = accept_manifests();
        let call = self.manifest_call(image, Method::GET, &accept)?;
        let response = self.send(&call).await?;
        let status = response.status();
        if status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !status.is_success() {
            let body = self.own_error_body(&call, response).await;
            if body_has_code(&body, &MANIFEST_MISSING_CODES) {
                return Ok(None);
            }
            return Err(status_error(&call, &what, status, &body));
        }
        let announced = announced_digest(response.headers(), image.registry(), &what)?;
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or(v).trim().to_string())
            .unwrap_or_default();
        let bytes = self
            .read_body(image.registry(), &what, response, limit)
            .await?;

        let expected = image.digest().map(str::to_string).or(announced);
        let digest = match expected {
            Some(expected) => {
                let actual = digest_with(algorithm(&expected), &bytes)
                    .unwrap_or_else(|| sha256_digest(&bytes));
                if actual != expected {
                    return Err(RegistryError::DigestMismatch {
                        host: image.registry().to_string(),
                        what,
                        expected,
                        actual,
                    });
                }
                expected
            }
            None => sha256_digest(&bytes),
        };
        let media_type = if content_type.is_empty() || !content_type.starts_with("application/vnd.")
        {
            embedded_media_type(&bytes).unwrap_or(content_type)
        } else {
            content_type
        };
        Ok(Some(FetchedManifest {
            bytes,
            media_type,
            digest,
        }))
    }

    /// Fetches a blob of `repo` (its registry and repository; tag and digest are ignored),
    /// refusing it past `limit` bytes without buffering more, and checking that it hashes to
    /// `digest`.
    pub async fn fetch_blob(
        &self,
        repo: &ImageRef,
        digest: &str,
        limit: usize,
    ) -> Result<Vec<u8>, RegistryError> {
        let digest = normalise_digest(digest).ok_or_else(|| RegistryError::InvalidRequest {
            host: repo.registry().to_string(),
            reason: format!("{digest:?} is not a digest"),
        })?;
        let what = format!("blob {}@{digest}", repo.repository());
        let url = self.v2_url(
            repo.registry(),
            &format!("{}/blobs/{digest}", repo.repository()),
        )?;
        let call = Call {
            registry: repo.registry(),
            repository: repo.repository(),
            access: Access::Pull,
            method: Method::GET,
            url,
            accept: None,
            content_type: None,
            body: None,
        };
        let response = self.send(&call).await?;
        if !response.status().is_success() {
            return Err(self.failure(&call, &what, response).await);
        }
        let bytes = self
            .read_body(repo.registry(), &what, response, limit)
            .await?;
        let actual =
            digest_with(algorithm(&digest), &bytes).unwrap_or_else(|| sha256_digest(&bytes));
        if actual != digest {
            return Err(RegistryError::DigestMismatch {
                host: repo.registry().to_string(),
                what,
                expected: digest,
                actual,
            });
        }
        Ok(bytes)
    }

    /// Uploads a blob to `repo` unless the registry already has it (POST then PUT, the
    /// monolithic upload every registry supports). Returns its `sha256:` digest.
    pub async fn push_blob(&self, repo: &ImageRef, data: &[u8]) -> Result<String, RegistryError> {
        let digest = sha256_digest(data);
        let what = format!("blob {}@{digest}", repo.repository());
        let registry = repo.registry();
        let push_call = |method: Method, url: Url| Call {
            registry,
            repository: repo.repository(),
            // Push scope from the first request on, so that one token serves all three.
            access: Access::Push,
            method,
            url,
            accept: None,
            content_type: None,
            body: None,
        };

        let exists = push_call(
            Method::HEAD,
            self.v2_url(registry, &format!("{}/blobs/{digest}", repo.repository()))?,
        );
        let response = self.send(&exists).await?;
        match response.status() {
            s if s.is_success() => return Ok(digest),
            StatusCode::NOT_FOUND => {}
            _ => return Err(self.failure(&exists, &what, response).await),
        }

        let start = push_call(
            Method::POST,
            self.v2_url(registry, &format!("{}/blobs/uploads/", repo.repository()))?,
        );
        let response = self.send(&start).await?;
        if !response.status().is_success() {
            return Err(self
                .failure(&start, &format!("upload of {what}"), response)
                .await);
        }
        let location = response
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| {
                RegistryError::bad_response(
                    registry,
                    &format!("upload of {what}"),
                    "no Location header",
                )
            })?;
        let mut upload_url = response.url().join(location).map_err(|e| {
            RegistryError::bad_response(
                registry,
                &format!("upload of {what}"),
                format!("bad Location {location:?}: {e}"),
            )
        })?;
        upload_url.query_pairs_mut().append_pair("digest", &digest);

        let mut put = push_call(Method::PUT, upload_url);
        put.content_type = Some("application/octet-stream");
        put.body = Some(Bytes::copy_from_slice(data));
        let response = self.send(&put).await?;
        if !response.status().is_success() {
            return Err(self
                .failure(&put, &format!("upload of {what}"), response)
                .await);
        }
        if let Some(announced) = announced_digest(response.headers(), registry, &what)?
            && announced != digest
        {
            return Err(RegistryError::DigestMismatch {
                host: registry.to_string(),
                what,
                expected: digest,
                actual: announced,
            });
        }
        Ok(digest)
    }

    /// Uploads a blob that is new (a signature just made: nobody can have it), without asking
    /// first: the blob in the upload's first request (`POST ...?digest=`, one request) where the
    /// registry takes it, else a POST then a PUT (distribution 2.8; remembered per registry, so
    /// the body is sent once). Returns its `sha256:` digest.
    pub async fn push_new_blob(
        &self,
        repo: &ImageRef,
        data: &[u8],
    ) -> Result<String, RegistryError> {
        let digest = sha256_digest(data);
        let what = format!("upload of blob {}@{digest}", repo.repository());
        let registry = repo.registry();
        let single = self.may_take_single_post(registry);
        let mut url = self.v2_url(registry, &format!("{}/blobs/uploads/", repo.repository()))?;
        if single {
            url.query_pairs_mut().append_pair("digest", &digest);
        }
        let start = Call {
            registry,
            repository: repo.repository(),
            access: Access::Push,
            method: Method::POST,
            url,
            accept: None,
            content_type: single.then_some("application/octet-stream"),
            body: single.then(|| Bytes::copy_from_slice(data)),
        };
        let response = self.send(&start).await?;
        if response.status() == StatusCode::CREATED {
            return Ok(digest);
        }
        if !response.status().is_success() {
            return Err(self.failure(&start, &what, response).await);
        }
        if single {
            self.remember_no_single_post(registry);
        }
        self.finish_upload(repo, response, data, &digest, &what)
            .await
    }

    /// Puts the blob `data` (whose `sha256:` digest is `digest`) into `repo` by mounting it from
    /// `from`, a repository of the same registry known to hold it: one request (`POST
    /// ?mount=&from=`, 201) when the registry mounts it; when it does not (202, an upload
    /// opened instead), the PUT of that upload carries the bytes, so a refused mount costs
    /// nothing over a plain upload.
    pub(crate) async fn mount_or_push_blob(
        &self,
        repo: &ImageRef,
        from: &str,
        data: &[u8],
    ) -> Result<String, RegistryError> {
        let digest = sha256_digest(data);
        let what = format!("upload of blob {}@{digest}", repo.repository());
        let registry = repo.registry();
        let mut url = self.v2_url(registry, &format!("{}/blobs/uploads/", repo.repository()))?;
        url.query_pairs_mut()
            .append_pair("mount", &digest)
            .append_pair("from", from);
        let start = Call {
            registry,
            repository: repo.repository(),
            access: Access::Push,
            method: Method::POST,
            url,
            accept: None,
            content_type: None,
            body: None,
        };
        let response = self.send(&start).await?;
        if response.status() == StatusCode::CREATED {
            return Ok(digest);
        }
        if !response.status().is_success() {
            return Err(self.failure(&start, &what, response).await);
        }
        self.finish_upload(repo, response, data, &digest, &what)
            .await
    }

    /// The PUT of an upload the registry answered a POST for (202 with `Location`).
    async fn finish_upload(
        &self,
        repo: &ImageRef,
        response: reqwest::Response,
        data: &[u8],
        digest: &str,
        what: &str,
    ) -> Result<String, RegistryError> {
        let registry = repo.registry();
        let location = response
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| RegistryError::bad_response(registry, what, "no Location header"))?;
        let mut upload_url = response.url().join(location).map_err(|e| {
            RegistryError::bad_response(registry, what, format!("bad Location {location:?}: {e}"))
        })?;
        upload_url.query_pairs_mut().append_pair("digest", digest);
        let put = Call {
            registry,
            repository: repo.repository(),
            access: Access::Push,
            method: Method::PUT,
            url: upload_url,
            accept: None,
            content_type: Some("application/octet-stream"),
            body: Some(Bytes::copy_from_slice(data)),
        };
        let response = self.send(&put).await?;
        if !response.status().is_success() {
            return Err(self.failure(&put, what, response).await);
        }
        if let Some(announced) = announced_digest(response.headers(), registry, what)?
            && announced != digest
        {
            return Err(RegistryError::DigestMismatch {
                host: registry.to_string(),
                what: what.to_string(),
                expected: digest.to_string(),
                actual: announced,
            });
        }
        Ok(digest.to_string())
    }

    /// Uploads a manifest under the tag of `image`, or under its digest when it names no tag.
    /// When `image` names a digest, `bytes` must hash to it. Returns the manifest's digest.
    pub async fn push_manifest(
        &self,
        image: &ImageRef,
        bytes: &[u8],
        media_type: &str,
    ) -> Result<String, RegistryError> {
        Ok(self
            .push_manifest_answer(image, bytes, media_type)
            .await?
            .digest)
    }

    /// [`RegistryClient::push_manifest`], also telling whether the registry answered with an
    /// `OCI-Subject` header (it indexes referrers itself: no fallback index to keep).
    pub(crate) async fn push_manifest_answer(
        &self,
        image: &ImageRef,
        bytes: &[u8],
        media_type: &str,
    ) -> Result<PushedManifest, RegistryError> {
        let what = manifest_label(image);
        let registry = image.registry();
        if bytes.len() > MAX_MANIFEST_BYTES {
            return Err(RegistryError::too_large(
                registry,
                &what,
                MAX_MANIFEST_BYTES,
            ));
        }
        let algorithm = image.digest().map_or("sha256", algorithm);
        let digest = digest_with(algorithm, bytes).unwrap_or_else(|| sha256_digest(bytes));
        if let Some(expected) = image.digest()
            && expected != digest
        {
            return Err(RegistryError::DigestMismatch {
                host: registry.to_string(),
                what,
                expected: expected.to_string(),
                actual: digest,
            });
        }
        let reference = image.tag().unwrap_or(&digest);
        let url = self.v2_url(
            registry,
            &format!("{}/manifests/{reference}", image.repository()),
        )?;
        let call = Call {
            registry,
            repository: image.repository(),
            access: Access::Push,
            method: Method::PUT,
            url,
            accept: None,
            content_type: Some(media_type),
            body: Some(Bytes::copy_from_slice(bytes)),
        };
        let response = self.send(&call).await?;
        if !response.status().is_success() {
            return Err(self.failure(&call, &what, response).await);
        }
        if let Some(announced) = announced_digest(response.headers(), registry, &what)?
            && algorithm_of_same_kind(&announced, &digest)
            && announced != digest
        {
            return Err(RegistryError::DigestMismatch {
                host: registry.to_string(),
                what,
                expected: digest,
                actual: announced,
            });
        }
        let oci_subject = response.headers().contains_key("oci-subject");
        Ok(PushedManifest {
            digest,
            oci_subject,
        })
    }

    /// The digest the tag (or digest) of `image` names now, from one HEAD; `None` when the
    /// registry does not have it. Without `Docker-Content-Digest` in the answer, the manifest is
    /// fetched and hashed. Used to tell whether a manifest this client wrote is still the one
    /// at its tag without reading it again.
    pub(crate) async fn current_digest(
        &self,
        image: &ImageRef,
    ) -> Result<Option<String>, RegistryError> {
        let what = manifest_label(image);
        let accept = accept_manifests();
        let call = self.manifest_call(image, Method::HEAD, &accept)?;
        let response = self.send(&call).await?;
        if response.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !response.status().is_success() {
            return Err(self.failure(&call, &what, response).await);
        }
        match announced_digest(response.headers(), image.registry(), &what)? {
            Some(d) => Ok(Some(d)),
            None => Ok(self.fetch_manifest(image).await?.map(|m| m.digest)),
        }
    }

    /// The media type and size of the manifest `image` names (one HEAD); `None` when absent.
    pub(crate) async fn manifest_descriptor(
        &self,
        image: &ImageRef,
    ) -> Result<Option<(String, u64)>, RegistryError> {
        let what = manifest_label(image);
        let accept = accept_manifests();
        let call = self.manifest_call(image, Method::HEAD, &accept)?;
        let response = self.send(&call).await?;
        if response.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !response.status().is_success() {
            return Err(self.failure(&call, &what, response).await);
        }
        let header = |name| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::trim)
                .map(str::to_string)
        };
        let media_type = header(CONTENT_TYPE).unwrap_or_default();
        let size = header(reqwest::header::CONTENT_LENGTH)
            .and_then(|v| v.parse::<u64>().ok())
            .ok_or_else(|| {
                RegistryError::bad_response(image.registry(), &what, "no Content-Length")
            })?;
        Ok(Some((media_type, size)))
    }
}

/// True when two digests use the same algorithm (only those can be compared).
fn algorithm_of_same_kind(a: &str, b: &str) -> bool {
    algorithm(a) == algorithm(b)
}

/// The `mediaType` a manifest declares in its own JSON.
fn embedded_media_type(bytes: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    value.get("mediaType")?.as_str().map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn manifests_are_named_by_digest_first() {
        let tagged = ImageRef::parse("127.0.0.1:5000/app:v1").unwrap();
        assert_eq!(manifest_label(&tagged), "manifest app:v1");
        assert_eq!(manifest_reference(&tagged), "v1");
        let d = format!("sha256:{}", "a".repeat(64));
        let pinned = tagged.with_digest(&d);
        assert_eq!(manifest_label(&pinned), format!("manifest app@{d}"));
        assert_eq!(manifest_reference(&pinned), d);
    }

    #[test]
    fn announced_digest_must_be_well_formed() {
        let mut headers = HeaderMap::new();
        assert_eq!(announced_digest(&headers, "r", "m").unwrap(), None);
        let d = format!("sha256:{}", "A".repeat(64));
        headers.insert("docker-content-digest", HeaderValue::from_str(&d).unwrap());
        assert_eq!(
            announced_digest(&headers, "r", "m").unwrap(),
            Some(d.to_ascii_lowercase())
        );
        headers.insert("docker-content-digest", HeaderValue::from_static("md5:abc"));
        let err = announced_digest(&headers, "r", "m")
            .unwrap_err()
            .to_string();
        assert!(err.contains("md5:abc"), "{err}");
    }

    #[test]
    fn embedded_media_type_is_read_from_the_manifest() {
        assert_eq!(
            embedded_media_type(
                br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json"}"#
            )
            .as_deref(),
            Some("application/vnd.oci.image.index.v1+json")
        );
        assert_eq!(embedded_media_type(b"{}"), None);
    }
}
