//! Compiling resources into a [`Snapshot`]: keys parsed once, globs compiled and indexed,
//! attestor names resolved, selectors checked. Never fails: every problem becomes a not-Ready
//! status, and the object still governs what it matches (fail closed).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use kube::ResourceExt;

use super::index::{GlobSlot, PrefixIndex};
use super::matcher::{ImageGlob, ImageTexts};
use super::selector::NamespaceSelector;
use super::{
    Compiled, EngineOptions, NotReadyReason, ObjectKind, ObjectStatus, PolicyInputs, SpecProblem,
};
use crate::crd::{Attestor, AttestorKey, KeyStatus, Mode, PolicyRules};
use crate::crypto::PublicKey;
use crate::crypto::x509::{TrustStore, X509Error, parse_tsa_roots};
use crate::reference::{Glob, ImageRef};
use crate::signature::SignatureType;

/// An Attestor with its keys parsed.
#[derive(Clone, Debug)]
pub(crate) struct CompiledAttestor {
    pub(crate) name: String,
    pub(crate) keys: Vec<PublicKey>,
    /// Per key: the spec's `id`, else the fingerprint; shown in verdicts.
    pub(crate) key_labels: Vec<String>,
    /// The X.509 trust material of each `certificates` key (Notation signatures), parsed once
    /// and shared: what `signature::notation::verify_notation` takes.
    pub(crate) trust_stores: Vec<Arc<TrustStore>>,
    /// Per trust store: the spec's `id`, else the first anchor's subject; shown in verdicts.
    pub(crate) trust_labels: Vec<String>,
    /// Why the attestor cannot be used, in verdict words (`key kms-1 invalid`); `None` = Ready.
    pub(crate) unusable: Option<String>,
    /// The condition reason policies naming it inherit.
    pub(crate) reason: Option<NotReadyReason>,
}

/// One attestor a policy names, resolved.
#[derive(Clone, Debug)]
pub(crate) struct AttestorSlot {
    pub(crate) name: String,
    /// Position in the snapshot's attestors; `None` when no Attestor has this name.
    pub(crate) attestor: Option<usize>,
}

/// A VerificationPolicy or ClusterVerificationPolicy, compiled.
///
/// A policy that is not Ready still governs the images it matches and fails them (fail closed).
/// The one exception is a policy whose `images` globs are all invalid: it cannot match anything,
/// so it governs nothing; it is reported `InvalidSpec` and that is the only way a broken policy
/// can be let off.
#[derive(Clone, Debug)]
pub struct CompiledPolicy {
    kind: ObjectKind,
    namespace: Option<String>,
    name: String,
    /// `name` or `namespace/name`, built once: every verdict names its policies.
    display_name: String,
    /// Compiled `images`; an invalid glob is left out, so it governs nothing.
    images: Vec<ImageGlob>,
    /// Compiled `exclude`; an invalid glob is left out, so it excludes nothing.
    exclude: Vec<ImageGlob>,
    pub(crate) attestors: Vec<AttestorSlot>,
    required: usize,
    signature_type: SignatureType,
    mode: Mode,
    /// Cluster policies only; invalid selectors select everything.
    selector: NamespaceSelector,
    /// Problems of the policy itself (globs, selector, lists, `required`).
    own_problems: Vec<SpecProblem>,
    /// Problems with the attestors it names (missing, not Ready): verdicts show these per attestor.
    attestor_problems: Vec<SpecProblem>,
}

impl CompiledPolicy {
    /// `name` for a ClusterVerificationPolicy, `namespace/name` for a VerificationPolicy.
    pub fn display_name(&self) -> &str {
        &self.display_name
    }

    /// `metadata.name`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The namespace of a VerificationPolicy; `None` for a ClusterVerificationPolicy.
    pub fn namespace(&self) -> Option<&str> {
        self.namespace.as_deref()
    }

    /// VerificationPolicy or ClusterVerificationPolicy.
    pub fn kind(&self) -> ObjectKind {
        self.kind
    }

    /// Enforce (deny on failure) or DryRun (warn).
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// What a signature must bind besides the digest.
    pub fn signature_type(&self) -> SignatureType {
        self.signature_type
    }

    /// The distinct attestor names, in spec order.
    pub fn attestor_names(&self) -> impl Iterator<Item = &str> {
        self.attestors.iter().map(|a| a.name.as_str())
    }

    /// How many distinct attestors must have signed.
    pub fn required(&self) -> usize {
        self.required
    }

    /// Whether the policy compiled cleanly. A not-Ready policy denies what it matches (Enforce).
    pub fn is_ready(&self) -> bool {
        self.own_problems.is_empty() && self.attestor_problems.is_empty()
    }

    /// Every problem, the policy's own first.
    pub fn problems(&self) -> impl Iterator<Item = &SpecProblem> {
        self.own_problems.iter().chain(&self.attestor_problems)
    }

    /// The problems verdicts cannot show per attestor.
    pub(crate) fn own_problems(&self) -> &[SpecProblem] {
        &self.own_problems
    }

    fn governs(&self, texts: &ImageTexts, labels: Option<&BTreeMap<String, String>>) -> bool {
        self.selector.selects(labels) && !self.exclude.iter().any(|g| g.matches(texts))
    }
}

/// An immutable compiled view of every resource, shared behind an `Arc` by concurrent requests.
#[derive(Debug)]
pub struct Snapshot {
    generation: u64,
    options: EngineOptions,
    pub(crate) attestors: Vec<CompiledAttestor>,
    /// Cluster policies first, then namespaced ones; each group by namespace and name.
    pub(crate) policies: Vec<CompiledPolicy>,
    cluster_index: PrefixIndex,
    namespace_index: HashMap<String, PrefixIndex>,
    namespaces: BTreeMap<String, BTreeMap<String, String>>,
}

impl Snapshot {
    /// The generation passed to [`compile`]: caches key on it.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The flags the snapshot was compiled with.
    pub fn options(&self) -> EngineOptions {
        self.options
    }

    /// The Notation trust material of the Attestor `name`: one `(label, store)` per
    /// `certificates` key, for `signature::notation::verify_notation`. Empty when the Attestor
    /// is missing, not Ready, or has no certificate keys.
    pub fn notation_trust(&self, name: &str) -> Vec<(&str, &TrustStore)> {
        self.attestors
            .iter()
            .filter(|a| a.name == name && a.unusable.is_none())
            .flat_map(|a| {
                a.trust_labels
                    .iter()
                    .map(String::as_str)
                    .zip(a.trust_stores.iter().map(|s| s.as_ref()))
            })
            .collect()
    }

    /// The policies that govern `image` in `namespace`, in snapshot order. Empty means no
    /// registry look-up is needed (the no-match flag decides).
    pub fn matching_policies(&self, namespace: &str, image: &ImageRef) -> Vec<&CompiledPolicy> {
        self.matching_indices(namespace, image)
            .into_iter()
            .filter_map(|i| self.policies.get(i))
            .collect()
    }

    /// Whether the picture holds `namespace` (and so its labels). In cluster mode a namespace
    /// created a moment ago may not be there yet: its labels must then be read before any
    /// `namespaceSelector` is judged, or a pod in it would escape the selected policies.
    pub fn knows_namespace(&self, namespace: &str) -> bool {
        self.namespaces.contains_key(namespace)
    }

    /// The policies that govern `image` in `namespace`, with the picture's labels for it.
    pub fn governing(&self, namespace: &str, image: &ImageRef) -> Governing {
        self.governing_with(namespace, self.namespaces.get(namespace), image)
    }

    /// [`Snapshot::governing`] with `labels` read from elsewhere (the API) for a namespace the
    /// picture does not know yet.
    pub fn governing_in(
        &self,
        namespace: &str,
        labels: &BTreeMap<String, String>,
        image: &ImageRef,
    ) -> Governing {
        self.governing_with(namespace, Some(labels), image)
    }

    fn governing_with(
        &self,
        namespace: &str,
        labels: Option<&BTreeMap<String, String>>,
        image: &ImageRef,
    ) -> Governing {
        Governing {
            indices: self.matching_with(namespace, labels, image),
        }
    }

    pub(crate) fn matching_indices(&self, namespace: &str, image: &ImageRef) -> Vec<usize> {
        self.matching_with(namespace, self.namespaces.get(namespace), image)
    }

    fn matching_with(
        &self,
        namespace: &str,
        labels: Option<&BTreeMap<String, String>>,
        image: &ImageRef,
    ) -> Vec<usize> {
        let texts = ImageTexts::new(image);
        let mut found = Vec::new();
        let mut visit = |slot: GlobSlot| {
            let Some(glob) = self
                .policies
                .get(slot.policy)
                .and_then(|p| p.images.get(slot.glob))
            else {
                return; // the index is built from these vectors; nothing to skip in practice
            };
            if glob.matches(&texts) {
                found.push(slot.policy);
            }
        };
        self.cluster_index.candidates(texts.longest(), &mut visit);
        if let Some(index) = self.namespace_index.get(namespace) {
            index.candidates(texts.longest(), &mut visit);
        }
        found.sort_unstable();
        found.dedup();
        found.retain(|&i| {
            self.policies
                .get(i)
                .is_some_and(|p| p.governs(&texts, labels))
        });
        found
    }
}

/// The policies that govern one image in one namespace, from one snapshot: what
/// [`Snapshot::evaluate_governed`] judges. Empty means no registry look-up is needed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Governing {
    pub(crate) indices: Vec<usize>,
}

impl Governing {
    /// No policy governs the image (the no-match flag decides).
    pub fn is_empty(&self) -> bool {
        self.indices.is_empty()
    }
}

/// Compiles the inputs. Never fails: problems become not-Ready statuses (see the module docs),
/// one per object, in input order for attestors and snapshot order for policies.
pub fn compile(inputs: &PolicyInputs, generation: u64, options: EngineOptions) -> Compiled {
    let mut statuses = Vec::new();
    let attestors = compile_attestors(&inputs.attestors, &mut statuses);
    let by_name: HashMap<&str, usize> = attestors
        .iter()
        .enumerate()
        .rev() // the first of duplicate names wins; both are unusable anyway
        .map(|(i, a)| (a.name.as_str(), i))
        .collect();

    let mut sources: Vec<PolicySource<'_>> = Vec::new();
    for p in &inputs.cluster_policies {
        let (selector, problems) = match &p.spec.namespace_selector {
            None => (NamespaceSelector::all(), Vec::new()),
            Some(s) => match NamespaceSelector::compile(s) {
                Ok(selector) => (selector, Vec::new()),
                Err(problems) => (NamespaceSelector::all(), problems),
            },
        };
        sources.push(PolicySource {
            kind: ObjectKind::ClusterVerificationPolicy,
            namespace: None,
            name: p.name_any(),
            generation: p.metadata.generation,
            rules: p.spec.rules(),
            selector,
            problems,
        });
    }
    for p in &inputs.policies {
        let namespace = p.namespace().unwrap_or_default();
        let mut problems = Vec::new();
        if namespace.is_empty() {
            // It would govern no workload; say so rather than guess a namespace.
            problems.push(SpecProblem::invalid(
                "metadata.namespace",
                "missing: a VerificationPolicy governs its own namespace",
            ));
        }
        sources.push(PolicySource {
            kind: ObjectKind::VerificationPolicy,
            namespace: Some(namespace),
            name: p.name_any(),
            generation: p.metadata.generation,
            rules: p.spec.rules(),
            selector: NamespaceSelector::all(),
            problems,
        });
    }
    // Cluster policies first, then by namespace and name: verdicts list policies in this order.
    sources.sort_by(|a, b| {
        (a.namespace.is_some(), &a.namespace, &a.name).cmp(&(
            b.namespace.is_some(),
            &b.namespace,
            &b.name,
        ))
    });

    let mut policies = Vec::with_capacity(sources.len());
    let mut cluster_index = PrefixIndex::default();
    let mut namespace_index: HashMap<String, PrefixIndex> = HashMap::new();
    for source in sources {
        let generation = source.generation;
        let policy = compile_policy(source, &attestors, &by_name);
        let problems: Vec<SpecProblem> = policy.problems().cloned().collect();
        statuses.push(ObjectStatus::new(
            policy.kind,
            policy.namespace.clone(),
            policy.name.clone(),
            generation,
            &problems,
            Vec::new(),
        ));
        let position = policies.len();
        let index = match &policy.namespace {
            Some(ns) => namespace_index.entry(ns.clone()).or_default(),
            None => &mut cluster_index,
        };
        for (glob, image) in policy.images.iter().enumerate() {
            index.insert(
                image.prefix().to_string(),
                GlobSlot {
                    policy: position,
                    glob,
                },
            );
        }
        policies.push(policy);
    }

    Compiled {
        snapshot: Snapshot {
            generation,
            options,
            attestors,
            policies,
            cluster_index,
            namespace_index,
            namespaces: inputs.namespaces.clone(),
        },
        statuses,
    }
}

fn compile_attestors(
    inputs: &[Attestor],
    statuses: &mut Vec<ObjectStatus>,
) -> Vec<CompiledAttestor> {
    // The one clock read of compilation: an expired trust anchor makes its Attestor not Ready.
    // It is judged again at each recompilation; verification checks validity at its own time.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    let mut seen = HashSet::new();
    let duplicates: HashSet<String> = inputs
        .iter()
        .map(|a| a.name_any())
        .filter(|n| !seen.insert(n.clone()))
        .collect();
    let mut compiled: Vec<CompiledAttestor> = inputs
        .iter()
        .map(|attestor| {
            let name = attestor.name_any();
            let mut problems = Vec::new();
            let mut unusable = None;
            if duplicates.contains(&name) {
                problems.push(SpecProblem::invalid(
                    "metadata.name",
                    format!("{name:?} names more than one Attestor"),
                ));
                unusable = Some("attestor defined more than once".to_string());
            }
            if attestor.spec.keys.is_empty() {
                problems.push(SpecProblem::invalid(
                    "spec.keys",
                    "no keys: nothing can verify",
                ));
                unusable.get_or_insert_with(|| "attestor has no keys".to_string());
            }
            let mut compiled_keys = CompiledKeys::default();
            for (i, key) in attestor.spec.keys.iter().enumerate() {
                if let Err(problem) = compiled_keys.add(i, key, now) {
                    problems.push(problem);
                    let label = key
                        .id
                        .clone()
                        .filter(|id| !id.is_empty())
                        .unwrap_or_else(|| format!("spec.keys[{i}]"));
                    unusable.get_or_insert_with(|| format!("key {label} invalid"));
                }
            }
            let CompiledKeys {
                keys,
                key_labels,
                trust_stores,
                trust_labels,
                statuses: key_statuses,
            } = compiled_keys;
            statuses.push(ObjectStatus::new(
                ObjectKind::Attestor,
                None,
                name.clone(),
                attestor.metadata.generation,
                &problems,
                key_statuses,
            ));
            CompiledAttestor {
                name,
                keys,
                key_labels,
                trust_stores,
                trust_labels,
                reason: problems.first().map(SpecProblem::reason),
                unusable,
            }
        })
        .collect();
    compiled.sort_by(|a, b| a.name.cmp(&b.name));
    compiled
}

/// A policy of either kind, before compilation.
struct PolicySource<'a> {
    kind: ObjectKind,
    namespace: Option<String>,
    name: String,
    generation: Option<i64>,
    rules: PolicyRules<'a>,
    selector: NamespaceSelector,
    /// Problems found before (the selector's).
    problems: Vec<SpecProblem>,
}

fn compile_policy(
    source: PolicySource<'_>,
    attestors: &[CompiledAttestor],
    by_name: &HashMap<&str, usize>,
) -> CompiledPolicy {
    let PolicySource {
        kind,
        namespace,
        name,
        rules,
        selector,
        mut problems,
        ..
    } = source;
    let globs = |field: &str, texts: &[String], problems: &mut Vec<SpecProblem>| {
        texts
            .iter()
            .enumerate()
            .filter_map(|(i, text)| match Glob::new(text) {
                Ok(glob) => Some(ImageGlob::new(glob)),
                Err(e) => {
                    problems.push(SpecProblem::invalid(format!("{field}[{i}]"), e.to_string()));
                    None
                }
            })
            .collect()
    };
    if rules.images.is_empty() {
        problems.push(SpecProblem::invalid(
            "spec.images",
            "empty: the policy governs no image",
        ));
    }
    let images = globs("spec.images", rules.images, &mut problems);
    let exclude = globs("spec.exclude", rules.exclude, &mut problems);

    let mut slots: Vec<AttestorSlot> = Vec::new();
    let mut attestor_problems = Vec::new();
    if rules.attestors.is_empty() {
        problems.push(SpecProblem::invalid(
            "spec.attestors",
            "empty: no attestor can satisfy the policy",
        ));
    }
    for attestor_name in rules.attestors {
        if slots.iter().any(|s| &s.name == attestor_name) {
            continue; // `required` counts distinct attestors
        }
        let attestor = by_name.get(attestor_name.as_str()).copied();
        match attestor.and_then(|i| attestors.get(i)) {
            None => attestor_problems.push(SpecProblem::AttestorNotFound {
                field: "spec.attestors".into(),
                name: attestor_name.clone(),
            }),
            Some(CompiledAttestor {
                unusable: Some(why),
                reason: attestor_reason,
                ..
            }) => {
                let reason = format!("attestor {attestor_name:?} is not Ready: {why}");
                let field = "spec.attestors".to_string();
                attestor_problems.push(match attestor_reason {
                    Some(NotReadyReason::InvalidKey) => SpecProblem::InvalidKey { field, reason },
                    _ => SpecProblem::InvalidSpec { field, reason },
                });
            }
            Some(_) => {}
        }
        slots.push(AttestorSlot {
            name: attestor_name.clone(),
            attestor,
        });
    }
    let required = match rules.required {
        None => slots.len(),
        Some(0) => {
            problems.push(SpecProblem::invalid("spec.required", "must be at least 1"));
            0
        }
        Some(n) => {
            let n = usize::try_from(n).unwrap_or(usize::MAX);
            if n > slots.len() {
                problems.push(SpecProblem::invalid(
                    "spec.required",
                    format!(
                        "{n} but spec.attestors names {} distinct attestors: it can never pass",
                        slots.len()
                    ),
                ));
            }
            n
        }
    };
    let display_name = match &namespace {
        Some(ns) => format!("{ns}/{name}"),
        None => name.clone(),
    };
    CompiledPolicy {
        kind,
        namespace,
        name,
        display_name,
        images,
        exclude,
        attestors: slots,
        required,
        signature_type: rules.signature_type,
        mode: rules.mode,
        selector,
        own_problems: problems,
        attestor_problems,
    }
}

/// The keys of one Attestor as they compile: public keys and trust stores, with their labels
/// and status entries.
#[derive(Default)]
struct CompiledKeys {
    keys: Vec<PublicKey>,
    key_labels: Vec<String>,
    trust_stores: Vec<Arc<TrustStore>>,
    trust_labels: Vec<String>,
    statuses: Vec<KeyStatus>,
}

impl CompiledKeys {
    /// Compiles `spec.keys[i]`; the problem names the field at fault.
    fn add(&mut self, i: usize, key: &AttestorKey, now: i64) -> Result<(), SpecProblem> {
        let invalid = |field: &str, reason: String| SpecProblem::InvalidKey {
            field: format!("spec.keys[{i}]{field}"),
            reason,
        };
        let label = key.id.clone().filter(|id| !id.is_empty());
        match (&key.public_key, &key.certificates) {
            (Some(pem), None) => {
                if !key.trusted_identities.is_empty() || key.tsa_certificates.is_some() {
                    return Err(invalid(
                        "",
                        "trustedIdentities and tsaCertificates go with certificates, not publicKey"
                            .into(),
                    ));
                }
                let Some(algorithm) = key.algorithm else {
                    return Err(invalid(
                        ".algorithm",
                        "required with publicKey (RSA keys cannot tell PSS from PKCS#1 v1.5)"
                            .into(),
                    ));
                };
                let parsed = PublicKey::from_pem(pem, algorithm)
                    .map_err(|e| invalid(".publicKey", e.to_string()))?;
                self.statuses.push(KeyStatus {
                    id: key.id.clone(),
                    name: label
                        .clone()
                        .unwrap_or_else(|| parsed.fingerprint().to_string()),
                    algorithm: Some(algorithm),
                    fingerprint: parsed.fingerprint().to_string(),
                    subject: None,
                    expiry: None,
                });
                self.key_labels
                    .push(label.unwrap_or_else(|| parsed.fingerprint().to_string()));
                self.keys.push(parsed);
                Ok(())
            }
            (None, Some(pem)) => {
                if let Some(tsa) = &key.tsa_certificates {
                    parse_tsa_roots(tsa).map_err(|e| invalid(".tsaCertificates", e.to_string()))?;
                }
                let store = TrustStore::new(
                    pem,
                    &key.trusted_identities,
                    key.tsa_certificates.as_deref(),
                )
                .map_err(|e| match e {
                    X509Error::BadIdentity { .. } => invalid(".trustedIdentities", e.to_string()),
                    other => invalid(".certificates", other.to_string()),
                })?;
                for anchor in store.anchor_info() {
                    self.statuses.push(KeyStatus {
                        id: key.id.clone(),
                        name: label.clone().unwrap_or_else(|| anchor.fingerprint.clone()),
                        algorithm: None,
                        fingerprint: anchor.fingerprint,
                        subject: Some(anchor.subject),
                        expiry: Some(anchor.expiry),
                    });
                }
                let expired = store.expired_anchors(now);
                if !expired.is_empty() {
                    return Err(invalid(
                        ".certificates",
                        format!("trust anchor {}", expired.join(", ")),
                    ));
                }
                let expired = store.expired_tsa_roots(now);
                if !expired.is_empty() {
                    return Err(invalid(
                        ".tsaCertificates",
                        format!("TSA root {}", expired.join(", ")),
                    ));
                }
                let first = store
                    .anchors()
                    .first()
                    .map(|a| a.subject().to_string())
                    .unwrap_or_default();
                self.trust_labels.push(label.unwrap_or(first));
                self.trust_stores.push(Arc::new(store));
                Ok(())
            }
            (Some(_), Some(_)) => Err(invalid(
                "",
                "publicKey and certificates exclude each other: one key is one or the other".into(),
            )),
            (None, None) => Err(invalid(
                "",
                "needs publicKey (with algorithm) or certificates".into(),
            )),
        }
    }
}
