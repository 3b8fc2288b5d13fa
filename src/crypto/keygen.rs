//! Key generation for `signet keygen`: a PKCS#8 PEM private key and an SPKI PEM public key, written
//! as `PREFIX.key` (mode 0600, created with that mode, never overwriting) and `PREFIX.pub`.

use std::ffi::OsString;
use std::fmt;
use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{self as lc, EcdsaKeyPair, Ed25519KeyPair, RsaKeyPair};

use super::der;
use super::file_key::FileKey;
use super::signing::SigningKey;
use super::{Algorithm, CryptoError, PublicKey};

/// The RSA key size when none is asked for.
pub const DEFAULT_RSA_BITS: u32 = 3072;

/// A freshly generated key pair. `Debug` shows only the public side.
pub struct GeneratedKey {
    algorithm: Algorithm,
    private_key_pem: String,
    public_key: PublicKey,
}

impl fmt::Debug for GeneratedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GeneratedKey")
            .field("algorithm", &self.algorithm)
            .field("fingerprint", &self.public_key.fingerprint())
            .finish_non_exhaustive()
    }
}

impl Drop for GeneratedKey {
    fn drop(&mut self) {
        // Best effort: do not leave the private key text behind in freed memory.
        let mut bytes = std::mem::take(&mut self.private_key_pem).into_bytes();
        bytes.fill(0);
    }
}

impl GeneratedKey {
    /// The algorithm the key was generated for.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The private key, PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`).
    pub fn private_key_pem(&self) -> &str {
        &self.private_key_pem
    }

    /// The public key, SPKI PEM (`-----BEGIN PUBLIC KEY-----`).
    pub fn public_key_pem(&self) -> String {
        self.public_key.to_pem()
    }

    /// The public key, parsed.
    pub fn public_key(&self) -> &PublicKey {
        &self.public_key
    }
}

/// Generates a key pair for `algorithm`. `bits` chooses the RSA size (2048, 3072 or 4096; default
/// 3072) and must be absent for the other algorithms.
pub fn generate_key_pair(
    algorithm: Algorithm,
    bits: Option<u32>,
) -> Result<GeneratedKey, CryptoError> {
    if !algorithm.is_rsa()
        && let Some(bits) = bits
    {
        return Err(CryptoError::KeyStore(format!(
            "a key size ({bits} bits) applies to RSA keys only, not to {algorithm}"
        )));
    }
    let failed = || CryptoError::KeyStore(format!("cannot generate a {algorithm} key"));
    let mut pkcs8: Vec<u8> = match algorithm {
        Algorithm::RsaPssSha256 | Algorithm::RsaPkcs1Sha256 => {
            let size = match bits.unwrap_or(DEFAULT_RSA_BITS) {
                2048 => KeySize::Rsa2048,
                3072 => KeySize::Rsa3072,
                4096 => KeySize::Rsa4096,
                other => {
                    return Err(CryptoError::KeyStore(format!(
                        "RSA key size {other} is not offered (choose 2048, 3072 or 4096)"
                    )));
                }
            };
            let kp = RsaKeyPair::generate(size).map_err(|_| failed())?;
            let doc: Pkcs8V1Der = kp.as_der().map_err(|_| failed())?;
            doc.as_ref().to_vec()
        }
        Algorithm::EcdsaP256Sha256 => {
            EcdsaKeyPair::generate_pkcs8(&lc::ECDSA_P256_SHA256_ASN1_SIGNING, &SystemRandom::new())
                .map_err(|_| failed())?
                .as_ref()
                .to_vec()
        }
        Algorithm::EcdsaP384Sha384 => {
            EcdsaKeyPair::generate_pkcs8(&lc::ECDSA_P384_SHA384_ASN1_SIGNING, &SystemRandom::new())
                .map_err(|_| failed())?
                .as_ref()
                .to_vec()
        }
        // PKCS#8 v1 (no embedded public key): the form `openssl genpkey` writes and every reader takes.
        Algorithm::Ed25519 => Ed25519KeyPair::generate_pkcs8v1(&SystemRandom::new())
            .map_err(|_| failed())?
            .as_ref()
            .to_vec(),
    };
    let private_key_pem = der::pem_encode("PRIVATE KEY", &pkcs8);
    pkcs8.fill(0);
    // Reading the key back gives the public key and proves the PEM is what `FileKey` accepts.
    let key = FileKey::from_pem(&private_key_pem, algorithm, "generated")?;
    Ok(GeneratedKey {
        algorithm,
        public_key: key.public_key().clone(),
        private_key_pem,
    })
}

fn with_suffix(prefix: &Path, suffix: &str) -> PathBuf {
    let mut name: OsString = prefix.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// Writes `PREFIX.key` (private, created with mode 0600) and `PREFIX.pub` (public, 0644), refusing
/// to replace either if it exists. Returns both paths.
pub fn write_key_pair(
    prefix: &Path,
    key: &GeneratedKey,
) -> Result<(PathBuf, PathBuf), CryptoError> {
    if prefix.as_os_str().is_empty() || prefix.as_os_str().to_string_lossy().ends_with('/') {
        return Err(CryptoError::KeyStore(format!(
            "output prefix {:?} names no file (expected e.g. keys/release, giving keys/release.key and .pub)",
            prefix.display().to_string()
        )));
    }
    let private_path = with_suffix(prefix, ".key");
    let public_path = with_suffix(prefix, ".pub");
    for path in [&private_path, &public_path] {
        if path.symlink_metadata().is_ok() {
            return Err(CryptoError::KeyStore(format!(
                "refusing to overwrite existing file {}",
                path.display()
            )));
        }
    }
    let create = |path: &Path, mode: u32, text: &str| -> std::io::Result<()> {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(path)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()
    };
    let io_error = |path: &Path, e: std::io::Error| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            CryptoError::KeyStore(format!(
                "refusing to overwrite existing file {}",
                path.display()
            ))
        } else {
            CryptoError::KeyStore(format!("cannot write {}: {e}", path.display()))
        }
    };
    create(&private_path, 0o600, key.private_key_pem()).map_err(|e| {
        if e.kind() != std::io::ErrorKind::AlreadyExists {
            // Do not leave a partial private key behind.
            let _ = std::fs::remove_file(&private_path);
        }
        io_error(&private_path, e)
    })?;
    if let Err(e) = create(&public_path, 0o644, &key.public_key_pem()) {
        if e.kind() != std::io::ErrorKind::AlreadyExists {
            let _ = std::fs::remove_file(&public_path);
        }
        let _ = std::fs::remove_file(&private_path);
        return Err(io_error(&public_path, e));
    }
    Ok((private_path, public_path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn ec_and_ed25519_keys_decide_their_algorithm_rsa_keys_do_not() {
        let dir = tempfile::tempdir().unwrap();
        for algorithm in Algorithm::ALL {
            let key =
                generate_key_pair(algorithm, Some(2048).filter(|_| algorithm.is_rsa())).unwrap();
            let public = PublicKey::from_pem_inferred(&key.public_key_pem(), None, "public key k");
            let prefix = dir.path().join(algorithm.as_str());
            let (private, _) = write_key_pair(&prefix, &key).unwrap();
            let opened = FileKey::open_inferred(&private, None, None);
            if algorithm.is_rsa() {
                let err = public.unwrap_err().to_string();
                assert!(
                    err.contains("an RSA key")
                        && err.contains("RSA_PSS_SHA_256")
                        && err.contains("RSA_PKCS1_SHA_256"),
                    "{err}"
                );
                let err = opened.unwrap_err().to_string();
                assert!(
                    err.contains(&private.display().to_string()) && err.contains("--algorithm"),
                    "{err}"
                );
                // Said explicitly, it is used as said.
                let said = FileKey::open_inferred(&private, Some(algorithm), None).unwrap();
                assert_eq!(said.algorithm(), algorithm);
            } else {
                assert_eq!(public.unwrap().algorithm(), algorithm);
                assert_eq!(opened.unwrap().algorithm(), algorithm);
            }
        }
        // An algorithm said that the key cannot do is still refused.
        let ec = generate_key_pair(Algorithm::EcdsaP256Sha256, None).unwrap();
        assert!(
            PublicKey::from_pem_inferred(&ec.public_key_pem(), Some(Algorithm::Ed25519), "k")
                .is_err()
        );
    }

    #[test]
    fn every_algorithm_generates_a_key_that_signs_and_verifies() {
        for algorithm in Algorithm::ALL {
            let key = generate_key_pair(algorithm, None).unwrap();
            assert_eq!(key.algorithm(), algorithm);
            assert!(
                key.private_key_pem()
                    .starts_with("-----BEGIN PRIVATE KEY-----\n")
            );
            assert!(
                key.public_key_pem()
                    .starts_with("-----BEGIN PUBLIC KEY-----\n")
            );
            let signer = FileKey::from_pem(key.private_key_pem(), algorithm, "k").unwrap();
            let public = PublicKey::from_pem(&key.public_key_pem(), algorithm).unwrap();
            assert_eq!(&public, key.public_key());
            let sig = signer.sign(b"payload").unwrap();
            public.verify(b"payload", &sig).unwrap();
            let debug = format!("{key:?}");
            assert!(!debug.contains("PRIVATE"), "{debug}");
        }
    }

    #[test]
    fn rsa_sizes() {
        let signature_len = |bits| {
            let key = generate_key_pair(Algorithm::RsaPkcs1Sha256, bits).unwrap();
            FileKey::from_pem(key.private_key_pem(), Algorithm::RsaPkcs1Sha256, "k")
                .unwrap()
                .sign(b"m")
                .unwrap()
                .len()
        };
        assert_eq!(signature_len(None), 384);
        assert_eq!(signature_len(Some(2048)), 256);
        assert_eq!(signature_len(Some(4096)), 512);
        let err = generate_key_pair(Algorithm::RsaPssSha256, Some(1024)).unwrap_err();
        assert!(err.to_string().contains("1024"), "{err}");
        let err = generate_key_pair(Algorithm::EcdsaP256Sha256, Some(2048)).unwrap_err();
        assert!(err.to_string().contains("RSA keys only"), "{err}");
    }

    #[test]
    fn writes_private_key_0600_and_never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        let prefix = dir.path().join("release.v1");
        let key = generate_key_pair(Algorithm::EcdsaP256Sha256, None).unwrap();
        let (private, public) = write_key_pair(&prefix, &key).unwrap();
        assert_eq!(private, dir.path().join("release.v1.key"));
        assert_eq!(public, dir.path().join("release.v1.pub"));
        assert_eq!(
            std::fs::metadata(&private).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(
            std::fs::read_to_string(&private).unwrap(),
            key.private_key_pem()
        );
        assert_eq!(
            std::fs::read_to_string(&public).unwrap(),
            key.public_key_pem()
        );
        let opened = FileKey::open(&private, Algorithm::EcdsaP256Sha256, None).unwrap();
        assert_eq!(opened.key_id(), "release.v1.key");
        assert_eq!(opened.public_key(), key.public_key());

        let other = generate_key_pair(Algorithm::EcdsaP256Sha256, None).unwrap();
        let err = write_key_pair(&prefix, &other).unwrap_err();
        assert!(err.to_string().contains("refusing to overwrite"), "{err}");
        assert_eq!(
            std::fs::read_to_string(&private).unwrap(),
            key.private_key_pem()
        );

        // An existing .pub alone also stops the write, and no .key is left behind.
        let prefix2 = dir.path().join("second");
        std::fs::write(dir.path().join("second.pub"), "x").unwrap();
        let err = write_key_pair(&prefix2, &other).unwrap_err();
        assert!(err.to_string().contains("second.pub"), "{err}");
        assert!(!dir.path().join("second.key").exists());

        let err = write_key_pair(&dir.path().join("missing-dir/k"), &other).unwrap_err();
        assert!(err.to_string().contains("missing-dir"), "{err}");
    }
}
