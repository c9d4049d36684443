//! The status page (`/status`) and its JSON (`/api/v1/status`): which targets are down and why,
//! what each account and region is doing, and what the exporter exports.
//!
//! Error messages stay out of labels, so without this page the answer to "why is this target
//! down?" is only in the logs. Everything here is read from what the polling tasks, telemetry and
//! the store already hold, when someone opens the page: it never calls AWS and costs nothing
//! otherwise. Everything that comes from AWS or the configuration is HTML-escaped.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::exposition::{Format, unix_seconds};
use crate::store::Store;
use crate::target::{DISCOVERY, Statuses};
use crate::telemetry::{Signal, Telemetry};

/// Which targets a request asks for, from its query string: `kind`, `state` (`up` or `down`) and
/// `name` (a part of the name).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Filter {
    pub kind: Option<String>,
    pub up: Option<bool>,
    pub name: Option<String>,
}

impl Filter {
    /// Reads `kind`, `state` and `name` from a query string; other parameters and empty values are
    /// ignored, as is a `state` other than `up` or `down`.
    pub fn parse(query: Option<&str>) -> Filter {
        let mut filter = Filter::default();
        for pair in query.unwrap_or_default().split('&') {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let value = percent_decode(value);
            if value.is_empty() {
                continue;
            }
            match key {
                "kind" => filter.kind = Some(value),
                "state" if value == "up" || value == "down" => filter.up = Some(value == "up"),
                "name" => filter.name = Some(value),
                _ => {}
            }
        }
        filter
    }

    fn admits(&self, target: &TargetReport) -> bool {
        self.kind.as_ref().is_none_or(|kind| *kind == target.kind)
            && self.up.is_none_or(|up| up == target.up)
            && self.name.as_ref().is_none_or(|name| target.name.contains(name.as_str()))
    }
}

/// Decodes `application/x-www-form-urlencoded` text: `+` is a space, `%XX` a byte. Invalid
/// escapes are kept as they are, and invalid UTF-8 is replaced.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                match std::str::from_utf8(&bytes[i + 1..i + 3]).ok().and_then(|hex| u8::from_str_radix(hex, 16).ok()) {
                    Some(byte) => {
                        out.push(byte);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            other => out.push(other),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Everything the page shows; its JSON form is the documented `/api/v1/status`.
#[derive(Debug, Serialize)]
pub struct Report {
    /// When the report was made, in seconds since the epoch.
    pub generated_at: f64,
    pub scopes: Vec<ScopeReport>,
    pub targets: Vec<TargetReport>,
    pub summary: Summary,
    /// The trace exporter, when traces are on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub traces: Option<TracesReport>,
    /// The push of the CI/CD metrics over OTLP, when it is on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics_push: Option<MetricsPushReport>,
}

/// Where the CI/CD metrics are pushed, and how that goes.
#[derive(Debug, Serialize)]
pub struct MetricsPushReport {
    pub endpoint: String,
    /// Whether the last export succeeded, or none failed yet.
    pub up: bool,
    pub points_exported: u64,
    pub points_dropped: u64,
    pub points_queued: usize,
    pub last_export: Option<f64>,
    /// The last failed export's reason, until an export succeeds.
    pub last_error: Option<String>,
}

/// Where runs go as traces, and how that goes.
#[derive(Debug, Serialize)]
pub struct TracesReport {
    pub endpoint: String,
    /// Whether the last export succeeded, or none failed yet.
    pub up: bool,
    pub spans_exported: u64,
    pub spans_dropped: u64,
    pub spans_queued: usize,
    pub last_export: Option<f64>,
    /// The last failed export's reason, until an export succeeds.
    pub last_error: Option<String>,
}

/// One account and region.
#[derive(Debug, Serialize)]
pub struct ScopeReport {
    pub account: String,
    pub region: String,
    /// Each service's discovery.
    pub discovery: Vec<DiscoveryReport>,
    pub budget: Option<BudgetReport>,
}

#[derive(Debug, Serialize)]
pub struct DiscoveryReport {
    pub service: String,
    pub up: bool,
    pub last_success: Option<f64>,
    pub error: Option<ErrorReport>,
}

/// The request budget of an account and region, as its own metrics report it.
#[derive(Debug, Serialize)]
pub struct BudgetReport {
    pub requests_per_second: f64,
    pub waiting_requests: usize,
    pub schedule_lag_seconds: f64,
    pub wait_seconds_total: f64,
}

#[derive(Debug, Serialize)]
pub struct TargetReport {
    pub account: String,
    pub region: String,
    pub kind: String,
    pub name: String,
    pub up: bool,
    /// The object's status in a word (a pipeline's or a sync's), when the target has one.
    pub state: Option<String>,
    pub last_success: Option<f64>,
    pub next_poll: Option<f64>,
    pub error: Option<ErrorReport>,
}

/// A failed poll's AWS error: its code, and the whole message, which may quote request data.
#[derive(Debug, Serialize)]
pub struct ErrorReport {
    pub code: String,
    pub message: String,
}

#[derive(Debug, Serialize)]
pub struct Summary {
    /// Targets by kind and state, failures first.
    pub states: Vec<StateCount>,
    /// Targets by kind, up and down.
    pub kinds: Vec<KindCount>,
    /// Series per metric family of the kept exposition (the exporter's own metrics aside).
    pub families: Vec<FamilyCount>,
    /// The size of the kept exposition, uncompressed and as a gzip scrape sends it.
    pub body_bytes: BodyBytes,
}

#[derive(Debug, Serialize)]
pub struct StateCount {
    pub kind: String,
    pub state: String,
    pub targets: usize,
}

#[derive(Debug, Serialize)]
pub struct KindCount {
    pub kind: String,
    pub up: usize,
    pub down: usize,
}

#[derive(Debug, Serialize)]
pub struct FamilyCount {
    pub name: &'static str,
    pub series: usize,
}

#[derive(Debug, Serialize)]
pub struct BodyBytes {
    pub text: u64,
    pub gzip: usize,
}

/// Collects the report: every target `filter` admits, and the summary of all of them.
pub fn report(statuses: &Statuses, telemetry: &Telemetry, store: &Store, filter: &Filter) -> Report {
    let error = |status: &crate::target::Status| {
        status.error.as_ref().filter(|_| !status.up).map(|e| ErrorReport { code: e.code.clone(), message: e.detail.clone() })
    };
    let mut scopes: BTreeMap<(String, String), ScopeReport> = BTreeMap::new();
    let scope = |scopes: &mut BTreeMap<(String, String), ScopeReport>, account: &str, region: &str| {
        scopes.entry((account.to_string(), region.to_string())).or_insert_with(|| ScopeReport {
            account: account.to_string(),
            region: region.to_string(),
            discovery: Vec::new(),
            budget: None,
        });
    };
    for ((account, region), budget) in telemetry.budgets() {
        scope(&mut scopes, &account, &region);
        if let Some(scope) = scopes.get_mut(&(account, region)) {
            scope.budget = Some(BudgetReport {
                requests_per_second: budget.requests_per_second,
                waiting_requests: budget.waiting,
                schedule_lag_seconds: budget.lag.as_secs_f64(),
                wait_seconds_total: budget.waited.iter().map(Duration::as_secs_f64).sum(),
            });
        }
    }
    let mut targets = Vec::new();
    let mut states: BTreeMap<(String, String), usize> = BTreeMap::new();
    let mut kinds: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for (key, status) in statuses.snapshot() {
        if key.kind == DISCOVERY {
            scope(&mut scopes, &key.account, &key.region);
            if let Some(scope) = scopes.get_mut(&(key.account.to_string(), key.region.to_string())) {
                scope.discovery.push(DiscoveryReport {
                    service: key.name.clone(),
                    up: status.up,
                    last_success: status.last_success,
                    error: error(&status),
                });
            }
        }
        let counts = kinds.entry(key.kind.to_string()).or_default();
        if status.up {
            counts.0 += 1;
        } else {
            counts.1 += 1;
        }
        if let Some(state) = &status.state {
            *states.entry((key.kind.to_string(), state.clone())).or_default() += 1;
        }
        let target = TargetReport {
            account: key.account.to_string(),
            region: key.region.to_string(),
            kind: key.kind.to_string(),
            name: key.name.clone(),
            up: status.up,
            state: status.state.clone(),
            last_success: status.last_success,
            next_poll: status.next_poll,
            error: error(&status),
        };
        if filter.admits(&target) {
            targets.push(target);
        }
    }
    // Down targets first, then by account, region, kind and name.
    targets.sort_by_key(|t| t.up);
    let mut states: Vec<StateCount> =
        states.into_iter().map(|((kind, state), targets)| StateCount { kind, state, targets }).collect();
    states.sort_by_key(|s| (s.kind.clone(), !s.state.to_ascii_lowercase().contains("fail"), s.state.clone()));
    let exposition = store.exposition();
    let body = exposition.deflated(Format::Text);
    Report {
        generated_at: unix_seconds(SystemTime::now()),
        scopes: scopes.into_values().collect(),
        targets,
        summary: Summary {
            states,
            kinds: kinds.into_iter().map(|(kind, (up, down))| KindCount { kind, up, down }).collect(),
            families: store.series_per_family().into_iter().map(|(name, series)| FamilyCount { name, series }).collect(),
            body_bytes: BodyBytes { text: body.text_len(), gzip: body.deflated_len() },
        },
        metrics_push: telemetry.export_stats(Signal::Metrics).map(|t| MetricsPushReport {
            up: t.last_error.is_none(),
            points_exported: t.exported,
            points_dropped: t.dropped.values().sum(),
            points_queued: t.queued,
            last_export: t.last_export,
            last_error: t.last_error.map(|(reason, _)| reason),
            endpoint: t.endpoint,
        }),
        traces: telemetry.export_stats(Signal::Traces).map(|t| TracesReport {
            up: t.last_error.is_none(),
            spans_exported: t.exported,
            spans_dropped: t.dropped.values().sum(),
            spans_queued: t.queued,
            last_export: t.last_export,
            last_error: t.last_error.map(|(reason, _)| reason),
            endpoint: t.endpoint,
        }),
    }
}

/// `text` with the five characters that HTML gives meaning to escaped, for element content and
/// quoted attribute values alike.
pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A time relative to `now`: "12 s ago", "in 3 m".
fn relative(at: Option<f64>, now: f64) -> String {
    let Some(at) = at else { return "–".into() };
    let seconds = (at - now).round();
    if seconds.abs() < 1.0 {
        return "now".into();
    }
    let span = |s: f64| match s {
        s if s < 120.0 => format!("{s} s"),
        s if s < 7200.0 => format!("{} m", (s / 60.0).round()),
        s => format!("{} h", (s / 3600.0).round()),
    };
    if seconds >= 0.0 { format!("in {}", span(seconds)) } else { format!("{} ago", span(-seconds)) }
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:1.5rem;color:#1d1d1f}\
table{border-collapse:collapse;margin:.5rem 0 1.5rem}\
th,td{border:1px solid #d0d0d5;padding:.25rem .6rem;text-align:left;vertical-align:top;font-size:.9rem}\
th{background:#f0f0f4}.down{background:#fde8e8}.up{color:#137333}.bad{color:#b3261e;font-weight:600}\
.message{font-family:ui-monospace,monospace;white-space:pre-wrap;overflow-wrap:anywhere;min-width:24rem;max-width:40rem}td.t{white-space:nowrap}\
form{margin:.5rem 0}form *{margin-right:.5rem}table.side{display:inline-table;margin-right:2rem}";

/// The page: `report` in HTML, with the form that filters it set to `filter`.
pub fn html(report: &Report, filter: &Filter, telemetry_path: &str) -> String {
    let now = report.generated_at;
    let mut page = String::with_capacity(16 * 1024);
    let _ = write!(
        page,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head><meta charset=\"utf-8\"><title>Status · CodePipeline Exporter</title>\
         <style>{STYLE}</style></head>\n<body>\n<h1>CodePipeline Exporter status</h1>\n\
         <p><a href=\"/\">Home</a> · <a href=\"{}\">Metrics</a> · <a href=\"/api/v1/status\">JSON</a></p>\n",
        escape_html(telemetry_path)
    );
    page.push_str("<h2>Accounts and regions</h2>\n<table id=\"scopes\">\n<tr><th>account</th><th>region</th><th>discovery</th><th>budget (requests/s)</th><th>waiting</th><th>schedule lag</th></tr>\n");
    for scope in &report.scopes {
        let discovery: Vec<String> = scope
            .discovery
            .iter()
            .map(|d| match &d.error {
                None => format!("{} <span class=\"up\">up</span>", escape_html(&d.service)),
                Some(e) => format!("{} <span class=\"bad\">down: {}</span>", escape_html(&d.service), escape_html(&e.code)),
            })
            .collect();
        let (rate, waiting, lag) = scope.budget.as_ref().map_or(("–".into(), "–".into(), "–".into()), |b| {
            (format!("{}", b.requests_per_second), b.waiting_requests.to_string(), format!("{:.1} s", b.schedule_lag_seconds))
        });
        let _ = writeln!(
            page,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{rate}</td><td>{waiting}</td><td>{lag}</td></tr>",
            escape_html(&scope.account),
            escape_html(&scope.region),
            discovery.join("<br>")
        );
    }
    page.push_str("</table>\n");
    if let Some(traces) = &report.traces {
        let state = match &traces.last_error {
            None => "<span class=\"up\">up</span>".to_string(),
            Some(reason) => format!("<span class=\"bad\">down: {}</span>", escape_html(reason)),
        };
        let _ = writeln!(
            page,
            "<h2>Traces</h2>\n<table id=\"traces\">\n<tr><th>endpoint</th><th>state</th><th>spans exported</th><th>dropped</th><th>queued</th><th>last export</th></tr>\n<tr><td>{}</td><td>{state}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"t\">{}</td></tr>\n</table>",
            escape_html(&traces.endpoint),
            traces.spans_exported,
            traces.spans_dropped,
            traces.spans_queued,
            relative(traces.last_export, now),
        );
    }
    if let Some(push) = &report.metrics_push {
        let state = match &push.last_error {
            None => "<span class=\"up\">up</span>".to_string(),
            Some(reason) => format!("<span class=\"bad\">down: {}</span>", escape_html(reason)),
        };
        let _ = writeln!(
            page,
            "<h2>Metrics push</h2>\n<table id=\"metrics-push\">\n<tr><th>endpoint</th><th>state</th><th>points exported</th><th>dropped</th><th>queued</th><th>last export</th></tr>\n<tr><td>{}</td><td>{state}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"t\">{}</td></tr>\n</table>",
            escape_html(&push.endpoint),
            push.points_exported,
            push.points_dropped,
            push.points_queued,
            relative(push.last_export, now),
        );
    }
    page.push_str("<h2>Targets</h2>\n<form method=\"get\" action=\"/status\">\n<label>kind <select name=\"kind\"><option value=\"\">all</option>");
    for kind in &report.summary.kinds {
        let selected = if filter.kind.as_deref() == Some(kind.kind.as_str()) { " selected" } else { "" };
        let kind = escape_html(&kind.kind);
        let _ = write!(page, "<option value=\"{kind}\"{selected}>{kind}</option>");
    }
    page.push_str("</select></label>\n<label>state <select name=\"state\"><option value=\"\">all</option>");
    for (value, up) in [("up", true), ("down", false)] {
        let selected = if filter.up == Some(up) { " selected" } else { "" };
        let _ = write!(page, "<option value=\"{value}\"{selected}>{value}</option>");
    }
    let _ = write!(
        page,
        "</select></label>\n<label>name <input name=\"name\" value=\"{}\"></label>\n<button type=\"submit\">Filter</button>\n</form>\n",
        escape_html(filter.name.as_deref().unwrap_or_default())
    );
    page.push_str("<table id=\"targets\">\n<tr><th>account</th><th>region</th><th>kind</th><th>name</th><th>up</th><th>state</th><th>last success</th><th>next poll</th><th>error</th><th>message</th></tr>\n");
    for target in &report.targets {
        let (class, up) =
            if target.up { ("", "<span class=\"up\">up</span>") } else { (" class=\"down\"", "<span class=\"bad\">down</span>") };
        let (code, message) =
            target.error.as_ref().map_or((String::new(), String::new()), |e| (escape_html(&e.code), escape_html(&e.message)));
        let _ = writeln!(
            page,
            "<tr{class}><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{up}</td><td>{}</td><td class=\"t\">{}</td><td class=\"t\">{}</td><td>{code}</td><td class=\"message\">{message}</td></tr>",
            escape_html(&target.account),
            escape_html(&target.region),
            escape_html(&target.kind),
            escape_html(&target.name),
            escape_html(target.state.as_deref().unwrap_or_default()),
            relative(target.last_success, now),
            relative(target.next_poll, now),
        );
    }
    let _ = write!(page, "</table>\n<p>{} targets shown.</p>\n", report.targets.len());
    page.push_str(
        "<h2>Summary</h2>\n<table id=\"states\" class=\"side\">\n<tr><th>kind</th><th>state</th><th>targets</th></tr>\n",
    );
    for state in &report.summary.states {
        let class = if state.state.to_ascii_lowercase().contains("fail") { " class=\"bad\"" } else { "" };
        let _ = writeln!(
            page,
            "<tr><td>{}</td><td{class}>{}</td><td>{}</td></tr>",
            escape_html(&state.kind),
            escape_html(&state.state),
            state.targets
        );
    }
    page.push_str("</table>\n<table id=\"kinds\" class=\"side\">\n<tr><th>kind</th><th>up</th><th>down</th></tr>\n");
    for kind in &report.summary.kinds {
        let class = if kind.down > 0 { " class=\"bad\"" } else { "" };
        let _ = writeln!(page, "<tr><td>{}</td><td>{}</td><td{class}>{}</td></tr>", escape_html(&kind.kind), kind.up, kind.down);
    }
    let _ = writeln!(
        page,
        "</table>\n<p>Exposition: {} bytes of text, {} bytes gzip; series per family:</p>\n<table id=\"families\">\n<tr><th>family</th><th>series</th></tr>",
        report.summary.body_bytes.text, report.summary.body_bytes.gzip
    );
    for family in &report.summary.families {
        let _ = writeln!(page, "<tr><td>{}</td><td>{}</td></tr>", family.name, family.series);
    }
    page.push_str("</table>\n</body>\n</html>\n");
    page
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_come_from_the_query_string() {
        assert_eq!(Filter::parse(None), Filter::default());
        assert_eq!(
            Filter::parse(Some("state=down&kind=pipeline&name=web%20app+x&other=1")),
            Filter { kind: Some("pipeline".into()), up: Some(false), name: Some("web app x".into()) }
        );
        assert_eq!(Filter::parse(Some("state=sideways&kind=&name")), Filter::default());
        assert_eq!(percent_decode("%3Cb%3E%zz%4"), "<b>%zz%4");
        assert_eq!(percent_decode("%E2%9C%93"), "✓");
    }

    #[test]
    fn escapes_everything_html_gives_meaning_to() {
        assert_eq!(escape_html("</td><script>'a' & \"b\""), "&lt;/td&gt;&lt;script&gt;&#39;a&#39; &amp; &quot;b&quot;");
    }

    #[test]
    fn relative_times_read_naturally() {
        assert_eq!(relative(Some(988.0), 1000.0), "12 s ago");
        assert_eq!(relative(Some(1180.0), 1000.0), "in 3 m");
        assert_eq!(relative(Some(1000.0 - 7200.0), 1000.0), "2 h ago");
        assert_eq!(relative(None, 1000.0), "–");
        assert_eq!(relative(Some(999.8), 1000.0), "now");
    }
}
