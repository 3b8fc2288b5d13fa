//! A front for Debian's `docker-registry` that adds the OCI 1.1 referrers API, which
//! distribution 2.8 lacks and no registry installable here (Debian, PyPI, npm, crates.io) offers.
//! Said plainly: this is a stand-in, not a registry.
//!
//! `GET /v2/<name>/referrers/<digest>` is computed from the registry's own content: every
//! manifest revision the registry stores for the repository (its filesystem storage, as the
//! registry itself would index it) whose `subject` names the digest, listed as an OCI index with
//! each manifest's `artifactType` and annotations. A manifest PUT whose body has a `subject` is
//! answered with `OCI-Subject`, as a registry with the API does. With
//! [`ReferrersFront::with_single_post`], a blob upload in one request (`POST
//! /v2/<name>/blobs/uploads/?digest=` with the bytes, which the distribution spec allows and
//! distribution 2.8 does not take) is answered 201, the front doing the registry's POST and PUT
//! itself. Everything else is forwarded unchanged. Every request is recorded (method and path):
//! what signet sent.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::response::Response;
use axum::routing::any;
use serde_json::{Value, json};

use super::servers::ServerThread;

#[derive(Clone)]
struct Front {
    upstream: String,
    own: String,
    storage: PathBuf,
    http: reqwest::Client,
    log: Arc<Mutex<Vec<String>>>,
    single_post: bool,
}

/// The running front; stopped when dropped.
pub struct ReferrersFront {
    addr: SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
    _server: ServerThread,
}

impl ReferrersFront {
    /// A front for the registry at `upstream` (`127.0.0.1:PORT`) keeping its content in
    /// `storage` (the registry's `rootdirectory`).
    pub fn start(upstream: &str, storage: &Path) -> Self {
        Self::start_with(upstream, storage, false)
    }

    /// [`ReferrersFront::start`], also taking a blob upload in one request.
    pub fn with_single_post(upstream: &str, storage: &Path) -> Self {
        Self::start_with(upstream, storage, true)
    }

    fn start_with(upstream: &str, storage: &Path, single_post: bool) -> Self {
        let log = Arc::new(Mutex::new(Vec::new()));
        let (upstream, storage, shared) = (
            upstream.to_string(),
            storage.to_path_buf(),
            Arc::clone(&log),
        );
        let server = ServerThread::router(move |addr| {
            let front = Front {
                upstream,
                own: addr.to_string(),
                storage,
                http: reqwest::Client::new(),
                log: shared,
                single_post,
            };
            Router::new().fallback(any(handle)).with_state(front)
        });
        ReferrersFront {
            addr: server.host().parse().unwrap(),
            log,
            _server: server,
        }
    }

    /// `127.0.0.1:PORT` of the front.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// `METHOD /path` of every request so far.
    pub fn requests(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// Forgets the requests recorded so far.
    pub fn clear(&self) {
        self.log.lock().unwrap().clear();
    }
}

async fn handle(State(front): State<Front>, request: Request) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let query = request.uri().query().map(str::to_string);
    front.log.lock().unwrap().push(format!("{method} {path}"));
    if method == Method::GET
        && let Some((name, digest)) = referrers_route(&path)
    {
        let manifests = referrers(&front.storage, &name, &digest);
        let body = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": manifests,
        }))
        .unwrap();
        return Response::builder()
            .status(StatusCode::OK)
            .header("Content-Type", "application/vnd.oci.image.index.v1+json")
            .body(Body::from(body))
            .unwrap();
    }
    let headers = request.headers().clone();
    let body: Bytes = axum::body::to_bytes(request.into_body(), 64 * 1024 * 1024)
        .await
        .unwrap_or_default();
    if front.single_post
        && method == Method::POST
        && path.ends_with("/blobs/uploads/")
        && !body.is_empty()
        && let Some(digest) = query
            .as_deref()
            .and_then(|q| q.split('&').find_map(|p| p.strip_prefix("digest=")))
    {
        return single_post_upload(&front, &path, digest, &headers, body).await;
    }
    let subject = (method == Method::PUT && path.contains("/manifests/"))
        .then(|| serde_json::from_slice::<Value>(&body).ok())
        .flatten()
        .and_then(|v| v["subject"]["digest"].as_str().map(str::to_string));
    let mut url = format!("http://{}{path}", front.upstream);
    if let Some(q) = query {
        url.push('?');
        url.push_str(&q);
    }
    let mut forward = front.http.request(method, &url).body(body);
    for (name, value) in &headers {
        if name != "host" && name != "content-length" {
            forward = forward.header(name, value);
        }
    }
    let answer = match forward.send().await {
        Ok(a) => a,
        Err(e) => {
            return Response::builder()
                .status(StatusCode::BAD_GATEWAY)
                .body(Body::from(e.to_string()))
                .unwrap();
        }
    };
    let status = answer.status();
    let mut response = Response::builder().status(status.as_u16());
    for (name, value) in answer.headers() {
        // Redirects and upload locations point at the registry: keep them on the front.
        if name == "location" {
            let text = value
                .to_str()
                .unwrap_or_default()
                .replace(&front.upstream, &front.own);
            response = response.header(name, HeaderValue::from_str(&text).unwrap());
        } else if name != "transfer-encoding" && name != "content-length" {
            response = response.header(name, value);
        }
    }
    if let Some(subject) = subject
        && status.is_success()
    {
        response = response.header("OCI-Subject", subject);
    }
    let bytes = answer.bytes().await.unwrap_or_default();
    response.body(Body::from(bytes)).unwrap()
}

/// A blob in one request: the registry's POST then PUT, answered as one 201.
async fn single_post_upload(
    front: &Front,
    path: &str,
    digest: &str,
    headers: &axum::http::HeaderMap,
    body: Bytes,
) -> Response {
    let digest = digest.replace("%3A", ":");
    let auth = headers.get("authorization").cloned();
    let with_auth = |r: reqwest::RequestBuilder| match &auth {
        Some(a) => r.header("authorization", a),
        None => r,
    };
    let start = with_auth(
        front
            .http
            .post(format!("http://{}{path}", front.upstream))
            .header("content-length", "0"),
    )
    .send()
    .await
    .unwrap();
    let location = start.headers()["location"].to_str().unwrap().to_string();
    let mut url = if location.starts_with("http") {
        location
    } else {
        format!("http://{}{location}", front.upstream)
    };
    url.push(if url.contains('?') { '&' } else { '?' });
    url.push_str(&format!("digest={digest}"));
    let put = with_auth(front.http.put(url).body(body))
        .send()
        .await
        .unwrap();
    let status = put.status().as_u16();
    let mut response = Response::builder().status(if status == 201 { 201 } else { status });
    if let Some(d) = put.headers().get("docker-content-digest") {
        response = response.header("Docker-Content-Digest", d);
    }
    let name = path
        .trim_start_matches("/v2/")
        .trim_end_matches("/blobs/uploads/");
    response
        .header("Location", format!("/v2/{name}/blobs/{digest}"))
        .body(Body::empty())
        .unwrap()
}

/// `(name, digest)` of `/v2/<name>/referrers/<digest>`.
fn referrers_route(path: &str) -> Option<(String, String)> {
    let rest = path.strip_prefix("/v2/")?;
    let (name, digest) = rest.rsplit_once("/referrers/")?;
    (!name.is_empty() && digest.starts_with("sha256:"))
        .then(|| (name.to_string(), digest.to_string()))
}

/// Every stored manifest of repository `name` whose subject is `digest`, as index descriptors.
fn referrers(storage: &Path, name: &str, digest: &str) -> Vec<Value> {
    let v2 = storage.join("docker/registry/v2");
    let revisions = v2.join(format!("repositories/{name}/_manifests/revisions/sha256"));
    let Ok(dirs) = std::fs::read_dir(&revisions) else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for dir in dirs.flatten() {
        let hex = dir.file_name().to_string_lossy().to_string();
        let data = v2.join(format!("blobs/sha256/{}/{hex}/data", &hex[..2]));
        let Ok(bytes) = std::fs::read(&data) else {
            continue;
        };
        let Ok(doc) = serde_json::from_slice::<Value>(&bytes) else {
            continue;
        };
        if doc["subject"]["digest"].as_str() != Some(digest) {
            continue;
        }
        let artifact_type = doc["artifactType"]
            .as_str()
            .or(doc["config"]["mediaType"].as_str())
            .unwrap_or_default();
        let mut entry = json!({
            "mediaType": doc["mediaType"].as_str().unwrap_or("application/vnd.oci.image.manifest.v1+json"),
            "digest": format!("sha256:{hex}"),
            "size": bytes.len(),
            "artifactType": artifact_type,
        });
        if let Some(annotations) = doc.get("annotations") {
            entry["annotations"] = annotations.clone();
        }
        found.push(entry);
    }
    found
}
