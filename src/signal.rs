//! How an event reaches the targets it names: the routes the collectors declare, a wake-up for
//! each polling task, and each account's polling mode.
//!
//! Events are signals, never the state: AWS delivers them at least once, maybe late and out of
//! order. An event only makes its targets due for a poll at once, and the poll reads the state. A
//! wake-up holds one permit, so any number of events for a target before its poll starts cost one
//! poll. Each collector says which of its targets an event names ([`Route`]); the events consumer
//! ([`crate::events`]) and the polling loop ([`crate::collector`]) meet here without knowing a
//! service.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::sync::{Notify, watch};

use crate::target::TargetKey;

/// An EventBridge event, as the collectors route it: its source, type and detail.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub source: String,
    pub detail_type: String,
    pub detail: serde_json::Value,
}

impl Event {
    /// A string member of the detail.
    pub fn detail(&self, name: &str) -> Option<&str> {
        self.detail.get(name).and_then(serde_json::Value::as_str)
    }
}

/// What an event means to one collector.
#[derive(Debug, Clone, PartialEq)]
pub enum Route {
    /// It names these targets of the collector, by kind and name: they are polled at once. When
    /// none of them is running yet and the collector selects them, its discovery runs.
    Targets(Vec<(&'static str, String)>),
    /// It names an object the configuration does not select.
    NotSelected,
}

/// How a collector routes events: `None` for events that are not about its service.
pub type Router = Arc<dyn Fn(&Event) -> Option<Route> + Send + Sync>;

/// Where the delay from an event to the publication of its poll is reported.
pub type Observe = Arc<dyn Fn(Duration) + Send + Sync>;

/// A scope's collector, as events find it: by account, region and service.
type CollectorKey = (Arc<str>, Arc<str>, &'static str);

/// How an account's targets are scheduled: by interval, or by its events and `reconcile_interval`.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Mode {
    /// Whether the account's events consumer last read its queue successfully.
    pub events: bool,
    pub reconcile_interval: Duration,
}

/// One polling task's wake-up.
#[derive(Default)]
pub struct Wake {
    notify: Notify,
    /// Notified with every signal, for a call of the target that waits for the request budget.
    signalled: Arc<Notify>,
    /// The oldest event time among the signals not yet polled, and where to report the delay.
    pending: Mutex<Option<(SystemTime, Observe)>>,
}

impl Wake {
    /// Makes the target due now; `observe` gets the time from `at` to the poll's publication.
    pub fn signal(&self, at: SystemTime, observe: Observe) {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        if pending.as_ref().is_none_or(|(oldest, _)| at < *oldest) {
            *pending = Some((at, observe));
        }
        drop(pending);
        self.notify.notify_one();
        self.signalled.notify_waiters();
    }

    /// Notified with every signal: a waiting call of the target then becomes urgent.
    pub fn signalled(&self) -> Arc<Notify> {
        self.signalled.clone()
    }

    /// Waits for a signal.
    pub async fn notified(&self) {
        self.notify.notified().await;
    }

    /// Takes what signals are pending, as the poll they asked for starts.
    pub fn take(&self) -> Option<(SystemTime, Observe)> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    /// Whether a signal waits for the next poll.
    pub fn is_pending(&self) -> bool {
        self.pending.lock().unwrap_or_else(|e| e.into_inner()).is_some()
    }
}

/// The routes, the wake-ups and the modes of every scope. Shared by the scheduler's tasks.
#[derive(Default)]
pub struct Signals {
    wakes: Mutex<HashMap<TargetKey, Arc<Wake>>>,
    /// Each collector's router and discovery wake-up, by account, region and service.
    collectors: Mutex<HashMap<CollectorKey, (Router, Arc<Notify>)>>,
    modes: Mutex<HashMap<Arc<str>, watch::Sender<Mode>>>,
}

/// Removes a polling task's wake-up when the task ends, however it ends.
pub struct Registration<'a> {
    signals: &'a Signals,
    key: TargetKey,
    pub wake: Arc<Wake>,
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        let mut wakes = self.signals.wakes.lock().unwrap_or_else(|e| e.into_inner());
        if wakes.get(&self.key).is_some_and(|wake| Arc::ptr_eq(wake, &self.wake)) {
            wakes.remove(&self.key);
        }
    }
}

/// Why [`Signals::deliver`] did nothing with an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ignored {
    /// No collector knows its source and type.
    UnknownType,
    /// It names a region, or an object, that the configuration does not select.
    NotSelected,
    /// Another shard polls what it names.
    OtherShard,
    /// A known type whose detail lacks what names its object.
    Malformed,
}

impl Signals {
    /// Registers a polling task's wake-up for as long as the returned guard lives.
    pub fn register(&self, key: &TargetKey) -> Registration<'_> {
        let wake = Arc::new(Wake::default());
        self.wakes.lock().unwrap_or_else(|e| e.into_inner()).insert(key.clone(), wake.clone());
        Registration { signals: self, key: key.clone(), wake }
    }

    /// Registers a running collector's router and discovery wake-up.
    pub fn add_collector(
        &self,
        account: &Arc<str>,
        region: &Arc<str>,
        service: &'static str,
        router: Router,
        discover: Arc<Notify>,
    ) {
        let key = (account.clone(), region.clone(), service);
        self.collectors.lock().unwrap_or_else(|e| e.into_inner()).insert(key, (router, discover));
    }

    pub fn remove_collector(&self, account: &str, region: &str, service: &'static str) {
        self.collectors
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|(a, r, s), _| !(&**a == account && &**r == region && *s == service));
    }

    /// The polling mode of `account`, which its targets follow.
    pub fn mode(&self, account: &str) -> watch::Receiver<Mode> {
        let mut modes = self.modes.lock().unwrap_or_else(|e| e.into_inner());
        match modes.get(account) {
            Some(sender) => sender.subscribe(),
            None => {
                let (sender, receiver) = watch::channel(Mode::default());
                modes.insert(account.into(), sender);
                receiver
            }
        }
    }

    /// Sets the polling mode of `account`; its targets reschedule at once.
    pub fn set_mode(&self, account: &str, mode: Mode) {
        let mut modes = self.modes.lock().unwrap_or_else(|e| e.into_inner());
        let sender = modes.entry(account.into()).or_insert_with(|| watch::channel(Mode::default()).0);
        sender.send_if_modified(|old| std::mem::replace(old, mode) != mode);
    }

    /// Finds the targets an event of `account` and `region` names among the collectors of that
    /// scope, and returns the wake-ups of those that run; when none runs yet, their collector's
    /// discovery is woken instead. `owns` says whether this replica polls a target. The caller
    /// signals the wake-ups once it has read a whole batch, so that a batch's events for one target
    /// cost one poll.
    pub fn deliver(
        &self,
        account: &str,
        region: &str,
        event: &Event,
        owns: impl Fn(&TargetKey) -> bool,
    ) -> Result<Vec<Arc<Wake>>, Ignored> {
        let collectors: Vec<(CollectorKey, (Router, Arc<Notify>))> = self
            .collectors
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|((a, _, _), _)| &**a == account)
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect();
        let mut result = Err(Ignored::UnknownType);
        for ((account, scope_region, service), (router, discover)) in collectors {
            let Some(route) = router(event) else { continue };
            if &*scope_region != region {
                result = result.or(Err(Ignored::NotSelected));
                continue;
            }
            let Route::Targets(targets) = route else {
                return Err(Ignored::NotSelected);
            };
            if targets.is_empty() {
                return Err(Ignored::Malformed);
            }
            let keys: Vec<TargetKey> = targets
                .into_iter()
                .map(|(kind, name)| TargetKey { account: account.clone(), region: scope_region.clone(), kind, service, name })
                .filter(|key| owns(key))
                .collect();
            if keys.is_empty() {
                return Err(Ignored::OtherShard);
            }
            let wakes = self.wakes.lock().unwrap_or_else(|e| e.into_inner());
            let running: Vec<Arc<Wake>> = keys.iter().filter_map(|key| wakes.get(key).cloned()).collect();
            if running.is_empty() {
                discover.notify_one();
            }
            return Ok(running);
        }
        result
    }
}

/// The wake-ups a batch of events asks for, each once, with its oldest event's time.
#[derive(Default)]
pub struct Batch(Vec<(Arc<Wake>, SystemTime)>);

impl Batch {
    pub fn add(&mut self, wakes: Vec<Arc<Wake>>, at: SystemTime) {
        for wake in wakes {
            match self.0.iter_mut().find(|(w, _)| Arc::ptr_eq(w, &wake)) {
                Some((_, oldest)) => *oldest = (*oldest).min(at),
                None => self.0.push((wake, at)),
            }
        }
    }

    /// Makes every target of the batch due now.
    pub fn signal(self, observe: &Observe) {
        for (wake, at) in self.0 {
            wake.signal(at, observe.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str) -> TargetKey {
        TargetKey { account: "a".into(), region: "r".into(), kind: "pipeline", service: "svc", name: name.into() }
    }

    fn event(name: &str) -> Event {
        Event { source: "aws.svc".into(), detail_type: "Change".into(), detail: serde_json::json!({ "name": name }) }
    }

    fn signals() -> (Signals, Arc<Notify>) {
        let signals = Signals::default();
        let discover = Arc::new(Notify::new());
        let router: Router = Arc::new(|event: &Event| {
            (event.source == "aws.svc").then(|| match event.detail("name") {
                Some("excluded") => Route::NotSelected,
                Some(name) => Route::Targets(vec![("pipeline", name.to_string())]),
                None => Route::Targets(Vec::new()),
            })
        });
        signals.add_collector(&"a".into(), &"r".into(), "svc", router, discover.clone());
        (signals, discover)
    }

    #[tokio::test]
    async fn a_batch_wakes_each_target_once_with_its_oldest_event_time() {
        let (signals, _) = signals();
        let registration = signals.register(&key("p"));
        let observe: Observe = Arc::new(|_| {});
        let early = SystemTime::UNIX_EPOCH + Duration::from_secs(10);
        let late = SystemTime::UNIX_EPOCH + Duration::from_secs(20);
        let mut batch = Batch::default();
        batch.add(signals.deliver("a", "r", &event("p"), |_| true).unwrap(), late);
        batch.add(signals.deliver("a", "r", &event("p"), |_| true).unwrap(), early);
        assert_eq!(batch.0.len(), 1);
        batch.signal(&observe);
        registration.wake.notified().await;
        let (at, _) = registration.wake.take().unwrap();
        assert_eq!(at, early);
        assert!(registration.wake.take().is_none());
        // One permit for both events: a second wait does not return.
        let again = tokio::time::timeout(Duration::from_millis(50), registration.wake.notified()).await;
        assert!(again.is_err());
    }

    #[tokio::test]
    async fn unknown_targets_run_discovery_and_the_rest_is_ignored_with_a_reason() {
        let (signals, discover) = signals();
        assert!(signals.deliver("a", "r", &event("new"), |_| true).unwrap().is_empty());
        tokio::time::timeout(Duration::from_secs(1), discover.notified()).await.unwrap();
        let ignored =
            |account: &str, region: &str, event: &Event, owned: bool| signals.deliver(account, region, event, |_| owned).err();
        assert_eq!(ignored("a", "r", &event("excluded"), true), Some(Ignored::NotSelected));
        assert_eq!(ignored("a", "other-region", &event("p"), true), Some(Ignored::NotSelected));
        assert_eq!(ignored("a", "r", &event("p"), false), Some(Ignored::OtherShard));
        assert_eq!(ignored("a", "r", &Event { source: "aws.other".into(), ..event("p") }, true), Some(Ignored::UnknownType));
        assert_eq!(ignored("b", "r", &event("p"), true), Some(Ignored::UnknownType));
        assert_eq!(ignored("a", "r", &Event { detail: serde_json::json!({}), ..event("p") }, true), Some(Ignored::Malformed));
        // A registration's end removes its wake-up.
        drop(signals.register(&key("p")));
        assert!(signals.wakes.lock().unwrap().is_empty());
    }
}
