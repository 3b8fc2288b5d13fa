//! A mocked Kubernetes API for the audit (`support::audit_api`): a `kube::Client` over
//! tower-test answered by a small fake API server that serves lists and keeps watch streams
//! open for any plural (the signet kinds, Namespaces as metadata, Pods), records Events, applies
//! PolicyReports, and serves the `wgpolicyk8s.io/v1alpha2` discovery document when the
//! PolicyReport CRD is "installed". No API server can run here; this is the HTTP surface the
//! controller and the audit use, nothing more.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use http::{Request, Response};
use serde_json::{Value, json};

use super::fake_kube::{Objects, client_answered_by, json_response, status_body};

struct Inner {
    objects: Objects,
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

fn not_found() -> Response<axum::body::Body> {
    let mut body = status_body(404, "NotFound");
    body["message"] = json!("not found");
    json_response(404, &body)
}

impl AuditApi {
    /// A client whose every request this fake answers; `reports_installed`: whether the
    /// PolicyReport API is served.
    pub fn start(reports_installed: bool) -> (kube::Client, AuditApi) {
        let api = AuditApi(Arc::new(Mutex::new(Inner {
            objects: Objects::new(kind_of),
            events: Vec::new(),
            reports: HashMap::new(),
            report_writes: 0,
            reports_installed,
        })));
        let server = api.clone();
        let client = client_answered_by(move |request| {
            let server = server.clone();
            async move { server.answer(request).await }
        });
        (client, api)
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
        let mut inner = self.lock();
        if query.contains("watch=true") {
            return inner.objects.open_watch(&plural);
        }
        inner.objects.list(&plural)
    }

    /// Adds or changes an object, as `kubectl apply` would; watchers see it.
    pub fn put(&self, plural: &str, object: Value) {
        self.lock().objects.store(plural, object, true);
    }

    /// Puts many objects without announcing them one by one (before anything watches).
    pub fn preload(&self, plural: &str, objects: Vec<Value>) {
        self.lock().objects.preload(plural, objects);
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
