//! The Helm chart, linted strictly and rendered by Helm's own library (PyPI's helm-python-sdk,
//! which scripts/test.sh installs), for the default values, a sharded release and every option
//! on; each rendering's objects are validated against the Kubernetes schemas and checked for
//! the wiring the pods need.

mod common;

use std::path::Path;
use std::process::Command;

use codepipeline_exporter::config::Config;
use common::kubernetes;
use serde_json::{Value, json};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const CHART: &str = "deploy/helm/codepipeline-exporter";

/// The image a release must name, since none is published.
const IMAGE: &str = "registry.example.com/platform/codepipeline-exporter";

/// What Helm's library answers for `values`: a lint report and objects, or its error.
fn helm(values: &Value) -> Value {
    let python = Path::new(ROOT).join("target/tools/bin/python");
    assert!(python.is_file(), "{} is missing: run scripts/test.sh, which installs helm-python-sdk", python.display());
    let output =
        Command::new(python).args(["scripts/helm-render.py", CHART, &values.to_string()]).current_dir(ROOT).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).unwrap()
}

/// Helm's lint report and the rendered objects of the chart with `values`, and the image
/// repository every release must set unless `values` sets one.
fn render(values: &Value) -> (Value, Vec<Value>) {
    let mut values = values.clone();
    if values["image"]["repository"].is_null() {
        values["image"]["repository"] = json!(IMAGE);
    }
    let answer = helm(&values);
    assert!(answer["error"].is_null(), "{}", answer["error"]);
    (answer["lint"].clone(), answer["manifests"].as_array().unwrap().clone())
}

#[test]
fn the_chart_refuses_to_render_without_an_image_of_the_users_own() {
    for values in [json!({}), json!({"image": {"repository": "ghcr.io/your-org/codepipeline-exporter"}})] {
        let answer = helm(&values);
        let error = answer["error"].as_str().unwrap_or_else(|| panic!("{values} rendered: {answer}"));
        assert!(
            error.ends_with("image.repository is not set: no image of codepipeline-exporter is published. Build deploy/Dockerfile, push it to your registry, and set image.repository (and image.tag); see \"Build and push the image\" in docs/deployment.md"),
            "{error}"
        );
    }
}

#[test]
fn runbook_links_follow_the_runbook_base_and_inhibitions_ship_with_the_rules() {
    let base = "https://wiki.example.com/ops/codepipeline-runbook";
    let (lint, manifests) = render(
        &json!({"prometheusRule": {"enabled": true, "runbookBaseURL": format!("{base}/"), "inhibitions": {"labels": {"alertmanager": "main"}}}}),
    );
    assert_clean("runbook", &lint);
    let rule = find(&manifests, "PrometheusRule");
    assert_eq!(common::runbook::assert_links("helm", &rule["spec"]["groups"], base), 30);
    let (_, default) = render(&json!({"prometheusRule": {"enabled": true}}));
    let rule = find(&default, "PrometheusRule");
    assert_eq!(common::runbook::assert_links("helm default", &rule["spec"]["groups"], "http://localhost:19264/runbook"), 30);
    let inhibitions = find(&manifests, "AlertmanagerConfig");
    assert_eq!(inhibitions["metadata"]["labels"]["alertmanager"], "main");
    assert_eq!(inhibitions["spec"], common::kubernetes::inhibitions_of_compose(), "the inhibitions of deploy/alertmanager");
    let (_, without) = render(&json!({"prometheusRule": {"enabled": true, "inhibitions": {"enabled": false}}}));
    assert!(!kinds(&without).contains(&"AlertmanagerConfig"));
}

/// Lints with `--strict`: no error, and no warning (severity 2) or worse.
fn assert_clean(name: &str, lint: &Value) {
    assert_eq!(lint["errors"], json!([]), "{name}: {lint}");
    let findings: Vec<&Value> =
        lint["messages"].as_array().unwrap().iter().filter(|m| m["severity"].as_u64() >= Some(2)).collect();
    assert!(findings.is_empty(), "{name}: {findings:?}");
}

fn kinds(manifests: &[Value]) -> Vec<&str> {
    let mut kinds: Vec<&str> = manifests.iter().map(|m| m["kind"].as_str().unwrap()).collect();
    kinds.sort();
    kinds
}

fn find<'a>(manifests: &'a [Value], kind: &str) -> &'a Value {
    manifests.iter().find(|m| m["kind"] == kind).unwrap_or_else(|| panic!("no {kind}"))
}

#[test]
fn default_values_render_a_hardened_single_replica_deployment() {
    let (lint, manifests) = render(&json!({}));
    assert_clean("default", &lint);
    assert_eq!(kinds(&manifests), ["ConfigMap", "Deployment", "Service", "ServiceAccount"]);
    kubernetes::validate("default", &manifests);
    kubernetes::check_wiring("default", &manifests);
    let pod = &find(&manifests, "Deployment")["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(pod["containers"][0]["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(pod["containers"][0]["image"], format!("{IMAGE}:0.1.0"));
    // The configuration the chart writes is one the exporter accepts.
    let config = find(&manifests, "ConfigMap")["data"]["config.yaml"].as_str().unwrap().to_string();
    Config::parse(&config, Path::new("config.yaml")).unwrap();
}

#[test]
fn shards_render_a_statefulset_whose_pods_take_their_shard_from_their_name() {
    let (lint, manifests) = render(&json!({"shards": 3}));
    assert_clean("sharded", &lint);
    assert_eq!(kinds(&manifests), ["ConfigMap", "Service", "ServiceAccount", "StatefulSet"]);
    kubernetes::validate("sharded", &manifests);
    kubernetes::check_wiring("sharded", &manifests);
    let set = find(&manifests, "StatefulSet");
    assert_eq!(set["spec"]["replicas"], 3);
    let container = &set["spec"]["template"]["spec"]["containers"][0];
    let args: Vec<&str> = container["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
    assert!(args.contains(&"--shard=$(POD_NAME)") && args.contains(&"--total-shards=3"), "{args:?}");
    assert_eq!(container["env"][0]["valueFrom"]["fieldRef"]["fieldPath"], "metadata.name");
}

fn everything() -> Value {
    json!({
        "image": {"repository": "111122223333.dkr.ecr.eu-west-1.amazonaws.com/codepipeline-exporter", "tag": "1.2.3"},
        "imagePullSecrets": [{"name": "registry"}],
        "config": {"interval": "2m", "accounts": [{"name": "prod", "regions": ["eu-west-1"]}], "metrics": {"state_sets": "sparse"}},
        "serviceAccount": {"roleArn": "arn:aws:iam::111122223333:role/codepipeline-exporter"},
        "webConfig": {
            "enabled": true,
            "config": {"tls_server_config": {"cert_file": "tls.crt", "key_file": "tls.key"}},
            "files": {"tls.crt": "-----BEGIN CERTIFICATE-----\n", "tls.key": "-----BEGIN PRIVATE KEY-----\n"},
        },
        "extraArgs": ["--log.level=debug"],
        "otlp": {
            "endpoint": "http://otel-collector.monitoring:4318",
            "serviceName": "ci",
            "metricExportInterval": "15000",
            "metricsTemporality": "delta",
        },
        "serviceMonitor": {"enabled": true, "labels": {"release": "kube-prometheus-stack"}},
        "prometheusRule": {"enabled": true, "labels": {"release": "kube-prometheus-stack"}},
        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}},
        "podAnnotations": {"example.com/team": "platform"},
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "monitoring", "effect": "NoSchedule"}],
        "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64", "arm64"]}]}
        ]}}},
        "priorityClassName": "monitoring",
    })
}

#[test]
fn every_option_on_renders_valid_objects_and_the_rules_of_the_rule_files() {
    let (lint, manifests) = render(&everything());
    assert_clean("everything", &lint);
    assert_eq!(
        kinds(&manifests),
        [
            "AlertmanagerConfig",
            "ConfigMap",
            "Deployment",
            "PrometheusRule",
            "Secret",
            "Service",
            "ServiceAccount",
            "ServiceMonitor"
        ]
    );
    kubernetes::validate("everything", &manifests);
    kubernetes::check_wiring("everything", &manifests);
    let pod = &find(&manifests, "Deployment")["spec"]["template"];
    let container = &pod["spec"]["containers"][0];
    assert_eq!(container["image"], "111122223333.dkr.ecr.eu-west-1.amazonaws.com/codepipeline-exporter:1.2.3");
    let args: Vec<&str> = container["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
    assert!(
        args.contains(&"--web.config.file=/etc/codepipeline-exporter/web/web-config.yaml") && args.contains(&"--log.level=debug")
    );
    assert_eq!(container["livenessProbe"]["httpGet"]["scheme"], "HTTPS", "TLS is probed over TLS");
    assert_eq!(
        container["env"],
        json!([
            {"name": "OTEL_EXPORTER_OTLP_ENDPOINT", "value": "http://otel-collector.monitoring:4318"},
            {"name": "OTEL_SERVICE_NAME", "value": "ci"},
            {"name": "OTEL_METRIC_EXPORT_INTERVAL", "value": "15000"},
            {"name": "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE", "value": "delta"},
        ]),
        "traces and the CI/CD metrics go to the collector"
    );
    assert_eq!(pod["metadata"]["annotations"]["example.com/team"], "platform");
    assert_eq!(pod["spec"]["nodeSelector"]["kubernetes.io/os"], "linux");
    assert_eq!(pod["spec"]["tolerations"][0]["key"], "dedicated");
    assert_eq!(container["resources"]["limits"]["memory"], "512Mi");
    assert_eq!(
        find(&manifests, "ServiceAccount")["metadata"]["annotations"]["eks.amazonaws.com/role-arn"],
        "arn:aws:iam::111122223333:role/codepipeline-exporter"
    );
    assert_eq!(find(&manifests, "ServiceMonitor")["spec"]["endpoints"][0]["scheme"], "https");
    let secret = find(&manifests, "Secret");
    assert!(secret["stringData"]["web-config.yaml"].as_str().unwrap().contains("cert_file: tls.crt"));
    assert_eq!(secret["stringData"]["tls.crt"], "-----BEGIN CERTIFICATE-----\n");
    let config = find(&manifests, "ConfigMap")["data"]["config.yaml"].as_str().unwrap().to_string();
    let config = Config::parse(&config, Path::new("config.yaml")).unwrap();
    assert_eq!(config.interval, std::time::Duration::from_secs(120));

    // The PrometheusRule holds exactly the rule files' groups, their templates left to Prometheus.
    let rule = find(&manifests, "PrometheusRule");
    assert_eq!(rule["metadata"]["labels"]["release"], "kube-prometheus-stack");
    let mut from_files = Vec::new();
    for file in ["deploy/prometheus/alerts.yml", "deploy/prometheus/recording.yml"] {
        let text = std::fs::read_to_string(Path::new(ROOT).join(file)).unwrap();
        let rules: Value = serde_saphyr::from_str(&text).unwrap();
        from_files.extend(rules["groups"].as_array().unwrap().clone());
    }
    assert_eq!(rule["spec"]["groups"].as_array().unwrap(), &from_files);
    let generated = Command::new(Path::new(ROOT).join("scripts/render-prometheusrule.sh")).arg("helm").output().unwrap();
    let template = std::fs::read_to_string(Path::new(ROOT).join(CHART).join("templates/prometheusrule.yaml")).unwrap();
    assert!(
        generated.stdout == template.as_bytes(),
        "{CHART}/templates/prometheusrule.yaml is out of date: run scripts/render-prometheusrule.sh helm > {CHART}/templates/prometheusrule.yaml"
    );
}

#[test]
fn a_changed_configuration_rolls_the_pods() {
    let checksum = |values: &Value| {
        let (_, manifests) = render(values);
        find(&manifests, "Deployment")["spec"]["template"]["metadata"]["annotations"]["checksum/config"].clone()
    };
    let default = checksum(&json!({}));
    assert!(default.as_str().is_some_and(|c| c.len() == 64), "{default}");
    assert_eq!(checksum(&json!({})), default);
    assert_ne!(checksum(&json!({"config": {"interval": "2m", "accounts": [{"name": "default"}]}})), default);
}
