//! For the Notation signing tests: a test PKI (root, intermediate, code-signing leaves for any
//! public key, made with rcgen), Attestor YAML holding certificates, counting the Notation
//! signatures attached to a digest, and attaching a crafted signature manifest and envelope the
//! way `notation sign` does on a registry without the referrers API (blob, manifest by digest,
//! an entry in the fallback index `sha256-<hex>`).

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PublicKeyData, SignatureAlgorithm, date_time_ymd,
};
use rustls_pki_types::SubjectPublicKeyInfoDer;
use rustls_pki_types::pem::PemObject;
use serde_json::json;
use signet::reference::ImageRef;
use signet::registry::{RegistryClient, SignatureStore, sha256_digest};
use signet::signature::SignatureFormat;
use signet::signature::notation::parse_signature_manifest;

use super::bundle::{OCI_INDEX, OCI_MANIFEST, fallback_entries, fallback_tag};

/// The current year (certificate validity is set around it).
pub fn this_year() -> i32 {
    i32::from(jiff::Zoned::now().year())
}

fn name(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CountryName, "US");
    dn.push(DnType::OrganizationName, "acme");
    dn.push(DnType::CommonName, cn);
    dn
}

/// A leaf meeting Notary's rules: keyUsage digitalSignature, EKU codeSigning, valid from last
/// year to in two years. Tests break one rule at a time by changing it.
pub fn leaf_params(cn: &str) -> CertificateParams {
    let year = this_year();
    let mut params = CertificateParams::default();
    params.distinguished_name = name(cn);
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::CodeSigning];
    params.not_before = date_time_ymd(year - 1, 1, 1);
    params.not_after = date_time_ymd(year + 2, 1, 1);
    params
}

fn ca_params(cn: &str, path_len: u8) -> CertificateParams {
    let year = this_year();
    let mut params = CertificateParams::default();
    params.distinguished_name = name(cn);
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(path_len));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    // From five years back: a leaf that expired years ago is still inside its CAs' validity.
    params.not_before = date_time_ymd(year - 5, 1, 1);
    params.not_after = date_time_ymd(year + 10, 1, 1);
    params
}

/// A public key as rcgen wants it to issue a certificate for it: from a PEM
/// SubjectPublicKeyInfo (what `signet keygen` writes as PREFIX.pub, also for token keys).
pub struct ForeignKey {
    bits: Vec<u8>,
    alg: &'static SignatureAlgorithm,
}

/// DER: (tag, content, rest).
fn der_element(bytes: &[u8]) -> (u8, &[u8], &[u8]) {
    let tag = bytes[0];
    let (len, header) = match bytes[1] {
        n if n < 0x80 => (usize::from(n), 2),
        0x81 => (usize::from(bytes[2]), 3),
        0x82 => ((usize::from(bytes[2]) << 8) | usize::from(bytes[3]), 4),
        other => panic!("DER length form {other:#x} not expected in a test key"),
    };
    (tag, &bytes[header..header + len], &bytes[header + len..])
}

impl ForeignKey {
    /// From a `PUBLIC KEY` PEM of an RSA or ECDSA P-256 key.
    pub fn from_pem(pem: &str) -> Self {
        let spki = SubjectPublicKeyInfoDer::from_pem_slice(pem.as_bytes()).expect("SPKI PEM");
        let (_, body, _) = der_element(spki.as_ref());
        let (_, algorithm, rest) = der_element(body);
        let (tag, bit_string, _) = der_element(rest);
        assert_eq!(tag, 0x03, "BIT STRING");
        // OID 1.2.840.113549.1.1.1 (rsaEncryption) vs id-ecPublicKey.
        let rsa = algorithm
            .windows(9)
            .any(|w| w == [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01]);
        ForeignKey {
            bits: bit_string[1..].to_vec(),
            alg: if rsa {
                &rcgen::PKCS_RSA_SHA256
            } else {
                &rcgen::PKCS_ECDSA_P256_SHA256
            },
        }
    }
}

impl PublicKeyData for ForeignKey {
    fn der_bytes(&self) -> &[u8] {
        &self.bits
    }

    fn algorithm(&self) -> &'static SignatureAlgorithm {
        self.alg
    }
}

/// A root CA and an intermediate CA (ECDSA P-256) issuing code-signing leaves.
pub struct Pki {
    /// The root, PEM: the Attestor's trust anchor.
    pub root_pem: String,
    intermediate_pem: String,
    intermediate: Issuer<'static, KeyPair>,
}

impl Pki {
    pub fn new(cn: &str) -> Self {
        let root_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let root_params = ca_params(&format!("{cn} root"), 1);
        let root = root_params.self_signed(&root_key).unwrap();
        let root_issuer = Issuer::new(root_params, root_key);
        let int_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let int_params = ca_params(&format!("{cn} intermediate"), 0);
        let intermediate = int_params.signed_by(&int_key, &root_issuer).unwrap();
        Pki {
            root_pem: root.pem(),
            intermediate_pem: intermediate.pem(),
            intermediate: Issuer::new(int_params, int_key),
        }
    }

    /// The leaf alone, PEM, for the public key in `public_pem`, issued by the intermediate.
    pub fn leaf_pem(&self, public_pem: &str, params: CertificateParams) -> String {
        let key = ForeignKey::from_pem(public_pem);
        params.signed_by(&key, &self.intermediate).unwrap().pem()
    }

    /// A chain of 3, PEM, leaf first: leaf (for `public_pem`), intermediate, root.
    pub fn chain_pem(&self, public_pem: &str, params: CertificateParams) -> String {
        format!(
            "{}{}{}",
            self.leaf_pem(public_pem, params),
            self.intermediate_pem,
            self.root_pem
        )
    }
}

fn indent(pem: &str) -> String {
    pem.lines().map(|l| format!("      {l}\n")).collect()
}

/// An Attestor document trusting the certificates `pem` (roots or self-signed leaves).
pub fn certificate_attestor_yaml(name: &str, pem: &str) -> String {
    format!(
        "apiVersion: signet.dev/v1alpha1\nkind: Attestor\nmetadata:\n  name: {name}\nspec:\n  keys:\n  \
         - id: {name}-anchor\n    certificates: |\n{}",
        indent(pem)
    )
}

/// A `Default` ClusterVerificationPolicy over `images` needing one of `attestors`.
pub fn policy_yaml(name: &str, images: &str, attestors: &[&str]) -> String {
    format!(
        "apiVersion: signet.dev/v1alpha1\nkind: ClusterVerificationPolicy\nmetadata:\n  name: {name}\n\
         spec:\n  images: [\"{images}\"]\n  attestors: [{}]\n  required: 1\n  signatureType: Default\n",
        attestors.join(", ")
    )
}

/// The signature manifests of the Notation signatures attached to `digest`, as the webhook's
/// discovery reads them (referrers, else the fallback index).
pub async fn notation_manifests(image: &ImageRef, digest: &str) -> Vec<Vec<u8>> {
    let store = SignatureStore::new(super::webhook::registry_client());
    store
        .fetch_signatures(image, digest)
        .await
        .unwrap()
        .signatures
        .into_iter()
        .filter(|s| s.format == SignatureFormat::Notation)
        .filter_map(|s| s.notation.map(|n| n.manifest))
        .collect()
}

/// Checks that `manifest` is written as `notation sign` writes it, for `digest`, with an
/// envelope layer of `layer_media_type`.
pub fn assert_notation_manifest(manifest: &[u8], digest: &str, layer_media_type: &str) {
    let doc: serde_json::Value = serde_json::from_slice(manifest).unwrap();
    assert_eq!(doc["mediaType"], OCI_MANIFEST, "{doc}");
    assert_eq!(
        doc["artifactType"], "application/vnd.cncf.notary.signature",
        "{doc}"
    );
    assert_eq!(
        doc["config"]["mediaType"], "application/vnd.oci.empty.v1+json",
        "{doc}"
    );
    assert_eq!(doc["config"]["size"], 2, "{doc}");
    assert_eq!(doc["layers"].as_array().map(Vec::len), Some(1), "{doc}");
    assert_eq!(doc["layers"][0]["mediaType"], layer_media_type, "{doc}");
    assert_eq!(doc["subject"]["digest"], digest, "{doc}");
    let thumbprints = doc["annotations"]["io.cncf.notary.x509chain.thumbprint#S256"]
        .as_str()
        .unwrap_or_else(|| panic!("no thumbprint annotation: {doc}"));
    let list: Vec<String> = serde_json::from_str(thumbprints).unwrap();
    assert!(
        !list.is_empty() && list.iter().all(|t| t.len() == 64),
        "{thumbprints}"
    );
    parse_signature_manifest(manifest).unwrap();
}

/// Attaches a crafted Notation signature (`envelope` and its `manifest`) to `digest`: the blobs,
/// the manifest by digest (the image's tag keeps naming the image), and an entry in the fallback
/// index. Returns the envelope blob's digest.
pub async fn attach_crafted(
    client: &RegistryClient,
    image: &ImageRef,
    digest: &str,
    envelope: &[u8],
    manifest: &[u8],
) -> String {
    let repo = image.with_tag("latest");
    client.push_blob(&repo, b"{}").await.expect("empty config");
    let envelope_digest = client.push_blob(&repo, envelope).await.expect("envelope");
    let manifest_digest = sha256_digest(manifest);
    let by_digest = ImageRef::from_parts(
        image.registry(),
        image.repository(),
        None,
        Some(&manifest_digest),
    )
    .unwrap();
    client
        .push_manifest(&by_digest, manifest, OCI_MANIFEST)
        .await
        .expect("signature manifest");
    let mut entries = fallback_entries(client, image, digest).await;
    entries.push(json!({
        "mediaType": OCI_MANIFEST,
        "digest": manifest_digest,
        "size": manifest.len(),
        "artifactType": "application/vnd.cncf.notary.signature",
    }));
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": entries,
    }))
    .unwrap();
    client
        .push_manifest(&image.with_tag(&fallback_tag(digest)), &index, OCI_INDEX)
        .await
        .expect("fallback index");
    envelope_digest
}

/// A Notation signer: an ECDSA P-256 key and its self-signed code-signing certificate (its own
/// trust anchor).
pub struct SelfSignedNotary {
    pub key: signet::crypto::FileKey,
    pub certificate_pem: String,
}

impl SelfSignedNotary {
    /// A new key and a certificate for `subject` (`CN=...,O=...,C=...`), valid two years.
    pub fn new(subject: &str) -> Self {
        use signet::crypto::{Algorithm, FileKey, generate_key_pair};
        let pair = generate_key_pair(Algorithm::EcdsaP256Sha256, None).unwrap();
        let now = jiff::Timestamp::now().as_second();
        let certificate_pem = signet::crypto::x509::self_signed_code_signing_certificate(
            pair.private_key_pem(),
            Algorithm::EcdsaP256Sha256,
            subject,
            now,
            2,
        )
        .unwrap();
        let key =
            FileKey::from_pem(pair.private_key_pem(), Algorithm::EcdsaP256Sha256, "test").unwrap();
        SelfSignedNotary {
            key,
            certificate_pem,
        }
    }

    /// Signs `image`@`digest` (JWS, binding `image`'s tag when `bind_tag`) and attaches the
    /// signature as `notation sign` does on a registry without the referrers API; returns the
    /// envelope blob's digest.
    pub async fn attach(
        &self,
        client: &RegistryClient,
        image: &ImageRef,
        digest: &str,
        bind_tag: bool,
    ) -> String {
        use signet::signature::notation::{
            EnvelopeFormat, REFERENCE_ANNOTATION, TargetArtifact, sign_notation,
        };
        let subject = client
            .fetch_manifest(&image.with_digest(digest))
            .await
            .unwrap()
            .expect("subject exists");
        let mut annotations = std::collections::BTreeMap::new();
        if bind_tag {
            annotations.insert(REFERENCE_ANNOTATION.to_string(), image.to_string());
        }
        let target = TargetArtifact {
            media_type: subject.media_type.clone(),
            digest: digest.to_string(),
            size: subject.bytes.len() as u64,
            annotations,
        };
        let chain =
            signet::crypto::x509::Certificate::from_pem_bundle(&self.certificate_pem).unwrap();
        let now = jiff::Timestamp::now().as_second();
        let signed =
            sign_notation(&self.key, &chain, &target, EnvelopeFormat::Jws, now, None).unwrap();
        attach_crafted(client, image, digest, &signed.envelope, &signed.manifest).await
    }
}
