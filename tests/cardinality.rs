//! The `metrics` section: excluded families are never exported and the others are unchanged;
//! sparse state sets hold only the current status; and the series each pipeline costs.

mod common;

use std::collections::BTreeMap;

use codepipeline_exporter::simulator::{
    self, SimActionRun, SimExecution, SimPipeline, SimRepositoryLink, SimResourceSync, SimSyncAttempt, SimSyncConfiguration,
    Simulator, World, execution_id,
};
use common::{family, samples, scrape, start_exporter_unthrottled, value, wait_for};

const ACCOUNT: &str = "interval: 150ms\ndiscovery_interval: 1h\naccounts:\n  - name: test\n    regions: [us-east-1]\n    codeconnections:\n      discover: false\n      connections: false\n";

fn world() -> World {
    let mut pipeline = SimPipeline::new("app", &[("Source", &["Source"]), ("Build", &["Build"])]);
    pipeline.stages[0].latest = Some((execution_id("e1"), "Succeeded".into()));
    pipeline.stages[1].latest = Some((execution_id("e1"), "Succeeded".into()));
    World { pipelines: [(pipeline.name.clone(), pipeline)].into_iter().collect(), ..World::default() }
}

fn stage_status(stage: &str, status: &str) -> String {
    format!(
        "aws_codepipeline_stage_status{{account=\"test\",region=\"us-east-1\",pipeline=\"app\",stage=\"{stage}\",status=\"{status}\"}}"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sparse_state_sets_hold_only_the_current_status() {
    let simulator = Simulator::start(world()).await.unwrap();
    let exporter = start_exporter_unthrottled(&simulator, &format!("metrics:\n  state_sets: sparse\n{ACCOUNT}")).await;
    let s = wait_for(&exporter, "the first poll", |s| value(s, &stage_status("Build", "Succeeded")).is_some()).await;
    let text = scrape(&exporter).await;
    let stages = |text: &str| family(text, "aws_codepipeline_stage_status").into_iter().collect::<Vec<_>>();
    assert_eq!(stages(&text), [(stage_status("Build", "Succeeded"), 1.0), (stage_status("Source", "Succeeded"), 1.0)]);
    assert_eq!(family(&text, "aws_codepipeline_stage_inbound_status").len(), 0, "nothing waits: no series at all");
    assert_eq!(
        value(&s, "codepipeline_exporter_target_up{account=\"test\",region=\"us-east-1\",kind=\"pipeline\",name=\"app\"}"),
        Some(1.0)
    );

    simulator.world().pipelines.get_mut("app").unwrap().stages[1].latest = Some((execution_id("e2"), "Failed".into()));
    wait_for(&exporter, "the failure", |s| value(s, &stage_status("Build", "Failed")).is_some()).await;
    let text = scrape(&exporter).await;
    assert_eq!(
        stages(&text),
        [(stage_status("Build", "Failed"), 1.0), (stage_status("Source", "Succeeded"), 1.0)],
        "the Succeeded series went with the status"
    );
}

/// Every `aws_` series of a scrape but those of `excluded`, with values.
fn aws_series(text: &str, excluded: &str) -> BTreeMap<String, f64> {
    samples(text).into_iter().filter(|(k, _)| k.starts_with("aws_") && !k.starts_with(excluded)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_excluded_family_is_absent_and_the_others_unchanged() {
    let simulator = Simulator::start(world()).await.unwrap();
    let full = start_exporter_unthrottled(&simulator, ACCOUNT).await;
    let trimmed = start_exporter_unthrottled(
        &simulator,
        &format!("metrics:\n  exclude: [\"aws_codepipeline_stage_inbound_.*\"]\n{ACCOUNT}"),
    )
    .await;
    for exporter in [&full, &trimmed] {
        wait_for(exporter, "ready", |_| exporter.readiness.is_ready()).await;
    }
    let (full, trimmed) = (scrape(&full).await, scrape(&trimmed).await);
    assert_eq!(family(&full, "aws_codepipeline_stage_inbound_status").len(), 14);
    assert!(!trimmed.contains("aws_codepipeline_stage_inbound_status"), "neither series nor HELP nor TYPE");
    assert!(!trimmed.contains("aws_codepipeline_stage_inbound_executions"), "the pattern takes both families");
    let excluded = "aws_codepipeline_stage_inbound_";
    assert_eq!(aws_series(&trimmed, excluded), aws_series(&full, excluded));
    assert!(aws_series(&full, excluded).len() > 50);
}

/// Series per pipeline of the benchmarks' shape (5 stages of 4 actions), as docs/metrics.md's table
/// gives them: every series labelled with the pipeline, and its target's health series.
async fn series_per_pipeline(metrics: &str) -> usize {
    let simulator = Simulator::start(simulator::fleet(3)).await.unwrap();
    let exporter = start_exporter_unthrottled(&simulator, &format!("{metrics}{ACCOUNT}")).await;
    wait_for(&exporter, "ready", |_| exporter.readiness.is_ready()).await;
    let text = scrape(&exporter).await;
    let name = "service-00001-deploy";
    samples(&text)
        .keys()
        .filter(|k| k.contains(&format!("pipeline=\"{name}\"")) || k.contains(&format!("kind=\"pipeline\",name=\"{name}\"")))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_series_a_pipeline_costs() {
    assert_eq!(series_per_pipeline("").await, 428);
    assert_eq!(series_per_pipeline("metrics:\n  state_sets: sparse\n").await, 297);
    let trimmed = "metrics:\n  state_sets: sparse\n  exclude: [aws_codepipeline_stage_inbound_status, aws_codepipeline_execution_duration_seconds]\n";
    assert_eq!(series_per_pipeline(trimmed).await, 265);
}

/// The run-anatomy families of a pipeline of the benchmarks' shape, after a run in which every
/// action succeeded: the stage histograms (5 × 10), the last stage durations (5), the seconds of
/// each action's one status (20) and the billed seconds (1). The budget of docs/metrics.md is 80 by
/// default; each further status an action ends in adds one series.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_anatomy_adds_76_series_per_pipeline_after_a_run() {
    let simulator = Simulator::start(simulator::fleet(3)).await.unwrap();
    let exporter = start_exporter_unthrottled(&simulator, ACCOUNT).await;
    wait_for(&exporter, "ready", |_| exporter.readiness.is_ready()).await;
    let name = "service-00001-deploy";
    {
        let mut world = simulator.world();
        let pipeline = world.pipelines.get_mut(name).unwrap();
        let mut run = SimExecution::new(&execution_id("exec-1-next"), "Succeeded", 1_800_000_000.0, 1_800_000_400.0);
        for s in 0..5 {
            for a in 0..4 {
                let start = 1_800_000_000.0 + f64::from(s * 4 + a) * 20.0;
                run.actions.push(SimActionRun::new(
                    &format!("Stage{s}"),
                    &format!("Action{s}{a}"),
                    &format!("act-next-{s}-{a}"),
                    "Succeeded",
                    start,
                    start + 20.0,
                ));
            }
        }
        pipeline.executions.insert(0, run);
        pipeline.stages[4].latest = Some((execution_id("exec-1-next"), "Succeeded".into()));
    }
    let billed =
        format!("aws_codepipeline_billed_action_seconds_total{{account=\"test\",region=\"us-east-1\",pipeline=\"{name}\"}}");
    wait_for(&exporter, "the run read", |s| value(s, &billed) == Some(1_200.0)).await;
    let text = scrape(&exporter).await;
    let anatomy = [
        "aws_codepipeline_stage_duration_seconds",
        "aws_codepipeline_stage_last_duration_seconds",
        "aws_codepipeline_action_duration_seconds_total",
        "aws_codepipeline_billed_action_seconds_total",
    ];
    let count = |pipeline: &str| {
        samples(&text)
            .keys()
            .filter(|k| anatomy.iter().any(|f| k.starts_with(f)) && k.contains(&format!("pipeline=\"{pipeline}\"")))
            .count()
    };
    assert_eq!(count(name), 76);
    assert_eq!(count("service-00002-deploy"), 51, "no run read yet: the histograms and the billed seconds, at 0");
    // Wait versus work adds 17 by default, within its budget of 25: the queue at each stage (5)
    // and the histogram of each run's wait (12). A run that waited adds a series per stage and
    // reason that occurred; rule executions only come with conditions, phases only when asked for.
    let waiting = [
        "aws_codepipeline_stage_inbound_executions",
        "aws_codepipeline_wait_seconds_total",
        "aws_codepipeline_execution_wait_seconds",
        "aws_codepipeline_rule_",
        "aws_codepipeline_action_phase_seconds_total",
        "aws_codepipeline_build_lookup_failures_total",
        "aws_codepipeline_timeline_clamps_total",
    ];
    let waits = samples(&text)
        .keys()
        .filter(|k| waiting.iter().any(|f| k.starts_with(f)) && k.contains(&format!("pipeline=\"{name}\"")))
        .count();
    assert_eq!(waits, 17);
}

/// A pipeline that never rolls back gains no series from the execution type: its executions
/// counter keeps one series per final status, all `STANDARD`, and its duration histogram the Failed
/// and Succeeded ones; a pipeline that never failed has no recovery histogram either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipeline_that_never_rolls_back_gains_no_series() {
    let simulator = Simulator::start(simulator::fleet(3)).await.unwrap();
    let exporter = start_exporter_unthrottled(&simulator, ACCOUNT).await;
    wait_for(&exporter, "ready", |_| exporter.readiness.is_ready()).await;
    let name = "service-00001-deploy";
    {
        let mut world = simulator.world();
        let pipeline = world.pipelines.get_mut(name).unwrap();
        pipeline
            .executions
            .insert(0, SimExecution::new(&execution_id("exec-1-next"), "Succeeded", 1_800_000_000.0, 1_800_000_400.0));
        pipeline.stages[4].latest = Some((execution_id("exec-1-next"), "Succeeded".into()));
    }
    let deployed = format!(
        "aws_codepipeline_executions_total{{account=\"test\",region=\"us-east-1\",pipeline=\"{name}\",status=\"Succeeded\",trigger_type=\"Webhook\",execution_type=\"STANDARD\"}}"
    );
    wait_for(&exporter, "the run counted", |s| value(s, &deployed) == Some(1.0)).await;
    let text = scrape(&exporter).await;
    let of_pipeline: Vec<String> = samples(&text).into_keys().filter(|k| k.contains(&format!("pipeline=\"{name}\""))).collect();
    let count = |prefix: &str| of_pipeline.iter().filter(|k| k.starts_with(prefix)).count();
    assert_eq!(of_pipeline.iter().filter(|k| k.contains("ROLLBACK")).count(), 0);
    assert_eq!(count("aws_codepipeline_executions_total{"), 5, "Cancelled, Failed, Stopped, Succeeded, Superseded");
    assert_eq!(count("aws_codepipeline_execution_duration_seconds_"), 2 * (14 + 2), "Failed and Succeeded");
    assert_eq!(count("aws_codepipeline_recovery_duration_seconds"), 0);
}

/// The series a stack synced by Git sync costs, as docs/metrics.md gives them: every series
/// labelled with the stack (its sync configuration, status, deployments, blockers) and the health
/// series of its two targets (`resource_sync` and `sync_blocker`). The time-to-resolve histogram
/// is 13 of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_series_a_synced_stack_costs() {
    let link = SimRepositoryLink::new("11111111-aaaa-bbbb-cccc-000000000001", "GitHub", "acme", "infra");
    let mut world = World::default();
    world.sync_configurations.push(SimSyncConfiguration {
        repository_link_id: link.id.clone(),
        branch: "main".into(),
        sync_type: "CFN_STACK_SYNC".into(),
        resource_name: "prod-infra".into(),
        config_file: None,
    });
    world.repository_links.insert(link.id.clone(), link);
    let deployed = SimSyncAttempt { started_at: 1_700_000_000.0, status: "SUCCEEDED".into(), events: Vec::new() };
    world.resource_syncs.insert(
        ("prod-infra".into(), "CFN_STACK_SYNC".into()),
        SimResourceSync { latest: deployed.clone(), latest_successful: Some(deployed), sha: "abc".into(), successful_sha: None },
    );
    let simulator = Simulator::start(world).await.unwrap();
    let exporter = start_exporter_unthrottled(
        &simulator,
        "interval: 150ms\ndiscovery_interval: 1h\naccounts:\n  - name: test\n    regions: [us-east-1]\n    codepipeline:\n      discover: false\n    codeconnections:\n      connections: false\n",
    )
    .await;
    wait_for(&exporter, "ready", |_| exporter.readiness.is_ready()).await;
    let text = scrape(&exporter).await;
    let stack = samples(&text)
        .into_keys()
        .filter(|k| k.contains("resource_name=\"prod-infra\"") || k.contains("name=\"prod-infra/CFN_STACK_SYNC\""))
        .count();
    assert_eq!(stack, 31);
    let histogram =
        samples(&text).into_keys().filter(|k| k.starts_with("aws_codeconnections_sync_blocker_resolve_duration_seconds")).count();
    assert_eq!(histogram, 13);
}
