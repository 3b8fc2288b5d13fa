//! A mocked Kubernetes API (`support::kube_api`) for the webhook tests: a `kube::Client` over
//! tower-test whose requests a task answers from a table and records.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

/// A mocked Kubernetes API: serves service accounts and secrets from a table, accepts events,
/// records every request as `METHOD path` with its body.
pub struct MockApi {
    requests: Arc<Mutex<Vec<(String, Value)>>>,
}

impl MockApi {
    pub fn start(objects: BTreeMap<String, Value>) -> (kube::Client, MockApi) {
        Self::start_with(objects, Vec::new())
    }

    /// Also answers SubjectAccessReviews: allowed for the users in `allowed_users`.
    pub fn start_with(
        objects: BTreeMap<String, Value>,
        allowed_users: Vec<String>,
    ) -> (kube::Client, MockApi) {
        use http::{Request, Response};
        use kube::client::Body;
        let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let requests: Arc<Mutex<Vec<(String, Value)>>> = Arc::default();
        let log = Arc::clone(&requests);
        tokio::spawn(async move {
            let mut handle = Box::pin(handle);
            while let Some((request, send)) = handle.next_request().await {
                let line = format!("{} {}", request.method(), request.uri().path());
                let bytes = request
                    .into_body()
                    .collect_bytes()
                    .await
                    .unwrap_or_default();
                let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                log.lock().expect("log").push((line.clone(), body.clone()));
                let (status, answer) = if line
                    == "POST /apis/authorization.k8s.io/v1/subjectaccessreviews"
                {
                    let user = body["spec"]["user"].as_str().unwrap_or_default();
                    let allowed = allowed_users.iter().any(|u| u == user);
                    let mut answer = body.clone();
                    answer["status"] = json!({"allowed": allowed});
                    (201, answer)
                } else if line.starts_with("POST ") {
                    (201, body)
                } else if let Some(object) = objects.get(&line) {
                    let code = object["code"].as_u64().and_then(|c| u16::try_from(c).ok());
                    (code.unwrap_or(200), object.clone())
                } else if let Some(name) = line
                    .strip_prefix("GET /api/v1/namespaces/")
                    .filter(|rest| !rest.contains('/'))
                {
                    // Every namespace exists, without labels, unless the table says otherwise.
                    (
                        200,
                        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}),
                    )
                } else {
                    (
                        404,
                        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                 "reason": "NotFound", "code": 404, "message": "not found"}),
                    )
                };
                let response = Response::builder()
                    .status(status)
                    .header("Content-Type", "application/json")
                    .body(Body::from(serde_json::to_vec(&answer).unwrap_or_default()))
                    .expect("response");
                send.send_response(response);
            }
        });
        (kube::Client::new(service, "default"), MockApi { requests })
    }

    pub fn lines(&self) -> Vec<String> {
        self.requests
            .lock()
            .expect("log")
            .iter()
            .map(|(l, _)| l.clone())
            .collect()
    }

    pub fn posted(&self, prefix: &str) -> Vec<Value> {
        self.requests
            .lock()
            .expect("log")
            .iter()
            .filter(|(l, _)| l.starts_with(prefix))
            .map(|(_, b)| b.clone())
            .collect()
    }
}
