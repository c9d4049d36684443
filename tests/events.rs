//! Events through the real `aws-sdk-sqs` against the simulated queue: the simulated account emits
//! the events AWS would as its pipelines and syncs change, and the exporter polls what they name.

mod common;

use std::time::{Duration, Instant};

use codepipeline_exporter::simulator::{
    ACCOUNT_ID, Fault, SimActionExecution, SimPipeline, SimRepositoryLink, SimResourceSync, SimSyncAttempt, SimSyncConfiguration,
    Simulator, World, execution_id,
};
use common::{error_count, request, samples, scrape, start_exporter_unthrottled, target_up, value, wait_for, wait_for_calls};

const ACTIVE: &str = "codepipeline_exporter_events_active{account=\"test\"}";

fn ignored(reason: &str) -> String {
    format!("codepipeline_exporter_events_ignored_total{{account=\"test\",reason=\"{reason}\"}}")
}

fn received(source: &str, detail_type: &str) -> String {
    format!("codepipeline_exporter_events_received_total{{account=\"test\",source=\"{source}\",detail_type=\"{detail_type}\"}}")
}

fn stage_status(pipeline: &str, stage: &str, status: &str) -> String {
    format!(
        "aws_codepipeline_stage_status{{account=\"test\",region=\"us-east-1\",pipeline=\"{pipeline}\",stage=\"{stage}\",status=\"{status}\"}}"
    )
}

/// A pipeline whose two stages succeeded.
fn pipeline(name: &str) -> SimPipeline {
    let mut pipeline = SimPipeline::new(name, &[("Source", &["Source"]), ("Build", &["Build"])]);
    for stage in &mut pipeline.stages {
        stage.latest = Some((execution_id("e1"), "Succeeded".into()));
        stage.actions[0].latest =
            Some(SimActionExecution { id: "a1".into(), status: "Succeeded".into(), ..SimActionExecution::default() });
    }
    pipeline
}

fn world(names: &[&str]) -> World {
    World { pipelines: names.iter().map(|n| (n.to_string(), pipeline(n))).collect(), ..World::default() }
}

/// An account whose events arrive on `queue`: intervals of a minute, discovery every hour, so that
/// anything seen sooner was seen through an event.
fn config(queue: &str, interval: &str, reconcile: &str) -> String {
    format!(
        "interval: {interval}\nactive_interval: {interval}\ndiscovery_interval: 1h\naccounts:\n  - name: test\n    regions: [us-east-1]\n    events:\n      queue_url: {queue}\n      reconcile_interval: {reconcile}\n"
    )
}

/// A simulator holding `world` with an events queue, and an exporter reading it, once it is in
/// events mode.
async fn start(world: World, interval: &str, reconcile: &str) -> (Simulator, String, codepipeline_exporter::exporter::Running) {
    let simulator = Simulator::start(world).await.unwrap();
    let queue = simulator.create_queue("codepipeline-exporter", true);
    let exporter = start_exporter_unthrottled(&simulator, &config(&queue, interval, reconcile)).await;
    let queue_up = target_up("events", "codepipeline-exporter");
    wait_for(&exporter, "events mode", |s| value(s, ACTIVE) == Some(1.0) && value(s, &queue_up) == Some(1.0)).await;
    (simulator, queue, exporter)
}

/// The queue target as the status page's JSON reports it: up, and its state in a word.
async fn queue_status(exporter: &codepipeline_exporter::exporter::Running) -> (bool, String) {
    let response = request(exporter.addr, "GET", "/api/v1/status?kind=events", &[]).await;
    let json: serde_json::Value = serde_json::from_str(&response.body).unwrap();
    let targets = json["targets"].as_array().unwrap();
    assert_eq!(targets.len(), 1, "{json}");
    assert_eq!((targets[0]["account"].as_str(), targets[0]["name"].as_str()), (Some("test"), Some("codepipeline-exporter")));
    (targets[0]["up"].as_bool().unwrap(), targets[0]["state"].as_str().unwrap().to_string())
}

/// A CodePipeline stage event as EventBridge sends it.
fn stage_event(account: &str, pipeline: &str, state: &str) -> String {
    serde_json::json!({
        "version": "0", "id": "1", "detail-type": "CodePipeline Stage Execution State Change", "source": "aws.codepipeline",
        "account": account, "time": "2026-11-23T10:00:00Z", "region": "us-east-1", "resources": [],
        "detail": {"pipeline": pipeline, "execution-id": execution_id("e2"), "stage": "Build", "state": state, "version": 1}
    })
    .to_string()
}

async fn wait_until_empty(simulator: &Simulator, queue: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while simulator.queue_depth(queue) != (0, 0) {
        assert!(Instant::now() < deadline, "the queue still holds {:?}", simulator.queue_depth(queue));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_shows_the_new_state_within_two_seconds_while_the_interval_is_a_minute() {
    let (simulator, queue, exporter) = start(world(&["web"]), "60s", "1h").await;
    wait_for(&exporter, "the first poll", |s| value(s, &stage_status("web", "Build", "Succeeded")) == Some(1.0)).await;

    let changed = Instant::now();
    simulator.world().pipelines.get_mut("web").unwrap().stages[1].latest = Some((execution_id("e2"), "Failed".into()));
    wait_for(&exporter, "the failure", |s| value(s, &stage_status("web", "Build", "Failed")) == Some(1.0)).await;
    let seen = changed.elapsed();
    assert!(seen < Duration::from_secs(2), "seen after {seen:?}");
    wait_until_empty(&simulator, &queue).await;
    let samples = samples(&scrape(&exporter).await);
    assert_eq!(value(&samples, &received("aws.codepipeline", "CodePipeline Stage Execution State Change")), Some(1.0));
    assert_eq!(value(&samples, "codepipeline_exporter_event_delay_seconds_count{account=\"test\"}"), Some(1.0));
    // The event's time is to the second, so its delay is under two seconds, not under one.
    assert_eq!(value(&samples, "codepipeline_exporter_event_delay_seconds_bucket{account=\"test\",le=\"2\"}"), Some(1.0));
    assert_eq!(simulator.calls("GetCallerIdentity"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicates_cost_one_poll_and_an_sns_envelope_is_read() {
    let (simulator, queue, exporter) = start(world(&["web"]), "60s", "1h").await;
    wait_for(&exporter, "the first poll", |s| value(s, &stage_status("web", "Build", "Succeeded")) == Some(1.0)).await;
    let before = simulator.calls("GetPipelineState");
    let event = stage_event(ACCOUNT_ID, "web", "FAILED");
    let sns = serde_json::json!({"Type": "Notification", "MessageId": "m1", "TopicArn": "arn:aws:sns:us-east-1:111122223333:events", "Message": event}).to_string();
    simulator.send_messages(&queue, &[&event, &event, &sns]);
    wait_until_empty(&simulator, &queue).await;
    wait_for(&exporter, "three events counted", |s| {
        value(s, &received("aws.codepipeline", "CodePipeline Stage Execution State Change")) == Some(3.0)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(simulator.calls("GetPipelineState"), before + 1, "three signals for one pipeline cost one poll");
    let samples = samples(&scrape(&exporter).await);
    assert_eq!(value(&samples, "codepipeline_exporter_event_delay_seconds_count{account=\"test\"}"), Some(1.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_foreign_and_unknown_messages_are_deleted_and_counted() {
    let (simulator, queue, exporter) = start(world(&["web"]), "60s", "1h").await;
    wait_for(&exporter, "the first poll", |s| value(s, &stage_status("web", "Build", "Succeeded")) == Some(1.0)).await;
    let before = simulator.calls("GetPipelineState");
    let unknown = serde_json::json!({
        "version": "0", "id": "2", "detail-type": "EC2 Instance State-change Notification", "source": "aws.ec2",
        "account": ACCOUNT_ID, "time": "2026-11-23T10:00:00Z", "region": "us-east-1", "resources": [], "detail": {"state": "running"}
    })
    .to_string();
    let other_account = stage_event("444455556666", "web", "FAILED");
    let nameless = stage_event(ACCOUNT_ID, "web", "FAILED").replace("\"pipeline\":\"web\",", "");
    let excluded_region = stage_event(ACCOUNT_ID, "web", "FAILED").replace("us-east-1", "ap-south-1");
    simulator.send_messages(&queue, &["{not json", "", &unknown, &other_account, &nameless, &excluded_region]);
    wait_until_empty(&simulator, &queue).await;
    let samples = wait_for(&exporter, "six messages counted", |s| {
        ["malformed", "other_account", "unknown_type", "not_selected"]
            .iter()
            .map(|r| value(s, &ignored(r)).unwrap_or(0.0))
            .sum::<f64>()
            == 6.0
    })
    .await;
    assert_eq!(value(&samples, &ignored("malformed")), Some(3.0));
    assert_eq!(value(&samples, &ignored("other_account")), Some(1.0));
    assert_eq!(value(&samples, &ignored("unknown_type")), Some(1.0));
    assert_eq!(value(&samples, &ignored("not_selected")), Some(1.0));
    assert_eq!(value(&samples, &ignored("other_shard")), Some(0.0));
    // Only the known type that named a region counts as received.
    assert_eq!(value(&samples, &received("aws.codepipeline", "CodePipeline Stage Execution State Change")), Some(1.0));
    assert_eq!(simulator.calls("GetPipelineState"), before, "no message made a poll");
    assert_eq!(simulator.queue_depth(&queue), (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_pipeline_is_discovered_within_seconds_and_an_excluded_one_is_not() {
    let simulator = Simulator::start(world(&["web"])).await.unwrap();
    let queue = simulator.create_queue("codepipeline-exporter", true);
    let yaml = config(&queue, "60s", "1h").replace("    events:", "    codepipeline:\n      exclude: ['^scratch-']\n    events:");
    let exporter = start_exporter_unthrottled(&simulator, &yaml).await;
    wait_for(&exporter, "events mode", |s| value(s, ACTIVE) == Some(1.0)).await;
    wait_for(&exporter, "the first poll", |s| value(s, &stage_status("web", "Build", "Succeeded")) == Some(1.0)).await;
    let listed = simulator.calls("ListPipelines");

    let added = Instant::now();
    {
        let mut world = simulator.world();
        let mut new = pipeline("api");
        new.stages[0].latest = Some((execution_id("n1"), "InProgress".into()));
        world.pipelines.insert("api".into(), new);
        world.pipelines.insert("scratch-1".into(), pipeline("scratch-1"));
    }
    wait_for(&exporter, "the new pipeline", |s| value(s, &stage_status("api", "Source", "InProgress")) == Some(1.0)).await;
    let seen = added.elapsed();
    assert!(seen < Duration::from_secs(5), "discovered after {seen:?}");
    wait_until_empty(&simulator, &queue).await;
    let samples = samples(&scrape(&exporter).await);
    assert_eq!(value(&samples, &target_up("pipeline", "scratch-1")), None);
    assert!(value(&samples, &ignored("not_selected")).unwrap() >= 1.0);
    assert_eq!(simulator.calls("ListPipelines"), listed + 1, "one discovery round for the burst of events");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denied_queue_falls_back_to_interval_polling_and_recovers() {
    let (simulator, queue, exporter) = start(world(&["web"]), "300ms", "1h").await;
    // In events mode an idle pipeline is not polled at its interval.
    wait_for(&exporter, "the first poll", |s| value(s, &stage_status("web", "Build", "Succeeded")) == Some(1.0)).await;
    let idle = simulator.calls("GetPipelineState");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(simulator.calls("GetPipelineState"), idle, "polled only on events and every reconcile_interval");
    // Staleness is judged against what each target waits in its mode: the hour of reconcile_interval.
    let interval =
        "codepipeline_exporter_target_interval_seconds{account=\"test\",region=\"us-east-1\",kind=\"pipeline\",name=\"web\"}";
    let discovery = "codepipeline_exporter_target_interval_seconds{account=\"test\",region=\"us-east-1\",kind=\"discovery\",name=\"codepipeline\"}";
    let samples = samples(&scrape(&exporter).await);
    assert_eq!((value(&samples, interval), value(&samples, discovery)), (Some(3600.0), Some(3600.0)));

    simulator.inject("ReceiveMessage", Fault::error(403, "AccessDenied"), 2);
    // Wakes the receive that is waiting, so that the next one meets the fault.
    simulator.send_messages(&queue, &[&stage_event(ACCOUNT_ID, "web", "SUCCEEDED")]);
    let queue_up = target_up("events", "codepipeline-exporter");
    let samples =
        wait_for(&exporter, "interval polling", |s| value(s, ACTIVE) == Some(0.0) && value(s, &queue_up) == Some(0.0)).await;
    assert_eq!(error_count(&samples, "sqs", "ReceiveMessage", "AccessDenied"), Some(1.0));
    // Polled at its interval again, and judged by it, before its next poll.
    wait_for(&exporter, "the interval of interval polling", |s| value(s, interval) == Some(0.3)).await;
    assert_eq!(queue_status(&exporter).await, (false, "interval polling".to_string()));
    // Back at the interval at once: polls every 300 ms.
    wait_for_calls(&simulator, "GetPipelineState", 2).await;

    let samples = wait_for(&exporter, "events mode again", |s| {
        value(s, ACTIVE) == Some(1.0) && value(s, &queue_up) == Some(1.0) && value(s, interval) == Some(3600.0)
    })
    .await;
    assert_eq!(error_count(&samples, "sqs", "ReceiveMessage", "AccessDenied"), Some(2.0));
    assert_eq!(queue_status(&exporter).await, (true, "receiving".to_string()));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let resumed = simulator.calls("GetPipelineState");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(simulator.calls("GetPipelineState"), resumed, "events schedule resumed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_queue_is_a_target_down_with_the_code_sqs_gives() {
    let simulator = Simulator::start(world(&["web"])).await.unwrap();
    let missing = "https://sqs.us-east-1.amazonaws.com/111122223333/missing";
    let exporter = start_exporter_unthrottled(&simulator, &config(missing, "300ms", "1h")).await;
    let samples = wait_for(&exporter, "the queue down", |s| value(s, &target_up("events", "missing")) == Some(0.0)).await;
    assert_eq!(value(&samples, ACTIVE), Some(0.0));
    assert_eq!(error_count(&samples, "sqs", "GetQueueAttributes", "AWS.SimpleQueueService.NonExistentQueue"), Some(1.0));
    // Interval polling goes on.
    wait_for_calls(&simulator, "GetPipelineState", 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_git_sync_event_names_the_stack_by_arn_and_its_sync_is_read_at_once() {
    const LINK: &str = "11111111-aaaa-bbbb-cccc-000000000001";
    let mut world = World::default();
    world.repository_links.insert(LINK.into(), SimRepositoryLink::new(LINK, "GitHub", "acme", "infra"));
    world.sync_configurations = vec![SimSyncConfiguration {
        repository_link_id: LINK.into(),
        branch: "main".into(),
        sync_type: "CFN_STACK_SYNC".into(),
        resource_name: "prod-infra".into(),
        config_file: None,
    }];
    let attempt = |status: &str| SimSyncAttempt { started_at: 1_700_000_000.0, status: status.into(), events: Vec::new() };
    world.repository_syncs.insert((LINK.into(), "main".into(), "CFN_STACK_SYNC".into()), attempt("SUCCEEDED"));
    world.resource_syncs.insert(
        ("prod-infra".into(), "CFN_STACK_SYNC".into()),
        SimResourceSync {
            latest: attempt("SUCCEEDED"),
            latest_successful: Some(attempt("SUCCEEDED")),
            sha: "abc".into(),
            successful_sha: None,
        },
    );
    let (simulator, queue, exporter) = start(world, "60s", "1h").await;
    let resource = "aws_codeconnections_resource_sync_status{account=\"test\",region=\"us-east-1\",resource_name=\"prod-infra\",sync_type=\"CFN_STACK_SYNC\",status=\"FAILED\"}";
    let repository = format!(
        "aws_codeconnections_repository_sync_status{{account=\"test\",region=\"us-east-1\",repository_link_id=\"{LINK}\",repository=\"acme/infra\",branch=\"main\",sync_type=\"CFN_STACK_SYNC\",status=\"FAILED\"}}"
    );
    wait_for(&exporter, "the first polls", |s| value(s, resource) == Some(0.0) && value(s, &repository) == Some(0.0)).await;
    let blockers = simulator.calls("GetSyncBlockerSummary");

    let changed = Instant::now();
    {
        let mut world = simulator.world();
        world.resource_syncs.get_mut(&("prod-infra".into(), "CFN_STACK_SYNC".into())).unwrap().latest = attempt("FAILED");
        *world.repository_syncs.get_mut(&(LINK.into(), "main".into(), "CFN_STACK_SYNC".into())).unwrap() = attempt("FAILED");
    }
    wait_for(&exporter, "both failures", |s| value(s, resource) == Some(1.0) && value(s, &repository) == Some(1.0)).await;
    assert!(changed.elapsed() < Duration::from_secs(2), "seen after {:?}", changed.elapsed());
    wait_until_empty(&simulator, &queue).await;
    assert_eq!(simulator.calls("GetSyncBlockerSummary"), blockers + 1, "the resource's blockers are read with it");
    let samples = samples(&scrape(&exporter).await);
    assert_eq!(value(&samples, &received("aws.codeconnections", "Git Sync Resource Sync Status Change")), Some(1.0));
    assert_eq!(value(&samples, &received("aws.codeconnections", "Git Sync Repository Sync Status Change")), Some(1.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_shard_reads_its_own_queue_and_deletes_the_events_it_does_not_own() {
    use codepipeline_exporter::exporter::Options;
    use codepipeline_exporter::shard::Shard;

    let names = ["web", "api", "billing", "search"];
    let simulator = Simulator::start(world(&names)).await.unwrap();
    let queues = [simulator.create_queue("events-0", true), simulator.create_queue("events-1", true)];
    let yaml = config("https://sqs.us-east-1.amazonaws.com/111122223333/events-{shard}", "60s", "1h");
    let mut exporters = Vec::new();
    for ordinal in 0..2 {
        let options = Options { shard: Shard::new(ordinal, 2), ..Options::default() };
        let exporter = common::start_exporter_unthrottled_with(&simulator, &yaml, options).await;
        let queue_up = target_up("events", &format!("events-{ordinal}"));
        wait_for(&exporter, "events mode", |s| value(s, ACTIVE) == Some(1.0) && value(s, &queue_up) == Some(1.0)).await;
        exporters.push(exporter);
    }
    // Each pipeline is polled by one shard: wait until each has polled its own.
    let deadline = Instant::now() + Duration::from_secs(10);
    let owned = loop {
        let mut owned = Vec::new();
        for exporter in &exporters {
            let samples = samples(&scrape(exporter).await);
            owned.push(names.iter().filter(|n| value(&samples, &stage_status(n, "Build", "Succeeded")).is_some()).count());
        }
        if owned.iter().sum::<usize>() == 4 {
            break owned;
        }
        assert!(Instant::now() < deadline, "the shards polled {owned:?} of the pipelines");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };

    {
        let mut world = simulator.world();
        for name in names {
            world.pipelines.get_mut(name).unwrap().stages[1].latest = Some((execution_id("e2"), "Failed".into()));
        }
    }
    for queue in &queues {
        wait_until_empty(&simulator, queue).await;
    }
    for (exporter, owned) in exporters.iter().zip(&owned) {
        let samples = wait_for(exporter, "the failures of its pipelines", |s| {
            names.iter().filter(|n| value(s, &stage_status(n, "Build", "Failed")) == Some(1.0)).count() == *owned
        })
        .await;
        assert_eq!(value(&samples, &received("aws.codepipeline", "CodePipeline Stage Execution State Change")), Some(4.0));
        assert_eq!(value(&samples, &ignored("other_shard")), Some((4 - owned) as f64));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_without_the_queue_returns_to_interval_polling_and_removes_its_series() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("exporter.yaml");
    let simulator = Simulator::start(world(&["web"])).await.unwrap();
    let queue = simulator.create_queue("codepipeline-exporter", true);
    let with_events = config(&queue, "300ms", "1h");
    std::fs::write(&path, &with_events).unwrap();
    let exporter = common::start_exporter_unthrottled_from(&simulator, &with_events, Some(path.clone())).await;
    let queue_up = target_up("events", "codepipeline-exporter");
    wait_for(&exporter, "events mode", |s| value(s, ACTIVE) == Some(1.0) && value(s, &queue_up) == Some(1.0)).await;
    wait_for(&exporter, "the first poll", |s| value(s, &stage_status("web", "Build", "Succeeded")) == Some(1.0)).await;

    std::fs::write(&path, with_events.split("    events:").next().unwrap()).unwrap();
    assert_eq!(exporter.reloader.reload().await, Ok(()));
    let samples =
        wait_for(&exporter, "the queue's series gone", |s| value(s, ACTIVE).is_none() && value(s, &queue_up).is_none()).await;
    assert_eq!(value(&samples, &ignored("malformed")), None);
    // The pipeline, untouched by the reload, is polled at its interval again.
    wait_for_calls(&simulator, "GetPipelineState", 3).await;
    assert_eq!(value(&samples, &stage_status("web", "Build", "Succeeded")), Some(1.0));
}

/// 20 pipelines polled every 2 s (each poll a state read, then a history read while they run) on
/// a budget of 5 calls a second: four times what it covers. An event still reaches `/metrics`
/// within a second, ahead of every scheduled poll, while scheduled polls and history reads go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_goes_ahead_of_a_saturated_schedule_which_still_runs_and_reads_history() {
    let names: Vec<String> = (0..20).map(|i| format!("p{i:02}")).collect();
    let mut world = world(&names.iter().map(String::as_str).collect::<Vec<_>>());
    for pipeline in world.pipelines.values_mut().filter(|p| p.name != "p00") {
        // Running: each poll reads the history too.
        pipeline.stages[1].latest = Some((execution_id("e1"), "InProgress".into()));
        pipeline.executions =
            vec![codepipeline_exporter::simulator::SimExecution::new(&execution_id("e1"), "InProgress", 1_000.0, 1_000.0)];
    }
    let simulator = Simulator::start(world).await.unwrap();
    let queue = simulator.create_queue("codepipeline-exporter", true);
    let yaml = format!("requests_per_second: 5\nburst: 5\n{}", config(&queue, "2s", "2s"));
    let exporter = start_exporter_unthrottled(&simulator, &yaml).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let all_polled = |s: &std::collections::BTreeMap<String, f64>| {
        names.iter().all(|n| value(s, &stage_status(n, "Source", "Succeeded")).is_some()) && value(s, ACTIVE) == Some(1.0)
    };
    while !all_polled(&samples(&scrape(&exporter).await)) {
        assert!(Instant::now() < deadline, "not every pipeline polled");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Saturated for a while: the queue holds every target's next call.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let s = samples(&scrape(&exporter).await);
    assert!(
        value(&s, "codepipeline_exporter_budget_waiting_requests{account=\"test\",region=\"us-east-1\"}")
            .is_some_and(|n| n >= 5.0),
        "the budget is saturated"
    );
    let (states, histories) = (simulator.calls("GetPipelineState"), simulator.calls("ListPipelineExecutions"));
    let changed = Instant::now();
    simulator.world().pipelines.get_mut("p00").unwrap().stages[1].latest = Some((execution_id("e2"), "Failed".into()));
    wait_for(&exporter, "the failure", |s| value(s, &stage_status("p00", "Build", "Failed")) == Some(1.0)).await;
    let seen = changed.elapsed();
    eprintln!("with the budget saturated, the event's poll was on /metrics {seen:?} after the change");
    assert!(seen < Duration::from_secs(1), "seen after {seen:?} with the budget saturated");
    // The schedule goes on, history included, at the budget's pace.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let (states, histories) =
        (simulator.calls("GetPipelineState") - states, simulator.calls("ListPipelineExecutions") - histories);
    assert!(states >= 8, "{states} state reads in 4 s");
    assert!(histories >= 3, "{histories} history reads in 4 s: the deferred class is not starved");
    let s = samples(&scrape(&exporter).await);
    for class in ["urgent", "scheduled", "deferred"] {
        let waited =
            format!("codepipeline_exporter_budget_wait_seconds_total{{account=\"test\",region=\"us-east-1\",class=\"{class}\"}}");
        assert!(value(&s, &waited).is_some(), "{waited}");
    }
    let deferred = "codepipeline_exporter_budget_wait_seconds_total{account=\"test\",region=\"us-east-1\",class=\"deferred\"}";
    let urgent = "codepipeline_exporter_budget_wait_seconds_total{account=\"test\",region=\"us-east-1\",class=\"urgent\"}";
    assert!(value(&s, deferred).unwrap() > value(&s, urgent).unwrap(), "deferred calls wait longest");
}
