//! The simulated CodePipeline service: its state and its answers, in the protocol-neutral
//! document form of [`super::protocol`].

use ciborium::Value;

use super::World;
use super::protocol::{Failure, int, list, map, member, number, opt_text, page_bounds, text, timestamp};

/// A pipeline as GetPipelineState and ListPipelines describe it.
#[derive(Debug, Clone, Default)]
pub struct SimPipeline {
    pub name: String,
    pub pipeline_type: String,
    pub execution_mode: String,
    pub version: i32,
    pub created: f64,
    pub updated: f64,
    pub stages: Vec<SimStage>,
    /// Execution history, newest first, as ListPipelineExecutions pages through it.
    pub executions: Vec<SimExecution>,
    /// Whether the caller may not read this pipeline (a permissions boundary): listed, but every
    /// read answers AccessDeniedException.
    pub denied: bool,
    /// When AWS stopped polling the pipeline's source, as GetPipeline's metadata says.
    pub polling_disabled_at: Option<f64>,
    /// The pipeline's tags (key, value), in the order ListTagsForResource pages through them: what
    /// an exporter reads to label a pipeline with its team or service.
    pub tags: Vec<(String, String)>,
}

/// One pipeline execution as ListPipelineExecutions summarises it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SimExecution {
    pub id: String,
    pub status: String,
    pub start: f64,
    pub last_update: f64,
    pub trigger_type: String,
    /// For a rollback (executionType ROLLBACK), the execution it returns to, as
    /// `rollbackMetadata.rollbackTargetPipelineExecutionId` names it; `None` for a STANDARD one.
    pub rollback_target: Option<String>,
    /// When the source revisions of the execution were created, as GetPipelineExecution lists
    /// them.
    pub revisions_created: Vec<f64>,
    /// Every action execution of the run, as ListActionExecutions details them: a retried action
    /// has several.
    pub actions: Vec<SimActionRun>,
    /// Every rule execution of the run's stage conditions, as ListRuleExecutions details them: what
    /// held the run at a gate, and for how long.
    pub rules: Vec<SimRuleRun>,
}

/// One action execution of a pipeline execution, as ListActionExecutions details it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SimActionRun {
    pub stage: String,
    pub action: String,
    pub id: String,
    pub status: String,
    pub start: f64,
    pub last_update: f64,
    /// Category, owner and provider of the action's type.
    pub type_id: (String, String, String),
    /// The error code of a failed execution.
    pub error_code: Option<String>,
    /// The ID of the job it ran in the service the action calls, as
    /// `output.executionResult.externalExecutionId` gives it: for a CodeBuild action, the build's
    /// ID (`<project>:<uuid>`), which BatchGetBuilds describes. `None` leaves the member out.
    pub external_id: Option<String>,
}

/// One execution of a rule of a stage condition, as ListRuleExecutions details it. Its rule
/// type's provider follows from the rule's name (see [`rule_provider`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SimRuleRun {
    pub stage: String,
    pub rule: String,
    pub id: String,
    pub status: String,
    pub start: f64,
    pub last_update: f64,
}

impl SimActionRun {
    /// A CodeBuild action execution.
    pub fn new(stage: &str, action: &str, id: &str, status: &str, start: f64, last_update: f64) -> SimActionRun {
        SimActionRun {
            stage: stage.into(),
            action: action.into(),
            id: id.into(),
            status: status.into(),
            start,
            last_update,
            type_id: ("Build".into(), "AWS".into(), "CodeBuild".into()),
            error_code: None,
            external_id: None,
        }
    }
}

impl SimExecution {
    /// An execution whose one source revision was created ten minutes before it started.
    pub fn new(id: &str, status: &str, start: f64, last_update: f64) -> SimExecution {
        SimExecution {
            id: id.into(),
            status: status.into(),
            start,
            last_update,
            trigger_type: "Webhook".into(),
            rollback_target: None,
            revisions_created: vec![start - 600.0],
            actions: Vec::new(),
            rules: Vec::new(),
        }
    }

    /// An automated rollback to `target`, which redeploys its revisions: their creation times are
    /// those of the target's, long before the rollback started.
    pub fn rollback(id: &str, status: &str, start: f64, last_update: f64, target: &str) -> SimExecution {
        SimExecution {
            trigger_type: "AutomatedRollback".into(),
            rollback_target: Some(target.into()),
            revisions_created: vec![start - 86_400.0],
            ..SimExecution::new(id, status, start, last_update)
        }
    }

    /// The members that tell a rollback from a deployment, as ListPipelineExecutions and
    /// GetPipelineExecution both give them: `executionType` (on V2 pipelines only; V1 executions
    /// leave it out, which means STANDARD) and `rollbackMetadata`.
    fn type_members(&self, pipeline_type: &str) -> Vec<(&'static str, Value)> {
        let mut members = Vec::new();
        match &self.rollback_target {
            Some(target) => {
                members.push(("executionType", text("ROLLBACK")));
                members.push(("rollbackMetadata", map(vec![("rollbackTargetPipelineExecutionId", text(target))])));
            }
            None if pipeline_type == "V2" => members.push(("executionType", text("STANDARD"))),
            None => {}
        }
        members
    }

    fn trigger(&self, account: &str) -> Value {
        let detail = match self.trigger_type.as_str() {
            "AutomatedRollback" => "arn:aws:codepipeline:::rollback".to_string(),
            _ => format!("arn:aws:iam::{account}:user/dev"),
        };
        map(vec![("triggerType", text(&self.trigger_type)), ("triggerDetail", text(&detail))])
    }
}

#[derive(Debug, Clone, Default)]
pub struct SimStage {
    pub name: String,
    /// Latest execution: pipeline execution ID and status.
    pub latest: Option<(String, String)>,
    /// An execution waiting at the inbound transition: pipeline execution ID and status.
    pub inbound: Option<(String, String)>,
    /// The executions queued at the inbound transition of a QUEUED or PARALLEL pipeline's stage,
    /// oldest first, while another holds the stage: pipeline execution ID and status, served as
    /// `inboundExecutions` (of type STANDARD). Empty leaves the member out.
    pub inbound_executions: Vec<(String, String)>,
    /// Inbound transition: enabled, last changed at. The first stage has none.
    pub transition: Option<(bool, f64)>,
    /// The latest execution's type, STANDARD or ROLLBACK; none for a V1 pipeline.
    pub latest_type: Option<String>,
    /// Conditions that gate the stage.
    pub conditions: Vec<SimCondition>,
    /// The latest execution's automatic and manual retry attempts.
    pub retries: Option<(i32, i32)>,
    pub actions: Vec<SimAction>,
}

/// A stage condition: its type (BeforeEntry, OnSuccess or OnFailure), its latest status, and its
/// rules' names and latest statuses. GetPipelineState reports its state, and GetPipeline declares
/// it in the stage (`beforeEntry`, `onSuccess` or `onFailure`), each rule's type following from
/// its name (see [`rule_provider`]).
#[derive(Debug, Clone, Default)]
pub struct SimCondition {
    pub condition_type: String,
    pub status: Option<String>,
    pub rules: Vec<(String, String)>,
}

#[derive(Debug, Clone, Default)]
pub struct SimAction {
    pub name: String,
    /// Category, owner and provider, as GetPipeline reports them; a CodeBuild action when none.
    pub type_id: Option<(String, String, String)>,
    pub latest: Option<SimActionExecution>,
    /// Current revision: revision ID and created at.
    pub revision: Option<(String, f64)>,
}

#[derive(Debug, Clone, Default)]
pub struct SimActionExecution {
    pub id: String,
    pub status: String,
    pub summary: Option<String>,
    pub last_status_change: f64,
    pub percent_complete: Option<i32>,
    /// Error code and message.
    pub error: Option<(String, String)>,
}

impl SimPipeline {
    /// A V2 pipeline with the given stages, each holding the given actions, none of which has run.
    pub fn new(name: &str, stages: &[(&str, &[&str])]) -> SimPipeline {
        SimPipeline {
            name: name.into(),
            pipeline_type: "V2".into(),
            execution_mode: "QUEUED".into(),
            version: 1,
            created: 1_700_000_000.0,
            updated: 1_700_000_000.0,
            stages: stages
                .iter()
                .enumerate()
                .map(|(i, (stage, actions))| SimStage {
                    name: (*stage).into(),
                    transition: (i > 0).then_some((true, 1_700_000_000.0)),
                    actions: actions.iter().map(|a| SimAction { name: (*a).into(), ..SimAction::default() }).collect(),
                    ..SimStage::default()
                })
                .collect(),
            executions: Vec::new(),
            denied: false,
            polling_disabled_at: None,
            tags: Vec::new(),
        }
    }
}

/// Answers one operation from the current state of `world`, the world of `account`, whose ID the
/// answers' ARNs carry.
pub fn handle(world: &World, account: &str, operation: &str, input: &Value) -> Result<Value, Failure> {
    match operation {
        "ListPipelines" => list_pipelines(world, input),
        "ListPipelineExecutions" => {
            let pipeline = readable(world, account, input, "pipelineName")?;
            let page = match input.as_map().and_then(|m| m.iter().find(|(k, _)| k.as_text() == Some("maxResults"))) {
                Some((_, v)) => v.as_integer().and_then(|i| usize::try_from(i).ok()).unwrap_or(100).clamp(1, 100),
                None => world.page(),
            };
            let (start, next) = page_bounds(member(input, "nextToken"), page, pipeline.executions.len())?;
            let summaries = pipeline.executions.iter().skip(start).take(page).map(|e| {
                let mut members = vec![
                    ("pipelineExecutionId", text(&e.id)),
                    ("status", text(&e.status)),
                    ("statusSummary", text("free text that never becomes a label")),
                    ("startTime", timestamp(e.start)),
                    ("lastUpdateTime", timestamp(e.last_update)),
                    ("trigger", e.trigger(account)),
                    ("executionMode", text(&pipeline.execution_mode)),
                ];
                members.extend(e.type_members(&pipeline.pipeline_type));
                map(members)
            });
            Ok(map(vec![("pipelineExecutionSummaries", list(summaries)), ("nextToken", opt_text(next.as_deref()))]))
        }
        "GetPipelineExecution" => {
            let pipeline = readable(world, account, input, "pipelineName")?;
            let id = member(input, "pipelineExecutionId")
                .ok_or_else(|| Failure::new(400, "ValidationException", "pipelineExecutionId is required"))?;
            let execution = pipeline.executions.iter().find(|e| e.id == id).ok_or_else(|| {
                Failure::new(400, "PipelineExecutionNotFoundException", format!("Pipeline execution {id} not found"))
            })?;
            let revisions = execution.revisions_created.iter().enumerate().map(|(i, created)| {
                map(vec![
                    ("name", text(&format!("Source{i}"))),
                    ("revisionId", text(&format!("{:040x}", i + 1))),
                    ("created", timestamp(*created)),
                ])
            });
            let mut members = vec![
                ("pipelineName", text(&pipeline.name)),
                ("pipelineVersion", int(pipeline.version.into())),
                ("pipelineExecutionId", text(&execution.id)),
                ("status", text(&execution.status)),
                ("artifactRevisions", list(revisions)),
                ("trigger", execution.trigger(account)),
                ("executionMode", text(&pipeline.execution_mode)),
            ];
            members.extend(execution.type_members(&pipeline.pipeline_type));
            Ok(map(vec![("pipelineExecution", map(members))]))
        }
        "ListActionExecutions" => list_action_executions(world, account, input),
        "ListRuleExecutions" => list_rule_executions(world, account, input),
        "GetPipeline" => readable(world, account, input, "name").map(|p| pipeline_declaration(p, account)),
        "GetPipelineState" => readable(world, account, input, "name").map(|p| pipeline_state(p, account)),
        "ListTagsForResource" => list_tags(world, account, input),
        _ => Err(Failure::new(400, "UnknownOperationException", format!("operation {operation} is not simulated"))),
    }
}

/// The pipeline the input's `member` names, as every read of one finds it: a ValidationException
/// without a name, PipelineNotFoundException for a pipeline that does not exist, and
/// AccessDeniedException for one behind a permissions boundary.
fn readable<'a>(world: &'a World, account: &str, input: &Value, member_name: &str) -> Result<&'a SimPipeline, Failure> {
    let name = member(input, member_name)
        .ok_or_else(|| Failure::new(400, "ValidationException", format!("{member_name} is required")))?;
    match world.pipelines.get(name) {
        Some(pipeline) if pipeline.denied => Err(denied(account, name)),
        Some(pipeline) => Ok(pipeline),
        None => {
            Err(Failure::new(400, "PipelineNotFoundException", format!("Account does not have a pipeline with name '{name}'")))
        }
    }
}

fn denied(account: &str, name: &str) -> Failure {
    Failure::new(
        400,
        "AccessDeniedException",
        format!(
            "User: arn:aws:sts::{account}:assumed-role/codepipeline-exporter is not authorized to perform this action on pipeline {name}"
        ),
    )
}

/// ListTagsForResource: the tags of the pipeline the `resourceArn` names, `maxResults` (1 to 100)
/// a page, else the world's page size. An ARN of another account names nothing here.
fn list_tags(world: &World, account: &str, input: &Value) -> Result<Value, Failure> {
    let arn = member(input, "resourceArn").ok_or_else(|| Failure::new(400, "ValidationException", "resourceArn is required"))?;
    let fields: Vec<&str> = arn.splitn(6, ':').collect();
    let [prefix, _, service, _, owner, name] = fields[..] else {
        return Err(Failure::new(400, "InvalidArnException", format!("The ARN {arn} is not valid")));
    };
    if prefix != "arn" || service != "codepipeline" || name.is_empty() {
        return Err(Failure::new(400, "InvalidArnException", format!("The ARN {arn} is not valid")));
    }
    let pipeline = world.pipelines.get(name).filter(|_| owner == account).ok_or_else(|| {
        Failure::new(400, "ResourceNotFoundException", format!("The resource with the ARN {arn} was not found"))
    })?;
    if pipeline.denied {
        return Err(denied(account, name));
    }
    let page = match number(input, "maxResults") {
        Some(asked @ 1..=100) => asked as usize,
        Some(_) => return Err(Failure::new(400, "ValidationException", "maxResults must be between 1 and 100")),
        None => world.page(),
    };
    let (start, next) = page_bounds(member(input, "nextToken"), page, pipeline.tags.len())?;
    let tags =
        pipeline.tags.iter().skip(start).take(page).map(|(key, value)| map(vec![("key", text(key)), ("value", text(value))]));
    Ok(map(vec![("tags", list(tags)), ("nextToken", opt_text(next.as_deref()))]))
}

/// The pipeline execution a List operation's `filter` names (`pipelineExecutionId`), if any:
/// PipelineExecutionNotFoundException for one the pipeline does not remember.
fn execution_filter<'a>(pipeline: &SimPipeline, input: &'a Value) -> Result<Option<&'a str>, Failure> {
    let filter = input.as_map().and_then(|m| m.iter().find(|(k, _)| k.as_text() == Some("filter"))).map(|(_, v)| v);
    let wanted = filter.and_then(|f| member(f, "pipelineExecutionId"));
    if let Some(id) = wanted
        && !pipeline.executions.iter().any(|e| e.id == id)
    {
        return Err(Failure::new(400, "PipelineExecutionNotFoundException", format!("Pipeline execution {id} not found")));
    }
    Ok(wanted)
}

/// The page size a List operation asks for: `maxResults` (1 to 100, else ValidationException), or
/// the world's page size without one.
fn max_results(world: &World, input: &Value) -> Result<usize, Failure> {
    match input.as_map().and_then(|m| m.iter().find(|(k, _)| k.as_text() == Some("maxResults"))) {
        Some((_, v)) => v
            .as_integer()
            .and_then(|i| usize::try_from(i).ok())
            .filter(|n| (1..=100).contains(n))
            .ok_or_else(|| Failure::new(400, "ValidationException", "maxResults must be between 1 and 100")),
        None => Ok(world.page()),
    }
}

/// ListActionExecutions: the action executions of one pipeline execution (the `filter`'s
/// `pipelineExecutionId`), or of all its remembered executions, newest first, `maxResults` (1 to
/// 100) a page, else the world's page size.
fn list_action_executions(world: &World, account: &str, input: &Value) -> Result<Value, Failure> {
    let pipeline = readable(world, account, input, "pipelineName")?;
    let wanted = execution_filter(pipeline, input)?;
    let page = max_results(world, input)?;
    let mut runs: Vec<(&str, &SimActionRun)> = pipeline
        .executions
        .iter()
        .filter(|e| wanted.is_none_or(|id| e.id == id))
        .flat_map(|e| e.actions.iter().map(move |a| (e.id.as_str(), a)))
        .collect();
    runs.sort_by(|a, b| b.1.start.total_cmp(&a.1.start));
    let (start, next) = page_bounds(member(input, "nextToken"), page, runs.len())?;
    let details = runs.iter().skip(start).take(page).map(|(execution, run)| {
        let (category, owner, provider) = &run.type_id;
        // The console's page of the build, when the action names one, as CodePipeline links it.
        let url = match &run.external_id {
            Some(build) => format!("https://console.aws.amazon.com/codebuild/home?region=us-east-1#/builds/{build}/view/new"),
            None => format!("https://console.aws.amazon.com/codesuite/codebuild/builds/{}", run.id),
        };
        let result = map(vec![
            ("externalExecutionId", opt_text(run.external_id.as_deref())),
            ("externalExecutionSummary", text("free text that never becomes a label")),
            ("externalExecutionUrl", text(&url)),
            (
                "errorDetails",
                run.error_code
                    .as_ref()
                    .map(|code| map(vec![("code", text(code)), ("message", text("Step \"test\" exited with code 1"))]))
                    .unwrap_or(Value::Null),
            ),
        ]);
        map(vec![
            ("pipelineExecutionId", text(execution)),
            ("actionExecutionId", text(&run.id)),
            ("pipelineVersion", int(pipeline.version.into())),
            ("stageName", text(&run.stage)),
            ("actionName", text(&run.action)),
            ("startTime", timestamp(run.start)),
            ("lastUpdateTime", timestamp(run.last_update)),
            ("status", text(&run.status)),
            (
                "input",
                map(vec![
                    (
                        "actionTypeId",
                        map(vec![
                            ("category", text(category)),
                            ("owner", text(owner)),
                            ("provider", text(provider)),
                            ("version", text("1")),
                        ]),
                    ),
                    ("configuration", map(vec![("ProjectName", text(&run.action))])),
                    ("region", text("us-east-1")),
                ]),
            ),
            ("output", map(vec![("executionResult", result)])),
        ])
    });
    Ok(map(vec![("actionExecutionDetails", list(details)), ("nextToken", opt_text(next.as_deref()))]))
}

/// The provider of a rule's type, from the rule's name, since a demo or test names its rules
/// after what they check: a name with "Alarm" is a CloudWatchAlarm rule, with "Lambda" a
/// LambdaInvoke one, with "Variable" a VariableCheck one, with "Command" a Commands one, and any
/// other (such as "DeployWindow") a DeploymentWindow one.
pub fn rule_provider(rule: &str) -> &'static str {
    if rule.contains("Alarm") {
        "CloudWatchAlarm"
    } else if rule.contains("Lambda") {
        "LambdaInvoke"
    } else if rule.contains("Variable") {
        "VariableCheck"
    } else if rule.contains("Command") {
        "Commands"
    } else {
        "DeploymentWindow"
    }
}

/// A rule's type as RuleDeclaration and RuleExecutionInput give it.
fn rule_type_id(rule: &str) -> Value {
    map(vec![("category", text("Rule")), ("owner", text("AWS")), ("provider", text(rule_provider(rule))), ("version", text("1"))])
}

/// A rule's configuration, as its provider expects one.
fn rule_configuration(rule: &str) -> Value {
    match rule_provider(rule) {
        "CloudWatchAlarm" => map(vec![("AlarmName", text(&format!("{rule}-alarm"))), ("WaitTime", text("1"))]),
        "DeploymentWindow" => map(vec![("Cron", text("0 0-23 ? * MON-FRI *")), ("TimeZone", text("UTC"))]),
        _ => map(Vec::new()),
    }
}

/// ListRuleExecutions: the rule executions of one pipeline execution (the `filter`'s
/// `pipelineExecutionId`), or of all its remembered executions, newest first, `maxResults` (1 to
/// 100) a page, else the world's page size. A rule execution that ended has an execution result,
/// with error details when it failed.
fn list_rule_executions(world: &World, account: &str, input: &Value) -> Result<Value, Failure> {
    let pipeline = readable(world, account, input, "pipelineName")?;
    let wanted = execution_filter(pipeline, input)?;
    let page = max_results(world, input)?;
    let mut runs: Vec<(&str, &SimRuleRun)> = pipeline
        .executions
        .iter()
        .filter(|e| wanted.is_none_or(|id| e.id == id))
        .flat_map(|e| e.rules.iter().map(move |r| (e.id.as_str(), r)))
        .collect();
    runs.sort_by(|a, b| b.1.start.total_cmp(&a.1.start));
    let (start, next) = page_bounds(member(input, "nextToken"), page, runs.len())?;
    let details = runs.iter().skip(start).take(page).map(|(execution, run)| {
        let output = (run.status != "InProgress").then(|| {
            let error = (run.status == "Failed")
                .then(|| map(vec![("code", text("RuleFailed")), ("message", text(&format!("Rule {} did not pass", run.rule)))]));
            map(vec![(
                "executionResult",
                map(vec![
                    ("externalExecutionSummary", text("free text that never becomes a label")),
                    ("errorDetails", error.unwrap_or(Value::Null)),
                ]),
            )])
        });
        map(vec![
            ("pipelineExecutionId", text(execution)),
            ("ruleExecutionId", text(&run.id)),
            ("pipelineVersion", int(pipeline.version.into())),
            ("stageName", text(&run.stage)),
            ("ruleName", text(&run.rule)),
            ("startTime", timestamp(run.start)),
            ("lastUpdateTime", timestamp(run.last_update)),
            ("status", text(&run.status)),
            (
                "input",
                map(vec![
                    ("ruleTypeId", rule_type_id(&run.rule)),
                    ("configuration", rule_configuration(&run.rule)),
                    ("region", text("us-east-1")),
                ]),
            ),
            ("output", output.unwrap_or(Value::Null)),
        ])
    });
    Ok(map(vec![("ruleExecutionDetails", list(details)), ("nextToken", opt_text(next.as_deref()))]))
}

/// A stage's condition as GetPipeline declares it: one condition holding every rule, with the
/// result AWS allows for its type (FAIL before entry and on success, ROLLBACK on failure).
fn condition_declaration(condition: &SimCondition) -> Value {
    let result = if condition.condition_type == "OnFailure" { "ROLLBACK" } else { "FAIL" };
    let rules = condition.rules.iter().map(|(name, _)| {
        map(vec![
            ("name", text(name)),
            ("ruleTypeId", rule_type_id(name)),
            ("configuration", rule_configuration(name)),
            ("region", text("us-east-1")),
        ])
    });
    let mut members = vec![("conditions", list([map(vec![("result", text(result)), ("rules", list(rules))])]))];
    if condition.condition_type == "OnFailure" {
        members.insert(0, ("result", text(result)));
    }
    map(members)
}

fn list_pipelines(world: &World, input: &Value) -> Result<Value, Failure> {
    let (start, next) = page_bounds(member(input, "nextToken"), world.page(), world.pipelines.len())?;
    let pipelines = world.pipelines.values().skip(start).take(world.page()).map(|p| {
        map(vec![
            ("name", text(&p.name)),
            ("version", int(p.version.into())),
            ("pipelineType", text(&p.pipeline_type)),
            ("executionMode", text(&p.execution_mode)),
            ("created", timestamp(p.created)),
            ("updated", timestamp(p.updated)),
        ])
    });
    Ok(map(vec![("pipelines", list(pipelines)), ("nextToken", opt_text(next.as_deref()))]))
}

/// The pipeline's structure and metadata as GetPipeline reports them.
fn pipeline_declaration(pipeline: &SimPipeline, account: &str) -> Value {
    let stages = pipeline.stages.iter().map(|stage| {
        let actions = stage.actions.iter().map(|action| {
            let (category, owner, provider) =
                action.type_id.clone().unwrap_or_else(|| ("Build".into(), "AWS".into(), "CodeBuild".into()));
            // A source action reads a repository's branch through a connection.
            let configuration = (category == "Source").then(|| {
                map(vec![
                    (
                        "ConnectionArn",
                        text(&format!(
                            "arn:aws:codeconnections:us-east-1:{account}:connection/c0a1b2c3-0000-4000-8000-00000000c001"
                        )),
                    ),
                    ("FullRepositoryId", text(&format!("acme/{}", pipeline.name))),
                    ("BranchName", text("main")),
                ])
            });
            map(vec![
                ("name", text(&action.name)),
                ("configuration", configuration.unwrap_or(Value::Null)),
                (
                    "actionTypeId",
                    map(vec![
                        ("category", text(&category)),
                        ("owner", text(&owner)),
                        ("provider", text(&provider)),
                        ("version", text("1")),
                    ]),
                ),
                ("runOrder", int(1)),
            ])
        });
        let mut members = vec![("name", text(&stage.name)), ("actions", list(actions))];
        for (member, kind) in [("beforeEntry", "BeforeEntry"), ("onSuccess", "OnSuccess"), ("onFailure", "OnFailure")] {
            if let Some(condition) = stage.conditions.iter().find(|c| c.condition_type == kind) {
                members.push((member, condition_declaration(condition)));
            }
        }
        map(members)
    });
    map(vec![
        (
            "pipeline",
            map(vec![
                ("name", text(&pipeline.name)),
                ("roleArn", text(&format!("arn:aws:iam::{account}:role/codepipeline-service"))),
                ("stages", list(stages)),
                ("version", int(pipeline.version.into())),
                ("pipelineType", text(&pipeline.pipeline_type)),
                ("executionMode", text(&pipeline.execution_mode)),
            ]),
        ),
        (
            "metadata",
            map(vec![
                ("pipelineArn", text(&format!("arn:aws:codepipeline:us-east-1:{account}:{}", pipeline.name))),
                ("created", timestamp(pipeline.created)),
                ("updated", timestamp(pipeline.updated)),
                ("pollingDisabledAt", pipeline.polling_disabled_at.map(timestamp).unwrap_or(Value::Null)),
            ]),
        ),
    ])
}

/// A stage's condition as GetPipelineState reports it: one condition holding every rule. A rule
/// that ran in one of the pipeline's remembered executions names its newest rule execution, as
/// ListRuleExecutions lists it; any other a made-up one.
/// The state of a stage's conditions of one type: the model's StageConditionState holds one
/// ConditionState per condition, and a stage may have several of a type.
fn condition_state(conditions: &[&SimCondition], stage: &str, pipeline: &SimPipeline) -> Value {
    let status = |status: Option<&str>| status.map(|s| map(vec![("status", text(s)), ("summary", text("simulated"))]));
    let each = conditions.iter().map(|condition| {
        let rules = condition.rules.iter().map(|(name, status)| {
            let newest = pipeline
                .executions
                .iter()
                .flat_map(|e| &e.rules)
                .filter(|r| r.stage == stage && r.rule == *name)
                .max_by(|a, b| a.start.total_cmp(&b.start));
            let id = newest.map_or_else(|| format!("rule-{name}"), |r| r.id.clone());
            map(vec![
                ("ruleName", text(name)),
                (
                    "latestExecution",
                    map(vec![
                        ("ruleExecutionId", text(&id)),
                        ("status", text(status)),
                        ("lastStatusChange", newest.map_or(Value::Null, |r| timestamp(r.last_update))),
                    ]),
                ),
            ])
        });
        map(vec![("latestExecution", status(condition.status.as_deref()).unwrap_or(Value::Null)), ("ruleStates", list(rules))])
    });
    let first = conditions.first().and_then(|c| c.status.as_deref());
    map(vec![("latestExecution", status(first).unwrap_or(Value::Null)), ("conditionStates", list(each))])
}

fn pipeline_state(pipeline: &SimPipeline, account: &str) -> Value {
    let stages = pipeline.stages.iter().map(|stage| {
        let transition = stage.transition.map(|(enabled, changed)| {
            map(vec![
                ("enabled", Value::Bool(enabled)),
                ("lastChangedAt", timestamp(changed)),
                ("lastChangedBy", text(&format!("arn:aws:iam::{account}:user/ops"))),
                ("disabledReason", if enabled { Value::Null } else { text("Frozen for the release; contact \"ops\"") }),
            ])
        });
        let actions = stage.actions.iter().map(|action| {
            let revision = action.revision.as_ref().map(|(id, created)| {
                map(vec![("revisionId", text(id)), ("revisionChangeId", text(id)), ("created", timestamp(*created))])
            });
            let latest = action.latest.as_ref().map(|e| {
                map(vec![
                    ("actionExecutionId", text(&e.id)),
                    ("status", text(&e.status)),
                    ("summary", opt_text(e.summary.as_deref())),
                    ("lastStatusChange", timestamp(e.last_status_change)),
                    ("externalExecutionId", text(&format!("build:{}", e.id))),
                    ("percentComplete", e.percent_complete.map(|p| int(p.into())).unwrap_or(Value::Null)),
                    (
                        "errorDetails",
                        e.error
                            .as_ref()
                            .map(|(code, message)| map(vec![("code", text(code)), ("message", text(message))]))
                            .unwrap_or(Value::Null),
                    ),
                ])
            });
            map(vec![
                ("actionName", text(&action.name)),
                ("currentRevision", revision.unwrap_or(Value::Null)),
                ("latestExecution", latest.unwrap_or(Value::Null)),
            ])
        });
        let execution = |e: &Option<(String, String)>| {
            e.as_ref()
                .map(|(id, status)| map(vec![("pipelineExecutionId", text(id)), ("status", text(status))]))
                .unwrap_or(Value::Null)
        };
        let mut latest = execution(&stage.latest);
        if let (Value::Map(fields), Some(kind)) = (&mut latest, &stage.latest_type) {
            fields.push((text("type"), text(kind)));
        }
        let mut fields = vec![
            ("stageName", text(&stage.name)),
            ("inboundExecution", execution(&stage.inbound)),
            (
                "inboundExecutions",
                if stage.inbound_executions.is_empty() {
                    Value::Null
                } else {
                    list(stage.inbound_executions.iter().map(|(id, status)| {
                        map(vec![("pipelineExecutionId", text(id)), ("status", text(status)), ("type", text("STANDARD"))])
                    }))
                },
            ),
            ("inboundTransitionState", transition.unwrap_or(Value::Null)),
            ("actionStates", list(actions)),
            ("latestExecution", latest),
            (
                "retryStageMetadata",
                stage
                    .retries
                    .map(|(automated, manual)| {
                        // The model's RetryAttempt is at least 1: a kind of retry that has not
                        // happened is left out, not given as 0.
                        let attempt = |n: i32| if n > 0 { int(n.into()) } else { Value::Null };
                        map(vec![
                            ("autoStageRetryAttempt", attempt(automated)),
                            ("manualStageRetryAttempt", attempt(manual)),
                            ("latestRetryTrigger", text(if manual > 0 { "ManualStageRetry" } else { "AutomatedStageRetry" })),
                        ])
                    })
                    .unwrap_or(Value::Null),
            ),
        ];
        for (field, kind) in [
            ("beforeEntryConditionState", "BeforeEntry"),
            ("onSuccessConditionState", "OnSuccess"),
            ("onFailureConditionState", "OnFailure"),
        ] {
            let of_kind: Vec<&SimCondition> = stage.conditions.iter().filter(|c| c.condition_type == kind).collect();
            if !of_kind.is_empty() {
                fields.push((field, condition_state(&of_kind, &stage.name, pipeline)));
            }
        }
        map(fields)
    });
    map(vec![
        ("pipelineName", text(&pipeline.name)),
        ("pipelineVersion", int(pipeline.version.into())),
        ("stageStates", list(stages)),
        ("created", timestamp(pipeline.created)),
        ("updated", timestamp(pipeline.updated)),
    ])
}
