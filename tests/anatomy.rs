//! Run anatomy through the real SDK against the simulated ListActionExecutions: exact stage and
//! action durations and counts, billed seconds, pages, restarts, failed reads and stage retries.

mod common;

use std::collections::BTreeMap;

use codepipeline_exporter::simulator::{Fault, SimActionRun, SimExecution, SimPipeline, Simulator, World, execution_id};
use common::{error_count, samples, scrape, start_exporter_unthrottled, value, wait_for, wait_for_calls};

const FAST: &str = "interval: 150ms\ndiscovery_interval: 1h\naccounts:\n  - name: test\n    regions: [us-east-1]\n    codeconnections:\n      discover: false\n";

/// A pipeline of three stages: a source, a build, and a release stage of a manual approval and
/// a custom action; `pipeline_type` V1 or V2. Its history holds one run from before start-up.
fn pipeline(name: &str, pipeline_type: &str) -> SimPipeline {
    let mut pipeline =
        SimPipeline::new(name, &[("Source", &["Source"]), ("Build", &["Build"]), ("Release", &["Approve", "Notify"])]);
    pipeline.pipeline_type = pipeline_type.into();
    let types = [
        ("Source", "AWS", "CodeStarSourceConnection"),
        ("Build", "AWS", "CodeBuild"),
        ("Approval", "AWS", "Manual"),
        ("Build", "Custom", "Notifier"),
    ];
    for (action, (category, owner, provider)) in pipeline.stages.iter_mut().flat_map(|s| s.actions.iter_mut()).zip(types) {
        action.type_id = Some((category.into(), owner.into(), provider.into()));
    }
    let mut old = SimExecution::new(&execution_id("e0"), "Succeeded", 500.0, 900.0);
    old.actions = vec![run("Source", "Source", "old-source", "Succeeded", 500.0, 900.0)];
    pipeline.executions = vec![old];
    pipeline
}

fn run(stage: &str, action: &str, id: &str, status: &str, start: f64, end: f64) -> SimActionRun {
    let mut run = SimActionRun::new(stage, action, id, status, start, end);
    run.type_id = match action {
        "Source" => ("Source".into(), "AWS".into(), "CodeStarSourceConnection".into()),
        "Approve" => ("Approval".into(), "AWS".into(), "Manual".into()),
        "Notify" => ("Build".into(), "Custom".into(), "Notifier".into()),
        _ => run.type_id,
    };
    run
}

/// Run e1: the build fails after 61 s and its stage is retried inside the run, the second build
/// takes 90 s, the approval waits 300 s and the custom action takes 30 s. Newest first, as
/// ListActionExecutions answers.
fn e1_actions() -> Vec<SimActionRun> {
    vec![
        run("Release", "Notify", "a-notify", "Succeeded", 1_470.0, 1_500.0),
        run("Release", "Approve", "a-approve", "Succeeded", 1_170.0, 1_470.0),
        run("Build", "Build", "a-build-2", "Succeeded", 1_080.0, 1_170.0),
        run("Build", "Build", "a-build-1", "Failed", 1_010.0, 1_071.0),
        run("Source", "Source", "a-source", "Succeeded", 1_000.0, 1_010.0),
    ]
}

fn world(pipelines: Vec<SimPipeline>, page_size: usize) -> World {
    World { pipelines: pipelines.into_iter().map(|p| (p.name.clone(), p)).collect(), page_size, ..World::default() }
}

/// Adds (or replaces) execution `execution` of `pipeline` at the head of its history and changes
/// the state so that the next poll reads the history. GetPipelineState never shows the first
/// build attempt: it starts and ends between two polls.
fn finish(simulator: &Simulator, pipeline: &str, execution: SimExecution) {
    let mut world = simulator.world();
    let pipeline = world.pipelines.get_mut(pipeline).unwrap();
    pipeline.stages[2].latest = Some((execution.id.clone(), execution.status.clone()));
    pipeline.executions.retain(|e| e.id != execution.id);
    pipeline.executions.insert(0, execution);
}

fn e1(status: &str, actions: Vec<SimActionRun>) -> SimExecution {
    let mut execution = SimExecution::new(&execution_id("e1"), status, 1_000.0, 1_500.0);
    execution.actions = actions;
    execution
}

fn series(name: &str, pipeline: &str, extra: &str) -> String {
    format!("{name}{{account=\"test\",region=\"us-east-1\",pipeline=\"{pipeline}\"{extra}}}")
}

fn billed(pipeline: &str) -> String {
    series("aws_codepipeline_billed_action_seconds_total", pipeline, "")
}

fn action(family: &str, pipeline: &str, stage: &str, action: &str, status: &str) -> String {
    series(family, pipeline, &format!(",stage=\"{stage}\",action=\"{action}\",status=\"{status}\""))
}

/// Every series of the anatomy families of one pipeline, with values.
fn anatomy(s: &BTreeMap<String, f64>, pipeline: &str) -> BTreeMap<String, f64> {
    let families = [
        "aws_codepipeline_action_executions_total",
        "aws_codepipeline_action_duration_seconds_total",
        "aws_codepipeline_stage_duration_seconds",
        "aws_codepipeline_stage_last_duration_seconds",
        "aws_codepipeline_billed_action_seconds_total",
    ];
    s.iter()
        .filter(|(k, _)| families.iter().any(|f| k.starts_with(f)) && k.contains(&format!("pipeline=\"{pipeline}\"")))
        .map(|(k, v)| {
            let base = format!("account=\"test\",region=\"us-east-1\",pipeline=\"{pipeline}\"");
            (k.replace(&format!("{base},"), "").replace(&format!("{{{base}}}"), ""), *v)
        })
        .collect()
}

/// What run e1 leaves: stage durations from first action start to last action end (Source 10 s,
/// Build 1010 to 1170 s, Release 1170 to 1500 s), every action execution once, and billed
/// seconds rounded up per action (60 + 120 + 120), without the approval and the custom action.
fn expected_after_e1(billed: f64) -> BTreeMap<String, f64> {
    let mut expected = BTreeMap::new();
    let mut put = |k: &str, v: f64| {
        expected.insert(k.to_string(), v);
    };
    for (act, stage, counts) in [
        ("Source", "Source", [0.0, 0.0, 1.0]),
        ("Build", "Build", [0.0, 1.0, 1.0]),
        ("Approve", "Release", [0.0, 0.0, 1.0]),
        ("Notify", "Release", [0.0, 0.0, 1.0]),
    ] {
        for (status, count) in ["Abandoned", "Failed", "Succeeded"].iter().zip(counts) {
            put(
                &format!("aws_codepipeline_action_executions_total{{stage=\"{stage}\",action=\"{act}\",status=\"{status}\"}}"),
                count,
            );
        }
    }
    for (stage, act, status, seconds) in [
        ("Source", "Source", "Succeeded", 10.0),
        ("Build", "Build", "Failed", 61.0),
        ("Build", "Build", "Succeeded", 90.0),
        ("Release", "Approve", "Succeeded", 300.0),
        ("Release", "Notify", "Succeeded", 30.0),
    ] {
        put(
            &format!("aws_codepipeline_action_duration_seconds_total{{stage=\"{stage}\",action=\"{act}\",status=\"{status}\"}}"),
            seconds,
        );
    }
    for (stage, duration) in [("Source", 10.0), ("Build", 160.0), ("Release", 330.0)] {
        for le in ["30", "60", "120", "300", "600", "1800", "3600", "+Inf"] {
            let within = le == "+Inf" || duration <= le.parse::<f64>().unwrap();
            put(
                &format!("aws_codepipeline_stage_duration_seconds_bucket{{stage=\"{stage}\",le=\"{le}\"}}"),
                if within { 1.0 } else { 0.0 },
            );
        }
        put(&format!("aws_codepipeline_stage_duration_seconds_sum{{stage=\"{stage}\"}}"), duration);
        put(&format!("aws_codepipeline_stage_duration_seconds_count{{stage=\"{stage}\"}}"), 1.0);
        put(&format!("aws_codepipeline_stage_last_duration_seconds{{stage=\"{stage}\"}}"), duration);
    }
    expected.insert("aws_codepipeline_billed_action_seconds_total".to_string(), billed);
    expected
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_gives_exact_stage_and_action_durations_counts_and_billed_seconds() {
    let simulator = Simulator::start(world(vec![pipeline("app", "V2"), pipeline("legacy", "V1")], 100)).await.unwrap();
    let exporter = start_exporter_unthrottled(&simulator, FAST).await;
    let s = wait_for(&exporter, "seeded", |s| value(s, &billed("app")).is_some() && value(s, &billed("legacy")).is_some()).await;
    assert_eq!(value(&s, &billed("app")), Some(0.0), "the run from before start-up is not read");
    assert_eq!(simulator.calls("ListActionExecutions"), 0);

    finish(&simulator, "app", e1("Succeeded", e1_actions()));
    finish(&simulator, "legacy", e1("Succeeded", e1_actions()));
    wait_for(&exporter, "both runs read", |s| {
        value(s, &billed("app")) == Some(300.0)
            && value(s, &action("aws_codepipeline_action_executions_total", "legacy", "Build", "Build", "Succeeded")) == Some(1.0)
    })
    .await;
    wait_for_calls(&simulator, "GetPipelineState", 4).await;
    let s = samples(&scrape(&exporter).await);
    assert_eq!(anatomy(&s, "app"), expected_after_e1(300.0));
    assert_eq!(anatomy(&s, "legacy"), expected_after_e1(0.0), "a V1 pipeline is billed per month, not per action minute");
    // The first build attempt was never in GetPipelineState, and yet it is counted.
    assert_eq!(value(&s, &action("aws_codepipeline_action_executions_total", "app", "Build", "Build", "Failed")), Some(1.0));
    assert_eq!(simulator.calls("ListActionExecutions"), 2, "once per counted execution, never for e0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn action_executions_spanning_pages_are_all_read() {
    let simulator = Simulator::start(world(vec![pipeline("app", "V2")], 2)).await.unwrap();
    let exporter = start_exporter_unthrottled(&simulator, FAST).await;
    wait_for(&exporter, "seeded", |s| value(s, &billed("app")).is_some()).await;
    finish(&simulator, "app", e1("Succeeded", e1_actions()));
    let s = wait_for(&exporter, "the run read", |s| value(s, &billed("app")) == Some(300.0)).await;
    assert_eq!(anatomy(&s, "app"), expected_after_e1(300.0));
    assert_eq!(simulator.calls("ListActionExecutions"), 3, "five action executions in pages of two");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_replays_nothing() {
    let simulator = Simulator::start(world(vec![pipeline("app", "V2")], 100)).await.unwrap();
    let first = start_exporter_unthrottled(&simulator, FAST).await;
    wait_for(&first, "seeded", |s| value(s, &billed("app")).is_some()).await;
    finish(&simulator, "app", e1("Succeeded", e1_actions()));
    wait_for(&first, "the run read", |s| value(s, &billed("app")) == Some(300.0)).await;
    drop(first);

    let calls = simulator.calls("ListActionExecutions");
    let second = start_exporter_unthrottled(&simulator, FAST).await;
    wait_for(&second, "seeded", |s| value(s, &billed("app")).is_some()).await;
    wait_for_calls(&simulator, "GetPipelineState", 4).await;
    let s = samples(&scrape(&second).await);
    assert_eq!(value(&s, &billed("app")), Some(0.0));
    assert_eq!(value(&s, &action("aws_codepipeline_action_executions_total", "app", "Build", "Build", "Failed")), Some(0.0));
    assert_eq!(simulator.calls("ListActionExecutions"), calls, "a run that ended before start-up is not read");

    // A new run after the restart is read, and only it.
    let mut e2 = SimExecution::new(&execution_id("e2"), "Succeeded", 2_000.0, 2_030.0);
    e2.actions = vec![run("Source", "Source", "b-source", "Succeeded", 2_000.0, 2_030.0)];
    finish(&simulator, "app", e2);
    let s = wait_for(&second, "e2 read", |s| value(s, &billed("app")) == Some(60.0)).await;
    assert_eq!(
        value(&s, &action("aws_codepipeline_action_duration_seconds_total", "app", "Source", "Source", "Succeeded")),
        Some(30.0)
    );
    assert_eq!(simulator.calls("ListActionExecutions"), calls + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_read_is_retried_and_counted_once() {
    let simulator = Simulator::start(world(vec![pipeline("app", "V2")], 100)).await.unwrap();
    let exporter = start_exporter_unthrottled(&simulator, FAST).await;
    wait_for(&exporter, "seeded", |s| value(s, &billed("app")).is_some()).await;
    simulator.inject("ListActionExecutions", Fault::error(400, "AccessDeniedException"), 1);
    finish(&simulator, "app", e1("Succeeded", e1_actions()));
    let s = wait_for(&exporter, "the run read", |s| value(s, &billed("app")) == Some(300.0)).await;
    assert_eq!(error_count(&s, "codepipeline", "ListActionExecutions", "AccessDeniedException"), Some(1.0));
    wait_for_calls(&simulator, "GetPipelineState", 4).await;
    let s = samples(&scrape(&exporter).await);
    assert_eq!(anatomy(&s, "app"), expected_after_e1(300.0), "counted once");
    assert_eq!(simulator.calls("ListActionExecutions"), 2, "the failed read and its retry");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stage_retried_after_the_run_ended_adds_only_its_new_action_executions() {
    let simulator = Simulator::start(world(vec![pipeline("app", "V2")], 100)).await.unwrap();
    let exporter = start_exporter_unthrottled(&simulator, FAST).await;
    wait_for(&exporter, "seeded", |s| value(s, &billed("app")).is_some()).await;
    // The run fails at its build.
    let failed: Vec<SimActionRun> = e1_actions().into_iter().skip(3).collect();
    finish(&simulator, "app", e1("Failed", failed.clone()));
    let failed_build = action("aws_codepipeline_action_executions_total", "app", "Build", "Build", "Failed");
    wait_for(&exporter, "the failed run read", |s| value(s, &failed_build) == Some(1.0)).await;

    // RetryStageExecution resumes the same execution, which then succeeds.
    finish(&simulator, "app", e1("InProgress", failed));
    wait_for_calls(&simulator, "ListPipelineExecutions", 2).await;
    finish(&simulator, "app", e1("Succeeded", e1_actions()));
    let s = wait_for(&exporter, "the retried run read", |s| value(s, &billed("app")) == Some(300.0)).await;
    assert_eq!(value(&s, &failed_build), Some(1.0), "the first attempt is not counted again");
    assert_eq!(value(&s, &action("aws_codepipeline_action_executions_total", "app", "Build", "Build", "Succeeded")), Some(1.0));
    assert_eq!(value(&s, &action("aws_codepipeline_action_executions_total", "app", "Source", "Source", "Succeeded")), Some(1.0));
    // The build stage ran twice: 61 s until it failed, then 90 s in its retry.
    let build = |name: &str| series(name, "app", ",stage=\"Build\"");
    assert_eq!(value(&s, &build("aws_codepipeline_stage_duration_seconds_count")), Some(2.0));
    assert_eq!(value(&s, &build("aws_codepipeline_stage_duration_seconds_sum")), Some(151.0));
    assert_eq!(value(&s, &build("aws_codepipeline_stage_last_duration_seconds")), Some(90.0));
    assert_eq!(simulator.calls("ListActionExecutions"), 2, "once per time the run ended");
}
