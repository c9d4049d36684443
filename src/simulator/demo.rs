//! The demo's scenario: a handful of pipelines whose executions start, progress, succeed and fail
//! on a loop of a few minutes, so that every metric family has something to show.
//!
//! The state of each pipeline is computed from the clock alone (which run is current and how far
//! it got), so the scenario keeps no state of its own and every tick is consistent with the last.
//! Git syncs and sync blockers are computed from the time the demo started instead, so that a
//! newcomer sees within 90 seconds a stack fall behind its branch and catch up, and a blocker
//! resolved, besides one at once already old enough to alert on. So is the queued release train,
//! whose runs wait in every way a run waits (a queue, a build's capacity, an approval, a gate)
//! every 50 seconds. Every CodeBuild action names its build, whose phases BatchGetBuilds gives.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::{
    SimActionExecution, SimActionRun, SimBuild, SimCondition, SimConnection, SimExecution, SimHost, SimPhase, SimPipeline,
    SimRepositoryLink, SimResourceSync, SimRuleRun, SimSyncAttempt, SimSyncBlocker, SimSyncConfiguration, SimSyncEvent,
    Simulator, World,
};

/// One action of a scenario: its name, how long it runs, whether it reports percentComplete.
type ActionSpec = (&'static str, u64, bool);

struct Scenario {
    name: &'static str,
    pipeline_type: &'static str,
    execution_mode: &'static str,
    stages: &'static [(&'static str, &'static [ActionSpec])],
    /// Seconds between the starts of two runs.
    period: u64,
    /// Seconds into the loop at which run 0 starts, so that pipelines do not move in lockstep.
    offset: u64,
    /// Which (stage, action) fails in run `k`, if any.
    fails: fn(u64) -> Option<(usize, usize)>,
    /// Which (stage, action) fails a third of the way through its first attempt in run `k`, after
    /// which the stage is retried automatically and the action runs again.
    retried: fn(u64) -> Option<(usize, usize)>,
    /// A stage whose inbound transition is disabled: runs wait in front of it.
    disabled_before: Option<usize>,
    /// What starts the pipeline's executions.
    trigger: &'static str,
}

const SERVICE: &[(&str, &[ActionSpec])] = &[
    ("Source", &[("Source", 3, false)]),
    ("Build", &[("Build", 25, true), ("UnitTests", 15, true)]),
    ("Deploy", &[("DeployStaging", 12, true), ("DeployProduction", 12, true)]),
];

const BATCH: &[(&str, &[ActionSpec])] = &[
    ("Source", &[("Source", 3, false)]),
    ("Build", &[("Build", 20, true)]),
    ("Approval", &[("ManualApproval", 20, false)]),
    ("Deploy", &[("Deploy", 15, true)]),
];

const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "checkout-service",
        pipeline_type: "V2",
        execution_mode: "QUEUED",
        stages: SERVICE,
        period: 90,
        offset: 0,
        fails: |_| None,
        retried: |k| (k % 2 == 0).then_some((1, 0)),
        disabled_before: None,
        trigger: "Webhook",
    },
    Scenario {
        name: "payments-api",
        pipeline_type: "V2",
        execution_mode: "SUPERSEDED",
        stages: SERVICE,
        period: 80,
        offset: 20,
        fails: |k| (k % 3 == 1).then_some((1, 1)),
        retried: |_| None,
        disabled_before: None,
        trigger: "Webhook",
    },
    Scenario {
        name: "inventory-worker",
        pipeline_type: "V1",
        execution_mode: "SUPERSEDED",
        stages: BATCH,
        period: 120,
        offset: 45,
        fails: |_| None,
        retried: |_| None,
        disabled_before: None,
        trigger: "PollForSourceChanges",
    },
    Scenario {
        name: "legacy-batch",
        pipeline_type: "V1",
        execution_mode: "SUPERSEDED",
        stages: BATCH,
        period: 150,
        offset: 10,
        fails: |_| None,
        retried: |_| None,
        disabled_before: Some(3),
        trigger: "StartPipelineExecution",
    },
    Scenario {
        name: "data-platform-etl",
        pipeline_type: "V2",
        execution_mode: "QUEUED",
        stages: SERVICE,
        period: 100,
        offset: 30,
        fails: |_| Some((2, 0)),
        retried: |_| None,
        disabled_before: None,
        trigger: "Webhook",
    },
    Scenario {
        name: "frontend-web",
        pipeline_type: "V2",
        execution_mode: "PARALLEL",
        stages: SERVICE,
        period: 70,
        offset: 5,
        fails: |k| (k % 4 == 3).then_some((2, 1)),
        retried: |k| (k % 2 == 1).then_some((1, 1)),
        disabled_before: None,
        trigger: "Webhook",
    },
];

/// A branch synced by CloudFormation Git sync: its link, branch, stack, how often it is pushed to,
/// and on which attempts it fails.
struct SyncScenario {
    link: &'static str,
    branch: &'static str,
    stack: &'static str,
    /// Seconds between two pushes to the branch; each push starts an attempt.
    period: u64,
    /// Seconds into its period the branch is when the demo starts: attempt 0 started that long
    /// before, and attempt 1 starts `period - phase` seconds in.
    phase: u64,
    /// Whether attempt `k` fails; `None` for a branch that never synced.
    fails: Option<fn(u64) -> bool>,
}

/// Repository links: ID, provider, owner, repository.
const LINKS: &[(&str, &str, &str, &str)] = &[
    ("6f1c2a10-0000-4000-8000-00000000a001", "GitHub", "acme", "platform-infra"),
    ("6f1c2a10-0000-4000-8000-00000000a002", "GitLab", "acme", "network-stacks"),
    ("6f1c2a10-0000-4000-8000-00000000a003", "GitHub", "acme", "observability"),
];

/// prod-platform is pushed to 20 s into the demo and is behind its branch until that sync succeeds
/// at 55 s; staging-platform's push at 30 s fails at 65 s, leaving it behind until the next push's
/// sync succeeds at 155 s; observability never syncs successfully.
const SYNCS: &[SyncScenario] = &[
    SyncScenario { link: LINKS[0].0, branch: "main", stack: "prod-platform", period: 120, phase: 100, fails: Some(|_| false) },
    SyncScenario {
        link: LINKS[0].0,
        branch: "staging",
        stack: "staging-platform",
        period: 90,
        phase: 60,
        fails: Some(|k| k % 3 == 1),
    },
    SyncScenario { link: LINKS[1].0, branch: "main", stack: "prod-network", period: 150, phase: 40, fails: Some(|k| k % 4 == 2) },
    SyncScenario { link: LINKS[1].0, branch: "release/2026-11", stack: "release-network", period: 150, phase: 0, fails: None },
    SyncScenario { link: LINKS[2].0, branch: "main", stack: "observability", period: 100, phase: 25, fails: Some(|_| true) },
];

/// The GitHub Enterprise Server host of the demo, always AVAILABLE.
const HOST_ARN: &str = "arn:aws:codeconnections:us-east-1:111122223333:host/ghes-4a1b2c3d";

/// Connections: ID, name, provider, and the host it uses.
const CONNECTIONS: &[(&str, &str, &str, Option<&str>)] = &[
    ("c0a1b2c3-0000-4000-8000-00000000c001", "acme-github", "GitHub", None),
    ("c0a1b2c3-0000-4000-8000-00000000c002", "acme-gitlab-new", "GitLab", None),
    ("c0a1b2c3-0000-4000-8000-00000000c003", "acme-ghes", "GitHubEnterpriseServer", Some(HOST_ARN)),
];

/// The connection whose app loses access now and then: ERROR for the first 90 s of every 6 minutes.
fn flaky_connection_status(now: f64) -> &'static str {
    if (now as u64) % 360 < 90 { "ERROR" } else { "AVAILABLE" }
}

/// The stack that gets blocked: it has been blocked since 12 minutes before the demo started (its
/// sync fails on every attempt), the blocker is resolved 5 minutes in, and from then on a new one
/// stays ACTIVE for 3 minutes of every 10. A second blocker, created 40 seconds before the demo
/// started, is resolved a minute in.
const BLOCKED_STACK: &str = "observability";
const FIRST_BLOCKER_AGE: f64 = 720.0;
const FIRST_BLOCKER_RESOLVED: f64 = 300.0;
const SHORT_BLOCKER_AGE: f64 = 40.0;
const SHORT_BLOCKER_RESOLVED: f64 = 60.0;
const BLOCKER_PERIOD: f64 = 600.0;
const BLOCKER_ACTIVE: f64 = 180.0;

/// Seconds an attempt spends INITIATED, then IN_PROGRESS, before it ends.
const SYNC_INITIATED: f64 = 5.0;
const SYNC_RUNNING: f64 = 30.0;

/// The demo account at `now` (seconds since the epoch).
pub fn world(now: f64) -> World {
    let mut world = World { page_size: 4, ..World::default() };
    for (id, provider, owner, repository) in LINKS {
        world.repository_links.insert((*id).into(), SimRepositoryLink::new(id, provider, owner, repository));
    }
    for sync in SYNCS {
        world.sync_configurations.push(SimSyncConfiguration {
            repository_link_id: sync.link.into(),
            branch: sync.branch.into(),
            sync_type: "CFN_STACK_SYNC".into(),
            resource_name: sync.stack.into(),
            config_file: Some("deployment.yaml".into()),
        });
    }
    advance_syncs(&mut world, now, now);
    world.hosts.insert(
        HOST_ARN.into(),
        SimHost {
            arn: HOST_ARN.into(),
            name: "ghes".into(),
            provider_type: "GitHubEnterpriseServer".into(),
            provider_endpoint: "https://github.acme.example".into(),
            status: "AVAILABLE".into(),
        },
    );
    for (id, name, provider, host) in CONNECTIONS {
        let mut connection = SimConnection::new(id, name, provider, "AVAILABLE");
        connection.host_arn = host.map(str::to_string);
        world.connections.insert(connection.arn.clone(), connection);
    }
    advance_connections(&mut world, now, now);
    // A pipeline behind a permissions boundary: listed, never readable, so the exporter's health
    // dashboard and alerts have a target that is down and an error code to show.
    let mut restricted = SimPipeline::new("audit-restricted", &[("Source", &["Source"])]);
    restricted.denied = true;
    world.pipelines.insert(restricted.name.clone(), restricted);
    for (index, scenario) in SCENARIOS.iter().enumerate() {
        let names: Vec<(&str, Vec<&str>)> = scenario.stages.iter().map(|(s, a)| (*s, a.iter().map(|a| a.0).collect())).collect();
        let stages: Vec<(&str, &[&str])> = names.iter().map(|(s, a)| (*s, a.as_slice())).collect();
        let mut pipeline = SimPipeline::new(scenario.name, &stages);
        pipeline.pipeline_type = scenario.pipeline_type.into();
        pipeline.execution_mode = scenario.execution_mode.into();
        pipeline.created = 1_690_000_000.0 + 86_400.0 * index as f64;
        pipeline.updated = pipeline.created + 3_600.0;
        pipeline.version = 3 + index as i32;
        if let Some(stage) = scenario.disabled_before {
            pipeline.stages[stage].transition = Some((false, now - 3_600.0));
        }
        for action in pipeline.stages.iter_mut().flat_map(|stage| stage.actions.iter_mut()) {
            action.type_id = Some(action_type(&action.name));
        }
        // Owners by tag, as large organizations route alerts; the demo exports `team`.
        let team = if scenario.name.starts_with("mobile") { "mobile" } else { "platform" };
        pipeline.tags = vec![("team".into(), team.into()), ("cost-center".into(), format!("cc-{index}"))];
        // The batch pipeline runs on a schedule and has not seen a commit in 30 days.
        if scenario.name == "legacy-batch" {
            pipeline.polling_disabled_at = Some(now - 3.0 * 86_400.0);
        }
        advance(&mut pipeline, &mut world.builds, index, scenario, now);
        world.pipelines.insert(pipeline.name.clone(), pipeline);
    }
    let mut release = SimPipeline::new(
        GATED,
        &[
            ("Source", &["Source"]),
            ("Build", &["Build"]),
            ("Approve", &["ReleaseManager"]),
            ("Canary", &["DeployCanary"]),
            ("Prod", &["DeployProduction"]),
        ],
    );
    release.version = 12;
    for action in release.stages.iter_mut().flat_map(|stage| stage.actions.iter_mut()) {
        action.type_id = Some(action_type(&action.name));
    }
    world.pipelines.insert(release.name.clone(), release);
    advance_gates(&mut world, now, now);
    let mut storefront = SimPipeline::new(ROLLED_BACK, ROLLED_BACK_STAGES);
    storefront.execution_mode = "SUPERSEDED".into();
    storefront.version = 7;
    for action in storefront.stages.iter_mut().flat_map(|stage| stage.actions.iter_mut()) {
        action.type_id = Some(action_type(&action.name));
    }
    storefront.tags = vec![("team".into(), "platform".into())];
    world.pipelines.insert(storefront.name.clone(), storefront);
    advance_rollbacks(&mut world, now, now);
    let mut train = SimPipeline::new(TRAIN, TRAIN_STAGES);
    train.version = 4;
    for action in train.stages.iter_mut().flat_map(|stage| stage.actions.iter_mut()) {
        action.type_id = Some(action_type(&action.name));
    }
    train.tags = vec![("team".into(), "platform".into())];
    world.pipelines.insert(train.name.clone(), train);
    advance_queue(&mut world, now, now);
    world
}

/// The type of a demo action, from its name: what GetPipeline reports.
fn action_type(action: &str) -> (String, String, String) {
    let (category, provider) = match action {
        "Source" => ("Source", "CodeStarSourceConnection"),
        "ManualApproval" | "ReleaseManager" => ("Approval", "Manual"),
        name if name.starts_with("Deploy") => ("Deploy", "CloudFormation"),
        _ => ("Build", "CodeBuild"),
    };
    (category.into(), "AWS".into(), provider.into())
}

/// The V2 pipeline whose gates the demo shows: a release waiting for its manager's approval for
/// more than a day, a canary rolled back and production blocked by a CloudWatch alarm rule
/// (BeforeEntry), for the first three minutes of every ten from the demo's start; then the alarm
/// clears, production deploys, retrying once automatically, and the canary deploys normally.
const GATED: &str = "mobile-release";

fn advance_gates(world: &mut World, now: f64, started: f64) {
    let Some(pipeline) = world.pipelines.get_mut(GATED) else { return };
    let phase = (now - started).rem_euclid(600.0);
    let run = ((now - started) / 600.0).floor() as u64;
    let blocked = phase < 180.0;
    // Pipeline execution IDs are UUIDs, as the model's pattern has them: one for each stage of
    // each ten minutes, and one for the run waiting for approval since before the demo started.
    let id = |n: u64| format!("{:08x}-5a1e-4c0d-8e00-{n:012x}", 0x5000_0000_u32);
    let waiting = 0xffff_ffff;
    let execution = |stage: u64| (id(run * 8 + stage), "Succeeded".to_string());
    for (s, stage) in pipeline.stages[..2].iter_mut().enumerate() {
        stage.latest = Some(execution(s as u64));
        stage.latest_type = Some("STANDARD".into());
        if let Some(action) = stage.actions.first_mut() {
            action.latest = Some(SimActionExecution {
                id: format!("{:08x}-ac7e-4b00-9000-{run:012x}", 0x5000_0000 + s),
                status: "Succeeded".into(),
                last_status_change: started + 600.0 * run as f64,
                ..SimActionExecution::default()
            });
        }
    }
    let approve = &mut pipeline.stages[2];
    approve.latest = Some((id(waiting), "InProgress".into()));
    approve.actions[0].latest = Some(SimActionExecution {
        id: format!("{:08x}-ac7e-4b00-9000-{waiting:012x}", 0x5000_0002_u32),
        status: "InProgress".into(),
        last_status_change: started - 26.0 * 3_600.0,
        ..SimActionExecution::default()
    });
    let canary = &mut pipeline.stages[3];
    canary.latest = Some(execution(3));
    canary.latest_type = Some(if blocked { "ROLLBACK" } else { "STANDARD" }.into());
    let prod = &mut pipeline.stages[4];
    prod.conditions = vec![SimCondition {
        condition_type: "BeforeEntry".into(),
        status: Some(if blocked { "Failed" } else { "Succeeded" }.into()),
        rules: vec![
            ("AlarmQuiet".into(), if blocked { "Failed" } else { "Succeeded" }.into()),
            ("DeployWindow".into(), "Succeeded".into()),
        ],
    }];
    prod.latest = Some((id(run * 8 + 4), if phase < 240.0 { "InProgress" } else { "Succeeded" }.into()));
    prod.latest_type = Some("STANDARD".into());
    prod.retries = Some((i32::from(!blocked), 0));
}

/// The V2 pipeline that rolls back: in every minute from the demo's start, a run deploys, the next
/// fails in its Deploy stage, and the stage rolls back automatically to the run before, so that a
/// newcomer sees a deployment, a failed deployment and its recovery in the first 50 s, and whoever
/// starts looking later sees the next within a minute.
const ROLLED_BACK: &str = "storefront-api";
const ROLLED_BACK_STAGES: &[(&str, &[&str])] =
    &[("Source", &["Source"]), ("Build", &["Build"]), ("Deploy", &["DeployProduction"])];
const ROLLBACK_CYCLE: f64 = 60.0;
/// Cycles of the history before the demo started.
const ROLLBACK_HISTORY: i64 = 4;

/// One run of the rolling-back pipeline: its ID, its rollback target, and its actions as (stage,
/// start, end, failed), in seconds from the cycle's start.
struct CycleRun {
    id: String,
    target: Option<String>,
    actions: Vec<(usize, f64, f64, bool)>,
}

/// The three runs of cycle `c`: the deployment, the failed one, and the rollback to the first.
fn cycle_runs(c: i64) -> [CycleRun; 3] {
    let id = |j: i64| format!("{:08x}-5a1e-4c0d-8e00-{:012x}", 0x3000_0000_u32, (c + 1_000) * 3 + j);
    [
        CycleRun { id: id(0), target: None, actions: vec![(0, 1.0, 4.0, false), (1, 4.0, 12.0, false), (2, 12.0, 20.0, false)] },
        CycleRun {
            id: id(1),
            target: None,
            actions: vec![(0, 22.0, 25.0, false), (1, 25.0, 33.0, false), (2, 33.0, 40.0, true)],
        },
        CycleRun { id: id(2), target: Some(id(0)), actions: vec![(2, 41.0, 50.0, false)] },
    ]
}

/// Sets the rolling-back pipeline's history, stages and action executions at `now`, from the time
/// the demo `started`.
fn advance_rollbacks(world: &mut World, now: f64, started: f64) {
    let World { pipelines, builds, .. } = world;
    let Some(pipeline) = pipelines.get_mut(ROLLED_BACK) else { return };
    let current = ((now - started) / ROLLBACK_CYCLE).floor() as i64;
    let mut executions = Vec::new();
    // Oldest first, so that each stage ends up showing its newest run.
    for c in current - ROLLBACK_HISTORY..=current {
        let base = started + ROLLBACK_CYCLE * c as f64;
        for run in cycle_runs(c) {
            let start = base + run.actions[0].1;
            if start > now {
                continue;
            }
            let (_, _, end, failed) = run.actions[run.actions.len() - 1];
            let end = base + end;
            let status = match (now >= end, failed) {
                (false, _) => "InProgress",
                (true, false) => "Succeeded",
                (true, true) => "Failed",
            };
            let mut execution = match &run.target {
                // A rollback redeploys its target's revisions, pushed before that run started.
                Some(target) => SimExecution::rollback(&run.id, status, start, end.min(now), target),
                None => SimExecution::new(&run.id, status, start, end.min(now)),
            };
            if run.target.is_some() {
                execution.revisions_created = vec![base + 1.0 - 120.0];
            } else {
                execution.revisions_created = vec![start - 120.0];
            }
            for (n, (stage, from, to, failed)) in run.actions.iter().enumerate() {
                let (from, to) = (base + from, base + to);
                if from > now {
                    continue;
                }
                let (stage_name, actions) = ROLLED_BACK_STAGES[*stage];
                let status = match (now >= to, failed) {
                    (false, _) => "InProgress",
                    (true, false) => "Succeeded",
                    (true, true) => "Failed",
                };
                let mut action = SimActionRun::new(stage_name, actions[0], &format!("{}-{n}", run.id), status, from, to.min(now));
                action.type_id = action_type(actions[0]);
                if action.type_id.2 == "CodeBuild" {
                    let id = format!("{ROLLED_BACK}-build:{}", run.id);
                    let phases = build_phases(from, to, now, queued_share(c.unsigned_abs()), *failed);
                    builds.insert(id.clone(), SimBuild { id: id.clone(), phases });
                    action.external_id = Some(id);
                }
                action.error_code = (status == "Failed").then(|| "JobFailed".to_string());
                execution.actions.insert(0, action);
                // What GetPipelineState shows: the stage's newest run.
                let stage = &mut pipeline.stages[*stage];
                stage.latest = Some((run.id.clone(), status.to_string()));
                stage.latest_type = Some(if run.target.is_some() { "ROLLBACK" } else { "STANDARD" }.into());
                stage.actions[0].latest = Some(SimActionExecution {
                    id: format!("{}-{n}", run.id),
                    status: status.into(),
                    last_status_change: if now >= to { to } else { from },
                    error: (status == "Failed")
                        .then(|| ("JobFailed".to_string(), "Stack storefront-api failed to update".to_string())),
                    ..SimActionExecution::default()
                });
            }
            executions.push(execution);
        }
    }
    // ListPipelineExecutions pages newest first.
    executions.reverse();
    pipeline.executions = executions;
}

/// The QUEUED pipeline whose runs wait, in every cycle of 50 s from 20 s after the demo's start.
/// Three runs start 4 s apart and queue in front of the Build stage, which takes one at a time
/// (two are queued from 10 s to 14 s into the cycle, one until 26 s); each build waits for
/// capacity in its QUEUED and PROVISIONING phases; each release waits 5 to 8 s for its manual
/// approval; and the Prod stage's BeforeEntry condition holds each run for 3.5 s while its rules
/// check an alarm and the deployment window. The runs end 29, 43 and 52 s into their cycle (the
/// last in the next cycle's first seconds): the demo's first run ends 49 s in, and its first
/// queued one 63 s in.
const TRAIN: &str = "release-train";
const TRAIN_STAGES: &[(&str, &[&str])] =
    &[("Source", &["Source"]), ("Build", &["Build"]), ("Approve", &["ManualApproval"]), ("Prod", &["DeployProduction"])];
const QUEUE_CYCLE: f64 = 50.0;
/// Seconds after the demo's start at which its first cycle starts, the cycles before it (the
/// history) having ended 3 s before the start: the pipeline stands still while the exporter's first
/// round of polls runs, rather than sending events that would each cost a poll from the request
/// budget that round needs.
const QUEUE_DELAY: f64 = 20.0;
const QUEUE_HISTORY_END: f64 = 3.0;
/// Cycles of the history before the demo started.
const QUEUE_HISTORY: i64 = 4;
/// Runs a cycle starts, and the seconds between their starts.
const QUEUE_RUNS: usize = 3;
const QUEUE_SPACING: f64 = 4.0;
/// The stage whose BeforeEntry condition gates every run, and its rules with how long each takes
/// to pass; they start half a second after the run enters the stage, and its action half a second
/// after the longest ends.
const QUEUE_GATED: usize = 3;
const GATE_RULES: &[(&str, f64)] = &[("AlarmQuiet", 3.0), ("DeployWindow", 1.0)];
const GATE_DELAY: f64 = 0.5;

/// How long each stage's one action takes in run `j` of a cycle: the approvals differ.
fn queued_durations(j: usize) -> [f64; 4] {
    [2.0, 12.0, [6.0, 8.0, 5.0][j % 3], 5.0]
}

/// One stage of one run of the queued pipeline, in seconds from its cycle's start: when the run
/// is ready for it (its previous stage ended), when it enters it (the run before left it), and
/// when its action starts and ends.
#[derive(Debug, Clone, Copy, Default)]
struct StageSpan {
    ready: f64,
    entered: f64,
    start: f64,
    end: f64,
}

/// The runs of a cycle, each as its stages, one stage taking one run at a time.
fn queued_runs() -> Vec<[StageSpan; 4]> {
    let gate = GATE_DELAY + GATE_RULES.iter().map(|(_, d)| *d).fold(0.0, f64::max) + GATE_DELAY;
    let mut free = [f64::NEG_INFINITY; 4];
    (0..QUEUE_RUNS)
        .map(|j| {
            let mut ready = QUEUE_SPACING * j as f64;
            let mut stages = [StageSpan::default(); 4];
            for (s, duration) in queued_durations(j).into_iter().enumerate() {
                let entered = ready.max(free[s]);
                let start = if s == QUEUE_GATED { entered + gate } else { entered };
                stages[s] = StageSpan { ready, entered, start, end: start + duration };
                free[s] = start + duration;
                ready = start + duration;
            }
            stages
        })
        .collect()
}

/// Sets the queued pipeline's history, stages, gate and builds at `now`, from the time the demo
/// `started`.
fn advance_queue(world: &mut World, now: f64, started: f64) {
    let World { pipelines, builds, .. } = world;
    let Some(pipeline) = pipelines.get_mut(TRAIN) else { return };
    let plan = queued_runs();
    let first = started + QUEUE_DELAY;
    let current = ((now - first) / QUEUE_CYCLE).floor().max(-1.0) as i64;
    // The last run of a cycle ends this long after the cycle's start.
    let length = plan.iter().map(|stages| stages[3].end).fold(0.0, f64::max);
    // Every run that started, oldest first: its number, and its stages in absolute time.
    let mut runs: Vec<(u64, [StageSpan; 4])> = Vec::new();
    for c in current - QUEUE_HISTORY..=current {
        let base = if c >= 0 {
            first + QUEUE_CYCLE * c as f64
        } else {
            started - QUEUE_HISTORY_END - length + QUEUE_CYCLE * (c + 1) as f64
        };
        for (j, stages) in plan.iter().enumerate() {
            let seq = ((c + 1_000) * QUEUE_RUNS as i64 + j as i64) as u64;
            let at = stages.map(|s| StageSpan {
                ready: base + s.ready,
                entered: base + s.entered,
                start: base + s.start,
                end: base + s.end,
            });
            if at[0].start <= now {
                runs.push((seq, at));
            }
        }
    }
    let execution_id = |seq: u64| format!("{:08x}-5a1e-4c0d-8e00-{seq:012x}", 0x4000_0000_u32);
    let action_id = |seq: u64, stage: usize| format!("{:08x}-ac7e-4b00-9000-{seq:012x}", 0x6000_0000 + stage);
    let status = |end: f64| if now < end { "InProgress" } else { "Succeeded" };
    let gate_rules = |seq: u64, entered: f64| {
        GATE_RULES.iter().enumerate().map(move |(r, (rule, duration))| {
            let start = entered + GATE_DELAY;
            (format!("{:08x}-7e1e-4a00-8000-{seq:012x}", 0x7000_0000 + r), *rule, start, start + duration)
        })
    };
    let mut executions = Vec::new();
    for (seq, stages) in &runs {
        let (seq, stages) = (*seq, *stages);
        let start = stages[0].start;
        let end = stages[3].end;
        let mut execution = SimExecution::new(&execution_id(seq), status(end), start, end.min(now));
        execution.revisions_created = vec![start - 60.0];
        for (s, span) in stages.iter().enumerate().filter(|(_, span)| span.start <= now) {
            let (stage, actions) = TRAIN_STAGES[s];
            let mut action =
                SimActionRun::new(stage, actions[0], &action_id(seq, s), status(span.end), span.start, span.end.min(now));
            action.type_id = action_type(actions[0]);
            if action.type_id.2 == "CodeBuild" {
                let id = format!("{TRAIN}-build:{:08x}-b1d0-4e00-8000-{seq:012x}", 0x6000_0000_u32);
                let phases = build_phases(span.start, span.end, now, queued_share(seq), false);
                builds.insert(id.clone(), SimBuild { id: id.clone(), phases });
                action.external_id = Some(id);
            }
            execution.actions.insert(0, action);
        }
        let gated = stages[QUEUE_GATED];
        for (id, rule, from, to) in gate_rules(seq, gated.entered).filter(|(_, _, from, _)| *from <= now) {
            execution.rules.insert(
                0,
                SimRuleRun {
                    stage: TRAIN_STAGES[QUEUE_GATED].0.into(),
                    rule: rule.into(),
                    id,
                    status: status(to).into(),
                    start: from,
                    last_update: to.min(now),
                },
            );
        }
        executions.push(execution);
    }
    // What GetPipelineState shows of each stage: the newest run in it, and those queued in front.
    for (s, stage) in pipeline.stages.iter_mut().enumerate() {
        let entered = runs.iter().rev().find(|(_, at)| at[s].entered <= now);
        stage.latest = entered.map(|(seq, at)| (execution_id(*seq), status(at[s].end).to_string()));
        stage.latest_type = Some("STANDARD".into());
        stage.inbound_executions = runs
            .iter()
            .filter(|(_, at)| at[s].ready <= now && now < at[s].entered)
            .map(|(seq, _)| (execution_id(*seq), "InProgress".to_string()))
            .collect();
        stage.inbound = stage.inbound_executions.first().cloned();
        if let Some((seq, at)) = runs.iter().rev().find(|(_, at)| at[s].start <= now) {
            let span = at[s];
            let action = &mut stage.actions[0];
            action.latest = Some(SimActionExecution {
                id: action_id(*seq, s),
                status: status(span.end).into(),
                last_status_change: if now < span.end { span.start } else { span.end },
                ..SimActionExecution::default()
            });
            if s == 0 {
                action.revision = Some((format!("{seq:040x}"), span.start - 60.0));
            }
        }
    }
    // The gate's state: the rules of the newest run they started for.
    let evaluated = runs.iter().rev().find(|(_, at)| at[QUEUE_GATED].entered + GATE_DELAY <= now);
    let rules: Vec<(String, String)> = match evaluated {
        Some((seq, at)) => {
            gate_rules(*seq, at[QUEUE_GATED].entered).map(|(_, rule, _, to)| (rule.into(), status(to).into())).collect()
        }
        None => GATE_RULES.iter().map(|(rule, _)| ((*rule).into(), "Succeeded".into())).collect(),
    };
    let evaluating = rules.iter().any(|(_, status)| status == "InProgress");
    pipeline.stages[QUEUE_GATED].conditions = vec![SimCondition {
        condition_type: "BeforeEntry".into(),
        status: Some(if evaluating { "InProgress" } else { "Succeeded" }.into()),
        rules,
    }];
    // ListPipelineExecutions pages newest first.
    executions.reverse();
    pipeline.executions = executions;
}

/// Moves the demo's pipelines along with the clock, once a second, for as long as it runs.
/// `started` is when the demo started, which the sync blockers follow.
pub async fn run(simulator: Simulator, started: f64) {
    let mut interval = tokio::time::interval(Duration::from_secs(1));
    loop {
        interval.tick().await;
        tick(&mut simulator.world(), unix_now(), started);
    }
}

/// Sets the demo account to what it is at `now`, the demo having `started` then, as its loop does
/// once a second: the conformance test walks the loop with a clock of its own.
pub fn advance_to(world: &mut World, now: f64, started: f64) {
    tick(world, now, started);
}

/// Sets the demo account to what it is at `now`, the demo having `started` then. The builds are
/// made anew, each pipeline adding those of the runs it remembers, so that none outlives its run.
fn tick(world: &mut World, now: f64, started: f64) {
    world.builds.clear();
    let World { pipelines, builds, .. } = world;
    for (index, scenario) in SCENARIOS.iter().enumerate() {
        if let Some(pipeline) = pipelines.get_mut(scenario.name) {
            advance(pipeline, builds, index, scenario, now);
        }
    }
    advance_syncs(world, now, started);
    advance_connections(world, now, started);
    advance_gates(world, now, started);
    advance_rollbacks(world, now, started);
    advance_queue(world, now, started);
}

/// Sets the second connection PENDING (its handshake was never completed), the third's status from
/// the clock, and the blocked stack's blockers from the time since the demo `started`.
fn advance_connections(world: &mut World, now: f64, started: f64) {
    let statuses = ["AVAILABLE", "PENDING", flaky_connection_status(now)];
    for ((id, ..), status) in CONNECTIONS.iter().zip(statuses) {
        if let Some(connection) =
            world.connections.get_mut(&format!("arn:aws:codeconnections:us-east-1:111122223333:connection/{id}"))
        {
            connection.status = status.into();
        }
    }
    let blocker = |id: String, created_at: f64, resolved_at: f64| SimSyncBlocker {
        id,
        status: if now < resolved_at { "ACTIVE" } else { "RESOLVED" }.into(),
        created_at,
        created_reason: "Sync failed repeatedly: stack observability is in UPDATE_ROLLBACK_FAILED".into(),
        resolved_at: (now >= resolved_at).then_some(resolved_at),
    };
    let mut blockers = vec![
        blocker("blocker-short".into(), started - SHORT_BLOCKER_AGE, started + SHORT_BLOCKER_RESOLVED),
        blocker("blocker-0".into(), started - FIRST_BLOCKER_AGE, started + FIRST_BLOCKER_RESOLVED),
    ];
    let since = now - started - FIRST_BLOCKER_RESOLVED;
    if since >= BLOCKER_PERIOD - BLOCKER_ACTIVE {
        // Blocker n is created at the end of period n and stays ACTIVE for BLOCKER_ACTIVE.
        let n = ((since + BLOCKER_ACTIVE) / BLOCKER_PERIOD) as u64;
        let created = started + FIRST_BLOCKER_RESOLVED + n as f64 * BLOCKER_PERIOD - BLOCKER_ACTIVE;
        blockers.insert(0, blocker(format!("blocker-{n}"), created, created + BLOCKER_ACTIVE));
    }
    world.sync_blockers.insert((BLOCKED_STACK.into(), "CFN_STACK_SYNC".into()), blockers);
}

pub fn unix_now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

/// The demo's clock starts at a fixed point of the day so that runs are numbered consistently
/// across restarts of the demo.
fn run_at(scenario: &Scenario, now: f64) -> (u64, f64) {
    let since = (now as u64).saturating_sub(scenario.offset);
    let k = since / scenario.period;
    let started = (k * scenario.period + scenario.offset) as f64;
    (k, started)
}

/// Sets every stage and action of `pipeline` to what run `k - 1` left and run `k` has done so far,
/// and adds the builds of its remembered runs to `builds`.
fn advance(pipeline: &mut SimPipeline, builds: &mut BTreeMap<String, SimBuild>, index: usize, scenario: &Scenario, now: f64) {
    let (k, started) = run_at(scenario, now);
    if k > 0 {
        apply_run(pipeline, index, scenario, k - 1, started - scenario.period as f64, f64::INFINITY);
    }
    apply_run(pipeline, index, scenario, k, started, now - started);
    pipeline.executions = (k.saturating_sub(HISTORY - 1)..=k)
        .rev()
        .map(|j| {
            let start = started - ((k - j) * scenario.period) as f64;
            let elapsed = now - start;
            let (status, last_update) = match (scenario.disabled_before, run_end(scenario, j)) {
                // Runs wait at the disabled transition until the next run supersedes them; until then
                // their last update is their last action's.
                (Some(_), _) if j < k => ("Superseded", start + scenario.period as f64),
                (Some(_), (_, end)) => ("InProgress", start + end.min(elapsed)),
                (None, (_, end)) if elapsed < end => ("InProgress", now),
                (None, (failed, end)) => (if failed { "Failed" } else { "Succeeded" }, start + end),
            };
            // The commit it deploys was pushed a few minutes before the run started.
            SimExecution {
                id: execution_id(index, j),
                status: status.into(),
                start,
                last_update,
                trigger_type: scenario.trigger.into(),
                rollback_target: None,
                revisions_created: vec![start - 120.0 - 60.0 * (j % 5) as f64],
                actions: action_runs(scenario, index, j, start, now, builds),
                rules: Vec::new(),
            }
        })
        .collect();
}

/// Runs the demo keeps in each pipeline's execution history.
const HISTORY: u64 = 20;

/// One attempt of an action in a run: which action, which attempt (0 for the first), when it
/// starts and how long it takes, in seconds from the run's start, and whether it fails.
struct Attempt {
    stage: usize,
    action: usize,
    attempt: u64,
    offset: f64,
    duration: f64,
    failed: bool,
}

/// Every action attempt of run `k`, in the order they run: the actions of a stage one after the
/// other, a retried action's failed attempt followed by its second, and nothing after a failure
/// or in front of a disabled transition.
fn timeline(scenario: &Scenario, k: u64) -> Vec<Attempt> {
    let (failure, retry) = ((scenario.fails)(k), (scenario.retried)(k));
    let mut attempts = Vec::new();
    let mut clock = 0.0;
    for (stage, (_, actions)) in scenario.stages.iter().enumerate() {
        if scenario.disabled_before == Some(stage) {
            break;
        }
        for (action, (_, duration, _)) in actions.iter().enumerate() {
            let duration = *duration as f64;
            if retry == Some((stage, action)) {
                attempts.push(Attempt { stage, action, attempt: 0, offset: clock, duration: duration / 3.0, failed: true });
                clock += duration / 3.0;
            }
            let failed = failure == Some((stage, action));
            let attempt = u64::from(retry == Some((stage, action)));
            attempts.push(Attempt { stage, action, attempt, offset: clock, duration, failed });
            clock += duration;
            if failed {
                return attempts;
            }
        }
    }
    attempts
}

/// Whether run `k` fails, and how many seconds after its start it ends.
fn run_end(scenario: &Scenario, k: u64) -> (bool, f64) {
    let attempts = timeline(scenario, k);
    let failed = (scenario.fails)(k).is_some_and(|(s, a)| attempts.iter().any(|t| t.stage == s && t.action == a));
    (failed, attempts.last().map_or(0.0, |t| t.offset + t.duration))
}

fn execution_id(index: usize, k: u64) -> String {
    format!("{:08x}-5a1e-4c0d-8e00-{:012x}", 0x1000_0000 + index as u64, k)
}

/// The number of an attempt of the pipeline `index`, unique among its attempts of one run.
fn attempt_number(index: usize, attempt: &Attempt) -> u64 {
    (index * 1000 + attempt.stage * 100 + attempt.action * 10) as u64 + attempt.attempt
}

fn action_execution_id(index: usize, attempt: &Attempt, k: u64) -> String {
    format!("{:08x}-ac7e-4b00-9000-{k:012x}", 0x2000_0000 + attempt_number(index, attempt))
}

/// The ID of the build an attempt of a CodeBuild action ran in run `k`: its project, named after
/// the pipeline and the action, and a UUID.
fn build_id(pipeline: &str, action: &str, index: usize, attempt: &Attempt, k: u64) -> String {
    format!("{pipeline}-{}:{:08x}-b1d0-4e00-8000-{k:012x}", action.to_lowercase(), 0x4000_0000 + attempt_number(index, attempt))
}

/// The share of its span a build of run `k` waits in the queue for capacity: from 12 % to 33 %,
/// so that the waits spread over a histogram's buckets.
fn queued_share(k: u64) -> f64 {
    0.12 + 0.07 * (k % 4) as f64
}

/// The share of its span after which a build is COMPLETED: the action that ran it ends a moment
/// later, when CodePipeline sees the build's end.
const BUILD_COMPLETED: f64 = 0.96;

/// The phases of a CodeBuild build that an action ran from `start` to `end`, as BatchGetBuilds
/// gives them at `now`: those that started, one after the other, each a share of the span, the
/// one in progress without status or end, and COMPLETED once the build ended. It waits for
/// capacity `queued` of the span (QUEUED, at most a third), then provisions a fifth of it
/// (PROVISIONING); a failed build fails its BUILD phase and still runs the phases after it, as
/// CodeBuild does.
fn build_phases(start: f64, end: f64, now: f64, queued: f64, failed: bool) -> Vec<SimPhase> {
    let span = end - start;
    let shares = [
        ("SUBMITTED", 0.02),
        ("QUEUED", queued),
        ("PROVISIONING", 0.2),
        ("DOWNLOAD_SOURCE", 0.04),
        ("INSTALL", 0.06),
        ("PRE_BUILD", 0.04),
        ("BUILD", BUILD_COMPLETED - 0.45 - queued),
        ("POST_BUILD", 0.04),
        ("UPLOAD_ARTIFACTS", 0.03),
        ("FINALIZING", 0.02),
    ];
    let mut phases = Vec::new();
    let mut at = start;
    for (phase, share) in shares {
        if at > now {
            return phases;
        }
        let to = at + share * span;
        let ended = now >= to;
        phases.push(SimPhase {
            phase_type: phase.into(),
            status: ended.then(|| if failed && phase == "BUILD" { "FAILED" } else { "SUCCEEDED" }.into()),
            start: at,
            end: ended.then_some(to),
        });
        at = to;
    }
    if at <= now {
        phases.push(SimPhase { phase_type: "COMPLETED".into(), status: None, start: at, end: None });
    }
    phases
}

/// The action executions of run `k`, started at `started`, as ListActionExecutions gives them
/// at `now`: those that started, newest first. Each CodeBuild action names its build, which is
/// added to `builds`.
fn action_runs(
    scenario: &Scenario,
    index: usize,
    k: u64,
    started: f64,
    now: f64,
    builds: &mut BTreeMap<String, SimBuild>,
) -> Vec<SimActionRun> {
    let mut runs: Vec<SimActionRun> = timeline(scenario, k)
        .iter()
        .filter(|t| started + t.offset <= now)
        .map(|t| {
            let (stage, actions) = scenario.stages[t.stage];
            let name = actions[t.action].0;
            let (start, end) = (started + t.offset, started + t.offset + t.duration);
            let finished = now >= end;
            let type_id = action_type(name);
            let external_id = (type_id.2 == "CodeBuild").then(|| {
                let id = build_id(scenario.name, name, index, t, k);
                let phases = build_phases(start, end, now, queued_share(k + t.attempt), t.failed);
                builds.insert(id.clone(), SimBuild { id: id.clone(), phases });
                id
            });
            SimActionRun {
                stage: stage.into(),
                action: name.into(),
                id: action_execution_id(index, t, k),
                status: match (finished, t.failed) {
                    (false, _) => "InProgress",
                    (true, false) => "Succeeded",
                    (true, true) => "Failed",
                }
                .into(),
                start,
                last_update: if finished { end } else { now },
                type_id,
                error_code: (finished && t.failed).then(|| "JobFailed".to_string()),
                external_id,
            }
        })
        .collect();
    runs.reverse();
    runs
}

fn apply_run(pipeline: &mut SimPipeline, index: usize, scenario: &Scenario, k: u64, started: f64, elapsed: f64) {
    let id = execution_id(index, k);
    let attempts = timeline(scenario, k);
    if let Some(stage) = scenario.disabled_before
        && attempts.last().is_some_and(|t| elapsed >= t.offset + t.duration)
    {
        pipeline.stages[stage].inbound = Some((id.clone(), "InProgress".into()));
    }
    for (i, attempt) in attempts.iter().enumerate() {
        if elapsed < attempt.offset {
            return;
        }
        let stage = &mut pipeline.stages[attempt.stage];
        let first_of_stage = i == 0 || attempts[i - 1].stage != attempt.stage;
        if first_of_stage {
            stage.inbound = None;
            stage.retries = None;
        }
        if attempt.attempt > 0 {
            stage.retries = Some((1, 0));
        }
        stage.latest = Some((id.clone(), "InProgress".into()));
        let (_, actions) = scenario.stages[attempt.stage];
        let reports_percent = actions[attempt.action].2;
        let action = &mut stage.actions[attempt.action];
        let action_started = started + attempt.offset;
        let finished = elapsed >= attempt.offset + attempt.duration;
        if attempt.stage == 0 && attempt.action == 0 {
            action.revision = Some((format!("{:040x}", ((index as u128) << 64) | (u128::from(k) * 0x9e37_79b9)), started));
        }
        action.latest = Some(SimActionExecution {
            id: action_execution_id(index, attempt, k),
            status: match (finished, attempt.failed) {
                (false, _) => "InProgress",
                (true, false) => "Succeeded",
                (true, true) => "Failed",
            }
            .into(),
            summary: Some(format!("Run {k} of {}", scenario.name)),
            last_status_change: if finished { action_started + attempt.duration } else { action_started },
            percent_complete: (reports_percent && !finished)
                .then(|| (((elapsed - attempt.offset) / attempt.duration) * 100.0) as i32),
            error: (finished && attempt.failed)
                .then(|| ("JobFailed".to_string(), format!("Step \"test\" exited with code 1 in run {k}"))),
        });
        let last_of_stage = attempts.get(i + 1).is_none_or(|next| next.stage != attempt.stage);
        if finished && attempt.failed && last_of_stage {
            stage.latest = Some((id, "Failed".into()));
            return;
        }
        if finished && last_of_stage {
            stage.latest = Some((id.clone(), "Succeeded".into()));
        }
    }
}

/// Sets each branch's latest sync attempt and its stack's status from the time since the demo
/// `started`: attempt `k` of a branch is INITIATED, then IN_PROGRESS, then SUCCEEDED or FAILED
/// until attempt `k + 1` starts. Each attempt syncs commit `k`, pushed as it started, so the stack
/// is behind its branch from then until an attempt succeeds.
fn advance_syncs(world: &mut World, now: f64, started: f64) {
    for sync in SYNCS {
        let Some(fails) = sync.fails else { continue };
        let start_of = |j: u64| started - sync.phase as f64 + (j * sync.period) as f64;
        let k = ((now - start_of(0)).max(0.0) / sync.period as f64) as u64;
        let commit = |j: u64| format!("{j:040x}");
        let attempt_started = start_of(k);
        let elapsed = now - attempt_started;
        let failed = fails(k);
        let status = if elapsed < SYNC_INITIATED {
            "INITIATED"
        } else if elapsed < SYNC_INITIATED + SYNC_RUNNING {
            "IN_PROGRESS"
        } else if failed {
            "FAILED"
        } else {
            "SUCCEEDED"
        };
        let mut events = vec![SimSyncEvent {
            time: attempt_started,
            kind: "INFO".into(),
            event: "Fetching changes from the repository".into(),
            external_id: None,
        }];
        if elapsed >= SYNC_INITIATED {
            events.push(SimSyncEvent {
                time: attempt_started + SYNC_INITIATED,
                kind: "INFO".into(),
                event: format!("Updating stack {}", sync.stack),
                external_id: Some(commit(k)),
            });
        }
        if status == "FAILED" {
            events.push(SimSyncEvent {
                time: attempt_started + SYNC_INITIATED + SYNC_RUNNING,
                kind: "ERROR".into(),
                event: format!("Stack {} rolled back: resource creation failed", sync.stack),
                external_id: None,
            });
        } else if status == "SUCCEEDED" {
            events.push(SimSyncEvent {
                time: attempt_started + SYNC_INITIATED + SYNC_RUNNING,
                kind: "INFO".into(),
                event: "Sync succeeded".into(),
                external_id: None,
            });
        }
        let attempt = SimSyncAttempt { started_at: attempt_started, status: status.into(), events };
        // The newest attempt that succeeded among the last few: a stack that always fails has none.
        let succeeded = (k.saturating_sub(8)..=k).rev().find(|&j| !fails(j) && (j < k || status == "SUCCEEDED"));
        world.resource_syncs.insert(
            (sync.stack.into(), "CFN_STACK_SYNC".into()),
            SimResourceSync {
                latest: SimSyncAttempt { events: Vec::new(), ..attempt.clone() },
                latest_successful: succeeded.map(|j| SimSyncAttempt {
                    started_at: start_of(j),
                    status: "SUCCEEDED".into(),
                    events: Vec::new(),
                }),
                sha: commit(k),
                successful_sha: succeeded.filter(|&j| j != k).map(commit),
            },
        );
        world.repository_syncs.insert((sync.link.into(), sync.branch.into(), "CFN_STACK_SYNC".into()), attempt);
    }
}

/// The name of the demo account's events queue, which every event of the account is put on.
pub const QUEUE: &str = "codepipeline-exporter";

/// The URL of the demo account's events queue.
pub fn queue_url() -> String {
    super::queue_url(QUEUE)
}

/// Serves the demo account, ready for the exporter to poll. A few calls are throttled, as AWS does
/// now and then; the SDK's retries absorb them, and the exporter counts them. Its events go to
/// the queue [`QUEUE`].
pub async fn start() -> std::io::Result<Simulator> {
    let started = unix_now();
    let simulator = Simulator::start(world(started)).await?;
    simulator.create_queue(QUEUE, true);
    simulator.chaos(0.03, vec![super::Fault::Throttling]);
    tokio::spawn(run(simulator.clone(), started));
    Ok(simulator)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The demo account at `now`, the demo having `started` then, as its ticks leave it.
    fn at(started: f64, now: f64) -> World {
        let mut world = world(started);
        tick(&mut world, now, started);
        world
    }

    const STARTED: f64 = 1_800_000_007.25;

    /// Every run's timeline holds together at every half second of the first five minutes: its
    /// actions inside its span and its stages in order, its rules inside the gap before their
    /// stage, and each build's phases one after the other inside its action's span.
    #[test]
    fn every_timeline_is_consistent() {
        for half in 0..600 {
            let now = STARTED + half as f64 / 2.0;
            let world = at(STARTED, now);
            for pipeline in world.pipelines.values() {
                let position = |stage: &str| pipeline.stages.iter().position(|s| s.name == stage).unwrap();
                for execution in &pipeline.executions {
                    let context = format!("{} {} at +{}", pipeline.name, execution.id, now - STARTED);
                    assert!(execution.start <= execution.last_update && execution.last_update <= now, "{context}");
                    let mut actions = execution.actions.clone();
                    actions.sort_by(|a, b| a.start.total_cmp(&b.start));
                    for pair in actions.windows(2) {
                        assert!(position(&pair[0].stage) <= position(&pair[1].stage), "{context}: stages out of order");
                        assert!(pair[0].last_update <= pair[1].start, "{context}: {} overlaps {}", pair[0].id, pair[1].id);
                    }
                    for action in &actions {
                        assert!(execution.start <= action.start, "{context}: {} starts before its run", action.id);
                        assert!(action.start <= action.last_update, "{context}: {}", action.id);
                        assert!(action.last_update <= execution.last_update, "{context}: {} ends after its run", action.id);
                        let Some(build) = &action.external_id else {
                            assert_ne!(action.type_id.2, "CodeBuild", "{context}: {} names no build", action.id);
                            continue;
                        };
                        let phases = &world.builds[build].phases;
                        assert_eq!(phases[0].phase_type, "SUBMITTED", "{context}");
                        assert!(action.start <= phases[0].start, "{context}: {build} starts before its action");
                        for pair in phases.windows(2) {
                            assert_eq!(pair[0].end, Some(pair[1].start), "{context}: {build}");
                        }
                        for phase in phases {
                            assert_eq!(phase.end.is_some(), phase.status.is_some(), "{context}: {build}");
                            assert!(
                                phase.end.unwrap_or(phase.start) <= action.last_update,
                                "{context}: {build} ends after its action"
                            );
                        }
                        let last = phases.last().unwrap();
                        if action.status != "InProgress" {
                            assert_eq!((last.phase_type.as_str(), last.end), ("COMPLETED", None), "{context}: {build}");
                            let failed = phases.iter().any(|p| p.status.as_deref() == Some("FAILED"));
                            assert_eq!(failed, action.status == "Failed", "{context}: {build}");
                        }
                    }
                    for rule in &execution.rules {
                        let stage = position(&rule.stage);
                        let before =
                            actions.iter().filter(|a| position(&a.stage) < stage).map(|a| a.last_update).fold(0.0, f64::max);
                        let after =
                            actions.iter().filter(|a| a.stage == rule.stage).map(|a| a.start).fold(f64::INFINITY, f64::min);
                        assert!(before < rule.start && rule.last_update < after, "{context}: {} outside its gap", rule.id);
                        assert!(rule.last_update <= execution.last_update, "{context}: {}", rule.id);
                    }
                }
            }
            let train = &world.pipelines[TRAIN];
            for stage in &train.stages {
                assert!(stage.inbound_executions.len() <= 3, "{stage:?}");
                if let Some((first, _)) = stage.inbound_executions.first() {
                    let (holder, status) = stage.latest.as_ref().unwrap();
                    assert_ne!(holder, first);
                    assert_eq!(status, "InProgress", "{} is held by a run in progress", stage.name);
                }
            }
        }
    }

    /// Every pipeline execution ID the demo serves matches the model's pattern, a lower-case UUID:
    /// in the history, in each stage's latest execution and in those queued in front of it.
    #[test]
    fn every_pipeline_execution_id_is_a_uuid() {
        let uuid = |id: &str| {
            let groups: Vec<&str> = id.split('-').collect();
            groups.iter().map(|g| g.len()).eq([8, 4, 4, 4, 12])
                && groups.iter().all(|g| g.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
        };
        for second in (0..700).step_by(7) {
            let world = at(STARTED, STARTED + second as f64);
            for pipeline in world.pipelines.values() {
                let stages = pipeline.stages.iter();
                let ids = pipeline
                    .executions
                    .iter()
                    .map(|e| &e.id)
                    .chain(stages.clone().filter_map(|s| s.latest.as_ref().map(|l| &l.0)))
                    .chain(stages.clone().filter_map(|s| s.inbound.as_ref().map(|i| &i.0)))
                    .chain(stages.flat_map(|s| s.inbound_executions.iter().map(|i| &i.0)));
                for id in ids {
                    assert!(uuid(id), "{}: {id} at +{second} s", pipeline.name);
                }
            }
        }
    }

    /// Whether a run waited in each way: queued in front of a stage (a gap between two stages that
    /// no rule accounts for), held by a gate (rules in the gap), at an approval open 3 s or more,
    /// and in a build's QUEUED and PROVISIONING phases of 1 s or more each.
    fn waits(world: &World, execution: &SimExecution) -> [bool; 4] {
        let mut actions = execution.actions.clone();
        actions.sort_by(|a, b| a.start.total_cmp(&b.start));
        let queued = actions.windows(2).any(|pair| {
            pair[0].stage != pair[1].stage
                && pair[1].start - pair[0].last_update >= 2.0
                && !execution.rules.iter().any(|r| r.stage == pair[1].stage)
        });
        let gated = !execution.rules.is_empty();
        let approved = actions.iter().any(|a| a.type_id.0 == "Approval" && a.last_update - a.start >= 3.0);
        let built = actions.iter().filter_map(|a| world.builds.get(a.external_id.as_deref()?)).any(|build| {
            let lasted =
                |kind: &str| build.phases.iter().any(|p| p.phase_type == kind && p.end.is_some_and(|end| end - p.start >= 1.0));
            lasted("QUEUED") && lasted("PROVISIONING")
        });
        [queued, gated, approved, built]
    }

    /// From the demo's start and from any later moment, runs that waited in each way end within
    /// 65 s (the train's first queued run ends 63 s after the start, and later ones at most 41 s
    /// apart): a newcomer, or a second Prometheus started later, sees every kind of wait.
    #[test]
    fn every_kind_of_wait_ends_within_65_seconds_of_any_moment() {
        for second in 0..400 {
            let moment = STARTED + second as f64;
            let world = at(STARTED, moment + 65.0);
            let mut seen = [false; 4];
            for execution in world.pipelines.values().flat_map(|p| &p.executions) {
                let ended = execution.status != "InProgress" && execution.last_update > moment;
                for (seen, waited) in seen.iter_mut().zip(waits(&world, execution)) {
                    *seen |= ended && waited;
                }
            }
            assert_eq!(seen, [true; 4], "queue, gate, approval, build after +{second} s");
        }
    }

    /// The train's Build stage holds one run while one or two more queue in front of it, and its
    /// Prod stage's gate is InProgress while its rules run.
    #[test]
    fn the_train_queues_and_gates() {
        let cycle = STARTED + QUEUE_DELAY;
        let queued = |now: f64| at(STARTED, now).pipelines[TRAIN].stages[1].inbound_executions.len();
        assert_eq!(queued(cycle + 7.0), 1);
        assert_eq!(queued(cycle + 12.0), 2);
        assert_eq!(queued(cycle + 20.0), 1);
        assert_eq!(queued(cycle + 30.0), 0);
        let world = at(STARTED, cycle + 22.0);
        let gate = &world.pipelines[TRAIN].stages[QUEUE_GATED];
        assert_eq!(gate.conditions[0].status.as_deref(), Some("InProgress"));
        let rules: Vec<(&str, &str)> = gate.conditions[0].rules.iter().map(|(r, s)| (r.as_str(), s.as_str())).collect();
        assert_eq!(rules, [("AlarmQuiet", "InProgress"), ("DeployWindow", "Succeeded")]);
    }
}
