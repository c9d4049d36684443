//! OTLP's protobuf messages for traces, written by hand: the few fields an exporter of finished
//! spans sends, and the partial-success answer it reads.
//!
//! The field numbers are those of opentelemetry-proto's `trace/v1/trace.proto`,
//! `common/v1/common.proto`, `resource/v1/resource.proto` and
//! `collector/trace/v1/trace_service.proto`. Writing them directly keeps a code generator and its
//! runtime out of the build for a dozen fields; the tests decode the result with the reference
//! implementation.

/// A span attribute's value: the AnyValue variants the exporter uses.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    String(String),
    Int(i64),
    Double(f64),
}

impl From<&str> for Value {
    fn from(value: &str) -> Value {
        Value::String(value.to_string())
    }
}

impl From<String> for Value {
    fn from(value: String) -> Value {
        Value::String(value)
    }
}

pub type Attributes = Vec<(&'static str, Value)>;

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

/// The instrumentation scope every span is sent under.
pub const SCOPE: &str = "codepipeline-exporter";
/// The semantic conventions the attributes follow.
pub const SCHEMA_URL: &str = "https://opentelemetry.io/schemas/1.44.0";

fn varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// A field key: field number and wire type (0 varint, 1 fixed64, 2 length-delimited).
fn key(out: &mut Vec<u8>, field: u32, wire_type: u8) {
    varint(out, (u64::from(field) << 3) | u64::from(wire_type));
}

fn bytes(out: &mut Vec<u8>, field: u32, value: &[u8]) {
    key(out, field, 2);
    varint(out, value.len() as u64);
    out.extend_from_slice(value);
}

/// A nested message, written into a buffer of its own first since its length leads it.
fn message(out: &mut Vec<u8>, field: u32, write: impl FnOnce(&mut Vec<u8>)) {
    let mut inner = Vec::new();
    write(&mut inner);
    bytes(out, field, &inner);
}

fn fixed64(out: &mut Vec<u8>, field: u32, value: u64) {
    key(out, field, 1);
    out.extend_from_slice(&value.to_le_bytes());
}

/// KeyValue { key = 1; AnyValue value = 2 }, AnyValue { string_value = 1; int_value = 3;
/// double_value = 4 }.
fn attributes(out: &mut Vec<u8>, field: u32, attributes: &Attributes) {
    for (name, value) in attributes {
        message(out, field, |kv| {
            bytes(kv, 1, name.as_bytes());
            message(kv, 2, |any| match value {
                Value::String(s) => bytes(any, 1, s.as_bytes()),
                Value::Int(i) => {
                    key(any, 3, 0);
                    varint(any, *i as u64);
                }
                Value::Double(d) => fixed64(any, 4, d.to_bits()),
            });
        });
    }
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

/// Reads one varint at `at`, moving past it.
fn read_varint(input: &[u8], at: &mut usize) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *input.get(*at)?;
        *at += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

/// One field of a message: its number, wire type, and varint value or bytes.
type Field<'a> = (u64, u8, u64, &'a [u8]);

/// The fields of one message.
fn fields(input: &[u8]) -> Option<Vec<Field<'_>>> {
    let mut at = 0;
    let mut out = Vec::new();
    while at < input.len() {
        let key = read_varint(input, &mut at)?;
        let (field, wire_type) = (key >> 3, (key & 7) as u8);
        match wire_type {
            0 => out.push((field, 0, read_varint(input, &mut at)?, &input[0..0])),
            1 => {
                at = at.checked_add(8).filter(|end| *end <= input.len())?;
                out.push((field, 1, 0, &input[0..0]));
            }
            2 => {
                let len = usize::try_from(read_varint(input, &mut at)?).ok()?;
                let end = at.checked_add(len).filter(|end| *end <= input.len())?;
                out.push((field, 2, 0, &input[at..end]));
                at = end;
            }
            5 => {
                at = at.checked_add(4).filter(|end| *end <= input.len())?;
                out.push((field, 5, 0, &input[0..0]));
            }
            _ => return None,
        }
    }
    Some(out)
}

/// What an ExportTraceServiceResponse says of spans the receiver rejected: their number and its
/// message (ExportTracePartialSuccess { rejected_spans = 1; error_message = 2 }). An answer that
/// cannot be read is taken as a full success, as the body is optional.
pub fn partial_success(body: &[u8]) -> (u64, String) {
    let Some(partial) = fields(body).and_then(|f| f.into_iter().find(|(field, wire, ..)| *field == 1 && *wire == 2)) else {
        return (0, String::new());
    };
    let mut rejected = 0;
    let mut message = String::new();
    for (field, wire, value, data) in fields(partial.3).unwrap_or_default() {
        match (field, wire) {
            (1, 0) => rejected = value,
            (2, 2) => message = String::from_utf8_lossy(data).into_owned(),
            _ => {}
        }
    }
    (rejected, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_and_keys_are_protobuf_s() {
        let mut out = Vec::new();
        varint(&mut out, 300);
        assert_eq!(out, [0xac, 0x02]);
        let mut out = Vec::new();
        key(&mut out, 16, 5);
        assert_eq!(out, [0x85, 0x01]);
    }

    #[test]
    fn reads_a_partial_success() {
        // partial_success { rejected_spans: 3, error_message: "full" }
        let body = [0x0a, 0x08, 0x08, 0x03, 0x12, 0x04, b'f', b'u', b'l', b'l'];
        assert_eq!(partial_success(&body), (3, "full".to_string()));
        assert_eq!(partial_success(&[]), (0, String::new()));
        assert_eq!(partial_success(&[0xff]), (0, String::new()), "unreadable: taken as success");
    }
}
