//! AWS KMS: `awskms://[ENDPOINT]/KEY` (cosign's syntax; KEY is a key id, `alias/NAME` or a key
//! or alias ARN), `GetPublicKey` and `Sign` over the JSON API (`TrentService`), SigV4-signed.
//!
//! - Region: the ARN's, else `AWS_REGION`, else `AWS_DEFAULT_REGION`.
//! - Endpoint: the reference's, else `AWS_ENDPOINT_URL_KMS`, else `AWS_ENDPOINT_URL` (the SDKs'
//!   variables), else `https://kms.REGION.amazonaws.com` (`.amazonaws.com.cn` in China).
//! - Messages: `MessageType: RAW` up to the API's 4096 bytes (every signet payload is far
//!   smaller), `DIGEST` above. RAW is what both AWS and the moto emulator sign correctly: moto
//!   5.2.5 hashes a DIGEST message again. Either way each signature is verified locally (the
//!   caller does it), which is also what catches moto's RSA-PSS salt (maximum length, where AWS
//!   and signet use the digest length).

use std::time::SystemTime;

use base64::Engine as _;
use serde_json::{Value, json};
use url::Url;

use super::aws_credentials;
use super::credentials::CredentialCache;
use super::metrics::Provider;
use super::request_signing::{RequestParts, UtcTime, sigv4_authorization};
use super::transport::{self, ATTEMPTS, KmsError, host_header, one_line, with_retries};
use crate::crypto::Algorithm;

/// The largest `RAW` message AWS KMS signs.
const MAX_RAW_MESSAGE: usize = 4096;

/// `awskms://ENDPOINT/KEY` taken apart.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct AwsKeyRef {
    /// `host[:port]`, if the reference names one.
    pub endpoint: Option<String>,
    /// What the API calls `KeyId`: id, `alias/NAME`, key ARN or alias ARN.
    pub key_id: String,
}

impl AwsKeyRef {
    /// Parses `awskms://[ENDPOINT]/KEY`.
    pub(super) fn parse(reference: &str) -> Result<Self, KmsError> {
        let bad = |why: &str| {
            KmsError::Config(format!(
                "{reference:?} is not an AWS KMS key reference ({why}; expected awskms://[ENDPOINT]/KEY_ID, awskms:///alias/NAME or awskms:///arn:aws:kms:...)"
            ))
        };
        let rest = reference
            .get(..9)
            .filter(|s| s.eq_ignore_ascii_case("awskms://"))
            .and_then(|_| reference.get(9..))
            .ok_or_else(|| bad("no awskms:// prefix"))?;
        let (endpoint, key_id) = rest.split_once('/').ok_or_else(|| bad("no key"))?;
        if key_id.is_empty() {
            return Err(bad("no key"));
        }
        if key_id.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad("the key holds whitespace"));
        }
        let valid = if let Some(arn) = key_id.strip_prefix("arn:") {
            arn_region(key_id).is_some() && arn.contains(":kms:")
        } else if let Some(name) = key_id.strip_prefix("alias/") {
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "/_-".contains(c))
        } else {
            key_id
                .chars()
                .all(|c| c.is_ascii_hexdigit() || c == '-' || c.is_ascii_alphanumeric())
        };
        if !valid {
            return Err(bad("the key is neither a key id, alias/NAME nor a KMS ARN"));
        }
        Ok(AwsKeyRef {
            endpoint: (!endpoint.is_empty()).then(|| endpoint.to_string()),
            key_id: key_id.to_string(),
        })
    }
}

/// The region of `arn:PARTITION:kms:REGION:ACCOUNT:...`.
fn arn_region(arn: &str) -> Option<&str> {
    let mut parts = arn.split(':');
    let (_, _, service, region) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    (service == "kms" && !region.is_empty()).then_some(region)
}

/// The region a key lives in: its ARN's, else the SDK variables'.
fn region_for(key: &AwsKeyRef) -> Result<String, KmsError> {
    if let Some(region) = arn_region(&key.key_id) {
        return Ok(region.to_string());
    }
    super::credentials::env("AWS_REGION")
        .or_else(|| super::credentials::env("AWS_DEFAULT_REGION"))
        .ok_or_else(|| {
            KmsError::Config("no AWS region: set AWS_REGION (or name the key by its ARN)".into())
        })
}

/// The default endpoint of an AWS service in `region`.
pub(super) fn default_endpoint(service: &str, region: &str) -> String {
    let suffix = if region.starts_with("cn-") {
        "amazonaws.com.cn"
    } else {
        "amazonaws.com"
    };
    format!("https://{service}.{region}.{suffix}")
}

/// What `GetPublicKey` says of a key.
pub(super) struct KeyFacts {
    /// The SubjectPublicKeyInfo DER.
    pub spki: Vec<u8>,
    /// `SIGN_VERIFY`, `ENCRYPT_DECRYPT`...
    pub key_usage: String,
    /// `RSA_2048`, `ECC_NIST_P256`...
    pub key_spec: String,
    /// The algorithms the key signs with, in AWS's names.
    pub signing_algorithms: Vec<String>,
}

/// AWS's name of a signet algorithm; `None` for one AWS KMS does not sign with.
pub(super) fn aws_algorithm(algorithm: Algorithm) -> Option<&'static str> {
    match algorithm {
        Algorithm::RsaPssSha256 => Some("RSASSA_PSS_SHA_256"),
        Algorithm::RsaPkcs1Sha256 => Some("RSASSA_PKCS1_V1_5_SHA_256"),
        Algorithm::EcdsaP256Sha256 => Some("ECDSA_SHA_256"),
        Algorithm::EcdsaP384Sha384 => Some("ECDSA_SHA_384"),
        Algorithm::Ed25519 => None,
    }
}

/// A client for one AWS KMS key.
pub(super) struct AwsKms {
    key: AwsKeyRef,
    region: String,
    url: Url,
    http: reqwest::Client,
    credentials: CredentialCache,
}

impl AwsKms {
    /// Resolves region, endpoint and the credential source for `reference`; no request yet.
    pub(super) fn new(reference: &str) -> Result<Self, KmsError> {
        let key = AwsKeyRef::parse(reference)?;
        let region = region_for(&key)?;
        let endpoint = key
            .endpoint
            .clone()
            .or_else(|| super::credentials::env("AWS_ENDPOINT_URL_KMS"))
            .or_else(|| super::credentials::env("AWS_ENDPOINT_URL"))
            .unwrap_or_else(|| default_endpoint("kms", &region));
        let url = transport::endpoint_url(&endpoint, "AWS KMS")?;
        let http = transport::http_client()?;
        let fetch = aws_credentials::chain(&region, http.clone())?;
        Ok(AwsKms {
            key,
            region,
            url,
            http,
            credentials: CredentialCache::new(fetch),
        })
    }

    /// The key as the reference names it (id, alias or ARN).
    pub(super) fn key_id(&self) -> &str {
        &self.key.key_id
    }

    /// `GetPublicKey`.
    pub(super) async fn key_facts(&self) -> Result<KeyFacts, KmsError> {
        const OP: &str = "GetPublicKey";
        let answer = self.call(OP, json!({ "KeyId": self.key.key_id })).await?;
        let text = |field: &str| {
            answer
                .get(field)
                .and_then(Value::as_str)
                .map(str::to_string)
        };
        let missing = |field: &str| KmsError::BadResponse {
            operation: OP,
            reason: format!("no {field}"),
        };
        let spki = base64::engine::general_purpose::STANDARD
            .decode(text("PublicKey").ok_or_else(|| missing("PublicKey"))?)
            .map_err(|e| KmsError::BadResponse {
                operation: OP,
                reason: format!("PublicKey is not base64: {e}"),
            })?;
        Ok(KeyFacts {
            spki,
            key_usage: text("KeyUsage").ok_or_else(|| missing("KeyUsage"))?,
            key_spec: text("KeySpec")
                .or_else(|| text("CustomerMasterKeySpec"))
                .unwrap_or_else(|| "unknown".into()),
            signing_algorithms: answer
                .get("SigningAlgorithms")
                .and_then(Value::as_array)
                .map(|list| {
                    list.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default(),
        })
    }

    /// `Sign`: the payload itself (RAW) when it fits, its digest otherwise.
    pub(super) async fn sign(
        &self,
        payload: &[u8],
        algorithm: Algorithm,
    ) -> Result<Vec<u8>, KmsError> {
        const OP: &str = "Sign";
        let name = aws_algorithm(algorithm)
            .ok_or_else(|| KmsError::Config(format!("AWS KMS does not sign {algorithm}")))?;
        let b64 = base64::engine::general_purpose::STANDARD;
        let (message, kind) = if payload.len() <= MAX_RAW_MESSAGE {
            (b64.encode(payload), "RAW")
        } else {
            let digest = match algorithm {
                Algorithm::EcdsaP384Sha384 => {
                    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA384, payload)
                }
                _ => aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, payload),
            };
            (b64.encode(digest.as_ref()), "DIGEST")
        };
        let answer = self
            .call(
                OP,
                json!({
                    "KeyId": self.key.key_id,
                    "Message": message,
                    "MessageType": kind,
                    "SigningAlgorithm": name,
                }),
            )
            .await?;
        let signature = answer
            .get("Signature")
            .and_then(Value::as_str)
            .ok_or_else(|| KmsError::BadResponse {
                operation: OP,
                reason: "no Signature".into(),
            })?;
        b64.decode(signature).map_err(|e| KmsError::BadResponse {
            operation: OP,
            reason: format!("Signature is not base64: {e}"),
        })
    }

    /// One JSON API call, signed, with retries; drops the credentials when they are refused.
    async fn call(&self, operation: &'static str, body: Value) -> Result<Value, KmsError> {
        let body = serde_json::to_vec(&body).map_err(|e| KmsError::Config(e.to_string()))?;
        let result = with_retries(Provider::AwsKms, ATTEMPTS, || {
            self.try_call(operation, &body)
        })
        .await;
        if let Err(e) = &result
            && e.is_auth()
        {
            self.credentials.forget().await;
        }
        result
    }

    async fn try_call(&self, operation: &'static str, body: &[u8]) -> Result<Value, KmsError> {
        let creds = self.credentials.get().await?;
        let amz_date = UtcTime::from_system(SystemTime::now()).amz();
        let mut headers = vec![
            (
                "content-type".to_string(),
                "application/x-amz-json-1.1".to_string(),
            ),
            ("host".to_string(), host_header(&self.url)),
            ("x-amz-date".to_string(), amz_date.clone()),
            (
                "x-amz-target".to_string(),
                format!("TrentService.{operation}"),
            ),
        ];
        if let Some(token) = &creds.token {
            headers.push(("x-amz-security-token".to_string(), token.clone()));
        }
        let authorization = sigv4_authorization(
            &RequestParts {
                method: "POST",
                path: self.url.path(),
                query: "",
                headers: &headers,
                body,
            },
            &creds.access_key_id,
            &creds.secret,
            &self.region,
            "kms",
            &amz_date,
        );
        let mut request = self.http.post(self.url.clone()).body(body.to_vec());
        for (name, value) in headers.iter().filter(|(n, _)| n != "host") {
            request = request.header(name, value);
        }
        request = request.header("authorization", authorization);
        let reply = transport::send(request, &self.url, |status, body| {
            api_error(operation, status, body)
        })
        .await?;
        serde_json::from_slice(&reply.body).map_err(|e| KmsError::BadResponse {
            operation,
            reason: format!("not JSON (HTTP {}): {e}", reply.status),
        })
    }
}

/// The error of a non-2xx answer: AWS JSON errors carry `__type` (possibly `prefix#Code`) and
/// `message`; anything else (an XML or HTML page) is quoted briefly.
fn api_error(operation: &'static str, status: u16, body: &[u8]) -> KmsError {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let field = |names: &[&str]| {
        parsed.as_ref().and_then(|v| {
            names
                .iter()
                .find_map(|n| v.get(*n).and_then(Value::as_str).map(str::to_string))
        })
    };
    let code = field(&["__type", "code", "Code"])
        .map(|c| c.rsplit('#').next().unwrap_or_default().to_string())
        .or_else(|| xml_text(body, "Code"))
        .unwrap_or_else(|| "unknown".into());
    let message = field(&["message", "Message"])
        .or_else(|| xml_text(body, "Message"))
        .unwrap_or_else(|| one_line(&String::from_utf8_lossy(body)));
    let throttled = status == 429
        || code.contains("Throttling")
        || code == "LimitExceededException"
        || code == "RequestLimitExceeded";
    KmsError::Api {
        operation,
        status,
        code,
        message: one_line(&message),
        throttled,
    }
}

/// The text of the first `<tag>...</tag>` in an XML body, entities decoded (STS and some error
/// answers are XML; the few fields read have no nested elements).
pub(super) fn xml_text(body: &[u8], tag: &str) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let start = text.find(&open)? + open.len();
    let end = start + text[start..].find(&close)?;
    Some(
        text[start..end]
            .trim()
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&apos;", "'")
            .replace("&amp;", "&"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_parse_like_cosigns() {
        let r = AwsKeyRef::parse("awskms:///alias/release").unwrap();
        assert_eq!(r.endpoint, None);
        assert_eq!(r.key_id, "alias/release");
        let r = AwsKeyRef::parse("awskms://127.0.0.1:4566/1234abcd-12ab-34cd-56ef-1234567890ab")
            .unwrap();
        assert_eq!(r.endpoint.as_deref(), Some("127.0.0.1:4566"));
        let arn = "arn:aws:kms:eu-central-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";
        let r = AwsKeyRef::parse(&format!("awskms:///{arn}")).unwrap();
        assert_eq!(r.key_id, arn);
        assert_eq!(arn_region(arn), Some("eu-central-1"));
        for bad in [
            "awskms://",
            "awskms:///",
            "awskms://host",
            "awskms:///alias/",
            "awskms:///alias/a b",
            "awskms:///arn:aws:s3:::bucket",
            "gcpkms://x/y",
        ] {
            let err = AwsKeyRef::parse(bad).unwrap_err().to_string();
            assert!(
                err.contains("awskms://[ENDPOINT]") && !err.contains('\n'),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn errors_name_the_code_and_throttling_is_recognised() {
        let e = api_error(
            "Sign",
            400,
            br#"{"__type":"com.amazonaws.kms#ThrottlingException","message":"Rate exceeded"}"#,
        );
        assert!(
            matches!(&e, KmsError::Api { throttled: true, code, .. } if code == "ThrottlingException")
        );
        let e = api_error(
            "Sign",
            400,
            br#"{"__type":"NotFoundException","message":"Alias arn:aws:kms:x is not found."}"#,
        );
        assert_eq!(
            e.to_string(),
            "Sign refused (HTTP 400 NotFoundException): Alias arn:aws:kms:x is not found."
        );
        let e = api_error(
            "Sign",
            403,
            b"<ErrorResponse><Error><Code>SignatureDoesNotMatch</Code><Message>bad &amp; wrong</Message></Error></ErrorResponse>",
        );
        assert_eq!(
            e.to_string(),
            "Sign refused (HTTP 403 SignatureDoesNotMatch): bad & wrong"
        );
        assert!(e.is_auth());
    }

    #[test]
    fn default_endpoints() {
        assert_eq!(
            default_endpoint("kms", "eu-west-1"),
            "https://kms.eu-west-1.amazonaws.com"
        );
        assert_eq!(
            default_endpoint("sts", "cn-north-1"),
            "https://sts.cn-north-1.amazonaws.com.cn"
        );
    }
}
