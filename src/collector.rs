//! What every collector shares: the discovery loop, the round it is handed, and the polling tasks
//! of its targets.
//!
//! A collector covers one AWS service in one account and region. Each round it lists what exists,
//! publishes its discovery target's series, and tells the [`Round`] which targets of each kind it
//! wants; the round starts, updates and stops one polling task per target. Health, publishing,
//! readiness, jitter and sharding are all handled here, the same for every service, so that a
//! collector holds only what is particular to its service (see [`crate::registry`]).

use std::any::Any;
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use rand::Rng as _;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::aws::{CallError, Scope};
use crate::budget::{Class, Promote};
use crate::exposition::unix_seconds;
use crate::exposition::{Rendered, Selection};
use crate::readiness::{Readiness, ReadyToken};
use crate::shard::Shard;
use crate::signal::{Event, Mode, Route, Signals};
use crate::store::Store;
use crate::target::{DISCOVERY, Health, Outcome, Statuses, Target, TargetKey};

/// One AWS service's discovery in one account and region.
pub trait Collector: Send + 'static {
    /// The service's name: the `name` of its discovery target and the `service` of its calls.
    const SERVICE: &'static str;
    /// Its part of an account's configuration. A reload restarts the collector, and only it,
    /// when this changed.
    type Settings: Clone + PartialEq + Send + Sync + 'static;

    fn new(settings: Self::Settings) -> Self;

    /// Which of the service's targets an EventBridge event names, as these settings select them;
    /// `None` for events of other services and of types the collector does not know.
    fn route(settings: &Self::Settings, event: &Event) -> Option<Route>;

    /// One round of discovery: list what exists, [`Round::publish`] the discovery's own series,
    /// and [`Round::reconcile`] each kind of target with what was found.
    fn discover(&mut self, round: &mut Round) -> impl Future<Output = ()> + Send;
}

/// A random factor of ±10%, so that targets started together drift apart.
fn jitter() -> f64 {
    rand::rng().random_range(0.9..1.1)
}

/// How many discovery intervals a round that found nothing waits for the next. Most scopes of an
/// organization hold no pipeline and no Git sync: at the default 5 minutes, their four listings
/// (pipelines, repository links, connections, hosts) cost 16 calls an hour rather than 48. An
/// event naming something new still starts a round at once.
pub const EMPTY_DISCOVERY_FACTOR: u32 = 3;

/// The least time between two discovery rounds, so that a burst of events for pipelines not yet
/// known costs one round.
const MIN_DISCOVERY_GAP: Duration = Duration::from_secs(2);

/// What every task of a scope needs.
#[derive(Clone)]
pub struct Context {
    pub store: Arc<Store>,
    /// What the status page shows of each target.
    pub statuses: Arc<Statuses>,
    pub readiness: Arc<Readiness>,
    /// Which targets this replica polls; discovery still sees them all.
    pub shard: Shard,
    /// How long the scope waits before its first discovery: scopes starting together are spread.
    pub start_delay: Duration,
    pub interval: Duration,
    pub active_interval: Duration,
    pub discovery_interval: Duration,
    /// Which families targets render, and how.
    pub selection: Arc<Selection>,
    /// Where events wake targets and discovery, and each account's polling mode.
    pub signals: Arc<Signals>,
}

impl Context {
    /// How long a target waits after a poll: while its account's events flow, a target whose
    /// changes AWS announces waits for an event or `reconcile_interval`; otherwise it waits the
    /// active or idle interval.
    fn interval<T: Target>(&self, target: &T, mode: Mode) -> Duration {
        if target.empty() {
            self.empty_discovery_interval()
        } else if T::ANNOUNCED && mode.events {
            mode.reconcile_interval
        } else if target.active() {
            self.active_interval
        } else {
            self.interval
        }
    }

    /// The longest a target waits between polls in `mode`: [`Context::interval`] when idle, since
    /// a running target is polled sooner, never later.
    fn longest_interval<T: Target>(&self, target: &T, mode: Mode) -> Duration {
        if target.empty() {
            self.empty_discovery_interval()
        } else if T::ANNOUNCED && mode.events {
            mode.reconcile_interval
        } else {
            self.interval
        }
    }

    /// How often discovery runs in a scope where it found nothing, and empty lists are read there.
    fn empty_discovery_interval(&self) -> Duration {
        self.discovery_interval * EMPTY_DISCOVERY_FACTOR
    }
}

/// A collector's view of the scope it runs in, passed to each round of its discovery.
pub struct Round {
    scope: Scope,
    context: Context,
    /// Off once the collector is stopped by a reload: its tasks' results are then dropped.
    live: Arc<AtomicBool>,
    /// The discovery target's key and health.
    key: TargetKey,
    health: Health,
    /// What this round's discovery published, sent to the store once the round knows its pace.
    published: Option<(Result<(), CallError>, Rendered)>,
    /// Whether this round reconciled any target of its own (not a list every scope has).
    found: bool,
}

impl Round {
    fn new(scope: Scope, service: &'static str, context: Context, live: Arc<AtomicBool>) -> Round {
        let key = TargetKey {
            account: scope.account.clone(),
            region: scope.region.clone(),
            kind: DISCOVERY,
            service,
            name: service.into(),
        };
        Round { scope, context, live, key, health: Health::default(), published: None, found: false }
    }

    /// How often discovery runs: what a target reads only at discovery is read this often.
    pub fn discovery_interval(&self) -> Duration {
        self.context.discovery_interval
    }

    /// The clients of the account and region, within their request budget.
    pub fn scope(&self) -> &Scope {
        &self.scope
    }

    /// Where discovery writes its own series for [`Round::publish`], as the `metrics` section
    /// of the configuration says.
    pub fn rendered(&self) -> Rendered {
        Rendered::selected(&self.context.selection)
    }

    /// Records how this round's discovery calls went and the discovery target's own series
    /// (`rendered`); they are published with its health when the round ends.
    pub fn publish(&mut self, outcome: Result<(), &CallError>, rendered: Rendered) {
        self.published = Some((outcome.map_err(Clone::clone), rendered));
    }

    /// Ends the round: returns how long until the next one, and publishes the discovery target's
    /// series with that interval. A round that found nothing waits
    /// [`EMPTY_DISCOVERY_FACTOR`] intervals; a failed one, only the interval.
    fn finish(&mut self) -> Duration {
        let Some((outcome, mut rendered)) = self.published.take() else {
            return self.pace(true);
        };
        let pace = self.pace(outcome.is_err());
        self.health.record(&self.key, outcome.as_ref().map(|_| ()));
        self.health.expect_every(pace);
        self.health.render(&mut rendered, &self.key);
        publish(&self.context, &self.live, &self.key, rendered);
        if self.live.load(Ordering::Acquire) {
            self.context.statuses.set(&self.key, self.health.status(None, None));
        }
        pace
    }

    fn pace(&self, failed: bool) -> Duration {
        if self.found || failed { self.context.discovery_interval } else { self.context.empty_discovery_interval() }
    }

    /// Makes the running targets of one kind those of `desired`, by target name: starts a task
    /// for each new target, passes changed information to running ones, and, when `desired` is
    /// complete (discovery succeeded), stops the tasks of the targets it no longer holds and
    /// removes their series. Targets another shard owns are left to it.
    pub async fn reconcile<T: Target>(
        &mut self,
        targets: &mut Targets<T>,
        desired: HashMap<String, T::Info>,
        complete: bool,
        make: impl Fn(&str, watch::Receiver<T::Info>) -> T,
    ) {
        let mut desired = desired;
        if !T::EVERY_SCOPE && !desired.is_empty() {
            self.found = true;
        }
        desired.retain(|name, _| self.context.shard.owns(&self.target_key::<T>(name.clone())));
        if complete {
            let gone: Vec<String> = targets.running.keys().filter(|name| !desired.contains_key(*name)).cloned().collect();
            for name in gone {
                if let Some((handle, _)) = targets.running.remove(&name) {
                    handle.abort();
                    let _ = handle.await;
                    let key = self.target_key::<T>(name);
                    tracing::info!(target_key = %key, "no longer discovered; its series are removed");
                    self.context.store.remove(&key);
                    self.context.statuses.remove(&key);
                }
            }
        }
        for (name, info) in desired {
            match targets.running.get(&name) {
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
                        self.scope.clone(),
                        self.target_key::<T>(name.clone()),
                        target,
                        self.context.clone(),
                        self.live.clone(),
                        self.context.readiness.token(),
                    );
                    targets.running.insert(name, (tokio::spawn(task), sender));
                }
            }
        }
    }

    fn target_key<T: Target>(&self, name: String) -> TargetKey {
        TargetKey {
            account: self.key.account.clone(),
            region: self.key.region.clone(),
            kind: T::KIND,
            service: self.key.service,
            name,
        }
    }
}

/// The polling tasks of one kind of target, by target name, with the channel that passes each
/// what discovery learns of it. A collector keeps one per kind; dropping it stops them.
pub struct Targets<T: Target> {
    running: HashMap<String, (JoinHandle<()>, watch::Sender<T::Info>)>,
    kind: PhantomData<fn() -> T>,
}

impl<T: Target> Default for Targets<T> {
    fn default() -> Self {
        Targets { running: HashMap::new(), kind: PhantomData }
    }
}

impl<T: Target> Drop for Targets<T> {
    fn drop(&mut self) {
        for (handle, _) in self.running.values() {
            handle.abort();
        }
    }
}

/// Hands a target's series to the store, unless its collector was stopped meanwhile or another
/// shard owns the target (discovery runs in every shard, but one publishes each target's series).
fn publish(context: &Context, live: &AtomicBool, key: &TargetKey, rendered: Rendered) {
    if context.shard.owns(key) {
        context.store.update_if(key, rendered, live);
    }
}

/// Polls one target until its task is aborted or the target is gone: at its interval, or at once
/// when an event names it.
// Not an async fn, on purpose: see the comment on its body.
#[allow(clippy::manual_async_fn)]
fn run_target<T: Target>(
    scope: Scope,
    key: TargetKey,
    mut target: T,
    context: Context,
    live: Arc<AtomicBool>,
    mut first_poll: ReadyToken,
) -> impl Future<Output = ()> + Send {
    // An async block rather than an async fn: an async fn's future keeps its arguments apart from
    // the body's variables, so each task would hold the target, its scope and its key twice.
    // This task lives as long as its target; the block keeps them once (at 2,000 pipelines, a
    // task took 3.8 KiB as an async fn).
    async move {
        let mut health = Health::default();
        let registration = context.signals.register(&key);
        let mut mode = context.signals.mode(&key.account);
        // The first poll, and polls an event asked for, go before scheduled ones in the budget's
        // queue; a follow-up goes after them (see [`crate::budget`]).
        let (mut first, mut follow_up) = (true, false);
        let mut held = None;
        // A call of this target's that waits in the budget's queue when an event names the target
        // goes ahead.
        let wake = registration.wake.clone();
        let scope =
            scope.promoted_by(Arc::new(Promote { changed: wake.signalled(), urgent: Box::new(move || wake.is_pending()) }));
        loop {
            // The events this poll answers; events arriving while it runs make the next one due.
            let signalled = registration.wake.take();
            let started = Instant::now();
            let class = match (first || signalled.is_some(), follow_up) {
                (_, true) => Class::Deferred,
                (true, false) => Class::Urgent,
                (false, false) => Class::Scheduled,
            };
            // The SDK's request futures are several kilobytes. Boxed, they take memory only while a
            // poll runs; inline, every idle target's task would hold that much between polls (7 MiB
            // more resident at 1,000 pipelines in the benchmark).
            // The scope's SDK clients, kept until the next poll unless the target turns out empty.
            let clients = held.take().unwrap_or_else(|| scope.hold());
            match Box::pin(target.poll(&scope.with_class(class), &key)).await {
                Outcome::Polled => health.succeeded(&key),
                Outcome::Failed(err) => health.failed(&key, &err),
                Outcome::Gone => {
                    tracing::info!(target_key = %key, "target no longer exists; its series are removed");
                    context.store.remove(&key);
                    context.statuses.remove(&key);
                    return;
                }
            }
            held = (!target.empty()).then_some(clients);
            health.expect_every(context.longest_interval(&target, *mode.borrow()));
            let mut rendered = Rendered::selected(&context.selection);
            target.render(&mut rendered, &key);
            health.render(&mut rendered, &key);
            publish(&context, &live, &key, rendered);
            if let Some((at, observe)) = signalled {
                observe(SystemTime::now().duration_since(at).unwrap_or_default());
            }
            first = false;
            follow_up = target.follow_up();
            if follow_up {
                continue;
            }
            first_poll.done();
            // The jitter is drawn once per poll, so that a change of mode moves the next poll to the
            // same point of the new interval.
            let jitter = jitter();
            loop {
                let interval = context.interval(&target, *mode.borrow_and_update()).mul_f64(jitter);
                if live.load(Ordering::Acquire) {
                    let next_poll = unix_seconds(SystemTime::now()) + interval.saturating_sub(started.elapsed()).as_secs_f64();
                    context.statuses.set(&key, health.status(target.state(), Some(next_poll)));
                }
                tokio::select! {
                    () = tokio::time::sleep_until(started + interval) => break,
                    () = registration.wake.notified() => break,
                    changed = mode.changed() => {
                        // The sender lives as long as the signals; without it, the interval stands.
                        if changed.is_err() {
                            tokio::time::sleep_until(started + interval).await;
                            break;
                        }
                        // Events starting to flow lengthen the wait at once; the interval exported
                        // follows now, not at the next poll an hour later, so that the target is
                        // not judged stale meanwhile.
                        let longest = context.longest_interval(&target, *mode.borrow());
                        if health.interval() != Some(longest) {
                            health.expect_every(longest);
                            let mut rendered = Rendered::selected(&context.selection);
                            target.render(&mut rendered, &key);
                            health.render(&mut rendered, &key);
                            publish(&context, &live, &key, rendered);
                        }
                    }
                }
            }
        }
    }
}

/// Runs one collector's discovery every `discovery_interval`, or sooner when an event names a
/// target it does not run yet, for as long as its task lives.
async fn run_collector<C: Collector>(
    settings: C::Settings,
    mut round: Round,
    discover: Arc<Notify>,
    mut first_round: ReadyToken,
) {
    let mut collector = C::new(settings);
    tokio::time::sleep(round.context.start_delay).await;
    loop {
        // Until the account's role is assumed there is nothing to discover with: the
        // credentials' own target says why, and the first round counts as done, so that one
        // account's missing role does not hold the exporter's readiness.
        if round.scope.credentials.as_ref().is_some_and(|c| !c.ready()) {
            first_round.done();
            round.scope.credentials_ready().await;
        }
        let started = Instant::now();
        round.found = false;
        // Boxed for the reason a target's poll is: the SDK's request futures make a discovery's
        // state several kilobytes, which an inline call would keep in every scope's idle task
        // (2.1 and 3.5 KiB for the two collectors), while the box lives only during a round.
        Box::pin(collector.discover(&mut round)).await;
        let pace = round.finish();
        first_round.done();
        tokio::select! {
            () = tokio::time::sleep(pace.mul_f64(jitter())) => {}
            () = discover.notified() => tokio::time::sleep_until(started + MIN_DISCOVERY_GAP).await,
        }
    }
}

/// A running collector, and the settings it was started with.
struct Running {
    settings: Box<dyn Any + Send + Sync>,
    live: Arc<AtomicBool>,
    task: JoinHandle<()>,
}

/// The collectors of one account and region. [`crate::registry::collectors`] names each one to
/// [`Collectors::run`] on every start and reload; the scheduler then calls
/// [`Collectors::stop_unnamed`].
pub struct Collectors {
    scope: Scope,
    context: Context,
    running: HashMap<&'static str, Running>,
    named: HashSet<&'static str>,
}

impl Collectors {
    pub fn new(scope: Scope, context: Context) -> Collectors {
        Collectors { scope, context, running: HashMap::new(), named: HashSet::new() }
    }

    /// The region these collectors poll.
    pub fn region(&self) -> &str {
        &self.scope.region
    }

    /// Keeps collector `C` running with `settings`: starts it if it is not running, restarts it
    /// if it runs with other settings, and leaves it alone otherwise, counters and all.
    pub fn run<C: Collector>(&mut self, settings: &C::Settings) {
        self.named.insert(C::SERVICE);
        if let Some(running) = self.running.get(C::SERVICE) {
            if running.settings.downcast_ref::<C::Settings>() == Some(settings) {
                return;
            }
            tracing::info!(account = %self.scope.account, region = %self.scope.region, service = C::SERVICE, "settings changed; restarting the collector");
            self.stop(C::SERVICE);
        }
        let live = Arc::new(AtomicBool::new(true));
        let round = Round::new(self.scope.clone(), C::SERVICE, self.context.clone(), live.clone());
        let discover = Arc::new(Notify::new());
        let routed = settings.clone();
        self.context.signals.add_collector(
            &self.scope.account,
            &self.scope.region,
            C::SERVICE,
            Arc::new(move |event| C::route(&routed, event)),
            discover.clone(),
        );
        let task = tokio::spawn(run_collector::<C>(settings.clone(), round, discover, self.context.readiness.token()));
        self.running.insert(C::SERVICE, Running { settings: Box::new(settings.clone()), live, task });
    }

    /// Stops the collectors that were not named since the last call, and starts counting anew.
    pub fn stop_unnamed(&mut self) {
        let unnamed: Vec<&'static str> = self.running.keys().filter(|s| !self.named.contains(*s)).copied().collect();
        for service in unnamed {
            self.stop(service);
        }
        self.named.clear();
    }

    /// Stops every collector and removes their series.
    pub fn stop_all(&mut self) {
        let services: Vec<&'static str> = self.running.keys().copied().collect();
        for service in services {
            self.stop(service);
        }
    }

    fn stop(&mut self, service: &'static str) {
        let Some(running) = self.running.remove(service) else { return };
        // Order matters: once `live` is off no update of this collector reaches the store, so the
        // series removed next cannot come back from a task that is still finishing a poll.
        running.live.store(false, Ordering::Release);
        running.task.abort();
        self.context.signals.remove_collector(&self.scope.account, &self.scope.region, service);
        let (account, region) = (&self.scope.account, &self.scope.region);
        let others = |key: &TargetKey| !(key.account == *account && key.region == *region && key.service == service);
        self.context.store.retain(others);
        self.context.statuses.retain(others);
    }
}

impl Drop for Collectors {
    fn drop(&mut self) {
        for (service, running) in &self.running {
            running.task.abort();
            self.context.signals.remove_collector(&self.scope.account, &self.scope.region, service);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use aws_config::{BehaviorVersion, Region, SdkConfig};

    use super::*;
    use crate::aws::Limits;
    use crate::exposition::{Family, Format, Kind};
    use crate::telemetry::Telemetry;

    static VALUE: Family = Family { name: "t_value", help: "What discovery said of the target.", kind: Kind::Gauge };

    /// A target that never calls AWS and exports what discovery last told it.
    struct Fake(watch::Receiver<u32>);

    impl Target for Fake {
        const KIND: &'static str = "fake";
        type Info = u32;

        async fn poll(&mut self, _: &Scope, _: &TargetKey) -> Outcome {
            Outcome::Polled
        }

        fn render(&self, rendered: &mut Rendered, key: &TargetKey) {
            rendered.sample(&VALUE, &[("name", &key.name)], f64::from(*self.0.borrow()));
        }

        fn active(&self) -> bool {
            false
        }
    }

    fn round(store: &Arc<Store>) -> Round {
        let sdk = SdkConfig::builder().behavior_version(BehaviorVersion::latest()).region(Region::new("us-east-1")).build();
        let limits = Limits { max_concurrent_requests: 1, requests_per_second: 1.0, burst: 1 };
        let scope = Scope::new("a", "us-east-1", &sdk, limits, Arc::new(Telemetry::new(0, 1)));
        let context = Context {
            store: store.clone(),
            statuses: Arc::new(Statuses::default()),
            readiness: Arc::new(Readiness::new(store.clone())),
            shard: Shard::default(),
            start_delay: Duration::ZERO,
            interval: Duration::from_millis(10),
            active_interval: Duration::from_millis(10),
            discovery_interval: Duration::from_millis(10),
            selection: Arc::default(),
            signals: Arc::default(),
        };
        Round::new(scope, "svc", context, Arc::new(AtomicBool::new(true)))
    }

    /// The `t_value` lines of the store once they equal `expected`, or a failure after 5 s.
    async fn expect(store: &Store, expected: &str) {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            store.assemble();
            let body = store.body(Format::Text);
            let lines: String = body.lines().filter(|l| l.starts_with("t_value")).map(|l| format!("{l}\n")).collect();
            if lines == expected {
                return;
            }
            assert!(Instant::now() < deadline, "expected\n{expected}got\n{body}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn desired(entries: &[(&str, u32)]) -> HashMap<String, u32> {
        entries.iter().map(|(name, info)| (name.to_string(), *info)).collect()
    }

    #[tokio::test]
    async fn reconcile_starts_updates_and_stops_targets_only_on_a_complete_discovery() {
        let store = Store::new();
        let mut round = round(&store);
        let mut targets = Targets::<Fake>::default();
        let make = |_: &str, info| Fake(info);

        round.reconcile(&mut targets, desired(&[("a", 1), ("b", 2)]), true, make).await;
        expect(&store, "t_value{name=\"a\"} 1\nt_value{name=\"b\"} 2\n").await;

        // An incomplete discovery (a listing failed) updates what it found and stops nothing.
        round.reconcile(&mut targets, desired(&[("a", 5)]), false, make).await;
        expect(&store, "t_value{name=\"a\"} 5\nt_value{name=\"b\"} 2\n").await;
        assert_eq!(targets.running.len(), 2);

        // A complete one stops what it no longer lists and removes its series at once.
        round.reconcile(&mut targets, desired(&[("a", 5), ("c", 3)]), true, make).await;
        expect(&store, "t_value{name=\"a\"} 5\nt_value{name=\"c\"} 3\n").await;
        let mut names: Vec<&String> = targets.running.keys().collect();
        names.sort();
        assert_eq!(names, ["a", "c"]);
    }

    #[tokio::test]
    async fn a_stopped_collector_publishes_nothing_more() {
        let store = Store::new();
        let mut round = round(&store);
        let mut targets = Targets::<Fake>::default();
        round.reconcile(&mut targets, desired(&[("a", 1)]), true, |_, info| Fake(info)).await;
        expect(&store, "t_value{name=\"a\"} 1\n").await;
        round.live.store(false, Ordering::Release);
        store.retain(|key| key.service != "svc");
        round.reconcile(&mut targets, desired(&[("a", 2), ("b", 1)]), true, |_, info| Fake(info)).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        expect(&store, "").await;
    }
}
