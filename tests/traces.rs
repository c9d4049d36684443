//! Pipeline runs as OpenTelemetry traces, received by an OTLP/HTTP receiver that decodes them with
//! opentelemetry-proto's reference classes (tests/tools/otlp_receiver.py): the span tree, times
//! and attributes of a run, the same trace after a restart and a stage retry, a receiver that is
//! down for a while or for too long, and exemplars in OpenMetrics only.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use codepipeline_exporter::simulator::{
    SimActionRun, SimBuild, SimCondition, SimExecution, SimPhase, SimPipeline, SimRuleRun, Simulator, World, execution_id,
};
use common::otlp::Receiver;
use common::process::Exporter;
use common::prometheus::{Prometheus, servers};
use common::{request, samples, scrape, start_exporter_unthrottled, value, wait_for, wait_for_calls};
use serde_json::Value;

fn yaml(receiver: &Receiver, queue_size: usize) -> String {
    format!(
        "interval: 150ms\ndiscovery_interval: 1h\ntraces:\n  endpoint: {}\n  headers:\n    authorization: Bearer test-token\n  service_name: ci-traces\n  queue_size: {queue_size}\naccounts:\n  - name: test\n    regions: [us-east-1]\n    codeconnections:\n      discover: false\n",
        receiver.endpoint()
    )
}

fn run(stage: &str, action: &str, id: &str, status: &str, start: f64, end: f64) -> SimActionRun {
    let mut run = SimActionRun::new(stage, action, id, status, start, end);
    if action == "Source" {
        run.type_id = ("Source".into(), "AWS".into(), "CodeStarSourceConnection".into());
    }
    if action == "Deploy" {
        run.type_id = ("Deploy".into(), "AWS".into(), "CloudFormation".into());
    }
    if status == "Failed" {
        run.error_code = Some("JobFailed".into());
    }
    run
}

/// A V2 pipeline of three stages whose history holds one run from before start-up.
fn pipeline() -> SimPipeline {
    let mut pipeline =
        SimPipeline::new("app", &[("Source", &["Source"]), ("Build", &["Build", "Test"]), ("Deploy", &["Deploy"])]);
    pipeline.stages[0].actions[0].type_id = Some(("Source".into(), "AWS".into(), "CodeStarSourceConnection".into()));
    pipeline.stages[2].actions[0].type_id = Some(("Deploy".into(), "AWS".into(), "CloudFormation".into()));
    pipeline.executions = vec![SimExecution::new(&execution_id("e0"), "Succeeded", 500.0, 900.0)];
    pipeline
}

fn world() -> World {
    let pipeline = pipeline();
    World { pipelines: [(pipeline.name.clone(), pipeline)].into_iter().collect(), ..World::default() }
}

/// Run e1: the source and the build succeed, the tests fail after 39.5 s, so deploy never runs.
fn e1_failed() -> SimExecution {
    let mut e1 = SimExecution::new(&execution_id("e1"), "Failed", 1_000.123, 1_050.5);
    e1.actions = vec![
        run("Build", "Test", "a-test-1", "Failed", 1_010.5, 1_050.0),
        run("Build", "Build", "a-build", "Succeeded", 1_010.5, 1_100.25),
        run("Source", "Source", "a-source", "Succeeded", 1_000.123, 1_010.456),
    ];
    e1
}

/// Puts `execution` at the head of the history and changes the state so that it is read.
fn finish(simulator: &Simulator, execution: SimExecution) {
    let mut world = simulator.world();
    let pipeline = world.pipelines.get_mut("app").unwrap();
    pipeline.stages[1].latest = Some((execution.id.clone(), execution.status.clone()));
    pipeline.executions.retain(|e| e.id != execution.id);
    pipeline.executions.insert(0, execution);
}

fn by_name(spans: &[Value]) -> BTreeMap<String, Vec<Value>> {
    let mut named: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for span in spans {
        named.entry(span["name"].as_str().unwrap().to_string()).or_default().push(span.clone());
    }
    named
}

fn millis(span: &Value, field: &str) -> u64 {
    span[field].as_u64().unwrap() / 1_000_000
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_is_one_trace_of_its_stages_and_actions_the_same_after_a_restart_and_a_stage_retry() {
    let receiver = Receiver::start();
    let simulator = Simulator::start(world()).await.unwrap();
    let exporter = start_exporter_unthrottled(&simulator, &yaml(&receiver, 1000)).await;
    wait_for(&exporter, "seeded", |s| s.keys().any(|k| k.starts_with("aws_codepipeline_execution_status"))).await;
    finish(&simulator, e1_failed());
    let spans = receiver.wait_spans(7, 20).await;
    assert_eq!(spans.len(), 7, "the root, the wait before Build, two stages and three actions: {spans:#?}");
    let trace_ids: BTreeSet<&str> = spans.iter().map(|s| s["trace_id"].as_str().unwrap()).collect();
    assert_eq!(trace_ids.len(), 1, "one trace");
    let trace_id = trace_ids.into_iter().next().unwrap().to_string();
    assert_eq!(trace_id.len(), 32);
    let named = by_name(&spans);
    assert_eq!(named.keys().map(String::as_str).collect::<Vec<_>>(), ["Build", "RUN app", "Source", "Test", "WAIT Build"]);
    assert_eq!((named["Build"].len(), named["Source"].len()), (2, 2), "a stage and its action of the same name");
    let root = &named["RUN app"][0];
    let root_id = root["span_id"].as_str().unwrap().to_string();
    assert_eq!((root["kind"].as_u64(), root["parent_span_id"].as_str()), (Some(2), Some("")), "SERVER, no parent");
    assert_eq!((millis(root, "start"), millis(root, "end")), (1_000_123, 1_050_500), "AWS's times to the millisecond");
    assert_eq!(root["attributes"]["cicd.pipeline.result"], "failure");
    assert_eq!(root["attributes"]["cicd.pipeline.action.name"], "RUN");
    assert_eq!(root["attributes"]["error.type"], "JobFailed");
    assert_eq!(root["status"], serde_json::json!({"code": 2, "message": "JobFailed"}));
    let resource = &root["resource"];
    let expected_resource = serde_json::json!({
        "service.name": "ci-traces",
        "cicd.pipeline.name": "app",
        "cicd.pipeline.run.id": execution_id("e1"),
        "cicd.pipeline.run.url.full": format!(
            "https://us-east-1.console.aws.amazon.com/codesuite/codepipeline/pipelines/app/executions/{}/timeline?region=us-east-1",
            execution_id("e1")
        ),
        "cloud.provider": "aws",
        "cloud.account.id": "111122223333",
        "cloud.region": "us-east-1",
        "vcs.ref.head.revision": "0000000000000000000000000000000000000001",
        "vcs.ref.head.name": "main",
        "vcs.repository.name": "app",
    });
    assert_eq!(resource, &expected_resource);
    assert_eq!(root["schema_url"], "https://opentelemetry.io/schemas/1.44.0");
    assert_eq!(root["scope"], "codepipeline-exporter");
    assert_eq!(root["authorization"], "Bearer test-token", "the configured headers are sent");

    // Stages: children of the root, from their first action's start to their last action's end.
    let stages: BTreeMap<&str, &Value> =
        spans.iter().filter(|s| s["parent_span_id"] == root_id.as_str()).map(|s| (s["name"].as_str().unwrap(), s)).collect();
    assert_eq!(stages.keys().copied().collect::<Vec<_>>(), ["Build", "Source", "WAIT Build"]);
    // The 44 ms between Source's end and Build's start: the run was pending, queued.
    let waited = stages["WAIT Build"];
    assert_eq!((millis(waited, "start"), millis(waited, "end")), (1_010_456, 1_010_500));
    assert_eq!(waited["attributes"]["cicd.pipeline.run.state"], "pending");
    assert_eq!(waited["attributes"]["aws.codepipeline.wait.reason"], "queued");
    let build = stages["Build"];
    assert_eq!((build["kind"].as_u64(), millis(build, "start"), millis(build, "end")), (Some(1), 1_010_500, 1_100_250));
    assert_eq!(build["attributes"]["error.type"], "JobFailed");
    let source = stages["Source"];
    assert_eq!((millis(source, "start"), millis(source, "end")), (1_000_123, 1_010_456));
    assert_eq!(source["status"]["code"], 0, "UNSET when it succeeded");

    // Actions: task spans under their stage.
    let test = &named["Test"][0];
    assert_eq!(test["parent_span_id"], build["span_id"]);
    assert_eq!(test["kind"], 1);
    assert_eq!(
        test["attributes"],
        serde_json::json!({
            "cicd.pipeline.task.name": "Test",
            "cicd.pipeline.task.run.id": "a-test-1",
            "cicd.pipeline.task.run.url.full": "https://console.aws.amazon.com/codesuite/codebuild/builds/a-test-1",
            "cicd.pipeline.task.run.result": "failure",
            "cicd.pipeline.task.type": "build",
            "aws.codepipeline.action.category": "Build",
            "aws.codepipeline.action.owner": "AWS",
            "aws.codepipeline.action.provider": "CodeBuild",
            "error.type": "JobFailed",
        })
    );
    assert_eq!((millis(test, "start"), millis(test, "end")), (1_010_500, 1_050_000));
    let source_action = named["Source"].iter().find(|s| s["parent_span_id"] == source["span_id"]).unwrap();
    assert_eq!(source_action["attributes"]["cicd.pipeline.task.run.result"], "success");
    assert!(source_action["attributes"].get("cicd.pipeline.task.type").is_none(), "Source maps to no task type");

    // A restart, then a retry of the failed stage: the tests run again and pass, and deploy runs.
    drop(exporter);
    let exporter = start_exporter_unthrottled(&simulator, &yaml(&receiver, 1000)).await;
    wait_for(&exporter, "seeded again", |s| s.keys().any(|k| k.starts_with("aws_codepipeline_execution_status"))).await;
    let mut resumed = e1_failed();
    resumed.status = "InProgress".into();
    finish(&simulator, resumed);
    wait_for_calls(&simulator, "ListPipelineExecutions", 2).await;
    let mut retried = e1_failed();
    retried.status = "Succeeded".into();
    retried.last_update = 1_300.0;
    retried.actions.insert(0, run("Deploy", "Deploy", "a-deploy", "Succeeded", 1_250.0, 1_299.75));
    retried.actions.insert(0, run("Build", "Test", "a-test-2", "Succeeded", 1_200.0, 1_240.0));
    finish(&simulator, retried);
    let spans = receiver.wait_spans(13, 20).await;
    assert_eq!(spans.len(), 13, "the root again, two stage attempts, two actions and the wait before Deploy: {spans:#?}");
    assert!(spans.iter().all(|s| s["trace_id"] == trace_id.as_str()), "the same trace after a restart");
    let new = &spans[7..];
    let names: BTreeSet<&str> = new.iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["Build", "Deploy", "RUN app", "Test", "WAIT Deploy"].into_iter().collect());
    let waited = new.iter().find(|s| s["name"] == "WAIT Deploy").unwrap();
    assert_eq!((millis(waited, "start"), millis(waited, "end")), (1_240_000, 1_250_000), "from the retried Build's end");
    let root_again = new.iter().find(|s| s["name"] == "RUN app").unwrap();
    assert_eq!(root_again["span_id"], root_id.as_str(), "the root keeps its ID");
    assert_eq!(
        (millis(root_again, "end"), root_again["attributes"]["cicd.pipeline.result"].as_str()),
        (1_300_000, Some("success"))
    );
    let attempt = new.iter().find(|s| s["name"] == "Build").unwrap();
    assert_ne!(attempt["span_id"], build["span_id"], "the stage's second attempt is a span of its own");
    assert_eq!((millis(attempt, "start"), millis(attempt, "end")), (1_200_000, 1_240_000));
    let retested = new.iter().find(|s| s["name"] == "Test").unwrap();
    assert_eq!(retested["parent_span_id"], attempt["span_id"]);
    assert_eq!(retested["attributes"]["cicd.pipeline.task.run.id"], "a-test-2");
    let s = samples(&scrape(&exporter).await);
    assert_eq!(value(&s, "codepipeline_exporter_trace_spans_exported_total"), Some(6.0), "this process sent six");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gated_stage_and_a_build_waiting_for_capacity_show_as_wait_rule_and_phase_spans() {
    let receiver = Receiver::start();
    let mut pipeline = pipeline();
    pipeline.stages[2].conditions = vec![SimCondition {
        condition_type: "BeforeEntry".into(),
        status: Some("Succeeded".into()),
        rules: vec![("Window".into(), "Succeeded".into())],
    }];
    let simulator =
        Simulator::start(World { pipelines: [(pipeline.name.clone(), pipeline)].into_iter().collect(), ..World::default() })
            .await
            .unwrap();
    let exporter = start_exporter_unthrottled(&simulator, &yaml(&receiver, 1000)).await;
    wait_for(&exporter, "seeded", |s| s.keys().any(|k| k.starts_with("aws_codepipeline_execution_status"))).await;
    // The build waits 4 s QUEUED and 3 s PROVISIONING; Deploy is entered at 2,080, 20 s after the
    // Build stage ended, 13 s of them under its Window rule.
    let phase = |phase_type: &str, start: f64, end: Option<f64>| SimPhase {
        phase_type: phase_type.into(),
        status: end.map(|_| "SUCCEEDED".to_string()),
        start,
        end,
    };
    simulator.world().builds.insert(
        "app-build:t1".into(),
        SimBuild {
            id: "app-build:t1".into(),
            phases: vec![
                phase("SUBMITTED", 2_010.0, Some(2_011.0)),
                phase("QUEUED", 2_011.0, Some(2_015.0)),
                phase("PROVISIONING", 2_015.0, Some(2_018.0)),
                phase("BUILD", 2_018.0, Some(2_060.0)),
                phase("COMPLETED", 2_060.0, None),
            ],
        },
    );
    let mut e2 = SimExecution::new(&execution_id("e2"), "Succeeded", 2_000.0, 2_100.0);
    let mut compile = run("Build", "Build", "b-build", "Succeeded", 2_010.0, 2_060.0);
    compile.external_id = Some("app-build:t1".into());
    e2.actions = vec![
        run("Deploy", "Deploy", "b-deploy", "Succeeded", 2_080.0, 2_095.0),
        compile,
        run("Build", "Test", "b-test", "Succeeded", 2_010.0, 2_030.0),
        run("Source", "Source", "b-source", "Succeeded", 2_000.0, 2_010.0),
    ];
    e2.rules = vec![SimRuleRun {
        stage: "Deploy".into(),
        rule: "Window".into(),
        id: "rule-1".into(),
        status: "Succeeded".into(),
        start: 2_062.0,
        last_update: 2_075.0,
    }];
    finish(&simulator, e2);
    let spans = receiver.wait_spans(14, 20).await;
    assert_eq!(spans.len(), 14, "the root, 3 stages, 4 actions, 4 phases, a wait and its rule: {spans:#?}");
    let named = by_name(&spans);
    let one = |name: &str| {
        assert_eq!(named[name].len(), 1, "{name}");
        &named[name][0]
    };
    let root = one("RUN app");
    let wait = one("WAIT Deploy");
    assert_eq!(wait["parent_span_id"], root["span_id"]);
    assert_eq!((millis(wait, "start"), millis(wait, "end")), (2_060_000, 2_080_000));
    assert_eq!(
        (
            &wait["attributes"]["cicd.pipeline.run.state"],
            &wait["attributes"]["aws.codepipeline.wait.reason"],
            &wait["attributes"]["aws.codepipeline.wait.gate_seconds"],
            &wait["attributes"]["aws.codepipeline.wait.queued_seconds"]
        ),
        (&Value::from("pending"), &Value::from("gate"), &Value::from(13.0), &Value::from(7.0))
    );
    let rule = one("RULE Window");
    assert_eq!(rule["parent_span_id"], wait["span_id"]);
    assert_eq!((millis(rule, "start"), millis(rule, "end")), (2_062_000, 2_075_000));
    assert_eq!(rule["attributes"]["aws.codepipeline.rule.execution.id"], "rule-1");
    let build_action = named["Build"].iter().find(|s| s["parent_span_id"] != root["span_id"]).unwrap();
    let phases: Vec<(&str, u64, u64)> = spans
        .iter()
        .filter(|s| s["parent_span_id"] == build_action["span_id"])
        .map(|s| (s["name"].as_str().unwrap(), millis(s, "start"), millis(s, "end")))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(
        phases,
        [
            ("BUILD", 2_018_000, 2_060_000),
            ("PROVISIONING", 2_015_000, 2_018_000),
            ("QUEUED", 2_011_000, 2_015_000),
            ("SUBMITTED", 2_010_000, 2_011_000)
        ],
        "each inside the action, none overlapping; COMPLETED has no end"
    );
    assert!(!spans.iter().any(|s| s["name"] == "WAIT Build"), "Build was entered at once");
    let s = samples(&scrape(&exporter).await);
    let capacity = "aws_codepipeline_wait_seconds_total{account=\"test\",region=\"us-east-1\",pipeline=\"app\",stage=\"Build\",reason=\"capacity\"}";
    assert_eq!(value(&s, capacity), None, "the Test action worked while the build waited");

    let ids: BTreeSet<&str> = spans.iter().map(|s| s["span_id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 14, "every span ID distinct");
    let pipeline = codepipeline_exporter::codepipeline::trace::Pipeline {
        account_id: "111122223333".into(),
        region: "us-east-1".into(),
        name: "app".into(),
        repository: None,
        branch: None,
    };
    let hex = |id: [u8; 8]| id.iter().map(|b| format!("{b:02x}")).collect::<String>();
    assert_eq!(
        wait["span_id"],
        hex(pipeline.wait_span_id(&execution_id("e2"), "Deploy", "b-deploy")).as_str(),
        "IDs derive from the run alone"
    );
    assert_eq!(rule["span_id"], hex(pipeline.rule_span_id(&execution_id("e2"), "rule-1")).as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_down_for_30_seconds_gets_every_span_once_and_past_the_bound_the_drops_are_counted() {
    let receiver = Receiver::start();
    let simulator = Simulator::start(world()).await.unwrap();
    // Room for 12 spans: two runs of five (the root, two stages, two actions), not three.
    let exporter = start_exporter_unthrottled(&simulator, &yaml(&receiver, 12)).await;
    wait_for(&exporter, "seeded", |s| s.keys().any(|k| k.starts_with("aws_codepipeline_execution_status"))).await;
    receiver.control("status=503").await;
    let started = Instant::now();
    for (i, id) in ["r1", "r2", "r3"].iter().enumerate() {
        let start = 2_000.0 + 100.0 * i as f64;
        let mut execution = SimExecution::new(&execution_id(id), "Succeeded", start, start + 20.0);
        execution.actions = vec![
            run("Source", "Source", &format!("{id}-source"), "Succeeded", start, start + 10.0),
            run("Build", "Build", &format!("{id}-build"), "Succeeded", start + 10.0, start + 20.0),
        ];
        finish(&simulator, execution);
        wait_for_calls(&simulator, "ListActionExecutions", 1).await;
    }
    let s = wait_for(&exporter, "the third run dropped", |s| {
        value(s, "codepipeline_exporter_trace_spans_dropped_total{reason=\"queue_full\"}") == Some(5.0)
    })
    .await;
    assert_eq!(value(&s, "codepipeline_exporter_trace_queue_spans"), Some(10.0));
    assert!(value(&s, "codepipeline_exporter_trace_export_errors_total{kind=\"http_503\"}").is_some_and(|n| n >= 1.0));
    assert!(receiver.spans().await.is_empty());
    let status = |body: String| serde_json::from_str::<Value>(&body).unwrap()["traces"].clone();
    let down = status(request(exporter.addr, "GET", "/api/v1/status", &[]).await.body);
    assert_eq!((down["up"].as_bool(), down["last_error"].as_str()), (Some(false), Some("HTTP 503")));
    assert_eq!((down["spans_queued"].as_u64(), down["spans_dropped"].as_u64()), (Some(10), Some(5)));
    assert_eq!(down["endpoint"], receiver.endpoint());
    let page = request(exporter.addr, "GET", "/status", &[]).await.body;
    assert!(page.contains("<h2>Traces</h2>") && page.contains("down: HTTP 503"), "{page}");
    // Down for 30 s in all, then up: what the queue held arrives, once.
    tokio::time::sleep(Duration::from_secs(30).saturating_sub(started.elapsed())).await;
    receiver.control("status=200").await;
    let spans = receiver.wait_spans(10, 30).await;
    assert_eq!(spans.len(), 10);
    let ids: BTreeSet<&str> = spans.iter().map(|s| s["span_id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 10, "each span once");
    let runs: BTreeSet<&str> = spans.iter().map(|s| s["resource"]["cicd.pipeline.run.id"].as_str().unwrap()).collect();
    let (r1, r2) = (execution_id("r1"), execution_id("r2"));
    assert_eq!(runs, [r1.as_str(), r2.as_str()].into_iter().collect());
    let s = wait_for(&exporter, "the queue empty", |s| value(s, "codepipeline_exporter_trace_queue_spans") == Some(0.0)).await;
    assert_eq!(value(&s, "codepipeline_exporter_trace_spans_exported_total"), Some(10.0));
    assert_eq!(value(&s, "codepipeline_exporter_trace_spans_dropped_total{reason=\"queue_full\"}"), Some(5.0), "what was lost");
    assert!(receiver.received().await["requests"]["refused"].as_u64().unwrap() >= 2, "it was retried while down");
    let up = status(request(exporter.addr, "GET", "/api/v1/status", &[]).await.body);
    assert_eq!((up["up"].as_bool(), up["spans_exported"].as_u64(), up["spans_queued"].as_u64()), (Some(true), Some(10), Some(0)));

    // A partial success: the receiver keeps all but one span, and says so; nothing is sent again.
    receiver.control("reject=1").await;
    let mut r4 = SimExecution::new(&execution_id("r4"), "Succeeded", 3_000.0, 3_010.0);
    r4.actions = vec![run("Source", "Source", "r4-source", "Succeeded", 3_000.0, 3_010.0)];
    finish(&simulator, r4);
    let s = wait_for(&exporter, "the partial success", |s| {
        value(s, "codepipeline_exporter_trace_spans_dropped_total{reason=\"rejected\"}") == Some(1.0)
    })
    .await;
    assert_eq!(value(&s, "codepipeline_exporter_trace_spans_exported_total"), Some(12.0), "three spans, one rejected");
    assert_eq!(receiver.spans().await.len(), 12);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exemplars_link_the_duration_histograms_to_the_run_in_openmetrics_only() {
    let receiver = Receiver::start();
    let simulator = Simulator::start(world()).await.unwrap();
    let exporter = start_exporter_unthrottled(&simulator, &yaml(&receiver, 1000)).await;
    wait_for(&exporter, "seeded", |s| s.keys().any(|k| k.starts_with("aws_codepipeline_execution_status"))).await;
    let mut e1 = e1_failed();
    e1.status = "Succeeded".into();
    e1.actions = vec![run("Source", "Source", "a-source", "Succeeded", 1_000.123, 1_010.456)];
    finish(&simulator, e1);
    let spans = receiver.wait_spans(3, 20).await;
    let trace_id = spans[0]["trace_id"].as_str().unwrap().to_string();
    let root = spans.iter().find(|s| s["name"] == "RUN app").unwrap()["span_id"].as_str().unwrap().to_string();
    let stage = spans.iter().find(|s| s["name"] == "Source" && s["parent_span_id"] == root.as_str()).unwrap();
    let openmetrics =
        request(exporter.addr, "GET", "/metrics", &[("Accept", "application/openmetrics-text; version=1.0.0")]).await.body;
    let bucket = |name: &str, le: &str| {
        openmetrics
            .lines()
            .find(|l| l.starts_with(name) && l.contains(&format!("le=\"{le}\"")) && !l.contains("status=\"Failed\""))
            .unwrap_or_else(|| panic!("no {name} {le}"))
            .to_string()
    };
    // The run took 50.377 s: its exemplar is on the 60 s bucket alone, with the root's IDs.
    assert_eq!(
        bucket("aws_codepipeline_execution_duration_seconds_bucket{", "60"),
        format!(
            "aws_codepipeline_execution_duration_seconds_bucket{{account=\"test\",region=\"us-east-1\",pipeline=\"app\",status=\"Succeeded\",execution_type=\"STANDARD\",le=\"60\"}} 1 # {{trace_id=\"{trace_id}\",span_id=\"{root}\"}} 50.377 1050.5"
        )
    );
    assert!(!bucket("aws_codepipeline_execution_duration_seconds_bucket{", "120").contains('#'), "only the bucket it fell in");
    assert_eq!(
        bucket("aws_codepipeline_stage_duration_seconds_bucket{", "30"),
        format!(
            "aws_codepipeline_stage_duration_seconds_bucket{{account=\"test\",region=\"us-east-1\",pipeline=\"app\",stage=\"Source\",le=\"30\"}} 1 # {{trace_id=\"{trace_id}\",span_id=\"{}\"}} 10.333 1010.456",
            stage["span_id"].as_str().unwrap()
        )
    );
    // The text format has no exemplars.
    let text = scrape(&exporter).await;
    assert!(text.contains("aws_codepipeline_execution_duration_seconds_bucket{account=\"test\",region=\"us-east-1\",pipeline=\"app\",status=\"Succeeded\",execution_type=\"STANDARD\",le=\"60\"} 1\n"));
    assert!(!text.contains("trace_id"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_endpoint_nothing_is_exported_and_no_call_is_added() {
    let simulator = Simulator::start(world()).await.unwrap();
    let yaml = "interval: 150ms\ndiscovery_interval: 1h\naccounts:\n  - name: test\n    regions: [us-east-1]\n    codeconnections:\n      discover: false\n";
    let exporter = start_exporter_unthrottled(&simulator, yaml).await;
    wait_for(&exporter, "seeded", |s| s.keys().any(|k| k.starts_with("aws_codepipeline_execution_status"))).await;
    let mut e1 = e1_failed();
    e1.status = "Failed".into();
    finish(&simulator, e1);
    let failed = "aws_codepipeline_action_executions_total{account=\"test\",region=\"us-east-1\",pipeline=\"app\",stage=\"Build\",action=\"Test\",status=\"Failed\"}";
    let s = wait_for(&exporter, "the run read", |s| value(s, failed) == Some(1.0)).await;
    assert_eq!(simulator.calls("GetPipelineExecution"), 0, "a failed run's revision is read for its trace alone");
    assert!(!s.keys().any(|k| k.starts_with("codepipeline_exporter_trace_")));
    let openmetrics =
        request(exporter.addr, "GET", "/metrics", &[("Accept", "application/openmetrics-text; version=1.0.0")]).await.body;
    assert!(!openmetrics.contains("trace_id"));
}

#[test]
fn prometheus_with_exemplar_storage_links_the_demo_s_durations_to_the_traces_received() {
    let receiver = Receiver::start();
    let endpoint = format!("http://{}", receiver.addr);
    let exporter = Exporter::start_with_env(&["--demo"], &[("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint)]);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    for server in servers() {
        eprintln!("against {}", server.display());
        let prometheus = Prometheus::start_with(&server, exporter.addr, &["--enable-feature=exemplar-storage"]);
        runtime.block_on(async {
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
            let query = format!(
                "/api/v1/query_exemplars?query=aws_codepipeline_execution_duration_seconds_bucket&start={}&end={}",
                now - 3_600,
                now + 3_600
            );
            // A demo run ends every minute or so; its exemplar is scraped with the next scrape.
            let answer = prometheus
                .wait(&query, 150, |a| {
                    a["data"]
                        .as_array()
                        .is_some_and(|series| series.iter().any(|s| s["exemplars"].as_array().is_some_and(|e| !e.is_empty())))
                })
                .await;
            let linked: BTreeSet<String> = answer["data"]
                .as_array()
                .unwrap()
                .iter()
                .flat_map(|s| s["exemplars"].as_array().unwrap().iter())
                .map(|e| e["labels"]["trace_id"].as_str().unwrap().to_string())
                .collect();
            assert!(!linked.is_empty());
            // The spans of a run are sent a moment after its exemplar is on /metrics.
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let received: BTreeSet<String> =
                    receiver.spans().await.iter().map(|s| s["trace_id"].as_str().unwrap().to_string()).collect();
                if linked.is_subset(&received) {
                    break;
                }
                assert!(Instant::now() < deadline, "every exemplar names a trace the receiver got: {linked:?} of {received:?}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
    }
}
