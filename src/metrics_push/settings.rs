//! The `metrics_push` section of the configuration. Each key overrides the OpenTelemetry variable
//! of the same meaning; an endpoint from either turns the push on (see
//! [`super::Settings::resolve`]).

use std::sync::LazyLock;
use std::time::Duration;

use serde::Serialize;
use serde::de::{Deserialize, Deserializer, MapAccess};

use crate::otlp::settings::{Overrides, RawOverrides, keys_with, queue_size};
use crate::yaml::{self, Invalid, Keys, Located, duration, serialize_optional_duration};

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Section {
    /// Where and how data points are sent (OTEL_EXPORTER_OTLP_METRICS_*, OTEL_EXPORTER_OTLP_*).
    #[serde(flatten)]
    pub connection: Overrides,
    /// How often the metrics are collected and pushed (OTEL_METRIC_EXPORT_INTERVAL).
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "serialize_optional_duration")]
    pub interval: Option<Duration>,
    /// OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temporality: Option<Temporality>,
    /// Data points waiting to be sent at most; past it, collections are dropped and counted.
    pub queue_size: usize,
}

impl Default for Section {
    fn default() -> Self {
        Section { connection: Overrides::default(), interval: None, temporality: None, queue_size: 65_536 }
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

/// The section as the file writes it.
#[derive(Default)]
pub struct RawMetricsPush {
    connection: RawOverrides,
    interval: Option<Located<String>>,
    temporality: Option<Located<String>>,
    queue_size: Option<Located<usize>>,
}

impl Keys for RawMetricsPush {
    const NAME: &'static str = "RawMetricsPush";

    fn keys() -> &'static [&'static str] {
        static KEYS: LazyLock<Vec<&'static str>> = LazyLock::new(|| keys_with(&["interval", "temporality", "queue_size"]));
        &KEYS
    }

    fn read<'de, A: MapAccess<'de>>(&mut self, key: &'static str, map: &mut A) -> Result<(), A::Error> {
        match key {
            "interval" => self.interval = map.next_value()?,
            "temporality" => self.temporality = map.next_value()?,
            "queue_size" => self.queue_size = map.next_value()?,
            _ => self.connection.read(key, map)?,
        }
        Ok(())
    }
}

impl<'de> Deserialize<'de> for RawMetricsPush {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        yaml::deserialize(deserializer)
    }
}

impl RawMetricsPush {
    pub fn validate(self) -> Result<Section, Invalid> {
        let interval = self.interval.map(duration).transpose()?;
        let temporality = match self.temporality {
            Some(value) => Some(Temporality::parse(&value.value).map_err(|message| (value.referenced, message))?),
            None => None,
        };
        let connection = self.connection.validate()?;
        let queue_size = queue_size(self.queue_size, Section::default().queue_size)?;
        Ok(Section { connection, interval, temporality, queue_size })
    }
}
