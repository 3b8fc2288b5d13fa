//! `moto` (PyPI `moto[server]`, pinned in scripts/test-deps.sh) as an AWS KMS emulator: a child
//! process on a free loopback port, with IAM authentication on, so that every request's SigV4
//! signature is checked by botocore's signer. [`Moto::start`] creates the user the tests sign
//! as, two instance roles whose sessions (with their session token, which moto checks) the
//! metadata test hands out, and the keys (`alias/rsa`, `alias/ec`: SIGN_VERIFY;
//! `alias/encrypt`: ENCRYPT_DECRYPT).
//!
//! What moto 5.2.5 cannot show: it hashes a `MessageType: DIGEST` message again, and signs
//! RSA-PSS with the maximum salt length where AWS uses the digest length, so an RSA_PSS_SHA_256
//! signature from moto never verifies (the tests check that it is refused, never that it works).

use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running moto server; killed when dropped.
pub struct Moto {
    child: Child,
    port: u16,
    /// The IAM user's access key id.
    pub access_key_id: String,
    /// Its secret.
    pub secret: String,
    _log: tempfile::NamedTempFile,
}

/// Fails naming the package when python3 or moto is missing.
pub fn require_moto() {
    let ok = Command::new("python3")
        .args(["-c", "import moto.server, boto3"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "python3 with the PyPI package moto[server] is needed: pip install 'moto[server]==5.2.5' (scripts/test-deps.sh installs it)"
    );
}

impl Moto {
    /// Starts moto with IAM authentication on and prepares the user and keys.
    pub fn start() -> Self {
        Self::launch(true)
    }

    /// One moto (with authentication) shared by the tests of a test binary: started by the
    /// first caller, stopped when the binary exits (its standard input closes). Tests only read
    /// its keys; only the instance metadata test changes a role, one of its own.
    pub fn shared() -> &'static Moto {
        static SHARED: std::sync::OnceLock<Moto> = std::sync::OnceLock::new();
        SHARED.get_or_init(Self::start)
    }

    /// A session of the instance role `role` (`signet-node-a` or `signet-node-b`, made by the
    /// setup with KMS permissions), from moto's STS: access key id, secret, session token.
    pub fn assume_role(&self, role: &str) -> (String, String, String) {
        let out = self.boto3(&format!(
            "c = boto3.client('sts', **common).assume_role(\
             RoleArn='arn:aws:iam::123456789012:role/{role}', RoleSessionName='node')['Credentials']\n\
             print(c['AccessKeyId'], c['SecretAccessKey'], c['SessionToken'])"
        ));
        let mut fields = out.split_whitespace().map(str::to_string);
        let mut next = || fields.next().unwrap();
        (next(), next(), next())
    }

    /// Takes the KMS permissions of instance role `role` away (its sessions stop signing).
    pub fn revoke_role(&self, role: &str) {
        self.boto3(&format!(
            "boto3.client('iam', **common).delete_role_policy(RoleName='{role}', PolicyName='kms')"
        ));
    }

    /// Runs a Python snippet with `boto3` and `common` (moto's URL, the test user's key) set.
    fn boto3(&self, code: &str) -> String {
        let script = format!(
            "import boto3\ncommon = dict(endpoint_url='{}', region_name='us-east-1', \
             aws_access_key_id='{}', aws_secret_access_key='{}')\n{code}\n",
            self.url(),
            self.access_key_id,
            self.secret
        );
        let out = Command::new("python3")
            .args(["-c", &script])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{code}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Starts moto with authentication off: moto's authentication cannot serve STS's anonymous
    /// `AssumeRoleWithWebIdentity` (it fails on the missing Authorization header), so the web
    /// identity test runs without it, and no signature is checked there.
    pub fn start_without_auth() -> Self {
        Self::launch(false)
    }

    fn launch(auth: bool) -> Self {
        require_moto();
        let log = tempfile::NamedTempFile::new().unwrap();
        let port = super::closed_port();
        // moto's server, ending when its standard input closes (this process is gone, even
        // killed) so that no emulator outlives its test or load run.
        let watched = format!(
            "import os, sys, threading\n\
             threading.Thread(target=lambda: (sys.stdin.read(), os._exit(0)), daemon=True).start()\n\
             from moto.server import main\n\
             main(['-H', '127.0.0.1', '-p', '{port}'])\n"
        );
        let child = Command::new("python3")
            .args(["-c", &watched])
            .env(
                "INITIAL_NO_AUTH_ACTION_COUNT",
                if auth { "3" } else { "1000000" },
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(log.reopen().unwrap())
            .spawn()
            .unwrap();
        let mut moto = Moto {
            child,
            port,
            access_key_id: String::new(),
            secret: String::new(),
            _log: log,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                moto.child.try_wait().unwrap().is_none(),
                "moto exited: {}",
                std::fs::read_to_string(moto._log.path()).unwrap_or_default()
            );
            assert!(Instant::now() < deadline, "moto did not listen on {port}");
            std::thread::sleep(Duration::from_millis(100));
        }
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/kms/moto_setup.py");
        let out = Command::new("python3")
            .arg(script)
            .arg(moto.url())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "moto setup failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let setup: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        moto.access_key_id = setup["access_key_id"].as_str().unwrap().to_string();
        moto.secret = setup["secret"].as_str().unwrap().to_string();
        moto
    }

    /// `127.0.0.1:PORT`, as an `awskms://ENDPOINT/...` reference names it.
    pub fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The environment of a signet process signing as the test user. Instance metadata is off:
    /// no test may reach for a metadata address.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", self.access_key_id.clone()),
            ("AWS_SECRET_ACCESS_KEY", self.secret.clone()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_EC2_METADATA_DISABLED", "true".into()),
        ]
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
