//! The `traces` section of the configuration. Each key overrides the OpenTelemetry variable of the
//! same meaning; an endpoint from either turns traces on (see [`super::Settings::resolve`]).

use std::sync::LazyLock;

use serde::Serialize;
use serde::de::{Deserialize, Deserializer, MapAccess};

use crate::otlp::settings::{Overrides, RawOverrides, keys_with, queue_size};
use crate::yaml::{self, Invalid, Keys, Located};

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Section {
    /// Where and how spans are sent (OTEL_EXPORTER_OTLP_TRACES_*, OTEL_EXPORTER_OTLP_*).
    #[serde(flatten)]
    pub connection: Overrides,
    /// Spans waiting to be sent at most; past it, runs are dropped and counted.
    pub queue_size: usize,
}

impl Default for Section {
    fn default() -> Self {
        Section { connection: Overrides::default(), queue_size: 32_768 }
    }
}

/// The section as the file writes it.
#[derive(Default)]
pub struct RawTraces {
    connection: RawOverrides,
    queue_size: Option<Located<usize>>,
}

impl Keys for RawTraces {
    const NAME: &'static str = "RawTraces";

    fn keys() -> &'static [&'static str] {
        static KEYS: LazyLock<Vec<&'static str>> = LazyLock::new(|| keys_with(&["queue_size"]));
        &KEYS
    }

    fn read<'de, A: MapAccess<'de>>(&mut self, key: &'static str, map: &mut A) -> Result<(), A::Error> {
        match key {
            "queue_size" => self.queue_size = map.next_value()?,
            _ => self.connection.read(key, map)?,
        }
        Ok(())
    }
}

impl<'de> Deserialize<'de> for RawTraces {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        yaml::deserialize(deserializer)
    }
}

impl RawTraces {
    pub fn validate(self) -> Result<Section, Invalid> {
        let connection = self.connection.validate()?;
        Ok(Section { connection, queue_size: queue_size(self.queue_size, Section::default().queue_size)? })
    }
}
