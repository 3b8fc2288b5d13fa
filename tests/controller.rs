//! The cluster controller against the Kubernetes API mocked at the HTTP level: a `kube::Client`
//! over `tower_test::mock`, answered by a small fake API server that serves lists, keeps watch
//! streams open, applies status patches (and announces them on the watches, as the real one
//! does), and can fail lists, expire watches (410 Gone) or hold a list back.

// Helpers outside `#[test]` functions fail by panicking, as tests do (clippy.toml covers only
// `#[test]` code).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Request, Response};
use serde_json::{Value, json};

use signet::controller::{PolicyState, StatusWrites, policy_channel, run_controller};
use signet::crypto::{Algorithm, generate_key_pair};
use signet::policy::EngineOptions;
use signet::reference::ImageRef;

use support::fake_kube::{Objects, client_answered_by, json_response, same_object, status_body};

/// One status patch the controller sent.
#[derive(Clone, Debug)]
struct RecordedPatch {
    path: String,
    query: String,
    content_type: String,
    body: Value,
}

struct Inner {
    /// Namespaces hold metadata only.
    objects: Objects,
    /// plural -> status codes the next lists fail with.
    list_failures: HashMap<String, VecDeque<u16>>,
    /// Plurals whose lists are not answered until released.
    held: HashSet<String>,
    lists: HashMap<String, usize>,
    patches: Vec<RecordedPatch>,
    /// The one Lease leader election uses.
    lease: Option<Value>,
}

#[derive(Clone)]
struct FakeApi(Arc<Mutex<Inner>>);

const SIGNET: &str = "signet.dev/v1alpha1";

fn kind_of(plural: &str) -> (&'static str, &'static str) {
    match plural {
        "attestors" => (SIGNET, "Attestor"),
        "verificationpolicies" => (SIGNET, "VerificationPolicy"),
        "clusterverificationpolicies" => (SIGNET, "ClusterVerificationPolicy"),
        "signingrules" => (SIGNET, "SigningRule"),
        "namespaces" => ("meta.k8s.io/v1", "PartialObjectMetadata"),
        other => panic!("the controller asked for an unexpected resource {other}"),
    }
}

impl FakeApi {
    /// A client whose every request this fake answers.
    fn start() -> (kube::Client, FakeApi) {
        let api = FakeApi(Arc::new(Mutex::new(Inner {
            objects: Objects::new(kind_of),
            list_failures: HashMap::new(),
            held: HashSet::new(),
            lists: HashMap::new(),
            patches: Vec::new(),
            lease: None,
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
        let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        if segments.contains(&"leases") {
            return self.answer_lease(request).await;
        }
        if request.method() == http::Method::PATCH && segments.last() == Some(&"status") {
            let content_type = request
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            let bytes = request.into_body().collect_bytes().await.unwrap();
            let body: Value = serde_json::from_slice(&bytes).expect("the patch is JSON");
            let plural = segments[segments.len() - 3].to_string();
            self.lock().patches.push(RecordedPatch {
                path,
                query,
                content_type,
                body: body.clone(),
            });
            return match self.apply_status(&plural, &body) {
                Some(object) => json_response(200, &object),
                None => json_response(404, &status_body(404, "NotFound")),
            };
        }
        assert_eq!(request.method(), http::Method::GET, "unexpected {path}");
        let plural = segments.last().unwrap().to_string();
        if query.contains("watch=true") {
            return self.lock().objects.open_watch(&plural);
        }
        // Lists: held ones wait for release; failures are served in order.
        while self.lock().held.contains(&plural) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let mut inner = self.lock();
        *inner.lists.entry(plural.clone()).or_default() += 1;
        if let Some(code) = inner
            .list_failures
            .get_mut(&plural)
            .and_then(VecDeque::pop_front)
        {
            return json_response(code, &status_body(code, "InternalError"));
        }
        inner.objects.list(&plural)
    }

    /// GET, create and patch (apply or strategic: both merge `spec`, null removes) of the Lease.
    async fn answer_lease(
        &self,
        request: Request<kube::client::Body>,
    ) -> Response<axum::body::Body> {
        let method = request.method().clone();
        let bytes = request.into_body().collect_bytes().await.unwrap();
        let mut inner = self.lock();
        if method == http::Method::POST {
            let mut lease: Value = serde_json::from_slice(&bytes).unwrap();
            lease["metadata"]["resourceVersion"] = json!("1");
            inner.lease = Some(lease.clone());
            return json_response(201, &lease);
        }
        let Some(lease) = inner.lease.as_mut() else {
            return json_response(404, &status_body(404, "NotFound"));
        };
        if method == http::Method::PATCH {
            let patch: Value = serde_json::from_slice(&bytes).unwrap();
            if let Some(fields) = patch["spec"].as_object() {
                for (key, value) in fields {
                    if value.is_null() {
                        if let Some(spec) = lease["spec"].as_object_mut() {
                            spec.remove(key);
                        }
                    } else {
                        lease["spec"][key] = value.clone();
                    }
                }
            }
        }
        json_response(200, lease)
    }

    fn lease_holder(&self) -> Option<String> {
        self.lock().lease.as_ref()?["spec"]["holderIdentity"]
            .as_str()
            .map(str::to_string)
    }

    /// Stores (or replaces) an object; with `announce`, watchers see it.
    fn store(&self, plural: &str, object: Value, announce: bool) {
        self.lock().objects.store(plural, object, announce);
    }

    /// Adds or changes an object, as `kubectl apply` would.
    fn put(&self, plural: &str, object: Value) {
        self.store(plural, object, true);
    }

    fn apply_status(&self, plural: &str, patch: &Value) -> Option<Value> {
        let mut object = {
            let inner = self.lock();
            inner
                .objects
                .by_plural
                .get(plural)?
                .iter()
                .find(|o| same_object(o, patch))?
                .clone()
        };
        object["status"] = patch["status"].clone();
        self.store(plural, object.clone(), true);
        Some(object)
    }

    /// Ends every watch of `plural` with a 410 Gone event, as after an etcd compaction.
    fn expire_watches(&self, plural: &str) {
        let gone = json!({"type": "ERROR", "object": status_body(410, "Expired")});
        self.lock().objects.end_watches(plural, &gone);
    }

    fn fail_next_lists(&self, plural: &str, code: u16, times: usize) {
        let mut inner = self.lock();
        let queue = inner.list_failures.entry(plural.to_string()).or_default();
        queue.extend(std::iter::repeat_n(code, times));
    }

    fn hold_lists(&self, plural: &str) {
        self.lock().held.insert(plural.to_string());
    }

    fn release_lists(&self, plural: &str) {
        self.lock().held.remove(plural);
    }

    fn lists(&self, plural: &str) -> usize {
        self.lock().lists.get(plural).copied().unwrap_or(0)
    }

    fn patches(&self) -> Vec<RecordedPatch> {
        self.lock().patches.clone()
    }
}

fn public_pem() -> String {
    generate_key_pair(Algorithm::EcdsaP256Sha256, None)
        .unwrap()
        .public_key_pem()
}

fn attestor(name: &str, pem: &str) -> Value {
    json!({"metadata": {"name": name, "generation": 1, "uid": format!("uid-{name}")},
           "spec": {"keys": [{"id": format!("{name}-key"), "algorithm": "ECDSA_P256_SHA_256", "publicKey": pem}]}})
}

fn cluster_policy(name: &str, images: &str, attestors: &[&str], generation: i64) -> Value {
    json!({"metadata": {"name": name, "generation": generation},
           "spec": {"images": [images], "attestors": attestors}})
}

fn policy(namespace: &str, name: &str, images: &str, attestors: &[&str]) -> Value {
    json!({"metadata": {"name": name, "namespace": namespace, "generation": 2},
           "spec": {"images": [images], "attestors": attestors}})
}

fn namespace(name: &str, labels: Value) -> Value {
    json!({"metadata": {"name": name, "labels": labels}})
}

fn image(text: &str) -> ImageRef {
    ImageRef::parse(text).unwrap()
}

/// The usual world: a valid attestor, a cluster policy on prod images in `env=prod` namespaces.
fn base_world(api: &FakeApi) {
    api.put("attestors", attestor("release", &public_pem()));
    let mut prod = cluster_policy("prod", "registry.example.com/prod/**", &["release"], 1);
    prod["spec"]["namespaceSelector"] = json!({"matchLabels": {"env": "prod"}});
    api.put("clusterverificationpolicies", prod);
    api.put("namespaces", namespace("shop", json!({"env": "prod"})));
    api.put("namespaces", namespace("lab", json!({"env": "dev"})));
}

fn start(client: kube::Client) -> (PolicyState, tokio::task::JoinHandle<()>) {
    let (publisher, state) = policy_channel(EngineOptions::default());
    let task = tokio::spawn(async move {
        let result = run_controller(
            client,
            EngineOptions::default(),
            publisher,
            StatusWrites::Always,
        )
        .await;
        panic!("the controller stopped: {result:?}");
    });
    (state, task)
}

async fn eventually<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(found) = check() {
            return found;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn patch_for<'a>(patches: &'a [RecordedPatch], path_end: &str) -> Option<&'a RecordedPatch> {
    patches.iter().rev().find(|p| p.path.ends_with(path_end))
}

fn ready_condition(patch: &RecordedPatch) -> &Value {
    &patch.body["status"]["conditions"][0]
}

#[tokio::test]
async fn initial_lists_build_the_snapshot_and_statuses_are_applied() {
    let (client, api) = FakeApi::start();
    base_world(&api);
    api.put(
        "attestors",
        attestor(
            "broken",
            "-----BEGIN PUBLIC KEY-----\nbm90IGEga2V5\n-----END PUBLIC KEY-----\n",
        ),
    );
    api.put(
        "clusterverificationpolicies",
        cluster_policy("orphan", "registry.example.com/x/**", &["nobody"], 4),
    );
    api.put(
        "verificationpolicies",
        policy(
            "team",
            "needs-broken",
            "registry.example.com/team/**",
            &["broken"],
        ),
    );
    let (state, _task) = start(client);

    eventually("ready", || state.is_ready().then_some(())).await;
    let snapshot = state.snapshot();
    assert_eq!(
        snapshot.generation(),
        1,
        "one compilation of the initial lists"
    );
    let prod_image = image("registry.example.com/prod/app:v1");
    let names = |ns: &str, img: &ImageRef| -> Vec<String> {
        snapshot
            .matching_policies(ns, img)
            .iter()
            .map(|p| p.display_name().to_string())
            .collect()
    };
    assert_eq!(names("shop", &prod_image), ["prod"], "selected by label");
    assert!(
        names("lab", &prod_image).is_empty(),
        "not selected: env=dev"
    );
    assert_eq!(
        names("team", &image("registry.example.com/team/app:v1")),
        ["team/needs-broken"]
    );

    let patches = eventually("five status patches", || {
        let patches = api.patches();
        (patches.len() >= 5).then_some(patches)
    })
    .await;
    for p in &patches {
        assert_eq!(p.content_type, "application/apply-patch+yaml", "{p:?}");
        assert!(p.query.contains("fieldManager=signet"), "{p:?}");
        assert!(p.query.contains("force=true"), "{p:?}");
        assert_eq!(p.body["apiVersion"], SIGNET);
    }

    let release = patch_for(&patches, "/attestors/release/status").expect("release status");
    assert_eq!(release.body["kind"], "Attestor");
    assert_eq!(ready_condition(release)["type"], "Ready");
    assert_eq!(ready_condition(release)["status"], "True");
    assert_eq!(ready_condition(release)["reason"], "Ready");
    assert_eq!(release.body["status"]["observedGeneration"], 1);
    let fingerprint = release.body["status"]["keys"][0]["fingerprint"]
        .as_str()
        .unwrap();
    assert!(fingerprint.starts_with("sha256:") && fingerprint.len() == 71);
    assert_eq!(release.body["status"]["keys"][0]["id"], "release-key");
    assert_eq!(release.body["status"]["keys"][0]["name"], "release-key");

    let broken = patch_for(&patches, "/attestors/broken/status").expect("broken status");
    assert_eq!(ready_condition(broken)["status"], "False");
    assert_eq!(ready_condition(broken)["reason"], "InvalidKey");
    let message = ready_condition(broken)["message"].as_str().unwrap();
    assert!(message.starts_with("spec.keys[0].publicKey: "), "{message}");

    let orphan =
        patch_for(&patches, "/clusterverificationpolicies/orphan/status").expect("orphan status");
    assert_eq!(ready_condition(orphan)["reason"], "AttestorNotFound");
    assert_eq!(
        ready_condition(orphan)["message"],
        "spec.attestors: attestor \"nobody\" not found"
    );
    assert_eq!(ready_condition(orphan)["observedGeneration"], 4);
    assert_eq!(orphan.body["status"]["observedGeneration"], 4);

    let team = patch_for(
        &patches,
        "/namespaces/team/verificationpolicies/needs-broken/status",
    )
    .expect("namespaced status at the namespaced path");
    assert_eq!(team.body["metadata"]["namespace"], "team");
    assert_eq!(ready_condition(team)["reason"], "InvalidKey");
    assert_eq!(ready_condition(team)["observedGeneration"], 2);

    // The fake announced each status on the watches; the controller recompiles and finds
    // nothing left to write.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        api.patches().len(),
        5,
        "statuses already current are not rewritten"
    );
}

#[tokio::test]
async fn not_ready_before_every_initial_list() {
    let (client, api) = FakeApi::start();
    base_world(&api);
    api.hold_lists("namespaces");
    let (state, _task) = start(client);
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(!state.is_ready(), "the Namespace list has not come yet");
    assert_eq!(state.snapshot().generation(), 0, "nothing published");
    assert!(api.patches().is_empty(), "no status from a partial picture");
    assert_eq!(api.lists("attestors"), 1);

    api.release_lists("namespaces");
    eventually("ready", || state.is_ready().then_some(())).await;
    assert_eq!(state.snapshot().generation(), 1);
    assert_eq!(
        state
            .snapshot()
            .matching_policies("shop", &image("registry.example.com/prod/a:1"))
            .len(),
        1,
        "the labels from the held list are in the first snapshot"
    );
}

#[tokio::test]
async fn watch_events_publish_new_generations() {
    let (client, api) = FakeApi::start();
    base_world(&api);
    let (mut state, _task) = start(client);
    eventually("ready", || state.is_ready().then_some(())).await;
    let first = state.snapshot().generation();
    let dev = image("registry.example.com/dev/app:v1");
    assert!(state.snapshot().matching_policies("lab", &dev).is_empty());

    // A burst: three policies at once make one new generation.
    for name in ["dev-a", "dev-b", "dev-c"] {
        api.put(
            "clusterverificationpolicies",
            cluster_policy(name, "registry.example.com/dev/**", &["release"], 1),
        );
    }
    tokio::time::timeout(Duration::from_secs(5), state.changed())
        .await
        .expect("a new snapshot");
    tokio::time::sleep(Duration::from_millis(400)).await;
    let snapshot = state.snapshot();
    assert_eq!(snapshot.matching_policies("lab", &dev).len(), 3);
    // One compilation for the burst, one for the status patches the fake announced back.
    assert!(
        snapshot.generation() <= first + 2,
        "a burst is compiled once or twice, not per event: {first} -> {}",
        snapshot.generation()
    );
    let new_status = patch_for(&api.patches(), "/clusterverificationpolicies/dev-b/status")
        .cloned()
        .expect("the new policy's status is written");
    assert_eq!(ready_condition(&new_status)["status"], "True");

    // A namespace label change moves the cluster policy.
    api.put("namespaces", namespace("lab", json!({"env": "prod"})));
    let prod = image("registry.example.com/prod/app:v1");
    eventually("lab now selected", || {
        (state.snapshot().matching_policies("lab", &prod).len() == 1).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_failed_watch_is_relisted_and_recovers() {
    let (client, api) = FakeApi::start();
    base_world(&api);
    let (state, _task) = start(client);
    eventually("ready", || state.is_ready().then_some(())).await;
    let qa = image("registry.example.com/qa/app:v1");
    assert!(state.snapshot().matching_policies("any", &qa).is_empty());

    // While the watch is down a policy appears that no watch event announces; the watch
    // expires (410 Gone) and the next list fails with a 500 before one succeeds.
    api.store(
        "clusterverificationpolicies",
        cluster_policy("qa", "registry.example.com/qa/**", &["release"], 1),
        false,
    );
    api.fail_next_lists("clusterverificationpolicies", 500, 1);
    api.expire_watches("clusterverificationpolicies");

    eventually("the relisted policy", || {
        (state.snapshot().matching_policies("any", &qa).len() == 1).then_some(())
    })
    .await;
    assert!(state.is_ready(), "ready throughout");
    assert!(
        api.lists("clusterverificationpolicies") >= 3,
        "initial list, the failed relist and the good one"
    );
    let status = patch_for(&api.patches(), "/clusterverificationpolicies/qa/status")
        .cloned()
        .expect("status after recovery");
    assert_eq!(ready_condition(&status)["status"], "True");
}

#[tokio::test]
async fn deleting_an_attestor_makes_its_policies_not_ready() {
    let (client, api) = FakeApi::start();
    base_world(&api);
    let (state, _task) = start(client);
    eventually("prod Ready", || {
        let p = api.patches();
        patch_for(&p, "/clusterverificationpolicies/prod/status")
            .map(|p| ready_condition(p)["status"] == "True")
            .filter(|ok| *ok)
    })
    .await;
    let before = state.snapshot().generation();
    api.lock().objects.delete("attestors", "release");
    let patch = eventually("prod AttestorNotFound", || {
        let p = api.patches();
        patch_for(&p, "/clusterverificationpolicies/prod/status")
            .filter(|p| ready_condition(p)["reason"] == "AttestorNotFound")
            .cloned()
    })
    .await;
    assert_eq!(
        ready_condition(&patch)["message"],
        "spec.attestors: attestor \"release\" not found"
    );
    assert!(state.snapshot().generation() > before);
}

#[tokio::test]
async fn only_the_lease_holder_writes_status() {
    let (client, api) = FakeApi::start();
    base_world(&api);
    // Another replica holds the Lease and renewed it just now, for 2 seconds.
    let now = serde_json::to_value(k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(
        k8s_openapi::jiff::Timestamp::now(),
    ))
    .unwrap();
    api.lock().lease = Some(json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "signet-controller", "namespace": "signet", "resourceVersion": "1"},
        "spec": {"holderIdentity": "replica-b", "renewTime": now, "acquireTime": now,
                 "leaseDurationSeconds": 2, "leaseTransitions": 0},
    }));
    let (publisher, state) = policy_channel(EngineOptions::default());
    let election = signet::controller::LeaderElection {
        lease_namespace: "signet".into(),
        lease_name: "signet-controller".into(),
        identity: "replica-a".into(),
    };
    let _task = tokio::spawn(async move {
        let result = run_controller(
            client,
            EngineOptions::default(),
            publisher,
            StatusWrites::WhenLeader(election),
        )
        .await;
        panic!("the controller stopped: {result:?}");
    });
    eventually("ready", || state.is_ready().then_some(())).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        state.snapshot().generation(),
        1,
        "followers publish snapshots too"
    );
    assert!(api.patches().is_empty(), "a follower writes no status");
    assert_eq!(api.lease_holder().as_deref(), Some("replica-b"));

    // replica-b stops renewing: once its Lease expires, replica-a takes it and writes status.
    let patches = eventually("status written by the new holder", || {
        let patches = api.patches();
        (patches.len() >= 2).then_some(patches)
    })
    .await;
    assert_eq!(api.lease_holder().as_deref(), Some("replica-a"));
    assert!(patch_for(&patches, "/attestors/release/status").is_some());
    assert!(patch_for(&patches, "/clusterverificationpolicies/prod/status").is_some());
}
