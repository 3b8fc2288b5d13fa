//! What a Prometheus user checks first: the real `signet webhook` and `signet signer` processes
//! serve `/metrics` on their plain-HTTP metrics port (`--metrics-listen`) from start, `promtool
//! check metrics` accepts it, every known series is there at zero, the policy, build, process and
//! certificate series say what is true, and every series the chart's alerts and dashboard read is
//! exported. The rules and dashboard under promtool: `monitoring_rules.rs`; a real Prometheus
//! scraping both servers: `monitoring_prometheus.rs`.
//!
//! Needs `promtool` (Debian package `prometheus`, installed by scripts/test-deps.sh).

// Helpers outside `#[test]` functions fail by panicking, as tests do (clippy.toml covers only
// `#[test]` code).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde_json::Value as Json;
use support::metrics_servers::{Servers, get};
use support::monitoring::{alert_exprs, dashboard_queries, promtool, repo, run_promtool};

/// What Prometheus 2.x sends when it scrapes.
const PROMETHEUS_ACCEPT: &str = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

fn https_client(ca_pem: &str) -> reqwest::Client {
    support::tls_client::https_client(ca_pem, Duration::from_secs(20))
}

/// The pod fixture, running only `image`.
fn review(image: &str) -> Vec<u8> {
    let text = std::fs::read_to_string(repo("tests/fixtures/admission/pod-create.json")).unwrap();
    let mut value: Json = serde_json::from_str(&text).unwrap();
    let containers = value["request"]["object"]["spec"]["containers"]
        .as_array_mut()
        .unwrap();
    containers.truncate(1);
    containers[0]["image"] = image.into();
    value["request"]["object"]["spec"]["initContainers"] = serde_json::json!([]);
    serde_json::to_vec(&value).unwrap()
}

/// The value of the first sample whose line starts with `series` (name and labels).
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// Runs `promtool check metrics` on a scrape; it must accept it without a single lint.
fn assert_promtool_accepts(what: &str, text: &str) {
    let (code, out) = run_promtool(&["check", "metrics"], Some(text));
    assert_eq!(
        (code, out.trim()),
        (0, ""),
        "promtool check metrics on {what}:\n{out}\n--- scraped:\n{text}"
    );
}

/// Every `signet_*` and `process_*` name an expression uses.
fn series_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = expr.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let rest = &expr[i..];
        let starts_word = i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_');
        if starts_word && (rest.starts_with("signet_") || rest.starts_with("process_")) {
            let len = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            names.insert(rest[..len].to_string());
            i += len;
        } else {
            i += 1;
        }
    }
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_servers_serve_metrics_promtool_accepts_from_start() {
    promtool();
    let servers = Servers::start().await;
    let Servers {
        registry,
        policies,
        private_key,
        webhook_port,
        webhook_ca,
        webhook_expiry,
        signer_expiry,
        webhook_base,
        signer_base,
        client,
        ..
    } = &servers;
    let (webhook_port, webhook_expiry, signer_expiry) =
        (*webhook_port, *webhook_expiry, *signer_expiry);

    let mut served = String::new();
    for (what, base, expiry) in [
        ("the webhook", &webhook_base, webhook_expiry),
        ("the signer", &signer_base, signer_expiry),
    ] {
        let url = format!("{base}/metrics");
        // As curl and promtool ask: the Prometheus text format, which promtool accepts as is.
        let (status, content_type, text) = get(client, &url, None).await.unwrap();
        assert_eq!(status, 200, "{text}");
        assert!(
            content_type.starts_with("text/plain; version=0.0.4"),
            "{content_type}"
        );
        assert_promtool_accepts(what, &text);
        // As Prometheus asks: OpenMetrics, the same series.
        let (_, content_type, open) = get(client, &url, Some(PROMETHEUS_ACCEPT)).await.unwrap();
        assert!(
            content_type.starts_with("application/openmetrics-text"),
            "{content_type}"
        );
        assert!(open.ends_with("# EOF\n"), "{open}");
        assert_eq!(
            value(&open, "signet_policy_synced"),
            value(&text, "signet_policy_synced")
        );

        let version = format!(
            "signet_build_info{{version=\"{}\"}}",
            env!("CARGO_PKG_VERSION")
        );
        assert_eq!(value(&text, &version), Some(1.0), "{what}: {text}");
        assert_eq!(
            value(&text, "signet_tls_certificate_expiry_timestamp_seconds"),
            Some(expiry as f64),
            "{what}: {text}"
        );
        for (series, expected) in [
            (
                "signet_policy_objects{kind=\"attestor\",status=\"ready\"}",
                1.0,
            ),
            (
                "signet_policy_objects{kind=\"attestor\",status=\"not_ready\"}",
                0.0,
            ),
            (
                "signet_policy_objects{kind=\"cluster_verification_policy\",status=\"ready\"}",
                1.0,
            ),
            (
                "signet_policy_objects{kind=\"verification_policy\",status=\"ready\"}",
                0.0,
            ),
            ("signet_policy_signing_rules", 1.0),
            ("signet_policy_synced", 1.0),
            ("signet_policy_last_load_successful", 1.0),
            ("signet_policy_load_errors_total", 0.0),
        ] {
            assert_eq!(
                value(&text, series),
                Some(expected),
                "{what}: {series} in\n{text}"
            );
        }
        let loaded = value(&text, "signet_policy_last_load_timestamp_seconds").unwrap_or(0.0);
        let started = value(&text, "process_start_time_seconds").unwrap_or(0.0);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        assert!(
            started > now - 120.0
                && started <= now + 1.0
                && loaded >= started - 1.0
                && loaded <= now + 1.0,
            "{what}: started {started}, loaded {loaded}, now {now}"
        );
        for series in [
            "process_cpu_seconds_total",
            "process_resident_memory_bytes",
            "process_open_fds",
            "process_max_fds",
        ] {
            assert!(
                value(&text, series).is_some_and(|v| v >= 0.0),
                "{what}: {series} in\n{text}"
            );
        }
        served.push_str(&text);
    }

    // The webhook's own series, each at zero before any request.
    let webhook_text = get(client, &format!("{webhook_base}/metrics"), None)
        .await
        .unwrap()
        .2;
    for endpoint in ["validate", "mutate"] {
        for result in ["allowed", "denied", "dry_run", "breakglass", "error"] {
            let series = format!(
                "signet_webhook_admissions_total{{endpoint=\"{endpoint}\",result=\"{result}\"}}"
            );
            assert_eq!(value(&webhook_text, &series), Some(0.0), "{series}");
        }
    }
    // The signer's: its rule, its workers, an empty backlog.
    let signer_text = get(client, &format!("{signer_base}/metrics"), None)
        .await
        .unwrap()
        .2;
    for outcome in ["signed", "already_signed", "skipped", "failed"] {
        let series =
            format!("signet_signer_rule_outcomes_total{{rule=\"release\",outcome=\"{outcome}\"}}");
        assert_eq!(
            value(&signer_text, &series),
            Some(0.0),
            "{series} in\n{signer_text}"
        );
    }
    assert_eq!(value(&signer_text, "signet_signer_workers"), Some(3.0));
    assert_eq!(
        value(&signer_text, "signet_signer_pending_images"),
        Some(0.0)
    );

    // One admission of an image the policy governs: the registry cannot be reached, so it is
    // denied (fail closed), and that registry's series appear, every outcome at once.
    let answer: Json = https_client(webhook_ca)
        .post(format!("https://127.0.0.1:{webhook_port}/validate"))
        .header("content-type", "application/json")
        .body(review(&format!("{registry}/prod/app:v1")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["response"]["allowed"], false, "{answer}");
    let webhook_text = get(client, &format!("{webhook_base}/metrics"), None)
        .await
        .unwrap()
        .2;
    assert_promtool_accepts("the webhook after an admission", &webhook_text);
    assert_eq!(
        value(
            &webhook_text,
            "signet_webhook_admissions_total{endpoint=\"validate\",result=\"denied\"}"
        ),
        Some(1.0),
        "{webhook_text}"
    );
    let unreachable = format!(
        "signet_webhook_registry_requests_total{{registry=\"{registry}\",operation=\"resolve\",outcome=\"unreachable\"}}"
    );
    assert!(
        value(&webhook_text, &unreachable).is_some_and(|v| v >= 1.0),
        "{webhook_text}"
    );
    let not_found = format!(
        "signet_webhook_registry_requests_total{{registry=\"{registry}\",operation=\"signatures\",outcome=\"not_found\"}}"
    );
    assert_eq!(
        value(&webhook_text, &not_found),
        Some(0.0),
        "{webhook_text}"
    );
    served.push_str(&webhook_text);

    // Every series the alerts and the dashboard read is one the servers export.
    for (source, expr) in alert_exprs().into_iter().chain(dashboard_queries()) {
        for name in series_names(&expr) {
            assert!(
                served.contains(&name),
                "{source}: {name} is not exported by either server"
            );
        }
    }

    // A rule added to the folder has its series at zero on the next scrape.
    std::fs::write(
        policies.join("qa.yaml"),
        format!(
            "apiVersion: signet.dev/v1alpha1\nkind: SigningRule\nmetadata:\n  name: qa\nspec:\n  \
             scope: [\"127.0.0.1:1/qa/**\"]\n  key: {{ref: \"file:{}\"}}\n  algorithm: ECDSA_P256_SHA_256\n",
            private_key.display()
        ),
    )
    .unwrap();
    let started = Instant::now();
    loop {
        let text = get(client, &format!("{signer_base}/metrics"), None)
            .await
            .unwrap()
            .2;
        if value(&text, "signet_policy_signing_rules") == Some(2.0) {
            let series = "signet_signer_rule_outcomes_total{rule=\"qa\",outcome=\"failed\"}";
            assert_eq!(value(&text, series), Some(0.0), "{text}");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "rule not loaded:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // A policy-folder change that does not parse is rejected, counted, and the picture stays.
    std::fs::write(policies.join("broken.yaml"), "kind: [not a document\n").unwrap();
    let started = Instant::now();
    loop {
        let text = get(client, &format!("{webhook_base}/metrics"), None)
            .await
            .unwrap()
            .2;
        if value(&text, "signet_policy_load_errors_total") == Some(1.0) {
            assert_eq!(
                value(&text, "signet_policy_last_load_successful"),
                Some(0.0)
            );
            assert_eq!(
                value(
                    &text,
                    "signet_policy_objects{kind=\"attestor\",status=\"ready\"}"
                ),
                Some(1.0)
            );
            assert_promtool_accepts("the webhook after a rejected change", &text);
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "not rejected:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
