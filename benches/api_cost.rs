//! AWS calls per pipeline-hour for a mostly idle account of 500 pipelines (25 of them with an
//! execution in progress, each finishing one and starting the next every 15 minutes; each run
//! builds once on CodeBuild, and the Deploy stage of every other active pipeline is gated by a
//! condition, so that its runs' rule executions are read too), with
//! adaptive polling on (idle pipelines every 60 s, active ones every 15 s), off (every pipeline
//! every 15 s, the rate that keeps active ones as fresh), and in events mode (an SQS queue that the
//! simulated EventBridge fills; every pipeline reconciled every 10 minutes). For each, the time
//! from a change of a stage's status to a scrape that shows it.
//!
//! Time is scaled: every interval is divided by 60, so one minute of running is one hour of the
//! exporter's schedule. The calls are counted by the simulated AWS endpoint.
//!
//! Then, at real speed and with the default request budget (5 calls a second), the time until
//! every one of 1,000 pipelines has its state on `/metrics`.
//!
//! Last, AWS calls per empty scope-hour: an organization of 50 member accounts in 2 regions, none
//! with a pipeline, a repository link, a connection or a host, polled and in events mode, time
//! scaled 60:1 as above; the second scaled hour is counted, once every scope's first discovery is
//! behind it.
//!
//!     cargo bench --bench api_cost             # all three
//!     cargo bench --bench api_cost -- cost     # the calls and freshness only
//!     cargo bench --bench api_cost -- startup  # the start-up only
//!     cargo bench --bench api_cost -- empty    # the calls of empty scopes only

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_credential_types::Credentials;
use codepipeline_exporter::aws::Overrides;
use codepipeline_exporter::config::Config;
use codepipeline_exporter::exporter;
use codepipeline_exporter::simulator::{
    self, SimActionExecution, SimActionRun, SimBuild, SimCondition, SimExecution, SimPhase, SimPipeline, SimRuleRun, Simulator,
    World,
};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

const PIPELINES: usize = 500;
const ACTIVE: usize = 25;
/// Real time that stands for one hour.
const HOUR: Duration = Duration::from_secs(60);

fn world() -> World {
    let mut world = World::default();
    for i in 0..PIPELINES {
        let mut pipeline = SimPipeline::new(
            &format!("pipeline-{i:04}"),
            &[("Source", &["Source"]), ("Build", &["Build"]), ("Deploy", &["Deploy"])],
        );
        let status = if i < ACTIVE { "InProgress" } else { "Succeeded" };
        if i < ACTIVE && i % 2 == 0 {
            pipeline.stages[2].conditions = vec![SimCondition {
                condition_type: "BeforeEntry".into(),
                status: Some("Succeeded".into()),
                rules: vec![("Window".into(), "Succeeded".into())],
            }];
        }
        pipeline.stages[1].latest = Some((format!("e-{i}"), status.into()));
        pipeline.executions = vec![SimExecution::new(&format!("e-{i}"), status, 1_700_000_000.0, 1_700_000_100.0)];
        world.pipelines.insert(pipeline.name.clone(), pipeline);
    }
    world
}

/// When each active pipeline's Deploy stage last changed status, and to which: what the
/// freshness measurement waits to see.
type Changes = Arc<Mutex<Vec<Option<(Instant, &'static str)>>>>;

/// Moves the active pipelines' builds along, as running executions do, and every quarter of a
/// scaled hour finishes each one's execution (Succeeded) and starts the next; the finished run's
/// Deploy stage ends Succeeded or Failed in turn, a change the metrics show.
async fn progress(simulator: Simulator, changes: Changes) {
    let mut tick: u64 = 0;
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        tick += 1;
        let percent = (tick % 100) as i32;
        let finish = tick.is_multiple_of(HOUR.as_millis() as u64 / 100 / 4);
        let now = 1_700_000_000.0 + tick as f64;
        let mut world = simulator.world();
        let mut builds = Vec::new();
        for i in 0..ACTIVE {
            if let Some(pipeline) = world.pipelines.get_mut(&format!("pipeline-{i:04}")) {
                if finish {
                    let run = tick / (HOUR.as_millis() as u64 / 100 / 4);
                    if let Some(current) = pipeline.executions.first_mut() {
                        current.status = "Succeeded".into();
                        current.last_update = now;
                        // One execution of each action, which run anatomy reads once; the build's
                        // phases come from CodeBuild, and a gated Deploy stage's rule execution
                        // from ListRuleExecutions.
                        current.actions = ["Source", "Build", "Deploy"]
                            .iter()
                            .map(|stage| {
                                let mut action = SimActionRun::new(
                                    stage,
                                    stage,
                                    &format!("{}-{stage}", current.id),
                                    "Succeeded",
                                    current.start,
                                    now,
                                );
                                if *stage == "Build" {
                                    action.external_id = Some(format!("build-{i}:{}", current.id));
                                }
                                action
                            })
                            .collect();
                        let build = format!("build-{i}:{}", current.id);
                        let phase = |phase_type: &str, start: f64, end: f64| SimPhase {
                            phase_type: phase_type.into(),
                            status: Some("SUCCEEDED".into()),
                            start,
                            end: Some(end),
                        };
                        let phases = vec![phase("QUEUED", current.start, current.start), phase("BUILD", current.start, now)];
                        if !pipeline.stages[2].conditions.is_empty() {
                            current.rules = vec![SimRuleRun {
                                stage: "Deploy".into(),
                                rule: "Window".into(),
                                id: format!("{}-rule", current.id),
                                status: "Succeeded".into(),
                                start: current.start,
                                last_update: current.start,
                            }];
                        }
                        builds.push(SimBuild { id: build, phases });
                        let deploy = if run.is_multiple_of(2) { "Failed" } else { "Succeeded" };
                        pipeline.stages[2].latest = Some((current.id.clone(), deploy.into()));
                        changes.lock().unwrap()[i] = Some((Instant::now(), deploy));
                    }
                    let id = format!("e-{i}-{run}");
                    pipeline.executions.insert(0, SimExecution::new(&id, "InProgress", now, now));
                    pipeline.stages[1].latest = Some((id, "InProgress".into()));
                }
                pipeline.stages[1].actions[0].latest = Some(SimActionExecution {
                    id: format!("a-{i}"),
                    status: "InProgress".into(),
                    percent_complete: Some(percent),
                    ..SimActionExecution::default()
                });
            }
        }
        for build in builds {
            world.builds.insert(build.id.clone(), build);
        }
    }
}

/// How a measurement polls.
#[derive(Clone, Copy)]
enum Mode {
    Polling {
        interval: &'static str,
        active_interval: &'static str,
    },
    /// Events through the simulated queue, every pipeline reconciled every scaled 10 minutes.
    Events,
}

/// What one scaled hour cost and how fresh it was.
struct Measured {
    /// Calls per pipeline-hour by operation, CodePipeline's and the queue's.
    costs: Vec<(String, f64)>,
    /// Seconds from each Deploy stage change to the first scrape that showed it, sorted.
    freshness: Vec<f64>,
}

/// Sends one GET and returns the body.
async fn get(addr: std::net::SocketAddr, path: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let head = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(head.as_bytes()).await.expect("write");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.expect("read");
    String::from_utf8_lossy(&raw).into_owned()
}

/// The Deploy stage status each active pipeline shows, from one scrape.
fn deploy_statuses(body: &str) -> Vec<Option<&'static str>> {
    (0..ACTIVE)
        .map(|i| {
            ["Failed", "Succeeded"].into_iter().find(|status| {
                let series = format!(
                    "aws_codepipeline_stage_status{{account=\"bench\",region=\"us-east-1\",pipeline=\"pipeline-{i:04}\",stage=\"Deploy\",status=\"{status}\"}} 1"
                );
                body.contains(&series)
            })
        })
        .collect()
}

/// Runs the exporter for one scaled hour.
async fn measure(mode: Mode) -> Measured {
    let simulator = Simulator::start(world()).await.expect("simulator");
    let changes: Changes = Arc::new(Mutex::new(vec![None; ACTIVE]));
    let (interval, active_interval, events) = match mode {
        Mode::Polling { interval, active_interval } => (interval, active_interval, String::new()),
        Mode::Events => {
            let queue = simulator.create_queue("bench", true);
            ("1s", "250ms", format!("    events:\n      queue_url: {queue}\n      reconcile_interval: 10s\n"))
        }
    };
    // Only the stage statuses and the exporter's own series are rendered, so that scraping every
    // 50 ms to time the changes costs the exporter little; what is polled does not depend on it.
    let yaml = format!(
        "interval: {interval}\nactive_interval: {active_interval}\ndiscovery_interval: 5s\nrequests_per_second: 100000\nburst: 100000\nmax_concurrent_requests: 16\nmetrics:\n  include: [aws_codepipeline_stage_status]\n  state_sets: sparse\naccounts:\n  - name: bench\n    regions: [us-east-1]\n    codeconnections:\n      discover: false\n      connections: false\n{events}"
    );
    let config = Config::parse(&yaml, std::path::Path::new("bench.yaml")).expect("config");
    let overrides = Overrides {
        endpoint_url: Some(simulator.endpoint_url()),
        credentials: Some(Credentials::new("AKIDBENCH", "bench", None, None, "bench")),
        ..Overrides::default()
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let options = exporter::Options { overrides, ..exporter::Options::default() };
    let running = exporter::start(&config, options, listener).await.expect("exporter");
    while !running.readiness.is_ready() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if let Mode::Events = mode {
        while !get(running.addr, "/metrics").await.contains("codepipeline_exporter_events_active{account=\"bench\"} 1") {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    // The first round (one call per pipeline, plus the seed of each history) is start-up, not
    // steady state: count from here.
    let operations = [
        "GetPipelineState",
        "ListPipelineExecutions",
        "ListPipelines",
        "GetPipeline",
        "GetPipelineExecution",
        "ListActionExecutions",
        "ListRuleExecutions",
        "BatchGetBuilds",
        "ReceiveMessage",
        "DeleteMessageBatch",
        "GetQueueAttributes",
    ];
    let before: Vec<u64> = operations.iter().map(|op| simulator.calls(op)).collect();
    let driver = tokio::spawn(progress(simulator.clone(), changes.clone()));
    let started = Instant::now();
    let mut freshness = Vec::new();
    let mut seen: Vec<Option<Instant>> = vec![None; ACTIVE];
    while started.elapsed() < HOUR {
        let body = get(running.addr, "/metrics").await;
        let scraped = Instant::now();
        let shown = deploy_statuses(&body);
        let changes = changes.lock().unwrap().clone();
        for i in 0..ACTIVE {
            if let (Some((at, status)), Some(shown)) = (changes[i], shown[i])
                && shown == status
                && seen[i] != Some(at)
            {
                seen[i] = Some(at);
                freshness.push(scraped.duration_since(at).as_secs_f64());
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let costs = operations
        .iter()
        .zip(before)
        .map(|(op, before)| (op.to_string(), (simulator.calls(op) - before) as f64 / PIPELINES as f64))
        .filter(|(_, n)| *n > 0.0)
        .collect();
    driver.abort();
    running.shutdown().await;
    freshness.sort_by(f64::total_cmp);
    Measured { costs, freshness }
}

/// The `q` quantile of sorted values.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    sorted.get(((sorted.len() as f64 - 1.0) * q).round() as usize).copied().unwrap_or(f64::NAN)
}

/// Seconds from the exporter's start until every pipeline of a 1,000-pipeline fleet shows its
/// state, with the default request budget, and until it is ready (every first poll done).
async fn startup() -> (f64, f64) {
    const FLEET: usize = 1000;
    let simulator = Simulator::start(simulator::fleet(FLEET)).await.expect("simulator");
    let yaml = "accounts:\n  - name: bench\n    regions: [us-east-1]\n    codeconnections:\n      discover: false\n      connections: false\nmetrics:\n  include: [aws_codepipeline_pipeline_version]\n";
    let config = Config::parse(yaml, std::path::Path::new("bench.yaml")).expect("config");
    let overrides = Overrides {
        endpoint_url: Some(simulator.endpoint_url()),
        credentials: Some(Credentials::new("AKIDBENCH", "bench", None, None, "bench")),
        ..Overrides::default()
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let options = exporter::Options { overrides, ..exporter::Options::default() };
    let started = Instant::now();
    let running = exporter::start(&config, options, listener).await.expect("exporter");
    let mut states = None;
    loop {
        let body = get(running.addr, "/metrics").await;
        if states.is_none() && body.matches("aws_codepipeline_pipeline_version{").count() == FLEET {
            states = Some(started.elapsed().as_secs_f64());
            println!("start-up: every state shown after {:.0} s", started.elapsed().as_secs_f64());
        }
        if running.readiness.is_ready() {
            let ready = started.elapsed().as_secs_f64();
            running.shutdown().await;
            return (states.unwrap_or(ready), ready);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Member accounts and regions of the empty organization.
const EMPTY_ACCOUNTS: u64 = 50;
const EMPTY_REGIONS: [&str; 2] = ["us-east-1", "eu-west-1"];

/// Every operation a member's scope may call, to count what the empty ones call.
const MEMBER_OPERATIONS: [&str; 9] = [
    "ListPipelines",
    "GetPipeline",
    "GetPipelineState",
    "ListPipelineExecutions",
    "ListRepositoryLinks",
    "ListSyncConfigurations",
    "ListConnections",
    "ListHosts",
    "ListTagsForResource",
];

/// Calls per empty scope-hour, by operation, in the second of two scaled hours; `events` reads an
/// organization queue too. AssumeRole, one per member account and credentials' lifetime (a scaled
/// hour here, as in AWS by default), is shared by the account's regions.
async fn empty_scopes(events: bool) -> Vec<(String, f64)> {
    let simulator = Simulator::start(World::default()).await.expect("simulator");
    simulator.set_credentials_lifetime(HOUR);
    let root = simulator.organization().root.clone();
    simulator.organization().accounts.clear();
    let ids: Vec<String> = (0..EMPTY_ACCOUNTS).map(|a| format!("{:012}", 910_000_000_000u64 + a)).collect();
    for (a, id) in ids.iter().enumerate() {
        simulator.organization().add_account(id, &format!("empty-{a:03}"), &root);
    }
    let queue =
        if events { format!("  events:\n    queue_url: {}\n", simulator.create_queue("org", true)) } else { String::new() };
    // The defaults, divided by 60: interval 60 s, discovery 5 min, listing 1 h.
    let yaml = format!(
        "interval: 1s\nactive_interval: 250ms\ndiscovery_interval: 5s\norganization:\n  role_name: codepipeline-exporter\n  regions: [{}]\n  refresh_interval: 1m\n{queue}",
        EMPTY_REGIONS.join(", ")
    );
    let config = Config::parse(&yaml, std::path::Path::new("bench.yaml")).expect("config");
    let overrides = Overrides {
        endpoint_url: Some(simulator.endpoint_url()),
        credentials: Some(Credentials::new("AKIDBENCH", "bench", None, None, "bench")),
        ..Overrides::default()
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let running = exporter::start(&config, exporter::Options { overrides, ..exporter::Options::default() }, listener)
        .await
        .expect("exporter");
    let count = |simulator: &Simulator| -> Vec<(String, u64)> {
        let mut counts: Vec<(String, u64)> = MEMBER_OPERATIONS
            .iter()
            .map(|op| (op.to_string(), ids.iter().map(|id| simulator.member_calls(id, op)).sum()))
            .collect();
        counts.push(("AssumeRole".into(), simulator.calls("AssumeRole")));
        counts
    };
    tokio::time::sleep(HOUR).await;
    let before = count(&simulator);
    tokio::time::sleep(HOUR).await;
    let after = count(&simulator);
    running.shutdown().await;
    let scopes = (EMPTY_ACCOUNTS as usize * EMPTY_REGIONS.len()) as f64;
    before.iter().zip(after).map(|((op, b), (_, a))| (op.clone(), (a - b) as f64 / scopes)).filter(|(_, n)| *n > 0.0).collect()
}

#[tokio::main]
async fn main() {
    let only: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    let runs = |name: &str| only.is_empty() || only.iter().any(|o| o == name);
    if runs("cost") {
        println!("AWS calls per pipeline-hour, {PIPELINES} pipelines of which {ACTIVE} run an execution (time scaled 60:1)");
        let modes = [
            ("adaptive (60 s idle, 15 s active)", Mode::Polling { interval: "1s", active_interval: "250ms" }),
            ("fixed (15 s for all)", Mode::Polling { interval: "250ms", active_interval: "250ms" }),
            ("events (reconcile every 10 min)", Mode::Events),
        ];
        for (name, mode) in modes {
            let measured = measure(mode).await;
            let total: f64 = measured
                .costs
                .iter()
                .filter(|(op, _)| !op.contains("Message") && !op.contains("Queue") && op != "BatchGetBuilds")
                .map(|(_, n)| n)
                .sum();
            let detail: Vec<String> = measured.costs.iter().map(|(op, n)| format!("{op} {n:.2}")).collect();
            // Polling freshness follows the schedule, which is scaled: it is given at real speed
            // (x60). Events are not scheduled, so their freshness is as measured.
            let scale = if let Mode::Events = mode { 1.0 } else { 60.0 };
            let fresh = &measured.freshness;
            println!(
                "{name}: {total:.1} CodePipeline calls per pipeline-hour, CodeBuild's apart ({}); change to metric: median {:.2} s, p99 {:.2} s over {} changes",
                detail.join(", "),
                quantile(fresh, 0.5) * scale,
                quantile(fresh, 0.99) * scale,
                fresh.len()
            );
        }
    }
    if runs("empty") {
        let scopes = EMPTY_ACCOUNTS as usize * EMPTY_REGIONS.len();
        for (name, events) in [("polling", false), ("events mode", true)] {
            let calls = empty_scopes(events).await;
            let total: f64 = calls.iter().map(|(_, n)| n).sum();
            let detail: Vec<String> = calls.iter().map(|(op, n)| format!("{op} {n:.2}")).collect();
            println!(
                "empty scopes ({scopes}, time scaled 60:1), {name}: {total:.1} AWS calls per empty scope-hour ({})",
                detail.join(", ")
            );
        }
    }
    if runs("startup") {
        let (states, ready) = startup().await;
        println!(
            "start-up, 1,000 pipelines, 5 calls a second: every state shown after {states:.0} s, every first poll done after {ready:.0} s"
        );
    }
}
