//! CodeConnections through the real SDK against the simulated Smithy RPC v2 CBOR endpoint.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use codepipeline_exporter::exporter::Running;
use codepipeline_exporter::simulator::{
    Fault, SimRepositoryLink, SimResourceSync, SimSyncAttempt, SimSyncConfiguration, SimSyncEvent, Simulator, World, demo,
};
use common::{
    error_count, samples, scrape, start_exporter_unthrottled, start_unthrottled, target_up, value, wait_for, wait_for_calls,
};

const FAST: &str = "interval: 150ms\ndiscovery_interval: 300ms\naccounts:\n  - name: test\n    regions: [us-east-1]\n    codepipeline:\n      discover: false\n";

const LINK_A: &str = "11111111-aaaa-bbbb-cccc-000000000001";
const LINK_B: &str = "11111111-aaaa-bbbb-cccc-000000000002";
const LINK_C: &str = "11111111-aaaa-bbbb-cccc-000000000003";

fn configuration(link: &str, branch: &str, resource: &str) -> SimSyncConfiguration {
    SimSyncConfiguration {
        repository_link_id: link.into(),
        branch: branch.into(),
        sync_type: "CFN_STACK_SYNC".into(),
        resource_name: resource.into(),
        config_file: Some("deploy/stack.yaml".into()),
    }
}

fn event(time: f64, kind: &str, text: &str) -> SimSyncEvent {
    SimSyncEvent { time, kind: kind.into(), event: text.into(), external_id: Some("ext-1".into()) }
}

/// Three links on two providers (pages of two), four branches: one succeeded, one failed, one in
/// progress and one that never synced. Of their stacks, prod-infra is at its branch's commit,
/// staging-infra behind it (its latest sync, of def456, failed; 0a1b2c3 is deployed), and the other
/// two never synced.
fn world() -> World {
    let mut world = World { page_size: 2, ..World::default() };
    for link in [
        SimRepositoryLink::new(LINK_A, "GitHub", "acme", "infra"),
        SimRepositoryLink::new(LINK_B, "GitLab", "acme", "network"),
        SimRepositoryLink::new(LINK_C, "GitHub", "acme", "empty"),
    ] {
        world.repository_links.insert(link.id.clone(), link);
    }
    world.sync_configurations = vec![
        configuration(LINK_A, "main", "prod-infra"),
        configuration(LINK_A, "staging", "staging-infra"),
        configuration(LINK_A, "feature/new", "feature-infra"),
        configuration(LINK_B, "main", "prod-network"),
    ];
    let attempt = |started: f64, status: &str, events: Vec<SimSyncEvent>| SimSyncAttempt {
        started_at: started,
        status: status.into(),
        events,
    };
    world.repository_syncs.insert(
        (LINK_A.into(), "main".into(), "CFN_STACK_SYNC".into()),
        attempt(
            1_700_000_000.0,
            "SUCCEEDED",
            vec![
                event(1_700_000_001.0, "INFO", "Fetching changes from the repository"),
                event(1_700_000_090.5, "INFO", "Sync succeeded"),
            ],
        ),
    );
    world.repository_syncs.insert(
        (LINK_A.into(), "staging".into(), "CFN_STACK_SYNC".into()),
        attempt(1_700_000_100.0, "FAILED", vec![event(1_700_000_150.0, "ERROR", "Template \"x\" is invalid")]),
    );
    world
        .repository_syncs
        .insert((LINK_B.into(), "main".into(), "CFN_STACK_SYNC".into()), attempt(1_700_000_200.0, "IN_PROGRESS", vec![]));
    world.resource_syncs.insert(
        ("prod-infra".into(), "CFN_STACK_SYNC".into()),
        SimResourceSync {
            latest: attempt(1_700_000_000.0, "SUCCEEDED", vec![]),
            latest_successful: Some(attempt(1_700_000_000.0, "SUCCEEDED", vec![])),
            sha: "abc123".into(),
            successful_sha: None,
        },
    );
    world.resource_syncs.insert(
        ("staging-infra".into(), "CFN_STACK_SYNC".into()),
        SimResourceSync {
            latest: attempt(1_700_000_100.0, "FAILED", vec![]),
            latest_successful: Some(attempt(1_699_990_000.0, "SUCCEEDED", vec![])),
            sha: "def456".into(),
            successful_sha: Some("0a1b2c3".into()),
        },
    );
    world
}

const EXPECTED: &str = r#"aws_codeconnections_repository_link_info{account="test",region="us-east-1",repository_link_id="11111111-aaaa-bbbb-cccc-000000000001",repository="acme/infra",provider_type="GitHub",connection_arn="arn:aws:codeconnections:us-east-1:111122223333:connection/11111111-aaaa-bbbb-cccc-000000000001"} 1
aws_codeconnections_repository_link_info{account="test",region="us-east-1",repository_link_id="11111111-aaaa-bbbb-cccc-000000000002",repository="acme/network",provider_type="GitLab",connection_arn="arn:aws:codeconnections:us-east-1:111122223333:connection/11111111-aaaa-bbbb-cccc-000000000002"} 1
aws_codeconnections_repository_link_info{account="test",region="us-east-1",repository_link_id="11111111-aaaa-bbbb-cccc-000000000003",repository="acme/empty",provider_type="GitHub",connection_arn="arn:aws:codeconnections:us-east-1:111122223333:connection/11111111-aaaa-bbbb-cccc-000000000003"} 1
aws_codeconnections_repository_sync_attempts_total{account="test",region="us-east-1",repository_link_id="11111111-aaaa-bbbb-cccc-000000000001",repository="acme/infra",branch="feature/new",sync_type="CFN_STACK_SYNC",status="FAILED"} 0
aws_codeconnections_repository_sync_attempts_total{account="test",region="us-east-1",repository_link_id="11111111-aaaa-bbbb-cccc-000000000001",repository="acme/infra",branch="feature/new",sync_type="CFN_STACK_SYNC",status="SUCCEEDED"} 0
aws_codeconnections_repository_sync_attempts_total{account="test",region="us-east-1",repository_link_id="11111111-aaaa-bbbb-cccc-000000000001",repository="acme/infra",branch="main",sync_type="CFN_STACK_SYNC",status="FAILED"} 0
aws_codeconnections_repository_sync_attempts_total{account="test",region="us-east-1",repository_link_id="11111111-aaaa-bbbb-cccc-000000000001",repository="acme/infra",branch="main",sync_type="CFN_STACK_SYNC",status="SUCCEEDED"} 0
aws_codeconnections_repository_sync_attempts_total{account="test",region="us-east-1",repository_link_id="11111111-aaaa-bbbb-cccc-000000000001",repository="acme/infra",branch="staging",sync_type="CFN_STACK_SYNC",status="FAILED"} 0
aws_codeconnections_repository_sync_attempts_total{account="test",region="us-east-1",repository_link_id="11111111-aaaa-bbbb-cccc-000000000001",repository="acme/infra",branch="staging",sync_type="CFN_STACK_SYNC",status="SUCCEEDED"} 0
aws_codeconnections_repository_sync_attempts_total{account="test",region="us-east-1",repository_link_id="11111111-aaaa-bbbb-cccc-000000000002",repository="acme/network",branch="main",sync_type="CFN_STACK_SYNC",status="FAILED"} 0
aws_codeconnections_repository_sync_attempts_total{account="test",region="us-east-1",repository_link_id="11111111-aaaa-bbbb-cccc-000000000002",repository="acme/network",branch="main",sync_type="CFN_STACK_SYNC",status="SUCCEEDED"} 0
aws_codeconnections_repository_sync_last_event_timestamp_seconds{account="test",region="us-east-1",repository_link_id="11111111-aaaa-bbbb-cccc-000000000001",repository="acme/infra",branch="main",sync_type="CFN_STACK_SYNC"} 1700000090.5
aws_codeconnections_repository_sync_last_event_timestamp_seconds{account="test",region="us-east-1",repository_link_id="11111111-aaaa-bbbb-cccc-000000000001",repository="acme/infra",branch="staging",sync_type="CFN_STACK_SYNC"} 1700000150
aws_codeconnections_repository_sync_started_timestamp_seconds{account="test",region="us-east-1",repository_link_id="11111111-aaaa-bbbb-cccc-000000000001",repository="acme/infra",branch="main",sync_type="CFN_STACK_SYNC"} 1700000000
aws_codeconnections_repository_sync_started_timestamp_seconds{account="test",region="us-east-1",repository_link_id="11111111-aaaa-bbbb-cccc-000000000001",repository="acme/infra",branch="staging",sync_type="CFN_STACK_SYNC"} 1700000100
aws_codeconnections_repository_sync_started_timestamp_seconds{account="test",region="us-east-1",repository_link_id="11111111-aaaa-bbbb-cccc-000000000002",repository="acme/network",branch="main",sync_type="CFN_STACK_SYNC"} 1700000200
aws_codeconnections_repository_sync_status{account="test",region="us-east-1",repository_link_id="11111111-aaaa-bbbb-cccc-000000000001",repository="acme/infra",branch="feature/new",sync_type="CFN_STACK_SYNC",status="FAILED"} 0
aws_codeconnections_repository_sync_status{account="test",region="us-east-1",repository_link_id="11111111-aaaa-bbbb-cccc-000000000001",repository="acme/infra",branch="feature/new",sync_type="CFN_STACK_SYNC",status="INITIATED"} 0
aws_codeconnections_repository_sync_status{account="test",region="us-east-1",repository_link_id="11111111-aaaa-bbbb-cccc-000000000001",repository="acme/infra",branch="feature/new",sync_type="CFN_STACK_SYNC",status="IN_PROGRESS"} 0
aws_codeconnections_repository_sync_status{account="test",region="us-east-1",repository_link_id="11111111-aaaa-bbbb-cccc-000000000001",repository="acme/infra",branch="feature/new",sync_type="CFN_STACK_SYNC",status="QUEUED"} 0
aws_codeconnections_repository_sync_status{account="test",region="us-east-1",repository_link_id="11111111-aaaa-bbbb-cccc-000000000001",repository="acme/infra",branch="feature/new",sync_type="CFN_STACK_SYNC",status="SUCCEEDED"} 0
aws_codeconnections_repository_sync_status{account="test",region="us-east-1",repository_link_id="11111111-aaaa-bbbb-cccc-000000000001",repository="acme/infra",branch="main",sync_type="CFN_STACK_SYNC",status="FAILED"} 0
aws_codeconnections_repository_sync_status{account="test",region="us-east-1",repository_link_id="11111111-aaaa-bbbb-cccc-000000000001",repository="acme/infra",branch="main",sync_type="CFN_STACK_SYNC",status="INITIATED"} 0
aws_codeconnections_repository_sync_status{account="test",region="us-east-1",repository_link_id="11111111-aaaa-bbbb-cccc-000000000001",repository="acme/infra",branch="main",sync_type="CFN_STACK_SYNC",status="IN_PROGRESS"} 0
aws_codeconnections_repository_sync_status{account="test",region="us-east-1",repository_link_id="11111111-aaaa-bbbb-cccc-000000000001",repository="acme/infra",branch="main",sync_type="CFN_STACK_SYNC",status="QUEUED"} 0
aws_codeconnections_repository_sync_status{account="test",region="us-east-1",repository_link_id="11111111-aaaa-bbbb-cccc-000000000001",repository="acme/infra",branch="main",sync_type="CFN_STACK_SYNC",status="SUCCEEDED"} 1
aws_codeconnections_repository_sync_status{account="test",region="us-east-1",repository_link_id="11111111-aaaa-bbbb-cccc-000000000001",repository="acme/infra",branch="staging",sync_type="CFN_STACK_SYNC",status="FAILED"} 1
aws_codeconnections_repository_sync_status{account="test",region="us-east-1",repository_link_id="11111111-aaaa-bbbb-cccc-000000000001",repository="acme/infra",branch="staging",sync_type="CFN_STACK_SYNC",status="INITIATED"} 0
aws_codeconnections_repository_sync_status{account="test",region="us-east-1",repository_link_id="11111111-aaaa-bbbb-cccc-000000000001",repository="acme/infra",branch="staging",sync_type="CFN_STACK_SYNC",status="IN_PROGRESS"} 0
aws_codeconnections_repository_sync_status{account="test",region="us-east-1",repository_link_id="11111111-aaaa-bbbb-cccc-000000000001",repository="acme/infra",branch="staging",sync_type="CFN_STACK_SYNC",status="QUEUED"} 0
aws_codeconnections_repository_sync_status{account="test",region="us-east-1",repository_link_id="11111111-aaaa-bbbb-cccc-000000000001",repository="acme/infra",branch="staging",sync_type="CFN_STACK_SYNC",status="SUCCEEDED"} 0
aws_codeconnections_repository_sync_status{account="test",region="us-east-1",repository_link_id="11111111-aaaa-bbbb-cccc-000000000002",repository="acme/network",branch="main",sync_type="CFN_STACK_SYNC",status="FAILED"} 0
aws_codeconnections_repository_sync_status{account="test",region="us-east-1",repository_link_id="11111111-aaaa-bbbb-cccc-000000000002",repository="acme/network",branch="main",sync_type="CFN_STACK_SYNC",status="INITIATED"} 0
aws_codeconnections_repository_sync_status{account="test",region="us-east-1",repository_link_id="11111111-aaaa-bbbb-cccc-000000000002",repository="acme/network",branch="main",sync_type="CFN_STACK_SYNC",status="IN_PROGRESS"} 1
aws_codeconnections_repository_sync_status{account="test",region="us-east-1",repository_link_id="11111111-aaaa-bbbb-cccc-000000000002",repository="acme/network",branch="main",sync_type="CFN_STACK_SYNC",status="QUEUED"} 0
aws_codeconnections_repository_sync_status{account="test",region="us-east-1",repository_link_id="11111111-aaaa-bbbb-cccc-000000000002",repository="acme/network",branch="main",sync_type="CFN_STACK_SYNC",status="SUCCEEDED"} 0
aws_codeconnections_resource_sync_attempts_total{account="test",region="us-east-1",resource_name="feature-infra",sync_type="CFN_STACK_SYNC",status="FAILED"} 0
aws_codeconnections_resource_sync_attempts_total{account="test",region="us-east-1",resource_name="feature-infra",sync_type="CFN_STACK_SYNC",status="SUCCEEDED"} 0
aws_codeconnections_resource_sync_attempts_total{account="test",region="us-east-1",resource_name="prod-infra",sync_type="CFN_STACK_SYNC",status="FAILED"} 0
aws_codeconnections_resource_sync_attempts_total{account="test",region="us-east-1",resource_name="prod-infra",sync_type="CFN_STACK_SYNC",status="SUCCEEDED"} 0
aws_codeconnections_resource_sync_attempts_total{account="test",region="us-east-1",resource_name="prod-network",sync_type="CFN_STACK_SYNC",status="FAILED"} 0
aws_codeconnections_resource_sync_attempts_total{account="test",region="us-east-1",resource_name="prod-network",sync_type="CFN_STACK_SYNC",status="SUCCEEDED"} 0
aws_codeconnections_resource_sync_attempts_total{account="test",region="us-east-1",resource_name="staging-infra",sync_type="CFN_STACK_SYNC",status="FAILED"} 0
aws_codeconnections_resource_sync_attempts_total{account="test",region="us-east-1",resource_name="staging-infra",sync_type="CFN_STACK_SYNC",status="SUCCEEDED"} 0
aws_codeconnections_resource_sync_behind{account="test",region="us-east-1",resource_name="prod-infra",sync_type="CFN_STACK_SYNC"} 0
aws_codeconnections_resource_sync_behind{account="test",region="us-east-1",resource_name="staging-infra",sync_type="CFN_STACK_SYNC"} 1
aws_codeconnections_resource_sync_last_success_timestamp_seconds{account="test",region="us-east-1",resource_name="prod-infra",sync_type="CFN_STACK_SYNC"} 1700000000
aws_codeconnections_resource_sync_last_success_timestamp_seconds{account="test",region="us-east-1",resource_name="staging-infra",sync_type="CFN_STACK_SYNC"} 1699990000
aws_codeconnections_resource_sync_started_timestamp_seconds{account="test",region="us-east-1",resource_name="prod-infra",sync_type="CFN_STACK_SYNC"} 1700000000
aws_codeconnections_resource_sync_started_timestamp_seconds{account="test",region="us-east-1",resource_name="staging-infra",sync_type="CFN_STACK_SYNC"} 1700000100
aws_codeconnections_resource_sync_status{account="test",region="us-east-1",resource_name="feature-infra",sync_type="CFN_STACK_SYNC",status="FAILED"} 0
aws_codeconnections_resource_sync_status{account="test",region="us-east-1",resource_name="feature-infra",sync_type="CFN_STACK_SYNC",status="INITIATED"} 0
aws_codeconnections_resource_sync_status{account="test",region="us-east-1",resource_name="feature-infra",sync_type="CFN_STACK_SYNC",status="IN_PROGRESS"} 0
aws_codeconnections_resource_sync_status{account="test",region="us-east-1",resource_name="feature-infra",sync_type="CFN_STACK_SYNC",status="SUCCEEDED"} 0
aws_codeconnections_resource_sync_status{account="test",region="us-east-1",resource_name="prod-infra",sync_type="CFN_STACK_SYNC",status="FAILED"} 0
aws_codeconnections_resource_sync_status{account="test",region="us-east-1",resource_name="prod-infra",sync_type="CFN_STACK_SYNC",status="INITIATED"} 0
aws_codeconnections_resource_sync_status{account="test",region="us-east-1",resource_name="prod-infra",sync_type="CFN_STACK_SYNC",status="IN_PROGRESS"} 0
aws_codeconnections_resource_sync_status{account="test",region="us-east-1",resource_name="prod-infra",sync_type="CFN_STACK_SYNC",status="SUCCEEDED"} 1
aws_codeconnections_resource_sync_status{account="test",region="us-east-1",resource_name="prod-network",sync_type="CFN_STACK_SYNC",status="FAILED"} 0
aws_codeconnections_resource_sync_status{account="test",region="us-east-1",resource_name="prod-network",sync_type="CFN_STACK_SYNC",status="INITIATED"} 0
aws_codeconnections_resource_sync_status{account="test",region="us-east-1",resource_name="prod-network",sync_type="CFN_STACK_SYNC",status="IN_PROGRESS"} 0
aws_codeconnections_resource_sync_status{account="test",region="us-east-1",resource_name="prod-network",sync_type="CFN_STACK_SYNC",status="SUCCEEDED"} 0
aws_codeconnections_resource_sync_status{account="test",region="us-east-1",resource_name="staging-infra",sync_type="CFN_STACK_SYNC",status="FAILED"} 1
aws_codeconnections_resource_sync_status{account="test",region="us-east-1",resource_name="staging-infra",sync_type="CFN_STACK_SYNC",status="INITIATED"} 0
aws_codeconnections_resource_sync_status{account="test",region="us-east-1",resource_name="staging-infra",sync_type="CFN_STACK_SYNC",status="IN_PROGRESS"} 0
aws_codeconnections_resource_sync_status{account="test",region="us-east-1",resource_name="staging-infra",sync_type="CFN_STACK_SYNC",status="SUCCEEDED"} 0
aws_codeconnections_sync_blocker_resolve_duration_seconds_bucket{account="test",region="us-east-1",resource_name="feature-infra",sync_type="CFN_STACK_SYNC",le="60"} 0
aws_codeconnections_sync_blocker_resolve_duration_seconds_bucket{account="test",region="us-east-1",resource_name="feature-infra",sync_type="CFN_STACK_SYNC",le="300"} 0
aws_codeconnections_sync_blocker_resolve_duration_seconds_bucket{account="test",region="us-east-1",resource_name="feature-infra",sync_type="CFN_STACK_SYNC",le="900"} 0
aws_codeconnections_sync_blocker_resolve_duration_seconds_bucket{account="test",region="us-east-1",resource_name="feature-infra",sync_type="CFN_STACK_SYNC",le="1800"} 0
aws_codeconnections_sync_blocker_resolve_duration_seconds_bucket{account="test",region="us-east-1",resource_name="feature-infra",sync_type="CFN_STACK_SYNC",le="3600"} 0
aws_codeconnections_sync_blocker_resolve_duration_seconds_bucket{account="test",region="us-east-1",resource_name="feature-infra",sync_type="CFN_STACK_SYNC",le="14400"} 0
aws_codeconnections_sync_blocker_resolve_duration_seconds_bucket{account="test",region="us-east-1",resource_name="feature-infra",sync_type="CFN_STACK_SYNC",le="43200"} 0
aws_codeconnections_sync_blocker_resolve_duration_seconds_bucket{account="test",region="us-east-1",resource_name="feature-infra",sync_type="CFN_STACK_SYNC",le="86400"} 0
aws_codeconnections_sync_blocker_resolve_duration_seconds_bucket{account="test",region="us-east-1",resource_name="feature-infra",sync_type="CFN_STACK_SYNC",le="259200"} 0
aws_codeconnections_sync_blocker_resolve_duration_seconds_bucket{account="test",region="us-east-1",resource_name="feature-infra",sync_type="CFN_STACK_SYNC",le="604800"} 0
aws_codeconnections_sync_blocker_resolve_duration_seconds_bucket{account="test",region="us-east-1",resource_name="feature-infra",sync_type="CFN_STACK_SYNC",le="+Inf"} 0
aws_codeconnections_sync_blocker_resolve_duration_seconds_sum{account="test",region="us-east-1",resource_name="feature-infra",sync_type="CFN_STACK_SYNC"} 0
aws_codeconnections_sync_blocker_resolve_duration_seconds_count{account="test",region="us-east-1",resource_name="feature-infra",sync_type="CFN_STACK_SYNC"} 0
aws_codeconnections_sync_blocker_resolve_duration_seconds_bucket{account="test",region="us-east-1",resource_name="prod-infra",sync_type="CFN_STACK_SYNC",le="60"} 0
aws_codeconnections_sync_blocker_resolve_duration_seconds_bucket{account="test",region="us-east-1",resource_name="prod-infra",sync_type="CFN_STACK_SYNC",le="300"} 0
aws_codeconnections_sync_blocker_resolve_duration_seconds_bucket{account="test",region="us-east-1",resource_name="prod-infra",sync_type="CFN_STACK_SYNC",le="900"} 0
aws_codeconnections_sync_blocker_resolve_duration_seconds_bucket{account="test",region="us-east-1",resource_name="prod-infra",sync_type="CFN_STACK_SYNC",le="1800"} 0
aws_codeconnections_sync_blocker_resolve_duration_seconds_bucket{account="test",region="us-east-1",resource_name="prod-infra",sync_type="CFN_STACK_SYNC",le="3600"} 0
aws_codeconnections_sync_blocker_resolve_duration_seconds_bucket{account="test",region="us-east-1",resource_name="prod-infra",sync_type="CFN_STACK_SYNC",le="14400"} 0
aws_codeconnections_sync_blocker_resolve_duration_seconds_bucket{account="test",region="us-east-1",resource_name="prod-infra",sync_type="CFN_STACK_SYNC",le="43200"} 0
aws_codeconnections_sync_blocker_resolve_duration_seconds_bucket{account="test",region="us-east-1",resource_name="prod-infra",sync_type="CFN_STACK_SYNC",le="86400"} 0
aws_codeconnections_sync_blocker_resolve_duration_seconds_bucket{account="test",region="us-east-1",resource_name="prod-infra",sync_type="CFN_STACK_SYNC",le="259200"} 0
aws_codeconnections_sync_blocker_resolve_duration_seconds_bucket{account="test",region="us-east-1",resource_name="prod-infra",sync_type="CFN_STACK_SYNC",le="604800"} 0
aws_codeconnections_sync_blocker_resolve_duration_seconds_bucket{account="test",region="us-east-1",resource_name="prod-infra",sync_type="CFN_STACK_SYNC",le="+Inf"} 0
aws_codeconnections_sync_blocker_resolve_duration_seconds_sum{account="test",region="us-east-1",resource_name="prod-infra",sync_type="CFN_STACK_SYNC"} 0
aws_codeconnections_sync_blocker_resolve_duration_seconds_count{account="test",region="us-east-1",resource_name="prod-infra",sync_type="CFN_STACK_SYNC"} 0
aws_codeconnections_sync_blocker_resolve_duration_seconds_bucket{account="test",region="us-east-1",resource_name="prod-network",sync_type="CFN_STACK_SYNC",le="60"} 0
aws_codeconnections_sync_blocker_resolve_duration_seconds_bucket{account="test",region="us-east-1",resource_name="prod-network",sync_type="CFN_STACK_SYNC",le="300"} 0
aws_codeconnections_sync_blocker_resolve_duration_seconds_bucket{account="test",region="us-east-1",resource_name="prod-network",sync_type="CFN_STACK_SYNC",le="900"} 0
aws_codeconnections_sync_blocker_resolve_duration_seconds_bucket{account="test",region="us-east-1",resource_name="prod-network",sync_type="CFN_STACK_SYNC",le="1800"} 0
aws_codeconnections_sync_blocker_resolve_duration_seconds_bucket{account="test",region="us-east-1",resource_name="prod-network",sync_type="CFN_STACK_SYNC",le="3600"} 0
aws_codeconnections_sync_blocker_resolve_duration_seconds_bucket{account="test",region="us-east-1",resource_name="prod-network",sync_type="CFN_STACK_SYNC",le="14400"} 0
aws_codeconnections_sync_blocker_resolve_duration_seconds_bucket{account="test",region="us-east-1",resource_name="prod-network",sync_type="CFN_STACK_SYNC",le="43200"} 0
aws_codeconnections_sync_blocker_resolve_duration_seconds_bucket{account="test",region="us-east-1",resource_name="prod-network",sync_type="CFN_STACK_SYNC",le="86400"} 0
aws_codeconnections_sync_blocker_resolve_duration_seconds_bucket{account="test",region="us-east-1",resource_name="prod-network",sync_type="CFN_STACK_SYNC",le="259200"} 0
aws_codeconnections_sync_blocker_resolve_duration_seconds_bucket{account="test",region="us-east-1",resource_name="prod-network",sync_type="CFN_STACK_SYNC",le="604800"} 0
aws_codeconnections_sync_blocker_resolve_duration_seconds_bucket{account="test",region="us-east-1",resource_name="prod-network",sync_type="CFN_STACK_SYNC",le="+Inf"} 0
aws_codeconnections_sync_blocker_resolve_duration_seconds_sum{account="test",region="us-east-1",resource_name="prod-network",sync_type="CFN_STACK_SYNC"} 0
aws_codeconnections_sync_blocker_resolve_duration_seconds_count{account="test",region="us-east-1",resource_name="prod-network",sync_type="CFN_STACK_SYNC"} 0
aws_codeconnections_sync_blocker_resolve_duration_seconds_bucket{account="test",region="us-east-1",resource_name="staging-infra",sync_type="CFN_STACK_SYNC",le="60"} 0
aws_codeconnections_sync_blocker_resolve_duration_seconds_bucket{account="test",region="us-east-1",resource_name="staging-infra",sync_type="CFN_STACK_SYNC",le="300"} 0
aws_codeconnections_sync_blocker_resolve_duration_seconds_bucket{account="test",region="us-east-1",resource_name="staging-infra",sync_type="CFN_STACK_SYNC",le="900"} 0
aws_codeconnections_sync_blocker_resolve_duration_seconds_bucket{account="test",region="us-east-1",resource_name="staging-infra",sync_type="CFN_STACK_SYNC",le="1800"} 0
aws_codeconnections_sync_blocker_resolve_duration_seconds_bucket{account="test",region="us-east-1",resource_name="staging-infra",sync_type="CFN_STACK_SYNC",le="3600"} 0
aws_codeconnections_sync_blocker_resolve_duration_seconds_bucket{account="test",region="us-east-1",resource_name="staging-infra",sync_type="CFN_STACK_SYNC",le="14400"} 0
aws_codeconnections_sync_blocker_resolve_duration_seconds_bucket{account="test",region="us-east-1",resource_name="staging-infra",sync_type="CFN_STACK_SYNC",le="43200"} 0
aws_codeconnections_sync_blocker_resolve_duration_seconds_bucket{account="test",region="us-east-1",resource_name="staging-infra",sync_type="CFN_STACK_SYNC",le="86400"} 0
aws_codeconnections_sync_blocker_resolve_duration_seconds_bucket{account="test",region="us-east-1",resource_name="staging-infra",sync_type="CFN_STACK_SYNC",le="259200"} 0
aws_codeconnections_sync_blocker_resolve_duration_seconds_bucket{account="test",region="us-east-1",resource_name="staging-infra",sync_type="CFN_STACK_SYNC",le="604800"} 0
aws_codeconnections_sync_blocker_resolve_duration_seconds_bucket{account="test",region="us-east-1",resource_name="staging-infra",sync_type="CFN_STACK_SYNC",le="+Inf"} 0
aws_codeconnections_sync_blocker_resolve_duration_seconds_sum{account="test",region="us-east-1",resource_name="staging-infra",sync_type="CFN_STACK_SYNC"} 0
aws_codeconnections_sync_blocker_resolve_duration_seconds_count{account="test",region="us-east-1",resource_name="staging-infra",sync_type="CFN_STACK_SYNC"} 0
aws_codeconnections_sync_blockers_active{account="test",region="us-east-1",resource_name="feature-infra",sync_type="CFN_STACK_SYNC"} 0
aws_codeconnections_sync_blockers_active{account="test",region="us-east-1",resource_name="prod-infra",sync_type="CFN_STACK_SYNC"} 0
aws_codeconnections_sync_blockers_active{account="test",region="us-east-1",resource_name="prod-network",sync_type="CFN_STACK_SYNC"} 0
aws_codeconnections_sync_blockers_active{account="test",region="us-east-1",resource_name="staging-infra",sync_type="CFN_STACK_SYNC"} 0
aws_codeconnections_sync_blockers_resolved_total{account="test",region="us-east-1",resource_name="feature-infra",sync_type="CFN_STACK_SYNC"} 0
aws_codeconnections_sync_blockers_resolved_total{account="test",region="us-east-1",resource_name="prod-infra",sync_type="CFN_STACK_SYNC"} 0
aws_codeconnections_sync_blockers_resolved_total{account="test",region="us-east-1",resource_name="prod-network",sync_type="CFN_STACK_SYNC"} 0
aws_codeconnections_sync_blockers_resolved_total{account="test",region="us-east-1",resource_name="staging-infra",sync_type="CFN_STACK_SYNC"} 0
aws_codeconnections_sync_configuration_info{account="test",region="us-east-1",repository_link_id="11111111-aaaa-bbbb-cccc-000000000001",repository="acme/infra",branch="feature/new",sync_type="CFN_STACK_SYNC",resource_name="feature-infra",config_file="deploy/stack.yaml"} 1
aws_codeconnections_sync_configuration_info{account="test",region="us-east-1",repository_link_id="11111111-aaaa-bbbb-cccc-000000000001",repository="acme/infra",branch="main",sync_type="CFN_STACK_SYNC",resource_name="prod-infra",config_file="deploy/stack.yaml"} 1
aws_codeconnections_sync_configuration_info{account="test",region="us-east-1",repository_link_id="11111111-aaaa-bbbb-cccc-000000000001",repository="acme/infra",branch="staging",sync_type="CFN_STACK_SYNC",resource_name="staging-infra",config_file="deploy/stack.yaml"} 1
aws_codeconnections_sync_configuration_info{account="test",region="us-east-1",repository_link_id="11111111-aaaa-bbbb-cccc-000000000002",repository="acme/network",branch="main",sync_type="CFN_STACK_SYNC",resource_name="prod-network",config_file="deploy/stack.yaml"} 1
"#;

fn repo_status(branch: &str, status: &str) -> String {
    format!(
        "aws_codeconnections_repository_sync_status{{account=\"test\",region=\"us-east-1\",repository_link_id=\"{LINK_A}\",repository=\"acme/infra\",branch=\"{branch}\",sync_type=\"CFN_STACK_SYNC\",status=\"{status}\"}}"
    )
}

fn attempts(branch: &str, status: &str) -> String {
    format!(
        "aws_codeconnections_repository_sync_attempts_total{{account=\"test\",region=\"us-east-1\",repository_link_id=\"{LINK_A}\",repository=\"acme/infra\",branch=\"{branch}\",sync_type=\"CFN_STACK_SYNC\",status=\"{status}\"}}"
    )
}

fn behind(stack: &str) -> String {
    format!(
        "aws_codeconnections_resource_sync_behind{{account=\"test\",region=\"us-east-1\",resource_name=\"{stack}\",sync_type=\"CFN_STACK_SYNC\"}}"
    )
}

fn stack_attempts(stack: &str, status: &str) -> String {
    format!(
        "aws_codeconnections_resource_sync_attempts_total{{account=\"test\",region=\"us-east-1\",resource_name=\"{stack}\",sync_type=\"CFN_STACK_SYNC\",status=\"{status}\"}}"
    )
}

fn events(branch: &str, kind: &str) -> String {
    format!(
        "aws_codeconnections_repository_sync_events_total{{account=\"test\",region=\"us-east-1\",repository_link_id=\"{LINK_A}\",repository=\"acme/infra\",branch=\"{branch}\",sync_type=\"CFN_STACK_SYNC\",type=\"{kind}\"}}"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_across_pages_and_every_family_with_exact_values() {
    // One poll per target and one discovery, so that the call counts below are exact.
    let bed = start_unthrottled(world(), "interval: 1h\ndiscovery_interval: 1h\naccounts:\n  - name: test\n    regions: [us-east-1]\n    codepipeline:\n      discover: false\n").await;
    wait_for(&bed.exporter, "ready", |_| bed.exporter.readiness.is_ready()).await;
    let text = scrape(&bed.exporter).await;
    let series: String = text.lines().filter(|l| l.starts_with("aws_codeconnections_")).map(|l| format!("{l}\n")).collect();
    assert_eq!(series, EXPECTED);
    assert!(!text.contains("is invalid") && !text.contains("ext-1"), "event texts and IDs never become labels");
    assert_eq!(bed.simulator.calls("ListRepositoryLinks"), 2, "three links in pages of two");
    // One page per link and sync type; link A's three configurations take two pages.
    assert_eq!(bed.simulator.calls("ListSyncConfigurations"), 4);
    let s = samples(&text);
    assert_eq!(
        value(&s, &target_up("repository_sync", &format!("{LINK_A}/feature/new/CFN_STACK_SYNC"))),
        Some(1.0),
        "a branch that never synced is up"
    );
    assert_eq!(value(&s, &target_up("resource_sync", "feature-infra/CFN_STACK_SYNC")), Some(1.0));
    assert_eq!(
        error_count(&s, "codeconnections", "GetRepositorySyncStatus", "ResourceNotFoundException"),
        None,
        "never synced is an answer, not an error"
    );
    assert_eq!(
        value(&s, "codepipeline_exporter_aws_requests_total{service=\"codeconnections\",operation=\"GetRepositorySyncStatus\"}"),
        Some(4.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_failed_attempt_and_its_events_are_counted_once() {
    let bed = start_unthrottled(world(), FAST).await;
    let s = wait_for(&bed.exporter, "the first poll", |s| value(s, &repo_status("main", "SUCCEEDED")) == Some(1.0)).await;
    assert_eq!(value(&s, &attempts("main", "SUCCEEDED")), Some(0.0), "an attempt from before start-up is not counted");

    let key = (LINK_A.to_string(), "main".to_string(), "CFN_STACK_SYNC".to_string());
    let started = SimSyncAttempt {
        started_at: 1_700_001_000.0,
        status: "IN_PROGRESS".into(),
        events: vec![event(1_700_001_001.0, "INFO", "Fetching changes from the repository")],
    };
    bed.simulator.world().repository_syncs.insert(key.clone(), started.clone());
    let s = wait_for(&bed.exporter, "in progress", |s| value(s, &repo_status("main", "IN_PROGRESS")) == Some(1.0)).await;
    assert_eq!(value(&s, &events("main", "INFO")), Some(1.0));

    let mut failed = started;
    failed.status = "FAILED".into();
    failed.events.push(event(1_700_001_060.0, "ERROR", "Stack rollback"));
    bed.simulator.world().repository_syncs.insert(key, failed);
    wait_for(&bed.exporter, "the failure counted", |s| value(s, &attempts("main", "FAILED")) == Some(1.0)).await;
    wait_for_calls(&bed.simulator, "GetRepositorySyncStatus", 8).await;
    let s = samples(&scrape(&bed.exporter).await);
    assert_eq!(value(&s, &attempts("main", "FAILED")), Some(1.0), "the same attempt seen again is not counted again");
    assert_eq!(value(&s, &attempts("main", "SUCCEEDED")), Some(0.0));
    assert_eq!(value(&s, &events("main", "INFO")), Some(1.0));
    assert_eq!(value(&s, &events("main", "ERROR")), Some(1.0));
    assert_eq!(value(&s, &repo_status("main", "FAILED")), Some(1.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_distinct_event_types_make_at_most_17_series() {
    let bed = start_unthrottled(world(), FAST).await;
    wait_for(&bed.exporter, "the first poll", |s| value(s, &repo_status("main", "SUCCEEDED")) == Some(1.0)).await;
    // Four shapes in turn: a token, free text, lower case, and a token of 37 characters.
    let kind = |i: usize| match i % 4 {
        0 => format!("EVENT_{i:04}"),
        1 => format!("Deployment {i} of the stack started"),
        2 => format!("event_{i}"),
        _ => format!("VERY_LONG_EVENT_TYPE_NAME_NUMBER_{i:04}"),
    };
    let attempt = SimSyncAttempt {
        started_at: 1_700_001_000.0,
        status: "IN_PROGRESS".into(),
        events: (0..1000).map(|i| event(1_700_001_000.0 + i as f64, &kind(i), "Event")).collect(),
    };
    bed.simulator.world().repository_syncs.insert((LINK_A.into(), "main".into(), "CFN_STACK_SYNC".into()), attempt);
    let s = wait_for(&bed.exporter, "the events", |s| value(s, &repo_status("main", "IN_PROGRESS")) == Some(1.0)).await;
    let series: Vec<(&String, &f64)> = s
        .iter()
        .filter(|(k, _)| k.starts_with("aws_codeconnections_repository_sync_events_total{") && k.contains("branch=\"main\","))
        .collect();
    // The first 16 tokens keep their names; the other 984 values count as `other`.
    let mut expected: Vec<(String, f64)> = (0..16).map(|n| (events("main", &format!("EVENT_{:04}", n * 4)), 1.0)).collect();
    expected.push((events("main", "other"), 984.0));
    expected.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(series.into_iter().map(|(k, v)| (k.clone(), *v)).collect::<Vec<_>>(), expected);
}

/// AWS's model makes an event's type a free string and documents no values. A type that is not
/// shaped like an enum token (quotes, a backslash, a line feed, non-ASCII letters, 10,000
/// characters) is counted as `other`, so no label ever holds it; the tokens keep their names.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn free_text_event_types_count_as_other_and_never_become_labels() {
    let bed = start_unthrottled(world(), FAST).await;
    wait_for(&bed.exporter, "the first poll", |s| value(s, &repo_status("main", "SUCCEEDED")) == Some(1.0)).await;
    let long = "Stack update in progress ".repeat(400);
    assert_eq!(long.len(), 10_000);
    let kinds = [
        "INFO",
        "Stack \"prod-infra\" failed",
        "C:\\deploy\\stack.yaml",
        "line one\nline two",
        "Échec du déploiement ✗",
        "ÉCHEC",
        long.as_str(),
        "ERROR",
    ];
    let attempt = SimSyncAttempt {
        started_at: 1_700_003_000.0,
        status: "IN_PROGRESS".into(),
        events: kinds.iter().enumerate().map(|(i, kind)| event(1_700_003_001.0 + i as f64, kind, kind)).collect(),
    };
    bed.simulator.world().repository_syncs.insert((LINK_A.into(), "main".into(), "CFN_STACK_SYNC".into()), attempt);
    wait_for(&bed.exporter, "the events", |s| value(s, &repo_status("main", "IN_PROGRESS")) == Some(1.0)).await;
    let text = scrape(&bed.exporter).await;
    let series: String = text
        .lines()
        .filter(|l| l.starts_with("aws_codeconnections_repository_sync_events_total{") && l.contains("branch=\"main\","))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(series, format!("{} 1\n{} 1\n{} 6\n", events("main", "ERROR"), events("main", "INFO"), events("main", "other")));
    for fragment in ["prod-infra\\\" failed", "deploy\\\\stack", "line two", "déploiement", "ÉCHEC", "Stack update in progress"]
    {
        assert!(!text.contains(fragment), "{fragment:?} is in the exposition");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_sync_of_a_branch_that_never_synced_is_counted() {
    let bed = start_unthrottled(world(), FAST).await;
    let never = repo_status("feature/new", "SUCCEEDED");
    let s = wait_for(&bed.exporter, "the first poll", |s| value(s, &never) == Some(0.0)).await;
    assert_eq!(value(&s, &attempts("feature/new", "SUCCEEDED")), Some(0.0));
    bed.simulator.world().repository_syncs.insert(
        (LINK_A.into(), "feature/new".into(), "CFN_STACK_SYNC".into()),
        SimSyncAttempt {
            started_at: 1_700_002_000.0,
            status: "SUCCEEDED".into(),
            events: vec![event(1_700_002_001.0, "INFO", "Fetching changes from the repository")],
        },
    );
    wait_for(&bed.exporter, "the first sync", |s| value(s, &never) == Some(1.0)).await;
    wait_for_calls(&bed.simulator, "GetRepositorySyncStatus", 8).await;
    let s = samples(&scrape(&bed.exporter).await);
    assert_eq!(value(&s, &attempts("feature/new", "SUCCEEDED")), Some(1.0));
    assert_eq!(value(&s, &events("feature/new", "INFO")), Some(1.0));
}

fn stack_attempt(started_at: f64, status: &str) -> SimSyncAttempt {
    SimSyncAttempt { started_at, status: status.into(), events: Vec::new() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stack_falls_behind_its_branch_and_catches_up_and_each_attempt_is_counted_once() {
    let bed = start_unthrottled(world(), FAST).await;
    wait_for(&bed.exporter, "the first polls", |_| bed.exporter.readiness.is_ready()).await;
    let s = samples(&scrape(&bed.exporter).await);
    assert_eq!(value(&s, &behind("prod-infra")), Some(0.0));
    assert_eq!(
        value(&s, &stack_attempts("prod-infra", "SUCCEEDED")),
        Some(0.0),
        "an attempt from before start-up is not counted"
    );
    assert_eq!(value(&s, &stack_attempts("prod-infra", "FAILED")), Some(0.0));
    assert_eq!(value(&s, &behind("staging-infra")), Some(1.0), "its latest sync failed: another commit is deployed");
    assert_eq!(value(&s, &stack_attempts("staging-infra", "FAILED")), Some(0.0));
    assert_eq!(value(&s, &behind("feature-infra")), None, "never synced: neither at its branch nor behind it");
    assert_eq!(value(&s, &stack_attempts("feature-infra", "SUCCEEDED")), Some(0.0));

    // A push to main: a sync of the new commit starts, and the stack is behind until it succeeds.
    let key = ("prod-infra".to_string(), "CFN_STACK_SYNC".to_string());
    let deployed = stack_attempt(1_700_000_000.0, "SUCCEEDED");
    let sync = |latest: SimSyncAttempt, successful: SimSyncAttempt, successful_sha: Option<&str>| SimResourceSync {
        latest,
        latest_successful: Some(successful),
        sha: "bcd234".into(),
        successful_sha: successful_sha.map(str::to_string),
    };
    bed.simulator
        .world()
        .resource_syncs
        .insert(key.clone(), sync(stack_attempt(1_700_001_000.0, "IN_PROGRESS"), deployed.clone(), Some("abc123")));
    let s = wait_for(&bed.exporter, "behind", |s| value(s, &behind("prod-infra")) == Some(1.0)).await;
    assert_eq!(value(&s, &stack_attempts("prod-infra", "FAILED")), Some(0.0), "a running attempt is not counted");

    // The sync fails: still behind, and the failure counted once however often it is read.
    bed.simulator
        .world()
        .resource_syncs
        .insert(key.clone(), sync(stack_attempt(1_700_001_000.0, "FAILED"), deployed, Some("abc123")));
    wait_for(&bed.exporter, "the failure", |s| value(s, &stack_attempts("prod-infra", "FAILED")) == Some(1.0)).await;
    wait_for_calls(&bed.simulator, "GetResourceSyncStatus", 8).await;
    let s = samples(&scrape(&bed.exporter).await);
    assert_eq!(value(&s, &stack_attempts("prod-infra", "FAILED")), Some(1.0));
    assert_eq!(value(&s, &behind("prod-infra")), Some(1.0));

    // A second attempt deploys the commit: at the branch again.
    let fixed = stack_attempt(1_700_002_000.0, "SUCCEEDED");
    bed.simulator.world().resource_syncs.insert(key, sync(fixed.clone(), fixed, None));
    wait_for(&bed.exporter, "caught up", |s| value(s, &behind("prod-infra")) == Some(0.0)).await;
    wait_for_calls(&bed.simulator, "GetResourceSyncStatus", 8).await;
    let s = samples(&scrape(&bed.exporter).await);
    assert_eq!(value(&s, &stack_attempts("prod-infra", "SUCCEEDED")), Some(1.0));
    assert_eq!(value(&s, &stack_attempts("prod-infra", "FAILED")), Some(1.0));
    assert_eq!(value(&s, &behind("prod-infra")), Some(0.0));

    // A stack's first sync ever, after the exporter started, is a deployment to count.
    let first = stack_attempt(1_700_003_000.0, "SUCCEEDED");
    bed.simulator.world().resource_syncs.insert(
        ("feature-infra".to_string(), "CFN_STACK_SYNC".to_string()),
        SimResourceSync { latest: first.clone(), latest_successful: Some(first), sha: "cde345".into(), successful_sha: None },
    );
    let s = wait_for(&bed.exporter, "the first sync", |s| value(s, &behind("feature-infra")) == Some(0.0)).await;
    assert_eq!(value(&s, &stack_attempts("feature-infra", "SUCCEEDED")), Some(1.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_denied_on_discovery_keeps_explicit_targets_alive() {
    let simulator = codepipeline_exporter::simulator::Simulator::start(world()).await.unwrap();
    simulator.inject("ListRepositoryLinks", Fault::error(400, "AccessDeniedException"), 1_000);
    let yaml = format!(
        "interval: 150ms\ndiscovery_interval: 300ms\naccounts:\n  - name: test\n    regions: [us-east-1]\n    codepipeline:\n      discover: false\n    codeconnections:\n      repository_syncs:\n        - repository_link_id: {LINK_A}\n          branch: staging\n          resource_name: staging-infra\n"
    );
    let exporter = common::start_exporter_unthrottled(&simulator, &yaml).await;
    wait_for(&exporter, "the first round", |_| exporter.readiness.is_ready()).await;
    let s = wait_for(&exporter, "the explicit target polled", |s| {
        value(s, "aws_codeconnections_repository_sync_status{account=\"test\",region=\"us-east-1\",repository_link_id=\"11111111-aaaa-bbbb-cccc-000000000001\",repository=\"unknown\",branch=\"staging\",sync_type=\"CFN_STACK_SYNC\",status=\"FAILED\"}") == Some(1.0)
    })
    .await;
    assert_eq!(value(&s, &target_up("discovery", "codeconnections")), Some(0.0));
    assert_eq!(value(&s, &target_up("repository_sync", &format!("{LINK_A}/staging/CFN_STACK_SYNC"))), Some(1.0));
    assert_eq!(
        value(
            &s,
            "aws_codeconnections_resource_sync_status{account=\"test\",region=\"us-east-1\",resource_name=\"staging-infra\",sync_type=\"CFN_STACK_SYNC\",status=\"FAILED\"}"
        ),
        Some(1.0)
    );
    assert!(error_count(&s, "codeconnections", "ListRepositoryLinks", "AccessDeniedException").is_some_and(|n| n >= 1.0));
    assert_eq!(
        s.keys().filter(|k| k.starts_with("aws_codeconnections_repository_sync_status{")).count(),
        5,
        "only the explicit target"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_in_cbor_is_counted_and_values_are_kept() {
    let bed = start_unthrottled(world(), FAST).await;
    wait_for(&bed.exporter, "the first poll", |s| value(s, &repo_status("staging", "FAILED")) == Some(1.0)).await;
    bed.simulator.inject("GetRepositorySyncStatus", Fault::error(429, "ThrottlingException"), 60);
    let s = wait_for(&bed.exporter, "throttled", |s| {
        error_count(s, "codeconnections", "GetRepositorySyncStatus", "ThrottlingException").is_some()
    })
    .await;
    assert_eq!(value(&s, &repo_status("staging", "FAILED")), Some(1.0), "last known values are kept");
    bed.simulator.clear_faults();
    wait_for(&bed.exporter, "recovered", |s| {
        value(s, &target_up("repository_sync", &format!("{LINK_A}/staging/CFN_STACK_SYNC"))) == Some(1.0)
            && value(s, &target_up("repository_sync", &format!("{LINK_A}/main/CFN_STACK_SYNC"))) == Some(1.0)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removed_sync_configurations_and_links_disappear() {
    let bed = start_unthrottled(world(), FAST).await;
    wait_for(&bed.exporter, "ready", |_| bed.exporter.readiness.is_ready()).await;
    {
        let mut world = bed.simulator.world();
        world.repository_links.remove(LINK_B);
        world.sync_configurations.retain(|c| c.branch != "staging");
    }
    let s = wait_for(&bed.exporter, "removal", |s| !s.keys().any(|k| k.contains("acme/network") || k.contains("staging"))).await;
    assert!(!s.keys().any(|k| k.contains("prod-network") || k.contains("staging-infra")), "their resources go too");
    assert_eq!(value(&s, &repo_status("main", "SUCCEEDED")), Some(1.0));
}

/// Scrapes until `done` holds, for up to 90 s: the demo's steps come tens of seconds apart, beyond
/// what `wait_for` waits.
async fn wait_long(exporter: &Running, what: &str, done: impl Fn(&BTreeMap<String, f64>) -> bool) -> BTreeMap<String, f64> {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let s = samples(&scrape(exporter).await);
        if done(&s) {
            return s;
        }
        assert!(Instant::now() < deadline, "the demo never showed {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The demo's timeline as the exporter sees it, with the demo started 15 seconds ago: prod-platform
/// is at its branch, falls behind with the push 20 s in, and catches up when that sync succeeds at
/// 55 s; observability's second blocker, created 40 s before the start, is resolved at 60 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn within_90_seconds_the_demo_shows_a_stack_behind_its_branch_and_a_blocker_resolved() {
    // A whole second, so that the blocker's time to resolve is exact.
    let started = (demo::unix_now() - 15.0).floor();
    let simulator = Simulator::start(demo::world(started)).await.unwrap();
    tokio::spawn(demo::run(simulator.clone(), started));
    let exporter = start_exporter_unthrottled(
        &simulator,
        "interval: 500ms\nactive_interval: 500ms\naccounts:\n  - name: test\n    regions: [us-east-1]\n    codepipeline:\n      discover: false\n",
    )
    .await;
    let labels =
        |stack: &str| format!("account=\"test\",region=\"us-east-1\",resource_name=\"{stack}\",sync_type=\"CFN_STACK_SYNC\"");
    let behind = format!("aws_codeconnections_resource_sync_behind{{{}}}", labels("prod-platform"));
    let succeeded =
        format!("aws_codeconnections_resource_sync_attempts_total{{{},status=\"SUCCEEDED\"}}", labels("prod-platform"));
    let active = format!("aws_codeconnections_sync_blockers_active{{{}}}", labels("observability"));
    let resolved = format!("aws_codeconnections_sync_blockers_resolved_total{{{}}}", labels("observability"));
    let resolve_time = format!("aws_codeconnections_sync_blocker_resolve_duration_seconds_sum{{{}}}", labels("observability"));

    wait_for(&exporter, "ready", |_| exporter.readiness.is_ready()).await;
    let s = samples(&scrape(&exporter).await);
    assert_eq!(value(&s, &behind), Some(0.0), "at its branch");
    assert_eq!(value(&s, &active), Some(2.0));
    let s = wait_long(&exporter, "the stack behind", |s| value(s, &behind) == Some(1.0)).await;
    assert_eq!(value(&s, &succeeded), Some(0.0));
    let s = wait_long(&exporter, "the stack caught up", |s| value(s, &behind) == Some(0.0)).await;
    assert_eq!(value(&s, &succeeded), Some(1.0), "the sync that caught up, counted");
    let s = wait_long(&exporter, "the blocker resolved", |s| value(s, &resolved) == Some(1.0)).await;
    assert_eq!(value(&s, &resolve_time), Some(100.0));
    assert_eq!(value(&s, &active), Some(1.0), "the old blocker stays until 5 minutes in");
    assert!(demo::unix_now() - started < 90.0, "all within 90 s of the demo's start");
}
