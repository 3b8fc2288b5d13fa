//! A real RFC 3161 Time Stamping Authority for tests: Debian's `openssl ts` (package openssl)
//! answers timestamp queries with genuine TimeStampTokens. Its PKI is made once per test binary:
//! a trusted TSA root (RSA) -> TSA CA (ECDSA P-256) -> TSA certificate (RSA, extendedKeyUsage
//! timeStamping, critical); an untrusted TSA (its own root, ECDSA P-256 TSA certificate); and a
//! certificate of the trusted CA without the timeStamping EKU, which `openssl ts` refuses to sign
//! with, so its token is assembled with `openssl cms -sign -cades` around a genuine TSTInfo.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

use tempfile::TempDir;

const CONFIG: &str = "\
[ req ]
distinguished_name = dn
prompt = no
[ dn ]
CN = unused
[ root_ext ]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[ ca_ext ]
basicConstraints = critical, CA:TRUE, pathlen:0
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[ tsa_ext ]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = critical, timeStamping
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[ noncritical_eku_ext ]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = timeStamping
subjectKeyIdentifier = hash
[ no_eku_ext ]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
subjectKeyIdentifier = hash
[ tsa ]
default_tsa = tsa_config
[ tsa_config ]
serial = SERIAL_FILE
crypto_device = builtin
signer_digest = sha256
default_policy = 1.3.6.1.4.1.99999.1
other_policies = 1.3.6.1.4.1.99999.2
digests = sha256, sha384, sha512
accuracy = secs:1
ordering = no
tsa_name = yes
ess_cert_id_chain = no
ess_cert_id_alg = sha256
";

/// The TSA material, in a folder that lives as long as the test binary.
pub struct Tsa {
    dir: TempDir,
    /// `openssl ts -reply` rewrites the serial file: one reply at a time.
    serial: Mutex<()>,
    /// PEM of the trusted TSA root: what an Attestor's `tsaCertificates` holds.
    pub root_pem: String,
    /// PEM of the untrusted TSA's root.
    pub other_root_pem: String,
}

fn openssl(dir: &Path, args: &[&str]) -> Vec<u8> {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run openssl ({e}): install the Debian package openssl (scripts/test-deps.sh)")
        });
    assert!(
        out.status.success(),
        "openssl {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// A key (`rsa` or `ec`) and a certificate for `subject` issued by `issuer` (`None`:
/// self-signed) with the extension section `ext`; files `<name>.key`, `<name>.pem`.
fn issue(dir: &Path, name: &str, kind: &str, subject: &str, issuer: Option<&str>, ext: &str) {
    let key = format!("{name}.key");
    let pem = format!("{name}.pem");
    let csr = format!("{name}.csr");
    let newkey: &[&str] = if kind == "rsa" {
        &["-newkey", "rsa:2048"]
    } else {
        &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"]
    };
    match issuer {
        None => {
            let mut args = vec![
                "req",
                "-x509",
                "-new",
                "-config",
                "pki.cnf",
                "-extensions",
                ext,
            ];
            args.extend_from_slice(newkey);
            args.extend_from_slice(&[
                "-nodes", "-keyout", &key, "-out", &pem, "-days", "3650", "-subj", subject,
            ]);
            openssl(dir, &args);
        }
        Some(issuer) => {
            let mut args = vec!["req", "-new", "-config", "pki.cnf"];
            args.extend_from_slice(newkey);
            args.extend_from_slice(&["-nodes", "-keyout", &key, "-out", &csr, "-subj", subject]);
            openssl(dir, &args);
            let (ca, ca_key) = (format!("{issuer}.pem"), format!("{issuer}.key"));
            // Serials only need to differ per issuer; the name's hash makes them differ.
            let serial = format!(
                "{}",
                name.bytes()
                    .fold(7u32, |a, b| a.wrapping_mul(31).wrapping_add(u32::from(b)))
                    % 1_000_000
            );
            openssl(
                dir,
                &[
                    "x509",
                    "-req",
                    "-in",
                    &csr,
                    "-CA",
                    &ca,
                    "-CAkey",
                    &ca_key,
                    "-set_serial",
                    &serial,
                    "-days",
                    "3650",
                    "-sha256",
                    "-extfile",
                    "pki.cnf",
                    "-extensions",
                    ext,
                    "-out",
                    &pem,
                ],
            );
        }
    }
}

impl Tsa {
    /// The material, made on first use.
    pub fn get() -> &'static Tsa {
        static TSA: OnceLock<Tsa> = OnceLock::new();
        TSA.get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path();
            let serial = path.join("serial");
            std::fs::write(&serial, "01\n").unwrap();
            std::fs::write(
                path.join("pki.cnf"),
                CONFIG.replace("SERIAL_FILE", &serial.display().to_string()),
            )
            .unwrap();
            issue(
                path,
                "root",
                "rsa",
                "/C=US/O=acme/CN=Test TSA Root",
                None,
                "root_ext",
            );
            issue(
                path,
                "ca",
                "ec",
                "/C=US/O=acme/CN=Test TSA CA",
                Some("root"),
                "ca_ext",
            );
            issue(
                path,
                "tsa",
                "rsa",
                "/C=US/O=acme/CN=Test TSA",
                Some("ca"),
                "tsa_ext",
            );
            issue(
                path,
                "noeku",
                "rsa",
                "/C=US/O=acme/CN=Test TSA without EKU",
                Some("ca"),
                "no_eku_ext",
            );
            issue(
                path,
                "noncritical",
                "ec",
                "/C=US/O=acme/CN=Test TSA with a non-critical EKU",
                Some("ca"),
                "noncritical_eku_ext",
            );
            issue(
                path,
                "other_root",
                "ec",
                "/C=US/O=elsewhere/CN=Other TSA Root",
                None,
                "root_ext",
            );
            issue(
                path,
                "other_tsa",
                "ec",
                "/C=US/O=elsewhere/CN=Other TSA",
                Some("other_root"),
                "tsa_ext",
            );
            let read = |name: &str| std::fs::read_to_string(path.join(name)).unwrap();
            Tsa {
                root_pem: read("root.pem"),
                other_root_pem: read("other_root.pem"),
                dir,
                serial: Mutex::new(()),
            }
        })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `openssl ts -query` over `message` hashed with `hash` (`sha256`, `sha384`...), answered by
    /// `openssl ts -reply` signing with `signer` and carrying `chain`.
    fn reply(&self, message: &[u8], signer: &str, chain: &str, hash: &str) -> Vec<u8> {
        let work = tempfile::tempdir_in(self.path()).unwrap();
        let data = work.path().join("message.bin");
        std::fs::write(&data, message).unwrap();
        let query = work.path().join("q.tsq");
        let token = work.path().join("token.der");
        let p = |p: &PathBuf| p.display().to_string();
        openssl(
            self.path(),
            &[
                "ts",
                "-query",
                "-data",
                &p(&data),
                &format!("-{hash}"),
                "-cert",
                "-out",
                &p(&query),
            ],
        );
        let _one_at_a_time = self.serial.lock().unwrap_or_else(|e| e.into_inner());
        openssl(
            self.path(),
            &[
                "ts",
                "-reply",
                "-config",
                "pki.cnf",
                "-queryfile",
                &p(&query),
                "-signer",
                &format!("{signer}.pem"),
                "-inkey",
                &format!("{signer}.key"),
                "-chain",
                chain,
                "-token_out",
                "-out",
                &p(&token),
            ],
        );
        std::fs::read(&token).unwrap()
    }

    /// A genuine token from the trusted TSA over SHA-256 of `message` (an envelope's signature
    /// value); it carries the TSA certificate and its CA, not the root.
    pub fn stamp(&self, message: &[u8]) -> Vec<u8> {
        self.reply(message, "tsa", "ca.pem", "sha256")
    }

    /// [`Tsa::stamp`] with a SHA-384 message imprint (what Notation asks for RSA-3072 and P-384
    /// signatures).
    pub fn stamp_sha384(&self, message: &[u8]) -> Vec<u8> {
        self.reply(message, "tsa", "ca.pem", "sha384")
    }

    /// A genuine token from the TSA whose root is not trusted.
    pub fn stamp_untrusted(&self, message: &[u8]) -> Vec<u8> {
        self.reply(message, "other_tsa", "other_root.pem", "sha256")
    }

    /// The trusted TSA's TSTInfo for `message`, signed as CMS (CAdES: signingCertificateV2) by
    /// `signer`: `tsa`, `noeku` (a certificate of the same CA without the timeStamping EKU, which
    /// `openssl ts` will not sign with) or `noncritical` (timeStamping not marked critical).
    pub fn cms_signed(&self, message: &[u8], signer: &str) -> Vec<u8> {
        let work = tempfile::tempdir_in(self.path()).unwrap();
        let p = |name: &str| work.path().join(name).display().to_string();
        std::fs::write(p("genuine.der"), self.stamp(message)).unwrap();
        openssl(
            self.path(),
            &[
                "cms",
                "-verify",
                "-noverify",
                "-binary",
                "-inform",
                "DER",
                "-in",
                &p("genuine.der"),
                "-out",
                &p("tstinfo.der"),
            ],
        );
        openssl(
            self.path(),
            &[
                "cms",
                "-sign",
                "-binary",
                "-nodetach",
                "-cades",
                "-nosmimecap",
                "-md",
                "sha256",
                "-econtent_type",
                "1.2.840.113549.1.9.16.1.4",
                "-in",
                &p("tstinfo.der"),
                "-signer",
                &format!("{signer}.pem"),
                "-inkey",
                &format!("{signer}.key"),
                "-certfile",
                "ca.pem",
                "-outform",
                "DER",
                "-out",
                &p("token.der"),
            ],
        );
        std::fs::read(p("token.der")).unwrap()
    }
}
