//! The kept parts of a workload object (`spec` and `template`, pruned as `review_prune.rs` says) as
//! one compact JSON tree: every node in one vector, every object entry and array element in a
//! second, every string and key in one text buffer.
//!
//! Why not `serde_json::Value`: a `Value` of a pruned pod spec is a map node, an owned key and an
//! owned string per field (23 allocations for a 3-container pod), inserted into B-trees, walked
//! by key and dropped node by node; that was a tenth of a cached admission's instructions. Here
//! a tree is three buffers that grow a few times, and a lookup is a scan of a handful of entries.
//!
//! The tree reads as serde_json's `Map` reads where it matters: of an object's duplicate keys the
//! last counts (`get` looks from the end; [`NodeRef::to_value`] inserts in order). Entries keep
//! the order they were written in; [`NodeRef::entries`] yields duplicates too, so a caller that
//! folds entries must let a later one replace (or remove) an earlier.

use std::cell::RefCell;
use std::fmt;

use serde_json::{Map, Number, Value};

/// A JSON tree read from a review (see the module header).
#[derive(Clone, Default)]
pub struct PrunedTree {
    text: String,
    nodes: Vec<Node>,
    links: Vec<Link>,
    root: usize,
}

/// The buffers of a dropped tree, emptied.
struct Spare {
    text: String,
    nodes: Vec<Node>,
    links: Vec<Link>,
}

/// Trees whose buffers are larger than this many bytes are freed, not kept: one huge review
/// must not pin its memory to the thread.
const SPARE_LIMIT: usize = 64 * 1024;

thread_local! {
    /// The buffers of the last tree dropped on this thread, for the next
    /// [`TreeBuilder::for_pod_spec`]. A request's tree is built and dropped on one thread (one
    /// runtime per serving thread, `crate::serve::threads`), and its three buffers, about 3 KiB,
    /// were among the largest allocations of a cached admission (the builder's small scratch
    /// buffer is not kept: it is not part of the tree).
    static SPARE: RefCell<Option<Spare>> = const { RefCell::new(None) };
}

impl Drop for PrunedTree {
    fn drop(&mut self) {
        let bytes = self.text.capacity()
            + self.nodes.capacity() * std::mem::size_of::<Node>()
            + self.links.capacity() * std::mem::size_of::<Link>();
        if self.nodes.capacity() == 0 || bytes > SPARE_LIMIT {
            return;
        }
        let mut spare = Spare {
            text: std::mem::take(&mut self.text),
            nodes: std::mem::take(&mut self.nodes),
            links: std::mem::take(&mut self.links),
        };
        spare.text.clear();
        spare.nodes.clear();
        spare.links.clear();
        // At thread exit, or (never) while the slot is borrowed, the buffers are simply freed.
        let _ = SPARE.try_with(|slot| {
            if let Ok(mut slot) = slot.try_borrow_mut()
                && slot.is_none()
            {
                *slot = Some(spare);
            }
        });
    }
}

#[derive(Clone)]
enum Node {
    Null,
    Bool(bool),
    Number(Number),
    /// A range of `text`.
    String(Span),
    /// A range of `links` (their keys are empty).
    Array(Span),
    /// A range of `links`.
    Object(Span),
}

#[derive(Clone, Copy)]
struct Span {
    start: usize,
    end: usize,
}

/// An object entry or array element: its key (a range of `text`, empty for elements) and node.
#[derive(Clone, Copy)]
struct Link {
    key: Span,
    node: usize,
}

/// A node being built, as returned by the [`TreeBuilder`] methods.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NodeId(usize);

/// Where a container's entries start in the builder, from [`TreeBuilder::open`].
#[derive(Clone, Copy, Debug)]
pub struct Mark(usize);

/// Builds a [`PrunedTree`] depth first: leaves are added as met; a container is opened, its
/// entries added (each after its value is built), then closed.
#[derive(Default)]
pub struct TreeBuilder {
    tree: PrunedTree,
    /// Entries of the containers still open, innermost last.
    pending: Vec<Link>,
}

const NO_KEY: Span = Span { start: 0, end: 0 };

impl TreeBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        TreeBuilder::default()
    }

    /// An empty builder with room for a small pod spec (a few containers, volumes and pull
    /// secrets) without growing: growing four buffers step by step cost more than the tree.
    /// The buffers of the last tree dropped on this thread are reused when there are some.
    pub fn for_pod_spec() -> Self {
        let spare = SPARE
            .try_with(|slot| slot.try_borrow_mut().ok().and_then(|mut slot| slot.take()))
            .ok()
            .flatten();
        let tree = match spare {
            Some(spare) => PrunedTree {
                text: spare.text,
                nodes: spare.nodes,
                links: spare.links,
                root: 0,
            },
            None => PrunedTree {
                text: String::with_capacity(512),
                nodes: Vec::with_capacity(48),
                links: Vec::with_capacity(48),
                root: 0,
            },
        };
        TreeBuilder {
            tree,
            pending: Vec::with_capacity(24),
        }
    }

    fn node(&mut self, node: Node) -> NodeId {
        self.tree.nodes.push(node);
        NodeId(self.tree.nodes.len() - 1)
    }

    fn text(&mut self, text: &str) -> Span {
        let start = self.tree.text.len();
        self.tree.text.push_str(text);
        Span {
            start,
            end: self.tree.text.len(),
        }
    }

    /// `null`.
    pub fn null(&mut self) -> NodeId {
        self.node(Node::Null)
    }

    /// `true` or `false`.
    pub fn bool(&mut self, value: bool) -> NodeId {
        self.node(Node::Bool(value))
    }

    /// A number.
    pub fn number(&mut self, value: Number) -> NodeId {
        self.node(Node::Number(value))
    }

    /// A string.
    pub fn string(&mut self, text: &str) -> NodeId {
        let span = self.text(text);
        self.node(Node::String(span))
    }

    /// Opens an object or array.
    pub fn open(&self) -> Mark {
        Mark(self.pending.len())
    }

    /// An entry of the innermost open object.
    pub fn entry(&mut self, key: &str, node: NodeId) {
        let key = self.text(key);
        self.pending.push(Link { key, node: node.0 });
    }

    /// An element of the innermost open array.
    pub fn element(&mut self, node: NodeId) {
        self.pending.push(Link {
            key: NO_KEY,
            node: node.0,
        });
    }

    fn close(&mut self, mark: Mark) -> Span {
        let start = self.tree.links.len();
        // `mark` came from `open` with every later container closed since, so it is within
        // `pending` (and `drain` would clamp nothing: it panics only past the end).
        let from = mark.0.min(self.pending.len());
        self.tree.links.extend(self.pending.drain(from..));
        Span {
            start,
            end: self.tree.links.len(),
        }
    }

    /// Closes the object opened at `mark`.
    pub fn close_object(&mut self, mark: Mark) -> NodeId {
        let span = self.close(mark);
        self.node(Node::Object(span))
    }

    /// Closes the array opened at `mark`.
    pub fn close_array(&mut self, mark: Mark) -> NodeId {
        let span = self.close(mark);
        self.node(Node::Array(span))
    }

    /// The tree whose root is `root`.
    pub fn finish(mut self, root: NodeId) -> PrunedTree {
        self.tree.root = root.0;
        self.tree
    }

    /// Adds a `serde_json::Value` (the reference reader's form) as a node.
    pub fn value(&mut self, value: &Value) -> NodeId {
        match value {
            Value::Null => self.null(),
            Value::Bool(value) => self.bool(*value),
            Value::Number(value) => self.number(value.clone()),
            Value::String(text) => self.string(text),
            Value::Array(items) => {
                let mark = self.open();
                for item in items {
                    let node = self.value(item);
                    self.element(node);
                }
                self.close_array(mark)
            }
            Value::Object(map) => {
                let mark = self.open();
                for (key, item) in map {
                    let node = self.value(item);
                    self.entry(key, node);
                }
                self.close_object(mark)
            }
        }
    }
}

static NULL: Node = Node::Null;

impl PrunedTree {
    /// The tree of a `serde_json::Value`.
    pub fn from_value(value: &Value) -> Self {
        let mut builder = TreeBuilder::new();
        let root = builder.value(value);
        builder.finish(root)
    }

    /// The root node (`null` for an empty tree).
    pub fn root(&self) -> NodeRef<'_> {
        NodeRef {
            tree: self,
            node: self.nodes.get(self.root).unwrap_or(&NULL),
        }
    }

    /// The whole tree as a `serde_json::Value`.
    pub fn to_value(&self) -> Value {
        self.root().to_value()
    }

    fn text_of(&self, span: Span) -> &str {
        // Spans are made by `TreeBuilder::text` from whole `&str`s, so on char boundaries.
        self.text.get(span.start..span.end).unwrap_or_default()
    }

    /// Whether the text at `span` is `key`: lengths first, then bytes, without slicing the
    /// text as a `str` (a lookup compares a handful of keys, most of another length).
    fn text_is(&self, span: Span, key: &str) -> bool {
        span.end.checked_sub(span.start) == Some(key.len())
            && self.text.as_bytes().get(span.start..span.end) == Some(key.as_bytes())
    }

    fn links_of(&self, span: Span) -> &[Link] {
        self.links.get(span.start..span.end).unwrap_or_default()
    }
}

/// One node of a [`PrunedTree`].
#[derive(Clone, Copy)]
pub struct NodeRef<'a> {
    tree: &'a PrunedTree,
    node: &'a Node,
}

impl<'a> NodeRef<'a> {
    fn at(self, index: usize) -> NodeRef<'a> {
        NodeRef {
            tree: self.tree,
            node: self.tree.nodes.get(index).unwrap_or(&NULL),
        }
    }

    /// Whether this is `null`.
    pub fn is_null(self) -> bool {
        matches!(self.node, Node::Null)
    }

    /// Whether this is an object.
    pub fn is_object(self) -> bool {
        matches!(self.node, Node::Object(_))
    }

    /// The text of a string.
    pub fn as_str(self) -> Option<&'a str> {
        match self.node {
            Node::String(span) => Some(self.tree.text_of(*span)),
            _ => None,
        }
    }

    /// The value of `key` in an object (the last of duplicates); `None` for a missing key or
    /// another JSON type.
    pub fn get(self, key: &str) -> Option<NodeRef<'a>> {
        let Node::Object(span) = self.node else {
            return None;
        };
        let tree = self.tree;
        tree.links_of(*span)
            .iter()
            .rev()
            .find(|link| tree.text_is(link.key, key))
            .map(|link| self.at(link.node))
    }

    /// The elements of an array; `None` for another JSON type.
    pub fn elements(self) -> Option<impl Iterator<Item = NodeRef<'a>>> {
        let Node::Array(span) = self.node else {
            return None;
        };
        Some(
            self.tree
                .links_of(*span)
                .iter()
                .map(move |link| self.at(link.node)),
        )
    }

    /// The entries of an object in written order, duplicates included; `None` for another type.
    pub fn entries(self) -> Option<impl Iterator<Item = (&'a str, NodeRef<'a>)>> {
        let Node::Object(span) = self.node else {
            return None;
        };
        let tree = self.tree;
        Some(
            tree.links_of(*span)
                .iter()
                .map(move |link| (tree.text_of(link.key), self.at(link.node))),
        )
    }

    /// This node as a `serde_json::Value`.
    pub fn to_value(self) -> Value {
        match self.node {
            Node::Null => Value::Null,
            Node::Bool(value) => Value::Bool(*value),
            Node::Number(value) => Value::Number(value.clone()),
            Node::String(span) => Value::String(self.tree.text_of(*span).to_string()),
            Node::Array(_) => Value::Array(
                self.elements()
                    .into_iter()
                    .flatten()
                    .map(NodeRef::to_value)
                    .collect(),
            ),
            Node::Object(_) => {
                let mut map = Map::new();
                for (key, node) in self.entries().into_iter().flatten() {
                    map.insert(key.to_string(), node.to_value());
                }
                Value::Object(map)
            }
        }
    }
}

/// Trees are equal when they hold the same JSON (duplicate keys resolved, key order ignored).
impl PartialEq for PrunedTree {
    fn eq(&self, other: &Self) -> bool {
        self.to_value() == other.to_value()
    }
}

impl fmt::Debug for PrunedTree {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.to_value())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_value_survives_the_round_trip() {
        let value = json!({"spec": {"containers": [{"name": "a", "image": "r/a:v1"}, 7, null, true],
            "volumes": [], "x": {}, "n": -1.5, "s": "é\"\\"}});
        let tree = PrunedTree::from_value(&value);
        assert_eq!(tree.to_value(), value);
        let spec = tree.root().get("spec").expect("spec");
        let first = spec
            .get("containers")
            .and_then(|c| c.elements())
            .and_then(|mut e| e.next())
            .expect("a container");
        assert_eq!(first.get("image").and_then(NodeRef::as_str), Some("r/a:v1"));
        assert!(spec.get("missing").is_none());
        assert!(spec.get("x").is_some_and(NodeRef::is_object));
        assert!(spec.get("n").is_some_and(|n| n.as_str().is_none()));
        assert!(PrunedTree::default().root().is_null());
    }

    #[test]
    fn the_last_of_duplicate_keys_counts() {
        let mut builder = TreeBuilder::new();
        let mark = builder.open();
        let first = builder.string("first");
        builder.entry("image", first);
        let inner = builder.open();
        let deep = builder.string("deep");
        builder.entry("image", deep);
        let object = builder.close_object(inner);
        builder.entry("other", object);
        let last = builder.string("last");
        builder.entry("image", last);
        let root = builder.close_object(mark);
        let tree = builder.finish(root);
        assert_eq!(
            tree.root().get("image").and_then(NodeRef::as_str),
            Some("last")
        );
        assert_eq!(
            tree.to_value(),
            json!({"image": "last", "other": {"image": "deep"}})
        );
        let keys: Vec<&str> = tree
            .root()
            .entries()
            .into_iter()
            .flatten()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(keys, ["image", "other", "image"]);
    }
}
