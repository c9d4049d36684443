//! The alerting rules are valid and their unit tests pass, with the real promtool.

mod common;

use std::process::Command;

use common::process::tool;

fn promtool(args: &[&str]) -> (bool, String) {
    let output = Command::new(tool("promtool")).args(args).current_dir(env!("CARGO_MANIFEST_DIR")).output().unwrap();
    (output.status.success(), format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr)))
}

#[test]
fn promtool_check_rules_accepts_every_rule() {
    let (ok, report) = promtool(&["check", "rules", "deploy/prometheus/alerts.yml", "deploy/prometheus/recording.yml"]);
    assert!(ok, "{report}");
    assert_eq!(
        report,
        "Checking deploy/prometheus/alerts.yml\n  SUCCESS: 30 rules found\n\nChecking deploy/prometheus/recording.yml\n  SUCCESS: 18 rules found\n\n"
    );
}

#[test]
fn the_recording_rules_compute_the_delivery_metrics() {
    let (ok, report) = promtool(&["test", "rules", "deploy/prometheus/tests/recording_test.yml"]);
    assert!(ok, "{report}");
    assert_eq!(report, "Unit Testing:  deploy/prometheus/tests/recording_test.yml\n  SUCCESS\n\n");
}

#[test]
fn every_alert_has_a_passing_unit_test() {
    let (ok, report) = promtool(&["test", "rules", "deploy/prometheus/tests/alerts_test.yml"]);
    assert!(ok, "{report}");
    let rules = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/prometheus/alerts.yml")).unwrap();
    let tests = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/prometheus/tests/alerts_test.yml")).unwrap();
    let runbook = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/runbook.md")).unwrap();
    for alert in rules.lines().filter_map(|l| l.trim().strip_prefix("- alert: ")) {
        assert!(tests.contains(&format!("alertname: {alert}\n")), "{alert} has no unit test");
        assert!(runbook.contains(&format!("\n## {alert}\n")), "{alert} has no section in docs/runbook.md");
    }
}
