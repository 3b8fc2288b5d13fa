//! Digest pinning for `/mutate`: rewrites each verified `repo:tag` into `repo:tag@sha256:...` so
//! the node pulls exactly the manifest that was verified, even if the tag moves afterwards.
//!
//! The text is kept as written and the digest appended (`nginx:1.25` becomes
//! `nginx:1.25@sha256:...`, not `docker.io/library/nginx:1.25@...`): the tag stays readable in
//! `kubectl get`, and GitOps tools see the smallest possible change. Container runtimes pull by
//! the digest and ignore the tag when both are given.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::images::Workload;
use crate::reference::normalise_digest;

/// `image_as_written` pinned to `digest`: `"{image}@{digest}"`, the digest in lower case.
///
/// `None` when the image already names a digest (it is pinned, and a second `@` would make it
/// invalid) or when `digest` is not a well-formed `sha256:`/`sha384:`/`sha512:` digest (writing it
/// would break the pod rather than pin it).
pub fn pinned_reference(image_as_written: &str, digest: &str) -> Option<String> {
    if image_as_written.contains('@') {
        return None;
    }
    let digest = normalise_digest(digest)?;
    Some(format!("{image_as_written}@{digest}"))
}

/// RFC 6902 operations that pin every image of `workload` found in `digests` (keyed by the image
/// as written): one `replace` per image field, in the workload's image order. Images already
/// pinned, or absent from `digests`, are left alone. Empty when there is nothing to pin, in which
/// case the response should carry no patch at all.
pub fn pin_patch(workload: &Workload<'_>, digests: &BTreeMap<String, String>) -> Vec<Value> {
    workload
        .images
        .iter()
        .filter_map(|image| {
            let digest = digests.get(&*image.image)?;
            let pinned = pinned_reference(&image.image, digest)?;
            let path = workload.pointer_of(image);
            Some(json!({"op": "replace", "path": path, "value": pinned}))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admission::images::{ContainerKind, WorkloadImage};

    const DIGEST: &str = "sha256:4f53cda18c2baa0c0354bb5f9a3ecbe5ed12ab4d8e11ba873c2f11161202b945";
    const OTHER: &str = "sha256:0000000000000000000000000000000000000000000000000000000000000001";

    /// A pod of `images`: (list, index in it, image as written).
    fn workload(images: &[(ContainerKind, usize, &str)]) -> Workload<'static> {
        Workload {
            kind: "Pod".into(),
            namespace: "shop".into(),
            name: "web".into(),
            images: images
                .iter()
                .map(|(kind, index, image)| WorkloadImage {
                    index: *index,
                    image: image.to_string().into(),
                    container: "c".into(),
                    kind: *kind,
                })
                .collect(),
            annotations: BTreeMap::new(),
            template_annotations: BTreeMap::new(),
            pod_spec_pointer: "/spec",
            image_pull_secrets: vec![],
            service_account: Some("default".into()),
        }
    }

    #[test]
    fn pinning_keeps_the_text_as_written() {
        assert_eq!(
            pinned_reference("nginx:1.25", DIGEST).as_deref(),
            Some(format!("nginx:1.25@{DIGEST}").as_str())
        );
        assert_eq!(
            pinned_reference("127.0.0.1:5000/prod/app", DIGEST).as_deref(),
            Some(format!("127.0.0.1:5000/prod/app@{DIGEST}").as_str())
        );
    }

    #[test]
    fn digest_is_written_in_lower_case() {
        let upper = DIGEST.to_ascii_uppercase().replacen("SHA256", "sha256", 1);
        assert_eq!(
            pinned_reference("nginx:1.25", &upper).as_deref(),
            Some(format!("nginx:1.25@{DIGEST}").as_str())
        );
    }

    #[test]
    fn already_pinned_or_bad_digest_gives_none() {
        assert_eq!(
            pinned_reference(&format!("nginx:1.25@{OTHER}"), DIGEST),
            None
        );
        assert_eq!(pinned_reference(&format!("nginx@{OTHER}"), DIGEST), None);
        assert_eq!(pinned_reference("nginx:1.25", "sha256:abc"), None);
        assert_eq!(
            pinned_reference("nginx:1.25", "md5:d41d8cd98f00b204e9800998ecf8427e"),
            None
        );
        assert_eq!(pinned_reference("nginx:1.25", ""), None);
    }

    #[test]
    fn patch_replaces_only_unpinned_images_with_a_digest() {
        let pinned = format!("registry.example.com/prod/db@{OTHER}");
        use ContainerKind::{Container, ImageVolume, InitContainer};
        let workload = workload(&[
            (Container, 0, "nginx:1.25"),
            (Container, 1, pinned.as_str()),
            (Container, 2, "registry.example.com/prod/unverified:v2"),
            (InitContainer, 0, "nginx:1.25"),
            (ImageVolume, 3, "nginx:1.25"),
        ]);
        let digests = BTreeMap::from([
            ("nginx:1.25".to_string(), DIGEST.to_string()),
            (pinned.clone(), OTHER.to_string()),
        ]);
        let expected_value = format!("nginx:1.25@{DIGEST}");
        assert_eq!(
            pin_patch(&workload, &digests),
            vec![
                json!({"op": "replace", "path": "/spec/containers/0/image", "value": expected_value}),
                json!({"op": "replace", "path": "/spec/initContainers/0/image", "value": expected_value}),
                json!({"op": "replace", "path": "/spec/volumes/3/image/reference", "value": expected_value}),
            ]
        );
    }

    #[test]
    fn nothing_to_pin_gives_an_empty_patch() {
        let pinned = format!("nginx@{DIGEST}");
        let workload = workload(&[(ContainerKind::Container, 0, pinned.as_str())]);
        let digests = BTreeMap::from([(pinned.clone(), DIGEST.to_string())]);
        assert!(pin_patch(&workload, &digests).is_empty());
        assert!(pin_patch(&workload, &BTreeMap::new()).is_empty());
    }
}
