//! Runs as OpenTelemetry traces: collectors hand finished spans to a bounded queue, from which
//! [`crate::otlp::outbox`] sends them in batches over OTLP/HTTP to any collector.
//!
//! Nothing here knows what the spans describe: a collector builds each run's spans and resource
//! ([`otlp::ResourceSpans`]) and queues them with [`Sink::send`], which never waits. The queue is
//! bounded in spans; past the bound a run is dropped whole, counted, and logged once.
//!
//! The settings are OpenTelemetry's own environment variables, which the `traces` section of the
//! configuration overrides ([`settings`], and see [`Settings::resolve`]).

pub mod otlp;
pub mod settings;

use std::sync::Arc;
use std::time::Duration;

use crate::otlp::client::{Client, ClientError};
use crate::otlp::outbox::{Batching, Delivery, Item, Outbox};
use crate::otlp::{Connection, EnvironmentError};
use crate::telemetry::{Signal, Telemetry};
use otlp::ResourceSpans;
pub use settings::Section;

/// Spans sent in one request at most.
const MAX_BATCH: usize = 512;
/// How long a batch waits for more spans once the first arrived.
const BATCH_DELAY: Duration = Duration::from_millis(200);

#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    #[error(transparent)]
    Environment(#[from] EnvironmentError),
    #[error(transparent)]
    Client(#[from] ClientError),
}

/// Where and how spans are sent.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub connection: Connection,
    /// Spans the queue holds at most.
    pub queue_size: usize,
}

impl Settings {
    /// The settings from OpenTelemetry's variables (`env` reads one), each overridden by the
    /// configuration's `traces` section; `None` when neither names an endpoint, which leaves traces
    /// off (see [`Connection::resolve`]).
    pub fn resolve(section: Option<&Section>, env: impl Fn(&str) -> Option<String>) -> Result<Option<Settings>, TraceError> {
        let section = section.cloned().unwrap_or_default();
        let connection = Connection::resolve("traces", section.connection, env)?;
        Ok(connection.map(|connection| Settings { connection, queue_size: section.queue_size }))
    }
}

impl Item for ResourceSpans {
    fn size(&self) -> usize {
        self.spans.len()
    }
}

/// Where collectors hand finished runs. Cloning it is cheap.
#[derive(Clone, Debug)]
pub struct Sink {
    outbox: Outbox<ResourceSpans>,
    service_name: Arc<str>,
}

impl Sink {
    /// The `service.name` a run's resource carries.
    pub fn service_name(&self) -> &str {
        &self.service_name
    }

    /// Queues one run's spans, or drops them whole when the queue has no room for them.
    pub fn send(&self, run: ResourceSpans) {
        self.outbox.send(run);
    }
}

/// The running trace exporter.
pub struct Exporter {
    sink: Sink,
    delivery: Delivery<ResourceSpans>,
}

impl Exporter {
    pub fn start(settings: &Settings, telemetry: Arc<Telemetry>) -> Result<Exporter, TraceError> {
        let connection = &settings.connection;
        let client =
            Client::new(&connection.endpoint, &connection.headers, connection.timeout, connection.certificate.as_deref())?;
        telemetry.enable_export(Signal::Traces, &connection.endpoint);
        tracing::info!(endpoint = %connection.endpoint, "exporting pipeline runs as traces");
        let batching = Batching { max: MAX_BATCH, delay: BATCH_DELAY, encode: otlp::encode };
        let delivery = Outbox::start(client, settings.queue_size, batching, Signal::Traces, telemetry);
        let sink = Sink { outbox: delivery.outbox(), service_name: connection.service_name.as_str().into() };
        Ok(Exporter { sink, delivery })
    }

    pub fn sink(&self) -> Sink {
        self.sink.clone()
    }

    /// Sends what is queued for at most `deadline`, then stops; what is left is counted as
    /// dropped at shutdown.
    pub async fn shutdown(self, deadline: Duration) {
        self.delivery.shutdown(deadline).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::otlp::Overrides;

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let vars: Vec<(String, String)> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    }

    #[test]
    fn settings_follow_the_otlp_variables_and_the_section_overrides_them() {
        assert_eq!(Settings::resolve(None, env(&[])).unwrap(), None, "no endpoint, no traces");
        let settings = Settings::resolve(
            None,
            env(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/"),
                ("OTEL_EXPORTER_OTLP_HEADERS", "authorization=Bearer%20abc, x-tenant=ops"),
                ("OTEL_EXPORTER_OTLP_TIMEOUT", "2500"),
                ("OTEL_SERVICE_NAME", "ci"),
            ]),
        )
        .unwrap()
        .unwrap();
        assert_eq!(settings.connection.endpoint, "http://collector:4318/v1/traces");
        assert_eq!(
            settings.connection.headers,
            [("authorization".into(), "Bearer abc".into()), ("x-tenant".into(), "ops".into())]
        );
        assert_eq!((settings.connection.timeout, settings.connection.service_name.as_str()), (Duration::from_millis(2500), "ci"));

        let signal =
            env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://a:4318"), ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://b:4318")]);
        assert_eq!(Settings::resolve(None, signal).unwrap().unwrap().connection.endpoint, "http://b:4318", "used as it is");

        let section = Section {
            connection: Overrides {
                endpoint: Some("https://c:4318/v1/traces".into()),
                service_name: Some("mine".into()),
                ..Overrides::default()
            },
            ..Section::default()
        };
        let settings =
            Settings::resolve(Some(&section), env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://a:4318")])).unwrap().unwrap();
        assert_eq!(
            (settings.connection.endpoint.as_str(), settings.connection.service_name.as_str()),
            ("https://c:4318/v1/traces", "mine")
        );
        assert_eq!(settings.queue_size, Section::default().queue_size);

        let bad =
            Settings::resolve(None, env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://a"), ("OTEL_EXPORTER_OTLP_TIMEOUT", "10s")]));
        assert_eq!(bad.unwrap_err().to_string(), "OTEL_EXPORTER_OTLP_TIMEOUT: \"10s\" is not a number of milliseconds");
    }
}
