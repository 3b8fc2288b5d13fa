//! AWS credentials, from the first source configured, in the order of the AWS SDKs for Java 2.x
//! and PHP (the AWS SDK for Rust reads the shared files before web identity; in a pod, where
//! no shared files exist, the two orders agree):
//! 1. the environment: `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`;
//! 2. web identity (EKS IRSA): `AWS_WEB_IDENTITY_TOKEN_FILE` + `AWS_ROLE_ARN`
//!    (`AWS_ROLE_SESSION_NAME`), exchanged at STS by `AssumeRoleWithWebIdentity` (endpoint
//!    `AWS_ENDPOINT_URL_STS`, `AWS_ENDPOINT_URL` or the regional one);
//! 3. the shared files' static keys for `AWS_PROFILE` (`~/.aws/credentials`, `~/.aws/config`,
//!    `AWS_SHARED_CREDENTIALS_FILE`, `AWS_CONFIG_FILE`: [`aws_profile`](super::aws_profile));
//!    role, SSO and credential-process profiles are refused with one line;
//! 4. container credentials (ECS, EKS Pod Identity): `AWS_CONTAINER_CREDENTIALS_RELATIVE_URI`, or
//!    `AWS_CONTAINER_CREDENTIALS_FULL_URI` with `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE` /
//!    `AWS_CONTAINER_AUTHORIZATION_TOKEN`;
//! 5. the EC2 instance metadata service, IMDSv2: a session token (`PUT /latest/api/token`,
//!    TTL header), the role name, then its credentials, fetched again before their `Expiration`
//!    (`AWS_EC2_METADATA_SERVICE_ENDPOINT` moves the service, as the SDKs allow; off with
//!    `AWS_EC2_METADATA_DISABLED=true`).

use std::sync::Arc;
use std::time::SystemTime;

use serde::Deserialize;

use super::aws::{default_endpoint, xml_text};
use super::credentials::{Credentials, Fetch, env, read_token_file};
use super::metrics::Provider;
use super::request_signing::{canonical_query, parse_rfc3339_utc};
use super::transport::{self, ATTEMPTS, KmsError, METADATA_TIMEOUT, one_line, with_retries};

/// The credential source for `region`, chosen from the environment now; fetching happens later.
pub(super) fn chain(region: &str, http: reqwest::Client) -> Result<Fetch, KmsError> {
    if let Some(id) = env("AWS_ACCESS_KEY_ID") {
        let secret = env("AWS_SECRET_ACCESS_KEY").ok_or_else(|| {
            KmsError::Credentials(
                "AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not".into(),
            )
        })?;
        let creds = Credentials {
            access_key_id: id,
            secret,
            token: env("AWS_SESSION_TOKEN"),
            expires: None,
            source: "environment",
        };
        return Ok(Arc::new(move || {
            let creds = creds.clone();
            Box::pin(async move { Ok(creds) })
        }));
    }
    if let (Some(token_file), Some(role)) =
        (env("AWS_WEB_IDENTITY_TOKEN_FILE"), env("AWS_ROLE_ARN"))
    {
        let endpoint = env("AWS_ENDPOINT_URL_STS")
            .or_else(|| env("AWS_ENDPOINT_URL"))
            .unwrap_or_else(|| default_endpoint("sts", region));
        let url = transport::endpoint_url(&endpoint, "AWS STS")?;
        let session = env("AWS_ROLE_SESSION_NAME").unwrap_or_else(|| "signet".into());
        return Ok(Arc::new(move || {
            let (http, url, token_file, role, session) = (
                http.clone(),
                url.clone(),
                token_file.clone(),
                role.clone(),
                session.clone(),
            );
            Box::pin(async move { web_identity(&http, &url, &token_file, &role, &session).await })
        }));
    }
    if let Some(creds) = super::aws_profile::profile_credentials()? {
        return Ok(Arc::new(move || {
            let creds = creds.clone();
            Box::pin(async move { Ok(creds) })
        }));
    }
    if let Some(container) = container_source()? {
        return Ok(Arc::new(move || {
            let (http, source) = (http.clone(), container.clone());
            Box::pin(async move { container_credentials(&http, &source).await })
        }));
    }
    if env("AWS_EC2_METADATA_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
        return Err(KmsError::Credentials(
            "no AWS credentials: none in the environment (AWS_ACCESS_KEY_ID), no web identity (AWS_WEB_IDENTITY_TOKEN_FILE + AWS_ROLE_ARN), no shared credentials file, no container credentials, and instance metadata is disabled".into(),
        ));
    }
    let endpoint =
        env("AWS_EC2_METADATA_SERVICE_ENDPOINT").unwrap_or_else(|| "http://169.254.169.254".into());
    let base = url::Url::parse(&format!("{}/", endpoint.trim_end_matches('/'))).map_err(|e| {
        KmsError::Config(format!(
            "AWS_EC2_METADATA_SERVICE_ENDPOINT {endpoint:?}: {e}"
        ))
    })?;
    Ok(Arc::new(move || {
        let (http, base) = (http.clone(), base.clone());
        Box::pin(async move { instance_metadata(&http, &base).await })
    }))
}

/// `AssumeRoleWithWebIdentity` (an unsigned STS call: the token is the proof).
async fn web_identity(
    http: &reqwest::Client,
    url: &url::Url,
    token_file: &str,
    role: &str,
    session: &str,
) -> Result<Credentials, KmsError> {
    let token = read_token_file(token_file, "web identity token file").await?;
    let form = canonical_query(&[
        ("Action".into(), "AssumeRoleWithWebIdentity".into()),
        ("Version".into(), "2011-06-15".into()),
        ("RoleArn".into(), role.to_string()),
        ("RoleSessionName".into(), session.to_string()),
        ("WebIdentityToken".into(), token),
    ]);
    let reply = with_retries(Provider::AwsKms, ATTEMPTS, || {
        let request = http
            .post(url.clone())
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form.clone());
        transport::send(request, url, sts_error)
    })
    .await
    .map_err(|e| KmsError::Credentials(format!("web identity ({role}): {}", e.reason())))?;
    let field = |tag: &str| {
        xml_text(&reply.body, tag).ok_or_else(|| {
            KmsError::Credentials(format!("web identity ({role}): STS answer has no {tag}"))
        })
    };
    Ok(Credentials {
        access_key_id: field("AccessKeyId")?,
        secret: field("SecretAccessKey")?,
        token: Some(field("SessionToken")?),
        expires: parse_rfc3339_utc(&field("Expiration")?),
        source: "web identity",
    })
}

/// An STS error (XML `ErrorResponse`): its code and message only, never the request.
fn sts_error(status: u16, body: &[u8]) -> KmsError {
    let code = xml_text(body, "Code").unwrap_or_else(|| "unknown".into());
    KmsError::Api {
        operation: "AssumeRoleWithWebIdentity",
        status,
        throttled: code.contains("Throttling"),
        code,
        message: one_line(&xml_text(body, "Message").unwrap_or_default()),
    }
}

/// Where container credentials come from, and the authorization header's value source.
#[derive(Clone)]
struct ContainerSource {
    url: url::Url,
    token_file: Option<String>,
    token: Option<String>,
}

/// The container credential endpoint, if the environment names one. A full URI over plain HTTP
/// must be loopback or the ECS / EKS Pod Identity agent addresses, as the SDKs require.
fn container_source() -> Result<Option<ContainerSource>, KmsError> {
    let url = if let Some(relative) = env("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI") {
        format!("http://169.254.170.2{relative}")
    } else if let Some(full) = env("AWS_CONTAINER_CREDENTIALS_FULL_URI") {
        full
    } else {
        return Ok(None);
    };
    let parsed = url::Url::parse(&url)
        .map_err(|e| KmsError::Config(format!("container credentials URI {url:?}: {e}")))?;
    let host = parsed.host_str().unwrap_or_default();
    let agent = matches!(host, "169.254.170.2" | "169.254.170.23" | "[fd00:ec2::23]");
    if parsed.scheme() == "http" && !(agent || transport::is_loopback(host)) {
        return Err(KmsError::Config(format!(
            "container credentials URI {url:?}: plain HTTP only to loopback or the ECS/EKS agent addresses"
        )));
    }
    Ok(Some(ContainerSource {
        url: parsed,
        token_file: env("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"),
        token: env("AWS_CONTAINER_AUTHORIZATION_TOKEN"),
    }))
}

/// The JSON document of container credentials and IMDS.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct CredentialDocument {
    access_key_id: String,
    secret_access_key: String,
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    expiration: Option<String>,
}

impl CredentialDocument {
    fn into_credentials(self, source: &'static str) -> Credentials {
        Credentials {
            access_key_id: self.access_key_id,
            secret: self.secret_access_key,
            token: self.token,
            expires: self.expiration.as_deref().and_then(parse_rfc3339_utc),
            source,
        }
    }
}

fn parse_document(body: &[u8], what: &str) -> Result<CredentialDocument, KmsError> {
    // serde's message names the field, never its value.
    serde_json::from_slice(body).map_err(|e| {
        KmsError::Credentials(format!("{what}: answer is not a credential document: {e}"))
    })
}

async fn container_credentials(
    http: &reqwest::Client,
    source: &ContainerSource,
) -> Result<Credentials, KmsError> {
    let authorization = match (&source.token_file, &source.token) {
        (Some(file), _) => Some(read_token_file(file, "container authorization token file").await?),
        (None, Some(token)) => Some(token.clone()),
        (None, None) => None,
    };
    let reply = with_retries(Provider::AwsKms, 2, || {
        let mut request = http.get(source.url.clone()).timeout(METADATA_TIMEOUT);
        if let Some(value) = &authorization {
            request = request.header("authorization", value);
        }
        transport::send(request, &source.url, |status, _| {
            KmsError::Credentials(format!(
                "container credentials endpoint answered HTTP {status}"
            ))
        })
    })
    .await
    .map_err(|e| KmsError::Credentials(format!("container credentials: {}", e.reason())))?;
    Ok(parse_document(&reply.body, "container credentials")?.into_credentials("container"))
}

/// IMDSv2: a session token, the role name, then the role's credentials.
async fn instance_metadata(
    http: &reqwest::Client,
    base: &url::Url,
) -> Result<Credentials, KmsError> {
    let fail = |e: KmsError| {
        KmsError::Credentials(format!(
            "no AWS credentials: none in the environment (AWS_ACCESS_KEY_ID), no web identity (AWS_WEB_IDENTITY_TOKEN_FILE + AWS_ROLE_ARN), no shared credentials file, no container credentials, and the instance metadata service failed: {}",
            e.reason()
        ))
    };
    let join = |path: &str| {
        base.join(path)
            .map_err(|e| KmsError::Config(format!("metadata URL: {e}")))
    };
    let token_url = join("latest/api/token")?;
    let session = transport::MetadataSession::open(
        http,
        Provider::AwsKms,
        &token_url,
        "x-aws-ec2-metadata-token-ttl-seconds",
        "x-aws-ec2-metadata-token",
    )
    .await
    .map_err(fail)?;
    let get = |url: url::Url| session.get(url);
    let roles = get(join("latest/meta-data/iam/security-credentials/")?)
        .await
        .map_err(fail)?;
    let role = String::from_utf8_lossy(&roles.body)
        .lines()
        .next()
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .map(str::to_string)
        .ok_or_else(|| fail(KmsError::Credentials("the instance has no IAM role".into())))?;
    let document = get(join(&format!(
        "latest/meta-data/iam/security-credentials/{role}"
    ))?)
    .await
    .map_err(fail)?;
    let creds =
        parse_document(&document.body, "instance metadata")?.into_credentials("instance metadata");
    if creds.expires.is_some_and(|at| at <= SystemTime::now()) {
        return Err(KmsError::Credentials(
            "instance metadata handed out expired credentials".into(),
        ));
    }
    Ok(creds)
}
