//! A pipeline run as an OpenTelemetry trace, following the CI/CD semantic conventions: a root
//! span for the run (kind SERVER, `RUN <pipeline>`), a span for each stage under it, and a task
//! span (kind INTERNAL) for each action execution under its stage. The run's identity goes on the
//! resource, one per run, as the conventions say.
//!
//! The trace shows the run's [`Timeline`] as the metrics count it: a `WAIT <stage>` span just
//! before each stage entered after a wait, with `cicd.pipeline.run.state` `pending` and the reason,
//! the rule executions that gated it under it, and each build's phases under its action.
//!
//! Every ID is a hash of what names the run, so that a restart or a second replica never makes a
//! second trace of one run: the trace ID is the first 16 bytes of the SHA-256 of the account ID,
//! region, pipeline and execution ID, and a span ID is bytes 8 to 16 of the SHA-256 of the same and
//! what the span is (the run, a stage's attempt, an action execution), as the OpenTelemetry
//! Collector's GitHub receiver derives its IDs.
//!
//! A stage retried in place (RetryStageExecution keeps the execution ID) makes the run end again:
//! its new action executions become new spans of the same trace, under a stage span of their own
//! (the attempt), and the root span is sent again with the same ID and its new end and result. A
//! backend then holds two versions of the root, which share their ID; the newer has the later end.

use sha2::{Digest as _, Sha256};

use super::timeline::{ActionRun, Phase, REASONS, RuleRun, Run, Timeline};
use crate::exposition::Exemplar;
use crate::traces::otlp::{Attributes, Kind, ResourceSpans, Span, Value};

/// What names a pipeline in every ID of its runs, and where its runs are shown.
#[derive(Debug, Clone, PartialEq)]
pub struct Pipeline {
    pub account_id: String,
    pub region: String,
    pub name: String,
    /// The repository and branch of the pipeline's source action, from its configuration.
    pub repository: Option<String>,
    pub branch: Option<String>,
}

/// What the run's source revision was, from GetPipelineExecution.
#[derive(Debug, Clone, PartialEq)]
pub struct Revision {
    pub id: String,
    pub created: Option<f64>,
}

fn digest(parts: &[&str]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part.as_bytes());
        hasher.update([0]);
    }
    hasher.finalize().into()
}

fn span_id(parts: &[&str]) -> [u8; 8] {
    let digest = digest(parts);
    let mut id = [0; 8];
    id.copy_from_slice(&digest[8..16]);
    id
}

impl Pipeline {
    fn parts<'a>(&'a self, execution: &'a str) -> [&'a str; 4] {
        [&self.account_id, &self.region, &self.name, execution]
    }

    pub fn trace_id(&self, execution: &str) -> [u8; 16] {
        let [a, r, p, e] = self.parts(execution);
        let digest = digest(&[a, r, p, e, "trace"]);
        let mut id = [0; 16];
        id.copy_from_slice(&digest[..16]);
        id
    }

    pub fn root_span_id(&self, execution: &str) -> [u8; 8] {
        let [a, r, p, e] = self.parts(execution);
        span_id(&[a, r, p, e, "run"])
    }

    /// A stage's attempt is named by its first action execution.
    pub fn stage_span_id(&self, execution: &str, stage: &str, first_action_execution: &str) -> [u8; 8] {
        let [a, r, p, e] = self.parts(execution);
        span_id(&[a, r, p, e, "stage", stage, first_action_execution])
    }

    pub fn action_span_id(&self, execution: &str, action_execution: &str) -> [u8; 8] {
        let [a, r, p, e] = self.parts(execution);
        span_id(&[a, r, p, e, "action", action_execution])
    }

    /// The wait before a stage's attempt is named by the attempt's first action execution.
    pub fn wait_span_id(&self, execution: &str, stage: &str, first_action_execution: &str) -> [u8; 8] {
        let [a, r, p, e] = self.parts(execution);
        span_id(&[a, r, p, e, "wait", stage, first_action_execution])
    }

    pub fn rule_span_id(&self, execution: &str, rule_execution: &str) -> [u8; 8] {
        let [a, r, p, e] = self.parts(execution);
        span_id(&[a, r, p, e, "rule", rule_execution])
    }

    pub fn phase_span_id(&self, execution: &str, action_execution: &str, phase: &str) -> [u8; 8] {
        let [a, r, p, e] = self.parts(execution);
        span_id(&[a, r, p, e, "phase", action_execution, phase])
    }

    /// The exemplar that links an observation of the run to its root span.
    pub fn run_exemplar(&self, execution: &str, value: f64, timestamp: f64) -> Exemplar {
        Exemplar { trace_id: self.trace_id(execution), span_id: self.root_span_id(execution), value, timestamp }
    }

    /// The exemplar that links an observation of a stage's attempt to its span.
    pub fn stage_exemplar(
        &self,
        execution: &str,
        stage: &str,
        first_action_execution: &str,
        value: f64,
        timestamp: f64,
    ) -> Exemplar {
        Exemplar {
            trace_id: self.trace_id(execution),
            span_id: self.stage_span_id(execution, stage, first_action_execution),
            value,
            timestamp,
        }
    }

    /// The console page of an execution.
    pub fn console_url(&self, execution: &str) -> String {
        format!(
            "https://{region}.console.aws.amazon.com/codesuite/codepipeline/pipelines/{pipeline}/executions/{execution}/timeline?region={region}",
            region = self.region,
            pipeline = self.name
        )
    }
}

/// `cicd.pipeline.result` of a run's final status: Succeeded is success, Failed failure, Stopped
/// and Cancelled cancellation, and Superseded skip (a newer run went on in its place).
pub fn pipeline_result(status: &str) -> &'static str {
    match status {
        "Succeeded" => "success",
        "Failed" => "failure",
        "Stopped" | "Cancelled" => "cancellation",
        "Superseded" => "skip",
        _ => "error",
    }
}

/// `cicd.pipeline.task.run.result` of an action execution: Abandoned is cancellation.
pub fn task_result(status: &str) -> &'static str {
    match status {
        "Succeeded" => "success",
        "Failed" => "failure",
        "Abandoned" => "cancellation",
        _ => "error",
    }
}

fn nanos(seconds: f64) -> u64 {
    (seconds * 1e9).round().max(0.0) as u64
}

/// The spans of one read of a finished run: its root, and the waits, stage attempts, action
/// executions, rule executions and build phases of its `timeline`.
pub fn build(
    pipeline: &Pipeline,
    service_name: &str,
    run: &Run,
    timeline: &Timeline<'_>,
    revision: Option<&Revision>,
) -> ResourceSpans {
    let trace_id = pipeline.trace_id(&run.id);
    let root_id = pipeline.root_span_id(&run.id);
    let console = pipeline.console_url(&run.id);
    let mut resource: Attributes = vec![
        ("service.name", service_name.into()),
        ("cicd.pipeline.name", pipeline.name.as_str().into()),
        ("cicd.pipeline.run.id", run.id.as_str().into()),
        ("cicd.pipeline.run.url.full", console.as_str().into()),
        ("cloud.provider", "aws".into()),
        ("cloud.account.id", pipeline.account_id.as_str().into()),
        ("cloud.region", pipeline.region.as_str().into()),
    ];
    if let Some(revision) = revision {
        resource.push(("vcs.ref.head.revision", revision.id.as_str().into()));
    }
    if let Some(branch) = &pipeline.branch {
        resource.push(("vcs.ref.head.name", branch.as_str().into()));
    }
    if let Some(repository) = &pipeline.repository {
        // The conventions want the repository's own name, without its owner.
        let name = repository.rsplit('/').next().unwrap_or(repository);
        resource.push(("vcs.repository.name", name.into()));
    }
    let attempts = &timeline.attempts;
    let result = pipeline_result(&run.status);
    let failure = (result == "failure").then(|| attempts.iter().rev().find_map(|a| a.failure()).unwrap_or("Failed"));
    let mut root_attributes: Attributes =
        vec![("cicd.pipeline.action.name", "RUN".into()), ("cicd.pipeline.result", result.into())];
    if let Some(code) = failure {
        root_attributes.push(("error.type", code.into()));
    }
    let mut spans = vec![Span {
        trace_id,
        span_id: root_id,
        parent: None,
        name: format!("RUN {}", pipeline.name),
        kind: Kind::Server,
        start_unix_nanos: nanos(run.start),
        end_unix_nanos: nanos(run.end.max(run.start)),
        attributes: root_attributes,
        error: failure.map(str::to_string),
    }];
    for (i, (attempt, time)) in attempts.iter().zip(&timeline.stages).enumerate() {
        let (from, to) = time.entry;
        if to > from {
            let wait_id = pipeline.wait_span_id(&run.id, attempt.stage, attempt.first());
            // The reason that held the run longest names the wait; both entry reasons' seconds
            // are attributes.
            let reason = if time.waits[1] > time.waits[0] { REASONS[1] } else { REASONS[0] };
            spans.push(Span {
                trace_id,
                span_id: wait_id,
                parent: Some(root_id),
                name: format!("WAIT {}", attempt.stage),
                kind: Kind::Internal,
                start_unix_nanos: nanos(from),
                end_unix_nanos: nanos(to),
                attributes: vec![
                    ("cicd.pipeline.run.state", "pending".into()),
                    ("aws.codepipeline.stage.name", attempt.stage.into()),
                    ("aws.codepipeline.wait.reason", reason.into()),
                    ("aws.codepipeline.wait.queued_seconds", Value::Double(time.waits[0])),
                    ("aws.codepipeline.wait.gate_seconds", Value::Double(time.waits[1])),
                ],
                error: None,
            });
            for rule in timeline.gate_rules(i) {
                spans.push(rule_span(pipeline, &run.id, trace_id, wait_id, rule));
            }
        }
        let stage_id = pipeline.stage_span_id(&run.id, attempt.stage, attempt.first());
        let failure = attempt.failure();
        let mut attributes: Attributes = vec![("aws.codepipeline.stage.name", attempt.stage.into())];
        if let Some(code) = failure {
            attributes.push(("error.type", code.into()));
        }
        spans.push(Span {
            trace_id,
            span_id: stage_id,
            parent: Some(root_id),
            name: attempt.stage.to_string(),
            kind: Kind::Internal,
            start_unix_nanos: nanos(attempt.start()),
            end_unix_nanos: nanos(attempt.end()),
            attributes,
            error: failure.map(str::to_string),
        });
        for action in &attempt.runs {
            let action_id = pipeline.action_span_id(&run.id, &action.id);
            spans.push(action_span(pipeline, &run.id, trace_id, stage_id, action, &console));
            for phase in timeline.phases.get(action.id.as_str()).into_iter().flatten() {
                spans.push(phase_span(pipeline, &run.id, trace_id, action_id, &action.id, phase));
            }
        }
    }
    ResourceSpans { resource, spans }
}

/// A rule execution that gated a stage, under the wait it held.
fn rule_span(pipeline: &Pipeline, execution: &str, trace_id: [u8; 16], parent: [u8; 8], rule: &RuleRun) -> Span {
    let failure = (rule.status == "Failed").then(|| "Failed".to_string());
    Span {
        trace_id,
        span_id: pipeline.rule_span_id(execution, &rule.id),
        parent: Some(parent),
        name: format!("RULE {}", rule.rule),
        kind: Kind::Internal,
        start_unix_nanos: nanos(rule.start),
        end_unix_nanos: nanos(rule.end.max(rule.start)),
        attributes: vec![
            ("aws.codepipeline.stage.name", rule.stage.as_str().into()),
            ("aws.codepipeline.rule.name", rule.rule.as_str().into()),
            ("aws.codepipeline.rule.execution.id", rule.id.as_str().into()),
            ("aws.codepipeline.rule.status", rule.status.as_str().into()),
        ],
        error: failure,
    }
}

/// A phase of the build an action ran, under the action; the timeline clipped it into the action's
/// span, after the phase before it.
fn phase_span(
    pipeline: &Pipeline,
    execution: &str,
    trace_id: [u8; 16],
    parent: [u8; 8],
    action_execution: &str,
    phase: &Phase,
) -> Span {
    Span {
        trace_id,
        span_id: pipeline.phase_span_id(execution, action_execution, &phase.phase_type),
        parent: Some(parent),
        name: phase.phase_type.clone(),
        kind: Kind::Internal,
        start_unix_nanos: nanos(phase.start),
        end_unix_nanos: nanos(phase.end),
        attributes: vec![("aws.codebuild.phase.type", phase.phase_type.as_str().into())],
        error: None,
    }
}

fn action_span(
    pipeline: &Pipeline,
    execution: &str,
    trace_id: [u8; 16],
    parent: [u8; 8],
    action: &ActionRun,
    console: &str,
) -> Span {
    let result = task_result(&action.status);
    let mut attributes: Attributes = vec![
        ("cicd.pipeline.task.name", action.action.as_str().into()),
        ("cicd.pipeline.task.run.id", action.id.as_str().into()),
        ("cicd.pipeline.task.run.url.full", action.url.as_deref().unwrap_or(console).into()),
        ("cicd.pipeline.task.run.result", result.into()),
    ];
    let task_type = match action.category.as_str() {
        "Build" => Some("build"),
        "Test" => Some("test"),
        "Deploy" => Some("deploy"),
        _ => None,
    };
    if let Some(task_type) = task_type {
        attributes.push(("cicd.pipeline.task.type", task_type.into()));
    }
    attributes.extend([
        ("aws.codepipeline.action.category", Value::from(action.category.as_str())),
        ("aws.codepipeline.action.owner", action.owner.as_str().into()),
        ("aws.codepipeline.action.provider", action.provider.as_str().into()),
    ]);
    let failure = (result == "failure").then(|| action.error_code.as_deref().unwrap_or("Failed"));
    if let Some(code) = failure {
        attributes.push(("error.type", code.into()));
    }
    Span {
        trace_id,
        span_id: pipeline.action_span_id(execution, &action.id),
        parent: Some(parent),
        name: action.action.clone(),
        kind: Kind::Internal,
        start_unix_nanos: nanos(action.start),
        end_unix_nanos: nanos(action.end.max(action.start)),
        attributes,
        error: failure.map(str::to_string),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_depend_on_the_run_alone() {
        let pipeline = Pipeline {
            account_id: "111122223333".into(),
            region: "us-east-1".into(),
            name: "app".into(),
            repository: None,
            branch: None,
        };
        assert_eq!(pipeline.trace_id("e1"), pipeline.clone().trace_id("e1"));
        assert_ne!(pipeline.trace_id("e1"), pipeline.trace_id("e2"));
        let other = Pipeline { region: "eu-west-1".into(), ..pipeline.clone() };
        assert_ne!(pipeline.trace_id("e1"), other.trace_id("e1"));
        assert_ne!(pipeline.root_span_id("e1"), pipeline.action_span_id("e1", "a1"));
    }

    #[test]
    fn results_map_codepipeline_statuses() {
        let statuses = ["Succeeded", "Failed", "Stopped", "Cancelled", "Superseded"];
        assert_eq!(statuses.map(pipeline_result), ["success", "failure", "cancellation", "cancellation", "skip"]);
        assert_eq!(["Succeeded", "Failed", "Abandoned"].map(task_result), ["success", "failure", "cancellation"]);
    }
}
