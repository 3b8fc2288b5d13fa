//! What the tests' fake Kubernetes API servers share (`support::fake_kube`): a `kube::Client`
//! over tower-test whose every request a function answers, each in a task of its own, and a
//! store of objects by plural that serves lists and watch streams and announces changes on them.
//! No API server can run here; the controller's fake (`tests/controller.rs`) and the audit's
//! (`support::audit_api`) add the rest of the HTTP surface each one uses.

use std::collections::HashMap;

use bytes::Bytes;
use futures::channel::mpsc;
use http::{Request, Response, StatusCode};
use serde_json::{Value, json};

/// The `(apiVersion, kind)` of a plural a fake serves; panics on any other, so that a request
/// for a resource the code under test should not ask for fails the test.
pub type Kinds = fn(&str) -> (&'static str, &'static str);

type WatchSender = mpsc::UnboundedSender<Result<Bytes, std::io::Error>>;

/// A client whose every request `answer` serves, each in a task of its own (a held answer
/// does not hold the others back).
pub fn client_answered_by<F, Fut>(answer: F) -> kube::Client
where
    F: Fn(Request<kube::client::Body>) -> Fut + Send + 'static,
    Fut: Future<Output = Response<axum::body::Body>> + Send + 'static,
{
    let (service, mut handle) =
        tower_test::mock::pair::<Request<kube::client::Body>, Response<axum::body::Body>>();
    tokio::spawn(async move {
        while let Some((request, respond)) = handle.next_request().await {
            let answering = answer(request);
            tokio::spawn(async move { respond.send_response(answering.await) });
        }
    });
    kube::Client::new(service, "default")
}

/// A JSON answer with `status`.
pub fn json_response(status: u16, body: &Value) -> Response<axum::body::Body> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(axum::body::Body::from(body.to_string()))
        .unwrap()
}

/// A `Status` failure object, as the API server writes one.
pub fn status_body(code: u16, reason: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Status", "status": "Failure", "message": reason,
           "reason": reason, "code": code})
}

/// Whether two objects are the same one (name and namespace).
pub fn same_object(a: &Value, b: &Value) -> bool {
    a["metadata"]["name"] == b["metadata"]["name"]
        && a["metadata"]["namespace"] == b["metadata"]["namespace"]
}

/// Objects by plural, with one resource version for all, and the watch streams open on each
/// plural.
pub struct Objects {
    kinds: Kinds,
    /// plural -> objects.
    pub by_plural: HashMap<String, Vec<Value>>,
    pub resource_version: u64,
    watchers: HashMap<String, Vec<WatchSender>>,
}

impl Objects {
    pub fn new(kinds: Kinds) -> Self {
        Self {
            kinds,
            by_plural: HashMap::new(),
            resource_version: 0,
            watchers: HashMap::new(),
        }
    }

    /// The list of `plural` at the current resource version.
    pub fn list(&self, plural: &str) -> Response<axum::body::Body> {
        let (api_version, kind) = (self.kinds)(plural);
        let items = self.by_plural.get(plural).cloned().unwrap_or_default();
        json_response(
            200,
            &json!({
                "apiVersion": api_version,
                "kind": format!("{kind}List"),
                "metadata": {"resourceVersion": self.resource_version.to_string()},
                "items": items,
            }),
        )
    }

    /// A watch of `plural` that stays open, fed by [`Objects::notify`].
    pub fn open_watch(&mut self, plural: &str) -> Response<axum::body::Body> {
        let (sender, receiver) = mpsc::unbounded();
        self.watchers
            .entry(plural.to_string())
            .or_default()
            .push(sender);
        Response::builder()
            .status(StatusCode::OK)
            .header("content-type", "application/json")
            .body(axum::body::Body::from_stream(receiver))
            .unwrap()
    }

    /// Sends `event` to every open watch of `plural`.
    pub fn notify(&mut self, plural: &str, event: &Value) {
        let line = Bytes::from(format!("{event}\n"));
        if let Some(watchers) = self.watchers.get_mut(plural) {
            watchers.retain(|w| w.unbounded_send(Ok(line.clone())).is_ok());
        }
    }

    /// Ends every watch of `plural` after sending it `event`.
    pub fn end_watches(&mut self, plural: &str, event: &Value) {
        self.notify(plural, event);
        self.watchers.remove(plural);
    }

    /// Stores (or replaces) an object at a new resource version; with `announce`, watchers see
    /// it added or modified.
    pub fn store(&mut self, plural: &str, mut object: Value, announce: bool) {
        self.resource_version += 1;
        object["metadata"]["resourceVersion"] = json!(self.resource_version.to_string());
        let (api_version, kind) = (self.kinds)(plural);
        object["apiVersion"] = json!(api_version);
        object["kind"] = json!(kind);
        let objects = self.by_plural.entry(plural.to_string()).or_default();
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
        if announce {
            self.notify(plural, &json!({"type": event, "object": object}));
        }
    }

    /// Removes the object of `plural` named `name` at a new resource version; watchers see it
    /// deleted.
    pub fn delete(&mut self, plural: &str, name: &str) {
        let objects = self.by_plural.entry(plural.to_string()).or_default();
        let at = objects
            .iter()
            .position(|o| o["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("no {plural} named {name} to delete"));
        let mut gone = objects.remove(at);
        self.resource_version += 1;
        gone["metadata"]["resourceVersion"] = json!(self.resource_version.to_string());
        self.notify(plural, &json!({"type": "DELETED", "object": gone}));
    }

    /// Puts many objects at one new resource version, unannounced (before anything watches).
    pub fn preload(&mut self, plural: &str, objects: Vec<Value>) {
        self.resource_version += 1;
        let (api_version, kind) = (self.kinds)(plural);
        let stored = self.by_plural.entry(plural.to_string()).or_default();
        for mut object in objects {
            object["apiVersion"] = json!(api_version);
            object["kind"] = json!(kind);
            stored.push(object);
        }
    }
}
