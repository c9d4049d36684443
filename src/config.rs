//! The configuration file: its YAML shape, its validation and its defaults.
//!
//! The file is parsed with serde-saphyr, a maintained pure-Rust YAML parser that reports line and
//! column and enforces budgets against alias and size bombs. Values that parse as YAML but make no
//! sense (a bad duration, an invalid regex, an empty or duplicate name) are read as `Spanned` so
//! that their errors point at the offending line and column too.

use std::collections::BTreeSet;
use std::fmt;
use std::path::Path;
use std::time::Duration;

use regex::Regex;
use serde::{Deserialize, Serialize, Serializer};
use serde_saphyr::Spanned;

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
    pub traces: Option<Traces>,
    /// Where the CI/CD metrics are pushed over OTLP, over what OTEL_EXPORTER_OTLP_* and
    /// OTEL_METRIC_EXPORT_INTERVAL say.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics_push: Option<MetricsPush>,
    pub accounts: Vec<Account>,
    /// Accounts listed from an AWS Organization, beside `accounts`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub organization: Option<Organization>,
}

/// The `organization` section: every selected account of an AWS Organization, each polled as an
/// account of `accounts` would be, through the same role.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Organization {
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
    /// What every member is polled with: `codepipeline`, `codeconnections` and `tags` as an
    /// account of `accounts` takes them.
    pub codepipeline: CodePipeline,
    pub codeconnections: CodeConnections,
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

impl Organization {
    /// Whether a listed account is polled. `ous` decide what is listed; of that, an account is
    /// selected when `include` names no account and no name pattern or it matches one of them,
    /// and it matches nothing in `exclude`.
    pub fn selects(&self, id: &str, name: &str) -> bool {
        let include = &self.include;
        (include.accounts.is_empty() && include.names.is_empty() || include.matches(id, name)) && !self.exclude.matches(id, name)
    }

    /// The account a member is polled as.
    pub fn member(&self, id: &str, label: &str) -> Account {
        Account {
            name: label.to_string(),
            role_arn: Some(format!("arn:aws:iam::{id}:role/{}", self.role_name)),
            external_id: self.external_id.clone(),
            regions: self.regions.clone(),
            codepipeline: self.codepipeline.clone(),
            codeconnections: self.codeconnections.clone(),
            events: None,
            tags: self.tags.clone(),
        }
    }
}

/// The `traces` section. Each key overrides the OpenTelemetry variable of the same meaning; an
/// endpoint from either turns traces on.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Traces {
    /// The URL spans are POSTed to, used as it is (OTEL_EXPORTER_OTLP_TRACES_ENDPOINT).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// Headers of every export (OTEL_EXPORTER_OTLP_HEADERS), which often carry a token: their
    /// values are never printed.
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "serialize_header_names")]
    pub headers: Option<Vec<(String, String)>>,
    /// How long one export may take (OTEL_EXPORTER_OTLP_TIMEOUT).
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "serialize_optional_duration")]
    pub timeout: Option<Duration>,
    /// A PEM file of the certificate authorities to trust (OTEL_EXPORTER_OTLP_CERTIFICATE).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub certificate: Option<String>,
    /// `service.name` of every run's resource (OTEL_SERVICE_NAME).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_name: Option<String>,
    /// Spans waiting to be sent at most; past it, runs are dropped and counted.
    pub queue_size: usize,
}

impl Default for Traces {
    fn default() -> Self {
        Traces { endpoint: None, headers: None, timeout: None, certificate: None, service_name: None, queue_size: 32_768 }
    }
}

/// The `metrics_push` section. Each key overrides the OpenTelemetry variable of the same meaning;
/// an endpoint from either turns the push on.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MetricsPush {
    /// The URL data points are POSTed to, used as it is (OTEL_EXPORTER_OTLP_METRICS_ENDPOINT).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// Headers of every export (OTEL_EXPORTER_OTLP_METRICS_HEADERS): their values are never
    /// printed.
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "serialize_header_names")]
    pub headers: Option<Vec<(String, String)>>,
    /// How long one export may take (OTEL_EXPORTER_OTLP_METRICS_TIMEOUT).
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "serialize_optional_duration")]
    pub timeout: Option<Duration>,
    /// A PEM file of the certificate authorities to trust (OTEL_EXPORTER_OTLP_METRICS_CERTIFICATE).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub certificate: Option<String>,
    /// `service.name` of every resource (OTEL_SERVICE_NAME).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_name: Option<String>,
    /// How often the metrics are collected and pushed (OTEL_METRIC_EXPORT_INTERVAL).
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "serialize_optional_duration")]
    pub interval: Option<Duration>,
    /// OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temporality: Option<Temporality>,
    /// Data points waiting to be sent at most; past it, collections are dropped and counted.
    pub queue_size: usize,
}

impl Default for MetricsPush {
    fn default() -> Self {
        MetricsPush {
            endpoint: None,
            headers: None,
            timeout: None,
            certificate: None,
            service_name: None,
            interval: None,
            temporality: None,
            queue_size: 65_536,
        }
    }
}

/// The aggregation temporality the push prefers, as the OpenTelemetry SDK specification defines
/// the preference: delta makes counters and histograms delta and keeps updowncounters cumulative.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Temporality {
    Cumulative,
    Delta,
}

impl Temporality {
    /// `cumulative` or `delta`, in any case, as the variable takes them.
    pub fn parse(value: &str) -> Result<Temporality, String> {
        match value.trim().to_ascii_lowercase().as_str() {
            "cumulative" => Ok(Temporality::Cumulative),
            "delta" => Ok(Temporality::Delta),
            _ => Err(format!("unsupported temporality {:?}: cumulative or delta", value.trim())),
        }
    }
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
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Account {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role_arn: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "serialize_redacted")]
    pub external_id: Option<String>,
    /// Empty means the region of the environment (AWS_REGION, the profile, instance metadata).
    pub regions: Vec<String>,
    pub codepipeline: CodePipeline,
    pub codeconnections: CodeConnections,
    /// The SQS queue that EventBridge puts the account's CodePipeline and Git sync events on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub events: Option<Events>,
    /// The allowlist of pipeline tags, as configured; `codepipeline.tags` holds the same.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
}

impl Account {
    /// The account's 12-digit ID, when its role names it.
    pub fn id(&self) -> Option<String> {
        self.role_arn.as_deref().and_then(account_of_role)
    }
}

/// The account ID of an IAM role ARN (`arn:aws:iam::111122223333:role/name`).
pub fn account_of_role(role_arn: &str) -> Option<String> {
    let id = role_arn.split(':').nth(4)?;
    is_account_id(id).then(|| id.to_string())
}

fn is_account_id(id: &str) -> bool {
    id.len() == 12 && id.bytes().all(|b| b.is_ascii_digit())
}

/// The label name a tag key is exported as: `tag_` and the key with every character that a label
/// name cannot hold replaced by `_`, as YACE does.
pub fn tag_label(key: &str) -> String {
    let sanitized: String = key.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' }).collect();
    format!("tag_{sanitized}")
}

/// The `events` section of an account: where its events arrive, and how often targets are polled
/// anyway while they do.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Events {
    pub queue_url: String,
    pub queue_region: String,
    /// While events flow, each target they announce is polled this often, not at `interval`.
    #[serde(serialize_with = "serialize_duration")]
    pub reconcile_interval: Duration,
}

impl Events {
    /// The queue's name: the last segment of its URL.
    pub fn queue_name(&self) -> &str {
        self.queue_url.rsplit('/').next().unwrap_or(&self.queue_url)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CodePipeline {
    pub discover: bool,
    /// ListPipelineExecutions for execution outcomes, durations and delivery metrics.
    pub executions: bool,
    /// Seconds per CodeBuild phase of each build action (`aws_codepipeline_action_phase_seconds_total`):
    /// opt-in, as it is 10 series per build action (one per phase that ends).
    pub build_phases: bool,
    pub include: Vec<Pattern>,
    pub exclude: Vec<Pattern>,
    pub pipelines: Vec<String>,
    /// The pipeline tags exported as labels of `aws_codepipeline_pipeline_tags`: the account's
    /// `tags`, which the collector is given here; none are read when empty.
    #[serde(skip)]
    pub tags: Vec<String>,
}

impl CodePipeline {
    /// Whether a discovered pipeline is polled: it matches an include pattern (or there are none)
    /// and no exclude pattern.
    pub fn selects(&self, pipeline: &str) -> bool {
        (self.include.is_empty() || self.include.iter().any(|p| p.0.is_match(pipeline)))
            && !self.exclude.iter().any(|p| p.0.is_match(pipeline))
    }
}

/// CloudFormation Git sync: which repository syncs and resources to poll.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CodeConnections {
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

impl CodeConnections {
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

/// A compiled regular expression that prints as its source.
#[derive(Debug, Clone)]
pub struct Pattern(pub Regex);

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_str() == other.0.as_str()
    }
}

impl Serialize for Pattern {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.0.as_str())
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

impl Account {
    fn default_account() -> Account {
        Account {
            name: "default".into(),
            role_arn: None,
            external_id: None,
            regions: Vec::new(),
            codepipeline: CodePipeline {
                discover: true,
                executions: true,
                build_phases: false,
                include: Vec::new(),
                exclude: Vec::new(),
                pipelines: Vec::new(),
                tags: Vec::new(),
            },
            codeconnections: CodeConnections {
                discover: true,
                repository_syncs: Vec::new(),
                resource_syncs: true,
                connections: true,
                blockers: true,
                enabled: true,
                regions: None,
            },
            events: None,
            tags: Vec::new(),
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

/// Where a YAML file is wrong and why, as `file:line:column: message` needs them: the first line
/// of serde-saphyr's message, without the location it may repeat, since the caller prints its own.
pub fn yaml_error(err: &serde_saphyr::Error) -> (u64, u64, String) {
    let location = err.location();
    let message = err.without_snippet().to_string();
    let line = message.lines().next().unwrap_or(&message).trim();
    let message = match line.find(" at line ") {
        Some(at) => line[..at].to_string(),
        None => line.to_string(),
    };
    (location.map(|l| l.line()).unwrap_or(1), location.map(|l| l.column()).unwrap_or(1), message)
}

/// The regex crate explains an error over several lines with a caret; its last line says why.
fn regex_reason(err: &regex::Error) -> String {
    let text = err.to_string();
    text.lines().last().unwrap_or(&text).trim().trim_start_matches("error: ").to_string()
}

type Located<T> = Spanned<T>;
type Invalid = (serde_saphyr::Location, String);

#[derive(Deserialize)]
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOrganization {
    role_name: Located<String>,
    external_id: Option<Located<String>>,
    list_role_arn: Option<Located<String>>,
    #[serde(default)]
    regions: Vec<Located<String>>,
    include: Option<RawSelector>,
    exclude: Option<RawSelector>,
    account_label: Option<Located<String>>,
    refresh_interval: Option<Located<String>>,
    codepipeline: Option<RawCodePipeline>,
    codeconnections: Option<RawCodeConnections>,
    #[serde(default)]
    tags: Vec<Located<String>>,
    events: Option<Located<RawEvents>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSelector {
    #[serde(default)]
    ous: Vec<Located<String>>,
    #[serde(default)]
    accounts: Vec<Located<String>>,
    #[serde(default)]
    names: Vec<Located<String>>,
}

/// How often the organization's accounts are listed, unless configured.
const REFRESH_INTERVAL: Duration = Duration::from_secs(3600);

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
    fn validate(self) -> Result<Organization, Invalid> {
        let role_name = role_name(self.role_name)?;
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
        let refresh_interval = match self.refresh_interval {
            Some(value) => parse_duration(&value.value).map_err(|message| (value.referenced, message))?,
            None => REFRESH_INTERVAL,
        };
        let defaults = Account::default_account();
        let mut codepipeline = self.codepipeline.map(RawCodePipeline::validate).transpose()?.unwrap_or(defaults.codepipeline);
        let tags = tags(self.tags)?;
        codepipeline.tags = tags.clone();
        Ok(Organization {
            role_name,
            external_id,
            list_role_arn,
            include: self.include.map(RawSelector::validate).transpose()?.unwrap_or_default(),
            exclude: self.exclude.map(RawSelector::validate).transpose()?.unwrap_or_default(),
            account_label,
            refresh_interval,
            codepipeline,
            tags,
            codeconnections: self
                .codeconnections
                .map(|raw| raw.validate(&regions))
                .transpose()?
                .unwrap_or(defaults.codeconnections),
            events: self.events.map(|events| events.value.validate(&regions)).transpose()?,
            regions,
        })
    }
}

/// Regexes, each pointing at its own line when invalid.
fn patterns(raw: Vec<Located<String>>) -> Result<Vec<Pattern>, Invalid> {
    raw.into_iter()
        .map(|p| {
            Regex::new(&p.value)
                .map(Pattern)
                .map_err(|err| (p.referenced, format!("invalid regex {:?}: {}", p.value, regex_reason(&err))))
        })
        .collect()
}

fn role_arn(arn: Located<String>, what: &str) -> Result<String, Invalid> {
    if !arn.value.starts_with("arn:") {
        return Err((arn.referenced, format!("{what} {:?} is not an ARN (arn:aws:iam::ACCOUNT:role/NAME)", arn.value)));
    }
    // The role's name is the part after the last slash; an example's placeholder there would
    // otherwise fail only at the first AssumeRole, as an AccessDenied.
    let name = arn.value.rsplit('/').next().unwrap_or_default();
    if is_placeholder(name) {
        return Err((arn.referenced, format!("{what} {:?} names a placeholder role {name:?}, not a role", arn.value)));
    }
    Ok(arn.value)
}

/// A value copied from an example and never filled in: `optional`, `<role>`, `REPLACE_ME`,
/// `your-role`. Caught here, it names its line; sent to AWS, it is an AccessDenied for every
/// account, or an external ID that a role without one ignores.
fn is_placeholder(value: &str) -> bool {
    const WORDS: [&str; 12] = [
        "optional",
        "required",
        "changeme",
        "change-me",
        "change_me",
        "replaceme",
        "replace-me",
        "replace_me",
        "todo",
        "tbd",
        "xxx",
        "example",
    ];
    let lower = value.trim().to_ascii_lowercase();
    WORDS.contains(&lower.as_str())
        || lower.contains('<')
        || lower.contains('>')
        || lower.starts_with("your-")
        || lower.starts_with("your_")
        || lower.chars().all(|c| c == 'x' || c == '.')
}

/// An STS external ID: 2 to 1,224 characters of `[\w+=,.@:/-]`, and not a placeholder.
fn external_id(id: Located<String>) -> Result<String, Invalid> {
    let valid_chars = id.value.chars().all(|c| c.is_ascii_alphanumeric() || "_+=,.@:/-".contains(c));
    if !(2..=1224).contains(&id.value.len()) || !valid_chars {
        return Err((
            id.referenced,
            format!("external_id {:?} is not an external ID: 2 to 1224 letters, digits and _+=,.@:/-", id.value),
        ));
    }
    if is_placeholder(&id.value) {
        return Err((
            id.referenced,
            format!("external_id {:?} is a placeholder: give the role's external ID, or leave the key out", id.value),
        ));
    }
    Ok(id.value)
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

fn regions(raw: Vec<Located<String>>) -> Result<Vec<String>, Invalid> {
    let mut regions = Vec::with_capacity(raw.len());
    for region in raw {
        let at = region.referenced;
        let region = non_empty(region, "region")?;
        if !region.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-') {
            return Err((at, format!("region {region:?} is not an AWS region name such as us-east-1")));
        }
        if regions.contains(&region) {
            return Err((at, format!("region {region:?} is listed twice")));
        }
        regions.push(region);
    }
    Ok(regions)
}

/// The tag keys of an allowlist, each once and each a distinct label name.
fn tags(raw: Vec<Located<String>>) -> Result<Vec<String>, Invalid> {
    let mut tags: Vec<String> = Vec::with_capacity(raw.len());
    for tag in raw {
        let at = tag.referenced;
        let key = non_empty(tag, "tag key")?;
        if let Some(other) = tags.iter().find(|other| tag_label(other) == tag_label(&key)) {
            return Err((at, format!("tags {key:?} and {other:?} are both exported as the label {}", tag_label(&key))));
        }
        tags.push(key);
    }
    Ok(tags)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTraces {
    endpoint: Option<Located<String>>,
    headers: Option<Located<std::collections::BTreeMap<String, String>>>,
    timeout: Option<Located<String>>,
    certificate: Option<Located<String>>,
    service_name: Option<Located<String>>,
    queue_size: Option<Located<usize>>,
}

impl RawTraces {
    fn validate(self) -> Result<Traces, Invalid> {
        let defaults = Traces::default();
        let endpoint = match self.endpoint {
            Some(url) if !(url.value.starts_with("http://") || url.value.starts_with("https://")) => {
                return Err((
                    url.referenced,
                    format!(
                        "endpoint {:?} is not an http:// or https:// URL (OTLP over HTTP, as http://collector:4318/v1/traces or /v1/metrics)",
                        url.value
                    ),
                ));
            }
            Some(url) => Some(url.value),
            None => None,
        };
        let headers = self.headers.map(|h| h.value.into_iter().collect());
        let timeout = match self.timeout {
            Some(value) => Some(parse_duration(&value.value).map_err(|message| (value.referenced, message))?),
            None => None,
        };
        let queue_size = match self.queue_size {
            Some(n) if n.value == 0 => return Err((n.referenced, "queue_size must be at least 1".into())),
            Some(n) => n.value,
            None => defaults.queue_size,
        };
        Ok(Traces {
            endpoint,
            headers,
            timeout,
            certificate: self.certificate.map(|c| non_empty(c, "certificate")).transpose()?,
            service_name: self.service_name.map(|n| non_empty(n, "service_name")).transpose()?,
            queue_size,
        })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMetricsPush {
    endpoint: Option<Located<String>>,
    headers: Option<Located<std::collections::BTreeMap<String, String>>>,
    timeout: Option<Located<String>>,
    certificate: Option<Located<String>>,
    service_name: Option<Located<String>>,
    interval: Option<Located<String>>,
    temporality: Option<Located<String>>,
    queue_size: Option<Located<usize>>,
}

impl RawMetricsPush {
    fn validate(self) -> Result<MetricsPush, Invalid> {
        let traces = RawTraces {
            endpoint: self.endpoint,
            headers: self.headers,
            timeout: self.timeout,
            certificate: self.certificate,
            service_name: self.service_name,
            queue_size: self.queue_size,
        };
        let interval = match self.interval {
            Some(value) => Some(parse_duration(&value.value).map_err(|message| (value.referenced, message))?),
            None => None,
        };
        let temporality = match self.temporality {
            Some(value) => Some(Temporality::parse(&value.value).map_err(|message| (value.referenced, message))?),
            None => None,
        };
        let queue_size = traces.queue_size.as_ref().map(|n| n.value);
        let Traces { endpoint, headers, timeout, certificate, service_name, .. } = traces.validate()?;
        Ok(MetricsPush {
            endpoint,
            headers,
            timeout,
            certificate,
            service_name,
            interval,
            temporality,
            queue_size: queue_size.unwrap_or(MetricsPush::default().queue_size),
        })
    }
}

#[derive(Deserialize)]
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAccount {
    name: Located<String>,
    role_arn: Option<Located<String>>,
    external_id: Option<Located<String>>,
    #[serde(default)]
    regions: Vec<Located<String>>,
    codepipeline: Option<RawCodePipeline>,
    codeconnections: Option<RawCodeConnections>,
    events: Option<Located<RawEvents>>,
    #[serde(default)]
    tags: Vec<Located<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEvents {
    queue_url: Located<String>,
    queue_region: Option<Located<String>>,
    reconcile_interval: Option<Located<String>>,
}

/// How often targets are polled while events flow, unless configured.
const RECONCILE_INTERVAL: Duration = Duration::from_secs(600);

impl RawEvents {
    /// `regions` are the account's, whose first is the queue's region when neither the URL's host
    /// nor `queue_region` names one.
    fn validate(self, regions: &[String]) -> Result<Events, Invalid> {
        let url = &self.queue_url.value;
        let Some(rest) = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://")) else {
            return Err((
                self.queue_url.referenced,
                format!("queue_url {url:?} is not a queue URL (https://sqs.REGION.amazonaws.com/ACCOUNT/NAME)"),
            ));
        };
        let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
        if path.is_empty() || path.ends_with('/') {
            return Err((
                self.queue_url.referenced,
                format!("queue_url {url:?} names no queue (https://sqs.REGION.amazonaws.com/ACCOUNT/NAME)"),
            ));
        }
        // sqs.us-east-1.amazonaws.com, and the legacy us-east-1.queue.amazonaws.com.
        let from_host = host
            .strip_prefix("sqs.")
            .and_then(|h| h.split('.').next())
            .or_else(|| host.split_once(".queue.").map(|(region, _)| region))
            .filter(|region| region.contains('-'))
            .map(str::to_string);
        let queue_region = match (self.queue_region, from_host) {
            (Some(region), _) => non_empty(region, "queue_region")?,
            (None, Some(region)) => region,
            (None, None) => match regions.first() {
                Some(region) => region.clone(),
                None => {
                    return Err((
                        self.queue_url.referenced,
                        "the queue's region is neither in queue_url nor given as queue_region, and the account lists no regions"
                            .into(),
                    ));
                }
            },
        };
        let reconcile_interval = match self.reconcile_interval {
            Some(value) => parse_duration(&value.value).map_err(|message| (value.referenced, message))?,
            None => RECONCILE_INTERVAL,
        };
        Ok(Events { queue_url: self.queue_url.value, queue_region, reconcile_interval })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCodeConnections {
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCodePipeline {
    discover: Option<bool>,
    executions: Option<bool>,
    build_phases: Option<bool>,
    #[serde(default)]
    include: Vec<Located<String>>,
    #[serde(default)]
    exclude: Vec<Located<String>>,
    #[serde(default)]
    pipelines: Vec<Located<String>>,
}

impl RawConfig {
    fn validate(self) -> Result<Config, Invalid> {
        let defaults = Config::default();
        let duration = |value: Option<Located<String>>, default: Duration| match value {
            Some(value) => parse_duration(&value.value).map_err(|message| (value.referenced, message)),
            None => Ok(default),
        };
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
                    let at = account.name.referenced;
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

impl RawAccount {
    fn validate(self) -> Result<Account, Invalid> {
        let name = non_empty(self.name, "account name")?;
        let role_arn = self.role_arn.map(|arn| role_arn(arn, "role_arn")).transpose()?;
        let regions = regions(self.regions)?;
        let mut codepipeline = match self.codepipeline {
            Some(raw) => raw.validate()?,
            None => Account::default_account().codepipeline,
        };
        let tags = tags(self.tags)?;
        codepipeline.tags = tags.clone();
        let codeconnections = match self.codeconnections {
            Some(raw) => raw.validate(&regions)?,
            None => Account::default_account().codeconnections,
        };
        let events = self.events.map(|events| events.value.validate(&regions)).transpose()?;
        let external_id = self.external_id.map(external_id).transpose()?;
        Ok(Account { name, role_arn, external_id, regions, codepipeline, codeconnections, events, tags })
    }
}

impl RawCodePipeline {
    fn validate(self) -> Result<CodePipeline, Invalid> {
        let mut pipelines = Vec::with_capacity(self.pipelines.len());
        for pipeline in self.pipelines {
            let name = non_empty(pipeline, "pipeline name")?;
            if !pipelines.contains(&name) {
                pipelines.push(name);
            }
        }
        Ok(CodePipeline {
            discover: self.discover.unwrap_or(true),
            executions: self.executions.unwrap_or(true),
            build_phases: self.build_phases.unwrap_or(false),
            include: patterns(self.include)?,
            exclude: patterns(self.exclude)?,
            pipelines,
            tags: Vec::new(),
        })
    }
}

impl RawCodeConnections {
    /// `regions` are those of the account (or organization) the section belongs to; the section's
    /// own `regions` must be among them.
    fn validate(self, regions: &[String]) -> Result<CodeConnections, Invalid> {
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
                None => "CFN_STACK_SYNC".into(),
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
        Ok(CodeConnections {
            discover: self.discover.unwrap_or(true),
            repository_syncs,
            resource_syncs: self.resource_syncs.unwrap_or(true),
            connections: self.connections.unwrap_or(true),
            blockers: self.blockers.unwrap_or(true),
            enabled: self.enabled.unwrap_or(true),
            regions: only,
        })
    }
}

fn non_empty(value: Located<String>, what: &str) -> Result<String, Invalid> {
    if value.value.trim().is_empty() { Err((value.referenced, format!("{what} must not be empty"))) } else { Ok(value.value) }
}

/// Parses a duration in Prometheus's notation: one or more of `<number><unit>` with the units
/// ms, s, m, h and d, such as `90s`, `5m` or `1h30m`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let invalid = || format!("invalid duration {text:?}: use a number and a unit (ms, s, m, h, d) such as 30s, 5m or 1h30m");
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(invalid());
    }
    let mut total = Duration::ZERO;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        if digits == 0 {
            return Err(invalid());
        }
        let number: u64 = rest[..digits].parse().map_err(|_| invalid())?;
        rest = &rest[digits..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
        let millis = match &rest[..unit_len] {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => return Err(invalid()),
        };
        rest = &rest[unit_len..];
        total += Duration::from_millis(number.checked_mul(millis).ok_or_else(invalid)?);
    }
    if total.is_zero() {
        return Err(format!("invalid duration {text:?}: must be greater than zero"));
    }
    Ok(total)
}

/// Prints a duration the way [`parse_duration`] reads it.
pub struct PrettyDuration(pub Duration);

impl fmt::Display for PrettyDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut millis = self.0.as_millis();
        if millis == 0 {
            return f.write_str("0s");
        }
        for (unit, size) in [("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1_000), ("ms", 1)] {
            if millis >= size {
                write!(f, "{}{unit}", millis / size)?;
                millis %= size;
            }
        }
        Ok(())
    }
}

fn serialize_duration<S: Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_str(&PrettyDuration(*duration))
}

fn serialize_optional_duration<S: Serializer>(duration: &Option<Duration>, serializer: S) -> Result<S::Ok, S::Error> {
    match duration {
        Some(duration) => serialize_duration(duration, serializer),
        None => serializer.serialize_none(),
    }
}

/// Header values often hold tokens: only the names are printed.
fn serialize_header_names<S: Serializer>(headers: &Option<Vec<(String, String)>>, serializer: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap as _;
    let headers = headers.as_deref().unwrap_or_default();
    let mut map = serializer.serialize_map(Some(headers.len()))?;
    for (name, _) in headers {
        map.serialize_entry(name, "<secret>")?;
    }
    map.end()
}

/// The external ID is a shared secret of the role's trust policy: never print it.
fn serialize_redacted<S: Serializer>(_: &Option<String>, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str("<secret>")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_account_id_comes_from_a_role_arn() {
        assert_eq!(account_of_role("arn:aws:iam::111122223333:role/reader").as_deref(), Some("111122223333"));
        assert_eq!(account_of_role("arn:aws-cn:iam::444455556666:role/a/b").as_deref(), Some("444455556666"));
        assert_eq!(account_of_role("arn:aws:iam::12345:role/short"), None);
        assert_eq!(account_of_role("not-an-arn"), None);
    }

    #[test]
    fn tag_keys_become_label_names() {
        assert_eq!(tag_label("team"), "tag_team");
        assert_eq!(tag_label("aws:cloudformation:stack-name"), "tag_aws_cloudformation_stack_name");
    }

    #[test]
    fn parses_durations() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert!(parse_duration("10").is_err());
        assert!(parse_duration("1x").is_err());
        assert!(parse_duration("0s").is_err());
        assert_eq!(PrettyDuration(Duration::from_secs(5400)).to_string(), "1h30m");
    }
}
