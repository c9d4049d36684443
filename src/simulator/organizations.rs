//! The simulated AWS Organizations service: the organization's tree of roots, organizational units
//! and accounts, and which member accounts let the exporter assume their role.
//!
//! It speaks awsJson 1.1 with the `X-Amz-Target` prefix `AWSOrganizationsV20161128`, as the pinned
//! `aws-sdk-organizations` does. Every List operation pages with `NextToken`, `MaxResults` items at
//! most (1 to 20, as AWS allows) and never more than the organization's own page size, so a test
//! can make the exporter walk pages whatever it asks for.

use std::collections::{BTreeMap, BTreeSet};

use ciborium::Value;

use super::ACCOUNT_ID;
use super::protocol::{Failure, list, map, member, number, opt_text, page_bounds, text, timestamp};

/// When every simulated account joined its organization.
const JOINED: f64 = 1_600_000_000.0;

/// An organization as Organizations describes it: its one root, its organizational units and its
/// accounts, and how the accounts' roles answer AssumeRole.
#[derive(Debug, Clone)]
pub struct SimOrganization {
    /// The organization's ID, `o-` and 10 to 32 characters.
    pub id: String,
    /// The account that owns the organization; its ARNs name it.
    pub management_account: String,
    /// The ID of the organization's root, the parent of the top-level units and accounts.
    pub root: String,
    /// Organizational units by ID.
    pub units: BTreeMap<String, SimUnit>,
    /// Accounts by their 12-digit ID.
    pub accounts: BTreeMap<String, SimAccount>,
    /// Accounts whose role refuses AssumeRole, as a role whose trust policy does not name the
    /// exporter does.
    pub deny_assume: BTreeSet<String>,
    /// When set, AssumeRole into any account succeeds only with exactly this external ID, as a
    /// trust policy with an `sts:ExternalId` condition requires.
    pub external_id: Option<String>,
    /// Items per page of every List operation; AWS's own maximum is 20.
    pub page_size: usize,
}

/// An organizational unit: its name and the ID of its parent, the root or another unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimUnit {
    /// The unit's display name.
    pub name: String,
    /// The ID of the root or unit that holds it, which ListChildren lists it under.
    pub parent: String,
}

/// An account of the organization as ListAccounts describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimAccount {
    /// The 12-digit account ID.
    pub id: String,
    /// The account's display name.
    pub name: String,
    /// ACTIVE, SUSPENDED or PENDING_CLOSURE, which ListAccounts gives as both Status and State.
    pub status: String,
    /// The ID of the root or organizational unit that holds the account.
    pub parent: String,
}

impl Default for SimOrganization {
    /// An organization of the simulated account alone, as its management account in the root.
    fn default() -> SimOrganization {
        let mut organization = SimOrganization {
            id: "o-exampleorgid".into(),
            management_account: ACCOUNT_ID.into(),
            root: "r-examplerootid".into(),
            units: BTreeMap::new(),
            accounts: BTreeMap::new(),
            deny_assume: BTreeSet::new(),
            external_id: None,
            page_size: 20,
        };
        let root = organization.root.clone();
        organization.add_account(ACCOUNT_ID, "management", &root);
        organization
    }
}

impl SimOrganization {
    /// Adds an organizational unit under `parent` (the root or another unit), so that a test
    /// builds a tree in a few lines.
    pub fn add_unit(&mut self, id: &str, name: &str, parent: &str) -> &mut SimOrganization {
        self.units.insert(id.into(), SimUnit { name: name.into(), parent: parent.into() });
        self
    }

    /// Adds an ACTIVE account under `parent` (the root or a unit), so that a test builds an
    /// organization in a few lines.
    pub fn add_account(&mut self, id: &str, name: &str, parent: &str) -> &mut SimOrganization {
        let account = SimAccount { id: id.into(), name: name.into(), status: "ACTIVE".into(), parent: parent.into() };
        self.accounts.insert(id.into(), account);
        self
    }

    /// The page size List operations use when the caller asks for more.
    fn page(&self) -> usize {
        if self.page_size == 0 { 20 } else { self.page_size }
    }

    fn arn(&self, kind: &str, id: &str) -> String {
        format!("arn:aws:organizations::{}:{kind}/{}/{id}", self.management_account, self.id)
    }

    fn account(&self, account: &SimAccount) -> Value {
        let joined_method = if account.id == self.management_account { "CREATED" } else { "INVITED" };
        map(vec![
            ("Id", text(&account.id)),
            ("Arn", text(&self.arn("account", &account.id))),
            ("Email", text(&email(&account.id))),
            ("Name", text(&account.name)),
            ("Status", text(&account.status)),
            ("State", text(&account.status)),
            ("JoinedMethod", text(joined_method)),
            ("JoinedTimestamp", timestamp(JOINED)),
        ])
    }

    /// The parent an input's `ParentId` names: the root or a unit, else ParentNotFoundException.
    fn parent<'a>(&self, input: &'a Value) -> Result<&'a str, Failure> {
        let parent = member(input, "ParentId").ok_or_else(|| invalid("ParentId is required"))?;
        if parent == self.root || self.units.contains_key(parent) {
            Ok(parent)
        } else {
            Err(Failure::new(400, "ParentNotFoundException", "We can't find a root or OU with the ParentId that you specified."))
        }
    }
}

/// The address an account's root user signs in with.
fn email(account: &str) -> String {
    format!("aws+{account}@example.com")
}

fn invalid(message: &str) -> Failure {
    Failure::new(400, "InvalidInputException", message)
}

/// One page of `items` as the input's `NextToken` and `MaxResults` ask for it, under `member_name`.
fn page(organization: &SimOrganization, input: &Value, items: Vec<Value>, member_name: &str) -> Result<Value, Failure> {
    let size = match number(input, "MaxResults") {
        Some(asked @ 1..=20) => (asked as usize).min(organization.page()),
        Some(_) => return Err(invalid("MaxResults must be between 1 and 20")),
        None => organization.page(),
    };
    let (start, next) = page_bounds(member(input, "NextToken"), size, items.len())?;
    let items = items.into_iter().skip(start).take(size);
    Ok(map(vec![(member_name, list(items)), ("NextToken", opt_text(next.as_deref()))]))
}

/// Answers one operation from the organization's current state.
pub fn handle(organization: &SimOrganization, operation: &str, input: &Value) -> Result<Value, Failure> {
    match operation {
        "ListAccounts" => {
            let accounts = organization.accounts.values().map(|a| organization.account(a)).collect();
            page(organization, input, accounts, "Accounts")
        }
        "ListAccountsForParent" => {
            let parent = organization.parent(input)?;
            let accounts =
                organization.accounts.values().filter(|a| a.parent == parent).map(|a| organization.account(a)).collect();
            page(organization, input, accounts, "Accounts")
        }
        "ListChildren" => {
            let parent = organization.parent(input)?;
            let kind = member(input, "ChildType").unwrap_or_default();
            let children: Vec<&str> = match kind {
                "ACCOUNT" => organization.accounts.values().filter(|a| a.parent == parent).map(|a| a.id.as_str()).collect(),
                "ORGANIZATIONAL_UNIT" => {
                    organization.units.iter().filter(|(_, u)| u.parent == parent).map(|(id, _)| id.as_str()).collect()
                }
                _ => return Err(invalid("ChildType must be ACCOUNT or ORGANIZATIONAL_UNIT")),
            };
            let children = children.into_iter().map(|id| map(vec![("Id", text(id)), ("Type", text(kind))])).collect();
            page(organization, input, children, "Children")
        }
        "ListRoots" => {
            let root = map(vec![
                ("Id", text(&organization.root)),
                ("Arn", text(&organization.arn("root", &organization.root))),
                ("Name", text("Root")),
                ("PolicyTypes", list([])),
            ]);
            page(organization, input, vec![root], "Roots")
        }
        "DescribeOrganization" => Ok(map(vec![(
            "Organization",
            map(vec![
                ("Id", text(&organization.id)),
                (
                    "Arn",
                    text(&format!("arn:aws:organizations::{}:organization/{}", organization.management_account, organization.id)),
                ),
                ("FeatureSet", text("ALL")),
                ("MasterAccountArn", text(&organization.arn("account", &organization.management_account))),
                ("MasterAccountId", text(&organization.management_account)),
                ("MasterAccountEmail", text(&email(&organization.management_account))),
                ("AvailablePolicyTypes", list([])),
            ]),
        )])),
        _ => Err(Failure::new(400, "UnknownOperationException", format!("operation {operation} is not simulated"))),
    }
}
