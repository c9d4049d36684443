//! What the two OpenTelemetry signals the exporter sends (runs as traces, the CI/CD metrics) share:
//! the OTLP/HTTP transport ([`client`]), the protobuf primitives ([`proto`]), the bounded queue
//! and its delivery with retries ([`outbox`]), and the settings that OpenTelemetry's variables
//! and the configuration's sections ([`settings`]) give each signal's connection.

pub mod client;
pub mod outbox;
pub mod proto;
pub mod settings;

use std::time::Duration;

pub use settings::Overrides;

/// The instrumentation scope everything is sent under.
pub const SCOPE: &str = "codepipeline-exporter";
/// The semantic conventions the attributes follow: every name and value used is in this
/// release's registry.
pub const SCHEMA_URL: &str = "https://opentelemetry.io/schemas/1.44.0";
/// OTLP's default timeout of one export, and of the endpoint when none is set.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_SERVICE_NAME: &str = "codepipeline-exporter";

#[derive(Debug, thiserror::Error)]
#[error("{variable}: {message}")]
pub struct EnvironmentError {
    pub variable: String,
    pub message: String,
}

/// Where one signal is sent, and how: what the OTLP exporter specification's variables say.
#[derive(Debug, Clone, PartialEq)]
pub struct Connection {
    /// The full URL the signal is POSTed to.
    pub endpoint: String,
    pub headers: Vec<(String, String)>,
    pub timeout: Duration,
    /// A PEM file of the certificate authorities the endpoint's certificate is checked against.
    pub certificate: Option<String>,
    /// `service.name` of every resource.
    pub service_name: String,
}

impl Connection {
    /// The connection of `signal` ("traces" or "metrics") from OpenTelemetry's variables (`env`
    /// reads one), each overridden by `section`; `None` when neither names an endpoint, which
    /// leaves the signal off.
    ///
    /// As the OTLP exporter specification says, the signal's own endpoint variable (and the
    /// section's `endpoint`) is used as it is, while OTEL_EXPORTER_OTLP_ENDPOINT is a base to
    /// which `v1/<signal>` is added. The signal's own variables win over the general ones.
    pub fn resolve(
        signal: &str,
        section: Overrides,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<Connection>, EnvironmentError> {
        let env = |name: &str| env(name).filter(|v| !v.trim().is_empty());
        let upper = signal.to_ascii_uppercase();
        let own = |suffix: &str| format!("OTEL_EXPORTER_OTLP_{upper}_{suffix}");
        let endpoint = match (section.endpoint, env(&own("ENDPOINT")), env("OTEL_EXPORTER_OTLP_ENDPOINT")) {
            (Some(endpoint), ..) | (None, Some(endpoint), _) => endpoint,
            (None, None, Some(base)) => format!("{}/v1/{signal}", base.trim_end_matches('/')),
            (None, None, None) => return Ok(None),
        };
        let headers = match (section.headers, env(&own("HEADERS")), env("OTEL_EXPORTER_OTLP_HEADERS")) {
            (Some(headers), ..) => headers,
            (None, Some(value), _) => parse_headers(&own("HEADERS"), &value)?,
            (None, None, Some(value)) => parse_headers("OTEL_EXPORTER_OTLP_HEADERS", &value)?,
            (None, None, None) => Vec::new(),
        };
        let timeout = match (section.timeout, env(&own("TIMEOUT")), env("OTEL_EXPORTER_OTLP_TIMEOUT")) {
            (Some(timeout), ..) => timeout,
            (None, Some(value), _) => parse_millis(&own("TIMEOUT"), &value)?,
            (None, None, Some(value)) => parse_millis("OTEL_EXPORTER_OTLP_TIMEOUT", &value)?,
            (None, None, None) => DEFAULT_TIMEOUT,
        };
        let certificate =
            section.certificate.or_else(|| env(&own("CERTIFICATE"))).or_else(|| env("OTEL_EXPORTER_OTLP_CERTIFICATE"));
        let service_name =
            section.service_name.or_else(|| env("OTEL_SERVICE_NAME")).unwrap_or_else(|| DEFAULT_SERVICE_NAME.into());
        Ok(Some(Connection { endpoint, headers, timeout, certificate, service_name }))
    }
}

/// `key1=value1,key2=value2`, the W3C baggage form OTEL_EXPORTER_OTLP_HEADERS takes, with
/// percent-encoded values.
fn parse_headers(variable: &str, value: &str) -> Result<Vec<(String, String)>, EnvironmentError> {
    value
        .split(',')
        .filter(|pair| !pair.trim().is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').ok_or_else(|| EnvironmentError {
                variable: variable.to_string(),
                message: format!("{:?} is not key=value", pair.trim()),
            })?;
            let value = percent_encoding::percent_decode_str(value.trim()).decode_utf8_lossy().into_owned();
            Ok((name.trim().to_string(), value))
        })
        .collect()
}

/// Milliseconds, as OTEL_EXPORTER_OTLP_TIMEOUT and OTEL_METRIC_EXPORT_INTERVAL give them; 0 means
/// no limit.
pub fn parse_millis(variable: &str, value: &str) -> Result<Duration, EnvironmentError> {
    match value.trim().parse::<u64>() {
        Ok(0) => Ok(Duration::MAX),
        Ok(ms) => Ok(Duration::from_millis(ms)),
        Err(_) => Err(EnvironmentError {
            variable: variable.to_string(),
            message: format!("{value:?} is not a number of milliseconds"),
        }),
    }
}
