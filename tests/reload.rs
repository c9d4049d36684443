//! Live reload: a valid file adds and removes accounts, regions and targets without a restart; an
//! invalid one keeps the running configuration and says why.

mod common;

use std::time::Duration;

use codepipeline_exporter::simulator::{SimPipeline, Simulator, World};
use common::{request, start_exporter_from, value, wait_for};

const BASE: &str = "requests_per_second: 10000\nburst: 10000\ninterval: 150ms\ndiscovery_interval: 300ms\n";

fn world() -> World {
    let pipeline = SimPipeline::new("p1", &[("Source", &["Source"]), ("Build", &["Build"])]);
    World { pipelines: [(pipeline.name.clone(), pipeline)].into_iter().collect(), ..World::default() }
}

fn up(account: &str, region: &str) -> String {
    format!("codepipeline_exporter_target_up{{account=\"{account}\",region=\"{region}\",kind=\"pipeline\",name=\"p1\"}}")
}

fn failures(account: &str, region: &str) -> String {
    format!(
        "aws_codepipeline_stage_executions_total{{account=\"{account}\",region=\"{region}\",pipeline=\"p1\",stage=\"Build\",status=\"Failed\"}}"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_valid_file_adds_and_removes_scopes_and_keeps_the_others_running() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("exporter.yaml");
    let before = format!("{BASE}accounts:\n  - name: a\n    regions: [us-east-1]\n  - name: b\n    regions: [us-east-1]\n");
    std::fs::write(&path, &before).unwrap();
    let simulator = Simulator::start(world()).await.unwrap();
    let exporter = start_exporter_from(&simulator, &before, Some(path.clone())).await;
    wait_for(&exporter, "both accounts", |s| {
        value(s, &up("a", "us-east-1")) == Some(1.0) && value(s, &up("b", "us-east-1")) == Some(1.0)
    })
    .await;

    // A failure counted before the reload must survive it: the scope of account a is untouched.
    simulator.world().pipelines.get_mut("p1").unwrap().stages[1].latest = Some(("e1".into(), "Failed".into()));
    let s = wait_for(&exporter, "failure counted", |s| value(s, &failures("a", "us-east-1")) == Some(1.0)).await;
    let started = value(&s, "codepipeline_exporter_config_last_reload_success_timestamp_seconds").unwrap();

    std::fs::write(&path, format!("{BASE}accounts:\n  - name: a\n    regions: [us-east-1, eu-west-1]\n")).unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let response = request(exporter.addr, "POST", "/-/reload", &[]).await;
    assert_eq!((response.status, response.body.as_str()), (200, "Reloaded\n"));

    let s = wait_for(&exporter, "the new region and no account b", |s| {
        value(s, &up("a", "eu-west-1")) == Some(1.0) && !s.keys().any(|k| k.contains("account=\"b\""))
    })
    .await;
    assert_eq!(value(&s, &failures("a", "us-east-1")), Some(1.0), "the unchanged scope kept its counters");
    assert_eq!(value(&s, &failures("a", "eu-west-1")), Some(0.0), "the new scope counts from its start");
    assert_eq!(value(&s, "codepipeline_exporter_config_last_reload_successful"), Some(1.0));
    assert!(value(&s, "codepipeline_exporter_config_last_reload_success_timestamp_seconds").unwrap() > started);
    // Removed series stay removed while the remaining scopes go on polling.
    let polls = simulator.calls("GetPipelineState");
    while simulator.calls("GetPipelineState") < polls + 6 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let s = common::samples(&common::scrape(&exporter).await);
    assert!(!s.keys().any(|k| k.contains("account=\"b\"")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_file_keeps_the_running_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("exporter.yaml");
    let valid = format!("{BASE}accounts:\n  - name: a\n    regions: [us-east-1]\n");
    std::fs::write(&path, &valid).unwrap();
    let simulator = Simulator::start(world()).await.unwrap();
    let exporter = start_exporter_from(&simulator, &valid, Some(path.clone())).await;
    wait_for(&exporter, "polled", |s| value(s, &up("a", "us-east-1")) == Some(1.0)).await;

    std::fs::write(
        &path,
        format!("{BASE}accounts:\n  - name: a\n    regions: [us-east-1]\n    codepipeline:\n      include: ['(']\n"),
    )
    .unwrap();
    let response = request(exporter.addr, "POST", "/-/reload", &[]).await;
    assert_eq!(response.status, 500);
    assert_eq!(response.body, format!("failed to reload config: {}:9:17: invalid regex \"(\": unclosed group\n", path.display()));
    assert_eq!(request(exporter.addr, "GET", "/-/reload", &[]).await.status, 405);

    let polls = simulator.calls("GetPipelineState");
    let s = wait_for(&exporter, "still polling", |s| {
        value(s, "codepipeline_exporter_config_last_reload_successful") == Some(0.0)
            && simulator.calls("GetPipelineState") > polls + 3
    })
    .await;
    assert_eq!(value(&s, &up("a", "us-east-1")), Some(1.0), "the running configuration stays");

    std::fs::write(&path, &valid).unwrap();
    assert_eq!(exporter.reloader.reload().await, Ok(()));
    wait_for(&exporter, "recovered", |s| value(s, "codepipeline_exporter_config_last_reload_successful") == Some(1.0)).await;
}
