//! The CodeConnections collector: CloudFormation Git sync status of repository links, branches and
//! stacks, as metric series.
//!
//! Every `aws_codeconnections_*` family of Git sync is defined here, next to the code that fills
//! it; connection, host and sync blocker status are in [`health`].
//! Discovery lists repository links and their sync configurations; each sync configuration is a
//! repository sync target (GetRepositorySyncStatus) and its stack a resource sync target
//! (GetResourceSyncStatus). A branch or stack that never synced answers ResourceNotFoundException:
//! that is a target with no attempt yet, not an error.

pub mod health;
pub mod settings;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::ControlFlow;

use aws_sdk_codeconnections::types::{RepositorySyncStatus, ResourceSyncStatus, SyncConfigurationType};
use tokio::sync::watch;

use crate::aws::{self, CallError, Scope};
use crate::collector::{self, Round, Targets};
use crate::exposition::{Family, Kind, Rendered};
use crate::signal::{self, Route};
use crate::target::{Outcome, Target, TargetKey};
use health::{ALL, ConnectionsTarget, HostsTarget, SyncBlockerTarget};
pub use settings::{RepositorySync, Settings};

pub const SERVICE: &str = "codeconnections";

pub static REPOSITORY_LINK_INFO: Family = Family {
    name: "aws_codeconnections_repository_link_info",
    help: "A repository link of CodeConnections; repository is OwnerId/RepositoryName.",
    kind: Kind::Gauge,
};
pub static SYNC_CONFIGURATION_INFO: Family = Family {
    name: "aws_codeconnections_sync_configuration_info",
    help: "A sync configuration: which branch of which repository syncs which resource.",
    kind: Kind::Gauge,
};
pub static REPOSITORY_SYNC_STATUS: Family = Family {
    name: "aws_codeconnections_repository_sync_status",
    help: "Status of the latest repository sync attempt: 1 for the current status, all 0 when the branch never synced.",
    kind: Kind::Gauge,
};
pub static REPOSITORY_SYNC_STARTED: Family = Family {
    name: "aws_codeconnections_repository_sync_started_timestamp_seconds",
    help: "When the latest repository sync attempt started, in seconds since the epoch.",
    kind: Kind::Gauge,
};
pub static REPOSITORY_SYNC_LAST_EVENT: Family = Family {
    name: "aws_codeconnections_repository_sync_last_event_timestamp_seconds",
    help: "Time of the newest event of the latest repository sync attempt, in seconds since the epoch.",
    kind: Kind::Gauge,
};
pub static REPOSITORY_SYNC_ATTEMPTS: Family = Family {
    name: "aws_codeconnections_repository_sync_attempts_total",
    help: "Repository sync attempts seen reaching SUCCEEDED or FAILED since the exporter started.",
    kind: Kind::Counter,
};
pub static REPOSITORY_SYNC_EVENTS: Family = Family {
    name: "aws_codeconnections_repository_sync_events_total",
    help: "Repository sync events first seen since the exporter started, by event type.",
    kind: Kind::Counter,
};
pub static RESOURCE_SYNC_STATUS: Family = Family {
    name: "aws_codeconnections_resource_sync_status",
    help: "Status of the latest sync attempt of the resource: 1 for the current status, all 0 when it never synced.",
    kind: Kind::Gauge,
};
pub static RESOURCE_SYNC_STARTED: Family = Family {
    name: "aws_codeconnections_resource_sync_started_timestamp_seconds",
    help: "When the latest sync attempt of the resource started, in seconds since the epoch.",
    kind: Kind::Gauge,
};
pub static RESOURCE_SYNC_LAST_SUCCESS: Family = Family {
    name: "aws_codeconnections_resource_sync_last_success_timestamp_seconds",
    help: "When the latest successful sync attempt of the resource started, in seconds since the epoch.",
    kind: Kind::Gauge,
};
pub static RESOURCE_SYNC_BEHIND: Family = Family {
    name: "aws_codeconnections_resource_sync_behind",
    help: "1 while the desired commit of the resource differs from the commit its latest successful sync deployed, 0 when they match; absent before a successful sync.",
    kind: Kind::Gauge,
};
pub static RESOURCE_SYNC_ATTEMPTS: Family = Family {
    name: "aws_codeconnections_resource_sync_attempts_total",
    help: "Sync attempts of the resource seen reaching SUCCEEDED or FAILED since the exporter started.",
    kind: Kind::Counter,
};

/// The state the status page shows for a branch or stack that never synced.
const NEVER_SYNCED: &str = "NEVER_SYNCED";

/// Event types that keep their name in `type`, per repository sync; later ones count as `other`.
const EVENT_TYPES_NAMED: usize = 16;
/// The longest event type that keeps its name.
const EVENT_TYPE_MAX_LEN: usize = 32;
/// The `type` of every event whose type is not named.
const OTHER_EVENT_TYPE: &str = "other";

/// Statuses after which a repository or resource sync attempt is counted.
const ATTEMPT_FINAL: [&str; 2] = ["FAILED", "SUCCEEDED"];

/// A repository link, as ListRepositoryLinks describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub id: String,
    /// `OwnerId/RepositoryName`.
    pub repository: String,
    pub provider_type: String,
    pub connection_arn: String,
}

/// A sync configuration, as ListSyncConfigurations describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncConfiguration {
    pub repository_link_id: String,
    pub repository: String,
    pub branch: String,
    pub sync_type: String,
    pub resource_name: String,
    pub config_file: String,
}

/// What discovery found in one account and region.
#[derive(Debug, Default)]
pub struct Discovered {
    pub links: Vec<Link>,
    pub configurations: Vec<SyncConfiguration>,
}

/// Lists every repository link and, for each, its sync configurations of every sync type the SDK
/// knows, following all pages.
async fn discover(scope: &Scope) -> Result<Discovered, CallError> {
    let mut discovered = Discovered::default();
    aws::for_each_page(
        |token| async move {
            let request = scope.codeconnections().list_repository_links().set_next_token(token);
            let page = scope.call(SERVICE, "ListRepositoryLinks", || request.send(), &[]).await?;
            let next = aws::next_token(page.next_token());
            Ok((page, next))
        },
        |page, _| {
            discovered.links.extend(page.repository_links().iter().map(|link| Link {
                id: link.repository_link_id().to_string(),
                repository: format!("{}/{}", link.owner_id(), link.repository_name()),
                provider_type: link.provider_type().as_str().to_string(),
                connection_arn: link.connection_arn().to_string(),
            }));
            ControlFlow::Continue(())
        },
    )
    .await?;
    discovered.links = health::first_of_each(std::mem::take(&mut discovered.links), |link| link.id.clone());
    for link in &discovered.links {
        for sync_type in SyncConfigurationType::values() {
            aws::for_each_page(
                |token| async move {
                    let request = scope
                        .codeconnections()
                        .list_sync_configurations()
                        .repository_link_id(&link.id)
                        .sync_type(SyncConfigurationType::from(*sync_type))
                        .set_next_token(token);
                    let page = scope.call(SERVICE, "ListSyncConfigurations", || request.send(), &[]).await?;
                    let next = aws::next_token(page.next_token());
                    Ok((page, next))
                },
                |page, _| {
                    discovered.configurations.extend(page.sync_configurations().iter().map(|configuration| SyncConfiguration {
                        repository_link_id: configuration.repository_link_id().to_string(),
                        repository: format!("{}/{}", configuration.owner_id(), configuration.repository_name()),
                        branch: configuration.branch().to_string(),
                        sync_type: configuration.sync_type().as_str().to_string(),
                        resource_name: configuration.resource_name().to_string(),
                        config_file: configuration.config_file().unwrap_or_default().to_string(),
                    }));
                    ControlFlow::Continue(())
                },
            )
            .await?;
        }
    }
    Ok(discovered)
}

/// The `source` of Git sync's EventBridge events, and their types.
const EVENT_SOURCE: &str = "aws.codeconnections";
const REPOSITORY_SYNC_EVENT: &str = "Git Sync Repository Sync Status Change";
const RESOURCE_SYNC_EVENT: &str = "Git Sync Resource Sync Status Change";
/// The sync type of events that name none: the only one there is.
const DEFAULT_SYNC_TYPE: &str = "CFN_STACK_SYNC";

/// A stack's name from an event's `syncTarget`, which gives the name or the stack's ARN
/// (`arn:aws:cloudformation:REGION:ACCOUNT:stack/NAME/ID`).
fn stack_name(sync_target: &str) -> &str {
    match sync_target.split_once(":stack/") {
        Some((_, rest)) => rest.split('/').next().unwrap_or(rest),
        None => sync_target,
    }
}

/// Discovers the repository links and sync configurations of one account and region and keeps one
/// polling task for each repository sync and each resource, plus the configured repository syncs.
pub struct Collector {
    settings: Settings,
    /// The links of the last successful discovery, kept when a later one fails.
    links: Vec<Link>,
    repositories: Targets<RepositorySyncTarget>,
    resources: Targets<ResourceSyncTarget>,
    blockers: Targets<SyncBlockerTarget>,
    connections: Targets<ConnectionsTarget>,
    hosts: Targets<HostsTarget>,
}

impl collector::Collector for Collector {
    const SERVICE: &'static str = SERVICE;
    type Settings = Settings;

    fn new(settings: Settings) -> Collector {
        Collector {
            settings,
            links: Vec::new(),
            repositories: Targets::default(),
            resources: Targets::default(),
            blockers: Targets::default(),
            connections: Targets::default(),
            hosts: Targets::default(),
        }
    }

    /// A repository sync's change names its repository sync target; a resource's change names its
    /// resource sync and its blockers, which a failed sync creates.
    fn route(settings: &Settings, event: &signal::Event) -> Option<Route> {
        if event.source != EVENT_SOURCE {
            return None;
        }
        let sync_type = event.detail("syncType").unwrap_or(DEFAULT_SYNC_TYPE);
        let configured = |matches: &dyn Fn(&RepositorySync) -> bool| {
            settings.discover || settings.repository_syncs.iter().any(|sync| sync.sync_type == sync_type && matches(sync))
        };
        match event.detail_type.as_str() {
            REPOSITORY_SYNC_EVENT => {
                let (Some(link), Some(branch)) = (event.detail("repositoryLinkId"), event.detail("branch")) else {
                    return Some(Route::Targets(Vec::new()));
                };
                if !configured(&|sync| sync.repository_link_id == link && sync.branch == branch) {
                    return Some(Route::NotSelected);
                }
                Some(Route::Targets(vec![(RepositorySyncTarget::KIND, format!("{link}/{branch}/{sync_type}"))]))
            }
            RESOURCE_SYNC_EVENT => {
                let Some(stack) = event.detail("syncTarget").map(stack_name) else {
                    return Some(Route::Targets(Vec::new()));
                };
                let name = ResourceSyncInfo { resource_name: stack.to_string(), sync_type: sync_type.to_string() }.target_name();
                let kinds = [(settings.resource_syncs, ResourceSyncTarget::KIND), (settings.blockers, SyncBlockerTarget::KIND)];
                let targets: Vec<(&'static str, String)> =
                    kinds.iter().filter(|(on, _)| *on).map(|(_, kind)| (*kind, name.clone())).collect();
                if targets.is_empty() || !configured(&|sync| sync.resource_name.as_deref() == Some(stack)) {
                    return Some(Route::NotSelected);
                }
                Some(Route::Targets(targets))
            }
            _ => None,
        }
    }

    async fn discover(&mut self, round: &mut Round) {
        let mut configurations = Vec::new();
        let mut complete = true;
        if self.settings.discover {
            let outcome = match discover(round.scope()).await {
                Ok(found) => {
                    self.links = found.links;
                    configurations = found.configurations;
                    Ok(())
                }
                Err(err) => {
                    complete = false;
                    Err(err)
                }
            };
            let mut rendered = round.rendered();
            render_links(&mut rendered, round.scope(), &self.links);
            round.publish(outcome.as_ref().map(|_| ()), rendered);
        }
        let (repositories, stacks) = desired(&self.settings, &self.links, configurations);
        let resources = if self.settings.resource_syncs { stacks.clone() } else { HashMap::new() };
        let blockers = if self.settings.blockers { stacks } else { HashMap::new() };
        round.reconcile(&mut self.repositories, repositories, complete, |_, info| RepositorySyncTarget::new(info)).await;
        round.reconcile(&mut self.resources, resources, complete, |_, info| ResourceSyncTarget::new(info)).await;
        round.reconcile(&mut self.blockers, blockers, complete, |_, info| SyncBlockerTarget::new(info)).await;
        // The connection and host lists do not depend on what discovery found: one target each,
        // polled every interval.
        let lists = if self.settings.connections { HashMap::from([(ALL.to_string(), ())]) } else { HashMap::new() };
        round.reconcile(&mut self.connections, lists.clone(), true, |_, _| ConnectionsTarget::default()).await;
        round.reconcile(&mut self.hosts, lists, true, |_, _| HostsTarget::default()).await;
    }
}

/// The repository syncs and the synced resources (stacks), by target name: the configured ones,
/// then the discovered ones, which replace a configured one of the same name with what AWS says
/// of it.
fn desired(
    settings: &Settings,
    links: &[Link],
    configurations: Vec<SyncConfiguration>,
) -> (HashMap<String, RepositorySyncInfo>, HashMap<String, ResourceSyncInfo>) {
    let repository_of = |link_id: &str| {
        links.iter().find(|link| link.id == link_id).map(|link| link.repository.clone()).unwrap_or_else(|| "unknown".into())
    };
    let mut repositories = HashMap::new();
    let mut resources = HashMap::new();
    for sync in &settings.repository_syncs {
        let info = RepositorySyncInfo {
            repository_link_id: sync.repository_link_id.clone(),
            branch: sync.branch.clone(),
            sync_type: sync.sync_type.clone(),
            repository: repository_of(&sync.repository_link_id),
            configuration: None,
        };
        repositories.insert(info.target_name(), info);
        if let Some(resource) = &sync.resource_name {
            let info = ResourceSyncInfo { resource_name: resource.clone(), sync_type: sync.sync_type.clone() };
            resources.insert(info.target_name(), info);
        }
    }
    for configuration in configurations {
        let info =
            ResourceSyncInfo { resource_name: configuration.resource_name.clone(), sync_type: configuration.sync_type.clone() };
        resources.insert(info.target_name(), info);
        let info = RepositorySyncInfo {
            repository_link_id: configuration.repository_link_id.clone(),
            branch: configuration.branch.clone(),
            sync_type: configuration.sync_type.clone(),
            repository: configuration.repository.clone(),
            configuration: Some(configuration),
        };
        repositories.insert(info.target_name(), info);
    }
    (repositories, resources)
}

/// Renders the info series of every repository link, for the discovery target.
fn render_links(rendered: &mut Rendered, scope: &Scope, links: &[Link]) {
    for link in links {
        rendered.sample(
            &REPOSITORY_LINK_INFO,
            &[
                ("account", &scope.account),
                ("region", &scope.region),
                ("repository_link_id", &link.id),
                ("repository", &link.repository),
                ("provider_type", &link.provider_type),
                ("connection_arn", &link.connection_arn),
            ],
            1.0,
        );
    }
}

/// The latest attempt of one repository sync, reduced to what the metrics need.
#[derive(Debug, Clone, PartialEq)]
pub struct RepositorySyncState {
    pub started_at: f64,
    pub status: String,
    pub events: Vec<Event>,
}

/// One sync event; all four fields together identify it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Event {
    /// Milliseconds since the epoch, so that the event can be hashed.
    pub time_millis: i64,
    pub kind: String,
    pub external_id: String,
    pub event: String,
}

/// What the scheduler knows of a repository sync target besides its key: the sync configuration,
/// when discovery found it, and the repository of its link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepositorySyncInfo {
    pub repository_link_id: String,
    pub branch: String,
    pub sync_type: String,
    pub repository: String,
    pub configuration: Option<SyncConfiguration>,
}

impl RepositorySyncInfo {
    /// The target's `name` label: `<repository link ID>/<branch>/<sync type>`.
    pub fn target_name(&self) -> String {
        format!("{}/{}/{}", self.repository_link_id, self.branch, self.sync_type)
    }
}

/// Counts the latest attempt of a repository sync or a resource once by its final status, when it
/// reaches one. AWS gives only the latest attempt, so one that starts and ends between two polls
/// is counted whole, and one overtaken by the next between two polls is missed.
#[derive(Debug, Default)]
struct AttemptCounter {
    /// The attempt (start in milliseconds, final status) counted last.
    counted: Option<(i64, String)>,
    counts: BTreeMap<String, u64>,
}

impl AttemptCounter {
    /// `primed` is false on the first poll, which only records the attempt there so that a restart
    /// does not replay old failures.
    fn observe(&mut self, started_at: f64, status: &str, primed: bool) {
        let attempt = ((started_at * 1000.0) as i64, status.to_string());
        if ATTEMPT_FINAL.contains(&status) && self.counted.as_ref() != Some(&attempt) {
            if primed {
                *self.counts.entry(attempt.1.clone()).or_default() += 1;
            }
            self.counted = Some(attempt);
        }
    }

    /// Both final statuses, at 0 until counted, so that `increase()` sees the first attempt.
    fn render(&self, rendered: &mut Rendered, family: &'static Family, labels: &[(&str, &str)]) {
        for status in ATTEMPT_FINAL {
            let count = self.counts.get(status).copied().unwrap_or(0);
            rendered.sample_with(family, labels, &[("status", status)], count as f64);
        }
    }
}

/// Counts each attempt's outcome and each event once, except on the first poll, which only records
/// what is there so that a restart does not replay old failures.
#[derive(Debug, Default)]
struct SyncCounters {
    primed: bool,
    attempts: AttemptCounter,
    /// The events already seen of the current attempt; older attempts' events are not returned again.
    seen_attempt: Option<i64>,
    seen_events: HashSet<Event>,
    events: BTreeMap<String, u64>,
}

impl SyncCounters {
    /// Takes one answer: the branch's latest attempt, or `None` when it never synced, which primes
    /// the counters as much as an attempt does, so that the branch's first sync is counted.
    fn observe(&mut self, state: Option<&RepositorySyncState>) {
        if let Some(state) = state {
            self.attempts.observe(state.started_at, &state.status, self.primed);
            let started = (state.started_at * 1000.0) as i64;
            if self.seen_attempt != Some(started) {
                self.seen_attempt = Some(started);
                self.seen_events.clear();
            }
            for event in &state.events {
                if self.seen_events.insert(event.clone()) && self.primed {
                    let kind = self.event_type(&event.kind).to_string();
                    *self.events.entry(kind).or_default() += 1;
                }
            }
        }
        self.primed = true;
    }

    /// The `type` label of an event. AWS's model makes the type a free string and documents no
    /// values, so only a type shaped like an enum token (upper-case letters, digits and `_`, at
    /// most 32 characters) keeps its name, and only the first 16 of them: anything else is
    /// `other`, so that a sync has at most 17 series of events.
    fn event_type<'a>(&self, kind: &'a str) -> &'a str {
        let token = !kind.is_empty()
            && kind.len() <= EVENT_TYPE_MAX_LEN
            && kind.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
        let named = self.events.len() - usize::from(self.events.contains_key(OTHER_EVENT_TYPE));
        if token && (self.events.contains_key(kind) || named < EVENT_TYPES_NAMED) { kind } else { OTHER_EVENT_TYPE }
    }
}

/// One repository sync (a branch of a repository link) as the scheduler polls it.
pub struct RepositorySyncTarget {
    info: watch::Receiver<RepositorySyncInfo>,
    counters: SyncCounters,
    /// `Some(None)` once AWS said the branch never synced.
    last: Option<Option<RepositorySyncState>>,
}

impl RepositorySyncTarget {
    pub fn new(info: watch::Receiver<RepositorySyncInfo>) -> RepositorySyncTarget {
        RepositorySyncTarget { info, counters: SyncCounters::default(), last: None }
    }
}

impl Target for RepositorySyncTarget {
    const KIND: &'static str = "repository_sync";
    const ANNOUNCED: bool = true;
    type Info = RepositorySyncInfo;

    async fn poll(&mut self, scope: &Scope, _: &TargetKey) -> Outcome {
        let info = self.info.borrow().clone();
        let request = scope
            .codeconnections()
            .get_repository_sync_status()
            .repository_link_id(&info.repository_link_id)
            .branch(&info.branch)
            .sync_type(SyncConfigurationType::from(info.sync_type.as_str()));
        match scope.call(SERVICE, "GetRepositorySyncStatus", || request.send(), &["ResourceNotFoundException"]).await {
            Ok(output) => {
                let state = output.latest_sync().map(|attempt| RepositorySyncState {
                    started_at: attempt.started_at().as_secs_f64(),
                    status: attempt.status().as_str().to_string(),
                    events: attempt
                        .events()
                        .iter()
                        .map(|e| Event {
                            time_millis: e.time().to_millis().unwrap_or(0),
                            kind: e.r#type().to_string(),
                            external_id: e.external_id().unwrap_or_default().to_string(),
                            event: e.event().to_string(),
                        })
                        .collect(),
                });
                self.counters.observe(state.as_ref());
                self.last = Some(state);
                Outcome::Polled
            }
            Err(err) if err.code == "ResourceNotFoundException" => {
                self.counters.observe(None);
                self.last = Some(None);
                Outcome::Polled
            }
            Err(err) => Outcome::Failed(err),
        }
    }

    fn active(&self) -> bool {
        matches!(&self.last, Some(Some(state)) if matches!(state.status.as_str(), "INITIATED" | "IN_PROGRESS" | "QUEUED"))
    }

    fn state(&self) -> Option<String> {
        self.last.as_ref().map(|last| last.as_ref().map_or_else(|| NEVER_SYNCED.to_string(), |s| s.status.clone()))
    }

    fn render(&self, rendered: &mut Rendered, key: &TargetKey) {
        let info = self.info.borrow();
        let labels = [
            ("account", &*key.account),
            ("region", &*key.region),
            ("repository_link_id", info.repository_link_id.as_str()),
            ("repository", info.repository.as_str()),
            ("branch", info.branch.as_str()),
            ("sync_type", info.sync_type.as_str()),
        ];
        if let Some(configuration) = &info.configuration {
            let extra = [("resource_name", configuration.resource_name.as_str()), ("config_file", &configuration.config_file)];
            rendered.sample_with(&SYNC_CONFIGURATION_INFO, &labels, &extra, 1.0);
        }
        let Some(last) = &self.last else { return };
        rendered.state_set(
            &REPOSITORY_SYNC_STATUS,
            &labels,
            RepositorySyncStatus::values(),
            last.as_ref().map(|s| s.status.as_str()),
        );
        if let Some(state) = last {
            rendered.sample(&REPOSITORY_SYNC_STARTED, &labels, state.started_at);
            if let Some(newest) = state.events.iter().map(|e| e.time_millis).max() {
                rendered.sample(&REPOSITORY_SYNC_LAST_EVENT, &labels, newest as f64 / 1000.0);
            }
        }
        self.counters.attempts.render(rendered, &REPOSITORY_SYNC_ATTEMPTS, &labels);
        for (kind, count) in &self.counters.events {
            rendered.sample_with(&REPOSITORY_SYNC_EVENTS, &labels, &[("type", kind)], *count as f64);
        }
    }
}

/// What GetResourceSyncStatus says of one resource.
#[derive(Debug, Clone, PartialEq)]
pub struct ResourceSyncState {
    pub status: String,
    pub started_at: f64,
    pub last_success: Option<f64>,
    /// Whether the desired commit differs from the one the latest successful sync deployed;
    /// `None` until a sync succeeded (or when AWS leaves either commit out).
    pub behind: Option<bool>,
}

/// The resource and sync type of a resource sync target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceSyncInfo {
    pub resource_name: String,
    pub sync_type: String,
}

impl ResourceSyncInfo {
    /// The target's `name` label: `<resource name>/<sync type>`.
    pub fn target_name(&self) -> String {
        format!("{}/{}", self.resource_name, self.sync_type)
    }

    /// The labels of the resource's series, its sync status and its blockers alike.
    pub fn labels<'a>(&'a self, key: &'a TargetKey) -> [(&'static str, &'a str); 4] {
        [
            ("account", &key.account),
            ("region", &key.region),
            ("resource_name", &self.resource_name),
            ("sync_type", &self.sync_type),
        ]
    }
}

/// One resource (stack) as the scheduler polls it.
pub struct ResourceSyncTarget {
    info: watch::Receiver<ResourceSyncInfo>,
    /// `Some(None)` once AWS said the resource never synced.
    last: Option<Option<ResourceSyncState>>,
    /// The stack's deployments by outcome.
    attempts: AttemptCounter,
}

impl ResourceSyncTarget {
    pub fn new(info: watch::Receiver<ResourceSyncInfo>) -> ResourceSyncTarget {
        ResourceSyncTarget { info, last: None, attempts: AttemptCounter::default() }
    }

    /// Records an answer: a stack that never synced primes the counter as much as one that did, so
    /// that its first attempt is counted.
    fn answered(&mut self, state: Option<ResourceSyncState>) {
        if let Some(state) = &state {
            self.attempts.observe(state.started_at, &state.status, self.last.is_some());
        }
        self.last = Some(state);
    }
}

impl Target for ResourceSyncTarget {
    const KIND: &'static str = "resource_sync";
    const ANNOUNCED: bool = true;
    type Info = ResourceSyncInfo;

    async fn poll(&mut self, scope: &Scope, _: &TargetKey) -> Outcome {
        let info = self.info.borrow().clone();
        let request = scope
            .codeconnections()
            .get_resource_sync_status()
            .resource_name(&info.resource_name)
            .sync_type(SyncConfigurationType::from(info.sync_type.as_str()));
        match scope.call(SERVICE, "GetResourceSyncStatus", || request.send(), &["ResourceNotFoundException"]).await {
            Ok(output) => {
                let desired = output.desired_state().map(|revision| revision.sha());
                let deployed =
                    output.latest_successful_sync().and_then(|success| success.target_revision()).map(|revision| revision.sha());
                let state = output.latest_sync().map(|latest| ResourceSyncState {
                    status: latest.status().as_str().to_string(),
                    started_at: latest.started_at().as_secs_f64(),
                    last_success: output.latest_successful_sync().map(|s| s.started_at().as_secs_f64()),
                    behind: desired.zip(deployed).map(|(desired, deployed)| desired != deployed),
                });
                self.answered(state);
                Outcome::Polled
            }
            Err(err) if err.code == "ResourceNotFoundException" => {
                self.answered(None);
                Outcome::Polled
            }
            Err(err) => Outcome::Failed(err),
        }
    }

    fn active(&self) -> bool {
        matches!(&self.last, Some(Some(state)) if matches!(state.status.as_str(), "INITIATED" | "IN_PROGRESS"))
    }

    fn state(&self) -> Option<String> {
        self.last.as_ref().map(|last| last.as_ref().map_or_else(|| NEVER_SYNCED.to_string(), |s| s.status.clone()))
    }

    fn render(&self, rendered: &mut Rendered, key: &TargetKey) {
        let Some(last) = &self.last else { return };
        let info = self.info.borrow();
        let labels = info.labels(key);
        rendered.state_set(
            &RESOURCE_SYNC_STATUS,
            &labels,
            ResourceSyncStatus::values(),
            last.as_ref().map(|s| s.status.as_str()),
        );
        if let Some(state) = last {
            rendered.sample(&RESOURCE_SYNC_STARTED, &labels, state.started_at);
            if let Some(at) = state.last_success {
                rendered.sample(&RESOURCE_SYNC_LAST_SUCCESS, &labels, at);
            }
            if let Some(behind) = state.behind {
                rendered.sample(&RESOURCE_SYNC_BEHIND, &labels, if behind { 1.0 } else { 0.0 });
            }
        }
        self.attempts.render(rendered, &RESOURCE_SYNC_ATTEMPTS, &labels);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(started_at: f64, status: &str, events: &[(i64, &str)]) -> RepositorySyncState {
        RepositorySyncState {
            started_at,
            status: status.into(),
            events: events
                .iter()
                .map(|(time_millis, kind)| Event {
                    time_millis: *time_millis,
                    kind: kind.to_string(),
                    external_id: String::new(),
                    event: String::new(),
                })
                .collect(),
        }
    }

    fn counts(map: &BTreeMap<String, u64>) -> Vec<(&str, u64)> {
        map.iter().map(|(k, v)| (k.as_str(), *v)).collect()
    }

    #[test]
    fn sync_counters_count_each_outcome_and_event_once_and_not_on_the_first_poll() {
        let mut counters = SyncCounters::default();
        // What is there when the exporter starts is history: recorded, not counted.
        counters.observe(Some(&state(100.0, "FAILED", &[(100_500, "INFO"), (101_000, "ERROR")])));
        counters.observe(Some(&state(100.0, "FAILED", &[(100_500, "INFO"), (101_000, "ERROR")])));
        assert!(counters.attempts.counts.is_empty() && counters.events.is_empty());

        // A new attempt: its events are counted as they appear, its outcome once it is final.
        counters.observe(Some(&state(200.0, "IN_PROGRESS", &[(200_500, "INFO")])));
        assert_eq!(counts(&counters.events), [("INFO", 1)]);
        assert!(counters.attempts.counts.is_empty());
        counters.observe(Some(&state(200.0, "FAILED", &[(200_500, "INFO"), (201_000, "ERROR")])));
        counters.observe(Some(&state(200.0, "FAILED", &[(200_500, "INFO"), (201_000, "ERROR")])));
        assert_eq!(counts(&counters.attempts.counts), [("FAILED", 1)]);
        assert_eq!(counts(&counters.events), [("ERROR", 1), ("INFO", 1)]);

        // An attempt that started and finished between two polls is counted whole.
        counters.observe(Some(&state(300.0, "SUCCEEDED", &[(300_500, "INFO"), (301_000, "INFO")])));
        assert_eq!(counts(&counters.attempts.counts), [("FAILED", 1), ("SUCCEEDED", 1)]);
        assert_eq!(counts(&counters.events), [("ERROR", 1), ("INFO", 3)]);

        // The same attempt retried to another final status counts that status too.
        counters.observe(Some(&state(300.0, "FAILED", &[(300_500, "INFO"), (301_000, "INFO")])));
        assert_eq!(counts(&counters.attempts.counts), [("FAILED", 2), ("SUCCEEDED", 1)]);
    }

    #[test]
    fn event_types_keep_their_name_when_shaped_like_tokens_and_only_the_first_16() {
        let mut counters = SyncCounters::default();
        counters.observe(None);
        let token_32 = "A".repeat(32);
        let token_33 = "A".repeat(33);
        let mut events: Vec<(i64, &str)> =
            vec![(1, "INFO"), (2, "Fetching changes from the repository"), (3, ""), (4, "error"), (5, &token_33), (6, &token_32)];
        let tokens: Vec<String> = (0..20).map(|n| format!("TYPE_{n:02}")).collect();
        events.extend(tokens.iter().enumerate().map(|(n, kind)| (100 + n as i64, kind.as_str())));
        // A type already named keeps its name after the 16 are taken.
        events.push((200, "INFO"));
        counters.observe(Some(&state(100.0, "IN_PROGRESS", &events)));
        let mut expected: Vec<(&str, u64)> = vec![("INFO", 2), (&token_32, 1)];
        expected.extend(tokens[..14].iter().map(|kind| (kind.as_str(), 1)));
        // Free text, an empty type, lower case, 33 characters, and the tokens after the 16th.
        expected.push(("other", 4 + 6));
        expected.sort();
        assert_eq!(counts(&counters.events), expected);
    }

    #[test]
    fn the_first_sync_of_a_branch_that_never_synced_is_counted() {
        let mut counters = SyncCounters::default();
        counters.observe(None);
        counters.observe(Some(&state(100.0, "SUCCEEDED", &[(100_500, "INFO")])));
        assert_eq!(counts(&counters.attempts.counts), [("SUCCEEDED", 1)]);
        assert_eq!(counts(&counters.events), [("INFO", 1)]);
    }

    #[test]
    fn discovered_configurations_replace_configured_ones_of_the_same_name() {
        let settings = Settings {
            discover: true,
            repository_syncs: vec![
                RepositorySync {
                    repository_link_id: "l1".into(),
                    branch: "main".into(),
                    sync_type: "CFN_STACK_SYNC".into(),
                    resource_name: Some("stack-a".into()),
                },
                RepositorySync {
                    repository_link_id: "l9".into(),
                    branch: "dev".into(),
                    sync_type: "CFN_STACK_SYNC".into(),
                    resource_name: None,
                },
            ],
            resource_syncs: true,
            connections: true,
            blockers: true,
            enabled: true,
            regions: None,
        };
        let links = [Link {
            id: "l1".into(),
            repository: "acme/infra".into(),
            provider_type: "GitHub".into(),
            connection_arn: "c".into(),
        }];
        let found = SyncConfiguration {
            repository_link_id: "l1".into(),
            repository: "acme/infra".into(),
            branch: "main".into(),
            sync_type: "CFN_STACK_SYNC".into(),
            resource_name: "stack-b".into(),
            config_file: "stack.yaml".into(),
        };
        let (repositories, resources) = desired(&settings, &links, vec![found.clone()]);
        let mut names: Vec<&String> = repositories.keys().collect();
        names.sort();
        assert_eq!(names, ["l1/main/CFN_STACK_SYNC", "l9/dev/CFN_STACK_SYNC"]);
        assert_eq!(repositories["l1/main/CFN_STACK_SYNC"].configuration, Some(found));
        assert_eq!(repositories["l9/dev/CFN_STACK_SYNC"].repository, "unknown", "a link discovery did not find");
        let mut names: Vec<&String> = resources.keys().collect();
        names.sort();
        assert_eq!(names, ["stack-a/CFN_STACK_SYNC", "stack-b/CFN_STACK_SYNC"]);
    }
}
