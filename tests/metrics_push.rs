//! The CI/CD metrics of OpenTelemetry's semantic conventions pushed over OTLP/HTTP to a receiver
//! that decodes them with opentelemetry-proto's reference classes (tests/tools/otlp_receiver.py):
//! a pending/executing pair per run with its buckets, attributes, resource and exemplars; the same
//! families on /metrics when included; cumulative and delta temporality across three export
//! intervals; a restart; a receiver down for 30 s.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use codepipeline_exporter::simulator::{SimActionRun, SimExecution, SimPipeline, Simulator, World, execution_id};
use common::otlp::Receiver;
use common::{request, samples, scrape, start_exporter_unthrottled, value, wait_for};
use serde_json::{Value, json};

/// The OpenTelemetry SDK's default bucket bounds, which the run duration uses.
const BOUNDS: [f64; 15] = [0.0, 5.0, 10.0, 25.0, 50.0, 75.0, 100.0, 250.0, 500.0, 750.0, 1000.0, 2500.0, 5000.0, 7500.0, 10000.0];

fn world() -> World {
    let mut pipeline = SimPipeline::new("app", &[("Source", &["Source"]), ("Build", &["Build"])]);
    pipeline.executions = vec![SimExecution::new(&execution_id("e0"), "Succeeded", 500.0, 900.0)];
    World { pipelines: [(pipeline.name.clone(), pipeline)].into_iter().collect(), ..World::default() }
}

fn yaml(receiver: &Receiver, temporality: &str, queue_size: usize, include: bool) -> String {
    let include = if include { "metrics:\n  include: ['.*']\n" } else { "" };
    format!(
        "interval: 150ms\ndiscovery_interval: 1h\n{include}traces:\n  endpoint: http://{addr}/v1/traces\n  service_name: ci\nmetrics_push:\n  endpoint: http://{addr}/v1/metrics\n  headers:\n    authorization: Bearer test-token\n  service_name: ci\n  interval: 1s\n  temporality: {temporality}\n  queue_size: {queue_size}\naccounts:\n  - name: test\n    regions: [us-east-1]\n    codeconnections:\n      discover: false\n",
        addr = receiver.addr
    )
}

/// Run e1: Source from 1,000 to 1,010, then 20 s queued before Build, which ends the run at 1,100:
/// 20 s pending, 80 s executing.
fn e1() -> SimExecution {
    let mut e1 = SimExecution::new(&execution_id("e1"), "Succeeded", 1_000.0, 1_100.0);
    e1.actions = vec![
        SimActionRun::new("Build", "Build", "e1-build", "Succeeded", 1_030.0, 1_100.0),
        SimActionRun::new("Source", "Source", "e1-source", "Succeeded", 1_000.0, 1_010.0),
    ];
    e1
}

/// Run e2: Build fails on CodeBuild's side (InternalError) 30 s in, without waiting.
fn e2() -> SimExecution {
    let mut e2 = SimExecution::new(&execution_id("e2"), "Failed", 2_000.0, 2_030.0);
    let mut build = SimActionRun::new("Build", "Build", "e2-build", "Failed", 2_010.0, 2_030.0);
    build.error_code = Some("InternalError".into());
    e2.actions = vec![build, SimActionRun::new("Source", "Source", "e2-source", "Succeeded", 2_000.0, 2_010.0)];
    e2
}

/// Puts `execution` at the head of the history and changes the state so that it is read.
fn finish(simulator: &Simulator, execution: SimExecution) {
    let mut world = simulator.world();
    let pipeline = world.pipelines.get_mut("app").unwrap();
    pipeline.stages[1].latest = Some((execution.id.clone(), execution.status.clone()));
    pipeline.executions.retain(|e| e.id != execution.id);
    pipeline.executions.insert(0, execution);
}

/// The point of `name` whose attributes include `attributes`, in request `request`.
fn point<'a>(points: &'a [Value], request: u64, name: &str, attributes: &[(&str, &str)]) -> Option<&'a Value> {
    points
        .iter()
        .find(|p| p["request"] == request && p["name"] == name && attributes.iter().all(|(k, v)| p["attributes"][*k] == *v))
}

/// The requests whose points include one of `name` with `attributes` satisfying `check`.
fn requests_where(points: &[Value], name: &str, attributes: &[(&str, &str)], check: impl Fn(&Value) -> bool) -> Vec<u64> {
    let requests: BTreeSet<u64> = points
        .iter()
        .filter(|p| p["name"] == name && attributes.iter().all(|(k, v)| p["attributes"][*k] == *v) && check(p))
        .map(|p| p["request"].as_u64().unwrap())
        .collect();
    requests.into_iter().collect()
}

fn buckets(at: &[usize]) -> Value {
    let mut counts = vec![0; BOUNDS.len() + 1];
    for i in at {
        counts[*i] += 1;
    }
    json!(counts)
}

const PENDING_SUCCESS: [(&str, &str); 2] = [("cicd.pipeline.run.state", "pending"), ("cicd.pipeline.result", "success")];
const DURATION: &str = "cicd.pipeline.run.duration";

fn now_nanos() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_are_pushed_as_the_cicd_metrics_cumulative_across_intervals_and_anew_after_a_restart() {
    let receiver = Receiver::start();
    let simulator = Simulator::start(world()).await.unwrap();
    let exporter = start_exporter_unthrottled(&simulator, &yaml(&receiver, "cumulative", 10_000, true)).await;
    wait_for(&exporter, "seeded", |s| s.keys().any(|k| k.starts_with("aws_codepipeline_execution_status"))).await;
    finish(&simulator, e1());
    let points =
        receiver.wait_points("e1 pushed", 20, |p| !requests_where(p, DURATION, &PENDING_SUCCESS, |_| true).is_empty()).await;
    let first = requests_where(&points, DURATION, &PENDING_SUCCESS, |_| true)[0];
    // The next interval's export, cumulative: the same count, from the same start.
    let points = receiver.wait_points("the next export", 10, |p| p.iter().any(|p| p["request"] == first + 1)).await;

    let pending = point(&points, first, DURATION, &PENDING_SUCCESS).unwrap();
    let spans = receiver.wait_spans(5, 10).await;
    let root = spans.iter().find(|s| s["name"] == "RUN app").unwrap();
    assert_eq!(
        pending,
        &json!({
            "name": "cicd.pipeline.run.duration",
            "unit": "s",
            "kind": "histogram",
            "temporality": 2,
            "monotonic": null,
            "attributes": {"cicd.pipeline.name": "app", "cicd.pipeline.run.state": "pending", "cicd.pipeline.result": "success"},
            "start": pending["start"],
            "time": pending["time"],
            "value": null,
            "count": 1,
            "sum": 20.0,
            "bucket_counts": buckets(&[3]),
            "bounds": BOUNDS,
            "exemplars": [{"trace_id": root["trace_id"], "span_id": root["span_id"], "value": 20.0, "time": 1_100_000_000_000u64}],
            "resource": {"service.name": "ci", "cloud.provider": "aws", "cloud.account.id": "111122223333", "cloud.region": "us-east-1"},
            "scope": "codepipeline-exporter",
            "schema_url": "https://opentelemetry.io/schemas/1.44.0",
            "request": first,
        })
    );
    let executing =
        point(&points, first, DURATION, &[("cicd.pipeline.run.state", "executing"), ("cicd.pipeline.result", "success")])
            .unwrap();
    assert_eq!((executing["count"].as_u64(), executing["sum"].as_f64()), (Some(1), Some(80.0)));
    assert_eq!(executing["bucket_counts"], buckets(&[6]), "80 s is above 75 and at most 100");
    let durations = points.iter().filter(|p| p["request"] == first && p["name"] == DURATION).count();
    assert_eq!(durations, 2, "a pending/executing pair per run");
    for state in ["pending", "executing"] {
        let active = point(&points, first, "cicd.pipeline.run.active", &[("cicd.pipeline.run.state", state)]).unwrap();
        assert_eq!(
            (active["kind"].as_str(), active["unit"].as_str(), active["value"].as_i64()),
            (Some("sum"), Some("{run}"), Some(0))
        );
        assert_eq!((active["monotonic"].as_bool(), active["temporality"].as_u64()), (Some(false), Some(2)));
    }
    let start = pending["start"].as_u64().unwrap();
    let next = point(&points, first + 1, DURATION, &PENDING_SUCCESS).unwrap();
    assert_eq!((next["count"].as_u64(), next["start"].as_u64()), (Some(1), Some(start)), "cumulative: the same start");
    assert!(next["time"].as_u64() > pending["time"].as_u64());

    // The failed run: its error code is the error type, and CodeBuild's InternalError a system error.
    finish(&simulator, e2());
    let failure = [("cicd.pipeline.run.state", "executing"), ("cicd.pipeline.result", "failure")];
    let points = receiver.wait_points("e2 pushed", 20, |p| !requests_where(p, DURATION, &failure, |_| true).is_empty()).await;
    let third = requests_where(&points, DURATION, &failure, |_| true)[0];
    assert!(third > first + 1, "three export intervals");
    let failed = point(&points, third, DURATION, &failure).unwrap();
    assert_eq!(failed["attributes"]["error.type"], "InternalError");
    assert_eq!((failed["count"].as_u64(), failed["sum"].as_f64(), failed["start"].as_u64()), (Some(1), Some(30.0), Some(start)));
    assert_eq!(failed["bucket_counts"], buckets(&[4]));
    let waited =
        point(&points, third, DURATION, &[("cicd.pipeline.run.state", "pending"), ("cicd.pipeline.result", "failure")]).unwrap();
    assert_eq!((waited["sum"].as_f64(), waited["bucket_counts"].clone()), (Some(0.0), buckets(&[0])), "no wait: the 0 bucket");
    assert_eq!(point(&points, third, DURATION, &PENDING_SUCCESS).unwrap()["count"], 1, "e1 still counted once");
    let errors = point(&points, third, "cicd.pipeline.run.errors", &[]).unwrap();
    assert_eq!(errors["attributes"], json!({"cicd.pipeline.name": "app", "error.type": "InternalError"}));
    assert_eq!(
        (errors["value"].as_i64(), errors["monotonic"].as_bool(), errors["unit"].as_str()),
        (Some(1), Some(true), Some("{error}"))
    );
    let system = point(&points, third, "cicd.system.errors", &[]).unwrap();
    assert_eq!(
        system["attributes"],
        json!({"cicd.pipeline.name": "app", "cicd.system.component": "CodeBuild", "error.type": "InternalError"})
    );
    assert_eq!(system["value"], 1);
    let names: BTreeSet<&str> = points.iter().filter(|p| p["request"] == third).map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        ["cicd.pipeline.run.active", DURATION, "cicd.pipeline.run.errors", "cicd.system.errors"].into_iter().collect()
    );

    // The same families on /metrics, under the names Prometheus's OTLP translation gives them.
    let labels = "account=\"test\",region=\"us-east-1\",cicd_pipeline_name=\"app\"";
    let system = format!("cicd_system_errors_total{{{labels},cicd_system_component=\"CodeBuild\",error_type=\"InternalError\"}}");
    let s = wait_for(&exporter, "e2 on /metrics", |s| value(s, &system) == Some(1.0)).await;
    assert_eq!(
        value(
            &s,
            &format!(
                "cicd_pipeline_run_duration_seconds_count{{{labels},cicd_pipeline_run_state=\"pending\",cicd_pipeline_result=\"success\"}}"
            )
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            &s,
            &format!(
                "cicd_pipeline_run_duration_seconds_bucket{{{labels},cicd_pipeline_run_state=\"executing\",cicd_pipeline_result=\"failure\",error_type=\"InternalError\",le=\"50\"}}"
            )
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            &s,
            &format!(
                "cicd_pipeline_run_duration_seconds_bucket{{{labels},cicd_pipeline_run_state=\"executing\",cicd_pipeline_result=\"failure\",error_type=\"InternalError\",le=\"25\"}}"
            )
        ),
        Some(0.0)
    );
    assert_eq!(value(&s, &format!("cicd_pipeline_run_active{{{labels},cicd_pipeline_run_state=\"executing\"}}")), Some(0.0));
    assert_eq!(value(&s, &format!("cicd_pipeline_run_errors_total{{{labels},error_type=\"InternalError\"}}")), Some(1.0));
    let s = wait_for(&exporter, "the export counted", |s| {
        value(s, "codepipeline_exporter_metric_points_exported_total").is_some_and(|n| n > 0.0)
    })
    .await;
    let exported = value(&s, "codepipeline_exporter_metric_points_exported_total").unwrap();
    assert!(exported >= points.len() as f64, "{exported} exported, {} received", points.len());
    let status: Value = serde_json::from_str(&request(exporter.addr, "GET", "/api/v1/status", &[]).await.body).unwrap();
    assert_eq!(status["metrics_push"]["endpoint"], format!("http://{}/v1/metrics", receiver.addr));
    assert_eq!(status["metrics_push"]["up"], true);

    // A restart: new series from a new start, without the runs counted before it.
    drop(exporter);
    let restarted = now_nanos();
    let exporter = start_exporter_unthrottled(&simulator, &yaml(&receiver, "cumulative", 10_000, true)).await;
    let after =
        |p: &[Value]| p.iter().filter(|p| p["start"].as_u64().is_some_and(|s| s > restarted)).cloned().collect::<Vec<_>>();
    let points = receiver.wait_points("the restarted export", 20, |p| !after(p).is_empty()).await;
    let new = after(&points);
    assert!(new.iter().all(|p| p["name"] == "cicd.pipeline.run.active"), "nothing replayed: {new:#?}");
    let mut e3 = e1();
    e3.id = execution_id("e3");
    (e3.start, e3.last_update) = (3_000.0, 3_100.0);
    for (action, id) in e3.actions.iter_mut().zip(["e3-build", "e3-source"]) {
        action.id = id.into();
        action.start += 2_000.0;
        action.last_update += 2_000.0;
    }
    finish(&simulator, e3);
    let points = receiver.wait_points("e3 pushed", 20, |p| after(p).iter().any(|p| p["name"] == DURATION)).await;
    let new = after(&points);
    let request = new.iter().find(|p| p["name"] == DURATION).unwrap()["request"].as_u64().unwrap();
    let pending = point(&new, request, DURATION, &PENDING_SUCCESS).unwrap();
    assert_eq!((pending["count"].as_u64(), pending["sum"].as_f64()), (Some(1), Some(20.0)), "e3 alone");
    assert!(pending["start"].as_u64().unwrap() > start, "a new start time");
    assert!(point(&new, request, "cicd.pipeline.run.errors", &[]).is_none(), "e2's error stays with the old series");
    drop(exporter);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delta_temporality_sends_what_changed_each_interval_and_keeps_updowncounters_cumulative() {
    let receiver = Receiver::start();
    let simulator = Simulator::start(world()).await.unwrap();
    let exporter = start_exporter_unthrottled(&simulator, &yaml(&receiver, "delta", 10_000, false)).await;
    wait_for(&exporter, "seeded", |s| s.keys().any(|k| k.starts_with("aws_codepipeline_execution_status"))).await;
    finish(&simulator, e1());
    let counted = |p: &Value| p["count"].as_u64() == Some(1);
    let points =
        receiver.wait_points("e1 pushed", 20, |p| !requests_where(p, DURATION, &PENDING_SUCCESS, counted).is_empty()).await;
    let first = requests_where(&points, DURATION, &PENDING_SUCCESS, counted)[0];
    receiver.wait_points("the next export", 10, |p| p.iter().any(|p| p["request"] == first + 1)).await;
    finish(&simulator, e2());
    let failure = [("cicd.pipeline.run.state", "executing"), ("cicd.pipeline.result", "failure")];
    let points = receiver.wait_points("e2 pushed", 20, |p| !requests_where(p, DURATION, &failure, counted).is_empty()).await;
    let third = requests_where(&points, DURATION, &failure, counted)[0];
    assert!(third > first + 1);

    // Interval one: e1's observation; two: none; three: e2's, and still none of e1.
    let e1_series = |request: u64| point(&points, request, DURATION, &PENDING_SUCCESS).unwrap();
    let (one, two, three) = (e1_series(first), e1_series(first + 1), e1_series(third));
    assert_eq!((one["temporality"].as_u64(), one["count"].as_u64(), one["sum"].as_f64()), (Some(1), Some(1), Some(20.0)));
    assert_eq!(one["bucket_counts"], buckets(&[3]));
    assert_eq!((two["count"].as_u64(), two["sum"].as_f64(), two["bucket_counts"].clone()), (Some(0), Some(0.0), buckets(&[])));
    assert_eq!(two["exemplars"], json!([]), "the exemplar went with its observation");
    assert_eq!(two["start"], one["time"], "each delta starts where the previous one ended");
    assert_eq!(three["count"], 0);
    let failed = point(&points, third, DURATION, &failure).unwrap();
    assert_eq!(
        (failed["temporality"].as_u64(), failed["count"].as_u64(), failed["sum"].as_f64()),
        (Some(1), Some(1), Some(30.0))
    );
    let errors = point(&points, third, "cicd.pipeline.run.errors", &[]).unwrap();
    assert_eq!((errors["temporality"].as_u64(), errors["value"].as_i64()), (Some(1), Some(1)));
    // The updowncounter stays cumulative, from the exporter's start.
    let active =
        |request: u64| point(&points, request, "cicd.pipeline.run.active", &[("cicd.pipeline.run.state", "executing")]).unwrap();
    assert_eq!((active(first)["temporality"].as_u64(), active(third)["temporality"].as_u64()), (Some(2), Some(2)));
    assert_eq!(active(first)["start"], active(third)["start"]);
    assert!(active(first)["start"].as_u64() <= one["start"].as_u64());
    // Off by default on /metrics.
    assert!(!scrape(&exporter).await.contains("cicd_"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_down_for_30_s_loses_nothing_within_the_bound_and_counts_what_it_drops_beyond_it() {
    let receiver = Receiver::start();
    let simulator = Simulator::start(world()).await.unwrap();
    // Four points a collection once e1 is in (two states of runs active, two of its duration):
    // the queue holds ten collections.
    let exporter = start_exporter_unthrottled(&simulator, &yaml(&receiver, "cumulative", 40, false)).await;
    wait_for(&exporter, "seeded", |s| s.keys().any(|k| k.starts_with("aws_codepipeline_execution_status"))).await;
    finish(&simulator, e1());
    receiver.wait_points("e1 pushed", 20, |p| !requests_where(p, DURATION, &PENDING_SUCCESS, |_| true).is_empty()).await;
    receiver.control("status=503").await;
    let down = now_nanos();
    let s = wait_for(&exporter, "the queue full", |s| {
        value(s, "codepipeline_exporter_metric_points_dropped_total{reason=\"queue_full\"}").is_some_and(|n| n > 0.0)
    })
    .await;
    let points = receiver.points().await;
    assert_eq!(
        value(&s, "codepipeline_exporter_metric_queue_points"),
        Some(40.0),
        "ten collections of four points: {:?}",
        points.iter().map(|p| (p["request"].clone(), p["name"].clone(), p["time"].clone())).collect::<Vec<_>>()
    );
    assert!(value(&s, "codepipeline_exporter_metric_export_errors_total{kind=\"http_503\"}").is_some_and(|n| n >= 1.0));
    let status: Value = serde_json::from_str(&request(exporter.addr, "GET", "/api/v1/status", &[]).await.body).unwrap();
    let push = &status["metrics_push"];
    assert_eq!(
        (push["up"].as_bool(), push["last_error"].as_str(), push["points_queued"].as_u64()),
        (Some(false), Some("HTTP 503"), Some(40))
    );
    let page = request(exporter.addr, "GET", "/status", &[]).await.body;
    assert!(page.contains("<h2>Metrics push</h2>") && page.contains("down: HTTP 503"), "{page}");
    tokio::time::sleep(Duration::from_nanos((down + 30_000_000_000).saturating_sub(now_nanos()))).await;
    let up = now_nanos();
    receiver.control("status=200").await;
    let s = wait_for(&exporter, "the queue empty", |s| value(s, "codepipeline_exporter_metric_queue_points") == Some(0.0)).await;
    let points = receiver.points().await;
    // Everything the exporter counts as exported arrived, once.
    assert_eq!(value(&s, "codepipeline_exporter_metric_points_exported_total"), Some(points.len() as f64));
    let points = receiver.wait_points("a collection since", 5, |p| p.iter().any(|p| p["time"].as_u64() > Some(up))).await;
    let dropped = value(&s, "codepipeline_exporter_metric_points_dropped_total{reason=\"queue_full\"}").unwrap();
    assert_eq!(dropped % 4.0, 0.0, "collections are dropped whole");
    // The collections made while it was down: the first ten kept, each whole; the rest dropped.
    let mut times: BTreeMap<u64, usize> = BTreeMap::new();
    for p in &points {
        *times.entry(p["time"].as_u64().unwrap()).or_default() += 1;
    }
    let kept: Vec<u64> = times.keys().copied().filter(|t| *t > down && *t < up).take_while(|t| times[t] == 4).collect();
    assert_eq!(kept.len(), 10, "{times:?}");
    assert!(kept.windows(2).all(|w| (w[1] - w[0]) as f64 / 1e9 < 1.5), "one collection a second: {kept:?}");
    // What was dropped is the gap after the kept ones: one collection a second.
    let first_after = times.keys().copied().find(|t| *t > kept[9]).unwrap();
    let gap = (first_after - kept[9]) as f64 / 1e9;
    let dropped_collections = dropped / 4.0;
    assert!((gap - (dropped_collections + 1.0)).abs() < 1.5, "a gap of {gap} s for {dropped_collections} dropped collections");
    // Nothing within the bound was lost: the run's figures are whole in every collection kept.
    for t in &kept {
        let pending = points
            .iter()
            .find(|p| p["time"] == *t && p["name"] == DURATION && p["attributes"]["cicd.pipeline.run.state"] == "pending")
            .unwrap();
        assert_eq!((pending["count"].as_u64(), pending["sum"].as_f64()), (Some(1), Some(20.0)));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_endpoint_nothing_is_pushed() {
    let simulator = Simulator::start(world()).await.unwrap();
    let yaml = "interval: 150ms\ndiscovery_interval: 1h\naccounts:\n  - name: test\n    regions: [us-east-1]\n    codeconnections:\n      discover: false\n";
    let exporter = start_exporter_unthrottled(&simulator, yaml).await;
    wait_for(&exporter, "seeded", |s| s.keys().any(|k| k.starts_with("aws_codepipeline_execution_status"))).await;
    let s = samples(&scrape(&exporter).await);
    assert!(!s.keys().any(|k| k.starts_with("codepipeline_exporter_metric_") || k.starts_with("cicd_")));
    let status: Value = serde_json::from_str(&request(exporter.addr, "GET", "/api/v1/status", &[]).await.body).unwrap();
    assert!(status.get("metrics_push").is_none());
}
