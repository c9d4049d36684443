//! Every query of every Grafana dashboard returns data from a real Prometheus scraping the demo,
//! with the dashboard's variables set to "All", as Grafana would send them.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::process::ready_demo;
use common::prometheus::{Prometheus, servers};

/// A query of a dashboard: which dashboard, which panel, and the PromQL.
struct Query {
    dashboard: String,
    panel: String,
    expr: String,
}

/// Substitutes Grafana's variables: "All" for the dashboard's own, and the built-in intervals.
fn substitute(expr: &str, range: &str) -> String {
    expr.replace("$__rate_interval", "30s")
        .replace("$__interval", "5s")
        .replace("$__range", range)
        .replace("$job", ".*")
        .replace("$category", ".*")
        .replace("$provider", ".*")
        .replace("$account", ".*")
        .replace("$region", ".*")
        .replace("$pipeline", ".*")
        .replace("$repository", ".*")
}

fn dashboards() -> Vec<(String, serde_json::Value)> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/grafana/dashboards");
    let mut boards: Vec<(String, serde_json::Value)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| {
            let path = entry.unwrap().path();
            let json = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
            (path.file_name().unwrap().to_string_lossy().into_owned(), json)
        })
        .collect();
    boards.sort_by(|a, b| a.0.cmp(&b.0));
    boards
}

fn queries(range: &str) -> Vec<Query> {
    let mut queries = Vec::new();
    for (name, board) in dashboards() {
        for panel in board["panels"].as_array().unwrap() {
            for target in panel["targets"].as_array().into_iter().flatten() {
                queries.push(Query {
                    dashboard: name.clone(),
                    panel: panel["title"].as_str().unwrap().to_string(),
                    expr: substitute(target["expr"].as_str().unwrap(), range),
                });
            }
        }
    }
    queries
}

fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The series that the run anatomy's recording rules record.
fn anatomy_rules() -> Vec<String> {
    let rules = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/prometheus/recording.yml")).unwrap();
    let group = rules.split("- name: codepipeline-anatomy\n").nth(1).expect("the codepipeline-anatomy group");
    let records: Vec<String> = group.lines().filter_map(|l| l.trim().strip_prefix("- record: ")).map(str::to_string).collect();
    assert_eq!(records.len(), 6, "{records:?}");
    records
}

/// Whether a range query's answer holds at least one sample that is a number.
fn has_numbers(answer: &serde_json::Value) -> bool {
    answer["status"] == "success"
        && answer["data"]["result"].as_array().is_some_and(|series| {
            series.iter().any(|s| {
                s["values"].as_array().is_some_and(|values| values.iter().any(|v| v[1].as_str().is_some_and(|x| x != "NaN")))
            })
        })
}

/// Whether every metric `expr` reads (the exporter's own and its recording rules') is narrowed to
/// the `$job` variable, so that two exporters in one Prometheus can be told apart.
fn narrowed_to_job(expr: &str) -> bool {
    let starts = ["aws_", "codepipeline_exporter_", "process_", "pipeline:"];
    let mut rest = expr;
    let mut metrics = 0;
    while let Some(at) = starts.iter().filter_map(|s| rest.find(s)).min() {
        let preceded = rest[..at].chars().last().is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':');
        let name_len = rest[at..].find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':')).unwrap_or(rest.len() - at);
        let after = &rest[at + name_len..];
        if !preceded {
            metrics += 1;
            if !after.starts_with("{job=~\"$job\"") {
                return false;
            }
        }
        rest = after;
    }
    metrics > 0
}

#[test]
fn dashboards_are_current_grafana_json_with_the_expected_variables() {
    let boards = dashboards();
    assert_eq!(
        boards.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
        ["codepipeline-overview.json", "exporter-health.json", "repository-syncs.json"]
    );
    for (name, board) in &boards {
        assert!(board["schemaVersion"].as_u64().unwrap() >= 39, "{name}");
        let variables: BTreeSet<&str> =
            board["templating"]["list"].as_array().unwrap().iter().map(|v| v["name"].as_str().unwrap()).collect();
        assert!(
            variables.contains("datasource") && variables.contains("account") && variables.contains("region"),
            "{name}: {variables:?}"
        );
        assert!(variables.contains("job"), "{name}: {variables:?}");
        for variable in
            board["templating"]["list"].as_array().unwrap().iter().filter(|v| v["type"] == "query" && v["name"] != "job")
        {
            assert!(narrowed_to_job(variable["definition"].as_str().unwrap()), "{name}: variable {}", variable["name"]);
        }
        for panel in board["panels"].as_array().unwrap() {
            if panel["type"] != "row" {
                let title = &panel["title"];
                assert_eq!(panel["datasource"]["uid"], "${datasource}", "{name}: {title}");
                assert!(!panel["targets"].as_array().unwrap().is_empty(), "{name}: {title}");
                assert!(panel["fieldConfig"]["defaults"]["unit"].is_string(), "{name}: {title} has no unit");
                for target in panel["targets"].as_array().unwrap() {
                    let expr = target["expr"].as_str().unwrap();
                    assert!(narrowed_to_job(expr), "{name}: {title}: a metric is not narrowed to $job: {expr}");
                    // The buckets of run durations carry exemplars: each dot opens the run.
                    let traced =
                        ["execution_duration_seconds_bucket", "stage_duration_seconds_bucket", "lead_time_seconds_bucket"];
                    if panel["type"] == "timeseries" && traced.iter().any(|f| expr.contains(&format!("aws_codepipeline_{f}"))) {
                        assert_eq!(target["exemplar"], true, "{name}: {title}: exemplars are off");
                    }
                }
            }
        }
    }
    let overview = &boards[0].1;
    let variables: Vec<&str> =
        overview["templating"]["list"].as_array().unwrap().iter().map(|v| v["name"].as_str().unwrap()).collect();
    assert_eq!(variables, ["datasource", "job", "account", "region", "pipeline", "category", "provider"]);
    let rows: Vec<&str> = overview["panels"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["type"] == "row")
        .map(|p| p["title"].as_str().unwrap())
        .collect();
    assert_eq!(
        rows,
        [
            "Now",
            "Over time",
            "Delivery (recording rules)",
            "Gates, approvals, retries and rollbacks",
            "Where the time goes",
            "Wait versus work",
            "Cost"
        ]
    );
}

#[test]
fn every_dashboard_query_returns_data_from_the_demo() {
    let (exporter, runtime) = ready_demo();
    for server in servers() {
        eprintln!("against {}", server.display());
        let prometheus = Prometheus::start(&server, exporter.addr);
        // A newcomer looks once, in the first minute and a half: every variable, every panel and
        // every run anatomy rule shows data by then.
        let deadline = Instant::now() + Duration::from_secs(90);
        let started = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
        runtime.block_on(async {
            // Variable queries first: Grafana fills the drop-downs from label values.
            for (_, board) in dashboards() {
                for variable in board["templating"]["list"].as_array().unwrap().iter().filter(|v| v["type"] == "query") {
                    let definition = variable["definition"].as_str().unwrap();
                    let (metric, label) =
                        definition.trim_start_matches("label_values(").trim_end_matches(')').rsplit_once(", ").unwrap();
                    let path = format!("/api/v1/label/{label}/values?match[]={}", encode(&substitute(metric, "1h")));
                    prometheus.wait(&path, 60, |a| a["data"].as_array().is_some_and(|values| !values.is_empty())).await;
                }
            }
            let mut pending: Vec<Query> = queries("10m");
            pending.extend(anatomy_rules().into_iter().map(|record| Query {
                dashboard: "deploy/prometheus/recording.yml".into(),
                panel: record.clone(),
                expr: record,
            }));
            let total = pending.len();
            while !pending.is_empty() {
                let end = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
                let mut still = Vec::new();
                for query in pending {
                    let path = format!("/api/v1/query_range?query={}&start={started}&end={end}&step=2", encode(&query.expr));
                    match prometheus.api(&path).await {
                        Some(answer) if answer["status"] == "error" => {
                            panic!(
                                "{} / {}: the query is invalid: {}\n{}",
                                query.dashboard, query.panel, answer["error"], query.expr
                            )
                        }
                        Some(answer) if has_numbers(&answer) => {}
                        _ => still.push(query),
                    }
                }
                pending = still;
                if !pending.is_empty() {
                    if Instant::now() > deadline {
                        let missing: Vec<String> =
                            pending.iter().map(|q| format!("{} / {}: {}", q.dashboard, q.panel, q.expr)).collect();
                        panic!("{} of {total} queries returned no data:\n{}", missing.len(), missing.join("\n"));
                    }
                    tokio::time::sleep(Duration::from_secs(5)).await;
                }
            }
            eprintln!(
                "every one of {total} queries returned data after {:.0} s",
                90.0 - (deadline - Instant::now()).as_secs_f64()
            );
            assert!(total > 50, "{total} queries");
        });
    }
}
