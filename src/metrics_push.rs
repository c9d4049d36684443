//! The CI/CD metrics of the OpenTelemetry semantic conventions, pushed over OTLP/HTTP, as an
//! OpenTelemetry SDK's periodic reader would: every export interval, what the collectors recorded
//! is collected, in the temporality asked for, and queued for [`crate::otlp::outbox`], which
//! delivers it with the traces' retries and bound.
//!
//! Nothing here knows what the metrics describe: a collector hands its pipeline's figures,
//! cumulative since the exporter started, to the [`Recorder`], and the push turns them into data
//! points. With the cumulative temporality (the default) every point starts when the exporter
//! started, so a restart starts new series and replays nothing. With delta, counters and
//! histograms carry what changed since the previous collection, and updowncounters stay
//! cumulative, as the SDK specification says of OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE.
//!
//! Without an endpoint from the `metrics_push` section or OpenTelemetry's variables nothing runs.

pub mod otlp;
pub mod settings;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::task::JoinHandle;

use crate::otlp::client::{Client, ClientError};
use crate::otlp::outbox::{Batching, Delivery, Item, Outbox};
use crate::otlp::proto::Attributes;
use crate::otlp::{Connection, EnvironmentError, parse_millis};
use crate::telemetry::{Signal, Telemetry};
use otlp::{Histogram, Instrument, Metric, Point, ResourceMetrics, Temporality, Value};
pub use settings::Section;

/// The SDK's default export interval (OTEL_METRIC_EXPORT_INTERVAL).
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(60);
/// Data points sent in one request at most.
const MAX_BATCH: usize = 8_192;

#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error(transparent)]
    Environment(#[from] EnvironmentError),
    #[error(transparent)]
    Client(#[from] ClientError),
}

/// Where, how often and how the CI/CD metrics are pushed.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub connection: Connection,
    pub interval: Duration,
    pub temporality: settings::Temporality,
    /// Data points the queue holds at most.
    pub queue_size: usize,
}

impl Settings {
    /// The settings from OpenTelemetry's variables (`env` reads one), each overridden by the
    /// configuration's `metrics_push` section; `None` when neither names an endpoint, which leaves
    /// the push off (see [`Connection::resolve`]).
    pub fn resolve(section: Option<&Section>, env: impl Fn(&str) -> Option<String>) -> Result<Option<Settings>, PushError> {
        let section = section.cloned().unwrap_or_default();
        let variable = |name: &str| env(name).filter(|v| !v.trim().is_empty());
        let interval = match (section.interval, variable("OTEL_METRIC_EXPORT_INTERVAL")) {
            (Some(interval), _) => interval,
            (None, Some(value)) => parse_millis("OTEL_METRIC_EXPORT_INTERVAL", &value)?,
            (None, None) => DEFAULT_INTERVAL,
        };
        const PREFERENCE: &str = "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE";
        let temporality = match (section.temporality, variable(PREFERENCE)) {
            (Some(temporality), _) => temporality,
            (None, Some(value)) => settings::Temporality::parse(&value)
                .map_err(|message| EnvironmentError { variable: PREFERENCE.into(), message })?,
            (None, None) => settings::Temporality::Cumulative,
        };
        let Some(connection) = Connection::resolve("metrics", section.connection, env)? else { return Ok(None) };
        Ok(Some(Settings { connection, interval, temporality, queue_size: section.queue_size }))
    }
}

/// The pipeline some figures are of: its account as configured, its region and its name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Source {
    pub account: String,
    pub region: String,
    pub pipeline: String,
}

/// What a pipeline's figures are now: the account ID its resource names (known once its ARN is
/// read, the account's name until then), and each series.
#[derive(Debug, Clone, PartialEq)]
pub struct Figures {
    pub account_id: String,
    pub series: Vec<Series>,
}

/// One figure of a pipeline, cumulative since the exporter started (an updowncounter's is its
/// current value).
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub metric: &'static Metric,
    pub attributes: Attributes,
    pub value: Value,
}

/// Where collectors hand their pipelines' figures. Cloning it is cheap.
#[derive(Clone, Debug, Default)]
pub struct Recorder {
    /// Each pipeline's figures, with the registration that last updated them.
    figures: Arc<Mutex<BTreeMap<Source, (u64, Figures)>>>,
    registrations: Arc<std::sync::atomic::AtomicU64>,
}

impl Recorder {
    /// A pipeline's place in the recorder, whose figures go when it is dropped: a pipeline
    /// deleted, or no longer selected, stops being pushed.
    pub fn register(&self, source: Source) -> Registration {
        let id = self.registrations.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Registration { recorder: self.clone(), source, id }
    }

    fn snapshot(&self) -> BTreeMap<Source, Figures> {
        let figures = self.figures.lock().unwrap_or_else(|e| e.into_inner());
        figures.iter().map(|(source, (_, figures))| (source.clone(), figures.clone())).collect()
    }
}

/// One pipeline's figures in the [`Recorder`], for as long as it lives.
#[derive(Debug)]
pub struct Registration {
    recorder: Recorder,
    source: Source,
    id: u64,
}

impl Registration {
    /// Replaces what is known of the pipeline's figures.
    pub fn update(&self, figures: Figures) {
        let mut all = self.recorder.figures.lock().unwrap_or_else(|e| e.into_inner());
        all.insert(self.source.clone(), (self.id, figures));
    }
}

impl Drop for Registration {
    /// Removes the figures unless a newer registration of the same pipeline (a target restarted
    /// with new settings) wrote them since.
    fn drop(&mut self) {
        let mut all = self.recorder.figures.lock().unwrap_or_else(|e| e.into_inner());
        if all.get(&self.source).is_some_and(|(id, _)| *id == self.id) {
            all.remove(&self.source);
        }
    }
}

/// One collection's data points.
pub struct Export {
    resources: Vec<ResourceMetrics>,
    points: usize,
}

impl Item for Export {
    fn size(&self) -> usize {
        self.points
    }
}

fn encode(batch: &[Export]) -> Vec<u8> {
    let resources: Vec<&ResourceMetrics> = batch.iter().flat_map(|e| e.resources.iter()).collect();
    otlp::encode(&resources)
}

fn unix_nanos(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
}

/// Turns the recorder's figures into data points, remembering for delta what was collected last.
struct Collection {
    service_name: String,
    temporality: settings::Temporality,
    /// When the exporter started: the start of every cumulative point.
    start: u64,
    /// When the previous collection was: the start of every delta point.
    previous: u64,
    /// The last value collected of each delta series.
    last: HashMap<(Source, String), Value>,
}

impl Collection {
    fn collect(&mut self, figures: BTreeMap<Source, Figures>, now: u64) -> Export {
        let mut resources: Vec<ResourceMetrics> = Vec::new();
        let mut last = HashMap::new();
        let mut points = 0;
        for (source, Figures { account_id, series }) in figures {
            let resource = resource(&self.service_name, &account_id, &source.region);
            let index = match resources.iter().position(|r| r.resource == resource) {
                Some(index) => index,
                None => {
                    resources.push(ResourceMetrics { resource, points: Vec::new() });
                    resources.len() - 1
                }
            };
            for s in series {
                let delta = self.temporality == settings::Temporality::Delta && s.metric.instrument != Instrument::UpDownCounter;
                let point = if delta {
                    let key = (source.clone(), format!("{}{:?}", s.metric.name, s.attributes));
                    let value = match self.last.get(&key) {
                        Some(before) => difference(&s.value, before),
                        None => s.value.clone(),
                    };
                    last.insert(key, s.value);
                    Point {
                        metric: s.metric,
                        attributes: s.attributes,
                        value,
                        temporality: Temporality::Delta,
                        start_unix_nanos: self.previous,
                        time_unix_nanos: now,
                    }
                } else {
                    Point {
                        metric: s.metric,
                        attributes: s.attributes,
                        value: s.value,
                        temporality: Temporality::Cumulative,
                        start_unix_nanos: self.start,
                        time_unix_nanos: now,
                    }
                };
                resources[index].points.push(point);
                points += 1;
            }
        }
        self.last = last;
        self.previous = now;
        Export { resources, points }
    }
}

/// The resource of an account's region, as the traces name it.
fn resource(service_name: &str, account_id: &str, region: &str) -> Attributes {
    vec![
        ("service.name", service_name.into()),
        ("cloud.provider", "aws".into()),
        ("cloud.account.id", account_id.into()),
        ("cloud.region", region.into()),
    ]
}

/// What changed from `before` to `now`; a value that went down started again, and counts whole.
fn difference(now: &Value, before: &Value) -> Value {
    match (now, before) {
        (Value::Int(now), Value::Int(before)) if now >= before => Value::Int(now - before),
        (Value::Histogram(now), Value::Histogram(before)) if now.count >= before.count && now.bounds == before.bounds => {
            Value::Histogram(Histogram {
                bounds: now.bounds,
                counts: now.counts.iter().zip(&before.counts).map(|(n, b)| n.saturating_sub(*b)).collect(),
                sum: now.sum - before.sum,
                count: now.count - before.count,
                exemplars: now.exemplars.iter().filter(|e| !before.exemplars.contains(e)).copied().collect(),
            })
        }
        (now, _) => now.clone(),
    }
}

/// The running push.
pub struct Pusher {
    recorder: Recorder,
    collection: Arc<Mutex<Collection>>,
    delivery: Delivery<Export>,
    ticker: Ticker,
}

impl Pusher {
    pub fn start(settings: &Settings, telemetry: Arc<Telemetry>) -> Result<Pusher, PushError> {
        let connection = &settings.connection;
        let client =
            Client::new(&connection.endpoint, &connection.headers, connection.timeout, connection.certificate.as_deref())?;
        telemetry.enable_export(Signal::Metrics, &connection.endpoint);
        tracing::info!(endpoint = %connection.endpoint, interval = ?settings.interval, temporality = ?settings.temporality, "pushing the CI/CD metrics over OTLP");
        let batching = Batching { max: MAX_BATCH, delay: Duration::ZERO, encode };
        let delivery = Outbox::start(client, settings.queue_size, batching, Signal::Metrics, telemetry);
        let start = unix_nanos(SystemTime::now());
        let collection = Arc::new(Mutex::new(Collection {
            service_name: connection.service_name.clone(),
            temporality: settings.temporality,
            start,
            previous: start,
            last: HashMap::new(),
        }));
        let recorder = Recorder::default();
        let ticker = Ticker(tokio::spawn(tick(recorder.clone(), collection.clone(), delivery.outbox(), settings.interval)));
        Ok(Pusher { recorder, collection, delivery, ticker })
    }

    pub fn recorder(&self) -> Recorder {
        self.recorder.clone()
    }

    /// Collects once more, as an SDK's reader does at shutdown, and sends what is queued for at
    /// most `deadline`.
    pub async fn shutdown(self, deadline: Duration) {
        drop(self.ticker);
        let export = collect(&self.recorder, &self.collection);
        self.delivery.outbox().send(export);
        self.delivery.shutdown(deadline).await;
    }
}

/// The collecting task, stopped when the push is dropped.
struct Ticker(JoinHandle<()>);

impl Drop for Ticker {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn collect(recorder: &Recorder, collection: &Mutex<Collection>) -> Export {
    let figures = recorder.snapshot();
    collection.lock().unwrap_or_else(|e| e.into_inner()).collect(figures, unix_nanos(SystemTime::now()))
}

/// Collects every `interval` and queues the result.
async fn tick(recorder: Recorder, collection: Arc<Mutex<Collection>>, outbox: Outbox<Export>, interval: Duration) {
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        outbox.send(collect(&recorder, &collection));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static COUNTER: Metric = Metric { name: "c", description: "", unit: "1", instrument: Instrument::Counter };
    static GAUGE: Metric = Metric { name: "g", description: "", unit: "1", instrument: Instrument::UpDownCounter };

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let vars: Vec<(String, String)> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    }

    #[test]
    fn settings_follow_the_otlp_variables_and_the_section_overrides_them() {
        assert_eq!(Settings::resolve(None, env(&[("OTEL_METRIC_EXPORT_INTERVAL", "1000")])).unwrap(), None, "no endpoint");
        let settings = Settings::resolve(
            None,
            env(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
                ("OTEL_EXPORTER_OTLP_METRICS_HEADERS", "x-tenant=ci"),
                ("OTEL_EXPORTER_OTLP_METRICS_TIMEOUT", "1500"),
                ("OTEL_EXPORTER_OTLP_METRICS_CERTIFICATE", "/ca.pem"),
                ("OTEL_METRIC_EXPORT_INTERVAL", "15000"),
                ("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE", "Delta"),
            ]),
        )
        .unwrap()
        .unwrap();
        assert_eq!(settings.connection.endpoint, "http://collector:4318/v1/metrics");
        assert_eq!(settings.connection.headers, [("x-tenant".to_string(), "ci".to_string())]);
        assert_eq!(settings.connection.timeout, Duration::from_millis(1500));
        assert_eq!(settings.connection.certificate.as_deref(), Some("/ca.pem"));
        assert_eq!((settings.interval, settings.temporality), (Duration::from_secs(15), settings::Temporality::Delta));

        let own = env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://a:4318"), ("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "http://b/m")]);
        let settings = Settings::resolve(None, own).unwrap().unwrap();
        assert_eq!(settings.connection.endpoint, "http://b/m", "used as it is");
        assert_eq!((settings.interval, settings.temporality), (DEFAULT_INTERVAL, settings::Temporality::Cumulative));

        let section = Section {
            connection: crate::otlp::Overrides { endpoint: Some("https://c:4318/v1/metrics".into()), ..Default::default() },
            interval: Some(Duration::from_secs(5)),
            temporality: Some(settings::Temporality::Cumulative),
            ..Section::default()
        };
        let settings = Settings::resolve(
            Some(&section),
            env(&[("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE", "delta"), ("OTEL_METRIC_EXPORT_INTERVAL", "1")]),
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            (settings.connection.endpoint.as_str(), settings.interval, settings.temporality),
            ("https://c:4318/v1/metrics", Duration::from_secs(5), settings::Temporality::Cumulative)
        );

        let bad = Settings::resolve(
            None,
            env(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://a"),
                ("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE", "lowmemory"),
            ]),
        );
        assert_eq!(
            bad.unwrap_err().to_string(),
            "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE: unsupported temporality \"lowmemory\": cumulative or delta"
        );
    }

    #[test]
    fn a_pipeline_s_figures_go_with_its_registration_unless_a_newer_one_wrote_them() {
        let recorder = Recorder::default();
        let source = Source { account: "a".into(), region: "r".into(), pipeline: "p".into() };
        let figures = || Figures { account_id: "1".into(), series: Vec::new() };
        let old = recorder.register(source.clone());
        old.update(figures());
        let new = recorder.register(source.clone());
        new.update(figures());
        drop(old);
        assert_eq!(recorder.snapshot().len(), 1, "the newer registration's figures stay");
        drop(new);
        assert!(recorder.snapshot().is_empty());
    }

    #[test]
    fn delta_subtracts_the_previous_collection_but_keeps_updowncounters_cumulative() {
        let source = Source { account: "a".into(), region: "r".into(), pipeline: "p".into() };
        let figures = |count: i64, active: i64| {
            let series = vec![
                Series { metric: &COUNTER, attributes: Vec::new(), value: Value::Int(count) },
                Series { metric: &GAUGE, attributes: Vec::new(), value: Value::Int(active) },
            ];
            [(source.clone(), Figures { account_id: "1".into(), series })].into_iter().collect::<BTreeMap<_, _>>()
        };
        let mut collection = Collection {
            service_name: "s".into(),
            temporality: settings::Temporality::Delta,
            start: 10,
            previous: 10,
            last: HashMap::new(),
        };
        let values = |export: Export| {
            export.resources[0]
                .points
                .iter()
                .map(|p| (p.value.clone(), p.temporality, p.start_unix_nanos, p.time_unix_nanos))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            values(collection.collect(figures(2, 1), 20)),
            [(Value::Int(2), Temporality::Delta, 10, 20), (Value::Int(1), Temporality::Cumulative, 10, 20)]
        );
        assert_eq!(
            values(collection.collect(figures(5, 0), 30)),
            [(Value::Int(3), Temporality::Delta, 20, 30), (Value::Int(0), Temporality::Cumulative, 10, 30)]
        );
    }
}
