//! The status page and its JSON: exact values for a simulated account, the filters, basic
//! authentication, escaping checked by parsing the page as a browser does, and the demo's page in a
//! real headless Chromium.

mod common;

use std::path::Path;
use std::process::Command;

use codepipeline_exporter::exporter::Options;
use codepipeline_exporter::simulator::{
    Fault, SimPipeline, SimRepositoryLink, SimSyncConfiguration, Simulator, World, execution_id,
};
use common::process::{ready_demo, tool};
use common::{request, start_exporter_unthrottled_with};
use scraper::{Html, Selector};
use serde_json::{Value, json};

const LINK: &str = "11111111-aaaa-bbbb-cccc-000000000001";
const CONFIG: &str = "interval: 1h\ndiscovery_interval: 1h\naccounts:\n  - name: test\n    regions: [us-east-1]\n    codeconnections:\n      resource_syncs: false\n      blockers: false\n      connections: false\n";

/// A pipeline that is up, one behind a permissions boundary, and a branch that never synced.
fn world() -> World {
    let mut world = World::default();
    let mut app = SimPipeline::new("app", &[("Source", &["Source"]), ("Build", &["Build"])]);
    app.stages[0].latest = Some((execution_id("e1"), "Succeeded".into()));
    app.stages[1].latest = Some((execution_id("e1"), "Failed".into()));
    let mut restricted = SimPipeline::new("restricted", &[("Source", &["Source"])]);
    restricted.denied = true;
    for pipeline in [app, restricted] {
        world.pipelines.insert(pipeline.name.clone(), pipeline);
    }
    let link = SimRepositoryLink::new(LINK, "GitHub", "acme", "infra");
    world.repository_links.insert(link.id.clone(), link);
    world.sync_configurations.push(SimSyncConfiguration {
        repository_link_id: LINK.into(),
        branch: "main".into(),
        sync_type: "CFN_STACK_SYNC".into(),
        resource_name: "prod-infra".into(),
        config_file: None,
    });
    world
}

/// An exporter of [`CONFIG`] polling `simulator`, ready.
async fn exporter(simulator: &Simulator, web: Option<&Path>) -> codepipeline_exporter::exporter::Running {
    let options = Options { web_config_path: web.map(Path::to_path_buf), ..Options::default() };
    let exporter = start_exporter_unthrottled_with(simulator, CONFIG, options).await;
    // Readiness directly: behind basic auth, scrapes without credentials are refused.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !exporter.readiness.is_ready() {
        assert!(std::time::Instant::now() < deadline, "not ready after 20 s");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    exporter
}

/// Replaces a value that depends on the clock or on timing with a marker of its type, after
/// checking that it is there and has that type.
fn volatile(value: &mut Value, what: &str) {
    let marker = match value {
        Value::Number(n) if n.as_f64().is_some_and(|n| n >= 0.0) => "<number>",
        Value::Null => "<null>",
        other => panic!("{what} is {other}"),
    };
    *value = Value::String(marker.into());
}

async fn status_json(exporter: &codepipeline_exporter::exporter::Running, query: &str) -> Value {
    let response = request(exporter.addr, "GET", &format!("/api/v1/status{query}"), &[]).await;
    assert_eq!(response.status, 200);
    assert_eq!(response.header("content-type"), Some("application/json"));
    let mut json: Value = serde_json::from_str(&response.body).unwrap();
    volatile(&mut json["generated_at"], "generated_at");
    for scope in json["scopes"].as_array_mut().unwrap() {
        for field in ["waiting_requests", "schedule_lag_seconds", "wait_seconds_total"] {
            volatile(&mut scope["budget"][field], field);
        }
        for discovery in scope["discovery"].as_array_mut().unwrap() {
            volatile(&mut discovery["last_success"], "discovery last_success");
        }
    }
    for target in json["targets"].as_array_mut().unwrap() {
        volatile(&mut target["last_success"], "last_success");
        volatile(&mut target["next_poll"], "next_poll");
    }
    for field in ["text", "gzip"] {
        volatile(&mut json["summary"]["body_bytes"][field], field);
    }
    json
}

fn target(kind: &str, name: &str, up: bool, state: Value, last_success: &str, error: Value) -> Value {
    json!({
        "account": "test", "region": "us-east-1", "kind": kind, "name": name, "up": up, "state": state,
        "last_success": last_success, "next_poll": "<number>", "error": error,
    })
}

const DENIED: &str = "AccessDeniedException: User: arn:aws:sts::111122223333:assumed-role/codepipeline-exporter is not authorized to perform this action on pipeline restricted";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_json_has_exact_values_for_a_down_an_up_and_a_never_synced_target() {
    let simulator = Simulator::start(world()).await.unwrap();
    let exporter = exporter(&simulator, None).await;
    let json = status_json(&exporter, "").await;
    let discovery = |service: &str| {
        let mut discovery = target("discovery", service, true, Value::Null, "<number>", Value::Null);
        discovery["next_poll"] = json!("<null>");
        discovery
    };
    let families: Vec<Value> = [
        ("aws_codeconnections_repository_link_info", 1),
        ("aws_codeconnections_repository_sync_attempts_total", 2),
        ("aws_codeconnections_repository_sync_status", 5),
        ("aws_codeconnections_sync_configuration_info", 1),
        ("aws_codepipeline_action_executions_total", 6),
        ("aws_codepipeline_action_info", 2),
        ("aws_codepipeline_action_status", 8),
        ("aws_codepipeline_billed_action_seconds_total", 1),
        ("aws_codepipeline_execution_duration_seconds", 32),
        ("aws_codepipeline_execution_status", 7),
        ("aws_codepipeline_execution_wait_seconds", 12),
        ("aws_codepipeline_executions_in_progress", 1),
        ("aws_codepipeline_pipeline_created_timestamp_seconds", 1),
        ("aws_codepipeline_pipeline_info", 1),
        ("aws_codepipeline_pipeline_updated_timestamp_seconds", 1),
        ("aws_codepipeline_pipeline_version", 1),
        ("aws_codepipeline_stage_duration_seconds", 20),
        ("aws_codepipeline_stage_executions_total", 10),
        ("aws_codepipeline_stage_inbound_executions", 2),
        ("aws_codepipeline_stage_inbound_status", 14),
        ("aws_codepipeline_stage_status", 14),
        ("aws_codepipeline_stage_transition_enabled", 1),
        ("aws_codepipeline_stage_transition_last_changed_timestamp_seconds", 1),
        ("codepipeline_exporter_target_interval_seconds", 5),
        ("codepipeline_exporter_target_last_success_timestamp_seconds", 4),
        ("codepipeline_exporter_target_up", 5),
    ]
    .iter()
    .map(|(name, series)| json!({"name": name, "series": series}))
    .collect();
    let expected = json!({
        "generated_at": "<number>",
        "scopes": [{
            "account": "test", "region": "us-east-1",
            "discovery": [
                {"service": "codeconnections", "up": true, "last_success": "<number>", "error": null},
                {"service": "codepipeline", "up": true, "last_success": "<number>", "error": null},
            ],
            "budget": {"requests_per_second": 10000.0, "waiting_requests": "<number>", "schedule_lag_seconds": "<number>", "wait_seconds_total": "<number>"},
        }],
        "targets": [
            target("pipeline", "restricted", false, Value::Null, "<null>", json!({"code": "AccessDeniedException", "message": DENIED})),
            discovery("codeconnections"),
            discovery("codepipeline"),
            target("pipeline", "app", true, json!("Failed"), "<number>", Value::Null),
            target("repository_sync", &format!("{LINK}/main/CFN_STACK_SYNC"), true, json!("NEVER_SYNCED"), "<number>", Value::Null),
        ],
        "summary": {
            "states": [
                {"kind": "pipeline", "state": "Failed", "targets": 1},
                {"kind": "repository_sync", "state": "NEVER_SYNCED", "targets": 1},
            ],
            "kinds": [
                {"kind": "discovery", "up": 2, "down": 0},
                {"kind": "pipeline", "up": 1, "down": 1},
                {"kind": "repository_sync", "up": 1, "down": 0},
            ],
            "families": families,
            "body_bytes": {"text": "<number>", "gzip": "<number>"},
        },
    });
    assert_eq!(json, expected, "{}", serde_json::to_string_pretty(&json).unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_narrow_the_targets_by_kind_state_and_name() {
    let simulator = Simulator::start(world()).await.unwrap();
    let exporter = exporter(&simulator, None).await;
    let names = |json: &Value| -> Vec<String> {
        json["targets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| format!("{}/{}", t["kind"].as_str().unwrap(), t["name"].as_str().unwrap()))
            .collect()
    };
    let down = status_json(&exporter, "?state=down&kind=pipeline").await;
    assert_eq!(names(&down), ["pipeline/restricted"]);
    assert_eq!(names(&status_json(&exporter, "?state=up&kind=pipeline").await), ["pipeline/app"]);
    assert_eq!(names(&status_json(&exporter, "?name=code").await), ["discovery/codeconnections", "discovery/codepipeline"]);
    assert_eq!(
        names(&status_json(&exporter, "?kind=repository_sync&name=main%2FCFN").await),
        [format!("repository_sync/{LINK}/main/CFN_STACK_SYNC")]
    );
    assert_eq!(down["summary"]["kinds"].as_array().unwrap().len(), 3, "the summary is of every target, not of the filtered ones");

    // The page shows the same rows and keeps the filter in its form.
    let page = request(exporter.addr, "GET", "/status?state=down&kind=pipeline", &[]).await;
    assert_eq!((page.status, page.header("content-type")), (200, Some("text/html; charset=utf-8")));
    let html = Html::parse_document(&page.body);
    let rows = rows(&html);
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0][..6], ["test", "us-east-1", "pipeline", "restricted", "down", ""]);
    assert_eq!(rows[0][8..], ["AccessDeniedException", DENIED]);
    let selected: Vec<String> = html.select(&Selector::parse("option[selected]").unwrap()).map(|o| o.inner_html()).collect();
    assert_eq!(selected, ["pipeline", "down"]);
}

/// The cells of every row of the targets table, as text.
fn rows(html: &Html) -> Vec<Vec<String>> {
    let row = Selector::parse("table#targets tr").unwrap();
    let cell = Selector::parse("td").unwrap();
    html.select(&row)
        .map(|r| r.select(&cell).map(|c| c.text().collect::<String>()).collect::<Vec<_>>())
        .filter(|cells| !cells.is_empty())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_message_is_shown_as_text_and_never_as_markup() {
    let simulator = Simulator::start(world()).await.unwrap();
    let message = "denied <img src=x onerror=alert(1)> and </td><script>alert(2)</script> & \"quotes\"";
    let fault = Fault::Error { status: 400, code: "AccessDeniedException".into(), message: message.into() };
    simulator.inject("GetPipelineState", fault, 1000);
    let exporter = exporter(&simulator, None).await;
    let page = request(exporter.addr, "GET", "/status?kind=pipeline&name=app", &[]).await;
    let html = Html::parse_document(&page.body);
    for element in ["img", "script", "table#targets td td"] {
        assert_eq!(html.select(&Selector::parse(element).unwrap()).count(), 0, "the page holds a {element} element");
    }
    let rows = rows(&html);
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0][9], format!("AccessDeniedException: {message}"), "the message reads as it was sent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_is_behind_basic_auth_when_the_web_config_asks_for_it() {
    let dir = tempfile::tempdir().unwrap();
    let web = dir.path().join("web.yml");
    std::fs::write(&web, format!("basic_auth_users:\n  prometheus: {}\n", bcrypt::hash("secret", 4).unwrap())).unwrap();
    let simulator = Simulator::start(world()).await.unwrap();
    let exporter = exporter(&simulator, Some(&web)).await;
    // "prometheus:secret" and "prometheus:wrong" in base64.
    for path in ["/status", "/api/v1/status"] {
        assert_eq!(request(exporter.addr, "GET", path, &[]).await.status, 401, "{path}");
        let wrong = request(exporter.addr, "GET", path, &[("Authorization", "Basic cHJvbWV0aGV1czp3cm9uZw==")]).await;
        assert_eq!(wrong.status, 401, "{path}");
        let right = request(exporter.addr, "GET", path, &[("Authorization", "Basic cHJvbWV0aGV1czpzZWNyZXQ=")]).await;
        assert_eq!(right.status, 200, "{path}");
        assert!(right.body.contains("restricted"), "{path}");
    }
}

/// Headless Chromium as the status page's reader, with the flags that keep it off the network.
fn chromium(args: &[&str], profile: &Path) -> std::process::Output {
    Command::new(tool("chromium"))
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run"])
        .args(["--disable-background-networking", "--disable-component-update", "--disable-sync"])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .output()
        .expect("chromium runs")
}

/// The demo's status page in a real browser: its DOM holds the targets table with the demo's
/// down target, and a screenshot is taken. `STATUS_SCREENSHOT=docs/status-page.png` writes the
/// screenshot the README shows.
#[test]
fn the_demo_status_page_in_headless_chromium() {
    let (exporter, _runtime) = ready_demo();
    let url = format!("http://{}/status", exporter.addr);
    let profile = tempfile::tempdir().unwrap();
    let dom = chromium(&["--dump-dom", &url], profile.path());
    assert!(dom.status.success(), "{}", String::from_utf8_lossy(&dom.stderr));
    let html = Html::parse_document(&String::from_utf8_lossy(&dom.stdout));
    let rows = rows(&html);
    let restricted: Vec<&Vec<String>> = rows.iter().filter(|r| r[3] == "audit-restricted").collect();
    assert_eq!(restricted.len(), 1, "{rows:?}");
    for row in restricted {
        assert_eq!((row[2].as_str(), row[4].as_str(), row[8].as_str()), ("pipeline", "down", "AccessDeniedException"));
    }
    assert!(rows.iter().any(|r| r[2] == "pipeline" && r[4] == "up"), "{rows:?}");

    let shot =
        std::env::var_os("STATUS_SCREENSHOT").map(std::path::PathBuf::from).unwrap_or_else(|| profile.path().join("status.png"));
    let shot = if shot.is_relative() { Path::new(env!("CARGO_MANIFEST_DIR")).join(shot) } else { shot };
    let taken = chromium(
        &["--window-size=1400,1800", "--hide-scrollbars", &format!("--screenshot={}", shot.display()), &url],
        profile.path(),
    );
    assert!(taken.status.success(), "{}", String::from_utf8_lossy(&taken.stderr));
    let png = std::fs::read(&shot).unwrap();
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 10_000, "{} bytes", png.len());
}
