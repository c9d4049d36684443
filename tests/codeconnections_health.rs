//! CodeConnections health through the real SDK against the simulated RPC v2 CBOR endpoint:
//! connections, hosts and sync blockers, with exact values.

mod common;

use std::collections::BTreeMap;

use codepipeline_exporter::simulator::{
    Fault, SimConnection, SimHost, SimRepositoryLink, SimSyncBlocker, SimSyncConfiguration, World,
};
use common::{error_count, family, samples, scrape, start_unthrottled, target_up, value, wait_for, wait_for_calls};

const FAST: &str = "interval: 150ms\nactive_interval: 150ms\ndiscovery_interval: 300ms\naccounts:\n  - name: test\n    regions: [us-east-1]\n    codepipeline:\n      discover: false\n";

const LINK: &str = "11111111-aaaa-bbbb-cccc-000000000001";
const HOST: &str = "arn:aws:codeconnections:us-east-1:111122223333:host/ghes-1";

fn arn(id: &str) -> String {
    format!("arn:aws:codeconnections:us-east-1:111122223333:connection/{id}")
}

fn host(id: &str, name: &str, status: &str) -> SimHost {
    SimHost {
        arn: format!("arn:aws:codeconnections:us-east-1:111122223333:host/{id}"),
        name: name.into(),
        provider_type: "GitHubEnterpriseServer".into(),
        provider_endpoint: format!("https://{name}.example.com"),
        status: status.into(),
    }
}

fn blocker(id: &str, status: &str, created_at: f64) -> SimSyncBlocker {
    SimSyncBlocker {
        id: id.into(),
        status: status.into(),
        created_at,
        created_reason: "Stack is in UPDATE_ROLLBACK_FAILED".into(),
        resolved_at: (status == "RESOLVED").then_some(created_at + 60.0),
    }
}

/// Three connections and three hosts in pages of two; two synced stacks, one of them blocked
/// twice (the older blocker resolved before the exporter starts: history, never counted), the
/// other never blocked.
fn world() -> World {
    let mut world = World { page_size: 2, ..World::default() };
    let mut ghes = SimConnection::new("c3", "acme-ghes", "GitHubEnterpriseServer", "AVAILABLE");
    ghes.host_arn = Some(HOST.into());
    for connection in [
        SimConnection::new("c1", "acme-github", "GitHub", "AVAILABLE"),
        SimConnection::new("c2", "acme-gitlab", "GitLab", "PENDING"),
        ghes,
    ] {
        world.connections.insert(connection.arn.clone(), connection);
    }
    for host in [
        host("ghes-1", "ghes", "AVAILABLE"),
        host("ghes-2", "ghes-new", "VPC_CONFIG_INITIALIZING"),
        host("ghes-3", "ghes-odd", "SOMETHING_NEW"),
    ] {
        world.hosts.insert(host.arn.clone(), host);
    }
    let link = SimRepositoryLink::new(LINK, "GitHub", "acme", "infra");
    world.repository_links.insert(link.id.clone(), link);
    for (branch, stack) in [("main", "prod-infra"), ("staging", "staging-infra")] {
        world.sync_configurations.push(SimSyncConfiguration {
            repository_link_id: LINK.into(),
            branch: branch.into(),
            sync_type: "CFN_STACK_SYNC".into(),
            resource_name: stack.into(),
            config_file: None,
        });
    }
    world.sync_blockers.insert(
        ("prod-infra".into(), "CFN_STACK_SYNC".into()),
        vec![
            blocker("b3", "ACTIVE", 1_700_000_300.0),
            blocker("b2", "ACTIVE", 1_700_000_200.5),
            blocker("b1", "RESOLVED", 1_700_000_100.0),
        ],
    );
    world
}

/// The series of every family this test is about, in the order of a scrape.
fn health(samples: &BTreeMap<String, f64>) -> String {
    samples
        .iter()
        .filter(|(series, _)| {
            ["connection_", "host_", "sync_blocker"].iter().any(|f| series.starts_with(&format!("aws_codeconnections_{f}")))
        })
        .map(|(series, value)| format!("{series} {value}\n"))
        .collect()
}

fn connection_status(id: &str, status: &str) -> String {
    format!(
        "aws_codeconnections_connection_status{{account=\"test\",region=\"us-east-1\",connection_arn=\"{}\",status=\"{status}\"}}",
        arn(id)
    )
}

fn blockers_active(stack: &str) -> String {
    format!(
        "aws_codeconnections_sync_blockers_active{{account=\"test\",region=\"us-east-1\",resource_name=\"{stack}\",sync_type=\"CFN_STACK_SYNC\"}}"
    )
}

fn oldest_blocker(stack: &str) -> String {
    format!(
        "aws_codeconnections_sync_blocker_oldest_active_created_timestamp_seconds{{account=\"test\",region=\"us-east-1\",resource_name=\"{stack}\",sync_type=\"CFN_STACK_SYNC\"}}"
    )
}

fn blockers_resolved(stack: &str) -> String {
    format!(
        "aws_codeconnections_sync_blockers_resolved_total{{account=\"test\",region=\"us-east-1\",resource_name=\"{stack}\",sync_type=\"CFN_STACK_SYNC\"}}"
    )
}

/// A series of the time-to-resolve histogram: `_bucket` with its `le`, `_sum` or `_count`.
fn resolve_duration(stack: &str, suffix: &str, le: Option<&str>) -> String {
    let le = le.map(|le| format!(",le=\"{le}\"")).unwrap_or_default();
    format!(
        "aws_codeconnections_sync_blocker_resolve_duration_seconds_{suffix}{{account=\"test\",region=\"us-east-1\",resource_name=\"{stack}\",sync_type=\"CFN_STACK_SYNC\"{le}}}"
    )
}

const EXPECTED: &str = r#"aws_codeconnections_connection_info{account="test",region="us-east-1",connection_arn="arn:aws:codeconnections:us-east-1:111122223333:connection/c1",connection_name="acme-github",provider_type="GitHub",host_arn=""} 1
aws_codeconnections_connection_info{account="test",region="us-east-1",connection_arn="arn:aws:codeconnections:us-east-1:111122223333:connection/c2",connection_name="acme-gitlab",provider_type="GitLab",host_arn=""} 1
aws_codeconnections_connection_info{account="test",region="us-east-1",connection_arn="arn:aws:codeconnections:us-east-1:111122223333:connection/c3",connection_name="acme-ghes",provider_type="GitHubEnterpriseServer",host_arn="arn:aws:codeconnections:us-east-1:111122223333:host/ghes-1"} 1
aws_codeconnections_connection_status{account="test",region="us-east-1",connection_arn="arn:aws:codeconnections:us-east-1:111122223333:connection/c1",status="AVAILABLE"} 1
aws_codeconnections_connection_status{account="test",region="us-east-1",connection_arn="arn:aws:codeconnections:us-east-1:111122223333:connection/c1",status="ERROR"} 0
aws_codeconnections_connection_status{account="test",region="us-east-1",connection_arn="arn:aws:codeconnections:us-east-1:111122223333:connection/c1",status="PENDING"} 0
aws_codeconnections_connection_status{account="test",region="us-east-1",connection_arn="arn:aws:codeconnections:us-east-1:111122223333:connection/c2",status="AVAILABLE"} 0
aws_codeconnections_connection_status{account="test",region="us-east-1",connection_arn="arn:aws:codeconnections:us-east-1:111122223333:connection/c2",status="ERROR"} 0
aws_codeconnections_connection_status{account="test",region="us-east-1",connection_arn="arn:aws:codeconnections:us-east-1:111122223333:connection/c2",status="PENDING"} 1
aws_codeconnections_connection_status{account="test",region="us-east-1",connection_arn="arn:aws:codeconnections:us-east-1:111122223333:connection/c3",status="AVAILABLE"} 1
aws_codeconnections_connection_status{account="test",region="us-east-1",connection_arn="arn:aws:codeconnections:us-east-1:111122223333:connection/c3",status="ERROR"} 0
aws_codeconnections_connection_status{account="test",region="us-east-1",connection_arn="arn:aws:codeconnections:us-east-1:111122223333:connection/c3",status="PENDING"} 0
aws_codeconnections_host_info{account="test",region="us-east-1",host_arn="arn:aws:codeconnections:us-east-1:111122223333:host/ghes-1",host_name="ghes",provider_type="GitHubEnterpriseServer",provider_endpoint="https://ghes.example.com"} 1
aws_codeconnections_host_info{account="test",region="us-east-1",host_arn="arn:aws:codeconnections:us-east-1:111122223333:host/ghes-2",host_name="ghes-new",provider_type="GitHubEnterpriseServer",provider_endpoint="https://ghes-new.example.com"} 1
aws_codeconnections_host_info{account="test",region="us-east-1",host_arn="arn:aws:codeconnections:us-east-1:111122223333:host/ghes-3",host_name="ghes-odd",provider_type="GitHubEnterpriseServer",provider_endpoint="https://ghes-odd.example.com"} 1
aws_codeconnections_host_status{account="test",region="us-east-1",host_arn="arn:aws:codeconnections:us-east-1:111122223333:host/ghes-1",status="AVAILABLE"} 1
aws_codeconnections_host_status{account="test",region="us-east-1",host_arn="arn:aws:codeconnections:us-east-1:111122223333:host/ghes-1",status="PENDING"} 0
aws_codeconnections_host_status{account="test",region="us-east-1",host_arn="arn:aws:codeconnections:us-east-1:111122223333:host/ghes-1",status="VPC_CONFIG_DELETING"} 0
aws_codeconnections_host_status{account="test",region="us-east-1",host_arn="arn:aws:codeconnections:us-east-1:111122223333:host/ghes-1",status="VPC_CONFIG_FAILED_INITIALIZATION"} 0
aws_codeconnections_host_status{account="test",region="us-east-1",host_arn="arn:aws:codeconnections:us-east-1:111122223333:host/ghes-1",status="VPC_CONFIG_INITIALIZING"} 0
aws_codeconnections_host_status{account="test",region="us-east-1",host_arn="arn:aws:codeconnections:us-east-1:111122223333:host/ghes-2",status="AVAILABLE"} 0
aws_codeconnections_host_status{account="test",region="us-east-1",host_arn="arn:aws:codeconnections:us-east-1:111122223333:host/ghes-2",status="PENDING"} 0
aws_codeconnections_host_status{account="test",region="us-east-1",host_arn="arn:aws:codeconnections:us-east-1:111122223333:host/ghes-2",status="VPC_CONFIG_DELETING"} 0
aws_codeconnections_host_status{account="test",region="us-east-1",host_arn="arn:aws:codeconnections:us-east-1:111122223333:host/ghes-2",status="VPC_CONFIG_FAILED_INITIALIZATION"} 0
aws_codeconnections_host_status{account="test",region="us-east-1",host_arn="arn:aws:codeconnections:us-east-1:111122223333:host/ghes-2",status="VPC_CONFIG_INITIALIZING"} 1
aws_codeconnections_host_status{account="test",region="us-east-1",host_arn="arn:aws:codeconnections:us-east-1:111122223333:host/ghes-3",status="AVAILABLE"} 0
aws_codeconnections_host_status{account="test",region="us-east-1",host_arn="arn:aws:codeconnections:us-east-1:111122223333:host/ghes-3",status="PENDING"} 0
aws_codeconnections_host_status{account="test",region="us-east-1",host_arn="arn:aws:codeconnections:us-east-1:111122223333:host/ghes-3",status="SOMETHING_NEW"} 1
aws_codeconnections_host_status{account="test",region="us-east-1",host_arn="arn:aws:codeconnections:us-east-1:111122223333:host/ghes-3",status="VPC_CONFIG_DELETING"} 0
aws_codeconnections_host_status{account="test",region="us-east-1",host_arn="arn:aws:codeconnections:us-east-1:111122223333:host/ghes-3",status="VPC_CONFIG_FAILED_INITIALIZATION"} 0
aws_codeconnections_host_status{account="test",region="us-east-1",host_arn="arn:aws:codeconnections:us-east-1:111122223333:host/ghes-3",status="VPC_CONFIG_INITIALIZING"} 0
aws_codeconnections_sync_blocker_oldest_active_created_timestamp_seconds{account="test",region="us-east-1",resource_name="prod-infra",sync_type="CFN_STACK_SYNC"} 1700000200.5
aws_codeconnections_sync_blocker_resolve_duration_seconds_bucket{account="test",region="us-east-1",resource_name="prod-infra",sync_type="CFN_STACK_SYNC",le="+Inf"} 0
aws_codeconnections_sync_blocker_resolve_duration_seconds_bucket{account="test",region="us-east-1",resource_name="prod-infra",sync_type="CFN_STACK_SYNC",le="14400"} 0
aws_codeconnections_sync_blocker_resolve_duration_seconds_bucket{account="test",region="us-east-1",resource_name="prod-infra",sync_type="CFN_STACK_SYNC",le="1800"} 0
aws_codeconnections_sync_blocker_resolve_duration_seconds_bucket{account="test",region="us-east-1",resource_name="prod-infra",sync_type="CFN_STACK_SYNC",le="259200"} 0
aws_codeconnections_sync_blocker_resolve_duration_seconds_bucket{account="test",region="us-east-1",resource_name="prod-infra",sync_type="CFN_STACK_SYNC",le="300"} 0
aws_codeconnections_sync_blocker_resolve_duration_seconds_bucket{account="test",region="us-east-1",resource_name="prod-infra",sync_type="CFN_STACK_SYNC",le="3600"} 0
aws_codeconnections_sync_blocker_resolve_duration_seconds_bucket{account="test",region="us-east-1",resource_name="prod-infra",sync_type="CFN_STACK_SYNC",le="43200"} 0
aws_codeconnections_sync_blocker_resolve_duration_seconds_bucket{account="test",region="us-east-1",resource_name="prod-infra",sync_type="CFN_STACK_SYNC",le="60"} 0
aws_codeconnections_sync_blocker_resolve_duration_seconds_bucket{account="test",region="us-east-1",resource_name="prod-infra",sync_type="CFN_STACK_SYNC",le="604800"} 0
aws_codeconnections_sync_blocker_resolve_duration_seconds_bucket{account="test",region="us-east-1",resource_name="prod-infra",sync_type="CFN_STACK_SYNC",le="86400"} 0
aws_codeconnections_sync_blocker_resolve_duration_seconds_bucket{account="test",region="us-east-1",resource_name="prod-infra",sync_type="CFN_STACK_SYNC",le="900"} 0
aws_codeconnections_sync_blocker_resolve_duration_seconds_bucket{account="test",region="us-east-1",resource_name="staging-infra",sync_type="CFN_STACK_SYNC",le="+Inf"} 0
aws_codeconnections_sync_blocker_resolve_duration_seconds_bucket{account="test",region="us-east-1",resource_name="staging-infra",sync_type="CFN_STACK_SYNC",le="14400"} 0
aws_codeconnections_sync_blocker_resolve_duration_seconds_bucket{account="test",region="us-east-1",resource_name="staging-infra",sync_type="CFN_STACK_SYNC",le="1800"} 0
aws_codeconnections_sync_blocker_resolve_duration_seconds_bucket{account="test",region="us-east-1",resource_name="staging-infra",sync_type="CFN_STACK_SYNC",le="259200"} 0
aws_codeconnections_sync_blocker_resolve_duration_seconds_bucket{account="test",region="us-east-1",resource_name="staging-infra",sync_type="CFN_STACK_SYNC",le="300"} 0
aws_codeconnections_sync_blocker_resolve_duration_seconds_bucket{account="test",region="us-east-1",resource_name="staging-infra",sync_type="CFN_STACK_SYNC",le="3600"} 0
aws_codeconnections_sync_blocker_resolve_duration_seconds_bucket{account="test",region="us-east-1",resource_name="staging-infra",sync_type="CFN_STACK_SYNC",le="43200"} 0
aws_codeconnections_sync_blocker_resolve_duration_seconds_bucket{account="test",region="us-east-1",resource_name="staging-infra",sync_type="CFN_STACK_SYNC",le="60"} 0
aws_codeconnections_sync_blocker_resolve_duration_seconds_bucket{account="test",region="us-east-1",resource_name="staging-infra",sync_type="CFN_STACK_SYNC",le="604800"} 0
aws_codeconnections_sync_blocker_resolve_duration_seconds_bucket{account="test",region="us-east-1",resource_name="staging-infra",sync_type="CFN_STACK_SYNC",le="86400"} 0
aws_codeconnections_sync_blocker_resolve_duration_seconds_bucket{account="test",region="us-east-1",resource_name="staging-infra",sync_type="CFN_STACK_SYNC",le="900"} 0
aws_codeconnections_sync_blocker_resolve_duration_seconds_count{account="test",region="us-east-1",resource_name="prod-infra",sync_type="CFN_STACK_SYNC"} 0
aws_codeconnections_sync_blocker_resolve_duration_seconds_count{account="test",region="us-east-1",resource_name="staging-infra",sync_type="CFN_STACK_SYNC"} 0
aws_codeconnections_sync_blocker_resolve_duration_seconds_sum{account="test",region="us-east-1",resource_name="prod-infra",sync_type="CFN_STACK_SYNC"} 0
aws_codeconnections_sync_blocker_resolve_duration_seconds_sum{account="test",region="us-east-1",resource_name="staging-infra",sync_type="CFN_STACK_SYNC"} 0
aws_codeconnections_sync_blockers_active{account="test",region="us-east-1",resource_name="prod-infra",sync_type="CFN_STACK_SYNC"} 2
aws_codeconnections_sync_blockers_active{account="test",region="us-east-1",resource_name="staging-infra",sync_type="CFN_STACK_SYNC"} 0
aws_codeconnections_sync_blockers_resolved_total{account="test",region="us-east-1",resource_name="prod-infra",sync_type="CFN_STACK_SYNC"} 0
aws_codeconnections_sync_blockers_resolved_total{account="test",region="us-east-1",resource_name="staging-infra",sync_type="CFN_STACK_SYNC"} 0
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_health_family_has_exact_values_across_pages() {
    let bed = start_unthrottled(world(), "interval: 1h\ndiscovery_interval: 1h\naccounts:\n  - name: test\n    regions: [us-east-1]\n    codepipeline:\n      discover: false\n").await;
    wait_for(&bed.exporter, "ready", |_| bed.exporter.readiness.is_ready()).await;
    let s = samples(&scrape(&bed.exporter).await);
    assert_eq!(health(&s), EXPECTED);
    assert_eq!(bed.simulator.calls("ListConnections"), 2, "three connections in pages of two");
    assert_eq!(bed.simulator.calls("ListHosts"), 2, "three hosts in pages of two");
    assert_eq!(bed.simulator.calls("GetSyncBlockerSummary"), 2, "one per synced stack");
    for (kind, name) in [("connections", "all"), ("hosts", "all"), ("sync_blocker", "prod-infra/CFN_STACK_SYNC")] {
        assert_eq!(value(&s, &target_up(kind, name)), Some(1.0), "{kind}");
    }
    // A stack that was never blocked has no summary: an answer, not an error.
    assert_eq!(value(&s, &target_up("sync_blocker", "staging-infra/CFN_STACK_SYNC")), Some(1.0));
    assert_eq!(error_count(&s, "codeconnections", "GetSyncBlockerSummary", "ResourceNotFoundException"), None);
    assert_eq!(
        value(&s, "codepipeline_exporter_aws_requests_total{service=\"codeconnections\",operation=\"GetSyncBlockerSummary\"}"),
        Some(2.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_goes_to_error_and_back_and_a_deleted_one_disappears() {
    let bed = start_unthrottled(world(), FAST).await;
    wait_for(&bed.exporter, "c1 available", |s| value(s, &connection_status("c1", "AVAILABLE")) == Some(1.0)).await;
    bed.simulator.world().connections.get_mut(&arn("c1")).unwrap().status = "ERROR".into();
    let s = wait_for(&bed.exporter, "c1 in error", |s| value(s, &connection_status("c1", "ERROR")) == Some(1.0)).await;
    assert_eq!(value(&s, &connection_status("c1", "AVAILABLE")), Some(0.0));
    assert_eq!(value(&s, &connection_status("c1", "PENDING")), Some(0.0));
    bed.simulator.world().connections.get_mut(&arn("c1")).unwrap().status = "AVAILABLE".into();
    wait_for(&bed.exporter, "c1 available again", |s| {
        value(s, &connection_status("c1", "AVAILABLE")) == Some(1.0) && value(s, &connection_status("c1", "ERROR")) == Some(0.0)
    })
    .await;

    bed.simulator.world().connections.remove(&arn("c2"));
    let s = wait_for(&bed.exporter, "c2 gone", |s| !s.contains_key(&connection_status("c2", "PENDING"))).await;
    let text = scrape(&bed.exporter).await;
    assert!(!text.contains("connection/c2"), "no series of the deleted connection is left");
    assert_eq!(family(&text, "aws_codeconnections_connection_info").len(), 2);
    assert_eq!(value(&s, &target_up("connections", "all")), Some(1.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocker_appears_and_is_resolved() {
    let bed = start_unthrottled(world(), FAST).await;
    wait_for(&bed.exporter, "ready", |_| bed.exporter.readiness.is_ready()).await;
    let s = samples(&scrape(&bed.exporter).await);
    assert_eq!(value(&s, &blockers_active("staging-infra")), Some(0.0));
    assert_eq!(value(&s, &blockers_resolved("prod-infra")), Some(0.0), "b1 was resolved before start-up: history");
    assert_eq!(value(&s, &resolve_duration("prod-infra", "count", None)), Some(0.0));
    let key = ("staging-infra".to_string(), "CFN_STACK_SYNC".to_string());
    bed.simulator.world().sync_blockers.insert(key.clone(), vec![blocker("s1", "ACTIVE", 1_700_000_500.0)]);
    let s = wait_for(&bed.exporter, "staging blocked", |s| value(s, &blockers_active("staging-infra")) == Some(1.0)).await;
    assert_eq!(value(&s, &oldest_blocker("staging-infra")), Some(1_700_000_500.0));
    assert_eq!(value(&s, &blockers_resolved("staging-infra")), Some(0.0));

    // Resolved 12 minutes 34.5 seconds after it was created.
    let resolved = SimSyncBlocker { resolved_at: Some(1_700_001_254.5), ..blocker("s1", "RESOLVED", 1_700_000_500.0) };
    bed.simulator.world().sync_blockers.insert(key.clone(), vec![resolved.clone()]);
    let s = wait_for(&bed.exporter, "staging resolved", |s| value(s, &blockers_active("staging-infra")) == Some(0.0)).await;
    assert_eq!(value(&s, &oldest_blocker("staging-infra")), None, "the age is exported only while a blocker is active");
    assert_eq!(value(&s, &blockers_active("prod-infra")), Some(2.0));
    assert_eq!(value(&s, &blockers_resolved("staging-infra")), Some(1.0));
    assert_eq!(value(&s, &resolve_duration("staging-infra", "sum", None)), Some(754.5));
    assert_eq!(value(&s, &resolve_duration("staging-infra", "bucket", Some("300"))), Some(0.0));
    assert_eq!(value(&s, &resolve_duration("staging-infra", "bucket", Some("900"))), Some(1.0));

    // Read again and again, it is still one resolution; a blocker created and resolved between two
    // polls, first seen RESOLVED, is one more.
    wait_for_calls(&bed.simulator, "GetSyncBlockerSummary", 8).await;
    let quick = SimSyncBlocker { resolved_at: Some(1_700_002_030.0), ..blocker("s2", "RESOLVED", 1_700_002_000.0) };
    bed.simulator.world().sync_blockers.insert(key, vec![quick, resolved]);
    wait_for(&bed.exporter, "the second resolution", |s| value(s, &blockers_resolved("staging-infra")) == Some(2.0)).await;
    wait_for_calls(&bed.simulator, "GetSyncBlockerSummary", 8).await;
    let s = samples(&scrape(&bed.exporter).await);
    assert_eq!(value(&s, &blockers_resolved("staging-infra")), Some(2.0));
    let durations: Vec<(&str, Option<f64>)> = ["60", "300", "900", "+Inf"]
        .into_iter()
        .map(|le| (le, value(&s, &resolve_duration("staging-infra", "bucket", Some(le)))))
        .collect();
    assert_eq!(durations, [("60", Some(1.0)), ("300", Some(1.0)), ("900", Some(2.0)), ("+Inf", Some(2.0))]);
    assert_eq!(value(&s, &resolve_duration("staging-infra", "sum", None)), Some(784.5));
    assert_eq!(value(&s, &resolve_duration("staging-infra", "count", None)), Some(2.0));
    assert_eq!(value(&s, &blockers_resolved("prod-infra")), Some(0.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_denied_on_list_connections_keeps_every_other_target_alive() {
    let bed = start_unthrottled(world(), FAST).await;
    wait_for(&bed.exporter, "c2 pending", |s| value(s, &connection_status("c2", "PENDING")) == Some(1.0)).await;
    bed.simulator.inject("ListConnections", Fault::error(400, "AccessDeniedException"), 1000);
    let s = wait_for(&bed.exporter, "connections down", |s| value(s, &target_up("connections", "all")) == Some(0.0)).await;
    assert_eq!(value(&s, &connection_status("c2", "PENDING")), Some(1.0), "the last known values are kept");
    assert!(error_count(&s, "codeconnections", "ListConnections", "AccessDeniedException").is_some_and(|n| n >= 1.0));
    // Everything else goes on being polled and stays up.
    wait_for_calls(&bed.simulator, "ListHosts", 3).await;
    wait_for_calls(&bed.simulator, "GetSyncBlockerSummary", 3).await;
    let s = samples(&scrape(&bed.exporter).await);
    for (kind, name) in [
        ("hosts", "all"),
        ("discovery", "codeconnections"),
        ("sync_blocker", "prod-infra/CFN_STACK_SYNC"),
        ("resource_sync", "prod-infra/CFN_STACK_SYNC"),
        ("repository_sync", &format!("{LINK}/main/CFN_STACK_SYNC")),
    ] {
        assert_eq!(value(&s, &target_up(kind, name)), Some(1.0), "{kind} {name}");
    }
    assert_eq!(value(&s, &target_up("connections", "all")), Some(0.0));
    bed.simulator.clear_faults();
    wait_for(&bed.exporter, "connections up again", |s| value(s, &target_up("connections", "all")) == Some(1.0)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_and_blockers_can_be_turned_off() {
    let yaml = format!("{FAST}    codeconnections:\n      connections: false\n      blockers: false\n");
    let bed = start_unthrottled(world(), &yaml).await;
    wait_for(&bed.exporter, "ready", |_| bed.exporter.readiness.is_ready()).await;
    let s = samples(&scrape(&bed.exporter).await);
    assert_eq!(health(&s), "");
    assert_eq!(
        (bed.simulator.calls("ListConnections"), bed.simulator.calls("ListHosts"), bed.simulator.calls("GetSyncBlockerSummary")),
        (0, 0, 0)
    );
}

/// Every operation the CodeConnections collector calls.
const CODECONNECTIONS_OPERATIONS: [&str; 7] = [
    "ListRepositoryLinks",
    "ListSyncConfigurations",
    "GetRepositorySyncStatus",
    "GetResourceSyncStatus",
    "GetSyncBlockerSummary",
    "ListConnections",
    "ListHosts",
];

/// The `target_up` series of CodeConnections' targets in `region`.
fn codeconnections_targets(samples: &BTreeMap<String, f64>, region: &str) -> Vec<String> {
    let kinds = ["repository_sync", "resource_sync", "sync_blocker", "connections", "hosts"];
    samples
        .keys()
        .filter(|series| series.starts_with("codepipeline_exporter_target_up{"))
        .filter(|series| series.contains(&format!("region=\"{region}\"")))
        .filter(|series| {
            kinds.iter().any(|kind| series.contains(&format!("kind=\"{kind}\""))) || series.contains("name=\"codeconnections\"")
        })
        .cloned()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn codeconnections_off_for_an_account_makes_no_call_and_no_target() {
    let yaml = "interval: 150ms\nactive_interval: 150ms\ndiscovery_interval: 300ms\naccounts:\n  - name: test\n    regions: [us-east-1, eu-west-1]\n    codeconnections:\n      enabled: false\n";
    let bed = start_unthrottled(world(), yaml).await;
    wait_for(&bed.exporter, "ready", |_| bed.exporter.readiness.is_ready()).await;
    // Several discovery rounds of CodePipeline, so a CodeConnections collector would have called.
    wait_for_calls(&bed.simulator, "ListPipelines", 6).await;
    let s = samples(&scrape(&bed.exporter).await);
    for region in ["us-east-1", "eu-west-1"] {
        assert_eq!(codeconnections_targets(&s, region), Vec::<String>::new(), "{region}");
        assert_eq!(value(&s, &common::target_up_in("test", region, "discovery", "codepipeline")), Some(1.0));
    }
    let calls: Vec<(&str, u64)> = CODECONNECTIONS_OPERATIONS.iter().map(|op| (*op, bed.simulator.calls(op))).collect();
    assert_eq!(calls, CODECONNECTIONS_OPERATIONS.iter().map(|op| (*op, 0)).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn codeconnections_can_be_limited_to_some_of_an_accounts_regions() {
    let yaml = "interval: 150ms\nactive_interval: 150ms\ndiscovery_interval: 300ms\naccounts:\n  - name: test\n    regions: [us-east-1, eu-west-1]\n    codeconnections:\n      regions: [eu-west-1]\n";
    let bed = start_unthrottled(world(), yaml).await;
    wait_for(&bed.exporter, "ready", |_| bed.exporter.readiness.is_ready()).await;
    wait_for_calls(&bed.simulator, "ListHosts", 4).await;
    let s = samples(&scrape(&bed.exporter).await);
    assert_eq!(codeconnections_targets(&s, "us-east-1"), Vec::<String>::new());
    assert_eq!(codeconnections_targets(&s, "eu-west-1").len(), 9, "{:?}", codeconnections_targets(&s, "eu-west-1"));
    for op in CODECONNECTIONS_OPERATIONS {
        assert_eq!(bed.simulator.region_calls("us-east-1", op), 0, "{op} in us-east-1");
        assert_eq!(bed.simulator.region_calls("eu-west-1", op), bed.simulator.calls(op), "{op} in eu-west-1");
    }
    // CodePipeline still runs in both.
    assert!(bed.simulator.region_calls("us-east-1", "ListPipelines") >= 1);
}
