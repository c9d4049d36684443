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

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::Context as _;
use aws_config::SdkConfig;

use crate::aws::{self, Limits, Overrides, QueueClients, Scope};
use crate::collector::{Collectors, Context};
use crate::config::{Account, Config, FamilyPattern, Metrics, StateSets};
use crate::credentials::{self, Role};
use crate::events::Settings as Events;
use crate::events::{self, Consumer, Routes};
use crate::exposition::Selection;
use crate::metrics_push::Recorder;
use crate::organization;
use crate::organization::Settings as Organization;
use crate::organization::settings::AccountLabel;
use crate::readiness::Readiness;
use crate::registry;
use crate::report::Report;
use crate::shard::{By, Shard};
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
    /// What this replica's share is made of: a change moves targets between replicas.
    shard: Shard,
}

impl ScopeSpec {
    fn new(account: &Account, config: &Config, shard: Shard) -> ScopeSpec {
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
            shard,
        }
    }
}

/// How a replica's share is made for `config`: whole scopes for an organization, whose scopes
/// are many and mostly empty; targets otherwise, since one account's scope can hold 10,000
/// pipelines (see [`crate::shard`]).
fn shard_by(config: &Config) -> By {
    if config.organization.is_some() { By::Scope } else { By::Target }
}

/// Scopes that start at once (the organization's, at start-up) are spread at this many a second
/// at most, each at a random point of the spread, so that 3,000 scopes do not call AWS in the
/// same second: a minute for 3,000, within the first discovery interval.
const SCOPE_STARTS_PER_SECOND: f64 = 50.0;

/// The exposition's view of the `metrics` section.
fn selection(metrics: &Metrics) -> Selection {
    let regexes = |patterns: &[FamilyPattern]| patterns.iter().map(|p| p.regex.clone()).collect();
    Selection {
        include: regexes(&metrics.include),
        exclude: regexes(&metrics.exclude),
        sparse: metrics.state_sets == StateSets::Sparse,
    }
}

/// What an events consumer is built from; a reload restarts it when this changed.
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
    fn new(
        events: Option<&Events>,
        role_arn: Option<&str>,
        external_id: Option<&str>,
        config: &Config,
        shard: Shard,
    ) -> Option<QueueSpec> {
        let mut events = events?.clone();
        events.queue_url = events.queue_url.replace("{shard}", &shard.ordinal.to_string());
        Some(QueueSpec {
            events,
            role_arn: role_arn.map(str::to_string),
            external_id: external_id.map(str::to_string),
            request_timeout: config.request_timeout,
            selection: Arc::new(selection(&config.metrics)),
        })
    }
}

/// The `account` label of the organization's own targets: its listing and its queue.
const ORGANIZATION: &str = "organization";

/// What the organization's listing is built from; a reload restarts it when this changed.
#[derive(Debug, Clone, PartialEq)]
struct ListingSpec {
    organization: Organization,
    request_timeout: Duration,
    selection: Arc<Selection>,
}

/// The role an account's credentials come from, and where STS is asked.
#[derive(Debug, Clone, PartialEq)]
struct RoleSpec {
    role: Role,
    region: String,
    request_timeout: Duration,
    selection: Arc<Selection>,
}

/// An account's assumed role and the SDK configuration its clients share.
struct AccountRole {
    spec: RoleSpec,
    running: credentials::Running,
    config: SdkConfig,
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
    /// Where the CI/CD metrics are recorded for the OTLP push, when it is on.
    pub metrics: Option<Recorder>,
}

/// The running scheduler: one scope per account and region. Dropping it stops every discovery
/// and polling task.
pub struct Scheduler {
    store: Arc<Store>,
    statuses: Arc<Statuses>,
    telemetry: Arc<Telemetry>,
    readiness: Arc<Readiness>,
    traces: Option<Sink>,
    metrics: Option<Recorder>,
    overrides: Overrides,
    shard: Shard,
    scopes: HashMap<(String, String), RunningScope>,
    /// How events reach the targets of every scope.
    signals: Arc<Signals>,
    /// The events consumer of each account that has a queue, and the organization's (under
    /// [`ORGANIZATION`]), with the credentials of the queue's own role when it has one.
    queues: HashMap<String, (QueueSpec, events::Running, Option<credentials::Running>)>,
    /// The credentials of each account with a role, by account.
    roles: HashMap<String, AccountRole>,
    /// The organization's listing, while the configuration has one.
    listing: Option<(ListingSpec, organization::Running)>,
    /// Which account each member's ID is polled as, for the organization's queue.
    routes: Routes,
    /// The configuration last applied, which a new listing is applied with.
    config: Option<Config>,
}

impl Scheduler {
    /// Builds the AWS clients of every account and region in `config` and starts polling.
    pub async fn start(config: &Config, overrides: &Overrides, shard: Shard, parts: Parts) -> anyhow::Result<Scheduler> {
        let Parts { store, statuses, telemetry, readiness, traces, metrics } = parts;
        let mut overrides = overrides.clone();
        if overrides.http_client.is_none() {
            overrides.http_client = Some(aws::http_client());
        }
        // Held until every scope is spawned, so that a scope finishing its first round early
        // cannot make the exporter ready while another has not started.
        let _starting = readiness.token();
        let mut scheduler = Scheduler {
            store,
            statuses,
            telemetry,
            readiness,
            traces,
            metrics,
            overrides,
            shard,
            scopes: HashMap::new(),
            signals: Arc::default(),
            queues: HashMap::new(),
            roles: HashMap::new(),
            listing: None,
            routes: Arc::new(RwLock::new(HashMap::new())),
            config: None,
        };
        scheduler.apply(config).await?;
        Ok(scheduler)
    }

    /// Waits until the organization's listing has a new list of accounts; never, without one.
    pub async fn listing_changed(&mut self) {
        match &mut self.listing {
            Some((_, running)) => {
                if running.members.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
            None => std::future::pending().await,
        }
    }

    /// Applies the configuration again with the organization's newest list of accounts: new
    /// members start, removed or closed ones stop and their series go.
    pub async fn apply_listing(&mut self) -> anyhow::Result<()> {
        match self.config.clone() {
            Some(config) => self.apply(&config).await,
            None => Ok(()),
        }
    }

    /// The accounts to poll: those of `accounts`, and the organization's selected members that
    /// are not among them (an explicit entry wins over the same account listed).
    fn accounts(&self, config: &Config) -> Vec<Account> {
        let mut accounts = config.accounts.clone();
        let mut routes = HashMap::new();
        for account in &accounts {
            if let Some(id) = account.id() {
                routes.insert(id, Arc::<str>::from(account.name.as_str()));
            }
        }
        if let (Some(organization), Some((_, listing))) = (&config.organization, &self.listing) {
            let explicit: HashSet<String> = accounts.iter().filter_map(Account::id).collect();
            let mut labels: HashSet<String> = accounts.iter().map(|a| a.name.clone()).collect();
            for member in listing.members.borrow().iter().flatten() {
                if explicit.contains(&member.id) || !organization.selects(&member.id, &member.name) {
                    continue;
                }
                let label = match organization.account_label {
                    AccountLabel::Name => member.name.clone(),
                    AccountLabel::Id => member.id.clone(),
                };
                // Two members of one name: the second is labelled by its ID.
                let label = if labels.contains(&label) { member.id.clone() } else { label };
                labels.insert(label.clone());
                routes.insert(member.id.clone(), Arc::from(label.as_str()));
                accounts.push(Account::member(organization, &member.id, &label));
            }
        }
        *self.routes.write().unwrap_or_else(|e| e.into_inner()) = routes;
        accounts
    }

    /// Starts, restarts or stops the organization's listing as `config` says.
    async fn apply_listing_spec(&mut self, config: &Config) {
        let wanted = config.organization.as_ref().map(|organization| ListingSpec {
            organization: organization.clone(),
            request_timeout: config.request_timeout,
            selection: Arc::new(selection(&config.metrics)),
        });
        if self.listing.as_ref().map(|(spec, _)| spec) == wanted.as_ref() {
            return;
        }
        self.listing = None;
        let Some(spec) = wanted else { return };
        let client = organization::clients(&spec.organization, spec.request_timeout, &self.overrides).await;
        let mut running = organization::Running::start(client, spec.organization.clone(), self.report(&spec.selection));
        tracing::info!("listing the organization's accounts");
        // The first listing is waited for, so that start-up polls the members at once and
        // readiness covers them; a listing that fails starts with none.
        let deadline = spec.request_timeout * 4;
        let _ = tokio::time::timeout(deadline, running.members.wait_for(Option::is_some)).await;
        running.members.mark_unchanged();
        self.listing = Some((spec, running));
    }

    /// Where the exporter's own targets report, rendering the families of `selection`.
    fn report(&self, selection: &Arc<Selection>) -> Report {
        Report {
            store: self.store.clone(),
            statuses: self.statuses.clone(),
            telemetry: self.telemetry.clone(),
            selection: selection.clone(),
        }
    }

    /// The SDK configuration of `account`: with its role's credentials, which are assumed (or
    /// kept) here, when it has one.
    async fn account_sdk_config(
        &mut self,
        account: &Account,
        region: &str,
        config: &Config,
    ) -> (SdkConfig, Option<aws::Assumed>) {
        let Some(arn) = &account.role_arn else {
            return (aws::account_config(config.request_timeout, &self.overrides, None).await, None);
        };
        let spec = RoleSpec {
            role: Role { arn: arn.clone(), external_id: account.external_id.clone() },
            region: region.to_string(),
            request_timeout: config.request_timeout,
            selection: Arc::new(selection(&config.metrics)),
        };
        if let Some(role) = self.roles.get(&account.name).filter(|role| role.spec == spec) {
            return (role.config.clone(), Some(role.running.assumed.clone()));
        }
        let base = aws::account_config(spec.request_timeout, &self.overrides, None).await;
        let running = credentials::Running::start(&account.name, region, spec.role.clone(), &base, self.report(&spec.selection));
        let assumed = running.assumed.clone();
        let sdk_config = aws::account_config(spec.request_timeout, &self.overrides, Some(&assumed)).await;
        self.roles.insert(account.name.clone(), AccountRole { spec, running, config: sdk_config.clone() });
        (sdk_config, Some(assumed))
    }

    /// Makes the running scopes and collectors those of `config`: what is gone or changed stops
    /// and its series disappear, what is new or changed starts, the rest goes on untouched,
    /// counters and all. Nothing changes when `config` cannot be applied.
    pub async fn apply(&mut self, config: &Config) -> anyhow::Result<()> {
        let default_region = aws::default_region(&self.overrides).await;
        self.apply_listing_spec(config).await;
        let accounts = self.accounts(config);
        let mut desired: Vec<(String, &Account)> = Vec::new();
        for account in &accounts {
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
        // Scopes another replica owns are neither discovered nor polled here.
        let shard = self.shard.by(shard_by(config));
        desired.retain(|(region, account)| shard.owns_scope(&account.name, region));
        let wanted = |account: &str, region: &str, spec: &ScopeSpec| {
            desired.iter().any(|(r, a)| a.name == account && r == region && ScopeSpec::new(a, config, shard) == *spec)
        };
        let stale: Vec<(String, String)> =
            self.scopes.iter().filter(|((a, r), scope)| !wanted(a, r, &scope.spec)).map(|(key, _)| key.clone()).collect();
        for (account, region) in stale {
            if let Some(mut scope) = self.scopes.remove(&(account.clone(), region.clone())) {
                tracing::info!(account = %account, region = %region, "stopping the scope; its series are removed");
                scope.collectors.stop_all();
            }
        }
        // Roles of accounts that went, or changed, stop being renewed.
        self.roles
            .retain(|name, role| accounts.iter().any(|a| &a.name == name && a.role_arn.as_ref() == Some(&role.spec.role.arn)));
        let mut sdk_configs: HashMap<String, (SdkConfig, Option<aws::Assumed>)> = HashMap::new();
        let starting =
            desired.iter().filter(|(region, account)| !self.scopes.contains_key(&(account.name.clone(), region.clone()))).count();
        let spread = Duration::from_secs_f64(starting as f64 / SCOPE_STARTS_PER_SECOND).min(config.discovery_interval);
        for (region, account) in desired {
            let key = (account.name.clone(), region.clone());
            if !self.scopes.contains_key(&key) {
                let spec = ScopeSpec::new(account, config, shard);
                let (base, assumed) = match sdk_configs.get(&account.name) {
                    Some(base) => base.clone(),
                    None => {
                        // STS is asked in the account's first region, whichever of its scopes
                        // this replica runs, so that every replica names its credentials alike.
                        let first = account.regions.first().cloned().unwrap_or_else(|| region.clone());
                        let base = self.account_sdk_config(account, &first, config).await;
                        sdk_configs.insert(account.name.clone(), base.clone());
                        base
                    }
                };
                let context = Context {
                    store: self.store.clone(),
                    statuses: self.statuses.clone(),
                    readiness: self.readiness.clone(),
                    shard,
                    start_delay: spread.mul_f64(rand::random::<f64>()),
                    interval: spec.interval,
                    active_interval: spec.active_interval,
                    discovery_interval: spec.discovery_interval,
                    selection: spec.selection.clone(),
                    signals: self.signals.clone(),
                };
                let scope = Scope::new(&account.name, &region, &base, spec.limits, self.telemetry.clone())
                    .with_traces(self.traces.clone())
                    .with_metrics(self.metrics.clone())
                    .with_credentials(assumed);
                tracing::info!(account = %account.name, region = %region, "starting the scope's collectors");
                self.scopes.insert(key.clone(), RunningScope { spec, collectors: Collectors::new(scope, context) });
            }
            if let Some(scope) = self.scopes.get_mut(&key) {
                registry::collectors(&account.collectors, &mut scope.collectors);
                scope.collectors.stop_unnamed();
            }
        }
        self.apply_queues(config, &accounts).await;
        self.config = Some(config.clone());
        Ok(())
    }

    /// Starts, restarts and stops the events consumers as `config` says: each account's, and the
    /// organization's. Dropping one returns its accounts to interval polling.
    async fn apply_queues(&mut self, config: &Config, accounts: &[Account]) {
        let mut wanted: HashMap<String, QueueSpec> = accounts
            .iter()
            .filter_map(|a| {
                let spec =
                    QueueSpec::new(a.events.as_ref(), a.role_arn.as_deref(), a.external_id.as_deref(), config, self.shard)?;
                Some((a.name.clone(), spec))
            })
            .collect();
        if let Some(organization) = &config.organization
            && let Some(spec) = QueueSpec::new(organization.events.as_ref(), None, None, config, self.shard)
        {
            wanted.insert(ORGANIZATION.into(), spec);
        }
        self.queues.retain(|account, (spec, _, _)| wanted.get(account.as_str()) == Some(spec));
        for (account, spec) in wanted {
            if self.queues.contains_key(&account) {
                continue;
            }
            let mut queue_role = None;
            let (base, assumed) =
                match (&spec.events.role_arn, accounts.iter().find(|a| a.name == account && account != ORGANIZATION)) {
                    // The queue's own role, assumed with the exporter's credentials, wherever the
                    // queue's account is.
                    (Some(arn), _) => {
                        let role = Role { arn: arn.clone(), external_id: spec.events.external_id.clone() };
                        let own = aws::account_config(spec.request_timeout, &self.overrides, None).await;
                        let running = credentials::Running::start(
                            &account,
                            &spec.events.queue_region,
                            role,
                            &own,
                            self.report(&spec.selection),
                        );
                        let assumed = running.assumed.clone();
                        queue_role = Some(running);
                        (aws::account_config(spec.request_timeout, &self.overrides, Some(&assumed)).await, Some(assumed))
                    }
                    (None, Some(explicit)) => {
                        let region = explicit.regions.first().cloned().unwrap_or_else(|| spec.events.queue_region.clone());
                        self.account_sdk_config(explicit, &region, config).await
                    }
                    // The organization's queue is in the exporter's own account.
                    (None, None) => (aws::account_config(spec.request_timeout, &self.overrides, None).await, None),
                };
            let clients = QueueClients::new(
                &account,
                &base,
                &spec.events.queue_region,
                spec.request_timeout,
                events::WAIT,
                self.telemetry.clone(),
            );
            let parts = events::Parts {
                signals: self.signals.clone(),
                shard: self.shard.by(shard_by(config)),
                report: self.report(&spec.selection),
            };
            tracing::info!(account = %account, queue = %spec.events.queue_url, "starting the events consumer");
            let routes = (account == ORGANIZATION).then(|| self.routes.clone());
            let consumer = Consumer::new(clients, spec.events.clone(), spec.role_arn.as_deref(), routes, assumed, parts);
            self.queues.insert(account, (spec, events::Running::start(consumer), queue_role));
        }
    }
}
