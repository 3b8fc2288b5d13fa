//! The chart's alert rules and Grafana dashboard, checked offline by promtool: the rules pass
//! `promtool check rules` and `promtool test rules` with a unit test that fires every alert, and
//! every dashboard query parses. What a user checks before loading them into Prometheus/Grafana.
//!
//! Needs `promtool` (Debian package `prometheus`, installed by scripts/test-deps.sh).

// Helpers outside `#[test]` functions fail by panicking, as tests do (clippy.toml covers only
// `#[test]` code).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::BTreeSet;

use serde_yaml_ng::Value as Yaml;
use support::monitoring::{alert_exprs, dashboard_queries, repo, run_promtool};

#[test]
fn the_alert_rules_pass_promtool_and_every_alert_has_a_unit_test() {
    let rules = repo("charts/signet/rules/signet.rules.yaml");
    let (code, out) = run_promtool(&["check", "rules", rules.to_str().unwrap()], None);
    assert_eq!(code, 0, "{out}");
    let tests = repo("tests/monitoring/signet.rules.test.yaml");
    let (code, out) = run_promtool(&["test", "rules", tests.to_str().unwrap()], None);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("SUCCESS"), "{out}");

    // Each alert fires in at least one test case.
    let text = std::fs::read_to_string(&tests).unwrap();
    let cases: Yaml = serde_yaml_ng::from_str(&text).unwrap();
    let mut fired = BTreeSet::new();
    for case in cases["tests"].as_sequence().unwrap() {
        for check in case["alert_rule_test"].as_sequence().into_iter().flatten() {
            if check["exp_alerts"]
                .as_sequence()
                .is_some_and(|a| !a.is_empty())
            {
                fired.insert(check["alertname"].as_str().unwrap().to_string());
            }
        }
    }
    let alerts: BTreeSet<String> = alert_exprs().into_iter().map(|(name, _)| name).collect();
    let untested: Vec<_> = alerts.difference(&fired).collect();
    assert!(
        untested.is_empty(),
        "alerts without a firing unit test: {untested:?}"
    );
    // What the issue asks to be alerted on is there.
    for alert in [
        "SignetWebhookDown",
        "SignetWebhookFailingClosed",
        "SignetAdmissionDenialSpike",
        "SignetCertificateExpiring",
        "SignetPoliciesNotReady",
        "SignetSignerFailing",
        "SignetSignerBehind",
    ] {
        assert!(alerts.contains(alert), "{alert} missing");
    }
}

#[test]
fn every_dashboard_query_parses() {
    // promtool has no offline query parser, but `check rules` parses every expression of a rules
    // file: one recording rule per query, Grafana's variables replaced by values of their type.
    let queries = dashboard_queries();
    assert!(queries.len() >= 10, "{queries:?}");
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, (_, expr)) in queries.iter().enumerate() {
        let expr = expr
            .replace("$__rate_interval", "5m")
            .replace("$__range", "1h")
            .replace("$namespace", ".*");
        assert!(!expr.contains('$'), "an unknown Grafana variable in {expr}");
        rules.push_str(&format!(
            "      - record: dashboard:query_{i}\n        expr: {}\n",
            serde_json::to_string(&expr).unwrap()
        ));
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("dashboard.rules.yaml");
    std::fs::write(&file, &rules).unwrap();
    let (code, out) = run_promtool(&["check", "rules", file.to_str().unwrap()], None);
    assert_eq!(code, 0, "{out}\n{rules}");
    assert!(
        out.contains(&format!("SUCCESS: {} rules found", queries.len())),
        "{out}"
    );

    // The panels a user looks for.
    let titles: BTreeSet<String> = queries.iter().map(|(title, _)| title.clone()).collect();
    for title in [
        "Admissions by result",
        "Admission latency percentiles",
        "Registry requests by registry",
        "Registry errors by registry",
        "Cache hit ratio",
        "Policy objects not ready",
        "Signer backlog",
        "Signer outcomes by rule",
    ] {
        assert!(titles.contains(title), "no panel {title:?} in {titles:?}");
    }
    // A bad query is caught the same way (the check can fail).
    std::fs::write(
        &file,
        "groups:\n  - name: d\n    rules:\n      - record: bad\n        expr: sum(rate(x[5m])\n",
    )
    .unwrap();
    let (code, _) = run_promtool(&["check", "rules", file.to_str().unwrap()], None);
    assert_ne!(code, 0);
}
