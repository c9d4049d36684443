//! AWS calls per pipeline-hour for a mostly idle account of 500 pipelines (25 of them with an
//! execution in progress, each finishing one and starting the next every 15 minutes), with
//! adaptive polling on (idle pipelines every 60 s, active ones every 15 s) and off (every pipeline
//! every 15 s, the rate that keeps active ones as fresh).
//!
//! Time is scaled: every interval is divided by 60, so one minute of running is one hour of the
//! exporter's schedule. The calls are counted by the simulated AWS endpoint.
//!
//!     cargo bench --bench api_cost

use std::time::Duration;

use aws_credential_types::Credentials;
use codepipeline_exporter::aws::Overrides;
use codepipeline_exporter::config::Config;
use codepipeline_exporter::exporter;
use codepipeline_exporter::simulator::{SimActionExecution, SimExecution, SimPipeline, Simulator, World};

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
        pipeline.stages[1].latest = Some((format!("e-{i}"), status.into()));
        pipeline.executions = vec![SimExecution::new(&format!("e-{i}"), status, 1_700_000_000.0, 1_700_000_100.0)];
        world.pipelines.insert(pipeline.name.clone(), pipeline);
    }
    world
}

/// Moves the active pipelines' builds along, as running executions do, and every quarter of a
/// scaled hour finishes each one's execution (Succeeded) and starts the next.
async fn progress(simulator: Simulator) {
    let mut tick: u64 = 0;
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        tick += 1;
        let percent = (tick % 100) as i32;
        let finish = tick.is_multiple_of(HOUR.as_millis() as u64 / 100 / 4);
        let now = 1_700_000_000.0 + tick as f64;
        let mut world = simulator.world();
        for i in 0..ACTIVE {
            if let Some(pipeline) = world.pipelines.get_mut(&format!("pipeline-{i:04}")) {
                if finish {
                    let run = tick / (HOUR.as_millis() as u64 / 100 / 4);
                    if let Some(current) = pipeline.executions.first_mut() {
                        current.status = "Succeeded".into();
                        current.last_update = now;
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
    }
}

/// Runs the exporter for one scaled hour and returns the calls per pipeline-hour by operation.
async fn measure(interval: &str, active_interval: &str) -> Vec<(String, f64)> {
    let simulator = Simulator::start(world()).await.expect("simulator");
    let driver = tokio::spawn(progress(simulator.clone()));
    let yaml = format!(
        "interval: {interval}\nactive_interval: {active_interval}\ndiscovery_interval: 5s\nrequests_per_second: 100000\nburst: 100000\nmax_concurrent_requests: 16\naccounts:\n  - name: bench\n    regions: [us-east-1]\n    codeconnections:\n      discover: false\n"
    );
    let config = Config::parse(&yaml, std::path::Path::new("bench.yaml")).expect("config");
    let overrides = Overrides {
        endpoint_url: Some(simulator.endpoint_url()),
        credentials: Some(Credentials::new("AKIDBENCH", "bench", None, None, "bench")),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let options = exporter::Options { overrides, ..exporter::Options::default() };
    let running = exporter::start(&config, options, listener).await.expect("exporter");
    while !running.readiness.is_ready() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The first round (one call per pipeline, plus the seed of each history) is start-up, not
    // steady state: count from here.
    let operations = [
        "GetPipelineState",
        "ListPipelineExecutions",
        "ListPipelines",
        "GetPipeline",
        "GetPipelineExecution",
        "ListConnections",
        "ListHosts",
    ];
    let before: Vec<u64> = operations.iter().map(|op| simulator.calls(op)).collect();
    tokio::time::sleep(HOUR).await;
    let costs = operations
        .iter()
        .zip(before)
        .map(|(op, before)| (op.to_string(), (simulator.calls(op) - before) as f64 / PIPELINES as f64))
        .collect();
    driver.abort();
    running.shutdown().await;
    costs
}

#[tokio::main]
async fn main() {
    println!("AWS calls per pipeline-hour, {PIPELINES} pipelines of which {ACTIVE} run an execution (time scaled 60:1)");
    for (name, interval, active) in
        [("adaptive (60 s idle, 15 s active)", "1s", "250ms"), ("fixed (15 s for all)", "250ms", "250ms")]
    {
        let costs = measure(interval, active).await;
        let total: f64 = costs.iter().map(|(_, n)| n).sum();
        let detail: Vec<String> = costs.iter().map(|(op, n)| format!("{op} {n:.1}")).collect();
        println!("{name}: {total:.1} calls per pipeline-hour ({})", detail.join(", "));
    }
}
