//! Reading the registry's answers: bodies capped while read, error bodies (only the registry's
//! own), and the error for an unsuccessful status.

use reqwest::StatusCode;

use super::client::{Call, RegistryClient};
use super::error::{RegistryError, body_detail};

/// Error bodies are read this far for their message, no further.
const MAX_ERROR_BODY_BYTES: usize = 64 * 1024;

impl RegistryClient {
    /// Reads a body, refusing it past `limit` bytes: first by `Content-Length`, then while
    /// reading, so that no more than `limit` bytes are ever buffered.
    pub(crate) async fn read_body(
        &self,
        registry: &str,
        what: &str,
        mut response: reqwest::Response,
        limit: usize,
    ) -> Result<Vec<u8>, RegistryError> {
        let announced = response.content_length();
        if announced.is_some_and(|len| len > limit as u64) {
            return Err(RegistryError::too_large(registry, what, limit));
        }
        let capacity = announced.map_or(0, |len| usize::try_from(len).unwrap_or(limit).min(limit));
        let mut body = Vec::with_capacity(capacity);
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| RegistryError::transport(registry, &e, self.shared.timeout))?
        {
            if body.len() + chunk.len() > limit {
                return Err(RegistryError::too_large(registry, what, limit));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    /// Reads what can be read of an error body (best effort: its absence is not a new error).
    pub(crate) async fn error_body(&self, registry: &str, response: reqwest::Response) -> Vec<u8> {
        self.read_body(registry, "error body", response, MAX_ERROR_BODY_BYTES)
            .await
            .unwrap_or_default()
    }

    /// The error body of an answer, when the registry itself gave it. After a redirect to
    /// another host (object storage, or wherever a hostile registry pointed), the body is that
    /// host's: it is logged, never put into errors that reach denials, so that a registry cannot
    /// use signet to read other hosts' answers. The status code still counts.
    pub(crate) async fn own_error_body(
        &self,
        call: &Call<'_>,
        response: reqwest::Response,
    ) -> Vec<u8> {
        let foreign = self
            .base_url(call.registry)
            .map(|base| response.url().host_str() != base.host_str())
            .unwrap_or(true);
        let answered_by = response.url().host_str().unwrap_or("?").to_string();
        let status = response.status().as_u16();
        let body = self.error_body(call.registry, response).await;
        if !foreign {
            return body;
        }
        tracing::warn!(
            registry = call.registry,
            host = %answered_by,
            status,
            body = %super::error::snippet(&body),
            "error answer from a host the registry redirected to (not shown in errors)"
        );
        Vec::new()
    }

    /// The error for an unsuccessful answer: 401/403 unauthorized, 404 not found, else a bad
    /// response with the status and the first bytes of the body.
    pub(crate) async fn failure(
        &self,
        call: &Call<'_>,
        what: &str,
        response: reqwest::Response,
    ) -> RegistryError {
        let status = response.status();
        let body = self.own_error_body(call, response).await;
        status_error(call, what, status, &body)
    }
}

/// Maps a non-success status and its (possibly empty) body to an error.
pub(crate) fn status_error(
    call: &Call<'_>,
    what: &str,
    status: StatusCode,
    body: &[u8],
) -> RegistryError {
    let host = call.registry.to_string();
    match status {
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
            let reason = if body.is_empty() {
                if status == StatusCode::UNAUTHORIZED {
                    "authentication required"
                } else {
                    "access denied"
                }
                .to_string()
            } else {
                body_detail(body)
            };
            RegistryError::Unauthorized {
                host,
                target: call.target(),
                detail: format!("HTTP {}: {reason}", status.as_u16()),
            }
        }
        StatusCode::NOT_FOUND => RegistryError::NotFound {
            host,
            what: what.to_string(),
        },
        StatusCode::TOO_MANY_REQUESTS => RegistryError::RateLimited {
            host,
            what: what.to_string(),
            detail: format!("HTTP 429: {}", body_detail(body)),
        },
        other => RegistryError::bad_response(
            call.registry,
            what,
            format!("HTTP {}: {}", other.as_u16(), body_detail(body)),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::super::client::Access;
    use super::super::client::tests::call;
    use super::*;

    #[test]
    fn statuses_map_to_error_kinds() {
        let c = call(Access::Pull);
        let e = status_error(&c, "tag list of prod/app", StatusCode::UNAUTHORIZED, b"");
        assert_eq!(
            e.to_string(),
            "registry registry.example.com refused access to pull of prod/app: HTTP 401: authentication required"
        );
        let e = status_error(
            &c,
            "tag list of prod/app",
            StatusCode::FORBIDDEN,
            br#"{"errors":[{"code":"DENIED","message":"requested access to the resource is denied"}]}"#,
        );
        assert!(
            e.to_string()
                .ends_with("HTTP 403: requested access to the resource is denied (DENIED)"),
            "{e}"
        );
        let e = status_error(&c, "manifest prod/app:v1", StatusCode::NOT_FOUND, b"");
        assert_eq!(
            e.to_string(),
            "registry registry.example.com: manifest prod/app:v1 not found"
        );
        let e = status_error(
            &c,
            "manifest prod/app:v1",
            StatusCode::BAD_GATEWAY,
            b"<html>\nbad gateway\n</html>",
        );
        assert_eq!(
            e.to_string(),
            "registry registry.example.com: unexpected response to manifest prod/app:v1: HTTP 502: <html> bad gateway </html>"
        );
        let e = status_error(
            &c,
            "manifest prod/app:v1",
            StatusCode::TOO_MANY_REQUESTS,
            br#"{"errors":[{"code":"TOOMANYREQUESTS","message":"pull rate limit"}]}"#,
        );
        assert!(matches!(e, RegistryError::RateLimited { .. }), "{e:?}");
        assert_eq!(
            e.to_string(),
            "registry registry.example.com: too many requests for manifest prod/app:v1: HTTP 429: pull rate limit (TOOMANYREQUESTS)"
        );
    }
}
