//! Wait versus work through the real SDK clients: where a run waited (queued, gated, for an
//! approval, for build capacity) and where it worked, from ListActionExecutions,
//! ListRuleExecutions and CodeBuild's BatchGetBuilds; the queue at each stage from
//! GetPipelineState; and what a build that cannot be read leaves intact.

mod common;

use codepipeline_exporter::simulator::{
    SimActionRun, SimBuild, SimCondition, SimExecution, SimPhase, SimPipeline, SimRuleRun, Simulator, World, execution_id,
};
use common::{samples, scrape, start_exporter_unthrottled, start_unthrottled, value, wait_for, wait_for_calls};

const FAST: &str = "interval: 150ms\ndiscovery_interval: 1h\naccounts:\n  - name: test\n    regions: [us-east-1]\n    codeconnections:\n      discover: false\n";

fn series(name: &str, extra: &str) -> String {
    format!("{name}{{account=\"test\",region=\"us-east-1\",pipeline=\"app\"{extra}}}")
}

fn wait(stage: &str, reason: &str) -> String {
    series("aws_codepipeline_wait_seconds_total", &format!(",stage=\"{stage}\",reason=\"{reason}\""))
}

/// A V2 pipeline: Source; Build (CodeBuild); Approve (a manual approval); Deploy, gated by a
/// BeforeEntry condition with a DeploymentWindow rule. Its history holds one run from before
/// start-up.
fn pipeline() -> SimPipeline {
    let mut pipeline = SimPipeline::new(
        "app",
        &[("Source", &["Source"]), ("Build", &["Build"]), ("Approve", &["Manager"]), ("Deploy", &["Deploy"])],
    );
    pipeline.stages[0].actions[0].type_id = Some(("Source".into(), "AWS".into(), "CodeStarSourceConnection".into()));
    pipeline.stages[2].actions[0].type_id = Some(("Approval".into(), "AWS".into(), "Manual".into()));
    pipeline.stages[3].actions[0].type_id = Some(("Deploy".into(), "AWS".into(), "CloudFormation".into()));
    pipeline.stages[3].conditions = vec![SimCondition {
        condition_type: "BeforeEntry".into(),
        status: Some("Succeeded".into()),
        rules: vec![("Window".into(), "Succeeded".into())],
    }];
    pipeline.executions = vec![SimExecution::new(&execution_id("e0"), "Succeeded", 500.0, 900.0)];
    pipeline
}

fn world(pipeline: SimPipeline) -> World {
    World { pipelines: [(pipeline.name.clone(), pipeline)].into_iter().collect(), ..World::default() }
}

fn action(stage: &str, action: &str, id: &str, start: f64, end: f64) -> SimActionRun {
    let mut run = SimActionRun::new(stage, action, id, "Succeeded", start, end);
    run.type_id = match stage {
        "Source" => ("Source".into(), "AWS".into(), "CodeStarSourceConnection".into()),
        "Approve" => ("Approval".into(), "AWS".into(), "Manual".into()),
        "Deploy" => ("Deploy".into(), "AWS".into(), "CloudFormation".into()),
        _ => ("Build".into(), "AWS".into(), "CodeBuild".into()),
    };
    run
}

fn rule(stage: &str, rule: &str, id: &str, start: f64, end: f64) -> SimRuleRun {
    SimRuleRun { stage: stage.into(), rule: rule.into(), id: id.into(), status: "Succeeded".into(), start, last_update: end }
}

fn phase(phase_type: &str, start: f64, end: f64) -> SimPhase {
    SimPhase { phase_type: phase_type.into(), status: Some("SUCCEEDED".into()), start, end: Some(end) }
}

/// A build of project `app-build` that waited `queued` seconds in QUEUED and 4 s in PROVISIONING
/// from `start`, then built until `end`.
fn build(id: &str, start: f64, queued: f64, end: f64) -> SimBuild {
    let provisioned = start + 1.0 + queued + 4.0;
    SimBuild {
        id: id.into(),
        phases: vec![
            phase("SUBMITTED", start, start + 1.0),
            phase("QUEUED", start + 1.0, start + 1.0 + queued),
            phase("PROVISIONING", start + 1.0 + queued, provisioned),
            phase("BUILD", provisioned, end),
            SimPhase { phase_type: "COMPLETED".into(), status: None, start: end, end: None },
        ],
    }
}

/// Run e1, 1,000 to 1,200: Source 1,000–1,010; queued until the Build stage is entered at 1,030;
/// the build (1,030–1,090) waits 6 s QUEUED and 4 s PROVISIONING; the approval is open 1,095–1,150;
/// the Deploy stage's Window rule runs 1,155–1,175 and Deploy runs 1,180–1,195.
fn e1(simulator: &Simulator) -> SimExecution {
    let mut run = SimExecution::new(&execution_id("e1"), "Succeeded", 1_000.0, 1_200.0);
    let mut compile = action("Build", "Build", "a-build", 1_030.0, 1_090.0);
    compile.external_id = Some("app-build:b1".into());
    run.actions = vec![
        action("Deploy", "Deploy", "a-deploy", 1_180.0, 1_195.0),
        action("Approve", "Manager", "a-approve", 1_095.0, 1_150.0),
        compile,
        action("Source", "Source", "a-source", 1_000.0, 1_010.0),
    ];
    run.rules = vec![rule("Deploy", "Window", "r1", 1_155.0, 1_175.0)];
    simulator.world().builds.insert("app-build:b1".into(), build("app-build:b1", 1_030.0, 6.0, 1_090.0));
    run
}

/// Puts `execution` at the head of the history and changes the state so that it is read.
fn finish(simulator: &Simulator, execution: SimExecution) {
    let mut world = simulator.world();
    let pipeline = world.pipelines.get_mut("app").unwrap();
    pipeline.stages[3].latest = Some((execution.id.clone(), execution.status.clone()));
    pipeline.executions.retain(|e| e.id != execution.id);
    pipeline.executions.insert(0, execution);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_that_queues_is_gated_and_waits_for_an_approval_and_for_capacity_adds_up() {
    let bed = start_unthrottled(world(pipeline()), FAST).await;
    let wait_count = series("aws_codepipeline_execution_wait_seconds_count", "");
    let s = wait_for(&bed.exporter, "seeded", |s| value(s, &wait_count).is_some()).await;
    assert_eq!(value(&s, &wait_count), Some(0.0), "the histogram is there from the start, so increase() sees the first run");
    finish(&bed.simulator, e1(&bed.simulator));
    let s = wait_for(&bed.exporter, "e1 read", |s| value(s, &wait_count) == Some(1.0)).await;
    // Build: 20 s queued (1,010–1,030) and 10 s for capacity; Approve: 5 s queued and 55 s open;
    // Deploy: 25 s between Approve's end and its start, 20 s of it under the rule.
    assert_eq!(value(&s, &wait("Build", "queued")), Some(20.0));
    assert_eq!(value(&s, &wait("Build", "capacity")), Some(10.0));
    assert_eq!(value(&s, &wait("Approve", "queued")), Some(5.0));
    assert_eq!(value(&s, &wait("Approve", "approval")), Some(55.0));
    assert_eq!(value(&s, &wait("Deploy", "gate")), Some(20.0));
    assert_eq!(value(&s, &wait("Deploy", "queued")), Some(10.0), "1,150–1,155 and 1,175–1,180");
    assert_eq!(value(&s, &wait("Source", "queued")), None, "entered at the run's start: no series");
    let waited: f64 = s.iter().filter(|(k, _)| k.starts_with("aws_codepipeline_wait_seconds_total{")).map(|(_, v)| v).sum();
    assert_eq!(waited, 120.0);
    assert_eq!(value(&s, &series("aws_codepipeline_execution_wait_seconds_sum", "")), Some(120.0));
    // The run's 200 s: 120 waiting, 80 working (Source 10, the build's 50, Deploy 15, and the 5 s
    // after it).
    let duration = series("aws_codepipeline_execution_duration_seconds_sum", ",status=\"Succeeded\",execution_type=\"STANDARD\"");
    assert_eq!(value(&s, &duration), Some(200.0));
    let rule = series("aws_codepipeline_rule_executions_total", ",stage=\"Deploy\",rule=\"Window\",status=\"Succeeded\"");
    assert_eq!(value(&s, &rule), Some(1.0));
    assert_eq!(
        value(&s, &series("aws_codepipeline_rule_duration_seconds_total", ",stage=\"Deploy\",rule=\"Window\"")),
        Some(20.0)
    );
    assert_eq!(bed.simulator.calls("BatchGetBuilds"), 1);
    assert!(!s.keys().any(|k| k.starts_with("aws_codepipeline_action_phase_seconds_total")), "phases are opt-in");
    assert!(!s.keys().any(|k| k.starts_with("aws_codepipeline_timeline_clamps_total")), "no clock skew");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn build_phases_when_switched_on() {
    let yaml = FAST.replace("    codeconnections:", "    codepipeline:\n      build_phases: true\n    codeconnections:");
    let bed = start_unthrottled(world(pipeline()), &yaml).await;
    let wait_count = series("aws_codepipeline_execution_wait_seconds_count", "");
    wait_for(&bed.exporter, "seeded", |s| value(s, &wait_count).is_some()).await;
    finish(&bed.simulator, e1(&bed.simulator));
    let s = wait_for(&bed.exporter, "e1 read", |s| value(s, &wait_count) == Some(1.0)).await;
    let phase = |phase: &str| {
        value(
            &s,
            &series(
                "aws_codepipeline_action_phase_seconds_total",
                &format!(",stage=\"Build\",action=\"Build\",phase=\"{phase}\""),
            ),
        )
    };
    assert_eq!(
        (phase("SUBMITTED"), phase("QUEUED"), phase("PROVISIONING"), phase("BUILD")),
        (Some(1.0), Some(6.0), Some(4.0), Some(49.0))
    );
    assert_eq!(phase("COMPLETED"), None, "a phase without an end has no seconds");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rule_executions_on_two_pages_are_counted_once_each_and_a_restart_replays_nothing() {
    let mut world = world(pipeline());
    world.page_size = 2;
    let simulator = Simulator::start(world).await.unwrap();
    let first = start_exporter_unthrottled(&simulator, FAST).await;
    let wait_count = series("aws_codepipeline_execution_wait_seconds_count", "");
    wait_for(&first, "seeded", |s| value(s, &wait_count).is_some()).await;
    let mut run = e1(&simulator);
    run.rules = vec![
        rule("Deploy", "Window", "r3", 1_170.0, 1_175.0),
        rule("Deploy", "Window", "r2", 1_160.0, 1_170.0),
        rule("Deploy", "Alarm", "r1", 1_155.0, 1_165.0),
    ];
    finish(&simulator, run);
    let window = series("aws_codepipeline_rule_executions_total", ",stage=\"Deploy\",rule=\"Window\",status=\"Succeeded\"");
    let s = wait_for(&first, "e1 read", |s| value(s, &wait_count) == Some(1.0)).await;
    assert_eq!(value(&s, &window), Some(2.0));
    let alarm = series("aws_codepipeline_rule_executions_total", ",stage=\"Deploy\",rule=\"Alarm\",status=\"Succeeded\"");
    assert_eq!(value(&s, &alarm), Some(1.0));
    assert_eq!(value(&s, &wait("Deploy", "gate")), Some(20.0), "the union of 1,155–1,175, not the sum");
    assert_eq!(simulator.calls("ListRuleExecutions"), 2, "two pages");

    // Read again after a change of state: nothing is counted twice.
    let reads = simulator.calls("ListPipelineExecutions");
    simulator.world().pipelines.get_mut("app").unwrap().stages[3].latest = Some((execution_id("e1"), "InProgress".into()));
    wait_for_calls(&simulator, "ListPipelineExecutions", reads + 2).await;
    let s = samples(&scrape(&first).await);
    assert_eq!((value(&s, &window), value(&s, &alarm), value(&s, &wait_count)), (Some(2.0), Some(1.0), Some(1.0)));
    first.shutdown().await;

    let second = start_exporter_unthrottled(&simulator, FAST).await;
    let s = wait_for(&second, "seeded again", |s| value(s, &wait_count).is_some()).await;
    wait_for_calls(&simulator, "GetPipelineState", 3).await;
    let s2 = samples(&scrape(&second).await);
    for s in [&s, &s2] {
        assert_eq!(value(s, &wait_count), Some(0.0), "a restart replays nothing");
        assert_eq!(value(s, &window), None);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipeline_without_conditions_never_lists_rule_executions() {
    let mut pipeline = pipeline();
    pipeline.stages[3].conditions.clear();
    let bed = start_unthrottled(world(pipeline), FAST).await;
    let wait_count = series("aws_codepipeline_execution_wait_seconds_count", "");
    wait_for(&bed.exporter, "seeded", |s| value(s, &wait_count).is_some()).await;
    let mut run = e1(&bed.simulator);
    run.rules.clear();
    finish(&bed.simulator, run);
    let s = wait_for(&bed.exporter, "e1 read", |s| value(s, &wait_count) == Some(1.0)).await;
    assert_eq!(bed.simulator.calls("ListRuleExecutions"), 0);
    assert_eq!(value(&s, &wait("Deploy", "queued")), Some(30.0), "without rules, the whole entry wait is queued");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_and_fifty_builds_take_two_calls() {
    let mut pipeline = pipeline();
    let actions: Vec<String> = (0..150).map(|i| format!("Shard{i:03}")).collect();
    pipeline.stages[1].actions = actions
        .iter()
        .map(|name| codepipeline_exporter::simulator::SimAction {
            name: name.clone(),
            type_id: Some(("Build".into(), "AWS".into(), "CodeBuild".into())),
            ..Default::default()
        })
        .collect();
    let bed = start_unthrottled(world(pipeline), FAST).await;
    let wait_count = series("aws_codepipeline_execution_wait_seconds_count", "");
    wait_for(&bed.exporter, "seeded", |s| value(s, &wait_count).is_some()).await;
    let mut run = SimExecution::new(&execution_id("e1"), "Succeeded", 1_000.0, 1_200.0);
    run.actions.push(action("Source", "Source", "a-source", 1_000.0, 1_010.0));
    for (i, name) in actions.iter().enumerate() {
        let mut shard = action("Build", name, &format!("a-{name}"), 1_010.0, 1_100.0);
        let id = format!("app-build:{i:03}");
        shard.external_id = Some(id.clone());
        // Every shard waits 3 s for a host; together they wait 3 s, not 450.
        bed.simulator.world().builds.insert(id.clone(), build(&id, 1_010.0, 3.0, 1_100.0));
        run.actions.insert(0, shard);
    }
    finish(&bed.simulator, run);
    let s = wait_for(&bed.exporter, "e1 read", |s| value(s, &wait_count) == Some(1.0)).await;
    assert_eq!(bed.simulator.calls("BatchGetBuilds"), 2, "100 builds a call");
    assert_eq!(value(&s, &wait("Build", "capacity")), Some(7.0), "QUEUED 3 s and PROVISIONING 4 s, all shards at once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn builds_not_found_or_denied_are_counted_and_leave_the_rest_intact() {
    let pipeline = pipeline();
    let mut other = SimPipeline::new("other", &[("Source", &["Source"]), ("Build", &["Build"])]);
    other.stages[0].actions[0].type_id = Some(("Source".into(), "AWS".into(), "CodeStarSourceConnection".into()));
    other.executions = vec![SimExecution::new(&execution_id("o0"), "Succeeded", 500.0, 900.0)];
    let mut world = world(pipeline);
    world.pipelines.insert("other".into(), other);
    world.denied_build_projects.insert("secret-build".into());
    let bed = start_unthrottled(world, FAST).await;
    let wait_count = series("aws_codepipeline_execution_wait_seconds_count", "");
    let other_count = "aws_codepipeline_execution_wait_seconds_count{account=\"test\",region=\"us-east-1\",pipeline=\"other\"}";
    wait_for(&bed.exporter, "seeded", |s| value(s, &wait_count).is_some() && value(s, other_count).is_some()).await;

    // app's build is in another account's project: not found.
    let mut run = e1(&bed.simulator);
    bed.simulator.world().builds.clear();
    run.actions[2].external_id = Some("cross-account-build:b9".into());
    finish(&bed.simulator, run);
    // other's build is in a project the exporter may not read: denied.
    let mut denied = SimExecution::new(&execution_id("o1"), "Succeeded", 2_000.0, 2_100.0);
    let mut compile = action("Build", "Build", "o-build", 2_010.0, 2_100.0);
    compile.external_id = Some("secret-build:b1".into());
    denied.actions = vec![compile, action("Source", "Source", "o-source", 2_000.0, 2_010.0)];
    {
        let mut world = bed.simulator.world();
        let other = world.pipelines.get_mut("other").unwrap();
        other.stages[1].latest = Some((execution_id("o1"), "Succeeded".into()));
        other.executions.insert(0, denied);
    }
    let s =
        wait_for(&bed.exporter, "both read", |s| value(s, &wait_count) == Some(1.0) && value(s, other_count) == Some(1.0)).await;
    let failures = |pipeline: &str, reason: &str| {
        value(
            &s,
            &format!(
                "aws_codepipeline_build_lookup_failures_total{{account=\"test\",region=\"us-east-1\",pipeline=\"{pipeline}\",reason=\"{reason}\"}}"
            ),
        )
    };
    assert_eq!((failures("app", "not_found"), failures("other", "access_denied")), (Some(1.0), Some(1.0)));
    assert_eq!((failures("app", "access_denied"), failures("other", "not_found")), (None, None));
    // The rest of each run is intact: the build's capacity wait is unknown, its other waits are not.
    assert_eq!(value(&s, &wait("Build", "queued")), Some(20.0));
    assert_eq!(value(&s, &wait("Build", "capacity")), None);
    assert_eq!(value(&s, &wait("Approve", "approval")), Some(55.0));
    let actions = series("aws_codepipeline_action_executions_total", ",stage=\"Build\",action=\"Build\",status=\"Succeeded\"");
    assert_eq!(value(&s, &actions), Some(1.0));
    let calls = bed.simulator.calls("BatchGetBuilds");
    assert_eq!(calls, 2);
    wait_for_calls(&bed.simulator, "GetPipelineState", 12).await;
    assert_eq!(bed.simulator.calls("BatchGetBuilds"), calls, "never asked for again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_queue_depth_follows_inbound_executions() {
    let bed = start_unthrottled(world(pipeline()), FAST).await;
    let depth = series("aws_codepipeline_stage_inbound_executions", ",stage=\"Deploy\"");
    let s = wait_for(&bed.exporter, "seeded", |s| value(s, &depth).is_some()).await;
    assert_eq!(value(&s, &depth), Some(0.0));
    let queue: Vec<(String, String)> = ["q3", "q2", "q1"].iter().map(|id| (execution_id(id), "InProgress".to_string())).collect();
    bed.simulator.world().pipelines.get_mut("app").unwrap().stages[3].inbound_executions = queue;
    wait_for(&bed.exporter, "three waiting", |s| value(s, &depth) == Some(3.0)).await;
    bed.simulator.world().pipelines.get_mut("app").unwrap().stages[3].inbound_executions.truncate(1);
    wait_for(&bed.exporter, "one waiting", |s| value(s, &depth) == Some(1.0)).await;
    bed.simulator.world().pipelines.get_mut("app").unwrap().stages[3].inbound_executions.clear();
    let s = wait_for(&bed.exporter, "none waiting", |s| value(s, &depth) == Some(0.0)).await;
    assert_eq!(value(&s, &series("aws_codepipeline_stage_inbound_executions", ",stage=\"Build\"")), Some(0.0));
}
