//! The simulated CodePipeline service, in awsJson 1.1: JSON bodies, timestamps as epoch-second
//! numbers, errors as a non-2xx status with `__type` and `message`.

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Response, StatusCode};
use serde_json::{Map, Value, json};

use super::World;

pub const CONTENT_TYPE: &str = "application/x-amz-json-1.1";

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
}

#[derive(Debug, Clone, Default)]
pub struct SimStage {
    pub name: String,
    /// Latest execution: pipeline execution ID and status.
    pub latest: Option<(String, String)>,
    /// An execution waiting at the inbound transition: pipeline execution ID and status.
    pub inbound: Option<(String, String)>,
    /// Inbound transition: enabled, last changed at. The first stage has none.
    pub transition: Option<(bool, f64)>,
    pub actions: Vec<SimAction>,
}

#[derive(Debug, Clone, Default)]
pub struct SimAction {
    pub name: String,
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
        }
    }

    pub fn stage_mut(&mut self, name: &str) -> Option<&mut SimStage> {
        self.stages.iter_mut().find(|s| s.name == name)
    }
}

/// Answers one operation from the world's current state.
pub fn handle(world: &World, operation: &str, body: &Bytes) -> Response<Full<Bytes>> {
    let input: Value = match serde_json::from_slice(body) {
        Ok(input) => input,
        Err(_) => return error(400, "SerializationException", "the request body is not JSON"),
    };
    match operation {
        "ListPipelines" => list_pipelines(world, &input),
        "GetPipelineState" => {
            let Some(name) = input.get("name").and_then(Value::as_str) else {
                return error(400, "ValidationException", "name is required");
            };
            match world.pipelines.get(name) {
                Some(pipeline) => ok(pipeline_state(pipeline)),
                None => error(400, "PipelineNotFoundException", &format!("Account does not have a pipeline with name '{name}'")),
            }
        }
        _ => error(400, "UnknownOperationException", &format!("operation {operation} is not simulated")),
    }
}

fn list_pipelines(world: &World, input: &Value) -> Response<Full<Bytes>> {
    let start = match input.get("nextToken").and_then(Value::as_str) {
        Some(token) => match token.parse::<usize>() {
            Ok(start) => start,
            Err(_) => return error(400, "InvalidNextTokenException", "The next token is not valid"),
        },
        None => 0,
    };
    let page_size = if world.page_size == 0 { 100 } else { world.page_size };
    let pipelines: Vec<Value> = world
        .pipelines
        .values()
        .skip(start)
        .take(page_size)
        .map(|p| {
            json!({
                "name": p.name, "version": p.version, "pipelineType": p.pipeline_type,
                "executionMode": p.execution_mode, "created": p.created, "updated": p.updated,
            })
        })
        .collect();
    let mut output = json!({ "pipelines": pipelines });
    if start + page_size < world.pipelines.len() {
        output["nextToken"] = json!((start + page_size).to_string());
    }
    ok(output)
}

fn pipeline_state(pipeline: &SimPipeline) -> Value {
    let stages: Vec<Value> = pipeline
        .stages
        .iter()
        .map(|stage| {
            let mut out = Map::new();
            out.insert("stageName".into(), json!(stage.name));
            if let Some((id, status)) = &stage.inbound {
                out.insert("inboundExecution".into(), json!({ "pipelineExecutionId": id, "status": status }));
            }
            if let Some((enabled, changed)) = stage.transition {
                let mut transition = json!({ "enabled": enabled, "lastChangedAt": changed, "lastChangedBy": "arn:aws:iam::111122223333:user/ops" });
                if !enabled {
                    transition["disabledReason"] = json!("Frozen for the release; contact \"ops\"");
                }
                out.insert("inboundTransitionState".into(), transition);
            }
            let actions: Vec<Value> = stage
                .actions
                .iter()
                .map(|action| {
                    let mut out = Map::new();
                    out.insert("actionName".into(), json!(action.name));
                    if let Some((id, created)) = &action.revision {
                        out.insert("currentRevision".into(), json!({ "revisionId": id, "revisionChangeId": id, "created": created }));
                    }
                    if let Some(e) = &action.latest {
                        let mut latest = json!({
                            "actionExecutionId": e.id, "status": e.status, "lastStatusChange": e.last_status_change,
                            "externalExecutionId": format!("build:{}", e.id),
                        });
                        if let Some(summary) = &e.summary {
                            latest["summary"] = json!(summary);
                        }
                        if let Some(percent) = e.percent_complete {
                            latest["percentComplete"] = json!(percent);
                        }
                        if let Some((code, message)) = &e.error {
                            latest["errorDetails"] = json!({ "code": code, "message": message });
                        }
                        out.insert("latestExecution".into(), latest);
                    }
                    Value::Object(out)
                })
                .collect();
            out.insert("actionStates".into(), json!(actions));
            if let Some((id, status)) = &stage.latest {
                out.insert("latestExecution".into(), json!({ "pipelineExecutionId": id, "status": status }));
            }
            Value::Object(out)
        })
        .collect();
    json!({
        "pipelineName": pipeline.name, "pipelineVersion": pipeline.version, "stageStates": stages,
        "created": pipeline.created, "updated": pipeline.updated,
    })
}

fn ok(output: Value) -> Response<Full<Bytes>> {
    respond(StatusCode::OK, &output)
}

/// An awsJson 1.1 error answer.
pub fn error(status: u16, code: &str, message: &str) -> Response<Full<Bytes>> {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
    respond(status, &json!({ "__type": code, "message": message }))
}

fn respond(status: StatusCode, body: &Value) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert("content-type", CONTENT_TYPE.parse().expect("static header"));
    response
}
