//! The CI/CD metrics use only what the pinned semantic conventions define: every attribute name
//! and enumerated value below is in release 1.44.0's registry (`model/cicd/registry.yaml`,
//! `model/error/registry.yaml`, `model/cloud/registry.yaml`, `model/service/registry.yaml`), and
//! every metric's name, instrument and unit is as `model/cicd/metrics.yaml` defines it.

use std::collections::BTreeSet;

use codepipeline_exporter::codepipeline::semconv::{
    EXECUTING, OTHER, PENDING, RUN_ACTIVE, RUN_DURATION, RUN_ERRORS, SYSTEM_ERRORS,
};
use codepipeline_exporter::codepipeline::trace::pipeline_result;
use codepipeline_exporter::metrics_push::otlp::Instrument;
use codepipeline_exporter::otlp::SCHEMA_URL;

const VERSION: &str = "1.44.0";

/// The registry's attributes the metrics use, with the values the registry enumerates (`None`
/// for a free-form string).
const REGISTRY: [(&str, Option<&[&str]>); 9] = [
    ("cicd.pipeline.name", None),
    ("cicd.pipeline.run.state", Some(&["pending", "executing", "finalizing"])),
    ("cicd.pipeline.result", Some(&["success", "failure", "error", "timeout", "cancellation", "skip"])),
    ("cicd.system.component", None),
    // A free-form string whose one enumerated value is `_OTHER`.
    ("error.type", Some(&["_OTHER"])),
    ("service.name", None),
    ("cloud.provider", Some(&["akamai_cloud", "alibaba_cloud", "aws", "azure", "gcp", "heroku", "hetzner", "ibm_cloud"])),
    ("cloud.account.id", None),
    ("cloud.region", None),
];

/// `model/cicd/metrics.yaml`: name, instrument, unit. `cicd.worker.count` is left out (see
/// docs/otlp.md).
const METRICS: [(&str, Instrument, &str); 4] = [
    ("cicd.pipeline.run.duration", Instrument::Histogram, "s"),
    ("cicd.pipeline.run.active", Instrument::UpDownCounter, "{run}"),
    ("cicd.pipeline.run.errors", Instrument::Counter, "{error}"),
    ("cicd.system.errors", Instrument::Counter, "{error}"),
];

fn enumerated(attribute: &str) -> &'static [&'static str] {
    REGISTRY.iter().find(|(name, _)| *name == attribute).and_then(|(_, values)| *values).unwrap()
}

#[test]
fn the_schema_is_the_pinned_release() {
    assert_eq!(SCHEMA_URL, format!("https://opentelemetry.io/schemas/{VERSION}"));
}

#[test]
fn the_metrics_are_those_of_the_registry() {
    let ours = [&RUN_DURATION, &RUN_ACTIVE, &RUN_ERRORS, &SYSTEM_ERRORS];
    let ours: Vec<(&str, Instrument, &str)> = ours.iter().map(|m| (m.name, m.instrument, m.unit)).collect();
    assert_eq!(ours, METRICS);
}

#[test]
fn every_enumerated_value_used_is_in_the_registry() {
    for state in [PENDING, EXECUTING] {
        assert!(enumerated("cicd.pipeline.run.state").contains(&state), "{state}");
    }
    for status in ["Succeeded", "Failed", "Stopped", "Cancelled", "Superseded", "InProgress"] {
        assert!(enumerated("cicd.pipeline.result").contains(&pipeline_result(status)), "{status}");
    }
    assert!(enumerated("error.type").contains(&OTHER));
    assert!(enumerated("cloud.provider").contains(&"aws"));
}

/// Dotted names quoted in a file's code, its unit tests left out.
fn dotted_names(path: &str) -> BTreeSet<String> {
    let code = std::fs::read_to_string(format!("{}/{path}", env!("CARGO_MANIFEST_DIR"))).unwrap();
    let code = code.split("#[cfg(test)]").next().unwrap();
    let code: String = code.lines().filter(|l| !l.trim_start().starts_with("//")).collect::<Vec<_>>().join("\n");
    let pattern = regex::Regex::new(r#""([a-z_]+(?:\.[a-z_]+)+)""#).unwrap();
    pattern.captures_iter(&code).map(|c| c[1].to_string()).collect()
}

#[test]
fn every_attribute_name_the_metrics_use_is_in_the_registry() {
    let known: BTreeSet<&str> = REGISTRY.iter().map(|(name, _)| *name).chain(METRICS.iter().map(|(name, ..)| *name)).collect();
    let mut used = dotted_names("src/codepipeline/semconv.rs");
    used.extend(dotted_names("src/metrics_push.rs"));
    let unknown: Vec<&String> = used.iter().filter(|name| !known.contains(name.as_str())).collect();
    assert!(unknown.is_empty(), "not in the {VERSION} registry: {unknown:?}");
    for attribute in
        ["cicd.pipeline.name", "cicd.pipeline.run.state", "cicd.pipeline.result", "error.type", "cicd.system.component"]
    {
        assert!(used.contains(attribute), "{attribute} is not used: the list is stale");
    }
}
