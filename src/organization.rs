//! The accounts of an AWS Organization, listed every `refresh_interval`, which the scheduler polls
//! as if each were an entry of `accounts`.
//!
//! The listing is a target of its own (`kind="organization"`): when it fails, the last list stays,
//! so that a throttled or briefly denied Organizations API never removes every account's series.
//! Organizations is a global service whose endpoint is in us-east-1, whatever regions are polled.

pub mod settings;

use std::collections::{BTreeMap, VecDeque};
use std::ops::ControlFlow;
use std::time::Duration;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_sdk_organizations::types::{AccountState, AccountStatus, ChildType};
use tokio::sync::watch;

use crate::aws::{self, CallError, Overrides};
use crate::report::Report;
use crate::target::{Health, TargetKey};
use crate::telemetry::Telemetry;
pub use settings::Settings;

/// The `kind` and `service` of the listing's target.
pub const KIND: &str = "organization";
/// Where Organizations answers.
const REGION: &str = "us-east-1";
/// How soon a failed listing is tried again, unless `refresh_interval` is sooner.
const RETRY: Duration = Duration::from_secs(60);

/// An account the listing found, selected or not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub id: String,
    pub name: String,
}

/// The clients the listing calls through, with the credentials that may list: the exporter's own,
/// or `list_role_arn`'s.
pub async fn clients(settings: &Settings, request_timeout: Duration, overrides: &Overrides) -> aws_sdk_organizations::Client {
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(REGION))
        .timeout_config(aws_smithy_types::timeout::TimeoutConfig::builder().operation_timeout(request_timeout).build());
    if let Some(url) = &overrides.endpoint_url {
        loader = loader.endpoint_url(url);
    }
    if let Some(credentials) = &overrides.credentials {
        loader = loader.credentials_provider(credentials.clone());
    }
    if let Some(http_client) = &overrides.http_client {
        loader = loader.http_client(http_client.clone());
    }
    let mut base: SdkConfig = loader.load().await;
    if let Some(role_arn) = &settings.list_role_arn {
        let role = aws_config::sts::AssumeRoleProvider::builder(role_arn).session_name("codepipeline-exporter").configure(&base);
        let provider = role.build().await;
        base = base.into_builder().credentials_provider(SharedCredentialsProvider::new(provider)).build();
    }
    aws_sdk_organizations::Client::new(&base)
}

/// Whether Organizations counts the account as active: `State` where it answers with one, the
/// older `Status` otherwise.
fn active(account: &aws_sdk_organizations::types::Account) -> bool {
    match account.state() {
        Some(state) => *state == AccountState::Active,
        None => account.status() == Some(&AccountStatus::Active),
    }
}

/// Every active account of the organization, or of the `include` units and those below them,
/// less the accounts below the `exclude` units, ordered by ID. Only a complete listing is
/// returned: one failed page fails it all.
pub async fn list(
    client: &aws_sdk_organizations::Client,
    telemetry: &Telemetry,
    include: &[String],
    exclude: &[String],
) -> Result<Vec<Member>, CallError> {
    let mut members = list_below(client, telemetry, include).await?;
    if !exclude.is_empty() {
        let excluded = list_below(client, telemetry, exclude).await?;
        members.retain(|member| !excluded.contains(member));
    }
    Ok(members)
}

/// The active accounts below `ous`, or of the whole organization when there are none.
async fn list_below(
    client: &aws_sdk_organizations::Client,
    telemetry: &Telemetry,
    ous: &[String],
) -> Result<Vec<Member>, CallError> {
    let mut found: BTreeMap<String, Member> = BTreeMap::new();
    if ous.is_empty() {
        let fetch = |token| async move {
            let request = client.list_accounts().set_next_token(token).send();
            let page = aws::recorded(telemetry, "organizations", "ListAccounts", request, &[]).await?;
            let next = aws::next_token(page.next_token());
            Ok((page.accounts.unwrap_or_default(), next))
        };
        keep_accounts(fetch, &mut found).await?;
    } else {
        let mut parents: VecDeque<String> = ous.iter().cloned().collect();
        while let Some(parent) = parents.pop_front() {
            let parent = &parent;
            let fetch = |token| async move {
                let request = client.list_accounts_for_parent().parent_id(parent).set_next_token(token).send();
                let page = aws::recorded(telemetry, "organizations", "ListAccountsForParent", request, &[]).await?;
                let next = aws::next_token(page.next_token());
                Ok((page.accounts.unwrap_or_default(), next))
            };
            keep_accounts(fetch, &mut found).await?;
            let mut children = Vec::new();
            aws::for_each_page(
                |token| async move {
                    let request = client
                        .list_children()
                        .parent_id(parent)
                        .child_type(ChildType::OrganizationalUnit)
                        .set_next_token(token)
                        .send();
                    let page = aws::recorded(telemetry, "organizations", "ListChildren", request, &[]).await?;
                    let next = aws::next_token(page.next_token());
                    Ok((page, next))
                },
                |page, _| {
                    children.extend(page.children().iter().filter_map(|child| child.id()).map(str::to_string));
                    ControlFlow::Continue(())
                },
            )
            .await?;
            parents.extend(children);
        }
    }
    Ok(found.into_values().collect())
}

/// Keeps the active accounts of every page `fetch` returns, by ID: ListAccounts and
/// ListAccountsForParent page the same accounts, from the whole organization or from one unit.
async fn keep_accounts<F>(fetch: impl FnMut(Option<String>) -> F, found: &mut BTreeMap<String, Member>) -> Result<(), CallError>
where
    F: Future<Output = Result<(Vec<aws_sdk_organizations::types::Account>, Option<String>), CallError>>,
{
    aws::for_each_page(fetch, |accounts, _| {
        for account in accounts.iter().filter(|a| active(a)) {
            if let Some(id) = account.id() {
                let name = account.name().unwrap_or(id).to_string();
                found.insert(id.to_string(), Member { id: id.to_string(), name });
            }
        }
        ControlFlow::Continue(())
    })
    .await
}

/// The running listing: its task, and the newest complete list. Dropping it stops the task and
/// removes the listing's series.
pub struct Running {
    task: tokio::task::JoinHandle<()>,
    pub members: watch::Receiver<Option<Vec<Member>>>,
    key: TargetKey,
    report: Report,
}

impl Running {
    pub fn start(client: aws_sdk_organizations::Client, settings: Settings, report: Report) -> Running {
        let key = TargetKey { account: KIND.into(), region: REGION.into(), kind: KIND, service: KIND, name: KIND.into() };
        let (sender, members) = watch::channel(None);
        let task = tokio::spawn(run(client, settings, report.clone(), key.clone(), sender));
        Running { task, members, key, report }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.task.abort();
        self.report.remove(&self.key);
    }
}

/// Lists the accounts every `refresh_interval`, sooner after a failure, and sends each complete
/// list that differs from the last.
async fn run(
    client: aws_sdk_organizations::Client,
    settings: Settings,
    report: Report,
    key: TargetKey,
    sender: watch::Sender<Option<Vec<Member>>>,
) {
    let mut health = Health::default();
    loop {
        let listed = list(&client, &report.telemetry, &settings.include.ous, &settings.exclude.ous).await;
        health.record(&key, listed.as_ref().map(|_| ()));
        let count = match listed {
            Ok(members) => {
                let count = members.len();
                sender.send_if_modified(|last| {
                    let changed = last.as_ref() != Some(&members);
                    *last = Some(members);
                    changed
                });
                Some(count)
            }
            Err(_) => None,
        };
        let known = sender.borrow().as_ref().map(Vec::len);
        health.expect_every(settings.refresh_interval);
        report.publish(&key, &health, known.map(|n| format!("{n} active accounts listed")), None);
        let pause = if count.is_some() { settings.refresh_interval } else { settings.refresh_interval.min(RETRY) };
        tokio::time::sleep(pause).await;
    }
}
