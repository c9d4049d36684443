//! What gates, retries and rolls back a V2 pipeline's stage, from GetPipelineState through the
//! real SDK: condition and rule status, retry attempts and rollbacks, with exact values.

mod common;

use codepipeline_exporter::simulator::{SimCondition, SimPipeline, World, execution_id};
use common::{family, scrape, start_unthrottled, value, wait_for};

const FAST: &str = "interval: 150ms\ndiscovery_interval: 1h\naccounts:\n  - name: test\n    regions: [us-east-1]\n    codepipeline:\n      executions: false\n    codeconnections:\n      discover: false\n      connections: false\n";

fn world() -> World {
    let mut pipeline = SimPipeline::new("deploy", &[("Source", &["Source"]), ("Prod", &["Deploy"])]);
    pipeline.stages[1].latest = Some((execution_id("e1"), "InProgress".into()));
    pipeline.stages[1].latest_type = Some("STANDARD".into());
    pipeline.stages[1].conditions = vec![SimCondition {
        condition_type: "BeforeEntry".into(),
        status: Some("InProgress".into()),
        rules: vec![("AlarmQuiet".into(), "InProgress".into()), ("DeployWindow".into(), "Succeeded".into())],
    }];
    World { pipelines: [(pipeline.name.clone(), pipeline)].into_iter().collect(), ..World::default() }
}

const PROD: &str = "account=\"test\",region=\"us-east-1\",pipeline=\"deploy\",stage=\"Prod\"";

fn lines(text: &str, name: &str) -> Vec<String> {
    family(text, name).into_iter().map(|(series, value)| format!("{series} {value}")).collect()
}

fn condition_lines(status: &str) -> Vec<String> {
    ["Abandoned", "Cancelled", "Errored", "Failed", "InProgress", "Overridden", "Succeeded"]
        .iter()
        .map(|s| {
            format!(
                "aws_codepipeline_stage_condition_status{{{PROD},condition_type=\"BeforeEntry\",status=\"{s}\"}} {}",
                if *s == status { 1 } else { 0 }
            )
        })
        .collect()
}

fn rule_lines(rule: &str, status: &str) -> Vec<String> {
    ["Abandoned", "Failed", "InProgress", "Succeeded"]
        .iter()
        .map(|s| {
            format!(
                "aws_codepipeline_stage_rule_status{{{PROD},condition_type=\"BeforeEntry\",rule=\"{rule}\",status=\"{s}\"}} {}",
                if *s == status { 1 } else { 0 }
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_condition_goes_from_in_progress_to_failed_with_its_rule() {
    let bed = start_unthrottled(world(), FAST).await;
    wait_for(&bed.exporter, "the first poll", |s| {
        value(
            s,
            &format!("aws_codepipeline_stage_condition_status{{{PROD},condition_type=\"BeforeEntry\",status=\"InProgress\"}}"),
        ) == Some(1.0)
    })
    .await;
    let text = scrape(&bed.exporter).await;
    assert_eq!(lines(&text, "aws_codepipeline_stage_condition_status"), condition_lines("InProgress"));
    let rules: Vec<String> = [rule_lines("AlarmQuiet", "InProgress"), rule_lines("DeployWindow", "Succeeded")].concat();
    assert_eq!(lines(&text, "aws_codepipeline_stage_rule_status"), rules);
    assert_eq!(lines(&text, "aws_codepipeline_stage_rollback"), [format!("aws_codepipeline_stage_rollback{{{PROD}}} 0")]);
    assert_eq!(lines(&text, "aws_codepipeline_stage_retry_attempt"), Vec::<String>::new(), "no retry metadata, no series");

    // The alarm fires: its rule fails, and with it the condition that gates the stage.
    {
        let mut world = bed.simulator.world();
        let condition = &mut world.pipelines.get_mut("deploy").unwrap().stages[1].conditions[0];
        condition.status = Some("Failed".into());
        condition.rules[0].1 = "Failed".into();
    }
    wait_for(&bed.exporter, "the failed condition", |s| {
        value(s, &format!("aws_codepipeline_stage_condition_status{{{PROD},condition_type=\"BeforeEntry\",status=\"Failed\"}}"))
            == Some(1.0)
    })
    .await;
    let text = scrape(&bed.exporter).await;
    assert_eq!(lines(&text, "aws_codepipeline_stage_condition_status"), condition_lines("Failed"));
    let rules: Vec<String> = [rule_lines("AlarmQuiet", "Failed"), rule_lines("DeployWindow", "Succeeded")].concat();
    assert_eq!(lines(&text, "aws_codepipeline_stage_rule_status"), rules);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_stage_and_a_rollback() {
    let bed = start_unthrottled(world(), FAST).await;
    {
        let mut world = bed.simulator.world();
        let stage = &mut world.pipelines.get_mut("deploy").unwrap().stages[1];
        stage.retries = Some((2, 1));
    }
    let retry = |trigger: &str| format!("aws_codepipeline_stage_retry_attempt{{{PROD},trigger=\"{trigger}\"}}");
    let s = wait_for(&bed.exporter, "the retries", |s| value(s, &retry("AutomatedStageRetry")) == Some(2.0)).await;
    assert_eq!(value(&s, &retry("ManualStageRetry")), Some(1.0));

    {
        let mut world = bed.simulator.world();
        let stage = &mut world.pipelines.get_mut("deploy").unwrap().stages[1];
        stage.latest = Some((execution_id("e2"), "InProgress".into()));
        stage.latest_type = Some("ROLLBACK".into());
    }
    let rollback = format!("aws_codepipeline_stage_rollback{{{PROD}}}");
    wait_for(&bed.exporter, "the rollback", |s| value(s, &rollback) == Some(1.0)).await;
    bed.simulator.world().pipelines.get_mut("deploy").unwrap().stages[1].latest_type = Some("STANDARD".into());
    wait_for(&bed.exporter, "a standard execution again", |s| value(s, &rollback) == Some(0.0)).await;
    let text = scrape(&bed.exporter).await;
    assert_eq!(family(&text, "aws_codepipeline_stage_rollback").len(), 1, "only the stage whose execution has a type");
}

/// The `aws_codepipeline_action_info` lines of a scrape.
fn action_info(text: &str) -> Vec<String> {
    lines(text, "aws_codepipeline_action_info")
}

fn info(stage: &str, action: &str, category: &str, owner: &str, provider: &str) -> String {
    format!(
        "aws_codepipeline_action_info{{account=\"test\",region=\"us-east-1\",pipeline=\"deploy\",stage=\"{stage}\",action=\"{action}\",category=\"{category}\",owner=\"{owner}\",provider=\"{provider}\"}} 1"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn action_info_is_read_once_and_again_only_when_the_version_changes() {
    let mut world = world();
    world.pipelines.get_mut("deploy").unwrap().stages[1].actions[0].type_id =
        Some(("Approval".into(), "AWS".into(), "Manual".into()));
    let bed = start_unthrottled(world, FAST).await;
    let up = "codepipeline_exporter_target_up{account=\"test\",region=\"us-east-1\",kind=\"pipeline\",name=\"deploy\"}";
    wait_for(&bed.exporter, "the first poll", |s| value(s, up) == Some(1.0)).await;
    let text = scrape(&bed.exporter).await;
    assert_eq!(
        action_info(&text),
        [info("Prod", "Deploy", "Approval", "AWS", "Manual"), info("Source", "Source", "Build", "AWS", "CodeBuild")]
    );
    assert_eq!(family(&text, "aws_codepipeline_pipeline_polling_disabled_timestamp_seconds").len(), 0);
    common::wait_for_calls(&bed.simulator, "GetPipelineState", 5).await;
    assert_eq!(bed.simulator.calls("GetPipeline"), 1, "read at the first poll only, while the version stays");

    {
        let mut world = bed.simulator.world();
        let pipeline = world.pipelines.get_mut("deploy").unwrap();
        pipeline.version += 1;
        pipeline.stages[1].actions[0].type_id = Some(("Deploy".into(), "AWS".into(), "CodeDeploy".into()));
        pipeline.polling_disabled_at = Some(1_700_086_400.0);
    }
    let polling =
        "aws_codepipeline_pipeline_polling_disabled_timestamp_seconds{account=\"test\",region=\"us-east-1\",pipeline=\"deploy\"}";
    wait_for(&bed.exporter, "the new version read", |s| value(s, polling).is_some()).await;
    let text = scrape(&bed.exporter).await;
    assert_eq!(
        action_info(&text),
        [info("Prod", "Deploy", "Deploy", "AWS", "CodeDeploy"), info("Source", "Source", "Build", "AWS", "CodeBuild")]
    );
    assert_eq!(value(&common::samples(&text), polling), Some(1_700_086_400.0));
    common::wait_for_calls(&bed.simulator, "GetPipelineState", 5).await;
    assert_eq!(bed.simulator.calls("GetPipeline"), 2);
}

/// Two conditions of one type, each with a rule of the same name: one series per rule name and
/// status (Prometheus refuses a scrape with a duplicate series), reporting the status that holds
/// the stage, and every condition's rules.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_of_one_name_in_two_conditions_of_one_type_are_one_series() {
    let mut world = world();
    world.pipelines.get_mut("deploy").unwrap().stages[1].conditions.push(SimCondition {
        condition_type: "BeforeEntry".into(),
        status: Some("Failed".into()),
        rules: vec![("DeployWindow".into(), "Failed".into()), ("Approvals".into(), "Succeeded".into())],
    });
    let bed = start_unthrottled(world, FAST).await;
    wait_for(&bed.exporter, "the first poll", |s| {
        value(
            s,
            &format!("aws_codepipeline_stage_condition_status{{{PROD},condition_type=\"BeforeEntry\",status=\"InProgress\"}}"),
        ) == Some(1.0)
    })
    .await;
    let text = scrape(&bed.exporter).await;
    let rules: Vec<String> =
        [rule_lines("AlarmQuiet", "InProgress"), rule_lines("Approvals", "Succeeded"), rule_lines("DeployWindow", "Failed")]
            .concat();
    assert_eq!(lines(&text, "aws_codepipeline_stage_rule_status"), rules);
    common::prometheus::assert_no_duplicate_series(&text);
    assert_eq!(text.matches("rule=\"DeployWindow\",status=\"Failed\"} 1").count(), 1);
}
