//! Private keys read from PEM files: PKCS#8 (`PRIVATE KEY`, what `signet keygen` writes), and the
//! older unencrypted forms `RSA PRIVATE KEY` (PKCS#1) and `EC PRIVATE KEY` (SEC 1).
//!
//! No error or log line ever carries key material: only the path, the PEM label and the key type.

use std::fmt;
use std::path::Path;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self as lc, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair};

use super::der::{self, KeyKind};
use super::signing::{SigningKey, check_key_fits, resolve_algorithm};
use super::{Algorithm, CryptoError, PublicKey};

/// A private key held in memory, read from a PEM file.
pub struct FileKey {
    algorithm: Algorithm,
    key_id: String,
    public_key: PublicKey,
    pair: Pair,
}

enum Pair {
    Rsa(RsaKeyPair),
    Ecdsa(EcdsaKeyPair),
    Ed25519(Ed25519KeyPair),
}

impl fmt::Debug for FileKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileKey")
            .field("key_id", &self.key_id)
            .field("algorithm", &self.algorithm)
            .field("fingerprint", &self.public_key.fingerprint())
            .finish_non_exhaustive()
    }
}

/// Refuses a private key file that group or others may access (mode `0600` is what `signet
/// keygen` writes, and what ssh asks of its keys): a key anyone on the host can read is not a
/// secret, and signing with it would hide that.
///
/// One exception, as PostgreSQL makes for its key files: a file owned by root may be readable
/// (not writable) by its group when this process is not root. That is how Kubernetes mounts a
/// Secret for a non-root pod (`defaultMode: 0440`, group `fsGroup`), and only that group can read.
#[cfg(unix)]
fn check_private_mode(path: &Path, metadata: &std::fs::Metadata) -> Result<(), CryptoError> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let mode = metadata.permissions().mode() & 0o777;
    if mode & 0o077 == 0 {
        return Ok(());
    }
    // /proc/self belongs to the process's effective user.
    let we_are_root = std::fs::metadata("/proc/self").map_or(true, |m| m.uid() == 0);
    if mode & 0o037 == 0 && metadata.uid() == 0 && !we_are_root {
        return Ok(());
    }
    let how = if mode & 0o044 != 0 {
        "readable"
    } else {
        "writable"
    };
    Err(CryptoError::KeyFileTooOpen {
        path: path.display().to_string(),
        how,
        mode,
    })
}

/// Other systems have no such mode bits to check.
#[cfg(not(unix))]
fn check_private_mode(_path: &Path, _metadata: &std::fs::Metadata) -> Result<(), CryptoError> {
    Ok(())
}

/// Which encoding the PEM block holds.
#[derive(Clone, Copy)]
enum Encoding {
    Pkcs8,
    Pkcs1,
    Sec1,
}

impl FileKey {
    /// Reads the PEM private key at `path` for `algorithm`; the key id defaults to the file name.
    pub fn open(
        path: &Path,
        algorithm: Algorithm,
        key_id: Option<&str>,
    ) -> Result<Self, CryptoError> {
        Self::open_inferred(path, Some(algorithm), key_id)
    }

    /// Like [`FileKey::open`], with the algorithm inferred from the key when `algorithm` is
    /// `None` (EC keys by their curve, Ed25519 keys; an RSA key needs it named).
    pub fn open_inferred(
        path: &Path,
        algorithm: Option<Algorithm>,
        key_id: Option<&str>,
    ) -> Result<Self, CryptoError> {
        let source = format!("key file {}", path.display());
        let cannot_read = |e: std::io::Error| {
            CryptoError::KeyStore(format!("cannot read key file {}: {e}", path.display()))
        };
        // The mode is read from the opened file, so the file checked is the file read.
        let mut file = std::fs::File::open(path).map_err(cannot_read)?;
        check_private_mode(path, &file.metadata().map_err(cannot_read)?)?;
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut file, &mut bytes).map_err(cannot_read)?;
        let key_id = match key_id {
            Some(id) => id.to_string(),
            None => path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| path.display().to_string()),
        };
        let result = match std::str::from_utf8(&bytes) {
            Ok(text) => Self::from_pem_named(text, algorithm, key_id, &source),
            Err(_) => Err(CryptoError::MalformedKey(format!(
                "{source} is not a PEM file (binary content; DER keys are not read: \
                 convert with `openssl pkcs8 -topk8 -nocrypt -inform DER -outform PEM`)"
            ))),
        };
        bytes.fill(0);
        result
    }

    /// Parses a PEM private key held in memory.
    pub fn from_pem(pem: &str, algorithm: Algorithm, key_id: &str) -> Result<Self, CryptoError> {
        Self::from_pem_named(pem, Some(algorithm), key_id.to_string(), "private key")
    }

    fn from_pem_named(
        pem: &str,
        algorithm: Option<Algorithm>,
        key_id: String,
        source: &str,
    ) -> Result<Self, CryptoError> {
        let encoding = classify_pem(pem, source)?;
        let mut block = der::pem_decode(pem).ok_or_else(|| {
            CryptoError::MalformedKey(format!(
                "{source}: the PEM block is truncated or its base64 is broken"
            ))
        })?;
        let result = Self::from_der(&block.der, encoding, algorithm, key_id, source);
        block.der.fill(0);
        result
    }

    fn from_der(
        der: &[u8],
        encoding: Encoding,
        asked: Option<Algorithm>,
        key_id: String,
        source: &str,
    ) -> Result<Self, CryptoError> {
        let kind = match encoding {
            Encoding::Pkcs8 => pkcs8_kind(der),
            Encoding::Pkcs1 => KeyKind::Rsa,
            Encoding::Sec1 => match (sec1_kind(der), asked) {
                (Some(kind), _) => kind,
                // Without a curve in the key, the algorithm asked for decides; aws-lc checks the point.
                (None, Some(Algorithm::EcdsaP384Sha384)) => KeyKind::EcP384,
                (None, Some(_)) => KeyKind::EcP256,
                (None, None) => {
                    return Err(CryptoError::MalformedKey(format!(
                        "{source} is an EC key that does not name its curve: name the algorithm \
                         (--algorithm ECDSA_P256_SHA_256 or ECDSA_P384_SHA_384)"
                    )));
                }
            },
        };
        let algorithm = resolve_algorithm(kind, asked, source)?;
        check_key_fits(kind, algorithm, source)?;
        let rejected = |e: aws_lc_rs::error::KeyRejected| {
            CryptoError::MalformedKey(format!("{source}: {} rejected: {e}", kind.describe()))
        };
        let (pair, spki) = match algorithm {
            Algorithm::RsaPssSha256 | Algorithm::RsaPkcs1Sha256 => {
                let kp = match encoding {
                    Encoding::Pkcs1 => RsaKeyPair::from_der(der),
                    _ => RsaKeyPair::from_pkcs8(der),
                }
                .map_err(rejected)?;
                let spki = spki_der(kp.public_key().as_der(), source)?;
                (Pair::Rsa(kp), spki)
            }
            Algorithm::EcdsaP256Sha256 | Algorithm::EcdsaP384Sha384 => {
                let alg = if algorithm == Algorithm::EcdsaP256Sha256 {
                    &lc::ECDSA_P256_SHA256_ASN1_SIGNING
                } else {
                    &lc::ECDSA_P384_SHA384_ASN1_SIGNING
                };
                let kp = match encoding {
                    Encoding::Sec1 => EcdsaKeyPair::from_private_key_der(alg, der),
                    _ => EcdsaKeyPair::from_pkcs8(alg, der),
                }
                .map_err(rejected)?;
                let spki = spki_der(kp.public_key().as_der(), source)?;
                (Pair::Ecdsa(kp), spki)
            }
            Algorithm::Ed25519 => {
                let kp = Ed25519KeyPair::from_pkcs8(der).map_err(rejected)?;
                let spki = spki_der(kp.public_key().as_der(), source)?;
                (Pair::Ed25519(kp), spki)
            }
        };
        let public_key = PublicKey::from_spki_der(&spki, algorithm)?;
        Ok(FileKey {
            algorithm,
            key_id,
            public_key,
            pair,
        })
    }
}

fn spki_der(
    der: Result<aws_lc_rs::encoding::PublicKeyX509Der<'_>, aws_lc_rs::error::Unspecified>,
    source: &str,
) -> Result<Vec<u8>, CryptoError> {
    der.map(|d| d.as_ref().to_vec())
        .map_err(|_| CryptoError::MalformedKey(format!("{source}: cannot encode its public key")))
}

/// Finds the first PEM block's label and says which private-key encoding it is, or why it cannot
/// be read (encrypted, a public key, an OpenSSH key, no PEM at all).
fn classify_pem(pem: &str, source: &str) -> Result<Encoding, CryptoError> {
    let Some(label) = pem
        .lines()
        .map(str::trim)
        .find_map(|l| l.strip_prefix("-----BEGIN ")?.strip_suffix("-----"))
    else {
        return Err(CryptoError::MalformedKey(format!(
            "{source} is not a PEM private key (no -----BEGIN PRIVATE KEY----- line)"
        )));
    };
    let encrypted_legacy = pem.lines().any(|l| {
        let l = l.trim();
        l.starts_with("Proc-Type:") && l.contains("ENCRYPTED")
    });
    match label {
        _ if encrypted_legacy => Err(CryptoError::MalformedKey(format!(
            "{source} is a passphrase-encrypted {label}; signet reads unencrypted PKCS#8 keys only \
             (decrypt with `openssl pkcs8 -topk8 -nocrypt`, or use a PKCS#11 token)"
        ))),
        "PRIVATE KEY" => Ok(Encoding::Pkcs8),
        "RSA PRIVATE KEY" => Ok(Encoding::Pkcs1),
        "EC PRIVATE KEY" => Ok(Encoding::Sec1),
        "ENCRYPTED PRIVATE KEY" => Err(CryptoError::MalformedKey(format!(
            "{source} is an encrypted PKCS#8 key (ENCRYPTED PRIVATE KEY); signet reads unencrypted PKCS#8 \
             keys only (decrypt with `openssl pkcs8 -nocrypt`, or use a PKCS#11 token)"
        ))),
        l if l.starts_with("ENCRYPTED ") => Err(CryptoError::MalformedKey(format!(
            "{source} is an encrypted key ({l}, as cosign writes them); signet reads unencrypted PKCS#8 keys \
             only (generate one with `signet keygen`, or use a PKCS#11 token)"
        ))),
        "PUBLIC KEY" | "RSA PUBLIC KEY" => Err(CryptoError::MalformedKey(format!(
            "{source} holds a public key ({label}); signing needs the private key"
        ))),
        "OPENSSH PRIVATE KEY" => Err(CryptoError::MalformedKey(format!(
            "{source} is an OpenSSH key; convert it with `ssh-keygen -p -m PKCS8 -f FILE` (that rewrites the file)"
        ))),
        other => Err(CryptoError::MalformedKey(format!(
            "{source} holds a PEM block labelled {other:?}, not a private key (expected PRIVATE KEY)"
        ))),
    }
}

/// The content of a `SEQUENCE { INTEGER version, ... }` after the version: how PKCS#8
/// PrivateKeyInfo and SEC 1 ECPrivateKey both begin.
fn after_version(encoded: &[u8]) -> Option<&[u8]> {
    let (der::TAG_SEQUENCE, body, _) = der::element(encoded)? else {
        return None;
    };
    let (der::TAG_INTEGER, _version, rest) = der::element(body)? else {
        return None;
    };
    Some(rest)
}

/// The key type a PKCS#8 PrivateKeyInfo declares in its algorithm identifier.
fn pkcs8_kind(pkcs8: &[u8]) -> KeyKind {
    let kind = || -> Option<KeyKind> {
        let (der::TAG_SEQUENCE, alg_id, _) = der::element(after_version(pkcs8)?)? else {
            return None;
        };
        der::algorithm_identifier_kind(alg_id)
    };
    kind().unwrap_or(KeyKind::Unknown)
}

/// The curve of a SEC 1 ECPrivateKey, when its optional `[0] parameters` names one.
fn sec1_kind(sec1: &[u8]) -> Option<KeyKind> {
    let (der::TAG_OCTET_STRING, _private, rest) = der::element(after_version(sec1)?)? else {
        return None;
    };
    match der::element(rest)? {
        (0xa0, params, _) => Some(der::curve_kind(params)),
        _ => None,
    }
}

impl SigningKey for FileKey {
    fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    fn key_id(&self) -> &str {
        &self.key_id
    }

    fn public_key(&self) -> &PublicKey {
        &self.public_key
    }

    fn sign(&self, payload: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let failed =
            |what: &str| CryptoError::SigningFailed(format!("{what} with key {:?}", self.key_id));
        match &self.pair {
            Pair::Rsa(kp) => {
                let encoding: &'static dyn lc::RsaEncoding = match self.algorithm {
                    Algorithm::RsaPssSha256 => &lc::RSA_PSS_SHA256,
                    _ => &lc::RSA_PKCS1_SHA256,
                };
                let mut sig = vec![0; kp.public_modulus_len()];
                kp.sign(encoding, &SystemRandom::new(), payload, &mut sig)
                    .map_err(|_| failed("RSA signing failed"))?;
                Ok(sig)
            }
            Pair::Ecdsa(kp) => kp
                .sign(&SystemRandom::new(), payload)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| failed("ECDSA signing failed")),
            Pair::Ed25519(kp) => Ok(kp.sign(payload).as_ref().to_vec()),
        }
    }

    /// ECDSA and Ed25519 sign in tens of microseconds: inline. RSA (a millisecond and more):
    /// on the blocking pool.
    fn sign_nonblocking<'a>(
        &'a self,
        payload: &'a [u8],
    ) -> Option<futures::future::BoxFuture<'a, Result<Vec<u8>, CryptoError>>> {
        match self.pair {
            Pair::Rsa(_) => None,
            Pair::Ecdsa(_) | Pair::Ed25519(_) => {
                Some(Box::pin(std::future::ready(self.sign(payload))))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::rsa::KeySize;

    fn pkcs8_pem(der: &[u8]) -> String {
        der::pem_encode("PRIVATE KEY", der)
    }

    fn rsa_pem(size: KeySize) -> String {
        let kp = RsaKeyPair::generate(size).unwrap();
        let doc: aws_lc_rs::encoding::Pkcs8V1Der = kp.as_der().unwrap();
        pkcs8_pem(doc.as_ref())
    }

    fn ec_pem(alg: &'static lc::EcdsaSigningAlgorithm) -> String {
        let doc = EcdsaKeyPair::generate_pkcs8(alg, &SystemRandom::new()).unwrap();
        pkcs8_pem(doc.as_ref())
    }

    fn ed25519_pem() -> String {
        let doc = Ed25519KeyPair::generate_pkcs8v1(&SystemRandom::new()).unwrap();
        pkcs8_pem(doc.as_ref())
    }

    fn round_trip(pem: &str, algorithm: Algorithm) {
        let key = FileKey::from_pem(pem, algorithm, "k").unwrap();
        assert_eq!(key.algorithm(), algorithm);
        assert_eq!(key.public_key().algorithm(), algorithm);
        for payload in [&b""[..], b"payload", &[0xab; 5000]] {
            let sig = key.sign(payload).unwrap();
            key.public_key().verify(payload, &sig).unwrap();
            // The public key also round-trips through its PEM form.
            PublicKey::from_pem(&key.public_key().to_pem(), algorithm)
                .unwrap()
                .verify(payload, &sig)
                .unwrap();
        }
        let sig = key.sign(b"payload").unwrap();
        assert_eq!(
            key.public_key().verify(b"payloaD", &sig),
            Err(CryptoError::BadSignature)
        );
    }

    #[test]
    fn rsa_signatures_verify_for_each_size_and_padding() {
        for size in [KeySize::Rsa2048, KeySize::Rsa3072, KeySize::Rsa4096] {
            let pem = rsa_pem(size);
            round_trip(&pem, Algorithm::RsaPssSha256);
            round_trip(&pem, Algorithm::RsaPkcs1Sha256);
        }
    }

    #[test]
    fn rsa_signature_length_is_the_modulus_length_and_paddings_differ() {
        let pem = rsa_pem(KeySize::Rsa3072);
        let pss = FileKey::from_pem(&pem, Algorithm::RsaPssSha256, "k").unwrap();
        let pkcs1 = FileKey::from_pem(&pem, Algorithm::RsaPkcs1Sha256, "k").unwrap();
        let sig = pss.sign(b"m").unwrap();
        assert_eq!(sig.len(), 384);
        assert_eq!(
            pkcs1.public_key().verify(b"m", &sig),
            Err(CryptoError::BadSignature)
        );
        // PKCS#1 v1.5 is deterministic, PSS is not.
        assert_eq!(pkcs1.sign(b"m").unwrap(), pkcs1.sign(b"m").unwrap());
        assert_ne!(pss.sign(b"m").unwrap(), pss.sign(b"m").unwrap());
    }

    #[test]
    fn ecdsa_and_ed25519_signatures_verify() {
        round_trip(
            &ec_pem(&lc::ECDSA_P256_SHA256_ASN1_SIGNING),
            Algorithm::EcdsaP256Sha256,
        );
        round_trip(
            &ec_pem(&lc::ECDSA_P384_SHA384_ASN1_SIGNING),
            Algorithm::EcdsaP384Sha384,
        );
        round_trip(&ed25519_pem(), Algorithm::Ed25519);
        // A PKCS#8 v2 Ed25519 key (with the public key inside) reads too.
        let v2 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
        round_trip(&pkcs8_pem(v2.as_ref()), Algorithm::Ed25519);
    }

    #[test]
    fn fast_algorithms_sign_inline_and_rsa_is_left_to_the_blocking_pool() {
        for (pem, algorithm) in [
            (
                ec_pem(&lc::ECDSA_P256_SHA256_ASN1_SIGNING),
                Algorithm::EcdsaP256Sha256,
            ),
            (ed25519_pem(), Algorithm::Ed25519),
        ] {
            let key = FileKey::from_pem(&pem, algorithm, "k").unwrap();
            let signing = key.sign_nonblocking(b"m").expect("signs inline");
            let signature = futures::executor::block_on(signing).unwrap();
            key.public_key().verify(b"m", &signature).unwrap();
        }
        let rsa =
            FileKey::from_pem(&rsa_pem(KeySize::Rsa2048), Algorithm::RsaPssSha256, "k").unwrap();
        assert!(rsa.sign_nonblocking(b"m").is_none());
    }

    #[test]
    fn ecdsa_signatures_are_der() {
        let key = FileKey::from_pem(
            &ec_pem(&lc::ECDSA_P256_SHA256_ASN1_SIGNING),
            Algorithm::EcdsaP256Sha256,
            "k",
        )
        .unwrap();
        let sig = key.sign(b"m").unwrap();
        assert_eq!(sig[0], 0x30);
        assert_eq!(usize::from(sig[1]) + 2, sig.len());
    }

    #[test]
    fn legacy_pkcs1_and_sec1_keys_read() {
        let kp = RsaKeyPair::generate(KeySize::Rsa2048).unwrap();
        let pkcs1: aws_lc_rs::encoding::Pkcs8V1Der = kp.as_der().unwrap();
        // Extract the RSAPrivateKey from the PKCS#8 wrapper (the OCTET STRING after the AlgorithmIdentifier).
        let (_, body, _) = der::element(pkcs1.as_ref()).unwrap();
        let (_, _, rest) = der::element(body).unwrap();
        let (_, _, rest) = der::element(rest).unwrap();
        let (_, rsa_private_key, _) = der::element(rest).unwrap();
        round_trip(
            &der::pem_encode("RSA PRIVATE KEY", rsa_private_key),
            Algorithm::RsaPkcs1Sha256,
        );

        let ec = EcdsaKeyPair::generate(&lc::ECDSA_P256_SHA256_ASN1_SIGNING).unwrap();
        let sec1: aws_lc_rs::encoding::EcPrivateKeyRfc5915Der = ec.private_key().as_der().unwrap();
        let pem = der::pem_encode("EC PRIVATE KEY", sec1.as_ref());
        round_trip(&pem, Algorithm::EcdsaP256Sha256);
        let err = FileKey::from_pem(&pem, Algorithm::EcdsaP384Sha384, "k").unwrap_err();
        assert!(err.to_string().contains("EC P-256"), "{err}");
    }

    #[test]
    fn key_type_must_fit_the_algorithm() {
        let ec = ec_pem(&lc::ECDSA_P256_SHA256_ASN1_SIGNING);
        let err = FileKey::from_pem(&ec, Algorithm::RsaPssSha256, "k").unwrap_err();
        assert_eq!(
            err.to_string(),
            "private key holds an EC P-256 key, which cannot sign RSA_PSS_SHA_256"
        );
        let err = FileKey::from_pem(&rsa_pem(KeySize::Rsa2048), Algorithm::EcdsaP256Sha256, "k")
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "private key holds an RSA key, which cannot sign ECDSA_P256_SHA_256"
        );
        let err = FileKey::from_pem(&ed25519_pem(), Algorithm::EcdsaP384Sha384, "k").unwrap_err();
        assert!(
            err.to_string().contains("Ed25519") && err.to_string().contains("ECDSA_P384_SHA_384")
        );
    }

    #[test]
    fn unreadable_files_say_why_without_key_material() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: &[u8]| {
            let p = dir.path().join(name);
            write_private(&p, text);
            p
        };
        let ec = ec_pem(&lc::ECDSA_P256_SHA256_ASN1_SIGNING);
        let b64_line = ec.lines().nth(1).unwrap().to_string();
        let cases: Vec<(std::path::PathBuf, &str)> = vec![
            (
                write("enc.pem", b"-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIB\n-----END ENCRYPTED PRIVATE KEY-----\n"),
                "encrypted PKCS#8",
            ),
            (
                write(
                    "cosign.key",
                    b"-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\neyJr\n-----END ENCRYPTED SIGSTORE PRIVATE KEY-----\n",
                ),
                "encrypted key",
            ),
            (
                write(
                    "legacy.pem",
                    b"-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,00\n\nMIIB\n-----END RSA PRIVATE KEY-----\n",
                ),
                "passphrase-encrypted",
            ),
            (write("plain.txt", b"hello"), "not a PEM private key"),
            (write("bin.der", &[0x30, 0x82, 0xff, 0xfe, 0x80]), "not a PEM file"),
            (write("pub.pem", public_pem_of(&ec).as_bytes()), "holds a public key"),
            (
                write("broken.pem", format!("-----BEGIN PRIVATE KEY-----\n{b64_line}\n").as_bytes()),
                "truncated",
            ),
            (
                write("garbage.pem", der::pem_encode("PRIVATE KEY", b"\x30\x03\x02\x01\x00").as_bytes()),
                "a key of an unknown type",
            ),
        ];
        for (path, expected) in cases {
            let err = FileKey::open(&path, Algorithm::EcdsaP256Sha256, None)
                .unwrap_err()
                .to_string();
            assert!(err.contains(expected), "{}: {err}", path.display());
            assert!(err.contains(&path.display().to_string()), "{err}");
            assert!(!err.contains('\n'), "{err}");
            assert!(
                !err.contains(&b64_line) && !err.contains("MIIB") && !err.contains("eyJr"),
                "{err}"
            );
        }
    }

    /// Writes a key file with mode 0600, as `signet keygen` does.
    fn write_private(path: &Path, bytes: &[u8]) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::write(path, bytes).unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }

    /// Review item 11b: a key file others can read is refused with one line saying how to fix it.
    #[test]
    fn key_files_open_to_others_are_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("release.pem");
        write_private(&path, ed25519_pem().as_bytes());
        for (mode, how) in [
            (0o644, "readable"),
            (0o640, "readable"),
            (0o604, "readable"),
            (0o620, "writable"),
        ] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            let err = FileKey::open(&path, Algorithm::Ed25519, None)
                .unwrap_err()
                .to_string();
            let p = path.display();
            assert_eq!(
                err,
                format!("key file {p} is {how} by others (mode {mode:04o}): chmod 600 {p}"),
            );
        }
        for mode in [0o600, 0o400] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            assert!(
                FileKey::open(&path, Algorithm::Ed25519, None).is_ok(),
                "{mode:o}"
            );
        }
    }

    fn public_pem_of(private_pem: &str) -> String {
        FileKey::from_pem(private_pem, Algorithm::EcdsaP256Sha256, "k")
            .unwrap()
            .public_key()
            .to_pem()
    }

    #[test]
    fn key_id_defaults_to_the_file_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("release.pem");
        write_private(&path, ed25519_pem().as_bytes());
        let key = FileKey::open(&path, Algorithm::Ed25519, None).unwrap();
        assert_eq!(key.key_id(), "release.pem");
        let key = FileKey::open(&path, Algorithm::Ed25519, Some("kms-1")).unwrap();
        assert_eq!(key.key_id(), "kms-1");
        let debug = format!("{key:?}");
        assert!(
            debug.contains("kms-1") && debug.contains("sha256:"),
            "{debug}"
        );
    }
}
