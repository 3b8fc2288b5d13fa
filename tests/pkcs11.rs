//! PKCS#11 signing keys against SoftHSM2 (Debian packages `softhsm2` and `opensc`).
//!
//! SoftHSM2 finds its tokens through the process-wide `SOFTHSM2_CONF` variable, and a PKCS#11
//! module is initialised once per process: so everything runs in one test function, in sequence,
//! on one temporary token folder, in a re-run of this binary that has the variable set.

// Helpers outside `#[test]` functions fail by panicking, as tests do (clippy.toml covers only
// `#[test]` code).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;

use support::{init_token, require_tool};

use signet::crypto::{
    Algorithm, CryptoError, DEFAULT_PKCS11_MODULE, Pkcs11Key, PublicKey, SigningKey,
    generate_on_token, open_signing_key,
};

const PIN: &str = support::USER_PIN;
const TOKEN: &str = "signet";

/// The token folder of this process (its `SOFTHSM2_CONF`) and what this test does to tokens.
struct SoftHsm {
    dir: PathBuf,
}

impl SoftHsm {
    fn at(conf: &Path) -> SoftHsm {
        assert!(
            Path::new(DEFAULT_PKCS11_MODULE).exists(),
            "{DEFAULT_PKCS11_MODULE} missing: install the Debian package softhsm2"
        );
        require_tool("pkcs11-tool", "opensc");
        let dir = conf.parent().unwrap_or(Path::new("/")).to_path_buf();
        SoftHsm { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn init_token(&self, label: &str) {
        init_token(&self.path("softhsm2.conf"), label);
    }

    fn pkcs11_tool(&self, args: &[&str]) -> String {
        let out = match Command::new("pkcs11-tool")
            .arg("--module")
            .arg(DEFAULT_PKCS11_MODULE)
            .args(args)
            .output()
        {
            Ok(out) => out,
            Err(e) => panic!("pkcs11-tool not found ({e}): install the Debian package opensc"),
        };
        assert_success(&format!("pkcs11-tool {}", args.join(" ")), &out);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Deletes the public key object labelled `label`.
    fn delete_public_key(&self, label: &str) {
        self.pkcs11_tool(&[
            "--token-label",
            TOKEN,
            "--login",
            "--pin",
            PIN,
            "--delete-object",
            "--type",
            "pubkey",
            "--label",
            label,
        ]);
    }

    /// Stores the SPKI DER `der` as a public key object.
    fn write_public_key(&self, der: &[u8], label: &str, id: &str) {
        let file = self.path(&format!("{label}.written.der"));
        std::fs::write(&file, der).unwrap();
        self.pkcs11_tool(&[
            "--token-label",
            TOKEN,
            "--login",
            "--pin",
            PIN,
            "--write-object",
            file.to_str().unwrap(),
            "--type",
            "pubkey",
            "--label",
            label,
            "--id",
            id,
        ]);
    }

    fn keypairgen(&self, key_type: &str, label: &str, id: &str) {
        self.pkcs11_tool(&[
            "--token-label",
            TOKEN,
            "--login",
            "--pin",
            PIN,
            "--keypairgen",
            "--key-type",
            key_type,
            "--label",
            label,
            "--id",
            id,
            "--usage-sign",
        ]);
    }

    /// The lines pkcs11-tool lists for the object of `kind` (`Private Key Object`, `Public Key
    /// Object`) labelled `label`.
    fn listed_object(&self, kind: &str, label: &str) -> Vec<String> {
        let listing = self.pkcs11_tool(&[
            "--token-label",
            TOKEN,
            "--login",
            "--pin",
            PIN,
            "--list-objects",
        ]);
        let mut blocks: Vec<Vec<String>> = Vec::new();
        for line in listing.lines() {
            if !line.starts_with(' ') {
                blocks.push(vec![line.to_string()]);
            } else if let Some(block) = blocks.last_mut() {
                block.push(line.trim().to_string());
            }
        }
        blocks
            .into_iter()
            .find(|b| {
                b[0].starts_with(kind) && b.iter().any(|l| *l == format!("label:      {label}"))
            })
            .unwrap_or_else(|| panic!("no {kind} labelled {label} in:\n{listing}"))
    }

    /// The `Access:` line pkcs11-tool prints for the private key object labelled `label`.
    fn private_key_access(&self, label: &str) -> String {
        let block = self.listed_object("Private Key Object", label);
        block
            .into_iter()
            .find(|l| l.starts_with("Access:"))
            .expect("an Access: line")
    }

    /// The uncompressed EC point pkcs11-tool lists for the public key object labelled `label`.
    fn ec_point(&self, label: &str) -> Vec<u8> {
        let block = self.listed_object("Public Key Object", label);
        let line = block
            .into_iter()
            .find(|l| l.starts_with("EC_POINT:"))
            .expect("an EC_POINT: line");
        let der = hex::decode(line.trim_start_matches("EC_POINT:").trim()).unwrap();
        // A DER OCTET STRING (04 LEN) around the point (04 X Y).
        let header = if der[1] & 0x80 != 0 {
            2 + usize::from(der[1] & 0x7f)
        } else {
            2
        };
        der[header..].to_vec()
    }

    /// The SPKI DER pkcs11-tool reads for the public key object labelled `label`.
    fn public_key_der(&self, label: &str) -> Vec<u8> {
        let out = self.path(&format!("{label}.pub.der"));
        self.pkcs11_tool(&[
            "--token-label",
            TOKEN,
            "--read-object",
            "--type",
            "pubkey",
            "--label",
            label,
            "-o",
            out.to_str().unwrap(),
        ]);
        std::fs::read(out).unwrap()
    }
}

fn assert_success(what: &str, out: &Output) {
    assert!(
        out.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn uri(object: &str, extra_path: &str, pin: &str) -> String {
    format!(
        "pkcs11:token={TOKEN};object={object}{extra_path}?module-path={DEFAULT_PKCS11_MODULE}&pin-value={pin}"
    )
}

/// Signs a few payloads and checks each signature with the key's public key, and with `expected`.
fn check_signs(key: &dyn SigningKey, expected: &PublicKey) {
    assert_eq!(key.public_key(), expected);
    for payload in [&b""[..], b"{\"critical\":{}}", &[0x5a; 10_000]] {
        let sig = key.sign(payload).unwrap();
        key.public_key().verify(payload, &sig).unwrap();
        expected.verify(payload, &sig).unwrap();
        // A declared PEM round trip of the public key verifies too (what a policy would hold).
        PublicKey::from_pem(&expected.to_pem(), key.algorithm())
            .unwrap()
            .verify(payload, &sig)
            .unwrap();
        assert_eq!(
            expected.verify(b"another payload", &sig),
            Err(CryptoError::BadSignature)
        );
    }
}

/// An error's text: one line, never the PIN.
fn one_line(err: CryptoError) -> String {
    let text = err.to_string();
    assert!(!text.contains('\n'), "{text}");
    assert!(
        !text.contains(PIN) && !text.contains("0000"),
        "the PIN leaked: {text}"
    );
    text
}

#[test]
fn signing_keys_on_softhsm2() {
    // The module reads SOFTHSM2_CONF once per process: the test runs in a process of its own.
    let Some(conf) = support::SoftHsm::in_own_process("signing_keys_on_softhsm2") else {
        return;
    };
    let hsm = SoftHsm::at(&conf);
    hsm.init_token(TOKEN);
    hsm.init_token("other");
    // Keys made by another tool, with ids.
    hsm.keypairgen("rsa:2048", "tool-rsa", "02");
    hsm.keypairgen("EC:prime256v1", "tool-ec", "03");
    hsm.keypairgen("EC:secp384r1", "tool-p384", "04");
    hsm.keypairgen("EC:secp256k1", "tool-k1", "05");
    hsm.keypairgen("EC:edwards25519", "tool-ed", "06");
    // Private keys without their public key object, or beside another key's.
    hsm.keypairgen("rsa:2048", "lonely-rsa", "07");
    hsm.delete_public_key("lonely-rsa");
    hsm.keypairgen("EC:prime256v1", "lonely-ec", "08");
    hsm.delete_public_key("lonely-ec");
    hsm.keypairgen("rsa:2048", "mixed", "09");
    hsm.delete_public_key("mixed");
    let foreign = signet::crypto::generate_key_pair(Algorithm::RsaPkcs1Sha256, Some(2048)).unwrap();
    hsm.write_public_key(foreign.public_key().spki_der(), "mixed", "09");

    let module = Path::new(DEFAULT_PKCS11_MODULE);

    // Keys generated by signet: non-extractable, and they sign with every PKCS#11 algorithm.
    for (algorithm, label) in [
        (Algorithm::RsaPssSha256, "release-pss"),
        (Algorithm::RsaPkcs1Sha256, "release-pkcs1"),
        (Algorithm::EcdsaP256Sha256, "release-p256"),
        (Algorithm::EcdsaP384Sha384, "release-p384"),
    ] {
        let generated = generate_on_token(module, TOKEN, PIN, label, algorithm).unwrap();
        assert_eq!(generated.public_key.algorithm(), algorithm);
        assert!(!generated.uri.contains(PIN), "{}", generated.uri);
        assert!(
            generated
                .uri
                .starts_with(&format!("pkcs11:token={TOKEN};object={label};id=")),
            "{}",
            generated.uri
        );
        if algorithm == Algorithm::EcdsaP384Sha384 {
            // pkcs11-tool 0.23 cannot export P-384 public keys ("cannot create EVP_PKEY"): compare points.
            assert!(
                generated
                    .public_key
                    .spki_der()
                    .ends_with(&hsm.ec_point(label))
            );
        } else {
            assert_eq!(generated.public_key.spki_der(), hsm.public_key_der(label));
        }
        let access = hsm.private_key_access(label);
        assert!(
            access.contains("never extractable") && access.contains("always sensitive"),
            "{label}: {access}"
        );

        let key = open_signing_key(
            &format!("{}&pin-value={PIN}", generated.uri),
            algorithm,
            None,
        )
        .unwrap();
        assert_eq!(key.key_id(), label);
        assert_eq!(key.algorithm(), algorithm);
        check_signs(key.as_ref(), &generated.public_key);

        let direct = Pkcs11Key::open(&uri(label, "", PIN), algorithm, Some("kms-7")).unwrap();
        assert!(!direct.is_extractable());
        assert_eq!(direct.key_id(), "kms-7");
        assert_eq!(direct.token_label(), TOKEN);
        check_signs(&direct, &generated.public_key);

        let err = generate_on_token(module, TOKEN, PIN, label, algorithm).unwrap_err();
        assert!(one_line(err).contains("already holds a key labelled"));
    }

    // RSA-PSS signatures use salt length 32: the verifier (salt = digest length) accepts nothing else,
    // and the same key declared PKCS#1 v1.5 does not verify them.
    let pss =
        open_signing_key(&uri("release-pss", "", PIN), Algorithm::RsaPssSha256, None).unwrap();
    let sig = pss.sign(b"m").unwrap();
    assert_eq!(sig.len(), 384, "RSA 3072");
    let as_pkcs1 =
        PublicKey::from_spki_der(pss.public_key().spki_der(), Algorithm::RsaPkcs1Sha256).unwrap();
    assert_eq!(as_pkcs1.verify(b"m", &sig), Err(CryptoError::BadSignature));
    drop(pss);

    // Keys made by pkcs11-tool: found by label, by label and id, with the public key pkcs11-tool reads.
    for (algorithm, label, id) in [
        (Algorithm::RsaPssSha256, "tool-rsa", "%02"),
        (Algorithm::RsaPkcs1Sha256, "tool-rsa", "%02"),
        (Algorithm::EcdsaP256Sha256, "tool-ec", "%03"),
        (Algorithm::EcdsaP384Sha384, "tool-p384", "%04"),
    ] {
        let expected = if algorithm == Algorithm::EcdsaP384Sha384 {
            let key = open_signing_key(&uri(label, "", PIN), algorithm, None).unwrap();
            assert!(key.public_key().spki_der().ends_with(&hsm.ec_point(label)));
            key.public_key().clone()
        } else {
            PublicKey::from_spki_der(&hsm.public_key_der(label), algorithm).unwrap()
        };
        for extra in ["".to_string(), format!(";id={id}")] {
            let key = open_signing_key(&uri(label, &extra, PIN), algorithm, None).unwrap();
            assert_eq!(key.key_id(), label);
            check_signs(key.as_ref(), &expected);
        }
    }
    // By id alone: the key id falls back to the object's label.
    let by_id =
        format!("pkcs11:token={TOKEN};id=%03?module-path={DEFAULT_PKCS11_MODULE}&pin-value={PIN}");
    let key = open_signing_key(&by_id, Algorithm::EcdsaP256Sha256, None).unwrap();
    assert_eq!(key.key_id(), "tool-ec");
    drop(key);

    // The PIN from a file (trailing newline ignored), and the module path left to its default.
    let pin_file = hsm.path("pin");
    std::fs::write(&pin_file, format!("{PIN}\n")).unwrap();
    let from_file = format!(
        "pkcs11:token={TOKEN};object=release-p256?pin-source=file:{}",
        pin_file.display()
    );
    let key = open_signing_key(&from_file, Algorithm::EcdsaP256Sha256, None).unwrap();
    check_signs(
        key.as_ref(),
        &PublicKey::from_spki_der(
            &hsm.public_key_der("release-p256"),
            Algorithm::EcdsaP256Sha256,
        )
        .unwrap(),
    );

    // One key, many threads.
    let shared: Arc<dyn SigningKey> =
        open_signing_key(&uri("release-pss", "", PIN), Algorithm::RsaPssSha256, None).unwrap();
    let threads: Vec<_> = (0..6)
        .map(|t| {
            let key = Arc::clone(&shared);
            std::thread::spawn(move || {
                for i in 0..15 {
                    let payload = format!("thread {t} payload {i}");
                    let sig = key.sign(payload.as_bytes()).unwrap();
                    key.public_key().verify(payload.as_bytes(), &sig).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }

    // Errors: one line each, naming the token or object, never the PIN.
    // A wrong PIN is refused even while another key of this process is logged in to the token.
    let err = one_line(
        open_signing_key(
            &uri("release-p256", "", "0000"),
            Algorithm::EcdsaP256Sha256,
            None,
        )
        .unwrap_err(),
    );
    assert!(
        err.contains("wrong PIN") && err.contains("\"signet\""),
        "{err}"
    );

    let missing_token = format!(
        "pkcs11:token=nope;object=release-p256?module-path={DEFAULT_PKCS11_MODULE}&pin-value={PIN}"
    );
    let err =
        one_line(open_signing_key(&missing_token, Algorithm::EcdsaP256Sha256, None).unwrap_err());
    assert!(
        err.contains("no PKCS#11 token \"nope\"")
            && err.contains("\"signet\"")
            && err.contains("\"other\""),
        "{err}"
    );

    let err = one_line(
        open_signing_key(&uri("nope", "", PIN), Algorithm::EcdsaP256Sha256, None).unwrap_err(),
    );
    assert!(
        err.contains("no private key labelled \"nope\"") && err.contains("\"signet\""),
        "{err}"
    );
    let err = one_line(
        open_signing_key(
            &uri("tool-ec", ";id=%09", PIN),
            Algorithm::EcdsaP256Sha256,
            None,
        )
        .unwrap_err(),
    );
    assert!(err.contains("\"tool-ec\" with id %09"), "{err}");

    let err = one_line(
        open_signing_key(&uri("release-p256", "", PIN), Algorithm::RsaPssSha256, None).unwrap_err(),
    );
    assert!(
        err.contains("\"release-p256\"")
            && err.contains("EC P-256")
            && err.contains("RSA_PSS_SHA_256"),
        "{err}"
    );
    let err = one_line(
        open_signing_key(&uri("tool-rsa", "", PIN), Algorithm::EcdsaP256Sha256, None).unwrap_err(),
    );
    assert!(
        err.contains("an RSA key") && err.contains("ECDSA_P256_SHA_256"),
        "{err}"
    );

    let err = one_line(
        open_signing_key(&uri("tool-k1", "", PIN), Algorithm::EcdsaP256Sha256, None).unwrap_err(),
    );
    assert!(
        err.contains("\"tool-k1\"") && err.contains("unsupported curve"),
        "{err}"
    );
    let err = one_line(
        open_signing_key(&uri("tool-ed", "", PIN), Algorithm::EcdsaP256Sha256, None).unwrap_err(),
    );
    assert!(
        err.contains("\"tool-ed\"") && err.contains("Ed25519"),
        "{err}"
    );
    let err =
        one_line(open_signing_key(&uri("tool-ed", "", PIN), Algorithm::Ed25519, None).unwrap_err());
    assert!(err.contains("unsupported on PKCS#11"), "{err}");
    let err = generate_on_token(module, TOKEN, PIN, "ed", Algorithm::Ed25519).unwrap_err();
    assert!(one_line(err).contains("unsupported on PKCS#11"));

    // An RSA private key without a public object still gives its public key; an EC one cannot.
    let lonely =
        open_signing_key(&uri("lonely-rsa", "", PIN), Algorithm::RsaPkcs1Sha256, None).unwrap();
    let sig = lonely.sign(b"m").unwrap();
    lonely.public_key().verify(b"m", &sig).unwrap();
    drop(lonely);
    let err = one_line(
        open_signing_key(&uri("lonely-ec", "", PIN), Algorithm::EcdsaP256Sha256, None).unwrap_err(),
    );
    assert!(
        err.contains("\"lonely-ec\"") && err.contains("no public key object"),
        "{err}"
    );
    let err = one_line(
        open_signing_key(&uri("mixed", "", PIN), Algorithm::RsaPssSha256, None).unwrap_err(),
    );
    assert!(
        err.contains("\"mixed\"") && err.contains("belongs to another key"),
        "{err}"
    );

    let no_pin =
        format!("pkcs11:token={TOKEN};object=release-p256?module-path={DEFAULT_PKCS11_MODULE}");
    let err = one_line(open_signing_key(&no_pin, Algorithm::EcdsaP256Sha256, None).unwrap_err());
    assert!(err.contains("needs a PIN"), "{err}");
    let missing_pin_file = format!(
        "pkcs11:token={TOKEN};object=x?pin-source={}",
        hsm.path("no-pin").display()
    );
    let err = one_line(
        open_signing_key(&missing_pin_file, Algorithm::EcdsaP256Sha256, None).unwrap_err(),
    );
    assert!(err.contains("no-pin"), "{err}");
    let err = generate_on_token(module, "nope", PIN, "x", Algorithm::EcdsaP256Sha256).unwrap_err();
    assert!(one_line(err).contains("\"nope\""));
    let err =
        generate_on_token(module, TOKEN, "0000", "x", Algorithm::EcdsaP256Sha256).unwrap_err();
    assert!(one_line(err).contains("wrong PIN"));

    // Once every key is dropped the module is finalised (as after each case above); opening again
    // loads it afresh.
    drop((key, shared));
    // A wrong PIN with nobody logged in.
    let err = one_line(
        open_signing_key(
            &uri("release-p256", "", "0000"),
            Algorithm::EcdsaP256Sha256,
            None,
        )
        .unwrap_err(),
    );
    assert!(err.contains("wrong PIN"), "{err}");
    let again = open_signing_key(
        &uri("release-pkcs1", "", PIN),
        Algorithm::RsaPkcs1Sha256,
        None,
    )
    .unwrap();
    let sig = again.sign(b"after a reload").unwrap();
    again.public_key().verify(b"after a reload", &sig).unwrap();
}
