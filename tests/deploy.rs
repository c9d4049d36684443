//! The deployment files: Kubernetes manifests, the PrometheusRule rendered from the one rules
//! source, the Prometheus and Alertmanager configurations of the compose setup, the Dockerfile
//! and the systemd unit, each checked with the real tool where there is one.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use codepipeline_exporter::config::Config;
use common::kubernetes;
use common::process::tool;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn run(program: &Path, args: &[&str]) -> (bool, String, String) {
    let output = Command::new(program).args(args).current_dir(ROOT).output().unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn read(path: &str) -> String {
    std::fs::read_to_string(Path::new(ROOT).join(path)).unwrap()
}

fn yaml(text: &str) -> serde_json::Value {
    serde_saphyr::from_str(text).unwrap()
}

#[test]
fn the_prometheus_rule_is_rendered_from_the_rule_files() {
    let (ok, rendered, errors) = run(&Path::new(ROOT).join("scripts/render-prometheusrule.sh"), &[]);
    assert!(ok, "{errors}");
    assert!(
        rendered == read("deploy/kubernetes/base/prometheusrule.yaml"),
        "deploy/kubernetes/base/prometheusrule.yaml is out of date: run scripts/render-prometheusrule.sh > deploy/kubernetes/base/prometheusrule.yaml"
    );
    let rule = yaml(&rendered);
    let groups = rule["spec"]["groups"].as_array().unwrap();
    let names: Vec<&str> = groups.iter().map(|g| g["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        ["codeconnections", "codepipeline", "codepipeline-exporter", "codepipeline-delivery", "codepipeline-anatomy"]
    );
    let mut from_files = Vec::new();
    for file in ["deploy/prometheus/alerts.yml", "deploy/prometheus/recording.yml"] {
        from_files.extend(yaml(&read(file))["groups"].as_array().unwrap().clone());
    }
    assert_eq!(groups, &from_files, "the PrometheusRule holds exactly the rule files' groups");
}

/// The manifests of `dir` as `kubectl kustomize` builds them, and as kubectl would apply them.
fn manifests(dir: &str) -> Vec<serde_json::Value> {
    let (ok, out, errors) = run(&tool("kubectl"), &["kustomize", dir]);
    assert!(ok, "kubectl kustomize {dir} failed: {errors}");
    serde_saphyr::from_multiple(&out).unwrap()
}

#[test]
fn both_kustomize_variants_are_valid_kubernetes_objects_wired_together() {
    for dir in ["deploy/kubernetes", "deploy/kubernetes/sharded"] {
        let manifests = manifests(dir);
        kubernetes::validate(dir, &manifests);
        kubernetes::check_wiring(dir, &manifests);
    }
}

#[test]
fn kustomize_builds_a_hardened_deployment() {
    let manifests = manifests("deploy/kubernetes");
    let kinds: BTreeSet<&str> = manifests.iter().map(|m| m["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        BTreeSet::from([
            "AlertmanagerConfig",
            "ConfigMap",
            "Deployment",
            "PrometheusRule",
            "Service",
            "ServiceAccount",
            "ServiceMonitor"
        ])
    );
    let deployment = manifests.iter().find(|m| m["kind"] == "Deployment").unwrap();
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(pod["securityContext"]["runAsUser"], 65532);
    let container = &pod["containers"][0];
    assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(container["securityContext"]["allowPrivilegeEscalation"], false);
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/-/healthy");
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/-/ready");
    assert!(container["resources"]["limits"]["memory"].is_string() && container["resources"]["requests"]["cpu"].is_string());
    let account = manifests.iter().find(|m| m["kind"] == "ServiceAccount").unwrap();
    assert!(account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"].as_str().unwrap().starts_with("arn:aws:iam::"));
    // The configuration the ConfigMap carries is one the exporter accepts.
    Config::parse(&read("deploy/kubernetes/base/config.yaml"), Path::new("deploy/kubernetes/base/config.yaml")).unwrap();
    let config_map = manifests.iter().find(|m| m["kind"] == "ConfigMap").unwrap();
    assert_eq!(config_map["data"]["config.yaml"].as_str().unwrap(), read("deploy/kubernetes/base/config.yaml"));
    let volume = pod["volumes"][0]["configMap"]["name"].as_str().unwrap();
    assert_eq!(volume, config_map["metadata"]["name"].as_str().unwrap(), "the Deployment mounts the generated ConfigMap");
}

#[test]
fn promtool_accepts_the_compose_prometheus_configuration() {
    let (ok, out, errors) = run(&tool("promtool"), &["check", "config", "deploy/prometheus/prometheus.yml"]);
    assert!(ok, "{out}{errors}");
    assert!(out.contains("SUCCESS: 30 rules found") && out.contains("SUCCESS: 18 rules found"), "{out}");
}

#[test]
fn amtool_accepts_the_alertmanager_configuration() {
    let (ok, out, errors) = run(&tool("amtool"), &["check-config", "deploy/alertmanager/alertmanager.yml"]);
    assert!(ok, "{out}{errors}");
    assert!(out.contains("SUCCESS"), "{out}");
}

/// Copies deploy/kubernetes to a temporary directory, as a user's checkout of it.
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &to.join(entry.file_name()));
        } else {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

#[test]
fn kustomize_runbook_links_follow_runbook_yaml_and_the_inhibitions_ship() {
    for dir in ["deploy/kubernetes", "deploy/kubernetes/sharded"] {
        let manifests = manifests(dir);
        let rule = manifests.iter().find(|m| m["kind"] == "PrometheusRule").unwrap();
        assert_eq!(common::runbook::assert_links(dir, &rule["spec"]["groups"], "http://localhost:19264/runbook"), 30);
        let inhibitions = manifests.iter().find(|m| m["kind"] == "AlertmanagerConfig").unwrap();
        assert_eq!(inhibitions["spec"], kubernetes::inhibitions_of_compose(), "{dir}: the inhibitions of deploy/alertmanager");
        assert!(!manifests.iter().any(|m| m["metadata"]["name"] == "codepipeline-exporter-runbook"), "{dir}: build-time only");
    }
    // A user's base, set in the one place the header names.
    let checkout = tempfile::tempdir().unwrap();
    copy_tree(&Path::new(ROOT).join("deploy/kubernetes"), checkout.path());
    let runbook = checkout.path().join("base/runbook.yaml");
    let text = std::fs::read_to_string(&runbook).unwrap();
    let base = "https://github.com/acme/codepipeline-exporter/blob/main/docs/runbook.md";
    std::fs::write(&runbook, text.replace("base_url: http://localhost:19264/runbook", &format!("base_url: {base}"))).unwrap();
    for dir in ["", "sharded"] {
        let manifests = manifests(checkout.path().join(dir).to_str().unwrap());
        let rule = manifests.iter().find(|m| m["kind"] == "PrometheusRule").unwrap();
        assert_eq!(common::runbook::assert_links("user's kustomize", &rule["spec"]["groups"], base), 30);
    }
}

#[test]
fn the_compose_stacks_runbook_links_open_the_exporters_own_runbook() {
    let compose = yaml(&read("deploy/docker-compose.yml"));
    assert_eq!(compose["services"]["exporter"]["ports"][0], "19264:19264", "the exporter's /runbook is on localhost:19264");
    assert!(compose["services"]["prometheus"]["volumes"][0].as_str().unwrap().starts_with("./prometheus:"));
    let config = yaml(&read("deploy/prometheus/prometheus.yml"));
    assert!(config["rule_files"].as_array().unwrap().iter().any(|f| f.as_str().unwrap().ends_with("alerts.yml")));
    let rules = yaml(&read("deploy/prometheus/alerts.yml"));
    assert_eq!(common::runbook::assert_links("compose", &rules["groups"], "http://localhost:19264/runbook"), 30);
}

#[test]
fn the_compose_file_mounts_files_that_exist() {
    let compose = yaml(&read("deploy/docker-compose.yml"));
    let services: BTreeSet<&str> = compose["services"].as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(services, BTreeSet::from(["alertmanager", "exporter", "grafana", "otel-collector", "prometheus", "tempo"]));
    assert_eq!(compose["services"]["exporter"]["command"][0], "--demo");
    for service in compose["services"].as_object().unwrap().values() {
        for volume in service["volumes"].as_array().into_iter().flatten() {
            let host = volume.as_str().unwrap().split(':').next().unwrap();
            assert!(Path::new(ROOT).join("deploy").join(host).exists(), "{host} is mounted but does not exist");
        }
    }
    let dockerfile = read("deploy/Dockerfile");
    assert_eq!(dockerfile.lines().filter(|l| l.starts_with("FROM ")).count(), 2, "a build stage and a small final stage");
    let final_stage = dockerfile.rsplit("FROM ").next().unwrap();
    assert!(final_stage.contains("\nUSER 65532:65532\n"), "the final image runs as a non-root user");
    assert!(!dockerfile.to_lowercase().contains("openssl"));
}

/// The compose setup's trace path holds together: the exporter sends to the collector's OTLP/HTTP
/// receiver, the collector's pipeline uses only components it defines and exports to Tempo's OTLP
/// gRPC port, Prometheus keeps exemplars, and Grafana's Prometheus data source opens their
/// `trace_id` in the Tempo data source, which points at Tempo's HTTP port. The collector's metrics
/// pipeline takes the CI/CD metrics to Prometheus's OTLP receiver.
#[test]
fn the_compose_trace_path_is_wired_from_the_exporter_to_grafana() {
    let compose = yaml(&read("deploy/docker-compose.yml"));
    let services = &compose["services"];
    let collector = yaml(&read("deploy/otel-collector/config.yaml"));
    let tempo = yaml(&read("deploy/tempo/tempo.yaml"));
    let receiver_port =
        collector["receivers"]["otlp"]["protocols"]["http"]["endpoint"].as_str().unwrap().rsplit(':').next().unwrap();
    assert_eq!(
        services["exporter"]["environment"]["OTEL_EXPORTER_OTLP_ENDPOINT"],
        format!("http://otel-collector:{receiver_port}")
    );
    assert_eq!(services["otel-collector"]["volumes"][0], "./otel-collector:/etc/otelcol:ro");
    assert_eq!(services["otel-collector"]["command"][0], "--config=/etc/otelcol/config.yaml");
    for (kind, section) in [("receivers", "receivers"), ("processors", "processors"), ("exporters", "exporters")] {
        for (_, pipeline) in collector["service"]["pipelines"].as_object().unwrap() {
            for component in pipeline[kind].as_array().unwrap() {
                assert!(collector[section].get(component.as_str().unwrap()).is_some(), "{component} is used but not defined");
            }
        }
    }
    let grpc_port =
        tempo["distributor"]["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"].as_str().unwrap().rsplit(':').next().unwrap();
    assert_eq!(collector["exporters"]["otlp/tempo"]["endpoint"], format!("tempo:{grpc_port}"));
    assert_eq!(services["tempo"]["command"][0], "-config.file=/etc/tempo/tempo.yaml");
    let prometheus: Vec<&str> =
        services["prometheus"]["command"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
    assert!(prometheus.contains(&"--enable-feature=exemplar-storage"), "{prometheus:?}");
    // The CI/CD metrics: the collector's metrics pipeline passes them to Prometheus's OTLP receiver.
    assert!(prometheus.contains(&"--enable-feature=otlp-write-receiver"), "{prometheus:?}");
    assert_eq!(collector["service"]["pipelines"]["metrics"]["receivers"][0], "otlp");
    let prometheus_port = services["prometheus"]["ports"][0].as_str().unwrap().rsplit(':').next().unwrap();
    assert_eq!(
        collector["exporters"]["otlphttp/prometheus"]["endpoint"],
        format!("http://prometheus:{prometheus_port}/api/v1/otlp")
    );
    assert_eq!(collector["service"]["pipelines"]["metrics"]["exporters"][0], "otlphttp/prometheus");
    let datasources = yaml(&read("grafana/provisioning/datasources/prometheus.yaml"));
    let datasources = datasources["datasources"].as_array().unwrap();
    let by_type = |kind: &str| datasources.iter().find(|d| d["type"] == kind).unwrap();
    let destination = &by_type("prometheus")["jsonData"]["exemplarTraceIdDestinations"][0];
    assert_eq!(destination["name"], "trace_id", "the exemplar label the exporter writes");
    assert_eq!(destination["datasourceUid"], by_type("tempo")["uid"]);
    assert_eq!(by_type("tempo")["url"], format!("http://tempo:{}", tempo["server"]["http_listen_port"]));
}

#[test]
fn systemd_accepts_the_unit() {
    // The unit names the installed binary; verify it against the one this build made.
    let dir = tempfile::tempdir().unwrap();
    let unit = read("deploy/systemd/codepipeline-exporter.service")
        .replace("/usr/local/bin/codepipeline-exporter", env!("CARGO_BIN_EXE_codepipeline-exporter"));
    let path = dir.path().join("codepipeline-exporter.service");
    std::fs::write(&path, unit).unwrap();
    let (ok, out, errors) = run(&tool("systemd-analyze"), &["verify", path.to_str().unwrap()]);
    assert!(ok && errors.trim().is_empty(), "{out}{errors}");
}

#[test]
fn the_sharded_variant_runs_a_statefulset_whose_pods_take_their_shard_from_their_name() {
    let manifests = manifests("deploy/kubernetes/sharded");
    let kinds: BTreeSet<&str> = manifests.iter().map(|m| m["kind"].as_str().unwrap()).collect();
    assert!(kinds.contains("StatefulSet"));
    let set = manifests.iter().find(|m| m["kind"] == "StatefulSet").unwrap();
    let container = &set["spec"]["template"]["spec"]["containers"][0];
    let args: Vec<&str> = container["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
    assert!(args.contains(&"--shard=$(POD_NAME)") && args.contains(&"--total-shards=$(TOTAL_SHARDS)"), "{args:?}");
    let env = container["env"].as_array().unwrap();
    assert_eq!(env.iter().find(|e| e["name"] == "POD_NAME").unwrap()["valueFrom"]["fieldRef"]["fieldPath"], "metadata.name");
    let total = env.iter().find(|e| e["name"] == "TOTAL_SHARDS").unwrap()["value"].as_str().unwrap();
    assert_eq!(set["spec"]["replicas"].as_u64().unwrap().to_string(), total, "replicas and TOTAL_SHARDS agree");
    assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
    assert!(!kinds.contains("Deployment"), "kustomize replaced the Deployment with the StatefulSet");
    assert_eq!(set["spec"]["serviceName"], "codepipeline-exporter");
}

#[test]
fn hadolint_finds_nothing_in_the_dockerfile() {
    let (ok, out, errors) = run(&tool("hadolint"), &["deploy/Dockerfile"]);
    assert!(ok && out.is_empty() && errors.is_empty(), "{out}{errors}");
}

/// The event types the exporter routes, as the simulated account emits them: every deployment
/// artifact must forward every one.
const EVENT_TYPES: [&str; 5] = [
    "CodePipeline Pipeline Execution State Change",
    "CodePipeline Stage Execution State Change",
    "CodePipeline Action Execution State Change",
    "Git Sync Repository Sync Status Change",
    "Git Sync Resource Sync Status Change",
];

/// checkov's summary of one scan, as its JSON report gives it, and the IDs of the checks that
/// failed or were skipped.
fn checkov(args: &[&str]) -> (serde_json::Value, Vec<String>, Vec<String>) {
    let mut all = vec!["--skip-download", "--compact", "-o", "json"];
    all.extend_from_slice(args);
    let (ok, out, errors) = run(&tool("checkov"), &all);
    let report: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|_| panic!("checkov's report:\n{out}{errors}"));
    let ids = |kind: &str| -> Vec<String> {
        report["results"][kind].as_array().unwrap().iter().map(|c| c["check_id"].as_str().unwrap().to_string()).collect()
    };
    let (failed, skipped) = (ids("failed_checks"), ids("skipped_checks"));
    assert!(ok || !failed.is_empty(), "checkov failed without a finding:\n{errors}");
    (report["summary"].clone(), failed, skipped)
}

#[test]
fn the_events_cloudformation_template_passes_cfn_lint_and_checkov() {
    let (summary, skipped) = cloudformation("deploy/events/cloudformation.yaml");
    // Both queues use SSE-SQS, which the check does not know; the template says so where it skips.
    assert_eq!(skipped, ["CKV_AWS_27", "CKV_AWS_27"]);
    // Two queues, the forwarding role, two rules, the topic subscription and the queue policy, each
    // under its condition.
    assert_eq!((summary["resource_count"].as_u64(), summary["parsing_errors"].as_u64()), (Some(7), Some(0)));
    assert_forwards_every_event_type("deploy/events/cloudformation.yaml");
}

#[test]
fn the_events_terraform_module_passes_checkov() {
    let (summary, failed, skipped) = checkov(&["-d", "deploy/events/terraform", "--framework", "terraform"]);
    assert_eq!((failed, skipped), (Vec::<String>::new(), Vec::<String>::new()));
    // Two queues, the forwarding role and its policy, two rules, two rule targets, the topic
    // subscription and the queue policy, each under its count.
    assert_eq!((summary["resource_count"].as_u64(), summary["parsing_errors"].as_u64()), (Some(10), Some(0)));
    assert_eq!(summary["passed"].as_u64(), Some(48));
    assert_forwards_every_event_type("deploy/events/terraform/main.tf");
}

#[test]
fn the_organization_member_template_passes_cfn_lint_and_checkov() {
    let (summary, skipped) = cloudformation("deploy/events/organization/member.yaml");
    assert_eq!(skipped, Vec::<String>::new());
    // The read-only role (created in RoleRegion only), the forwarding role and the rule.
    assert_eq!((summary["resource_count"].as_u64(), summary["parsing_errors"].as_u64()), (Some(3), Some(0)));
    assert_forwards_every_event_type("deploy/events/organization/member.yaml");
}

#[test]
fn the_organization_central_template_passes_cfn_lint_and_checkov() {
    let (summary, skipped) = cloudformation("deploy/events/organization/central.yaml");
    // Both queues use SSE-SQS, which the check does not know; the template says so where it skips.
    assert_eq!(skipped, ["CKV_AWS_27", "CKV_AWS_27"]);
    // The bus and its policy, two queues, the bus's rule, the own account's rule and the queue policy.
    assert_eq!((summary["resource_count"].as_u64(), summary["parsing_errors"].as_u64()), (Some(7), Some(0)));
    assert_forwards_every_event_type("deploy/events/organization/central.yaml");
}

#[test]
fn the_organization_member_terraform_module_passes_checkov() {
    let (summary, failed, skipped) = checkov(&["-d", "deploy/events/organization/terraform/member", "--framework", "terraform"]);
    // The read-only actions cover every resource of the account, as deploy/iam-policy.json's do; the
    // module says so where it skips.
    assert_eq!((failed, skipped), (Vec::<String>::new(), vec!["CKV_AWS_356".to_string()]));
    // The read-only role and its policy, the forwarding role and its policy, the rule and its target.
    assert_eq!((summary["resource_count"].as_u64(), summary["parsing_errors"].as_u64()), (Some(6), Some(0)));
    assert_eq!(summary["passed"].as_u64(), Some(57));
    assert_forwards_every_event_type("deploy/events/organization/terraform/member/main.tf");
}

#[test]
fn the_organization_central_terraform_module_passes_checkov() {
    let (summary, failed, skipped) = checkov(&["-d", "deploy/events/organization/terraform/central", "--framework", "terraform"]);
    assert_eq!((failed, skipped), (Vec::<String>::new(), Vec::<String>::new()));
    // The bus and its policy, two queues, two rules, two rule targets and the queue policy.
    assert_eq!((summary["resource_count"].as_u64(), summary["parsing_errors"].as_u64()), (Some(9), Some(0)));
    assert_eq!(summary["passed"].as_u64(), Some(30));
    assert_forwards_every_event_type("deploy/events/organization/terraform/central/main.tf");
}

/// cfn-lint finds nothing in the template, and checkov fails nothing: checkov's summary and the
/// IDs of the checks it skipped.
fn cloudformation(path: &str) -> (serde_json::Value, Vec<String>) {
    let (ok, out, errors) = run(&tool("cfn-lint"), &[path]);
    assert!(ok && out.is_empty(), "{path}: {out}{errors}");
    let (summary, failed, skipped) = checkov(&["-f", path, "--framework", "cloudformation"]);
    assert_eq!(failed, Vec::<String>::new(), "{path}");
    (summary, skipped)
}

/// Every event type the exporter reads is in the file's event patterns: a YAML list item, or an
/// element of a Terraform `jsonencode` list.
fn assert_forwards_every_event_type(path: &str) {
    let text = read(path);
    for detail_type in EVENT_TYPES {
        let item = if path.ends_with(".tf") { format!("\"{detail_type}\",") } else { format!("- {detail_type}\n") };
        assert!(text.contains(&item), "{path} does not forward {detail_type}");
    }
}
