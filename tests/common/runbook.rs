//! Runbook links as an on-call engineer follows them: every alert's `runbook_url` is the base a
//! deployment set, and its anchor is a heading of the runbook the exporter serves at `/runbook`.

use codepipeline_exporter::runbook;

/// Checks every alert of `groups` (the `groups` of a rule file or a PrometheusRule's `spec`):
/// its link is `base#<alert in lower case>`, and the served runbook has that anchor. Returns how
/// many alerts it checked.
pub fn assert_links(name: &str, groups: &serde_json::Value, base: &str) -> usize {
    let page = &*runbook::PAGE;
    let mut checked = 0;
    for group in groups.as_array().unwrap_or_else(|| panic!("{name}: no groups")) {
        for rule in group["rules"].as_array().unwrap() {
            let Some(alert) = rule["alert"].as_str() else { continue };
            let url = rule["annotations"]["runbook_url"].as_str().unwrap_or_else(|| panic!("{name}: {alert} has no runbook_url"));
            let anchor = runbook::anchor(alert);
            assert_eq!(url, format!("{base}#{anchor}"), "{name}: {alert}");
            assert!(page.contains(&format!(" id=\"{anchor}\"")), "{name}: {alert}: the served runbook has no #{anchor}");
            checked += 1;
        }
    }
    checked
}
