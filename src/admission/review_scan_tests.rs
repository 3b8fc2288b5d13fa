//! The one-pass reader against the serde_json reference: same request, or both refuse with the
//! same kind of error.

use super::super::images::workload_of;
use super::super::review::{
    ReviewError, parse_review, parse_review_reference, parse_workload_review_owned,
};
use super::*;
use serde_json::json;

/// Same request, or the same kind of refusal (messages differ: they name bytes, not lines); and
/// where the workload reader reads the body, the same request and workload as the general reader.
fn assert_same(body: &[u8]) {
    workload_reader_agrees(body);
    let new = parse_review(body);
    let reference = parse_review_reference(body);
    match (&new, &reference) {
        (Ok(new), Ok(reference)) => assert_eq!(new, reference, "{}", String::from_utf8_lossy(body)),
        (Err(new), Err(reference)) => assert_eq!(
            std::mem::discriminant(new),
            std::mem::discriminant(reference),
            "{new:?} vs {reference:?} for {}",
            String::from_utf8_lossy(body)
        ),
        _ => panic!(
            "one-pass {new:?} vs reference {reference:?} for {}",
            String::from_utf8_lossy(body)
        ),
    }
}

/// Whether the workload reader reads `body`; where it does, it must read what `parse_review` and
/// `workload_of` read.
fn workload_reader_agrees(body: &[u8]) -> bool {
    let Some((request, workload)) = parse_workload_review_owned(body) else {
        return false;
    };
    let text = String::from_utf8_lossy(body);
    let mut general = parse_review(body).unwrap_or_else(|e| panic!("{e}: {text}"));
    assert_eq!(workload_of(&general), Ok(Some(workload)), "{text}");
    general.object = None;
    assert_eq!(general, request, "{text}");
    true
}

fn fixtures() -> Vec<(String, Vec<u8>)> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/admission");
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| {
            let path = entry.unwrap().path();
            (path.display().to_string(), std::fs::read(&path).unwrap())
        })
        .collect();
    out.sort();
    assert!(out.len() >= 19, "fixtures missing from {dir}");
    out
}

#[test]
fn every_fixture_reads_as_the_reference_reads_it() {
    for (name, body) in fixtures() {
        let new = parse_review(&body);
        assert!(new.is_ok(), "{name}: {new:?}");
        assert_eq!(new, parse_review_reference(&body), "{name}");
        // Compact, as the API server writes it, and with every cut short.
        let value: Value = serde_json::from_slice(&body).unwrap();
        let compact = serde_json::to_vec(&value).unwrap();
        assert_same(&compact);
        for end in (0..compact.len()).step_by(7) {
            assert_same(&compact[..end]);
        }
    }
}

#[test]
fn the_workload_reader_reads_every_workload_fixture_as_the_general_reader_does() {
    for (name, body) in fixtures() {
        let general = parse_review(&body).unwrap();
        let checked = matches!(workload_of(&general), Ok(Some(_)));
        for body in [&body, &minified(&body)] {
            assert_eq!(workload_reader_agrees(body), checked, "{name}");
        }
    }
}

/// `body` without whitespace between tokens, its keys in the order written (as the API server
/// writes a review; `serde_json::to_vec` of a `Value` sorts them).
fn minified(body: &[u8]) -> Vec<u8> {
    let (mut in_string, mut escaped) = (false, false);
    let mut out = Vec::with_capacity(body.len());
    for &byte in body {
        if in_string {
            (in_string, escaped) = (escaped || byte != b'"', !escaped && byte == b'\\');
        } else if byte.is_ascii_whitespace() {
            continue;
        } else {
            in_string = byte == b'"';
        }
        out.push(byte);
    }
    out
}

#[test]
fn every_byte_changed_reads_as_the_reference_reads_it() {
    // One fixture, each byte replaced by a few that change the grammar.
    let body = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/admission/pod-create.json"
    ))
    .unwrap();
    // In the order written: the workload reader reads what the change leaves readable.
    let compact = minified(&body);
    let mut read_straight = 0;
    for at in 0..compact.len() {
        for byte in [b'"', b'{', b']', b',', b'\\', b'1', b'n', 0x01, b' '] {
            let mut changed = compact.clone();
            changed[at] = byte;
            assert_same(&changed);
            read_straight += usize::from(workload_reader_agrees(&changed));
        }
    }
    // Replacing a byte of a skipped string or a kept name by `1` or `n`, say, leaves a workload.
    assert!(read_straight > compact.len(), "{read_straight}");
}

/// A Pod review with `marker` (JSON text) in place of the first container's image.
fn with_image(text: &str) -> Vec<u8> {
    let review = r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u-1",
        "kind":{"group":"","version":"v1","kind":"Pod"},"operation":"CREATE","userInfo":{"username":"me"},
        "namespace":"shop","object":{"metadata":{"name":"p","managedFields":[{"x":"SKIPPED"}]},
        "spec":{"containers":[{"name":"c","image":IMAGE,"env":[{"name":"A","value":"SKIPPED"}]}]}}}}"#;
    review.replace("IMAGE", text).into_bytes()
}

#[test]
fn tricky_values_read_as_the_reference_reads_them() {
    let images = [
        r#""r/app:v1""#,
        r#""r\u002fapp:v\u0031""#,
        r#""r/app\ud800""#,
        r#""r/app\ud83d\ude00""#,
        r#""r/app\x""#,
        r#""r/app\u12""#,
        "\"r/app\u{1}\"",
        "12",
        "-0",
        "1.5e3",
        "1e999",
        "18446744073709551616",
        "-9223372036854775809",
        "01",
        "1.",
        "-",
        "null",
        "nul",
        "true",
        "[1, {\"a\": [null]}]",
        "{\"b\": 1, \"a\": 2, \"b\": 3}",
        "{\"\\ud800\": 1}",
        "\"r/first:v1\", \"image\": \"r/last:v1\"",
        "\"r/first:v1\", \"imag\\u0065\": \"r/last:v1\"",
        "[1,]",
        "{\"a\":1,}",
    ];
    for image in images {
        assert_same(&with_image(image));
    }
    let image_of = |text: &str| {
        parse_review(&with_image(text)).map(|r| {
            r.object
                .map(|o| o.data.to_value()["spec"]["containers"][0]["image"].clone())
        })
    };
    assert_eq!(
        image_of(r#""r\u002fapp:v\u0031""#),
        Ok(Some(json!("r/app:v1")))
    );
    assert_eq!(
        image_of("18446744073709551616"),
        Ok(Some(json!(18446744073709551616.0)))
    );
    assert!(matches!(
        image_of(r#""r/app\ud800""#),
        Err(ReviewError::NotJson(_))
    ));
    assert!(matches!(image_of("1e999"), Err(ReviewError::NotJson(_))));
    // In skipped fields: lone surrogates pass, other bad JSON does not, big numbers pass.
    for skipped in [r#""\ud800""#, r#""\q""#, "1e999", "01", "[1,]", "{\"a\" 1}"]
        .into_iter()
        .map(str::to_string)
        .chain([format!("{}{}", "[".repeat(200), "]".repeat(200))])
    {
        let skipped = skipped.as_str();
        let body = String::from_utf8(with_image("\"r/a:v1\"")).unwrap();
        let once = body.replacen("\"SKIPPED\"", skipped, 1);
        let expected_ok = matches!(skipped, r#""\ud800""# | "1e999") || skipped.starts_with("[[");
        assert_eq!(
            parse_review(once.as_bytes()).is_ok(),
            expected_ok,
            "{skipped}"
        );
        assert_same(once.as_bytes());
        assert_same(body.replacen("\"SKIPPED\"", skipped, 2).as_bytes());
    }
    // Escaped keys are compared decoded.
    let body = String::from_utf8(with_image("\"r/a:v1\"")).unwrap();
    let escaped = body
        .replace("\"image\"", "\"imag\\u0065\"")
        .replace("\"uid\"", "\"\\u0075id\"");
    assert_eq!(
        parse_review(escaped.as_bytes()),
        parse_review(body.as_bytes())
    );
    assert_same(escaped.as_bytes());
}

#[test]
fn the_request_structures_are_judged_as_the_reference_judges_them() {
    let body = String::from_utf8(with_image("\"r/a:v1\"")).unwrap();
    let cases = [
        ("\"uid\":\"u-1\",", "\"uid\":\"u-1\",\"uid\":\"u-2\","),
        ("\"uid\":\"u-1\",", "\"uid\":\"u-1\",\"uid\" ,"),
        ("\"uid\":\"u-1\",", ""),
        ("\"uid\":\"u-1\"", "\"uid\":7"),
        ("\"uid\":\"u-1\"", "\"uid\":-"),
        ("\"uid\":\"u-1\"", "\"uid\":null"),
        ("\"operation\":\"CREATE\"", "\"operation\":\"MAKE\""),
        (
            "\"operation\":\"CREATE\"",
            "\"operation\":{\"DELETE\":null}",
        ),
        ("\"operation\":\"CREATE\"", "\"operation\":{\"DELETE\":1}"),
        (
            "\"operation\":\"CREATE\"",
            "\"operation\":{\"DELETE\":null,\"x\":1}",
        ),
        ("\"operation\":\"CREATE\"", "\"operation\":7"),
        ("\"operation\":\"CREATE\"", "\"operation\":{7:null}"),
        ("\"operation\":\"CREATE\"", "\"operation\":{}"),
        (
            "\"operation\":\"CREATE\"",
            "\"operation\":{\"CREATE\" null}",
        ),
        ("\"operation\":\"CREATE\"", "\"operation\":\"CR\\u0045ATE\""),
        (
            "\"userInfo\":{\"username\":\"me\"}",
            "\"userInfo\":{\"username\":\"me\",\"username\":\"you\",\"groups\":[\"a\"],\"extra\":{\"k\":[\"v\"],\"k\":[]}}",
        ),
        ("\"userInfo\":{\"username\":\"me\"}", "\"userInfo\":null"),
        ("\"userInfo\":{\"username\":\"me\"}", "\"userInfo\":[]"),
        (
            "\"userInfo\":{\"username\":\"me\"}",
            "\"userInfo\":{\"groups\":[null]}",
        ),
        (
            "\"namespace\":\"shop\"",
            "\"namespace\":null,\"dryRun\":null,\"subResource\":null",
        ),
        (
            "\"namespace\":\"shop\"",
            "\"namespace\":\"shop\",\"dryRun\":true,\"name\":null",
        ),
        (
            "\"namespace\":\"shop\"",
            "\"namespace\":\"shop\",\"dryRun\":\"yes\"",
        ),
        (
            "\"namespace\":\"shop\"",
            "\"namespace\":\"shop\",\"object\":null",
        ),
        (
            "\"namespace\":\"shop\"",
            "\"namespace\":\"shop\",\"kind\":null",
        ),
        (
            "\"metadata\":{",
            "\"metadata\":{\"annotations\":{\"a\":\"b\",\"a\":\"c\"},\"namespace\":\"n\",\"generateName\":\"g-\",",
        ),
        ("\"metadata\":{", "\"metadata\":{\"annotations\":{\"a\":1},"),
        (
            "\"metadata\":{\"name\":\"p\",",
            "\"metadata\":{\"name\":\"p\",\"name\":\"q\",",
        ),
        ("\"spec\":{", "\"template\":null,\"spec\":{"),
        ("\"spec\":{", "\"spec\":null,\"spec\":{"),
        ("\"kind\":{\"group\":\"\",", "\"kind\":{"),
        ("\"kind\":{\"group\":\"\",", "\"kind\":{\"group\":null,"),
        ("\"request\":{", "\"request\":null,\"x\":{"),
        ("{\"apiVersion\"", " \t\n\r{\"apiVersion\""),
        (
            "{\"apiVersion\"",
            "{\"apiVersion\":\"admission.k8s.io/v1\",\"apiVersion\"",
        ),
    ];
    for (from, to) in cases {
        assert!(body.contains(from), "{from}");
        assert_same(body.replacen(from, to, 1).as_bytes());
    }
    for body in [
        &b""[..],
        b"null",
        b"\"x\"",
        b"7",
        b"{}",
        b"{} x",
        b"{}  ",
        b"{\"kind\":\"AdmissionReview\"}",
    ] {
        assert_same(body);
    }
}

#[test]
fn kept_containers_count_towards_the_depth_limit_and_skipped_ones_do_not() {
    for depth in [100, 120, 121, 122, 123, 124, 130, 300] {
        let nested = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        // Kept whole: imagePullSecrets.
        let body = String::from_utf8(with_image("\"r/a:v1\"")).unwrap();
        let kept = body.replacen(
            "\"containers\"",
            &format!("\"imagePullSecrets\":{nested},\"containers\""),
            1,
        );
        assert_eq!(
            parse_review(kept.as_bytes()).is_ok(),
            depth < 124,
            "{depth}"
        );
        assert_same(kept.as_bytes());
        let skipped = body.replacen("\"SKIPPED\"", &nested, 1);
        assert!(parse_review(skipped.as_bytes()).is_ok(), "{depth}");
        assert_same(skipped.as_bytes());
    }
}

#[test]
fn skipped_values_nest_objects_and_arrays_past_the_first_64_levels() {
    let body = String::from_utf8(with_image("\"r/a:v1\"")).unwrap();
    for depth in [63, 64, 65, 66, 129, 300] {
        let object_at = |level: usize| level % 3 != 1;
        let open: String = (0..depth)
            .map(|level| if object_at(level) { "{\"k\":" } else { "[" })
            .collect();
        let mut close: Vec<u8> = (0..depth)
            .rev()
            .map(|level| if object_at(level) { b'}' } else { b']' })
            .collect();
        let nested = format!("{open}1{}", String::from_utf8_lossy(&close));
        let skipped = body.replacen("\"SKIPPED\"", &nested, 1);
        assert!(parse_review(skipped.as_bytes()).is_ok(), "{depth}");
        assert_same(skipped.as_bytes());
        // One container closed by the other kind's bracket, innermost, outermost, around the
        // 64th level: refused, as the reference refuses it.
        for wrong in [
            0,
            1,
            depth - 65.min(depth - 1),
            depth - 64.min(depth - 1),
            depth - 1,
        ] {
            close[wrong] = if close[wrong] == b'}' { b']' } else { b'}' };
            let nested = format!("{open}1{}", String::from_utf8_lossy(&close));
            let broken = body.replacen("\"SKIPPED\"", &nested, 1);
            assert!(
                matches!(
                    parse_review(broken.as_bytes()),
                    Err(ReviewError::NotJson(_))
                ),
                "{depth} {wrong}"
            );
            assert_same(broken.as_bytes());
            close[wrong] = if close[wrong] == b'}' { b']' } else { b'}' };
        }
    }
}

#[test]
fn a_structure_written_as_an_array_is_refused_on_purpose() {
    let body = String::from_utf8(with_image("\"r/a:v1\"")).unwrap();
    let array = body.replacen(
        "{\"group\":\"\",\"version\":\"v1\",\"kind\":\"Pod\"}",
        "[\"\",\"v1\",\"Pod\"]",
        1,
    );
    assert!(parse_review_reference(array.as_bytes()).is_ok());
    let error = parse_review(array.as_bytes()).err();
    assert!(
        matches!(&error, Some(ReviewError::NotAReview(m)) if m.contains(ARRAY_FORM)),
        "{error:?}"
    );
}

#[test]
fn find_special_finds_the_first_quote_backslash_or_control_byte() {
    let text = "abcdefghijklmnopqrstuvwxyz0123456789é€";
    for at in 0..text.len() {
        for special in [b'"', b'\\', 0x00, 0x1f] {
            let mut bytes = text.as_bytes().to_vec();
            bytes[at] = special;
            assert_eq!(find_special(&bytes, 0), at);
            assert_eq!(find_special(&bytes, at), at);
            if at + 1 < bytes.len() {
                assert_eq!(find_special(&bytes, at + 1), bytes.len());
            }
        }
    }
    assert_eq!(find_special(text.as_bytes(), 0), text.len());
    assert_eq!(find_special(b" !#[]~\x7f\x20", 0), 8);
}

#[test]
fn find_special_agrees_with_the_byte_rule_for_every_byte_at_every_offset() {
    let plain = |byte: u8| byte != b'"' && byte != b'\\' && byte >= 0x20;
    for byte in 0..=u8::MAX {
        for len in [1usize, 7, 8, 9, 15, 16, 17, 31, 33] {
            for at in 0..len {
                let mut bytes = vec![b'a'; len];
                bytes[at] = byte;
                let expected = if plain(byte) { len } else { at };
                for from in [0, at] {
                    assert_eq!(
                        find_special(&bytes, from),
                        expected,
                        "byte {byte:#x} at {at} of {len}"
                    );
                }
            }
        }
    }
}

#[test]
fn the_workload_reader_leaves_the_unusual_to_the_general_reader() {
    let pod = String::from_utf8(with_image("\"r/a:v1\"")).unwrap();
    assert!(workload_reader_agrees(pod.as_bytes()));
    // (from, to, whether the workload reader still reads it)
    let cases = [
        // Read as the general reader reads them.
        ("\"r/a:v1\"", "\"r\\u002fa:v1\"", true),
        ("\"name\":\"c\"", "\"name\":null", true),
        ("\"name\":\"c\",", "", true),
        (
            "\"env\"",
            "\"serviceAccountName\":\"\",\"serviceAccount\":\"sa\",\"env\"",
            true,
        ),
        (
            "\"metadata\":{",
            "\"metadata\":{\"annotations\":{\"a\":\"b\",\"a\":\"c\"},\"generateName\":\"g-\",",
            true,
        ),
        (
            "\"containers\"",
            "\"volumes\":[{\"name\":\"v\",\"image\":{\"reference\":\"r/data:v1\",\"pullPolicy\":\"Always\"}},{\"name\":\"e\",\"emptyDir\":{}}],\"imagePullSecrets\":[{\"name\":\"s\"},{\"name\":\"s\"},{\"name\":\"\"}],\"containers\"",
            true,
        ),
        ("\"spec\":{", "\"status\":{\"x\":[1e999]},\"spec\":{", true),
        // Left to the general reader, which reads or refuses them.
        ("\"operation\":\"CREATE\",", "", false),
        (
            "\"kind\":{\"group\":\"\",\"version\":\"v1\",\"kind\":\"Pod\"},",
            "",
            false,
        ),
        (
            "\"operation\":\"CREATE\"",
            "\"operation\":\"DELETE\"",
            false,
        ),
        ("\"spec\":{", "\"spec\":null,\"x\":{", false),
        ("\"r/a:v1\"", "\"r/a:v1\",\"image\":\"r/b:v1\"", false),
        ("\"r/a:v1\"", "\" \"", false),
        ("\"r/a:v1\"", "null", false),
        ("\"r/a:v1\"", "7", false),
        (
            "\"containers\"",
            "\"imagePullSecrets\":[{\"name\":\"s\",\"n\":1}],\"containers\"",
            false,
        ),
        (
            "\"containers\"",
            "\"imagePullSecrets\":[{\"name\":\"s\",\"n\":[]}],\"containers\"",
            false,
        ),
        (
            "\"containers\"",
            "\"volumes\":[{\"name\":\"v\",\"image\":{}}],\"containers\"",
            false,
        ),
        ("\"containers\"", "\"template\":{},\"containers\"", false),
        ("\"spec\":{", "\"template\":{},\"spec\":{", false),
        (
            "\"containers\":[",
            "\"containers\":[],\"containers\":[",
            false,
        ),
        ("\"kind\":{", "\"subResource\":\"status\",\"kind\":{", false),
    ];
    for (from, to, read) in cases {
        assert!(pod.contains(from), "{from}");
        let body = pod.replacen(from, to, 1);
        assert_same(body.as_bytes());
        assert_eq!(workload_reader_agrees(body.as_bytes()), read, "{body}");
    }
    // A subresource written after the object changes what is checked: read again, generally.
    let status = pod.replacen("}}}}", "}},\"subResource\":\"status\"}}", 1);
    assert_ne!(status, pod);
    assert!(matches!(
        workload_of(&parse_review(status.as_bytes()).unwrap()),
        Ok(None)
    ));
    assert!(!workload_reader_agrees(status.as_bytes()));
}

#[test]
fn the_workload_reader_merges_template_annotations_outer_first() {
    let job = |template_metadata: &str, order_spec_first: bool| {
        let spec = r#""spec":{"template":{"metadata":{"annotations":{"b":"pod","c":"pod"}},"spec":{"containers":[{"name":"c","image":"r/a:v1"}]}}}"#;
        let metadata = format!(r#""metadata":{template_metadata}"#);
        let job_template = if order_spec_first {
            format!("{{{spec},{metadata}}}")
        } else {
            format!("{{{metadata},{spec}}}")
        };
        format!(
            r#"{{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{{"uid":"u-1","kind":{{"group":"batch","version":"v1","kind":"CronJob"}},"namespace":"n","operation":"CREATE","object":{{"metadata":{{"name":"j"}},"spec":{{"schedule":"x","jobTemplate":{job_template}}}}}}}}}"#
        )
    };
    let body = job(r#"{"annotations":{"a":"job","b":"job"}}"#, false);
    assert!(workload_reader_agrees(body.as_bytes()));
    let (_, workload) = parse_workload_review_owned(body.as_bytes()).unwrap();
    let annotations: Vec<_> = workload
        .template_annotations
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    assert_eq!(annotations, ["a=job", "b=pod", "c=pod"]);
    for (metadata, spec_first) in [
        (r#"{"annotations":{"a":"job"}}"#, true),
        (r#"{"annotations":{"a":1}}"#, false),
        (r#"{"annotations":{"a":"x","a":"y"}}"#, false),
        ("null", false),
    ] {
        let body = job(metadata, spec_first);
        assert_same(body.as_bytes());
        assert!(!workload_reader_agrees(body.as_bytes()), "{body}");
    }
    for metadata in [r#"{"annotations":null}"#, r#"{"labels":{"x":"y"}}"#] {
        assert!(workload_reader_agrees(job(metadata, false).as_bytes()));
    }
}
