//! Run anatomy from ListActionExecutions: where each run's time goes, stage by stage and action by
//! action, and what it costs.
//!
//! GetPipelineState shows only each action's latest execution, so an action that started and
//! ended between two polls, or the first attempt of a retried one, would go unseen. Once the
//! history ([`super::executions`]) counts an execution at a final status, its action executions
//! are read here, following every page, and each is counted once by its `actionExecutionId`.
//! A stage retried in place (RetryStageExecution keeps the execution ID) makes the execution
//! final again: it is read again, and only the action executions not seen before count.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::ops::ControlFlow;
use std::sync::Arc;

use aws_sdk_codepipeline::types::ActionExecutionFilter;

use super::trace::{self, Revision};
use crate::aws::{self, CallError, Scope};
use crate::exposition::{Family, Histogram, Kind, Rendered};
use crate::traces::Sink;
use crate::vecmap::VecMap;

pub static ACTION_EXECUTIONS: Family = Family {
    name: "aws_codepipeline_action_executions_total",
    help: "Action executions that reached a final status since the exporter started, each once by its actionExecutionId (from ListActionExecutions; from GetPipelineState's latest executions when execution history is off).",
    kind: Kind::Counter,
};
pub static ACTION_DURATION: Family = Family {
    name: "aws_codepipeline_action_duration_seconds_total",
    help: "Seconds the action executions counted in aws_codepipeline_action_executions_total ran, from startTime to lastUpdateTime; a status has a series once it occurred.",
    kind: Kind::Counter,
};
pub static STAGE_DURATION: Family = Family {
    name: "aws_codepipeline_stage_duration_seconds",
    help: "Duration of the stage in each run (or each retry of it) since the exporter started, from its first action's start to its last action's end.",
    kind: Kind::Histogram,
};
pub static STAGE_LAST_DURATION: Family = Family {
    name: "aws_codepipeline_stage_last_duration_seconds",
    help: "Duration of the stage in the most recent run read, from its first action's start to its last action's end.",
    kind: Kind::Gauge,
};
pub static BILLED_ACTION_SECONDS: Family = Family {
    name: "aws_codepipeline_billed_action_seconds_total",
    help: "Billed action execution time of a V2 pipeline: each action's duration rounded up to the whole minute, manual approvals and custom actions excluded; always 0 for V1 pipelines, which are billed per month.",
    kind: Kind::Counter,
};

/// Final statuses of an action execution, in the order their series are written.
pub const ACTION_FINAL: [&str; 3] = ["Abandoned", "Failed", "Succeeded"];
/// Bucket bounds from 30 seconds to an hour: seven, so that a pipeline of five stages keeps within
/// the series budget of the README, and p50/p90 of stages that take seconds to tens of minutes
/// fall between two bounds.
const STAGE_BUCKETS: [f64; 7] = [30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0];
/// Runs whose action executions are remembered, so that a stage retried in one of them counts
/// only its new executions. A retry resumes one of the newest runs; older ones never change.
const REMEMBERED_RUNS: usize = 8;

/// One action execution as ListActionExecutions details it.
#[derive(Debug, Clone, PartialEq)]
pub struct ActionRun {
    pub stage: String,
    pub action: String,
    pub id: String,
    pub status: String,
    pub start: f64,
    pub end: f64,
    pub category: String,
    pub owner: String,
    pub provider: String,
    /// Where the action's own system shows this execution (a CodeBuild build, a deployment).
    pub url: Option<String>,
    pub error_code: Option<String>,
}

/// A pipeline execution that ended, as the history saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct Run {
    pub id: String,
    pub status: String,
    pub start: f64,
    pub end: f64,
    /// For a run that had already ended when the exporter started and was resumed since (a stage
    /// retry): when it had ended. Its action executions from before were not seen, and are not
    /// counted, so that a restart replays nothing.
    pub resumed_after: Option<f64>,
}

/// Where the runs of a pipeline go as traces, and what names them.
pub struct Tracing<'a> {
    pub sink: &'a Sink,
    pub pipeline: &'a trace::Pipeline,
}

/// Seconds from `start` to `end`, to the millisecond: AWS's timestamps have no finer precision,
/// and the float noise of a subtraction would otherwise show in every sum and exemplar.
pub fn elapsed(start: f64, end: f64) -> f64 {
    ((end - start).max(0.0) * 1000.0).round() / 1000.0
}

impl ActionRun {
    fn duration(&self) -> f64 {
        elapsed(self.start, self.end)
    }

    /// Billed seconds as AWS's pricing page defines them for V2 pipelines: each action's duration,
    /// rounded up to the next whole minute; manual approvals and custom actions are free.
    pub fn billed_seconds(&self) -> f64 {
        if self.category == "Approval" || self.owner == "Custom" { 0.0 } else { (self.duration() / 60.0).ceil() * 60.0 }
    }
}

/// An action's counts and seconds, by final status ([`ACTION_FINAL`]'s order).
#[derive(Debug, Default, Clone, PartialEq)]
struct ActionTotals {
    executions: [u64; 3],
    seconds: [f64; 3],
}

/// What the exporter knows of one pipeline's action executions.
#[derive(Debug, Default)]
pub struct Anatomy {
    /// Executions counted final whose action executions are still to be read, oldest first: kept
    /// across a failed read, so that none is lost.
    pending: VecDeque<Run>,
    /// The action executions counted, as hashes of their IDs, for the newest runs read.
    seen: VecDeque<(String, Vec<u64>)>,
    actions: VecMap<(String, String), ActionTotals>,
    stages: VecMap<String, Histogram>,
    /// End and duration of each stage in the most recent run read.
    stage_last: VecMap<String, (f64, f64)>,
    billed: f64,
}

fn hash(id: &str) -> u64 {
    let mut hasher = DefaultHasher::new();
    id.hash(&mut hasher);
    hasher.finish()
}

impl Anatomy {
    /// Queues an execution that the history counted at a final status.
    pub fn reached_final(&mut self, run: Run) {
        match self.pending.iter_mut().find(|r| r.id == run.id) {
            Some(pending) => *pending = run,
            None => self.pending.push_back(run),
        }
    }

    /// The executions whose action executions are still to be read.
    pub fn pending(&self) -> impl Iterator<Item = &Run> {
        self.pending.iter()
    }

    /// Reads the action executions of every queued execution, oldest first; one that fails stays
    /// queued for the next poll, with those after it. `billed` says whether the pipeline is billed
    /// per action minute (V2). With `tracing`, each run's new spans are queued for export, with
    /// its source revision from `revisions`.
    pub async fn read(
        &mut self,
        scope: &Scope,
        pipeline: &str,
        billed: bool,
        tracing: Option<&Tracing<'_>>,
        revisions: &BTreeMap<String, Revision>,
    ) -> Result<(), CallError> {
        while let Some(run) = self.pending.front().cloned() {
            let runs = list_action_executions(scope, pipeline, &run.id).await?;
            let runs: Vec<ActionRun> = runs.into_iter().filter(|r| run.resumed_after.is_none_or(|at| r.start >= at)).collect();
            let new = self.take(&run.id, &runs, billed, tracing.map(|t| t.pipeline));
            if let Some(tracing) = tracing {
                let spans = trace::build(tracing.pipeline, tracing.sink.service_name(), &run, &new, revisions.get(&run.id));
                tracing.sink.send(spans);
            }
            self.pending.pop_front();
        }
        Ok(())
    }

    /// Counts the final action executions of one run that were not counted before, and returns
    /// them. With `traced`, each stage's duration carries the exemplar of its span.
    pub fn take(
        &mut self,
        execution: &str,
        runs: &[ActionRun],
        billed: bool,
        traced: Option<&trace::Pipeline>,
    ) -> Vec<ActionRun> {
        let at = match self.seen.iter().position(|(id, _)| id == execution) {
            Some(at) => at,
            None => {
                self.seen.push_back((execution.to_string(), Vec::new()));
                if self.seen.len() > REMEMBERED_RUNS {
                    self.seen.pop_front();
                }
                self.seen.len() - 1
            }
        };
        let mut new = Vec::new();
        for run in runs {
            let Some(status) = ACTION_FINAL.iter().position(|s| *s == run.status) else { continue };
            let id = hash(&run.id);
            if self.seen[at].1.contains(&id) {
                continue;
            }
            self.seen[at].1.push(id);
            new.push(run.clone());
            let totals = self.actions.get_or_insert_with((run.stage.clone(), run.action.clone()), ActionTotals::default);
            totals.executions[status] += 1;
            totals.seconds[status] += run.duration();
            if billed {
                self.billed += run.billed_seconds();
            }
        }
        for attempt in trace::stage_attempts(&new) {
            let (start, end) = (attempt.start(), attempt.end());
            let duration = elapsed(start, end);
            let exemplar =
                traced.map(|pipeline| pipeline.stage_exemplar(execution, attempt.stage, attempt.first(), duration, end));
            let histogram = self.stages.get_or_insert_with(attempt.stage.to_string(), || Histogram::new(&STAGE_BUCKETS));
            histogram.observe_with(duration, exemplar);
            if self.stage_last.get(attempt.stage).is_none_or(|(last_end, _)| end >= *last_end) {
                self.stage_last.insert(attempt.stage.to_string(), (end, duration));
            }
        }
        new
    }

    /// Forgets the stages and actions that the pipeline's structure no longer has, so that their
    /// series go with them.
    pub fn retain(&mut self, actions: &[[Arc<str>; 5]]) {
        self.actions.retain(|(stage, action), _| actions.iter().any(|a| *a[0] == **stage && *a[1] == **action));
        self.stages.retain(|stage, _| actions.iter().any(|a| *a[0] == **stage));
        self.stage_last.retain(|stage, _| actions.iter().any(|a| *a[0] == **stage));
    }

    /// Renders the families of every stage and action of the pipeline's structure (`actions`, as
    /// [`super::Definition`] lists them); `base` holds account, region and pipeline.
    pub fn render(&self, rendered: &mut Rendered, base: &[(&str, &str); 3], actions: &[[Arc<str>; 5]]) {
        let empty = Histogram::new(&STAGE_BUCKETS);
        let mut previous: Option<&str> = None;
        for [stage, ..] in actions {
            if previous == Some(&**stage) {
                continue;
            }
            previous = Some(stage);
            let labels = [base[0], base[1], base[2], ("stage", &**stage)];
            self.stages.get(&**stage).unwrap_or(&empty).render(rendered, &STAGE_DURATION, &labels);
            if let Some((_, duration)) = self.stage_last.get(&**stage) {
                rendered.sample(&STAGE_LAST_DURATION, &labels, *duration);
            }
        }
        let none = ActionTotals::default();
        for [stage, action, ..] in actions {
            let totals = self.actions.get(&(stage.to_string(), action.to_string())).unwrap_or(&none);
            let labels = [base[0], base[1], base[2], ("stage", &**stage), ("action", &**action)];
            for (i, status) in ACTION_FINAL.iter().enumerate() {
                rendered.sample_with(&ACTION_EXECUTIONS, &labels, &[("status", status)], totals.executions[i] as f64);
            }
            for (i, status) in ACTION_FINAL.iter().enumerate() {
                if totals.executions[i] > 0 {
                    rendered.sample_with(&ACTION_DURATION, &labels, &[("status", status)], totals.seconds[i]);
                }
            }
        }
        rendered.sample(&BILLED_ACTION_SECONDS, base, self.billed);
    }
}

/// Reads every action execution of one pipeline execution, following all pages.
async fn list_action_executions(scope: &Scope, pipeline: &str, execution: &str) -> Result<Vec<ActionRun>, CallError> {
    let filter = ActionExecutionFilter::builder().pipeline_execution_id(execution).build();
    let mut runs = Vec::new();
    aws::for_each_page(
        |token| {
            let request =
                scope.codepipeline.list_action_executions().pipeline_name(pipeline).filter(filter.clone()).set_next_token(token);
            async move {
                let page = scope.call(super::SERVICE, "ListActionExecutions", || request.send(), &[]).await?;
                let next = aws::next_token(page.next_token());
                Ok((page, next))
            }
        },
        |page, _| {
            runs.extend(page.action_execution_details().iter().filter_map(|detail| {
                let start = detail.start_time()?.as_secs_f64();
                let type_id = detail.input().and_then(|i| i.action_type_id());
                let result = detail.output().and_then(|o| o.execution_result());
                Some(ActionRun {
                    stage: detail.stage_name()?.to_string(),
                    action: detail.action_name()?.to_string(),
                    id: detail.action_execution_id()?.to_string(),
                    status: detail.status()?.as_str().to_string(),
                    start,
                    end: detail.last_update_time().map_or(start, |t| t.as_secs_f64()),
                    category: type_id.map(|t| t.category().as_str().to_string()).unwrap_or_default(),
                    owner: type_id.map(|t| t.owner().as_str().to_string()).unwrap_or_default(),
                    provider: type_id.map(|t| t.provider().to_string()).unwrap_or_default(),
                    url: result.and_then(|r| r.external_execution_url()).filter(|u| !u.is_empty()).map(str::to_string),
                    error_code: result.and_then(|r| r.error_details()).and_then(|d| d.code()).map(str::to_string),
                })
            }));
            ControlFlow::Continue(())
        },
    )
    .await?;
    Ok(runs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(stage: &str, action: &str, id: &str, status: &str, start: f64, end: f64) -> ActionRun {
        ActionRun {
            stage: stage.into(),
            action: action.into(),
            id: id.into(),
            status: status.into(),
            start,
            end,
            category: "Build".into(),
            owner: "AWS".into(),
            provider: "CodeBuild".into(),
            url: None,
            error_code: None,
        }
    }

    #[test]
    fn billed_seconds_round_each_action_up_to_the_minute_and_skip_approvals_and_custom_actions() {
        assert_eq!(run("B", "b", "1", "Succeeded", 0.0, 61.0).billed_seconds(), 120.0);
        assert_eq!(run("B", "b", "1", "Succeeded", 0.0, 60.0).billed_seconds(), 60.0);
        assert_eq!(run("B", "b", "1", "Succeeded", 0.0, 0.5).billed_seconds(), 60.0);
        let approval =
            ActionRun { category: "Approval".into(), owner: "AWS".into(), ..run("A", "a", "2", "Succeeded", 0.0, 900.0) };
        assert_eq!(approval.billed_seconds(), 0.0);
        let custom = ActionRun { owner: "Custom".into(), ..run("A", "c", "3", "Succeeded", 0.0, 900.0) };
        assert_eq!(custom.billed_seconds(), 0.0);
    }

    #[test]
    fn a_run_read_again_counts_only_its_new_action_executions() {
        let mut anatomy = Anatomy::default();
        let first = [run("Build", "Build", "a1", "Failed", 100.0, 130.0), run("Source", "Source", "a0", "Succeeded", 90.0, 95.0)];
        assert_eq!(anatomy.take("e1", &first, true, None).len(), 2);
        let retried = [first[0].clone(), first[1].clone(), run("Build", "Build", "a2", "Succeeded", 200.0, 290.0)];
        assert_eq!(anatomy.take("e1", &retried, true, None), [retried[2].clone()]);
        let build = &anatomy.actions[&("Build".to_string(), "Build".to_string())];
        assert_eq!(build.executions, [0, 1, 1]);
        assert_eq!(build.seconds, [0.0, 30.0, 90.0]);
        assert_eq!(anatomy.billed, 60.0 + 60.0 + 120.0);
        // The retry is a stage duration of its own: 90 s, after the first attempt's 30 s.
        assert_eq!(anatomy.stage_last["Build"], (290.0, 90.0));
        let mut expected = Histogram::new(&STAGE_BUCKETS);
        expected.observe(30.0);
        expected.observe(90.0);
        assert_eq!(anatomy.stages["Build"], expected);
    }
}
