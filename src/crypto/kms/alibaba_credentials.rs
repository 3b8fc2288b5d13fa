//! Alibaba Cloud credentials, from the first source configured, in the order of the issue and
//! of Alibaba's credentials SDK:
//! 1. the environment: `ALIBABA_CLOUD_ACCESS_KEY_ID`, `ALIBABA_CLOUD_ACCESS_KEY_SECRET`,
//!    `ALIBABA_CLOUD_SECURITY_TOKEN`;
//! 2. RRSA on ACK: `ALIBABA_CLOUD_ROLE_ARN`, `ALIBABA_CLOUD_OIDC_PROVIDER_ARN`,
//!    `ALIBABA_CLOUD_OIDC_TOKEN_FILE` (what ACK's pod identity webhook injects), exchanged at STS
//!    by `AssumeRoleWithOIDC` (an anonymous call; endpoint `ALIBABA_CLOUD_STS_ENDPOINT`, else
//!    `sts.REGION.aliyuncs.com`);
//! 3. the ECS instance RAM role, from the metadata service at 100.100.100.200 in its hardened
//!    (token) mode only: a session token (`PUT /latest/api/token`, TTL header), the role name
//!    from `ALIBABA_CLOUD_ECS_METADATA` or the service, then its credentials, fetched again
//!    before their `Expiration`; off with `ALIBABA_CLOUD_ECS_METADATA_DISABLED=true`.
//!    `SIGNET_ALIBABA_ECS_METADATA_ENDPOINT` (signet's own; Alibaba's SDKs have no such setting)
//!    moves the service elsewhere: for tests and unusual networks only.

use std::sync::Arc;
use std::time::SystemTime;

use serde::Deserialize;

use super::credentials::{Credentials, Fetch, env, read_token_file};
use super::metrics::Provider;
use super::request_signing::{UtcTime, canonical_query, parse_rfc3339_utc};
use super::transport::{self, ATTEMPTS, KmsError, with_retries};

/// The metadata service of ECS instances.
const ECS_METADATA: &str = "http://100.100.100.200";

/// The credential source, chosen from the environment now; fetching happens later.
pub(super) fn chain(region: &str, http: reqwest::Client) -> Result<Fetch, KmsError> {
    if let Some(id) = env("ALIBABA_CLOUD_ACCESS_KEY_ID") {
        let secret = env("ALIBABA_CLOUD_ACCESS_KEY_SECRET").ok_or_else(|| {
            KmsError::Credentials(
                "ALIBABA_CLOUD_ACCESS_KEY_ID is set but ALIBABA_CLOUD_ACCESS_KEY_SECRET is not"
                    .into(),
            )
        })?;
        let creds = Credentials {
            access_key_id: id,
            secret,
            token: env("ALIBABA_CLOUD_SECURITY_TOKEN"),
            expires: None,
            source: "environment",
        };
        return Ok(Arc::new(move || {
            let creds = creds.clone();
            Box::pin(async move { Ok(creds) })
        }));
    }
    if let (Some(role), Some(provider), Some(token_file)) = (
        env("ALIBABA_CLOUD_ROLE_ARN"),
        env("ALIBABA_CLOUD_OIDC_PROVIDER_ARN"),
        env("ALIBABA_CLOUD_OIDC_TOKEN_FILE"),
    ) {
        let endpoint = env("ALIBABA_CLOUD_STS_ENDPOINT")
            .unwrap_or_else(|| format!("sts.{region}.aliyuncs.com"));
        let url = transport::endpoint_url(&endpoint, "Alibaba Cloud STS")?;
        let session = env("ALIBABA_CLOUD_ROLE_SESSION_NAME").unwrap_or_else(|| "signet".into());
        let rrsa = Arc::new(Rrsa {
            url,
            role,
            provider,
            token_file,
            session,
        });
        return Ok(Arc::new(move || {
            let (http, rrsa) = (http.clone(), Arc::clone(&rrsa));
            Box::pin(async move { rrsa.fetch(&http).await })
        }));
    }
    if env("ALIBABA_CLOUD_ECS_METADATA_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
        return Err(KmsError::Credentials(
            "no Alibaba Cloud credentials: none in the environment (ALIBABA_CLOUD_ACCESS_KEY_ID), no RRSA (ALIBABA_CLOUD_ROLE_ARN + ALIBABA_CLOUD_OIDC_PROVIDER_ARN + ALIBABA_CLOUD_OIDC_TOKEN_FILE), and ECS metadata is disabled".into(),
        ));
    }
    let role = env("ALIBABA_CLOUD_ECS_METADATA");
    let endpoint =
        env("SIGNET_ALIBABA_ECS_METADATA_ENDPOINT").unwrap_or_else(|| ECS_METADATA.into());
    let base = url::Url::parse(&format!("{}/", endpoint.trim_end_matches('/'))).map_err(|e| {
        KmsError::Config(format!(
            "SIGNET_ALIBABA_ECS_METADATA_ENDPOINT {endpoint:?}: {e}"
        ))
    })?;
    Ok(Arc::new(move || {
        let (http, role, base) = (http.clone(), role.clone(), base.clone());
        Box::pin(async move { ecs_ram_role(&http, &base, role.as_deref()).await })
    }))
}

/// RRSA: an OIDC token exchanged for a role's temporary credentials.
struct Rrsa {
    url: url::Url,
    role: String,
    provider: String,
    token_file: String,
    session: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct StsAnswer {
    credentials: StsCredentials,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct StsCredentials {
    access_key_id: String,
    access_key_secret: String,
    security_token: String,
    expiration: String,
}

impl Rrsa {
    async fn fetch(&self, http: &reqwest::Client) -> Result<Credentials, KmsError> {
        let token = read_token_file(&self.token_file, "OIDC token file").await?;
        let form = canonical_query(&[
            ("Action".into(), "AssumeRoleWithOIDC".into()),
            ("Format".into(), "JSON".into()),
            ("Version".into(), "2015-04-01".into()),
            (
                "Timestamp".into(),
                UtcTime::from_system(SystemTime::now()).iso8601(),
            ),
            ("RoleArn".into(), self.role.clone()),
            ("OIDCProviderArn".into(), self.provider.clone()),
            ("OIDCToken".into(), token),
            ("RoleSessionName".into(), self.session.clone()),
            ("DurationSeconds".into(), "3600".into()),
        ]);
        let reply = with_retries(Provider::AlibabaKms, ATTEMPTS, || {
            let request = http
                .post(self.url.clone())
                .header("content-type", "application/x-www-form-urlencoded")
                .header("accept", "application/json")
                .body(form.clone());
            transport::send(request, &self.url, |status, body| {
                super::alibaba::api_error("AssumeRoleWithOIDC", status, body)
            })
        })
        .await
        .map_err(|e| KmsError::Credentials(format!("RRSA ({}): {}", self.role, e.reason())))?;
        let answer: StsAnswer = serde_json::from_slice(&reply.body).map_err(|e| {
            KmsError::Credentials(format!(
                "RRSA ({}): STS answer without credentials: {e}",
                self.role
            ))
        })?;
        let c = answer.credentials;
        Ok(Credentials {
            access_key_id: c.access_key_id,
            secret: c.access_key_secret,
            token: Some(c.security_token),
            expires: parse_rfc3339_utc(&c.expiration),
            source: "RRSA",
        })
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct EcsDocument {
    #[serde(default)]
    code: Option<String>,
    access_key_id: String,
    access_key_secret: String,
    security_token: String,
    expiration: String,
}

/// The instance RAM role's credentials from the ECS metadata service (token mode).
async fn ecs_ram_role(
    http: &reqwest::Client,
    base: &url::Url,
    role: Option<&str>,
) -> Result<Credentials, KmsError> {
    let fail = |e: KmsError| {
        KmsError::Credentials(format!(
            "no Alibaba Cloud credentials: none in the environment (ALIBABA_CLOUD_ACCESS_KEY_ID), no RRSA (ALIBABA_CLOUD_ROLE_ARN + ALIBABA_CLOUD_OIDC_PROVIDER_ARN + ALIBABA_CLOUD_OIDC_TOKEN_FILE), and the ECS metadata service failed: {}",
            e.reason()
        ))
    };
    let parse = |path: &str| {
        base.join(path.trim_start_matches('/'))
            .map_err(|e| KmsError::Config(format!("metadata URL: {e}")))
    };
    let token_url = parse("/latest/api/token")?;
    let session = transport::MetadataSession::open(
        http,
        Provider::AlibabaKms,
        &token_url,
        "x-aliyun-ecs-metadata-token-ttl-seconds",
        "x-aliyun-ecs-metadata-token",
    )
    .await
    .map_err(fail)?;
    let get = |url: url::Url| session.get(url);
    let role = match role {
        Some(r) => r.to_string(),
        None => {
            let listed = get(parse("/latest/meta-data/ram/security-credentials/")?)
                .await
                .map_err(fail)?;
            String::from_utf8_lossy(&listed.body)
                .lines()
                .next()
                .map(str::trim)
                .filter(|r| !r.is_empty())
                .map(str::to_string)
                .ok_or_else(|| fail(KmsError::Credentials("the instance has no RAM role".into())))?
        }
    };
    let reply = get(parse(&format!(
        "/latest/meta-data/ram/security-credentials/{role}"
    ))?)
    .await
    .map_err(fail)?;
    let doc: EcsDocument = serde_json::from_slice(&reply.body).map_err(|e| {
        KmsError::Credentials(format!(
            "ECS RAM role {role}: not a credential document: {e}"
        ))
    })?;
    if doc.code.as_deref().is_some_and(|c| c != "Success") {
        return Err(KmsError::Credentials(format!(
            "ECS RAM role {role}: metadata said {:?}",
            doc.code
        )));
    }
    Ok(Credentials {
        access_key_id: doc.access_key_id,
        secret: doc.access_key_secret,
        token: Some(doc.security_token),
        expires: parse_rfc3339_utc(&doc.expiration),
        source: "ECS RAM role",
    })
}
