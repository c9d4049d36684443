//! Kubernetes objects checked as the API server and the pods would take them.

use super::process::tool;

/// The oldest and newest Kubernetes versions whose schemas kubernetes-validate bundles.
const KUBERNETES: [&str; 2] = ["1.25.0", "1.37.0"];

/// Validates every object of `manifests` against the Kubernetes API schemas, strictly (unknown
/// fields are errors), as the API server would; the Prometheus Operator's custom resources against
/// the operator's own CRD schemas (tests/schemas), as strictly.
pub fn validate(name: &str, manifests: &[serde_json::Value]) {
    validate_custom_resources(name, manifests);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join(format!("{}.yaml", name.replace('/', "-")));
    let builtin: Vec<&serde_json::Value> =
        manifests.iter().filter(|m| !m["apiVersion"].as_str().unwrap().contains("monitoring.coreos.com")).collect();
    let text: Vec<String> = builtin.iter().map(|m| serde_json::to_string(m).unwrap()).collect();
    std::fs::write(&file, text.join("\n---\n")).unwrap();
    for version in KUBERNETES {
        let output = std::process::Command::new(tool("kubernetes-validate"))
            .args(["--strict", "--quiet", "-k", version, file.to_str().unwrap()])
            .output()
            .unwrap();
        let (ok, out, errors) =
            (output.status.success(), String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
        assert!(ok && !out.contains("ERROR") && !errors.contains("ERROR"), "{name} against Kubernetes {version}:\n{out}{errors}");
    }
    assert!(builtin.len() >= 4, "{name}: {} objects", builtin.len());
}

/// Validates the `monitoring.coreos.com` objects of `manifests` with tests/tools/validate_crds.py.
pub fn validate_custom_resources(name: &str, manifests: &[serde_json::Value]) {
    let custom: Vec<&serde_json::Value> =
        manifests.iter().filter(|m| m["apiVersion"].as_str().unwrap().contains("monitoring.coreos.com")).collect();
    if custom.is_empty() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("custom.json");
    std::fs::write(&file, serde_json::to_string(&custom).unwrap()).unwrap();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let python = root.join("target/tools/bin/python");
    assert!(
        python.is_file(),
        "{} is missing: run scripts/test.sh, which installs jsonschema with kubernetes-validate",
        python.display()
    );
    let output = std::process::Command::new(python)
        .arg(root.join("tests/tools/validate_crds.py"))
        .arg(root.join("tests/schemas"))
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{name}: custom resources against the Prometheus Operator's CRDs:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// What kubectl apply would accept but the pods would not survive: every object in the namespace,
/// the workload's selector matching its pods, the Service and ServiceMonitor finding them, the
/// ConfigMap the pods mount existing under its generated name, and a real image.
pub fn check_wiring(name: &str, manifests: &[serde_json::Value]) {
    for object in manifests {
        assert_eq!(object["metadata"]["namespace"], "monitoring", "{name}: {} has no namespace", object["kind"]);
    }
    let workloads: Vec<&serde_json::Value> =
        manifests.iter().filter(|m| m["kind"] == "Deployment" || m["kind"] == "StatefulSet").collect();
    assert_eq!(workloads.len(), 1, "{name}: one workload");
    let workload = workloads[0];
    let pod_labels = workload["spec"]["template"]["metadata"]["labels"].as_object().expect("pod labels");
    let matches = |selector: &serde_json::Value| {
        let selector = selector.as_object().expect("a selector");
        !selector.is_empty() && selector.iter().all(|(k, v)| pod_labels.get(k) == Some(v))
    };
    assert!(matches(&workload["spec"]["selector"]["matchLabels"]), "{name}: the workload's selector matches its pods");
    let service = manifests.iter().find(|m| m["kind"] == "Service").unwrap();
    assert!(matches(&service["spec"]["selector"]), "{name}: the Service selects the pods");
    if let Some(monitor) = manifests.iter().find(|m| m["kind"] == "ServiceMonitor") {
        let service_labels = service["metadata"]["labels"].as_object().unwrap();
        assert!(
            monitor["spec"]["selector"]["matchLabels"].as_object().unwrap().iter().all(|(k, v)| service_labels.get(k) == Some(v)),
            "{name}: the ServiceMonitor selects the Service"
        );
        let port = monitor["spec"]["endpoints"][0]["port"].as_str().unwrap();
        assert!(service["spec"]["ports"].as_array().unwrap().iter().any(|p| p["name"] == port), "{name}: port {port}");
    }
    let pod = &workload["spec"]["template"]["spec"];
    for volume in pod["volumes"].as_array().unwrap() {
        for (kind, field, key) in [("ConfigMap", "configMap", "name"), ("Secret", "secret", "secretName")] {
            if let Some(source) = volume[field][key].as_str() {
                assert!(
                    manifests.iter().any(|m| m["kind"] == kind && m["metadata"]["name"] == source),
                    "{name}: the pods mount {kind} {source}, which the manifests do not hold"
                );
            }
        }
    }
    let image = pod["containers"][0]["image"].as_str().unwrap();
    assert!(image.contains('/') && image.contains(':'), "{name}: image {image} is the placeholder");
    let account = pod["serviceAccountName"].as_str().unwrap();
    assert!(manifests.iter().any(|m| m["kind"] == "ServiceAccount" && m["metadata"]["name"] == account), "{name}");
}

/// The inhibitions of the compose stack's Alertmanager (deploy/alertmanager/alertmanager.yml) as
/// the `spec` of a Prometheus Operator AlertmanagerConfig, which must hold the same rules.
pub fn inhibitions_of_compose() -> serde_json::Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/alertmanager/alertmanager.yml");
    let config: serde_json::Value = serde_saphyr::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let matchers = |list: &serde_json::Value| -> serde_json::Value {
        list.as_array()
            .unwrap()
            .iter()
            .map(|m| {
                let (name, value) = m.as_str().unwrap().split_once('=').unwrap();
                serde_json::json!({"name": name, "value": value.trim_matches('"')})
            })
            .collect()
    };
    let rules: Vec<serde_json::Value> = config["inhibit_rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|rule| {
            serde_json::json!({
                "sourceMatch": matchers(&rule["source_matchers"]),
                "targetMatch": matchers(&rule["target_matchers"]),
                "equal": rule["equal"],
            })
        })
        .collect();
    assert_eq!(rules.len(), 2);
    serde_json::json!({ "inhibitRules": rules })
}
