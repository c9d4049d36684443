//! The `codeconnections` section of an account: CloudFormation Git sync, which repository syncs
//! and resources are polled, and in which regions.

use serde::{Deserialize, Serialize};

use crate::yaml::{Context, Invalid, Located, non_empty};

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Settings {
    /// ListRepositoryLinks and ListSyncConfigurations find every sync configuration.
    pub discover: bool,
    /// Polled also when discovery is off or not permitted.
    pub repository_syncs: Vec<RepositorySync>,
    /// Also poll GetResourceSyncStatus for the resource (stack) of each sync configuration.
    pub resource_syncs: bool,
    /// ListConnections and ListHosts: the status of every connection and host.
    pub connections: bool,
    /// GetSyncBlockerSummary for the resource (stack) of each sync configuration.
    pub blockers: bool,
    /// Off, the account makes no CodeConnections call at all: for partitions and regions where
    /// the service does not exist, whose every target would otherwise be down.
    pub enabled: bool,
    /// The account's regions CodeConnections is polled in; `None` is every one of them. An
    /// account whose pipelines span regions usually keeps its Git syncs in one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub regions: Option<Vec<String>>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            discover: true,
            repository_syncs: Vec::new(),
            resource_syncs: true,
            connections: true,
            blockers: true,
            enabled: true,
            regions: None,
        }
    }
}

impl Settings {
    /// Whether the service is polled in `region`.
    pub fn runs_in(&self, region: &str) -> bool {
        self.enabled && self.regions.as_ref().is_none_or(|regions| regions.iter().any(|r| r == region))
    }
}

/// One explicitly configured sync configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RepositorySync {
    pub repository_link_id: String,
    pub branch: String,
    pub sync_type: String,
    /// The stack the configuration syncs; known to discovery, so only needed when discovery is off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource_name: Option<String>,
}

/// The section as the file writes it.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawCodeConnections {
    discover: Option<bool>,
    #[serde(default)]
    repository_syncs: Vec<RawRepositorySync>,
    resource_syncs: Option<bool>,
    connections: Option<bool>,
    blockers: Option<bool>,
    enabled: Option<bool>,
    regions: Option<Vec<Located<String>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRepositorySync {
    repository_link_id: Located<String>,
    branch: Located<String>,
    sync_type: Option<Located<String>>,
    resource_name: Option<Located<String>>,
}

impl RawCodeConnections {
    /// The settings, given the `regions` of the account (or organization) the section belongs to:
    /// the section's own `regions` must be among them.
    pub fn validate(self, context: &Context) -> Result<Settings, Invalid> {
        let regions = context.regions;
        let defaults = Settings::default();
        let only = match self.regions {
            None => None,
            Some(raw) => {
                let mut only = Vec::with_capacity(raw.len());
                for region in raw {
                    if !regions.contains(&region.value) {
                        let listed = if regions.is_empty() { "none are listed".to_string() } else { regions.join(", ") };
                        return Err((
                            region.referenced,
                            format!("codeconnections.regions: {:?} is not one of the account's regions ({listed})", region.value),
                        ));
                    }
                    if !only.contains(&region.value) {
                        only.push(region.value);
                    }
                }
                Some(only)
            }
        };
        let mut repository_syncs: Vec<RepositorySync> = Vec::with_capacity(self.repository_syncs.len());
        for raw in self.repository_syncs {
            let at = raw.repository_link_id.referenced;
            let sync_type = match raw.sync_type {
                Some(sync_type) => {
                    let known = aws_sdk_codeconnections::types::SyncConfigurationType::values();
                    if !known.contains(&sync_type.value.as_str()) {
                        return Err((
                            sync_type.referenced,
                            format!("unknown sync_type {:?}: one of {}", sync_type.value, known.join(", ")),
                        ));
                    }
                    sync_type.value
                }
                None => super::DEFAULT_SYNC_TYPE.into(),
            };
            let sync = RepositorySync {
                repository_link_id: non_empty(raw.repository_link_id, "repository_link_id")?,
                branch: non_empty(raw.branch, "branch")?,
                sync_type,
                resource_name: raw.resource_name.map(|r| non_empty(r, "resource_name")).transpose()?,
            };
            if repository_syncs.iter().any(|s| {
                (&s.repository_link_id, &s.branch, &s.sync_type) == (&sync.repository_link_id, &sync.branch, &sync.sync_type)
            }) {
                return Err((at, format!("repository sync {}/{} is listed twice", sync.repository_link_id, sync.branch)));
            }
            repository_syncs.push(sync);
        }
        Ok(Settings {
            discover: self.discover.unwrap_or(defaults.discover),
            repository_syncs,
            resource_syncs: self.resource_syncs.unwrap_or(defaults.resource_syncs),
            connections: self.connections.unwrap_or(defaults.connections),
            blockers: self.blockers.unwrap_or(defaults.blockers),
            enabled: self.enabled.unwrap_or(defaults.enabled),
            regions: only,
        })
    }
}
