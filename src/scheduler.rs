//! The scheduler: discovery and polling on the exporter's own timers.
//!
//! Each account and region runs one discovery task per service, which keeps one polling task per
//! target. A polling task owns everything about its target (the last snapshot, the counters, the
//! health),
//! so there is no shared state to lock besides the store it publishes to. Scrapes never wait on
//! any of this. The number of tasks is bounded by the number of targets; the number of AWS calls
//! in flight by each scope's permits.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use aws_config::SdkConfig;
use rand::Rng as _;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::aws::{self, CallError, Limits, Overrides, Scope};
use crate::codeconnections::{self, Link, RepositorySyncInfo, RepositorySyncTarget, ResourceSyncInfo, ResourceSyncTarget};
use crate::codepipeline::{self, Summary};
use crate::config::{self, Account, Config};
use crate::exposition::{Family, Kind};
use crate::shard::Shard;
use crate::store::{Rendered, Store, TargetKey, TargetKind};
use crate::telemetry::{Telemetry, unix_seconds};

pub static TARGET_UP: Family = Family {
    name: "codepipeline_exporter_target_up",
    help: "Whether the last poll of the target succeeded (1) or failed (0).",
    kind: Kind::Gauge,
};
pub static TARGET_LAST_SUCCESS: Family = Family {
    name: "codepipeline_exporter_target_last_success_timestamp_seconds",
    help: "When the target was last polled successfully, in seconds since the epoch.",
    kind: Kind::Gauge,
};

/// Counts what must happen before `/-/ready` answers 200: every scope's first discovery and every
/// target's first poll, whether it succeeded or not. Once that is done, readiness waits for the
/// store's assembler to publish a body that includes it, so a ready exporter never serves a
/// partial first scrape. Readiness then stays on.
#[derive(Default)]
pub struct Readiness {
    pending: AtomicUsize,
    /// The store's generation when the first round was done: the first body to include it.
    first_round: OnceLock<u64>,
    ready: AtomicBool,
    store: Arc<Store>,
}

/// One piece of the first round; it counts as done when dropped, also when its task is aborted.
pub struct ReadyToken(Option<Arc<Readiness>>);

impl Readiness {
    pub fn new(store: Arc<Store>) -> Readiness {
        Readiness { pending: AtomicUsize::new(0), first_round: OnceLock::new(), ready: AtomicBool::new(false), store }
    }

    pub fn is_ready(&self) -> bool {
        if self.ready.load(Ordering::Acquire) {
            return true;
        }
        let ready = self.first_round.get().is_some_and(|round| self.store.exposition().generation() >= *round);
        if ready {
            self.ready.store(true, Ordering::Release);
        }
        ready
    }

    fn token(self: &Arc<Self>) -> ReadyToken {
        self.pending.fetch_add(1, Ordering::AcqRel);
        ReadyToken(Some(self.clone()))
    }
}

impl ReadyToken {
    fn done(&mut self) {
        if let Some(readiness) = self.0.take()
            && readiness.pending.fetch_sub(1, Ordering::AcqRel) == 1
            && readiness.first_round.set(readiness.store.generation()).is_ok()
        {
            // The assembler builds the body off the async workers; readiness waits for it.
            readiness.store.wake();
        }
    }
}

impl Drop for ReadyToken {
    fn drop(&mut self) {
        self.done();
    }
}

/// The success or failure of a target's polls, and the errors already logged for it.
#[derive(Debug, Default)]
struct Health {
    up: bool,
    last_success: Option<f64>,
    last_error: Option<String>,
}

impl Health {
    fn succeeded(&mut self, key: &TargetKey) {
        if let Some(code) = self.last_error.take() {
            tracing::info!(target_key = %key, previous_error = %code, "target recovered");
        }
        self.up = true;
        self.last_success = Some(unix_seconds(SystemTime::now()));
    }

    /// Logs an error only when it differs from the last one, so that a permanent failure (access
    /// denied, a deleted pipeline) is logged once per state change rather than on every poll.
    fn failed(&mut self, key: &TargetKey, err: &CallError) {
        self.up = false;
        if self.last_error.as_deref() != Some(err.code.as_str()) {
            if aws::is_permanent(&err.code) {
                tracing::error!(target_key = %key, code = %err.code, error = %err.detail, "poll failed; logged again only when the error changes");
            } else {
                tracing::warn!(target_key = %key, code = %err.code, error = %err.detail, "poll failed; last known values are kept");
            }
            self.last_error = Some(err.code.clone());
        }
    }

    fn render(&self, rendered: &mut Rendered, key: &TargetKey) {
        let labels =
            [("account", &*key.account), ("region", &*key.region), ("kind", key.kind.as_str()), ("name", key.name.as_str())];
        rendered.sample(&TARGET_UP, &labels, if self.up { 1.0 } else { 0.0 });
        if let Some(at) = self.last_success {
            rendered.sample(&TARGET_LAST_SUCCESS, &labels, at);
        }
    }
}

/// The result of one poll.
pub enum Outcome {
    /// AWS answered; the target's snapshot is current.
    Polled,
    /// AWS did not answer usefully; the target keeps its last snapshot.
    Failed(CallError),
    /// The object no longer exists: its series are removed and it is not polled again.
    Gone,
}

/// What the scheduler needs of a polled object. Each collector implements it for its kinds of
/// target; the scheduler owns the timing, the health and the publishing.
pub trait Target: Send + 'static {
    /// Calls AWS once and updates what the target knows.
    fn poll(&mut self, scope: &Scope, key: &TargetKey) -> impl Future<Output = Outcome> + Send;
    /// Renders the target's series from what it knows.
    fn render(&self, rendered: &mut Rendered, key: &TargetKey);
    /// Whether something is running (an execution, a sync in progress), which polls it at the
    /// active interval rather than the idle one.
    fn active(&self) -> bool;
}

/// The interval with ±10% of random jitter, so that targets started together drift apart.
fn jittered(interval: Duration) -> Duration {
    interval.mul_f64(rand::rng().random_range(0.9..1.1))
}

/// Settings every task of a scope needs.
#[derive(Clone)]
struct Context {
    store: Arc<Store>,
    readiness: Arc<Readiness>,
    /// Off once the scope is removed by a reload: its tasks' results are then dropped.
    live: Arc<AtomicBool>,
    /// Which targets this replica polls; discovery still sees them all.
    shard: Shard,
    interval: Duration,
    active_interval: Duration,
    discovery_interval: Duration,
}

impl Context {
    /// Hands a target's series to the store, unless the scope was removed meanwhile or another
    /// shard owns the target (discovery runs in every shard, but one publishes its series).
    fn publish(&self, key: &TargetKey, rendered: Rendered) {
        if self.shard.owns(key) {
            self.store.update_if(key, rendered, &self.live);
        }
    }
}

/// Polls one target until its task is aborted or the target is gone.
async fn run_target<T: Target>(scope: Scope, key: TargetKey, mut target: T, context: Context, mut first_poll: ReadyToken) {
    let mut health = Health::default();
    loop {
        // The SDK's request futures are several kilobytes. Boxed, they take memory only while a
        // poll runs; inline, every idle target's task would hold that much between polls (7 MiB
        // more resident at 1,000 pipelines in the benchmark).
        match Box::pin(target.poll(&scope, &key)).await {
            Outcome::Polled => health.succeeded(&key),
            Outcome::Failed(err) => health.failed(&key, &err),
            Outcome::Gone => {
                tracing::info!(target_key = %key, "target no longer exists; its series are removed");
                context.store.remove(&key);
                return;
            }
        }
        let mut rendered = Rendered::default();
        target.render(&mut rendered, &key);
        health.render(&mut rendered, &key);
        context.publish(&key, rendered);
        first_poll.done();
        let interval = if target.active() { context.active_interval } else { context.interval };
        tokio::time::sleep(jittered(interval)).await;
    }
}

/// The polling tasks of one kind of target in one scope, by target name, with the channel that
/// passes each what discovery learns of it.
struct Tasks<I> {
    kind: TargetKind,
    running: HashMap<String, (JoinHandle<()>, watch::Sender<I>)>,
}

impl<I: Clone + PartialEq + Send + Sync + 'static> Tasks<I> {
    fn new(kind: TargetKind) -> Tasks<I> {
        Tasks { kind, running: HashMap::new() }
    }

    /// Starts a task for each new target in `desired`, passes changed information to running
    /// ones, and, when `desired` is complete (discovery succeeded), stops the tasks of the targets
    /// it no longer holds and removes their series.
    async fn reconcile<T: Target>(
        &mut self,
        scope: &Scope,
        context: &Context,
        desired: HashMap<String, I>,
        complete: bool,
        make: impl Fn(&str, watch::Receiver<I>) -> T,
    ) {
        let mut desired = desired;
        desired.retain(|name, _| context.shard.owns(&self.key(scope, name.clone())));
        if complete {
            let gone: Vec<String> = self.running.keys().filter(|name| !desired.contains_key(*name)).cloned().collect();
            for name in gone {
                if let Some((handle, _)) = self.running.remove(&name) {
                    handle.abort();
                    let _ = handle.await;
                    let key = self.key(scope, name);
                    tracing::info!(target_key = %key, "no longer discovered; its series are removed");
                    context.store.remove(&key);
                }
            }
        }
        for (name, info) in desired {
            match self.running.get(&name) {
                Some((handle, sender)) if !handle.is_finished() => {
                    sender.send_if_modified(|old| {
                        let changed = *old != info;
                        *old = info;
                        changed
                    });
                }
                _ => {
                    let (sender, receiver) = watch::channel(info);
                    let target = make(&name, receiver);
                    let task = run_target(
                        scope.clone(),
                        self.key(scope, name.clone()),
                        target,
                        context.clone(),
                        context.readiness.token(),
                    );
                    self.running.insert(name, (tokio::spawn(task), sender));
                }
            }
        }
    }

    fn key(&self, scope: &Scope, name: String) -> TargetKey {
        TargetKey { account: scope.account.clone(), region: scope.region.clone(), kind: self.kind, name }
    }
}

impl<I> Drop for Tasks<I> {
    fn drop(&mut self) {
        for (handle, _) in self.running.values() {
            handle.abort();
        }
    }
}

/// What a scope runs with. A reload restarts a scope only when this changed.
#[derive(Debug, Clone, PartialEq)]
struct ScopeSpec {
    /// The account's settings, regions left out: adding a region leaves the others running.
    account: Account,
    interval: Duration,
    active_interval: Duration,
    discovery_interval: Duration,
    request_timeout: Duration,
    limits: Limits,
}

/// The discovery tasks of one account and region, and the switch that stops their series from
/// reaching the store once the scope is removed.
struct RunningScope {
    spec: ScopeSpec,
    live: Arc<AtomicBool>,
    tasks: Vec<JoinHandle<()>>,
}

impl RunningScope {
    fn stop(self, store: &Store, account: &str, region: &str) {
        // Order matters: once `live` is off no update of this scope reaches the store, so the
        // series removed next cannot come back from a task that is still finishing a poll.
        self.live.store(false, Ordering::Release);
        for task in &self.tasks {
            task.abort();
        }
        store.retain(|key| !(&*key.account == account && &*key.region == region));
    }
}

/// The running scheduler: one scope per account and region. Dropping it stops every discovery
/// and polling task.
pub struct Scheduler {
    store: Arc<Store>,
    telemetry: Arc<Telemetry>,
    readiness: Arc<Readiness>,
    overrides: Overrides,
    shard: Shard,
    scopes: HashMap<(String, String), RunningScope>,
}

impl Drop for Scheduler {
    fn drop(&mut self) {
        for scope in self.scopes.values() {
            for task in &scope.tasks {
                task.abort();
            }
        }
    }
}

impl Scheduler {
    /// Builds the AWS clients of every account and region in `config` and starts polling.
    pub async fn start(
        config: &Config,
        overrides: &Overrides,
        shard: Shard,
        store: Arc<Store>,
        telemetry: Arc<Telemetry>,
        readiness: Arc<Readiness>,
    ) -> anyhow::Result<Scheduler> {
        // Held until every scope is spawned, so that a scope finishing its first round early
        // cannot make the exporter ready while another has not started.
        let _starting = readiness.token();
        let mut scheduler =
            Scheduler { store, telemetry, readiness, overrides: overrides.clone(), shard, scopes: HashMap::new() };
        scheduler.apply(config).await?;
        Ok(scheduler)
    }

    /// Makes the running scopes those of `config`: scopes that are gone or changed stop and their
    /// series disappear, new and changed ones start, the others go on untouched, counters and all.
    /// Nothing changes when `config` cannot be applied.
    pub async fn apply(&mut self, config: &Config) -> anyhow::Result<()> {
        let default_region = aws::default_region(&self.overrides).await;
        let mut desired: Vec<(String, ScopeSpec)> = Vec::new();
        for account in &config.accounts {
            let regions = if account.regions.is_empty() {
                vec![default_region.clone().with_context(|| {
                    format!(
                        "account {:?} names no regions and the environment has none: set AWS_REGION or list regions in the configuration file",
                        account.name
                    )
                })?]
            } else {
                account.regions.clone()
            };
            let spec = ScopeSpec {
                account: Account { regions: Vec::new(), ..account.clone() },
                interval: config.interval,
                // Something running is never polled less often than something idle.
                active_interval: config.active_interval.min(config.interval),
                discovery_interval: config.discovery_interval,
                request_timeout: config.request_timeout,
                limits: Limits {
                    max_concurrent_requests: config.max_concurrent_requests,
                    requests_per_second: config.requests_per_second,
                    burst: config.burst,
                },
            };
            desired.extend(regions.into_iter().map(|region| (region, spec.clone())));
        }
        let wanted = |account: &str, region: &str, spec: &ScopeSpec| {
            desired.iter().any(|(r, s)| s.account.name == account && r == region && s == spec)
        };
        let stale: Vec<(String, String)> =
            self.scopes.iter().filter(|((a, r), scope)| !wanted(a, r, &scope.spec)).map(|(key, _)| key.clone()).collect();
        for (account, region) in stale {
            if let Some(scope) = self.scopes.remove(&(account.clone(), region.clone())) {
                tracing::info!(account = %account, region = %region, "stopping the scope; its series are removed");
                scope.stop(&self.store, &account, &region);
            }
        }
        let mut sdk_configs: HashMap<String, SdkConfig> = HashMap::new();
        for (region, spec) in desired {
            let key = (spec.account.name.clone(), region.clone());
            if self.scopes.contains_key(&key) {
                continue;
            }
            let base = match sdk_configs.get(&spec.account.name) {
                Some(base) => base.clone(),
                None => {
                    let base = aws::account_config(&spec.account, spec.request_timeout, &self.overrides).await;
                    sdk_configs.insert(spec.account.name.clone(), base.clone());
                    base
                }
            };
            let live = Arc::new(AtomicBool::new(true));
            let context = Context {
                store: self.store.clone(),
                readiness: self.readiness.clone(),
                live: live.clone(),
                shard: self.shard,
                interval: spec.interval,
                active_interval: spec.active_interval,
                discovery_interval: spec.discovery_interval,
            };
            let scope = Scope::new(&spec.account.name, &region, &base, spec.limits, self.telemetry.clone());
            tracing::info!(account = %spec.account.name, region = %region, "polling CodePipeline and CodeConnections");
            let tasks = vec![
                tokio::spawn(run_codepipeline(
                    scope.clone(),
                    spec.account.codepipeline.clone(),
                    context.clone(),
                    self.readiness.token(),
                )),
                tokio::spawn(run_codeconnections(scope, spec.account.codeconnections.clone(), context, self.readiness.token())),
            ];
            self.scopes.insert(key, RunningScope { spec, live, tasks });
        }
        Ok(())
    }
}

fn discovery_key(scope: &Scope, service: &str) -> TargetKey {
    TargetKey { account: scope.account.clone(), region: scope.region.clone(), kind: TargetKind::Discovery, name: service.into() }
}

/// Discovers the pipelines of one scope and keeps one polling task for each, plus one for each
/// configured pipeline.
async fn run_codepipeline(scope: Scope, settings: config::CodePipeline, context: Context, mut first_round: ReadyToken) {
    let key = discovery_key(&scope, codepipeline::SERVICE);
    let mut health = Health::default();
    let mut tasks = Tasks::<Option<Summary>>::new(TargetKind::Pipeline);
    loop {
        let mut desired: HashMap<String, Option<Summary>> = settings.pipelines.iter().map(|name| (name.clone(), None)).collect();
        let mut complete = true;
        if settings.discover {
            match codepipeline::list_pipelines(&scope).await {
                Ok(summaries) => {
                    health.succeeded(&key);
                    for summary in summaries {
                        if settings.selects(&summary.name) || desired.contains_key(&summary.name) {
                            desired.insert(summary.name.clone(), Some(summary));
                        }
                    }
                }
                Err(err) => {
                    health.failed(&key, &err);
                    complete = false;
                }
            }
            let mut rendered = Rendered::default();
            health.render(&mut rendered, &key);
            context.publish(&key, rendered);
        }
        tasks
            .reconcile(&scope, &context, desired, complete, |name, summary| {
                codepipeline::PipelineTarget::new(summary, settings.pipelines.iter().any(|p| p == name), settings.executions)
            })
            .await;
        first_round.done();
        tokio::time::sleep(jittered(context.discovery_interval)).await;
    }
}

/// Discovers the repository links and sync configurations of one scope and keeps one polling task
/// for each repository sync and each resource, plus the configured repository syncs.
async fn run_codeconnections(scope: Scope, settings: config::CodeConnections, context: Context, mut first_round: ReadyToken) {
    let key = discovery_key(&scope, codeconnections::SERVICE);
    let mut health = Health::default();
    let mut repositories = Tasks::<RepositorySyncInfo>::new(TargetKind::RepositorySync);
    let mut resources = Tasks::<ResourceSyncInfo>::new(TargetKind::ResourceSync);
    let mut links: Vec<Link> = Vec::new();
    loop {
        let mut configurations = Vec::new();
        let mut complete = true;
        if settings.discover {
            match codeconnections::discover(&scope).await {
                Ok(found) => {
                    health.succeeded(&key);
                    links = found.links;
                    configurations = found.configurations;
                }
                Err(err) => {
                    health.failed(&key, &err);
                    complete = false;
                }
            }
            let mut rendered = Rendered::default();
            codeconnections::render_links(&mut rendered, &scope.account, &scope.region, &links);
            health.render(&mut rendered, &key);
            context.publish(&key, rendered);
        }
        let repository_of = |link_id: &str| {
            links.iter().find(|link| link.id == link_id).map(|link| link.repository.clone()).unwrap_or_else(|| "unknown".into())
        };
        let mut desired_repositories = HashMap::new();
        let mut desired_resources = HashMap::new();
        for sync in &settings.repository_syncs {
            let info = RepositorySyncInfo {
                repository_link_id: sync.repository_link_id.clone(),
                branch: sync.branch.clone(),
                sync_type: sync.sync_type.clone(),
                repository: repository_of(&sync.repository_link_id),
                configuration: None,
            };
            desired_repositories.insert(info.target_name(), info);
            if let (true, Some(resource)) = (settings.resource_syncs, &sync.resource_name) {
                let info = ResourceSyncInfo { resource_name: resource.clone(), sync_type: sync.sync_type.clone() };
                desired_resources.insert(info.target_name(), info);
            }
        }
        for configuration in configurations {
            if settings.resource_syncs {
                let info = ResourceSyncInfo {
                    resource_name: configuration.resource_name.clone(),
                    sync_type: configuration.sync_type.clone(),
                };
                desired_resources.insert(info.target_name(), info);
            }
            let info = RepositorySyncInfo {
                repository_link_id: configuration.repository_link_id.clone(),
                branch: configuration.branch.clone(),
                sync_type: configuration.sync_type.clone(),
                repository: configuration.repository.clone(),
                configuration: Some(configuration),
            };
            desired_repositories.insert(info.target_name(), info);
        }
        repositories.reconcile(&scope, &context, desired_repositories, complete, |_, info| RepositorySyncTarget::new(info)).await;
        resources.reconcile(&scope, &context, desired_resources, complete, |_, info| ResourceSyncTarget::new(info)).await;
        first_round.done();
        tokio::time::sleep(jittered(context.discovery_interval)).await;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// Collects log lines.
    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Lines {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn an_error_is_logged_once_per_state_change() {
        let lines = Lines::default();
        let writer = lines.clone();
        let subscriber = tracing_subscriber::fmt().with_writer(move || writer.clone()).with_ansi(false).finish();
        let key = TargetKey { account: "a".into(), region: "r".into(), kind: TargetKind::Pipeline, name: "p".into() };
        let denied = CallError { code: "AccessDeniedException".into(), detail: "denied".into() };
        let throttled = CallError { code: "ThrottlingException".into(), detail: "slow down".into() };
        tracing::subscriber::with_default(subscriber, || {
            let mut health = Health::default();
            for _ in 0..5 {
                health.failed(&key, &denied);
            }
            health.failed(&key, &throttled);
            health.failed(&key, &throttled);
            health.succeeded(&key);
            health.succeeded(&key);
            health.failed(&key, &denied);
        });
        let text = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
        let events: Vec<&str> = text.lines().map(|l| l.split_once(": ").map(|(_, rest)| rest).unwrap_or(l)).collect();
        assert_eq!(events.len(), 4, "{text}");
        assert!(events[0].starts_with(
            "poll failed; logged again only when the error changes target_key=a/r/pipeline/p code=AccessDeniedException"
        ));
        assert!(
            events[1].starts_with("poll failed; last known values are kept target_key=a/r/pipeline/p code=ThrottlingException")
        );
        assert!(events[2].starts_with("target recovered target_key=a/r/pipeline/p previous_error=ThrottlingException"));
        assert!(events[3].starts_with(
            "poll failed; logged again only when the error changes target_key=a/r/pipeline/p code=AccessDeniedException"
        ));
    }
}
