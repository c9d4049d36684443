//! Sharding: N replicas together export exactly what one unsharded exporter exports, each series
//! once.

mod common;

use std::collections::BTreeMap;

use codepipeline_exporter::exporter::Options;
use codepipeline_exporter::shard::Shard;
use codepipeline_exporter::simulator::{
    SimPipeline, SimRepositoryLink, SimSyncAttempt, SimSyncConfiguration, Simulator, World, execution_id,
};
use common::{samples, scrape, start_exporter_unthrottled_with, value, wait_for};

/// The repository link of every sync, its ID a UUID as AWS forms them.
const LINK: &str = "11111111-aaaa-bbbb-cccc-000000000001";
const CONFIG: &str = "interval: 1h\ndiscovery_interval: 1h\naccounts:\n  - name: a\n    regions: [us-east-1, eu-west-1]\n  - name: b\n    regions: [us-east-1]\n";

fn world() -> World {
    let mut world = World::default();
    for i in 0..40 {
        let mut pipeline = SimPipeline::new(&format!("pipeline-{i:02}"), &[("Source", &["Source"]), ("Build", &["Build"])]);
        pipeline.stages[1].latest =
            Some((execution_id(&format!("e{i}")), if i % 5 == 0 { "Failed" } else { "Succeeded" }.into()));
        world.pipelines.insert(pipeline.name.clone(), pipeline);
    }
    world.repository_links.insert(LINK.into(), SimRepositoryLink::new(LINK, "GitHub", "acme", "infra"));
    for i in 0..6 {
        let branch = format!("branch-{i}");
        world.sync_configurations.push(SimSyncConfiguration {
            repository_link_id: LINK.into(),
            branch: branch.clone(),
            sync_type: "CFN_STACK_SYNC".into(),
            resource_name: format!("stack-{i}"),
            config_file: None,
        });
        world.repository_syncs.insert(
            (LINK.into(), branch, "CFN_STACK_SYNC".into()),
            SimSyncAttempt { started_at: 1_700_000_000.0, status: "SUCCEEDED".into(), events: Vec::new() },
        );
    }
    world
}

/// The series an exporter exports about AWS and its targets, with their values; the time of the
/// last successful poll is left out, as it differs from one exporter to the next.
fn exported(text: &str) -> BTreeMap<String, f64> {
    samples(text)
        .into_iter()
        .filter(|(series, _)| series.starts_with("aws_") || series.starts_with("codepipeline_exporter_target_up"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shards_together_export_exactly_what_one_exporter_exports() {
    let simulator = Simulator::start(world()).await.unwrap();
    let whole = start_exporter_unthrottled_with(&simulator, CONFIG, Options::default()).await;
    let mut shards = Vec::new();
    for ordinal in 0..3 {
        shards.push(
            start_exporter_unthrottled_with(&simulator, CONFIG, Options { shard: Shard::new(ordinal, 3), ..Options::default() })
                .await,
        );
    }
    wait_for(&whole, "ready", |_| whole.readiness.is_ready()).await;
    let expected = exported(&scrape(&whole).await);
    // 3 scopes × (40 pipelines + 6 repository syncs + 6 stacks + their 6 blocker summaries
    // + 2 discoveries + the connection and host lists).
    assert_eq!(expected.keys().filter(|k| k.starts_with("codepipeline_exporter_target_up")).count(), 3 * 62);

    let mut union: BTreeMap<String, f64> = BTreeMap::new();
    let mut sizes = Vec::new();
    for (ordinal, shard) in shards.iter().enumerate() {
        let s = wait_for(shard, "ready", |_| shard.readiness.is_ready()).await;
        assert_eq!(value(&s, "codepipeline_exporter_shard_ordinal"), Some(ordinal as f64));
        assert_eq!(value(&s, "codepipeline_exporter_total_shards"), Some(3.0));
        let part = exported(&scrape(shard).await);
        sizes.push(part.len());
        for (series, value) in part {
            assert!(union.insert(series.clone(), value).is_none(), "{series} is exported by two shards");
        }
    }
    assert_eq!(union, expected);
    assert!(sizes.iter().all(|&n| n > expected.len() / 6), "every shard takes a share: {sizes:?}");
    // Discovery still sees everything: each shard listed the pipelines of every scope.
    assert_eq!(simulator.calls("ListPipelines"), 4 * 3);
}

const ORGANIZATION_ROOT: &str = "r-examplerootid";

/// An organization of 12 member accounts, every other one with a pipeline: 24 scopes in two
/// regions, half of them empty.
async fn organization() -> Simulator {
    let simulator = Simulator::start(World::default()).await.unwrap();
    simulator.organization().accounts.clear();
    for a in 0..12 {
        let id = format!("{:012}", 810_000_000_000u64 + a);
        simulator.organization().add_account(&id, &format!("member-{a:02}"), ORGANIZATION_ROOT);
        if a % 2 == 0 {
            let name = format!("member-{a:02}-deploy");
            let mut pipeline = SimPipeline::new(&name, &[("Build", &["Build"])]);
            pipeline.stages[0].latest = Some((execution_id("e1"), "Succeeded".into()));
            simulator.member(&id).pipelines.insert(name, pipeline);
        }
    }
    simulator
}

const ORGANIZATION_CONFIG: &str = "interval: 1h\ndiscovery_interval: 1h\norganization:\n  role_name: codepipeline-exporter\n  regions: [us-east-1, eu-west-1]\n";

/// The series about AWS and the scopes' own targets: each replica reports the health of its own
/// organization listing and of the roles it assumed, so those may come from several.
fn scoped(text: &str) -> BTreeMap<String, f64> {
    exported(text)
        .into_iter()
        .filter(|(series, _)| !series.contains("kind=\"organization\"") && !series.contains("kind=\"credentials\""))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_an_organization_shards_divide_scopes_each_discovered_by_one_replica() {
    let simulator = organization().await;
    let mut shards = Vec::new();
    for ordinal in 0..3 {
        let options = Options { shard: Shard::new(ordinal, 3), ..Options::default() };
        shards.push(start_exporter_unthrottled_with(&simulator, ORGANIZATION_CONFIG, options).await);
    }
    let mut union: BTreeMap<String, f64> = BTreeMap::new();
    let mut pipelines = Vec::new();
    for shard in &shards {
        wait_for(shard, "ready", |_| shard.readiness.is_ready()).await;
        let part = scoped(&scrape(shard).await);
        pipelines.push(part.keys().filter(|s| s.starts_with("aws_codepipeline_pipeline_info{")).count());
        for (series, value) in part {
            assert!(union.insert(series.clone(), value).is_none(), "{series} is exported by two shards");
        }
    }
    // Every scope was discovered once, by the one replica that owns it: 24 scopes, each listing
    // its pipelines, repository links, connections and hosts once (discovery runs hourly).
    for operation in ["ListPipelines", "ListRepositoryLinks", "ListConnections", "ListHosts"] {
        assert_eq!(simulator.calls(operation), 24, "{operation}");
    }
    assert_eq!(pipelines.iter().sum::<usize>(), 12, "each of the 6 pipelines in its 2 regions once: {pipelines:?}");
    assert!(pipelines.iter().all(|&n| n > 0), "every replica holds some: {pipelines:?}");

    let whole = start_exporter_unthrottled_with(&simulator, ORGANIZATION_CONFIG, Options::default()).await;
    wait_for(&whole, "ready", |_| whole.readiness.is_ready()).await;
    assert_eq!(union, scoped(&scrape(&whole).await));
}
