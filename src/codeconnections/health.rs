//! Connection, host and sync blocker status: what most often stops Git sync and source actions
//! without a failed attempt to show for it.
//!
//! ListConnections and ListHosts are listed by one target each per account and region: every
//! interval while the list holds something, at an empty scope's discovery pace while it is empty.
//! GetSyncBlockerSummary is read for every synced stack. Every family they fill is defined here.

use std::collections::HashSet;
use std::ops::ControlFlow;

use aws_sdk_codeconnections::types::{BlockerStatus, ConnectionStatus, SyncBlocker, SyncConfigurationType};
use tokio::sync::watch;

use super::{ResourceSyncInfo, SERVICE};
use crate::aws::{self, Scope};
use crate::exposition::{Family, Histogram, Kind, Rendered};
use crate::target::{Outcome, Target, TargetKey};

pub static CONNECTION_INFO: Family = Family {
    name: "aws_codeconnections_connection_info",
    help: "A connection of CodeConnections; host_arn is empty for connections to cloud providers.",
    kind: Kind::Gauge,
};
pub static CONNECTION_STATUS: Family = Family {
    name: "aws_codeconnections_connection_status",
    help: "Status of the connection: 1 for the current status, 0 for the others.",
    kind: Kind::Gauge,
};
pub static HOST_INFO: Family = Family {
    name: "aws_codeconnections_host_info",
    help: "A host of CodeConnections: an installed provider such as GitHub Enterprise Server or GitLab self-managed.",
    kind: Kind::Gauge,
};
pub static HOST_STATUS: Family = Family {
    name: "aws_codeconnections_host_status",
    help: "Status of the host: 1 for the current status, 0 for the others.",
    kind: Kind::Gauge,
};
pub static SYNC_BLOCKERS_ACTIVE: Family = Family {
    name: "aws_codeconnections_sync_blockers_active",
    help: "ACTIVE sync blockers among the latest blockers of the resource; Git sync of the resource stops until they are resolved.",
    kind: Kind::Gauge,
};
pub static SYNC_BLOCKER_OLDEST_ACTIVE_CREATED: Family = Family {
    name: "aws_codeconnections_sync_blocker_oldest_active_created_timestamp_seconds",
    help: "When the oldest ACTIVE sync blocker of the resource was created, in seconds since the epoch, while one exists.",
    kind: Kind::Gauge,
};
pub static SYNC_BLOCKERS_RESOLVED: Family = Family {
    name: "aws_codeconnections_sync_blockers_resolved_total",
    help: "Sync blockers of the resource seen RESOLVED since the exporter started.",
    kind: Kind::Counter,
};
pub static SYNC_BLOCKER_RESOLVE_DURATION: Family = Family {
    name: "aws_codeconnections_sync_blocker_resolve_duration_seconds",
    help: "Time from creation to resolution (ResolvedAt - CreatedAt) of the sync blockers counted in aws_codeconnections_sync_blockers_resolved_total.",
    kind: Kind::Histogram,
};

/// Time to resolve bucket bounds, from a minute to a week: a blocker waits for someone to repair
/// the stack, which takes minutes when they are at hand and days over a weekend.
const RESOLVE_BUCKETS: [f64; 10] = [60.0, 300.0, 900.0, 1800.0, 3600.0, 14400.0, 43200.0, 86400.0, 259200.0, 604800.0];

/// The host statuses AWS documents (the SDK has the status as a plain string).
const HOST_STATUSES: [&str; 5] =
    ["AVAILABLE", "PENDING", "VPC_CONFIG_DELETING", "VPC_CONFIG_FAILED_INITIALIZATION", "VPC_CONFIG_INITIALIZING"];

/// The name of the connection and host list targets: one of each per account and region.
pub const ALL: &str = "all";

/// The first item of each key, in order. A listing paged while its items are created or deleted
/// can show one item on two pages, and AWS's model lets a connection or a host come without its
/// ARN (all those then share the empty one); two items of one key would render two series with
/// the same name and labels, which Prometheus rejects as a whole scrape.
pub fn first_of_each<T>(items: Vec<T>, key: impl Fn(&T) -> String) -> Vec<T> {
    let mut seen = HashSet::new();
    items.into_iter().filter(|item| seen.insert(key(item))).collect()
}

/// A connection, as ListConnections describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Connection {
    arn: String,
    name: String,
    provider_type: String,
    host_arn: String,
    status: String,
}

/// Every connection of the account and region, listed each poll: a connection in ERROR or
/// PENDING breaks every source action and Git sync that uses it.
#[derive(Default)]
pub struct ConnectionsTarget {
    last: Option<Vec<Connection>>,
}

impl Target for ConnectionsTarget {
    const KIND: &'static str = "connections";
    const EVERY_SCOPE: bool = true;
    type Info = ();

    async fn poll(&mut self, scope: &Scope, _: &TargetKey) -> Outcome {
        let mut connections = Vec::new();
        let listed = aws::for_each_page(
            |token| async move {
                let request = scope.codeconnections().list_connections().set_next_token(token);
                let page = scope.call(SERVICE, "ListConnections", || request.send(), &[]).await?;
                let next = aws::next_token(page.next_token());
                Ok((page, next))
            },
            |page, _| {
                connections.extend(page.connections().iter().map(|c| Connection {
                    arn: c.connection_arn().unwrap_or_default().to_string(),
                    name: c.connection_name().unwrap_or_default().to_string(),
                    provider_type: c.provider_type().map(|p| p.as_str().to_string()).unwrap_or_default(),
                    host_arn: c.host_arn().unwrap_or_default().to_string(),
                    status: c.connection_status().map(|s| s.as_str().to_string()).unwrap_or_default(),
                }));
                ControlFlow::Continue(())
            },
        )
        .await;
        match listed {
            Ok(()) => {
                self.last = Some(first_of_each(connections, |c| c.arn.clone()));
                Outcome::Polled
            }
            Err(err) => Outcome::Failed(err),
        }
    }

    fn active(&self) -> bool {
        false
    }

    fn empty(&self) -> bool {
        self.last.as_ref().is_some_and(Vec::is_empty)
    }

    fn render(&self, rendered: &mut Rendered, key: &TargetKey) {
        for connection in self.last.iter().flatten() {
            let labels = [("account", &*key.account), ("region", &*key.region), ("connection_arn", connection.arn.as_str())];
            let info = [
                ("connection_name", connection.name.as_str()),
                ("provider_type", &connection.provider_type),
                ("host_arn", &connection.host_arn),
            ];
            rendered.sample_with(&CONNECTION_INFO, &labels, &info, 1.0);
            let current = Some(connection.status.as_str()).filter(|s| !s.is_empty());
            rendered.state_set(&CONNECTION_STATUS, &labels, ConnectionStatus::values(), current);
        }
    }
}

/// A host, as ListHosts describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Host {
    arn: String,
    name: String,
    provider_type: String,
    provider_endpoint: String,
    status: String,
}

/// Every host of the account and region, listed each poll: a host that is not AVAILABLE breaks
/// all of its connections.
#[derive(Default)]
pub struct HostsTarget {
    last: Option<Vec<Host>>,
}

impl Target for HostsTarget {
    const KIND: &'static str = "hosts";
    const EVERY_SCOPE: bool = true;
    type Info = ();

    async fn poll(&mut self, scope: &Scope, _: &TargetKey) -> Outcome {
        let mut hosts = Vec::new();
        let listed = aws::for_each_page(
            |token| async move {
                let request = scope.codeconnections().list_hosts().set_next_token(token);
                let page = scope.call(SERVICE, "ListHosts", || request.send(), &[]).await?;
                let next = aws::next_token(page.next_token());
                Ok((page, next))
            },
            |page, _| {
                hosts.extend(page.hosts().iter().map(|h| Host {
                    arn: h.host_arn().unwrap_or_default().to_string(),
                    name: h.name().unwrap_or_default().to_string(),
                    provider_type: h.provider_type().map(|p| p.as_str().to_string()).unwrap_or_default(),
                    provider_endpoint: h.provider_endpoint().unwrap_or_default().to_string(),
                    status: h.status().unwrap_or_default().to_string(),
                }));
                ControlFlow::Continue(())
            },
        )
        .await;
        match listed {
            Ok(()) => {
                self.last = Some(first_of_each(hosts, |h| h.arn.clone()));
                Outcome::Polled
            }
            Err(err) => Outcome::Failed(err),
        }
    }

    fn active(&self) -> bool {
        false
    }

    fn empty(&self) -> bool {
        self.last.as_ref().is_some_and(Vec::is_empty)
    }

    fn render(&self, rendered: &mut Rendered, key: &TargetKey) {
        for host in self.last.iter().flatten() {
            let labels = [("account", &*key.account), ("region", &*key.region), ("host_arn", host.arn.as_str())];
            let info = [
                ("host_name", host.name.as_str()),
                ("provider_type", &host.provider_type),
                ("provider_endpoint", &host.provider_endpoint),
            ];
            rendered.sample_with(&HOST_INFO, &labels, &info, 1.0);
            let current = Some(host.status.as_str()).filter(|s| !s.is_empty());
            rendered.state_set(&HOST_STATUS, &labels, &HOST_STATUSES, current);
        }
    }
}

/// What GetSyncBlockerSummary says of one resource: how many of its latest blockers are ACTIVE,
/// and when the oldest of them was created.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Blockers {
    active: usize,
    oldest_active: Option<f64>,
}

/// Counts each resolved blocker once, with its time to resolve, except those already resolved at
/// the first poll, which are history: a restart replays nothing.
#[derive(Debug)]
struct Resolutions {
    /// The IDs of the RESOLVED blockers of the last summary. AWS lists only the latest blockers, so
    /// an ID that leaves the list does not come back and need not be remembered.
    seen: HashSet<String>,
    count: u64,
    durations: Histogram,
}

impl Default for Resolutions {
    fn default() -> Resolutions {
        Resolutions { seen: HashSet::new(), count: 0, durations: Histogram::new(&RESOLVE_BUCKETS) }
    }
}

impl Resolutions {
    fn observe(&mut self, blockers: &[SyncBlocker], primed: bool) {
        let mut seen = HashSet::new();
        for blocker in blockers.iter().filter(|blocker| *blocker.status() == BlockerStatus::Resolved) {
            if primed && !self.seen.contains(blocker.id()) {
                self.count += 1;
                // ResolvedAt is optional in AWS's model: a blocker without it is counted, but has
                // no time to resolve. A clock that put it before CreatedAt is taken as instant.
                if let Some(resolved) = blocker.resolved_at() {
                    self.durations.observe((resolved.as_secs_f64() - blocker.created_at().as_secs_f64()).max(0.0));
                }
            }
            seen.insert(blocker.id().to_string());
        }
        self.seen = seen;
    }
}

/// The sync blockers of one synced resource (stack). While one is ACTIVE, Git sync of the stack
/// has stopped: later pushes change nothing until someone resolves it.
pub struct SyncBlockerTarget {
    info: watch::Receiver<ResourceSyncInfo>,
    last: Option<Blockers>,
    resolutions: Resolutions,
}

impl SyncBlockerTarget {
    pub fn new(info: watch::Receiver<ResourceSyncInfo>) -> SyncBlockerTarget {
        SyncBlockerTarget { info, last: None, resolutions: Resolutions::default() }
    }

    /// Records the latest blockers of one summary; a stack with no summary has none.
    fn answered(&mut self, blockers: &[SyncBlocker]) {
        self.resolutions.observe(blockers, self.last.is_some());
        let active: Vec<f64> = blockers
            .iter()
            .filter(|blocker| *blocker.status() == BlockerStatus::Active)
            .map(|blocker| blocker.created_at().as_secs_f64())
            .collect();
        self.last = Some(Blockers { active: active.len(), oldest_active: active.into_iter().reduce(f64::min) });
    }
}

impl Target for SyncBlockerTarget {
    const KIND: &'static str = "sync_blocker";
    /// A failed resource sync creates blockers, and its event names them.
    const ANNOUNCED: bool = true;
    type Info = ResourceSyncInfo;

    async fn poll(&mut self, scope: &Scope, _: &TargetKey) -> Outcome {
        let info = self.info.borrow().clone();
        let request = scope
            .codeconnections()
            .get_sync_blocker_summary()
            .resource_name(&info.resource_name)
            .sync_type(SyncConfigurationType::from(info.sync_type.as_str()));
        match scope.call(SERVICE, "GetSyncBlockerSummary", || request.send(), &["ResourceNotFoundException"]).await {
            Ok(output) => {
                self.answered(output.sync_blocker_summary().map(|summary| summary.latest_blockers()).unwrap_or_default());
                Outcome::Polled
            }
            // A stack that was never blocked has no summary: nothing blocks it.
            Err(err) if err.code == "ResourceNotFoundException" => {
                self.answered(&[]);
                Outcome::Polled
            }
            Err(err) => Outcome::Failed(err),
        }
    }

    /// Polled at the active interval while blocked, so that a resolution shows soon.
    fn active(&self) -> bool {
        self.last.is_some_and(|blockers| blockers.active > 0)
    }

    fn render(&self, rendered: &mut Rendered, key: &TargetKey) {
        let Some(blockers) = self.last else { return };
        let info = self.info.borrow();
        let labels = info.labels(key);
        rendered.sample(&SYNC_BLOCKERS_ACTIVE, &labels, blockers.active as f64);
        if let Some(created) = blockers.oldest_active {
            rendered.sample(&SYNC_BLOCKER_OLDEST_ACTIVE_CREATED, &labels, created);
        }
        // At 0 from the first poll, so that increase() sees the first resolution.
        rendered.sample(&SYNC_BLOCKERS_RESOLVED, &labels, self.resolutions.count as f64);
        self.resolutions.durations.render(rendered, &SYNC_BLOCKER_RESOLVE_DURATION, &labels);
    }
}

#[cfg(test)]
mod tests {
    use aws_sdk_codeconnections::types::BlockerType;
    use aws_smithy_types::DateTime;

    use super::*;

    fn blocker(id: &str, status: BlockerStatus, created_at: f64, resolved_at: Option<f64>) -> SyncBlocker {
        SyncBlocker::builder()
            .id(id)
            .r#type(BlockerType::Automated)
            .status(status)
            .created_reason("Stack is in UPDATE_ROLLBACK_FAILED")
            .created_at(DateTime::from_secs_f64(created_at))
            .set_resolved_at(resolved_at.map(DateTime::from_secs_f64))
            .build()
            .expect("every required member is set")
    }

    #[test]
    fn a_resolution_without_resolved_at_is_counted_without_a_duration_and_a_skewed_one_as_instant() {
        let mut resolutions = Resolutions::default();
        resolutions.observe(&[blocker("b1", BlockerStatus::Active, 100.0, None)], false);
        resolutions.observe(
            &[blocker("b1", BlockerStatus::Resolved, 100.0, None), blocker("b2", BlockerStatus::Resolved, 200.0, Some(190.0))],
            true,
        );
        let mut expected = Histogram::new(&RESOLVE_BUCKETS);
        expected.observe(0.0);
        assert_eq!((resolutions.count, &resolutions.durations), (2, &expected));
    }
}
