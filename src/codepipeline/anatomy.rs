//! Run anatomy from ListActionExecutions: where each run's time goes, stage by stage and action by
//! action, and what it costs.
//!
//! GetPipelineState shows only each action's latest execution, so an action that started and
//! ended between two polls, or the first attempt of a retried one, would go unseen. Once the
//! history ([`super::executions`]) counts an execution at a final status, its action executions
//! are read here, following every page, and each is counted once by its `actionExecutionId`.
//! A stage retried in place (RetryStageExecution keeps the execution ID) makes the execution
//! final again: it is read again, and only the action executions not seen before count.
//!
//! With them come the run's rule executions (ListRuleExecutions, only for a pipeline whose
//! declaration has conditions) and the phases of its builds (BatchGetBuilds, up to 100 builds a
//! call), from which [`super::timeline`] tells where the run waited and why.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::hash::{Hash, Hasher};
use std::ops::ControlFlow;
use std::sync::Arc;

use aws_sdk_codepipeline::types::{ActionExecutionFilter, RuleExecutionFilter};

use super::semconv::Semconv;
use super::timeline::{self, ActionRun, Phase, REASONS, RuleRun, Run, elapsed};
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
pub static WAIT_SECONDS: Family = Family {
    name: "aws_codepipeline_wait_seconds_total",
    help: "Seconds runs waited at or in the stage, by reason: queued (at the inbound transition), gate (rule executions of its conditions), approval (an approval open while no action worked), capacity (a CodeBuild build waiting for a host while no action worked); a reason has a series once it occurred.",
    kind: Kind::Counter,
};
pub static EXECUTION_WAIT: Family = Family {
    name: "aws_codepipeline_execution_wait_seconds",
    help: "Seconds each run read since the exporter started waited, all stages and reasons together: its duration less its working time.",
    kind: Kind::Histogram,
};
pub static RULE_EXECUTIONS: Family = Family {
    name: "aws_codepipeline_rule_executions_total",
    help: "Rule executions of the stage's conditions that reached a final status since the exporter started, each once by its ruleExecutionId (ListRuleExecutions).",
    kind: Kind::Counter,
};
pub static RULE_DURATION: Family = Family {
    name: "aws_codepipeline_rule_duration_seconds_total",
    help: "Seconds the rule executions counted in aws_codepipeline_rule_executions_total ran, from startTime to lastUpdateTime.",
    kind: Kind::Counter,
};
pub static ACTION_PHASE_SECONDS: Family = Family {
    name: "aws_codepipeline_action_phase_seconds_total",
    help: "Seconds the builds of a CodeBuild action spent in each CodeBuild phase (BatchGetBuilds), when codepipeline.build_phases is on.",
    kind: Kind::Counter,
};
pub static BUILD_LOOKUP_FAILURES: Family = Family {
    name: "aws_codepipeline_build_lookup_failures_total",
    help: "Builds of CodeBuild actions whose phases could not be read, by reason: not_found (another account's or expired), access_denied, error; never retried.",
    kind: Kind::Counter,
};
pub static TIMELINE_CLAMPS: Family = Family {
    name: "aws_codepipeline_timeline_clamps_total",
    help: "Times a span of a run's timeline was clamped because two AWS services' clocks disagreed (a stage starting before the one before it ended, a build phase outside its action).",
    kind: Kind::Counter,
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
/// Bucket bounds of a run's total wait, from 10 seconds to a day: a gate can hold a run for hours.
const WAIT_BUCKETS: [f64; 9] = [10.0, 30.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 14400.0, 86400.0];
/// Final statuses of a rule execution, in the order their series are written.
const RULE_FINAL: [&str; 3] = ["Abandoned", "Failed", "Succeeded"];
/// BatchGetBuilds takes at most 100 build IDs a call.
const BUILDS_PER_CALL: usize = 100;
const CODEBUILD: &str = "codebuild";

/// Where the runs of a pipeline go as traces, and what names them.
pub struct Tracing<'a> {
    pub sink: &'a Sink,
    pub pipeline: &'a trace::Pipeline,
}

/// What the pipeline's declaration and settings say about what a run's read holds.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Shape {
    /// Billed per action minute (V2).
    pub billed: bool,
    /// Its declaration has conditions, whose rule executions are read.
    pub conditions: bool,
    /// Seconds per CodeBuild phase are exported (`codepipeline.build_phases`).
    pub build_phases: bool,
}

impl ActionRun {
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

/// A rule's counts by final status ([`RULE_FINAL`]'s order), and its seconds.
#[derive(Debug, Default, Clone, PartialEq)]
struct RuleTotals {
    executions: [u64; 3],
    seconds: f64,
}

/// What the exporter knows of one pipeline's action executions.
#[derive(Debug, Default)]
pub struct Anatomy {
    /// Executions counted final whose action executions are still to be read, oldest first: kept
    /// across a failed read, so that none is lost.
    pending: VecDeque<Run>,
    /// The action and rule executions counted, as hashes of their IDs, for the newest runs read.
    seen: VecDeque<(String, Vec<u64>)>,
    actions: VecMap<(String, String), ActionTotals>,
    stages: VecMap<String, Histogram>,
    /// End and duration of each stage in the most recent run read.
    stage_last: VecMap<String, (f64, f64)>,
    billed: f64,
    /// Seconds waited by stage and reason, for the reasons that occurred.
    waits: VecMap<(String, &'static str), f64>,
    /// Each run's total wait; `None` until the first, rendered as an empty histogram.
    run_waits: Option<Histogram>,
    rules: VecMap<(String, String), RuleTotals>,
    /// Seconds by stage, action and CodeBuild phase, while `build_phases` is on.
    phases: VecMap<(String, String, String), f64>,
    lookup_failures: VecMap<&'static str, u64>,
    /// Whether a failed build lookup was logged: once per pipeline, so that a cross-account action
    /// role does not log on every run.
    lookup_logged: bool,
    clamps: u64,
    /// The runs as OpenTelemetry's CI/CD metrics see them.
    semconv: Semconv,
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
            Some(pending) => *pending = Run { counted: run.counted || pending.counted, ..run },
            None => self.pending.push_back(run),
        }
    }

    /// The executions whose action executions are still to be read.
    pub fn pending(&self) -> impl Iterator<Item = &Run> {
        self.pending.iter()
    }

    /// Reads the action executions of every queued execution, oldest first, with their rule
    /// executions and builds; one that fails stays queued for the next poll, with those after it.
    /// A build that cannot be read is counted and never holds the run back. With `tracing`, each
    /// run's new spans are queued for export, with its source revision from `revisions`.
    pub async fn read(
        &mut self,
        scope: &Scope,
        pipeline: &str,
        shape: Shape,
        tracing: Option<&Tracing<'_>>,
        revisions: &BTreeMap<String, Revision>,
    ) -> Result<(), CallError> {
        while let Some(run) = self.pending.front().cloned() {
            let kept = |start: f64| run.resumed_after.is_none_or(|at| start >= at);
            let mut actions = list_action_executions(scope, pipeline, &run.id).await?;
            actions.retain(|r| kept(r.start));
            let mut rules = if shape.conditions { list_rule_executions(scope, pipeline, &run.id).await? } else { Vec::new() };
            rules.retain(|r| kept(r.start));
            let (actions, rules) = self.unseen(&run.id, actions, rules);
            let builds = self.read_builds(scope, pipeline, &actions).await;
            let read = Read { actions: &actions, rules: &rules, builds: &builds };
            self.take(&run, read, shape, tracing, revisions.get(&run.id));
            self.pending.pop_front();
        }
        Ok(())
    }

    /// The final action and rule executions of a run that were not counted before.
    fn unseen(&self, execution: &str, actions: Vec<ActionRun>, rules: Vec<RuleRun>) -> (Vec<ActionRun>, Vec<RuleRun>) {
        let seen = self.seen.iter().find(|(id, _)| id == execution).map(|(_, seen)| seen.as_slice()).unwrap_or_default();
        let actions = actions.into_iter().filter(|r| ACTION_FINAL.contains(&r.status.as_str()) && !seen.contains(&hash(&r.id)));
        let rules = rules.into_iter().filter(|r| RULE_FINAL.contains(&r.status.as_str()) && !seen.contains(&hash(&r.id)));
        (actions.collect(), rules.collect())
    }

    /// The phases of the builds that `actions` ran, by build ID, `BUILDS_PER_CALL` a call. A build
    /// not found (another account's, or expired) or denied is counted by reason and logged once
    /// per pipeline; it is never asked for again.
    async fn read_builds(&mut self, scope: &Scope, pipeline: &str, actions: &[ActionRun]) -> BTreeMap<String, Vec<Phase>> {
        let ids: BTreeSet<&str> = actions.iter().filter_map(ActionRun::build_id).collect();
        let ids: Vec<String> = ids.into_iter().map(str::to_string).collect();
        let mut builds = BTreeMap::new();
        for chunk in ids.chunks(BUILDS_PER_CALL) {
            let request = scope.codebuild().batch_get_builds().set_ids(Some(chunk.to_vec()));
            let (reason, missing, detail) = match scope.call(CODEBUILD, "BatchGetBuilds", || request.send(), &[]).await {
                Ok(output) => {
                    for build in output.builds() {
                        if let Some(id) = build.id() {
                            builds.insert(id.to_string(), phases(build.phases()));
                        }
                    }
                    let missing = output.builds_not_found().len();
                    ("not_found", missing, "not found: another account's or expired".to_string())
                }
                Err(err) if err.code == "AccessDeniedException" => ("access_denied", chunk.len(), err.detail),
                Err(err) => ("error", chunk.len(), err.detail),
            };
            if missing > 0 {
                *self.lookup_failures.get_or_insert_with(reason, || 0) += missing as u64;
                if !self.lookup_logged {
                    self.lookup_logged = true;
                    tracing::warn!(pipeline, reason, builds = missing, detail = %detail, "the phases of some builds cannot be read; their runs' other metrics are kept, and they are not asked for again");
                }
            }
        }
        builds
    }

    /// Counts what one read of a run found (its new action and rule executions, with the phases of
    /// its builds), lays out its timeline, and sends its spans with `tracing`.
    fn take(&mut self, run: &Run, read: Read<'_>, shape: Shape, tracing: Option<&Tracing<'_>>, revision: Option<&Revision>) {
        let first_read = !self.seen.iter().any(|(id, _)| *id == run.id);
        if first_read {
            self.seen.push_back((run.id.clone(), Vec::new()));
            if self.seen.len() > REMEMBERED_RUNS {
                self.seen.pop_front();
            }
        }
        if let Some((_, seen)) = self.seen.iter_mut().find(|(id, _)| *id == run.id) {
            seen.extend(read.actions.iter().map(|r| hash(&r.id)).chain(read.rules.iter().map(|r| hash(&r.id))));
        }
        for action in read.actions {
            let Some(status) = ACTION_FINAL.iter().position(|s| *s == action.status) else { continue };
            let totals = self.actions.get_or_insert_with((action.stage.clone(), action.action.clone()), ActionTotals::default);
            totals.executions[status] += 1;
            totals.seconds[status] += action.duration();
            if shape.billed {
                self.billed += action.billed_seconds();
            }
        }
        for rule in read.rules {
            let Some(status) = RULE_FINAL.iter().position(|s| *s == rule.status) else { continue };
            let totals = self.rules.get_or_insert_with((rule.stage.clone(), rule.rule.clone()), RuleTotals::default);
            totals.executions[status] += 1;
            totals.seconds += elapsed(rule.start, rule.end);
        }
        // A run read again after a stage retry is laid out from its retry's first new execution:
        // the time before it was counted when the run first ended.
        let origin = if first_read && run.resumed_after.is_none() {
            run.start
        } else {
            let starts = read.actions.iter().map(|r| r.start).chain(read.rules.iter().map(|r| r.start));
            starts.fold(run.end, f64::min)
        };
        let timeline = timeline::build(origin, run.end, read.actions, read.rules, read.builds);
        let traced = tracing.map(|t| t.pipeline);
        if run.counted {
            let exemplar = |value: f64| traced.map(|pipeline| pipeline.run_exemplar(&run.id, value, run.end));
            self.semconv.observe_run(run, read.actions, (timeline.wait, timeline.working), exemplar);
        }
        if read.actions.is_empty() && read.rules.is_empty() {
            return;
        }
        for (attempt, time) in timeline.attempts.iter().zip(&timeline.stages) {
            let (start, end) = (attempt.start(), attempt.end());
            let duration = elapsed(start, end);
            let exemplar = traced.map(|pipeline| pipeline.stage_exemplar(&run.id, attempt.stage, attempt.first(), duration, end));
            let histogram = self.stages.get_or_insert_with(attempt.stage.to_string(), || Histogram::new(&STAGE_BUCKETS));
            histogram.observe_with(duration, exemplar);
            if self.stage_last.get(attempt.stage).is_none_or(|(last_end, _)| end >= *last_end) {
                self.stage_last.insert(attempt.stage.to_string(), (end, duration));
            }
            for (reason, seconds) in REASONS.iter().zip(time.waits) {
                if seconds > 0.0 {
                    *self.waits.get_or_insert_with((attempt.stage.to_string(), reason), || 0.0) += seconds;
                }
            }
        }
        let exemplar = traced.map(|pipeline| pipeline.run_exemplar(&run.id, timeline.wait, run.end));
        self.run_waits.get_or_insert_with(|| Histogram::new(&WAIT_BUCKETS)).observe_with(timeline.wait, exemplar);
        self.clamps += u64::from(timeline.clamps);
        if shape.build_phases {
            for action in read.actions {
                for phase in timeline.phases.get(action.id.as_str()).into_iter().flatten() {
                    let key = (action.stage.clone(), action.action.clone(), phase.phase_type.clone());
                    *self.phases.get_or_insert_with(key, || 0.0) += elapsed(phase.start, phase.end);
                }
            }
        }
        if let Some(tracing) = tracing {
            tracing.sink.send(trace::build(tracing.pipeline, tracing.sink.service_name(), run, &timeline, revision));
        }
    }

    /// Forgets the stages and actions that the pipeline's structure no longer has, so that their
    /// series go with them.
    pub fn retain(&mut self, actions: &[[Arc<str>; 5]]) {
        self.actions.retain(|(stage, action), _| actions.iter().any(|a| *a[0] == **stage && *a[1] == **action));
        self.phases.retain(|(stage, action, _), _| actions.iter().any(|a| *a[0] == **stage && *a[1] == **action));
        self.stages.retain(|stage, _| actions.iter().any(|a| *a[0] == **stage));
        self.stage_last.retain(|stage, _| actions.iter().any(|a| *a[0] == **stage));
        self.waits.retain(|(stage, _), _| actions.iter().any(|a| *a[0] == **stage));
        self.rules.retain(|(stage, _), _| actions.iter().any(|a| *a[0] == **stage));
    }

    /// The runs as OpenTelemetry's CI/CD metrics see them.
    pub fn semconv(&self) -> &Semconv {
        &self.semconv
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
        for ((stage, reason), seconds) in &self.waits {
            rendered.sample_with(&WAIT_SECONDS, base, &[("stage", stage.as_str()), ("reason", reason)], *seconds);
        }
        let no_waits = Histogram::new(&WAIT_BUCKETS);
        self.run_waits.as_ref().unwrap_or(&no_waits).render(rendered, &EXECUTION_WAIT, base);
        for ((stage, rule), totals) in &self.rules {
            let labels = [base[0], base[1], base[2], ("stage", stage.as_str()), ("rule", rule.as_str())];
            for (i, status) in RULE_FINAL.iter().enumerate() {
                rendered.sample_with(&RULE_EXECUTIONS, &labels, &[("status", status)], totals.executions[i] as f64);
            }
            rendered.sample(&RULE_DURATION, &labels, totals.seconds);
        }
        for ((stage, action, phase), seconds) in &self.phases {
            let labels = [("stage", stage.as_str()), ("action", action.as_str()), ("phase", phase.as_str())];
            rendered.sample_with(&ACTION_PHASE_SECONDS, base, &labels, *seconds);
        }
        for (reason, count) in &self.lookup_failures {
            rendered.sample_with(&BUILD_LOOKUP_FAILURES, base, &[("reason", reason)], *count as f64);
        }
        if self.clamps > 0 {
            rendered.sample(&TIMELINE_CLAMPS, base, self.clamps as f64);
        }
    }
}

/// What one read of a run found that was not counted before.
struct Read<'a> {
    actions: &'a [ActionRun],
    rules: &'a [RuleRun],
    builds: &'a BTreeMap<String, Vec<Phase>>,
}

/// A build's phases that have an end: the last, COMPLETED, has none.
fn phases(phases: &[aws_sdk_codebuild::types::BuildPhase]) -> Vec<Phase> {
    phases
        .iter()
        .filter_map(|p| {
            Some(Phase {
                phase_type: p.phase_type()?.as_str().to_string(),
                start: p.start_time()?.as_secs_f64(),
                end: p.end_time()?.as_secs_f64(),
            })
        })
        .collect()
}

/// Reads every action execution of one pipeline execution, following all pages.
async fn list_action_executions(scope: &Scope, pipeline: &str, execution: &str) -> Result<Vec<ActionRun>, CallError> {
    let filter = ActionExecutionFilter::builder().pipeline_execution_id(execution).build();
    let mut runs = Vec::new();
    aws::for_each_page(
        |token| {
            let request = scope
                .codepipeline()
                .list_action_executions()
                .pipeline_name(pipeline)
                .filter(filter.clone())
                .set_next_token(token);
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
                    external_id: result.and_then(|r| r.external_execution_id()).filter(|u| !u.is_empty()).map(str::to_string),
                    error_code: result.and_then(|r| r.error_details()).and_then(|d| d.code()).map(str::to_string),
                })
            }));
            ControlFlow::Continue(())
        },
    )
    .await?;
    Ok(runs)
}

/// Reads every rule execution of one pipeline execution, following all pages.
async fn list_rule_executions(scope: &Scope, pipeline: &str, execution: &str) -> Result<Vec<RuleRun>, CallError> {
    let filter = RuleExecutionFilter::builder().pipeline_execution_id(execution).build();
    let mut rules = Vec::new();
    aws::for_each_page(
        |token| {
            let request =
                scope.codepipeline().list_rule_executions().pipeline_name(pipeline).filter(filter.clone()).set_next_token(token);
            async move {
                let page = scope.call(super::SERVICE, "ListRuleExecutions", || request.send(), &[]).await?;
                let next = aws::next_token(page.next_token());
                Ok((page, next))
            }
        },
        |page, _| {
            rules.extend(page.rule_execution_details().iter().filter_map(|detail| {
                let start = detail.start_time()?.as_secs_f64();
                Some(RuleRun {
                    stage: detail.stage_name()?.to_string(),
                    rule: detail.rule_name()?.to_string(),
                    id: detail.rule_execution_id()?.to_string(),
                    status: detail.status()?.as_str().to_string(),
                    start,
                    end: detail.last_update_time().map_or(start, |t| t.as_secs_f64()),
                })
            }));
            ControlFlow::Continue(())
        },
    )
    .await?;
    Ok(rules)
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
            external_id: None,
            error_code: None,
        }
    }

    /// Reads run e1 once with `runs` as its action executions, and returns those counted.
    fn read(anatomy: &mut Anatomy, runs: &[ActionRun]) -> Vec<ActionRun> {
        let (actions, rules) = anatomy.unseen("e1", runs.to_vec(), Vec::new());
        let run =
            Run { id: "e1".into(), status: "Succeeded".into(), start: 80.0, end: 300.0, resumed_after: None, counted: true };
        let builds = BTreeMap::new();
        let shape = Shape { billed: true, ..Shape::default() };
        anatomy.take(&run, Read { actions: &actions, rules: &rules, builds: &builds }, shape, None, None);
        actions
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
        assert_eq!(read(&mut anatomy, &first).len(), 2);
        let retried = [first[0].clone(), first[1].clone(), run("Build", "Build", "a2", "Succeeded", 200.0, 290.0)];
        assert_eq!(read(&mut anatomy, &retried), [retried[2].clone()]);
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
        // The first read waited 10 s before Source and 5 s before Build; the retry is laid out
        // from its own start.
        assert_eq!(
            anatomy.waits.iter().map(|((s, r), v)| (s.as_str(), *r, *v)).collect::<Vec<_>>(),
            [("Build", "queued", 5.0), ("Source", "queued", 10.0)]
        );
    }
}
