//! OTLP's protobuf messages for traces, written by hand on [`crate::otlp::proto`]: the few fields
//! an exporter of finished spans sends.
//!
//! The field numbers are those of opentelemetry-proto's `trace/v1/trace.proto`,
//! `resource/v1/resource.proto` and `collector/trace/v1/trace_service.proto`.

pub use crate::otlp::proto::{Attributes, Value};
use crate::otlp::proto::{attributes, bytes, fixed64, key, message, varint};
use crate::otlp::{SCHEMA_URL, SCOPE};

/// SpanKind as OTLP numbers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Internal = 1,
    Server = 2,
}

/// One finished span.
#[derive(Debug, Clone, PartialEq)]
pub struct Span {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub parent: Option<[u8; 8]>,
    pub name: String,
    pub kind: Kind,
    pub start_unix_nanos: u64,
    pub end_unix_nanos: u64,
    pub attributes: Attributes,
    /// The status message of a span that failed: its status is ERROR. `None` leaves it UNSET.
    pub error: Option<String>,
}

/// The spans of one resource: for CI/CD, one pipeline run, whose identity is the resource's.
#[derive(Debug, Clone, PartialEq)]
pub struct ResourceSpans {
    pub resource: Attributes,
    pub spans: Vec<Span>,
}

fn span(out: &mut Vec<u8>, span: &Span) {
    bytes(out, 1, &span.trace_id);
    bytes(out, 2, &span.span_id);
    if let Some(parent) = &span.parent {
        bytes(out, 4, parent);
    }
    bytes(out, 5, span.name.as_bytes());
    key(out, 6, 0);
    varint(out, span.kind as u64);
    fixed64(out, 7, span.start_unix_nanos);
    fixed64(out, 8, span.end_unix_nanos);
    attributes(out, 9, &span.attributes);
    if let Some(error) = &span.error {
        // Status { message = 2; code = 3 }, STATUS_CODE_ERROR = 2.
        message(out, 15, |status| {
            bytes(status, 2, error.as_bytes());
            key(status, 3, 0);
            varint(status, 2);
        });
    }
}

/// An ExportTraceServiceRequest holding `batch`, each resource with one scope.
pub fn encode(batch: &[ResourceSpans]) -> Vec<u8> {
    let mut out = Vec::new();
    for resource_spans in batch {
        message(&mut out, 1, |rs| {
            message(rs, 1, |resource| attributes(resource, 1, &resource_spans.resource));
            message(rs, 2, |scope_spans| {
                message(scope_spans, 1, |scope| {
                    bytes(scope, 1, SCOPE.as_bytes());
                    bytes(scope, 2, env!("CARGO_PKG_VERSION").as_bytes());
                });
                for s in &resource_spans.spans {
                    message(scope_spans, 2, |out| span(out, s));
                }
                bytes(scope_spans, 3, SCHEMA_URL.as_bytes());
            });
            bytes(rs, 3, SCHEMA_URL.as_bytes());
        });
    }
    out
}
