//! The two wire protocols the simulated services speak, over one neutral document type.
//!
//! Handlers read and write [`Value`] (CBOR's data model, which has a tag for timestamps) and this
//! module encodes it for the protocol the request came in:
//! - awsJson 1.0 / 1.1: POST `/` with `X-Amz-Target: <Service>.<Operation>`, JSON bodies,
//!   timestamps as epoch-second numbers, errors as a non-2xx status with `__type` and `message`;
//! - Smithy RPC v2 CBOR: POST `/service/<Service>/operation/<Operation>` with
//!   `smithy-protocol: rpc-v2-cbor`, CBOR bodies, timestamps as tag 1 around a number, errors as a
//!   non-2xx status with `__type` in the body.
//!
//! The pinned SDK crates use awsJson 1.1 for CodePipeline and RPC v2 CBOR for CodeConnections;
//! both services answer both protocols here, since AWS lists both for both and a later SDK
//! release may switch.

use std::collections::BTreeMap;

use aws_smithy_types::DateTime;
use aws_smithy_types::date_time::Format;
use bytes::Bytes;
use ciborium::Value;
use http_body_util::Full;
use hyper::{HeaderMap, Response, StatusCode};
use percent_encoding::percent_decode_str;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// awsJson; the version only changes the content type.
    AwsJson(&'static str),
    RpcV2Cbor,
}

impl Protocol {
    /// The protocol's name as botocore's models give it (`metadata.protocol`), awsJson with its
    /// version, for the recording.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::AwsJson("1.0") => "json-1.0",
            Protocol::AwsJson(_) => "json-1.1",
            Protocol::RpcV2Cbor => "smithy-rpc-v2-cbor",
        }
    }
}

/// A decoded request: which service and operation, and its input document.
#[derive(Debug)]
pub struct Call {
    pub service: String,
    /// The service as the request named it, which the recording keeps: the awsJson target prefix
    /// (CodeConnections' with its namespace) or the RPC v2 CBOR path's service.
    pub wire_service: String,
    pub operation: String,
    pub protocol: Protocol,
    pub input: Value,
}

/// An AWS error answer.
#[derive(Debug, Clone)]
pub struct Failure {
    pub status: u16,
    pub code: String,
    pub message: String,
    /// The `x-amzn-query-error` header of services that kept their awsQuery error codes (SQS):
    /// `<code>;<Sender|Receiver>`, which the SDK takes as the error's code.
    pub query_error: Option<String>,
}

impl Failure {
    pub fn new(status: u16, code: &str, message: impl Into<String>) -> Failure {
        Failure { status, code: code.into(), message: message.into(), query_error: None }
    }
}

/// Works out the protocol from the request line and headers, and decodes the body. `None` when
/// the request is in neither protocol.
pub fn decode(path: &str, headers: &HeaderMap, body: &[u8]) -> Option<Result<Call, Failure>> {
    if let Some(rest) = path.strip_prefix("/service/") {
        let (service, operation) = rest.split_once("/operation/")?;
        let input = if body.is_empty() {
            Ok(Value::Map(Vec::new()))
        } else {
            ciborium::from_reader::<Value, _>(body)
                .map_err(|_| Failure::new(400, "SerializationException", "the request body is not CBOR"))
        };
        return Some(input.map(|input| Call {
            service: service.to_string(),
            wire_service: service.to_string(),
            operation: operation.to_string(),
            protocol: Protocol::RpcV2Cbor,
            input,
        }));
    }
    let target = headers.get("x-amz-target")?.to_str().ok()?;
    // The target is the model's `targetPrefix`, a dot, and the operation; a prefix may hold dots.
    let (prefix, operation) = target.rsplit_once('.')?;
    let Some(service) = service_of_target_prefix(prefix) else {
        return Some(Err(Failure::new(400, "UnknownOperationException", format!("no service has the target prefix {prefix}"))));
    };
    let version = match headers.get("content-type").and_then(|v| v.to_str().ok()) {
        Some("application/x-amz-json-1.0") => "1.0",
        _ => "1.1",
    };
    let input = if body.is_empty() {
        Ok(Value::Map(Vec::new()))
    } else {
        serde_json::from_slice::<serde_json::Value>(body)
            .map(|json| from_json(&json))
            .map_err(|_| Failure::new(400, "SerializationException", "the request body is not JSON"))
    };
    Some(input.map(|input| Call {
        service: service.to_string(),
        wire_service: prefix.to_string(),
        operation: operation.to_string(),
        protocol: Protocol::AwsJson(version),
        input,
    }))
}

/// The simulated service of an awsJson target prefix, exactly as each service's model gives it
/// (botocore's `metadata.targetPrefix`): CodeConnections' carries its namespace.
fn service_of_target_prefix(prefix: &str) -> Option<&'static str> {
    Some(match prefix {
        "CodePipeline_20150709" => "CodePipeline_20150709",
        "com.amazonaws.codeconnections.CodeConnections_20231201" => "CodeConnections_20231201",
        "CodeBuild_20161006" => "CodeBuild_20161006",
        "AWSOrganizationsV20161128" => "AWSOrganizationsV20161128",
        "AmazonSQS" => "AmazonSQS",
        _ => return None,
    })
}

/// Encodes a successful answer.
pub fn ok(protocol: Protocol, output: &Value) -> Response<Full<Bytes>> {
    respond(protocol, StatusCode::OK, output)
}

/// Encodes an error answer.
pub fn error(protocol: Protocol, failure: &Failure) -> Response<Full<Bytes>> {
    let status = StatusCode::from_u16(failure.status).unwrap_or(StatusCode::BAD_REQUEST);
    let body = map(vec![("__type", text(&failure.code)), ("message", text(&failure.message))]);
    let mut response = respond(protocol, status, &body);
    if protocol != Protocol::RpcV2Cbor {
        response
            .headers_mut()
            .insert("x-amzn-errortype", failure.code.parse().unwrap_or_else(|_| "Unknown".parse().expect("static")));
    }
    if let Some(query_error) = failure.query_error.as_ref().and_then(|q| q.parse().ok()) {
        response.headers_mut().insert("x-amzn-query-error", query_error);
    }
    response
}

/// An awsQuery answer (STS): XML with the operation's result members, each map nested as
/// elements, each timestamp in ISO 8601 (as the SDK's `DateTimeWithOffset` parser reads it), and
/// every other value as its text.
pub fn query_ok(operation: &str, result: &Value) -> Response<Full<Bytes>> {
    let mut body = format!("<{operation}Response xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><{operation}Result>");
    xml_members(&mut body, result);
    body.push_str(&format!(
        "</{operation}Result><ResponseMetadata><RequestId>00000000-0000-4000-8000-000000000000</RequestId></ResponseMetadata></{operation}Response>"
    ));
    xml(StatusCode::OK, body)
}

/// Writes the members of a map as XML elements, in order.
fn xml_members(out: &mut String, value: &Value) {
    for (name, value) in value.as_map().into_iter().flatten() {
        let Some(name) = name.as_text() else { continue };
        out.push_str(&format!("<{name}>"));
        match value {
            Value::Map(_) => xml_members(out, value),
            Value::Text(s) => out.push_str(&xml_escape(s)),
            Value::Integer(i) => out.push_str(&i128::from(*i).to_string()),
            Value::Tag(1, seconds) => {
                let seconds = seconds.as_float().unwrap_or(0.0);
                out.push_str(&DateTime::from_secs_f64(seconds).fmt(Format::DateTime).unwrap_or_default());
            }
            _ => {}
        }
        out.push_str(&format!("</{name}>"));
    }
}

/// An awsQuery error answer.
pub fn query_error(failure: &Failure) -> Response<Full<Bytes>> {
    let body = format!(
        "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><Error><Type>Sender</Type><Code>{}</Code><Message>{}</Message></Error><RequestId>00000000-0000-4000-8000-000000000000</RequestId></ErrorResponse>",
        xml_escape(&failure.code),
        xml_escape(&failure.message)
    );
    xml(StatusCode::from_u16(failure.status).unwrap_or(StatusCode::BAD_REQUEST), body)
}

fn xml(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert("content-type", "text/xml".parse().expect("static"));
    response
}

fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// The decoded parameters of an awsQuery request (a form-encoded POST with an `Action`), if it is
/// one.
pub fn query_form(headers: &HeaderMap, body: &[u8]) -> Option<BTreeMap<String, String>> {
    let form = headers.get("content-type")?.to_str().ok()?.starts_with("application/x-www-form-urlencoded");
    if !form {
        return None;
    }
    let decode = |s: &str| percent_decode_str(&s.replace('+', " ")).decode_utf8_lossy().into_owned();
    let params: BTreeMap<String, String> = std::str::from_utf8(body)
        .ok()?
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(name), decode(value))
        })
        .collect();
    params.contains_key("Action").then_some(params)
}

/// The access key ID a request is signed with: the first part of the SigV4 `Authorization`
/// header's `Credential=<key>/<date>/<region>/<service>/aws4_request`.
pub fn access_key(headers: &HeaderMap) -> Option<&str> {
    let authorization = headers.get("authorization")?.to_str().ok()?;
    let (_, credential) = authorization.split_once("Credential=")?;
    credential.split('/').next().filter(|key| !key.is_empty())
}

/// The region a request was signed for: the third part of its SigV4 credential scope
/// (`Credential=KEY/DATE/REGION/SERVICE/aws4_request`).
pub fn signed_region(headers: &HeaderMap) -> Option<&str> {
    let authorization = headers.get("authorization")?.to_str().ok()?;
    let (_, credential) = authorization.split_once("Credential=")?;
    credential.split('/').nth(2).filter(|region| !region.is_empty())
}

/// A 200 answer whose body does not decode in the protocol.
pub fn malformed(protocol: Protocol) -> Response<Full<Bytes>> {
    let body: &'static [u8] = match protocol {
        Protocol::AwsJson(_) => b"{\"pipelines\": [",
        Protocol::RpcV2Cbor => &[0xbf, 0x63, b'a', b'b'],
    };
    with_headers(protocol, StatusCode::OK, Bytes::from_static(body))
}

fn respond(protocol: Protocol, status: StatusCode, body: &Value) -> Response<Full<Bytes>> {
    let bytes = match protocol {
        Protocol::AwsJson(_) => Bytes::from(to_json(body).to_string()),
        Protocol::RpcV2Cbor => {
            let mut out = Vec::new();
            ciborium::into_writer(body, &mut out).expect("writing CBOR to memory cannot fail");
            Bytes::from(out)
        }
    };
    with_headers(protocol, status, bytes)
}

fn with_headers(protocol: Protocol, status: StatusCode, body: Bytes) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    match protocol {
        Protocol::AwsJson("1.0") => {
            headers.insert("content-type", "application/x-amz-json-1.0".parse().expect("static"));
        }
        Protocol::AwsJson(_) => {
            headers.insert("content-type", "application/x-amz-json-1.1".parse().expect("static"));
        }
        Protocol::RpcV2Cbor => {
            headers.insert("content-type", "application/cbor".parse().expect("static"));
            headers.insert("smithy-protocol", "rpc-v2-cbor".parse().expect("static"));
        }
    }
    headers.insert("x-amzn-requestid", "00000000-0000-4000-8000-000000000000".parse().expect("static"));
    response
}

/// JSON to the neutral document (numbers stay numbers: JSON has no timestamps).
pub fn from_json(json: &serde_json::Value) -> Value {
    match json {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(b) => Value::Bool(*b),
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => Value::Integer(i.into()),
            None => Value::Float(n.as_f64().unwrap_or(0.0)),
        },
        serde_json::Value::String(s) => Value::Text(s.clone()),
        serde_json::Value::Array(items) => Value::Array(items.iter().map(from_json).collect()),
        serde_json::Value::Object(entries) => {
            Value::Map(entries.iter().map(|(k, v)| (Value::Text(k.clone()), from_json(v))).collect())
        }
    }
}

/// The neutral document to JSON: a timestamp (tag 1) becomes its epoch-second number.
pub fn to_json(value: &Value) -> serde_json::Value {
    match value {
        Value::Null => serde_json::Value::Null,
        Value::Bool(b) => serde_json::Value::Bool(*b),
        Value::Integer(i) => serde_json::Value::from(i128::from(*i) as i64),
        Value::Float(f) => serde_json::Number::from_f64(*f).map(serde_json::Value::Number).unwrap_or(serde_json::Value::Null),
        Value::Text(s) => serde_json::Value::String(s.clone()),
        Value::Tag(_, inner) => to_json(inner),
        Value::Array(items) => serde_json::Value::Array(items.iter().map(to_json).collect()),
        Value::Map(entries) => serde_json::Value::Object(
            entries.iter().filter_map(|(k, v)| k.as_text().map(|k| (k.to_string(), to_json(v)))).collect(),
        ),
        _ => serde_json::Value::Null,
    }
}

/// The first item of the page a token asks for, and the token of the page after it, if any.
pub fn page_bounds(token: Option<&str>, page: usize, total: usize) -> Result<(usize, Option<String>), Failure> {
    let start = match token {
        Some(token) => {
            token.parse::<usize>().map_err(|_| Failure::new(400, "InvalidNextTokenException", "The next token is not valid"))?
        }
        None => 0,
    };
    Ok((start, (start + page < total).then(|| (start + page).to_string())))
}

/// An integer member of a map input.
pub fn number(input: &Value, name: &str) -> Option<i64> {
    input
        .as_map()?
        .iter()
        .find(|(k, _)| k.as_text() == Some(name))
        .and_then(|(_, v)| v.as_integer())
        .and_then(|i| i64::try_from(i).ok())
}

/// A string member of a map input.
pub fn member<'a>(input: &'a Value, name: &str) -> Option<&'a str> {
    input.as_map()?.iter().find(|(k, _)| k.as_text() == Some(name)).and_then(|(_, v)| v.as_text())
}

/// Builds a map from the members that are present.
pub fn map(entries: Vec<(&str, Value)>) -> Value {
    Value::Map(entries.into_iter().filter(|(_, v)| !v.is_null()).map(|(k, v)| (Value::Text(k.into()), v)).collect())
}

pub fn text(s: &str) -> Value {
    Value::Text(s.to_string())
}

pub fn opt_text(s: Option<&str>) -> Value {
    s.map(text).unwrap_or(Value::Null)
}

pub fn int(i: i64) -> Value {
    Value::Integer(i.into())
}

/// A timestamp: tag 1 around epoch seconds, as RPC v2 CBOR requires.
pub fn timestamp(seconds: f64) -> Value {
    Value::Tag(1, Box::new(Value::Float(seconds)))
}

pub fn list(items: impl IntoIterator<Item = Value>) -> Value {
    Value::Array(items.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_numbers_in_json_and_tagged_in_cbor() {
        let doc = map(vec![("At", timestamp(1_700_000_000.5)), ("Name", text("x")), ("Gone", Value::Null)]);
        assert_eq!(to_json(&doc).to_string(), r#"{"At":1700000000.5,"Name":"x"}"#);
        let mut cbor = Vec::new();
        ciborium::into_writer(&doc, &mut cbor).unwrap();
        // map(2), "At", tag 1, float64 1700000000.5
        assert_eq!(&cbor[..6], &[0xa2, 0x62, b'A', b't', 0xc1, 0xfb]);
    }
}
