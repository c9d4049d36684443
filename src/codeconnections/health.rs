//! Connection, host and sync blocker status: what most often stops Git sync and source actions
//! without a failed attempt to show for it.
//!
//! ListConnections and ListHosts are listed every interval by one target each per account and
//! region; GetSyncBlockerSummary is read for every synced stack. Every family they fill is defined
//! here.

use std::ops::ControlFlow;

use aws_sdk_codeconnections::types::{BlockerStatus, ConnectionStatus, SyncConfigurationType};
use tokio::sync::watch;

use super::{ResourceSyncInfo, SERVICE};
use crate::aws::{self, Scope};
use crate::exposition::{Family, Kind, Rendered};
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

/// The host statuses AWS documents (the SDK has the status as a plain string).
const HOST_STATUSES: [&str; 5] =
    ["AVAILABLE", "PENDING", "VPC_CONFIG_DELETING", "VPC_CONFIG_FAILED_INITIALIZATION", "VPC_CONFIG_INITIALIZING"];

/// The name of the connection and host list targets: one of each per account and region.
pub const ALL: &str = "all";

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
    type Info = ();

    async fn poll(&mut self, scope: &Scope, _: &TargetKey) -> Outcome {
        let mut connections = Vec::new();
        let listed = aws::for_each_page(
            |token| async move {
                let request = scope.codeconnections.list_connections().set_next_token(token);
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
                self.last = Some(connections);
                Outcome::Polled
            }
            Err(err) => Outcome::Failed(err),
        }
    }

    fn active(&self) -> bool {
        false
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
    type Info = ();

    async fn poll(&mut self, scope: &Scope, _: &TargetKey) -> Outcome {
        let mut hosts = Vec::new();
        let listed = aws::for_each_page(
            |token| async move {
                let request = scope.codeconnections.list_hosts().set_next_token(token);
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
                self.last = Some(hosts);
                Outcome::Polled
            }
            Err(err) => Outcome::Failed(err),
        }
    }

    fn active(&self) -> bool {
        false
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

/// The sync blockers of one synced resource (stack). While one is ACTIVE, Git sync of the stack
/// has stopped: later pushes change nothing until someone resolves it.
pub struct SyncBlockerTarget {
    info: watch::Receiver<ResourceSyncInfo>,
    last: Option<Blockers>,
}

impl SyncBlockerTarget {
    pub fn new(info: watch::Receiver<ResourceSyncInfo>) -> SyncBlockerTarget {
        SyncBlockerTarget { info, last: None }
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
            .codeconnections
            .get_sync_blocker_summary()
            .resource_name(&info.resource_name)
            .sync_type(SyncConfigurationType::from(info.sync_type.as_str()));
        match scope.call(SERVICE, "GetSyncBlockerSummary", || request.send(), &["ResourceNotFoundException"]).await {
            Ok(output) => {
                let active: Vec<f64> = output
                    .sync_blocker_summary()
                    .map(|summary| summary.latest_blockers())
                    .unwrap_or_default()
                    .iter()
                    .filter(|blocker| *blocker.status() == BlockerStatus::Active)
                    .map(|blocker| blocker.created_at().as_secs_f64())
                    .collect();
                self.last = Some(Blockers { active: active.len(), oldest_active: active.into_iter().reduce(f64::min) });
                Outcome::Polled
            }
            // A stack that was never blocked has no summary: nothing blocks it.
            Err(err) if err.code == "ResourceNotFoundException" => {
                self.last = Some(Blockers { active: 0, oldest_active: None });
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
    }
}
