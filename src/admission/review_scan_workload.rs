//! The object of a checked workload read straight into what admission uses of it (images, pull
//! secrets, service account, annotations), without the pruned tree that the general reader builds
//! and `images::workload_of` then walks: on a cached admission, building, walking and dropping the
//! tree was a fifth of the admission's instructions.
//!
//! This reader only ever says yes to the common case, and defers everything else to the general
//! one (`read` and `workload_of`), which judges it: any error here means "read it the general
//! way", never a verdict. So it holds only one rule: where it answers, it answers exactly what the
//! general reader would (pinned by `review_scan_tests.rs` over the fixtures and by the
//! `review_differential` fuzz target). To keep that rule simple it defers, rather than reproduces
//! the general reader's judgement, on:
//! - an `object` before the request's `kind` or `operation`, a kind or operation that is not
//!   checked, a `subResource` after the `object` that changes that;
//! - anything the general reader would refuse or turn into an error (a missing, null or empty
//!   image, a field of the wrong type, a null on the way to the pod spec);
//! - a field read here written twice (where the general reader keeps the last; refused by the
//!   shared `once`, as the request's own fields are);
//! - a number, an array or an object where the general reader keeps a value whole (it judges
//!   numbers with serde_json and counts kept containers towards the recursion limit);
//! - a field the general reader keeps beside the path to the pod spec (`containers` in a
//!   Deployment's own spec, `template` in a pod spec): it keeps them for no workload;
//! - a template's `metadata` after its `spec` (annotations are merged outer first).
//!
//! Strings, keys and skipped values go through the same primitives as in the general reader, so
//! escapes and the JSON grammar are judged by one piece of code.

use std::borrow::Cow;
use std::collections::BTreeMap;

use super::super::images::{ContainerKind, PodParts, PodSpecRoute, WorkloadImage, pod_spec_route};
use super::super::review::{ObjectMetadata, ReviewError};
use super::structs::Head;
use super::{Once, Result, Scanner};

/// What the workload reader read of a request's `object`.
#[derive(Debug)]
pub(in crate::admission) struct WorkloadObject<'a> {
    /// Where the pod spec was read from (checked again once the whole request is read).
    pub(in crate::admission) route: PodSpecRoute,
    /// `metadata`, as the general reader reads it.
    pub(in crate::admission) metadata: ObjectMetadata<'a>,
    /// What the pod spec and the templates on the way say.
    pub(in crate::admission) pod: PodParts<'a>,
}

/// The pod spec fields read here, a bit each, to refuse a second one.
const CONTAINERS: u8 = 1;
const INIT_CONTAINERS: u8 = 1 << 1;
const EPHEMERAL_CONTAINERS: u8 = 1 << 2;
const VOLUMES: u8 = 1 << 3;
const PULL_SECRETS: u8 = 1 << 4;
const ACCOUNT_NAME: u8 = 1 << 5;
const ACCOUNT: u8 = 1 << 6;

/// The fields of a spec the general reader keeps (its `SPEC` shape): beside the path to the pod
/// spec, one of them sends the object to the general reader.
const SPEC_KEPT: [&[u8]; 9] = [
    b"containers",
    b"initContainers",
    b"ephemeralContainers",
    b"volumes",
    b"imagePullSecrets",
    b"serviceAccountName",
    b"serviceAccount",
    b"template",
    b"jobTemplate",
];

impl<'a> Scanner<'a> {
    /// Why this reader stops: never shown, the general reader reads the body again.
    #[cold]
    #[inline(never)]
    fn uncommon(&self) -> Box<ReviewError> {
        self.data("left to the general reader")
    }

    /// The value of a request's `object`, when `head` says it is a checked workload.
    pub(super) fn workload_object(&mut self, head: &Head<'_, 'a>) -> Result<WorkloadObject<'a>> {
        let (Some(kind), Some(operation)) = (head.kind, head.operation) else {
            return Err(self.uncommon());
        };
        let sub_resource = head.sub_resource.and_then(Option::as_deref);
        let Ok(Some(route)) = pod_spec_route(kind, operation, sub_resource) else {
            return Err(self.uncommon());
        };
        let Some((&first_key, rest)) = route.keys.split_first() else {
            return Err(self.uncommon());
        };
        self.kept_object()?;
        let mut metadata = Once::new();
        let mut pod = PodParts::default();
        let mut found = false;
        let mut first = true;
        while let Some(key) = self.next_field(&mut first)? {
            match &*key {
                b"metadata" => {
                    self.once(&mut metadata, "metadata", |s| s.nullable(Self::metadata))?
                }
                b"spec" | b"template" if !found && *key == *first_key.as_bytes() => {
                    found = true;
                    self.colon()?;
                    self.route_node(first_key, rest, &mut pod)?;
                }
                b"spec" | b"template" => return Err(self.uncommon()),
                _ => self.skip_field()?,
            }
        }
        self.leave();
        if !found {
            return Err(self.uncommon());
        }
        Ok(WorkloadObject {
            route,
            metadata: metadata.0.flatten().unwrap_or_default(),
            pod,
        })
    }

    /// Opens an object the general reader keeps; anything else (null included) is not read here.
    fn kept_object(&mut self) -> Result<()> {
        match self.peek() {
            Some(b'{') => self.enter(),
            _ => Err(self.uncommon()),
        }
    }

    /// Opens an array the general reader keeps.
    fn kept_array(&mut self) -> Result<()> {
        match self.peek() {
            Some(b'[') => self.enter(),
            _ => Err(self.uncommon()),
        }
    }

    /// One node on the way to the pod spec, the value of `key` (a `spec` is read as a spec, a
    /// `template` or `jobTemplate` as a template); `rest` the keys after it.
    fn route_node(&mut self, key: &str, rest: &[&str], pod: &mut PodParts<'a>) -> Result<()> {
        self.kept_object()?;
        let Some((&next, after)) = rest.split_first() else {
            return self.pod_spec(pod);
        };
        let template = key != "spec";
        let (mut found, mut metadata) = (false, false);
        let mut first = true;
        while let Some(field) = self.next_field(&mut first)? {
            if *field == *next.as_bytes() {
                if found {
                    return Err(self.uncommon());
                }
                found = true;
                self.colon()?;
                self.route_node(next, after, pod)?;
            } else if template && *field == *b"metadata" {
                // Outer annotations first: after the spec, inner ones would be overwritten.
                if metadata || found {
                    return Err(self.uncommon());
                }
                metadata = true;
                self.colon()?;
                self.template_metadata(&mut pod.template_annotations)?;
            } else if template && *field == *b"spec" || !template && SPEC_KEPT.contains(&&*field) {
                return Err(self.uncommon());
            } else {
                self.skip_field()?;
            }
        }
        self.leave();
        if !found {
            return Err(self.uncommon());
        }
        Ok(())
    }

    /// A template's `metadata`: its string annotations into `found`, over an outer template's.
    fn template_metadata(&mut self, found: &mut BTreeMap<String, String>) -> Result<()> {
        self.kept_object()?;
        let mut annotations = false;
        let mut first = true;
        while let Some(field) = self.next_field(&mut first)? {
            if *field != *b"annotations" {
                self.skip_field()?;
                continue;
            }
            if annotations {
                return Err(self.uncommon());
            }
            annotations = true;
            self.colon()?;
            if self.null()? {
                continue;
            }
            self.kept_object()?;
            let mut level: BTreeMap<Cow<'a, str>, Cow<'a, str>> = BTreeMap::new();
            let mut first_entry = true;
            while let Some(name) = self.next_key(&mut first_entry)? {
                self.colon()?;
                let value = self.kept_string()?;
                if level.insert(name, value).is_some() {
                    return Err(self.uncommon());
                }
            }
            self.leave();
            found.extend(
                level
                    .into_iter()
                    .map(|(name, value)| (name.into_owned(), value.into_owned())),
            );
        }
        self.leave();
        Ok(())
    }

    /// The pod spec's fields (its object opened).
    fn pod_spec(&mut self, pod: &mut PodParts<'a>) -> Result<()> {
        let mut seen = 0u8;
        let (mut account_name, mut account) = (None, None);
        let mut first = true;
        while let Some(field) = self.next_field(&mut first)? {
            let bit = match &*field {
                b"containers" => CONTAINERS,
                b"initContainers" => INIT_CONTAINERS,
                b"ephemeralContainers" => EPHEMERAL_CONTAINERS,
                b"volumes" => VOLUMES,
                b"imagePullSecrets" => PULL_SECRETS,
                b"serviceAccountName" => ACCOUNT_NAME,
                b"serviceAccount" => ACCOUNT,
                b"template" | b"jobTemplate" => return Err(self.uncommon()),
                _ => {
                    self.skip_field()?;
                    continue;
                }
            };
            if seen & bit != 0 {
                return Err(self.uncommon());
            }
            seen |= bit;
            self.colon()?;
            match bit {
                CONTAINERS => self.containers(ContainerKind::Container, &mut pod.images)?,
                INIT_CONTAINERS => {
                    self.containers(ContainerKind::InitContainer, &mut pod.images)?
                }
                EPHEMERAL_CONTAINERS => {
                    self.containers(ContainerKind::EphemeralContainer, &mut pod.images)?
                }
                VOLUMES => self.image_volumes(&mut pod.images)?,
                PULL_SECRETS => self.pull_secrets(&mut pod.image_pull_secrets)?,
                ACCOUNT_NAME => account_name = self.kept_optional_string()?,
                _ => account = self.kept_optional_string()?,
            }
        }
        self.leave();
        // `workload_of`'s order, `ContainerKind`'s: the container lists, then image volumes.
        pod.images.sort_by_key(|image| image.kind);
        pod.service_account = [account_name, account]
            .into_iter()
            .flatten()
            .find(|name| !name.is_empty())
            .unwrap_or(Cow::Borrowed("default"));
        Ok(())
    }

    /// One container list: each container's name and image.
    fn containers(&mut self, kind: ContainerKind, out: &mut Vec<WorkloadImage<'a>>) -> Result<()> {
        self.kept_array()?;
        let mut index = 0;
        let mut first = true;
        while self.next_element(&mut first)? {
            self.kept_object()?;
            let (mut name, mut image) = (Once::new(), Once::new());
            let mut first_field = true;
            while let Some(field) = self.next_field(&mut first_field)? {
                match &*field {
                    b"name" => self.once(&mut name, "name", Self::kept_optional_string)?,
                    b"image" => self.once(&mut image, "image", Self::kept_optional_string)?,
                    _ => self.skip_field()?,
                }
            }
            self.leave();
            out.push(WorkloadImage {
                index,
                image: self.image_text(image.0.flatten())?,
                container: name.0.flatten().unwrap_or_default(),
                kind,
            });
            index += 1;
        }
        self.leave();
        Ok(())
    }

    /// `volumes`: of each volume with an `image` source, its name and `image.reference`.
    fn image_volumes(&mut self, out: &mut Vec<WorkloadImage<'a>>) -> Result<()> {
        self.kept_array()?;
        let mut index = 0;
        let mut first = true;
        while self.next_element(&mut first)? {
            self.kept_object()?;
            let (mut name, mut source) = (Once::new(), Once::new());
            let mut first_field = true;
            while let Some(field) = self.next_field(&mut first_field)? {
                match &*field {
                    b"name" => self.once(&mut name, "name", Self::kept_optional_string)?,
                    b"image" => self.once(&mut source, "image", |s| {
                        s.nullable(|s| s.whole_object_string(b"reference"))
                    })?,
                    _ => self.skip_field()?,
                }
            }
            self.leave();
            if let Some(reference) = source.0.flatten() {
                out.push(WorkloadImage {
                    index,
                    image: self.image_text(reference)?,
                    container: name.0.flatten().unwrap_or_default(),
                    kind: ContainerKind::ImageVolume,
                });
            }
            index += 1;
        }
        self.leave();
        Ok(())
    }

    /// An object the general reader keeps whole (an image volume's source, a pull secret's
    /// entry): its string `field` (absent or null: `None`); every other value a kept scalar.
    fn whole_object_string(&mut self, wanted: &[u8]) -> Result<Option<Cow<'a, str>>> {
        self.kept_object()?;
        let mut value = Once::new();
        let mut first = true;
        while let Some(field) = self.next_field(&mut first)? {
            if *field == *wanted {
                self.once(&mut value, "", Self::kept_optional_string)?;
            } else {
                self.colon()?;
                self.kept_scalar()?;
            }
        }
        self.leave();
        Ok(value.0.flatten())
    }

    /// `imagePullSecrets`, kept whole by the general reader: the names, non-empty, each once.
    fn pull_secrets(&mut self, out: &mut Vec<Cow<'a, str>>) -> Result<()> {
        if self.null()? {
            return Ok(());
        }
        self.kept_array()?;
        let mut first = true;
        while self.next_element(&mut first)? {
            if let Some(name) = self.whole_object_string(b"name")?
                && !name.is_empty()
                && !out.contains(&name)
            {
                out.push(name);
            }
        }
        self.leave();
        Ok(())
    }

    /// An image as the general reader takes one: present and not blank.
    fn image_text(&self, image: Option<Cow<'a, str>>) -> Result<Cow<'a, str>> {
        match image {
            Some(image) if !image.trim().is_empty() => Ok(image),
            _ => Err(self.uncommon()),
        }
    }

    /// A string, as the general reader keeps one.
    fn kept_string(&mut self) -> Result<Cow<'a, str>> {
        match self.peek() {
            Some(b'"') => self.text(),
            _ => Err(self.uncommon()),
        }
    }

    /// A string or null (absent), as the general reader keeps one.
    fn kept_optional_string(&mut self) -> Result<Option<Cow<'a, str>>> {
        self.nullable(Self::kept_string)
    }

    /// A value of a node kept whole that is not read: a string (judged as a kept one), `true`,
    /// `false` or `null`; a number or a container is left to the general reader.
    fn kept_scalar(&mut self) -> Result<()> {
        match self.peek() {
            Some(b'"') => self.text().map(drop),
            Some(b'n') => self.word(b"null"),
            Some(b't') => self.word(b"true"),
            Some(b'f') => self.word(b"false"),
            _ => Err(self.uncommon()),
        }
    }
}
