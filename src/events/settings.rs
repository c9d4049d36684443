//! The `events` section of an account (or of the organization): where its events arrive, and how
//! often targets are polled anyway while they do.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::yaml::{Invalid, Located, duration, external_id, non_empty, role_arn, serialize_duration, serialize_redacted};

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Settings {
    pub queue_url: String,
    pub queue_region: String,
    /// While events flow, each target they announce is polled this often, not at `interval`.
    #[serde(serialize_with = "serialize_duration")]
    pub reconcile_interval: Duration,
    /// A role the queue is read with, assumed with the exporter's own credentials and renewed
    /// like a member account's: the queue often lives in a central account of its own.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role_arn: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "serialize_redacted")]
    pub external_id: Option<String>,
}

impl Settings {
    /// The queue's name: the last segment of its URL.
    pub fn queue_name(&self) -> &str {
        self.queue_url.rsplit('/').next().unwrap_or(&self.queue_url)
    }
}

/// How often targets are polled while events flow, unless configured.
const RECONCILE_INTERVAL: Duration = Duration::from_secs(600);

/// The section as the file writes it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEvents {
    queue_url: Located<String>,
    queue_region: Option<Located<String>>,
    reconcile_interval: Option<Located<String>>,
    role_arn: Option<Located<String>>,
    external_id: Option<Located<String>>,
}

impl RawEvents {
    /// `regions` are the account's, whose first is the queue's region when neither the URL's host
    /// nor `queue_region` names one.
    pub fn validate(self, regions: &[String]) -> Result<Settings, Invalid> {
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
        let reconcile_interval = self.reconcile_interval.map(duration).transpose()?.unwrap_or(RECONCILE_INTERVAL);
        let role_arn = self.role_arn.map(|arn| role_arn(arn, "events.role_arn")).transpose()?;
        let external_id = self.external_id.map(external_id).transpose()?;
        Ok(Settings { queue_url: self.queue_url.value, queue_region, reconcile_interval, role_arn, external_id })
    }
}
