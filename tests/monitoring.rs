//! What a Prometheus user checks: the real `signet webhook` and `signet signer` processes serve
//! `/metrics` on their plain-HTTP metrics port (`--metrics-listen`) from start, `promtool check
//! metrics` accepts it, every known series is there at zero, and the policy, build, process and
//! certificate series say what is true; the chart's alert rules pass `promtool check rules` and
//! `promtool test rules` with a unit test for every alert; every dashboard query parses and names
//! only series the servers export. Then a real Prometheus scrapes both servers (in OpenMetrics, as
//! it asks), evaluates every alert rule and runs every dashboard query against what it scraped.
//!
//! Needs `promtool` and `prometheus` (Debian package `prometheus`, installed by
//! scripts/test-deps.sh).

// Helpers outside `#[test]` functions fail by panicking, as tests do (clippy.toml covers only
// `#[test]` code).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::BTreeSet;
use std::io::Write as _;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value as Json;
use serde_yaml_ng::Value as Yaml;

/// What Prometheus 2.x sends when it scrapes.
const PROMETHEUS_ACCEPT: &str = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// `promtool`, or a failure naming the package that brings it.
fn promtool() -> Command {
    let found = Command::new("promtool")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        found,
        "promtool is missing: install the Debian package `prometheus` (scripts/test-deps.sh does)"
    );
    Command::new("promtool")
}

/// Runs promtool; returns its exit code and everything it printed.
fn run_promtool(args: &[&str], stdin: Option<&str>) -> (i32, String) {
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

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// A child process killed when dropped; its log is kept in a file for failure messages.
struct Process {
    child: Child,
    log: PathBuf,
}

impl Process {
    fn spawn(args: &[String], log: PathBuf) -> Process {
        let child = Command::new(env!("CARGO_BIN_EXE_signet"))
            .args(args)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("spawn signet");
        Process { child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A serving certificate for 127.0.0.1, issued by a fresh CA, that expires at a known second;
/// returns the certificate and key files, the expiry, and the CA (PEM) a client trusts.
fn certificate(
    dir: &Path,
    name: &str,
    not_after: (i32, u8, u8),
) -> (PathBuf, PathBuf, i64, String) {
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, rcgen::KeyPair::generate().unwrap())
        .unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
    params.not_after = rcgen::date_time_ymd(not_after.0, not_after.1, not_after.2);
    let expiry = params.not_after.unix_timestamp();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &ca).unwrap();
    let cert_path = dir.join(format!("{name}.crt"));
    let key_path = dir.join(format!("{name}.key"));
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    (cert_path, key_path, expiry, ca.pem())
}

fn https_client(ca_pem: &str) -> reqwest::Client {
    use rustls_pki_types::pem::PemObject as _;
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls_pki_types::CertificateDer::from_pem_slice(ca_pem.as_bytes()).unwrap())
        .unwrap();
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
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

/// A policy folder with one Attestor, one ClusterVerificationPolicy (for images of `registry`)
/// and one SigningRule; returns the folder and the rule's private key file.
fn policy_folder(dir: &Path, registry: &str) -> (PathBuf, PathBuf) {
    let keys = dir.join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    let key = support::signer::key(&keys, "release", signet::crypto::Algorithm::EcdsaP256Sha256);
    let public: String = std::fs::read_to_string(&key.public)
        .unwrap()
        .lines()
        .map(|l| format!("      {l}\n"))
        .collect();
    let folder = dir.join("policies");
    std::fs::create_dir_all(&folder).unwrap();
    let text = format!(
        "apiVersion: signet.dev/v1alpha1\nkind: Attestor\nmetadata:\n  name: release\nspec:\n  \
         keys:\n  - id: release-key\n    algorithm: ECDSA_P256_SHA_256\n    publicKey: |\n{public}\
         ---\napiVersion: signet.dev/v1alpha1\nkind: ClusterVerificationPolicy\n\
         metadata:\n  name: prod\nspec:\n  images: [\"{registry}/prod/**\"]\n  attestors: [release]\n\
         ---\napiVersion: signet.dev/v1alpha1\nkind: SigningRule\nmetadata:\n  name: release\nspec:\n  \
         scope: [\"127.0.0.1:1/prod/**\"]\n  key: {{ref: \"file:{}\"}}\n  algorithm: ECDSA_P256_SHA_256\n",
        key.private.display(),
    );
    std::fs::write(folder.join("policies.yaml"), text).unwrap();
    (folder, key.private)
}

async fn get(
    client: &reqwest::Client,
    url: &str,
    accept: Option<&str>,
) -> Option<(u16, String, String)> {
    let mut request = client.get(url);
    if let Some(accept) = accept {
        request = request.header("accept", accept);
    }
    let response = request.send().await.ok()?;
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    Some((status, content_type, response.text().await.ok()?))
}

async fn wait_ready(client: &reqwest::Client, base: &str, process: &Process) {
    let started = Instant::now();
    loop {
        if let Some((200, _, _)) = get(client, &format!("{base}/readyz"), None).await {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{base} not ready; log:\n{}",
            process.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
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

fn alert_rules() -> Yaml {
    let text = std::fs::read_to_string(repo("charts/signet/rules/signet.rules.yaml")).unwrap();
    serde_yaml_ng::from_str(&text).unwrap()
}

fn dashboard() -> Json {
    let text = std::fs::read_to_string(repo("charts/signet/dashboards/signet.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// Every `expr` of the dashboard's panels, with the panel's title.
fn dashboard_queries() -> Vec<(String, String)> {
    let mut queries = Vec::new();
    for panel in dashboard()["panels"].as_array().unwrap() {
        let title = panel["title"].as_str().unwrap_or_default().to_string();
        for target in panel["targets"].as_array().into_iter().flatten() {
            queries.push((title.clone(), target["expr"].as_str().unwrap().to_string()));
        }
    }
    queries
}

fn alert_exprs() -> Vec<(String, String)> {
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

/// The real webhook and signer, each with TLS on its main port and a plain-HTTP metrics port,
/// over one policy folder; both ready.
struct Servers {
    dir: tempfile::TempDir,
    registry: String,
    policies: PathBuf,
    private_key: PathBuf,
    webhook_port: u16,
    webhook_ca: String,
    webhook_expiry: i64,
    signer_expiry: i64,
    webhook_base: String,
    signer_base: String,
    client: reqwest::Client,
    _webhook: Process,
    _signer: Process,
}

impl Servers {
    async fn start() -> Servers {
        let dir = tempfile::tempdir().unwrap();
        // A registry address nothing listens on: lookups fail at once, as "unreachable".
        let registry = format!("127.0.0.1:{}", support::closed_port());
        let (policies, private_key) = policy_folder(dir.path(), &registry);
        let (webhook_cert, webhook_key, webhook_expiry, webhook_ca) =
            certificate(dir.path(), "webhook", (2031, 7, 15));
        let (signer_cert, signer_key, signer_expiry, _) =
            certificate(dir.path(), "signer", (2030, 1, 2));
        let token = dir.path().join("token");
        std::fs::write(&token, "metrics-test-token").unwrap();
        let (webhook_port, webhook_metrics) = (free_port(), free_port());
        let (signer_port, signer_metrics) = (free_port(), free_port());
        let path = |p: &Path| p.display().to_string();
        let webhook = Process::spawn(
            &[
                "webhook".into(),
                "--listen".into(),
                format!("127.0.0.1:{webhook_port}"),
                "--metrics-listen".into(),
                format!("127.0.0.1:{webhook_metrics}"),
                "--tls-cert".into(),
                path(&webhook_cert),
                "--tls-key".into(),
                path(&webhook_key),
                "--policy-dir".into(),
                path(&policies),
            ],
            dir.path().join("webhook.log"),
        );
        let signer = Process::spawn(
            &[
                "signer".into(),
                "--listen".into(),
                format!("127.0.0.1:{signer_port}"),
                "--metrics-listen".into(),
                format!("127.0.0.1:{signer_metrics}"),
                "--tls-cert".into(),
                path(&signer_cert),
                "--tls-key".into(),
                path(&signer_key),
                "--token-file".into(),
                path(&token),
                "--policy-dir".into(),
                path(&policies),
                "--reconcile-interval".into(),
                "0".into(),
                "--workers".into(),
                "3".into(),
            ],
            dir.path().join("signer.log"),
        );
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        let webhook_base = format!("http://127.0.0.1:{webhook_metrics}");
        let signer_base = format!("http://127.0.0.1:{signer_metrics}");
        wait_ready(&client, &webhook_base, &webhook).await;
        wait_ready(&client, &signer_base, &signer).await;
        Servers {
            dir,
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
            _webhook: webhook,
            _signer: signer,
        }
    }
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

/// A real Prometheus (the `prometheus` binary of the same Debian package as promtool) on a
/// loopback port, scraping the two metrics ports every second under the job names the chart's
/// ServiceMonitors give, and evaluating the chart's alert rules.
struct Prometheus {
    base: String,
    process: Process,
}

impl Prometheus {
    fn start(dir: &Path, webhook: &str, signer: &str) -> Prometheus {
        let found = Command::new("prometheus")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            found,
            "prometheus is missing: install the Debian package `prometheus` (scripts/test-deps.sh does)"
        );
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
        let port = free_port();
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
