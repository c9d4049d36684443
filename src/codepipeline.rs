//! The CodePipeline collector: what ListPipelines and GetPipelineState say, as metric series.
//!
//! Every `aws_codepipeline_*` family from those two calls is defined here, next to the function
//! that fills it; the execution history from ListPipelineExecutions is in [`executions`], and the
//! action executions of each run, from ListActionExecutions, in [`anatomy`]. A poll turns the
//! API's answer into a [`PipelineState`] snapshot; [`Counters`] remembers which outcomes were
//! already counted; [`render`] turns both into series.

pub mod anatomy;
pub mod executions;
pub mod semconv;
pub mod settings;
pub mod timeline;
pub mod trace;

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::sync::Arc;

use aws_sdk_codepipeline::operation::get_pipeline_state::GetPipelineStateOutput;
use aws_sdk_codepipeline::types::{ActionExecutionStatus, ConditionExecutionStatus, RuleExecutionStatus, StageExecutionStatus};
use aws_smithy_types::DateTime;
use tokio::sync::watch;

use crate::aws::{self, CallError, Scope};
use crate::collector::{self, Round, Targets};
use crate::exposition::{Family, Kind, Rendered};
use crate::intern::intern;
use crate::metrics_push;
use crate::signal::{Event, Route};
use crate::target::{Outcome, Target, TargetKey};
use crate::vecmap::VecMap;
use crate::yaml;
use anatomy::{ACTION_EXECUTIONS, ACTION_FINAL};
pub use settings::Settings;

pub const SERVICE: &str = "codepipeline";

pub static PIPELINE_INFO: Family = Family {
    name: "aws_codepipeline_pipeline_info",
    help: "Information about a pipeline, from ListPipelines; pipeline_type and execution_mode are 'unknown' when discovery is off.",
    kind: Kind::Gauge,
};
pub static PIPELINE_VERSION: Family = Family {
    name: "aws_codepipeline_pipeline_version",
    help: "The version number of the pipeline's structure.",
    kind: Kind::Gauge,
};
pub static PIPELINE_CREATED: Family = Family {
    name: "aws_codepipeline_pipeline_created_timestamp_seconds",
    help: "When the pipeline was created, in seconds since the epoch.",
    kind: Kind::Gauge,
};
pub static PIPELINE_UPDATED: Family = Family {
    name: "aws_codepipeline_pipeline_updated_timestamp_seconds",
    help: "When the pipeline's structure was last updated, in seconds since the epoch.",
    kind: Kind::Gauge,
};
pub static STAGE_STATUS: Family = Family {
    name: "aws_codepipeline_stage_status",
    help: "Status of the stage's latest execution: 1 for the current status, 0 for the others, all 0 when the stage never ran.",
    kind: Kind::Gauge,
};
pub static STAGE_INBOUND_STATUS: Family = Family {
    name: "aws_codepipeline_stage_inbound_status",
    help: "Status of the execution waiting at the stage's inbound transition: 1 for the current status, all 0 when none waits.",
    kind: Kind::Gauge,
};
pub static STAGE_INBOUND_EXECUTIONS: Family = Family {
    name: "aws_codepipeline_stage_inbound_executions",
    help: "Runs waiting at the stage's inbound transition now (inboundExecutions: several in QUEUED and PARALLEL modes), 0 when none waits.",
    kind: Kind::Gauge,
};
pub static STAGE_TRANSITION_ENABLED: Family = Family {
    name: "aws_codepipeline_stage_transition_enabled",
    help: "Whether the stage's inbound transition is enabled (1) or disabled (0).",
    kind: Kind::Gauge,
};
pub static STAGE_TRANSITION_LAST_CHANGED: Family = Family {
    name: "aws_codepipeline_stage_transition_last_changed_timestamp_seconds",
    help: "When the stage's inbound transition was last enabled or disabled, in seconds since the epoch.",
    kind: Kind::Gauge,
};
pub static STAGE_CONDITION_STATUS: Family = Family {
    name: "aws_codepipeline_stage_condition_status",
    help: "Status of the latest evaluation of each of the stage's conditions (condition_type BeforeEntry, OnSuccess, OnFailure): 1 for the current status, all 0 when it has not run.",
    kind: Kind::Gauge,
};
pub static STAGE_RULE_STATUS: Family = Family {
    name: "aws_codepipeline_stage_rule_status",
    help: "Status of the latest execution of each rule of the stage's conditions: 1 for the current status, all 0 when it has not run.",
    kind: Kind::Gauge,
};
pub static STAGE_RETRY_ATTEMPT: Family = Family {
    name: "aws_codepipeline_stage_retry_attempt",
    help: "Retry attempts of the stage's latest execution, automated (AutomatedStageRetry) and manual (ManualStageRetry).",
    kind: Kind::Gauge,
};
pub static STAGE_ROLLBACK: Family = Family {
    name: "aws_codepipeline_stage_rollback",
    help: "Whether the stage's latest execution is a rollback (1) or not (0), when AWS gives its type.",
    kind: Kind::Gauge,
};
pub static ACTION_INFO: Family = Family {
    name: "aws_codepipeline_action_info",
    help: "An action of the pipeline's structure and its type, from GetPipeline: join on it to tell a manual approval (category Approval) from other actions.",
    kind: Kind::Gauge,
};
pub static PIPELINE_POLLING_DISABLED: Family = Family {
    name: "aws_codepipeline_pipeline_polling_disabled_timestamp_seconds",
    help: "When AWS stopped polling the pipeline's source after 30 idle days, in seconds since the epoch, while it is stopped.",
    kind: Kind::Gauge,
};
pub static ACTION_STATUS: Family = Family {
    name: "aws_codepipeline_action_status",
    help: "Status of the action's latest execution: 1 for the current status, 0 for the others, all 0 when the action never ran.",
    kind: Kind::Gauge,
};
pub static ACTION_COMPLETION_RATIO: Family = Family {
    name: "aws_codepipeline_action_completion_ratio",
    help: "Completion of the action's latest execution as reported by the action (percentComplete / 100), while it reports one.",
    kind: Kind::Gauge,
};
pub static ACTION_LAST_STATUS_CHANGE: Family = Family {
    name: "aws_codepipeline_action_last_status_change_timestamp_seconds",
    help: "When the status of the action's latest execution last changed, in seconds since the epoch.",
    kind: Kind::Gauge,
};
pub static ACTION_REVISION_INFO: Family = Family {
    name: "aws_codepipeline_action_revision_info",
    help: "The revision the action currently works on (for source actions, the commit).",
    kind: Kind::Gauge,
};
pub static ACTION_REVISION_CREATED: Family = Family {
    name: "aws_codepipeline_action_revision_created_timestamp_seconds",
    help: "When the action's current revision was created, in seconds since the epoch.",
    kind: Kind::Gauge,
};
pub static ACTION_ERROR_INFO: Family = Family {
    name: "aws_codepipeline_action_error_info",
    help: "The error code of the action's latest execution, while it has one.",
    kind: Kind::Gauge,
};
pub static PIPELINE_TAGS: Family = Family {
    name: "aws_codepipeline_pipeline_tags",
    help: "The pipeline's tags of the configured allowlist, each as a tag_* label; always 1.",
    kind: Kind::Gauge,
};
pub static STAGE_EXECUTIONS: Family = Family {
    name: "aws_codepipeline_stage_executions_total",
    help: "Pipeline executions seen reaching a final status in the stage since the exporter started.",
    kind: Kind::Counter,
};

/// Discovers the pipelines of one account and region and keeps one polling task for each, plus
/// one for each configured pipeline.
pub struct Collector {
    settings: Settings,
    pipelines: Targets<PipelineTarget>,
}

impl collector::Collector for Collector {
    const SERVICE: &'static str = SERVICE;
    type Settings = Settings;

    fn new(settings: Settings) -> Collector {
        Collector { settings, pipelines: Targets::default() }
    }

    /// Pipeline, stage and action execution changes all name a pipeline, whose state one
    /// GetPipelineState call reads.
    fn route(settings: &Settings, event: &Event) -> Option<Route> {
        if event.source != EVENT_SOURCE || !EVENT_TYPES.contains(&event.detail_type.as_str()) {
            return None;
        }
        let Some(pipeline) = event.detail("pipeline") else {
            return Some(Route::Targets(Vec::new()));
        };
        let explicit = settings.pipelines.iter().any(|p| p == pipeline);
        if !(explicit || settings.discover && settings.selects(pipeline)) {
            return Some(Route::NotSelected);
        }
        Some(Route::Targets(vec![(PipelineTarget::KIND, pipeline.to_string())]))
    }

    async fn discover(&mut self, round: &mut Round) {
        let settings = &self.settings;
        let mut desired: HashMap<String, Option<Summary>> = settings.pipelines.iter().map(|name| (name.clone(), None)).collect();
        let mut complete = true;
        if settings.discover {
            let listed = list_pipelines(round.scope()).await;
            match &listed {
                Ok(summaries) => {
                    for summary in summaries {
                        if settings.selects(&summary.name) || desired.contains_key(&summary.name) {
                            desired.insert(summary.name.clone(), Some(summary.clone()));
                        }
                    }
                }
                Err(_) => complete = false,
            }
            let rendered = round.rendered();
            round.publish(listed.as_ref().map(|_| ()), rendered);
        }
        let tags = (!settings.tags.is_empty()).then(|| {
            let labels = settings.tags.iter().map(|key| (key.clone(), yaml::tag_label(key))).collect();
            Arc::new(TagSettings { labels, max_age: round.discovery_interval() })
        });
        round
            .reconcile(&mut self.pipelines, desired, complete, |name, summary| {
                let explicit = settings.pipelines.iter().any(|p| p == name);
                PipelineTarget::new(summary, explicit, settings).with_tags(tags.clone())
            })
            .await;
    }
}

/// The `source` of CodePipeline's EventBridge events.
const EVENT_SOURCE: &str = "aws.codepipeline";
/// The events that announce a change of a pipeline's state.
const EVENT_TYPES: [&str; 3] = [
    "CodePipeline Pipeline Execution State Change",
    "CodePipeline Stage Execution State Change",
    "CodePipeline Action Execution State Change",
];

/// How long a pipeline's definition is trusted without a new version: a day, one GetPipeline call
/// per pipeline and day, so that a source whose polling AWS stopped is seen within a day.
const DEFINITION_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(86_400);

/// Stage statuses after which a stage execution does not change by itself.
const STAGE_FINAL: [&str; 5] = ["Cancelled", "Failed", "Skipped", "Stopped", "Succeeded"];

/// What ListPipelines says of a pipeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub name: String,
    pub pipeline_type: String,
    pub execution_mode: String,
}

/// What GetPipelineState says of a pipeline, reduced to what the metrics need.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PipelineState {
    pub version: Option<i32>,
    pub created: Option<f64>,
    pub updated: Option<f64>,
    pub stages: Vec<StageState>,
}

/// Names and statuses are shared ([`intern`]): thousands of pipelines repeat a few of them, and
/// each target keeps its last state between polls.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StageState {
    pub name: Arc<str>,
    /// The latest execution's pipeline execution ID and status.
    pub latest: Option<(String, Arc<str>)>,
    /// The latest execution's type (STANDARD or ROLLBACK), when AWS gives one.
    pub latest_type: Option<Arc<str>>,
    pub inbound_status: Option<Arc<str>>,
    /// How many runs wait at the inbound transition.
    pub inbound: u32,
    /// Enabled, and when that last changed.
    pub transition: Option<(bool, Option<f64>)>,
    /// The stage's conditions that exist: what gates its entry, success and failure.
    pub conditions: Vec<ConditionState>,
    /// The latest execution's automatic and manual retry attempts, when AWS reports them.
    pub retries: Option<(i32, i32)>,
    pub actions: Vec<ActionState>,
}

/// One of a stage's conditions (BeforeEntry, OnSuccess, OnFailure) and the rules it evaluates.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConditionState {
    pub condition_type: &'static str,
    /// The latest evaluation's status; `None` when the condition has not run.
    pub status: Option<Arc<str>>,
    /// Each rule's name and latest status.
    pub rules: Vec<(Arc<str>, Option<Arc<str>>)>,
}

impl ConditionState {
    fn from(condition_type: &'static str, state: &aws_sdk_codepipeline::types::StageConditionState) -> ConditionState {
        ConditionState {
            condition_type,
            status: state.latest_execution().and_then(|e| e.status()).map(|s| intern(s.as_str())),
            rules: merge_rules(state.condition_states().iter().flat_map(|condition| condition.rule_states()).map(|rule| {
                let status = rule.latest_execution().and_then(|e| e.status()).map(|s| intern(s.as_str()));
                (intern(rule.rule_name().unwrap_or_default()), status)
            })),
        }
    }
}

/// One entry per rule name. Several conditions of one type may each hold a rule of the same name
/// (nothing in the model forbids it), and two series of one name and labels would make Prometheus
/// refuse the whole scrape; the name reports the status that holds the stage most: Failed, then
/// InProgress, Abandoned, Succeeded, then one the SDK does not know, then none.
fn merge_rules(rules: impl Iterator<Item = (Arc<str>, Option<Arc<str>>)>) -> Vec<(Arc<str>, Option<Arc<str>>)> {
    let rank = |status: &Option<Arc<str>>| match status.as_deref() {
        Some("Failed") => 5,
        Some("InProgress") => 4,
        Some("Abandoned") => 3,
        Some("Succeeded") => 2,
        Some(_) => 1,
        None => 0,
    };
    let mut merged: Vec<(Arc<str>, Option<Arc<str>>)> = Vec::new();
    for (name, status) in rules {
        match merged.iter_mut().find(|(known, _)| *known == name) {
            Some(entry) if rank(&status) > rank(&entry.1) => entry.1 = status,
            Some(_) => {}
            None => merged.push((name, status)),
        }
    }
    merged
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ActionState {
    pub name: Arc<str>,
    /// The latest execution's action execution ID (empty when AWS gives none) and status.
    pub latest: Option<(String, Arc<str>)>,
    pub percent_complete: Option<i32>,
    pub last_status_change: Option<f64>,
    pub revision: Option<(String, f64)>,
    pub error_code: Option<Arc<str>>,
}

/// One pipeline as the scheduler polls it: the last snapshot, the counters, and what discovery
/// said of it (nothing for a configured pipeline that discovery did not list).
pub struct PipelineTarget {
    summary: watch::Receiver<Option<Summary>>,
    explicit: bool,
    counters: Counters,
    last: Option<PipelineState>,
    /// What GetPipeline said of the pipeline's structure, read again only when its version changes.
    definition: Option<Definition>,
    /// `None` when execution history is turned off.
    history: Option<executions::History>,
    /// Whether seconds per CodeBuild phase are exported (`codepipeline.build_phases`).
    build_phases: bool,
    /// Whether the structure and the history are to be read right after the state was published,
    /// and whether the state had changed.
    follow_up: Option<bool>,
    /// The allowlist of tags to read, when there is one, and the tags last read.
    tags: Option<(Arc<TagSettings>, Option<Tags>)>,
    /// The pipeline's place among the CI/CD metrics pushed over OTLP, once it recorded them.
    pushed: Option<metrics_push::Registration>,
}

/// Which pipeline tags become labels, and how often they are read again.
#[derive(Debug)]
pub struct TagSettings {
    /// Each tag key and the label name it is exported as.
    pub labels: Vec<(String, String)>,
    /// Tags are read at a pipeline's first poll and then at most this often: discovery's interval.
    pub max_age: std::time::Duration,
}

/// A pipeline's allowlisted tags, in the allowlist's order, and when they were read.
#[derive(Debug)]
struct Tags {
    read_at: std::time::Instant,
    /// The label name and the tag's value of each allowlisted tag the pipeline has.
    values: Vec<(String, String)>,
}

/// What GetPipeline says of a pipeline: the version of its structure, each action's type, and
/// when AWS stopped polling its source (after 30 idle days).
#[derive(Debug, Clone, PartialEq)]
pub struct Definition {
    /// When it was read: AWS stops a source's polling without a new version, so the definition is
    /// read again after [`DEFINITION_MAX_AGE`] too.
    pub read_at: std::time::Instant,
    pub version: Option<i32>,
    /// V1 or V2: only V2 pipelines are billed per action minute.
    pub pipeline_type: Option<String>,
    /// The account the pipeline is in, from its ARN: traces name it.
    pub account_id: Option<String>,
    /// The pipeline's ARN, which its tags are read by.
    pub arn: Option<String>,
    /// The repository and branch of the first source action, from its configuration.
    pub source: (Option<String>, Option<String>),
    /// Stage, action, category, owner and provider of every action, each name shared with every
    /// other pipeline that has it.
    pub actions: Box<[[Arc<str>; 5]]>,
    pub polling_disabled_at: Option<f64>,
    /// Whether a stage has conditions, whose rule executions are then read with each run.
    pub conditions: bool,
}

impl PipelineTarget {
    /// `explicit` pipelines come from the configuration: they are polled even when AWS says they do
    /// not exist, which it shows as a target that is down.
    pub fn new(summary: watch::Receiver<Option<Summary>>, explicit: bool, settings: &Settings) -> PipelineTarget {
        let executions = settings.executions;
        PipelineTarget {
            summary,
            explicit,
            // With the history on, action executions are counted from ListActionExecutions.
            counters: Counters::new(!executions),
            last: None,
            definition: None,
            history: executions.then(executions::History::default),
            build_phases: settings.build_phases,
            follow_up: None,
            tags: None,
            pushed: None,
        }
    }

    /// The same target, reading `tags` when there is an allowlist.
    pub fn with_tags(mut self, tags: Option<Arc<TagSettings>>) -> PipelineTarget {
        self.tags = tags.map(|settings| (settings, None));
        self
    }
}

impl PipelineTarget {
    /// Whether the structure or the history is to be read after a state read: the structure at
    /// first, when its version changed, or after a day; the history when the state `changed` or
    /// something runs.
    fn details_due(&self, changed: bool) -> bool {
        self.definition_due() || self.history_due(changed) || self.tags_due()
    }

    /// Whether the tags are to be read: with an allowlist, at first and after `max_age`.
    fn tags_due(&self) -> bool {
        self.tags.as_ref().is_some_and(|(settings, tags)| tags.as_ref().is_none_or(|t| t.read_at.elapsed() >= settings.max_age))
    }

    /// Reads the pipeline's tags, keeping those of the allowlist.
    async fn read_tags(&mut self, scope: &Scope) -> Result<(), CallError> {
        let Some(arn) = self.definition.as_ref().and_then(|d| d.arn.clone()) else { return Ok(()) };
        let Some((settings, tags)) = &mut self.tags else { return Ok(()) };
        let mut all: Vec<(String, String)> = Vec::new();
        aws::for_each_page(
            |token| {
                let arn = arn.clone();
                async move {
                    let request = scope.codepipeline().list_tags_for_resource().resource_arn(arn).set_next_token(token);
                    let page = scope.call(SERVICE, "ListTagsForResource", || request.send(), &[]).await?;
                    let next = aws::next_token(page.next_token());
                    Ok((page, next))
                }
            },
            |page, _| {
                all.extend(page.tags().iter().map(|tag| (tag.key().to_string(), tag.value().to_string())));
                ControlFlow::Continue(())
            },
        )
        .await?;
        let values = settings
            .labels
            .iter()
            .filter_map(|(key, label)| all.iter().find(|(k, _)| k == key).map(|(_, value)| (label.clone(), value.clone())))
            .collect();
        *tags = Some(Tags { read_at: std::time::Instant::now(), values });
        Ok(())
    }

    /// Whether the history is to be read: when the state `changed`, something runs, or the last
    /// read failed or has not happened yet.
    fn history_due(&self, changed: bool) -> bool {
        let active = self.active();
        self.history.as_ref().is_some_and(|h| changed || active || h.needs_reading())
    }

    /// Whether the structure is to be read: at first, when its version changed, or after a day.
    fn definition_due(&self) -> bool {
        let version = self.last.as_ref().and_then(|state| state.version);
        self.definition.as_ref().is_none_or(|d| d.version != version || d.read_at.elapsed() > DEFINITION_MAX_AGE)
    }

    /// Reads what the state does not say: the structure, at the first poll and again only when its
    /// version changes (or after a day), and the history, when the state `changed` or something
    /// runs.
    async fn read_details(&mut self, scope: &Scope, pipeline: &str, changed: bool) -> Outcome {
        if self.definition_due() {
            match get_definition(scope, pipeline).await {
                Ok(definition) => {
                    if let Some(history) = &mut self.history {
                        history.anatomy_mut().retain(&definition.actions);
                    }
                    self.definition = Some(definition);
                }
                Err(err) => return Outcome::Failed(err),
            }
        }
        if self.tags_due()
            && let Err(err) = self.read_tags(scope).await
        {
            return Outcome::Failed(err);
        }
        if !self.history_due(changed) {
            return Outcome::Polled;
        }
        let shape = anatomy::Shape {
            billed: self.definition.as_ref().is_some_and(|d| d.pipeline_type.as_deref() == Some("V2")),
            conditions: self.definition.as_ref().is_some_and(|d| d.conditions),
            build_phases: self.build_phases,
        };
        let traced = scope.traces.as_ref().map(|_| self.trace_names(scope, pipeline));
        let tracing = scope.traces.as_ref().zip(traced.as_ref()).map(|(sink, pipeline)| anatomy::Tracing { sink, pipeline });
        if let Some(history) = &mut self.history
            && let Err(err) = history.read(scope, pipeline, shape, tracing.as_ref()).await
        {
            return Outcome::Failed(err);
        }
        Outcome::Polled
    }

    /// One poll: the state, or the follow-up it asked for.
    async fn poll_once(&mut self, scope: &Scope, key: &TargetKey) -> Outcome {
        if let Some(changed) = self.follow_up.take() {
            return self.read_details(scope, &key.name, changed).await;
        }
        match get_state(scope, &key.name).await {
            Ok(state) => {
                self.counters.observe(&state);
                let changed = self.last.as_ref() != Some(&state);
                self.last = Some(state);
                if self.details_due(changed) {
                    self.follow_up = Some(changed);
                }
                Outcome::Polled
            }
            Err(err) if err.code == "PipelineNotFoundException" => {
                // A deleted pipeline's last values would be wrong, not just stale.
                self.last = None;
                self.definition = None;
                if self.explicit { Outcome::Failed(err) } else { Outcome::Gone }
            }
            Err(err) => Outcome::Failed(err),
        }
    }

    /// The account ID the pipeline's resource names: from its ARN, else the account's name.
    fn account_id(&self, scope: &Scope) -> String {
        self.definition.as_ref().and_then(|d| d.account_id.clone()).unwrap_or_else(|| scope.account.to_string())
    }

    /// Runs in progress now: those waiting at an inbound transition are pending, the others
    /// executing.
    fn active_runs(&self) -> semconv::Active {
        let pending = self.last.as_ref().map_or(0, |state| state.stages.iter().map(|s| u64::from(s.inbound)).sum());
        let in_progress = self.history.as_ref().map_or(0, |h| h.in_progress() as u64);
        semconv::Active { pending, executing: in_progress.saturating_sub(pending) }
    }

    /// What names this pipeline's traces: its account's ID (from its ARN, else the account's
    /// name), region and name, and its source.
    fn trace_names(&self, scope: &Scope, pipeline: &str) -> trace::Pipeline {
        let definition = self.definition.as_ref();
        trace::Pipeline {
            account_id: self.account_id(scope),
            region: scope.region.to_string(),
            name: pipeline.to_string(),
            repository: definition.and_then(|d| d.source.0.clone()),
            branch: definition.and_then(|d| d.source.1.clone()),
        }
    }
}

impl Target for PipelineTarget {
    const KIND: &'static str = "pipeline";
    const ANNOUNCED: bool = true;
    type Info = Option<Summary>;

    /// A poll reads only the state, and publishes it; when the structure or the history is due
    /// too, it asks for a follow-up, whose calls wait behind other targets' state reads in the
    /// budget's queue (see [`crate::budget`]). So at start-up every state is published before any
    /// history is read, after N / `requests_per_second` seconds rather than three times that, and
    /// the state an event asked for reaches `/metrics` without waiting for any history.
    async fn poll(&mut self, scope: &Scope, key: &TargetKey) -> Outcome {
        let outcome = self.poll_once(scope, key).await;
        if matches!(outcome, Outcome::Gone) {
            // A deleted pipeline's figures go with it.
            self.pushed = None;
        } else if let Some(recorder) = &scope.metrics
            && let Some(history) = &self.history
        {
            let series = history.anatomy().semconv().series(&key.name, self.active_runs());
            let figures = metrics_push::Figures { account_id: self.account_id(scope), series };
            let pushed = self.pushed.get_or_insert_with(|| {
                recorder.register(metrics_push::Source {
                    account: scope.account.to_string(),
                    region: scope.region.to_string(),
                    pipeline: key.name.to_string(),
                })
            });
            pushed.update(figures);
        }
        outcome
    }

    fn follow_up(&self) -> bool {
        self.follow_up.is_some()
    }

    fn active(&self) -> bool {
        let stage_running = self.last.as_ref().is_some_and(|state| {
            state
                .stages
                .iter()
                .any(|s| s.latest.as_ref().is_some_and(|(_, status)| matches!(&**status, "InProgress" | "Stopping")))
        });
        stage_running || self.history.as_ref().is_some_and(|h| h.in_progress() > 0)
    }

    /// The pipeline's status for the status page: its stages' latest statuses, the most pressing
    /// first (a running execution, then a failure), else the status of its furthest stage that
    /// ran; `None` before the first poll or when no stage ever ran.
    fn state(&self) -> Option<String> {
        const PRESSING: [&str; 5] = ["InProgress", "Stopping", "Failed", "Stopped", "Cancelled"];
        let state = self.last.as_ref()?;
        let statuses: Vec<&str> = state.stages.iter().filter_map(|s| s.latest.as_ref().map(|l| &*l.1)).collect();
        PRESSING.iter().find(|p| statuses.contains(p)).copied().or(statuses.last().copied()).map(str::to_string)
    }

    fn render(&self, rendered: &mut Rendered, key: &TargetKey) {
        if let Some(state) = &self.last {
            render(rendered, &key.account, &key.region, &key.name, self.summary.borrow().as_ref(), state, &self.counters);
            let base = [("account", &*key.account), ("region", &*key.region), ("pipeline", &*key.name)];
            if let Some((_, Some(tags))) = &self.tags {
                let labels: Vec<(&str, &str)> = tags.values.iter().map(|(l, v)| (l.as_str(), v.as_str())).collect();
                rendered.sample_with(&PIPELINE_TAGS, &base, &labels, 1.0);
            }
            if let Some(definition) = &self.definition {
                render_definition(rendered, &key.account, &key.region, &key.name, definition);
                if let Some(history) = &self.history {
                    history.anatomy().render(rendered, &base, &definition.actions);
                    history.anatomy().semconv().render(rendered, &base, self.active_runs());
                }
            }
            if let Some(history) = &self.history {
                history.render(rendered, &base);
            }
        }
    }
}

/// Lists every pipeline of the scope, following all pages.
async fn list_pipelines(scope: &Scope) -> Result<Vec<Summary>, CallError> {
    let mut summaries = Vec::new();
    aws::for_each_page(
        |token| async move {
            let page = scope
                .call(SERVICE, "ListPipelines", || scope.codepipeline().list_pipelines().set_next_token(token).send(), &[])
                .await?;
            let next = aws::next_token(page.next_token());
            Ok((page, next))
        },
        |page, _| {
            summaries.extend(page.pipelines().iter().filter_map(|pipeline| {
                Some(Summary {
                    name: pipeline.name()?.to_string(),
                    pipeline_type: pipeline.pipeline_type().map(|t| t.as_str().to_string()).unwrap_or_else(|| "V1".into()),
                    execution_mode: pipeline
                        .execution_mode()
                        .map(|m| m.as_str().to_string())
                        .unwrap_or_else(|| "SUPERSEDED".into()),
                })
            }));
            ControlFlow::Continue(())
        },
    )
    .await?;
    Ok(summaries)
}

/// Fetches the structure of one pipeline: its version and its actions' types.
async fn get_definition(scope: &Scope, pipeline: &str) -> Result<Definition, CallError> {
    let output = scope.call(SERVICE, "GetPipeline", || scope.codepipeline().get_pipeline().name(pipeline).send(), &[]).await?;
    let declaration = output.pipeline();
    let actions = declaration
        .map(|p| p.stages())
        .unwrap_or_default()
        .iter()
        .flat_map(|stage| stage.actions().iter().map(move |action| (stage.name(), action)))
        .map(|(stage, action)| {
            let id = action.action_type_id();
            [
                intern(stage),
                intern(action.name()),
                intern(id.map(|t| t.category().as_str()).unwrap_or_default()),
                intern(id.map(|t| t.owner().as_str()).unwrap_or_default()),
                intern(id.map(|t| t.provider()).unwrap_or_default()),
            ]
        })
        .collect::<Vec<_>>();
    let actions =
        first_of_each_name(actions, |[stage, action, ..]: &[Arc<str>; 5]| (stage.clone(), action.clone())).into_boxed_slice();
    // CodeStar connections name the repository FullRepositoryId, CodeCommit RepositoryName.
    let source = declaration
        .map(|p| p.stages())
        .unwrap_or_default()
        .iter()
        .flat_map(|stage| stage.actions())
        .find(|action| action.action_type_id().is_some_and(|t| t.category().as_str() == "Source"))
        .and_then(|action| action.configuration())
        .map(|configuration| {
            let repository = configuration.get("FullRepositoryId").or_else(|| configuration.get("RepositoryName"));
            (repository.cloned(), configuration.get("BranchName").cloned())
        })
        .unwrap_or_default();
    let arn = output.metadata().and_then(|m| m.pipeline_arn()).map(str::to_string);
    let account_id = arn.as_deref().and_then(|arn| arn.split(':').nth(4)).filter(|id| !id.is_empty()).map(str::to_string);
    Ok(Definition {
        read_at: std::time::Instant::now(),
        version: declaration.and_then(|p| p.version()),
        pipeline_type: declaration.and_then(|p| p.pipeline_type()).map(|t| t.as_str().to_string()),
        account_id,
        arn,
        source,
        actions,
        polling_disabled_at: output.metadata().and_then(|m| m.polling_disabled_at()).map(DateTime::as_secs_f64),
        conditions: declaration.map(|p| p.stages()).unwrap_or_default().iter().any(|stage| {
            [
                stage.before_entry().map(|c| c.conditions()),
                stage.on_success().map(|c| c.conditions()),
                stage.on_failure().map(|c| c.conditions()),
            ]
            .into_iter()
            .flatten()
            .any(|conditions| !conditions.is_empty())
        }),
    })
}

/// Fetches the current state of one pipeline.
async fn get_state(scope: &Scope, pipeline: &str) -> Result<PipelineState, CallError> {
    let output =
        scope.call(SERVICE, "GetPipelineState", || scope.codepipeline().get_pipeline_state().name(pipeline).send(), &[]).await?;
    Ok(PipelineState::from(output))
}

impl From<GetPipelineStateOutput> for PipelineState {
    fn from(output: GetPipelineStateOutput) -> Self {
        let stages = output
            .stage_states()
            .iter()
            .map(|stage| StageState {
                name: intern(stage.stage_name().unwrap_or_default()),
                latest: stage.latest_execution().map(|e| (e.pipeline_execution_id().to_string(), intern(e.status().as_str()))),
                latest_type: stage.latest_execution().and_then(|e| e.r#type()).map(|t| intern(t.as_str())),
                inbound_status: stage.inbound_execution().map(|e| intern(e.status().as_str())),
                // QUEUED and PARALLEL pipelines list every waiting run; the others show one.
                inbound: match stage.inbound_executions().len() {
                    0 => u32::from(stage.inbound_execution().is_some()),
                    n => u32::try_from(n).unwrap_or(u32::MAX),
                },
                transition: stage
                    .inbound_transition_state()
                    .map(|t| (t.enabled(), t.last_changed_at().map(DateTime::as_secs_f64))),
                conditions: [
                    ("BeforeEntry", stage.before_entry_condition_state()),
                    ("OnSuccess", stage.on_success_condition_state()),
                    ("OnFailure", stage.on_failure_condition_state()),
                ]
                .into_iter()
                .filter_map(|(kind, state)| state.map(|state| ConditionState::from(kind, state)))
                .collect(),
                retries: stage
                    .retry_stage_metadata()
                    .map(|r| (r.auto_stage_retry_attempt().unwrap_or(0), r.manual_stage_retry_attempt().unwrap_or(0))),
                actions: stage
                    .action_states()
                    .iter()
                    .map(|action| {
                        let latest = action.latest_execution();
                        ActionState {
                            name: intern(action.action_name().unwrap_or_default()),
                            latest: latest.and_then(|e| {
                                e.status().map(|s| (e.action_execution_id().unwrap_or_default().to_string(), intern(s.as_str())))
                            }),
                            percent_complete: latest.and_then(|e| e.percent_complete()),
                            last_status_change: latest.and_then(|e| e.last_status_change()).map(DateTime::as_secs_f64),
                            revision: action.current_revision().map(|r| (r.revision_id().to_string(), r.created().as_secs_f64())),
                            error_code: latest.and_then(|e| e.error_details()).and_then(|d| d.code()).map(intern),
                        }
                    })
                    .collect(),
            })
            .map(|mut stage: StageState| {
                stage.actions = first_of_each_name(std::mem::take(&mut stage.actions), |a| a.name.clone());
                stage
            })
            .collect();
        let stages = first_of_each_name(stages, |s| s.name.clone());
        PipelineState {
            version: output.pipeline_version(),
            created: output.created().map(DateTime::as_secs_f64),
            updated: output.updated().map(DateTime::as_secs_f64),
            stages,
        }
    }
}

/// The first item of each name, in order. AWS names each stage of a pipeline and each action of
/// a stage once, but its model does not say so (its name patterns are not even anchored), and two
/// items of one name would render two series with the same name and labels, which Prometheus
/// rejects as a whole scrape.
fn first_of_each_name<T, K: Ord>(items: Vec<T>, name: impl Fn(&T) -> K) -> Vec<T> {
    let mut seen = std::collections::BTreeSet::new();
    items.into_iter().filter(|item| seen.insert(name(item))).collect()
}

/// A stage's and an action's name.
type StageAction = (Arc<str>, Arc<str>);

/// Counts each outcome once: a stage's (pipeline execution ID, final status) and an action's
/// (action execution ID, final status) are counted the first time a poll sees them, except on the
/// first poll, which only records what is there so that a restart does not replay old outcomes.
/// Actions are counted here only while the history is off: a poll sees only each action's latest
/// execution, while [`anatomy`] reads them all.
#[derive(Debug, Default)]
pub struct Counters {
    primed: bool,
    actions: bool,
    stage_seen: VecMap<Arc<str>, (String, Arc<str>)>,
    stage_counts: VecMap<(Arc<str>, Arc<str>), u64>,
    action_seen: VecMap<StageAction, (String, Arc<str>)>,
    /// By stage, action and final status.
    action_counts: VecMap<(StageAction, Arc<str>), u64>,
}

impl Counters {
    /// `actions`: whether action executions are counted from the state.
    pub fn new(actions: bool) -> Counters {
        Counters { actions, ..Counters::default() }
    }

    pub fn observe(&mut self, state: &PipelineState) {
        for stage in &state.stages {
            if let Some(latest) = &stage.latest
                && STAGE_FINAL.contains(&&*latest.1)
                && self.stage_seen.get(&stage.name) != Some(latest)
            {
                self.stage_seen.insert(stage.name.clone(), latest.clone());
                if self.primed {
                    *self.stage_counts.get_or_insert_with((stage.name.clone(), latest.1.clone()), || 0) += 1;
                }
            }
            for action in stage.actions.iter().filter(|_| self.actions) {
                let id = (stage.name.clone(), action.name.clone());
                if let Some(latest) = &action.latest
                    && ACTION_FINAL.contains(&&*latest.1)
                    && self.action_seen.get(&id) != Some(latest)
                {
                    self.action_seen.insert(id.clone(), latest.clone());
                    if self.primed {
                        *self.action_counts.get_or_insert_with((id, latest.1.clone()), || 0) += 1;
                    }
                }
            }
        }
        self.primed = true;
    }

    fn stage(&self, stage: &str, status: &str) -> u64 {
        self.stage_counts.get(&(intern(stage), intern(status))).copied().unwrap_or(0)
    }

    fn action(&self, stage: &str, action: &str, status: &str) -> u64 {
        self.action_counts.get(&((intern(stage), intern(action)), intern(status))).copied().unwrap_or(0)
    }
}

/// Renders the series of a pipeline's structure.
fn render_definition(rendered: &mut Rendered, account: &str, region: &str, pipeline: &str, definition: &Definition) {
    let base = [("account", account), ("region", region), ("pipeline", pipeline)];
    for [stage, action, category, owner, provider] in &definition.actions {
        let labels = [
            ("stage", &**stage),
            ("action", &**action),
            ("category", &**category),
            ("owner", &**owner),
            ("provider", &**provider),
        ];
        rendered.sample_with(&ACTION_INFO, &base, &labels, 1.0);
    }
    if let Some(at) = definition.polling_disabled_at {
        rendered.sample(&PIPELINE_POLLING_DISABLED, &base, at);
    }
}

/// Renders every series of one pipeline.
pub fn render(
    rendered: &mut Rendered,
    account: &str,
    region: &str,
    pipeline: &str,
    summary: Option<&Summary>,
    state: &PipelineState,
    counters: &Counters,
) {
    let base = [("account", account), ("region", region), ("pipeline", pipeline)];
    let (pipeline_type, execution_mode) =
        summary.map(|s| (s.pipeline_type.as_str(), s.execution_mode.as_str())).unwrap_or(("unknown", "unknown"));
    rendered.sample_with(&PIPELINE_INFO, &base, &[("pipeline_type", pipeline_type), ("execution_mode", execution_mode)], 1.0);
    if let Some(version) = state.version {
        rendered.sample(&PIPELINE_VERSION, &base, f64::from(version));
    }
    if let Some(created) = state.created {
        rendered.sample(&PIPELINE_CREATED, &base, created);
    }
    if let Some(updated) = state.updated {
        rendered.sample(&PIPELINE_UPDATED, &base, updated);
    }
    for stage in &state.stages {
        let stage_labels = [base[0], base[1], base[2], ("stage", &*stage.name)];
        rendered.state_set(&STAGE_STATUS, &stage_labels, StageExecutionStatus::values(), stage.latest.as_ref().map(|l| &*l.1));
        rendered.state_set(&STAGE_INBOUND_STATUS, &stage_labels, StageExecutionStatus::values(), stage.inbound_status.as_deref());
        rendered.sample(&STAGE_INBOUND_EXECUTIONS, &stage_labels, f64::from(stage.inbound));
        if let Some((enabled, changed)) = stage.transition {
            rendered.sample(&STAGE_TRANSITION_ENABLED, &stage_labels, if enabled { 1.0 } else { 0.0 });
            if let Some(changed) = changed {
                rendered.sample(&STAGE_TRANSITION_LAST_CHANGED, &stage_labels, changed);
            }
        }
        for status in STAGE_FINAL {
            rendered.sample_with(
                &STAGE_EXECUTIONS,
                &stage_labels,
                &[("status", status)],
                counters.stage(&stage.name, status) as f64,
            );
        }
        for condition in &stage.conditions {
            let labels = [base[0], base[1], base[2], stage_labels[3], ("condition_type", condition.condition_type)];
            rendered.state_set(&STAGE_CONDITION_STATUS, &labels, ConditionExecutionStatus::values(), condition.status.as_deref());
            for (rule, status) in &condition.rules {
                let labels = [labels[0], labels[1], labels[2], labels[3], labels[4], ("rule", &**rule)];
                rendered.state_set(&STAGE_RULE_STATUS, &labels, RuleExecutionStatus::values(), status.as_deref());
            }
        }
        if let Some((automated, manual)) = stage.retries {
            for (trigger, attempts) in [("AutomatedStageRetry", automated), ("ManualStageRetry", manual)] {
                rendered.sample_with(&STAGE_RETRY_ATTEMPT, &stage_labels, &[("trigger", trigger)], f64::from(attempts));
            }
        }
        if let Some(kind) = &stage.latest_type {
            rendered.sample(&STAGE_ROLLBACK, &stage_labels, if &**kind == "ROLLBACK" { 1.0 } else { 0.0 });
        }
        for action in &stage.actions {
            let action_labels = [base[0], base[1], base[2], stage_labels[3], ("action", &*action.name)];
            rendered.state_set(
                &ACTION_STATUS,
                &action_labels,
                ActionExecutionStatus::values(),
                action.latest.as_ref().map(|l| &*l.1),
            );
            if let Some(percent) = action.percent_complete {
                rendered.sample(&ACTION_COMPLETION_RATIO, &action_labels, f64::from(percent.clamp(0, 100)) / 100.0);
            }
            if let Some(changed) = action.last_status_change {
                rendered.sample(&ACTION_LAST_STATUS_CHANGE, &action_labels, changed);
            }
            if let Some((revision_id, created)) = &action.revision {
                rendered.sample_with(&ACTION_REVISION_INFO, &action_labels, &[("revision_id", revision_id)], 1.0);
                rendered.sample(&ACTION_REVISION_CREATED, &action_labels, *created);
            }
            if let Some(code) = &action.error_code {
                rendered.sample_with(&ACTION_ERROR_INFO, &action_labels, &[("code", code)], 1.0);
            }
            for status in ACTION_FINAL.iter().filter(|_| counters.actions) {
                let count = counters.action(&stage.name, &action.name, status) as f64;
                rendered.sample_with(&ACTION_EXECUTIONS, &action_labels, &[("status", status)], count);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(stage_latest: (&str, &str)) -> PipelineState {
        PipelineState {
            stages: vec![StageState {
                name: "Build".into(),
                latest: Some((stage_latest.0.into(), stage_latest.1.into())),
                ..StageState::default()
            }],
            ..PipelineState::default()
        }
    }

    #[test]
    fn counts_each_outcome_once_and_not_on_the_first_poll() {
        let mut counters = Counters::default();
        counters.observe(&state(("e1", "Failed")));
        assert_eq!(counters.stage("Build", "Failed"), 0);
        counters.observe(&state(("e2", "InProgress")));
        counters.observe(&state(("e2", "Failed")));
        counters.observe(&state(("e2", "Failed")));
        assert_eq!(counters.stage("Build", "Failed"), 1);
        counters.observe(&state(("e2", "Succeeded")));
        assert_eq!(counters.stage("Build", "Succeeded"), 1);
    }
}
