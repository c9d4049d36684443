//! OTLP's protobuf wire format, written by hand: the primitives both signals' messages are made
//! of, their common KeyValue attributes, and the partial-success answer every export service
//! gives.
//!
//! Writing the few fields an exporter sends directly keeps a code generator and its runtime out
//! of the build; the tests decode the result with opentelemetry-proto's reference implementation.

/// An attribute's value: the AnyValue variants the exporter uses.
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

pub fn varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// A field key: field number and wire type (0 varint, 1 fixed64, 2 length-delimited).
pub fn key(out: &mut Vec<u8>, field: u32, wire_type: u8) {
    varint(out, (u64::from(field) << 3) | u64::from(wire_type));
}

pub fn bytes(out: &mut Vec<u8>, field: u32, value: &[u8]) {
    key(out, field, 2);
    varint(out, value.len() as u64);
    out.extend_from_slice(value);
}

/// A nested message, written into a buffer of its own first since its length leads it.
pub fn message(out: &mut Vec<u8>, field: u32, write: impl FnOnce(&mut Vec<u8>)) {
    let mut inner = Vec::new();
    write(&mut inner);
    bytes(out, field, &inner);
}

pub fn fixed64(out: &mut Vec<u8>, field: u32, value: u64) {
    key(out, field, 1);
    out.extend_from_slice(&value.to_le_bytes());
}

/// KeyValue { key = 1; AnyValue value = 2 }, AnyValue { string_value = 1; int_value = 3;
/// double_value = 4 }.
pub fn attributes(out: &mut Vec<u8>, field: u32, attributes: &Attributes) {
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

/// What an export's answer says of items (spans, data points) the receiver rejected: their number
/// and its message. ExportTracePartialSuccess { rejected_spans = 1; error_message = 2 } and
/// ExportMetricsPartialSuccess { rejected_data_points = 1; error_message = 2 } share the layout.
/// An answer that cannot be read is taken as a full success, as the body is optional.
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
