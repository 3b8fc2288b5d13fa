//! A SoftHSM2 token folder for tests: the config file, initialised tokens, the user PIN in a
//! file. SoftHSM2 finds its tokens through `SOFTHSM2_CONF`; child processes get it with
//! [`SoftHsm::conf`], and a test that loads the module in its own process re-runs itself with the
//! variable set ([`SoftHsm::rerun_with_conf`]) rather than changing its own environment.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The user PIN of every token made here.
pub const USER_PIN: &str = "1234";
/// The security officer PIN of every token made here.
pub const SO_PIN: &str = "5678";
/// The environment variable a re-run test finds its token folder's config in.
const RERUN_CONF: &str = "SOFTHSM2_CONF";

/// Fails, naming the Debian package, when `tool` is not on the PATH.
pub fn require_tool(tool: &str, package: &str) {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .output()
        .map(|o| o.status.success());
    assert!(
        matches!(found, Ok(true)),
        "{tool} is missing: install the Debian package {package}"
    );
}

/// A temporary token folder with its SoftHSM2 config.
pub struct SoftHsm {
    dir: tempfile::TempDir,
    conf: PathBuf,
    pin_file: PathBuf,
}

impl SoftHsm {
    /// An empty token folder (no token yet).
    pub fn new() -> SoftHsm {
        require_tool("softhsm2-util", "softhsm2");
        let dir = tempfile::tempdir().expect("temporary folder");
        let tokens = dir.path().join("tokens");
        std::fs::create_dir(&tokens).expect("tokens folder");
        let conf = dir.path().join("softhsm2.conf");
        std::fs::write(
            &conf,
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
                tokens.display()
            ),
        )
        .expect("softhsm2.conf");
        let pin_file = dir.path().join("pin");
        std::fs::write(&pin_file, format!("{USER_PIN}\n")).expect("PIN file");
        SoftHsm {
            dir,
            conf,
            pin_file,
        }
    }

    /// A token folder holding one initialised token labelled `label`.
    pub fn with_token(label: &str) -> SoftHsm {
        let hsm = SoftHsm::new();
        hsm.init_token(label);
        hsm
    }

    /// Initialises a token labelled `label` (PINs [`USER_PIN`] and [`SO_PIN`]).
    pub fn init_token(&self, label: &str) {
        init_token(&self.conf, label);
    }

    /// The config file to pass as `SOFTHSM2_CONF`.
    pub fn conf(&self) -> &Path {
        &self.conf
    }

    /// A file holding the user PIN.
    pub fn pin_file(&self) -> &Path {
        &self.pin_file
    }

    /// A path inside the token's temporary folder.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// For a test that loads the PKCS#11 module in its own process: in the re-run (this process
    /// has `SOFTHSM2_CONF`), `Some` with the token folder's config, and the test runs its body;
    /// otherwise runs the test `test_name` of this binary again with `SOFTHSM2_CONF` pointing at
    /// a new token folder, asserts that it passed, and gives `None` (the body already ran there).
    pub fn in_own_process(test_name: &str) -> Option<PathBuf> {
        if let Some(conf) = std::env::var_os(RERUN_CONF) {
            return Some(PathBuf::from(conf));
        }
        let hsm = SoftHsm::new();
        let exe = std::env::current_exe().expect("test binary");
        let out = Command::new(exe)
            .args([test_name, "--exact", "--nocapture", "--test-threads=1"])
            .env(RERUN_CONF, hsm.conf())
            .output()
            .expect("re-run the test binary");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && stdout.contains("1 passed"),
            "the re-run of {test_name} with SOFTHSM2_CONF failed:\n{stdout}\n{stderr}"
        );
        None
    }
}

/// Initialises a token labelled `label` (PINs [`USER_PIN`] and [`SO_PIN`]) in the folder `conf`
/// configures.
pub fn init_token(conf: &Path, label: &str) {
    let out = Command::new("softhsm2-util")
        .args([
            "--init-token",
            "--free",
            "--label",
            label,
            "--pin",
            USER_PIN,
            "--so-pin",
            SO_PIN,
        ])
        .env("SOFTHSM2_CONF", conf)
        .output()
        .expect("softhsm2-util runs (Debian package softhsm2)");
    assert!(
        out.status.success(),
        "softhsm2-util --init-token: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
