//! What a polled object is to the rest of the exporter: its identity, what one poll of it
//! returns, and whether its polls succeed.
//!
//! Collectors implement [`Target`] for their kinds of object; the scheduler and the store handle
//! every kind the same way through it, so neither names a service. Each kind of target declares
//! its own `kind` label, which is how a new kind is added without touching them.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use crate::aws::{self, CallError, Scope};
use crate::exposition::{Family, Kind, Rendered, unix_seconds};

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

pub static TARGET_INTERVAL: Family = Family {
    name: "codepipeline_exporter_target_interval_seconds",
    help: "The longest the target waits between two polls in its current mode, in seconds: a target is stale when its last success is older than a few of these.",
    kind: Kind::Gauge,
};

/// The `kind` of every service's discovery target, whose `name` is the service.
pub const DISCOVERY: &str = "discovery";

/// The stable identity of one polled object.
///
/// Fields compare in their order, so the store keeps a family's series sorted by account,
/// region, kind and name. `service` comes after `kind`, which it follows from, so that it does not
/// change that order; it says which collector owns the target, so that a collector restarted by a
/// reload removes exactly its own series.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TargetKey {
    pub account: Arc<str>,
    pub region: Arc<str>,
    pub kind: &'static str,
    pub service: &'static str,
    pub name: String,
}

impl fmt::Display for TargetKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}/{}", self.account, self.region, self.kind, self.name)
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

/// What the scheduler needs of a polled object. The scheduler owns the timing, the health and
/// the publishing; the target owns its last snapshot and its counters.
pub trait Target: Send + 'static {
    /// The `kind` label of this type's targets.
    const KIND: &'static str;
    /// Whether AWS announces changes of these objects as EventBridge events. While an account's
    /// events flow, such targets are polled when an event names them and every
    /// `reconcile_interval`, instead of at their interval.
    const ANNOUNCED: bool = false;
    /// Whether every scope has one of these whatever discovery finds (the list of its
    /// connections): such a target does not make a scope's discovery count as finding something.
    const EVERY_SCOPE: bool = false;
    /// What discovery tells a running target of its object (a pipeline's type, a sync's
    /// configuration); a change reaches the target without restarting it.
    type Info: Clone + PartialEq + Send + Sync + 'static;
    /// Calls AWS once and updates what the target knows.
    fn poll(&mut self, scope: &Scope, key: &TargetKey) -> impl Future<Output = Outcome> + Send;
    /// Renders the target's series from what it knows.
    fn render(&self, rendered: &mut Rendered, key: &TargetKey);
    /// Whether something is running (an execution, a sync in progress), which polls it at the
    /// active interval rather than the idle one.
    fn active(&self) -> bool;
    /// Whether the object is a list that was empty at the last successful poll (no connection,
    /// no host). An empty list is read at the pace of an empty scope's discovery (see
    /// [`crate::collector`]) rather than every interval, and keeps no SDK client between polls:
    /// most scopes of an organization hold nothing, and pay for nothing.
    fn empty(&self) -> bool {
        false
    }
    /// Whether the poll just published left more to read at once: a target whose first poll
    /// publishes what matters most (a pipeline's state) before it reads the rest.
    fn follow_up(&self) -> bool {
        false
    }
    /// The status of the object in a word, for the status page's summary (a pipeline's or a
    /// sync's status); `None` for targets that have none.
    fn state(&self) -> Option<String> {
        None
    }
}

/// The success or failure of a target's polls, and the error already logged for it.
#[derive(Debug, Default)]
pub struct Health {
    up: bool,
    last_success: Option<f64>,
    /// The error of the last poll while it fails, for the log and the status page.
    last_error: Option<CallError>,
    /// How long the target may wait between polls, which is what staleness is judged against:
    /// one fixed threshold either pages for every idle target polled rarely (events mode, a long
    /// reconcile) or misses targets polled often.
    interval: Option<Duration>,
}

impl Health {
    pub fn succeeded(&mut self, key: &TargetKey) {
        if let Some(err) = self.last_error.take() {
            tracing::info!(target_key = %key, previous_error = %err.code, "target recovered");
        }
        self.up = true;
        self.last_success = Some(unix_seconds(SystemTime::now()));
    }

    /// Logs an error only when it differs from the last one, so that a permanent failure (access
    /// denied, a deleted pipeline) is logged once per state change rather than on every poll.
    pub fn failed(&mut self, key: &TargetKey, err: &CallError) {
        self.up = false;
        if self.last_error.as_ref().map(|e| e.code.as_str()) != Some(err.code.as_str()) {
            if aws::is_permanent(&err.code) {
                tracing::error!(target_key = %key, code = %err.code, error = %err.detail, "poll failed; logged again only when the error changes");
            } else {
                tracing::warn!(target_key = %key, code = %err.code, error = %err.detail, "poll failed; last known values are kept");
            }
        }
        self.last_error = Some(err.clone());
    }

    /// Sets the longest wait between this target's polls, exported with its health.
    pub fn expect_every(&mut self, interval: Duration) {
        self.interval = Some(interval);
    }

    /// The longest wait between polls last set.
    pub fn interval(&self) -> Option<Duration> {
        self.interval
    }

    /// What the status page shows of the target: its health, its `state` and when it is polled next.
    pub fn status(&self, state: Option<String>, next_poll: Option<f64>) -> Status {
        Status { up: self.up, last_success: self.last_success, next_poll, error: self.last_error.clone(), state }
    }

    /// Records the outcome of a call: success, or a failure that keeps the last known values.
    pub fn record(&mut self, key: &TargetKey, outcome: Result<(), &CallError>) {
        match outcome {
            Ok(()) => self.succeeded(key),
            Err(err) => self.failed(key, err),
        }
    }

    pub fn render(&self, rendered: &mut Rendered, key: &TargetKey) {
        let labels = [("account", &*key.account), ("region", &*key.region), ("kind", key.kind), ("name", key.name.as_str())];
        rendered.sample(&TARGET_UP, &labels, if self.up { 1.0 } else { 0.0 });
        if let Some(at) = self.last_success {
            rendered.sample(&TARGET_LAST_SUCCESS, &labels, at);
        }
        if let Some(interval) = self.interval {
            rendered.sample(&TARGET_INTERVAL, &labels, interval.as_secs_f64());
        }
    }
}

/// What the status page shows of one target.
#[derive(Debug, Clone, PartialEq)]
pub struct Status {
    pub up: bool,
    /// Seconds since the epoch.
    pub last_success: Option<f64>,
    /// When the target is polled next, in seconds since the epoch; `None` for discovery, which
    /// runs on its own interval.
    pub next_poll: Option<f64>,
    /// The last poll's error, while the target is down.
    pub error: Option<CallError>,
    /// What the target reports of its object, such as a pipeline's or a sync's status.
    pub state: Option<String>,
}

/// The status of every target, as the polling tasks last reported it. Each poll replaces its
/// target's entry under one short lock; the status page copies them only when it is opened.
#[derive(Debug, Default)]
pub struct Statuses(Mutex<BTreeMap<TargetKey, Status>>);

impl Statuses {
    pub fn set(&self, key: &TargetKey, status: Status) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).insert(key.clone(), status);
    }

    pub fn remove(&self, key: &TargetKey) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).remove(key);
    }

    /// Forgets the targets `keep` rejects.
    pub fn retain(&self, keep: impl Fn(&TargetKey) -> bool) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).retain(|key, _| keep(key));
    }

    /// Every target's status, ordered by key.
    pub fn snapshot(&self) -> Vec<(TargetKey, Status)> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).iter().map(|(k, s)| (k.clone(), s.clone())).collect()
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
        let key = TargetKey { account: "a".into(), region: "r".into(), kind: "pipeline", service: "s", name: "p".into() };
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
