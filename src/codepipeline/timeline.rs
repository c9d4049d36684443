//! A run's timeline: its action executions grouped into stage attempts, with the rule executions
//! of its gates and the phases of its builds, and its wall time split into waiting, by reason,
//! and working.
//!
//! The run-anatomy metrics ([`super::anatomy`]) and the run's trace ([`super::trace`]) both read
//! the timeline built here, so that a dashboard and a trace of the same run always agree.
//!
//! Each stage attempt is entered after an **entry wait**: the gap from the previous attempt's last
//! action end (or the run's start) to the attempt's first action start. The part of it that the
//! run's rule executions cover (the union of their spans, not their sum) is **gate**: the entered
//! stage's BeforeEntry rules and the previous stage's OnSuccess rules run there. The rest is
//! **queued**: the run stood at the inbound transition while another run held the stage. Inside an
//! attempt, actions can run in parallel, so an instant counts as waiting only when no action works
//! at it: as **approval** while an approval is open, else as **capacity** while a build waits for a
//! host (its QUEUED and PROVISIONING phases). Everything else is **working**, so the reasons are
//! disjoint, never negative, and add up to the run's duration.

use std::collections::BTreeMap;

/// Why a run waits, in the order of `Waits`' fields and of the `reason` label.
pub const REASONS: [&str; 4] = ["queued", "gate", "approval", "capacity"];
const QUEUED: usize = 0;
const GATE: usize = 1;
const APPROVAL: usize = 2;
const CAPACITY: usize = 3;

/// CodeBuild's phases in which a build waits for a host rather than works.
const CAPACITY_PHASES: [&str; 2] = ["QUEUED", "PROVISIONING"];

/// How far timestamps of two AWS services may disagree before it counts as clock skew: AWS gives
/// milliseconds.
const TOLERANCE: f64 = 0.001;

/// Seconds from `start` to `end`, to the millisecond: AWS's timestamps have no finer precision,
/// and the float noise of a subtraction would otherwise show in every sum and exemplar.
pub fn elapsed(start: f64, end: f64) -> f64 {
    ((end - start).max(0.0) * 1000.0).round() / 1000.0
}

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
    /// The action's own ID of this execution: for a CodeBuild action, the build's ID.
    pub external_id: Option<String>,
    pub error_code: Option<String>,
}

impl ActionRun {
    pub fn duration(&self) -> f64 {
        elapsed(self.start, self.end)
    }

    /// Whether the action ran a CodeBuild build, whose ID is its external execution ID: CodeBuild
    /// actions, and Commands actions, which run on CodeBuild.
    pub fn build_id(&self) -> Option<&str> {
        matches!(self.provider.as_str(), "CodeBuild" | "Commands").then_some(self.external_id.as_deref()).flatten()
    }

    fn is_approval(&self) -> bool {
        self.category == "Approval"
    }
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
    /// Whether the history counted the run at this final status, in
    /// `aws_codepipeline_executions_total`: the CI/CD run duration observes exactly those runs.
    pub counted: bool,
}

/// One rule execution of a stage's condition, as ListRuleExecutions details it.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleRun {
    pub stage: String,
    pub rule: String,
    pub id: String,
    pub status: String,
    pub start: f64,
    pub end: f64,
}

/// One phase of a build, as BatchGetBuilds details it; a phase without an end (COMPLETED, or one
/// still running) is left out.
#[derive(Debug, Clone, PartialEq)]
pub struct Phase {
    pub phase_type: String,
    pub start: f64,
    pub end: f64,
}

/// A stage's attempt in one read of the run: its new action executions.
pub struct StageAttempt<'a> {
    pub stage: &'a str,
    pub runs: Vec<&'a ActionRun>,
}

impl StageAttempt<'_> {
    pub fn start(&self) -> f64 {
        self.runs.iter().map(|r| r.start).fold(f64::INFINITY, f64::min)
    }

    pub fn end(&self) -> f64 {
        self.runs.iter().map(|r| r.end).fold(f64::NEG_INFINITY, f64::max)
    }

    /// The first action execution to start names the attempt.
    pub fn first(&self) -> &str {
        self.runs.iter().min_by(|a, b| a.start.total_cmp(&b.start).then(a.id.cmp(&b.id))).map_or("", |r| r.id.as_str())
    }

    /// The error code of the attempt, when its last execution of some action failed.
    pub fn failure(&self) -> Option<&str> {
        let mut latest: BTreeMap<&str, &ActionRun> = BTreeMap::new();
        for run in &self.runs {
            let entry = latest.entry(run.action.as_str()).or_insert(run);
            if run.end >= entry.end {
                *entry = run;
            }
        }
        latest.values().find(|r| r.status == "Failed").map(|r| r.error_code.as_deref().unwrap_or("Failed"))
    }
}

/// Groups new action executions by stage, in the order the stages started.
pub fn stage_attempts(runs: &[ActionRun]) -> Vec<StageAttempt<'_>> {
    let mut attempts: Vec<StageAttempt<'_>> = Vec::new();
    for run in runs {
        match attempts.iter_mut().find(|a| a.stage == run.stage) {
            Some(attempt) => attempt.runs.push(run),
            None => attempts.push(StageAttempt { stage: &run.stage, runs: vec![run] }),
        }
    }
    attempts.sort_by(|a, b| a.start().total_cmp(&b.start()));
    attempts
}

/// Seconds of waiting by reason, in [`REASONS`]' order.
pub type Waits = [f64; 4];

/// One stage attempt on the timeline: the span of its entry wait and its seconds of waiting.
#[derive(Debug, Clone, PartialEq)]
pub struct StageTime {
    /// From the previous attempt's last action end (or the run's start) to the attempt's first
    /// action start; empty when the stage was entered at once.
    pub entry: (f64, f64),
    pub waits: Waits,
}

/// A run's timeline in one read: its stage attempts, what each waited, and its builds' phases,
/// clipped to their actions so that they never overlap or leave their action's span.
pub struct Timeline<'a> {
    pub attempts: Vec<StageAttempt<'a>>,
    /// One per attempt, in the same order.
    pub stages: Vec<StageTime>,
    /// The rule executions read with the run.
    pub rules: &'a [RuleRun],
    /// Each build action's phases, by action execution ID.
    pub phases: BTreeMap<&'a str, Vec<Phase>>,
    /// Seconds the run waited, all reasons together.
    pub wait: f64,
    /// The rest of the run's duration.
    pub working: f64,
    /// Times two services' clocks disagreed and a span was clamped.
    pub clamps: u32,
}

impl Timeline<'_> {
    /// The rule executions that held the attempt at index `i` at its entry: those of its stage or
    /// of the stage before it that overlap its entry wait.
    pub fn gate_rules(&self, i: usize) -> impl Iterator<Item = &RuleRun> {
        let stage = self.attempts[i].stage;
        let previous = i.checked_sub(1).map(|p| self.attempts[p].stage);
        let (from, to) = self.stages[i].entry;
        self.rules
            .iter()
            .filter(move |r| r.stage == stage || Some(r.stage.as_str()) == previous)
            .filter(move |r| r.start < to && r.end > from)
    }
}

/// Builds the timeline of one read of a run, from `origin` (the run's start, or for a run read
/// again after a stage retry, its first new action's start) to `end`, from its new action
/// executions, its rule executions and the phases of its builds (by build ID).
pub fn build<'a>(
    origin: f64,
    end: f64,
    runs: &'a [ActionRun],
    rules: &'a [RuleRun],
    builds: &BTreeMap<String, Vec<Phase>>,
) -> Timeline<'a> {
    let attempts = stage_attempts(runs);
    let mut clamps = 0;
    let mut phases: BTreeMap<&'a str, Vec<Phase>> = BTreeMap::new();
    for run in runs {
        if let Some(build) = run.build_id().and_then(|id| builds.get(id)) {
            let (clipped, clamped) = clip_phases(build, run.start, run.end);
            clamps += clamped;
            phases.insert(run.id.as_str(), clipped);
        }
    }
    let mut stages = Vec::with_capacity(attempts.len());
    let mut previous_end = origin;
    for (i, attempt) in attempts.iter().enumerate() {
        let first = attempt.start();
        if first < previous_end - TOLERANCE {
            clamps += 1;
        }
        let entry = (previous_end, first.max(previous_end));
        let mut waits = [0.0; 4];
        let previous = i.checked_sub(1).map(|p| attempts[p].stage);
        let gating: Vec<(f64, f64)> = rules
            .iter()
            .filter(|r| r.stage == attempt.stage || Some(r.stage.as_str()) == previous)
            .map(|r| (r.start.max(entry.0), r.end.min(entry.1)))
            .collect();
        waits[GATE] = union_length(gating);
        waits[QUEUED] = (entry.1 - entry.0 - waits[GATE]).max(0.0);
        let (approval, capacity) = inside(attempt, &phases);
        waits[APPROVAL] = approval;
        waits[CAPACITY] = capacity;
        stages.push(StageTime { entry, waits: waits.map(|w| (w * 1000.0).round() / 1000.0) });
        previous_end = previous_end.max(attempt.end());
    }
    if end < previous_end - TOLERANCE {
        clamps += 1;
    }
    let wait = (stages.iter().flat_map(|s| s.waits).sum::<f64>() * 1000.0).round() / 1000.0;
    let duration = elapsed(origin, end);
    if wait > duration + TOLERANCE {
        clamps += 1;
    }
    let working = ((duration - wait).max(0.0) * 1000.0).round() / 1000.0;
    Timeline { attempts, stages, rules, phases, wait, working, clamps }
}

/// A build's phases with an end, clipped to its action's span and to each other (a phase starts no
/// earlier than the one before it ended), and how many needed clipping beyond [`TOLERANCE`].
fn clip_phases(build: &[Phase], start: f64, end: f64) -> (Vec<Phase>, u32) {
    let mut sorted: Vec<&Phase> = build.iter().collect();
    sorted.sort_by(|a, b| a.start.total_cmp(&b.start));
    let mut clamps = 0;
    let mut clipped = Vec::with_capacity(sorted.len());
    let mut floor = start;
    for phase in sorted {
        if phase.start < floor - TOLERANCE || phase.end > end + TOLERANCE {
            clamps += 1;
        }
        let from = phase.start.max(floor).min(end);
        let to = phase.end.min(end).max(from);
        clipped.push(Phase { phase_type: phase.phase_type.clone(), start: from, end: to });
        floor = to;
    }
    (clipped, clamps)
}

/// The approval and capacity seconds inside an attempt: over each interval between two of its
/// actions' and phases' boundaries, no action working, and an approval open (approval) or else a
/// build waiting for a host (capacity).
fn inside(attempt: &StageAttempt<'_>, phases: &BTreeMap<&str, Vec<Phase>>) -> (f64, f64) {
    let waiting = |run: &ActionRun, at: f64| {
        phases
            .get(run.id.as_str())
            .is_some_and(|p| p.iter().any(|p| CAPACITY_PHASES.contains(&p.phase_type.as_str()) && p.start <= at && at < p.end))
    };
    let mut bounds: Vec<f64> = attempt.runs.iter().flat_map(|r| [r.start, r.end]).collect();
    for run in &attempt.runs {
        bounds.extend(phases.get(run.id.as_str()).into_iter().flatten().flat_map(|p| [p.start, p.end]));
    }
    bounds.sort_by(f64::total_cmp);
    bounds.dedup();
    let (mut approval, mut capacity) = (0.0, 0.0);
    for pair in bounds.windows(2) {
        let (from, to) = (pair[0], pair[1]);
        let at = (from + to) / 2.0;
        let open: Vec<&&ActionRun> = attempt.runs.iter().filter(|r| r.start <= at && at < r.end).collect();
        if open.iter().any(|r| !r.is_approval() && !waiting(r, at)) {
            continue;
        }
        if open.iter().any(|r| r.is_approval()) {
            approval += to - from;
        } else if open.iter().any(|r| waiting(r, at)) {
            capacity += to - from;
        }
    }
    (approval, capacity)
}

/// The length of the union of `spans`, ignoring empty ones.
fn union_length(mut spans: Vec<(f64, f64)>) -> f64 {
    spans.retain(|(from, to)| to > from);
    spans.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut total = 0.0;
    let mut current: Option<(f64, f64)> = None;
    for (from, to) in spans {
        current = match current {
            Some((start, stop)) if from <= stop => Some((start, stop.max(to))),
            Some((start, stop)) => {
                total += stop - start;
                Some((from, to))
            }
            None => Some((from, to)),
        };
    }
    total + current.map_or(0.0, |(start, stop)| stop - start)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn action(stage: &str, action: &str, start: f64, end: f64) -> ActionRun {
        ActionRun {
            stage: stage.into(),
            action: action.into(),
            id: format!("{stage}-{action}-{start}"),
            status: "Succeeded".into(),
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

    fn rule(stage: &str, rule: &str, start: f64, end: f64) -> RuleRun {
        RuleRun { stage: stage.into(), rule: rule.into(), id: format!("{rule}-{start}"), status: "Succeeded".into(), start, end }
    }

    fn phase(phase_type: &str, start: f64, end: f64) -> Phase {
        Phase { phase_type: phase_type.into(), start, end }
    }

    #[test]
    fn every_kind_of_wait_adds_up_with_the_work_to_the_run() {
        // Source 0–10; Build entered at 40 after a 30 s gap, 12 s of it under two overlapping
        // rules (20–28 and 25–32); its build waits 5 s QUEUED and 3 s PROVISIONING; Approve
        // opens at 100 for 50 s while a lint runs its first 10 s; Deploy at 160, at once.
        let mut compile = action("Build", "Build", 40.0, 90.0);
        compile.external_id = Some("project:1".into());
        let mut approve = action("Approve", "Manager", 100.0, 150.0);
        approve.category = "Approval".into();
        approve.provider = "Manual".into();
        let runs = vec![
            action("Source", "Source", 0.0, 10.0),
            compile,
            approve,
            action("Approve", "Lint", 100.0, 110.0),
            action("Deploy", "Deploy", 160.0, 200.0),
        ];
        let rules =
            vec![rule("Build", "Window", 20.0, 28.0), rule("Source", "Alarm", 25.0, 32.0), rule("Deploy", "Late", 0.0, 1.0)];
        let builds: BTreeMap<String, Vec<Phase>> = [(
            "project:1".to_string(),
            vec![
                phase("SUBMITTED", 40.0, 40.5),
                phase("QUEUED", 40.5, 45.5),
                phase("PROVISIONING", 45.5, 48.5),
                phase("BUILD", 48.5, 90.0),
            ],
        )]
        .into();
        let timeline = build(0.0, 205.0, &runs, &rules, &builds);
        let waits: Vec<Waits> = timeline.stages.iter().map(|s| s.waits).collect();
        assert_eq!(
            waits,
            [[0.0, 0.0, 0.0, 0.0], [18.0, 12.0, 0.0, 8.0], [10.0, 0.0, 40.0, 0.0], [10.0, 0.0, 0.0, 0.0]],
            "queued, gate, approval, capacity per stage"
        );
        assert_eq!(timeline.stages[1].entry, (10.0, 40.0));
        assert_eq!(timeline.wait, 98.0);
        assert_eq!(timeline.working, 107.0);
        assert_eq!(timeline.wait + timeline.working, 205.0);
        assert_eq!(timeline.clamps, 0);
        assert_eq!(timeline.gate_rules(1).map(|r| r.rule.as_str()).collect::<Vec<_>>(), ["Window", "Alarm"]);
    }

    #[test]
    fn clock_skew_is_clamped_and_counted() {
        // The second stage starts a second before the first ended; a phase leaves its action.
        let mut compile = action("Build", "Build", 9.0, 20.0);
        compile.external_id = Some("project:2".into());
        let runs = vec![action("Source", "Source", 0.0, 10.0), compile];
        let builds: BTreeMap<String, Vec<Phase>> =
            [("project:2".to_string(), vec![phase("QUEUED", 8.0, 12.0), phase("BUILD", 12.0, 21.0)])].into();
        let timeline = build(0.0, 20.0, &runs, &[], &builds);
        assert_eq!(timeline.stages[1].entry, (10.0, 10.0));
        assert_eq!(timeline.stages[1].waits, [0.0, 0.0, 0.0, 3.0], "QUEUED clipped to 9–12, and the stage's own 9–10 overlap");
        assert_eq!(timeline.phases["Build-Build-9"], [phase("QUEUED", 9.0, 12.0), phase("BUILD", 12.0, 20.0)]);
        assert_eq!(timeline.clamps, 3);
        assert_eq!(timeline.wait + timeline.working, 20.0);
    }

    #[test]
    fn the_union_of_spans_counts_overlaps_once() {
        assert_eq!(union_length(vec![(0.0, 2.0), (1.0, 3.0), (5.0, 6.0), (4.0, 4.0)]), 4.0);
        assert_eq!(union_length(Vec::new()), 0.0);
    }
}
