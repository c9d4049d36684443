//! Execution history from ListPipelineExecutions: outcomes, durations and the timestamps that
//! delivery metrics are built on.
//!
//! GetPipelineState only shows each stage's latest execution, so an execution that starts and ends
//! between two polls would go unseen. The history pages through ListPipelineExecutions, newest
//! first, until a page holds only executions it already saw finish, and counts every execution
//! that reaches a final status exactly once. It is read only when GetPipelineState changed or an
//! execution is in progress, so an idle pipeline costs no extra call.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::ops::ControlFlow;

use aws_sdk_codepipeline::types::{ExecutionType, PipelineExecutionStatus};

use super::anatomy::{Anatomy, Shape, Tracing};
use super::timeline::{Run, elapsed};
use super::trace::Revision;
use crate::aws::{self, CallError, Scope};
use crate::exposition::{Family, Kind};
use crate::exposition::{Histogram, Rendered};
use crate::vecmap::VecMap;

pub static EXECUTION_STATUS: Family = Family {
    name: "aws_codepipeline_execution_status",
    help: "Status of the pipeline's newest execution: 1 for the current status, 0 for the others.",
    kind: Kind::Gauge,
};
pub static EXECUTIONS: Family = Family {
    name: "aws_codepipeline_executions_total",
    help: "Pipeline executions seen reaching a final status since the exporter started, each once, by status, trigger and execution type (STANDARD or ROLLBACK).",
    kind: Kind::Counter,
};
pub static EXECUTION_DURATION: Family = Family {
    name: "aws_codepipeline_execution_duration_seconds",
    help: "Duration of finished executions, from startTime to lastUpdateTime, by status and execution type.",
    kind: Kind::Histogram,
};
pub static EXECUTION_LAST_DURATION: Family = Family {
    name: "aws_codepipeline_execution_last_duration_seconds",
    help: "Duration of the most recent finished execution of each final status.",
    kind: Kind::Gauge,
};
pub static EXECUTION_LAST_START: Family = Family {
    name: "aws_codepipeline_execution_last_start_timestamp_seconds",
    help: "When the newest execution started, in seconds since the epoch.",
    kind: Kind::Gauge,
};
pub static EXECUTION_LAST_SUCCESS: Family = Family {
    name: "aws_codepipeline_execution_last_success_timestamp_seconds",
    help: "When the newest succeeded execution finished, in seconds since the epoch.",
    kind: Kind::Gauge,
};
pub static EXECUTION_LAST_FAILURE: Family = Family {
    name: "aws_codepipeline_execution_last_failure_timestamp_seconds",
    help: "When the newest failed execution finished, in seconds since the epoch.",
    kind: Kind::Gauge,
};
pub static EXECUTION_LEAD_TIME: Family = Family {
    name: "aws_codepipeline_execution_lead_time_seconds",
    help: "Lead time for changes of Succeeded STANDARD executions counted since the exporter started: from the oldest source revision's creation to the execution's end. Rollbacks are not observed.",
    kind: Kind::Histogram,
};
pub static RECOVERY_DURATION: Family = Family {
    name: "aws_codepipeline_recovery_duration_seconds",
    help: "Failed deployment recovery time: from the end of the STANDARD execution that broke the pipeline to the end of the next Succeeded execution (STANDARD or ROLLBACK), one observation per recovery whose start this process saw.",
    kind: Kind::Histogram,
};
pub static EXECUTIONS_IN_PROGRESS: Family = Family {
    name: "aws_codepipeline_executions_in_progress",
    help: "Executions InProgress or Stopping (PARALLEL and QUEUED pipelines can have several).",
    kind: Kind::Gauge,
};

/// Statuses after which an execution does not change by itself (a retry may still resume it).
const FINAL: [&str; 5] = ["Cancelled", "Failed", "Stopped", "Succeeded", "Superseded"];
/// Statuses whose duration histogram is exported from the start, at zero.
const DURATION_STATUSES: [&str; 2] = ["Failed", "Succeeded"];
/// Bucket bounds from 30 seconds to 6 hours.
const DURATION_BUCKETS: [f64; 13] =
    [30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1200.0, 1800.0, 2700.0, 3600.0, 7200.0, 10800.0, 21600.0];
/// Lead time bucket bounds, from 5 minutes to 7 days.
const LEAD_TIME_BUCKETS: [f64; 11] =
    [300.0, 900.0, 1800.0, 3600.0, 7200.0, 14400.0, 28800.0, 86400.0, 172800.0, 345600.0, 604800.0];
/// Recovery time bucket bounds, from a minute to 7 days.
const RECOVERY_BUCKETS: [f64; 11] = [60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 14400.0, 43200.0, 86400.0, 259200.0, 604800.0];
/// The `execution_type` label of an execution: CodePipeline's own ExecutionType.
const STANDARD: &str = "STANDARD";
const ROLLBACK: &str = "ROLLBACK";
/// Executions remembered per pipeline: far more than the pages one poll reads.
const REMEMBERED: usize = 1000;
/// Pages one poll reads at most, so that a pipeline with a long unread history cannot make one
/// poll page through all of it.
const MAX_PAGES: usize = 10;

fn is_final(status: &str) -> bool {
    FINAL.contains(&status)
}

fn is_running(status: &str) -> bool {
    status == "InProgress" || status == "Stopping"
}

/// One execution as ListPipelineExecutions summarises it.
#[derive(Debug, Clone, PartialEq)]
pub struct Execution {
    pub id: String,
    pub status: String,
    pub start: f64,
    pub last_update: f64,
    pub trigger: String,
    /// The earlier execution this one rolls back to, for a ROLLBACK execution; `None` for a
    /// STANDARD one (an execution without `executionType` is STANDARD).
    pub rollback: Option<Rollback>,
}

/// What a ROLLBACK execution returns to: `rollbackMetadata.rollbackTargetPipelineExecutionId`,
/// which AWS may leave out.
#[derive(Debug, Clone, PartialEq)]
pub struct Rollback {
    pub target: Option<String>,
}

impl Execution {
    fn execution_type(&self) -> &'static str {
        if self.rollback.is_some() { ROLLBACK } else { STANDARD }
    }
}

/// Reads one page of executions, newest first.
async fn list_page(scope: &Scope, pipeline: &str, token: Option<String>) -> Result<(Vec<Execution>, Option<String>), CallError> {
    let request = scope.codepipeline().list_pipeline_executions().pipeline_name(pipeline).set_next_token(token);
    let page = scope.call(super::SERVICE, "ListPipelineExecutions", || request.send(), &[]).await?;
    let executions = page
        .pipeline_execution_summaries()
        .iter()
        .filter_map(|e| {
            Some(Execution {
                id: e.pipeline_execution_id()?.to_string(),
                status: e.status()?.as_str().to_string(),
                start: e.start_time()?.as_secs_f64(),
                last_update: e.last_update_time().or(e.start_time())?.as_secs_f64(),
                trigger: e
                    .trigger()
                    .and_then(|t| t.trigger_type())
                    .map(|t| t.as_str().to_string())
                    .unwrap_or_else(|| "unknown".into()),
                rollback: (e.execution_type() == Some(&ExecutionType::Rollback)).then(|| Rollback {
                    target: e.rollback_metadata().and_then(|m| m.rollback_target_pipeline_execution_id()).map(str::to_string),
                }),
            })
        })
        .collect();
    Ok((executions, aws::next_token(page.next_token())))
}

/// An execution as GetPipelineExecution details it: its source revisions, for its lead time (when
/// the oldest was created) and its trace (the commit), and whether it is a rollback, whose
/// revisions are old ones redeployed.
struct Detail {
    revisions: Vec<Revision>,
    rollback: bool,
}

async fn detail(scope: &Scope, pipeline: &str, execution: &str) -> Result<Detail, CallError> {
    let request = scope.codepipeline().get_pipeline_execution().pipeline_name(pipeline).pipeline_execution_id(execution);
    let output = scope.call(super::SERVICE, "GetPipelineExecution", || request.send(), &[]).await?;
    let execution = output.pipeline_execution();
    Ok(Detail {
        revisions: execution
            .map(|e| e.artifact_revisions())
            .unwrap_or_default()
            .iter()
            .map(|r| Revision {
                id: r.revision_id().unwrap_or_default().to_string(),
                created: r.created().map(|c| c.as_secs_f64()),
            })
            .collect(),
        rollback: execution.and_then(|e| e.execution_type()) == Some(&ExecutionType::Rollback),
    })
}

/// What the history remembers of one execution.
#[derive(Debug)]
struct Seen {
    status: String,
    start: f64,
    last_update: f64,
    rollback: bool,
    /// Whether this process saw the execution reach a final status, rather than finding it ended
    /// at start-up: only such an end can start a recovery that is observed.
    ended_here: bool,
}

/// Where a pipeline stands between a failed deployment and its recovery.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Recovery {
    /// The newest deployment that ended is good.
    Healthy,
    /// Broken since this end of a STANDARD execution, which this process saw.
    Since(f64),
    /// Broken since before this process looked: the next success ends it unobserved, so nothing is
    /// replayed from the history found at start-up.
    Unseen,
}

/// An execution that reached a final status, or ended again after a stage retry.
#[derive(Debug)]
struct Ended {
    execution: Execution,
    /// Whether it reached this status after start-up, and so is counted.
    counted: bool,
}

/// What the exporter knows of one pipeline's executions.
#[derive(Debug)]
pub struct History {
    primed: bool,
    /// Set when the last read failed, so that the next poll reads again whatever the state says.
    stale: bool,
    /// What is known of each remembered execution, and their IDs in the order first seen.
    known: HashMap<String, Seen>,
    order: VecDeque<String>,
    /// Executions that started before this and are not remembered finished before the exporter
    /// first read the history (or were forgotten since): they are never counted.
    horizon: f64,
    /// Executions counted by (status, trigger type, execution type).
    counts: VecMap<(String, String, &'static str), u64>,
    /// The trigger and execution types seen, each pair once: a pipeline that never rolled back has
    /// no ROLLBACK series.
    kinds: VecMap<(String, &'static str), ()>,
    /// Durations by (status, execution type).
    durations: VecMap<(String, &'static str), Histogram>,
    /// Start and duration of the most recent finished execution of each final status.
    last_duration: VecMap<String, (f64, f64)>,
    last_success: Option<f64>,
    last_failure: Option<f64>,
    /// Lead times of the Succeeded executions counted so far; `None` until the pipeline is seen
    /// with a Succeeded execution.
    lead_times: Option<Histogram>,
    /// Succeeded STANDARD executions counted whose lead time is still to be read
    /// (GetPipelineExecution), with their end: kept across a failed read so that none is lost.
    pending_lead_times: VecDeque<(String, f64)>,
    /// Executions that ended since they were last settled: counted and taken through the recovery
    /// in the order they ended rather than the listing's newest-first order. They wait here for
    /// the next read when counting them would give birth to a series (see [`History::settle`]).
    ended: Vec<Ended>,
    /// Whether a series was born since the last settle: an execution type or trigger first seen.
    born: bool,
    recovery: Recovery,
    /// When the last recovery ended: a rollback undoes only what was deployed since.
    recovered_at: f64,
    /// Recovery times of the recoveries whose start this process saw; `None` until a pipeline is
    /// first seen failing or rolling back, so that a pipeline that never failed has no series.
    recoveries: Option<Histogram>,
    /// Start and status of the newest execution.
    newest: Option<(f64, String)>,
    /// The action executions of the executions counted final.
    anatomy: Anatomy,
    /// What names the pipeline's traces, while they are exported: observations then carry
    /// exemplars.
    traced: Option<super::trace::Pipeline>,
    /// The newest executions that had ended when the history was first read, with their last
    /// update: one resumed by a stage retry counts only what ran after.
    ended_at_start: VecDeque<(String, f64)>,
}

/// Executions that had ended at start-up remembered, for a stage retry of one of them: retries
/// resume one of the newest runs.
const ENDED_AT_START: usize = 8;

impl Default for History {
    fn default() -> Self {
        History {
            primed: false,
            stale: false,
            known: HashMap::new(),
            order: VecDeque::new(),
            horizon: f64::NEG_INFINITY,
            counts: VecMap::new(),
            kinds: VecMap::new(),
            durations: DURATION_STATUSES.iter().map(|s| ((s.to_string(), STANDARD), Histogram::new(&DURATION_BUCKETS))).collect(),
            last_duration: VecMap::new(),
            last_success: None,
            last_failure: None,
            lead_times: None,
            pending_lead_times: VecDeque::new(),
            ended: Vec::new(),
            born: false,
            recovery: Recovery::Healthy,
            recovered_at: f64::NEG_INFINITY,
            recoveries: None,
            newest: None,
            anatomy: Anatomy::default(),
            traced: None,
            ended_at_start: VecDeque::new(),
        }
    }
}

impl History {
    /// Whether the next poll must read the history even if GetPipelineState did not change: before
    /// the first read, after a failed read, while an execution runs, and while counts wait for
    /// their series to be published at 0.
    pub fn needs_reading(&self) -> bool {
        !self.primed || self.stale || self.in_progress() > 0 || !self.ended.is_empty()
    }

    pub fn in_progress(&self) -> usize {
        self.known.values().filter(|seen| is_running(&seen.status)).count()
    }

    pub fn anatomy(&self) -> &Anatomy {
        &self.anatomy
    }

    pub fn anatomy_mut(&mut self) -> &mut Anatomy {
        &mut self.anatomy
    }

    /// Reads the executions that are new or were still running, newest first, then the lead time
    /// and the action executions of those that ended. The first read only takes the newest page,
    /// to fill the `last_*` gauges without counting executions from before the exporter started.
    /// `shape` says what the pipeline's runs hold to read (see [`Shape`]). With `tracing`, the
    /// runs that ended go out as traces, and the histograms carry their exemplars.
    pub async fn read(
        &mut self,
        scope: &Scope,
        pipeline: &str,
        shape: Shape,
        tracing: Option<&Tracing<'_>>,
    ) -> Result<(), CallError> {
        self.traced = tracing.map(|t| t.pipeline.clone());
        self.stale = true;
        let mut running: HashSet<String> =
            self.known.iter().filter(|(_, seen)| is_running(&seen.status)).map(|(id, _)| id.clone()).collect();
        let mut pages = 0;
        let listed = aws::for_each_page(
            |token| list_page(scope, pipeline, token),
            |page, more| {
                pages += 1;
                let next = self.take_page(&page, more, &mut running);
                if pages == MAX_PAGES { ControlFlow::Break(()) } else { next }
            },
        )
        .await;
        // What was taken before a failed page is known already, so it is settled too.
        self.settle();
        listed?;
        self.primed = true;
        // A run's revisions serve its lead time and its trace: one GetPipelineExecution each.
        let mut read = BTreeMap::new();
        while let Some((id, end)) = self.pending_lead_times.front().cloned() {
            let detail = detail(scope, pipeline, &id).await?;
            // A rollback the summary did not mark redeploys old revisions: no lead time.
            if !detail.rollback
                && let Some(created) = detail.revisions.iter().filter_map(|r| r.created).reduce(f64::min)
            {
                let lead_time = elapsed(created, end);
                let exemplar = self.traced.as_ref().map(|p| p.run_exemplar(&id, lead_time, end));
                self.lead_times.get_or_insert_with(|| Histogram::new(&LEAD_TIME_BUCKETS)).observe_with(lead_time, exemplar);
            }
            read.extend(detail.revisions.into_iter().next().map(|r| (id, r)));
            self.pending_lead_times.pop_front();
        }
        if tracing.is_some() {
            let unread: Vec<String> = self.anatomy.pending().map(|r| r.id.clone()).filter(|id| !read.contains_key(id)).collect();
            for id in unread {
                read.extend(detail(scope, pipeline, &id).await?.revisions.into_iter().next().map(|r| (id, r)));
            }
        }
        self.anatomy.read(scope, pipeline, shape, tracing, &read).await?;
        self.stale = false;
        Ok(())
    }

    /// Takes one page of a read, newest first, and says whether the next page is needed: only
    /// while this page held an execution not seen finished before, or one that was `running`
    /// at the last read is not found yet. `more` says whether there is a next page.
    fn take_page(&mut self, page: &[Execution], more: bool, running: &mut HashSet<String>) -> ControlFlow<()> {
        let mut all_finished_before = true;
        for execution in page {
            let before = match self.known.get(&execution.id) {
                Some(seen) => Some((seen.status.clone(), seen.last_update)),
                None if execution.start < self.horizon => continue,
                None => None,
            };
            all_finished_before &= before.as_ref().is_some_and(|(status, _)| is_final(status));
            running.remove(&execution.id);
            self.observe(execution, before.as_ref().map(|(status, at)| (status.as_str(), *at)));
        }
        if !self.primed {
            // Older pages hold history from before the exporter started.
            if more {
                self.horizon = page.iter().map(|e| e.start).fold(f64::INFINITY, f64::min);
            }
            return ControlFlow::Break(());
        }
        if all_finished_before && running.is_empty() { ControlFlow::Break(()) } else { ControlFlow::Continue(()) }
    }

    /// Takes one execution; `before` is its status and last update at the previous read.
    fn observe(&mut self, execution: &Execution, before: Option<(&str, f64)>) {
        let execution_type = execution.execution_type();
        if !self.kinds.contains_key(&(execution.trigger.clone(), execution_type)) {
            self.kinds.insert((execution.trigger.clone(), execution_type), ());
            self.born |= self.primed;
            if execution_type == ROLLBACK {
                // A pipeline that rolls back has its rollback durations from then on, at 0.
                for status in DURATION_STATUSES {
                    self.durations.get_or_insert_with((status.to_string(), ROLLBACK), || Histogram::new(&DURATION_BUCKETS));
                }
            }
        }
        if self.newest.as_ref().is_none_or(|(start, _)| execution.start >= *start) {
            self.newest = Some((execution.start, execution.status.clone()));
        }
        let status = execution.status.as_str();
        if !self.primed && status == "Succeeded" && execution_type == STANDARD {
            // A pipeline that delivers has its lead time histogram from the start, at 0, so that
            // increase() sees the first lead time counted.
            self.lead_times.get_or_insert_with(|| Histogram::new(&LEAD_TIME_BUCKETS));
        }
        if !self.primed && (status == "Failed" || execution_type == ROLLBACK) {
            // Likewise a pipeline that has failed or rolled back has its recovery histogram from
            // the start.
            self.recoveries.get_or_insert_with(|| Histogram::new(&RECOVERY_BUCKETS));
        }
        // Each (execution, final status) once: a retried execution that failed and then succeeded
        // counts both outcomes.
        let reached = is_final(status) && before.map(|(status, _)| status) != Some(status);
        // A stage retried between two reads may end at the status it had: its last update tells,
        // and its new action executions are read all the same.
        let ended_again = reached || (is_final(status) && before.is_some_and(|(_, at)| at != execution.last_update));
        if is_final(status) {
            let duration = elapsed(execution.start, execution.last_update);
            if ended_again {
                self.ended.push(Ended { execution: execution.clone(), counted: self.primed && reached });
            }
            if self.primed && ended_again {
                let resumed_after = self.ended_at_start.iter().find(|(id, _)| *id == execution.id).map(|(_, at)| *at);
                self.anatomy.reached_final(Run {
                    id: execution.id.clone(),
                    status: execution.status.clone(),
                    start: execution.start,
                    end: execution.last_update,
                    resumed_after,
                    counted: reached,
                });
            }
            if !self.primed && self.ended_at_start.len() < ENDED_AT_START {
                // The seed page is newest first.
                self.ended_at_start.push_back((execution.id.clone(), execution.last_update));
            }
            if self.last_duration.get(status).is_none_or(|(start, _)| execution.start >= *start) {
                self.last_duration.insert(status.to_string(), (execution.start, duration));
            }
            let latest = match status {
                "Succeeded" => Some(&mut self.last_success),
                "Failed" => Some(&mut self.last_failure),
                _ => None,
            };
            if let Some(latest) = latest
                && latest.is_none_or(|at| execution.last_update > at)
            {
                *latest = Some(execution.last_update);
            }
        }
        let ended_here = (self.primed && ended_again) || self.known.get(&execution.id).is_some_and(|seen| seen.ended_here);
        let seen = Seen {
            status: execution.status.clone(),
            start: execution.start,
            last_update: execution.last_update,
            rollback: execution.rollback.is_some(),
            ended_here,
        };
        if self.known.insert(execution.id.clone(), seen).is_none() {
            self.order.push_back(execution.id.clone());
            if self.order.len() > REMEMBERED
                && let Some(oldest) = self.order.pop_front()
                && let Some(forgotten) = self.known.remove(&oldest)
            {
                self.horizon = self.horizon.max(forgotten.start);
            }
        }
    }

    /// Counts the executions that ended, and takes them through the recovery, in the order they
    /// ended. When counting them would give birth to a series (a trigger or execution type first
    /// seen, a status's first duration, the first lead time or recovery), the new series are
    /// published at 0 and the counts wait for the next read: `increase()` never sees a series'
    /// first sample as an increase, so a series born counting would hide its first count.
    fn settle(&mut self) {
        let mut born = std::mem::take(&mut self.born);
        for index in 0..self.ended.len() {
            if self.ended[index].counted {
                born |= self.announce(index);
            }
        }
        if born {
            return;
        }
        let mut ended = std::mem::take(&mut self.ended);
        ended.sort_by(|a, b| a.execution.last_update.total_cmp(&b.execution.last_update));
        for Ended { execution, counted } in &ended {
            if *counted {
                self.count(execution);
            }
            self.recover(execution);
        }
    }

    /// Gives birth, at 0, to the series that counting `self.ended[index]` will add to, and says
    /// whether there was any.
    fn announce(&mut self, index: usize) -> bool {
        let execution = &self.ended[index].execution;
        let (status, execution_type) = (execution.status.clone(), execution.execution_type());
        let deployed = status == "Succeeded" && execution_type == STANDARD;
        let breaks = status == "Failed" || execution_type == ROLLBACK;
        let mut born = false;
        if !self.durations.contains_key(&(status.clone(), execution_type)) {
            self.durations.insert((status, execution_type), Histogram::new(&DURATION_BUCKETS));
            born = true;
        }
        if deployed && self.lead_times.is_none() {
            self.lead_times = Some(Histogram::new(&LEAD_TIME_BUCKETS));
            born = true;
        }
        if breaks && self.recoveries.is_none() {
            self.recoveries = Some(Histogram::new(&RECOVERY_BUCKETS));
            born = true;
        }
        born
    }

    /// Counts one execution that reached a final status after start-up, once.
    fn count(&mut self, execution: &Execution) {
        let (status, execution_type) = (execution.status.as_str(), execution.execution_type());
        *self.counts.get_or_insert_with((status.to_string(), execution.trigger.clone(), execution_type), || 0) += 1;
        let duration = elapsed(execution.start, execution.last_update);
        let exemplar = self.traced.as_ref().map(|p| p.run_exemplar(&execution.id, duration, execution.last_update));
        let histogram =
            self.durations.get_or_insert_with((status.to_string(), execution_type), || Histogram::new(&DURATION_BUCKETS));
        histogram.observe_with(duration, exemplar);
        if status == "Succeeded" && execution_type == STANDARD {
            self.pending_lead_times.push_back((execution.id.clone(), execution.last_update));
        }
    }

    /// Takes one execution that ended through the recovery: a STANDARD execution that fails
    /// breaks a good pipeline; a rollback says it broke at the first STANDARD execution after its
    /// target that failed or that it undoes; the next Succeeded execution, of either type, ends the
    /// recovery. Several failures in a row make one recovery.
    fn recover(&mut self, execution: &Execution) {
        let seen_here = self.known.get(&execution.id).is_some_and(|seen| seen.ended_here);
        let broken = |ended_here: bool, at: f64| if ended_here { Recovery::Since(at) } else { Recovery::Unseen };
        if let Some(rollback) = &execution.rollback {
            let since = self.first_undone(rollback, execution.start).map(|(at, ended_here)| broken(ended_here, at));
            self.recovery = match (self.recovery, since) {
                (Recovery::Since(a), Some(Recovery::Since(b))) => Recovery::Since(a.min(b)),
                (_, Some(since)) => since,
                // A rollback whose target is not remembered: broken since a time not known.
                (Recovery::Healthy, None) => Recovery::Unseen,
                (state, None) => state,
            };
        } else if execution.status == "Failed" && self.recovery == Recovery::Healthy {
            self.recovery = broken(seen_here, execution.last_update);
        }
        if execution.status == "Succeeded" {
            if let (Recovery::Since(at), Some(histogram)) = (self.recovery, self.recoveries.as_mut()) {
                let seconds = elapsed(at, execution.last_update);
                let exemplar = self.traced.as_ref().map(|p| p.run_exemplar(&execution.id, seconds, execution.last_update));
                histogram.observe_with(seconds, exemplar);
            }
            if self.recovery != Recovery::Healthy {
                self.recovered_at = execution.last_update;
            }
            self.recovery = Recovery::Healthy;
        }
    }

    /// The end of the first STANDARD execution that a rollback undoes or that failed after its
    /// target (the earliest started after the target, and before the rollback, that ended after
    /// the last recovery), and whether this process saw it end. `None` when the target is not
    /// remembered.
    fn first_undone(&self, rollback: &Rollback, rollback_start: f64) -> Option<(f64, bool)> {
        let target = self.known.get(rollback.target.as_deref()?)?;
        self.known
            .values()
            .filter(|seen| !seen.rollback && seen.start > target.start && seen.start < rollback_start)
            .filter(|seen| seen.last_update > self.recovered_at)
            .filter(|seen| seen.status == "Failed" || seen.status == "Succeeded")
            .min_by(|a, b| a.start.total_cmp(&b.start))
            .map(|seen| (seen.last_update, seen.ended_here))
    }

    /// Renders the execution families of one pipeline; `base` holds account, region and pipeline.
    pub fn render(&self, rendered: &mut Rendered, base: &[(&str, &str); 3]) {
        if !self.primed {
            return;
        }
        let current = self.newest.as_ref().map(|(_, status)| status.as_str());
        rendered.state_set(&EXECUTION_STATUS, base, PipelineExecutionStatus::values(), current);
        for status in FINAL {
            for (trigger, execution_type) in self.kinds.keys() {
                let count = self.counts.get(&(status.to_string(), trigger.clone(), execution_type)).copied().unwrap_or(0);
                let labels = [("status", status), ("trigger_type", trigger.as_str()), ("execution_type", execution_type)];
                rendered.sample_with(&EXECUTIONS, base, &labels, count as f64);
            }
        }
        for ((status, execution_type), histogram) in &self.durations {
            let labels = [base[0], base[1], base[2], ("status", status.as_str()), ("execution_type", execution_type)];
            histogram.render(rendered, &EXECUTION_DURATION, &labels);
        }
        if let Some(lead_times) = &self.lead_times {
            lead_times.render(rendered, &EXECUTION_LEAD_TIME, base);
        }
        if let Some(recoveries) = &self.recoveries {
            recoveries.render(rendered, &RECOVERY_DURATION, base);
        }
        for (status, (_, seconds)) in &self.last_duration {
            rendered.sample_with(&EXECUTION_LAST_DURATION, base, &[("status", status)], *seconds);
        }
        if let Some((start, _)) = &self.newest {
            rendered.sample(&EXECUTION_LAST_START, base, *start);
        }
        if let Some(at) = self.last_success {
            rendered.sample(&EXECUTION_LAST_SUCCESS, base, at);
        }
        if let Some(at) = self.last_failure {
            rendered.sample(&EXECUTION_LAST_FAILURE, base, at);
        }
        rendered.sample(&EXECUTIONS_IN_PROGRESS, base, self.in_progress() as f64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn execution(id: &str, status: &str, start: f64) -> Execution {
        Execution {
            id: id.into(),
            status: status.into(),
            start,
            last_update: start + 60.0,
            trigger: "Webhook".into(),
            rollback: None,
        }
    }

    fn counts(history: &History) -> Vec<(&str, u64)> {
        history.counts.iter().map(|((status, ..), n)| (status.as_str(), *n)).collect()
    }

    #[test]
    fn the_reader_seeds_from_one_page_then_reads_only_until_it_knows_the_rest() {
        let mut history = History::default();
        let mut running = HashSet::new();
        // The seed reads the newest page only; what is older is before the horizon.
        let seed = [execution("e3", "InProgress", 300.0), execution("e2", "Succeeded", 200.0)];
        assert_eq!(history.take_page(&seed, true, &mut running), ControlFlow::Break(()));
        history.primed = true;
        assert_eq!(history.horizon, 200.0);
        assert_eq!((history.in_progress(), history.last_success), (1, Some(260.0)));
        assert!(counts(&history).is_empty(), "the seed counts nothing");

        // e3 failed and e4 started: a page with anything new asks for the next one.
        let mut running: HashSet<String> = ["e3".to_string()].into();
        let newest = [execution("e4", "InProgress", 400.0), execution("e3", "Failed", 300.0)];
        assert_eq!(history.take_page(&newest, true, &mut running), ControlFlow::Continue(()));
        assert!(running.is_empty());
        // A page of executions already seen final ends the read; one from before the horizon is
        // never counted.
        let older = [execution("e2", "Succeeded", 200.0), execution("e1", "Failed", 100.0)];
        assert_eq!(history.take_page(&older, true, &mut running), ControlFlow::Break(()));
        // e3 is the first failure: its recovery histogram is born at 0, and the count waits for
        // the next read, which the history asks for.
        history.settle();
        assert!(counts(&history).is_empty());
        assert!(history.recoveries.is_some());
        assert!(history.needs_reading());
        history.settle();
        assert_eq!(counts(&history), [("Failed", 1)]);
        assert!(history.ended.is_empty());
        assert_eq!(history.last_failure, Some(360.0));

        // Until e4 is found again, a page of known executions does not end the read.
        let mut running: HashSet<String> = ["e4".to_string()].into();
        let unrelated = [execution("e3", "Failed", 300.0)];
        assert_eq!(history.take_page(&unrelated, true, &mut running), ControlFlow::Continue(()));
        // A page with a change asks for the next; the listing ends here as it has no more pages.
        let found = [execution("e4", "Succeeded", 400.0)];
        assert_eq!(history.take_page(&found, false, &mut running), ControlFlow::Continue(()));
        history.settle();
        assert_eq!(counts(&history), [("Failed", 1), ("Succeeded", 1)]);
        // e4 ended the recovery that e3's failure started.
        assert_eq!(history.recovery, Recovery::Healthy);
        assert_eq!(history.recovered_at, 460.0);
        assert_eq!(history.in_progress(), 0);
    }
}
