//! Alibaba Cloud KMS: `alikms://KEY_ID[/KEY_VERSION_ID]?region=REGION[&endpoint=HOST]`
//! (KEY_ID may be `alias/NAME`), API version 2016-01-20, requests signed with ACS3-HMAC-SHA256,
//! parameters in the query string of a `POST /`.
//!
//! - `DescribeKey` at open: the key must be `SIGN/VERIFY` and `Enabled`; its `KeySpec` says which
//!   algorithms it signs with. Without a version in the reference, the key's primary version is
//!   used, else its only version (`ListKeyVersions`); a key with several must be named with one.
//! - `GetPublicKey` (PEM) once; `AsymmetricSign` over a digest computed here (SHA-256).
//! - Endpoint: the reference's `endpoint=`, else `SIGNET_ALIBABA_KMS_ENDPOINT`, else
//!   `kms.REGION.aliyuncs.com` (use `kms-vpc.REGION.aliyuncs.com` from inside a VPC).

use std::time::SystemTime;

use base64::Engine as _;
use serde_json::Value;
use url::Url;

use super::alibaba_credentials;
use super::credentials::{CredentialCache, env};
use super::metrics::Provider;
use super::request_signing::{
    RequestParts, UtcTime, acs3_authorization, canonical_query, sha256_hex,
};
use super::transport::{self, ATTEMPTS, KmsError, host_header, one_line, with_retries};
use crate::crypto::{Algorithm, der};

/// The KMS API version.
const API_VERSION: &str = "2016-01-20";

/// `alikms://...` taken apart.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct AlibabaKeyRef {
    /// Key id or `alias/NAME`.
    pub key_id: String,
    /// The key version, if named.
    pub version: Option<String>,
    /// The region (`cn-hangzhou`).
    pub region: String,
    /// `host[:port]` or URL, if named.
    pub endpoint: Option<String>,
}

impl AlibabaKeyRef {
    /// Parses `alikms://KEY_ID[/KEY_VERSION_ID]?region=REGION[&endpoint=HOST]`.
    pub(super) fn parse(reference: &str) -> Result<Self, KmsError> {
        let bad = |why: &str| {
            KmsError::Config(format!(
                "{reference:?} is not an Alibaba Cloud KMS key reference ({why}; expected alikms://KEY_ID[/KEY_VERSION_ID]?region=REGION[&endpoint=HOST])"
            ))
        };
        let rest = reference
            .get(..9)
            .filter(|s| s.eq_ignore_ascii_case("alikms://"))
            .and_then(|_| reference.get(9..))
            .ok_or_else(|| bad("no alikms:// prefix"))?;
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (key_id, version) = match path.strip_prefix("alias/") {
            Some(alias) => match alias.split_once('/') {
                Some((name, version)) => (format!("alias/{name}"), Some(version)),
                None => (format!("alias/{alias}"), None),
            },
            None => match path.split_once('/') {
                Some((id, version)) => (id.to_string(), Some(version)),
                None => (path.to_string(), None),
            },
        };
        let name_ok = |s: &str| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_/.".contains(c))
        };
        if !name_ok(&key_id) || key_id == "alias/" {
            return Err(bad("no key id"));
        }
        if let Some(v) = version
            && (!name_ok(v) || v.contains('/'))
        {
            return Err(bad("bad key version"));
        }
        let mut region = None;
        let mut endpoint = None;
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let value = value.trim();
            match name {
                "region" if !value.is_empty() => region = Some(value.to_string()),
                "endpoint" if !value.is_empty() => endpoint = Some(value.to_string()),
                "region" | "endpoint" => return Err(bad(&format!("empty {name}"))),
                other => return Err(bad(&format!("unknown parameter {other:?}"))),
            }
        }
        let region = region.ok_or_else(|| bad("no region"))?;
        if !region
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        {
            return Err(bad("bad region"));
        }
        Ok(AlibabaKeyRef {
            key_id,
            version: version.map(str::to_string),
            region,
            endpoint,
        })
    }
}

/// Alibaba Cloud's name of a signet algorithm; `None` for one its KMS does not sign with.
pub(super) fn alibaba_algorithm(algorithm: Algorithm) -> Option<&'static str> {
    match algorithm {
        Algorithm::RsaPssSha256 => Some("RSA_PSS_SHA_256"),
        Algorithm::RsaPkcs1Sha256 => Some("RSA_PKCS1_SHA_256"),
        Algorithm::EcdsaP256Sha256 => Some("ECDSA_SHA_256"),
        Algorithm::EcdsaP384Sha384 | Algorithm::Ed25519 => None,
    }
}

/// The signing algorithms of a `KeySpec`.
pub(super) fn algorithms_for_spec(spec: &str) -> &'static [&'static str] {
    match spec {
        "RSA_2048" | "RSA_3072" | "RSA_4096" => &["RSA_PSS_SHA_256", "RSA_PKCS1_SHA_256"],
        "EC_P256" | "EC_P256K" => &["ECDSA_SHA_256"],
        "EC_SM2" => &["SM2DSA"],
        _ => &[],
    }
}

/// What `DescribeKey` and `GetPublicKey` say of the key.
pub(super) struct KeyFacts {
    /// SubjectPublicKeyInfo DER.
    pub spki: Vec<u8>,
    /// `RSA_2048`, `EC_P256`...
    pub key_spec: String,
}

/// A client for one Alibaba Cloud KMS key.
pub(super) struct AlibabaKms {
    key: AlibabaKeyRef,
    url: Url,
    http: reqwest::Client,
    credentials: CredentialCache,
    /// The version signed with, settled at open.
    version: std::sync::OnceLock<String>,
}

impl AlibabaKms {
    /// Resolves the endpoint and credential source; no request yet.
    pub(super) fn new(reference: &str) -> Result<Self, KmsError> {
        let key = AlibabaKeyRef::parse(reference)?;
        let endpoint = key
            .endpoint
            .clone()
            .or_else(|| env("SIGNET_ALIBABA_KMS_ENDPOINT"))
            .unwrap_or_else(|| format!("kms.{}.aliyuncs.com", key.region));
        let url = transport::endpoint_url(&endpoint, "Alibaba Cloud KMS")?;
        let http = transport::http_client()?;
        let fetch = alibaba_credentials::chain(&key.region, http.clone())?;
        let version = std::sync::OnceLock::new();
        if let Some(v) = &key.version {
            let _ = version.set(v.clone());
        }
        Ok(AlibabaKms {
            key,
            url,
            http,
            credentials: CredentialCache::new(fetch),
            version,
        })
    }

    /// The key id as the reference names it.
    pub(super) fn key_id(&self) -> &str {
        &self.key.key_id
    }

    /// `DescribeKey` (usage, state, spec, primary version), the version, `GetPublicKey`.
    pub(super) async fn key_facts(&self) -> Result<KeyFacts, KmsError> {
        let described = self
            .call("DescribeKey", &[("KeyId", self.key.key_id.as_str())])
            .await?;
        let meta = described
            .get("KeyMetadata")
            .ok_or_else(|| KmsError::BadResponse {
                operation: "DescribeKey",
                reason: "no KeyMetadata".into(),
            })?;
        let text = |field: &str| {
            meta.get(field)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        let usage = text("KeyUsage");
        if usage != "SIGN/VERIFY" {
            return Err(KmsError::Config(format!(
                "key usage is {usage}, not SIGN/VERIFY: it cannot sign"
            )));
        }
        let state = text("KeyState");
        if state != "Enabled" {
            return Err(KmsError::Config(format!(
                "key state is {state}, not Enabled"
            )));
        }
        let key_spec = text("KeySpec");
        let version = match self.version.get() {
            Some(v) => v.clone(),
            None => {
                let primary = text("PrimaryKeyVersion");
                let chosen = if primary.is_empty() {
                    self.only_version().await?
                } else {
                    primary
                };
                let _ = self.version.set(chosen.clone());
                chosen
            }
        };
        let answer = self
            .call(
                "GetPublicKey",
                &[
                    ("KeyId", self.key.key_id.as_str()),
                    ("KeyVersionId", version.as_str()),
                ],
            )
            .await?;
        let pem = answer
            .get("PublicKey")
            .and_then(Value::as_str)
            .ok_or_else(|| KmsError::BadResponse {
                operation: "GetPublicKey",
                reason: "no PublicKey".into(),
            })?;
        let block = der::pem_decode(pem)
            .filter(|b| b.label == "PUBLIC KEY")
            .ok_or_else(|| KmsError::BadResponse {
                operation: "GetPublicKey",
                reason: "PublicKey is not a PEM PUBLIC KEY".into(),
            })?;
        Ok(KeyFacts {
            spki: block.der,
            key_spec,
        })
    }

    /// The key's one version (`ListKeyVersions`); several are refused, naming how to choose.
    async fn only_version(&self) -> Result<String, KmsError> {
        let answer = self
            .call(
                "ListKeyVersions",
                &[("KeyId", self.key.key_id.as_str()), ("PageSize", "100")],
            )
            .await?;
        let versions: Vec<String> = answer
            .pointer("/KeyVersions/KeyVersion")
            .and_then(Value::as_array)
            .map(|list| {
                list.iter()
                    .filter_map(|v| v.get("KeyVersionId").and_then(Value::as_str))
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        match versions.as_slice() {
            [one] => Ok(one.clone()),
            [] => Err(KmsError::BadResponse {
                operation: "ListKeyVersions",
                reason: "the key has no version".into(),
            }),
            many => Err(KmsError::Config(format!(
                "the key has {} versions and no primary one: name one as alikms://{}/VERSION?region={}",
                many.len(),
                self.key.key_id,
                self.key.region
            ))),
        }
    }

    /// `AsymmetricSign` over SHA-256 of `payload`.
    pub(super) async fn sign(
        &self,
        payload: &[u8],
        algorithm: Algorithm,
    ) -> Result<Vec<u8>, KmsError> {
        const OP: &str = "AsymmetricSign";
        let name = alibaba_algorithm(algorithm).ok_or_else(|| {
            KmsError::Config(format!("Alibaba Cloud KMS does not sign {algorithm}"))
        })?;
        let version = self.version.get().cloned().ok_or_else(|| {
            KmsError::Config("the key version is unknown (the key was not opened)".into())
        })?;
        let b64 = base64::engine::general_purpose::STANDARD;
        let digest =
            b64.encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, payload).as_ref());
        let answer = self
            .call(
                OP,
                &[
                    ("KeyId", self.key.key_id.as_str()),
                    ("KeyVersionId", version.as_str()),
                    ("Algorithm", name),
                    ("Digest", digest.as_str()),
                ],
            )
            .await?;
        let value =
            answer
                .get("Value")
                .and_then(Value::as_str)
                .ok_or_else(|| KmsError::BadResponse {
                    operation: OP,
                    reason: "no Value".into(),
                })?;
        b64.decode(value).map_err(|e| KmsError::BadResponse {
            operation: OP,
            reason: format!("Value is not base64: {e}"),
        })
    }

    async fn call(&self, action: &'static str, params: &[(&str, &str)]) -> Result<Value, KmsError> {
        let query = canonical_query(
            &params
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<Vec<_>>(),
        );
        let result = with_retries(Provider::AlibabaKms, ATTEMPTS, || {
            self.try_call(action, &query)
        })
        .await;
        if let Err(e) = &result
            && e.is_auth()
        {
            self.credentials.forget().await;
        }
        result
    }

    async fn try_call(&self, action: &'static str, query: &str) -> Result<Value, KmsError> {
        let creds = self.credentials.get().await?;
        let mut nonce = [0u8; 16];
        aws_lc_rs::rand::fill(&mut nonce)
            .map_err(|_| KmsError::Config("no randomness for the request nonce".into()))?;
        let mut headers = vec![
            ("host".to_string(), host_header(&self.url)),
            ("x-acs-action".to_string(), action.to_string()),
            ("x-acs-version".to_string(), API_VERSION.to_string()),
            (
                "x-acs-date".to_string(),
                UtcTime::from_system(SystemTime::now()).iso8601(),
            ),
            ("x-acs-signature-nonce".to_string(), hex::encode(nonce)),
            ("x-acs-content-sha256".to_string(), sha256_hex(b"")),
        ];
        if let Some(token) = &creds.token {
            headers.push(("x-acs-security-token".to_string(), token.clone()));
        }
        let authorization = acs3_authorization(
            &RequestParts {
                method: "POST",
                path: "/",
                query,
                headers: &headers,
                body: b"",
            },
            &creds.access_key_id,
            &creds.secret,
        );
        let mut url = self.url.clone();
        url.set_path("/");
        url.set_query(Some(query));
        let mut request = self
            .http
            .post(url.clone())
            .header("accept", "application/json");
        for (name, value) in headers.iter().filter(|(n, _)| n != "host") {
            request = request.header(name, value);
        }
        request = request.header("authorization", authorization);
        let reply = transport::send(request, &self.url, |status, body| {
            api_error(action, status, body)
        })
        .await?;
        serde_json::from_slice(&reply.body).map_err(|e| KmsError::BadResponse {
            operation: action,
            reason: format!("not JSON (HTTP {}): {e}", reply.status),
        })
    }
}

/// The error of a non-2xx answer: `{"Code": ..., "Message": ...}` (Alibaba's POP errors).
pub(super) fn api_error(operation: &'static str, status: u16, body: &[u8]) -> KmsError {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let field = |name: &str| {
        parsed
            .as_ref()
            .and_then(|v| v.get(name))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    let code = field("Code").unwrap_or_else(|| "unknown".into());
    let message = field("Message").unwrap_or_else(|| String::from_utf8_lossy(body).into_owned());
    KmsError::Api {
        operation,
        status,
        throttled: code.starts_with("Throttling") || status == 429,
        code,
        message: one_line(&message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_parse() {
        let r =
            AlibabaKeyRef::parse("alikms://key-hzz62f1cb66fa42qo/v-1?region=cn-hangzhou").unwrap();
        assert_eq!(r.key_id, "key-hzz62f1cb66fa42qo");
        assert_eq!(r.version.as_deref(), Some("v-1"));
        assert_eq!(r.region, "cn-hangzhou");
        assert_eq!(r.endpoint, None);
        let r = AlibabaKeyRef::parse(
            "alikms://alias/release?region=eu-central-1&endpoint=127.0.0.1:8080",
        )
        .unwrap();
        assert_eq!(r.key_id, "alias/release");
        assert_eq!(r.version, None);
        assert_eq!(r.endpoint.as_deref(), Some("127.0.0.1:8080"));
        let r = AlibabaKeyRef::parse("alikms://alias/release/ver-2?region=cn-beijing").unwrap();
        assert_eq!(
            (r.key_id.as_str(), r.version.as_deref()),
            ("alias/release", Some("ver-2"))
        );
        for bad in [
            "alikms://key-1",
            "alikms://?region=cn-hangzhou",
            "alikms://key-1?region=",
            "alikms://key-1?region=cn-hangzhou&pin=1",
            "alikms://key-1/a/b?region=cn-hangzhou",
            "alikms://key 1?region=cn-hangzhou",
            "alikms://key-1?region=CN_x",
        ] {
            let err = AlibabaKeyRef::parse(bad).unwrap_err().to_string();
            assert!(
                err.contains("alikms://KEY_ID") && !err.contains('\n'),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn specs_and_algorithms() {
        assert!(algorithms_for_spec("RSA_2048").contains(&"RSA_PSS_SHA_256"));
        assert_eq!(algorithms_for_spec("EC_P256"), &["ECDSA_SHA_256"]);
        assert!(algorithms_for_spec("Aliyun_AES_256").is_empty());
        assert_eq!(alibaba_algorithm(Algorithm::EcdsaP384Sha384), None);
    }

    #[test]
    fn errors() {
        let e = api_error("AsymmetricSign", 400, br#"{"Code":"Throttling.User","Message":"Request was denied due to user flow control."}"#);
        assert!(matches!(
            e,
            KmsError::Api {
                throttled: true,
                ..
            }
        ));
        let e = api_error(
            "GetPublicKey",
            404,
            br#"{"Code":"Forbidden.KeyNotFound","Message":"The specified Key is not found."}"#,
        );
        assert_eq!(
            e.to_string(),
            "GetPublicKey refused (HTTP 404 Forbidden.KeyNotFound): The specified Key is not found."
        );
    }
}
