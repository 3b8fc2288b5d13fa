//! The structures of an AdmissionReview as `review_scan.rs` reads them: each field as serde's
//! derive (or k8s-openapi's `UserInfo`) reads it, with the JSON primitives of the parent module.

use std::borrow::Cow;

use kube::core::admission::Operation;

use super::super::pruned_tree::{NodeId, TreeBuilder};
use super::super::review::{ObjectMetadata, RequestKind, RequestUser, ReviewObject, ReviewRequest};
use super::super::review_prune::{SPEC, Shape, TEMPLATE};
use super::{Once, Result, Scanner, TopLevel};

/// What a request said before its `object`: how a reader that needs it (the workload reader)
/// knows what it reads.
pub(super) struct Head<'r, 'a> {
    /// `kind`, if read yet.
    pub(super) kind: Option<&'r RequestKind<'a>>,
    /// `operation`, if read yet.
    pub(super) operation: Option<&'r Operation>,
    /// `subResource`, if read yet (`Some(None)`: null).
    pub(super) sub_resource: Option<&'r Option<Cow<'a, str>>>,
}

/// How a request's `object` is read (after its colon), and what was read.
pub(super) struct ObjectSlot<'f, 'a, T> {
    /// The reader.
    pub(super) read: &'f mut dyn FnMut(&mut Scanner<'a>, Head<'_, 'a>) -> Result<T>,
    /// Its value, once read (a second `object` is a duplicate field).
    pub(super) value: Once<T>,
}

impl<'a> Scanner<'a> {
    /// The whole AdmissionReview object; its request into `request` (see [`super::read`]).
    pub(super) fn review<T>(
        &mut self,
        request: &mut Option<ReviewRequest<'a>>,
        object: &mut ObjectSlot<'_, 'a, T>,
    ) -> Result<TopLevel<'a>> {
        self.structure("an AdmissionReview")?;
        let (mut api_version, mut kind) = (Once::new(), Once::new());
        let mut seen_request = false;
        let mut first = true;
        while let Some(key) = self.next_field(&mut first)? {
            match &*key {
                b"apiVersion" => self.once(&mut api_version, "apiVersion", Self::string)?,
                b"kind" => self.once(&mut kind, "kind", Self::string)?,
                b"request" => {
                    if seen_request {
                        return Err(self.data("duplicate field `request`"));
                    }
                    seen_request = true;
                    self.colon()?;
                    if !self.null()? {
                        *request = Some(self.request(object)?);
                    }
                }
                _ => self.skip_field()?,
            }
        }
        self.leave();
        Ok(TopLevel {
            api_version: api_version.0.unwrap_or_default(),
            kind: kind.0.unwrap_or_default(),
        })
    }

    /// The request, its `object` (absent: left out of the request) read by `object`'s reader
    /// into its slot.
    fn request<T>(&mut self, object: &mut ObjectSlot<'_, 'a, T>) -> Result<ReviewRequest<'a>> {
        self.structure("an AdmissionRequest")?;
        let mut uid = Once::new();
        let mut kind = Once::new();
        let mut sub_resource = Once::new();
        let mut name = Once::new();
        let mut namespace = Once::new();
        let mut operation = Once::new();
        let mut user_info = Once::new();
        let mut dry_run = Once::new();
        let mut first = true;
        while let Some(key) = self.next_field(&mut first)? {
            match &*key {
                b"uid" => self.once(&mut uid, "uid", Self::string)?,
                b"kind" => self.once(&mut kind, "kind", Self::request_kind)?,
                b"subResource" => {
                    self.once(&mut sub_resource, "subResource", Self::optional_string)?
                }
                b"name" => self.once(&mut name, "name", Self::string)?,
                b"namespace" => self.once(&mut namespace, "namespace", Self::optional_string)?,
                b"operation" => self.once(&mut operation, "operation", Self::operation)?,
                b"userInfo" => self.once(&mut user_info, "userInfo", Self::user_info)?,
                b"object" => {
                    let head = Head {
                        kind: kind.0.as_ref(),
                        operation: operation.0.as_ref(),
                        sub_resource: sub_resource.0.as_ref(),
                    };
                    let read = &mut object.read;
                    self.once(&mut object.value, "object", |s| read(s, head))?
                }
                b"dryRun" => self.once(&mut dry_run, "dryRun", Self::dry_run)?,
                _ => self.skip_field()?,
            }
        }
        let missing = |field: &str| self.data(&format!("missing field `{field}`"));
        let uid = uid.0.ok_or_else(|| missing("uid"))?;
        let kind = kind.0.ok_or_else(|| missing("kind"))?;
        let operation = operation.0.ok_or_else(|| missing("operation"))?;
        self.leave();
        Ok(ReviewRequest {
            uid,
            kind,
            sub_resource: sub_resource.0.flatten(),
            name: name.0.unwrap_or_default(),
            namespace: namespace.0.flatten(),
            operation,
            user_info: user_info.0.unwrap_or_default(),
            object: None,
            dry_run: dry_run.0.unwrap_or(false),
        })
    }

    fn request_kind(&mut self) -> Result<RequestKind<'a>> {
        self.structure("a group/version/kind")?;
        let (mut group, mut version, mut kind) = (Once::new(), Once::new(), Once::new());
        let mut first = true;
        while let Some(key) = self.next_field(&mut first)? {
            match &*key {
                b"group" => self.once(&mut group, "group", Self::string)?,
                b"version" => self.once(&mut version, "version", Self::string)?,
                b"kind" => self.once(&mut kind, "kind", Self::string)?,
                _ => self.skip_field()?,
            }
        }
        let version = version
            .0
            .ok_or_else(|| self.data("missing field `version`"))?;
        let kind = kind.0.ok_or_else(|| self.data("missing field `kind`"))?;
        self.leave();
        Ok(RequestKind {
            group: group.0.unwrap_or_default(),
            version,
            kind,
        })
    }

    fn dry_run(&mut self) -> Result<bool> {
        match self.peek() {
            Some(b'n') => self.word(b"null").map(|()| false),
            Some(b't') => self.word(b"true").map(|()| true),
            Some(b'f') => self.word(b"false").map(|()| false),
            Some(_) => Err(self.wrong_type("a boolean")),
            None => Err(self.eof()),
        }
    }

    /// `"CREATE"`..., or serde's other form of a unit variant, `{"CREATE": null}`.
    fn operation(&mut self) -> Result<Operation> {
        match self.peek() {
            Some(b'"') => self.variant(),
            Some(b'{') => {
                self.enter()?;
                let operation = match self.peek() {
                    Some(b'"') => self.variant()?,
                    Some(_) => return Err(self.syntax("expected an operation as the key")),
                    None => return Err(self.eof()),
                };
                self.colon()?;
                match self.peek() {
                    Some(b'n') => self.word(b"null")?,
                    Some(_) => return Err(self.wrong_type("null")),
                    None => return Err(self.eof()),
                }
                self.leave();
                match self.peek() {
                    Some(b'}') => {
                        self.pos += 1;
                        Ok(operation)
                    }
                    Some(_) => Err(self.syntax("expected `}`")),
                    None => Err(self.eof()),
                }
            }
            Some(_) => Err(self.syntax("expected an operation")),
            None => Err(self.eof()),
        }
    }

    fn variant(&mut self) -> Result<Operation> {
        match &*self.text()? {
            "CREATE" => Ok(Operation::Create),
            "UPDATE" => Ok(Operation::Update),
            "DELETE" => Ok(Operation::Delete),
            "CONNECT" => Ok(Operation::Connect),
            other => Err(self.data(&format!("unknown operation {other:?}"))),
        }
    }

    /// k8s-openapi's `UserInfo`: every field optional, the last of duplicates counts.
    fn user_info(&mut self) -> Result<RequestUser<'a>> {
        match self.peek() {
            Some(b'{') => self.enter()?,
            Some(b'[') => {
                self.enter()?;
                return Err(self.data("expected userInfo, found an array"));
            }
            Some(_) => return Err(self.wrong_type("userInfo")),
            None => return Err(self.eof()),
        }
        let mut info = RequestUser::default();
        let mut first = true;
        while let Some(key) = self.next_field(&mut first)? {
            match &*key {
                b"username" => {
                    self.colon()?;
                    info.username = self.optional_string()?;
                }
                b"uid" => {
                    self.colon()?;
                    info.uid = self.optional_string()?;
                }
                b"groups" => {
                    self.colon()?;
                    info.groups = if self.null()? {
                        None
                    } else {
                        Some(self.string_list()?)
                    };
                }
                b"extra" => {
                    self.colon()?;
                    info.extra = if self.null()? {
                        None
                    } else {
                        Some(
                            self.map(Self::string_list)?
                                .into_iter()
                                .map(owned_list)
                                .collect(),
                        )
                    };
                }
                _ => self.skip_field()?,
            }
        }
        self.leave();
        Ok(info)
    }

    /// A request's `object` as the general reader keeps it: metadata and a pruned tree.
    pub(super) fn object(&mut self) -> Result<ReviewObject<'a>> {
        self.structure("an object")?;
        let (mut metadata, mut spec, mut template) = (Once::new(), Once::new(), Once::new());
        let mut tree = TreeBuilder::for_pod_spec();
        let mut first = true;
        while let Some(key) = self.next_field(&mut first)? {
            match &*key {
                b"metadata" => {
                    self.once(&mut metadata, "metadata", |s| s.nullable(Self::metadata))?
                }
                b"spec" => self.once(&mut spec, "spec", |s| {
                    s.nullable(|s| s.pruned(&SPEC, &mut tree))
                })?,
                b"template" => self.once(&mut template, "template", |s| {
                    s.nullable(|s| s.pruned(&TEMPLATE, &mut tree))
                })?,
                _ => self.skip_field()?,
            }
        }
        self.leave();
        Ok(ReviewObject::from_built(
            metadata.0.flatten(),
            tree,
            spec.0.flatten(),
            template.0.flatten(),
        ))
    }

    pub(super) fn metadata(&mut self) -> Result<ObjectMetadata<'a>> {
        self.structure("object metadata")?;
        let (mut name, mut generate_name, mut namespace, mut annotations) =
            (Once::new(), Once::new(), Once::new(), Once::new());
        let mut first = true;
        while let Some(key) = self.next_field(&mut first)? {
            match &*key {
                b"name" => self.once(&mut name, "name", Self::optional_string)?,
                b"generateName" => {
                    self.once(&mut generate_name, "generateName", Self::optional_string)?
                }
                b"namespace" => self.once(&mut namespace, "namespace", Self::optional_string)?,
                b"annotations" => self.once(&mut annotations, "annotations", |s| {
                    s.nullable(|s| s.map(Self::string))
                })?,
                _ => self.skip_field()?,
            }
        }
        self.leave();
        Ok(ObjectMetadata {
            name: name.0.flatten(),
            generate_name: generate_name.0.flatten(),
            namespace: namespace.0.flatten(),
            annotations: annotations.0.flatten(),
        })
    }

    /// One value into `out`, keeping what `shape` says, as `review_prune::Pruned` builds it: a
    /// node of an unexpected JSON type is kept whole.
    fn pruned(&mut self, shape: &'static Shape, out: &mut TreeBuilder) -> Result<NodeId> {
        match self.peek() {
            Some(b'"') => {
                let text = self.text()?;
                Ok(out.string(&text))
            }
            Some(b'{') => {
                self.enter()?;
                let mark = out.open();
                let mut first = true;
                match shape {
                    Shape::Fields(fields) => {
                        while let Some(key) = self.next_field(&mut first)? {
                            match fields.iter().find(|(name, _)| name.as_bytes() == &*key) {
                                Some((name, field_shape)) => {
                                    self.colon()?;
                                    let node = self.pruned(field_shape, out)?;
                                    out.entry(name, node);
                                }
                                None => self.skip_field()?,
                            }
                        }
                    }
                    _ => {
                        while let Some(key) = self.next_key(&mut first)? {
                            self.colon()?;
                            let node = self.pruned(&Shape::Whole, out)?;
                            out.entry(&key, node);
                        }
                    }
                }
                self.leave();
                Ok(out.close_object(mark))
            }
            Some(b'[') => {
                self.enter()?;
                let element = match shape {
                    Shape::Each(element) => *element,
                    _ => &Shape::Whole,
                };
                let mark = out.open();
                let mut first = true;
                while self.next_element(&mut first)? {
                    let node = self.pruned(element, out)?;
                    out.element(node);
                }
                self.leave();
                Ok(out.close_array(mark))
            }
            Some(b'n') => self.word(b"null").map(|()| out.null()),
            Some(b't') => self.word(b"true").map(|()| out.bool(true)),
            Some(b'f') => self.word(b"false").map(|()| out.bool(false)),
            Some(b'-' | b'0'..=b'9') => self.number().map(|number| out.value(&number)),
            Some(_) => Err(self.syntax("expected a value")),
            None => Err(self.eof()),
        }
    }
}

/// An `extra` entry of `userInfo`, owned (rare, and only passed on to a SubjectAccessReview).
fn owned_list((key, values): (Cow<'_, str>, Vec<Cow<'_, str>>)) -> (String, Vec<String>) {
    (
        key.into_owned(),
        values.into_iter().map(Cow::into_owned).collect(),
    )
}
