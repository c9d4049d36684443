//! Sharding: N replicas together export exactly what one unsharded exporter exports, each series
//! once.

mod common;

use std::collections::BTreeMap;

use codepipeline_exporter::exporter::Options;
use codepipeline_exporter::shard::Shard;
use codepipeline_exporter::simulator::{SimPipeline, SimRepositoryLink, SimSyncAttempt, SimSyncConfiguration, Simulator, World};
use common::{samples, scrape, start_exporter_unthrottled_with, value, wait_for};

const CONFIG: &str = "interval: 1h\ndiscovery_interval: 1h\naccounts:\n  - name: a\n    regions: [us-east-1, eu-west-1]\n  - name: b\n    regions: [us-east-1]\n";

fn world() -> World {
    let mut world = World::default();
    for i in 0..40 {
        let mut pipeline = SimPipeline::new(&format!("pipeline-{i:02}"), &[("Source", &["Source"]), ("Build", &["Build"])]);
        pipeline.stages[1].latest = Some((format!("e{i}"), if i % 5 == 0 { "Failed" } else { "Succeeded" }.into()));
        world.pipelines.insert(pipeline.name.clone(), pipeline);
    }
    world.repository_links.insert("l1".into(), SimRepositoryLink::new("l1", "GitHub", "acme", "infra"));
    for i in 0..6 {
        let branch = format!("branch-{i}");
        world.sync_configurations.push(SimSyncConfiguration {
            repository_link_id: "l1".into(),
            branch: branch.clone(),
            sync_type: "CFN_STACK_SYNC".into(),
            resource_name: format!("stack-{i}"),
            config_file: None,
        });
        world.repository_syncs.insert(
            ("l1".into(), branch, "CFN_STACK_SYNC".into()),
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
            start_exporter_unthrottled_with(
                &simulator,
                CONFIG,
                Options { shard: Shard { ordinal, total: 3 }, ..Options::default() },
            )
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
