//! The configuration file: its top-level shape (intervals, limits, the metrics selection, the
//! accounts), its validation and its defaults, composed with the sections that each collector and
//! feature declares in its own module.
//!
//! The file is parsed with serde-saphyr, a maintained pure-Rust YAML parser that reports line and
//! column and enforces budgets against alias and size bombs. Values that parse as YAML but make no
//! sense (a bad duration, an invalid regex, an empty or duplicate name) are read as
//! [`Located`] so that their errors point at the offending line and column too; [`crate::yaml`]
//! holds what every section is read with. Each collector's section of an account is read and
//! validated by its collector, through [`registry`], which names them: this module names none.

use std::collections::BTreeSet;
use std::ops::Deref;
use std::path::Path;
use std::sync::LazyLock;
use std::time::Duration;

use regex::Regex;
use serde::de::{self, Deserialize, Deserializer, MapAccess};
use serde::{Serialize, Serializer};

use crate::events::settings::RawEvents;
use crate::metrics_push::settings::RawMetricsPush;
use crate::organization::settings::RawOrganization;
use crate::registry::{self, RawSettings};
use crate::traces::settings::RawTraces;
use crate::yaml::{
    self, Context, Invalid, Keys, Located, external_id, non_empty, regex_reason, regions, required, role_arn, serialize_duration,
    serialize_redacted, tags, yaml_error,
};
use crate::{events, metrics_push, organization, traces};

/// Everything that can be wrong with a configuration file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read the configuration file: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{path}:{line}:{column}: {message}")]
    Invalid { path: String, line: u64, column: u64, message: String },
}

/// The validated configuration the exporter runs with.
#[derive(Debug, Clone, Serialize)]
pub struct Config {
    #[serde(serialize_with = "serialize_duration")]
    pub interval: Duration,
    /// The interval of targets with something running: an execution, or a sync in progress.
    #[serde(serialize_with = "serialize_duration")]
    pub active_interval: Duration,
    #[serde(serialize_with = "serialize_duration")]
    pub discovery_interval: Duration,
    #[serde(serialize_with = "serialize_duration")]
    pub request_timeout: Duration,
    pub max_concurrent_requests: usize,
    /// The request budget of each account and region: a sustained rate and a burst.
    pub requests_per_second: f64,
    pub burst: u32,
    /// Which families are exported, and how state sets are written.
    pub metrics: Metrics,
    /// Where pipeline runs are sent as OpenTelemetry traces, over what OTEL_EXPORTER_OTLP_* says.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub traces: Option<traces::Section>,
    /// Where the CI/CD metrics are pushed over OTLP, over what OTEL_EXPORTER_OTLP_* and
    /// OTEL_METRIC_EXPORT_INTERVAL say.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics_push: Option<metrics_push::Section>,
    pub accounts: Vec<Account>,
    /// Accounts listed from an AWS Organization, beside `accounts`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub organization: Option<organization::Settings>,
}

/// The `metrics` section: cardinality controls, like kube-state-metrics' allow and deny lists.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct Metrics {
    /// When not empty, only families whose name matches one of these are exported.
    pub include: Vec<FamilyPattern>,
    /// Families whose name matches one of these are not exported; they are never rendered.
    pub exclude: Vec<FamilyPattern>,
    pub state_sets: StateSets,
}

/// How state sets such as `aws_codepipeline_stage_status` are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StateSets {
    /// Every known status, 1 for the current one and 0 for the others.
    #[default]
    Full,
    /// Only the current status's series, at 1: a series disappears when its status changes.
    Sparse,
}

/// A regex on metric family names, matched against the whole name, that prints as written.
#[derive(Debug, Clone)]
pub struct FamilyPattern {
    pub source: String,
    /// `source` anchored at both ends.
    pub regex: Regex,
}

impl PartialEq for FamilyPattern {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl Serialize for FamilyPattern {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.source)
    }
}

/// One AWS account: the `account` label, how to get its credentials and where to look.
///
/// Its collectors' sections are in [`Account::collectors`], which it dereferences to: an account's
/// `codepipeline` section reads as `account.codepipeline`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Account {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role_arn: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "serialize_redacted")]
    pub external_id: Option<String>,
    /// Empty means the region of the environment (AWS_REGION, the profile, instance metadata).
    pub regions: Vec<String>,
    /// Each collector's section, under the collector's name.
    #[serde(flatten)]
    pub collectors: registry::Settings,
    /// The SQS queue that EventBridge puts the account's CodePipeline and Git sync events on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub events: Option<events::Settings>,
    /// The allowlist of resource tags exported as labels, as configured; the collectors that read
    /// tags hold the same in their settings.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
}

impl Deref for Account {
    type Target = registry::Settings;

    fn deref(&self) -> &registry::Settings {
        &self.collectors
    }
}

impl Account {
    /// The account's 12-digit ID, when its role names it.
    pub fn id(&self) -> Option<String> {
        self.role_arn.as_deref().and_then(yaml::account_of_role)
    }

    /// The account a member of `organization` is polled as.
    pub fn member(organization: &organization::Settings, id: &str, label: &str) -> Account {
        Account {
            name: label.to_string(),
            role_arn: Some(format!("arn:aws:iam::{id}:role/{}", organization.role_name)),
            external_id: organization.external_id.clone(),
            regions: organization.regions.clone(),
            collectors: organization.collectors.clone(),
            events: None,
            tags: organization.tags.clone(),
        }
    }

    fn default_account() -> Account {
        Account {
            name: "default".into(),
            role_arn: None,
            external_id: None,
            regions: Vec::new(),
            collectors: registry::Settings::default(),
            events: None,
            tags: Vec::new(),
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            interval: Duration::from_secs(60),
            active_interval: Duration::from_secs(15),
            discovery_interval: Duration::from_secs(300),
            request_timeout: Duration::from_secs(10),
            max_concurrent_requests: 4,
            requests_per_second: 5.0,
            burst: 10,
            metrics: Metrics::default(),
            traces: None,
            metrics_push: None,
            accounts: vec![Account::default_account()],
            organization: None,
        }
    }
}

impl Config {
    /// Reads and validates `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: display(path), source })?;
        Config::parse(&text, path)
    }

    /// Validates `text` as the content of `path`; `path` only names the file in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let raw: RawConfig = match serde_saphyr::from_str(text) {
            Ok(Some(raw)) => raw,
            Ok(None) => return Ok(Config::default()),
            Err(err) => {
                let (line, column, message) = yaml_error(&err);
                return Err(ConfigError::Invalid { path: display(path), line, column, message });
            }
        };
        raw.validate().map_err(|(at, message)| ConfigError::Invalid {
            path: display(path),
            line: at.line(),
            column: at.column(),
            message,
        })
    }

    /// The effective configuration as YAML, for `--config.check`.
    pub fn to_yaml(&self) -> String {
        serde_saphyr::to_string(self).unwrap_or_else(|err| format!("# cannot print the configuration: {err}\n"))
    }
}

fn display(path: &Path) -> String {
    path.display().to_string()
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    interval: Option<Located<String>>,
    active_interval: Option<Located<String>>,
    discovery_interval: Option<Located<String>>,
    request_timeout: Option<Located<String>>,
    max_concurrent_requests: Option<Located<usize>>,
    requests_per_second: Option<Located<f64>>,
    burst: Option<Located<u32>>,
    metrics: Option<RawMetrics>,
    traces: Option<RawTraces>,
    metrics_push: Option<RawMetricsPush>,
    accounts: Option<Located<Vec<RawAccount>>>,
    organization: Option<RawOrganization>,
}

impl RawConfig {
    fn validate(self) -> Result<Config, Invalid> {
        let defaults = Config::default();
        let duration = |value: Option<Located<String>>, default: Duration| value.map(yaml::duration).unwrap_or(Ok(default));
        let interval = duration(self.interval, defaults.interval)?;
        let active_interval = duration(self.active_interval, defaults.active_interval)?;
        let requests_per_second = match self.requests_per_second {
            Some(r) if !(r.value > 0.0 && r.value.is_finite()) => {
                return Err((r.referenced, "requests_per_second must be a number greater than 0".into()));
            }
            Some(r) => r.value,
            None => defaults.requests_per_second,
        };
        let burst = match self.burst {
            Some(b) if b.value == 0 => return Err((b.referenced, "burst must be at least 1".into())),
            Some(b) => b.value,
            None => defaults.burst,
        };
        let discovery_interval = duration(self.discovery_interval, defaults.discovery_interval)?;
        let request_timeout = duration(self.request_timeout, defaults.request_timeout)?;
        let max_concurrent_requests = match self.max_concurrent_requests {
            Some(n) if n.value == 0 => return Err((n.referenced, "max_concurrent_requests must be at least 1".into())),
            Some(n) => n.value,
            None => defaults.max_concurrent_requests,
        };
        let metrics = self.metrics.map(RawMetrics::validate).transpose()?.unwrap_or_default();
        let traces = self.traces.map(RawTraces::validate).transpose()?;
        let metrics_push = self.metrics_push.map(RawMetricsPush::validate).transpose()?;
        let organization = self.organization.map(RawOrganization::validate).transpose()?;
        let accounts = match self.accounts {
            // With an organization, its accounts are all there is unless others are listed.
            None if organization.is_some() => Vec::new(),
            None => defaults.accounts,
            Some(raw) if raw.value.is_empty() => {
                return Err((
                    raw.referenced,
                    "accounts must list at least one account; leave it out to poll the environment's".into(),
                ));
            }
            Some(raw) => {
                let raw = raw.value;
                let mut names = BTreeSet::new();
                let mut accounts = Vec::with_capacity(raw.len());
                for account in raw {
                    let at = account.name.as_ref().expect("checked when read").referenced;
                    let account = account.validate()?;
                    if !names.insert(account.name.clone()) {
                        return Err((at, format!("duplicate account name {:?}", account.name)));
                    }
                    accounts.push(account);
                }
                accounts
            }
        };
        Ok(Config {
            interval,
            active_interval,
            discovery_interval,
            request_timeout,
            max_concurrent_requests,
            requests_per_second,
            burst,
            metrics,
            traces,
            metrics_push,
            accounts,
            organization,
        })
    }
}

/// An entry of `accounts` as the file writes it, its collectors' sections among its own keys.
#[derive(Default)]
struct RawAccount {
    name: Option<Located<String>>,
    role_arn: Option<Located<String>>,
    external_id: Option<Located<String>>,
    regions: Vec<Located<String>>,
    collectors: RawSettings,
    events: Option<Located<RawEvents>>,
    tags: Vec<Located<String>>,
}

impl Keys for RawAccount {
    const NAME: &'static str = "RawAccount";

    fn keys() -> &'static [&'static str] {
        static KEYS: LazyLock<Vec<&'static str>> = LazyLock::new(|| {
            [&["name", "role_arn", "external_id", "regions"][..], RawSettings::keys(), &["events", "tags"]].concat()
        });
        &KEYS
    }

    fn read<'de, A: MapAccess<'de>>(&mut self, key: &'static str, map: &mut A) -> Result<(), A::Error> {
        match key {
            "name" => self.name = map.next_value()?,
            "role_arn" => self.role_arn = map.next_value()?,
            "external_id" => self.external_id = map.next_value()?,
            "regions" => self.regions = map.next_value()?,
            "events" => self.events = map.next_value()?,
            "tags" => self.tags = map.next_value()?,
            _ => self.collectors.read(key, map)?,
        }
        Ok(())
    }

    fn finish<E: de::Error>(self) -> Result<Self, E> {
        required(self.name.as_ref(), "name")?;
        Ok(self)
    }
}

impl<'de> Deserialize<'de> for RawAccount {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        yaml::deserialize(deserializer)
    }
}

impl RawAccount {
    fn validate(self) -> Result<Account, Invalid> {
        let name = non_empty(self.name.expect("checked when read"), "account name")?;
        let role_arn = self.role_arn.map(|arn| role_arn(arn, "role_arn")).transpose()?;
        let regions = regions(self.regions)?;
        let tags = tags(self.tags)?;
        let collectors = self.collectors.validate(&Context { regions: &regions, tags: &tags })?;
        let events = self.events.map(|events| events.value.validate(&regions)).transpose()?;
        let external_id = self.external_id.map(external_id).transpose()?;
        Ok(Account { name, role_arn, external_id, regions, collectors, events, tags })
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMetrics {
    #[serde(default)]
    include: Vec<Located<String>>,
    #[serde(default)]
    exclude: Vec<Located<String>>,
    state_sets: Option<Located<String>>,
}

impl RawMetrics {
    fn validate(self) -> Result<Metrics, Invalid> {
        let patterns = |raw: Vec<Located<String>>| {
            raw.into_iter()
                .map(|p| match Regex::new(&format!("^(?:{})$", p.value)) {
                    Ok(regex) => Ok(FamilyPattern { source: p.value, regex }),
                    Err(err) => Err((p.referenced, format!("invalid regex {:?}: {}", p.value, regex_reason(&err)))),
                })
                .collect::<Result<Vec<_>, _>>()
        };
        let state_sets = match self.state_sets {
            None => StateSets::Full,
            Some(value) => match value.value.as_str() {
                "full" => StateSets::Full,
                "sparse" => StateSets::Sparse,
                other => return Err((value.referenced, format!("unknown state_sets {other:?}: full or sparse"))),
            },
        };
        Ok(Metrics { include: patterns(self.include)?, exclude: patterns(self.exclude)?, state_sets })
    }
}
