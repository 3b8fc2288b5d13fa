//! A real Prometheus scrapes the real webhook and signer (in OpenMetrics, as it asks), evaluates
//! every alert rule of the chart and runs every dashboard query against what it scraped: what a
//! user checks after installing the chart's ServiceMonitors, rules and dashboard.
//!
//! Needs `prometheus` (Debian package `prometheus`, installed by scripts/test-deps.sh).

// Helpers outside `#[test]` functions fail by panicking, as tests do (clippy.toml covers only
// `#[test]` code).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value as Json;
use support::closed_port;
use support::metrics_servers::{Process, Servers};
use support::monitoring::{alert_exprs, dashboard_queries, repo, require_prometheus_tool};

/// A real Prometheus (the `prometheus` binary of the same Debian package as promtool) on a
/// loopback port, scraping the two metrics ports every second under the job names the chart's
/// ServiceMonitors give, and evaluating the chart's alert rules.
struct Prometheus {
    base: String,
    process: Process,
}

impl Prometheus {
    fn start(dir: &Path, webhook: &str, signer: &str) -> Prometheus {
        require_prometheus_tool("prometheus");
        let rules = repo("charts/signet/rules/signet.rules.yaml");
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\n\
                 rule_files: [{rules:?}]\n\
                 scrape_configs:\n\
                 - job_name: signet-webhook\n  static_configs: [{{targets: [{webhook:?}]}}]\n\
                 - job_name: signet-signer\n  static_configs: [{{targets: [{signer:?}]}}]\n",
                rules = rules.display().to_string(),
            ),
        )
        .unwrap();
        let port = closed_port();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("prometheus.log")).unwrap())
            .spawn()
            .expect("spawn prometheus");
        Prometheus {
            base: format!("http://127.0.0.1:{port}"),
            process: Process {
                child,
                log: dir.join("prometheus.log"),
            },
        }
    }

    async fn api(&self, client: &reqwest::Client, path: &str, query: &[(&str, &str)]) -> Json {
        let url = format!("{}{path}", self.base);
        let response = client.get(&url).query(query).send().await;
        match response {
            Ok(r) => r.json().await.unwrap_or(Json::Null),
            Err(_) => Json::Null,
        }
    }

    async fn query(&self, client: &reqwest::Client, expr: &str) -> Json {
        self.api(client, "/api/v1/query", &[("query", expr)]).await
    }
}

/// Polls `check` every 250 ms until it holds, or fails with what Prometheus logged.
async fn eventually<F, Fut>(what: &str, prometheus: &Prometheus, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let started = Instant::now();
    loop {
        match check().await {
            Ok(()) => return,
            Err(last) => assert!(
                started.elapsed() < Duration::from_secs(30),
                "{what}: {last}\nprometheus log:\n{}",
                prometheus.process.log()
            ),
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_both_servers_and_evaluates_every_rule_and_dashboard_query() {
    let servers = Servers::start().await;
    let client = &servers.client;
    let target = |base: &str| base.trim_start_matches("http://").to_string();
    let prometheus = Prometheus::start(
        servers.dir.path(),
        &target(&servers.webhook_base),
        &target(&servers.signer_base),
    );

    // Both targets up (Prometheus asks for OpenMetrics: this is the format it parses), each
    // scraped a few times so that rate() has samples.
    eventually("both targets scraped", &prometheus, || async {
        let answer = prometheus
            .query(client, "count_over_time(signet_build_info[1m]) >= 3")
            .await;
        let jobs: BTreeSet<&str> = answer["data"]["result"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r["metric"]["job"].as_str())
            .collect();
        let targets = prometheus.api(client, "/api/v1/targets", &[]).await;
        if jobs.len() == 2 {
            Ok(())
        } else {
            Err(format!("jobs scraped {jobs:?}; targets: {targets}"))
        }
    })
    .await;
    let targets = prometheus.api(client, "/api/v1/targets", &[]).await;
    for target in targets["data"]["activeTargets"].as_array().unwrap() {
        assert_eq!(target["health"], "up", "{target}");
        assert_eq!(target["lastError"], "", "{target}");
    }

    // Every alert rule evaluates without error, and none fires on two healthy servers.
    eventually("every rule evaluated", &prometheus, || async {
        let rules = prometheus.api(client, "/api/v1/rules", &[]).await;
        let all: Vec<&Json> = rules["data"]["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|g| g["rules"].as_array().into_iter().flatten())
            .collect();
        let evaluated = all.len() == alert_exprs().len()
            && all
                .iter()
                .all(|r| r["health"] == "ok" && r["lastError"].is_null());
        if evaluated {
            Ok(())
        } else {
            Err(format!("{rules}"))
        }
    })
    .await;
    let alerts = prometheus.api(client, "/api/v1/alerts", &[]).await;
    assert_eq!(alerts["data"]["alerts"], serde_json::json!([]), "{alerts}");

    // Every dashboard query runs; all but the per-registry ones (no registry looked up yet)
    // return series at once, since every series they read exists from start.
    for (title, expr) in dashboard_queries() {
        let expr = expr
            .replace("$__rate_interval", "30s")
            .replace("$__range", "5m")
            .replace("$namespace", ".*");
        let answer = prometheus.query(client, &expr).await;
        assert_eq!(answer["status"], "success", "{title}: {expr}\n{answer}");
        let result = answer["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if !expr.contains("signet_webhook_registry_requests_total") {
            assert!(!result.is_empty(), "{title}: no series for {expr}");
        }
    }
    // The admissions panel shows every result, at zero.
    let answer = prometheus
        .query(
            client,
            "sum by (result) (rate(signet_webhook_admissions_total{endpoint=\"validate\"}[30s]))",
        )
        .await;
    let results: BTreeSet<&str> = answer["data"]["result"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["metric"]["result"].as_str())
        .collect();
    assert_eq!(
        results,
        BTreeSet::from(["allowed", "breakglass", "denied", "dry_run", "error"]),
        "{answer}"
    );
}
