//! OTLP's protobuf messages for metrics, written by hand on [`crate::otlp::proto`]: sums and
//! explicit-bucket histograms, with exemplars.
//!
//! The field numbers are those of opentelemetry-proto's `metrics/v1/metrics.proto`,
//! `resource/v1/resource.proto` and `collector/metrics/v1/metrics_service.proto`.

use crate::otlp::proto::{Attributes, attributes, bytes, fixed64, key, message, varint};
use crate::otlp::{SCHEMA_URL, SCOPE};

/// How an instrument aggregates, as the semantic conventions name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Instrument {
    Counter,
    UpDownCounter,
    Histogram,
}

/// A metric of the semantic conventions: its name, unit and kind.
#[derive(Debug, PartialEq, Eq)]
pub struct Metric {
    pub name: &'static str,
    pub description: &'static str,
    pub unit: &'static str,
    pub instrument: Instrument,
}

/// AggregationTemporality as OTLP numbers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Temporality {
    Delta = 1,
    Cumulative = 2,
}

/// A measurement that came from a traced run: its trace and span, value and time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Exemplar {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub value: f64,
    pub time_unix_nanos: u64,
}

/// An explicit-bucket histogram: a count per bucket (`bounds.len() + 1` of them, the last above
/// every bound), not cumulative as Prometheus's are.
#[derive(Debug, Clone, PartialEq)]
pub struct Histogram {
    pub bounds: &'static [f64],
    pub counts: Vec<u64>,
    pub sum: f64,
    pub count: u64,
    pub exemplars: Vec<Exemplar>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Int(i64),
    Histogram(Histogram),
}

/// One data point: a metric's value for one set of attributes.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    pub metric: &'static Metric,
    pub attributes: Attributes,
    pub value: Value,
    pub temporality: Temporality,
    pub start_unix_nanos: u64,
    pub time_unix_nanos: u64,
}

/// The points of one resource.
#[derive(Debug, Clone, PartialEq)]
pub struct ResourceMetrics {
    pub resource: Attributes,
    pub points: Vec<Point>,
}

fn sfixed64(out: &mut Vec<u8>, field: u32, value: i64) {
    fixed64(out, field, value as u64);
}

/// A packed repeated fixed64 or double.
fn packed(out: &mut Vec<u8>, field: u32, values: impl ExactSizeIterator<Item = u64>) {
    key(out, field, 2);
    varint(out, values.len() as u64 * 8);
    for value in values {
        out.extend_from_slice(&value.to_le_bytes());
    }
}

/// Exemplar { time_unix_nano = 2; as_double = 3; span_id = 4; trace_id = 5 }.
fn exemplar(out: &mut Vec<u8>, field: u32, exemplar: &Exemplar) {
    message(out, field, |e| {
        fixed64(e, 2, exemplar.time_unix_nanos);
        fixed64(e, 3, exemplar.value.to_bits());
        bytes(e, 4, &exemplar.span_id);
        bytes(e, 5, &exemplar.trace_id);
    });
}

/// NumberDataPoint { start_time_unix_nano = 2; time_unix_nano = 3; as_int = 6; attributes = 7 }
/// or HistogramDataPoint { start_time_unix_nano = 2; time_unix_nano = 3; count = 4; sum = 5;
/// bucket_counts = 6; explicit_bounds = 7; exemplars = 8; attributes = 9 }.
fn point(out: &mut Vec<u8>, point: &Point) {
    fixed64(out, 2, point.start_unix_nanos);
    fixed64(out, 3, point.time_unix_nanos);
    match &point.value {
        Value::Int(value) => {
            sfixed64(out, 6, *value);
            attributes(out, 7, &point.attributes);
        }
        Value::Histogram(h) => {
            fixed64(out, 4, h.count);
            fixed64(out, 5, h.sum.to_bits());
            packed(out, 6, h.counts.iter().copied());
            packed(out, 7, h.bounds.iter().map(|b| b.to_bits()));
            for e in &h.exemplars {
                exemplar(out, 8, e);
            }
            attributes(out, 9, &point.attributes);
        }
    }
}

/// Metric { name = 1; description = 2; unit = 3; sum = 7; histogram = 9 } holding `points`, all
/// of one metric and temporality; Sum { data_points = 1; aggregation_temporality = 2;
/// is_monotonic = 3 }, Histogram { data_points = 1; aggregation_temporality = 2 }.
fn metric(out: &mut Vec<u8>, points: &[&Point]) {
    let Some(first) = points.first() else { return };
    let metric = first.metric;
    bytes(out, 1, metric.name.as_bytes());
    bytes(out, 2, metric.description.as_bytes());
    bytes(out, 3, metric.unit.as_bytes());
    let field = if metric.instrument == Instrument::Histogram { 9 } else { 7 };
    message(out, field, |data| {
        for p in points {
            message(data, 1, |out| point(out, p));
        }
        key(data, 2, 0);
        varint(data, first.temporality as u64);
        if metric.instrument == Instrument::Counter {
            key(data, 3, 0);
            varint(data, 1);
        }
    });
}

/// An ExportMetricsServiceRequest holding `batch`: each resource with one scope, and one Metric per
/// metric and temporality within it.
pub fn encode(batch: &[&ResourceMetrics]) -> Vec<u8> {
    let mut out = Vec::new();
    for resource_metrics in batch {
        message(&mut out, 1, |rm| {
            message(rm, 1, |resource| attributes(resource, 1, &resource_metrics.resource));
            message(rm, 2, |scope_metrics| {
                message(scope_metrics, 1, |scope| {
                    bytes(scope, 1, SCOPE.as_bytes());
                    bytes(scope, 2, env!("CARGO_PKG_VERSION").as_bytes());
                });
                let mut groups: Vec<Vec<&Point>> = Vec::new();
                for p in &resource_metrics.points {
                    match groups.iter_mut().find(|g| g[0].metric == p.metric && g[0].temporality == p.temporality) {
                        Some(group) => group.push(p),
                        None => groups.push(vec![p]),
                    }
                }
                for group in &groups {
                    message(scope_metrics, 2, |out| metric(out, group));
                }
                bytes(scope_metrics, 3, SCHEMA_URL.as_bytes());
            });
            bytes(rm, 3, SCHEMA_URL.as_bytes());
        });
    }
    out
}
