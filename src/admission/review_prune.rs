//! Reading only the parts of a workload's `spec` that admission looks at.
//!
//! A pod spec is mostly what admission never reads (environment, resources, probes, mounts,
//! affinity...). Building a `serde_json::Value` of all of it was the largest cost of a cached
//! admission; here the JSON is walked once and only the fields on the way to images, image
//! volumes, pull secrets and the service account are built, everything else skipped without an
//! allocation. The result keeps the same structure and positions (an array keeps every element,
//! so `/spec/containers/2/image` points where it did), so [`super::images`] reads it exactly as it
//! would read the whole spec. A node of an unexpected JSON type is kept whole, so type errors are
//! reported as before. This serde visitor builds a `Value` (converted to a `PrunedTree`) and is
//! the reference reader; the one-pass reader (`review_scan.rs`) prunes by the same [`Shape`]s
//! straight into a `PrunedTree`.

use std::fmt;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};

/// Which parts of a JSON node are kept.
pub(super) enum Shape {
    /// The whole node.
    Whole,
    /// Of an object, these keys with their own shapes; other keys are skipped.
    Fields(&'static [(&'static str, &'static Shape)]),
    /// Of an array, every element with this shape.
    Each(&'static Shape),
}

/// A container (also init and ephemeral): its name and image.
static CONTAINER: Shape = Shape::Fields(&[("name", &Shape::Whole), ("image", &Shape::Whole)]);
/// A volume: its name and, for image volumes, the image source.
static VOLUME: Shape = Shape::Fields(&[("name", &Shape::Whole), ("image", &Shape::Whole)]);
/// The metadata of a pod template: its annotations.
static TEMPLATE_METADATA: Shape = Shape::Fields(&[("annotations", &Shape::Whole)]);

/// A pod spec, or the spec of a workload on the way to one (`template`, `jobTemplate`).
pub(super) static SPEC: Shape = Shape::Fields(&[
    ("containers", &Shape::Each(&CONTAINER)),
    ("initContainers", &Shape::Each(&CONTAINER)),
    ("ephemeralContainers", &Shape::Each(&CONTAINER)),
    ("volumes", &Shape::Each(&VOLUME)),
    ("imagePullSecrets", &Shape::Whole),
    ("serviceAccountName", &Shape::Whole),
    ("serviceAccount", &Shape::Whole),
    ("template", &TEMPLATE),
    ("jobTemplate", &TEMPLATE),
]);

/// A pod template (or a CronJob's job template): metadata annotations and spec.
pub(super) static TEMPLATE: Shape =
    Shape::Fields(&[("metadata", &TEMPLATE_METADATA), ("spec", &SPEC)]);

/// Reads one JSON node keeping what `shape` says.
pub(super) struct Pruned(pub(super) &'static Shape);

impl<'de> DeserializeSeed<'de> for Pruned {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        match self.0 {
            Shape::Whole => Value::deserialize(deserializer),
            shape => deserializer.deserialize_any(PrunedVisitor(shape)),
        }
    }
}

/// `deserialize_with` for an optional pruned field (`null` reads as absent).
pub(super) fn optional<'de, D: Deserializer<'de>>(
    shape: &'static Shape,
    deserializer: D,
) -> Result<Option<Value>, D::Error> {
    let value = Pruned(shape).deserialize(deserializer)?;
    Ok((!value.is_null()).then_some(value))
}

struct PrunedVisitor(&'static Shape);

impl<'de> Visitor<'de> for PrunedVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let element = match self.0 {
            Shape::Each(element) => *element,
            _ => &Shape::Whole,
        };
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
        while let Some(item) = seq.next_element_seed(Pruned(element))? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut kept = Map::new();
        match self.0 {
            Shape::Fields(fields) => {
                while let Some(field) = map.next_key_seed(FieldKey(fields))? {
                    match field {
                        Some((name, shape)) => {
                            kept.insert(name.to_string(), map.next_value_seed(Pruned(shape))?);
                        }
                        None => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
            }
            _ => {
                while let Some((key, value)) = map.next_entry::<String, Value>()? {
                    kept.insert(key, value);
                }
            }
        }
        Ok(Value::Object(kept))
    }
}

/// An object key: the kept field it names, or `None` (compared without allocating).
struct FieldKey(&'static [(&'static str, &'static Shape)]);

impl<'de> DeserializeSeed<'de> for FieldKey {
    type Value = Option<(&'static str, &'static Shape)>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for FieldKey {
    type Value = Option<(&'static str, &'static Shape)>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<Self::Value, E> {
        Ok(self
            .0
            .iter()
            .find(|(name, _)| *name == key)
            .map(|(name, shape)| (*name, *shape)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn prune(shape: &'static Shape, value: &Value) -> Value {
        let text = value.to_string();
        let mut de = serde_json::Deserializer::from_str(&text);
        Pruned(shape).deserialize(&mut de).unwrap()
    }

    #[test]
    fn a_pod_spec_keeps_what_admission_reads_in_place() {
        let spec = json!({
            "containers": [
                {"name": "app", "image": "r/app:v1", "env": [{"name": "A", "value": "1"}],
                 "resources": {"limits": {"cpu": "1"}}},
                {"name": "side", "image": "r/side:v2", "ports": [{"containerPort": 80}]}
            ],
            "initContainers": [{"name": "init", "image": "r/init:v1", "command": ["sh"]}],
            "volumes": [{"name": "data", "emptyDir": {}}, {"name": "m", "image": {"reference": "r/m:v1"}}],
            "imagePullSecrets": [{"name": "pull"}],
            "serviceAccountName": "builder",
            "affinity": {"nodeAffinity": {}},
            "nodeSelector": {"disk": "ssd"}
        });
        assert_eq!(
            prune(&SPEC, &spec),
            json!({
                "containers": [{"name": "app", "image": "r/app:v1"}, {"name": "side", "image": "r/side:v2"}],
                "initContainers": [{"name": "init", "image": "r/init:v1"}],
                "volumes": [{"name": "data"}, {"name": "m", "image": {"reference": "r/m:v1"}}],
                "imagePullSecrets": [{"name": "pull"}],
                "serviceAccountName": "builder"
            })
        );
    }

    #[test]
    fn templates_keep_their_annotations_and_pod_spec() {
        let spec = json!({
            "schedule": "* * * * *",
            "jobTemplate": {"metadata": {"labels": {"a": "b"}, "annotations": {"k": "v"}},
                "spec": {"backoffLimit": 2, "template": {"metadata": {"annotations": {"x": "y"}},
                    "spec": {"containers": [{"name": "c", "image": "r/c:v1", "args": ["1"]}]}}}}
        });
        assert_eq!(
            prune(&SPEC, &spec),
            json!({"jobTemplate": {"metadata": {"annotations": {"k": "v"}},
                "spec": {"template": {"metadata": {"annotations": {"x": "y"}},
                    "spec": {"containers": [{"name": "c", "image": "r/c:v1"}]}}}}})
        );
    }

    #[test]
    fn nodes_of_unexpected_types_are_kept_whole() {
        let spec = json!({"containers": {"name": "not-a-list"}, "volumes": [7, "x", null]});
        assert_eq!(prune(&SPEC, &spec), spec);
        assert_eq!(prune(&SPEC, &json!("text")), json!("text"));
    }
}
