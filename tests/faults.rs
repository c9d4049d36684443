//! Fault injection through the real SDK, in both wire protocols: CodePipeline (awsJson 1.1) and
//! CodeConnections (RPC v2 CBOR). For every fault the process stays up, a scrape does not wait on
//! the failing call, the target shows down with its last values kept, the error is counted by
//! operation and code, and everything recovers at the first poll after the fault clears.

mod common;

use std::time::{Duration, Instant};

use codepipeline_exporter::simulator::{
    Fault, SimPipeline, SimRepositoryLink, SimSyncAttempt, SimSyncConfiguration, Simulator, World, execution_id,
};
use common::{scrape, start_exporter_unthrottled, value, wait_for};

const LINK: &str = "11111111-aaaa-bbbb-cccc-000000000001";
/// The exporter's configuration with a request timeout: long enough for the SDK to finish its
/// retries (three attempts with backoff) for most faults, so that the final error is the fault's
/// own and not a timeout; short for the fault that is a slow answer.
fn config(request_timeout: &str) -> String {
    format!(
        "interval: 1s\ndiscovery_interval: 1h\nrequest_timeout: {request_timeout}\naccounts:\n  - name: test\n    regions: [us-east-1]\n    codepipeline:\n      executions: false\n    codeconnections:\n      resource_syncs: false\n"
    )
}

const TIMEOUT: &str = "8s";

fn world() -> World {
    let mut world = World::default();
    let mut pipeline = SimPipeline::new("app", &[("Source", &["Source"]), ("Build", &["Build"])]);
    pipeline.stages[1].latest = Some((execution_id("e1"), "Succeeded".into()));
    world.pipelines.insert("app".into(), pipeline);
    world.repository_links.insert(LINK.into(), SimRepositoryLink::new(LINK, "GitHub", "acme", "infra"));
    world.sync_configurations.push(SimSyncConfiguration {
        repository_link_id: LINK.into(),
        branch: "main".into(),
        sync_type: "CFN_STACK_SYNC".into(),
        resource_name: "prod".into(),
        config_file: None,
    });
    world.repository_syncs.insert(
        (LINK.into(), "main".into(), "CFN_STACK_SYNC".into()),
        SimSyncAttempt { started_at: 1_700_000_000.0, status: "SUCCEEDED".into(), events: Vec::new() },
    );
    world
}

/// One protocol's polled target: the operation to break, the target's `up` series and a value
/// series whose last value must survive the fault.
struct Case {
    operation: &'static str,
    service: &'static str,
    up: String,
    kept: String,
}

fn json() -> Case {
    Case {
        operation: "GetPipelineState",
        service: "codepipeline",
        up: "codepipeline_exporter_target_up{account=\"test\",region=\"us-east-1\",kind=\"pipeline\",name=\"app\"}".into(),
        kept: "aws_codepipeline_stage_status{account=\"test\",region=\"us-east-1\",pipeline=\"app\",stage=\"Build\",status=\"Succeeded\"}".into(),
    }
}

fn cbor() -> Case {
    Case {
        operation: "GetRepositorySyncStatus",
        service: "codeconnections",
        up: format!(
            "codepipeline_exporter_target_up{{account=\"test\",region=\"us-east-1\",kind=\"repository_sync\",name=\"{LINK}/main/CFN_STACK_SYNC\"}}"
        ),
        kept: format!(
            "aws_codeconnections_repository_sync_status{{account=\"test\",region=\"us-east-1\",repository_link_id=\"{LINK}\",repository=\"acme/infra\",branch=\"main\",sync_type=\"CFN_STACK_SYNC\",status=\"SUCCEEDED\"}}"
        ),
    }
}

async fn survives(case: Case, fault: Fault, code: &str) {
    survives_within(case, fault, code, TIMEOUT).await;
}

async fn survives_within(case: Case, fault: Fault, code: &str, request_timeout: &str) {
    let simulator = Simulator::start(world()).await.unwrap();
    let exporter = start_exporter_unthrottled(&simulator, &config(request_timeout)).await;
    wait_for(&exporter, "the first poll", |s| value(s, &case.up) == Some(1.0)).await;

    simulator.inject(case.operation, fault, 10_000);
    let errors = format!(
        "codepipeline_exporter_aws_request_errors_total{{service=\"{}\",operation=\"{}\",code=\"{code}\"}}",
        case.service, case.operation
    );
    let s = wait_for(&exporter, "the target down", |s| {
        value(s, &case.up) == Some(0.0) && value(s, &errors).is_some_and(|n| n >= 1.0)
    })
    .await;
    assert_eq!(value(&s, &case.kept), Some(1.0), "the last known value is kept");

    // The exporter answers while calls fail or hang: a scrape never waits on AWS.
    let started = Instant::now();
    for _ in 0..5 {
        scrape(&exporter).await;
    }
    assert!(started.elapsed() < Duration::from_millis(400), "five scrapes took {:?} during the fault", started.elapsed());

    simulator.clear_faults();
    let cleared = Instant::now();
    let s = wait_for(&exporter, "recovery", |s| value(s, &case.up) == Some(1.0)).await;
    // The call in flight when the fault cleared may still be backing off before its last retry;
    // after it, the next poll comes one interval (1 s) later at most.
    let bound = Duration::from_secs(4) + codepipeline_exporter::yaml::parse_duration(request_timeout).unwrap();
    assert!(cleared.elapsed() < bound, "recovered after {:?}", cleared.elapsed());
    assert_eq!(value(&s, &case.kept), Some(1.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_json_400() {
    survives(json(), Fault::error(400, "ThrottlingException"), "ThrottlingException").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_cbor_429() {
    survives(cbor(), Fault::error(429, "ThrottlingException"), "ThrottlingException").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn internal_error_500_json() {
    survives(json(), Fault::error(500, "InternalFailure"), "InternalFailure").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn internal_error_500_cbor() {
    survives(cbor(), Fault::error(500, "InternalServerException"), "InternalServerException").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unavailable_503_json() {
    survives(json(), Fault::error(503, "ServiceUnavailableException"), "ServiceUnavailableException").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unavailable_503_cbor() {
    survives(cbor(), Fault::error(503, "ServiceUnavailableException"), "ServiceUnavailableException").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slower_than_the_request_timeout_json() {
    survives_within(json(), Fault::Delay(Duration::from_secs(3)), "Timeout", "500ms").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slower_than_the_request_timeout_cbor() {
    survives_within(cbor(), Fault::Delay(Duration::from_secs(3)), "Timeout", "500ms").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_reset_mid_response_json() {
    survives(json(), Fault::Reset, "ConnectionError").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_reset_mid_response_cbor() {
    survives(cbor(), Fault::Reset, "ConnectionError").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_body_json() {
    survives(json(), Fault::Malformed, "ResponseError").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_body_cbor() {
    survives(cbor(), Fault::Malformed, "ResponseError").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_denied_json() {
    survives(json(), Fault::error(400, "AccessDeniedException"), "AccessDeniedException").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_denied_cbor() {
    survives(cbor(), Fault::error(400, "AccessDeniedException"), "AccessDeniedException").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_credentials_json() {
    survives(json(), Fault::error(400, "UnrecognizedClientException"), "UnrecognizedClientException").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_credentials_cbor() {
    survives(cbor(), Fault::error(400, "UnrecognizedClientException"), "UnrecognizedClientException").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttled_attempts_are_counted_even_when_a_retry_succeeds() {
    let simulator = Simulator::start(world()).await.unwrap();
    let exporter = start_exporter_unthrottled(&simulator, &config(TIMEOUT)).await;
    let case = cbor();
    wait_for(&exporter, "the first poll", |s| value(s, &case.up) == Some(1.0)).await;
    simulator.inject("GetRepositorySyncStatus", Fault::error(429, "ThrottlingException"), 1);
    simulator.inject("GetPipelineState", Fault::error(400, "ThrottlingException"), 1);
    let s = wait_for(&exporter, "two throttled attempts", |s| {
        value(s, "codepipeline_exporter_aws_throttled_attempts_total{account=\"test\",region=\"us-east-1\"}") == Some(2.0)
    })
    .await;
    assert_eq!(value(&s, &case.up), Some(1.0), "the retry succeeded");
    assert_eq!(
        value(
            &s,
            "codepipeline_exporter_aws_request_errors_total{service=\"codeconnections\",operation=\"GetRepositorySyncStatus\",code=\"ThrottlingException\"}"
        ),
        None
    );
    let attempts = value(
        &s,
        "codepipeline_exporter_aws_request_attempts_total{service=\"codeconnections\",operation=\"GetRepositorySyncStatus\"}",
    )
    .unwrap();
    let calls =
        value(&s, "codepipeline_exporter_aws_requests_total{service=\"codeconnections\",operation=\"GetRepositorySyncStatus\"}")
            .unwrap();
    assert_eq!(attempts, calls + 1.0, "one retry");
}
