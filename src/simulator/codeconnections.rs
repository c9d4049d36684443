//! The simulated CodeConnections service (CloudFormation Git sync): repository links, sync
//! configurations and sync status, in the protocol-neutral document form of [`super::protocol`].

use ciborium::Value;

use super::World;
use super::protocol::{Failure, list, map, member, opt_text, page_bounds, text, timestamp};

/// A repository link as ListRepositoryLinks describes it.
#[derive(Debug, Clone, Default)]
pub struct SimRepositoryLink {
    pub id: String,
    pub owner_id: String,
    pub repository_name: String,
    pub provider_type: String,
    pub connection_arn: String,
}

/// A sync configuration as ListSyncConfigurations describes it.
#[derive(Debug, Clone, Default)]
pub struct SimSyncConfiguration {
    pub repository_link_id: String,
    pub branch: String,
    pub sync_type: String,
    pub resource_name: String,
    pub config_file: Option<String>,
}

/// One sync attempt: when it started, its status and its events.
#[derive(Debug, Clone, Default)]
pub struct SimSyncAttempt {
    pub started_at: f64,
    pub status: String,
    pub events: Vec<SimSyncEvent>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct SimSyncEvent {
    pub time: f64,
    pub kind: String,
    pub event: String,
    pub external_id: Option<String>,
}

/// What GetResourceSyncStatus says of one resource.
#[derive(Debug, Clone, Default)]
pub struct SimResourceSync {
    pub latest: SimSyncAttempt,
    pub latest_successful: Option<SimSyncAttempt>,
    /// The commit the stack is being synced to: the head of its branch (`DesiredState`), which
    /// the latest attempt targets.
    pub sha: String,
    /// The commit the latest successful sync deployed, when it is not `sha`: the stack is behind
    /// its branch until an attempt at `sha` succeeds.
    pub successful_sha: Option<String>,
}

/// A connection as ListConnections describes it.
#[derive(Debug, Clone, Default)]
pub struct SimConnection {
    pub arn: String,
    pub name: String,
    pub provider_type: String,
    /// AVAILABLE, ERROR or PENDING.
    pub status: String,
    pub host_arn: Option<String>,
}

/// A host (GitHub Enterprise Server, GitLab self-managed) as ListHosts describes it.
#[derive(Debug, Clone, Default)]
pub struct SimHost {
    pub arn: String,
    pub name: String,
    pub provider_type: String,
    pub provider_endpoint: String,
    pub status: String,
}

/// A sync blocker of a resource, as GetSyncBlockerSummary lists it.
#[derive(Debug, Clone, Default)]
pub struct SimSyncBlocker {
    pub id: String,
    /// ACTIVE or RESOLVED.
    pub status: String,
    pub created_at: f64,
    pub created_reason: String,
    pub resolved_at: Option<f64>,
}

impl SimConnection {
    pub fn new(id: &str, name: &str, provider_type: &str, status: &str) -> SimConnection {
        SimConnection {
            arn: format!("arn:aws:codeconnections:us-east-1:111122223333:connection/{id}"),
            name: name.into(),
            provider_type: provider_type.into(),
            status: status.into(),
            host_arn: None,
        }
    }
}

impl SimRepositoryLink {
    pub fn new(id: &str, provider_type: &str, owner_id: &str, repository_name: &str) -> SimRepositoryLink {
        SimRepositoryLink {
            id: id.into(),
            owner_id: owner_id.into(),
            repository_name: repository_name.into(),
            provider_type: provider_type.into(),
            connection_arn: format!("arn:aws:codeconnections:us-east-1:111122223333:connection/{id}"),
        }
    }
}

/// Answers one operation from the current state of `world`, the world of `account`, whose ID the
/// answers' ARNs carry.
pub fn handle(world: &World, account: &str, operation: &str, input: &Value) -> Result<Value, Failure> {
    match operation {
        "ListRepositoryLinks" => {
            let (start, next) = page_bounds(member(input, "NextToken"), world.page(), world.repository_links.len())?;
            let links = world.repository_links.values().skip(start).take(world.page()).map(|link| {
                map(vec![
                    ("ConnectionArn", text(&link.connection_arn)),
                    ("OwnerId", text(&link.owner_id)),
                    ("ProviderType", text(&link.provider_type)),
                    (
                        "RepositoryLinkArn",
                        text(&format!("arn:aws:codeconnections:us-east-1:{account}:repository-link/{}", link.id)),
                    ),
                    ("RepositoryLinkId", text(&link.id)),
                    ("RepositoryName", text(&link.repository_name)),
                ])
            });
            Ok(map(vec![("RepositoryLinks", list(links)), ("NextToken", opt_text(next.as_deref()))]))
        }
        "ListSyncConfigurations" => {
            let link_id = required(input, "RepositoryLinkId")?;
            let sync_type = required(input, "SyncType")?;
            let link = world
                .repository_links
                .get(link_id)
                .ok_or_else(|| Failure::new(400, "ResourceNotFoundException", format!("Repository link {link_id} not found")))?;
            let matching: Vec<&SimSyncConfiguration> = world
                .sync_configurations
                .iter()
                .filter(|c| c.repository_link_id == link_id && c.sync_type == sync_type)
                .collect();
            let (start, next) = page_bounds(member(input, "NextToken"), world.page(), matching.len())?;
            let configurations = matching.into_iter().skip(start).take(world.page()).map(|c| {
                map(vec![
                    ("Branch", text(&c.branch)),
                    ("ConfigFile", opt_text(c.config_file.as_deref())),
                    ("OwnerId", text(&link.owner_id)),
                    ("ProviderType", text(&link.provider_type)),
                    ("RepositoryLinkId", text(&c.repository_link_id)),
                    ("RepositoryName", text(&link.repository_name)),
                    ("ResourceName", text(&c.resource_name)),
                    ("RoleArn", text(&format!("arn:aws:iam::{account}:role/cfn-git-sync"))),
                    ("SyncType", text(&c.sync_type)),
                    ("PublishDeploymentStatus", text("ENABLED")),
                    ("TriggerResourceUpdateOn", text("ANY_CHANGE")),
                ])
            });
            Ok(map(vec![("SyncConfigurations", list(configurations)), ("NextToken", opt_text(next.as_deref()))]))
        }
        "GetRepositorySyncStatus" => {
            let key = (
                required(input, "RepositoryLinkId")?.to_string(),
                required(input, "Branch")?.to_string(),
                required(input, "SyncType")?.to_string(),
            );
            let attempt = world.repository_syncs.get(&key).ok_or_else(|| {
                Failure::new(
                    400,
                    "ResourceNotFoundException",
                    format!("No sync status found for branch {} of repository link {}", key.1, key.0),
                )
            })?;
            Ok(map(vec![("LatestSync", repository_attempt(attempt))]))
        }
        "GetResourceSyncStatus" => {
            let key = (required(input, "ResourceName")?.to_string(), required(input, "SyncType")?.to_string());
            let status = world.resource_syncs.get(&key).ok_or_else(|| {
                Failure::new(400, "ResourceNotFoundException", format!("No sync status found for resource {}", key.0))
            })?;
            let desired = revision(world, &key.0, &status.sha);
            let deployed = revision(world, &key.0, status.successful_sha.as_deref().unwrap_or(&status.sha));
            Ok(map(vec![
                ("DesiredState", desired.clone()),
                (
                    "LatestSuccessfulSync",
                    status
                        .latest_successful
                        .as_ref()
                        .map(|a| resource_attempt(a, &key.0, &deployed, &deployed))
                        .unwrap_or(Value::Null),
                ),
                // The latest attempt starts from what the last success deployed and targets the branch.
                ("LatestSync", resource_attempt(&status.latest, &key.0, &deployed, &desired)),
            ]))
        }
        "ListConnections" => {
            let (start, next) = page_bounds(member(input, "NextToken"), world.page(), world.connections.len())?;
            let connections = world.connections.values().skip(start).take(world.page()).map(|c| {
                map(vec![
                    ("ConnectionName", text(&c.name)),
                    ("ConnectionArn", text(&c.arn)),
                    ("ProviderType", text(&c.provider_type)),
                    ("OwnerAccountId", text(account)),
                    ("ConnectionStatus", text(&c.status)),
                    ("HostArn", opt_text(c.host_arn.as_deref())),
                ])
            });
            Ok(map(vec![("Connections", list(connections)), ("NextToken", opt_text(next.as_deref()))]))
        }
        "ListHosts" => {
            let (start, next) = page_bounds(member(input, "NextToken"), world.page(), world.hosts.len())?;
            let hosts = world.hosts.values().skip(start).take(world.page()).map(|h| {
                map(vec![
                    ("Name", text(&h.name)),
                    ("HostArn", text(&h.arn)),
                    ("ProviderType", text(&h.provider_type)),
                    ("ProviderEndpoint", text(&h.provider_endpoint)),
                    ("Status", text(&h.status)),
                    ("StatusMessage", text("simulated")),
                ])
            });
            Ok(map(vec![("Hosts", list(hosts)), ("NextToken", opt_text(next.as_deref()))]))
        }
        "GetSyncBlockerSummary" => {
            let key = (required(input, "ResourceName")?.to_string(), required(input, "SyncType")?.to_string());
            let blockers = world.sync_blockers.get(&key).ok_or_else(|| {
                Failure::new(400, "ResourceNotFoundException", format!("No sync blocker summary found for resource {}", key.0))
            })?;
            let latest = blockers.iter().map(|b| {
                map(vec![
                    ("Id", text(&b.id)),
                    ("Type", text("AUTOMATED")),
                    ("Status", text(&b.status)),
                    ("CreatedReason", text(&b.created_reason)),
                    ("CreatedAt", timestamp(b.created_at)),
                    ("Contexts", list([map(vec![("Key", text("StackName")), ("Value", text(&key.0))])])),
                    ("ResolvedReason", if b.resolved_at.is_some() { text("Resolved by the operator") } else { Value::Null }),
                    ("ResolvedAt", b.resolved_at.map(timestamp).unwrap_or(Value::Null)),
                ])
            });
            Ok(map(vec![("SyncBlockerSummary", map(vec![("ResourceName", text(&key.0)), ("LatestBlockers", list(latest))]))]))
        }
        _ => Err(Failure::new(400, "UnknownOperationException", format!("operation {operation} is not simulated"))),
    }
}

fn required<'a>(input: &'a Value, name: &str) -> Result<&'a str, Failure> {
    member(input, name).ok_or_else(|| Failure::new(400, "InvalidInputException", format!("{name} is required")))
}

fn events(events: &[SimSyncEvent]) -> Value {
    list(events.iter().map(|e| {
        map(vec![
            ("Event", text(&e.event)),
            ("ExternalId", opt_text(e.external_id.as_deref())),
            ("Time", timestamp(e.time)),
            ("Type", text(&e.kind)),
        ])
    }))
}

fn repository_attempt(attempt: &SimSyncAttempt) -> Value {
    map(vec![
        ("StartedAt", timestamp(attempt.started_at)),
        ("Status", text(&attempt.status)),
        ("Events", events(&attempt.events)),
    ])
}

fn resource_attempt(attempt: &SimSyncAttempt, resource: &str, initial: &Value, target: &Value) -> Value {
    map(vec![
        ("Events", events(&attempt.events)),
        ("InitialRevision", initial.clone()),
        ("StartedAt", timestamp(attempt.started_at)),
        ("Status", text(&attempt.status)),
        ("TargetRevision", target.clone()),
        ("Target", text(resource)),
    ])
}

/// The revision a resource syncs from, from the sync configuration that names it.
fn revision(world: &World, resource: &str, sha: &str) -> Value {
    let configuration = world.sync_configurations.iter().find(|c| c.resource_name == resource);
    let link = configuration.and_then(|c| world.repository_links.get(&c.repository_link_id));
    map(vec![
        ("Branch", text(configuration.map(|c| c.branch.as_str()).unwrap_or("main"))),
        ("Directory", text(configuration.and_then(|c| c.config_file.as_deref()).unwrap_or("deployment.yaml"))),
        ("OwnerId", text(link.map(|l| l.owner_id.as_str()).unwrap_or("unknown"))),
        ("RepositoryName", text(link.map(|l| l.repository_name.as_str()).unwrap_or("unknown"))),
        ("ProviderType", text(link.map(|l| l.provider_type.as_str()).unwrap_or("GitHub"))),
        ("Sha", text(sha)),
    ])
}
