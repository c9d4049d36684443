//! An organization as it really is: most member accounts hold no pipeline and no Git sync, and
//! each of their account-and-region scopes must cost next to nothing: few AWS calls, little
//! memory, and nothing left behind once the account leaves the organization.

mod common;

use std::time::Duration;

use codepipeline_exporter::simulator::{SimPipeline, Simulator, World, execution_id};
use common::heap::{Counting, kept_heap_bytes};
use common::{start_exporter_unthrottled, wait_for};

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const ROOT: &str = "r-examplerootid";
const REGIONS: [&str; 3] = ["us-east-1", "eu-west-1", "ap-southeast-2"];
/// Empty member accounts that join and leave: 300 scopes.
const EMPTY: usize = 100;

fn empty_id(i: usize) -> String {
    format!("{:012}", 710_000_000_000u64 + i as u64)
}

/// The number of empty members every one of whose regions finished its `round`th discovery:
/// listed its pipelines, repository links, connections and hosts.
fn discovered(simulator: &Simulator, round: u64) -> usize {
    let operations = ["ListPipelines", "ListRepositoryLinks", "ListConnections", "ListHosts"];
    (0..EMPTY)
        .filter(|&i| operations.iter().all(|op| simulator.member_calls(&empty_id(i), op) >= round * REGIONS.len() as u64))
        .count()
}

/// The empty members join the organization; returns the heap kept once each of their scopes
/// finished its first discovery.
async fn join(simulator: &Simulator, round: u64) -> usize {
    for i in 0..EMPTY {
        simulator.organization().add_account(&empty_id(i), &format!("empty-{i:03}"), ROOT);
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while discovered(simulator, round) < EMPTY {
        assert!(tokio::time::Instant::now() < deadline, "{} of {EMPTY} empty members discovered", discovered(simulator, round));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    kept_heap_bytes(Duration::from_millis(500)).await
}

/// The empty members leave the organization; returns the heap kept once their series are gone.
async fn leave(simulator: &Simulator, exporter: &codepipeline_exporter::exporter::Running) -> usize {
    {
        let mut organization = simulator.organization();
        for i in 0..EMPTY {
            organization.accounts.remove(&empty_id(i));
        }
    }
    wait_for(exporter, "the empty members gone", |s| !s.keys().any(|k| k.contains("account=\"empty-"))).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    kept_heap_bytes(Duration::from_millis(500)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_scopes_cost_little_memory_and_leave_nothing_behind() {
    let simulator = Simulator::start(World::default()).await.unwrap();
    {
        let mut organization = simulator.organization();
        organization.accounts.clear();
        organization.add_account("700000000001", "anchor", ROOT);
    }
    let mut pipeline = SimPipeline::new("anchor-deploy", &[("Build", &["Build"])]);
    pipeline.stages[0].latest = Some((execution_id("e1"), "Succeeded".into()));
    simulator.member("700000000001").pipelines.insert("anchor-deploy".into(), pipeline);
    let yaml = format!(
        "interval: 1h\ndiscovery_interval: 1h\norganization:\n  role_name: codepipeline-exporter\n  regions: [{}]\n  refresh_interval: 300ms\n",
        REGIONS.join(", ")
    );
    let exporter = start_exporter_unthrottled(&simulator, &yaml).await;
    wait_for(&exporter, "the anchor's pipeline", |s| s.keys().any(|k| k.contains("pipeline=\"anchor-deploy\""))).await;

    // A first visit warms up what any burst leaves at its largest (the maps' capacity, the
    // threads' compressors, the simulator's sessions, which run in this process); what the
    // second visit keeps is the exporter's own.
    join(&simulator, 1).await;
    let before = leave(&simulator, &exporter).await;
    let joined = join(&simulator, 2).await;
    let per_scope = joined.saturating_sub(before) / (EMPTY * REGIONS.len());
    let left = leave(&simulator, &exporter).await;
    eprintln!(
        "heap kept: {before} before, {joined} with {EMPTY} empty members ({per_scope} bytes per empty scope), {left} after they left"
    );
    // 16.3 KiB when measured; 28 KiB before the account's STS client was made per renewal and
    // discovery's SDK futures were boxed (each idle task kept them).
    assert!(per_scope <= 20 * 1024, "an empty scope keeps {per_scope} bytes of heap");
    // The simulator, in this process, keeps the sessions of every role it issued (100 more, and
    // its map's growth, with each visit); a tenth of a scope left behind by each of the 300 would
    // exceed this margin.
    assert!(left <= before + 256 * 1024, "the heap kept {before} bytes before the members joined and {left} after they left");
}
