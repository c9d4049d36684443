//! The simulated CodeBuild service: the builds that pipelines' CodeBuild actions ran, phase by
//! phase, as BatchGetBuilds describes them. A build's phases tell how long it waited for
//! capacity (QUEUED, PROVISIONING) before it worked.

use ciborium::Value;

use super::protocol::{Failure, int, list, map, text, timestamp};
use super::{REGION, World};

/// A build: its ID, `<project>:<uuid>` as CodeBuild forms it, and its phases so far, oldest first.
/// Its status, start, end and current phase follow from its phases.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SimBuild {
    pub id: String,
    pub phases: Vec<SimPhase>,
}

/// One phase of a build: its type (SUBMITTED, QUEUED, PROVISIONING, ... FINALIZING, COMPLETED),
/// its status and end once it ended, and its start. The phase in progress has neither status nor
/// end, and neither has COMPLETED, the last phase of a build that ended, as in real builds.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SimPhase {
    pub phase_type: String,
    pub status: Option<String>,
    pub start: f64,
    pub end: Option<f64>,
}

/// The most IDs one BatchGetBuilds call may ask for.
const MAX_IDS: usize = 100;

/// The project of a build ID: what comes before its first ':'.
fn project(id: &str) -> &str {
    id.split_once(':').map_or(id, |(project, _)| project)
}

/// Answers one operation from the current state of `world`, the world of `account`, whose ID the
/// answers' ARNs carry.
pub fn handle(world: &World, account: &str, operation: &str, input: &Value) -> Result<Value, Failure> {
    match operation {
        "BatchGetBuilds" => batch_get_builds(world, account, input),
        _ => Err(Failure::new(400, "UnknownOperationException", format!("operation {operation} is not simulated"))),
    }
}

/// BatchGetBuilds: the builds of the `ids` (1 to 100 non-empty strings, else
/// InvalidInputException) that the world holds, each once, in the order asked, and the IDs of the
/// others as `buildsNotFound`. An ID of a project in `denied_build_projects` makes the whole call
/// AccessDeniedException, as IAM refuses a request for any resource it does not allow.
fn batch_get_builds(world: &World, account: &str, input: &Value) -> Result<Value, Failure> {
    let invalid = |message: &str| Failure::new(400, "InvalidInputException", message);
    let ids = input
        .as_map()
        .and_then(|m| m.iter().find(|(k, _)| k.as_text() == Some("ids")))
        .and_then(|(_, v)| v.as_array())
        .ok_or_else(|| invalid("ids is required"))?;
    if ids.is_empty() || ids.len() > MAX_IDS {
        return Err(invalid(&format!("Number of build IDs must be between 1 and {MAX_IDS}, got {}", ids.len())));
    }
    let mut asked: Vec<&str> = Vec::with_capacity(ids.len());
    for id in ids {
        let id = id.as_text().filter(|id| !id.is_empty()).ok_or_else(|| invalid("Build IDs must be non-empty strings"))?;
        if !asked.contains(&id) {
            asked.push(id);
        }
    }
    if let Some(denied) = asked.iter().map(|id| project(id)).find(|p| world.denied_build_projects.contains(*p)) {
        return Err(Failure::new(
            400,
            "AccessDeniedException",
            format!(
                "User: arn:aws:sts::{account}:assumed-role/codepipeline-exporter/session is not authorized to perform: codebuild:BatchGetBuilds on resource: arn:aws:codebuild:{REGION}:{account}:project/{denied}"
            ),
        ));
    }
    let (found, missing): (Vec<&str>, Vec<&str>) = asked.into_iter().partition(|id| world.builds.contains_key(*id));
    let builds = found.into_iter().filter_map(|id| world.builds.get(id)).map(|build| describe(build, account));
    let mut members = vec![("builds", list(builds))];
    if !missing.is_empty() {
        members.push(("buildsNotFound", list(missing.into_iter().map(text))));
    }
    Ok(map(members))
}

/// A build as BatchGetBuilds describes it. It is complete once its last phase is COMPLETED, which
/// starts when it ended; its status is then that of its first phase that did not succeed, or
/// SUCCEEDED, and IN_PROGRESS before.
fn describe(build: &SimBuild, account: &str) -> Value {
    let last = build.phases.last();
    let completed = last.is_some_and(|p| p.phase_type == "COMPLETED");
    let status = if completed {
        build.phases.iter().filter_map(|p| p.status.as_deref()).find(|s| *s != "SUCCEEDED").unwrap_or("SUCCEEDED")
    } else {
        "IN_PROGRESS"
    };
    let phases = build.phases.iter().map(|phase| {
        map(vec![
            ("phaseType", text(&phase.phase_type)),
            ("phaseStatus", phase.status.as_deref().map_or(Value::Null, text)),
            ("startTime", timestamp(phase.start)),
            ("endTime", phase.end.map_or(Value::Null, timestamp)),
            ("durationInSeconds", phase.end.map_or(Value::Null, |end| int((end - phase.start).round() as i64))),
        ])
    });
    map(vec![
        ("id", text(&build.id)),
        ("arn", text(&format!("arn:aws:codebuild:{REGION}:{account}:build/{}", build.id))),
        ("startTime", build.phases.first().map_or(Value::Null, |p| timestamp(p.start))),
        ("endTime", last.filter(|_| completed).map_or(Value::Null, |p| timestamp(p.start))),
        ("currentPhase", last.map_or(Value::Null, |p| text(&p.phase_type))),
        ("buildStatus", text(status)),
        ("projectName", text(project(&build.id))),
        ("phases", list(phases)),
        ("buildComplete", Value::Bool(completed)),
    ])
}
