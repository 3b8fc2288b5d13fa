//! Tests of reference parsing, canonical hosts and glob matching.

use super::*;

fn parsed(s: &str) -> String {
    ImageRef::parse(s).unwrap().to_string()
}

#[test]
fn normalises_like_docker() {
    assert_eq!(parsed("nginx"), "docker.io/library/nginx:latest");
    assert_eq!(parsed("nginx:1.25"), "docker.io/library/nginx:1.25");
    assert_eq!(parsed("bitnami/redis"), "docker.io/bitnami/redis:latest");
    assert_eq!(
        parsed("index.docker.io/library/nginx"),
        "docker.io/library/nginx:latest"
    );
    assert_eq!(parsed("localhost/app"), "localhost/app:latest");
    assert_eq!(parsed("localhost:5000/a/b:v1"), "localhost:5000/a/b:v1");
    assert_eq!(
        parsed("registry.example.com/prod/app:v1"),
        "registry.example.com/prod/app:v1"
    );
    let d = format!("sha256:{}", "a".repeat(64));
    assert_eq!(
        parsed(&format!("127.0.0.1:5000/app@{d}")),
        format!("127.0.0.1:5000/app@{d}")
    );
    assert_eq!(
        parsed(&format!("app:v2@{d}")),
        format!("docker.io/library/app:v2@{d}")
    );
}

#[test]
fn digest_only_reference_has_no_tag() {
    let d = format!("sha256:{}", "b".repeat(64));
    let r = ImageRef::parse(&format!("ghcr.io/o/app@{d}")).unwrap();
    assert_eq!(r.tag(), None);
    assert_eq!(r.digest(), Some(d.as_str()));
    assert_eq!(r.repo_with_tag(), "ghcr.io/o/app");
}

#[test]
fn exact_parse_keeps_tag_absent() {
    assert_eq!(ImageRef::parse_exact("r.io/a/b").unwrap().tag(), None);
    assert_eq!(ImageRef::parse_exact("r.io:5000/a/b").unwrap().tag(), None);
    assert_eq!(
        ImageRef::parse_exact("r.io:5000/a/b:v1").unwrap().tag(),
        Some("v1")
    );
}

#[test]
fn rejects_malformed_references() {
    for bad in [
        "",
        " nginx",
        "UPPER/case",
        "app:",
        "app@sha256:abc",
        "a//b",
        "app:tag with space",
        "http://x/y",
    ] {
        let err = ImageRef::parse(bad).unwrap_err();
        assert!(
            err.to_string().starts_with("invalid image reference"),
            "{bad}: {err}"
        );
    }
}

#[test]
fn glob_semantics() {
    let cases = [
        (
            "registry.example.com/prod/**",
            "registry.example.com/prod/app:v1",
            true,
        ),
        (
            "registry.example.com/prod/**",
            "registry.example.com/prod/team/app:v1",
            true,
        ),
        (
            "registry.example.com/prod/**",
            "registry.example.com/production/app:v1",
            false,
        ),
        (
            "registry.example.com/prod/*",
            "registry.example.com/prod/app:v1",
            true,
        ),
        (
            "registry.example.com/prod/*",
            "registry.example.com/prod/team/app:v1",
            false,
        ),
        ("docker.io/library/*", "nginx", true),
        ("docker.io/library/*", "bitnami/redis", false),
        ("ghcr.io/org/app:v*", "ghcr.io/org/app:v1.2", true),
        ("ghcr.io/org/app:v*", "ghcr.io/org/app:latest", false),
        ("ghcr.io/org/ap?", "ghcr.io/org/app", true),
        ("**", "anything.io/a/b/c:d", true),
        ("*.example.com/**", "registry.example.com/x/y", true),
    ];
    for (glob, image, want) in cases {
        let g = Glob::new(glob).unwrap();
        let img = ImageRef::parse(image).unwrap();
        assert_eq!(g.matches_image(&img), want, "{glob} vs {image}");
    }
}

#[test]
fn glob_prefix_and_errors() {
    assert_eq!(
        Glob::new("registry.example.com/prod/**")
            .unwrap()
            .literal_prefix(),
        "registry.example.com/prod/"
    );
    assert!(Glob::new("").is_err());
    assert!(Glob::new("a b").is_err());
    assert!(Glob::new("a/***").is_err());
}

/// Found by the `reference` fuzz target: `1:443/1` printed as `1/1:latest`, which is the
/// Docker Hub repository `docker.io/1/1`. A dotless host keeps its default port, so the
/// canonical text parses back to the same registry (and a `Default` signature's identity
/// `myhost:443/app:v1` names the image it was made for).
#[test]
fn a_dotless_host_keeps_its_default_port() {
    for (input, want) in [
        ("1:443/1", "1:443/1:latest"),
        ("myhost:443/app:v1", "myhost:443/app:v1"),
        ("MyHost:443/app", "myhost:443/app:latest"),
    ] {
        let image = ImageRef::parse(input).unwrap();
        assert_eq!(image.to_string(), want, "{input}");
        assert_eq!(
            ImageRef::parse(&image.to_string()).unwrap(),
            image,
            "{input}"
        );
        assert_eq!(
            ImageRef::from_parts(image.registry(), image.repository(), image.tag(), None),
            Ok(image.clone()),
            "{input}"
        );
    }
    assert_eq!(parsed("myhost:8443/app"), "myhost:8443/app:latest");
    // A glob of the same spelling governs it.
    let image = ImageRef::parse("myhost:443/app:v1").unwrap();
    assert!(Glob::new("myhost:443/**").unwrap().matches_image(&image));
    // Hosts that read as hosts without their port still drop it.
    assert_eq!(
        parsed("registry.example.com:443/app"),
        "registry.example.com/app:latest"
    );
    assert_eq!(parsed("localhost:80/app"), "localhost/app:latest");
}

/// Finding 3: spellings the runtime pulls from the same registry are one image here.
#[test]
fn registry_spellings_are_canonical() {
    let d = format!("sha256:{}", "c".repeat(64));
    let same = [
        (
            "registry.example.com/prod/x",
            "registry.example.com/prod/x:latest",
        ),
        (
            "REGISTRY.EXAMPLE.COM/prod/x",
            "registry.example.com/prod/x:latest",
        ),
        (
            "Registry.Example.Com:443/prod/x:v1",
            "registry.example.com/prod/x:v1",
        ),
        (
            "registry.example.com:0443/prod/x",
            "registry.example.com/prod/x:latest",
        ),
        (
            "registry.example.com:8443/prod/x",
            "registry.example.com:8443/prod/x:latest",
        ),
        // Over HTTPS, port 80 is another endpoint: kept.
        (
            "registry.example.com:80/prod/x",
            "registry.example.com:80/prod/x:latest",
        ),
        ("docker.io/library/x", "docker.io/library/x:latest"),
        ("DOCKER.IO/library/x", "docker.io/library/x:latest"),
        ("docker.io:443/library/x", "docker.io/library/x:latest"),
        ("DOCKER.IO/x", "docker.io/library/x:latest"),
        ("index.docker.io/library/x", "docker.io/library/x:latest"),
        ("Index.Docker.IO/x", "docker.io/library/x:latest"),
        (
            "registry-1.docker.io/library/x",
            "docker.io/library/x:latest",
        ),
        (
            "REGISTRY-1.DOCKER.IO:443/library/x",
            "docker.io/library/x:latest",
        ),
        (
            "registry-1.docker.io/bitnami/redis",
            "docker.io/bitnami/redis:latest",
        ),
        ("x", "docker.io/library/x:latest"),
        // Another port of a Docker Hub alias is another server.
        ("index.docker.io:5000/x", "index.docker.io:5000/x:latest"),
        // Loopback registries are plain HTTP: `:80` is their default, `:443` is not.
        ("LOCALHOST:80/app", "localhost/app:latest"),
        ("localhost:443/app", "localhost:443/app:latest"),
        ("127.0.0.1:80/app", "127.0.0.1/app:latest"),
        ("127.0.0.1:5000/app", "127.0.0.1:5000/app:latest"),
        ("[::1]:5000/app", "[::1]:5000/app:latest"),
        ("[0:0:0:0:0:0:0:1]:80/app", "[::1]/app:latest"),
        ("[FD00::0001]:443/app", "[fd00::1]/app:latest"),
    ];
    for (input, want) in same {
        assert_eq!(parsed(input), want, "{input}");
        let pinned = ImageRef::parse(&format!("{input}@{d}")).unwrap();
        assert_eq!(
            pinned.repo_path(),
            want.rsplit_once(':').unwrap().0,
            "{input}@"
        );
    }
    // The upper-case repository path is not valid in the grammar: refused, not folded.
    for bad in [
        "registry.example.com/Prod/x",
        "DOCKER.IO/Library/x",
        "registry.example.com:99999/x",
        "registry.example.com:/x",
        "registry.example.com:4a/x",
        "-bad.example.com/x",
        "bad-.example.com/x",
        "bad..example.com/x",
        "foo_bar.com/x",
        "[::1/x",
        "[not-v6]/x",
        "[::1]x/y",
    ] {
        assert!(ImageRef::parse(bad).is_err(), "{bad}");
    }
    // The same image in every spelling: equal values, so equal cache keys.
    assert_eq!(
        ImageRef::parse("REGISTRY-1.docker.io:443/x").unwrap(),
        ImageRef::parse("x").unwrap()
    );
}

#[test]
fn grammar_edge_cases() {
    let ok = [
        ("a", "docker.io/library/a:latest"),
        ("a.b", "docker.io/library/a.b:latest"),
        ("a__b", "docker.io/library/a__b:latest"),
        ("a_b-c---d.e", "docker.io/library/a_b-c---d.e:latest"),
        ("org/a/b/c/d", "docker.io/org/a/b/c/d:latest"),
        ("a:_", "docker.io/library/a:_"),
        ("a:V1.0-RC_2", "docker.io/library/a:V1.0-RC_2"),
        ("localhost:5000", "docker.io/library/localhost:5000"),
        ("test.com:5000", "docker.io/library/test.com:5000"),
        ("foo_bar.com:8080", "docker.io/library/foo_bar.com:8080"),
        ("foo/foo_bar.com:8080", "docker.io/foo/foo_bar.com:8080"),
        ("a-b.example/c", "a-b.example/c:latest"),
        ("registry:5000/c", "registry:5000/c:latest"),
    ];
    for (input, want) in ok {
        assert_eq!(parsed(input), want, "{input}");
    }
    let long_tag = format!("a:{}", "t".repeat(128));
    assert!(ImageRef::parse(&long_tag).is_ok());
    let name_255 = format!("r.io/{}", "a".repeat(250));
    assert!(ImageRef::parse(&name_255).is_ok());
    let bad = [
        "a:".to_string(),
        "a@".to_string(),
        ":tag".to_string(),
        "/a".to_string(),
        "a/".to_string(),
        "a//b".to_string(),
        "a___b".to_string(),
        "a._b".to_string(),
        "-a".to_string(),
        "a-".to_string(),
        ".a".to_string(),
        "a:.t".to_string(),
        "a:-t".to_string(),
        "a:t/x".to_string(),
        "a:ü".to_string(),
        "aé".to_string(),
        "a@sha256".to_string(),
        format!("a@sha256:{}", "a".repeat(63)),
        format!("a@sha256:{}", "g".repeat(64)),
        format!("a@md5:{}", "a".repeat(32)),
        format!("a@SHA256:{}", "a".repeat(64)),
        format!("a@sha256:{}@sha256:{}", "a".repeat(64), "b".repeat(64)),
        format!("a:{}", "t".repeat(129)),
        format!("r.io/{}", "a".repeat(251)),
        // 251 characters as written, 265 once Docker Hub's host and `library/` are added.
        "a".repeat(251),
        "a".repeat(64).replace('a', "f"),
    ];
    for input in bad {
        assert!(ImageRef::parse(&input).is_err(), "{input}");
    }
    // Upper-case hex is accepted and lower-cased.
    let upper = format!("a@sha256:{}", "A".repeat(64));
    assert_eq!(
        ImageRef::parse(&upper).unwrap().digest(),
        Some(format!("sha256:{}", "a".repeat(64)).as_str())
    );
}

/// The hand-written parser against oci-client's regex parser (the previous implementation)
/// on inputs whose canonical host is already as written.
#[test]
fn agrees_with_oci_client_parser() {
    let d = "a".repeat(64);
    let cases = [
        "nginx".to_string(),
        "nginx:1.25".into(),
        "bitnami/redis".into(),
        "docker.io/library/nginx".into(),
        "index.docker.io/library/nginx".into(),
        "localhost/app".into(),
        "localhost:5000/a/b:v1".into(),
        "registry.example.com/prod/app:v1".into(),
        format!("127.0.0.1:5000/app@sha256:{d}"),
        format!("app:v2@sha256:{d}"),
        format!("r.io/a@sha512:{}", "b".repeat(128)),
        format!("r.io/a@sha384:{}", "b".repeat(96)),
        "test.com:tag".into(),
        "test.com:5000".into(),
        "lowercase:Uppercase".into(),
        "foo_bar.com:8080".into(),
        "foo/foo_bar.com:8080".into(),
        "opensuse/leap:15.3".into(),
        "a__b/c--d/e.f_g".into(),
        "UPPER/case".into(),
        "Uppercase:tag".into(),
        "a//b".into(),
        "app:".into(),
        "app@sha256:abc".into(),
        "app:tag with space".into(),
        "http://x/y".into(),
        "a___b".into(),
        "a-".into(),
        "-a".into(),
        "a:-t".into(),
        "r.io/a:".into(),
        "r.io/a@".into(),
        "@sha256:x".into(),
        "a/b/".into(),
        format!("a@sha256:{}", "a".repeat(65)),
        format!("a@md5:{}", "a".repeat(32)),
        format!("a:{}", "t".repeat(128)),
        format!("a:{}", "t".repeat(129)),
        "a.b.c:5000/x/y:z".into(),
        "sub-domain.example.com/x".into(),
    ];
    for input in &cases {
        let ours = ImageRef::parse(input);
        let theirs = Reference::from_str(input);
        match (&ours, &theirs) {
            (Ok(ours), Ok(theirs)) => {
                assert_eq!(ours.registry(), theirs.registry(), "{input}");
                assert_eq!(ours.repository(), theirs.repository(), "{input}");
                assert_eq!(ours.tag(), theirs.tag(), "{input}");
                assert_eq!(ours.digest(), theirs.digest(), "{input}");
            }
            (Err(_), Err(_)) => {}
            // oci-client accepts upper-case repositories; signet always refused them.
            (Err(_), Ok(theirs)) if theirs.repository().bytes().any(|b| b.is_ascii_uppercase()) => {
            }
            _ => panic!("{input}: ours {ours:?}, oci-client {theirs:?}"),
        }
    }
    // Deliberate differences: canonical hosts, underscores in host names, IPv6 hosts.
    for (input, ours) in [
        (
            "REGISTRY.example.com/x",
            Some("registry.example.com/x:latest"),
        ),
        ("registry-1.docker.io/x", Some("docker.io/library/x:latest")),
        ("foo_bar.com/x", None),
        ("[::1]:5000/x", Some("[::1]:5000/x:latest")),
    ] {
        assert_eq!(
            ImageRef::parse(input)
                .ok()
                .map(|r| r.to_string())
                .as_deref(),
            ours
        );
    }
}

/// Finding 5: a digest-pinned reference is governed by its repository; the tag text changes
/// nothing, in `images` or `exclude`.
#[test]
fn digest_pinned_references_ignore_the_tag() {
    let d = format!("sha256:{}", "d".repeat(64));
    let debug = Glob::new("reg.example/prod/*-debug").unwrap();
    // Before: `*` ran over the `:` into the tag, and the tag counted despite the digest.
    assert!(
        !debug.matches_image(
            &ImageRef::parse(&format!("reg.example/prod/evil:x-debug@{d}")).unwrap()
        )
    );
    assert!(!debug.matches_image(&ImageRef::parse("reg.example/prod/evil:x-debug").unwrap()));
    assert!(
        debug.matches_image(
            &ImageRef::parse(&format!("reg.example/prod/app-debug:v1@{d}")).unwrap()
        )
    );
    let tagged = Glob::new("ghcr.io/org/app:v*").unwrap();
    assert!(tagged.matches_image(&ImageRef::parse("ghcr.io/org/app:v1").unwrap()));
    assert!(!tagged.matches_image(&ImageRef::parse(&format!("ghcr.io/org/app:v1@{d}")).unwrap()));
    // The signer still matches the tag being pushed.
    assert!(tagged.matches_push(&ImageRef::parse(&format!("ghcr.io/org/app:v1@{d}")).unwrap()));
    assert!(!Glob::new("r.io/a*").unwrap().matches("r.io/a:b"));
    assert!(!Glob::new("r.io/a?b").unwrap().matches("r.io/a:b"));
    assert!(Glob::new("r.io/a**").unwrap().matches("r.io/a:b"));
    assert!(!Glob::new("*/a").unwrap().matches("r.io:5000/a"));
}

#[test]
fn glob_hosts_are_canonical() {
    for (glob, canonical) in [
        ("Registry.Example.com/**", "registry.example.com/**"),
        (
            "registry.example.com:443/prod/*",
            "registry.example.com/prod/*",
        ),
        ("INDEX.docker.io/nginx", "docker.io/library/nginx"),
        ("registry-1.docker.io/library/*", "docker.io/library/*"),
        ("docker.io/*", "docker.io/library/*"),
        ("docker.io/**", "docker.io/**"),
        ("*.Example.COM/**", "*.example.com/**"),
        ("localhost:80/x", "localhost/x"),
        ("**", "**"),
    ] {
        assert_eq!(Glob::new(glob).unwrap().as_str(), canonical, "{glob}");
    }
    for bad in ["*.example.com:443/**", "bad_host.com/**", "r.io:99999/x"] {
        let err = Glob::new(bad).unwrap_err().to_string();
        assert!(
            err.starts_with("invalid image glob") && !err.contains('\n'),
            "{err}"
        );
    }
    let g = Glob::new("Registry.Example.com/prod/**").unwrap();
    for image in [
        "REGISTRY.EXAMPLE.COM/prod/x",
        "registry.example.com:443/prod/x",
        "registry.example.com/prod/x",
    ] {
        assert!(g.matches_image(&ImageRef::parse(image).unwrap()), "{image}");
    }
    let hub = Glob::new("docker.io/library/*").unwrap();
    for image in ["registry-1.docker.io/library/x", "DOCKER.IO/library/x", "x"] {
        assert!(
            hub.matches_image(&ImageRef::parse(image).unwrap()),
            "{image}"
        );
    }
}

#[test]
fn hostile_glob_is_fast() {
    let g = Glob::new(&"*a".repeat(50)).unwrap();
    assert!(!g.matches(&"a".repeat(49)));
}

/// Admission keys its tag -> digest cache with a reference's normalised text (`to_string`),
/// which must then be exactly `repo_with_tag` whenever no digest is named.
#[test]
fn without_a_digest_the_text_is_repo_with_tag() {
    for written in [
        "app",
        "app:v1",
        "ghcr.io/o/app",
        "r.example:5000/a/b:v2",
        "localhost/x",
    ] {
        let Ok(r) = ImageRef::parse(written) else {
            panic!("{written} parses");
        };
        assert_eq!(r.to_string(), r.repo_with_tag(), "{written}");
    }
    let Ok(pinned) = ImageRef::parse(&format!("app:v1@sha256:{}", "a".repeat(64))) else {
        panic!("pinned reference parses");
    };
    assert_ne!(pinned.to_string(), pinned.repo_with_tag());
}
