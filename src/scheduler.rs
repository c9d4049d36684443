//! The scheduler: which collectors run, in which account and region, with which clients.
//!
//! Each account and region is a scope with its own AWS clients and request budget, in which every
//! collector of [`crate::registry`] runs its discovery, and each discovered target is polled by a
//! task of its own ([`crate::collector`]). A polling task owns everything about its target (the
//! last snapshot, the counters, the health), so there is no shared state to lock besides the
//! store it publishes to. Scrapes never wait on any of this. The number of tasks is bounded by
//! the number of targets; the number of AWS calls in flight by each scope's permits.
//!
//! A reload changes only what it must: a scope whose clients or timing changed restarts, and
//! within a scope that stays, only the collectors whose settings changed restart.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use aws_config::SdkConfig;

use crate::aws::{self, Limits, Overrides, QueueClients, Scope};
use crate::collector::{Collectors, Context};
use crate::config::{Account, Config, Events, FamilyPattern, Metrics, StateSets};
use crate::events::{self, Consumer};
use crate::exposition::Selection;
use crate::readiness::Readiness;
use crate::registry;
use crate::shard::Shard;
use crate::signal::Signals;
use crate::store::Store;
use crate::target::Statuses;
use crate::telemetry::Telemetry;
use crate::traces::Sink;

/// What a scope's clients and timing are built from. A reload restarts a scope, and every
/// collector in it, only when this changed; the collectors' own settings are compared one by one.
#[derive(Debug, Clone, PartialEq)]
struct ScopeSpec {
    /// The account's name and credentials.
    account: String,
    role_arn: Option<String>,
    external_id: Option<String>,
    interval: Duration,
    active_interval: Duration,
    discovery_interval: Duration,
    request_timeout: Duration,
    limits: Limits,
    /// Which families are rendered, and how: a change renders every target again.
    selection: Arc<Selection>,
}

impl ScopeSpec {
    fn new(account: &Account, config: &Config) -> ScopeSpec {
        ScopeSpec {
            account: account.name.clone(),
            role_arn: account.role_arn.clone(),
            external_id: account.external_id.clone(),
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
            selection: Arc::new(selection(&config.metrics)),
        }
    }
}

/// The exposition's view of the `metrics` section.
fn selection(metrics: &Metrics) -> Selection {
    let regexes = |patterns: &[FamilyPattern]| patterns.iter().map(|p| p.regex.clone()).collect();
    Selection {
        include: regexes(&metrics.include),
        exclude: regexes(&metrics.exclude),
        sparse: metrics.state_sets == StateSets::Sparse,
    }
}

/// What an account's events consumer is built from; a reload restarts it when this changed.
#[derive(Debug, Clone, PartialEq)]
struct QueueSpec {
    events: Events,
    role_arn: Option<String>,
    external_id: Option<String>,
    request_timeout: Duration,
    selection: Arc<Selection>,
}

impl QueueSpec {
    /// A `{shard}` in the queue's URL becomes this replica's shard, so that the replicas of a
    /// sharded deployment, which share one configuration, each read a queue of their own.
    fn new(account: &Account, config: &Config, shard: Shard) -> Option<QueueSpec> {
        let mut events = account.events.clone()?;
        events.queue_url = events.queue_url.replace("{shard}", &shard.ordinal.to_string());
        Some(QueueSpec {
            events,
            role_arn: account.role_arn.clone(),
            external_id: account.external_id.clone(),
            request_timeout: config.request_timeout,
            selection: Arc::new(selection(&config.metrics)),
        })
    }
}

/// The collectors of one account and region, and what their clients were built from.
struct RunningScope {
    spec: ScopeSpec,
    collectors: Collectors,
}

/// Where the scheduler's tasks report: the store of series, the targets' statuses, telemetry and
/// readiness.
pub struct Parts {
    pub store: Arc<Store>,
    pub statuses: Arc<Statuses>,
    pub telemetry: Arc<Telemetry>,
    pub readiness: Arc<Readiness>,
    /// Where finished runs go as traces, when traces are on.
    pub traces: Option<Sink>,
}

/// The running scheduler: one scope per account and region. Dropping it stops every discovery
/// and polling task.
pub struct Scheduler {
    store: Arc<Store>,
    statuses: Arc<Statuses>,
    telemetry: Arc<Telemetry>,
    readiness: Arc<Readiness>,
    traces: Option<Sink>,
    overrides: Overrides,
    shard: Shard,
    scopes: HashMap<(String, String), RunningScope>,
    /// How events reach the targets of every scope.
    signals: Arc<Signals>,
    /// The events consumer of each account that has a queue.
    queues: HashMap<String, (QueueSpec, events::Running)>,
}

impl Scheduler {
    /// Builds the AWS clients of every account and region in `config` and starts polling.
    pub async fn start(config: &Config, overrides: &Overrides, shard: Shard, parts: Parts) -> anyhow::Result<Scheduler> {
        let Parts { store, statuses, telemetry, readiness, traces } = parts;
        // Held until every scope is spawned, so that a scope finishing its first round early
        // cannot make the exporter ready while another has not started.
        let _starting = readiness.token();
        let mut scheduler = Scheduler {
            store,
            statuses,
            telemetry,
            readiness,
            traces,
            overrides: overrides.clone(),
            shard,
            scopes: HashMap::new(),
            signals: Arc::default(),
            queues: HashMap::new(),
        };
        scheduler.apply(config).await?;
        Ok(scheduler)
    }

    /// Makes the running scopes and collectors those of `config`: what is gone or changed stops
    /// and its series disappear, what is new or changed starts, the rest goes on untouched,
    /// counters and all. Nothing changes when `config` cannot be applied.
    pub async fn apply(&mut self, config: &Config) -> anyhow::Result<()> {
        let default_region = aws::default_region(&self.overrides).await;
        let mut desired: Vec<(String, &Account)> = Vec::new();
        for account in &config.accounts {
            if account.regions.is_empty() {
                let region = default_region.clone().with_context(|| {
                    format!(
                        "account {:?} names no regions and the environment has none: set AWS_REGION or list regions in the configuration file",
                        account.name
                    )
                })?;
                desired.push((region, account));
            } else {
                desired.extend(account.regions.iter().map(|region| (region.clone(), account)));
            }
        }
        let wanted = |account: &str, region: &str, spec: &ScopeSpec| {
            desired.iter().any(|(r, a)| a.name == account && r == region && ScopeSpec::new(a, config) == *spec)
        };
        let stale: Vec<(String, String)> =
            self.scopes.iter().filter(|((a, r), scope)| !wanted(a, r, &scope.spec)).map(|(key, _)| key.clone()).collect();
        for (account, region) in stale {
            if let Some(mut scope) = self.scopes.remove(&(account.clone(), region.clone())) {
                tracing::info!(account = %account, region = %region, "stopping the scope; its series are removed");
                scope.collectors.stop_all();
            }
        }
        let mut sdk_configs: HashMap<String, SdkConfig> = HashMap::new();
        for (region, account) in desired {
            let key = (account.name.clone(), region.clone());
            if !self.scopes.contains_key(&key) {
                let spec = ScopeSpec::new(account, config);
                let base = match sdk_configs.get(&account.name) {
                    Some(base) => base.clone(),
                    None => {
                        let base = aws::account_config(account, spec.request_timeout, &self.overrides).await;
                        sdk_configs.insert(account.name.clone(), base.clone());
                        base
                    }
                };
                let context = Context {
                    store: self.store.clone(),
                    statuses: self.statuses.clone(),
                    readiness: self.readiness.clone(),
                    shard: self.shard,
                    interval: spec.interval,
                    active_interval: spec.active_interval,
                    discovery_interval: spec.discovery_interval,
                    selection: spec.selection.clone(),
                    signals: self.signals.clone(),
                };
                let scope = Scope::new(&account.name, &region, &base, spec.limits, self.telemetry.clone())
                    .with_traces(self.traces.clone());
                tracing::info!(account = %account.name, region = %region, "starting the scope's collectors");
                self.scopes.insert(key.clone(), RunningScope { spec, collectors: Collectors::new(scope, context) });
            }
            if let Some(scope) = self.scopes.get_mut(&key) {
                registry::collectors(account, &mut scope.collectors);
                scope.collectors.stop_unnamed();
            }
        }
        self.apply_queues(config, &sdk_configs).await;
        Ok(())
    }

    /// Starts, restarts and stops the events consumers as `config` says. Dropping one returns its
    /// account to interval polling.
    async fn apply_queues(&mut self, config: &Config, sdk_configs: &HashMap<String, SdkConfig>) {
        let wanted: HashMap<&str, QueueSpec> =
            config.accounts.iter().filter_map(|a| Some((a.name.as_str(), QueueSpec::new(a, config, self.shard)?))).collect();
        self.queues.retain(|account, (spec, _)| wanted.get(account.as_str()) == Some(spec));
        for account in &config.accounts {
            let Some(spec) = wanted.get(account.name.as_str()) else { continue };
            if self.queues.contains_key(&account.name) {
                continue;
            }
            let base = match sdk_configs.get(&account.name) {
                Some(base) => base.clone(),
                None => aws::account_config(account, spec.request_timeout, &self.overrides).await,
            };
            let clients = QueueClients::new(
                &account.name,
                &base,
                &spec.events.queue_region,
                spec.request_timeout,
                events::WAIT,
                self.telemetry.clone(),
            );
            let parts = events::Parts {
                signals: self.signals.clone(),
                store: self.store.clone(),
                statuses: self.statuses.clone(),
                telemetry: self.telemetry.clone(),
                shard: self.shard,
                selection: spec.selection.clone(),
            };
            tracing::info!(account = %account.name, queue = %spec.events.queue_url, "starting the events consumer");
            let consumer = Consumer::new(clients, spec.events.clone(), account.role_arn.as_deref(), parts);
            self.queues.insert(account.name.clone(), (spec.clone(), events::Running::start(consumer)));
        }
    }
}
