//! A local instance metadata service on a free loopback port, as the clouds serve it to a VM:
//! AWS IMDSv2 (`169.254.169.254`) or the Alibaba Cloud ECS metadata service in its hardened mode
//! (`100.100.100.200`). Mocked, since no real one can run here: it is written from the providers'
//! documentation and checks what they check (a session token asked for with `PUT
//! /latest/api/token` and a TTL header, then sent with every `GET`, else HTTP 401 / 400), and it
//! hands out whatever credentials the test sets, with the expiry the test sets, counting the
//! credential documents it served.
//!
//! [`ContainerCredentials`] is the container credential endpoint of ECS tasks and of the EKS Pod
//! Identity agent (`169.254.170.23/v1/credentials`): one `GET` whose `Authorization` header must
//! be the pod's token (the agent's token file), answered with the same document as IMDS.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, put};

/// Which cloud's metadata service.
#[derive(Clone, Copy, Debug)]
pub enum Cloud {
    /// AWS EC2 IMDSv2.
    Aws,
    /// Alibaba Cloud ECS (token mode).
    Alibaba,
}

impl Cloud {
    fn ttl_header(self) -> &'static str {
        match self {
            Cloud::Aws => "x-aws-ec2-metadata-token-ttl-seconds",
            Cloud::Alibaba => "x-aliyun-ecs-metadata-token-ttl-seconds",
        }
    }

    fn token_header(self) -> &'static str {
        match self {
            Cloud::Aws => "x-aws-ec2-metadata-token",
            Cloud::Alibaba => "x-aliyun-ecs-metadata-token",
        }
    }

    /// The folder listing the instance's roles.
    pub fn roles_path(self) -> &'static str {
        match self {
            Cloud::Aws => "/latest/meta-data/iam/security-credentials/",
            Cloud::Alibaba => "/latest/meta-data/ram/security-credentials/",
        }
    }
}

/// Credentials the service hands out.
#[derive(Clone, Debug)]
pub struct Handed {
    pub access_key_id: String,
    pub secret: String,
    pub token: String,
    /// From now.
    pub expires_in: Duration,
}

/// What the service saw.
#[derive(Default, Debug)]
pub struct Seen {
    /// The TTL header of each token request.
    pub token_ttls: Vec<String>,
    /// Credential documents served (the access key ids, in order).
    pub documents: Vec<String>,
    /// Requests refused (`METHOD path: why`).
    pub refused: Vec<String>,
}

struct Service {
    cloud: Cloud,
    role: String,
    handed: Mutex<Handed>,
    tokens: Mutex<Vec<String>>,
    seen: Mutex<Seen>,
}

/// A running metadata service (stops with the test's runtime).
pub struct MetadataServer {
    addr: SocketAddr,
    service: Arc<Service>,
}

impl MetadataServer {
    /// Starts the `cloud` service for an instance whose role is `role`, handing out `handed`.
    pub async fn start(cloud: Cloud, role: &str, handed: Handed) -> Self {
        let service = Arc::new(Service {
            cloud,
            role: role.to_string(),
            handed: Mutex::new(handed),
            tokens: Mutex::new(Vec::new()),
            seen: Mutex::new(Seen::default()),
        });
        let roles = cloud.roles_path();
        let app = axum::Router::new()
            .route("/latest/api/token", put(issue_token))
            .route(roles, get(list_roles))
            .route(&format!("{roles}{{role}}"), get(role_credentials))
            .with_state(Arc::clone(&service));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        MetadataServer { addr, service }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Hands out `handed` from now on.
    pub fn hand_out(&self, handed: Handed) {
        *self.service.handed.lock().unwrap() = handed;
    }

    /// Runs `f` over what the service saw.
    pub fn seen<T>(&self, f: impl FnOnce(&Seen) -> T) -> T {
        f(&self.service.seen.lock().unwrap())
    }
}

fn refuse(service: &Service, what: String, status: StatusCode) -> (StatusCode, String) {
    service.seen.lock().unwrap().refused.push(what);
    (status, String::new())
}

async fn issue_token(
    State(service): State<Arc<Service>>,
    headers: HeaderMap,
) -> (StatusCode, String) {
    let ttl = headers
        .get(service.cloud.ttl_header())
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    // Both services take 1 to 21600 seconds and refuse a token request without a TTL.
    if !ttl.parse::<u32>().is_ok_and(|t| (1..=21600).contains(&t)) {
        return refuse(
            &service,
            format!("PUT token: TTL {ttl:?}"),
            StatusCode::BAD_REQUEST,
        );
    }
    let mut random = [0u8; 16];
    aws_lc_rs::rand::fill(&mut random).unwrap();
    let token = hex::encode(random);
    service.tokens.lock().unwrap().push(token.clone());
    service.seen.lock().unwrap().token_ttls.push(ttl);
    (StatusCode::OK, token)
}

fn token_ok(service: &Service, headers: &HeaderMap) -> bool {
    headers
        .get(service.cloud.token_header())
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| service.tokens.lock().unwrap().iter().any(|k| k == t))
}

async fn list_roles(
    State(service): State<Arc<Service>>,
    headers: HeaderMap,
) -> (StatusCode, String) {
    if !token_ok(&service, &headers) {
        return refuse(
            &service,
            "GET roles: no valid token".into(),
            StatusCode::UNAUTHORIZED,
        );
    }
    (StatusCode::OK, service.role.clone())
}

async fn role_credentials(
    State(service): State<Arc<Service>>,
    Path(role): Path<String>,
    headers: HeaderMap,
) -> (StatusCode, String) {
    if !token_ok(&service, &headers) {
        return refuse(
            &service,
            format!("GET {role}: no valid token"),
            StatusCode::UNAUTHORIZED,
        );
    }
    if role != service.role {
        return refuse(
            &service,
            format!("GET {role}: no such role"),
            StatusCode::NOT_FOUND,
        );
    }
    let handed = service.handed.lock().unwrap().clone();
    let now = jiff::Timestamp::now();
    let expires = jiff::Timestamp::try_from(SystemTime::now() + handed.expires_in).unwrap();
    let format = |t: jiff::Timestamp| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
    let document = match service.cloud {
        Cloud::Aws => serde_json::json!({
            "Code": "Success",
            "LastUpdated": format(now),
            "Type": "AWS-HMAC",
            "AccessKeyId": handed.access_key_id,
            "SecretAccessKey": handed.secret,
            "Token": handed.token,
            "Expiration": format(expires),
        }),
        Cloud::Alibaba => serde_json::json!({
            "AccessKeyId": handed.access_key_id,
            "AccessKeySecret": handed.secret,
            "Expiration": format(expires),
            "SecurityToken": handed.token,
            "LastUpdated": format(now),
            "Code": "Success",
        }),
    };
    service
        .seen
        .lock()
        .unwrap()
        .documents
        .push(handed.access_key_id);
    (StatusCode::OK, document.to_string())
}

/// The ECS / EKS Pod Identity container credential endpoint (mocked, as the agent cannot run
/// here): `GET /v1/credentials` with `Authorization: <token>`, else HTTP 401.
pub struct ContainerCredentials {
    addr: SocketAddr,
    seen: Arc<Mutex<Seen>>,
}

impl ContainerCredentials {
    /// Serves `handed` to requests carrying `token`.
    pub async fn start(token: &str, handed: Handed) -> Self {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let (expected, recorded) = (token.to_string(), Arc::clone(&seen));
        let app = axum::Router::new().route(
            "/v1/credentials",
            get(move |headers: HeaderMap| async move {
                let given = headers
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_string();
                let mut seen = recorded.lock().unwrap();
                if given != expected {
                    seen.refused
                        .push(format!("GET credentials: authorization {given:?}"));
                    return (StatusCode::UNAUTHORIZED, String::new());
                }
                seen.documents.push(handed.access_key_id.clone());
                let expires =
                    jiff::Timestamp::try_from(SystemTime::now() + handed.expires_in).unwrap();
                let document = serde_json::json!({
                    "AccessKeyId": handed.access_key_id,
                    "SecretAccessKey": handed.secret,
                    "Token": handed.token,
                    "AccountId": "123456789012",
                    "Expiration": expires.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
                });
                (StatusCode::OK, document.to_string())
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        ContainerCredentials { addr, seen }
    }

    /// The full URI, as `AWS_CONTAINER_CREDENTIALS_FULL_URI` names it.
    pub fn url(&self) -> String {
        format!("http://{}/v1/credentials", self.addr)
    }

    /// Runs `f` over what the endpoint saw.
    pub fn seen<T>(&self, f: impl FnOnce(&Seen) -> T) -> T {
        f(&self.seen.lock().unwrap())
    }
}
