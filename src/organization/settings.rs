//! The `organization` section: every selected account of an AWS Organization, each polled as an
//! account of `accounts` would be, through the same role.

use std::sync::LazyLock;
use std::time::Duration;

use serde::Serialize;
use serde::de::{self, Deserialize, Deserializer, MapAccess};

use crate::events::settings::{RawEvents, Settings as Events};
use crate::registry::{self, RawSettings};
use crate::yaml::{
    self, Context, Invalid, Keys, Located, Pattern, duration, external_id, is_account_id, is_placeholder, patterns, regions,
    required, role_arn, serialize_duration, serialize_redacted, tags,
};

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Settings {
    /// Assumed in each member: `arn:aws:iam::<id>:role/<role_name>`.
    pub role_name: String,
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "serialize_redacted")]
    pub external_id: Option<String>,
    /// A role in the management or a delegated-administrator account that may list accounts;
    /// without one, the exporter's own credentials list them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub list_role_arn: Option<String>,
    /// Empty means the region of the environment.
    pub regions: Vec<String>,
    pub include: Selector,
    pub exclude: Selector,
    pub account_label: AccountLabel,
    #[serde(serialize_with = "serialize_duration")]
    pub refresh_interval: Duration,
    /// What every member's collectors are given, as an account of `accounts` gives them.
    #[serde(flatten)]
    pub collectors: registry::Settings,
    /// Every member's tag allowlist, as an account of `accounts` takes it.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// One queue for the events of every member.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub events: Option<Events>,
}

/// Which accounts of the organization are selected, or excluded.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct Selector {
    /// Organizational units (or the root), each with every account below it: what is listed, or
    /// what is left out of it.
    pub ous: Vec<String>,
    /// 12-digit account IDs.
    pub accounts: Vec<String>,
    /// Regexes on account names.
    pub names: Vec<Pattern>,
}

impl Selector {
    /// Whether an account matches by its ID or name.
    fn matches(&self, id: &str, name: &str) -> bool {
        self.accounts.iter().any(|a| a == id) || self.names.iter().any(|p| p.0.is_match(name))
    }
}

/// What the `account` label of a member holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AccountLabel {
    /// The account's name in the organization.
    #[default]
    Name,
    /// Its 12-digit ID.
    Id,
}

impl Settings {
    /// Whether a listed account is polled. `ous` decide what is listed; of that, an account is
    /// selected when `include` names no account and no name pattern or it matches one of them,
    /// and it matches nothing in `exclude`.
    pub fn selects(&self, id: &str, name: &str) -> bool {
        let include = &self.include;
        (include.accounts.is_empty() && include.names.is_empty() || include.matches(id, name)) && !self.exclude.matches(id, name)
    }
}

/// How often the organization's accounts are listed, unless configured.
const REFRESH_INTERVAL: Duration = Duration::from_secs(3600);

/// The section as the file writes it.
#[derive(Default)]
pub struct RawOrganization {
    role_name: Option<Located<String>>,
    external_id: Option<Located<String>>,
    list_role_arn: Option<Located<String>>,
    regions: Vec<Located<String>>,
    include: Option<RawSelector>,
    exclude: Option<RawSelector>,
    account_label: Option<Located<String>>,
    refresh_interval: Option<Located<String>>,
    collectors: RawSettings,
    tags: Vec<Located<String>>,
    events: Option<Located<RawEvents>>,
}

impl Keys for RawOrganization {
    const NAME: &'static str = "RawOrganization";

    fn keys() -> &'static [&'static str] {
        static KEYS: LazyLock<Vec<&'static str>> = LazyLock::new(|| {
            let own = [
                "role_name",
                "external_id",
                "list_role_arn",
                "regions",
                "include",
                "exclude",
                "account_label",
                "refresh_interval",
            ];
            [&own[..], RawSettings::keys(), &["tags", "events"]].concat()
        });
        &KEYS
    }

    fn read<'de, A: MapAccess<'de>>(&mut self, key: &'static str, map: &mut A) -> Result<(), A::Error> {
        match key {
            "role_name" => self.role_name = map.next_value()?,
            "external_id" => self.external_id = map.next_value()?,
            "list_role_arn" => self.list_role_arn = map.next_value()?,
            "regions" => self.regions = map.next_value()?,
            "include" => self.include = map.next_value()?,
            "exclude" => self.exclude = map.next_value()?,
            "account_label" => self.account_label = map.next_value()?,
            "refresh_interval" => self.refresh_interval = map.next_value()?,
            "tags" => self.tags = map.next_value()?,
            "events" => self.events = map.next_value()?,
            _ => self.collectors.read(key, map)?,
        }
        Ok(())
    }

    fn finish<E: de::Error>(self) -> Result<Self, E> {
        required(self.role_name.as_ref(), "role_name")?;
        Ok(self)
    }
}

impl<'de> Deserialize<'de> for RawOrganization {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        yaml::deserialize(deserializer)
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSelector {
    #[serde(default)]
    ous: Vec<Located<String>>,
    #[serde(default)]
    accounts: Vec<Located<String>>,
    #[serde(default)]
    names: Vec<Located<String>>,
}

impl RawSelector {
    fn validate(self) -> Result<Selector, Invalid> {
        let mut selector = Selector::default();
        for ou in self.ous {
            let valid = (ou.value.starts_with("ou-") || ou.value.starts_with("r-"))
                && ou.value.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
            if !valid {
                return Err((
                    ou.referenced,
                    format!("ous: {:?} is not an OU or root ID such as ou-ab12-cdef3456 or r-ab12", ou.value),
                ));
            }
            selector.ous.push(ou.value);
        }
        for account in self.accounts {
            if !is_account_id(&account.value) {
                return Err((account.referenced, format!("accounts: {:?} is not a 12-digit account ID", account.value)));
            }
            selector.accounts.push(account.value);
        }
        selector.names = patterns(self.names)?;
        Ok(selector)
    }
}

impl RawOrganization {
    pub fn validate(self) -> Result<Settings, Invalid> {
        let role_name = role_name(self.role_name.expect("checked when read"))?;
        let external_id = self.external_id.map(external_id).transpose()?;
        let list_role_arn = self.list_role_arn.map(|arn| role_arn(arn, "list_role_arn")).transpose()?;
        let regions = regions(self.regions)?;
        let account_label = match self.account_label {
            None => AccountLabel::Name,
            Some(value) => match value.value.as_str() {
                "name" => AccountLabel::Name,
                "id" => AccountLabel::Id,
                other => return Err((value.referenced, format!("unknown account_label {other:?}: name or id"))),
            },
        };
        let refresh_interval = self.refresh_interval.map(duration).transpose()?.unwrap_or(REFRESH_INTERVAL);
        let tags = tags(self.tags)?;
        let collectors = self.collectors.validate(&Context { regions: &regions, tags: &tags })?;
        Ok(Settings {
            role_name,
            external_id,
            list_role_arn,
            include: self.include.map(RawSelector::validate).transpose()?.unwrap_or_default(),
            exclude: self.exclude.map(RawSelector::validate).transpose()?.unwrap_or_default(),
            account_label,
            refresh_interval,
            collectors,
            tags,
            events: self.events.map(|events| events.value.validate(&regions)).transpose()?,
            regions,
        })
    }
}

/// An IAM role name: 1 to 64 characters of `[\w+=,.@-]`, and not a placeholder.
fn role_name(name: Located<String>) -> Result<String, Invalid> {
    let valid_chars = name.value.chars().all(|c| c.is_ascii_alphanumeric() || "_+=,.@-".contains(c));
    if !(1..=64).contains(&name.value.len()) || !valid_chars {
        return Err((
            name.referenced,
            format!("role_name {:?} is not an IAM role name: 1 to 64 letters, digits and _+=,.@-", name.value),
        ));
    }
    if is_placeholder(&name.value) {
        return Err((name.referenced, format!("role_name {:?} is a placeholder, not a role name", name.value)));
    }
    Ok(name.value)
}
