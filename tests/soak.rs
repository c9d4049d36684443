//! Soak: 200 targets polled for three minutes while a fifth of all AWS calls fail and targets come
//! and go; memory and the number of tasks stay flat. Ignored by default (it takes minutes);
//! `scripts/test.sh` runs it.

mod common;

use std::time::{Duration, Instant};

use codepipeline_exporter::simulator::{
    Fault, SimPipeline, SimRepositoryLink, SimResourceSync, SimSyncAttempt, SimSyncConfiguration, Simulator, World, execution_id,
};
use common::{samples, scrape, start_exporter_unthrottled, wait_for};

/// The repository link of every sync, its ID a UUID as AWS forms them.
const LINK: &str = "11111111-aaaa-bbbb-cccc-000000000001";
const PIPELINES: usize = 150;
const SYNCS: usize = 25;
const SOAK: Duration = Duration::from_secs(180);
const WARM_UP: Duration = Duration::from_secs(45);

fn pipeline(name: &str) -> SimPipeline {
    let mut pipeline = SimPipeline::new(name, &[("Source", &["Source"]), ("Build", &["Build", "Test"]), ("Deploy", &["Deploy"])]);
    pipeline.stages[1].latest = Some((execution_id("e1"), "Succeeded".into()));
    pipeline
}

fn world() -> World {
    let mut world = World { page_size: 50, ..World::default() };
    for i in 0..PIPELINES {
        let p = pipeline(&format!("p{i:03}"));
        world.pipelines.insert(p.name.clone(), p);
    }
    world.repository_links.insert(LINK.into(), SimRepositoryLink::new(LINK, "GitHub", "acme", "infra"));
    for i in 0..SYNCS {
        let branch = format!("b{i:02}");
        let stack = format!("s{i:02}");
        world.sync_configurations.push(SimSyncConfiguration {
            repository_link_id: LINK.into(),
            branch: branch.clone(),
            sync_type: "CFN_STACK_SYNC".into(),
            resource_name: stack.clone(),
            config_file: None,
        });
        let attempt = SimSyncAttempt { started_at: 1_700_000_000.0, status: "SUCCEEDED".into(), events: Vec::new() };
        world.repository_syncs.insert((LINK.into(), branch, "CFN_STACK_SYNC".into()), attempt.clone());
        world.resource_syncs.insert(
            (stack, "CFN_STACK_SYNC".into()),
            SimResourceSync { latest: attempt, latest_successful: None, sha: "abc".into(), successful_sha: None },
        );
    }
    world
}

fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("procfs");
    statm.split_whitespace().nth(1).and_then(|pages| pages.parse::<u64>().ok()).expect("resident pages") * 4096
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "takes three minutes; scripts/test.sh runs it"]
async fn memory_and_tasks_stay_flat_under_faults_and_churn() {
    let simulator = Simulator::start(world()).await.unwrap();
    let exporter = start_exporter_unthrottled(
        &simulator,
        "interval: 1s\nactive_interval: 1s\ndiscovery_interval: 2s\nrequest_timeout: 2s\nmax_concurrent_requests: 8\naccounts:\n  - name: soak\n    regions: [us-east-1]\n",
    )
    .await;
    wait_for(&exporter, "ready", |_| exporter.readiness.is_ready()).await;
    simulator.chaos(
        0.2,
        vec![
            Fault::error(400, "ThrottlingException"),
            Fault::error(500, "InternalFailure"),
            Fault::error(503, "ServiceUnavailableException"),
            Fault::error(400, "AccessDeniedException"),
            Fault::Reset,
            Fault::Malformed,
            Fault::Delay(Duration::from_millis(300)),
        ],
    );
    let metrics = tokio::runtime::Handle::current().metrics();
    let started = Instant::now();
    let mut warm: Option<(u64, usize)> = None;
    let mut peak = (0u64, 0usize);
    let mut round = 0usize;
    while started.elapsed() < SOAK {
        // Churn: ten pipelines go and ten new ones come every two seconds.
        {
            let mut world = simulator.world();
            for i in 0..10 {
                world.pipelines.remove(&format!("p{:03}", (round * 10 + i) % PIPELINES));
                let p = pipeline(&format!("p{:03}", (round * 10 + i + PIPELINES / 2) % PIPELINES));
                world.pipelines.insert(p.name.clone(), p);
            }
        }
        round += 1;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let text = scrape(&exporter).await;
        assert!(text.contains("codepipeline_exporter_target_up{"), "the exporter keeps answering");
        let now = (resident_bytes(), metrics.num_alive_tasks());
        if started.elapsed() >= WARM_UP {
            warm.get_or_insert(now);
            peak = (peak.0.max(now.0), peak.1.max(now.1));
        }
    }
    let (warm_rss, warm_tasks) = warm.expect("the soak outlasts its warm-up");
    let s = samples(&scrape(&exporter).await);
    let calls: f64 = s.iter().filter(|(k, _)| k.starts_with("codepipeline_exporter_aws_requests_total")).map(|(_, v)| v).sum();
    let errors: f64 =
        s.iter().filter(|(k, _)| k.starts_with("codepipeline_exporter_aws_request_errors_total")).map(|(_, v)| v).sum();
    println!(
        "soak: {calls} calls, {errors} failed; resident memory {} KiB after warm-up, {} KiB at peak; tasks {warm_tasks} after warm-up, {} at peak",
        warm_rss / 1024,
        peak.0 / 1024,
        peak.1
    );
    assert!(calls > 10_000.0, "the soak polled for real: {calls} calls");
    assert!(errors > calls * 0.02, "faults were injected and counted: {errors} of {calls}");
    assert!(peak.0 <= warm_rss + warm_rss / 5, "resident memory grew from {warm_rss} to {} bytes", peak.0);
    // One task per target and scope, plus a few for HTTP; churn replaces tasks, it does not add them.
    assert!(peak.1 <= warm_tasks + 40, "tasks grew from {warm_tasks} to {}", peak.1);
}
