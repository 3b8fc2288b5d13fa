//! Listing tags and repositories, following pagination (`Link: rel="next"`, else `last=`).

use std::collections::HashSet;

use reqwest::Method;
use reqwest::header::{HeaderMap, LINK};
use url::Url;

use super::client::{Access, Call, RegistryClient};
use super::error::RegistryError;
use super::transport::same_origin;
use super::{DEFAULT_PAGE_SIZE, MAX_LIST_PAGE_BYTES};
use crate::reference::ImageRef;

/// Bound on pages followed, against a registry whose links go round in circles.
const MAX_PAGES: usize = 10_000;

impl RegistryClient {
    /// Every tag of the repository of `repo`, following pagination.
    pub async fn list_tags(&self, repo: &ImageRef) -> Result<Vec<String>, RegistryError> {
        self.list_tags_paged(repo, DEFAULT_PAGE_SIZE).await
    }

    /// [`RegistryClient::list_tags`] asking for `page_size` tags per request.
    pub async fn list_tags_paged(
        &self,
        repo: &ImageRef,
        page_size: usize,
    ) -> Result<Vec<String>, RegistryError> {
        let listing = Listing {
            registry: repo.registry(),
            repository: repo.repository(),
            access: Access::Pull,
            path: format!("{}/tags/list", repo.repository()),
            field: "tags",
            what: format!("tag list of {}", repo.repository()),
        };
        self.list_all(&listing, page_size).await
    }

    /// Every repository of `registry` (a host such as `127.0.0.1:5000`), following pagination.
    pub async fn catalog(&self, registry: &str) -> Result<Vec<String>, RegistryError> {
        self.catalog_paged(registry, DEFAULT_PAGE_SIZE).await
    }

    /// [`RegistryClient::catalog`] asking for `page_size` repositories per request.
    pub async fn catalog_paged(
        &self,
        registry: &str,
        page_size: usize,
    ) -> Result<Vec<String>, RegistryError> {
        let listing = Listing {
            registry,
            repository: "",
            access: Access::Catalog,
            path: "_catalog".to_string(),
            field: "repositories",
            what: "catalog".to_string(),
        };
        self.list_all(&listing, page_size).await
    }

    /// Follows `Link: <...>; rel="next"`; without one, a full page continues with
    /// `last=<last item>`. Stops when a page brings nothing new.
    async fn list_all(
        &self,
        listing: &Listing<'_>,
        page_size: usize,
    ) -> Result<Vec<String>, RegistryError> {
        let page_size = page_size.max(1);
        let base = self.base_url(listing.registry)?;
        let first = self.v2_url(listing.registry, &listing.path)?;
        let page_url = |last: Option<&str>| {
            let mut url = first.clone();
            {
                let mut query = url.query_pairs_mut();
                query.append_pair("n", &page_size.to_string());
                if let Some(last) = last {
                    query.append_pair("last", last);
                }
            }
            url
        };
        let mut url = page_url(None);
        let mut items: Vec<String> = Vec::new();
        let mut seen: HashSet<String> = HashSet::new();
        for _ in 0..MAX_PAGES {
            let call = Call {
                registry: listing.registry,
                repository: listing.repository,
                access: listing.access,
                method: Method::GET,
                url: url.clone(),
                accept: Some("application/json"),
                content_type: None,
                body: None,
            };
            let response = self.send(&call).await?;
            if !response.status().is_success() {
                return Err(self.failure(&call, &listing.what, response).await);
            }
            let next = next_link(response.headers(), response.url());
            let body = self
                .read_body(
                    listing.registry,
                    &listing.what,
                    response,
                    MAX_LIST_PAGE_BYTES,
                )
                .await?;
            let page = names(&body, listing.field).map_err(|reason| {
                RegistryError::bad_response(listing.registry, &listing.what, reason)
            })?;
            let page_len = page.len();
            let mut new_items = 0;
            for item in page {
                if seen.insert(item.clone()) {
                    items.push(item);
                    new_items += 1;
                }
            }
            if new_items == 0 {
                return Ok(items);
            }
            url = match next {
                Some(next) if same_origin(&next, &base) => next,
                Some(next) => {
                    return Err(RegistryError::bad_response(
                        listing.registry,
                        &listing.what,
                        format!("next-page link {next} leaves the registry"),
                    ));
                }
                None if page_len >= page_size => page_url(items.last().map(String::as_str)),
                None => return Ok(items),
            };
        }
        Err(RegistryError::bad_response(
            listing.registry,
            &listing.what,
            format!("more than {MAX_PAGES} pages"),
        ))
    }
}

/// One paginated listing (tags of a repository, or the catalog).
struct Listing<'a> {
    registry: &'a str,
    repository: &'a str,
    access: Access,
    path: String,
    field: &'static str,
    what: String,
}

/// The string array `field` of a listing page; `null` or absent means empty.
fn names(body: &[u8], field: &str) -> Result<Vec<String>, String> {
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("body is not JSON: {e}"))?;
    match value.get(field) {
        None | Some(serde_json::Value::Null) => Ok(Vec::new()),
        Some(serde_json::Value::Array(entries)) => entries
            .iter()
            .map(|e| {
                e.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| format!("`{field}` holds a non-string"))
            })
            .collect(),
        Some(_) => Err(format!("`{field}` is not an array")),
    }
}

/// The `rel="next"` target of a `Link` header, resolved against the URL it came with.
pub(crate) fn next_link(headers: &HeaderMap, current: &Url) -> Option<Url> {
    for value in headers.get_all(LINK) {
        let Ok(text) = value.to_str() else { continue };
        for link in text.split(',') {
            let mut parts = link.split(';');
            let target = parts.next()?.trim();
            let Some(target) = target.strip_prefix('<').and_then(|t| t.strip_suffix('>')) else {
                continue;
            };
            let is_next = parts.any(|p| {
                let p = p.trim();
                p.split_once('=').is_some_and(|(k, v)| {
                    k.trim().eq_ignore_ascii_case("rel")
                        && v.trim()
                            .trim_matches('"')
                            .split_whitespace()
                            .any(|r| r.eq_ignore_ascii_case("next"))
                })
            });
            if is_next {
                return current.join(target).ok();
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn link_header_next_is_resolved_against_the_request() {
        let current = Url::parse("http://127.0.0.1:5000/v2/_catalog?n=2").unwrap();
        let mut headers = HeaderMap::new();
        headers.insert(
            LINK,
            HeaderValue::from_static(r#"</v2/_catalog?last=b&n=2>; rel="next""#),
        );
        assert_eq!(
            next_link(&headers, &current).unwrap().as_str(),
            "http://127.0.0.1:5000/v2/_catalog?last=b&n=2"
        );
        let mut headers = HeaderMap::new();
        headers.insert(
            LINK,
            HeaderValue::from_static(r#"<https://r.example/v2/x?p=1>; rel="prev", <https://r.example/v2/x?p=3>; rel=next"#),
        );
        assert_eq!(
            next_link(&headers, &current).unwrap().as_str(),
            "https://r.example/v2/x?p=3"
        );
        assert_eq!(next_link(&HeaderMap::new(), &current), None);
    }

    #[test]
    fn listing_pages_accept_null_and_reject_garbage() {
        assert_eq!(
            names(br#"{"name":"a","tags":["v1","v2"]}"#, "tags").unwrap(),
            ["v1", "v2"]
        );
        assert!(
            names(br#"{"name":"a","tags":null}"#, "tags")
                .unwrap()
                .is_empty()
        );
        assert!(
            names(br#"{"tags":"v1"}"#, "tags")
                .unwrap_err()
                .contains("not an array")
        );
        assert!(names(b"<html>", "tags").unwrap_err().contains("not JSON"));
    }
}
