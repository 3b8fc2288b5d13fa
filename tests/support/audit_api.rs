//! A mocked Kubernetes API for the audit (`support::audit_api`): a `kube::Client` over
//! tower-test answered by a small fake API server that serves lists and keeps watch streams
//! open for any plural (the signet kinds, Namespaces as metadata, Pods), records Events, applies
//! PolicyReports, and serves the `wgpolicyk8s.io/v1alpha2` discovery document when the
//! PolicyReport CRD is "installed". No API server can run here; this is the HTTP surface the
//! controller and the audit use, nothing more.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::channel::mpsc;
use http::{Request, Response, StatusCode};
use serde_json::{Value, json};

type WatchSender = mpsc::UnboundedSender<Result<Bytes, std::io::Error>>;

#[derive(Default)]
struct Inner {
    objects: HashMap<String, Vec<Value>>,
    resource_version: u64,
    watchers: HashMap<String, Vec<WatchSender>>,
    events: Vec<Value>,
    /// namespace -> the last PolicyReport applied.
    reports: HashMap<String, Value>,
    report_writes: usize,
    reports_installed: bool,
}

/// The fake API; clones share it.
#[derive(Clone)]
pub struct AuditApi(Arc<Mutex<Inner>>);

fn kind_of(plural: &str) -> (&'static str, &'static str) {
    const SIGNET: &str = "signet.dev/v1alpha1";
    match plural {
        "attestors" => (SIGNET, "Attestor"),
        "verificationpolicies" => (SIGNET, "VerificationPolicy"),
        "clusterverificationpolicies" => (SIGNET, "ClusterVerificationPolicy"),
        "signingrules" => (SIGNET, "SigningRule"),
        "namespaces" => ("meta.k8s.io/v1", "PartialObjectMetadata"),
        "pods" => ("v1", "Pod"),
        other => panic!("unexpected resource {other}"),
    }
}

fn json_response(status: u16, body: &Value) -> Response<axum::body::Body> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(axum::body::Body::from(body.to_string()))
        .unwrap()
}

fn not_found() -> Response<axum::body::Body> {
    json_response(
        404,
        &json!({"apiVersion": "v1", "kind": "Status", "status": "Failure",
                "reason": "NotFound", "code": 404, "message": "not found"}),
    )
}

fn same_object(a: &Value, b: &Value) -> bool {
    a["metadata"]["name"] == b["metadata"]["name"]
        && a["metadata"]["namespace"] == b["metadata"]["namespace"]
}

impl AuditApi {
    /// A client whose every request this fake answers; `reports_installed`: whether the
    /// PolicyReport API is served.
    pub fn start(reports_installed: bool) -> (kube::Client, AuditApi) {
        let (service, mut handle) =
            tower_test::mock::pair::<Request<kube::client::Body>, Response<axum::body::Body>>();
        let api = AuditApi(Arc::new(Mutex::new(Inner {
            reports_installed,
            ..Inner::default()
        })));
        let server = api.clone();
        tokio::spawn(async move {
            while let Some((request, respond)) = handle.next_request().await {
                let server = server.clone();
                tokio::spawn(async move {
                    let response = server.answer(request).await;
                    respond.send_response(response);
                });
            }
        });
        (kube::Client::new(service, "default"), api)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.0.lock().unwrap()
    }

    async fn answer(&self, request: Request<kube::client::Body>) -> Response<axum::body::Body> {
        let path = request.uri().path().to_string();
        let query = request.uri().query().unwrap_or("").to_string();
        let method = request.method().clone();
        let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let bytes = request.into_body().collect_bytes().await.unwrap();
        if path == "/apis/wgpolicyk8s.io/v1alpha2" {
            if !self.lock().reports_installed {
                return not_found();
            }
            return json_response(
                200,
                &json!({"kind": "APIResourceList", "apiVersion": "v1",
                        "groupVersion": "wgpolicyk8s.io/v1alpha2",
                        "resources": [{"name": "policyreports", "singularName": "policyreport",
                                       "namespaced": true, "kind": "PolicyReport",
                                       "verbs": ["get", "list", "watch", "create", "patch"]}]}),
            );
        }
        if segments.contains(&"policyreports") && method == http::Method::PATCH {
            let body: Value = serde_json::from_slice(&bytes).expect("the report is JSON");
            let namespace = segments[segments.len() - 3].to_string();
            let mut inner = self.lock();
            if !inner.reports_installed {
                return not_found();
            }
            inner.report_writes += 1;
            inner.reports.insert(namespace, body.clone());
            return json_response(200, &body);
        }
        if segments.last() == Some(&"events") && method == http::Method::POST {
            let body: Value = serde_json::from_slice(&bytes).expect("the event is JSON");
            self.lock().events.push(body.clone());
            return json_response(201, &body);
        }
        assert_eq!(method, http::Method::GET, "unexpected {method} {path}");
        let plural = segments.last().unwrap().to_string();
        if query.contains("watch=true") {
            return self.open_watch(&plural);
        }
        let inner = self.lock();
        let (api_version, kind) = kind_of(&plural);
        let items = inner.objects.get(&plural).cloned().unwrap_or_default();
        json_response(
            200,
            &json!({
                "apiVersion": api_version,
                "kind": format!("{kind}List"),
                "metadata": {"resourceVersion": inner.resource_version.to_string()},
                "items": items,
            }),
        )
    }

    fn open_watch(&self, plural: &str) -> Response<axum::body::Body> {
        let (sender, receiver) = mpsc::unbounded();
        self.lock()
            .watchers
            .entry(plural.to_string())
            .or_default()
            .push(sender);
        Response::builder()
            .status(StatusCode::OK)
            .header("content-type", "application/json")
            .body(axum::body::Body::from_stream(receiver))
            .unwrap()
    }

    fn notify(inner: &mut Inner, plural: &str, event: &Value) {
        let line = Bytes::from(format!("{event}\n"));
        if let Some(watchers) = inner.watchers.get_mut(plural) {
            watchers.retain(|w| w.unbounded_send(Ok(line.clone())).is_ok());
        }
    }

    /// Adds or changes an object, as `kubectl apply` would; watchers see it.
    pub fn put(&self, plural: &str, mut object: Value) {
        let mut inner = self.lock();
        inner.resource_version += 1;
        object["metadata"]["resourceVersion"] = json!(inner.resource_version.to_string());
        let (api_version, kind) = kind_of(plural);
        object["apiVersion"] = json!(api_version);
        object["kind"] = json!(kind);
        let objects = inner.objects.entry(plural.to_string()).or_default();
        let event = match objects.iter_mut().find(|o| same_object(o, &object)) {
            Some(old) => {
                *old = object.clone();
                "MODIFIED"
            }
            None => {
                objects.push(object.clone());
                "ADDED"
            }
        };
        Self::notify(
            &mut inner,
            plural,
            &json!({"type": event, "object": object}),
        );
    }

    /// Puts many objects without announcing them one by one (before anything watches).
    pub fn preload(&self, plural: &str, objects: Vec<Value>) {
        let mut inner = self.lock();
        inner.resource_version += 1;
        let (api_version, kind) = kind_of(plural);
        let stored = inner.objects.entry(plural.to_string()).or_default();
        for mut object in objects {
            object["apiVersion"] = json!(api_version);
            object["kind"] = json!(kind);
            stored.push(object);
        }
    }

    /// The Events posted so far.
    pub fn events(&self) -> Vec<Value> {
        self.lock().events.clone()
    }

    /// The PolicyReport last applied in `namespace`.
    pub fn report(&self, namespace: &str) -> Option<Value> {
        self.lock().reports.get(namespace).cloned()
    }

    /// PolicyReport writes so far.
    pub fn report_writes(&self) -> usize {
        self.lock().report_writes
    }
}
