//! Live reload: a valid file adds and removes accounts, regions and targets without a restart; an
//! invalid one keeps the running configuration and says why.

mod common;

use std::time::Duration;

use codepipeline_exporter::simulator::{
    SimPipeline, SimRepositoryLink, SimSyncAttempt, SimSyncConfiguration, Simulator, World, execution_id,
};
use common::{request, start_exporter_unthrottled_from, target_up_in, value, wait_for, wait_for_calls};

const BASE: &str = "requests_per_second: 10000\nburst: 10000\ninterval: 150ms\ndiscovery_interval: 300ms\n";

fn world() -> World {
    let pipeline = SimPipeline::new("p1", &[("Source", &["Source"]), ("Build", &["Build"])]);
    World { pipelines: [(pipeline.name.clone(), pipeline)].into_iter().collect(), ..World::default() }
}

fn up(account: &str, region: &str) -> String {
    target_up_in(account, region, "pipeline", "p1")
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
    let exporter = start_exporter_unthrottled_from(&simulator, &before, Some(path.clone())).await;
    wait_for(&exporter, "both accounts", |s| {
        value(s, &up("a", "us-east-1")) == Some(1.0) && value(s, &up("b", "us-east-1")) == Some(1.0)
    })
    .await;

    // A failure counted before the reload must survive it: the scope of account a is untouched.
    simulator.world().pipelines.get_mut("p1").unwrap().stages[1].latest = Some((execution_id("e1"), "Failed".into()));
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
    wait_for_calls(&simulator, "GetPipelineState", 6).await;
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
    let exporter = start_exporter_unthrottled_from(&simulator, &valid, Some(path.clone())).await;
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

/// A pipeline and a Git sync whose latest attempt can be changed by the test.
fn world_with_sync() -> World {
    let mut world = world();
    let other = SimPipeline::new("q1", &[("Source", &["Source"])]);
    world.pipelines.insert(other.name.clone(), other);
    let link = SimRepositoryLink::new(LINK, "GitHub", "acme", "infra");
    world.repository_links.insert(link.id.clone(), link);
    world.sync_configurations = vec![SimSyncConfiguration {
        repository_link_id: LINK.into(),
        branch: "main".into(),
        sync_type: "CFN_STACK_SYNC".into(),
        resource_name: "prod-infra".into(),
        config_file: None,
    }];
    world.repository_syncs.insert(SYNC.clone(), attempt(1_700_000_000.0, "SUCCEEDED"));
    world
}

const LINK: &str = "11111111-aaaa-bbbb-cccc-000000000001";
static SYNC: std::sync::LazyLock<(String, String, String)> =
    std::sync::LazyLock::new(|| (LINK.into(), "main".into(), "CFN_STACK_SYNC".into()));

fn attempt(started_at: f64, status: &str) -> SimSyncAttempt {
    SimSyncAttempt { started_at, status: status.into(), events: Vec::new() }
}

fn sync_failures() -> String {
    format!(
        "aws_codeconnections_repository_sync_attempts_total{{account=\"a\",region=\"us-east-1\",repository_link_id=\"{LINK}\",repository=\"acme/infra\",branch=\"main\",sync_type=\"CFN_STACK_SYNC\",status=\"FAILED\"}}"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_to_one_service_restarts_only_its_collector() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("exporter.yaml");
    let before = format!("{BASE}accounts:\n  - name: a\n    regions: [us-east-1]\n");
    std::fs::write(&path, &before).unwrap();
    let simulator = Simulator::start(world_with_sync()).await.unwrap();
    let exporter = start_exporter_unthrottled_from(&simulator, &before, Some(path.clone())).await;
    let sync_up = target_up_in("a", "us-east-1", "repository_sync", &format!("{LINK}/main/CFN_STACK_SYNC"));
    wait_for(&exporter, "both services", |s| value(s, &up("a", "us-east-1")) == Some(1.0) && value(s, &sync_up) == Some(1.0))
        .await;

    // One counted outcome in each service before the reload.
    simulator.world().pipelines.get_mut("p1").unwrap().stages[1].latest = Some((execution_id("e1"), "Failed".into()));
    simulator.world().repository_syncs.insert(SYNC.clone(), attempt(1_700_000_500.0, "FAILED"));
    wait_for(&exporter, "both failures counted", |s| {
        value(s, &failures("a", "us-east-1")) == Some(1.0) && value(s, &sync_failures()) == Some(1.0)
    })
    .await;
    let discoveries = simulator.calls("ListPipelines");

    std::fs::write(&path, format!("{before}    codepipeline:\n      include: ['^p']\n")).unwrap();
    assert_eq!(exporter.reloader.reload().await, Ok(()));

    let q1_up = target_up_in("a", "us-east-1", "pipeline", "q1");
    let s = wait_for(&exporter, "q1 gone and p1 polled again", |s| {
        !s.contains_key(&q1_up) && value(s, &up("a", "us-east-1")) == Some(1.0)
    })
    .await;
    assert!(simulator.calls("ListPipelines") > discoveries, "the CodePipeline collector ran its discovery again");
    assert_eq!(value(&s, &failures("a", "us-east-1")), Some(0.0), "the restarted CodePipeline collector counts from its start");
    assert_eq!(value(&s, &sync_failures()), Some(1.0), "the CodeConnections collector kept running, counters and all");
    assert_eq!(value(&s, &sync_up), Some(1.0));

    // It goes on polling: a later failure adds to the count it kept.
    simulator.world().repository_syncs.insert(SYNC.clone(), attempt(1_700_000_900.0, "FAILED"));
    wait_for(&exporter, "the second failure counted", |s| value(s, &sync_failures()) == Some(2.0)).await;
}
