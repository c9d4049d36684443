//! The HTTP server: `/metrics`, a landing page, and the health and readiness endpoints.
//!
//! A scrape ([`crate::scrape`]) copies what the store already assembled and appends the
//! exporter's own few metrics: it never calls AWS and never waits on a poll. Connections are
//! capped for memory and must send their headers (and finish a TLS handshake) promptly; at the cap,
//! the connection idle longest gives way ([`connections`]), so that no client holding idle or slow
//! connections can keep a scraper out. On shutdown the server stops accepting and lets responses
//! in flight finish.

pub mod connections;

use std::convert::Infallible;
use std::future::Future;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue, WWW_AUTHENTICATE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

use crate::readiness::Readiness;
use crate::reload::Reloader;
use crate::runbook;
use crate::scrape::{Body, Scrapes};
use crate::status;
use crate::target::Statuses;
use crate::telemetry::Telemetry;
use crate::webconfig::{Access, WebConfig};
use connections::{Busy, Deadlines, Observed, Slot, Slots};

/// How long a client may take to send a request's headers (and before its first request, to
/// complete a TLS handshake), and how long a keep-alive connection may wait for its next request:
/// longer than Prometheus keeps its own idle connections (5 minutes), so that the scraper, not the
/// server, closes them.
const DEADLINES: Deadlines = Deadlines { header: Duration::from_secs(10), idle: Duration::from_secs(330) };
/// How long responses in flight may take to finish after a shutdown signal.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// What the handlers read.
pub struct State {
    pub scrapes: Scrapes,
    pub telemetry: Arc<Telemetry>,
    pub statuses: Arc<Statuses>,
    pub readiness: Arc<Readiness>,
    pub reloader: Reloader,
    pub telemetry_path: String,
    /// TLS, users and headers; a reload replaces it, and new connections use the new one.
    pub web: RwLock<Arc<WebConfig>>,
}

/// Serves until `shutdown` resolves, then drains connections for a few seconds. At most
/// `max_connections` are open at once (see [`connections`] for who gives way).
pub async fn serve(listener: TcpListener, state: Arc<State>, max_connections: usize, shutdown: impl Future<Output = ()>) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let slots = Slots::new(max_connections, state.telemetry.clone());
    let sweeper = tokio::spawn({
        let slots = slots.clone();
        async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                slots.close_expired(DEADLINES);
            }
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    // The header deadline is the slots' own: hyper's would also close keep-alive connections
    // that wait 10 s for their next request.
    builder.max_buf_size(64 * 1024);
    tokio::pin!(shutdown);
    'accept: loop {
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
        // A new connection waits for a slot only while no open one can give way: each is
        // answering a request, or is itself new and has a moment left to send its own.
        let slot = loop {
            if let Some(slot) = slots.take() {
                break slot;
            }
            tokio::select! {
                () = slots.freed() => {}
                () = &mut shutdown => break 'accept,
            }
        };
        // A response goes out as several buffers; with Nagle's algorithm the last small one
        // would wait for the client's delayed acknowledgement, about 40 ms on Linux.
        if let Err(err) = stream.set_nodelay(true) {
            tracing::debug!(error = %err, "could not disable Nagle's algorithm");
        }
        let web = state.web.read().unwrap_or_else(|e| e.into_inner()).clone();
        let (builder, watcher) = (builder.clone(), graceful.watcher());
        tokio::spawn(connection(stream, slot, state.clone(), web, builder, watcher));
    }
    sweeper.abort();
    drop(listener);
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown()).await.is_err() {
        tracing::warn!("connections still open after the shutdown grace period; closing them");
    }
}

/// Serves one connection until it ends, or until the server closes it to make room or for idling;
/// its slot is released when this returns.
async fn connection(
    stream: TcpStream,
    slot: Slot,
    state: Arc<State>,
    web: Arc<WebConfig>,
    builder: hyper::server::conn::http1::Builder,
    watcher: hyper_util::server::graceful::Watcher,
) {
    let activity = slot.activity();
    let tls = web.tls.clone();
    let service = hyper::service::service_fn(move |request| {
        let (state, web, busy) = (state.clone(), web.clone(), activity.busy());
        async move { Ok::<_, Infallible>(respond(&state, &web, request).await.map(|body| Tracked { body, _busy: busy }.boxed())) }
    });
    let stream = Observed::new(stream, slot.activity());
    let served = async {
        match tls {
            None => {
                let _ = watcher.watch(builder.serve_connection(TokioIo::new(stream), service)).await;
            }
            // The handshake runs in the connection's own task, under the same deadline as request
            // headers, and its connection is idle meanwhile: a client that stalls it gives way
            // like any other.
            Some(tls) => match TlsAcceptor::from(tls).accept(stream).await {
                Ok(stream) => {
                    let _ = watcher.watch(builder.serve_connection(TokioIo::new(stream), service)).await;
                }
                Err(err) => tracing::debug!(error = %err, "TLS handshake failed"),
            },
        }
    };
    tokio::select! {
        () = served => {}
        // Closed by the server, which counted it: past a deadline, or to make room.
        () = slot.close.notified() => {}
    }
}

/// A response body that keeps its connection busy until it has been sent.
struct Tracked {
    body: Body,
    _busy: Busy,
}

impl hyper::body::Body for Tracked {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Infallible>>> {
        std::pin::Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
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

/// The path label of a request: one of the server's own paths, or `other`, so that scanners
/// cannot add series.
fn path_label<'a>(state: &'a State, path: &'a str) -> &'a str {
    match path {
        "/" | "/-/healthy" | "/-/ready" | "/-/reload" | "/status" | "/api/v1/status" | "/runbook" => path,
        _ if path == state.telemetry_path => path,
        _ => "other",
    }
}

async fn route(state: &State, request: Request<Incoming>) -> Response<Body> {
    let path = request.uri().path().to_string();
    let response = route_path(state, &path, request).await;
    state.telemetry.record_http_request(path_label(state, &path), response.status().as_u16());
    response
}

async fn route_path(state: &State, path: &str, request: Request<Incoming>) -> Response<Body> {
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
        return state.scrapes.respond(request.headers());
    }
    match path {
        "/" => landing_page(state),
        "/status" | "/api/v1/status" => {
            let filter = status::Filter::parse(request.uri().query());
            let report = status::report(&state.statuses, &state.telemetry, state.scrapes.store(), &filter);
            if path == "/status" {
                body(status::html(&report, &filter, &state.telemetry_path), "text/html; charset=utf-8")
            } else {
                body(serde_json::to_string(&report).unwrap_or_default(), "application/json")
            }
        }
        "/runbook" => body(runbook::PAGE.clone(), "text/html; charset=utf-8"),
        "/-/healthy" => text(StatusCode::OK, "Healthy\n"),
        "/-/ready" if state.readiness.is_ready() => text(StatusCode::OK, "Ready\n"),
        "/-/ready" => text(StatusCode::SERVICE_UNAVAILABLE, "Not ready: the first discovery and poll round is not done\n"),
        _ => text(StatusCode::NOT_FOUND, "Not Found\n"),
    }
}

fn landing_page(state: &State) -> Response<Body> {
    let path = status::escape_html(&state.telemetry_path);
    let page = format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head><meta charset=\"utf-8\"><title>CodePipeline Exporter</title></head>\n<body>\n\
         <h1>CodePipeline Exporter</h1>\n<p>Prometheus exporter for AWS CodePipeline and AWS CodeConnections, version {}.</p>\n\
         <ul>\n<li><a href=\"{path}\">Metrics</a></li>\n<li><a href=\"/status\">Status</a>: targets, their errors, and what is exported</li>\n\
         <li><a href=\"/runbook\">Runbook</a>: what each alert means and what to do</li>\n\
         <li><a href=\"/-/healthy\">Health</a></li>\n<li><a href=\"/-/ready\">Readiness</a></li>\n</ul>\n</body>\n</html>\n",
        env!("CARGO_PKG_VERSION"),
    );
    body(page, "text/html; charset=utf-8")
}

fn body(content: String, content_type: &'static str) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from(content)).boxed());
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())).boxed());
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    response
}
