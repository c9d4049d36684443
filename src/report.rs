//! Where the exporter's own targets report: the organization's listing, each role's credentials
//! and each events queue are not polled by a collector, but each is a target with health of its
//! own, on `/metrics` and on the status page, like those that are.

use std::sync::Arc;

use crate::exposition::{Rendered, Selection};
use crate::store::Store;
use crate::target::{Health, Status, Statuses, TargetKey};
use crate::telemetry::Telemetry;

#[derive(Clone)]
pub struct Report {
    pub store: Arc<Store>,
    pub statuses: Arc<Statuses>,
    /// Where their AWS calls are recorded.
    pub telemetry: Arc<Telemetry>,
    pub selection: Arc<Selection>,
}

impl Report {
    /// Publishes `health` as `key`'s series, and its line on the status page with `state` (what
    /// the target holds, in a few words) and when it is due again (seconds since the epoch).
    pub fn publish(&self, key: &TargetKey, health: &Health, state: Option<String>, next: Option<f64>) {
        let mut rendered = Rendered::selected(&self.selection);
        health.render(&mut rendered, key);
        self.store.update(key, rendered);
        self.statuses.set(key, Status { state, ..health.status(None, next) });
    }

    /// Removes `key`'s series and its line on the status page.
    pub fn remove(&self, key: &TargetKey) {
        self.store.remove(key);
        self.statuses.remove(key);
    }
}
