//! The keys that the `traces` and `metrics_push` sections of the configuration both take: what
//! each sets of its signal's connection, over OpenTelemetry's variables.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::de::{self, MapAccess};
use serde::{Serialize, Serializer};

use crate::yaml::{Invalid, Keys, Located, duration, non_empty, serialize_optional_duration};

/// What a configuration section sets of a connection; each overrides its variable (see
/// [`super::Connection::resolve`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Overrides {
    /// The URL the signal is POSTed to, used as it is (OTEL_EXPORTER_OTLP_<SIGNAL>_ENDPOINT).
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
    /// `service.name` of every resource (OTEL_SERVICE_NAME).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_name: Option<String>,
}

/// The connection's keys as the file writes them: a group of keys of a section's own, which the
/// section reads through [`Keys::read`].
#[derive(Default)]
pub struct RawOverrides {
    endpoint: Option<Located<String>>,
    headers: Option<Located<BTreeMap<String, String>>>,
    timeout: Option<Located<String>>,
    certificate: Option<Located<String>>,
    service_name: Option<Located<String>>,
}

impl Keys for RawOverrides {
    const NAME: &'static str = "RawOverrides";

    fn keys() -> &'static [&'static str] {
        &["endpoint", "headers", "timeout", "certificate", "service_name"]
    }

    fn read<'de, A: MapAccess<'de>>(&mut self, key: &'static str, map: &mut A) -> Result<(), A::Error> {
        match key {
            "endpoint" => self.endpoint = map.next_value()?,
            "headers" => self.headers = map.next_value()?,
            "timeout" => self.timeout = map.next_value()?,
            "certificate" => self.certificate = map.next_value()?,
            "service_name" => self.service_name = map.next_value()?,
            other => return Err(de::Error::unknown_field(other, Self::keys())),
        }
        Ok(())
    }
}

impl RawOverrides {
    pub fn validate(self) -> Result<Overrides, Invalid> {
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
        Ok(Overrides {
            endpoint,
            headers: self.headers.map(|h| h.value.into_iter().collect()),
            timeout: self.timeout.map(duration).transpose()?,
            certificate: self.certificate.map(|c| non_empty(c, "certificate")).transpose()?,
            service_name: self.service_name.map(|n| non_empty(n, "service_name")).transpose()?,
        })
    }
}

/// The bound of a signal's queue, at least 1.
pub fn queue_size(raw: Option<Located<usize>>, default: usize) -> Result<usize, Invalid> {
    match raw {
        Some(n) if n.value == 0 => Err((n.referenced, "queue_size must be at least 1".into())),
        Some(n) => Ok(n.value),
        None => Ok(default),
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

/// The keys of a section that takes the connection's and `own` after them, in that order.
pub fn keys_with(own: &[&'static str]) -> Vec<&'static str> {
    [RawOverrides::keys(), own].concat()
}
