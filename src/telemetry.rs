//! The exporter's own metrics: build, process, and every AWS request it makes.
//!
//! They are few and bounded (one series per AWS operation and error code, not per target), so they
//! are rendered at scrape time, where the process figures are fresh; scrapes close together share
//! one rendering ([`crate::scrape`]).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime};

use crate::budget::{Budget, BudgetStats, Class};
use crate::exposition::{Family, Format, Histogram, Kind, Rendered, unix_seconds};

pub static BUILD_INFO: Family = Family {
    name: "codepipeline_exporter_build_info",
    help: "A metric with a constant '1' value labeled by the exporter's version.",
    kind: Kind::Gauge,
};
pub static AWS_REQUESTS: Family = Family {
    name: "codepipeline_exporter_aws_requests_total",
    help: "AWS API calls made, by service and operation.",
    kind: Kind::Counter,
};
pub static AWS_REQUEST_ERRORS: Family = Family {
    name: "codepipeline_exporter_aws_request_errors_total",
    help: "AWS API calls that failed, by service, operation and error code.",
    kind: Kind::Counter,
};
pub static AWS_REQUEST_DURATION: Family = Family {
    name: "codepipeline_exporter_aws_request_duration_seconds",
    help: "Duration of AWS API calls, retries included.",
    kind: Kind::Histogram,
};
pub static AWS_REQUEST_ATTEMPTS: Family = Family {
    name: "codepipeline_exporter_aws_request_attempts_total",
    help: "AWS API call attempts, by service and operation: the calls plus the SDK's retries.",
    kind: Kind::Counter,
};
pub static AWS_THROTTLED_ATTEMPTS: Family = Family {
    name: "codepipeline_exporter_aws_throttled_attempts_total",
    help: "AWS API call attempts that AWS throttled, by account and region, retried ones included.",
    kind: Kind::Counter,
};
pub static BUDGET_RATE: Family = Family {
    name: "codepipeline_exporter_budget_requests_per_second",
    help: "The request budget of the account and region: AWS calls a second it allows, sustained.",
    kind: Kind::Gauge,
};
pub static BUDGET_WAITING: Family = Family {
    name: "codepipeline_exporter_budget_waiting_requests",
    help: "AWS calls waiting for the request budget of the account and region.",
    kind: Kind::Gauge,
};
pub static BUDGET_WAIT: Family = Family {
    name: "codepipeline_exporter_budget_wait_seconds_total",
    help: "Time AWS calls spent waiting for the request budget of the account and region, by class: urgent (event-driven and first state reads), scheduled (state reads at their interval), deferred (structure, history and run anatomy).",
    kind: Kind::Counter,
};
pub static SCHEDULE_LAG: Family = Family {
    name: "codepipeline_exporter_schedule_lag_seconds",
    help: "How long the oldest AWS call waiting for the request budget has waited: how far polling is behind its schedule.",
    kind: Kind::Gauge,
};
pub static CONFIG_RELOAD_SUCCESSFUL: Family = Family {
    name: "codepipeline_exporter_config_last_reload_successful",
    help: "Whether the last configuration reload attempt was successful.",
    kind: Kind::Gauge,
};
pub static CONFIG_RELOAD_SUCCESS_TIME: Family = Family {
    name: "codepipeline_exporter_config_last_reload_success_timestamp_seconds",
    help: "Timestamp of the last successful configuration reload (or of the start).",
    kind: Kind::Gauge,
};
pub static SHARD_ORDINAL: Family = Family {
    name: "codepipeline_exporter_shard_ordinal",
    help: "The shard this replica polls (--shard), from 0.",
    kind: Kind::Gauge,
};
pub static TOTAL_SHARDS: Family = Family {
    name: "codepipeline_exporter_total_shards",
    help: "The number of shards the targets are split into (--total-shards).",
    kind: Kind::Gauge,
};
pub static HTTP_CONNECTIONS: Family = Family {
    name: "codepipeline_exporter_http_connections",
    help: "HTTP connections open now, out of codepipeline_exporter_http_max_connections.",
    kind: Kind::Gauge,
};
pub static HTTP_MAX_CONNECTIONS: Family = Family {
    name: "codepipeline_exporter_http_max_connections",
    help: "HTTP connections served at once; at the limit, the connection idle longest is closed to make room.",
    kind: Kind::Gauge,
};
pub static HTTP_EVICTED: Family = Family {
    name: "codepipeline_exporter_http_connections_evicted_total",
    help: "HTTP connections the server closed: request headers or TLS handshake too slow (header_timeout), keep-alive idle too long (idle), or idle longest when the limit was reached (limit).",
    kind: Kind::Counter,
};
pub static HTTP_REQUESTS: Family = Family {
    name: "codepipeline_exporter_http_requests_total",
    help: "HTTP requests answered, by path (other for unknown paths) and status code.",
    kind: Kind::Counter,
};
pub static EVENTS_RECEIVED: Family = Family {
    name: "codepipeline_exporter_events_received_total",
    help: "EventBridge events read from the account's queue, by source and detail type, for the types the exporter knows.",
    kind: Kind::Counter,
};
pub static EVENTS_IGNORED: Family = Family {
    name: "codepipeline_exporter_events_ignored_total",
    help: "Messages read from the account's queue and deleted unused: malformed, other_account, not_selected, other_shard or unknown_type.",
    kind: Kind::Counter,
};
pub static EVENT_DELAY: Family = Family {
    name: "codepipeline_exporter_event_delay_seconds",
    help: "Time from an event's time to the publication of the poll it caused.",
    kind: Kind::Histogram,
};
pub static EVENTS_ACTIVE: Family = Family {
    name: "codepipeline_exporter_events_active",
    help: "Whether the account's targets follow its events (1), because its last ReceiveMessage succeeded, or their intervals (0).",
    kind: Kind::Gauge,
};
pub static EVENTS_QUEUE_MESSAGES: Family = Family {
    name: "codepipeline_exporter_events_queue_messages",
    help: "Messages in the account's queue, from GetQueueAttributes: visible (waiting) and in_flight (received, not yet deleted).",
    kind: Kind::Gauge,
};
pub static TRACE_SPANS_EXPORTED: Family = Family {
    name: "codepipeline_exporter_trace_spans_exported_total",
    help: "Spans of pipeline runs the OTLP receiver accepted.",
    kind: Kind::Counter,
};
pub static TRACE_SPANS_DROPPED: Family = Family {
    name: "codepipeline_exporter_trace_spans_dropped_total",
    help: "Spans of pipeline runs never delivered, by reason: queue_full (the queue's bound), refused (a non-retryable answer), rejected (partial success), shutdown (still queued at the shutdown deadline).",
    kind: Kind::Counter,
};
pub static TRACE_EXPORT_ERRORS: Family = Family {
    name: "codepipeline_exporter_trace_export_errors_total",
    help: "OTLP exports that failed, by kind: timeout, connection, tls or http_<status>; retryable ones are sent again.",
    kind: Kind::Counter,
};
pub static TRACE_QUEUE: Family = Family {
    name: "codepipeline_exporter_trace_queue_spans",
    help: "Spans waiting to be sent to the OTLP receiver.",
    kind: Kind::Gauge,
};
pub static METRIC_POINTS_EXPORTED: Family = Family {
    name: "codepipeline_exporter_metric_points_exported_total",
    help: "Data points of the CI/CD metrics the OTLP receiver accepted.",
    kind: Kind::Counter,
};
pub static METRIC_POINTS_DROPPED: Family = Family {
    name: "codepipeline_exporter_metric_points_dropped_total",
    help: "Data points of the CI/CD metrics never delivered, by reason: queue_full (the queue's bound), refused (a non-retryable answer), rejected (partial success), shutdown (still queued at the shutdown deadline).",
    kind: Kind::Counter,
};
pub static METRIC_EXPORT_ERRORS: Family = Family {
    name: "codepipeline_exporter_metric_export_errors_total",
    help: "OTLP metric exports that failed, by kind: timeout, connection, tls or http_<status>; retryable ones are sent again.",
    kind: Kind::Counter,
};
pub static METRIC_QUEUE: Family = Family {
    name: "codepipeline_exporter_metric_queue_points",
    help: "Data points waiting to be sent to the OTLP receiver.",
    kind: Kind::Gauge,
};
pub static PROCESS_CPU: Family =
    Family { name: "process_cpu_seconds_total", help: "Total user and system CPU time spent in seconds.", kind: Kind::Counter };
pub static PROCESS_RESIDENT_MEMORY: Family =
    Family { name: "process_resident_memory_bytes", help: "Resident memory size in bytes.", kind: Kind::Gauge };
pub static PROCESS_VIRTUAL_MEMORY: Family =
    Family { name: "process_virtual_memory_bytes", help: "Virtual memory size in bytes.", kind: Kind::Gauge };
pub static PROCESS_OPEN_FDS: Family =
    Family { name: "process_open_fds", help: "Number of open file descriptors.", kind: Kind::Gauge };
pub static PROCESS_MAX_FDS: Family =
    Family { name: "process_max_fds", help: "Maximum number of open file descriptors.", kind: Kind::Gauge };
pub static PROCESS_START_TIME: Family = Family {
    name: "process_start_time_seconds",
    help: "Start time of the process since unix epoch in seconds.",
    kind: Kind::Gauge,
};

/// Upper bounds of the request-duration buckets, in seconds.
const DURATION_BUCKETS: [f64; 10] = [0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

struct RequestStats {
    count: u64,
    errors: BTreeMap<String, u64>,
    duration: Histogram,
}

impl Default for RequestStats {
    fn default() -> Self {
        RequestStats { count: 0, errors: BTreeMap::new(), duration: Histogram::new(&DURATION_BUCKETS) }
    }
}

pub struct Telemetry {
    version: &'static str,
    /// This replica's shard and the number of shards (`--shard`, `--total-shards`).
    shard: (u32, u32),
    start_time: f64,
    requests: Mutex<BTreeMap<(&'static str, &'static str), RequestStats>>,
    attempts: Mutex<BTreeMap<(String, String), u64>>,
    /// The budget and the throttled attempts of each account and region. A budget whose scope was
    /// removed by a reload is dropped with it and its series go.
    scopes: Mutex<BTreeMap<(String, String), ScopeStats>>,
    /// Whether the last reload succeeded, and when the configuration was last loaded.
    reload: Mutex<(bool, f64)>,
    /// Counts the changes recorded above, so that a rendering can be reused until the next one.
    generation: AtomicU64,
    /// The HTTP server's figures. They change with every request, so recording them does not
    /// count as a change: like the process figures, they may be up to a rendering's age old.
    http: Mutex<HttpStats>,
    /// Each events consumer's figures, by account, while it runs.
    events: Mutex<BTreeMap<String, EventStats>>,
    /// The trace exporter's figures, when traces are on.
    traces: Mutex<Option<ExportStats>>,
    /// The metric push's figures, when it is on.
    metrics: Mutex<Option<ExportStats>>,
}

/// What is exported over OTLP: the runs' spans, or the CI/CD metrics' data points.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Traces,
    Metrics,
}

/// What an OTLP exporter reports, in its signal's items: spans or data points.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExportStats {
    pub endpoint: String,
    pub exported: u64,
    pub dropped: BTreeMap<&'static str, u64>,
    pub errors: BTreeMap<String, u64>,
    pub queued: usize,
    /// The last failed export's reason and when it happened; cleared by a success.
    pub last_error: Option<(String, f64)>,
    pub last_export: Option<f64>,
}

/// Why spans or data points were dropped, each exported from the start.
const DROP_REASONS: [&str; 4] = ["queue_full", "refused", "rejected", "shutdown"];

/// What the HTTP server reports of its connections and requests.
#[derive(Default)]
struct HttpStats {
    connections: usize,
    max_connections: usize,
    evicted: BTreeMap<&'static str, u64>,
    requests: BTreeMap<(String, u16), u64>,
}

/// Why a message from an events queue was deleted unused.
pub const IGNORED_REASONS: [&str; 5] = ["malformed", "not_selected", "other_account", "other_shard", "unknown_type"];

/// Upper bounds of the event-delay buckets, in seconds: events are meant to be seen in a second.
const DELAY_BUCKETS: [f64; 11] = [0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0];

/// What one account's events consumer reports.
struct EventStats {
    received: BTreeMap<(String, String), u64>,
    ignored: BTreeMap<&'static str, u64>,
    delay: Histogram,
    active: bool,
    /// Visible and in-flight messages, once GetQueueAttributes answered.
    queue: Option<(f64, f64)>,
}

impl Default for EventStats {
    fn default() -> Self {
        EventStats {
            received: BTreeMap::new(),
            ignored: IGNORED_REASONS.iter().map(|reason| (*reason, 0)).collect(),
            delay: Histogram::new(&DELAY_BUCKETS),
            active: false,
            queue: None,
        }
    }
}

/// Why the HTTP server closed a connection itself.
pub const EVICTION_REASONS: [&str; 3] = ["header_timeout", "idle", "limit"];

#[derive(Default)]
struct ScopeStats {
    budget: Weak<Budget>,
    throttled: u64,
}

impl Telemetry {
    pub fn new(shard_ordinal: u32, total_shards: u32) -> Telemetry {
        Telemetry {
            version: env!("CARGO_PKG_VERSION"),
            shard: (shard_ordinal, total_shards),
            start_time: unix_seconds(SystemTime::now()),
            requests: Mutex::default(),
            attempts: Mutex::default(),
            scopes: Mutex::default(),
            reload: Mutex::new((true, unix_seconds(SystemTime::now()))),
            generation: AtomicU64::new(0),
            http: Mutex::default(),
            events: Mutex::default(),
            traces: Mutex::default(),
            metrics: Mutex::default(),
        }
    }

    /// Changes with everything recorded here; the process figures and the budgets' gauges, which
    /// change without being recorded, do not move it.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Called after each change, once it is visible to [`Telemetry::render`].
    fn changed(&self) {
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// Records one AWS call; `error_code` is the AWS error code, or a transport failure's kind.
    pub fn observe(&self, service: &'static str, operation: &'static str, elapsed: Duration, error_code: Option<&str>) {
        let mut requests = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        let stats = requests.entry((service, operation)).or_default();
        stats.count += 1;
        stats.duration.observe(elapsed.as_secs_f64());
        if let Some(code) = error_code {
            *stats.errors.entry(code.to_string()).or_default() += 1;
        }
        drop(requests);
        self.changed();
    }

    /// Records one attempt of a call, as the SDK makes it.
    pub fn observe_attempt(&self, account: &str, region: &str, service: &str, operation: &str, throttled: bool) {
        *self
            .attempts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry((service.to_string(), operation.to_string()))
            .or_default() += 1;
        if throttled {
            let mut scopes = self.scopes.lock().unwrap_or_else(|e| e.into_inner());
            scopes.entry((account.to_string(), region.to_string())).or_default().throttled += 1;
        }
        self.changed();
    }

    /// Records the outcome of a configuration reload.
    pub fn record_reload(&self, success: bool) {
        let mut reload = self.reload.lock().unwrap_or_else(|e| e.into_inner());
        reload.0 = success;
        if success {
            reload.1 = unix_seconds(SystemTime::now());
        }
        drop(reload);
        self.changed();
    }

    /// Records how many HTTP connections are open, and how many may be.
    pub fn record_http_connections(&self, open: usize, max: usize) {
        let mut http = self.http.lock().unwrap_or_else(|e| e.into_inner());
        (http.connections, http.max_connections) = (open, max);
    }

    /// Records a connection the server closed, for one of [`EVICTION_REASONS`].
    pub fn record_http_eviction(&self, reason: &'static str) {
        *self.http.lock().unwrap_or_else(|e| e.into_inner()).evicted.entry(reason).or_default() += 1;
    }

    /// Records an answered request; `path` is one of the server's own paths, or `other`.
    pub fn record_http_request(&self, path: &str, code: u16) {
        let mut http = self.http.lock().unwrap_or_else(|e| e.into_inner());
        match http.requests.get_mut(&(path.to_string(), code)) {
            Some(count) => *count += 1,
            None => {
                http.requests.insert((path.to_string(), code), 1);
            }
        }
    }

    /// Changes the figures of `account`'s events consumer while it runs. A poll that an event
    /// caused may end after its consumer stopped: its delay is dropped rather than bringing the
    /// consumer's series back.
    fn events(&self, account: &str, change: impl FnOnce(&mut EventStats)) {
        let mut events = self.events.lock().unwrap_or_else(|e| e.into_inner());
        let Some(stats) = events.get_mut(account) else { return };
        change(stats);
        drop(events);
        self.changed();
    }

    /// Starts reporting `account`'s events consumer, every counter at zero.
    pub fn start_events(&self, account: &str) {
        self.events.lock().unwrap_or_else(|e| e.into_inner()).entry(account.to_string()).or_default();
        self.changed();
    }

    /// Stops reporting `account`'s events consumer: its series go.
    pub fn stop_events(&self, account: &str) {
        self.events.lock().unwrap_or_else(|e| e.into_inner()).remove(account);
        self.changed();
    }

    pub fn event_received(&self, account: &str, source: &str, detail_type: &str) {
        self.events(account, |stats| *stats.received.entry((source.to_string(), detail_type.to_string())).or_default() += 1);
    }

    /// Counts a message deleted unused, for one of [`IGNORED_REASONS`].
    pub fn event_ignored(&self, account: &str, reason: &'static str) {
        self.events(account, |stats| *stats.ignored.entry(reason).or_default() += 1);
    }

    pub fn event_delay(&self, account: &str, delay: Duration) {
        self.events(account, |stats| stats.delay.observe(delay.as_secs_f64()));
    }

    pub fn set_events_active(&self, account: &str, active: bool) {
        self.events(account, |stats| stats.active = active);
    }

    pub fn set_queue_messages(&self, account: &str, visible: f64, in_flight: f64) {
        self.events(account, |stats| stats.queue = Some((visible, in_flight)));
    }

    /// Reports the budget of an account and region for as long as it exists.
    fn exports(&self, signal: Signal) -> &Mutex<Option<ExportStats>> {
        match signal {
            Signal::Traces => &self.traces,
            Signal::Metrics => &self.metrics,
        }
    }

    /// The `signal` is exported to `endpoint`: its series are exported from now on.
    pub fn enable_export(&self, signal: Signal, endpoint: &str) {
        *self.exports(signal).lock().unwrap_or_else(|e| e.into_inner()) = Some(ExportStats {
            endpoint: endpoint.to_string(),
            dropped: DROP_REASONS.iter().map(|r| (*r, 0)).collect(),
            ..ExportStats::default()
        });
        self.changed();
    }

    fn with_export(&self, signal: Signal, update: impl FnOnce(&mut ExportStats)) {
        if let Some(stats) = self.exports(signal).lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
            update(stats);
        }
        self.changed();
    }

    /// `items` (spans or data points) the receiver accepted.
    pub fn exported(&self, signal: Signal, items: u64) {
        self.with_export(signal, |t| {
            t.exported += items;
            t.last_error = None;
            t.last_export = Some(unix_seconds(SystemTime::now()));
        });
    }

    pub fn export_dropped(&self, signal: Signal, reason: &'static str, items: u64) {
        self.with_export(signal, |t| *t.dropped.entry(reason).or_default() += items);
    }

    /// Records a failed export; `reason` says what happened ("HTTP 503", "timeout", "connect: …").
    pub fn export_failed(&self, signal: Signal, reason: &str) {
        let kind = match reason {
            "timeout" => "timeout".to_string(),
            r if r.starts_with("HTTP ") => format!("http_{}", r.trim_start_matches("HTTP ")),
            r if r.starts_with("TLS") => "tls".to_string(),
            _ => "connection".to_string(),
        };
        self.with_export(signal, |t| {
            *t.errors.entry(kind).or_default() += 1;
            t.last_error = Some((reason.to_string(), unix_seconds(SystemTime::now())));
        });
    }

    pub fn set_export_queue(&self, signal: Signal, items: usize) {
        self.with_export(signal, |t| t.queued = items);
    }

    /// An exporter's figures, for the status page; `None` when the signal is not exported.
    pub fn export_stats(&self, signal: Signal) -> Option<ExportStats> {
        self.exports(signal).lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn register_budget(&self, account: &str, region: &str, budget: &Arc<Budget>) {
        let mut scopes = self.scopes.lock().unwrap_or_else(|e| e.into_inner());
        scopes.entry((account.to_string(), region.to_string())).or_default().budget = Arc::downgrade(budget);
        drop(scopes);
        self.changed();
    }

    /// The request budget of every account and region, for the status page.
    pub fn budgets(&self) -> Vec<((String, String), BudgetStats)> {
        let scopes = self.scopes.lock().unwrap_or_else(|e| e.into_inner());
        scopes.iter().filter_map(|(scope, stats)| Some((scope.clone(), stats.budget.upgrade()?.stats()))).collect()
    }

    /// Writes every family of the exporter's own metrics in `format`.
    pub fn render(&self, out: &mut Vec<u8>, format: Format) {
        let mut rendered = Rendered::default();
        rendered.sample(&BUILD_INFO, &[("version", self.version)], 1.0);
        rendered.sample(&SHARD_ORDINAL, &[], f64::from(self.shard.0));
        rendered.sample(&TOTAL_SHARDS, &[], f64::from(self.shard.1));
        {
            let (success, at) = *self.reload.lock().unwrap_or_else(|e| e.into_inner());
            rendered.sample(&CONFIG_RELOAD_SUCCESSFUL, &[], if success { 1.0 } else { 0.0 });
            rendered.sample(&CONFIG_RELOAD_SUCCESS_TIME, &[], at);
        }
        {
            let requests = self.requests.lock().unwrap_or_else(|e| e.into_inner());
            for ((service, operation), stats) in requests.iter() {
                let labels = [("service", *service), ("operation", *operation)];
                rendered.sample(&AWS_REQUESTS, &labels, stats.count as f64);
                for (code, count) in &stats.errors {
                    rendered.sample(&AWS_REQUEST_ERRORS, &[labels[0], labels[1], ("code", code)], *count as f64);
                }
                stats.duration.render(&mut rendered, &AWS_REQUEST_DURATION, &labels);
            }
        }
        for ((service, operation), count) in self.attempts.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            rendered.sample(&AWS_REQUEST_ATTEMPTS, &[("service", service), ("operation", operation)], *count as f64);
        }
        {
            let mut scopes = self.scopes.lock().unwrap_or_else(|e| e.into_inner());
            scopes.retain(|_, stats| stats.budget.strong_count() > 0);
            for ((account, region), stats) in scopes.iter() {
                let labels = [("account", account.as_str()), ("region", region.as_str())];
                rendered.sample(&AWS_THROTTLED_ATTEMPTS, &labels, stats.throttled as f64);
                if let Some(budget) = stats.budget.upgrade() {
                    let budget = budget.stats();
                    rendered.sample(&BUDGET_RATE, &labels, budget.requests_per_second);
                    rendered.sample(&BUDGET_WAITING, &labels, budget.waiting as f64);
                    for (class, waited) in Class::ALL.iter().zip(budget.waited) {
                        rendered.sample(&BUDGET_WAIT, &[labels[0], labels[1], ("class", class.as_str())], waited.as_secs_f64());
                    }
                    rendered.sample(&SCHEDULE_LAG, &labels, budget.lag.as_secs_f64());
                }
            }
        }
        {
            let http = self.http.lock().unwrap_or_else(|e| e.into_inner());
            rendered.sample(&HTTP_CONNECTIONS, &[], http.connections as f64);
            rendered.sample(&HTTP_MAX_CONNECTIONS, &[], http.max_connections as f64);
            for reason in EVICTION_REASONS {
                let count = http.evicted.get(reason).copied().unwrap_or(0);
                rendered.sample(&HTTP_EVICTED, &[("reason", reason)], count as f64);
            }
            for ((path, code), count) in &http.requests {
                rendered.sample(&HTTP_REQUESTS, &[("path", path), ("code", &code.to_string())], *count as f64);
            }
        }
        for (account, stats) in self.events.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            let labels = [("account", account.as_str())];
            for ((source, detail_type), count) in &stats.received {
                rendered.sample(&EVENTS_RECEIVED, &[labels[0], ("source", source), ("detail_type", detail_type)], *count as f64);
            }
            for (reason, count) in &stats.ignored {
                rendered.sample(&EVENTS_IGNORED, &[labels[0], ("reason", reason)], *count as f64);
            }
            stats.delay.render(&mut rendered, &EVENT_DELAY, &labels);
            rendered.sample(&EVENTS_ACTIVE, &labels, if stats.active { 1.0 } else { 0.0 });
            if let Some((visible, in_flight)) = stats.queue {
                rendered.sample(&EVENTS_QUEUE_MESSAGES, &[labels[0], ("state", "visible")], visible);
                rendered.sample(&EVENTS_QUEUE_MESSAGES, &[labels[0], ("state", "in_flight")], in_flight);
            }
        }
        if let Some(traces) = self.traces.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            rendered.sample(&TRACE_SPANS_EXPORTED, &[], traces.exported as f64);
            for (reason, spans) in &traces.dropped {
                rendered.sample(&TRACE_SPANS_DROPPED, &[("reason", reason)], *spans as f64);
            }
            for (kind, count) in &traces.errors {
                rendered.sample(&TRACE_EXPORT_ERRORS, &[("kind", kind)], *count as f64);
            }
            rendered.sample(&TRACE_QUEUE, &[], traces.queued as f64);
        }
        if let Some(metrics) = self.metrics.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            rendered.sample(&METRIC_POINTS_EXPORTED, &[], metrics.exported as f64);
            for (reason, points) in &metrics.dropped {
                rendered.sample(&METRIC_POINTS_DROPPED, &[("reason", reason)], *points as f64);
            }
            for (kind, count) in &metrics.errors {
                rendered.sample(&METRIC_EXPORT_ERRORS, &[("kind", kind)], *count as f64);
            }
            rendered.sample(&METRIC_QUEUE, &[], metrics.queued as f64);
        }
        let process = ProcessStats::read();
        if let Some(cpu) = process.cpu_seconds {
            rendered.sample(&PROCESS_CPU, &[], cpu);
        }
        if let Some(rss) = process.resident_bytes {
            rendered.sample(&PROCESS_RESIDENT_MEMORY, &[], rss);
        }
        if let Some(vsize) = process.virtual_bytes {
            rendered.sample(&PROCESS_VIRTUAL_MEMORY, &[], vsize);
        }
        if let Some(fds) = process.open_fds {
            rendered.sample(&PROCESS_OPEN_FDS, &[], fds);
        }
        if let Some(max) = process.max_fds {
            rendered.sample(&PROCESS_MAX_FDS, &[], max);
        }
        rendered.sample(&PROCESS_START_TIME, &[], self.start_time);
        rendered.write(out, format);
    }
}

/// The process figures Prometheus's client libraries expose, read from procfs. On systems without
/// procfs the series are left out rather than reported as zero.
#[derive(Default)]
struct ProcessStats {
    cpu_seconds: Option<f64>,
    resident_bytes: Option<f64>,
    virtual_bytes: Option<f64>,
    open_fds: Option<f64>,
    max_fds: Option<f64>,
}

impl ProcessStats {
    /// Linux reports CPU time in clock ticks of 100 Hz to user space (USER_HZ) and memory in pages of
    /// 4 KiB on the platforms this runs on; client_golang makes the same assumptions.
    fn read() -> ProcessStats {
        const TICKS_PER_SECOND: f64 = 100.0;
        const PAGE_SIZE: f64 = 4096.0;
        let mut stats = ProcessStats::default();
        if let Ok(stat) = std::fs::read_to_string("/proc/self/stat") {
            // The command name in parentheses may contain spaces: fields are counted after it.
            if let Some(after) = stat.rfind(')').map(|i| &stat[i + 2..]) {
                let fields: Vec<&str> = after.split_whitespace().collect();
                let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<f64>().ok());
                if let (Some(utime), Some(stime)) = (field(14), field(15)) {
                    stats.cpu_seconds = Some((utime + stime) / TICKS_PER_SECOND);
                }
                stats.virtual_bytes = field(23);
                stats.resident_bytes = field(24).map(|pages| pages * PAGE_SIZE);
            }
        }
        if let Ok(entries) = std::fs::read_dir("/proc/self/fd") {
            stats.open_fds = Some(entries.count() as f64);
        }
        stats.max_fds = open_files_limit().map(|limit| limit as f64);
        stats
    }
}

/// The process's soft limit on open files, from procfs; `None` where there is none to read.
pub fn open_files_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|line| line.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events_lines(telemetry: &Telemetry) -> Vec<String> {
        let mut out = Vec::new();
        telemetry.render(&mut out, Format::Text);
        String::from_utf8(out)
            .unwrap()
            .lines()
            .filter(|l| l.starts_with("codepipeline_exporter_event"))
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn a_stopped_consumer_s_series_stay_gone() {
        let telemetry = Telemetry::new(0, 1);
        telemetry.start_events("a");
        telemetry.event_ignored("a", "malformed");
        assert!(
            events_lines(&telemetry)
                .contains(&"codepipeline_exporter_events_ignored_total{account=\"a\",reason=\"malformed\"} 1".to_string())
        );
        telemetry.stop_events("a");
        // A poll an event caused ends after the consumer stopped.
        telemetry.event_delay("a", Duration::from_millis(300));
        telemetry.set_events_active("a", false);
        assert_eq!(events_lines(&telemetry), Vec::<String>::new());
    }
}
