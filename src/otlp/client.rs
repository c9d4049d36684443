//! One OTLP/HTTP export: a POST of protobuf to the collector, over TCP or TLS (rustls), and what
//! its answer means for the batch, as the OTLP specification says: success, possibly partial;
//! retry later (429, 502, 503, 504, or no answer at all), after Retry-After when the receiver gives
//! one; or give up (every other status).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::Request;
use hyper::header::{HeaderName, HeaderValue};
use hyper_util::rt::TokioIo;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::proto;

/// Answers larger than this are not read: OTLP's limit on a response.
const MAX_ANSWER: usize = 4 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("the OTLP endpoint {0:?} is not an http:// or https:// URL")]
    Endpoint(String),
    #[error("the OTLP header {0:?} is not a valid HTTP header")]
    Header(String),
    #[error("cannot read the OTLP certificate file {path}: {message}")]
    Certificate { path: String, message: String },
}

/// Where one signal's exports go.
#[derive(Debug, Clone, PartialEq)]
struct Endpoint {
    tls: bool,
    host: String,
    port: u16,
    /// Path and query.
    path: String,
}

impl Endpoint {
    fn parse(url: &str) -> Result<Endpoint, ClientError> {
        let invalid = || ClientError::Endpoint(url.to_string());
        let (tls, rest) = match url.split_once("://") {
            Some(("https", rest)) => (true, rest),
            Some(("http", rest)) => (false, rest),
            _ => return Err(invalid()),
        };
        let (authority, path) = match rest.find('/') {
            Some(at) => (&rest[..at], &rest[at..]),
            None => (rest, "/"),
        };
        let default_port = if tls { 443 } else { 80 };
        let (host, port) = match authority.strip_prefix('[') {
            Some(v6) => {
                let (host, after) = v6.split_once(']').ok_or_else(invalid)?;
                let port = match after.strip_prefix(':') {
                    Some(port) => port.parse().map_err(|_| invalid())?,
                    None if after.is_empty() => default_port,
                    None => return Err(invalid()),
                };
                (host.to_string(), port)
            }
            None => match authority.rsplit_once(':') {
                Some((host, port)) => (host.to_string(), port.parse().map_err(|_| invalid())?),
                None => (authority.to_string(), default_port),
            },
        };
        if host.is_empty() {
            return Err(invalid());
        }
        Ok(Endpoint { tls, host, port, path: path.to_string() })
    }

    fn authority(&self) -> String {
        let host = if self.host.contains(':') { format!("[{}]", self.host) } else { self.host.clone() };
        format!("{host}:{}", self.port)
    }
}

/// What an export's answer means for its batch.
#[derive(Debug, PartialEq)]
pub enum Answer {
    /// Accepted, but for `rejected` spans, which the receiver dropped for `message`.
    Accepted { rejected: u64, message: String },
    /// Not now: try the same batch again, after `after` when the receiver said so.
    Retry { after: Option<Duration>, reason: String },
    /// Never: the receiver refused the batch (400, 401, 413, …).
    Refused { reason: String },
}

/// Sends OTLP requests to one endpoint.
pub struct Client {
    endpoint: Endpoint,
    headers: Vec<(HeaderName, HeaderValue)>,
    timeout: Duration,
    tls: Option<TlsConnector>,
}

impl Client {
    /// `certificate` is a PEM file of the certificate authorities to trust instead of the
    /// system's, as OTEL_EXPORTER_OTLP_CERTIFICATE names one.
    pub fn new(
        url: &str,
        headers: &[(String, String)],
        timeout: Duration,
        certificate: Option<&str>,
    ) -> Result<Client, ClientError> {
        let endpoint = Endpoint::parse(url)?;
        let headers = headers
            .iter()
            .map(|(name, value)| {
                Ok((
                    HeaderName::from_bytes(name.as_bytes()).map_err(|_| ClientError::Header(name.clone()))?,
                    HeaderValue::from_str(value).map_err(|_| ClientError::Header(name.clone()))?,
                ))
            })
            .collect::<Result<Vec<_>, ClientError>>()?;
        let tls = endpoint.tls.then(|| tls_connector(certificate)).transpose()?;
        Ok(Client { endpoint, headers, timeout, tls })
    }

    /// Sends one export request (of traces or metrics) and says what became of it.
    pub async fn export(&self, body: Vec<u8>) -> Answer {
        match tokio::time::timeout(self.timeout, self.send(body)).await {
            Ok(answer) => answer,
            Err(_) => Answer::Retry { after: None, reason: "timeout".into() },
        }
    }

    async fn send(&self, body: Vec<u8>) -> Answer {
        let retry = |reason: String| Answer::Retry { after: None, reason };
        let tcp = match TcpStream::connect(self.endpoint.authority()).await {
            Ok(tcp) => tcp,
            Err(err) => return retry(format!("connect: {err}")),
        };
        let _ = tcp.set_nodelay(true);
        let request = match self.request(body) {
            Ok(request) => request,
            Err(err) => return Answer::Refused { reason: err.to_string() },
        };
        match &self.tls {
            Some(tls) => {
                let Ok(name) = ServerName::try_from(self.endpoint.host.clone()) else {
                    return Answer::Refused { reason: format!("{:?} is not a TLS server name", self.endpoint.host) };
                };
                match tls.connect(name, tcp).await {
                    Ok(stream) => exchange(TokioIo::new(stream), request).await,
                    Err(err) => retry(format!("TLS: {err}")),
                }
            }
            None => exchange(TokioIo::new(tcp), request).await,
        }
    }

    fn request(&self, body: Vec<u8>) -> Result<Request<Full<Bytes>>, hyper::http::Error> {
        let mut builder = Request::post(&self.endpoint.path)
            .header(hyper::header::HOST, self.endpoint.authority())
            .header(hyper::header::CONTENT_TYPE, "application/x-protobuf")
            .header(hyper::header::USER_AGENT, concat!("codepipeline-exporter/", env!("CARGO_PKG_VERSION")));
        for (name, value) in &self.headers {
            builder = builder.header(name, value);
        }
        builder.body(Full::new(Bytes::from(body)))
    }
}

/// One request and its answer on a new connection.
async fn exchange<S>(io: TokioIo<S>, request: Request<Full<Bytes>>) -> Answer
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let retry = |reason: String| Answer::Retry { after: None, reason };
    let (mut sender, connection) = match hyper::client::conn::http1::handshake(io).await {
        Ok(pair) => pair,
        Err(err) => return retry(format!("handshake: {err}")),
    };
    let driver = tokio::spawn(connection);
    let answer = match sender.send_request(request).await {
        Ok(response) => {
            let status = response.status().as_u16();
            let after = response.headers().get(hyper::header::RETRY_AFTER).and_then(|v| v.to_str().ok()).and_then(retry_after);
            let body = Limited::new(response.into_body(), MAX_ANSWER).collect().await.map(|b| b.to_bytes());
            match (status, body) {
                (200..=299, Ok(body)) => {
                    let (rejected, message) = proto::partial_success(&body);
                    Answer::Accepted { rejected, message }
                }
                (200..=299, Err(_)) => Answer::Accepted { rejected: 0, message: String::new() },
                (429 | 502 | 503 | 504, _) => Answer::Retry { after, reason: format!("HTTP {status}") },
                (status, _) => Answer::Refused { reason: format!("HTTP {status}") },
            }
        }
        Err(err) => retry(format!("request: {err}")),
    };
    driver.abort();
    answer
}

/// Retry-After as a number of seconds or an HTTP date.
fn retry_after(value: &str) -> Option<Duration> {
    if let Ok(seconds) = value.trim().parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value.trim()).ok()?;
    Some(at.duration_since(SystemTime::now()).unwrap_or_default())
}

/// rustls with the system's certificate authorities, or those of a PEM file.
fn tls_connector(certificate: Option<&str>) -> Result<TlsConnector, ClientError> {
    let mut roots = rustls::RootCertStore::empty();
    match certificate {
        Some(path) => {
            let failed = |message: String| ClientError::Certificate { path: path.to_string(), message };
            let certificates: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
                .map_err(|err| failed(err.to_string()))?
                .collect::<Result<_, _>>()
                .map_err(|err| failed(err.to_string()))?;
            if certificates.is_empty() {
                return Err(failed("it holds no certificate".into()));
            }
            for certificate in certificates {
                roots.add(certificate).map_err(|err| failed(err.to_string()))?;
            }
        }
        None => {
            for certificate in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(certificate);
            }
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|err| ClientError::Certificate { path: certificate.unwrap_or("system").into(), message: err.to_string() })?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(TlsConnector::from(Arc::new(config)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_endpoints() {
        let endpoint = Endpoint::parse("https://collector.example:4318/v1/traces").unwrap();
        assert_eq!(
            (endpoint.tls, endpoint.host.as_str(), endpoint.port, endpoint.path.as_str()),
            (true, "collector.example", 4318, "/v1/traces")
        );
        let endpoint = Endpoint::parse("http://[::1]:4318").unwrap();
        assert_eq!((endpoint.authority(), endpoint.path.as_str()), ("[::1]:4318".to_string(), "/"));
        assert_eq!(Endpoint::parse("http://otel/v1/traces").unwrap().port, 80);
        assert!(Endpoint::parse("grpc://otel:4317").is_err());
        assert!(Endpoint::parse("http://:4318/").is_err());
    }

    #[test]
    fn retry_after_takes_seconds_and_dates() {
        assert_eq!(retry_after("7"), Some(Duration::from_secs(7)));
        assert_eq!(retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), Some(Duration::ZERO), "a date past is now");
        assert_eq!(retry_after("soon"), None);
    }
}
