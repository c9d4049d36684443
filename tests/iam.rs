//! deploy/iam-policy.json grants exactly the actions the exporter calls, and docs/aws.md lists them.

mod common;

use std::collections::BTreeSet;

use codepipeline_exporter::simulator::{SimExecution, demo, execution_id};
use common::{samples, scrape, start_exporter_unthrottled, wait_for};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_policy_grants_exactly_the_actions_called() {
    let simulator = demo::start().await.unwrap();
    let yaml = format!(
        "interval: 500ms\naccounts:\n  - name: demo\n    regions: [us-east-1]\n    tags: [team]\n    events:\n      queue_url: {}\n",
        demo::queue_url()
    );
    let exporter = start_exporter_unthrottled(&simulator, &yaml).await;
    wait_for(&exporter, "ready", |_| exporter.readiness.is_ready()).await;
    // A release that succeeds now is counted, its lead time read (GetPipelineExecution) and its
    // action executions (ListActionExecutions).
    let now = demo::unix_now();
    simulator
        .world()
        .pipelines
        .get_mut("mobile-release")
        .unwrap()
        .executions
        .insert(0, SimExecution::new(&execution_id("e-iam"), "Succeeded", now - 100.0, now));
    let lead_time_read = "codepipeline_exporter_aws_requests_total{service=\"codepipeline\",operation=\"GetPipelineExecution\"}";
    let anatomy_read = "codepipeline_exporter_aws_requests_total{service=\"codepipeline\",operation=\"ListActionExecutions\"}";
    let deleted = "codepipeline_exporter_aws_requests_total{service=\"sqs\",operation=\"DeleteMessageBatch\"}";
    // The gate's rule executions and the builds' phases are read after the action executions.
    let rules_read = "codepipeline_exporter_aws_requests_total{service=\"codepipeline\",operation=\"ListRuleExecutions\"}";
    let builds_read = "codepipeline_exporter_aws_requests_total{service=\"codebuild\",operation=\"BatchGetBuilds\"}";
    wait_for(&exporter, "the lead time, action and rule executions and builds read and an event deleted", |s| {
        [lead_time_read, anatomy_read, rules_read, builds_read, deleted].iter().all(|series| s.contains_key(*series))
    })
    .await;
    let called: BTreeSet<String> = samples(&scrape(&exporter).await)
        .keys()
        .filter_map(|series| series.strip_prefix("codepipeline_exporter_aws_requests_total{service=\""))
        .map(|rest| {
            let (service, rest) = rest.split_once("\",operation=\"").unwrap();
            format!("{service}:{}", rest.split('"').next().unwrap())
        })
        // DeleteMessageBatch is authorised by sqs:DeleteMessage; GetCallerIdentity needs no
        // permission at all.
        .filter(|action| action != "sts:GetCallerIdentity")
        .map(|action| if action == "sqs:DeleteMessageBatch" { "sqs:DeleteMessage".to_string() } else { action })
        .collect();
    let policy: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/iam-policy.json")).unwrap())
            .unwrap();
    let granted: BTreeSet<String> = policy["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["Action"].as_array().unwrap().iter().map(|a| a.as_str().unwrap().to_string()))
        .collect();
    assert_eq!(called, granted);
    // Read-only, but for the events queue's own messages, which the exporter must delete once read;
    // that statement names the queue rather than every resource.
    for statement in policy["Statement"].as_array().unwrap() {
        let actions: Vec<&str> = statement["Action"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
        if actions.iter().all(|a| a.contains(":Get") || a.contains(":List") || a.contains(":BatchGet")) {
            continue;
        }
        assert_eq!(actions, ["sqs:DeleteMessage", "sqs:GetQueueAttributes", "sqs:ReceiveMessage"]);
        assert_eq!(statement["Resource"], "arn:aws:sqs:*:*:codepipeline-exporter");
    }
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/aws.md")).unwrap();
    for action in &granted {
        assert!(doc.contains(&format!("`{action}`")), "docs/aws.md does not list {action}");
    }
}
