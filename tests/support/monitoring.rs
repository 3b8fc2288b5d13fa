//! The chart's monitoring files as the monitoring tests read them (`support::monitoring`): its
//! alert rules and dashboard queries, and `promtool`, which checks them.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value as Json;
use serde_yaml_ng::Value as Yaml;

/// A file of this repository.
pub fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// Fails, naming the Debian package `prometheus`, unless `tool --version` runs.
pub fn require_prometheus_tool(tool: &str) {
    let found = Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        found,
        "{tool} is missing: install the Debian package `prometheus` (scripts/test-deps.sh does)"
    );
}

/// `promtool`, or a failure naming the package that brings it.
pub fn promtool() -> Command {
    require_prometheus_tool("promtool");
    Command::new("promtool")
}

/// Runs promtool; returns its exit code and everything it printed.
pub fn run_promtool(args: &[&str], stdin: Option<&str>) -> (i32, String) {
    let mut child = promtool()
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn promtool");
    if let Some(text) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    }
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

fn alert_rules() -> Yaml {
    let text = std::fs::read_to_string(repo("charts/signet/rules/signet.rules.yaml")).unwrap();
    serde_yaml_ng::from_str(&text).unwrap()
}

fn dashboard() -> Json {
    let text = std::fs::read_to_string(repo("charts/signet/dashboards/signet.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// Every `expr` of the dashboard's panels, with the panel's title.
pub fn dashboard_queries() -> Vec<(String, String)> {
    let mut queries = Vec::new();
    for panel in dashboard()["panels"].as_array().unwrap() {
        let title = panel["title"].as_str().unwrap_or_default().to_string();
        for target in panel["targets"].as_array().into_iter().flatten() {
            queries.push((title.clone(), target["expr"].as_str().unwrap().to_string()));
        }
    }
    queries
}

/// Every alert rule's name and expression.
pub fn alert_exprs() -> Vec<(String, String)> {
    let rules = alert_rules();
    let mut exprs = Vec::new();
    for group in rules["groups"].as_sequence().unwrap() {
        for rule in group["rules"].as_sequence().unwrap() {
            exprs.push((
                rule["alert"].as_str().unwrap().to_string(),
                rule["expr"].as_str().unwrap().to_string(),
            ));
        }
    }
    exprs
}
