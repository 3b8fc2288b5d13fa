//! The local Alibaba Cloud KMS endpoint (`tests/support/kms/alikms_server.py`): real keys, and
//! each request's ACS3-HMAC-SHA256 signature recomputed by the official Alibaba Cloud Python
//! SDK's signing code (PyPI `alibabacloud-openapi-util`, installed by scripts/test-deps.sh). No
//! emulator of Alibaba Cloud KMS exists; this one is written from the API reference, so it shows
//! what signet sends and how it signs it, not how the cloud answers every case. Its keys are
//! listed in the script's header.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// The access key id the endpoint accepts.
pub const ACCESS_KEY_ID: &str = "LTAI5tSignetTestKey";
/// The RRSA role and OIDC provider the endpoint's STS accepts.
pub const ROLE_ARN: &str = "acs:ram::1234567890:role/signet-signer";
/// See [`ROLE_ARN`].
pub const OIDC_PROVIDER_ARN: &str = "acs:ram::1234567890:oidc-provider/ack-rrsa-test";

/// A running endpoint; killed when dropped.
pub struct AliKms {
    child: Child,
    port: u16,
    /// The secret of [`ACCESS_KEY_ID`].
    pub secret: String,
    /// The OIDC token the endpoint's STS accepts.
    pub oidc_token: String,
}

/// Fails naming the packages when python3 or the SDK is missing.
pub fn require_sdk() {
    let ok = Command::new("python3")
        .args([
            "-c",
            "import alibabacloud_openapi_util.client, cryptography",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "python3 with the PyPI packages alibabacloud-openapi-util and cryptography is needed: pip install alibabacloud-openapi-util==0.2.4 cryptography (scripts/test-deps.sh installs them)"
    );
}

impl AliKms {
    /// Starts the endpoint on a free loopback port.
    pub fn start() -> Self {
        require_sdk();
        let mut random = [0u8; 16];
        aws_lc_rs::rand::fill(&mut random).unwrap();
        let secret = hex::encode(random);
        aws_lc_rs::rand::fill(&mut random).unwrap();
        let oidc_token = format!("eyJ.{}.sig", hex::encode(random));
        let script =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/kms/alikms_server.py");
        let mut child = Command::new("python3")
            .arg(script)
            .args([ACCESS_KEY_ID, &secret, &oidc_token])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port: u16 = line
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("the Alibaba KMS endpoint did not start: {line:?}"));
        AliKms {
            child,
            port,
            secret,
            oidc_token,
        }
    }

    /// `127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `alikms://KEY?region=cn-hangzhou&endpoint=127.0.0.1:PORT`.
    pub fn reference(&self, key: &str) -> String {
        format!(
            "alikms://{key}?region=cn-hangzhou&endpoint={}",
            self.endpoint()
        )
    }

    /// The environment of a signet process signing with the endpoint's access key. ECS
    /// metadata is off: no test may reach for a metadata address.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("ALIBABA_CLOUD_ACCESS_KEY_ID", ACCESS_KEY_ID.into()),
            ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", self.secret.clone()),
            ("ALIBABA_CLOUD_ECS_METADATA_DISABLED", "true".into()),
        ]
    }
}

impl AliKms {
    /// Temporary credentials (access key id, secret, security token) from the endpoint's STS,
    /// as an ECS instance's RAM role would hold.
    pub async fn temporary_credentials(&self) -> (String, String, String) {
        let answer: serde_json::Value = reqwest::Client::new()
            .post(format!("http://{}/", self.endpoint()))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form(&[
                ("Action", "AssumeRoleWithOIDC"),
                ("RoleArn", ROLE_ARN),
                ("OIDCProviderArn", OIDC_PROVIDER_ARN),
                ("OIDCToken", &self.oidc_token),
                ("RoleSessionName", "ecs-instance"),
            ]))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let c = &answer["Credentials"];
        let field = |name: &str| c[name].as_str().unwrap().to_string();
        (
            field("AccessKeyId"),
            field("AccessKeySecret"),
            field("SecurityToken"),
        )
    }

    /// Makes temporary credentials stop working (the endpoint forgets them).
    pub async fn revoke(&self, access_key_id: &str) {
        let status = reqwest::Client::new()
            .post(format!("http://{}/", self.endpoint()))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form(&[
                ("Action", "TestRevokeCredentials"),
                ("AccessKeyId", access_key_id),
            ]))
            .send()
            .await
            .unwrap()
            .status();
        assert!(status.is_success(), "revoke {access_key_id}: {status}");
    }
}

fn form(fields: &[(&str, &str)]) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(fields)
        .finish()
}

impl Drop for AliKms {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
