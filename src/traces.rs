//! Runs as OpenTelemetry traces: a bounded queue that collectors hand finished spans to, and a task
//! that sends them in batches over OTLP/HTTP to any collector.
//!
//! Nothing here knows what the spans describe: a collector builds each run's spans and resource
//! ([`otlp::ResourceSpans`]) and queues them with [`Sink::send`], which never waits, so that a
//! collector that is down or slow never holds up polling or scrapes. The queue is bounded in
//! spans; past the bound a run is dropped whole, counted, and logged once. Batches that the
//! receiver cannot take now (429, 502, 503, 504, no answer) are sent again after a backoff, or
//! after the Retry-After it gave; batches it refuses are dropped and counted.
//!
//! The settings are OpenTelemetry's own environment variables, which the `traces` section of the
//! configuration overrides (see [`Settings::resolve`]).

pub mod client;
pub mod otlp;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::config;
use crate::telemetry::Telemetry;
use client::{Answer, Client, ClientError};
use otlp::ResourceSpans;

/// Spans sent in one request at most.
const MAX_BATCH: usize = 512;
/// How long a batch waits for more spans once the first arrived.
const BATCH_DELAY: Duration = Duration::from_millis(200);
/// Backoff after a failed export: doubling from the first to the last, with jitter.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(500), Duration::from_secs(10));
/// OTLP's default timeout of one export, and of the endpoint when none is set.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_SERVICE_NAME: &str = "codepipeline-exporter";

#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    #[error("{variable}: {message}")]
    Environment { variable: &'static str, message: String },
    #[error(transparent)]
    Client(#[from] ClientError),
}

/// Where and how spans are sent.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// The full URL spans are POSTed to.
    pub endpoint: String,
    pub headers: Vec<(String, String)>,
    pub timeout: Duration,
    /// A PEM file of the certificate authorities the endpoint's certificate is checked against.
    pub certificate: Option<String>,
    /// `service.name` of every run's resource.
    pub service_name: String,
    /// Spans the queue holds at most.
    pub queue_size: usize,
}

impl Settings {
    /// The settings from OpenTelemetry's variables (`env` reads one), each overridden by the
    /// configuration's `traces` section; `None` when neither names an endpoint, which leaves traces
    /// off.
    ///
    /// As the OTLP exporter specification says, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT (and the
    /// section's `endpoint`) is used as it is, while OTEL_EXPORTER_OTLP_ENDPOINT is a base to which
    /// `v1/traces` is added. The signal's own variables win over the general ones.
    pub fn resolve(
        section: Option<&config::Traces>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<Settings>, TraceError> {
        let env = |name: &str| env(name).filter(|v| !v.trim().is_empty());
        let section = section.cloned().unwrap_or_default();
        let endpoint = match (section.endpoint, env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"), env("OTEL_EXPORTER_OTLP_ENDPOINT")) {
            (Some(endpoint), ..) | (None, Some(endpoint), _) => endpoint,
            (None, None, Some(base)) => format!("{}/v1/traces", base.trim_end_matches('/')),
            (None, None, None) => return Ok(None),
        };
        let headers = match (section.headers, env("OTEL_EXPORTER_OTLP_TRACES_HEADERS"), env("OTEL_EXPORTER_OTLP_HEADERS")) {
            (Some(headers), ..) => headers,
            (None, Some(value), _) => parse_headers("OTEL_EXPORTER_OTLP_TRACES_HEADERS", &value)?,
            (None, None, Some(value)) => parse_headers("OTEL_EXPORTER_OTLP_HEADERS", &value)?,
            (None, None, None) => Vec::new(),
        };
        let timeout = match (section.timeout, env("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT"), env("OTEL_EXPORTER_OTLP_TIMEOUT")) {
            (Some(timeout), ..) => timeout,
            (None, Some(value), _) => parse_timeout("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", &value)?,
            (None, None, Some(value)) => parse_timeout("OTEL_EXPORTER_OTLP_TIMEOUT", &value)?,
            (None, None, None) => DEFAULT_TIMEOUT,
        };
        let certificate = section
            .certificate
            .or_else(|| env("OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE"))
            .or_else(|| env("OTEL_EXPORTER_OTLP_CERTIFICATE"));
        let service_name =
            section.service_name.or_else(|| env("OTEL_SERVICE_NAME")).unwrap_or_else(|| DEFAULT_SERVICE_NAME.into());
        Ok(Some(Settings { endpoint, headers, timeout, certificate, service_name, queue_size: section.queue_size }))
    }
}

/// `key1=value1,key2=value2`, the W3C baggage form OTEL_EXPORTER_OTLP_HEADERS takes, with
/// percent-encoded values.
fn parse_headers(variable: &'static str, value: &str) -> Result<Vec<(String, String)>, TraceError> {
    value
        .split(',')
        .filter(|pair| !pair.trim().is_empty())
        .map(|pair| {
            let (name, value) = pair
                .split_once('=')
                .ok_or_else(|| TraceError::Environment { variable, message: format!("{:?} is not key=value", pair.trim()) })?;
            let value = percent_encoding::percent_decode_str(value.trim()).decode_utf8_lossy().into_owned();
            Ok((name.trim().to_string(), value))
        })
        .collect()
}

/// Milliseconds, as OTEL_EXPORTER_OTLP_TIMEOUT gives them; 0 means no limit.
fn parse_timeout(variable: &'static str, value: &str) -> Result<Duration, TraceError> {
    match value.trim().parse::<u64>() {
        Ok(0) => Ok(Duration::MAX),
        Ok(ms) => Ok(Duration::from_millis(ms)),
        Err(_) => Err(TraceError::Environment { variable, message: format!("{value:?} is not a number of milliseconds") }),
    }
}

#[derive(Default)]
struct Queue {
    runs: VecDeque<ResourceSpans>,
    spans: usize,
    /// Set by shutdown: send what is queued, then stop.
    closing: bool,
    /// Whether a full queue was logged since the queue last had room, so that it is logged once.
    full_logged: bool,
}

struct Shared {
    queue: Mutex<Queue>,
    arrived: Notify,
    capacity: usize,
    service_name: String,
    telemetry: Arc<Telemetry>,
}

/// Where collectors hand finished runs. Cloning it is cheap.
#[derive(Clone)]
pub struct Sink {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Sink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sink").field("capacity", &self.shared.capacity).finish()
    }
}

impl Sink {
    /// The `service.name` a run's resource carries.
    pub fn service_name(&self) -> &str {
        &self.shared.service_name
    }

    /// Queues one run's spans, or drops them whole when the queue has no room for them.
    pub fn send(&self, run: ResourceSpans) {
        let spans = run.spans.len();
        if spans == 0 {
            return;
        }
        let mut queue = self.shared.queue.lock().unwrap_or_else(|e| e.into_inner());
        if queue.spans + spans > self.shared.capacity {
            if !std::mem::replace(&mut queue.full_logged, true) {
                tracing::warn!(
                    queued = queue.spans,
                    capacity = self.shared.capacity,
                    "the trace queue is full: runs are dropped until the collector takes spans again"
                );
            }
            drop(queue);
            self.shared.telemetry.trace_spans_dropped("queue_full", spans as u64);
            return;
        }
        queue.spans += spans;
        queue.runs.push_back(run);
        self.shared.telemetry.set_trace_queue(queue.spans);
        drop(queue);
        self.shared.arrived.notify_one();
    }
}

/// The running trace exporter.
pub struct Exporter {
    sink: Sink,
    task: JoinHandle<()>,
}

impl Exporter {
    pub fn start(settings: &Settings, telemetry: Arc<Telemetry>) -> Result<Exporter, TraceError> {
        let client = Client::new(&settings.endpoint, &settings.headers, settings.timeout, settings.certificate.as_deref())?;
        telemetry.enable_traces(&settings.endpoint);
        let shared = Arc::new(Shared {
            queue: Mutex::default(),
            arrived: Notify::new(),
            capacity: settings.queue_size.max(1),
            service_name: settings.service_name.clone(),
            telemetry,
        });
        tracing::info!(endpoint = %settings.endpoint, "exporting pipeline runs as traces");
        let task = tokio::spawn(deliver(shared.clone(), client));
        Ok(Exporter { sink: Sink { shared }, task })
    }

    pub fn sink(&self) -> Sink {
        self.sink.clone()
    }

    /// Sends what is queued for at most `deadline`, then stops; what is left is counted as
    /// dropped at shutdown.
    pub async fn shutdown(mut self, deadline: Duration) {
        let shared = self.sink.shared.clone();
        shared.queue.lock().unwrap_or_else(|e| e.into_inner()).closing = true;
        shared.arrived.notify_one();
        if tokio::time::timeout(deadline, &mut self.task).await.is_err() {
            self.task.abort();
        }
        let mut queue = shared.queue.lock().unwrap_or_else(|e| e.into_inner());
        let left = std::mem::take(&mut queue.spans);
        queue.runs.clear();
        drop(queue);
        if left > 0 {
            tracing::warn!(spans = left, "spans not sent before the shutdown deadline");
            shared.telemetry.trace_spans_dropped("shutdown", left as u64);
            shared.telemetry.set_trace_queue(0);
        }
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Takes runs from the front of the queue until a batch is full; a run is never split.
fn take_batch(queue: &mut Queue) -> (Vec<ResourceSpans>, usize) {
    let mut batch = Vec::new();
    let mut spans = 0;
    while let Some(run) = queue.runs.front() {
        if spans > 0 && spans + run.spans.len() > MAX_BATCH {
            break;
        }
        spans += run.spans.len();
        batch.extend(queue.runs.pop_front());
    }
    (batch, spans)
}

/// Sends batches for as long as the exporter runs, and until the queue is empty once it closes.
async fn deliver(shared: Arc<Shared>, client: Client) {
    let mut backoff = BACKOFF.0;
    loop {
        let (waiting, closing) = {
            let queue = shared.queue.lock().unwrap_or_else(|e| e.into_inner());
            (queue.spans, queue.closing)
        };
        if waiting == 0 {
            if closing {
                return;
            }
            shared.arrived.notified().await;
            continue;
        }
        if waiting < MAX_BATCH && !closing {
            // Gather the spans of runs that end together into one request.
            let _ = tokio::time::timeout(BATCH_DELAY, shared.arrived.notified()).await;
        }
        let (batch, spans) = take_batch(&mut shared.queue.lock().unwrap_or_else(|e| e.into_inner()));
        let answer = client.export(otlp::encode(&batch)).await;
        let telemetry = &shared.telemetry;
        let retry = match answer {
            Answer::Accepted { rejected, message } => {
                let rejected = rejected.min(spans as u64);
                telemetry.trace_spans_exported(spans as u64 - rejected);
                if rejected > 0 || !message.is_empty() {
                    tracing::warn!(rejected, message = %message, "the trace receiver rejected part of a batch");
                    telemetry.trace_spans_dropped("rejected", rejected);
                }
                backoff = BACKOFF.0;
                None
            }
            Answer::Refused { reason } => {
                tracing::warn!(reason = %reason, spans, "the trace receiver refused a batch; it is dropped");
                telemetry.trace_export_failed(&reason);
                telemetry.trace_spans_dropped("refused", spans as u64);
                None
            }
            Answer::Retry { after, reason } => {
                tracing::debug!(reason = %reason, spans, "trace export failed; it is retried");
                telemetry.trace_export_failed(&reason);
                Some(after.unwrap_or(backoff))
            }
        };
        let closing = {
            let mut queue = shared.queue.lock().unwrap_or_else(|e| e.into_inner());
            match retry {
                Some(_) => {
                    for run in batch.into_iter().rev() {
                        queue.runs.push_front(run);
                    }
                }
                None => {
                    queue.spans -= spans;
                    if queue.spans + MAX_BATCH <= shared.capacity {
                        queue.full_logged = false;
                    }
                }
            }
            telemetry.set_trace_queue(queue.spans);
            queue.closing
        };
        if let Some(wait) = retry {
            backoff = (backoff * 2).min(BACKOFF.1);
            let jitter = rand::random_range(0.8..1.2);
            let wait = wait.mul_f64(jitter);
            // At shutdown the deadline, not the backoff, bounds the retries.
            if closing {
                tokio::time::sleep(wait.min(Duration::from_millis(200))).await;
            } else {
                tokio::time::sleep(wait).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(settings.endpoint, "http://collector:4318/v1/traces");
        assert_eq!(settings.headers, [("authorization".into(), "Bearer abc".into()), ("x-tenant".into(), "ops".into())]);
        assert_eq!((settings.timeout, settings.service_name.as_str()), (Duration::from_millis(2500), "ci"));

        let signal =
            env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://a:4318"), ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://b:4318")]);
        assert_eq!(Settings::resolve(None, signal).unwrap().unwrap().endpoint, "http://b:4318", "used as it is");

        let section = config::Traces {
            endpoint: Some("https://c:4318/v1/traces".into()),
            service_name: Some("mine".into()),
            ..config::Traces::default()
        };
        let settings =
            Settings::resolve(Some(&section), env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://a:4318")])).unwrap().unwrap();
        assert_eq!((settings.endpoint.as_str(), settings.service_name.as_str()), ("https://c:4318/v1/traces", "mine"));
        assert_eq!(settings.queue_size, config::Traces::default().queue_size);

        let bad =
            Settings::resolve(None, env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://a"), ("OTEL_EXPORTER_OTLP_TIMEOUT", "10s")]));
        assert_eq!(bad.unwrap_err().to_string(), "OTEL_EXPORTER_OTLP_TIMEOUT: \"10s\" is not a number of milliseconds");
    }

    #[test]
    fn a_batch_takes_whole_runs_up_to_its_size() {
        let run = |n: usize| ResourceSpans {
            resource: Vec::new(),
            spans: (0..n)
                .map(|i| otlp::Span {
                    trace_id: [0; 16],
                    span_id: [i as u8; 8],
                    parent: None,
                    name: String::new(),
                    kind: otlp::Kind::Internal,
                    start_unix_nanos: 0,
                    end_unix_nanos: 0,
                    attributes: Vec::new(),
                    error: None,
                })
                .collect(),
        };
        let mut queue = Queue { runs: [run(300), run(300), run(600)].into(), spans: 1200, ..Queue::default() };
        assert_eq!(take_batch(&mut queue).1, 300);
        assert_eq!(take_batch(&mut queue).1, 300);
        assert_eq!(take_batch(&mut queue).1, 600, "a run larger than a batch goes alone");
        assert!(queue.runs.is_empty());
    }
}
