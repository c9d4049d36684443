//! The HTTP server: `/metrics`, a landing page, and the health and readiness endpoints.
//!
//! A scrape copies what the store already assembled and appends the exporter's own few metrics:
//! it never calls AWS and never waits on a poll. Connections are capped and must send their
//! headers promptly, so a slow or abusive client cannot exhaust the server; on shutdown the server
//! stops accepting and lets responses in flight finish.

use std::convert::Infallible;
use std::future::Future;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use flate2::Decompress;
use http_body_util::{BodyExt as _, Full, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::header::{
    ACCEPT, ACCEPT_ENCODING, AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE, HeaderValue, VARY, WWW_AUTHENTICATE,
};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

use crate::exporter::Reloader;
use crate::exposition::Format;
use crate::scheduler::Readiness;
use crate::store::{Exposition, Store};
use crate::telemetry::Telemetry;
use crate::webconfig::{Access, WebConfig};

/// How long a client may take to send its request headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections served at once; further ones wait in the kernel's accept queue.
const MAX_CONNECTIONS: usize = 512;
/// How long responses in flight may take to finish after a shutdown signal.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// What the handlers read.
pub struct State {
    pub store: Arc<Store>,
    pub telemetry: Arc<Telemetry>,
    pub readiness: Arc<Readiness>,
    pub reloader: Reloader,
    pub telemetry_path: String,
    /// TLS, users and headers; a reload replaces it, and new connections use the new one.
    pub web: RwLock<Arc<WebConfig>>,
}

type Body = BoxBody<Bytes, Infallible>;

/// Serves until `shutdown` resolves, then drains connections for a few seconds.
pub async fn serve(listener: TcpListener, state: Arc<State>, shutdown: impl Future<Output = ()>) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let connections = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(HEADER_READ_TIMEOUT).max_buf_size(64 * 1024);
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = connections.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Running out of file descriptors must not end the server: back off and retry.
                    tracing::warn!(error = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // A response goes out as several buffers; with Nagle's algorithm the last small one
        // would wait for the client's delayed acknowledgement, about 40 ms on Linux.
        if let Err(err) = stream.set_nodelay(true) {
            tracing::debug!(error = %err, "could not disable Nagle's algorithm");
        }
        let web = state.web.read().unwrap_or_else(|e| e.into_inner()).clone();
        let tls = web.tls.clone();
        let connection_state = state.clone();
        let service = hyper::service::service_fn(move |request| {
            let (state, web) = (connection_state.clone(), web.clone());
            async move { Ok::<_, Infallible>(respond(&state, &web, request).await) }
        });
        let (builder, watcher) = (builder.clone(), graceful.watcher());
        tokio::spawn(async move {
            match tls {
                None => {
                    let _ = watcher.watch(builder.serve_connection(TokioIo::new(stream), service)).await;
                }
                // The handshake runs in the connection's own task: a client that stalls or fails
                // it is dropped without holding up anyone else.
                Some(tls) => match tokio::time::timeout(HEADER_READ_TIMEOUT, TlsAcceptor::from(tls).accept(stream)).await {
                    Ok(Ok(stream)) => {
                        let _ = watcher.watch(builder.serve_connection(TokioIo::new(stream), service)).await;
                    }
                    Ok(Err(err)) => tracing::debug!(error = %err, "TLS handshake failed"),
                    Err(_) => tracing::debug!("TLS handshake timed out"),
                },
            }
            drop(permit);
        });
    }
    drop(listener);
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown()).await.is_err() {
        tracing::warn!("connections still open after the shutdown grace period; closing them");
    }
}

/// Checks the credentials the web configuration asks for, routes, and adds its headers.
async fn respond(state: &State, web: &WebConfig, request: Request<Incoming>) -> Response<Body> {
    let authorization = request.headers().get(AUTHORIZATION).and_then(|v| v.to_str().ok());
    let mut response = match web.check(authorization).await {
        Access::Allowed => route(state, request).await,
        Access::Denied => {
            let mut response = text(StatusCode::UNAUTHORIZED, "Unauthorized\n");
            response.headers_mut().insert(WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"codepipeline-exporter\""));
            response
        }
    };
    for (name, value) in &web.headers {
        response.headers_mut().insert(name.clone(), value.clone());
    }
    response
}

async fn route(state: &State, request: Request<Incoming>) -> Response<Body> {
    let path = request.uri().path();
    if path == "/-/reload" {
        if request.method() != Method::POST && request.method() != Method::PUT {
            return text(StatusCode::METHOD_NOT_ALLOWED, "Only POST or PUT requests allowed\n");
        }
        return match state.reloader.reload().await {
            Ok(()) => text(StatusCode::OK, "Reloaded\n"),
            Err(err) => {
                let mut response = Response::new(Full::new(Bytes::from(format!("failed to reload config: {err}\n"))).boxed());
                *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
                response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
                response
            }
        };
    }
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed\n");
    }
    if path == state.telemetry_path {
        return metrics(state, &request);
    }
    match path {
        "/" => landing_page(state),
        "/-/healthy" => text(StatusCode::OK, "Healthy\n"),
        "/-/ready" if state.readiness.is_ready() => text(StatusCode::OK, "Ready\n"),
        "/-/ready" => text(StatusCode::SERVICE_UNAVAILABLE, "Not ready: the first discovery and poll round is not done\n"),
        _ => text(StatusCode::NOT_FOUND, "Not Found\n"),
    }
}

fn metrics(state: &State, request: &Request<Incoming>) -> Response<Body> {
    let accept = request.headers().get(ACCEPT).and_then(|v| v.to_str().ok());
    let format = Format::negotiate(accept);
    let gzip = accepts_gzip(request.headers().get(ACCEPT_ENCODING).and_then(|v| v.to_str().ok()));
    let exposition = state.store.exposition();
    let mut own = Vec::with_capacity(4096);
    state.telemetry.render(&mut own, format);
    if format == Format::OpenMetrics {
        own.extend_from_slice(b"# EOF\n");
    }
    let body = if gzip {
        Chunks(exposition.deflated(format).gzip(&own).into()).boxed()
    } else {
        let remaining = exposition.deflated(format).text_len() + own.len() as u64;
        Inflating { exposition, format, next: 0, decompress: Decompress::new(false), tail: Bytes::from(own), remaining }.boxed()
    };
    let mut response = Response::new(body);
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(format.content_type()));
    headers.insert(VARY, HeaderValue::from_static("Accept, Accept-Encoding"));
    if gzip {
        headers.insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    response
}

/// Whether the client takes gzip: listed (or `*`) with a quality above zero.
fn accepts_gzip(accept_encoding: Option<&str>) -> bool {
    accept_encoding.is_some_and(|header| {
        header.split(',').any(|coding| {
            let mut params = coding.split(';').map(str::trim);
            let name = params.next().unwrap_or_default();
            let quality = params.filter_map(|p| p.strip_prefix("q=")).find_map(|q| q.trim().parse::<f32>().ok()).unwrap_or(1.0);
            (name.eq_ignore_ascii_case("gzip") || name == "*") && quality > 0.0
        })
    })
}

fn landing_page(state: &State) -> Response<Body> {
    let path = html_escape(&state.telemetry_path);
    let page = format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head><meta charset=\"utf-8\"><title>CodePipeline Exporter</title></head>\n<body>\n\
         <h1>CodePipeline Exporter</h1>\n<p>Prometheus exporter for AWS CodePipeline and AWS CodeConnections, version {}.</p>\n\
         <ul>\n<li><a href=\"{path}\">Metrics</a></li>\n<li><a href=\"/-/healthy\">Health</a></li>\n<li><a href=\"/-/ready\">Readiness</a></li>\n</ul>\n</body>\n</html>\n",
        env!("CARGO_PKG_VERSION"),
    );
    let mut response = Response::new(Full::new(Bytes::from(page)).boxed());
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    response
}

fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())).boxed());
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    response
}

/// A body of buffers sent one after the other, so that the stored exposition is sent as it is
/// rather than copied into a new buffer with the exporter's own metrics.
struct Chunks(std::collections::VecDeque<Bytes>);

impl hyper::body::Body for Chunks {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let chunks = &mut self.0;
        while chunks.front().is_some_and(Bytes::is_empty) {
            chunks.pop_front();
        }
        std::task::Poll::Ready(chunks.pop_front().map(|chunk| Ok(Frame::data(chunk))))
    }

    fn is_end_stream(&self) -> bool {
        self.0.iter().all(Bytes::is_empty)
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        hyper::body::SizeHint::with_exact(self.0.iter().map(|c| c.len() as u64).sum())
    }
}

/// An uncompressed body: the kept deflated segments, inflated one per frame as the client reads,
/// so that an uncompressed scrape holds about one segment in memory rather than the whole body.
struct Inflating {
    exposition: Arc<Exposition>,
    format: Format,
    next: usize,
    decompress: Decompress,
    /// The scrape's own part, after the segments.
    tail: Bytes,
    remaining: u64,
}

impl hyper::body::Body for Inflating {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = &mut *self;
        let prefix = this.exposition.deflated(this.format);
        let frame = if this.next < prefix.segments() {
            this.next += 1;
            prefix.inflate(this.next - 1, &mut this.decompress)
        } else {
            std::mem::take(&mut this.tail)
        };
        this.remaining = this.remaining.saturating_sub(frame.len() as u64);
        std::task::Poll::Ready((!frame.is_empty() || this.next < prefix.segments()).then(|| Ok(Frame::data(frame))))
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        hyper::body::SizeHint::with_exact(self.remaining)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn gzip_is_taken_when_offered() {
        assert!(super::accepts_gzip(Some("gzip")));
        assert!(super::accepts_gzip(Some("deflate, gzip;q=0.5")));
        assert!(super::accepts_gzip(Some("*")));
        assert!(!super::accepts_gzip(Some("gzip;q=0")));
        assert!(!super::accepts_gzip(Some("identity")));
        assert!(!super::accepts_gzip(None));
    }
}
