//! The scheduler: discovery and polling on the exporter's own timers.
//!
//! Each account and region runs one discovery task, which keeps one polling task per target.
//! A polling task owns everything about its target (the last snapshot, the counters, the health),
//! so there is no shared state to lock besides the store it publishes to. Scrapes never wait on
//! any of this. The number of tasks is bounded by the number of targets; the number of AWS calls
//! in flight by each scope's permits.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use aws_smithy_types::error::display::DisplayErrorContext;
use rand::Rng as _;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::aws::{self, Overrides, Scope};
use crate::codepipeline::{self, Counters, PipelineState, Summary};
use crate::config::{self, Config};
use crate::exposition::{Family, Kind};
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
/// target's first poll, whether it succeeded or not. Once that is done, the store assembles the
/// first complete exposition before readiness is reported, so a ready exporter never serves a
/// partial first scrape. Readiness then stays on.
#[derive(Default)]
pub struct Readiness {
    pending: AtomicUsize,
    ready: AtomicBool,
    store: Arc<Store>,
}

/// One piece of the first round; it counts as done when dropped, also when its task is aborted.
pub struct ReadyToken(Option<Arc<Readiness>>);

impl Readiness {
    pub fn new(store: Arc<Store>) -> Readiness {
        Readiness { pending: AtomicUsize::new(0), ready: AtomicBool::new(false), store }
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
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
            && !readiness.is_ready()
        {
            readiness.store.assemble();
            readiness.ready.store(true, Ordering::Release);
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
    fn failed(&mut self, key: &TargetKey, code: &str, error: &dyn std::fmt::Display) {
        self.up = false;
        if self.last_error.as_deref() != Some(code) {
            if aws::is_permanent(code) {
                tracing::error!(target_key = %key, code, error = %error, "poll failed; logged again only when the error changes");
            } else {
                tracing::warn!(target_key = %key, code, error = %error, "poll failed; last known values are kept");
            }
            self.last_error = Some(code.to_string());
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

/// The interval with ±10% of random jitter, so that targets started together drift apart.
fn jittered(interval: Duration) -> Duration {
    interval.mul_f64(rand::rng().random_range(0.9..1.1))
}

/// Settings every task of a scope needs.
#[derive(Clone)]
struct Context {
    store: Arc<Store>,
    readiness: Arc<Readiness>,
    interval: Duration,
    discovery_interval: Duration,
}

/// The running scheduler. Dropping it stops every discovery and polling task.
pub struct Scheduler {
    scopes: Vec<JoinHandle<()>>,
}

impl Drop for Scheduler {
    fn drop(&mut self) {
        for scope in &self.scopes {
            scope.abort();
        }
    }
}

impl Scheduler {
    /// Builds the AWS clients of every account and region in `config` and starts polling.
    pub async fn start(
        config: &Config,
        overrides: &Overrides,
        store: Arc<Store>,
        telemetry: Arc<Telemetry>,
        readiness: Arc<Readiness>,
    ) -> anyhow::Result<Scheduler> {
        let context = Context { store, readiness, interval: config.interval, discovery_interval: config.discovery_interval };
        let mut scopes = Vec::new();
        let default_region = aws::default_region(overrides).await;
        for account in &config.accounts {
            let regions = if account.regions.is_empty() {
                vec![default_region.clone().with_context(|| {
                    format!("account {:?} names no regions and the environment has none: set AWS_REGION or list regions in the configuration file", account.name)
                })?]
            } else {
                account.regions.clone()
            };
            let base = aws::account_config(account, config.request_timeout, overrides).await;
            for region in regions {
                let scope = Scope::new(&account.name, &region, &base, config.max_concurrent_requests, telemetry.clone());
                tracing::info!(account = %account.name, region = %region, "polling CodePipeline");
                let token = context.readiness.token();
                scopes.push(tokio::spawn(run_codepipeline(scope, account.codepipeline.clone(), context.clone(), token)));
            }
        }
        Ok(Scheduler { scopes })
    }
}

/// A polling task and the channel that passes it what discovery learns of its pipeline.
struct PipelineTask {
    handle: JoinHandle<()>,
    summary: watch::Sender<Option<Summary>>,
}

/// Discovers the pipelines of one scope and keeps one polling task for each.
async fn run_codepipeline(scope: Scope, settings: config::CodePipeline, context: Context, mut first_round: ReadyToken) {
    let discovery_key = TargetKey {
        account: scope.account.clone(),
        region: scope.region.clone(),
        kind: TargetKind::Discovery,
        name: "codepipeline".into(),
    };
    let mut tasks: HashMap<String, PipelineTask> = HashMap::new();
    let mut health = Health::default();
    let spawn = |name: &str, summary: Option<Summary>, explicit: bool| {
        let (sender, receiver) = watch::channel(summary);
        let key = TargetKey {
            account: scope.account.clone(),
            region: scope.region.clone(),
            kind: TargetKind::Pipeline,
            name: name.to_string(),
        };
        let handle =
            tokio::spawn(poll_pipeline(scope.clone(), key, receiver, explicit, context.clone(), context.readiness.token()));
        PipelineTask { handle, summary: sender }
    };
    for name in &settings.pipelines {
        tasks.insert(name.clone(), spawn(name, None, true));
    }
    loop {
        if settings.discover {
            match codepipeline::list_pipelines(&scope).await {
                Ok(summaries) => {
                    health.succeeded(&discovery_key);
                    let selected: HashMap<String, Summary> = summaries
                        .into_iter()
                        .filter(|s| settings.selects(&s.name) || settings.pipelines.contains(&s.name))
                        .map(|s| (s.name.clone(), s))
                        .collect();
                    let gone: Vec<String> = tasks
                        .keys()
                        .filter(|name| !selected.contains_key(*name) && !settings.pipelines.contains(name))
                        .cloned()
                        .collect();
                    for name in gone {
                        if let Some(task) = tasks.remove(&name) {
                            task.handle.abort();
                            let _ = task.handle.await;
                            let key = TargetKey {
                                account: scope.account.clone(),
                                region: scope.region.clone(),
                                kind: TargetKind::Pipeline,
                                name,
                            };
                            tracing::info!(target_key = %key, "pipeline no longer listed; its series are removed");
                            context.store.remove(&key);
                        }
                    }
                    for (name, summary) in selected {
                        match tasks.get(&name) {
                            Some(task) if !task.handle.is_finished() => {
                                task.summary.send_if_modified(|old| {
                                    let changed = old.as_ref() != Some(&summary);
                                    *old = Some(summary);
                                    changed
                                });
                            }
                            _ => {
                                let explicit = settings.pipelines.contains(&name);
                                tasks.insert(name.clone(), spawn(&name, Some(summary), explicit));
                            }
                        }
                    }
                }
                Err(err) => {
                    let code = aws::error_code(&err);
                    health.failed(&discovery_key, &code, &DisplayErrorContext(&err));
                }
            }
            let mut rendered = Rendered::default();
            health.render(&mut rendered, &discovery_key);
            context.store.update(&discovery_key, rendered);
        }
        first_round.done();
        tokio::time::sleep(jittered(context.discovery_interval)).await;
    }
}

/// Polls one pipeline until its task is aborted, or until AWS says a discovered pipeline is gone.
async fn poll_pipeline(
    scope: Scope,
    key: TargetKey,
    summary: watch::Receiver<Option<Summary>>,
    explicit: bool,
    context: Context,
    mut first_poll: ReadyToken,
) {
    let mut counters = Counters::default();
    let mut health = Health::default();
    let mut last: Option<PipelineState> = None;
    loop {
        match codepipeline::get_state(&scope, &key.name).await {
            Ok(state) => {
                counters.observe(&state);
                last = Some(state);
                health.succeeded(&key);
            }
            Err(err) => {
                let code = aws::error_code(&err);
                if code == "PipelineNotFoundException" {
                    // A deleted pipeline's last values would be wrong, not just stale.
                    last = None;
                    if !explicit {
                        tracing::info!(target_key = %key, "pipeline deleted; its series are removed");
                        context.store.remove(&key);
                        return;
                    }
                }
                health.failed(&key, &code, &DisplayErrorContext(&err));
            }
        }
        let mut rendered = Rendered::default();
        if let Some(state) = &last {
            codepipeline::render(
                &mut rendered,
                &key.account,
                &key.region,
                &key.name,
                summary.borrow().as_ref(),
                state,
                &counters,
            );
        }
        health.render(&mut rendered, &key);
        context.store.update(&key, rendered);
        first_poll.done();
        tokio::time::sleep(jittered(context.interval)).await;
    }
}
