//! What the simulator serves of the time a run waits rather than works, on the wire, in raw HTTP:
//! CodeBuild's BatchGetBuilds (awsJson 1.1) with each build's phases, CodePipeline's
//! ListRuleExecutions page by page, each stage's queued `inboundExecutions`, the conditions
//! GetPipeline declares, and the build a CodeBuild action names.

use codepipeline_exporter::simulator::{
    SimActionRun, SimBuild, SimCondition, SimExecution, SimPhase, SimPipeline, SimRuleRun, Simulator, World,
};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// An answer: its status, its `x-amzn-errortype` header, and its JSON body.
struct Answer {
    status: u16,
    error_type: Option<String>,
    body: Value,
}

/// POSTs an awsJson 1.1 request for `target` with `body`, signed by `access_key` when given.
async fn post(simulator: &Simulator, target: &str, body: &Value, access_key: Option<&str>) -> Answer {
    let addr = simulator.endpoint_url().trim_start_matches("http://").to_string();
    let body = body.to_string();
    let authorization = access_key
        .map(|key| {
            format!("Authorization: AWS4-HMAC-SHA256 Credential={key}/20260101/us-east-1/codebuild/aws4_request, SignedHeaders=host, Signature=00\r\n")
        })
        .unwrap_or_default();
    let request = format!(
        "POST / HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/x-amz-json-1.1\r\nX-Amz-Target: {target}\r\n{authorization}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    assert!(head.contains("content-type: application/x-amz-json-1.1\r\n"), "{head}");
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let error_type = head.lines().find_map(|line| line.strip_prefix("x-amzn-errortype: ")).map(|value| value.trim().to_string());
    Answer { status, error_type, body: serde_json::from_str(body).unwrap() }
}

fn phase(phase_type: &str, status: Option<&str>, start: f64, end: Option<f64>) -> SimPhase {
    SimPhase { phase_type: phase_type.into(), status: status.map(str::to_string), start, end }
}

/// A build of `app-build` that waited 5 s in the queue and 4 s provisioning, then failed its
/// BUILD phase and completed; and one still provisioning.
fn builds_world() -> World {
    let mut world = World::default();
    let done = SimBuild {
        id: "app-build:0b1d0000-0000-4000-8000-000000000001".into(),
        phases: vec![
            phase("SUBMITTED", Some("SUCCEEDED"), 1_000.0, Some(1_000.5)),
            phase("QUEUED", Some("SUCCEEDED"), 1_000.5, Some(1_005.5)),
            phase("PROVISIONING", Some("SUCCEEDED"), 1_005.5, Some(1_009.5)),
            phase("BUILD", Some("FAILED"), 1_009.5, Some(1_030.0)),
            phase("FINALIZING", Some("SUCCEEDED"), 1_030.0, Some(1_031.0)),
            phase("COMPLETED", None, 1_031.0, None),
        ],
    };
    let running = SimBuild {
        id: "app-build:0b1d0000-0000-4000-8000-000000000002".into(),
        phases: vec![
            phase("SUBMITTED", Some("SUCCEEDED"), 2_000.0, Some(2_001.0)),
            phase("QUEUED", Some("SUCCEEDED"), 2_001.0, Some(2_004.0)),
            phase("PROVISIONING", None, 2_004.0, None),
        ],
    };
    let secret = SimBuild { id: "secret-build:0b1d0000-0000-4000-8000-000000000003".into(), phases: Vec::new() };
    for build in [done, running, secret] {
        world.builds.insert(build.id.clone(), build);
    }
    world.denied_build_projects.insert("secret-build".into());
    world
}

const BATCH_GET_BUILDS: &str = "CodeBuild_20161006.BatchGetBuilds";

#[tokio::test]
async fn batch_get_builds_describes_found_builds_phase_by_phase_and_lists_the_others() {
    let simulator = Simulator::start(builds_world()).await.unwrap();
    let ids = json!({"ids": [
        "app-build:0b1d0000-0000-4000-8000-000000000001",
        "app-build:0b1d0000-0000-4000-8000-00000000ffff",
        "app-build:0b1d0000-0000-4000-8000-000000000002",
        "app-build:0b1d0000-0000-4000-8000-000000000001",
    ]});
    let answer = post(&simulator, BATCH_GET_BUILDS, &ids, None).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(
        answer.body["builds"][0],
        json!({
            "id": "app-build:0b1d0000-0000-4000-8000-000000000001",
            "arn": "arn:aws:codebuild:us-east-1:111122223333:build/app-build:0b1d0000-0000-4000-8000-000000000001",
            "startTime": 1000.0,
            "endTime": 1031.0,
            "currentPhase": "COMPLETED",
            "buildStatus": "FAILED",
            "projectName": "app-build",
            "buildComplete": true,
            "phases": [
                {"phaseType": "SUBMITTED", "phaseStatus": "SUCCEEDED", "startTime": 1000.0, "endTime": 1000.5, "durationInSeconds": 1},
                {"phaseType": "QUEUED", "phaseStatus": "SUCCEEDED", "startTime": 1000.5, "endTime": 1005.5, "durationInSeconds": 5},
                {"phaseType": "PROVISIONING", "phaseStatus": "SUCCEEDED", "startTime": 1005.5, "endTime": 1009.5, "durationInSeconds": 4},
                {"phaseType": "BUILD", "phaseStatus": "FAILED", "startTime": 1009.5, "endTime": 1030.0, "durationInSeconds": 21},
                {"phaseType": "FINALIZING", "phaseStatus": "SUCCEEDED", "startTime": 1030.0, "endTime": 1031.0, "durationInSeconds": 1},
                {"phaseType": "COMPLETED", "startTime": 1031.0},
            ],
        })
    );
    let running = &answer.body["builds"][1];
    assert_eq!(running["id"], "app-build:0b1d0000-0000-4000-8000-000000000002");
    assert_eq!(
        (&running["buildStatus"], &running["currentPhase"], &running["buildComplete"]),
        (&json!("IN_PROGRESS"), &json!("PROVISIONING"), &json!(false))
    );
    assert!(running.get("endTime").is_none(), "{running}");
    assert_eq!(running["phases"][2], json!({"phaseType": "PROVISIONING", "startTime": 2004.0}));
    assert_eq!(answer.body["builds"].as_array().unwrap().len(), 2, "each build once");
    assert_eq!(answer.body["buildsNotFound"], json!(["app-build:0b1d0000-0000-4000-8000-00000000ffff"]));

    // All found: no buildsNotFound member.
    let answer =
        post(&simulator, BATCH_GET_BUILDS, &json!({"ids": ["app-build:0b1d0000-0000-4000-8000-000000000002"]}), None).await;
    assert_eq!(answer.body.as_object().unwrap().keys().collect::<Vec<_>>(), ["builds"]);
    assert_eq!(simulator.calls("BatchGetBuilds"), 2);
}

#[tokio::test]
async fn batch_get_builds_refuses_a_denied_project_and_more_than_100_ids() {
    let simulator = Simulator::start(builds_world()).await.unwrap();
    // One ID of a denied project denies the whole call.
    let ids =
        json!({"ids": ["app-build:0b1d0000-0000-4000-8000-000000000001", "secret-build:0b1d0000-0000-4000-8000-000000000003"]});
    let answer = post(&simulator, BATCH_GET_BUILDS, &ids, None).await;
    assert_eq!((answer.status, answer.error_type.as_deref()), (400, Some("AccessDeniedException")));
    assert_eq!(answer.body["__type"], "AccessDeniedException");
    assert!(answer.body["message"].as_str().unwrap().ends_with(":project/secret-build"), "{}", answer.body);
    // A project that merely starts like a denied one is not denied.
    let answer = post(&simulator, BATCH_GET_BUILDS, &json!({"ids": ["secret-build-2:x"]}), None).await;
    assert_eq!((answer.status, &answer.body["buildsNotFound"]), (200, &json!(["secret-build-2:x"])));

    let many: Vec<String> = (0..101).map(|i| format!("app-build:{i}")).collect();
    for ids in [json!({"ids": many}), json!({"ids": []}), json!({}), json!({"ids": [""]})] {
        let answer = post(&simulator, BATCH_GET_BUILDS, &ids, None).await;
        assert_eq!((answer.status, answer.error_type.as_deref()), (400, Some("InvalidInputException")), "{ids}");
    }
    let hundred: Vec<String> = (0..100).map(|i| format!("app-build:{i}")).collect();
    let answer = post(&simulator, BATCH_GET_BUILDS, &json!({"ids": hundred}), None).await;
    assert_eq!((answer.status, answer.body["buildsNotFound"].as_array().unwrap().len()), (200, 100));
    assert_eq!(simulator.calls("BatchGetBuilds"), 7);
}

/// A member account's builds are its own: BatchGetBuilds signed with the credentials STS issued
/// for its role answers from its world, and the call counts for it.
#[tokio::test]
async fn batch_get_builds_answers_from_the_callers_account() {
    const MEMBER: &str = "222233334444";
    let simulator = Simulator::start(World::default()).await.unwrap();
    let id = "member-build:0b1d0000-0000-4000-8000-000000000009";
    simulator.member(MEMBER).builds.insert(id.into(), SimBuild { id: id.into(), phases: Vec::new() });
    let addr = simulator.endpoint_url().trim_start_matches("http://").to_string();
    let form =
        format!("Action=AssumeRole&Version=2011-06-15&RoleArn=arn%3Aaws%3Aiam%3A%3A{MEMBER}%3Arole%2Fexporter&RoleSessionName=s");
    let request = format!(
        "POST / HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{form}",
        form.len()
    );
    let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let key = response.split("<AccessKeyId>").nth(1).and_then(|rest| rest.split('<').next()).expect(&response).to_string();

    let ids = json!({"ids": [id]});
    let member = post(&simulator, BATCH_GET_BUILDS, &ids, Some(&key)).await;
    assert_eq!(member.body["builds"][0]["arn"], format!("arn:aws:codebuild:us-east-1:{MEMBER}:build/{id}"));
    assert_eq!(member.body["builds"][0]["buildStatus"], "IN_PROGRESS");
    let main = post(&simulator, BATCH_GET_BUILDS, &ids, None).await;
    assert_eq!(main.body["buildsNotFound"], json!([id]));
    assert_eq!(simulator.member_calls(MEMBER, "BatchGetBuilds"), 1);
    assert_eq!(simulator.member_calls("111122223333", "BatchGetBuilds"), 1);
}

fn rule(stage: &str, rule: &str, id: &str, status: &str, start: f64, end: f64) -> SimRuleRun {
    SimRuleRun { stage: stage.into(), rule: rule.into(), id: id.into(), status: status.into(), start, last_update: end }
}

const E1: &str = "0e1e0000-0000-4000-8000-000000000001";
const E2: &str = "0e1e0000-0000-4000-8000-000000000002";

/// A QUEUED pipeline whose Prod stage is gated by two rules: run E1 passed them (one failed
/// first), run E2 is still checking; E2 holds Build while two runs queue in front of it.
fn gated_world() -> World {
    let mut pipeline = SimPipeline::new("app", &[("Source", &["Source"]), ("Build", &["Build"]), ("Prod", &["Deploy"])]);
    pipeline.version = 3;
    pipeline.stages[1].inbound_executions = vec![
        ("0e1e0000-0000-4000-8000-000000000003".into(), "InProgress".into()),
        ("0e1e0000-0000-4000-8000-000000000004".into(), "InProgress".into()),
    ];
    pipeline.stages[2].conditions = vec![
        SimCondition {
            condition_type: "BeforeEntry".into(),
            status: Some("InProgress".into()),
            rules: vec![("AlarmQuiet".into(), "InProgress".into()), ("DeployWindow".into(), "Succeeded".into())],
        },
        SimCondition {
            condition_type: "OnFailure".into(),
            status: None,
            rules: vec![("LambdaCheck".into(), "Succeeded".into())],
        },
    ];
    let mut e1 = SimExecution::new(E1, "Succeeded", 1_000.0, 1_100.0);
    e1.rules = vec![
        rule("Prod", "AlarmQuiet", "r-1c", "Succeeded", 1_050.0, 1_060.0),
        rule("Prod", "DeployWindow", "r-1b", "Succeeded", 1_040.0, 1_041.0),
        rule("Prod", "AlarmQuiet", "r-1a", "Failed", 1_030.0, 1_035.0),
    ];
    let mut build = SimActionRun::new("Build", "Build", "a-1", "Succeeded", 1_005.0, 1_025.0);
    build.external_id = Some("app-build:0b1d0000-0000-4000-8000-000000000001".into());
    e1.actions = vec![build];
    let mut e2 = SimExecution::new(E2, "InProgress", 2_000.0, 2_050.0);
    e2.rules = vec![rule("Prod", "AlarmQuiet", "r-2a", "InProgress", 2_040.0, 2_050.0)];
    e2.actions = vec![SimActionRun::new("Build", "Build", "a-2", "Succeeded", 2_005.0, 2_025.0)];
    pipeline.executions = vec![e2, e1];
    World { pipelines: [(pipeline.name.clone(), pipeline)].into_iter().collect(), page_size: 3, ..World::default() }
}

const LIST_RULE_EXECUTIONS: &str = "CodePipeline_20150709.ListRuleExecutions";

#[tokio::test]
async fn list_rule_executions_pages_newest_first_and_filters_by_execution() {
    let simulator = Simulator::start(gated_world()).await.unwrap();
    let first = post(&simulator, LIST_RULE_EXECUTIONS, &json!({"pipelineName": "app"}), None).await;
    assert_eq!(first.status, 200, "{}", first.body);
    let ids = |answer: &Answer| -> Vec<String> {
        answer.body["ruleExecutionDetails"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["ruleExecutionId"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(ids(&first), ["r-2a", "r-1c", "r-1b"]);
    assert_eq!(
        first.body["ruleExecutionDetails"][0],
        json!({
            "pipelineExecutionId": E2,
            "ruleExecutionId": "r-2a",
            "pipelineVersion": 3,
            "stageName": "Prod",
            "ruleName": "AlarmQuiet",
            "startTime": 2040.0,
            "lastUpdateTime": 2050.0,
            "status": "InProgress",
            "input": {
                "ruleTypeId": {"category": "Rule", "owner": "AWS", "provider": "CloudWatchAlarm", "version": "1"},
                "configuration": {"AlarmName": "AlarmQuiet-alarm", "WaitTime": "1"},
                "region": "us-east-1",
            },
        })
    );
    assert_eq!(first.body["ruleExecutionDetails"][2]["input"]["ruleTypeId"]["provider"], "DeploymentWindow");
    assert_eq!(
        first.body["ruleExecutionDetails"][2]["output"]["executionResult"]["externalExecutionSummary"],
        "free text that never becomes a label"
    );
    let token = first.body["nextToken"].as_str().unwrap();
    let second = post(&simulator, LIST_RULE_EXECUTIONS, &json!({"pipelineName": "app", "nextToken": token}), None).await;
    assert_eq!(ids(&second), ["r-1a"]);
    assert!(second.body.get("nextToken").is_none(), "{}", second.body);
    assert_eq!(second.body["ruleExecutionDetails"][0]["output"]["executionResult"]["errorDetails"]["code"], "RuleFailed");

    // One execution's, a page of 2 at a time.
    let filtered = json!({"pipelineName": "app", "filter": {"pipelineExecutionId": E1}, "maxResults": 2});
    let answer = post(&simulator, LIST_RULE_EXECUTIONS, &filtered, None).await;
    assert_eq!(ids(&answer), ["r-1c", "r-1b"]);
    assert_eq!(answer.body["nextToken"], "2");
    assert!(answer.body["ruleExecutionDetails"].as_array().unwrap().iter().all(|d| d["pipelineExecutionId"] == E1));

    for (input, error) in [
        (json!({"pipelineName": "nope"}), "PipelineNotFoundException"),
        (
            json!({"pipelineName": "app", "filter": {"pipelineExecutionId": "0e1e0000-0000-4000-8000-00000000ffff"}}),
            "PipelineExecutionNotFoundException",
        ),
        (json!({"pipelineName": "app", "maxResults": 101}), "ValidationException"),
        (json!({"pipelineName": "app", "nextToken": "x"}), "InvalidNextTokenException"),
    ] {
        let answer = post(&simulator, LIST_RULE_EXECUTIONS, &input, None).await;
        assert_eq!((answer.status, answer.error_type.as_deref()), (400, Some(error)), "{input}");
    }
    simulator.world().pipelines.get_mut("app").unwrap().denied = true;
    let answer = post(&simulator, LIST_RULE_EXECUTIONS, &json!({"pipelineName": "app"}), None).await;
    assert_eq!(answer.error_type.as_deref(), Some("AccessDeniedException"));
    assert_eq!(simulator.calls("ListRuleExecutions"), 8);
}

/// GetPipelineState lists the runs queued in front of a stage and names each rule's newest
/// execution; GetPipeline declares the stage's conditions; ListActionExecutions gives a CodeBuild
/// action's build as its external execution ID, and no ID for an action that names none.
#[tokio::test]
async fn stage_queues_conditions_and_builds_on_the_wire() {
    let simulator = Simulator::start(gated_world()).await.unwrap();
    let state = post(&simulator, "CodePipeline_20150709.GetPipelineState", &json!({"name": "app"}), None).await;
    let stages = &state.body["stageStates"];
    assert_eq!(
        stages[1]["inboundExecutions"],
        json!([
            {"pipelineExecutionId": "0e1e0000-0000-4000-8000-000000000003", "status": "InProgress", "type": "STANDARD"},
            {"pipelineExecutionId": "0e1e0000-0000-4000-8000-000000000004", "status": "InProgress", "type": "STANDARD"},
        ])
    );
    assert!(stages[0].get("inboundExecutions").is_none(), "{}", stages[0]);
    let rules = &stages[2]["beforeEntryConditionState"]["conditionStates"][0]["ruleStates"];
    assert_eq!(
        rules[0]["latestExecution"],
        json!({"ruleExecutionId": "r-2a", "status": "InProgress", "lastStatusChange": 2050.0})
    );
    assert_eq!(
        rules[1]["latestExecution"],
        json!({"ruleExecutionId": "r-1b", "status": "Succeeded", "lastStatusChange": 1041.0})
    );

    let declared = post(&simulator, "CodePipeline_20150709.GetPipeline", &json!({"name": "app"}), None).await;
    let stages = &declared.body["pipeline"]["stages"];
    assert_eq!(
        stages[2]["beforeEntry"],
        json!({"conditions": [{"result": "FAIL", "rules": [
            {
                "name": "AlarmQuiet",
                "ruleTypeId": {"category": "Rule", "owner": "AWS", "provider": "CloudWatchAlarm", "version": "1"},
                "configuration": {"AlarmName": "AlarmQuiet-alarm", "WaitTime": "1"},
                "region": "us-east-1",
            },
            {
                "name": "DeployWindow",
                "ruleTypeId": {"category": "Rule", "owner": "AWS", "provider": "DeploymentWindow", "version": "1"},
                "configuration": {"Cron": "0 0-23 ? * MON-FRI *", "TimeZone": "UTC"},
                "region": "us-east-1",
            },
        ]}]})
    );
    assert_eq!(stages[2]["onFailure"]["result"], "ROLLBACK");
    assert_eq!(stages[2]["onFailure"]["conditions"][0]["rules"][0]["ruleTypeId"]["provider"], "LambdaInvoke");
    assert!(stages[2].get("onSuccess").is_none());
    for stage in stages.as_array().unwrap()[..2].iter() {
        let members: Vec<&String> = stage.as_object().unwrap().keys().collect();
        assert_eq!(members, ["actions", "name"], "a stage without conditions declares none");
    }

    let actions = post(&simulator, "CodePipeline_20150709.ListActionExecutions", &json!({"pipelineName": "app"}), None).await;
    let details = &actions.body["actionExecutionDetails"];
    assert_eq!(details[0]["actionExecutionId"], "a-2");
    assert!(details[0]["output"]["executionResult"].get("externalExecutionId").is_none(), "{}", details[0]);
    assert_eq!(details[1]["output"]["executionResult"]["externalExecutionId"], "app-build:0b1d0000-0000-4000-8000-000000000001");
}

/// The same answers read by the pinned `aws-sdk-codepipeline`: rule executions, queued inbound
/// executions, declared conditions and a CodeBuild action's build ID.
#[tokio::test]
async fn the_sdk_reads_rules_queues_conditions_and_builds() {
    use aws_credential_types::Credentials;
    use aws_sdk_codepipeline::config::{BehaviorVersion, Region};
    use aws_sdk_codepipeline::types::RuleExecutionFilter;

    let simulator = Simulator::start(gated_world()).await.unwrap();
    let config = aws_sdk_codepipeline::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("AKIDTEST", "secret", None, None, "test"))
        .endpoint_url(simulator.endpoint_url())
        .build();
    let client = aws_sdk_codepipeline::Client::from_conf(config);

    let filter = RuleExecutionFilter::builder().pipeline_execution_id(E1).build();
    let rules = client.list_rule_executions().pipeline_name("app").filter(filter).send().await.unwrap();
    let details = rules.rule_execution_details();
    assert_eq!(details.iter().map(|d| d.rule_execution_id().unwrap()).collect::<Vec<_>>(), ["r-1c", "r-1b", "r-1a"]);
    let failed = &details[2];
    assert_eq!(failed.status().unwrap().as_str(), "Failed");
    assert_eq!(failed.start_time().unwrap().as_secs_f64(), 1_030.0);
    assert_eq!(failed.input().unwrap().rule_type_id().unwrap().provider(), "CloudWatchAlarm");
    assert_eq!(failed.output().unwrap().execution_result().unwrap().error_details().unwrap().code(), Some("RuleFailed"));

    let state = client.get_pipeline_state().name("app").send().await.unwrap();
    let queued: Vec<(&str, &str)> = state.stage_states()[1]
        .inbound_executions()
        .iter()
        .map(|e| (e.pipeline_execution_id(), e.r#type().unwrap().as_str()))
        .collect();
    assert_eq!(
        queued,
        [("0e1e0000-0000-4000-8000-000000000003", "STANDARD"), ("0e1e0000-0000-4000-8000-000000000004", "STANDARD")]
    );

    let pipeline = client.get_pipeline().name("app").send().await.unwrap();
    let prod = &pipeline.pipeline().unwrap().stages()[2];
    let gate = prod.before_entry().unwrap();
    assert_eq!(gate.conditions()[0].result().unwrap().as_str(), "FAIL");
    let rules: Vec<(&str, &str)> =
        gate.conditions()[0].rules().iter().map(|r| (r.name(), r.rule_type_id().unwrap().provider())).collect();
    assert_eq!(rules, [("AlarmQuiet", "CloudWatchAlarm"), ("DeployWindow", "DeploymentWindow")]);
    assert_eq!(prod.on_failure().unwrap().result().unwrap().as_str(), "ROLLBACK");
    assert!(pipeline.pipeline().unwrap().stages()[1].before_entry().is_none());

    let actions = client.list_action_executions().pipeline_name("app").send().await.unwrap();
    let external = |i: usize| {
        actions.action_execution_details()[i].output().and_then(|o| o.execution_result()).and_then(|r| r.external_execution_id())
    };
    assert_eq!((external(0), external(1)), (None, Some("app-build:0b1d0000-0000-4000-8000-000000000001")));
}
