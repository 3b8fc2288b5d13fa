//! What Helm cannot check, over the objects Helm renders: RBAC exactly as needed, the webhook
//! configurations, pod hardening, probes, the drain time, the signer's HTTPS, the network policy.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;
use serde_yaml_ng::Value;

use super::helm::{Helm, render, render_error};

fn parse<T: serde::de::DeserializeOwned>(what: &str, text: &str) -> T {
    serde_yaml_ng::from_str(text).unwrap_or_else(|err| panic!("{what}: {err}\n{text}"))
}

/// The documents of `kind` among `documents`.
fn of_kind<'a>(documents: &'a [Value], kind: &str) -> Vec<&'a Value> {
    let kind = Value::from(kind);
    documents
        .iter()
        .filter(|doc| doc.get("kind") == Some(&kind))
        .collect()
}

/// The one document of `kind`.
fn only<'a>(documents: &'a [Value], kind: &str) -> &'a Value {
    match of_kind(documents, kind)[..] {
        [doc] => doc,
        ref found => panic!("{} documents of kind {kind}: {documents:?}", found.len()),
    }
}

fn pod_spec(deployment: &Value) -> &Value {
    &deployment["spec"]["template"]["spec"]
}

/// The first container of a Deployment's pods.
fn container(deployment: &Value) -> &Value {
    &pod_spec(deployment)["containers"][0]
}

/// The arguments of a Deployment's first container.
fn args(deployment: &Value) -> Vec<String> {
    let args = container(deployment)["args"].as_sequence().expect("args");
    args.iter()
        .map(|a| a.as_str().unwrap_or_default().to_owned())
        .collect()
}

fn webhook_deployment(overrides: &str) -> Value {
    only(&render("webhook-deployment.yaml", overrides), "Deployment").clone()
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PolicyRule {
    api_groups: Vec<String>,
    resources: Vec<String>,
    verbs: Vec<String>,
    #[serde(default)]
    resource_names: Vec<String>,
}

/// Every (group, resource, verb, resourceNames) combination that some rule grants.
fn grants(rules: &[PolicyRule]) -> BTreeSet<[String; 4]> {
    let mut granted = BTreeSet::new();
    for rule in rules {
        for group in &rule.api_groups {
            for resource in &rule.resources {
                for verb in &rule.verbs {
                    let names = rule.resource_names.join(",");
                    granted.insert([group.clone(), resource.clone(), verb.clone(), names]);
                }
            }
        }
    }
    granted
}

/// What the role of `kind` in these documents grants.
fn role_grants(documents: &[Value], kind: &str) -> BTreeSet<[String; 4]> {
    let rules = only(documents, kind)
        .get("rules")
        .unwrap_or_else(|| panic!("no {kind} rules"));
    grants(&serde_yaml_ng::from_value::<Vec<PolicyRule>>(rules.clone()).expect("RBAC rules"))
}

fn expected_grants(what: &str, yaml: &str) -> BTreeSet<[String; 4]> {
    grants(&parse::<Vec<PolicyRule>>(what, yaml))
}

#[test]
fn rbac_grants_exactly_the_least_privileges() {
    let webhook = render("webhook-rbac.yaml", "{}");
    let expected_cluster_role = r#"
        - {apiGroups: [signet.dev], verbs: [get, list, watch],
           resources: [attestors, verificationpolicies, clusterverificationpolicies, signingrules]}
        - {apiGroups: [signet.dev], verbs: [patch], resources: [attestors/status,
           verificationpolicies/status, clusterverificationpolicies/status, signingrules/status]}
        - {apiGroups: [""], resources: [namespaces], verbs: [get, list, watch]}
        - {apiGroups: [""], resources: [pods], verbs: [get, list, watch]}
        - {apiGroups: [wgpolicyk8s.io], resources: [policyreports], verbs: [get, create, patch]}
        - {apiGroups: [events.k8s.io, ""], resources: [events], verbs: [create, patch]}"#;
    let expected_role = r#"
        - {apiGroups: [coordination.k8s.io], resources: [leases], verbs: [create]}
        - {apiGroups: [coordination.k8s.io], resources: [leases], verbs: [get, update, patch],
           resourceNames: [signet-controller]}
        - {apiGroups: [coordination.k8s.io], resources: [leases], verbs: [get, update, patch],
           resourceNames: [signet-audit]}"#;
    let expected_signer = r#"
        - {apiGroups: [signet.dev], verbs: [get, list, watch],
           resources: [attestors, verificationpolicies, clusterverificationpolicies, signingrules]}
        - {apiGroups: [""], resources: [namespaces], verbs: [get, list, watch]}"#;
    let signer = render("signer-rbac.yaml", "signer: {enabled: true}");
    for (documents, kind, expected) in [
        (&webhook, "ClusterRole", expected_cluster_role),
        (&webhook, "Role", expected_role),
        (&signer, "ClusterRole", expected_signer),
    ] {
        assert_eq!(
            role_grants(documents, kind),
            expected_grants(kind, expected),
            "{kind}"
        );
    }
    // Each binding binds its role to its component's own ServiceAccount.
    let signer_pod = render("signer-deployment.yaml", "signer: {enabled: true}");
    let account = pod_spec(only(&signer_pod, "Deployment"))["serviceAccountName"].clone();
    let binding = only(&signer, "ClusterRoleBinding");
    assert_eq!(binding["subjects"][0]["name"], account);
    assert_eq!(
        binding["roleRef"]["name"],
        only(&signer, "ClusterRole")["metadata"]["name"]
    );
    let webhook_account = pod_spec(&webhook_deployment("{}"))["serviceAccountName"].clone();
    for kind in ["ClusterRoleBinding", "RoleBinding"] {
        assert_eq!(
            only(&webhook, kind)["subjects"][0]["name"],
            webhook_account,
            "{kind}"
        );
    }

    // Each opt-in adds exactly its grant.
    let base = expected_grants("ClusterRole", expected_cluster_role);
    for (overrides, added) in [
        (
            "rbac: {readPullSecrets: true}",
            r#"[{apiGroups: [""], resources: [secrets, serviceaccounts], verbs: [get]}]"#,
        ),
        (
            "webhook: {breakglass: {enabled: true}}",
            "[{apiGroups: [authorization.k8s.io], resources: [subjectaccessreviews], verbs: [create]}]",
        ),
    ] {
        let mut expected = base.clone();
        expected.extend(expected_grants(overrides, added));
        let documents = render("webhook-rbac.yaml", overrides);
        assert_eq!(
            role_grants(&documents, "ClusterRole"),
            expected,
            "{overrides}"
        );
    }
    // The audit (on by default) is what reads pods and writes PolicyReports; without it, neither.
    let without_audit = role_grants(
        &render("webhook-rbac.yaml", "audit: {enabled: false}"),
        "ClusterRole",
    );
    let audit_grants = expected_grants(
        "audit",
        r#"[{apiGroups: [""], resources: [pods], verbs: [get, list, watch]},
            {apiGroups: [wgpolicyk8s.io], resources: [policyreports], verbs: [get, create, patch]}]"#,
    );
    let mut expected = base.clone();
    expected.retain(|grant| !audit_grants.contains(grant));
    assert_eq!(without_audit, expected, "audit: {{enabled: false}}");
    let unmanaged = render("webhook-rbac.yaml", "rbac: {create: false}");
    assert_eq!(unmanaged.len(), 1, "only the ServiceAccount: {unmanaged:?}");
    assert_eq!(unmanaged[0]["kind"], Value::from("ServiceAccount"));
}

/// The kube-system service accounts of the controllers that create pods, ReplicaSets and Jobs from
/// templates, which breakglass must authorize for a breakglass Deployment's pods to be admitted.
const POD_CREATING_CONTROLLERS: [&str; 7] = [
    "deployment-controller",
    "replicaset-controller",
    "statefulset-controller",
    "daemon-set-controller",
    "replication-controller",
    "job-controller",
    "cronjob-controller",
];

#[test]
fn breakglass_is_off_by_default_and_its_authority_exists_only_when_enabled() {
    assert!(
        render("breakglass-rbac.yaml", "{}").is_empty(),
        "no breakglass objects by default"
    );
    let default_args = args(&webhook_deployment("{}"));
    assert!(
        default_args.contains(&"--breakglass=false".to_owned()),
        "{default_args:?}"
    );
    assert!(
        !default_args
            .iter()
            .any(|a| a.starts_with("--breakglass-groups"))
    );

    let enabled = "webhook: {breakglass: {enabled: true, groups: [oncall]}}";
    let enabled_args = args(&webhook_deployment(enabled));
    for expected in ["--breakglass=true", "--breakglass-groups=oncall"] {
        assert!(
            enabled_args.contains(&expected.to_owned()),
            "{enabled_args:?}"
        );
    }

    let objects = render("breakglass-rbac.yaml", enabled);
    let expected_role = r#"[{apiGroups: [signet.dev], resources: [breakglass], verbs: [use]}]"#;
    assert_eq!(
        role_grants(&objects, "ClusterRole"),
        expected_grants("breakglass role", expected_role)
    );
    let binding = only(&objects, "ClusterRoleBinding");
    assert_eq!(binding["roleRef"]["kind"], Value::from("ClusterRole"));
    let subjects: BTreeSet<(String, String, String)> = binding["subjects"]
        .as_sequence()
        .expect("subjects")
        .iter()
        .map(|s| {
            let text = |key: &str| s[key].as_str().unwrap_or_default().to_owned();
            (text("kind"), text("namespace"), text("name"))
        })
        .collect();
    let mut expected: BTreeSet<(String, String, String)> = POD_CREATING_CONTROLLERS
        .iter()
        .map(|name| {
            (
                "ServiceAccount".into(),
                "kube-system".into(),
                (*name).into(),
            )
        })
        .collect();
    expected.insert((
        "User".into(),
        String::new(),
        "system:kube-controller-manager".into(),
    ));
    assert_eq!(subjects, expected);

    let without_controllers = "webhook: {breakglass: {enabled: true, controllers: false}}";
    let objects = render("breakglass-rbac.yaml", without_controllers);
    assert!(of_kind(&objects, "ClusterRoleBinding").is_empty() && objects.len() == 1);
    let unmanaged = "{webhook: {breakglass: {enabled: true}}, rbac: {create: false}}";
    assert!(render("breakglass-rbac.yaml", unmanaged).is_empty());
}

#[test]
fn pull_secrets_are_read_only_when_asked() {
    let default_args = args(&webhook_deployment("{}"));
    assert!(
        !default_args.iter().any(|a| a.contains("pull-secrets")),
        "{default_args:?}"
    );
    let on = args(&webhook_deployment("rbac: {readPullSecrets: true}"));
    assert!(on.contains(&"--pull-secrets=true".to_owned()), "{on:?}");
}

#[test]
fn a_network_policy_admits_only_the_admission_and_ops_ports() {
    let policy = render("webhook-networkpolicy.yaml", "{}");
    let policy = only(&policy, "NetworkPolicy");
    assert_eq!(
        policy["spec"]["policyTypes"],
        parse::<Value>("types", "[Ingress]")
    );
    let rules = policy["spec"]["ingress"]
        .as_sequence()
        .expect("ingress rules");
    let ports: Vec<Value> = rules.iter().map(|rule| rule["ports"].clone()).collect();
    let expected: Vec<Value> = parse(
        "ports",
        "[[{port: 8443, protocol: TCP}], [{port: 8080, protocol: TCP}]]",
    );
    assert_eq!(ports, expected);
    // No peer lists: any source, to these ports only.
    assert!(
        rules.iter().all(|rule| rule.get("from").is_none()),
        "{rules:?}"
    );
    let selector = &policy["spec"]["podSelector"]["matchLabels"];
    let pod_labels = &webhook_deployment("{}")["spec"]["template"]["metadata"]["labels"];
    for (key, value) in selector.as_mapping().expect("matchLabels") {
        assert_eq!(
            pod_labels.get(key),
            Some(value),
            "the policy selects the webhook pods"
        );
    }

    let peers = "webhook: {networkPolicy: {apiServer: [{ipBlock: {cidr: 10.0.0.0/24}}]}}";
    let policy = render("webhook-networkpolicy.yaml", peers);
    let rules = &only(&policy, "NetworkPolicy")["spec"]["ingress"];
    assert!(
        rules[0].get("from").is_some() && rules[1].get("from").is_none(),
        "{rules:?}"
    );
    let off = "webhook: {networkPolicy: {enabled: false}}";
    assert!(render("webhook-networkpolicy.yaml", off).is_empty());
}

#[test]
fn client_certificates_and_the_ops_port() {
    let default_args = args(&webhook_deployment("{}"));
    assert!(default_args.contains(&"--metrics-listen=0.0.0.0:8080".to_owned()));
    assert!(
        !default_args.iter().any(|a| a.starts_with("--client-ca")),
        "{default_args:?}"
    );

    let on = "webhook: {clientAuth: {enabled: true, caConfigMap: apiserver-client-ca}}";
    let deployment = webhook_deployment(on);
    assert!(args(&deployment).contains(&"--client-ca=/etc/signet/client-ca/ca.crt".to_owned()));
    let volumes = pod_spec(&deployment)["volumes"]
        .as_sequence()
        .expect("volumes");
    let client_ca = volumes
        .iter()
        .find(|v| v["name"] == "client-ca")
        .expect("client-ca volume");
    assert_eq!(
        client_ca["configMap"]["name"],
        Value::from("apiserver-client-ca")
    );
    let error = render_error(Helm::V4, "webhook: {clientAuth: {enabled: true}}");
    assert!(
        error.contains("webhook.clientAuth.enabled needs webhook.clientAuth.caConfigMap"),
        "{error}"
    );

    // The API server's Service carries HTTPS only; scraping goes through its own Service.
    let services = render("webhook-service.yaml", "{}");
    let ports: Vec<Value> = of_kind(&services, "Service")
        .iter()
        .map(|s| s["spec"]["ports"].clone())
        .collect();
    let expected: Vec<Value> = parse(
        "ports",
        "[[{name: https, port: 443, targetPort: https, protocol: TCP}],
          [{name: metrics, port: 8080, targetPort: ops, protocol: TCP}]]",
    );
    assert_eq!(ports, expected);
}

#[test]
fn the_signer_serves_https_by_default() {
    let enabled = "signer: {enabled: true}";
    let deployment = render("signer-deployment.yaml", enabled);
    let deployment = only(&deployment, "Deployment");
    let signer_args = args(deployment);
    for expected in [
        "--listen=0.0.0.0:8443",
        "--tls-cert=/etc/signet/tls/tls.crt",
        "--tls-key=/etc/signet/tls/tls.key",
    ] {
        assert!(
            signer_args.contains(&expected.to_owned()),
            "{signer_args:?}"
        );
    }
    assert!(
        !signer_args.contains(&"--plain-http".to_owned()),
        "{signer_args:?}"
    );
    for probe in ["livenessProbe", "readinessProbe"] {
        assert_eq!(
            container(deployment)[probe]["httpGet"]["scheme"],
            Value::from("HTTPS")
        );
    }
    // The chart generates the certificate, with the CA the registry must trust, for the Service's name.
    let secrets = render("signer-secrets.yaml", enabled);
    let tls: Vec<_> = of_kind(&secrets, "Secret")
        .into_iter()
        .filter(|s| s["type"] == "kubernetes.io/tls")
        .collect();
    assert_eq!(tls.len(), 1, "{secrets:?}");
    assert!(tls[0]["data"].get("ca.crt").is_some());
    let service = render("signer-service.yaml", enabled);
    assert_eq!(
        only(&service, "Service")["spec"]["ports"][0]["port"],
        Value::from(443)
    );

    // A Secret of your own: no generated one.
    let own = "signer: {enabled: true, tls: {secretName: mine}}";
    let secrets = render("signer-secrets.yaml", own);
    assert!(secrets.iter().all(|s| s["type"] != "kubernetes.io/tls"));

    // The explicit opt-out.
    let plain = "signer: {enabled: true, tls: {plainHttp: true}}";
    let plain_args = args(only(&render("signer-deployment.yaml", plain), "Deployment"));
    assert!(
        plain_args.contains(&"--plain-http".to_owned())
            && plain_args.contains(&"--listen=0.0.0.0:8080".to_owned())
    );
    let secrets = render("signer-secrets.yaml", plain);
    assert!(secrets.iter().all(|s| s["type"] != "kubernetes.io/tls"));
    let service = render("signer-service.yaml", plain);
    assert_eq!(
        only(&service, "Service")["spec"]["ports"][0]["port"],
        Value::from(80)
    );
}

/// The hardening both components' pods and containers carry by default.
const POD_SECURITY: &str =
    "{runAsNonRoot: true, runAsUser: 65532, runAsGroup: 65532, fsGroup: 65532,
    seccompProfile: {type: RuntimeDefault}}";
const CONTAINER_SECURITY: &str = "{allowPrivilegeEscalation: false, readOnlyRootFilesystem: true,
    runAsNonRoot: true, runAsUser: 65532, runAsGroup: 65532, capabilities: {drop: [ALL]},
    seccompProfile: {type: RuntimeDefault}}";

#[test]
fn pods_run_non_root_read_only_spread_and_probed_on_the_ops_port() {
    let webhook = webhook_deployment("{}");
    let signer = render("signer-deployment.yaml", "signer: {enabled: true}");
    for deployment in [&webhook, only(&signer, "Deployment")] {
        let name = deployment["metadata"]["name"].clone();
        let spec = pod_spec(deployment);
        assert_eq!(
            spec["securityContext"],
            parse::<Value>("pod", POD_SECURITY),
            "{name:?}"
        );
        let security = &container(deployment)["securityContext"];
        assert_eq!(
            security,
            &parse::<Value>("container", CONTAINER_SECURITY),
            "{name:?}"
        );
        // The read-only root keeps a writable /tmp.
        let mounts = container(deployment)["volumeMounts"]
            .as_sequence()
            .expect("mounts");
        assert!(
            mounts.iter().any(|m| m["mountPath"] == "/tmp"),
            "{name:?}: {mounts:?}"
        );
        assert_eq!(
            container(deployment)["image"],
            Value::from("ghcr.io/signet-dev/signet:0.1.0")
        );
    }
    let spec = pod_spec(&webhook);
    assert_eq!(webhook["spec"]["replicas"], Value::from(2));
    let term = &spec["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
        [0]["podAffinityTerm"];
    assert_eq!(term["topologyKey"], Value::from("kubernetes.io/hostname"));
    let resources = "{requests: {cpu: 50m, memory: 64Mi}, limits: {memory: 256Mi}}";
    assert_eq!(
        container(&webhook)["resources"],
        parse::<Value>("resources", resources)
    );
    let ports: BTreeMap<String, u64> = container(&webhook)["ports"]
        .as_sequence()
        .expect("ports")
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap_or_default().into(),
                p["containerPort"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    assert_eq!(
        ports,
        BTreeMap::from([("https".into(), 8443), ("ops".into(), 8080)])
    );
    let webhook_args = args(&webhook);
    for expected in [
        "--listen=0.0.0.0:8443",
        "--metrics-listen=0.0.0.0:8080",
        "--deadline=8s",
        "--tls-cert=/etc/signet/tls/tls.crt",
        "--tls-key=/etc/signet/tls/tls.key",
    ] {
        assert!(
            webhook_args.contains(&expected.to_owned()),
            "{webhook_args:?}"
        );
    }
    // Probes on the plain-HTTP ops port: with client certificates the HTTPS port answers only the API
    // server.
    for (probe, path) in [
        ("startupProbe", "/healthz"),
        ("livenessProbe", "/healthz"),
        ("readinessProbe", "/readyz"),
    ] {
        let get = &container(&webhook)[probe]["httpGet"];
        let expected = format!("{{path: {path}, port: ops, scheme: HTTP}}");
        assert_eq!(get, &parse::<Value>(probe, &expected), "{probe}");
    }
    let pdb = render("webhook-pdb.yaml", "{}");
    assert_eq!(
        only(&pdb, "PodDisruptionBudget")["spec"]["minAvailable"],
        Value::from(1)
    );
    assert!(render("webhook-pdb.yaml", "webhook: {replicas: 1}").is_empty());
    // A digest pins the image.
    let digest = format!("sha256:{}", "a".repeat(64));
    let pinned = webhook_deployment(&format!("image: {{digest: \"{digest}\"}}"));
    assert_eq!(
        container(&pinned)["image"],
        Value::from(format!("ghcr.io/signet-dev/signet@{digest}"))
    );
}

fn duration_millis(text: &str) -> u64 {
    let (digits, unit) = match text.strip_suffix("ms") {
        Some(digits) => (digits, 1),
        None => (text.strip_suffix('s').unwrap_or_default(), 1000),
    };
    digits
        .parse::<u64>()
        .unwrap_or_else(|_| panic!("bad duration {text:?}"))
        * unit
}

fn arg_value(args: &[String], flag: &str) -> String {
    let prefix = format!("{flag}=");
    args.iter()
        .find_map(|a| a.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {flag} in {args:?}"))
        .to_owned()
}

#[test]
fn the_webhook_drains_within_its_termination_grace_period() {
    let deployment = webhook_deployment("{}");
    let webhook_args = args(&deployment);
    let delay = duration_millis(&arg_value(&webhook_args, "--shutdown-delay"));
    let deadline = duration_millis(&arg_value(&webhook_args, "--deadline"));
    assert_eq!(delay, 5000);
    let grace = pod_spec(&deployment)["terminationGracePeriodSeconds"]
        .as_u64()
        .expect("terminationGracePeriodSeconds");
    assert!(
        delay + deadline + 1000 < grace * 1000,
        "shutdown delay {delay} ms + deadline {deadline} ms does not fit in {grace} s"
    );
    // The signer drains the same way (default --shutdown-delay 5s), with deliveries in flight bounded by
    // --registry-timeout (10s by default).
    let signer = render("signer-deployment.yaml", "signer: {enabled: true}");
    let signer = only(&signer, "Deployment");
    assert!(
        !args(signer)
            .iter()
            .any(|a| a.starts_with("--shutdown-delay") || a.starts_with("--registry-timeout"))
    );
    let signer_grace = pod_spec(signer)["terminationGracePeriodSeconds"]
        .as_u64()
        .expect("signer grace");
    assert!(5 + 10 < signer_grace, "signer grace {signer_grace} s");
    // The chart refuses values whose drain would outlast the grace period.
    for helm in Helm::ALL {
        let error = render_error(helm, "webhook: {shutdownDelay: 25s}");
        assert!(
            error.contains("must stay below webhook.terminationGracePeriodSeconds"),
            "{error}"
        );
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RuleWithOperations {
    api_groups: Vec<String>,
    api_versions: Vec<String>,
    operations: Vec<String>,
    resources: Vec<String>,
    scope: String,
}

/// Every API group and its resources that the admission webhooks must be sent.
const WEBHOOK_KINDS: &str = r#"
    "": [pods, pods/ephemeralcontainers, replicationcontrollers, podtemplates]
    apps: [deployments, replicasets, statefulsets, daemonsets]
    batch: [jobs, cronjobs]"#;

#[test]
fn both_webhooks_fail_closed_within_the_timeout_on_every_workload_kind() {
    let documents = render("webhook-configurations.yaml", "{}");
    let secret = only(&documents, "Secret");
    let ca_bundle = secret["data"]["ca.crt"].clone();
    let deadline = duration_millis(&arg_value(&args(&webhook_deployment("{}")), "--deadline"));
    let kinds: BTreeMap<String, Vec<String>> = parse("WEBHOOK_KINDS", WEBHOOK_KINDS);
    // /validate posts events, never for dry runs; /mutate posts none.
    for (kind, path, side_effects) in [
        (
            "ValidatingWebhookConfiguration",
            "/validate",
            "NoneOnDryRun",
        ),
        ("MutatingWebhookConfiguration", "/mutate", "None"),
    ] {
        let webhook = &only(&documents, kind)["webhooks"][0];
        let expect = |key: &str, value: Value| assert_eq!(webhook[key], value, "{kind} {key}");
        expect("failurePolicy", Value::from("Fail"));
        expect("sideEffects", Value::from(side_effects));
        expect("matchPolicy", Value::from("Equivalent"));
        expect("admissionReviewVersions", parse("versions", "[v1]"));
        let timeout = webhook["timeoutSeconds"].as_u64().expect("timeoutSeconds");
        assert!(
            deadline < timeout * 1000,
            "deadline {deadline} ms, timeout {timeout} s"
        );
        let client = &webhook["clientConfig"];
        assert_eq!(client["service"]["path"], Value::from(path));
        assert_eq!(client["service"]["name"], Value::from("signet-webhook"));
        assert_eq!(
            client["caBundle"], ca_bundle,
            "{kind} trusts the Secret's CA"
        );
        let rules: Vec<RuleWithOperations> =
            serde_yaml_ng::from_value(webhook["rules"].clone()).expect("rules");
        for (group, resource) in kinds
            .iter()
            .flat_map(|(g, rs)| rs.iter().map(move |r| (g, r)))
        {
            let rule = rules
                .iter()
                .find(|r| r.api_groups.contains(group) && r.resources.contains(resource))
                .unwrap_or_else(|| panic!("{kind}: no rule for `{resource}` in {group:?}"));
            assert_eq!(rule.operations, ["CREATE", "UPDATE"], "{resource}");
            assert_eq!(rule.api_versions, ["v1"], "{resource}");
            assert_eq!(rule.scope, "Namespaced", "{resource}");
        }
        // Opted-out and exempt namespaces are never sent.
        let selector = "{matchExpressions: [
            {key: signet.dev/ignore, operator: NotIn, values: ['true']},
            {key: kubernetes.io/metadata.name, operator: NotIn, values: [signet, kube-system]}]}";
        assert_eq!(
            webhook["namespaceSelector"],
            parse::<Value>("selector", selector),
            "{kind}"
        );
    }
    assert_eq!(
        only(&documents, "MutatingWebhookConfiguration")["webhooks"][0]["reinvocationPolicy"],
        Value::from("IfNeeded")
    );
    // Mutation off removes the mutating webhook; cert-manager injects the CA instead of the chart.
    let off = render(
        "webhook-configurations.yaml",
        "webhook: {mutate: {enabled: false}}",
    );
    assert!(of_kind(&off, "MutatingWebhookConfiguration").is_empty());
    let cm = render(
        "webhook-configurations.yaml",
        "certManager: {enabled: true}",
    );
    assert!(of_kind(&cm, "Secret").is_empty());
    for kind in [
        "ValidatingWebhookConfiguration",
        "MutatingWebhookConfiguration",
    ] {
        let object = only(&cm, kind);
        let inject = &object["metadata"]["annotations"]["cert-manager.io/inject-ca-from"];
        assert_eq!(inject, &Value::from("signet/signet-webhook-tls"));
        assert!(
            object["webhooks"][0]["clientConfig"]
                .get("caBundle")
                .is_none()
        );
    }
    // Values the API server would refuse, or that answer after it gave up, do not render.
    for (overrides, named) in [
        ("webhook: {timeoutSeconds: 31}", "timeoutSeconds"),
        ("webhook: {deadline: 10s}", "webhook.deadline"),
    ] {
        let error = render_error(Helm::V4, overrides);
        assert!(error.contains(named), "{overrides}: {error}");
    }
}
