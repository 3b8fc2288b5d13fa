//! The ordered JSON tree `review_structured` edits reviews in: a value that keeps its fields'
//! order, duplicate keys and the spelling of its scalars (strings as their JSON text between the
//! quotes), read from the fixtures with serde, walked by paths of indices, and written back out as
//! JSON text. Pulled into that target with `#[path = "review_tree.rs"] mod`.

use std::fmt::{self, Write as _};

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

/// A JSON value that keeps its fields' order, duplicate keys and the spelling of its scalars.
#[derive(Clone, Debug)]
pub(crate) enum Node {
    Null,
    Bool(bool),
    /// A number as written out (not necessarily valid JSON).
    Number(String),
    /// A string's text between the quotes, escapes as written.
    String(String),
    Array(Vec<Node>),
    /// Fields in order; keys as a string's text between the quotes.
    Object(Vec<(String, Node)>),
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        deserializer.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E>(self) -> std::result::Result<Node, E> {
        Ok(Node::Null)
    }

    fn visit_bool<E>(self, v: bool) -> std::result::Result<Node, E> {
        Ok(Node::Bool(v))
    }

    fn visit_u64<E>(self, v: u64) -> std::result::Result<Node, E> {
        Ok(Node::Number(v.to_string()))
    }

    fn visit_i64<E>(self, v: i64) -> std::result::Result<Node, E> {
        Ok(Node::Number(v.to_string()))
    }

    fn visit_f64<E>(self, v: f64) -> std::result::Result<Node, E> {
        Ok(Node::Number(format!("{v:?}")))
    }

    fn visit_str<E>(self, v: &str) -> std::result::Result<Node, E> {
        Ok(Node::String(escape(v)))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Node::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<Node, A::Error> {
        let mut fields = Vec::new();
        while let Some((key, value)) = map.next_entry::<String, Node>()? {
            fields.push((escape(&key), value));
        }
        Ok(Node::Object(fields))
    }
}

/// A string's JSON text as Go's encoder writes it (`<`, `>`, `&` escaped too).
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' | '\0'..='\u{1f}' => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out
}

pub(crate) fn s(text: &str) -> Node {
    Node::String(escape(text))
}

pub(crate) fn obj(fields: Vec<(&str, Node)>) -> Node {
    Node::Object(
        fields
            .into_iter()
            .map(|(key, value)| (key.to_string(), value))
            .collect(),
    )
}

impl Node {
    pub(crate) fn fields(&self) -> Option<&Vec<(String, Node)>> {
        match self {
            Node::Object(fields) => Some(fields),
            _ => None,
        }
    }

    pub(crate) fn fields_mut(&mut self) -> Option<&mut Vec<(String, Node)>> {
        match self {
            Node::Object(fields) => Some(fields),
            _ => None,
        }
    }

    /// The index of the first field `key`.
    pub(crate) fn index_of(&self, key: &str) -> Option<usize> {
        self.fields()?.iter().position(|(k, _)| k == key)
    }

    pub(crate) fn get(&self, key: &str) -> Option<&Node> {
        let index = self.index_of(key)?;
        self.fields().map(|fields| &fields[index].1)
    }

    pub(crate) fn get_mut(&mut self, key: &str) -> Option<&mut Node> {
        let index = self.index_of(key)?;
        self.fields_mut().map(|fields| &mut fields[index].1)
    }

    /// Sets the first field `key`, or inserts it where `order` (Go struct order) puts it.
    pub(crate) fn set(&mut self, key: &str, value: Node, order: &[&str]) {
        if let Some(slot) = self.get_mut(key) {
            *slot = value;
            return;
        }
        let Some(fields) = self.fields_mut() else {
            return;
        };
        let rank = order.iter().position(|k| *k == key).unwrap_or(order.len());
        let at = fields
            .iter()
            .rposition(|(k, _)| order.iter().position(|o| o == k).is_some_and(|r| r < rank))
            .map_or(0, |i| i + 1);
        fields.insert(at, (key.to_string(), value));
    }

    pub(crate) fn remove(&mut self, key: &str) -> Option<Node> {
        let index = self.index_of(key)?;
        self.fields_mut().map(|fields| fields.remove(index).1)
    }
}

/// The node at `path` (indices of fields and elements).
pub(crate) fn at<'n>(mut node: &'n Node, path: &[usize]) -> Option<&'n Node> {
    for &i in path {
        node = match node {
            Node::Array(items) => items.get(i)?,
            Node::Object(fields) => &fields.get(i)?.1,
            _ => return None,
        };
    }
    Some(node)
}

pub(crate) fn at_mut<'n>(mut node: &'n mut Node, path: &[usize]) -> Option<&'n mut Node> {
    for &i in path {
        node = match node {
            Node::Array(items) => items.get_mut(i)?,
            Node::Object(fields) => &mut fields.get_mut(i)?.1,
            _ => return None,
        };
    }
    Some(node)
}

/// The path of the first fields `keys`, from `node`.
pub(crate) fn find(node: &Node, keys: &[&str]) -> Option<Vec<usize>> {
    let mut path = Vec::new();
    let mut node = node;
    for key in keys {
        let index = node.index_of(key)?;
        path.push(index);
        node = at(node, &[index])?;
    }
    Some(path)
}

/// Every path under `node` (itself included), prefixed by `prefix`.
pub(crate) fn collect(node: &Node, prefix: &mut Vec<usize>, out: &mut Vec<Vec<usize>>) {
    out.push(prefix.clone());
    let children: Box<dyn Iterator<Item = &Node>> = match node {
        Node::Array(items) => Box::new(items.iter()),
        Node::Object(fields) => Box::new(fields.iter().map(|(_, value)| value)),
        _ => return,
    };
    for (i, child) in children.enumerate() {
        prefix.push(i);
        collect(child, prefix, out);
        prefix.pop();
    }
}

/// How the body is written: no whitespace (the API server's way), indented, or spaced.
#[derive(Clone, Copy)]
pub(crate) enum Style {
    Compact,
    Pretty,
    Spaced,
}

pub(crate) fn emit(node: &Node, style: Style, depth: usize, out: &mut Vec<u8>) {
    let newline = |out: &mut Vec<u8>, depth: usize| match style {
        Style::Compact => {}
        Style::Pretty => {
            out.push(b'\n');
            out.extend(std::iter::repeat_n(b' ', 2 * depth));
        }
        Style::Spaced => out.extend_from_slice(b" \t\r\n"),
    };
    match node {
        Node::Null => out.extend_from_slice(b"null"),
        Node::Bool(true) => out.extend_from_slice(b"true"),
        Node::Bool(false) => out.extend_from_slice(b"false"),
        Node::Number(text) => out.extend_from_slice(text.as_bytes()),
        Node::String(text) => {
            out.push(b'"');
            out.extend_from_slice(text.as_bytes());
            out.push(b'"');
        }
        Node::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                newline(out, depth + 1);
                emit(item, style, depth + 1, out);
            }
            if !items.is_empty() {
                newline(out, depth);
            }
            out.push(b']');
        }
        Node::Object(fields) => {
            out.push(b'{');
            for (i, (key, value)) in fields.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                newline(out, depth + 1);
                out.push(b'"');
                out.extend_from_slice(key.as_bytes());
                out.push(b'"');
                out.push(b':');
                if !matches!(style, Style::Compact) {
                    out.push(b' ');
                }
                emit(value, style, depth + 1, out);
            }
            if !fields.is_empty() {
                newline(out, depth);
            }
            out.push(b'}');
        }
    }
}
