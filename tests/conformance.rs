//! The simulator answers as AWS's own models of the services say it may: every answer it serves is
//! recorded and checked by `tests/tools/validate_responses.py` against botocore's models (member
//! names, types, required members, enums, limits, patterns, timestamps and CBOR encoding).
//!
//! The demo's account is walked through the real SDK clients over two of its longest cycles (its
//! sync blockers repeat every 600 s; every pipeline, sync and connection loops in less) on a clock
//! of the test's own, 10 s at a time, every operation the exporter calls asked of every object the listings give.
//! Every other test's answers are checked too: `scripts/test.sh` runs the whole suite with
//! `SIMULATOR_RECORD_DIR` naming `target/recordings`, so that every simulator of every test process
//! (and of every demo a test starts) records what it serves, and then runs the validator over them;
//! a single violation fails the run. Scripted answers (`Simulator::script`), which may hold values
//! outside the model on purpose, and answers broken on purpose by a fault are not recorded. The
//! validator is also shown to fail, naming the operation, the path and the rule, on an answer
//! broken in one field.

use std::path::{Path, PathBuf};
use std::process::Command;

use aws_credential_types::Credentials;
use aws_sdk_codepipeline::config::{BehaviorVersion, Region};
use codepipeline_exporter::simulator::{self, Fault, Simulator, demo};

/// The Python of the build's tools, with botocore, which `scripts/test.sh` installs.
fn python() -> PathBuf {
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/tools/bin/python");
    let botocore = Command::new(&python).args(["-c", "import botocore"]).status();
    assert!(
        botocore.is_ok_and(|s| s.success()),
        "{} with botocore is missing: scripts/test.sh installs it (botocore==1.35.99)",
        python.display()
    );
    python
}

/// Runs the validator over `dir`: its exit code and what it printed.
fn validate(dir: &Path) -> (i32, String) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/tools/validate_responses.py");
    let out = Command::new(python()).arg(script).arg(dir).output().expect("the validator runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}

fn credentials() -> Credentials {
    Credentials::new("AKIDTEST", "secret", None, None, "test")
}

macro_rules! client {
    ($sdk:ident, $simulator:expr) => {
        $sdk::Client::from_conf(
            $sdk::Config::builder()
                .behavior_version(BehaviorVersion::latest())
                .region(Region::new("us-east-1"))
                .credentials_provider(credentials())
                .endpoint_url($simulator.endpoint_url())
                .build(),
        )
    };
}

/// Every call the exporter makes, of every object the demo's account lists now, through the real
/// SDK clients in the protocols the exporter uses.
async fn crawl(simulator: &Simulator, queue: &str) {
    let codepipeline = client!(aws_sdk_codepipeline, simulator);
    let codeconnections = client!(aws_sdk_codeconnections, simulator);
    let codebuild = client!(aws_sdk_codebuild, simulator);
    let sqs = client!(aws_sdk_sqs, simulator);

    let pages = codepipeline.list_pipelines().into_paginator().send().try_collect().await.unwrap();
    for summary in pages.iter().flat_map(|p| p.pipelines()) {
        let name = summary.name().unwrap();
        // Errors are answers too (the demo denies one pipeline): the validator checks them.
        let _ = codepipeline.get_pipeline_state().name(name).send().await;
        let _ = codepipeline.get_pipeline().name(name).send().await;
        let Ok(executions) = codepipeline.list_pipeline_executions().pipeline_name(name).send().await else { continue };
        // The newest runs, as the exporter reads them: in progress, or just ended.
        for execution in executions.pipeline_execution_summaries().iter().take(3) {
            let id = execution.pipeline_execution_id().unwrap();
            let _ = codepipeline.get_pipeline_execution().pipeline_name(name).pipeline_execution_id(id).send().await;
            let filter = aws_sdk_codepipeline::types::ActionExecutionFilter::builder().pipeline_execution_id(id).build();
            let actions = codepipeline
                .list_action_executions()
                .pipeline_name(name)
                .filter(filter)
                .into_paginator()
                .send()
                .try_collect()
                .await
                .unwrap_or_default();
            let builds: Vec<String> = actions
                .iter()
                .flat_map(|p| p.action_execution_details())
                .filter_map(|d| d.output()?.execution_result()?.external_execution_id())
                .map(str::to_string)
                .collect();
            if !builds.is_empty() {
                let _ = codebuild.batch_get_builds().set_ids(Some(builds)).send().await;
            }
            let filter = aws_sdk_codepipeline::types::RuleExecutionFilter::builder().pipeline_execution_id(id).build();
            let _ = codepipeline.list_rule_executions().pipeline_name(name).filter(filter).send().await;
        }
    }

    let links = codeconnections.list_repository_links().into_paginator().send().try_collect().await.unwrap();
    for link in links.iter().flat_map(|p| p.repository_links()) {
        let configurations = codeconnections
            .list_sync_configurations()
            .repository_link_id(link.repository_link_id())
            .sync_type(aws_sdk_codeconnections::types::SyncConfigurationType::CfnStackSync)
            .send()
            .await
            .unwrap();
        for configuration in configurations.sync_configurations() {
            let sync_type = configuration.sync_type().clone();
            let status = codeconnections
                .get_repository_sync_status()
                .repository_link_id(link.repository_link_id())
                .branch(configuration.branch())
                .sync_type(sync_type.clone())
                .send()
                .await;
            // A configuration that never synced answers ResourceNotFoundException, as AWS does.
            if let Err(e) = status {
                assert!(e.into_service_error().is_resource_not_found_exception());
            }
            let resource = configuration.resource_name();
            let status =
                codeconnections.get_resource_sync_status().resource_name(resource).sync_type(sync_type.clone()).send().await;
            if let Err(e) = status {
                assert!(e.into_service_error().is_resource_not_found_exception());
            }
            let blockers = codeconnections.get_sync_blocker_summary().resource_name(resource).sync_type(sync_type).send().await;
            if let Err(e) = blockers {
                assert!(e.into_service_error().is_resource_not_found_exception());
            }
        }
    }
    codeconnections.list_connections().into_paginator().send().try_collect().await.unwrap();
    codeconnections.list_hosts().into_paginator().send().try_collect().await.unwrap();

    let received = sqs.receive_message().queue_url(queue).max_number_of_messages(10).send().await.unwrap();
    let entries: Vec<_> = received
        .messages()
        .iter()
        .enumerate()
        .map(|(i, m)| {
            aws_sdk_sqs::types::DeleteMessageBatchRequestEntry::builder()
                .id(i.to_string())
                .receipt_handle(m.receipt_handle().unwrap())
                .build()
                .unwrap()
        })
        .collect();
    if !entries.is_empty() {
        sqs.delete_message_batch().queue_url(queue).set_entries(Some(entries)).send().await.unwrap();
    }
}

/// Two cycles of the demo's longest loop, 1,200 s, walked 10 s at a time, and every answer of each
/// moment conforms to the models; so do the errors the demo serves (throttling in each protocol,
/// a missing queue) and STS's awsQuery answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_loop_answers_as_the_models_allow() {
    let dir = tempfile::tempdir().unwrap();
    let started = 1_800_000_000.0;
    let simulator = Simulator::start(demo::world(started)).await.unwrap();
    simulator.record_to(dir.path()).unwrap();
    let queue = simulator.create_queue(demo::QUEUE, true);
    for second in (0..=1200).step_by(10) {
        demo::advance_to(&mut simulator.world(), started + second as f64, started);
        crawl(&simulator, &queue).await;
    }
    // The errors the demo's chaos shows, once per protocol, and answers of SQS and STS besides.
    for operation in ["GetPipelineState", "ListConnections", "ReceiveMessage"] {
        simulator.inject(operation, Fault::Throttling, 1);
    }
    crawl(&simulator, &queue).await;
    let sqs = client!(aws_sdk_sqs, simulator);
    sqs.get_queue_attributes()
        .queue_url(&queue)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
        .send()
        .await
        .unwrap();
    let missing = sqs.receive_message().queue_url(simulator::queue_url("missing")).send().await.unwrap_err();
    assert!(missing.into_service_error().is_queue_does_not_exist());
    let sts = client!(aws_sdk_sts, simulator);
    sts.get_caller_identity().send().await.unwrap();
    sts.assume_role()
        .role_arn("arn:aws:iam::111122223333:role/codepipeline-exporter")
        .role_session_name("conformance")
        .send()
        .await
        .unwrap();

    let (code, out) = validate(dir.path());
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(" 0 violations ("), "{out}");
    for operation in [
        "CodePipeline_20150709.GetPipelineExecution",
        "CodePipeline_20150709.ListActionExecutions",
        "CodePipeline_20150709.ListRuleExecutions",
        "CodeBuild_20161006.BatchGetBuilds",
        "CodeConnections_20231201.GetSyncBlockerSummary",
        "AmazonSQS.DeleteMessageBatch",
        "AWSSecurityTokenServiceV20110615.AssumeRole",
    ] {
        assert!(out.contains(&format!("{operation} ")), "{operation} was never answered: {out}");
    }
}

/// One field broken in one answer fails the check, which names the recording's line, the
/// operation, the path inside the answer and the rule broken.
#[tokio::test]
async fn the_validator_names_a_broken_field() {
    let dir = tempfile::tempdir().unwrap();
    let started = 1_800_000_000.0;
    let simulator = Simulator::start(demo::world(started)).await.unwrap();
    demo::advance_to(&mut simulator.world(), started + 100.0, started);
    simulator.record_to(dir.path()).unwrap();
    // A stage status AWS never gives.
    let name = "checkout-service";
    simulator.world().pipelines.get_mut(name).unwrap().stages[1].latest.as_mut().unwrap().1 = "Paused".into();
    client!(aws_sdk_codepipeline, simulator).get_pipeline_state().name(name).send().await.unwrap();
    let (code, out) = validate(dir.path());
    assert_eq!(code, 1, "{out}");
    let file = std::fs::read_dir(dir.path()).unwrap().next().unwrap().unwrap().file_name();
    assert_eq!(
        out.lines().next().unwrap(),
        format!(
            "{}:1: CodePipeline_20150709.GetPipelineState: stageStates[1].latestExecution.status: 'Paused' is not a value of the enum StageExecutionStatus (Cancelled, InProgress, Failed, Stopped, Stopping, Succeeded, Skipped)",
            file.to_string_lossy()
        )
    );
}
