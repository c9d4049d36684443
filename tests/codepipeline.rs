//! CodePipeline through the real SDK against the simulated awsJson 1.1 endpoint.

mod common;

use codepipeline_exporter::simulator::{self, Fault, SimActionExecution, SimPipeline, World, execution_id};
use common::{
    family, family_len, samples, scrape, start_exporter_unthrottled, start_unthrottled, target_up, value, wait_for,
    wait_for_calls,
};

const FAST: &str =
    "interval: 150ms\ndiscovery_interval: 300ms\nrequest_timeout: 5s\naccounts:\n  - name: test\n    regions: [us-east-1]\n";

fn world(pipelines: Vec<SimPipeline>) -> World {
    World { pipelines: pipelines.into_iter().map(|p| (p.name.clone(), p)).collect(), ..World::default() }
}

fn simple(name: &str) -> SimPipeline {
    SimPipeline::new(name, &[("Source", &["Source"]), ("Build", &["Build"])])
}

fn stage_status(pipeline: &str, stage: &str, status: &str) -> String {
    format!(
        "aws_codepipeline_stage_status{{account=\"test\",region=\"us-east-1\",pipeline=\"{pipeline}\",stage=\"{stage}\",status=\"{status}\"}}"
    )
}

fn stage_executions(pipeline: &str, stage: &str, status: &str) -> String {
    format!(
        "aws_codepipeline_stage_executions_total{{account=\"test\",region=\"us-east-1\",pipeline=\"{pipeline}\",stage=\"{stage}\",status=\"{status}\"}}"
    )
}

/// A pipeline in every state the metrics describe: a succeeded source with a revision, a failed
/// build with an error and an action in progress, a disabled transition with an execution waiting,
/// and a stage that never ran.
fn detailed() -> SimPipeline {
    let mut pipeline =
        SimPipeline::new("checkout", &[("Source", &["Source"]), ("Build", &["Build", "Lint"]), ("Deploy", &["Deploy"])]);
    pipeline.version = 7;
    pipeline.created = 1_700_000_000.0;
    pipeline.updated = 1_700_000_500.5;
    pipeline.pipeline_type = "V2".into();
    pipeline.execution_mode = "PARALLEL".into();
    let source = &mut pipeline.stages[0];
    source.latest = Some((execution_id("e1"), "Succeeded".into()));
    source.actions[0].latest = Some(SimActionExecution {
        id: "a1".into(),
        status: "Succeeded".into(),
        last_status_change: 1_700_000_100.0,
        ..SimActionExecution::default()
    });
    source.actions[0].revision = Some(("3f2a9c1".into(), 1_700_000_050.0));
    let build = &mut pipeline.stages[1];
    build.transition = Some((false, 1_700_000_200.0));
    build.inbound = Some((execution_id("e2"), "InProgress".into()));
    build.latest = Some((execution_id("e1"), "Failed".into()));
    build.actions[0].latest = Some(SimActionExecution {
        id: "a2".into(),
        status: "Failed".into(),
        last_status_change: 1_700_000_300.0,
        error: Some(("JobFailed".into(), "Step \"test\" failed\nsee logs".into())),
        summary: Some("free text that must not become a label".into()),
        ..SimActionExecution::default()
    });
    build.actions[1].latest = Some(SimActionExecution {
        id: "a3".into(),
        status: "InProgress".into(),
        last_status_change: 1_700_000_400.0,
        percent_complete: Some(42),
        ..SimActionExecution::default()
    });
    pipeline.stages[2].transition = Some((true, 1_700_000_000.0));
    pipeline
}

const DETAILED_SERIES: &str = r#"aws_codepipeline_action_completion_ratio{account="test",region="us-east-1",pipeline="checkout",stage="Build",action="Lint"} 0.42
aws_codepipeline_action_error_info{account="test",region="us-east-1",pipeline="checkout",stage="Build",action="Build",code="JobFailed"} 1
aws_codepipeline_action_executions_total{account="test",region="us-east-1",pipeline="checkout",stage="Source",action="Source",status="Abandoned"} 0
aws_codepipeline_action_executions_total{account="test",region="us-east-1",pipeline="checkout",stage="Source",action="Source",status="Failed"} 0
aws_codepipeline_action_executions_total{account="test",region="us-east-1",pipeline="checkout",stage="Source",action="Source",status="Succeeded"} 0
aws_codepipeline_action_executions_total{account="test",region="us-east-1",pipeline="checkout",stage="Build",action="Build",status="Abandoned"} 0
aws_codepipeline_action_executions_total{account="test",region="us-east-1",pipeline="checkout",stage="Build",action="Build",status="Failed"} 0
aws_codepipeline_action_executions_total{account="test",region="us-east-1",pipeline="checkout",stage="Build",action="Build",status="Succeeded"} 0
aws_codepipeline_action_executions_total{account="test",region="us-east-1",pipeline="checkout",stage="Build",action="Lint",status="Abandoned"} 0
aws_codepipeline_action_executions_total{account="test",region="us-east-1",pipeline="checkout",stage="Build",action="Lint",status="Failed"} 0
aws_codepipeline_action_executions_total{account="test",region="us-east-1",pipeline="checkout",stage="Build",action="Lint",status="Succeeded"} 0
aws_codepipeline_action_executions_total{account="test",region="us-east-1",pipeline="checkout",stage="Deploy",action="Deploy",status="Abandoned"} 0
aws_codepipeline_action_executions_total{account="test",region="us-east-1",pipeline="checkout",stage="Deploy",action="Deploy",status="Failed"} 0
aws_codepipeline_action_executions_total{account="test",region="us-east-1",pipeline="checkout",stage="Deploy",action="Deploy",status="Succeeded"} 0
aws_codepipeline_action_info{account="test",region="us-east-1",pipeline="checkout",stage="Source",action="Source",category="Build",owner="AWS",provider="CodeBuild"} 1
aws_codepipeline_action_info{account="test",region="us-east-1",pipeline="checkout",stage="Build",action="Build",category="Build",owner="AWS",provider="CodeBuild"} 1
aws_codepipeline_action_info{account="test",region="us-east-1",pipeline="checkout",stage="Build",action="Lint",category="Build",owner="AWS",provider="CodeBuild"} 1
aws_codepipeline_action_info{account="test",region="us-east-1",pipeline="checkout",stage="Deploy",action="Deploy",category="Build",owner="AWS",provider="CodeBuild"} 1
aws_codepipeline_action_last_status_change_timestamp_seconds{account="test",region="us-east-1",pipeline="checkout",stage="Source",action="Source"} 1700000100
aws_codepipeline_action_last_status_change_timestamp_seconds{account="test",region="us-east-1",pipeline="checkout",stage="Build",action="Build"} 1700000300
aws_codepipeline_action_last_status_change_timestamp_seconds{account="test",region="us-east-1",pipeline="checkout",stage="Build",action="Lint"} 1700000400
aws_codepipeline_action_revision_created_timestamp_seconds{account="test",region="us-east-1",pipeline="checkout",stage="Source",action="Source"} 1700000050
aws_codepipeline_action_revision_info{account="test",region="us-east-1",pipeline="checkout",stage="Source",action="Source",revision_id="3f2a9c1"} 1
aws_codepipeline_action_status{account="test",region="us-east-1",pipeline="checkout",stage="Source",action="Source",status="Abandoned"} 0
aws_codepipeline_action_status{account="test",region="us-east-1",pipeline="checkout",stage="Source",action="Source",status="Failed"} 0
aws_codepipeline_action_status{account="test",region="us-east-1",pipeline="checkout",stage="Source",action="Source",status="InProgress"} 0
aws_codepipeline_action_status{account="test",region="us-east-1",pipeline="checkout",stage="Source",action="Source",status="Succeeded"} 1
aws_codepipeline_action_status{account="test",region="us-east-1",pipeline="checkout",stage="Build",action="Build",status="Abandoned"} 0
aws_codepipeline_action_status{account="test",region="us-east-1",pipeline="checkout",stage="Build",action="Build",status="Failed"} 1
aws_codepipeline_action_status{account="test",region="us-east-1",pipeline="checkout",stage="Build",action="Build",status="InProgress"} 0
aws_codepipeline_action_status{account="test",region="us-east-1",pipeline="checkout",stage="Build",action="Build",status="Succeeded"} 0
aws_codepipeline_action_status{account="test",region="us-east-1",pipeline="checkout",stage="Build",action="Lint",status="Abandoned"} 0
aws_codepipeline_action_status{account="test",region="us-east-1",pipeline="checkout",stage="Build",action="Lint",status="Failed"} 0
aws_codepipeline_action_status{account="test",region="us-east-1",pipeline="checkout",stage="Build",action="Lint",status="InProgress"} 1
aws_codepipeline_action_status{account="test",region="us-east-1",pipeline="checkout",stage="Build",action="Lint",status="Succeeded"} 0
aws_codepipeline_action_status{account="test",region="us-east-1",pipeline="checkout",stage="Deploy",action="Deploy",status="Abandoned"} 0
aws_codepipeline_action_status{account="test",region="us-east-1",pipeline="checkout",stage="Deploy",action="Deploy",status="Failed"} 0
aws_codepipeline_action_status{account="test",region="us-east-1",pipeline="checkout",stage="Deploy",action="Deploy",status="InProgress"} 0
aws_codepipeline_action_status{account="test",region="us-east-1",pipeline="checkout",stage="Deploy",action="Deploy",status="Succeeded"} 0
aws_codepipeline_billed_action_seconds_total{account="test",region="us-east-1",pipeline="checkout"} 0
aws_codepipeline_pipeline_created_timestamp_seconds{account="test",region="us-east-1",pipeline="checkout"} 1700000000
aws_codepipeline_pipeline_info{account="test",region="us-east-1",pipeline="checkout",pipeline_type="V2",execution_mode="PARALLEL"} 1
aws_codepipeline_pipeline_updated_timestamp_seconds{account="test",region="us-east-1",pipeline="checkout"} 1700000500.5
aws_codepipeline_pipeline_version{account="test",region="us-east-1",pipeline="checkout"} 7
aws_codepipeline_stage_duration_seconds_bucket{account="test",region="us-east-1",pipeline="checkout",stage="Source",le="30"} 0
aws_codepipeline_stage_duration_seconds_bucket{account="test",region="us-east-1",pipeline="checkout",stage="Source",le="60"} 0
aws_codepipeline_stage_duration_seconds_bucket{account="test",region="us-east-1",pipeline="checkout",stage="Source",le="120"} 0
aws_codepipeline_stage_duration_seconds_bucket{account="test",region="us-east-1",pipeline="checkout",stage="Source",le="300"} 0
aws_codepipeline_stage_duration_seconds_bucket{account="test",region="us-east-1",pipeline="checkout",stage="Source",le="600"} 0
aws_codepipeline_stage_duration_seconds_bucket{account="test",region="us-east-1",pipeline="checkout",stage="Source",le="1800"} 0
aws_codepipeline_stage_duration_seconds_bucket{account="test",region="us-east-1",pipeline="checkout",stage="Source",le="3600"} 0
aws_codepipeline_stage_duration_seconds_bucket{account="test",region="us-east-1",pipeline="checkout",stage="Source",le="+Inf"} 0
aws_codepipeline_stage_duration_seconds_sum{account="test",region="us-east-1",pipeline="checkout",stage="Source"} 0
aws_codepipeline_stage_duration_seconds_count{account="test",region="us-east-1",pipeline="checkout",stage="Source"} 0
aws_codepipeline_stage_duration_seconds_bucket{account="test",region="us-east-1",pipeline="checkout",stage="Build",le="30"} 0
aws_codepipeline_stage_duration_seconds_bucket{account="test",region="us-east-1",pipeline="checkout",stage="Build",le="60"} 0
aws_codepipeline_stage_duration_seconds_bucket{account="test",region="us-east-1",pipeline="checkout",stage="Build",le="120"} 0
aws_codepipeline_stage_duration_seconds_bucket{account="test",region="us-east-1",pipeline="checkout",stage="Build",le="300"} 0
aws_codepipeline_stage_duration_seconds_bucket{account="test",region="us-east-1",pipeline="checkout",stage="Build",le="600"} 0
aws_codepipeline_stage_duration_seconds_bucket{account="test",region="us-east-1",pipeline="checkout",stage="Build",le="1800"} 0
aws_codepipeline_stage_duration_seconds_bucket{account="test",region="us-east-1",pipeline="checkout",stage="Build",le="3600"} 0
aws_codepipeline_stage_duration_seconds_bucket{account="test",region="us-east-1",pipeline="checkout",stage="Build",le="+Inf"} 0
aws_codepipeline_stage_duration_seconds_sum{account="test",region="us-east-1",pipeline="checkout",stage="Build"} 0
aws_codepipeline_stage_duration_seconds_count{account="test",region="us-east-1",pipeline="checkout",stage="Build"} 0
aws_codepipeline_stage_duration_seconds_bucket{account="test",region="us-east-1",pipeline="checkout",stage="Deploy",le="30"} 0
aws_codepipeline_stage_duration_seconds_bucket{account="test",region="us-east-1",pipeline="checkout",stage="Deploy",le="60"} 0
aws_codepipeline_stage_duration_seconds_bucket{account="test",region="us-east-1",pipeline="checkout",stage="Deploy",le="120"} 0
aws_codepipeline_stage_duration_seconds_bucket{account="test",region="us-east-1",pipeline="checkout",stage="Deploy",le="300"} 0
aws_codepipeline_stage_duration_seconds_bucket{account="test",region="us-east-1",pipeline="checkout",stage="Deploy",le="600"} 0
aws_codepipeline_stage_duration_seconds_bucket{account="test",region="us-east-1",pipeline="checkout",stage="Deploy",le="1800"} 0
aws_codepipeline_stage_duration_seconds_bucket{account="test",region="us-east-1",pipeline="checkout",stage="Deploy",le="3600"} 0
aws_codepipeline_stage_duration_seconds_bucket{account="test",region="us-east-1",pipeline="checkout",stage="Deploy",le="+Inf"} 0
aws_codepipeline_stage_duration_seconds_sum{account="test",region="us-east-1",pipeline="checkout",stage="Deploy"} 0
aws_codepipeline_stage_duration_seconds_count{account="test",region="us-east-1",pipeline="checkout",stage="Deploy"} 0
aws_codepipeline_stage_executions_total{account="test",region="us-east-1",pipeline="checkout",stage="Source",status="Cancelled"} 0
aws_codepipeline_stage_executions_total{account="test",region="us-east-1",pipeline="checkout",stage="Source",status="Failed"} 0
aws_codepipeline_stage_executions_total{account="test",region="us-east-1",pipeline="checkout",stage="Source",status="Skipped"} 0
aws_codepipeline_stage_executions_total{account="test",region="us-east-1",pipeline="checkout",stage="Source",status="Stopped"} 0
aws_codepipeline_stage_executions_total{account="test",region="us-east-1",pipeline="checkout",stage="Source",status="Succeeded"} 0
aws_codepipeline_stage_executions_total{account="test",region="us-east-1",pipeline="checkout",stage="Build",status="Cancelled"} 0
aws_codepipeline_stage_executions_total{account="test",region="us-east-1",pipeline="checkout",stage="Build",status="Failed"} 0
aws_codepipeline_stage_executions_total{account="test",region="us-east-1",pipeline="checkout",stage="Build",status="Skipped"} 0
aws_codepipeline_stage_executions_total{account="test",region="us-east-1",pipeline="checkout",stage="Build",status="Stopped"} 0
aws_codepipeline_stage_executions_total{account="test",region="us-east-1",pipeline="checkout",stage="Build",status="Succeeded"} 0
aws_codepipeline_stage_executions_total{account="test",region="us-east-1",pipeline="checkout",stage="Deploy",status="Cancelled"} 0
aws_codepipeline_stage_executions_total{account="test",region="us-east-1",pipeline="checkout",stage="Deploy",status="Failed"} 0
aws_codepipeline_stage_executions_total{account="test",region="us-east-1",pipeline="checkout",stage="Deploy",status="Skipped"} 0
aws_codepipeline_stage_executions_total{account="test",region="us-east-1",pipeline="checkout",stage="Deploy",status="Stopped"} 0
aws_codepipeline_stage_executions_total{account="test",region="us-east-1",pipeline="checkout",stage="Deploy",status="Succeeded"} 0
aws_codepipeline_stage_inbound_executions{account="test",region="us-east-1",pipeline="checkout",stage="Source"} 0
aws_codepipeline_stage_inbound_executions{account="test",region="us-east-1",pipeline="checkout",stage="Build"} 1
aws_codepipeline_stage_inbound_executions{account="test",region="us-east-1",pipeline="checkout",stage="Deploy"} 0
aws_codepipeline_stage_inbound_status{account="test",region="us-east-1",pipeline="checkout",stage="Source",status="Cancelled"} 0
aws_codepipeline_stage_inbound_status{account="test",region="us-east-1",pipeline="checkout",stage="Source",status="Failed"} 0
aws_codepipeline_stage_inbound_status{account="test",region="us-east-1",pipeline="checkout",stage="Source",status="InProgress"} 0
aws_codepipeline_stage_inbound_status{account="test",region="us-east-1",pipeline="checkout",stage="Source",status="Skipped"} 0
aws_codepipeline_stage_inbound_status{account="test",region="us-east-1",pipeline="checkout",stage="Source",status="Stopped"} 0
aws_codepipeline_stage_inbound_status{account="test",region="us-east-1",pipeline="checkout",stage="Source",status="Stopping"} 0
aws_codepipeline_stage_inbound_status{account="test",region="us-east-1",pipeline="checkout",stage="Source",status="Succeeded"} 0
aws_codepipeline_stage_inbound_status{account="test",region="us-east-1",pipeline="checkout",stage="Build",status="Cancelled"} 0
aws_codepipeline_stage_inbound_status{account="test",region="us-east-1",pipeline="checkout",stage="Build",status="Failed"} 0
aws_codepipeline_stage_inbound_status{account="test",region="us-east-1",pipeline="checkout",stage="Build",status="InProgress"} 1
aws_codepipeline_stage_inbound_status{account="test",region="us-east-1",pipeline="checkout",stage="Build",status="Skipped"} 0
aws_codepipeline_stage_inbound_status{account="test",region="us-east-1",pipeline="checkout",stage="Build",status="Stopped"} 0
aws_codepipeline_stage_inbound_status{account="test",region="us-east-1",pipeline="checkout",stage="Build",status="Stopping"} 0
aws_codepipeline_stage_inbound_status{account="test",region="us-east-1",pipeline="checkout",stage="Build",status="Succeeded"} 0
aws_codepipeline_stage_inbound_status{account="test",region="us-east-1",pipeline="checkout",stage="Deploy",status="Cancelled"} 0
aws_codepipeline_stage_inbound_status{account="test",region="us-east-1",pipeline="checkout",stage="Deploy",status="Failed"} 0
aws_codepipeline_stage_inbound_status{account="test",region="us-east-1",pipeline="checkout",stage="Deploy",status="InProgress"} 0
aws_codepipeline_stage_inbound_status{account="test",region="us-east-1",pipeline="checkout",stage="Deploy",status="Skipped"} 0
aws_codepipeline_stage_inbound_status{account="test",region="us-east-1",pipeline="checkout",stage="Deploy",status="Stopped"} 0
aws_codepipeline_stage_inbound_status{account="test",region="us-east-1",pipeline="checkout",stage="Deploy",status="Stopping"} 0
aws_codepipeline_stage_inbound_status{account="test",region="us-east-1",pipeline="checkout",stage="Deploy",status="Succeeded"} 0
aws_codepipeline_stage_status{account="test",region="us-east-1",pipeline="checkout",stage="Source",status="Cancelled"} 0
aws_codepipeline_stage_status{account="test",region="us-east-1",pipeline="checkout",stage="Source",status="Failed"} 0
aws_codepipeline_stage_status{account="test",region="us-east-1",pipeline="checkout",stage="Source",status="InProgress"} 0
aws_codepipeline_stage_status{account="test",region="us-east-1",pipeline="checkout",stage="Source",status="Skipped"} 0
aws_codepipeline_stage_status{account="test",region="us-east-1",pipeline="checkout",stage="Source",status="Stopped"} 0
aws_codepipeline_stage_status{account="test",region="us-east-1",pipeline="checkout",stage="Source",status="Stopping"} 0
aws_codepipeline_stage_status{account="test",region="us-east-1",pipeline="checkout",stage="Source",status="Succeeded"} 1
aws_codepipeline_stage_status{account="test",region="us-east-1",pipeline="checkout",stage="Build",status="Cancelled"} 0
aws_codepipeline_stage_status{account="test",region="us-east-1",pipeline="checkout",stage="Build",status="Failed"} 1
aws_codepipeline_stage_status{account="test",region="us-east-1",pipeline="checkout",stage="Build",status="InProgress"} 0
aws_codepipeline_stage_status{account="test",region="us-east-1",pipeline="checkout",stage="Build",status="Skipped"} 0
aws_codepipeline_stage_status{account="test",region="us-east-1",pipeline="checkout",stage="Build",status="Stopped"} 0
aws_codepipeline_stage_status{account="test",region="us-east-1",pipeline="checkout",stage="Build",status="Stopping"} 0
aws_codepipeline_stage_status{account="test",region="us-east-1",pipeline="checkout",stage="Build",status="Succeeded"} 0
aws_codepipeline_stage_status{account="test",region="us-east-1",pipeline="checkout",stage="Deploy",status="Cancelled"} 0
aws_codepipeline_stage_status{account="test",region="us-east-1",pipeline="checkout",stage="Deploy",status="Failed"} 0
aws_codepipeline_stage_status{account="test",region="us-east-1",pipeline="checkout",stage="Deploy",status="InProgress"} 0
aws_codepipeline_stage_status{account="test",region="us-east-1",pipeline="checkout",stage="Deploy",status="Skipped"} 0
aws_codepipeline_stage_status{account="test",region="us-east-1",pipeline="checkout",stage="Deploy",status="Stopped"} 0
aws_codepipeline_stage_status{account="test",region="us-east-1",pipeline="checkout",stage="Deploy",status="Stopping"} 0
aws_codepipeline_stage_status{account="test",region="us-east-1",pipeline="checkout",stage="Deploy",status="Succeeded"} 0
aws_codepipeline_stage_transition_enabled{account="test",region="us-east-1",pipeline="checkout",stage="Build"} 0
aws_codepipeline_stage_transition_enabled{account="test",region="us-east-1",pipeline="checkout",stage="Deploy"} 1
aws_codepipeline_stage_transition_last_changed_timestamp_seconds{account="test",region="us-east-1",pipeline="checkout",stage="Build"} 1700000200
aws_codepipeline_stage_transition_last_changed_timestamp_seconds{account="test",region="us-east-1",pipeline="checkout",stage="Deploy"} 1700000000
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_pipeline_family_has_exact_values() {
    let bed = start_unthrottled(world(vec![detailed()]), FAST).await;
    // The structure (GetPipeline) is read by the poll after the first, which publishes the state.
    wait_for(&bed.exporter, "the structure read", |s| {
        value(s, &target_up("pipeline", "checkout")) == Some(1.0) && family_len(s, "aws_codepipeline_action_info") == 4
    })
    .await;
    let text = scrape(&bed.exporter).await;
    let series: String = text
        .lines()
        .filter(|l| l.starts_with("aws_codepipeline_") && !l.starts_with("aws_codepipeline_execution"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(series, DETAILED_SERIES);
    assert!(!text.contains("free text"), "action summaries never become labels");
    assert!(!text.contains(&execution_id("e1")) && !text.contains("a2"), "execution IDs never become labels");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_follows_every_page_and_applies_include_and_exclude() {
    let names = ["prod-api", "prod-web", "prod-legacy", "dev-api", "prod-batch", "staging-api", "prod-etl"];
    let mut world = world(names.iter().map(|n| simple(n)).collect());
    world.page_size = 3;
    let yaml = "interval: 150ms\ndiscovery_interval: 1h\naccounts:\n  - name: test\n    regions: [us-east-1]\n    codepipeline:\n      include: ['^prod-']\n      exclude: ['-legacy$']\n      pipelines: [dev-api]\n";
    let bed = start_unthrottled(world, yaml).await;
    let samples = wait_for(&bed.exporter, "the first round", |s| family_len(s, "aws_codepipeline_pipeline_info") == 5).await;
    let polled: Vec<&str> = samples
        .keys()
        .filter(|k| k.starts_with("aws_codepipeline_pipeline_info"))
        .map(|k| k.split("pipeline=\"").nth(1).and_then(|r| r.split('"').next()).unwrap_or_default())
        .collect();
    assert_eq!(polled, ["dev-api", "prod-api", "prod-batch", "prod-etl", "prod-web"]);
    assert_eq!(bed.simulator.calls("ListPipelines"), 3, "seven pipelines in pages of three");
    wait_for(&bed.exporter, "ready", |_| bed.exporter.readiness.is_ready()).await;
    assert_eq!(value(&samples, &target_up("discovery", "codepipeline")), Some(1.0));
    assert_eq!(
        value(&samples, "codepipeline_exporter_aws_requests_total{service=\"codepipeline\",operation=\"ListPipelines\"}"),
        Some(3.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_transitions_and_counters_count_each_outcome_once() {
    let mut pipeline = simple("app");
    pipeline.stages[1].latest = Some((execution_id("old"), "Failed".into()));
    let bed = start_unthrottled(world(vec![pipeline]), FAST).await;
    let s = wait_for(&bed.exporter, "the first poll", |s| value(s, &stage_status("app", "Build", "Failed")) == Some(1.0)).await;
    assert_eq!(
        value(&s, &stage_executions("app", "Build", "Failed")),
        Some(0.0),
        "a failure from before start-up is not counted"
    );

    bed.simulator.world().pipelines.get_mut("app").unwrap().stages[1].latest = Some((execution_id("e2"), "InProgress".into()));
    let s = wait_for(&bed.exporter, "InProgress", |s| value(s, &stage_status("app", "Build", "InProgress")) == Some(1.0)).await;
    assert_eq!(value(&s, &stage_status("app", "Build", "Failed")), Some(0.0));

    bed.simulator.world().pipelines.get_mut("app").unwrap().stages[1].latest = Some((execution_id("e2"), "Failed".into()));
    wait_for(&bed.exporter, "the failure counted", |s| value(s, &stage_executions("app", "Build", "Failed")) == Some(1.0)).await;
    wait_for_calls(&bed.simulator, "GetPipelineState", 4).await;
    let s = samples(&scrape(&bed.exporter).await);
    assert_eq!(
        value(&s, &stage_executions("app", "Build", "Failed")),
        Some(1.0),
        "the same failure seen again is not counted again"
    );

    // A retry of the failed stage finishes the same pipeline execution with another outcome.
    bed.simulator.world().pipelines.get_mut("app").unwrap().stages[1].latest = Some((execution_id("e2"), "Succeeded".into()));
    let s =
        wait_for(&bed.exporter, "the retry counted", |s| value(s, &stage_executions("app", "Build", "Succeeded")) == Some(1.0))
            .await;
    assert_eq!(value(&s, &stage_executions("app", "Build", "Failed")), Some(1.0));
}

/// Without the history, action executions are counted from the latest execution each
/// GetPipelineState poll shows; with it, from ListActionExecutions (tests/anatomy.rs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_history_action_executions_are_counted_by_execution_id_from_the_state() {
    let yaml = format!("{FAST}    codepipeline:\n      executions: false\n");
    let bed = start_unthrottled(world(vec![simple("app")]), &yaml).await;
    let series = |status: &str| {
        format!(
            "aws_codepipeline_action_executions_total{{account=\"test\",region=\"us-east-1\",pipeline=\"app\",stage=\"Build\",action=\"Build\",status=\"{status}\"}}"
        )
    };
    wait_for(&bed.exporter, "the first poll", |s| value(s, &series("Failed")) == Some(0.0)).await;
    for (id, status) in [("x1", "InProgress"), ("x1", "Failed"), ("x2", "Failed"), ("x3", "Succeeded")] {
        bed.simulator.world().pipelines.get_mut("app").unwrap().stages[1].actions[0].latest =
            Some(SimActionExecution { id: id.into(), status: status.into(), ..SimActionExecution::default() });
        wait_for_calls(&bed.simulator, "GetPipelineState", 2).await;
    }
    let s = wait_for(&bed.exporter, "three outcomes", |s| value(s, &series("Succeeded")) == Some(1.0)).await;
    assert_eq!(value(&s, &series("Failed")), Some(2.0));
    assert_eq!(value(&s, &series("Abandoned")), Some(0.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removed_stages_and_deleted_pipelines_disappear() {
    let bed = start_unthrottled(world(vec![simple("keep"), simple("gone"), simple("deleted")]), FAST).await;
    wait_for(&bed.exporter, "three pipelines", |s| family_len(s, "aws_codepipeline_pipeline_info") == 3).await;

    bed.simulator.world().pipelines.get_mut("keep").unwrap().stages.pop();
    bed.simulator.world().pipelines.remove("gone");
    let s = wait_for(&bed.exporter, "gone removed", |s| family_len(s, "aws_codepipeline_pipeline_info") == 2).await;
    assert!(
        s.keys().all(|k| !k.contains("pipeline=\"gone\"") && !k.contains("name=\"gone\"")),
        "no series of a removed pipeline is left"
    );
    let s = wait_for(&bed.exporter, "stage removed", |s| value(s, &stage_status("keep", "Build", "Succeeded")).is_none()).await;
    assert_eq!(value(&s, &stage_status("keep", "Source", "Succeeded")), Some(0.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipeline_deleted_between_discovery_and_poll_loses_its_series_at_once() {
    let yaml = "interval: 150ms\ndiscovery_interval: 1h\naccounts:\n  - name: test\n    regions: [us-east-1]\n";
    let bed = start_unthrottled(world(vec![simple("a"), simple("b")]), yaml).await;
    wait_for(&bed.exporter, "two pipelines", |s| family_len(s, "aws_codepipeline_pipeline_info") == 2).await;
    bed.simulator.world().pipelines.remove("b");
    let s = wait_for(&bed.exporter, "b removed", |s| family_len(s, "aws_codepipeline_pipeline_info") == 1).await;
    assert!(s.keys().all(|k| !k.contains("\"b\"")));
    assert_eq!(
        value(
            &s,
            "codepipeline_exporter_aws_request_errors_total{service=\"codepipeline\",operation=\"GetPipelineState\",code=\"PipelineNotFoundException\"}"
        ),
        Some(1.0),
        "the task of a deleted pipeline stops polling"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_denied_keeps_the_last_values_and_marks_the_target_down() {
    let mut pipeline = simple("app");
    pipeline.stages[1].latest = Some((execution_id("e1"), "Succeeded".into()));
    let bed = start_unthrottled(world(vec![pipeline]), FAST).await;
    wait_for(&bed.exporter, "the first poll", |s| value(s, &target_up("pipeline", "app")) == Some(1.0)).await;
    // Denied until the test has seen the target down: a few denied polls can pass between two
    // scrapes on a loaded machine, and the target would be up again before one shows it.
    const INJECTED: usize = 1_000;
    bed.simulator.inject("GetPipelineState", Fault::error(400, "AccessDeniedException"), INJECTED);
    let s = wait_for(&bed.exporter, "target down", |s| value(s, &target_up("pipeline", "app")) == Some(0.0)).await;
    assert_eq!(value(&s, &stage_status("app", "Build", "Succeeded")), Some(1.0), "last known values are kept");
    let errors = "codepipeline_exporter_aws_request_errors_total{service=\"codepipeline\",operation=\"GetPipelineState\",code=\"AccessDeniedException\"}";
    assert!(value(&s, errors).is_some_and(|n| n >= 1.0));
    let denied = INJECTED - bed.simulator.clear_faults();
    let s = wait_for(&bed.exporter, "recovery", |s| value(s, &target_up("pipeline", "app")) == Some(1.0)).await;
    // Every denied call counted once, and nothing else.
    assert_eq!(value(&s, errors), Some(denied as f64));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_is_retried_by_the_sdk_and_counted() {
    let bed = start_unthrottled(world(vec![simple("app")]), FAST).await;
    wait_for(&bed.exporter, "the first poll", |s| value(s, &target_up("pipeline", "app")) == Some(1.0)).await;
    bed.simulator.inject("GetPipelineState", Fault::error(400, "ThrottlingException"), 1);
    wait_for_calls(&bed.simulator, "GetPipelineState", 3).await;
    let s = samples(&scrape(&bed.exporter).await);
    assert_eq!(value(&s, &target_up("pipeline", "app")), Some(1.0), "one throttled attempt is retried within the same poll");
    assert_eq!(
        value(
            &s,
            "codepipeline_exporter_aws_request_errors_total{service=\"codepipeline\",operation=\"GetPipelineState\",code=\"ThrottlingException\"}"
        ),
        None,
        "a call that succeeded after a retry is not an error"
    );

    bed.simulator.inject("GetPipelineState", Fault::error(400, "ThrottlingException"), 3);
    let s = wait_for(&bed.exporter, "throttling error", |s| {
        value(s, "codepipeline_exporter_aws_request_errors_total{service=\"codepipeline\",operation=\"GetPipelineState\",code=\"ThrottlingException\"}") == Some(1.0)
    })
    .await;
    assert_eq!(value(&s, &stage_status("app", "Source", "Succeeded")), Some(0.0), "values are kept through throttling");
    wait_for(&bed.exporter, "recovery", |s| value(s, &target_up("pipeline", "app")) == Some(1.0)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scrapes_never_call_aws() {
    let yaml = "interval: 1h\ndiscovery_interval: 1h\naccounts:\n  - name: test\n    regions: [us-east-1, eu-west-1]\n";
    let bed = start_unthrottled(world(vec![simple("a"), simple("b")]), yaml).await;
    let s = wait_for(&bed.exporter, "both regions", |s| family_len(s, "aws_codepipeline_pipeline_info") == 4).await;
    wait_for(&bed.exporter, "the first round of both services", |_| bed.exporter.readiness.is_ready()).await;
    assert_eq!(
        value(&s, "codepipeline_exporter_target_up{account=\"test\",region=\"eu-west-1\",kind=\"pipeline\",name=\"b\"}"),
        Some(1.0)
    );
    let calls = bed.simulator.total_calls();
    assert_eq!(bed.simulator.calls("ListPipelines"), 2, "one per region");
    assert_eq!(bed.simulator.calls("GetPipelineState"), 4, "one per pipeline and region");
    assert_eq!(bed.simulator.calls("ListPipelineExecutions"), 4, "the first poll of each pipeline seeds its history");
    assert_eq!(bed.simulator.calls("ListRepositoryLinks"), 2, "one per region, which has none");
    assert_eq!((bed.simulator.calls("ListConnections"), bed.simulator.calls("ListHosts")), (2, 2), "one each per region");
    assert_eq!(bed.simulator.calls("GetPipeline"), 4, "the structure of each pipeline, once");
    assert_eq!(calls, 20);
    for _ in 0..50 {
        scrape(&bed.exporter).await;
    }
    assert_eq!(bed.simulator.total_calls(), calls);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explicit_pipelines_are_polled_without_discovery() {
    let yaml = "interval: 150ms\naccounts:\n  - name: test\n    regions: [us-east-1]\n    codepipeline:\n      discover: false\n      pipelines: [app, missing]\n";
    let bed = start_unthrottled(world(vec![simple("app"), simple("other")]), yaml).await;
    let s = wait_for(&bed.exporter, "both targets polled", |s| {
        value(s, &target_up("pipeline", "missing")) == Some(0.0) && value(s, &target_up("pipeline", "app")).is_some()
    })
    .await;
    assert_eq!(
        value(
            &s,
            "aws_codepipeline_pipeline_info{account=\"test\",region=\"us-east-1\",pipeline=\"app\",pipeline_type=\"unknown\",execution_mode=\"unknown\"}"
        ),
        Some(1.0)
    );
    assert_eq!(value(&s, &target_up("pipeline", "app")), Some(1.0));
    assert_eq!(family(&scrape(&bed.exporter).await, "aws_codepipeline_pipeline_info").len(), 1);
    assert_eq!(bed.simulator.calls("ListPipelines"), 0);
}

/// A status AWS adds after the SDK was built appears as a state of its own. Such an answer is
/// outside the model on purpose, so it is scripted (the simulator's own answer with the status
/// changed), and scripted answers are left out of the conformance check. Polled once, so that the
/// scripted answer is the one shown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_status_values_appear_as_their_own_state() {
    let mut paused = simple("app");
    paused.stages[1].latest = Some((execution_id("e1"), "Paused".into()));
    let name = ciborium::Value::Map(vec![(ciborium::Value::Text("name".into()), ciborium::Value::Text("app".into()))]);
    let state = simulator::codepipeline::handle(&world(vec![paused]), simulator::ACCOUNT_ID, "GetPipelineState", &name).unwrap();
    let simulator = simulator::Simulator::start(world(vec![simple("app")])).await.unwrap();
    simulator.script("GetPipelineState", Some("app"), [state]);
    let exporter = start_exporter_unthrottled(
        &simulator,
        "interval: 1h\nactive_interval: 1h\ndiscovery_interval: 1h\nrequest_timeout: 5s\naccounts:\n  - name: test\n    regions: [us-east-1]\n",
    )
    .await;
    let s = wait_for(&exporter, "the first poll", |s| value(s, &stage_status("app", "Build", "Paused")) == Some(1.0)).await;
    assert_eq!(value(&s, &stage_status("app", "Build", "InProgress")), Some(0.0));
    assert_eq!((simulator.calls("GetPipelineState"), simulator.scripted_left()), (1, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_state_is_published_before_any_history_is_seeded() {
    // 30 pipelines at 10 calls a second: 3 s of state reads, then 6 s of structures and histories.
    let simulator =
        codepipeline_exporter::simulator::Simulator::start(codepipeline_exporter::simulator::fleet(30)).await.unwrap();
    let yaml = "requests_per_second: 10\nburst: 1\naccounts:\n  - name: test\n    regions: [us-east-1]\n    codeconnections:\n      discover: false\n      connections: false\n";
    let exporter = common::start_exporter_unthrottled(&simulator, yaml).await;
    // The calls: every state first.
    while simulator.calls("GetPipelineState") < 30 {
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    assert_eq!((simulator.calls("GetPipeline"), simulator.calls("ListPipelineExecutions")), (0, 0));
    // The metrics: a state is published when its poll ends, so when the structure and the history
    // were read in the same poll, the last state was shown only after every history was seeded.
    // Now it is shown while they are read (the scrape body is assembled at most every 100 ms, more
    // slowly in a debug build).
    let samples = wait_for(&exporter, "every state", |s| family_len(s, "aws_codepipeline_pipeline_version") == 30).await;
    let seeded = simulator.calls("ListPipelineExecutions");
    assert!(seeded < 30, "every state was shown only after {seeded} histories were seeded");
    assert_eq!(simulator.calls("GetPipelineState"), 30);
    assert_eq!(value(&samples, &target_up("pipeline", "service-00029-deploy")), Some(1.0));
    // Ready once every history is seeded too.
    wait_for(&exporter, "ready", |_| exporter.readiness.is_ready()).await;
    assert_eq!((simulator.calls("GetPipeline"), simulator.calls("ListPipelineExecutions")), (30, 30));
    assert_eq!(simulator.calls("GetPipelineState"), 30, "the follow-up reads no state again");
}
