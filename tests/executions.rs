//! Execution history through the real SDK: every finished execution counted once, early stopping,
//! and no extra calls for idle pipelines.

mod common;

use std::collections::BTreeMap;

use codepipeline_exporter::simulator::{SimExecution, SimPipeline, Simulator, World, execution_id};
use common::{samples, scrape, start_exporter_unthrottled, start_unthrottled, value, wait_for, wait_for_calls};

const FAST: &str = "interval: 150ms\ndiscovery_interval: 1h\naccounts:\n  - name: test\n    regions: [us-east-1]\n    codeconnections:\n      discover: false\n";

fn world(pipeline: SimPipeline, page_size: usize) -> World {
    World { pipelines: [(pipeline.name.clone(), pipeline)].into_iter().collect(), page_size, ..World::default() }
}

fn app(executions: Vec<SimExecution>) -> SimPipeline {
    let mut pipeline = SimPipeline::new("app", &[("Source", &["Source"]), ("Deploy", &["Deploy"])]);
    pipeline.executions = executions;
    pipeline
}

fn series(name: &str, extra: &str) -> String {
    format!("{name}{{account=\"test\",region=\"us-east-1\",pipeline=\"app\"{extra}}}")
}

fn executions(status: &str) -> String {
    series(
        "aws_codepipeline_executions_total",
        &format!(",status=\"{status}\",trigger_type=\"Webhook\",execution_type=\"STANDARD\""),
    )
}

/// Changes the pipeline's state so that the next poll reads the history, and adds `new` executions
/// at the head of it (newest first). Without a new execution, the stage's latest run changes to
/// `stage_status`.
fn push(simulator: &Simulator, new: Vec<SimExecution>, stage_status: &str) {
    let mut world = simulator.world();
    let pipeline = world.pipelines.get_mut("app").unwrap();
    let id = match new.first() {
        Some(execution) => execution.id.clone(),
        None => pipeline.stages[1].latest.as_ref().expect("a run to change").0.clone(),
    };
    pipeline.stages[1].latest = Some((id, stage_status.into()));
    for execution in new.into_iter().rev() {
        pipeline.executions.insert(0, execution);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn executions_finishing_between_polls_are_all_counted_once() {
    let bed =
        start_unthrottled(world(app(vec![SimExecution::new(&execution_id("e1"), "Succeeded", 1_000.0, 1_100.0)]), 100), FAST)
            .await;
    let s = wait_for(&bed.exporter, "seeded", |s| value(s, &executions("Succeeded")).is_some()).await;
    assert_eq!(value(&s, &executions("Succeeded")), Some(0.0), "history from before start-up is not counted");
    assert_eq!(value(&s, &series("aws_codepipeline_execution_last_success_timestamp_seconds", "")), Some(1_100.0));
    assert_eq!(value(&s, &series("aws_codepipeline_execution_last_duration_seconds", ",status=\"Succeeded\"")), Some(100.0));

    push(
        &bed.simulator,
        vec![
            SimExecution::new(&execution_id("e4"), "Succeeded", 1_400.0, 1_460.0),
            SimExecution::new(&execution_id("e3"), "Failed", 1_300.0, 1_330.0),
            SimExecution::new(&execution_id("e2"), "Succeeded", 1_200.0, 1_290.0),
        ],
        "Succeeded",
    );
    let s = wait_for(&bed.exporter, "three executions", |s| value(s, &executions("Succeeded")) == Some(2.0)).await;
    assert_eq!(value(&s, &executions("Failed")), Some(1.0));
    wait_for_calls(&bed.simulator, "GetPipelineState", 5).await;
    let s = samples(&scrape(&bed.exporter).await);
    assert_eq!(value(&s, &executions("Succeeded")), Some(2.0), "seen again, not counted again");
    assert_eq!(value(&s, &executions("Failed")), Some(1.0));
    assert_eq!(value(&s, &executions("Stopped")), Some(0.0));
    assert_eq!(value(&s, &series("aws_codepipeline_execution_last_start_timestamp_seconds", "")), Some(1_400.0));
    assert_eq!(value(&s, &series("aws_codepipeline_execution_last_success_timestamp_seconds", "")), Some(1_460.0));
    assert_eq!(value(&s, &series("aws_codepipeline_execution_last_failure_timestamp_seconds", "")), Some(1_330.0));
    assert_eq!(value(&s, &series("aws_codepipeline_execution_last_duration_seconds", ",status=\"Failed\"")), Some(30.0));
    assert_eq!(value(&s, &series("aws_codepipeline_execution_status", ",status=\"Succeeded\"")), Some(1.0));
    assert_eq!(value(&s, &series("aws_codepipeline_execution_status", ",status=\"Failed\"")), Some(0.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pagination_stops_at_the_first_page_of_known_executions() {
    let history: Vec<SimExecution> = (0..10)
        .rev()
        .map(|i| {
            SimExecution::new(
                &execution_id(&format!("old{i}")),
                "Succeeded",
                1_000.0 + f64::from(i) * 100.0,
                1_050.0 + f64::from(i) * 100.0,
            )
        })
        .collect();
    let bed = start_unthrottled(world(app(history), 2), FAST).await;
    wait_for(&bed.exporter, "seeded", |s| value(s, &executions("Succeeded")).is_some()).await;
    assert_eq!(bed.simulator.calls("ListPipelineExecutions"), 1, "the seed reads only the newest page");

    push(&bed.simulator, vec![SimExecution::new(&execution_id("new1"), "Succeeded", 5_000.0, 5_100.0)], "Succeeded");
    let s = wait_for(&bed.exporter, "new1 counted", |s| value(s, &executions("Succeeded")) == Some(1.0)).await;
    // [new1, old9] has an unknown execution; [old8, old7] holds only known ones: stop there.
    assert_eq!(bed.simulator.calls("ListPipelineExecutions"), 3);
    assert_eq!(value(&s, &executions("Failed")), Some(0.0));

    push(
        &bed.simulator,
        vec![
            SimExecution::new(&execution_id("new3"), "Failed", 5_300.0, 5_310.0),
            SimExecution::new(&execution_id("new2"), "Succeeded", 5_200.0, 5_260.0),
        ],
        "Failed",
    );
    wait_for(&bed.exporter, "new2 and new3 counted", |s| value(s, &executions("Failed")) == Some(1.0)).await;
    let s = wait_for(&bed.exporter, "new2", |s| value(s, &executions("Succeeded")) == Some(2.0)).await;
    assert_eq!(value(&s, &executions("Failed")), Some(1.0));
    // [new3, new2] new, [new1, old9] known: two more pages; older pages are never read. new3 is
    // the pipeline's first failure: its recovery histogram is published at 0 before the counts,
    // which the next read, of one page, makes.
    assert_eq!(bed.simulator.calls("ListPipelineExecutions"), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn superseded_stopped_and_parallel_executions() {
    let mut pipeline = app(vec![]);
    pipeline.execution_mode = "PARALLEL".into();
    let bed = start_unthrottled(world(pipeline, 100), FAST).await;
    wait_for(&bed.exporter, "seeded", |s| value(s, &series("aws_codepipeline_executions_in_progress", "")) == Some(0.0)).await;

    push(
        &bed.simulator,
        vec![
            SimExecution::new(&execution_id("p2"), "InProgress", 2_100.0, 2_100.0),
            SimExecution::new(&execution_id("p1"), "InProgress", 2_000.0, 2_000.0),
        ],
        "InProgress",
    );
    let s =
        wait_for(&bed.exporter, "two running", |s| value(s, &series("aws_codepipeline_executions_in_progress", "")) == Some(2.0))
            .await;
    assert_eq!(value(&s, &series("aws_codepipeline_execution_status", ",status=\"InProgress\"")), Some(1.0));

    {
        let mut world = bed.simulator.world();
        let executions = &mut world.pipelines.get_mut("app").unwrap().executions;
        executions[0].status = "Stopping".into();
        executions[1].status = "Superseded".into();
        executions[1].last_update = 2_050.0;
    }
    let s = wait_for(&bed.exporter, "one stopping", |s| value(s, &executions("Superseded")) == Some(1.0)).await;
    assert_eq!(value(&s, &series("aws_codepipeline_executions_in_progress", "")), Some(1.0), "Stopping still runs");

    bed.simulator.world().pipelines.get_mut("app").unwrap().executions[0].status = "Stopped".into();
    let s = wait_for(&bed.exporter, "stopped", |s| value(s, &executions("Stopped")) == Some(1.0)).await;
    assert_eq!(value(&s, &series("aws_codepipeline_executions_in_progress", "")), Some(0.0));
    assert_eq!(value(&s, &executions("Superseded")), Some(1.0));
    assert_eq!(value(&s, &series("aws_codepipeline_execution_status", ",status=\"Stopped\"")), Some(1.0));
    assert_eq!(value(&s, &series("aws_codepipeline_execution_last_duration_seconds", ",status=\"Superseded\"")), Some(50.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_duration_histogram_gets_the_right_observations() {
    let bed = start_unthrottled(world(app(vec![]), 100), FAST).await;
    wait_for(&bed.exporter, "seeded", |s| value(s, &series("aws_codepipeline_executions_in_progress", "")).is_some()).await;
    push(
        &bed.simulator,
        vec![
            SimExecution::new(&execution_id("c"), "Failed", 10_000.0, 24_400.0),
            SimExecution::new(&execution_id("b"), "Succeeded", 3_000.0, 3_400.0),
            SimExecution::new(&execution_id("a"), "Succeeded", 1_000.0, 1_045.0),
        ],
        "Failed",
    );
    let s = wait_for(&bed.exporter, "three observations", |s| {
        value(
            s,
            &series("aws_codepipeline_execution_duration_seconds_count", ",status=\"Succeeded\",execution_type=\"STANDARD\""),
        ) == Some(2.0)
            && value(
                s,
                &series("aws_codepipeline_execution_duration_seconds_count", ",status=\"Failed\",execution_type=\"STANDARD\""),
            ) == Some(1.0)
    })
    .await;
    let buckets = |status: &str| -> BTreeMap<String, f64> {
        s.iter()
            .filter_map(|(k, v)| {
                let prefix = format!("aws_codepipeline_execution_duration_seconds_bucket{{account=\"test\",region=\"us-east-1\",pipeline=\"app\",status=\"{status}\",execution_type=\"STANDARD\",le=\"");
                k.strip_prefix(&prefix).map(|le| (le.trim_end_matches("\"}").to_string(), *v))
            })
            .collect()
    };
    let expected = |pairs: &[(&str, f64)]| pairs.iter().map(|(le, v)| (le.to_string(), *v)).collect::<BTreeMap<_, _>>();
    assert_eq!(
        buckets("Succeeded"),
        expected(&[
            ("30", 0.0),
            ("60", 1.0),
            ("120", 1.0),
            ("300", 1.0),
            ("600", 2.0),
            ("900", 2.0),
            ("1200", 2.0),
            ("1800", 2.0),
            ("2700", 2.0),
            ("3600", 2.0),
            ("7200", 2.0),
            ("10800", 2.0),
            ("21600", 2.0),
            ("+Inf", 2.0)
        ])
    );
    assert_eq!(
        value(
            &s,
            &series("aws_codepipeline_execution_duration_seconds_sum", ",status=\"Succeeded\",execution_type=\"STANDARD\"")
        ),
        Some(445.0)
    );
    assert_eq!(buckets("Failed").get("10800"), Some(&0.0));
    assert_eq!(buckets("Failed").get("21600"), Some(&1.0), "four hours falls in the six-hour bucket");
    assert_eq!(
        value(&s, &series("aws_codepipeline_execution_duration_seconds_sum", ",status=\"Failed\",execution_type=\"STANDARD\"")),
        Some(14_400.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_does_not_recount() {
    let simulator = Simulator::start(world(app(vec![SimExecution::new(&execution_id("e1"), "Failed", 1_000.0, 1_100.0)]), 100))
        .await
        .unwrap();
    let first = start_exporter_unthrottled(&simulator, FAST).await;
    wait_for(&first, "seeded", |s| value(s, &executions("Failed")) == Some(0.0)).await;
    push(&simulator, vec![SimExecution::new(&execution_id("e2"), "Failed", 2_000.0, 2_100.0)], "Failed");
    wait_for(&first, "e2 counted", |s| value(s, &executions("Failed")) == Some(1.0)).await;
    first.shutdown().await;

    let second = start_exporter_unthrottled(&simulator, FAST).await;
    let s = wait_for(&second, "seeded again", |s| value(s, &executions("Failed")).is_some()).await;
    assert_eq!(value(&s, &executions("Failed")), Some(0.0), "a restart does not replay e1 or e2");
    assert_eq!(
        value(&s, &series("aws_codepipeline_execution_last_failure_timestamp_seconds", "")),
        Some(2_100.0),
        "but fills the last_* gauges"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_pipeline_makes_no_list_pipeline_executions_calls() {
    let bed =
        start_unthrottled(world(app(vec![SimExecution::new(&execution_id("e1"), "Succeeded", 1_000.0, 1_100.0)]), 100), FAST)
            .await;
    wait_for(&bed.exporter, "seeded", |s| value(s, &executions("Succeeded")).is_some()).await;
    wait_for_calls(&bed.simulator, "GetPipelineState", 10).await;
    assert_eq!(bed.simulator.calls("ListPipelineExecutions"), 1, "only the seed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn executions_can_be_turned_off() {
    let yaml = "interval: 150ms\naccounts:\n  - name: test\n    regions: [us-east-1]\n    codepipeline:\n      executions: false\n    codeconnections:\n      discover: false\n";
    let bed =
        start_unthrottled(world(app(vec![SimExecution::new(&execution_id("e1"), "Succeeded", 1_000.0, 1_100.0)]), 100), yaml)
            .await;
    let s = wait_for(&bed.exporter, "polled", |s| {
        value(s, "codepipeline_exporter_target_up{account=\"test\",region=\"us-east-1\",kind=\"pipeline\",name=\"app\"}")
            == Some(1.0)
    })
    .await;
    assert_eq!(bed.simulator.calls("ListPipelineExecutions"), 0);
    assert!(!s.keys().any(|k| k.starts_with("aws_codepipeline_execution")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lead_time_is_observed_once_per_succeeded_execution_and_not_replayed_after_a_restart() {
    let simulator =
        Simulator::start(world(app(vec![SimExecution::new(&execution_id("e1"), "Succeeded", 1_000.0, 1_100.0)]), 100))
            .await
            .unwrap();
    let first = start_exporter_unthrottled(&simulator, FAST).await;
    let s = wait_for(&first, "seeded", |s| value(s, &executions("Succeeded")).is_some()).await;
    let lead = |suffix: &str, extra: &str| series(&format!("aws_codepipeline_execution_lead_time_seconds{suffix}"), extra);
    assert_eq!(
        value(&s, &lead("_count", "")),
        Some(0.0),
        "nothing counted yet; a pipeline that succeeded before has the histogram at 0, so that increase() sees its first lead time"
    );

    // Its revision was created 600 s before it started, and it ran 300 s: a lead time of 900 s.
    let mut e2 = SimExecution::new(&execution_id("e2"), "Succeeded", 2_000.0, 2_300.0);
    e2.revisions_created = vec![1_700.0, 1_400.0];
    push(&simulator, vec![e2, SimExecution::new(&execution_id("e3"), "Failed", 1_900.0, 1_950.0)], "Succeeded");
    let s = wait_for(&first, "e2 counted", |s| value(s, &lead("_count", "")) == Some(1.0)).await;
    assert_eq!(value(&s, &lead("_sum", "")), Some(900.0), "from the oldest revision");
    assert_eq!(value(&s, &lead("_bucket", ",le=\"300\"")), Some(0.0));
    assert_eq!(value(&s, &lead("_bucket", ",le=\"900\"")), Some(1.0));
    assert_eq!(value(&s, &lead("_bucket", ",le=\"+Inf\"")), Some(1.0));
    assert_eq!(simulator.calls("GetPipelineExecution"), 1, "one call, for the Succeeded execution only");
    wait_for_calls(&simulator, "GetPipelineState", 5).await;
    assert_eq!(simulator.calls("GetPipelineExecution"), 1, "and never again");
    first.shutdown().await;

    let second = start_exporter_unthrottled(&simulator, FAST).await;
    let s = wait_for(&second, "seeded again", |s| value(s, &executions("Succeeded")).is_some()).await;
    wait_for_calls(&simulator, "GetPipelineState", 3).await;
    assert_eq!(value(&s, &lead("_count", "")), Some(0.0), "a restart does not replay e2");
    assert_eq!(simulator.calls("GetPipelineExecution"), 1);
}

/// A series of the executions counter: `status`, `trigger_type` and `execution_type`.
fn counted(status: &str, trigger: &str, execution_type: &str) -> String {
    series(
        "aws_codepipeline_executions_total",
        &format!(",status=\"{status}\",trigger_type=\"{trigger}\",execution_type=\"{execution_type}\""),
    )
}

fn recovery(suffix: &str) -> String {
    series(&format!("aws_codepipeline_recovery_duration_seconds{suffix}"), "")
}

fn lead_time_count() -> String {
    series("aws_codepipeline_execution_lead_time_seconds_count", "")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_is_no_deployment_and_its_recovery_is_observed_exactly() {
    let bed =
        start_unthrottled(world(app(vec![SimExecution::new(&execution_id("e1"), "Succeeded", 1_000.0, 1_100.0)]), 100), FAST)
            .await;
    let s = wait_for(&bed.exporter, "seeded", |s| value(s, &executions("Succeeded")).is_some()).await;
    assert_eq!(value(&s, &recovery("_count")), None, "a pipeline that never failed has no recovery series");
    assert!(!s.keys().any(|k| k.contains("ROLLBACK")), "nor any ROLLBACK series");

    // e2 fails in its deploy stage at 2,300 and the stage rolls back to e1, ending at 2,400.
    push(&bed.simulator, vec![SimExecution::new(&execution_id("e2"), "Failed", 2_000.0, 2_300.0)], "Failed");
    let s = wait_for(&bed.exporter, "e2 counted", |s| value(s, &executions("Failed")) == Some(1.0)).await;
    assert_eq!(value(&s, &recovery("_count")), Some(0.0), "a recovery started: the histogram is there, at 0");
    push(
        &bed.simulator,
        vec![SimExecution::rollback(&execution_id("r1"), "Succeeded", 2_310.0, 2_400.0, &execution_id("e1"))],
        "Succeeded",
    );
    let s =
        wait_for(&bed.exporter, "r1 counted", |s| value(s, &counted("Succeeded", "AutomatedRollback", "ROLLBACK")) == Some(1.0))
            .await;
    assert_eq!(value(&s, &executions("Succeeded")), Some(0.0), "a rollback is not a deployment");
    assert_eq!(value(&s, &counted("Failed", "AutomatedRollback", "ROLLBACK")), Some(0.0));
    assert_eq!(value(&s, &counted("Succeeded", "Webhook", "ROLLBACK")), None, "no series for pairs never seen");
    assert_eq!(value(&s, &counted("Succeeded", "AutomatedRollback", "STANDARD")), None);
    assert_eq!(value(&s, &lead_time_count()), Some(0.0), "its old revisions make no lead time");
    assert_eq!(bed.simulator.calls("GetPipelineExecution"), 0);
    let rollback_duration = |suffix: &str| {
        series(
            &format!("aws_codepipeline_execution_duration_seconds{suffix}"),
            ",status=\"Succeeded\",execution_type=\"ROLLBACK\"",
        )
    };
    assert_eq!((value(&s, &rollback_duration("_count")), value(&s, &rollback_duration("_sum"))), (Some(1.0), Some(90.0)));
    assert_eq!((value(&s, &recovery("_count")), value(&s, &recovery("_sum"))), (Some(1.0), Some(100.0)));
    let bucket = |le: &str| value(&s, &series("aws_codepipeline_recovery_duration_seconds_bucket", &format!(",le=\"{le}\"")));
    assert_eq!((bucket("60"), bucket("300"), bucket("+Inf")), (Some(0.0), Some(1.0), Some(1.0)));

    // Read again after a change of state: r1 is seen again and counted once.
    let reads = bed.simulator.calls("ListPipelineExecutions");
    push(&bed.simulator, vec![], "InProgress");
    wait_for_calls(&bed.simulator, "ListPipelineExecutions", reads + 2).await;
    let s = samples(&scrape(&bed.exporter).await);
    assert_eq!(value(&s, &counted("Succeeded", "AutomatedRollback", "ROLLBACK")), Some(1.0));
    assert_eq!(value(&s, &recovery("_count")), Some(1.0));

    // e3 deploys; a person rolls it back to e1, the last good deployment before it. The recovery
    // starts at e3's end, not at e2's, which r1 already recovered.
    push(&bed.simulator, vec![SimExecution::new(&execution_id("e3"), "Succeeded", 3_000.0, 3_100.0)], "Succeeded");
    wait_for(&bed.exporter, "e3 counted", |s| value(s, &executions("Succeeded")) == Some(1.0)).await;
    let mut r2 = SimExecution::rollback(&execution_id("r2"), "Succeeded", 3_200.0, 3_300.0, &execution_id("e1"));
    r2.trigger_type = "ManualRollback".into();
    push(&bed.simulator, vec![r2], "Succeeded");
    let s = wait_for(&bed.exporter, "r2 counted", |s| value(s, &counted("Succeeded", "ManualRollback", "ROLLBACK")) == Some(1.0))
        .await;
    assert_eq!((value(&s, &recovery("_count")), value(&s, &recovery("_sum"))), (Some(2.0), Some(300.0)));
    assert_eq!(value(&s, &executions("Succeeded")), Some(1.0));
    assert_eq!(value(&s, &lead_time_count()), Some(1.0), "e3's lead time only");
    assert_eq!(bed.simulator.calls("GetPipelineExecution"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_in_a_row_make_one_recovery_ended_by_the_next_success() {
    let bed =
        start_unthrottled(world(app(vec![SimExecution::new(&execution_id("e1"), "Succeeded", 1_000.0, 1_100.0)]), 100), FAST)
            .await;
    wait_for(&bed.exporter, "seeded", |s| value(s, &executions("Succeeded")).is_some()).await;
    // Two failures read at once, newest first: the recovery starts at the older one's end.
    push(
        &bed.simulator,
        vec![
            SimExecution::new(&execution_id("e3"), "Failed", 2_200.0, 2_250.0),
            SimExecution::new(&execution_id("e2"), "Failed", 2_000.0, 2_100.0),
        ],
        "Failed",
    );
    let s = wait_for(&bed.exporter, "two failures", |s| value(s, &executions("Failed")) == Some(2.0)).await;
    assert_eq!(value(&s, &recovery("_count")), Some(0.0));
    push(&bed.simulator, vec![SimExecution::new(&execution_id("e4"), "Failed", 2_260.0, 2_280.0)], "Failed");
    wait_for(&bed.exporter, "a third", |s| value(s, &executions("Failed")) == Some(3.0)).await;
    push(&bed.simulator, vec![SimExecution::new(&execution_id("e5"), "Succeeded", 2_300.0, 2_500.0)], "Succeeded");
    let s = wait_for(&bed.exporter, "fixed forward", |s| value(s, &executions("Succeeded")) == Some(1.0)).await;
    assert_eq!((value(&s, &recovery("_count")), value(&s, &recovery("_sum"))), (Some(1.0), Some(400.0)));
    assert_eq!(value(&s, &series("aws_codepipeline_recovery_duration_seconds_bucket", ",le=\"300\"")), Some(0.0));
    assert_eq!(value(&s, &series("aws_codepipeline_recovery_duration_seconds_bucket", ",le=\"900\"")), Some(1.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recovery_that_started_before_a_restart_is_not_replayed() {
    let simulator =
        Simulator::start(world(app(vec![SimExecution::new(&execution_id("e1"), "Succeeded", 1_000.0, 1_100.0)]), 100))
            .await
            .unwrap();
    let first = start_exporter_unthrottled(&simulator, FAST).await;
    wait_for(&first, "seeded", |s| value(s, &executions("Failed")).is_some()).await;
    push(&simulator, vec![SimExecution::new(&execution_id("e2"), "Failed", 2_000.0, 2_300.0)], "Failed");
    wait_for(&first, "e2 counted", |s| value(s, &executions("Failed")) == Some(1.0)).await;
    first.shutdown().await;

    // The second process finds e2 failed at start-up; the rollback that ends its recovery comes
    // after, and is counted, but the recovery, whose start it did not see, is not observed.
    let second = start_exporter_unthrottled(&simulator, FAST).await;
    let s = wait_for(&second, "seeded again", |s| value(s, &executions("Failed")).is_some()).await;
    assert_eq!(value(&s, &recovery("_count")), Some(0.0), "a pipeline found failing has the histogram from the start");
    push(
        &simulator,
        vec![SimExecution::rollback(&execution_id("r1"), "Succeeded", 2_310.0, 2_400.0, &execution_id("e1"))],
        "Succeeded",
    );
    let s =
        wait_for(&second, "r1 counted", |s| value(s, &counted("Succeeded", "AutomatedRollback", "ROLLBACK")) == Some(1.0)).await;
    assert_eq!(value(&s, &recovery("_count")), Some(0.0));
    assert_eq!(value(&s, &executions("Failed")), Some(0.0));
    second.shutdown().await;

    // A third finds the whole story in the history and replays none of it.
    let third = start_exporter_unthrottled(&simulator, FAST).await;
    let s = wait_for(&third, "seeded a third time", |s| value(s, &executions("Failed")).is_some()).await;
    wait_for_calls(&simulator, "GetPipelineState", 3).await;
    let s2 = samples(&scrape(&third).await);
    for s in [&s, &s2] {
        assert_eq!(value(s, &counted("Succeeded", "AutomatedRollback", "ROLLBACK")), Some(0.0));
        assert_eq!(value(s, &recovery("_count")), Some(0.0));
        assert_eq!(value(s, &lead_time_count()), Some(0.0));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_execution_without_an_execution_type_is_standard() {
    let mut pipeline = app(vec![SimExecution::new(&execution_id("e1"), "Succeeded", 1_000.0, 1_100.0)]);
    // V1 pipelines' executions leave executionType out.
    pipeline.pipeline_type = "V1".into();
    let bed = start_unthrottled(world(pipeline, 100), FAST).await;
    wait_for(&bed.exporter, "seeded", |s| value(s, &executions("Succeeded")).is_some()).await;
    push(&bed.simulator, vec![SimExecution::new(&execution_id("e2"), "Succeeded", 2_000.0, 2_100.0)], "Succeeded");
    let s = wait_for(&bed.exporter, "e2 counted", |s| value(s, &executions("Succeeded")) == Some(1.0)).await;
    assert_eq!(value(&s, &lead_time_count()), Some(1.0));
}
